//! The CarbonWorkload controller: holds each deferrable Job until its lowest-carbon window and
//! follows it to the end, recording everything in the Job's CarbonWorkload.
//!
//! Each reconcile of a Job runs the phases of a functional core with an imperative shell:
//!
//! 1. **fetch** — the Job comes from the controller's cache (trimmed by
//!    [`crate::workload::prune`]); its CarbonWorkload from the controller's cache too, unless
//!    carbonshift wrote it since and the cache does not show that write yet (then one GET, so
//!    that the decision never works from a workload older than carbonshift's own last write);
//!    the parsed forecast comes from the in-memory [`ForecastStore`](super::ForecastStore).
//! 2. **decide** — [`lifecycle::decide`] (pure): the workload's spec and status, at most one
//!    write to the Job, the Events and the time to look again.
//! 3. **apply** — in this order, each only when needed: the workload spec by server-side apply
//!    (creating or adopting it, owned by the Job with `controller` and `blockOwnerDeletion`); the
//!    guarded release or pause patch ([`super::release`]); the workload status by server-side
//!    apply when it differs from the current one. A guarded patch refused because the Job changed
//!    writes nothing else and decides again at once.
//! 4. **record** — Events on the Job, the release and completion metrics (after the writes
//!    succeeded, so a failed write is never counted).
//! 5. **arm and requeue** — when the state machine will release the workload at the Decision's
//!    time, the release is prepared and armed in the kind's [`releaser`], which sends it at that
//!    second; the reconcile looks again shortly after it, else at the Decision's time (at the
//!    latest an hour later, as a safety net; finished workloads wait for a change).
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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use kube::api::Api;
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::release::{self, Guard, Outcome};
use super::{Context, Error, WORKLOADS};
use crate::api::annotations::{DEFERRABLE, HELD};
use crate::api::{CarbonForecast, CarbonWorkload, Phase};
use crate::lifecycle::{self, Decision, Input, JobAction};
use crate::metrics::ControllerLabels;
use crate::workload::{self, Adapter};

/// The longest a reconcile waits for its next look at a Job that is not finished, whatever the
/// Decision says: a safety net against lost watch events.
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// How often the workload gauges are recomputed from the cache.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(30);
/// How soon a Job is looked at again when the cache still shows it as it was before carbonshift's
/// own patch (the watch event of the patch is on its way).
pub const STALE_RECHECK: Duration = Duration::from_secs(1);
/// How soon a Job whose release the releaser is sending is looked at again.
pub const IN_FLIGHT_RECHECK: Duration = Duration::from_secs(5);
/// First retry delay after a Kubernetes API error.
pub const API_RETRY_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay after Kubernetes API errors.
pub const API_RETRY_MAX: Duration = Duration::from_secs(300);

/// Per-Job memory of this process (nothing in it is needed after a restart). An entry lives
/// only while one of its fields is set: it is dropped when the caches have caught up with
/// carbonshift's writes and the last reconcile succeeded.
#[derive(Debug, Clone, Default)]
struct Memory {
    /// The resourceVersion the Job had when carbonshift last patched it: a cache still showing
    /// it is older than the patch.
    patched_from: Option<String>,
    /// The resourceVersion of the CarbonWorkload as carbonshift last wrote it: until the cache
    /// shows it, the workload is read from the API.
    written: Option<String>,
    /// Consecutive reconciles that failed on the Kubernetes API.
    api_failures: u32,
}

impl Memory {
    fn is_empty(&self) -> bool {
        self.patched_from.is_none() && self.written.is_none() && self.api_failures == 0
    }
}

/// Where a scope's reconciles can be asked for and its CarbonWorkloads are cached.
#[derive(Debug, Clone)]
struct Scope {
    /// The namespace, `None` for all.
    namespace: Option<String>,
    /// The controller's cache of the scope's CarbonWorkloads.
    workloads: Store<CarbonWorkload>,
    /// Asks the scope's controller for a reconcile.
    trigger: futures::channel::mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
}

/// How often one reconcile decides again after its guarded patch was refused because the Job
/// changed (each time from the Job read afresh) before it leaves the Job to the next reconcile.
pub const MAX_REDECISIONS: usize = 3;

/// The reconciler's state for one kind: the shared [`Context`], the kind's adapter, the lifecycle
/// settings and per-object memory.
#[derive(Debug)]
pub struct WorkloadController {
    ctx: Arc<Context>,
    adapter: &'static dyn Adapter,
    lifecycle: lifecycle::Config,
    memory: Mutex<HashMap<String, Memory>>,
    scopes: Mutex<Vec<Scope>>,
    armed: Mutex<releaser::Armed>,
    armed_changed: tokio::sync::Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `namespace/name`.
fn key(job: &DynamicObject) -> String {
    format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
}

impl WorkloadController {
    /// A controller of `adapter`'s kind around `ctx`.
    pub fn new(ctx: Arc<Context>, adapter: &'static dyn Adapter) -> Arc<Self> {
        let lifecycle = lifecycle::Config {
            margin: ctx.config.margin,
            no_forecast: ctx.config.no_forecast,
            forecast_wait: ctx.config.forecast_wait,
            verify_give_up: ctx.config.verify_give_up,
            release_ack_wait: ctx.config.release_ack_wait,
        };
        Arc::new(Self {
            ctx,
            adapter,
            lifecycle,
            memory: Mutex::default(),
            scopes: Mutex::default(),
            armed: Mutex::default(),
            armed_changed: tokio::sync::Notify::new(),
        })
    }

    /// Registers a scope's cache of CarbonWorkloads and its reconcile trigger.
    fn add_scope(
        &self,
        namespace: Option<String>,
        workloads: Store<CarbonWorkload>,
        trigger: futures::channel::mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    ) {
        lock(&self.scopes).push(Scope {
            namespace,
            workloads,
            trigger,
        });
    }

    fn scope_of(&self, namespace: &str) -> Option<Scope> {
        lock(&self.scopes)
            .iter()
            .find(|s| s.namespace.as_deref().is_none_or(|n| n == namespace))
            .cloned()
    }

    /// Asks for a reconcile of the object `namespace/name` now.
    fn reconcile_now(&self, namespace: &str, name: &str) {
        if let Some(scope) = self.scope_of(namespace) {
            let object =
                ObjectRef::new_with(name, self.adapter.resource().clone()).within(namespace);
            // A closed channel means the controller stopped: nothing left to ask.
            let _ = scope.trigger.unbounded_send(object);
        }
    }

    /// The CarbonWorkload `namespace/name`: from the controller's cache when it shows
    /// carbonshift's last write of it (or carbonshift wrote none since this process started),
    /// otherwise — not cached yet, or the cache behind carbonshift's own write — from the API, so
    /// that a decision never works from a workload older than carbonshift's last write.
    async fn workload(
        &self,
        api: &Api<CarbonWorkload>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<CarbonWorkload>, Error> {
        let key = format!("{namespace}/{name}");
        let cached = self
            .scope_of(namespace)
            .and_then(|scope| scope.workloads.get(&ObjectRef::new(name).within(namespace)));
        if let Some(cached) = cached {
            let mut memory = lock(&self.memory);
            let written = memory.get(&key).and_then(|m| m.written.clone());
            match written {
                None => return Ok(Some(cached.as_ref().clone())),
                Some(rv) if cached.metadata.resource_version.as_ref() == Some(&rv) => {
                    if let Some(m) = memory.get_mut(&key) {
                        m.written = None;
                    }
                    return Ok(Some(cached.as_ref().clone()));
                }
                Some(_) => {}
            }
        }
        api.get_opt(name).await.map_err(Error::api(format!(
            "reading CarbonWorkload {namespace}/{name}"
        )))
    }

    /// Remembers the resourceVersion of carbonshift's last write of the workload `key`.
    fn wrote(&self, key: &str, workload: &CarbonWorkload) {
        lock(&self.memory)
            .entry(key.to_string())
            .or_default()
            .written = workload.metadata.resource_version.clone();
    }

    fn armed_next(&self) -> Option<DateTime<Utc>> {
        lock(&self.armed).next()
    }

    fn due_by(&self, at: DateTime<Utc>, limit: usize) -> usize {
        lock(&self.armed).due_by(at, limit)
    }

    fn take_due(&self, now: DateTime<Utc>) -> Vec<releaser::Prepared> {
        let mut armed = lock(&self.armed);
        let due = armed.take_due(now);
        self.ctx
            .metrics
            .set_releases_armed(self.adapter.kind(), armed.len());
        due
    }

    /// The releaser's patch for the Job `key` was answered.
    fn answered(&self, key: &str) {
        lock(&self.armed).answered(key);
    }

    /// Whether the releaser is sending the release of the Job `key` now.
    fn release_in_flight(&self, key: &str) -> bool {
        lock(&self.armed).in_flight(key)
    }

    fn arm(&self, at: DateTime<Utc>, prepared: releaser::Prepared) {
        let earliest = {
            let mut armed = lock(&self.armed);
            let earliest = armed.arm(at, prepared);
            self.ctx
                .metrics
                .set_releases_armed(self.adapter.kind(), armed.len());
            earliest
        };
        if earliest {
            self.armed_changed.notify_one();
        }
    }

    fn disarm(&self, key: &str) {
        let mut armed = lock(&self.armed);
        if !armed.is_empty() {
            armed.disarm(key);
            self.ctx
                .metrics
                .set_releases_armed(self.adapter.kind(), armed.len());
        }
    }

    /// The kind's API in `namespace`.
    fn api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.ctx.client.clone(), namespace, self.adapter.resource())
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

    /// The data of the candidate forecast `name` for a placement: as [`Self::forecast`] knows it,
    /// so that a candidate whose data the watch has not delivered yet is read from the API rather
    /// than left out of the choice. `None` (left out, "no usable forecast") when it has no data:
    /// not created, not fetched yet, or failed; while the workload is held, it is placed again at
    /// every look, with the candidate once it has data.
    async fn candidate(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Option<Arc<crate::controller::ForecastSnapshot>> {
        match self.forecast(name, now).await {
            Ok(KnownForecast::Data(snapshot, _)) => Some(snapshot),
            Ok(_) => None,
            Err(error) => {
                warn!(%error, forecast = name, "a candidate forecast could not be read; left out of the placement");
                None
            }
        }
    }

    /// Whether the cache shows `job` as it was before carbonshift's own last patch.
    fn is_stale(&self, job: &DynamicObject) -> bool {
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

    fn patched(&self, job: &DynamicObject) {
        self.patched_key(&key(job), job.metadata.resource_version.clone());
    }

    /// Remembers that the Job `key` was patched from `resource_version`.
    fn patched_key(&self, key: &str, resource_version: Option<String>) {
        lock(&self.memory)
            .entry(key.to_string())
            .or_default()
            .patched_from = resource_version;
    }

    fn succeeded(&self, job: &DynamicObject) {
        let mut memory = lock(&self.memory);
        let k = key(job);
        if let Some(m) = memory.get_mut(&k) {
            m.api_failures = 0;
            if m.is_empty() {
                memory.remove(&k);
            }
        }
    }

    fn api_failure(&self, job: &DynamicObject) -> u32 {
        let mut memory = lock(&self.memory);
        let entry = memory.entry(key(job)).or_default();
        entry.api_failures = entry.api_failures.saturating_add(1);
        entry.api_failures
    }

    /// Drops the memory and the armed release of a Job that is gone.
    fn forget(&self, namespace: Option<&str>, name: &str) {
        let key = format!("{}/{name}", namespace.unwrap_or_default());
        lock(&self.memory).remove(&key);
        self.disarm(&key);
        self.ctx.fleets.forget(&key);
    }

    /// Every cached workload of forecast `name` with its part in the fleet, to seed it.
    fn fleet_members(&self, name: &str) -> Vec<(String, lifecycle::fleet::Member)> {
        let now = self.ctx.clock.now();
        let margin = self.lifecycle.margin;
        let scopes = lock(&self.scopes).clone();
        scopes
            .iter()
            .flat_map(|scope| scope.workloads.state())
            .filter(|w| lifecycle::fleet::forecast_of(&w.spec, w.status.as_ref()) == name)
            .map(|w| {
                let key = format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any());
                let member =
                    lifecycle::fleet::member(&w.spec, w.status.as_ref(), None, margin, now);
                (key, member)
            })
            .collect()
    }

    /// Waits for the first list of every scope's CarbonWorkloads: a fleet is seeded from them.
    async fn caches_ready(&self) {
        let scopes = lock(&self.scopes).clone();
        for scope in scopes {
            // A dropped writer means the controller is stopping; the seed is then moot.
            let _ = scope.workloads.wait_until_ready().await;
        }
    }

    /// The fleet's plan for the workload with `spec` (module documentation of
    /// [`super::fleets`]): placed over its candidates while held, planned with the other workloads
    /// of a capped forecast; `None` when neither applies (planned alone).
    async fn fleet_plan(
        &self,
        spec: &crate::api::CarbonWorkloadSpec,
        status: Option<&crate::api::CarbonWorkloadStatus>,
        view: &lifecycle::WorkloadView,
        job: &DynamicObject,
        key: &str,
        now: DateTime<Utc>,
    ) -> Option<FleetFacts> {
        let ctx = &self.ctx;
        let member =
            lifecycle::fleet::member(spec, status, view.released_at, self.lifecycle.margin, now);
        let seed = |name: &str| self.fleet_members(name);
        let held = matches!(member, lifecycle::fleet::Member::Held { .. });
        if spec.candidates.len() > 1 && held {
            let mut candidates: Vec<(String, Option<Arc<crate::controller::ForecastSnapshot>>)> =
                Vec::with_capacity(spec.candidates.len());
            for name in &spec.candidates {
                candidates.push((name.clone(), self.candidate(name, now).await));
            }
            let sets = self.adapter.pod_sets(job).unwrap_or_default();
            if workload::placement::pod_spec_pointers(&job.data, &sets).is_empty() {
                debug!("no pod template to place: planned in its first candidate");
            } else {
                if candidates
                    .iter()
                    .any(|(_, s)| s.as_ref().is_some_and(|s| s.capacity.is_some()))
                {
                    self.caches_ready().await;
                }
                let own: Vec<_> = sets
                    .iter()
                    .filter_map(|s| s.pod.as_ref())
                    .map(workload::placement::pod_placement)
                    .collect();
                match ctx
                    .fleets
                    .place(&candidates, key, &member, &own, &seed, now)
                {
                    Ok(placed) => {
                        let lifecycle::fleet::Member::Held { constraints, .. } = member else {
                            return None;
                        };
                        return Some(FleetFacts {
                            forecast: placed.forecast,
                            constraints,
                            scheduled: placed.scheduled,
                            placement: Some(placed.status),
                        });
                    }
                    Err(error) => {
                        warn!(%error, "no candidate forecast can take the workload; planned in its first");
                    }
                }
            }
        }
        let forecast = lifecycle::fleet::forecast_of(spec, status);
        let snapshot = ctx
            .store
            .get(forecast)
            .filter(|s| s.capacity.is_some() && !s.forecast.is_empty())?;
        self.caches_ready().await;
        match ctx.fleets.sync(&snapshot, key, &member, &seed, now) {
            Ok(Some(scheduled)) => {
                let lifecycle::fleet::Member::Held { constraints, .. } = member else {
                    return None;
                };
                Some(FleetFacts {
                    forecast: forecast.to_string(),
                    constraints,
                    scheduled,
                    placement: None,
                })
            }
            Ok(None) => None,
            Err(error) => {
                warn!(%error, forecast, "the forecast's capacity cannot be planned; planned alone");
                None
            }
        }
    }
}

/// The fleet's plan of one workload, owned for the state machine's [`lifecycle::FleetPlan`].
#[derive(Debug, Clone)]
struct FleetFacts {
    forecast: String,
    constraints: crate::planner::Constraints,
    scheduled: crate::planner::fleet::Scheduled,
    placement: Option<crate::api::workload::PlacementStatus>,
}

impl FleetFacts {
    fn plan(&self) -> lifecycle::FleetPlan<'_> {
        lifecycle::FleetPlan {
            constraints: &self.constraints,
            scheduled: &self.scheduled,
            forecast: &self.forecast,
            placement: self.placement.as_ref(),
        }
    }
}

/// Whether the reconciler has anything to look at: the Job opts in, or carbonshift holds it.
pub fn concerns_carbonshift(job: &DynamicObject) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DEFERRABLE) || a.contains_key(HELD))
}

/// Reconciles one Job (module documentation), timing it into
/// `reconcile_duration_seconds{controller="workloads"}`.
pub async fn reconcile(
    job: Arc<DynamicObject>,
    this: Arc<WorkloadController>,
) -> Result<Action, Error> {
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
pub fn error_policy(
    job: Arc<DynamicObject>,
    error: &Error,
    this: Arc<WorkloadController>,
) -> Action {
    this.ctx
        .metrics
        .record_reconcile_error(WORKLOADS, error.category());
    warn!(job = %key(&job), %error, category = error.category(), "reconcile failed");
    error.kind().retry(this.api_failure(&job))
}

#[instrument(skip_all, fields(job = %job.name_any(), namespace = job.namespace().unwrap_or_default()))]
async fn reconcile_job(job: &DynamicObject, this: &WorkloadController) -> Result<Action, Error> {
    if !concerns_carbonshift(job) {
        this.disarm(&key(job));
        return Ok(Action::await_change());
    }
    let (Some(namespace), Some(name)) = (job.namespace(), job.metadata.name.clone()) else {
        return Err(Error::InvalidObject(format!(
            "a {} without a namespace or a name",
            this.adapter.kind()
        )));
    };
    let ctx = &this.ctx;
    if !ctx.config.namespaces.is_empty() && !ctx.config.namespaces.contains(&namespace) {
        this.disarm(&key(job));
        return Ok(Action::await_change());
    }
    if this.is_stale(job) {
        debug!("the cache has not seen carbonshift's last patch yet");
        return Ok(Action::requeue(STALE_RECHECK));
    }
    if this.release_in_flight(&key(job)) {
        // Its answer reconciles the Job (the patch's watch event, or at once when it was refused
        // or failed); the requeue only covers a watch event that came before the answer.
        debug!("the releaser is sending this Job's release");
        return Ok(Action::requeue(IN_FLIGHT_RECHECK));
    }
    let jobs = this.api(&namespace);
    let kind = this.adapter.kind();
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
                    .map_err(Error::api(format!("reading {kind} {namespace}/{name}")))?
                {
                    Some(fresh) if concerns_carbonshift(&fresh) => {
                        current = std::borrow::Cow::Owned(fresh);
                    }
                    _ => return Ok(Action::await_change()),
                }
            }
        }
    }
    info!("the workload kept changing under carbonshift's patch; deciding again shortly");
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
    job: &DynamicObject,
    namespace: &str,
    name: &str,
    this: &WorkloadController,
) -> Result<Step, Error> {
    let ctx = &this.ctx;

    // 1. fetch
    let now = ctx.clock.now();
    let workloads: Api<CarbonWorkload> = Api::namespaced(ctx.client.clone(), namespace);
    let jobs = this.api(namespace);
    let adapter = this.adapter;
    let memory_key = format!("{namespace}/{name}");
    let workload = this.workload(&workloads, namespace, name).await?;
    let view = workload::read(adapter, job, &ctx.config.annotation_defaults, now);
    let old_status = workload.as_ref().and_then(|w| w.status.as_ref());
    let spec = lifecycle::effective_spec(&view, workload.as_ref());
    let fleet = match &spec {
        Some(spec) => {
            this.fleet_plan(spec, old_status, &view, job, &memory_key, now)
                .await
        }
        None => None,
    };
    let forecast_name = match (&fleet, &spec) {
        (Some(f), _) => Some(f.forecast.clone()),
        (None, Some(spec)) => Some(lifecycle::fleet::forecast_of(spec, old_status).to_string()),
        (None, None) => None,
    };
    let forecast = match &forecast_name {
        Some(name) => this.forecast(name, now).await?,
        None => KnownForecast::Missing,
    };

    let measured = match &workload {
        Some(w) if w.status.as_ref().is_some_and(lifecycle::needs_verification) => {
            Some(verify::measured(ctx, w).await?)
        }
        _ => None,
    };

    // 2. decide
    let input = Input {
        job: &view,
        workload: workload.as_ref(),
        forecast: forecast.input(),
        config: &this.lifecycle,
        measured: measured.as_ref(),
        fleet: fleet.as_ref().map(FleetFacts::plan),
    };
    let mut decision = lifecycle::decide(&input, now);
    // The workload just finished: fetch the measured values its verification needs and decide
    // again with them, so that the terminal status is written once.
    if measured.is_none()
        && let (Some(spec), Some(status)) = (&decision.spec, &decision.status)
        && lifecycle::needs_verification(status)
    {
        let mut finished = CarbonWorkload::new(name, spec.clone());
        finished.status = Some(status.clone());
        let fetched = verify::measured(ctx, &finished).await?;
        decision = lifecycle::decide(
            &Input {
                measured: Some(&fetched),
                ..input
            },
            now,
        );
    }

    energy::apply(ctx, namespace, adapter.kind(), name, &mut decision).await;
    waste::apply(ctx, namespace, job, workload.as_ref(), &mut decision, now).await?;

    // 3. apply
    if decision.stale_workload {
        if let Some(old) = &workload {
            delete_stale(&workloads, old).await?;
            // Whatever the cache shows now is older than the deletion: read the API next time.
            lock(&this.memory)
                .entry(memory_key.clone())
                .or_default()
                .written = Some(String::new());
        }
        this.disarm(&memory_key);
        return Ok(Step::Done(Action::requeue(STALE_RECHECK)));
    }
    let workload = match (&decision.spec, workload) {
        (Some(spec), current) if needs_apply(current.as_ref(), spec, &view) => {
            let applied = apply_spec(&workloads, &view, spec).await?;
            this.wrote(&memory_key, &applied);
            Some(applied)
        }
        (_, current) => current,
    };
    let mut released = None;
    match &decision.job_action {
        None => {}
        Some(action) => {
            let outcome = match action {
                JobAction::Release { reason, .. } => {
                    let guard = Guard::of(job);
                    let extra = match placement_operations(adapter, job, decision.status.as_ref()) {
                        Ok(extra) => extra,
                        Err(error) => {
                            // Never overwritten: the workload is placed again from its
                            // templates as they are now (the candidate is then dropped).
                            warn!(%error, "the chosen forecast's node selector conflicts with the pod template");
                            ctx.fleets.forget(&memory_key);
                            return Ok(Step::Changed);
                        }
                    };
                    release::release(&jobs, adapter, name, &guard, now, reason.as_str(), &extra)
                        .await
                }
                JobAction::Pause => {
                    let marker = view.released_marker.as_deref().unwrap_or_default();
                    let rv = view.resource_version.as_deref();
                    release::pause(&jobs, adapter, name, rv, marker).await
                }
            }
            .map_err(Error::api(format!(
                "patching {} {namespace}/{name}",
                adapter.kind()
            )))?;
            match outcome {
                Outcome::Applied(_) => {
                    this.patched(job);
                    released = Some(action.clone());
                    if matches!(action, JobAction::Release { .. })
                        && let Some(forecast) = &forecast_name
                    {
                        committed(ctx, forecast, &memory_key, now, decision.over_capacity);
                    }
                }
                Outcome::Changed(message) => {
                    info!(%message, "the workload changed since it was read; deciding again");
                    return Ok(Step::Changed);
                }
                Outcome::Gone => return Ok(Step::Done(Action::await_change())),
            }
        }
    }
    let Some(workload) = workload else {
        // No workload (the Job's annotations never could be read): only the Job is recorded.
        publish(ctx, adapter, job, &decision).await;
        record_release(ctx, released.as_ref(), now);
        return Ok(Step::Done(Action::await_change()));
    };
    decision.stamp_generation(workload.metadata.generation);
    let status_written = match &decision.status {
        Some(status) if Some(status) != workload.status.as_ref() => {
            // The ledger first: a failure leaves the status unwritten and the reconcile is
            // retried; the ledger remembers what it recorded, so nothing counts twice.
            ledger::record_finished(ctx, namespace, job, &decision, &workload, status, now).await?;
            let written = apply_status(&workloads, name, status).await?;
            this.wrote(&memory_key, &written);
            true
        }
        _ => false,
    };
    let out_of_fleets = decision
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_terminal() || p == Phase::NotDeferred);
    if out_of_fleets {
        ctx.fleets.forget(&memory_key);
    }

    // 4. record
    record_release(ctx, released.as_ref(), now);
    let forecast_name = decision.spec.as_ref().map_or("", |s| {
        lifecycle::fleet::forecast_of(s, decision.status.as_ref())
    });
    if status_written && let Some(completion) = decision.completion {
        ctx.metrics.record_finished(
            namespace,
            forecast_name,
            crate::ledger::Basis::Estimated,
            completion.emitted_grams,
            completion.avoided_grams,
        );
        if let Some(wasted) = decision.status.as_ref().and_then(|s| s.wasted_grams) {
            ctx.metrics.record_wasted(namespace, wasted);
        }
    }
    if status_written && let Some(verified) = decision.verified {
        ctx.metrics.record_finished(
            namespace,
            forecast_name,
            crate::ledger::Basis::Verified,
            verified.emitted_grams,
            verified.avoided_grams,
        );
    }
    publish(ctx, adapter, job, &decision).await;

    // 5. arm the release due next, and requeue
    // A workload the waste guard holds is never armed: the guard decides at each look.
    let armed = match (released.is_none(), decision.requeue_at) {
        (true, Some(at)) if at > now && !crate::waste::is_held(&decision) => {
            let after = CarbonWorkload {
                status: decision.status.clone().or(workload.status.clone()),
                ..workload.clone()
            };
            let then = forecast.at(at);
            let future = Input {
                job: &view,
                workload: Some(&after),
                forecast: then.input(),
                config: &this.lifecycle,
                measured: None,
                fleet: fleet.as_ref().map(FleetFacts::plan),
            };
            prepare(
                &view,
                &lifecycle::decide(&future, at),
                adapter,
                job,
                forecast_name,
            )
            .map(|prepared| (at, prepared))
        }
        _ => None,
    };
    match armed {
        Some((at, prepared)) => {
            this.arm(at, prepared);
            let grace = releaser::grace(this.lifecycle.margin);
            let look_again = (at + grace - now).to_std().unwrap_or_default();
            Ok(Step::Done(Action::requeue(look_again.min(MAX_REQUEUE))))
        }
        None => {
            this.disarm(&memory_key);
            Ok(Step::Done(requeue(&decision, now)))
        }
    }
}

/// The release to arm when the state machine releases the workload in `future` (its decision
/// at the time the current one looks again): the guarded patch's guard from the object as read,
/// the reason and the release's Events.
fn prepare(
    view: &lifecycle::WorkloadView,
    future: &Decision,
    adapter: &dyn Adapter,
    job: &DynamicObject,
    forecast: &str,
) -> Option<releaser::Prepared> {
    let Some(JobAction::Release { reason, planned }) = &future.job_action else {
        return None;
    };
    // A node selector that cannot be added is left to the reconcile, which places it again.
    let extra = placement_operations(adapter, job, future.status.as_ref()).ok()?;
    Some(releaser::Prepared {
        extra,
        forecast: forecast.to_string(),
        over_capacity: future.over_capacity,
        namespace: view.namespace.clone(),
        name: view.name.clone(),
        guard: Guard::of(job),
        reason: *reason,
        planned: *planned,
        notes: future.events.clone(),
        job_ref: job.object_ref(adapter.resource()),
    })
}

/// The operations that add a placed workload's node selector (`status.placement.nodeSelector`)
/// to its pod templates in the release patch; none for a workload that was not placed.
fn placement_operations(
    adapter: &dyn Adapter,
    job: &DynamicObject,
    status: Option<&crate::api::CarbonWorkloadStatus>,
) -> Result<Vec<json_patch::PatchOperation>, workload::placement::SelectorPatchError> {
    let Some(selector) = status
        .and_then(|s| s.placement.as_ref())
        .map(|p| &p.node_selector)
        .filter(|s| !s.is_empty())
    else {
        return Ok(Vec::new());
    };
    let sets = adapter.pod_sets(job).unwrap_or_default();
    let pointers = workload::placement::pod_spec_pointers(&job.data, &sets);
    workload::placement::node_selector_operations(&job.data, &pointers, selector)
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

/// A release of the workload `key` under `forecast` was applied at `now`: its fleet commits it,
/// and a release above the cap (`flagged` by the state machine, or found so by the fleet) is
/// counted.
fn committed(ctx: &Context, forecast: &str, key: &str, now: DateTime<Utc>, flagged: bool) {
    let over = ctx.fleets.released(forecast, key, now);
    if over || flagged {
        ctx.metrics.record_over_capacity(forecast);
    }
}

fn record_release(ctx: &Context, action: Option<&JobAction>, now: DateTime<Utc>) {
    if let Some(JobAction::Release { reason, planned }) = action {
        let lateness = (now - *planned).num_milliseconds() as f64 / 1000.0;
        ctx.metrics.record_release(reason.as_str(), lateness);
    }
}

pub mod discovery;
mod energy;
mod known;
mod ledger;
pub mod releaser;
mod run;
mod verify;
mod waste;
mod writes;

pub use known::KnownForecast;
pub use ledger::LedgerWriter;
pub use run::{CAPACITY_FIELD_MANAGER, jobs_waiting_on, run, set_gauges};
pub use writes::owner_reference;

#[cfg(test)]
use known::view_of;
use writes::{apply_spec, apply_status, delete_stale, needs_apply, publish};

#[cfg(test)]
mod tests;
