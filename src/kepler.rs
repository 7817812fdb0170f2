//! Measured energy of a finished workload from Kepler's per-container energy counters in
//! Prometheus (`--prometheus-url`). The pure part builds the PromQL query for one run of the
//! workload's pods ([`query`]), reads the Prometheus query API's answer ([`parse`]) and puts the
//! measured energy into a decision ([`apply`]); [`fetch`] is the small HTTP client around them.
//!
//! The query, evaluated at the end of each run (`GET /api/v1/query?query=...&time=<end>`):
//!
//! ```text
//! sum(increase(kepler_container_joules_total{container_namespace="ml",pod_name=~"train-([0-9]+-)?[a-z0-9]{5}"}[<run seconds>s]))
//! ```
//!
//! — Kepler's (≤ 0.7) counter of every container's energy (package, DRAM, GPU and other
//! components, all `mode`s), summed over the workload's pods. A `batch/v1` Job's pods are named
//! `<job>-<5 characters>` (`<job>-<index>-<5>` when indexed); for other kinds the pattern is
//! `<name>-.+`, which also matches another workload whose name extends this one's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::api::CarbonWorkloadStatus;
use crate::lifecycle::Decision;

/// Kepler's per-container energy counter, joules.
pub const METRIC: &str = "kepler_container_joules_total";
/// `status.energySource` when the energy came from Kepler.
pub const SOURCE_KEPLER: &str = "kepler";
/// `status.energySource` when it came from the `carbonshift.dev/power` annotation.
pub const SOURCE_DECLARED: &str = "declared";
/// `status.energySource` when it came from the power estimate of the pod templates.
pub const SOURCE_ESTIMATED: &str = "estimated";
/// Joules in a kWh.
pub const JOULES_PER_KWH: f64 = 3.6e6;

/// Why Prometheus' answer cannot be used.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum KeplerError {
    /// The body is not the query API's JSON.
    #[error(
        "Prometheus answered {0}; expected the query API's JSON ({{\"status\":\"success\",\"data\":{{\"resultType\":\"vector\",...}}}})"
    )]
    NotJson(String),
    /// `status` is `error`.
    #[error("Prometheus refused the query: {0}")]
    Refused(String),
    /// `data.resultType` is not `vector`.
    #[error("Prometheus answered a {0} result; expected a vector")]
    NotVector(String),
    /// A sample's value is not a number of joules.
    #[error(
        "Prometheus answered the sample value {0:?}; expected a number of joules as a string, such as \"1234.5\""
    )]
    BadValue(String),
    /// The request failed.
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable {
        /// The query URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// The pod-name pattern (RE2, anchored by PromQL) of the workload `name` of `kind`.
pub fn pod_pattern(kind: &str, name: &str) -> String {
    let escaped: String = name
        .chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect();
    if kind == "Job" {
        format!("{escaped}-([0-9]+-)?[a-z0-9]{{5}}")
    } else {
        format!("{escaped}-.+")
    }
}

/// `text` as a PromQL double-quoted string literal.
fn literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The PromQL query of the energy of the pods matching `pattern` in `namespace` over one run,
/// and the time to evaluate it at (the run's end). A run shorter than a second counts as one.
pub fn query(
    namespace: &str,
    pattern: &str,
    run: (DateTime<Utc>, DateTime<Utc>),
) -> (String, DateTime<Utc>) {
    let seconds = (run.1 - run.0).num_seconds().max(1);
    (
        format!(
            "sum(increase({METRIC}{{container_namespace={},pod_name=~{}}}[{seconds}s]))",
            literal(namespace),
            literal(pattern)
        ),
        run.1,
    )
}

/// The joules in a query API answer: the sum of the vector's samples, `None` for an empty
/// vector (Kepler has no series of those pods).
pub fn parse(body: &str) -> Result<Option<f64>, KeplerError> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| {
        let start: String = body.chars().take(80).collect();
        KeplerError::NotJson(format!("{start:?} ({e})"))
    })?;
    match value.get("status").and_then(|s| s.as_str()) {
        Some("success") => {}
        Some("error") => {
            let kind = value
                .get("errorType")
                .and_then(|e| e.as_str())
                .unwrap_or("");
            let error = value.get("error").and_then(|e| e.as_str()).unwrap_or("");
            return Err(KeplerError::Refused(format!("{kind}: {error}")));
        }
        _ => return Err(KeplerError::NotJson("JSON without \"status\"".to_string())),
    }
    let data = value
        .get("data")
        .ok_or_else(|| KeplerError::NotJson("JSON without \"data\"".to_string()))?;
    let kind = data
        .get("resultType")
        .and_then(|k| k.as_str())
        .unwrap_or("missing");
    if kind != "vector" {
        return Err(KeplerError::NotVector(kind.to_string()));
    }
    let samples = data
        .get("result")
        .and_then(|r| r.as_array())
        .ok_or_else(|| KeplerError::NotJson("a vector without \"result\"".to_string()))?;
    let mut total = None;
    for sample in samples {
        let raw = sample
            .get("value")
            .and_then(|v| v.get(1))
            .and_then(|v| v.as_str())
            .ok_or_else(|| KeplerError::BadValue(sample.to_string()))?;
        let joules: f64 = raw
            .parse()
            .ok()
            .filter(|j: &f64| j.is_finite() && *j >= 0.0)
            .ok_or_else(|| KeplerError::BadValue(raw.to_string()))?;
        *total.get_or_insert(0.0) += joules;
    }
    Ok(total)
}

/// The runs of a finished workload: its recorded runs (an interruptible one), else from its
/// start to its end.
pub fn runs(status: &CarbonWorkloadStatus) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    if !status.runs.is_empty() {
        return status.runs.iter().map(|w| (w.start, w.end)).collect();
    }
    match (status.started_at, status.finished_at) {
        (Some(a), Some(b)) if b > a => vec![(a, b)],
        _ => Vec::new(),
    }
}

/// `status.energySource` without Kepler's figure: from the spec's power source.
pub fn declared_source(power_source: &str) -> &'static str {
    if power_source == crate::api::workload::POWER_SOURCE_ANNOTATION {
        SOURCE_DECLARED
    } else {
        SOURCE_ESTIMATED
    }
}

/// Puts the measured energy `kwh` into `decision`: the completion figures (when the workload
/// finishes now) and the verified ones (when verified now) are recomputed with it — emissions and
/// avoided grams are energy × mean intensity, so each scales with the energy — and
/// `status.energySource` says `kepler`. A decision without figures, or whose estimated energy is
/// 0 (so that nothing scales), gets the energy and its emissions at the realised intensity.
pub fn apply(decision: &mut Decision, kwh: f64) {
    let Some(status) = decision.status.as_mut() else {
        return;
    };
    let kwh = kwh.max(0.0);
    if let Some(c) = decision.completion.as_mut() {
        match status.estimated_energy_kwh.filter(|e| *e > 0.0) {
            Some(estimated) => {
                let r = kwh / estimated;
                c.emitted_grams *= r;
                c.avoided_grams = c.avoided_grams.map(|a| a * r);
                status.estimated_emissions_grams = status.estimated_emissions_grams.map(|g| g * r);
                status.estimated_avoided_grams = status.estimated_avoided_grams.map(|g| g * r);
            }
            None => {
                if let Some(intensity) = status.actual_intensity {
                    c.emitted_grams = kwh * intensity;
                    status.estimated_emissions_grams = Some(kwh * intensity);
                }
            }
        }
        status.estimated_energy_kwh = Some(kwh);
        status.energy_source = Some(SOURCE_KEPLER.to_string());
    }
    if let (Some(v), Some(figures)) = (decision.verified.as_mut(), status.verified.as_mut())
        && figures.energy_kwh > 0.0
    {
        let r = kwh / figures.energy_kwh;
        v.emitted_grams *= r;
        v.avoided_grams = v.avoided_grams.map(|a| a * r);
        figures.energy_kwh = kwh;
        figures.emissions_grams *= r;
        figures.counterfactual_grams *= r;
        figures.avoided_grams *= r;
    }
}

/// Asks Prometheus at `base` for the energy of the workload `name` of `kind` in `namespace` over
/// `runs`, kWh; `None` when Kepler has no series of its pods (or there is no run).
pub async fn fetch(
    client: &reqwest::Client,
    base: &str,
    namespace: &str,
    kind: &str,
    name: &str,
    runs: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<Option<f64>, KeplerError> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let pattern = pod_pattern(kind, name);
    let mut joules = None;
    for run in runs {
        let (promql, at) = query(namespace, &pattern, *run);
        let params: BTreeMap<&str, String> = [
            ("query", promql),
            (
                "time",
                format!("{:.3}", at.timestamp_millis() as f64 / 1000.0),
            ),
        ]
        .into();
        let unreachable = |reason: String| KeplerError::Unreachable {
            url: url.clone(),
            reason,
        };
        let response = client
            .get(&url)
            .query(&params)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // The query API answers errors with 400/422/503 and a JSON body that says why.
        let parsed = parse(&body);
        if !status.is_success() && parsed.is_ok() {
            return Err(unreachable(format!("HTTP {status}")));
        }
        if let Some(j) = parsed? {
            *joules.get_or_insert(0.0) += j;
        }
    }
    Ok(joules.map(|j| j / JOULES_PER_KWH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Completion;
    use crate::units::parse_timestamp;

    fn t(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap_or_default()
    }

    #[test]
    fn the_query_names_the_namespace_the_pods_and_the_run() {
        let (q, at) = query(
            "ml",
            &pod_pattern("Job", "train.v2"),
            (t("2026-12-07T10:00:00Z"), t("2026-12-07T11:30:00Z")),
        );
        assert_eq!(
            q,
            r#"sum(increase(kepler_container_joules_total{container_namespace="ml",pod_name=~"train\\.v2-([0-9]+-)?[a-z0-9]{5}"}[5400s]))"#
        );
        assert_eq!(at, t("2026-12-07T11:30:00Z"));
        assert_eq!(pod_pattern("JobSet", "big"), "big-.+");
    }

    #[test]
    fn answers_good_empty_partial_and_garbage() {
        let good = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1765101000.0,"7200000"]}]}}"#;
        assert_eq!(parse(good), Ok(Some(7_200_000.0)));
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod_name":"a"},"value":[1,"1.5"]},{"metric":{"pod_name":"b"},"value":[1,"2.5"]}]}}"#;
        assert_eq!(parse(two), Ok(Some(4.0)));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse(empty), Ok(None));
        let refused =
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        assert_eq!(
            parse(refused),
            Err(KeplerError::Refused(
                "bad_data: parse error at char 5".into()
            ))
        );
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse(matrix), Err(KeplerError::NotVector("matrix".into())));
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert_eq!(parse(nan), Err(KeplerError::BadValue("NaN".into())));
        assert!(matches!(
            parse("<html>502</html>"),
            Err(KeplerError::NotJson(_))
        ));
    }

    #[test]
    fn measured_energy_rescales_the_figures_and_says_so() {
        let mut d = Decision {
            status: Some(CarbonWorkloadStatus {
                estimated_energy_kwh: Some(2.0),
                estimated_emissions_grams: Some(200.0),
                estimated_avoided_grams: Some(100.0),
                actual_intensity: Some(100.0),
                ..CarbonWorkloadStatus::default()
            }),
            completion: Some(Completion {
                emitted_grams: 200.0,
                avoided_grams: Some(100.0),
            }),
            ..Decision::default()
        };
        apply(&mut d, 3.0);
        let s = d.status.clone().unwrap_or_default();
        assert_eq!(s.estimated_energy_kwh, Some(3.0));
        assert_eq!(s.estimated_emissions_grams, Some(300.0));
        assert_eq!(s.estimated_avoided_grams, Some(150.0));
        assert_eq!(s.energy_source.as_deref(), Some(SOURCE_KEPLER));
        assert_eq!(
            d.completion,
            Some(Completion {
                emitted_grams: 300.0,
                avoided_grams: Some(150.0)
            })
        );
        // 0 W declared: the measured energy at the realised intensity.
        let mut zero = d.clone();
        if let Some(s) = zero.status.as_mut() {
            s.estimated_energy_kwh = Some(0.0);
        }
        apply(&mut zero, 0.5);
        assert_eq!(zero.completion.map(|c| c.emitted_grams), Some(50.0));
        assert_eq!(declared_source("annotation"), SOURCE_DECLARED);
        assert_eq!(declared_source("estimated"), SOURCE_ESTIMATED);
    }
}
