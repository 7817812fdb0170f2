//! Measured energy on the real control plane: an operator with `--prometheus-url` pointing at a
//! local stand-in of the Prometheus query API (127.0.0.1, answering Kepler's
//! `kepler_container_joules_total` as 1 kW for the Job's pods) records a finished Job's energy
//! from it (`status.energySource: kepler`), its emissions at the realised intensity, and the
//! ledger adds that energy; the query names the Job's namespace and pods and its run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use carbonshift::api::Phase;
use carbonshift::api::annotations::RUN_NOW;

use crate::harness::{self, LEAD, Scenario};
use crate::operator::OperatorOptions;

type Seen = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// The stand-in's power: 1000 J for every second of the asked range.
const WATTS: f64 = 1000.0;

/// Serves `/api/v1/query` on 127.0.0.1: `WATTS` × the range's seconds.
async fn prometheus() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            get(
                |State(seen): State<Seen>, Query(q): Query<BTreeMap<String, String>>| async move {
                    seen.lock().unwrap().push(q.clone());
                    let query = q.get("query").cloned().unwrap_or_default();
                    let seconds: f64 = query
                        .rsplit_once('[')
                        .and_then(|(_, r)| r.split_once("s]"))
                        .and_then(|(n, _)| n.parse().ok())
                        .unwrap_or(0.0);
                    let time = q.get("time").cloned().unwrap_or_default();
                    format!(
                        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{time},"{}"]}}]}}}}"#,
                        seconds * WATTS
                    )
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the Prometheus stand-in");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[test]
fn a_finished_jobs_energy_is_measured_by_kepler_through_prometheus() {
    harness::run("kepler", kepler);
}

async fn kepler(s: Scenario) {
    let (url, seen) = prometheus().await;
    let operator = s
        .start_operator(OperatorOptions {
            extra: vec![format!("--prometheus-url={url}")],
            ..OperatorOptions::default()
        })
        .await;
    s.register_webhook(&operator).await;
    s.create_clean_window_forecast(harness::ahead(LEAD)).await;
    s.wait_forecast_ready().await;

    let job = "train";
    s.create_job(
        s.job(job)
            .annotation(RUN_NOW, "true")
            .gpus(1)
            .run_for(3)
            .build(),
    )
    .await;
    s.wait_job_complete(job, Duration::from_secs(90)).await;
    let status = s
        .wait_phase(job, Phase::Succeeded, Duration::from_secs(90))
        .await;
    assert_eq!(
        status.energy_source.as_deref(),
        Some("kepler"),
        "{status:?}"
    );
    let queries = seen.lock().unwrap().clone();
    let q = queries.last().expect("the operator asked the stand-in");
    let (Some(start), Some(end)) = (status.started_at, status.finished_at) else {
        panic!("no run recorded: {status:?}")
    };
    let seconds = (end - start).num_seconds().max(1);
    assert_eq!(
        q["query"],
        format!(
            r#"sum(increase(kepler_container_joules_total{{container_namespace="{}",pod_name=~"train-([0-9]+-)?[a-z0-9]{{5}}"}}[{seconds}s]))"#,
            s.ns
        )
    );
    assert_eq!(
        q["time"],
        format!("{:.3}", end.timestamp_millis() as f64 / 1000.0)
    );
    let kwh = seconds as f64 * WATTS / 3.6e6;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-12);
    let energy = status.estimated_energy_kwh.unwrap_or(f64::NAN);
    assert!(close(energy, kwh), "{energy} vs {kwh}");
    let intensity = status.actual_intensity.unwrap_or(f64::NAN);
    let grams = status.estimated_emissions_grams.unwrap_or(f64::NAN);
    assert!(
        close(grams, kwh * intensity),
        "{grams} vs {kwh} × {intensity}"
    );
    let ledger = s.ledgers().get(&s.ns).await.expect("read the CarbonLedger");
    let total = ledger
        .status
        .and_then(|st| st.total)
        .expect("ledger totals");
    assert!(close(total.energy_kwh, kwh), "{total:?}");
    s.say(format!(
        "Kepler through the stand-in: {seconds} s at {WATTS} W = {kwh:.6} kWh, {grams:.4} g at {intensity} g/kWh; energySource kepler, in the ledger"
    ));
    drop(operator);
}
