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
pub mod fleet;
mod following;
mod machine;
mod spec;
mod state;
mod tally;
pub mod verify;
mod verifying;
pub mod view;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::api::annotations::Deferral;
use crate::api::condition::{self, Condition};
use crate::api::workload::{JobRef, TimeWindow};
use crate::api::{CarbonWorkload, CarbonWorkloadSpec, CarbonWorkloadStatus, Phase};
use crate::planner::{self, ConstraintError, Constraints, Forecast, NoPlan, Plan, PlanReason};
use crate::units::{self, DurationError, format_duration};

pub use crate::api::annotations::ManagedElsewhere;
pub use crate::note::{Note, NoteKind};
pub use machine::decide;
pub use spec::{SpecError, constraints, effective_spec, spec_constraints};
pub use tally::{Tally, tally};
pub use view::{Finished, WorkloadView};

use spec::spec_duration;
use state::is_held_phase;
pub use state::{State, classify};

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
    /// How long after a workload finished carbonshift keeps waiting for its provider to publish
    /// the measured values that verify it ([`verify::DEFAULT_GIVE_UP`]).
    pub verify_give_up: TimeDelta,
    /// How long after a release the status waits for the answer of the kind's controller (see
    /// [`WorkloadView::reports_start`]) so that the release and the first phase after it are
    /// written in one status write; zero writes the release at once. Default
    /// [`DEFAULT_RELEASE_ACK_WAIT`].
    pub release_ack_wait: TimeDelta,
}

/// The default of [`Config::release_ack_wait`].
pub const DEFAULT_RELEASE_ACK_WAIT: TimeDelta = TimeDelta::seconds(60);

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
            verify_give_up: verify::DEFAULT_GIVE_UP,
            release_ack_wait: DEFAULT_RELEASE_ACK_WAIT,
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
    /// For a finished workload not yet verified: what the provider's measured history said
    /// (`None`: not asked).
    pub measured: Option<&'a Measured>,
    /// The plan the fleet planner made for this workload together with the other held
    /// workloads of its forecast (a capacity cap) or over its candidate forecasts (placement);
    /// `None`: planned alone ([`crate::planner::plan`]).
    pub fleet: Option<FleetPlan<'a>>,
}

/// A plan made by the fleet planner ([`crate::planner::fleet`]) in the shell, which holds the
/// schedule of every workload of a forecast. The state machine uses it instead of planning alone
/// when it was made for the same constraints the machine derives; otherwise (an interruptible
/// workload part-way through its run, say) it plans alone.
#[derive(Debug, Clone, Copy)]
pub struct FleetPlan<'a> {
    /// The constraints the fleet planned with.
    pub constraints: &'a planner::Constraints,
    /// The plan, and whether it lies above the cap (no room before the latest start).
    pub scheduled: &'a planner::fleet::Scheduled,
    /// The CarbonForecast the plan is for; the `forecast` input is this one's data.
    pub forecast: &'a str,
    /// For a workload with candidate forecasts: where it is placed (`status.placement`).
    pub placement: Option<&'a crate::api::workload::PlacementStatus>,
}

/// What the forecast's provider answered when asked for the measured intensity a finished
/// workload needs ([`verify::needed`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Measured {
    /// The measured pieces it published (possibly not all of the time yet).
    Pieces {
        /// Measured intensity, in time order.
        segments: Vec<planner::Segment>,
        /// Where they come from.
        source: String,
    },
    /// It could not say.
    Unavailable {
        /// Why, for the status message.
        reason: String,
        /// It never will (the provider publishes no history, the forecast is gone): stop asking.
        permanent: bool,
    },
}

/// How soon a finished workload whose measured values are not all published is looked at again.
pub const VERIFY_RECHECK: TimeDelta = TimeDelta::minutes(30);

/// Whether a workload status still needs its measured figures asked for: finished, not
/// verified, and not given up on. The shell asks the provider when the status it read, or the one
/// just decided, says so, and decides again with the answer.
pub fn needs_verification(status: &CarbonWorkloadStatus) -> bool {
    status.phase.is_some_and(Phase::is_terminal)
        && status.verified.is_none()
        && status
            .verification
            .as_ref()
            .is_none_or(|v| v.state == verification_state::PENDING)
}

/// The states of `status.verification`.
pub mod verification_state {
    /// Waiting for the provider to publish measured values.
    pub const PENDING: &str = "Pending";
    /// Verified.
    pub const VERIFIED: &str = "Verified";
    /// Still missing when the wait ran out.
    pub const GAVE_UP: &str = "GaveUp";
    /// The provider publishes no measured history (or the forecast is gone).
    pub const UNSUPPORTED: &str = "Unsupported";
    /// Nothing to verify: it never ran.
    pub const NOT_APPLICABLE: &str = "NotApplicable";
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

    /// The reason named `text` (its [`ReleaseReason::as_str`]), if it is one.
    pub fn parse(text: &str) -> Option<ReleaseReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// The one write to the Job a Decision may ask for. Both are guarded patches (see
/// `controller::release`): if the Job changed since it was read, nothing is written and the next
/// reconcile decides again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAction {
    /// `spec.suspend: false` (or carbonshift's Kueue gate entry removed),
    /// `carbonshift.dev/released-at: now` and `carbonshift.dev/release-reason`.
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
    pub events: Vec<Note>,
    /// When to decide again even if nothing changes.
    pub requeue_at: Option<DateTime<Utc>>,
    /// Set on the transition to `Succeeded`/`Failed`: the figures to add to the metrics.
    pub completion: Option<Completion>,
    /// Set when the workload has just been verified: the measured figures to add to the
    /// metrics (exactly once, as [`Decision::completion`]).
    pub verified: Option<Completion>,
    /// The existing workload belongs to an older Job of the same name (another UID): delete it,
    /// then decide again.
    pub stale_workload: bool,
    /// The release in `job_action` goes above its forecast's capacity cap: the deadline left no
    /// room within it (Event `DeadlineOverCapacity`, metric
    /// `carbonshift_capacity_overflow_releases_total`).
    pub over_capacity: bool,
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
    /// Held by the waste guard (`crate::waste`): its group failed too often in a row.
    pub const WASTE_GUARD: &str = "WasteGuard";
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
    /// Released above its forecast's capacity cap because its deadline left no room within it
    /// (an Event reason, not a phase reason).
    pub const DEADLINE_OVER_CAPACITY: &str = "DeadlineOverCapacity";

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
