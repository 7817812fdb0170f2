//! Tests of the workload controller shell through a mock API server: the exact requests of each
//! reconcile, and nothing more.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use http::Method;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::controller::Action;
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::*;
use crate::api::CarbonWorkloadStatus;
use crate::api::ProviderSpec;
use crate::api::condition::Condition;
use crate::api::forecast::{CarbonForecastStatus, StaticPoints};
use crate::api::{CarbonForecast, CarbonLedger, CarbonWorkload};
use crate::controller::ForecastSelector;
use crate::controller::OperatorConfig;
use crate::controller::fixtures::{Expect, FORECASTS_PATH, Reply, Route, Seen, TestEnv, points, t};
use crate::lifecycle::ForecastInput;
use crate::workload::job::BatchJob;
use kube::runtime::reflector::Store;

const T0: &str = "2026-05-04T10:00:00Z";
const JOBS: &str = "/apis/batch/v1/namespaces/ml/jobs";
const WORKLOADS_PATH: &str = "/apis/carbonshift.dev/v1alpha1/namespaces/ml/carbonworkloads";
const JOB_UID: &str = "job-uid";
const LEDGERS_PATH: &str = "/apis/carbonshift.dev/v1alpha1/namespaces/ml/carbonledgers";

fn hour(h: i64) -> DateTime<Utc> {
    t(T0) + TimeDelta::hours(h)
}

/// The `default` CarbonForecast, refreshed at `T0`: 48 hourly values, 300 except 200 at 02:00, 50
/// at 03:00, 60 at 04:00 (after `T0`): a 2-hour Job is best at 03:00–05:00.
fn forecast() -> CarbonForecast {
    let mut values = vec![300.0; 48];
    values[2] = 200.0;
    values[3] = 50.0;
    values[4] = 60.0;
    CarbonForecast::test("default").with_status(Some(CarbonForecastStatus {
        points: points(t(T0), TimeDelta::hours(1), &values),
        horizon_end: Some(hour(48)),
        last_refresh_time: Some(t(T0)),
        conditions: vec![Condition::new(
            "Ready",
            true,
            "Refreshed",
            "",
            Some(1),
            t(T0),
        )],
        ..CarbonForecastStatus::default()
    }))
}

/// A held Job `ml/train` (resourceVersion `rv`), deferrable for up to 8h, 2h long, 1 kW.
fn held_job(rv: &str) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "train",
            "namespace": "ml",
            "uid": "job-uid",
            "resourceVersion": rv,
            "creationTimestamp": T0,
            "annotations": {
                "carbonshift.dev/deferrable": "true",
                "carbonshift.dev/max-delay": "8h",
                "carbonshift.dev/duration": "2h",
                "carbonshift.dev/power": "1kW",
                "carbonshift.dev/held": "true",
                "carbonshift.dev/submitted-at": T0,
            }
        },
        "spec": {"suspend": true, "template": {"spec": {"containers": [], "restartPolicy": "Never"}}}
    })
}

fn job(value: Value) -> Arc<DynamicObject> {
    Arc::new(serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}")))
}

/// `held_job` after its release at `at`.
fn released_job(rv: &str, at: &str) -> Value {
    let mut j = held_job(rv);
    j["spec"]["suspend"] = json!(false);
    j["metadata"]["annotations"]["carbonshift.dev/released-at"] = json!(at);
    j
}

/// The workload as the API server holds it: spec from the Job, generation 1, no status yet.
fn workload_base(job_value: &Value, now: DateTime<Utc>) -> CarbonWorkload {
    let view = crate::workload::job::view(
        &serde_json::from_value(job_value.clone()).unwrap_or_else(|e| panic!("{e}")),
        &Default::default(),
        now,
    );
    let spec = lifecycle::effective_spec(&view, None).unwrap_or_else(|| panic!("no spec"));
    let mut w = CarbonWorkload::new("train", spec);
    w.metadata.namespace = Some("ml".into());
    w.metadata.uid = Some("workload-uid".into());
    w.metadata.generation = Some(1);
    w.metadata.resource_version = Some("10".into());
    w.metadata.owner_references = Some(vec![owner_reference(&view)]);
    w
}

fn with_status(mut w: CarbonWorkload, status: Option<CarbonWorkloadStatus>) -> CarbonWorkload {
    w.status = status;
    w
}

/// The status the controller writes for `job` at `T0` without a workload yet.
fn planned_status(env: &TestEnv, job_value: &Value) -> CarbonWorkloadStatus {
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    let job: Job = serde_json::from_value(job_value.clone()).unwrap_or_else(|e| panic!("{e}"));
    let view = crate::workload::job::view(&job, &Default::default(), t(T0));
    let snapshot = env
        .ctx
        .store
        .get("default")
        .unwrap_or_else(|| panic!("no forecast"));
    let fresh = snapshot.is_fresh(t(T0));
    let input = Input {
        job: &view,
        workload: None,
        forecast: ForecastInput::Data(view_of(&snapshot, fresh)),
        config: &controller.lifecycle,
        measured: None,
        fleet: None,
    };
    let mut decision = lifecycle::decide(&input, t(T0));
    decision.stamp_generation(Some(1));
    decision.status.unwrap_or_else(|| panic!("no status"))
}

fn env() -> TestEnv {
    let env = TestEnv::new(t(T0));
    env.ctx.store.apply(&forecast());
    env
}

fn get_workload(reply: Reply) -> Expect {
    Expect::get(format!("{WORKLOADS_PATH}/train")).reply(reply)
}

fn not_found() -> Reply {
    Reply::Error(404, "NotFound")
}

/// The Event `reason` about the Job (each Event is published once, on the Job).
fn events(reason: &str) -> [Expect; 1] {
    [Expect::event_in("ml", reason)
        .regarding("train")
        .body("/regarding/kind", json!("Job"))]
}

fn expect_all(env: &TestEnv, expects: impl IntoIterator<Item = Expect>) {
    for e in expects {
        env.api.expect(e);
    }
}

/// The look again of a released Job whose controller has not answered yet: when the wait for
/// its answer ends ([`crate::lifecycle::DEFAULT_RELEASE_ACK_WAIT`] after the release).
fn until_the_answer_is_due() -> Action {
    Action::requeue(
        crate::lifecycle::DEFAULT_RELEASE_ACK_WAIT
            .to_std()
            .unwrap_or_default(),
    )
}

/// The status the last status apply wrote (from the requests seen).
fn last_status(seen: &[Seen]) -> CarbonWorkloadStatus {
    seen.iter()
        .rev()
        .find(|s| s.method == Method::PATCH && s.path.ends_with("/status"))
        .and_then(|s| s.at("/status").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_else(|| panic!("no status written"))
}

fn describe(writes: &[Seen]) -> Vec<String> {
    writes
        .iter()
        .map(|s| {
            let path = s
                .path
                .replace(WORKLOADS_PATH, "workloads")
                .replace(JOBS, "jobs");
            format!("{} {path}", s.method)
        })
        .collect()
}

#[tokio::test]
async fn a_full_lifecycle_writes_exactly_the_workload_the_plan_the_release_and_the_phases() {
    let env = env();
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    let base = workload_base(&held_job("1"), t(T0));

    // 1. First sight at T0: the workload is created and the plan written; requeue at 03:00,
    // capped at the hourly safety net.
    expect_all(&env, [get_workload(not_found())]);
    env.api.expect(
        Expect::apply(&base)
            .body("/metadata/ownerReferences/0/uid", json!("job-uid"))
            .body("/metadata/ownerReferences/0/controller", json!(true))
            .body(
                "/metadata/ownerReferences/0/blockOwnerDeletion",
                json!(true),
            )
            .body("/spec/latestStart", json!("2026-05-04T18:00:00Z")),
    );
    env.api.expect(
        Expect::apply_status(&base)
            .body("/status/phase", json!("Deferred"))
            .body("/status/plannedStart", json!("2026-05-04T13:00:00Z"))
            .body("/status/observedGeneration", json!(1)),
    );
    expect_all(&env, events("Deferred"));
    let action = reconcile(job(held_job("1")), controller.clone()).await;
    assert_eq!(action.ok(), Some(Action::requeue(MAX_REQUEUE)));
    let mut all = env.api.seen();
    env.api.verify();
    let deferred = last_status(&all);
    assert_eq!(deferred.phase, Some(Phase::Deferred));

    // The hourly safety net at 01:00: a read, no write, and the next look an hour later.
    env.clock.set(hour(1));
    let current = with_status(base.clone(), Some(deferred.clone()));
    env.api.expect(get_workload(Reply::Json(
        200,
        serde_json::to_value(&current).unwrap_or_default(),
    )));
    let action = reconcile(job(held_job("1")), controller.clone()).await;
    assert_eq!(action.ok(), Some(Action::requeue(MAX_REQUEUE)));
    all.extend(env.api.seen());
    env.api.verify();

    // 2. At 03:00: the guarded release. The status is not written with it: it records the
    // release together with the Job controller's answer, in one write.
    env.clock.set(hour(3));
    let current = with_status(base.clone(), Some(deferred.clone()));
    env.api.expect(get_workload(Reply::Json(
        200,
        serde_json::to_value(&current).unwrap_or_default(),
    )));
    env.api.expect(
        Expect::patch(format!("{JOBS}/train"))
            .body("/0", json!({"op": "test", "path": "/spec/suspend", "value": true}))
            .body(
                "/1",
                json!({"op": "test", "path": "/metadata/annotations/carbonshift.dev~1held", "value": "true"}),
            )
            .body(
                "/2",
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": "1"}),
            )
            .body("/3", json!({"op": "replace", "path": "/spec/suspend", "value": false}))
            .body(
                "/4",
                json!({"op": "add", "path": "/metadata/annotations/carbonshift.dev~1released-at", "value": "2026-05-04T13:00:00Z"}),
            )
            .reply(Reply::Json(200, released_job("2", "2026-05-04T13:00:00Z"))),
    );
    expect_all(&env, events("Released"));
    let action = reconcile(job(held_job("1")), controller.clone()).await;
    assert_eq!(action.ok(), Some(Action::requeue(MAX_REQUEUE)));
    all.extend(env.api.seen());
    env.api.verify();

    // The watch event of carbonshift's own patch: nothing to write while the Job controller
    // has not answered; looked at again when the wait for its answer ends.
    let body = serde_json::to_value(&current).unwrap_or_default();
    env.api.expect(get_workload(Reply::Json(200, body.clone())));
    let action = reconcile(
        job(released_job("2", "2026-05-04T13:00:00Z")),
        controller.clone(),
    )
    .await;
    assert_eq!(action.ok(), Some(until_the_answer_is_due()));
    all.extend(env.api.seen());
    env.api.verify();

    // 3. Pods run: Deferred → Running, the release recorded with it.
    env.clock.set(hour(3) + TimeDelta::minutes(1));
    let mut running_job = released_job("3", "2026-05-04T13:00:00Z");
    running_job["status"] = json!({"active": 2, "startTime": "2026-05-04T13:00:05Z"});
    env.api.expect(get_workload(Reply::Json(200, body)));
    env.api.expect(
        Expect::apply_status(&current)
            .body("/status/phase", json!("Running"))
            .body("/status/releasedAt", json!("2026-05-04T13:00:00Z")),
    );
    let action = reconcile(job(running_job.clone()), controller.clone()).await;
    assert_eq!(action.ok(), Some(Action::requeue(MAX_REQUEUE)));
    let seen = env.api.seen();
    env.api.verify();
    let running = last_status(&seen);
    assert_eq!(running.started_at, Some(hour(3) + TimeDelta::minutes(1)));
    all.extend(seen);

    // 4. Complete at 05:00: Succeeded with its emissions, counted once.
    env.clock.set(hour(5));
    let current = with_status(base.clone(), Some(running));
    let mut done_job = released_job("4", "2026-05-04T13:00:00Z");
    done_job["status"] = json!({"active": 0, "succeeded": 1, "conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-05-04T15:00:00Z"}
    ]});
    env.api.expect(get_workload(Reply::Json(
        200,
        serde_json::to_value(&current).unwrap_or_default(),
    )));
    // The workload just finished: its forecast's provider is asked for the measured values
    // (static actuals: 300, then 40 from 03:00 and 60 from 04:00), verified in the same write.
    let mut measured_values = vec![300.0; 8];
    measured_values[3] = 40.0;
    measured_values[4] = 60.0;
    let with_actuals = forecast().provider(ProviderSpec::Static(StaticPoints {
        points: points(t(T0), TimeDelta::hours(1), &[300.0]),
        actuals: points(t(T0), TimeDelta::hours(1), &measured_values),
    }));
    env.api.expect(
        Expect::get(format!("{FORECASTS_PATH}/default"))
            .reply(Reply::Json(200, with_actuals.to_json())),
    );
    // The ledger of ml/default first (created on first use): the estimate and the measured
    // figures in one read-modify-write of its status.
    let ledger = CarbonLedger::new(
        "default",
        crate::api::CarbonLedgerSpec {
            forecast: "default".into(),
        },
    );
    let mut ledger_json = serde_json::to_value(&ledger).unwrap_or_default();
    ledger_json["metadata"]["namespace"] = json!("ml");
    ledger_json["metadata"]["resourceVersion"] = json!("7");
    env.api
        .expect(Expect::get(format!("{LEDGERS_PATH}/default")).reply(not_found()));
    env.api.expect(
        Expect::post(LEDGERS_PATH)
            .body("/spec/forecast", json!("default"))
            .reply(Reply::Json(201, ledger_json.clone())),
    );
    env.api.expect(
        Expect::put(format!("{LEDGERS_PATH}/default/status"))
            .body("/metadata/resourceVersion", json!("7"))
            // The estimate and the measured figures in one write.
            .body("/status/total/jobs", json!(1))
            .body("/status/total/verifiedJobs", json!(1))
            .body("/status/recent/0", json!(format!("{JOB_UID}/estimated")))
            .body("/status/recent/1", json!(format!("{JOB_UID}/verified")))
            .reply(Reply::Json(200, ledger_json.clone())),
    );
    env.api.expect(
        Expect::apply_status(&current)
            .body("/status/phase", json!("Succeeded"))
            .body("/status/verification/state", json!("Verified")),
    );
    expect_all(&env, events("Succeeded"));
    expect_all(&env, events("Verified"));
    let action = reconcile(job(done_job.clone()), controller.clone()).await;
    assert_eq!(action.ok(), Some(Action::await_change()));
    let seen = env.api.seen();
    env.api.verify();
    let succeeded = last_status(&seen);
    all.extend(seen);
    // Measured: 59 min at 40 and 60 min at 60 (03:01–05:00); at once, 119 min at 300.
    let verified = succeeded
        .verified
        .clone()
        .unwrap_or_else(|| panic!("not verified: {succeeded:?}"));
    let measured_intensity = (59.0 * 40.0 + 60.0 * 60.0) / 119.0;
    assert!(
        (verified.intensity - measured_intensity).abs() < 1e-9,
        "{verified:?}"
    );
    assert!((verified.counterfactual_intensity - 300.0).abs() < 1e-9);
    assert!(
        (verified.avoided_grams - 1.2 * 119.0 / 60.0 * (300.0 - measured_intensity)).abs() < 1e-6
    );
    assert_eq!(
        verified.source,
        "static actuals (spec.provider.static.actuals)"
    );
    // 2.4 kWh from 03:01 to 05:00 (1.2 kW): 59 min at 50, 60 min at 60.
    let emitted = 1.2 * (59.0 * 50.0 + 60.0 * 60.0) / 60.0;
    let energy = 1.2 * 119.0 / 60.0;
    let avoided = energy * 300.0 - emitted;
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-6);
    assert!(
        close(succeeded.estimated_emissions_grams, emitted),
        "{succeeded:?}"
    );
    assert!(
        close(succeeded.estimated_avoided_grams, avoided),
        "{succeeded:?}"
    );

    // A restart, later: reads, writes nothing, counts nothing again.
    env.clock.set(hour(30));
    let current = with_status(base.clone(), Some(succeeded));
    env.api.expect(get_workload(Reply::Json(
        200,
        serde_json::to_value(&current).unwrap_or_default(),
    )));
    let action = reconcile(
        job(done_job),
        WorkloadController::new(env.ctx.clone(), &BatchJob),
    )
    .await;
    assert_eq!(action.ok(), Some(Action::await_change()));
    all.extend(env.api.seen());
    env.api.verify();

    // Exactly these five writes to the Job and the workload, Events aside: the workload, its
    // plan, the release, Running (with the release) and Succeeded.
    let (ledger_writes, writes): (Vec<Seen>, Vec<Seen>) = all
        .into_iter()
        .filter(|s| s.method != Method::GET && !s.path.contains("/events"))
        .partition(|s| s.path.starts_with(LEDGERS_PATH));
    assert_eq!(
        ledger_writes.len(),
        2,
        "create, then the estimate and the measured figures in one write"
    );
    assert_eq!(
        describe(&writes),
        [
            "PATCH workloads/train",
            "PATCH workloads/train/status",
            "PATCH jobs/train",
            "PATCH workloads/train/status",
            "PATCH workloads/train/status",
        ]
    );

    let metrics = env.ctx.metrics.encode();
    for line in [
        "carbonshift_releases_total{reason=\"Released\"} 1".to_string(),
        "carbonshift_release_lateness_seconds_count 1".to_string(),
        "carbonshift_release_lateness_seconds_sum 0.0".to_string(),
        format!("carbonshift_emitted_grams_total {emitted}"),
        format!("carbonshift_avoided_grams_total {avoided}"),
    ] {
        assert!(metrics.contains(&line), "missing {line:?} in\n{metrics}");
    }
    // The ledger counters, by namespace and forecast, estimated and verified apart.
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    let labels =
        |basis: &str| format!("{{namespace=\"ml\",forecast=\"default\",basis=\"{basis}\"}}");
    let ledger = |name: &str, basis: &str| {
        value(&format!(
            "carbonshift_ledger_{name}_grams_total{}",
            labels(basis)
        ))
    };
    assert!((ledger("emitted", "estimated") - emitted).abs() < 1e-6);
    assert!((ledger("avoided", "estimated") - avoided).abs() < 1e-6);
    assert!((ledger("emitted", "verified") - verified.emissions_grams).abs() < 1e-6);
    assert!((ledger("avoided", "verified") - verified.avoided_grams).abs() < 1e-6);
    assert!(
        metrics
            .contains("carbonshift_reconcile_duration_seconds_count{controller=\"workloads\"} 7")
    );
}

#[tokio::test]
async fn a_job_changed_meanwhile_is_not_released_and_nothing_else_is_written() {
    let env = env();
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    env.clock.set(hour(3));
    let base = workload_base(&held_job("1"), t(T0));
    // A Deferred workload whose start has come.
    let mut status = CarbonWorkloadStatus {
        phase: Some(Phase::Deferred),
        planned_start: Some(hour(3)),
        windows: vec![crate::api::workload::TimeWindow {
            start: hour(3),
            end: hour(5),
        }],
        forecast_version: env.ctx.store.get("default").map(|s| s.version.clone()),
        ..CarbonWorkloadStatus::default()
    };
    status.reason = Some("LowestIntensity".into());
    let current = with_status(base, Some(status));
    env.api.expect(get_workload(Reply::Json(
        200,
        serde_json::to_value(&current).unwrap_or_default(),
    )));
    env.api
        .expect(Expect::patch(format!("{JOBS}/train")).reply(Reply::Error(422, "Invalid")));
    // The refused patch is followed by a decision from the Job as it is now (read afresh, not
    // from the cache), which the Job's owner has since removed.
    env.api
        .expect(Expect::get(format!("{JOBS}/train")).reply(not_found()));
    let action = reconcile(job(held_job("1")), controller).await;
    assert_eq!(action.ok(), Some(Action::await_change()));
    env.api.verify();
    let metrics = env.ctx.metrics.encode();
    assert!(
        !metrics.contains("carbonshift_releases_total{"),
        "{metrics}"
    );
}

/// A Deferred workload of `held_job` whose planned start `hour(3)` has come.
fn due_workload(env: &TestEnv) -> CarbonWorkload {
    let base = workload_base(&held_job("1"), t(T0));
    let mut status = CarbonWorkloadStatus {
        phase: Some(Phase::Deferred),
        planned_start: Some(hour(3)),
        windows: vec![crate::api::workload::TimeWindow {
            start: hour(3),
            end: hour(5),
        }],
        forecast_version: env.ctx.store.get("default").map(|s| s.version.clone()),
        ..CarbonWorkloadStatus::default()
    };
    status.reason = Some("LowestIntensity".into());
    with_status(base, Some(status))
}

#[tokio::test]
async fn a_refused_release_is_decided_again_from_the_job_read_afresh_and_released_once() {
    let env = env();
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    env.clock.set(hour(3));
    let current = due_workload(&env);
    let base = workload_base(&held_job("1"), t(T0));
    let reply = || Reply::Json(200, serde_json::to_value(&current).unwrap_or_default());
    env.api.expect(get_workload(reply()));
    // The Job controller touched the Job after the cache saw it: the guard refuses (422).
    env.api
        .expect(Expect::patch(format!("{JOBS}/train")).reply(Reply::Error(422, "Invalid")));
    let mut touched = held_job("2");
    touched["metadata"]["labels"] = json!({"touched": "yes"});
    env.api
        .expect(Expect::get(format!("{JOBS}/train")).reply(Reply::Json(200, touched)));
    env.api.expect(get_workload(reply()));
    // Decided again from resourceVersion 2: the guard tests the new version.
    env.api.expect(
        Expect::patch(format!("{JOBS}/train"))
            .body("/2/value", json!("2"))
            .reply(Reply::Json(200, released_job("3", "2026-05-04T13:00:00Z"))),
    );
    // The fixture's status lacks the conditions the state machine derives, so it is written, but
    // still Deferred: the release is recorded with the Job controller's answer.
    env.api
        .expect(Expect::apply_status(&base).body("/status/phase", json!("Deferred")));
    expect_all(&env, events("Released"));
    let action = reconcile(job(held_job("1")), controller).await;
    assert!(action.is_ok(), "{action:?}");
    env.api.verify();
    let metrics = env.ctx.metrics.encode();
    assert!(
        metrics.contains("carbonshift_releases_total{reason=\"Released\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_job_that_keeps_changing_is_left_to_a_later_reconcile_after_three_decisions() {
    let env = env();
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    env.clock.set(hour(3));
    let current = due_workload(&env);
    for attempt in 0..MAX_REDECISIONS {
        env.api.expect(get_workload(Reply::Json(
            200,
            serde_json::to_value(&current).unwrap_or_default(),
        )));
        env.api
            .expect(Expect::patch(format!("{JOBS}/train")).reply(Reply::Error(409, "Conflict")));
        env.api.expect(
            Expect::get(format!("{JOBS}/train"))
                .reply(Reply::Json(200, held_job(&(attempt + 2).to_string()))),
        );
    }
    let action = reconcile(job(held_job("1")), controller).await;
    assert_eq!(action.ok(), Some(Action::requeue(STALE_RECHECK)));
    env.api.verify();
    assert!(
        !env.ctx
            .metrics
            .encode()
            .contains("carbonshift_releases_total{")
    );
}

#[tokio::test]
async fn without_a_forecast_a_held_job_is_released_at_once() {
    let env = TestEnv::new(t(T0));
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    let base = workload_base(&held_job("1"), t(T0));
    env.api.expect(get_workload(not_found()));
    // The store has nothing: the API says whether the forecast exists. It does not.
    env.api
        .expect(Expect::get(format!("{FORECASTS_PATH}/default")).reply(not_found()));
    env.api.expect(Expect::apply(&base));
    env.api.expect(
        Expect::patch(format!("{JOBS}/train"))
            .reply(Reply::Json(200, released_job("2", "2026-05-04T10:00:00Z"))),
    );
    env.api.expect(
        Expect::apply_status(&base)
            .body("/status/phase", json!("Released"))
            .body("/status/reason", json!("NoForecast"))
            .body(
                "/status/message",
                json!("released at once (fail open): no CarbonForecast \"default\" exists"),
            ),
    );
    expect_all(&env, events("NoForecast").map(|e| e.kind("Warning")));
    let action = reconcile(job(held_job("1")), controller.clone()).await;
    assert_eq!(action.ok(), Some(Action::requeue(MAX_REQUEUE)));
    env.api.verify();
    assert!(
        env.ctx
            .metrics
            .encode()
            .contains("carbonshift_releases_total{reason=\"NoForecast\"} 1")
    );
    // The cache still shows the Job as it was before the patch: looked at again shortly, no
    // request.
    let action = reconcile(job(held_job("1")), controller).await;
    assert_eq!(action.ok(), Some(Action::requeue(STALE_RECHECK)));
    env.api.verify();
}

#[tokio::test]
async fn jobs_that_are_not_carbonshifts_cost_no_request() {
    let env = env();
    let mut plain = held_job("1");
    plain["metadata"]["annotations"] = json!({"team": "ml"});
    let action = reconcile(
        job(plain),
        WorkloadController::new(env.ctx.clone(), &BatchJob),
    )
    .await;
    assert_eq!(action.ok(), Some(Action::await_change()));
    env.api.verify();
    assert!(env.api.seen().is_empty());
}

#[tokio::test]
async fn namespaces_outside_the_allow_list_are_left_alone() {
    let env = TestEnv::with_config(
        t(T0),
        OperatorConfig {
            namespaces: vec!["research".into()],
            ..OperatorConfig::default()
        },
    );
    let action = reconcile(
        job(held_job("1")),
        WorkloadController::new(env.ctx.clone(), &BatchJob),
    )
    .await;
    assert_eq!(action.ok(), Some(Action::await_change()));
    env.api.verify();
    assert!(env.api.seen().is_empty());
}

#[tokio::test]
async fn a_held_job_with_unreadable_annotations_and_no_workload_is_released_and_warned_about() {
    let env = env();
    let mut bad = held_job("1");
    bad["metadata"]["annotations"]["carbonshift.dev/duration"] = json!("2x");
    env.api.expect(get_workload(not_found()));
    env.api.expect(
        Expect::patch(format!("{JOBS}/train"))
            .reply(Reply::Json(200, released_job("2", "2026-05-04T10:00:00Z"))),
    );
    for _ in 0..2 {
        env.api.expect(
            Expect::event_in("ml", "InvalidAnnotations")
                .regarding("train")
                .body("/regarding/kind", json!("Job"))
                .kind("Warning"),
        );
    }
    let action = reconcile(
        job(bad),
        WorkloadController::new(env.ctx.clone(), &BatchJob),
    )
    .await;
    assert_eq!(action.ok(), Some(Action::await_change()));
    env.api.verify();
}

#[tokio::test]
async fn the_workload_of_an_older_job_of_the_same_name_is_deleted_first() {
    let env = env();
    let mut old = workload_base(&held_job("1"), t(T0));
    old.spec.job_ref.uid = "older-job".into();
    env.api.expect(get_workload(Reply::Json(
        200,
        serde_json::to_value(&old).unwrap_or_default(),
    )));
    env.api.expect(
        Expect::delete(format!("{WORKLOADS_PATH}/train"))
            .body("/preconditions/uid", json!("workload-uid"))
            .reply(Reply::Json(
                200,
                json!({"kind": "Status", "status": "Success"}),
            )),
    );
    let action = reconcile(
        job(held_job("1")),
        WorkloadController::new(env.ctx.clone(), &BatchJob),
    )
    .await;
    assert_eq!(action.ok(), Some(Action::requeue(STALE_RECHECK)));
    env.api.verify();
}

#[tokio::test]
async fn api_errors_back_off_and_are_counted() {
    let env = env();
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    env.api
        .expect(get_workload(Reply::Error(500, "InternalError")));
    let j = job(held_job("1"));
    let error = match reconcile(j.clone(), controller.clone()).await {
        Err(e) => e,
        Ok(action) => panic!("{action:?}"),
    };
    env.api.verify();
    assert_eq!(error.category(), "server");
    assert_eq!(
        error_policy(j.clone(), &error, controller.clone()),
        Action::requeue(API_RETRY_BASE)
    );
    assert_eq!(
        error_policy(j.clone(), &error, controller.clone()),
        Action::requeue(API_RETRY_BASE * 2)
    );
    for _ in 0..10 {
        error_policy(j.clone(), &error, controller.clone());
    }
    assert_eq!(
        error_policy(j.clone(), &error, controller.clone()),
        Action::requeue(API_RETRY_MAX)
    );
    let invalid = Error::InvalidObject("no name".into());
    assert_eq!(
        error_policy(j, &invalid, controller),
        Action::await_change()
    );
    let metrics = env.ctx.metrics.encode();
    assert!(metrics.contains(
        "carbonshift_reconcile_errors_total{controller=\"workloads\",category=\"server\"} 13"
    ));
    assert!(metrics.contains(
        "carbonshift_reconcile_errors_total{controller=\"workloads\",category=\"invalid\"} 1"
    ));
}

fn store_of(workloads: Vec<CarbonWorkload>) -> Store<CarbonWorkload> {
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for w in workloads {
        writer.apply_watcher_event(&watcher::Event::InitApply(w));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn named(name: &str, forecast: &str, phase: Option<Phase>) -> CarbonWorkload {
    let mut w = workload_base(&held_job("1"), t(T0));
    w.metadata.name = Some(name.into());
    w.spec.job_ref.name = name.into();
    w.spec.forecast = forecast.into();
    w.status = phase.map(|p| CarbonWorkloadStatus {
        phase: Some(p),
        ..CarbonWorkloadStatus::default()
    });
    w
}

#[test]
fn a_forecast_change_reconciles_the_jobs_waiting_on_it() {
    let mut dry = named("dry", "uk", Some(Phase::Running));
    dry.spec.dry_run = true;
    let mut jobset = named("js", "uk", Some(Phase::Deferred));
    jobset.spec.job_ref =
        crate::api::workload::JobRef::new("jobset.x-k8s.io/v1alpha2", "JobSet", "js", "uid-js");
    let jobsets: Vec<String> = jobs_waiting_on(
        &store_of(vec![
            jobset.clone(),
            named("j", "uk", Some(Phase::Deferred)),
        ]),
        &crate::workload::jobset::JobSetKind,
        None,
    )
    .into_iter()
    .map(|r| r.name)
    .collect();
    assert_eq!(jobsets, ["js"]);
    let store = store_of(vec![
        named("a", "uk", Some(Phase::Deferred)),
        named("b", "uk", Some(Phase::Running)),
        named("c", "de", Some(Phase::Pending)),
        named("d", "uk", None),
        named("e", "uk", Some(Phase::Paused)),
        named("f", "uk", Some(Phase::Succeeded)),
        dry,
        // A JobSet's workload: not a Job to reconcile, whatever its phase.
        jobset,
    ]);
    let mut names: Vec<String> = jobs_waiting_on(&store, &BatchJob, Some("uk"))
        .into_iter()
        .map(|r| {
            assert_eq!(r.namespace.as_deref(), Some("ml"));
            r.name
        })
        .collect();
    names.sort();
    assert_eq!(names, ["a", "d", "dry", "e"]);
    let mut all: Vec<String> = jobs_waiting_on(&store, &BatchJob, None)
        .into_iter()
        .map(|r| r.name)
        .collect();
    all.sort();
    assert_eq!(all, ["a", "c", "d", "dry", "e"]);
}

#[tokio::test]
async fn the_gauges_count_workloads_by_phase_and_overdue_holds() {
    let env = env();
    let store = store_of(vec![
        named("a", "uk", Some(Phase::Deferred)),
        named("b", "uk", Some(Phase::Deferred)),
        named("c", "uk", Some(Phase::Running)),
    ]);
    // Each kind's store holds every workload of its scope, so the JobSet controller's store has
    // the same Job workloads: each kind counts only its own.
    let jobs: &'static dyn crate::workload::Adapter = &BatchJob;
    let jobsets: &'static dyn crate::workload::Adapter = &crate::workload::jobset::JobSetKind;
    let stores = [(jobs, store.clone()), (jobsets, store)];
    set_gauges(&env.ctx, &stores);
    let metrics = env.ctx.metrics.encode();
    assert!(
        metrics.contains("carbonshift_workloads{phase=\"Deferred\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("carbonshift_workloads{phase=\"Running\"} 1"));
    assert!(metrics.contains("carbonshift_held_past_latest_start 0"));
    // Past the latest start (18:00) both Deferred ones are overdue: the alert fires.
    env.clock.set(hour(9));
    set_gauges(&env.ctx, &stores);
    assert!(
        env.ctx
            .metrics
            .encode()
            .contains("carbonshift_held_past_latest_start 2")
    );
}

#[tokio::test]
async fn run_replans_deferred_jobs_when_their_forecast_changes() {
    let env = TestEnv::with_config(
        t(T0),
        crate::controller::OperatorConfig {
            kinds: crate::workload::Kinds::jobs_only(),
            ..crate::controller::OperatorConfig::default()
        },
    );
    env.ctx.store.apply(&forecast());
    // Discovery: batch/v1 serves Jobs.
    env.api.route(Route::new(
        Method::GET,
        "/apis/batch/v1",
        Reply::Json(
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1",
                "resources": [{"name": "jobs", "singularName": "job", "namespaced": true,
                    "kind": "Job", "verbs": ["get", "list", "watch", "patch"]}]}),
        ),
    ));
    let base = workload_base(&held_job("1"), t(T0));
    // Deferred at 03:00 from the current data, exactly as the controller writes it.
    let deferred = with_status(base.clone(), Some(planned_status(&env, &held_job("1"))));
    let workload_json = serde_json::to_value(&deferred).unwrap_or_default();
    let all_workloads = "/apis/carbonshift.dev/v1alpha1/carbonworkloads";
    env.api.route(Route::list(
        "/apis/batch/v1/jobs",
        "JobList",
        vec![held_job("1")],
    ));
    env.api.route(Route::watch("/apis/batch/v1/jobs"));
    env.api.route(Route::list(
        all_workloads,
        "CarbonWorkloadList",
        vec![workload_json.clone()],
    ));
    env.api.route(Route::watch(all_workloads));
    env.api.route(Route::new(
        Method::GET,
        format!("{WORKLOADS_PATH}/train"),
        Reply::Json(200, workload_json),
    ));
    // The re-plan: 06:00–08:00 at 20 g/kWh is cleaner now.
    env.api.expect(
        Expect::apply_status(&deferred)
            .body("/status/phase", json!("Deferred"))
            .body("/status/plannedStart", json!("2026-05-04T16:00:00Z")),
    );
    expect_all(&env, events("Replanned"));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run(env.ctx.clone(), async move {
        let _ = stopped.await;
    }));
    // The first reconcile takes the workload from the controller's cache, keeps the plan and
    // arms its release for 03:00: nothing written, nothing read.
    let metrics = env.ctx.metrics.clone();
    let armed = move || {
        metrics
            .encode()
            .contains("carbonshift_releases_armed{kind=\"Job\"} 1")
    };
    env.api.wait_until(armed.clone()).await;
    assert!(env.api.writes().is_empty(), "{:?}", env.api.writes());
    assert!(
        !env.api
            .seen()
            .iter()
            .any(|s| s.path == format!("{WORKLOADS_PATH}/train")),
        "the cached workload is read from the cache"
    );

    // New data in the store: the Job is reconciled and re-planned.
    let mut values = vec![300.0; 48];
    values[6] = 20.0;
    values[7] = 20.0;
    let mut newer = forecast();
    if let Some(status) = newer.status.as_mut() {
        status.points = points(t(T0), TimeDelta::hours(1), &values);
    }
    env.ctx.store.apply(&newer);
    let api = env.api.clone();
    env.api
        .wait_until(move || {
            api.writes()
                .iter()
                .filter(|s| s.path.contains("/events"))
                .count()
                == 1
        })
        .await;
    // Re-armed for the new start.
    assert!(armed(), "{}", env.ctx.metrics.encode());
    let _ = stop.send(());
    let _ = running.await;
    env.api.verify();
}

#[tokio::test]
async fn an_interruptible_job_is_paused_at_the_end_of_its_window_with_the_guarded_patch() {
    let env = env();
    env.clock.set(hour(3));
    let mut running = released_job("7", "2026-05-04T12:00:00Z");
    running["metadata"]["annotations"]["carbonshift.dev/interruptible"] = json!("true");
    running["status"] = json!({"active": 1});
    let window = |a, b| crate::api::workload::TimeWindow {
        start: hour(a),
        end: hour(b),
    };
    let base = workload_base(&running, t(T0));
    let current = with_status(
        base,
        Some(CarbonWorkloadStatus {
            phase: Some(Phase::Running),
            reason: Some("Released".into()),
            message: Some("running (Released)".into()),
            planned_start: Some(hour(2)),
            windows: vec![window(2, 3), window(4, 5)],
            released_at: Some(hour(2)),
            started_at: Some(hour(2)),
            ..CarbonWorkloadStatus::default()
        }),
    );
    env.api.expect(get_workload(Reply::Json(
        200,
        serde_json::to_value(&current).unwrap_or_default(),
    )));
    let mut paused = running.clone();
    paused["spec"]["suspend"] = json!(true);
    env.api.expect(
        Expect::patch(format!("{JOBS}/train"))
            .body("/0", json!({"op": "test", "path": "/spec/suspend", "value": false}))
            .body(
                "/1",
                json!({"op": "test", "path": "/metadata/annotations/carbonshift.dev~1released-at", "value": "2026-05-04T12:00:00Z"}),
            )
            .body("/2", json!({"op": "test", "path": "/metadata/resourceVersion", "value": "7"}))
            .body("/3", json!({"op": "replace", "path": "/spec/suspend", "value": true}))
            .body(
                "/4",
                json!({"op": "remove", "path": "/metadata/annotations/carbonshift.dev~1released-at"}),
            )
            .reply(Reply::Json(200, paused)),
    );
    env.api.expect(
        Expect::apply_status(&current)
            .body("/status/phase", json!("Paused"))
            .body(
                "/status/runs",
                json!([{"start": "2026-05-04T12:00:00Z", "end": "2026-05-04T13:00:00Z"}]),
            )
            .body(
                "/status/windows",
                json!([{"start": "2026-05-04T14:00:00Z", "end": "2026-05-04T15:00:00Z"}]),
            ),
    );
    expect_all(&env, events("Paused"));
    let action = reconcile(
        job(running),
        WorkloadController::new(env.ctx.clone(), &BatchJob),
    )
    .await;
    assert_eq!(
        action.ok(),
        Some(Action::requeue(Duration::from_secs(3600)))
    );
    env.api.verify();
    // A pause is not a release.
    assert!(
        !env.ctx
            .metrics
            .encode()
            .contains("carbonshift_releases_total{")
    );
}

/// The orderings of the first-data race: the store has not seen the forecast (or its first
/// status) when the Job is decided.
mod first_data {
    use super::*;

    fn awaiting_forecast() -> CarbonForecast {
        let mut object = CarbonForecast::test("default");
        object.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff(t(T0))),
        );
        object
    }

    fn jiff(at: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
        k8s_openapi::jiff::Timestamp::from_second(at.timestamp()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_forecast_without_its_first_status_keeps_the_job_held_and_awaiting() {
        let env = TestEnv::new(t(T0));
        let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
        let base = workload_base(&held_job("1"), t(T0));
        env.api.expect(get_workload(not_found()));
        env.api.expect(
            Expect::get(format!("{FORECASTS_PATH}/default"))
                .reply(Reply::Json(200, awaiting_forecast().to_json())),
        );
        env.api.expect(Expect::apply(&base));
        env.api.expect(
            Expect::apply_status(&base)
                .body("/status/phase", json!("Pending"))
                .body("/status/reason", json!("AwaitingForecast")),
        );
        expect_all(&env, events("AwaitingForecast").map(|e| e.kind("Normal")));
        let action = reconcile(job(held_job("1")), controller).await;
        // Looked at again within AWAIT_RECHECK; nothing was released.
        assert_eq!(action.ok(), Some(Action::requeue(Duration::from_secs(5))));
        env.api.verify();
        assert!(
            !env.ctx
                .metrics
                .encode()
                .contains("carbonshift_releases_total{")
        );
    }

    #[tokio::test]
    async fn data_the_store_has_not_seen_yet_is_read_from_the_api_and_planned() {
        // The ordering: the first refresh wrote the points, the Job came, the store's
        // watch event of that status had not arrived.
        let env = TestEnv::new(t(T0));
        let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
        let base = workload_base(&held_job("1"), t(T0));
        env.api.expect(get_workload(not_found()));
        env.api.expect(
            Expect::get(format!("{FORECASTS_PATH}/default"))
                .reply(Reply::Json(200, forecast().to_json())),
        );
        env.api.expect(Expect::apply(&base));
        env.api.expect(
            Expect::apply_status(&base)
                .body("/status/phase", json!("Deferred"))
                .body("/status/plannedStart", json!("2026-05-04T13:00:00Z")),
        );
        expect_all(&env, events("Deferred"));
        let action = reconcile(job(held_job("1")), controller).await;
        // The plan starts at 13:00, three hours on: the hourly safety net comes first.
        assert_eq!(action.ok(), Some(Action::requeue(MAX_REQUEUE)));
        env.api.verify();
    }

    #[tokio::test]
    async fn a_forecast_whose_provider_failed_before_any_data_releases_fail_open() {
        let env = TestEnv::new(t(T0));
        let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
        let base = workload_base(&held_job("1"), t(T0));
        let failed = awaiting_forecast().with_status(Some(CarbonForecastStatus {
            conditions: vec![Condition::new(
                "Ready",
                false,
                "RefreshFailed",
                "HTTP 500",
                Some(1),
                t(T0),
            )],
            ..CarbonForecastStatus::default()
        }));
        env.api.expect(get_workload(not_found()));
        env.api.expect(
            Expect::get(format!("{FORECASTS_PATH}/default"))
                .reply(Reply::Json(200, failed.to_json())),
        );
        env.api.expect(Expect::apply(&base));
        env.api.expect(
            Expect::patch(format!("{JOBS}/train"))
                .reply(Reply::Json(200, released_job("2", "2026-05-04T10:00:00Z"))),
        );
        env.api.expect(
            Expect::apply_status(&base)
                .body("/status/reason", json!("NoForecast"))
                .body(
                    "/status/message",
                    json!("released at once (fail open): the CarbonForecast \"default\" has no data (Ready=False, reason RefreshFailed)"),
                ),
        );
        expect_all(&env, events("NoForecast").map(|e| e.kind("Warning")));
        let action = reconcile(job(held_job("1")), controller).await;
        assert!(action.is_ok(), "{action:?}");
        env.api.verify();
    }

    #[tokio::test]
    async fn a_forecast_outside_the_selector_counts_as_missing() {
        let config = OperatorConfig {
            forecast_selector: "carbonshift.dev/shard=a"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            ..OperatorConfig::default()
        };
        let env = TestEnv::with_config(t(T0), config);
        let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
        let base = workload_base(&held_job("1"), t(T0));
        env.api.expect(get_workload(not_found()));
        env.api.expect(
            Expect::get(format!("{FORECASTS_PATH}/default"))
                .reply(Reply::Json(200, forecast().to_json())),
        );
        env.api.expect(Expect::apply(&base));
        env.api.expect(
            Expect::patch(format!("{JOBS}/train"))
                .reply(Reply::Json(200, released_job("2", "2026-05-04T10:00:00Z"))),
        );
        env.api
            .expect(Expect::apply_status(&base).body("/status/reason", json!("NoForecast")));
        expect_all(&env, events("NoForecast").map(|e| e.kind("Warning")));
        let action = reconcile(job(held_job("1")), controller).await;
        assert!(action.is_ok(), "{action:?}");
        env.api.verify();
    }

    #[test]
    fn the_wait_starts_at_creation_or_at_the_leadership_whichever_is_later() {
        let selector = ForecastSelector::default();
        let object = awaiting_forecast();
        let later = t(T0) + TimeDelta::minutes(10);
        for (started, expected) in [(t(T0) - TimeDelta::hours(1), t(T0)), (later, later)] {
            match KnownForecast::of(Some(&object), &selector, started, later) {
                KnownForecast::Awaiting(since) => assert_eq!(since, expected),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            KnownForecast::of(None, &selector, t(T0), t(T0)),
            KnownForecast::Missing
        ));
    }
}

/// The planned release is armed by the reconcile that plans it and sent by the releaser at the
/// planned second: the guarded patch from the Job as the reconcile read it, the lateness metric,
/// one Event on the Job; the status is left to the Job's watch event.
#[tokio::test]
async fn a_planned_release_is_armed_ahead_and_sent_at_its_second_by_the_releaser() {
    let env = env();
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    let base = workload_base(&held_job("1"), t(T0));
    let deferred = with_status(base.clone(), Some(planned_status(&env, &held_job("1"))));
    let body = serde_json::to_value(&deferred).unwrap_or_default();

    // 02:59:50, ten seconds before the planned start: nothing to write, the release is armed and
    // the reconcile looks again only after it (03:00 + the grace).
    env.clock.set(hour(3) - TimeDelta::seconds(10));
    env.api.expect(get_workload(Reply::Json(200, body.clone())));
    let action = reconcile(job(held_job("1")), controller.clone()).await;
    assert_eq!(
        action.ok(),
        Some(Action::requeue(
            (TimeDelta::seconds(10) + releaser::MAX_GRACE)
                .to_std()
                .unwrap_or_default()
        ))
    );
    env.api.verify();
    assert_eq!(controller.armed_next(), Some(hour(3)));
    assert!(env.api.writes().is_empty());

    // At 03:00 the releaser sends exactly the guarded patch, then the Event.
    env.clock.set(hour(3));
    env.api.expect(
        Expect::patch(format!("{JOBS}/train"))
            .body(
                "/0",
                json!({"op": "test", "path": "/spec/suspend", "value": true}),
            )
            .body(
                "/2",
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": "1"}),
            )
            .body(
                "/3",
                json!({"op": "replace", "path": "/spec/suspend", "value": false}),
            )
            .reply(Reply::Json(200, released_job("2", "2026-05-04T13:00:00Z"))),
    );
    expect_all(&env, events("Released"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(releaser::run(controller.clone(), async move {
        let _ = stopped.await;
    }));
    let api = env.api.clone();
    env.api
        .wait_until(move || api.writes().iter().any(|s| s.path.contains("/events")))
        .await;
    let _ = stop.send(());
    let _ = task.await;
    env.api.verify();
    assert_eq!(controller.armed_next(), None);
    let metrics = env.ctx.metrics.encode();
    assert!(
        metrics.contains("carbonshift_releases_total{reason=\"Released\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("carbonshift_release_lateness_seconds_sum 0.0"),
        "{metrics}"
    );
    // The cache still shows the Job before the patch: the next reconcile waits for the watch.
    let action = reconcile(job(held_job("1")), controller.clone()).await;
    assert_eq!(action.ok(), Some(Action::requeue(STALE_RECHECK)));

    // The watch event of the patch, before the Job controller answered: no write (the release
    // is recorded together with the answer).
    env.api.expect(get_workload(Reply::Json(200, body.clone())));
    let action = reconcile(
        job(released_job("2", "2026-05-04T13:00:00Z")),
        controller.clone(),
    )
    .await;
    assert_eq!(action.ok(), Some(until_the_answer_is_due()));
    env.api.verify();
    assert!(
        !env.api.writes().iter().any(|s| s.path.ends_with("/status")),
        "{:?}",
        describe(&env.api.writes())
    );

    // The Job controller's answer: one status write, Running, released at 03:00 as planned.
    env.clock.set(hour(3) + TimeDelta::seconds(1));
    let mut answered = released_job("3", "2026-05-04T13:00:00Z");
    answered["status"] = json!({"active": 1, "startTime": "2026-05-04T13:00:00Z"});
    env.api.expect(get_workload(Reply::Json(200, body)));
    env.api.expect(
        Expect::apply_status(&deferred)
            .body("/status/phase", json!("Running"))
            .body("/status/reason", json!("Released"))
            .body("/status/releasedAt", json!("2026-05-04T13:00:00Z")),
    );
    let action = reconcile(job(answered), controller.clone()).await;
    assert!(action.is_ok(), "{action:?}");
    env.api.verify();
}

/// A Job changed since its release was armed: the guarded patch is refused, nothing else is
/// written, and the Job is reconciled at once to decide again from the Job as it is.
#[tokio::test]
async fn a_refused_prepared_release_asks_for_a_reconcile_and_writes_nothing_else() {
    let env = env();
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    let (asked, mut asks) = futures::channel::mpsc::unbounded();
    controller.add_scope(None, reflector::store::<CarbonWorkload>().0, asked);
    let base = workload_base(&held_job("1"), t(T0));
    let deferred = with_status(base, Some(planned_status(&env, &held_job("1"))));
    env.clock.set(hour(3) - TimeDelta::seconds(1));
    env.api.expect(get_workload(Reply::Json(
        200,
        serde_json::to_value(&deferred).unwrap_or_default(),
    )));
    let _ = reconcile(job(held_job("1")), controller.clone()).await;
    env.api.verify();
    env.clock.set(hour(3));
    env.api
        .expect(Expect::patch(format!("{JOBS}/train")).reply(Reply::Error(422, "Invalid")));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(releaser::run(controller.clone(), async move {
        let _ = stopped.await;
    }));
    let again = futures::StreamExt::next(&mut asks).await;
    let _ = stop.send(());
    let _ = task.await;
    env.api.verify();
    assert_eq!(again.map(|o| o.name), Some("train".to_string()));
    assert!(!env.api.writes().iter().any(|s| s.path.contains("/events")));
    assert!(
        !env.ctx
            .metrics
            .encode()
            .contains("carbonshift_releases_total{reason=\"Released\"} 1")
    );
}

/// The planned workload of `held_job("1")` reconciled 10 s before its planned start (03:00),
/// which arms its release: the environment, the controller and the workload as the API holds it.
async fn armed_for_three() -> (TestEnv, Arc<WorkloadController>, Value) {
    let env = env();
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    let base = workload_base(&held_job("1"), t(T0));
    let deferred = with_status(base, Some(planned_status(&env, &held_job("1"))));
    let body = serde_json::to_value(&deferred).unwrap_or_default();
    env.clock.set(hour(3) - TimeDelta::seconds(10));
    env.api.expect(get_workload(Reply::Json(200, body.clone())));
    let _ = reconcile(job(held_job("1")), controller.clone()).await;
    env.api.verify();
    (env, controller, body)
}

/// A reconcile of `held_job("1")` (its workload `body`) that releases it itself: the guarded
/// patch and the `Released` Event.
async fn reconcile_releases(env: &TestEnv, controller: &Arc<WorkloadController>, body: Value) {
    env.api.expect(get_workload(Reply::Json(200, body)));
    env.api.expect(
        Expect::patch(format!("{JOBS}/train"))
            .reply(Reply::Json(200, released_job("2", "2026-05-04T13:00:30Z"))),
    );
    expect_all(env, events("Released"));
    let action = reconcile(job(held_job("1")), controller.clone()).await;
    assert!(action.is_ok(), "{action:?}");
    env.api.verify();
}

/// A burst takes longer than the reconcile's grace to send: a reconcile of a Job whose release
/// the releaser has taken out and not had answered yet sends nothing (the same patch would be
/// refused once the first landed, after the status had been written) and looks again shortly;
/// once the release was answered, the reconcile decides as usual.
#[tokio::test]
async fn a_reconcile_leaves_a_release_in_flight_to_the_releaser() {
    let (env, controller, body) = armed_for_three().await;

    // Past the grace, the releaser still busy with the burst: this release is in flight.
    env.clock.set(hour(3) + releaser::MAX_GRACE);
    let taken = controller.take_due(hour(3) + releaser::MAX_GRACE);
    assert_eq!(taken.len(), 1);
    let action = reconcile(job(held_job("1")), controller.clone()).await;
    assert_eq!(action.ok(), Some(Action::requeue(IN_FLIGHT_RECHECK)));
    env.api.verify();
    assert!(env.api.seen().is_empty(), "{:?}", describe(&env.api.seen()));

    // Answered (here: it failed before reaching the API server): the reconcile releases it.
    controller.answered(&taken[0].key());
    reconcile_releases(&env, &controller, body).await;
    assert!(
        !env.api.writes().iter().any(|s| s.path.ends_with("/status")),
        "the release is recorded with the Job controller's answer: {:?}",
        describe(&env.api.writes())
    );
}

#[tokio::test]
async fn a_release_whose_send_task_panicked_is_no_longer_in_flight() {
    let (env, controller, body) = armed_for_three().await;

    let taken = controller.take_due(hour(3));
    assert_eq!(taken.len(), 1);
    let key = taken[0].key();
    assert!(controller.release_in_flight(&key));
    // The task that sends it dies before the patch is answered.
    let in_flight = releaser::InFlight::new(controller.clone(), key.clone());
    let task = tokio::spawn(async move {
        let _in_flight = in_flight;
        panic!("a bug in the send task");
    });
    assert!(task.await.is_err_and(|e| e.is_panic()));
    assert!(
        !controller.release_in_flight(&key),
        "a reconcile would otherwise only wait for an answer that never comes"
    );
    // And so the reconcile after the grace releases the Job itself instead of waiting.
    env.clock.set(hour(3) + releaser::MAX_GRACE);
    reconcile_releases(&env, &controller, body).await;
}

#[tokio::test]
async fn a_candidate_forecast_the_watch_has_not_delivered_is_read_from_the_api() {
    let env = env();
    let controller = WorkloadController::new(env.ctx.clone(), &BatchJob);
    // In the store: answered without a request.
    let known = controller.candidate("default", t(T0)).await;
    assert!(known.is_some_and(|s| !s.forecast.is_empty()));
    assert!(env.api.seen().is_empty(), "{:?}", describe(&env.api.seen()));

    // Written by the forecast controller, not yet seen by the watch: read from the API.
    let mut other = forecast();
    other.metadata.name = Some("other".into());
    env.api.expect(
        Expect::get(format!("{FORECASTS_PATH}/other")).reply(Reply::Json(200, other.to_json())),
    );
    let read = controller.candidate("other", t(T0)).await;
    env.api.verify();
    assert_eq!(
        read.map(|s| s.forecast.len()),
        env.ctx.store.get("default").map(|s| s.forecast.len()),
        "the candidate's data as the API has it"
    );

    // Not there at all: left out of the placement.
    env.api
        .expect(Expect::get(format!("{FORECASTS_PATH}/missing")).reply(not_found()));
    assert!(controller.candidate("missing", t(T0)).await.is_none());
    env.api.verify();
}
