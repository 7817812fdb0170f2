//! End-to-end: the real `carbonshift run` binary against a real Kubernetes API server.
//!
//! Skipped (with a message on stderr) unless `CARBONSHIFT_E2E_KUBECONFIG` names a kubeconfig.
//! Run it with:
//!
//! ```sh
//! CARBONSHIFT_E2E_KUBECONFIG=$HOME/.kube/config \
//! CARBONSHIFT_E2E_WEBHOOK_HOST=172.18.0.1 \
//!   cargo test --test e2e -- --nocapture
//! ```
//!
//! What it does, printing each step:
//!
//! 1. Applies the CRDs (server-side apply of `carbonshift::api::crd::all()`, field manager
//!    `carbonshift-e2e`) and waits until both are `Established`.
//! 2. Creates a namespace `carbonshift-e2e-<random>` and a cluster-scoped `static` CarbonForecast
//!    `carbonshift-e2e-<random>`: 400 gCO2eq/kWh until a clean window of 50 starting about 75 s
//!    ahead (`W`, whole seconds), three minutes long, then 400 again, on a one-minute grid. A
//!    one-minute Job costs least in any window inside the clean one; ties go to the earliest start,
//!    so the plan is exactly `W`.
//! 3. Generates a CA and a serving certificate for `CARBONSHIFT_E2E_WEBHOOK_HOST` (an IP SAN for an
//!    address, a DNS SAN for a name) with rcgen, starts `carbonshift run` (the binary Cargo built)
//!    with `KUBECONFIG`, `--leader-election=false`, the test namespace as `--operator-namespace`
//!    and `--namespaces`, the webhook on a free port, and waits for `/readyz`.
//! 4. Registers a `MutatingWebhookConfiguration` by URL (`https://HOST:PORT/mutate`, the CA in
//!    `caBundle`), `failurePolicy: Fail`, `sideEffects: None`, limited to the test namespace by
//!    `namespaceSelector`, and waits until a dry-run Job create comes back held (the API server
//!    picks webhook configurations up asynchronously).
//! 5. Waits for the forecast to be `Ready`, creates a deferrable Job (`duration: 1m`,
//!    `max-delay: 10m`, busybox `true`, no `spec.suspend`) and checks that it comes back
//!    suspended with the `held` marker, and that its CarbonWorkload is `Deferred` with
//!    `plannedStart == W`.
//! 6. Polls the Job every 100 ms: it must stay suspended until `W` and be released (annotation
//!    `carbonshift.dev/released-at` in `[W, W + 2 s]`, and no poll started at or after `W + 2 s`
//!    sees it suspended).
//! 7. Waits up to 30 s for a pod to run. On a cluster without nodes (or without a Job controller)
//!    none does; the test then writes the Job's status as the Job controller would on success
//!    (`SuccessCriteriaMet` and `Complete`, `startTime`, `completionTime`, `succeeded: 1`,
//!    `active: 0`), which Kubernetes 1.31+ validates. Then the CarbonWorkload must reach
//!    `Succeeded`.
//!
//! Everything it created is deleted at the end, also when it fails: the webhook configuration
//! first, then the operator is stopped (SIGTERM), then the forecast and the namespace. The CRDs
//! stay. The operator's log is written to a temporary file; its last lines are printed when the
//! test fails.
//!
//! The file also holds checks that need no cluster and always run: the suite's certificate,
//! forecast and Job fixtures (the planner puts the Job exactly at `W`, the webhook holds it), and
//! the binary's start-up failures and graceful stop against an unreachable API server.
//!
//! Use a disposable cluster without carbonshift installed: the operator started here refreshes
//! every CarbonForecast in the cluster, and another carbonshift's webhook or controllers would act
//! on the test's Job too.
//!
//! Environment:
//! - `CARBONSHIFT_E2E_KUBECONFIG` (required): kubeconfig of a user allowed to manage CRDs,
//!   namespaces, webhook configurations, Jobs (and their status) and CarbonForecasts.
//! - `CARBONSHIFT_E2E_WEBHOOK_HOST` (default `127.0.0.1`): an address of this machine that the API
//!   server can reach. With kind it is the Docker network's gateway
//!   (`docker network inspect kind -f '{{(index .IPAM.Config 0).Gateway}}'`, often 172.18.0.1).
//! - `CARBONSHIFT_E2E_WEBHOOK_PORT` (default: a free port): the webhook's port.
//! - `CARBONSHIFT_E2E_WEBHOOK_BIND` (default `127.0.0.1` for a loopback host, else `0.0.0.0`):
//!   the address the webhook listens on.
//! - `CARBONSHIFT_E2E_IMAGE` (default `busybox:1.36`): the Job's image.

// This crate is test code: a failed `expect` in a helper is a failed test. (clippy.toml's
// allow-*-in-tests reaches `#[test]` functions and `#[cfg(test)]` code, not the helpers of an
// integration test.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carbonshift::api::annotations::{HELD, RELEASED_AT, SUBMITTED_AT};
use carbonshift::api::forecast::{IntensityPoint, StaticPoints};
use carbonshift::api::{CarbonForecast, CarbonForecastSpec, CarbonWorkload, Phase, ProviderSpec};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

const SKIP: &str = "SKIPPED e2e: set CARBONSHIFT_E2E_KUBECONFIG=<path> to run the end-to-end suite against a cluster";

/// The field manager of everything this test applies.
const FIELD_MANAGER: &str = "carbonshift-e2e";

/// The test Job's name.
const JOB: &str = "train-e2e";

/// How far the release may be from the planned start.
const RELEASE_TOLERANCE: TimeDelta = TimeDelta::seconds(2);

/// How often the Job is polled around its release (at most 200 ms, as required).
const RELEASE_POLL: Duration = Duration::from_millis(100);

/// How long to wait for a pod to run before writing the Job's status as a fixture.
const POD_WAIT: Duration = Duration::from_secs(30);

/// Intensities of the static forecast, gCO2eq/kWh.
const DIRTY: f64 = 400.0;
const CLEAN: f64 = 50.0;

struct Settings {
    kubeconfig: PathBuf,
    host: String,
    port: Option<u16>,
    bind: IpAddr,
    image: String,
}

impl Settings {
    fn from_env() -> Option<Self> {
        let kubeconfig = std::env::var_os("CARBONSHIFT_E2E_KUBECONFIG")?;
        let kubeconfig = PathBuf::from(kubeconfig);
        let kubeconfig = std::path::absolute(&kubeconfig).unwrap_or(kubeconfig);
        let host = std::env::var("CARBONSHIFT_E2E_WEBHOOK_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "127.0.0.1".to_string());
        let port = std::env::var("CARBONSHIFT_E2E_WEBHOOK_PORT")
            .ok()
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u16>()
                    .unwrap_or_else(|e| panic!("CARBONSHIFT_E2E_WEBHOOK_PORT={p:?}: {e}"))
            });
        let loopback = host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(host == "localhost");
        let bind = match std::env::var("CARBONSHIFT_E2E_WEBHOOK_BIND") {
            Ok(bind) if !bind.is_empty() => bind
                .parse()
                .unwrap_or_else(|e| panic!("CARBONSHIFT_E2E_WEBHOOK_BIND={bind:?}: {e}")),
            _ if loopback => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let image = std::env::var("CARBONSHIFT_E2E_IMAGE")
            .ok()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| "busybox:1.36".to_string());
        Some(Self {
            kubeconfig,
            host,
            port,
            bind,
            image,
        })
    }

    /// `https://HOST:PORT/mutate`, with an IPv6 address in brackets.
    fn webhook_url(&self, port: u16) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("https://[{ip}]:{port}/mutate"),
            _ => format!("https://{}:{port}/mutate", self.host),
        }
    }
}

/// Progress lines, with the time since the test started. Written straight to the process's
/// stderr, so that they show while the test runs even when libtest captures output.
struct Progress {
    start: Instant,
}

impl Progress {
    fn say(&self, message: impl AsRef<str>) {
        say(&format!(
            "e2e [{:>6.1}s] {}",
            self.start.elapsed().as_secs_f64(),
            message.as_ref()
        ));
    }
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A port nobody listens on right now.
fn free_port(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local address: {e}"))
        .port()
}

// ---------------------------------------------------------------------------------------------
// The operator process

/// The running `carbonshift run`; clones share the process.
#[derive(Clone)]
struct Operator {
    child: Arc<Mutex<Option<Child>>>,
    log: PathBuf,
}

impl Operator {
    fn start(settings: &Settings, args: &[String], log: PathBuf) -> Self {
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let stderr = file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot reopen {}: {e}", log.display()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_carbonshift"));
        // Settings of the caller's environment must not change the operator under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CARBONSHIFT_") {
                command.env_remove(&key);
            }
        }
        command
            .arg("run")
            .args(args)
            .env("KUBECONFIG", &settings.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start carbonshift run: {e}"));
        Self {
            child: Arc::new(Mutex::new(Some(child))),
            log,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// Panics with the log's tail if the operator has exited.
    fn assert_running(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = guard.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            guard.take();
            drop(guard);
            panic!(
                "carbonshift run exited ({status}); last lines of {}:\n{}",
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }

    /// SIGTERM, up to 15 s for a graceful exit, then SIGKILL.
    fn stop(&self) -> Option<String> {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(format!("had exited already ({status})"));
        }
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !signalled {
            let _ = child.kill();
            let _ = child.wait();
            return Some("could not be sent SIGTERM; killed".to_string());
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(format!("stopped gracefully ({status})"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        Some("did not stop within 15 s of SIGTERM; killed".to_string())
    }
}

fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

// ---------------------------------------------------------------------------------------------
// Clean-up, also on failure

/// Deletes what the test created when dropped (after a panic too), in an order that never leaves
/// the test namespace behind a webhook that is gone: webhook configuration, operator, forecast,
/// namespace.
struct Cleanup {
    runtime: tokio::runtime::Handle,
    client: Option<Client>,
    webhook: Option<String>,
    operator: Option<Operator>,
    forecast: Option<String>,
    namespace: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let Some(client) = self.client.clone() else {
            return;
        };
        let say = |m: String| say(&format!("e2e [cleanup] {m}"));
        if let Some(name) = self.webhook.take() {
            let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
            match self
                .runtime
                .block_on(api.delete(&name, &DeleteParams::default()))
            {
                Ok(_) => say(format!("deleted MutatingWebhookConfiguration {name}")),
                Err(e) => say(format!(
                    "could not delete MutatingWebhookConfiguration {name}: {e}"
                )),
            }
        }
        if let Some(operator) = self.operator.take() {
            if let Some(outcome) = operator.stop() {
                say(format!("operator {outcome}"));
            }
            if failed {
                say(format!(
                    "last lines of the operator's log {}:\n{}",
                    operator.log.display(),
                    tail(&operator.log, 80)
                ));
            } else {
                say(format!("operator log: {}", operator.log.display()));
            }
        }
        if let Some(name) = self.forecast.take() {
            let api: Api<CarbonForecast> = Api::all(client.clone());
            match self
                .runtime
                .block_on(api.delete(&name, &DeleteParams::default()))
            {
                Ok(_) => say(format!("deleted CarbonForecast {name}")),
                Err(e) => say(format!("could not delete CarbonForecast {name}: {e}")),
            }
        }
        if let Some(name) = self.namespace.take() {
            let api: Api<Namespace> = Api::all(client);
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            // Not waited for: without a namespace controller it would stay Terminating for ever.
            match self.runtime.block_on(api.delete(&name, &params)) {
                Ok(_) => say(format!("deleting namespace {name}")),
                Err(e) => say(format!("could not delete namespace {name}: {e}")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Calls `probe` every `every` until it returns `Ok`, checking that the operator still runs;
/// panics after `timeout` with the last reason.
async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    operator: Option<&Operator>,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        if let Some(operator) = operator {
            operator.assert_running();
        }
        let last = match probe().await {
            Ok(value) => return value,
            Err(reason) => reason,
        };
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

fn condition_true(conditions: &[carbonshift::api::Condition], kind: &str) -> bool {
    conditions.iter().any(|c| c.r#type == kind && c.is_true())
}

// ---------------------------------------------------------------------------------------------
// Objects

/// A CA and a serving certificate for `host`: (CA PEM, certificate PEM, key PEM).
fn certificates(host: &str) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "carbonshift e2e CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
    // An address becomes an IP SAN, a name a DNS SAN (CertificateParams::new decides).
    let mut params = CertificateParams::new(vec![host.to_string()])
        .unwrap_or_else(|e| panic!("{host:?} cannot be put into a certificate: {e}"));
    params
        .distinguished_name
        .push(DnType::CommonName, "carbonshift e2e webhook");
    let key = KeyPair::generate().expect("serving key");
    let cert = params.signed_by(&key, &ca).expect("serving certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// 400 until `clean`, 50 on `[clean, clean + 3 min)`, 400 until 30 min after `clean`; one point a
/// minute, the first three minutes before `clean`.
fn forecast_points(clean: DateTime<Utc>) -> Vec<IntensityPoint> {
    (-3..=30)
        .map(|minute| IntensityPoint {
            start: clean + TimeDelta::minutes(minute),
            intensity: if (0..3).contains(&minute) {
                CLEAN
            } else {
                DIRTY
            },
        })
        .collect()
}

fn deferrable_job(namespace: &str, name: &str, forecast: &str, image: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {
                "carbonshift.dev/deferrable": "true",
                "carbonshift.dev/duration": "1m",
                "carbonshift.dev/max-delay": "10m",
                "carbonshift.dev/forecast": forecast,
                "carbonshift.dev/power": "300W",
            },
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "main",
                        "image": image,
                        "command": ["true"],
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "16Mi"},
                            "limits": {"cpu": "100m", "memory": "32Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                },
            },
        },
    }))
    .expect("valid Job")
}

fn webhook_configuration(
    name: &str,
    namespace: &str,
    url: String,
    ca_pem: &str,
) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([("carbonshift.dev/e2e".to_string(), "true".to_string())].into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: format!("jobs.{name}.carbonshift.dev"),
            admission_review_versions: vec!["v1".to_string()],
            client_config: WebhookClientConfig {
                url: Some(url),
                ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
                service: None,
            },
            failure_policy: Some("Fail".to_string()),
            match_policy: Some("Equivalent".to_string()),
            // Only the test namespace: this webhook never affects anything else.
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".to_string(),
                    operator: "In".to_string(),
                    values: Some(vec![namespace.to_string()]),
                }]),
                match_labels: None,
            }),
            object_selector: None,
            reinvocation_policy: Some("Never".to_string()),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["batch".to_string()]),
                api_versions: Some(vec!["v1".to_string()]),
                operations: Some(vec!["CREATE".to_string()]),
                resources: Some(vec!["jobs".to_string()]),
                scope: Some("Namespaced".to_string()),
            }]),
            side_effects: "None".to_string(),
            timeout_seconds: Some(10),
            match_conditions: None,
        }]),
    }
}

fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

fn job_condition_true(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// Whether a pod of the Job ever ran (ready, succeeded or failed), or the Job finished.
fn pods_ran(job: &Job) -> bool {
    let Some(status) = job.status.as_ref() else {
        return false;
    };
    status.ready.unwrap_or(0) > 0
        || status.succeeded.unwrap_or(0) > 0
        || status.failed.unwrap_or(0) > 0
        || job_condition_true(job, "Complete")
        || job_condition_true(job, "Failed")
}

fn from_jiff(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), 0).expect("a representable time")
}

/// `metav1.Time` as the API server writes it: RFC 3339 in whole seconds.
fn kube_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Writes the Job's status as the Job controller does when its one pod succeeded: the
/// `SuccessCriteriaMet` condition and then `Complete` (Kubernetes 1.31+ rejects `Complete` without
/// it when the Job's managed-by validation is on), `startTime` (kept if set: it is immutable once
/// set on an unsuspended Job), `completionTime` not before it, `succeeded` equal to the
/// completions, no active, ready, terminating or uncounted pods, `failed` unchanged. A merge patch
/// on `/status` guarded by the `resourceVersion` read, retried on conflict.
async fn complete_job_status(jobs: &Api<Job>, name: &str) {
    for attempt in 1..=10 {
        let job = jobs.get(name).await.expect("read the Job");
        let status = job.status.clone().unwrap_or_default();
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
        let start = status.start_time.as_ref().map(|t| from_jiff(&t.0));
        let completion = start.map_or(now, |s| s.max(now));
        let start = start.unwrap_or(now);
        let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(1);
        let mut conditions: Vec<serde_json::Value> = status
            .conditions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != "SuccessCriteriaMet" && c.type_ != "Complete")
            .map(|c| serde_json::to_value(c).expect("condition"))
            .collect();
        for kind in ["SuccessCriteriaMet", "Complete"] {
            conditions.push(json!({
                "type": kind,
                "status": "True",
                "reason": "CompletionsReached",
                "message": "Reached expected number of succeeded pods",
                "lastProbeTime": kube_time(completion),
                "lastTransitionTime": kube_time(completion),
            }));
        }
        let patch = json!({
            "metadata": {"resourceVersion": job.metadata.resource_version},
            "status": {
                "startTime": kube_time(start),
                "completionTime": kube_time(completion),
                "active": 0,
                "ready": 0,
                "terminating": 0,
                "succeeded": completions,
                "failed": status.failed.unwrap_or(0),
                "uncountedTerminatedPods": {"succeeded": [], "failed": []},
                "conditions": conditions,
            },
        });
        match jobs
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 10 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("writing a Complete status for Job {name} failed: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test

#[test]
fn a_deferrable_job_is_held_released_at_the_planned_start_and_succeeds() {
    let Some(settings) = Settings::from_env() else {
        // Straight to the process's stderr: libtest captures `eprintln!`, and the skip must show
        // in a plain `cargo test` run.
        say(SKIP);
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut cleanup = Cleanup {
        runtime: runtime.handle().clone(),
        client: None,
        webhook: None,
        operator: None,
        forecast: None,
        namespace: None,
    };
    runtime.block_on(scenario(&settings, &mut cleanup));
}

async fn scenario(settings: &Settings, cleanup: &mut Cleanup) {
    let progress = Progress {
        start: Instant::now(),
    };
    carbonshift::forecast::install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(&settings.kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", settings.kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", settings.kubeconfig.display()));
    progress.say(format!("cluster {}", config.cluster_url));
    let client = Client::try_from(config).expect("Kubernetes client");
    cleanup.client = Some(client.clone());
    let suffix = format!("{:08x}", rand::random::<u32>());
    let namespace = format!("carbonshift-e2e-{suffix}");
    let forecast_name = format!("carbonshift-e2e-{suffix}");
    let webhook_name = format!("carbonshift-e2e-{suffix}");

    // 1. CRDs.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in carbonshift::api::crd::all() {
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        eventually(
            &format!("CRD {name} to be Established"),
            Duration::from_secs(60),
            Duration::from_millis(500),
            None,
            || async {
                let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
                let established = crd
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    });
                if established {
                    Ok(())
                } else {
                    Err(format!("conditions {:?}", crd.status.map(|s| s.conditions)))
                }
            },
        )
        .await;
        progress.say(format!("CRD {name} applied and Established"));
    }

    // 2. Namespace and forecast.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            labels: Some([("carbonshift.dev/e2e".to_string(), "true".to_string())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &ns_object)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {namespace}: {e}"));
    cleanup.namespace = Some(namespace.clone());
    progress.say(format!("namespace {namespace} created"));

    let clean_start =
        DateTime::from_timestamp(Utc::now().timestamp() + 75, 0).expect("a representable time");
    let forecasts: Api<CarbonForecast> = Api::all(client.clone());
    let forecast = CarbonForecast::new(
        &forecast_name,
        CarbonForecastSpec {
            provider: ProviderSpec::Static(StaticPoints {
                points: forecast_points(clean_start),
            }),
            credentials_secret_ref: None,
            refresh_interval: None,
            stale_after: None,
            base_url: None,
        },
    );
    forecasts
        .create(&PostParams::default(), &forecast)
        .await
        .unwrap_or_else(|e| panic!("creating CarbonForecast {forecast_name}: {e}"));
    cleanup.forecast = Some(forecast_name.clone());
    progress.say(format!(
        "CarbonForecast {forecast_name} created: {DIRTY} g/kWh, clean ({CLEAN}) from {} for 3 min",
        rfc3339(clean_start)
    ));

    // 3. The operator.
    let dir = tempfile::tempdir().expect("temporary directory");
    let dir = dir.keep();
    let (ca_pem, cert_pem, key_pem) = certificates(&settings.host);
    let cert_path = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    std::fs::write(&cert_path, cert_pem).expect("write the certificate");
    std::fs::write(&key_path, key_pem).expect("write the key");
    let webhook_port = settings.port.unwrap_or_else(|| free_port(settings.bind));
    let metrics_port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let args: Vec<String> = [
        "--leader-election=false".to_string(),
        format!("--operator-namespace={namespace}"),
        format!("--namespaces={namespace}"),
        format!("--default-forecast={forecast_name}"),
        format!(
            "--webhook-addr={}",
            SocketAddr::new(settings.bind, webhook_port)
        ),
        format!("--metrics-addr=127.0.0.1:{metrics_port}"),
        format!("--tls-cert={}", cert_path.display()),
        format!("--tls-key={}", key_path.display()),
        "--log-format=text".to_string(),
    ]
    .into();
    let operator = Operator::start(settings, &args, dir.join("operator.log"));
    cleanup.operator = Some(operator.clone());
    progress.say(format!(
        "started carbonshift run (pid {:?}) {}; log {}",
        operator.pid(),
        args.join(" "),
        operator.log.display()
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client");
    let readyz = format!("http://127.0.0.1:{metrics_port}/readyz");
    eventually(
        "the operator to be ready (/readyz)",
        Duration::from_secs(60),
        Duration::from_millis(250),
        Some(&operator),
        || async {
            match http.get(&readyz).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    progress.say("operator ready");

    // 4. The webhook registration.
    let url = settings.webhook_url(webhook_port);
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    configurations
        .create(
            &PostParams::default(),
            &webhook_configuration(&webhook_name, &namespace, url.clone(), &ca_pem),
        )
        .await
        .unwrap_or_else(|e| panic!("creating MutatingWebhookConfiguration {webhook_name}: {e}"));
    cleanup.webhook = Some(webhook_name.clone());
    progress.say(format!(
        "MutatingWebhookConfiguration {webhook_name} registered: {url}, failurePolicy Fail, namespace {namespace} only"
    ));
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let probe = deferrable_job(&namespace, "webhook-probe", &forecast_name, &settings.image);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(
        "the API server to call the webhook (a dry-run Job create coming back held)",
        Duration::from_secs(60),
        Duration::from_millis(500),
        Some(&operator),
        || async {
            match jobs.create(&dry_run, &probe).await {
                Ok(job) if annotation(&job, HELD) == Some("true") && suspended(&job) => Ok(()),
                Ok(_) => Err("the dry-run Job came back without the held marker".to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    progress.say("the API server calls the webhook");

    // 5. The forecast is ready; the Job is held and planned.
    eventually(
        &format!("CarbonForecast {forecast_name} to be Ready"),
        Duration::from_secs(60),
        Duration::from_millis(500),
        Some(&operator),
        || async {
            let f = forecasts
                .get(&forecast_name)
                .await
                .map_err(|e| e.to_string())?;
            let status = f.status.unwrap_or_default();
            if condition_true(&status.conditions, "Ready") {
                Ok(())
            } else {
                Err(format!("status {status:?}"))
            }
        },
    )
    .await;
    progress.say(format!("CarbonForecast {forecast_name} is Ready"));
    let margin = clean_start - Utc::now();
    assert!(
        margin > TimeDelta::seconds(20),
        "the set-up took too long: only {} s left before the clean window at {}; the cluster is too slow for this test",
        margin.num_seconds(),
        rfc3339(clean_start)
    );

    let created = jobs
        .create(
            &PostParams::default(),
            &deferrable_job(&namespace, JOB, &forecast_name, &settings.image),
        )
        .await
        .unwrap_or_else(|e| panic!("creating Job {JOB}: {e}"));
    assert!(
        suspended(&created),
        "the webhook did not suspend the Job: spec.suspend = {:?}",
        created.spec.as_ref().and_then(|s| s.suspend)
    );
    assert_eq!(annotation(&created, HELD), Some("true"), "held marker");
    assert!(
        annotation(&created, SUBMITTED_AT).is_some(),
        "submitted-at marker"
    );
    assert_eq!(annotation(&created, RELEASED_AT), None);
    progress.say(format!(
        "Job {JOB} created: suspended, held, submitted at {}",
        annotation(&created, SUBMITTED_AT).unwrap_or_default()
    ));

    let workloads: Api<CarbonWorkload> = Api::namespaced(client.clone(), &namespace);
    let planned = eventually(
        "the CarbonWorkload to be Deferred",
        Duration::from_secs(30),
        Duration::from_millis(200),
        Some(&operator),
        || async {
            let workload = workloads
                .get_opt(JOB)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no CarbonWorkload yet")?;
            let status = workload.status.unwrap_or_default();
            match (status.phase, status.planned_start) {
                (Some(Phase::Deferred), Some(planned)) => Ok(planned),
                (phase, planned) => Err(format!(
                    "phase {phase:?}, plannedStart {planned:?}, reason {:?}, message {:?}",
                    status.reason, status.message
                )),
            }
        },
    )
    .await;
    let seen_deferred = Utc::now();
    assert_eq!(
        planned,
        clean_start,
        "plannedStart {} is not the clean window's start {}",
        rfc3339(planned),
        rfc3339(clean_start)
    );
    assert!(
        seen_deferred < clean_start,
        "the workload was only seen Deferred at {}, after the planned start",
        rfc3339(seen_deferred)
    );
    progress.say(format!(
        "CarbonWorkload {JOB}: Deferred, plannedStart {} ({} s from now)",
        rfc3339(planned),
        (planned - Utc::now()).num_seconds()
    ));

    // 6. The release, polled every 100 ms.
    let mut last_suspended_poll: Option<DateTime<Utc>> = None;
    let released = loop {
        operator.assert_running();
        let asked = Utc::now();
        assert!(
            asked < clean_start + TimeDelta::seconds(30),
            "Job {JOB} still not seen released 30 s after its planned start {}",
            rfc3339(clean_start)
        );
        let job = match jobs.get(JOB).await {
            Ok(job) => job,
            Err(e) => {
                // A failed read proves nothing either way; the next one decides.
                progress.say(format!("reading Job {JOB} failed ({e}); polling on"));
                tokio::time::sleep(RELEASE_POLL).await;
                continue;
            }
        };
        let answered = Utc::now();
        if !suspended(&job) {
            break (job, asked, answered);
        }
        last_suspended_poll = Some(asked);
        tokio::time::sleep(RELEASE_POLL).await;
    };
    let (job, asked, answered) = released;
    let released_at = annotation(&job, RELEASED_AT)
        .unwrap_or_else(|| panic!("Job {JOB} unsuspended without the {RELEASED_AT} annotation"));
    let released_at = DateTime::parse_from_rfc3339(released_at)
        .unwrap_or_else(|e| panic!("{RELEASED_AT} {released_at:?}: {e}"))
        .to_utc();
    progress.say(format!(
        "Job {JOB} released: {RELEASED_AT} {} ({:+} ms from the plan); seen unsuspended by the poll sent at {} (last poll that saw it suspended: {})",
        rfc3339(released_at),
        (released_at - clean_start).num_milliseconds(),
        rfc3339(asked),
        last_suspended_poll.map_or("none".to_string(), rfc3339),
    ));
    assert!(
        answered >= clean_start,
        "Job {JOB} was unsuspended before its planned start {} (seen at {})",
        rfc3339(clean_start),
        rfc3339(answered)
    );
    assert!(
        released_at >= clean_start && released_at <= clean_start + RELEASE_TOLERANCE,
        "{RELEASED_AT} {} is not within [{}, {} + 2 s]",
        rfc3339(released_at),
        rfc3339(clean_start),
        rfc3339(clean_start)
    );
    if let Some(last) = last_suspended_poll {
        assert!(
            last < clean_start + RELEASE_TOLERANCE,
            "a poll sent at {} (more than 2 s after the planned start {}) still saw the Job suspended",
            rfc3339(last),
            rfc3339(clean_start)
        );
    }

    // 7. Completion.
    let ran = tokio::time::timeout(POD_WAIT, async {
        loop {
            operator.assert_running();
            match jobs.get(JOB).await {
                Ok(job) if pods_ran(&job) => return,
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    })
    .await
    .is_ok();
    if ran {
        progress.say("a pod of the Job ran; waiting for the Job to complete");
        eventually(
            &format!("Job {JOB} to complete"),
            Duration::from_secs(300),
            Duration::from_secs(1),
            Some(&operator),
            || async {
                let job = jobs.get(JOB).await.map_err(|e| e.to_string())?;
                if job_condition_true(&job, "Failed") {
                    panic!("Job {JOB} failed: {:?}", job.status);
                }
                if job_condition_true(&job, "Complete") {
                    Ok(())
                } else {
                    Err(format!("status {:?}", job.status))
                }
            },
        )
        .await;
        progress.say(format!("Job {JOB} completed"));
    } else {
        progress.say(format!(
            "no pod ran within {} s (a cluster without nodes or without a Job controller): writing a Complete status as the Job controller would",
            POD_WAIT.as_secs()
        ));
        complete_job_status(&jobs, JOB).await;
        let job = jobs.get(JOB).await.expect("read the Job");
        assert!(job_condition_true(&job, "Complete"), "{:?}", job.status);
        progress.say(format!("Job {JOB} status: Complete"));
    }

    eventually(
        "the CarbonWorkload to be Succeeded",
        Duration::from_secs(60),
        Duration::from_millis(500),
        Some(&operator),
        || async {
            let workload = workloads.get(JOB).await.map_err(|e| e.to_string())?;
            let status = workload.status.unwrap_or_default();
            if status.phase == Some(Phase::Succeeded) {
                Ok(status)
            } else {
                Err(format!(
                    "phase {:?}, reason {:?}, message {:?}",
                    status.phase, status.reason, status.message
                ))
            }
        },
    )
    .await;
    progress.say(format!("CarbonWorkload {JOB}: Succeeded"));

    let metrics = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("carbonshift_releases_total{reason=\"Released\"} 1"),
        "one release with reason Released in /metrics:\n{metrics}"
    );
    progress.say("done: held, released on plan, Succeeded");
}

// ---------------------------------------------------------------------------------------------
// Offline checks of the suite's own fixtures (they run in every `cargo test`)

#[test]
fn the_generated_certificate_verifies_for_the_webhook_host_and_can_be_served() {
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    carbonshift::forecast::install_crypto_provider();
    for host in ["127.0.0.1", "172.18.0.1", "::1", "host.docker.internal"] {
        let (ca_pem, cert_pem, key_pem) = certificates(host);
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM");
        roots.add(ca).expect("CA certificate");
        let verifier = WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .expect("verifier");
        let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("leaf PEM");
        let name = ServerName::try_from(host.to_string()).expect("server name");
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        // A different name must not verify: the SAN is what makes it valid.
        let other = ServerName::try_from("192.0.2.1").expect("server name");
        assert!(
            verifier
                .verify_server_cert(&leaf, &[], &other, &[], UnixTime::now())
                .is_err(),
            "{host}"
        );
        carbonshift::webhook::tls::server_config_from_pem(
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
            &carbonshift::webhook::TlsConfigPaths::new("tls.crt", "tls.key"),
        )
        .unwrap_or_else(|e| panic!("{host}: the webhook cannot serve the pair: {e}"));
    }
}

/// The AdmissionReview an API server sends for creating `job` in `namespace`.
fn create_review(job: &Job, namespace: &str, dry_run: bool) -> serde_json::Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b3e5a9d2-0c41-4f57-9a55-1f7e2c3d4e5f",
            "kind": {"group": "batch", "version": "v1", "kind": "Job"},
            "resource": {"group": "batch", "version": "v1", "resource": "jobs"},
            "name": job.metadata.name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "e2e"},
            "object": job,
            "dryRun": dry_run,
        }
    })
}

#[test]
fn the_test_job_is_held_by_the_webhook() {
    use carbonshift::webhook::{Outcome, mutate};
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionReview};

    let now = DateTime::parse_from_rfc3339("2026-05-04T10:00:00Z")
        .expect("valid literal")
        .to_utc();
    let job = deferrable_job(
        "carbonshift-e2e-0",
        JOB,
        "carbonshift-e2e-0",
        "busybox:1.36",
    );
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(create_review(&job, "carbonshift-e2e-0", true))
            .expect("AdmissionReview");
    let request: AdmissionRequest<DynamicObject> = review.try_into().expect("a request");
    let defaults = carbonshift::api::annotations::AnnotationDefaults {
        forecast: "carbonshift-e2e-0".to_string(),
        ..Default::default()
    };
    let (response, outcome) = mutate(&request, &defaults, now);
    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: false
        }
    );
    assert!(response.allowed);
    let patch: json_patch::Patch =
        serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("JSON patch");
    let mut held = serde_json::to_value(&job).expect("Job JSON");
    json_patch::patch(&mut held, &patch).expect("the patch applies");
    let held: Job = serde_json::from_value(held).expect("a Job");
    assert!(suspended(&held));
    assert_eq!(annotation(&held, HELD), Some("true"));
    assert_eq!(
        annotation(&held, SUBMITTED_AT),
        Some("2026-05-04T10:00:00Z")
    );
}

#[test]
fn the_forecast_has_one_clean_window_of_three_minutes_on_a_minute_grid() {
    let clean = DateTime::parse_from_rfc3339("2026-05-04T10:01:15Z")
        .expect("valid literal")
        .to_utc();
    let points = forecast_points(clean);
    assert_eq!(points.len(), 34);
    assert_eq!(points[0].start, clean - TimeDelta::minutes(3));
    assert!(
        points
            .windows(2)
            .all(|w| w[1].start - w[0].start == TimeDelta::minutes(1))
    );
    let clean_starts: Vec<_> = points
        .iter()
        .filter(|p| p.intensity == CLEAN)
        .map(|p| p.start)
        .collect();
    assert_eq!(
        clean_starts,
        vec![
            clean,
            clean + TimeDelta::minutes(1),
            clean + TimeDelta::minutes(2)
        ]
    );
    assert!(
        points
            .iter()
            .all(|p| p.intensity == CLEAN || p.intensity == DIRTY)
    );
}

#[test]
fn the_planner_puts_the_test_job_exactly_at_the_clean_window() {
    use carbonshift::planner::{Constraints, Forecast, Point, plan};

    let clean = DateTime::parse_from_rfc3339("2026-05-04T10:01:15Z")
        .expect("valid literal")
        .to_utc();
    let forecast = Forecast::new(
        forecast_points(clean)
            .into_iter()
            .map(|p| Point {
                start: p.start,
                intensity: p.intensity,
            })
            .collect(),
    )
    .expect("a valid forecast");
    // The Job is created between 75 s and 20 s before the window (the suite refuses to go on with
    // less), and planned again at any time from then up to the window's start.
    for created_before in [75, 20] {
        let submitted = clean - TimeDelta::seconds(created_before);
        for before in (0..=created_before).rev() {
            let now = clean - TimeDelta::seconds(before);
            let constraints = Constraints::new(submitted, TimeDelta::minutes(1))
                .with_max_delay(TimeDelta::minutes(10))
                .with_margin(TimeDelta::minutes(5));
            let plan = plan(&forecast, &constraints, now)
                .unwrap_or_else(|e| panic!("no plan {before} s before the window: {e}"));
            assert_eq!(plan.start, clean, "{before} s before the window");
            assert_eq!(plan.expected_intensity, CLEAN);
            assert_eq!(plan.coverage, 1.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary without a cluster: start-up failures and a graceful stop (offline, 127.0.0.1 only)

/// A kubeconfig naming an API server that is not there (client construction does not connect).
fn unreachable_kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: https://127.0.0.1:1
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody, namespace: default}
current-context: nowhere
users:
- name: nobody
  user: {token: not-a-token}
",
    )
    .expect("write the kubeconfig");
    path
}

/// `carbonshift run ARGS` with `KUBECONFIG` (or none), no in-cluster environment and an empty
/// home, so that nothing of the machine running the tests leaks in.
fn offline_command(dir: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_carbonshift"));
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("CARBONSHIFT_") || key_text.starts_with("KUBERNETES_") {
            command.env_remove(&key);
        }
    }
    command.env_remove("KUBECONFIG").env("HOME", dir);
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    command
        .arg("run")
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

#[test]
fn without_any_cluster_configuration_run_exits_1_with_one_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let output = offline_command(
        dir.path(),
        None,
        &["--no-webhook", "--metrics-addr=127.0.0.1:0"],
    )
    .output()
    .expect("run the binary");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("error: cannot find a Kubernetes cluster (set KUBECONFIG"),
        "{stderr}"
    );
}

#[test]
fn an_unreadable_certificate_stops_run_with_exit_1_naming_the_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = unreachable_kubeconfig(dir.path());
    let missing = dir.path().join("missing.crt");
    let output = offline_command(
        dir.path(),
        Some(&kubeconfig),
        &[
            "--metrics-addr=127.0.0.1:0",
            "--webhook-addr=127.0.0.1:0",
            &format!("--tls-cert={}", missing.display()),
            &format!("--tls-key={}", dir.path().join("missing.key").display()),
        ],
    )
    .output()
    .expect("run the binary");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "error: cannot read the TLS certificate file {}",
            missing.display()
        )),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_exit_2() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for args in [
        &["--margin=5x"][..],
        &["--namespaces=Bad"][..],
        &["--pue=7"][..],
    ] {
        let output = offline_command(dir.path(), None, args)
            .output()
            .expect("run the binary");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}

/// Waits up to 30 s for `url` to answer 200 and returns the body.
async fn get_ok(http: &reqwest::Client, url: &str, operator: &Operator) -> String {
    eventually(
        url,
        Duration::from_secs(30),
        Duration::from_millis(100),
        Some(operator),
        || async {
            match http.get(url).send().await {
                Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

#[test]
fn run_serves_the_webhook_and_metrics_and_stops_gracefully_on_sigterm() {
    carbonshift::forecast::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = unreachable_kubeconfig(dir.path());
    let (ca_pem, cert_pem, key_pem) = certificates("127.0.0.1");
    std::fs::write(dir.path().join("tls.crt"), cert_pem).expect("write");
    std::fs::write(dir.path().join("tls.key"), key_pem).expect("write");
    let webhook_port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let metrics_port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let log = dir.path().join("operator.log");
    let file = std::fs::File::create(&log).expect("log file");
    let child = offline_command(
        dir.path(),
        Some(&kubeconfig),
        &[
            "--leader-election=false",
            "--log-format=text",
            &format!("--webhook-addr=127.0.0.1:{webhook_port}"),
            &format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            &format!("--tls-cert={}", dir.path().join("tls.crt").display()),
            &format!("--tls-key={}", dir.path().join("tls.key").display()),
        ],
    )
    .stdout(file.try_clone().expect("log file"))
    .stderr(file)
    .spawn()
    .expect("start the binary");
    let operator = Operator {
        child: Arc::new(Mutex::new(Some(child))),
        log,
    };
    let guard = StopOnDrop(operator.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
            .build()
            .expect("HTTP client");
        let base = format!("http://127.0.0.1:{metrics_port}");
        assert_eq!(
            get_ok(&http, &format!("{base}/readyz"), &operator).await,
            "ok\n"
        );
        assert_eq!(
            get_ok(&http, &format!("{base}/healthz"), &operator).await,
            "ok\n"
        );
        let metrics = get_ok(&http, &format!("{base}/metrics"), &operator).await;
        assert!(metrics.contains("carbonshift_leader 1\n"), "{metrics}");

        let job = deferrable_job("ml", JOB, "default", "busybox:1.36");
        let review = create_review(&job, "ml", false);
        let answer: serde_json::Value = http
            .post(format!("https://127.0.0.1:{webhook_port}/mutate"))
            .json(&review)
            .send()
            .await
            .expect("POST /mutate")
            .json()
            .await
            .expect("an AdmissionReview");
        assert_eq!(answer["response"]["allowed"], json!(true), "{answer}");
        assert_eq!(
            answer["response"]["patchType"],
            json!("JSONPatch"),
            "{answer}"
        );
        let metrics = get_ok(&http, &format!("{base}/metrics"), &operator).await;
        assert!(
            metrics.contains("carbonshift_webhook_requests_total{result=\"held\"} 1"),
            "{metrics}"
        );
    });
    let outcome = operator.stop().expect("it was running");
    drop(guard);
    assert_eq!(
        outcome,
        "stopped gracefully (exit status: 0)",
        "{}",
        tail(&operator.log, 40)
    );
}

/// Stops the operator if a test panics before it does.
struct StopOnDrop(Operator);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}
