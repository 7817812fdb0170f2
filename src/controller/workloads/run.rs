//! Running the workload controllers: one `kube::runtime::Controller` per turned-on kind
//! ([`OperatorConfig::kinds`](crate::controller::OperatorConfig)) and namespace scope, triggered by
//! the kind's objects, their CarbonWorkloads and the forecast store's change announcements; and the
//! workload gauges. A kind whose CRD is not installed is waited for ([`super::discovery`]) and its
//! controllers start when it appears, without a restart.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::{FutureExt, Stream, StreamExt};
use kube::core::DynamicObject;
use kube::runtime::controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use super::{GAUGE_INTERVAL, WorkloadController, error_policy, reconcile};
use crate::api::{CarbonWorkload, Phase};
use crate::controller::fleets::REPLAN_INTERVAL;
use crate::controller::{Context, WORKLOADS};
use crate::lifecycle;
use crate::workload::Adapter;

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

/// The objects of `adapter`'s kind to reconcile when forecast `name` changed (every forecast when
/// `None`): those whose cached workload waits on it. One scan of the cache.
pub fn jobs_waiting_on(
    workloads: &Store<CarbonWorkload>,
    adapter: &dyn Adapter,
    name: Option<&str>,
) -> Vec<ObjectRef<DynamicObject>> {
    workloads
        .state()
        .iter()
        .filter(|w| is_of(w, adapter))
        .filter(|w| {
            name.is_none_or(|n| w.spec.forecast == n || w.spec.candidates.iter().any(|c| c == n))
        })
        .filter(|w| waits_for_forecast(w))
        .map(|w| {
            let job = ObjectRef::new_with(&w.spec.job_ref.name, adapter.resource().clone());
            match w.namespace() {
                Some(ns) => job.within(&ns),
                None => job,
            }
        })
        .collect()
}

/// Whether workload `w` belongs to an object of `adapter`'s kind (a workload without a kind in its
/// `jobRef` was written for a Job).
fn is_of(w: &CarbonWorkload, adapter: &dyn Adapter) -> bool {
    let resource = adapter.resource();
    w.spec.job_ref.kind() == resource.kind && w.spec.job_ref.api_version() == resource.api_version
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

/// The cached workloads of each kind that runs, for the gauges.
type Stores = Arc<Mutex<Vec<(&'static dyn Adapter, Store<CarbonWorkload>)>>>;

/// Where the CarbonWorkload events of one scope go: the reconcile trigger of each running kind.
type Routes = Arc<Mutex<Vec<(&'static dyn Adapter, Trigger)>>>;

/// Asks one kind's controller of one scope for a reconcile.
type Trigger = futures::channel::mpsc::UnboundedSender<ObjectRef<DynamicObject>>;

/// One scope's CarbonWorkloads, shared by the controllers of every kind: one watch and one cache
/// per scope however many kinds run, each event routed to the kind of the object that owns the
/// workload.
#[derive(Clone)]
struct SharedScope {
    namespace: Option<String>,
    workloads: Store<CarbonWorkload>,
    routes: Routes,
}

/// The kind and namespaced name of the object that controls `w`, as a reconcile request for
/// the running kind it belongs to.
fn owner_route<'a>(
    w: &CarbonWorkload,
    routes: &'a [(&'static dyn Adapter, Trigger)],
) -> Option<(&'a Trigger, ObjectRef<DynamicObject>)> {
    let owner = w
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))?;
    let (adapter, trigger) = routes.iter().find(|(adapter, _)| {
        let resource = adapter.resource();
        resource.kind == owner.kind && resource.api_version == owner.api_version
    })?;
    let object = ObjectRef::new_with(&owner.name, adapter.resource().clone());
    let object = match w.namespace() {
        Some(ns) => object.within(&ns),
        None => object,
    };
    Some((trigger, object))
}

/// Runs the controllers of every turned-on kind until `shutdown` completes (reconciles in
/// progress finish first). Fill the context's forecast store from the API before calling it, so
/// that no workload is decided without the last known forecasts; leader election starts and stops
/// this from outside.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.boxed().shared();
    let scopes: Vec<Option<String>> = if ctx.config.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config.namespaces.iter().cloned().map(Some).collect()
    };
    info!(
        controller = WORKLOADS,
        namespaces = ?ctx.config.namespaces,
        kinds = %ctx.config.kinds,
        "starting"
    );
    let mut shared = Vec::new();
    let mut watches = Vec::new();
    for scope in scopes {
        let api: Api<CarbonWorkload> = match &scope {
            None => Api::all(ctx.client.clone()),
            Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        };
        let (reader, writer) = reflector::store();
        let routes = Routes::default();
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|w: &mut CarbonWorkload| w.metadata.managed_fields = None)
            .reflect(writer)
            .touched_objects();
        let to = routes.clone();
        let stop = shutdown.clone();
        watches.push(
            async move {
                let route = events.for_each(|event| {
                    if let Ok(w) = event
                        && let Ok(routes) = to.lock()
                        && let Some((trigger, object)) = owner_route(&w, &routes)
                    {
                        // A closed channel means that kind's controller stopped.
                        let _ = trigger.unbounded_send(object);
                    }
                    std::future::ready(())
                });
                futures::future::select(std::pin::pin!(route), stop).await;
            }
            .boxed(),
        );
        shared.push(SharedScope {
            namespace: scope,
            workloads: reader,
            routes,
        });
    }
    let stores = Stores::default();
    let kinds: Vec<_> = ctx
        .config
        .kinds
        .adapters()
        .into_iter()
        .map(|adapter| {
            run_kind(
                ctx.clone(),
                adapter,
                shared.clone(),
                stores.clone(),
                shutdown.clone(),
            )
        })
        .collect();
    let gauges = gauges(ctx.clone(), stores, shutdown.clone());
    let fleets = fleet_ticks(ctx.clone(), shared.clone(), shutdown);
    futures::join!(
        futures::future::join_all(kinds),
        futures::future::join_all(watches),
        gauges,
        fleets
    );
    info!(controller = WORKLOADS, "stopped");
}

/// Waits until `adapter`'s kind is served, then runs its controllers (one per scope) until
/// `shutdown`.
async fn run_kind(
    ctx: Arc<Context>,
    adapter: &'static dyn Adapter,
    scopes: Vec<SharedScope>,
    stores: Stores,
    shutdown: futures::future::Shared<futures::future::BoxFuture<'static, ()>>,
) {
    let resource = adapter.resource();
    if !super::discovery::wait_served(&ctx.client, resource, &ctx.metrics, shutdown.clone()).await {
        return;
    }
    info!(
        controller = WORKLOADS,
        kind = adapter.kind(),
        "watching {}s",
        adapter.kind()
    );
    let this = WorkloadController::new(ctx.clone(), adapter);
    let mut controllers = Vec::new();
    for scope in &scopes {
        let client = ctx.client.clone();
        let objects: Api<DynamicObject> = match &scope.namespace {
            None => Api::all_with(client, resource),
            Some(ns) => Api::namespaced_with(client, ns, resource),
        };
        // The kind's objects are cached trimmed (crate::workload::prune): memory stays flat per
        // object, and the decisions read nothing that was dropped.
        let job_writer = reflector::store::Writer::new(resource.clone());
        let job_reader = job_writer.as_reader();
        let jobs = watcher(objects, watcher::Config::default())
            .default_backoff()
            .modify(crate::workload::prune::prune)
            .reflect(job_writer)
            .applied_objects();
        let index = scope.workloads.clone();
        let forecast_triggers = forecast_changes(ctx.store.subscribe()).flat_map(move |name| {
            futures::stream::iter(jobs_waiting_on(&index, adapter, name.as_deref()))
        });
        // One channel for both: the workload events routed to this kind, and the releaser's
        // requests to decide again.
        let (asked, asks) = futures::channel::mpsc::unbounded();
        this.add_scope(
            scope.namespace.clone(),
            scope.workloads.clone(),
            asked.clone(),
        );
        if let Ok(mut routes) = scope.routes.lock() {
            routes.push((adapter, asked));
        }
        if let Ok(mut all) = stores.lock() {
            all.push((adapter, scope.workloads.clone()));
        }
        let this = this.clone();
        let config = controller::Config::default().concurrency(ctx.config.reconcile_concurrency);
        controllers.push(
            Controller::for_stream_with(jobs, job_reader, resource.clone())
                .with_config(config)
                .reconcile_on(futures::stream::select(forecast_triggers, asks))
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
    let releases = super::releaser::run(this.clone(), shutdown.clone());
    futures::join!(futures::future::join_all(controllers), releases);
}

/// The field manager of `status.capacityUsed`: not the forecast controller's, whose server-side
/// apply of the rest of the status would otherwise drop it.
pub const CAPACITY_FIELD_MANAGER: &str = "carbonshift-capacity";

/// Every [`REPLAN_INTERVAL`] until `shutdown`: re-plans the fleets that lost workloads, reconciles
/// the workloads whose plan moved, and writes `status.capacityUsed` of the capped forecasts whose
/// usage changed ([`crate::controller::fleets`]).
async fn fleet_ticks(
    ctx: Arc<Context>,
    scopes: Vec<SharedScope>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut moved = ctx.fleets.subscribe();
    let mut tick = tokio::time::interval(REPLAN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let forecasts: Api<crate::api::CarbonForecast> = Api::all(ctx.client.clone());
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            key = moved.recv() => match key {
                Ok(key) => route_key(&scopes, &key),
                // Fell behind: the next forecast announcement or safety-net look catches up.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    debug!(missed = n, "fleet re-plan announcements dropped");
                }
                Err(broadcast::error::RecvError::Closed) => {}
            },
            _ = tick.tick() => {
                let store = ctx.store.clone();
                ctx.fleets.retain(|name| store.get(name).is_some());
                let done = ctx.fleets.tick(ctx.clock.now());
                for name in &done.replanned {
                    ctx.metrics
                        .fleet_replans
                        .get_or_create(&crate::metrics::ForecastLabels { forecast: name.clone() })
                        .inc();
                }
                for (name, used) in done.usage {
                    let patch = serde_json::json!({
                        "apiVersion": "carbonshift.dev/v1alpha1",
                        "kind": "CarbonForecast",
                        "status": {"capacityUsed": used},
                    });
                    let params = kube::api::PatchParams::apply(CAPACITY_FIELD_MANAGER).force();
                    match forecasts
                        .patch_status(&name, &params, &kube::api::Patch::Apply(&patch))
                        .await
                    {
                        Ok(_) => ctx.fleets.published(&name, used),
                        Err(error) => {
                            warn!(%error, forecast = %name, "writing status.capacityUsed failed; retried at the next tick");
                        }
                    }
                }
            }
        }
    }
}

/// Asks the controller of the kind owning the CarbonWorkload `key` (`namespace/name`) to
/// reconcile it.
fn route_key(scopes: &[SharedScope], key: &str) {
    let Some((namespace, name)) = key.split_once('/') else {
        return;
    };
    for scope in scopes {
        if scope.namespace.as_deref().is_some_and(|n| n != namespace) {
            continue;
        }
        let reference = ObjectRef::<CarbonWorkload>::new(name).within(namespace);
        if let Some(w) = scope.workloads.get(&reference)
            && let Ok(routes) = scope.routes.lock()
            && let Some((trigger, object)) = owner_route(&w, &routes)
        {
            let _ = trigger.unbounded_send(object);
            return;
        }
    }
}

/// Recomputes the workload gauges every [`GAUGE_INTERVAL`] until `shutdown`.
async fn gauges(
    ctx: Arc<Context>,
    stores: Stores,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let running = stores.lock().map(|s| s.clone()).unwrap_or_default();
                set_gauges(&ctx, &running);
            }
        }
    }
}

/// Sets `workloads{phase}` and `held_past_latest_start` from the cached workloads: each kind's
/// store holds every CarbonWorkload of its scope, so each counts only those of its kind.
pub fn set_gauges(ctx: &Context, stores: &[(&'static dyn Adapter, Store<CarbonWorkload>)]) {
    let all: Vec<Arc<CarbonWorkload>> = stores
        .iter()
        .flat_map(|(adapter, store)| {
            store
                .state()
                .into_iter()
                .filter(|w| is_of(w, *adapter))
                .collect::<Vec<_>>()
        })
        .collect();
    let tally = lifecycle::tally(all.iter().map(|w| w.as_ref()), ctx.clock.now());
    ctx.metrics.set_workloads(|phase| tally.count(phase));
    ctx.metrics
        .held_past_latest_start
        .set(tally.held_past_latest_start);
}
