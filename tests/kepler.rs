//! Measured energy from Kepler, against a local stand-in of the Prometheus query API bound to
//! 127.0.0.1 (`GET /api/v1/query?query=...&time=...`, answering the way Prometheus does): the
//! query names the namespace, the Job's pods and each run, is evaluated at the run's end, and the
//! joules of every run add up; an empty vector, a refused query and garbage are told apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use carbonshift::kepler::{self, KeplerError};
use chrono::{DateTime, TimeDelta, Utc};

type Seen = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// What the stand-in answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 3.6 MJ per hour of run (1 kWh an hour): `value` = seconds of the `[Ns]` range × 1000 J.
    PerRun,
    Empty,
    Refused,
    Garbage,
}

async fn serve(answer: Answer) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            get(
                move |State(seen): State<Seen>, Query(q): Query<BTreeMap<String, String>>| async move {
                    seen.lock().unwrap().push(q.clone());
                    let query = q.get("query").cloned().unwrap_or_default();
                    match answer {
                        Answer::PerRun => {
                            let seconds: f64 = query
                                .rsplit_once('[')
                                .and_then(|(_, r)| r.split_once("s]"))
                                .and_then(|(n, _)| n.parse().ok())
                                .unwrap_or(0.0);
                            let time = q.get("time").cloned().unwrap_or_default();
                            (
                                StatusCode::OK,
                                format!(
                                    r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{time},"{}"]}}]}}}}"#,
                                    seconds * 1000.0
                                ),
                            )
                        }
                        Answer::Empty => (
                            StatusCode::OK,
                            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
                                .to_string(),
                        ),
                        Answer::Refused => (
                            StatusCode::BAD_REQUEST,
                            r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected character"}"#
                                .to_string(),
                        ),
                        Answer::Garbage => (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>".to_string()),
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/"), seen)
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[tokio::test]
async fn the_energy_of_every_run_is_asked_for_at_its_end_and_added_up() {
    let (url, seen) = serve(Answer::PerRun).await;
    carbonshift::forecast::install_crypto_provider();
    let client = reqwest::Client::new();
    let start = t("2026-12-07T10:00:00Z");
    let runs = [
        (start, start + TimeDelta::minutes(30)),
        (start + TimeDelta::hours(2), start + TimeDelta::hours(3)),
    ];
    let kwh = kepler::fetch(&client, &url, "ml", "Job", "train", &runs)
        .await
        .unwrap()
        .unwrap();
    // 1800 s and 3600 s at 1000 J/s: 5.4 MJ = 1.5 kWh.
    assert!((kwh - 1.5).abs() < 1e-12, "{kwh}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0]["query"],
        r#"sum(increase(kepler_container_joules_total{container_namespace="ml",pod_name=~"train-([0-9]+-)?[a-z0-9]{5}"}[1800s]))"#
    );
    assert_eq!(seen[0]["time"], format!("{}.000", runs[0].1.timestamp()));
    assert!(seen[1]["query"].ends_with("[3600s]))"));
    assert_eq!(seen[1]["time"], format!("{}.000", runs[1].1.timestamp()));
}

#[tokio::test]
async fn no_series_a_refused_query_and_garbage_are_told_apart() {
    carbonshift::forecast::install_crypto_provider();
    let client = reqwest::Client::new();
    let start = t("2026-12-07T10:00:00Z");
    let runs = [(start, start + TimeDelta::minutes(10))];
    let (url, _) = serve(Answer::Empty).await;
    assert_eq!(
        kepler::fetch(&client, &url, "ml", "Job", "train", &runs).await,
        Ok(None)
    );
    let (url, _) = serve(Answer::Refused).await;
    assert_eq!(
        kepler::fetch(&client, &url, "ml", "Job", "train", &runs).await,
        Err(KeplerError::Refused(
            "bad_data: 1:5: parse error: unexpected character".into()
        ))
    );
    let (url, _) = serve(Answer::Garbage).await;
    let error = kepler::fetch(&client, &url, "ml", "Job", "train", &runs)
        .await
        .unwrap_err();
    assert!(matches!(error, KeplerError::NotJson(_)), "{error:?}");
    assert!(
        error.to_string().contains("expected the query API's JSON"),
        "{error}"
    );
    // Nothing listens: unreachable, naming the URL.
    let error = kepler::fetch(&client, "http://127.0.0.1:9", "ml", "Job", "train", &runs)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, KeplerError::Unreachable { url, .. } if url == "http://127.0.0.1:9/api/v1/query"),
        "{error:?}"
    );
}
