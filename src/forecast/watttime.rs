//! WattTime API v3: marginal operating emission rates (MOER), 5-minute points, 72 h ahead.
//!
//! `GET /login` with HTTP Basic (`username`/`password` from the Secret) returns a bearer token
//! that lasts about 30 minutes. Logins are limited to 100 per 5 minutes, so the token is cached in
//! [`Shared`] per credential (base URL + user name) and shared by every forecast using it; one
//! login runs at a time per credential. When the forecast answers 401 the token is renewed once
//! (by whichever fetch notices first) and the request repeated.
//!
//! `GET /v3/forecast?region=R&signal_type=co2_moer&horizon_hours=72` with `Authorization: Bearer`.
//! Values in lbs CO2/MWh are converted to g/kWh (× 0.45359237); kg/MWh and g/kWh pass unchanged;
//! other units (such as a health-damage signal in $/MWh) are refused. The base URL may be given
//! with or without the `/v3` suffix.

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use reqwest::Url;
use serde::Deserialize;

use super::http::{Auth, Hints, Reply, Shared, base_url, check_status, endpoint};
use super::{
    Credentials, ForecastData, History, KIND_WATTTIME, Provider, ProviderError, timestamp,
    validate_allow_empty,
};
use crate::planner::Point;

/// Provider name in messages.
pub const NAME: &str = "WattTime";

/// The public API.
pub const DEFAULT_BASE_URL: &str = "https://api.watttime.org";

/// The signal asked for unless the spec says otherwise: marginal CO2 emission rate.
pub const DEFAULT_SIGNAL_TYPE: &str = "co2_moer";

/// Hours of forecast asked for (the API's maximum).
pub const HORIZON_HOURS: u32 = 72;

/// g/kWh per lb/MWh (1 lb = 453.59237 g, 1 MWh = 1000 kWh).
pub const LBS_PER_MWH_TO_G_PER_KWH: f64 = 0.45359237;

#[derive(Deserialize)]
struct Login {
    token: String,
}

/// Parses the `/login` answer `{"token":"..."}`. The error never quotes the body, which may hold
/// a token.
pub fn parse_login(body: &[u8]) -> Result<String, ProviderError> {
    match serde_json::from_slice::<Login>(body) {
        Ok(login) if !login.token.trim().is_empty() => Ok(login.token.trim().to_string()),
        Ok(_) => Err(ProviderError::Malformed {
            provider: NAME,
            detail: "the login answer has an empty `token`".into(),
        }),
        Err(e) => Err(ProviderError::Malformed {
            provider: NAME,
            detail: format!(
                "the login answer is not {{\"token\": \"...\"}} (line {}, column {})",
                e.line(),
                e.column()
            ),
        }),
    }
}

#[derive(Deserialize)]
struct Forecast {
    data: Vec<Entry>,
    meta: Meta,
}

#[derive(Deserialize)]
struct Entry {
    point_time: String,
    value: Option<f64>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    region: Option<String>,
    units: String,
    #[serde(default)]
    generated_at: Option<String>,
}

fn malformed(detail: impl std::fmt::Display) -> ProviderError {
    ProviderError::Malformed {
        provider: NAME,
        detail: detail.to_string(),
    }
}

fn invalid(detail: String) -> ProviderError {
    ProviderError::InvalidData {
        provider: NAME,
        detail,
    }
}

/// The factor from `units` to gCO2eq/kWh, if they are CO2 intensity units.
pub fn to_g_per_kwh(units: &str) -> Option<f64> {
    match units.trim().to_ascii_lowercase().as_str() {
        "lbs_co2_per_mwh" | "lb_co2_per_mwh" => Some(LBS_PER_MWH_TO_G_PER_KWH),
        "kg_co2_per_mwh" | "g_co2_per_kwh" => Some(1.0),
        _ => None,
    }
}

/// Parses `/v3/forecast` (`{"data":[{"point_time","value"}],"meta":{"region","units","generated_at",...}}`),
/// converting to g/kWh. Region: `meta.region`; `generated_at`: `meta.generated_at`.
pub fn parse_forecast(body: &[u8]) -> Result<ForecastData, ProviderError> {
    let (points, meta) = parse_signal(body)?;
    let generated_at = meta
        .generated_at
        .map(|t| timestamp("meta.generated_at", &t).map_err(malformed))
        .transpose()?;
    ForecastData {
        points,
        actuals: Vec::new(),
        region: meta.region.unwrap_or_default(),
        generated_at,
    }
    .validated(NAME)
}

/// Parses `historical` (the forecast's `{"data":[{"point_time","value"}],"meta":{"units",...}}`
/// shape) into measured points in gCO2eq/kWh; an empty list is nothing published yet.
pub fn parse_historical(body: &[u8]) -> Result<Vec<Point>, ProviderError> {
    let (points, _) = parse_signal(body)?;
    validate_allow_empty("data", &points).map_err(|e| invalid(e.to_string()))?;
    Ok(points)
}

/// The points of a signal answer, converted to gCO2eq/kWh, and its `meta`.
fn parse_signal(body: &[u8]) -> Result<(Vec<Point>, Meta), ProviderError> {
    let forecast: Forecast = serde_json::from_slice(body).map_err(malformed)?;
    let factor = to_g_per_kwh(&forecast.meta.units).ok_or_else(|| {
        invalid(format!(
            "meta.units is {:?}; carbonshift needs CO2 intensity (lbs_co2_per_mwh, as signal_type co2_moer gives)",
            forecast.meta.units.chars().take(64).collect::<String>()
        ))
    })?;
    let points = forecast
        .data
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let start = timestamp(&format!("data[{i}].point_time"), &entry.point_time)
                .map_err(malformed)?;
            let value = entry
                .value
                .ok_or_else(|| invalid(format!("data[{i}].value is null")))?;
            Ok(Point {
                start,
                intensity: value * factor,
            })
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    Ok((points, forecast.meta))
}

/// The WattTime client for one region and signal.
#[derive(Clone)]
pub struct WattTimeProvider {
    shared: Shared,
    base: Url,
    region: String,
    signal_type: String,
    username: String,
    password: String,
    login_hint: String,
}

impl std::fmt::Debug for WattTimeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WattTimeProvider")
            .field("base", &self.base.as_str())
            .field("region", &self.region)
            .field("signal_type", &self.signal_type)
            .field("username", &"<redacted>")
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl WattTimeProvider {
    /// A client for `region` (such as `CAISO_NORTH`) and `signal_type` (default
    /// [`DEFAULT_SIGNAL_TYPE`]) logging in with `credentials`, at `base_url` or
    /// [`DEFAULT_BASE_URL`].
    pub fn new(
        shared: Shared,
        base_url: Option<&str>,
        region: &str,
        signal_type: Option<&str>,
        credentials: &Credentials,
    ) -> Result<Self, ProviderError> {
        let region = region.trim();
        if region.is_empty() {
            return Err(ProviderError::Config(
                "WattTime needs a region, such as CAISO_NORTH".into(),
            ));
        }
        let (Some(username), Some(password)) = (credentials.username(), credentials.password())
        else {
            return Err(ProviderError::Config(format!(
                "WattTime needs a user name and password: {}",
                credentials.missing_hint("keys `username` and `password`")
            )));
        };
        let signal_type = signal_type
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SIGNAL_TYPE);
        Ok(Self {
            shared,
            base: self::base_url(NAME, base_url.unwrap_or(DEFAULT_BASE_URL), Some("v3"))?,
            region: region.to_string(),
            signal_type: signal_type.to_string(),
            username: username.to_string(),
            password: password.to_string(),
            login_hint: credentials.login_hint(),
        })
    }

    fn secrets(&self) -> [&str; 2] {
        [&self.username, &self.password]
    }

    async fn login(&self, now: DateTime<Utc>) -> Result<String, ProviderError> {
        let url = endpoint(&self.base, &["login"], &[]);
        let auth = Auth::Basic {
            username: &self.username,
            password: &self.password,
        };
        let reply = self.shared.get(NAME, &url, &auth, now).await?;
        if reply.status == 403 {
            // WattTime answers 403 to a wrong password as well as 401.
            return Err(ProviderError::Unauthorized {
                provider: NAME,
                check: self.login_hint.clone(),
            });
        }
        let hints = Hints {
            credentials: self.login_hint.clone(),
            forbidden: String::new(),
            not_found: "check the base URL: /login was not found".into(),
            rejected: "check the base URL".into(),
        };
        let body = check_status(NAME, reply, &hints, &self.secrets())?;
        tracing::debug!(provider = KIND_WATTTIME, "logged in");
        parse_login(&body)
    }

    /// The cached token, logging in when there is none.
    async fn token(
        &self,
        slot: &tokio::sync::Mutex<Option<String>>,
        now: DateTime<Utc>,
    ) -> Result<String, ProviderError> {
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            return Ok(token.clone());
        }
        let token = self.login(now).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// A new token after `rejected` was refused, unless another fetch already renewed it.
    async fn renew(
        &self,
        slot: &tokio::sync::Mutex<Option<String>>,
        rejected: &str,
        now: DateTime<Utc>,
    ) -> Result<String, ProviderError> {
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && token != rejected
        {
            return Ok(token.clone());
        }
        *cached = None;
        let token = self.login(now).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    async fn request(
        &self,
        token: &str,
        path: &[&str],
        query: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<Reply, ProviderError> {
        let url = endpoint(&self.base, path, query);
        self.shared.get(NAME, &url, &Auth::Bearer(token), now).await
    }

    /// GET `path?query` with the cached token, logging in again once when it is refused; the
    /// answer's body when it is a success.
    async fn get_json(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, ProviderError> {
        let slot = self
            .shared
            .tokens()
            .slot(self.base.as_str(), &self.username);
        let token = self.token(&slot, now).await?;
        let mut reply = self.request(&token, path, query, now).await?;
        let mut used = token;
        if reply.status == 401 {
            tracing::debug!(provider = KIND_WATTTIME, "token refused; logging in again");
            used = self.renew(&slot, &used, now).await?;
            reply = self.request(&used, path, query, now).await?;
            if reply.status == 401 {
                *slot.lock().await = None;
            }
        }
        let hints = Hints {
            credentials: self.login_hint.clone(),
            forbidden: format!(
                "the account cannot read region {} with signal_type {} (free accounts see CAISO_NORTH only); check the region and the plan",
                self.region, self.signal_type
            ),
            not_found: format!(
                "check the region {:?} (for example CAISO_NORTH) and the base URL",
                self.region
            ),
            rejected: format!(
                "check the region {:?} and signal_type {:?}",
                self.region, self.signal_type
            ),
        };
        let secrets = [self.username.as_str(), self.password.as_str(), &used];
        check_status(NAME, reply, &hints, &secrets)
    }

    async fn fetch_at(&self, now: DateTime<Utc>) -> Result<ForecastData, ProviderError> {
        let horizon = HORIZON_HOURS.to_string();
        let query = [
            ("region", self.region.as_str()),
            ("signal_type", self.signal_type.as_str()),
            ("horizon_hours", horizon.as_str()),
        ];
        let body = self.get_json(&["v3", "forecast"], &query, now).await?;
        Ok(parse_forecast(&body)?.or_region(&self.region))
    }

    async fn history_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<History, ProviderError> {
        let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let points = super::in_chunks(from, to, HISTORY_CHUNK, |a, b| async move {
            let (start_text, end_text) = (fmt(a), fmt(b));
            let query = [
                ("region", self.region.as_str()),
                ("signal_type", self.signal_type.as_str()),
                ("start", start_text.as_str()),
                ("end", end_text.as_str()),
            ];
            parse_historical(&self.get_json(&["v3", "historical"], &query, to).await?)
        })
        .await?;
        Ok(History {
            points,
            slot: Some(TimeDelta::minutes(5)),
            source: format!("{NAME} historical {} {}", self.region, self.signal_type),
        })
    }
}

/// The longest range of one `historical` request (WattTime allows 32 days).
pub const HISTORY_CHUNK: TimeDelta = TimeDelta::days(31);

impl Provider for WattTimeProvider {
    fn kind(&self) -> &'static str {
        KIND_WATTTIME
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

    const FORECAST: &[u8] = include_bytes!("../../tests/fixtures/providers/wt-forecast.json");

    fn t(s: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(s).unwrap_or_default()
    }

    #[test]
    fn forecast_fixture_is_converted_to_grams_per_kwh() {
        let data = parse_forecast(FORECAST).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.region, "CAISO_NORTH");
        assert_eq!(data.generated_at, Some(t("2026-11-28T15:55:00Z")));
        assert_eq!(data.points.len(), 6);
        assert_eq!(data.points[0].start, t("2026-11-28T16:00Z"));
        assert_eq!(data.points[5].start, t("2026-11-28T16:25Z"));
        let expected = [912.4, 905.1, 871.9, 640.0, 622.8, 655.3];
        for (p, lbs) in data.points.iter().zip(expected) {
            assert!((p.intensity - lbs * 0.45359237).abs() < 1e-9, "{p:?}");
        }
        // 912.4 lbs/MWh is 413.86 g/kWh.
        assert_eq!((data.points[0].intensity * 100.0).round() / 100.0, 413.86);
    }

    #[test]
    fn range_is_checked_after_conversion() {
        // 11000 lbs/MWh = 4989.5 g/kWh: allowed; 11100 lbs/MWh = 5034.9 g/kWh: refused.
        let body = |v: f64| {
            format!(
                r#"{{"data":[{{"point_time":"2026-11-28T16:00:00+00:00","value":{v}}}],"meta":{{"units":"lbs_co2_per_mwh"}}}}"#
            )
        };
        assert!(parse_forecast(body(11000.0).as_bytes()).is_ok());
        let err = parse_forecast(body(11100.0).as_bytes()).map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|m| m.contains("points[0]") && m.contains("outside 0..=5000")),
            "{err:?}"
        );
    }

    #[test]
    fn units_other_than_co2_are_refused() {
        let body = br#"{"data":[{"point_time":"2026-11-28T16:00:00+00:00","value":3}],"meta":{"units":"$/MWh"}}"#;
        let err = parse_forecast(body).map_err(|e| (e.category(), e.to_string()));
        assert_eq!(
            err,
            Err((
                "invalid_data",
                "WattTime returned unusable data: meta.units is \"$/MWh\"; carbonshift needs CO2 intensity (lbs_co2_per_mwh, as signal_type co2_moer gives)".to_string()
            ))
        );
        assert_eq!(to_g_per_kwh("kg_co2_per_mwh"), Some(1.0));
        assert_eq!(
            to_g_per_kwh("LBS_CO2_PER_MWH"),
            Some(LBS_PER_MWH_TO_G_PER_KWH)
        );
    }

    #[test]
    fn bad_forecasts_are_precise_errors() {
        let cases: Vec<(&[u8], &str, &str)> = vec![
            (br#"{"data":[]}"#, "malformed", "missing field `meta`"),
            (br#"{"data":[],"meta":{"units":"lbs_co2_per_mwh"}}"#, "invalid_data", "points has no points"),
            (
                br#"{"data":[{"point_time":"x","value":1}],"meta":{"units":"lbs_co2_per_mwh"}}"#,
                "malformed",
                "data[0].point_time is \"x\", not a timestamp",
            ),
            (
                br#"{"data":[{"point_time":"2026-11-28T16:00Z","value":null}],"meta":{"units":"lbs_co2_per_mwh"}}"#,
                "invalid_data",
                "data[0].value is null",
            ),
            (
                br#"{"data":[{"point_time":"2026-11-28T16:00Z","value":-1}],"meta":{"units":"lbs_co2_per_mwh"}}"#,
                "invalid_data",
                "is outside 0..=5000",
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

    #[test]
    fn login_answers() {
        assert_eq!(parse_login(br#"{"token":"abc.def"}"#), Ok("abc.def".into()));
        for body in [
            &b""[..],
            b"{}",
            br#"{"token":""}"#,
            br#"{"token":7}"#,
            b"<html>",
        ] {
            let err = parse_login(body);
            assert!(
                matches!(err, Err(ProviderError::Malformed { .. })),
                "{err:?}"
            );
        }
        // Never quotes the body.
        let err = parse_login(br#"{"token":["secret-token"]}"#).map_err(|e| e.to_string());
        assert!(err.is_err_and(|m| !m.contains("secret-token")));
    }
}
