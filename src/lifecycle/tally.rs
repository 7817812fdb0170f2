//! The workload gauges: how many CarbonWorkloads are in each phase, and how many are held past
//! their latest start (which the deadline rule should never let happen).

use chrono::{DateTime, Utc};

use super::*;

/// Counts for the gauges, from the workloads in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    /// Workloads per phase, in the order of [`Phase::ALL`] (no status counts as `Pending`).
    pub by_phase: [i64; 8],
    /// Workloads still held although their latest start has passed (must stay 0).
    pub held_past_latest_start: i64,
}

impl Tally {
    /// The count for `phase`.
    pub fn count(&self, phase: Phase) -> i64 {
        Phase::ALL
            .iter()
            .position(|&p| p == phase)
            .map_or(0, |i| self.by_phase[i])
    }
}

/// Counts workloads by phase and the held ones past their latest start (the remaining-work latest
/// start in status for a paused Job, else the spec's).
pub fn tally<'a>(
    workloads: impl IntoIterator<Item = &'a CarbonWorkload>,
    now: DateTime<Utc>,
) -> Tally {
    let mut tally = Tally::default();
    for w in workloads {
        let status = w.status.as_ref();
        let phase = status.and_then(|s| s.phase).unwrap_or(Phase::Pending);
        if let Some(i) = Phase::ALL.iter().position(|&p| p == phase) {
            tally.by_phase[i] += 1;
        }
        let latest = status
            .and_then(|s| s.latest_start)
            .unwrap_or(w.spec.latest_start);
        // The waste guard holds past the latest start on purpose (a group that keeps failing).
        let guarded = status.and_then(|s| s.reason.as_deref()) == Some(super::reason::WASTE_GUARD);
        if is_held_phase(phase) && now > latest && !guarded {
            tally.held_past_latest_start += 1;
        }
    }
    tally
}
