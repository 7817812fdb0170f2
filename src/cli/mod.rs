//! The `carbonshift` command line: one module per subcommand, each with its clap arguments and a
//! `run` function returning the process exit code.

pub mod crds;
pub mod forecast;
pub mod plan;
pub mod replay;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// carbonshift holds deferrable Kubernetes Jobs until the lowest-carbon window that still meets
/// their deadline.
#[derive(Debug, Parser)]
#[command(name = "carbonshift", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML, or write them into a directory.
    Crds(crds::Args),
    /// Fetch one carbon-intensity forecast from a provider and print it (check an API key, a zone
    /// or a trace).
    Forecast(Box<forecast::Args>),
    /// Plan a job's lowest-carbon window on a carbon-intensity trace.
    Plan(Box<plan::Args>),
    /// Replay the planner over a year of real grid data and a realistic job set, beside running
    /// at once, a threshold policy and the perfect-foresight optimum.
    Replay(Box<replay::Args>),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Crds(args) => crds::run(args),
            Command::Forecast(args) => forecast::run(*args),
            Command::Plan(args) => plan::run(*args),
            Command::Replay(args) => replay::run(*args),
        }
    }
}
