//! `carbonshift plan`: when should a job run, given a carbon-intensity trace?
//!
//! Reads a CSV trace (or a built-in one), plans the job with [`crate::planner::plan`] and prints
//! the plan as a table for people or as one JSON object for machines. Exit codes: 0 with a plan,
//! 1 when there is no plan, 2 on bad arguments or input.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use clap::ArgGroup;
use serde::Serialize;
use thiserror::Error;

use crate::api::annotations::MAX_DURATION;
use crate::planner::{
    self, Constraints, EnergyError, Estimate, Forecast, ForecastError, NoPlan, Plan, Power,
};
use crate::units::{duration_arg, duration_or_zero_arg, format_duration, power_arg, timestamp_arg};

use super::{TraceLoadError, TraceSource, load_trace, write_json};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    Table,
    /// One JSON object for machines.
    Json,
}

/// Examples shown by `carbonshift plan --help`.
const EXAMPLES: &str = "Examples:
  # A 3-hour job submitted at 19:00 that may wait up to 12 hours, on a committed UK forecast:
  carbonshift plan --trace data/traces/uk_carbonintensity_forecast_48h_2023-05-04_cats.csv \\
    --column intensity --at 2023-05-04T19:00Z --duration 3h --max-delay 12h --power 1.4kW --pue 1.2

  # Must finish by a deadline, may run in pieces, on a built-in trace, as JSON:
  carbonshift plan --builtin de-2020 --at 2020-06-01T18:00Z --duration 4h \\
    --deadline 2020-06-02T12:00Z --interruptible --output json

Exit codes: 0 with a plan, 1 without one (the deadline has passed, or the trace has no data where the
job may run), 2 on bad arguments or a malformed trace.";

/// Arguments of `carbonshift plan`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
#[command(group(ArgGroup::new("source").required(true).args(["trace", "builtin"])))]
#[command(group(ArgGroup::new("limit").required(true).multiple(true).args(["max_delay", "deadline"])))]
pub struct Args {
    /// CSV trace: a header line, a timestamp in the first column (RFC 3339, or
    /// `YYYY-MM-DD HH:MM[:SS]` read as UTC) and the intensity in gCO2eq/kWh.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// A trace compiled into the binary (gb-2020, de-2020, fr-2020, caiso-north-2023-06).
    #[arg(long, value_name = "NAME")]
    pub builtin: Option<String>,
    /// The intensity column, by header name (default: the second column).
    #[arg(long, value_name = "NAME")]
    pub column: Option<String>,
    /// When the job is submitted and planned ("now").
    #[arg(long, value_name = "TIME", value_parser = timestamp_arg)]
    pub at: DateTime<Utc>,
    /// Run time the job needs, e.g. 3h or 2h30m.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_arg)]
    pub duration: TimeDelta,
    /// Longest the start may be delayed after --at, e.g. 12h.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_or_zero_arg)]
    pub max_delay: Option<TimeDelta>,
    /// When the job must have finished. With --max-delay too, the earlier limit applies.
    #[arg(long, value_name = "TIME", value_parser = timestamp_arg)]
    pub deadline: Option<DateTime<Utc>>,
    /// The job may pause and resume: plan the cheapest pieces of time instead of one window.
    #[arg(long)]
    pub interruptible: bool,
    /// Shortest run between pauses of an interruptible job.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_arg, requires = "interruptible")]
    pub min_chunk: Option<TimeDelta>,
    /// Extra run time each resume of an interruptible job costs.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_or_zero_arg, requires = "interruptible")]
    pub resume_overhead: Option<TimeDelta>,
    /// Safety margin: start at least this long before the latest start.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_or_zero_arg)]
    pub margin: Option<TimeDelta>,
    /// The job's power draw (e.g. 1400W or 1.4kW), for energy and emissions estimates.
    #[arg(long, value_name = "POWER", value_parser = power_arg)]
    pub power: Option<f64>,
    /// Power usage effectiveness of the facility (at least 1; 1 counts IT power only).
    #[arg(long, value_name = "RATIO", default_value_t = 1.0, requires = "power")]
    pub pue: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Why `plan` could not run (exit code 2).
#[derive(Debug, Error)]
pub enum PlanError {
    /// The trace cannot be read, is malformed or is no built-in trace.
    #[error(transparent)]
    Trace(#[from] TraceLoadError),
    /// Neither --trace nor --builtin.
    #[error("give a trace with --trace FILE or --builtin NAME")]
    NoTrace,
    /// The points do not form a forecast.
    #[error("{name}: {error}")]
    Forecast {
        /// The file or built-in name.
        name: String,
        /// What is wrong.
        error: ForecastError,
    },
    /// Invalid --power or --pue.
    #[error("{0}")]
    Power(#[from] EnergyError),
    /// --duration is longer than any Job may ask for (the limit of `carbonshift.dev/duration`).
    #[error(
        "--duration {given} is longer than {limit}, the longest run time carbonshift plans (as for carbonshift.dev/duration)",
        given = format_duration(*.0),
        limit = format_duration(MAX_DURATION)
    )]
    DurationTooLong(TimeDelta),
    /// The output could not be written or serialised.
    #[error("cannot write the output: {0}")]
    Output(String),
}

/// Plans the job and prints the result.
pub fn run(args: Args) -> ExitCode {
    execute(&args, &mut std::io::stdout().lock()).unwrap_or_else(super::usage_error)
}

/// The whole command, writing to `out`; returns the exit code for a plan (0) or no plan (1).
pub fn execute(args: &Args, out: &mut impl Write) -> Result<ExitCode, PlanError> {
    if args.duration > MAX_DURATION {
        return Err(PlanError::DurationTooLong(args.duration));
    }
    let power = args
        .power
        .map(|watts| Power::new(watts, args.pue))
        .transpose()?;
    let forecast = load_forecast(args)?;
    let constraints = Constraints {
        submitted_at: args.at,
        duration: args.duration,
        max_delay: args.max_delay,
        deadline: args.deadline,
        interruptible: args.interruptible,
        min_chunk: args.min_chunk,
        resume_overhead: args.resume_overhead.unwrap_or_else(TimeDelta::zero),
        margin: args.margin.unwrap_or_else(TimeDelta::zero),
    };
    match planner::plan(&forecast, &constraints, args.at) {
        Ok(plan) => {
            let estimate = power.map(|p| Estimate::for_plan(&p, &plan, args.duration));
            if plan.coverage < 1.0 {
                eprintln!("{}", coverage_warning(&plan));
            }
            let release_by = constraints.release_by().unwrap_or(plan.latest_start);
            match args.output {
                Output::Json => {
                    let json = JsonPlan {
                        savings_percent: plan.savings_percent(),
                        release_by,
                        duration: format_duration(args.duration),
                        energy: estimate,
                        plan: &plan,
                    };
                    write_json(out, &json).map_err(PlanError::Output)?;
                }
                Output::Table => {
                    let text = table(&plan, args.duration, release_by, estimate.as_ref());
                    write!(out, "{text}").map_err(|e| PlanError::Output(e.to_string()))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(no_plan) => {
            match args.output {
                Output::Json => {
                    let json = JsonNoPlan {
                        no_plan: &no_plan,
                        message: no_plan.to_string(),
                    };
                    write_json(out, &json).map_err(PlanError::Output)?;
                }
                Output::Table => eprintln!("no plan: {no_plan}"),
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The warning for a plan partly over time the trace does not cover.
fn coverage_warning(plan: &Plan) -> String {
    format!(
        "warning: the trace covers only {} of the planned run time; the rest is valued at the trace's mean intensity, so the intensity, saving and emissions are estimates (a longer trace, or a shorter --duration, gives a plan on data)",
        percent_floor(plan.coverage)
    )
}

/// A fraction as a percentage that never rounds a partial coverage up to 100 % or down to 0 %.
fn percent_floor(fraction: f64) -> String {
    let percent = fraction * 100.0;
    if percent > 0.0 && percent < 0.1 {
        "less than 0.1 %".to_string()
    } else if fraction < 1.0 && percent > 99.9 {
        "more than 99.9 % (not all)".to_string()
    } else {
        format!("{percent:.1} %")
    }
}

fn load_forecast(args: &Args) -> Result<Forecast, PlanError> {
    let source = match (&args.trace, &args.builtin) {
        (Some(path), _) => TraceSource::File(path),
        (None, Some(name)) => TraceSource::Builtin(name),
        // clap requires one of the two; callers building Args by hand get an error, not a panic.
        (None, None) => return Err(PlanError::NoTrace),
    };
    let (name, points) = load_trace(source, args.column.as_deref())?;
    Forecast::new(points).map_err(|error| PlanError::Forecast { name, error })
}

/// The JSON printed with a plan.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonPlan<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    savings_percent: Option<f64>,
    release_by: DateTime<Utc>,
    duration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    energy: Option<Estimate>,
}

/// The JSON printed without a plan.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonNoPlan<'a> {
    no_plan: &'a NoPlan,
    message: String,
}

fn time(t: DateTime<Utc>) -> String {
    if t.second() == 0 && t.nanosecond() == 0 {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }
}

fn percent(fraction: f64) -> String {
    if fraction >= 1.0 {
        "100 %".to_string()
    } else {
        format!("{:.1} %", fraction * 100.0)
    }
}

/// The plan as aligned text.
fn table(
    plan: &Plan,
    duration: TimeDelta,
    release_by: DateTime<Utc>,
    estimate: Option<&Estimate>,
) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("Start", time(plan.start)),
        ("End", time(plan.end)),
        ("Duration", format_duration(duration)),
        ("Latest start", time(plan.latest_start)),
    ];
    if release_by != plan.latest_start {
        rows.push(("Release by", time(release_by)));
    }
    for (i, w) in plan.windows.iter().enumerate() {
        rows.push((
            if i == 0 { "Windows" } else { "" },
            format!(
                "{} - {} ({})",
                time(w.start),
                time(w.end),
                format_duration(w.duration())
            ),
        ));
    }
    rows.push((
        "Expected intensity",
        format!("{:.1} gCO2eq/kWh", plan.expected_intensity),
    ));
    rows.push((
        "Run-now intensity",
        plan.run_now_intensity
            .map_or("unknown".to_string(), |i| format!("{i:.1} gCO2eq/kWh")),
    ));
    rows.push((
        "Saving",
        plan.savings_percent()
            .map_or("unknown".to_string(), |s| format!("{s:.1} %")),
    ));
    rows.push((
        "Coverage",
        if plan.coverage >= 1.0 {
            percent(plan.coverage)
        } else {
            format!(
                "{} (partial: see the warning)",
                percent_floor(plan.coverage)
            )
        },
    ));
    rows.push(("Reason", plan.reason.describe().to_string()));
    if let Some(e) = estimate {
        rows.push(("Energy", format!("{:.2} kWh", e.energy_kwh)));
        rows.push(("Emissions", format!("{:.0} gCO2eq", e.emissions_grams)));
        if let (Some(now), Some(avoided)) = (e.run_now_emissions_grams, e.avoided_grams) {
            rows.push(("Run-now emissions", format!("{now:.0} gCO2eq")));
            rows.push(("Avoided", format!("{avoided:.0} gCO2eq")));
        }
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    rows.iter()
        .map(|(k, v)| {
            let label = if k.is_empty() {
                String::new()
            } else {
                format!("{k}:")
            };
            format!("{label:<width$}{v}\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn run_with(argv: &[&str]) -> (Result<ExitCode, PlanError>, String) {
        let mut full = vec!["plan"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let code = execute(&cli.args, &mut out);
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn builtin_trace_plans_and_prints_a_table() {
        let (code, out) = run_with(&[
            "--builtin",
            "gb-2020",
            "--at",
            "2020-06-01T00:00Z",
            "--duration",
            "3h",
            "--max-delay",
            "12h",
            "--power",
            "1kW",
        ]);
        assert!(matches!(code, Ok(c) if c == ExitCode::SUCCESS));
        for label in [
            "Start:",
            "Windows:",
            "Expected intensity:",
            "Saving:",
            "Energy:",
            "3.00 kWh",
        ] {
            assert!(out.contains(label), "{label} in\n{out}");
        }
    }

    #[test]
    fn unknown_builtin_and_bad_pue_are_errors() {
        let (code, _) = run_with(&[
            "--builtin",
            "mars",
            "--at",
            "2020-06-01T00:00Z",
            "--duration",
            "3h",
            "--max-delay",
            "12h",
        ]);
        let text = code.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("gb-2020"), "{text}");
        let (code, _) = run_with(&[
            "--builtin",
            "gb-2020",
            "--at",
            "2020-06-01T00:00Z",
            "--duration",
            "3h",
            "--max-delay",
            "12h",
            "--power",
            "1kW",
            "--pue",
            "0.5",
        ]);
        assert!(matches!(code, Err(PlanError::Power(_))));
    }

    #[test]
    fn table_lists_every_window() {
        let t0 = crate::units::parse_timestamp("2023-01-01T00:00Z").unwrap_or_default();
        let plan = Plan {
            start: t0,
            end: t0 + TimeDelta::hours(3),
            windows: vec![
                planner::Window {
                    start: t0,
                    end: t0 + TimeDelta::hours(1),
                },
                planner::Window {
                    start: t0 + TimeDelta::hours(2),
                    end: t0 + TimeDelta::hours(3),
                },
            ],
            expected_intensity: 12.345,
            run_now_intensity: None,
            latest_start: t0 + TimeDelta::hours(4),
            coverage: 0.5,
            reason: planner::PlanReason::PartialForecast,
        };
        let text = table(&plan, TimeDelta::hours(2), plan.latest_start, None);
        assert_eq!(
            text,
            "Start:              2023-01-01 00:00 UTC\n\
             End:                2023-01-01 03:00 UTC\n\
             Duration:           2h\n\
             Latest start:       2023-01-01 04:00 UTC\n\
             Windows:            2023-01-01 00:00 UTC - 2023-01-01 01:00 UTC (1h)\n\
             \x20                   2023-01-01 02:00 UTC - 2023-01-01 03:00 UTC (1h)\n\
             Expected intensity: 12.3 gCO2eq/kWh\n\
             Run-now intensity:  unknown\n\
             Saving:             unknown\n\
             Coverage:           50.0 % (partial: see the warning)\n\
             Reason:             forecast does not cover the whole job; unknown part valued at the forecast mean\n"
        );
    }
}
