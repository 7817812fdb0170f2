//! End-to-end: the real `carbonshift run` binary against a real Kubernetes control plane — API
//! server, controller manager (the Job controller) and scheduler — with a node simulator in the
//! harness playing the kubelet.
//!
//! `scripts/e2e.sh` (what `make e2e` and CI run) brings up the loopback control plane of
//! `../shared/tools/k8s` when it is not up, runs this suite against it with
//! `CARBONSHIFT_E2E_REQUIRE=1`, and stops the control plane again if it started it. By hand:
//!
//! ```sh
//! kubeconfig=$(../shared/tools/k8s/up.sh)
//! CARBONSHIFT_E2E_KUBECONFIG=$kubeconfig \
//!   cargo test --locked --test e2e -- --nocapture --test-threads=16
//! ```
//!
//! Without `CARBONSHIFT_E2E_KUBECONFIG` every cluster scenario prints a `SKIPPED` line and
//! passes, unless `CARBONSHIFT_E2E_REQUIRE=1`, which makes a skip a failure. The scenarios mostly
//! wait for clean windows, so run them in parallel (`--test-threads`, 16 in `scripts/e2e.sh`):
//! each takes one to three minutes.
//!
//! # Isolation
//!
//! Each scenario is its own `#[test]`, in its own namespace `e2e-<scenario>-<random>`, with its
//! own operator process(es) (`--namespaces <ns>`, `--forecast-selector carbonshift.dev/e2e=<ns>`),
//! its own CarbonForecast (named like the namespace, labelled `carbonshift.dev/e2e=<ns>`), its own
//! `MutatingWebhookConfiguration` limited to its namespace by `namespaceSelector`, and its own
//! simulated Node(s) with a node-pool label its Jobs select. Scenarios running at once do not see
//! each other. Everything is deleted at the end, also after a failure (see [`harness::Cleanup`]);
//! the CRDs stay.
//!
//! # Scenarios
//!
//! - [`admission`]: through the real API server, an annotated Job is stored suspended with the
//!   markers, Jobs that do not opt in are untouched, each malformed annotation is denied with the
//!   exact message the client gets, an infeasible deadline is admitted with kubectl's `Warning:`.
//! - [`lifecycle`]: planned → held → released within 2 s of the planned start → pods bound by the
//!   scheduler and run → Job Complete → workload Succeeded; the deadline rule; a re-plan when the
//!   forecast changes; `run-now`; a dry run; an interruptible Job paused and resumed across two
//!   windows.
//! - [`resilience`]: the operator SIGKILLed while a Job waits and restarted after its planned
//!   start; a provider outage (a local stand-in that answers good data, then HTTP 500, then
//!   garbage) turning the forecast Stale while held Jobs keep their plan; two replicas with leader
//!   election, the leader killed. Releases are counted in the API server's audit log.
//! - [`chart`]: `helm template` accepted by a server-side dry run; the operator running as the
//!   chart's ServiceAccount (a TokenRequest token) does its job and is refused the rest.
//! - [`ordering`]: the forecast/Job race — one `kubectl apply`, Jobs before the operator, a Job
//!   whose forecast's first data comes late from a slow provider (and one naming a forecast that
//!   does not exist), a release refused because the Job changed.
//! - [`budget`]: a used-up `Deny` CarbonBudget denies the next annotated Job with the exact
//!   message (its status and `BudgetExhausted` Event from the operator); a group of Jobs failing
//!   three times in a row gets its fourth held as `WasteGuard`; `carbonshift report --output json`
//!   prints the ledger's totals.
//! - [`energy`]: with `--prometheus-url` at a local stand-in of the Prometheus query API, a
//!   finished Job's energy is Kepler's (`status.energySource: kepler`), in its status and ledger.
//! - [`fleet`]: a workload with two candidate forecasts (two node pools labelled as two grids)
//!   is placed in the cleaner one, released with that pool's node selector and bound there by the
//!   scheduler; with `capacity.jobs: 3`, ten workloads wanting the same window run three at a
//!   time (the count over time from the pods' records) and all meet their deadlines.
//! - [`examples`]: every manifest under `examples/` applied with `kubectl apply` (the training
//!   kinds' upstream CRDs from `../shared/crds-upstream/` first): held Jobs held, the dry run
//!   planned but running, trace and UK forecasts Ready, the others failing only for want of egress.
//!
//! This file also holds the checks that need no cluster and always run: the suite's
//! certificate, forecast and Job fixtures, and the binary's start-up failures and graceful stop
//! against an unreachable API server.
//!
//! # Environment
//!
//! - `CARBONSHIFT_E2E_KUBECONFIG`: kubeconfig of a cluster admin; unset skips the cluster
//!   scenarios.
//! - `CARBONSHIFT_E2E_REQUIRE=1`: a skipped scenario fails instead.
//! - `CARBONSHIFT_E2E_CP_HOME` (default: the kubeconfig's directory when it holds `audit.log`):
//!   the control plane's home, for its audit log and CA; `CARBONSHIFT_E2E_AUDIT_LOG` overrides
//!   the log's path.
//! - `CARBONSHIFT_E2E_WEBHOOK_HOST` (default `127.0.0.1`): an address of this machine the API
//!   server reaches; `CARBONSHIFT_E2E_WEBHOOK_BIND` (default `127.0.0.1` for a loopback host, else
//!   `0.0.0.0`): where the webhooks listen.
//! - `CARBONSHIFT_E2E_KEEP=1`: keep each scenario's directory (operator logs, certificates) after
//!   a success too; after a failure it is always kept, and its path printed.
//! - `CARBONSHIFT_E2E_KUBECTL`, `CARBONSHIFT_E2E_HELM` (or `CARBONSHIFT_HELM`): the tools (default
//!   `.tools/bin/` of `make tools`, else `PATH`); `CARBONSHIFT_E2E_IMAGE`: the Jobs' image.

// This crate is test code: a failed `expect` in a helper is a failed test. (clippy.toml's
// allow-*-in-tests reaches `#[test]` functions and `#[cfg(test)]` code, not the helpers of an
// integration test.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod budget;
mod chart;
mod energy;
mod examples;
mod fixtures;
mod fleet;
mod harness;
mod kinds;
mod lifecycle;
mod nodes;
mod operator;
mod ordering;
mod provider;
mod resilience;
mod verify;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use carbonshift::api::annotations::{HELD, SUBMITTED_AT};
use chrono::{DateTime, TimeDelta};
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use fixtures::{CLEAN, DIRTY, JobBuilder, annotation, certificates, forecast_points, suspended};
use harness::{free_ports, tail};
use operator::Operator;

const JOB: &str = "train-e2e";

// ---------------------------------------------------------------------------------------------
// Offline checks of the suite's own fixtures (they run in every `cargo test`)

#[test]
fn a_cluster_scenario_without_a_cluster_skips_unless_it_is_required() {
    assert_eq!(harness::no_cluster("probe", false), Ok(()));
    assert_eq!(
        harness::no_cluster("probe", true),
        Err("CARBONSHIFT_E2E_REQUIRE=1 but CARBONSHIFT_E2E_KUBECONFIG is not set".to_string())
    );
}

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

fn fixture_job(namespace: &str) -> Job {
    JobBuilder::deferrable(namespace, JOB, "carbonshift-e2e-0", "busybox:1.36")
        .pool("e2e-0")
        .build()
}

#[test]
fn the_test_job_is_held_by_the_webhook_and_selects_its_node_pool() {
    use carbonshift::webhook::{Outcome, mutate};
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionReview};

    let now = DateTime::parse_from_rfc3339("2026-05-04T10:00:00Z")
        .expect("valid literal")
        .to_utc();
    let job = fixture_job("carbonshift-e2e-0");
    let selector = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    assert_eq!(
        selector.get(harness::POOL_LABEL).map(String::as_str),
        Some("e2e-0")
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
    use carbonshift::planner::{Constraints, Forecast, plan};

    let clean = DateTime::parse_from_rfc3339("2026-05-04T10:01:15Z")
        .expect("valid literal")
        .to_utc();
    let forecast = Forecast::new(forecast_points(clean).into_iter().map(Into::into).collect())
        .expect("a valid forecast");
    // The Job is created up to LEAD before the window and planned again at any time from then up
    // to the window's start.
    for created_before in [harness::LEAD.num_seconds(), 5] {
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

#[test]
fn the_interruptible_fixture_is_planned_in_both_clean_windows() {
    use carbonshift::planner::{Constraints, Forecast, plan};

    let first = DateTime::parse_from_rfc3339("2026-05-04T10:00:30Z")
        .expect("valid literal")
        .to_utc();
    let window = TimeDelta::seconds(30);
    let second = first + TimeDelta::seconds(60);
    let points = fixtures::grid(
        first - TimeDelta::minutes(1),
        window,
        first + TimeDelta::minutes(20),
        &[(first, first + window), (second, second + window)],
    );
    let forecast =
        Forecast::new(points.into_iter().map(Into::into).collect()).expect("a valid forecast");
    let submitted = first - harness::LEAD;
    let constraints = Constraints::new(submitted, TimeDelta::minutes(1))
        .with_deadline(first + TimeDelta::minutes(3))
        .with_margin(TimeDelta::seconds(10))
        .interruptible();
    let plan = plan(&forecast, &constraints, submitted).expect("a plan");
    assert_eq!(plan.start, first);
    let windows: Vec<(DateTime<chrono::Utc>, DateTime<chrono::Utc>)> =
        plan.windows.iter().map(|w| (w.start, w.end)).collect();
    assert_eq!(
        windows,
        vec![(first, first + window), (second, second + window)]
    );
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
async fn get_ok(url: &str, operator: &Operator) -> String {
    harness::eventually(
        url,
        Duration::from_secs(30),
        Duration::from_millis(100),
        &|| operator.assert_running(),
        || crate::operator::get_text(url),
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
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let [webhook_port, metrics_port] = free_ports([localhost, localhost]);
    let log = dir.path().join("operator.log");
    let file = std::fs::File::create(&log).expect("log file");
    let child = offline_command(
        dir.path(),
        Some(&kubeconfig),
        &[
            "--leader-election=false",
            "--log-format=json",
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
    let operator = Operator::adopt("offline operator", child, log, (metrics_port, webhook_port));
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
        // The API server of this kubeconfig never answers: the replica is alive but not ready,
        // and says which server (and kubeconfig context) it cannot reach.
        assert_eq!(
            get_ok(&operator.metrics_url("/healthz"), &operator).await,
            "ok\n"
        );
        let readyz = operator.metrics_url("/readyz");
        let not_ready = harness::eventually(
            "/readyz to answer 503 naming the unreachable API server",
            Duration::from_secs(30),
            Duration::from_millis(100),
            &|| operator.assert_running(),
            || async {
                let response = http.get(&readyz).send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.text().await.map_err(|e| e.to_string())?;
                if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                    && body.contains("the API server https://127.0.0.1:1 (kubeconfig context nowhere) is unreachable")
                {
                    Ok(body)
                } else {
                    Err(format!("{status}: {body}"))
                }
            },
        )
        .await;
        assert!(not_ready.starts_with("not ready: "), "{not_ready}");
        let metrics = get_ok(&operator.metrics_url("/metrics"), &operator).await;
        assert!(metrics.contains("carbonshift_leader 1\n"), "{metrics}");

        let job = fixture_job("ml");
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
        let metrics = get_ok(&operator.metrics_url("/metrics"), &operator).await;
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
    // Written to a file, not a terminal: no colour escape codes. JSON lines whose fields are
    // plain values (no Rust debug strings), the unreachable server named.
    let log = std::fs::read_to_string(&operator.log).expect("the log");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log}"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let with = |message: &str| {
        lines
            .iter()
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .unwrap_or_else(|| panic!("no log line {message:?}:\n{log}"))
    };
    let admission = with("admission");
    assert_eq!(admission["outcome"], json!("held"), "{admission}");
    assert_eq!(
        admission["detail"],
        json!("held: suspended and marked held")
    );
    assert_eq!(admission["warning_count"], json!(0));
    assert_eq!(admission["warnings"], json!(""));
    let unreachable = with("the API server is unreachable");
    assert_eq!(
        unreachable["server"],
        json!("https://127.0.0.1:1 (kubeconfig context nowhere)"),
        "{unreachable}"
    );
}

/// Stops the operator if a test panics before it does.
struct StopOnDrop(Operator);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}
