//! Planner benchmarks on fixed cases (figures in docs/benchmarks.md):
//!
//! - (a) one job, 96-slot forecast (the UK 48 h forecast, 30 min), duration 4 slots, range = the
//!   whole forecast;
//! - (b) one job, 2,016-slot forecast (one week of CAISO North at 5 min), durations 2, 6 and 12 h,
//!   range = the whole forecast;
//! - (c) 10,000 such jobs (durations 2–12 h, in 5 min steps and, separately, to the second) over
//!   the one 2,016-slot forecast;
//! - (d) capacity-aware planning of the 10,000 jobs (cap 500 jobs per 5 min slot);
//! - (e) replay-like: one 3 h job with a 48 h range on a one-year forecast (35,000+ points),
//!   showing that a call does not pay for the whole forecast;
//! - (f) interruptible 6 h job on the 2,016-slot forecast, without and with a minimum chunk and
//!   resume overhead;
//! - (g) fleet throughput: the 10,000 jobs of (d) held in a `planner::fleet::Fleet` (cap 500 jobs
//!   per 5 min slot), then new workloads arriving (durations 2–12 h, deadlines spread over the
//!   week): one admission by insertion, a second's worth (100) of them, one exact admission
//!   (re-planning the held workloads due after it), and the full re-plan of all 10,000.

use std::hint::black_box;
use std::time::Duration;

use carbonshift::planner::fleet::{Caps, Demand, Fleet};
use carbonshift::planner::{
    BatchJob, Capacity, Constraints, Forecast, PlanReason, plan, plan_batch,
};
use carbonshift::trace;
use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const UK: &str = include_str!("../data/traces/uk_carbonintensity_forecast_48h_2023-05-04_cats.csv");

fn forecast(csv: &str, column: Option<&str>, take: usize) -> Forecast {
    let mut points = trace::parse(csv, column).unwrap_or_else(|e| panic!("bench trace: {e}"));
    points.truncate(take);
    Forecast::new(points).unwrap_or_else(|e| panic!("bench forecast: {e}"))
}

fn builtin(name: &str) -> &'static str {
    trace::builtin(name).map_or("", |b| b.csv)
}

fn start_of(f: &Forecast) -> DateTime<Utc> {
    f.start().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// A job that may run anywhere in the forecast: submitted at its start, latest start at its end
/// minus the duration.
fn whole_range(f: &Forecast, duration: TimeDelta) -> Constraints {
    let start = start_of(f);
    let end = f.horizon_end().unwrap_or(start);
    Constraints::new(start, duration).with_deadline(end)
}

/// 10,000 durations between 2 and 12 h: in whole 5 min steps, or to the second.
fn durations(aligned: bool) -> Vec<TimeDelta> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    (0..10_000)
        .map(|_| {
            if aligned {
                TimeDelta::minutes(5 * rng.random_range(24..=144))
            } else {
                TimeDelta::seconds(rng.random_range(7_200..=43_200))
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let f96 = forecast(UK, Some("intensity"), usize::MAX);
    let week = forecast(builtin("caiso-north-2023-06"), None, 2_016);
    let year = forecast(builtin("de-2020"), None, usize::MAX);
    assert_eq!(f96.len(), 96);
    assert_eq!(week.len(), 2_016);

    let mut group = c.benchmark_group("a_one_job_96_slots");
    group.throughput(Throughput::Elements(1));
    let job = whole_range(&f96, TimeDelta::hours(2));
    let now = start_of(&f96);
    group.bench_function("plan", |b| {
        b.iter(|| plan(black_box(&f96), black_box(&job), now))
    });
    group.finish();

    let mut group = c.benchmark_group("b_one_job_2016_slots");
    group.throughput(Throughput::Elements(1));
    let now = start_of(&week);
    for hours in [2, 6, 12] {
        let job = whole_range(&week, TimeDelta::hours(hours));
        group.bench_with_input(
            BenchmarkId::new("plan", format!("{hours}h")),
            &job,
            |b, job| b.iter(|| plan(black_box(&week), black_box(job), now)),
        );
    }
    group.finish();

    let mut group = c.benchmark_group("c_10000_jobs_2016_slots");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(20);
    for (name, aligned) in [("5min_steps", true), ("any_second", false)] {
        let jobs: Vec<Constraints> = durations(aligned)
            .into_iter()
            .map(|d| whole_range(&week, d))
            .collect();
        group.bench_with_input(BenchmarkId::new("plan", name), &jobs, |b, jobs| {
            b.iter(|| {
                jobs.iter()
                    .filter_map(|job| plan(black_box(&week), job, now).ok())
                    .count()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("d_capacity_10000_jobs");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let jobs: Vec<BatchJob> = durations(true)
        .into_iter()
        .map(|d| BatchJob {
            constraints: whole_range(&week, d),
            load: 1.0,
        })
        .collect();
    let capacity = Capacity {
        limit: 500.0,
        slot: TimeDelta::minutes(5),
    };
    if let Ok(batch) = plan_batch(&week, &jobs, capacity, now) {
        let shifted = batch
            .plans
            .iter()
            .filter(|p| {
                p.as_ref()
                    .is_ok_and(|p| p.reason == PlanReason::CapacityShifted)
            })
            .count();
        eprintln!(
            "d: {} jobs, {} planned, {} shifted by the cap, {} overflow, peak load {}",
            jobs.len(),
            batch.plans.iter().filter(|p| p.is_ok()).count(),
            shifted,
            batch.overflow.len(),
            batch.peak_load
        );
    }
    group.bench_function("plan_batch", |b| {
        b.iter(|| plan_batch(black_box(&week), black_box(&jobs), capacity, now))
    });
    group.finish();

    let mut group = c.benchmark_group("e_replay_one_year_forecast");
    group.throughput(Throughput::Elements(1));
    let now = start_of(&year) + TimeDelta::days(180);
    let job = Constraints::new(now, TimeDelta::hours(3)).with_max_delay(TimeDelta::hours(45));
    group.bench_function("plan_48h_range", |b| {
        b.iter(|| plan(black_box(&year), black_box(&job), now))
    });
    group.bench_function("clip_48h_then_plan", |b| {
        b.iter(|| {
            let view = year.clip(now, now + TimeDelta::hours(48));
            plan(black_box(&view), black_box(&job), now)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("f_interruptible_2016_slots");
    group.throughput(Throughput::Elements(1));
    let now = start_of(&week);
    let job = whole_range(&week, TimeDelta::hours(6)).interruptible();
    group.bench_function("plan", |b| {
        b.iter(|| plan(black_box(&week), black_box(&job), now))
    });
    let chunked = job
        .clone()
        .with_min_chunk(TimeDelta::minutes(30))
        .with_resume_overhead(TimeDelta::minutes(5));
    group.bench_function("plan_min_chunk_overhead", |b| {
        b.iter(|| plan(black_box(&week), black_box(&chunked), now))
    });
    group.finish();
}

/// 100 arrivals: durations 2–12 h in 5 min steps, submitted at the start of the week, deadlines
/// uniformly between duration + 2 h and the end of the week (so that most are due before some of
/// the held jobs and an exact admission has work to do).
fn arrivals(f: &Forecast) -> Vec<Constraints> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let start = start_of(f);
    let end = f.horizon_end().unwrap_or(start);
    let span = (end - start).num_minutes();
    (0..100)
        .map(|_| {
            let d = TimeDelta::minutes(5 * rng.random_range(24..=144));
            let earliest = d.num_minutes() + 120;
            let deadline = start + TimeDelta::minutes(rng.random_range(earliest..=span));
            Constraints::new(start, d).with_deadline(deadline)
        })
        .collect()
}

fn bench_fleet(c: &mut Criterion) {
    let week = forecast(builtin("caiso-north-2023-06"), None, 2_016);
    let now = start_of(&week);
    let caps = Caps {
        jobs: Some(500),
        gpus: None,
        slot: TimeDelta::minutes(5),
    };
    let mut fleet: Fleet<u32> = match Fleet::new(week.clone(), caps) {
        Ok(f) => f,
        Err(e) => panic!("bench fleet: {e}"),
    };
    for (i, d) in (0u32..).zip(durations(true)) {
        fleet.admit(i, whole_range(&week, d), Demand::default(), now);
    }
    fleet.replan(now);
    let new = arrivals(&week);
    let one = Demand::default();
    let mut group = c.benchmark_group("g_fleet_10000_held");
    group.throughput(Throughput::Elements(1));
    let mut k = 0usize;
    group.bench_function("admit_one", |b| {
        b.iter(|| {
            k = (k + 1) % new.len();
            let key = 1_000_000 + k as u32;
            let s = fleet.admit(key, new[k].clone(), one, now).overflow;
            fleet.remove(&key);
            black_box(s)
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("admit_100_then_remove", |b| {
        b.iter(|| {
            for (i, c) in (1_000_000u32..).zip(&new) {
                black_box(fleet.admit(i, c.clone(), one, now).overflow);
            }
            for i in 1_000_000u32..1_000_100 {
                fleet.remove(&i);
            }
        })
    });
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(1));
    group.bench_function("admit_exact_one", |b| {
        b.iter(|| {
            k = (k + 1) % new.len();
            let key = 1_000_000 + k as u32;
            let s = fleet.admit_exact(key, new[k].clone(), one, now).overflow;
            fleet.remove(&key);
            black_box(s)
        })
    });
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("replan_10000", |b| b.iter(|| fleet.replan(now)));
    group.finish();
    let overflow = fleet.schedule().filter(|(_, s)| s.overflow).count();
    eprintln!(
        "g: {} held, {} overflow after the runs",
        fleet.held_len(),
        overflow
    );
}

criterion_group!(benches, bench, bench_fleet);
criterion_main!(benches);
