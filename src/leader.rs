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

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::Client;
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

mod gate;

use gate::LeaseObserver;
pub use gate::{Grant, LeaderGate, NOT_LEADER_REASON, fenced_client, write_deadline};

#[cfg(test)]
mod tests;
