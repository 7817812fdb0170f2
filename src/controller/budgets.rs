//! The CarbonBudget controller (a shell around [`crate::budget::status`]): for each budget, the
//! namespace's CarbonLedgers are read, the month's use computed, and the status written (server-
//! side apply) when it changed; a budget that has just become exhausted gets a Warning Event
//! `BudgetExhausted`. It runs again whenever a budget or a ledger of its namespace changes, and at
//! the reset (the start of the next month, UTC). Admission does not wait for this status: the
//! webhook evaluates the budgets itself from its watch caches.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use kube::api::ListParams;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::{Context, Error};
use crate::api::{CarbonBudget, CarbonBudgetStatus, CarbonLedger};
use crate::budget::{self, Budget, Ledger};

/// `controller` label and log field of the budget controller.
pub const BUDGETS: &str = "budgets";

/// The longest the controller waits before evaluating a budget again, whatever happens: a safety
/// net against lost watch events.
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);

/// How long after a failed reconcile a budget is tried again.
pub const RETRY: Duration = Duration::from_secs(15);

/// Runs the controller until `shutdown` completes.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.boxed().shared();
    info!(controller = BUDGETS, "starting");
    let budgets = Api::<CarbonBudget>::all(ctx.client.clone());
    let ledgers = Api::<CarbonLedger>::all(ctx.client.clone());
    let controller = Controller::new(budgets, watcher::Config::default());
    let store = controller.store();
    controller
        // A ledger changed: every budget of its namespace is evaluated again.
        .watches(ledgers, watcher::Config::default(), move |ledger| {
            let namespace = ledger.namespace();
            store
                .state()
                .iter()
                .filter(|b| b.namespace() == namespace)
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(budget = %object.name, "reconciled"),
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::ObjectNotFound(object)) => {
                    debug!(budget = %object.name, "deleted before its reconcile")
                }
                Err(error) => warn!(%error, "CarbonBudget controller"),
            }
        })
        .await;
    info!(controller = BUDGETS, "stopped");
}

/// Evaluates one budget and writes its status.
async fn reconcile(object: Arc<CarbonBudget>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(namespace) = object.namespace() else {
        return Err(Error::InvalidObject(
            "a CarbonBudget without a namespace".to_string(),
        ));
    };
    if !ctx.config.namespaces.is_empty() && !ctx.config.namespaces.contains(&namespace) {
        return Ok(Action::await_change());
    }
    let name = object.name_any();
    let now = ctx.clock.now();
    let ledgers = Api::<CarbonLedger>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!(
            "listing the CarbonLedgers of {namespace}"
        )))?;
    let empty = crate::api::CarbonLedgerStatus::default();
    let ledgers: Vec<Ledger<'_>> = ledgers
        .items
        .iter()
        .map(|l| Ledger {
            forecast: &l.spec.forecast,
            status: l.status.as_ref().unwrap_or(&empty),
        })
        .collect();
    let (status, note) = budget::status(
        &Budget {
            name: &name,
            spec: &object.spec,
        },
        &ledgers,
        object.status.as_ref(),
        object.metadata.generation,
        &namespace,
        now,
    );
    if object.status.as_ref() != Some(&status) {
        apply_status(&ctx, &namespace, &name, &status).await?;
    }
    if let Some(note) = note {
        ctx.publish(BUDGETS, &object.object_ref(&()), &note).await;
    }
    Ok(Action::requeue(until(status.resets_at, now)))
}

/// How long until the reset (at most [`MAX_REQUEUE`]).
fn until(reset: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    reset
        .and_then(|r| (r - now).to_std().ok())
        .map_or(MAX_REQUEUE, |d| d.min(MAX_REQUEUE))
}

fn error_policy(object: Arc<CarbonBudget>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .record_reconcile_error(BUDGETS, error.category());
    warn!(budget = %object.name_any(), %error, category = error.category(), "reconcile failed");
    Action::requeue(RETRY)
}

async fn apply_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &CarbonBudgetStatus,
) -> Result<(), Error> {
    let api = Api::<CarbonBudget>::namespaced(ctx.client.clone(), namespace);
    let what = format!("CarbonBudget {namespace}/{name}");
    super::apply_status(&api, name, status, &what).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::parse_timestamp;

    #[test]
    fn it_looks_again_at_the_reset_or_within_an_hour() {
        let now = parse_timestamp("2026-12-31T23:30:00Z").unwrap_or_default();
        let reset = parse_timestamp("2027-01-01T00:00:00Z");
        assert_eq!(until(reset, now), Duration::from_secs(1800));
        let early = parse_timestamp("2026-12-01T00:00:00Z").unwrap_or_default();
        assert_eq!(until(reset, early), MAX_REQUEUE);
        assert_eq!(until(None, now), MAX_REQUEUE);
        // A reset already past (a clock jump) looks again within the hour.
        assert_eq!(
            until(
                reset,
                reset.unwrap_or_default() + chrono::TimeDelta::hours(1)
            ),
            MAX_REQUEUE
        );
    }
}
