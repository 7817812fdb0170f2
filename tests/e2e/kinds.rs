//! The training-job kinds on the real control plane, with their upstream CRDs installed from
//! `../shared/crds-upstream/` (no controller of theirs runs: the scenario writes the status each
//! kind's controller would write): a JobSet, a TrainJob, a PyTorchJob, an MPIJob and a RayJob (the
//! manifests of `examples/kinds/`) are stored suspended by the webhook with the markers, planned
//! into the clean window, released within 2 s of its start by their own switch, and their
//! CarbonWorkloads follow the written status to `Running` and `Succeeded`; a Job queued by Kueue
//! gets carbonshift's entry in Kueue's admission gate at admission and loses only that entry at
//! release (its suspend switch, Kueue's, untouched). On every kind a malformed annotation is
//! denied with the exact message, an unannotated object is stored as sent, and a RayJob KubeRay
//! could not suspend is refused with what to change. The kinds run side by side, in one scenario.
//!
//! Without `../shared/crds-upstream` (or `CARBONSHIFT_E2E_UPSTREAM_CRDS`) the scenario prints a
//! SKIPPED line, and fails under `CARBONSHIFT_E2E_REQUIRE=1`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use carbonshift::api::Phase;
use carbonshift::api::annotations::{
    ADMISSION_GATED_BY, DEFERRABLE, DURATION, FORECAST, HELD, HELD_BY, MAX_DELAY, POWER,
    RELEASED_AT, SUBMITTED_AT,
};
use carbonshift::workload::{self, Adapter};
use chrono::{DateTime, TimeDelta, Utc};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use crate::harness::{
    self, FIELD_MANAGER, LEAD, RELEASE_POLL, RELEASE_TOLERANCE, Scenario, rfc3339, say,
    whole_seconds,
};
use crate::operator::OperatorOptions;

/// Another controller's entry in the Kueue-queued Job's admission gate, which must survive.
const OTHER_GATE: &str = "example.com/quota-check";

/// Enough time for a released workload's status to be followed to the end.
const FOLLOW: Duration = Duration::from_secs(30);

/// The upstream CRDs' directory, or `None` (after a SKIPPED line) when it is not there; a
/// failure under `CARBONSHIFT_E2E_REQUIRE=1`.
fn upstream_crds(test: &str) -> Option<PathBuf> {
    let dir = std::env::var("CARBONSHIFT_E2E_UPSTREAM_CRDS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/crds-upstream"));
    if dir.join("jobset.x-k8s.io_jobsets.yaml").is_file() {
        return Some(dir);
    }
    assert!(
        !harness::required(),
        "CARBONSHIFT_E2E_REQUIRE=1 but the upstream CRDs are not in {} (set CARBONSHIFT_E2E_UPSTREAM_CRDS)",
        dir.display()
    );
    say(&format!(
        "SKIPPED e2e {test}: the upstream CRDs of the training-job kinds are not in {} (set CARBONSHIFT_E2E_UPSTREAM_CRDS to their directory)",
        dir.display()
    ));
    None
}

/// Installs the upstream CRDs (server-side apply: safe beside another scenario doing the same)
/// and waits until each is Established.
pub fn install_crds(s: &Scenario, dir: &Path) {
    let dir = dir.display().to_string();
    let output = s.kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", &dir],
        None,
    );
    assert!(
        output.status.success(),
        "kubectl apply -f {dir}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = s.kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &dir,
        ],
        None,
    );
    assert!(
        output.status.success(),
        "the upstream CRDs did not become Established: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    s.say(format!(
        "upstream CRDs from {dir} installed and Established"
    ));
}

/// One workload of the scenario: its adapter, its name and the example it is made from.
struct Case {
    adapter: &'static dyn Adapter,
    name: &'static str,
    example: &'static str,
    /// Held by Kueue's admission gate instead of its suspend switch.
    gated: bool,
}

fn cases() -> Vec<Case> {
    let adapter = |kind: &str| {
        workload::adapters()
            .into_iter()
            .find(|a| a.kind() == kind)
            .unwrap_or_else(|| panic!("no adapter for {kind}"))
    };
    let case = |kind: &str, name, example, gated| Case {
        adapter: adapter(kind),
        name,
        example,
        gated,
    };
    vec![
        case("JobSet", "jobset", "jobset.yaml", false),
        case("TrainJob", "trainjob", "trainjob.yaml", false),
        case("PyTorchJob", "pytorchjob", "pytorchjob.yaml", false),
        case("MPIJob", "mpijob", "mpijob.yaml", false),
        case("RayJob", "rayjob", "rayjob.yaml", false),
        case("Job", "queued", "kueue-job.yaml", true),
    ]
}

/// `examples/kinds/<file>` named `name` in the scenario's namespace, with the scenario's
/// carbonshift annotations (1 minute within 10, its forecast) instead of the example's.
fn object(s: &Scenario, file: &str, name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/kinds")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    value["metadata"]["name"] = json!(name);
    value["metadata"]["namespace"] = json!(s.ns);
    value["metadata"]["annotations"] = json!({
        DEFERRABLE: "true",
        DURATION: "1m",
        MAX_DELAY: "10m",
        FORECAST: s.ns,
        POWER: "300W",
    });
    value
}

fn api(s: &Scenario, adapter: &dyn Adapter) -> Api<DynamicObject> {
    Api::namespaced_with(s.client.clone(), &s.ns, adapter.resource())
}

fn annotation<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a str> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

async fn create(
    s: &Scenario,
    adapter: &dyn Adapter,
    value: &Value,
) -> Result<DynamicObject, kube::Error> {
    let object: DynamicObject = serde_json::from_value(value.clone()).expect("an object");
    api(s, adapter)
        .create(&PostParams::default(), &object)
        .await
}

#[test]
fn every_kind_is_held_released_and_followed_to_success_and_kueue_jobs_by_the_gate() {
    let Some(crds) = upstream_crds("kinds") else {
        return;
    };
    harness::run("kinds", move |s| kinds(s, crds));
}

async fn kinds(s: Scenario, crds: PathBuf) {
    install_crds(&s, &crds);
    let operator = s
        .start_operator(OperatorOptions {
            extra: vec!["--workload-kinds=Job,JobSet,TrainJob,PyTorchJob,MPIJob,RayJob".into()],
            ..OperatorOptions::default()
        })
        .await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(LEAD);
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;
    for kind in ["JobSet", "TrainJob", "PyTorchJob", "MPIJob", "RayJob"] {
        s.assert_metric(
            &operator,
            &format!("carbonshift_workload_kind_watched{{kind=\"{kind}\"}} 1"),
        )
        .await;
    }

    // 1. Held at admission: each by its own switch, the Kueue-queued Job by Kueue's gate.
    let cases = cases();
    for case in &cases {
        let mut value = object(&s, case.example, case.name);
        if case.gated {
            value["metadata"]["annotations"][ADMISSION_GATED_BY] = json!(OTHER_GATE);
        }
        let created = create(&s, case.adapter, &value)
            .await
            .unwrap_or_else(|e| panic!("creating {} {}: {e}", case.adapter.kind(), case.name));
        let what = format!("{} {}", case.adapter.kind(), case.name);
        assert_eq!(
            annotation(&created, HELD),
            Some("true"),
            "{what}: held marker"
        );
        assert!(
            annotation(&created, SUBMITTED_AT).is_some(),
            "{what}: submitted-at"
        );
        let switch = workload::pointer(&created.data, case.adapter.suspend_path());
        if case.gated {
            assert_eq!(
                annotation(&created, ADMISSION_GATED_BY),
                Some("example.com/quota-check,carbonshift.dev/low-carbon-window"),
                "{what}: the gate"
            );
            assert_eq!(annotation(&created, HELD_BY), Some("kueue-admission-gate"));
            // Kueue's switch: as sent (the example is created suspended, as Kueue's webhook does).
            assert_eq!(switch, Some(&json!(true)), "{what}");
        } else {
            assert_eq!(
                switch,
                Some(&json!(true)),
                "{what}: {:?} stored",
                case.adapter.suspend_path()
            );
            assert_eq!(annotation(&created, ADMISSION_GATED_BY), None);
        }
        s.say(format!(
            "{what}: stored held ({})",
            if case.gated {
                format!(
                    "{ADMISSION_GATED_BY}: {:?}",
                    annotation(&created, ADMISSION_GATED_BY).unwrap_or_default()
                )
            } else {
                format!("/{} true", case.adapter.suspend_path().join("/"))
            }
        ));
    }

    // 2. While they wait: what the webhook does not hold, and what it refuses, on every kind;
    // the manifests of examples/kinds/ as they are, strictly valid against the upstream schemas;
    // a CarbonWorkload of the shape before jobRef had a kind.
    admission_checks(&s, &cases).await;
    examples_are_strictly_valid(&s);
    legacy_workloads_are_accepted(&s).await;

    // 3. Planned into the clean window, released within 2 s of its start.
    for case in &cases {
        assert_eq!(s.wait_deferred(case.name).await, clean, "{}", case.name);
    }
    assert!(
        Utc::now() < clean - TimeDelta::seconds(2),
        "the set-up took too long: the clean window starts at {}",
        rfc3339(clean)
    );
    let releases = cases.iter().map(|case| expect_release(&s, case, clean));
    futures::future::join_all(releases).await;

    // 4. Each kind's status, written as its controller would, followed to Succeeded; the
    // Kueue-queued Job waits for Kueue (which does not run here): Released.
    let follow = cases.iter().map(|case| follow(&s, case));
    futures::future::join_all(follow).await;
    s.assert_metric(
        &operator,
        "carbonshift_releases_total{reason=\"Released\"} 6",
    )
    .await;
}

/// Unannotated objects stored as sent, malformed annotations denied with the exact message, a
/// RayJob KubeRay could not suspend refused.
async fn admission_checks(s: &Scenario, cases: &[Case]) {
    let prefix = format!(
        "admission webhook \"{}\" denied the request: ",
        s.webhook_name()
    );
    for case in cases {
        let what = case.adapter.kind();
        let mut plain = object(s, case.example, &format!("{}-plain", case.name));
        plain["metadata"]["annotations"] = json!({"team": "ml"});
        let stored = create(s, case.adapter, &plain)
            .await
            .unwrap_or_else(|e| panic!("creating an unannotated {what}: {e}"));
        assert_eq!(
            stored.metadata.annotations,
            Some([("team".to_string(), "ml".to_string())].into()),
            "{what}: the annotations were changed at admission"
        );
        // The example of the Kueue-queued Job is created suspended (as Kueue's webhook would
        // make it); every other kind must come back with its switch as sent: off.
        let suspended =
            workload::pointer(&stored.data, case.adapter.suspend_path()) == Some(&json!(true));
        assert_eq!(
            suspended, case.gated,
            "{what}: the switch of an unannotated object"
        );

        let mut bad = object(s, case.example, &format!("{}-bad", case.name));
        bad["metadata"]["annotations"][DURATION] = json!("2x");
        match create(s, case.adapter, &bad).await {
            Ok(_) => panic!("{what} with a malformed annotation was admitted"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(
                    status.message,
                    format!(
                        "{prefix}{}",
                        r#"carbonshift.dev/duration: "2x" is not a duration: unknown unit "x"; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)"#
                    ),
                    "{what}"
                );
                assert_eq!(status.code, 400, "{what}");
            }
            Err(e) => panic!("creating a malformed {what}: {e}"),
        }
    }
    s.say(format!(
        "every kind: unannotated stored as sent, a malformed annotation denied with {prefix}carbonshift.dev/duration: \"2x\" ..."
    ));

    let rayjobs = workload::adapters()
        .into_iter()
        .find(|a| a.kind() == "RayJob")
        .expect("the RayJob adapter");
    let mut keeps_cluster = object(s, "rayjob.yaml", "rayjob-keeps-cluster");
    keeps_cluster["spec"]["shutdownAfterJobFinishes"] = json!(false);
    match create(s, rayjobs, &keeps_cluster).await {
        Ok(_) => panic!("a RayJob KubeRay cannot suspend was held"),
        Err(kube::Error::Api(status)) => assert_eq!(
            status.message,
            format!(
                "{prefix}spec.shutdownAfterJobFinishes must be true for carbonshift to hold a RayJob: KubeRay suspends only a RayJob that deletes its Ray cluster when the job finishes (\"a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended\"); set spec.shutdownAfterJobFinishes: true, or remove carbonshift.dev/deferrable"
            )
        ),
        Err(e) => panic!("{e}"),
    }
    s.say("a RayJob with shutdownAfterJobFinishes: false is refused with what to change");
    let workloads = s.workloads();
    for case in cases {
        let name = format!("{}-plain", case.name);
        assert!(
            workloads.get_opt(&name).await.expect("read").is_none(),
            "a CarbonWorkload exists for the unannotated {name}"
        );
    }
}

/// `kubectl create --dry-run=server --validate=strict` of every file in `examples/kinds/`: the
/// API server refuses unknown or misspelt fields instead of pruning them, and the webhook holds
/// each.
fn examples_are_strictly_valid(s: &Scenario) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kinds");
    let output = s.kubectl(
        &[
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-o",
            "json",
            "-n",
            &s.ns,
            "-f",
            &dir.display().to_string(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the examples are not valid: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let held = stdout.matches("\"carbonshift.dev/held\": \"true\"").count();
    let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(held, files, "every example is held: {stdout}");
    s.say(format!(
        "kubectl create --dry-run=server --validate=strict -f examples/kinds/: {files} objects valid and held"
    ));
}

/// A CarbonWorkload written before jobRef had kind and apiVersion is still accepted; it may gain
/// them once, and they are immutable from then on.
async fn legacy_workloads_are_accepted(s: &Scenario) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        &s.ns,
        &kube::core::ApiResource::erase::<carbonshift::api::CarbonWorkload>(&()),
    );
    let spec = |job_ref: Value| {
        json!({"jobRef": job_ref, "forecast": s.ns, "submittedAt": "2026-05-04T10:00:00Z",
            "duration": "1h", "deadline": "2026-05-05T06:00:00Z",
            "latestStart": "2026-05-05T05:00:00Z", "powerWatts": 300, "powerSource": "annotation",
            "pue": 1.2})
    };
    let apply = |job_ref: Value| {
        let api = api.clone();
        let object = json!({"apiVersion": "carbonshift.dev/v1alpha1", "kind": "CarbonWorkload",
            "metadata": {"name": "legacy"}, "spec": spec(job_ref)});
        async move {
            api.patch(
                "legacy",
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await
        }
    };
    apply(json!({"name": "legacy", "uid": "uid-legacy"}))
        .await
        .expect("a CarbonWorkload of the old shape is accepted");
    apply(json!({"apiVersion": "batch/v1", "kind": "Job", "name": "legacy", "uid": "uid-legacy"}))
        .await
        .expect("an old CarbonWorkload gains kind and apiVersion once");
    match apply(
        json!({"apiVersion": "ray.io/v1", "kind": "RayJob", "name": "legacy", "uid": "uid-legacy"}),
    )
    .await
    {
        Ok(_) => panic!("jobRef.kind changed"),
        Err(kube::Error::Api(status)) => assert!(
            status.message.contains("jobRef is immutable"),
            "{}",
            status.message
        ),
        Err(e) => panic!("{e}"),
    }
    match apply(json!({"kind": "Job", "name": "legacy", "uid": "uid-legacy"})).await {
        Ok(_) => panic!("jobRef.kind without apiVersion accepted"),
        Err(kube::Error::Api(status)) => assert!(status.code == 422, "{status:?}"),
        Err(e) => panic!("{e}"),
    }
    api.delete("legacy", &Default::default())
        .await
        .expect("delete the legacy CarbonWorkload");
    s.say("a CarbonWorkload without jobRef.kind is accepted, gains kind and apiVersion once, then keeps them");
}

/// Polls the object every 100 ms until its switch is off (for the gated Job: carbonshift's gate
/// entry gone) and checks the release against `due` as [`Scenario::expect_release`] does for Jobs.
async fn expect_release(s: &Scenario, case: &Case, due: DateTime<Utc>) {
    let api = api(s, case.adapter);
    let what = format!("{} {}", case.adapter.kind(), case.name);
    let mut last_held_poll = None;
    let (released, answered) = loop {
        s.check_operators();
        let asked = Utc::now();
        assert!(
            asked < due + TimeDelta::seconds(30),
            "{what} still held 30 s after {}",
            rfc3339(due)
        );
        match api.get(case.name).await {
            Ok(current) if !workload::switch_on(case.adapter, &current) => {
                break (current, Utc::now());
            }
            Ok(_) => last_held_poll = Some(asked),
            Err(e) => s.say(format!("reading {what} failed ({e}); polling on")),
        }
        tokio::time::sleep(RELEASE_POLL).await;
    };
    let marker = annotation(&released, RELEASED_AT)
        .unwrap_or_else(|| panic!("{what} released without {RELEASED_AT}"));
    let released_at = carbonshift::units::parse_timestamp(marker).expect("an RFC 3339 marker");
    assert!(
        answered >= whole_seconds(due),
        "{what} released before {}",
        rfc3339(due)
    );
    assert!(
        released_at >= whole_seconds(due) && released_at <= due + RELEASE_TOLERANCE,
        "{what}: {RELEASED_AT} {marker} is not within 2 s of {}",
        rfc3339(due)
    );
    if let Some(last) = last_held_poll {
        assert!(
            last < due + RELEASE_TOLERANCE,
            "{what}: a poll at {} (2 s or more after {}) still saw it held",
            rfc3339(last),
            rfc3339(due)
        );
    }
    if case.gated {
        // Only carbonshift's entry went; Kueue's switch and the other gate stay.
        assert_eq!(annotation(&released, ADMISSION_GATED_BY), Some(OTHER_GATE));
        assert_eq!(
            workload::pointer(&released.data, case.adapter.suspend_path()),
            Some(&json!(true))
        );
    }
    s.say(format!(
        "{what} released: {RELEASED_AT} {marker} ({:+} ms from {}){}",
        (released_at - due).num_milliseconds(),
        rfc3339(due),
        if case.gated {
            format!("; {ADMISSION_GATED_BY} now {OTHER_GATE:?}")
        } else {
            String::new()
        }
    ));
}

/// The status `kind`'s controller writes while the workload runs, and when it has succeeded.
fn statuses(kind: &str, now: &str) -> Option<(Value, Value)> {
    Some(match kind {
        "JobSet" => (
            json!({"replicatedJobsStatus": [
                {"name": "driver", "active": 1, "ready": 1, "succeeded": 0, "failed": 0, "suspended": 0},
                {"name": "workers", "active": 2, "ready": 2, "succeeded": 0, "failed": 0, "suspended": 0}]}),
            json!({"terminalState": "Completed",
                "replicatedJobsStatus": [
                    {"name": "driver", "active": 0, "ready": 0, "succeeded": 1, "failed": 0, "suspended": 0},
                    {"name": "workers", "active": 0, "ready": 0, "succeeded": 2, "failed": 0, "suspended": 0}],
                "conditions": [{"type": "Completed", "status": "True", "reason": "AllJobsCompleted",
                    "message": "jobset completed successfully", "lastTransitionTime": now}]}),
        ),
        "TrainJob" => (
            json!({"jobsStatus": [{"name": "node", "active": 2, "ready": 2, "succeeded": 0, "failed": 0, "suspended": 0}],
                "conditions": [{"type": "Created", "status": "True", "reason": "JobsCreationSucceeded",
                    "message": "Succeeded to create Jobs", "lastTransitionTime": now}]}),
            json!({"jobsStatus": [{"name": "node", "active": 0, "ready": 0, "succeeded": 2, "failed": 0, "suspended": 0}],
                "conditions": [
                    {"type": "Created", "status": "True", "reason": "JobsCreationSucceeded",
                        "message": "Succeeded to create Jobs", "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "reason": "JobsCompleted",
                        "message": "TrainJob is completed", "lastTransitionTime": now}]}),
        ),
        "PyTorchJob" | "MPIJob" => {
            let (a, b) = if kind == "MPIJob" {
                ("Launcher", "Worker")
            } else {
                ("Master", "Worker")
            };
            (
                json!({"startTime": now, "replicaStatuses": {a: {"active": 1}, b: {"active": 2}},
                    "conditions": [{"type": "Created", "status": "True", "reason": format!("{kind}Created")},
                        {"type": "Running", "status": "True", "reason": format!("{kind}Running")}]}),
                json!({"startTime": now, "completionTime": now,
                    "replicaStatuses": {a: {"succeeded": 1}, b: {"succeeded": 2}},
                    "conditions": [{"type": "Created", "status": "True", "reason": format!("{kind}Created")},
                        {"type": "Running", "status": "False", "reason": format!("{kind}Running")},
                        {"type": "Succeeded", "status": "True", "reason": format!("{kind}Succeeded"),
                         "lastTransitionTime": now}]}),
            )
        }
        "RayJob" => (
            json!({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "startTime": now,
                "rayClusterName": "rayjob-raycluster"}),
            json!({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "startTime": now,
                "endTime": now, "rayClusterName": "rayjob-raycluster"}),
        ),
        _ => return None,
    })
}

/// Writes the running, then the succeeded status as the kind's controller would, and waits for
/// the CarbonWorkload to follow; the gated Job is left to Kueue (`Released`).
async fn follow(s: &Scenario, case: &Case) {
    let now = harness::kube_time(Utc::now());
    let Some((running, done)) = statuses(case.adapter.kind(), &now) else {
        let status = s.wait_phase(case.name, Phase::Released, FOLLOW).await;
        assert_eq!(status.reason.as_deref(), Some("Released"));
        return;
    };
    let api = api(s, case.adapter);
    let write = |status: Value| {
        let api = api.clone();
        async move {
            api.patch_status(
                case.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(json!({
                    "apiVersion": case.adapter.resource().api_version,
                    "kind": case.adapter.kind(),
                    "status": status,
                })),
            )
            .await
            .unwrap_or_else(|e| panic!("writing the status of {}: {e}", case.name));
        }
    };
    write(running).await;
    s.wait_phase(case.name, Phase::Running, FOLLOW).await;
    write(done).await;
    let status = s.wait_phase(case.name, Phase::Succeeded, FOLLOW).await;
    assert_eq!(status.reason.as_deref(), Some("Released"), "{}", case.name);
    assert!(status.finished_at.is_some(), "{status:?}");
    let workload = s
        .workloads()
        .get(case.name)
        .await
        .expect("the CarbonWorkload");
    let job_ref = &workload.spec.job_ref;
    assert_eq!(
        (job_ref.api_version(), job_ref.kind()),
        (
            case.adapter.resource().api_version.as_str(),
            case.adapter.kind()
        ),
        "{}",
        case.name
    );
}
