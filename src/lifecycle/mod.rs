//! The workload state machine: a pure function from (Job, CarbonWorkload, forecast, `now`) to a
//! [`Decision`] — the workload's desired spec and status, at most one action on the Job, the
//! Events to emit and when to look again. No client, no clock, no I/O: the controller shell in
//! `controller::workloads` reads, calls [`decide`], and writes.
//!
//! ```text
//! Pending ──► Deferred ──► Released ──► Running ──► Succeeded | Failed
//!    │           │  ▲                      │
//!    │           │  └──── Paused ◄─────────┘   (interruptible Jobs between windows)
//!    └──► NotDeferred (dry run · infeasible · webhook bypassed · managed elsewhere) ──► Running ──► …
//! ```
//!
//! # Who holds the Job
//!
//! All durable state lives on the Job and in the workload status. The Job is *held* by carbonshift
//! when it is suspended, not yet released (no `carbonshift.dev/released-at`) and either carries the
//! `carbonshift.dev/held` marker or is deferrable with valid annotations (a Job created suspended
//! without the webhook is taken as held). A Job carrying `released-at` was released by carbonshift
//! and is never released again; suspended again *with* `released-at` it was suspended by its owner
//! and left alone. carbonshift's own pause removes `released-at` in the same guarded patch, so a
//! paused Job looks held again and resumes through the ordinary release.
//!
//! # Rules for a held Job, in order of precedence (docs/architecture.md)
//!
//! 1. `run-now` (and, likewise, `dry-run` or `deferrable` removed or set to `"false"` after
//!    admission) → release now, reason `ManualRelease`.
//! 2. Deadline rule: `now >= latest_start − margin` → release now, reason `DeadlineRelease`. For an
//!    interruptible Job that already ran partly, the latest start is `finish_by − remaining`.
//! 3. An existing plan whose start has come (overdue after a restart included) → release now,
//!    reason `Released` (`Resumed` for a paused Job). With a fresh forecast, the plan is made, or
//!    remade when the forecast version, the constraints or the remaining run time changed
//!    (`Replanned` when the windows move); a start in the future keeps the Job `Deferred`.
//! 4. No plan from before and the named CarbonForecast exists but has produced no data yet (its
//!    first refresh is on its way: [`ForecastInput::Awaiting`]) → stay `Pending`, reason
//!    `AwaitingForecast`, until data arrives or [`Config::forecast_wait`] has passed since the
//!    later of the Job's submission and the forecast's appearance. "No forecast" is a fact, never
//!    a guess from a cache that has not caught up.
//! 5. No fresh forecast and no plan from before, and the forecast is known to be unusable (it does
//!    not exist, its provider failed before producing data, its data is stale, or the first-data
//!    wait ran out) → release now, reason `NoForecast` (or, with [`NoForecastPolicy::Hold`], stay
//!    `Pending` until the deadline rule). A plan made before the forecast went stale is kept.
//! 6. The forecast covers no part of the allowed range → stay `Pending` until the deadline rule,
//!    re-planning whenever the forecast changes.
//!
//! Every Decision for a held Job either releases it or has `requeue_at <= latest_start − margin`.
//!
//! Annotation edits re-plan only while the Job is held; an invalid edit keeps the last valid
//! constraints (the workload spec) and raises an `InvalidAnnotations` Warning once per distinct
//! error. After release the spec is the record of what was planned and no longer follows the
//! annotations.
//!
//! # Interruptible Jobs
//!
//! Released at the first window's start. At the end of the window it was released in, a Job that
//! is still running and has a later window is paused (guarded patch: `spec.suspend: true` and the
//! `released-at` marker removed), unless the remaining run time could then no longer finish by the
//! deadline (`now >= finish_by − remaining − margin`). The finished runs are kept in
//! `status.runs`; the remaining run time is re-planned (a kept plan when the forecast is stale);
//! the deadline rule applies to the remaining work. Only a planned release (reason `Released` or
//! `Resumed`) is ever paused: a deadline, manual or fail-open release runs to the end.
//!
//! # Completion
//!
//! On the transition to `Succeeded` or `Failed` the realised emissions are estimated over the
//! actual run intervals (the forecast's measured values where they cover them, else the forecast),
//! with the counterfactual of running as long from submission; [`Decision::completion`] carries
//! the figures for the metrics, exactly once (a workload already terminal is never counted again).

pub mod emissions;
pub mod view;

#[cfg(test)]
mod tests;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::api::annotations::Deferral;
use crate::api::condition::{self, Condition};
use crate::api::workload::{JobRef, TimeWindow};
use crate::api::{CarbonWorkload, CarbonWorkloadSpec, CarbonWorkloadStatus, Phase};
use crate::planner::{self, ConstraintError, Constraints, Forecast, NoPlan, Plan, PlanReason};
use crate::units::{self, DurationError, format_duration};

pub use crate::api::annotations::ManagedElsewhere;
pub use view::{Finished, WorkloadView};

/// What to do with a held Job that has no plan when no fresh forecast is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NoForecastPolicy {
    /// Release it at once, reason `NoForecast`: no work is ever blocked by a missing data source.
    #[default]
    Release,
    /// Keep it held until fresh data arrives or the deadline rule releases it.
    Hold,
}

/// The operator settings the state machine needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Safety margin: a held Job is released at the latest at `latest_start − margin`.
    pub margin: TimeDelta,
    /// What to do without a fresh forecast.
    pub no_forecast: NoForecastPolicy,
    /// How long a held Job without a plan waits for the first data of a CarbonForecast that
    /// exists but has not produced any yet, before that counts as no forecast.
    pub forecast_wait: TimeDelta,
}

/// The default of [`Config::forecast_wait`].
pub const DEFAULT_FORECAST_WAIT: TimeDelta = TimeDelta::minutes(2);

/// How soon a Job awaiting its forecast's first data is looked at again, at the latest: the
/// forecast store announces new data, but an announcement can come before the Job's workload is
/// in the controller's cache, and then only this look finds it.
pub const AWAIT_RECHECK: TimeDelta = TimeDelta::seconds(5);

impl Default for Config {
    fn default() -> Self {
        Self {
            margin: TimeDelta::minutes(5),
            no_forecast: NoForecastPolicy::Release,
            forecast_wait: DEFAULT_FORECAST_WAIT,
        }
    }
}

/// What is known about the CarbonForecast a workload is planned against.
#[derive(Debug, Clone, Copy)]
pub enum ForecastInput<'a> {
    /// It has data (fresh or stale).
    Data(ForecastView<'a>),
    /// It exists but has produced no data yet and reported no failure: its first refresh is on
    /// its way. `since` is when the wait for it began (its creation, or the operator's start when
    /// that is later).
    Awaiting {
        /// When the wait began.
        since: DateTime<Utc>,
    },
    /// It exists, has no data, and its provider or spec failed (`Ready=False`).
    Failed {
        /// The `Ready` condition's reason, for example `RefreshFailed`.
        reason: &'a str,
    },
    /// No CarbonForecast of that name exists (confirmed with the API, not guessed from a cache),
    /// or this operator does not serve it.
    Missing,
}

impl<'a> ForecastInput<'a> {
    /// The data, when there is any.
    pub fn data(&self) -> Option<ForecastView<'a>> {
        match self {
            ForecastInput::Data(view) => Some(*view),
            _ => None,
        }
    }
}

/// The forecast a workload is planned against, as the in-memory store holds it.
#[derive(Debug, Clone, Copy)]
pub struct ForecastView<'a> {
    /// The forecast points.
    pub forecast: &'a Forecast,
    /// Measured values for past time, when the provider publishes them.
    pub actuals: Option<&'a Forecast>,
    /// Version of the data (the CarbonForecast's `resourceVersion`); a plan is remade when it
    /// changes.
    pub version: &'a str,
    /// Whether the data is fresh enough for new plans.
    pub fresh: bool,
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The Job.
    pub job: &'a WorkloadView,
    /// Its CarbonWorkload, if one exists.
    pub workload: Option<&'a CarbonWorkload>,
    /// What is known of the forecast named by the workload's constraints ([`effective_spec`]).
    pub forecast: ForecastInput<'a>,
    /// Operator settings.
    pub config: &'a Config,
}

/// Why carbonshift released a Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReleaseReason {
    /// The planned start came.
    Released,
    /// The next planned window of a paused interruptible Job came.
    Resumed,
    /// The deadline rule: the latest start minus the margin came.
    DeadlineRelease,
    /// A person asked: `run-now`, `carbonshift release`, or `deferrable`/`dry-run` edited.
    ManualRelease,
    /// No fresh forecast and no plan (fail open).
    NoForecast,
    /// A held Job whose annotations never could be read (fail open).
    InvalidAnnotations,
}

impl ReleaseReason {
    /// The PascalCase reason used in Events, status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Released => "Released",
            ReleaseReason::Resumed => "Resumed",
            ReleaseReason::DeadlineRelease => "DeadlineRelease",
            ReleaseReason::ManualRelease => "ManualRelease",
            ReleaseReason::NoForecast => "NoForecast",
            ReleaseReason::InvalidAnnotations => "InvalidAnnotations",
        }
    }

    /// Every reason, for tests and dashboards.
    pub const ALL: [ReleaseReason; 6] = [
        ReleaseReason::Released,
        ReleaseReason::Resumed,
        ReleaseReason::DeadlineRelease,
        ReleaseReason::ManualRelease,
        ReleaseReason::NoForecast,
        ReleaseReason::InvalidAnnotations,
    ];

    fn from_str(text: &str) -> Option<ReleaseReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// The one write to the Job a Decision may ask for. Both are guarded patches (see
/// `controller::release`): if the Job changed since it was read, nothing is written and the next
/// reconcile decides again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAction {
    /// `spec.suspend: false` and `carbonshift.dev/released-at: now`.
    Release {
        /// Why.
        reason: ReleaseReason,
        /// When the rule wanted the release (planned start, or latest start minus margin for
        /// the deadline rule; `now` for immediate releases): lateness = now − planned.
        planned: DateTime<Utc>,
    },
    /// `spec.suspend: true` and the `released-at` marker removed: an interruptible Job between
    /// windows.
    Pause,
}

/// Severity of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Expected behaviour.
    Normal,
    /// Something a person may want to look at.
    Warning,
}

/// An Event to emit on the Job and on its workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Severity.
    pub type_: EventType,
    /// PascalCase reason from a fixed set, for example `Deferred`.
    pub reason: &'static str,
    /// PascalCase action: `Plan`, `Release`, `Pause`, `Track` or `Validate`.
    pub action: &'static str,
    /// Human-readable explanation.
    pub note: String,
}

/// Estimated emissions of a Job that just finished, for the metrics (counted once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completion {
    /// Emissions of the actual run, gCO2eq.
    pub emitted_grams: f64,
    /// Emissions avoided against running at submission, gCO2eq; `None` for Jobs carbonshift never
    /// held (nothing was shifted) or when the counterfactual is unknown.
    pub avoided_grams: Option<f64>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// The workload spec to apply (create or update); `None`: the Job has no workload (it is not
    /// carbonshift's, or its annotations never could be read).
    pub spec: Option<CarbonWorkloadSpec>,
    /// The workload status to write after the Job action succeeded (only written when it
    /// differs from the current one).
    pub status: Option<CarbonWorkloadStatus>,
    /// At most one write to the Job.
    pub job_action: Option<JobAction>,
    /// Events to emit, after the writes succeeded.
    pub events: Vec<Event>,
    /// When to decide again even if nothing changes.
    pub requeue_at: Option<DateTime<Utc>>,
    /// Set on the transition to `Succeeded`/`Failed`: the figures to add to the metrics.
    pub completion: Option<Completion>,
    /// The existing workload belongs to an older Job of the same name (another UID): delete it,
    /// then decide again.
    pub stale_workload: bool,
}

impl Decision {
    /// Stamps the workload's `metadata.generation` (known once the spec is applied) on the status
    /// and its conditions.
    pub fn stamp_generation(&mut self, generation: Option<i64>) {
        if let Some(status) = &mut self.status {
            status.observed_generation = generation;
            for c in &mut status.conditions {
                c.observed_generation = generation;
            }
        }
    }
}

/// Status reasons besides [`ReleaseReason`] and the plan reasons.
pub mod reason {
    /// A dry run: planned and reported, never held.
    pub const DRY_RUN: &str = "DryRun";
    /// Admitted with `run-now`: never held.
    pub const RUN_NOW: &str = "RunNow";
    /// Its deadline left no time to wait.
    pub const INFEASIBLE: &str = "Infeasible";
    /// Deferrable, but created running without the webhook: it cannot be held any more.
    pub const WEBHOOK_BYPASSED: &str = "WebhookBypassed";
    /// Kueue manages the Job.
    pub const KUEUE: &str = "Kueue";
    /// Another controller manages the Job (`spec.managedBy`).
    pub const MANAGED_BY: &str = "ManagedBy";
    /// The annotations cannot be read.
    pub const INVALID_ANNOTATIONS: &str = "InvalidAnnotations";
    /// The Job no longer opts in.
    pub const NOT_DEFERRABLE: &str = "NotDeferrable";
    /// No fresh forecast and no plan.
    pub const NO_FORECAST: &str = "NoForecast";
    /// The forecast exists but its first data has not arrived yet.
    pub const AWAITING_FORECAST: &str = "AwaitingForecast";
    /// The forecast covers none of the allowed time.
    pub const NO_COVERAGE: &str = "NoCoverage";
    /// Paused between windows.
    pub const PAUSED: &str = "Paused";
    /// Unsuspended by someone other than carbonshift.
    pub const RELEASED_BY_OWNER: &str = "ReleasedByOwner";
    /// Suspended again by its owner after carbonshift released it.
    pub const SUSPENDED_BY_OWNER: &str = "SuspendedByOwner";

    /// Every reason above and every release reason.
    pub const ALL: [&str; 18] = [
        DRY_RUN,
        RUN_NOW,
        INFEASIBLE,
        WEBHOOK_BYPASSED,
        KUEUE,
        MANAGED_BY,
        INVALID_ANNOTATIONS,
        NOT_DEFERRABLE,
        NO_FORECAST,
        AWAITING_FORECAST,
        NO_COVERAGE,
        PAUSED,
        RELEASED_BY_OWNER,
        SUSPENDED_BY_OWNER,
        "Released",
        "Resumed",
        "DeadlineRelease",
        "ManualRelease",
    ];

    /// The static form of a known reason read back from a status.
    pub fn known(text: &str) -> Option<&'static str> {
        ALL.into_iter().find(|r| *r == text)
    }
}

/// The condition types of the workload status.
pub mod condition_type {
    /// A plan exists.
    pub const PLANNED: &str = "Planned";
    /// carbonshift holds the Job suspended.
    pub const HELD: &str = "Held";
    /// The Job's annotations can be read.
    pub const ANNOTATIONS_VALID: &str = "AnnotationsValid";
}

/// Why a workload spec cannot be turned into planner constraints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `spec.duration` is not a duration.
    #[error("spec.duration {value:?} is not a duration: {reason}")]
    Duration {
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: DurationError,
    },
    /// The planner refuses the constraints.
    #[error("invalid constraints: {0}")]
    Constraints(#[from] ConstraintError),
}

/// Planner constraints from parsed annotations: the latest start and deadline as
/// [`Deferral`] computes them (the delay cap included), with the operator's margin.
pub fn constraints(deferral: &Deferral, margin: TimeDelta) -> Result<Constraints, ConstraintError> {
    let mut c = Constraints::new(deferral.submitted_at, deferral.duration)
        .with_deadline(deferral.deadline())
        .with_margin(margin);
    c.interruptible = deferral.interruptible;
    c.validate()?;
    Ok(c)
}

/// Planner constraints from a workload spec (the last valid constraints after an invalid edit).
pub fn spec_constraints(
    spec: &CarbonWorkloadSpec,
    margin: TimeDelta,
) -> Result<Constraints, SpecError> {
    let duration = spec_duration(spec)?;
    let mut c = Constraints::new(spec.submitted_at, duration)
        .with_deadline(spec.deadline)
        .with_margin(margin);
    c.interruptible = spec.interruptible;
    c.validate()?;
    Ok(c)
}

fn spec_duration(spec: &CarbonWorkloadSpec) -> Result<TimeDelta, SpecError> {
    units::parse_duration(&spec.duration).map_err(|reason| SpecError::Duration {
        value: spec.duration.clone(),
        reason,
    })
}

/// Whether the Job's annotations are the source of its constraints: while carbonshift holds it,
/// and before a workload exists.
fn follows_annotations(state: State, workload: Option<&CarbonWorkload>) -> bool {
    state == State::Held || workload.is_none()
}

/// The constraints in force: the Job's valid annotations while they count (held, or no workload
/// yet), else the workload's spec. The shell uses it to pick the forecast to pass in.
pub fn effective_spec(
    job: &WorkloadView,
    workload: Option<&CarbonWorkload>,
) -> Option<CarbonWorkloadSpec> {
    let workload = workload.filter(|w| w.spec.job_ref.uid == job.uid);
    let old = workload.map(|w| w.spec.clone());
    let new = match &job.deferral {
        Ok(Some(d)) => Some(CarbonWorkloadSpec::new(
            JobRef {
                name: job.name.clone(),
                uid: job.uid.clone(),
            },
            d,
        )),
        _ => None,
    };
    if follows_annotations(classify(job), workload) {
        new.or(old)
    } else {
        old.or(new)
    }
}

/// Counts for the gauges, from the workloads in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    /// Workloads per phase, in the order of [`Phase::ALL`] (no status counts as `Pending`).
    pub by_phase: [i64; 8],
    /// Workloads still held although their latest start has passed (must stay 0).
    pub held_past_latest_start: i64,
}

impl Tally {
    /// The count for `phase`.
    pub fn count(&self, phase: Phase) -> i64 {
        Phase::ALL
            .iter()
            .position(|&p| p == phase)
            .map_or(0, |i| self.by_phase[i])
    }
}

/// Counts workloads by phase and the held ones past their latest start (the remaining-work latest
/// start in status for a paused Job, else the spec's).
pub fn tally<'a>(
    workloads: impl IntoIterator<Item = &'a CarbonWorkload>,
    now: DateTime<Utc>,
) -> Tally {
    let mut tally = Tally::default();
    for w in workloads {
        let status = w.status.as_ref();
        let phase = status.and_then(|s| s.phase).unwrap_or(Phase::Pending);
        if let Some(i) = Phase::ALL.iter().position(|&p| p == phase) {
            tally.by_phase[i] += 1;
        }
        let latest = status
            .and_then(|s| s.latest_start)
            .unwrap_or(w.spec.latest_start);
        if is_held_phase(phase) && now > latest {
            tally.held_past_latest_start += 1;
        }
    }
    tally
}

fn is_held_phase(phase: Phase) -> bool {
    matches!(phase, Phase::Pending | Phase::Deferred | Phase::Paused)
}

/// Where the Job is, from the Job alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Finished(Finished),
    /// Suspended by carbonshift (marker), or suspended and deferrable (taken as held).
    Held,
    /// Unsuspended with the `released-at` marker.
    Released,
    /// Unsuspended with the held marker but without `released-at`: someone else released it.
    ReleasedByOwner,
    /// Suspended again after carbonshift released it.
    SuspendedByOwner,
    /// Never held by carbonshift.
    NotHeld,
}

fn classify(job: &WorkloadView) -> State {
    if let Some(f) = job.finished {
        return State::Finished(f);
    }
    let deferrable = matches!(&job.deferral, Ok(Some(d)) if !d.dry_run);
    if job.suspend {
        if job.released_marker.is_some() {
            State::SuspendedByOwner
        } else if job.held_marker || (deferrable && job.managed_elsewhere.is_none()) {
            State::Held
        } else {
            State::NotHeld
        }
    } else if job.released_marker.is_some() {
        State::Released
    } else if job.held_marker {
        State::ReleasedByOwner
    } else {
        State::NotHeld
    }
}

/// Decides what to do about one Job. Pure: the same input and `now` give the same Decision.
pub fn decide(input: &Input<'_>, now: DateTime<Utc>) -> Decision {
    let job = input.job;
    if input
        .workload
        .is_some_and(|w| w.spec.job_ref.uid != job.uid)
    {
        return Decision {
            stale_workload: true,
            requeue_at: Some(now),
            ..Decision::default()
        };
    }
    let state = classify(job);
    let Some(spec) = effective_spec(job, input.workload) else {
        return without_spec(job, state, now);
    };
    let old = input.workload.and_then(|w| w.status.as_ref());
    let mut m = Machine {
        job,
        spec: &spec,
        old_spec: input.workload.map(|w| &w.spec),
        old,
        old_phase: old.and_then(|s| s.phase),
        status: old.cloned().unwrap_or_default(),
        forecast: input.forecast,
        config: input.config,
        now,
        decision: Decision::default(),
    };
    m.status.deadline = Some(spec.deadline);
    m.status.latest_start = Some(spec.latest_start);
    m.validity();
    match state {
        State::Finished(f) => m.finished(f),
        State::Held => m.held(),
        State::Released | State::ReleasedByOwner => m.running(state),
        State::SuspendedByOwner => m.suspended_by_owner(),
        State::NotHeld => m.not_held(),
    }
    m.conditions();
    let mut decision = m.decision;
    decision.status = Some(m.status);
    decision.spec = Some(spec);
    decision
}

/// A Job without usable constraints and without a workload: release it if carbonshift holds it
/// (fail open), otherwise leave it alone.
fn without_spec(job: &WorkloadView, state: State, now: DateTime<Utc>) -> Decision {
    let mut decision = Decision::default();
    let error = job.deferral.as_ref().err().map(ToString::to_string);
    if let Some(error) = &error {
        decision.events.push(Event {
            type_: EventType::Warning,
            reason: reason::INVALID_ANNOTATIONS,
            action: "Validate",
            note: truncate(error),
        });
    }
    if state == State::Held && job.held_marker {
        let (reason, note) = match &error {
            _ if job.run_now => (
                ReleaseReason::ManualRelease,
                "released at once: carbonshift.dev/run-now is \"true\"".to_string(),
            ),
            Some(error) => (
                ReleaseReason::InvalidAnnotations,
                format!("released: its annotations cannot be read ({error})"),
            ),
            None => (
                ReleaseReason::ManualRelease,
                "released: carbonshift.dev/deferrable was removed or set to \"false\"".to_string(),
            ),
        };
        decision.job_action = Some(JobAction::Release {
            reason,
            planned: now,
        });
        decision.events.push(Event {
            type_: EventType::Warning,
            reason: reason.as_str(),
            action: "Release",
            note: truncate(&note),
        });
    }
    decision
}

/// Events notes are limited to 1 kB by the API.
fn truncate(text: &str) -> String {
    const MAX: usize = 1000;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn plan_reason(reason: PlanReason) -> &'static str {
    match reason {
        PlanReason::LowestIntensity => "LowestIntensity",
        PlanReason::PartialForecast => "PartialForecast",
        PlanReason::Heuristic => "Heuristic",
        PlanReason::CapacityShifted => "CapacityShifted",
        PlanReason::CapacityOverflow => "CapacityOverflow",
    }
}

fn windows_of(plan: &Plan) -> Vec<TimeWindow> {
    plan.windows
        .iter()
        .map(|w| TimeWindow {
            start: w.start,
            end: w.end,
        })
        .collect()
}

fn total(windows: &[TimeWindow]) -> TimeDelta {
    windows
        .iter()
        .fold(TimeDelta::zero(), |sum, w| sum + (w.end - w.start))
}

/// The start of the first window that has not ended by `now`, or of the last window when all
/// have (an overdue plan).
fn next_start(windows: &[TimeWindow], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    windows
        .iter()
        .find(|w| w.end > now)
        .or(windows.last())
        .map(|w| w.start)
}

/// One decision in the making.
struct Machine<'a> {
    job: &'a WorkloadView,
    spec: &'a CarbonWorkloadSpec,
    old_spec: Option<&'a CarbonWorkloadSpec>,
    old: Option<&'a CarbonWorkloadStatus>,
    old_phase: Option<Phase>,
    status: CarbonWorkloadStatus,
    forecast: ForecastInput<'a>,
    config: &'a Config,
    now: DateTime<Utc>,
    decision: Decision,
}

impl Machine<'_> {
    fn event(
        &mut self,
        type_: EventType,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) {
        self.decision.events.push(Event {
            type_,
            reason,
            action,
            note: truncate(&note),
        });
    }

    fn set(&mut self, phase: Phase, reason: &str, message: String) {
        self.status.phase = Some(phase);
        self.status.reason = Some(reason.to_string());
        self.status.message = Some(message);
    }

    /// Like [`Machine::set`], but an unchanged phase and reason keep their message (the one
    /// written with the transition, such as the release's), so that following a Job writes
    /// nothing until something happens.
    fn set_following(&mut self, phase: Phase, reason: &str, message: String) {
        let unchanged = self.old.is_some_and(|o| {
            o.phase == Some(phase) && o.reason.as_deref() == Some(reason) && o.message.is_some()
        });
        if unchanged {
            self.status.phase = Some(phase);
            self.status.reason = Some(reason.to_string());
        } else {
            self.set(phase, reason, message);
        }
    }

    /// The `AnnotationsValid` condition, with a Warning Event when it turns false or the error
    /// changes.
    fn validity(&mut self) {
        let error = self.job.deferral.as_ref().err().map(ToString::to_string);
        let previous = self
            .old
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.r#type == condition_type::ANNOTATIONS_VALID)
            })
            .cloned();
        let new = match &error {
            Some(error) => Condition::new(
                condition_type::ANNOTATIONS_VALID,
                false,
                reason::INVALID_ANNOTATIONS,
                truncate(error),
                None,
                self.now,
            ),
            None => Condition::new(
                condition_type::ANNOTATIONS_VALID,
                true,
                "Valid",
                "",
                None,
                self.now,
            ),
        };
        if let Some(error) = &error {
            let repeated = previous.is_some_and(|p| !p.is_true() && p.message == new.message);
            if !repeated {
                let kept = if self.old_spec.is_some() {
                    "; the last valid constraints stay in force"
                } else {
                    ""
                };
                self.event(
                    EventType::Warning,
                    reason::INVALID_ANNOTATIONS,
                    "Validate",
                    format!("{error}{kept}"),
                );
            }
        }
        condition::upsert(&mut self.status.conditions, new);
    }

    fn conditions(&mut self) {
        let phase = self.status.phase.unwrap_or(Phase::Pending);
        let why = self.status.reason.clone().unwrap_or_default();
        let planned = if self.status.windows.is_empty() {
            Condition::new(
                condition_type::PLANNED,
                false,
                if why.is_empty() { "NotPlanned" } else { &why },
                "",
                None,
                self.now,
            )
        } else {
            Condition::new(condition_type::PLANNED, true, "Planned", "", None, self.now)
        };
        let held = if is_held_phase(phase) {
            Condition::new(condition_type::HELD, true, "Held", "", None, self.now)
        } else {
            Condition::new(
                condition_type::HELD,
                false,
                if why.is_empty() { "NotHeld" } else { &why },
                "",
                None,
                self.now,
            )
        };
        condition::upsert(&mut self.status.conditions, planned);
        condition::upsert(&mut self.status.conditions, held);
    }

    fn duration(&self) -> Option<TimeDelta> {
        spec_duration(self.spec).ok()
    }

    /// Run time already done by an interruptible Job (its finished runs).
    fn ran(&self) -> TimeDelta {
        total(&self.status.runs)
    }

    /// A release now. The status says `Released`; it is written only if the patch succeeds.
    fn release(&mut self, reason: ReleaseReason, planned: DateTime<Utc>, message: String) {
        let type_ = match reason {
            ReleaseReason::Released | ReleaseReason::Resumed | ReleaseReason::ManualRelease => {
                EventType::Normal
            }
            ReleaseReason::DeadlineRelease
            | ReleaseReason::NoForecast
            | ReleaseReason::InvalidAnnotations => EventType::Warning,
        };
        self.decision.job_action = Some(JobAction::Release { reason, planned });
        self.status.released_at = self.status.released_at.or(Some(self.now));
        self.set(Phase::Released, reason.as_str(), message.clone());
        self.event(type_, reason.as_str(), "Release", message);
    }

    fn planned_release(&mut self, start: DateTime<Utc>) {
        if self.status.runs.is_empty() {
            self.release(
                ReleaseReason::Released,
                start,
                format!("released at its planned start {}", fmt_time(start)),
            );
        } else {
            let ran = format_duration(self.ran());
            self.release(
                ReleaseReason::Resumed,
                start,
                format!(
                    "resumed at its next planned window {} after {ran} of run time",
                    fmt_time(start)
                ),
            );
        }
    }

    fn held(&mut self) {
        let job = self.job;
        if matches!(job.deferral, Ok(None)) {
            return self.release(
                ReleaseReason::ManualRelease,
                self.now,
                "released: carbonshift.dev/deferrable was removed or set to \"false\"".to_string(),
            );
        }
        if self.spec.dry_run {
            return self.release(
                ReleaseReason::ManualRelease,
                self.now,
                "released: carbonshift.dev/dry-run is \"true\"; a dry run is never held"
                    .to_string(),
            );
        }
        if job.run_now {
            return self.release(
                ReleaseReason::ManualRelease,
                self.now,
                "released at once: carbonshift.dev/run-now is \"true\"".to_string(),
            );
        }
        let margin = self.config.margin;
        let ran = self.ran();
        let base = match spec_constraints(self.spec, margin) {
            Ok(c) => c,
            Err(e) => {
                return self.release(
                    ReleaseReason::InvalidAnnotations,
                    self.now,
                    format!("released: its constraints cannot be planned ({e})"),
                );
            }
        };
        let constraints = if ran > TimeDelta::zero() {
            match self.duration().map(|d| base.remaining(d - ran)) {
                Some(Ok(c)) => c,
                _ => {
                    return self.release(
                        ReleaseReason::DeadlineRelease,
                        self.now,
                        format!(
                            "resumed at once: it has run {} and its expected run time is used up",
                            format_duration(ran)
                        ),
                    );
                }
            }
        } else {
            base
        };
        // Validated above, so these cannot fail; fall back to the spec's times all the same.
        let latest_start = constraints.latest_start().unwrap_or(self.spec.latest_start);
        let release_by = constraints
            .release_by()
            .unwrap_or(self.spec.latest_start - margin);
        self.status.latest_start = Some(latest_start);

        // 2. The deadline rule.
        if self.now >= release_by {
            return self.release(
                ReleaseReason::DeadlineRelease,
                release_by,
                format!(
                    "released by the deadline rule: latest start {} minus the {} margin",
                    fmt_time(latest_start),
                    format_duration(margin)
                ),
            );
        }

        let paused = ran > TimeDelta::zero();
        let existing: Option<Vec<TimeWindow>> = self
            .old
            .filter(|_| matches!(self.old_phase, Some(Phase::Deferred | Phase::Paused)))
            .map(|s| s.windows.clone())
            .filter(|w| !w.is_empty());

        // 3. An existing plan whose start has come is released, whatever the forecast did since.
        if let Some(start) = existing.as_deref().and_then(|w| next_start(w, self.now))
            && start <= self.now
        {
            return self.planned_release(start);
        }

        let fresh = self.forecast.data().filter(|f| f.fresh);
        let needs_plan = match &existing {
            None => true,
            Some(windows) => {
                let version_changed =
                    match (&self.old.and_then(|s| s.forecast_version.clone()), fresh) {
                        (Some(v), Some(f)) => v != f.version,
                        _ => true,
                    };
                let spec_changed = self.old_spec != Some(self.spec);
                let remaining_changed =
                    paused && self.duration().is_some_and(|d| total(windows) != d - ran);
                version_changed || spec_changed || remaining_changed
            }
        };

        if let Some(f) = fresh
            && needs_plan
        {
            match planner::plan(f.forecast, &constraints, self.now) {
                Ok(plan) => return self.adopt_plan(&plan, f.version, existing, release_by),
                Err(NoPlan::DeadlinePassed { .. }) => {
                    return self.release(
                        ReleaseReason::DeadlineRelease,
                        release_by,
                        format!(
                            "released by the deadline rule: latest start {} minus the {} margin",
                            fmt_time(latest_start),
                            format_duration(margin)
                        ),
                    );
                }
                Err(NoPlan::InvalidConstraints { error }) => {
                    return self.release(
                        ReleaseReason::InvalidAnnotations,
                        self.now,
                        format!("released: its constraints cannot be planned ({error})"),
                    );
                }
                Err(NoPlan::NoCoverage { from, to }) => {
                    if existing.is_none() {
                        return self.hold_unplanned(
                            reason::NO_COVERAGE,
                            format!(
                                "held without a plan: the forecast has no data between {} and {}; released by {} at the latest",
                                fmt_time(from),
                                fmt_time(to),
                                fmt_time(release_by)
                            ),
                            release_by,
                        );
                    }
                }
            }
        }

        match existing {
            Some(windows) => {
                // Keep the plan: the forecast is stale or missing, or nothing changed.
                let start = next_start(&windows, self.now).unwrap_or(release_by);
                let phase = if paused {
                    Phase::Paused
                } else {
                    Phase::Deferred
                };
                self.status.phase = Some(phase);
                self.decision.requeue_at = Some(start.min(release_by));
            }
            None => {
                if let ForecastInput::Awaiting { since } = self.forecast {
                    let until = since.max(self.spec.submitted_at) + self.config.forecast_wait;
                    if self.now < until {
                        return self.await_forecast(until, release_by);
                    }
                }
                let why = self.why_no_forecast();
                match self.config.no_forecast {
                    NoForecastPolicy::Release => self.release(
                        ReleaseReason::NoForecast,
                        self.now,
                        format!("released at once (fail open): {why}"),
                    ),
                    NoForecastPolicy::Hold => self.hold_unplanned(
                        reason::NO_FORECAST,
                        format!(
                            "held without a plan: {why}; released by {} at the latest",
                            fmt_time(release_by)
                        ),
                        release_by,
                    ),
                }
            }
        }
    }

    /// Why the forecast cannot be used, for the `NoForecast` message.
    fn why_no_forecast(&self) -> String {
        let name = &self.spec.forecast;
        match self.forecast {
            ForecastInput::Data(_) => format!("the CarbonForecast {name:?} is stale"),
            ForecastInput::Missing => format!("no CarbonForecast {name:?} exists"),
            ForecastInput::Failed { reason } => {
                format!("the CarbonForecast {name:?} has no data (Ready=False, reason {reason})")
            }
            ForecastInput::Awaiting { .. } => format!(
                "the CarbonForecast {name:?} produced no data within the {} first-data wait",
                format_duration(self.config.forecast_wait)
            ),
        }
    }

    /// Held without a plan while the forecast's first data is on its way: `Pending`, reason
    /// `AwaitingForecast`, looked at again soon (and at once when the data arrives).
    fn await_forecast(&mut self, until: DateTime<Utc>, release_by: DateTime<Utc>) {
        let why = reason::AWAITING_FORECAST;
        let changed = self.status.reason.as_deref() != Some(why);
        self.status.windows.clear();
        self.status.planned_start = None;
        let message = format!(
            "held: the CarbonForecast {:?} has no data yet; waiting for it until {}, released by {} at the latest",
            self.spec.forecast,
            fmt_time(until),
            fmt_time(release_by)
        );
        let paused = self.ran() > TimeDelta::zero();
        self.set(
            if paused {
                Phase::Paused
            } else {
                Phase::Pending
            },
            why,
            message.clone(),
        );
        if changed {
            self.event(EventType::Normal, why, "Plan", message);
        }
        self.decision.requeue_at = Some((self.now + AWAIT_RECHECK).min(until).min(release_by));
    }

    /// Held without a plan until the forecast changes or the deadline rule.
    fn hold_unplanned(&mut self, why: &'static str, message: String, release_by: DateTime<Utc>) {
        let paused = self.ran() > TimeDelta::zero();
        let phase = if paused {
            Phase::Paused
        } else {
            Phase::Pending
        };
        let changed = self.old_phase != Some(phase) || self.status.reason.as_deref() != Some(why);
        self.status.windows.clear();
        self.status.planned_start = None;
        self.set(phase, why, message.clone());
        if changed {
            self.event(EventType::Warning, why, "Plan", message);
        }
        self.decision.requeue_at = Some(release_by);
    }

    /// Takes a new plan: release now if its start has come, else hold until it.
    fn adopt_plan(
        &mut self,
        plan: &Plan,
        version: &str,
        existing: Option<Vec<TimeWindow>>,
        release_by: DateTime<Utc>,
    ) {
        let windows = windows_of(plan);
        let remaining = self
            .duration()
            .map(|d| d - self.ran())
            .unwrap_or_else(|| plan.run_time());
        self.record_plan(plan, version, remaining);
        if plan.start <= self.now {
            return self.planned_release(plan.start);
        }
        let paused = self.ran() > TimeDelta::zero();
        let phase = if paused {
            Phase::Paused
        } else {
            Phase::Deferred
        };
        let message = self.plan_message(plan, release_by);
        let why = if paused {
            reason::PAUSED
        } else {
            plan_reason(plan.reason)
        };
        self.set(phase, why, message.clone());
        match existing {
            Some(old) if old != windows => {
                let note = match old.first() {
                    Some(first) if first.start != plan.start => format!(
                        "planned start moved from {}: {message}",
                        fmt_time(first.start)
                    ),
                    _ => format!("planned windows changed: {message}"),
                };
                self.event(EventType::Normal, "Replanned", "Plan", note);
            }
            Some(_) => {}
            None if !paused => self.event(EventType::Normal, "Deferred", "Plan", message),
            None => self.event(EventType::Normal, "Replanned", "Plan", message),
        }
        self.decision.requeue_at = Some(plan.start.min(release_by));
    }

    fn record_plan(&mut self, plan: &Plan, version: &str, duration: TimeDelta) {
        let s = &mut self.status;
        s.planned_start = Some(plan.start);
        s.windows = windows_of(plan);
        s.expected_intensity = Some(plan.expected_intensity);
        s.run_now_intensity = plan.run_now_intensity;
        s.savings_percent = plan.savings_percent();
        s.coverage = Some(plan.coverage);
        s.forecast_version = Some(version.to_string());
        let estimate = emissions::plan_estimate(self.spec, plan, duration);
        s.estimated_energy_kwh = estimate.map(|e| e.energy_kwh);
        s.estimated_emissions_grams = estimate.map(|e| e.emissions_grams);
        s.estimated_avoided_grams = estimate.and_then(|e| e.avoided_grams);
    }

    fn plan_message(&self, plan: &Plan, release_by: DateTime<Utc>) -> String {
        let mut text = format!(
            "planned start {} ({}; expected {:.0} gCO2eq/kWh",
            fmt_time(plan.start),
            plan.reason,
            plan.expected_intensity
        );
        if let (Some(now), Some(saving)) = (plan.run_now_intensity, plan.savings_percent()) {
            text.push_str(&format!(" against {now:.0} now, saving {saving:.1}%"));
        }
        text.push(')');
        if plan.windows.len() > 1 {
            text.push_str(&format!(" in {} windows", plan.windows.len()));
        }
        text.push_str(&format!(
            "; released by {} at the latest",
            fmt_time(release_by)
        ));
        text
    }

    /// The reason of a Job that runs: kept from before, else worked out from the Job.
    fn running_reason(&self) -> String {
        if let Some(old) = self.old
            && matches!(
                old.phase,
                Some(Phase::Released | Phase::Running | Phase::NotDeferred)
            )
            && let Some(r) = &old.reason
            && r != reason::SUSPENDED_BY_OWNER
        {
            return r.clone();
        }
        let job = self.job;
        if job.released_marker.is_some() {
            return self.derived_release_reason().as_str().to_string();
        }
        if job.held_marker {
            return reason::RELEASED_BY_OWNER.to_string();
        }
        self.not_held_reason().to_string()
    }

    /// Why a Job carrying `released-at` was released, when the status write of the release was
    /// lost or someone else (`carbonshift release`) released it.
    fn derived_release_reason(&self) -> ReleaseReason {
        let Some(at) = self.job.released_at else {
            return ReleaseReason::ManualRelease;
        };
        if self.job.run_now {
            return ReleaseReason::ManualRelease;
        }
        if let Some(planned) = self.old.and_then(|s| s.planned_start)
            && at >= planned
        {
            return ReleaseReason::Released;
        }
        let release_by = self.spec.latest_start - self.config.margin;
        if at >= release_by {
            ReleaseReason::DeadlineRelease
        } else {
            ReleaseReason::ManualRelease
        }
    }

    fn not_held_reason(&self) -> &'static str {
        let job = self.job;
        match &job.managed_elsewhere {
            Some(ManagedElsewhere::Kueue) => return reason::KUEUE,
            Some(ManagedElsewhere::ManagedBy(_)) => return reason::MANAGED_BY,
            None => {}
        }
        match &job.deferral {
            Ok(Some(d)) if d.dry_run => reason::DRY_RUN,
            Ok(Some(d)) if d.run_now => reason::RUN_NOW,
            Ok(Some(d)) if !d.is_feasible(d.submitted_at) => reason::INFEASIBLE,
            Ok(Some(_)) => reason::WEBHOOK_BYPASSED,
            Ok(None) => reason::NOT_DEFERRABLE,
            Err(_) => reason::INVALID_ANNOTATIONS,
        }
    }

    fn running_phase(&mut self) -> Phase {
        let running = self.job.active > 0 || self.old_phase == Some(Phase::Running);
        if running {
            if self.status.started_at.is_none() {
                self.status.started_at = Some(self.now);
            }
            Phase::Running
        } else if self.job.released_marker.is_some() || self.job.held_marker {
            Phase::Released
        } else {
            Phase::NotDeferred
        }
    }

    fn running(&mut self, state: State) {
        let why = self.running_reason();
        if self.status.released_at.is_none() {
            self.status.released_at = self.job.released_at;
        }
        let phase = self.running_phase();
        let message = match (phase, state) {
            (Phase::Running, _) => format!("running ({why})"),
            (_, State::ReleasedByOwner) => {
                "unsuspended by its owner, not by carbonshift; no pod active yet".to_string()
            }
            _ => format!("released ({why}); no pod active yet"),
        };
        let first_owner_release = state == State::ReleasedByOwner
            && !matches!(self.old_phase, Some(Phase::Released | Phase::Running));
        self.set_following(phase, &why, message);
        if first_owner_release {
            self.event(
                EventType::Normal,
                reason::RELEASED_BY_OWNER,
                "Track",
                "the held Job was unsuspended by someone other than carbonshift".to_string(),
            );
        }
        if state == State::Released {
            self.maybe_pause(&why);
        }
    }

    /// The pause of an interruptible Job at the end of the window it was released in.
    fn maybe_pause(&mut self, why: &str) {
        let planned = matches!(
            ReleaseReason::from_str(why),
            Some(ReleaseReason::Released | ReleaseReason::Resumed)
        );
        if !self.spec.interruptible || !planned {
            return;
        }
        let Some(segment_start) = self.job.released_at else {
            return;
        };
        let windows = self.status.windows.clone();
        let Some(current) = windows.iter().position(|w| w.end > segment_start) else {
            return;
        };
        let end = windows[current].end;
        let later: Vec<TimeWindow> = windows[current + 1..].to_vec();
        if later.is_empty() {
            return;
        }
        if self.now < end {
            self.decision.requeue_at = Some(end);
            return;
        }
        let (Some(duration), Ok(base)) = (
            self.duration(),
            spec_constraints(self.spec, self.config.margin),
        ) else {
            return;
        };
        let ran = self.ran() + (self.now - segment_start);
        let remaining = duration - ran;
        if remaining <= TimeDelta::zero() {
            return;
        }
        let Ok(after) = base.remaining(remaining) else {
            return;
        };
        let (Ok(latest_start), Ok(release_by)) = (after.latest_start(), after.release_by()) else {
            return;
        };
        if self.now >= release_by {
            // Pausing now would miss the deadline: keep running.
            return;
        }
        self.status.runs.push(TimeWindow {
            start: segment_start,
            end: self.now,
        });
        self.status.windows = later.clone();
        self.status.planned_start = later.first().map(|w| w.start);
        self.status.latest_start = Some(latest_start);
        let next = later.first().map_or(release_by, |w| w.start);
        let message = format!(
            "paused after {} of run time; {} left, next window at {}, resumed by {} at the latest",
            format_duration(ran),
            format_duration(remaining),
            fmt_time(next),
            fmt_time(release_by)
        );
        self.set(Phase::Paused, reason::PAUSED, message.clone());
        self.decision.job_action = Some(JobAction::Pause);
        self.event(EventType::Normal, reason::PAUSED, "Pause", message);
        self.decision.requeue_at = Some(next.min(release_by));
    }

    fn suspended_by_owner(&mut self) {
        if self.status.released_at.is_none() {
            self.status.released_at = self.job.released_at;
        }
        let first = self.status.reason.as_deref() != Some(reason::SUSPENDED_BY_OWNER);
        let message =
            "suspended again by its owner after carbonshift released it; carbonshift leaves it alone"
                .to_string();
        self.set(Phase::Released, reason::SUSPENDED_BY_OWNER, message.clone());
        if first {
            self.event(
                EventType::Normal,
                reason::SUSPENDED_BY_OWNER,
                "Track",
                message,
            );
        }
    }

    fn not_held(&mut self) {
        let why = self.running_reason();
        let phase = self.running_phase();
        let first = !matches!(self.old_phase, Some(Phase::NotDeferred | Phase::Running));
        let explanation = match why.as_str() {
            reason::DRY_RUN => "a dry run: planned and reported, never held".to_string(),
            reason::RUN_NOW => "admitted with carbonshift.dev/run-now: never held".to_string(),
            reason::INFEASIBLE => format!(
                "not held: its deadline {} leaves no time to wait",
                fmt_time(self.spec.deadline)
            ),
            reason::WEBHOOK_BYPASSED => {
                "not held: deferrable, but created running without carbonshift's admission webhook"
                    .to_string()
            }
            reason::KUEUE => "not held: Kueue manages this Job".to_string(),
            reason::MANAGED_BY => {
                "not held: another controller manages this Job (spec.managedBy)".to_string()
            }
            reason::INVALID_ANNOTATIONS => "not held: its annotations cannot be read".to_string(),
            _ => "not held".to_string(),
        };
        let message = if phase == Phase::Running {
            format!("running; {explanation}")
        } else {
            explanation.clone()
        };
        self.set_following(phase, &why, message);
        // A dry run says so with its plan instead.
        if first
            && why != reason::DRY_RUN
            && let Some(known) = reason::known(&why)
        {
            let type_ = if why == reason::WEBHOOK_BYPASSED {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.event(type_, known, "Track", explanation);
        }
        if why == reason::DRY_RUN {
            self.dry_run_plan();
        }
    }

    /// The plan a dry run would have had, made once (again if the constraints change) from the
    /// submission time.
    fn dry_run_plan(&mut self) {
        let Some(f) = self.forecast.data().filter(|f| f.fresh) else {
            return;
        };
        let planned = self.old.is_some_and(|s| s.forecast_version.is_some());
        if planned && self.old_spec == Some(self.spec) {
            return;
        }
        let Ok(constraints) = spec_constraints(self.spec, self.config.margin) else {
            return;
        };
        let Ok(plan) = planner::plan(f.forecast, &constraints, self.spec.submitted_at) else {
            return;
        };
        let duration = self.duration().unwrap_or_else(|| plan.run_time());
        self.record_plan(&plan, f.version, duration);
        let release_by = constraints.release_by().unwrap_or(self.spec.latest_start);
        let message = self.plan_message(&plan, release_by);
        self.event(
            EventType::Normal,
            reason::DRY_RUN,
            "Plan",
            format!("dry run, not held; would have been {message}"),
        );
    }

    fn finished(&mut self, f: Finished) {
        if self.old_phase.is_some_and(Phase::is_terminal) {
            // Already recorded: nothing moves any more (and nothing is counted twice).
            if let Some(old) = self.old {
                let conditions = std::mem::take(&mut self.status.conditions);
                self.status = old.clone();
                self.status.conditions = conditions;
            }
            return;
        }
        let why = self.running_reason();
        let at = f.at();
        let job = self.job;
        let started = self
            .status
            .started_at
            .or(job.start_time)
            .or(job.released_at)
            .unwrap_or(at)
            .min(at);
        self.status.started_at = Some(started);
        self.status.finished_at = Some(at);
        if self.status.released_at.is_none() {
            self.status.released_at = job.released_at;
        }
        let last_start = if self.status.runs.is_empty() {
            started
        } else {
            job.released_at
                .or(job.start_time)
                .unwrap_or(started)
                .min(at)
        };
        let mut runs: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            self.status.runs.iter().map(|w| (w.start, w.end)).collect();
        runs.push((last_start, at));
        if !self.status.runs.is_empty() {
            self.status.runs.push(TimeWindow {
                start: last_start,
                end: at,
            });
        }
        let held_by_us = job.held_marker || job.released_marker.is_some();
        let outcome = self
            .forecast
            .data()
            .and_then(|fc| emissions::outcome(self.spec, &runs, fc.forecast, fc.actuals));
        let (phase, verb) = match f {
            Finished::Succeeded(_) => (Phase::Succeeded, "succeeded"),
            Finished::Failed(_) => (Phase::Failed, "failed"),
        };
        let mut note = format!("the Job {verb} at {}", fmt_time(at));
        match outcome {
            Some(o) => {
                self.status.actual_intensity = Some(o.intensity);
                self.status.estimated_energy_kwh = Some(o.energy_kwh);
                self.status.estimated_emissions_grams = Some(o.emissions_grams);
                let avoided = o.run_now_emissions_grams.map(|now| now - o.emissions_grams);
                if held_by_us {
                    self.status.estimated_avoided_grams = avoided;
                } else if why != reason::DRY_RUN {
                    // Nothing was shifted; a dry run keeps what its plan would have saved.
                    self.status.estimated_avoided_grams = Some(0.0);
                }
                note.push_str(&format!(
                    "; estimated {:.0} gCO2eq at {:.0} gCO2eq/kWh",
                    o.emissions_grams, o.intensity
                ));
                if held_by_us && let Some(avoided) = avoided {
                    note.push_str(&format!(", {avoided:.0} g avoided against running at once"));
                }
                self.decision.completion = Some(Completion {
                    emitted_grams: o.emissions_grams,
                    avoided_grams: avoided.filter(|_| held_by_us),
                });
            }
            None => {
                note.push_str("; no forecast data to estimate its emissions");
            }
        }
        self.set(phase, &why, note.clone());
        let type_ = if phase == Phase::Failed {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.event(type_, phase.as_str(), "Track", note);
    }
}
