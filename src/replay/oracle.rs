//! The perfect-foresight optimum, by brute force on the actual trace — deliberately simple and
//! independent of the planner's code, so that the two can check each other.
//!
//! - **One block**: every start on the lattice `lo + k·G` in `[lo, hi]` is scored, where `G` is
//!   the greatest common divisor of the job's duration, the allowed range and the offsets of all
//!   trace boundaries near it. The cost is piecewise linear in the start with kinks only where the
//!   start or the end meets a boundary, so its minimum is at a range end, a boundary or a
//!   boundary minus the duration — all on the lattice: the scan is exhaustive. Ties: earliest.
//!   (Should the lattice exceed [`MAX_LATTICE`] points, only those kink points are scored.)
//! - **Interruptible**: the cheapest `duration` of trace time in `[lo, deadline)`: pieces sorted by
//!   intensity, taken whole until the last, which is taken in part (fractional knapsack).

use super::scenario::Job;
use super::series::{Series, ms};

/// Largest lattice scanned point by point for one job.
pub const MAX_LATTICE: i64 = 20_000_000;

fn gcd(mut a: i64, mut b: i64) -> i64 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The oracle's runs of `job`: `[start, end)` in milliseconds, sorted and disjoint.
pub fn best(series: &Series, job: &Job) -> Vec<(i64, i64)> {
    let lo = ms(job.submitted_at);
    let d = job.duration.num_milliseconds();
    if job.interruptible {
        cheapest_time(series, lo, ms(job.deadline), d)
    } else {
        let hi = ms(job.latest_start()).max(lo);
        let s = best_start(series, lo, hi, d);
        vec![(s, s + d)]
    }
}

/// The cheapest start in `[lo, hi]` of a block of `d` milliseconds.
pub fn best_start(series: &Series, lo: i64, hi: i64, d: i64) -> i64 {
    let boundaries = series.boundaries(lo, hi + d);
    let g = boundaries
        .iter()
        .fold(gcd(d, hi - lo), |g, &t| gcd(g, t - lo));
    let cost = |s: i64| series.integral(s, s + d);
    if g == 0 {
        return lo;
    }
    if (hi - lo) / g > MAX_LATTICE {
        let mut candidates: Vec<i64> = boundaries
            .iter()
            .flat_map(|&t| [t, t - d])
            .chain([lo, hi])
            .filter(|s| (lo..=hi).contains(s))
            .collect();
        candidates.sort_unstable();
        let mut best = (f64::INFINITY, lo);
        for s in candidates {
            let c = cost(s);
            if c < best.0 {
                best = (c, s);
            }
        }
        return best.1;
    }
    let mut starts = series.cursor();
    let mut ends = series.cursor();
    let mut best = (f64::INFINITY, lo);
    let mut s = lo;
    while s <= hi {
        let c = ends.integral_at(s + d) - starts.integral_at(s);
        if c < best.0 {
            best = (c, s);
        }
        s += g;
    }
    best.1
}

/// The cheapest `need` milliseconds of trace time in `[lo, end)`, as merged windows.
pub fn cheapest_time(series: &Series, lo: i64, end: i64, need: i64) -> Vec<(i64, i64)> {
    let mut pieces: Vec<(i64, i64, f64)> = series.pieces(lo, end).collect();
    pieces.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
    let mut chosen = Vec::new();
    let mut remaining = need;
    for (a, b, _) in pieces {
        if remaining <= 0 {
            break;
        }
        let take = (b - a).min(remaining);
        chosen.push((a, a + take));
        remaining -= take;
    }
    chosen.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(chosen.len());
    for (a, b) in chosen {
        match merged.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => merged.push((a, b)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{Forecast, hourly_points};
    use crate::units::parse_timestamp;

    const M: i64 = 60_000;

    fn hourly(values: &[f64]) -> (Series, i64) {
        let t0 = parse_timestamp("2023-01-01T00:00Z").unwrap_or_default();
        let f = Forecast::new(hourly_points(t0, values)).unwrap_or_else(|e| panic!("{e}"));
        (Series::from_forecast(&f), t0.timestamp_millis())
    }

    #[test]
    fn block_optimum_may_end_on_a_boundary() {
        // 100, 40, 10, 500: a 90 min block is cheapest on [01:30, 03:00).
        let (s, t0) = hourly(&[100.0, 40.0, 10.0, 500.0]);
        assert_eq!(best_start(&s, t0, t0 + 150 * M, 90 * M), t0 + 90 * M);
        // Off-grid range ends: 7 and 131 minutes; the lattice is 1 minute.
        assert_eq!(
            best_start(&s, t0 + 7 * M, t0 + 131 * M, 90 * M),
            t0 + 90 * M
        );
        // Ties take the earliest start.
        let (flat, t0) = hourly(&[5.0, 5.0, 5.0]);
        assert_eq!(
            best_start(&flat, t0 + 10 * M, t0 + 60 * M, 60 * M),
            t0 + 10 * M
        );
    }

    #[test]
    fn interruptible_takes_the_cheapest_time() {
        let (s, t0) = hourly(&[30.0, 10.0, 50.0, 20.0, 40.0]);
        // 150 min: 10 (60) + 20 (60) + 30 min of 30, taken from its start.
        assert_eq!(
            cheapest_time(&s, t0, t0 + 300 * M, 150 * M),
            vec![
                (t0, t0 + 30 * M),
                (t0 + 60 * M, t0 + 120 * M),
                (t0 + 180 * M, t0 + 240 * M)
            ]
        );
    }

    #[test]
    fn gcd_of_offsets() {
        assert_eq!(gcd(0, 15), 15);
        assert_eq!(gcd(1_800, 1_000), 200);
        assert_eq!(gcd(-6, 4), 2);
    }
}
