//! `carbonshift report`: the carbon accounting of a cluster — per namespace and CarbonForecast,
//! jobs, kWh, gCO2eq emitted, avoided (verified and estimated), failed runs and the mean forecast
//! error, with every CarbonBudget's use this month — read from the CarbonLedgers, CarbonBudgets
//! and CarbonWorkloads (kubeconfig or in-cluster). The figures are [`crate::report::aggregate`]'s;
//! this shell lists the objects, prints the table, JSON or CSV, and writes the optional SVG plot.
//!
//! Exit status: 0 on success, 1 when the cluster cannot be read or the plot cannot be written,
//! 2 on bad arguments (clap's).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::api::{CarbonBudget, CarbonLedger, CarbonWorkload};
use crate::report::{self, BudgetIn, LedgerIn, WorkloadIn};

use super::{failure, write_json};

const EXAMPLES: &str = "\
Examples:
  carbonshift report                              # every namespace, all time
  carbonshift report -n ml --since 2026-01        # one namespace, from January 2026
  carbonshift report --output json                # the same figures as JSON (totals = the ledgers')
  carbonshift report --output csv > carbon.csv
  carbonshift report --plot carbon.svg            # monthly emitted vs avoided per namespace";

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned text tables.
    Table,
    /// The whole report as JSON.
    Json,
    /// One CSV line per namespace and forecast, then the total.
    Csv,
}

/// Arguments of `carbonshift report`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Only this namespace (repeat for several); default: every namespace.
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Vec<String>,
    /// Count from this month on: `YYYY-MM`, `YYYY-MM-DD` or an RFC 3339 time (the ledgers keep
    /// months, so their figures start at the month it falls in). Default: all time.
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// `table`, `json` or `csv`.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Output,
    /// Also write the monthly gCO2eq emitted and avoided per namespace as an SVG bar chart.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// `--since`: `YYYY-MM`, `YYYY-MM-DD` or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let expected = "expected YYYY-MM (2026-01), YYYY-MM-DD (2026-01-15) or an RFC 3339 time (2026-01-15T00:00:00Z)";
    if let Some(t) = crate::units::parse_timestamp(text) {
        return Ok(t);
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d"))
        .map_err(|_| format!("--since {text:?} is not a month, a day or a time; {expected}"))?;
    day.and_hms_opt(0, 0, 0)
        .map(|t| Utc.from_utc_datetime(&t))
        .ok_or_else(|| format!("--since {text:?}: {expected}"))
}

/// Lists `K` in every namespace, or in each of `namespaces`.
async fn list<K>(client: &kube::Client, namespaces: &[String]) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    if namespaces.is_empty() {
        return Ok(Api::<K>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items);
    }
    let mut out = Vec::new();
    for ns in namespaces {
        out.extend(
            Api::<K>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await?
                .items,
        );
    }
    Ok(out)
}

/// Runs `carbonshift report`.
pub fn run(args: Args) -> ExitCode {
    // The one read of the wall clock: the budgets' month and the report's time.
    let now = Utc::now();
    let runtime = match super::runtime(false) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let (client, server) = match super::cluster_client("report").await {
            Ok(client) => client,
            Err(message) => return failure(message),
        };
        let read = async {
            let ledgers: Vec<CarbonLedger> = list(&client, &args.namespace).await?;
            let budgets: Vec<CarbonBudget> = list(&client, &args.namespace).await?;
            let workloads: Vec<CarbonWorkload> = list(&client, &args.namespace).await?;
            Ok::<_, kube::Error>((ledgers, budgets, workloads))
        };
        let (ledgers, budgets, workloads) = match read.await {
            Ok(objects) => objects,
            Err(e) => {
                return failure(format!(
                    "cannot list CarbonLedgers, CarbonBudgets and CarbonWorkloads (API server {server}): {e}"
                ));
            }
        };
        let empty_ledger = crate::api::CarbonLedgerStatus::default();
        let empty_workload = crate::api::CarbonWorkloadStatus::default();
        let ledger_ns: Vec<String> = ledgers.iter().map(|l| l.namespace().unwrap_or_default()).collect();
        let budget_ns: Vec<String> = budgets.iter().map(|b| b.namespace().unwrap_or_default()).collect();
        let workload_ns: Vec<String> = workloads.iter().map(|w| w.namespace().unwrap_or_default()).collect();
        let ledger_in: Vec<LedgerIn<'_>> = ledgers
            .iter()
            .zip(&ledger_ns)
            .map(|(l, ns)| LedgerIn {
                namespace: ns,
                forecast: &l.spec.forecast,
                status: l.status.as_ref().unwrap_or(&empty_ledger),
            })
            .collect();
        let budget_in: Vec<BudgetIn<'_>> = budgets
            .iter()
            .zip(&budget_ns)
            .map(|(b, ns)| BudgetIn {
                namespace: ns,
                name: b.metadata.name.as_deref().unwrap_or_default(),
                spec: &b.spec,
            })
            .collect();
        let workload_in: Vec<WorkloadIn<'_>> = workloads
            .iter()
            .zip(&workload_ns)
            .map(|(w, ns)| WorkloadIn {
                namespace: ns,
                forecast: &w.spec.forecast,
                status: w.status.as_ref().unwrap_or(&empty_workload),
            })
            .collect();
        let report = report::aggregate(&ledger_in, &budget_in, &workload_in, args.since, now);
        let mut out = std::io::stdout();
        let printed = match args.output {
            Output::Table => write!(out, "{}", report::render_table(&report)).map_err(|e| e.to_string()),
            Output::Csv => write!(out, "{}", report::render_csv(&report)).map_err(|e| e.to_string()),
            Output::Json => write_json(&mut out, &report),
        };
        if let Err(e) = printed {
            return failure(format!("cannot write the report: {e}"));
        }
        if let Some(path) = &args.plot
            && let Err(e) = std::fs::write(path, report::render_plot(&report))
        {
            return failure(format!("--plot: cannot write {}: {e}", path.display()));
        }
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_month_a_day_or_a_time_and_says_what_it_expects() {
        let t = |s: &str| crate::units::parse_timestamp(s).unwrap_or_default();
        assert_eq!(parse_since("2026-01"), Ok(t("2026-01-01T00:00:00Z")));
        assert_eq!(parse_since("2026-01-15"), Ok(t("2026-01-15T00:00:00Z")));
        assert_eq!(
            parse_since("2026-01-15T10:00:00+02:00"),
            Ok(t("2026-01-15T08:00:00Z"))
        );
        assert_eq!(
            parse_since("last week"),
            Err("--since \"last week\" is not a month, a day or a time; expected YYYY-MM (2026-01), YYYY-MM-DD (2026-01-15) or an RFC 3339 time (2026-01-15T00:00:00Z)".to_string())
        );
        assert!(parse_since("2026-13").is_err());
    }
}
