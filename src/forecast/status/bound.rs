//! Cutting a provider's answer to what a CarbonForecast stores: from the slot before now to at
//! most 7 days ahead and `MAX_POINTS` points, actuals of the last 7 days.

use chrono::{DateTime, Utc};

use super::{MAX_ACTUALS_AGE, MAX_AHEAD};
use crate::api::forecast::{IntensityPoint, MAX_POINTS};
use crate::forecast::{ForecastData, stamp};
use crate::planner::{Forecast, Point};
use crate::units::format_duration;

/// Why a provider answer leaves nothing to store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    /// The answer had no points.
    #[error("the provider returned no points")]
    Empty,
    /// The points break the forecast rules.
    #[error("{0}")]
    Invalid(String),
    /// The forecast ended before now.
    #[error("the forecast ends at {horizon}, before now ({now}); nothing is left to plan with")]
    Ended {
        /// Its end, RFC 3339.
        horizon: String,
        /// Now, RFC 3339.
        now: String,
    },
    /// The forecast starts too far ahead.
    #[error("the forecast starts at {first}, more than {max_ahead} after now ({now})")]
    TooFarAhead {
        /// Its first point, RFC 3339.
        first: String,
        /// The limit, as a duration.
        max_ahead: String,
        /// Now, RFC 3339.
        now: String,
    },
}

/// A provider answer cut to the stored bounds (see [`bound`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded {
    /// Forecast points, in time order, never empty.
    pub points: Vec<IntensityPoint>,
    /// Measured values of the last 7 days, in time order.
    pub actuals: Vec<IntensityPoint>,
    /// End of the last point.
    pub horizon_end: DateTime<Utc>,
    /// The region as the provider names it.
    pub region: String,
}

/// Cuts a validated provider answer to the stored bounds (see the module documentation). `Err`
/// says why nothing usable is left: the forecast ends before `now`, or starts more than 7 days
/// after it.
pub fn bound(data: ForecastData, now: DateTime<Utc>) -> Result<Bounded, BoundError> {
    let starts: Vec<DateTime<Utc>> = data.points.iter().map(|p| p.start).collect();
    let Some(&first_start) = starts.first() else {
        return Err(BoundError::Empty);
    };
    // The planner's semantics, so that the status, the store and every plan agree: each value
    // holds until the next point, the last for one median step, and longer steps are gaps.
    let invalid = |e: crate::planner::ForecastError| BoundError::Invalid(e.to_string());
    let full = Forecast::new(data.points.clone()).map_err(invalid)?;
    let step = full.median_step();
    let Some(horizon) = full.horizon_end() else {
        return Err(BoundError::Empty);
    };
    if horizon <= now {
        return Err(BoundError::Ended {
            horizon: stamp(horizon),
            now: stamp(now),
        });
    }
    let limit = now + MAX_AHEAD;
    if first_start >= limit {
        return Err(BoundError::TooFarAhead {
            first: stamp(first_start),
            max_ahead: format_duration(MAX_AHEAD),
            now: stamp(now),
        });
    }
    let end_of = |i: usize| starts.get(i + 1).copied().unwrap_or(horizon);
    let keep_after = now - step;
    // Slot ends increase with the index, so the kept slots are a contiguous range.
    let first = (0..starts.len())
        .find(|&i| end_of(i) > keep_after)
        .unwrap_or(starts.len());
    let end = starts
        .partition_point(|s| *s < limit)
        .min(first + MAX_POINTS);
    let kept = Forecast::new(data.points[first..end].to_vec()).map_err(invalid)?;
    let horizon_end = kept.horizon_end().unwrap_or(horizon);
    let points: Vec<IntensityPoint> = data.points[first..end]
        .iter()
        .copied()
        .map(IntensityPoint::from)
        .collect();
    let oldest = now - MAX_ACTUALS_AGE;
    let mut actuals: Vec<IntensityPoint> = data
        .actuals
        .iter()
        .filter(|p| p.start >= oldest)
        .copied()
        .map(IntensityPoint::from)
        .collect();
    if actuals.len() > MAX_POINTS {
        actuals.drain(..actuals.len() - MAX_POINTS);
    }
    Ok(Bounded {
        points,
        actuals,
        horizon_end,
        region: data.region,
    })
}

/// Builds the planner's view of stored points (validated when they were stored).
pub fn forecast_of(points: &[IntensityPoint]) -> Option<Forecast> {
    Forecast::new(points.iter().copied().map(Point::from).collect()).ok()
}
