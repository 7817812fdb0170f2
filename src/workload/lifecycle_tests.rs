//! Tests of the workload state machine: scenario tests through a small simulator that applies
//! each Decision to the Job and the workload the way the controller does, table tests of single
//! decisions, and property tests of the invariants over random forecasts and event orders.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

use crate::api::annotations::{
    AnnotationDefaults, DEADLINE, DEFERRABLE, DRY_RUN, DURATION, HELD, INTERRUPTIBLE, MAX_DELAY,
    POWER, RELEASE_REASON, RELEASED_AT, RUN_NOW, SUBMITTED_AT,
};
use crate::api::workload::JobRef;
use crate::api::workload::TimeWindow;
use crate::api::{CarbonWorkload, CarbonWorkloadSpec, CarbonWorkloadStatus, Phase};
use crate::lifecycle::*;
use crate::planner::Forecast;
use crate::planner::{Point, hourly_points};

const T0: &str = "2026-05-04T10:00:00Z";

fn t0() -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(T0) {
        Ok(t) => t.to_utc(),
        Err(e) => panic!("{e}"),
    }
}

/// `T0` plus `minutes`.
fn at(minutes: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(minutes)
}

/// `T0` plus `hours`.
fn hour(hours: i64) -> DateTime<Utc> {
    t0() + TimeDelta::hours(hours)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn jiff(t: DateTime<Utc>) -> Time {
    match stamp(t).parse::<k8s_openapi::jiff::Timestamp>() {
        Ok(ts) => Time(ts),
        Err(e) => panic!("{e}"),
    }
}

/// Hourly points from `T0`.
fn hourly(values: &[f64]) -> Forecast {
    match Forecast::new(hourly_points(t0(), values)) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}

/// 48 hours: 300 everywhere except 200 at 02:00, 50 at 03:00 and 60 at 04:00 (after `T0`). The
/// best 2-hour window is 03:00–05:00 at 55 gCO2eq/kWh; running at once costs 300.
fn main_forecast() -> Forecast {
    let mut values = vec![300.0; 48];
    values[2] = 200.0;
    values[3] = 50.0;
    values[4] = 60.0;
    hourly(&values)
}

/// 48 hours: 50 at 02:00, 400 at 03:00, 60 at 04:00, 300 elsewhere: an interruptible 2-hour Job
/// runs 02:00–03:00 and 04:00–05:00.
fn split_forecast() -> Forecast {
    let mut values = vec![300.0; 48];
    values[2] = 50.0;
    values[3] = 400.0;
    values[4] = 60.0;
    hourly(&values)
}

fn assert_close(actual: Option<f64>, expected: f64) {
    match actual {
        Some(a) => assert!((a - expected).abs() < 1e-6, "{a} != {expected}"),
        None => panic!("None != {expected}"),
    }
}

/// A Job fixture: `train` in `ml`, created at `T0`, deferrable for up to 8h, 2h long, 1 kW.
struct JobBuilder(Job);

fn job() -> JobBuilder {
    let mut job = Job::default();
    job.metadata.name = Some("train".into());
    job.metadata.namespace = Some("ml".into());
    job.metadata.uid = Some("uid-1".into());
    job.metadata.resource_version = Some("1".into());
    job.metadata.creation_timestamp = Some(jiff(t0()));
    job.spec = Some(JobSpec::default());
    JobBuilder(job)
        .annotate(DEFERRABLE, "true")
        .annotate(MAX_DELAY, "8h")
        .annotate(DURATION, "2h")
        .annotate(POWER, "1kW")
}

impl JobBuilder {
    fn annotate(mut self, key: &str, value: &str) -> Self {
        annotate(&mut self.0, key, value);
        self
    }

    fn remove(mut self, key: &str) -> Self {
        if let Some(a) = self.0.metadata.annotations.as_mut() {
            a.remove(key);
        }
        self
    }

    /// Admitted by the webhook: suspended, held, submitted at `T0`.
    fn held(self) -> Self {
        self.suspend(true)
            .annotate(HELD, "true")
            .annotate(SUBMITTED_AT, T0)
    }

    fn suspend(mut self, suspend: bool) -> Self {
        set_suspend(&mut self.0, suspend);
        self
    }

    fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    fn managed_by(mut self, manager: &str) -> Self {
        if let Some(spec) = self.0.spec.as_mut() {
            spec.managed_by = Some(manager.into());
        }
        self
    }

    fn active(mut self, n: i32) -> Self {
        set_active(&mut self.0, n);
        self
    }

    fn build(self) -> Job {
        self.0
    }
}

fn annotate(job: &mut Job, key: &str, value: &str) {
    job.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
}

fn unannotate(job: &mut Job, key: &str) {
    if let Some(a) = job.metadata.annotations.as_mut() {
        a.remove(key);
    }
}

fn set_suspend(job: &mut Job, suspend: bool) {
    job.spec.get_or_insert_with(JobSpec::default).suspend = Some(suspend);
}

fn set_active(job: &mut Job, n: i32) {
    job.status.get_or_insert_with(JobStatus::default).active = Some(n);
}

fn finish(job: &mut Job, kind: &str, when: DateTime<Utc>) {
    let status = job.status.get_or_insert_with(JobStatus::default);
    status.active = Some(0);
    status.conditions = Some(vec![JobCondition {
        type_: kind.into(),
        status: "True".into(),
        last_transition_time: Some(jiff(when)),
        ..Default::default()
    }]);
}

fn margin() -> TimeDelta {
    TimeDelta::minutes(5)
}

/// What the shell knows of a forecast without data.
#[derive(Debug, Clone)]
enum Absent {
    Missing,
    Awaiting(DateTime<Utc>),
    Failed(String),
}

/// Applies Decisions to a Job and its workload the way the controller does.
struct Sim {
    job: Job,
    workload: Option<CarbonWorkload>,
    forecast: Option<Forecast>,
    actuals: Option<Forecast>,
    version: String,
    fresh: bool,
    /// What the shell knows when `forecast` is `None`.
    absent: Absent,
    config: Config,
    defaults: AnnotationDefaults,
    releases: Vec<(DateTime<Utc>, ReleaseReason, DateTime<Utc>)>,
    pauses: Vec<DateTime<Utc>>,
    completions: Vec<Completion>,
    /// What the shell fetched of the provider's measured history.
    measured: Option<Measured>,
    /// The fleet's plan (constraints it was made for, the plan).
    fleet: Option<(
        crate::planner::Constraints,
        crate::planner::fleet::Scheduled,
    )>,
}

impl Sim {
    fn new(job: Job) -> Sim {
        Sim {
            job,
            workload: None,
            forecast: Some(main_forecast()),
            actuals: None,
            version: "100".into(),
            fresh: true,
            absent: Absent::Missing,
            config: Config {
                margin: margin(),
                no_forecast: NoForecastPolicy::Release,
                forecast_wait: DEFAULT_FORECAST_WAIT,
                verify_give_up: verify::DEFAULT_GIVE_UP,
                release_ack_wait: crate::lifecycle::DEFAULT_RELEASE_ACK_WAIT,
            },
            defaults: AnnotationDefaults::default(),
            releases: vec![],
            pauses: vec![],
            completions: vec![],
            measured: None,
            fleet: None,
        }
    }

    fn view(&self, now: DateTime<Utc>) -> WorkloadView {
        crate::workload::job::view(&self.job, &self.defaults, now)
    }

    fn decide(&self, now: DateTime<Utc>) -> Decision {
        let view = self.view(now);
        let forecast = match (&self.forecast, &self.absent) {
            (Some(f), _) => ForecastInput::Data(ForecastView {
                forecast: f,
                actuals: self.actuals.as_ref(),
                version: &self.version,
                fresh: self.fresh,
            }),
            (None, Absent::Missing) => ForecastInput::Missing,
            (None, Absent::Awaiting(since)) => ForecastInput::Awaiting { since: *since },
            (None, Absent::Failed(reason)) => ForecastInput::Failed { reason },
        };
        let input = Input {
            job: &view,
            workload: self.workload.as_ref(),
            forecast,
            config: &self.config,
            measured: self.measured.as_ref(),
            fleet: self
                .fleet
                .as_ref()
                .map(|(constraints, scheduled)| FleetPlan {
                    constraints,
                    scheduled,
                    forecast: "default",
                    placement: None,
                }),
        };
        let decision = decide(&input, now);
        check_invariants(&view, &decision, &self.config, now);
        decision
    }

    fn step(&mut self, now: DateTime<Utc>) -> Decision {
        let decision = self.decide(now);
        self.apply(&decision, now);
        decision
    }

    fn apply(&mut self, decision: &Decision, now: DateTime<Utc>) {
        if decision.stale_workload {
            self.workload = None;
            return;
        }
        match &decision.job_action {
            Some(JobAction::Release { reason, planned }) => {
                self.releases.push((now, *reason, *planned));
                set_suspend(&mut self.job, false);
                // As the guarded release patch does (controller::release).
                annotate(&mut self.job, RELEASED_AT, &stamp(now));
                annotate(&mut self.job, RELEASE_REASON, reason.as_str());
                self.bump();
            }
            Some(JobAction::Pause) => {
                self.pauses.push(now);
                set_suspend(&mut self.job, true);
                unannotate(&mut self.job, RELEASED_AT);
                self.bump();
            }
            None => {}
        }
        if let Some(c) = decision.completion {
            self.completions.push(c);
        }
        if let Some(spec) = &decision.spec {
            let mut w = CarbonWorkload::new("train", spec.clone());
            w.metadata.namespace = Some("ml".into());
            w.status = decision.status.clone();
            self.workload = Some(w);
        }
    }

    fn edit(&mut self, edit: impl FnOnce(&mut Job)) {
        edit(&mut self.job);
        self.bump();
    }

    fn bump(&mut self) {
        let rv = self
            .job
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        self.job.metadata.resource_version = Some((rv + 1).to_string());
    }

    fn status(&self) -> CarbonWorkloadStatus {
        self.workload
            .as_ref()
            .and_then(|w| w.status.clone())
            .unwrap_or_default()
    }

    fn phase(&self) -> Option<Phase> {
        self.status().phase
    }
}

/// What must hold for every Decision.
fn check_invariants(job: &WorkloadView, d: &Decision, config: &Config, now: DateTime<Utc>) {
    let held = classify(job) == State::Held;
    match &d.job_action {
        Some(JobAction::Release { planned, .. }) => {
            assert!(held, "released a Job that is not held: {job:?}");
            assert!(job.suspend && job.released_marker.is_none());
            assert!(*planned <= now, "planned {planned} after now {now}");
        }
        Some(JobAction::Pause) => {
            assert!(!job.suspend && job.released_marker.is_some());
        }
        None if held => {
            if let Some(status) = &d.status {
                let latest = status.latest_start.unwrap_or(DateTime::<Utc>::MAX_UTC);
                let requeue = d.requeue_at.unwrap_or(DateTime::<Utc>::MAX_UTC);
                assert!(
                    requeue <= latest - config.margin,
                    "held without a release: requeue {requeue} after {latest} − margin"
                );
                assert!(
                    now < latest - config.margin,
                    "held at {now} past the latest start {latest} − margin"
                );
            }
        }
        None => {}
    }
    if let Some(status) = &d.status {
        for c in &status.conditions {
            assert!(!c.reason.is_empty());
        }
        for e in &d.events {
            assert!(
                e.reason
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase())
                    && e.reason.chars().all(|c| c.is_ascii_alphanumeric()),
                "not PascalCase: {}",
                e.reason
            );
        }
    }
}

fn reasons(d: &Decision) -> Vec<&str> {
    d.events.iter().map(|e| e.reason).collect()
}

/// The message of the decision's Event with `reason`.
fn event_message<'a>(d: &'a Decision, reason: &str) -> Option<&'a str> {
    d.events
        .iter()
        .find(|e| e.reason == reason)
        .map(|e| e.message.as_str())
}

fn release_of(d: &Decision) -> Option<ReleaseReason> {
    match d.job_action {
        Some(JobAction::Release { reason, .. }) => Some(reason),
        _ => None,
    }
}

fn condition(status: &CarbonWorkloadStatus, kind: &str) -> (String, String) {
    status
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The full lifecycle
// ---------------------------------------------------------------------------------------------

#[test]
fn held_job_is_planned_released_at_its_start_and_followed_to_success() {
    let mut sim = Sim::new(job().held().build());

    // Pending → Deferred: planned into the cleanest 2 hours.
    let d = sim.step(t0());
    assert_eq!(d.job_action, None);
    assert_eq!(reasons(&d), ["Deferred"]);
    assert_eq!(d.requeue_at, Some(hour(3)));
    let spec = d.spec.clone().unwrap_or_else(|| panic!("no spec"));
    assert_eq!(spec.latest_start, hour(8));
    assert_eq!(spec.deadline, hour(10));
    assert_eq!(spec.power_watts, 1000.0);
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Deferred));
    assert_eq!(s.reason.as_deref(), Some("LowestIntensity"));
    assert_eq!(s.planned_start, Some(hour(3)));
    assert_eq!(
        s.windows,
        vec![TimeWindow {
            start: hour(3),
            end: hour(5)
        }]
    );
    assert_eq!(s.latest_start, Some(hour(8)));
    assert_eq!(s.deadline, Some(hour(10)));
    assert_close(s.expected_intensity, 55.0);
    assert_close(s.run_now_intensity, 300.0);
    assert_close(s.savings_percent, (300.0 - 55.0) / 300.0 * 100.0);
    assert_close(s.coverage, 1.0);
    // 1 kW × 1.2 PUE × 2 h = 2.4 kWh; × 55 = 132 g; at once × 300 = 720 g.
    assert_close(s.estimated_energy_kwh, 2.4);
    assert_close(s.estimated_emissions_grams, 132.0);
    assert_close(s.estimated_avoided_grams, 588.0);
    assert_eq!(s.forecast_version.as_deref(), Some("100"));
    assert_eq!(condition(&s, "Planned"), ("True".into(), "Planned".into()));
    assert_eq!(condition(&s, "Held"), ("True".into(), "Held".into()));
    assert_eq!(
        condition(&s, "AnnotationsValid"),
        ("True".into(), "Valid".into())
    );

    // Nothing changes before the start: same status, no event, same requeue.
    let before = sim.status();
    let d = sim.step(at(90));
    assert_eq!((d.job_action.clone(), d.events.len()), (None, 0));
    assert_eq!(d.requeue_at, Some(hour(3)));
    assert_eq!(d.status.as_ref(), Some(&before));

    // Released at the planned start. The status is not written with the release: it records
    // the release together with the Job controller's answer, in one write.
    let d = sim.step(hour(3));
    assert_eq!(
        d.job_action,
        Some(JobAction::Release {
            reason: ReleaseReason::Released,
            planned: hour(3)
        })
    );
    assert_eq!(reasons(&d), ["Released"]);
    assert_eq!(d.status.as_ref(), Some(&before));

    // The Job changed (our own patch), no answer yet: nothing more to do.
    let d = sim.step(hour(3));
    assert_eq!((d.job_action.clone(), d.events.len()), (None, 0));
    assert_eq!(d.status.as_ref(), Some(&before));

    // The Job controller answers: Deferred → Running, the release recorded with it.
    sim.edit(|j| set_active(j, 2));
    sim.step(hour(3));
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!(s.released_at, Some(hour(3)));
    assert_eq!(s.started_at, Some(hour(3)));
    assert_eq!(s.reason.as_deref(), Some("Released"));
    assert_eq!(condition(&s, "Held"), ("False".into(), "Released".into()));

    // Running → Succeeded: realised 55 g/kWh over 03:00–05:00, counterfactual 300 from T0.
    sim.edit(|j| finish(j, "Complete", hour(5)));
    let d = sim.step(at(301));
    assert_eq!(reasons(&d), ["Succeeded"]);
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.finished_at, Some(hour(5)));
    assert_close(s.actual_intensity, 55.0);
    assert_close(s.estimated_energy_kwh, 2.4);
    assert_close(s.estimated_emissions_grams, 132.0);
    assert_close(s.estimated_avoided_grams, 588.0);
    assert_eq!(sim.completions.len(), 1);
    assert!((sim.completions[0].emitted_grams - 132.0).abs() < 1e-6);
    assert_close(sim.completions[0].avoided_grams, 588.0);

    // Terminal: later reconciles (a restart) change nothing and count nothing again.
    let d = sim.step(hour(30));
    assert_eq!(d.status.as_ref(), Some(&s));
    assert_eq!((d.events.len(), d.completion), (0, None));
    assert_eq!(sim.releases.len(), 1);
}

/// A held Job planned, released at 03:00, running until 05:00 (1 kW × PUE 1.2).
fn succeeded_at_five() -> Sim {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.step(hour(3));
    sim.edit(|j| set_active(j, 2));
    sim.step(hour(3));
    sim.edit(|j| finish(j, "Complete", hour(5)));
    sim.step(at(301));
    sim
}

/// Measured hourly pieces from T0.
fn measured(values: &[f64]) -> Measured {
    Measured::Pieces {
        segments: hourly(values).segments().collect(),
        source: "UK Carbon Intensity API national actual".into(),
    }
}

#[test]
fn finished_jobs_are_verified_from_measured_values() {
    let mut sim = succeeded_at_five();
    let s = sim.status();
    // The transition to Succeeded starts the verification and asks to be looked at at once.
    let v = s
        .verification
        .clone()
        .unwrap_or_else(|| panic!("no verification"));
    assert_eq!(v.state, "Pending");
    assert!(s.verified.is_none());
    // Measured: 310, 290 from T0 (the counterfactual), 60, 40 during the run.
    sim.measured = Some(measured(&[310.0, 290.0, 200.0, 60.0, 40.0, 100.0]));
    let d = sim.step(at(310));
    assert_eq!(reasons(&d), ["Verified"]);
    let s = sim.status();
    let f = s
        .verified
        .clone()
        .unwrap_or_else(|| panic!("not verified: {s:?}"));
    // 2.4 kWh × 50 = 120 g; at once 2.4 × 300 = 720 g; 600 g avoided. The plan expected 55.
    assert!((f.intensity - 50.0).abs() < 1e-9, "{f:?}");
    assert!((f.counterfactual_intensity - 300.0).abs() < 1e-9);
    assert!((f.emissions_grams - 120.0).abs() < 1e-9);
    assert!((f.avoided_grams - 600.0).abs() < 1e-9);
    assert_close(f.forecast_error_percent, 10.0);
    assert_eq!(f.verified_at, at(310));
    assert_eq!(f.source, "UK Carbon Intensity API national actual");
    assert_eq!(s.verification.map(|v| v.state).as_deref(), Some("Verified"));
    // The estimates stay what they were; nothing is counted again.
    assert_close(s.estimated_avoided_grams, 588.0);
    assert_eq!(sim.completions.len(), 1);
    // Verified is final: the shell stops asking.
    assert!(!needs_verification(&sim.status()));
}

#[test]
fn verification_waits_for_publication_then_gives_up() {
    let mut sim = succeeded_at_five();
    // Published up to 04:00 only.
    sim.measured = Some(measured(&[310.0, 290.0, 200.0, 60.0]));
    let d = sim.step(at(310));
    let s = sim.status();
    let v = s
        .verification
        .clone()
        .unwrap_or_else(|| panic!("no verification"));
    assert_eq!(v.state, "Pending");
    assert!(
        v.message.contains("from 2026-05-04T14:00:00Z"),
        "{}",
        v.message
    );
    assert_eq!(d.requeue_at, Some(at(340)));
    assert!(d.events.is_empty());
    assert!(needs_verification(&sim.status()));
    // 48 h after the end: given up, with a Warning.
    let d = sim.step(hour(53));
    assert_eq!(reasons(&d), ["VerificationGaveUp"]);
    assert_eq!(
        sim.status().verification.map(|v| v.state).as_deref(),
        Some("GaveUp")
    );
    assert!(!needs_verification(&sim.status()));
}

#[test]
fn an_unsupported_provider_says_so_once_and_a_failing_one_is_retried() {
    let mut sim = succeeded_at_five();
    sim.measured = Some(Measured::Unavailable {
        reason: "Electricity Maps publishes no measured history that carbonshift reads yet".into(),
        permanent: false,
    });
    let d = sim.step(at(310));
    assert_eq!(d.requeue_at, Some(at(340)));
    assert_eq!(
        sim.status().verification.map(|v| v.state).as_deref(),
        Some("Pending")
    );
    sim.measured = Some(Measured::Unavailable {
        reason: "wattTime publishes no measured history".into(),
        permanent: true,
    });
    let d = sim.step(at(340));
    assert_eq!(reasons(&d), ["VerificationUnsupported"]);
    let s = sim.status();
    assert_eq!(
        s.verification.as_ref().map(|v| v.state.as_str()),
        Some("Unsupported")
    );
    assert!(s.verified.is_none());
    let d = sim.step(at(400));
    assert!(d.events.is_empty());
}

#[test]
fn failed_jobs_end_in_failed_with_their_emissions() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.step(hour(3));
    sim.edit(|j| set_active(j, 1));
    sim.step(hour(3));
    sim.edit(|j| finish(j, "Failed", hour(4)));
    let d = sim.step(hour(4));
    assert_eq!(reasons(&d), ["Failed"]);
    assert_eq!(d.events[0].kind, NoteKind::Warning);
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(s.reason.as_deref(), Some("Released"));
    // One hour at 50: 1.2 kWh × 50 = 60 g; at once 1.2 × 300 = 360 g.
    assert_close(s.estimated_emissions_grams, 60.0);
    assert_close(s.estimated_avoided_grams, 300.0);
}

#[test]
fn measured_values_replace_the_forecast_where_they_exist() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.step(hour(3));
    sim.edit(|j| set_active(j, 1));
    sim.step(hour(3));
    // Measured 40 for 03:00–04:00 only; 04:00–05:00 comes from the forecast (60). Measured 280
    // for 00:00–01:00, the forecast's 300 for 01:00–02:00 (the counterfactual).
    let mut actual_values = vec![280.0];
    actual_values.extend([300.0, 200.0, 40.0]);
    let mut points: Vec<Point> = actual_values
        .iter()
        .enumerate()
        .map(|(i, &v)| Point {
            start: hour(i as i64),
            intensity: v,
        })
        .collect();
    points.remove(1);
    points.remove(1);
    sim.actuals = match Forecast::with_step(points, TimeDelta::hours(1)) {
        Ok(f) => Some(f),
        Err(e) => panic!("{e}"),
    };
    sim.edit(|j| finish(j, "Complete", hour(5)));
    sim.step(hour(5));
    let s = sim.status();
    assert_close(s.actual_intensity, 50.0);
    assert_close(s.estimated_emissions_grams, 120.0);
    // (280 + 300) / 2 = 290 g/kWh × 2.4 kWh = 696 g.
    assert_close(s.estimated_avoided_grams, 696.0 - 120.0);
}

// ---------------------------------------------------------------------------------------------
// Precedence for held Jobs
// ---------------------------------------------------------------------------------------------

#[test]
fn run_now_releases_a_held_job_at_once_whatever_the_plan() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.edit(|j| annotate(j, RUN_NOW, "true"));
    let d = sim.step(at(30));
    assert_eq!(
        d.job_action,
        Some(JobAction::Release {
            reason: ReleaseReason::ManualRelease,
            planned: at(30)
        })
    );
    assert_eq!(reasons(&d), ["ManualRelease"]);
    // And only once.
    let d = sim.step(at(31));
    assert_eq!(d.job_action, None);
    sim.edit(|j| set_active(j, 1));
    sim.step(at(32));
    assert_eq!(sim.phase(), Some(Phase::Running));
    assert_eq!(sim.status().reason.as_deref(), Some("ManualRelease"));
}

#[test]
fn run_now_wins_over_an_invalid_annotation_and_a_missing_forecast() {
    // No workload yet and no valid constraints: the held Job is released (fail open)...
    let mut sim = Sim::new(job().held().annotate(DURATION, "2x").build());
    let d = sim.step(t0());
    assert_eq!(release_of(&d), Some(ReleaseReason::InvalidAnnotations));
    assert_eq!(reasons(&d), ["InvalidAnnotations", "InvalidAnnotations"]);
    assert_eq!(d.spec, None);
    // ... as a manual release when it asks for one.
    let mut sim = Sim::new(
        job()
            .held()
            .annotate(DURATION, "2x")
            .annotate(RUN_NOW, "true")
            .build(),
    );
    sim.forecast = None;
    let d = sim.step(t0());
    assert_eq!(release_of(&d), Some(ReleaseReason::ManualRelease));
    assert_eq!(d.spec, None);

    // With valid constraints from before, run-now is a manual release.
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.edit(|j| {
        annotate(j, DURATION, "2x");
        annotate(j, RUN_NOW, "true");
    });
    sim.forecast = None;
    let d = sim.step(at(10));
    assert_eq!(release_of(&d), Some(ReleaseReason::ManualRelease));
    assert_eq!(reasons(&d), ["InvalidAnnotations", "ManualRelease"]);
}

#[test]
fn a_forecast_awaiting_its_first_data_keeps_the_job_pending_then_plans_with_it() {
    let mut sim = Sim::new(job().held().build());
    sim.forecast = None;
    sim.absent = Absent::Awaiting(t0());
    let d = sim.step(t0());
    assert_eq!(d.job_action, None);
    assert_eq!(sim.phase(), Some(Phase::Pending));
    assert_eq!(sim.status().reason.as_deref(), Some("AwaitingForecast"));
    assert_eq!(reasons(&d), ["AwaitingForecast"]);
    assert_eq!(d.events[0].kind, NoteKind::Normal);
    assert_eq!(d.requeue_at, Some(t0() + AWAIT_RECHECK));
    // Looked at again: still waiting, no second Event.
    let d = sim.step(t0() + AWAIT_RECHECK);
    assert_eq!(d.job_action, None);
    assert!(d.events.is_empty(), "{:?}", d.events);
    // The data arrives: planned as if it had been there from the start.
    sim.forecast = Some(main_forecast());
    let d = sim.step(at(1));
    assert_eq!(d.job_action, None);
    assert_eq!(sim.phase(), Some(Phase::Deferred));
    assert!(sim.status().planned_start.is_some());
}

#[test]
fn the_first_data_wait_runs_from_the_later_of_submission_and_the_forecasts_appearance() {
    for (since, wait_ends) in [(t0() - TimeDelta::hours(1), t0()), (at(1), at(1))] {
        let mut sim = Sim::new(job().held().build());
        sim.forecast = None;
        sim.absent = Absent::Awaiting(since);
        let until = wait_ends + DEFAULT_FORECAST_WAIT;
        let d = sim.step(until - TimeDelta::seconds(1));
        assert_eq!(d.job_action, None, "waiting since {since}");
        assert_eq!(d.requeue_at, Some(until));
        let d = sim.step(until);
        assert_eq!(release_of(&d), Some(ReleaseReason::NoForecast));
        assert_eq!(
            event_message(&d, "NoForecast"),
            Some(
                "released at once (fail open): the CarbonForecast \"default\" produced no data within the 2m first-data wait"
            )
        );
    }
}

#[test]
fn a_forecast_known_unusable_is_no_forecast_at_once_and_hold_keeps_the_deadline() {
    let mut sim = Sim::new(job().held().build());
    sim.forecast = None;
    sim.absent = Absent::Failed("RefreshFailed".into());
    let d = sim.step(t0());
    assert_eq!(release_of(&d), Some(ReleaseReason::NoForecast));
    assert_eq!(
        event_message(&d, "NoForecast"),
        Some(
            "released at once (fail open): the CarbonForecast \"default\" has no data (Ready=False, reason RefreshFailed)"
        )
    );
    let mut sim = Sim::new(job().held().build());
    sim.forecast = None;
    sim.absent = Absent::Awaiting(t0());
    sim.config.forecast_wait = TimeDelta::hours(100);
    sim.config.no_forecast = NoForecastPolicy::Hold;
    // Awaiting never outlasts the deadline rule: the last look is at latest start − margin.
    let d = sim.step(at(8 * 60 - 5) - TimeDelta::seconds(2));
    assert_eq!(d.requeue_at, Some(at(8 * 60 - 5)));
    let d = sim.step(at(8 * 60 - 5));
    assert_eq!(release_of(&d), Some(ReleaseReason::DeadlineRelease));
}

#[test]
fn deadline_rule_releases_by_latest_start_minus_margin_whatever_the_forecast() {
    // Without a forecast and with the hold policy, the Job waits for the deadline rule only.
    let mut sim = Sim::new(job().held().build());
    sim.forecast = None;
    sim.config.no_forecast = NoForecastPolicy::Hold;
    let d = sim.step(t0());
    assert_eq!(d.job_action, None);
    assert_eq!(d.requeue_at, Some(at(8 * 60 - 5)));
    assert_eq!(sim.phase(), Some(Phase::Pending));
    assert_eq!(sim.status().reason.as_deref(), Some("NoForecast"));
    assert_eq!(reasons(&d), ["NoForecast"]);
    // Reconciles in between hold, without repeating the Event.
    let d = sim.step(hour(4));
    assert_eq!((d.job_action.clone(), d.events.len()), (None, 0));
    assert_eq!(d.requeue_at, Some(at(8 * 60 - 5)));
    let d = sim.step(at(8 * 60 - 5));
    assert_eq!(
        d.job_action,
        Some(JobAction::Release {
            reason: ReleaseReason::DeadlineRelease,
            planned: at(8 * 60 - 5)
        })
    );
    assert_eq!(reasons(&d), ["DeadlineRelease"]);
}

#[test]
fn the_deadline_rule_comes_before_an_overdue_plan() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    // The operator was down from 01:00 to 09:00: past the latest start (08:00).
    let d = sim.step(hour(9));
    assert_eq!(
        d.job_action,
        Some(JobAction::Release {
            reason: ReleaseReason::DeadlineRelease,
            planned: at(8 * 60 - 5)
        })
    );
}

#[test]
fn restart_with_an_overdue_plan_releases_at_once_without_replanning() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    // Restarted at 04:00 (after the planned 03:00) with a newer forecast in the store.
    sim.version = "101".into();
    let mut values = vec![300.0; 48];
    values[6] = 10.0;
    values[7] = 10.0;
    sim.forecast = Some(hourly(&values));
    let d = sim.step(hour(4));
    assert_eq!(
        d.job_action,
        Some(JobAction::Release {
            reason: ReleaseReason::Released,
            planned: hour(3)
        })
    );
    assert_eq!(reasons(&d), ["Released"]);
    assert_eq!(sim.status().planned_start, Some(hour(3)));
}

#[test]
fn a_plan_starting_now_is_released_in_the_same_decision() {
    let mut values = vec![300.0; 48];
    values[0] = 10.0;
    values[1] = 10.0;
    let mut sim = Sim::new(job().held().build());
    sim.forecast = Some(hourly(&values));
    let d = sim.step(t0());
    assert_eq!(
        d.job_action,
        Some(JobAction::Release {
            reason: ReleaseReason::Released,
            planned: t0()
        })
    );
    assert_eq!(reasons(&d), ["Released"]);
    let s = sim.status();
    assert_eq!(s.planned_start, Some(t0()));
    assert_close(s.expected_intensity, 10.0);
}

// ---------------------------------------------------------------------------------------------
// Missing and stale forecasts
// ---------------------------------------------------------------------------------------------

#[test]
fn no_forecast_releases_at_once_by_default() {
    let mut sim = Sim::new(job().held().build());
    sim.forecast = None;
    let d = sim.step(t0());
    assert_eq!(
        d.job_action,
        Some(JobAction::Release {
            reason: ReleaseReason::NoForecast,
            planned: t0()
        })
    );
    assert_eq!(d.events[0].kind, NoteKind::Warning);
    sim.edit(|j| set_active(j, 1));
    sim.step(at(1));
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!(s.released_at, Some(t0()));
    assert_eq!(s.reason.as_deref(), Some("NoForecast"));
    assert!(s.windows.is_empty());
    assert_eq!(
        condition(&s, "Planned"),
        ("False".into(), "NoForecast".into())
    );
}

#[test]
fn a_stale_forecast_without_a_plan_is_no_forecast() {
    let mut sim = Sim::new(job().held().build());
    sim.fresh = false;
    let d = sim.step(t0());
    assert_eq!(release_of(&d), Some(ReleaseReason::NoForecast));
    assert!(
        d.events[0].message.contains("stale"),
        "{}",
        d.events[0].message
    );

    let mut sim = Sim::new(job().held().build());
    sim.fresh = false;
    sim.config.no_forecast = NoForecastPolicy::Hold;
    let d = sim.step(t0());
    assert_eq!(d.job_action, None);
    assert_eq!(sim.phase(), Some(Phase::Pending));
    // Fresh data arrives: planned.
    sim.fresh = true;
    sim.version = "101".into();
    let d = sim.step(at(10));
    assert_eq!(reasons(&d), ["Deferred"]);
    assert_eq!(sim.phase(), Some(Phase::Deferred));
    assert_eq!(sim.status().planned_start, Some(hour(3)));
}

#[test]
fn a_forecast_that_goes_stale_keeps_the_plan() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    let planned = sim.status();
    // Stale, and a new version that would move the plan: kept until fresh data.
    sim.fresh = false;
    sim.version = "101".into();
    sim.forecast = Some(hourly(&[10.0; 48]));
    let d = sim.step(hour(1));
    assert_eq!((d.job_action.clone(), d.events.len()), (None, 0));
    assert_eq!(d.status.as_ref(), Some(&planned));
    assert_eq!(d.requeue_at, Some(hour(3)));
    // A missing forecast (the object was deleted) keeps it too.
    sim.forecast = None;
    let d = sim.step(hour(2));
    assert_eq!(d.status.as_ref(), Some(&planned));
    let d = sim.step(hour(3));
    assert_eq!(release_of(&d), Some(ReleaseReason::Released));
}

#[test]
fn no_coverage_holds_until_the_deadline_rule_and_replans_when_data_comes() {
    let mut sim = Sim::new(job().held().build());
    // Data only from 20:00 on: nothing of the allowed 00:00–10:00 range.
    let points = (20..40)
        .map(|i| Point {
            start: hour(i),
            intensity: 100.0,
        })
        .collect();
    sim.forecast = Forecast::new(points).ok();
    let d = sim.step(t0());
    assert_eq!(d.job_action, None);
    assert_eq!(reasons(&d), ["NoCoverage"]);
    assert_eq!(d.requeue_at, Some(at(8 * 60 - 5)));
    assert_eq!(sim.phase(), Some(Phase::Pending));
    assert_eq!(sim.status().reason.as_deref(), Some("NoCoverage"));
    sim.forecast = Some(main_forecast());
    sim.version = "101".into();
    let d = sim.step(hour(1));
    assert_eq!(reasons(&d), ["Deferred"]);
    assert_eq!(d.requeue_at, Some(hour(3)));
}

// ---------------------------------------------------------------------------------------------
// Re-planning and annotation edits
// ---------------------------------------------------------------------------------------------

#[test]
fn a_new_forecast_version_replans_and_records_replanned_only_when_the_plan_moves() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    // Same data, new version: re-planned to the same window, no Event, version recorded.
    sim.version = "101".into();
    let d = sim.step(hour(1));
    assert_eq!(d.events.len(), 0);
    assert_eq!(sim.status().forecast_version.as_deref(), Some("101"));
    assert_eq!(sim.status().planned_start, Some(hour(3)));
    // New data with a cleaner 06:00–08:00.
    let mut values = vec![300.0; 48];
    values[6] = 20.0;
    values[7] = 20.0;
    sim.forecast = Some(hourly(&values));
    sim.version = "102".into();
    let d = sim.step(hour(2));
    assert_eq!(reasons(&d), ["Replanned"]);
    assert!(
        d.events[0]
            .message
            .contains("moved from 2026-05-04T13:00:00Z"),
        "{}",
        d.events[0].message
    );
    assert_eq!(d.requeue_at, Some(hour(6)));
    let s = sim.status();
    assert_eq!(s.planned_start, Some(hour(6)));
    assert_close(s.expected_intensity, 20.0);
    assert_eq!(s.phase, Some(Phase::Deferred));
}

#[test]
fn annotation_edits_before_release_replan() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    // One hour instead of two: the cheapest hour is 03:00.
    sim.edit(|j| annotate(j, DURATION, "1h"));
    let d = sim.step(hour(1));
    assert_eq!(reasons(&d), ["Replanned"]);
    assert!(
        d.events[0].message.starts_with("planned windows changed"),
        "{}",
        d.events[0].message
    );
    assert_eq!(d.spec.as_ref().map(|s| s.duration.as_str()), Some("1h"));
    assert_close(sim.status().expected_intensity, 50.0);
    // A deadline at 03:30: the latest start is 02:30, the release by 02:25. From 02:00 the
    // cost falls the later it starts (200 until 03:00, 50 after), so 02:25 it is.
    sim.edit(|j| {
        unannotate(j, MAX_DELAY);
        annotate(j, DEADLINE, "2026-05-04T13:30:00Z");
    });
    let d = sim.step(hour(2));
    assert_eq!(reasons(&d), ["Replanned"]);
    let s = sim.status();
    assert_eq!(s.latest_start, Some(at(150)));
    assert_eq!(s.planned_start, Some(at(145)));
    assert_eq!(d.requeue_at, Some(at(145)));
}

#[test]
fn an_invalid_edit_keeps_the_last_valid_constraints_and_warns_once() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    let spec = sim.workload.as_ref().map(|w| w.spec.clone());
    sim.edit(|j| annotate(j, DURATION, "2x"));
    let d = sim.step(hour(1));
    assert_eq!(reasons(&d), ["InvalidAnnotations"]);
    assert_eq!(d.events[0].kind, NoteKind::Warning);
    assert!(
        d.events[0]
            .message
            .contains("carbonshift.dev/duration: \"2x\"")
    );
    assert!(d.events[0].message.contains("last valid constraints"));
    assert_eq!(d.spec, spec);
    assert_eq!(d.job_action, None);
    assert_eq!(d.requeue_at, Some(hour(3)));
    let s = sim.status();
    assert_eq!(
        condition(&s, "AnnotationsValid"),
        ("False".into(), "InvalidAnnotations".into())
    );
    assert_eq!(s.planned_start, Some(hour(3)));
    // Once per distinct error.
    let d = sim.step(at(70));
    assert_eq!(d.events.len(), 0);
    sim.edit(|j| annotate(j, DURATION, "3y"));
    let d = sim.step(at(80));
    assert_eq!(reasons(&d), ["InvalidAnnotations"]);
    // Fixed: valid again, re-planned for the new duration.
    sim.edit(|j| annotate(j, DURATION, "1h"));
    let d = sim.step(at(90));
    assert_eq!(reasons(&d), ["Replanned"]);
    assert_eq!(
        condition(&sim.status(), "AnnotationsValid"),
        ("True".into(), "Valid".into())
    );
    assert_eq!(d.spec.as_ref().map(|s| s.duration.as_str()), Some("1h"));
    // The deadline rule still holds on the kept constraints while invalid.
    sim.edit(|j| annotate(j, DURATION, "bad"));
    let d = sim.step(at(8 * 60 - 5));
    assert_eq!(release_of(&d), Some(ReleaseReason::DeadlineRelease));
}

#[test]
fn edits_after_release_do_not_change_the_record() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.step(hour(3));
    let spec = sim.workload.as_ref().map(|w| w.spec.clone());
    sim.edit(|j| annotate(j, DURATION, "5h"));
    let d = sim.step(at(190));
    assert_eq!(d.spec, spec);
    assert_eq!((d.job_action.clone(), d.events.len()), (None, 0));
}

#[test]
fn opting_out_or_turning_on_dry_run_releases_a_held_job() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.edit(|j| annotate(j, DEFERRABLE, "false"));
    let d = sim.step(hour(1));
    assert_eq!(release_of(&d), Some(ReleaseReason::ManualRelease));
    assert!(d.events[0].message.contains("deferrable"));

    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.edit(|j| annotate(j, DRY_RUN, "true"));
    let d = sim.step(hour(1));
    assert_eq!(release_of(&d), Some(ReleaseReason::ManualRelease));
    assert!(d.events[0].message.contains("dry-run"));

    // Held by the webhook, opted out before carbonshift ever saw it: released, no workload.
    let mut sim = Sim::new(job().held().annotate(DEFERRABLE, "false").build());
    let d = sim.step(t0());
    assert_eq!(release_of(&d), Some(ReleaseReason::ManualRelease));
    assert_eq!(d.spec, None);
}

// ---------------------------------------------------------------------------------------------
// Double-release prevention and Jobs changed by their owners
// ---------------------------------------------------------------------------------------------

#[test]
fn a_released_job_is_never_released_again() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    let before = sim.workload.clone();
    sim.step(hour(3));
    assert_eq!(sim.releases.len(), 1);
    // The status write after the release was lost: the workload still says Deferred.
    sim.workload = before;
    let d = sim.step(at(181));
    assert_eq!(d.job_action, None);
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Released));
    // Derived from the Job: released at the planned start.
    assert_eq!(s.reason.as_deref(), Some("Released"));
    assert_eq!(s.released_at, Some(hour(3)));
    // Every later reconcile, run-now included, leaves it alone.
    sim.edit(|j| annotate(j, RUN_NOW, "true"));
    for minutes in [200, 500, 700] {
        assert_eq!(sim.step(at(minutes)).job_action, None);
    }
    assert_eq!(sim.releases.len(), 1);
}

#[test]
fn a_lost_status_write_after_a_manual_release_is_derived_from_the_job() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    let before = sim.workload.clone();
    sim.edit(|j| annotate(j, RUN_NOW, "true"));
    sim.step(hour(1));
    sim.workload = before;
    // Without an answer from the Job controller the status waits for it, at most the ack wait.
    let wait = crate::lifecycle::DEFAULT_RELEASE_ACK_WAIT;
    let d = sim.step(hour(1));
    assert_eq!(d.job_action, None);
    assert_eq!(d.requeue_at, Some(hour(1) + wait));
    assert_eq!(sim.status().reason.as_deref(), Some("LowestIntensity"));
    let d = sim.step(hour(1) + wait);
    assert_eq!(d.job_action, None);
    assert_eq!(sim.status().reason.as_deref(), Some("ManualRelease"));
    // Released by `carbonshift release` (no run-now) before the plan: a manual release too.
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.edit(|j| {
        set_suspend(j, false);
        annotate(j, RELEASED_AT, "2026-05-04T11:00:00Z");
    });
    sim.step(hour(1) + wait);
    assert_eq!(sim.status().reason.as_deref(), Some("ManualRelease"));
    assert_eq!(sim.status().released_at, Some(hour(1)));
}

/// Sets the Job's `status.startTime`, as the Job controller does when it starts or resumes it.
fn set_start_time(job: &mut Job, when: DateTime<Utc>) {
    job.status.get_or_insert_with(JobStatus::default).start_time = Some(jiff(when));
}

#[test]
fn a_release_sent_ahead_is_recorded_with_the_job_controllers_answer_in_one_status_write() {
    // The releaser sent the guarded patch at the planned start (03:00); the status still says
    // Deferred when the Job's watch event of the patch arrives.
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    let deferred = sim.status();
    assert_eq!(deferred.planned_start, Some(hour(3)));
    sim.edit(|j| {
        set_suspend(j, false);
        annotate(j, RELEASED_AT, &stamp(hour(3)));
    });
    let d = sim.step(hour(3) + TimeDelta::milliseconds(40));
    assert_eq!((d.job_action.clone(), d.events.len()), (None, 0));
    assert_eq!(d.status.as_ref(), Some(&deferred), "nothing to write yet");
    let wait = crate::lifecycle::DEFAULT_RELEASE_ACK_WAIT;
    assert_eq!(d.requeue_at, Some(hour(3) + wait));
    // The Job controller answers with its start time and an active pod: one write, Running.
    sim.edit(|j| {
        set_start_time(j, hour(3));
        set_active(j, 1);
    });
    let d = sim.step(hour(3) + TimeDelta::seconds(2));
    let s = d.status.clone().unwrap_or_default();
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!(s.reason.as_deref(), Some("Released"));
    assert_eq!(s.released_at, Some(hour(3)));
    assert_eq!(d.job_action, None);

    // An answer without pods (quota, say): Released at once, not after the wait.
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.edit(|j| {
        set_suspend(j, false);
        annotate(j, RELEASED_AT, &stamp(hour(3)));
        set_start_time(j, hour(3));
    });
    sim.step(hour(3) + TimeDelta::seconds(1));
    assert_eq!(sim.phase(), Some(Phase::Released));
    assert_eq!(sim.status().reason.as_deref(), Some("Released"));

    // A start time from before the release is no answer to it.
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.edit(|j| {
        set_suspend(j, false);
        annotate(j, RELEASED_AT, &stamp(hour(3)));
        set_start_time(j, hour(2));
    });
    sim.step(hour(3) + TimeDelta::seconds(1));
    assert_eq!(sim.phase(), Some(Phase::Deferred));
    // No answer at all: Released when the wait is over.
    sim.step(hour(3) + wait);
    assert_eq!(sim.phase(), Some(Phase::Released));

    // With the wait turned off, the release is written at once.
    let mut sim = Sim::new(job().held().build());
    sim.config.release_ack_wait = TimeDelta::zero();
    sim.step(t0());
    sim.edit(|j| {
        set_suspend(j, false);
        annotate(j, RELEASED_AT, &stamp(hour(3)));
    });
    sim.step(hour(3) + TimeDelta::seconds(1));
    assert_eq!(sim.phase(), Some(Phase::Released));
}

#[test]
fn a_job_suspended_again_by_its_owner_is_left_alone() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.step(hour(3));
    sim.edit(|j| set_suspend(j, true));
    let d = sim.step(hour(4));
    assert_eq!(d.job_action, None);
    assert_eq!(reasons(&d), ["SuspendedByOwner"]);
    assert_eq!(sim.status().reason.as_deref(), Some("SuspendedByOwner"));
    // Even past its deadline.
    let d = sim.step(hour(20));
    assert_eq!((d.job_action.clone(), d.events.len()), (None, 0));
    // Unsuspended by the owner again: followed.
    sim.edit(|j| {
        set_suspend(j, false);
        set_active(j, 1);
    });
    sim.step(hour(21));
    assert_eq!(sim.phase(), Some(Phase::Running));
}

#[test]
fn a_held_job_unsuspended_by_its_owner_is_followed_not_released() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.edit(|j| set_suspend(j, false));
    let d = sim.step(hour(1));
    assert_eq!(d.job_action, None);
    assert_eq!(reasons(&d), ["ReleasedByOwner"]);
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Released));
    assert_eq!(s.reason.as_deref(), Some("ReleasedByOwner"));
    assert_eq!(
        condition(&s, "Held"),
        ("False".into(), "ReleasedByOwner".into())
    );
}

#[test]
fn a_workload_of_an_older_job_with_the_same_name_is_replaced() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    sim.job.metadata.uid = Some("uid-2".into());
    let d = sim.decide(t0());
    assert!(d.stale_workload);
    assert_eq!((d.spec, d.status, d.job_action), (None, None, None));
    sim.workload = None;
    let d = sim.step(t0());
    assert_eq!(d.spec.map(|s| s.job_ref.uid), Some("uid-2".into()));
}

// ---------------------------------------------------------------------------------------------
// Jobs carbonshift does not hold
// ---------------------------------------------------------------------------------------------

#[test]
fn a_dry_run_reports_its_plan_and_never_holds() {
    let job = job()
        .annotate(DRY_RUN, "true")
        .annotate(SUBMITTED_AT, T0)
        .active(1)
        .build();
    let mut sim = Sim::new(job);
    let d = sim.step(at(1));
    assert_eq!(d.job_action, None);
    assert_eq!(reasons(&d), ["DryRun"]);
    assert!(
        d.events[0]
            .message
            .contains("would have been planned start 2026-05-04T13:00:00Z")
    );
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!(s.reason.as_deref(), Some("DryRun"));
    assert_eq!(s.planned_start, Some(hour(3)));
    assert_close(s.estimated_avoided_grams, 588.0);
    assert_eq!(condition(&s, "Held"), ("False".into(), "DryRun".into()));
    // Planned once.
    sim.version = "101".into();
    let d = sim.step(at(2));
    assert_eq!(d.events.len(), 0);
    assert_eq!(sim.status().forecast_version.as_deref(), Some("100"));
    // It ran at once: 00:01–02:01 at 300 (and 200 for the last minute).
    sim.edit(|j| finish(j, "Complete", at(121)));
    let d = sim.step(at(122));
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.reason.as_deref(), Some("DryRun"));
    let expected = 1.2 * (119.0 * 300.0 + 200.0) / 60.0;
    assert_close(s.estimated_emissions_grams, expected);
    // What the plan would have saved stays; nothing is counted as avoided.
    assert_close(s.estimated_avoided_grams, 588.0);
    let c = d.completion.unwrap_or_else(|| panic!("no completion"));
    assert!((c.emitted_grams - expected).abs() < 1e-6);
    assert_eq!(c.avoided_grams, None);
}

#[test]
fn not_deferred_reasons() {
    let cases: Vec<(&str, Job, &str)> = vec![
        ("webhook bypassed", job().build(), "WebhookBypassed"),
        (
            "run-now at admission",
            job()
                .annotate(RUN_NOW, "true")
                .annotate(SUBMITTED_AT, T0)
                .build(),
            "RunNow",
        ),
        (
            "infeasible",
            job()
                .remove(MAX_DELAY)
                .annotate(DEADLINE, "2026-05-04T11:00:00Z")
                .annotate(SUBMITTED_AT, T0)
                .build(),
            "Infeasible",
        ),
        (
            "kueue",
            job().label("kueue.x-k8s.io/queue-name", "gpu").build(),
            "Kueue",
        ),
        (
            "kueue, suspended by kueue",
            job()
                .label("kueue.x-k8s.io/queue-name", "gpu")
                .suspend(true)
                .build(),
            "Kueue",
        ),
        (
            "managedBy",
            job().managed_by("example.com/mpi").suspend(true).build(),
            "ManagedBy",
        ),
    ];
    for (name, job, why) in cases {
        let mut sim = Sim::new(job);
        let d = sim.step(at(1));
        assert_eq!(d.job_action, None, "{name}");
        assert_eq!(reasons(&d), [why], "{name}");
        let s = sim.status();
        assert_eq!(s.phase, Some(Phase::NotDeferred), "{name}");
        assert_eq!(s.reason.as_deref(), Some(why), "{name}");
        let warning = why == "WebhookBypassed";
        assert_eq!(d.events[0].kind == NoteKind::Warning, warning, "{name}");
        // Then followed, keeping the reason, without another Event.
        sim.edit(|j| {
            set_suspend(j, false);
            set_active(j, 1);
        });
        let d = sim.step(at(2));
        assert_eq!(d.events.len(), 0, "{name}");
        assert_eq!(sim.phase(), Some(Phase::Running), "{name}");
        assert_eq!(sim.status().reason.as_deref(), Some(why), "{name}");
        sim.edit(|j| finish(j, "Complete", at(60)));
        let d = sim.step(at(61));
        assert_eq!(sim.phase(), Some(Phase::Succeeded), "{name}");
        assert_eq!(sim.status().reason.as_deref(), Some(why), "{name}");
        assert_close(sim.status().estimated_avoided_grams, 0.0);
        assert_eq!(d.completion.map(|c| c.avoided_grams), Some(None), "{name}");
    }
}

#[test]
fn a_suspended_deferrable_job_without_the_webhook_is_taken_as_held() {
    let mut sim = Sim::new(job().suspend(true).build());
    let d = sim.step(t0());
    assert_eq!(reasons(&d), ["Deferred"]);
    assert_eq!(sim.phase(), Some(Phase::Deferred));
    let d = sim.step(hour(3));
    assert_eq!(release_of(&d), Some(ReleaseReason::Released));
}

#[test]
fn jobs_that_are_not_carbonshifts_get_nothing() {
    let mut sim = Sim::new(job().remove(DEFERRABLE).suspend(true).build());
    let d = sim.step(t0());
    assert_eq!(d, Decision::default());
    // Invalid annotations on a Job carbonshift does not hold: a Warning, nothing else.
    let mut sim = Sim::new(job().annotate(DURATION, "forever").build());
    let d = sim.step(t0());
    assert_eq!(reasons(&d), ["InvalidAnnotations"]);
    assert_eq!((d.spec, d.job_action), (None, None));
}

// ---------------------------------------------------------------------------------------------
// Interruptible Jobs
// ---------------------------------------------------------------------------------------------

fn interruptible_sim() -> Sim {
    let mut sim = Sim::new(job().held().annotate(INTERRUPTIBLE, "true").build());
    sim.forecast = Some(split_forecast());
    sim
}

#[test]
fn an_interruptible_job_is_paused_between_windows_and_resumed() {
    let mut sim = interruptible_sim();
    let d = sim.step(t0());
    assert_eq!(reasons(&d), ["Deferred"]);
    let window = |a, b| TimeWindow {
        start: hour(a),
        end: hour(b),
    };
    assert_eq!(sim.status().windows, vec![window(2, 3), window(4, 5)]);
    assert_eq!(d.requeue_at, Some(hour(2)));

    let d = sim.step(hour(2));
    assert_eq!(release_of(&d), Some(ReleaseReason::Released));
    sim.edit(|j| set_active(j, 1));
    let d = sim.step(at(121));
    assert_eq!(sim.phase(), Some(Phase::Running));
    // Looks again at the end of the window.
    assert_eq!(d.requeue_at, Some(hour(3)));

    let d = sim.step(hour(3));
    assert_eq!(d.job_action, Some(JobAction::Pause));
    assert_eq!(reasons(&d), ["Paused"]);
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Paused));
    assert_eq!(s.runs, vec![window(2, 3)]);
    assert_eq!(s.windows, vec![window(4, 5)]);
    assert_eq!(s.planned_start, Some(hour(4)));
    // The remaining hour's latest start: finish by 10:00, minus 1h.
    assert_eq!(s.latest_start, Some(hour(9)));
    assert_eq!(d.requeue_at, Some(hour(4)));
    assert_eq!(condition(&s, "Held"), ("True".into(), "Held".into()));

    // The Job is suspended again (pods gone): held, remaining 1h, the plan's next window kept.
    sim.edit(|j| set_active(j, 0));
    let d = sim.step(hour(3));
    assert_eq!((d.job_action.clone(), d.events.len()), (None, 0));
    assert_eq!(d.requeue_at, Some(hour(4)));
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Paused));
    assert_eq!(s.latest_start, Some(hour(9)));

    let d = sim.step(hour(4));
    assert_eq!(
        d.job_action,
        Some(JobAction::Release {
            reason: ReleaseReason::Resumed,
            planned: hour(4)
        })
    );
    assert_eq!(reasons(&d), ["Resumed"]);
    sim.edit(|j| set_active(j, 1));
    let d = sim.step(hour(4));
    assert_eq!(sim.phase(), Some(Phase::Running));
    // No later window: no more pauses.
    assert_eq!(d.requeue_at, None);
    sim.edit(|j| finish(j, "Complete", hour(5)));
    sim.step(hour(5));
    let s = sim.status();
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.runs, vec![window(2, 3), window(4, 5)]);
    // 1.2 kWh at 50 + 1.2 kWh at 60 = 132 g; at once 2.4 × 300 = 720 g.
    assert_close(s.actual_intensity, 55.0);
    assert_close(s.estimated_emissions_grams, 132.0);
    assert_close(s.estimated_avoided_grams, 588.0);
    assert_eq!(sim.pauses, vec![hour(3)]);
    assert_eq!(sim.releases.len(), 2);
}

#[test]
fn a_paused_job_replans_its_remaining_time_on_new_data() {
    let mut sim = interruptible_sim();
    sim.step(t0());
    sim.step(hour(2));
    sim.step(hour(3));
    assert_eq!(sim.phase(), Some(Phase::Paused));
    let mut values = vec![300.0; 48];
    values[2] = 50.0;
    values[3] = 400.0;
    values[4] = 200.0;
    values[6] = 10.0;
    sim.forecast = Some(hourly(&values));
    sim.version = "101".into();
    let d = sim.step(hour(3));
    assert_eq!(reasons(&d), ["Replanned"]);
    assert_eq!(
        sim.status().windows,
        vec![TimeWindow {
            start: hour(6),
            end: hour(7)
        }]
    );
    assert_eq!(d.requeue_at, Some(hour(6)));
    assert_eq!(sim.phase(), Some(Phase::Paused));
}

#[test]
fn a_paused_job_obeys_the_deadline_rule_for_its_remaining_work() {
    let mut sim = interruptible_sim();
    sim.step(t0());
    sim.step(hour(2));
    sim.step(hour(3));
    // Data goes missing; the kept window is 04:00, but suppose the operator only looks at 08:56,
    // after the remaining hour's latest start (09:00) minus the margin.
    sim.forecast = None;
    let d = sim.step(at(8 * 60 + 56));
    assert_eq!(
        d.job_action,
        Some(JobAction::Release {
            reason: ReleaseReason::DeadlineRelease,
            planned: at(8 * 60 + 55)
        })
    );
}

#[test]
fn a_job_is_never_paused_when_it_could_then_miss_its_deadline() {
    let mut sim = interruptible_sim();
    sim.step(t0());
    sim.step(hour(2));
    // A margin of 6h: pausing at 03:00 with 1h left would need a resume by 10:00 − 1h − 6h =
    // 03:00, which is now.
    sim.config.margin = TimeDelta::hours(6);
    let d = sim.step(hour(3));
    assert_eq!(d.job_action, None);
    assert_eq!(sim.phase(), Some(Phase::Released));
}

#[test]
fn only_planned_releases_are_paused() {
    let mut sim = interruptible_sim();
    sim.step(t0());
    sim.edit(|j| annotate(j, RUN_NOW, "true"));
    sim.step(at(130));
    sim.edit(|j| set_active(j, 1));
    let d = sim.step(hour(3));
    assert_eq!(d.job_action, None);
    assert_eq!(d.requeue_at, None);
    assert_eq!(sim.phase(), Some(Phase::Running));
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

#[test]
fn constraints_from_annotations_and_from_the_spec_agree() {
    let view =
        crate::workload::job::view(&job().held().build(), &AnnotationDefaults::default(), t0());
    let deferral = match &view.deferral {
        Ok(Some(d)) => d.clone(),
        other => panic!("{other:?}"),
    };
    let a = constraints(&deferral, margin()).unwrap_or_else(|e| panic!("{e}"));
    let spec = CarbonWorkloadSpec::new(JobRef::new("batch/v1", "Job", "train", "uid-1"), &deferral);
    let b = spec_constraints(&spec, margin()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a, b);
    assert_eq!(a.latest_start(), Ok(hour(8)));
    assert_eq!(a.release_by(), Ok(at(8 * 60 - 5)));
    let broken = CarbonWorkloadSpec {
        duration: "soon".into(),
        ..spec
    };
    assert!(matches!(
        spec_constraints(&broken, margin()),
        Err(SpecError::Duration { .. })
    ));
}

#[test]
fn job_view_reads_the_markers_status_and_managers() {
    let mut j = job()
        .held()
        .annotate(RELEASED_AT, "2026-05-04T13:00:00Z")
        .annotate(RUN_NOW, "true")
        .label("kueue.x-k8s.io/queue-name", "q")
        .active(3)
        .build();
    finish(&mut j, "Failed", hour(4));
    let v = crate::workload::job::view(&j, &AnnotationDefaults::default(), t0());
    assert!(v.held_marker && v.suspend && v.run_now);
    assert_eq!(v.released_at, Some(hour(3)));
    assert_eq!(v.released_marker.as_deref(), Some("2026-05-04T13:00:00Z"));
    assert_eq!(v.finished, Some(Finished::Failed(hour(4))));
    assert_eq!(v.managed_elsewhere, Some(ManagedElsewhere::Kueue));
    assert_eq!(v.resource_version.as_deref(), Some("1"));
    let v = crate::workload::job::view(
        &job().managed_by("kubernetes.io/job-controller").build(),
        &AnnotationDefaults::default(),
        t0(),
    );
    assert_eq!(v.managed_elsewhere, None);
    assert_eq!(v.finished, None);
}

#[test]
fn tally_counts_phases_and_held_jobs_past_their_latest_start() {
    let mut sim = Sim::new(job().held().build());
    sim.step(t0());
    let deferred = sim
        .workload
        .clone()
        .unwrap_or_else(|| panic!("no workload"));
    let mut running = deferred.clone();
    if let Some(s) = running.status.as_mut() {
        s.phase = Some(Phase::Running);
    }
    let mut bare = deferred.clone();
    bare.status = None;
    let all = [deferred.clone(), running, bare];
    let early = tally(all.iter(), hour(1));
    assert_eq!(early.count(Phase::Deferred), 1);
    assert_eq!(early.count(Phase::Running), 1);
    assert_eq!(early.count(Phase::Pending), 1);
    assert_eq!(early.count(Phase::Failed), 0);
    assert_eq!(early.held_past_latest_start, 0);
    // Past 08:00 the Deferred and the status-less (Pending) ones are overdue.
    assert_eq!(tally(all.iter(), at(8 * 60 + 1)).held_past_latest_start, 2);
    // One the waste guard holds is held past its latest start on purpose: not counted.
    let mut guarded = deferred.clone();
    if let Some(s) = guarded.status.as_mut() {
        s.reason = Some(crate::lifecycle::reason::WASTE_GUARD.to_string());
    }
    let with_guarded = [deferred.clone(), guarded];
    assert_eq!(
        tally(with_guarded.iter(), at(8 * 60 + 1)).held_past_latest_start,
        1
    );
}

#[test]
fn realised_intensity_mixes_measured_values_and_the_forecast() {
    let forecast = hourly(&[100.0, 200.0, 300.0]);
    let actuals = Forecast::with_step(
        vec![Point {
            start: hour(1),
            intensity: 150.0,
        }],
        TimeDelta::hours(1),
    )
    .ok();
    // 00:30–02:30: 30 min forecast 100, 60 min measured 150, 30 min forecast 300.
    let r = emissions::realised(&[(at(30), at(150))], &forecast, actuals.as_ref());
    let r = r.unwrap_or_else(|| panic!("unknown"));
    assert!((r.mean - (30.0 * 100.0 + 60.0 * 150.0 + 30.0 * 300.0) / 120.0).abs() < 1e-9);
    assert_eq!(r.coverage, 1.0);
    // Half outside everything known.
    let r = emissions::realised(&[(at(150), at(210))], &forecast, None);
    let r = r.unwrap_or_else(|| panic!("unknown"));
    assert_eq!((r.mean, r.coverage), (300.0, 0.5));
    assert_eq!(
        emissions::realised(&[(hour(5), hour(6))], &forecast, None),
        None
    );
    assert_eq!(emissions::realised(&[], &forecast, None), None);
}

#[test]
fn every_release_reason_is_a_known_reason() {
    for r in ReleaseReason::ALL {
        assert_eq!(reason::known(r.as_str()), Some(r.as_str()));
        assert_eq!(ReleaseReason::parse(r.as_str()), Some(r));
    }
    assert_eq!(reason::known("Whatever"), None);
}

#[test]
fn a_job_without_power_emits_nothing() {
    let mut sim = Sim::new(job().held().remove(POWER).build());
    sim.step(t0());
    let s = sim.status();
    assert_close(s.estimated_energy_kwh, 0.0);
    assert_close(s.estimated_emissions_grams, 0.0);
    assert_close(s.estimated_avoided_grams, 0.0);
    // The status says why, and what to do.
    let message = s.message.unwrap_or_default();
    assert!(message.contains("power estimate is 0 W"), "{message}");
    assert!(message.contains("carbonshift.dev/power"), "{message}");
    // A Job with power says nothing of it.
    let mut powered = Sim::new(job().held().build());
    powered.step(t0());
    assert!(!powered.status().message.unwrap_or_default().contains("0 W"));
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Something that happens between two reconciles.
#[derive(Debug, Clone)]
enum Happening {
    /// Time passes (minutes), at most until the last requested requeue.
    Wait(i64),
    /// New forecast data (a seed for its values).
    NewForecast(u64),
    /// The forecast goes stale or fresh again.
    Freshness(bool),
    /// The forecast disappears.
    ForecastGone,
    /// Pods start.
    Start,
    /// The Job completes.
    Complete,
    /// `run-now`.
    RunNow,
    /// A duration edit (hours), possibly invalid (0).
    Duration(i64),
    /// The operator restarts and loses the last status write.
    LoseStatus,
    /// The forecast is replaced by one that exists without data yet, created that many minutes
    /// before now.
    ForecastAwaiting(i64),
}

fn happening() -> impl Strategy<Value = Happening> {
    prop_oneof![
        6 => (1i64..400).prop_map(Happening::Wait),
        2 => any::<u64>().prop_map(Happening::NewForecast),
        1 => any::<bool>().prop_map(Happening::Freshness),
        1 => Just(Happening::ForecastGone),
        2 => Just(Happening::Start),
        1 => Just(Happening::Complete),
        1 => Just(Happening::RunNow),
        1 => (0i64..5).prop_map(Happening::Duration),
        1 => Just(Happening::LoseStatus),
        1 => (0i64..10).prop_map(Happening::ForecastAwaiting),
    ]
}

fn seeded_forecast(seed: u64) -> Forecast {
    let mut x = seed | 1;
    let values: Vec<f64> = (0..40)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 500) as f64
        })
        .collect();
    hourly(&values)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever happens, a held Job is released exactly once (plus one resume per pause), never
    /// after its latest start minus the margin when reconciled at the requested times, and its
    /// emissions are counted at most once.
    #[test]
    fn held_jobs_are_released_once_and_in_time(
        max_delay in 1i64..12,
        duration in 1i64..4,
        interruptible in any::<bool>(),
        hold in any::<bool>(),
        happenings in prop::collection::vec(happening(), 1..40),
    ) {
        let mut builder = job()
            .held()
            .annotate(MAX_DELAY, &format!("{max_delay}h"))
            .annotate(DURATION, &format!("{duration}h"));
        if interruptible {
            builder = builder.annotate(INTERRUPTIBLE, "true");
        }
        let mut sim = Sim::new(builder.build());
        if hold {
            sim.config.no_forecast = NoForecastPolicy::Hold;
        }
        let mut now = t0();
        let mut last = sim.step(now);
        let mut saved = sim.workload.clone();
        // Metrics are recorded only after the status write succeeded: a lost write loses them.
        let mut counted = sim.completions.len();
        let mut version = 100;
        let mut completed = false;
        for h in happenings {
            match h {
                Happening::Wait(minutes) => {
                    let next = now + TimeDelta::minutes(minutes);
                    now = match last.requeue_at {
                        Some(r) if r < next => r.max(now),
                        _ => next,
                    };
                }
                Happening::NewForecast(seed) => {
                    version += 1;
                    sim.version = version.to_string();
                    sim.forecast = Some(seeded_forecast(seed));
                }
                Happening::Freshness(fresh) => sim.fresh = fresh,
                Happening::ForecastGone => {
                    sim.forecast = None;
                    sim.absent = Absent::Missing;
                }
                Happening::ForecastAwaiting(ago) => {
                    sim.forecast = None;
                    sim.absent = Absent::Awaiting(now - TimeDelta::minutes(ago));
                }
                Happening::Start => {
                    if sim.job.spec.as_ref().and_then(|s| s.suspend) == Some(false) && !completed {
                        sim.edit(|j| set_active(j, 1));
                    }
                }
                Happening::Complete => {
                    if sim.job.spec.as_ref().and_then(|s| s.suspend) == Some(false) && !completed {
                        completed = true;
                        sim.edit(|j| finish(j, "Complete", now));
                    }
                }
                Happening::RunNow => sim.edit(|j| annotate(j, RUN_NOW, "true")),
                Happening::Duration(hours) => {
                    sim.edit(|j| annotate(j, DURATION, &format!("{hours}h")));
                }
                Happening::LoseStatus => {
                    sim.workload = saved.clone();
                    sim.completions.truncate(counted);
                }
            }
            saved = sim.workload.clone();
            counted = sim.completions.len();
            last = sim.step(now);
            // Still held: the deadline rule has not passed.
            let view = sim.view(now);
            if classify(&view) == State::Held {
                let latest = sim.status().latest_start.unwrap_or(hour(max_delay));
                prop_assert!(now < latest - margin(), "held at {now}, latest start {latest}");
            }
        }
        let releases = sim.releases.len();
        let pauses = sim.pauses.len();
        prop_assert!(releases <= 1 + pauses, "{releases} releases, {pauses} pauses");
        for (when, reason, planned) in &sim.releases {
            prop_assert!(planned <= when);
            if *reason == ReleaseReason::Released {
                prop_assert!(*when <= hour(max_delay) - margin(), "released at {when}");
            }
        }
        prop_assert!(sim.completions.len() <= 1);
        if !interruptible {
            prop_assert!(sim.pauses.is_empty());
        }
    }
}

/// The constraints the state machine derives for the Job of [`job`], and a plan of them against
/// `forecast` (as the fleet would hand it over).
fn fleet_plan(
    spec: &CarbonWorkloadSpec,
    forecast: &Forecast,
    overflow: bool,
) -> (
    crate::planner::Constraints,
    crate::planner::fleet::Scheduled,
) {
    let constraints = spec_constraints(spec, margin()).unwrap_or_else(|e| panic!("{e}"));
    let plan = crate::planner::plan(forecast, &constraints, t0());
    (
        constraints,
        crate::planner::fleet::Scheduled { plan, overflow },
    )
}

#[test]
fn the_fleets_plan_replaces_planning_alone_and_moves_the_workload_when_it_moves() {
    let mut sim = Sim::new(job().held().build());
    let d = sim.step(t0());
    assert_eq!(sim.status().planned_start, Some(hour(3)));
    let spec = d.spec.unwrap_or_else(|| panic!("no spec"));
    // The fleet put it at 06:00 (the cleanest hours are full).
    let mut values = vec![300.0; 48];
    values[6] = 100.0;
    values[7] = 100.0;
    sim.fleet = Some(fleet_plan(&spec, &hourly(&values), false));
    let d = sim.step(at(1));
    assert_eq!(reasons(&d), ["Replanned"]);
    assert_eq!(sim.status().planned_start, Some(hour(6)));
    assert_eq!(d.requeue_at, Some(hour(6)));
    // The same fleet plan again writes nothing new.
    let again = sim.step(at(2));
    assert!(again.events.is_empty(), "{:?}", again.events);
    // Released at the fleet's start, within the cap: no over-capacity flag.
    let d = sim.step(hour(6));
    assert_eq!(release_of(&d), Some(ReleaseReason::Released));
    assert!(!d.over_capacity);
}

#[test]
fn a_fleet_plan_above_the_cap_is_released_by_the_deadline_rule_with_an_event() {
    let mut sim = Sim::new(job().held().build());
    let d = sim.step(t0());
    let spec = d.spec.unwrap_or_else(|| panic!("no spec"));
    // No room within the cap: planned at the latest start minus the margin, above the cap.
    let (constraints, mut scheduled) = fleet_plan(&spec, &main_forecast(), true);
    let release_by = hour(8) - margin();
    if let Ok(plan) = &mut scheduled.plan {
        plan.start = release_by;
        plan.end = release_by + TimeDelta::hours(2);
        plan.windows = vec![crate::planner::Window {
            start: release_by,
            end: release_by + TimeDelta::hours(2),
        }];
    }
    sim.fleet = Some((constraints, scheduled));
    sim.step(at(1));
    assert_eq!(sim.status().planned_start, Some(release_by));
    let d = sim.step(release_by);
    assert_eq!(release_of(&d), Some(ReleaseReason::DeadlineRelease));
    assert!(d.over_capacity);
    let note = d
        .events
        .iter()
        .find(|n| n.reason == reason::DEADLINE_OVER_CAPACITY)
        .unwrap_or_else(|| panic!("no DeadlineOverCapacity in {:?}", d.events));
    assert_eq!(note.kind, NoteKind::Warning);
    assert!(
        note.message
            .contains("above the capacity of CarbonForecast \"default\""),
        "{}",
        note.message
    );
}

#[test]
fn a_fleet_plan_made_for_other_constraints_is_not_used() {
    let mut sim = Sim::new(job().held().build());
    let d = sim.step(t0());
    let spec = d.spec.unwrap_or_else(|| panic!("no spec"));
    let other = CarbonWorkloadSpec {
        duration: "1h".into(),
        ..spec
    };
    let mut values = vec![300.0; 48];
    values[6] = 10.0;
    sim.fleet = Some(fleet_plan(&other, &hourly(&values), false));
    let d = sim.step(at(1));
    assert!(d.events.is_empty(), "{:?}", d.events);
    assert_eq!(sim.status().planned_start, Some(hour(3)));
}
