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
