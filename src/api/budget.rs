//! The `CarbonBudget` custom resource: a namespace's monthly allowance of emissions (gCO2eq)
//! and/or energy (kWh) for its deferrable work, counted from the namespace's CarbonLedgers, and
//! what carbonshift does with new deferrable work once it is used up (`Warn`, `Defer`, `Deny`).
//! The spec is the user's; carbonshift writes the status. The arithmetic is in
//! [`crate::budget`].

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;
use super::crd::{DNS1123_SUBDOMAIN, known_formats_only};

/// Most CarbonForecasts a budget can be limited to.
pub const MAX_FORECASTS: usize = 32;

/// What carbonshift does with new deferrable work in the namespace once the budget is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum BudgetAction {
    /// Admit it as usual, with an admission warning naming the budget (and a Warning Event on the
    /// budget when it becomes exhausted).
    #[default]
    Warn,
    /// Admit it held, without the `dry-run` and `run-now` shortcuts: it waits for its cleanest
    /// window up to its deadline.
    Defer,
    /// Deny it at admission, with a message naming the budget, what is used, the limit and when
    /// the budget resets.
    Deny,
}

impl BudgetAction {
    /// `Warn`, `Defer` or `Deny`: the spec's value and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetAction::Warn => "Warn",
            BudgetAction::Defer => "Defer",
            BudgetAction::Deny => "Deny",
        }
    }
}

/// A monthly allowance (calendar month, UTC) for the namespace's deferrable work.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "carbonshift.dev",
    version = "v1alpha1",
    kind = "CarbonBudget",
    plural = "carbonbudgets",
    shortname = "cbud",
    category = "carbonshift",
    namespaced,
    status = "CarbonBudgetStatus",
    derive = "PartialEq",
    doc = "A namespace's monthly allowance of emissions (gCO2eq) and/or energy (kWh) for deferrable work, counted from its CarbonLedgers, and what carbonshift does with new deferrable work once it is used up.",
    printcolumn = r#"{"name": "Used", "type": "string", "jsonPath": ".status.used"}"#,
    printcolumn = r#"{"name": "Limit", "type": "string", "jsonPath": ".status.limit"}"#,
    printcolumn = r#"{"name": "Period", "type": "string", "jsonPath": ".status.period"}"#,
    printcolumn = r#"{"name": "Resets", "type": "string", "jsonPath": ".status.resetsAt"}"#,
    printcolumn = r#"{"name": "Action", "type": "string", "jsonPath": ".spec.action"}"#,
    printcolumn = r#"{"name": "Exhausted", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Exhausted\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.gramsPerMonth) || has(self.kwhPerMonth)",
    "message": "a CarbonBudget needs gramsPerMonth (gCO2eq) or kwhPerMonth (kWh), or both"
}]))]
pub struct CarbonBudgetSpec {
    /// Most emissions per calendar month (UTC), gCO2eq, of the namespace's finished workloads
    /// (the CarbonLedgers' estimated emissions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub grams_per_month: Option<f64>,
    /// Most facility energy per calendar month (UTC), kWh, of the namespace's finished workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub kwh_per_month: Option<f64>,
    /// What happens to new deferrable work once a limit is reached: `Warn` (default), `Defer`
    /// or `Deny`.
    #[serde(default)]
    pub action: BudgetAction,
    /// Only the workloads planned against these CarbonForecasts count, and only new work naming
    /// one of them is affected. Empty: every forecast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        extend("items" = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": DNS1123_SUBDOMAIN, "description": "A CarbonForecast name."})
    )]
    pub forecasts: Vec<String>,
}

/// What carbonshift last computed for the budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
pub struct CarbonBudgetStatus {
    /// The month counted, `YYYY-MM` (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// The start of that month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<DateTime<Utc>>,
    /// When the budget resets: the start of the next month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<DateTime<Utc>>,
    /// Emissions counted this month, gCO2eq.
    #[serde(default)]
    pub used_grams: f64,
    /// Energy counted this month, kWh.
    #[serde(default)]
    pub used_kwh: f64,
    /// What is used, in words (`1234.5 gCO2eq (123%)`), for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<String>,
    /// The limits, in words (`1000.0 gCO2eq`), for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// `Exhausted`: `True` once a limit is reached this month (reason `LimitReached`), `False`
    /// below (reason `WithinBudget`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
