//! The harness every cluster scenario runs in: settings from the environment (and the skip or
//! failure when there is no cluster), progress lines, bounded waits, one namespace per scenario
//! with everything in it deleted again (also after a failure), the scenario's operators (see
//! [`crate::operator`]), forecasts, Jobs and webhook registration (objects from
//! [`crate::fixtures`]), waits on workloads, releases, pods and Jobs, kubectl and helm, and the
//! API server's audit log.
//!
//! A scenario is an `async fn(Scenario)` run by [`run`]: it gets a fresh namespace
//! `e2e-<scenario>-<random>`, a node simulator with its own uniquely named Node and node-pool label
//! (see [`crate::nodes`]), a recorder that prints every CarbonWorkload transition in that
//! namespace, and a CA for its webhook. Everything a scenario creates is registered with the
//! [`Cleanup`] guard, which deletes it when the test ends, in an order that never leaves the
//! namespace behind a webhook that is gone: webhook configurations, operators (SIGTERM), the node
//! simulator, the namespace's pods (forced: there is no kubelet to finish a graceful deletion),
//! Nodes, CarbonForecasts and other cluster-scoped objects, the namespace. After a failure the
//! tail of each operator's log is printed.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use carbonshift::api::annotations::{HELD, RELEASED_AT};
use carbonshift::api::forecast::{IntensityPoint, StaticPoints};
use carbonshift::api::{
    CarbonForecast, CarbonForecastSpec, CarbonWorkload, CarbonWorkloadStatus, Phase, ProviderSpec,
};
use chrono::{DateTime, SecondsFormat, SubsecRound, TimeDelta, Utc};
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client, Config};

use crate::fixtures::{
    CLEAN, DIRTY, JobBuilder, annotation, certificates, forecast_points, job_condition_true,
    suspended, webhook_configuration,
};
use crate::nodes::{NodeShape, NodeSim, node_names};
use crate::operator::{Operator, OperatorOptions, get_text};

/// The field manager of everything the harness writes.
pub const FIELD_MANAGER: &str = "carbonshift-e2e";

/// The `User-Agent` of the harness's own API requests, so that the audit log tells them from the
/// operator's.
pub const HARNESS_AGENT: &str = "carbonshift-e2e-harness";

/// Label on everything a scenario creates; on CarbonForecasts its value is the scenario's
/// namespace, which is what each scenario's operator selects with `--forecast-selector`.
pub const SCENARIO_LABEL: &str = "carbonshift.dev/e2e";

/// The node-pool label of the simulated Nodes; each scenario has its own value, and its Jobs
/// select it with a nodeSelector.
pub const POOL_LABEL: &str = "carbonshift.dev/e2e-pool";

/// The field manager the operator writes with (its release patches carry it in the request URI).
pub const OPERATOR_FIELD_MANAGER: &str = carbonshift::api::FIELD_MANAGER;

/// How far a release may be from the time it is due: the product's promise.
pub const RELEASE_TOLERANCE: TimeDelta = TimeDelta::seconds(2);

/// How often a Job is polled around its release (at most 200 ms, as required).
pub const RELEASE_POLL: Duration = Duration::from_millis(100);

/// How long before the clean window the scenarios create their forecast: time for the Job to be
/// created, admitted and planned, with room to spare on a loaded machine.
pub const LEAD: TimeDelta = TimeDelta::seconds(30);

// ---------------------------------------------------------------------------------------------
// Settings

/// Where the cluster is and how to reach this machine from it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Kubeconfig of a cluster admin.
    pub kubeconfig: PathBuf,
    /// The local control plane's home (`$CP_HOME` of `../shared/tools/k8s/up.sh`): audit log and CA.
    pub cp_home: Option<PathBuf>,
    /// Address of this machine the API server reaches the webhooks at.
    pub host: String,
    /// Address the webhooks listen on.
    pub bind: IpAddr,
    /// The Jobs' image (nothing pulls it: the node simulator runs the pods).
    pub image: String,
    /// kubectl and helm.
    pub kubectl: PathBuf,
    pub helm: PathBuf,
}

/// Whether a missing cluster is a failure (`CARBONSHIFT_E2E_REQUIRE=1`).
pub fn required() -> bool {
    std::env::var("CARBONSHIFT_E2E_REQUIRE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// What a cluster scenario does without `CARBONSHIFT_E2E_KUBECONFIG`: print a SKIP line, or,
/// when the suite is `required`, fail with the returned message.
pub fn no_cluster(test: &str, required: bool) -> Result<(), String> {
    if required {
        return Err(
            "CARBONSHIFT_E2E_REQUIRE=1 but CARBONSHIFT_E2E_KUBECONFIG is not set".to_string(),
        );
    }
    // Straight to the process's stderr: libtest captures `eprintln!`, and the skip must show in a
    // plain `cargo test` run.
    say(&format!(
        "SKIPPED e2e {test}: set CARBONSHIFT_E2E_KUBECONFIG=<path> to run the end-to-end suite against a cluster (scripts/e2e.sh does)"
    ));
    Ok(())
}

/// `CARBONSHIFT_E2E_<NAME>` (for helm also `CARBONSHIFT_HELM`, as tests/chart.rs reads it),
/// else `.tools/bin/<name>` of the repository (`make tools`), else the name on `PATH`.
fn tool(name: &str) -> PathBuf {
    let upper = name.to_uppercase();
    if let Some(path) = env_nonempty(&format!("CARBONSHIFT_E2E_{upper}"))
        .or_else(|| env_nonempty(&format!("CARBONSHIFT_{upper}")))
    {
        return PathBuf::from(path);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/bin")
        .join(name);
    if local.is_file() {
        local
    } else {
        PathBuf::from(name)
    }
}

impl Settings {
    /// The settings, or `None` without `CARBONSHIFT_E2E_KUBECONFIG`.
    pub fn from_env() -> Option<Self> {
        let kubeconfig = PathBuf::from(env_nonempty("CARBONSHIFT_E2E_KUBECONFIG")?);
        let kubeconfig = std::path::absolute(&kubeconfig).unwrap_or(kubeconfig);
        assert!(
            kubeconfig.is_file(),
            "CARBONSHIFT_E2E_KUBECONFIG={} is not a readable file",
            kubeconfig.display()
        );
        // up.sh writes the kubeconfig into $CP_HOME, beside the audit log.
        let cp_home = env_nonempty("CARBONSHIFT_E2E_CP_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                kubeconfig
                    .parent()
                    .filter(|dir| dir.join("audit.log").is_file())
                    .map(Path::to_path_buf)
            });
        let host =
            env_nonempty("CARBONSHIFT_E2E_WEBHOOK_HOST").unwrap_or_else(|| "127.0.0.1".to_string());
        let loopback = host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(host == "localhost");
        let bind = match env_nonempty("CARBONSHIFT_E2E_WEBHOOK_BIND") {
            Some(bind) => bind
                .parse()
                .unwrap_or_else(|e| panic!("CARBONSHIFT_E2E_WEBHOOK_BIND={bind:?}: {e}")),
            None if loopback => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let image =
            env_nonempty("CARBONSHIFT_E2E_IMAGE").unwrap_or_else(|| "busybox:1.36".to_string());
        Some(Self {
            kubeconfig,
            cp_home,
            host,
            bind,
            image,
            kubectl: tool("kubectl"),
            helm: tool("helm"),
        })
    }

    /// The settings of a cluster scenario; `None` (after printing a SKIP line) when there is no
    /// cluster, which is a failure under `CARBONSHIFT_E2E_REQUIRE=1`.
    pub fn for_scenario(test: &str) -> Option<Self> {
        let settings = Self::from_env();
        if settings.is_none()
            && let Err(message) = no_cluster(test, required())
        {
            panic!("{message}");
        }
        settings
    }

    /// The API server's audit log (`$CP_HOME/audit.log`, or `CARBONSHIFT_E2E_AUDIT_LOG`).
    pub fn audit_log(&self) -> PathBuf {
        env_nonempty("CARBONSHIFT_E2E_AUDIT_LOG")
            .map(PathBuf::from)
            .or_else(|| self.cp_home.as_ref().map(|home| home.join("audit.log")))
            .unwrap_or_else(|| {
                panic!(
                    "this scenario counts the operator's writes in the API server's audit log: set CARBONSHIFT_E2E_CP_HOME (the control plane of ../shared/tools/k8s) or CARBONSHIFT_E2E_AUDIT_LOG"
                )
            })
    }

    /// `https://HOST:PORT/mutate`, with an IPv6 address in brackets.
    pub fn webhook_url(&self, port: u16) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("https://[{ip}]:{port}/mutate"),
            _ => format!("https://{}:{port}/mutate", self.host),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output and time

/// Writes a line straight to the process's stderr, so that it shows while the test runs even
/// when libtest captures output.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Progress lines of one scenario, with its name and the time since it started.
#[derive(Debug, Clone)]
pub struct Progress {
    name: String,
    start: Instant,
}

impl Progress {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            start: Instant::now(),
        }
    }

    pub fn say(&self, message: impl AsRef<str>) {
        say(&format!(
            "e2e {} [{:>6.1}s] {}",
            self.name,
            self.start.elapsed().as_secs_f64(),
            message.as_ref()
        ));
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `metav1.Time` as the API server writes it: RFC 3339 in whole seconds.
pub fn kube_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Now, cut to whole seconds (the precision of carbonshift's time markers).
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

/// A whole second at least `ahead` from now.
pub fn ahead(ahead: TimeDelta) -> DateTime<Utc> {
    whole_seconds(Utc::now() + ahead) + TimeDelta::seconds(1)
}

pub fn from_jiff(t: k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    carbonshift::units::from_jiff(t).expect("a representable time")
}

fn parse_time(text: &str, what: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{what} {text:?} is not RFC 3339: {e}"))
        .to_utc()
}

/// Ports nobody listens on right now, one on each of `ips`, all different, and never handed out
/// before in this process (the listeners are held until all are found, so that the kernel does not
/// hand the same port out twice; scenarios run in parallel).
pub fn free_ports<const N: usize>(ips: [IpAddr; N]) -> [u16; N] {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = lock(&GIVEN);
    let mut held = Vec::new();
    let mut ports = [0; N];
    for (ip, slot) in ips.into_iter().zip(ports.iter_mut()) {
        loop {
            let listener = TcpListener::bind(SocketAddr::new(ip, 0))
                .unwrap_or_else(|e| panic!("cannot bind {ip}:0 to find a free port: {e}"));
            let port = listener
                .local_addr()
                .unwrap_or_else(|e| panic!("local address: {e}"))
                .port();
            held.push(listener);
            if given.insert(port) {
                *slot = port;
                break;
            }
        }
    }
    ports
}

pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Calls `probe` every `every` until it returns `Ok`, calling `guard` first each time (it panics
/// when something the wait depends on died); panics after `timeout` with the last reason.
pub async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    guard: &dyn Fn(),
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        guard();
        let last = match probe().await {
            Ok(value) => return value,
            Err(reason) => reason,
        };
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Clean-up, also on failure

/// What a scenario created, for [`Cleanup`].
#[derive(Default)]
pub struct Created {
    client: Option<Client>,
    webhooks: Vec<String>,
    operators: Vec<Operator>,
    tasks: Vec<tokio::task::AbortHandle>,
    nodes: Vec<String>,
    forecasts: Vec<String>,
    cluster_roles: Vec<String>,
    cluster_role_bindings: Vec<String>,
    namespace: Option<String>,
    /// The scenario's directory (logs, certificates, kubeconfigs): removed after a success unless
    /// `CARBONSHIFT_E2E_KEEP=1`, kept after a failure.
    dir: Option<PathBuf>,
}

/// Shared handle on what a scenario created.
pub type Registry = Arc<Mutex<Created>>;

/// Deletes what the scenario created when dropped (after a panic too).
pub struct Cleanup {
    runtime: tokio::runtime::Handle,
    registry: Registry,
    progress: Progress,
}

impl Cleanup {
    pub fn new(runtime: tokio::runtime::Handle, progress: Progress) -> Self {
        Self {
            runtime,
            registry: Registry::default(),
            progress,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let mut created = std::mem::take(&mut *lock(&self.registry));
        let say = |m: String| self.progress.say(format!("[cleanup] {m}"));
        for task in created.tasks.drain(..) {
            task.abort();
        }
        let Some(client) = created.client.clone() else {
            return;
        };
        let rt = &self.runtime;
        for name in created.webhooks.drain(..) {
            let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
            match rt.block_on(api.delete(&name, &DeleteParams::default())) {
                Ok(_) => say(format!("deleted MutatingWebhookConfiguration {name}")),
                Err(e) => say(format!(
                    "could not delete MutatingWebhookConfiguration {name}: {e}"
                )),
            }
        }
        for operator in created.operators.drain(..) {
            if let Some(outcome) = operator.stop() {
                say(format!("{} {outcome}", operator.label));
            }
            if failed {
                say(format!(
                    "last lines of {}'s log {}:\n{}",
                    operator.label,
                    operator.log.display(),
                    tail(&operator.log, 80)
                ));
            }
        }
        if let Some(ns) = &created.namespace {
            // No kubelet finishes a graceful pod deletion: force them, or the namespace would stay
            // Terminating until the pod garbage collector finds the Nodes gone.
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            if let Err(e) = rt.block_on(pods.delete_collection(&params, &ListParams::default())) {
                say(format!("could not delete the pods of {ns}: {e}"));
            }
        }
        for name in created.nodes.drain(..) {
            let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
            match rt.block_on(api.delete(&name, &DeleteParams::default())) {
                Ok(_) => say(format!("deleted Node {name}")),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => say(format!("could not delete Node {name}: {e}")),
            }
        }
        for name in created.forecasts.drain(..) {
            let api: Api<CarbonForecast> = Api::all(client.clone());
            match rt.block_on(api.delete(&name, &DeleteParams::default())) {
                Ok(_) => say(format!("deleted CarbonForecast {name}")),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => say(format!("could not delete CarbonForecast {name}: {e}")),
            }
        }
        for name in created.cluster_role_bindings.drain(..) {
            let api: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
            if let Err(e) = rt.block_on(api.delete(&name, &DeleteParams::default())) {
                say(format!("could not delete ClusterRoleBinding {name}: {e}"));
            }
        }
        for name in created.cluster_roles.drain(..) {
            let api: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
            if let Err(e) = rt.block_on(api.delete(&name, &DeleteParams::default())) {
                say(format!("could not delete ClusterRole {name}: {e}"));
            }
        }
        if let Some(dir) = created.dir.take() {
            let keep = std::env::var("CARBONSHIFT_E2E_KEEP").is_ok_and(|v| v == "1");
            if failed || keep {
                say(format!("logs and files kept in {}", dir.display()));
            } else if let Err(e) = std::fs::remove_dir_all(&dir) {
                say(format!("could not remove {}: {e}", dir.display()));
            }
        }
        if let Some(name) = created.namespace.take() {
            let api: Api<Namespace> = Api::all(client);
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            // Not waited for: the namespace controller finishes it in the background.
            match rt.block_on(api.delete(&name, &params)) {
                Ok(_) => say(format!("deleting namespace {name}")),
                Err(e) => say(format!("could not delete namespace {name}: {e}")),
            }
        }
    }
}

/// Runs one cluster scenario: skips (or fails under `CARBONSHIFT_E2E_REQUIRE=1`) without a
/// cluster, else sets up its namespace and runs `body` on a fresh runtime, cleaning up after it.
pub fn run<F, Fut>(name: &'static str, body: F)
where
    F: FnOnce(Scenario) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(settings) = Settings::for_scenario(name) else {
        return;
    };
    let progress = Progress::new(name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Declared after the runtime, so dropped (and run) before it, also during a panic.
    let cleanup = Cleanup::new(runtime.handle().clone(), progress.clone());
    let registry = cleanup.registry.clone();
    runtime.block_on(async move {
        let scenario = Scenario::start(name, settings, registry, progress).await;
        let progress = scenario.progress.clone();
        body(scenario).await;
        progress.say(format!(
            "PASSED in {:.1} s",
            progress.elapsed().as_secs_f64()
        ));
    });
    drop(cleanup);
}

// ---------------------------------------------------------------------------------------------
// The scenario

/// The webhook serving pair of a scenario and the CA that signed it.
pub struct WebhookTls {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One scenario's namespace, client, nodes and helpers.
pub struct Scenario {
    /// Namespace, and the name of the scenario's webhook configuration and CarbonForecast.
    pub ns: String,
    pub settings: Settings,
    pub client: Client,
    pub progress: Progress,
    /// A directory for logs, certificates and kubeconfigs (kept after the test).
    pub dir: PathBuf,
    pub nodes: NodeSim,
    pub tls: WebhookTls,
    registry: Registry,
    recorder: Recorder,
    /// Where the audit log was when the scenario started.
    audit_offset: u64,
    /// Operators started so far (for names of their logs).
    started: Mutex<u32>,
}

/// The admin client, with the harness's `User-Agent`.
pub async fn admin_client(kubeconfig: &Path) -> Client {
    let file = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    let mut config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(HARNESS_AGENT),
    ));
    Client::try_from(config).expect("Kubernetes client")
}

/// Applies the CRDs (server-side apply of `carbonshift::api::crd::all()`) and waits until both
/// are `Established`; once per test process.
async fn ensure_crds(client: &Client, progress: &Progress) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for (_, crd) in carbonshift::api::crd::all() {
            let name = crd.metadata.name.clone().expect("CRD name");
            crds.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
            eventually(
                &format!("CRD {name} to be Established"),
                Duration::from_secs(60),
                Duration::from_millis(250),
                &|| {},
                || async {
                    let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
                    let established = crd
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        });
                    if established {
                        Ok(())
                    } else {
                        Err(format!("conditions {:?}", crd.status.map(|s| s.conditions)))
                    }
                },
            )
            .await;
            progress.say(format!("CRD {name} applied and Established"));
        }
    })
    .await;
}

impl Scenario {
    async fn start(
        name: &'static str,
        settings: Settings,
        registry: Registry,
        progress: Progress,
    ) -> Self {
        carbonshift::forecast::install_crypto_provider();
        let client = admin_client(&settings.kubeconfig).await;
        lock(&registry).client = Some(client.clone());
        progress.say(format!(
            "cluster from {} (kubectl {}, helm {})",
            settings.kubeconfig.display(),
            settings.kubectl.display(),
            settings.helm.display()
        ));
        ensure_crds(&client, &progress).await;

        let suffix = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let ns = format!("e2e-{name}-{suffix}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                labels: Some(
                    [
                        (SCENARIO_LABEL.to_string(), "true".to_string()),
                        ("carbonshift.dev/e2e-scenario".to_string(), name.to_string()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {ns}: {e}"));
        lock(&registry).namespace = Some(ns.clone());
        progress.say(format!("namespace {ns} created"));

        let audit_offset = settings
            .cp_home
            .as_ref()
            .and_then(|home| std::fs::metadata(home.join("audit.log")).ok())
            .map_or(0, |m| m.len());

        let dir = tempfile::Builder::new()
            .prefix(&format!("carbonshift-e2e-{name}-"))
            .tempdir()
            .expect("temporary directory")
            .keep();
        lock(&registry).dir = Some(dir.clone());
        let (ca_pem, cert_pem, key_pem) = certificates(&settings.host);
        let tls = WebhookTls {
            ca_pem,
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&tls.cert, cert_pem).expect("write the certificate");
        std::fs::write(&tls.key, key_pem).expect("write the key");

        // Registered before they exist, so that a failure half-way leaves none behind.
        let pool = format!("e2e-{suffix}");
        lock(&registry).nodes.extend(node_names(&pool, 1));
        let nodes = NodeSim::start(
            client.clone(),
            &ns,
            &pool,
            1,
            NodeShape::default(),
            progress.clone(),
        )
        .await;
        lock(&registry).tasks.extend(nodes.abort_handles());
        let recorder = Recorder::start(client.clone(), &ns, progress.clone());
        lock(&registry).tasks.push(recorder.task.clone());

        Self {
            ns,
            settings,
            client,
            progress,
            dir,
            nodes,
            tls,
            registry,
            recorder,
            audit_offset,
            started: Mutex::new(0),
        }
    }

    pub fn say(&self, message: impl AsRef<str>) {
        self.progress.say(message);
    }

    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn workloads(&self) -> Api<CarbonWorkload> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn ledgers(&self) -> Api<carbonshift::api::CarbonLedger> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn forecasts(&self) -> Api<CarbonForecast> {
        Api::all(self.client.clone())
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Panics if an operator the scenario still runs has exited.
    pub fn check_operators(&self) {
        let operators: Vec<Operator> = lock(&self.registry).operators.clone();
        for operator in operators.iter().filter(|o| o.is_managed()) {
            operator.assert_running();
        }
    }

    /// [`eventually`], checking the scenario's operators on every try.
    pub async fn eventually<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        every: Duration,
        probe: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        eventually(what, timeout, every, &|| self.check_operators(), probe).await
    }

    /// Registers a cluster-scoped object for deletion.
    pub fn created_cluster_role(&self, name: &str) {
        lock(&self.registry).cluster_roles.push(name.to_string());
    }

    pub fn created_cluster_role_binding(&self, name: &str) {
        lock(&self.registry)
            .cluster_role_bindings
            .push(name.to_string());
    }

    pub fn created_forecast(&self, name: &str) {
        lock(&self.registry).forecasts.push(name.to_string());
    }

    // -- operators ------------------------------------------------------------------------------

    /// The arguments every operator of this scenario gets: its namespace only, its CarbonForecasts
    /// only, its webhook and metrics ports, text logs.
    fn operator_args(&self, options: &OperatorOptions, ports: (u16, u16)) -> Vec<String> {
        let mut args = vec![
            format!("--operator-namespace={}", self.ns),
            format!("--namespaces={}", self.ns),
            format!("--default-forecast={}", self.ns),
            format!("--forecast-selector={SCENARIO_LABEL}={}", self.ns),
            format!(
                "--webhook-addr={}",
                SocketAddr::new(self.settings.bind, ports.1)
            ),
            format!("--metrics-addr=127.0.0.1:{}", ports.0),
            format!("--tls-cert={}", self.tls.cert.display()),
            format!("--tls-key={}", self.tls.key.display()),
            "--log-format=text".to_string(),
        ];
        match &options.leader {
            Some((lease, pod)) => {
                args.push("--leader-election=true".to_string());
                args.push(format!("--lease-name={lease}"));
                args.push(format!("--pod-name={pod}"));
            }
            None => args.push("--leader-election=false".to_string()),
        }
        if let Some(margin) = &options.margin {
            args.push(format!("--margin={margin}"));
        }
        // Jobs only unless the scenario asks for more kinds: the other kinds' CRDs may be
        // installed on the control plane, and watching them would only add load.
        if !options
            .extra
            .iter()
            .any(|a| a.starts_with("--workload-kinds"))
        {
            args.push("--workload-kinds=Job".to_string());
        }
        args.extend(options.extra.iter().cloned());
        args
    }

    fn next_log(&self, label: &str) -> PathBuf {
        let mut started = lock(&self.started);
        *started += 1;
        self.dir.join(format!("{label}.{started}.log"))
    }

    /// Starts an operator for this scenario and waits until it answers `/readyz`.
    pub async fn start_operator(&self, options: OperatorOptions) -> Operator {
        let label = options
            .label
            .clone()
            .unwrap_or_else(|| "operator".to_string());
        let ports = free_ports([IpAddr::V4(Ipv4Addr::LOCALHOST), self.settings.bind]);
        let ports = (ports[0], ports[1]);
        let args = self.operator_args(&options, ports);
        let kubeconfig = options
            .kubeconfig
            .clone()
            .unwrap_or_else(|| self.settings.kubeconfig.clone());
        let operator = Operator::spawn(&label, &kubeconfig, args, self.next_log(&label), ports);
        self.launched(&operator).await;
        operator
    }

    /// Starts `operator` again, as a new process with the same arguments and ports.
    pub async fn restart_operator(&self, operator: &Operator) -> Operator {
        let restarted = Operator::spawn(
            &operator.label,
            &operator.kubeconfig,
            operator.args.clone(),
            self.next_log(&operator.label),
            (operator.metrics_port, operator.webhook_port),
        );
        self.launched(&restarted).await;
        restarted
    }

    async fn launched(&self, operator: &Operator) {
        lock(&self.registry).operators.push(operator.clone());
        self.say(format!(
            "started {} (pid {:?}): carbonshift run {}; log {}",
            operator.label,
            operator.pid(),
            operator.args.join(" "),
            operator.log.display()
        ));
        let readyz = operator.metrics_url("/readyz");
        self.eventually(
            &format!("{} to be ready (/readyz)", operator.label),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || get_text(&readyz),
        )
        .await;
        self.say(format!("{} ready", operator.label));
    }

    /// Waits until `operator` runs its controllers (`carbonshift_leader 1`).
    pub async fn wait_leading(&self, operator: &Operator, timeout: Duration) -> DateTime<Utc> {
        self.eventually(
            &format!("{} to lead (carbonshift_leader 1)", operator.label),
            timeout,
            Duration::from_millis(200),
            || async {
                match operator.leader().await? {
                    true => Ok(Utc::now()),
                    false => Err("carbonshift_leader 0".to_string()),
                }
            },
        )
        .await
    }

    // -- webhook --------------------------------------------------------------------------------

    /// The name of the scenario's webhook (in the API server's denial messages).
    pub fn webhook_name(&self) -> String {
        format!("jobs.{}.carbonshift.dev", self.ns)
    }

    /// Registers the operator's webhook for this namespace only (`failurePolicy: Fail`) and waits
    /// until the API server calls it.
    pub async fn register_webhook(&self, operator: &Operator) {
        let url = self.settings.webhook_url(operator.webhook_port);
        let configuration = webhook_configuration(
            &self.ns,
            &self.webhook_name(),
            &self.ns,
            url.clone(),
            &self.tls.ca_pem,
        );
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &configuration)
            .await
            .unwrap_or_else(|e| panic!("creating MutatingWebhookConfiguration {}: {e}", self.ns));
        lock(&self.registry).webhooks.push(self.ns.clone());
        self.say(format!(
            "MutatingWebhookConfiguration {} registered: {url}, failurePolicy Fail, namespace {} only",
            self.ns, self.ns
        ));
        let jobs = self.jobs();
        let probe = self.job("webhook-probe").build();
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        self.eventually(
            "the API server to call the webhook (a dry-run Job create coming back held)",
            Duration::from_secs(60),
            Duration::from_millis(250),
            || async {
                match jobs.create(&dry_run, &probe).await {
                    Ok(job) if annotation(&job, HELD) == Some("true") && suspended(&job) => Ok(()),
                    Ok(_) => Err("the dry-run Job came back without the held marker".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        self.say("the API server calls the webhook");
    }

    // -- forecasts ------------------------------------------------------------------------------

    /// A CarbonForecast of this scenario (labelled for its operators' `--forecast-selector`).
    pub fn forecast_object(&self, name: &str, spec: CarbonForecastSpec) -> CarbonForecast {
        let mut forecast = CarbonForecast::new(name, spec);
        forecast.metadata.labels = Some([(SCENARIO_LABEL.to_string(), self.ns.clone())].into());
        forecast
    }

    /// A static spec with `points`.
    pub fn static_spec(points: Vec<IntensityPoint>) -> CarbonForecastSpec {
        CarbonForecastSpec {
            provider: ProviderSpec::Static(StaticPoints {
                points,
                actuals: Vec::new(),
            }),
            credentials_secret_ref: None,
            refresh_interval: None,
            stale_after: None,
            base_url: None,
            capacity: None,
            placement: None,
        }
    }

    /// Creates the scenario's CarbonForecast (named like the namespace).
    pub async fn create_forecast(&self, spec: CarbonForecastSpec) {
        let forecast = self.forecast_object(&self.ns, spec);
        self.forecasts()
            .create(&PostParams::default(), &forecast)
            .await
            .unwrap_or_else(|e| panic!("creating CarbonForecast {}: {e}", self.ns));
        self.created_forecast(&self.ns);
        self.say(format!("CarbonForecast {} created", self.ns));
    }

    /// Creates the scenario's static forecast with one clean window `[clean, clean + 3 min)`.
    pub async fn create_clean_window_forecast(&self, clean: DateTime<Utc>) {
        self.create_forecast(Self::static_spec(forecast_points(clean)))
            .await;
        self.say(format!(
            "static forecast: {DIRTY} g/kWh, clean ({CLEAN}) from {} for 3 min ({} s from now)",
            rfc3339(clean),
            (clean - Utc::now()).num_seconds()
        ));
    }

    /// Waits until the scenario's CarbonForecast is `Ready`.
    pub async fn wait_forecast_ready(&self) {
        self.wait_forecast_ready_named(&self.ns).await;
    }

    /// Waits until the CarbonForecast `name` is `Ready`.
    pub async fn wait_forecast_ready_named(&self, name: &str) {
        let forecasts = self.forecasts();
        self.eventually(
            &format!("CarbonForecast {name} to be Ready"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                let f = forecasts.get(name).await.map_err(|e| e.to_string())?;
                let status = f.status.unwrap_or_default();
                if status
                    .conditions
                    .iter()
                    .any(|c| c.r#type == "Ready" && c.is_true())
                {
                    Ok(())
                } else {
                    Err(format!("status {status:?}"))
                }
            },
        )
        .await;
        self.say(format!("CarbonForecast {name} is Ready"));
    }

    /// A second pool of simulated nodes for this scenario (`<namespace>-<name>`), deleted with the
    /// scenario.
    pub async fn add_pool(&self, name: &str, count: usize) -> NodeSim {
        let pool = format!("{}-{name}", self.nodes.pool);
        lock(&self.registry).nodes.extend(node_names(&pool, count));
        let nodes = NodeSim::start(
            self.client.clone(),
            &self.ns,
            &pool,
            count,
            NodeShape::default(),
            self.progress.clone(),
        )
        .await;
        lock(&self.registry).tasks.extend(nodes.abort_handles());
        nodes
    }

    // -- Jobs -----------------------------------------------------------------------------------

    /// A deferrable Job of this scenario: planned against its forecast, pods on its nodes.
    pub fn job(&self, name: &str) -> JobBuilder {
        JobBuilder::deferrable(&self.ns, name, &self.ns, &self.settings.image)
            .pool(&self.nodes.pool)
    }

    /// A Job without carbonshift annotations, pods on this scenario's nodes.
    pub fn plain_job(&self, name: &str) -> JobBuilder {
        JobBuilder::plain(&self.ns, name, &self.settings.image).pool(&self.nodes.pool)
    }

    pub async fn create_job(&self, job: Job) -> Job {
        let name = job.metadata.name.clone().unwrap_or_default();
        let created = self
            .jobs()
            .create(&PostParams::default(), &job)
            .await
            .unwrap_or_else(|e| panic!("creating Job {name}: {e}"));
        self.say(format!(
            "Job {name} created: suspend {:?}, held {:?}, submitted-at {:?}",
            created.spec.as_ref().and_then(|s| s.suspend),
            annotation(&created, HELD),
            annotation(&created, carbonshift::api::annotations::SUBMITTED_AT),
        ));
        created
    }

    /// Asserts that the Job came back from its create held by the webhook.
    pub fn assert_held_at_admission(&self, job: &Job) {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        assert!(
            suspended(job),
            "the webhook did not suspend Job {name}: spec.suspend = {:?}",
            job.spec.as_ref().and_then(|s| s.suspend)
        );
        assert_eq!(annotation(job, HELD), Some("true"), "{name}: held marker");
        let submitted = annotation(job, carbonshift::api::annotations::SUBMITTED_AT)
            .unwrap_or_else(|| panic!("{name}: no submitted-at marker"));
        parse_time(submitted, "submitted-at");
        assert_eq!(annotation(job, RELEASED_AT), None, "{name}: released-at");
    }

    // -- workloads ------------------------------------------------------------------------------

    /// Polls the CarbonWorkload of `job` every 200 ms until `check` accepts its status.
    pub async fn wait_workload<T>(
        &self,
        job: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&CarbonWorkloadStatus) -> Option<T>,
    ) -> T {
        let workloads = self.workloads();
        self.eventually(
            &format!("CarbonWorkload {job} {what}"),
            timeout,
            Duration::from_millis(200),
            || async {
                let workload = workloads
                    .get_opt(job)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("no CarbonWorkload yet")?;
                let status = workload.status.unwrap_or_default();
                check(&status).ok_or_else(|| describe(&status))
            },
        )
        .await
    }

    /// Waits for `job`'s CarbonWorkload to be `Deferred` with a planned start, and returns it.
    pub async fn wait_deferred(&self, job: &str) -> DateTime<Utc> {
        let planned = self
            .wait_workload(job, "to be Deferred", Duration::from_secs(30), |s| {
                match (s.phase, s.planned_start) {
                    (Some(Phase::Deferred), Some(planned)) => Some(planned),
                    _ => None,
                }
            })
            .await;
        self.say(format!(
            "CarbonWorkload {job}: Deferred, plannedStart {} ({} s from now)",
            rfc3339(planned),
            (planned - Utc::now()).num_seconds()
        ));
        planned
    }

    /// Waits for `job`'s CarbonWorkload to reach `phase`.
    pub async fn wait_phase(
        &self,
        job: &str,
        phase: Phase,
        timeout: Duration,
    ) -> CarbonWorkloadStatus {
        let status = self
            .wait_workload(job, &format!("to be {phase:?}"), timeout, |s| {
                (s.phase == Some(phase)).then(|| s.clone())
            })
            .await;
        self.say(format!("CarbonWorkload {job}: {}", describe(&status)));
        status
    }

    /// Every distinct (phase, reason, plannedStart) the CarbonWorkload of `job` went through, as
    /// the watch delivered them.
    pub fn history(&self, job: &str) -> Vec<Transition> {
        self.recorder.history(job)
    }

    /// Asserts that the workload of `job` never had reason `reason`, neither in its status nor in
    /// an Event.
    pub async fn assert_never_reason(&self, job: &str, reason: &str) {
        let seen: Vec<Transition> = self
            .history(job)
            .into_iter()
            .filter(|t| t.reason.as_deref() == Some(reason))
            .collect();
        assert!(
            seen.is_empty(),
            "CarbonWorkload {job} had reason {reason}: {seen:?}"
        );
        let events = self.event_reasons(job).await;
        assert!(
            !events.iter().any(|(r, _)| r == reason),
            "an Event with reason {reason} was recorded for {job}: {events:?}"
        );
    }

    /// `(reason, note)` of the Events about the Job `job` and its CarbonWorkload.
    pub async fn event_reasons(&self, job: &str) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let list = events
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("listing Events in {}: {e}", self.ns));
        let mut found: Vec<(DateTime<Utc>, String, String)> = list
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.name.as_deref() == Some(job)
                        && matches!(r.kind.as_deref(), Some("Job" | "CarbonWorkload"))
                })
            })
            .map(|e| {
                let at = e
                    .event_time
                    .as_ref()
                    .map(|t| from_jiff(t.0))
                    .or_else(|| {
                        e.metadata
                            .creation_timestamp
                            .as_ref()
                            .map(|t| from_jiff(t.0))
                    })
                    .unwrap_or_else(Utc::now);
                (at, e.reason.unwrap_or_default(), e.note.unwrap_or_default())
            })
            .collect();
        found.sort();
        found.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
        found.into_iter().map(|(_, r, n)| (r, n)).collect()
    }

    /// Waits (up to 15 s: Events are recorded after the writes they report) for an Event with
    /// `reason` about the Job `job` or its CarbonWorkload, and returns its note.
    pub async fn wait_event(&self, job: &str, reason: &str) -> String {
        let note = self
            .eventually(
                &format!("an Event {reason} about {job}"),
                Duration::from_secs(15),
                Duration::from_millis(500),
                || async {
                    let events = self.event_reasons(job).await;
                    events
                        .iter()
                        .find(|(r, _)| r == reason)
                        .map(|(_, note)| note.clone())
                        .ok_or_else(|| format!("Events so far: {events:?}"))
                },
            )
            .await;
        self.say(format!("Event {reason} about {job}: {note}"));
        note
    }

    // -- release and completion -----------------------------------------------------------------

    /// Polls `job` every 100 ms until it is unsuspended and checks the release against `due`: not
    /// seen unsuspended before `due`, `carbonshift.dev/released-at` within `[due, due + 2 s]`
    /// (whole seconds: `due` is cut to the second), and no poll started 2 s or more after `due`
    /// saw it suspended.
    pub async fn expect_release(&self, job: &str, due: DateTime<Utc>) -> DateTime<Utc> {
        let due_second = whole_seconds(due);
        let jobs = self.jobs();
        let mut last_suspended_poll: Option<DateTime<Utc>> = None;
        let (released, asked, answered) = loop {
            self.check_operators();
            let asked = Utc::now();
            assert!(
                asked < due + TimeDelta::seconds(30),
                "Job {job} still not seen released 30 s after it was due at {}",
                rfc3339(due)
            );
            let current = match jobs.get(job).await {
                Ok(current) => current,
                Err(e) => {
                    // A failed read proves nothing either way; the next one decides.
                    self.say(format!("reading Job {job} failed ({e}); polling on"));
                    tokio::time::sleep(RELEASE_POLL).await;
                    continue;
                }
            };
            let answered = Utc::now();
            if !suspended(&current) {
                break (current, asked, answered);
            }
            last_suspended_poll = Some(asked);
            tokio::time::sleep(RELEASE_POLL).await;
        };
        let released_at = annotation(&released, RELEASED_AT).unwrap_or_else(|| {
            panic!("Job {job} unsuspended without the {RELEASED_AT} annotation")
        });
        let released_at = parse_time(released_at, RELEASED_AT);
        self.say(format!(
            "Job {job} released: {RELEASED_AT} {} ({:+} ms from {}); seen unsuspended by the poll sent at {} (last poll that saw it suspended: {})",
            rfc3339(released_at),
            (released_at - due).num_milliseconds(),
            rfc3339(due),
            rfc3339(asked),
            last_suspended_poll.map_or("none".to_string(), rfc3339),
        ));
        assert!(
            answered >= due_second,
            "Job {job} was unsuspended before it was due at {} (seen at {})",
            rfc3339(due),
            rfc3339(answered)
        );
        assert!(
            released_at >= due_second && released_at <= due + RELEASE_TOLERANCE,
            "{RELEASED_AT} {} of Job {job} is not within [{}, {} + 2 s]",
            rfc3339(released_at),
            rfc3339(due_second),
            rfc3339(due)
        );
        if let Some(last) = last_suspended_poll {
            assert!(
                last < due + RELEASE_TOLERANCE,
                "a poll sent at {} (2 s or more after {} when Job {job} was due) still saw it suspended",
                rfc3339(last),
                rfc3339(due)
            );
        }
        released_at
    }

    /// Waits for the Job controller to mark `job` `Complete` (panics if it fails instead).
    pub async fn wait_job_complete(&self, job: &str, timeout: Duration) -> Job {
        self.wait_job_finished(job, "Complete", timeout).await
    }

    /// Waits for the Job controller to set condition `finished` (`Complete` or `Failed`) on
    /// `job`; panics if it sets the other one.
    pub async fn wait_job_finished(&self, job: &str, finished: &str, timeout: Duration) -> Job {
        let other = if finished == "Complete" {
            "Failed"
        } else {
            "Complete"
        };
        let jobs = self.jobs();
        let done = self
            .eventually(
                &format!("Job {job} to be {finished}"),
                timeout,
                Duration::from_millis(500),
                || async {
                    let current = jobs.get(job).await.map_err(|e| e.to_string())?;
                    if job_condition_true(&current, other) {
                        panic!("Job {job} is {other}, not {finished}: {:?}", current.status);
                    }
                    if job_condition_true(&current, finished) {
                        Ok(current)
                    } else {
                        Err(format!("status {:?}", current.status))
                    }
                },
            )
            .await;
        let status = done.status.clone().unwrap_or_default();
        let reason = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == finished)
            .and_then(|c| c.reason.clone())
            .unwrap_or_default();
        self.say(format!(
            "Job {job} {finished} ({reason}, set by the Job controller): succeeded {:?}, failed {:?}, completionTime {:?}",
            status.succeeded,
            status.failed,
            status
                .completion_time
                .as_ref()
                .map(|t| rfc3339(from_jiff(t.0)))
        ));
        done
    }

    /// The pods of `job` that exist now.
    pub async fn pods_of(&self, job: &str) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await
            .unwrap_or_else(|e| panic!("listing the pods of Job {job}: {e}"))
            .items
    }

    /// Waits until a pod of `job` is bound (by the scheduler) and returns it.
    pub async fn wait_pod_bound(&self, job: &str) -> Pod {
        let pod = self
            .eventually(
                &format!("a pod of Job {job} to be bound to a node"),
                Duration::from_secs(60),
                Duration::from_millis(250),
                || async {
                    let pods = self.pods_of(job).await;
                    pods.into_iter()
                        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                        .ok_or_else(|| "no pod bound yet".to_string())
                },
            )
            .await;
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        self.say(format!(
            "pod {} of Job {job} bound to Node {node}",
            pod.metadata.name.as_deref().unwrap_or_default()
        ));
        pod
    }

    /// Asserts that the scheduler (not anybody else) bound `pod` to one of this scenario's nodes.
    pub async fn assert_scheduled_here(&self, pod: &Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(
            self.nodes.names.contains(&node),
            "pod {name} is on Node {node:?}, not on one of this scenario's Nodes {:?}",
            self.nodes.names
        );
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let scheduled = self
            .eventually(
                &format!("the scheduler's Scheduled Event for pod {name}"),
                Duration::from_secs(30),
                Duration::from_millis(500),
                || async {
                    let list = events
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    list.items
                        .into_iter()
                        .find(|e| {
                            e.reason.as_deref() == Some("Scheduled")
                                && e.regarding
                                    .as_ref()
                                    .is_some_and(|r| r.name.as_deref() == Some(name.as_str()))
                        })
                        .ok_or_else(|| "no Scheduled Event yet".to_string())
                },
            )
            .await;
        let controller = scheduled.reporting_controller.clone().unwrap_or_default();
        assert_eq!(
            controller, "default-scheduler",
            "pod {name} was scheduled by {controller:?}: {scheduled:?}"
        );
        self.say(format!(
            "{controller}: {}",
            scheduled.note.unwrap_or_default()
        ));
    }

    /// Checks that `succeeded` pods of `job` really ran to `Succeeded` on this scenario's
    /// simulated nodes.
    pub fn assert_pods_ran(&self, job: &str, succeeded: usize) {
        let records = self.nodes.records_for(job);
        let done: Vec<_> = records
            .iter()
            .filter(|r| r.outcome.as_deref() == Some("Succeeded"))
            .collect();
        assert_eq!(
            done.len(),
            succeeded,
            "pods of Job {job} the node simulator ran to Succeeded: {records:?}"
        );
        for record in done {
            assert!(
                self.nodes.names.contains(&record.node) && record.finished_at >= record.running_at,
                "{record:?}"
            );
            self.say(format!(
                "pod {} ran on {} from {} to {}",
                record.name,
                record.node,
                record.running_at.map_or("-".to_string(), rfc3339),
                record.finished_at.map_or("-".to_string(), rfc3339)
            ));
        }
    }

    /// `/metrics` of `operator` must contain `line` (within 10 s: the counters are updated after
    /// the writes they count).
    pub async fn assert_metric(&self, operator: &Operator, line: &str) {
        self.eventually(
            &format!("{line:?} in {}'s /metrics", operator.label),
            Duration::from_secs(10),
            Duration::from_millis(500),
            || async {
                let text = operator.metrics().await?;
                if text.lines().any(|l| l == line) {
                    Ok(())
                } else {
                    Err(text
                        .lines()
                        .filter(|l| l.starts_with("carbonshift_releases_total"))
                        .collect::<Vec<_>>()
                        .join("; "))
                }
            },
        )
        .await;
        self.say(format!("{}'s /metrics: {line}", operator.label));
    }

    // -- audit log ------------------------------------------------------------------------------

    /// The operator's patches of the Job `job` (not of its status) in the audit log since the
    /// scenario started: requests with verb `patch` on `jobs` in this namespace, name `job`,
    /// field manager `carbonshift` (the release and pause patches).
    pub fn operator_job_patches(&self, job: &str) -> Vec<AuditEntry> {
        let path = self.settings.audit_log();
        let mut file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("cannot open the audit log {}: {e}", path.display()));
        let len = file.metadata().map_or(0, |m| m.len());
        // A control plane restarted with --fresh starts a new log.
        let offset = if len >= self.audit_offset {
            self.audit_offset
        } else {
            0
        };
        file.seek(SeekFrom::Start(offset))
            .unwrap_or_else(|e| panic!("seeking in {}: {e}", path.display()));
        let mut text = String::new();
        file.read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let marker = format!("\"name\":\"{job}\"");
        text.lines()
            .filter(|l| l.contains("\"verb\":\"patch\"") && l.contains(&marker))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                let object = &e["objectRef"];
                e["stage"] == "ResponseComplete"
                    && object["resource"] == "jobs"
                    && object["namespace"] == self.ns.as_str()
                    && object["name"] == job
                    && object.get("subresource").is_none()
                    && field_manager(e["requestURI"].as_str().unwrap_or_default())
                        .is_some_and(|m| m == OPERATOR_FIELD_MANAGER)
            })
            .map(|e| AuditEntry {
                code: e["responseStatus"]["code"].as_u64().unwrap_or(0),
                user: e["user"]["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                user_agent: e["userAgent"].as_str().unwrap_or_default().to_string(),
                at: e["requestReceivedTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect()
    }

    /// Asserts that the operator's patches of `job` in the audit log include exactly one that
    /// succeeded; returns them all (a refused guarded patch is a 409 or 422).
    pub async fn assert_released_once(&self, job: &str) -> Vec<AuditEntry> {
        // The audit backend writes the ResponseComplete event as the response goes out; give the
        // last line a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let patches = self.operator_job_patches(job);
        let applied: Vec<&AuditEntry> = patches
            .iter()
            .filter(|p| (200..300).contains(&p.code))
            .collect();
        self.say(format!(
            "audit log: {} release patch(es) of Job {job} by the operator ({} applied): {}",
            patches.len(),
            applied.len(),
            patches
                .iter()
                .map(|p| format!(
                    "{} {} by {} (user agent {:?})",
                    p.at, p.code, p.user, p.user_agent
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        assert_eq!(
            applied.len(),
            1,
            "Job {job} must be released exactly once; the operator's patches in the audit log: {patches:?}"
        );
        patches
    }

    // -- kubectl and helm -----------------------------------------------------------------------

    /// `kubectl --kubeconfig <admin> ARGS` with `stdin`.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_as(&self.settings.kubeconfig, args, stdin)
    }

    /// `kubectl --kubeconfig KUBECONFIG ARGS` with `stdin`; every request bounded to 30 s.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(&self.settings.kubectl);
        command
            .env_remove("KUBECONFIG")
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--request-timeout=30s")
            .args(args);
        run_command(command, stdin, "kubectl")
    }

    /// `helm ARGS`.
    pub fn helm(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.settings.helm);
        command.env_remove("KUBECONFIG").args(args);
        run_command(command, None, "helm")
    }
}

fn run_command(mut command: Command, stdin: Option<&str>, what: &str) -> Output {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run {what} ({command:?}): {e}; run `make tools` to install it into .tools/bin"
        )
    });
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("writing to {what}'s stdin: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// The `fieldManager` query parameter of a request URI.
fn field_manager(uri: &str) -> Option<&str> {
    uri.split_once('?')?
        .1
        .split('&')
        .find_map(|pair| pair.strip_prefix("fieldManager="))
}

/// One request in the audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub code: u64,
    pub user: String,
    pub user_agent: String,
    pub at: String,
}

/// A short description of a workload status.
pub fn describe(status: &CarbonWorkloadStatus) -> String {
    format!(
        "phase {:?}, reason {:?}, plannedStart {:?}, message {:?}",
        status.phase,
        status.reason,
        status.planned_start.map(rfc3339),
        status.message
    )
}

// ---------------------------------------------------------------------------------------------
// The CarbonWorkload recorder

/// One distinct state of a CarbonWorkload, as the watch delivered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub phase: Option<Phase>,
    pub reason: Option<String>,
    pub planned_start: Option<DateTime<Utc>>,
}

/// Watches the CarbonWorkloads of a namespace, printing and keeping every change of phase,
/// reason or planned start.
struct Recorder {
    seen: Arc<Mutex<BTreeMap<String, Vec<Transition>>>>,
    task: tokio::task::AbortHandle,
}

impl Recorder {
    fn start(client: Client, ns: &str, progress: Progress) -> Self {
        let seen: Arc<Mutex<BTreeMap<String, Vec<Transition>>>> = Arc::default();
        let api: Api<CarbonWorkload> = Api::namespaced(client, ns);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default());
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let workload = match event {
                    Ok(watcher::Event::Apply(w) | watcher::Event::InitApply(w)) => w,
                    Ok(_) => continue,
                    Err(e) => {
                        progress.say(format!("CarbonWorkload watch: {e}; retrying"));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let name = workload.metadata.name.clone().unwrap_or_default();
                let status = workload.status.unwrap_or_default();
                let transition = Transition {
                    at: Utc::now(),
                    phase: status.phase,
                    reason: status.reason.clone(),
                    planned_start: status.planned_start,
                };
                let mut seen = lock(&record);
                let list = seen.entry(name.clone()).or_default();
                let changed = list.last().is_none_or(|last| {
                    (last.phase, &last.reason, last.planned_start)
                        != (
                            transition.phase,
                            &transition.reason,
                            transition.planned_start,
                        )
                });
                if changed {
                    progress.say(format!(
                        "watch: CarbonWorkload {name} {:?} ({}), plannedStart {}",
                        transition.phase,
                        transition.reason.as_deref().unwrap_or("-"),
                        transition.planned_start.map_or("-".to_string(), rfc3339)
                    ));
                    list.push(transition);
                }
            }
        })
        .abort_handle();
        Self { seen, task }
    }

    fn history(&self, job: &str) -> Vec<Transition> {
        lock(&self.seen).get(job).cloned().unwrap_or_default()
    }
}
