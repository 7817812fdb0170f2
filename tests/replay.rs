//! `carbonshift replay`: the planner against the independent oracle on every scenario kind,
//! deadline safety under caps and noise, exact figures on hand-made traces, and the real binary's
//! JSON, table, errors and SVG chart.

use std::path::Path;
use std::process::{Command, Output};

use carbonshift::planner::{Capacity, Point, Power};
use carbonshift::replay::report::Report;
use carbonshift::replay::scenario::{self, DeadlineRule};
use carbonshift::replay::{ErrorModel, Options, PolicySet, Replay, ScenarioSpec};
use carbonshift::trace;
use chrono::TimeDelta;
use serde_json::Value;

fn carbonshift(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carbonshift"))
        .current_dir(dir)
        .arg("replay")
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run carbonshift: {e}"))
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)))
}

fn points(builtin: &str) -> Vec<Point> {
    let csv = trace::builtin(builtin).map_or("", |b| b.csv);
    trace::parse(csv, None).unwrap_or_else(|e| panic!("{builtin}: {e}"))
}

fn power() -> Power {
    Power::new(1_000.0, 1.0).unwrap_or_else(|e| panic!("{e}"))
}

fn options(policies: &str) -> Options {
    let mut o = Options::new(power());
    o.policies = PolicySet::parse(policies).unwrap_or_else(|e| panic!("{e}"));
    o
}

fn replay(builtin: &str, spec: &ScenarioSpec, options: Options) -> Report {
    let r = Replay::prepare(builtin, points(builtin), spec, options)
        .unwrap_or_else(|e| panic!("{builtin}: {e}"));
    r.run(&mut |_| {})
        .unwrap_or_else(|e| panic!("{builtin}: {e}"))
        .report
}

fn total_misses(report: &Report) -> usize {
    report.policies.iter().map(|(_, p)| p.deadline_misses).sum()
}

/// The acceptance check: with perfect forecasts the planner's total equals the brute-force
/// optimum's to 1e-9 relative, and re-planning changes nothing.
fn assert_agrees(label: &str, report: &Report) {
    let p = &report.policies;
    let (Some(cs), Some(replan), Some(oracle)) = (&p.carbonshift, &p.carbonshift_replan, &p.oracle)
    else {
        panic!("{label}: carbonshift, carbonshiftReplan and oracle must all run");
    };
    let rel = (cs.emissions_grams - oracle.emissions_grams).abs() / oracle.emissions_grams;
    assert!(
        rel <= 1e-9,
        "{label}: carbonshift {} g vs oracle {} g ({rel:e})",
        cs.emissions_grams,
        oracle.emissions_grams
    );
    let rel = (replan.emissions_grams - cs.emissions_grams).abs() / cs.emissions_grams;
    assert!(
        rel <= 1e-9,
        "{label}: re-planning on a perfect forecast moved a job ({rel:e})"
    );
    assert_eq!(
        report.carbonshift_vs_oracle.map(|g| g.abs() <= 1e-9),
        Some(true),
        "{label}"
    );
    assert!(
        cs.savings_percent > 0.0,
        "{label}: shifting saves something"
    );
    assert_eq!(total_misses(report), 0, "{label}");
}

#[test]
fn carbonshift_equals_the_oracle_on_nightly_jobs() {
    for builtin in ["de-2020", "gb-2020", "fr-2020"] {
        for hours in [2, 8] {
            for paper_compat in [false, true] {
                let spec = ScenarioSpec::Nightly {
                    window: TimeDelta::hours(hours),
                    year: None,
                };
                let mut o = options("carbonshift,carbonshiftReplan,oracle");
                o.set_paper_compat(paper_compat);
                let report = replay(builtin, &spec, o);
                assert_eq!(report.jobs, if paper_compat { 365 } else { 366 });
                assert_agrees(
                    &format!("{builtin} ±{hours}h compat={paper_compat}"),
                    &report,
                );
            }
        }
    }
}

#[test]
fn carbonshift_equals_the_oracle_on_ml_jobs() {
    // A shortened job set (300 jobs over the year) keeps the debug-build test quick; the full
    // 3,387-job agreement is in docs/results.md.
    for builtin in ["de-2020", "gb-2020"] {
        for rule in [DeadlineRule::NextWorkday, DeadlineRule::SemiWeekly] {
            for interruptible in [false, true] {
                let spec = ScenarioSpec::Ml {
                    rule,
                    interruptible,
                    year: None,
                    count: 300,
                    seed: 3,
                };
                let report = replay(
                    builtin,
                    &spec,
                    options("carbonshift,carbonshiftReplan,oracle"),
                );
                assert_eq!(report.jobs, 300);
                assert_agrees(
                    &format!("{builtin} {rule:?} interruptible={interruptible}"),
                    &report,
                );
            }
        }
    }
}

#[test]
fn carbonshift_equals_the_oracle_on_a_job_trace() {
    let jobs = scenario::parse_jobs(scenario::BUILTIN_JOBS).unwrap_or_else(|e| panic!("{e}"));
    for interruptible in [false, true] {
        let spec = ScenarioSpec::Jobs {
            jobs: jobs[..150].to_vec(),
            source: "gaia".into(),
            slack: TimeDelta::hours(6),
            start: None,
            interruptible,
        };
        let report = replay(
            "fr-2020",
            &spec,
            options("carbonshift,carbonshiftReplan,oracle"),
        );
        assert_eq!(report.jobs, 150);
        assert_agrees(&format!("gaia interruptible={interruptible}"), &report);
    }
}

#[test]
fn no_policy_misses_a_deadline_under_caps_noise_and_short_horizons() {
    let spec = |interruptible| ScenarioSpec::Ml {
        rule: DeadlineRule::NextWorkday,
        interruptible,
        year: None,
        count: 120,
        seed: 11,
    };
    for interruptible in [false, true] {
        for model in [ErrorModel::Constant, ErrorModel::LeadTime] {
            let mut o = Options::new(power());
            o.error = 0.05;
            o.error_model = model;
            o.seeds = 2;
            o.horizon = Some(TimeDelta::hours(24));
            o.capacity = Some(Capacity {
                limit: 2.0,
                slot: TimeDelta::minutes(30),
            });
            let report = replay("gb-2020", &spec(interruptible), o);
            let label = format!("interruptible={interruptible} {model:?}");
            assert_eq!(total_misses(&report), 0, "{label}");
            for (name, p) in report.policies.iter() {
                assert_eq!(p.deadline_misses, 0, "{label} {name}");
                if name.starts_with("carbonshift") {
                    let overflow = p.overflow_jobs.unwrap_or(f64::NAN);
                    let uncapped = p.uncapped.unwrap_or_else(|| panic!("{label} {name}"));
                    assert!(overflow >= 0.0, "{label} {name}");
                    assert!(
                        uncapped.peak_concurrency > 2,
                        "{label} {name}: the cap must bind for this test to mean something"
                    );
                    if overflow == 0.0 {
                        assert!(p.peak_concurrency <= 2, "{label} {name}");
                    }
                    assert_eq!(p.seeds.map(|s| s.count), Some(2));
                }
            }
        }
    }
}

#[test]
fn runs_are_seeded_and_do_not_depend_on_threads() {
    let spec = ScenarioSpec::Nightly {
        window: TimeDelta::hours(6),
        year: None,
    };
    let mut o = options("carbonshift,carbonshiftReplan");
    o.error = 0.05;
    o.error_model = ErrorModel::LeadTime;
    o.seeds = 4;
    o.threads = 1;
    let one = replay("de-2020", &spec, o.clone());
    o.threads = 3;
    let three = replay("de-2020", &spec, o.clone());
    assert_eq!(one, three);
    o.seed = 1;
    let other = replay("de-2020", &spec, o);
    assert_ne!(
        one.policies.carbonshift.map(|p| p.emissions_grams),
        other.policies.carbonshift.map(|p| p.emissions_grams)
    );
}

/// Hourly values from 2023-01-01 00:00 for 9 days: 200 g/kWh, except 100 at 02:00 on odd days
/// and 250 at 03:00 on even days.
fn hand_made_trace(dir: &Path) -> String {
    let mut csv = String::from("time,ci\n");
    for day in 1..=9 {
        for hour in 0..24 {
            let value = match (day % 2, hour) {
                (1, 2) => 100,
                (0, 3) => 250,
                _ => 200,
            };
            csv.push_str(&format!("2023-01-{day:02} {hour:02}:00,{value}\n"));
        }
    }
    let path = dir.join("hand.csv");
    std::fs::write(&path, csv).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64()
        .is_some_and(|x| (x - expected).abs() <= 1e-9 * expected.abs().max(1.0))
}

#[test]
fn threshold_and_oracle_in_exact_figures_on_a_hand_made_trace() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let trace = hand_made_trace(dir.path());
    let out = carbonshift(
        dir.path(),
        &[
            "--trace",
            &trace,
            "--year",
            "2023",
            "--window",
            "2h",
            "--threshold",
            "100",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let j = json(&out);
    // Jobs on 1..9 January (10 January 01:00 lies past the trace's end).
    assert_eq!(j["jobs"], 9);
    assert_eq!(j["skippedJobs"], 365 - 9);
    let p = &j["policies"];
    // runNow: 01:00 every day, 200 g/kWh × 0.5 kWh = 100 g.
    assert!(close(&p["runNow"]["emissionsGrams"], 900.0), "{p}");
    // threshold 100: odd days at 02:00 (100 → 50 g); even days never at or below 100, so the
    // latest start 03:00 (250 → 125 g): 5 × 50 + 4 × 125 = 750 g.
    assert!(close(&p["threshold"]["emissionsGrams"], 750.0), "{p}");
    assert!(
        close(&p["threshold"]["savingsPercent"], 150.0 / 900.0 * 100.0),
        "{p}"
    );
    // The optimum: odd days 50 g, even days 100 g: 650 g; the planner agrees.
    assert!(close(&p["oracle"]["emissionsGrams"], 650.0), "{p}");
    assert!(close(&p["carbonshift"]["emissionsGrams"], 650.0), "{p}");
    assert!(
        close(&p["carbonshiftReplan"]["emissionsGrams"], 650.0),
        "{p}"
    );
    assert!(
        close(&p["carbonshift"]["savingsPercent"], 250.0 / 900.0 * 100.0),
        "{p}"
    );
}

#[test]
fn json_output_has_the_documented_shape() {
    let out = carbonshift(
        repo(),
        &["--builtin", "fr-2020", "--window", "4h", "--output", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(j["scenario"]["name"], "nightly");
    assert_eq!(j["scenario"]["window"], "4h");
    assert_eq!(j["scenario"]["year"], 2020);
    assert_eq!(j["jobs"], 366);
    assert_eq!(j["trace"]["name"], "fr-2020");
    assert_eq!(j["forecast"]["errorModel"], "perfect");
    assert_eq!(j["power"]["watts"], 1000.0);
    let policies = j["policies"]
        .as_object()
        .unwrap_or_else(|| panic!("policies: {j}"));
    assert_eq!(policies.len(), 5);
    // In this order in the output (serde_json's map sorts keys, so look at the text).
    let text = stdout(&out);
    let at = |name: &str| text.find(&format!("\"{name}\": {{")).unwrap_or(usize::MAX);
    let order = [
        "runNow",
        "threshold",
        "carbonshift",
        "carbonshiftReplan",
        "oracle",
    ];
    for pair in order.windows(2) {
        assert!(at(pair[0]) < at(pair[1]), "{pair:?} in\n{text}");
    }
    for (name, p) in policies {
        for field in [
            "savingsPercent",
            "emissionsGrams",
            "deadlineMisses",
            "peakConcurrency",
            "rule",
        ] {
            assert!(!p[field].is_null(), "{name}.{field} in {p}");
        }
        assert_eq!(p["deadlineMisses"], 0, "{name}");
        assert_eq!(
            p["peakConcurrency"], 1,
            "{name}: nightly jobs never overlap"
        );
    }
    assert_eq!(policies["runNow"]["savingsPercent"], 0.0);
    assert!(
        j["carbonshiftVsOracle"]
            .as_f64()
            .is_some_and(|g| g.abs() < 1e-9)
    );
}

#[test]
fn table_output_ends_with_the_headline() {
    let out = carbonshift(
        repo(),
        &[
            "--builtin",
            "gb-2020",
            "--scenario",
            "jobs",
            "--slack",
            "2h",
            "--policies",
            "carbonshift,oracle",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Scenario:  jobs from data/jobs/gaia_pai_1k_jobs.csv (built in), slack 2h (1000 jobs)",
        "Trace:     gb-2020",
        "runNow",
        "carbonshift",
        "oracle",
        "carbonshift saves",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    assert!(!text.contains("threshold "), "not selected:\n{text}");
}

/// A minimal XML well-formedness check: every tag closed in order.
fn well_formed(xml: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').ok_or("unterminated tag")? + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(top) if top == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or_default();
            stack.push(name.to_string());
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed: {stack:?}"))
    }
}

#[test]
fn well_formed_checker_catches_mistakes() {
    assert_eq!(well_formed("<a><b/><c x=\"1\">t</c></a>"), Ok(()));
    assert!(well_formed("<a><b></a>").is_err());
    assert!(well_formed("<a>").is_err());
}

#[test]
fn plot_draws_the_curve_and_both_sets_of_windows() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let svg_path = dir.path().join("charts/replay.svg");
    let svg_arg = svg_path.display().to_string();
    let out = carbonshift(
        repo(),
        &[
            "--builtin",
            "de-2020",
            "--window",
            "8h",
            "--policies",
            "carbonshift",
            "--plot",
            &svg_arg,
            "--plot-from",
            "2020-03-02T00:00Z",
            "--plot-days",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("Chart: {svg_arg}")),
        "{}",
        stdout(&out)
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap_or_else(|e| panic!("{e}"));
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    well_formed(&svg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(svg.matches("class=\"curve\"").count(), 1);
    let path = svg
        .split("class=\"curve\" d=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default();
    // Three days of 15-minute values: one horizontal step per value.
    assert_eq!(path.matches('H').count(), 3 * 96, "{path}");
    // 3 days: the jobs of 2, 3 and 4 March run inside the chart (and 1 March's shifted run may
    // reach into it); each lane draws them.
    let runnow = svg.matches("class=\"runnow\"").count();
    let shifted = svg.matches("class=\"carbonshift\"").count();
    assert_eq!(runnow, 3, "{svg}");
    assert!((3..=4).contains(&shifted), "{shifted}");
    assert!(svg.contains("carbonshift saves"));
}

#[test]
fn bad_input_is_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let jobs = dir.path().join("jobs.csv");
    std::fs::write(&jobs, "arrival_time,length\n0,60\n120,soon\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let jobs_arg = jobs.display().to_string();
    let gap = dir.path().join("gap.csv");
    std::fs::write(
        &gap,
        "time,ci\n2020-01-01 00:00,100\n2020-01-01 00:30,100\n2020-01-01 01:00,100\n2020-01-01 05:00,100\n2020-01-01 05:30,100\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let gap_arg = gap.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--jobs", &jobs_arg],
            "jobs.csv: line 3: length \"soon\" is not a number of seconds",
        ),
        (
            vec!["--jobs", "/nonexistent/jobs.csv"],
            "cannot read /nonexistent/jobs.csv",
        ),
        (
            vec!["--builtin", "caiso-north-2023-06"],
            "covers no full calendar year; pass --year",
        ),
        (
            vec!["--builtin", "mars"],
            "no built-in trace named \"mars\"",
        ),
        (
            vec!["--scenario", "ml", "--window", "2h"],
            "--window applies to --scenario nightly, not ml",
        ),
        (
            vec!["--interruptible"],
            "--interruptible applies to --scenario ml or jobs, not nightly",
        ),
        (
            vec!["--scenario", "jobs", "--paper-compat"],
            "--paper-compat reproduces the paper's nightly and ml scenarios only",
        ),
        (
            vec!["--forecast-error", "2"],
            "--forecast-error must be between 0 and 1",
        ),
        (
            vec!["--policies", "carbonshift,magic"],
            "unknown policy \"magic\"",
        ),
        (
            vec!["--window", "100000000d"],
            "--window must be between 0 and 366d, not 100000000d",
        ),
        (vec!["--plot-days", "0"], "--plot-days"),
        (
            vec!["--capacity", "0"],
            "the capacity limit must be a positive",
        ),
        (
            vec!["--trace", &gap_arg, "--scenario", "jobs", "--slack", "6h"],
            "the trace has no data from 2020-01-01 01:30:00 UTC to 2020-01-01 05:00:00 UTC",
        ),
    ];
    for (args, message) in cases {
        let out = carbonshift(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "{args:?}: {message:?} in {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_short_year_keeps_only_the_days_inside_the_trace() {
    // The CAISO trace covers 2023-06-08 00:00 .. 07-09 00:00: with --year 2023, the nightly jobs
    // of 8 June (its window clipped at the trace start) to 8 July.
    let out = carbonshift(
        repo(),
        &[
            "--builtin",
            "caiso-north-2023-06",
            "--year",
            "2023",
            "--policies",
            "carbonshift,oracle",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(j["jobs"], 31);
    assert_eq!(j["skippedJobs"], 365 - 31);
    assert!(
        j["carbonshiftVsOracle"]
            .as_f64()
            .is_some_and(|g| g.abs() < 1e-9)
    );
}

#[test]
fn regions_replay_spatial_and_temporal_shifting_with_the_fleet_planner() {
    let o = carbonshift(
        repo(),
        &[
            "--regions",
            "de-2020,fr-2020,gb-2020",
            "--scenario",
            "nightly",
            "--window",
            "8h",
            "--output",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["jobs"], 366);
    assert_eq!(
        v["regions"],
        serde_json::json!(["de-2020", "fr-2020", "gb-2020"])
    );
    let homes = v["homes"].as_array().cloned().unwrap_or_default();
    assert_eq!(homes.len(), 3);
    for home in &homes {
        let strategy = |name: &str| {
            home["strategies"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == name).cloned())
                .unwrap_or_else(|| panic!("no {name} in {home}"))
        };
        for name in ["temporal", "spatial", "both", "oracle"] {
            assert_eq!(strategy(name)["misses"], 0, "{name}");
        }
        let intensity = |name: &str| strategy(name)["intensity"].as_f64().unwrap_or(f64::NAN);
        // Perfect forecasts, no cap: placement over region × time is the optimum, and no worse
        // than either shift alone.
        assert!((intensity("both") - intensity("oracle")).abs() < 1e-9);
        assert!(intensity("both") <= intensity("temporal") + 1e-9);
        assert!(intensity("both") <= intensity("spatial") + 1e-9);
    }
    // The temporal-only figure of DE is the single-region replay's (docs/results.md: 13.29).
    let de = &homes[0];
    let run_now = de["runNow"].as_f64().unwrap_or(f64::NAN);
    let temporal = de["strategies"][0]["intensity"]
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!(
        ((1.0 - temporal / run_now) * 100.0 - 13.29).abs() < 0.005,
        "{run_now} {temporal}"
    );

    let capped = carbonshift(
        repo(),
        &[
            "--regions",
            "de-2020,fr-2020",
            "--scenario",
            "ml",
            "--capacity",
            "3",
        ],
    );
    assert!(capped.status.success(), "{}", stderr(&capped));
    assert!(
        stdout(&capped).contains("at most 3 jobs at once per region"),
        "{}",
        stdout(&capped)
    );

    let unknown = carbonshift(repo(), &["--regions", "de-2020,mars-2020"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("mars-2020"),
        "{}",
        stderr(&unknown)
    );
    let jobs = carbonshift(repo(), &["--regions", "de-2020", "--scenario", "jobs"]);
    assert_eq!(jobs.status.code(), Some(2), "{}", stderr(&jobs));
}

#[test]
fn the_results_page_has_the_spatial_section() {
    let page = std::fs::read_to_string(repo().join("docs/results.md"))
        .unwrap_or_else(|e| panic!("docs/results.md: {e}"));
    let begin = page.find(carbonshift::replay::spatial::SECTION_BEGIN);
    let end = page.find(carbonshift::replay::spatial::SECTION_END);
    assert!(matches!((begin, end), (Some(a), Some(b)) if a < b));
    let section = &page[begin.unwrap_or(0)..end.unwrap_or(0)];
    assert!(section.contains("Deadline misses: 0."));
    // 8 scenarios uncapped and 4 capped, 3 home regions each.
    assert_eq!(section.lines().filter(|l| l.starts_with("| I")).count(), 36);
}
