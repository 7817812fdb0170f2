//! Scoring runs on the actual trace and reporting them: the JSON shape (`--output json`) and the
//! table for people.
//!
//! Power model: every job draws a constant `--power` (default 1 kW) of IT power in a facility with
//! `--pue` (default 1.0, IT power only, as in the paper), so emissions in gCO2eq are
//! kWh × g/kWh on the actual trace. Savings percentages do not depend on the constant.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::planner::{Capacity, Power};

use super::policy::Runs;
use super::scenario::Job;
use super::series::{HOUR_MS, Series, ms};

/// Emissions, deadline misses and peak concurrency of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Total emissions of the jobs the policy ran, gCO2eq.
    pub emissions_grams: f64,
    /// Jobs that finished after their deadline or did not run their whole duration.
    pub deadline_misses: usize,
    /// Most jobs running at the same instant.
    pub peak_concurrency: usize,
}

/// Scores `runs` on the actual trace.
pub fn score(series: &Series, jobs: &[Job], runs: &Runs, power: &Power) -> Score {
    let kw = power.watts() * power.pue() / 1_000.0;
    let mut integral = 0.0;
    for r in runs.iter().flatten() {
        for &(a, b) in r {
            integral += series.integral(a, b);
        }
    }
    Score {
        emissions_grams: kw * integral / HOUR_MS,
        deadline_misses: deadline_misses(jobs, runs),
        peak_concurrency: peak_concurrency(runs),
    }
}

/// Jobs whose runs end after the deadline, overlap, or do not add up to the duration.
pub fn deadline_misses(jobs: &[Job], runs: &Runs) -> usize {
    jobs.iter()
        .zip(runs)
        .filter(|(job, r)| {
            let Some(r) = r else { return false };
            let total: i64 = r.iter().map(|w| w.1 - w.0).sum();
            let ordered = r.windows(2).all(|p| p[0].1 <= p[1].0);
            let end = r.last().map_or(i64::MAX, |w| w.1);
            total != job.duration.num_milliseconds() || !ordered || end > ms(job.deadline)
        })
        .count()
}

/// Most runs overlapping at one instant (a run ending when another starts does not overlap it).
pub fn peak_concurrency(runs: &Runs) -> usize {
    let mut events: Vec<(i64, i32)> = runs
        .iter()
        .flatten()
        .flatten()
        .flat_map(|&(a, b)| [(a, 1), (b, -1)])
        .collect();
    events.sort_unstable();
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, delta) in events {
        now += i64::from(delta);
        peak = peak.max(now);
    }
    usize::try_from(peak).unwrap_or(0)
}

/// `(baseline − emissions) / baseline` in percent (0 for a zero baseline).
pub fn savings_percent(baseline: f64, emissions: f64) -> f64 {
    if baseline > 0.0 {
        (baseline - emissions) / baseline * 100.0
    } else {
        0.0
    }
}

/// The replayed scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioInfo {
    /// `nightly`, `ml` or `jobs`.
    pub name: &'static str,
    /// One line for people.
    pub description: String,
    /// `nightly`: the shift window either side of 01:00.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// `nightly`, `ml`: the calendar year.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    /// `ml`: the deadline rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<&'static str>,
    /// `ml`: the seed of the job set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `jobs`: how long a job may wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<String>,
    /// `jobs`: when arrival 0 is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// `jobs`: where the job trace came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Whether jobs may pause and resume.
    pub interruptible: bool,
    /// Whether the paper's simulator quirks are reproduced.
    pub paper_compat: bool,
}

/// The carbon-intensity trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceInfo {
    /// File path or built-in name.
    pub name: String,
    /// First instant covered.
    pub from: DateTime<Utc>,
    /// First instant after the trace.
    pub to: DateTime<Utc>,
    /// Time-weighted mean intensity, gCO2eq/kWh.
    pub mean_intensity: f64,
}

/// What the scheduler saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForecastInfo {
    /// Relative error (σ / trace mean); 0 for perfect forecasts.
    pub error: f64,
    /// `perfect`, `constant` or `lead-time`.
    pub error_model: &'static str,
    /// σ in gCO2eq/kWh.
    pub sigma: f64,
    /// Noise seeds averaged over.
    pub seeds: u32,
    /// How far ahead the scheduler sees (`null`: unlimited).
    pub horizon: Option<String>,
    /// `carbonshiftReplan`'s re-planning interval.
    pub replan: String,
}

/// The power model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PowerInfo {
    /// IT power per job, W.
    pub watts: f64,
    /// Power usage effectiveness.
    pub pue: f64,
    /// The model in words.
    pub model: String,
}

/// Spread over noise seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedSpread {
    /// Number of seeds.
    pub count: u32,
    /// Lowest saving of one seed, percent.
    pub savings_percent_min: f64,
    /// Highest saving of one seed, percent.
    pub savings_percent_max: f64,
}

/// A capped policy's figures without the cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Uncapped {
    /// Saving without the cap, percent.
    pub savings_percent: f64,
    /// Emissions without the cap, gCO2eq.
    pub emissions_grams: f64,
    /// Peak concurrency without the cap.
    pub peak_concurrency: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One policy's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// Emissions avoided versus `runNow`, percent (mean emissions over seeds).
    pub savings_percent: f64,
    /// Total emissions on the actual trace, gCO2eq (mean over seeds).
    pub emissions_grams: f64,
    /// Jobs finished after their deadline (all seeds together); always 0 unless something is wrong.
    pub deadline_misses: usize,
    /// Most jobs running at once (highest over seeds).
    pub peak_concurrency: usize,
    /// With several noise seeds: the spread of the saving.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeds: Option<SeedSpread>,
    /// Under `--capacity`: jobs run above the cap to keep their deadline (mean over seeds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow_jobs: Option<f64>,
    /// Under `--capacity`: the same policy without the cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncapped: Option<Uncapped>,
    /// Under `--capacity`: the planner-level simulation's planning calls (all seeds together).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planning_calls: Option<usize>,
    /// Jobs released by the deadline rule (no plan, or none early enough) instead of a plan (all
    /// seeds together; under `--capacity`, of the capped run).
    #[serde(skip_serializing_if = "is_zero")]
    pub fallbacks: usize,
    /// For the planner policies: what the operator's state machine did (without the cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorReport>,
    /// How the policy decides, in words.
    pub rule: String,
}

/// What the operator's state machine did in a planner policy, all seeds together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorReport {
    /// Calls of `lifecycle::decide`.
    pub decisions: usize,
    /// Releases by reason (`Released`, `Resumed`, `DeadlineRelease`, …).
    pub releases: std::collections::BTreeMap<String, usize>,
    /// Pauses of interruptible jobs between windows.
    pub pauses: usize,
}

/// Every policy's results; absent policies were not selected.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policies {
    /// The no-shifting baseline.
    pub run_now: PolicyReport,
    /// Start at the first moment at or below a threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<PolicyReport>,
    /// The planner, once at submission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carbonshift: Option<PolicyReport>,
    /// The planner, again at every forecast refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carbonshift_replan: Option<PolicyReport>,
    /// Brute-force perfect foresight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oracle: Option<PolicyReport>,
}

impl Policies {
    /// `(JSON name, report)` of each present policy, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &PolicyReport)> {
        [
            ("runNow", Some(&self.run_now)),
            ("threshold", self.threshold.as_ref()),
            ("carbonshift", self.carbonshift.as_ref()),
            ("carbonshiftReplan", self.carbonshift_replan.as_ref()),
            ("oracle", self.oracle.as_ref()),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.map(|p| (n, p)))
    }
}

/// The whole replay, as `--output json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What was replayed.
    pub scenario: ScenarioInfo,
    /// Jobs replayed.
    pub jobs: usize,
    /// Jobs of the scenario left out because their run-now time lies outside the trace.
    pub skipped_jobs: usize,
    /// The trace.
    pub trace: TraceInfo,
    /// What the scheduler saw.
    pub forecast: ForecastInfo,
    /// The power model.
    pub power: PowerInfo,
    /// The concurrency cap, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// Results per policy.
    pub policies: Policies,
    /// `(carbonshift − oracle) / oracle` emissions, when both ran with perfect forecasts, an
    /// unlimited horizon and no cap: 0 to rounding (two independent searches agreeing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carbonshift_vs_oracle: Option<f64>,
}

/// Emissions with a unit that keeps the figure readable.
pub fn mass(grams: f64) -> String {
    if grams.abs() >= 1e6 {
        format!("{:.2} t", grams / 1e6)
    } else if grams.abs() >= 1e3 {
        format!("{:.2} kg", grams / 1e3)
    } else {
        format!("{grams:.1} g")
    }
}

impl Report {
    /// Deadline misses of all policies together: 0 unless something is wrong.
    pub fn deadline_misses(&self) -> usize {
        self.policies.iter().map(|(_, p)| p.deadline_misses).sum()
    }

    /// The headline: what carbonshift saves, beside the optimum and the threshold policy.
    pub fn headline(&self) -> Option<String> {
        let p = &self.policies;
        let ours = p.carbonshift.as_ref().or(p.carbonshift_replan.as_ref())?;
        let mut extra = Vec::new();
        if let Some(o) = &p.oracle {
            extra.push(format!("perfect foresight {:.2} %", o.savings_percent));
        }
        if let Some(t) = &p.threshold {
            extra.push(format!("threshold policy {:.2} %", t.savings_percent));
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join(", "))
        };
        Some(format!(
            "carbonshift saves {:.2} % of emissions versus running at once{extra}",
            ours.savings_percent
        ))
    }

    /// The report as aligned text.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Scenario:  {} ({} jobs",
            self.scenario.description, self.jobs
        ));
        if self.skipped_jobs > 0 {
            out.push_str(&format!(
                "; {} outside the trace left out",
                self.skipped_jobs
            ));
        }
        out.push_str(")\n");
        out.push_str(&format!(
            "Trace:     {} ({} .. {}, mean {:.1} gCO2eq/kWh)\n",
            self.trace.name,
            self.trace.from.format("%Y-%m-%d %H:%M"),
            self.trace.to.format("%Y-%m-%d %H:%M"),
            self.trace.mean_intensity
        ));
        let f = &self.forecast;
        let horizon = f
            .horizon
            .as_ref()
            .map_or("unlimited".to_string(), |h| h.clone());
        let seen = if f.error > 0.0 {
            format!(
                "{:.0} % error ({} model, σ {:.1} g/kWh), mean of {} seeds",
                f.error * 100.0,
                f.error_model,
                f.sigma,
                f.seeds
            )
        } else {
            "perfect".to_string()
        };
        out.push_str(&format!(
            "Forecast:  {seen}; horizon {horizon}; re-plan every {}\n",
            f.replan
        ));
        out.push_str(&format!("Power:     {}\n", self.power.model));
        if let Some(c) = &self.capacity {
            out.push_str(&format!(
                "Capacity:  {} concurrent jobs (per {} slot)\n",
                c.limit,
                crate::units::format_duration(c.slot)
            ));
        }
        out.push('\n');
        let capped = self.capacity.is_some();
        let mut rows: Vec<Vec<String>> = vec![
            ["policy", "saving", "emissions", "misses", "peak"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ];
        if capped {
            rows[0].extend(["overflow", "uncapped saving", "uncapped peak"].map(String::from));
        }
        for (name, p) in self.policies.iter() {
            let mut row = vec![
                name.to_string(),
                format!("{:.2} %", p.savings_percent),
                mass(p.emissions_grams),
                p.deadline_misses.to_string(),
                p.peak_concurrency.to_string(),
            ];
            if capped {
                row.push(p.overflow_jobs.map_or("-".into(), |o| format!("{o:.1}")));
                row.push(
                    p.uncapped
                        .map_or("-".into(), |u| format!("{:.2} %", u.savings_percent)),
                );
                row.push(
                    p.uncapped
                        .map_or("-".into(), |u| u.peak_concurrency.to_string()),
                );
            }
            rows.push(row);
        }
        let columns = rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c == 0 {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("   ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push('\n');
        for (name, p) in self.policies.iter() {
            out.push_str(&format!("{name}: {}\n", p.rule));
        }
        if let Some(gap) = self.carbonshift_vs_oracle {
            out.push_str(&format!(
                "carbonshift vs oracle: relative emissions difference {gap:.1e} (two independent searches)\n"
            ));
        }
        if let Some(h) = self.headline() {
            out.push('\n');
            out.push_str(&h);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn peak_counts_touching_runs_once() {
        let runs: Runs = vec![
            Some(vec![(0, 10)]),
            Some(vec![(10, 20)]),
            Some(vec![(5, 15)]),
            None,
            Some(vec![(0, 2), (12, 14)]),
        ];
        assert_eq!(peak_concurrency(&runs), 3);
        assert_eq!(peak_concurrency(&vec![]), 0);
    }

    #[test]
    fn misses_catch_late_short_and_overlapping_runs() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let job = Job {
            id: 0,
            submitted_at: t0,
            duration: TimeDelta::milliseconds(10),
            deadline: t0 + TimeDelta::milliseconds(20),
            interruptible: true,
            run_now: t0,
            run_now_alt: None,
            baseline_only: false,
        };
        let jobs = vec![job; 5];
        let runs: Runs = vec![
            Some(vec![(10, 20)]),
            Some(vec![(11, 21)]),
            Some(vec![(0, 5)]),
            Some(vec![(0, 6), (4, 8)]),
            None,
        ];
        assert_eq!(deadline_misses(&jobs, &runs), 3);
    }

    #[test]
    fn emissions_are_kwh_times_intensity() {
        use crate::planner::{Forecast, Point};
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let f = Forecast::new(vec![
            Point {
                start: t0,
                intensity: 200.0,
            },
            Point {
                start: t0 + TimeDelta::hours(1),
                intensity: 100.0,
            },
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let series = Series::from_forecast(&f);
        let job = Job {
            id: 0,
            submitted_at: t0,
            duration: TimeDelta::hours(2),
            deadline: t0 + TimeDelta::hours(2),
            interruptible: false,
            run_now: t0,
            run_now_alt: None,
            baseline_only: false,
        };
        let power = Power::new(1_500.0, 1.2).unwrap_or_else(|e| panic!("{e}"));
        let s = score(&series, &[job], &vec![Some(vec![(0, 7_200_000)])], &power);
        // 1.8 kW × (1 h × 200 + 1 h × 100) = 540 g.
        assert!(
            (s.emissions_grams - 540.0).abs() < 1e-9,
            "{}",
            s.emissions_grams
        );
        assert_eq!(s.deadline_misses, 0);
        assert_eq!(s.peak_concurrency, 1);
        assert_eq!(savings_percent(540.0, 405.0), 25.0);
        assert_eq!(mass(540.0), "540.0 g");
        assert_eq!(mass(54_321.0), "54.32 kg");
        assert_eq!(mass(47_700_000.0), "47.70 t");
    }
}
