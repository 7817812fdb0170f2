//! `carbonshift report`'s arithmetic: from the CarbonLedgers, CarbonBudgets and CarbonWorkloads
//! read from a cluster, the per-namespace and per-forecast tables (jobs, kWh, gCO2eq emitted,
//! avoided estimated and verified, failed runs, mean forecast error), the budgets' use, and the
//! monthly series for the plot; and their renderings as a table, CSV and JSON. Pure: the CLI
//! shell (`cli::report`) lists the objects and prints what [`aggregate`] returns.
//!
//! Ledger figures without `since` are the ledgers' all-time totals (`status.total`), so the
//! report's totals are the ledgers' own. With `since` they are the sum of the months from the
//! month `since` falls in (the ledger keeps months, not single workloads; at most 24 of them).
//! The mean forecast error comes from the CarbonWorkloads that still exist (they go with their
//! Jobs), verified and finished at or after `since`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::budget::CarbonBudgetSpec;
use crate::api::ledger::{CarbonLedgerStatus, LedgerTotals};
use crate::api::workload::CarbonWorkloadStatus;
use crate::budget::{Budget, Ledger};

/// One CarbonLedger.
#[derive(Debug, Clone, Copy)]
pub struct LedgerIn<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its forecast.
    pub forecast: &'a str,
    /// Its totals.
    pub status: &'a CarbonLedgerStatus,
}

/// One CarbonBudget.
#[derive(Debug, Clone, Copy)]
pub struct BudgetIn<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a CarbonBudgetSpec,
}

/// One CarbonWorkload.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadIn<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// The forecast it was planned against.
    pub forecast: &'a str,
    /// Its status.
    pub status: &'a CarbonWorkloadStatus,
}

/// The figures of one namespace and forecast (or of everything: namespace and forecast `all`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The namespace, or `all`.
    pub namespace: String,
    /// The CarbonForecast, or `all`.
    pub forecast: String,
    /// Finished workloads.
    pub jobs: u64,
    /// Their estimated energy, kWh.
    pub energy_kwh: f64,
    /// Their estimated emissions, gCO2eq.
    pub emitted_grams: f64,
    /// Estimated emissions avoided (workloads carbonshift held), gCO2eq.
    pub avoided_estimated_grams: f64,
    /// Workloads verified from measured values.
    pub verified_jobs: u64,
    /// Their measured emissions, gCO2eq.
    pub verified_emitted_grams: f64,
    /// Their measured avoided emissions, gCO2eq.
    pub avoided_verified_grams: f64,
    /// Finished workloads that failed.
    pub failed_jobs: u64,
    /// Their estimated emissions, gCO2eq.
    pub wasted_grams: f64,
    /// Mean of the verified workloads' forecast error over their runs, percent (of those that
    /// still exist); `None` without any.
    pub mean_forecast_error_percent: Option<f64>,
    /// How many workloads that mean is over.
    pub forecast_error_samples: u64,
}

impl Row {
    fn add(&mut self, t: &LedgerTotals) {
        self.jobs += t.jobs;
        self.energy_kwh += t.energy_kwh;
        self.emitted_grams += t.emitted_grams;
        self.avoided_estimated_grams += t.avoided_grams;
        self.verified_jobs += t.verified_jobs;
        self.verified_emitted_grams += t.verified_emitted_grams;
        self.avoided_verified_grams += t.verified_avoided_grams;
        self.failed_jobs += t.failed_jobs;
        self.wasted_grams += t.wasted_grams;
    }
}

/// How much of a budget is used this month.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetUse {
    /// The budget's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `Warn`, `Defer` or `Deny`.
    pub action: String,
    /// The month counted, `YYYY-MM`.
    pub period: String,
    /// What is used, in words.
    pub used: String,
    /// The limits, in words.
    pub limit: String,
    /// Emissions counted, gCO2eq.
    pub used_grams: f64,
    /// Energy counted, kWh.
    pub used_kwh: f64,
    /// The larger share of a limit used, percent; `None` for a limit of 0 or none.
    pub used_percent: Option<f64>,
    /// Whether a limit is reached.
    pub exhausted: bool,
}

/// One namespace's month, for the plot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Month {
    /// The namespace.
    pub namespace: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Estimated emissions, gCO2eq.
    pub emitted_grams: f64,
    /// Estimated avoided emissions, gCO2eq.
    pub avoided_estimated_grams: f64,
    /// Verified avoided emissions, gCO2eq.
    pub avoided_verified_grams: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When it was made.
    pub generated_at: DateTime<Utc>,
    /// The first month counted (`YYYY-MM`), or `None` for all time.
    pub since: Option<String>,
    /// One row per namespace and forecast, in order.
    pub rows: Vec<Row>,
    /// Everything together.
    pub total: Row,
    /// Every budget's use this month.
    pub budgets: Vec<BudgetUse>,
    /// Per namespace and month (from `since`), oldest first.
    pub months: Vec<Month>,
}

/// The report at `now` over everything given, from `since` (all time when `None`).
pub fn aggregate(
    ledgers: &[LedgerIn<'_>],
    budgets: &[BudgetIn<'_>],
    workloads: &[WorkloadIn<'_>],
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Report {
    let first_month = since.map(|s| crate::budget::period(s).month);
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut months: BTreeMap<(String, String), Month> = BTreeMap::new();
    for l in ledgers {
        let row = rows
            .entry((l.namespace.to_string(), l.forecast.to_string()))
            .or_insert_with(|| Row {
                namespace: l.namespace.to_string(),
                forecast: l.forecast.to_string(),
                ..Row::default()
            });
        let counted = |m: &&LedgerTotals| first_month.as_ref().is_none_or(|f| m.month >= *f);
        match (&first_month, &l.status.total) {
            (None, Some(total)) => row.add(total),
            _ => l
                .status
                .months
                .iter()
                .filter(counted)
                .for_each(|m| row.add(m)),
        }
        for m in l.status.months.iter().filter(counted) {
            let month = months
                .entry((l.namespace.to_string(), m.month.clone()))
                .or_insert_with(|| Month {
                    namespace: l.namespace.to_string(),
                    month: m.month.clone(),
                    ..Month::default()
                });
            month.emitted_grams += m.emitted_grams;
            month.avoided_estimated_grams += m.avoided_grams;
            month.avoided_verified_grams += m.verified_avoided_grams;
        }
    }
    let mut errors: BTreeMap<(String, String), (f64, u64)> = BTreeMap::new();
    for w in workloads {
        let finished = w.status.finished_at;
        if since.is_some_and(|s| finished.is_none_or(|f| f < s)) {
            continue;
        }
        if let Some(e) = w
            .status
            .verified
            .as_ref()
            .and_then(|v| v.forecast_error_percent)
            .filter(|e| e.is_finite())
        {
            let slot = errors
                .entry((w.namespace.to_string(), w.forecast.to_string()))
                .or_default();
            slot.0 += e;
            slot.1 += 1;
        }
    }
    let mut total = Row {
        namespace: "all".into(),
        forecast: "all".into(),
        ..Row::default()
    };
    let (mut all_error, mut all_samples) = (0.0, 0);
    for (key, (sum, n)) in &errors {
        let row = rows.entry(key.clone()).or_insert_with(|| Row {
            namespace: key.0.clone(),
            forecast: key.1.clone(),
            ..Row::default()
        });
        row.mean_forecast_error_percent = Some(sum / *n as f64);
        row.forecast_error_samples = *n;
        all_error += sum;
        all_samples += n;
    }
    for row in rows.values() {
        total.jobs += row.jobs;
        total.energy_kwh += row.energy_kwh;
        total.emitted_grams += row.emitted_grams;
        total.avoided_estimated_grams += row.avoided_estimated_grams;
        total.verified_jobs += row.verified_jobs;
        total.verified_emitted_grams += row.verified_emitted_grams;
        total.avoided_verified_grams += row.avoided_verified_grams;
        total.failed_jobs += row.failed_jobs;
        total.wasted_grams += row.wasted_grams;
    }
    if all_samples > 0 {
        total.mean_forecast_error_percent = Some(all_error / all_samples as f64);
        total.forecast_error_samples = all_samples;
    }
    let budgets = budgets
        .iter()
        .map(|b| {
            let of_namespace: Vec<Ledger<'_>> = ledgers
                .iter()
                .filter(|l| l.namespace == b.namespace)
                .map(|l| Ledger {
                    forecast: l.forecast,
                    status: l.status,
                })
                .collect();
            let e = crate::budget::evaluate(
                &Budget {
                    name: b.name,
                    spec: b.spec,
                },
                &of_namespace,
                now,
            );
            let share = |used: f64, limit: Option<f64>| {
                limit.filter(|l| *l > 0.0).map(|l| used / l * 100.0)
            };
            let used_percent = match (
                share(e.used_grams, e.limit_grams),
                share(e.used_kwh, e.limit_kwh),
            ) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            BudgetUse {
                namespace: b.namespace.to_string(),
                name: b.name.to_string(),
                action: e.action.as_str().to_string(),
                period: e.period.month.clone(),
                used: e.used_text(),
                limit: e.limit_text(),
                used_grams: e.used_grams,
                used_kwh: e.used_kwh,
                used_percent,
                exhausted: e.is_exhausted(),
            }
        })
        .collect::<Vec<_>>();
    let mut budgets = budgets;
    budgets.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut months: Vec<Month> = months.into_values().collect();
    months.sort_by(|a, b| (&a.month, &a.namespace).cmp(&(&b.month, &b.namespace)));
    Report {
        generated_at: now,
        since: first_month,
        rows: rows.into_values().collect(),
        total,
        budgets,
        months,
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// The columns of the table and the CSV, and each row's cells.
fn cells(row: &Row) -> Vec<String> {
    vec![
        row.namespace.clone(),
        row.forecast.clone(),
        row.jobs.to_string(),
        format!("{:.3}", row.energy_kwh),
        format!("{:.1}", row.emitted_grams),
        format!("{:.1}", row.avoided_verified_grams),
        row.verified_jobs.to_string(),
        format!("{:.1}", row.avoided_estimated_grams),
        row.failed_jobs.to_string(),
        format!("{:.1}", row.wasted_grams),
        opt(row.mean_forecast_error_percent, 1),
    ]
}

const HEADER: [&str; 11] = [
    "NAMESPACE",
    "FORECAST",
    "JOBS",
    "KWH",
    "EMITTED G",
    "AVOIDED G (VERIFIED)",
    "VERIFIED JOBS",
    "AVOIDED G (EST.)",
    "FAILED",
    "WASTED G",
    "MEAN FORECAST ERROR %",
];

fn table(header: &[&str], body: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in body {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("   ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in body {
        line(row.clone());
    }
    out
}

/// The report as text tables: workloads per namespace and forecast with the total, then the
/// budgets.
pub fn render_table(report: &Report) -> String {
    let mut body: Vec<Vec<String>> = report.rows.iter().map(cells).collect();
    body.push(cells(&report.total));
    let since = report
        .since
        .as_deref()
        .map_or("all time".to_string(), |m| format!("since {m}"));
    let mut out = format!(
        "carbonshift report, {since} (generated {})\n\n",
        crate::api::annotations::marker(report.generated_at)
    );
    out.push_str(&table(&HEADER, &body));
    if !report.budgets.is_empty() {
        out.push('\n');
        let body: Vec<Vec<String>> = report
            .budgets
            .iter()
            .map(|b| {
                vec![
                    b.namespace.clone(),
                    b.name.clone(),
                    b.action.clone(),
                    b.period.clone(),
                    b.used.clone(),
                    b.limit.clone(),
                    if b.exhausted { "yes" } else { "no" }.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "NAMESPACE",
                "BUDGET",
                "ACTION",
                "PERIOD",
                "USED",
                "LIMIT",
                "EXHAUSTED",
            ],
            &body,
        ));
    }
    out
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_string()
    }
}

/// The per-namespace/forecast rows and the total as CSV (header row first; `-` for no value).
pub fn render_csv(report: &Report) -> String {
    let header = [
        "namespace",
        "forecast",
        "jobs",
        "energy_kwh",
        "emitted_grams",
        "avoided_verified_grams",
        "verified_jobs",
        "avoided_estimated_grams",
        "failed_jobs",
        "wasted_grams",
        "mean_forecast_error_percent",
    ];
    let mut out = header.join(",");
    out.push('\n');
    for row in report.rows.iter().chain(std::iter::once(&report.total)) {
        let line: Vec<String> = cells(row).iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// The monthly avoided (estimated and verified) and emitted grams per namespace as a bar chart
/// (SVG), drawn by the replay's plot module.
pub fn render_plot(report: &Report) -> String {
    let mut months: Vec<String> = report.months.iter().map(|m| m.month.clone()).collect();
    months.dedup();
    let mut namespaces: Vec<String> = report.months.iter().map(|m| m.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    let value = |ns: &str, month: &str, f: fn(&Month) -> f64| {
        report
            .months
            .iter()
            .find(|m| m.namespace == ns && m.month == month)
            .map_or(0.0, f)
    };
    let mut series = Vec::new();
    for ns in &namespaces {
        for (what, f) in [
            (
                "emitted",
                (|m: &Month| m.emitted_grams) as fn(&Month) -> f64,
            ),
            ("avoided (est.)", |m: &Month| m.avoided_estimated_grams),
            ("avoided (verified)", |m: &Month| m.avoided_verified_grams),
        ] {
            series.push(crate::replay::plot::BarSeries {
                label: format!("{ns} {what}"),
                values: months.iter().map(|m| value(ns, m, f)).collect(),
            });
        }
    }
    let since = report
        .since
        .as_deref()
        .map_or("all months kept".to_string(), |m| format!("since {m}"));
    crate::replay::plot::render_bars(&crate::replay::plot::Bars {
        title: "carbonshift: gCO2eq emitted and avoided per namespace and month".to_string(),
        subtitle: format!("from the CarbonLedgers, {since}"),
        unit: "gCO2eq".to_string(),
        groups: months,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::budget::BudgetAction;
    use crate::api::workload::VerifiedFigures;
    use crate::units::parse_timestamp;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap_or_default()
    }

    fn totals(month: &str, jobs: u64, emitted: f64, avoided: f64) -> LedgerTotals {
        LedgerTotals {
            month: month.into(),
            jobs,
            energy_kwh: jobs as f64,
            emitted_grams: emitted,
            avoided_grams: avoided,
            verified_jobs: 1,
            verified_emitted_grams: emitted / 2.0,
            verified_avoided_grams: avoided / 2.0,
            failed_jobs: 1,
            wasted_grams: 1.0,
        }
    }

    fn ledger(months: Vec<LedgerTotals>) -> CarbonLedgerStatus {
        let mut total = LedgerTotals {
            month: "all".into(),
            ..LedgerTotals::default()
        };
        for m in &months {
            let mut row = Row::default();
            row.add(m);
            total.jobs += m.jobs;
            total.energy_kwh += m.energy_kwh;
            total.emitted_grams += m.emitted_grams;
            total.avoided_grams += m.avoided_grams;
            total.verified_jobs += m.verified_jobs;
            total.verified_emitted_grams += m.verified_emitted_grams;
            total.verified_avoided_grams += m.verified_avoided_grams;
            total.failed_jobs += m.failed_jobs;
            total.wasted_grams += m.wasted_grams;
        }
        CarbonLedgerStatus {
            months,
            total: Some(total),
            ..CarbonLedgerStatus::default()
        }
    }

    fn verified(error: f64, finished: &str) -> CarbonWorkloadStatus {
        CarbonWorkloadStatus {
            finished_at: Some(t(finished)),
            verified: Some(VerifiedFigures {
                intensity: 100.0,
                counterfactual_intensity: 200.0,
                energy_kwh: 1.0,
                emissions_grams: 100.0,
                counterfactual_grams: 200.0,
                avoided_grams: 100.0,
                forecast_error_percent: Some(error),
                source: "static".into(),
                verified_at: t(finished),
            }),
            ..CarbonWorkloadStatus::default()
        }
    }

    #[test]
    fn rows_are_per_namespace_and_forecast_and_the_total_is_the_ledgers() {
        let now = t("2026-12-07T12:00:00Z");
        let uk = ledger(vec![
            totals("2026-11", 2, 100.0, 40.0),
            totals("2026-12", 3, 300.0, 60.0),
        ]);
        let de = ledger(vec![totals("2026-12", 1, 10.0, 5.0)]);
        let other = ledger(vec![totals("2026-10", 4, 1000.0, 0.0)]);
        let ledgers = [
            LedgerIn {
                namespace: "ml",
                forecast: "uk",
                status: &uk,
            },
            LedgerIn {
                namespace: "ml",
                forecast: "de",
                status: &de,
            },
            LedgerIn {
                namespace: "vision",
                forecast: "uk",
                status: &other,
            },
        ];
        let w = [
            verified(10.0, "2026-12-01T00:00:00Z"),
            verified(-20.0, "2026-11-01T00:00:00Z"),
        ];
        let workloads = [
            WorkloadIn {
                namespace: "ml",
                forecast: "uk",
                status: &w[0],
            },
            WorkloadIn {
                namespace: "ml",
                forecast: "uk",
                status: &w[1],
            },
        ];
        let spec = CarbonBudgetSpec {
            grams_per_month: Some(200.0),
            kwh_per_month: Some(100.0),
            action: BudgetAction::Deny,
            forecasts: Vec::new(),
        };
        let budgets = [BudgetIn {
            namespace: "ml",
            name: "team",
            spec: &spec,
        }];
        let r = aggregate(&ledgers, &budgets, &workloads, None, now);
        let keys: Vec<(&str, &str)> = r
            .rows
            .iter()
            .map(|r| (r.namespace.as_str(), r.forecast.as_str()))
            .collect();
        assert_eq!(keys, [("ml", "de"), ("ml", "uk"), ("vision", "uk")]);
        let uk_row = &r.rows[1];
        assert_eq!(
            (
                uk_row.jobs,
                uk_row.emitted_grams,
                uk_row.avoided_estimated_grams
            ),
            (5, 400.0, 100.0)
        );
        assert_eq!(
            (uk_row.avoided_verified_grams, uk_row.failed_jobs),
            (50.0, 2)
        );
        assert_eq!(uk_row.mean_forecast_error_percent, Some(-5.0));
        assert_eq!(r.total.jobs, 10);
        assert_eq!(r.total.emitted_grams, 1410.0);
        let b = &r.budgets[0];
        assert_eq!(
            (b.used_grams, b.exhausted, b.period.as_str()),
            (310.0, true, "2026-12")
        );
        assert_eq!(b.used_percent, Some(155.0));
        // Since December: only December's months, and the November workload's error is left out.
        let r = aggregate(
            &ledgers,
            &budgets,
            &workloads,
            Some(t("2026-12-05T00:00:00Z")),
            now,
        );
        assert_eq!(r.since.as_deref(), Some("2026-12"));
        assert_eq!(r.total.jobs, 4);
        assert_eq!(r.rows[1].mean_forecast_error_percent, None);
        let months: Vec<(&str, &str)> = r
            .months
            .iter()
            .map(|m| (m.month.as_str(), m.namespace.as_str()))
            .collect();
        assert_eq!(months, [("2026-12", "ml")]);
        assert_eq!(r.months[0].emitted_grams, 310.0);
        // The renderings.
        let table = render_table(&r);
        assert!(
            table.starts_with("carbonshift report, since 2026-12 (generated 2026-12-07T12:00:00Z)"),
            "{table}"
        );
        assert!(table.contains("NAMESPACE   FORECAST   JOBS"), "{table}");
        assert!(table.contains("team"), "{table}");
        let csv = render_csv(&r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "namespace,forecast,jobs,energy_kwh,emitted_grams,avoided_verified_grams,verified_jobs,avoided_estimated_grams,failed_jobs,wasted_grams,mean_forecast_error_percent"
        );
        assert_eq!(lines[1], "ml,de,1,1.000,10.0,2.5,1,5.0,1,1.0,-");
        assert_eq!(
            lines.last().copied(),
            Some("all,all,4,4.000,310.0,32.5,2,65.0,2,2.0,-")
        );
        let svg = render_plot(&r);
        assert!(
            svg.starts_with("<svg") && svg.contains("ml emitted") && svg.contains("2026-12"),
            "{svg}"
        );
    }

    proptest! {
        /// Without `since`, the report's total is the sum of the ledgers' own totals, whatever
        /// their months hold; with a `since` before every month, the sum of all months.
        #[test]
        fn the_total_is_the_ledgers_total(
            ledgers in proptest::collection::vec(proptest::collection::vec((0u32..24, 0u64..5, 0.0f64..100.0, -10.0f64..50.0), 0..6), 0..5),
        ) {
            let now = t("2026-12-07T12:00:00Z");
            let statuses: Vec<CarbonLedgerStatus> = ledgers.iter().map(|ms| {
                let mut months: Vec<LedgerTotals> = ms.iter().map(|(m, j, e, a)| totals(&format!("2025-{:02}", m % 12 + 1), *j, *e, *a)).collect();
                months.sort_by(|a, b| a.month.cmp(&b.month));
                months.dedup_by(|a, b| a.month == b.month);
                ledger(months)
            }).collect();
            let names: Vec<String> = (0..statuses.len()).map(|i| format!("f{i}")).collect();
            let input: Vec<LedgerIn<'_>> = statuses.iter().zip(&names).map(|(s, n)| LedgerIn { namespace: "ml", forecast: n, status: s }).collect();
            let r = aggregate(&input, &[], &[], None, now);
            let jobs: u64 = statuses.iter().filter_map(|s| s.total.as_ref()).map(|t| t.jobs).sum();
            let emitted: f64 = statuses.iter().filter_map(|s| s.total.as_ref()).map(|t| t.emitted_grams).sum();
            prop_assert_eq!(r.total.jobs, jobs);
            prop_assert!((r.total.emitted_grams - emitted).abs() < 1e-6);
            let early = aggregate(&input, &[], &[], Some(t("2000-01-01T00:00:00Z")), now);
            prop_assert_eq!(early.total.jobs, jobs);
        }
    }
}
