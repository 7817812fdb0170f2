//! The shell's part of the carbon ledger: add a finished workload's figures to the
//! `CarbonLedger` of its namespace and forecast (created on first use), with optimistic
//! concurrency. Called before the terminal status is written, so that a failure is retried and
//! a retry is not counted twice ([`crate::ledger::record`] remembers the entry).

use chrono::{DateTime, Utc};
use kube::Api;
use kube::api::PostParams;
use tracing::debug;

use crate::api::{CarbonLedger, CarbonLedgerSpec, CarbonWorkloadSpec, CarbonWorkloadStatus};
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
    let mut out = Vec::new();
    if let Some(c) = decision.completion {
        out.push(Entry {
            uid: &spec.job_ref.uid,
            basis: Basis::Estimated,
            finished_at,
            energy_kwh: status.estimated_energy_kwh.unwrap_or(0.0),
            emitted_grams: c.emitted_grams,
            avoided_grams: c.avoided_grams,
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
        });
    }
    out
}

/// Records `entry` in the ledger of `forecast` in `namespace`.
pub(super) async fn record(
    ctx: &Context,
    namespace: &str,
    forecast: &str,
    entry: &Entry<'_>,
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
                    // Another replica or reconcile created it meanwhile: read it again.
                    Err(kube::Error::Api(status)) if status.code == 409 => continue,
                    Err(error) => return Err(Error::api(&what)(error)),
                }
            }
        };
        let current = ledger.status.clone().unwrap_or_default();
        let Some(next) = ledger::record(&current, entry, now) else {
            debug!(key = %entry.key(), "already in the ledger");
            return Ok(());
        };
        let mut updated = ledger;
        updated.status = Some(next);
        // The object carries the resourceVersion it was read at: a concurrent change is a 409.
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
