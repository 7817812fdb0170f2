//! The operator's own state machine ([`crate::lifecycle::decide`]) driven over simulated jobs: the
//! `carbonshift` and `carbonshiftReplan` policies of a replay are exactly what the operator would
//! do with each job — the deadline rule and its safety margin, re-planning on each forecast
//! refresh, pause and resume of interruptible jobs — because they are the same code.
//!
//! Each job is played as the cluster would play it: the webhook's hold (suspended, `held`
//! marker), a `decide` at submission, at every time the decision asks to be looked at again
//! (`requeue_at`), at every forecast refresh while the job waits, and at its completion. The
//! decision's Job action is applied to the simulated Job the way the Job controller would apply
//! it: a release starts the job's pods at once, a pause stops them; the job completes when its
//! run time is done. Jobs are independent (no cap), so they are simulated one after another.
//!
//! Capacity caps are not an operator feature yet: under `--capacity` the capped figures come from
//! the planner-level simulation in [`super::policy::capped`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::CarbonWorkload;
use crate::api::annotations::{self, Deferral, Limit, PowerSource};
use crate::lifecycle::{
    self, ForecastInput, ForecastView, Input, JobAction, ReleaseReason, WorkloadView,
};
use crate::planner::{Forecast, Power};

use super::ReplayError;
use super::policy::{PlannerRun, Source, merge};
use super::scenario::Job;
use super::series::ms;

/// The CarbonForecast name the simulated jobs are planned against.
const FORECAST: &str = "replay";

/// A bound on the decisions for one job: far above what any job needs (one per forecast refresh
/// while it waits, plus a few per window), so that hitting it means the state machine loops.
const MAX_DECISIONS: usize = 1_000_000;

/// How the simulated operator runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatorConfig {
    /// `None`: the forecast is made once, at submission; otherwise it is refreshed at this
    /// interval (epoch-aligned), and the operator re-plans a waiting job on each refresh.
    pub refresh: Option<TimeDelta>,
    /// How far ahead each forecast reaches (`None`: unlimited).
    pub horizon: Option<TimeDelta>,
    /// The operator's safety margin (`--margin`; the operator's default is 5 minutes).
    pub margin: TimeDelta,
    /// Power per job (recorded on the simulated workloads; the replay scores emissions itself).
    pub power: Power,
}

/// What the simulated operator did over all jobs, besides the runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorTally {
    /// Calls of `decide`.
    pub decisions: usize,
    /// Releases by reason (`Released`, `Resumed`, `DeadlineRelease`, …).
    pub releases: BTreeMap<&'static str, usize>,
    /// Pauses of interruptible jobs between windows.
    pub pauses: usize,
}

impl OperatorTally {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &OperatorTally) {
        self.decisions += other.decisions;
        self.pauses += other.pauses;
        for (reason, n) in &other.releases {
            *self.releases.entry(reason).or_default() += n;
        }
    }
}

/// The result of the operator policy.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorRun {
    /// What each job did, and the deadline-rule releases as `fallbacks`.
    pub run: PlannerRun,
    /// What the state machine did.
    pub tally: OperatorTally,
}

/// Runs every job through the operator's state machine. `progress` is called once per job.
pub fn carbonshift(
    jobs: &[Job],
    source: Source<'_>,
    config: &OperatorConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<OperatorRun, ReplayError> {
    let settings = lifecycle::Config {
        margin: config.margin,
        ..lifecycle::Config::default()
    };
    let mut out = OperatorRun {
        run: PlannerRun {
            runs: vec![None; jobs.len()],
            overflow: 0,
            fallbacks: 0,
            plans: 0,
        },
        tally: OperatorTally::default(),
    };
    for (i, job) in jobs.iter().enumerate() {
        if job.baseline_only {
            continue;
        }
        let (runs, tally) = simulate(job, source, config, &settings)?;
        out.run.runs[i] = Some(runs);
        out.tally.add(&tally);
        progress(1);
    }
    out.run.fallbacks = out
        .tally
        .releases
        .get(ReleaseReason::DeadlineRelease.as_str())
        .copied()
        .unwrap_or(0);
    Ok(out)
}

/// The annotations the webhook would have parsed for `job`: a deadline, the duration, the
/// forecast, interruptible or not, and the power.
fn deferral(job: &Job, power: &Power) -> Deferral {
    Deferral {
        submitted_at: job.submitted_at,
        duration: job.duration,
        duration_source: annotations::Source::Annotation,
        limit: Limit::Deadline(job.deadline),
        // The replayed deadlines are the jobs' own; no operator cap applies.
        max_allowed_delay: TimeDelta::MAX,
        forecast: FORECAST.to_string(),
        forecast_source: annotations::Source::Annotation,
        candidates: Vec::new(),
        interruptible: job.interruptible,
        dry_run: false,
        run_now: false,
        power: annotations::Power {
            watts: power.watts(),
            source: PowerSource::Annotation,
        },
        pue: power.pue(),
        held: true,
        released_at: None,
        unknown_annotations: Vec::new(),
    }
}

/// The Job as the webhook stores it: suspended, with the `held` marker.
fn held_job(job: &Job, power: &Power) -> WorkloadView {
    WorkloadView {
        kind: "Job",
        api_version: "batch/v1".to_string(),
        name: format!("job-{}", job.id),
        namespace: "replay".to_string(),
        uid: format!("replay-{}", job.id),
        resource_version: None,
        deferral: Ok(Some(deferral(job, power))),
        suspend: true,
        held_marker: true,
        released_marker: None,
        released_at: None,
        release_reason: None,
        run_now: false,
        active: 0,
        start_time: None,
        // The simulated run starts at its release: there is no controller to wait for.
        reports_start: false,
        finished: None,
        managed_elsewhere: None,
    }
}

/// The forecasts one job sees: made at submission, then (with a refresh interval) at each
/// refresh, each one a new version.
struct Forecasts<'a> {
    source: Source<'a>,
    config: &'a OperatorConfig,
    job: &'a Job,
    rng: Option<rand_chacha::ChaCha8Rng>,
    current: Cow<'a, Forecast>,
    issued: DateTime<Utc>,
    version: u64,
}

impl<'a> Forecasts<'a> {
    fn new(
        source: Source<'a>,
        config: &'a OperatorConfig,
        job: &'a Job,
    ) -> Result<Self, ReplayError> {
        let mut rng = None;
        let current = source.issue(job, config.horizon, &mut rng, job.submitted_at)?;
        Ok(Forecasts {
            source,
            config,
            job,
            rng,
            current,
            issued: job.submitted_at,
            version: 0,
        })
    }

    /// The next refresh after the current forecast, if forecasts are refreshed.
    fn next_refresh(&self) -> Option<DateTime<Utc>> {
        let interval = self.config.refresh?.num_milliseconds().max(1);
        let t = ms(self.issued);
        Some(super::series::at((t.div_euclid(interval) + 1) * interval))
    }

    /// Brings the forecast up to date at `now`: the one issued at the last refresh at or before
    /// `now`.
    fn update(&mut self, now: DateTime<Utc>) -> Result<(), ReplayError> {
        let (Some(next), Some(refresh)) = (self.next_refresh(), self.config.refresh) else {
            return Ok(());
        };
        if now < next {
            return Ok(());
        }
        let interval = refresh.num_milliseconds().max(1);
        let issued = super::series::at(ms(now).div_euclid(interval) * interval);
        self.current = self
            .source
            .issue(self.job, self.config.horizon, &mut self.rng, issued)?;
        self.issued = issued;
        self.version += 1;
        Ok(())
    }
}

/// One job through the state machine: its runs and what the machine did.
fn simulate(
    job: &Job,
    source: Source<'_>,
    config: &OperatorConfig,
    settings: &lifecycle::Config,
) -> Result<(Vec<(i64, i64)>, OperatorTally), ReplayError> {
    let stuck = |detail: String| ReplayError::Simulation {
        job: job.id,
        detail,
    };
    let mut forecasts = Forecasts::new(source, config, job)?;
    let mut view = held_job(job, &config.power);
    let mut workload: Option<CarbonWorkload> = None;
    let mut tally = OperatorTally::default();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    let mut done = TimeDelta::zero();
    let mut running_since: Option<DateTime<Utc>> = None;
    let mut now = job.submitted_at;
    loop {
        if tally.decisions >= MAX_DECISIONS {
            return Err(stuck(format!(
                "{MAX_DECISIONS} decisions without finishing"
            )));
        }
        forecasts.update(now)?;
        let version = forecasts.version.to_string();
        let decision = lifecycle::decide(
            &Input {
                job: &view,
                workload: workload.as_ref(),
                forecast: ForecastInput::Data(ForecastView {
                    forecast: &forecasts.current,
                    actuals: None,
                    version: &version,
                    fresh: true,
                }),
                config: settings,
                measured: None,
                fleet: None,
            },
            now,
        );
        tally.decisions += 1;
        if let Some(spec) = decision.spec {
            match &mut workload {
                Some(w) => w.spec = spec,
                None => workload = Some(CarbonWorkload::new(&view.name, spec)),
            }
        }
        if let (Some(w), Some(status)) = (&mut workload, decision.status) {
            w.status = Some(status);
        }
        if view.finished.is_some() {
            break;
        }
        // A write to the Job comes back to the operator as a watch event: it decides again at
        // once, on the Job as written.
        let acted = decision.job_action.is_some();
        match decision.job_action {
            Some(JobAction::Release { reason, .. }) => {
                *tally.releases.entry(reason.as_str()).or_default() += 1;
                view.suspend = false;
                view.released_marker = Some(now.to_rfc3339());
                view.released_at = Some(now);
                view.start_time = Some(now);
                view.active = 1;
                running_since = Some(now);
            }
            Some(JobAction::Pause) => {
                let Some(since) = running_since.take() else {
                    return Err(stuck("paused while not running".into()));
                };
                runs.push((ms(since), ms(now)));
                done += now - since;
                tally.pauses += 1;
                view.suspend = true;
                view.released_marker = None;
                view.released_at = None;
                view.start_time = None;
                view.active = 0;
            }
            None => {}
        }
        // The next moment anything happens: the job completes, the decision asked to be looked
        // at again, or (while it waits) the forecast is refreshed.
        let completes = running_since.map(|since| since + (job.duration - done));
        let refresh = running_since
            .is_none()
            .then(|| forecasts.next_refresh())
            .flatten();
        let next = [
            acted.then_some(now),
            decision.requeue_at,
            completes,
            refresh,
        ]
        .into_iter()
        .flatten()
        .min()
        .ok_or_else(|| stuck(format!("nothing to wait for at {now}")))?;
        match (running_since, completes) {
            (Some(since), Some(end)) if end <= next => {
                runs.push((ms(since), ms(end)));
                view.active = 0;
                view.finished = Some(lifecycle::Finished::Succeeded(end));
                now = end;
            }
            _ => now = next.max(now),
        }
    }
    Ok((merge(runs), tally))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{H, M, job};
    use super::*;

    fn hourly(values: &[f64]) -> (Forecast, i64) {
        let (f, _, t0) = super::super::testkit::hourly(values);
        (f, t0)
    }

    fn config(refresh: Option<i64>, margin_m: i64) -> OperatorConfig {
        OperatorConfig {
            refresh: refresh.map(TimeDelta::minutes),
            horizon: None,
            margin: TimeDelta::minutes(margin_m),
            power: Power::new(1000.0, 1.0).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn run(f: &Forecast, jobs: &[Job], c: &OperatorConfig) -> OperatorRun {
        carbonshift(jobs, Source::Fixed(f), c, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_block_is_released_at_the_cleanest_start_and_runs_to_the_end() {
        let (f, t0) = hourly(&[300.0, 200.0, 50.0, 400.0, 400.0]);
        let out = run(&f, &[job(t0, 0, 60, 5, false)], &config(None, 5));
        assert_eq!(out.run.runs, vec![Some(vec![(t0 + 2 * H, t0 + 3 * H)])]);
        assert_eq!(out.tally.releases.get("Released"), Some(&1));
        assert_eq!(out.run.fallbacks, 0);
        // Submission (Deferred), the planned start (release), the watch event of the release
        // (Running), the completion.
        assert_eq!(out.tally.decisions, 4);
    }

    #[test]
    fn the_margin_keeps_the_start_before_the_latest_start() {
        // The cleanest hour is the last one the deadline allows: with a 30-minute margin the
        // planner may start no later than 30 minutes before it.
        let (f, t0) = hourly(&[300.0, 300.0, 300.0, 10.0]);
        let out = run(&f, &[job(t0, 0, 60, 4, false)], &config(None, 30));
        assert_eq!(
            out.run.runs,
            vec![Some(vec![(t0 + 2 * H + 30 * M, t0 + 3 * H + 30 * M)])]
        );
        let out = run(&f, &[job(t0, 0, 60, 4, false)], &config(None, 0));
        assert_eq!(out.run.runs, vec![Some(vec![(t0 + 3 * H, t0 + 4 * H)])]);
    }

    #[test]
    fn an_interruptible_job_is_paused_between_windows_and_resumed() {
        // Two clean hours apart: the job runs 01:00-02:00, is paused, and resumes 03:00-04:00.
        let (f, t0) = hourly(&[300.0, 10.0, 300.0, 20.0, 300.0, 300.0]);
        let out = run(&f, &[job(t0, 0, 120, 6, true)], &config(None, 5));
        assert_eq!(
            out.run.runs,
            vec![Some(vec![(t0 + H, t0 + 2 * H), (t0 + 3 * H, t0 + 4 * H)])]
        );
        assert_eq!(out.tally.pauses, 1);
        assert_eq!(out.tally.releases.get("Released"), Some(&1));
        assert_eq!(out.tally.releases.get("Resumed"), Some(&1));
    }

    #[test]
    fn refreshes_re_plan_a_waiting_job_without_moving_it_on_a_perfect_forecast() {
        let (f, t0) = hourly(&[300.0, 200.0, 100.0, 50.0, 400.0, 400.0]);
        let once = run(&f, &[job(t0, 0, 60, 6, false)], &config(None, 5));
        let refreshed = run(&f, &[job(t0, 0, 60, 6, false)], &config(Some(30), 5));
        assert_eq!(once.run.runs, refreshed.run.runs);
        // One decision per refresh while it waits (00:30 … 03:00), plus submission, the watch
        // event of the release and the completion; the release at 03:00 falls on a refresh.
        assert_eq!(refreshed.tally.decisions, 3 + 6);
    }

    #[test]
    fn a_job_without_slack_is_released_by_the_deadline_rule_and_meets_its_deadline() {
        let (f, t0) = hourly(&[300.0, 10.0, 10.0]);
        // 2 h of work due in 2 h: the latest start is now.
        let out = run(&f, &[job(t0, 0, 120, 2, false)], &config(None, 5));
        assert_eq!(out.run.runs, vec![Some(vec![(t0, t0 + 2 * H)])]);
        assert_eq!(out.run.fallbacks, 1);
        assert_eq!(out.tally.releases.get("DeadlineRelease"), Some(&1));
    }

    #[test]
    fn baseline_only_jobs_are_not_run() {
        let (f, t0) = hourly(&[300.0, 10.0, 10.0]);
        let mut j = job(t0, 0, 60, 3, false);
        j.baseline_only = true;
        let out = run(&f, &[j], &config(None, 5));
        assert_eq!(out.run.runs, vec![None]);
        assert_eq!(out.tally.decisions, 0);
    }
}
