//! The shell's part of the carbon ledger: add finished workloads' figures — and, for the waste
//! guard, how each ended in its group — to the `CarbonLedger` of their namespace and forecast
//! (created on first use), with optimistic concurrency. Called before the terminal status is
//! written, so that a failure is retried and a retry is not counted twice
//! ([`crate::ledger::record`] and [`crate::waste::record`] remember each entry).
//!
//! Many workloads of one namespace often finish together (a burst released at the same clean
//! minute), and each would read and replace the same ledger, conflicting with the others. So the
//! writes are a group commit per ledger ([`LedgerWriter`]): a reconcile queues its entries and
//! takes the ledger's turn; whoever holds the turn writes every entry queued so far in one
//! read-modify-write and tells each waiting reconcile how it went. One process then never
//! conflicts with itself, and a burst of N completions costs a few writes, not N.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::oneshot;
use tracing::debug;

use kube::core::DynamicObject;

use crate::api::{
    CarbonLedger, CarbonLedgerSpec, CarbonWorkload, CarbonWorkloadSpec, CarbonWorkloadStatus, Phase,
};
use crate::controller::{Context, Error, ErrorCategory};
use crate::ledger::{self, Basis, Entry};
use crate::lifecycle::Decision;

/// Attempts at the read-modify-write before giving up for this reconcile (it is retried).
const ATTEMPTS: usize = 5;

/// The ledger entries `decision` asks for: the estimate on completion, the measured figures on
/// verification.
pub(super) fn entries<'a>(
    decision: &Decision,
    spec: &'a CarbonWorkloadSpec,
    status: &CarbonWorkloadStatus,
) -> Vec<Entry<'a>> {
    let Some(finished_at) = status.finished_at else {
        return Vec::new();
    };
    let failed = status.phase == Some(Phase::Failed);
    let mut out = Vec::new();
    if let Some(c) = decision.completion {
        out.push(Entry {
            uid: &spec.job_ref.uid,
            basis: Basis::Estimated,
            finished_at,
            energy_kwh: status.estimated_energy_kwh.unwrap_or(0.0),
            emitted_grams: c.emitted_grams,
            avoided_grams: c.avoided_grams,
            failed,
        });
    }
    if let Some(v) = decision.verified {
        out.push(Entry {
            uid: &spec.job_ref.uid,
            basis: Basis::Verified,
            finished_at,
            energy_kwh: status.verified.as_ref().map_or(0.0, |f| f.energy_kwh),
            emitted_grams: v.emitted_grams,
            avoided_grams: v.avoided_grams,
            failed,
        });
    }
    out
}

/// Records what `decision` finishes for `workload` (of the object `job`) before `status` is
/// written: its ledger entries ([`entries`]) and, when it turns terminal now and belongs to a
/// group ([`super::waste::group`]), its outcome for the waste guard.
pub(super) async fn record_finished(
    ctx: &Context,
    namespace: &str,
    job: &DynamicObject,
    decision: &Decision,
    workload: &CarbonWorkload,
    status: &CarbonWorkloadStatus,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let entries = entries(decision, &workload.spec, status);
    let group = super::waste::group(job);
    let outcome = group.as_deref().and_then(|g| {
        crate::waste::outcome(
            g,
            &workload.spec.job_ref.uid,
            workload.status.as_ref(),
            status,
        )
    });
    record_with(
        ctx,
        namespace,
        &workload.spec.forecast,
        &entries,
        outcome.as_ref(),
        now,
    )
    .await
}

/// A waste-guard outcome that owns its strings, to wait in a queue.
#[derive(Debug, Clone)]
struct QueuedOutcome {
    group: String,
    uid: String,
    succeeded: bool,
    wasted_grams: f64,
    finished_at: DateTime<Utc>,
}

impl QueuedOutcome {
    fn of(o: &crate::waste::Outcome<'_>) -> Self {
        Self {
            group: o.group.to_string(),
            uid: o.uid.to_string(),
            succeeded: o.succeeded,
            wasted_grams: o.wasted_grams,
            finished_at: o.finished_at,
        }
    }

    fn outcome(&self) -> crate::waste::Outcome<'_> {
        crate::waste::Outcome {
            group: &self.group,
            uid: &self.uid,
            succeeded: self.succeeded,
            wasted_grams: self.wasted_grams,
            finished_at: self.finished_at,
        }
    }
}

/// An [`Entry`] that owns its uid, to wait in a queue.
#[derive(Debug, Clone)]
struct Queued {
    uid: String,
    basis: Basis,
    finished_at: DateTime<Utc>,
    energy_kwh: f64,
    emitted_grams: f64,
    avoided_grams: Option<f64>,
    failed: bool,
}

impl Queued {
    fn of(entry: &Entry<'_>) -> Queued {
        Queued {
            uid: entry.uid.to_string(),
            basis: entry.basis,
            finished_at: entry.finished_at,
            energy_kwh: entry.energy_kwh,
            emitted_grams: entry.emitted_grams,
            avoided_grams: entry.avoided_grams,
            failed: entry.failed,
        }
    }

    fn entry(&self) -> Entry<'_> {
        Entry {
            uid: &self.uid,
            basis: self.basis,
            finished_at: self.finished_at,
            energy_kwh: self.energy_kwh,
            emitted_grams: self.emitted_grams,
            avoided_grams: self.avoided_grams,
            failed: self.failed,
        }
    }
}

/// How a group commit ended, for each reconcile that waited on it.
type Outcome = Result<(), (String, ErrorCategory)>;

/// One reconcile's part of the next write.
type Pending = (Vec<Queued>, Option<QueuedOutcome>, oneshot::Sender<Outcome>);

/// One ledger's queue and turn.
#[derive(Default)]
struct Queue {
    /// Held by the reconcile writing the ledger now.
    turn: tokio::sync::Mutex<()>,
    /// Entries (and waste-guard outcomes) waiting for the next write, each with whom to tell.
    pending: Mutex<Vec<Pending>>,
}

/// The group commit of every ledger of this process (module documentation). One per
/// [`Context`]; its size is the number of ledgers written (namespaces × forecasts).
#[derive(Default)]
pub struct LedgerWriter {
    queues: Mutex<HashMap<String, Arc<Queue>>>,
}

impl std::fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerWriter").finish_non_exhaustive()
    }
}

impl LedgerWriter {
    fn queue(&self, namespace: &str, forecast: &str) -> Arc<Queue> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues
            .entry(format!("{namespace}/{forecast}"))
            .or_default()
            .clone()
    }
}

/// Records `entries` in the ledger of `forecast` in `namespace`, together with whatever other
/// reconciles queued for it meanwhile; returns when they are written (or failed).
#[cfg(test)]
pub(super) async fn record(
    ctx: &Context,
    namespace: &str,
    forecast: &str,
    entries: &[Entry<'_>],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    record_with(ctx, namespace, forecast, entries, None, now).await
}

/// [`record`] with a waste-guard outcome.
async fn record_with(
    ctx: &Context,
    namespace: &str,
    forecast: &str,
    entries: &[Entry<'_>],
    outcome: Option<&crate::waste::Outcome<'_>>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if entries.is_empty() && outcome.is_none() {
        return Ok(());
    }
    let queue = ctx.ledgers.queue(namespace, forecast);
    let (tell, mut told) = oneshot::channel();
    queue
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((
            entries.iter().map(Queued::of).collect(),
            outcome.map(QueuedOutcome::of),
            tell,
        ));
    let turn = queue.turn.lock().await;
    // Written by the reconcile that had the turn before: done.
    if let Ok(outcome) = told.try_recv() {
        return shared(outcome);
    }
    let batch = std::mem::take(&mut *queue.pending.lock().unwrap_or_else(PoisonError::into_inner));
    let all: Vec<Entry<'_>> = batch
        .iter()
        .flat_map(|(queued, ..)| queued.iter().map(Queued::entry))
        .collect();
    let outcomes: Vec<crate::waste::Outcome<'_>> = batch
        .iter()
        .filter_map(|(_, o, _)| o.as_ref().map(QueuedOutcome::outcome))
        .collect();
    let result = write(ctx, namespace, forecast, &all, &outcomes, now).await;
    let outcome: Outcome = match &result {
        Ok(()) => Ok(()),
        Err(error) => Err((error.to_string(), error.kind())),
    };
    debug!(namespace, forecast, entries = all.len(), "ledger written");
    drop(all);
    drop(outcomes);
    for (_, _, waiter) in batch {
        // A waiter that went away (its reconcile was cancelled) needs no answer.
        let _ = waiter.send(outcome.clone());
    }
    drop(turn);
    match told.await {
        Ok(outcome) => shared(outcome),
        // Our own entries were in the batch; the sender cannot be gone before it answered.
        Err(_) => result,
    }
}

fn shared(outcome: Outcome) -> Result<(), Error> {
    outcome.map_err(|(message, category)| Error::Shared { message, category })
}

/// One read-modify-write of the ledger with `entries` and `outcomes` (those already recorded are
/// skipped).
async fn write(
    ctx: &Context,
    namespace: &str,
    forecast: &str,
    entries: &[Entry<'_>],
    outcomes: &[crate::waste::Outcome<'_>],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let ledgers: Api<CarbonLedger> = Api::namespaced(ctx.client.clone(), namespace);
    let what = format!("recording in CarbonLedger {namespace}/{forecast}");
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let ledger = match ledgers.get_opt(forecast).await.map_err(Error::api(&what))? {
            Some(ledger) => ledger,
            None => {
                let new = CarbonLedger::new(
                    forecast,
                    CarbonLedgerSpec {
                        forecast: forecast.to_string(),
                    },
                );
                match ledgers.create(&PostParams::default(), &new).await {
                    Ok(created) => created,
                    // Another replica created it meanwhile: read it again.
                    Err(kube::Error::Api(status)) if status.code == 409 => continue,
                    Err(error) => return Err(Error::api(&what)(error)),
                }
            }
        };
        let current = ledger.status.clone().unwrap_or_default();
        let next = entries.iter().fold(None, |next: Option<_>, entry| {
            let base = next.as_ref().unwrap_or(&current);
            ledger::record(base, entry, now).or(next)
        });
        let next = outcomes.iter().fold(next, |next: Option<_>, outcome| {
            let base = next.as_ref().unwrap_or(&current);
            crate::waste::record(base, outcome).or(next)
        });
        let Some(next) = next else {
            debug!(namespace, forecast, "already in the ledger");
            return Ok(());
        };
        let mut updated = ledger;
        updated.status = Some(next);
        // The object carries the resourceVersion it was read at: a concurrent change (another
        // replica during a hand-over) is a 409.
        match ledgers
            .replace_status(forecast, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => last = Some(status),
            Err(error) => return Err(Error::api(&what)(error)),
        }
    }
    Err(Error::api(what)(kube::Error::Api(last.unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{Expect, Reply, TestEnv, t};
    use serde_json::json;

    const LEDGERS: &str = "/apis/carbonshift.dev/v1alpha1/namespaces/ml/carbonledgers";

    fn entry(uid: &str) -> Entry<'_> {
        Entry {
            uid,
            basis: Basis::Estimated,
            finished_at: t("2026-05-04T12:00:00Z"),
            energy_kwh: 1.0,
            emitted_grams: 100.0,
            avoided_grams: Some(50.0),
            failed: false,
        }
    }

    /// Three reconciles finishing while another holds the ledger's turn: one read and one write
    /// carry all three entries, and each reconcile learns it succeeded.
    #[tokio::test]
    async fn completions_queued_behind_a_write_go_out_together_in_one_write() {
        let env = TestEnv::new(t("2026-05-04T12:00:00Z"));
        let ctx = Arc::new((*env.ctx).clone());
        let mut ledger = CarbonLedger::new(
            "default",
            CarbonLedgerSpec {
                forecast: "default".into(),
            },
        );
        ledger.metadata.namespace = Some("ml".into());
        ledger.metadata.resource_version = Some("3".into());
        let body = serde_json::to_value(&ledger).unwrap_or_default();
        env.api.expect(
            Expect::get(format!("{LEDGERS}/default")).reply(Reply::Json(200, body.clone())),
        );
        env.api.expect(
            Expect::put(format!("{LEDGERS}/default/status"))
                .body("/metadata/resourceVersion", json!("3"))
                .body("/status/total/jobs", json!(3))
                .body("/status/total/emittedGrams", json!(300.0))
                .reply(Reply::Json(200, body)),
        );
        let queue = ctx.ledgers.queue("ml", "default");
        let held = queue.turn.lock().await;
        let now = t("2026-05-04T12:00:00Z");
        let tasks: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|uid| {
                let ctx = ctx.clone();
                tokio::spawn(async move { record(&ctx, "ml", "default", &[entry(uid)], now).await })
            })
            .collect();
        while queue.pending.lock().map(|p| p.len()).unwrap_or(0) < 3 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for task in tasks {
            let result = task.await.unwrap_or_else(|e| panic!("{e}"));
            assert!(result.is_ok(), "{result:?}");
        }
        env.api.verify();
    }
}
