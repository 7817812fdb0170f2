//! The shell's part of the waste guard ([`crate::waste`]): a failed workload's decision gets its
//! wasted grams, and a held workload of a group that failed `--waste-guard-failures` times in a
//! row is kept held (reason `WasteGuard`). The group's record is read from the CarbonLedger of
//! the workload's namespace and forecast (one GET, only for a waiting workload that has a group
//! while the guard is on); the outcomes are written there by [`super::ledger::record_finished`].

use chrono::{DateTime, Utc};
use kube::Api;
use kube::core::DynamicObject;

use crate::api::{CarbonLedger, CarbonWorkload};
use crate::controller::{Context, Error};
use crate::lifecycle::Decision;

/// The workload's group: its `carbonshift.dev/group` annotation, else its owning CronJob.
pub(super) fn group(job: &DynamicObject) -> Option<String> {
    let owners: Vec<(&str, &str)> = job
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| (o.kind.as_str(), o.name.as_str()))
        .collect();
    crate::waste::group_of(job.metadata.annotations.as_ref(), &owners)
}

/// Applies the waste guard to `decision` about `job` (`workload`: as stored).
pub(super) async fn apply(
    ctx: &Context,
    namespace: &str,
    job: &DynamicObject,
    workload: Option<&CarbonWorkload>,
    decision: &mut Decision,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    crate::waste::mark_wasted(decision);
    let threshold = ctx.config.waste_guard_failures;
    if threshold == 0 || !crate::waste::waiting(decision) {
        return Ok(());
    }
    let (Some(group), Some(spec)) = (group(job), decision.spec.as_ref()) else {
        return Ok(());
    };
    let ledgers: Api<CarbonLedger> = Api::namespaced(ctx.client.clone(), namespace);
    let ledger = ledgers
        .get_opt(&spec.forecast)
        .await
        .map_err(Error::api(format!(
            "reading CarbonLedger {namespace}/{} for the waste guard",
            spec.forecast
        )))?;
    let record = ledger
        .as_ref()
        .and_then(|l| l.status.as_ref())
        .and_then(|s| s.groups.iter().find(|g| g.name == group));
    crate::waste::guard(
        decision,
        workload.and_then(|w| w.status.as_ref()),
        &group,
        record,
        threshold,
        now,
    );
    Ok(())
}
