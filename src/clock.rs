//! Time as an input: the one place that reads the wall clock.
//!
//! Everything that makes a decision takes a `now: DateTime<Utc>` argument; the imperative shell gets
//! that value from a [`Clock`]. Production code uses [`SystemClock`]; tests drive a [`ManualClock`]
//! forward so that time-dependent behaviour is exercised, not stubbed away.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; cloning shares the same instant.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock stopped at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(now)),
        }
    }

    /// Moves the clock to `now` (backwards too, for tests of clock skew).
    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut guard = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *guard += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").map(|t| t.to_utc());
        let t0 = t0.expect("valid literal");
        let clock = ManualClock::new(t0);
        let other = clock.clone();
        assert_eq!(clock.now(), t0);
        other.advance(TimeDelta::minutes(90));
        assert_eq!(clock.now(), t0 + TimeDelta::minutes(90));
        clock.set(t0);
        assert_eq!(other.now(), t0);
    }
}
