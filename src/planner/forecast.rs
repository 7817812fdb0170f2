//! A validated carbon-intensity forecast: its points, the known segments they imply (with gaps
//! left unknown), and the prefix sums every plan reads in O(log n).
//!
//! Semantics: each point's value holds from its start to the next point's start; the last holds for
//! one median step. A step longer than twice the median step is a gap: the value before it holds
//! for one median step and the rest of the gap is unknown. Unknown time is never filled with
//! invented values here; the planner decides how to treat it.
//!
//! Internally times are integer milliseconds since the Unix epoch and the integral of intensity
//! over time is kept in fixed point (intensity × 2³², exact in `i128`), so that comparisons between
//! windows are exact and ties are real ties (the earliest start wins), independent of how long the
//! forecast is. Values shown to people are computed directly in `f64` from the original points.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Point;

/// Largest intensity accepted from any source, gCO2eq/kWh; no grid comes near it.
pub const MAX_INTENSITY: f64 = 5_000.0;

/// Whether `value` is an intensity carbonshift accepts from any source: within
/// 0..=[`MAX_INTENSITY`] gCO2eq/kWh, so never NaN or infinite.
pub fn intensity_in_range(value: f64) -> bool {
    (0.0..=MAX_INTENSITY).contains(&value)
}

/// How long the value of a forecast with a single point holds when no step is given
/// ([`Forecast::with_step`]): one hour, the coarsest resolution of common providers.
pub const SINGLE_POINT_STEP: TimeDelta = TimeDelta::hours(1);

/// Fixed-point scale of intensities: 2³² units per gCO2eq/kWh (resolution 2.3e-10).
pub(crate) const SCALE: f64 = 4_294_967_296.0;

/// Left sentinel of the breakpoint arrays: earlier than any representable time, and far enough
/// from `i64::MIN` that differences never overflow.
const SENTINEL: i64 = i64::MIN / 4;

/// Why points cannot form a forecast.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ForecastError {
    /// A point's start is not later than the one before (compared at millisecond resolution).
    #[error(
        "point {index} ({start}) is not later than the point before it; forecast points must be strictly increasing in time"
    )]
    NotIncreasing {
        /// 0-based index of the offending point.
        index: usize,
        /// Its start.
        start: DateTime<Utc>,
    },
    /// An intensity that is not finite or outside `0..=MAX_INTENSITY`.
    #[error("point {index} has intensity {value}, outside 0..={MAX_INTENSITY} gCO2eq/kWh")]
    BadIntensity {
        /// 0-based index of the offending point.
        index: usize,
        /// The value.
        value: f64,
    },
    /// An explicit step that is zero or negative.
    #[error("the forecast step must be positive")]
    BadStep,
}

/// A known piece of the forecast: `intensity` holds on `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// First instant of the piece.
    pub start: DateTime<Utc>,
    /// First instant after the piece.
    pub end: DateTime<Utc>,
    /// Carbon intensity, gCO2eq/kWh.
    pub intensity: f64,
}

/// The mean of the known part of an interval and how much of it is known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// Time-weighted mean intensity over the known part, gCO2eq/kWh.
    pub mean: f64,
    /// Known fraction of the interval, in `(0, 1]`.
    pub known_fraction: f64,
}

/// The forecast as a piecewise-constant function of time, stored at its breakpoints.
///
/// Piece `i` is `[t[i], t[i+1])` (the last piece is unbounded); piece 0 starts at [`SENTINEL`] and
/// is unknown, as is the last. `cum[i]` and `kcum[i]` are the integral of the fixed-point rate and
/// the known milliseconds from `t[0]` to `t[i]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timeline {
    pub(crate) t: Vec<i64>,
    pub(crate) value: Vec<f64>,
    pub(crate) rate: Vec<i64>,
    pub(crate) krate: Vec<i64>,
    pub(crate) cum: Vec<i128>,
    pub(crate) kcum: Vec<i64>,
    /// `Some(step)` when every piece between the first breakpoint and the horizon is known and
    /// exactly `step` long: the planner's fast path.
    pub(crate) grid: Option<i64>,
    /// `cum` and `rate` as `f64`, for the fast path's approximate pre-filter.
    pub(crate) cum_f: Vec<f64>,
    pub(crate) rate_f: Vec<f64>,
    /// The largest rate, as `f64`.
    pub(crate) max_rate_f: f64,
}

impl Timeline {
    /// Builds the breakpoints from known segments `(start, end, value)`, sorted and disjoint.
    fn from_segments(segments: &[(i64, i64, f64)]) -> Timeline {
        let capacity = 2 * segments.len() + 1;
        let mut tl = Timeline {
            t: Vec::with_capacity(capacity),
            value: Vec::with_capacity(capacity),
            rate: Vec::with_capacity(capacity),
            krate: Vec::with_capacity(capacity),
            cum: Vec::with_capacity(capacity),
            kcum: Vec::with_capacity(capacity),
            grid: None,
            cum_f: Vec::new(),
            rate_f: Vec::new(),
            max_rate_f: 0.0,
        };
        tl.push(SENTINEL, None);
        for (k, &(start, end, value)) in segments.iter().enumerate() {
            tl.push(start, Some(value));
            let next_start = segments.get(k + 1).map(|s| s.0);
            if next_start != Some(end) {
                tl.push(end, None);
            }
        }
        tl.grid = tl.regular_step();
        tl.cum_f = tl.cum.iter().map(|&c| c as f64).collect();
        tl.rate_f = tl.rate.iter().map(|&r| r as f64).collect();
        tl.max_rate_f = tl.rate.iter().copied().max().unwrap_or(0) as f64;
        tl
    }

    fn regular_step(&self) -> Option<i64> {
        let n = self.t.len();
        if n < 3 {
            return None;
        }
        let g = self.t[2] - self.t[1];
        (1..n - 1)
            .all(|k| self.t[k + 1] - self.t[k] == g && self.krate[k] == 1)
            .then_some(g)
    }

    fn push(&mut self, t: i64, value: Option<f64>) {
        let (cum, kcum) = match self.t.last() {
            Some(&prev) => {
                let i = self.t.len() - 1;
                let span = t - prev;
                (
                    self.cum[i] + i128::from(self.rate[i]) * i128::from(span),
                    self.kcum[i] + self.krate[i] * span,
                )
            }
            None => (0, 0),
        };
        self.t.push(t);
        self.value.push(value.unwrap_or(0.0));
        self.rate.push(value.map_or(0, fixed));
        self.krate.push(i64::from(value.is_some()));
        self.cum.push(cum);
        self.kcum.push(kcum);
    }

    /// Number of breakpoints (at least 1, the sentinel).
    pub(crate) fn len(&self) -> usize {
        self.t.len()
    }

    /// Index of the piece containing `x`: the last breakpoint at or before `x`.
    pub(crate) fn locate(&self, x: i64) -> usize {
        self.t.partition_point(|&t| t <= x).saturating_sub(1)
    }

    /// Whether piece `p` is known.
    pub(crate) fn known(&self, p: usize) -> bool {
        self.krate[p] == 1
    }

    /// End of piece `p` (`i64::MAX` for the last).
    pub(crate) fn end(&self, p: usize) -> i64 {
        self.t.get(p + 1).copied().unwrap_or(i64::MAX)
    }

    /// Fixed-point integral from the start to `x`, where `p` is the piece containing `x`.
    #[inline]
    pub(crate) fn integral_at(&self, p: usize, x: i64) -> i128 {
        self.cum[p] + i128::from(self.rate[p]) * i128::from(x - self.t[p])
    }

    /// Known milliseconds from the start to `x`, where `p` is the piece containing `x`.
    #[inline]
    pub(crate) fn known_at(&self, p: usize, x: i64) -> i64 {
        self.kcum[p] + self.krate[p] * (x - self.t[p])
    }

    /// Moves cursor `p` forward to the piece containing `x` (`x` never decreases between calls).
    #[inline]
    pub(crate) fn advance(&self, p: &mut usize, x: i64) {
        while *p + 1 < self.t.len() && self.t[*p + 1] <= x {
            *p += 1;
        }
    }

    /// Moves cursor `p` forward to the piece containing `x` (non-decreasing between calls): a few
    /// linear steps, then binary search, so that both dense and sparse sequences are cheap.
    #[inline]
    pub(crate) fn seek(&self, p: &mut usize, x: i64) {
        for _ in 0..4 {
            if *p + 1 >= self.t.len() || self.t[*p + 1] > x {
                return;
            }
            *p += 1;
        }
        *p += self.t[*p..].partition_point(|&t| t <= x).saturating_sub(1);
    }

    /// `f64` integral of intensity × milliseconds over the known part of `[from, to)` and the
    /// known milliseconds, summed directly from the values (for figures shown to people).
    pub(crate) fn sum_f64(&self, from: i64, to: i64) -> (f64, i64) {
        let mut sum = 0.0;
        let mut known = 0;
        if from >= to {
            return (sum, known);
        }
        let mut p = self.locate(from);
        while p < self.t.len() && self.t[p] < to {
            if self.known(p) {
                let a = self.t[p].max(from);
                let b = self.end(p).min(to);
                if b > a {
                    sum += self.value[p] * (b - a) as f64;
                    known += b - a;
                }
            }
            p += 1;
        }
        (sum, known)
    }
}

/// Converts an intensity to fixed point.
pub(crate) fn fixed(value: f64) -> i64 {
    // value is validated to 0..=5000, so the product is below 2^53 and the cast is exact.
    (value * SCALE).round() as i64
}

/// Milliseconds since the epoch, rounded down.
pub(crate) fn ms_floor(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Milliseconds since the epoch, rounded up.
pub(crate) fn ms_ceil(t: DateTime<Utc>) -> i64 {
    let ms = t.timestamp_millis();
    if !t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        ms.saturating_add(1)
    } else {
        ms
    }
}

/// Milliseconds of a duration, rounded up (negative durations give their truncation).
pub(crate) fn delta_ms_ceil(d: TimeDelta) -> i64 {
    let ms = d.num_milliseconds();
    if d > TimeDelta::zero() && d.subsec_nanos() % 1_000_000 != 0 {
        ms.saturating_add(1)
    } else {
        ms
    }
}

/// The instant `ms` milliseconds after the epoch, saturating at chrono's range. Callers only pass
/// values between two valid instants, so saturation never shows.
pub(crate) fn dt(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// A validated forecast with its segments, gaps and prefix sums precomputed (O(n) once); every
/// query afterwards costs O(log n) plus the segments it touches.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    points: Vec<Point>,
    step_ms: i64,
    pub(crate) tl: Timeline,
    known_ms: i64,
    known_sum: f64,
}

impl Forecast {
    /// Validates `points` (strictly increasing, intensities finite and within
    /// `0..=`[`MAX_INTENSITY`]) and precomputes the segments. The step is the median step between
    /// points ([`SINGLE_POINT_STEP`] for a single point). An empty list gives an empty forecast,
    /// for which every plan is "no coverage".
    pub fn new(points: Vec<Point>) -> Result<Forecast, ForecastError> {
        Self::build(points, None)
    }

    /// Like [`Forecast::new`] with an explicit step (the provider's resolution) instead of the
    /// median: it sets how long the last value holds and which steps count as gaps (longer than
    /// twice the step).
    pub fn with_step(points: Vec<Point>, step: TimeDelta) -> Result<Forecast, ForecastError> {
        let step_ms = delta_ms_ceil(step);
        if step_ms <= 0 {
            return Err(ForecastError::BadStep);
        }
        Self::build(points, Some(step_ms))
    }

    fn build(points: Vec<Point>, step_ms: Option<i64>) -> Result<Forecast, ForecastError> {
        let mut ms = Vec::with_capacity(points.len());
        for (index, p) in points.iter().enumerate() {
            if !intensity_in_range(p.intensity) {
                return Err(ForecastError::BadIntensity {
                    index,
                    value: p.intensity,
                });
            }
            let t = ms_floor(p.start);
            if ms.last().is_some_and(|&prev| t <= prev) {
                return Err(ForecastError::NotIncreasing {
                    index,
                    start: p.start,
                });
            }
            ms.push(t);
        }
        let step_ms = step_ms.unwrap_or_else(|| median_step_ms(&ms));
        let mut segments = Vec::with_capacity(points.len());
        for (i, p) in points.iter().enumerate() {
            let start = ms[i];
            let end = match ms.get(i + 1) {
                Some(&next) if next - start <= step_ms.saturating_mul(2) => next,
                _ => start.saturating_add(step_ms),
            };
            segments.push((start, end, p.intensity));
        }
        Ok(Self::from_segments(points, step_ms, &segments))
    }

    fn from_segments(points: Vec<Point>, step_ms: i64, segments: &[(i64, i64, f64)]) -> Forecast {
        let tl = Timeline::from_segments(segments);
        let known_ms: i64 = segments.iter().map(|s| s.1 - s.0).sum();
        let known_sum: f64 = segments.iter().map(|s| s.2 * (s.1 - s.0) as f64).sum();
        Forecast {
            points,
            step_ms,
            tl,
            known_ms,
            known_sum,
        }
    }

    /// The points, as given (for a [`Forecast::clip`] view: one per segment, the first moved to
    /// the start of the view).
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the forecast has no points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The known pieces in time order; unknown gaps lie between pieces that do not touch.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment> + '_ {
        let known: Vec<usize> = (0..self.tl.len()).filter(|&p| self.tl.known(p)).collect();
        known.into_iter().map(|p| Segment {
            start: dt(self.tl.t[p]),
            end: dt(self.tl.end(p)),
            intensity: self.tl.value[p],
        })
    }

    /// The step that decides how long the last value holds and what is a gap: the median step
    /// between points (the lower median for an even count), or the explicit step.
    pub fn median_step(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.step_ms)
    }

    /// Start of the first point.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.tl.t.get(1).map(|&t| dt(t))
    }

    /// End of the last known segment: how far the forecast reaches.
    pub fn horizon_end(&self) -> Option<DateTime<Utc>> {
        if self.tl.len() > 1 {
            self.tl.t.last().map(|&t| dt(t))
        } else {
            None
        }
    }

    /// The intensity holding at `t`, or `None` before the start, in a gap or after the horizon.
    pub fn intensity_at(&self, t: DateTime<Utc>) -> Option<f64> {
        let p = self.tl.locate(ms_floor(t));
        self.tl.known(p).then(|| self.tl.value[p])
    }

    /// The time-weighted mean over the known part of `[from, to)` and the known fraction; `None`
    /// for an empty interval or when nothing of it is known.
    pub fn mean_over(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Coverage> {
        let (a, b) = (ms_floor(from), ms_floor(to));
        let (sum, known) = self.tl.sum_f64(a, b);
        (known > 0).then(|| Coverage {
            mean: sum / known as f64,
            known_fraction: known as f64 / (b - a) as f64,
        })
    }

    /// Time-weighted mean of the whole known forecast (the neutral prior for unknown time).
    pub fn known_mean(&self) -> Option<f64> {
        (self.known_ms > 0).then(|| self.known_sum / self.known_ms as f64)
    }

    /// Known time in the forecast.
    pub fn known_duration(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.known_ms)
    }

    /// The lowest known value in `[from, to)` and when it starts to hold there (the earliest if
    /// several are equal), e.g. for the "lowest ahead" of a CarbonForecast status.
    pub fn lowest_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Point> {
        let (a, b) = (ms_floor(from), ms_floor(to));
        let mut best: Option<(f64, i64)> = None;
        if a >= b {
            return None;
        }
        let mut p = self.tl.locate(a);
        while p < self.tl.len() && self.tl.t[p] < b {
            if self.tl.known(p) {
                let v = self.tl.value[p];
                if best.is_none_or(|(bv, _)| v < bv) {
                    best = Some((v, self.tl.t[p].max(a)));
                }
            }
            p += 1;
        }
        best.map(|(intensity, t)| Point {
            start: dt(t),
            intensity,
        })
    }

    /// A view of `[from, to)` only: segments cut to the interval, same step, its own known mean.
    /// Costs O(log n + k) for k segments in the interval, so a replay can show a 48 h horizon of
    /// a one-year forecast cheaply.
    pub fn clip(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Forecast {
        let (a, b) = (ms_floor(from), ms_floor(to));
        let mut segments = Vec::new();
        let mut points = Vec::new();
        if a < b {
            let mut p = self.tl.locate(a);
            while p < self.tl.len() && self.tl.t[p] < b {
                if self.tl.known(p) {
                    let s = self.tl.t[p].max(a);
                    let e = self.tl.end(p).min(b);
                    if e > s {
                        segments.push((s, e, self.tl.value[p]));
                        points.push(Point {
                            start: dt(s),
                            intensity: self.tl.value[p],
                        });
                    }
                }
                p += 1;
            }
        }
        Self::from_segments(points, self.step_ms, &segments)
    }

    /// The neutral prior as an exact ratio: the fixed-point integral of the whole known forecast
    /// and its known milliseconds. Scores with unknown time are compared multiplied by the latter
    /// (see [`Forecast::prior_score`]), so that no rounding of the mean breaks a tie.
    pub(crate) fn prior_parts(&self) -> (i128, i128) {
        let last = self.tl.len() - 1;
        (self.tl.cum[last], i128::from(self.known_ms))
    }

    /// `known_ms ×` the cost of a window with fixed-point integral `integral` over its known part
    /// and `unknown` milliseconds valued at the prior. Saturates instead of overflowing for
    /// windows of many millennia.
    #[inline]
    pub(crate) fn prior_score(&self, integral: i128, unknown: i64) -> i128 {
        let (total, known) = self.prior_parts();
        integral
            .saturating_mul(known)
            .saturating_add(i128::from(unknown).saturating_mul(total))
    }

    /// The `f64` neutral prior, 0 when nothing is known.
    pub(crate) fn prior(&self) -> f64 {
        self.known_mean().unwrap_or(0.0)
    }

    /// Mean over `[from, to)` with the unknown part valued at the known mean, and the known
    /// milliseconds; `None` when nothing of it is known.
    pub(crate) fn blended_mean(&self, from: i64, to: i64) -> Option<(f64, i64)> {
        let (sum, known) = self.tl.sum_f64(from, to);
        if known == 0 || to <= from {
            return None;
        }
        let unknown = (to - from - known) as f64;
        Some(((sum + unknown * self.prior()) / (to - from) as f64, known))
    }
}

/// The lower median of the steps between consecutive points, or [`SINGLE_POINT_STEP`].
fn median_step_ms(ms: &[i64]) -> i64 {
    let mut steps: Vec<i64> = ms.windows(2).map(|w| w[1] - w[0]).collect();
    if steps.is_empty() {
        return SINGLE_POINT_STEP.num_milliseconds();
    }
    let middle = (steps.len() - 1) / 2;
    let (_, median, _) = steps.select_nth_unstable(middle);
    *median
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(s).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    fn points(spec: &[(&str, f64)]) -> Vec<Point> {
        spec.iter()
            .map(|&(s, intensity)| Point {
                start: t(s),
                intensity,
            })
            .collect()
    }

    fn segs(f: &Forecast) -> Vec<(String, String, f64)> {
        f.segments()
            .map(|s| {
                (
                    s.start.format("%d %H:%M").to_string(),
                    s.end.format("%d %H:%M").to_string(),
                    s.intensity,
                )
            })
            .collect()
    }

    #[test]
    fn gaps_hold_one_median_step_then_are_unknown() {
        let f = Forecast::new(points(&[
            ("2023-01-01T00:00Z", 10.0),
            ("2023-01-01T00:30Z", 20.0),
            ("2023-01-01T01:00Z", 30.0),
            // 2 h step: more than twice the 30 min median, so a gap after 01:30.
            ("2023-01-01T03:00Z", 40.0),
            // exactly twice the median: not a gap.
            ("2023-01-01T04:00Z", 50.0),
        ]))
        .expect("valid");
        assert_eq!(f.median_step(), TimeDelta::minutes(30));
        assert_eq!(
            segs(&f),
            vec![
                ("01 00:00".into(), "01 00:30".into(), 10.0),
                ("01 00:30".into(), "01 01:00".into(), 20.0),
                ("01 01:00".into(), "01 01:30".into(), 30.0),
                ("01 03:00".into(), "01 04:00".into(), 40.0),
                ("01 04:00".into(), "01 04:30".into(), 50.0),
            ]
        );
        assert_eq!(f.start(), Some(t("2023-01-01T00:00Z")));
        assert_eq!(f.horizon_end(), Some(t("2023-01-01T04:30Z")));
        assert_eq!(f.intensity_at(t("2023-01-01T01:29Z")), Some(30.0));
        assert_eq!(f.intensity_at(t("2023-01-01T01:30Z")), None);
        assert_eq!(f.intensity_at(t("2023-01-01T02:59Z")), None);
        assert_eq!(f.intensity_at(t("2023-01-01T03:00Z")), Some(40.0));
        assert_eq!(f.intensity_at(t("2022-12-31T23:59Z")), None);
        assert_eq!(f.intensity_at(t("2023-01-01T04:30Z")), None);
        assert_eq!(f.known_duration(), TimeDelta::minutes(180));
        // (10+20+30)*30 + 40*60 + 50*30 = 5700 over 180 minutes.
        let mean = f.known_mean().expect("known");
        assert!((mean - 5_700.0 / 180.0).abs() < 1e-12, "{mean}");
    }

    #[test]
    fn mean_over_weights_by_time_and_reports_the_known_fraction() {
        let f = Forecast::new(points(&[
            ("2023-01-01T00:00Z", 100.0),
            ("2023-01-01T01:00Z", 200.0),
            ("2023-01-01T02:00Z", 300.0),
        ]))
        .expect("valid");
        // 00:30..02:30 = 30 min at 100, 60 at 200, 30 at 300 → 200.
        let c = f
            .mean_over(t("2023-01-01T00:30Z"), t("2023-01-01T02:30Z"))
            .expect("known");
        assert_eq!(c.mean, 200.0);
        assert_eq!(c.known_fraction, 1.0);
        // 02:30..04:30: known only until 03:00 (last value holds one step).
        let c = f
            .mean_over(t("2023-01-01T02:30Z"), t("2023-01-01T04:30Z"))
            .expect("partly known");
        assert_eq!(c.mean, 300.0);
        assert_eq!(c.known_fraction, 0.25);
        assert_eq!(
            f.mean_over(t("2023-01-01T03:00Z"), t("2023-01-01T04:00Z")),
            None
        );
        assert_eq!(
            f.mean_over(t("2023-01-01T01:00Z"), t("2023-01-01T01:00Z")),
            None
        );
    }

    #[test]
    fn lowest_between_picks_the_earliest_lowest_known_value() {
        let f = Forecast::new(points(&[
            ("2023-01-01T00:00Z", 100.0),
            ("2023-01-01T01:00Z", 50.0),
            ("2023-01-01T02:00Z", 70.0),
            ("2023-01-01T03:00Z", 50.0),
        ]))
        .expect("valid");
        let low = f
            .lowest_between(t("2023-01-01T00:00Z"), t("2023-01-01T05:00Z"))
            .expect("known");
        assert_eq!(low.start, t("2023-01-01T01:00Z"));
        assert_eq!(low.intensity, 50.0);
        let low = f
            .lowest_between(t("2023-01-01T01:30Z"), t("2023-01-01T03:00Z"))
            .expect("known");
        assert_eq!((low.start, low.intensity), (t("2023-01-01T01:30Z"), 50.0));
        assert_eq!(
            f.lowest_between(t("2023-01-01T05:00Z"), t("2023-01-01T06:00Z")),
            None
        );
    }

    #[test]
    fn clip_keeps_the_step_and_cuts_segments() {
        let f = Forecast::new(points(&[
            ("2023-01-01T00:00Z", 100.0),
            ("2023-01-01T01:00Z", 200.0),
            ("2023-01-01T02:00Z", 300.0),
            ("2023-01-01T03:00Z", 400.0),
        ]))
        .expect("valid");
        let v = f.clip(t("2023-01-01T01:30Z"), t("2023-01-01T03:15Z"));
        assert_eq!(v.median_step(), TimeDelta::hours(1));
        assert_eq!(
            segs(&v),
            vec![
                ("01 01:30".into(), "01 02:00".into(), 200.0),
                ("01 02:00".into(), "01 03:00".into(), 300.0),
                ("01 03:00".into(), "01 03:15".into(), 400.0),
            ]
        );
        assert_eq!(v.len(), 3);
        assert_eq!(v.points()[0].start, t("2023-01-01T01:30Z"));
        assert_eq!(v.horizon_end(), Some(t("2023-01-01T03:15Z")));
        // (200*30 + 300*60 + 400*15) / 105
        let mean = v.known_mean().expect("known");
        assert!((mean - 30_000.0 / 105.0).abs() < 1e-12);
        assert!(
            f.clip(t("2023-01-02T00:00Z"), t("2023-01-03T00:00Z"))
                .is_empty()
        );
    }

    #[test]
    fn invalid_points_are_errors() {
        let dup = points(&[("2023-01-01T00:00Z", 1.0), ("2023-01-01T00:00Z", 2.0)]);
        assert_eq!(
            Forecast::new(dup),
            Err(ForecastError::NotIncreasing {
                index: 1,
                start: t("2023-01-01T00:00Z")
            })
        );
        let backwards = points(&[("2023-01-01T01:00Z", 1.0), ("2023-01-01T00:00Z", 2.0)]);
        assert!(matches!(
            Forecast::new(backwards),
            Err(ForecastError::NotIncreasing { index: 1, .. })
        ));
        for bad in [f64::NAN, f64::INFINITY, -0.5, 5_000.5] {
            let result = Forecast::new(points(&[("2023-01-01T00:00Z", bad)]));
            assert!(
                matches!(result, Err(ForecastError::BadIntensity { index: 0, .. })),
                "{bad}: {result:?}"
            );
        }
        assert_eq!(
            Forecast::with_step(vec![], TimeDelta::zero()),
            Err(ForecastError::BadStep)
        );
    }

    #[test]
    fn empty_and_single_point_forecasts() {
        let empty = Forecast::new(vec![]).expect("empty is valid");
        assert!(empty.is_empty());
        assert_eq!(empty.start(), None);
        assert_eq!(empty.horizon_end(), None);
        assert_eq!(empty.known_mean(), None);
        assert_eq!(empty.segments().count(), 0);
        assert_eq!(empty.intensity_at(t("2023-01-01T00:00Z")), None);

        let one = Forecast::new(points(&[("2023-01-01T00:00Z", 42.0)])).expect("valid");
        assert_eq!(one.median_step(), SINGLE_POINT_STEP);
        assert_eq!(one.horizon_end(), Some(t("2023-01-01T01:00Z")));
        let explicit = Forecast::with_step(
            points(&[("2023-01-01T00:00Z", 42.0)]),
            TimeDelta::minutes(5),
        )
        .expect("valid");
        assert_eq!(explicit.horizon_end(), Some(t("2023-01-01T00:05Z")));
    }

    #[test]
    fn median_is_the_lower_middle_step() {
        assert_eq!(median_step_ms(&[0, 10, 30]), 10);
        assert_eq!(median_step_ms(&[0, 10, 30, 60]), 20);
        assert_eq!(median_step_ms(&[0, 5, 10, 100, 105]), 5);
    }

    #[test]
    fn rounding_helpers() {
        let t0 = t("2023-01-01T00:00:00.0005Z");
        assert_eq!(ms_ceil(t0), ms_floor(t0) + 1);
        assert_eq!(
            ms_ceil(t("2023-01-01T00:00:00Z")),
            ms_floor(t("2023-01-01T00:00:00Z"))
        );
        assert_eq!(delta_ms_ceil(TimeDelta::nanoseconds(1)), 1);
        assert_eq!(delta_ms_ceil(TimeDelta::seconds(2)), 2_000);
        assert_eq!(dt(i64::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
