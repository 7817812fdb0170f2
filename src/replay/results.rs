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
                o.paper_compat = true;
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
    o.paper_compat = true;
    let (compat, _) = r.run(region, spec, o)?;
    r.agree(&format!("{group}, --paper-compat"), &compat);
    col.compat = saving(&compat, "carbonshift");
    for paper_compat in [false, true] {
        let mut o = r.options(only(false, true, false, false));
        o.error = ERROR;
        o.paper_compat = paper_compat;
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

struct Rendered<'a> {
    one: &'a [[Column; 4]; 3],
    two: &'a [[Column; 4]; 3],
    spread: &'a [[(f64, f64, f64); 4]; 3],
    agreement: &'a [(String, usize, f64)],
    replans: &'a [ReplanRow<'a>],
    models: &'a [&'a str; 3],
    jobs_rows: &'a [(usize, bool, Report)],
    capacity_rows: &'a [(usize, &'a str, usize, Report)],
    timings: &'a [(&'a str, Vec<(&'a str, Duration)>)],
    runs: usize,
    misses: usize,
    total: Duration,
    power: Power,
    clamp_margin: f64,
}

fn comparison_table(
    out: &mut String,
    headers: &[&str],
    cols: &[[Column; 4]; 3],
    perfect: &[[f64; 4]; 3],
    error: &[[f64; 4]; 3],
) {
    let _ = writeln!(out, "| region | figures | {} |", headers.join(" | "));
    let _ = writeln!(out, "|---|---|{}", "---:|".repeat(headers.len()));
    for (region, (label, _)) in REGIONS.iter().enumerate() {
        let c = &cols[region];
        let p = &perfect[region];
        let e = &error[region];
        let row = |f: &dyn Fn(usize) -> String| (0..4).map(f).collect::<Vec<_>>().join(" | ");
        let _ = writeln!(
            out,
            "| {label} | paper, perfect | {} |",
            row(&|i| format!("{:.2}", p[i]))
        );
        let _ = writeln!(
            out,
            "| | ours `--paper-compat`, perfect (Δ paper) | {} |",
            row(&|i| cell(c[i].compat, p[i]))
        );
        let _ = writeln!(
            out,
            "| | ours consistent, perfect (Δ paper) | {} |",
            row(&|i| cell(c[i].consistent, p[i]))
        );
        let _ = writeln!(
            out,
            "| | oracle, consistent | {} |",
            row(&|i| format!("{:.2}", c[i].oracle))
        );
        let _ = writeln!(
            out,
            "| | threshold policy, consistent | {} |",
            row(&|i| format!("{:.2}", c[i].threshold))
        );
        let _ = writeln!(
            out,
            "| | paper, 5 % error | {} |",
            row(&|i| format!("{:.2}", e[i]))
        );
        let _ = writeln!(
            out,
            "| | ours `--paper-compat`, 5 % error (Δ paper) | {} |",
            row(&|i| cell(c[i].compat_error, e[i]))
        );
        let _ = writeln!(
            out,
            "| | ours consistent, 5 % error (Δ paper) | {} |",
            row(&|i| cell(c[i].consistent_error, e[i]))
        );
    }
}

fn max_abs_delta(cols: &[[Column; 4]; 3], paper: &[[f64; 4]; 3], f: fn(&Column) -> f64) -> f64 {
    (0..3)
        .flat_map(|r| (0..4).map(move |i| (r, i)))
        .map(|(r, i)| (f(&cols[r][i]) - paper[r][i]).abs())
        .fold(0.0, f64::max)
}

fn render(d: &Rendered<'_>) -> String {
    let mut out = String::new();
    let o = &mut out;
    let _ = writeln!(o, "# carbonshift replay: results on real grid traces\n");
    let _ = writeln!(
        o,
        "Generated by `make results` (`carbonshift replay --results docs/results.md`, release build) from {} replays; \
         do not edit by hand. Traces: the built-in `de-2020`, `gb-2020` and `fr-2020` (Wiesner et al., \"Let's Wait \
         Awhile: How Temporal Workload Shifting Can Reduce Carbon Emissions in the Cloud\", Middleware 2021; \
         ENTSO-E data, average intensity). Deadline misses over all runs: **{}**.\n",
        d.runs, d.misses
    );
    let _ = writeln!(
        o,
        "Power model: a constant {} W of IT power per running job at PUE {} (the paper uses a constant power per \
         job too), so emissions in gCO2eq are kWh × g/kWh of the actual trace; savings percentages do not depend on \
         the constant. Savings are emissions avoided versus `runNow` (no shifting), in percent. \"5 % error\" is the \
         paper's model: Gaussian noise with σ = 5 % of the trace mean added once per seed to the forecast the \
         scheduler sees, {SEEDS} seeds averaged; emissions are always scored on the actual trace.\n",
        d.power.watts(),
        d.power.pue()
    );
    let _ = writeln!(o, "Two ways of replaying are shown:\n");
    let _ = writeln!(
        o,
        "- **consistent** (the default): the trace as it is (15-minute steps for DE, 30/15 for GB), every day's job \
         in both baseline and shifted runs, data before 1 January used where a window reaches it, no job finishing \
         after its deadline, the baseline starting at submission;"
    );
    let _ = writeln!(
        o,
        "- **`--paper-compat`**: the paper's simulator — only the :00 and :30 values from 1 January 2020 00:00 on (a \
         30-minute start grid), Scenario I with 365 jobs whose 1 January job is skipped in shifted runs but kept in \
         the baseline, Scenario II with one extra 30-minute slot per window and a baseline that may start 30 minutes \
         late when that is cheaper.\n"
    );

    // Scenario I.
    let _ = writeln!(
        o,
        "## Scenario I: one 30-minute job a day at 01:00, ±w hours\n"
    );
    let _ = writeln!(
        o,
        "366 jobs (365 with `--paper-compat`), 2020, `carbonshift` (plan once at submission, unlimited horizon).\n"
    );
    comparison_table(
        o,
        &["±2 h", "±4 h", "±6 h", "±8 h"],
        d.one,
        &PAPER_I_PERFECT,
        &PAPER_I_ERROR,
    );
    let _ = writeln!(
        o,
        "\nLargest distance to the published figures, perfect forecasts: `--paper-compat` {:.2} points, consistent \
         {:.2} points. With 5 % error: `--paper-compat` {:.2}, consistent {:.2} points.\n",
        max_abs_delta(d.one, &PAPER_I_PERFECT, |c| c.compat),
        max_abs_delta(d.one, &PAPER_I_PERFECT, |c| c.consistent),
        max_abs_delta(d.one, &PAPER_I_ERROR, |c| c.compat_error),
        max_abs_delta(d.one, &PAPER_I_ERROR, |c| c.consistent_error),
    );

    let negative = (0..3)
        .flat_map(|r| (0..4).map(move |i| (r, i)))
        .filter(|&(r, i)| d.one[r][i].threshold < 0.0)
        .count();
    let _ = writeln!(
        o,
        "The threshold policy (start at the first moment the measured intensity is at or below the 25th percentile \
         of the previous 7 days, else at the latest start) loses to running at once in {negative} of the 12 Scenario I \
         cases: when the night never reaches the threshold it runs at the latest start, 01:00 + w, which lies in the \
         morning ramp. It looks only at the present, while the planner compares the whole window.\n"
    );

    // Scenario II.
    let _ = writeln!(o, "## Scenario II: 3,387 ML training jobs\n");
    let _ = writeln!(
        o,
        "4–90 h jobs submitted on 2020 workdays between 09:00 and 16:30 (job set drawn with ChaCha8, seed 0), \
         `carbonshift` (plan once at submission, unlimited horizon); block = one contiguous run, interruptible = \
         any pieces before the deadline.\n"
    );
    comparison_table(
        o,
        &ML_VARIANTS.map(|v| v.2),
        d.two,
        &PAPER_II_PERFECT,
        &PAPER_II_ERROR,
    );
    let _ = writeln!(
        o,
        "\nLargest distance to the published figures, perfect forecasts: `--paper-compat` {:.2} points, consistent \
         {:.2} points. With 5 % error: `--paper-compat` {:.2}, consistent {:.2} points.\n",
        max_abs_delta(d.two, &PAPER_II_PERFECT, |c| c.compat),
        max_abs_delta(d.two, &PAPER_II_PERFECT, |c| c.consistent),
        max_abs_delta(d.two, &PAPER_II_ERROR, |c| c.compat_error),
        max_abs_delta(d.two, &PAPER_II_ERROR, |c| c.consistent_error),
    );

    let _ = writeln!(
        o,
        "How much the random job set alone moves these figures: {JOB_SETS} job sets (seeds 0–{}) drawn by the same \
         procedure, `--paper-compat`, perfect forecasts — lowest / mean / highest saving, and whether the published \
         figure lies in that range:\n",
        JOB_SETS - 1
    );
    let _ = writeln!(o, "| region | {} |", ML_VARIANTS.map(|v| v.2).join(" | "));
    let _ = writeln!(o, "|---|{}", "---:|".repeat(4));
    for (region, (label, _)) in REGIONS.iter().enumerate() {
        let cells: Vec<String> = (0..4)
            .map(|i| {
                let (lo, mean, hi) = d.spread[region][i];
                let paper = PAPER_II_PERFECT[region][i];
                let inside = if (lo..=hi).contains(&paper) {
                    "paper inside"
                } else {
                    "paper outside"
                };
                format!("{lo:.2} / {mean:.2} / {hi:.2} ({inside})")
            })
            .collect();
        let _ = writeln!(o, "| {label} | {} |", cells.join(" | "));
    }
    let _ = writeln!(o);

    // Oracle agreement.
    let _ = writeln!(o, "## carbonshift against the oracle\n");
    let _ = writeln!(
        o,
        "With perfect forecasts, an unlimited horizon and no cap, `carbonshift` (the operator's planner, exact \
         fixed-point arithmetic) and `oracle` (an independent brute-force search in floating point) must choose \
         equally good windows. Largest relative difference of total emissions over the full year:\n"
    );
    let _ = writeln!(
        o,
        "| runs | replays | max \\|carbonshift − oracle\\| / oracle |"
    );
    let _ = writeln!(o, "|---|---:|---:|");
    for (group, n, gap) in d.agreement {
        let _ = writeln!(o, "| {group} | {n} | {gap:.1e} |");
    }
    let _ = writeln!(o);

    // Re-planning.
    let _ = writeln!(o, "## Re-planning versus planning once\n");
    let _ = writeln!(
        o,
        "`carbonshift` plans once at submission (like the paper); `carbonshiftReplan` plans again every 30 minutes \
         as new forecasts arrive, until the job has started (an interruptible job: until it has finished), like the \
         operator. Error models: **constant** — one noisy trace per seed (the paper's), so a later look sees the \
         same numbers; **lead-time** — every planning call sees a fresh forecast whose σ grows with lead time, \
         5 % × √min(1, lead/24 h) of the trace mean, so the next hours are nearly right. Horizon: how far ahead the \
         scheduler sees. Savings in percent, mean of {REPLAN_SEEDS} seeds for the noisy models (both policies \
         see the same first forecast of each seed, so the difference is stable).\n"
    );
    let _ = writeln!(
        o,
        "| forecast | horizon | region | scenario | plan once | re-plan | re-plan − once |"
    );
    let _ = writeln!(o, "|---|---|---|---|---:|---:|---:|");
    for &(m, h, region, label, once, replan) in d.replans {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {label} | {once:.2} | {replan:.2} | {:+.2} |",
            d.models[m],
            if h == 0 { "unlimited" } else { "48 h" },
            REGIONS[region].0,
            replan - once
        );
    }
    let _ = writeln!(
        o,
        "\n**Closing note: does re-planning beat planning once?**\n"
    );
    for (m, model) in d.models.iter().enumerate() {
        for h in 0..2 {
            let diffs: Vec<f64> = d
                .replans
                .iter()
                .filter(|x| x.0 == m && x.1 == h)
                .map(|x| x.5 - x.4)
                .collect();
            if diffs.is_empty() {
                continue;
            }
            let horizon = if h == 0 {
                "unlimited horizon"
            } else {
                "48 h horizon"
            };
            let verdict = verdict(&diffs);
            let _ = writeln!(o, "- {model}, {horizon}: {verdict}.");
        }
    }
    let _ = writeln!(o);

    // Jobs.
    let _ = writeln!(
        o,
        "## A job trace: 1,000 jobs of Alibaba's PAI GPU cluster\n"
    );
    let _ = writeln!(
        o,
        "`--scenario jobs` with the built-in `data/jobs/gaia_pai_1k_jobs.csv` (one week of arrivals and run times), \
         arrivals counted from the trace's first timestamp (2019-12-20), each job may start up to 24 h late; \
         perfect forecasts.\n"
    );
    let _ = writeln!(
        o,
        "| region | jobs | threshold | carbonshift | carbonshiftReplan | oracle | peak run-now / carbonshift |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|");
    for (region, interruptible, report) in d.jobs_rows {
        let peak = |n: &str| {
            report
                .policies
                .iter()
                .find(|(x, _)| *x == n)
                .map_or(0, |(_, p)| p.peak_concurrency)
        };
        let _ = writeln!(
            o,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} / {} |",
            REGIONS[*region].0,
            if *interruptible {
                "interruptible"
            } else {
                "block"
            },
            saving(report, "threshold"),
            saving(report, "carbonshift"),
            saving(report, "carbonshiftReplan"),
            saving(report, "oracle"),
            peak("runNow"),
            peak("carbonshift"),
        );
    }
    let _ = writeln!(o);

    let peaks: Vec<(usize, usize)> = d
        .jobs_rows
        .iter()
        .map(|(_, _, report)| {
            let peak = |n: &str| {
                report
                    .policies
                    .iter()
                    .find(|(x, _)| *x == n)
                    .map_or(0, |(_, p)| p.peak_concurrency)
            };
            (peak("runNow"), peak("carbonshift"))
        })
        .collect();
    let low = peaks.iter().map(|p| p.1).min().unwrap_or(0);
    let high = peaks.iter().map(|p| p.1).max().unwrap_or(0);
    let before = peaks.iter().map(|p| p.0).max().unwrap_or(0);
    let _ = writeln!(
        o,
        "Shifting short jobs concentrates them in the cleanest hours: without a cap, {low}–{high} jobs run at once \
         at the peak instead of {before}. The capacity ledger below bounds that.\n"
    );

    // Capacity.
    let _ = writeln!(o, "## Under a capacity cap\n");
    let _ = writeln!(
        o,
        "Scenario II with semi-weekly deadlines and the job trace, perfect forecasts, with the cap set to the most \
         jobs that run at once without shifting (so shifting never makes the cluster busier than it already is). The planner uses the \
         capacity ledger (`plan_with_capacity`); a job runs above the cap only when nothing else keeps its deadline \
         (overflow).\n"
    );
    let _ = writeln!(
        o,
        "| region | scenario | cap | policy | saving uncapped | peak uncapped | saving capped | peak capped | overflow jobs |"
    );
    let _ = writeln!(o, "|---|---|---:|---|---:|---:|---:|---:|---:|");
    for (region, label, cap, report) in d.capacity_rows {
        for (name, p) in report.policies.iter().filter(|(n, _)| *n != "runNow") {
            let u = p.uncapped.unwrap_or(super::report::Uncapped {
                savings_percent: f64::NAN,
                emissions_grams: f64::NAN,
                peak_concurrency: 0,
            });
            let _ = writeln!(
                o,
                "| {} | {label} | {cap} | {name} | {:.2} | {} | {:.2} | {} | {:.1} |",
                REGIONS[*region].0,
                u.savings_percent,
                u.peak_concurrency,
                p.savings_percent,
                p.peak_concurrency,
                p.overflow_jobs.unwrap_or(0.0)
            );
        }
    }
    let _ = writeln!(o);

    // Timings.
    let _ = writeln!(o, "## Timings\n");
    let _ = writeln!(
        o,
        "The full Scenario II (3,387 jobs, one year, the DE trace with 15-minute steps, perfect forecasts), one run \
         per policy set, measured while generating this page (release build, one core; wall-clock, includes \
         building the forecast and the job set). The criterion benchmark is `cargo bench --bench replay`.\n"
    );
    let _ = writeln!(o, "| scenario | policies | seconds |");
    let _ = writeln!(o, "|---|---|---:|");
    for (label, row) in d.timings {
        for (name, elapsed) in row {
            let _ = writeln!(o, "| {label} | {name} | {:.3} |", elapsed.as_secs_f64());
        }
    }
    let _ = writeln!(
        o,
        "\nGenerating this page ({} replays) took {:.0} s.\n",
        d.runs,
        d.total.as_secs_f64()
    );
    out.push_str(&differences(d));
    out
}

/// Whether re-planning beats planning once, from the per-case differences (re-plan − once, points).
fn verdict(diffs: &[f64]) -> String {
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n.max(1) as f64;
    let lo = diffs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = diffs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if diffs.iter().all(|x| x.abs() < 1e-9) {
        "re-planning changes nothing (Δ = 0 in every case): the forecast a waiting job sees never \
         changes, so neither does its plan"
            .to_string()
    } else if mean > 0.0 {
        format!(
            "re-planning beats plan-once by {mean:.2} points on average (from {lo:+.2} to {hi:+.2} over the {n} cases)"
        )
    } else {
        format!(
            "re-planning does not beat plan-once: {mean:+.2} points on average (from {lo:+.2} to {hi:+.2} over the {n} cases)"
        )
    }
}

/// The closing explanation, with the figures it cites taken from the runs.
fn differences(d: &Rendered<'_>) -> String {
    let cells = || (0..3).flat_map(|r| (0..4).map(move |i| (r, i)));
    let gap_one: Vec<f64> = cells()
        .map(|(r, i)| d.one[r][i].compat - d.one[r][i].consistent)
        .collect();
    let lo = gap_one.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = gap_one.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let inside = cells()
        .filter(|&(r, i)| {
            let (a, _, b) = d.spread[r][i];
            (a..=b).contains(&PAPER_II_PERFECT[r][i])
        })
        .count();
    let width = cells()
        .map(|(r, i)| d.spread[r][i].2 - d.spread[r][i].0)
        .fold(0.0, f64::max);
    let compat_vs_consistent = cells()
        .map(|(r, i)| (d.two[r][i].compat - d.two[r][i].consistent).abs())
        .fold(0.0, f64::max);
    let above_mean = cells()
        .filter(|&(r, i)| PAPER_II_PERFECT[r][i] > d.spread[r][i].1)
        .count();
    let mut out = String::from("## Why our figures differ from the paper's\n\n");
    let _ = writeln!(
        out,
        "- **Sampling and the first day (Scenario I).** The paper keeps only the :00 and :30 values of each trace, so \
         a DE value at 00:00 stands for the whole half hour although the trace has another value at 00:15 (and GB's \
         15-minute data from November on is halved too); and it cuts every trace at 1 January 00:00, so a shifted run \
         cannot start 1 January's job (its window would begin in 2019) and drops it, while the no-shift baseline \
         keeps it — dropping a job from one side only inflates the saving. `--paper-compat` does both and matches \
         every published figure to the second decimal. The consistent replay (every value with its real duration, \
         starts at any boundary, every day on both sides, December 2019 data used) is {:.2}–{:.2} points below it.",
        lo, hi
    );
    let _ = writeln!(
        out,
        "- **The extra slot and the two-slot baseline (Scenario II).** The paper's windows hold one 30-minute slot \
         more than its deadline rules allow, so a job may finish 30 minutes late, and its \"no shifting\" baseline may \
         itself start 30 minutes late when that is cheaper (which lowers the saving). The consistent replay lets no \
         job finish after its deadline and starts the baseline at submission; `--paper-compat` reproduces both. The \
         two effects nearly cancel: the two rows of each region differ by at most {compat_vs_consistent:.2} points."
    );
    let _ = writeln!(
        out,
        "- **The job set (Scenario II).** The paper draws its 3,387 jobs with numpy's generator (seed 0); we follow \
         the same procedure — counts per workday from a multinomial, submission times uniform on 09:00..16:30 and \
         durations uniform on 240..5370 minutes, both in 30-minute steps — with ChaCha8 (seed 0), so ours is a \
         different random job set. Across our job sets 0–{} the saving of one variant spans up to {width:.2} points; \
         the published figure lies inside our range in {inside} of 12 cases and above our mean in {above_mean} of 12 \
         (all variants share one job set, so they move together): the paper's draw sits in the upper part of the \
         range and our seed 0 in the lower part. This is the remaining Scenario II difference, also with \
         `--paper-compat`.",
        JOB_SETS - 1
    );
    let _ = writeln!(
        out,
        "- **Forecast noise.** Our 5 % error runs draw their own noise (ChaCha8, {SEEDS} seeds) rather than numpy's, \
         so they match the paper in distribution, not draw for draw. σ is 5 % of the mean of the trace the scheduler \
         sees (the whole trace; with `--paper-compat` the cut, sampled trace, as in the paper). Noisy values are \
         clamped at 0 g/kWh, the planner's lower bound; the lowest value of these traces lies {:.1} σ above zero, so \
         the clamp practically never acts.",
        d.clamp_margin
    );
    out.push_str(
        "- **Interruptible ties.** The paper's interruptible scheduler takes every slot at or below the n-th cheapest \
         value, which can run a job longer than its duration on ties; ours runs exactly the duration.\n",
    );
    out.push_str(
        "- **Continuous time.** Our planner and oracle search starts in continuous time (any trace boundary, or a \
         boundary minus the duration); on a 30-minute trace with 30-minute-aligned jobs this is the paper's \
         30-minute grid.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_show_the_difference_to_the_paper() {
        assert_eq!(cell(13.514, 13.76), "13.51 (-0.25)");
        assert_eq!(cell(2.8, 2.8), "2.80 (+0.00)");
    }

    #[test]
    fn verdicts_follow_the_differences() {
        assert!(verdict(&[0.0, 0.0]).starts_with("re-planning changes nothing"));
        assert_eq!(
            verdict(&[0.5, 1.5, 0.0]),
            "re-planning beats plan-once by 0.67 points on average (from +0.00 to +1.50 over the 3 cases)"
        );
        assert!(verdict(&[-0.5, 0.1]).starts_with("re-planning does not beat plan-once: -0.20"));
    }

    #[test]
    fn largest_distance_to_the_paper() {
        let mut cols = [[Column::default(); 4]; 3];
        cols[1][2].compat = PAPER_I_PERFECT[1][2] - 0.3;
        let paper = [[0.0; 4]; 3];
        let d = max_abs_delta(&cols, &PAPER_I_PERFECT, |c| c.compat);
        assert!((d - PAPER_I_PERFECT[0][3]).abs() < 1e-12, "{d}");
        let zero = max_abs_delta(&[[Column::default(); 4]; 3], &paper, |c| c.compat);
        assert_eq!(zero, 0.0);
    }
}
