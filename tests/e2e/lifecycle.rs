//! A deferrable Job's life on the real control plane: held by the webhook, planned, released
//! at the planned start (or by the deadline rule, by hand, at a new plan), its pods bound by the
//! scheduler to the simulated node and run, completed by the Job controller, and recorded in its
//! CarbonWorkload; the dry run; an interruptible Job paused and resumed across two windows.

use std::time::Duration;

use carbonshift::api::Phase;
use carbonshift::api::annotations::{
    DRY_RUN, HELD, INTERRUPTIBLE, RELEASED_AT, RUN_NOW, SUBMITTED_AT,
};
use carbonshift::api::workload::TimeWindow;
use chrono::{TimeDelta, Utc};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::fixtures::{self, CLEAN, DIRTY, annotation, suspended};
use crate::harness::{self, FIELD_MANAGER, LEAD, Scenario, rfc3339};
use crate::operator::OperatorOptions;

const JOB: &str = "train";

/// Enough time for a Job that was released to be completed and recorded.
const FINISH: Duration = Duration::from_secs(90);

#[test]
fn a_deferrable_job_is_held_released_at_its_planned_start_runs_and_succeeds() {
    harness::run("release", planned_release);
}

async fn planned_release(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(LEAD);
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;

    let created = s.create_job(s.job(JOB).gpus(1).run_for(5).build()).await;
    s.assert_held_at_admission(&created);
    let planned = s.wait_deferred(JOB).await;
    assert_eq!(
        planned,
        clean,
        "plannedStart {} is not the clean window's start {}",
        rfc3339(planned),
        rfc3339(clean)
    );
    assert!(
        Utc::now() < clean - TimeDelta::seconds(3),
        "the set-up took too long: the Job was only Deferred at {}, the clean window starts at {}",
        rfc3339(Utc::now()),
        rfc3339(clean)
    );
    // Held means no pod: the Job controller creates none for a suspended Job.
    assert!(s.pods_of(JOB).await.is_empty(), "a held Job has pods");

    s.expect_release(JOB, clean).await;
    let pod = s.wait_pod_bound(JOB).await;
    s.assert_scheduled_here(&pod).await;
    let done = s.wait_job_complete(JOB, FINISH).await;
    assert_eq!(
        done.status.as_ref().and_then(|st| st.succeeded),
        Some(1),
        "{:?}",
        done.status
    );
    let status = s.wait_phase(JOB, Phase::Succeeded, FINISH).await;
    assert_eq!(status.reason.as_deref(), Some("Released"));
    assert_eq!(status.planned_start, Some(clean));
    assert!(
        status.started_at.is_some() && status.finished_at.is_some(),
        "{status:?}"
    );
    s.assert_pods_ran(JOB, 1);
    let phases: Vec<Option<Phase>> = s.history(JOB).iter().map(|t| t.phase).collect();
    for phase in [Phase::Deferred, Phase::Succeeded] {
        assert!(phases.contains(&Some(phase)), "phases seen: {phases:?}");
    }
    s.assert_metric(
        &operator,
        "carbonshift_releases_total{reason=\"Released\"} 1",
    )
    .await;
    s.assert_released_once(JOB).await;
}

#[test]
fn a_released_job_whose_pod_fails_is_failed_by_the_job_controller_and_recorded_failed() {
    harness::run("failed", failed_job);
}

async fn failed_job(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(LEAD);
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;
    // backoffLimit 0: the first failed pod fails the Job.
    let created = s.create_job(s.job(JOB).run_for(3).fail().build()).await;
    s.assert_held_at_admission(&created);
    assert_eq!(s.wait_deferred(JOB).await, clean);
    s.expect_release(JOB, clean).await;
    let failed = s.wait_job_finished(JOB, "Failed", FINISH).await;
    assert_eq!(
        failed.status.as_ref().and_then(|st| st.failed),
        Some(1),
        "{:?}",
        failed.status
    );
    let status = s.wait_phase(JOB, Phase::Failed, FINISH).await;
    assert!(status.finished_at.is_some(), "{status:?}");
    let records = s.nodes.records_for(JOB);
    assert_eq!(
        records
            .iter()
            .map(|r| r.outcome.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("Failed")],
        "{records:?}"
    );
    s.wait_event(JOB, "Failed").await;
}

#[test]
fn without_a_clean_window_before_the_latest_start_the_job_is_released_by_the_deadline_rule() {
    harness::run("deadline", deadline_release);
}

async fn deadline_release(s: Scenario) {
    let margin = TimeDelta::seconds(10);
    let operator = s.start_operator(OperatorOptions::margin("10s")).await;
    s.register_webhook(&operator).await;
    // Duration 1m, deadline D: latest start D − 1m, released by D − 1m − 10s at the latest. The
    // grid only gets clean at the latest start, too late to start cleanly before the deadline
    // rule.
    let deadline = harness::ahead(TimeDelta::seconds(100));
    let latest = deadline - TimeDelta::minutes(1);
    let release_by = latest - margin;
    let points = fixtures::grid(
        Utc::now() - TimeDelta::minutes(1),
        TimeDelta::seconds(10),
        deadline + TimeDelta::minutes(10),
        &[(latest, deadline + TimeDelta::minutes(10))],
    );
    s.create_forecast(Scenario::static_spec(points)).await;
    s.say(format!(
        "static forecast: {DIRTY} g/kWh until the latest start {}, then {CLEAN}",
        rfc3339(latest)
    ));
    s.wait_forecast_ready().await;

    let created = s.create_job(s.job(JOB).deadline(deadline).build()).await;
    s.assert_held_at_admission(&created);
    let status = s
        .wait_workload(JOB, "to be held", Duration::from_secs(30), |st| {
            matches!(st.phase, Some(Phase::Deferred | Phase::Pending)).then(|| st.clone())
        })
        .await;
    assert_eq!(status.latest_start, Some(latest), "{status:?}");
    s.say(format!(
        "held: {}; the deadline rule is due at {}",
        harness::describe(&status),
        rfc3339(release_by)
    ));

    s.expect_release(JOB, release_by).await;
    let released = s
        .wait_workload(
            JOB,
            "to record the release",
            Duration::from_secs(10),
            |st| st.released_at.is_some().then(|| st.clone()),
        )
        .await;
    assert_eq!(
        released.reason.as_deref(),
        Some("DeadlineRelease"),
        "{}",
        harness::describe(&released)
    );
    s.wait_event(JOB, "DeadlineRelease").await;
    s.wait_job_complete(JOB, FINISH).await;
    s.wait_phase(JOB, Phase::Succeeded, FINISH).await;
    s.assert_metric(
        &operator,
        "carbonshift_releases_total{reason=\"DeadlineRelease\"} 1",
    )
    .await;
}

#[test]
fn a_changed_forecast_replans_the_held_job_and_it_is_released_at_the_new_start() {
    harness::run("replan", replan);
}

async fn replan(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let first = harness::ahead(TimeDelta::seconds(90));
    s.create_clean_window_forecast(first).await;
    s.wait_forecast_ready().await;
    let created = s.create_job(s.job(JOB).build()).await;
    s.assert_held_at_admission(&created);
    assert_eq!(s.wait_deferred(JOB).await, first);

    // Move the clean window earlier: the forecast controller refreshes at once on a spec change.
    let second = harness::ahead(TimeDelta::seconds(20));
    let patch =
        json!({"spec": {"provider": {"static": {"points": fixtures::forecast_points(second)}}}});
    s.forecasts()
        .patch(&s.ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the CarbonForecast's points");
    s.say(format!(
        "CarbonForecast {} patched: the clean window now starts at {} instead of {}",
        s.ns,
        rfc3339(second),
        rfc3339(first)
    ));
    let status = s
        .wait_workload(JOB, "to be re-planned", Duration::from_secs(15), |st| {
            (st.phase == Some(Phase::Deferred) && st.planned_start == Some(second))
                .then(|| st.clone())
        })
        .await;
    s.say(format!("re-planned: {}", harness::describe(&status)));
    let note = s.wait_event(JOB, "Replanned").await;
    assert!(
        note.starts_with(&format!(
            "planned start moved from {}",
            harness::kube_time(first)
        )),
        "{note}"
    );
    assert!(suspended(&s.jobs().get(JOB).await.expect("read Job")));

    s.expect_release(JOB, second).await;
    s.wait_job_complete(JOB, FINISH).await;
    let done = s.wait_phase(JOB, Phase::Succeeded, FINISH).await;
    assert_eq!(done.planned_start, Some(second));
}

#[test]
fn run_now_on_a_held_job_releases_it_at_once() {
    harness::run("run-now", run_now);
}

async fn run_now(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(TimeDelta::minutes(3));
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;
    let created = s.create_job(s.job(JOB).build()).await;
    s.assert_held_at_admission(&created);
    assert_eq!(s.wait_deferred(JOB).await, clean);

    let asked = Utc::now();
    let patch = json!({"metadata": {"annotations": {RUN_NOW: "true"}}});
    s.jobs()
        .patch(
            JOB,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .expect("annotate run-now");
    s.say(format!("annotated {RUN_NOW}=true at {}", rfc3339(asked)));
    s.expect_release(JOB, asked).await;
    let status = s
        .wait_workload(
            JOB,
            "to record the release",
            Duration::from_secs(10),
            |st| st.released_at.is_some().then(|| st.clone()),
        )
        .await;
    assert_eq!(
        status.reason.as_deref(),
        Some("ManualRelease"),
        "{}",
        harness::describe(&status)
    );
    s.wait_job_complete(JOB, FINISH).await;
    s.wait_phase(JOB, Phase::Succeeded, FINISH).await;
    s.assert_metric(
        &operator,
        "carbonshift_releases_total{reason=\"ManualRelease\"} 1",
    )
    .await;
}

#[test]
fn a_dry_run_is_planned_and_reported_but_never_held() {
    harness::run("dry-run", dry_run);
}

async fn dry_run(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(TimeDelta::minutes(3));
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;

    let created = s
        .create_job(s.job(JOB).annotation(DRY_RUN, "true").build())
        .await;
    assert!(!suspended(&created), "a dry run was suspended");
    assert_eq!(annotation(&created, HELD), None);
    assert!(annotation(&created, SUBMITTED_AT).is_some());
    let status = s
        .wait_workload(
            JOB,
            "to be NotDeferred with a plan",
            Duration::from_secs(30),
            |st| st.planned_start.is_some().then(|| st.clone()),
        )
        .await;
    s.say(format!("dry run: {}", harness::describe(&status)));
    assert_eq!(status.planned_start, Some(clean), "the plan recorded");
    assert_eq!(status.reason.as_deref(), Some("DryRun"));
    assert!(
        matches!(
            status.phase,
            Some(Phase::NotDeferred | Phase::Running | Phase::Succeeded)
        ),
        "{}",
        harness::describe(&status)
    );
    assert!(
        status.savings_percent.is_some() && status.expected_intensity == Some(CLEAN),
        "the plan's figures: {status:?}"
    );
    // It runs at once, as if carbonshift were not there.
    s.wait_job_complete(JOB, FINISH).await;
    let done = s.wait_phase(JOB, Phase::Succeeded, FINISH).await;
    assert_eq!(done.reason.as_deref(), Some("DryRun"));
    let job = s.jobs().get(JOB).await.expect("read Job");
    assert_eq!(
        annotation(&job, RELEASED_AT),
        None,
        "a dry run is never released"
    );
    s.assert_pods_ran(JOB, 1);
}

#[test]
fn an_interruptible_job_is_paused_between_two_clean_windows_and_finishes_by_its_deadline() {
    harness::run("interruptible", interruptible);
}

async fn interruptible(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::margin("10s")).await;
    s.register_webhook(&operator).await;
    // Two 30 s clean windows 30 s apart, a minute of run time, the deadline 3 minutes after the
    // first window: the cheapest plan runs in both windows.
    let first = harness::ahead(LEAD);
    let window = TimeDelta::seconds(30);
    let second = first + TimeDelta::seconds(60);
    let deadline = first + TimeDelta::minutes(3);
    let points = fixtures::grid(
        first - TimeDelta::minutes(1),
        window,
        first + TimeDelta::minutes(20),
        &[(first, first + window), (second, second + window)],
    );
    s.create_forecast(Scenario::static_spec(points)).await;
    s.say(format!(
        "static forecast on a 30 s grid: clean at [{}, +30 s) and [{}, +30 s)",
        rfc3339(first),
        rfc3339(second)
    ));
    s.wait_forecast_ready().await;

    // Each pod runs 40 s: the first is cut at the end of the first window, the second runs past
    // the end of the second (after its last window an interruptible Job runs to the end).
    let job = s
        .job(JOB)
        .annotation(INTERRUPTIBLE, "true")
        .deadline(deadline)
        .backoff_limit(4)
        .run_for(40)
        .build();
    let created = s.create_job(job).await;
    s.assert_held_at_admission(&created);
    assert_eq!(s.wait_deferred(JOB).await, first);
    let status = s
        .wait_workload(JOB, "to plan two windows", Duration::from_secs(5), |st| {
            (st.windows.len() == 2).then(|| st.clone())
        })
        .await;
    assert_eq!(
        status.windows,
        vec![
            TimeWindow {
                start: first,
                end: first + window
            },
            TimeWindow {
                start: second,
                end: second + window
            },
        ]
    );

    // First window.
    s.expect_release(JOB, first).await;
    let pod = s.wait_pod_bound(JOB).await;
    let first_pod = pod.metadata.uid.clone().unwrap_or_default();
    let paused = s
        .wait_phase(JOB, Phase::Paused, Duration::from_secs(60))
        .await;
    assert_eq!(paused.reason.as_deref(), Some("Paused"));
    assert_eq!(paused.runs.len(), 1, "{paused:?}");
    let job = s.jobs().get(JOB).await.expect("read Job");
    assert!(suspended(&job), "paused but not suspended: {:?}", job.spec);
    assert_eq!(
        annotation(&job, RELEASED_AT),
        None,
        "the pause removes released-at"
    );
    // The Job controller deletes the pods of a suspended Job; the simulated kubelet stops them.
    s.eventually(
        "the first pod to be deleted",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let pods = s.pods_of(JOB).await;
            if pods.is_empty() {
                Ok(())
            } else {
                Err(format!("{} pod(s) left", pods.len()))
            }
        },
    )
    .await;
    s.say("paused: Job suspended, its pod deleted by the Job controller");

    // Second window: resumed, a new pod.
    s.expect_release(JOB, second).await;
    let resumed = s
        .wait_workload(JOB, "to record the resume", Duration::from_secs(10), |st| {
            matches!(st.phase, Some(Phase::Released | Phase::Running)).then(|| st.clone())
        })
        .await;
    assert_eq!(resumed.reason.as_deref(), Some("Resumed"), "{resumed:?}");
    let pod = s.wait_pod_bound(JOB).await;
    assert_ne!(
        pod.metadata.uid.as_deref(),
        Some(first_pod.as_str()),
        "the resumed Job runs a new pod"
    );
    let done = s.wait_job_complete(JOB, FINISH).await;
    let completion = done
        .status
        .as_ref()
        .and_then(|st| st.completion_time.as_ref())
        .map(|t| harness::from_jiff(t.0))
        .expect("a completion time");
    assert!(
        completion <= deadline,
        "completed at {}, after the deadline {}",
        rfc3339(completion),
        rfc3339(deadline)
    );
    let status = s.wait_phase(JOB, Phase::Succeeded, FINISH).await;
    assert_eq!(status.runs.len(), 2, "two runs: {:?}", status.runs);
    assert!(
        status.runs[0].start >= first && status.runs[1].start >= second,
        "{:?}",
        status.runs
    );
    let records = s.nodes.records_for(JOB);
    let outcomes: Vec<(&str, Option<&str>)> = records
        .iter()
        .map(|r| (r.uid.as_str(), r.outcome.as_deref()))
        .collect();
    assert_eq!(
        outcomes.iter().map(|(_, o)| *o).collect::<Vec<_>>(),
        vec![Some("Killed"), Some("Succeeded")],
        "the pods the node simulator ran: {records:?}"
    );
    assert_eq!(outcomes[0].0, first_pod);
}
