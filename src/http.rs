//! The plain-HTTP server for the kubelet and Prometheus: `GET /metrics`, `GET /healthz` and
//! `GET /readyz` (port 8080 in the chart).
//!
//! Liveness only says the process still serves requests. Readiness says the replica can do its job
//! for the API server: the webhook has a certificate loaded. It does not depend on leadership,
//! since every replica serves the webhook while only the leader runs the controllers.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use thiserror::Error;

use crate::metrics::Metrics;

/// The content type of `/metrics`: the OpenMetrics text format that prometheus-client writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long open connections may finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the metrics and health server could not run.
#[derive(Debug, Error)]
pub enum HttpError {
    /// The address could not be bound (in use, not permitted, not local).
    #[error("cannot listen on {addr} for metrics and health checks: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("metrics and health server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A shared readiness flag with the reason while not ready. Clones share the same flag.
///
/// It starts not ready; the webhook marks it ready once its certificate is loaded and marks it not
/// ready again when it shuts down.
#[derive(Debug, Clone)]
pub struct Readiness {
    // `None` when ready, else why not.
    state: Arc<RwLock<Option<String>>>,
    // `None` while the API server answers (or before it was first asked), else why not: a
    // replica that cannot reach it can neither see Jobs nor release them.
    api: Arc<RwLock<Option<String>>>,
}

impl Readiness {
    /// A flag that is not ready yet, for `reason` (shown by `/readyz`).
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            state: Arc::new(RwLock::new(Some(reason.into()))),
            api: Arc::new(RwLock::new(None)),
        }
    }

    /// Records that the API server answers.
    pub fn set_api_reachable(&self) {
        *self.api.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Records that the API server does not answer, for `reason`; `/readyz` answers 503 until
    /// [`Readiness::set_api_reachable`].
    pub fn set_api_unreachable(&self, reason: impl Into<String>) {
        *self.api.write().unwrap_or_else(PoisonError::into_inner) = Some(reason.into());
    }

    /// Marks the process ready.
    pub fn set_ready(&self) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Marks the process not ready, for `reason`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Some(reason.into());
    }

    /// `Ok` when ready, else the reason.
    pub fn check(&self) -> Result<(), String> {
        if let Some(reason) = &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            return Err(reason.clone());
        }
        match &*self.api.read().unwrap_or_else(PoisonError::into_inner) {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new("starting")
    }
}

/// What the metrics and health server reads.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The registry behind `/metrics`.
    pub metrics: Metrics,
    /// The flag behind `/readyz`.
    pub readiness: Readiness,
}

/// The routes: `GET /metrics`, `GET /healthz`, `GET /readyz` (HEAD too).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// Binds `addr` (before anything else starts, so that a port in use is reported at once).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })
}

/// Serves metrics and health checks on `addr` until `shutdown` completes, then lets open
/// connections finish (for a few seconds at most).
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    serve_listener(bind(addr)?, state, shutdown).await
}

/// Like [`serve`] on a listener bound already: tests bind `127.0.0.1:0` and read the port from
/// the listener.
pub async fn serve_listener(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener)
        .map_err(HttpError::Serve)?
        .handle(handle.clone())
        .serve(router(state).into_make_service());
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(HttpError::Serve),
        () = shutdown => handle.graceful_shutdown(Some(SHUTDOWN_GRACE)),
    }
    server.await.map_err(HttpError::Serve)
}
