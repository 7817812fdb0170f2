//! Checks of the Helm chart in `charts/carbonshift/`.
//!
//! For every value set in `tests/fixtures/values/`: `helm lint --strict` and `helm template` must
//! succeed, and the rendered objects must meet the production rules (least-privilege RBAC with no
//! wildcard and Secrets only in the release namespace, the Pod Security "restricted" profile, the
//! webhook's fail-open settings and namespace exclusions, the leader-election Lease, the
//! pre-delete release hook, the default CarbonForecast) and the operator's contract (environment
//! variables, ports, paths, metric names). Value sets named `invalid-*.yaml` must be rejected by
//! `values.schema.json` with a message naming the key.
//!
//! helm is found through `CARBONSHIFT_HELM`, else `.tools/bin/helm` in the repository (installed by
//! `scripts/install-tools.sh`), else `PATH`. Without helm the helm-based tests print why and pass,
//! unless `CARBONSHIFT_REQUIRE_HELM=1` (set by `make test`), where they fail.

// This crate is test code: a failed `expect` in a helper is a failed test. (clippy.toml's
// allow-*-in-tests reaches `#[test]` functions and `#[cfg(test)]` code, not the helpers of an
// integration test.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use carbonshift::api::{CarbonForecast, ProviderSpec};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, PodTemplateSpec, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::de::DeserializeOwned;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The operator's contract (docs/architecture.md and the operator issue): what the chart must match.

/// Port of the HTTPS admission webhook.
const WEBHOOK_PORT: i32 = 9443;
/// Port of the HTTP metrics and health server.
const METRICS_PORT: i32 = 8080;
/// Directory of the serving certificate (`--tls-cert` / `--tls-key` defaults).
const TLS_DIR: &str = "/etc/carbonshift/tls";

/// Every environment variable `carbonshift run` reads (plus `RUST_LOG`).
const RUN_ENV: &[&str] = &[
    "CARBONSHIFT_WEBHOOK_ADDR",
    "CARBONSHIFT_METRICS_ADDR",
    "CARBONSHIFT_TLS_CERT",
    "CARBONSHIFT_TLS_KEY",
    "CARBONSHIFT_NAMESPACES",
    "CARBONSHIFT_DEFAULT_FORECAST",
    "CARBONSHIFT_DEFAULT_MAX_DELAY",
    "CARBONSHIFT_DEFAULT_DURATION",
    "CARBONSHIFT_MAX_ALLOWED_DELAY",
    "CARBONSHIFT_MARGIN",
    "CARBONSHIFT_WATTS_PER_GPU",
    "CARBONSHIFT_WATTS_PER_CORE",
    "CARBONSHIFT_PUE",
    "CARBONSHIFT_GPU_RESOURCES",
    "CARBONSHIFT_NO_FORECAST",
    "CARBONSHIFT_FORECAST_WAIT",
    "CARBONSHIFT_VERIFY_GIVE_UP",
    "CARBONSHIFT_WASTE_GUARD_FAILURES",
    "CARBONSHIFT_PROMETHEUS_URL",
    "CARBONSHIFT_RELEASE_ACK_WAIT",
    "CARBONSHIFT_RELEASE_CONCURRENCY",
    "CARBONSHIFT_RECONCILE_CONCURRENCY",
    "CARBONSHIFT_FORECAST_SELECTOR",
    "CARBONSHIFT_WORKLOAD_KINDS",
    "CARBONSHIFT_KUEUE_ADMISSION_GATE",
    "CARBONSHIFT_OPERATOR_NAMESPACE",
    "CARBONSHIFT_LEADER_ELECTION",
    "CARBONSHIFT_LEASE_NAME",
    "CARBONSHIFT_POD_NAME",
    "CARBONSHIFT_LOG_FORMAT",
    "RUST_LOG",
];

/// Every metric the operator exports (histograms also as `_bucket`, `_sum`, `_count`).
const METRICS: &[&str] = &[
    "carbonshift_workloads",
    "carbonshift_releases_total",
    "carbonshift_held_past_latest_start",
    "carbonshift_avoided_grams_total",
    "carbonshift_emitted_grams_total",
    "carbonshift_release_lateness_seconds",
    "carbonshift_reconcile_duration_seconds",
    "carbonshift_reconcile_errors_total",
    "carbonshift_forecast_refreshes_total",
    "carbonshift_forecast_refresh_duration_seconds",
    "carbonshift_forecast_intensity",
    "carbonshift_forecast_age_seconds",
    "carbonshift_forecast_ready",
    "carbonshift_webhook_requests_total",
    "carbonshift_leader",
    "carbonshift_workload_kind_watched",
    "carbonshift_ledger_emitted_grams_total",
    "carbonshift_ledger_avoided_grams_total",
    "carbonshift_budget_actions_total",
    "carbonshift_wasted_grams_total",
];

/// A permission: (scope, API group, resource, verb). Scope is `cluster` for a ClusterRoleBinding,
/// else the RoleBinding's namespace.
type Grant = (String, String, String, String);

/// Every workload kind: (kind, API group, version, resource).
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("Job", "batch", "v1", "jobs"),
    ("JobSet", "jobset.x-k8s.io", "v1alpha2", "jobsets"),
    ("TrainJob", "trainer.kubeflow.org", "v1alpha1", "trainjobs"),
    ("PyTorchJob", "kubeflow.org", "v1", "pytorchjobs"),
    ("MPIJob", "kubeflow.org", "v1", "mpijobs"),
    ("RayJob", "ray.io", "v1", "rayjobs"),
];

/// `(API group, version, resource)` of the turned-on kinds, in the chart's order.
fn kinds_of(case: &Case) -> Vec<(&'static str, &'static str, &'static str)> {
    case.kinds
        .iter()
        .map(|kind| {
            KINDS
                .iter()
                .find(|(k, ..)| k == kind)
                .map(|(_, g, v, r)| (*g, *v, *r))
                .unwrap_or_else(|| panic!("unknown kind {kind}"))
        })
        .collect()
}

/// The operator's API calls on each turned-on kind: (verbs of the resource, verbs of its
/// finalizers). Granted where workloads are watched.
const PER_KIND_VERBS: (&[&str], &[&str]) = (&["get", "list", "watch", "patch"], &["update"]);

/// The operator's API calls on its CarbonWorkloads: (API group, resource, verbs). Namespaced ones
/// are granted where workloads are watched.
const WORKLOAD_PERMISSIONS: &[(&str, &str, &[&str])] = &[
    (
        "carbonshift.dev",
        "carbonworkloads",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("carbonshift.dev", "carbonworkloads/status", &["patch"]),
    ("carbonshift.dev", "carbonledgers", &["get", "create"]),
    ("carbonshift.dev", "carbonledgers/status", &["update"]),
    ("carbonshift.dev", "carbonbudgets/status", &["patch"]),
];
/// Cluster-wide permissions.
const CLUSTER_PERMISSIONS: &[(&str, &str, &[&str])] = &[
    (
        "carbonshift.dev",
        "carbonforecasts",
        &["get", "list", "watch"],
    ),
    ("carbonshift.dev", "carbonforecasts/status", &["patch"]),
    (
        "carbonshift.dev",
        "carbonbudgets",
        &["get", "list", "watch"],
    ),
    ("carbonshift.dev", "carbonledgers", &["list", "watch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];
/// Permissions in the release namespace only.
const RELEASE_NAMESPACE_PERMISSIONS: &[(&str, &str, &[&str])] = &[
    ("", "secrets", &["get"]),
    ("", "configmaps", &["get"]),
    (
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update", "patch"],
    ),
];

// ---------------------------------------------------------------------------------------------
// The value sets and what each must render.

/// One value set and the facts its rendering must show.
struct Case {
    /// File in tests/fixtures/values/.
    file: &'static str,
    /// Release name passed to helm.
    release: &'static str,
    /// Release namespace passed to helm.
    namespace: &'static str,
    /// Expected resource name prefix.
    fullname: &'static str,
    /// Expected Deployment replicas.
    replicas: i32,
    /// cert-manager issues the certificate.
    cert_manager: bool,
    /// ServiceMonitor, PrometheusRule and dashboard are on, and the NetworkPolicy (on in every
    /// value set) lets only the monitoring namespace scrape metrics.
    monitoring: bool,
    /// Expected webhook failurePolicy.
    failure_policy: &'static str,
    /// Expected webhook timeoutSeconds.
    timeout_seconds: i32,
    /// Namespaces excluded from the webhook besides kube-system and the release namespace.
    extra_excluded: &'static [&'static str],
    /// Watched namespaces (empty: all).
    watched: &'static [&'static str],
    /// Secret names the Role is restricted to (empty: any in the release namespace).
    secret_names: &'static [&'static str],
    /// Expected Lease name.
    lease: &'static str,
    /// Expected provider of the default CarbonForecast.
    forecast: ExpectedForecast,
    /// The turned-on workload kinds, in the chart's order.
    kinds: &'static [&'static str],
    /// Kueue's jobs are held with the admission gate.
    kueue_gate: bool,
    /// `CARBONSHIFT_WASTE_GUARD_FAILURES` (`"0"`: the waste guard is off).
    waste_guard: &'static str,
}

/// The default CarbonForecast's expected provider.
#[derive(Debug, Clone, Copy)]
enum ExpectedForecast {
    /// `trace: {builtin: NAME}`.
    Builtin(&'static str),
    /// `ukCarbonIntensity: {}` (national).
    UkNational,
}

const DEFAULTS: Case = Case {
    file: "defaults.yaml",
    release: "carbonshift",
    namespace: "carbonshift",
    fullname: "carbonshift",
    replicas: 2,
    cert_manager: false,
    monitoring: false,
    failure_policy: "Ignore",
    timeout_seconds: 5,
    extra_excluded: &[],
    watched: &[],
    secret_names: &[],
    lease: "carbonshift-leader",
    forecast: ExpectedForecast::Builtin("gb-2020"),
    kinds: &[
        "Job",
        "JobSet",
        "TrainJob",
        "PyTorchJob",
        "MPIJob",
        "RayJob",
    ],
    kueue_gate: true,
    waste_guard: "3",
};

const CERT_MANAGER: Case = Case {
    file: "cert-manager.yaml",
    cert_manager: true,
    ..DEFAULTS
};

const TWO_REPLICAS: Case = Case {
    file: "two-replicas.yaml",
    release: "cs",
    fullname: "cs-carbonshift",
    replicas: 2,
    lease: "carbonshift-leader",
    ..DEFAULTS
};

const SINGLE_REPLICA: Case = Case {
    file: "single-replica.yaml",
    replicas: 1,
    ..DEFAULTS
};

const MONITORING: Case = Case {
    file: "monitoring.yaml",
    monitoring: true,
    ..DEFAULTS
};

/// The production starting point users copy (examples/helm/, not a test fixture).
const PRODUCTION: Case = Case {
    file: "examples/helm/values-production.yaml",
    monitoring: true,
    ..DEFAULTS
};

const OTHER_NAMESPACE: Case = Case {
    file: "other-namespace.yaml",
    release: "carbon",
    namespace: "platform-carbon",
    fullname: "carbon-carbonshift",
    failure_policy: "Fail",
    timeout_seconds: 10,
    extra_excluded: &["monitoring"],
    watched: &["ml-team-a", "ml-team-b"],
    secret_names: &["electricitymaps-token"],
    lease: "carbon-carbonshift-leader",
    forecast: ExpectedForecast::UkNational,
    ..DEFAULTS
};

const KINDS_CASE: Case = Case {
    file: "workload-kinds.yaml",
    watched: &["ml-team-a"],
    kinds: &["Job", "PyTorchJob", "RayJob"],
    kueue_gate: false,
    waste_guard: "0",
    ..DEFAULTS
};

/// Every valid value set, in the order the tests run them.
const CASES: &[&Case] = &[
    &DEFAULTS,
    &CERT_MANAGER,
    &TWO_REPLICAS,
    &SINGLE_REPLICA,
    &MONITORING,
    &OTHER_NAMESPACE,
    &PRODUCTION,
    &KINDS_CASE,
];

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn defaults_render_a_safe_operator() {
    check_case(&DEFAULTS);
}

#[test]
fn cert_manager_issues_the_webhook_certificate() {
    check_case(&CERT_MANAGER);
}

#[test]
fn two_replicas_spread_with_a_disruption_budget() {
    check_case(&TWO_REPLICAS);
}

#[test]
fn single_replica_has_no_disruption_budget() {
    check_case(&SINGLE_REPLICA);
}

#[test]
fn monitoring_adds_service_monitor_alerts_dashboard_and_network_policy() {
    check_case(&MONITORING);
}

#[test]
fn other_namespace_and_watched_namespaces() {
    check_case(&OTHER_NAMESPACE);
}

#[test]
fn the_production_example_values() {
    check_case(&PRODUCTION);
}

#[test]
fn rbac_and_webhook_rules_cover_exactly_the_turned_on_kinds() {
    check_case(&KINDS_CASE);
}

#[test]
fn every_value_set_is_checked() {
    let dir = repo().join("tests/fixtures/values");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut known: Vec<String> = CASES
        .iter()
        .filter(|c| !c.file.starts_with("examples/"))
        .map(|c| c.file.to_owned())
        .collect();
    known.extend(INVALID.iter().map(|(file, _)| (*file).to_owned()));
    known.sort();
    assert_eq!(
        files, known,
        "every value set in tests/fixtures/values/ needs a Case (or an INVALID entry) in tests/chart.rs"
    );
}

/// Value sets the schema must reject, with the fragments the error message must contain.
const INVALID: &[(&str, &[&str])] = &[
    (
        "invalid-wrong-type.yaml",
        &["/replicaCount", "got string, want integer"],
    ),
    (
        "invalid-unknown-key.yaml",
        &[
            "/webhook",
            "additional properties 'failurPolicy' not allowed",
        ],
    ),
    (
        "invalid-workload-kind.yaml",
        &["/workloadKinds/1", "value must be one of 'Job', 'JobSet'"],
    ),
];

#[test]
fn schema_rejects_wrong_types_and_unknown_keys() {
    let Some(helm) = helm_or_skip("schema_rejects_wrong_types_and_unknown_keys") else {
        return;
    };
    for (file, fragments) in INVALID {
        let values = fixture(file);
        for (what, output) in [
            (
                "helm template",
                helm_template(&helm, "carbonshift", "carbonshift", &values),
            ),
            (
                "helm lint --strict",
                helm_lint(&helm, "carbonshift", &values),
            ),
        ] {
            assert!(
                !output.ok,
                "{what} accepted {file}; stdout:\n{}",
                output.stdout
            );
            let message = format!("{}{}", output.stdout, output.stderr);
            for fragment in *fragments {
                assert!(
                    message.contains(fragment),
                    "{what} rejected {file} without naming `{fragment}`:\n{message}"
                );
            }
        }
    }
}

#[test]
fn schema_rejects_a_bad_duration_and_a_bad_enum() {
    let Some(helm) = helm_or_skip("schema_rejects_a_bad_duration_and_a_bad_enum") else {
        return;
    };
    for (set, fragment) in [
        ("config.margin=five", "/config/margin"),
        ("webhook.failurePolicy=Maybe", "/webhook/failurePolicy"),
        (
            "defaultForecast.provider=electricityMaps",
            "/defaultForecast/provider",
        ),
    ] {
        let output = run(Command::new(&helm)
            .args(["template", "carbonshift"])
            .arg(chart_dir())
            .args(["--set", set]));
        assert!(!output.ok, "helm template accepted --set {set}");
        assert!(
            output.stderr.contains(fragment),
            "the error for --set {set} does not name {fragment}:\n{}",
            output.stderr
        );
    }
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let generated = carbonshift::api::crd::render_all().expect("CRDs render");
    let chart_crds = repo().join("charts/carbonshift/crds");
    let repo_crds = repo().join("crds");
    let expected: BTreeSet<String> = generated.iter().map(|(f, _)| (*f).to_owned()).collect();
    for dir in [&chart_crds, &repo_crds] {
        let present: BTreeSet<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            present,
            expected,
            "{} must hold exactly the generated CRDs (run `make generate`)",
            dir.display()
        );
    }
    for (file, yaml) in &generated {
        for dir in [&chart_crds, &repo_crds] {
            let path = dir.join(file);
            let on_disk = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            assert!(
                on_disk == *yaml,
                "{} differs from the CRD generated from src/api/ (run `make generate`)",
                path.display()
            );
        }
    }
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let path = chart_dir().join("Chart.yaml");
    let text = std::fs::read_to_string(&path).expect("Chart.yaml");
    let chart: Value = serde_saphyr::from_str(&text).expect("Chart.yaml parses");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "carbonshift");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion must equal the crate version in Cargo.toml"
    );
}

#[test]
fn every_value_is_documented() {
    let path = chart_dir().join("values.yaml");
    let text = std::fs::read_to_string(&path).expect("values.yaml");
    let undocumented = undocumented_keys(&text);
    assert!(
        undocumented.is_empty(),
        "values.yaml keys without a `# --` comment (on the key or a parent): {undocumented:?}"
    );
}

#[test]
fn undocumented_keys_are_found() {
    let text = "# -- documented\na: 1\nb:\n  c: 2\n# -- parent\nd:\n  e: 3\nf:\n  # -- child\n  g: 4\n\n  h: 5\n# plain comment\ni: 6\nj:\n  - k: 7\n";
    assert_eq!(undocumented_keys(text), vec!["b.c", "f.h", "i", "j"]);
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let path = chart_dir().join("files/dashboard.json");
    let text = std::fs::read_to_string(&path).expect("dashboard.json");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    let exprs = dashboard_exprs(&dashboard);
    assert!(
        exprs.len() >= 15,
        "dashboard has only {} queries",
        exprs.len()
    );
    let mut used = BTreeSet::new();
    for expr in &exprs {
        used.extend(metric_names(expr));
    }
    for name in &used {
        assert!(
            is_contract_metric(name),
            "dashboard queries {name}, which the operator does not export"
        );
    }
    for required in [
        "carbonshift_workloads",
        "carbonshift_held_past_latest_start",
        "carbonshift_avoided_grams_total",
        "carbonshift_forecast_intensity",
        "carbonshift_leader",
        // The verified-savings row.
        "carbonshift_ledger_avoided_grams_total",
        "carbonshift_ledger_emitted_grams_total",
        "carbonshift_wasted_grams_total",
        "carbonshift_budget_actions_total",
    ] {
        assert!(used.contains(required), "dashboard never shows {required}");
    }
}

#[test]
fn metric_names_are_extracted() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.5, sum by (le) (rate(carbonshift_release_lateness_seconds_bucket{job=\"x\"}[5m]))) and on (instance) carbonshift_leader"
        ),
        BTreeSet::from([
            "carbonshift_leader".to_owned(),
            "carbonshift_release_lateness_seconds_bucket".to_owned()
        ])
    );
    assert!(is_contract_metric(
        "carbonshift_release_lateness_seconds_bucket"
    ));
    assert!(!is_contract_metric("carbonshift_workloads_bucket"));
    assert!(!is_contract_metric("carbonshift_releases"));
}

// ---------------------------------------------------------------------------------------------
// One value set, end to end.

fn check_case(case: &Case) {
    let Some(helm) = helm_or_skip(case.file) else {
        return;
    };
    let values = fixture(case.file);

    let lint = helm_lint(&helm, case.namespace, &values);
    assert!(
        lint.ok,
        "helm lint --strict failed for {}:\n{}{}",
        case.file, lint.stdout, lint.stderr
    );

    let output = helm_template(&helm, case.release, case.namespace, &values);
    assert!(
        output.ok,
        "helm template failed for {}:\n{}",
        case.file, output.stderr
    );
    let objects = Rendered::parse(&output.stdout, case);

    check_objects(case, &objects);
    check_rbac(case, &objects);
    let deployment = check_deployment(case, &objects);
    check_service(case, &objects, &deployment);
    check_webhook(case, &objects, &deployment);
    check_disruption_budget(case, &objects, &deployment);
    check_release_hook(case, &objects, &deployment);
    check_default_forecast(case, &objects);
    check_monitoring(case, &objects);
    check_network_policy(case, &objects, &deployment);
}

/// The rendered objects of one value set.
struct Rendered {
    objects: Vec<Value>,
    file: &'static str,
}

impl Rendered {
    fn parse(stream: &str, case: &Case) -> Self {
        let docs: Vec<Value> = serde_saphyr::from_multiple(stream)
            .unwrap_or_else(|e| panic!("helm template output for {} is not YAML: {e}", case.file));
        let objects: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
        assert!(!objects.is_empty(), "{} rendered nothing", case.file);
        Self {
            objects,
            file: case.file,
        }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn typed<T: DeserializeOwned>(&self, kind: &str) -> Vec<T> {
        self.of_kind(kind)
            .into_iter()
            .map(|o| {
                serde_json::from_value(o.clone()).unwrap_or_else(|e| {
                    panic!(
                        "{}: {kind} {} does not match the Kubernetes schema: {e}",
                        self.file, o["metadata"]["name"]
                    )
                })
            })
            .collect()
    }

    fn one<T: DeserializeOwned>(&self, kind: &str) -> T {
        let mut all = self.typed::<T>(kind);
        assert_eq!(all.len(), 1, "{}: expected exactly one {kind}", self.file);
        all.remove(0)
    }
}

fn check_objects(case: &Case, r: &Rendered) {
    let cluster_scoped = [
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "CarbonForecast",
    ];
    let mut seen = BTreeSet::new();
    for o in &r.objects {
        let kind = o["kind"].as_str().expect("every object has a kind");
        let name = o["metadata"]["name"]
            .as_str()
            .expect("every object has a name");
        assert!(
            o["apiVersion"].is_string(),
            "{kind} {name} has no apiVersion"
        );
        assert!(
            name.len() <= 63 || kind == "ClusterRole" || kind == "ClusterRoleBinding",
            "{kind} {name} is longer than 63 characters"
        );
        let namespace = o["metadata"]["namespace"].as_str();
        if cluster_scoped.contains(&kind) {
            assert!(
                namespace.is_none(),
                "cluster-scoped {kind} {name} has a namespace"
            );
        } else {
            let ns = namespace.unwrap_or_else(|| panic!("{kind} {name} has no namespace"));
            let allowed = ns == case.namespace
                || (kind == "RoleBinding" && case.watched.contains(&ns))
                || (kind == "ConfigMap" && case.monitoring && ns == "monitoring");
            assert!(allowed, "{kind} {name} is in unexpected namespace {ns}");
        }
        assert!(
            seen.insert((
                kind.to_owned(),
                namespace.map(str::to_owned),
                name.to_owned()
            )),
            "{kind} {name} is rendered twice"
        );
        let labels = &o["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/instance"], case.release,
            "{kind} {name} lacks the instance label"
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC.

fn check_rbac(case: &Case, r: &Rendered) {
    let roles: Vec<Role> = r.typed("Role");
    let cluster_roles: Vec<ClusterRole> = r.typed("ClusterRole");
    let role_bindings: Vec<RoleBinding> = r.typed("RoleBinding");
    let cluster_role_bindings: Vec<ClusterRoleBinding> = r.typed("ClusterRoleBinding");

    // No wildcard anywhere; every rule names its groups, resources and verbs.
    let all_rules = roles
        .iter()
        .map(|role| {
            (
                format!("Role {}", name_of(&role.metadata)),
                role.rules.clone(),
            )
        })
        .chain(cluster_roles.iter().map(|role| {
            (
                format!("ClusterRole {}", name_of(&role.metadata)),
                role.rules.clone(),
            )
        }));
    for (what, rules) in all_rules {
        let rules = rules.unwrap_or_default();
        assert!(!rules.is_empty(), "{what} has no rules");
        for rule in &rules {
            let groups = rule.api_groups.clone().unwrap_or_default();
            let resources = rule.resources.clone().unwrap_or_default();
            assert!(!groups.is_empty(), "{what}: a rule without apiGroups");
            assert!(!resources.is_empty(), "{what}: a rule without resources");
            assert!(!rule.verbs.is_empty(), "{what}: a rule without verbs");
            assert!(rule.non_resource_urls.is_none(), "{what}: nonResourceURLs");
            for item in groups.iter().chain(&resources).chain(&rule.verbs) {
                assert!(!item.contains('*'), "{what}: wildcard `{item}` in {rule:?}");
            }
            for item in rule.resource_names.iter().flatten() {
                assert!(
                    !item.contains('*'),
                    "{what}: wildcard resource name `{item}`"
                );
            }
        }
    }

    // Secrets appear only in a namespaced Role in the release namespace.
    for role in &cluster_roles {
        for rule in role.rules.iter().flatten() {
            assert!(
                !rule.resources.iter().flatten().any(|res| res == "secrets"),
                "ClusterRole {} grants Secrets",
                name_of(&role.metadata)
            );
        }
    }
    for role in &roles {
        for rule in role.rules.iter().flatten() {
            if rule.resources.iter().flatten().any(|res| res == "secrets") {
                assert_eq!(role.metadata.namespace.as_deref(), Some(case.namespace));
                assert_eq!(rule.verbs, ["get"], "Secrets are only read, by name");
                let names: Vec<&str> = rule
                    .resource_names
                    .iter()
                    .flatten()
                    .map(String::as_str)
                    .collect();
                assert_eq!(names, case.secret_names, "Secret resourceNames");
            }
        }
    }

    // Aggregated roles for people are read-only.
    for role in &cluster_roles {
        let aggregated = role
            .metadata
            .labels
            .iter()
            .flatten()
            .any(|(k, _)| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"));
        if aggregated {
            for rule in role.rules.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        ["get", "list", "watch"].contains(&verb.as_str()),
                        "aggregated ClusterRole {} grants {verb}",
                        name_of(&role.metadata)
                    );
                }
            }
        }
    }

    // The operator's ServiceAccount gets exactly the contract's permissions, in the right scopes.
    let sa = case.fullname;
    let subject_is_operator = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount"
                && s.name == sa
                && s.namespace.as_deref() == Some(case.namespace)
        })
    };
    let mut granted: BTreeSet<Grant> = BTreeSet::new();
    let mut add = |scope: &str, rules: &[PolicyRule]| {
        for rule in rules {
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        granted.insert((
                            scope.to_owned(),
                            group.clone(),
                            resource.clone(),
                            verb.clone(),
                        ));
                    }
                }
            }
        }
    };
    let cluster_role_rules = |name: &str| -> Vec<PolicyRule> {
        cluster_roles
            .iter()
            .find(|role| name_of(&role.metadata) == name)
            .unwrap_or_else(|| {
                panic!("binding refers to ClusterRole {name}, which is not rendered")
            })
            .rules
            .clone()
            .unwrap_or_default()
    };
    for binding in &cluster_role_bindings {
        if subject_is_operator(&binding.subjects) {
            assert_eq!(binding.role_ref.kind, "ClusterRole");
            add("cluster", &cluster_role_rules(&binding.role_ref.name));
        }
    }
    for binding in &role_bindings {
        if subject_is_operator(&binding.subjects) {
            let ns = binding
                .metadata
                .namespace
                .clone()
                .expect("RoleBinding namespace");
            let rules = match binding.role_ref.kind.as_str() {
                "ClusterRole" => cluster_role_rules(&binding.role_ref.name),
                "Role" => roles
                    .iter()
                    .find(|role| {
                        name_of(&role.metadata) == binding.role_ref.name
                            && role.metadata.namespace.as_deref() == Some(ns.as_str())
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "RoleBinding refers to a missing Role {}",
                            binding.role_ref.name
                        )
                    })
                    .rules
                    .clone()
                    .unwrap_or_default(),
                other => panic!("RoleBinding to a {other}"),
            };
            add(&ns, &rules);
        }
    }
    let mut expected: BTreeSet<Grant> = BTreeSet::new();
    let mut expect = |scope: &str, list: &[(&str, &str, &[&str])]| {
        for (group, resource, verbs) in list {
            for verb in *verbs {
                expected.insert((
                    scope.to_owned(),
                    (*group).to_owned(),
                    (*resource).to_owned(),
                    (*verb).to_owned(),
                ));
            }
        }
    };
    expect("cluster", CLUSTER_PERMISSIONS);
    expect(case.namespace, RELEASE_NAMESPACE_PERMISSIONS);
    // Exactly the turned-on kinds, nothing of the others.
    let finalizers: Vec<String> = kinds_of(case)
        .iter()
        .map(|(_, _, resource)| format!("{resource}/finalizers"))
        .collect();
    let mut workload_permissions: Vec<(&str, &str, &[&str])> = WORKLOAD_PERMISSIONS.to_vec();
    for ((group, _, resource), finalizers) in kinds_of(case).into_iter().zip(&finalizers) {
        workload_permissions.push((group, resource, PER_KIND_VERBS.0));
        workload_permissions.push((group, finalizers.as_str(), PER_KIND_VERBS.1));
    }
    if case.watched.is_empty() {
        expect("cluster", &workload_permissions);
    } else {
        for ns in case.watched {
            expect(ns, &workload_permissions);
        }
    }
    let missing: Vec<&Grant> = expected.difference(&granted).collect();
    let extra: Vec<&Grant> = granted.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: the operator's permissions differ from the contract\nmissing: {missing:?}\nextra: {extra:?}",
        case.file
    );

    // The Lease: create (not restrictable by name), and get/update/patch on the one Lease only.
    let release_role = roles
        .iter()
        .find(|role| role.metadata.namespace.as_deref() == Some(case.namespace))
        .expect("a Role in the release namespace");
    let lease_rules: Vec<&PolicyRule> = release_role
        .rules
        .iter()
        .flatten()
        .filter(|rule| rule.resources.iter().flatten().any(|res| res == "leases"))
        .collect();
    assert!(!lease_rules.is_empty(), "no Lease RBAC");
    for rule in lease_rules {
        assert_eq!(
            rule.api_groups.as_deref(),
            Some(&["coordination.k8s.io".to_owned()][..])
        );
        if rule.verbs == ["create"] {
            assert!(
                rule.resource_names.is_none(),
                "create cannot be limited by name"
            );
        } else {
            assert_eq!(
                rule.resource_names.as_deref(),
                Some(&[case.lease.to_owned()][..])
            );
            assert!(!rule.verbs.contains(&"create".to_owned()));
        }
    }
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Pods.

fn check_deployment(case: &Case, r: &Rendered) -> Deployment {
    let deployment: Deployment = r.one("Deployment");
    assert_eq!(name_of(&deployment.metadata), case.fullname);
    let spec = deployment.spec.clone();
    assert_eq!(spec.replicas, Some(case.replicas), "replicas");
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .metadata
        .clone()
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert!(
        is_subset(&selector, &template_labels),
        "selector does not match the pod labels"
    );

    let pod = check_restricted_pod("Deployment", &spec.template);
    assert_eq!(pod.service_account_name.as_deref(), Some(case.fullname));
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    assert_eq!(
        container.command.as_deref(),
        Some(&["/carbonshift".to_owned()][..])
    );
    assert_eq!(container.args.as_deref(), Some(&["run".to_owned()][..]));
    let image = container.image.clone().unwrap_or_default();
    if case.file == "other-namespace.yaml" {
        assert_eq!(image, "registry.example.com/mirror/carbonshift:0.1.0-rc.1");
    } else {
        assert_eq!(
            image,
            format!(
                "ghcr.io/carbonshift/carbonshift:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    // Probes on the metrics port.
    for (probe, path) in [
        (&container.liveness_probe, "/healthz"),
        (&container.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("no HTTP probe on {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            container_port(container, &get.port),
            METRICS_PORT,
            "{path} probe port"
        );
    }
    let ports: BTreeMap<String, i32> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([
            ("metrics".to_owned(), METRICS_PORT),
            ("webhook".to_owned(), WEBHOOK_PORT)
        ])
    );

    // The environment: only variables the operator reads, with values it accepts.
    let env = env_map(container);
    for name in env.keys() {
        assert!(
            RUN_ENV.contains(&name.as_str()),
            "unknown environment variable {name}"
        );
    }
    let field_ref = |name: &str| {
        container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.clone())
    };
    assert_eq!(
        field_ref("CARBONSHIFT_OPERATOR_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    assert_eq!(
        field_ref("CARBONSHIFT_POD_NAME").as_deref(),
        Some("metadata.name")
    );
    assert_eq!(
        env["CARBONSHIFT_WEBHOOK_ADDR"],
        format!("0.0.0.0:{WEBHOOK_PORT}")
    );
    assert_eq!(
        env["CARBONSHIFT_METRICS_ADDR"],
        format!("0.0.0.0:{METRICS_PORT}")
    );
    assert_eq!(env["CARBONSHIFT_TLS_CERT"], format!("{TLS_DIR}/tls.crt"));
    assert_eq!(env["CARBONSHIFT_TLS_KEY"], format!("{TLS_DIR}/tls.key"));
    assert_eq!(env["CARBONSHIFT_LEADER_ELECTION"], "true");
    assert_eq!(env["CARBONSHIFT_LEASE_NAME"], case.lease);
    assert_eq!(env["CARBONSHIFT_DEFAULT_FORECAST"], "default");
    assert_eq!(env["CARBONSHIFT_WORKLOAD_KINDS"], case.kinds.join(","));
    assert_eq!(
        env["CARBONSHIFT_KUEUE_ADMISSION_GATE"],
        case.kueue_gate.to_string()
    );
    assert_eq!(env["CARBONSHIFT_WASTE_GUARD_FAILURES"], case.waste_guard);
    for key in [
        "CARBONSHIFT_DEFAULT_MAX_DELAY",
        "CARBONSHIFT_DEFAULT_DURATION",
        "CARBONSHIFT_MAX_ALLOWED_DELAY",
        "CARBONSHIFT_MARGIN",
    ] {
        let value = &env[key];
        assert!(
            carbonshift::units::parse_duration(value).is_ok(),
            "{key}={value} is not a duration the operator accepts"
        );
    }
    for key in [
        "CARBONSHIFT_WATTS_PER_GPU",
        "CARBONSHIFT_WATTS_PER_CORE",
        "CARBONSHIFT_PUE",
    ] {
        let value = &env[key];
        assert!(
            value.parse::<f64>().is_ok_and(|v| v > 0.0),
            "{key}={value} is not a positive number"
        );
    }
    assert_eq!(
        env["CARBONSHIFT_GPU_RESOURCES"],
        "nvidia.com/gpu,amd.com/gpu"
    );
    let expected_policy = if case.file == "other-namespace.yaml" {
        "hold"
    } else {
        "release"
    };
    assert_eq!(env["CARBONSHIFT_NO_FORECAST"], expected_policy);
    assert_eq!(env["CARBONSHIFT_FORECAST_WAIT"], "2m");
    assert_eq!(env["CARBONSHIFT_FORECAST_SELECTOR"], "");
    assert!(["json", "text"].contains(&env["CARBONSHIFT_LOG_FORMAT"].as_str()));
    if case.watched.is_empty() {
        assert!(!env.contains_key("CARBONSHIFT_NAMESPACES"));
    } else {
        assert_eq!(env["CARBONSHIFT_NAMESPACES"], case.watched.join(","));
    }

    // The serving certificate is mounted where the operator reads it, from the TLS Secret.
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == TLS_DIR)
        .expect("the TLS directory is mounted");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the TLS volume");
    let secret = volume.secret.as_ref().expect("the TLS volume is a Secret");
    assert_eq!(
        secret.secret_name.as_deref(),
        Some(format!("{}-webhook-tls", case.fullname).as_str())
    );

    // Replicas are spread over nodes.
    if case.replicas > 1 {
        let anti = pod
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .expect("replicas have a pod anti-affinity");
        let terms = anti
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .map(|t| t.topology_key.clone())
            .chain(
                anti.preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                    .map(|t| t.pod_affinity_term.topology_key.clone()),
            )
            .collect::<Vec<_>>();
        assert!(terms.contains(&"kubernetes.io/hostname".to_owned()));
    }
    deployment
}

/// Checks a pod template against the Pod Security "restricted" profile and returns its spec.
fn check_restricted_pod(what: &str, template: &PodTemplateSpec) -> PodSpec {
    let pod = template
        .spec
        .clone()
        .unwrap_or_else(|| panic!("{what}: no pod spec"));
    assert!(pod.host_network != Some(true), "{what}: hostNetwork");
    assert!(pod.host_pid != Some(true), "{what}: hostPID");
    assert!(pod.host_ipc != Some(true), "{what}: hostIPC");
    for volume in pod.volumes.iter().flatten() {
        assert!(
            volume.host_path.is_none(),
            "{what}: hostPath volume {}",
            volume.name
        );
    }
    let pod_sc = pod
        .security_context
        .clone()
        .unwrap_or_else(|| panic!("{what}: no pod securityContext"));
    assert_eq!(
        pod_sc.run_as_non_root,
        Some(true),
        "{what}: pod runAsNonRoot"
    );
    assert_ne!(pod_sc.run_as_user, Some(0), "{what}: runs as root");
    assert_eq!(
        pod_sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault"),
        "{what}: pod seccompProfile"
    );
    assert!(!pod.containers.is_empty());
    for container in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let name = &container.name;
        let sc = container
            .security_context
            .clone()
            .unwrap_or_else(|| panic!("{what}/{name}: no securityContext"));
        assert_eq!(
            sc.allow_privilege_escalation,
            Some(false),
            "{what}/{name}: allowPrivilegeEscalation"
        );
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{what}/{name}: readOnlyRootFilesystem"
        );
        assert!(sc.privileged != Some(true), "{what}/{name}: privileged");
        assert_eq!(
            sc.run_as_non_root,
            Some(true),
            "{what}/{name}: runAsNonRoot"
        );
        assert_ne!(sc.run_as_user, Some(0), "{what}/{name}: runs as root");
        let caps = sc
            .capabilities
            .clone()
            .unwrap_or_else(|| panic!("{what}/{name}: no capabilities"));
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_owned()][..]),
            "{what}/{name}: drop ALL"
        );
        assert!(
            caps.add.unwrap_or_default().is_empty(),
            "{what}/{name}: adds capabilities"
        );
        assert_eq!(
            sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault"),
            "{what}/{name}: seccompProfile"
        );
        let resources = container
            .resources
            .clone()
            .unwrap_or_else(|| panic!("{what}/{name}: no resources"));
        for (kind, list) in [
            ("requests", resources.requests),
            ("limits", resources.limits),
        ] {
            let list = list.unwrap_or_default();
            for resource in ["cpu", "memory"] {
                assert!(
                    list.contains_key(resource),
                    "{what}/{name}: no {resource} {kind}"
                );
            }
        }
        for port in container.ports.iter().flatten() {
            assert!(port.host_port.is_none(), "{what}/{name}: hostPort");
        }
    }
    pod
}

fn env_map(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn container_port(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    }
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn operator_pod(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .template
        .spec
        .as_ref()
        .expect("the Deployment has a pod spec")
}

fn is_subset(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

// ---------------------------------------------------------------------------------------------
// Service, webhook, PDB, hook, forecast, monitoring.

fn check_service(case: &Case, r: &Rendered, deployment: &Deployment) {
    let service: Service = r.one("Service");
    assert_eq!(name_of(&service.metadata), case.fullname);
    let spec = service.spec.expect("Service spec");
    let selector = spec.selector.unwrap_or_default();
    assert!(
        is_subset(&selector, &pod_labels(deployment)),
        "Service does not select the operator pods"
    );
    let container = &operator_pod(deployment).containers[0];
    let ports: BTreeMap<String, (i32, i32)> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let target = container_port(container, p.target_port.as_ref().expect("targetPort"));
            (p.name.clone().unwrap_or_default(), (p.port, target))
        })
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([
            ("metrics".to_owned(), (METRICS_PORT, METRICS_PORT)),
            ("webhook".to_owned(), (WEBHOOK_PORT, WEBHOOK_PORT)),
        ])
    );
    // The hook's pod must not receive webhook traffic.
    for job in r.typed::<Job>("Job") {
        let labels = job
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.labels)
            .unwrap_or_default();
        assert!(
            !is_subset(&selector, &labels),
            "the Service selects the hook's pod"
        );
    }
}

fn check_webhook(case: &Case, r: &Rendered, deployment: &Deployment) {
    let config: MutatingWebhookConfiguration = r.one("MutatingWebhookConfiguration");
    let webhooks = config.webhooks.clone().unwrap_or_default();
    assert_eq!(webhooks.len(), 1);
    let hook = &webhooks[0];
    assert_eq!(
        hook.failure_policy.as_deref(),
        Some(case.failure_policy),
        "failurePolicy"
    );
    assert_eq!(
        hook.timeout_seconds,
        Some(case.timeout_seconds),
        "timeoutSeconds"
    );
    assert!((1..=30).contains(&case.timeout_seconds));
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.admission_review_versions, ["v1"]);
    assert_eq!(hook.reinvocation_policy.as_deref(), Some("Never"));

    // One rule per turned-on kind: CREATE of its resource in its version, nothing else.
    let rules = hook.rules.clone().unwrap_or_default();
    let kinds = kinds_of(case);
    assert_eq!(rules.len(), kinds.len(), "one rule per turned-on kind");
    for (rule, (group, version, resource)) in rules.iter().zip(kinds) {
        assert_eq!(rule.operations.as_deref(), Some(&["CREATE".to_owned()][..]));
        assert_eq!(rule.api_groups.as_deref(), Some(&[group.to_owned()][..]));
        assert_eq!(
            rule.api_versions.as_deref(),
            Some(&[version.to_owned()][..])
        );
        assert_eq!(rule.resources.as_deref(), Some(&[resource.to_owned()][..]));
        assert_eq!(rule.scope.as_deref(), Some("Namespaced"));
    }

    let service = hook
        .client_config
        .service
        .clone()
        .expect("the webhook calls the Service");
    assert_eq!(service.name, case.fullname);
    assert_eq!(service.namespace, case.namespace);
    assert_eq!(service.path.as_deref(), Some("/mutate"));
    assert_eq!(service.port, Some(WEBHOOK_PORT));
    assert!(hook.client_config.url.is_none());

    // Namespace exclusions: kube-system, the release namespace and the extra ones; when only some
    // namespaces are watched, only those are sent.
    let selector = hook
        .namespace_selector
        .clone()
        .expect("a namespaceSelector");
    let expressions = selector.match_expressions.clone().unwrap_or_default();
    let values_of = |operator: &str| -> Vec<String> {
        expressions
            .iter()
            .filter(|e| e.key == "kubernetes.io/metadata.name" && e.operator == operator)
            .flat_map(|e| e.values.clone().unwrap_or_default())
            .collect()
    };
    let mut excluded = vec!["kube-system".to_owned(), case.namespace.to_owned()];
    excluded.extend(case.extra_excluded.iter().map(|s| (*s).to_owned()));
    assert_eq!(values_of("NotIn"), excluded, "excluded namespaces");
    let included: Vec<String> = case.watched.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        values_of("In"),
        included,
        "webhook limited to the watched namespaces"
    );
    if case.file == "other-namespace.yaml" {
        assert_eq!(
            selector.match_labels,
            Some(BTreeMap::from([(
                "carbonshift.dev/enabled".to_owned(),
                "true".to_owned()
            )]))
        );
        assert!(hook.object_selector.is_some());
    }
    let conditions = hook.match_conditions.clone().unwrap_or_default();
    assert!(
        conditions.iter().any(|c| c
            .expression
            .contains("object.metadata.annotations.exists(k, k.startsWith('carbonshift.dev/'))")),
        "only annotated Jobs are sent to the webhook"
    );

    let tls_secret = format!("{}-webhook-tls", case.fullname);
    let dns_name = format!("{}.{}.svc", case.fullname, case.namespace);
    if case.cert_manager {
        assert!(
            hook.client_config.ca_bundle.is_none(),
            "cert-manager injects the CA bundle"
        );
        let certificate = r.of_kind("Certificate");
        assert_eq!(certificate.len(), 1);
        let certificate = certificate[0];
        let name = certificate["metadata"]["name"]
            .as_str()
            .expect("Certificate name");
        assert_eq!(
            config
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("cert-manager.io/inject-ca-from"))
                .map(String::as_str),
            Some(format!("{}/{name}", case.namespace).as_str())
        );
        assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
        assert_eq!(certificate["metadata"]["namespace"], case.namespace);
        assert_eq!(certificate["spec"]["secretName"], tls_secret.as_str());
        let dns: Vec<&str> = certificate["spec"]["dnsNames"]
            .as_array()
            .expect("dnsNames")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            dns.contains(&dns_name.as_str()),
            "Certificate lacks {dns_name}"
        );
        let issuer = &certificate["spec"]["issuerRef"];
        let issuers = r.of_kind("Issuer");
        assert!(
            issuers
                .iter()
                .any(|i| i["metadata"]["name"] == issuer["name"]
                    && i["spec"]["selfSigned"].is_object()),
            "the Certificate's Issuer is rendered"
        );
        assert!(
            r.of_kind("Secret").is_empty(),
            "no chart-generated Secret with cert-manager"
        );
    } else {
        assert!(r.of_kind("Certificate").is_empty() && r.of_kind("Issuer").is_empty());
        let secrets: Vec<Secret> = r.typed("Secret");
        let secret = secrets
            .iter()
            .find(|s| name_of(&s.metadata) == tls_secret)
            .expect("the chart generates the TLS Secret");
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.data.clone().unwrap_or_default();
        let ca = &data.get("ca.crt").expect("ca.crt").0;
        let crt = &data.get("tls.crt").expect("tls.crt").0;
        let key = &data.get("tls.key").expect("tls.key").0;
        let bundle = &hook.client_config.ca_bundle.as_ref().expect("caBundle").0;
        assert_eq!(bundle, ca, "the caBundle is the CA in the Secret");
        verify_serving_certificate(ca, crt, key, &dns_name);
    }
    // The pods mount the same Secret the certificate is stored in.
    let volumes = operator_pod(deployment).volumes.clone().unwrap_or_default();
    assert!(
        volumes
            .iter()
            .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref())
                == Some(tls_secret.as_str()))
    );
}

/// The CA bundle (one or more PEM certificates) must validate the serving certificate for the name
/// the API server calls, and the key must belong to the certificate: what the API server and
/// rustls will check at run time.
fn verify_serving_certificate(ca_pem: &[u8], crt_pem: &[u8], key_pem: &[u8], dns_name: &str) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let crt = CertificateDer::from_pem_slice(crt_pem).expect("tls.crt is a PEM certificate");
    let key = PrivateKeyDer::from_pem_slice(key_pem).expect("tls.key is a PEM private key");

    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(ca.expect("the CA bundle holds PEM certificates"))
            .expect("the CA is usable as a root");
    }
    assert!(!roots.is_empty(), "the CA bundle is empty");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let name = ServerName::try_from(dns_name.to_owned()).expect("DNS name");
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &crt,
        &[],
        &name,
        &[],
        UnixTime::now(),
    )
    .unwrap_or_else(|e| {
        panic!("the caBundle does not validate the serving certificate for {dns_name}: {e}")
    });

    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![crt], key)
        .expect("tls.key belongs to tls.crt and rustls can serve them");
}

fn check_disruption_budget(case: &Case, r: &Rendered, deployment: &Deployment) {
    let budgets: Vec<PodDisruptionBudget> = r.typed("PodDisruptionBudget");
    if case.replicas > 1 {
        assert_eq!(budgets.len(), 1, "a PDB when replicas > 1");
        let spec = budgets[0].spec.clone().expect("PDB spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        let selector = spec
            .selector
            .and_then(|s| s.match_labels)
            .unwrap_or_default();
        assert!(
            is_subset(&selector, &pod_labels(deployment)),
            "the PDB selects the operator pods"
        );
    } else {
        assert!(
            budgets.is_empty(),
            "no PDB for a single replica (it would block drains)"
        );
    }
}

fn check_release_hook(case: &Case, r: &Rendered, deployment: &Deployment) {
    let jobs: Vec<Job> = r.typed("Job");
    assert_eq!(jobs.len(), 1, "exactly one Job: the pre-delete hook");
    let job = &jobs[0];
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("helm.sh/hook").map(String::as_str),
        Some("pre-delete")
    );
    let policy = annotations
        .get("helm.sh/hook-delete-policy")
        .cloned()
        .unwrap_or_default();
    assert!(
        policy.contains("before-hook-creation"),
        "a retried uninstall replaces the old hook Job"
    );
    let spec = job.spec.clone().expect("Job spec");
    assert!(
        spec.active_deadline_seconds.is_some(),
        "the hook cannot hang an uninstall for ever"
    );
    let pod = check_restricted_pod("pre-delete hook", &spec.template);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.service_account_name.as_deref(), Some(case.fullname));
    let container = &pod.containers[0];
    let operator = &operator_pod(deployment).containers[0];
    // Every held Job, or, with a namespace allow-list, every held Job in the watched namespaces
    // (the only place the operator may patch Jobs).
    let expected: Vec<String> = match env_map(operator).get("CARBONSHIFT_NAMESPACES") {
        None => vec!["release".into(), "--all".into()],
        Some(list) => std::iter::once("release".to_owned())
            .chain(
                list.split(',')
                    .flat_map(|ns| ["--namespace".to_owned(), ns.trim().to_owned()]),
            )
            .collect(),
    };
    assert_eq!(container.args.as_deref(), Some(&expected[..]));
    assert_eq!(
        container.image, operator.image,
        "the hook runs the operator's image"
    );
    assert_eq!(container.command, operator.command);
    let env = env_map(container);
    for name in env.keys() {
        assert!(
            RUN_ENV.contains(&name.as_str()),
            "hook: unknown environment variable {name}"
        );
    }
    // The hook releases held workloads of the same kinds the operator holds.
    assert_eq!(
        env.get("CARBONSHIFT_WORKLOAD_KINDS"),
        env_map(operator).get("CARBONSHIFT_WORKLOAD_KINDS")
    );
}

fn check_default_forecast(case: &Case, r: &Rendered) {
    let forecasts: Vec<CarbonForecast> = r.typed("CarbonForecast");
    assert_eq!(forecasts.len(), 1, "the default CarbonForecast");
    let forecast = &forecasts[0];
    assert_eq!(forecast.metadata.name.as_deref(), Some("default"));
    match (case.forecast, &forecast.spec.provider) {
        (ExpectedForecast::Builtin(name), ProviderSpec::Trace(trace)) => {
            assert_eq!(trace.builtin.as_deref(), Some(name));
            assert!(trace.config_map_ref.is_none());
            assert!(
                carbonshift::trace::builtin(name).is_some(),
                "{name} is not a trace built into the operator"
            );
        }
        (ExpectedForecast::UkNational, ProviderSpec::UkCarbonIntensity(uk)) => {
            assert!(
                uk.region_id.is_none() && uk.postcode.is_none(),
                "the national forecast"
            );
        }
        (expected, got) => panic!("default forecast: expected {expected:?}, got {got:?}"),
    }
    assert!(
        forecast.spec.credentials_secret_ref.is_none(),
        "the default needs no account"
    );
}

fn check_monitoring(case: &Case, r: &Rendered) {
    let monitors = r.of_kind("ServiceMonitor");
    let rules = r.of_kind("PrometheusRule");
    let config_maps: Vec<ConfigMap> = r.typed("ConfigMap");
    if !case.monitoring {
        assert!(monitors.is_empty() && rules.is_empty() && config_maps.is_empty());
        return;
    }

    // ServiceMonitor → the Service's metrics port.
    assert_eq!(monitors.len(), 1);
    let monitor = monitors[0];
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let service: Service = r.one("Service");
    let service_labels = service.metadata.labels.clone().unwrap_or_default();
    let selector: BTreeMap<String, String> =
        serde_json::from_value(monitor["spec"]["selector"]["matchLabels"].clone())
            .expect("matchLabels");
    assert!(
        is_subset(&selector, &service_labels),
        "the ServiceMonitor selects the Service"
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");

    // PrometheusRule: the required alerts, on exported metrics, scoped to this release.
    assert_eq!(rules.len(), 1);
    let mut alerts = BTreeSet::new();
    for group in rules[0]["spec"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str().expect("alert name");
            let expr = rule["expr"].as_str().expect("expr");
            alerts.insert(alert.to_owned());
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{alert} uses no carbonshift metric");
            for name in names {
                assert!(
                    is_contract_metric(&name),
                    "{alert} uses {name}, which is not exported"
                );
            }
            assert!(
                expr.contains(&format!("job=\"{}\"", case.fullname)),
                "{alert} is not scoped to this release's targets"
            );
            assert!(
                ["critical", "warning"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or_default()),
                "{alert} has no severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string()
                    && rule["annotations"]["description"].is_string()
            );
        }
    }
    for required in [
        "CarbonshiftJobHeldPastLatestStart",
        "CarbonshiftForecastStale",
    ] {
        assert!(alerts.contains(required), "missing alert {required}");
    }

    // Dashboard ConfigMap: the chart's JSON, in the Grafana sidecar's namespace and label.
    assert_eq!(config_maps.len(), 1);
    let dashboard = &config_maps[0];
    assert_eq!(dashboard.metadata.namespace.as_deref(), Some("monitoring"));
    assert_eq!(
        dashboard
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("grafana_dashboard"))
            .map(String::as_str),
        Some("1")
    );
    let json = dashboard
        .data
        .as_ref()
        .and_then(|d| d.get("carbonshift.json"))
        .expect("carbonshift.json");
    let parsed: Value = serde_json::from_str(json).expect("the dashboard ConfigMap holds JSON");
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("files/dashboard.json")).expect("dashboard.json"),
    )
    .expect("dashboard.json");
    assert_eq!(parsed, on_disk);
}

/// NetworkPolicy (on by default): covers operator and hook pods; the webhook stays reachable from
/// the API server; metrics only from the monitoring namespace when monitoring is set up; DNS,
/// HTTPS and API-server egress.
fn check_network_policy(case: &Case, r: &Rendered, deployment: &Deployment) {
    let policies: Vec<NetworkPolicy> = r.typed("NetworkPolicy");
    assert_eq!(policies.len(), 1, "{}: one NetworkPolicy", case.file);
    let spec = policies[0].spec.clone().expect("NetworkPolicy spec");
    let selector = spec
        .pod_selector
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    assert!(
        is_subset(&selector, &pod_labels(deployment)),
        "the NetworkPolicy covers the operator"
    );
    for job in r.typed::<Job>("Job") {
        let labels = job
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.labels)
            .unwrap_or_default();
        assert!(
            is_subset(&selector, &labels),
            "the NetworkPolicy covers the hook"
        );
    }
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_owned(), "Egress".to_owned()])
    );
    let ingress = spec.ingress.unwrap_or_default();
    let rule_for = |port: &str| {
        ingress
            .iter()
            .find(|rule| {
                rule.ports
                    .iter()
                    .flatten()
                    .any(|p| p.port == Some(IntOrString::String(port.to_owned())))
            })
            .unwrap_or_else(|| panic!("no ingress rule for the {port} port"))
    };
    assert!(
        rule_for("webhook").from.is_none(),
        "the API server must reach the webhook"
    );
    assert_eq!(
        rule_for("metrics").from.is_some(),
        case.monitoring,
        "metrics are restricted to the monitoring namespace where monitoring is set up"
    );
    let egress_ports: BTreeSet<i32> = spec
        .egress
        .unwrap_or_default()
        .iter()
        .flat_map(|rule| rule.ports.clone().unwrap_or_default())
        .filter_map(|p| match p.port {
            Some(IntOrString::Int(n)) => Some(n),
            _ => None,
        })
        .collect();
    for port in [53, 443, 6443] {
        assert!(egress_ports.contains(&port), "no egress on port {port}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers: helm, metric names, values.yaml documentation.

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("charts/carbonshift")
}

fn fixture(file: &str) -> PathBuf {
    if file.starts_with("examples/") {
        return repo().join(file);
    }
    repo().join("tests/fixtures/values").join(file)
}

/// helm's path, or `None` after printing why the test is skipped. Panics when helm is missing
/// and `CARBONSHIFT_REQUIRE_HELM=1`, or when `CARBONSHIFT_HELM` names a missing file.
fn helm_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CARBONSHIFT_HELM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CARBONSHIFT_HELM={} is not a file",
            path.display()
        );
        return Some(path);
    }
    let local = repo().join(".tools/bin/helm");
    if local.is_file() {
        return Some(local);
    }
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("helm"))
        .find(|p| p.is_file())
    {
        return Some(path);
    }
    let required = std::env::var("CARBONSHIFT_REQUIRE_HELM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "helm not found (CARBONSHIFT_HELM, .tools/bin/helm, PATH) and CARBONSHIFT_REQUIRE_HELM=1: run scripts/install-tools.sh"
    );
    // Written to stderr directly, not with eprintln!, so the test harness does not swallow it.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: helm not found (set CARBONSHIFT_HELM, or run scripts/install-tools.sh to install it into .tools/bin)"
    );
    None
}

/// What a helm command printed and whether it succeeded.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    Output {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn helm_template(helm: &Path, release: &str, namespace: &str, values: &Path) -> Output {
    run(Command::new(helm)
        .args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace, "--values"])
        .arg(values))
}

fn helm_lint(helm: &Path, namespace: &str, values: &Path) -> Output {
    run(Command::new(helm)
        .args(["lint", "--strict"])
        .arg(chart_dir())
        .args(["--namespace", namespace, "--values"])
        .arg(values))
}

/// Every `carbonshift_*` metric name in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("carbonshift_") {
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_word {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Whether the operator exports this series name (histograms with their suffixes).
fn is_contract_metric(name: &str) -> bool {
    if METRICS.contains(&name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| METRICS.contains(&base) && base.ends_with("_seconds"))
    })
}

/// Every PromQL expression in a Grafana dashboard.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push(expr.clone());
                }
                for value in map.values() {
                    walk(value, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(dashboard, &mut out);
    out
}

/// Dotted paths of the leaf keys in a values.yaml that have no `# --` comment directly above
/// them nor on any enclosing key. A key with nested keys needs no comment of its own (its
/// children are checked); list items are not keys.
fn undocumented_keys(text: &str) -> Vec<String> {
    // (dotted path, documented here or above) of every key, in order.
    let mut keys: Vec<(String, bool)> = Vec::new();
    // (indent, key, documented here or above) of the enclosing keys.
    let mut stack: Vec<(usize, String, bool)> = Vec::new();
    let mut comment_has_doc = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            comment_has_doc = false;
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            if comment.trim_start().starts_with("-- ") {
                comment_has_doc = true;
            }
            continue;
        }
        if trimmed.starts_with('-') {
            comment_has_doc = false;
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        while stack.last().is_some_and(|(i, _, _)| *i >= indent) {
            stack.pop();
        }
        let documented = comment_has_doc || stack.last().is_some_and(|(_, _, d)| *d);
        let path: Vec<&str> = stack
            .iter()
            .map(|(_, k, _)| k.as_str())
            .chain([key.trim()])
            .collect();
        keys.push((path.join("."), documented));
        stack.push((indent, key.trim().to_owned(), documented));
        comment_has_doc = false;
    }
    let parents: BTreeSet<String> = keys
        .iter()
        .filter_map(|(path, _)| path.rsplit_once('.').map(|(parent, _)| parent.to_owned()))
        .collect();
    keys.into_iter()
        .filter(|(path, documented)| !documented && !parents.contains(path))
        .map(|(path, _)| path)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Upgrades: the generated certificate is looked up and kept, or renewed near expiry.

/// `helm template --dry-run=server` against a fake API server that holds the TLS Secret from a
/// previous release: what `helm upgrade` renders.
#[test]
fn upgrade_keeps_the_generated_certificate_and_renews_it_before_expiry() {
    let Some(helm) =
        helm_or_skip("upgrade_keeps_the_generated_certificate_and_renews_it_before_expiry")
    else {
        return;
    };
    let case = &DEFAULTS;
    let dns_name = format!("{}.{}.svc", case.fullname, case.namespace);
    let secret_name = format!("{}-webhook-tls", case.fullname);

    // The first install: nothing to look up.
    let first = helm_template(&helm, case.release, case.namespace, &fixture(case.file));
    assert!(first.ok, "helm template failed:\n{}", first.stderr);
    let first = Rendered::parse(&first.stdout, case);
    let mut stored = first
        .of_kind("Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == secret_name.as_str())
        .expect("the TLS Secret")
        .clone();
    // Helm's ownership marks, so the dry run may adopt the existing object.
    stored["metadata"]["annotations"]["meta.helm.sh/release-name"] = case.release.into();
    stored["metadata"]["annotations"]["meta.helm.sh/release-namespace"] = case.namespace.into();
    let stored_secret: Secret = serde_json::from_value(stored.clone()).expect("Secret");
    let stored_data = stored_secret.data.clone().expect("data");

    let api = FakeApiServer::start(case.namespace, &secret_name, stored.clone());
    let kubeconfig = api.kubeconfig();

    // An upgrade finds the Secret and keeps the pair: the pods and the caBundle still match.
    let (secret, bundle) = upgrade_render(&helm, case, kubeconfig.path(), &secret_name);
    assert_eq!(
        secret.data.as_ref(),
        Some(&stored_data),
        "the stored pair is kept"
    );
    assert_eq!(
        &bundle, &stored_data["ca.crt"].0,
        "the caBundle is the stored CA"
    );

    // Within 30 days of expiry an upgrade generates a new pair, and the caBundle trusts the old CA
    // too while the pods still serve the old certificate.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut expiring = stored.clone();
    expiring["metadata"]["annotations"]["carbonshift.dev/certificate-expires-unix"] =
        (now + 10 * 86_400).to_string().into();
    api.set_secret(expiring);
    let (secret, bundle) = upgrade_render(&helm, case, kubeconfig.path(), &secret_name);
    let data = secret.data.clone().expect("data");
    assert_ne!(data["ca.crt"], stored_data["ca.crt"], "a new CA");
    assert_ne!(
        data["tls.crt"], stored_data["tls.crt"],
        "a new serving certificate"
    );
    let expires: u64 = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("carbonshift.dev/certificate-expires-unix"))
        .and_then(|v| v.parse().ok())
        .expect("the expiry annotation");
    assert!(
        expires > now + 3000 * 86_400,
        "the new pair is valid for years"
    );
    let cas: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(&bundle)
        .map(|c| c.expect("PEM certificate"))
        .collect();
    let new_ca = CertificateDer::from_pem_slice(&data["ca.crt"].0).expect("new CA");
    let old_ca = CertificateDer::from_pem_slice(&stored_data["ca.crt"].0).expect("old CA");
    assert_eq!(
        cas,
        vec![new_ca, old_ca],
        "the caBundle holds the new CA, then the old one"
    );
    verify_serving_certificate(&bundle, &data["tls.crt"].0, &data["tls.key"].0, &dns_name);
    verify_serving_certificate(
        &bundle,
        &stored_data["tls.crt"].0,
        &stored_data["tls.key"].0,
        &dns_name,
    );

    // A Secret without the expiry mark (made by hand, or by an older chart) is renewed as well.
    let mut unmarked = stored;
    unmarked["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove("carbonshift.dev/certificate-expires-unix");
    api.set_secret(unmarked);
    let (secret, _) = upgrade_render(&helm, case, kubeconfig.path(), &secret_name);
    assert_ne!(secret.data.expect("data")["ca.crt"], stored_data["ca.crt"]);
}

/// Renders against the fake API server and returns the TLS Secret and the webhook's caBundle.
/// The port of the fake cluster's `kubernetes` EndpointSlice (the API server's own port).
const FAKE_API_SERVER_PORT: i32 = 8443;

fn upgrade_render(
    helm: &Path,
    case: &Case,
    kubeconfig: &Path,
    secret_name: &str,
) -> (Secret, Vec<u8>) {
    let output = run(Command::new(helm)
        .args(["template", case.release])
        .arg(chart_dir())
        .args([
            "--namespace",
            case.namespace,
            "--dry-run=server",
            "--disable-openapi-validation",
            "--kubeconfig",
        ])
        .arg(kubeconfig)
        .env_remove("KUBECONFIG"));
    assert!(
        output.ok,
        "helm template --dry-run=server failed:\n{}",
        output.stderr
    );
    let rendered = Rendered::parse(&output.stdout, case);
    // The API server's endpoint port, looked up on install and upgrade, is open for egress.
    let policy: NetworkPolicy = rendered.one("NetworkPolicy");
    let ports: Vec<IntOrString> = policy
        .spec
        .and_then(|s| s.egress)
        .unwrap_or_default()
        .iter()
        .flat_map(|rule| rule.ports.clone().unwrap_or_default())
        .filter_map(|p| p.port)
        .collect();
    assert!(
        ports.contains(&IntOrString::Int(FAKE_API_SERVER_PORT)),
        "the API server's endpoint port {FAKE_API_SERVER_PORT} is not open for egress: {ports:?}"
    );
    let secret = rendered
        .typed::<Secret>("Secret")
        .into_iter()
        .find(|s| name_of(&s.metadata) == secret_name)
        .expect("the TLS Secret");
    let config: MutatingWebhookConfiguration = rendered.one("MutatingWebhookConfiguration");
    let bundle = config.webhooks.expect("webhooks")[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("caBundle")
        .0;
    (secret, bundle)
}

/// A minimal Kubernetes API server on 127.0.0.1 for helm's server-side dry run: discovery for the
/// kinds the chart renders, one stored Secret, and 404 for every other object.
struct FakeApiServer {
    addr: std::net::SocketAddr,
    secret: Arc<std::sync::Mutex<Value>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApiServer {
    fn start(namespace: &str, secret_name: &str, secret: Value) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let secret = Arc::new(std::sync::Mutex::new(secret));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let secret_path = format!("/api/v1/namespaces/{namespace}/secrets/{secret_name}");
        let thread = {
            let secret = Arc::clone(&secret);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let secret = Arc::clone(&secret);
                    let secret_path = secret_path.clone();
                    std::thread::spawn(move || serve_fake_api(stream, &secret_path, &secret));
                }
            })
        };
        Self {
            addr,
            secret,
            stop,
            thread: Some(thread),
        }
    }

    fn set_secret(&self, secret: Value) {
        *self.secret.lock().expect("secret lock") = secret;
    }

    fn kubeconfig(&self) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temporary kubeconfig");
        write!(
            file,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.addr
        )
        .expect("write kubeconfig");
        file
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one HTTP/1.1 request (helm's client sends GETs only) and closes the connection.
fn serve_fake_api(
    mut stream: std::net::TcpStream,
    secret_path: &str,
    secret: &std::sync::Mutex<Value>,
) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.lines().next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default();
    let target = request_line.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    let body = if method != "GET" {
        None
    } else if path == secret_path {
        Some(secret.lock().expect("secret lock").clone())
    } else if path == "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes" {
        // The API server's endpoint on a non-standard port, which the NetworkPolicy must allow.
        Some(
            serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}],
            "ports": [{"name": "https", "port": FAKE_API_SERVER_PORT, "protocol": "TCP"}]}),
        )
    } else {
        fake_discovery(path)
    };
    let (status, body) = match body {
        Some(body) => ("200 OK", body),
        None => (
            "404 Not Found",
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404}),
        ),
    };
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Discovery documents for the kinds the chart renders with its defaults.
fn fake_discovery(path: &str) -> Option<Value> {
    use serde_json::json;
    /// (plural, kind, namespaced) of the resources in one group version.
    type Resources = &'static [(&'static str, &'static str, bool)];
    const CORE: Resources = &[
        ("secrets", "Secret", true),
        ("services", "Service", true),
        ("serviceaccounts", "ServiceAccount", true),
        ("configmaps", "ConfigMap", true),
    ];
    const GROUPS: &[(&str, &str, Resources)] = &[
        ("apps", "v1", &[("deployments", "Deployment", true)]),
        ("batch", "v1", &[("jobs", "Job", true)]),
        (
            "discovery.k8s.io",
            "v1",
            &[("endpointslices", "EndpointSlice", true)],
        ),
        (
            "networking.k8s.io",
            "v1",
            &[("networkpolicies", "NetworkPolicy", true)],
        ),
        (
            "policy",
            "v1",
            &[("poddisruptionbudgets", "PodDisruptionBudget", true)],
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            &[
                ("roles", "Role", true),
                ("rolebindings", "RoleBinding", true),
                ("clusterroles", "ClusterRole", false),
                ("clusterrolebindings", "ClusterRoleBinding", false),
            ],
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            &[(
                "mutatingwebhookconfigurations",
                "MutatingWebhookConfiguration",
                false,
            )],
        ),
        (
            "carbonshift.dev",
            "v1alpha1",
            &[
                ("carbonforecasts", "CarbonForecast", false),
                ("carbonworkloads", "CarbonWorkload", true),
                ("carbonledgers", "CarbonLedger", true),
                ("carbonbudgets", "CarbonBudget", true),
            ],
        ),
    ];
    let resource_list = |group_version: String, resources: &[(&str, &str, bool)]| {
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
               "resources": resources.iter().map(|(name, kind, namespaced)| json!({
                   "name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
                   "verbs": ["get", "list", "create", "patch", "delete"]})).collect::<Vec<_>>()})
    };
    match path {
        "/version" => Some(
            json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}),
        ),
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
                              "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        "/api/v1" => Some(resource_list("v1".to_owned(), CORE)),
        "/apis" => Some(json!({"kind": "APIGroupList", "apiVersion": "v1",
            "groups": GROUPS.iter().map(|(group, version, _)| {
                let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
                json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
            }).collect::<Vec<_>>()})),
        _ => GROUPS.iter().find_map(|(group, version, resources)| {
            (path == format!("/apis/{group}/{version}"))
                .then(|| resource_list(format!("{group}/{version}"), resources))
        }),
    }
}
