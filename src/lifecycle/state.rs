//! Where a workload is, from the workload object alone: held by carbonshift, released, released
//! or suspended by its owner, finished, or never held.

use super::*;

pub(super) fn is_held_phase(phase: Phase) -> bool {
    matches!(phase, Phase::Pending | Phase::Deferred | Phase::Paused)
}

/// Where a workload is, from the workload alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its own status says it ended.
    Finished(Finished),
    /// Suspended by carbonshift (marker), or suspended and deferrable (taken as held).
    Held,
    /// Unsuspended with the `released-at` marker.
    Released,
    /// Unsuspended with the held marker but without `released-at`: someone else released it.
    ReleasedByOwner,
    /// Suspended again after carbonshift released it.
    SuspendedByOwner,
    /// Never held by carbonshift.
    NotHeld,
}

/// Classifies a workload from its switch, carbonshift's markers and whether it asks to be held.
pub fn classify(job: &WorkloadView) -> State {
    if let Some(f) = job.finished {
        return State::Finished(f);
    }
    let deferrable = matches!(&job.deferral, Ok(Some(d)) if !d.dry_run);
    if job.suspend {
        if job.released_marker.is_some() {
            State::SuspendedByOwner
        } else if job.held_marker || (deferrable && job.managed_elsewhere.is_none()) {
            State::Held
        } else {
            State::NotHeld
        }
    } else if job.released_marker.is_some() {
        State::Released
    } else if job.held_marker {
        State::ReleasedByOwner
    } else {
        State::NotHeld
    }
}
