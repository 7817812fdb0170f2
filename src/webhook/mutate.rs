//! The admission decision, as a pure function of the request, the operator's defaults and `now`.
//!
//! On CREATE of a workload of a supported kind that the operator holds ([`Admission::kinds`]:
//! `batch/v1` Job, JobSet, TrainJob, PyTorchJob, MPIJob, RayJob) with
//! `carbonshift.dev/deferrable: "true"` and valid annotations, [`mutate_with`] answers with a JSON
//! patch that holds it: its suspend switch on (`spec.suspend: true` for a Job,
//! `spec.runPolicy.suspend: true` for a PyTorchJob), `carbonshift.dev/held: "true"` and
//! `carbonshift.dev/submitted-at: <now>`. A workload that Kueue queues is held with Kueue's
//! admission gate instead ([`KueueMode::AdmissionGate`]): carbonshift's entry
//! `carbonshift.dev/low-carbon-window` added to `kueue.x-k8s.io/admission-gated-by` (after any
//! other entries), the marker `carbonshift.dev/held-by: kueue-admission-gate`, and its suspend
//! switch left to Kueue. Everything else is decided here too, in this order:
//!
//! 1. Operations other than CREATE, and objects of kinds carbonshift does not hold: allowed
//!    untouched.
//! 2. Workloads managed by someone else — another controller (`spec.managedBy` other than the
//!    kind's own, `kubernetes.io/job-controller` for a Job), or Kueue (label
//!    `kueue.x-k8s.io/queue-name`) when the operator leaves Kueue's jobs alone
//!    ([`KueueMode::LeaveAlone`], for a Kueue older than the admission gate): allowed untouched,
//!    with a warning if they ask for carbonshift, since holding them would fight their manager
//!    (`crate::api::annotations::managed_elsewhere`).
//! 3. Workloads that do not opt in: allowed untouched.
//! 4. Malformed annotations: denied with the parser's message. Then (step 4a in the code) an
//!    exhausted CarbonBudget of the namespace covering the workload's forecast
//!    ([`BudgetBook`], [`crate::budget::verdict`]): `Deny` denies it with a message naming the
//!    budget, what is used of which limit and when it resets; `Defer` takes away the `dry-run` and
//!    `run-now` shortcuts (both set to `"false"` in the patch, with a warning), so the workload is
//!    held for its cleanest window up to its deadline; `Warn` adds a warning. Every exhausted
//!    budget that does not decide adds its warning too. A deadline too close to wait for is still
//!    admitted unheld: a budget never delays work past its deadline.
//! 5. `dry-run` or `run-now`: admitted unheld, with the `submitted-at` marker (the controller
//!    plans the dry run from it).
//! 6. A deadline too close to wait for: admitted unheld, with the marker and a warning.
//! 7. What the kind does not allow (`crate::workload::check_hold`): a RayJob that KubeRay cannot
//!    suspend, `interruptible` for a kind that cannot pause (RayJob) or a job held by Kueue's gate:
//!    denied with a message that says what to change. The kind's notes (a JobSet's affinity, a
//!    TrainJob whose resources its runtime decides) become warnings.
//! 8. Otherwise held. A workload that arrives suspended already keeps its switch and gets the
//!    markers.
//!
//! Every admitted deferrable Job also gets warnings for a delay shortened by the operator's cap,
//! for unknown `carbonshift.dev/*` annotations (likely typos), for a CarbonForecast that does not
//! exist (when the caller knows the forecasts, [`ForecastCatalog`]) and for a power estimate of
//! 0 W (nothing to save, so carbonshift would report 0 g avoided). A Job that does not opt in but
//! carries `carbonshift.dev/*` annotations (`deferable` for `deferrable`) is allowed untouched with
//! a warning naming them, so that a typo in the opt-in itself is not silently ignored.
//!
//! A new Job is new: `submitted-at` is always the admission time, and markers copied from an older
//! Job (`kubectl get -o yaml` and create again) are replaced or removed, with a warning.

use chrono::{DateTime, SubsecRound, Utc};
use json_patch::{Patch, PatchOperation};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, Status};

use crate::api::annotations::{
    self, ADMISSION_GATED_BY, AnnotationDefaults, AnnotationError, DEADLINE, DEFERRABLE, DRY_RUN,
    Deferral, HELD, HELD_BY, HELD_BY_KUEUE_GATE, KUEUE_QUEUE_NAME, Limit, MAX_DELAY,
    ManagedElsewhere, RELEASED_AT, RUN_NOW, SUBMITTED_AT, Subject, marker as timestamp,
};
use crate::api::budget::{BudgetAction, CarbonBudgetSpec};
use crate::api::ledger::CarbonLedgerStatus;
use crate::budget::{Budget, Ledger, Verdict};
use crate::units::format_duration;
use crate::workload::patch::{annotation_operations, suspend_operation};
use crate::workload::{self, Adapter, Hold, Kinds};

/// What the webhook does with a workload that Kueue queues (`kueue.x-k8s.io/queue-name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KueueMode {
    /// Hold it with carbonshift's entry in Kueue's admission gate (Kueue v0.17 with the
    /// `AdmissionGatedBy` feature gate, on by default since v0.19).
    #[default]
    AdmissionGate,
    /// Leave it alone, as for a Kueue older than the admission gate.
    LeaveAlone,
}

/// The operator's admission settings besides the annotation defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admission {
    /// The kinds carbonshift holds (`--workload-kinds`); others are not its business.
    pub kinds: Kinds,
    /// What to do with workloads Kueue queues (`--kueue-admission-gate`).
    pub kueue: KueueMode,
}

/// What the webhook decided about one request. Each variant maps to one value of the metric label
/// `carbonshift_webhook_requests_total{result}` ([`Outcome::result`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A deferrable Job, held: suspended (unless it already was) and marked held.
    Held {
        /// The Job arrived with `spec.suspend: true`; only the markers were added.
        already_suspended: bool,
    },
    /// A deferrable workload that Kueue queues, held with carbonshift's entry in Kueue's
    /// admission gate and marked held; its suspend switch is Kueue's.
    Gated,
    /// A deferrable Job with `dry-run: "true"`: admitted unheld with the `submitted-at` marker.
    DryRun,
    /// A deferrable Job with `run-now: "true"`: admitted unheld with the `submitted-at` marker.
    RunNow,
    /// A deferrable Job whose deadline leaves no time to wait: admitted unheld with the marker and
    /// a warning.
    AdmittedWithWarning,
    /// Not carbonshift's to change: allowed without a patch.
    AllowedUntouched(Untouched),
    /// Not a `batch/v1` Job: allowed without a patch.
    NotAJob,
    /// Malformed carbonshift annotations: denied with the parser's message.
    Denied(AnnotationError),
    /// A `Deny` CarbonBudget of the namespace is used up: denied with its message.
    OverBudget(String),
    /// Valid annotations on a workload its kind does not let carbonshift hold that way (a RayJob
    /// KubeRay cannot suspend, `interruptible` where pausing is impossible): denied with the
    /// message.
    Refused(String),
    /// The request itself cannot be used (no object, or an object that is not a valid Job):
    /// denied with a message saying so.
    Invalid(String),
    /// carbonshift failed to build its answer: the Job is admitted unchanged, with a warning
    /// (carbonshift never blocks a Job because of its own fault).
    Error(String),
}

/// Why a request was allowed without a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untouched {
    /// An operation other than CREATE.
    Operation(Operation),
    /// The Job does not opt in (`deferrable` absent or `"false"`).
    NotDeferrable,
    /// Kueue manages the Job (label [`KUEUE_QUEUE_NAME`]).
    Kueue,
    /// Another controller manages the Job (`spec.managedBy`).
    ManagedBy(String),
}

impl std::fmt::Display for Outcome {
    /// The decision in words, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Held {
                already_suspended: false,
            } => write!(f, "held: suspended and marked held"),
            Outcome::Held {
                already_suspended: true,
            } => write!(f, "held: it arrived suspended; marked held"),
            Outcome::DryRun => write!(f, "a dry run: admitted unheld"),
            Outcome::RunNow => write!(f, "run-now: admitted unheld"),
            Outcome::AdmittedWithWarning => {
                write!(f, "admitted unheld: no time left to wait")
            }
            Outcome::AllowedUntouched(Untouched::Operation(op)) => {
                write!(f, "allowed untouched: operation {op:?}")
            }
            Outcome::AllowedUntouched(Untouched::NotDeferrable) => {
                write!(f, "allowed untouched: it does not opt in")
            }
            Outcome::AllowedUntouched(Untouched::Kueue) => {
                write!(f, "allowed untouched: Kueue manages it")
            }
            Outcome::AllowedUntouched(Untouched::ManagedBy(manager)) => {
                write!(f, "allowed untouched: managed by {manager}")
            }
            Outcome::NotAJob => write!(f, "allowed untouched: not a kind carbonshift holds"),
            Outcome::Gated => write!(f, "held: carbonshift's entry in Kueue's admission gate"),
            Outcome::Refused(message) => write!(f, "refused: {message}"),
            Outcome::Denied(error) => write!(f, "denied: {error}"),
            Outcome::OverBudget(message) => write!(f, "denied: {message}"),
            Outcome::Invalid(message) => write!(f, "invalid request: {message}"),
            Outcome::Error(message) => write!(f, "error: {message}"),
        }
    }
}

impl Outcome {
    /// The `result` label of `carbonshift_webhook_requests_total`: `held`, `allowed`, `denied`,
    /// `warned` or `error`.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Held { .. } | Outcome::Gated => "held",
            Outcome::DryRun | Outcome::RunNow | Outcome::AllowedUntouched(_) | Outcome::NotAJob => {
                "allowed"
            }
            Outcome::AdmittedWithWarning => "warned",
            Outcome::Denied(_) | Outcome::Refused(_) | Outcome::OverBudget(_) => "denied",
            Outcome::Invalid(_) | Outcome::Error(_) => "error",
        }
    }
}

/// What the webhook knows about the CarbonForecasts (from the operator's watch cache).
pub trait ForecastCatalog {
    /// `Some(true)` when a CarbonForecast of this name exists (and is one this operator uses),
    /// `Some(false)` when it does not, `None` when that is not known (the cache is not filled yet).
    fn knows(&self, name: &str) -> Option<bool>;
}

/// A catalog that knows nothing: no warning about forecasts.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnknownForecasts;

impl ForecastCatalog for UnknownForecasts {
    fn knows(&self, _name: &str) -> Option<bool> {
        None
    }
}

/// A fixed set of forecast names (tests, and callers that have listed them).
impl ForecastCatalog for std::collections::BTreeSet<String> {
    fn knows(&self, name: &str) -> Option<bool> {
        Some(self.contains(name))
    }
}

/// What the webhook knows about the namespaces' CarbonBudgets and CarbonLedgers (from the
/// operator's watch caches, never from live calls per request).
pub trait BudgetBook {
    /// The verdict of `namespace`'s budgets for new work planned against `forecast` at `now`;
    /// `None` when that is not known (the caches are not filled yet: no budget acts).
    fn verdict(&self, namespace: &str, forecast: &str, now: DateTime<Utc>) -> Option<Verdict>;
}

/// A book without budgets: no budget ever acts.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBudgets;

impl BudgetBook for NoBudgets {
    fn verdict(&self, _namespace: &str, _forecast: &str, _now: DateTime<Utc>) -> Option<Verdict> {
        None
    }
}

/// Budgets and ledgers given as data (tests, and callers that have listed them).
#[derive(Debug, Clone, Default)]
pub struct FixedBudgets {
    /// `(namespace, name, spec)` of each CarbonBudget.
    pub budgets: Vec<(String, String, CarbonBudgetSpec)>,
    /// `(namespace, forecast, status)` of each CarbonLedger.
    pub ledgers: Vec<(String, String, CarbonLedgerStatus)>,
}

impl BudgetBook for FixedBudgets {
    fn verdict(&self, namespace: &str, forecast: &str, now: DateTime<Utc>) -> Option<Verdict> {
        let budgets: Vec<Budget<'_>> = self
            .budgets
            .iter()
            .filter(|(ns, ..)| ns == namespace)
            .map(|(_, name, spec)| Budget { name, spec })
            .collect();
        let ledgers: Vec<Ledger<'_>> = self
            .ledgers
            .iter()
            .filter(|(ns, ..)| ns == namespace)
            .map(|(_, forecast, status)| Ledger { forecast, status })
            .collect();
        Some(crate::budget::verdict(&budgets, &ledgers, forecast, now))
    }
}

/// Everything [`mutate_full`] decided: the response, the outcome, and the CarbonBudget that acted
/// on the workload, if one did (for `carbonshift_budget_actions_total`).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The admission response.
    pub response: AdmissionResponse,
    /// What was decided.
    pub outcome: Outcome,
    /// `(namespace, budget, action)` of the budget that decided, if one did.
    pub budget: Option<(String, String, BudgetAction)>,
}

/// [`mutate_with`] with the default [`Admission`] (every supported kind, Kueue's jobs held with
/// the admission gate) and without knowing the forecasts ([`UnknownForecasts`]).
pub fn mutate(
    request: &AdmissionRequest<DynamicObject>,
    defaults: &AnnotationDefaults,
    now: DateTime<Utc>,
) -> (AdmissionResponse, Outcome) {
    mutate_with(
        request,
        defaults,
        &Admission::default(),
        &UnknownForecasts,
        now,
    )
}

/// Decides one admission request without budgets ([`mutate_full`] with [`NoBudgets`]). `now` is
/// the admission time; it is cut to whole seconds, the precision of the `submitted-at` marker, so
/// that the webhook and the controllers count from the same instant. `admission` says which kinds
/// are held and how Kueue's jobs are; `forecasts` tells whether the forecast a Job plans against
/// exists.
pub fn mutate_with(
    request: &AdmissionRequest<DynamicObject>,
    defaults: &AnnotationDefaults,
    admission: &Admission,
    forecasts: &dyn ForecastCatalog,
    now: DateTime<Utc>,
) -> (AdmissionResponse, Outcome) {
    let answer = mutate_full(request, defaults, admission, forecasts, &NoBudgets, now);
    (answer.response, answer.outcome)
}

/// Decides one admission request, as [`mutate_with`], with the namespace's CarbonBudgets from
/// `budgets` (module documentation, step 4a).
pub fn mutate_full(
    request: &AdmissionRequest<DynamicObject>,
    defaults: &AnnotationDefaults,
    admission: &Admission,
    forecasts: &dyn ForecastCatalog,
    budgets: &dyn BudgetBook,
    now: DateTime<Utc>,
) -> Answer {
    let mut budget = None;
    let (response, outcome) = decide(
        request,
        defaults,
        admission,
        forecasts,
        budgets,
        &mut budget,
        now,
    );
    Answer {
        response,
        outcome,
        budget,
    }
}

/// What acted: `(namespace, budget, action)`.
type Acted = Option<(String, String, BudgetAction)>;

fn decide(
    request: &AdmissionRequest<DynamicObject>,
    defaults: &AnnotationDefaults,
    admission: &Admission,
    forecasts: &dyn ForecastCatalog,
    budgets: &dyn BudgetBook,
    acted: &mut Acted,
    now: DateTime<Utc>,
) -> (AdmissionResponse, Outcome) {
    let now = now.trunc_subsecs(0);
    let response = AdmissionResponse::from(request);

    if request.operation != Operation::Create {
        let outcome = Outcome::AllowedUntouched(Untouched::Operation(request.operation.clone()));
        return (response, outcome);
    }
    let kind = &request.kind;
    let Some(adapter) = admission
        .kinds
        .adapter_for(&kind.group, &kind.version, &kind.kind)
    else {
        return (response, Outcome::NotAJob);
    };
    let Some(object) = &request.object else {
        return invalid(
            response,
            "the AdmissionReview has no object to create".to_string(),
        );
    };
    let job = object;
    let annotations_map = job.metadata.annotations.as_ref();

    let hold = if admission.kueue == KueueMode::AdmissionGate && workload::is_queued(job) {
        Hold::KueueGate
    } else {
        Hold::Suspend
    };
    if let Some((untouched, warning)) = managed_elsewhere(adapter, job, hold) {
        let mut response = response;
        if annotations::is_deferrable(annotations_map) {
            response.warnings = Some(vec![warning]);
        }
        return (response, Outcome::AllowedUntouched(untouched));
    }
    // Not opted in: nothing of it is read, not even its pod templates. Without the opt-in at all,
    // carbonshift.dev/* keys are most likely a misspelt opt-in: say so.
    let opt_in = annotations_map.and_then(|a| a.get(DEFERRABLE));
    if opt_in.is_none_or(|v| v == "false") {
        let mut response = response;
        if opt_in.is_none() {
            let warnings = not_opted_in_warnings(annotations_map, adapter.kind());
            if !warnings.is_empty() {
                response.warnings = Some(warnings);
            }
        }
        return (
            response,
            Outcome::AllowedUntouched(Untouched::NotDeferrable),
        );
    }
    let pod_sets = match adapter.pod_sets(job) {
        Ok(sets) => sets,
        Err(e) => {
            return invalid(
                response,
                format!(
                    "the object is not a valid {} {}: {e}",
                    adapter.resource().api_version,
                    adapter.kind()
                ),
            );
        }
    };
    let subject = Subject {
        annotations: annotations_map,
        created: job
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| crate::units::from_jiff(t.0)),
        pod_sets: &pod_sets,
    };

    let mut deferral = match annotations::parse(&subject, defaults, now) {
        Ok(Some(deferral)) => deferral,
        Ok(None) => {
            return (
                response,
                Outcome::AllowedUntouched(Untouched::NotDeferrable),
            );
        }
        Err(e) => return deny(response, e),
    };
    // A marker or creation time copied from an older Job must not move this Job's window.
    deferral.submitted_at = now;

    // 4a. The namespace's budgets.
    let namespace = request
        .namespace
        .clone()
        .or_else(|| job.metadata.namespace.clone())
        .unwrap_or_default();
    let verdict = budgets
        .verdict(&namespace, &deferral.forecast, now)
        .unwrap_or_default();
    let mut budget_warnings = Vec::new();
    let mut cleared: Vec<&'static str> = Vec::new();
    if let Some(deciding) = verdict.deciding() {
        *acted = Some((namespace.clone(), deciding.name.clone(), deciding.action));
        match deciding.action {
            BudgetAction::Deny => {
                let message = deciding.deny_message(&namespace);
                let mut response = response.deny(&message);
                response.result = Status::failure(&message, "Forbidden").with_code(403);
                return (response, Outcome::OverBudget(message));
            }
            BudgetAction::Defer => {
                let feasible = deferral.is_feasible(now);
                let effect = if !feasible {
                    "its deadline leaves no time to wait, so it runs now: a budget never delays work past its deadline".to_string()
                } else if deferral.dry_run || deferral.run_now {
                    let mut keys = Vec::new();
                    if deferral.dry_run {
                        keys.push(DRY_RUN);
                    }
                    if deferral.run_now {
                        keys.push(RUN_NOW);
                    }
                    deferral.dry_run = false;
                    deferral.run_now = false;
                    cleared.extend(keys.iter().copied());
                    format!(
                        "the workload is held for its cleanest window up to its deadline: {} set to \"false\"",
                        keys.join(" and ")
                    )
                } else {
                    "the workload is held for its cleanest window up to its deadline".to_string()
                };
                budget_warnings.push(deciding.warning(&namespace, &effect));
            }
            BudgetAction::Warn => budget_warnings.push(deciding.warning(
                &namespace,
                "the workload is admitted as usual (action Warn)",
            )),
        }
        for other in verdict.exhausted.iter().skip(1) {
            budget_warnings.push(other.warning(
                &namespace,
                &format!("another budget decides (action {})", other.action.as_str()),
            ));
        }
    }

    let (outcome, held) = if deferral.dry_run {
        (Outcome::DryRun, false)
    } else if deferral.run_now {
        (Outcome::RunNow, false)
    } else if !deferral.is_feasible(now) {
        (Outcome::AdmittedWithWarning, false)
    } else if hold == Hold::KueueGate {
        (Outcome::Gated, true)
    } else {
        let already_suspended = adapter.is_suspended(job);
        (Outcome::Held { already_suspended }, true)
    };

    let mut warnings = Vec::new();
    if held {
        let check = workload::check_hold(adapter, job, &deferral, hold);
        if let Some(refusal) = check.refusal {
            return refuse(response, refusal);
        }
        warnings.extend(check.warnings);
    }
    if outcome == Outcome::AdmittedWithWarning {
        warnings.push(infeasible_warning(&deferral, now));
    }
    if deferral.is_capped() {
        warnings.push(capped_warning(&deferral));
    }
    warnings.extend(
        deferral
            .unknown_annotations
            .iter()
            .map(|k| unknown_warning(k)),
    );
    if deferral.candidates.len() > 1 {
        warnings.extend(
            deferral
                .candidates
                .iter()
                .filter(|c| forecasts.knows(c) == Some(false))
                .map(|c| missing_candidate_warning(c)),
        );
    } else if forecasts.knows(&deferral.forecast) == Some(false) {
        warnings.push(missing_forecast_warning(&deferral));
    }
    if deferral.power.watts <= 0.0 {
        warnings.push(zero_power_warning());
    }
    warnings.extend(budget_warnings);

    let (operations, replaced) = patch(adapter, job, held.then_some(hold), hold, &cleared, now);
    if !replaced.is_empty() {
        warnings.push(format!(
            "carbonshift writes {} itself; the values given were replaced",
            replaced.join(", ")
        ));
    }

    let mut response = match response.clone().with_patch(Patch(operations)) {
        Ok(response) => response,
        Err(e) => {
            let message =
                format!("carbonshift could not build its patch ({e}); the workload runs unheld");
            let mut response = response;
            response.warnings = Some(vec![message.clone()]);
            return (response, Outcome::Error(message));
        }
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    (response, outcome)
}

fn invalid(response: AdmissionResponse, message: String) -> (AdmissionResponse, Outcome) {
    let mut response = response.deny(&message);
    response.result = Status::failure(&message, "BadRequest").with_code(400);
    (response, Outcome::Invalid(message))
}

fn refuse(response: AdmissionResponse, message: String) -> (AdmissionResponse, Outcome) {
    let mut response = response.deny(&message);
    response.result = Status::failure(&message, "BadRequest").with_code(400);
    (response, Outcome::Refused(message))
}

fn deny(response: AdmissionResponse, error: AnnotationError) -> (AdmissionResponse, Outcome) {
    let message = error.to_string();
    let mut response = response.deny(&message);
    response.result = Status::failure(&message, "BadRequest").with_code(400);
    (response, Outcome::Denied(error))
}

/// Who else manages the workload, with the warning for one that asks for carbonshift all the same.
/// Kueue does not count when carbonshift holds its jobs with the admission gate (`hold`).
fn managed_elsewhere(
    adapter: &dyn Adapter,
    object: &DynamicObject,
    hold: Hold,
) -> Option<(Untouched, String)> {
    let kind = adapter.kind();
    match adapter.managed_elsewhere(object)? {
        ManagedElsewhere::Kueue if hold == Hold::KueueGate => None,
        ManagedElsewhere::Kueue => Some((
            Untouched::Kueue,
            format!(
                "{DEFERRABLE} is ignored: Kueue manages this {kind} ({KUEUE_QUEUE_NAME}) and carbonshift leaves it alone"
            ),
        )),
        ManagedElsewhere::ManagedBy(manager) => Some((
            Untouched::ManagedBy(manager.clone()),
            format!(
                "{DEFERRABLE} is ignored: spec.managedBy is {manager:?}, so carbonshift leaves the {kind} to that controller"
            ),
        )),
    }
}

/// The JSON patch for an admitted deferrable workload, and the markers it replaces or removes.
/// `held`: how it is held, if it is; `way`: how it would be (the `held-by` marker of a job Kueue
/// queues says so even when it is not held, so that the controller reads it as carbonshift's).
/// `cleared`: annotations set to `"false"` (the shortcuts a `Defer` budget takes away).
fn patch(
    adapter: &dyn Adapter,
    job: &DynamicObject,
    held: Option<Hold>,
    way: Hold,
    cleared: &[&'static str],
    now: DateTime<Utc>,
) -> (Vec<PatchOperation>, Vec<&'static str>) {
    let hold = held.is_some();
    let existing = job.metadata.annotations.as_ref();
    let current = |key: &str| existing.and_then(|m| m.get(key)).map(String::as_str);
    let submitted_at = timestamp(now);

    let mut set: Vec<(&'static str, String)> = vec![(SUBMITTED_AT, submitted_at.clone())];
    set.extend(cleared.iter().map(|key| (*key, "false".to_string())));
    let mut remove = Vec::new();
    let mut replaced = Vec::new();
    if current(SUBMITTED_AT).is_some_and(|v| v != submitted_at) {
        replaced.push(SUBMITTED_AT);
    }
    if hold {
        set.push((HELD, "true".to_string()));
    } else if current(HELD).is_some() {
        remove.push(HELD);
        replaced.push(HELD);
    }
    if current(RELEASED_AT).is_some() {
        remove.push(RELEASED_AT);
        replaced.push(RELEASED_AT);
    }
    if way == Hold::KueueGate {
        if current(HELD_BY).is_some_and(|v| v != HELD_BY_KUEUE_GATE) {
            replaced.push(HELD_BY);
        }
        set.push((HELD_BY, HELD_BY_KUEUE_GATE.to_string()));
    } else if current(HELD_BY).is_some() {
        remove.push(HELD_BY);
        replaced.push(HELD_BY);
    }
    if held == Some(Hold::KueueGate) {
        set.push((
            ADMISSION_GATED_BY,
            annotations::with_gate(current(ADMISSION_GATED_BY)),
        ));
    }

    let mut operations = Vec::new();
    if held == Some(Hold::Suspend) {
        operations.extend(suspend_operation(&job.data, adapter.suspend_path()));
    }
    operations.extend(annotation_operations(existing, &set, &remove));
    (operations, replaced)
}

fn infeasible_warning(deferral: &Deferral, now: DateTime<Utc>) -> String {
    let latest = timestamp(deferral.latest_start());
    match deferral.limit {
        Limit::Deadline(deadline) => format!(
            "carbonshift does not hold this Job: to finish by its {DEADLINE} {} it had to start by {latest} ({} before), which is before now ({})",
            timestamp(deadline),
            format_duration(deferral.duration),
            timestamp(now),
        ),
        Limit::MaxDelay(_) | Limit::DefaultMaxDelay(_) => format!(
            "carbonshift does not hold this Job: its latest start {latest} is before now ({})",
            timestamp(now)
        ),
    }
}

fn capped_warning(deferral: &Deferral) -> String {
    let cap = format_duration(deferral.max_allowed_delay);
    let latest = timestamp(deferral.latest_start());
    match deferral.limit {
        Limit::MaxDelay(delay) => format!(
            "{MAX_DELAY} {} is longer than the operator's maximum delay of {cap}; the Job starts by {latest} at the latest",
            format_duration(delay)
        ),
        Limit::Deadline(deadline) => format!(
            "{DEADLINE} {} is further out than the operator's maximum delay of {cap} allows; the Job starts by {latest} at the latest",
            timestamp(deadline)
        ),
        Limit::DefaultMaxDelay(_) => format!(
            "the delay is capped at the operator's maximum of {cap}; the Job starts by {latest} at the latest"
        ),
    }
}

/// Warnings for a workload without `carbonshift.dev/deferrable` that carries other
/// `carbonshift.dev/*` annotations (the markers aside: a copied Job may carry them).
fn not_opted_in_warnings(
    annotations_map: Option<&std::collections::BTreeMap<String, String>>,
    kind: &str,
) -> Vec<String> {
    annotations_map
        .into_iter()
        .flatten()
        .map(|(key, _)| key.as_str())
        .filter(|key| key.starts_with(annotations::PREFIX))
        .filter(|key| ![HELD, SUBMITTED_AT, RELEASED_AT].contains(key))
        .map(|key| {
            if annotations::ALL.contains(&key) {
                format!(
                    "{key} is ignored: the {kind} does not opt in; add {DEFERRABLE}: \"true\" for carbonshift to hold it"
                )
            } else {
                format!(
                    "{}; the {kind} does not opt in ({DEFERRABLE} is absent), so carbonshift leaves it alone",
                    unknown_warning(key)
                )
            }
        })
        .collect()
}

fn missing_forecast_warning(deferral: &Deferral) -> String {
    let which = match deferral.forecast_source {
        annotations::Source::Annotation => annotations::FORECAST.to_string(),
        annotations::Source::Default => "the operator's default forecast".to_string(),
    };
    format!(
        "{which} {:?}: no CarbonForecast of that name exists (or the operator's --forecast-selector leaves it out); without a forecast the Job gets no plan (reason NoForecast) and follows the operator's --no-forecast policy: create it or fix the name (kubectl get carbonforecasts)",
        deferral.forecast
    )
}

fn missing_candidate_warning(name: &str) -> String {
    format!(
        "{} candidate {name:?}: no CarbonForecast of that name exists (or the operator's --forecast-selector leaves it out); the workload is placed among the other candidates only: create it or fix the name (kubectl get carbonforecasts)",
        annotations::FORECASTS
    )
}

fn zero_power_warning() -> String {
    format!(
        "the power estimate is 0 W (no GPU or CPU requests in the pod template and no {}), so carbonshift can report no saving (0 g avoided): set {} (for example \"1400W\") or resource requests",
        annotations::POWER,
        annotations::POWER
    )
}

fn unknown_warning(key: &str) -> String {
    match closest_known(key) {
        Some(known) => {
            format!("{key} is not a carbonshift annotation and is ignored; did you mean {known}?")
        }
        None => format!("{key} is not a carbonshift annotation and is ignored"),
    }
}

/// Edits (insertions, deletions, substitutions) that still make a typo rather than another word.
const MAX_TYPO_DISTANCE: usize = 2;

/// The known annotation nearest to `key` by edit distance, if it is near enough to be a typo.
fn closest_known(key: &str) -> Option<&'static str> {
    let name = key.strip_prefix(annotations::PREFIX).unwrap_or(key);
    annotations::ALL
        .iter()
        // The markers are carbonshift's own; never suggest setting them.
        .filter(|known| ![HELD, SUBMITTED_AT, RELEASED_AT, HELD_BY].contains(known))
        .map(|known| {
            let known_name = known.strip_prefix(annotations::PREFIX).unwrap_or(known);
            (edit_distance(name, known_name), *known)
        })
        .filter(|(distance, _)| *distance <= MAX_TYPO_DISTANCE)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests;
