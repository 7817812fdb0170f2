//! Test builders for the API objects, shared by the tests of every module above `api` (the
//! forecast core, the controllers): timestamps, forecast points and CarbonForecast objects.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::api::forecast::{IntensityPoint, StaticPoints};
use crate::api::{CarbonForecast, CarbonForecastSpec, CarbonForecastStatus, ProviderSpec};

/// A timestamp literal (RFC 3339 or the lenient forms of [`crate::units::parse_timestamp`]).
pub fn t(text: &str) -> DateTime<Utc> {
    crate::units::parse_timestamp(text).unwrap_or_else(|| panic!("bad test timestamp {text:?}"))
}

/// Points every `step` from `start` with the given values.
pub fn points(start: DateTime<Utc>, step: TimeDelta, values: &[f64]) -> Vec<IntensityPoint> {
    values
        .iter()
        .enumerate()
        .map(|(i, &intensity)| IntensityPoint {
            start: start + step * i32::try_from(i).unwrap_or(i32::MAX),
            intensity,
        })
        .collect()
}

impl CarbonForecast {
    /// A test object: cluster-scoped, generation 1, uid and resourceVersion set, with static
    /// points (hourly 300, 200, 100, 250 from 2026-11-28T15:00Z) and no status.
    pub fn test(name: &str) -> Self {
        let spec = CarbonForecastSpec {
            provider: ProviderSpec::Static(StaticPoints {
                points: points(
                    t("2026-11-28T15:00:00Z"),
                    TimeDelta::hours(1),
                    &[300.0, 200.0, 100.0, 250.0],
                ),
                actuals: Vec::new(),
            }),
            credentials_secret_ref: None,
            refresh_interval: None,
            stale_after: None,
            base_url: None,
            capacity: None,
            placement: None,
        };
        let mut object = CarbonForecast::new(name, spec);
        object.metadata.generation = Some(1);
        object.metadata.uid = Some(format!("uid-{name}"));
        object.metadata.resource_version = Some("1".into());
        object
    }

    /// With `provider` instead.
    pub fn provider(mut self, provider: ProviderSpec) -> Self {
        self.spec.provider = provider;
        self
    }

    /// With the spec changed by `f`.
    pub fn spec_with(mut self, f: impl FnOnce(&mut CarbonForecastSpec)) -> Self {
        f(&mut self.spec);
        self
    }

    /// With `metadata.generation` set.
    pub fn generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }

    /// With `status`.
    pub fn with_status(mut self, status: Option<CarbonForecastStatus>) -> Self {
        self.status = status;
        self
    }

    /// The object as JSON, for lists.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|e| panic!("{e}"))
    }
}
