//! `carbonshift forecast`: fetch one forecast and print it. The quickest way to check an API key, a
//! zone or a region before writing a `CarbonForecast`, and to look at a trace or static points
//! without any network.
//!
//! Exit status: 0 on success, 1 when the provider fails (one line on stderr saying what failed and
//! what to check), 2 on bad arguments or input files.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, TimeDelta, Utc};
use clap::ValueEnum;
use clap::builder::{PossibleValue, PossibleValuesParser};

use crate::api::forecast::{CarbonAwareSdk, ElectricityMaps, UkCarbonIntensity, WattTime};
use crate::api::{CarbonForecastSpec, ProviderSpec};
use crate::forecast::fixed::{StaticProvider, TraceProvider};
use crate::forecast::uk::UkTarget;
use crate::forecast::{
    ClientOptions, CredentialSource, Credentials, ENV_EM_TOKEN, ENV_WATTTIME_PASSWORD,
    ENV_WATTTIME_USERNAME, ForecastData, Provider, ProviderError, RetryPolicy, Shared, stamp,
};
use crate::planner::Point;
use crate::units::{duration_arg, timestamp_arg};

use super::{TraceSource, failure, load_trace, one_line, usage_error};

const EXAMPLES: &str = "\
Examples:
  carbonshift forecast --provider uk
  carbonshift forecast --provider uk --region 13
  carbonshift forecast --provider uk --region postcode:SW1A --output json
  CARBONSHIFT_EM_TOKEN=... carbonshift forecast --provider electricitymaps --zone DE
  carbonshift forecast --provider watttime --region CAISO_NORTH --username me --password ...
  carbonshift forecast --provider carbon-aware-sdk --url http://localhost:8080 --location eastus
  carbonshift forecast --provider static --point 2026-01-01T00:00Z=120 --point 2026-01-01T06:00Z=80
  carbonshift forecast --provider trace --builtin gb-2020 --now 2026-01-07T10:00Z";

/// The providers, by their command-line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    /// UK Carbon Intensity API (no account): --region national|1-17|postcode:OUTWARD.
    Uk,
    /// Electricity Maps v3: --zone, --token.
    #[value(alias = "electricity-maps")]
    Electricitymaps,
    /// WattTime v3: --region, --username, --password [--signal-type].
    Watttime,
    /// Carbon Aware SDK WebAPI: --url, --location.
    #[value(alias = "casdk")]
    CarbonAwareSdk,
    /// Fixed points: --point TIME=VALUE (repeatable) or --file CSV.
    Static,
    /// A trace replayed at now's weekday and time of day: --builtin NAME or --file CSV.
    Trace,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns with a summary (start, intensity and, where known, the measured actual).
    Table,
    /// A JSON list of `{"start", "intensity"}` in gCO2eq/kWh.
    Json,
}

/// Arguments of `carbonshift forecast`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Where to get the forecast.
    #[arg(long, value_enum)]
    pub provider: ProviderArg,
    /// UK: `national` (default), a region id 1-17 (13 = London) or `postcode:<outward code>`
    /// (postcode:SW1A). WattTime: the balancing-authority region, such as CAISO_NORTH.
    #[arg(long)]
    pub region: Option<String>,
    /// Electricity Maps zone, such as DE, FR or US-CAL-CISO.
    #[arg(long)]
    pub zone: Option<String>,
    /// Carbon Aware SDK location, such as eastus or westeurope.
    #[arg(long)]
    pub location: Option<String>,
    /// Carbon Aware SDK WebAPI URL, such as http://localhost:8080.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// WattTime signal type [default: co2_moer].
    #[arg(long)]
    pub signal_type: Option<String>,
    /// Overrides the provider's API base URL (a proxy, a mirror or a test server).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Electricity Maps API token.
    #[arg(long, env = ENV_EM_TOKEN, hide_env_values = true)]
    pub token: Option<String>,
    /// WattTime user name.
    #[arg(long, env = ENV_WATTTIME_USERNAME, hide_env_values = true)]
    pub username: Option<String>,
    /// WattTime password.
    #[arg(long, env = ENV_WATTTIME_PASSWORD, hide_env_values = true)]
    pub password: Option<String>,
    /// Static: one point, `TIME=GRAMS_PER_KWH` such as 2026-01-01T00:00Z=120; repeat in time
    /// order. Each value holds until the next point.
    #[arg(long = "point", value_name = "TIME=VALUE", value_parser = point_arg)]
    pub points: Vec<Point>,
    /// Static or trace: a CSV file (header line; timestamp first, intensity in the second column
    /// or in --column).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Static or trace: the name of the intensity column in the CSV.
    #[arg(long, value_name = "NAME")]
    pub column: Option<String>,
    /// Trace: a trace compiled into carbonshift.
    #[arg(long, value_name = "NAME", value_parser = builtin_parser())]
    pub builtin: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Longest time for one request (units s, m, h, d).
    #[arg(long, default_value = "10s", allow_hyphen_values = true, value_parser = duration_arg, value_name = "DURATION")]
    pub timeout: TimeDelta,
    /// Retries after a 429, 5xx, timeout or connection failure (exponential backoff with jitter,
    /// `Retry-After` honoured up to 2 minutes).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,
    /// The time to forecast from [default: the current time]; the trace provider replays around
    /// it and the UK API starts at its half-hour.
    #[arg(long, value_name = "TIME", value_parser = timestamp_arg)]
    pub now: Option<DateTime<Utc>>,
}

fn builtin_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(
        crate::trace::BUILTINS
            .iter()
            .map(|b| PossibleValue::new(b.name).help(b.description)),
    )
}

fn point_arg(text: &str) -> Result<Point, String> {
    let (time, value) = text
        .rsplit_once('=')
        .ok_or_else(|| "expected TIME=VALUE, such as 2026-01-01T00:00Z=120".to_string())?;
    let start = timestamp_arg(time)?;
    let intensity: f64 = value.trim().parse().map_err(|_| {
        format!("intensity {value:?} is not a number; expected TIME=VALUE in gCO2eq/kWh")
    })?;
    Ok(Point { start, intensity })
}

/// Flags that only make sense for some providers: (flag, set?, providers it applies to).
fn misplaced_flags(args: &Args) -> Option<String> {
    use ProviderArg::*;
    let checks: [(&str, bool, &[ProviderArg]); 10] = [
        ("--region", args.region.is_some(), &[Uk, Watttime]),
        (
            "--base-url",
            args.base_url.is_some(),
            &[Uk, Electricitymaps, Watttime, CarbonAwareSdk],
        ),
        ("--zone", args.zone.is_some(), &[Electricitymaps]),
        ("--location", args.location.is_some(), &[CarbonAwareSdk]),
        ("--url", args.url.is_some(), &[CarbonAwareSdk]),
        ("--signal-type", args.signal_type.is_some(), &[Watttime]),
        ("--point", !args.points.is_empty(), &[Static]),
        ("--file", args.file.is_some(), &[Static, Trace]),
        ("--column", args.column.is_some(), &[Static, Trace]),
        ("--builtin", args.builtin.is_some(), &[Trace]),
    ];
    let (flag, _, applies) = checks
        .iter()
        .find(|(_, set, applies)| *set && !applies.contains(&args.provider))?;
    let names: Vec<String> = applies
        .iter()
        .filter_map(|p| p.to_possible_value().map(|v| v.get_name().to_string()))
        .collect();
    Some(format!(
        "{flag} applies to --provider {} only",
        names.join(" or ")
    ))
}

/// Builds the provider the arguments describe; every error here is a usage error (exit 2).
fn provider(args: &Args, shared: &Shared) -> Result<Box<dyn Provider>, String> {
    if let Some(message) = misplaced_flags(args) {
        return Err(message);
    }
    let credentials = Credentials {
        token: args.token.clone(),
        username: args.username.clone(),
        password: args.password.clone(),
        source: CredentialSource::CommandLine,
    };
    let spec = |provider| CarbonForecastSpec {
        provider,
        credentials_secret_ref: None,
        refresh_interval: None,
        stale_after: None,
        base_url: args.base_url.clone(),
        capacity: None,
        placement: None,
    };
    let build = |provider| {
        crate::forecast::build(&spec(provider), credentials.clone(), None, shared)
            .map_err(|e| e.to_string())
    };
    let required = |value: &Option<String>, flag: &str, example: &str| {
        value.clone().ok_or_else(|| {
            format!(
                "--provider {} needs {flag}, such as {flag} {example}",
                name(args.provider)
            )
        })
    };
    match args.provider {
        ProviderArg::Uk => {
            let target = match &args.region {
                Some(region) => UkTarget::parse(region).map_err(|e| e.to_string())?,
                None => UkTarget::National,
            };
            let (region_id, postcode) = match target {
                UkTarget::National => (None, None),
                UkTarget::Region(id) => (Some(id), None),
                UkTarget::Postcode(outward) => (None, Some(outward)),
            };
            build(ProviderSpec::UkCarbonIntensity(UkCarbonIntensity {
                region_id,
                postcode,
            }))
        }
        ProviderArg::Electricitymaps => build(ProviderSpec::ElectricityMaps(ElectricityMaps {
            zone: required(&args.zone, "--zone", "DE")?,
        })),
        ProviderArg::Watttime => build(ProviderSpec::WattTime(WattTime {
            region: required(&args.region, "--region", "CAISO_NORTH")?,
            signal_type: args.signal_type.clone(),
        })),
        ProviderArg::CarbonAwareSdk => {
            let url = match (&args.url, &args.base_url) {
                (Some(url), _) | (None, Some(url)) => url.clone(),
                (None, None) => return Err(
                    "--provider carbon-aware-sdk needs --url, such as --url http://localhost:8080"
                        .into(),
                ),
            };
            build(ProviderSpec::CarbonAwareSdk(CarbonAwareSdk {
                url,
                location: required(&args.location, "--location", "eastus")?,
            }))
        }
        ProviderArg::Static => {
            let points = match (&args.file, args.points.is_empty()) {
                (Some(_), false) => return Err("give either --point or --file, not both".into()),
                (None, true) => {
                    return Err(
                        "--provider static needs --point TIME=VALUE (repeatable) or --file CSV"
                            .into(),
                    );
                }
                (None, false) => args.points.clone(),
                (Some(file), true) => {
                    load_trace(TraceSource::File(file), args.column.as_deref())
                        .map_err(|e| e.to_string())?
                        .1
                }
            };
            let provider = StaticProvider::new(points, "points").map_err(|e| e.to_string())?;
            Ok(Box::new(provider))
        }
        ProviderArg::Trace => {
            let provider = match (&args.builtin, &args.file) {
                (Some(_), Some(_)) => {
                    return Err("give either --builtin or --file, not both".into());
                }
                (None, None) => {
                    return Err(format!(
                        "--provider trace needs --builtin NAME ({}) or --file CSV",
                        crate::trace::builtin_names()
                    ));
                }
                (Some(name), None) => TraceProvider::builtin(name, args.column.as_deref()),
                (None, Some(file)) => TraceProvider::from_csv(
                    &read(file)?,
                    args.column.as_deref(),
                    file.display().to_string(),
                ),
            };
            Ok(Box::new(provider.map_err(|e| e.to_string())?))
        }
    }
}

fn name(provider: ProviderArg) -> String {
    provider
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

fn read(file: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

fn options(args: &Args) -> Result<ClientOptions, String> {
    let timeout = args
        .timeout
        .to_std()
        .map_err(|_| "--timeout must be positive".to_string())?;
    Ok(ClientOptions {
        timeout,
        connect_timeout: timeout.min(ClientOptions::default().connect_timeout),
        retry: RetryPolicy {
            max_attempts: args.retries.saturating_add(1),
            ..RetryPolicy::default()
        },
        ..ClientOptions::default()
    })
}

/// Fetches and prints the forecast.
pub fn run(args: Args) -> ExitCode {
    let usage = |message: String| usage_error(one_line(&message));
    let options = match options(&args) {
        Ok(options) => options,
        Err(message) => return usage(message),
    };
    let shared = match Shared::new(options) {
        Ok(shared) => shared,
        Err(e) => return failure(one_line(&e.to_string())),
    };
    let provider = match provider(&args, &shared) {
        Ok(provider) => provider,
        Err(message) => return usage(message),
    };
    // The one read of the wall clock: everything below takes `now` as an input.
    let now = args.now.unwrap_or_else(Utc::now);
    let runtime = match super::runtime(false) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result: Result<ForecastData, ProviderError> = runtime.block_on(provider.fetch(now));
    match result {
        Ok(data) => {
            let text = match args.output {
                Output::Json => json(&data.points),
                Output::Table => table(provider.kind(), &data),
            };
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => failure(one_line(&e.to_string())),
    }
}

/// The JSON output: a list of `{"start", "intensity"}`.
pub fn json(points: &[Point]) -> String {
    serde_json::to_string_pretty(points).unwrap_or_else(|_| "[]".into())
}

/// The table output: a header naming the provider and region, one row per point with the
/// measured actual where the provider has one, and a summary line.
pub fn table(kind: &str, data: &ForecastData) -> String {
    let mut out = String::new();
    let generated = data.generated_at.map(stamp).unwrap_or_else(|| "-".into());
    out.push_str(&format!(
        "provider {kind}, region {}, generated {generated}\n",
        data.region
    ));
    let with_actuals = !data.actuals.is_empty();
    out.push_str(&format!(
        "{:<22} {:>17}",
        "START (UTC)", "INTENSITY (g/kWh)"
    ));
    if with_actuals {
        out.push_str(&format!(" {:>14}", "ACTUAL (g/kWh)"));
    }
    out.push('\n');
    for p in &data.points {
        out.push_str(&format!("{:<22} {:>17.1}", stamp(p.start), p.intensity));
        if with_actuals {
            match data.actuals.iter().find(|a| a.start == p.start) {
                Some(a) => out.push_str(&format!(" {:>14.1}", a.intensity)),
                None => out.push_str(&format!(" {:>14}", "-")),
            }
        }
        out.push('\n');
    }
    let lowest = data
        .points
        .iter()
        .min_by(|a, b| a.intensity.total_cmp(&b.intensity));
    let first = data.points.first();
    let last = data.points.last();
    if let (Some(lowest), Some(first), Some(last)) = (lowest, first, last) {
        out.push_str(&format!(
            "{} point(s) from {} to {}; lowest {:.1} g/kWh at {}",
            data.points.len(),
            stamp(first.start),
            stamp(last.start),
            lowest.intensity,
            stamp(lowest.start)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(s).unwrap_or_default()
    }

    #[test]
    fn point_flags() {
        assert_eq!(
            point_arg("2026-01-01T00:00Z=120"),
            Ok(Point {
                start: t("2026-01-01T00:00Z"),
                intensity: 120.0
            })
        );
        assert_eq!(
            point_arg("2026-01-01 06:30=80.5").map(|p| p.intensity),
            Ok(80.5)
        );
        assert!(point_arg("2026-01-01T00:00Z").is_err_and(|e| e.contains("TIME=VALUE")));
        assert!(point_arg("noon=5").is_err_and(|e| e.contains("expected an RFC 3339")));
        assert!(point_arg("2026-01-01T00:00Z=lots").is_err_and(|e| e.contains("not a number")));
    }

    #[test]
    fn table_shows_actuals_and_a_summary() {
        let data = ForecastData {
            points: vec![
                Point {
                    start: t("2026-11-28T15:30Z"),
                    intensity: 212.0,
                },
                Point {
                    start: t("2026-11-28T16:00Z"),
                    intensity: 64.25,
                },
            ],
            actuals: vec![Point {
                start: t("2026-11-28T15:30Z"),
                intensity: 208.0,
            }],
            region: "national".into(),
            generated_at: None,
        };
        assert_eq!(
            table("ukCarbonIntensity", &data),
            "provider ukCarbonIntensity, region national, generated -\n\
             START (UTC)            INTENSITY (g/kWh) ACTUAL (g/kWh)\n\
             2026-11-28T15:30:00Z               212.0          208.0\n\
             2026-11-28T16:00:00Z                64.2              -\n\
             2 point(s) from 2026-11-28T15:30:00Z to 2026-11-28T16:00:00Z; lowest 64.2 g/kWh at 2026-11-28T16:00:00Z"
        );
        assert_eq!(
            json(&data.points[..1]),
            "[\n  {\n    \"start\": \"2026-11-28T15:30:00Z\",\n    \"intensity\": 212.0\n  }\n]"
        );
    }
}
