//! Emissions of what actually happened: the mean intensity over a Job's real run intervals, from
//! the provider's measured values where they cover them and its forecast for the rest.

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::CarbonWorkloadSpec;
use crate::planner::{Forecast, Plan, energy};

/// Mean intensity over some intervals and how much of them it is based on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Realised {
    /// Time-weighted mean over the known part of the intervals, gCO2eq/kWh.
    pub mean: f64,
    /// Fraction of the intervals' time with a value (measured or forecast), in `(0, 1]`.
    pub coverage: f64,
}

/// The time-weighted mean intensity over `intervals` (`[start, end)` each): `actuals` wherever
/// they have a value, `forecast` for the time they do not cover; `None` when neither knows any of
/// it (or the intervals are empty).
pub fn realised(
    intervals: &[(DateTime<Utc>, DateTime<Utc>)],
    forecast: &Forecast,
    actuals: Option<&Forecast>,
) -> Option<Realised> {
    let mut weighted = 0.0;
    let mut known_ms = 0.0;
    let mut total_ms = 0.0;
    for &(from, to) in intervals {
        if to <= from {
            continue;
        }
        total_ms += ms(to - from);
        // The measured values where they exist; the gaps between them go to the forecast.
        let mut gaps = Vec::new();
        let mut cursor = from;
        if let Some(actuals) = actuals {
            for segment in actuals.clip(from, to).segments() {
                if segment.start > cursor {
                    gaps.push((cursor, segment.start));
                }
                let len = ms(segment.end - segment.start);
                weighted += segment.intensity * len;
                known_ms += len;
                cursor = cursor.max(segment.end);
            }
        }
        if cursor < to {
            gaps.push((cursor, to));
        }
        for (a, b) in gaps {
            if let Some(c) = forecast.mean_over(a, b) {
                let len = ms(b - a) * c.known_fraction;
                weighted += c.mean * len;
                known_ms += len;
            }
        }
    }
    (known_ms > 0.0 && total_ms > 0.0).then(|| Realised {
        mean: weighted / known_ms,
        coverage: (known_ms / total_ms).min(1.0),
    })
}

fn ms(d: TimeDelta) -> f64 {
    d.num_milliseconds() as f64
}

/// Facility energy of the workload's Job for `run_time`, kWh (0 for a Job drawing no power);
/// `None` when the spec's power or PUE is not a valid model.
pub fn energy_kwh(spec: &CarbonWorkloadSpec, run_time: TimeDelta) -> Option<f64> {
    if spec.power_watts == 0.0 && spec.pue.is_finite() && spec.pue >= 1.0 {
        return Some(0.0);
    }
    energy::Power::new(spec.power_watts, spec.pue)
        .ok()
        .map(|p| p.energy_kwh(run_time))
}

/// The estimate of `plan` for `duration` of work, with the workload's power model.
pub fn plan_estimate(
    spec: &CarbonWorkloadSpec,
    plan: &Plan,
    duration: TimeDelta,
) -> Option<energy::Estimate> {
    let energy = energy_kwh(spec, plan.run_time())?;
    let run_now_energy = energy_kwh(spec, duration)?;
    let emissions = energy * plan.expected_intensity;
    let run_now = plan.run_now_intensity.map(|i| run_now_energy * i);
    Some(energy::Estimate {
        energy_kwh: energy,
        emissions_grams: emissions,
        run_now_emissions_grams: run_now,
        avoided_grams: run_now.map(|now| now - emissions),
    })
}

/// What a finished Job is estimated to have emitted, and what running it at submission would
/// have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Facility energy of the actual run, kWh.
    pub energy_kwh: f64,
    /// Mean intensity over the actual run, gCO2eq/kWh.
    pub intensity: f64,
    /// Emissions of the actual run, gCO2eq.
    pub emissions_grams: f64,
    /// Emissions had the Job started at submission and run as long, gCO2eq; `None` when the
    /// intensity then is unknown.
    pub run_now_emissions_grams: Option<f64>,
}

/// The outcome of a run over `runs` (the actual intervals) of a Job submitted at `submitted_at`:
/// the counterfactual runs the same total time from submission. `None` when the intensity over
/// the run is unknown or the power model is invalid.
pub fn outcome(
    spec: &CarbonWorkloadSpec,
    runs: &[(DateTime<Utc>, DateTime<Utc>)],
    forecast: &Forecast,
    actuals: Option<&Forecast>,
) -> Option<Outcome> {
    let run_time = runs
        .iter()
        .filter(|(a, b)| b > a)
        .fold(TimeDelta::zero(), |sum, (a, b)| sum + (*b - *a));
    let actual = realised(runs, forecast, actuals)?;
    let energy = energy_kwh(spec, run_time)?;
    let counterfactual = spec
        .submitted_at
        .checked_add_signed(run_time)
        .and_then(|end| realised(&[(spec.submitted_at, end)], forecast, actuals));
    Some(Outcome {
        energy_kwh: energy,
        intensity: actual.mean,
        emissions_grams: energy * actual.mean,
        run_now_emissions_grams: counterfactual.map(|c| energy * c.mean),
    })
}
