//! The `CarbonLedger` custom resource: per namespace and CarbonForecast, the monthly totals of
//! every finished workload — jobs, energy, emitted and avoided gCO2eq, estimated and verified
//! apart — kept after the Jobs and their CarbonWorkloads are gone. Written by carbonshift.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::crd::{DNS1123_SUBDOMAIN, known_formats_only};

/// Most months a ledger keeps (two years); older months are dropped, the all-time total stays.
pub const MAX_MONTHS: usize = 24;

/// Most waste-guard groups a ledger keeps (the ones with the oldest last outcome go first).
pub const MAX_GROUPS: usize = 256;

/// Most entry keys a ledger remembers to record each finished workload exactly once across
/// retries and restarts.
pub const MAX_RECENT: usize = 512;

/// Which CarbonForecast's workloads this ledger adds up (its name is the forecast's name).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "carbonshift.dev",
    version = "v1alpha1",
    kind = "CarbonLedger",
    plural = "carbonledgers",
    shortname = "cled",
    category = "carbonshift",
    namespaced,
    status = "CarbonLedgerStatus",
    derive = "PartialEq",
    doc = "carbonshift's running totals of finished workloads in one namespace planned against one CarbonForecast, per calendar month (UTC).",
    printcolumn = r#"{"name": "Forecast", "type": "string", "jsonPath": ".spec.forecast"}"#,
    printcolumn = r#"{"name": "Jobs", "type": "integer", "jsonPath": ".status.total.jobs"}"#,
    printcolumn = r#"{"name": "kWh", "type": "number", "jsonPath": ".status.total.energyKwh"}"#,
    printcolumn = r#"{"name": "Emitted g", "type": "number", "jsonPath": ".status.total.emittedGrams"}"#,
    printcolumn = r#"{"name": "Avoided g (est.)", "type": "number", "jsonPath": ".status.total.avoidedGrams"}"#,
    printcolumn = r#"{"name": "Verified Jobs", "type": "integer", "jsonPath": ".status.total.verifiedJobs"}"#,
    printcolumn = r#"{"name": "Avoided g (verified)", "type": "number", "jsonPath": ".status.total.verifiedAvoidedGrams"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
pub struct CarbonLedgerSpec {
    /// The CarbonForecast whose workloads are added up here.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub forecast: String,
}

/// The totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
pub struct CarbonLedgerStatus {
    /// One entry per calendar month (UTC) with finished workloads, oldest first; at most 24.
    #[serde(default)]
    #[schemars(length(max = 24))]
    pub months: Vec<LedgerTotals>,
    /// Everything since the ledger was created (`month` is `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<LedgerTotals>,
    /// The last entries recorded (`<job uid>/estimated`, `<job uid>/verified`), newest last, so
    /// that a retried or repeated recording is not counted twice; at most 512.
    #[serde(default)]
    #[schemars(
        length(max = 512),
        extend("items" = {"type": "string", "maxLength": 300, "description": "An entry key: `<job uid>/estimated` or `<job uid>/verified`."})
    )]
    pub recent: Vec<String>,
    /// When an entry was last recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The waste guard's record of each group of workloads (`carbonshift.dev/group`, or the
    /// owning CronJob) planned against this forecast: its consecutive failures; at most 256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub groups: Vec<GroupRecord>,
}

/// One group of workloads as the waste guard counts it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
pub struct GroupRecord {
    /// The group's name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Its workloads that failed in a row, since its last success.
    pub consecutive_failures: u32,
    /// Estimated gCO2eq of its failed workloads, all time.
    #[serde(default)]
    pub wasted_grams: f64,
    /// `Succeeded` or `Failed`: how its last workload ended.
    #[schemars(extend("enum" = ["Succeeded", "Failed"]))]
    pub last_outcome: String,
    /// When its last workload ended.
    pub last_finished_at: DateTime<Utc>,
}

/// Totals of one month (or of all time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
pub struct LedgerTotals {
    /// `YYYY-MM` (UTC) of the workloads' end, or `all`.
    pub month: String,
    /// Finished workloads.
    pub jobs: u64,
    /// Their estimated facility energy, kWh.
    pub energy_kwh: f64,
    /// Their estimated emissions, gCO2eq.
    pub emitted_grams: f64,
    /// Estimated emissions avoided against running at once by the workloads carbonshift held,
    /// gCO2eq.
    pub avoided_grams: f64,
    /// Workloads whose figures were verified from measured values.
    pub verified_jobs: u64,
    /// Their measured emissions, gCO2eq.
    pub verified_emitted_grams: f64,
    /// Their measured avoided emissions (the ones carbonshift held), gCO2eq.
    pub verified_avoided_grams: f64,
    /// Finished workloads that failed.
    #[serde(default)]
    pub failed_jobs: u64,
    /// Estimated emissions of the failed ones, gCO2eq (part of `emittedGrams`).
    #[serde(default)]
    pub wasted_grams: f64,
}
