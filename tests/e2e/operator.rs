//! The `carbonshift run` processes of the scenarios: started from the binary Cargo built, with
//! the caller's `CARBONSHIFT_*` environment removed, their output in a log file; stopped with
//! SIGTERM (or killed with SIGKILL where a scenario means it); their metrics and health endpoints;
//! the time of a log line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::harness::{lock, tail};

/// A `carbonshift run` process; clones share it.
#[derive(Clone)]
pub struct Operator {
    /// Its name in progress lines (`operator`, `replica-a`, ...).
    pub label: String,
    child: Arc<Mutex<Option<Child>>>,
    pub log: PathBuf,
    pub args: Vec<String>,
    pub kubeconfig: PathBuf,
    pub metrics_port: u16,
    pub webhook_port: u16,
    /// When the process was spawned.
    pub spawned: DateTime<Utc>,
}

impl Operator {
    /// Starts `carbonshift run ARGS` with `KUBECONFIG`, its output in `log`.
    pub fn spawn(
        label: &str,
        kubeconfig: &Path,
        args: Vec<String>,
        log: PathBuf,
        ports: (u16, u16),
    ) -> Self {
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
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr);
        let spawned = Utc::now();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start carbonshift run: {e}"));
        Self {
            label: label.to_string(),
            child: Arc::new(Mutex::new(Some(child))),
            log,
            args,
            kubeconfig: kubeconfig.to_path_buf(),
            metrics_port: ports.0,
            webhook_port: ports.1,
            spawned,
        }
    }

    /// An operator started by the caller (the offline tests start theirs with a command of their
    /// own).
    pub fn adopt(label: &str, child: Child, log: PathBuf, ports: (u16, u16)) -> Self {
        Self {
            label: label.to_string(),
            child: Arc::new(Mutex::new(Some(child))),
            log,
            args: Vec::new(),
            kubeconfig: PathBuf::new(),
            metrics_port: ports.0,
            webhook_port: ports.1,
            spawned: Utc::now(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    /// Whether the process was started and has not been stopped or killed by the test.
    pub fn is_managed(&self) -> bool {
        lock(&self.child).is_some()
    }

    /// Panics with the log's tail if the operator exited on its own.
    pub fn assert_running(&self) {
        let mut guard = lock(&self.child);
        if let Some(child) = guard.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            guard.take();
            drop(guard);
            panic!(
                "{} (carbonshift run) exited ({status}); last lines of {}:\n{}",
                self.label,
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }

    /// SIGKILL, at once: no graceful shutdown, no Lease handed over.
    pub fn kill(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, up to 15 s for a graceful exit, then SIGKILL; says what happened.
    pub fn stop(&self) -> Option<String> {
        let mut child = lock(&self.child).take()?;
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
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(format!("stopped gracefully ({status})"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        Some("did not stop within 15 s of SIGTERM; killed".to_string())
    }

    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.metrics_port)
    }

    /// `GET /metrics`, or why not.
    pub async fn metrics(&self) -> Result<String, String> {
        get_text(&self.metrics_url("/metrics")).await
    }

    /// `carbonshift_leader` as this replica reports it.
    pub async fn leader(&self) -> Result<bool, String> {
        let text = self.metrics().await?;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("carbonshift_leader "))
            .ok_or_else(|| "no carbonshift_leader in /metrics".to_string())?;
        Ok(value.trim() == "1")
    }

    /// The time of the first log line containing `needle` (text format: the line starts with an
    /// RFC 3339 timestamp).
    pub fn logged_at(&self, needle: &str) -> Option<DateTime<Utc>> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines().filter(|l| l.contains(needle)).find_map(|l| {
            let stamp = strip_ansi(l.split_whitespace().next()?);
            DateTime::parse_from_rfc3339(&stamp)
                .ok()
                .map(|t| t.to_utc())
        })
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `GET url` with a 2 s timeout: the body on 200, else why not.
pub async fn get_text(url: &str) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    match http.get(url).send().await {
        Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

/// Options of [`Scenario::start_operator`].
#[derive(Debug, Clone, Default)]
pub struct OperatorOptions {
    /// Name in progress lines; default `operator`.
    pub label: Option<String>,
    /// `--margin`; default the operator's (5m).
    pub margin: Option<String>,
    /// Leader election: `(lease name, pod name)`; default off.
    pub leader: Option<(String, String)>,
    /// Another kubeconfig than the admin's (the chart's ServiceAccount).
    pub kubeconfig: Option<PathBuf>,
    /// More arguments.
    pub extra: Vec<String>,
}

impl OperatorOptions {
    pub fn margin(margin: &str) -> Self {
        Self {
            margin: Some(margin.to_string()),
            ..Self::default()
        }
    }
}
