//! What the workload controller knows about a workload's forecast, gathered from the store or,
//! where the store has no data, from the API.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use tracing::warn;

use crate::api::CarbonForecast;
use crate::controller::{ForecastSelector, ForecastSnapshot};
use crate::lifecycle::{ForecastInput, ForecastView};

/// What the shell found out about a workload's forecast; [`KnownForecast::input`] lends it to the
/// state machine.
#[derive(Debug, Clone)]
pub enum KnownForecast {
    /// Parsed data and whether it is fresh.
    Data(Arc<ForecastSnapshot>, bool),
    /// The object exists without data and without a failure, waited for since then.
    Awaiting(DateTime<Utc>),
    /// The object exists without data; its `Ready` condition is false for this reason.
    Failed(String),
    /// No such object, or one outside this operator's forecast selector.
    Missing,
}

impl KnownForecast {
    /// Classifies a CarbonForecast read from the API (`None`: it does not exist). The wait for a
    /// forecast without data starts at its creation, or at `started` (this replica's
    /// leadership) when that is later: nobody refreshed it before.
    pub fn of(
        object: Option<&CarbonForecast>,
        selector: &ForecastSelector,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> KnownForecast {
        let Some(object) = object.filter(|o| selector.matches(o.labels())) else {
            return KnownForecast::Missing;
        };
        let snapshot = match ForecastSnapshot::from_object(object) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                warn!(%error, "the CarbonForecast's status is not a usable forecast");
                return KnownForecast::Failed("InvalidStatus".to_string());
            }
        };
        if !snapshot.forecast.is_empty() {
            let fresh = snapshot.is_fresh(now);
            return KnownForecast::Data(Arc::new(snapshot), fresh);
        }
        let ready = object
            .status
            .as_ref()
            .and_then(crate::forecast::status::ready_condition);
        match ready {
            Some(condition) if condition.status == "False" => {
                KnownForecast::Failed(condition.reason.clone())
            }
            _ => {
                let created = object
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
                    .unwrap_or(started);
                KnownForecast::Awaiting(created.max(started))
            }
        }
    }

    /// What will be known at `at` if nothing changes meanwhile: the same data, fresh or stale as
    /// it will be then (a change of the forecast reconciles its workloads again).
    pub fn at(&self, at: DateTime<Utc>) -> KnownForecast {
        match self {
            KnownForecast::Data(snapshot, _) => {
                KnownForecast::Data(snapshot.clone(), snapshot.is_fresh(at))
            }
            other => other.clone(),
        }
    }

    /// The state machine's view.
    pub fn input(&self) -> ForecastInput<'_> {
        match self {
            KnownForecast::Data(snapshot, fresh) => ForecastInput::Data(view_of(snapshot, *fresh)),
            KnownForecast::Awaiting(since) => ForecastInput::Awaiting { since: *since },
            KnownForecast::Failed(reason) => ForecastInput::Failed { reason },
            KnownForecast::Missing => ForecastInput::Missing,
        }
    }
}

/// The lifecycle's view of a stored forecast.
pub(super) fn view_of(snapshot: &ForecastSnapshot, fresh: bool) -> ForecastView<'_> {
    ForecastView {
        forecast: &snapshot.forecast,
        actuals: (!snapshot.actuals.is_empty()).then_some(&*snapshot.actuals),
        version: &snapshot.version,
        fresh,
    }
}
