//! The annotation contract's errors: one variant per problem, each message naming the annotation
//! or field, the value given and the expected form (the webhook denies with exactly this text).

use thiserror::Error;

use super::*;
use crate::units::{DURATION_FORM, DurationError, POWER_FORM, PowerError};

/// Why a deferrable Job's annotations (or the pod template the power estimate reads) cannot be
/// used. Each message names the annotation or field, the value given and the expected form.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnnotationError {
    /// A boolean annotation is neither `"true"` nor `"false"`.
    #[error("{key}: {value:?} is not a boolean; expected {BOOLEAN_FORM}")]
    NotABoolean {
        /// The annotation.
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// A duration annotation cannot be read.
    #[error("{key}: {value:?} is not a duration: {reason}; expected {DURATION_FORM}")]
    BadDuration {
        /// The annotation.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: DurationError,
    },
    /// A duration annotation is zero.
    #[error("{key}: {value:?} is zero; expected {DURATION_FORM}{}", zero_hint(.key))]
    ZeroDuration {
        /// The annotation.
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// [`DURATION`] is longer than [`MAX_DURATION`].
    #[error(
        "{key}: {value:?} is longer than {}; expected {DURATION_FORM}, at most {}",
        units::format_duration(MAX_DURATION),
        units::format_duration(MAX_DURATION)
    )]
    DurationTooLong {
        /// The annotation.
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// [`DEADLINE`] is not an RFC 3339 time.
    #[error("{DEADLINE}: {value:?} is not an RFC 3339 time; expected {RFC3339_FORM}")]
    BadDeadline {
        /// The value given.
        value: String,
    },
    /// Both [`DEADLINE`] and [`MAX_DELAY`] are set.
    #[error(
        "{DEADLINE} ({deadline:?}) and {MAX_DELAY} ({max_delay:?}) are both set; expected at most one of them"
    )]
    DeadlineAndMaxDelay {
        /// The deadline given.
        deadline: String,
        /// The max delay given.
        max_delay: String,
    },
    /// [`POWER`] cannot be read: no unit, unknown unit, not a number, or not positive.
    #[error("{POWER}: {value:?} is not a power: {reason}; expected {POWER_FORM}")]
    BadPower {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: PowerError,
    },
    /// [`FORECAST`] is not a valid object name.
    #[error("{FORECAST}: {value:?} is not a CarbonForecast name; expected {FORECAST_NAME_FORM}")]
    BadForecastName {
        /// The value given.
        value: String,
    },
    /// Both [`FORECAST`] and [`FORECASTS`] are set.
    #[error(
        "{FORECAST} ({forecast:?}) and {FORECASTS} ({forecasts:?}) are both set; expected at most one of them: {FORECAST} for one forecast, {FORECASTS} for a list of candidates"
    )]
    ForecastAndForecasts {
        /// The forecast given.
        forecast: String,
        /// The candidates given.
        forecasts: String,
    },
    /// [`FORECASTS`] cannot be read.
    #[error("{FORECASTS}: {value:?}: item {item} {problem}; expected {FORECASTS_FORM}")]
    BadForecasts {
        /// The value given.
        value: String,
        /// Which item (1-based) is wrong.
        item: usize,
        /// What is wrong with it.
        problem: CandidateProblem,
    },
    /// A time marker carbonshift writes ([`SUBMITTED_AT`], [`RELEASED_AT`]) is not an RFC 3339
    /// time: someone edited it.
    #[error(
        "{key}: {value:?} is not an RFC 3339 time; expected {RFC3339_FORM} (this marker is written by carbonshift; remove it or restore the value carbonshift wrote)"
    )]
    BadMarkerTime {
        /// The annotation.
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// A CPU request or limit in the pod template cannot be read (the API server normally
    /// refuses these; only the power estimate reads them).
    #[error(
        "{field}: {value:?} is not a CPU quantity: {reason}; expected {CPU_FORM} (or set {POWER} to skip the estimate)"
    )]
    BadCpuQuantity {
        /// Path of the field, for example `spec.template.spec.containers[train].resources.requests[cpu]`.
        field: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: QuantityError,
    },
    /// The object's pod templates cannot be read (the workload adapter says why).
    #[error("{detail} (or set {POWER} to skip the power estimate)")]
    BadObject {
        /// What the adapter found.
        detail: String,
    },
    /// A GPU request or limit in the pod template is not a whole number of devices.
    #[error(
        "{field}: {value:?} is not a GPU count: {reason}; expected {GPU_FORM} (or set {POWER} to skip the estimate)"
    )]
    BadGpuCount {
        /// Path of the field, for example
        /// `spec.template.spec.containers[train].resources.limits[nvidia.com/gpu]`.
        field: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: QuantityError,
    },
}

/// What is wrong with one item of [`FORECASTS`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CandidateProblem {
    /// Nothing between two commas (or at an end).
    #[error("is empty")]
    Empty,
    /// Not a CarbonForecast name.
    #[error("{0:?} is not a CarbonForecast name")]
    BadName(String),
    /// Named before.
    #[error("{0:?} is named twice")]
    Duplicate(String),
    /// More than [`MAX_CANDIDATES`] names.
    #[error("is one more than the {MAX_CANDIDATES} allowed")]
    TooMany,
}

fn zero_hint(key: &str) -> &'static str {
    if key == MAX_DELAY {
        "; to start the Job without waiting, leave out carbonshift.dev/deferrable or set carbonshift.dev/run-now: \"true\""
    } else {
        ""
    }
}
