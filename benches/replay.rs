//! Replay benchmarks (figures in docs/results.md and the replay report):
//!
//! - the full Scenario II — 3,387 ML jobs over one year of the DE trace (15-minute steps), perfect
//!   forecasts, all five policies (runNow, threshold, carbonshift, carbonshiftReplan every 30 min,
//!   oracle), one thread — for next-workday block jobs and semi-weekly interruptible jobs (the
//!   most re-planning); the target is under 10 s per run;
//! - the same with the planner alone (carbonshift, plan once), the cost of the policy itself;
//! - Scenario I (366 nightly jobs, ±8 h), all five policies.
//!
//! Each iteration prepares the replay (forecast, job set) and runs it, as `carbonshift replay`
//! does.

use std::hint::black_box;
use std::time::Duration;

use carbonshift::planner::{Point, Power};
use carbonshift::replay::scenario::DeadlineRule;
use carbonshift::replay::{Options, PolicySet, Replay, ScenarioSpec};
use carbonshift::trace;
use chrono::TimeDelta;
use criterion::{Criterion, criterion_group, criterion_main};

fn points(name: &str) -> Vec<Point> {
    let csv = trace::builtin(name).map_or("", |b| b.csv);
    trace::parse(csv, None).unwrap_or_else(|e| panic!("bench trace: {e}"))
}

fn run(points: &[Point], spec: &ScenarioSpec, policies: PolicySet) -> f64 {
    let power = Power::new(1_000.0, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let mut options = Options::new(power);
    options.policies = policies;
    options.threads = 1;
    let replay = Replay::prepare("de-2020", points.to_vec(), spec, options)
        .unwrap_or_else(|e| panic!("bench replay: {e}"));
    let outcome = replay
        .run(&mut |_| {})
        .unwrap_or_else(|e| panic!("bench replay: {e}"));
    outcome.report.policies.run_now.emissions_grams
}

fn benches(c: &mut Criterion) {
    let de = points("de-2020");
    let only_planner = PolicySet {
        threshold: false,
        carbonshift: true,
        replan: false,
        oracle: false,
    };
    let mut g = c.benchmark_group("replay_ml_full_year");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(20));
    for (label, rule, interruptible) in [
        ("next_workday_block", DeadlineRule::NextWorkday, false),
        ("semi_weekly_interruptible", DeadlineRule::SemiWeekly, true),
    ] {
        let spec = ScenarioSpec::paper_ml(rule, interruptible, 0);
        g.bench_function(format!("{label}/all_policies"), |b| {
            b.iter(|| black_box(run(&de, &spec, PolicySet::ALL)))
        });
        g.bench_function(format!("{label}/carbonshift_only"), |b| {
            b.iter(|| black_box(run(&de, &spec, only_planner)))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("replay_nightly");
    g.sample_size(10);
    let spec = ScenarioSpec::Nightly {
        window: TimeDelta::hours(8),
        year: None,
    };
    g.bench_function("de_8h/all_policies", |b| {
        b.iter(|| black_box(run(&de, &spec, PolicySet::ALL)))
    });
    g.finish();
}

criterion_group!(replay, benches);
criterion_main!(replay);
