//! Providers that need no network: inline points (`static`) and replayed CSV traces (`trace`).
//!
//! **Trace replay.** A trace is a recorded year (or month, or week) of intensities. To make it a
//! plausible forecast for `now`, it is shifted by a whole number of *periods*, where the period is
//! the trace's span rounded down to whole weeks (or to whole days for traces shorter than a week),
//! so that the replayed values keep their time of day and, for week-based periods, their weekday
//! (UTC). Only the first period of the trace is used and it wraps around: the point after its last
//! one is its first one again, a period later. [`replay`] emits the points from the start of the
//! slot containing `now` up to `now + 48 h` ([`TRACE_HORIZON`]), in time order. A trace shorter
//! than one day cannot be aligned and is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;

use super::{
    ForecastData, History, KIND_STATIC, KIND_TRACE, Provider, ProviderError, last_step,
    overlapping, validate, validate_allow_empty,
};
use crate::api::forecast::Trace;
use crate::planner::Point;
use crate::trace;

/// How far ahead a replayed trace reaches.
pub const TRACE_HORIZON: TimeDelta = TimeDelta::hours(48);

/// Default ConfigMap key of a trace.
pub const DEFAULT_TRACE_KEY: &str = "trace.csv";

/// Fixed points (the CRD's `static` provider, or `--point` on the command line), validated once
/// and returned as given whatever `now` is: past points stay (the planner ignores them) and the
/// last value holds indefinitely.
#[derive(Debug, Clone)]
pub struct StaticProvider {
    data: ForecastData,
}

impl StaticProvider {
    /// Validates `points` (see [`validate`]); `list` names them in errors, for example
    /// `spec.provider.static.points`.
    pub fn new(points: Vec<Point>, list: &str) -> Result<Self, ProviderError> {
        validate(list, &points).map_err(|e| ProviderError::Config(e.to_string()))?;
        Ok(Self {
            data: ForecastData {
                points,
                actuals: Vec::new(),
                region: "static".into(),
                generated_at: None,
            },
        })
    }
}

impl StaticProvider {
    /// The same points with measured values (`spec.provider.static.actuals`), validated;
    /// `list` names them in errors.
    pub fn with_actuals(mut self, actuals: Vec<Point>, list: &str) -> Result<Self, ProviderError> {
        validate_allow_empty(list, &actuals).map_err(|e| ProviderError::Config(e.to_string()))?;
        self.data.actuals = actuals;
        Ok(self)
    }
}

impl Provider for StaticProvider {
    fn kind(&self) -> &'static str {
        KIND_STATIC
    }

    fn fetch(&self, _now: DateTime<Utc>) -> BoxFuture<'_, Result<ForecastData, ProviderError>> {
        Box::pin(std::future::ready(Ok(self.data.clone())))
    }

    fn history(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<History, ProviderError>> {
        let actuals = &self.data.actuals;
        let result = if actuals.is_empty() {
            Err(ProviderError::Unsupported {
                provider: KIND_STATIC,
                detail: "has no spec.provider.static.actuals: add the measured values to verify savings against".into(),
            })
        } else {
            Ok(History {
                points: overlapping(actuals, last_step(actuals), from, to),
                slot: None,
                source: "static actuals (spec.provider.static.actuals)".into(),
            })
        };
        Box::pin(std::future::ready(result))
    }
}

/// Why a trace has no replay period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// Fewer than two points.
    #[error("a trace needs at least two points to be replayed")]
    TooFewPoints,
    /// It spans less than one day.
    #[error(
        "the trace covers {span}, less than one day, so it cannot be aligned with the time of day"
    )]
    TooShort {
        /// Its span, as a duration.
        span: String,
    },
}

/// The replay period of a trace: its span (first start to last start plus the last step) rounded
/// down to whole weeks, or to whole days when shorter than a week. `Err` says why there is none.
pub fn trace_period(points: &[Point]) -> Result<TimeDelta, PeriodError> {
    let [.., before_last, last] = points else {
        return Err(PeriodError::TooFewPoints);
    };
    let step = last.start - before_last.start;
    let span = (last.start - points[0].start) + step;
    let week = TimeDelta::weeks(1).num_seconds();
    let day = TimeDelta::days(1).num_seconds();
    let seconds = span.num_seconds();
    let period = if seconds >= week {
        seconds / week * week
    } else if seconds >= day {
        seconds / day * day
    } else {
        return Err(PeriodError::TooShort {
            span: crate::units::format_duration(span),
        });
    };
    Ok(TimeDelta::seconds(period))
}

/// Replays `window` (the points of one period, starting at `window[0].start`, sorted) around
/// `now`: the points from the slot containing `now` to `now + horizon`, shifted by whole periods.
/// Empty only when `window` is empty, `period` is not positive, or the dates overflow.
pub fn replay(
    window: &[Point],
    period: TimeDelta,
    now: DateTime<Utc>,
    horizon: TimeDelta,
) -> Vec<Point> {
    replay_checked(window, period, now, horizon).unwrap_or_default()
}

fn replay_checked(
    window: &[Point],
    period: TimeDelta,
    now: DateTime<Utc>,
    horizon: TimeDelta,
) -> Option<Vec<Point>> {
    let t0 = window.first()?.start;
    let seconds = period.num_seconds();
    if seconds <= 0 {
        return None;
    }
    // shift = whole periods from the trace to now, so that now - shift falls in [t0, t0 + period).
    let periods = (now - t0).num_seconds().div_euclid(seconds);
    let mut shift = TimeDelta::try_seconds(seconds.checked_mul(periods)?)?;
    let mut tau = now.checked_sub_signed(shift)?;
    // num_seconds truncates sub-second parts towards zero; correct by one period if needed.
    if tau < t0 {
        shift = shift.checked_sub(&period)?;
        tau = now.checked_sub_signed(shift)?;
    }
    if tau >= t0.checked_add_signed(period)? {
        shift = shift.checked_add(&period)?;
        tau = now.checked_sub_signed(shift)?;
    }
    let end = now.checked_add_signed(horizon)?;
    let mut i = window.partition_point(|p| p.start <= tau).checked_sub(1)?;
    let mut out = Vec::new();
    loop {
        let start = window[i].start.checked_add_signed(shift)?;
        if start >= end && !out.is_empty() {
            break;
        }
        out.push(Point {
            start,
            intensity: window[i].intensity,
        });
        i += 1;
        if i == window.len() {
            i = 0;
            shift = shift.checked_add(&period)?;
        }
    }
    Some(out)
}

/// A CSV trace replayed around `now` (see the module documentation).
#[derive(Debug, Clone)]
pub struct TraceProvider {
    label: String,
    window: Arc<[Point]>,
    period: TimeDelta,
}

/// The built-in traces parsed so far (window and period), by name.
type BuiltinCache = Mutex<HashMap<&'static str, TraceProvider>>;

fn builtin_cache() -> &'static BuiltinCache {
    static CACHE: OnceLock<BuiltinCache> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

impl TraceProvider {
    /// From the CRD's `trace`: `builtin`, or `configMapRef` whose content the controller read
    /// and passes as `csv`. Exactly one must be set.
    pub fn from_spec(spec: &Trace, csv: Option<String>) -> Result<Self, ProviderError> {
        let column = spec.column.as_deref();
        match (&spec.builtin, &spec.config_map_ref) {
            (Some(_), Some(_)) => Err(ProviderError::Config(
                "trace: set exactly one of builtin and configMapRef, not both".into(),
            )),
            (None, None) => Err(ProviderError::Config(format!(
                "trace: set builtin (one of {}) or configMapRef",
                trace::builtin_names()
            ))),
            (Some(name), None) => Self::builtin(name, column),
            (None, Some(reference)) => {
                let key = reference.key.as_deref().unwrap_or(DEFAULT_TRACE_KEY);
                let label = format!("ConfigMap {}/{key}", reference.name);
                let csv = csv.ok_or_else(|| {
                    ProviderError::Config(format!("trace: no CSV was read from {label}"))
                })?;
                Self::from_csv(&csv, column, label)
            }
        }
    }

    /// A trace compiled into the binary ([`crate::trace::BUILTINS`]); parsed once per process.
    pub fn builtin(name: &str, column: Option<&str>) -> Result<Self, ProviderError> {
        let builtin = trace::builtin(name.trim()).ok_or_else(|| {
            ProviderError::Config(format!(
                "unknown built-in trace {name:?}; available: {}",
                trace::builtin_names()
            ))
        })?;
        let label = format!("{} (built-in trace)", builtin.name);
        if column.is_some() {
            return Self::from_csv(builtin.csv, column, label);
        }
        let cached = builtin_cache()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(builtin.name)
            .cloned();
        if let Some(provider) = cached {
            return Ok(provider);
        }
        let provider = Self::from_csv(builtin.csv, None, label)?;
        builtin_cache()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(builtin.name, provider.clone());
        Ok(provider)
    }

    /// A trace from CSV text in the [`crate::trace`] format; `label` names it in the region column
    /// and in errors.
    pub fn from_csv(
        csv: &str,
        column: Option<&str>,
        label: impl Into<String>,
    ) -> Result<Self, ProviderError> {
        let label = label.into();
        let points = trace::parse(csv, column).map_err(|e| config(&label, &e))?;
        let period = trace_period(&points).map_err(|e| config(&label, &e.to_string()))?;
        let t0 = points[0].start;
        let window: Arc<[Point]> = points
            .iter()
            .copied()
            .take_while(|p| p.start - t0 < period)
            .collect();
        Ok(Self {
            label,
            window,
            period,
        })
    }

    /// The replay period (see [`trace_period`]).
    pub fn period(&self) -> TimeDelta {
        self.period
    }
}

fn config(label: &str, e: &dyn std::fmt::Display) -> ProviderError {
    ProviderError::Config(format!("trace {label}: {e}"))
}

impl Provider for TraceProvider {
    fn kind(&self) -> &'static str {
        KIND_TRACE
    }

    fn fetch(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<ForecastData, ProviderError>> {
        let points = replay(&self.window, self.period, now, TRACE_HORIZON);
        let result = if points.is_empty() {
            Err(ProviderError::InvalidData {
                provider: "trace",
                detail: format!("{} cannot be replayed at {now}", self.label),
            })
        } else {
            Ok(ForecastData {
                points,
                actuals: Vec::new(),
                region: self.label.clone(),
                generated_at: None,
            })
        };
        Box::pin(std::future::ready(result))
    }

    /// A replayed trace is its own measurement: the same replay, over `[from, to)`.
    fn history(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<History, ProviderError>> {
        let points = if to > from {
            replay(&self.window, self.period, from, to - from)
        } else {
            Vec::new()
        };
        let last = last_step(&points);
        Box::pin(std::future::ready(Ok(History {
            points: overlapping(&points, last, from, to),
            slot: None,
            source: format!("{} replayed", self.label),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::hourly_points;
    use chrono::{Datelike, Timelike};
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(s).unwrap_or_default()
    }

    fn hourly(start: &str, values: &[f64]) -> Vec<Point> {
        hourly_points(t(start), values)
    }

    #[test]
    fn periods_are_whole_weeks_or_days() {
        let day = |n: i64| TimeDelta::days(n);
        // 24 hourly points span exactly one day.
        let one_day = hourly("2023-01-02T00:00Z", &[1.0; 24]);
        assert_eq!(trace_period(&one_day), Ok(day(1)));
        // 60 hourly points: 2.5 days → 2 days.
        assert_eq!(
            trace_period(&hourly("2023-01-02T00:00Z", &[1.0; 60])),
            Ok(day(2))
        );
        // 9 days → 1 week.
        assert_eq!(
            trace_period(&hourly("2023-01-02T00:00Z", &[1.0; 216])),
            Ok(day(7))
        );
        assert!(
            trace_period(&hourly("2023-01-02T00:00Z", &[1.0; 23]))
                .is_err_and(|e| e.to_string().contains("covers 23h, less than one day"))
        );
        assert!(trace_period(&hourly("2023-01-02T00:00Z", &[1.0])).is_err());
    }

    #[test]
    fn replay_keeps_time_of_day_and_wraps() {
        // One day, hourly, value = hour of day.
        let values: Vec<f64> = (0..24).map(f64::from).collect();
        let window = hourly("2023-01-02T00:00Z", &values);
        let period = TimeDelta::days(1);
        let out = replay(&window, period, t("2026-11-28T22:30Z"), TimeDelta::hours(3));
        let got: Vec<(DateTime<Utc>, f64)> = out.iter().map(|p| (p.start, p.intensity)).collect();
        assert_eq!(
            got,
            [
                (t("2026-11-28T22:00Z"), 22.0),
                (t("2026-11-28T23:00Z"), 23.0),
                (t("2026-11-29T00:00Z"), 0.0),
                (t("2026-11-29T01:00Z"), 1.0),
            ]
        );
        // Before the trace's own dates too.
        let out = replay(&window, period, t("2001-05-05T05:00Z"), TimeDelta::hours(1));
        assert_eq!(out.iter().map(|p| p.intensity).collect::<Vec<_>>(), [5.0]);
        assert_eq!(out[0].start, t("2001-05-05T05:00Z"));
    }

    #[test]
    fn weekly_periods_keep_the_weekday() {
        // Two weeks of daily points starting Monday 2023-01-02; value = day index.
        let values: Vec<f64> = (0..14).map(f64::from).collect();
        let window: Vec<Point> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| Point {
                start: t("2023-01-02T00:00Z") + TimeDelta::days(i as i64),
                intensity: v,
            })
            .collect();
        let period = trace_period(&window).unwrap_or_default();
        assert_eq!(period, TimeDelta::weeks(2));
        // 2026-12-02 is a Wednesday.
        let now = t("2026-12-02T10:00Z");
        let out = replay(&window, period, now, TimeDelta::hours(48));
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].start, t("2026-12-02T00:00Z"));
        assert_eq!(out[0].start.weekday(), chrono::Weekday::Wed);
        // Wednesday in the trace is day 2 or day 9.
        assert!(
            out[0].intensity == 2.0 || out[0].intensity == 9.0,
            "{out:?}"
        );
    }

    #[test]
    fn builtin_traces_replay_48_hours() {
        let now = t("2026-11-28T15:47Z");
        for b in trace::BUILTINS {
            let provider = TraceProvider::builtin(b.name, None).unwrap_or_else(|e| panic!("{e}"));
            let points = replay(&provider.window, provider.period, now, TRACE_HORIZON);
            assert!(
                points[0].start <= now && points[1].start > now,
                "{}",
                b.name
            );
            assert!(points.last().is_some_and(|p| p.start < now + TRACE_HORIZON));
            assert_eq!(validate("replay", &points), Ok(()));
            // Twice: the second comes from the cache.
            let again = TraceProvider::builtin(b.name, None).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again.window, provider.window);
            assert_eq!(
                (&again.label, again.period),
                (&provider.label, provider.period)
            );
        }
        let gb = TraceProvider::builtin("gb-2020", None).unwrap_or_else(|e| panic!("{e}"));
        // 2019-12-20..2021-01-09 is 386 days: 55 weeks.
        assert_eq!(gb.period(), TimeDelta::weeks(55));
        let caiso =
            TraceProvider::builtin("caiso-north-2023-06", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(caiso.period(), TimeDelta::weeks(4));
    }

    #[test]
    fn spec_errors() {
        let spec = |builtin: Option<&str>, cm: bool| Trace {
            config_map_ref: cm.then(|| crate::api::forecast::ConfigMapKeyRef {
                name: "traces".into(),
                key: None,
            }),
            builtin: builtin.map(String::from),
            column: None,
        };
        let err =
            |r: Result<TraceProvider, ProviderError>| r.map(|_| ()).map_err(|e| e.to_string());
        assert!(
            err(TraceProvider::from_spec(&spec(Some("gb-2020"), true), None))
                .is_err_and(|m| m.contains("not both"))
        );
        assert!(
            err(TraceProvider::from_spec(&spec(None, false), None))
                .is_err_and(|m| m.contains("gb-2020, de-2020"))
        );
        assert_eq!(
            err(TraceProvider::from_spec(&spec(Some("mars"), false), None)),
            Err("unknown built-in trace \"mars\"; available: gb-2020, de-2020, fr-2020, caiso-north-2023-06".into())
        );
        assert_eq!(
            err(TraceProvider::from_spec(&spec(None, true), None)),
            Err("trace: no CSV was read from ConfigMap traces/trace.csv".into())
        );
        assert_eq!(
            err(TraceProvider::from_spec(
                &spec(None, true),
                Some("time,ci\n2023-01-01 00:00,x\n".into())
            )),
            Err("trace ConfigMap traces/trace.csv: line 2: intensity \"x\" is not a number".into())
        );
        let csv = "time,ci\n2023-01-01 00:00,1\n2023-01-01 06:00,2\n2023-01-01 12:00,2\n";
        assert_eq!(
            err(TraceProvider::from_spec(&spec(None, true), Some(csv.into()))),
            Err("trace ConfigMap traces/trace.csv: the trace covers 18h, less than one day, so it cannot be aligned with the time of day".into())
        );
    }

    #[test]
    fn static_points_are_validated() {
        let points = hourly("2026-01-01T00:00Z", &[100.0, 90.0]);
        assert!(StaticProvider::new(points.clone(), "points").is_ok());
        let mut bad = points;
        bad[1].intensity = 6000.0;
        assert_eq!(
            StaticProvider::new(bad, "spec.provider.static.points").map(|_| ()).map_err(|e| e.to_string()),
            Err("spec.provider.static.points[1] at 2026-01-01T01:00:00Z: intensity 6000 is outside 0..=5000 gCO2eq/kWh".into())
        );
    }

    /// The brute-force statement of replay: the value at output time `s` is the trace value at
    /// `t0 + (s - t0) mod period`.
    fn oracle(window: &[Point], period: TimeDelta, s: DateTime<Utc>) -> Option<f64> {
        let t0 = window[0].start;
        let offset = (s - t0).num_seconds().rem_euclid(period.num_seconds());
        let mapped = t0 + TimeDelta::seconds(offset);
        window
            .iter()
            .find(|p| p.start == mapped)
            .map(|p| p.intensity)
    }

    proptest! {
        #[test]
        fn replay_matches_the_oracle(
            steps in proptest::collection::vec(1i64..180, 2..80),
            values in proptest::collection::vec(0.0f64..5000.0, 80),
            start_minute in 0i64..100_000,
            now_minute in -2_000_000i64..2_000_000,
            horizon_hours in 1i64..72,
        ) {
            let mut start = t("2023-01-02T00:00Z") + TimeDelta::minutes(start_minute);
            let mut points = Vec::new();
            for (step, value) in steps.iter().zip(&values) {
                points.push(Point { start, intensity: *value });
                start += TimeDelta::minutes(*step);
            }
            let Ok(period) = trace_period(&points) else { return Ok(()) };
            let t0 = points[0].start;
            let window: Vec<Point> = points.iter().copied().take_while(|p| p.start - t0 < period).collect();
            let now = t("2026-01-01T00:00Z") + TimeDelta::minutes(now_minute) + TimeDelta::seconds(17);
            let horizon = TimeDelta::hours(horizon_hours);
            let out = replay(&window, period, now, horizon);
            prop_assert!(!out.is_empty());
            prop_assert!(out[0].start <= now);
            prop_assert!(out.len() < 2 || out[1].start > now);
            prop_assert!(out.iter().skip(1).all(|p| p.start < now + horizon));
            prop_assert!(out.last().is_some_and(|p| p.start < now + horizon));
            prop_assert_eq!(validate("replay", &out), Ok(()));
            for p in &out {
                prop_assert_eq!(Some(p.intensity), oracle(&window, period, p.start));
                prop_assert_eq!(p.start.time().num_seconds_from_midnight() % 60, t0.time().num_seconds_from_midnight() % 60);
            }
        }
    }
}
