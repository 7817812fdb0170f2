//! The annotation contract on `batch/v1` Jobs: a pure parser from a Job (annotations, pod
//! template, parallelism) to typed scheduling constraints.
//!
//! The webhook calls [`parse`] at admission to decide whether to hold a Job; the controllers call
//! it again to (re)build the Job's `CarbonWorkload`. Both get the same answer for the same Job, the
//! same [`AnnotationDefaults`] and the same `now`: there is no I/O and no clock in here.
//!
//! Rules, in the order they are checked (the first problem found is returned):
//!
//! 1. [`DEFERRABLE`] must be `"true"` to opt in. Absent or `"false"`: the Job is not carbonshift's,
//!    [`parse`] returns `Ok(None)` and every other `carbonshift.dev/*` annotation is ignored.
//! 2. The markers carbonshift writes itself ([`SUBMITTED_AT`], [`HELD`], [`RELEASED_AT`]) must be
//!    well formed.
//! 3. [`DEADLINE`] and [`MAX_DELAY`] are mutually exclusive. A max delay of zero is an error: a Job
//!    that must not wait should leave out [`DEFERRABLE`] or set [`RUN_NOW`].
//! 4. [`DURATION`], [`FORECAST`], the booleans, and [`POWER`] (or, without it, the pod template
//!    the power estimate is made from).
//!
//! Delays are capped by [`AnnotationDefaults::max_allowed_delay`]. The cap is applied silently
//! ([`Deferral::deadline`] and [`Deferral::latest_start`] already honour it) and reported by
//! [`Deferral::is_capped`], so that the webhook can warn instead of refusing the Job. A deadline in
//! the past, or too close to finish in time, is not a parse error either: the Job is valid, just
//! not worth holding ([`Deferral::is_feasible`]).

use crate::units::from_jiff;
use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use thiserror::Error;

use crate::units::{self, DURATION_FORM, DurationError, POWER_FORM, PowerError};

/// Prefix of every carbonshift annotation.
pub const PREFIX: &str = "carbonshift.dev/";
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

/// Every annotation carbonshift reads or writes on a Job.
pub const ALL: [&str; 12] = [
    DEFERRABLE,
    MAX_DELAY,
    DEADLINE,
    DURATION,
    FORECAST,
    INTERRUPTIBLE,
    DRY_RUN,
    RUN_NOW,
    POWER,
    HELD,
    SUBMITTED_AT,
    RELEASED_AT,
];

/// The longest run time [`DURATION`] may ask for. Longer values are almost certainly a typo
/// (`200d` for `200h`), and would push the deadline past what a timestamp can hold.
pub const MAX_DURATION: TimeDelta = TimeDelta::days(366);

/// The form of the times in [`DEADLINE`] and the markers, for error messages.
pub const RFC3339_FORM: &str =
    "an RFC 3339 time with an offset, such as 2026-05-04T18:00:00Z or 2026-05-04T20:00:00+02:00";

/// The form of a boolean annotation, for error messages.
pub const BOOLEAN_FORM: &str = r#""true" or "false""#;

/// The form of a CarbonForecast name, for error messages.
pub const FORECAST_NAME_FORM: &str = "the name of a CarbonForecast: a DNS-1123 subdomain of at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, such as uk-national";

/// The form of a CPU quantity, for error messages.
pub const CPU_FORM: &str = "a Kubernetes CPU quantity such as 500m, 2 or 1.5";

/// The form of a GPU count, for error messages.
pub const GPU_FORM: &str = "a whole number of devices such as 1 or 8";

/// Operator configuration the parser falls back on when a Job leaves something out.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotationDefaults {
    /// CarbonForecast used when [`FORECAST`] is absent. Default `default`.
    pub forecast: String,
    /// Delay allowed when neither [`DEADLINE`] nor [`MAX_DELAY`] is given. Default 24h.
    pub max_delay: TimeDelta,
    /// Run time assumed when [`DURATION`] is absent. Default 1h.
    pub duration: TimeDelta,
    /// A cap on the delay any Job may get, whatever its annotations ask for. Default 7d.
    pub max_allowed_delay: TimeDelta,
    /// Extended resources counted as GPUs in the power estimate. Default `nvidia.com/gpu` and
    /// `amd.com/gpu`.
    pub gpu_resources: Vec<String>,
    /// Power drawn by one GPU, watts. Default 700 (an H100 SXM at full load).
    pub watts_per_gpu: f64,
    /// Power drawn by one CPU core, watts. Default 10.
    pub watts_per_core: f64,
    /// Data-centre power usage effectiveness applied on top of the Job's power. Default 1.2.
    pub pue: f64,
}

impl Default for AnnotationDefaults {
    fn default() -> Self {
        Self {
            forecast: "default".to_string(),
            max_delay: TimeDelta::hours(24),
            duration: TimeDelta::hours(1),
            max_allowed_delay: TimeDelta::days(7),
            gpu_resources: vec!["nvidia.com/gpu".to_string(), "amd.com/gpu".to_string()],
            watts_per_gpu: 700.0,
            watts_per_core: 10.0,
            pue: 1.2,
        }
    }
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The Job's annotation.
    Annotation,
    /// [`AnnotationDefaults`].
    Default,
}

/// How long a Job may wait, as its annotations put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`MAX_DELAY`]: start at most this long after submission.
    MaxDelay(TimeDelta),
    /// [`DEADLINE`]: finish by this time.
    Deadline(DateTime<Utc>),
    /// Neither annotation: [`AnnotationDefaults::max_delay`].
    DefaultMaxDelay(TimeDelta),
}

/// Electrical power of the whole Job (all pods), before PUE.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Power {
    /// Watts.
    pub watts: f64,
    /// Where the figure came from.
    pub source: PowerSource,
}

/// Where a [`Power`] figure came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PowerSource {
    /// The [`POWER`] annotation.
    Annotation,
    /// Estimated from the pod template:
    /// `(gpus_per_pod × watts_per_gpu + cores_per_pod × watts_per_core) × parallelism`.
    Estimated {
        /// GPUs one pod asks for (the resources in [`AnnotationDefaults::gpu_resources`]).
        gpus_per_pod: u64,
        /// CPU cores one pod asks for.
        cores_per_pod: f64,
        /// Pods running at once: `spec.parallelism` (default 1), at most `spec.completions`.
        parallelism: u32,
    },
}

/// A deferrable Job's scheduling constraints, parsed from its annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferral {
    /// When the Job was submitted: [`SUBMITTED_AT`], else `metadata.creationTimestamp`, else the
    /// `now` given to [`parse`].
    pub submitted_at: DateTime<Utc>,
    /// Expected run time.
    pub duration: TimeDelta,
    /// Whether [`Deferral::duration`] came from [`DURATION`] or the default.
    pub duration_source: Source,
    /// How long the Job may wait, before the cap.
    pub limit: Limit,
    /// The cap on the delay ([`AnnotationDefaults::max_allowed_delay`]).
    pub max_allowed_delay: TimeDelta,
    /// CarbonForecast to plan against.
    pub forecast: String,
    /// Whether [`Deferral::forecast`] came from [`FORECAST`] or the default.
    pub forecast_source: Source,
    /// The Job checkpoints and may be paused between low-carbon windows.
    pub interruptible: bool,
    /// Plan and report only; never hold.
    pub dry_run: bool,
    /// Release the Job now, whatever the plan says.
    pub run_now: bool,
    /// Electrical power of the whole Job, before PUE.
    pub power: Power,
    /// Power usage effectiveness applied on top of [`Deferral::power`].
    pub pue: f64,
    /// carbonshift held the Job at admission ([`HELD`] is `"true"`).
    pub held: bool,
    /// When carbonshift released the Job ([`RELEASED_AT`]).
    pub released_at: Option<DateTime<Utc>>,
    /// `carbonshift.dev/*` annotations carbonshift does not know (typos such as
    /// `carbonshift.dev/maxdelay`), sorted; the webhook warns about them.
    pub unknown_annotations: Vec<String>,
}

impl Deferral {
    /// The delay the Job's annotations ask for: the max delay, or for a deadline the time from
    /// submission to the deadline minus the duration (negative when the deadline is too close).
    pub fn requested_delay(&self) -> TimeDelta {
        match self.limit {
            Limit::MaxDelay(delay) | Limit::DefaultMaxDelay(delay) => delay,
            Limit::Deadline(deadline) => deadline
                .signed_duration_since(self.submitted_at)
                .checked_sub(&self.duration)
                .unwrap_or(TimeDelta::MIN),
        }
    }

    /// The delay the Job gets: [`Deferral::requested_delay`], at most the cap.
    pub fn allowed_delay(&self) -> TimeDelta {
        self.requested_delay().min(self.max_allowed_delay)
    }

    /// The latest start that still meets the deadline: `min(submission + max delay, deadline −
    /// duration)`, with the delay capped at [`Deferral::max_allowed_delay`]. Before the submission
    /// time when the deadline is too close to finish in time.
    pub fn latest_start(&self) -> DateTime<Utc> {
        add(self.submitted_at, self.allowed_delay())
    }

    /// When the Job must have finished: [`DEADLINE`] or submission + max delay + duration, after
    /// applying the cap.
    pub fn deadline(&self) -> DateTime<Utc> {
        add(self.latest_start(), self.duration)
    }

    /// Whether the Job's annotations asked for more delay than the cap allows. The default max
    /// delay never counts: only what the Job itself asked for.
    pub fn is_capped(&self) -> bool {
        match self.limit {
            Limit::MaxDelay(_) | Limit::Deadline(_) => {
                self.requested_delay() > self.max_allowed_delay
            }
            Limit::DefaultMaxDelay(_) => false,
        }
    }

    /// Whether the Job can still finish by its deadline if it starts at `now`.
    pub fn is_feasible(&self, now: DateTime<Utc>) -> bool {
        self.latest_start() >= now
    }

    /// Power drawn at the wall, including PUE, in watts.
    pub fn facility_watts(&self) -> f64 {
        self.power.watts * self.pue
    }

    /// Energy of one run of [`Deferral::duration`] at the wall (including PUE), in kWh.
    pub fn energy_kwh(&self) -> f64 {
        let hours = self.duration.num_milliseconds() as f64 / 3_600_000.0;
        self.facility_watts() * hours / 1_000.0
    }
}

/// `t + d`, saturating at the ends of chrono's range instead of panicking.
fn add(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < TimeDelta::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// Why a Kubernetes resource quantity in the pod template could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// Nothing was given.
    #[error("empty quantity")]
    Empty,
    /// The number part is missing or malformed.
    #[error("not a number")]
    NotANumber,
    /// A suffix other than the Kubernetes ones (`n u m k M G T P E Ki Mi Gi Ti Pi Ei`, `e<exp>`).
    #[error("unknown suffix {0:?}")]
    UnknownSuffix(String),
    /// A negative amount.
    #[error("negative quantity")]
    Negative,
    /// A fraction or an absurd value where a device count is expected.
    #[error("not a whole number")]
    NotWhole,
}

/// Reads a Kubernetes resource quantity (`500m`, `2`, `1.5`, `2000m`, `1Ki`, `1e3`) as a plain
/// number: `"500m"` is 0.5. Negative amounts are errors (no resource can be negative).
pub fn parse_quantity(text: &str) -> Result<f64, QuantityError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    let number_len = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map_or(text.len(), |(i, _)| i);
    let (number, suffix) = text.split_at(number_len);
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return Err(QuantityError::NotANumber);
    }
    let value: f64 = number.parse().map_err(|_| QuantityError::NotANumber)?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        other => match other
            .strip_prefix(['e', 'E'])
            .and_then(|exp| exp.parse::<i32>().ok())
        {
            Some(exp) => 10f64.powi(exp),
            None => return Err(QuantityError::UnknownSuffix(other.to_string())),
        },
    };
    let amount = value * factor;
    if !amount.is_finite() {
        return Err(QuantityError::NotANumber);
    }
    if amount < 0.0 {
        return Err(QuantityError::Negative);
    }
    Ok(amount)
}

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

fn zero_hint(key: &str) -> &'static str {
    if key == MAX_DELAY {
        "; to start the Job without waiting, leave out carbonshift.dev/deferrable or set carbonshift.dev/run-now: \"true\""
    } else {
        ""
    }
}

/// Whether the Job opts in: [`DEFERRABLE`] is exactly `"true"`. A Job with any other value
/// except `"false"` is still worth a [`parse`], which reports the bad value.
pub fn is_deferrable(job: &Job) -> bool {
    annotation(job, DEFERRABLE) == Some("true")
}

/// Reads a Job's carbonshift annotations and pod template into its scheduling constraints.
///
/// `Ok(None)`: the Job is not deferrable ([`DEFERRABLE`] absent or `"false"`), and its other
/// carbonshift annotations are not looked at. `now` is only used as the submission time when the
/// Job has neither [`SUBMITTED_AT`] nor a creation time (the webhook sees Jobs before the API
/// server stamps them).
pub fn parse(
    job: &Job,
    defaults: &AnnotationDefaults,
    now: DateTime<Utc>,
) -> Result<Option<Deferral>, AnnotationError> {
    match boolean(job, DEFERRABLE)? {
        Some(true) => {}
        Some(false) | None => return Ok(None),
    }

    let submitted_at = match marker_time(job, SUBMITTED_AT)? {
        Some(t) => t,
        None => job
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| from_jiff(t.0))
            .unwrap_or(now),
    };
    let held = boolean(job, HELD)?.unwrap_or(false);
    let released_at = marker_time(job, RELEASED_AT)?;

    let limit = match (annotation(job, DEADLINE), annotation(job, MAX_DELAY)) {
        (Some(deadline), Some(max_delay)) => {
            return Err(AnnotationError::DeadlineAndMaxDelay {
                deadline: deadline.to_string(),
                max_delay: max_delay.to_string(),
            });
        }
        (Some(deadline), None) => {
            Limit::Deadline(
                rfc3339(deadline).ok_or_else(|| AnnotationError::BadDeadline {
                    value: deadline.to_string(),
                })?,
            )
        }
        (None, Some(max_delay)) => Limit::MaxDelay(duration(MAX_DELAY, max_delay)?),
        (None, None) => Limit::DefaultMaxDelay(defaults.max_delay),
    };

    let (duration, duration_source) = match annotation(job, DURATION) {
        Some(text) => {
            let d = duration(DURATION, text)?;
            if d > MAX_DURATION {
                return Err(AnnotationError::DurationTooLong {
                    key: DURATION,
                    value: text.to_string(),
                });
            }
            (d, Source::Annotation)
        }
        None => (defaults.duration, Source::Default),
    };

    let (forecast, forecast_source) = match annotation(job, FORECAST) {
        Some(name) if is_dns1123_subdomain(name) => (name.to_string(), Source::Annotation),
        Some(name) => {
            return Err(AnnotationError::BadForecastName {
                value: name.to_string(),
            });
        }
        None => (defaults.forecast.clone(), Source::Default),
    };

    let interruptible = boolean(job, INTERRUPTIBLE)?.unwrap_or(false);
    let dry_run = boolean(job, DRY_RUN)?.unwrap_or(false);
    let run_now = boolean(job, RUN_NOW)?.unwrap_or(false);

    let power = match annotation(job, POWER) {
        Some(text) => Power {
            watts: units::parse_power(text).map_err(|reason| AnnotationError::BadPower {
                value: text.to_string(),
                reason,
            })?,
            source: PowerSource::Annotation,
        },
        None => estimate_power(job, defaults)?,
    };

    let unknown_annotations = job
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(key, _)| key)
        .filter(|key| key.starts_with(PREFIX) && !ALL.contains(&key.as_str()))
        .cloned()
        .collect();

    Ok(Some(Deferral {
        submitted_at,
        duration,
        duration_source,
        limit,
        max_allowed_delay: defaults.max_allowed_delay,
        forecast,
        forecast_source,
        interruptible,
        dry_run,
        run_now,
        power,
        pue: defaults.pue,
        held,
        released_at,
        unknown_annotations,
    }))
}

/// The power estimate from the pod template: `(GPUs per pod × watts per GPU + CPU cores per pod ×
/// watts per core) × parallelism`.
///
/// Per pod: the sum over the app containers and the sidecars (init containers with
/// `restartPolicy: Always`, which run beside them); plain init containers finish before the work
/// starts and are not counted. Each container counts its requests, falling back to its limits
/// (for extended resources such as GPUs Kubernetes accepts limits alone). Pod-level
/// `resources.requests.cpu` (or `limits.cpu`), when set, replaces the container sum for CPU.
/// Parallelism is `spec.parallelism` (default 1), at most `spec.completions`, since Kubernetes
/// never runs more pods at once than completions remain.
pub fn estimate_power(job: &Job, defaults: &AnnotationDefaults) -> Result<Power, AnnotationError> {
    let spec = job.spec.as_ref();
    let pod = spec.and_then(|s| s.template.spec.as_ref());
    let containers = pod
        .map(|p| {
            let sidecars = p
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"))
                .map(|c| ("initContainers", c));
            p.containers
                .iter()
                .map(|c| ("containers", c))
                .chain(sidecars)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();

    let mut gpus_per_pod: u64 = 0;
    let mut container_cores = 0.0;
    for (list, container) in &containers {
        let base = format!("spec.template.spec.{list}[{}].resources", container.name);
        for resource in &defaults.gpu_resources {
            if let Some((field, value)) = request_or_limit(container.resources.as_ref(), resource) {
                let count = gpu_count(value).map_err(|reason| AnnotationError::BadGpuCount {
                    field: format!("{base}.{field}[{resource}]"),
                    value: value.0.clone(),
                    reason,
                })?;
                gpus_per_pod = gpus_per_pod.saturating_add(count);
            }
        }
        container_cores += cpu(container.resources.as_ref(), &base)?.unwrap_or(0.0);
    }
    let pod_cores = cpu(
        pod.and_then(|p| p.resources.as_ref()),
        "spec.template.spec.resources",
    )?;
    let cores_per_pod = pod_cores.unwrap_or(container_cores);

    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(1);
    let parallelism = match spec.and_then(|s| s.completions) {
        Some(completions) => parallelism.min(completions),
        None => parallelism,
    };
    // The API server refuses negative values; a hand-made object must not make the estimate negative.
    let parallelism = u32::try_from(parallelism).unwrap_or(0);

    let per_pod =
        gpus_per_pod as f64 * defaults.watts_per_gpu + cores_per_pod * defaults.watts_per_core;
    Ok(Power {
        watts: per_pod * f64::from(parallelism),
        source: PowerSource::Estimated {
            gpus_per_pod,
            cores_per_pod,
            parallelism,
        },
    })
}

/// The CPU request (else limit) in `resources`, in cores; `base` is the path of `resources`,
/// for the error.
fn cpu(
    resources: Option<&ResourceRequirements>,
    base: &str,
) -> Result<Option<f64>, AnnotationError> {
    request_or_limit(resources, "cpu")
        .map(|(field, value)| {
            parse_quantity(&value.0).map_err(|reason| AnnotationError::BadCpuQuantity {
                field: format!("{base}.{field}[cpu]"),
                value: value.0.clone(),
                reason,
            })
        })
        .transpose()
}

fn gpu_count(value: &Quantity) -> Result<u64, QuantityError> {
    let count = parse_quantity(&value.0)?;
    // 2^53: beyond it an f64 no longer holds every integer.
    if count.fract() != 0.0 || count > 9_007_199_254_740_992.0 {
        return Err(QuantityError::NotWhole);
    }
    Ok(count as u64)
}

/// The request for `resource`, else its limit, with the name of the map it came from.
fn request_or_limit<'a>(
    resources: Option<&'a ResourceRequirements>,
    resource: &str,
) -> Option<(&'static str, &'a Quantity)> {
    let resources = resources?;
    let get = |map: &'a Option<BTreeMap<String, Quantity>>| map.as_ref()?.get(resource);
    get(&resources.requests)
        .map(|q| ("requests", q))
        .or_else(|| get(&resources.limits).map(|q| ("limits", q)))
}

fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn boolean(job: &Job, key: &'static str) -> Result<Option<bool>, AnnotationError> {
    match annotation(job, key) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(AnnotationError::NotABoolean {
            key,
            value: other.to_string(),
        }),
    }
}

fn duration(key: &'static str, text: &str) -> Result<TimeDelta, AnnotationError> {
    units::parse_duration(text).map_err(|reason| match reason {
        DurationError::Zero => AnnotationError::ZeroDuration {
            key,
            value: text.to_string(),
        },
        reason => AnnotationError::BadDuration {
            key,
            value: text.to_string(),
            reason,
        },
    })
}

fn marker_time(job: &Job, key: &'static str) -> Result<Option<DateTime<Utc>>, AnnotationError> {
    annotation(job, key)
        .map(|text| {
            rfc3339(text).ok_or_else(|| AnnotationError::BadMarkerTime {
                key,
                value: text.to_string(),
            })
        })
        .transpose()
}

/// Strict RFC 3339 with an explicit offset: a deadline without one would silently be read in some
/// time zone the user did not mean.
fn rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.to_utc())
}

/// Whether `name` is a valid name for a cluster-scoped object: a DNS-1123 subdomain.
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && bytes
                            .iter()
                            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || *b == b'-')
                }
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests;
