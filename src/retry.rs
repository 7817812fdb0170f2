//! The one retry and cancellation toolkit: every "try again later" and every "stop now" in
//! carbonshift goes through here, so that there is one way to back off and one way to cancel.
//!
//! - **Retrying an async operation**: backon's [`Retryable`] (`op.retry(schedule)`, then
//!   `.when(..)` for what is worth retrying, `.adjust(..)` to replace a delay, for example with a
//!   provider's `Retry-After`, and `.notify(..)` to log each retry), re-exported here. Callers
//!   that must give up when asked to stop race the retry against a [`CancellationToken`]
//!   (`tokio::select!` or [`CancellationToken::run_until_cancelled`]), which drops the attempt or
//!   the sleep in progress.
//! - **Schedules**: [`Doubling`] — a base delay that doubles with each failure up to a cap,
//!   without jitter and without end — built on backon's [`ExponentialBuilder`]. Limit it with
//!   [`Iterator::take`]; jitter, where wanted, is the caller's (the provider client keeps its
//!   "half to full" jitter, see [`crate::forecast::http::RetryPolicy`]).
//! - **Per-object requeue delays** of the controllers, which do not loop themselves (kube's
//!   controller runtime requeues): [`api_backoff`] after Kubernetes API errors, and
//!   [`doubling_delta`] for delays kept as chrono durations.
//! - **Cancellation**: tokio-util's [`CancellationToken`], re-exported. A token handed to a task is
//!   that task's stop signal; hold a [`DropGuard`](tokio_util::sync::DropGuard) (or cancel in
//!   `Drop`) where dropping the owner must stop the task too.
//!
//! backon computes in `f32` seconds; [`Doubling`] rounds its delays to whole milliseconds so that
//! 100 ms doubled is 200 ms and not 200.000003 ms. Bases and caps are meant in whole milliseconds.

use std::time::Duration;

use chrono::TimeDelta;

pub use backon::{Backoff, BackoffBuilder, ExponentialBuilder, Retryable};
pub use tokio_util::sync::CancellationToken;

/// How many doublings [`Doubling::after`] computes at most: past this any base has reached any
/// cap (2⁶⁴ × 1 ms is longer than `Duration::MAX`).
const MAX_DOUBLINGS: u32 = 64;

/// `base × 2ⁿ` before retry `n` (0 for the first), capped at `max`: 1 s, 2 s, 4 s, … 30 s, 30 s, …
/// without jitter and without end (limit it with [`Iterator::take`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doubling {
    base: Duration,
    max: Duration,
}

impl Doubling {
    /// Starts at `base` and doubles up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The first delay.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// backon's builder for this schedule (factor 2, no jitter, no limit on the retries).
    pub const fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .without_max_times()
    }

    /// The delays, one per retry, for [`Retryable::retry`]: endless, so a retry with it only ends
    /// on success, on an error its `.when(..)` refuses, or when its future is dropped.
    pub fn delays(&self) -> impl Backoff + use<> {
        let max = self.max;
        self.builder()
            .build()
            .map(move |delay| whole_millis(delay).min(max))
    }

    /// The delay after `failures` consecutive failures (1 for the first; 0 counts as 1):
    /// `min(base × 2^(failures−1), max)`.
    pub fn after(&self, failures: u32) -> Duration {
        let retry = failures.saturating_sub(1).min(MAX_DOUBLINGS);
        self.delays()
            .nth(retry as usize)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Backoff after a failed Kubernetes API call in a controller, per object: 5 s doubling to 5 min.
pub const API_ERRORS: Doubling = Doubling::new(Duration::from_secs(5), Duration::from_secs(300));

/// The requeue delay after `failures` consecutive Kubernetes API errors of one object
/// ([`API_ERRORS`]): 5 s, 10 s, 20 s, … 5 min.
pub fn api_backoff(failures: u32) -> Duration {
    API_ERRORS.after(failures)
}

/// [`Doubling::after`] for chrono durations: `min(base × 2^(failures−1), max)`. A `base` or `max`
/// that is negative (no std duration) gives `min(base, max)`.
pub fn doubling_delta(base: TimeDelta, max: TimeDelta, failures: u32) -> TimeDelta {
    match (base.to_std(), max.to_std()) {
        (Ok(b), Ok(m)) => TimeDelta::from_std(Doubling::new(b, m).after(failures))
            .map_or(max, |delay| delay.min(max)),
        _ => base.min(max),
    }
}

fn whole_millis(delay: Duration) -> Duration {
    let millis = (delay.as_secs_f64() * 1000.0).round();
    if millis >= u64::MAX as f64 {
        Duration::MAX
    } else {
        Duration::from_millis(millis as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn doubling_doubles_up_to_the_cap_without_end() {
        let schedule = Doubling::new(SECOND, 30 * SECOND);
        let delays: Vec<u64> = schedule.delays().take(8).map(|d| d.as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(schedule.delays().take(1000).count(), 1000);
    }

    #[test]
    fn delays_are_whole_milliseconds() {
        let schedule = Doubling::new(Duration::from_millis(100), Duration::from_millis(700));
        let delays: Vec<Duration> = schedule.delays().take(5).collect();
        let millis = |ms: &[u64]| {
            ms.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(delays, millis(&[100, 200, 400, 700, 700]));
    }

    #[test]
    fn after_counts_failures_from_one() {
        let schedule = Doubling::new(SECOND, 30 * SECOND);
        assert_eq!(schedule.after(0), SECOND);
        assert_eq!(schedule.after(1), SECOND);
        assert_eq!(schedule.after(3), 4 * SECOND);
        assert_eq!(schedule.after(u32::MAX), 30 * SECOND);
        // A base above the cap is capped too.
        assert_eq!(Doubling::new(SECOND, SECOND / 2).after(1), SECOND / 2);
    }

    #[test]
    fn api_errors_back_off_from_5s_to_5m() {
        let delays: Vec<u64> = (1..=9).map(|n| api_backoff(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(api_backoff(0), API_ERRORS.base());
        assert_eq!(api_backoff(u32::MAX), API_ERRORS.max());
    }

    #[test]
    fn chrono_delays_double_up_to_the_cap() {
        let minutes = |n| TimeDelta::minutes(n);
        let delays: Vec<i64> = (1..=7)
            .map(|n| doubling_delta(minutes(1), minutes(30), n).num_minutes())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(
            doubling_delta(minutes(1), minutes(30), u32::MAX),
            minutes(30)
        );
        assert_eq!(doubling_delta(minutes(1), minutes(-1), 3), minutes(-1));
        assert_eq!(
            doubling_delta(minutes(1), TimeDelta::zero(), 3),
            TimeDelta::zero()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_sleeps_the_schedule_and_stops_on_success() {
        let started = tokio::time::Instant::now();
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let result = (|| async {
            let n = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n < 4 { Err(n) } else { Ok(n) }
        })
        .retry(Doubling::new(SECOND, 3 * SECOND).delays())
        .await;
        assert_eq!(result, Ok(4));
        // 1 s + 2 s + 3 s.
        assert_eq!(started.elapsed(), 6 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_retry_stops_sleeping() {
        let token = CancellationToken::new();
        let retry =
            (|| async { Err::<(), _>("down") }).retry(Doubling::new(SECOND, 30 * SECOND).delays());
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(10 * SECOND).await;
            cancel.cancel();
        });
        let started = tokio::time::Instant::now();
        assert_eq!(token.run_until_cancelled(retry).await, None);
        assert_eq!(started.elapsed(), 10 * SECOND);
    }
}
