//! Leader election: with several replicas only one reconciles and writes, and a replica that loses
//! its lease stops writing before another can take it over.
//!
//! Every replica serves the admission webhook (it writes nothing); only the leader runs the
//! controllers. The election itself is kube-lease-manager on a `coordination.k8s.io` Lease: it
//! acquires a free or expired Lease, renews it `renew_before` ahead of expiry, and releases it when
//! asked. Its state channel, however, only reports a loss when it can *read* the Lease and sees
//! another holder: a replica cut off from the API server (or whose renewals keep failing) keeps
//! being told that it leads, while another replica takes the Lease over once it has expired.
//!
//! Hence a second, independent condition, the [`LeaderGate`]. Every Lease that the API server
//! returns to the lease manager (renewals, reads) passes through an observer that computes the
//! write deadline: the Lease's `renewTime` + its duration − a safety margin, when the Lease names
//! this replica as holder; nothing otherwise. Competing replicas may take the Lease only after
//! `renewTime` + duration, so a replica that writes only while `LeaderGate::may_write(now)` never
//! writes at the same time as another, even when stalled: a deadline only moves forward through a
//! renewal the API server accepted.
//!
//! [`run_while_leader`] ties it together: the controllers run exactly while the lease manager says
//! "leader" **and** the gate is open. They start on acquisition; on loss, or when the deadline
//! passes without a renewal, the gate is closed first and the controllers are then cancelled and
//! awaited (aborted after a grace period; restarted if a later renewal succeeds). On shutdown the
//! controllers stop first and the Lease is then released, so another replica takes over at once
//! instead of after expiry.
//!
//! Cancellation takes effect at the controllers' next `.await`; the gate takes effect at once. The
//! controllers get their Kubernetes client through [`Scope::fence`] ([`fenced_client`]): every
//! write (POST, PUT, PATCH, DELETE) is checked against the gate as it is handed to the connection
//! and refused inside the process when the gate is closed, so not even a reconcile stuck past its
//! cancellation can write once another replica may lead. [`LeaderGate::may_write`] is there too for
//! code that wants to skip work early.
//!
//! `carbonshift_leader` is 1 while the controllers run (always, without election).

use crate::units::from_jiff;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use http::{Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::client::Body;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerError, LeaseParams};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::annotations::is_dns1123_subdomain;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::retry::{CancellationToken, Doubling, Retryable};

/// The Lease name unless configured (the chart passes `<fullname>-leader`).
pub const DEFAULT_LEASE_NAME: &str = "carbonshift-leader";

/// How long a Lease stays valid after its last renewal (`spec.leaseDurationSeconds`).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

/// How long before expiry the holder renews (kube-lease-manager's `grace`): with the defaults a
/// renewal every 10 s.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(5);

/// How long before the Lease expires the holder stops writing: room for clock skew between nodes
/// and for a write already sent to reach the API server. It must be shorter than
/// [`DEFAULT_RENEW_BEFORE`], or the gate would close before every routine renewal.
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(2);

/// How long the controllers get to stop after being cancelled before their task is aborted.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long releasing the Lease at shutdown may take.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Retries when the lease manager cannot be set up (API server unreachable, RBAC missing): 1 s
/// doubling to 30 s, until it works or the process shuts down.
const SETUP_RETRY: Doubling = Doubling::new(Duration::from_secs(1), Duration::from_secs(30));

/// Why leader election cannot start or stopped.
#[derive(Debug, Error)]
pub enum LeaderError {
    /// The election settings are inconsistent.
    #[error("invalid leader election settings: {0}")]
    InvalidParams(String),
    /// The lease manager's background task ended while this replica still needed it.
    #[error("the lease manager stopped unexpectedly: {0}")]
    ManagerStopped(String),
    /// The controllers returned although nobody asked them to stop.
    #[error("the controllers stopped on their own: {0}")]
    ControllersExited(String),
}

/// Where the Lease is, who this replica is, and the timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionParams {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's namespace).
    pub namespace: String,
    /// This replica's identity (`spec.holderIdentity`): the pod name.
    pub identity: String,
    /// Validity of the Lease after a renewal; whole seconds, at least 2 s.
    pub lease_duration: Duration,
    /// Renew this long before expiry; whole seconds, at least 1 s, less than `lease_duration`.
    pub renew_before: Duration,
    /// Stop writing this long before the Lease would expire; more than zero and less than
    /// `renew_before`.
    pub safety_margin: Duration,
}

impl ElectionParams {
    /// The Lease `lease_name` in `namespace` for `identity`, with the default timing.
    pub fn new(
        lease_name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            lease_name: lease_name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_before: DEFAULT_RENEW_BEFORE,
            safety_margin: DEFAULT_SAFETY_MARGIN,
        }
    }

    /// Checks the settings (kube-lease-manager panics on some of these; this says why instead).
    pub fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |message: String| Err(LeaderError::InvalidParams(message));
        if !is_dns1123_subdomain(&self.lease_name) {
            return invalid(format!(
                "lease name {:?} is not a valid object name (lower-case letters, digits, '-' and '.')",
                self.lease_name
            ));
        }
        if !is_dns1123_subdomain(&self.namespace) {
            return invalid(format!(
                "namespace {:?} is not a valid namespace name",
                self.namespace
            ));
        }
        if self.identity.is_empty() {
            return invalid("the identity (pod name) is empty".to_string());
        }
        let whole = |d: Duration| d.subsec_nanos() == 0;
        if !whole(self.lease_duration) || !whole(self.renew_before) {
            return invalid(
                "the lease duration and renewal lead must be whole seconds (Lease fields are in seconds)"
                    .to_string(),
            );
        }
        if self.renew_before.is_zero() || self.renew_before >= self.lease_duration {
            return invalid(format!(
                "the renewal lead ({} s) must be at least 1 s and less than the lease duration ({} s)",
                self.renew_before.as_secs(),
                self.lease_duration.as_secs()
            ));
        }
        if i32::try_from(self.lease_duration.as_secs()).is_err() {
            return invalid("the lease duration is too long".to_string());
        }
        if self.safety_margin.is_zero() || self.safety_margin >= self.renew_before {
            return invalid(format!(
                "the safety margin ({:?}) must be more than zero and less than the renewal lead ({} s), \
                 or the controllers would stop before every renewal",
                self.safety_margin,
                self.renew_before.as_secs()
            ));
        }
        Ok(())
    }

    /// The path of the Lease on the API server.
    fn lease_path(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}",
            self.namespace, self.lease_name
        )
    }
}

/// How the controllers are allowed to run.
#[derive(Clone)]
pub enum Election {
    /// No election (`--leader-election=false`): the controllers run at once and the gate is
    /// always open. Only safe with a single replica and no overlapping rollouts.
    Disabled,
    /// Elect through a Lease ([`Election::lease`]).
    Lease(Box<LeaseElection>),
}

impl Election {
    /// Election through the Lease `params` describe, read and written with `client`.
    pub fn lease(client: Client, params: ElectionParams) -> Self {
        Self::Lease(Box::new(LeaseElection { client, params }))
    }
}

/// Election through a Lease.
#[derive(Clone)]
pub struct LeaseElection {
    /// The API client.
    pub client: Client,
    /// The Lease and the timing.
    pub params: ElectionParams,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disabled => f.write_str("Disabled"),
            Self::Lease(lease) => f
                .debug_struct("Lease")
                .field("params", &lease.params)
                .finish_non_exhaustive(),
        }
    }
}

/// What the gate currently allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// No writes: not the holder, or nothing known yet.
    Closed,
    /// Writes before this instant only.
    Until(DateTime<Utc>),
    /// Writes at any time (no election).
    Unconditional,
    /// No writes, for good: the process is shutting down.
    Revoked,
}

impl Grant {
    /// Whether a write at `now` is allowed.
    pub fn allows(self, now: DateTime<Utc>) -> bool {
        match self {
            Self::Unconditional => true,
            Self::Until(deadline) => now < deadline,
            Self::Closed | Self::Revoked => false,
        }
    }
}

/// The fencing gate the controllers check before every write. Clones share the same state.
#[derive(Debug, Clone)]
pub struct LeaderGate {
    state: Arc<watch::Sender<Grant>>,
}

impl LeaderGate {
    fn with(grant: Grant) -> Self {
        Self {
            state: Arc::new(watch::Sender::new(grant)),
        }
    }

    /// A gate that allows nothing until a renewal opens it.
    pub fn closed() -> Self {
        Self::with(Grant::Closed)
    }

    /// A gate that always allows writes (no leader election).
    pub fn unconditional() -> Self {
        Self::with(Grant::Unconditional)
    }

    /// A gate open until `deadline` (for tests of code that checks the gate).
    pub fn until(deadline: DateTime<Utc>) -> Self {
        Self::with(Grant::Until(deadline))
    }

    /// Whether this replica may write at `now`: true only while the last renewal the API server
    /// accepted, plus the lease duration, minus the safety margin, lies after `now`.
    pub fn may_write(&self, now: DateTime<Utc>) -> bool {
        self.grant().allows(now)
    }

    /// The current grant.
    pub fn grant(&self) -> Grant {
        *self.state.borrow()
    }

    /// The instant writes stop being allowed, if the gate is open until a deadline.
    pub fn valid_until(&self) -> Option<DateTime<Utc>> {
        match self.grant() {
            Grant::Until(deadline) => Some(deadline),
            _ => None,
        }
    }

    /// Sets the gate from a Lease the API server returned: open until `deadline`, or closed.
    /// Ignored once revoked.
    fn observe(&self, deadline: Option<DateTime<Utc>>) {
        let grant = deadline.map_or(Grant::Closed, Grant::Until);
        self.state.send_if_modified(|current| {
            if matches!(*current, Grant::Revoked | Grant::Unconditional) || *current == grant {
                return false;
            }
            *current = grant;
            true
        });
    }

    /// Closes the gate until the next renewal the API server accepts.
    fn close(&self) {
        self.observe(None);
    }

    /// Closes the gate for good.
    fn revoke(&self) {
        self.state.send_replace(Grant::Revoked);
    }

    fn subscribe(&self) -> watch::Receiver<Grant> {
        self.state.subscribe()
    }
}

/// The last instant this replica may write according to `lease`: `renewTime` + the shorter of
/// the Lease's duration and `lease_duration` − `margin`, when the Lease names `identity` as holder
/// and has a renewal time and a positive duration; `None` (no writes) otherwise.
pub fn write_deadline(
    lease: &Lease,
    identity: &str,
    lease_duration: Duration,
    margin: Duration,
) -> Option<DateTime<Utc>> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref()? != identity {
        return None;
    }
    let renewed = from_jiff(spec.renew_time.as_ref()?.0)?;
    let in_lease = Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?);
    let duration = in_lease.min(lease_duration);
    if duration.is_zero() {
        return None;
    }
    let valid = TimeDelta::from_std(duration).ok()? - TimeDelta::from_std(margin).ok()?;
    renewed.checked_add_signed(valid)
}

/// A client layer that reads every Lease the API server returns for our Lease and sets the gate
/// from it. The lease manager talks to the API server through it.
#[derive(Clone)]
struct LeaseObserver {
    inner: Client,
    path: Arc<str>,
    identity: Arc<str>,
    lease_duration: Duration,
    margin: Duration,
    gate: LeaderGate,
}

impl tower_service::Service<Request<Body>> for LeaseObserver {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner client buffers requests and waits for readiness itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let watched = request.uri().path() == &*this.path;
            let response = this.inner.send(request).await?;
            if !watched || !response.status().is_success() {
                // A failed renewal moves nothing: the gate closes when its deadline passes.
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let bytes = body.collect_bytes().await?;
            match serde_json::from_slice::<Lease>(&bytes) {
                Ok(lease) => this.gate.observe(write_deadline(
                    &lease,
                    &this.identity,
                    this.lease_duration,
                    this.margin,
                )),
                Err(e) => {
                    tracing::warn!(error = %e, "the API server returned a Lease that cannot be read; not writing until the next renewal");
                    this.gate.close();
                }
            }
            Ok(Response::from_parts(parts, Body::from(bytes)))
        })
    }
}

/// What the controllers get: the gate, a way to fence their client with it, and the stop signal.
#[derive(Clone)]
pub struct Scope {
    gate: LeaderGate,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("gate", &self.gate)
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Scope {
    /// The gate to check (`may_write(now)`) before a write.
    pub fn gate(&self) -> &LeaderGate {
        &self.gate
    }

    /// `client`, fenced by this scope's gate (see [`fenced_client`]): give the controllers this
    /// one, so that none of their writes can leave the process once the gate has closed.
    pub fn fence(&self, client: Client) -> Client {
        fenced_client(client, self.gate.clone(), self.clock.clone())
    }

    /// Completes when the controllers must stop (lease lost or not renewed in time, shutdown).
    /// Call it once per controller.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// Whether the controllers have been asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The stop signal as a token, for code that takes one: cancelled when the controllers must
    /// stop. It is a child token, so cancelling it affects only its holder.
    pub fn token(&self) -> CancellationToken {
        self.stop.child_token()
    }
}

/// The reason of the error a fenced client returns for a write while the gate is closed.
pub const NOT_LEADER_REASON: &str = "NotLeader";

/// A client that sends reads as `client` does but refuses every write (any method other than
/// GET, HEAD and OPTIONS) while `gate` does not allow writes at `clock`'s now: the request never
/// leaves the process and the caller gets a 503 API error with reason [`NOT_LEADER_REASON`].
///
/// The check is made as the request is handed to the connection, so a controller that missed
/// its cancellation (stuck in a long reconcile, or a process that was paused) still cannot write
/// after the gate closed; the safety margin covers a request already on its way.
pub fn fenced_client(client: Client, gate: LeaderGate, clock: Arc<dyn Clock>) -> Client {
    let default_namespace = client.default_namespace().to_string();
    Client::new(
        Fence {
            inner: client,
            gate,
            clock,
        },
        default_namespace,
    )
}

#[derive(Clone)]
struct Fence {
    inner: Client,
    gate: LeaderGate,
    clock: Arc<dyn Clock>,
}

impl tower_service::Service<Request<Body>> for Fence {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let reads = matches!(
            *request.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if !reads && !self.gate.may_write(self.clock.now()) {
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                "refused a write: this replica does not hold the leader Lease"
            );
            let status = kube::core::Status::failure(
                "carbonshift does not hold the leader Lease on this replica: the write was not sent",
                NOT_LEADER_REASON,
            )
            .with_code(503);
            return Box::pin(async move { Err(kube::Error::Api(status.boxed())) });
        }
        let inner = self.inner.clone();
        Box::pin(async move { inner.send(request).await })
    }
}

/// The running controllers. Dropping it (the election's future dropped) stops them too.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Running {
    fn start<F, Fut, E>(make_controllers: &mut F, gate: &LeaderGate, clock: &Arc<dyn Clock>) -> Self
    where
        F: FnMut(Scope) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let stop = CancellationToken::new();
        let controllers = make_controllers(Scope {
            gate: gate.clone(),
            clock: clock.clone(),
            stop: stop.clone(),
        });
        let task = tokio::spawn(async move { controllers.await.map_err(|e| e.to_string()) });
        Self { stop, task }
    }

    /// Asks the controllers to stop and waits for them (aborting them after [`STOP_GRACE`]).
    async fn stop(mut self) {
        self.stop.cancel();
        match tokio::time::timeout(STOP_GRACE, &mut self.task).await {
            Ok(Ok(Ok(()))) => tracing::info!("controllers stopped"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "controllers stopped with an error"),
            Ok(Err(e)) => tracing::error!(error = %e, "controllers panicked"),
            Err(_) => {
                tracing::error!(
                    grace = ?STOP_GRACE,
                    "controllers did not stop in time; aborting them (the write gate is closed)"
                );
                self.task.abort();
                let _ = (&mut self.task).await;
            }
        }
    }

    /// Waits for the controllers to return on their own.
    async fn finished(&mut self) -> String {
        match (&mut self.task).await {
            Ok(Ok(())) => "they returned".to_string(),
            Ok(Err(e)) => e,
            Err(e) => format!("they panicked: {e}"),
        }
    }
}

async fn finished(running: &mut Option<Running>) -> String {
    match running {
        Some(running) => running.finished().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_deadline(clock: &dyn Clock, deadline: Option<DateTime<Utc>>) {
    match deadline {
        Some(deadline) => {
            let left = (deadline - clock.now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

/// Runs the controllers while this replica leads, until `shutdown` completes.
///
/// `make_controllers` is called each time leadership is (re)gained, with the [`Scope`] the
/// controllers must honour; it returns the future running them, which must end soon after
/// [`Scope::stopped`] completes. With [`Election::Disabled`] the controllers run at once.
///
/// Returns `Ok` after a graceful shutdown (controllers stopped, Lease released); an error when the
/// controllers end on their own or the lease manager fails for good. Failures to reach the API
/// server are retried (the replica simply does not lead meanwhile).
pub async fn run_while_leader<F, Fut, E>(
    election: Election,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    make_controllers: F,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LeaderError>
where
    F: FnMut(Scope) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    match election {
        Election::Disabled => run_unelected(clock, metrics, make_controllers, shutdown).await,
        Election::Lease(lease) => {
            let LeaseElection { client, params } = *lease;
            params.validate()?;
            run_elected(client, params, clock, metrics, make_controllers, shutdown).await
        }
    }
}

async fn run_unelected<F, Fut, E>(
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    mut make_controllers: F,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LeaderError>
where
    F: FnMut(Scope) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    tracing::info!("leader election is off: starting the controllers");
    let gate = LeaderGate::unconditional();
    metrics.leader.set(1);
    let mut running = Running::start(&mut make_controllers, &gate, &clock);
    let result = tokio::select! {
        () = shutdown => {
            running.stop().await;
            Ok(())
        }
        reason = running.finished() => Err(LeaderError::ControllersExited(reason)),
    };
    metrics.leader.set(0);
    result
}

type ManagerTask = JoinHandle<Result<LeaseManager, LeaseManagerError>>;

/// Builds the lease manager (which reads or creates the Lease), retrying ([`SETUP_RETRY`]) until
/// it works. The schedule has no end, so this returns an error only if backon ever ran out of
/// retries.
async fn start_manager(
    client: Client,
    params: &ElectionParams,
) -> Result<(watch::Receiver<bool>, ManagerTask), LeaseManagerError> {
    let client = &client;
    let setup = move || async move {
        let lease_params = LeaseParams::new(
            params.identity.clone(),
            params.lease_duration.as_secs(),
            params.renew_before.as_secs(),
        );
        LeaseManager::new(
            client.clone(),
            params.lease_name.clone(),
            params.namespace.clone(),
            lease_params,
            LeaseCreateMode::AutoCreate,
        )
        .await
    };
    let manager = setup
        .retry(SETUP_RETRY.delays())
        .notify(|e: &LeaseManagerError, retry_in: Duration| {
            tracing::warn!(
                error = %e,
                lease = %params.lease_name,
                namespace = %params.namespace,
                retry_in = ?retry_in,
                "cannot read or create the leader Lease; this replica does not lead meanwhile"
            );
        })
        .await?;
    tracing::info!(
        lease = %params.lease_name,
        namespace = %params.namespace,
        identity = %params.identity,
        "taking part in leader election"
    );
    Ok(manager.watch().await)
}

async fn run_elected<F, Fut, E>(
    client: Client,
    params: ElectionParams,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    mut make_controllers: F,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LeaderError>
where
    F: FnMut(Scope) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let gate = LeaderGate::closed();
    let default_namespace = client.default_namespace().to_string();
    let observer = LeaseObserver {
        inner: client,
        path: params.lease_path().into(),
        identity: params.identity.as_str().into(),
        lease_duration: params.lease_duration,
        margin: params.safety_margin,
        gate: gate.clone(),
    };
    let observed = Client::new(observer, default_namespace);
    metrics.leader.set(0);

    tokio::pin!(shutdown);
    let (mut elected, manager) = tokio::select! {
        () = &mut shutdown => return Ok(()),
        started = start_manager(observed, &params) => {
            started.map_err(|e| LeaderError::ManagerStopped(e.to_string()))?
        }
    };
    let mut manager = Some(manager);
    let mut grants = gate.subscribe();
    let mut running: Option<Running> = None;

    let outcome = loop {
        let is_elected = *elected.borrow_and_update();
        grants.borrow_and_update();
        let may_write = gate.may_write(clock.now());
        match (running.is_some(), is_elected && may_write) {
            (false, true) => {
                tracing::info!(
                    identity = %params.identity,
                    valid_until = ?gate.valid_until(),
                    "leading: starting the controllers"
                );
                metrics.leader.set(1);
                running = Some(Running::start(&mut make_controllers, &gate, &clock));
            }
            (true, false) => {
                if is_elected {
                    tracing::warn!(
                        identity = %params.identity,
                        "the Lease was not renewed in time: stopping the controllers before it can expire"
                    );
                } else {
                    tracing::warn!(identity = %params.identity, "lost the Lease: stopping the controllers");
                }
                gate.close();
                metrics.leader.set(0);
                if let Some(running) = running.take() {
                    running.stop().await;
                }
                continue;
            }
            _ => {}
        }

        let deadline = if running.is_some() {
            gate.valid_until()
        } else {
            None
        };
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            changed = elected.changed() => {
                if changed.is_err() {
                    let reason = match manager.take() {
                        Some(task) => match task.await {
                            Ok(Ok(_)) => "it returned".to_string(),
                            Ok(Err(e)) => e.to_string(),
                            Err(e) => format!("it panicked: {e}"),
                        },
                        None => "it is gone".to_string(),
                    };
                    break Err(LeaderError::ManagerStopped(reason));
                }
            }
            _ = grants.changed() => {}
            () = sleep_until_deadline(clock.as_ref(), deadline) => {}
            reason = finished(&mut running) => {
                running = None;
                break Err(LeaderError::ControllersExited(reason));
            }
        }
    };

    // Stop writing first, then hand the Lease over.
    gate.revoke();
    metrics.leader.set(0);
    if let Some(running) = running.take() {
        running.stop().await;
    }
    // Closing the state channel makes the lease manager release the Lease and return.
    drop(elected);
    if let Some(mut manager) = manager {
        match tokio::time::timeout(RELEASE_TIMEOUT, &mut manager).await {
            Ok(Ok(Ok(_))) => tracing::info!(lease = %params.lease_name, "released the Lease"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "could not release the Lease; it expires on its own")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the lease manager failed while releasing the Lease")
            }
            Err(_) => {
                tracing::warn!(
                    timeout = ?RELEASE_TIMEOUT,
                    "releasing the Lease took too long; it expires on its own"
                );
                manager.abort();
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests;
