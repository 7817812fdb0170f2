//! Load test: the release build of `carbonshift run` against a real control plane with N
//! deferrable Jobs (`make load`, `scripts/load.sh [N]`; not part of `make test`).
//!
//! The one test here is `#[ignore]`d: `cargo test` compiles it and skips it. Run it with
//!
//! ```sh
//! CARBONSHIFT_LOAD_KUBECONFIG=/tmp/carbonshift-cp/kubeconfig CARBONSHIFT_LOAD_JOBS=1000 \
//!   cargo test --release --locked --test load -- --ignored --nocapture
//! ```
//!
//! What it does, printing each step:
//!
//! 1. Applies the CRDs, waits until the namespaces of earlier runs on the same control plane are
//!    deleted (their cleanup leaves that to the namespace controller, which would otherwise
//!    share the API server with this run), creates 10 load namespaces and one for the operator's identity: a
//!    ServiceAccount bound to `cluster-admin` whose token goes into a kubeconfig of its own, so
//!    that the API server's audit log separates the operator's requests from everyone else's.
//! 2. Creates a cluster-scoped `static` CarbonForecast, dirty except for a three-minute clean
//!    window starting at `W` = now + lead (default 60 s + 100 ms per Job), and starts
//!    `carbonshift run --no-webhook --leader-election=false --namespaces=<the 10>` with
//!    `RUST_LOG=warn`. Waits for `/readyz` and for the forecast to be `Ready`; after 5 s more,
//!    the idle RSS.
//! 3. Creates N one-minute Jobs round robin over the namespaces, each as the admission webhook
//!    would store it (the library's `webhook::mutate` run on it, its patch applied), and follows
//!    the CarbonWorkloads with a watch until every one has a plan (all at `W`).
//! 4. At `W` the operator releases them; the harness waits until every workload records its
//!    release, then until the Job controller has created every pod and the operator has seen it
//!    (`Running`); then, since no kubelet runs the pods, it writes each Job's status as the Job
//!    controller would on success and waits until every workload is `Succeeded`.
//! 5. Stops the operator, reads its requests from the audit log, and runs the baseline: N fresh
//!    held Jobs (with `spec.managedBy`, so that the Job controller leaves them alone) released
//!    by a plain client with the same guarded JSON patch, a fixed number in flight, over
//!    connections it opened before its clock started.
//! 6. Prints the figures as markdown, writes them to `CARBONSHIFT_LOAD_REPORT` (and the same
//!    figures as JSON beside it), and replaces this N's subsection of
//!    `## Operator on a real control plane (make load)` in `CARBONSHIFT_LOAD_DOCS`.
//!
//! Everything it created is deleted at the end, also when it fails (namespaces, forecast,
//! ClusterRoleBinding; the CRDs stay). Every wait is bounded and panics saying what it waited
//! for and what it saw last.
//!
//! Environment:
//! - `CARBONSHIFT_LOAD_KUBECONFIG` (required): an admin kubeconfig of the control plane.
//! - `CARBONSHIFT_LOAD_JOBS` (1000), `CARBONSHIFT_LOAD_NAMESPACES` (10).
//! - `CARBONSHIFT_LOAD_AUDIT_LOG` (default `$CP_HOME/audit.log`, else `audit.log` beside the
//!   kubeconfig): the API server's audit log. Its rotated siblings in the same directory
//!   (`audit-<time>.log`, `.log.gz`) are read too, in time order, when the API server rotated
//!   the log during the run ([`audit`]); a 10,000-Job run writes several hundred MB.
//! - `CARBONSHIFT_LOAD_REPORT` (default `<target tmp>/load-<N>.md`): the markdown fragment.
//! - `CARBONSHIFT_LOAD_DOCS` (default `docs/benchmarks.md` of this crate; empty: none).
//! - `CARBONSHIFT_LOAD_LEAD_SECONDS`: seconds from the forecast's creation to `W`.
//! - `CARBONSHIFT_LOAD_IN_FLIGHT` (32): the harness's concurrent creates and status writes.
//! - `CARBONSHIFT_LOAD_BASELINE_IN_FLIGHT` (64): the baseline's concurrent release patches.
//! - `CARBONSHIFT_LOAD_WAVES` (1): `2` sends a second wave of N Jobs through the same operator
//!   after the first finished and its Jobs were deleted, and compares the peak RSS ([`wave`]).

// This crate is test code: a failed `expect` in a helper is a failed run. (clippy.toml's
// allow-*-in-tests reaches `#[test]` functions and `#[cfg(test)]` code, not the helpers of an
// integration test.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod cluster;
mod process;
mod report;
mod wave;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use carbonshift::api::annotations::AnnotationDefaults;
use carbonshift::api::forecast::StaticPoints;
use carbonshift::api::{CarbonForecast, CarbonForecastSpec, CarbonWorkload, Phase, ProviderSpec};
use carbonshift::controller::release::{self, Guard};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};

use process::Operator;
use report::{Baseline, Figures, Machine, Mark, RequestCount, Writes, percentiles, thousands};

/// The field manager of what this test applies.
const FIELD_MANAGER: &str = "carbonshift-load";

/// The operator's name in the CPU figures.
const OPERATOR_PROCESS: &str = "carbonshift (operator)";

/// The harness's name in the CPU figures: during the operator's burst it only follows the
/// workloads; during the baseline it is the plain client.
const HARNESS_PROCESS: &str = "harness (this test)";

/// How long the operator is left alone before the idle RSS is read.
const IDLE_SETTLE: Duration = Duration::from_secs(5);

/// How long after the last workload succeeded the "finished" RSS is read.
const FINISHED_SETTLE: Duration = Duration::from_secs(10);

struct Settings {
    kubeconfig: PathBuf,
    jobs: usize,
    namespaces: usize,
    audit_log: PathBuf,
    report: PathBuf,
    docs: Option<PathBuf>,
    lead: Duration,
    in_flight: usize,
    baseline_in_flight: usize,
    /// 2: a second wave of N after the first finished, with the same operator (wave.rs).
    waves: usize,
}

fn env_number(key: &str, default: usize) -> usize {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => panic!("{key}={v:?}: expected a whole number above 0"),
        },
        _ => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let kubeconfig = std::env::var_os("CARBONSHIFT_LOAD_KUBECONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "set CARBONSHIFT_LOAD_KUBECONFIG to an admin kubeconfig of a disposable control plane (scripts/load.sh does)"
                )
            });
        let kubeconfig = std::path::absolute(&kubeconfig).unwrap_or(kubeconfig);
        let jobs = env_number("CARBONSHIFT_LOAD_JOBS", 1000);
        let namespaces = env_number("CARBONSHIFT_LOAD_NAMESPACES", 10);
        let audit_log =
            match std::env::var_os("CARBONSHIFT_LOAD_AUDIT_LOG").filter(|v| !v.is_empty()) {
                Some(path) => PathBuf::from(path),
                None => match std::env::var_os("CP_HOME").filter(|v| !v.is_empty()) {
                    Some(home) => Path::new(&home).join("audit.log"),
                    None => kubeconfig
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join("audit.log"),
                },
            };
        assert!(
            audit_log.is_file(),
            "the API server's audit log {} does not exist: the operator's requests are counted from it (set CARBONSHIFT_LOAD_AUDIT_LOG)",
            audit_log.display()
        );
        let report = std::env::var_os("CARBONSHIFT_LOAD_REPORT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("load-{jobs}.md"))
            });
        let docs = match std::env::var_os("CARBONSHIFT_LOAD_DOCS") {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(PathBuf::from(v)),
            None => Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md")),
        };
        let lead = match std::env::var("CARBONSHIFT_LOAD_LEAD_SECONDS") {
            Ok(_) => Duration::from_secs(env_number("CARBONSHIFT_LOAD_LEAD_SECONDS", 0) as u64),
            Err(_) => Duration::from_secs(60) + Duration::from_millis(100 * jobs as u64),
        };
        Self {
            kubeconfig,
            jobs,
            namespaces,
            audit_log,
            report,
            docs,
            lead,
            in_flight: env_number("CARBONSHIFT_LOAD_IN_FLIGHT", 32),
            baseline_in_flight: env_number("CARBONSHIFT_LOAD_BASELINE_IN_FLIGHT", 64),
            waves: env_number("CARBONSHIFT_LOAD_WAVES", 1).min(2),
        }
    }

    /// A bound for a step that handles every Job once: `base`, plus `per_job` per Job.
    fn bound(&self, base: u64, per_job_ms: u64) -> Duration {
        Duration::from_secs(base) + Duration::from_millis(per_job_ms * self.jobs as u64)
    }
}

/// Progress lines with the time since the start, straight to stderr.
struct Progress {
    start: Instant,
}

impl Progress {
    fn say(&self, message: impl AsRef<str>) {
        let _ = writeln!(
            std::io::stderr(),
            "load [{:>7.1}s] {}",
            self.start.elapsed().as_secs_f64(),
            message.as_ref()
        );
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local address: {e}"))
        .port()
}

/// Calls `probe` every `every` until it returns `Ok`, checking that the operator still runs and
/// printing the last answer every 10 s; panics after `timeout` with the last answer.
async fn eventually<T, F, Fut>(
    progress: &Progress,
    what: &str,
    timeout: Duration,
    every: Duration,
    operator: Option<&Operator>,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut told = Instant::now();
    loop {
        if let Some(operator) = operator {
            operator.assert_running();
        }
        let last = match probe().await {
            Ok(value) => return value,
            Err(reason) => reason,
        };
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        if told.elapsed() >= Duration::from_secs(10) {
            progress.say(format!("waiting for {what}: {last}"));
            told = Instant::now();
        }
        tokio::time::sleep(every).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Following the CarbonWorkloads

#[derive(Debug, Default)]
struct Seen {
    planned_start: Option<DateTime<Utc>>,
    planned_seen: Option<DateTime<Utc>>,
    released_at: Option<DateTime<Utc>>,
    running_seen: bool,
    succeeded_seen: Option<DateTime<Utc>>,
    phase: Option<Phase>,
}

/// What the watch has seen of the load workloads.
#[derive(Debug, Default)]
struct Tracker {
    workloads: HashMap<String, Seen>,
    planned: usize,
    released: usize,
    running: usize,
    succeeded: usize,
    last_planned: Option<DateTime<Utc>>,
    last_succeeded: Option<DateTime<Utc>>,
    watch_errors: usize,
    last_error: Option<String>,
}

impl Tracker {
    fn apply(&mut self, workload: &CarbonWorkload, now: DateTime<Utc>) {
        let key = format!(
            "{}/{}",
            workload.metadata.namespace.as_deref().unwrap_or_default(),
            workload.metadata.name.as_deref().unwrap_or_default()
        );
        let status = workload.status.clone().unwrap_or_default();
        let seen = self.workloads.entry(key).or_default();
        if let Some(planned) = status.planned_start {
            seen.planned_start = Some(planned);
            if seen.planned_seen.is_none() {
                seen.planned_seen = Some(now);
                self.planned += 1;
                self.last_planned = Some(now);
            }
        }
        if seen.released_at.is_none()
            && let Some(released) = status.released_at
        {
            seen.released_at = Some(released);
            self.released += 1;
        }
        if !seen.running_seen && matches!(status.phase, Some(Phase::Running | Phase::Succeeded)) {
            seen.running_seen = true;
            self.running += 1;
        }
        if seen.succeeded_seen.is_none() && status.phase == Some(Phase::Succeeded) {
            seen.succeeded_seen = Some(now);
            self.succeeded += 1;
            self.last_succeeded = Some(now);
        }
        seen.phase = status.phase;
    }

    /// `Deferred 812, Pending 188` and the watch errors, for progress lines.
    fn summary(&self) -> String {
        let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
        for seen in self.workloads.values() {
            *phases
                .entry(seen.phase.map_or("(no status)", Phase::as_str))
                .or_default() += 1;
        }
        let phases = phases
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{} workloads ({phases}); planned {}, released {}, running {}, succeeded {}; watch errors {}{}",
            self.workloads.len(),
            self.planned,
            self.released,
            self.running,
            self.succeeded,
            self.watch_errors,
            self.last_error
                .as_ref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        )
    }
}

/// Watches the CarbonWorkloads of `namespaces` into `tracker` until aborted.
fn track(
    client: &Client,
    namespaces: &[String],
    tracker: Arc<Mutex<Tracker>>,
) -> tokio::task::JoinHandle<()> {
    let streams = namespaces.iter().map(|ns| {
        watcher(
            Api::<CarbonWorkload>::namespaced(client.clone(), ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .boxed()
    });
    let mut merged = futures::stream::select_all(streams);
    tokio::spawn(async move {
        while let Some(event) = merged.next().await {
            let now = Utc::now();
            let mut tracker = lock(&tracker);
            match event {
                Ok(watcher::Event::Apply(w) | watcher::Event::InitApply(w)) => {
                    tracker.apply(&w, now)
                }
                Ok(_) => {}
                Err(e) => {
                    tracker.watch_errors += 1;
                    tracker.last_error = Some(e.to_string());
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Clean-up, also on failure

struct Cleanup {
    runtime: tokio::runtime::Handle,
    client: Option<Client>,
    operator: Option<Operator>,
    forecast: Option<String>,
    binding: Option<String>,
    namespaces: Vec<String>,
    wait: Duration,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let say = |m: String| {
            let _ = writeln!(std::io::stderr(), "load [cleanup] {m}");
        };
        if let Some(operator) = self.operator.take() {
            if let Some(outcome) = operator.stop() {
                say(format!("operator {outcome}"));
            }
            if failed {
                say(format!(
                    "last lines of the operator's log {}:\n{}",
                    operator.log.display(),
                    process::tail(&operator.log, 80)
                ));
            }
        }
        let Some(client) = self.client.clone() else {
            return;
        };
        if let Some(name) = self.forecast.take() {
            let api: Api<CarbonForecast> = Api::all(client.clone());
            match self
                .runtime
                .block_on(api.delete(&name, &DeleteParams::default()))
            {
                Ok(_) => say(format!("deleted CarbonForecast {name}")),
                Err(e) => say(format!("could not delete CarbonForecast {name}: {e}")),
            }
        }
        if let Some(name) = self.binding.take() {
            let api: Api<ClusterRoleBinding> = Api::all(client.clone());
            match self
                .runtime
                .block_on(api.delete(&name, &DeleteParams::default()))
            {
                Ok(_) => say(format!("deleted ClusterRoleBinding {name}")),
                Err(e) => say(format!("could not delete ClusterRoleBinding {name}: {e}")),
            }
        }
        let namespaces = std::mem::take(&mut self.namespaces);
        if namespaces.is_empty() {
            return;
        }
        let api: Api<Namespace> = Api::all(client);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        for name in &namespaces {
            if let Err(e) = self.runtime.block_on(api.delete(name, &params)) {
                say(format!("could not delete namespace {name}: {e}"));
            }
        }
        say(format!(
            "deleting {} namespaces (waiting up to {} s for the namespace controller)",
            namespaces.len(),
            self.wait.as_secs()
        ));
        let start = Instant::now();
        let mut told = Instant::now();
        loop {
            let left: Vec<&String> = namespaces
                .iter()
                .filter(|n| !matches!(self.runtime.block_on(api.get_opt(n)), Ok(None)))
                .collect();
            if left.is_empty() {
                say(format!(
                    "all namespaces gone after {:.0} s",
                    start.elapsed().as_secs_f64()
                ));
                break;
            }
            if start.elapsed() >= self.wait {
                say(format!(
                    "WARNING: {} namespaces still terminating after {} s (left to the namespace controller): {left:?}",
                    left.len(),
                    self.wait.as_secs()
                ));
                break;
            }
            if told.elapsed() >= Duration::from_secs(30) {
                say(format!("{} namespaces still terminating", left.len()));
                told = Instant::now();
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// Waits, up to `bound`, until the namespaces of earlier runs (label `carbonshift.dev/load`)
/// are gone: an earlier run's cleanup leaves the deletion of its thousands of objects to the
/// namespace controller, and on the same control plane that work would share the API server
/// with this run's figures. How many were still there when the wait ended.
async fn earlier_runs_gone(api: &Api<Namespace>, progress: &Progress, bound: Duration) -> usize {
    let start = Instant::now();
    let mut told = None::<Instant>;
    loop {
        let left = api
            .list_metadata(&ListParams::default().labels("carbonshift.dev/load=true"))
            .await
            .unwrap_or_else(|e| panic!("listing the namespaces of earlier load runs: {e}"))
            .items
            .len();
        if left == 0 {
            if told.is_some() {
                progress.say(format!(
                    "the namespaces of earlier runs are gone after {:.0} s",
                    start.elapsed().as_secs_f64()
                ));
            }
            return 0;
        }
        if start.elapsed() >= bound {
            progress.say(format!(
                "WARNING: {left} namespaces of earlier runs still being deleted after {} s; going on",
                bound.as_secs()
            ));
            return left;
        }
        if told.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            progress.say(format!(
                "waiting for {left} namespaces of earlier load runs to be deleted (the namespace controller)"
            ));
            told = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The timeline

struct RawMark {
    name: String,
    at: DateTime<Utc>,
    rss: f64,
    cpu: f64,
    sockets: usize,
}

struct Timeline {
    pid: u32,
    started: DateTime<Utc>,
    marks: Vec<RawMark>,
}

impl Timeline {
    fn mark(&mut self, progress: &Progress, name: impl Into<String>) -> f64 {
        let name = name.into();
        let (rss, _) = process::rss_mib(self.pid)
            .unwrap_or_else(|| panic!("cannot read /proc/{}/status", self.pid));
        let cpu = process::cpu_seconds(self.pid)
            .unwrap_or_else(|| panic!("cannot read /proc/{}/stat", self.pid));
        let sockets = process::sockets(self.pid).unwrap_or(0);
        progress.say(format!(
            "mark: {name}: operator RSS {rss:.1} MiB, CPU {cpu:.2} s, {sockets} sockets"
        ));
        self.marks.push(RawMark {
            name,
            at: Utc::now(),
            rss,
            cpu,
            sockets,
        });
        rss
    }

    fn peak(&self) -> f64 {
        process::rss_mib(self.pid).map_or(0.0, |(_, peak)| peak)
    }
}

// ---------------------------------------------------------------------------------------------
// The test

#[test]
#[ignore = "run with make load"]
fn operator_on_a_real_control_plane_with_n_deferrable_jobs() {
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut cleanup = Cleanup {
        runtime: runtime.handle().clone(),
        client: None,
        operator: None,
        forecast: None,
        binding: None,
        namespaces: Vec::new(),
        wait: settings.bound(120, 30),
    };
    runtime.block_on(scenario(&settings, &mut cleanup));
    drop(cleanup);
}

async fn scenario(settings: &Settings, cleanup: &mut Cleanup) {
    let progress = Progress {
        start: Instant::now(),
    };
    let n = settings.jobs;
    carbonshift::forecast::install_crypto_provider();
    let admin = Kubeconfig::read_from(&settings.kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", settings.kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(admin.clone(), &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", settings.kubeconfig.display()));
    progress.say(format!(
        "cluster {}; {n} Jobs over {} namespaces; audit log {}",
        config.cluster_url,
        settings.namespaces,
        settings.audit_log.display()
    ));
    let client = Client::try_from(config).expect("Kubernetes client");
    cleanup.client = Some(client.clone());
    let version = client
        .apiserver_version()
        .await
        .unwrap_or_else(|e| panic!("the API server does not answer /version: {e}"));
    let mut machine = machine(format!("kube-apiserver {}", version.git_version));
    let cp_pids = process::control_plane(
        &settings
            .audit_log
            .parent()
            .unwrap_or(Path::new("."))
            .join("pids"),
    );
    machine.controller_manager_limits = cp_pids
        .iter()
        .find(|(name, _)| name.contains("controller-manager"))
        .map(|(_, pid)| process::client_limits(*pid))
        .unwrap_or_default();

    let suffix = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let base = format!("carbonshift-load-{suffix}");
    let namespaces: Vec<String> = (0..settings.namespaces)
        .map(|i| format!("{base}-{i}"))
        .collect();
    let forecast_name = base.clone();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&base);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));

    // 1. CRDs, namespaces, the operator's identity.
    apply_crds(&client, &progress).await;
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let leftover = earlier_runs_gone(&ns_api, &progress, settings.bound(300, 300)).await;
    for name in std::iter::once(&base).chain(&namespaces) {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("carbonshift.dev/load".to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        ns_api
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        cleanup.namespaces.push(name.clone());
    }
    progress.say(format!(
        "namespaces {base} (operator identity) and {base}-0..{} created",
        settings.namespaces - 1
    ));
    let baseline_account = format!("{base}-baseline");
    let (operator_kubeconfig, operator_user) =
        cluster::identity(&client, &admin, &base, &base, &dir).await;
    let (baseline_kubeconfig, baseline_user) =
        cluster::identity(&client, &admin, &base, &baseline_account, &dir).await;
    cluster::bind_cluster_admin(&client, &base, &base, &[&base, &baseline_account]).await;
    cleanup.binding = Some(base.clone());
    let baseline_client = cluster::client_from(&baseline_kubeconfig).await;
    wait_for_access(&progress, &cluster::client_from(&operator_kubeconfig).await).await;
    wait_for_access(&progress, &baseline_client).await;
    progress.say(format!(
        "identities (ServiceAccounts bound to cluster-admin): operator {operator_user}, kubeconfig {}; baseline client {baseline_user}",
        operator_kubeconfig.display()
    ));

    // 2. The forecast and the operator.
    let audit_start = audit::Start::now(&settings.audit_log);
    let created_at = Utc::now();
    let lead = TimeDelta::from_std(settings.lead).expect("a representable lead");
    let window = DateTime::from_timestamp((created_at + lead).timestamp(), 0).expect("a time");
    let forecasts: Api<CarbonForecast> = Api::all(client.clone());
    let forecast = CarbonForecast::new(
        &forecast_name,
        CarbonForecastSpec {
            provider: ProviderSpec::Static(StaticPoints {
                points: cluster::forecast_points(created_at - TimeDelta::minutes(2), window),
                actuals: Vec::new(),
            }),
            credentials_secret_ref: None,
            refresh_interval: None,
            stale_after: None,
            base_url: None,
            capacity: None,
            placement: None,
        },
    );
    forecasts
        .create(&PostParams::default(), &forecast)
        .await
        .unwrap_or_else(|e| panic!("creating CarbonForecast {forecast_name}: {e}"));
    cleanup.forecast = Some(forecast_name.clone());
    progress.say(format!(
        "CarbonForecast {forecast_name}: {} g/kWh, clean ({}) from W = {} for 3 min ({} s ahead)",
        cluster::DIRTY,
        cluster::CLEAN,
        rfc3339(window),
        settings.lead.as_secs()
    ));

    let metrics_port = free_port();
    let args: Vec<String> = vec![
        "--no-webhook".to_string(),
        "--leader-election=false".to_string(),
        format!("--metrics-addr=127.0.0.1:{metrics_port}"),
        format!("--namespaces={}", namespaces.join(",")),
        format!("--operator-namespace={base}"),
        format!("--default-forecast={forecast_name}"),
        "--log-format=text".to_string(),
    ];
    let operator = Operator::start(&operator_kubeconfig, &args, dir.join("operator.log"));
    cleanup.operator = Some(operator.clone());
    let mut timeline = Timeline {
        pid: operator.pid,
        started: Utc::now(),
        marks: Vec::new(),
    };
    let cp_cpu_before: Vec<(String, u32, f64)> = cp_pids
        .iter()
        .filter_map(|(name, pid)| Some((name.clone(), *pid, process::cpu_seconds(*pid)?)))
        .collect();
    progress.say(format!(
        "started carbonshift run (pid {}) {}; log {}",
        operator.pid,
        args.join(" "),
        operator.log.display()
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    let readyz = format!("http://127.0.0.1:{metrics_port}/readyz");
    eventually(
        &progress,
        "the operator to be ready (/readyz)",
        Duration::from_secs(60),
        Duration::from_millis(100),
        Some(&operator),
        || async {
            match http.get(&readyz).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    let ready_at = Utc::now();
    progress.say("operator ready");
    eventually(
        &progress,
        &format!("CarbonForecast {forecast_name} to be Ready"),
        Duration::from_secs(60),
        Duration::from_millis(250),
        Some(&operator),
        || async {
            let f = forecasts
                .get(&forecast_name)
                .await
                .map_err(|e| e.to_string())?;
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
    tokio::time::sleep(IDLE_SETTLE).await;
    operator.assert_running();
    let rss_idle = timeline.mark(&progress, "idle (ready, forecast loaded)");

    // 3. N held Jobs, planned.
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let watch = track(&client, &namespaces, tracker.clone());
    // Long enough that the deadline rule (latest start − 5 min margin) never comes before W.
    let template = cluster::Template {
        forecast: forecast_name.clone(),
        max_delay: format!("{}m", settings.lead.as_secs().div_ceil(60) + 30),
        defaults: AnnotationDefaults {
            forecast: forecast_name.clone(),
            ..AnnotationDefaults::default()
        },
    };
    let job_keys: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                namespaces[i % namespaces.len()].clone(),
                format!("load-{i:05}"),
            )
        })
        .collect();
    let first_create = Utc::now();
    let create_start = Instant::now();
    tokio::time::timeout(
        settings.bound(120, 50),
        futures::stream::iter(job_keys.iter().cloned())
            .map(|(ns, name)| {
                let client = client.clone();
                let template = &template;
                async move {
                    let job = template.held(&ns, &name);
                    cluster::create_job(&Api::namespaced(client, &ns), &job).await;
                }
            })
            .buffer_unordered(settings.in_flight)
            .collect::<Vec<()>>(),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "creating {n} Jobs took longer than {:?}",
            settings.bound(120, 50)
        )
    });
    let create_s = create_start.elapsed().as_secs_f64();
    progress.say(format!(
        "{n} held Jobs created in {create_s:.1} s ({:.0}/s, {} in flight)",
        n as f64 / create_s,
        settings.in_flight
    ));
    timeline.mark(&progress, format!("all {} created", thousands(n)));

    let until_window = (window - Utc::now() - TimeDelta::seconds(1))
        .to_std()
        .unwrap_or_else(|_| {
            panic!(
                "the clean window W = {} has come before the Jobs were even created: raise CARBONSHIFT_LOAD_LEAD_SECONDS",
                rfc3339(window)
            )
        });
    eventually(
        &progress,
        &format!("all {n} CarbonWorkloads to be planned before W"),
        until_window,
        Duration::from_millis(100),
        Some(&operator),
        || async {
            let t = lock(&tracker);
            if t.planned >= n {
                Ok(())
            } else {
                Err(t.summary())
            }
        },
    )
    .await;
    let (last_planned, planned_at_window) = {
        let t = lock(&tracker);
        let at_window = t
            .workloads
            .values()
            .filter(|s| s.planned_start == Some(window))
            .count();
        (t.last_planned.expect("planned"), at_window)
    };
    let planned_s = (last_planned - first_create).as_seconds_f64();
    progress.say(format!(
        "all {n} planned {planned_s:.1} s after the first create ({planned_at_window} at W); {} s before W",
        (window - Utc::now()).num_seconds()
    ));
    let rss_planned = timeline.mark(&progress, format!("all {} planned", thousands(n)));

    // 4. Release at W, completion. Who uses the cores during the burst is read from /proc while
    // it lasts; the span itself is only known from the audit log.
    let mut sampled = cp_pids.clone();
    sampled.push((OPERATOR_PROCESS.to_string(), operator.pid));
    sampled.push((HARNESS_PROCESS.to_string(), std::process::id()));
    let burst_sampler = process::CpuSampler::start(sampled);
    let wait = (window - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    operator.assert_running();
    timeline.mark(&progress, "W (planned start)");
    eventually(
        &progress,
        &format!("all {n} CarbonWorkloads to record their release"),
        settings.bound(120, 100),
        Duration::from_millis(100),
        Some(&operator),
        || async {
            let t = lock(&tracker);
            if t.released >= n {
                Ok(())
            } else {
                Err(t.summary())
            }
        },
    )
    .await;
    progress.say(format!(
        "all {n} released ({:.1} s after W)",
        (Utc::now() - window).as_seconds_f64()
    ));
    let rss_released = timeline.mark(&progress, format!("all {} released", thousands(n)));
    // Every release patch was answered before its workload recorded the release.
    let burst_cpu = burst_sampler.stop();

    // A real Job runs before it finishes: wait until the Job controller has created every pod
    // (status.active) and the operator has recorded it (phase Running).
    eventually(
        &progress,
        &format!("all {n} CarbonWorkloads to be Running (the Job controller creates the pods)"),
        settings.bound(120, 300),
        Duration::from_millis(250),
        Some(&operator),
        || async {
            let t = lock(&tracker);
            if t.running >= n {
                Ok(())
            } else {
                Err(t.summary())
            }
        },
    )
    .await;
    timeline.mark(&progress, format!("all {} Running", thousands(n)));

    let conflicts = tokio::time::timeout(
        settings.bound(120, 100),
        futures::stream::iter(job_keys.iter().cloned())
            .map(|(ns, name)| {
                let api: Api<Job> = Api::namespaced(client.clone(), &ns);
                async move { cluster::complete_job_status(&api, &name).await }
            })
            .buffer_unordered(settings.in_flight)
            .fold(0usize, |sum, c| async move { sum + c }),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "writing {n} Complete statuses took longer than {:?}",
            settings.bound(120, 100)
        )
    });
    progress.say(format!(
        "{n} Job statuses written Complete ({conflicts} conflicts with the Job controller, retried)"
    ));
    timeline.mark(&progress, "Complete statuses written");
    eventually(
        &progress,
        &format!("all {n} CarbonWorkloads to be Succeeded"),
        settings.bound(120, 50),
        Duration::from_millis(100),
        Some(&operator),
        || async {
            let t = lock(&tracker);
            if t.succeeded >= n {
                Ok(())
            } else {
                Err(t.summary())
            }
        },
    )
    .await;
    timeline.mark(&progress, format!("all {} Succeeded", thousands(n)));
    tokio::time::sleep(FINISHED_SETTLE).await;
    operator.assert_running();
    let rss_finished = timeline.mark(
        &progress,
        format!("{} s after the last Succeeded", FINISHED_SETTLE.as_secs()),
    );
    let rss_peak = timeline.peak();
    let first_wave_end = Utc::now();
    let metrics = scrape_metrics(&http, metrics_port).await;
    let second_wave = if settings.waves >= 2 {
        let context = wave::Context {
            client: &client,
            progress: &progress,
            settings,
            namespaces: &namespaces,
            template: &template,
            forecast: &forecast_name,
            operator: &operator,
            first_peak_mib: rss_peak,
        };
        Some(wave::run(context).await)
    } else {
        None
    };
    let cp_cpu: Vec<(String, f64)> = cp_cpu_before
        .iter()
        .filter_map(|(name, pid, before)| {
            Some((name.clone(), process::cpu_seconds(*pid)? - before))
        })
        .collect();
    let stopped = operator.stop().unwrap_or_default();
    cleanup.operator = None;
    progress.say(format!("operator {stopped}"));
    watch.abort();
    let tracker = std::mem::take(&mut *lock(&tracker));
    let log_warnings = std::fs::read_to_string(&operator.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();

    // 5. The baseline; the requests of both from the audit log.
    let mut baseline = baseline(
        &client,
        &baseline_client,
        &progress,
        settings,
        &namespaces,
        &template,
        &cp_pids,
    )
    .await;
    let (mut by_user, unreadable, audit_files) =
        audit::read(&audit_start, &[&operator_user, &baseline_user]);
    progress.say(format!("audit log files read: {}", audit_files.join(", ")));
    // The figures are the first wave's; the second wave reports its own.
    let requests: Vec<_> = by_user
        .remove(&operator_user)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.received <= first_wave_end)
        .collect();
    let baseline_requests = by_user.remove(&baseline_user).unwrap_or_default();
    progress.say(format!(
        "audit log: {} requests by {operator_user}, {} by {baseline_user} ({unreadable} unreadable lines skipped)",
        requests.len(),
        baseline_requests.len()
    ));
    assert!(
        !requests.is_empty(),
        "the audit log {} has no request by {operator_user}: is it the log of this API server?",
        settings.audit_log.display()
    );
    baseline.throttled = baseline_requests.iter().filter(|r| r.throttled()).count();

    // 6. Figures.
    let load_namespaces: HashSet<&str> = namespaces.iter().map(String::as_str).collect();
    let keys: HashSet<String> = job_keys
        .iter()
        .map(|(ns, name)| format!("{ns}/{name}"))
        .collect();
    let figures = figures(Inputs {
        settings,
        machine,
        window,
        ready_at,
        create_s,
        planned_s,
        planned_at_window,
        rss: [rss_idle, rss_planned, rss_released, rss_finished, rss_peak],
        timeline: &timeline,
        tracker: &tracker,
        requests: &requests,
        load_namespaces: &load_namespaces,
        keys: &keys,
        baseline,
        metrics,
        cp_cpu,
        burst_cpu: &burst_cpu,
        conflicts,
        log_warnings,
        leftover,
        second_wave,
    });
    let markdown = report::render(&figures);
    println!("\n{markdown}");
    if let Some(parent) = settings.report.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    }
    std::fs::write(&settings.report, &markdown)
        .unwrap_or_else(|e| panic!("writing {}: {e}", settings.report.display()));
    let json_path = settings.report.with_extension("json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&figures).expect("figures JSON"),
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", json_path.display()));
    progress.say(format!(
        "report: {} and {}",
        settings.report.display(),
        json_path.display()
    ));
    if let Some(docs) = &settings.docs {
        let doc = std::fs::read_to_string(docs)
            .unwrap_or_else(|e| panic!("reading {}: {e}", docs.display()));
        let spliced = report::splice(&doc, &report::introduction(), n, &markdown);
        std::fs::write(docs, spliced).unwrap_or_else(|e| panic!("writing {}: {e}", docs.display()));
        progress.say(format!(
            "{}: section \"{}\", subsection N = {} replaced",
            docs.display(),
            report::SECTION,
            thousands(n)
        ));
    }
}

async fn apply_crds(client: &Client, progress: &Progress) {
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
            progress,
            &format!("CRD {name} to be Established"),
            Duration::from_secs(60),
            Duration::from_millis(250),
            None,
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
    }
    progress.say("CRDs applied and Established");
}

/// Waits (up to 30 s) until `client` may list CarbonWorkloads: RBAC takes a moment to see a new
/// binding.
async fn wait_for_access(progress: &Progress, client: &Client) {
    let api: Api<CarbonWorkload> = Api::all(client.clone());
    eventually(
        progress,
        "a new identity to be allowed to list CarbonWorkloads",
        Duration::from_secs(30),
        Duration::from_millis(250),
        None,
        || async {
            api.list(&ListParams::default().limit(1))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
}

/// Selected series of the operator's `/metrics`.
async fn scrape_metrics(http: &reqwest::Client, port: u16) -> Vec<(String, f64)> {
    const WANTED: [&str; 5] = [
        "carbonshift_releases_total",
        "carbonshift_reconcile_duration_seconds_count",
        "carbonshift_reconcile_errors_total",
        "carbonshift_release_lateness_seconds_sum",
        "carbonshift_release_lateness_seconds_count",
    ];
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET /metrics body: {e}"));
    text.lines()
        .filter(|l| !l.starts_with('#') && WANTED.iter().any(|w| l.starts_with(w)))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .filter(|(_, v): &(String, f64)| *v != 0.0)
        .collect()
}

/// N fresh held Jobs (`spec.managedBy` set, so that the Job controller never writes them)
/// released by a plain client with the guarded patch, `baseline_in_flight` at a time, over
/// connections it opened before the clock started.
async fn baseline(
    client: &Client,
    patcher: &Client,
    progress: &Progress,
    settings: &Settings,
    namespaces: &[String],
    template: &cluster::Template,
    control_plane: &[(String, u32)],
) -> Baseline {
    let n = settings.jobs;
    let in_flight = settings.baseline_in_flight;
    tokio::time::timeout(
        settings.bound(120, 50),
        futures::stream::iter(0..n)
            .map(|i| {
                let ns = namespaces[i % namespaces.len()].clone();
                let api: Api<Job> = Api::namespaced(client.clone(), &ns);
                async move {
                    let mut job = template.held(&ns, &format!("base-{i:05}"));
                    job.metadata
                        .labels
                        .get_or_insert_default()
                        .insert("carbonshift.dev/load".to_string(), "baseline".to_string());
                    job.spec.get_or_insert_default().managed_by =
                        Some(cluster::BASELINE_MANAGER.to_string());
                    cluster::create_job(&api, &job).await;
                }
            })
            .buffer_unordered(settings.in_flight)
            .collect::<Vec<()>>(),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "creating {n} baseline Jobs took longer than {:?}",
            settings.bound(120, 50)
        )
    });
    let mut jobs = Vec::with_capacity(n);
    for ns in namespaces {
        let api: Api<Job> = Api::namespaced(client.clone(), ns);
        let list = api
            .list(&ListParams::default().labels("carbonshift.dev/load=baseline"))
            .await
            .unwrap_or_else(|e| panic!("listing the baseline Jobs of {ns}: {e}"));
        jobs.extend(list.items);
    }
    assert_eq!(jobs.len(), n, "baseline Jobs listed");
    progress.say(format!(
        "baseline: {n} held Jobs with spec.managedBy {} created; releasing them, {in_flight} in flight",
        cluster::BASELINE_MANAGER
    ));
    // Its connections open before the clock starts, as the operator's releaser opens them ahead
    // of a burst: the floor is the API server's, not the client's TLS handshakes.
    let opened = carbonshift::controller::workloads::releaser::warm_up(patcher, in_flight).await;
    assert_eq!(opened, in_flight, "the baseline's connections opened");
    let mut sampled = control_plane.to_vec();
    sampled.push((HARNESS_PROCESS.to_string(), std::process::id()));
    let sampler = process::CpuSampler::start(sampled);
    let started = Utc::now();
    let start = Instant::now();
    let retries = tokio::time::timeout(
        settings.bound(120, 50),
        futures::stream::iter(jobs)
            .map(|job| {
                let ns = job.metadata.namespace.clone().expect("namespace");
                let name = job.metadata.name.clone().expect("name");
                let api: Api<Job> = Api::namespaced(patcher.clone(), &ns);
                async move { release_until_done(&api, &name, job).await }
            })
            .buffer_unordered(in_flight)
            .try_fold(0usize, |sum, r| async move { Ok::<_, String>(sum + r) }),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the baseline release took longer than {:?}",
            settings.bound(120, 50)
        )
    })
    .unwrap_or_else(|e| panic!("baseline release: {e}"));
    let seconds = start.elapsed().as_secs_f64();
    let ended = Utc::now();
    let cpu = sampler.stop().cores(started, ended);
    progress.say(format!(
        "baseline: {n} released in {seconds:.2} s ({:.0}/s, {retries} retried)",
        n as f64 / seconds
    ));
    Baseline {
        in_flight,
        seconds,
        per_second: n as f64 / seconds,
        retries,
        throttled: 0,
        cpu,
    }
}

/// Releases `job` with the guarded patch; on a refusal because it changed, reads it and tries
/// again (at most 10 times). Returns the number of retries.
async fn release_until_done(api: &Api<Job>, name: &str, mut job: Job) -> Result<usize, String> {
    let adapter = &carbonshift::workload::job::BatchJob;
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let dynamic: Api<kube::core::DynamicObject> = Api::namespaced_with(
        api.clone().into_client(),
        &namespace,
        carbonshift::workload::Adapter::resource(adapter),
    );
    let mut retries = 0;
    loop {
        let object = carbonshift::workload::job::dynamic(&job)
            .map_err(|e| format!("Job {name} as a dynamic object: {e}"))?;
        match release::release(
            &dynamic,
            adapter,
            name,
            &Guard::of(&object),
            Utc::now(),
            "Released",
            &[],
        )
        .await
        {
            Ok(release::Outcome::Applied(_)) => return Ok(retries),
            Ok(release::Outcome::Changed(message)) if retries < 10 => {
                retries += 1;
                job = api
                    .get(name)
                    .await
                    .map_err(|e| format!("reading Job {name} again after \"{message}\": {e}"))?;
            }
            Err(e) if cluster::transient(&e) && retries < 10 => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(release::Outcome::Changed(message)) => {
                return Err(format!("Job {name} refused 10 times: {message}"));
            }
            Ok(release::Outcome::Gone) => return Err(format!("Job {name} is gone")),
            Err(e) => return Err(format!("releasing Job {name}: {e}")),
        }
    }
}

fn machine(apiserver: String) -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, v)| v.trim().to_string());
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map_or("unknown OS".to_string(), |v| {
            v.trim_matches('"').to_string()
        });
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "rustc (unknown version)".to_string());
    let load_before = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib,
        os,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        rustc,
        apiserver,
        controller_manager_limits: String::new(),
        load_before,
    }
}

/// Everything [`figures`] combines.
struct Inputs<'a> {
    settings: &'a Settings,
    machine: Machine,
    window: DateTime<Utc>,
    ready_at: DateTime<Utc>,
    create_s: f64,
    planned_s: f64,
    planned_at_window: usize,
    /// idle, planned, released, finished, peak.
    rss: [f64; 5],
    timeline: &'a Timeline,
    tracker: &'a Tracker,
    requests: &'a [audit::Request],
    load_namespaces: &'a HashSet<&'a str>,
    keys: &'a HashSet<String>,
    baseline: Baseline,
    metrics: Vec<(String, f64)>,
    cp_cpu: Vec<(String, f64)>,
    /// The CPU of the control plane, the operator and the harness from just before W until
    /// every workload recorded its release.
    burst_cpu: &'a process::CpuTrace,
    conflicts: usize,
    log_warnings: usize,
    /// Namespaces of an earlier run still being deleted when this one started.
    leftover: usize,
    second_wave: Option<report::SecondWave>,
}

const LIFECYCLE_RESOURCES: [&str; 4] = [
    "jobs",
    "jobs/status",
    "carbonworkloads",
    "carbonworkloads/status",
];

fn figures(i: Inputs<'_>) -> Figures {
    let n = i.settings.jobs;
    let key_of = |r: &audit::Request| -> Option<String> {
        let ns = r.namespace.as_deref()?;
        let key = format!("{ns}/{}", r.name.as_deref()?);
        i.keys.contains(&key).then_some(key)
    };
    let in_load = |r: &audit::Request| {
        r.namespace
            .as_deref()
            .is_some_and(|ns| i.load_namespaces.contains(ns))
    };
    let is_lifecycle_write =
        |r: &audit::Request| r.is_write() && LIFECYCLE_RESOURCES.contains(&r.resource.as_str());

    // Writes per lifecycle.
    let mut per_job: HashMap<String, usize> = i.keys.iter().map(|k| (k.clone(), 0)).collect();
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut attempts = 0;
    let mut release_done: HashMap<String, DateTime<Utc>> = HashMap::new();
    for r in i.requests.iter().filter(|r| is_lifecycle_write(r)) {
        let Some(key) = key_of(r) else { continue };
        attempts += 1;
        let kind = by_kind
            .entry(format!("{} {}", r.verb, r.resource))
            .or_default();
        if r.failed() {
            kind.1 += 1;
            continue;
        }
        kind.0 += 1;
        *per_job.entry(key.clone()).or_default() += 1;
        if r.verb == "patch" && r.resource == "jobs" {
            release_done.entry(key).or_insert(r.completed);
        }
    }
    let counts: Vec<usize> = per_job.values().copied().collect();
    let mut distribution = BTreeMap::new();
    for c in &counts {
        *distribution.entry(*c).or_insert(0) += 1;
    }
    let events = i
        .requests
        .iter()
        .filter(|r| r.is_write() && r.resource == "events" && in_load(r))
        .count();
    let reads = i
        .requests
        .iter()
        .filter(|r| r.verb == "get" && r.resource == "carbonworkloads" && in_load(r))
        .count();
    let writes = Writes {
        mean: counts.iter().sum::<usize>() as f64 / n as f64,
        attempts_mean: attempts as f64 / n as f64,
        distribution,
        by_kind: by_kind
            .into_iter()
            .map(|(kind, (ok, refused))| (kind, ok, refused))
            .collect(),
        events_per_lifecycle: events as f64 / n as f64,
        reads_per_lifecycle: reads as f64 / n as f64,
    };

    // Lateness.
    let mut api_lateness = Vec::new();
    let mut decision_lateness = Vec::new();
    let mut missing = 0;
    for key in i.keys {
        let seen = i.tracker.workloads.get(key);
        let Some(planned) = seen.and_then(|s| s.planned_start) else {
            missing += 1;
            continue;
        };
        match release_done.get(key) {
            Some(done) => api_lateness.push((*done - planned).as_seconds_f64()),
            None => missing += 1,
        }
        if let Some(released) = seen.and_then(|s| s.released_at) {
            decision_lateness.push((released - planned).as_seconds_f64());
        }
    }
    let early_releases = api_lateness.iter().filter(|l| **l < 0.0).count();
    let last_release = release_done.values().max().copied();
    let release_span_s = last_release.map_or(0.0, |t| (t - i.window).as_seconds_f64());
    let burst_cpu = last_release.map_or_else(Vec::new, |last| i.burst_cpu.cores(i.window, last));

    // Requests by verb and resource.
    let mut table: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for r in i.requests {
        let entry = table
            .entry((r.verb.clone(), r.resource.clone()))
            .or_default();
        entry.0 += 1;
        if r.failed() {
            entry.1 += 1;
        }
    }
    let mut requests: Vec<RequestCount> = table
        .into_iter()
        .map(|((verb, resource), (count, failed))| RequestCount {
            verb,
            resource,
            count,
            failed,
        })
        .collect();
    requests.sort_by(|a, b| b.count.cmp(&a.count).then(a.resource.cmp(&b.resource)));
    let user_agents: Vec<String> = i
        .requests
        .iter()
        .map(|r| r.user_agent.clone().unwrap_or_else(|| "(none)".to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();

    // The timeline, with the requests received since the previous mark.
    let mut marks = Vec::new();
    let mut from = i.timeline.started - TimeDelta::seconds(5);
    for m in &i.timeline.marks {
        let window: Vec<&audit::Request> = i
            .requests
            .iter()
            .filter(|r| r.received >= from && r.received < m.at)
            .collect();
        marks.push(Mark {
            name: m.name.clone(),
            at_s: (m.at - i.timeline.started).as_seconds_f64(),
            rss_mib: m.rss,
            cpu_s: m.cpu,
            requests: window.len(),
            writes: window
                .iter()
                .filter(|r| is_lifecycle_write(r) && !r.failed() && key_of(r).is_some())
                .count(),
            throttled: window.iter().filter(|r| r.throttled()).count(),
            sockets: m.sockets,
        });
        from = m.at;
    }
    let after: Vec<&audit::Request> = i.requests.iter().filter(|r| r.received >= from).collect();
    if !after.is_empty() {
        marks.push(Mark {
            name: "until the operator stopped".to_string(),
            at_s: f64::NAN,
            rss_mib: f64::NAN,
            cpu_s: f64::NAN,
            requests: after.len(),
            writes: after
                .iter()
                .filter(|r| is_lifecycle_write(r) && !r.failed() && key_of(r).is_some())
                .count(),
            throttled: after.iter().filter(|r| r.throttled()).count(),
            sockets: 0,
        });
    }

    let mut notes = Vec::new();
    if missing > 0 {
        notes.push(format!(
            "**{missing} Jobs have no successful release patch by the operator in the audit log** (or no plan): the lateness figures cover {} Jobs.",
            api_lateness.len()
        ));
    }
    if i.leftover > 0 {
        notes.push(format!(
            "**{} namespaces of an earlier run were still being deleted when this run started**: the namespace controller's deletions shared the control plane with these figures.",
            i.leftover
        ));
    }
    if i.tracker.watch_errors > 0 {
        notes.push(format!(
            "The harness's watch saw {} errors (last: {}); it recovered by re-listing.",
            i.tracker.watch_errors,
            i.tracker.last_error.as_deref().unwrap_or_default()
        ));
    }
    let [rss_idle, rss_planned, rss_released, rss_finished, rss_peak] = i.rss;
    Figures {
        jobs: n,
        namespaces: i.settings.namespaces,
        date: Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: i.machine,
        lead_s: (i.window - i.ready_at).as_seconds_f64(),
        create_in_flight: i.settings.in_flight,
        rss_idle_mib: rss_idle,
        rss_planned_mib: rss_planned,
        rss_released_mib: rss_released,
        rss_finished_mib: rss_finished,
        rss_peak_mib: rss_peak,
        cpu_total_s: i.timeline.marks.last().map_or(0.0, |m| m.cpu),
        control_plane_cpu_s: i.cp_cpu,
        create_s: i.create_s,
        planned_s: i.planned_s,
        planned_at_window: i.planned_at_window,
        lateness_api: percentiles(&api_lateness),
        lateness_decision: percentiles(&decision_lateness),
        early_releases,
        release_span_s,
        burst_cpu,
        release_per_second: n as f64 / release_span_s.max(1e-9),
        baseline: i.baseline,
        writes,
        requests_total: i.requests.len(),
        throttled: i.requests.iter().filter(|r| r.throttled()).count(),
        requests,
        user_agents,
        marks,
        metrics: i.metrics,
        completion_conflicts: i.conflicts,
        operator_log_warnings: i.log_warnings,
        second_wave: i.second_wave,
        notes,
    }
}
