//! What happens when things go wrong: the operator killed while a Job waits and restarted after
//! its planned start, a forecast provider that fails and then answers garbage, and the leader of
//! two replicas killed. The release patches are counted in the API server's audit log: each Job
//! is released exactly once.

use std::time::Duration;

use carbonshift::api::annotations::{DURATION, MAX_DELAY};
use carbonshift::api::forecast::UkCarbonIntensity;
use carbonshift::api::{CarbonForecastSpec, Phase, ProviderSpec};
use chrono::{TimeDelta, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::fixtures::suspended;
use crate::harness::{self, LEAD, Scenario, from_jiff, rfc3339};
use crate::operator::{OperatorOptions, get_text};
use crate::provider::{Answer, UkStandIn, national_body, slots_with_one_clean};

const JOB: &str = "train";
const FINISH: Duration = Duration::from_secs(90);

#[test]
fn an_operator_killed_while_a_job_waits_releases_it_once_at_once_after_its_restart() {
    harness::run("restart", restart);
}

async fn restart(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(LEAD);
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;
    let created = s.create_job(s.job(JOB).build()).await;
    s.assert_held_at_admission(&created);
    assert_eq!(s.wait_deferred(JOB).await, clean);

    operator.kill();
    s.say(format!(
        "SIGKILL to the operator {} s before the planned start",
        (clean - Utc::now()).num_seconds()
    ));
    // Past the planned start with no operator: nothing releases the Job.
    let overdue = clean + TimeDelta::seconds(5);
    tokio::time::sleep((overdue - Utc::now()).to_std().unwrap_or_default()).await;
    let job = s.jobs().get(JOB).await.expect("read Job");
    assert!(
        suspended(&job),
        "the Job was released while no operator ran"
    );
    s.say("5 s past the planned start without an operator: the Job is still held");

    let restarted = s.restart_operator(&operator).await;
    let leading = s
        .eventually(
            "the restarted operator to start its controllers",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                restarted
                    .logged_at("forecast store filled")
                    .ok_or_else(|| "not yet in the log".to_string())
            },
        )
        .await;
    s.say(format!(
        "restarted operator: spawned {}, controllers started {}",
        rfc3339(restarted.spawned),
        rfc3339(leading)
    ));
    s.expect_release(JOB, leading).await;
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
        Some("Released"),
        "an overdue planned start is a planned release: {}",
        harness::describe(&status)
    );
    s.wait_job_complete(JOB, FINISH).await;
    s.wait_phase(JOB, Phase::Succeeded, FINISH).await;
    s.assert_released_once(JOB).await;
}

#[test]
fn a_provider_outage_turns_the_forecast_stale_and_held_jobs_keep_their_plan() {
    harness::run("outage", outage);
}

async fn outage(s: Scenario) {
    // Half-hour slots from the current one: dirty for an hour, then one clean slot, then dirty.
    let (slots, clean) = slots_with_one_clean(Utc::now());
    let slot = slots[0].0;
    let provider = UkStandIn::start(national_body(&slots));
    s.say(format!(
        "UK Carbon Intensity stand-in on {}: 300 g/kWh, 40 from {}",
        provider.base_url(),
        rfc3339(clean)
    ));

    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    s.create_forecast(CarbonForecastSpec {
        provider: ProviderSpec::UkCarbonIntensity(UkCarbonIntensity::default()),
        credentials_secret_ref: None,
        refresh_interval: Some("10s".to_string()),
        stale_after: Some("30s".to_string()),
        base_url: Some(provider.base_url()),
        capacity: None,
        placement: None,
    })
    .await;
    s.wait_forecast_ready().await;
    let path = provider
        .served()
        .first()
        .map(|r| r.path.clone())
        .unwrap_or_default();
    // The slot holding the time of the request: this one, or the next if one began meanwhile.
    let expected: Vec<String> = [slot, slot + TimeDelta::minutes(30)]
        .iter()
        .map(|from| format!("/intensity/{}/fw48h", from.format("%Y-%m-%dT%H:%MZ")))
        .collect();
    assert!(
        expected.contains(&path),
        "the national forecast endpoint: {path:?}, expected one of {expected:?}"
    );

    let job = s
        .job(JOB)
        .annotation(DURATION, "30m")
        .annotation(MAX_DELAY, "3h")
        .build();
    let created = s.create_job(job).await;
    s.assert_held_at_admission(&created);
    let planned = s.wait_deferred(JOB).await;
    assert_eq!(planned, clean);
    let before = s.workloads().get(JOB).await.expect("read workload");
    let before_status = before.status.clone().unwrap_or_default();

    // The outage: first HTTP 500 (retried by the client, then a failed refresh), then garbage.
    provider.set(Answer::ServerError);
    s.say("stand-in now answers HTTP 500");
    let error = forecast_error_after(&s, &provider, Answer::ServerError).await;
    s.say(format!("refresh failed: lastError {error:?}"));
    provider.set(Answer::Garbage);
    s.say("stand-in now answers a body that is not JSON");
    let garbage = forecast_error_after(&s, &provider, Answer::Garbage).await;
    s.say(format!("refresh failed: lastError {garbage:?}"));

    let forecasts = s.forecasts();
    let stale = s
        .eventually(
            "the CarbonForecast to turn Stale",
            Duration::from_secs(60),
            Duration::from_millis(500),
            || async {
                let f = forecasts.get(&s.ns).await.map_err(|e| e.to_string())?;
                let status = f.status.unwrap_or_default();
                match status.conditions.iter().find(|c| c.r#type == "Ready") {
                    Some(c) if !c.is_true() && c.reason == "Stale" => Ok(c.message.clone()),
                    other => Err(format!("Ready {other:?}")),
                }
            },
        )
        .await;
    s.say(format!("CarbonForecast Ready=False, Stale: {stale}"));

    // The held Job keeps its plan and its deadline; the operator stays healthy.
    let after = s.workloads().get(JOB).await.expect("read workload");
    let status = after.status.clone().unwrap_or_default();
    assert_eq!(
        status.phase,
        Some(Phase::Deferred),
        "{}",
        harness::describe(&status)
    );
    assert_eq!(status.planned_start, Some(planned));
    assert_eq!(status.deadline, before_status.deadline);
    assert_eq!(status.latest_start, before_status.latest_start);
    assert_eq!(after.spec, before.spec, "the constraints are unchanged");
    assert!(suspended(&s.jobs().get(JOB).await.expect("read Job")));
    for path in ["/healthz", "/readyz"] {
        let body = get_text(&operator.metrics_url(path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(body, "ok\n", "{path}");
    }
    s.check_operators();
    s.say(format!(
        "still Deferred with plannedStart {}, operator healthy; the stand-in answered {} good, {} HTTP 500, {} garbage",
        rfc3339(planned),
        provider.count(Answer::Good),
        provider.count(Answer::ServerError),
        provider.count(Answer::Garbage)
    ));
}

/// Waits until the stand-in has answered `answer` and the CarbonForecast records a refresh
/// error after that; returns `status.lastError`.
async fn forecast_error_after(s: &Scenario, provider: &UkStandIn, answer: Answer) -> String {
    let forecasts = s.forecasts();
    let seen = provider.count(answer);
    let previous = forecasts
        .get(&s.ns)
        .await
        .expect("read CarbonForecast")
        .status
        .unwrap_or_default()
        .last_error;
    s.eventually(
        &format!("a failed refresh after a {answer:?} answer"),
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            if provider.count(answer) <= seen {
                return Err(format!("no {answer:?} served yet"));
            }
            let f = forecasts.get(&s.ns).await.map_err(|e| e.to_string())?;
            match f.status.unwrap_or_default().last_error {
                Some(error) if Some(&error) != previous.as_ref() => Ok(error),
                other => Err(format!("lastError {other:?}")),
            }
        },
    )
    .await
}

#[test]
fn when_the_leader_of_two_replicas_is_killed_the_other_takes_over_and_releases_once() {
    harness::run("leader", leader);
}

async fn leader(s: Scenario) {
    let lease_name = "e2e-leader";
    let replica = |pod: &str| OperatorOptions {
        label: Some(format!("replica-{pod}")),
        leader: Some((lease_name.to_string(), pod.to_string())),
        ..OperatorOptions::default()
    };
    let a = s.start_operator(replica("a")).await;
    s.wait_leading(&a, Duration::from_secs(30)).await;
    let b = s.start_operator(replica("b")).await;
    // Both serve the webhook; the survivor's is registered.
    s.register_webhook(&b).await;
    assert!(
        !b.leader().await.expect("replica-b's /metrics"),
        "replica-b leads while replica-a holds the Lease"
    );
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.ns);
    let lease = leases.get(lease_name).await.expect("read the Lease");
    let spec = lease.spec.clone().unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"), "{spec:?}");
    let duration = TimeDelta::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    s.say(format!(
        "replica-a leads (Lease {lease_name}, {} s), replica-b stands by",
        duration.num_seconds()
    ));

    let clean = harness::ahead(TimeDelta::seconds(50));
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;
    let created = s.create_job(s.job(JOB).build()).await;
    s.assert_held_at_admission(&created);
    assert_eq!(s.wait_deferred(JOB).await, clean);

    a.kill();
    let killed = Utc::now();
    let last = leases.get(lease_name).await.expect("read the Lease");
    let last_spec = last.spec.clone().unwrap_or_default();
    let renewed = last_spec
        .renew_time
        .as_ref()
        .map(|t| from_jiff(t.0))
        .expect("a renewTime");
    s.say(format!(
        "SIGKILL to replica-a (the leader; last renewal {}); {} s to the planned start",
        rfc3339(renewed),
        (clean - killed).num_seconds()
    ));
    let took_over = s
        .wait_leading(
            &b,
            duration.to_std().unwrap_or_default() + Duration::from_secs(15),
        )
        .await;
    let lease = leases.get(lease_name).await.expect("read the Lease");
    let spec = lease.spec.clone().unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"), "{spec:?}");
    let acquired = spec
        .acquire_time
        .as_ref()
        .map(|t| from_jiff(t.0))
        .expect("an acquireTime");
    s.say(format!(
        "replica-b leads since {} ({:.1} s after the kill; Lease acquired {}, {:.1} s after replica-a's last renewal; transitions {:?})",
        rfc3339(took_over),
        (took_over - killed).num_milliseconds() as f64 / 1000.0,
        rfc3339(acquired),
        (acquired - renewed).num_milliseconds() as f64 / 1000.0,
        spec.lease_transitions
    ));
    assert!(
        acquired >= renewed + duration,
        "replica-b took the Lease at {} before replica-a's expired ({} + {} s)",
        rfc3339(acquired),
        rfc3339(renewed),
        duration.num_seconds()
    );
    assert!(
        took_over < clean,
        "replica-b only took over at {}, after the planned start {}",
        rfc3339(took_over),
        rfc3339(clean)
    );

    s.expect_release(JOB, clean).await;
    s.wait_job_complete(JOB, FINISH).await;
    s.wait_phase(JOB, Phase::Succeeded, FINISH).await;
    s.assert_released_once(JOB).await;
    s.assert_metric(&b, "carbonshift_releases_total{reason=\"Released\"} 1")
        .await;
}
