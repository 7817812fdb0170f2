//! The UK Carbon Intensity API (National Energy System Operator), no account needed: half-hourly
//! forecasts 48 h ahead, nationally (with measured `actual` values for past slots), for one of the
//! 17 regions, or for the region of a postcode's outward code.
//!
//! Endpoints, with `{from}` the start of the half-hour containing `now` as `YYYY-MM-DDThh:mmZ`:
//! national `GET /intensity/{from}/fw48h`, region `GET /regional/intensity/{from}/fw48h/regionid/{id}`,
//! postcode `GET /regional/intensity/{from}/fw48h/postcode/{outward}`. Pitfall: in the regional
//! answers `data` is an object holding the region and its own `data` list.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::future::BoxFuture;
use reqwest::Url;
use serde::Deserialize;

use super::http::{Auth, Hints, Shared, base_url, check_status, endpoint};
use super::{
    ForecastData, History, KIND_UK, Provider, ProviderError, timestamp, validate_allow_empty,
};
use crate::api::forecast::UkCarbonIntensity;
use crate::planner::Point;

/// Provider name in messages.
pub const NAME: &str = "UK Carbon Intensity API";

/// The public API.
pub const DEFAULT_BASE_URL: &str = "https://api.carbonintensity.org.uk";

/// Which forecast to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UkTarget {
    /// Great Britain as a whole.
    National,
    /// One of the API's regions, 1–17 (13 = London).
    Region(u8),
    /// The region of a postcode's outward code (`SW1A`, `RG10`), upper case.
    Postcode(String),
}

impl UkTarget {
    /// From the CRD: neither field → national; `regionId` 1–17; or `postcode`. Both set is an
    /// error.
    pub fn from_spec(spec: &UkCarbonIntensity) -> Result<Self, ProviderError> {
        match (spec.region_id, spec.postcode.as_deref()) {
            (Some(_), Some(_)) => Err(ProviderError::Config(
                "ukCarbonIntensity: set at most one of regionId and postcode".into(),
            )),
            (Some(id), None) => Self::region(id),
            (None, Some(postcode)) => Self::postcode(postcode),
            (None, None) => Ok(Self::National),
        }
    }

    /// From the CLI form: `national`, `1`..`17`, or `postcode:<outward>`.
    pub fn parse(text: &str) -> Result<Self, ProviderError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("national") {
            return Ok(Self::National);
        }
        if let Some(outward) = text
            .strip_prefix("postcode:")
            .or_else(|| text.strip_prefix("POSTCODE:"))
        {
            return Self::postcode(outward);
        }
        match text.parse::<u8>() {
            Ok(id) => Self::region(id),
            Err(_) => Err(ProviderError::Config(format!(
                "UK region {text:?}: expected national, a region id 1-17 or postcode:<outward code> such as postcode:SW1A"
            ))),
        }
    }

    fn region(id: u8) -> Result<Self, ProviderError> {
        if (1..=17).contains(&id) {
            Ok(Self::Region(id))
        } else {
            Err(ProviderError::Config(format!(
                "UK region id {id} is outside 1-17 (for example 13 = London)"
            )))
        }
    }

    fn postcode(outward: &str) -> Result<Self, ProviderError> {
        let outward = outward.trim().to_ascii_uppercase();
        let bytes = outward.as_bytes();
        let letters = bytes.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let rest = &bytes[letters..];
        let valid = (1..=2).contains(&letters)
            && rest.first().is_some_and(u8::is_ascii_digit)
            && rest.len() <= 2
            && rest.iter().all(u8::is_ascii_alphanumeric);
        if valid {
            Ok(Self::Postcode(outward))
        } else {
            Err(ProviderError::Config(format!(
                "UK postcode {outward:?}: expected the outward part only, such as SW1A or RG10"
            )))
        }
    }
}

/// The `{from}` path parameter: the start of the half-hour slot containing `now`, as
/// `YYYY-MM-DDThh:mmZ`, so that the answer includes the current slot.
pub fn from_param(now: DateTime<Utc>) -> String {
    let slot = now.duration_trunc(TimeDelta::minutes(30)).unwrap_or(now);
    slot.format("%Y-%m-%dT%H:%MZ").to_string()
}

/// The path segments of the forecast for `target` from `from`.
pub fn path(target: &UkTarget, from: &str) -> Vec<String> {
    let mut segments: Vec<String> = match target {
        UkTarget::National => vec!["intensity".into()],
        UkTarget::Region(_) | UkTarget::Postcode(_) => vec!["regional".into(), "intensity".into()],
    };
    segments.push(from.into());
    segments.push("fw48h".into());
    match target {
        UkTarget::National => {}
        UkTarget::Region(id) => segments.extend(["regionid".into(), id.to_string()]),
        UkTarget::Postcode(outward) => segments.extend(["postcode".into(), outward.clone()]),
    }
    segments
}

#[derive(Deserialize)]
struct National {
    data: Vec<Slot>,
}

#[derive(Deserialize)]
struct Slot {
    from: String,
    intensity: Intensity,
}

#[derive(Deserialize)]
struct Intensity {
    forecast: Option<f64>,
    #[serde(default)]
    actual: Option<f64>,
}

#[derive(Deserialize)]
struct RegionalEnvelope {
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct Region {
    #[serde(default)]
    regionid: Option<u32>,
    #[serde(default)]
    shortname: Option<String>,
    #[serde(default)]
    postcode: Option<String>,
    data: Vec<Slot>,
}

fn malformed(detail: impl std::fmt::Display) -> ProviderError {
    ProviderError::Malformed {
        provider: NAME,
        detail: detail.to_string(),
    }
}

fn slots(list: &str, slots: Vec<Slot>) -> Result<(Vec<Point>, Vec<Point>), ProviderError> {
    let mut points = Vec::with_capacity(slots.len());
    let mut actuals = Vec::new();
    for (i, slot) in slots.into_iter().enumerate() {
        let start = timestamp(&format!("{list}[{i}].from"), &slot.from).map_err(malformed)?;
        let forecast = slot
            .intensity
            .forecast
            .ok_or_else(|| ProviderError::InvalidData {
                provider: NAME,
                detail: format!("{list}[{i}].intensity.forecast is null"),
            })?;
        points.push(Point {
            start,
            intensity: forecast,
        });
        if let Some(actual) = slot.intensity.actual {
            actuals.push(Point {
                start,
                intensity: actual,
            });
        }
    }
    Ok((points, actuals))
}

/// Parses the national answer (`{"data":[{"from","to","intensity":{"forecast","actual","index"}}]}`):
/// forecast points, and the `actual` values that are not null as actuals. Region `national`.
pub fn parse_national(body: &[u8]) -> Result<ForecastData, ProviderError> {
    let national: National = serde_json::from_slice(body).map_err(malformed)?;
    let (points, actuals) = slots("data", national.data)?;
    ForecastData {
        points,
        actuals,
        region: "national".into(),
        generated_at: None,
    }
    .validated(NAME)
}

/// Parses a regional or postcode answer (`{"data":{"regionid","shortname","data":[...]}}`; a
/// one-element list in place of the object is accepted too). Region: the API's short name, with
/// the postcode when there is one (`London (SW1A)`).
pub fn parse_regional(body: &[u8]) -> Result<ForecastData, ProviderError> {
    let envelope: RegionalEnvelope = serde_json::from_slice(body).map_err(malformed)?;
    let object = match envelope.data {
        serde_json::Value::Array(mut list) if list.len() == 1 => list.remove(0),
        serde_json::Value::Array(list) => {
            return Err(malformed(format!(
                "`data` is a list of {} entries; expected the region object",
                list.len()
            )));
        }
        other => other,
    };
    let region: Region =
        serde_json::from_value(object).map_err(|e| malformed(format!("in `data`: {e}")))?;
    let (points, _) = slots("data.data", region.data)?;
    let name = match (
        region.shortname.filter(|s| !s.trim().is_empty()),
        region.regionid,
    ) {
        (Some(name), _) => name,
        (None, Some(id)) => format!("region {id}"),
        (None, None) => "region".into(),
    };
    let region_name = match region.postcode.filter(|p| !p.trim().is_empty()) {
        Some(postcode) => format!("{name} ({postcode})"),
        None => name,
    };
    ForecastData {
        points,
        actuals: Vec::new(),
        region: region_name,
        generated_at: None,
    }
    .validated(NAME)
}

/// The UK Carbon Intensity API client.
#[derive(Debug, Clone)]
pub struct UkProvider {
    shared: Shared,
    base: Url,
    target: UkTarget,
}

impl UkProvider {
    /// A client for `target`, at `base_url` or [`DEFAULT_BASE_URL`].
    pub fn new(
        shared: Shared,
        base_url: Option<&str>,
        target: UkTarget,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            shared,
            base: self::base_url(NAME, base_url.unwrap_or(DEFAULT_BASE_URL), None)?,
            target,
        })
    }

    async fn fetch_at(&self, now: DateTime<Utc>) -> Result<ForecastData, ProviderError> {
        let from = from_param(now);
        let segments = path(&self.target, &from);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let url = endpoint(&self.base, &segments, &[]);
        let reply = self.shared.get(NAME, &url, &Auth::None, now).await?;
        let what = match &self.target {
            UkTarget::National => "the base URL".to_string(),
            UkTarget::Region(id) => format!("the region id {id} (1-17) and the base URL"),
            UkTarget::Postcode(p) => format!("the postcode outward code {p} and the base URL"),
        };
        let hints = Hints {
            credentials: format!("{what}; the UK API needs no credentials"),
            forbidden: format!("check {what}; the UK API needs no credentials"),
            not_found: format!("check {what}"),
            rejected: format!("check {what}"),
        };
        let body = check_status(NAME, reply, &hints, &[])?;
        match self.target {
            UkTarget::National => parse_national(&body),
            UkTarget::Region(_) | UkTarget::Postcode(_) => parse_regional(&body),
        }
    }
}

/// The longest range one `/intensity/{from}/{to}` request may ask for (the API's limit is 14
/// days).
pub const HISTORY_CHUNK: TimeDelta = TimeDelta::days(14);

/// The path segments of the national measured values over `[from, to)`.
pub fn history_path(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%MZ").to_string();
    vec!["intensity".into(), fmt(from), fmt(to)]
}

impl UkProvider {
    async fn history_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<History, ProviderError> {
        if !matches!(self.target, UkTarget::National) {
            return Err(ProviderError::Unsupported {
                provider: NAME,
                detail: "publishes measured (actual) values for the national grid only, not per region or postcode: plan against a national CarbonForecast to have savings verified".into(),
            });
        }
        let hints = Hints {
            credentials: "the base URL; the UK API needs no credentials".into(),
            forbidden: "the base URL; the UK API needs no credentials".into(),
            not_found: "the base URL".into(),
            rejected: "the base URL and the requested time range".into(),
        };
        let start = from.duration_trunc(TimeDelta::minutes(30)).unwrap_or(from);
        let hints = &hints;
        let points = super::in_chunks(start, to, HISTORY_CHUNK, |a, b| async move {
            let segments = history_path(a, b);
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            let url = endpoint(&self.base, &segments, &[]);
            let reply = self.shared.get(NAME, &url, &Auth::None, to).await?;
            parse_national_history(&check_status(NAME, reply, hints, &[])?)
        })
        .await?;
        Ok(History {
            points,
            slot: Some(TimeDelta::minutes(30)),
            source: "UK Carbon Intensity API national actual".into(),
        })
    }
}

/// Parses an `/intensity/{from}/{to}` answer (the forecast payload's shape) into its measured
/// values; slots without an `actual` (not yet published) are left out.
pub fn parse_national_history(body: &[u8]) -> Result<Vec<Point>, ProviderError> {
    let national: National = serde_json::from_slice(body).map_err(malformed)?;
    let (_, actuals) = slots("data", national.data)?;
    validate_allow_empty("actuals", &actuals).map_err(|e| ProviderError::InvalidData {
        provider: NAME,
        detail: e.to_string(),
    })?;
    Ok(actuals)
}

impl Provider for UkProvider {
    fn kind(&self) -> &'static str {
        KIND_UK
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

    const NATIONAL: &[u8] = include_bytes!("../../tests/fixtures/providers/uk-national-fw48h.json");
    const REGIONAL: &[u8] = include_bytes!("../../tests/fixtures/providers/uk-regional-fw48h.json");

    fn t(s: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(s).unwrap_or_default()
    }

    #[test]
    fn national_fixture_gives_forecasts_and_the_one_actual() {
        let data = parse_national(NATIONAL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.region, "national");
        assert_eq!(data.generated_at, None);
        let values: Vec<f64> = data.points.iter().map(|p| p.intensity).collect();
        assert_eq!(
            values,
            [212.0, 225.0, 231.0, 198.0, 160.0, 121.0, 88.0, 64.0]
        );
        assert_eq!(data.points[0].start, t("2026-11-28T15:30Z"));
        assert_eq!(data.points[7].start, t("2026-11-28T19:00Z"));
        assert_eq!(
            data.actuals,
            [Point {
                start: t("2026-11-28T15:30Z"),
                intensity: 208.0
            }]
        );
    }

    #[test]
    fn regional_fixture_reads_the_nested_object() {
        let data = parse_regional(REGIONAL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.region, "London");
        assert!(data.actuals.is_empty());
        let values: Vec<f64> = data.points.iter().map(|p| p.intensity).collect();
        assert_eq!(values, [240.0, 251.0, 137.0]);
        assert_eq!(data.points[2].start, t("2026-11-28T16:30Z"));
    }

    #[test]
    fn regional_accepts_a_one_element_list_and_names_postcodes() {
        let body = br#"{"data":[{"regionid":3,"postcode":"RG10","data":[
            {"from":"2026-11-28T15:30Z","intensity":{"forecast":10}}]}]}"#;
        let data = parse_regional(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.region, "region 3 (RG10)");
        assert_eq!(data.points.len(), 1);
    }

    #[test]
    fn the_regional_pitfall_and_other_mistakes_are_precise_errors() {
        let err = |r: Result<ForecastData, ProviderError>| match r {
            Err(e) => (e.category(), e.to_string()),
            Ok(d) => ("ok", format!("{d:?}")),
        };
        // National parser on a regional body: `data` is an object.
        let (category, message) = err(parse_national(REGIONAL));
        assert_eq!(category, "malformed");
        assert!(
            message.contains("invalid type: map, expected a sequence"),
            "{message}"
        );
        let (category, message) = err(parse_regional(
            br#"{"data":{"shortname":"X","data":[{"from":"2026-11-28T15:30Z","intensity":{"forecast":"high"}}]}}"#,
        ));
        assert_eq!(category, "malformed");
        assert!(
            message.contains("in `data`: invalid type: string \"high\""),
            "{message}"
        );
        let (category, message) = err(parse_national(
            br#"{"data":[{"from":"soon","intensity":{"forecast":1}}]}"#,
        ));
        assert_eq!(category, "malformed");
        assert!(
            message.contains("data[0].from is \"soon\", not a timestamp"),
            "{message}"
        );
        let (category, message) = err(parse_national(
            br#"{"data":[{"from":"2026-11-28T15:30Z","intensity":{"forecast":null,"actual":3}}]}"#,
        ));
        assert_eq!(category, "invalid_data");
        assert!(
            message.ends_with("data[0].intensity.forecast is null"),
            "{message}"
        );
        let (category, message) = err(parse_national(br#"{"data":[]}"#));
        assert_eq!(category, "invalid_data");
        assert!(message.ends_with("points has no points"), "{message}");
        let (category, message) = err(parse_national(
            br#"{"data":[{"from":"2026-11-28T15:30Z","intensity":{"forecast":5,"actual":-2}}]}"#,
        ));
        assert_eq!(category, "invalid_data");
        assert!(message.contains("actuals[0]"), "{message}");
        let (category, _) = err(parse_national(&NATIONAL[..NATIONAL.len() / 2]));
        assert_eq!(category, "malformed");
    }

    #[test]
    fn from_is_the_half_hour_containing_now() {
        assert_eq!(from_param(t("2026-11-28T15:47:13Z")), "2026-11-28T15:30Z");
        assert_eq!(from_param(t("2026-11-28T16:00:00Z")), "2026-11-28T16:00Z");
        assert_eq!(from_param(t("2026-11-28T16:29:59.9Z")), "2026-11-28T16:00Z");
    }

    #[test]
    fn paths_for_each_target() {
        let f = "2026-11-28T15:30Z";
        assert_eq!(path(&UkTarget::National, f), ["intensity", f, "fw48h"]);
        assert_eq!(
            path(&UkTarget::Region(13), f),
            ["regional", "intensity", f, "fw48h", "regionid", "13"]
        );
        assert_eq!(
            path(&UkTarget::Postcode("SW1A".into()), f),
            ["regional", "intensity", f, "fw48h", "postcode", "SW1A"]
        );
    }

    #[test]
    fn targets_from_spec_and_cli() {
        let spec = |region_id, postcode: Option<&str>| UkCarbonIntensity {
            region_id,
            postcode: postcode.map(String::from),
        };
        assert_eq!(
            UkTarget::from_spec(&spec(None, None)),
            Ok(UkTarget::National)
        );
        assert_eq!(
            UkTarget::from_spec(&spec(Some(13), None)),
            Ok(UkTarget::Region(13))
        );
        assert_eq!(
            UkTarget::from_spec(&spec(None, Some("sw1a"))),
            Ok(UkTarget::Postcode("SW1A".into()))
        );
        assert!(UkTarget::from_spec(&spec(Some(1), Some("RG10"))).is_err());
        assert!(UkTarget::from_spec(&spec(Some(0), None)).is_err());
        assert!(UkTarget::from_spec(&spec(Some(18), None)).is_err());
        assert_eq!(UkTarget::parse("National"), Ok(UkTarget::National));
        assert_eq!(UkTarget::parse("17"), Ok(UkTarget::Region(17)));
        assert_eq!(
            UkTarget::parse("postcode:rg10"),
            Ok(UkTarget::Postcode("RG10".into()))
        );
        assert_eq!(
            UkTarget::parse("postcode:E1"),
            Ok(UkTarget::Postcode("E1".into()))
        );
        for bad in [
            "",
            "london",
            "0",
            "300",
            "postcode:",
            "postcode:SW1A 1AA",
            "postcode:1AB",
            "postcode:ABC1",
        ] {
            assert!(
                matches!(UkTarget::parse(bad), Err(ProviderError::Config(_))),
                "{bad}"
            );
        }
    }
}
