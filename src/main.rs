//! The `carbonshift` command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// jemalloc instead of glibc's malloc: with the operator's caches and watch streams spread over
/// the tokio worker threads, glibc kept freed memory in its per-thread arenas, so the resident
/// set grew with every burst and did not shrink (docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    carbonshift::cli::Cli::parse().run()
}
