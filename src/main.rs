//! The `carbonshift` command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    carbonshift::cli::Cli::parse().run()
}
