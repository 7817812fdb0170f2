//! The CarbonForecast controller: keeps each region's forecast fresh in its status.
//!
//! Each reconcile runs four phases; only the first and the last two touch the API:
//!
//! 1. **fetch** — when [`status::refresh_due`] says so: read the credentials Secret and the trace
//!    ConfigMap the spec names (from the operator namespace, by name: they are not watched, so a
//!    fixed Secret is picked up at the next recheck, within 5 minutes), build the provider with
//!    [`forecast::build`] (cheap; the WattTime token cache lives in [`forecast::Shared`]) and
//!    fetch, timing and counting the call. One fetch per CarbonForecast, that is per region,
//!    however many Jobs plan with it.
//! 2. **decide** — [`status::decide`] (pure) computes the new status, the Events, the retry state
//!    and the requeue time.
//! 3. **apply status** — server-side apply of `status` with field manager
//!    [`FIELD_MANAGER`] and `force`, only when it differs from the current status: the status is
//!    written once per change, and a reconcile that changes nothing writes nothing.
//! 4. **Events** — `Refreshed`, `Recovered`, `RefreshFailed`, `Stale`, `InvalidSpec`,
//!    `MissingCredentials`.
//!
//! [`run`] drives the reconciler with a `kube::runtime::Controller` and, beside it, a second watch
//! on the same objects that feeds the [`ForecastStore`](super::ForecastStore) through a
//! [`StoreFeeder`] (it needs the delete and re-list events, which the controller's trigger stream
//! does not pass on; sharing one stream needs kube's unstable `for_stream`, and CarbonForecasts
//! are few). That task also owns the per-forecast gauges (`forecast_intensity`,
//! `forecast_age_seconds`, `forecast_ready`): set whenever an object's status arrives and every
//! [`GAUGE_INTERVAL`] (so the age keeps growing between refreshes), removed when the object is
//! deleted and when the controller stops (a replica that lost the lease exports nothing stale).
//!
//! Retry state after failures lives in memory ([`ForecastController`]); a restart retries at once.
//! Errors of the Kubernetes API itself (reading a Secret, writing the status) fail the reconcile
//! and are retried with a per-object exponential backoff (5s doubling to 5m); an object that
//! cannot be handled at all waits for a change.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::controller::{self, Action};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::store::{ForecastSnapshot, StoreFeeder};
use super::{Context, Error, FORECASTS};
use crate::api::{CarbonForecast, CarbonForecastSpec, CarbonForecastStatus, ProviderSpec};
use crate::forecast::fixed::DEFAULT_TRACE_KEY;
use crate::forecast::status::{self, Backoff, Observation, SpecProblem};
use crate::forecast::{self, CredentialSource, Credentials, ProviderError};
use crate::metrics::{ControllerLabels, ForecastLabels, Metrics, ProviderLabels, RefreshLabels};

/// How often the per-forecast gauges are recomputed from the store (the age grows between
/// refreshes, and the current slot moves on).
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(30);
/// First retry delay after a Kubernetes API error ([`crate::retry::API_ERRORS`]).
pub const API_RETRY_BASE: Duration = crate::retry::API_ERRORS.base();
/// Longest retry delay after Kubernetes API errors.
pub const API_RETRY_MAX: Duration = crate::retry::API_ERRORS.max();

/// Per-object memory of this process.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    /// Retry state after a failed refresh or an unusable spec.
    backoff: Option<Backoff>,
    /// Consecutive reconciles that failed on the Kubernetes API.
    api_failures: u32,
}

/// The reconciler's state: the shared [`Context`] and this process's retry memory.
#[derive(Debug)]
pub struct ForecastController {
    ctx: Arc<Context>,
    memory: Mutex<HashMap<String, Memory>>,
}

impl ForecastController {
    /// A controller around `ctx` with an empty memory.
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            memory: Mutex::default(),
        })
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The retry state kept for `name`, if any.
    pub fn backoff(&self, name: &str) -> Option<Backoff> {
        self.memory().get(name).and_then(|m| m.backoff)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, Memory>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_backoff(&self, name: &str, backoff: Option<Backoff>) {
        let mut memory = self.memory();
        memory.entry(name.to_string()).or_default().backoff = backoff;
    }

    fn api_succeeded(&self, name: &str) {
        if let Some(entry) = self.memory().get_mut(name) {
            entry.api_failures = 0;
        }
    }

    fn api_failure(&self, name: &str) -> u32 {
        let mut memory = self.memory();
        let entry = memory.entry(name.to_string()).or_default();
        entry.api_failures = entry.api_failures.saturating_add(1);
        entry.api_failures
    }

    /// Drops everything kept for a deleted object.
    fn forget(&self, name: &str) {
        self.memory().remove(name);
    }
}

/// Runs the controller until `shutdown` completes: the reconciler on every CarbonForecast, the
/// store feed and the gauges. Reconciles in progress finish first (graceful shutdown); leader
/// election starts and stops this from outside.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.boxed().shared();
    let this = ForecastController::new(ctx.clone());
    let api = Api::<CarbonForecast>::all(ctx.client.clone());
    info!(controller = FORECASTS, "starting");
    let selected = ctx.config.forecast_selector.watcher_config();
    let controller = Controller::new(api.clone(), selected.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, this.clone())
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(forecast = %object.name, "reconciled"),
                // Already logged and counted by error_policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::ObjectNotFound(object)) => {
                    debug!(forecast = %object.name, "deleted before its reconcile")
                }
                Err(error) => warn!(%error, "CarbonForecast controller"),
            }
        });
    let feed = feed(this.clone(), api, selected, shutdown);
    futures::join!(controller, feed);
    info!(controller = FORECASTS, "stopped");
}

/// Watches CarbonForecasts into the store and keeps the per-forecast gauges, until `shutdown`.
async fn feed(
    this: Arc<ForecastController>,
    api: Api<CarbonForecast>,
    selected: watcher::Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let ctx = &this.ctx;
    let mut feeder = StoreFeeder::new(ctx.store.clone());
    let events = watcher(api, selected)
        .default_backoff()
        .take_until(shutdown);
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                None => break,
                Some(Ok(event)) => {
                    let outcome = feeder.handle(event);
                    let now = ctx.clock.now();
                    if let Some(snapshot) = outcome.applied.and_then(|name| ctx.store.get(&name)) {
                        set_gauges(&ctx.metrics, &snapshot, now);
                    }
                    for name in outcome.removed {
                        this.forget(&name);
                        remove_gauges(&ctx.metrics, &name);
                    }
                }
                Some(Err(error)) => warn!(%error, "CarbonForecast watch failed; retrying with backoff"),
            },
            _ = tick.tick() => {
                let now = ctx.clock.now();
                for snapshot in ctx.store.snapshots() {
                    set_gauges(&ctx.metrics, &snapshot, now);
                }
            }
        }
    }
    // A replica that is no longer the leader must not keep exporting frozen values.
    for name in ctx.store.names() {
        remove_gauges(&ctx.metrics, &name);
    }
}

fn forecast_labels(name: &str) -> ForecastLabels {
    ForecastLabels {
        forecast: name.to_string(),
    }
}

/// Sets `forecast_ready`, `forecast_age_seconds` and `forecast_intensity` for one forecast. A
/// value that does not exist (no refresh yet, no point covering `now`) removes its series rather
/// than reporting an invented one.
pub fn set_gauges(metrics: &Metrics, snapshot: &ForecastSnapshot, now: DateTime<Utc>) {
    let labels = forecast_labels(&snapshot.name);
    metrics
        .forecast_ready
        .get_or_create(&labels)
        .set(i64::from(snapshot.ready));
    match snapshot.age(now) {
        Some(age) => {
            // Milliseconds to seconds; ages are far below 2^53 ms, so the conversion is exact.
            metrics
                .forecast_age_seconds
                .get_or_create(&labels)
                .set(age.num_milliseconds() as f64 / 1000.0);
        }
        None => {
            metrics.forecast_age_seconds.remove(&labels);
        }
    }
    match snapshot.intensity_at(now) {
        Some(value) => {
            metrics.forecast_intensity.get_or_create(&labels).set(value);
        }
        None => {
            metrics.forecast_intensity.remove(&labels);
        }
    }
}

/// Removes a deleted forecast's series.
pub fn remove_gauges(metrics: &Metrics, name: &str) {
    let labels = forecast_labels(name);
    metrics.forecast_ready.remove(&labels);
    metrics.forecast_age_seconds.remove(&labels);
    metrics.forecast_intensity.remove(&labels);
}

/// Reconciles one CarbonForecast (see the module documentation) and records its duration.
#[instrument(skip(object, this), fields(forecast = %object.name_any()))]
pub async fn reconcile(
    object: Arc<CarbonForecast>,
    this: Arc<ForecastController>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&object, &this).await;
    this.ctx
        .metrics
        .reconcile_duration_seconds
        .get_or_create(&ControllerLabels {
            controller: FORECASTS.to_string(),
        })
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(
    object: &CarbonForecast,
    this: &ForecastController,
) -> Result<Action, Error> {
    let ctx = &this.ctx;
    let name = object
        .metadata
        .name
        .clone()
        .ok_or_else(|| Error::InvalidObject("a CarbonForecast without metadata.name".into()))?;
    let now = ctx.clock.now();
    let backoff = this.backoff(&name);
    let input = status::Input {
        spec: &object.spec,
        generation: object.metadata.generation,
        status: object.status.as_ref(),
        backoff: backoff.as_ref(),
        now,
    };
    let observation = if status::refresh_due(&input) {
        refresh(ctx, object, now).await?
    } else {
        Observation::NotDue
    };
    let decision = status::decide(&input, observation);
    // Kept before the write, so that a failed write does not make the next attempt hammer the
    // provider.
    this.set_backoff(&name, decision.backoff);
    if object.status.as_ref() != Some(&decision.status) {
        apply_status(ctx, &name, &decision.status).await?;
        debug!("status written");
    }
    this.api_succeeded(&name);
    let reference = object.object_ref(&());
    for note in &decision.notes {
        ctx.publish(FORECASTS, &reference, note).await;
    }
    Ok(Action::requeue(status::requeue_after(
        decision.requeue_at,
        now,
    )))
}

/// Decides the retry of a failed reconcile: wait for a change when the object is unusable, back
/// off exponentially on Kubernetes API errors.
pub fn error_policy(
    object: Arc<CarbonForecast>,
    error: &Error,
    this: Arc<ForecastController>,
) -> Action {
    this.ctx
        .metrics
        .record_reconcile_error(FORECASTS, error.category());
    let name = object.name_any();
    warn!(forecast = %name, %error, category = error.category(), "reconcile failed");
    error.kind().retry(this.api_failure(&name))
}

/// `min(API_RETRY_BASE × 2^(failures−1), API_RETRY_MAX)` ([`crate::retry::api_backoff`]).
pub fn api_retry_delay(failures: u32) -> Duration {
    crate::retry::api_backoff(failures)
}

/// Writes `status` with server-side apply (field manager [`FIELD_MANAGER`], forced): fields the
/// new status leaves out (a cleared `lastError`) are removed. `capacityUsed` is left out: the
/// workload controller's fleets own it (field manager
/// [`CAPACITY_FIELD_MANAGER`](super::workloads::CAPACITY_FIELD_MANAGER)), and a cached copy of it
/// here may be older than theirs.
async fn apply_status(
    ctx: &Context,
    name: &str,
    status: &CarbonForecastStatus,
) -> Result<(), Error> {
    let api = Api::<CarbonForecast>::all(ctx.client.clone());
    let status = CarbonForecastStatus {
        capacity_used: None,
        ..status.clone()
    };
    super::apply_status(&api, name, &status, &format!("CarbonForecast {name}")).await?;
    Ok(())
}

fn count_refresh(metrics: &Metrics, kind: &str, result: &str) {
    metrics
        .forecast_refreshes
        .get_or_create(&RefreshLabels {
            provider: kind.to_string(),
            result: result.to_string(),
        })
        .inc();
}

/// The provider a CarbonForecast spec describes, with its Secret and ConfigMap read; `Err` says
/// what makes the spec unusable (for the status). Also used to fetch measured history for
/// verification.
pub(crate) async fn provider_for(
    ctx: &Context,
    spec: &crate::api::CarbonForecastSpec,
) -> Result<Result<Box<dyn forecast::Provider>, (SpecProblem, String)>, Error> {
    let credentials = match read_credentials(ctx, spec).await? {
        Ok(credentials) => credentials,
        Err(message) => return Ok(Err((SpecProblem::MissingCredentials, message))),
    };
    let trace_csv = match read_trace(ctx, spec).await? {
        Ok(csv) => csv,
        Err(message) => return Ok(Err((SpecProblem::InvalidSpec, message))),
    };
    let problem = if lacks_credentials(spec, &credentials) {
        SpecProblem::MissingCredentials
    } else {
        SpecProblem::InvalidSpec
    };
    Ok(
        forecast::build(spec, credentials, trace_csv, &ctx.providers)
            .map_err(|error| (problem, error.to_string())),
    )
}

/// The fetch phase: resolve the Secret and ConfigMap, build the provider, fetch and bound.
async fn refresh(
    ctx: &Context,
    object: &CarbonForecast,
    now: DateTime<Utc>,
) -> Result<Observation, Error> {
    let spec = &object.spec;
    let kind = forecast::kind(&spec.provider);
    let unusable = |problem: SpecProblem, message: String| {
        count_refresh(&ctx.metrics, kind, "config");
        Observation::Unusable {
            kind,
            problem,
            message,
        }
    };
    if let Err(error) = status::timing(spec) {
        return Ok(unusable(SpecProblem::InvalidSpec, error.to_string()));
    }
    let provider = match provider_for(ctx, spec).await? {
        Ok(provider) => provider,
        Err((problem, message)) => return Ok(unusable(problem, message)),
    };
    let started = Instant::now();
    let result = provider.fetch(now).await;
    ctx.metrics
        .forecast_refresh_duration_seconds
        .get_or_create(&ProviderLabels {
            provider: kind.to_string(),
        })
        .observe(started.elapsed().as_secs_f64());
    let bounded = result.and_then(|data| {
        status::bound(data, now).map_err(|error| ProviderError::InvalidData {
            provider: kind,
            detail: error.to_string(),
        })
    });
    Ok(match bounded {
        Ok(forecast) => {
            count_refresh(&ctx.metrics, kind, "success");
            info!(provider = kind, points = forecast.points.len(), "refreshed");
            Observation::Fetched { kind, forecast }
        }
        Err(error) => {
            count_refresh(&ctx.metrics, kind, error.category());
            warn!(provider = kind, category = error.category(), %error, "refresh failed");
            Observation::Failed { kind, error }
        }
    })
}

/// Whether the provider needs a credential that `credentials` lacks (so a build error is
/// `MissingCredentials`, not `InvalidSpec`).
pub fn lacks_credentials(spec: &CarbonForecastSpec, credentials: &Credentials) -> bool {
    match spec.provider {
        ProviderSpec::ElectricityMaps(_) => credentials.token().is_none(),
        ProviderSpec::WattTime(_) => {
            credentials.username().is_none() || credentials.password().is_none()
        }
        _ => false,
    }
}

/// Reads the credentials Secret named by the spec from the operator namespace. `Ok(Err)` says
/// what is missing (the Secret, or a key that is not text); values never appear in messages.
async fn read_credentials(
    ctx: &Context,
    spec: &CarbonForecastSpec,
) -> Result<Result<Credentials, String>, Error> {
    let Some(reference) = &spec.credentials_secret_ref else {
        return Ok(Ok(Credentials::default()));
    };
    let namespace = &ctx.config.operator_namespace;
    let name = &reference.name;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(Error::api(format!("reading Secret {namespace}/{name}")))?;
    let Some(secret) = secret else {
        return Ok(Err(format!(
            "Secret {namespace}/{name} (spec.credentialsSecretRef) does not exist; create it in the operator namespace with key token (Electricity Maps) or keys username and password (WattTime)"
        )));
    };
    let data = secret.data.unwrap_or_default();
    let value = |key: &str| -> Result<Option<String>, String> {
        match data.get(key) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.0.clone())
                .map(Some)
                .map_err(|_| format!("key {key} of Secret {namespace}/{name} is not UTF-8 text")),
        }
    };
    let (token, username, password) = match (value("token"), value("username"), value("password")) {
        (Ok(token), Ok(username), Ok(password)) => (token, username, password),
        (Err(message), _, _) | (_, Err(message), _) | (_, _, Err(message)) => {
            return Ok(Err(message));
        }
    };
    Ok(Ok(Credentials {
        token,
        username,
        password,
        source: CredentialSource::Secret(name.clone()),
    }))
}

/// Reads the trace CSV from the ConfigMap the spec names, if any. `Ok(Err)` says what is
/// missing.
async fn read_trace(
    ctx: &Context,
    spec: &CarbonForecastSpec,
) -> Result<Result<Option<String>, String>, Error> {
    let ProviderSpec::Trace(trace) = &spec.provider else {
        return Ok(Ok(None));
    };
    let Some(reference) = &trace.config_map_ref else {
        return Ok(Ok(None));
    };
    let namespace = &ctx.config.operator_namespace;
    let name = &reference.name;
    let key = reference.key.as_deref().unwrap_or(DEFAULT_TRACE_KEY);
    let map = Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(Error::api(format!("reading ConfigMap {namespace}/{name}")))?;
    let Some(map) = map else {
        return Ok(Err(format!(
            "ConfigMap {namespace}/{name} (spec.provider.trace.configMapRef) does not exist; create it in the operator namespace"
        )));
    };
    if let Some(text) = map.data.as_ref().and_then(|d| d.get(key)) {
        return Ok(Ok(Some(text.clone())));
    }
    if let Some(bytes) = map.binary_data.as_ref().and_then(|d| d.get(key)) {
        return Ok(String::from_utf8(bytes.0.clone())
            .map(Some)
            .map_err(|_| format!("key {key} of ConfigMap {namespace}/{name} is not UTF-8 text")));
    }
    Ok(Err(format!(
        "ConfigMap {namespace}/{name} has no key {key} (spec.provider.trace.configMapRef.key)"
    )))
}

#[cfg(test)]
mod tests;
