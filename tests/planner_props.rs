//! Property tests of the planner against a brute-force reference.
//!
//! The reference (module `reference`) is a deliberately simple, separate implementation of the
//! semantics: it works in whole minutes, finds each point's known span by scanning, integrates a
//! window by summing the overlap with every span (O(n) per window) and tries every minute of the
//! allowed range as a start. Forecast times, durations, `now`, delays and margins are whole minutes,
//! so every candidate the planner considers (segment boundaries, boundaries minus the duration,
//! range ends) is a whole minute and minute-by-minute enumeration is exhaustive.

use carbonshift::planner::{
    BatchJob, Capacity, Constraints, Forecast, NoPlan, Plan, Point, plan, plan_batch,
};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

/// 2023-01-01T00:00Z.
fn base() -> DateTime<Utc> {
    DateTime::from_timestamp(1_672_531_200, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn at(minute: i64) -> DateTime<Utc> {
    base() + TimeDelta::minutes(minute)
}

fn minute(t: DateTime<Utc>) -> i64 {
    let d = t - base();
    assert_eq!(
        d.num_milliseconds() % 60_000,
        0,
        "{t} is not a whole minute"
    );
    d.num_minutes()
}

/// Equal to 1e-9 relative (absolute below 1 gCO2/kWh).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

mod reference {
    /// A forecast as `(minute, intensity)` points.
    pub struct Reference {
        points: Vec<(i64, f64)>,
        step: i64,
    }

    /// The best allowed choice.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Best {
        /// No allowed window contains known time.
        NoCoverage,
        /// Minimum mean intensity, its earliest start (contiguous only) and whether it is fully
        /// known.
        Found {
            score: f64,
            earliest: i64,
            full: bool,
        },
    }

    impl Reference {
        pub fn new(points: &[(i64, f64)]) -> Reference {
            let mut steps: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
            steps.sort();
            let step = if steps.is_empty() {
                60
            } else {
                steps[(steps.len() - 1) / 2]
            };
            Reference {
                points: points.to_vec(),
                step,
            }
        }

        /// Where point `i`'s value holds.
        fn span(&self, i: usize) -> (i64, i64) {
            let start = self.points[i].0;
            let end = match self.points.get(i + 1) {
                Some(&(next, _)) if next - start <= 2 * self.step => next,
                _ => start + self.step,
            };
            (start, end)
        }

        /// The value during minute `m`.
        pub fn value_at(&self, m: i64) -> Option<f64> {
            (0..self.points.len())
                .find(|&i| {
                    let (a, b) = self.span(i);
                    a <= m && m < b
                })
                .map(|i| self.points[i].1)
        }

        /// Sum of value × minutes over the known part of `[s, e)`, and the known minutes.
        pub fn integrate(&self, s: i64, e: i64) -> (f64, i64) {
            let mut sum = 0.0;
            let mut known = 0;
            for i in 0..self.points.len() {
                let (a, b) = self.span(i);
                let (lo, hi) = (a.max(s), b.min(e));
                if hi > lo {
                    sum += self.points[i].1 * (hi - lo) as f64;
                    known += hi - lo;
                }
            }
            (sum, known)
        }

        /// Mean of the whole known forecast.
        pub fn mean(&self) -> Option<f64> {
            let (sum, known) = self.integrate(i64::MIN / 4, i64::MAX / 4);
            (known > 0).then(|| sum / known as f64)
        }

        /// Mean of `[s, s+d)` with unknown minutes at the mean, and the known minutes.
        pub fn window(&self, s: i64, d: i64) -> (f64, i64) {
            let (sum, known) = self.integrate(s, s + d);
            let mean = self.mean().unwrap_or(0.0);
            ((sum + (d - known) as f64 * mean) / d as f64, known)
        }

        /// The best start in `[lo, hi]` for a job of `d` minutes.
        pub fn contiguous(&self, lo: i64, hi: i64, d: i64) -> Best {
            let windows: Vec<(i64, f64, i64)> = (lo..=hi)
                .map(|s| {
                    let (score, known) = self.window(s, d);
                    (s, score, known)
                })
                .collect();
            if windows.iter().all(|w| w.2 == 0) {
                return Best::NoCoverage;
            }
            let full = windows.iter().any(|w| w.2 == d);
            let pool: Vec<&(i64, f64, i64)> =
                windows.iter().filter(|w| !full || w.2 == d).collect();
            let min = pool.iter().map(|w| w.1).fold(f64::INFINITY, f64::min);
            let earliest = pool
                .iter()
                .find(|w| close_enough(w.1, min))
                .map_or(i64::MAX, |w| w.0);
            Best::Found {
                score: min,
                earliest,
                full,
            }
        }

        /// The cheapest `d` minutes in `[lo, end)`.
        pub fn interruptible(&self, lo: i64, end: i64, d: i64) -> Best {
            let values: Vec<Option<f64>> = (lo..end).map(|m| self.value_at(m)).collect();
            let mut known: Vec<f64> = values.iter().flatten().copied().collect();
            if known.is_empty() {
                return Best::NoCoverage;
            }
            let full = known.len() as i64 >= d;
            let mut pool = if full {
                std::mem::take(&mut known)
            } else {
                let mean = self.mean().unwrap_or(0.0);
                values.iter().map(|v| v.unwrap_or(mean)).collect()
            };
            pool.sort_by(f64::total_cmp);
            let sum: f64 = pool.iter().take(d as usize).sum();
            Best::Found {
                score: sum / d as f64,
                earliest: 0,
                full,
            }
        }
    }

    fn close_enough(a: f64, b: f64) -> bool {
        super::close(a, b)
    }
}

use reference::{Best, Reference};

/// A random job against a random forecast.
#[derive(Debug, Clone)]
struct Scenario {
    points: Vec<(i64, f64)>,
    now: i64,
    submitted: i64,
    duration: i64,
    max_delay: Option<i64>,
    deadline: Option<i64>,
    margin: i64,
}

impl Scenario {
    fn forecast(&self) -> Forecast {
        let points = self
            .points
            .iter()
            .map(|&(m, intensity)| Point {
                start: at(m),
                intensity,
            })
            .collect();
        Forecast::new(points).unwrap_or_else(|e| panic!("generated forecast: {e}"))
    }

    fn constraints(&self) -> Constraints {
        let mut c = Constraints::new(at(self.submitted), TimeDelta::minutes(self.duration))
            .with_margin(TimeDelta::minutes(self.margin));
        c.max_delay = self.max_delay.map(TimeDelta::minutes);
        c.deadline = self.deadline.map(at);
        c
    }

    fn latest_start(&self) -> i64 {
        let by_delay = self.max_delay.map(|m| self.submitted + m);
        let by_deadline = self.deadline.map(|t| t - self.duration);
        match (by_delay, by_deadline) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => i64::MIN,
        }
    }

    fn release_by(&self) -> i64 {
        self.latest_start() - self.margin
    }
}

fn intensity() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 0.0f64..500.0,
        1 => prop::sample::select(vec![10.0, 50.0, 100.0]),
    ]
}

/// Irregular forecasts: mostly 30/60 min steps, some 5/15 min, some gaps (a 120 min step is a gap
/// when the median is 30, a 300 min step almost always).
fn points() -> impl Strategy<Value = Vec<(i64, f64)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![5i64, 15, 30, 30, 30, 60, 60, 120, 300]),
            intensity(),
        ),
        0..24,
    )
    .prop_map(|steps| {
        let mut at = 0;
        steps
            .into_iter()
            .map(|(step, value)| {
                let point = (at, value);
                at += step;
                point
            })
            .collect()
    })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        points(),
        -60i64..900,
        0i64..120,
        1i64..360,
        prop_oneof![
            2 => (0i64..900).prop_map(|d| (Some(d), None)),
            1 => (0i64..1_200).prop_map(|d| (None, Some(d))),
            1 => ((0i64..900), (0i64..1_200)).prop_map(|(m, d)| (Some(m), Some(d))),
        ],
        prop::sample::select(vec![0i64, 0, 0, 5, 30, 60]),
    )
        .prop_map(
            |(points, now, age, duration, (max_delay, deadline_after), margin)| {
                let submitted = now - age;
                Scenario {
                    points,
                    now,
                    submitted,
                    duration,
                    max_delay,
                    deadline: deadline_after.map(|d| submitted + d),
                    margin,
                }
            },
        )
}

/// Windows in minutes, checked to be sorted, not touching and inside `[lo, end)`.
fn checked_windows(p: &Plan, lo: i64, end: i64) -> Result<Vec<(i64, i64)>, TestCaseError> {
    let w: Vec<(i64, i64)> = p
        .windows
        .iter()
        .map(|w| (minute(w.start), minute(w.end)))
        .collect();
    prop_assert!(!w.is_empty());
    for &(a, b) in &w {
        prop_assert!(lo <= a && a < b && b <= end, "{w:?} outside [{lo}, {end})");
    }
    for pair in w.windows(2) {
        prop_assert!(pair[0].1 < pair[1].0, "{w:?} overlap or touch");
    }
    prop_assert_eq!(minute(p.start), w[0].0);
    prop_assert_eq!(minute(p.end), w[w.len() - 1].1);
    Ok(w)
}

/// The reference's mean over windows, unknown minutes at the mean.
fn reference_mean(r: &Reference, windows: &[(i64, i64)]) -> (f64, i64, i64) {
    let mean = r.mean().unwrap_or(0.0);
    let mut sum = 0.0;
    let mut known = 0;
    let mut total = 0;
    for &(a, b) in windows {
        let (s, k) = r.integrate(a, b);
        sum += s + (b - a - k) as f64 * mean;
        known += k;
        total += b - a;
    }
    (sum / total as f64, known, total)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn contiguous_plans_match_the_brute_force_minimum(sc in scenario()) {
        let r = Reference::new(&sc.points);
        let (lo, hi, d) = (sc.now, sc.release_by(), sc.duration);
        match plan(&sc.forecast(), &sc.constraints(), at(sc.now)) {
            Err(NoPlan::DeadlinePassed { .. }) => prop_assert!(hi < lo),
            Err(NoPlan::NoCoverage { .. }) => {
                prop_assert!(hi >= lo);
                prop_assert_eq!(r.contiguous(lo, hi, d), Best::NoCoverage);
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
            Ok(p) => {
                prop_assert!(hi >= lo);
                let w = checked_windows(&p, lo, hi + d)?;
                prop_assert_eq!(w.len(), 1);
                let s = w[0].0;
                prop_assert!(s <= hi, "start {s} after release {hi}");
                prop_assert_eq!(w[0].1, s + d);
                prop_assert!(w[0].1 <= sc.latest_start() + d);
                prop_assert_eq!(minute(p.latest_start), sc.latest_start());
                let Best::Found { score, earliest, full } = r.contiguous(lo, hi, d) else {
                    return Err(TestCaseError::fail("reference found no coverage"));
                };
                prop_assert!(close(p.expected_intensity, score),
                    "planner {} vs brute force {score}", p.expected_intensity);
                prop_assert_eq!(s, earliest, "ties go to the earliest start");
                prop_assert_eq!(p.coverage == 1.0, full);
                let (own, known) = r.window(s, d);
                prop_assert!(close(own, p.expected_intensity));
                prop_assert!((p.coverage - known as f64 / d as f64).abs() < 1e-12);
                if let Some(now) = p.run_now_intensity {
                    prop_assert!(close(now, r.window(lo, d).0));
                }
            }
        }
    }

    #[test]
    fn interruptible_plans_match_the_brute_force_minimum(sc in scenario()) {
        let r = Reference::new(&sc.points);
        let (lo, hi, d) = (sc.now, sc.release_by(), sc.duration);
        let end = hi + d;
        match plan(&sc.forecast(), &sc.constraints().interruptible(), at(sc.now)) {
            Err(NoPlan::DeadlinePassed { .. }) => prop_assert!(hi < lo),
            Err(NoPlan::NoCoverage { .. }) => {
                prop_assert!(hi >= lo);
                prop_assert_eq!(r.interruptible(lo, end, d), Best::NoCoverage);
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
            Ok(p) => {
                let w = checked_windows(&p, lo, end)?;
                prop_assert!(w[0].0 <= hi, "first window after the release time");
                let (mean, known, total) = reference_mean(&r, &w);
                prop_assert_eq!(total, d);
                prop_assert!(close(mean, p.expected_intensity));
                let Best::Found { score, full, .. } = r.interruptible(lo, end, d) else {
                    return Err(TestCaseError::fail("reference found no coverage"));
                };
                prop_assert!(close(p.expected_intensity, score),
                    "planner {} vs brute force {score}", p.expected_intensity);
                prop_assert_eq!(p.coverage == 1.0, full);
                prop_assert_eq!(known == total, full);
            }
        }
    }

    #[test]
    fn chunked_plans_are_feasible_and_no_worse_than_one_window(
        sc in scenario(),
        chunk in 1i64..180,
        overhead in prop::sample::select(vec![0i64, 0, 5, 15, 30]),
    ) {
        let (lo, hi, d) = (sc.now, sc.release_by(), sc.duration);
        let forecast = sc.forecast();
        let c = sc
            .constraints()
            .interruptible()
            .with_min_chunk(TimeDelta::minutes(chunk))
            .with_resume_overhead(TimeDelta::minutes(overhead));
        let unconstrained = plan(&forecast, &sc.constraints().interruptible(), at(sc.now));
        match plan(&forecast, &c, at(sc.now)) {
            Err(e) => prop_assert_eq!(Err(e), unconstrained.map(|_| ())),
            Ok(p) => {
                prop_assert!(unconstrained.is_ok());
                let w = checked_windows(&p, lo, hi + d)?;
                prop_assert!(w[0].0 <= hi);
                for &(a, b) in &w {
                    prop_assert!(b - a >= chunk.min(d), "{w:?} has a window under {chunk}");
                }
                let total: i64 = w.iter().map(|x| x.1 - x.0).sum();
                prop_assert!(total >= d + (w.len() as i64 - 1) * overhead, "{w:?}");
                let single = plan(&forecast, &sc.constraints(), at(sc.now));
                if let Ok(single) = single
                    && single.coverage == 1.0
                    && p.coverage == 1.0
                {
                    let chunked = p.expected_intensity * total as f64;
                    let one = single.expected_intensity * d as f64;
                    prop_assert!(chunked <= one + 1e-9 * one.max(1.0),
                        "heuristic {chunked} worse than one window {one}");
                }
            }
        }
    }

    #[test]
    fn capacity_plans_never_miss_a_deadline(
        pts in points(),
        jobs in prop::collection::vec(
            (0i64..240, 1i64..240, 0i64..900, any::<bool>(), prop::sample::select(vec![1.0, 1.0, 2.0])),
            1..12,
        ),
        limit in prop::sample::select(vec![1.0, 2.0, 3.0]),
        slot in prop::sample::select(vec![15i64, 30, 60]),
    ) {
        let forecast = Scenario {
            points: pts, now: 0, submitted: 0, duration: 1, max_delay: None, deadline: None, margin: 0,
        }
        .forecast();
        let now = 60;
        let batch: Vec<BatchJob> = jobs
            .iter()
            .map(|&(age, duration, delay, interruptible, load)| {
                let mut c = Constraints::new(at(now - age), TimeDelta::minutes(duration))
                    .with_max_delay(TimeDelta::minutes(delay));
                c.interruptible = interruptible;
                BatchJob { constraints: c, load }
            })
            .collect();
        let capacity = Capacity { limit, slot: TimeDelta::minutes(slot) };
        let result = plan_batch(&forecast, &batch, capacity, at(now))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(result.plans.len(), batch.len());
        let mut loads: std::collections::BTreeMap<i64, f64> = Default::default();
        for (i, (job, planned)) in batch.iter().zip(&result.plans).enumerate() {
            let alone = plan(&forecast, &job.constraints, at(now));
            match planned {
                Err(e) => prop_assert_eq!(Err(e.clone()), alone.map(|_| ())),
                Ok(p) => {
                    prop_assert!(alone.is_ok());
                    let release = minute(job.constraints.release_by().map_err(|e| TestCaseError::fail(e.to_string()))?);
                    let d = job.constraints.duration.num_minutes();
                    let w = checked_windows(p, now, release + d)?;
                    prop_assert!(w[0].0 <= release);
                    let total: i64 = w.iter().map(|x| x.1 - x.0).sum();
                    prop_assert_eq!(total, d);
                    if result.overflow.contains(&i) {
                        prop_assert_eq!(w.clone(), vec![(release, release + d)]);
                    } else {
                        let mut slots: Vec<i64> = w
                            .iter()
                            .flat_map(|&(a, b)| a.div_euclid(slot)..=(b - 1).div_euclid(slot))
                            .collect();
                        slots.dedup();
                        for s in slots {
                            *loads.entry(s).or_insert(0.0) += job.load;
                        }
                    }
                }
            }
        }
        for (s, load) in loads {
            prop_assert!(load <= limit + 1e-9, "slot {s}: {load} above the cap of jobs that did not overflow");
        }
        if result.overflow.is_empty() {
            prop_assert!(result.peak_load <= limit + 1e-9);
        }
    }

    #[test]
    fn forecast_queries_match_the_reference(pts in points(), probes in prop::collection::vec(-30i64..3_000, 1..20)) {
        let r = Reference::new(&pts);
        let f = Scenario { points: pts, now: 0, submitted: 0, duration: 1, max_delay: None, deadline: None, margin: 0 }.forecast();
        for &m in &probes {
            prop_assert_eq!(f.intensity_at(at(m)), r.value_at(m));
        }
        for pair in probes.windows(2) {
            let (a, b) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
            let (sum, known) = r.integrate(a, b);
            match f.mean_over(at(a), at(b)) {
                None => prop_assert_eq!(known, 0),
                Some(c) => {
                    prop_assert!(close(c.mean, sum / known as f64));
                    prop_assert!((c.known_fraction - known as f64 / (b - a) as f64).abs() < 1e-12);
                }
            }
        }
        match (f.known_mean(), r.mean()) {
            (Some(a), Some(b)) => prop_assert!(close(a, b)),
            (a, b) => prop_assert_eq!(a, b),
        }
    }
}
