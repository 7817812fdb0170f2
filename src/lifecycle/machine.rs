//! The decision for a held or never-held workload: [`decide`] and the rules for a held one
//! (module documentation of [`super`]).

use chrono::{DateTime, TimeDelta, Utc};

use super::*;

/// Decides what to do about one Job. Pure: the same input and `now` give the same Decision.
pub fn decide(input: &Input<'_>, now: DateTime<Utc>) -> Decision {
    let job = input.job;
    if input
        .workload
        .is_some_and(|w| w.spec.job_ref.uid != job.uid)
    {
        return Decision {
            stale_workload: true,
            requeue_at: Some(now),
            ..Decision::default()
        };
    }
    let state = classify(job);
    let Some(spec) = effective_spec(job, input.workload) else {
        return without_spec(job, state, now);
    };
    let old = input.workload.and_then(|w| w.status.as_ref());
    let mut m = Machine {
        job,
        spec: &spec,
        old_spec: input.workload.map(|w| &w.spec),
        old,
        old_phase: old.and_then(|s| s.phase),
        status: old.cloned().unwrap_or_default(),
        forecast: input.forecast,
        measured: input.measured,
        fleet: input.fleet,
        config: input.config,
        now,
        decision: Decision::default(),
        awaiting_answer: false,
    };
    m.status.deadline = Some(spec.deadline);
    m.status.latest_start = Some(spec.latest_start);
    m.validity();
    match state {
        State::Finished(f) => m.finished(f),
        State::Held => m.held(),
        State::Released | State::ReleasedByOwner => m.running(state),
        State::SuspendedByOwner => m.suspended_by_owner(),
        State::NotHeld => m.not_held(),
    }
    m.conditions();
    let mut decision = m.decision;
    // The release is recorded together with the answer of the workload's controller: until
    // then the status stays exactly as it was, so nothing is written.
    decision.status = Some(if m.awaiting_answer {
        old.cloned().unwrap_or(m.status)
    } else {
        m.status
    });
    decision.spec = Some(spec);
    decision
}

/// A Job without usable constraints and without a workload: release it if carbonshift holds it
/// (fail open), otherwise leave it alone.
pub(super) fn without_spec(job: &WorkloadView, state: State, now: DateTime<Utc>) -> Decision {
    let mut decision = Decision::default();
    let error = job.deferral.as_ref().err().map(ToString::to_string);
    if let Some(error) = &error {
        decision.events.push(Note {
            kind: NoteKind::Warning,
            reason: reason::INVALID_ANNOTATIONS,
            action: "Validate",
            message: truncate(error),
        });
    }
    if state == State::Held && job.held_marker {
        let (reason, note) = match &error {
            _ if job.run_now => (
                ReleaseReason::ManualRelease,
                "released at once: carbonshift.dev/run-now is \"true\"".to_string(),
            ),
            Some(error) => (
                ReleaseReason::InvalidAnnotations,
                format!("released: its annotations cannot be read ({error})"),
            ),
            None => (
                ReleaseReason::ManualRelease,
                "released: carbonshift.dev/deferrable was removed or set to \"false\"".to_string(),
            ),
        };
        decision.job_action = Some(JobAction::Release {
            reason,
            planned: now,
        });
        decision.events.push(Note {
            kind: NoteKind::Warning,
            reason: reason.as_str(),
            action: "Release",
            message: truncate(&note),
        });
    }
    decision
}

/// Events notes are limited to 1 kB by the API.
pub(super) fn truncate(text: &str) -> String {
    const MAX: usize = 1000;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub(super) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) fn plan_reason(reason: PlanReason) -> &'static str {
    match reason {
        PlanReason::LowestIntensity => "LowestIntensity",
        PlanReason::PartialForecast => "PartialForecast",
        PlanReason::Heuristic => "Heuristic",
        PlanReason::CapacityShifted => "CapacityShifted",
        PlanReason::CapacityOverflow => "CapacityOverflow",
    }
}

pub(super) fn windows_of(plan: &Plan) -> Vec<TimeWindow> {
    plan.windows
        .iter()
        .map(|w| TimeWindow {
            start: w.start,
            end: w.end,
        })
        .collect()
}

pub(super) fn total(windows: &[TimeWindow]) -> TimeDelta {
    windows
        .iter()
        .fold(TimeDelta::zero(), |sum, w| sum + (w.end - w.start))
}

/// The start of the first window that has not ended by `now`, or of the last window when all
/// have (an overdue plan).
pub(super) fn next_start(windows: &[TimeWindow], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    windows
        .iter()
        .find(|w| w.end > now)
        .or(windows.last())
        .map(|w| w.start)
}

/// One decision in the making.
pub(super) struct Machine<'a> {
    pub(super) job: &'a WorkloadView,
    pub(super) spec: &'a CarbonWorkloadSpec,
    pub(super) old_spec: Option<&'a CarbonWorkloadSpec>,
    pub(super) old: Option<&'a CarbonWorkloadStatus>,
    pub(super) old_phase: Option<Phase>,
    pub(super) status: CarbonWorkloadStatus,
    pub(super) forecast: ForecastInput<'a>,
    pub(super) measured: Option<&'a Measured>,
    pub(super) fleet: Option<FleetPlan<'a>>,
    pub(super) config: &'a Config,
    pub(super) now: DateTime<Utc>,
    pub(super) decision: Decision,
    /// Set by [`Machine::running`] when the release waits for the answer of the workload's
    /// controller: the Decision keeps the old status.
    pub(super) awaiting_answer: bool,
}

impl Machine<'_> {
    pub(super) fn event(
        &mut self,
        kind: NoteKind,
        reason: &'static str,
        action: &'static str,
        message: String,
    ) {
        self.decision.events.push(Note {
            kind,
            reason,
            action,
            message: truncate(&message),
        });
    }

    pub(super) fn set(&mut self, phase: Phase, reason: &str, message: String) {
        self.status.phase = Some(phase);
        self.status.reason = Some(reason.to_string());
        self.status.message = Some(message);
    }

    /// Like [`Machine::set`], but an unchanged phase and reason keep their message (the one
    /// written with the transition, such as the release's), so that following a Job writes
    /// nothing until something happens.
    pub(super) fn set_following(&mut self, phase: Phase, reason: &str, message: String) {
        let unchanged = self.old.is_some_and(|o| {
            o.phase == Some(phase) && o.reason.as_deref() == Some(reason) && o.message.is_some()
        });
        if unchanged {
            self.status.phase = Some(phase);
            self.status.reason = Some(reason.to_string());
        } else {
            self.set(phase, reason, message);
        }
    }

    /// The `AnnotationsValid` condition, with a Warning Event when it turns false or the error
    /// changes.
    pub(super) fn validity(&mut self) {
        let error = self.job.deferral.as_ref().err().map(ToString::to_string);
        let previous = self
            .old
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.r#type == condition_type::ANNOTATIONS_VALID)
            })
            .cloned();
        let new = match &error {
            Some(error) => Condition::new(
                condition_type::ANNOTATIONS_VALID,
                false,
                reason::INVALID_ANNOTATIONS,
                truncate(error),
                None,
                self.now,
            ),
            None => Condition::new(
                condition_type::ANNOTATIONS_VALID,
                true,
                "Valid",
                "",
                None,
                self.now,
            ),
        };
        if let Some(error) = &error {
            let repeated = previous.is_some_and(|p| !p.is_true() && p.message == new.message);
            if !repeated {
                let kept = if self.old_spec.is_some() {
                    "; the last valid constraints stay in force"
                } else {
                    ""
                };
                self.event(
                    NoteKind::Warning,
                    reason::INVALID_ANNOTATIONS,
                    "Validate",
                    format!("{error}{kept}"),
                );
            }
        }
        condition::upsert(&mut self.status.conditions, new);
    }

    pub(super) fn conditions(&mut self) {
        let phase = self.status.phase.unwrap_or(Phase::Pending);
        let why = self.status.reason.clone().unwrap_or_default();
        let planned = if self.status.windows.is_empty() {
            Condition::new(
                condition_type::PLANNED,
                false,
                if why.is_empty() { "NotPlanned" } else { &why },
                "",
                None,
                self.now,
            )
        } else {
            Condition::new(condition_type::PLANNED, true, "Planned", "", None, self.now)
        };
        let held = if is_held_phase(phase) {
            Condition::new(condition_type::HELD, true, "Held", "", None, self.now)
        } else {
            Condition::new(
                condition_type::HELD,
                false,
                if why.is_empty() { "NotHeld" } else { &why },
                "",
                None,
                self.now,
            )
        };
        condition::upsert(&mut self.status.conditions, planned);
        condition::upsert(&mut self.status.conditions, held);
    }

    pub(super) fn duration(&self) -> Option<TimeDelta> {
        spec_duration(self.spec).ok()
    }

    /// Run time already done by an interruptible Job (its finished runs).
    pub(super) fn ran(&self) -> TimeDelta {
        total(&self.status.runs)
    }

    /// A release now. When the status records the workload as held, the kind answers a release
    /// with its start time and [`Config::release_ack_wait`] is set, the status is left as it was:
    /// the reconcile after the release's watch event records the release together with that
    /// answer (one status write, as for a release sent by the releaser). Otherwise the status
    /// says `Released`; it is written only if the patch succeeds.
    pub(super) fn release(
        &mut self,
        reason: ReleaseReason,
        planned: DateTime<Utc>,
        message: String,
    ) {
        let type_ = match reason {
            ReleaseReason::Released | ReleaseReason::Resumed | ReleaseReason::ManualRelease => {
                NoteKind::Normal
            }
            ReleaseReason::DeadlineRelease
            | ReleaseReason::NoForecast
            | ReleaseReason::InvalidAnnotations => NoteKind::Warning,
        };
        self.decision.job_action = Some(JobAction::Release { reason, planned });
        // A workload's first status is written now anyway, so it may as well say `Released`.
        if !self.records_release_with_answer() {
            self.status.released_at = self.status.released_at.or(Some(self.now));
            self.set(Phase::Released, reason.as_str(), message.clone());
        }
        self.event(type_, reason.as_str(), "Release", message);
    }

    pub(super) fn planned_release(&mut self, start: DateTime<Utc>) {
        if self.status.runs.is_empty() {
            self.release(
                ReleaseReason::Released,
                start,
                format!("released at its planned start {}", fmt_time(start)),
            );
        } else {
            let ran = format_duration(self.ran());
            self.release(
                ReleaseReason::Resumed,
                start,
                format!(
                    "resumed at its next planned window {} after {ran} of run time",
                    fmt_time(start)
                ),
            );
        }
    }

    pub(super) fn held(&mut self) {
        let job = self.job;
        if matches!(job.deferral, Ok(None)) {
            return self.release(
                ReleaseReason::ManualRelease,
                self.now,
                "released: carbonshift.dev/deferrable was removed or set to \"false\"".to_string(),
            );
        }
        if self.spec.dry_run {
            return self.release(
                ReleaseReason::ManualRelease,
                self.now,
                "released: carbonshift.dev/dry-run is \"true\"; a dry run is never held"
                    .to_string(),
            );
        }
        if job.run_now {
            return self.release(
                ReleaseReason::ManualRelease,
                self.now,
                "released at once: carbonshift.dev/run-now is \"true\"".to_string(),
            );
        }
        let margin = self.config.margin;
        let ran = self.ran();
        let base = match spec_constraints(self.spec, margin) {
            Ok(c) => c,
            Err(e) => {
                return self.release(
                    ReleaseReason::InvalidAnnotations,
                    self.now,
                    format!("released: its constraints cannot be planned ({e})"),
                );
            }
        };
        let constraints = if ran > TimeDelta::zero() {
            match self.duration().map(|d| base.remaining(d - ran)) {
                Some(Ok(c)) => c,
                _ => {
                    return self.release(
                        ReleaseReason::DeadlineRelease,
                        self.now,
                        format!(
                            "resumed at once: it has run {} and its expected run time is used up",
                            format_duration(ran)
                        ),
                    );
                }
            }
        } else {
            base
        };
        // Validated above, so these cannot fail; fall back to the spec's times all the same.
        let latest_start = constraints.latest_start().unwrap_or(self.spec.latest_start);
        let release_by = constraints
            .release_by()
            .unwrap_or(self.spec.latest_start - margin);
        self.status.latest_start = Some(latest_start);

        // The fleet's plan counts only when it was made for these constraints (a paused
        // workload's remaining run, say, is planned alone).
        let fleet = self.fleet.filter(|f| *f.constraints == constraints);
        if let Some(f) = fleet {
            self.status.placement = f.placement.cloned();
        }

        // 2. The deadline rule.
        if self.now >= release_by {
            self.over_capacity(fleet, release_by);
            return self.release(
                ReleaseReason::DeadlineRelease,
                release_by,
                format!(
                    "released by the deadline rule: latest start {} minus the {} margin",
                    fmt_time(latest_start),
                    format_duration(margin)
                ),
            );
        }

        let paused = ran > TimeDelta::zero();
        let existing: Option<Vec<TimeWindow>> = self
            .old
            .filter(|_| matches!(self.old_phase, Some(Phase::Deferred | Phase::Paused)))
            .map(|s| s.windows.clone())
            .filter(|w| !w.is_empty());

        // 3. An existing plan whose start has come is released, whatever the forecast did since.
        if let Some(start) = existing.as_deref().and_then(|w| next_start(w, self.now))
            && start <= self.now
        {
            self.over_capacity(fleet, start);
            return self.planned_release(start);
        }

        let fresh = self.forecast.data().filter(|f| f.fresh);
        let needs_plan = match &existing {
            None => true,
            Some(windows) => {
                let version_changed =
                    match (&self.old.and_then(|s| s.forecast_version.clone()), fresh) {
                        (Some(v), Some(f)) => v != f.version,
                        _ => true,
                    };
                let spec_changed = self.old_spec != Some(self.spec);
                let remaining_changed =
                    paused && self.duration().is_some_and(|d| total(windows) != d - ran);
                // The fleet moved it (others arrived or finished, a re-plan).
                let fleet_moved = fleet.is_some_and(|f| {
                    f.scheduled
                        .plan
                        .as_ref()
                        .is_ok_and(|plan| windows_of(plan) != *windows)
                });
                version_changed || spec_changed || remaining_changed || fleet_moved
            }
        };

        if let Some(f) = fresh
            && needs_plan
        {
            let planned = match fleet {
                Some(fleet) => fleet.scheduled.plan.clone(),
                None => planner::plan(f.forecast, &constraints, self.now),
            };
            match planned {
                Ok(plan) => return self.adopt_plan(&plan, f.version, existing, release_by),
                Err(NoPlan::DeadlinePassed { .. }) => {
                    return self.release(
                        ReleaseReason::DeadlineRelease,
                        release_by,
                        format!(
                            "released by the deadline rule: latest start {} minus the {} margin",
                            fmt_time(latest_start),
                            format_duration(margin)
                        ),
                    );
                }
                Err(NoPlan::InvalidConstraints { error }) => {
                    return self.release(
                        ReleaseReason::InvalidAnnotations,
                        self.now,
                        format!("released: its constraints cannot be planned ({error})"),
                    );
                }
                Err(NoPlan::NoCoverage { from, to }) => {
                    if existing.is_none() {
                        return self.hold_unplanned(
                            reason::NO_COVERAGE,
                            format!(
                                "held without a plan: the forecast has no data between {} and {}; released by {} at the latest",
                                fmt_time(from),
                                fmt_time(to),
                                fmt_time(release_by)
                            ),
                            release_by,
                        );
                    }
                }
            }
        }

        match existing {
            Some(windows) => {
                // Keep the plan: the forecast is stale or missing, or nothing changed.
                let start = next_start(&windows, self.now).unwrap_or(release_by);
                let phase = if paused {
                    Phase::Paused
                } else {
                    Phase::Deferred
                };
                self.status.phase = Some(phase);
                self.decision.requeue_at = Some(start.min(release_by));
            }
            None => {
                if let ForecastInput::Awaiting { since } = self.forecast {
                    let until = since.max(self.spec.submitted_at) + self.config.forecast_wait;
                    if self.now < until {
                        return self.await_forecast(until, release_by);
                    }
                }
                let why = self.why_no_forecast();
                match self.config.no_forecast {
                    NoForecastPolicy::Release => self.release(
                        ReleaseReason::NoForecast,
                        self.now,
                        format!("released at once (fail open): {why}"),
                    ),
                    NoForecastPolicy::Hold => self.hold_unplanned(
                        reason::NO_FORECAST,
                        format!(
                            "held without a plan: {why}; released by {} at the latest",
                            fmt_time(release_by)
                        ),
                        release_by,
                    ),
                }
            }
        }
    }

    /// A release at `at` from a fleet plan that lies above the capacity cap: flags the Decision
    /// and adds the `DeadlineOverCapacity` Warning.
    fn over_capacity(&mut self, fleet: Option<FleetPlan<'_>>, at: DateTime<Utc>) {
        let Some(f) = fleet.filter(|f| f.scheduled.overflow) else {
            return;
        };
        self.decision.over_capacity = true;
        self.event(
            NoteKind::Warning,
            reason::DEADLINE_OVER_CAPACITY,
            "Release",
            format!(
                "released at {} above the capacity of CarbonForecast {:?}: no window within the cap leaves time to meet the deadline {}",
                fmt_time(at),
                f.forecast,
                fmt_time(self.spec.deadline)
            ),
        );
    }

    /// Why the forecast cannot be used, for the `NoForecast` message.
    pub(super) fn why_no_forecast(&self) -> String {
        let name = self
            .fleet
            .map_or(self.spec.forecast.as_str(), |f| f.forecast);
        match self.forecast {
            ForecastInput::Data(_) => format!("the CarbonForecast {name:?} is stale"),
            ForecastInput::Missing => format!("no CarbonForecast {name:?} exists"),
            ForecastInput::Failed { reason } => {
                format!("the CarbonForecast {name:?} has no data (Ready=False, reason {reason})")
            }
            ForecastInput::Awaiting { .. } => format!(
                "the CarbonForecast {name:?} produced no data within the {} first-data wait",
                format_duration(self.config.forecast_wait)
            ),
        }
    }

    /// Held without a plan while the forecast's first data is on its way: `Pending`, reason
    /// `AwaitingForecast`, looked at again soon (and at once when the data arrives).
    pub(super) fn await_forecast(&mut self, until: DateTime<Utc>, release_by: DateTime<Utc>) {
        let why = reason::AWAITING_FORECAST;
        let changed = self.status.reason.as_deref() != Some(why);
        self.status.windows.clear();
        self.status.planned_start = None;
        let message = format!(
            "held: the CarbonForecast {:?} has no data yet; waiting for it until {}, released by {} at the latest",
            self.spec.forecast,
            fmt_time(until),
            fmt_time(release_by)
        );
        let paused = self.ran() > TimeDelta::zero();
        self.set(
            if paused {
                Phase::Paused
            } else {
                Phase::Pending
            },
            why,
            message.clone(),
        );
        if changed {
            self.event(NoteKind::Normal, why, "Plan", message);
        }
        self.decision.requeue_at = Some((self.now + AWAIT_RECHECK).min(until).min(release_by));
    }

    /// Held without a plan until the forecast changes or the deadline rule.
    pub(super) fn hold_unplanned(
        &mut self,
        why: &'static str,
        message: String,
        release_by: DateTime<Utc>,
    ) {
        let paused = self.ran() > TimeDelta::zero();
        let phase = if paused {
            Phase::Paused
        } else {
            Phase::Pending
        };
        let changed = self.old_phase != Some(phase) || self.status.reason.as_deref() != Some(why);
        self.status.windows.clear();
        self.status.planned_start = None;
        self.set(phase, why, message.clone());
        if changed {
            self.event(NoteKind::Warning, why, "Plan", message);
        }
        self.decision.requeue_at = Some(release_by);
    }
}
