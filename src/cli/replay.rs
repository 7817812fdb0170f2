//! `carbonshift replay`: replays the planner over a year of real grid data and a realistic job
//! set, and reports the carbon saved beside running at once, a threshold policy and the
//! perfect-foresight optimum. No cluster, no keys: the default trace is compiled in.
//!
//! The shell only reads files, shows progress on stderr and prints; the replay itself is
//! [`crate::replay`]. Exit codes: 0, 1 if any job missed its deadline (a bug), 2 on bad
//! arguments or input.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use clap::ArgGroup;
use thiserror::Error;

use crate::planner::{Capacity, EnergyError, Power};
use crate::replay::plot::{self, Chart};
use crate::replay::scenario::{self, DeadlineRule, JobsError, ML_JOBS};
use crate::replay::{
    ErrorModel, Options, Outcome, PolicySet, Replay, ReplayError, ScenarioSpec, results, spatial,
};
use crate::units::{duration_arg, duration_or_zero_arg, power_arg, timestamp_arg};

use super::{TraceLoadError, TraceSource, load_trace, write_json};

/// The built-in trace used when neither --trace nor --builtin is given.
pub const DEFAULT_BUILTIN: &str = "de-2020";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    Table,
    /// One JSON object for machines: `{scenario, jobs, policies: {NAME: {...}}, ...}`.
    Json,
}

/// The job sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// One 30-minute job a day at 01:00, shiftable by --window either way (the paper's Scenario I).
    Nightly,
    /// 3,387 ML training jobs of 4-90 h on workdays with --deadline rules (Scenario II).
    Ml,
    /// Jobs from a trace (--jobs), each may wait --slack.
    Jobs,
}

/// Examples shown by `carbonshift replay --help`.
const EXAMPLES: &str = "Examples:
  # A year of German grid data, one nightly job that may move 8 hours either way, with a chart:
  carbonshift replay --builtin de-2020 --scenario nightly --window 8h --plot replay.svg

  # 3,387 ML training jobs due the next workday, on Great Britain's 2020, with 5 % forecast error:
  carbonshift replay --builtin gb-2020 --scenario ml --deadline next-workday --forecast-error 0.05 --seeds 10

  # Your own job trace (arrival_time and length in seconds) on your own intensity trace, as JSON:
  carbonshift replay --trace site.csv --column intensity --jobs jobs.csv --slack 12h --output json

  # The comparison with the paper (Wiesner et al., Middleware 2021), as Markdown:
  carbonshift replay --results docs/results.md

Exit codes: 0, 1 if any job missed its deadline (a bug), 2 on bad arguments or input (checked, output
files included, before any work starts).";

/// Arguments of `carbonshift replay`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
#[command(group(ArgGroup::new("source").args(["trace", "builtin"])))]
pub struct Args {
    /// CSV carbon-intensity trace (timestamp in the first column, gCO2eq/kWh in the second or in
    /// --column).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// A trace compiled into the binary: gb-2020, de-2020 (default), fr-2020, caiso-north-2023-06.
    #[arg(long, value_name = "NAME")]
    pub builtin: Option<String>,
    /// The intensity column of --trace, by header name.
    #[arg(long, value_name = "NAME")]
    pub column: Option<String>,
    /// The job set (default: nightly, or jobs with --jobs).
    #[arg(long, value_enum)]
    pub scenario: Option<ScenarioKind>,
    /// nightly: how far the 01:00 job may move either way [default: 8h].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_or_zero_arg)]
    pub window: Option<TimeDelta>,
    /// nightly, ml: the calendar year (default: the first one the trace fully covers).
    #[arg(long, value_name = "YEAR")]
    pub year: Option<i32>,
    /// ml: the deadline rule [default: next-workday].
    #[arg(long, value_enum)]
    pub deadline: Option<DeadlineRule>,
    /// ml, jobs: jobs may pause and resume (planned in pieces).
    #[arg(long)]
    pub interruptible: bool,
    /// jobs: CSV job trace with arrival_time and length in seconds (default: the built-in
    /// 1,000 jobs of Alibaba's PAI trace).
    #[arg(long, value_name = "FILE")]
    pub jobs: Option<PathBuf>,
    /// jobs: how long a job may wait after arriving [default: 24h].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_or_zero_arg)]
    pub slack: Option<TimeDelta>,
    /// jobs: when arrival 0 is (default: the trace's first timestamp).
    #[arg(long, value_name = "TIME", value_parser = timestamp_arg)]
    pub start: Option<DateTime<Utc>>,
    /// Seed of the ml job set and of the forecast noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Policies to run besides runNow (comma-separated): threshold, carbonshift,
    /// carbonshiftReplan, oracle [default: all].
    #[arg(long, value_name = "LIST", value_parser = PolicySet::parse)]
    pub policies: Option<PolicySet>,
    /// threshold: a fixed threshold in g/kWh (default: the 25th percentile of the previous 7
    /// days).
    #[arg(long, value_name = "G_PER_KWH")]
    pub threshold: Option<f64>,
    /// carbonshiftReplan: re-plan at this interval, as new forecasts arrive.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_arg, default_value = "30m")]
    pub replan: TimeDelta,
    /// Forecast error: Gaussian noise with σ = this fraction of the trace mean (0.05 = 5 %).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub forecast_error: f64,
    /// Noise seeds to average over (with --forecast-error).
    #[arg(long, default_value_t = 10)]
    pub seeds: u32,
    /// constant: one noisy trace per seed (the paper's); lead-time: a fresh forecast at every
    /// planning call, σ growing with lead time up to 24 h.
    #[arg(long, value_enum, default_value_t = ErrorModel::Constant)]
    pub error_model: ErrorModel,
    /// How far ahead the scheduler sees (default: unlimited).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_arg)]
    pub horizon: Option<TimeDelta>,
    /// Cap on concurrent jobs for the carbonshift policies (overflow only to keep a deadline).
    #[arg(long, value_name = "N")]
    pub capacity: Option<u32>,
    /// Slot length of the capacity ledger.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_arg, default_value = "30m")]
    pub capacity_slot: TimeDelta,
    /// IT power per running job, e.g. 1kW or 700W.
    #[arg(long, value_name = "POWER", value_parser = power_arg, default_value = "1kW")]
    pub power: f64,
    /// Power usage effectiveness of the facility (1 counts IT power only).
    #[arg(long, value_name = "RATIO", default_value_t = 1.0)]
    pub pue: f64,
    /// The operator's safety margin: a job starts at the latest this long before its latest
    /// start (default: 5m, the operator's default; 0s with --paper-compat).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub margin: Option<TimeDelta>,
    /// Reproduce the paper's simulator: 30-min samples from 1 January, the first day skipped in
    /// shifted runs only (nightly), one extra 30-min slot per window and a two-slot baseline (ml).
    #[arg(long)]
    pub paper_compat: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Write an SVG chart: the intensity curve with the run-now and the chosen windows.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// First instant of the chart (default: midnight before the first job).
    #[arg(long, value_name = "TIME", value_parser = timestamp_arg)]
    pub plot_from: Option<DateTime<Utc>>,
    /// Days shown in the chart (1 to 400).
    #[arg(long, value_name = "DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=400))]
    pub plot_days: u32,
    /// Run the whole comparison with the paper (DE, GB, FR; both scenarios; perfect and 5 %
    /// error; re-planning under both error models) and write it as Markdown to FILE.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["trace", "builtin", "scenario", "jobs", "plot", "output"])]
    pub results: Option<PathBuf>,
    /// Spatial + temporal shifting: built-in traces (comma-separated, for example
    /// de-2020,fr-2020,gb-2020), each a region a job may run in; scores temporal only, spatial only
    /// (at once, cleanest region), both and the oracle against running at once in each region.
    /// --scenario nightly or ml; --capacity caps each region; perfect forecasts.
    #[arg(long, value_name = "LIST", value_delimiter = ',', conflicts_with_all = ["trace", "builtin", "results", "plot", "jobs"])]
    pub regions: Option<Vec<String>>,
    /// Regenerate only the spatial section of FILE (docs/results.md): Scenario I and II over DE,
    /// GB and FR, between its markers (appended when absent).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["trace", "builtin", "scenario", "jobs", "plot", "output", "results", "regions"])]
    pub results_spatial: Option<PathBuf>,
    /// Threads for noise seeds (default: the available cores; results do not depend on it).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The threads to use: `--threads`, or the available cores.
fn threads(args: &Args) -> usize {
    args.threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Why `replay` could not run (exit code 2).
#[derive(Debug, Error)]
pub enum ReplayCliError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The trace cannot be read, is malformed or is no built-in trace.
    #[error(transparent)]
    Trace(#[from] TraceLoadError),
    /// The job trace is malformed.
    #[error("{name}: {error}")]
    Jobs {
        /// The file.
        name: String,
        /// What is wrong, with the line number.
        error: JobsError,
    },
    /// A flag that does not apply to the chosen scenario.
    #[error("{flag} applies to --scenario {applies}, not {chosen}")]
    Inapplicable {
        /// The flag.
        flag: &'static str,
        /// Where it applies.
        applies: &'static str,
        /// The chosen scenario.
        chosen: &'static str,
    },
    /// Invalid --power or --pue.
    #[error("{0}")]
    Power(#[from] EnergyError),
    /// The replay cannot run.
    #[error("{0}")]
    Replay(#[from] ReplayError),
    /// The output could not be serialised or written.
    #[error("cannot write the output: {0}")]
    Output(String),
    /// The chart would show no part of the trace.
    #[error(
        "--plot-from {from} with --plot-days {days} shows nothing of the trace {name}, which covers {trace_from} to {trace_to}"
    )]
    PlotOutsideTrace {
        /// --plot-from.
        from: DateTime<Utc>,
        /// --plot-days.
        days: u32,
        /// The trace's name.
        name: String,
        /// The trace's first instant.
        trace_from: DateTime<Utc>,
        /// The trace's end.
        trace_to: DateTime<Utc>,
    },
}

/// Runs the replay and prints the result.
pub fn run(args: Args) -> ExitCode {
    // Output files are checked before the work: a long replay must not end in "cannot write".
    for path in args.results.iter().chain(&args.plot) {
        if let Err(e) = check_writable(path) {
            return super::usage_error(e);
        }
    }
    let mut progress = Progress::new(!args.quiet && std::io::stderr().is_terminal());
    let result = match (&args.results, &args.results_spatial, &args.regions) {
        (Some(path), _, _) => write_results(&args, path, &mut progress),
        (None, Some(path), _) => write_spatial_section(path),
        (None, None, Some(regions)) => {
            execute_regions(&args, regions, &mut std::io::stdout().lock())
        }
        (None, None, None) => execute(&args, &mut std::io::stdout().lock(), &mut progress),
    };
    progress.clear();
    result.unwrap_or_else(super::usage_error)
}

/// A progress bar on stderr (only when stderr is a terminal).
pub struct Progress {
    enabled: bool,
    label: String,
    total: u64,
    done: u64,
    shown: Option<u64>,
}

impl Progress {
    /// A bar that draws only when `enabled`.
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            label: String::new(),
            total: 0,
            done: 0,
            shown: None,
        }
    }

    /// Starts a new task of `total` units.
    pub fn start(&mut self, label: &str, total: u64) {
        self.label = label.to_string();
        self.total = total.max(1);
        self.done = 0;
        self.shown = None;
        self.advance(0);
    }

    /// Adds `units` done.
    pub fn advance(&mut self, units: u64) {
        self.done = (self.done + units).min(self.total);
        let percent = self.done * 100 / self.total.max(1);
        if self.enabled && self.shown != Some(percent) {
            self.shown = Some(percent);
            let filled = (percent * 30 / 100) as usize;
            eprint!(
                "\r{:<40} [{}{}] {percent:>3} %",
                self.label.chars().take(40).collect::<String>(),
                "#".repeat(filled),
                " ".repeat(30 - filled)
            );
            let _ = std::io::stderr().flush();
        }
    }

    /// Erases the bar.
    pub fn clear(&mut self) {
        if self.enabled && self.shown.is_some() {
            eprint!("\r{}\r", " ".repeat(80));
            let _ = std::io::stderr().flush();
            self.shown = None;
        }
    }
}

impl results::Observer for Progress {
    fn start(&mut self, label: &str, total: u64) {
        Progress::start(self, label, total);
    }
    fn advance(&mut self, units: u64) {
        Progress::advance(self, units);
    }
}

fn read(path: &Path) -> Result<String, ReplayCliError> {
    std::fs::read_to_string(path).map_err(|source| ReplayCliError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The scenario the arguments ask for; flags of other scenarios are errors.
pub fn scenario_spec(args: &Args) -> Result<ScenarioSpec, ReplayCliError> {
    use ScenarioKind::{Jobs, Ml, Nightly};
    let kind = args.scenario.unwrap_or(if args.jobs.is_some() {
        ScenarioKind::Jobs
    } else {
        ScenarioKind::Nightly
    });
    let chosen = match kind {
        ScenarioKind::Nightly => "nightly",
        ScenarioKind::Ml => "ml",
        ScenarioKind::Jobs => "jobs",
    };
    // (flag set?, flag, the scenarios it applies to, does it apply to the chosen one?)
    let checks: [(bool, &'static str, &'static str, bool); 7] = [
        (
            args.window.is_some(),
            "--window",
            "nightly",
            kind == Nightly,
        ),
        (args.deadline.is_some(), "--deadline", "ml", kind == Ml),
        (args.jobs.is_some(), "--jobs", "jobs", kind == Jobs),
        (args.slack.is_some(), "--slack", "jobs", kind == Jobs),
        (args.start.is_some(), "--start", "jobs", kind == Jobs),
        (args.year.is_some(), "--year", "nightly or ml", kind != Jobs),
        (
            args.interruptible,
            "--interruptible",
            "ml or jobs",
            kind != Nightly,
        ),
    ];
    if let Some(&(_, flag, applies, _)) = checks.iter().find(|(set, _, _, ok)| *set && !ok) {
        return Err(ReplayCliError::Inapplicable {
            flag,
            applies,
            chosen,
        });
    }
    Ok(match kind {
        ScenarioKind::Nightly => ScenarioSpec::Nightly {
            window: args.window.unwrap_or(TimeDelta::hours(8)),
            year: args.year,
        },
        ScenarioKind::Ml => ScenarioSpec::Ml {
            rule: args.deadline.unwrap_or(DeadlineRule::NextWorkday),
            interruptible: args.interruptible,
            year: args.year,
            count: ML_JOBS,
            seed: args.seed,
        },
        ScenarioKind::Jobs => {
            let (source, text) = match &args.jobs {
                Some(path) => (path.display().to_string(), read(path)?),
                None => (
                    scenario::BUILTIN_JOBS_NAME.to_string(),
                    scenario::BUILTIN_JOBS.to_string(),
                ),
            };
            let jobs = scenario::parse_jobs(&text).map_err(|error| ReplayCliError::Jobs {
                name: source.clone(),
                error,
            })?;
            ScenarioSpec::Jobs {
                jobs,
                source,
                slack: args.slack.unwrap_or(TimeDelta::hours(24)),
                start: args.start,
                interruptible: args.interruptible,
            }
        }
    })
}

/// The replay options the arguments ask for.
pub fn options(args: &Args) -> Result<Options, ReplayCliError> {
    let mut o = Options::new(Power::new(args.power, args.pue)?);
    o.policies = args.policies.unwrap_or(PolicySet::ALL);
    o.threshold = args.threshold;
    o.replan = args.replan;
    o.error = args.forecast_error;
    o.error_model = args.error_model;
    o.seeds = args.seeds;
    o.seed = args.seed;
    o.horizon = args.horizon;
    o.capacity = args.capacity.map(|n| Capacity {
        limit: f64::from(n),
        slot: args.capacity_slot,
    });
    o.set_paper_compat(args.paper_compat);
    if let Some(margin) = args.margin {
        o.margin = margin;
    }
    o.threads = threads(args);
    Ok(o)
}

/// The whole command, writing the report to `out`; returns 0, or 1 if any job missed its
/// deadline.
pub fn execute(
    args: &Args,
    out: &mut impl Write,
    progress: &mut Progress,
) -> Result<ExitCode, ReplayCliError> {
    let spec = scenario_spec(args)?;
    let options = options(args)?;
    let source = match &args.trace {
        Some(path) => TraceSource::File(path),
        None => TraceSource::Builtin(args.builtin.as_deref().unwrap_or(DEFAULT_BUILTIN)),
    };
    let (name, points) = load_trace(source, args.column.as_deref())?;
    let replay = Replay::prepare(&name, points, &spec, options)?;
    if args.plot.is_some() {
        plot_range(&replay, args)?;
    }
    progress.start("replaying", replay.work());
    let outcome = replay.run(&mut |n| progress.advance(n))?;
    progress.clear();
    let write_err = |e: std::io::Error| ReplayCliError::Output(e.to_string());
    if let Some(path) = &args.plot {
        write_plot(&replay, &outcome, args, path)?;
    }
    match args.output {
        Output::Json => {
            write_json(out, &outcome.report).map_err(ReplayCliError::Output)?;
        }
        Output::Table => {
            write!(out, "{}", outcome.report.table()).map_err(write_err)?;
            if let Some(path) = &args.plot {
                writeln!(out, "Chart: {}", path.display()).map_err(write_err)?;
            }
        }
    }
    let misses = outcome.report.deadline_misses();
    if misses > 0 {
        eprintln!("error: {misses} deadline miss(es): this is a bug, please report it");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The chart's `[from, to)`; an error when it shows no part of the trace.
fn plot_range(
    replay: &Replay,
    args: &Args,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ReplayCliError> {
    let first = replay
        .jobs()
        .iter()
        .map(|j| j.submitted_at.min(j.run_now))
        .min()
        .unwrap_or(replay.trace.from);
    let from = args
        .plot_from
        .unwrap_or_else(|| first.date_naive().and_time(NaiveTime::MIN).and_utc());
    let to = from
        .checked_add_signed(TimeDelta::days(i64::from(args.plot_days)))
        .unwrap_or(from);
    if to <= replay.trace.from || from >= replay.trace.to {
        return Err(ReplayCliError::PlotOutsideTrace {
            from,
            days: args.plot_days,
            name: replay.trace.name.clone(),
            trace_from: replay.trace.from,
            trace_to: replay.trace.to,
        });
    }
    Ok((from, to))
}

/// Fails now, with the reason, if `path` cannot be written later: its directory is created and
/// the file opened for writing without changing it (a file that did not exist is removed again).
pub fn check_writable(path: &Path) -> Result<(), ReplayCliError> {
    let write = |source| ReplayCliError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(write)?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn write_plot(
    replay: &Replay,
    outcome: &Outcome,
    args: &Args,
    path: &Path,
) -> Result<(), ReplayCliError> {
    let (from, to) = plot_range(replay, args)?;
    let report = &outcome.report;
    let label = if report.policies.carbonshift.is_some() {
        "carbonshift"
    } else {
        "carbonshiftReplan"
    };
    let chart = Chart {
        series: &replay.series,
        from,
        to,
        title: format!("{} — {}", report.trace.name, report.scenario.description),
        subtitle: report
            .headline()
            .unwrap_or_else(|| "runNow only".to_string()),
        run_now: &outcome.run_now,
        planned: outcome.planned.as_ref().map(|r| (label, r)),
    };
    write_file(path, plot::render(&chart))
}

/// `--regions`: the spatial replay of the scenario over the named built-in traces.
pub fn execute_regions(
    args: &Args,
    names: &[String],
    out: &mut impl Write,
) -> Result<ExitCode, ReplayCliError> {
    let spec = scenario_spec(args)?;
    let mut traces = Vec::with_capacity(names.len());
    for name in names {
        traces.push(load_trace(TraceSource::Builtin(name.trim()), None)?);
    }
    if traces.is_empty() {
        return Err(ReplayError::Option("--regions needs at least one trace".into()).into());
    }
    let regions = spatial::regions(traces)?;
    let jobs = spatial::jobs_for(&regions, &spec)?;
    let margin = args.margin.unwrap_or(crate::replay::DEFAULT_MARGIN);
    let options = spatial::SpatialOptions {
        margin,
        capacity: args.capacity,
        slot: args.capacity_slot,
    };
    let report = spatial::replay(&regions, &jobs, &options)
        .map_err(|e| ReplayError::Option(e.to_string()))?;
    let write_err = |e: std::io::Error| ReplayCliError::Output(e.to_string());
    match args.output {
        Output::Json => write_json(out, &report).map_err(ReplayCliError::Output)?,
        Output::Table => {
            writeln!(
                out,
                "{} jobs over {}; savings against running at once in each home region{}:\n",
                report.jobs,
                report.regions.join(", "),
                args.capacity
                    .map(|n| format!(", at most {n} jobs at once per region"))
                    .unwrap_or_default()
            )
            .map_err(write_err)?;
            write!(out, "{}", spatial::markdown(&report)).map_err(write_err)?;
        }
    }
    let misses: usize = report
        .homes
        .iter()
        .flat_map(|h| &h.strategies)
        .map(|s| s.misses)
        .sum();
    if misses > 0 {
        eprintln!("error: {misses} deadline miss(es): this is a bug, please report it");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--results-spatial`: regenerates the spatial section of `path` in place.
fn write_spatial_section(path: &Path) -> Result<ExitCode, ReplayCliError> {
    let page = read(path).unwrap_or_default();
    let section = results::spatial_section()?;
    write_file(path, spatial::replace_section(&page, &section))?;
    println!("wrote the spatial section of {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes `contents` to `path`, creating its directory first.
fn write_file(path: &Path, contents: String) -> Result<(), ReplayCliError> {
    let write = |source| ReplayCliError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    std::fs::write(path, contents).map_err(write)
}

fn write_results(
    args: &Args,
    path: &Path,
    progress: &mut Progress,
) -> Result<ExitCode, ReplayCliError> {
    let power = Power::new(args.power, args.pue)?;
    let markdown = results::generate(power, threads(args), progress, &std::time::Instant::now)?;
    write_file(path, markdown.text)?;
    progress.clear();
    println!("wrote {} ({})", path.display(), markdown.summary);
    Ok(if markdown.misses > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
