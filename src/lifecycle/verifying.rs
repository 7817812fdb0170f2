//! The verification step of a finished workload: from what the provider's measured history said
//! ([`Measured`]) to `status.verified` and `status.verification`, with the Events a person reads
//! and the time to ask again.

use crate::api::workload::{VerificationState, VerifiedFigures};

use chrono::{DateTime, Utc};

use super::machine::{Machine, fmt_time};
use super::verification_state as state;
use super::verify::{self, Verification};
use super::*;

impl Machine<'_> {
    /// On the transition to `Succeeded`/`Failed`: verification starts. Without the measured
    /// values yet, the shell fetches them (it sees [`needs_verification`] in this decision's
    /// status) and decides again; should it not, the next look is at once.
    pub(super) fn start_verification(&mut self) {
        self.set_verification(
            state::PENDING,
            "waiting for the forecast's provider to publish the measured intensity".into(),
        );
        if self.measured.is_some() {
            self.verification();
        } else {
            self.decision.requeue_at = Some(self.now);
        }
    }

    /// A finished workload the shell fetched measured values for.
    pub(super) fn verification(&mut self) {
        let Some(measured) = self.measured else {
            return;
        };
        if self.status.verified.is_some()
            || self
                .status
                .verification
                .as_ref()
                .is_some_and(|v| v.state != state::PENDING)
        {
            return;
        }
        let give_up = self.config.verify_give_up;
        let finished = self.status.finished_at.unwrap_or(self.now);
        let until = finished.checked_add_signed(give_up).unwrap_or(finished);
        match measured {
            Measured::Unavailable { reason, permanent } if *permanent => {
                self.set_verification(state::UNSUPPORTED, format!("cannot be verified: {reason}"));
                self.event(
                    NoteKind::Normal,
                    "VerificationUnsupported",
                    "Verify",
                    format!("the savings cannot be verified from measured data: {reason}"),
                );
            }
            Measured::Unavailable { reason, .. } => {
                if self.now >= until {
                    self.gave_up(format!("the provider kept failing: {reason}"));
                } else {
                    self.set_verification(
                        state::PENDING,
                        format!(
                            "the provider's measured history could not be read ({reason}); trying again until {}",
                            fmt_time(until)
                        ),
                    );
                    self.recheck(until);
                }
            }
            Measured::Pieces { segments, source } => {
                match verify::verify(self.spec, &self.status, segments, source, self.now, give_up) {
                    Verification::Verified(v) => self.verified(v),
                    Verification::Pending { from, to, until } => {
                        self.set_verification(
                            state::PENDING,
                            format!(
                                "{source} has no values from {} to {} yet; asking again until {}",
                                fmt_time(from),
                                fmt_time(to),
                                fmt_time(until)
                            ),
                        );
                        self.recheck(until);
                    }
                    Verification::GaveUp { from, to } => self.gave_up(format!(
                        "{source} still had no values from {} to {} {} after the workload finished",
                        fmt_time(from),
                        fmt_time(to),
                        format_duration(give_up)
                    )),
                    Verification::NotApplicable(why) => {
                        self.set_verification(
                            state::NOT_APPLICABLE,
                            format!("nothing to verify: {why}"),
                        );
                    }
                }
            }
        }
    }

    fn verified(&mut self, v: VerifiedFigures) {
        let mut message = format!(
            "verified from {}: {:.0} gCO2eq at {:.0} gCO2eq/kWh measured, {:.0} g avoided against running at once ({:.0} gCO2eq/kWh)",
            v.source, v.emissions_grams, v.intensity, v.avoided_grams, v.counterfactual_intensity
        );
        if let Some(error) = v.forecast_error_percent {
            message.push_str(&format!("; the forecast was off by {error:+.1}%"));
        }
        let held_by_us = self.job.held_marker || self.job.released_marker.is_some();
        self.decision.verified = Some(Completion {
            emitted_grams: v.emissions_grams,
            avoided_grams: held_by_us.then_some(v.avoided_grams),
        });
        self.status.verified = Some(v);
        self.set_verification(state::VERIFIED, message.clone());
        self.event(NoteKind::Normal, "Verified", "Verify", message);
    }

    fn gave_up(&mut self, message: String) {
        self.set_verification(state::GAVE_UP, message.clone());
        self.event(NoteKind::Warning, "VerificationGaveUp", "Verify", message);
    }

    fn recheck(&mut self, until: DateTime<Utc>) {
        let next = (self.now + VERIFY_RECHECK).min(until.max(self.now));
        self.decision.requeue_at = Some(self.decision.requeue_at.map_or(next, |t| t.min(next)));
    }

    /// Sets `status.verification`, keeping the time of the last attempt only when something
    /// changed (so that an unchanged status is not written again).
    fn set_verification(&mut self, state: &str, message: String) {
        let unchanged = self
            .status
            .verification
            .as_ref()
            .is_some_and(|v| v.state == state && v.message == message);
        if unchanged {
            return;
        }
        self.status.verification = Some(VerificationState {
            state: state.to_string(),
            message,
            last_attempt: self.now,
        });
    }
}
