//! `carbonshift replay`: the operator's planner replayed over real grid traces and realistic job
//! sets, scored on the actual trace beside the run-now baseline, a threshold policy and a
//! brute-force perfect-foresight oracle.
//!
//! Pure: a replay is a function of the trace points, the scenario and the options (all random
//! draws are seeded). The CLI shell ([`crate::cli::replay`]) reads files and prints.
//!
//! - [`scenario`]: the job sets (Scenario I and II of Wiesner et al., "Let's Wait Awhile",
//!   Middleware 2021, and job traces) and the paper's deadline rules;
//! - [`policy`]: `runNow`, `threshold`, `carbonshift` and `carbonshiftReplan` (which call
//!   [`crate::planner::plan`] / [`crate::planner::plan_with_capacity`] — the same code the operator
//!   runs);
//! - [`oracle`]: an independent brute-force optimum;
//! - [`noise`]: forecast error models; [`series`]: the actual trace; [`report`]: scores, JSON and
//!   table; [`plot`]: the SVG chart; [`results`]: the `docs/results.md` matrix.

pub mod noise;
pub mod operator;
pub mod oracle;
pub mod plot;
pub mod policy;
mod prepare;
pub mod report;
pub mod results;
mod run;
pub mod scenario;
pub mod series;
pub mod spatial;
#[cfg(test)]
mod testkit;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;

use chrono::{DateTime, TimeDelta, Utc};
use thiserror::Error;

use crate::planner::{Capacity, CapacityError, Forecast, ForecastError, Point, Power};
use crate::units::format_duration;

use operator::{OperatorConfig, OperatorTally};
use policy::{PlanConfig, Runs, Source};
use report::{
    ForecastInfo, OperatorReport, Policies, PolicyReport, PowerInfo, Report, ScenarioInfo, Score,
    SeedSpread, TraceInfo, Uncapped, savings_percent, score,
};
use scenario::{DeadlineRule, Job, JobSet, Span, TraceJob};
use series::{Series, at};

pub use noise::ErrorModel;

/// Why a replay cannot run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ReplayError {
    /// The trace points do not form a forecast.
    #[error("the trace is not a valid forecast: {0}")]
    Forecast(#[from] ForecastError),
    /// The trace has no points (after `--paper-compat` sampling).
    #[error("the trace has no data{0}")]
    EmptyTrace(&'static str),
    /// No calendar year is fully covered and none was given.
    #[error(
        "the trace ({from} .. {to}) covers no full calendar year; pass --year to replay the part of a year it covers"
    )]
    NoFullYear {
        /// Trace start.
        from: DateTime<Utc>,
        /// Trace end.
        to: DateTime<Utc>,
    },
    /// No job of the scenario lies inside the trace.
    #[error("no job of the scenario lies inside the trace ({from} .. {to})")]
    NoJobs {
        /// Trace start.
        from: DateTime<Utc>,
        /// Trace end.
        to: DateTime<Utc>,
    },
    /// The trace has unknown time where jobs may run; their emissions could not be scored.
    #[error(
        "the trace has no data from {from} to {to}, inside the replayed period; replay needs a continuous trace there"
    )]
    Gap {
        /// Start of the gap.
        from: DateTime<Utc>,
        /// End of the gap.
        to: DateTime<Utc>,
    },
    /// `--paper-compat` with a scenario the paper does not have.
    #[error("--paper-compat reproduces the paper's nightly and ml scenarios only")]
    PaperCompatScenario,
    /// An invalid option value.
    #[error("{0}")]
    Option(String),
    /// An invalid capacity.
    #[error("{0}")]
    Capacity(#[from] CapacityError),
    /// The simulated operator did not bring a job to an end (a bug in the state machine or the
    /// simulation, never expected).
    #[error("the simulated operator got stuck on job {job}: {detail}")]
    Simulation {
        /// The job's index.
        job: usize,
        /// What happened.
        detail: String,
    },
}

/// Which job set to replay.
#[derive(Debug, Clone, PartialEq)]
pub enum ScenarioSpec {
    /// Scenario I: a 30-minute job every day at 01:00, shiftable by `window` either way.
    Nightly {
        /// The shift window either side of 01:00.
        window: TimeDelta,
        /// The year (default: the first the trace fully covers).
        year: Option<i32>,
    },
    /// Scenario II: ML training jobs with workday deadlines.
    Ml {
        /// The deadline rule.
        rule: DeadlineRule,
        /// Whether jobs may pause and resume.
        interruptible: bool,
        /// The year (default: the first the trace fully covers).
        year: Option<i32>,
        /// Number of jobs (the paper: 3,387).
        count: usize,
        /// Seed of the job set.
        seed: u64,
    },
    /// Jobs from a trace.
    Jobs {
        /// The rows.
        jobs: Vec<TraceJob>,
        /// Where they came from.
        source: String,
        /// How long a job may wait.
        slack: TimeDelta,
        /// When arrival 0 is (default: the trace's first timestamp).
        start: Option<DateTime<Utc>>,
        /// Whether jobs may pause and resume.
        interruptible: bool,
    },
}

impl ScenarioSpec {
    /// The paper's Scenario II: [`scenario::ML_JOBS`] jobs drawn with `seed`, in the first year the
    /// trace fully covers.
    pub fn paper_ml(rule: DeadlineRule, interruptible: bool, seed: u64) -> Self {
        Self::Ml {
            rule,
            interruptible,
            year: None,
            count: scenario::ML_JOBS,
            seed,
        }
    }
}

/// Which policies to run besides `runNow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicySet {
    /// `threshold`.
    pub threshold: bool,
    /// `carbonshift`.
    pub carbonshift: bool,
    /// `carbonshiftReplan`.
    pub replan: bool,
    /// `oracle`.
    pub oracle: bool,
}

impl PolicySet {
    /// Every policy.
    pub const ALL: PolicySet = PolicySet {
        threshold: true,
        carbonshift: true,
        replan: true,
        oracle: true,
    };

    /// The JSON names accepted by [`PolicySet::parse`].
    pub const NAMES: &'static str = "runNow, threshold, carbonshift, carbonshiftReplan, oracle";

    /// Parses a comma-separated list of JSON names (`runNow` is always run: it is the baseline).
    pub fn parse(text: &str) -> Result<PolicySet, String> {
        let mut set = PolicySet {
            threshold: false,
            carbonshift: false,
            replan: false,
            oracle: false,
        };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "runNow" => {}
                "threshold" => set.threshold = true,
                "carbonshift" => set.carbonshift = true,
                "carbonshiftReplan" => set.replan = true,
                "oracle" => set.oracle = true,
                other => {
                    return Err(format!(
                        "unknown policy {other:?}; expected some of {}",
                        Self::NAMES
                    ));
                }
            }
        }
        Ok(set)
    }
}

/// How to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Policies besides `runNow`.
    pub policies: PolicySet,
    /// `threshold`'s fixed threshold, g/kWh (default: 25th percentile of the previous 7 days).
    pub threshold: Option<f64>,
    /// `carbonshiftReplan`'s interval.
    pub replan: TimeDelta,
    /// Relative forecast error (σ / trace mean); 0 for perfect forecasts.
    pub error: f64,
    /// How errors behave.
    pub error_model: ErrorModel,
    /// Noise seeds to average over (with `error > 0`).
    pub seeds: u32,
    /// Base seed of the ML job set and the noise.
    pub seed: u64,
    /// How far ahead the scheduler sees.
    pub horizon: Option<TimeDelta>,
    /// A cap on concurrent jobs for the planner policies.
    pub capacity: Option<Capacity>,
    /// Power per job.
    pub power: Power,
    /// The operator's safety margin (`--margin`): a job starts at the latest this long before its
    /// latest start. Default 5 minutes, as the operator's `--margin`; 0 with `--paper-compat`.
    pub margin: TimeDelta,
    /// Reproduce the paper's simulator (30-minute sampling from 1 January, its first-day and
    /// extra-slot quirks).
    pub paper_compat: bool,
    /// Threads for noise seeds (results do not depend on it).
    pub threads: usize,
}

impl Options {
    /// Perfect forecasts, every policy, re-plan every 30 minutes, 1 kW per job at PUE 1.
    pub fn new(power: Power) -> Options {
        Options {
            policies: PolicySet::ALL,
            threshold: None,
            replan: TimeDelta::minutes(30),
            error: 0.0,
            error_model: ErrorModel::Constant,
            seeds: 10,
            seed: 0,
            horizon: None,
            capacity: None,
            power,
            margin: DEFAULT_MARGIN,
            paper_compat: false,
            threads: 1,
        }
    }

    /// Turns `--paper-compat` on or off, with the margin that goes with it: none for the paper's
    /// simulator (it has none), the operator's default otherwise.
    pub fn set_paper_compat(&mut self, on: bool) {
        self.paper_compat = on;
        self.margin = if on {
            TimeDelta::zero()
        } else {
            DEFAULT_MARGIN
        };
    }

    fn validate(&self) -> Result<(), ReplayError> {
        let bad = |m: String| Err(ReplayError::Option(m));
        if !self.error.is_finite() || !(0.0..=1.0).contains(&self.error) {
            return bad(format!(
                "--forecast-error must be between 0 and 1 (a fraction of the trace mean), not {}",
                self.error
            ));
        }
        if self.seeds == 0 {
            return bad("--seeds must be at least 1".into());
        }
        if self.replan <= TimeDelta::zero() {
            return bad("--replan must be positive".into());
        }
        if self.horizon.is_some_and(|h| h <= TimeDelta::zero()) {
            return bad("--horizon must be positive".into());
        }
        if self.margin < TimeDelta::zero() || self.margin > MAX_SHIFT {
            return bad(format!(
                "--margin must be between 0 and {}, not {}",
                format_duration(MAX_SHIFT),
                format_duration(self.margin)
            ));
        }
        if self.threshold.is_some_and(|t| !t.is_finite() || t < 0.0) {
            return bad("--threshold must be a non-negative number of g/kWh".into());
        }
        if let Some(c) = self.capacity {
            crate::planner::CapacityLedger::with_capacity(c)?;
        }
        Ok(())
    }

    fn noisy(&self) -> bool {
        self.error > 0.0
    }
}

/// The default of [`Options::margin`]: the operator's default `--margin`.
pub const DEFAULT_MARGIN: TimeDelta = TimeDelta::minutes(5);

/// A replay ready to run: the actual trace, the jobs and the options.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The trace as the scheduler would see it with perfect forecasts (its points are what
    /// constant noise perturbs).
    pub actual: Forecast,
    /// The actual trace, for scoring.
    pub series: Series,
    /// The jobs.
    pub jobs: JobSet,
    /// What was replayed.
    pub scenario: ScenarioInfo,
    /// The trace.
    pub trace: TraceInfo,
    /// How.
    pub options: Options,
}

/// The outcome of a replay: the report and, for the chart, what `runNow` and `carbonshift` (or
/// `carbonshiftReplan`; noise seed 0, under the cap if one was given) did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// `runNow`'s runs.
    pub run_now: Runs,
    /// The planner's runs, if a planner policy ran.
    pub planned: Option<Runs>,
}
/// Longest `--window` and `--slack`: a year either way is already far beyond any deadline.
pub const MAX_SHIFT: TimeDelta = TimeDelta::days(366);

impl Replay {
    /// The jobs.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs.jobs
    }

    /// σ of the forecast error, g/kWh.
    pub fn sigma(&self) -> f64 {
        self.options.error * self.series.mean()
    }

    /// Noise seeds to run: the configured number with forecast error, else 1.
    fn seeds(&self) -> u32 {
        if self.options.noisy() {
            self.options.seeds
        } else {
            1
        }
    }

    /// Units of work [`Replay::run`] reports through its progress callback (one per job and
    /// simulation).
    pub fn work(&self) -> u64 {
        let p = self.options.policies;
        let planners = u64::from(p.carbonshift) + u64::from(p.replan);
        let capped = if self.options.capacity.is_some() {
            2
        } else {
            1
        };
        let sims = u64::from(p.threshold)
            + u64::from(p.oracle)
            + planners * capped * u64::from(self.seeds());
        sims * self.shifted_jobs()
    }

    /// Jobs the shifted policies run (all but `--paper-compat` baseline-only jobs).
    fn shifted_jobs(&self) -> u64 {
        self.jobs().iter().filter(|j| !j.baseline_only).count() as u64
    }
}
