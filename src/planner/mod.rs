//! Pure planning: given a carbon-intensity forecast, a job's constraints and `now`, decide when
//! the job runs. No kube, tokio or reqwest types; the operator, the CLI and the replay all call it.
//!
//! # Semantics
//!
//! - A [`Forecast`] is a list of points; each value holds until the next point, the last for one
//!   median step, and a step longer than twice the median is a gap whose rest is unknown.
//! - A non-interruptible job of duration `d` runs on `[s, s+d)`; its expected intensity is the
//!   time-weighted mean of the forecast over that interval. Allowed starts are
//!   `now <= s <= latest_start − margin` ([`Constraints::release_by`]). The planner returns the
//!   start with the minimum expected intensity over continuous time among windows fully covered
//!   by the forecast, ties broken by the earliest start. The optimum lies at a segment boundary,
//!   a boundary minus `d`, or an end of the allowed range, and those are exactly the candidates
//!   scanned ([`contiguous`]).
//! - When no allowed window is fully known, every candidate is scored with its unknown part valued
//!   at the mean of the known forecast (a neutral prior used only for scoring, never stored as
//!   data); the plan reports `coverage < 1` and callers re-plan as the horizon extends. When no
//!   part of any allowed window is known the result is [`NoPlan::NoCoverage`].
//! - An interruptible job needs `d` of run time inside `[now, finish_by − margin)`; without
//!   further constraints the optimum is the set of lowest-intensity pieces, merged into windows
//!   ([`interruptible`]). A minimum chunk and a resume overhead are handled by a documented
//!   heuristic.
//! - [`capacity`] plans many jobs against one forecast under a per-slot load cap that always yields
//!   to deadlines; [`fleet`] keeps that schedule for all held workloads of a forecast (incremental
//!   admission, jobs and GPU caps) and places a workload over candidate forecasts (node pools on
//!   different grids); [`energy`] turns a plan into kWh and gCO2.
//!
//! # Cost
//!
//! [`Forecast::new`] precomputes segments and prefix sums once (O(n)). A contiguous plan costs
//! O(log n + k) for the k segments inside the allowed range; an interruptible plan O(k log k).
//! Window integrals are compared in exact fixed point, so ties are real ties.

pub mod capacity;
pub mod constraints;
pub mod contiguous;
pub mod energy;
pub mod fleet;
pub mod forecast;
pub mod interruptible;

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use capacity::{
    BatchJob, BatchPlan, Capacity, CapacityError, CapacityLedger, CapacityPlan, MultiPlan,
    Reservation, plan_against, plan_batch, plan_batch_into, plan_with_capacity, plan_with_ledgers,
};
pub use constraints::{ConstraintError, Constraints};
pub use energy::{EnergyError, Estimate, Power};
pub use forecast::{
    Coverage, Forecast, ForecastError, MAX_INTENSITY, SINGLE_POINT_STEP, Segment,
    intensity_in_range,
};

use capacity::{Room, Unlimited};
use forecast::{delta_ms_ceil, dt, ms_ceil, ms_floor};

/// One forecast value: `intensity` (gCO2eq/kWh) holds from `start` until the next point's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// When the value starts to hold.
    pub start: DateTime<Utc>,
    /// Carbon intensity, gCO2eq/kWh.
    pub intensity: f64,
}

/// A run of the job: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// When the run starts.
    pub start: DateTime<Utc>,
    /// When it ends.
    pub end: DateTime<Utc>,
}

impl Window {
    /// `end − start`.
    pub fn duration(&self) -> TimeDelta {
        self.end - self.start
    }
}

/// Why the plan is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlanReason {
    /// The lowest-intensity window(s) fully covered by the forecast: an exact optimum.
    LowestIntensity,
    /// No allowed window is fully covered by the forecast; the unknown part was valued at the
    /// forecast's mean. Re-plan when the forecast reaches further.
    PartialForecast,
    /// An interruptible job with a minimum chunk or resume overhead, planned by the heuristic in
    /// [`interruptible`]: feasible, not necessarily optimal.
    Heuristic,
    /// The cheapest window had no room under the capacity cap; this is the cheapest with room.
    CapacityShifted,
    /// No window had room under the capacity cap: the job runs at its latest start anyway and
    /// exceeds the cap.
    CapacityOverflow,
}

impl PlanReason {
    /// A short description for people.
    pub fn describe(self) -> &'static str {
        match self {
            PlanReason::LowestIntensity => "lowest-intensity window",
            PlanReason::PartialForecast => {
                "forecast does not cover the whole job; unknown part valued at the forecast mean"
            }
            PlanReason::Heuristic => "minimum chunk / resume overhead heuristic",
            PlanReason::CapacityShifted => "cheapest window with room under the capacity cap",
            PlanReason::CapacityOverflow => "no room under the capacity cap: runs at latest start",
        }
    }
}

impl fmt::Display for PlanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// When a job runs and what it is expected to cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// When the job is released (the start of the first window).
    pub start: DateTime<Utc>,
    /// When the last window ends.
    pub end: DateTime<Utc>,
    /// The runs, in time order, neither overlapping nor touching; one for a non-interruptible job.
    pub windows: Vec<Window>,
    /// Time-weighted mean intensity over the windows, gCO2eq/kWh; with `coverage < 1` the unknown
    /// part is valued at the forecast's mean.
    pub expected_intensity: f64,
    /// Mean intensity of running the whole job now, valued the same way; `None` when nothing of
    /// `[now, now + duration)` is known.
    pub run_now_intensity: Option<f64>,
    /// The job's latest start (before the safety margin).
    pub latest_start: DateTime<Utc>,
    /// Known fraction of the planned run time, in `[0, 1]`.
    pub coverage: f64,
    /// Why this plan.
    pub reason: PlanReason,
}

impl Plan {
    /// `(run now − expected) / run now` in percent; `None` when running now is unknown or zero.
    pub fn savings_percent(&self) -> Option<f64> {
        self.run_now_intensity
            .filter(|&now| now > 0.0)
            .map(|now| (now - self.expected_intensity) / now * 100.0)
    }

    /// Total run time of the windows (the duration plus any resume overhead).
    pub fn run_time(&self) -> TimeDelta {
        self.windows
            .iter()
            .fold(TimeDelta::zero(), |sum, w| sum + w.duration())
    }
}

/// Why there is no plan. The caller falls back to the deadline rule (release at the latest start
/// minus the margin).
#[derive(Debug, Clone, PartialEq, Error, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum NoPlan {
    /// `now` is past the release time: the job must start immediately to meet its deadline.
    #[error(
        "too late to wait: to meet its deadline the job had to start by {release_by} (latest start {latest_start} minus the safety margin), and it is {now}"
    )]
    DeadlinePassed {
        /// The planning time.
        now: DateTime<Utc>,
        /// The latest start.
        latest_start: DateTime<Utc>,
        /// The latest start minus the margin.
        release_by: DateTime<Utc>,
    },
    /// The forecast covers no part of any allowed window.
    #[error(
        "the forecast has no data between {from} and {to}, where the job may run; it can only be released by the deadline rule"
    )]
    NoCoverage {
        /// Start of the time the job may run in.
        from: DateTime<Utc>,
        /// End of it.
        to: DateTime<Utc>,
    },
    /// The constraints are invalid.
    #[error("invalid job constraints: {error}")]
    InvalidConstraints {
        /// What is wrong.
        #[from]
        error: ConstraintError,
    },
}

/// Plans one job: the lowest-carbon window (or windows, if interruptible) that meets its
/// constraints. See the module documentation for the exact semantics.
pub fn plan(
    forecast: &Forecast,
    constraints: &Constraints,
    now: DateTime<Utc>,
) -> Result<Plan, NoPlan> {
    let range = Range::new(constraints, now)?;
    // Without a capacity cap every window has room, so `None` cannot occur; report it as no
    // coverage rather than panicking.
    plan_in(forecast, constraints, &range, &Unlimited)?.ok_or(NoPlan::NoCoverage {
        from: dt(range.lo),
        to: dt(range.end()),
    })
}

/// The allowed range of one planning call, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Range {
    /// Earliest start (`now`, rounded up).
    pub(crate) lo: i64,
    /// Latest start (`release_by`, rounded down).
    pub(crate) hi: i64,
    /// Duration.
    pub(crate) d: i64,
    pub(crate) latest_start: DateTime<Utc>,
}

impl Range {
    pub(crate) fn new(constraints: &Constraints, now: DateTime<Utc>) -> Result<Range, NoPlan> {
        let latest_start = constraints.latest_start()?;
        // latest_start() has checked that this is representable.
        let release_by = latest_start
            .checked_sub_signed(constraints.margin)
            .ok_or(ConstraintError::OutOfRange)?;
        let run_until = release_by
            .checked_add_signed(constraints.duration)
            .ok_or(ConstraintError::OutOfRange)?;
        let d = delta_ms_ceil(constraints.duration);
        let lo = ms_ceil(now);
        // From the end, so that a start at `hi` also ends by `finish_by − margin` when the
        // duration has a sub-millisecond part.
        let hi = ms_floor(run_until) - d;
        if hi < lo {
            return Err(NoPlan::DeadlinePassed {
                now,
                latest_start,
                release_by,
            });
        }
        Ok(Range {
            lo,
            hi,
            d,
            latest_start,
        })
    }

    /// End of the time the job may run in: `release_by + d`.
    pub(crate) fn end(&self) -> i64 {
        self.hi + self.d
    }
}

/// Plans within `range` using only time with room; `Ok(None)` when nothing has room.
pub(crate) fn plan_in<R: Room>(
    forecast: &Forecast,
    constraints: &Constraints,
    range: &Range,
    room: &R,
) -> Result<Option<Plan>, NoPlan> {
    let no_coverage = || NoPlan::NoCoverage {
        from: dt(range.lo),
        to: dt(range.end()),
    };
    if constraints.interruptible {
        let Some(choice) = interruptible::choose(forecast, constraints, range, room)? else {
            return Ok(None);
        };
        let reason = if choice.shifted {
            PlanReason::CapacityShifted
        } else if choice.partial {
            PlanReason::PartialForecast
        } else if choice.heuristic {
            PlanReason::Heuristic
        } else {
            PlanReason::LowestIntensity
        };
        Ok(Some(build_plan(forecast, range, &choice.windows, reason)))
    } else {
        match contiguous::best_start(forecast, range, room) {
            contiguous::Outcome::Found {
                start,
                partial,
                shifted,
            } => {
                let reason = if shifted {
                    PlanReason::CapacityShifted
                } else if partial {
                    PlanReason::PartialForecast
                } else {
                    PlanReason::LowestIntensity
                };
                Ok(Some(build_plan(
                    forecast,
                    range,
                    &[(start, start + range.d)],
                    reason,
                )))
            }
            contiguous::Outcome::NoRoom => Ok(None),
            contiguous::Outcome::NoCoverage => Err(no_coverage()),
        }
    }
}

/// Builds the plan for chosen windows (milliseconds, sorted, disjoint).
pub(crate) fn build_plan(
    forecast: &Forecast,
    range: &Range,
    windows: &[(i64, i64)],
    reason: PlanReason,
) -> Plan {
    let prior = forecast.prior();
    let mut sum = 0.0;
    let mut known = 0i64;
    let mut total = 0i64;
    for &(a, b) in windows {
        let (s, k) = forecast.tl.sum_f64(a, b);
        sum += s + (b - a - k) as f64 * prior;
        known += k;
        total += b - a;
    }
    let (expected, coverage) = if total > 0 {
        (sum / total as f64, known as f64 / total as f64)
    } else {
        (0.0, 0.0)
    };
    let first = windows.first().map_or(range.lo, |w| w.0);
    let last = windows.last().map_or(range.lo, |w| w.1);
    Plan {
        start: dt(first),
        end: dt(last),
        windows: windows
            .iter()
            .map(|&(a, b)| Window {
                start: dt(a),
                end: dt(b),
            })
            .collect(),
        expected_intensity: expected,
        run_now_intensity: forecast
            .blended_mean(range.lo, range.lo + range.d)
            .map(|(mean, _)| mean),
        latest_start: range.latest_start,
        coverage,
        reason,
    }
}

/// Test fixture for every module's tests: one point an hour from `start`, with these values.
#[cfg(test)]
pub(crate) fn hourly_points(start: DateTime<Utc>, values: &[f64]) -> Vec<Point> {
    (0..)
        .zip(values)
        .map(|(h, &intensity)| Point {
            start: start + TimeDelta::hours(h),
            intensity,
        })
        .collect()
}

#[cfg(test)]
mod tests;
