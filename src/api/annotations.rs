//! The annotation contract on `batch/v1` Jobs: a pure parser from a Job (annotations, pod
//! template, parallelism) to typed scheduling constraints.
//!
//! CONTRACT (filled in by the annotation work): keys, `AnnotationDefaults`, `Deferral`, `Power`,
//! `Limit`, `AnnotationError` and `parse(job, defaults, now)`.

/// Opts a Job in: `"true"`; absent or `"false"` leaves the Job alone.
pub const DEFERRABLE: &str = "carbonshift.dev/deferrable";
/// The longest the Job may wait before it starts, for example `8h`.
pub const MAX_DELAY: &str = "carbonshift.dev/max-delay";
/// RFC 3339 time by which the Job must have finished.
pub const DEADLINE: &str = "carbonshift.dev/deadline";
/// Expected run time, for example `2h30m`.
pub const DURATION: &str = "carbonshift.dev/duration";
/// Name of the CarbonForecast to plan against.
pub const FORECAST: &str = "carbonshift.dev/forecast";
/// `"true"` when the Job checkpoints and may be paused between windows.
pub const INTERRUPTIBLE: &str = "carbonshift.dev/interruptible";
/// `"true"`: plan and report, never hold.
pub const DRY_RUN: &str = "carbonshift.dev/dry-run";
/// `"true"` on a held Job: release it now.
pub const RUN_NOW: &str = "carbonshift.dev/run-now";
/// Electrical power of the whole Job, for example `1400W` or `1.4kW`.
pub const POWER: &str = "carbonshift.dev/power";
/// Marker set by carbonshift at admission when it holds the Job.
pub const HELD: &str = "carbonshift.dev/held";
/// Marker set by carbonshift at admission: the admission time (RFC 3339).
pub const SUBMITTED_AT: &str = "carbonshift.dev/submitted-at";
/// Marker set by carbonshift with the release (RFC 3339).
pub const RELEASED_AT: &str = "carbonshift.dev/released-at";
