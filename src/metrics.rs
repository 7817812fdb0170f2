//! Prometheus metrics, served on `/metrics`.
//!
//! Labels are bounded sets: controller, phase, reason, provider, result, error category — and one
//! series per CarbonForecast for the per-region gauges (regions are few). Never a label per Job or
//! per workload.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::Phase;

/// Labels `{phase}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Workload phase.
    pub phase: String,
}

/// Labels `{reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// PascalCase reason, as in Events.
    pub reason: String,
}

/// Labels `{controller}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `forecasts` or `workloads`.
    pub controller: String,
}

/// Labels `{controller, category}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `forecasts` or `workloads`.
    pub controller: String,
    /// Error category, for example `api`, `invalid`, `provider`.
    pub category: String,
}

/// Labels `{provider, result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// Provider kind, for example `ukCarbonIntensity`.
    pub provider: String,
    /// `success`, `timeout` or an error category.
    pub result: String,
}

/// Labels `{provider}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// Provider kind.
    pub provider: String,
}

/// Labels `{forecast}`: one series per CarbonForecast.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForecastLabels {
    /// CarbonForecast name.
    pub forecast: String,
}

/// Labels `{namespace, forecast, basis}` of the carbon ledger counters: one series per namespace
/// and CarbonForecast, `basis` `estimated` (from the forecast, at completion) or `verified` (from
/// measured values, once published).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LedgerLabels {
    /// The workloads' namespace.
    pub namespace: String,
    /// The CarbonForecast they were planned against.
    pub forecast: String,
    /// `estimated` or `verified`.
    pub basis: String,
}

/// Labels `{namespace, budget, action}` of the budget counter: one series per CarbonBudget and
/// action (`Warn`, `Defer`, `Deny`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// The budget's namespace.
    pub namespace: String,
    /// The CarbonBudget's name.
    pub budget: String,
    /// `Warn`, `Defer` or `Deny`.
    pub action: String,
}

/// Labels `{namespace}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    /// The namespace.
    pub namespace: String,
}

/// Labels `{result}` of the admission webhook.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `held`, `allowed`, `denied`, `warned` or `error`.
    pub result: String,
}

/// Labels `{kind}` of the workload kinds.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind, for example `JobSet`.
    pub kind: String,
}

/// Every carbonshift metric, registered under the `carbonshift_` prefix.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Workloads by phase.
    pub workloads: Family<PhaseLabels, Gauge>,
    /// Releases by reason (`Released`, `DeadlineRelease`, `ManualRelease`, `NoForecast`, ...).
    pub releases: Family<ReasonLabels, Counter>,
    /// Held Jobs whose latest start has passed; must stay 0.
    pub held_past_latest_start: Gauge,
    /// Estimated emissions avoided against running at once, gCO2eq.
    pub avoided_grams: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Estimated emissions of finished Jobs, gCO2eq.
    pub emitted_grams: Counter<f64, std::sync::atomic::AtomicU64>,
    /// gCO2eq emitted by finished workloads, by namespace, forecast and basis.
    pub ledger_emitted_grams: Family<LedgerLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// gCO2eq avoided by finished workloads carbonshift held, by namespace, forecast and basis.
    pub ledger_avoided_grams: Family<LedgerLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Admissions of new deferrable work an exhausted CarbonBudget acted on, by namespace,
    /// budget and action.
    pub budget_actions: Family<BudgetLabels, Counter>,
    /// Estimated gCO2eq of failed runs, by namespace.
    pub wasted_grams: Family<NamespaceLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Actual release time minus planned release time, seconds.
    pub release_lateness_seconds: Histogram,
    /// Reconcile duration by controller, seconds.
    pub reconcile_duration_seconds: Family<ControllerLabels, Histogram>,
    /// Reconcile errors by controller and category.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Forecast refreshes by provider and result.
    pub forecast_refreshes: Family<RefreshLabels, Counter>,
    /// Forecast refresh duration by provider, seconds.
    pub forecast_refresh_duration_seconds: Family<ProviderLabels, Histogram>,
    /// Current intensity per CarbonForecast, gCO2eq/kWh.
    pub forecast_intensity: Family<ForecastLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Age of the forecast data per CarbonForecast, seconds since the last successful refresh.
    pub forecast_age_seconds: Family<ForecastLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// 1 when a CarbonForecast is Ready, else 0.
    pub forecast_ready: Family<ForecastLabels, Gauge>,
    /// Admission requests by result.
    pub webhook_requests: Family<WebhookLabels, Counter>,
    /// 1 on the replica holding the leader lease.
    pub leader: Gauge,
    /// Per turned-on kind on the leader: 1 while its objects are watched, 0 while its CRD is not
    /// installed (it is picked up when the CRD appears).
    pub workload_kind_watched: Family<KindLabels, Gauge>,
    /// Per kind on the leader: releases prepared ahead and waiting for their planned second.
    pub releases_armed: Family<KindLabels, Gauge>,
    /// Releases above a forecast's capacity cap because the deadline left no room within it.
    pub capacity_overflow_releases: Family<ForecastLabels, Counter>,
    /// Fleet re-plans that moved held workloads (after finishes), by forecast.
    pub fleet_replans: Family<ForecastLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn seconds_histogram() -> Histogram {
    // 10 ms .. ~ 5.8 h: reconciles take milliseconds, release lateness can be hours after an outage.
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("carbonshift");
        let workloads = Family::<PhaseLabels, Gauge>::default();
        registry.register("workloads", "CarbonWorkloads by phase", workloads.clone());
        let workload_kind_watched = Family::<KindLabels, Gauge>::default();
        registry.register(
            "workload_kind_watched",
            "Per turned-on workload kind: 1 while its objects are watched, 0 while its CRD is not installed",
            workload_kind_watched.clone(),
        );
        let releases_armed = Family::<KindLabels, Gauge>::default();
        registry.register(
            "releases_armed",
            "Per workload kind: releases prepared ahead, waiting for their planned second",
            releases_armed.clone(),
        );
        let releases = Family::<ReasonLabels, Counter>::default();
        registry.register("releases", "Jobs released, by reason", releases.clone());
        let capacity_overflow_releases = Family::<ForecastLabels, Counter>::default();
        registry.register(
            "capacity_overflow_releases",
            "Workloads released above their forecast's capacity cap to meet their deadline, by forecast",
            capacity_overflow_releases.clone(),
        );
        let fleet_replans = Family::<ForecastLabels, Counter>::default();
        registry.register(
            "fleet_replans",
            "Re-plans of a capped forecast's held workloads after others finished, by forecast",
            fleet_replans.clone(),
        );
        let held_past_latest_start = Gauge::default();
        registry.register(
            "held_past_latest_start",
            "Held Jobs whose latest start (minus margin) has passed, the waste guard's holds aside; must stay 0",
            held_past_latest_start.clone(),
        );
        let avoided_grams = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "avoided_grams",
            "Estimated gCO2eq avoided against running at once (finished Jobs)",
            avoided_grams.clone(),
        );
        let emitted_grams = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "emitted_grams",
            "Estimated gCO2eq emitted by finished Jobs",
            emitted_grams.clone(),
        );
        let ledger_emitted_grams =
            Family::<LedgerLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "ledger_emitted_grams",
            "gCO2eq emitted by finished workloads, by namespace, forecast and basis (estimated | verified)",
            ledger_emitted_grams.clone(),
        );
        let ledger_avoided_grams =
            Family::<LedgerLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "ledger_avoided_grams",
            "gCO2eq avoided against running at once by finished workloads carbonshift held, by namespace, forecast and basis (estimated | verified); never below 0",
            ledger_avoided_grams.clone(),
        );
        let budget_actions = Family::<BudgetLabels, Counter>::default();
        registry.register(
            "budget_actions",
            "Admissions of new deferrable work an exhausted CarbonBudget acted on, by namespace, budget and action (Warn | Defer | Deny)",
            budget_actions.clone(),
        );
        let wasted_grams =
            Family::<NamespaceLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "wasted_grams",
            "Estimated gCO2eq emitted by failed workloads, by namespace",
            wasted_grams.clone(),
        );
        let release_lateness_seconds = seconds_histogram();
        registry.register(
            "release_lateness_seconds",
            "Actual release time minus planned start, seconds",
            release_lateness_seconds.clone(),
        );
        let reconcile_duration_seconds =
            Family::<ControllerLabels, Histogram>::new_with_constructor(
                seconds_histogram as fn() -> Histogram,
            );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by controller",
            reconcile_duration_seconds.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile errors by controller and category (conflict, not_found, forbidden, throttled, server, rejected, unreachable, client, invalid, event)",
            reconcile_errors.clone(),
        );
        let forecast_refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "forecast_refreshes",
            "Forecast refreshes by provider and result",
            forecast_refreshes.clone(),
        );
        let forecast_refresh_duration_seconds =
            Family::<ProviderLabels, Histogram>::new_with_constructor(
                seconds_histogram as fn() -> Histogram,
            );
        registry.register(
            "forecast_refresh_duration_seconds",
            "Forecast refresh duration by provider",
            forecast_refresh_duration_seconds.clone(),
        );
        let forecast_intensity =
            Family::<ForecastLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "forecast_intensity",
            "Current carbon intensity per CarbonForecast, gCO2eq/kWh",
            forecast_intensity.clone(),
        );
        let forecast_age_seconds =
            Family::<ForecastLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "forecast_age_seconds",
            "Seconds since the last successful refresh, per CarbonForecast",
            forecast_age_seconds.clone(),
        );
        let forecast_ready = Family::<ForecastLabels, Gauge>::default();
        registry.register(
            "forecast_ready",
            "1 when the CarbonForecast is Ready, else 0",
            forecast_ready.clone(),
        );
        let webhook_requests = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_requests",
            "Admission requests by result",
            webhook_requests.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 on the replica that holds the leader lease",
            leader.clone(),
        );
        Self {
            registry: Arc::new(registry),
            workloads,
            releases,
            held_past_latest_start,
            avoided_grams,
            emitted_grams,
            ledger_emitted_grams,
            ledger_avoided_grams,
            budget_actions,
            wasted_grams,
            release_lateness_seconds,
            reconcile_duration_seconds,
            reconcile_errors,
            forecast_refreshes,
            forecast_refresh_duration_seconds,
            forecast_intensity,
            forecast_age_seconds,
            forecast_ready,
            webhook_requests,
            leader,
            workload_kind_watched,
            releases_armed,
            capacity_overflow_releases,
            fleet_replans,
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in the encoder.
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Sets the per-phase workload gauge from counts, reporting zero for absent phases.
    pub fn set_workloads(&self, counts: impl Fn(Phase) -> i64) {
        for phase in Phase::ALL {
            self.workloads
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str().to_string(),
                })
                .set(counts(phase));
        }
    }

    /// Counts one release with its reason and lateness against the planned time.
    pub fn record_release(&self, reason: &str, lateness_seconds: f64) {
        self.releases
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
        self.release_lateness_seconds
            .observe(lateness_seconds.max(0.0));
    }

    /// Counts one reconcile error.
    /// Adds a finished workload's emitted (and, when carbonshift held it, avoided) grams to the
    /// ledger counters of its namespace and forecast, labelled by `basis`.
    /// Estimates also go to the unlabelled `emitted_grams` and `avoided_grams` totals.
    pub fn record_finished(
        &self,
        namespace: &str,
        forecast: &str,
        basis: crate::ledger::Basis,
        emitted: f64,
        avoided: Option<f64>,
    ) {
        let labels = LedgerLabels {
            namespace: namespace.to_string(),
            forecast: forecast.to_string(),
            basis: basis.as_str().to_string(),
        };
        let estimated = basis == crate::ledger::Basis::Estimated;
        self.ledger_emitted_grams
            .get_or_create(&labels)
            .inc_by(emitted.max(0.0));
        if estimated {
            self.emitted_grams.inc_by(emitted.max(0.0));
        }
        if let Some(avoided) = avoided {
            // A counter cannot go down: a workload that ran dirtier than running at once shows
            // its negative saving in its status only.
            self.ledger_avoided_grams
                .get_or_create(&labels)
                .inc_by(avoided.max(0.0));
            if estimated {
                self.avoided_grams.inc_by(avoided.max(0.0));
            }
        }
    }

    /// Counts one reconcile error of `controller` in `category`.
    pub fn record_reconcile_error(&self, controller: &str, category: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_string(),
                category: category.to_string(),
            })
            .inc();
    }

    /// Sets whether the objects of `kind` are watched (its CRD installed).
    pub fn set_kind_watched(&self, kind: &str, watched: bool) {
        self.workload_kind_watched
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .set(i64::from(watched));
    }

    /// Counts one admission an exhausted budget acted on.
    pub fn record_budget_action(&self, namespace: &str, budget: &str, action: &str) {
        self.budget_actions
            .get_or_create(&BudgetLabels {
                namespace: namespace.to_string(),
                budget: budget.to_string(),
                action: action.to_string(),
            })
            .inc();
    }

    /// Adds the estimated grams of a failed workload's runs to `wasted_grams{namespace}`.
    pub fn record_wasted(&self, namespace: &str, grams: f64) {
        self.wasted_grams
            .get_or_create(&NamespaceLabels {
                namespace: namespace.to_string(),
            })
            .inc_by(grams.max(0.0));
    }

    /// Counts one release above forecast `forecast`'s capacity cap.
    pub fn record_over_capacity(&self, forecast: &str) {
        self.capacity_overflow_releases
            .get_or_create(&ForecastLabels {
                forecast: forecast.to_string(),
            })
            .inc();
    }

    /// Sets how many releases of `kind` are prepared and waiting.
    pub fn set_releases_armed(&self, kind: &str, armed: usize) {
        self.releases_armed
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .set(i64::try_from(armed).unwrap_or(i64::MAX));
    }

    /// Counts one admission request.
    pub fn record_webhook(&self, result: &str) {
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                result: result.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prefixed_and_labelled_by_bounded_sets() {
        let m = Metrics::new();
        m.set_workloads(|p| if p == Phase::Deferred { 3 } else { 0 });
        m.record_release("DeadlineRelease", 2.0);
        m.record_reconcile_error("workloads", "api");
        m.record_webhook("held");
        m.record_budget_action("ml", "team-a", "Deny");
        m.record_wasted("ml", 2.5);
        m.avoided_grams.inc_by(1.5);
        m.forecast_ready
            .get_or_create(&ForecastLabels {
                forecast: "default".into(),
            })
            .set(1);
        let text = m.encode();
        for line in [
            "carbonshift_workloads{phase=\"Deferred\"} 3",
            "carbonshift_workloads{phase=\"Succeeded\"} 0",
            "carbonshift_releases_total{reason=\"DeadlineRelease\"} 1",
            "carbonshift_reconcile_errors_total{controller=\"workloads\",category=\"api\"} 1",
            "carbonshift_webhook_requests_total{result=\"held\"} 1",
            "carbonshift_budget_actions_total{namespace=\"ml\",budget=\"team-a\",action=\"Deny\"} 1",
            "carbonshift_wasted_grams_total{namespace=\"ml\"} 2.5",
            "carbonshift_avoided_grams_total 1.5",
            "carbonshift_forecast_ready{forecast=\"default\"} 1",
            "carbonshift_held_past_latest_start 0",
            "carbonshift_release_lateness_seconds_count 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
