//! The shell's part of the carbon ledger: add a finished workload's figures — and, for the waste
//! guard, how it ended in its group — to the `CarbonLedger` of its namespace and forecast
//! (created on first use), in one read-modify-write with optimistic concurrency. Called before
//! the terminal status is written, so that a failure is retried and a retry is not counted twice
//! ([`crate::ledger::record`] and [`crate::waste::record`] remember the entry).

use chrono::{DateTime, Utc};
use kube::Api;
use kube::api::PostParams;
use tracing::debug;

use kube::core::DynamicObject;

use crate::api::{
    CarbonLedger, CarbonLedgerSpec, CarbonLedgerStatus, CarbonWorkload, CarbonWorkloadSpec,
    CarbonWorkloadStatus, Phase,
};
use crate::controller::{Context, Error};
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
/// group ([`super::waste::group`]), its outcome for the waste guard. A failed workload's grams
/// newly recorded go to `carbonshift_wasted_grams_total{namespace}`.
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
    if entries.is_empty() && outcome.is_none() {
        return Ok(());
    }
    let newly = record(
        ctx,
        namespace,
        &workload.spec.forecast,
        &entries,
        outcome.as_ref(),
        now,
    )
    .await?;
    if newly {
        for e in entries
            .iter()
            .filter(|e| e.failed && e.basis == Basis::Estimated)
        {
            ctx.metrics.record_wasted(namespace, e.emitted_grams);
        }
    }
    Ok(())
}

/// `status` with every one of `entries` and `outcome` added that is not in it yet; `None` when
/// all are.
fn add_all(
    status: &CarbonLedgerStatus,
    entries: &[Entry<'_>],
    outcome: Option<&crate::waste::Outcome<'_>>,
    now: DateTime<Utc>,
) -> Option<CarbonLedgerStatus> {
    let mut current = std::borrow::Cow::Borrowed(status);
    let mut changed = false;
    for entry in entries {
        if let Some(next) = ledger::record(&current, entry, now) {
            current = std::borrow::Cow::Owned(next);
            changed = true;
        } else {
            debug!(key = %entry.key(), "already in the ledger");
        }
    }
    if let Some(o) = outcome
        && let Some(next) = crate::waste::record(&current, o)
    {
        current = std::borrow::Cow::Owned(next);
        changed = true;
    }
    changed.then(|| current.into_owned())
}

/// Records `entries` and `outcome` in the ledger of `forecast` in `namespace`; `true` when
/// something was new.
async fn record(
    ctx: &Context,
    namespace: &str,
    forecast: &str,
    entries: &[Entry<'_>],
    outcome: Option<&crate::waste::Outcome<'_>>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
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
                    // Another replica or reconcile created it meanwhile: read it again.
                    Err(kube::Error::Api(status)) if status.code == 409 => continue,
                    Err(error) => return Err(Error::api(&what)(error)),
                }
            }
        };
        let current = ledger.status.clone().unwrap_or_default();
        let Some(next) = add_all(&current, entries, outcome, now) else {
            return Ok(false);
        };
        let mut updated = ledger;
        updated.status = Some(next);
        // The object carries the resourceVersion it was read at: a concurrent change is a 409.
        match ledgers
            .replace_status(forecast, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => last = Some(status),
            Err(error) => return Err(Error::api(&what)(error)),
        }
    }
    Err(Error::api(what)(kube::Error::Api(last.unwrap_or_default())))
}
