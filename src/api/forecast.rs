//! The `CarbonForecast` custom resource: one per grid region, holding the provider to ask and the
//! last good forecast it returned.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// A grid region's carbon-intensity forecast, refreshed from a provider by the operator.
///
/// Cluster-scoped: Jobs in every namespace name it with the `carbonshift.dev/forecast`
/// annotation.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "carbonshift.dev",
    version = "v1alpha1",
    kind = "CarbonForecast",
    plural = "carbonforecasts",
    shortname = "cfc",
    category = "carbonshift",
    status = "CarbonForecastStatus",
    derive = "PartialEq",
    doc = "A grid region's carbon-intensity forecast, refreshed from a provider by carbonshift.",
    printcolumn = r#"{"name": "Provider", "type": "string", "jsonPath": ".status.provider"}"#,
    printcolumn = r#"{"name": "Region", "type": "string", "jsonPath": ".status.region"}"#,
    printcolumn = r#"{"name": "Now (g/kWh)", "type": "number", "jsonPath": ".status.currentIntensity"}"#,
    printcolumn = r#"{"name": "Lowest Ahead", "type": "number", "jsonPath": ".status.lowestIntensity"}"#,
    printcolumn = r#"{"name": "Lowest At", "type": "string", "jsonPath": ".status.lowestAt"}"#,
    printcolumn = r#"{"name": "Updated", "type": "date", "jsonPath": ".status.lastRefreshTime"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CarbonForecastSpec {
    /// Where the forecast comes from: exactly one provider key.
    pub provider: ProviderSpec,
    /// A Secret in the operator's namespace with the provider's credentials: key `token` for
    /// Electricity Maps, keys `username` and `password` for WattTime. Not needed for the UK Carbon
    /// Intensity API, the Carbon Aware SDK, static points or traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// How often to fetch a new forecast, for example `15m` or `1h` (units s, m, h, d).
    /// Default `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub refresh_interval: Option<String>,
    /// After how long without a successful refresh the forecast counts as stale (`Ready=False`,
    /// reason `Stale`); stale data is not used for new plans. Default `3h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub stale_after: Option<String>,
    /// Overrides the provider's API base URL (a proxy, a mirror or a test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub base_url: Option<String>,
}

/// The source of a forecast. Exactly one key may be set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProviderSpec {
    /// The UK's National Energy System Operator Carbon Intensity API (no account needed):
    /// half-hourly, 48 hours ahead. Without `regionId` or `postcode`, the national forecast.
    UkCarbonIntensity(UkCarbonIntensity),
    /// Electricity Maps API v3 (token in the Secret's `token` key; forecasts need a paid plan).
    ElectricityMaps(ElectricityMaps),
    /// WattTime API v3 marginal emissions (`username` and `password` in the Secret).
    WattTime(WattTime),
    /// A Carbon Aware SDK WebAPI deployment of your own.
    CarbonAwareSdk(CarbonAwareSdk),
    /// Fixed points given inline; for tests, demos and air-gapped clusters.
    Static(StaticPoints),
    /// A CSV trace replayed with its timestamps shifted to now, keeping time of day and weekday.
    Trace(Trace),
}

/// UK Carbon Intensity API region selection. Set at most one of `regionId` and `postcode`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UkCarbonIntensity {
    /// Region 1–17 of the API (for example 13 = London); unset for the national forecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 17))]
    pub region_id: Option<u8>,
    /// Outward part of a UK postcode, for example `SW1A` or `RG10`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z]{1,2}[0-9][A-Za-z0-9]?$"))]
    pub postcode: Option<String>,
}

/// Electricity Maps zone selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElectricityMaps {
    /// Zone identifier, for example `DE`, `FR` or `US-CAL-CISO`.
    #[schemars(length(min = 1, max = 64))]
    pub zone: String,
}

/// WattTime region and signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WattTime {
    /// Balancing-authority region, for example `CAISO_NORTH`.
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// Signal type; default `co2_moer` (marginal CO2 emission rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub signal_type: Option<String>,
}

/// A Carbon Aware SDK WebAPI endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CarbonAwareSdk {
    /// Base URL of the WebAPI, for example `http://carbon-aware-sdk.carbon.svc:8080`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Location name the SDK knows, for example `eastus` or `westeurope`.
    #[schemars(length(min = 1, max = 128))]
    pub location: String,
}

/// Inline forecast points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticPoints {
    /// Points in time order; each value holds until the next point's start.
    #[schemars(length(min = 1, max = 2016))]
    pub points: Vec<IntensityPoint>,
}

/// A CSV trace, from a ConfigMap or compiled into the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    /// A ConfigMap in the operator's namespace holding the CSV (first column a timestamp, the
    /// intensity in the second column or in `column`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// Name of a trace compiled into the operator, for example `gb-2020`; see
    /// `carbonshift forecast --provider trace --help` for the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub builtin: Option<String>,
    /// Name of the intensity column; default the second column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

/// A key in a ConfigMap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// ConfigMap name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the CSV; default `trace.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A Secret in the operator's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A carbon-intensity value from a point in time until the next point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntensityPoint {
    /// When this value starts to hold (RFC 3339).
    pub start: DateTime<Utc>,
    /// Carbon intensity in gCO2eq/kWh.
    #[schemars(range(min = 0.0, max = 5000.0))]
    pub intensity: f64,
}

/// What the operator last learned from the provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CarbonForecastStatus {
    /// Provider kind, for example `ukCarbonIntensity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Region, zone or location the forecast is for, as the provider names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Intensity now, gCO2eq/kWh (the point covering the last refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_intensity: Option<f64>,
    /// Forecast points, gCO2eq/kWh, in time order; each holds until the next. Bounded to one week
    /// ahead at the provider's resolution.
    #[serde(default)]
    pub points: Vec<IntensityPoint>,
    /// Measured values the provider published for past points (UK national only), gCO2eq/kWh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actuals: Vec<IntensityPoint>,
    /// End of the last forecast point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_end: Option<DateTime<Utc>>,
    /// Lowest forecast intensity from now to the horizon, gCO2eq/kWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowest_intensity: Option<f64>,
    /// Start of the lowest point ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowest_at: Option<DateTime<Utc>>,
    /// When the forecast was last fetched successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<DateTime<Utc>>,
    /// The last refresh error, if the last attempt failed; credentials never appear here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: fresh data is available for planning.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
