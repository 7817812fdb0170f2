//! The actual trace as a step function with its own prefix sums: what every policy is scored on,
//! and what the oracle searches. Deliberately independent of the planner's internals (it reads
//! only the planner's public [`Forecast::segments`], so both agree on what the trace *means*:
//! each value holds until the next point, the last for one median step).
//!
//! Times are integer milliseconds since the Unix epoch; integrals are `f64` in
//! gCO2eq/kWh × milliseconds.

use chrono::{DateTime, Utc};

use crate::planner::Forecast;

/// Milliseconds since the epoch.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant `ms` milliseconds after the epoch (saturating at chrono's range).
pub(crate) fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// Milliseconds per hour.
pub(crate) const HOUR_MS: f64 = 3_600_000.0;

/// A piecewise-constant function of time over known segments, sorted and disjoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    start: Vec<i64>,
    end: Vec<i64>,
    value: Vec<f64>,
    /// Integral over known time from `start[0]` to `start[i]`.
    cum: Vec<f64>,
}

impl Series {
    /// The known segments of `forecast`.
    pub fn from_forecast(forecast: &Forecast) -> Series {
        let n = forecast.len();
        let mut s = Series {
            start: Vec::with_capacity(n),
            end: Vec::with_capacity(n),
            value: Vec::with_capacity(n),
            cum: Vec::with_capacity(n),
        };
        let mut cum = 0.0;
        for seg in forecast.segments() {
            let (a, b) = (ms(seg.start), ms(seg.end));
            s.start.push(a);
            s.end.push(b);
            s.value.push(seg.intensity);
            s.cum.push(cum);
            cum += seg.intensity * (b - a) as f64;
        }
        s
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.start.len()
    }

    /// Whether there are no segments.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }

    /// Start of the first segment.
    pub fn first(&self) -> Option<i64> {
        self.start.first().copied()
    }

    /// End of the last segment.
    pub fn last_end(&self) -> Option<i64> {
        self.end.last().copied()
    }

    /// The first unknown stretch inside `[from, to)`, if any (including time before the first or
    /// after the last segment).
    pub fn gap_within(&self, from: i64, to: i64) -> Option<(i64, i64)> {
        if from >= to {
            return None;
        }
        let (Some(first), Some(last)) = (self.first(), self.last_end()) else {
            return Some((from, to));
        };
        if from < first {
            return Some((from, first.min(to)));
        }
        let mut i = self.index(from);
        while i + 1 < self.len() && self.end[i] < to {
            if self.end[i] < self.start[i + 1] {
                return Some((self.end[i], self.start[i + 1].min(to)));
            }
            i += 1;
        }
        (last < to).then_some((last.max(from), to))
    }

    /// Index of the segment containing `x`, or the last one starting before it (0 before all).
    fn index(&self, x: i64) -> usize {
        self.start.partition_point(|&s| s <= x).saturating_sub(1)
    }

    /// Integral over known time from the first segment's start to `x`.
    pub fn integral_at(&self, x: i64) -> f64 {
        if self.is_empty() || x <= self.start[0] {
            return 0.0;
        }
        let i = self.index(x);
        self.cum[i] + self.value[i] * (x.min(self.end[i]) - self.start[i]) as f64
    }

    /// Integral over known time in `[a, b)`, gCO2eq/kWh × ms.
    pub fn integral(&self, a: i64, b: i64) -> f64 {
        if b <= a {
            return 0.0;
        }
        self.integral_at(b) - self.integral_at(a)
    }

    /// The value holding at `x`, if known.
    pub fn value_at(&self, x: i64) -> Option<f64> {
        if self.is_empty() || x < self.start[0] {
            return None;
        }
        let i = self.index(x);
        (x < self.end[i]).then(|| self.value[i])
    }

    /// The known pieces of `[a, b)`: `(start, end, value)` in time order.
    pub fn pieces(&self, a: i64, b: i64) -> impl Iterator<Item = (i64, i64, f64)> + '_ {
        let first = if a < b { self.index(a) } else { self.len() };
        (first..self.len())
            .take_while(move |&i| self.start[i] < b)
            .filter_map(move |i| {
                let (s, e) = (self.start[i].max(a), self.end[i].min(b));
                (e > s).then_some((s, e, self.value[i]))
            })
    }

    /// Segment boundaries (starts and ends) inside `[a, b]`, ascending, without duplicates.
    pub fn boundaries(&self, a: i64, b: i64) -> Vec<i64> {
        let mut out = Vec::new();
        if a > b {
            return out;
        }
        let from = self.index(a);
        for i in from..self.len() {
            if self.start[i] > b {
                break;
            }
            for t in [self.start[i], self.end[i]] {
                if (a..=b).contains(&t) && out.last() != Some(&t) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Time-weighted mean over all known time (0 when empty).
    pub fn mean(&self) -> f64 {
        let known: i64 = self.start.iter().zip(&self.end).map(|(a, b)| b - a).sum();
        match (
            self.cum.last(),
            self.value.last(),
            self.start.last(),
            self.end.last(),
        ) {
            (Some(c), Some(v), Some(s), Some(e)) if known > 0 => {
                (c + v * (e - s) as f64) / known as f64
            }
            _ => 0.0,
        }
    }

    /// A cursor for integrals at non-decreasing times, O(1) amortised per call.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor { series: self, i: 0 }
    }
}

/// Evaluates [`Series::integral_at`] at non-decreasing times without searching.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    series: &'a Series,
    i: usize,
}

impl Cursor<'_> {
    /// [`Series::integral_at`]`(x)`; `x` must not decrease between calls.
    pub fn integral_at(&mut self, x: i64) -> f64 {
        let s = self.series;
        if s.is_empty() || x <= s.start[0] {
            return 0.0;
        }
        while self.i + 1 < s.len() && s.start[self.i + 1] <= x {
            self.i += 1;
        }
        let i = self.i;
        s.cum[i] + s.value[i] * (x.min(s.end[i]) - s.start[i]) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Point;
    use crate::units::parse_timestamp;

    const M: i64 = 60_000;

    fn series(spec: &[(&str, f64)]) -> Series {
        let points = spec
            .iter()
            .map(|&(t, intensity)| Point {
                start: parse_timestamp(t).unwrap_or_default(),
                intensity,
            })
            .collect();
        Series::from_forecast(&Forecast::new(points).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn integrals_values_and_pieces_in_exact_figures() {
        // 00:00 10, 00:30 20, 01:00 40 (holds 30 min), then a gap, 03:00 5 (holds 30 min).
        let s = series(&[
            ("2023-01-01T00:00Z", 10.0),
            ("2023-01-01T00:30Z", 20.0),
            ("2023-01-01T01:00Z", 40.0),
            ("2023-01-01T03:00Z", 5.0),
        ]);
        let t0 = s.first().unwrap_or_default();
        assert_eq!(s.len(), 4);
        assert_eq!(s.integral(t0, t0 + 30 * M), 10.0 * 30.0 * M as f64);
        assert_eq!(
            s.integral(t0 + 15 * M, t0 + 75 * M),
            (10.0 * 15.0 + 20.0 * 30.0 + 40.0 * 15.0) * M as f64
        );
        // The gap counts nothing.
        assert_eq!(
            s.integral(t0 + 60 * M, t0 + 240 * M),
            (40.0 * 30.0 + 5.0 * 30.0) * M as f64
        );
        assert_eq!(s.value_at(t0 + 89 * M), Some(40.0));
        assert_eq!(s.value_at(t0 + 90 * M), None);
        assert_eq!(s.value_at(t0 - 1), None);
        assert_eq!(s.gap_within(t0, t0 + 90 * M), None);
        assert_eq!(
            s.gap_within(t0, t0 + 200 * M),
            Some((t0 + 90 * M, t0 + 180 * M))
        );
        assert_eq!(s.gap_within(t0 - M, t0 + M), Some((t0 - M, t0)));
        assert_eq!(
            s.gap_within(t0 + 185 * M, t0 + 300 * M),
            Some((t0 + 210 * M, t0 + 300 * M))
        );
        let pieces: Vec<_> = s.pieces(t0 + 45 * M, t0 + 185 * M).collect();
        assert_eq!(
            pieces,
            vec![
                (t0 + 45 * M, t0 + 60 * M, 20.0),
                (t0 + 60 * M, t0 + 90 * M, 40.0),
                (t0 + 180 * M, t0 + 185 * M, 5.0)
            ]
        );
        assert_eq!(
            s.boundaries(t0 + 30 * M, t0 + 180 * M),
            vec![t0 + 30 * M, t0 + 60 * M, t0 + 90 * M, t0 + 180 * M]
        );
        // (10+20+40+5) × 30 min over 120 known minutes.
        assert!((s.mean() - 75.0 / 4.0).abs() < 1e-12);
        let mut c = s.cursor();
        for x in [
            t0 - M,
            t0,
            t0 + 17 * M,
            t0 + 61 * M,
            t0 + 200 * M,
            t0 + 500 * M,
        ] {
            assert_eq!(c.integral_at(x), s.integral_at(x), "at {x}");
        }
    }
}
