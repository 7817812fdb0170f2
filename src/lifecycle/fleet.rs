//! A workload's part in the fleet of its forecast ([`crate::planner::fleet`]): held and planned
//! together with the other held workloads under the forecast's capacity cap, committed (released,
//! running or paused: what remains of its run is reserved and never moved), or out of it. Pure:
//! the workload controller seeds each capped forecast's [`Fleet`] from the cached CarbonWorkloads
//! with [`seed`] (so that a restart, or any order in which the reconciles come, plans the same
//! schedule as [`crate::planner::plan_batch`] over the same workloads), and keeps it in step with
//! each reconcile through [`member`].

use std::fmt::Debug;

use chrono::{DateTime, TimeDelta, Utc};

use super::spec::{spec_constraints, spec_duration};
use crate::api::{CarbonWorkloadSpec, CarbonWorkloadStatus, Phase};
use crate::planner::fleet::{Caps, Demand, Fleet, FleetError};
use crate::planner::{Constraints, Forecast, Window};

/// What one workload is to the fleet of its forecast.
#[derive(Debug, Clone, PartialEq)]
pub enum Member {
    /// Held and not started: planned with the others, earliest deadline first.
    Held {
        /// Its constraints (with the operator's margin), as the state machine derives them.
        constraints: Constraints,
        /// What it needs of the capped resources.
        demand: Demand,
    },
    /// Released, running, or paused between windows: these windows are reserved as they are.
    Committed {
        /// What remains of its run (from `now` on).
        windows: Vec<Window>,
        /// What it needs of the capped resources.
        demand: Demand,
    },
    /// In no fleet: finished, never held, a dry run, or its spec cannot be planned.
    Out,
}

/// What a workload needs of the capped resources: one workload slot, and its GPUs (GPUs per pod ×
/// pods at once, as the power estimate counts them; 0 when the power came from the annotation).
pub fn demand(spec: &CarbonWorkloadSpec) -> Demand {
    let gpus = spec.power_estimate.map_or(0, |e| {
        e.gpus_per_pod.saturating_mul(u64::from(e.parallelism))
    });
    Demand {
        gpus: u32::try_from(gpus).unwrap_or(u32::MAX),
    }
}

/// The CarbonForecast a workload is planned against: the one it was placed in
/// (`status.placement.forecast`, when that is one of its candidates), else `spec.forecast`.
pub fn forecast_of<'a>(
    spec: &'a CarbonWorkloadSpec,
    status: Option<&'a CarbonWorkloadStatus>,
) -> &'a str {
    status
        .and_then(|s| s.placement.as_ref())
        .map(|p| p.forecast.as_str())
        .filter(|f| spec.candidates.iter().any(|c| c == f))
        .unwrap_or(&spec.forecast)
}

/// The part of the workload with `spec` and `status` at `now`. `released_at` is when its
/// object says carbonshift released it (the status may not show the release yet: it is written
/// with the answer of the kind's controller), `None` while it is held.
pub fn member(
    spec: &CarbonWorkloadSpec,
    status: Option<&CarbonWorkloadStatus>,
    released_at: Option<DateTime<Utc>>,
    margin: TimeDelta,
    now: DateTime<Utc>,
) -> Member {
    if spec.dry_run {
        return Member::Out;
    }
    let demand = demand(spec);
    let phase = status.and_then(|s| s.phase);
    let ran: TimeDelta = status
        .map(|s| s.runs.iter().map(|r| r.end - r.start).sum())
        .unwrap_or_default();
    let held = matches!(phase, None | Some(Phase::Pending | Phase::Deferred));
    if held && released_at.is_none() && ran.is_zero() {
        return match spec_constraints(spec, margin) {
            Ok(constraints) => Member::Held {
                constraints,
                demand,
            },
            Err(_) => Member::Out,
        };
    }
    let windows: Vec<Window> = match phase {
        Some(Phase::Paused) => status
            .map(|s| {
                s.windows
                    .iter()
                    .map(|w| Window {
                        start: w.start,
                        end: w.end,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Some(Phase::Succeeded | Phase::Failed | Phase::NotDeferred) => Vec::new(),
        // Released or running (or held on paper while the release awaits its answer).
        _ => {
            let Ok(duration) = spec_duration(spec) else {
                return Member::Out;
            };
            let start = status
                .and_then(|s| s.started_at.or(s.released_at))
                .or(released_at)
                .unwrap_or(now);
            let end = start
                .checked_add_signed(duration - ran)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            vec![Window { start, end }]
        }
    };
    let windows: Vec<Window> = windows
        .into_iter()
        .filter(|w| w.end > now)
        .map(|w| Window {
            start: w.start.max(now),
            end: w.end,
        })
        .collect();
    if windows.is_empty() {
        Member::Out
    } else {
        Member::Committed { windows, demand }
    }
}

/// The fleet of `forecast` under `caps` with `members` at `now`: every committed workload
/// reserved, then every held one planned earliest deadline first (ties by key), which is
/// [`crate::planner::plan_batch_into`] over them (`tests/fleet_props.rs` checks it).
pub fn seed<K: Ord + Clone + Debug>(
    forecast: Forecast,
    caps: Caps,
    members: impl IntoIterator<Item = (K, Member)>,
    now: DateTime<Utc>,
) -> Result<Fleet<K>, FleetError> {
    let mut fleet = Fleet::new(forecast, caps)?;
    let mut held = Vec::new();
    for (key, m) in members {
        match m {
            Member::Committed { windows, demand } => fleet.commit(key, &windows, demand)?,
            Member::Held {
                constraints,
                demand,
            } => held.push((constraints.finish_by().ok(), key, constraints, demand)),
            Member::Out => {}
        }
    }
    // Insertion in deadline order is the exact schedule (planner::fleet's module documentation).
    held.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for (_, key, constraints, demand) in held {
        fleet.admit(key, constraints, demand, now);
    }
    Ok(fleet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::workload::{JobRef, PowerEstimate, TimeWindow};

    fn t(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + minute * 60, 0).unwrap_or_default()
    }

    fn spec() -> CarbonWorkloadSpec {
        CarbonWorkloadSpec {
            job_ref: JobRef::new("batch/v1", "Job", "j", "u"),
            forecast: "gb".into(),
            candidates: vec!["gb".into(), "fr".into()],
            submitted_at: t(0),
            duration: "30m".into(),
            deadline: t(600),
            latest_start: t(570),
            interruptible: false,
            dry_run: false,
            power_watts: 1000.0,
            power_source: "estimated".into(),
            power_estimate: Some(PowerEstimate {
                gpus_per_pod: 4,
                cpu_cores_per_pod: 8.0,
                parallelism: 2,
            }),
            pue: 1.0,
        }
    }

    fn status(phase: Phase) -> CarbonWorkloadStatus {
        CarbonWorkloadStatus {
            phase: Some(phase),
            ..CarbonWorkloadStatus::default()
        }
    }

    #[test]
    fn the_demand_counts_gpus_per_pod_times_pods_at_once() {
        assert_eq!(demand(&spec()), Demand { gpus: 8 });
        let declared = CarbonWorkloadSpec {
            power_estimate: None,
            ..spec()
        };
        assert_eq!(demand(&declared), Demand { gpus: 0 });
    }

    #[test]
    fn a_held_workload_is_planned_with_its_constraints() {
        let m = member(
            &spec(),
            Some(&status(Phase::Deferred)),
            None,
            TimeDelta::minutes(5),
            t(1),
        );
        let Member::Held {
            constraints,
            demand,
        } = m
        else {
            panic!("{m:?}");
        };
        assert_eq!(constraints.duration, TimeDelta::minutes(30));
        assert_eq!(demand.gpus, 8);
        // Before its first status too.
        assert!(matches!(
            member(&spec(), None, None, TimeDelta::minutes(5), t(1)),
            Member::Held { .. }
        ));
    }

    #[test]
    fn a_released_workload_reserves_the_rest_of_its_run_from_its_start() {
        let mut s = status(Phase::Running);
        s.released_at = Some(t(10));
        s.started_at = Some(t(11));
        let m = member(&spec(), Some(&s), Some(t(10)), TimeDelta::minutes(5), t(20));
        assert_eq!(
            m,
            Member::Committed {
                windows: vec![Window {
                    start: t(20),
                    end: t(41)
                }],
                demand: Demand { gpus: 8 }
            }
        );
        // Released while the status still says Deferred (it is written with the Job
        // controller's answer): committed from the release.
        let m = member(
            &spec(),
            Some(&status(Phase::Deferred)),
            Some(t(10)),
            TimeDelta::minutes(5),
            t(10),
        );
        assert_eq!(
            m,
            Member::Committed {
                windows: vec![Window {
                    start: t(10),
                    end: t(40)
                }],
                demand: Demand { gpus: 8 }
            }
        );
        // Its run is over by the clock: nothing left to reserve.
        assert_eq!(
            member(&spec(), Some(&s), Some(t(10)), TimeDelta::minutes(5), t(60)),
            Member::Out
        );
    }

    #[test]
    fn a_paused_workload_reserves_its_next_windows_and_finished_ones_nothing() {
        let mut s = status(Phase::Paused);
        s.runs = vec![TimeWindow {
            start: t(0),
            end: t(10),
        }];
        s.windows = vec![TimeWindow {
            start: t(100),
            end: t(120),
        }];
        let m = member(&spec(), Some(&s), None, TimeDelta::minutes(5), t(50));
        assert!(
            matches!(&m, Member::Committed { windows, .. } if windows == &[Window { start: t(100), end: t(120) }]),
            "{m:?}"
        );
        for phase in [Phase::Succeeded, Phase::Failed, Phase::NotDeferred] {
            assert_eq!(
                member(
                    &spec(),
                    Some(&status(phase)),
                    None,
                    TimeDelta::minutes(5),
                    t(50)
                ),
                Member::Out
            );
        }
        let dry = CarbonWorkloadSpec {
            dry_run: true,
            ..spec()
        };
        assert_eq!(
            member(&dry, None, None, TimeDelta::minutes(5), t(1)),
            Member::Out
        );
    }

    #[test]
    fn the_forecast_is_the_placed_candidate_else_the_spec_one() {
        let spec = spec();
        assert_eq!(forecast_of(&spec, None), "gb");
        let mut s = status(Phase::Deferred);
        s.placement = Some(crate::api::workload::PlacementStatus {
            forecast: "fr".into(),
            ..Default::default()
        });
        assert_eq!(forecast_of(&spec, Some(&s)), "fr");
        // A placement outside the candidates (edited annotations) does not count.
        s.placement = Some(crate::api::workload::PlacementStatus {
            forecast: "de".into(),
            ..Default::default()
        });
        assert_eq!(forecast_of(&spec, Some(&s)), "gb");
    }
}
