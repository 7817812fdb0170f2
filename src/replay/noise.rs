//! Forecast realism: what the scheduler sees instead of the actual trace.
//!
//! - **constant** (the paper's): Gaussian noise with σ = `error` × the trace mean is added to every
//!   point once per seed; the scheduler sees that one noisy trace for the whole run.
//! - **lead-time**: every planning call sees a freshly drawn forecast whose noise grows with the
//!   lead time, σ × √min(1, lead / 24 h): the next hours are almost right, a day ahead and beyond
//!   carries the full error. Only the window the planner may use is drawn (bounded work).
//!
//! Noisy values are clamped to `0..=MAX_INTENSITY`, the range the planner accepts. All draws come
//! from ChaCha8 seeded with `--seed` on separate streams, so every run is reproducible.

use chrono::{DateTime, TimeDelta, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use crate::planner::{Forecast, ForecastError, Point};
use crate::trace::MAX_INTENSITY;

use super::series::Series;

/// A ChaCha8 generator for `seed` on `stream` (0: the ML job set; 1 + k: constant noise of seed
/// k; see [`lead_time_stream`]).
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The stream of the lead-time draws for noise seed `k` and job `job`.
pub fn lead_time_stream(k: u32, job: usize) -> u64 {
    ((u64::from(k) + 1) << 32) | (job as u64 & 0xffff_ffff)
}

/// How forecast errors behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorModel {
    /// One noisy trace per seed, σ constant (the paper's).
    Constant,
    /// A fresh forecast at every planning call, σ growing with lead time up to 24 h.
    LeadTime,
}

impl ErrorModel {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            ErrorModel::Constant => "constant",
            ErrorModel::LeadTime => "lead-time",
        }
    }
}

fn noisy(value: f64, sigma: f64, rng: &mut ChaCha8Rng) -> f64 {
    let z: f64 = StandardNormal.sample(rng);
    (value + sigma * z).clamp(0.0, MAX_INTENSITY)
}

/// The actual points with Gaussian noise of standard deviation `sigma` (g/kWh) on each.
pub fn constant(
    points: &[Point],
    sigma: f64,
    rng: &mut ChaCha8Rng,
) -> Result<Forecast, ForecastError> {
    let noisy_points = points
        .iter()
        .map(|p| Point {
            start: p.start,
            intensity: noisy(p.intensity, sigma, rng),
        })
        .collect();
    Forecast::new(noisy_points)
}

/// The lead-time σ factor: √min(1, lead / 24 h).
pub fn lead_factor(lead: TimeDelta) -> f64 {
    let hours = lead.num_milliseconds().max(0) as f64 / 3_600_000.0;
    (hours / 24.0).min(1.0).sqrt()
}

/// A fresh forecast of `[now, to)`: the actual segments there (`actual` with step `step`), each
/// with noise of standard deviation `sigma × lead_factor(segment start − now)`.
pub fn lead_time(
    actual: &Series,
    step: TimeDelta,
    now: DateTime<Utc>,
    to: DateTime<Utc>,
    sigma: f64,
    rng: &mut ChaCha8Rng,
) -> Result<Forecast, ForecastError> {
    let (a, b) = (now.timestamp_millis(), to.timestamp_millis());
    let mut end = None;
    let points = actual
        .pieces(a, b)
        .map(|(start, e, value)| {
            end = Some(e);
            let lead = TimeDelta::milliseconds(start - a);
            Point {
                start: super::series::at(start),
                intensity: noisy(value, sigma * lead_factor(lead), rng),
            }
        })
        .collect();
    let forecast = Forecast::with_step(points, step)?;
    // The last value holds one step; cut it back when that reaches past `to` (or the trace).
    Ok(match (forecast.horizon_end(), end) {
        (Some(h), Some(e)) if h.timestamp_millis() != e => forecast.clip(now, super::series::at(e)),
        _ => forecast,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::hourly_points;
    use crate::units::parse_timestamp;

    fn t(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap_or_default()
    }

    fn hourly(n: usize, value: f64) -> Vec<Point> {
        hourly_points(t("2023-01-01T00:00Z"), &vec![value; n])
    }

    #[test]
    fn lead_factor_grows_to_one_at_a_day() {
        assert_eq!(lead_factor(TimeDelta::zero()), 0.0);
        assert_eq!(lead_factor(TimeDelta::hours(6)), 0.5);
        assert_eq!(lead_factor(TimeDelta::hours(24)), 1.0);
        assert_eq!(lead_factor(TimeDelta::hours(72)), 1.0);
        assert_eq!(lead_factor(TimeDelta::hours(-1)), 0.0);
    }

    #[test]
    fn constant_noise_is_seeded_and_keeps_the_timeline() {
        let points = hourly(48, 100.0);
        let a = constant(&points, 5.0, &mut rng(3, 1)).unwrap_or_else(|e| panic!("{e}"));
        let b = constant(&points, 5.0, &mut rng(3, 1)).unwrap_or_else(|e| panic!("{e}"));
        let c = constant(&points, 5.0, &mut rng(3, 2)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 48);
        assert_eq!(a.horizon_end(), Some(t("2023-01-03T00:00Z")));
        let values: Vec<f64> = a.points().iter().map(|p| p.intensity).collect();
        assert!(values.iter().any(|&v| v != 100.0));
        let mean = values.iter().sum::<f64>() / 48.0;
        assert!((mean - 100.0).abs() < 5.0, "{mean}");
        // Clamped at zero.
        let clamped =
            constant(&hourly(48, 0.0), 50.0, &mut rng(0, 1)).unwrap_or_else(|e| panic!("{e}"));
        assert!(clamped.points().iter().all(|p| p.intensity >= 0.0));
    }

    #[test]
    fn lead_time_view_is_exact_now_and_bounded() {
        let actual = Forecast::new(hourly(96, 100.0)).unwrap_or_else(|e| panic!("{e}"));
        let series = Series::from_forecast(&actual);
        let now = t("2023-01-01T10:30Z");
        let to = t("2023-01-02T20:15Z");
        let view = lead_time(&series, actual.median_step(), now, to, 10.0, &mut rng(1, 9))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(view.start(), Some(now));
        assert_eq!(view.horizon_end(), Some(to));
        // The first segment starts at `now`: lead 0, no noise.
        assert_eq!(view.intensity_at(now), Some(100.0));
        assert!(view.points().iter().skip(1).any(|p| p.intensity != 100.0));
        assert_eq!(view.known_duration(), to - now);
        assert_eq!(view.len(), 35, "10:30, 11:00 .. 20:00 the next day");
        // Aligned with the trace: no cut needed; at the trace end: cut to it.
        let aligned = lead_time(
            &series,
            actual.median_step(),
            now,
            t("2023-01-02T20:00Z"),
            10.0,
            &mut rng(1, 9),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(aligned.horizon_end(), Some(t("2023-01-02T20:00Z")));
        let past = lead_time(
            &series,
            actual.median_step(),
            now,
            t("2023-01-09T00:00Z"),
            10.0,
            &mut rng(1, 9),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(past.horizon_end(), Some(t("2023-01-05T00:00Z")));
    }
}
