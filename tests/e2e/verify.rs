//! Verified savings on the real control plane: a Job planned against a `static` forecast whose
//! measured values (`spec.provider.static.actuals`) differ from its forecast runs, completes, and
//! gets `status.verified` recomputed from the measured values, checked against a brute-force
//! integral of them over the recorded run and the run-now counterfactual; the namespace's
//! CarbonLedger holds it after the Job is deleted and the operator restarted, and adds the next
//! Job without counting the first twice.

use std::time::Duration;

use carbonshift::api::Phase;
use carbonshift::api::forecast::IntensityPoint;
use chrono::{DateTime, TimeDelta, Utc};
use kube::api::{DeleteParams, PropagationPolicy};

use crate::fixtures::{CLEAN, forecast_points};
use crate::harness::{self, LEAD, Scenario};
use crate::operator::OperatorOptions;

const JOB: &str = "train";
const SECOND: &str = "train-2";
const FINISH: Duration = Duration::from_secs(90);
/// What the grid really did: cleaner than forecast in the clean window, dirtier outside.
const MEASURED_CLEAN: f64 = 70.0;
const MEASURED_DIRTY: f64 = 430.0;

#[test]
fn a_finished_job_is_verified_against_the_measured_values_and_kept_in_the_ledger() {
    harness::run("verify", verified);
}

/// The measured value at `t`: each point holds until the next.
fn at(actuals: &[IntensityPoint], t: DateTime<Utc>) -> f64 {
    actuals
        .iter()
        .rev()
        .find(|p| p.start <= t)
        .map_or(f64::NAN, |p| p.intensity)
}

/// Mean of the measured values over `[from, from + d)`, second by second (brute force: every
/// point of these grids starts on a whole second).
fn mean(actuals: &[IntensityPoint], from: DateTime<Utc>, d: TimeDelta) -> f64 {
    let ms = d.num_milliseconds();
    let whole = ms / 1000;
    let mut sum = 0.0;
    for s in 0..whole {
        sum += at(actuals, from + TimeDelta::seconds(s)) * 1000.0;
    }
    let rest = ms - whole * 1000;
    sum += at(actuals, from + TimeDelta::seconds(whole)) * rest as f64;
    sum / ms as f64
}

async fn verified(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(LEAD);
    let points = forecast_points(clean);
    let actuals: Vec<IntensityPoint> = points
        .iter()
        .map(|p| IntensityPoint {
            start: p.start,
            intensity: if p.intensity == CLEAN {
                MEASURED_CLEAN
            } else {
                MEASURED_DIRTY
            },
        })
        .collect();
    let mut spec = Scenario::static_spec(points);
    if let carbonshift::api::ProviderSpec::Static(fixed) = &mut spec.provider {
        fixed.actuals = actuals.clone();
    }
    s.create_forecast(spec).await;
    s.wait_forecast_ready().await;

    s.create_job(s.job(JOB).gpus(1).run_for(5).build()).await;
    s.wait_deferred(JOB).await;
    s.expect_release(JOB, clean).await;
    s.wait_pod_bound(JOB).await;
    s.wait_job_complete(JOB, FINISH).await;
    let status = s.wait_phase(JOB, Phase::Succeeded, FINISH).await;
    let workload = s
        .workloads()
        .get(JOB)
        .await
        .unwrap_or_else(|e| panic!("reading the CarbonWorkload: {e}"));
    let state = status.verification.as_ref().map(|v| v.state.as_str());
    assert_eq!(state, Some("Verified"), "{:?}", status.verification);
    let v = status
        .verified
        .clone()
        .unwrap_or_else(|| panic!("no status.verified: {status:?}"));

    // Hand-computed from the recorded run and the measured values.
    let (Some(start), Some(end)) = (status.started_at, status.finished_at) else {
        panic!("no run recorded: {status:?}")
    };
    let run = end - start;
    let spec = &workload.spec;
    let kwh = spec.power_watts * spec.pue * run.num_milliseconds() as f64 / 3_600_000_000.0;
    let intensity = mean(&actuals, start, run);
    let counterfactual = mean(&actuals, spec.submitted_at, run);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-3 * b.abs().max(1e-9);
    assert!(
        close(v.intensity, intensity),
        "{} vs {intensity}",
        v.intensity
    );
    assert!(
        close(v.counterfactual_intensity, counterfactual),
        "{v:?} vs {counterfactual}"
    );
    assert!(close(v.energy_kwh, kwh), "{} vs {kwh}", v.energy_kwh);
    let avoided = kwh * (counterfactual - intensity);
    assert!(
        close(v.avoided_grams, avoided),
        "{} vs {avoided}",
        v.avoided_grams
    );
    // The run was in the clean window, the counterfactual was not.
    assert_eq!(
        (intensity, counterfactual),
        (MEASURED_CLEAN, MEASURED_DIRTY)
    );
    // The plan expected the forecast's clean value: off by (50 − 70) / 70.
    let error = v.forecast_error_percent.unwrap_or(f64::NAN);
    assert!(
        close(error, (CLEAN - MEASURED_CLEAN) / MEASURED_CLEAN * 100.0),
        "{error}"
    );
    assert_eq!(v.source, "static actuals (spec.provider.static.actuals)");
    s.wait_event(JOB, "Verified").await;

    // The ledger of this namespace and forecast holds the Job, estimated and verified.
    let ledger = s.ledgers().get(&s.ns).await.expect("read the CarbonLedger");
    let total = ledger
        .status
        .and_then(|st| st.total)
        .expect("ledger totals");
    assert_eq!((total.jobs, total.verified_jobs), (1, 1), "{total:?}");
    assert!(
        close(total.verified_avoided_grams, v.avoided_grams),
        "{total:?}"
    );
    assert!(
        close(total.verified_emitted_grams, v.emissions_grams),
        "{total:?}"
    );

    // It outlives the Job (its CarbonWorkload is garbage-collected with it) and a restart of the
    // operator, and the next Job adds to it without counting the first one again.
    s.jobs()
        .delete(
            JOB,
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            },
        )
        .await
        .expect("delete the Job");
    s.eventually(
        "the CarbonWorkload to be garbage-collected with its Job",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            match s.workloads().get_opt(JOB).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err("still there".to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    operator.stop();
    let operator = s.restart_operator(&operator).await;
    s.create_job(s.job(SECOND).gpus(1).run_for(5).build()).await;
    s.wait_pod_bound(SECOND).await;
    s.wait_job_complete(SECOND, FINISH).await;
    let second = s.wait_phase(SECOND, Phase::Succeeded, FINISH).await;
    assert_eq!(
        second.verification.map(|v| v.state).as_deref(),
        Some("Verified")
    );
    let ledger = s.ledgers().get(&s.ns).await.expect("read the CarbonLedger");
    let total = ledger
        .status
        .and_then(|st| st.total)
        .expect("ledger totals");
    assert_eq!((total.jobs, total.verified_jobs), (2, 2), "{total:?}");
    s.say(format!(
        "CarbonLedger {}: {} jobs, {:.3} g emitted and {:.3} g avoided (verified)",
        s.ns, total.jobs, total.verified_emitted_grams, total.verified_avoided_grams
    ));
    drop(operator);
}
