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

use crate::api::condition::{self, Condition};
use crate::api::{CarbonForecastSpec, CarbonForecastStatus};
use crate::forecast::{ProviderError, stamp};
use crate::note::{Note, NoteKind};
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

mod bound;
pub use bound::{BoundError, Bounded, bound, forecast_of};

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

/// A duration field of the CarbonForecast spec that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "spec.{field} {value:?}: {reason}; expected a duration such as 30m, 2h or 1d (units s, m, h, d)"
)]
pub struct TimingError {
    /// `refreshInterval` or `staleAfter`.
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// Why it is not a duration.
    pub reason: crate::units::DurationError,
}

/// Reads `spec.refreshInterval` and `spec.staleAfter` (defaults 30m and 3h); the error names the
/// field and the accepted form.
pub fn timing(spec: &CarbonForecastSpec) -> Result<Timing, TimingError> {
    let read = |field: &'static str, text: &Option<String>, default: TimeDelta| match text {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|reason| TimingError {
            field,
            value: text.clone(),
            reason,
        }),
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
mod tests;
