//! Verified figures of a finished workload: the **measured** intensity over its actual run
//! intervals and over the run-now counterfactual (the same total run time from submission),
//! instead of the forecast the plan was made from. Pure: the shell fetches the provider's
//! measured history (`forecast::Provider::history`) and passes its pieces in.
//!
//! A figure is verified only when the measured values cover every instant of both the runs and
//! the counterfactual; until then the workload waits for the provider to publish them, and after
//! [`DEFAULT_GIVE_UP`] (configurable) it gives up and says so.

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::workload::VerifiedFigures;
use crate::api::{CarbonWorkloadSpec, CarbonWorkloadStatus};
use crate::planner::Segment;

use super::emissions::energy_kwh;

/// How long after a workload finished carbonshift keeps waiting for the measured values.
pub const DEFAULT_GIVE_UP: TimeDelta = TimeDelta::hours(48);

/// Measured coverage below this fraction of an interval counts as not yet published (rounding
/// of millisecond arithmetic aside, coverage must be complete).
const COMPLETE: f64 = 1.0 - 1e-9;

/// What can be said about a finished workload's measured figures at `now`.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    /// Every instant is measured: the figures for `status.verified`.
    Verified(VerifiedFigures),
    /// Some of `[from, to)` is not measured yet: ask again, at the latest until `until`.
    Pending {
        /// Start of the first unmeasured time.
        from: DateTime<Utc>,
        /// End of it.
        to: DateTime<Utc>,
        /// When waiting stops.
        until: DateTime<Utc>,
    },
    /// The values were still missing when the wait ran out.
    GaveUp {
        /// Start of the first unmeasured time.
        from: DateTime<Utc>,
        /// End of it.
        to: DateTime<Utc>,
    },
    /// The workload has nothing to verify: it has not finished, never ran, or its power model is
    /// invalid.
    NotApplicable(&'static str),
}

/// The actual run intervals of a finished workload: its recorded runs (an interruptible one that
/// was paused), else from its start to its end.
pub fn run_intervals(status: &CarbonWorkloadStatus) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    if !status.runs.is_empty() {
        return status.runs.iter().map(|w| (w.start, w.end)).collect();
    }
    match (status.started_at.or(status.released_at), status.finished_at) {
        (Some(a), Some(b)) if b > a => vec![(a, b)],
        _ => Vec::new(),
    }
}

/// The interval the measured values must cover: from the earlier of the first run and the
/// submission to the later of the last run's end and the counterfactual's end.
pub fn needed(
    spec: &CarbonWorkloadSpec,
    status: &CarbonWorkloadStatus,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let runs = run_intervals(status);
    let first = runs.first()?.0;
    let last = runs.last()?.1;
    let counterfactual_end = spec.submitted_at.checked_add_signed(total(&runs))?;
    Some((first.min(spec.submitted_at), last.max(counterfactual_end)))
}

fn total(runs: &[(DateTime<Utc>, DateTime<Utc>)]) -> TimeDelta {
    runs.iter()
        .filter(|(a, b)| b > a)
        .fold(TimeDelta::zero(), |sum, (a, b)| sum + (*b - *a))
}

/// The time-weighted mean of `measured` over `[from, to)` if it covers all of it, else the first
/// gap.
fn mean(
    measured: &[Segment],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<f64, (DateTime<Utc>, DateTime<Utc>)> {
    let span = (to - from).num_milliseconds() as f64;
    let mut weighted = 0.0;
    let mut known = 0.0;
    let mut cursor = from;
    let mut gap = None;
    for s in measured {
        let (a, b) = (s.start.max(from), s.end.min(to));
        if b <= a {
            continue;
        }
        if a > cursor && gap.is_none() {
            gap = Some((cursor, a));
        }
        let len = (b - a).num_milliseconds() as f64;
        weighted += s.intensity * len;
        known += len;
        cursor = cursor.max(b);
    }
    if cursor < to && gap.is_none() {
        gap = Some((cursor, to));
    }
    match gap {
        Some(g) if span <= 0.0 || known / span < COMPLETE => Err(g),
        _ if known > 0.0 => Ok(weighted / known),
        _ => Err((from, to)),
    }
}

/// Verifies a finished workload against `measured` (the provider's measured pieces, in time
/// order, not overlapping; from `source`) at `now`, giving up `give_up` after it finished.
pub fn verify(
    spec: &CarbonWorkloadSpec,
    status: &CarbonWorkloadStatus,
    measured: &[Segment],
    source: &str,
    now: DateTime<Utc>,
    give_up: TimeDelta,
) -> Verification {
    let Some(finished) = status.finished_at else {
        return Verification::NotApplicable("it has not finished");
    };
    let runs = run_intervals(status);
    if runs.is_empty() {
        return Verification::NotApplicable("it has no recorded run");
    }
    let run_time = total(&runs);
    let Some(energy) = energy_kwh(spec, run_time) else {
        return Verification::NotApplicable("its power model is invalid");
    };
    let Some(counterfactual_end) = spec.submitted_at.checked_add_signed(run_time) else {
        return Verification::NotApplicable("its counterfactual run is out of range");
    };
    let pending = |(from, to)| {
        let until = finished.checked_add_signed(give_up).unwrap_or(finished);
        if now >= until {
            Verification::GaveUp { from, to }
        } else {
            Verification::Pending { from, to, until }
        }
    };
    // The mean over the runs, weighted by each run's length.
    let mut weighted = 0.0;
    for &(a, b) in &runs {
        match mean(measured, a, b) {
            Ok(m) => weighted += m * (b - a).num_milliseconds() as f64,
            Err(gap) => return pending(gap),
        }
    }
    let intensity = weighted / run_time.num_milliseconds().max(1) as f64;
    let counterfactual_intensity = match mean(measured, spec.submitted_at, counterfactual_end) {
        Ok(m) => m,
        Err(gap) => return pending(gap),
    };
    let emissions = energy * intensity;
    let counterfactual = energy * counterfactual_intensity;
    let forecast_error_percent = status
        .expected_intensity
        .filter(|_| intensity > 0.0)
        .map(|expected| (expected - intensity) / intensity * 100.0);
    Verification::Verified(VerifiedFigures {
        intensity,
        counterfactual_intensity,
        energy_kwh: energy,
        emissions_grams: emissions,
        counterfactual_grams: counterfactual,
        avoided_grams: counterfactual - emissions,
        forecast_error_percent,
        source: source.to_string(),
        verified_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::workload::{JobRef, TimeWindow};
    use crate::units::parse_timestamp;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap_or_default()
    }

    fn spec(submitted: DateTime<Utc>, watts: f64) -> CarbonWorkloadSpec {
        CarbonWorkloadSpec {
            job_ref: JobRef::new("batch/v1", "Job", "train", "u"),
            forecast: "uk".into(),
            candidates: Vec::new(),
            submitted_at: submitted,
            duration: "1h".into(),
            deadline: submitted + TimeDelta::days(1),
            latest_start: submitted + TimeDelta::hours(23),
            interruptible: false,
            dry_run: false,
            power_watts: watts,
            power_source: crate::api::workload::POWER_SOURCE_ANNOTATION.into(),
            power_estimate: None,
            pue: 1.0,
        }
    }

    fn hourly(from: DateTime<Utc>, values: &[f64]) -> Vec<Segment> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Segment {
                start: from + TimeDelta::hours(i as i64),
                end: from + TimeDelta::hours(i as i64 + 1),
                intensity: *v,
            })
            .collect()
    }

    fn finished(start: DateTime<Utc>, end: DateTime<Utc>) -> CarbonWorkloadStatus {
        CarbonWorkloadStatus {
            started_at: Some(start),
            finished_at: Some(end),
            expected_intensity: Some(110.0),
            ..CarbonWorkloadStatus::default()
        }
    }

    #[test]
    fn a_run_in_measured_hours_is_verified_in_exact_figures() {
        let t0 = t("2026-12-01T00:00Z");
        let measured = hourly(t0, &[300.0, 200.0, 100.0, 120.0]);
        // 2 kW from 02:00 to 03:30; submitted at 00:00, so the counterfactual is 00:00-01:30.
        let status = finished(t0 + TimeDelta::hours(2), t0 + TimeDelta::minutes(210));
        let v = verify(
            &spec(t0, 2000.0),
            &status,
            &measured,
            "test",
            t0 + TimeDelta::hours(5),
            DEFAULT_GIVE_UP,
        );
        let Verification::Verified(v) = v else {
            panic!("{v:?}")
        };
        // (100 × 60 + 120 × 30) / 90 = 106.67; (300 × 60 + 200 × 30) / 90 = 266.67.
        assert!((v.intensity - 320.0 / 3.0).abs() < 1e-9, "{v:?}");
        assert!((v.counterfactual_intensity - 800.0 / 3.0).abs() < 1e-9);
        assert!((v.energy_kwh - 3.0).abs() < 1e-12);
        assert!((v.emissions_grams - 320.0).abs() < 1e-9);
        assert!((v.counterfactual_grams - 800.0).abs() < 1e-9);
        assert!((v.avoided_grams - 480.0).abs() < 1e-9);
        // The plan expected 110 against a measured 106.67: +3.1 %.
        let error = v.forecast_error_percent.unwrap_or(f64::NAN);
        assert!((error - 3.125).abs() < 1e-9, "{error}");
    }

    #[test]
    fn paused_runs_are_verified_run_by_run() {
        let t0 = t("2026-12-01T00:00Z");
        let measured = hourly(t0, &[300.0, 10.0, 300.0, 30.0, 300.0]);
        let mut status = finished(t0 + TimeDelta::hours(1), t0 + TimeDelta::hours(4));
        status.runs = vec![
            TimeWindow {
                start: t0 + TimeDelta::hours(1),
                end: t0 + TimeDelta::hours(2),
            },
            TimeWindow {
                start: t0 + TimeDelta::hours(3),
                end: t0 + TimeDelta::hours(4),
            },
        ];
        let Verification::Verified(v) = verify(
            &spec(t0, 1000.0),
            &status,
            &measured,
            "test",
            t0 + TimeDelta::hours(5),
            DEFAULT_GIVE_UP,
        ) else {
            panic!("not verified")
        };
        assert!((v.intensity - 20.0).abs() < 1e-9);
        // Two hours from submission: 300 and 10.
        assert!((v.counterfactual_intensity - 155.0).abs() < 1e-9);
    }

    #[test]
    fn unpublished_time_waits_then_gives_up() {
        let t0 = t("2026-12-01T00:00Z");
        // Measured up to 02:00 only; the run is 02:00-03:00.
        let measured = hourly(t0, &[300.0, 200.0]);
        let status = finished(t0 + TimeDelta::hours(2), t0 + TimeDelta::hours(3));
        let s = spec(t0, 1000.0);
        let soon = verify(
            &s,
            &status,
            &measured,
            "test",
            t0 + TimeDelta::hours(4),
            DEFAULT_GIVE_UP,
        );
        assert_eq!(
            soon,
            Verification::Pending {
                from: t0 + TimeDelta::hours(2),
                to: t0 + TimeDelta::hours(3),
                until: t0 + TimeDelta::hours(51),
            }
        );
        let late = verify(
            &s,
            &status,
            &measured,
            "test",
            t0 + TimeDelta::hours(51),
            DEFAULT_GIVE_UP,
        );
        assert!(matches!(late, Verification::GaveUp { .. }), "{late:?}");
        // A hole in the middle counts as unpublished too.
        let mut holey = hourly(t0, &[300.0, 200.0, 100.0, 100.0]);
        holey.remove(2);
        let v = verify(
            &s,
            &status,
            &holey,
            "test",
            t0 + TimeDelta::hours(4),
            DEFAULT_GIVE_UP,
        );
        assert!(matches!(v, Verification::Pending { .. }), "{v:?}");
    }

    #[test]
    fn unfinished_or_unrun_workloads_are_not_verified() {
        let t0 = t("2026-12-01T00:00Z");
        let s = spec(t0, 1000.0);
        let measured = hourly(t0, &[100.0]);
        let status = CarbonWorkloadStatus::default();
        assert!(matches!(
            verify(&s, &status, &measured, "test", t0, DEFAULT_GIVE_UP),
            Verification::NotApplicable(_)
        ));
    }

    proptest! {
        /// Against a brute-force sum minute by minute over hourly values.
        #[test]
        fn figures_equal_a_minute_by_minute_sum(
            values in proptest::collection::vec(0.0f64..800.0, 12),
            submit in 0i64..120,
            delay in 0i64..300,
            minutes in 1i64..240,
        ) {
            let t0 = t("2026-12-01T00:00Z");
            let measured = hourly(t0, &values);
            let submitted = t0 + TimeDelta::minutes(submit);
            let start = submitted + TimeDelta::minutes(delay);
            let end = start + TimeDelta::minutes(minutes);
            let status = finished(start, end);
            let at = |m: i64| values[(m / 60) as usize];
            let brute = |from: i64, n: i64| (from..from + n).map(at).sum::<f64>() / n as f64;
            let v = verify(&spec(submitted, 1000.0), &status, &measured, "test", end, DEFAULT_GIVE_UP);
            let Verification::Verified(v) = v else { panic!("{v:?}") };
            let run = brute(submit + delay, minutes);
            let counterfactual = brute(submit, minutes);
            prop_assert!((v.intensity - run).abs() < 1e-6, "{} vs {run}", v.intensity);
            prop_assert!((v.counterfactual_intensity - counterfactual).abs() < 1e-6);
            let kwh = minutes as f64 / 60.0;
            prop_assert!((v.avoided_grams - kwh * (counterfactual - run)).abs() < 1e-6);
        }
    }
}
