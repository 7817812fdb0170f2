//! The whole annotation contract, for every kind carbonshift holds: the `carbonshift.dev/*` keys,
//! the markers carbonshift writes ([`marker`]), who else may own a workload's suspend switch
//! ([`managed_elsewhere`]: Kueue, `spec.managedBy`), and a pure parser from a workload's
//! [`Subject`] (annotations, creation time, pod sets) to typed scheduling constraints.
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

mod error;
mod power;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

pub use error::{AnnotationError, CandidateProblem};
pub use power::{PodSet, QuantityError, estimate_power, parse_quantity};

use crate::units::{self, DurationError};

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
/// Comma-separated names of candidate CarbonForecasts (node pools on different grids), for
/// example `uk-south,fr`: the workload is planned over every candidate × window and placed on the
/// cleanest feasible one. Not together with [`FORECAST`].
pub const FORECASTS: &str = "carbonshift.dev/forecasts";
/// The most candidates [`FORECASTS`] may name.
pub const MAX_CANDIDATES: usize = 16;
/// `"true"` when the Job checkpoints and may be paused between windows.
pub const INTERRUPTIBLE: &str = "carbonshift.dev/interruptible";
/// `"true"`: plan and report, never hold.
pub const DRY_RUN: &str = "carbonshift.dev/dry-run";
/// `"true"` on a held Job: release it now.
pub const RUN_NOW: &str = "carbonshift.dev/run-now";
/// Electrical power of the whole Job, for example `1400W` or `1.4kW`.
pub const POWER: &str = "carbonshift.dev/power";
/// The waste guard's group of a workload (default: the name of the CronJob that owns it).
pub const GROUP: &str = "carbonshift.dev/group";
/// Marker set by carbonshift at admission when it holds the Job.
pub const HELD: &str = "carbonshift.dev/held";
/// Marker set by carbonshift at admission: the admission time (RFC 3339).
pub const SUBMITTED_AT: &str = "carbonshift.dev/submitted-at";
/// Marker set by carbonshift with the release (RFC 3339).
pub const RELEASED_AT: &str = "carbonshift.dev/released-at";
/// Marker set by carbonshift in the same patch as [`RELEASED_AT`]: why it released the Job
/// (`Released`, `DeadlineRelease`, `NoForecast`, …), so that the release is recorded with its
/// reason even when the status is written later, after a restart or by another replica.
pub const RELEASE_REASON: &str = "carbonshift.dev/release-reason";
/// Marker set by carbonshift at admission, beside [`HELD`], on a job it holds with Kueue's
/// admission gate ([`ADMISSION_GATE`]) instead of its suspend switch: [`HELD_BY_KUEUE_GATE`]. It
/// stays after the release, so the job still reads as released from the gate.
pub const HELD_BY: &str = "carbonshift.dev/held-by";
/// The value of [`HELD_BY`].
pub const HELD_BY_KUEUE_GATE: &str = "kueue-admission-gate";

/// Kueue's label (or annotation) naming the LocalQueue of a workload it manages.
pub const KUEUE_QUEUE_NAME: &str = "kueue.x-k8s.io/queue-name";

/// Kueue's admission gate (KEP-6915; alpha in Kueue v0.17, on by default since v0.19): a
/// comma-separated list of gate names, such as `example.com/mygate,example.com/mygate2`. While it
/// is present Kueue does not admit the job. It can be set only when the job is created, and
/// afterwards only shortened (names removed) or removed.
pub const ADMISSION_GATED_BY: &str = "kueue.x-k8s.io/admission-gated-by";

/// carbonshift's entry in [`ADMISSION_GATED_BY`]: the webhook adds it at creation to a deferrable
/// job that Kueue queues, and the operator removes it (only it) at the planned start.
pub const ADMISSION_GATE: &str = "carbonshift.dev/low-carbon-window";

/// The gate names in an [`ADMISSION_GATED_BY`] value, trimmed, empty entries left out.
pub fn gates(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|g| !g.is_empty())
}

/// Whether an [`ADMISSION_GATED_BY`] value holds carbonshift's entry [`ADMISSION_GATE`].
pub fn has_gate(value: &str) -> bool {
    gates(value).any(|g| g == ADMISSION_GATE)
}

/// The [`ADMISSION_GATED_BY`] value with carbonshift's entry added after the others (`existing`
/// is the value the job was created with, if any); unchanged when the entry is there already.
pub fn with_gate(existing: Option<&str>) -> String {
    let mut names: Vec<&str> = existing.map(|v| gates(v).collect()).unwrap_or_default();
    if !names.contains(&ADMISSION_GATE) {
        names.push(ADMISSION_GATE);
    }
    names.join(",")
}

/// The [`ADMISSION_GATED_BY`] value without carbonshift's entry, every other entry kept in its
/// order; `None` when no entry is left (the annotation is then removed).
pub fn without_gate(value: &str) -> Option<String> {
    let rest: Vec<&str> = gates(value).filter(|g| *g != ADMISSION_GATE).collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

/// The `spec.managedBy` value of Jobs the built-in Job controller manages (the default).
pub const JOB_CONTROLLER: &str = "kubernetes.io/job-controller";

/// Another controller that owns a workload's suspend switch, so carbonshift must never touch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedElsewhere {
    /// Kueue admits the workload (label or annotation [`KUEUE_QUEUE_NAME`]) and carbonshift does
    /// not hold it with Kueue's admission gate ([`ADMISSION_GATE`]): the operator leaves Kueue's
    /// jobs alone (`--kueue-admission-gate=false`), or the job was created without the gate.
    Kueue,
    /// `spec.managedBy` names a controller other than the kind's own.
    ManagedBy(String),
}

/// Who owns the suspend switch: Kueue when [`KUEUE_QUEUE_NAME`] is a label or an annotation, else
/// the controller named by `managed_by` when it is not `own_controller` (the kind's built-in one).
pub fn managed_elsewhere(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
    managed_by: Option<&str>,
    own_controller: &str,
) -> Option<ManagedElsewhere> {
    let queued = |map: Option<&BTreeMap<String, String>>| {
        map.is_some_and(|m| m.contains_key(KUEUE_QUEUE_NAME))
    };
    if queued(labels) || queued(annotations) {
        return Some(ManagedElsewhere::Kueue);
    }
    match managed_by {
        Some(manager) if manager != own_controller => {
            Some(ManagedElsewhere::ManagedBy(manager.to_string()))
        }
        _ => None,
    }
}

/// The text of a time marker ([`SUBMITTED_AT`], [`RELEASED_AT`]): RFC 3339 in whole seconds, UTC.
/// Every marker carbonshift writes is formatted here.
pub fn marker(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the parser reads of a workload, whatever its kind: its annotations, its creation time and
/// its pod sets (for the power estimate). The workload adapter (`crate::workload`) builds it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `metadata.annotations`.
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// `metadata.creationTimestamp`, if the object has one yet.
    pub created: Option<DateTime<Utc>>,
    /// Pod templates × pods of each running at once.
    pub pod_sets: &'a [PodSet],
}

/// Every annotation carbonshift reads or writes on a Job.
pub const ALL: [&str; 16] = [
    DEFERRABLE,
    MAX_DELAY,
    DEADLINE,
    DURATION,
    FORECAST,
    FORECASTS,
    INTERRUPTIBLE,
    DRY_RUN,
    RUN_NOW,
    POWER,
    GROUP,
    HELD,
    SUBMITTED_AT,
    RELEASED_AT,
    RELEASE_REASON,
    HELD_BY,
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

/// The form of [`FORECASTS`], for error messages.
pub const FORECASTS_FORM: &str = "a comma-separated list of 1 to 16 distinct CarbonForecast names (DNS-1123 subdomains), such as uk-south,fr";

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
    /// Whether [`Deferral::forecast`] came from [`FORECAST`] (or [`FORECASTS`]) or the default.
    pub forecast_source: Source,
    /// The candidate forecasts of [`FORECASTS`], in the annotation's order, without duplicates;
    /// [`Deferral::forecast`] is the first. Empty when the Job names one forecast (or none).
    pub candidates: Vec<String>,
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

    /// Every forecast the Job may be planned against: [`Deferral::candidates`], or just
    /// [`Deferral::forecast`] when there are none.
    pub fn forecasts(&self) -> Vec<&str> {
        if self.candidates.is_empty() {
            vec![self.forecast.as_str()]
        } else {
            self.candidates.iter().map(String::as_str).collect()
        }
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

/// Whether the Job opts in: [`DEFERRABLE`] is exactly `"true"`. A Job with any other value
/// except `"false"` is still worth a [`parse`], which reports the bad value.
pub fn is_deferrable(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(DEFERRABLE))
        .is_some_and(|v| v == "true")
}

/// Reads a Job's carbonshift annotations and pod template into its scheduling constraints.
///
/// `Ok(None)`: the Job is not deferrable ([`DEFERRABLE`] absent or `"false"`), and its other
/// carbonshift annotations are not looked at. `now` is only used as the submission time when the
/// Job has neither [`SUBMITTED_AT`] nor a creation time (the webhook sees Jobs before the API
/// server stamps them).
pub fn parse(
    job: &Subject<'_>,
    defaults: &AnnotationDefaults,
    now: DateTime<Utc>,
) -> Result<Option<Deferral>, AnnotationError> {
    match boolean(job, DEFERRABLE)? {
        Some(true) => {}
        Some(false) | None => return Ok(None),
    }

    let submitted_at = match marker_time(job, SUBMITTED_AT)? {
        Some(t) => t,
        None => job.created.unwrap_or(now),
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

    let (forecast, forecast_source, candidates) =
        match (annotation(job, FORECAST), annotation(job, FORECASTS)) {
            (Some(one), Some(list)) => {
                return Err(AnnotationError::ForecastAndForecasts {
                    forecast: one.to_string(),
                    forecasts: list.to_string(),
                });
            }
            (Some(name), None) if is_dns1123_subdomain(name) => {
                (name.to_string(), Source::Annotation, Vec::new())
            }
            (Some(name), None) => {
                return Err(AnnotationError::BadForecastName {
                    value: name.to_string(),
                });
            }
            (None, Some(list)) => {
                let candidates = parse_candidates(list)?;
                let first = candidates.first().cloned().unwrap_or_default();
                (first, Source::Annotation, candidates)
            }
            (None, None) => (defaults.forecast.clone(), Source::Default, Vec::new()),
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
        None => estimate_power(job.pod_sets, defaults)?,
    };

    let unknown_annotations = job
        .annotations
        .into_iter()
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
        candidates,
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

/// The names in a [`FORECASTS`] value: trimmed, each a valid name, none empty or repeated, 1 to
/// [`MAX_CANDIDATES`] of them.
pub fn parse_candidates(value: &str) -> Result<Vec<String>, AnnotationError> {
    let mut names: Vec<String> = Vec::new();
    for (index, item) in value.split(',').map(str::trim).enumerate() {
        let error = |problem: CandidateProblem| AnnotationError::BadForecasts {
            value: value.to_string(),
            item: index + 1,
            problem,
        };
        if item.is_empty() {
            return Err(error(CandidateProblem::Empty));
        }
        if !is_dns1123_subdomain(item) {
            return Err(error(CandidateProblem::BadName(item.to_string())));
        }
        if names.iter().any(|n| n == item) {
            return Err(error(CandidateProblem::Duplicate(item.to_string())));
        }
        if names.len() == MAX_CANDIDATES {
            return Err(error(CandidateProblem::TooMany));
        }
        names.push(item.to_string());
    }
    Ok(names)
}

fn annotation<'a>(job: &Subject<'a>, key: &str) -> Option<&'a str> {
    job.annotations?.get(key).map(String::as_str)
}

fn boolean(job: &Subject<'_>, key: &'static str) -> Result<Option<bool>, AnnotationError> {
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

fn marker_time(
    job: &Subject<'_>,
    key: &'static str,
) -> Result<Option<DateTime<Utc>>, AnnotationError> {
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
