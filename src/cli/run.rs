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
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::TimeDelta;
use clap::ArgAction;
use clap::builder::BoolishValueParser;
use tokio::task::JoinHandle;

use crate::api::annotations::{AnnotationDefaults, is_dns1123_subdomain};
use crate::clock::{Clock, SystemClock};
use crate::controller::{
    self, Context, ForecastSelector, ForecastStore, NoForecastPolicy, OperatorConfig,
};
use crate::forecast::{self, ClientOptions, Shared};
use crate::http::{self, HttpState, Readiness};
use crate::leader::{self, Election, ElectionParams, Scope};
use crate::metrics::Metrics;
use crate::retry::{CancellationToken, Doubling, Retryable};
use crate::telemetry::{self, LogFormat};
use crate::units::{duration_arg, duration_or_zero_arg};
use crate::webhook::{self, CertReloader, TlsConfigPaths, WebhookState};

use super::one_line;

/// Where Kubernetes mounts the pod's namespace.
pub const IN_CLUSTER_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The operator namespace outside a cluster, when none is given.
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "carbonshift";

/// How long to wait between attempts to read the CarbonForecasts at the start of a leadership:
/// 1 s doubling to 30 s.
const FILL_RETRY: Doubling = Doubling::new(
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(30),
);

const EXAMPLES: &str = "\
Examples:
  # Locally, against the cluster of the current kubeconfig context, without the webhook:
  carbonshift run --no-webhook --leader-election=false --metrics-addr 127.0.0.1:8080 --log-format text
  # As the chart runs it (every flag can come from its CARBONSHIFT_* variable):
  CARBONSHIFT_OPERATOR_NAMESPACE=carbonshift CARBONSHIFT_POD_NAME=carbonshift-0 carbonshift run";

/// What a held Job does when its forecast is missing or stale and it has no plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NoForecastArg {
    /// Fail open: release the Job now.
    Release,
    /// Keep holding it until fresh data comes or the deadline rule releases it.
    Hold,
}

impl From<NoForecastArg> for NoForecastPolicy {
    fn from(arg: NoForecastArg) -> Self {
        match arg {
            NoForecastArg::Release => NoForecastPolicy::Release,
            NoForecastArg::Hold => NoForecastPolicy::Hold,
        }
    }
}

/// Arguments of `carbonshift run`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Address of the HTTPS admission webhook (`POST /mutate`).
    #[arg(long, env = "CARBONSHIFT_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,
    /// Address of the HTTP server for `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "CARBONSHIFT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// The webhook's serving certificate (PEM, leaf first); re-read when it changes.
    #[arg(
        long,
        env = "CARBONSHIFT_TLS_CERT",
        value_name = "FILE",
        default_value = "/etc/carbonshift/tls/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// The webhook's private key (PEM: PKCS#8, RSA or EC).
    #[arg(
        long,
        env = "CARBONSHIFT_TLS_KEY",
        value_name = "FILE",
        default_value = "/etc/carbonshift/tls/tls.key"
    )]
    pub tls_key: PathBuf,
    /// Serve the admission webhook (`--webhook=false` or `--no-webhook` for local runs without a
    /// certificate; Jobs are then only held if created suspended).
    #[arg(
        long,
        env = "CARBONSHIFT_WEBHOOK",
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub webhook: bool,
    /// Same as `--webhook=false`.
    #[arg(long)]
    pub no_webhook: bool,
    /// Namespaces whose Jobs carbonshift manages, comma-separated; empty manages every namespace.
    #[arg(
        long,
        env = "CARBONSHIFT_NAMESPACES",
        value_name = "NS,...",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// CarbonForecast for Jobs without a `carbonshift.dev/forecast` annotation.
    #[arg(long, env = "CARBONSHIFT_DEFAULT_FORECAST", default_value = "default")]
    pub default_forecast: String,
    /// Longest wait for Jobs without `carbonshift.dev/max-delay` or `carbonshift.dev/deadline`.
    #[arg(long, env = "CARBONSHIFT_DEFAULT_MAX_DELAY", default_value = "24h", value_parser = duration_arg)]
    pub default_max_delay: TimeDelta,
    /// Expected run time of Jobs without `carbonshift.dev/duration`.
    #[arg(long, env = "CARBONSHIFT_DEFAULT_DURATION", default_value = "1h", value_parser = duration_arg)]
    pub default_duration: TimeDelta,
    /// Upper bound on any Job's delay; longer requests are shortened.
    #[arg(long, env = "CARBONSHIFT_MAX_ALLOWED_DELAY", default_value = "7d", value_parser = duration_arg)]
    pub max_allowed_delay: TimeDelta,
    /// Safety margin: a held Job is released at `latest start − margin` at the latest.
    #[arg(long, env = "CARBONSHIFT_MARGIN", default_value = "5m", value_parser = duration_or_zero_arg)]
    pub margin: TimeDelta,
    /// Estimated power per GPU, watts, for Jobs without `carbonshift.dev/power`.
    #[arg(long, env = "CARBONSHIFT_WATTS_PER_GPU", default_value = "700", value_parser = watts_arg)]
    pub watts_per_gpu: f64,
    /// Estimated power per requested CPU core, watts.
    #[arg(long, env = "CARBONSHIFT_WATTS_PER_CORE", default_value = "10", value_parser = watts_arg)]
    pub watts_per_core: f64,
    /// Data-centre power usage effectiveness (1 to 3) multiplied into energy estimates.
    #[arg(long, env = "CARBONSHIFT_PUE", default_value = "1.2", value_parser = pue_arg)]
    pub pue: f64,
    /// Extended resource names counted as GPUs, comma-separated.
    #[arg(
        long,
        env = "CARBONSHIFT_GPU_RESOURCES",
        value_name = "NAME,...",
        value_delimiter = ',',
        default_value = "nvidia.com/gpu,amd.com/gpu"
    )]
    pub gpu_resources: Vec<String>,
    /// A held Job without a fresh forecast and without a plan: `release` it now (fail open) or
    /// `hold` it until the deadline rule releases it.
    #[arg(
        long,
        env = "CARBONSHIFT_NO_FORECAST",
        value_enum,
        default_value = "release"
    )]
    pub no_forecast: NoForecastArg,
    /// How long a held Job waits for the first data of a CarbonForecast that exists but has not
    /// produced any yet (just created, first refresh on its way) before that counts as no
    /// forecast.
    #[arg(long, env = "CARBONSHIFT_FORECAST_WAIT", default_value = "2m", value_parser = duration_or_zero_arg)]
    pub forecast_wait: TimeDelta,
    /// Refresh and plan with only the CarbonForecasts carrying these labels (`key=value`, comma
    /// separated; default: all). Jobs naming another forecast find none. Shards one cluster's
    /// forecasts between operators, or keeps a test's operator to its own.
    #[arg(
        long,
        env = "CARBONSHIFT_FORECAST_SELECTOR",
        value_name = "KEY=VALUE,...",
        default_value = ""
    )]
    pub forecast_selector: ForecastSelector,
    /// Namespace the operator runs in: credential Secrets, trace ConfigMaps and the Lease live
    /// there. Default: the pod's namespace in a cluster, else `carbonshift`.
    #[arg(long, env = "CARBONSHIFT_OPERATOR_NAMESPACE", value_name = "NS")]
    pub operator_namespace: Option<String>,
    /// Elect one writer through a Lease; keep it on whenever two pods may run at once (also
    /// during rolling updates).
    #[arg(
        long,
        env = "CARBONSHIFT_LEADER_ELECTION",
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub leader_election: bool,
    /// Name of the leader Lease in the operator namespace.
    #[arg(long, env = "CARBONSHIFT_LEASE_NAME", default_value = leader::DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// This replica's name: the Lease holder identity and the Events' reporting instance.
    /// Default: the host name.
    #[arg(long, env = "CARBONSHIFT_POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
    /// Log line format (the filter comes from `RUST_LOG`, default `info`).
    #[arg(long, env = "CARBONSHIFT_LOG_FORMAT", value_enum, default_value_t = LogFormat::default())]
    pub log_format: LogFormat,
}

fn watts_arg(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(watts) if watts.is_finite() && watts >= 0.0 => Ok(watts),
        _ => Err("expected a number of watts, 0 or more, such as 700".to_string()),
    }
}

fn pue_arg(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(pue) if (1.0..=3.0).contains(&pue) => Ok(pue),
        _ => Err("expected a power usage effectiveness from 1 to 3, such as 1.2".to_string()),
    }
}

/// The webhook's address and certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate and key.
    pub tls: TlsConfigPaths,
}

/// The validated settings of one `carbonshift run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The webhook, unless disabled.
    pub webhook: Option<WebhookSettings>,
    /// Where metrics and health checks are served.
    pub metrics_addr: SocketAddr,
    /// What the controllers run with.
    pub operator: OperatorConfig,
    /// The Lease to elect through, unless election is off.
    pub election: Option<ElectionParams>,
    /// This replica's name.
    pub identity: String,
}

impl Args {
    /// Checks the arguments and settles the defaults that depend on the environment:
    /// `in_cluster_namespace` is the content of [`IN_CLUSTER_NAMESPACE_FILE`] and `hostname` the
    /// host's name, when available.
    pub fn settings(
        &self,
        in_cluster_namespace: Option<&str>,
        hostname: Option<&str>,
    ) -> Result<Settings, String> {
        let namespaces: Vec<String> = self
            .namespaces
            .iter()
            .map(|ns| ns.trim().to_string())
            .filter(|ns| !ns.is_empty())
            .collect();
        for ns in &namespaces {
            if !is_dns1123_label(ns) {
                return Err(format!(
                    "--namespaces: {ns:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
                ));
            }
        }
        if !is_dns1123_subdomain(&self.default_forecast) {
            return Err(format!(
                "--default-forecast: {:?} is not a CarbonForecast name (lower-case letters, digits, '-' and '.')",
                self.default_forecast
            ));
        }
        if self.default_max_delay > self.max_allowed_delay {
            return Err(format!(
                "--default-max-delay ({}) is longer than --max-allowed-delay ({})",
                crate::units::format_duration(self.default_max_delay),
                crate::units::format_duration(self.max_allowed_delay)
            ));
        }
        let gpu_resources: Vec<String> = self
            .gpu_resources
            .iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        let operator_namespace = match &self.operator_namespace {
            Some(ns) => ns.trim().to_string(),
            None => in_cluster_namespace
                .map(str::trim)
                .filter(|ns| !ns.is_empty())
                .unwrap_or(DEFAULT_OPERATOR_NAMESPACE)
                .to_string(),
        };
        if !is_dns1123_label(&operator_namespace) {
            return Err(format!(
                "--operator-namespace: {operator_namespace:?} is not a namespace name"
            ));
        }
        let identity = self
            .pod_name
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .or(hostname.map(str::trim).filter(|name| !name.is_empty()))
            .map(str::to_string)
            .ok_or_else(|| {
                "no replica name: set --pod-name (CARBONSHIFT_POD_NAME); the host name is unknown"
                    .to_string()
            })?;
        let election = if self.leader_election {
            let params = ElectionParams::new(&self.lease_name, &operator_namespace, &identity);
            params.validate().map_err(|e| e.to_string())?;
            Some(params)
        } else {
            None
        };
        let webhook = (self.webhook && !self.no_webhook).then(|| WebhookSettings {
            addr: self.webhook_addr,
            tls: TlsConfigPaths::new(&self.tls_cert, &self.tls_key),
        });
        Ok(Settings {
            webhook,
            metrics_addr: self.metrics_addr,
            operator: OperatorConfig {
                operator_namespace,
                namespaces,
                annotation_defaults: AnnotationDefaults {
                    forecast: self.default_forecast.clone(),
                    max_delay: self.default_max_delay,
                    duration: self.default_duration,
                    max_allowed_delay: self.max_allowed_delay,
                    gpu_resources,
                    watts_per_gpu: self.watts_per_gpu,
                    watts_per_core: self.watts_per_core,
                    pue: self.pue,
                },
                margin: self.margin,
                no_forecast: self.no_forecast.into(),
                forecast_wait: self.forecast_wait,
                forecast_selector: self.forecast_selector.clone(),
            },
            election,
            identity,
        })
    }
}

fn is_dns1123_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && is_dns1123_subdomain(name)
}

/// The host name, from `HOSTNAME` or the kernel.
fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

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
    let client = super::kube_client("operator").await.map_err(|e| {
        format!(
            "cannot find a Kubernetes cluster (set KUBECONFIG, or use ~/.kube/config, or run in a pod): {}",
            one_line(&e.to_string())
        )
    })?;
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
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                    readiness: readiness.clone(),
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
    let workloads = controller::workloads::run(ctx, scope.stopped());
    tokio::pin!(forecasts, workloads);
    // Both run until told to stop; one that returns before is a failure the leader reports.
    let forecasts_first = tokio::select! {
        () = &mut forecasts => true,
        () = &mut workloads => false,
    };
    if !scope.is_stopped() {
        let which = if forecasts_first {
            "CarbonForecast"
        } else {
            "workload"
        };
        return Err(format!("the {which} controller stopped on its own"));
    }
    if forecasts_first {
        workloads.await;
    } else {
        forecasts.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
