//! The `carbonshift` command line: one module per subcommand, each with its clap arguments and a
//! `run` function returning the process exit code (0 success, 1 failure, 2 bad arguments or
//! input; `failure` and `usage_error` print the message and give the code).

pub mod crds;
pub mod forecast;
pub mod plan;
pub mod release;
pub mod replay;
pub mod report;
pub mod run;

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::planner::Point;
use crate::trace::{self, TraceError};

/// carbonshift holds deferrable Kubernetes Jobs until the lowest-carbon window that still meets
/// their deadline.
#[derive(Debug, Parser)]
#[command(name = "carbonshift", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Large argument structs are boxed (clippy's `large_enum_variant`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator: the admission webhook and metrics on every replica, the controllers on
    /// the elected leader (what the chart deploys).
    Run(Box<run::Args>),
    /// Print the CustomResourceDefinitions as YAML, or write them into a directory.
    Crds(crds::Args),
    /// Plan a job's lowest-carbon window on a carbon-intensity trace.
    Plan(Box<plan::Args>),
    /// Replay real grid traces and a job mix through the planner and compare policies.
    Replay(Box<replay::Args>),
    /// Fetch one carbon-intensity forecast from a provider and print it (check an API key, a zone
    /// or a trace).
    Forecast(Box<forecast::Args>),
    /// Release held Jobs at once (before uninstalling carbonshift, or in an emergency).
    Release(Box<release::Args>),
    /// Print the carbon accounting of a cluster: per namespace and forecast, jobs, kWh, gCO2eq
    /// emitted and avoided (verified and estimated), failed runs, forecast error, budget use.
    Report(Box<report::Args>),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Run(args) => run::run(*args),
            Command::Crds(args) => crds::run(args),
            Command::Plan(args) => plan::run(*args),
            Command::Replay(args) => replay::run(*args),
            Command::Forecast(args) => forecast::run(*args),
            Command::Release(args) => release::run(*args),
            Command::Report(args) => report::run(*args),
        }
    }
}

/// Builds the tokio runtime of a subcommand: one thread for one-shot commands, all cores for the
/// operator. An error has been printed when this returns `Err`.
pub(crate) fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the async runtime: {e}")))
}

/// Where a subcommand reads a carbon-intensity trace from.
#[derive(Debug, Clone, Copy)]
pub enum TraceSource<'a> {
    /// A CSV file.
    File(&'a Path),
    /// A trace compiled into the binary, by name.
    Builtin(&'a str),
}

/// Why a trace could not be loaded (a bad input: exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum TraceLoadError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("{path}: line {line} is not UTF-8 text; save the file as UTF-8")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The line holding the first byte that is not UTF-8.
        line: usize,
    },
    /// The trace is malformed.
    #[error("{name}: {error}")]
    Trace {
        /// The file or built-in name.
        name: String,
        /// What is wrong, with the line number.
        error: TraceError,
    },
    /// No built-in trace of that name.
    #[error("no built-in trace named {0:?}; available: {names}", names = trace::builtin_names())]
    UnknownBuiltin(String),
}

/// Reads and parses a trace (`column`: the intensity column, by default the second). Returns the
/// name errors and reports call it by (the file as given, or the built-in name) and the points.
pub fn load_trace(
    source: TraceSource<'_>,
    column: Option<&str>,
) -> Result<(String, Vec<Point>), TraceLoadError> {
    let (name, parsed) = match source {
        TraceSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| TraceLoadError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let text = String::from_utf8(bytes).map_err(|e| TraceLoadError::NotUtf8 {
                path: path.to_path_buf(),
                line: trace::first_non_utf8_line(e.as_bytes()).unwrap_or(1),
            })?;
            (path.display().to_string(), trace::parse(&text, column))
        }
        TraceSource::Builtin(name) => {
            let builtin = trace::builtin(name)
                .ok_or_else(|| TraceLoadError::UnknownBuiltin(name.to_string()))?;
            (name.to_string(), trace::parse(builtin.csv, column))
        }
    };
    match parsed {
        Ok(points) => Ok((name, points)),
        Err(error) => Err(TraceLoadError::Trace { name, error }),
    }
}

/// A Kubernetes client from the environment (in-cluster, else the kubeconfig), that names itself
/// `carbonshift/<version> (<component>)` in every request's User-Agent, so that the API server's
/// audit log and metrics tell carbonshift's requests apart.
pub async fn kube_client(component: &str) -> Result<kube::Client, kube::Error> {
    kube_client_to(component).await.map(|(client, _)| client)
}

/// [`kube_client`], and where it talks to, for messages: the API server's URL and the kubeconfig
/// context it came from (or `in-cluster`), such as `https://10.0.0.1:443 (kubeconfig context
/// prod-eu)`.
/// The client of a one-shot command against the cluster (`release`, `report`): the process's
/// crypto provider installed, then [`kube_client_to`]; the error is the message to print.
pub async fn cluster_client(component: &str) -> Result<(kube::Client, String), String> {
    // kube's rustls client needs a process-wide crypto provider.
    crate::forecast::install_crypto_provider();
    kube_client_to(component)
        .await
        .map_err(|e| format!("cannot reach the cluster (in-cluster config or kubeconfig): {e}"))
}

pub async fn kube_client_to(component: &str) -> Result<(kube::Client, String), kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    let target = describe_target(&config.cluster_url.to_string());
    let agent = format!("carbonshift/{} ({component})", env!("CARGO_PKG_VERSION"));
    if let Ok(value) = http::HeaderValue::from_str(&agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    kube::Client::try_from(config).map(|client| (client, target))
}

/// `URL (kubeconfig context NAME)`, or `URL (in-cluster)` without a kubeconfig.
fn describe_target(url: &str) -> String {
    let context = kube::config::Kubeconfig::read()
        .ok()
        .and_then(|k| k.current_context)
        .map_or_else(
            || "in-cluster".to_string(),
            |name| format!("kubeconfig context {name}"),
        );
    format!("{} ({context})", url.trim_end_matches('/'))
}

/// Prints `error: MESSAGE` on stderr and returns exit code 1: the command failed.
pub(crate) fn failure(message: impl Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Prints `error: MESSAGE` on stderr and returns exit code 2: bad arguments or input.
pub(crate) fn usage_error(message: impl Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Writes `value` as pretty JSON and a newline: the `--output json` of the subcommands.
pub(crate) fn write_json(
    out: &mut impl Write,
    value: &impl serde::Serialize,
) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    writeln!(out, "{text}").map_err(|e| e.to_string())
}

/// `text` on one line: every run of whitespace, line breaks included, becomes one space.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(source: TraceSource<'_>) -> String {
        match load_trace(source, None) {
            Ok((name, points)) => format!("{name}: {} points", points.len()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn traces_load_from_files_and_builtins_with_errors_naming_the_source() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let file = PathBuf::from(format!("{dir}/tests/fixtures/traces/bad-timestamp.csv"));
        assert_eq!(
            message(TraceSource::File(&file)),
            format!(
                "{}: line 4: \"2024-03-01 half past one\" is not a timestamp; expected {}",
                file.display(),
                crate::units::TIMESTAMP_FORM
            )
        );
        assert_eq!(
            message(TraceSource::File(Path::new("/nonexistent/trace.csv"))),
            "cannot read /nonexistent/trace.csv: No such file or directory (os error 2)"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let latin1 = dir.path().join("latin1.csv");
        std::fs::write(&latin1, b"time,ci\n2023-01-01 00:00,1 # caf\xe9\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            message(TraceSource::File(&latin1)),
            format!(
                "{}: line 2 is not UTF-8 text; save the file as UTF-8",
                latin1.display()
            )
        );
        assert_eq!(
            message(TraceSource::Builtin("mars")),
            "no built-in trace named \"mars\"; available: gb-2020, de-2020, fr-2020, caiso-north-2023-06"
        );
        let (name, points) =
            load_trace(TraceSource::Builtin("fr-2020"), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(name, "fr-2020");
        assert_eq!(
            points,
            trace::parse(trace::BUILTINS[2].csv, None).unwrap_or_default()
        );
    }
}
