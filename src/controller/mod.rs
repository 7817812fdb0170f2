//! The controllers' shared shell: the [`Context`] both controllers run with, the operator
//! settings ([`OperatorConfig`]), the error type, Event publishing and the in-memory
//! [`ForecastStore`].
//!
//! - [`forecasts`]: the CarbonForecast controller (refresh from the provider, status, Events,
//!   metrics, and the watch that feeds the store). Its decisions are pure ([`status`]).
//! - [`budgets`]: the CarbonBudget controller (status and the `BudgetExhausted` Event from the
//!   namespace's ledgers; pure arithmetic in [`crate::budget`]).
//! - [`store`]: the forecast store the workload controller plans with, derived from CarbonForecast
//!   status only and filled from the API at start-up ([`ForecastStore::fill_from_api`]).
//!
//! Start-up order for the leader: build a [`Context`] whose store comes from
//! [`ForecastStore::fill_from_api`], then run [`forecasts::run`] and the workload controller side by
//! side, both stopped by the same shutdown future (leader election lives outside).

pub mod budgets;
mod error;
pub use error::{Error, ErrorCategory};
pub mod fleets;
pub mod forecasts;
pub mod release;
pub mod store;
pub mod workloads;

#[cfg(test)]
pub mod fixtures;

use std::sync::Arc;

use chrono::TimeDelta;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use thiserror::Error;
use tracing::warn;

use crate::api::annotations::AnnotationDefaults;
use crate::clock::Clock;
use crate::forecast;
use crate::metrics::Metrics;

pub use crate::note::{Note, NoteKind};
pub use store::{ForecastSnapshot, ForecastStore};

/// The default of [`OperatorConfig::release_concurrency`].
pub const DEFAULT_RELEASE_CONCURRENCY: usize = 64;
/// The default of [`OperatorConfig::reconcile_concurrency`].
pub const DEFAULT_RECONCILE_CONCURRENCY: u16 = 16;

/// `controller` label and log field of the CarbonForecast controller.
pub const FORECASTS: &str = "forecasts";
/// `controller` label and log field of the workload controller.
pub const WORKLOADS: &str = "workloads";
/// `reportingController` of carbonshift's Events.
pub const REPORTING_CONTROLLER: &str = "carbonshift";
/// Longest Event note the API accepts (events.k8s.io/v1 `note`: 1 kB).
pub const MAX_NOTE_BYTES: usize = 1024;

/// What a held Job does when its forecast is missing or stale and it has no plan yet (the
/// state machine's own setting, re-exported for the operator configuration).
pub use crate::lifecycle::NoForecastPolicy;

/// Operator-wide settings, from the command line (`carbonshift run`) or the chart. Plain data;
/// `Default` gives the chart's defaults with the operator namespace `carbonshift`.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorConfig {
    /// The namespace the operator runs in: credentials Secrets, trace ConfigMaps and the
    /// leader Lease live here.
    pub operator_namespace: String,
    /// Namespaces whose Jobs carbonshift manages; empty means all.
    pub namespaces: Vec<String>,
    /// What Jobs get when their annotations are silent (forecast name, delay, power...).
    pub annotation_defaults: AnnotationDefaults,
    /// A held Job is released at `latest start − margin` at the latest. Default 5m.
    pub margin: TimeDelta,
    /// What to do without a usable forecast. Default [`NoForecastPolicy::Release`].
    pub no_forecast: NoForecastPolicy,
    /// How long a held Job without a plan waits for the first data of a CarbonForecast that
    /// exists but has produced none yet. Default 2m.
    pub forecast_wait: TimeDelta,
    /// How long after a workload finished its measured figures are waited for. Default 48h.
    pub verify_give_up: TimeDelta,
    /// How long after a release the workload's status waits for the Job controller's answer, so
    /// that the release and the phase it leads to take one status write. Default 5m.
    pub release_ack_wait: TimeDelta,
    /// Guarded release patches in flight at once when many releases fall due together.
    /// Default 64.
    pub release_concurrency: usize,
    /// Reconciles of one kind running at once (the releases themselves do not wait for them).
    /// Default 16.
    pub reconcile_concurrency: u16,
    /// The CarbonForecasts this operator refreshes and plans with: those carrying every one of
    /// these labels (empty: all). Others count as absent.
    pub forecast_selector: ForecastSelector,
    /// The kinds whose objects the workload controllers hold and follow (one controller per
    /// kind whose CRD is installed). Default: every supported kind.
    pub kinds: crate::workload::Kinds,
    /// Consecutive failures of a group of workloads that hold its next one (reason
    /// `WasteGuard`); 0 turns the waste guard off. Default 3.
    pub waste_guard_failures: u32,
    /// Prometheus with Kepler's counters (`--prometheus-url`): a finished workload's energy is
    /// measured there. `None`: from the declared or estimated power.
    pub prometheus_url: Option<String>,
}

/// An equality label selector for CarbonForecasts (`key=value,key=value`), as
/// `--forecast-selector` takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForecastSelector(Vec<(String, String)>);

/// Why a `--forecast-selector` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "forecast selector {text:?}: {problem}; expected key=value pairs separated by commas, for example carbonshift.dev/shard=a"
)]
pub struct SelectorError {
    /// The value given.
    pub text: String,
    /// What is wrong with it.
    pub problem: String,
}

impl std::str::FromStr for ForecastSelector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |problem: String| SelectorError {
            text: text.to_string(),
            problem,
        };
        let mut pairs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| error(format!("{part:?} has no '='")))?;
            let (key, value) = (key.trim(), value.trim().trim_start_matches('='));
            let label_char = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
            if key.is_empty() || !key.chars().all(label_char) {
                return Err(error(format!("{key:?} is not a label key")));
            }
            if value.len() > 63 || !value.chars().all(|c| label_char(c) && c != '/') {
                return Err(error(format!("{value:?} is not a label value")));
            }
            pairs.push((key.to_string(), value.to_string()));
        }
        Ok(Self(pairs))
    }
}

impl std::fmt::Display for ForecastSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl ForecastSelector {
    /// Whether it selects every CarbonForecast.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The selector in the API's `labelSelector` form, `None` when empty.
    pub fn label_selector(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.to_string())
    }

    /// A watcher configuration limited to the selected objects.
    pub fn watcher_config(&self) -> kube::runtime::watcher::Config {
        let config = kube::runtime::watcher::Config::default();
        match self.label_selector() {
            Some(selector) => config.labels(&selector),
            None => config,
        }
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            operator_namespace: "carbonshift".to_string(),
            namespaces: Vec::new(),
            annotation_defaults: AnnotationDefaults::default(),
            margin: TimeDelta::minutes(5),
            no_forecast: NoForecastPolicy::Release,
            forecast_wait: crate::lifecycle::DEFAULT_FORECAST_WAIT,
            verify_give_up: crate::lifecycle::verify::DEFAULT_GIVE_UP,
            release_ack_wait: crate::lifecycle::DEFAULT_RELEASE_ACK_WAIT,
            release_concurrency: DEFAULT_RELEASE_CONCURRENCY,
            reconcile_concurrency: DEFAULT_RECONCILE_CONCURRENCY,
            forecast_selector: ForecastSelector::default(),
            kinds: crate::workload::Kinds::default(),
            waste_guard_failures: crate::waste::DEFAULT_FAILURES,
            prometheus_url: None,
        }
    }
}

/// Everything a reconcile needs, shared by both controllers (`Arc<Context>`).
///
/// Extend it with fields the workload controller needs; keep them cheap to clone or behind
/// `Arc`. Tests build one around a mock API server with `fixtures::TestEnv` (test builds only).
#[derive(Clone)]
pub struct Context {
    /// The Kubernetes client (a mock in tests).
    pub client: kube::Client,
    /// Where `now` comes from: [`crate::clock::SystemClock`] in production, a
    /// [`crate::clock::ManualClock`] in tests.
    pub clock: Arc<dyn Clock>,
    /// The Prometheus metrics.
    pub metrics: Metrics,
    /// The parsed forecasts, kept up to date by the forecast controller's watch.
    pub store: ForecastStore,
    /// Operator settings.
    pub config: Arc<OperatorConfig>,
    /// The HTTP client, retry policy and WattTime token cache every provider shares.
    pub providers: forecast::Shared,
    /// Publishes Warning Events (events.k8s.io/v1); repeats within a few minutes become a series.
    pub recorder: Recorder,
    /// Who reports carbonshift's Events (controller `carbonshift`, instance the pod).
    pub reporter: Reporter,
    /// When this context was made (the start of this replica's leadership): a forecast that has
    /// not produced data yet is waited for from then at the earliest, because nothing refreshed
    /// it before.
    pub started: chrono::DateTime<chrono::Utc>,
    /// The group commit of the CarbonLedgers' writes (shared by every workload controller).
    pub ledgers: Arc<workloads::LedgerWriter>,
    /// The fleets of the capped and candidate forecasts (shared by every workload controller).
    pub fleets: Arc<fleets::Fleets>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("store", &self.store)
            .field("config", &self.config)
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose Events are reported by `reporter` (controller `carbonshift`, instance the
    /// pod name: see [`reporter`]).
    pub fn new(
        client: kube::Client,
        clock: Arc<dyn Clock>,
        config: OperatorConfig,
        metrics: Metrics,
        store: ForecastStore,
        providers: forecast::Shared,
        reporter: Reporter,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            started: clock.now(),
            ledgers: Arc::default(),
            fleets: Arc::default(),
            client,
            clock,
            metrics,
            store,
            config: Arc::new(config),
            providers,
        }
    }

    /// Publishes `note` about the object `regarding`. A failure is logged and counted
    /// (`reconcile_errors{controller, category="event"}`) but not returned: Events are
    /// informational, and failing the reconcile for one would repeat work that already happened.
    ///
    /// Warnings go through the shared [`Recorder`], whose cache makes repeats within minutes one
    /// Event series. A Normal Event marks one transition of one object (`Deferred`, `Released`,
    /// `Succeeded`…) and is never repeated, so it is published by a recorder of its own: the
    /// shared cache would keep every one of them for six minutes (memory that grows with a burst
    /// of thousands of workloads) and sweep all of them on every publish.
    pub async fn publish(&self, controller: &str, regarding: &ObjectReference, note: &Note) {
        let event = Event {
            type_: match note.kind {
                NoteKind::Normal => EventType::Normal,
                NoteKind::Warning => EventType::Warning,
            },
            reason: note.reason.to_string(),
            note: Some(truncate(&note.message, MAX_NOTE_BYTES)),
            action: note.action.to_string(),
            secondary: None,
        };
        let published = match note.kind {
            NoteKind::Warning => self.recorder.publish(&event, regarding).await,
            NoteKind::Normal => {
                Recorder::new(self.client.clone(), self.reporter.clone())
                    .publish(&event, regarding)
                    .await
            }
        };
        if let Err(error) = published {
            self.metrics.record_reconcile_error(controller, "event");
            warn!(
                %error,
                reason = note.reason,
                object = regarding.name.as_deref().unwrap_or_default(),
                "cannot publish an Event"
            );
        }
    }
}

/// Writes `status` of the object `name` by server-side apply (field manager
/// [`crate::api::FIELD_MANAGER`], forced): fields the new status leaves out are removed. `what`
/// names the object in the error, for example `CarbonForecast uk`.
pub async fn apply_status<K>(
    api: &kube::Api<K>,
    name: &str,
    status: &impl serde::Serialize,
    what: &str,
) -> Result<K, Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &kube::api::PatchParams::apply(crate::api::FIELD_MANAGER).force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await
    .map_err(Error::api(format!("writing the status of {what}")))
}

/// The Event reporter: controller `carbonshift`, instance `pod` (the pod name) when given.
pub fn reporter(pod: Option<String>) -> Reporter {
    Reporter {
        controller: REPORTING_CONTROLLER.to_string(),
        instance: pod,
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(600); // 1200 bytes
        let cut = truncate(&long, MAX_NOTE_BYTES);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(cut.chars().filter(|c| *c == 'é').count(), 510);
    }

    #[test]
    fn defaults_match_the_chart() {
        let c = OperatorConfig::default();
        assert_eq!(c.margin, TimeDelta::minutes(5));
        assert_eq!(c.no_forecast, NoForecastPolicy::Release);
        assert!(c.namespaces.is_empty());
        assert_eq!(c.annotation_defaults.forecast, "default");
        assert_eq!(
            reporter(Some("pod-1".into())).instance.as_deref(),
            Some("pod-1")
        );
    }
}
