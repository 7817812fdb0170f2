//! The orderings of the forecast/Job race: a Job must never be released for want of a forecast
//! that exists but has no data yet. A CarbonForecast without data keeps its Jobs `Pending`
//! (reason `AwaitingForecast`) until the data comes; only a CarbonForecast that does not exist is
//! `NoForecast` (released at once: fail open). And a release whose guard fails because the Job
//! changed is decided again and still lands on time, once.

use std::time::Duration;

use carbonshift::api::annotations::{DURATION, FORECAST, HELD, MAX_DELAY};
use carbonshift::api::forecast::UkCarbonIntensity;
use carbonshift::api::{CarbonForecastSpec, Phase, ProviderSpec};
use chrono::{TimeDelta, Utc};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::fixtures::{annotation, forecast_points, suspended};
use crate::harness::{self, LEAD, Scenario, Transition, rfc3339};
use crate::operator::OperatorOptions;
use crate::provider::{UkStandIn, national_body, slots_with_one_clean};

/// Phases a Job waiting for its forecast's first data may pass through.
fn only_waiting_then_deferred(history: &[Transition]) -> Result<(), String> {
    for t in history {
        let ok = match t.phase {
            Some(Phase::Pending) => {
                t.reason.as_deref() == Some("AwaitingForecast") || t.reason.is_none()
            }
            Some(Phase::Deferred) | None => true,
            _ => false,
        };
        if !ok {
            return Err(format!("unexpected state {t:?} in {history:?}"));
        }
    }
    match history.last() {
        Some(t) if t.phase == Some(Phase::Deferred) => Ok(()),
        _ => Err(format!("does not end Deferred: {history:?}")),
    }
}

fn summary(history: &[Transition]) -> String {
    history
        .iter()
        .map(|t| format!("{:?}({})", t.phase, t.reason.as_deref().unwrap_or("-")))
        .collect::<Vec<_>>()
        .join(" → ")
}

#[test]
fn a_forecast_and_jobs_applied_in_one_manifest_end_deferred_never_released_for_no_forecast() {
    harness::run("one-apply", one_apply);
}

async fn one_apply(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(LEAD + TimeDelta::seconds(30));
    let forecast = s.forecast_object(&s.ns, Scenario::static_spec(forecast_points(clean)));
    s.created_forecast(&s.ns);
    let jobs = ["first", "second"];
    let mut manifest = serde_json::to_string(&forecast).expect("JSON");
    for job in jobs {
        manifest.push_str("\n---\n");
        manifest.push_str(&s.job(job).manifest());
    }
    let output = s.kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(
        output.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    s.say(format!(
        "kubectl apply of one manifest (CarbonForecast, then Jobs {}): {}",
        jobs.join(", "),
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .replace('\n', "; ")
    ));
    for job in jobs {
        let planned = s.wait_deferred(job).await;
        assert_eq!(planned, clean, "{job}");
    }
    // Deferred for good: a moment later still held, and never NoForecast.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for job in jobs {
        let current = s.jobs().get(job).await.expect("read Job");
        assert!(suspended(&current), "{job} was released");
        assert_eq!(annotation(&current, HELD), Some("true"));
        s.assert_never_reason(job, "NoForecast").await;
        let history = s.history(job);
        s.say(format!("{job}: {}", summary(&history)));
        only_waiting_then_deferred(&history).unwrap_or_else(|e| panic!("{job}: {e}"));
    }
}

#[test]
fn jobs_created_before_the_operator_starts_are_taken_as_held_and_planned() {
    harness::run("before-start", before_start);
}

async fn before_start(s: Scenario) {
    // No operator yet, no webhook: the forecast has no data, the Job is created suspended by its
    // owner with the deferrable annotations only.
    let clean = harness::ahead(LEAD + TimeDelta::seconds(10));
    s.create_clean_window_forecast(clean).await;
    let created = s.create_job(s.job("train").suspend(true).build()).await;
    assert!(suspended(&created));
    assert_eq!(
        annotation(&created, HELD),
        None,
        "no webhook, no held marker"
    );
    s.say(
        "CarbonForecast (no status) and a suspended deferrable Job created while no operator runs",
    );

    let operator = s.start_operator(OperatorOptions::default()).await;
    s.wait_forecast_ready().await;
    let planned = s.wait_deferred("train").await;
    assert_eq!(planned, clean);
    s.assert_never_reason("train", "NoForecast").await;
    s.expect_release("train", clean).await;
    s.wait_job_complete("train", Duration::from_secs(90)).await;
    s.wait_phase("train", Phase::Succeeded, Duration::from_secs(90))
        .await;
    s.assert_released_once("train").await;
    s.assert_metric(
        &operator,
        "carbonshift_releases_total{reason=\"Released\"} 1",
    )
    .await;
    s.say(format!("history: {}", summary(&s.history("train"))));
}

#[test]
fn a_job_whose_forecast_has_no_data_yet_awaits_it_and_a_missing_forecast_fails_open() {
    harness::run("awaiting", awaiting);
}

async fn awaiting(s: Scenario) {
    // A provider that takes 5 s to answer: the CarbonForecast exists from the start, its first
    // data arrives well after the Job.
    let (slots, clean) = slots_with_one_clean(Utc::now());
    let provider = UkStandIn::start(national_body(&slots));
    provider.set_delay(Duration::from_secs(5));
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    s.create_forecast(CarbonForecastSpec {
        provider: ProviderSpec::UkCarbonIntensity(UkCarbonIntensity::default()),
        credentials_secret_ref: None,
        refresh_interval: None,
        stale_after: None,
        base_url: Some(provider.base_url()),
        capacity: None,
        placement: None,
    })
    .await;
    s.say(format!(
        "CarbonForecast {} created: a UK Carbon Intensity stand-in on {} answering 5 s late",
        s.ns,
        provider.base_url()
    ));
    // Half an hour of run time within three hours: the plan is the clean slot.
    let job = s
        .job("waits")
        .annotation(DURATION, "30m")
        .annotation(MAX_DELAY, "3h")
        .build();
    let created = s.create_job(job).await;
    s.assert_held_at_admission(&created);
    // And a Job naming a CarbonForecast that does not exist.
    let missing = format!("{}-missing", s.ns);
    let lost = s
        .create_job(s.job("lost").annotation(FORECAST, &missing).build())
        .await;
    s.assert_held_at_admission(&lost);

    let waiting = s
        .wait_workload(
            "waits",
            "to await its forecast's data",
            Duration::from_secs(30),
            |st| (st.reason.as_deref() == Some("AwaitingForecast")).then(|| st.clone()),
        )
        .await;
    assert_eq!(
        waiting.phase,
        Some(Phase::Pending),
        "{}",
        harness::describe(&waiting)
    );
    s.say(format!("waits: {}", harness::describe(&waiting)));
    let job = s.jobs().get("waits").await.expect("read Job waits");
    assert!(
        suspended(&job),
        "released while awaiting its forecast's data"
    );

    assert_eq!(s.wait_deferred("waits").await, clean);
    s.wait_forecast_ready().await;
    s.assert_never_reason("waits", "NoForecast").await;
    let history = s.history("waits");
    s.say(format!("waits: {}", summary(&history)));
    only_waiting_then_deferred(&history).unwrap_or_else(|e| panic!("waits: {e}"));

    let status = s
        .wait_workload("lost", "to be released", Duration::from_secs(30), |st| {
            st.released_at.is_some().then(|| st.clone())
        })
        .await;
    assert_eq!(
        status.reason.as_deref(),
        Some("NoForecast"),
        "a Job naming a CarbonForecast that does not exist is released at once: {}",
        harness::describe(&status)
    );
    let job = s.jobs().get("lost").await.expect("read Job lost");
    assert!(!suspended(&job));
    s.say(format!(
        "lost (CarbonForecast {missing} does not exist): {}",
        harness::describe(&status)
    ));
}

#[test]
fn a_job_changed_as_it_is_released_is_decided_again_and_released_once_on_time() {
    harness::run("conflict", conflict);
}

async fn conflict(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(LEAD);
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;
    let created = s.create_job(s.job("train").build()).await;
    s.assert_held_at_admission(&created);
    assert_eq!(s.wait_deferred("train").await, clean);

    // The owner touches the Job (a label, a new resourceVersion each time) from three tasks at
    // once, back to back, from 200 ms before the planned start to 300 ms after, while the release
    // is polled as always: the operator's guarded release, made from the version it saw, is
    // refused and must be decided again.
    let touchers: Vec<_> = (0..3)
        .map(|task| {
            let jobs = s.jobs();
            tokio::spawn(async move {
                let start = clean - TimeDelta::milliseconds(200);
                tokio::time::sleep((start - Utc::now()).to_std().unwrap_or_default()).await;
                let mut touches = 0u32;
                while Utc::now() < clean + TimeDelta::milliseconds(300) {
                    touches += 1;
                    let value = format!("{task}-{touches}");
                    let patch = json!({"metadata": {"labels": {"e2e-touch": value}}});
                    jobs.patch("train", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .unwrap_or_else(|e| panic!("touching the Job: {e}"));
                }
                touches
            })
        })
        .collect();
    s.expect_release("train", clean).await;
    let mut touches = 0;
    for toucher in touchers {
        touches += toucher.await.expect("a touching task");
    }
    s.say(format!(
        "touched the Job {touches} times around its planned start {}",
        rfc3339(clean)
    ));
    s.wait_job_complete("train", Duration::from_secs(90)).await;
    s.wait_phase("train", Phase::Succeeded, Duration::from_secs(90))
        .await;
    let patches = s.assert_released_once("train").await;
    let refused = patches
        .iter()
        .filter(|p| matches!(p.code, 409 | 422))
        .count();
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    let redecided = log.lines().filter(|l| l.contains("deciding again")).count();
    s.say(if refused > 0 {
        format!(
            "{refused} guarded release patch(es) refused by the API server (the Job had changed), {redecided} re-decision(s) in the operator's log; released once, on time"
        )
    } else {
        "no guarded patch was refused this time (the operator's patch won the race); released once, on time".to_string()
    });
}
