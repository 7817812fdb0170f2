//! The policies a replay compares, each a pure function of the jobs and a trace.
//!
//! - `runNow`: every job starts at its run-now time (the no-shifting baseline).
//! - `threshold`: what most existing tools do — start at the first moment the *measured* intensity
//!   is at or below a threshold, else at the latest start (an interruptible job runs whenever the
//!   intensity is at or below the threshold and runs straight through once it must to finish in
//!   time).
//! - [`capped`]: `carbonshift` / `carbonshiftReplan` under `--capacity`. The operator has no
//!   capacity cap yet, so the capped figures come from the planner itself
//!   ([`crate::planner::plan_with_capacity`] over one capacity ledger, jobs in time order, with the
//!   operator's margin and deadline rule); without a cap both policies are the operator's own
//!   state machine ([`super::operator`]).
//! - `oracle`: [`super::oracle`].

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, TimeDelta, Utc};
use rand_chacha::ChaCha8Rng;

use crate::planner::{self, Capacity, CapacityLedger, Forecast, Reservation, Window};

use super::ReplayError;
use super::noise::{self, lead_time_stream, rng};
use super::scenario::Job;
use super::series::{Series, at, ms};

/// What a policy did with each job: its runs `[start, end)` in milliseconds, sorted, disjoint and
/// not touching; `None` for a job the policy does not run (`--paper-compat` baseline-only jobs).
pub type Runs = Vec<Option<Vec<(i64, i64)>>>;

/// Merges touching or overlapping runs after sorting.
pub(crate) fn merge(mut runs: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    runs.retain(|r| r.1 > r.0);
    runs.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(runs.len());
    for (a, b) in runs {
        match out.last_mut() {
            Some(last) if last.1 >= a => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `runNow`: each job at its run-now time (or, with a paper-compat alternative, at the cheaper of
/// the two on the actual trace; earlier on a tie).
pub fn run_now(series: &Series, jobs: &[Job]) -> Runs {
    jobs.iter()
        .map(|job| {
            let d = job.duration.num_milliseconds();
            let mut s = ms(job.run_now);
            if let Some(alt) = job.run_now_alt.map(ms)
                && series.integral(alt, alt + d) < series.integral(s, s + d)
            {
                s = alt;
            }
            Some(vec![(s, s + d)])
        })
        .collect()
}

/// How far back the default threshold looks.
pub const THRESHOLD_HISTORY: TimeDelta = TimeDelta::days(7);

/// The default threshold's quantile of the history.
pub const THRESHOLD_QUANTILE: f64 = 0.25;

/// The lower time-weighted quantile `q` of the intensity over `[from, to)`: the smallest value
/// at or below which at least a fraction `q` of the known time lies. `None` without known time.
pub fn weighted_quantile(series: &Series, from: i64, to: i64, q: f64) -> Option<f64> {
    let mut pieces: Vec<(f64, i64)> = series
        .pieces(from, to)
        .map(|(a, b, v)| (v, b - a))
        .collect();
    let total: i64 = pieces.iter().map(|p| p.1).sum();
    if total == 0 {
        return None;
    }
    pieces.sort_by(|a, b| a.0.total_cmp(&b.0));
    let target = q * total as f64;
    let mut cum = 0i64;
    for (v, len) in &pieces {
        cum += len;
        if cum as f64 >= target {
            return Some(*v);
        }
    }
    pieces.last().map(|p| p.0)
}

/// `threshold`: with `fixed` g/kWh, or by default the 25th percentile of the previous 7 days of
/// the actual trace before submission. Without any history the job runs at its run-now time.
pub fn threshold(series: &Series, jobs: &[Job], fixed: Option<f64>) -> Runs {
    jobs.iter()
        .map(|job| {
            if job.baseline_only {
                return None;
            }
            let submitted = ms(job.submitted_at);
            let d = job.duration.num_milliseconds();
            let theta = fixed.or_else(|| {
                weighted_quantile(
                    series,
                    submitted - THRESHOLD_HISTORY.num_milliseconds(),
                    submitted,
                    THRESHOLD_QUANTILE,
                )
            });
            let Some(theta) = theta else {
                let s = ms(job.run_now);
                return Some(vec![(s, s + d)]);
            };
            let deadline = ms(job.deadline);
            if job.interruptible {
                Some(threshold_pieces(series, submitted, deadline, d, theta))
            } else {
                let latest = ms(job.latest_start());
                let start = series
                    .pieces(submitted, latest + 1)
                    .find(|p| p.2 <= theta)
                    .map_or(latest, |p| p.0);
                Some(vec![(start, start + d)])
            }
        })
        .collect()
}

/// An interruptible job under the threshold rule: runs while the intensity is at or below
/// `theta`, and straight through from the moment it must to finish by `deadline`.
fn threshold_pieces(
    series: &Series,
    from: i64,
    deadline: i64,
    d: i64,
    theta: f64,
) -> Vec<(i64, i64)> {
    let mut remaining = d;
    let mut runs = Vec::new();
    for (a, b, v) in series.pieces(from, deadline) {
        if remaining == 0 {
            break;
        }
        let forced = deadline - remaining;
        if a >= forced {
            runs.push((a, a + remaining));
            remaining = 0;
        } else if v <= theta {
            let take = (b - a).min(remaining);
            runs.push((a, a + take));
            remaining -= take;
        } else if forced < b {
            runs.push((forced, deadline));
            remaining = 0;
        }
    }
    if remaining > 0 {
        runs.push((deadline - remaining, deadline));
    }
    merge(runs)
}

/// What the scheduler sees when it plans.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// One forecast for the whole run: the actual trace (perfect) or one noisy copy (constant
    /// error).
    Fixed(&'a Forecast),
    /// A fresh lead-time-noisy forecast at every planning call.
    LeadTime {
        /// The actual trace.
        actual: &'a Series,
        /// Its step (how long a last value holds).
        step: TimeDelta,
        /// σ at full lead, g/kWh.
        sigma: f64,
        /// `--seed`.
        seed: u64,
        /// Which noise seed (0-based) of the run.
        k: u32,
    },
}

impl<'a> Source<'a> {
    /// The forecast `job` sees when one is issued at `at`: reaching to `horizon` (or the
    /// deadline, whichever is first). Lead-time noise is drawn from the job's own stream, kept
    /// in `stream` between calls.
    pub fn issue(
        &self,
        job: &Job,
        horizon: Option<TimeDelta>,
        stream: &mut Option<ChaCha8Rng>,
        at: DateTime<Utc>,
    ) -> Result<Cow<'a, Forecast>, ReplayError> {
        let to = match horizon {
            Some(h) => at
                .checked_add_signed(h)
                .map_or(job.deadline, |t| t.min(job.deadline)),
            None => job.deadline,
        };
        Ok(match *self {
            Source::Fixed(f) if horizon.is_none() => Cow::Borrowed(f),
            Source::Fixed(f) => Cow::Owned(f.clip(at, to)),
            Source::LeadTime {
                actual,
                step,
                sigma,
                seed,
                k,
            } => {
                let rng = stream.get_or_insert_with(|| rng(seed, lead_time_stream(k, job.id)));
                Cow::Owned(noise::lead_time(actual, step, at, to, sigma, rng)?)
            }
        })
    }
}

/// How the planner policies plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanConfig {
    /// `None`: plan once at submission; otherwise re-plan at this interval (epoch-aligned, like
    /// forecast refreshes) until the job has started (or, interruptible, finished).
    pub replan: Option<TimeDelta>,
    /// How far ahead the scheduler sees (`None`: unlimited).
    pub horizon: Option<TimeDelta>,
    /// A cap on concurrent jobs (each job has load 1).
    pub capacity: Option<Capacity>,
    /// The operator's safety margin.
    pub margin: TimeDelta,
}

/// The result of a planner policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerRun {
    /// What each job did.
    pub runs: Runs,
    /// Jobs that ran above the cap to keep their deadline.
    pub overflow: usize,
    /// Planning calls that found no plan, so the job fell back to the deadline rule.
    pub fallbacks: usize,
    /// Planning calls made.
    pub plans: usize,
}

#[derive(Debug, Default)]
struct State {
    remaining: i64,
    executed: Vec<(i64, i64)>,
    tentative: Option<Reservation>,
    overflowed: bool,
    rng: Option<ChaCha8Rng>,
}

fn windows(runs: &[(i64, i64)]) -> Vec<Window> {
    runs.iter()
        .map(|&(a, b)| Window {
            start: at(a),
            end: at(b),
        })
        .collect()
}

fn next_tick(t: i64, interval: i64) -> i64 {
    (t.div_euclid(interval) + 1) * interval
}

/// The planner-level policy (`carbonshift` with `config.replan == None`, else
/// `carbonshiftReplan`) over all jobs, in time order through one event queue (so that a capacity
/// ledger sees jobs in the order the operator would). `progress` is called once per finished job.
pub fn capped(
    jobs: &[Job],
    source: Source<'_>,
    config: &PlanConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<PlannerRun, ReplayError> {
    let mut ledger = config
        .capacity
        .map(CapacityLedger::with_capacity)
        .transpose()
        .map_err(ReplayError::Capacity)?;
    let interval = config.replan.map(|r| r.num_milliseconds().max(1));
    let mut states: Vec<State> = jobs
        .iter()
        .map(|j| State {
            remaining: j.duration.num_milliseconds(),
            ..State::default()
        })
        .collect();
    let mut queue: BinaryHeap<Reverse<(i64, usize)>> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| !j.baseline_only)
        .map(|(i, j)| Reverse((ms(j.submitted_at), i)))
        .collect();
    let mut out = PlannerRun {
        runs: vec![None; jobs.len()],
        overflow: 0,
        fallbacks: 0,
        plans: 0,
    };
    while let Some(Reverse((t, i))) = queue.pop() {
        let job = &jobs[i];
        let state = &mut states[i];
        if let (Some(ledger), Some(r)) = (ledger.as_mut(), state.tentative.take()) {
            ledger.release(&r);
        }
        let now = at(t);
        let constraints = job
            .constraints_for(TimeDelta::milliseconds(state.remaining))
            .with_margin(config.margin);
        let view = source.issue(job, config.horizon, &mut state.rng, now)?;
        out.plans += 1;
        let planned = match ledger.as_mut() {
            Some(ledger) => planner::plan_with_capacity(&view, &constraints, now, 1.0, ledger)
                .map(|p| (p.plan.windows, p.overflow, Some(p.reservation))),
            None => planner::plan(&view, &constraints, now).map(|p| (p.windows, false, None)),
        };
        let (plan, overflowed, reservation) = match planned {
            Ok(p) => p,
            Err(_) => {
                // The operator's deadline rule: release at the latest start minus the margin.
                out.fallbacks += 1;
                let d = state.remaining;
                let start = (ms(job.deadline) - d - config.margin.num_milliseconds()).max(t);
                let runs = vec![(start, start + d)];
                let reservation = ledger
                    .as_mut()
                    .map(|l| l.reserve(&windows(&runs), 1.0))
                    .transpose()?;
                (windows(&runs), false, reservation)
            }
        };
        let plan: Vec<(i64, i64)> = plan.iter().map(|w| (ms(w.start), ms(w.end))).collect();
        let next = interval.map(|iv| next_tick(t, iv));
        let done = match next {
            None => {
                state.executed.extend(plan);
                state.overflowed |= overflowed;
                true
            }
            Some(next) if !job.interruptible => {
                let start = plan.first().map_or(t, |w| w.0);
                if start < next {
                    state.executed.extend(plan);
                    state.overflowed |= overflowed;
                    true
                } else {
                    state.tentative = reservation.clone();
                    false
                }
            }
            Some(next) => {
                let before: Vec<(i64, i64)> = plan
                    .iter()
                    .filter(|w| w.0 < next)
                    .map(|&(a, b)| (a, b.min(next)))
                    .collect();
                let after: Vec<(i64, i64)> = plan
                    .iter()
                    .filter(|w| w.1 > next)
                    .map(|&(a, b)| (a.max(next), b))
                    .collect();
                state.remaining -= before.iter().map(|w| w.1 - w.0).sum::<i64>();
                if !before.is_empty() {
                    state.overflowed |= overflowed;
                }
                state.executed.extend(before.iter().copied());
                if state.remaining <= 0 {
                    true
                } else {
                    if let (Some(ledger), Some(r)) = (ledger.as_mut(), reservation.as_ref()) {
                        ledger.release(r);
                        ledger.reserve(&windows(&before), 1.0)?;
                        state.tentative = Some(ledger.reserve(&windows(&after), 1.0)?);
                    }
                    false
                }
            }
        };
        if done {
            out.runs[i] = Some(merge(std::mem::take(&mut state.executed)));
            if state.overflowed {
                out.overflow += 1;
            }
            state.rng = None;
            progress(1);
        } else if let Some(next) = next {
            queue.push(Reverse((next, i)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{H, M, hourly, job};
    use super::*;

    #[test]
    fn weighted_quantile_is_the_lower_time_weighted_quantile() {
        // 7 hours: 300, 100, 100, 200, 200, 200, 300 → 25 % of 7 h = 1.75 h, reached by 100.
        let (_, s, t0) = hourly(&[300.0, 100.0, 100.0, 200.0, 200.0, 200.0, 300.0]);
        assert_eq!(weighted_quantile(&s, t0, t0 + 7 * H, 0.25), Some(100.0));
        // 50 % = 3.5 h: 100 covers 2 h, 200 reaches 5 h.
        assert_eq!(weighted_quantile(&s, t0, t0 + 7 * H, 0.5), Some(200.0));
        assert_eq!(weighted_quantile(&s, t0, t0 + 7 * H, 1.0), Some(300.0));
        // Weighted by time: half an hour of 300 and two hours of 100/200.
        assert_eq!(
            weighted_quantile(&s, t0 + 30 * M, t0 + 3 * H, 0.25),
            Some(100.0)
        );
        assert_eq!(weighted_quantile(&s, t0 - 5 * H, t0, 0.25), None);
    }

    #[test]
    fn threshold_rule_in_exact_figures() {
        // Hours 0..12: 500 ×8, then 400, 90, 80, 400.
        let mut values = vec![500.0; 8];
        values.extend([400.0, 90.0, 80.0, 400.0]);
        let (_, s, t0) = hourly(&values);
        // Fixed 100 g/kWh: a 1 h block submitted at 08:00 starts at 09:00 (90 ≤ 100).
        let j = job(t0, 8, 60, 12, false);
        assert_eq!(
            threshold(&s, std::slice::from_ref(&j), Some(100.0)),
            vec![Some(vec![(t0 + 9 * H, t0 + 10 * H)])]
        );
        // 85 g/kWh: first at 10:00.
        assert_eq!(
            threshold(&s, std::slice::from_ref(&j), Some(85.0)),
            vec![Some(vec![(t0 + 10 * H, t0 + 11 * H)])]
        );
        // Never at or below 50: the latest start, 11:00.
        assert_eq!(
            threshold(&s, std::slice::from_ref(&j), Some(50.0)),
            vec![Some(vec![(t0 + 11 * H, t0 + 12 * H)])]
        );
        // Default: the 25th percentile of the previous 7 days is 500 (8 h of history, all 500),
        // so the job starts at once.
        assert_eq!(
            threshold(&s, std::slice::from_ref(&j), None),
            vec![Some(vec![(t0 + 8 * H, t0 + 9 * H)])]
        );
        // Interruptible, 2 h by 12:00, threshold 85: runs 10:00-11:00 (80), then must run the
        // last hour straight through, 11:00-12:00.
        let i = job(t0, 8, 120, 12, true);
        assert_eq!(
            threshold(&s, std::slice::from_ref(&i), Some(85.0)),
            vec![Some(vec![(t0 + 10 * H, t0 + 12 * H)])]
        );
        // Threshold 95: 09:00-11:00 (90, 80) and done.
        assert_eq!(
            threshold(&s, std::slice::from_ref(&i), Some(95.0)),
            vec![Some(vec![(t0 + 9 * H, t0 + 11 * H)])]
        );
        // Threshold 10: never below, forced from 10:00.
        assert_eq!(
            threshold(&s, std::slice::from_ref(&i), Some(10.0)),
            vec![Some(vec![(t0 + 10 * H, t0 + 12 * H)])]
        );
        // Without history (submitted at the trace start) it runs at its run-now time.
        let early = job(t0, 0, 60, 12, false);
        assert_eq!(
            threshold(&s, std::slice::from_ref(&early), None),
            vec![Some(vec![(t0, t0 + H)])]
        );
    }

    #[test]
    fn run_now_takes_the_cheaper_paper_slot() {
        let (_, s, t0) = hourly(&[100.0, 50.0, 100.0]);
        let mut j = job(t0, 0, 60, 3, false);
        assert_eq!(
            run_now(&s, std::slice::from_ref(&j)),
            vec![Some(vec![(t0, t0 + H)])]
        );
        j.run_now_alt = Some(at(t0 + 30 * M));
        assert_eq!(
            run_now(&s, std::slice::from_ref(&j)),
            vec![Some(vec![(t0 + 30 * M, t0 + 90 * M)])]
        );
    }

    #[test]
    fn replanning_executes_interruptible_work_between_ticks() {
        // 100 then 10, 10, 10, 100...: a 2 h interruptible job submitted at 00:00, due 06:00.
        let (f, _, t0) = hourly(&[100.0, 10.0, 10.0, 100.0, 100.0, 100.0]);
        let j = job(t0, 0, 120, 6, true);
        let config = PlanConfig {
            replan: Some(TimeDelta::minutes(30)),
            horizon: None,
            capacity: None,
            margin: TimeDelta::zero(),
        };
        let run = capped(
            std::slice::from_ref(&j),
            Source::Fixed(&f),
            &config,
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.runs, vec![Some(vec![(t0 + H, t0 + 3 * H)])]);
        // Plans at 00:00, 00:30, 01:00, 01:30, 02:00, 02:30 (the last runs the final half hour).
        assert_eq!(run.plans, 6);
        assert_eq!(run.fallbacks, 0);
    }

    #[test]
    fn a_capacity_cap_spreads_jobs_and_overflows_only_to_keep_deadlines() {
        let (f, _, t0) = hourly(&[100.0, 10.0, 50.0, 100.0]);
        let jobs: Vec<Job> = (0..4)
            .map(|id| Job {
                id,
                ..job(t0, 0, 60, 3, false)
            })
            .collect();
        let config = PlanConfig {
            replan: None,
            horizon: None,
            capacity: Some(Capacity {
                limit: 1.0,
                slot: TimeDelta::minutes(30),
            }),
            margin: TimeDelta::zero(),
        };
        let run = capped(&jobs, Source::Fixed(&f), &config, &mut |_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        // Job 0 takes 01:00 (10), job 1 02:00 (50), job 2 00:00 (100); job 3 has no room and
        // runs at its latest start, 02:00, over the cap.
        assert_eq!(
            run.runs,
            vec![
                Some(vec![(t0 + H, t0 + 2 * H)]),
                Some(vec![(t0 + 2 * H, t0 + 3 * H)]),
                Some(vec![(t0, t0 + H)]),
                Some(vec![(t0 + 2 * H, t0 + 3 * H)])
            ]
        );
        assert_eq!(run.overflow, 1);
    }
}
