//! `docs/results.md`, generated from real replays (`make results`): our figures beside the
//! published ones of "Let's Wait Awhile" (Wiesner et al., Middleware 2021) for Germany, Great
//! Britain and France, both scenarios, perfect and 5 % error forecasts; the oracle agreement;
//! re-planning versus planning once under both error models; a capacity cap; a job trace; timings.
//!
//! Every figure in the document comes from a run made while generating it; nothing is typed in
//! except the paper's published figures (from `../shared/data/README.md`).

use std::fmt::Write;
use std::time::{Duration, Instant};

use chrono::TimeDelta;

use crate::planner::{Capacity, Point, Power};
use crate::trace;

use super::report::Report;
use super::scenario::{self, DeadlineRule};
use super::{ErrorModel, Options, PolicySet, Replay, ReplayError, ScenarioSpec};

mod render;
#[cfg(test)]
mod tests;

use render::{Rendered, render};

/// Receives progress while the document is generated.
pub trait Observer {
    /// A new run of `total` units starts.
    fn start(&mut self, label: &str, total: u64);
    /// `units` more are done.
    fn advance(&mut self, units: u64);
}

/// The generated document.
#[derive(Debug, Clone, PartialEq)]
pub struct Markdown {
    /// The Markdown text.
    pub text: String,
    /// One line for the terminal.
    pub summary: String,
    /// Deadline misses over all runs (0 unless something is wrong).
    pub misses: usize,
}

/// The regions: label, built-in trace.
pub const REGIONS: [(&str, &str); 3] = [("DE", "de-2020"), ("GB", "gb-2020"), ("FR", "fr-2020")];

/// Scenario I windows, hours either side of 01:00.
pub const WINDOWS: [i64; 4] = [2, 4, 6, 8];

/// Published Scenario I savings (percent) for ±2, ±4, ±6, ±8 h: perfect forecasts.
pub const PAPER_I_PERFECT: [[f64; 4]; 3] = [
    [2.80, 3.97, 7.52, 13.76],
    [6.81, 8.61, 9.12, 10.41],
    [4.72, 6.09, 7.13, 7.79],
];

/// Published Scenario I savings with 5 % error.
pub const PAPER_I_ERROR: [[f64; 4]; 3] = [
    [1.40, 2.20, 5.46, 11.74],
    [4.77, 6.30, 6.74, 7.95],
    [3.00, 4.08, 5.00, 5.58],
];

/// Scenario II variants in the paper's column order.
pub const ML_VARIANTS: [(DeadlineRule, bool, &str); 4] = [
    (DeadlineRule::NextWorkday, false, "next workday, block"),
    (
        DeadlineRule::NextWorkday,
        true,
        "next workday, interruptible",
    ),
    (DeadlineRule::SemiWeekly, false, "semi-weekly, block"),
    (DeadlineRule::SemiWeekly, true, "semi-weekly, interruptible"),
];

/// Published Scenario II savings, perfect forecasts, in [`ML_VARIANTS`] order.
pub const PAPER_II_PERFECT: [[f64; 4]; 3] = [
    [5.93, 8.16, 14.13, 18.50],
    [6.57, 9.23, 14.75, 20.00],
    [4.79, 6.22, 11.15, 13.86],
];

/// Published Scenario II savings with 5 % error.
pub const PAPER_II_ERROR: [[f64; 4]; 3] = [
    [5.91, 7.93, 14.10, 18.10],
    [6.56, 9.03, 14.72, 19.65],
    [4.77, 5.92, 11.11, 13.32],
];

const ERROR: f64 = 0.05;
const SEEDS: u32 = 10;
/// Noise seeds per cell of the re-planning comparison: both policies see the same first draw of
/// each seed, so their difference is stable with few seeds (and lead-time re-planning is costly).
const REPLAN_SEEDS: u32 = 3;
/// ML job sets (seeds 0..) for the job-set spread.
const JOB_SETS: u64 = 10;

fn only(threshold: bool, carbonshift: bool, replan: bool, oracle: bool) -> PolicySet {
    PolicySet {
        threshold,
        carbonshift,
        replan,
        oracle,
    }
}

struct Runner<'a> {
    traces: Vec<(&'static str, Vec<Point>)>,
    power: Power,
    threads: usize,
    observer: &'a mut dyn Observer,
    now: &'a dyn Fn() -> Instant,
    misses: usize,
    runs: usize,
    agreement: Vec<(String, usize, f64)>,
}

impl Runner<'_> {
    fn options(&self, policies: PolicySet) -> Options {
        let mut o = Options::new(self.power);
        o.policies = policies;
        o.seeds = SEEDS;
        o.threads = self.threads;
        o
    }

    fn run(
        &mut self,
        region: usize,
        spec: &ScenarioSpec,
        options: Options,
    ) -> Result<(Report, Duration), ReplayError> {
        let (name, points) = &self.traces[region];
        let replay = Replay::prepare(name, points.clone(), spec, options)?;
        let label = format!(
            "[{}] {} {}",
            self.runs + 1,
            REGIONS[region].0,
            replay.scenario.description
        );
        self.observer.start(&label, replay.work());
        let started = (self.now)();
        let observer = &mut *self.observer;
        let outcome = replay.run(&mut |n| observer.advance(n))?;
        let elapsed = (self.now)().saturating_duration_since(started);
        self.runs += 1;
        self.misses += outcome.report.deadline_misses();
        Ok((outcome.report, elapsed))
    }

    /// Records the oracle agreement of a perfect-forecast run under `group`.
    fn agree(&mut self, group: &str, report: &Report) {
        if let Some(gap) = report.carbonshift_vs_oracle {
            match self.agreement.iter_mut().find(|a| a.0 == group) {
                Some(a) => {
                    a.1 += 1;
                    a.2 = a.2.max(gap.abs());
                }
                None => self.agreement.push((group.to_string(), 1, gap.abs())),
            }
        }
    }
}

fn saving(report: &Report, policy: &str) -> f64 {
    report
        .policies
        .iter()
        .find(|(n, _)| *n == policy)
        .map_or(f64::NAN, |(_, p)| p.savings_percent)
}

fn cell(ours: f64, paper: f64) -> String {
    format!("{ours:.2} ({:+.2})", ours - paper)
}

fn nightly(window: i64) -> ScenarioSpec {
    ScenarioSpec::Nightly {
        window: TimeDelta::hours(window),
        year: None,
    }
}

/// The scenarios of the spatial section: Scenario I ±2..8 h and Scenario II's four variants.
pub fn spatial_specs() -> Vec<(String, ScenarioSpec)> {
    let mut specs: Vec<(String, ScenarioSpec)> = WINDOWS
        .iter()
        .map(|&w| (format!("I, ±{w} h"), nightly(w)))
        .collect();
    for (rule, interruptible, label) in ML_VARIANTS {
        specs.push((
            format!("II, {label}"),
            ScenarioSpec::paper_ml(rule, interruptible, 0),
        ));
    }
    specs
}

/// The spatial section of `docs/results.md` ([`super::spatial::section`]) over the traces of
/// [`REGIONS`], with the operator's default margin.
pub fn spatial_section() -> Result<String, ReplayError> {
    let mut traces = Vec::new();
    for (_, name) in REGIONS {
        let csv = trace::builtin(name).map_or("", |b| b.csv);
        let points = trace::parse(csv, None).map_err(|e| ReplayError::Option(e.to_string()))?;
        traces.push((name.to_string(), points));
    }
    let regions = super::spatial::regions(traces)?;
    let capped: Vec<(String, ScenarioSpec)> = spatial_specs()
        .into_iter()
        .filter(|(label, _)| label.starts_with("II"))
        .collect();
    super::spatial::section(&regions, &spatial_specs(), &capped, super::DEFAULT_MARGIN)
}

/// Figures of one region and one scenario column, for the comparison tables.
#[derive(Debug, Clone, Copy, Default)]
struct Column {
    compat: f64,
    consistent: f64,
    oracle: f64,
    threshold: f64,
    compat_error: f64,
    consistent_error: f64,
}

/// Runs the whole matrix and renders `docs/results.md`.
pub fn generate(
    power: Power,
    threads: usize,
    observer: &mut dyn Observer,
    now: &dyn Fn() -> Instant,
) -> Result<Markdown, ReplayError> {
    let started = now();
    let mut traces = Vec::new();
    for (_, name) in REGIONS {
        let csv = trace::builtin(name).map_or("", |b| b.csv);
        let points = trace::parse(csv, None).map_err(|e| ReplayError::Option(e.to_string()))?;
        traces.push((name, points));
    }
    // How far the lowest value of each trace lies above zero, in σ of the 5 % error.
    let mut clamp_margin = f64::INFINITY;
    for (_, points) in &traces {
        let forecast = crate::planner::Forecast::new(points.clone())?;
        let sigma = ERROR * super::series::Series::from_forecast(&forecast).mean();
        let lowest = points
            .iter()
            .map(|p| p.intensity)
            .fold(f64::INFINITY, f64::min);
        if sigma > 0.0 {
            clamp_margin = clamp_margin.min(lowest / sigma);
        }
    }
    let mut r = Runner {
        traces,
        power,
        threads,
        observer,
        now,
        misses: 0,
        runs: 0,
        agreement: Vec::new(),
    };

    // Scenario I and II: perfect and 5 % error, consistent and paper-compatible.
    let mut one = [[Column::default(); 4]; 3];
    let mut two = [[Column::default(); 4]; 3];
    for region in 0..REGIONS.len() {
        for (c, &w) in WINDOWS.iter().enumerate() {
            let spec = nightly(w);
            one[region][c] = compare(&mut r, region, &spec, "nightly ±2..8 h")?;
        }
        for (c, &(rule, interruptible, _)) in ML_VARIANTS.iter().enumerate() {
            let spec = ScenarioSpec::paper_ml(rule, interruptible, 0);
            two[region][c] = compare(&mut r, region, &spec, "ml, 4 variants")?;
        }
    }

    // How much the random job set moves Scenario II: job sets 0..JOB_SETS, --paper-compat.
    let mut spread = [[(f64::INFINITY, 0.0, f64::NEG_INFINITY); 4]; 3];
    for (region, row) in spread.iter_mut().enumerate() {
        for (c, &(rule, interruptible, _)) in ML_VARIANTS.iter().enumerate() {
            let mut sum = 0.0;
            for seed in 0..JOB_SETS {
                let spec = ScenarioSpec::paper_ml(rule, interruptible, seed);
                let mut o = r.options(only(false, true, false, false));
                o.set_paper_compat(true);
                let (report, _) = r.run(region, &spec, o)?;
                let s = saving(&report, "carbonshift");
                sum += s;
                row[c].0 = row[c].0.min(s);
                row[c].2 = row[c].2.max(s);
            }
            row[c].1 = sum / JOB_SETS as f64;
        }
    }

    // Re-planning versus planning once.
    let replan_specs: [(&str, ScenarioSpec); 3] = [
        ("nightly ±8 h", nightly(8)),
        (
            "ml semi-weekly, block",
            ScenarioSpec::paper_ml(DeadlineRule::SemiWeekly, false, 0),
        ),
        (
            "ml semi-weekly, interruptible",
            ScenarioSpec::paper_ml(DeadlineRule::SemiWeekly, true, 0),
        ),
    ];
    let models: [(&str, f64, ErrorModel); 3] = [
        ("perfect", 0.0, ErrorModel::Constant),
        ("constant 5 %", ERROR, ErrorModel::Constant),
        ("lead-time 5 %", ERROR, ErrorModel::LeadTime),
    ];
    let horizons = [None, Some(TimeDelta::hours(48))];
    // (model index, horizon index, region, scenario label, once, replan)
    let mut replans: Vec<(usize, usize, usize, &str, f64, f64)> = Vec::new();
    for (m, &(_, error, model)) in models.iter().enumerate() {
        for (h, &horizon) in horizons.iter().enumerate() {
            for region in 0..REGIONS.len() {
                for (label, spec) in &replan_specs {
                    let mut o = r.options(only(false, true, true, false));
                    o.error = error;
                    o.error_model = model;
                    o.horizon = horizon;
                    o.seeds = REPLAN_SEEDS;
                    let (report, _) = r.run(region, spec, o)?;
                    replans.push((
                        m,
                        h,
                        region,
                        label,
                        saving(&report, "carbonshift"),
                        saving(&report, "carbonshiftReplan"),
                    ));
                }
            }
        }
    }

    // A job trace, every policy.
    let gaia = scenario::parse_jobs(scenario::BUILTIN_JOBS)
        .map_err(|e| ReplayError::Option(e.to_string()))?;
    let mut jobs_rows = Vec::new();
    for region in 0..REGIONS.len() {
        for interruptible in [false, true] {
            let spec = ScenarioSpec::Jobs {
                jobs: gaia.clone(),
                source: scenario::BUILTIN_JOBS_NAME.to_string(),
                slack: TimeDelta::hours(24),
                start: None,
                interruptible,
            };
            let (report, _) = r.run(region, &spec, r.options(PolicySet::ALL))?;
            r.agree("jobs trace (GAIA/PAI, 1,000 jobs, slack 24 h)", &report);
            jobs_rows.push((region, interruptible, report));
        }
    }

    // A capacity cap: no more jobs at once than without shifting.
    let mut capacity_rows = Vec::new();
    let capacity_specs: [(&str, ScenarioSpec); 3] = [
        (
            "ml semi-weekly, block",
            ScenarioSpec::paper_ml(DeadlineRule::SemiWeekly, false, 0),
        ),
        (
            "ml semi-weekly, interruptible",
            ScenarioSpec::paper_ml(DeadlineRule::SemiWeekly, true, 0),
        ),
        (
            "jobs trace, block, slack 24 h",
            ScenarioSpec::Jobs {
                jobs: gaia.clone(),
                source: scenario::BUILTIN_JOBS_NAME.to_string(),
                slack: TimeDelta::hours(24),
                start: None,
                interruptible: false,
            },
        ),
    ];
    for region in 0..REGIONS.len() {
        for (label, spec) in &capacity_specs {
            let (free, _) = r.run(region, spec, r.options(only(false, false, false, false)))?;
            let cap = free.policies.run_now.peak_concurrency.max(1);
            let mut o = r.options(only(false, true, true, false));
            o.capacity = Some(Capacity {
                limit: cap as f64,
                slot: TimeDelta::minutes(30),
            });
            let (capped, _) = r.run(region, spec, o)?;
            capacity_rows.push((region, *label, cap, capped));
        }
    }

    // Timings: the full ML scenario on one trace, each policy on its own.
    let mut timings = Vec::new();
    for (rule, interruptible, label) in [
        (DeadlineRule::NextWorkday, false, "next workday, block"),
        (DeadlineRule::SemiWeekly, true, "semi-weekly, interruptible"),
    ] {
        let spec = ScenarioSpec::paper_ml(rule, interruptible, 0);
        let mut row = Vec::new();
        for (name, set) in [
            ("runNow + threshold", only(true, false, false, false)),
            ("oracle", only(false, false, false, true)),
            ("carbonshift", only(false, true, false, false)),
            ("carbonshiftReplan", only(false, false, true, false)),
            ("all five", PolicySet::ALL),
        ] {
            let (_, elapsed) = r.run(0, &spec, r.options(set))?;
            row.push((name, elapsed));
        }
        timings.push((label, row));
    }
    let total = now().saturating_duration_since(started);

    let text = render(&Rendered {
        one: &one,
        two: &two,
        spread: &spread,
        agreement: &r.agreement,
        replans: &replans,
        models: &models.map(|m| m.0),
        jobs_rows: &jobs_rows,
        capacity_rows: &capacity_rows,
        timings: &timings,
        runs: r.runs,
        misses: r.misses,
        total,
        power,
        clamp_margin,
    });
    let text = format!("{text}\n{}", spatial_section()?);
    let worst = r.agreement.iter().map(|a| a.2).fold(0.0, f64::max);
    Ok(Markdown {
        text,
        summary: format!(
            "{} replays, {} deadline misses, carbonshift vs oracle at most {worst:.1e} apart, {:.0} s",
            r.runs,
            r.misses,
            total.as_secs_f64()
        ),
        misses: r.misses,
    })
}

/// Runs one scenario on one region four ways: consistent and paper-compatible, perfect and 5 %
/// constant error.
fn compare(
    r: &mut Runner<'_>,
    region: usize,
    spec: &ScenarioSpec,
    group: &str,
) -> Result<Column, ReplayError> {
    let mut col = Column::default();
    let (perfect, _) = r.run(region, spec, r.options(only(true, true, false, true)))?;
    r.agree(&format!("{group}, consistent"), &perfect);
    col.consistent = saving(&perfect, "carbonshift");
    col.oracle = saving(&perfect, "oracle");
    col.threshold = saving(&perfect, "threshold");
    let mut o = r.options(only(false, true, false, true));
    o.set_paper_compat(true);
    let (compat, _) = r.run(region, spec, o)?;
    r.agree(&format!("{group}, --paper-compat"), &compat);
    col.compat = saving(&compat, "carbonshift");
    for paper_compat in [false, true] {
        let mut o = r.options(only(false, true, false, false));
        o.error = ERROR;
        o.set_paper_compat(paper_compat);
        let (noisy, _) = r.run(region, spec, o)?;
        let s = saving(&noisy, "carbonshift");
        if paper_compat {
            col.compat_error = s;
        } else {
            col.consistent_error = s;
        }
    }
    Ok(col)
}

type ReplanRow<'a> = (usize, usize, usize, &'a str, f64, f64);
