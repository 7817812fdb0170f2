//! Electricity Maps API v3 (token in the Secret's `token` key, sent as the `auth-token` header).
//!
//! `GET /v3/carbon-intensity/forecast?zone=Z` gives hourly points up to 72 h ahead on plans that
//! include forecasts. When that endpoint answers 403 (the plan has no forecasts), the client falls
//! back to `GET /v3/carbon-intensity/latest?zone=Z`: a single point for the current hour. That is
//! still valid data (it holds until a newer value arrives) and the region column says so:
//! `DE (latest value only: the plan has no forecasts)`. Planning on it cannot look ahead.
//!
//! The base URL may be given with or without the `/v3` suffix.

use chrono::{DateTime, DurationRound, Utc};
use futures::future::BoxFuture;
use reqwest::Url;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::http::{Auth, Hints, Shared, base_url, check_status, endpoint, sensitive_header};
use super::{
    Credentials, ForecastData, History, KIND_ELECTRICITY_MAPS, Provider, ProviderError, timestamp,
};
use crate::planner::Point;

/// Provider name in messages.
pub const NAME: &str = "Electricity Maps";

/// The public API (the `/v3` prefix is added per request).
pub const DEFAULT_BASE_URL: &str = "https://api.electricitymap.org";

/// The region suffix when only the latest value is available.
pub const LATEST_ONLY: &str = "latest value only: the plan has no forecasts";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Forecast {
    #[serde(default)]
    zone: Option<String>,
    forecast: Vec<Entry>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    carbon_intensity: Option<f64>,
    datetime: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Latest {
    #[serde(default)]
    zone: Option<String>,
    carbon_intensity: Option<f64>,
    datetime: String,
    #[serde(default)]
    updated_at: Option<String>,
}

fn malformed(detail: impl std::fmt::Display) -> ProviderError {
    ProviderError::Malformed {
        provider: NAME,
        detail: detail.to_string(),
    }
}

fn point(field: &str, entry: Entry) -> Result<Point, ProviderError> {
    let start = timestamp(&format!("{field}.datetime"), &entry.datetime).map_err(malformed)?;
    let intensity = entry
        .carbon_intensity
        .ok_or_else(|| ProviderError::InvalidData {
            provider: NAME,
            detail: format!("{field}.carbonIntensity is null"),
        })?;
    Ok(Point { start, intensity })
}

fn updated(updated_at: Option<String>) -> Result<Option<DateTime<Utc>>, ProviderError> {
    updated_at
        .map(|t| timestamp("updatedAt", &t).map_err(malformed))
        .transpose()
}

/// Parses `carbon-intensity/forecast` (`{"zone","forecast":[{"carbonIntensity","datetime"}],"updatedAt"}`).
/// Region: the zone (empty when the answer has none); `generated_at`: `updatedAt`.
pub fn parse_forecast(body: &[u8]) -> Result<ForecastData, ProviderError> {
    let forecast: Forecast = serde_json::from_slice(body).map_err(malformed)?;
    let points = forecast
        .forecast
        .into_iter()
        .enumerate()
        .map(|(i, e)| point(&format!("forecast[{i}]"), e))
        .collect::<Result<Vec<_>, _>>()?;
    ForecastData {
        points,
        actuals: Vec::new(),
        region: forecast.zone.unwrap_or_default(),
        generated_at: updated(forecast.updated_at)?,
    }
    .validated(NAME)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PastRange {
    // `past-range` names the list `data`; `history` (the last 24 h) names it `history`.
    #[serde(alias = "history")]
    data: Vec<Entry>,
}

/// Parses `carbon-intensity/past-range` (`{"zone","data":[{"carbonIntensity","datetime",
/// "isEstimated",...}],"temporalGranularity"}`; `history` as the list's name is read too) into
/// measured points. Entries whose `carbonIntensity` is null are not published yet and left out.
pub fn parse_past_range(body: &[u8]) -> Result<Vec<Point>, ProviderError> {
    let range: PastRange = serde_json::from_slice(body).map_err(malformed)?;
    let mut points = Vec::with_capacity(range.data.len());
    for (i, entry) in range.data.into_iter().enumerate() {
        if entry.carbon_intensity.is_none() {
            continue;
        }
        points.push(point(&format!("data[{i}]"), entry)?);
    }
    super::validate_allow_empty("data", &points).map_err(|e| ProviderError::InvalidData {
        provider: NAME,
        detail: e.to_string(),
    })?;
    Ok(points)
}

/// The longest range of one hourly `past-range` request (the API's limit is 10 days).
pub const HISTORY_CHUNK: chrono::TimeDelta = chrono::TimeDelta::days(10);

/// Parses `carbon-intensity/latest` (`{"zone","carbonIntensity","datetime","updatedAt",...}`)
/// into a one-point forecast.
pub fn parse_latest(body: &[u8]) -> Result<ForecastData, ProviderError> {
    let latest: Latest = serde_json::from_slice(body).map_err(malformed)?;
    let point = point(
        "latest",
        Entry {
            carbon_intensity: latest.carbon_intensity,
            datetime: latest.datetime,
        },
    )?;
    ForecastData {
        points: vec![point],
        actuals: Vec::new(),
        region: latest.zone.unwrap_or_default(),
        generated_at: updated(latest.updated_at)?,
    }
    .validated(NAME)
}

/// The Electricity Maps client for one zone.
#[derive(Clone)]
pub struct ElectricityMapsProvider {
    shared: Shared,
    base: Url,
    zone: String,
    token: HeaderValue,
    token_hint: String,
    secrets: Vec<String>,
}

impl std::fmt::Debug for ElectricityMapsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectricityMapsProvider")
            .field("base", &self.base.as_str())
            .field("zone", &self.zone)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ElectricityMapsProvider {
    /// A client for `zone` (such as `DE`) with the token from `credentials`, at `base_url` or
    /// [`DEFAULT_BASE_URL`].
    pub fn new(
        shared: Shared,
        base_url: Option<&str>,
        zone: &str,
        credentials: &Credentials,
    ) -> Result<Self, ProviderError> {
        let zone = zone.trim();
        if zone.is_empty() {
            return Err(ProviderError::Config(
                "Electricity Maps needs a zone, such as DE, FR or US-CAL-CISO".into(),
            ));
        }
        let token = credentials.token().ok_or_else(|| {
            ProviderError::Config(format!(
                "Electricity Maps needs an API token: {}",
                credentials.missing_hint("key `token`")
            ))
        })?;
        let header = sensitive_header(token).ok_or_else(|| {
            ProviderError::Config(format!(
                "the Electricity Maps token holds characters an HTTP header cannot carry: check {}",
                credentials.token_hint()
            ))
        })?;
        Ok(Self {
            shared,
            base: self::base_url(NAME, base_url.unwrap_or(DEFAULT_BASE_URL), Some("v3"))?,
            zone: zone.to_string(),
            token: header,
            token_hint: credentials.token_hint(),
            secrets: vec![token.to_string()],
        })
    }

    fn hints(&self, endpoint: &str) -> Hints {
        Hints {
            credentials: self.token_hint.clone(),
            forbidden: format!(
                "the token is valid but its plan does not include `{endpoint}` for zone {}; check the zone and the plan",
                self.zone
            ),
            not_found: format!(
                "check the zone {:?} (for example DE, FR, US-CAL-CISO) and the base URL",
                self.zone
            ),
            rejected: format!("check the zone {:?} and the base URL", self.zone),
        }
    }

    async fn get(
        &self,
        which: &str,
        now: DateTime<Utc>,
    ) -> Result<super::http::Reply, ProviderError> {
        let url = endpoint(
            &self.base,
            &["v3", "carbon-intensity", which],
            &[("zone", &self.zone)],
        );
        self.shared
            .get(NAME, &url, &Auth::Header("auth-token", &self.token), now)
            .await
    }

    async fn fetch_at(&self, now: DateTime<Utc>) -> Result<ForecastData, ProviderError> {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let reply = self.get("forecast", now).await?;
        if reply.status != 403 {
            let body = check_status(NAME, reply, &self.hints("forecast"), &secrets)?;
            return Ok(parse_forecast(&body)?.or_region(&self.zone));
        }
        tracing::info!(
            provider = KIND_ELECTRICITY_MAPS,
            zone = %self.zone,
            "the forecast endpoint is not in the plan (HTTP 403); using the latest value"
        );
        let reply = self.get("latest", now).await?;
        let body = check_status(NAME, reply, &self.hints("latest"), &secrets)?;
        let mut data = parse_latest(&body)?.or_region(&self.zone);
        data.region = format!("{} ({LATEST_ONLY})", data.region);
        Ok(data)
    }
}

impl ElectricityMapsProvider {
    async fn history_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<History, ProviderError> {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let start = from
            .duration_trunc(chrono::TimeDelta::hours(1))
            .unwrap_or(from);
        let secrets = &secrets;
        let points = super::in_chunks(start, to, HISTORY_CHUNK, |a, b| async move {
            let (start_text, end_text) = (fmt(a), fmt(b));
            let url = endpoint(
                &self.base,
                &["v3", "carbon-intensity", "past-range"],
                &[
                    ("zone", &self.zone),
                    ("start", &start_text),
                    ("end", &end_text),
                ],
            );
            let reply = self
                .shared
                .get(NAME, &url, &Auth::Header("auth-token", &self.token), to)
                .await?;
            parse_past_range(&check_status(
                NAME,
                reply,
                &self.hints("past-range"),
                secrets,
            )?)
        })
        .await?;
        Ok(History {
            points,
            slot: Some(chrono::TimeDelta::hours(1)),
            source: format!("{NAME} past-range {}", self.zone),
        })
    }
}

impl Provider for ElectricityMapsProvider {
    fn kind(&self) -> &'static str {
        KIND_ELECTRICITY_MAPS
    }

    fn fetch(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<ForecastData, ProviderError>> {
        Box::pin(self.fetch_at(now))
    }

    fn history(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<History, ProviderError>> {
        Box::pin(self.history_between(from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORECAST: &[u8] = include_bytes!("../../tests/fixtures/providers/em-forecast.json");

    fn t(s: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(s).unwrap_or_default()
    }

    fn message(r: Result<ForecastData, ProviderError>) -> (&'static str, String) {
        match r {
            Err(e) => (e.category(), e.to_string()),
            Ok(d) => ("ok", format!("{d:?}")),
        }
    }

    #[test]
    fn forecast_fixture() {
        let data = parse_forecast(FORECAST).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.region, "DE");
        assert_eq!(data.generated_at, Some(t("2026-11-28T15:42:10.317Z")));
        let values: Vec<f64> = data.points.iter().map(|p| p.intensity).collect();
        assert_eq!(values, [412.0, 398.0, 356.0, 301.0, 277.0, 289.0]);
        assert_eq!(data.points[0].start, t("2026-11-28T16:00Z"));
        assert_eq!(data.points[5].start, t("2026-11-28T21:00Z"));
    }

    #[test]
    fn latest_is_one_point() {
        let body = br#"{"zone":"FR","carbonIntensity":31.5,"datetime":"2026-11-28T15:00:00.000Z",
            "updatedAt":"2026-11-28T15:20:00.000Z","emissionFactorType":"lifecycle","isEstimated":true,"estimationMethod":"TIME_SLICER_AVERAGE"}"#;
        let data = parse_latest(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.region, "FR");
        assert_eq!(
            data.points,
            [Point {
                start: t("2026-11-28T15:00Z"),
                intensity: 31.5
            }]
        );
        assert_eq!(data.generated_at, Some(t("2026-11-28T15:20Z")));
    }

    #[test]
    fn bad_payloads_are_precise_errors() {
        let cases: Vec<(&[u8], &str, &str)> = vec![
            (b"", "malformed", "EOF while parsing"),
            (&FORECAST[..100], "malformed", "EOF while parsing"),
            (br#"{"zone":"DE"}"#, "malformed", "missing field `forecast`"),
            (
                br#"{"forecast":[{"carbonIntensity":"412","datetime":"2026-11-28T16:00Z"}]}"#,
                "malformed",
                "invalid type: string \"412\", expected f64",
            ),
            (
                br#"{"forecast":[{"carbonIntensity":1,"datetime":20261128}]}"#,
                "malformed",
                "invalid type: integer `20261128`, expected a string",
            ),
            (br#"{"forecast":[]}"#, "invalid_data", "points has no points"),
            (
                br#"{"forecast":[{"carbonIntensity":null,"datetime":"2026-11-28T16:00Z"}]}"#,
                "invalid_data",
                "forecast[0].carbonIntensity is null",
            ),
            (
                br#"{"forecast":[{"carbonIntensity":1,"datetime":"2026-11-28T17:00Z"},{"carbonIntensity":1,"datetime":"2026-11-28T16:00Z"}]}"#,
                "invalid_data",
                "points[1] starts at 2026-11-28T16:00:00Z, before the point before it",
            ),
            (
                br#"{"forecast":[{"carbonIntensity":1,"datetime":"2026-11-28T16:00Z"},{"carbonIntensity":1,"datetime":"2026-11-28T16:00:00.000Z"}]}"#,
                "invalid_data",
                "points[1] starts at 2026-11-28T16:00:00Z, like the point before it",
            ),
            (
                br#"{"forecast":[{"carbonIntensity":-3,"datetime":"2026-11-28T16:00Z"}]}"#,
                "invalid_data",
                "intensity -3 is outside 0..=5000",
            ),
            (
                br#"{"forecast":[{"carbonIntensity":1e9,"datetime":"2026-11-28T16:00Z"}]}"#,
                "invalid_data",
                "intensity 1000000000 is outside 0..=5000",
            ),
            (
                br#"{"forecast":[{"carbonIntensity":1,"datetime":"2026-11-28T16:00Z"}],"updatedAt":"yesterday"}"#,
                "malformed",
                "updatedAt is \"yesterday\", not a timestamp",
            ),
        ];
        for (body, category, fragment) in cases {
            let (c, m) = message(parse_forecast(body));
            assert_eq!(c, category, "{m}");
            assert!(m.contains(fragment), "{m:?} lacks {fragment:?}");
        }
        let (c, m) = message(parse_latest(
            br#"{"zone":"DE","carbonIntensity":null,"datetime":"2026-11-28T16:00Z"}"#,
        ));
        assert_eq!(c, "invalid_data");
        assert!(m.ends_with("latest.carbonIntensity is null"), "{m}");
    }
}
