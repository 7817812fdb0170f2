//! The decision after a plan exists: adopting a plan, following a released workload, pausing an
//! interruptible one at the end of its window, dry runs, and the completion figures.

use chrono::{DateTime, TimeDelta, Utc};

use super::machine::*;
use super::*;

impl Machine<'_> {
    /// Takes a new plan: release now if its start has come, else hold until it.
    pub(super) fn adopt_plan(
        &mut self,
        plan: &Plan,
        version: &str,
        existing: Option<Vec<TimeWindow>>,
        release_by: DateTime<Utc>,
    ) {
        let windows = windows_of(plan);
        let remaining = self
            .duration()
            .map(|d| d - self.ran())
            .unwrap_or_else(|| plan.run_time());
        self.record_plan(plan, version, remaining);
        if plan.start <= self.now {
            return self.planned_release(plan.start);
        }
        let paused = self.ran() > TimeDelta::zero();
        let phase = if paused {
            Phase::Paused
        } else {
            Phase::Deferred
        };
        let message = self.plan_message(plan, release_by);
        let why = if paused {
            reason::PAUSED
        } else {
            plan_reason(plan.reason)
        };
        self.set(phase, why, message.clone());
        match existing {
            Some(old) if old != windows => {
                let note = match old.first() {
                    Some(first) if first.start != plan.start => format!(
                        "planned start moved from {}: {message}",
                        fmt_time(first.start)
                    ),
                    _ => format!("planned windows changed: {message}"),
                };
                self.event(NoteKind::Normal, "Replanned", "Plan", note);
            }
            Some(_) => {}
            None if !paused => self.event(NoteKind::Normal, "Deferred", "Plan", message),
            None => self.event(NoteKind::Normal, "Replanned", "Plan", message),
        }
        self.decision.requeue_at = Some(plan.start.min(release_by));
    }

    pub(super) fn record_plan(&mut self, plan: &Plan, version: &str, duration: TimeDelta) {
        let s = &mut self.status;
        s.planned_start = Some(plan.start);
        s.windows = windows_of(plan);
        s.expected_intensity = Some(plan.expected_intensity);
        s.run_now_intensity = plan.run_now_intensity;
        s.savings_percent = plan.savings_percent();
        s.coverage = Some(plan.coverage);
        s.forecast_version = Some(version.to_string());
        let estimate = emissions::plan_estimate(self.spec, plan, duration);
        s.estimated_energy_kwh = estimate.map(|e| e.energy_kwh);
        s.estimated_emissions_grams = estimate.map(|e| e.emissions_grams);
        s.estimated_avoided_grams = estimate.and_then(|e| e.avoided_grams);
    }

    pub(super) fn plan_message(&self, plan: &Plan, release_by: DateTime<Utc>) -> String {
        let mut text = format!(
            "planned start {} ({}; expected {:.0} gCO2eq/kWh",
            fmt_time(plan.start),
            plan.reason,
            plan.expected_intensity
        );
        if let (Some(now), Some(saving)) = (plan.run_now_intensity, plan.savings_percent()) {
            text.push_str(&format!(" against {now:.0} now, saving {saving:.1}%"));
        }
        text.push(')');
        if plan.windows.len() > 1 {
            text.push_str(&format!(" in {} windows", plan.windows.len()));
        }
        text.push_str(&format!(
            "; released by {} at the latest",
            fmt_time(release_by)
        ));
        if self.spec.power_watts == 0.0 {
            text.push_str(
                "; its power estimate is 0 W, so it reports no emissions: set carbonshift.dev/power or give its containers CPU or GPU requests",
            );
        }
        text
    }

    /// The reason of a Job that runs: kept from before, else worked out from the Job.
    pub(super) fn running_reason(&self) -> String {
        if let Some(old) = self.old
            && matches!(
                old.phase,
                Some(Phase::Released | Phase::Running | Phase::NotDeferred)
            )
            && let Some(r) = &old.reason
            && r != reason::SUSPENDED_BY_OWNER
        {
            return r.clone();
        }
        let job = self.job;
        if job.released_marker.is_some() {
            return self.derived_release_reason().as_str().to_string();
        }
        if job.held_marker {
            return reason::RELEASED_BY_OWNER.to_string();
        }
        self.not_held_reason().to_string()
    }

    /// Why a Job carrying `released-at` was released, when its status does not record the
    /// release yet (the status is written with the Job controller's answer, or its write was
    /// lost): the `release-reason` written with the release, else worked out from the times
    /// (a release by an older carbonshift, or by someone else).
    pub(super) fn derived_release_reason(&self) -> ReleaseReason {
        if let Some(reason) = self.job.release_reason {
            return reason;
        }
        let Some(at) = self.job.released_at else {
            return ReleaseReason::ManualRelease;
        };
        if self.job.run_now {
            return ReleaseReason::ManualRelease;
        }
        if self.old_phase == Some(Phase::Paused) {
            // A paused workload's own latest start is the one its status got at the pause.
            let release_by = self
                .old
                .and_then(|s| s.latest_start)
                .unwrap_or(self.spec.latest_start)
                - self.config.margin;
            let planned = self.old.and_then(|s| s.planned_start);
            return match () {
                _ if at >= release_by => ReleaseReason::DeadlineRelease,
                _ if planned.is_some_and(|p| at >= p) => ReleaseReason::Resumed,
                _ => ReleaseReason::ManualRelease,
            };
        }
        // The state machine's own precedence: the deadline rule before the plan.
        let release_by = self.spec.latest_start - self.config.margin;
        if at >= release_by {
            return ReleaseReason::DeadlineRelease;
        }
        match self.old.and_then(|s| s.planned_start) {
            Some(planned) if at >= planned => ReleaseReason::Released,
            _ => ReleaseReason::ManualRelease,
        }
    }

    pub(super) fn not_held_reason(&self) -> &'static str {
        let job = self.job;
        match &job.managed_elsewhere {
            Some(ManagedElsewhere::Kueue) => return reason::KUEUE,
            Some(ManagedElsewhere::ManagedBy(_)) => return reason::MANAGED_BY,
            None => {}
        }
        match &job.deferral {
            Ok(Some(d)) if d.dry_run => reason::DRY_RUN,
            Ok(Some(d)) if d.run_now => reason::RUN_NOW,
            Ok(Some(d)) if !d.is_feasible(d.submitted_at) => reason::INFEASIBLE,
            Ok(Some(_)) => reason::WEBHOOK_BYPASSED,
            Ok(None) => reason::NOT_DEFERRABLE,
            Err(_) => reason::INVALID_ANNOTATIONS,
        }
    }

    pub(super) fn running_phase(&mut self) -> Phase {
        let running = self.job.active > 0 || self.old_phase == Some(Phase::Running);
        if running {
            if self.status.started_at.is_none() {
                self.status.started_at = Some(self.now);
            }
            Phase::Running
        } else if self.job.released_marker.is_some() || self.job.held_marker {
            Phase::Released
        } else {
            Phase::NotDeferred
        }
    }

    pub(super) fn running(&mut self, state: State) {
        if state == State::Released
            && let Some(until) = self.awaits_answer()
        {
            self.awaiting_answer = true;
            self.decision.requeue_at = Some(until);
            return;
        }
        let why = self.running_reason();
        if self.status.released_at.is_none() {
            self.status.released_at = self.job.released_at;
        }
        let phase = self.running_phase();
        let message = match (phase, state) {
            (Phase::Running, _) => format!("running ({why})"),
            (_, State::ReleasedByOwner) => {
                "unsuspended by its owner, not by carbonshift; no pod active yet".to_string()
            }
            _ => format!("released ({why}); no pod active yet"),
        };
        let first_owner_release = state == State::ReleasedByOwner
            && !matches!(self.old_phase, Some(Phase::Released | Phase::Running));
        self.set_following(phase, &why, message);
        if first_owner_release {
            self.event(
                NoteKind::Normal,
                reason::RELEASED_BY_OWNER,
                "Track",
                "the held Job was unsuspended by someone other than carbonshift".to_string(),
            );
        }
        if state == State::Released {
            self.maybe_pause(&why);
        }
    }

    /// Whether a release is recorded in the status together with the answer of the workload's
    /// controller rather than on its own: the kind reports its start
    /// ([`WorkloadView::reports_start`]), [`Config::release_ack_wait`] is set, and the status
    /// records the workload as held.
    pub(super) fn records_release_with_answer(&self) -> bool {
        self.config.release_ack_wait > TimeDelta::zero()
            && self.job.reports_start
            && matches!(
                self.old_phase,
                Some(Phase::Pending | Phase::Deferred | Phase::Paused)
            )
    }

    /// Until when the status waits for the answer of the workload's controller to carbonshift's
    /// release, if it does: the kind reports its start ([`WorkloadView::reports_start`]), no pod
    /// is active, no start time since the release, the status does not record the release yet,
    /// and [`Config::release_ack_wait`] since the release has not passed. So that the release and
    /// the phase it leads to (`Running`, or `Released` when the controller started the workload
    /// without pods) take one status write rather than two.
    pub(super) fn awaits_answer(&self) -> Option<DateTime<Utc>> {
        let job = self.job;
        if !self.records_release_with_answer() || job.active > 0 {
            return None;
        }
        let wait = self.config.release_ack_wait;
        let at = job.released_at?;
        // Start times have whole seconds; the release marker may have more.
        let released_second = at - TimeDelta::nanoseconds(i64::from(at.timestamp_subsec_nanos()));
        let answered = job.start_time.is_some_and(|s| s >= released_second);
        let until = at + wait;
        (!answered && self.now < until).then_some(until)
    }

    /// The pause of an interruptible Job at the end of the window it was released in.
    pub(super) fn maybe_pause(&mut self, why: &str) {
        let planned = matches!(
            ReleaseReason::parse(why),
            Some(ReleaseReason::Released | ReleaseReason::Resumed)
        );
        if !self.spec.interruptible || !planned {
            return;
        }
        let Some(segment_start) = self.job.released_at else {
            return;
        };
        let windows = self.status.windows.clone();
        let Some(current) = windows.iter().position(|w| w.end > segment_start) else {
            return;
        };
        let end = windows[current].end;
        let later: Vec<TimeWindow> = windows[current + 1..].to_vec();
        if later.is_empty() {
            return;
        }
        if self.now < end {
            self.decision.requeue_at = Some(end);
            return;
        }
        let (Some(duration), Ok(base)) = (
            self.duration(),
            spec_constraints(self.spec, self.config.margin),
        ) else {
            return;
        };
        let ran = self.ran() + (self.now - segment_start);
        let remaining = duration - ran;
        if remaining <= TimeDelta::zero() {
            return;
        }
        let Ok(after) = base.remaining(remaining) else {
            return;
        };
        let (Ok(latest_start), Ok(release_by)) = (after.latest_start(), after.release_by()) else {
            return;
        };
        if self.now >= release_by {
            // Pausing now would miss the deadline: keep running.
            return;
        }
        self.status.runs.push(TimeWindow {
            start: segment_start,
            end: self.now,
        });
        self.status.windows = later.clone();
        self.status.planned_start = later.first().map(|w| w.start);
        self.status.latest_start = Some(latest_start);
        let next = later.first().map_or(release_by, |w| w.start);
        let message = format!(
            "paused after {} of run time; {} left, next window at {}, resumed by {} at the latest",
            format_duration(ran),
            format_duration(remaining),
            fmt_time(next),
            fmt_time(release_by)
        );
        self.set(Phase::Paused, reason::PAUSED, message.clone());
        self.decision.job_action = Some(JobAction::Pause);
        self.event(NoteKind::Normal, reason::PAUSED, "Pause", message);
        self.decision.requeue_at = Some(next.min(release_by));
    }

    pub(super) fn suspended_by_owner(&mut self) {
        if self.status.released_at.is_none() {
            self.status.released_at = self.job.released_at;
        }
        let first = self.status.reason.as_deref() != Some(reason::SUSPENDED_BY_OWNER);
        let message =
            "suspended again by its owner after carbonshift released it; carbonshift leaves it alone"
                .to_string();
        self.set(Phase::Released, reason::SUSPENDED_BY_OWNER, message.clone());
        if first {
            self.event(
                NoteKind::Normal,
                reason::SUSPENDED_BY_OWNER,
                "Track",
                message,
            );
        }
    }

    pub(super) fn not_held(&mut self) {
        let why = self.running_reason();
        let phase = self.running_phase();
        let first = !matches!(self.old_phase, Some(Phase::NotDeferred | Phase::Running));
        let explanation = match why.as_str() {
            reason::DRY_RUN => "a dry run: planned and reported, never held".to_string(),
            reason::RUN_NOW => "admitted with carbonshift.dev/run-now: never held".to_string(),
            reason::INFEASIBLE => format!(
                "not held: its deadline {} leaves no time to wait",
                fmt_time(self.spec.deadline)
            ),
            reason::WEBHOOK_BYPASSED => {
                "not held: deferrable, but created running without carbonshift's admission webhook"
                    .to_string()
            }
            reason::KUEUE => "not held: Kueue manages this Job".to_string(),
            reason::MANAGED_BY => {
                "not held: another controller manages this Job (spec.managedBy)".to_string()
            }
            reason::INVALID_ANNOTATIONS => "not held: its annotations cannot be read".to_string(),
            _ => "not held".to_string(),
        };
        let message = if phase == Phase::Running {
            format!("running; {explanation}")
        } else {
            explanation.clone()
        };
        self.set_following(phase, &why, message);
        // A dry run says so with its plan instead.
        if first
            && why != reason::DRY_RUN
            && let Some(known) = reason::known(&why)
        {
            let type_ = if why == reason::WEBHOOK_BYPASSED {
                NoteKind::Warning
            } else {
                NoteKind::Normal
            };
            self.event(type_, known, "Track", explanation);
        }
        if why == reason::DRY_RUN {
            self.dry_run_plan();
        }
    }

    /// The plan a dry run would have had, made once (again if the constraints change) from the
    /// submission time.
    pub(super) fn dry_run_plan(&mut self) {
        let Some(f) = self.forecast.data().filter(|f| f.fresh) else {
            return;
        };
        let planned = self.old.is_some_and(|s| s.forecast_version.is_some());
        if planned && self.old_spec == Some(self.spec) {
            return;
        }
        let Ok(constraints) = spec_constraints(self.spec, self.config.margin) else {
            return;
        };
        let Ok(plan) = planner::plan(f.forecast, &constraints, self.spec.submitted_at) else {
            return;
        };
        let duration = self.duration().unwrap_or_else(|| plan.run_time());
        self.record_plan(&plan, f.version, duration);
        let release_by = constraints.release_by().unwrap_or(self.spec.latest_start);
        let message = self.plan_message(&plan, release_by);
        self.event(
            NoteKind::Normal,
            reason::DRY_RUN,
            "Plan",
            format!("dry run, not held; would have been {message}"),
        );
    }

    pub(super) fn finished(&mut self, f: Finished) {
        if self.old_phase.is_some_and(Phase::is_terminal) {
            // Already recorded: nothing moves any more (and nothing is counted twice).
            if let Some(old) = self.old {
                let conditions = std::mem::take(&mut self.status.conditions);
                self.status = old.clone();
                self.status.conditions = conditions;
            }
            self.verification();
            return;
        }
        let why = self.running_reason();
        let at = f.at();
        let job = self.job;
        let started = self
            .status
            .started_at
            .or(job.start_time)
            .or(job.released_at)
            .unwrap_or(at)
            .min(at);
        self.status.started_at = Some(started);
        self.status.finished_at = Some(at);
        if self.status.released_at.is_none() {
            self.status.released_at = job.released_at;
        }
        let last_start = if self.status.runs.is_empty() {
            started
        } else {
            job.released_at
                .or(job.start_time)
                .unwrap_or(started)
                .min(at)
        };
        let mut runs: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            self.status.runs.iter().map(|w| (w.start, w.end)).collect();
        runs.push((last_start, at));
        if !self.status.runs.is_empty() {
            self.status.runs.push(TimeWindow {
                start: last_start,
                end: at,
            });
        }
        let held_by_us = job.held_marker || job.released_marker.is_some();
        let outcome = self
            .forecast
            .data()
            .and_then(|fc| emissions::outcome(self.spec, &runs, fc.forecast, fc.actuals));
        let (phase, verb) = match f {
            Finished::Succeeded(_) => (Phase::Succeeded, "succeeded"),
            Finished::Failed(_) => (Phase::Failed, "failed"),
        };
        let mut note = format!("the {} {verb} at {}", job.kind, fmt_time(at));
        match outcome {
            Some(o) => {
                self.status.actual_intensity = Some(o.intensity);
                self.status.estimated_energy_kwh = Some(o.energy_kwh);
                self.status.estimated_emissions_grams = Some(o.emissions_grams);
                let avoided = o.run_now_emissions_grams.map(|now| now - o.emissions_grams);
                if held_by_us {
                    self.status.estimated_avoided_grams = avoided;
                } else if why != reason::DRY_RUN {
                    // Nothing was shifted; a dry run keeps what its plan would have saved.
                    self.status.estimated_avoided_grams = Some(0.0);
                }
                note.push_str(&format!(
                    "; estimated {:.0} gCO2eq at {:.0} gCO2eq/kWh",
                    o.emissions_grams, o.intensity
                ));
                if held_by_us && let Some(avoided) = avoided {
                    note.push_str(&format!(", {avoided:.0} g avoided against running at once"));
                }
                self.decision.completion = Some(Completion {
                    emitted_grams: o.emissions_grams,
                    avoided_grams: avoided.filter(|_| held_by_us),
                });
            }
            None => {
                note.push_str("; no forecast data to estimate its emissions");
            }
        }
        self.set(phase, &why, note.clone());
        let type_ = if phase == Phase::Failed {
            NoteKind::Warning
        } else {
            NoteKind::Normal
        };
        self.event(type_, phase.as_str(), "Track", note);
        self.start_verification();
    }
}
