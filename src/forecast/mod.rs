//! Carbon-intensity forecast providers: where a `CarbonForecast` gets its points.
//!
//! - The pure layer: [`Provider`] (object-safe, so the controller can hold `Arc<dyn Provider>`),
//!   [`ForecastData`], [`ProviderError`] with its metric/Event [`category`](ProviderError::category),
//!   point validation, and one `parse_*` function per payload shape (`&[u8]` in, typed data or a
//!   precise error out; never a panic, property-tested with random bytes and random JSON).
//! - The shell: one thin reqwest client per provider around those parsers, sharing a [`Shared`]
//!   (one HTTP client, [`ClientOptions`] with timeout, [`RetryPolicy`] and `User-Agent`, and the
//!   WattTime token cache).
//! - [`build`]: the constructor from a `CarbonForecastSpec`, so the controller resolves Secrets and
//!   ConfigMaps and hands over their contents; providers never talk to Kubernetes.
//!
//! | Provider | kind | Data |
//! |---|---|---|
//! | [`uk`] UK Carbon Intensity API | `ukCarbonIntensity` | half-hourly, 48 h; national `actual` values too |
//! | [`electricity_maps`] Electricity Maps v3 | `electricityMaps` | hourly, up to 72 h; the latest value alone when the plan has no forecasts |
//! | [`watttime`] WattTime v3 | `wattTime` | 5-minute marginal (MOER), 72 h, converted from lbs/MWh |
//! | [`carbon_aware_sdk`] Carbon Aware SDK WebAPI | `carbonAwareSdk` | whatever the SDK's data source forecasts |
//! | [`fixed::StaticProvider`] | `static` | the inline points |
//! | [`fixed::TraceProvider`] | `trace` | a CSV trace replayed at now's weekday and time of day, 48 h |
//!
//! All intensities are gCO2eq/kWh; every forecast is validated (see [`validate`]). Credentials
//! never appear in errors, logs or `Debug` output.

pub mod carbon_aware_sdk;
mod credentials;
pub mod electricity_maps;
mod error;
pub mod fixed;
pub mod http;
mod points;
pub mod status;
mod tokens;
pub mod uk;
pub mod watttime;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::api::{CarbonForecastSpec, ProviderSpec};
use crate::planner::Point;

pub use credentials::{
    CredentialSource, Credentials, ENV_EM_TOKEN, ENV_WATTTIME_PASSWORD, ENV_WATTTIME_USERNAME,
};
pub use error::ProviderError;
pub use http::{ClientOptions, RetryPolicy, Shared, USER_AGENT, parse_retry_after};
pub use points::{PointError, stamp, timestamp, validate, validate_allow_empty};

/// Provider key of the UK Carbon Intensity API, as in the spec, the status and metric labels.
pub const KIND_UK: &str = "ukCarbonIntensity";
/// Provider key of Electricity Maps.
pub const KIND_ELECTRICITY_MAPS: &str = "electricityMaps";
/// Provider key of WattTime.
pub const KIND_WATTTIME: &str = "wattTime";
/// Provider key of the Carbon Aware SDK.
pub const KIND_CARBON_AWARE_SDK: &str = "carbonAwareSdk";
/// Provider key of inline points.
pub const KIND_STATIC: &str = "static";
/// Provider key of replayed traces.
pub const KIND_TRACE: &str = "trace";

/// A validated forecast as a provider returned it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForecastData {
    /// Forecast points in strictly increasing time order, each within 0..=
    /// [`crate::trace::MAX_INTENSITY`] gCO2eq/kWh; each value holds until the next point. Never
    /// empty.
    pub points: Vec<Point>,
    /// Measured values the provider published for past slots (UK national only), same rules but
    /// possibly empty.
    pub actuals: Vec<Point>,
    /// The region, zone or location as the provider names it, for the status column. Electricity
    /// Maps without a forecast plan says so here (`DE (latest value only: ...)`).
    pub region: String,
    /// When the provider computed the forecast, if it says.
    pub generated_at: Option<DateTime<Utc>>,
}

impl ForecastData {
    /// Checks the invariants documented on the fields; `provider` names the source in the error.
    pub fn validated(self, provider: &'static str) -> Result<Self, ProviderError> {
        let invalid = |e: PointError| ProviderError::InvalidData {
            provider,
            detail: e.to_string(),
        };
        validate("points", &self.points).map_err(invalid)?;
        validate_allow_empty("actuals", &self.actuals).map_err(invalid)?;
        Ok(self)
    }

    /// The same data, with `region` (what the client asked for) as the region when the payload
    /// names none.
    pub(crate) fn or_region(mut self, region: &str) -> Self {
        if self.region.is_empty() {
            self.region = region.to_string();
        }
        self
    }
}

/// A source of forecasts. Object-safe: the controller holds `Box<dyn Provider>` or
/// `Arc<dyn Provider>` built by [`build`].
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The provider key used in the status and as the metric label: one of [`KIND_UK`],
    /// [`KIND_ELECTRICITY_MAPS`], [`KIND_WATTTIME`], [`KIND_CARBON_AWARE_SDK`], [`KIND_STATIC`],
    /// [`KIND_TRACE`].
    fn kind(&self) -> &'static str;

    /// Fetches the forecast as of `now` (the trace provider replays around it, the UK API is
    /// asked from the half-hour containing it, `Retry-After` dates are read relative to it).
    fn fetch(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<ForecastData, ProviderError>>;

    /// Fetches the **measured** intensity over `[from, to)` (the points whose interval overlaps
    /// it), to verify a finished workload's savings. What is not yet published is simply missing
    /// from the answer: the caller decides whether to wait. Providers without measured history
    /// answer [`ProviderError::Unsupported`].
    fn history(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<History, ProviderError>> {
        let _ = (from, to);
        let error = ProviderError::Unsupported {
            provider: self.kind(),
            detail: "publishes no measured history that carbonshift reads yet".into(),
        };
        Box::pin(std::future::ready(Err(error)))
    }
}

/// Measured intensity a provider published for past time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// Measured points in strictly increasing time order (same rules as [`ForecastData::points`],
    /// possibly empty when nothing is published yet).
    pub points: Vec<Point>,
    /// `Some(d)`: each point covers exactly `[start, start + d)` and the time between is not
    /// measured (a slot whose value is not published yet); `None`: each holds until the next
    /// one, the last for as long as the interval before it.
    pub slot: Option<chrono::TimeDelta>,
    /// Where the values come from, for the status: for example `UK Carbon Intensity national
    /// actual`.
    pub source: String,
}

impl History {
    /// The measured time as pieces `[start, end)` with their value, in time order.
    pub fn segments(&self) -> Vec<crate::planner::Segment> {
        let last = last_step(&self.points);
        self.points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let next = self.points.get(i + 1).map(|n| n.start);
                let end = match self.slot {
                    Some(d) => next.map_or(p.start + d, |n| n.min(p.start + d)),
                    None => next.unwrap_or(p.start + last),
                };
                crate::planner::Segment {
                    start: p.start,
                    end,
                    intensity: p.intensity,
                }
            })
            .collect()
    }
}

/// The measured points over `[from, to)`, asked for in ranges of at most `chunk` with `fetch(start,
/// end)`, in time order; consecutive ranges meet at their ends, so a point both answers carry is
/// kept once.
pub(crate) async fn in_chunks<F, Fut>(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    chunk: chrono::TimeDelta,
    mut fetch: F,
) -> Result<Vec<Point>, ProviderError>
where
    F: FnMut(DateTime<Utc>, DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Point>, ProviderError>>,
{
    let mut points: Vec<Point> = Vec::new();
    let mut cursor = from;
    while cursor < to {
        let end = (cursor + chunk).min(to);
        let after = points.last().map(|p| p.start);
        points.extend(
            fetch(cursor, end)
                .await?
                .into_iter()
                .filter(|p| after.is_none_or(|last| p.start > last)),
        );
        cursor = end;
    }
    Ok(points)
}

/// How long the last of a list of points holds: as long as the interval before it, one hour for
/// a single point (the rule of `spec.provider.static.points`).
pub(crate) fn last_step(points: &[Point]) -> chrono::TimeDelta {
    match points {
        [.., a, b] => b.start - a.start,
        _ => chrono::TimeDelta::hours(1),
    }
}

/// The points of `points` (each holding until the next; the last one for `last`) whose interval
/// overlaps `[from, to)`.
pub(crate) fn overlapping(
    points: &[Point],
    last: chrono::TimeDelta,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Point> {
    points
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            let end = points.get(i + 1).map_or(p.start + last, |next| next.start);
            end > from && p.start < to
        })
        .map(|(_, p)| *p)
        .collect()
}

/// The provider key of a spec, without building anything (for labels before [`build`] succeeds).
pub fn kind(spec: &ProviderSpec) -> &'static str {
    match spec {
        ProviderSpec::UkCarbonIntensity(_) => KIND_UK,
        ProviderSpec::ElectricityMaps(_) => KIND_ELECTRICITY_MAPS,
        ProviderSpec::WattTime(_) => KIND_WATTTIME,
        ProviderSpec::CarbonAwareSdk(_) => KIND_CARBON_AWARE_SDK,
        ProviderSpec::Static(_) => KIND_STATIC,
        ProviderSpec::Trace(_) => KIND_TRACE,
    }
}

/// Builds the provider a `CarbonForecast` spec describes.
///
/// - `credentials`: the contents of `spec.credentialsSecretRef` (keys `token`, `username`,
///   `password`) as the controller read them; when their [`source`](Credentials::source) is
///   [`CredentialSource::Unspecified`], error messages name the Secret from the spec.
/// - `trace_csv`: the ConfigMap value for `trace.configMapRef`, read by the controller.
/// - `shared`: the HTTP client and WattTime token cache every provider shares.
///
/// Errors are [`ProviderError::Config`]: a missing credential, a bad base URL, invalid inline
/// points or trace. Nothing is fetched here.
pub fn build(
    spec: &CarbonForecastSpec,
    mut credentials: Credentials,
    trace_csv: Option<String>,
    shared: &Shared,
) -> Result<Box<dyn Provider>, ProviderError> {
    if credentials.source == CredentialSource::Unspecified
        && let Some(secret) = &spec.credentials_secret_ref
    {
        credentials.source = CredentialSource::Secret(secret.name.clone());
    }
    let base = spec.base_url.as_deref();
    Ok(match &spec.provider {
        ProviderSpec::UkCarbonIntensity(uk) => Box::new(uk::UkProvider::new(
            shared.clone(),
            base,
            uk::UkTarget::from_spec(uk)?,
        )?),
        ProviderSpec::ElectricityMaps(em) => {
            Box::new(electricity_maps::ElectricityMapsProvider::new(
                shared.clone(),
                base,
                &em.zone,
                &credentials,
            )?)
        }
        ProviderSpec::WattTime(wt) => Box::new(watttime::WattTimeProvider::new(
            shared.clone(),
            base,
            &wt.region,
            wt.signal_type.as_deref(),
            &credentials,
        )?),
        ProviderSpec::CarbonAwareSdk(sdk) => {
            Box::new(carbon_aware_sdk::CarbonAwareSdkProvider::new(
                shared.clone(),
                base.unwrap_or(&sdk.url),
                &sdk.location,
            )?)
        }
        ProviderSpec::Static(points) => Box::new(
            fixed::StaticProvider::new(
                points.points.iter().copied().map(Point::from).collect(),
                "spec.provider.static.points",
            )?
            .with_actuals(
                points.actuals.iter().copied().map(Point::from).collect(),
                "spec.provider.static.actuals",
            )?,
        ),
        ProviderSpec::Trace(trace) => Box::new(fixed::TraceProvider::from_spec(trace, trace_csv)?),
    })
}

/// Installs ring as the process-wide rustls crypto provider unless one is installed already.
/// reqwest is built without a provider of its own (`rustls-no-provider`), so this must run before
/// the first HTTP client is built; [`Shared::new`] calls it, and so should `main` and tests that
/// build TLS clients or servers themselves. Idempotent.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one in between: equally fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asked_region_fills_in_only_when_the_payload_names_none() {
        let data = |region: &str| ForecastData {
            points: Vec::new(),
            actuals: Vec::new(),
            region: region.into(),
            generated_at: None,
        };
        assert_eq!(data("").or_region("DE").region, "DE");
        assert_eq!(data("DE-LU").or_region("DE").region, "DE-LU");
    }
}
