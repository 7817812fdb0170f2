//! Spatial and temporal shifting over several regions (`carbonshift replay --regions`): each
//! region is a candidate forecast (a node pool or cluster on its own grid), and every job of a
//! scenario is placed with the operator's own fleet planner ([`crate::planner::fleet::place`] and
//! [`crate::planner::fleet::Fleet`], one per region, capped per region with `--capacity`).
//!
//! Forecasts are perfect (the traces themselves). Jobs are taken in submission order; each is
//! placed, admitted into the chosen region's fleet and committed there (it never moves), so later
//! jobs plan around it. Strategies, all scored on the traces and compared with running at once in
//! the job's **home** region:
//!
//! - `temporal`: the home region only, any allowed start (what carbonshift does today);
//! - `spatial`: start at once, in the cleanest region (no waiting);
//! - `both`: every region × every allowed start;
//! - `oracle`: the spatio-temporal optimum, without caps (with perfect forecasts and no cap it
//!   equals `both`, which checks that placement picks the minimum).
//!
//! Every job has the same power, so a saving is `1 − Σ intensity·duration / Σ run-now·duration`.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::planner::fleet::{Caps, Decision, Demand, Fleet, FleetError, Pool, place};
use crate::planner::{Constraints, Forecast, NoPlan, Point};

use super::scenario::{self, Job, Span};
use super::series::{Series, at};
use super::{ReplayError, ScenarioSpec};

/// The first and last marker of the section in `docs/results.md`.
pub const SECTION_BEGIN: &str =
    "<!-- spatial:begin (carbonshift replay --results-spatial docs/results.md) -->";
/// See [`SECTION_BEGIN`].
pub const SECTION_END: &str = "<!-- spatial:end -->";

/// The regions of `names`, from their points.
pub fn regions(traces: Vec<(String, Vec<Point>)>) -> Result<Vec<Region>, ReplayError> {
    traces
        .into_iter()
        .map(|(name, points)| {
            Ok(Region {
                name,
                forecast: Forecast::new(points)?,
            })
        })
        .collect()
}

/// The jobs of a Scenario I or II `spec` on the time every region covers.
pub fn jobs_for(regions: &[Region], spec: &ScenarioSpec) -> Result<Vec<Job>, ReplayError> {
    let mut span: Option<Span> = None;
    for r in regions {
        let series = Series::from_forecast(&r.forecast);
        let (Some(from), Some(to)) = (series.first(), series.last_end()) else {
            return Err(ReplayError::EmptyTrace(""));
        };
        span = Some(match span {
            None => Span { from, to },
            Some(s) => Span {
                from: s.from.max(from),
                to: s.to.min(to),
            },
        });
    }
    let span = span.ok_or(ReplayError::EmptyTrace(""))?;
    let (from, to) = (span.from, span.to);
    let no_year = || ReplayError::NoFullYear {
        from: at(from),
        to: at(to),
    };
    let set = match spec {
        ScenarioSpec::Nightly { window, year } => {
            let year = year
                .or_else(|| scenario::first_full_year(Span { from, to }))
                .ok_or_else(no_year)?;
            scenario::nightly(Span { from, to }, year, *window, false)
        }
        ScenarioSpec::Ml {
            rule,
            interruptible,
            year,
            count,
            seed,
        } => {
            let year = year
                .or_else(|| scenario::first_full_year(Span { from, to }))
                .ok_or_else(no_year)?;
            scenario::ml(
                Span { from, to },
                year,
                *count,
                *seed,
                *rule,
                *interruptible,
                false,
            )
        }
        ScenarioSpec::Jobs { .. } => {
            return Err(ReplayError::Option(
                "--regions replays --scenario nightly or ml".to_string(),
            ));
        }
    };
    if set.jobs.is_empty() {
        return Err(ReplayError::NoJobs {
            from: at(from),
            to: at(to),
        });
    }
    Ok(set.jobs)
}

/// One region: its name and its trace as a forecast.
#[derive(Debug, Clone)]
pub struct Region {
    /// The name (a built-in trace name such as `fr-2020`).
    pub name: String,
    /// The trace.
    pub forecast: Forecast,
}

/// How the regions are capped and how much margin the operator keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpatialOptions {
    /// The operator's safety margin.
    pub margin: TimeDelta,
    /// Most jobs running at once per region (`--capacity`); `None`: no cap.
    pub capacity: Option<u32>,
    /// Slot of the capacity ledger.
    pub slot: TimeDelta,
}

/// Scores of one strategy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// `temporal`, `spatial`, `both` or `oracle`.
    pub name: &'static str,
    /// Duration-weighted mean intensity of the runs, gCO2eq/kWh.
    pub intensity: f64,
    /// Jobs run in each region, in region order.
    pub per_region: Vec<usize>,
    /// Jobs released over a region's cap to meet their deadline.
    pub overflow: usize,
    /// Jobs that finished after their deadline (always 0 unless there is a bug).
    pub misses: usize,
}

/// The figures of one home region.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Home {
    /// The home region.
    pub region: String,
    /// Duration-weighted mean intensity of running every job at once there.
    pub run_now: f64,
    /// `temporal` in this region, then `spatial`, `both`, `oracle` (the same for every home).
    pub strategies: Vec<Strategy>,
}

impl Home {
    /// Saving of a strategy against running at once at home, in percent.
    pub fn saving(&self, strategy: &str) -> Option<f64> {
        let s = self.strategies.iter().find(|s| s.name == strategy)?;
        (self.run_now > 0.0).then(|| (1.0 - s.intensity / self.run_now) * 100.0)
    }
}

/// The result: one [`Home`] per region.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpatialReport {
    /// The regions, in order.
    pub regions: Vec<String>,
    /// Jobs replayed.
    pub jobs: usize,
    /// Per home region.
    pub homes: Vec<Home>,
}

/// What a strategy lets a job do.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Wait, in the home region only.
    Temporal(usize),
    /// Start at once, anywhere.
    Spatial,
    /// Wait, anywhere.
    Both,
}

/// Duration-weighted accumulator.
#[derive(Debug, Default, Clone, Copy)]
struct Mean {
    sum: f64,
    weight: f64,
}

impl Mean {
    fn add(&mut self, intensity: f64, duration: TimeDelta) {
        let w = duration.num_milliseconds() as f64;
        self.sum += intensity * w;
        self.weight += w;
    }
    fn get(&self) -> f64 {
        if self.weight > 0.0 {
            self.sum / self.weight
        } else {
            0.0
        }
    }
}

fn run_now(region: &Region, start: DateTime<Utc>, duration: TimeDelta) -> f64 {
    region
        .forecast
        .mean_over(start, start + duration)
        .map_or(0.0, |c| c.mean)
}

/// Plays every job under one strategy.
fn play(
    regions: &[Region],
    jobs: &[Job],
    options: &SpatialOptions,
    mode: Mode,
    capped: bool,
    name: &'static str,
) -> Result<Strategy, FleetError> {
    let caps = Caps {
        jobs: if capped { options.capacity } else { None },
        gpus: None,
        slot: options.slot,
    };
    let mut fleets: Vec<Fleet<usize>> = regions
        .iter()
        .map(|r| Fleet::new(r.forecast.clone(), caps))
        .collect::<Result<_, _>>()?;
    let mut mean = Mean::default();
    let mut per_region = vec![0usize; regions.len()];
    let (mut overflow, mut misses) = (0, 0);
    for job in jobs {
        let (constraints, now) = match mode {
            Mode::Spatial => (
                Constraints::new(job.run_now, job.duration)
                    .with_deadline(job.run_now + job.duration + options.margin)
                    .with_margin(options.margin),
                job.run_now,
            ),
            Mode::Temporal(_) | Mode::Both => (
                job.constraints().with_margin(options.margin),
                job.submitted_at,
            ),
        };
        let candidates: Vec<usize> = match mode {
            Mode::Temporal(home) => vec![home],
            Mode::Spatial | Mode::Both => (0..regions.len()).collect(),
        };
        let pools: Vec<Pool<'_, usize>> = candidates
            .iter()
            .map(|&i| Pool {
                name: &regions[i].name,
                selector: None,
                fleet: Some(&fleets[i]),
            })
            .collect();
        let chosen = match place(&pools, &constraints, Demand::default(), &[], None, now) {
            Ok(Decision::Placed(p)) => Some((candidates[p.index], p.scheduled)),
            Ok(Decision::Kept { .. }) | Err(_) => None,
        };
        let Some((region, scheduled)) = chosen else {
            // No candidate could plan it: it runs at once at home (the deadline rule).
            let home = candidates.first().copied().unwrap_or(0);
            mean.add(
                run_now(&regions[home], job.run_now, job.duration),
                job.duration,
            );
            per_region[home] += 1;
            continue;
        };
        let intensity = match &scheduled.plan {
            Ok(plan) => {
                if plan.end > job.deadline {
                    misses += 1;
                }
                plan.expected_intensity
            }
            Err(NoPlan::DeadlinePassed { .. }) | Err(_) => {
                run_now(&regions[region], now, job.duration)
            }
        };
        if scheduled.overflow {
            overflow += 1;
        }
        mean.add(intensity, job.duration);
        per_region[region] += 1;
        let fleet = &mut fleets[region];
        fleet.admit(job.id, constraints, Demand::default(), now);
        fleet.release(&job.id, now)?;
    }
    Ok(Strategy {
        name,
        intensity: mean.get(),
        per_region,
        overflow,
        misses,
    })
}

/// Replays `jobs` (in submission order) over `regions` under every strategy, and scores each
/// against running at once in every region as home.
pub fn replay(
    regions: &[Region],
    jobs: &[Job],
    options: &SpatialOptions,
) -> Result<SpatialReport, FleetError> {
    let spatial = play(regions, jobs, options, Mode::Spatial, true, "spatial")?;
    let both = play(regions, jobs, options, Mode::Both, true, "both")?;
    let oracle = play(regions, jobs, options, Mode::Both, false, "oracle")?;
    let mut homes = Vec::with_capacity(regions.len());
    for (h, region) in regions.iter().enumerate() {
        let mut now = Mean::default();
        for job in jobs {
            now.add(run_now(region, job.run_now, job.duration), job.duration);
        }
        let temporal = play(regions, jobs, options, Mode::Temporal(h), true, "temporal")?;
        homes.push(Home {
            region: region.name.clone(),
            run_now: now.get(),
            strategies: vec![temporal, spatial.clone(), both.clone(), oracle.clone()],
        });
    }
    Ok(SpatialReport {
        regions: regions.iter().map(|r| r.name.clone()).collect(),
        jobs: jobs.len(),
        homes,
    })
}

/// The report as a Markdown table: one row per home region, savings in percent.
pub fn markdown(report: &SpatialReport) -> String {
    let mut out = String::from(
        "| home | run now (g/kWh) | temporal only | spatial only | both | oracle | jobs per region (both) |\n|---|---|---|---|---|---|---|\n",
    );
    for home in &report.homes {
        let pct = |s: &str| {
            home.saving(s)
                .map_or("–".to_string(), |v| format!("{v:.2} %"))
        };
        let split = home
            .strategies
            .iter()
            .find(|s| s.name == "both")
            .map(|s| {
                report
                    .regions
                    .iter()
                    .zip(&s.per_region)
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "| {} | {:.1} | {} | {} | {} | {} | {} |\n",
            home.region,
            home.run_now,
            pct("temporal"),
            pct("spatial"),
            pct("both"),
            pct("oracle"),
            split
        ));
    }
    out
}

/// The `docs/results.md` section: for each `(label, spec)` and each home region, the savings of
/// temporal only, spatial only and both beside the oracle, perfect forecasts, no cap, the
/// operator's `margin`. Deterministic (no timings), so it can be regenerated on its own.
pub fn section(
    regions: &[Region],
    specs: &[(String, ScenarioSpec)],
    capped: &[(String, ScenarioSpec)],
    margin: TimeDelta,
) -> Result<String, ReplayError> {
    let free = SpatialOptions {
        margin,
        capacity: None,
        slot: TimeDelta::minutes(30),
    };
    let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
    let mut out = format!(
        "{SECTION_BEGIN}\n## Spatial and temporal shifting: {}\n\n\
Each job may run in any of the regions (node pools or clusters on different grids), placed by the operator's fleet planner (`planner::fleet::place`) over every region × allowed start; perfect forecasts, the operator's {} margin, no capacity cap. Savings are against running at once in the job's **home** region: *temporal only* waits for the cleanest window at home (carbonshift with one forecast), *spatial only* starts at once in the cleanest region, *both* chooses region and time, the *oracle* is the spatio-temporal optimum (with perfect forecasts and no cap, placement must find it: the two columns agree). Reproduce: `carbonshift replay --regions {} --scenario nightly --window 8h` (or `--scenario ml --deadline …`); `--capacity N` caps each region. This section alone is regenerated by `carbonshift replay --results-spatial docs/results.md`.\n\n\
| scenario | home | run now (g/kWh) | temporal only | spatial only | both | oracle | jobs per region (both) |\n|---|---|---:|---:|---:|---:|---:|---|\n",
        names.join(", "),
        crate::units::format_duration(margin),
        names.join(","),
    );
    let mut misses = 0;
    let mut runs: Vec<(String, SpatialOptions, &ScenarioSpec)> = specs
        .iter()
        .map(|(label, spec)| (label.clone(), free, spec))
        .collect();
    for (label, spec) in capped {
        let jobs = jobs_for(regions, spec)?;
        let cap = peak_concurrency(&jobs).div_ceil(2).max(1);
        let options = SpatialOptions {
            capacity: u32::try_from(cap).ok(),
            ..free
        };
        runs.push((format!("{label}, cap {cap}/region"), options, spec));
    }
    for (label, options, spec) in &runs {
        let jobs = jobs_for(regions, spec)?;
        let report =
            replay(regions, &jobs, options).map_err(|e| ReplayError::Option(e.to_string()))?;
        for home in &report.homes {
            misses += home.strategies.iter().map(|s| s.misses).sum::<usize>();
            let pct = |s: &str| {
                home.saving(s)
                    .map_or("–".to_string(), |v| format!("{v:.2}"))
            };
            let split = home
                .strategies
                .iter()
                .find(|s| s.name == "both")
                .map(|s| {
                    names
                        .iter()
                        .zip(&s.per_region)
                        .map(|(r, n)| format!("{r} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "| {label} ({} jobs) | {} | {:.1} | {} | {} | {} | {} | {split} |\n",
                report.jobs,
                home.region,
                home.run_now,
                pct("temporal"),
                pct("spatial"),
                pct("both"),
                pct("oracle"),
            ));
        }
    }
    out.push_str(&format!(
        "\nDeadline misses: {misses}. Savings in percent. Rows marked *cap* allow each region at most half the peak number of jobs that run at once without shifting (a 30-minute ledger slot; the oracle stays uncapped and the run-now baseline is not capped either, so a saving can be negative when the cap pushes work out of a clean home region). Without a cap every job of these scenarios goes to FR, the cleanest of the three grids.\n{SECTION_END}\n"
    ));
    Ok(out)
}

/// Most jobs running at once when every job starts at its run-now time.
pub fn peak_concurrency(jobs: &[Job]) -> usize {
    let mut events: Vec<(DateTime<Utc>, i32)> = jobs
        .iter()
        .flat_map(|j| [(j.run_now, 1), (j.run_now + j.duration, -1)])
        .collect();
    // Ends before starts at the same instant: [a, b) then [b, c) do not overlap.
    events.sort_unstable();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        peak = peak.max(now);
    }
    usize::try_from(peak).unwrap_or(0)
}

/// `page` with its spatial section replaced by `section` (or `section` appended when the page
/// has none).
pub fn replace_section(page: &str, section: &str) -> String {
    match (page.find(SECTION_BEGIN), page.find(SECTION_END)) {
        (Some(a), Some(b)) if a < b => {
            let end = b + SECTION_END.len();
            let rest = page[end..].strip_prefix('\n').unwrap_or(&page[end..]);
            format!("{}{section}{rest}", &page[..a])
        }
        _ => {
            let sep = if page.ends_with('\n') { "\n" } else { "\n\n" };
            format!("{page}{sep}{section}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Point;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::hours(h)
    }

    fn region(name: &str, values: &[f64]) -> Region {
        let points = values
            .iter()
            .enumerate()
            .map(|(i, &v)| Point {
                start: at(i as i64),
                intensity: v,
            })
            .collect();
        Region {
            name: name.into(),
            forecast: Forecast::new(points).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn job(id: usize, submitted: i64, deadline: i64) -> Job {
        Job {
            id,
            submitted_at: at(submitted),
            duration: TimeDelta::hours(1),
            deadline: at(deadline),
            interruptible: false,
            run_now: at(submitted),
            run_now_alt: None,
            baseline_only: false,
        }
    }

    fn options(capacity: Option<u32>) -> SpatialOptions {
        SpatialOptions {
            margin: TimeDelta::zero(),
            capacity,
            slot: TimeDelta::hours(1),
        }
    }

    #[test]
    fn temporal_spatial_and_both_by_hand() {
        // Home A: 400 now, 100 at hour 2. B: 200 now, 50 at hour 3.
        let regions = [
            region("a", &[400.0, 300.0, 100.0, 300.0, 400.0, 400.0]),
            region("b", &[200.0, 200.0, 200.0, 50.0, 200.0, 200.0]),
        ];
        let jobs = [job(0, 0, 5)];
        let report = replay(&regions, &jobs, &options(None)).unwrap_or_else(|e| panic!("{e}"));
        let a = &report.homes[0];
        assert_eq!(a.run_now, 400.0);
        assert_eq!(a.saving("temporal"), Some(75.0));
        assert_eq!(a.saving("spatial"), Some(50.0));
        assert_eq!(a.saving("both"), Some(87.5));
        assert_eq!(a.saving("oracle"), Some(87.5));
        let both = &a.strategies[2];
        assert_eq!((both.per_region.clone(), both.misses), (vec![0, 1], 0));
        let b = &report.homes[1];
        assert_eq!(b.saving("temporal"), Some(75.0));
        assert_eq!(b.saving("spatial"), Some(0.0));
        assert!(
            markdown(&report)
                .contains("| a | 400.0 | 75.00 % | 50.00 % | 87.50 % | 87.50 % | a 0, b 1 |")
        );
    }

    #[test]
    fn the_section_is_replaced_in_place_or_appended() {
        let new = format!("{SECTION_BEGIN}\nnew\n{SECTION_END}\n");
        let page = format!("# R\n\n{SECTION_BEGIN}\nold\n{SECTION_END}\n\n## After\n");
        assert_eq!(
            replace_section(&page, &new),
            format!("# R\n\n{new}\n## After\n")
        );
        assert_eq!(replace_section("# R\n", &new), format!("# R\n\n{new}"));
        let regions = [region("a", &[400.0; 30]), region("b", &[100.0; 30])];
        let nightly = ScenarioSpec::Nightly {
            window: TimeDelta::hours(2),
            year: Some(1970),
        };
        let text = section(
            &regions,
            &[("nightly".into(), nightly.clone())],
            &[("nightly".into(), nightly)],
            TimeDelta::zero(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.contains("| nightly, cap 1/region (2 jobs) | a |"),
            "{text}"
        );
        assert!(text.starts_with(SECTION_BEGIN) && text.ends_with(&format!("{SECTION_END}\n")));
        assert!(
            text.contains(
                "| nightly (2 jobs) | a | 400.0 | 0.00 | 75.00 | 75.00 | 75.00 | a 0, b 2 |"
            ),
            "{text}"
        );
        assert!(text.contains("Deadline misses: 0."));
    }

    #[test]
    fn peak_concurrency_counts_overlaps_only() {
        assert_eq!(peak_concurrency(&[]), 0);
        // [0,1) and [1,2) touch, [0,1) twice overlaps.
        assert_eq!(peak_concurrency(&[job(0, 0, 5), job(1, 1, 5)]), 1);
        assert_eq!(
            peak_concurrency(&[job(0, 0, 5), job(1, 0, 5), job(2, 1, 5)]),
            2
        );
    }

    #[test]
    fn the_cap_applies_per_region_and_yields_to_deadlines() {
        let regions = [
            region("a", &[400.0, 300.0, 100.0, 300.0, 400.0, 400.0]),
            region("b", &[200.0, 200.0, 200.0, 50.0, 200.0, 200.0]),
        ];
        // Three jobs want b's hour 3; with one job per region at once they spread.
        let jobs = [job(0, 0, 5), job(1, 0, 5), job(2, 0, 4)];
        let capped = replay(&regions, &jobs, &options(Some(1))).unwrap_or_else(|e| panic!("{e}"));
        let both = &capped.homes[0].strategies[2];
        assert_eq!(both.misses, 0);
        assert_eq!(both.per_region.iter().sum::<usize>(), 3);
        let oracle = &capped.homes[0].strategies[3];
        assert!(oracle.intensity <= both.intensity);
        assert_eq!(oracle.intensity, 50.0, "uncapped: everyone in b's hour 3");
        assert!(both.intensity > 50.0, "capped: someone runs elsewhere");
        // Spatial only: all three start at hour 0, one per region fits, the third starts over a
        // cap (it may not wait).
        let spatial = &capped.homes[0].strategies[1];
        assert_eq!(spatial.overflow, 1);
    }
}
