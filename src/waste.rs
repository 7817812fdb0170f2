//! The waste guard: spend no energy on work that keeps failing. Workloads of one group (the
//! `carbonshift.dev/group` annotation, else the CronJob that owns them) that failed
//! [`DEFAULT_FAILURES`] times in a row make the next one of the group wait, held with reason
//! [`WASTE_GUARD`] and a Warning Event, until someone sets `carbonshift.dev/run-now: "true"` on it
//! or a workload of the group succeeds. The count lives in the group's [`GroupRecord`] in the
//! CarbonLedger status, so it survives restarts. Pure: the workload controller reads the ledger,
//! calls [`record`] when a workload finishes and [`guard`] on every decision for a held one.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::api::annotations::GROUP;
use crate::api::ledger::{CarbonLedgerStatus, GroupRecord, MAX_GROUPS, MAX_RECENT};
use crate::api::{CarbonWorkloadStatus, Phase};
use crate::lifecycle::{Decision, JobAction, ReleaseReason};
use crate::note::{Note, NoteKind};

/// Consecutive failures of a group that hold its next workload, unless set otherwise
/// (`--waste-guard-failures`; 0 turns the guard off).
pub const DEFAULT_FAILURES: u32 = 3;
/// The reason of a workload the guard holds, and of its Warning Event.
pub use crate::lifecycle::reason::WASTE_GUARD;
/// How often a workload the guard holds is looked at again (a success of its group, or a
/// `run-now`, lets it go; the annotation edit is seen at once).
pub const RECHECK: TimeDelta = TimeDelta::seconds(30);
/// Longest group name kept; longer `carbonshift.dev/group` values are cut.
pub const MAX_GROUP_NAME: usize = 253;

/// The workload's group: the `carbonshift.dev/group` annotation when set and not empty, else the
/// name of its owning CronJob (`owners`: `(kind, name)` of its owner references), else none.
pub fn group_of(
    annotations: Option<&BTreeMap<String, String>>,
    owners: &[(&str, &str)],
) -> Option<String> {
    let named = annotations
        .and_then(|a| a.get(GROUP))
        .map(|g| g.trim())
        .filter(|g| !g.is_empty());
    let group = match named {
        Some(g) => g.to_string(),
        None => owners
            .iter()
            .find(|(kind, _)| *kind == "CronJob")
            .map(|(_, name)| format!("cronjob/{name}"))?,
    };
    let mut end = group.len().min(MAX_GROUP_NAME);
    while !group.is_char_boundary(end) {
        end -= 1;
    }
    Some(group[..end].to_string())
}

/// How one workload of a group ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<'a> {
    /// The group.
    pub group: &'a str,
    /// The Job's uid: recording is idempotent per uid.
    pub uid: &'a str,
    /// `true` when it succeeded.
    pub succeeded: bool,
    /// Estimated gCO2eq of its runs, when it failed.
    pub wasted_grams: f64,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

impl Outcome<'_> {
    /// The idempotency key in the ledger's `recent` list, `<uid>/outcome`.
    pub fn key(&self) -> String {
        format!("{}/outcome", self.uid)
    }
}

/// The outcome of a workload whose status turns terminal now (`previous`: its stored status),
/// in `group`; `None` when it was terminal already or is not finished.
pub fn outcome<'a>(
    group: &'a str,
    uid: &'a str,
    previous: Option<&CarbonWorkloadStatus>,
    next: &CarbonWorkloadStatus,
) -> Option<Outcome<'a>> {
    let was_terminal = previous
        .and_then(|s| s.phase)
        .is_some_and(Phase::is_terminal);
    let phase = next.phase.filter(|p| p.is_terminal())?;
    if was_terminal {
        return None;
    }
    Some(Outcome {
        group,
        uid,
        succeeded: phase == Phase::Succeeded,
        wasted_grams: next.wasted_grams.unwrap_or(0.0),
        finished_at: next.finished_at.unwrap_or_default(),
    })
}

/// The ledger with `outcome` counted in its group, or `None` when it is counted already. A
/// success resets the group's count; a failure adds one and its grams. At most [`MAX_GROUPS`]
/// groups are kept (the one whose last outcome is oldest goes first).
pub fn record(status: &CarbonLedgerStatus, outcome: &Outcome<'_>) -> Option<CarbonLedgerStatus> {
    let key = outcome.key();
    if status.recent.contains(&key) {
        return None;
    }
    let mut next = status.clone();
    let index = match next.groups.iter().position(|g| g.name == outcome.group) {
        Some(i) => i,
        None => {
            next.groups.push(GroupRecord {
                name: outcome.group.to_string(),
                ..GroupRecord::default()
            });
            next.groups.len() - 1
        }
    };
    let g = &mut next.groups[index];
    if outcome.succeeded {
        g.consecutive_failures = 0;
        g.last_outcome = Phase::Succeeded.as_str().to_string();
    } else {
        g.consecutive_failures = g.consecutive_failures.saturating_add(1);
        g.wasted_grams += outcome.wasted_grams.max(0.0);
        g.last_outcome = Phase::Failed.as_str().to_string();
    }
    g.last_finished_at = g.last_finished_at.max(outcome.finished_at);
    while next.groups.len() > MAX_GROUPS {
        let oldest = next
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.name != outcome.group)
            .min_by_key(|(_, g)| g.last_finished_at)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                next.groups.remove(i);
            }
            None => break,
        }
    }
    next.groups.sort_by(|a, b| a.name.cmp(&b.name));
    next.recent.push(key);
    let excess = next.recent.len().saturating_sub(MAX_RECENT);
    next.recent.drain(..excess);
    Some(next)
}

/// Sets `status.wastedGrams` on a decision that turns the workload `Failed` with completion
/// figures: the estimated emissions of its runs.
pub fn mark_wasted(decision: &mut Decision) {
    if let (Some(status), Some(completion)) = (decision.status.as_mut(), decision.completion)
        && status.phase == Some(Phase::Failed)
    {
        status.wasted_grams = Some(completion.emitted_grams.max(0.0));
    }
}

/// Whether `decision` keeps its workload held by the guard (reason [`WASTE_GUARD`]): no release
/// may be prepared ahead for it.
pub fn is_held(decision: &Decision) -> bool {
    decision.job_action.is_none()
        && decision.status.as_ref().and_then(|s| s.reason.as_deref()) == Some(WASTE_GUARD)
}

/// What the guard did to a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// Nothing: the group is below the threshold, the guard is off, or the workload is not
    /// waiting.
    No,
    /// Held (or kept held) with reason [`WASTE_GUARD`].
    Held,
}

/// Whether a decision is for a workload that has not run yet and is waiting or about to be
/// released (a `run-now` release and the resumption of a paused workload aside): the guard's
/// business.
pub fn waiting(decision: &Decision) -> bool {
    match &decision.job_action {
        Some(JobAction::Release { reason, .. }) => !matches!(
            reason,
            ReleaseReason::ManualRelease | ReleaseReason::Resumed
        ),
        Some(JobAction::Pause) => false,
        None => decision
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| matches!(p, Phase::Pending | Phase::Deferred)),
    }
}

/// Holds the workload of `decision` when its group `record` failed `threshold` times in a row
/// (0: the guard is off): no release (a `run-now` release, reason `ManualRelease`, passes),
/// reason [`WASTE_GUARD`] with a message saying why and what lets it go, a Warning Event the
/// first time (`previous`: the stored status), and a look again within [`RECHECK`]. The guard
/// holds also past the latest start: a group that failed that often is expected to fail again.
pub fn guard(
    decision: &mut Decision,
    previous: Option<&CarbonWorkloadStatus>,
    group: &str,
    record: Option<&GroupRecord>,
    threshold: u32,
    now: DateTime<Utc>,
) -> Guarded {
    let Some(record) = record else {
        return Guarded::No;
    };
    if threshold == 0 || record.consecutive_failures < threshold || !waiting(decision) {
        return Guarded::No;
    }
    let message = format!(
        "held by the waste guard: the last {} workloads of group {group} failed in a row ({:.1} gCO2eq spent on failed runs); it runs once a workload of the group succeeds, or at once with carbonshift.dev/run-now: \"true\"",
        record.consecutive_failures, record.wasted_grams
    );
    let releasing = matches!(decision.job_action, Some(JobAction::Release { .. }));
    if releasing {
        decision.job_action = None;
        // The release's own Events (Released, DeadlineRelease, ...) did not happen.
        decision.events.clear();
        decision.completion = None;
        let base = previous.cloned().or_else(|| decision.status.clone());
        let mut status = base.unwrap_or_default();
        if !matches!(status.phase, Some(Phase::Pending | Phase::Deferred)) {
            status.phase = Some(Phase::Pending);
        }
        status.released_at = None;
        decision.status = Some(status);
    }
    let newly = previous.and_then(|p| p.reason.as_deref()) != Some(WASTE_GUARD);
    if let Some(status) = decision.status.as_mut() {
        status.reason = Some(WASTE_GUARD.to_string());
        status.message = Some(message.clone());
    }
    if newly {
        decision.events.push(Note {
            kind: NoteKind::Warning,
            reason: WASTE_GUARD,
            action: "Hold",
            message,
        });
    }
    let recheck = now + RECHECK;
    decision.requeue_at = Some(decision.requeue_at.map_or(recheck, |at| at.min(recheck)));
    Guarded::Held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::parse_timestamp;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap_or_default()
    }

    fn failed<'a>(group: &'a str, uid: &'a str) -> Outcome<'a> {
        Outcome {
            group,
            uid,
            succeeded: false,
            wasted_grams: 10.0,
            finished_at: t("2026-12-07T10:00:00Z"),
        }
    }

    fn held(phase: Phase) -> Decision {
        Decision {
            status: Some(CarbonWorkloadStatus {
                phase: Some(phase),
                reason: Some("Planned".into()),
                ..CarbonWorkloadStatus::default()
            }),
            ..Decision::default()
        }
    }

    fn record_of(failures: u32) -> GroupRecord {
        GroupRecord {
            name: "nightly".into(),
            consecutive_failures: failures,
            wasted_grams: 30.0,
            last_outcome: "Failed".into(),
            last_finished_at: t("2026-12-07T10:00:00Z"),
        }
    }

    #[test]
    fn the_group_is_the_annotation_else_the_owning_cronjob() {
        let annotations: BTreeMap<String, String> =
            [(GROUP.to_string(), " nightly ".to_string())].into();
        let owners = [("CronJob", "train-nightly")];
        assert_eq!(
            group_of(Some(&annotations), &owners).as_deref(),
            Some("nightly")
        );
        assert_eq!(
            group_of(None, &owners).as_deref(),
            Some("cronjob/train-nightly")
        );
        let empty: BTreeMap<String, String> = [(GROUP.to_string(), "".to_string())].into();
        assert_eq!(group_of(Some(&empty), &[("ReplicaSet", "x")]), None);
        let long: BTreeMap<String, String> = [(GROUP.to_string(), "é".repeat(300))].into();
        let cut = group_of(Some(&long), &[]).unwrap_or_default();
        assert!(cut.len() <= MAX_GROUP_NAME && !cut.is_empty());
    }

    #[test]
    fn failures_count_in_a_row_and_a_success_resets_them_once_each() {
        let mut status = CarbonLedgerStatus::default();
        for uid in ["a", "b", "c"] {
            status =
                record(&status, &failed("nightly", uid)).unwrap_or_else(|| panic!("not recorded"));
        }
        assert_eq!(
            record(&status, &failed("nightly", "c")),
            None,
            "counted twice"
        );
        let g = &status.groups[0];
        assert_eq!(
            (
                g.consecutive_failures,
                g.wasted_grams,
                g.last_outcome.as_str()
            ),
            (3, 30.0, "Failed")
        );
        let ok = Outcome {
            succeeded: true,
            ..failed("nightly", "d")
        };
        let after = record(&status, &ok).unwrap_or_else(|| panic!("not recorded"));
        assert_eq!(after.groups[0].consecutive_failures, 0);
        assert_eq!(after.groups[0].wasted_grams, 30.0);
    }

    #[test]
    fn an_outcome_is_taken_only_on_the_transition_to_terminal() {
        let running = CarbonWorkloadStatus {
            phase: Some(Phase::Running),
            ..CarbonWorkloadStatus::default()
        };
        let failed_status = CarbonWorkloadStatus {
            phase: Some(Phase::Failed),
            wasted_grams: Some(12.5),
            finished_at: Some(t("2026-12-07T10:00:00Z")),
            ..CarbonWorkloadStatus::default()
        };
        let o = outcome("g", "u", Some(&running), &failed_status)
            .unwrap_or_else(|| panic!("no outcome"));
        assert_eq!((o.succeeded, o.wasted_grams), (false, 12.5));
        assert_eq!(
            outcome("g", "u", Some(&failed_status), &failed_status),
            None
        );
        assert_eq!(outcome("g", "u", None, &running), None);
    }

    #[test]
    fn the_guard_holds_a_release_until_run_now_and_says_so_once() {
        let now = t("2026-12-07T12:00:00Z");
        let release = |reason| Decision {
            job_action: Some(JobAction::Release {
                reason,
                planned: now,
            }),
            status: Some(CarbonWorkloadStatus {
                phase: Some(Phase::Released),
                released_at: Some(now),
                ..CarbonWorkloadStatus::default()
            }),
            events: vec![Note {
                kind: NoteKind::Normal,
                reason: "Released",
                action: "Release",
                message: "released".into(),
            }],
            ..Decision::default()
        };
        let previous = held(Phase::Deferred).status;
        for reason in [
            ReleaseReason::Released,
            ReleaseReason::DeadlineRelease,
            ReleaseReason::NoForecast,
        ] {
            let mut d = release(reason);
            let g = guard(
                &mut d,
                previous.as_ref(),
                "nightly",
                Some(&record_of(3)),
                3,
                now,
            );
            assert_eq!(g, Guarded::Held);
            assert_eq!(d.job_action, None);
            let s = d.status.clone().unwrap_or_default();
            assert_eq!(
                (s.phase, s.reason.as_deref(), s.released_at),
                (Some(Phase::Deferred), Some(WASTE_GUARD), None)
            );
            assert!(s.message.unwrap_or_default().starts_with("held by the waste guard: the last 3 workloads of group nightly failed in a row (30.0 gCO2eq"));
            let reasons: Vec<&str> = d.events.iter().map(|e| e.reason).collect();
            assert_eq!(reasons, [WASTE_GUARD]);
            assert_eq!(d.requeue_at, Some(now + RECHECK));
            assert!(is_held(&d));
        }
        // run-now passes; below the threshold, or off, nothing happens.
        let mut d = release(ReleaseReason::ManualRelease);
        assert_eq!(
            guard(
                &mut d,
                previous.as_ref(),
                "nightly",
                Some(&record_of(9)),
                3,
                now
            ),
            Guarded::No
        );
        let mut d = release(ReleaseReason::Released);
        assert_eq!(
            guard(
                &mut d,
                previous.as_ref(),
                "nightly",
                Some(&record_of(2)),
                3,
                now
            ),
            Guarded::No
        );
        assert_eq!(
            guard(
                &mut d,
                previous.as_ref(),
                "nightly",
                Some(&record_of(9)),
                0,
                now
            ),
            Guarded::No
        );
        assert!(d.job_action.is_some());
        // Already held by the guard: no second Event.
        let mut again = held(Phase::Deferred);
        let stored = CarbonWorkloadStatus {
            reason: Some(WASTE_GUARD.into()),
            ..again.status.clone().unwrap_or_default()
        };
        assert_eq!(
            guard(
                &mut again,
                Some(&stored),
                "nightly",
                Some(&record_of(3)),
                3,
                now
            ),
            Guarded::Held
        );
        assert!(again.events.is_empty());
        // A running workload is not the guard's business.
        let mut running = held(Phase::Running);
        assert_eq!(
            guard(&mut running, None, "nightly", Some(&record_of(5)), 3, now),
            Guarded::No
        );
    }

    #[test]
    fn a_failed_decision_records_its_wasted_grams() {
        let mut d = held(Phase::Failed);
        d.completion = Some(crate::lifecycle::Completion {
            emitted_grams: 42.0,
            avoided_grams: None,
        });
        mark_wasted(&mut d);
        assert_eq!(d.status.and_then(|s| s.wasted_grams), Some(42.0));
        let mut ok = held(Phase::Succeeded);
        ok.completion = Some(crate::lifecycle::Completion {
            emitted_grams: 42.0,
            avoided_grams: None,
        });
        mark_wasted(&mut ok);
        assert_eq!(ok.status.and_then(|s| s.wasted_grams), None);
    }

    proptest! {
        /// The count is the number of failures since the last success, whatever the order and the
        /// repeats; the group list stays bounded.
        #[test]
        fn the_count_is_the_failures_since_the_last_success(
            events in proptest::collection::vec((0usize..300, any::<bool>(), 0usize..60), 1..200),
        ) {
            let mut status = CarbonLedgerStatus::default();
            let uids: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
            let groups: Vec<String> = (0..60).map(|i| format!("g{i}")).collect();
            let mut seen = std::collections::BTreeSet::new();
            let mut expected: BTreeMap<usize, u32> = BTreeMap::new();
            for (i, (u, ok, g)) in events.into_iter().enumerate() {
                let o = Outcome {
                    group: &groups[g],
                    uid: &uids[u],
                    succeeded: ok,
                    wasted_grams: 1.0,
                    finished_at: t("2026-12-01T00:00:00Z") + TimeDelta::minutes(i as i64),
                };
                let fresh = seen.insert(u);
                match record(&status, &o) {
                    Some(next) => {
                        prop_assert!(fresh);
                        status = next;
                        let c = expected.entry(g).or_default();
                        *c = if ok { 0 } else { *c + 1 };
                    }
                    None => prop_assert!(!fresh),
                }
            }
            prop_assert!(status.groups.len() <= MAX_GROUPS);
            for (g, count) in expected {
                let found = status.groups.iter().find(|r| r.name == groups[g]).map(|r| r.consecutive_failures);
                prop_assert_eq!(found, Some(count));
            }
        }
    }
}
