//! The Carbon Aware SDK WebAPI: a deployment of your own (no authentication by default) wrapping
//! WattTime, Electricity Maps or others behind one interface.
//!
//! `GET /emissions/forecasts/current?location=L` answers a list of forecasts, one per location;
//! the first one is used. Each `forecastData` entry is `{"location","timestamp","duration","value"}`
//! with `value` in g/kWh. HTTP 501 means the SDK's configured data source cannot forecast.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use reqwest::Url;
use serde::Deserialize;

use super::http::{Auth, Hints, Shared, base_url, check_status, endpoint};
use super::{
    ForecastData, History, KIND_CARBON_AWARE_SDK, Provider, ProviderError, timestamp,
    validate_allow_empty,
};
use crate::planner::Point;

/// Provider name in messages.
pub const NAME: &str = "Carbon Aware SDK";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Forecast {
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    generated_at: Option<String>,
    forecast_data: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    timestamp: String,
    value: Option<f64>,
}

fn malformed(detail: impl std::fmt::Display) -> ProviderError {
    ProviderError::Malformed {
        provider: NAME,
        detail: detail.to_string(),
    }
}

/// Parses `/emissions/forecasts/current`: the first forecast of the list. Region: its
/// `location`; `generated_at`: `generatedAt`.
pub fn parse_forecast(body: &[u8]) -> Result<ForecastData, ProviderError> {
    let forecasts: Vec<Forecast> = serde_json::from_slice(body).map_err(malformed)?;
    let Some(forecast) = forecasts.into_iter().next() else {
        return Err(ProviderError::InvalidData {
            provider: NAME,
            detail: "the answer is an empty list: the SDK has no forecast for this location".into(),
        });
    };
    let points = forecast
        .forecast_data
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let start = timestamp(
                &format!("[0].forecastData[{i}].timestamp"),
                &entry.timestamp,
            )
            .map_err(malformed)?;
            let intensity = entry.value.ok_or_else(|| ProviderError::InvalidData {
                provider: NAME,
                detail: format!("[0].forecastData[{i}].value is null"),
            })?;
            Ok(Point { start, intensity })
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    let generated_at = forecast
        .generated_at
        .map(|t| timestamp("[0].generatedAt", &t).map_err(malformed))
        .transpose()?;
    ForecastData {
        points,
        actuals: Vec::new(),
        region: forecast.location.unwrap_or_default(),
        generated_at,
    }
    .validated(NAME)
}

/// The Carbon Aware SDK client for one location.
#[derive(Debug, Clone)]
pub struct CarbonAwareSdkProvider {
    shared: Shared,
    base: Url,
    location: String,
}

impl CarbonAwareSdkProvider {
    /// A client for `location` (such as `eastus`) at the WebAPI `url`.
    pub fn new(shared: Shared, url: &str, location: &str) -> Result<Self, ProviderError> {
        let location = location.trim();
        if location.is_empty() {
            return Err(ProviderError::Config(
                "the Carbon Aware SDK needs a location, such as eastus or westeurope".into(),
            ));
        }
        Ok(Self {
            shared,
            base: base_url(NAME, url, None)?,
            location: location.to_string(),
        })
    }

    async fn fetch_at(&self, now: DateTime<Utc>) -> Result<ForecastData, ProviderError> {
        let url = endpoint(
            &self.base,
            &["emissions", "forecasts", "current"],
            &[("location", &self.location)],
        );
        let reply = self.shared.get(NAME, &url, &Auth::None, now).await?;
        let hints = Hints {
            credentials: "the WebAPI's authentication in front of it (carbonshift sends none)"
                .into(),
            forbidden: "check the WebAPI's authentication in front of it (carbonshift sends none)"
                .into(),
            not_found: format!(
                "check the URL {} (the WebAPI, port 8080 in the chart)",
                self.base
            ),
            rejected: format!(
                "check the location {:?} and the SDK's data source configuration (HTTP 501: it cannot forecast)",
                self.location
            ),
        };
        let body = check_status(NAME, reply, &hints, &[])?;
        Ok(parse_forecast(&body)?.or_region(&self.location))
    }
}

/// One observed value of `emissions/bylocation`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Observed {
    time: String,
    rating: Option<f64>,
    /// `HH:MM:SS` (a .NET TimeSpan), when the SDK says how long the value holds.
    #[serde(default)]
    duration: Option<String>,
}

/// A .NET TimeSpan `[d.]HH:MM:SS[.fff]` as a duration, if it is one.
fn timespan(text: &str) -> Option<chrono::TimeDelta> {
    let (days, rest) = match text.split_once('.') {
        Some((d, r)) if r.contains(':') => (d.parse::<i64>().ok()?, r),
        _ => (0, text),
    };
    let mut parts = rest.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    let total = chrono::TimeDelta::days(days)
        + chrono::TimeDelta::hours(h)
        + chrono::TimeDelta::minutes(m)
        + chrono::TimeDelta::milliseconds((s * 1000.0).round() as i64);
    (total > chrono::TimeDelta::zero()).then_some(total)
}

/// Parses `emissions/bylocation` (`[{"location","time","rating","duration"}]`, rating in
/// gCO2eq/kWh) into measured points in time order and how long each holds, when the SDK says.
pub fn parse_emissions(
    body: &[u8],
) -> Result<(Vec<Point>, Option<chrono::TimeDelta>), ProviderError> {
    let list: Vec<Observed> = serde_json::from_slice(body).map_err(malformed)?;
    let mut slot = None;
    let mut points = Vec::with_capacity(list.len());
    for (i, entry) in list.into_iter().enumerate() {
        let start = timestamp(&format!("[{i}].time"), &entry.time).map_err(malformed)?;
        let Some(rating) = entry.rating else {
            continue;
        };
        if slot.is_none() {
            slot = entry.duration.as_deref().and_then(timespan);
        }
        points.push(Point {
            start,
            intensity: rating,
        });
    }
    // The SDK does not promise an order.
    points.sort_by_key(|p| p.start);
    validate_allow_empty("emissions", &points).map_err(|e| ProviderError::InvalidData {
        provider: NAME,
        detail: e.to_string(),
    })?;
    Ok((points, slot))
}

impl CarbonAwareSdkProvider {
    async fn history_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<History, ProviderError> {
        let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let (time, to_time) = (fmt(from), fmt(to));
        let url = endpoint(
            &self.base,
            &["emissions", "bylocation"],
            &[
                ("location", &self.location),
                ("time", &time),
                ("toTime", &to_time),
            ],
        );
        let reply = self.shared.get(NAME, &url, &Auth::None, to).await?;
        let hints = Hints {
            credentials: "the WebAPI's authentication in front of it (carbonshift sends none)"
                .into(),
            forbidden: "check the WebAPI's authentication in front of it (carbonshift sends none)"
                .into(),
            not_found: format!("check the URL {} (the WebAPI)", self.base),
            rejected: format!(
                "check the location {:?} and that the SDK's emissions data source is configured",
                self.location
            ),
        };
        let body = check_status(NAME, reply, &hints, &[])?;
        let (points, slot) = parse_emissions(&body)?;
        Ok(History {
            points,
            slot,
            source: format!("{NAME} emissions {}", self.location),
        })
    }
}

impl Provider for CarbonAwareSdkProvider {
    fn kind(&self) -> &'static str {
        KIND_CARBON_AWARE_SDK
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

    const FORECAST: &[u8] = include_bytes!("../../tests/fixtures/providers/casdk-forecast.json");

    fn t(s: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(s).unwrap_or_default()
    }

    #[test]
    fn forecast_fixture() {
        let data = parse_forecast(FORECAST).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.region, "eastus");
        assert_eq!(data.generated_at, Some(t("2026-11-28T15:45:00Z")));
        let values: Vec<f64> = data.points.iter().map(|p| p.intensity).collect();
        assert_eq!(values, [355.2, 349.8, 341.0, 301.7, 301.7]);
        assert_eq!(data.points[4].start, t("2026-11-28T16:20Z"));
    }

    #[test]
    fn bad_answers_are_precise_errors() {
        let cases: Vec<(&[u8], &str, &str)> =
            vec![
            (b"[]", "invalid_data", "the answer is an empty list"),
            (b"{}", "malformed", "invalid type: map, expected a sequence"),
            (br#"[{"forecastData":[]}]"#, "invalid_data", "points has no points"),
            (
                br#"[{"forecastData":[{"timestamp":"2026-11-28T16:00:00+00:00","value":"x"}]}]"#,
                "malformed",
                "invalid type: string \"x\", expected f64",
            ),
            (
                br#"[{"forecastData":[{"timestamp":"2026-11-28T16:00:00+00:00","value":null}]}]"#,
                "invalid_data",
                "[0].forecastData[0].value is null",
            ),
            (
                br#"[{"forecastData":[{"timestamp":"2026-11-28T16:00:00+00:00","value":9001}]}]"#,
                "invalid_data",
                "intensity 9001 is outside",
            ),
        ];
        for (body, category, fragment) in cases {
            match parse_forecast(body) {
                Err(e) => {
                    assert_eq!(e.category(), category, "{e}");
                    assert!(e.to_string().contains(fragment), "{e} lacks {fragment:?}");
                }
                Ok(d) => panic!("accepted {d:?}"),
            }
        }
    }
}
