//! Property tests over every payload parser: random bytes, random JSON built from the providers'
//! field names, and shape-correct payloads with random values checked against a brute-force
//! statement of the validation rules. Zero panics; whatever is accepted obeys the invariants.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{ForecastData, carbon_aware_sdk, electricity_maps, uk, watttime};
use crate::trace::MAX_INTENSITY;

type Parser = fn(&[u8]) -> Result<ForecastData, super::ProviderError>;

const PARSERS: [(&str, Parser); 6] = [
    ("uk national", uk::parse_national),
    ("uk regional", uk::parse_regional),
    ("em forecast", electricity_maps::parse_forecast),
    ("em latest", electricity_maps::parse_latest),
    ("watttime", watttime::parse_forecast),
    ("casdk", carbon_aware_sdk::parse_forecast),
];

const KEYS: &[&str] = &[
    "data",
    "from",
    "to",
    "intensity",
    "forecast",
    "actual",
    "index",
    "regionid",
    "shortname",
    "postcode",
    "zone",
    "carbonIntensity",
    "datetime",
    "updatedAt",
    "point_time",
    "value",
    "meta",
    "units",
    "region",
    "generated_at",
    "token",
    "forecastData",
    "timestamp",
    "location",
    "generatedAt",
    "duration",
];

fn assert_invariants(name: &str, data: &ForecastData) -> Result<(), TestCaseError> {
    prop_assert!(!data.points.is_empty(), "{name}: empty points accepted");
    for list in [&data.points, &data.actuals] {
        for p in list.iter() {
            prop_assert!(
                p.intensity.is_finite() && (0.0..=MAX_INTENSITY).contains(&p.intensity),
                "{name}: {p:?}"
            );
        }
        prop_assert!(
            list.windows(2).all(|w| w[0].start < w[1].start),
            "{name}: not strictly increasing"
        );
    }
    Ok(())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-10_000.0f64..10_000.0).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(Value::from("lbs_co2_per_mwh")),
        (0i64..200).prop_map(|m| Value::from(stamp_at(m))),
    ]
}

fn stamp_at(minutes: i64) -> String {
    let t = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000) + TimeDelta::minutes(minutes * 5);
    t.format("%Y-%m-%dT%H:%MZ").to_string()
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                |pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

/// A value the parsers may see for an intensity: in range, out of range, null, or a string.
fn intensity() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (0.0f64..5000.0).prop_map(Value::from),
        1 => (-50.0f64..0.0).prop_map(Value::from),
        1 => (5000.0f64..20_000.0).prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(Value::from("200")),
    ]
}

/// Random (minute slot, intensity) rows: slots from a small range so duplicates and disorder are
/// common.
fn rows() -> impl Strategy<Value = Vec<(i64, Value)>> {
    proptest::collection::vec((0i64..12, intensity()), 0..8)
}

/// What the validation rules say about rows whose intensities are multiplied by `factor`.
fn acceptable(rows: &[(i64, Value)], factor: f64) -> bool {
    !rows.is_empty()
        && rows.windows(2).all(|w| w[0].0 < w[1].0)
        && rows.iter().all(|(_, v)| {
            v.as_f64()
                .is_some_and(|x| (0.0..=MAX_INTENSITY).contains(&(x * factor)))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        for (name, parse) in PARSERS {
            if let Ok(data) = parse(&body) {
                assert_invariants(name, &data)?;
            }
        }
        let _ = watttime::parse_login(&body);
    }

    #[test]
    fn random_json_never_panics(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap_or_default();
        for (name, parse) in PARSERS {
            if let Ok(data) = parse(&body) {
                assert_invariants(name, &data)?;
            }
        }
        let _ = watttime::parse_login(&body);
        // Truncated JSON is always an error, never a panic.
        if body.len() > 2 {
            for (_, parse) in PARSERS {
                prop_assert!(parse(&body[..body.len() - 1]).is_err());
            }
        }
    }

    #[test]
    fn uk_national_accepts_exactly_the_valid_rows(rows in rows(), actual in intensity()) {
        let data: Vec<Value> = rows.iter().map(|(m, v)| json!({
            "from": stamp_at(*m), "to": stamp_at(*m + 1),
            "intensity": {"forecast": v, "actual": actual, "index": "low"}
        })).collect();
        let body = serde_json::to_vec(&json!({ "data": data })).unwrap_or_default();
        let actual_ok = actual.is_null()
            || actual.as_f64().is_some_and(|x| (0.0..=MAX_INTENSITY).contains(&x));
        let result = uk::parse_national(&body);
        prop_assert_eq!(result.is_ok(), acceptable(&rows, 1.0) && actual_ok, "{:?}", result);
        if let Ok(data) = result {
            assert_invariants("uk", &data)?;
            prop_assert_eq!(data.actuals.len(), if actual.is_null() { 0 } else { rows.len() });
        }
    }

    #[test]
    fn uk_regional_accepts_exactly_the_valid_rows(rows in rows()) {
        let data: Vec<Value> = rows.iter().map(|(m, v)| json!({
            "from": stamp_at(*m), "to": stamp_at(*m + 1), "intensity": {"forecast": v, "index": "low"},
            "generationmix": [{"fuel": "gas", "perc": 40.0}]
        })).collect();
        let body = serde_json::to_vec(&json!({"data": {"regionid": 13, "shortname": "London", "data": data}}))
            .unwrap_or_default();
        prop_assert_eq!(uk::parse_regional(&body).is_ok(), acceptable(&rows, 1.0));
    }

    #[test]
    fn electricity_maps_accepts_exactly_the_valid_rows(rows in rows()) {
        let forecast: Vec<Value> = rows.iter()
            .map(|(m, v)| json!({"carbonIntensity": v, "datetime": stamp_at(*m)}))
            .collect();
        let body = serde_json::to_vec(&json!({"zone": "DE", "forecast": forecast, "updatedAt": stamp_at(0)}))
            .unwrap_or_default();
        let result = electricity_maps::parse_forecast(&body);
        prop_assert_eq!(result.is_ok(), acceptable(&rows, 1.0));
        if let Ok(data) = result {
            // serde_json's default float parsing may differ from the shortest round trip by an
            // ulp, hence the tolerance.
            prop_assert_eq!(data.points.len(), rows.len());
            for (p, (_, v)) in data.points.iter().zip(&rows) {
                let expected = v.as_f64().unwrap_or(f64::NAN);
                prop_assert!((p.intensity - expected).abs() <= 1e-9 * expected.max(1.0));
            }
        }
    }

    #[test]
    fn watttime_converts_then_validates(rows in rows()) {
        let data: Vec<Value> = rows.iter()
            .map(|(m, v)| json!({"point_time": stamp_at(*m), "value": v}))
            .collect();
        let body = serde_json::to_vec(&json!({"data": data, "meta": {
            "region": "CAISO_NORTH", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh",
            "generated_at": stamp_at(0)
        }})).unwrap_or_default();
        let result = watttime::parse_forecast(&body);
        prop_assert_eq!(result.is_ok(), acceptable(&rows, watttime::LBS_PER_MWH_TO_G_PER_KWH));
        if let Ok(data) = result {
            for (p, (_, v)) in data.points.iter().zip(&rows) {
                let lbs = v.as_f64().unwrap_or(f64::NAN);
                prop_assert!((p.intensity - lbs * watttime::LBS_PER_MWH_TO_G_PER_KWH).abs() <= 1e-9 * lbs.max(1.0));
            }
        }
    }

    #[test]
    fn carbon_aware_sdk_accepts_exactly_the_valid_rows(rows in rows()) {
        let forecast: Vec<Value> = rows.iter()
            .map(|(m, v)| json!({"location": "eastus", "timestamp": stamp_at(*m), "duration": 5, "value": v}))
            .collect();
        let body = serde_json::to_vec(&json!([{"location": "eastus", "generatedAt": stamp_at(0), "forecastData": forecast}]))
            .unwrap_or_default();
        prop_assert_eq!(carbon_aware_sdk::parse_forecast(&body).is_ok(), acceptable(&rows, 1.0));
    }

    #[test]
    fn cli_and_url_parsers_never_panic(text in ".{0,40}") {
        let _ = uk::UkTarget::parse(&text);
        let _ = super::http::base_url("P", &text, Some("v3"));
    }
}
