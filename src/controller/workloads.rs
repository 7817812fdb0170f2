//! The CarbonWorkload controller: holds each deferrable Job until its lowest-carbon window and
//! follows it to the end, recording everything in the Job's CarbonWorkload.
//!
//! Each reconcile of a Job runs the phases of a functional core with an imperative shell:
//!
//! 1. **fetch** — the Job comes from the controller's cache; its CarbonWorkload is read from the
//!    API (one GET, so that the decision never works from a cache older than carbonshift's own
//!    last write); the parsed forecast comes from the in-memory
//!    [`ForecastStore`](super::ForecastStore).
//! 2. **decide** — [`lifecycle::decide`] (pure): the workload's spec and status, at most one
//!    write to the Job, the Events and the time to look again.
//! 3. **apply** — in this order, each only when needed: the workload spec by server-side apply
//!    (creating or adopting it, owned by the Job with `controller` and `blockOwnerDeletion`); the
//!    guarded release or pause patch ([`super::release`]); the workload status by server-side
//!    apply when it differs from the current one. A guarded patch refused because the Job changed
//!    writes nothing else and decides again at once.
//! 4. **record** — Events on the Job and on the workload, the release and completion metrics
//!    (after the writes succeeded, so a failed write is never counted).
//! 5. **requeue** — at the Decision's time (at the latest an hour later, as a safety net;
//!    finished workloads wait for a change).
//!
//! [`run`] drives the reconciler with a `kube::runtime::Controller` on Jobs — all namespaces, or
//! one controller per namespace of [`OperatorConfig::namespaces`](super::OperatorConfig) — which
//! also owns the CarbonWorkloads (a deleted or edited workload is put right) and is triggered by
//! the forecast store: when a forecast's data changes
//! ([`ForecastStore::subscribe`](super::ForecastStore::subscribe)), the Jobs whose workloads wait
//! on that forecast are reconciled. The store announces a change only after it holds the new
//! data, so a re-plan never reads the old forecast. Finding those Jobs scans the cached workloads
//! once per change: O(number of workloads) per forecast update, a few milliseconds for thousands
//! of workloads every refresh interval, with no index to keep consistent. (A forecast that only
//! turns fresh or stale, with the same data, announces nothing; the hourly safety-net requeue
//! picks that up.)
//!
//! The watch cannot filter Jobs by annotation, so every Job in scope is cached; the reconciler
//! returns at once for Jobs that carry neither `carbonshift.dev/deferrable` nor
//! `carbonshift.dev/held`.
//!
//! Every [`GAUGE_INTERVAL`] the workload gauges (`workloads{phase}`, `held_past_latest_start`)
//! are recomputed from the cached workloads ([`lifecycle::tally`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::broadcast;
use tracing::{debug, info, instrument, warn};

use super::release::{self, Guard, Outcome};
use super::{Context, Error, ForecastSelector, ForecastSnapshot, Note, NoteKind, WORKLOADS};
use crate::api::annotations::{DEFERRABLE, HELD};
use crate::api::{
    CarbonForecast, CarbonWorkload, CarbonWorkloadSpec, CarbonWorkloadStatus, FIELD_MANAGER, Phase,
};
use crate::lifecycle::{
    self, Decision, EventType, ForecastInput, ForecastView, Input, JobAction, JobView,
};
use crate::metrics::ControllerLabels;

/// The longest a reconcile waits for its next look at a Job that is not finished, whatever the
/// Decision says: a safety net against lost watch events.
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// How often the workload gauges are recomputed from the cache.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(30);
/// How soon a Job is looked at again when the cache still shows it as it was before carbonshift's
/// own patch (the watch event of the patch is on its way).
pub const STALE_RECHECK: Duration = Duration::from_secs(1);
/// First retry delay after a Kubernetes API error.
pub const API_RETRY_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay after Kubernetes API errors.
pub const API_RETRY_MAX: Duration = Duration::from_secs(300);

/// Per-Job memory of this process (nothing in it is needed after a restart).
#[derive(Debug, Clone, Default)]
struct Memory {
    /// The resourceVersion the Job had when carbonshift last patched it: a cache still showing
    /// it is older than the patch.
    patched_from: Option<String>,
    /// Consecutive reconciles that failed on the Kubernetes API.
    api_failures: u32,
}

/// What the shell found out about a workload's forecast; [`KnownForecast::input`] lends it to the
/// state machine.
#[derive(Debug, Clone)]
pub enum KnownForecast {
    /// Parsed data and whether it is fresh.
    Data(Arc<ForecastSnapshot>, bool),
    /// The object exists without data and without a failure, waited for since then.
    Awaiting(DateTime<Utc>),
    /// The object exists without data; its `Ready` condition is false for this reason.
    Failed(String),
    /// No such object, or one outside this operator's forecast selector.
    Missing,
}

impl KnownForecast {
    /// Classifies a CarbonForecast read from the API (`None`: it does not exist). The wait for a
    /// forecast without data starts at its creation, or at `started` (this replica's
    /// leadership) when that is later: nobody refreshed it before.
    pub fn of(
        object: Option<&CarbonForecast>,
        selector: &ForecastSelector,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> KnownForecast {
        let Some(object) = object.filter(|o| selector.matches(o.labels())) else {
            return KnownForecast::Missing;
        };
        let snapshot = match ForecastSnapshot::from_object(object) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                warn!(%error, "the CarbonForecast's status is not a usable forecast");
                return KnownForecast::Failed("InvalidStatus".to_string());
            }
        };
        if !snapshot.forecast.is_empty() {
            let fresh = snapshot.is_fresh(now);
            return KnownForecast::Data(Arc::new(snapshot), fresh);
        }
        let ready = object
            .status
            .as_ref()
            .and_then(crate::controller::status::ready_condition);
        match ready {
            Some(condition) if condition.status == "False" => {
                KnownForecast::Failed(condition.reason.clone())
            }
            _ => {
                let created = object
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
                    .unwrap_or(started);
                KnownForecast::Awaiting(created.max(started))
            }
        }
    }

    /// The state machine's view.
    pub fn input(&self) -> ForecastInput<'_> {
        match self {
            KnownForecast::Data(snapshot, fresh) => ForecastInput::Data(view_of(snapshot, *fresh)),
            KnownForecast::Awaiting(since) => ForecastInput::Awaiting { since: *since },
            KnownForecast::Failed(reason) => ForecastInput::Failed { reason },
            KnownForecast::Missing => ForecastInput::Missing,
        }
    }
}

/// How often one reconcile decides again after its guarded patch was refused because the Job
/// changed (each time from the Job read afresh) before it leaves the Job to the next reconcile.
pub const MAX_REDECISIONS: usize = 3;

/// The reconciler's state: the shared [`Context`], the lifecycle settings and per-Job memory.
#[derive(Debug)]
pub struct WorkloadController {
    ctx: Arc<Context>,
    lifecycle: lifecycle::Config,
    memory: Mutex<HashMap<String, Memory>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `namespace/name`.
fn key(job: &Job) -> String {
    format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
}

impl WorkloadController {
    /// A controller around `ctx`.
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let lifecycle = lifecycle::Config {
            margin: ctx.config.margin,
            no_forecast: ctx.config.no_forecast,
            forecast_wait: ctx.config.forecast_wait,
        };
        Arc::new(Self {
            ctx,
            lifecycle,
            memory: Mutex::default(),
        })
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// What is known of the named forecast at `now`. The store answers when it has data; when
    /// it has none (the watch may not have delivered the forecast, or its first status, yet) the
    /// CarbonForecast is read from the API, so that "no forecast" is decided from the truth and
    /// never from a cache that has not caught up.
    async fn forecast(&self, name: &str, now: DateTime<Utc>) -> Result<KnownForecast, Error> {
        if let Some(snapshot) = self.ctx.store.get(name)
            && !snapshot.forecast.is_empty()
        {
            let fresh = snapshot.is_fresh(now);
            return Ok(KnownForecast::Data(snapshot, fresh));
        }
        let api: Api<CarbonForecast> = Api::all(self.ctx.client.clone());
        let object = api
            .get_opt(name)
            .await
            .map_err(Error::api(format!("reading CarbonForecast {name}")))?;
        Ok(KnownForecast::of(
            object.as_ref(),
            &self.ctx.config.forecast_selector,
            self.ctx.started,
            now,
        ))
    }

    /// Whether the cache shows `job` as it was before carbonshift's own last patch.
    fn is_stale(&self, job: &Job) -> bool {
        let mut memory = lock(&self.memory);
        let Some(entry) = memory.get_mut(&key(job)) else {
            return false;
        };
        match &entry.patched_from {
            Some(rv) if job.metadata.resource_version.as_ref() == Some(rv) => true,
            _ => {
                entry.patched_from = None;
                false
            }
        }
    }

    fn patched(&self, job: &Job) {
        lock(&self.memory).entry(key(job)).or_default().patched_from =
            job.metadata.resource_version.clone();
    }

    fn succeeded(&self, job: &Job) {
        let mut memory = lock(&self.memory);
        let k = key(job);
        if memory.get(&k).is_some_and(|m| m.patched_from.is_none()) {
            memory.remove(&k);
        } else if let Some(m) = memory.get_mut(&k) {
            m.api_failures = 0;
        }
    }

    fn api_failure(&self, job: &Job) -> u32 {
        let mut memory = lock(&self.memory);
        let entry = memory.entry(key(job)).or_default();
        entry.api_failures = entry.api_failures.saturating_add(1);
        entry.api_failures
    }

    /// Drops the memory of a Job that is gone.
    fn forget(&self, namespace: Option<&str>, name: &str) {
        lock(&self.memory).remove(&format!("{}/{name}", namespace.unwrap_or_default()));
    }
}

/// Whether the reconciler has anything to look at: the Job opts in, or carbonshift holds it.
pub fn concerns_carbonshift(job: &Job) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DEFERRABLE) || a.contains_key(HELD))
}

/// Reconciles one Job (module documentation), timing it into
/// `reconcile_duration_seconds{controller="workloads"}`.
pub async fn reconcile(job: Arc<Job>, this: Arc<WorkloadController>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_job(&job, &this).await;
    this.ctx
        .metrics
        .reconcile_duration_seconds
        .get_or_create(&ControllerLabels {
            controller: WORKLOADS.to_string(),
        })
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        this.succeeded(&job);
    }
    result
}

/// Retries after a failed reconcile: API errors back off per Job (5s doubling to 5m), an object
/// that cannot be handled waits for a change. Every error is counted by category.
pub fn error_policy(job: Arc<Job>, error: &Error, this: Arc<WorkloadController>) -> Action {
    this.ctx
        .metrics
        .record_reconcile_error(WORKLOADS, error.category());
    warn!(job = %key(&job), %error, category = error.category(), "reconcile failed");
    match error {
        Error::InvalidObject(_) => Action::await_change(),
        Error::Api { .. } => Action::requeue(crate::retry::api_backoff(this.api_failure(&job))),
    }
}

#[instrument(skip_all, fields(job = %job.name_any(), namespace = job.namespace().unwrap_or_default()))]
async fn reconcile_job(job: &Job, this: &WorkloadController) -> Result<Action, Error> {
    if !concerns_carbonshift(job) {
        return Ok(Action::await_change());
    }
    let (Some(namespace), Some(name)) = (job.namespace(), job.metadata.name.clone()) else {
        return Err(Error::InvalidObject(
            "a Job without a namespace or a name".to_string(),
        ));
    };
    let ctx = &this.ctx;
    if !ctx.config.namespaces.is_empty() && !ctx.config.namespaces.contains(&namespace) {
        return Ok(Action::await_change());
    }
    if this.is_stale(job) {
        debug!("the cache has not seen carbonshift's last patch yet");
        return Ok(Action::requeue(STALE_RECHECK));
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut current = std::borrow::Cow::Borrowed(job);
    for _ in 0..MAX_REDECISIONS {
        match decide_and_apply(&current, &namespace, &name, this).await? {
            Step::Done(action) => return Ok(action),
            Step::Changed => {
                // The guarded patch was refused (409/422): the Job changed since it was read.
                // Decide again from the Job as it is now, not from the cache that may still
                // show the old one, and with every other fact read afresh too.
                match jobs
                    .get_opt(&name)
                    .await
                    .map_err(Error::api(format!("reading Job {namespace}/{name}")))?
                {
                    Some(fresh) if concerns_carbonshift(&fresh) => {
                        current = std::borrow::Cow::Owned(fresh);
                    }
                    _ => return Ok(Action::await_change()),
                }
            }
        }
    }
    info!("the Job kept changing under carbonshift's patch; deciding again shortly");
    Ok(Action::requeue(STALE_RECHECK))
}

/// How one decision ended.
enum Step {
    /// Everything applied; look again then.
    Done(Action),
    /// The guarded patch was refused because the Job changed; nothing else was written.
    Changed,
}

/// One pass of fetch → decide → apply → record → requeue (module documentation) for `job` as
/// read.
async fn decide_and_apply(
    job: &Job,
    namespace: &str,
    name: &str,
    this: &WorkloadController,
) -> Result<Step, Error> {
    let ctx = &this.ctx;

    // 1. fetch
    let now = ctx.clock.now();
    let workloads: Api<CarbonWorkload> = Api::namespaced(ctx.client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let workload = workloads.get_opt(name).await.map_err(Error::api(format!(
        "reading CarbonWorkload {namespace}/{name}"
    )))?;
    let view = JobView::from_job(job, &ctx.config.annotation_defaults, now);
    let forecast = match lifecycle::effective_spec(&view, workload.as_ref()) {
        Some(spec) => this.forecast(&spec.forecast, now).await?,
        None => KnownForecast::Missing,
    };

    // 2. decide
    let input = Input {
        job: &view,
        workload: workload.as_ref(),
        forecast: forecast.input(),
        config: &this.lifecycle,
    };
    let mut decision = lifecycle::decide(&input, now);

    // 3. apply
    if decision.stale_workload {
        if let Some(old) = &workload {
            delete_stale(&workloads, old).await?;
        }
        return Ok(Step::Done(Action::requeue(STALE_RECHECK)));
    }
    let workload = match (&decision.spec, workload) {
        (Some(spec), current) if needs_apply(current.as_ref(), spec, &view) => {
            Some(apply_spec(&workloads, &view, spec).await?)
        }
        (_, current) => current,
    };
    let mut released = None;
    match &decision.job_action {
        None => {}
        Some(action) => {
            let outcome = match action {
                JobAction::Release { .. } => {
                    release::release(&jobs, name, &Guard::for_job(job), now).await
                }
                JobAction::Pause => {
                    let marker = view.released_marker.as_deref().unwrap_or_default();
                    release::pause(&jobs, name, view.resource_version.as_deref(), marker).await
                }
            }
            .map_err(Error::api(format!("patching Job {namespace}/{name}")))?;
            match outcome {
                Outcome::Applied(_) => {
                    this.patched(job);
                    released = Some(action.clone());
                }
                Outcome::Changed(message) => {
                    info!(%message, "the Job changed since it was read; deciding again");
                    return Ok(Step::Changed);
                }
                Outcome::Gone => return Ok(Step::Done(Action::await_change())),
            }
        }
    }
    let Some(workload) = workload else {
        // No workload (the Job's annotations never could be read): only the Job is recorded.
        publish(ctx, job, None, &decision).await;
        record_release(ctx, released.as_ref(), now);
        return Ok(Step::Done(Action::await_change()));
    };
    decision.stamp_generation(workload.metadata.generation);
    let status_written = match &decision.status {
        Some(status) if Some(status) != workload.status.as_ref() => {
            apply_status(&workloads, name, status).await?;
            true
        }
        _ => false,
    };

    // 4. record
    record_release(ctx, released.as_ref(), now);
    if status_written && let Some(completion) = decision.completion {
        ctx.metrics
            .emitted_grams
            .inc_by(completion.emitted_grams.max(0.0));
        if let Some(avoided) = completion.avoided_grams {
            // A counter cannot go down: a Job that ran dirtier than running at once would
            // have shows its negative saving in its status only.
            ctx.metrics.avoided_grams.inc_by(avoided.max(0.0));
        }
    }
    publish(ctx, job, Some(&workload), &decision).await;

    // 5. requeue
    Ok(Step::Done(requeue(&decision, now)))
}

/// The lifecycle's view of a stored forecast.
fn view_of(snapshot: &ForecastSnapshot, fresh: bool) -> ForecastView<'_> {
    ForecastView {
        forecast: &snapshot.forecast,
        actuals: (!snapshot.actuals.is_empty()).then_some(&*snapshot.actuals),
        version: &snapshot.version,
        fresh,
    }
}

fn requeue(decision: &Decision, now: DateTime<Utc>) -> Action {
    let finished = decision
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(Phase::is_terminal);
    match decision.requeue_at {
        Some(at) => {
            let wait = (at - now)
                .max(TimeDelta::zero())
                .to_std()
                .unwrap_or_default();
            Action::requeue(wait.min(MAX_REQUEUE))
        }
        None if finished => Action::await_change(),
        None => Action::requeue(MAX_REQUEUE),
    }
}

fn record_release(ctx: &Context, action: Option<&JobAction>, now: DateTime<Utc>) {
    if let Some(JobAction::Release { reason, planned }) = action {
        let lateness = (now - *planned).num_milliseconds() as f64 / 1000.0;
        ctx.metrics.record_release(reason.as_str(), lateness);
    }
}

/// Whether the workload must be (re)applied: missing, another spec, or not owned by the Job.
fn needs_apply(current: Option<&CarbonWorkload>, spec: &CarbonWorkloadSpec, job: &JobView) -> bool {
    match current {
        None => true,
        Some(w) => {
            w.spec != *spec
                || !w
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == job.uid && o.controller == Some(true))
        }
    }
}

/// The owner reference from a workload to its Job.
pub fn owner_reference(job: &JobView) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".to_string(),
        kind: "Job".to_string(),
        name: job.name.clone(),
        uid: job.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

async fn apply_spec(
    api: &Api<CarbonWorkload>,
    job: &JobView,
    spec: &CarbonWorkloadSpec,
) -> Result<CarbonWorkload, Error> {
    let object = json!({
        "apiVersion": CarbonWorkload::api_version(&()),
        "kind": CarbonWorkload::kind(&()),
        "metadata": {
            "name": job.name,
            "namespace": job.namespace,
            "ownerReferences": [owner_reference(job)],
        },
        "spec": spec,
    });
    api.patch(
        &job.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(Error::api(format!(
        "applying CarbonWorkload {}/{}",
        job.namespace, job.name
    )))
}

async fn apply_status(
    api: &Api<CarbonWorkload>,
    name: &str,
    status: &CarbonWorkloadStatus,
) -> Result<CarbonWorkload, Error> {
    let object = json!({
        "apiVersion": CarbonWorkload::api_version(&()),
        "kind": CarbonWorkload::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(Error::api(format!(
        "applying the status of CarbonWorkload {name}"
    )))
}

/// Deletes the workload of an older Job of the same name (only that one: the UID is a
/// precondition).
async fn delete_stale(api: &Api<CarbonWorkload>, old: &CarbonWorkload) -> Result<(), Error> {
    let name = old.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: old.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or replaced meanwhile: the next reconcile sees what is there.
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
        Err(source) => Err(Error::Api {
            action: format!("deleting the stale CarbonWorkload {name}"),
            source,
        }),
    }
}

/// Publishes the Decision's Events on the Job and, when there is one, on its workload.
async fn publish(ctx: &Context, job: &Job, workload: Option<&CarbonWorkload>, decision: &Decision) {
    if decision.events.is_empty() {
        return;
    }
    let job_ref: ObjectReference = job.object_ref(&());
    let workload_ref = workload.map(|w| w.object_ref(&()));
    for event in &decision.events {
        let note = Note {
            kind: match event.type_ {
                EventType::Normal => NoteKind::Normal,
                EventType::Warning => NoteKind::Warning,
            },
            reason: event.reason,
            action: event.action,
            message: event.note.clone(),
        };
        ctx.publish(WORKLOADS, &job_ref, &note).await;
        if let Some(workload_ref) = &workload_ref {
            ctx.publish(WORKLOADS, workload_ref, &note).await;
        }
    }
}

/// Whether a workload waits for forecast data: held (pending, deferred, paused), or a dry run not
/// planned yet.
fn waits_for_forecast(w: &CarbonWorkload) -> bool {
    let status = w.status.as_ref();
    match status.and_then(|s| s.phase) {
        None | Some(Phase::Pending | Phase::Deferred | Phase::Paused) => true,
        Some(Phase::Succeeded | Phase::Failed) => false,
        Some(_) => w.spec.dry_run && status.is_none_or(|s| s.forecast_version.is_none()),
    }
}

/// The Jobs to reconcile when forecast `name` changed (every forecast when `None`): those whose
/// cached workload waits on it. One scan of the cache.
pub fn jobs_waiting_on(
    workloads: &Store<CarbonWorkload>,
    name: Option<&str>,
) -> Vec<ObjectRef<Job>> {
    workloads
        .state()
        .iter()
        .filter(|w| name.is_none_or(|n| w.spec.forecast == n))
        .filter(|w| waits_for_forecast(w))
        .map(|w| {
            let job = ObjectRef::new(&w.spec.job_ref.name);
            match w.namespace() {
                Some(ns) => job.within(&ns),
                None => job,
            }
        })
        .collect()
}

/// The names of forecasts whose data changed, from the store; `None` after the receiver fell
/// behind (treat every forecast as changed).
fn forecast_changes(
    receiver: broadcast::Receiver<String>,
) -> impl Stream<Item = Option<String>> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Ok(name) => Some((Some(name), receiver)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some((None, receiver)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}

/// Runs the controller until `shutdown` completes (reconciles in progress finish first). Fill
/// the context's forecast store from the API before calling it, so that no Job is decided
/// without the last known forecasts; leader election starts and stops this from outside.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.boxed().shared();
    let this = WorkloadController::new(ctx.clone());
    let scopes: Vec<Option<String>> = if ctx.config.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config.namespaces.iter().cloned().map(Some).collect()
    };
    info!(controller = WORKLOADS, namespaces = ?ctx.config.namespaces, "starting");
    let mut stores = Vec::new();
    let mut controllers = Vec::new();
    for scope in scopes {
        let (jobs, workloads): (Api<Job>, Api<CarbonWorkload>) = match &scope {
            None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
            ),
        };
        let (reader, writer) = reflector::store();
        let owned = watcher(workloads, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .touched_objects();
        let index = reader.clone();
        let triggers = forecast_changes(ctx.store.subscribe())
            .flat_map(move |name| futures::stream::iter(jobs_waiting_on(&index, name.as_deref())));
        stores.push(reader);
        let this = this.clone();
        controllers.push(
            Controller::new(jobs, watcher::Config::default())
                .owns_stream(owned)
                .reconcile_on(triggers)
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile, error_policy, this.clone())
                .for_each(move |result| {
                    let this = this.clone();
                    async move {
                        match result {
                            Ok((job, _)) => debug!(job = %job.name, "reconciled"),
                            // Already logged and counted by error_policy.
                            Err(controller::Error::ReconcilerFailed(..)) => {}
                            Err(controller::Error::ObjectNotFound(job)) => {
                                this.forget(job.namespace.as_deref(), &job.name);
                                debug!(job = %job.name, "deleted before its reconcile");
                            }
                            Err(error) => warn!(%error, "workload controller"),
                        }
                    }
                })
                .boxed(),
        );
    }
    let gauges = gauges(ctx.clone(), stores, shutdown);
    futures::join!(futures::future::join_all(controllers), gauges);
    info!(controller = WORKLOADS, "stopped");
}

/// Recomputes the workload gauges every [`GAUGE_INTERVAL`] until `shutdown`.
async fn gauges(
    ctx: Arc<Context>,
    stores: Vec<Store<CarbonWorkload>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => set_gauges(&ctx, &stores),
        }
    }
}

/// Sets `workloads{phase}` and `held_past_latest_start` from the cached workloads.
pub fn set_gauges(ctx: &Context, stores: &[Store<CarbonWorkload>]) {
    let all: Vec<Arc<CarbonWorkload>> = stores.iter().flat_map(Store::state).collect();
    let tally = lifecycle::tally(all.iter().map(|w| w.as_ref()), ctx.clock.now());
    ctx.metrics.set_workloads(|phase| tally.count(phase));
    ctx.metrics
        .held_past_latest_start
        .set(tally.held_past_latest_start);
}

#[cfg(test)]
mod tests;
