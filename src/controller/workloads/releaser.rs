//! Punctual releases: a release the state machine will decide at a known second is prepared
//! ahead and sent at that second, rather than discovered in the reconcile queue when it is due.
//!
//! Whenever a reconcile leaves a workload held until a time `at` (its planned start, the next
//! window of a paused one, or its latest start minus the margin), it asks the state machine what
//! it will decide at `at` from the same facts ([`lifecycle::decide`] with `now = at`, the
//! forecast's freshness as it will be then). When that is a release, the guarded patch's
//! [`Guard`] (the Job's resourceVersion as read), the reason and the release's Events are
//! [armed](Armed::arm) here, replacing what was armed for the Job before; any other decision
//! disarms it. Every change of the Job, its workload or its forecast reconciles the Job again and
//! so re-arms it from the new facts.
//!
//! One task per kind ([`run`]) sleeps until the earliest armed second and sends every release
//! due then concurrently, at most [`OperatorConfig::release_concurrency`] in flight. It wakes
//! [`WARM_AHEAD`] before that second too: when at least [`WARM_MIN`] are armed for it by then,
//! it opens the connections they need, so the burst does not start with TLS handshakes. The
//! releases go through the same client as everything else (its rate limits and API Priority
//! and Fairness apply). A patch refused because the Job changed since it was armed, or failed,
//! writes nothing and reconciles the Job at once, which decides again from the Job as it is.
//! The Events of the releases that went out are published after the last due patch was sent,
//! so they never delay a release. The workload's status is not written here: the Job's watch
//! event reconciles it, and the state machine records the release together with the Job
//! controller's answer ([`lifecycle::Config::release_ack_wait`]).
//!
//! The reconcile still looks again shortly after `at` ([`grace`]: a quarter of the margin, at
//! most [`MAX_GRACE`]), so a release that could not be sent (this task stopped, the API
//! unreachable) is decided by the reconcile as before, still before the latest start: the
//! deadline rule never depends on this task. A burst can take longer than the grace to send
//! (10,000 releases due at one second take about 45 s on a 2-core control plane): a release this
//! task has taken out and not had answered yet is [in flight](Armed::in_flight), and a reconcile
//! of that Job waits for the answer instead of sending the same patch, which the API server would
//! refuse (the Job changed) after the workload's status had already been written twice.
//!
//! [`OperatorConfig::release_concurrency`]: crate::controller::OperatorConfig::release_concurrency

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use tracing::{debug, info, warn};

use super::WorkloadController;
use crate::controller::release::{self, Guard, Outcome};
use crate::controller::{Error, WORKLOADS};
use crate::lifecycle::ReleaseReason;
use crate::note::Note;

/// The longest [`grace`].
pub const MAX_GRACE: TimeDelta = TimeDelta::seconds(30);

/// How long after an armed second the reconcile looks again itself, in case the release could
/// not be sent: a quarter of the `margin` (so a deadline release still comes before the latest
/// start), at most [`MAX_GRACE`]; zero without a margin.
pub fn grace(margin: TimeDelta) -> TimeDelta {
    (margin / 4).clamp(TimeDelta::zero(), MAX_GRACE)
}

/// A release prepared ahead: everything the guarded patch and its Events need.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The Job's namespace.
    pub namespace: String,
    /// The Job's name.
    pub name: String,
    /// What the guarded patch tests: the Job as the release was decided from.
    pub guard: Guard,
    /// Why it is released.
    pub reason: ReleaseReason,
    /// The second the release is due (the lateness metric counts from it).
    pub planned: DateTime<Utc>,
    /// The Events the state machine gives the release.
    pub notes: Vec<Note>,
    /// The Job, for its Events.
    pub job_ref: ObjectReference,
    /// Further operations of the same guarded patch: a placed workload's node selector.
    pub extra: Vec<json_patch::PatchOperation>,
    /// The CarbonForecast it runs under (its fleet commits it when it is released).
    pub forecast: String,
    /// The release goes above the forecast's capacity cap (the deadline left no room).
    pub over_capacity: bool,
}

impl Prepared {
    /// `namespace/name`, the key the workload controller's memory uses.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The armed releases of one kind, by due second; at most one per Job. A release taken out to
/// be sent stays [in flight](Armed::in_flight) until its patch was answered.
#[derive(Debug, Default)]
pub struct Armed {
    by_time: BTreeMap<(DateTime<Utc>, String), Prepared>,
    by_key: HashMap<String, DateTime<Utc>>,
    in_flight: HashSet<String>,
}

impl Armed {
    /// Arms `prepared` for `at`, replacing what was armed for the same Job. Whether the earliest
    /// due second may have moved earlier (the task must look again).
    pub fn arm(&mut self, at: DateTime<Utc>, prepared: Prepared) -> bool {
        let key = prepared.key();
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        let earliest = self.next().is_none_or(|next| at < next);
        self.by_time.insert((at, key), prepared);
        earliest
    }

    /// Disarms the release of the Job `key` (`namespace/name`), if one is armed.
    pub fn disarm(&mut self, key: &str) {
        if let Some(at) = self.by_key.remove(key) {
            self.by_time.remove(&(at, key.to_string()));
        }
    }

    /// The earliest armed second.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.by_time.keys().next().map(|(at, _)| *at)
    }

    /// How many releases are due at `at` or before, counting at most `limit`.
    pub fn due_by(&self, at: DateTime<Utc>, limit: usize) -> usize {
        self.by_time
            .keys()
            .take_while(|(due, _)| *due <= at)
            .take(limit)
            .count()
    }

    /// Takes out every release due at `now`, earliest first; each is in flight until
    /// [`Armed::answered`].
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<Prepared> {
        let mut due = Vec::new();
        while let Some(entry) = self.by_time.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let prepared = entry.remove();
            let key = prepared.key();
            self.by_key.remove(&key);
            self.in_flight.insert(key);
            due.push(prepared);
        }
        due
    }

    /// The release of the Job `key` was answered (applied, refused or failed).
    pub fn answered(&mut self, key: &str) {
        self.in_flight.remove(key);
    }

    /// Whether the release of the Job `key` was taken out to be sent and not answered yet: a
    /// reconcile then leaves the Job to this task rather than race it with the same patch.
    pub fn in_flight(&self, key: &str) -> bool {
        self.in_flight.contains(key)
    }

    /// How many releases are armed.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none is armed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// How long before a burst's second the connections it needs are opened ([`warm_up`]).
pub const WARM_AHEAD: TimeDelta = TimeDelta::seconds(2);

/// The fewest releases due at one second that are worth opening connections for ahead.
pub const WARM_MIN: usize = 8;

/// What the task does next, from the earliest armed second `next`, how many releases are due by
/// then (counted up to the concurrency) and whether the connections were opened for it already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing is armed.
    Idle,
    /// Look again at `until` ([`WARM_AHEAD`] before the earliest armed second), when the count
    /// of releases due then is the one that decides whether to open connections for them.
    Wait { until: DateTime<Utc> },
    /// Open `connections` connections now.
    WarmUp { connections: usize },
    /// Send what is due at `at`.
    Send { at: DateTime<Utc> },
}

/// The task's next step (pure; module documentation). Whether a burst is worth opening
/// connections for is decided [`WARM_AHEAD`] before it, from what is armed then: the releases
/// of a burst are armed one reconcile at a time, and arming one more at the same second does
/// not wake the task.
pub fn next_step(
    next: Option<DateTime<Utc>>,
    due: usize,
    warmed_for: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Next {
    let Some(at) = next else {
        return Next::Idle;
    };
    let warm_at = at - WARM_AHEAD;
    if now < warm_at {
        return Next::Wait { until: warm_at };
    }
    if due >= WARM_MIN && warmed_for != Some(at) && now < at {
        return Next::WarmUp { connections: due };
    }
    Next::Send { at }
}

/// Sends the armed releases of `this`'s kind at their seconds until `shutdown` (module
/// documentation).
pub async fn run(this: Arc<WorkloadController>, shutdown: impl Future<Output = ()> + Send) {
    let mut shutdown = std::pin::pin!(shutdown);
    let concurrency = this.ctx.config.release_concurrency.max(1);
    let mut warmed_for = None;
    loop {
        let next = this.armed_next();
        let due = next.map_or(0, |at| this.due_by(at, concurrency));
        let step = next_step(next, due, warmed_for, this.ctx.clock.now());
        if let Next::WarmUp { connections } = step {
            let _opened = warm_up(&this.ctx.client, connections).await;
            warmed_for = next;
            continue;
        }
        let at = match step {
            Next::Idle | Next::WarmUp { .. } => None,
            Next::Wait { until: at } | Next::Send { at } => Some(at),
        };
        let sleep = async {
            match at {
                Some(at) => {
                    let wait = (at - this.ctx.clock.now()).to_std().unwrap_or_default();
                    tokio::time::sleep(wait).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = this.armed_changed.notified() => continue,
            _ = sleep => {}
        }
        if !matches!(step, Next::Send { .. }) {
            continue;
        }
        let due = this.take_due(this.ctx.clock.now());
        if due.is_empty() {
            continue;
        }
        send_all(&this, due).await;
    }
}

/// Opens up to `connections` connections to the API server ahead of a burst, so that its first
/// patches do not wait for TLS handshakes: that many concurrent `GET /version` requests (readable
/// by every authenticated user); the client's pool keeps the connections open for the burst.
/// A failure only means the burst opens its own connections. How many were answered.
pub async fn warm_up(client: &kube::Client, connections: usize) -> usize {
    let answered = futures::stream::iter(0..connections)
        .map(|_| client.apiserver_version())
        .buffer_unordered(connections.max(1))
        .filter(|answer| std::future::ready(answer.is_ok()))
        .count()
        .await;
    debug!(
        connections,
        answered, "opened connections ahead of a burst of releases"
    );
    answered
}

/// Sends `due` concurrently, then publishes the Events of those that went out (in a task of its
/// own, so that the next due second is not kept waiting).
async fn send_all(this: &Arc<WorkloadController>, due: Vec<Prepared>) {
    let count = due.len();
    let concurrency = this.ctx.config.release_concurrency.max(1);
    // Each patch in a task of its own, so that both runtime threads build requests and read
    // answers while the watch events of the burst are decoded beside them.
    let sent: Vec<Prepared> = futures::stream::iter(due)
        .map(|prepared| tokio::spawn(send(this.clone(), prepared)))
        .buffer_unordered(concurrency)
        .filter_map(|joined| std::future::ready(joined.ok().flatten()))
        .collect()
        .await;
    info!(
        controller = WORKLOADS,
        kind = this.adapter.kind(),
        due = count,
        released = sent.len(),
        "sent the releases due"
    );
    let this = this.clone();
    tokio::spawn(async move {
        futures::stream::iter(sent)
            .for_each_concurrent(concurrency, |prepared| {
                let this = this.clone();
                async move {
                    for note in &prepared.notes {
                        this.ctx.publish(WORKLOADS, &prepared.job_ref, note).await;
                    }
                }
            })
            .await;
    });
}

/// A release taken out to be sent: its Job is [in flight](Armed::in_flight) until this is
/// dropped. [`send`] drops it once the patch was answered; dropping it also when the task
/// sending the patch panicked or was cancelled means a send that never finished cannot leave the
/// Job to a reconcile that only waits for the answer: the reconcile's own look after the grace
/// then decides it as if nothing had been armed.
pub(super) struct InFlight {
    controller: Arc<WorkloadController>,
    key: String,
}

impl InFlight {
    /// The Job `key` is being sent by `controller`'s releaser.
    pub(super) fn new(controller: Arc<WorkloadController>, key: String) -> Self {
        Self { controller, key }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.controller.answered(&self.key);
    }
}

/// Sends one prepared release; `Some` when it was applied.
async fn send(this: Arc<WorkloadController>, prepared: Prepared) -> Option<Prepared> {
    let in_flight = InFlight::new(this.clone(), prepared.key());
    let api = this.api(&prepared.namespace);
    let now = this.ctx.clock.now();
    let outcome = release::release(
        &api,
        this.adapter,
        &prepared.name,
        &prepared.guard,
        now,
        prepared.reason.as_str(),
        &prepared.extra,
    )
    .await;
    if let Ok(Outcome::Applied(_)) = &outcome {
        // Before it stops being in flight: a reconcile from then on knows the cache may be older.
        this.patched_key(&prepared.key(), prepared.guard.resource_version.clone());
    }
    drop(in_flight);
    match outcome {
        Ok(Outcome::Applied(_)) => {
            let lateness = (now - prepared.planned).num_milliseconds() as f64 / 1000.0;
            this.ctx
                .metrics
                .record_release(prepared.reason.as_str(), lateness);
            super::committed(
                &this.ctx,
                &prepared.forecast,
                &prepared.key(),
                now,
                prepared.over_capacity,
            );
            debug!(job = %prepared.key(), lateness, "released at its planned second");
            Some(prepared)
        }
        Ok(Outcome::Changed(message)) => {
            info!(job = %prepared.key(), %message, "the Job changed since its release was prepared; deciding again");
            this.reconcile_now(&prepared.namespace, &prepared.name);
            None
        }
        Ok(Outcome::Gone) => {
            this.forget(Some(&prepared.namespace), &prepared.name);
            None
        }
        Err(source) => {
            let error = Error::Api {
                action: format!("releasing {} {}", this.adapter.kind(), prepared.key()),
                source,
            };
            this.ctx
                .metrics
                .record_reconcile_error(WORKLOADS, error.category());
            warn!(%error, category = error.category(), "the prepared release failed; deciding again");
            this.reconcile_now(&prepared.namespace, &prepared.name);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + s, 0).unwrap_or_default()
    }

    fn prepared(name: &str, planned: DateTime<Utc>) -> Prepared {
        Prepared {
            namespace: "ns".into(),
            name: name.into(),
            guard: Guard {
                resource_version: Some("1".into()),
                held_marker: true,
                gate: None,
            },
            reason: ReleaseReason::Released,
            planned,
            notes: Vec::new(),
            job_ref: ObjectReference::default(),
            extra: Vec::new(),
            forecast: "f".into(),
            over_capacity: false,
        }
    }

    #[test]
    fn the_reconciles_grace_stays_inside_the_margin() {
        assert_eq!(grace(TimeDelta::minutes(5)), MAX_GRACE);
        assert_eq!(grace(TimeDelta::seconds(60)), TimeDelta::seconds(15));
        assert_eq!(grace(TimeDelta::zero()), TimeDelta::zero());
        assert_eq!(grace(TimeDelta::seconds(-5)), TimeDelta::zero());
    }

    #[test]
    fn due_releases_come_out_earliest_first_and_only_once() {
        let mut armed = Armed::default();
        assert!(armed.arm(at(20), prepared("b", at(20))));
        assert!(armed.arm(at(10), prepared("a", at(10))));
        assert!(!armed.arm(at(30), prepared("c", at(30))));
        assert_eq!(armed.next(), Some(at(10)));
        assert!(armed.take_due(at(9)).is_empty());
        let due: Vec<String> = armed
            .take_due(at(20))
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(due, ["a", "b"]);
        assert_eq!(armed.len(), 1);
        assert!(armed.take_due(at(20)).is_empty());
        assert_eq!(armed.next(), Some(at(30)));
    }

    #[test]
    fn re_arming_a_job_replaces_its_release_and_disarming_removes_it() {
        let mut armed = Armed::default();
        armed.arm(at(10), prepared("a", at(10)));
        // Re-planned later: the old second no longer releases it.
        armed.arm(at(50), prepared("a", at(50)));
        assert_eq!(armed.len(), 1);
        assert!(armed.take_due(at(10)).is_empty());
        assert_eq!(armed.next(), Some(at(50)));
        armed.disarm("ns/a");
        assert!(armed.is_empty());
        assert_eq!(armed.next(), None);
        armed.disarm("ns/a");
        assert!(armed.is_empty());
    }

    #[test]
    fn a_taken_release_is_in_flight_until_answered() {
        let mut armed = Armed::default();
        armed.arm(at(10), prepared("a", at(10)));
        armed.arm(at(20), prepared("b", at(20)));
        assert!(!armed.in_flight("ns/a"), "armed, not taken yet");
        assert_eq!(armed.take_due(at(10)).len(), 1);
        assert!(armed.in_flight("ns/a"));
        assert!(!armed.in_flight("ns/b"));
        // A reconcile that disarms the Job does not stop the patch being sent.
        armed.disarm("ns/a");
        assert!(armed.in_flight("ns/a"));
        armed.answered("ns/a");
        assert!(!armed.in_flight("ns/a"));
        armed.answered("ns/a");
        assert!(!armed.in_flight("ns/a"));
        assert_eq!(armed.len(), 1);
    }

    #[test]
    fn a_burst_opens_its_connections_ahead_once_and_single_releases_do_not() {
        let burst = at(60);
        let warm_at = burst - WARM_AHEAD;
        // Before WARM_AHEAD, the count is not final: look again then, however many are armed
        // now (the first of a burst is armed alone, the rest without waking the task).
        for due in [1, WARM_MIN - 1, 64] {
            assert_eq!(
                next_step(Some(burst), due, None, at(0)),
                Next::Wait { until: warm_at }
            );
        }
        // Then, many due: warm up at once, with as many connections as are due.
        assert_eq!(
            next_step(Some(burst), 64, None, warm_at),
            Next::WarmUp { connections: 64 }
        );
        // Armed late, inside WARM_AHEAD: warm up at once too.
        assert_eq!(
            next_step(Some(burst), 64, None, at(59)),
            Next::WarmUp { connections: 64 }
        );
        // Warmed for this second already, or the second has come: send.
        assert_eq!(
            next_step(Some(burst), 64, Some(burst), at(59)),
            Next::Send { at: burst }
        );
        assert_eq!(
            next_step(Some(burst), 64, None, burst),
            Next::Send { at: burst }
        );
        // Warmed for an earlier burst: this one is warmed too.
        assert_eq!(
            next_step(Some(burst), 64, Some(at(30)), warm_at),
            Next::WarmUp { connections: 64 }
        );
        // A few releases: no extra requests.
        assert_eq!(
            next_step(Some(burst), WARM_MIN - 1, None, warm_at),
            Next::Send { at: burst }
        );
        assert_eq!(next_step(None, 0, None, at(0)), Next::Idle);
    }

    #[test]
    fn due_by_counts_what_is_due_up_to_a_limit() {
        let mut armed = Armed::default();
        for i in 0..10 {
            armed.arm(at(60), prepared(&format!("j{i}"), at(60)));
        }
        armed.arm(at(61), prepared("later", at(61)));
        assert_eq!(armed.due_by(at(59), 64), 0);
        assert_eq!(armed.due_by(at(60), 64), 10);
        assert_eq!(armed.due_by(at(60), 4), 4);
        assert_eq!(armed.due_by(at(61), 64), 11);
    }

    #[test]
    fn many_jobs_due_at_the_same_second_all_come_out() {
        let mut armed = Armed::default();
        for i in 0..1000 {
            armed.arm(at(60), prepared(&format!("j{i}"), at(60)));
        }
        assert_eq!(armed.len(), 1000);
        assert_eq!(armed.take_due(at(60)).len(), 1000);
        assert!(armed.is_empty());
    }
}
