//! The `CarbonForecast` custom resource: one per grid region, holding the provider to ask and the
//! last good forecast it returned.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;
use super::crd::{DNS1123_SUBDOMAIN, DURATION_PATTERN, known_formats_only};
use crate::planner::Point;

/// The most forecast points a CarbonForecast holds, in `spec.provider.static.points` and in
/// `status.points`: one week at 5-minute resolution. Providers keep the earliest points ahead
/// when they have more.
pub const MAX_POINTS: usize = 2016;

/// Which provider to ask for the region's forecast, and how often.
///
/// A CarbonForecast is cluster-scoped: Jobs in every namespace name it with the
/// `carbonshift.dev/forecast` annotation.
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
    printcolumn = r#"{"name": "Capacity", "type": "string", "jsonPath": ".status.capacityUsed.summary"}"#,
    printcolumn = r#"{"name": "Updated", "type": "date", "jsonPath": ".status.lastRefreshTime"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.provider.electricityMaps) || has(self.provider.wattTime)) || has(self.credentialsSecretRef)",
    "message": "electricityMaps and wattTime need credentialsSecretRef: a Secret with key token (Electricity Maps) or keys username and password (WattTime)"
}]))]
pub struct CarbonForecastSpec {
    /// Where the forecast comes from: exactly one provider key.
    pub provider: ProviderSpec,
    /// A Secret in the operator's namespace with the provider's credentials: key `token` for
    /// Electricity Maps, keys `username` and `password` for WattTime (required for both). Not
    /// needed for the UK Carbon Intensity API, the Carbon Aware SDK, static points or traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// How often to fetch a new forecast, for example `15m` or `1h` (units s, m, h, d).
    /// Default `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub refresh_interval: Option<String>,
    /// After how long without a successful refresh the forecast counts as stale (`Ready=False`,
    /// reason `Stale`); stale data is not used for new plans. Default `3h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub stale_after: Option<String>,
    /// Overrides the provider's API base URL (a proxy, a mirror or a test server), for example
    /// `https://api.carbonintensity.org.uk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub base_url: Option<String>,
    /// How much of the work planned against this forecast may run at once on the nodes behind
    /// it: held workloads are planned together, earliest deadline first, so that they do not all
    /// start in the same clean hour. Running and released workloads count against the cap; a
    /// workload at its latest start is released even over the cap (with an Event). Unset: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacitySpec>,
    /// The nodes that draw their power from this forecast's grid. A workload that names several
    /// candidate forecasts (`carbonshift.dev/forecasts`) and is planned into this one gets this
    /// node selector added to its pod templates at release. Unset: the forecast covers the whole
    /// cluster and nothing is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSpec>,
}

/// The most workloads, or GPUs, a capacity cap may name.
pub const MAX_CAPACITY: u32 = 1_000_000;

/// The most keys a placement's node selector may have.
pub const MAX_PLACEMENT_KEYS: usize = 16;

/// A cap on the work that runs at once on the nodes behind one forecast. Set `jobs`, `gpus` or
/// both; with both, a workload starts only when both have room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.jobs) || has(self.gpus)",
    "message": "set jobs, gpus or both"
}]))]
pub struct CapacitySpec {
    /// Most workloads running at once (a positive whole number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_CAPACITY))]
    pub jobs: Option<u32>,
    /// Most GPUs in use at once: the sum of the GPU requests of the running workloads, counted
    /// as the power estimate counts them (GPUs per pod × pods running at once; a positive whole
    /// number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_CAPACITY))]
    pub gpus: Option<u32>,
}

/// Where the nodes behind a forecast are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Node labels that select the nodes drawing from this grid, for example
    /// `topology.kubernetes.io/region: eu-west-2` or a node-pool label. Added to the pod
    /// templates' `nodeSelector` at release; a workload whose own `nodeSelector` or required node
    /// affinity contradicts it is not planned into this forecast. Keys are label keys
    /// (`[prefix/]name`), values label values (at most 63 characters); 1 to 16 entries.
    #[schemars(extend("minProperties" = 1, "maxProperties" = MAX_PLACEMENT_KEYS))]
    pub node_selector: BTreeMap<String, LabelValue>,
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.`, starting and ending
/// with a letter or digit.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct LabelValue(
    /// The value.
    #[schemars(regex(pattern = LABEL_VALUE_PATTERN), length(max = 63))]
    pub String,
);

/// The pattern of a Kubernetes label value.
pub const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

impl CapacitySpec {
    /// The fleet planner's caps, with ledger slots of `slot`.
    pub fn caps(&self, slot: chrono::TimeDelta) -> crate::planner::fleet::Caps {
        crate::planner::fleet::Caps {
            jobs: self.jobs,
            gpus: self.gpus,
            slot,
        }
    }
}

impl PlacementSpec {
    /// The node selector as plain strings.
    pub fn selector(&self) -> BTreeMap<String, String> {
        self.node_selector
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()
    }
}

/// The source of a forecast: exactly one key.
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
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.regionId) && has(self.postcode))",
    "message": "set at most one of regionId and postcode"
}]))]
pub struct UkCarbonIntensity {
    /// Region 1–17 of the API (for example 13 = London); unset for the national forecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 17))]
    pub region_id: Option<u8>,
    /// Outward part of a UK postcode (the part before the space), for example `SW1A` or `RG10`;
    /// unset for the national forecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z]{1,2}[0-9][A-Za-z0-9]?$"), length(max = 4))]
    pub postcode: Option<String>,
}

/// Electricity Maps zone selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElectricityMaps {
    /// Zone identifier, for example `DE`, `FR` or `US-CAL-CISO`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub zone: String,
}

/// WattTime region and signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WattTime {
    /// Balancing-authority region, for example `CAISO_NORTH`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub region: String,
    /// Signal type; default `co2_moer` (marginal CO2 emission rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9_]+$"))]
    pub signal_type: Option<String>,
}

/// A Carbon Aware SDK WebAPI endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CarbonAwareSdk {
    /// Base URL of the WebAPI, for example `http://carbon-aware-sdk.carbon.svc:8080`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub url: String,
    /// Location name the SDK knows, for example `eastus` or `westeurope`.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub location: String,
}

/// Inline forecast points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticPoints {
    /// Points in time order; each value holds until the next point's start, the last one for
    /// as long as the previous interval (one hour when there is a single point). At most 2016.
    #[schemars(length(min = 1, max = MAX_POINTS))]
    pub points: Vec<IntensityPoint>,
    /// Measured values for the same grid (optional), in time order, each holding until the next
    /// one's start: what carbonshift verifies finished workloads' savings against, and what
    /// completion estimates prefer over the forecast. At most 2016.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_POINTS))]
    pub actuals: Vec<IntensityPoint>,
}

/// A CSV trace, from a ConfigMap or compiled into the operator: set exactly one of
/// `configMapRef` and `builtin`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.configMapRef) != has(self.builtin)",
    "message": "set exactly one of configMapRef and builtin"
}]))]
pub struct Trace {
    /// A ConfigMap in the operator's namespace holding the CSV: a header line, a timestamp in the
    /// first column, the intensity (gCO2eq/kWh) in the second column or in `column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// Name of a trace compiled into the operator (one of the allowed values), for example
    /// `gb-2020` for Great Britain in 2020.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = builtin_trace_names()))]
    pub builtin: Option<String>,
    /// Name of the intensity column in the CSV header; default the second column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub column: Option<String>,
}

/// A key in a ConfigMap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// ConfigMap name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub name: String,
    /// Key holding the CSV; default `trace.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
}

/// A Secret in the operator's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
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

impl From<IntensityPoint> for Point {
    fn from(p: IntensityPoint) -> Point {
        Point {
            start: p.start,
            intensity: p.intensity,
        }
    }
}

impl From<Point> for IntensityPoint {
    fn from(p: Point) -> IntensityPoint {
        IntensityPoint {
            start: p.start,
            intensity: p.intensity,
        }
    }
}

/// What the operator last learned from the provider. Written by carbonshift only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
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
    /// Forecast points, gCO2eq/kWh, in time order; each holds until the next, the last until
    /// `horizonEnd`. At most 2016 (one week at 5-minute resolution).
    #[serde(default)]
    #[schemars(length(max = MAX_POINTS))]
    pub points: Vec<IntensityPoint>,
    /// Measured values the provider published for past points (UK national only), gCO2eq/kWh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_POINTS))]
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
    /// What of `spec.capacity` the running and released workloads use now; unset without a cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_used: Option<CapacityUsed>,
    /// `Ready`: fresh data is available for planning; `False` with a PascalCase reason (for
    /// example `Stale`) when it is not.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// How much of a forecast's capacity is in use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityUsed {
    /// Workloads running or released now.
    #[schemars(range(min = 0))]
    pub jobs: u32,
    /// GPUs those workloads request.
    #[schemars(range(min = 0))]
    pub gpus: u32,
    /// Workloads released over the cap to meet their deadline, running now.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub over_cap: u32,
    /// Used / capacity for people, for example `3/3 jobs, 8/16 GPUs` (the `kubectl get cfc`
    /// column).
    #[schemars(length(max = 128))]
    pub summary: String,
}

impl CapacityUsed {
    /// The usage of `jobs` workloads requesting `gpus` GPUs (`over_cap` of them released over
    /// the cap) against `capacity`, with its summary.
    pub fn new(capacity: &CapacitySpec, jobs: u32, gpus: u32, over_cap: u32) -> CapacityUsed {
        let mut parts = Vec::new();
        if let Some(cap) = capacity.jobs {
            parts.push(format!("{jobs}/{cap} jobs"));
        }
        if let Some(cap) = capacity.gpus {
            parts.push(format!("{gpus}/{cap} GPUs"));
        }
        let mut summary = parts.join(", ");
        if over_cap > 0 {
            summary.push_str(&format!(" ({over_cap} over the cap for deadlines)"));
        }
        CapacityUsed {
            jobs,
            gpus,
            over_cap,
            summary,
        }
    }
}

/// Names of the traces compiled into the binary, for the schema's enum.
fn builtin_trace_names() -> Vec<&'static str> {
    crate::trace::BUILTINS.iter().map(|b| b.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<CarbonForecast, serde_saphyr::Error> {
        serde_saphyr::from_str(text)
    }

    #[test]
    fn forecasts_as_users_write_them() {
        let uk = yaml(
            "apiVersion: carbonshift.dev/v1alpha1
kind: CarbonForecast
metadata:
  name: uk-london
spec:
  provider:
    ukCarbonIntensity:
      regionId: 13
  refreshInterval: 30m
  staleAfter: 3h
",
        );
        let uk = uk.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(uk.metadata.name.as_deref(), Some("uk-london"));
        assert_eq!(
            uk.spec.provider,
            ProviderSpec::UkCarbonIntensity(UkCarbonIntensity {
                region_id: Some(13),
                postcode: None
            })
        );
        assert_eq!(uk.spec.refresh_interval.as_deref(), Some("30m"));
        assert_eq!(uk.status, None);

        let national = yaml(
            "apiVersion: carbonshift.dev/v1alpha1
kind: CarbonForecast
metadata: {name: uk}
spec:
  provider:
    ukCarbonIntensity: {}
",
        );
        assert_eq!(
            national.map(|f| f.spec.provider).ok(),
            Some(ProviderSpec::UkCarbonIntensity(UkCarbonIntensity::default()))
        );

        let watttime = yaml(
            "apiVersion: carbonshift.dev/v1alpha1
kind: CarbonForecast
metadata: {name: caiso-north}
spec:
  provider:
    wattTime: {region: CAISO_NORTH}
  credentialsSecretRef: {name: watttime}
  baseUrl: https://api.watttime.org
",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            watttime.spec,
            CarbonForecastSpec {
                provider: ProviderSpec::WattTime(WattTime {
                    region: "CAISO_NORTH".into(),
                    signal_type: None
                }),
                credentials_secret_ref: Some(SecretRef {
                    name: "watttime".into()
                }),
                refresh_interval: None,
                stale_after: None,
                base_url: Some("https://api.watttime.org".into()),
                capacity: None,
                placement: None,
            }
        );

        let trace = yaml(
            "apiVersion: carbonshift.dev/v1alpha1
kind: CarbonForecast
metadata: {name: demo}
spec:
  provider:
    trace: {builtin: gb-2020}
",
        );
        assert_eq!(
            trace.map(|f| f.spec.provider).ok(),
            Some(ProviderSpec::Trace(Trace {
                builtin: Some("gb-2020".into()),
                ..Trace::default()
            }))
        );

        let points = yaml(
            "apiVersion: carbonshift.dev/v1alpha1
kind: CarbonForecast
metadata: {name: fixed}
spec:
  provider:
    static:
      points:
      - {start: \"2026-05-04T00:00:00Z\", intensity: 250}
      - {start: \"2026-05-04T12:00:00+02:00\", intensity: 80.5}
",
        );
        let start = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.to_utc())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            points.map(|f| f.spec.provider).ok(),
            Some(ProviderSpec::Static(StaticPoints {
                points: vec![
                    IntensityPoint {
                        start: start("2026-05-04T00:00:00Z"),
                        intensity: 250.0
                    },
                    IntensityPoint {
                        start: start("2026-05-04T10:00:00Z"),
                        intensity: 80.5
                    },
                ],
                actuals: Vec::new()
            }))
        );
    }

    #[test]
    fn capacity_and_placement_as_users_write_them() {
        let fr = yaml(
            "apiVersion: carbonshift.dev/v1alpha1
kind: CarbonForecast
metadata: {name: fr}
spec:
  provider:
    trace: {builtin: fr-2020}
  capacity: {jobs: 3, gpus: 16}
  placement:
    nodeSelector:
      topology.kubernetes.io/region: eu-west-3
",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            fr.spec.capacity,
            Some(CapacitySpec {
                jobs: Some(3),
                gpus: Some(16)
            })
        );
        let selector = fr.spec.placement.map(|p| p.selector()).unwrap_or_default();
        assert_eq!(
            selector
                .get("topology.kubernetes.io/region")
                .map(String::as_str),
            Some("eu-west-3")
        );
        assert_eq!(selector.len(), 1);
        let json = serde_json::to_value(CapacitySpec {
            jobs: Some(2),
            gpus: None,
        })
        .unwrap_or_default();
        assert_eq!(json, serde_json::json!({"jobs": 2}));
    }

    #[test]
    fn capacity_used_summarises_used_over_capacity() {
        let both = CapacitySpec {
            jobs: Some(3),
            gpus: Some(16),
        };
        let used = CapacityUsed::new(&both, 3, 8, 0);
        assert_eq!(used.summary, "3/3 jobs, 8/16 GPUs");
        assert_eq!((used.jobs, used.gpus, used.over_cap), (3, 8, 0));
        let jobs = CapacitySpec {
            jobs: Some(3),
            gpus: None,
        };
        assert_eq!(
            CapacityUsed::new(&jobs, 4, 0, 1).summary,
            "4/3 jobs (1 over the cap for deadlines)"
        );
        let gpus = CapacitySpec {
            jobs: None,
            gpus: Some(8),
        };
        assert_eq!(CapacityUsed::new(&gpus, 2, 4, 0).summary, "4/8 GPUs");
        let caps = both.caps(chrono::TimeDelta::minutes(5));
        assert_eq!((caps.jobs, caps.gpus), (Some(3), Some(16)));
        assert_eq!(caps.slot, chrono::TimeDelta::minutes(5));
    }

    #[test]
    fn a_provider_with_two_keys_is_refused() {
        let one_key = "apiVersion: carbonshift.dev/v1alpha1
kind: CarbonForecast
metadata: {name: both}
spec:
  provider:
    ukCarbonIntensity: {}
";
        assert!(yaml(one_key).is_ok(), "the control parses");
        let two_keys = format!("{one_key}    electricityMaps: {{zone: GB}}\n");
        let error = yaml(&two_keys).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("expected end of mapping after enum variant value")),
            "{error:?}"
        );
        let json = serde_json::json!({
            "apiVersion": "carbonshift.dev/v1alpha1",
            "kind": "CarbonForecast",
            "metadata": {"name": "both"},
            "spec": {"provider": {"ukCarbonIntensity": {}, "electricityMaps": {"zone": "GB"}}}
        });
        assert!(
            serde_json::from_value::<CarbonForecast>(json.clone()).is_err(),
            "JSON value"
        );
        assert!(
            serde_json::from_str::<CarbonForecast>(&json.to_string()).is_err(),
            "JSON text"
        );
        let none = serde_json::json!({"provider": {}});
        assert!(serde_json::from_value::<CarbonForecastSpec>(none).is_err());
        let unknown = serde_json::json!({"provider": {"solarPanel": {}}});
        assert!(serde_json::from_value::<CarbonForecastSpec>(unknown).is_err());
    }

    #[test]
    fn intensity_points_convert_to_planner_points_and_back() {
        let api = IntensityPoint {
            start: DateTime::<Utc>::UNIX_EPOCH,
            intensity: 80.5,
        };
        let point = Point::from(api);
        assert_eq!((point.start, point.intensity), (api.start, 80.5));
        assert_eq!(IntensityPoint::from(point), api);
    }

    #[test]
    fn status_round_trips() {
        let t = DateTime::<Utc>::UNIX_EPOCH;
        let status = CarbonForecastStatus {
            provider: Some("trace".into()),
            region: Some("gb-2020".into()),
            current_intensity: Some(210.0),
            points: vec![IntensityPoint {
                start: t,
                intensity: 210.0,
            }],
            horizon_end: Some(t),
            lowest_intensity: Some(210.0),
            lowest_at: Some(t),
            last_refresh_time: Some(t),
            conditions: vec![Condition::new("Ready", true, "Refreshed", "", Some(1), t)],
            ..Default::default()
        };
        let json = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(json["currentIntensity"], 210.0);
        assert_eq!(json["lowestAt"], "1970-01-01T00:00:00Z");
        assert!(json.get("actuals").is_none());
        assert_eq!(
            serde_json::from_value::<CarbonForecastStatus>(json).ok(),
            Some(status)
        );
    }
}
