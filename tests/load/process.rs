//! The operator process (`carbonshift run`, the binary of the same Cargo profile) and what
//! `/proc` says about it and about the control-plane processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Resident memory of `pid` now and at its peak, MiB (`VmRSS`, `VmHWM`).
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Open sockets of `pid` (its connections to the API server, mostly).
pub fn sockets(pid: u32) -> Option<usize> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count(),
    )
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`).
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let output = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap_or_else(|e| panic!("getconf CLK_TCK: {e}"));
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("getconf CLK_TCK printed {:?}: {e}", output.stdout))
    })
}

/// CPU seconds (user + system) `pid` has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

/// `name pid` lines of the control plane's `pids` file, for the processes still alive.
pub fn control_plane(pids_file: &Path) -> Vec<(String, u32)> {
    let Ok(text) = std::fs::read_to_string(pids_file) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?.to_string();
            let pid = parts.next()?.parse().ok()?;
            Some((name, pid))
        })
        .filter(|(_, pid)| cpu_seconds(*pid).is_some())
        .collect()
}

/// How often [`CpuSampler`] reads the processes' CPU time (`/proc/<pid>/stat` counts in 10 ms
/// ticks, so a 2 s burst is resolved to about 1 %).
const CPU_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Reads the CPU time of a set of processes every [`CPU_SAMPLE_EVERY`] on a thread of its own,
/// until [stopped](CpuSampler::stop): who used the machine's cores during a span, such as a
/// release burst, that is only known afterwards (from the audit log).
pub struct CpuSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<CpuTrace>,
}

/// What a [`CpuSampler`] read: for each sample, its time and each process's CPU seconds.
#[derive(Debug, Clone, Default)]
pub struct CpuTrace {
    names: Vec<String>,
    samples: Vec<(chrono::DateTime<chrono::Utc>, Vec<Option<f64>>)>,
}

impl CpuSampler {
    /// Starts sampling `processes` (`(name, pid)`).
    pub fn start(processes: Vec<(String, u32)>) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let sample = move |processes: &[(String, u32)]| {
            let cpu = processes.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
            (chrono::Utc::now(), cpu)
        };
        // The first sample before this returns, so that a span starting after it is covered.
        let mut trace = CpuTrace {
            names: processes.iter().map(|(name, _)| name.clone()).collect(),
            samples: vec![sample(&processes)],
        };
        let thread = std::thread::spawn(move || {
            loop {
                std::thread::sleep(CPU_SAMPLE_EVERY);
                trace.samples.push(sample(&processes));
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    return trace;
                }
            }
        });
        Self { stop, thread }
    }

    /// Stops sampling (after one last sample, so a span ending before this call is covered) and
    /// returns what was read.
    pub fn stop(self) -> CpuTrace {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the CPU sampler thread")
    }
}

impl CpuTrace {
    /// The cores each process used on average over `from..to`: its CPU seconds between the last
    /// sample at or before `from` and the first at or after `to`, over the time between those
    /// two samples. Empty when the samples do not cover the span.
    pub fn cores(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(String, f64)> {
        let start = self.samples.iter().rposition(|(at, _)| *at <= from);
        let end = self.samples.iter().position(|(at, _)| *at >= to);
        let (Some(start), Some(end)) = (start, end) else {
            return Vec::new();
        };
        let (t0, before) = &self.samples[start];
        let (t1, after) = &self.samples[end];
        let span = (*t1 - *t0).as_seconds_f64();
        if span <= 0.0 {
            return Vec::new();
        }
        self.names
            .iter()
            .zip(before.iter().zip(after))
            .filter_map(|(name, (b, a))| Some((name.clone(), (a.as_ref()? - b.as_ref()?) / span)))
            .collect()
    }
}

/// The client rate limits a control-plane process was started with (`--kube-api-qps`,
/// `--kube-api-burst` on its command line), e.g. `--kube-api-qps=200 --kube-api-burst=300`;
/// empty when it uses its defaults or its command line cannot be read.
pub fn client_limits(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut limits = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        for flag in ["--kube-api-qps", "--kube-api-burst"] {
            if let Some(value) = arg.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
                limits.push(format!("{flag}={value}"));
            } else if arg == flag
                && let Some(value) = args.get(i + 1)
            {
                limits.push(format!("{flag}={value}"));
            }
        }
    }
    limits.join(" ")
}

/// The running `carbonshift run`; clones share the process.
#[derive(Clone)]
pub struct Operator {
    child: Arc<Mutex<Option<Child>>>,
    pub pid: u32,
    pub log: PathBuf,
}

impl Operator {
    /// Starts the binary Cargo built for this profile with `args`, `KUBECONFIG` and
    /// `RUST_LOG=warn`, stdout and stderr into `log`.
    pub fn start(kubeconfig: &Path, args: &[String], log: PathBuf) -> Self {
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let stderr = file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot reopen {}: {e}", log.display()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_carbonshift"));
        // Settings of the caller's environment must not change the operator under test.
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("CARBONSHIFT_") || key_text.starts_with("KUBERNETES_") {
                command.env_remove(&key);
            }
        }
        command
            .arg("run")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} run: {e}",
                env!("CARGO_BIN_EXE_carbonshift")
            )
        });
        Self {
            pid: child.id(),
            child: Arc::new(Mutex::new(Some(child))),
            log,
        }
    }

    /// Panics with the log's tail if the operator has exited.
    pub fn assert_running(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = guard.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            guard.take();
            drop(guard);
            panic!(
                "carbonshift run exited ({status}); last lines of {}:\n{}",
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }

    /// SIGTERM, up to 30 s for a graceful exit, then SIGKILL. `None` if already stopped.
    pub fn stop(&self) -> Option<String> {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(format!("had exited already ({status})"));
        }
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !signalled {
            let _ = child.kill();
            let _ = child.wait();
            return Some("could not be sent SIGTERM; killed".to_string());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(format!("stopped gracefully ({status})"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        Some("did not stop within 30 s of SIGTERM; killed".to_string())
    }
}

/// The last `lines` lines of a text file.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_come_from_the_samples_around_the_span() {
        let t = |ms: i64| {
            chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("a time")
                + chrono::TimeDelta::milliseconds(ms)
        };
        let trace = CpuTrace {
            names: vec!["a".into(), "b".into()],
            samples: vec![
                (t(0), vec![Some(1.0), Some(0.0)]),
                (t(100), vec![Some(1.1), Some(0.0)]),
                (t(1100), vec![Some(2.6), None]),
                (t(2100), vec![Some(4.1), Some(0.5)]),
            ],
        };
        let rounded = |cores: Vec<(String, f64)>| -> Vec<(String, String)> {
            cores
                .into_iter()
                .map(|(name, c)| (name, format!("{c:.3}")))
                .collect()
        };
        // 100 → 2100 ms: 3.0 CPU s over 2 s; b was unreadable at 1100 ms but not at the ends.
        assert_eq!(
            rounded(trace.cores(t(150), t(2050))),
            [("a".into(), "1.500".into()), ("b".into(), "0.250".into())]
        );
        assert_eq!(
            rounded(trace.cores(t(100), t(1100))),
            [("a".into(), "1.500".into())]
        );
        assert!(
            trace.cores(t(50), t(2200)).is_empty(),
            "not covered at the end"
        );
        assert!(
            trace.cores(t(-1), t(1000)).is_empty(),
            "not covered at the start"
        );
    }
}
