//! The mutating admission webhook: an HTTPS server (`POST /mutate`, port 9443 in the chart) around
//! the pure decision in [`mod@mutate`].
//!
//! The server writes nothing and makes no API call per request: it parses the `AdmissionReview`,
//! asks [`mutate::mutate_full`] what to do at the [`Clock`]'s `now` — with what the watch caches
//! every replica keeps say about CarbonForecasts ([`WatchedForecasts`]) and about the namespaces'
//! CarbonBudgets and CarbonLedgers ([`WatchedBudgets`]) — counts the outcome, and answers. Every
//! replica serves it, leader or not. The certificate is reloaded when its files change
//! ([`tls::CertReloader`]); the readiness flag is set once a certificate is loaded and cleared when
//! the server shuts down.

pub mod mutate;
pub mod tls;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use thiserror::Error;

use crate::api::annotations::AnnotationDefaults;
use crate::clock::Clock;
use crate::http::Readiness;
use crate::metrics::Metrics;

pub use mutate::{
    Admission, Answer, BudgetBook, FixedBudgets, ForecastCatalog, KueueMode, NoBudgets, Outcome,
    UnknownForecasts, Untouched, mutate, mutate_full, mutate_with,
};
pub use tls::{CertReloader, Reload, TlsConfigPaths};

/// The path the API server posts `AdmissionReview`s to (fixed in the chart).
pub const PATH: &str = "/mutate";

/// The largest request body accepted. Objects are at most 1.5 MiB in etcd; a review carries the
/// object and, for updates, the old one.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How long open connections may finish after shutdown is requested. Admission calls take
/// milliseconds; the API server gives up on them after the webhook's `timeoutSeconds` anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the webhook server could not start or stopped.
#[derive(Debug, Error)]
pub enum WebhookError {
    /// A certificate or key file cannot be read.
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    ReadFile {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("TLS file {} is not valid PEM: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error(
        "TLS certificate file {} holds no certificate; expected PEM blocks -----BEGIN CERTIFICATE-----",
        path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "TLS key file {} holds no private key; expected a PEM RSA (PKCS#1), EC (SEC1) or PKCS#8 private key",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds a key of a kind that cannot be used (encrypted, OpenSSH, DSA, an
    /// unsupported curve or size).
    #[error(
        "TLS key file {}: unsupported private key: {reason}; expected an unencrypted RSA (PKCS#1), EC (SEC1) or PKCS#8 private key",
        path.display()
    )]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error(
        "the private key in {} does not belong to the certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refuses the pair for another reason (for example a malformed certificate).
    #[error(
        "the TLS certificate in {} cannot be served with the key in {}: {reason}",
        cert.display(),
        key.display()
    )]
    UnusableCertificate {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr} for the webhook: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("webhook server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// What the webhook needs to answer: the operator's defaults, the time, and where to report.
#[derive(Clone)]
pub struct WebhookState {
    /// The operator's defaults and cap, as for the controllers.
    pub defaults: AnnotationDefaults,
    /// The kinds held and what to do with Kueue's jobs.
    pub admission: Admission,
    /// The source of the admission time.
    pub clock: Arc<dyn Clock>,
    /// Where `carbonshift_webhook_requests_total` is counted.
    pub metrics: Metrics,
    /// Set once the certificate is loaded; cleared at shutdown.
    pub readiness: Readiness,
    /// Which CarbonForecasts exist, for the warning about a Job naming one that does not.
    pub forecasts: Arc<dyn ForecastCatalog + Send + Sync>,
    /// The namespaces' CarbonBudgets and CarbonLedgers, for the budgets' verdicts.
    pub budgets: Arc<dyn BudgetBook + Send + Sync>,
}

/// Runs a reflector of `api` with `config` on the runtime (it ends with the runtime; watch
/// errors are logged and retried with backoff), and a flag set once its first list is in.
fn spawn_reflector<K>(
    api: kube::Api<K>,
    config: kube::runtime::watcher::Config,
    what: &'static str,
) -> (
    kube::runtime::reflector::Store<K>,
    Arc<std::sync::atomic::AtomicBool>,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (store, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, config))
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                tracing::warn!(error = %e, "watching {what} for the webhook; retrying");
            }
        }
    });
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (store, ready) = (store.clone(), ready.clone());
        tokio::spawn(async move {
            if store.wait_until_ready().await.is_ok() {
                ready.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    (store, ready)
}

/// Every CarbonBudget and CarbonLedger of the cluster, from two watch caches that every replica
/// keeps for the webhook. No budget acts until both first lists have arrived (fail open).
#[derive(Clone)]
pub struct WatchedBudgets {
    budgets: kube::runtime::reflector::Store<crate::api::CarbonBudget>,
    ledgers: kube::runtime::reflector::Store<crate::api::CarbonLedger>,
    ready: [Arc<std::sync::atomic::AtomicBool>; 2],
}

impl WatchedBudgets {
    /// Starts both watches (all namespaces) on the runtime; they end with the runtime.
    pub fn spawn(client: kube::Client) -> Self {
        let config = kube::runtime::watcher::Config::default;
        let (budgets, b) = spawn_reflector(
            kube::Api::<crate::api::CarbonBudget>::all(client.clone()),
            config(),
            "CarbonBudgets",
        );
        let (ledgers, l) = spawn_reflector(
            kube::Api::<crate::api::CarbonLedger>::all(client),
            config(),
            "CarbonLedgers",
        );
        Self {
            budgets,
            ledgers,
            ready: [b, l],
        }
    }
}

impl BudgetBook for WatchedBudgets {
    fn verdict(
        &self,
        namespace: &str,
        forecast: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<crate::budget::Verdict> {
        use kube::ResourceExt;
        if !self
            .ready
            .iter()
            .all(|r| r.load(std::sync::atomic::Ordering::SeqCst))
        {
            return None;
        }
        let budgets: Vec<Arc<crate::api::CarbonBudget>> = self
            .budgets
            .state()
            .into_iter()
            .filter(|b| b.namespace().as_deref() == Some(namespace))
            .collect();
        if budgets.is_empty() {
            return None;
        }
        let ledgers: Vec<Arc<crate::api::CarbonLedger>> = self
            .ledgers
            .state()
            .into_iter()
            .filter(|l| l.namespace().as_deref() == Some(namespace))
            .collect();
        let empty = crate::api::CarbonLedgerStatus::default();
        let budgets: Vec<crate::budget::Budget<'_>> = budgets
            .iter()
            .map(|b| crate::budget::Budget {
                name: b.metadata.name.as_deref().unwrap_or_default(),
                spec: &b.spec,
            })
            .collect();
        let ledgers: Vec<crate::budget::Ledger<'_>> = ledgers
            .iter()
            .map(|l| crate::budget::Ledger {
                forecast: &l.spec.forecast,
                status: l.status.as_ref().unwrap_or(&empty),
            })
            .collect();
        Some(crate::budget::verdict(&budgets, &ledgers, forecast, now))
    }
}

/// The CarbonForecasts this operator uses (its `--forecast-selector`), from a watch cache that
/// every replica keeps for the webhook. Unknown (no warning) until the first list has arrived.
#[derive(Clone)]
pub struct WatchedForecasts {
    store: kube::runtime::reflector::Store<crate::api::CarbonForecast>,
    /// Set once the first list is in the store.
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl WatchedForecasts {
    /// Starts the watch (`label_selector`: the operator's `--forecast-selector`, if any) on the
    /// runtime; it ends with the runtime. Watch errors are logged and retried with backoff.
    pub fn spawn(client: kube::Client, label_selector: Option<String>) -> Self {
        let api = kube::Api::<crate::api::CarbonForecast>::all(client);
        let mut config = kube::runtime::watcher::Config::default();
        if let Some(selector) = label_selector {
            config = config.labels(&selector);
        }
        let (store, ready) = spawn_reflector(api, config, "CarbonForecasts");
        Self { store, ready }
    }
}

impl ForecastCatalog for WatchedForecasts {
    fn knows(&self, name: &str) -> Option<bool> {
        // Before the first list the store is empty, which says nothing.
        if !self.ready.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        Some(
            self.store
                .get(&kube::runtime::reflector::ObjectRef::new(name))
                .is_some(),
        )
    }
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState")
            .field("defaults", &self.defaults)
            .field("admission", &self.admission)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

/// The routes: `POST /mutate`, with bodies up to [`MAX_BODY_BYTES`] (larger ones get 413).
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(PATH, post(admit))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(state))
}

async fn admit(State(state): State<Arc<WebhookState>>, body: Bytes) -> Response {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(e) => return bad_review(&state, format!("malformed AdmissionReview: {e}")),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => return bad_review(&state, "AdmissionReview without a request".to_string()),
    };

    let Answer {
        response,
        outcome,
        budget,
    } = mutate_full(
        &request,
        &state.defaults,
        &state.admission,
        state.forecasts.as_ref(),
        state.budgets.as_ref(),
        state.clock.now(),
    );
    state.metrics.record_webhook(outcome.result());
    if let Some((namespace, name, action)) = &budget {
        state
            .metrics
            .record_budget_action(namespace, name, action.as_str());
    }
    let namespace = request.namespace.as_deref().unwrap_or_default();
    // Plain values, not Rust debug strings, so that JSON logs are searchable: the outcome's label,
    // its detail in words, the warnings as text.
    let result = outcome.result();
    let detail = outcome.to_string();
    let warnings = response.warnings.as_deref().unwrap_or_default();
    let warning_count = warnings.len();
    let warnings = warnings.join(" | ");
    match &outcome {
        Outcome::AllowedUntouched(_) | Outcome::NotAJob => tracing::debug!(
            uid = %request.uid, namespace, name = %request.name, outcome = result, %detail,
            warning_count, warnings, "admission"
        ),
        Outcome::Denied(_)
        | Outcome::Refused(_)
        | Outcome::OverBudget(_)
        | Outcome::Invalid(_)
        | Outcome::Error(_) => {
            tracing::warn!(
                uid = %request.uid, namespace, name = %request.name, outcome = result, %detail,
                "admission"
            )
        }
        Outcome::Held { .. }
        | Outcome::Gated
        | Outcome::DryRun
        | Outcome::RunNow
        | Outcome::AdmittedWithWarning => {
            tracing::info!(
                uid = %request.uid, namespace, name = %request.name, outcome = result, %detail,
                warning_count, warnings, "admission"
            )
        }
    }
    axum::Json(response.into_review()).into_response()
}

fn bad_review(state: &WebhookState, message: String) -> Response {
    state.metrics.record_webhook("error");
    tracing::warn!(error = %message, "refused an admission request");
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

/// Loads the certificate at `tls`, binds `addr` and serves the webhook until `shutdown`
/// completes; then stops accepting, marks the process not ready and lets open requests finish
/// (for a few seconds at most).
///
/// A certificate or key that cannot be used, or an address that cannot be bound, is an error at
/// once. Later certificate changes are picked up every [`TlsConfigPaths::poll_interval`]; a bad
/// new pair is logged and the previous one kept.
pub async fn serve(
    addr: SocketAddr,
    tls: TlsConfigPaths,
    state: WebhookState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebhookError> {
    let reloader = CertReloader::load(tls).await?;
    let listener = TcpListener::bind(addr).map_err(|source| WebhookError::Bind { addr, source })?;
    run(listener, reloader, state, shutdown).await
}

/// Like [`serve`] on a listener bound already: tests bind `127.0.0.1:0` and read the port from
/// the listener.
pub async fn serve_listener(
    listener: TcpListener,
    tls: TlsConfigPaths,
    state: WebhookState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebhookError> {
    let reloader = CertReloader::load(tls).await?;
    run(listener, reloader, state, shutdown).await
}

async fn run(
    listener: TcpListener,
    reloader: CertReloader,
    state: WebhookState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebhookError> {
    let local = listener.local_addr().map_err(WebhookError::Serve)?;
    let readiness = state.readiness.clone();
    let handle = axum_server::Handle::new();
    let server = axum_server::tls_rustls::from_tcp_rustls(listener, reloader.config())
        .map_err(WebhookError::Serve)?
        .handle(handle.clone())
        .serve(router(state).into_make_service());
    tracing::info!(
        addr = %local,
        cert = %reloader.paths().cert.display(),
        "serving the admission webhook"
    );
    readiness.set_ready();

    let watch = reloader.watch();
    tokio::pin!(server, watch, shutdown);
    tokio::select! {
        result = &mut server => {
            readiness.set_not_ready("the webhook server stopped");
            return result.map_err(WebhookError::Serve);
        }
        never = &mut watch => match never {},
        () = &mut shutdown => {}
    }
    readiness.set_not_ready("shutting down");
    handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
    server.await.map_err(WebhookError::Serve)
}
