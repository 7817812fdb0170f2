//! The flags of `carbonshift run` and their validation into [`Settings`]: every flag also reads
//! its `CARBONSHIFT_*` variable (the chart sets them), and every inconsistency is refused with
//! the flag's name before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::TimeDelta;
use clap::ArgAction;
use clap::builder::BoolishValueParser;

use crate::api::annotations::{AnnotationDefaults, is_dns1123_subdomain};
use crate::controller::{ForecastSelector, NoForecastPolicy, OperatorConfig};
use crate::leader::{self, ElectionParams};
use crate::telemetry::LogFormat;
use crate::units::{duration_arg, duration_or_zero_arg};
use crate::webhook::{KueueMode, TlsConfigPaths};
use crate::workload::Kinds;

/// Where Kubernetes mounts the pod's namespace.
pub const IN_CLUSTER_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The operator namespace outside a cluster, when none is given.
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "carbonshift";

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
    /// The kinds carbonshift holds, comma-separated: Job, JobSet, TrainJob, PyTorchJob, MPIJob,
    /// RayJob. A kind whose CRD is not installed is watched for and picked up when it appears.
    #[arg(
        long,
        env = "CARBONSHIFT_WORKLOAD_KINDS",
        value_name = "KIND,...",
        default_value = "Job,JobSet,TrainJob,PyTorchJob,MPIJob,RayJob"
    )]
    pub workload_kinds: Kinds,
    /// Hold deferrable workloads that Kueue queues (`kueue.x-k8s.io/queue-name`) with Kueue's
    /// admission gate (`kueue.x-k8s.io/admission-gated-by`; Kueue v0.19 and later, or v0.17 with
    /// the AdmissionGatedBy feature gate); `false` leaves them alone, for older Kueue.
    #[arg(
        long,
        env = "CARBONSHIFT_KUEUE_ADMISSION_GATE",
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub kueue_admission_gate: bool,
    /// CarbonForecast for Jobs without a `carbonshift.dev/forecast` annotation.
    #[arg(long, env = "CARBONSHIFT_DEFAULT_FORECAST", default_value = "default")]
    pub default_forecast: String,
    /// Longest wait for Jobs without `carbonshift.dev/max-delay` or `carbonshift.dev/deadline`.
    #[arg(long, env = "CARBONSHIFT_DEFAULT_MAX_DELAY", default_value = "24h", allow_hyphen_values = true, value_parser = duration_arg)]
    pub default_max_delay: TimeDelta,
    /// Expected run time of Jobs without `carbonshift.dev/duration`.
    #[arg(long, env = "CARBONSHIFT_DEFAULT_DURATION", default_value = "1h", allow_hyphen_values = true, value_parser = duration_arg)]
    pub default_duration: TimeDelta,
    /// Upper bound on any Job's delay; longer requests are shortened.
    #[arg(long, env = "CARBONSHIFT_MAX_ALLOWED_DELAY", default_value = "7d", allow_hyphen_values = true, value_parser = duration_arg)]
    pub max_allowed_delay: TimeDelta,
    /// Safety margin: a held Job is released at `latest start − margin` at the latest.
    #[arg(long, env = "CARBONSHIFT_MARGIN", default_value = "5m", allow_hyphen_values = true, value_parser = duration_or_zero_arg)]
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
    #[arg(long, env = "CARBONSHIFT_FORECAST_WAIT", default_value = "2m", allow_hyphen_values = true, value_parser = duration_or_zero_arg)]
    pub forecast_wait: TimeDelta,
    /// How long after a workload finished carbonshift keeps asking its forecast's provider for
    /// the measured intensity that verifies its savings (`status.verified`); then it gives up and
    /// says so (`status.verification.state: GaveUp`).
    #[arg(long, env = "CARBONSHIFT_VERIFY_GIVE_UP", default_value = "48h", value_parser = duration_or_zero_arg)]
    pub verify_give_up: TimeDelta,
    /// The waste guard: after this many workloads of one group (`carbonshift.dev/group`, else the
    /// owning CronJob) failed in a row, the group's next one is held (reason `WasteGuard`) until
    /// someone sets `carbonshift.dev/run-now: "true"` on it or a workload of the group succeeds.
    /// 0 turns the guard off.
    #[arg(long, env = "CARBONSHIFT_WASTE_GUARD_FAILURES", default_value_t = crate::waste::DEFAULT_FAILURES, value_name = "N")]
    pub waste_guard_failures: u32,
    /// Prometheus (base URL, for example `http://prometheus.monitoring:9090`) holding Kepler's
    /// `kepler_container_joules_total`: a finished workload's energy is its pods' measured energy
    /// over its runs (`status.energySource: kepler`). Default: none, the declared or estimated
    /// power.
    #[arg(long, env = "CARBONSHIFT_PROMETHEUS_URL", value_name = "URL", value_parser = prometheus_url_arg)]
    pub prometheus_url: Option<String>,
    /// How long after carbonshift released a Job its CarbonWorkload's status waits for the Job
    /// controller's answer (its start time, or an active pod), so that the release and the
    /// phase it leads to (`Running`, or `Released` without pods) are one status write; `0s`
    /// writes `Released` at once.
    #[arg(long, env = "CARBONSHIFT_RELEASE_ACK_WAIT", default_value = "5m", value_parser = duration_or_zero_arg)]
    pub release_ack_wait: TimeDelta,
    /// Guarded release patches sent at once when many releases fall due at the same second
    /// (they are prepared ahead and sent at the planned second; the client's rate limits and
    /// API Priority and Fairness still apply).
    #[arg(long, env = "CARBONSHIFT_RELEASE_CONCURRENCY", default_value = "64", value_parser = clap::value_parser!(u16).range(1..))]
    pub release_concurrency: u16,
    /// Reconciles of one workload kind that run at once.
    #[arg(long, env = "CARBONSHIFT_RECONCILE_CONCURRENCY", default_value = "16", value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,
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
    /// What the webhook does with workloads Kueue queues.
    pub kueue: KueueMode,
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
                verify_give_up: self.verify_give_up,
                release_ack_wait: self.release_ack_wait,
                release_concurrency: usize::from(self.release_concurrency),
                reconcile_concurrency: self.reconcile_concurrency,
                forecast_selector: self.forecast_selector.clone(),
                kinds: self.workload_kinds.clone(),
                waste_guard_failures: self.waste_guard_failures,
                prometheus_url: self.prometheus_url.clone().filter(|u| !u.is_empty()),
            },
            election,
            identity,
            kueue: if self.kueue_admission_gate {
                KueueMode::AdmissionGate
            } else {
                KueueMode::LeaveAlone
            },
        })
    }
}

fn is_dns1123_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && is_dns1123_subdomain(name)
}

/// The host name, from `HOSTNAME` or the kernel.
pub(super) fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// `--prometheus-url`: empty (none), or an `http://` or `https://` URL.
fn prometheus_url_arg(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() || text.starts_with("http://") || text.starts_with("https://") {
        Ok(text.trim_end_matches('/').to_string())
    } else {
        Err(format!(
            "{text:?} is not an http:// or https:// URL; expected Prometheus' base URL such as http://prometheus.monitoring:9090"
        ))
    }
}
