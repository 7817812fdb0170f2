//! carbonshift: a Kubernetes operator that holds deferrable AI training Jobs until the
//! lowest-carbon window that still meets their deadline.
//!
//! The crate is split into a pure core ([`api`] annotation parsing, [`planner`], [`units`]) and an
//! imperative shell (forecast provider clients, controllers, the admission webhook, the CLI).
#![forbid(unsafe_code)]

pub mod api;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod forecast;
pub mod http;
pub mod kepler;
pub mod leader;
pub mod ledger;
pub mod lifecycle;
pub mod metrics;
pub mod note;
pub mod planner;
pub mod replay;
pub mod report;
pub mod retry;
pub mod telemetry;
pub mod trace;
pub mod units;
pub mod waste;
pub mod webhook;
pub mod workload;
