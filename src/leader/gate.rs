//! The write gate of a replica: what its Lease allows it to write ([`LeaderGate`], [`Grant`]), the
//! client layer that learns the Lease's renewals from the responses ([`LeaseObserver`]), and the
//! fence that refuses every write once the gate is closed ([`fenced_client`]).

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use http::{Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::client::Body;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::units::from_jiff;

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
    pub(super) fn observe(&self, deadline: Option<DateTime<Utc>>) {
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
    pub(super) fn close(&self) {
        self.observe(None);
    }

    /// Closes the gate for good.
    pub(super) fn revoke(&self) {
        self.state.send_replace(Grant::Revoked);
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Grant> {
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
pub(super) struct LeaseObserver {
    pub(super) inner: Client,
    pub(super) path: Arc<str>,
    pub(super) identity: Arc<str>,
    pub(super) lease_duration: Duration,
    pub(super) margin: Duration,
    pub(super) gate: LeaderGate,
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
    pub(super) inner: Client,
    pub(super) gate: LeaderGate,
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
