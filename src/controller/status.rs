//! The CarbonForecast controller's pure core: given the object, its previous status, what the
//! shell observed (nothing due, a forecast, a provider error or an unusable spec) and `now`,
//! compute the new status, the Events to emit, the in-memory retry state and when to look again.
//!
//! No client, no I/O, no clock: [`refresh_due`] and [`decide`] are functions of their arguments.
//!
//! # Rules
//!
//! - **When to refresh** ([`refresh_due`]): no status yet, the spec changed
//!   (`metadata.generation != status.observedGeneration`), the retry time of an earlier failure
//!   has come, the status records an error and this process has no retry state (a restart retries
//!   at once), or `now >= lastRefreshTime + refreshInterval` (default 30m).
//! - **Bounds** ([`bound`]): the forecast is cut to the points whose slot ends after `now` minus
//!   one step (so the slot covering now and the one before it stay), starting less than 7 days
//!   after `now`, and at most [`MAX_POINTS`]; actuals to the last 7 days and [`MAX_POINTS`].
//!   The step is the provider's resolution, read from the last interval of the answer (one hour
//!   for a single point); the last point holds for one step, which gives `horizonEnd`.
//! - **Never invented**: `currentIntensity` is the point covering `now` or absent;
//!   `lowestIntensity`/`lowestAt` come from the points ahead; a failed refresh changes nothing but
//!   `lastError` and the `Ready` condition.
//! - **Ready**: `True/Refreshed` while the data is younger than `staleAfter` (default 3h), even
//!   when the latest refresh failed; `False/Stale` after that; `False/RefreshFailed` when no
//!   refresh ever succeeded; `False/InvalidSpec` or `False/MissingCredentials` when no provider
//!   can be built from the spec (the previous points stay in the status but the store treats them
//!   as unusable, since they may belong to an earlier spec).
//! - **Events**: `Refreshed` when a refresh changed the points, `Recovered` instead on the first
//!   success after a failure, `RefreshFailed` (Warning) on every failed attempt, `Stale`
//!   (Warning) once on the transition, `InvalidSpec`/`MissingCredentials` (Warning) when that
//!   problem appears or its message changes.
//! - **Retries**: after a failed fetch, `min(refreshInterval, 1m × 2^(failures−1))`, or the
//!   provider's `Retry-After` when longer; after an unusable spec, `min(refreshInterval, 5m)`
//!   (Secrets and ConfigMaps are read by name, not watched, so a fixed Secret is picked up on the
//!   next recheck; a spec change retries at once). Retry state lives in memory only.
//! - **Requeue** at the earliest of the next refresh (or retry) and the moment the data turns
//!   stale, so that `Stale` is punctual without polling.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Note, NoteKind};
use crate::api::condition::{self, Condition};
use crate::api::forecast::{IntensityPoint, MAX_POINTS};
use crate::api::{CarbonForecastSpec, CarbonForecastStatus};
use crate::forecast::{ForecastData, ProviderError, stamp};
use crate::planner::{Forecast, Point};
use crate::units::{format_duration, parse_duration};

/// Refresh interval when `spec.refreshInterval` is unset.
pub const DEFAULT_REFRESH_INTERVAL: TimeDelta = TimeDelta::minutes(30);
/// Staleness limit when `spec.staleAfter` is unset.
pub const DEFAULT_STALE_AFTER: TimeDelta = TimeDelta::hours(3);
/// How far ahead of `now` the stored points may start.
pub const MAX_AHEAD: TimeDelta = TimeDelta::days(7);
/// How far back measured actuals are kept.
pub const MAX_ACTUALS_AGE: TimeDelta = TimeDelta::days(7);
/// How long the value of a single-point forecast holds (the planner's rule).
pub use crate::planner::SINGLE_POINT_STEP;
/// First retry delay after a failed fetch; doubles with each further failure.
pub const RETRY_BASE: TimeDelta = TimeDelta::minutes(1);
/// Longest wait before checking an unusable spec (its Secret or ConfigMap) again.
pub const RECHECK_UNUSABLE: TimeDelta = TimeDelta::minutes(5);

/// Condition type written by the controller.
pub const READY: &str = "Ready";

/// PascalCase reasons of the `Ready` condition and of Events.
pub mod reason {
    /// The last refresh succeeded (condition), or a refresh changed the points (Event).
    pub const REFRESHED: &str = "Refreshed";
    /// A refresh failed (Event); no refresh ever succeeded (condition, status `False`).
    pub const REFRESH_FAILED: &str = "RefreshFailed";
    /// The data is older than `staleAfter`.
    pub const STALE: &str = "Stale";
    /// The first successful refresh after a failure (Event only).
    pub const RECOVERED: &str = "Recovered";
    /// No provider can be built from the spec (bad inline points, unknown trace, bad URL,
    /// missing ConfigMap...).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The credentials Secret is missing or lacks a key the provider needs.
    pub const MISSING_CREDENTIALS: &str = "MissingCredentials";
}

/// The durations of a spec, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often to refresh.
    pub refresh_interval: TimeDelta,
    /// After how long without a successful refresh the data is stale.
    pub stale_after: TimeDelta,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            stale_after: DEFAULT_STALE_AFTER,
        }
    }
}

/// Reads `spec.refreshInterval` and `spec.staleAfter` (defaults 30m and 3h); `Err` names the
/// field and the accepted form.
pub fn timing(spec: &CarbonForecastSpec) -> Result<Timing, String> {
    let read = |field: &str, text: &Option<String>, default: TimeDelta| {
        match text {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|e| {
            format!(
                "spec.{field} {text:?}: {e}; expected a duration such as 30m, 2h or 1d (units s, m, h, d)"
            )
        }),
    }
    };
    Ok(Timing {
        refresh_interval: read(
            "refreshInterval",
            &spec.refresh_interval,
            DEFAULT_REFRESH_INTERVAL,
        )?,
        stale_after: read("staleAfter", &spec.stale_after, DEFAULT_STALE_AFTER)?,
    })
}

/// In-memory retry state of one CarbonForecast after a failed refresh. Lost on restart, on
/// purpose: a new process retries at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The `metadata.generation` it applies to; a spec change discards it.
    pub generation: Option<i64>,
    /// Consecutive failed fetches (0 after an unusable spec, which does not back off).
    pub failures: u32,
    /// No refresh before this instant.
    pub not_before: DateTime<Utc>,
}

/// Why no provider could be built from the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecProblem {
    /// The spec, its trace ConfigMap or its inline data is unusable.
    InvalidSpec,
    /// The credentials Secret is missing or lacks a key.
    MissingCredentials,
}

impl SpecProblem {
    /// The PascalCase reason of the condition and the Event.
    pub fn reason(self) -> &'static str {
        match self {
            Self::InvalidSpec => reason::INVALID_SPEC,
            Self::MissingCredentials => reason::MISSING_CREDENTIALS,
        }
    }
}

/// A provider answer cut to the stored bounds (see [`bound`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded {
    /// Forecast points, in time order, never empty.
    pub points: Vec<IntensityPoint>,
    /// Measured values of the last 7 days, in time order.
    pub actuals: Vec<IntensityPoint>,
    /// End of the last point.
    pub horizon_end: DateTime<Utc>,
    /// The region as the provider names it.
    pub region: String,
}

/// What the shell observed in this reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// No refresh was due; only time passed.
    NotDue,
    /// The provider answered; the answer is already bounded.
    Fetched {
        /// Provider kind, for example `ukCarbonIntensity`.
        kind: &'static str,
        /// The bounded forecast.
        forecast: Bounded,
    },
    /// The provider failed (its message is redacted: no credentials).
    Failed {
        /// Provider kind.
        kind: &'static str,
        /// What went wrong.
        error: ProviderError,
    },
    /// No provider could be built.
    Unusable {
        /// Provider kind of the spec.
        kind: &'static str,
        /// Which kind of problem.
        problem: SpecProblem,
        /// What to fix (never a credential).
        message: String,
    },
}

/// The inputs every decision reads.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The object's spec.
    pub spec: &'a CarbonForecastSpec,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The current status, if any.
    pub status: Option<&'a CarbonForecastStatus>,
    /// This process's retry state for the object.
    pub backoff: Option<&'a Backoff>,
    /// The current time.
    pub now: DateTime<Utc>,
}

/// The Event `action` of a refresh attempt.
pub const ACTION_REFRESH: &str = "Refresh";
/// The Event `action` of a staleness or spec check.
pub const ACTION_CHECK: &str = "Check";

fn normal(reason: &'static str, message: String) -> Note {
    Note {
        kind: NoteKind::Normal,
        reason,
        action: ACTION_REFRESH,
        message,
    }
}

fn warning(reason: &'static str, action: &'static str, message: String) -> Note {
    Note {
        kind: NoteKind::Warning,
        reason,
        action,
        message,
    }
}

/// The outcome of one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The status the object should have; written only when it differs from the current one.
    pub status: CarbonForecastStatus,
    /// Events to emit, in order.
    pub notes: Vec<Note>,
    /// The retry state to keep (`None` clears it).
    pub backoff: Option<Backoff>,
    /// When to reconcile again at the latest.
    pub requeue_at: DateTime<Utc>,
}

/// The `Ready` condition of a status, if any.
pub fn ready_condition(status: &CarbonForecastStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.r#type == READY)
}

fn has_reason(condition: Option<&Condition>, ok: bool, reason: &str) -> bool {
    condition.is_some_and(|c| c.is_true() == ok && c.reason == reason)
}

/// Whether this reconcile should fetch (see the module documentation). An unreadable duration
/// counts as due, so that the attempt reports the spec problem.
pub fn refresh_due(input: &Input<'_>) -> bool {
    let Some(status) = input.status else {
        return true;
    };
    if status.observed_generation != input.generation {
        return true;
    }
    if let Some(backoff) = input.backoff
        && backoff.generation == input.generation
    {
        return input.now >= backoff.not_before;
    }
    if status.last_error.is_some() {
        return true;
    }
    let Ok(timing) = timing(input.spec) else {
        return true;
    };
    match status.last_refresh_time {
        None => true,
        // A refresh time in the future means the clock went back: refresh rather than wait.
        Some(last) => input.now >= last + timing.refresh_interval || input.now < last,
    }
}

/// Cuts a validated provider answer to the stored bounds (see the module documentation). `Err`
/// says why nothing usable is left: the forecast ends before `now`, or starts more than 7 days
/// after it.
pub fn bound(data: ForecastData, now: DateTime<Utc>) -> Result<Bounded, String> {
    let starts: Vec<DateTime<Utc>> = data.points.iter().map(|p| p.start).collect();
    let Some(&first_start) = starts.first() else {
        return Err("the provider returned no points".into());
    };
    // The planner's semantics, so that the status, the store and every plan agree: each value
    // holds until the next point, the last for one median step, and longer steps are gaps.
    let full = Forecast::new(data.points.clone()).map_err(|e| e.to_string())?;
    let step = full.median_step();
    let Some(horizon) = full.horizon_end() else {
        return Err("the provider returned no points".into());
    };
    if horizon <= now {
        return Err(format!(
            "the forecast ends at {}, before now ({}); nothing is left to plan with",
            stamp(horizon),
            stamp(now)
        ));
    }
    let limit = now + MAX_AHEAD;
    if first_start >= limit {
        return Err(format!(
            "the forecast starts at {}, more than {} after now ({})",
            stamp(first_start),
            format_duration(MAX_AHEAD),
            stamp(now)
        ));
    }
    let end_of = |i: usize| starts.get(i + 1).copied().unwrap_or(horizon);
    let keep_after = now - step;
    // Slot ends increase with the index, so the kept slots are a contiguous range.
    let first = (0..starts.len())
        .find(|&i| end_of(i) > keep_after)
        .unwrap_or(starts.len());
    let end = starts
        .partition_point(|s| *s < limit)
        .min(first + MAX_POINTS);
    let kept = Forecast::new(data.points[first..end].to_vec()).map_err(|e| e.to_string())?;
    let horizon_end = kept.horizon_end().unwrap_or(horizon);
    let points: Vec<IntensityPoint> = data.points[first..end]
        .iter()
        .copied()
        .map(IntensityPoint::from)
        .collect();
    let oldest = now - MAX_ACTUALS_AGE;
    let mut actuals: Vec<IntensityPoint> = data
        .actuals
        .iter()
        .filter(|p| p.start >= oldest)
        .copied()
        .map(IntensityPoint::from)
        .collect();
    if actuals.len() > MAX_POINTS {
        actuals.drain(..actuals.len() - MAX_POINTS);
    }
    Ok(Bounded {
        points,
        actuals,
        horizon_end,
        region: data.region,
    })
}

/// Builds the planner's view of stored points (validated when they were stored).
pub fn forecast_of(points: &[IntensityPoint]) -> Option<Forecast> {
    Forecast::new(points.iter().copied().map(Point::from).collect()).ok()
}

/// Where the data stands in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Age {
    /// No successful refresh recorded.
    NoData,
    /// Younger than `staleAfter`; stale at the given instant.
    Fresh { stale_at: DateTime<Utc> },
    /// Older than `staleAfter`.
    Stale { since: DateTime<Utc> },
}

fn age(status: &CarbonForecastStatus, stale_after: TimeDelta, now: DateTime<Utc>) -> Age {
    match status.last_refresh_time {
        None => Age::NoData,
        Some(last) if now < last + stale_after => Age::Fresh {
            stale_at: last + stale_after,
        },
        Some(last) => Age::Stale { since: last },
    }
}

fn stale_condition(
    last: DateTime<Utc>,
    stale_after: TimeDelta,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    Condition::new(
        READY,
        false,
        reason::STALE,
        format!(
            "no successful refresh since {}, longer than staleAfter ({}); the data is not used for new plans",
            stamp(last),
            format_duration(stale_after)
        ),
        generation,
        now,
    )
}

/// Computes the new status, Events, retry state and requeue time (see the module documentation).
pub fn decide(input: &Input<'_>, observation: Observation) -> Decision {
    let now = input.now;
    let generation = input.generation;
    let timing = timing(input.spec).unwrap_or_default();
    let previous = input.status.cloned().unwrap_or_default();
    let previous_ready = ready_condition(&previous).cloned();
    let backoff = input
        .backoff
        .filter(|b| b.generation == generation)
        .copied();
    let mut status = previous.clone();
    let mut notes = Vec::new();
    let next_attempt;
    let new_backoff;
    match observation {
        Observation::NotDue => {
            // Only a Ready forecast turns stale: InvalidSpec and the like stay as they are.
            if previous_ready.as_ref().is_some_and(Condition::is_true)
                && let Age::Stale { since } = age(&previous, timing.stale_after, now)
            {
                condition::upsert(
                    &mut status.conditions,
                    stale_condition(since, timing.stale_after, generation, now),
                );
            }
            new_backoff = backoff;
            // refresh_due said no, so one of these holds; the fallback only bounds the wait.
            next_attempt = match (backoff, previous.last_refresh_time) {
                (Some(b), _) => b.not_before,
                (None, Some(last)) => last + timing.refresh_interval,
                (None, None) => now + RETRY_BASE,
            };
        }
        Observation::Fetched { kind, forecast } => {
            let changed = previous.points != forecast.points
                || previous.horizon_end != Some(forecast.horizon_end);
            let recovering = previous.last_error.is_some()
                || previous_ready.as_ref().is_some_and(|c| !c.is_true());
            let view = forecast_of(&forecast.points);
            let lowest = view
                .as_ref()
                .and_then(|f| f.lowest_between(now, forecast.horizon_end));
            let summary = format!(
                "{} points from {kind} ({}) up to {}",
                forecast.points.len(),
                forecast.region,
                stamp(forecast.horizon_end)
            );
            status.current_intensity = view.as_ref().and_then(|f| f.intensity_at(now));
            status.lowest_intensity = lowest.map(|p| p.intensity);
            status.lowest_at = lowest.map(|p| p.start);
            status.horizon_end = Some(forecast.horizon_end);
            status.points = forecast.points;
            status.actuals = forecast.actuals;
            status.provider = Some(kind.to_string());
            status.region = Some(forecast.region);
            status.last_refresh_time = Some(now);
            status.last_error = None;
            status.observed_generation = generation;
            condition::upsert(
                &mut status.conditions,
                Condition::new(
                    READY,
                    true,
                    reason::REFRESHED,
                    summary.clone(),
                    generation,
                    now,
                ),
            );
            if recovering {
                notes.push(normal(
                    reason::RECOVERED,
                    format!("refreshed after a failure: {summary}"),
                ));
            } else if changed {
                notes.push(normal(reason::REFRESHED, summary));
            }
            new_backoff = None;
            next_attempt = now + timing.refresh_interval;
        }
        Observation::Failed { kind, error } => {
            let failures = backoff.map_or(0, |b| b.failures).saturating_add(1);
            let exponential =
                crate::retry::doubling_delta(RETRY_BASE, timing.refresh_interval, failures);
            let hinted = error
                .retry_after()
                .and_then(|d| TimeDelta::from_std(d).ok())
                .unwrap_or(TimeDelta::zero());
            let delay = exponential.max(hinted);
            let message = error.to_string();
            notes.push(warning(
                reason::REFRESH_FAILED,
                ACTION_REFRESH,
                format!(
                    "{} ({}); next attempt in {}",
                    message,
                    error.category(),
                    format_duration(delay)
                ),
            ));
            if status.provider.is_none() {
                status.provider = Some(kind.to_string());
            }
            status.last_error = Some(message);
            status.observed_generation = generation;
            let ready = match age(&previous, timing.stale_after, now) {
                Age::NoData => Condition::new(
                    READY,
                    false,
                    reason::REFRESH_FAILED,
                    "no forecast yet: the refresh failed (see lastError)",
                    generation,
                    now,
                ),
                Age::Fresh { .. } => Condition::new(
                    READY,
                    true,
                    reason::REFRESHED,
                    format!(
                        "serving the forecast refreshed at {}; the latest refresh failed (see lastError)",
                        previous.last_refresh_time.map(stamp).unwrap_or_default()
                    ),
                    generation,
                    now,
                ),
                Age::Stale { since } => stale_condition(since, timing.stale_after, generation, now),
            };
            condition::upsert(&mut status.conditions, ready);
            new_backoff = Some(Backoff {
                generation,
                failures,
                not_before: now + delay,
            });
            next_attempt = now + delay;
        }
        Observation::Unusable {
            kind,
            problem,
            message,
        } => {
            let reason = problem.reason();
            let news = !has_reason(previous_ready.as_ref(), false, reason)
                || previous.last_error.as_deref() != Some(message.as_str());
            if news {
                notes.push(warning(reason, ACTION_CHECK, message.clone()));
            }
            if status.provider.is_none() {
                status.provider = Some(kind.to_string());
            }
            status.last_error = Some(message.clone());
            status.observed_generation = generation;
            condition::upsert(
                &mut status.conditions,
                Condition::new(READY, false, reason, message, generation, now),
            );
            let wait = timing.refresh_interval.min(RECHECK_UNUSABLE);
            new_backoff = Some(Backoff {
                generation,
                failures: 0,
                not_before: now + wait,
            });
            next_attempt = now + wait;
        }
    }
    let new_ready = ready_condition(&status).cloned();
    if has_reason(new_ready.as_ref(), false, reason::STALE)
        && !has_reason(previous_ready.as_ref(), false, reason::STALE)
    {
        let since = status.last_refresh_time.map(stamp).unwrap_or_default();
        notes.push(warning(
            reason::STALE,
            ACTION_CHECK,
            format!(
                "no successful refresh since {since}, longer than staleAfter ({}); Jobs without a plan are handled by the no-forecast policy",
                format_duration(timing.stale_after)
            ),
        ));
    }
    let stale_at = match age(&status, timing.stale_after, now) {
        Age::Fresh { stale_at } if new_ready.as_ref().is_some_and(Condition::is_true) => {
            Some(stale_at)
        }
        _ => None,
    };
    let requeue_at = stale_at.map_or(next_attempt, |s| s.min(next_attempt));
    Decision {
        status,
        notes,
        backoff: new_backoff,
        requeue_at,
    }
}

/// `requeue_at − now` as a positive std duration (at least one second, so that a decision for
/// "now" does not spin).
pub fn requeue_after(requeue_at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (requeue_at - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{points, t};
    use crate::planner::Point;

    const NOW: &str = "2026-11-28T15:47:00Z";

    fn spec() -> CarbonForecastSpec {
        crate::api::CarbonForecast::test("uk").spec
    }

    fn data(start: DateTime<Utc>, step: TimeDelta, values: &[f64]) -> ForecastData {
        ForecastData {
            points: points(start, step, values)
                .into_iter()
                .map(|p| Point {
                    start: p.start,
                    intensity: p.intensity,
                })
                .collect(),
            actuals: Vec::new(),
            region: "national".into(),
            generated_at: None,
        }
    }

    fn hourly(values: &[f64]) -> Bounded {
        bound(
            data(t("2026-11-28T15:00Z"), TimeDelta::hours(1), values),
            t(NOW),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn input<'a>(
        spec: &'a CarbonForecastSpec,
        status: Option<&'a CarbonForecastStatus>,
        backoff: Option<&'a Backoff>,
        now: DateTime<Utc>,
    ) -> Input<'a> {
        Input {
            spec,
            generation: Some(1),
            status,
            backoff,
            now,
        }
    }

    fn fetched(forecast: Bounded) -> Observation {
        Observation::Fetched {
            kind: "ukCarbonIntensity",
            forecast,
        }
    }

    fn server_error(retry_after: Option<Duration>) -> Observation {
        Observation::Failed {
            kind: "ukCarbonIntensity",
            error: ProviderError::ServerError {
                provider: "UK Carbon Intensity API",
                status: 502,
                attempts: 4,
                retry_after,
                url: "https://api.carbonintensity.org.uk/".into(),
            },
        }
    }

    fn ready(status: &CarbonForecastStatus) -> (bool, String, DateTime<Utc>) {
        let c = ready_condition(status).unwrap_or_else(|| panic!("no Ready in {status:?}"));
        (c.is_true(), c.reason.clone(), c.last_transition_time)
    }

    fn reasons(decision: &Decision) -> Vec<&'static str> {
        decision.notes.iter().map(|n| n.reason).collect()
    }

    /// The status after a first successful refresh at NOW.
    fn refreshed() -> CarbonForecastStatus {
        let spec = spec();
        decide(
            &input(&spec, None, None, t(NOW)),
            fetched(hourly(&[300.0, 200.0, 100.0, 250.0])),
        )
        .status
    }

    #[test]
    fn timing_defaults_and_errors() {
        let mut s = spec();
        assert_eq!(timing(&s), Ok(Timing::default()));
        assert_eq!(Timing::default().refresh_interval, TimeDelta::minutes(30));
        assert_eq!(Timing::default().stale_after, TimeDelta::hours(3));
        s.refresh_interval = Some("15m".into());
        s.stale_after = Some("1d".into());
        assert_eq!(
            timing(&s),
            Ok(Timing {
                refresh_interval: TimeDelta::minutes(15),
                stale_after: TimeDelta::days(1)
            })
        );
        s.refresh_interval = Some("0s".into());
        assert!(
            timing(&s).is_err_and(|e| e.starts_with("spec.refreshInterval \"0s\": ")
                && e.ends_with("expected a duration such as 30m, 2h or 1d (units s, m, h, d)")),
        );
        s.refresh_interval = None;
        s.stale_after = Some("soon".into());
        assert!(timing(&s).is_err_and(|e| e.starts_with("spec.staleAfter \"soon\"")));
    }

    #[test]
    fn refresh_is_due_when_never_done_when_the_spec_changed_and_on_the_interval() {
        let s = spec();
        let now = t(NOW);
        let done = refreshed();
        assert!(refresh_due(&input(&s, None, None, now)), "no status");
        assert!(
            !refresh_due(&input(&s, Some(&done), None, now)),
            "just refreshed"
        );
        let at = |minutes: i64| now + TimeDelta::minutes(minutes);
        assert!(!refresh_due(&input(&s, Some(&done), None, at(29))));
        assert!(
            refresh_due(&input(&s, Some(&done), None, at(30))),
            "interval reached"
        );
        assert!(
            refresh_due(&input(&s, Some(&done), None, at(-1))),
            "clock went back"
        );
        let spec_changed = Input {
            generation: Some(2),
            ..input(&s, Some(&done), None, now)
        };
        assert!(refresh_due(&spec_changed), "generation moved");
        let mut never = done.clone();
        never.last_refresh_time = None;
        assert!(refresh_due(&input(&s, Some(&never), None, now)));
        let mut bad = s.clone();
        bad.refresh_interval = Some("often".into());
        assert!(
            refresh_due(&input(&bad, Some(&done), None, now)),
            "report the bad spec"
        );
    }

    #[test]
    fn after_a_failure_the_backoff_decides_and_a_restart_retries_at_once() {
        let s = spec();
        let now = t(NOW);
        let mut failed = refreshed();
        failed.last_error = Some("boom".into());
        let backoff = Backoff {
            generation: Some(1),
            failures: 1,
            not_before: now + TimeDelta::minutes(1),
        };
        assert!(!refresh_due(&input(&s, Some(&failed), Some(&backoff), now)));
        assert!(refresh_due(&input(
            &s,
            Some(&failed),
            Some(&backoff),
            now + TimeDelta::minutes(1)
        )));
        // No retry state in memory (a restart): at once.
        assert!(refresh_due(&input(&s, Some(&failed), None, now)));
        // A spec change overrides the backoff.
        let changed = Input {
            generation: Some(2),
            ..input(&s, Some(&failed), Some(&backoff), now)
        };
        assert!(refresh_due(&changed));
        // Retry state of an older generation is ignored.
        let old = Backoff {
            generation: Some(0),
            ..backoff
        };
        assert!(refresh_due(&input(&s, Some(&failed), Some(&old), now)));
    }

    #[test]
    fn a_week_of_five_minute_points_at_most() {
        // Ten days of 5-minute points from an hour before now.
        let now = t(NOW);
        let start = t("2026-11-28T14:47:00Z");
        let values: Vec<f64> = (0..2880).map(|i| f64::from(i % 500)).collect();
        let b = bound(data(start, TimeDelta::minutes(5), &values), now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.points.len(), MAX_POINTS);
        // now − 5m = 15:42: the slot 15:37–15:42 has ended by then and goes; 15:42–15:47 (the
        // one before the slot covering now) is the first kept.
        assert_eq!(b.points[0].start, t("2026-11-28T15:42:00Z"));
        assert_eq!(b.points[0].intensity, 11.0);
        assert_eq!(
            b.points[MAX_POINTS - 1].start,
            t("2026-11-28T15:42:00Z") + TimeDelta::minutes(5 * 2015)
        );
        assert_eq!(b.horizon_end, t("2026-12-05T15:42:00Z"));
        assert!(b.horizon_end <= now + MAX_AHEAD);
        assert!(b.points.iter().all(|p| p.start < now + MAX_AHEAD));
    }

    #[test]
    fn points_are_kept_from_the_slot_before_now_to_seven_days_ahead() {
        // Hourly from 12:00, now on the hour boundary 16:00: slots 15:00 and 16:00 onwards stay.
        let now = t("2026-11-28T16:00:00Z");
        let b = bound(
            data(
                t("2026-11-28T12:00Z"),
                TimeDelta::hours(1),
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            ),
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let starts: Vec<_> = b.points.iter().map(|p| p.start).collect();
        assert_eq!(
            starts,
            [
                t("2026-11-28T15:00Z"),
                t("2026-11-28T16:00Z"),
                t("2026-11-28T17:00Z")
            ]
        );
        assert_eq!(b.horizon_end, t("2026-11-28T18:00Z"));
        // Hourly for 9 days from now: the first point 7 days after now is the horizon.
        let values = vec![100.0; 24 * 9];
        let b =
            bound(data(now, TimeDelta::hours(1), &values), now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.points.len(), 24 * 7);
        assert_eq!(b.horizon_end, now + MAX_AHEAD);
    }

    #[test]
    fn a_forecast_entirely_in_the_past_or_far_ahead_is_refused() {
        let now = t(NOW);
        let past = bound(
            data(t("2026-11-28T10:00Z"), TimeDelta::hours(1), &[1.0, 2.0]),
            now,
        );
        assert_eq!(
            past,
            Err("the forecast ends at 2026-11-28T12:00:00Z, before now (2026-11-28T15:47:00Z); nothing is left to plan with".into())
        );
        let ahead = bound(
            data(t("2026-12-06T00:00Z"), TimeDelta::hours(1), &[1.0]),
            now,
        );
        assert_eq!(
            ahead,
            Err("the forecast starts at 2026-12-06T00:00:00Z, more than 7d after now (2026-11-28T15:47:00Z)".into())
        );
        let empty = ForecastData {
            points: Vec::new(),
            ..data(now, TimeDelta::hours(1), &[])
        };
        assert_eq!(
            bound(empty, now),
            Err("the provider returned no points".into())
        );
    }

    #[test]
    fn a_single_point_holds_for_an_hour() {
        let now = t(NOW);
        let b = bound(
            data(t("2026-11-28T15:30Z"), TimeDelta::hours(1), &[42.0]),
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.horizon_end, t("2026-11-28T16:30Z"));
        let f = forecast_of(&b.points).unwrap_or_else(|| panic!("valid"));
        assert_eq!(f.intensity_at(now), Some(42.0));
    }

    #[test]
    fn actuals_keep_the_last_seven_days_and_at_most_a_week_of_points() {
        let now = t(NOW);
        let mut d = data(t("2026-11-28T15:00Z"), TimeDelta::hours(1), &[1.0, 2.0]);
        d.actuals = vec![
            Point {
                start: now - TimeDelta::days(8),
                intensity: 9.0,
            },
            Point {
                start: now - TimeDelta::days(7),
                intensity: 8.0,
            },
            Point {
                start: t("2026-11-28T15:00Z"),
                intensity: 7.0,
            },
        ];
        let b = bound(d, now).unwrap_or_else(|e| panic!("{e}"));
        let kept: Vec<f64> = b.actuals.iter().map(|p| p.intensity).collect();
        assert_eq!(kept, [8.0, 7.0]);
        // 3000 one-minute actuals over the last two days and a bit: the newest 2016 stay.
        let mut d = data(t("2026-11-28T15:00Z"), TimeDelta::hours(1), &[1.0, 2.0]);
        d.actuals = (0..3000)
            .map(|i| Point {
                start: now - TimeDelta::minutes(3000 - i),
                intensity: f64::from(i32::try_from(i).unwrap_or_default()),
            })
            .collect();
        let b = bound(d, now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.actuals.len(), MAX_POINTS);
        assert_eq!(b.actuals[0].intensity, 984.0);
        assert_eq!(b.actuals[MAX_POINTS - 1].start, now - TimeDelta::minutes(1));
    }

    #[test]
    fn current_and_lowest_values_follow_the_planner_and_are_never_invented() {
        let p = points(
            t("2026-11-28T15:00Z"),
            TimeDelta::hours(1),
            &[50.0, 200.0, 100.0, 100.0],
        );
        let f = forecast_of(&p).unwrap_or_else(|| panic!("valid"));
        let end = t("2026-11-28T19:00Z");
        assert_eq!(f.horizon_end(), Some(end));
        assert_eq!(f.intensity_at(t("2026-11-28T14:59Z")), None);
        assert_eq!(f.intensity_at(t("2026-11-28T15:00Z")), Some(50.0));
        assert_eq!(f.intensity_at(t("2026-11-28T18:59Z")), Some(100.0));
        assert_eq!(f.intensity_at(end), None);
        assert!(forecast_of(&[]).is_some_and(|f| f.intensity_at(end).is_none()));
        // The past slot (50 at 15:00) counts only while it covers now; the earliest of equals wins.
        let lowest = |now: &str| {
            f.lowest_between(t(now), end)
                .map(|p| (p.intensity, p.start))
        };
        assert_eq!(
            lowest("2026-11-28T15:30Z"),
            Some((50.0, t("2026-11-28T15:30Z")))
        );
        assert_eq!(
            lowest("2026-11-28T16:00Z"),
            Some((100.0, t("2026-11-28T17:00Z")))
        );
        assert_eq!(lowest("2026-11-28T19:00Z"), None);
    }

    #[test]
    fn a_first_refresh_fills_every_field_and_says_refreshed() {
        let s = spec();
        let now = t(NOW);
        let d = decide(
            &input(&s, None, None, now),
            fetched(hourly(&[300.0, 200.0, 100.0, 250.0])),
        );
        let st = &d.status;
        assert_eq!(st.provider.as_deref(), Some("ukCarbonIntensity"));
        assert_eq!(st.region.as_deref(), Some("national"));
        assert_eq!(st.current_intensity, Some(300.0));
        assert_eq!(st.points.len(), 4);
        assert_eq!(st.horizon_end, Some(t("2026-11-28T19:00Z")));
        assert_eq!(st.lowest_intensity, Some(100.0));
        assert_eq!(st.lowest_at, Some(t("2026-11-28T17:00Z")));
        assert_eq!(st.last_refresh_time, Some(now));
        assert_eq!(st.last_error, None);
        assert_eq!(st.observed_generation, Some(1));
        assert_eq!(ready(st), (true, "Refreshed".into(), now));
        let c = ready_condition(st).map(|c| c.message.clone());
        assert_eq!(
            c.as_deref(),
            Some("4 points from ukCarbonIntensity (national) up to 2026-11-28T19:00:00Z")
        );
        assert_eq!(reasons(&d), ["Refreshed"]);
        assert_eq!(d.notes[0].kind, NoteKind::Normal);
        assert_eq!(d.notes[0].action, "Refresh");
        assert_eq!(d.backoff, None);
        assert_eq!(d.requeue_at, now + TimeDelta::minutes(30));
    }

    #[test]
    fn a_refresh_with_the_same_points_emits_nothing() {
        let s = spec();
        let before = refreshed();
        let later = t(NOW) + TimeDelta::minutes(5);
        let d = decide(
            &input(&s, Some(&before), None, later),
            fetched(hourly(&[300.0, 200.0, 100.0, 250.0])),
        );
        assert!(d.notes.is_empty(), "{:?}", d.notes);
        assert_eq!(d.status.last_refresh_time, Some(later));
        assert_eq!(d.status.points, before.points);
        // The condition did not flip: its transition time stays.
        assert_eq!(ready(&d.status).2, t(NOW));
        // Different values are news.
        let d = decide(
            &input(&s, Some(&before), None, later),
            fetched(hourly(&[300.0, 200.0, 90.0, 250.0])),
        );
        assert_eq!(reasons(&d), ["Refreshed"]);
    }

    #[test]
    fn a_failure_keeps_the_last_good_data_and_backs_off() {
        let s = spec();
        let before = refreshed();
        let now = t(NOW) + TimeDelta::minutes(30);
        let d = decide(&input(&s, Some(&before), None, now), server_error(None));
        let st = &d.status;
        assert_eq!(st.points, before.points);
        assert_eq!(st.current_intensity, before.current_intensity);
        assert_eq!(st.last_refresh_time, before.last_refresh_time);
        assert_eq!(
            st.last_error.as_deref(),
            Some(
                "UK Carbon Intensity API failed with HTTP 502 after 4 attempt(s): the service is having trouble; check its status page or the base URL https://api.carbonintensity.org.uk/"
            )
        );
        assert_eq!(ready(st), (true, "Refreshed".into(), t(NOW)));
        assert_eq!(
            ready_condition(st).map(|c| c.message.as_str()),
            Some(
                "serving the forecast refreshed at 2026-11-28T15:47:00Z; the latest refresh failed (see lastError)"
            )
        );
        assert_eq!(reasons(&d), ["RefreshFailed"]);
        assert_eq!(d.notes[0].kind, NoteKind::Warning);
        assert!(
            d.notes[0]
                .message
                .ends_with("(server_error); next attempt in 1m"),
            "{}",
            d.notes[0].message
        );
        let b = d.backoff.unwrap_or_else(|| panic!("no backoff"));
        assert_eq!((b.failures, b.not_before), (1, now + TimeDelta::minutes(1)));
        assert_eq!(d.requeue_at, now + TimeDelta::minutes(1));

        // Doubling, capped at the refresh interval; the status does not change for a repeat.
        let mut status = d.status.clone();
        let mut backoff = b;
        let mut delays = Vec::new();
        for _ in 0..6 {
            let at = backoff.not_before;
            let next = decide(
                &input(&s, Some(&status), Some(&backoff), at),
                server_error(None),
            );
            assert_eq!(next.status.last_error, status.last_error);
            let nb = next.backoff.unwrap_or_else(|| panic!("no backoff"));
            delays.push((nb.not_before - at).num_minutes());
            backoff = nb;
            status = next.status;
        }
        assert_eq!(delays, [2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn retry_after_is_respected() {
        let s = spec();
        let before = refreshed();
        let now = t(NOW) + TimeDelta::minutes(30);
        let d = decide(
            &input(&s, Some(&before), None, now),
            server_error(Some(Duration::from_secs(600))),
        );
        assert_eq!(
            d.backoff.map(|b| b.not_before),
            Some(now + TimeDelta::minutes(10))
        );
        assert!(d.notes[0].message.ends_with("next attempt in 10m"));
    }

    #[test]
    fn without_any_data_a_failure_is_not_ready() {
        let s = spec();
        let d = decide(&input(&s, None, None, t(NOW)), server_error(None));
        assert_eq!(ready(&d.status), (false, "RefreshFailed".into(), t(NOW)));
        assert_eq!(d.status.provider.as_deref(), Some("ukCarbonIntensity"));
        assert!(d.status.points.is_empty());
        assert_eq!(d.status.current_intensity, None);
        assert_eq!(reasons(&d), ["RefreshFailed"]);
    }

    #[test]
    fn data_turns_stale_once_with_one_event_and_recovers() {
        let s = spec();
        let before = refreshed();
        let refreshed_at = t(NOW);
        // Not due and fresh: nothing changes; requeue at the next refresh.
        let quiet = decide(
            &input(
                &s,
                Some(&before),
                None,
                refreshed_at + TimeDelta::minutes(10),
            ),
            Observation::NotDue,
        );
        assert_eq!(quiet.status, before);
        assert!(quiet.notes.is_empty());
        assert_eq!(quiet.requeue_at, refreshed_at + TimeDelta::minutes(30));

        // Failing retries until the limit: the last one before 3h keeps Ready, and requeues at
        // the stale moment when that is sooner than the retry.
        let mut failing = before.clone();
        failing.last_error = Some("down".into());
        let backoff = Backoff {
            generation: Some(1),
            failures: 5,
            not_before: refreshed_at + TimeDelta::minutes(170) + TimeDelta::minutes(30),
        };
        let waiting = decide(
            &input(
                &s,
                Some(&failing),
                Some(&backoff),
                refreshed_at + TimeDelta::minutes(170),
            ),
            Observation::NotDue,
        );
        assert!(ready(&waiting.status).0);
        assert_eq!(waiting.requeue_at, refreshed_at + TimeDelta::hours(3));

        // At the limit: Stale, with one Event.
        let stale_at = refreshed_at + TimeDelta::hours(3);
        let stale = decide(
            &input(&s, Some(&failing), Some(&backoff), stale_at),
            Observation::NotDue,
        );
        assert_eq!(ready(&stale.status), (false, "Stale".into(), stale_at));
        assert_eq!(
            ready_condition(&stale.status).map(|c| c.message.as_str()),
            Some(
                "no successful refresh since 2026-11-28T15:47:00Z, longer than staleAfter (3h); the data is not used for new plans"
            )
        );
        assert_eq!(reasons(&stale), ["Stale"]);
        assert_eq!(stale.notes[0].kind, NoteKind::Warning);
        assert_eq!(stale.status.points, before.points, "stale data is kept");
        assert_eq!(stale.requeue_at, backoff.not_before);

        // Still stale, another failure: no second Stale Event.
        let again = decide(
            &input(&s, Some(&stale.status), Some(&backoff), backoff.not_before),
            server_error(None),
        );
        assert_eq!(reasons(&again), ["RefreshFailed"]);
        assert_eq!(ready(&again.status), (false, "Stale".into(), stale_at));
        let quiet = decide(
            &input(
                &s,
                Some(&again.status),
                again.backoff.as_ref(),
                backoff.not_before + TimeDelta::seconds(1),
            ),
            Observation::NotDue,
        );
        assert!(quiet.notes.is_empty());
        assert_eq!(quiet.status, again.status);

        // Recovery: Ready again, the error cleared, one Recovered Event (not Refreshed too).
        let back_at = backoff.not_before + TimeDelta::minutes(30);
        let recovered = decide(
            &input(&s, Some(&again.status), again.backoff.as_ref(), back_at),
            Observation::Fetched {
                kind: "ukCarbonIntensity",
                forecast: bound(
                    data(t("2026-11-28T19:00Z"), TimeDelta::hours(1), &[120.0, 80.0]),
                    back_at,
                )
                .unwrap_or_else(|e| panic!("{e}")),
            },
        );
        assert_eq!(reasons(&recovered), ["Recovered"]);
        assert_eq!(recovered.status.last_error, None);
        assert_eq!(
            ready(&recovered.status),
            (true, "Refreshed".into(), back_at)
        );
        assert_eq!(recovered.status.current_intensity, Some(120.0));
        assert_eq!(recovered.backoff, None);
    }

    #[test]
    fn a_stale_limit_below_the_interval_requeues_at_the_stale_moment() {
        let mut s = spec();
        s.stale_after = Some("10m".into());
        let d = decide(
            &input(&s, None, None, t(NOW)),
            fetched(hourly(&[300.0, 200.0])),
        );
        assert_eq!(d.requeue_at, t(NOW) + TimeDelta::minutes(10));
        let stale = decide(
            &input(&s, Some(&d.status), None, t(NOW) + TimeDelta::minutes(10)),
            Observation::NotDue,
        );
        assert_eq!(reasons(&stale), ["Stale"]);
        assert_eq!(stale.requeue_at, t(NOW) + TimeDelta::minutes(30));
    }

    #[test]
    fn an_unusable_spec_is_reported_once_and_rechecked() {
        let s = spec();
        let before = refreshed();
        let now = t(NOW) + TimeDelta::minutes(30);
        let unusable = |message: &str| Observation::Unusable {
            kind: "electricityMaps",
            problem: SpecProblem::MissingCredentials,
            message: message.into(),
        };
        let d = decide(
            &input(&s, Some(&before), None, now),
            unusable("Secret carbonshift/em does not exist"),
        );
        assert_eq!(ready(&d.status), (false, "MissingCredentials".into(), now));
        assert_eq!(
            d.status.last_error.as_deref(),
            Some("Secret carbonshift/em does not exist")
        );
        assert_eq!(d.status.points, before.points, "the data stays");
        assert_eq!(
            d.status.provider.as_deref(),
            Some("ukCarbonIntensity"),
            "kept from the data"
        );
        assert_eq!(reasons(&d), ["MissingCredentials"]);
        assert_eq!(d.notes[0].action, "Check");
        assert_eq!(
            d.backoff,
            Some(Backoff {
                generation: Some(1),
                failures: 0,
                not_before: now + TimeDelta::minutes(5)
            })
        );
        assert_eq!(d.requeue_at, now + TimeDelta::minutes(5));
        // The same problem again: no Event, same status.
        let again = decide(
            &input(
                &s,
                Some(&d.status),
                d.backoff.as_ref(),
                now + TimeDelta::minutes(5),
            ),
            unusable("Secret carbonshift/em does not exist"),
        );
        assert!(again.notes.is_empty());
        assert_eq!(again.status, d.status);
        // A different message is news.
        let other = decide(
            &input(&s, Some(&d.status), None, now + TimeDelta::minutes(5)),
            unusable("Secret em has no non-empty key `token`"),
        );
        assert_eq!(reasons(&other), ["MissingCredentials"]);
        // Unusable stays unusable when the data ages: no Stale on top.
        let old = decide(
            &input(
                &s,
                Some(&d.status),
                d.backoff.as_ref(),
                now + TimeDelta::hours(4),
            ),
            Observation::NotDue,
        );
        assert!(old.notes.is_empty());
        assert_eq!(ready(&old.status).1, "MissingCredentials");
        // Fixed: Recovered.
        let fixed = decide(
            &input(&s, Some(&d.status), None, now + TimeDelta::minutes(1)),
            fetched(hourly(&[300.0, 200.0, 100.0, 250.0])),
        );
        assert_eq!(reasons(&fixed), ["Recovered"]);
        // Invalid spec on a new object: the provider kind of the spec is shown.
        let fresh = decide(
            &input(&s, None, None, now),
            Observation::Unusable {
                kind: "trace",
                problem: SpecProblem::InvalidSpec,
                message: "unknown built-in trace".into(),
            },
        );
        assert_eq!(ready(&fresh.status).1, "InvalidSpec");
        assert_eq!(fresh.status.provider.as_deref(), Some("trace"));
    }

    #[test]
    fn every_outcome_records_the_generation() {
        let s = spec();
        let before = refreshed();
        let gen2 = |status: Option<&CarbonForecastStatus>, observation: Observation| {
            let i = Input {
                generation: Some(2),
                ..input(&s, status, None, t(NOW) + TimeDelta::minutes(1))
            };
            let d = decide(&i, observation);
            (
                d.status.observed_generation,
                ready_condition(&d.status).and_then(|c| c.observed_generation),
            )
        };
        assert_eq!(
            gen2(Some(&before), fetched(hourly(&[1.0, 2.0]))),
            (Some(2), Some(2))
        );
        assert_eq!(gen2(Some(&before), server_error(None)), (Some(2), Some(2)));
        assert_eq!(
            gen2(
                Some(&before),
                Observation::Unusable {
                    kind: "static",
                    problem: SpecProblem::InvalidSpec,
                    message: "bad".into()
                }
            ),
            (Some(2), Some(2))
        );
    }

    #[test]
    fn requeue_after_is_at_least_a_second() {
        let now = t(NOW);
        assert_eq!(
            requeue_after(now + TimeDelta::minutes(2), now),
            Duration::from_secs(120)
        );
        assert_eq!(requeue_after(now, now), Duration::from_secs(1));
        assert_eq!(
            requeue_after(now - TimeDelta::hours(1), now),
            Duration::from_secs(1)
        );
    }
}
