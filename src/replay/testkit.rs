//! Builders shared by the replay's unit tests: hourly traces from 2023-01-01 and jobs placed on
//! them in hours.

use chrono::TimeDelta;

use crate::planner::{Forecast, hourly_points};
use crate::units::parse_timestamp;

use super::scenario::Job;
use super::series::{Series, at};

/// A minute in milliseconds.
pub const M: i64 = 60_000;
/// An hour in milliseconds.
pub const H: i64 = 60 * M;

/// Hourly `values` from 2023-01-01 00:00: the forecast, its series, and the start in
/// milliseconds.
pub fn hourly(values: &[f64]) -> (Forecast, Series, i64) {
    let t0 = parse_timestamp("2023-01-01T00:00Z").unwrap_or_default();
    let f = Forecast::new(hourly_points(t0, values)).unwrap_or_else(|e| panic!("{e}"));
    let s = Series::from_forecast(&f);
    (f, s, t0.timestamp_millis())
}

/// A job submitted `submit_h` hours after `t0`, running `duration_m` minutes, due `deadline_h`
/// hours after `t0`.
pub fn job(t0: i64, submit_h: i64, duration_m: i64, deadline_h: i64, interruptible: bool) -> Job {
    Job {
        id: 0,
        submitted_at: at(t0 + submit_h * H),
        duration: TimeDelta::minutes(duration_m),
        deadline: at(t0 + deadline_h * H),
        interruptible,
        run_now: at(t0 + submit_h * H),
        run_now_alt: None,
        baseline_only: false,
    }
}
