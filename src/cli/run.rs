//! `carbonshift run`: the operator process the chart deploys.
//!
//! Every replica serves the admission webhook (HTTPS) and the metrics and health server (HTTP);
//! the replica that holds the leader Lease also runs the controllers (see [`crate::leader`]).
//! Every flag has a `CARBONSHIFT_*` environment variable, which is how the chart configures it.
//!
//! Start-up order: logging → TLS crypto provider → Kubernetes client (`KUBECONFIG`,
//! `~/.kube/config` or the in-cluster service account) → metrics/health and webhook servers →
//! leader election → while leading: the forecast store filled from every CarbonForecast's status,
//! then the forecast and workload controllers. SIGTERM or SIGINT shuts down gracefully: readiness
//! off, controllers stopped, Lease released, servers drained.
//!
//! Exit status: 0 after a graceful shutdown, 1 when something fails (no cluster configuration, a
//! server that cannot start, controllers that stop on their own), 2 on bad arguments.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::controller::{self, Context, ForecastStore, OperatorConfig};
use crate::forecast::{self, ClientOptions, Shared};
use crate::http::{self, HttpState, Readiness};
use crate::leader::{self, Election, Scope};
use crate::metrics::Metrics;
use crate::retry::{CancellationToken, Doubling, Retryable};
use crate::telemetry;
use crate::webhook::{self, CertReloader, WebhookState};

use super::one_line;

/// How long to wait between attempts to read the CarbonForecasts at the start of a leadership:
/// 1 s doubling to 30 s.
const FILL_RETRY: Doubling = Doubling::new(
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(30),
);

/// Runs the operator until SIGTERM or SIGINT.
pub fn run(args: Args) -> ExitCode {
    telemetry::init(args.log_format);
    let in_cluster = std::fs::read_to_string(IN_CLUSTER_NAMESPACE_FILE).ok();
    let settings = match args.settings(in_cluster.as_deref(), hostname().as_deref()) {
        Ok(settings) => settings,
        Err(message) => return super::usage_error(message),
    };
    let runtime = match super::runtime(true) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(operate(settings, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => super::failure(message),
    }
}

/// Completes on the first SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the operator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: shutting down");
    }
}

/// Runs everything until `signal` completes or a component fails; returns why it failed.
pub async fn operate(settings: Settings, signal: impl Future<Output = ()>) -> Result<(), String> {
    forecast::install_crypto_provider();
    let (client, server) = super::kube_client_to("operator").await.map_err(|e| {
        format!(
            "cannot find a Kubernetes cluster (set KUBECONFIG, or use ~/.kube/config, or run in a pod): {}",
            one_line(&e.to_string())
        )
    })?;
    tracing::info!(%server, "talking to the Kubernetes API server");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Metrics::new();
    let readiness = Readiness::new("starting");
    // The shutdown signal of the servers and the election; cancelled on every way out of this
    // function, an early error return included.
    let stop = CancellationToken::new();
    let _stop_on_return = stop.clone().drop_guard();

    // The servers every replica runs; both bind (and the webhook reads its certificate) before
    // anything else starts, so that a bad port or file fails the start at once.
    let metrics_listener = http::bind(settings.metrics_addr).map_err(|e| e.to_string())?;
    let metrics_server = tokio::spawn(http::serve_listener(
        metrics_listener,
        HttpState {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
        },
        stop.clone().cancelled_owned(),
    ));
    tracing::info!(addr = %settings.metrics_addr, "serving metrics and health checks");
    let webhook_server: Option<JoinHandle<Result<(), webhook::WebhookError>>> = match &settings
        .webhook
    {
        Some(hook) => {
            CertReloader::load(hook.tls.clone())
                .await
                .map_err(|e| e.to_string())?;
            let listener = std::net::TcpListener::bind(hook.addr).map_err(|source| {
                webhook::WebhookError::Bind {
                    addr: hook.addr,
                    source,
                }
                .to_string()
            })?;
            Some(tokio::spawn(webhook::serve_listener(
                listener,
                hook.tls.clone(),
                WebhookState {
                    defaults: settings.operator.annotation_defaults.clone(),
                    admission: webhook::Admission {
                        kinds: settings.operator.kinds.clone(),
                        kueue: settings.kueue,
                    },
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                    readiness: readiness.clone(),
                    forecasts: Arc::new(webhook::WatchedForecasts::spawn(
                        client.clone(),
                        settings.operator.forecast_selector.label_selector(),
                    )),
                    budgets: Arc::new(webhook::WatchedBudgets::spawn(client.clone())),
                },
                stop.clone().cancelled_owned(),
            )))
        }
        None => {
            tracing::warn!(
                "the admission webhook is off: only Jobs created suspended with the deferrable annotation are held"
            );
            readiness.set_ready();
            None
        }
    };

    // /readyz answers 503 while the API server does not: this replica can then neither see Jobs
    // nor release them, and says which server it cannot reach.
    tokio::spawn(probe_api_server(
        client.clone(),
        server,
        readiness.clone(),
        stop.clone(),
    ));

    let election = match &settings.election {
        Some(params) => Election::lease(client.clone(), params.clone()),
        None => {
            tracing::warn!(
                "leader election is off: run a single replica, or two could release the same Jobs"
            );
            Election::Disabled
        }
    };
    let leading = {
        let client = client.clone();
        let clock = clock.clone();
        let metrics = metrics.clone();
        let config = settings.operator.clone();
        let reporter = controller::reporter(Some(settings.identity.clone()));
        move |scope: Scope| {
            run_controllers(
                client.clone(),
                clock.clone(),
                metrics.clone(),
                config.clone(),
                reporter.clone(),
                scope,
            )
        }
    };
    let mut leadership = tokio::spawn(leader::run_while_leader(
        election,
        clock.clone(),
        metrics.clone(),
        leading,
        stop.clone().cancelled_owned(),
    ));

    // Wait for the signal or for a component to fail.
    let mut webhook_server = webhook_server;
    let mut leadership_done = false;
    let failure: Option<String> = tokio::select! {
        () = signal => None,
        result = &mut leadership => {
            leadership_done = true;
            Some(match result {
                Ok(Ok(())) => "leader election stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("leader election panicked: {e}"),
            })
        }
        result = async {
            match webhook_server.as_mut() {
                Some(server) => server.await,
                None => std::future::pending().await,
            }
        } => {
            webhook_server = None;
            Some(match result {
                Ok(Ok(())) => "the webhook server stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("the webhook server panicked: {e}"),
            })
        }
    };
    if let Some(reason) = &failure {
        tracing::error!(error = %reason, "shutting down after a failure");
    }

    // Readiness off first, so that the Service stops sending admission requests; then stop
    // writing and hand the Lease over; the metrics server goes last.
    readiness.set_not_ready("shutting down");
    stop.cancel();
    if !leadership_done {
        match leadership.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election ended with an error"),
            Err(e) => tracing::warn!(error = %e, "leader election panicked"),
        }
    }
    if let Some(server) = webhook_server {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "webhook server"),
            Err(e) => tracing::warn!(error = %e, "webhook server panicked"),
        }
    }
    match metrics_server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics server"),
        Err(e) => tracing::warn!(error = %e, "metrics server panicked"),
    }
    tracing::info!("stopped");
    match failure {
        None => Ok(()),
        Some(reason) => Err(reason),
    }
}

/// How often every replica checks that the API server answers.
const API_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How long one check may take.
const API_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the API server for its version every [`API_PROBE_INTERVAL`] until `stop`, and keeps
/// `readiness` told whether it answers; logs each change once.
async fn probe_api_server(
    client: kube::Client,
    server: String,
    readiness: Readiness,
    stop: CancellationToken,
) {
    let mut reachable = true;
    loop {
        let answer = tokio::time::timeout(API_PROBE_TIMEOUT, client.apiserver_version()).await;
        let problem = match answer {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(one_line(&e.to_string())),
            Err(_) => Some(format!(
                "no answer within {} s",
                API_PROBE_TIMEOUT.as_secs()
            )),
        };
        match problem {
            None => {
                if !reachable {
                    tracing::info!(%server, "the API server answers again");
                }
                readiness.set_api_reachable();
                reachable = true;
            }
            Some(problem) => {
                let reason = format!("the API server {server} is unreachable: {problem}");
                if reachable {
                    tracing::warn!(%server, error = %problem, "the API server is unreachable; /readyz answers 503 until it answers");
                }
                readiness.set_api_unreachable(reason);
                reachable = false;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(API_PROBE_INTERVAL) => {}
        }
    }
}

/// What the leader runs: the forecast store filled from every CarbonForecast's status (retried
/// until it works or leadership ends), then the forecast and workload controllers, with a client
/// fenced by the leader gate, until `scope` says stop.
async fn run_controllers(
    client: kube::Client,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    config: OperatorConfig,
    reporter: kube::runtime::events::Reporter,
    scope: Scope,
) -> Result<(), String> {
    let providers = Shared::new(ClientOptions::default()).map_err(|e| e.to_string())?;
    // Each attempt owns what it reads: with borrowed arguments rustc cannot prove the
    // controllers' future `Send` (its known limit with closures that return futures).
    let fill = (|| {
        let (client, selector) = (client.clone(), config.forecast_selector.clone());
        async move { ForecastStore::fill_from_api(client, &selector).await }
    })
    .retry(FILL_RETRY.delays())
        .notify(|e, retry_in| {
            tracing::warn!(error = %e, retry_in = ?retry_in, "cannot list CarbonForecasts; the controllers wait for them");
        });
    // The schedule has no end: this ends with a store, or when leadership ends first.
    let store: ForecastStore = match scope.token().run_until_cancelled(fill).await {
        None => return Ok(()),
        Some(filled) => filled.map_err(|e| format!("cannot list CarbonForecasts: {e}"))?,
    };
    tracing::info!(forecasts = ?store.names(), "forecast store filled; starting the controllers");
    // Every write of the controllers (Job patches, workload and forecast status, Events) goes
    // through the fence: none leaves the process once this replica may no longer lead.
    let ctx = Arc::new(Context::new(
        scope.fence(client),
        clock,
        config,
        metrics,
        store,
        providers,
        reporter,
    ));
    let forecasts = controller::forecasts::run(ctx.clone(), scope.stopped());
    let budgets = controller::budgets::run(ctx.clone(), scope.stopped());
    let workloads = controller::workloads::run(ctx, scope.stopped());
    tokio::pin!(forecasts, workloads, budgets);
    // All run until told to stop; one that returns before is a failure the leader reports.
    let first = tokio::select! {
        () = &mut forecasts => "CarbonForecast",
        () = &mut workloads => "workload",
        () = &mut budgets => "CarbonBudget",
    };
    if !scope.is_stopped() {
        return Err(format!("the {first} controller stopped on its own"));
    }
    match first {
        "CarbonForecast" => futures::join!(workloads, budgets).0,
        "workload" => futures::join!(forecasts, budgets).0,
        _ => futures::join!(forecasts, workloads).0,
    };
    Ok(())
}

mod settings;

use settings::hostname;
pub use settings::{
    Args, DEFAULT_OPERATOR_NAMESPACE, IN_CLUSTER_NAMESPACE_FILE, NoForecastArg, Settings,
    WebhookSettings,
};

#[cfg(test)]
mod tests;
