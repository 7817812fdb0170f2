//! The figures of one load run, their markdown rendering, and the splice of that rendering into
//! `docs/benchmarks.md` (pure functions; unit-tested offline).
//!
//! The section `## Operator on a real control plane (make load)` holds a generated introduction,
//! one `### N = …` subsection per job count (a new run replaces the subsection of its own N and
//! keeps the others, sorted by N) and any other `###` subsections verbatim (the hand-written
//! analysis). The rest of the file is never touched.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The heading of the section in `docs/benchmarks.md`.
pub const SECTION: &str = "## Operator on a real control plane (make load)";

/// The prefix of a run's subsection heading (`### N = 1,000`).
const RUN_PREFIX: &str = "### N = ";

/// Targets of the issue.
pub const TARGET_RSS_IDLE_MIB: f64 = 20.0;
pub const TARGET_RSS_AT_10K_MIB: f64 = 200.0;
pub const TARGET_WRITES_PER_LIFECYCLE: f64 = 5.0;
pub const TARGET_LATENESS_P99_S: f64 = 2.0;
pub const TARGET_PLANNED_S: f64 = 60.0;

/// p50, p99 and max of a sample (nearest rank), in seconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub min: f64,
}

/// Nearest-rank percentiles of `values` (any order). Empty gives zeros with `count: 0`.
pub fn percentiles(values: &[f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        let r = (q * sorted.len() as f64).ceil() as usize;
        sorted[r.clamp(1, sorted.len()) - 1]
    };
    Percentiles {
        count: sorted.len(),
        p50: rank(0.50),
        p99: rank(0.99),
        max: sorted[sorted.len() - 1],
        min: sorted[0],
    }
}

/// Where the run happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub rustc: String,
    pub apiserver: String,
    /// kube-controller-manager's client rate limits (its Job controller answers the releases),
    /// e.g. `--kube-api-qps=200 --kube-api-burst=300`; empty: its defaults (20 and 30).
    pub controller_manager_limits: String,
    /// `/proc/loadavg` (1, 5, 15 min) before the run.
    pub load_before: String,
}

/// One point of the run's timeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Mark {
    pub name: String,
    /// Seconds since the operator was started.
    pub at_s: f64,
    pub rss_mib: f64,
    /// Operator CPU seconds (user + system) since its start.
    pub cpu_s: f64,
    /// API requests of the operator received since the previous mark (audit log).
    pub requests: usize,
    /// ... of which writes to Jobs and CarbonWorkloads (status included).
    pub writes: usize,
    /// ... answered 429 (API Priority and Fairness).
    pub throttled: usize,
    /// Open sockets of the operator (connections to the API server).
    pub sockets: usize,
}

/// One line of the request table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestCount {
    pub verb: String,
    pub resource: String,
    pub count: usize,
    /// Responses with a code of 400 or more.
    pub failed: usize,
}

/// The lifecycle writes (Job, CarbonWorkload, CarbonWorkload status) and Events.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Writes {
    /// Successful writes, mean over the N load Jobs.
    pub mean: f64,
    /// Write requests including those the API server refused (429...), mean over the N Jobs.
    pub attempts_mean: f64,
    /// Number of Jobs per successful write count.
    pub distribution: BTreeMap<usize, usize>,
    /// (verb resource, successful, refused) over all N Jobs.
    pub by_kind: Vec<(String, usize, usize)>,
    /// Event writes (create or patch of events) in the load namespaces, per lifecycle.
    pub events_per_lifecycle: f64,
    /// Reads (get) of the Job's CarbonWorkload per lifecycle.
    pub reads_per_lifecycle: f64,
}

/// The plain parallel client's release of N fresh held Jobs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Baseline {
    pub in_flight: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// Patches refused because the Job changed (read again and retried).
    pub retries: usize,
    /// Patches answered 429 (retried by the kube client), from the audit log.
    pub throttled: usize,
    /// Cores each process used during the timed release (control plane and harness).
    pub cpu: Vec<(String, f64)>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub jobs: usize,
    pub namespaces: usize,
    pub date: String,
    pub machine: Machine,
    /// Seconds from the operator's readiness to the clean minute.
    pub lead_s: f64,
    pub create_in_flight: usize,
    pub rss_idle_mib: f64,
    pub rss_planned_mib: f64,
    pub rss_released_mib: f64,
    pub rss_finished_mib: f64,
    pub rss_peak_mib: f64,
    pub cpu_total_s: f64,
    /// CPU seconds of the control-plane processes over the run (name, seconds).
    pub control_plane_cpu_s: Vec<(String, f64)>,
    /// First create sent → last create answered.
    pub create_s: f64,
    /// First create sent → the last workload seen with a plan.
    pub planned_s: f64,
    /// Workloads planned exactly at the clean minute.
    pub planned_at_window: usize,
    /// Release lateness: the API server's completion of the release patch (audit log) minus
    /// `plannedStart`.
    pub lateness_api: Percentiles,
    /// `status.releasedAt` (the operator's decision time) minus `plannedStart`.
    pub lateness_decision: Percentiles,
    /// Release patches completed before the planned start (must be 0).
    pub early_releases: usize,
    /// Clean minute → last release patch completed.
    pub release_span_s: f64,
    /// Cores each process used from `plannedStart` to the last release patch done.
    pub burst_cpu: Vec<(String, f64)>,
    pub release_per_second: f64,
    pub baseline: Baseline,
    pub writes: Writes,
    pub requests: Vec<RequestCount>,
    pub requests_total: usize,
    /// Operator requests answered 429 (API Priority and Fairness).
    pub throttled: usize,
    pub user_agents: Vec<String>,
    pub marks: Vec<Mark>,
    /// Selected lines of the operator's `/metrics` at the end.
    pub metrics: Vec<(String, f64)>,
    /// Completion status writes refused with a conflict (the Job controller wrote meanwhile).
    pub completion_conflicts: usize,
    /// Warnings and errors in the operator's log.
    pub operator_log_warnings: usize,
    pub notes: Vec<String>,
    /// The second wave, when one was run.
    pub second_wave: Option<SecondWave>,
}

/// The second wave's figures (`CARBONSHIFT_LOAD_WAVES=2`, wave.rs).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecondWave {
    /// RSS once the first wave's Jobs and workloads were deleted.
    pub rss_emptied_mib: f64,
    /// RSS with the second wave planned.
    pub rss_planned_mib: f64,
    /// RSS after the second wave finished.
    pub rss_finished_mib: f64,
    /// Peak RSS (VmHWM) at the end of the first wave.
    pub first_peak_mib: f64,
    /// Peak RSS (VmHWM) at the end of the second wave.
    pub second_peak_mib: f64,
    /// `status.releasedAt` − `plannedStart` in the second wave.
    pub lateness_decision: Percentiles,
    /// From the start of the deletions to the end of the wave.
    pub duration_s: f64,
    /// Its own timeline: name, seconds since the wave started, RSS MiB, CPU s.
    pub marks: Vec<(String, f64, f64, f64)>,
}

/// The largest rise of the peak RSS a second wave may cause.
pub const TARGET_SECOND_WAVE_RISE: f64 = 0.10;

/// `1234567` → `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "met" when `value <= target`, else how far over.
fn verdict(value: f64, target: f64, unit: &str) -> String {
    if value <= target {
        "met".to_string()
    } else {
        format!(
            "**missed** by {:.2} {unit} ({:.1}× the target)",
            value - target,
            value / target
        )
    }
}

fn ms(seconds: f64) -> String {
    if seconds.abs() < 10.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.1} s")
    }
}

fn lateness(p: &Percentiles) -> String {
    format!("{} / {} / {}", ms(p.p50), ms(p.p99), ms(p.max))
}

/// The generated introduction of the section (method, fixed text).
pub fn introduction() -> String {
    "`make load` (`scripts/load.sh [N]`, harness [`tests/load/`](../tests/load/main.rs)) runs the \
release build of `carbonshift run` against the real control plane of `../shared/tools/k8s` \
(etcd, kube-apiserver, kube-controller-manager with the Job controller, kube-scheduler; no \
kubelet) and measures it with N deferrable Jobs. Not part of `make test`.

Method, per run:

- The operator runs with `--no-webhook --leader-election=false`, `--namespaces` = the 10 load \
namespaces, `RUST_LOG=warn`, and a ServiceAccount token of its own (bound to `cluster-admin`), so \
that the API server's audit log (level Metadata) tells its requests apart from everyone else's.
- One cluster-scoped `static` CarbonForecast: 400 g/kWh on a one-minute grid, with a clean window \
(50 g/kWh, three minutes) starting at `W`, far enough ahead that all N Jobs are created and planned \
before it. Every Job (`duration: 1m`, `max-delay: 30m`) therefore plans at exactly `W`.
- The harness creates the N Jobs (round robin over the namespaces) as the admission webhook \
would store them: it runs the library's own `webhook::mutate` on each Job and applies the patch \
(`spec.suspend: true`, `carbonshift.dev/held`, `carbonshift.dev/submitted-at`).
- It follows the CarbonWorkloads with a watch (not a 1 s list: listing 10,000 objects every second \
would load the API server being measured) and records when each is first seen planned, released \
and Succeeded.
- After the release the real Job controller creates each Job's pod (it stays Pending: no \
kubelet) and reports it active; the harness waits until every CarbonWorkload is `Running`. \
Since nothing runs the pods, it then writes each Job's status as the Job controller does on \
success (`SuccessCriteriaMet` and `Complete`, `startTime`, `completionTime`, `succeeded: 1`, \
no active pods) and waits for every CarbonWorkload to be `Succeeded`. So every Job goes through \
the whole lifecycle `Pending → Deferred → Released → Running → Succeeded`.
- RSS is `VmRSS` of `/proc/<pid>/status` (peak: `VmHWM`), CPU is `utime + stime` of \
`/proc/<pid>/stat`. Requests are the operator user's entries in the audit log, one per request \
(`auditID`). A lifecycle's writes are the operator's create/update/patch/delete requests on the \
Job, its CarbonWorkload and the CarbonWorkload's status; Events are counted apart. Release \
lateness is the audit log's completion time of the release patch minus `plannedStart` (and, for \
comparison, `status.releasedAt`, the operator's decision time, minus `plannedStart`).
- Baseline: with the operator stopped, N fresh held Jobs (the same markers, plus \
`spec.managedBy` so that the Job controller leaves them alone) released by a plain client \
sending the same guarded JSON patch (`controller::release::release`) with a fixed number of \
requests in flight, over as many connections opened before its clock starts (the operator \
opens its connections ahead of a burst too), as a ServiceAccount of its own: API Priority and Fairness puts it in the \
same flow schema as the operator (`service-accounts`, priority level `workload-low`, one flow \
per user). The operator's release throughput is given as a ratio to it.
- The harness itself (creating Jobs, writing their status) uses the admin identity, which API \
Priority and Fairness exempts; the API server, etcd, the controller manager, the harness and \
the operator share the machine's 2 cores (the CPU of each is given).
- With `WAVES=2` (`CARBONSHIFT_LOAD_WAVES=2`), after the first wave finished the harness deletes its Jobs (their CarbonWorkloads go by garbage collection), moves the forecast's clean window ahead and sends N fresh Jobs through the same lifecycle with the same operator process; the peak RSS after it is compared with the peak after the first (a leak shows as a higher peak). The other figures are the first wave's (requests received after it are left out).
"
    .to_string()
}

/// The markdown subsection of one run (`### N = …`).
pub fn render(f: &Figures) -> String {
    let n = thousands(f.jobs);
    let mut s = String::new();
    let m = &f.machine;
    let _ = writeln!(s, "{RUN_PREFIX}{n}\n");
    let _ = writeln!(
        s,
        "{} · {} ({} cores), {:.0} GiB, {}, kernel {}, {}; {}, kube-controller-manager {} · load \
average before the run {} · {} namespaces · clean window {:.0} s after the operator was ready.\n",
        f.date,
        m.cpu,
        m.cores,
        m.memory_gib,
        m.os,
        m.kernel,
        m.rustc,
        m.apiserver,
        if m.controller_manager_limits.is_empty() {
            "with its default client limits (--kube-api-qps=20 --kube-api-burst=30)".to_string()
        } else {
            m.controller_manager_limits.clone()
        },
        m.load_before,
        f.namespaces,
        f.lead_s
    );
    let _ = writeln!(s, "| Figure | Value | Target | |\n|---|---|---|---|");
    let mut row = |figure: &str, value: String, target: &str, verdict: String| {
        let _ = writeln!(s, "| {figure} | {value} | {target} | {verdict} |");
    };
    row(
        "Operator RSS idle (ready, forecast loaded, no Jobs)",
        format!("{:.1} MiB", f.rss_idle_mib),
        "≤ 20 MiB",
        verdict(f.rss_idle_mib, TARGET_RSS_IDLE_MIB, "MiB"),
    );
    let at_n_target = if f.jobs >= 10_000 {
        "≤ 200 MiB"
    } else {
        "≤ 200 MiB at 10,000"
    };
    row(
        &format!("RSS with all {n} planned"),
        format!("{:.1} MiB", f.rss_planned_mib),
        at_n_target,
        verdict(f.rss_planned_mib, TARGET_RSS_AT_10K_MIB, "MiB"),
    );
    row(
        "RSS peak over the run (VmHWM)",
        format!("{:.1} MiB", f.rss_peak_mib),
        at_n_target,
        verdict(f.rss_peak_mib, TARGET_RSS_AT_10K_MIB, "MiB"),
    );
    row(
        "RSS after all released",
        format!("{:.1} MiB", f.rss_released_mib),
        "–",
        String::new(),
    );
    row(
        "RSS after all finished (Succeeded)",
        format!("{:.1} MiB", f.rss_finished_mib),
        "–",
        String::new(),
    );
    row(
        "Operator CPU, whole run (user + system)",
        format!("{:.1} s", f.cpu_total_s),
        "–",
        String::new(),
    );
    row(
        &format!(
            "Job creation by the harness ({} in flight)",
            f.create_in_flight
        ),
        format!(
            "{:.1} s ({:.0} Jobs/s)",
            f.create_s,
            f.jobs as f64 / f.create_s.max(1e-9)
        ),
        "–",
        String::new(),
    );
    row(
        &format!("All {n} planned, from the first create"),
        format!(
            "{:.1} s ({} of {n} at the clean minute)",
            f.planned_s,
            thousands(f.planned_at_window)
        ),
        "≤ 60 s",
        verdict(f.planned_s, TARGET_PLANNED_S, "s"),
    );
    let dist = f
        .writes
        .distribution
        .iter()
        .map(|(w, jobs)| format!("{} with {w}", thousands(*jobs)))
        .collect::<Vec<_>>()
        .join(", ");
    row(
        "Writes per lifecycle (Job + CarbonWorkload + its status), successful",
        format!(
            "{:.2} mean ({dist}); {:.2} requests with those refused (429)",
            f.writes.mean, f.writes.attempts_mean
        ),
        "≤ 5",
        verdict(f.writes.mean, TARGET_WRITES_PER_LIFECYCLE, "writes"),
    );
    row(
        "Events per lifecycle (create/patch of events)",
        format!("{:.2}", f.writes.events_per_lifecycle),
        "aside",
        String::new(),
    );
    row(
        "Release lateness p50 / p99 / max (release patch done − plannedStart)",
        lateness(&f.lateness_api),
        "p99 ≤ 2 s",
        verdict(f.lateness_api.p99, TARGET_LATENESS_P99_S, "s"),
    );
    row(
        "… floor set by the API server: the baseline's time for N release patches",
        ms(f.baseline.seconds),
        "–",
        String::new(),
    );
    row(
        "… by the operator's decision time (status.releasedAt − plannedStart)",
        lateness(&f.lateness_decision),
        "–",
        String::new(),
    );
    row(
        "Released before plannedStart",
        thousands(f.early_releases),
        "0",
        if f.early_releases == 0 {
            "met".to_string()
        } else {
            "**missed**".to_string()
        },
    );
    row(
        "Operator release throughput (N / (last release − plannedStart))",
        format!(
            "{:.0} Jobs/s ({} in {:.1} s)",
            f.release_per_second, n, f.release_span_s
        ),
        "–",
        String::new(),
    );
    row(
        &format!(
            "Baseline: plain client, same guarded patch, {} in flight",
            f.baseline.in_flight
        ),
        format!(
            "{:.0} Jobs/s ({n} in {:.1} s; {} refused as changed, {} answered 429)",
            f.baseline.per_second,
            f.baseline.seconds,
            f.baseline.retries,
            thousands(f.baseline.throttled)
        ),
        "–",
        String::new(),
    );
    row(
        "Operator / baseline release throughput",
        format!(
            "{:.2}",
            f.release_per_second / f.baseline.per_second.max(1e-9)
        ),
        "–",
        String::new(),
    );
    if let Some(w) = &f.second_wave {
        let rise = w.second_peak_mib / w.first_peak_mib.max(1e-9) - 1.0;
        row(
            &format!("Second wave of {n} (first deleted, same process): peak RSS after it"),
            format!(
                "{:.1} MiB against {:.1} MiB after the first ({:+.1} %)",
                w.second_peak_mib,
                w.first_peak_mib,
                rise * 100.0
            ),
            "≤ +10 %",
            if rise <= TARGET_SECOND_WAVE_RISE {
                "met".to_string()
            } else {
                format!(
                    "**missed** by {:.1} points",
                    (rise - TARGET_SECOND_WAVE_RISE) * 100.0
                )
            },
        );
        row(
            "… RSS in the second wave: first wave deleted / planned / finished",
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                w.rss_emptied_mib, w.rss_planned_mib, w.rss_finished_mib
            ),
            "–",
            String::new(),
        );
        row(
            "… second wave's release decision time p50 / p99 / max (status.releasedAt − plannedStart)",
            format!(
                "{} / {} / {}",
                ms(w.lateness_decision.p50),
                ms(w.lateness_decision.p99),
                ms(w.lateness_decision.max)
            ),
            "–",
            String::new(),
        );
    }
    let _ = writeln!(s);
    burst_cpu(&mut s, f);

    let _ = writeln!(
        s,
        "Timeline (operator process; requests and lifecycle writes from the audit log, received \
since the previous line):\n"
    );
    let _ = writeln!(
        s,
        "| Point | t (s) | RSS (MiB) | CPU (s) | sockets | requests | writes | 429 |\n|---|---|---|---|---|---|---|---|"
    );
    let number = |value: f64, decimals: usize| {
        if value.is_finite() {
            format!("{value:.decimals$}")
        } else {
            "–".to_string()
        }
    };
    for mark in &f.marks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            mark.name,
            number(mark.at_s, 1),
            number(mark.rss_mib, 1),
            number(mark.cpu_s, 2),
            if mark.at_s.is_finite() {
                thousands(mark.sockets)
            } else {
                "–".to_string()
            },
            thousands(mark.requests),
            thousands(mark.writes),
            thousands(mark.throttled)
        );
    }
    let _ = writeln!(s);

    let per = |count: usize| count as f64 / f.jobs.max(1) as f64;
    let _ = writeln!(s, "Lifecycle writes by kind (over all {n} Jobs):\n");
    let _ = writeln!(
        s,
        "| Write | Successful | Per lifecycle | Refused (429) |\n|---|---|---|---|"
    );
    for (kind, ok, refused) in &f.writes.by_kind {
        let _ = writeln!(
            s,
            "| {kind} | {} | {:.2} | {} |",
            thousands(*ok),
            per(*ok),
            thousands(*refused)
        );
    }
    let _ = writeln!(
        s,
        "\nReads of the CarbonWorkload (get) per lifecycle: {:.2}.\n",
        f.writes.reads_per_lifecycle
    );

    let _ = writeln!(
        s,
        "API requests by the operator over the whole run, by verb and resource ({} in all, {} \
of them answered 429 by API Priority and Fairness and retried by the kube client; user agent \
{}):\n",
        thousands(f.requests_total),
        thousands(f.throttled),
        if f.user_agents.is_empty() {
            "none".to_string()
        } else {
            f.user_agents
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(
        s,
        "| Verb | Resource | Requests | Per lifecycle | 4xx/5xx |\n|---|---|---|---|---|"
    );
    for r in &f.requests {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {} |",
            r.verb,
            r.resource,
            thousands(r.count),
            per(r.count),
            thousands(r.failed)
        );
    }
    let _ = writeln!(s);

    let cp = f
        .control_plane_cpu_s
        .iter()
        .map(|(name, cpu)| format!("{name} {cpu:.1} s"))
        .collect::<Vec<_>>()
        .join(", ");
    let metrics = f
        .metrics
        .iter()
        .map(|(name, value)| format!("`{name}` {value}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        s,
        "CPU of the control plane over the same time: {}. Completion status writes refused with \
a conflict (the Job controller wrote first; retried): {}. Warnings and errors in the \
operator's log: {}. Operator metrics at the end: {}.",
        if cp.is_empty() { "unknown" } else { &cp },
        thousands(f.completion_conflicts),
        thousands(f.operator_log_warnings),
        if metrics.is_empty() {
            "none".to_string()
        } else {
            metrics
        }
    );
    for note in &f.notes {
        let _ = writeln!(s, "\n{note}");
    }
    s
}

/// The N of a run heading (`### N = 10,000` → 10000).
fn run_n(heading: &str) -> Option<usize> {
    let rest = heading.strip_prefix(RUN_PREFIX)?;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `doc` with the section replaced: the new `intro`, every run subsection (the one of `n` now
/// `run`, the others as they were), then the other subsections as they were. A document without
/// the section gets it appended.
pub fn splice(doc: &str, intro: &str, n: usize, run: &str) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == SECTION) else {
        let mut out = doc.trim_end().to_string();
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        let _ = write!(
            out,
            "{SECTION}\n\n{}\n\n{}\n",
            intro.trim_end(),
            run.trim_end()
        );
        return out;
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |i| start + 1 + i);

    let mut runs: BTreeMap<usize, String> = BTreeMap::new();
    let mut others: Vec<String> = Vec::new();
    let mut current: Option<(Option<usize>, Vec<&str>)> = None;
    let mut flush = |block: Option<(Option<usize>, Vec<&str>)>| {
        if let Some((key, body)) = block {
            let text = body.join("\n").trim_end().to_string();
            match key {
                Some(k) => {
                    runs.insert(k, text);
                }
                None => others.push(text),
            }
        }
    };
    for line in &lines[start + 1..end] {
        if line.starts_with("### ") {
            flush(current.take());
            current = Some((run_n(line), vec![line]));
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
        // Lines before the first subsection are the old introduction: replaced.
    }
    flush(current.take());
    runs.insert(n, run.trim_end().to_string());

    let mut section = vec![
        SECTION.to_string(),
        String::new(),
        intro.trim_end().to_string(),
    ];
    for block in runs.into_values().chain(others) {
        section.push(String::new());
        section.push(block);
    }
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    out.extend(section);
    if end < lines.len() {
        out.push(String::new());
        out.extend(lines[end..].iter().map(|l| l.to_string()));
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// Who used the machine's cores during the operator's release burst and during the
/// baseline's: a release burst is bound by the API server's CPU, and this shows whether the
/// operator's burst costs the control plane more than the plain client's.
fn burst_cpu(s: &mut String, f: &Figures) {
    if f.burst_cpu.is_empty() && f.baseline.cpu.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "CPU during the releases, in cores of the machine's {} (`/proc/<pid>/stat` every 100 ms): \
the operator's burst is `plannedStart` → its last release patch done, the baseline's is its \
timed release (the operator stopped, the harness the plain client):\n",
        f.machine.cores
    );
    let _ = writeln!(
        s,
        "| Process | Operator's burst | Baseline's burst |\n|---|---|---|"
    );
    let mut names: Vec<&str> = f.burst_cpu.iter().map(|(name, _)| name.as_str()).collect();
    for (name, _) in &f.baseline.cpu {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let cores = |of: &[(String, f64)], name: &str| {
        of.iter()
            .find(|(n, _)| n == name)
            .map_or("–".to_string(), |(_, c)| format!("{c:.2}"))
    };
    let total = |of: &[(String, f64)]| {
        if of.is_empty() {
            "–".to_string()
        } else {
            format!("{:.2}", of.iter().map(|(_, c)| c).sum::<f64>())
        }
    };
    for name in names {
        let _ = writeln!(
            s,
            "| {name} | {} | {} |",
            cores(&f.burst_cpu, name),
            cores(&f.baseline.cpu, name)
        );
    }
    let _ = writeln!(
        s,
        "| all of these | {} | {} |",
        total(&f.burst_cpu),
        total(&f.baseline.cpu)
    );
    let _ = writeln!(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_cpu_table_sets_both_bursts_side_by_side() {
        let mut f = Figures::default();
        f.machine.cores = 2;
        let mut s = String::new();
        burst_cpu(&mut s, &f);
        assert!(s.is_empty(), "nothing sampled, no table: {s}");
        f.burst_cpu = vec![("kube-apiserver".into(), 1.4), ("operator".into(), 0.22)];
        f.baseline.cpu = vec![("kube-apiserver".into(), 1.43), ("harness".into(), 0.2)];
        burst_cpu(&mut s, &f);
        assert!(s.contains("in cores of the machine's 2"), "{s}");
        assert!(s.contains("| kube-apiserver | 1.40 | 1.43 |"), "{s}");
        assert!(s.contains("| operator | 0.22 | – |"), "{s}");
        assert!(s.contains("| harness | – | 0.20 |"), "{s}");
        assert!(s.contains("| all of these | 1.62 | 1.63 |"), "{s}");
        f.baseline.cpu.clear();
        let mut s = String::new();
        burst_cpu(&mut s, &f);
        assert!(s.contains("| all of these | 1.62 | – |"), "{s}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&values);
        assert_eq!(
            (p.count, p.p50, p.p99, p.max, p.min),
            (100, 50.0, 99.0, 100.0, 1.0)
        );
        let one = percentiles(&[0.25]);
        assert_eq!((one.p50, one.p99, one.max), (0.25, 0.25, 0.25));
        assert_eq!(percentiles(&[]).count, 0);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(run_n("### N = 10,000"), Some(10_000));
        assert_eq!(run_n("### Why"), None);
    }

    #[test]
    fn the_section_is_appended_then_replaced_per_n_keeping_the_rest() {
        let doc = "# Bench\n\n## Results\n\ntext\n";
        let once = splice(doc, "intro", 1000, "### N = 1,000\n\nfirst");
        assert_eq!(
            once,
            "# Bench\n\n## Results\n\ntext\n\n## Operator on a real control plane (make load)\n\nintro\n\n### N = 1,000\n\nfirst\n"
        );
        // A hand-written subsection and a following section survive; N = 10,000 sorts after.
        let edited = once.replace(
            "first\n",
            "first\n\n### Why targets are missed\n\nbecause\n\n## Reproduce\n\nrun it\n",
        );
        let twice = splice(&edited, "intro 2", 10_000, "### N = 10,000\n\nsecond");
        assert_eq!(
            twice,
            "# Bench\n\n## Results\n\ntext\n\n## Operator on a real control plane (make load)\n\nintro 2\n\n### N = 1,000\n\nfirst\n\n### N = 10,000\n\nsecond\n\n### Why targets are missed\n\nbecause\n\n## Reproduce\n\nrun it\n"
        );
        let again = splice(&twice, "intro 2", 1000, "### N = 1,000\n\nnew");
        assert!(again.contains("### N = 1,000\n\nnew\n\n### N = 10,000\n\nsecond"));
        assert!(!again.contains("first"));
        assert!(again.ends_with("## Reproduce\n\nrun it\n"));
    }
}
