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
pub mod oracle;
pub mod plot;
pub mod policy;
pub mod report;
pub mod results;
pub mod scenario;
pub mod series;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;

use chrono::{DateTime, TimeDelta, Utc};
use thiserror::Error;

use crate::planner::{Capacity, CapacityError, Forecast, ForecastError, Point, Power};
use crate::units::format_duration;

use policy::{PlanConfig, Runs, Source};
use report::{
    ForecastInfo, Policies, PolicyReport, PowerInfo, Report, ScenarioInfo, Score, SeedSpread,
    TraceInfo, Uncapped, savings_percent, score,
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
            paper_compat: false,
            threads: 1,
        }
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

/// One noise seed of a planner policy.
#[derive(Debug)]
struct SeedResult {
    k: u32,
    free: Score,
    capped: Option<Score>,
    overflow: usize,
    fallbacks: usize,
    plans: usize,
    runs: Option<Runs>,
}

fn span_of(series: &Series) -> Option<Span> {
    Some(Span {
        from: series.first()?,
        to: series.last_end()?,
    })
}

/// Longest `--window` and `--slack`: a year either way is already far beyond any deadline.
pub const MAX_SHIFT: TimeDelta = TimeDelta::days(366);

impl Replay {
    /// Builds the actual trace from `points` (read from `trace_name`) and generates the jobs.
    pub fn prepare(
        trace_name: &str,
        points: Vec<Point>,
        spec: &ScenarioSpec,
        options: Options,
    ) -> Result<Replay, ReplayError> {
        options.validate()?;
        let too_long = |flag: &str, d: TimeDelta| {
            (d > MAX_SHIFT || d < TimeDelta::zero()).then(|| {
                ReplayError::Option(format!(
                    "{flag} must be between 0 and {}, not {}",
                    format_duration(MAX_SHIFT),
                    format_duration(d)
                ))
            })
        };
        let shift_error = match spec {
            ScenarioSpec::Nightly { window, .. } => too_long("--window", *window),
            ScenarioSpec::Jobs { slack, .. } => too_long("--slack", *slack),
            ScenarioSpec::Ml { .. } => None,
        };
        if let Some(e) = shift_error {
            return Err(e);
        }
        let raw = Forecast::new(points)?;
        let raw_series = Series::from_forecast(&raw);
        let raw_span = span_of(&raw_series).ok_or(ReplayError::EmptyTrace(""))?;
        let no_full_year = || ReplayError::NoFullYear {
            from: at(raw_span.from),
            to: at(raw_span.to),
        };
        let year = match spec {
            ScenarioSpec::Nightly { year, .. } | ScenarioSpec::Ml { year, .. } => Some(
                year.or_else(|| scenario::first_full_year(raw_span))
                    .ok_or_else(no_full_year)?,
            ),
            ScenarioSpec::Jobs { .. } => None,
        };
        let (actual, series) = match (options.paper_compat, year) {
            (false, _) => (raw, raw_series),
            (true, None) => return Err(ReplayError::PaperCompatScenario),
            (true, Some(year)) => {
                let sampled = scenario::paper_sampling(raw.points(), year);
                if sampled.is_empty() {
                    return Err(ReplayError::EmptyTrace(
                        " at :00 or :30 from 1 January of the year (--paper-compat)",
                    ));
                }
                let sampled = Forecast::new(sampled)?;
                let series = Series::from_forecast(&sampled);
                (sampled, series)
            }
        };
        let span = span_of(&series).ok_or(ReplayError::EmptyTrace(""))?;
        let compat = options.paper_compat;
        let base_info = |name: &'static str, description: String| ScenarioInfo {
            name,
            description,
            window: None,
            year,
            deadline: None,
            seed: None,
            slack: None,
            start: None,
            source: None,
            interruptible: false,
            paper_compat: compat,
        };
        let (jobs, info) = match spec {
            ScenarioSpec::Nightly { window, .. } => {
                let year = year.unwrap_or_default();
                let w = format_duration(*window);
                (
                    scenario::nightly(span, year, *window, compat),
                    ScenarioInfo {
                        window: Some(w.clone()),
                        ..base_info(
                            "nightly",
                            format!("nightly: one 30-min job a day at 01:00 UTC ±{w}, {year}"),
                        )
                    },
                )
            }
            ScenarioSpec::Ml {
                rule,
                interruptible,
                count,
                seed,
                ..
            } => {
                let year = year.unwrap_or_default();
                let kind = if *interruptible {
                    "interruptible"
                } else {
                    "one block"
                };
                (
                    scenario::ml(span, year, *count, *seed, *rule, *interruptible, compat),
                    ScenarioInfo {
                        deadline: Some(rule.name()),
                        seed: Some(*seed),
                        interruptible: *interruptible,
                        ..base_info(
                            "ml",
                            format!(
                                "ml: 4-90 h training jobs on {year} workdays, {} deadlines, {kind}",
                                rule.name()
                            ),
                        )
                    },
                )
            }
            ScenarioSpec::Jobs {
                jobs,
                source,
                slack,
                start,
                interruptible,
            } => {
                let start = start.unwrap_or(at(span.from));
                let s = format_duration(*slack);
                (
                    scenario::from_trace(span, jobs, start, *slack, *interruptible),
                    ScenarioInfo {
                        slack: Some(s.clone()),
                        start: Some(start),
                        source: Some(source.clone()),
                        interruptible: *interruptible,
                        ..base_info("jobs", format!("jobs from {source}, slack {s}"))
                    },
                )
            }
        };
        if jobs.jobs.is_empty() {
            return Err(ReplayError::NoJobs {
                from: at(span.from),
                to: at(span.to),
            });
        }
        // Every policy runs inside [submission, deadline] (runNow at its run-now time, inside too).
        let from = jobs
            .jobs
            .iter()
            .map(|j| j.submitted_at)
            .min()
            .unwrap_or_default();
        let to = jobs
            .jobs
            .iter()
            .map(|j| j.deadline)
            .max()
            .unwrap_or_default();
        if let Some((a, b)) = series.gap_within(series::ms(from), series::ms(to)) {
            return Err(ReplayError::Gap {
                from: at(a),
                to: at(b),
            });
        }
        let trace = TraceInfo {
            name: trace_name.to_string(),
            from: at(span.from),
            to: at(span.to),
            mean_intensity: series.mean(),
        };
        Ok(Replay {
            actual,
            series,
            jobs,
            scenario: info,
            trace,
            options,
        })
    }

    /// The jobs.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs.jobs
    }

    /// σ of the forecast error, g/kWh.
    pub fn sigma(&self) -> f64 {
        self.options.error * self.series.mean()
    }

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

    /// Runs every selected policy and scores it. `progress` receives units of [`Replay::work`].
    pub fn run(&self, progress: &mut dyn FnMut(u64)) -> Result<Outcome, ReplayError> {
        let jobs = self.jobs();
        let power = &self.options.power;
        let run_now = policy::run_now(&self.series, jobs);
        let base = score(&self.series, jobs, &run_now, power);
        let baseline = base.emissions_grams;
        let simple = |s: Score, rule: String| PolicyReport {
            savings_percent: savings_percent(baseline, s.emissions_grams),
            emissions_grams: s.emissions_grams,
            deadline_misses: s.deadline_misses,
            peak_concurrency: s.peak_concurrency,
            seeds: None,
            overflow_jobs: None,
            uncapped: None,
            planning_calls: None,
            fallbacks: 0,
            rule,
        };
        let mut policies = Policies {
            run_now: simple(base, self.run_now_rule()),
            threshold: None,
            carbonshift: None,
            carbonshift_replan: None,
            oracle: None,
        };
        let p = self.options.policies;
        if p.threshold {
            let runs = policy::threshold(&self.series, jobs, self.options.threshold);
            progress(self.shifted_jobs());
            let rule = match self.options.threshold {
                Some(t) => format!(
                    "start at the first moment the measured intensity is at or below {t} g/kWh, else at the latest start"
                ),
                None => "start at the first moment the measured intensity is at or below the 25th percentile of the previous 7 days, else at the latest start".to_string(),
            };
            policies.threshold = Some(simple(score(&self.series, jobs, &runs, power), rule));
        }
        let mut planned = None;
        let mut oracle_grams = None;
        if p.oracle {
            let runs: Runs = jobs
                .iter()
                .map(|j| (!j.baseline_only).then(|| oracle::best(&self.series, j)))
                .collect();
            progress(self.shifted_jobs());
            let s = score(&self.series, jobs, &runs, power);
            oracle_grams = Some(s.emissions_grams);
            policies.oracle = Some(simple(
                s,
                "brute-force optimum on the actual trace (perfect foresight, no cap)".into(),
            ));
        }
        if p.carbonshift {
            let (report, runs) = self.planner_policy(None, baseline, progress)?;
            policies.carbonshift = Some(report);
            planned = Some(runs);
        }
        if p.replan {
            let (report, runs) =
                self.planner_policy(Some(self.options.replan), baseline, progress)?;
            policies.carbonshift_replan = Some(report);
            planned.get_or_insert(runs);
        }
        let ours = policies
            .carbonshift
            .as_ref()
            .or(policies.carbonshift_replan.as_ref());
        // Comparable only where both see the actual trace without limits.
        let exact = !self.options.noisy()
            && self.options.horizon.is_none()
            && self.options.capacity.is_none();
        let carbonshift_vs_oracle = match (ours, oracle_grams) {
            (Some(c), Some(o)) if exact && o > 0.0 => Some((c.emissions_grams - o) / o),
            _ => None,
        };
        let f = &self.options;
        let report = Report {
            scenario: self.scenario.clone(),
            jobs: jobs.len(),
            skipped_jobs: self.jobs.skipped,
            trace: self.trace.clone(),
            forecast: ForecastInfo {
                error: f.error,
                error_model: if f.noisy() {
                    f.error_model.name()
                } else {
                    "perfect"
                },
                sigma: self.sigma(),
                seeds: self.seeds(),
                horizon: f.horizon.map(format_duration),
                replan: format_duration(f.replan),
            },
            power: PowerInfo {
                watts: power.watts(),
                pue: power.pue(),
                model: format!(
                    "constant {} W IT power per running job × PUE {}; emissions gCO2eq = kWh × g/kWh of the actual trace",
                    power.watts(),
                    power.pue()
                ),
            },
            capacity: f.capacity,
            policies,
            carbonshift_vs_oracle,
        };
        Ok(Outcome {
            report,
            run_now,
            planned,
        })
    }

    fn run_now_rule(&self) -> String {
        let mut rule = match self.scenario.name {
            "nightly" => "start at 01:00 as scheduled (no shifting)".to_string(),
            _ => "start at submission (no shifting)".to_string(),
        };
        if self.options.paper_compat && self.scenario.name == "ml" {
            rule.push_str("; as in the paper, at submission or 30 min later, whichever is cheaper");
        }
        rule
    }

    /// One noise seed of a planner policy: uncapped, and capped when a cap is set.
    fn one_seed(
        &self,
        k: u32,
        replan: Option<TimeDelta>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<SeedResult, ReplayError> {
        let o = &self.options;
        let jobs = self.jobs();
        let sigma = self.sigma();
        let noisy_forecast;
        let source = if !o.noisy() {
            Source::Fixed(&self.actual)
        } else {
            match o.error_model {
                ErrorModel::Constant => {
                    noisy_forecast = noise::constant(
                        self.actual.points(),
                        sigma,
                        &mut noise::rng(o.seed, 1 + u64::from(k)),
                    )?;
                    Source::Fixed(&noisy_forecast)
                }
                ErrorModel::LeadTime => Source::LeadTime {
                    actual: &self.series,
                    step: self.actual.median_step(),
                    sigma,
                    seed: o.seed,
                    k,
                },
            }
        };
        let mut config = PlanConfig {
            replan,
            horizon: o.horizon,
            capacity: None,
        };
        let free = policy::carbonshift(jobs, source, &config, progress)?;
        let mut result = SeedResult {
            k,
            free: score(&self.series, jobs, &free.runs, &o.power),
            capped: None,
            overflow: 0,
            fallbacks: free.fallbacks,
            plans: free.plans,
            runs: None,
        };
        let mut keep = free.runs;
        if o.capacity.is_some() {
            config.capacity = o.capacity;
            let capped = policy::carbonshift(jobs, source, &config, progress)?;
            result.capped = Some(score(&self.series, jobs, &capped.runs, &o.power));
            result.overflow = capped.overflow;
            result.fallbacks += capped.fallbacks;
            result.plans += capped.plans;
            keep = capped.runs;
        }
        // Only seed 0's runs are kept (for the chart).
        if k == 0 {
            result.runs = Some(keep);
        }
        Ok(result)
    }

    /// [`Replay::one_seed`] for every seed, on up to `options.threads` threads. The result does
    /// not depend on the number of threads: seeds are independent and aggregated in order.
    fn seeds_in_parallel(
        &self,
        replan: Option<TimeDelta>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<SeedResult>, ReplayError> {
        let seeds = self.seeds();
        let threads = self.options.threads.clamp(1, seeds as usize);
        if threads == 1 {
            return (0..seeds)
                .map(|k| self.one_seed(k, replan, progress))
                .collect();
        }
        let next = AtomicU32::new(0);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<u64>();
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let tx = tx.clone();
                    let next = &next;
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            if k >= seeds {
                                break;
                            }
                            let result = self.one_seed(k, replan, &mut |n| {
                                // The receiver lives until every worker is done.
                                let _ = tx.send(n);
                            });
                            let failed = result.is_err();
                            out.push(result);
                            if failed {
                                break;
                            }
                        }
                        out
                    })
                })
                .collect();
            drop(tx);
            for n in rx {
                progress(n);
            }
            let mut all = Vec::new();
            for handle in handles {
                match handle.join() {
                    Ok(results) => all.extend(results),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            all.into_iter().collect()
        })
    }

    /// Runs `carbonshift` (`replan: None`) or `carbonshiftReplan` over all seeds, capped and
    /// uncapped.
    fn planner_policy(
        &self,
        replan: Option<TimeDelta>,
        baseline: f64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(PolicyReport, Runs), ReplayError> {
        let o = &self.options;
        let seeds = self.seeds();
        let mut results = self.seeds_in_parallel(replan, progress)?;
        results.sort_by_key(|r| r.k);
        let free_scores: Vec<Score> = results.iter().map(|r| r.free).collect();
        let capped_scores: Vec<Score> = results.iter().filter_map(|r| r.capped).collect();
        let overflow: usize = results.iter().map(|r| r.overflow).sum();
        let fallbacks: usize = results.iter().map(|r| r.fallbacks).sum();
        let plans: usize = results.iter().map(|r| r.plans).sum();
        let first_runs = results.into_iter().find_map(|r| r.runs);
        let aggregate = |scores: &[Score]| {
            let n = scores.len().max(1) as f64;
            let mean = scores.iter().map(|s| s.emissions_grams).sum::<f64>() / n;
            let misses = scores.iter().map(|s| s.deadline_misses).sum::<usize>();
            let peak = scores.iter().map(|s| s.peak_concurrency).max().unwrap_or(0);
            let each: Vec<f64> = scores
                .iter()
                .map(|s| savings_percent(baseline, s.emissions_grams))
                .collect();
            (mean, misses, peak, each)
        };
        let (free_mean, free_misses, free_peak, free_each) = aggregate(&free_scores);
        let spread = |each: &[f64]| {
            (seeds > 1).then(|| SeedSpread {
                count: seeds,
                savings_percent_min: each.iter().copied().fold(f64::INFINITY, f64::min),
                savings_percent_max: each.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            })
        };
        let rule = match replan {
            None => {
                "the operator's planner, once at submission, on the forecast the scheduler sees"
            }
            Some(_) => {
                "the operator's planner at submission and again at every forecast refresh until the job has started (interruptible: finished)"
            }
        };
        let mut rule = rule.to_string();
        if let Some(r) = replan {
            rule.push_str(&format!(" (every {})", format_duration(r)));
        }
        let report = if o.capacity.is_some() {
            let (mean, misses, peak, each) = aggregate(&capped_scores);
            rule.push_str(
                "; under the cap with plan_with_capacity (overflow only to keep a deadline)",
            );
            PolicyReport {
                savings_percent: savings_percent(baseline, mean),
                emissions_grams: mean,
                deadline_misses: misses + free_misses,
                peak_concurrency: peak,
                seeds: spread(&each),
                overflow_jobs: Some(overflow as f64 / f64::from(seeds)),
                uncapped: Some(Uncapped {
                    savings_percent: savings_percent(baseline, free_mean),
                    emissions_grams: free_mean,
                    peak_concurrency: free_peak,
                }),
                planning_calls: Some(plans),
                fallbacks,
                rule,
            }
        } else {
            PolicyReport {
                savings_percent: savings_percent(baseline, free_mean),
                emissions_grams: free_mean,
                deadline_misses: free_misses,
                peak_concurrency: free_peak,
                seeds: spread(&free_each),
                overflow_jobs: None,
                uncapped: None,
                planning_calls: Some(plans),
                fallbacks,
                rule,
            }
        };
        Ok((report, first_runs.unwrap_or_default()))
    }
}
