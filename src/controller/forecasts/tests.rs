//! The CarbonForecast reconciler against the mock API server, with static and trace providers
//! (no network) and a local provider server on 127.0.0.1 for the HTTP providers and failures.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::TimeDelta;
use serde_json::{Value, json};

use super::*;
use crate::api::forecast::{
    ConfigMapKeyRef, ElectricityMaps, SecretRef, StaticPoints, Trace, UkCarbonIntensity,
};
use crate::controller::ForecastStore;
use crate::controller::fixtures::{
    Expect, FORECASTS_PATH, Reply, Route, Seen, TestEnv, config_map, points, secret, t,
};
use crate::forecast::status::Backoff;

const NOW: &str = "2026-11-28T15:47:00Z";
const TOKEN: &str = "em-token-Zq8s1";
const EM_FORECAST: &[u8] = include_bytes!("../../../tests/fixtures/providers/em-forecast.json");

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The status the last apply in `seen` wrote.
fn applied(seen: &[Seen]) -> CarbonForecastStatus {
    let body = seen
        .iter()
        .rev()
        .find(|s| s.method == http::Method::PATCH && s.path.ends_with("/status"))
        .and_then(|s| s.at("/status"))
        .cloned()
        .unwrap_or_else(|| panic!("no status apply in {seen:?}"));
    serde_json::from_value(body).unwrap_or_else(|e| panic!("{e}"))
}

/// Reconciles `object` once and returns the action, with the requests it made checked against
/// the expectations queued on `env.api`; also returns the object as the API server now has it.
async fn reconcile_once(
    env: &TestEnv,
    this: &Arc<ForecastController>,
    object: &CarbonForecast,
) -> (Result<Action, Error>, CarbonForecast) {
    let result = reconcile(Arc::new(object.clone()), this.clone()).await;
    let seen = env.api.seen();
    env.api.verify();
    let mut after = object.clone();
    if seen.iter().any(|s| s.path.ends_with("/status")) {
        after.status = Some(applied(&seen));
    }
    (result, after)
}

fn requeue(result: &Result<Action, Error>) -> Action {
    match result {
        Ok(action) => action.clone(),
        Err(e) => panic!("reconcile failed: {e}"),
    }
}

fn ready(object: &CarbonForecast) -> (String, String) {
    let c = object
        .status
        .as_ref()
        .and_then(status::ready_condition)
        .unwrap_or_else(|| panic!("no Ready condition"));
    (c.status.clone(), c.reason.clone())
}

fn metric_lines(ctx: &Context) -> String {
    ctx.metrics.encode()
}

/// A local provider server: the UK national endpoint (generated around the requested slot, or
/// HTTP 500 while `failing`) and the Electricity Maps forecast (needs the token).
struct ProviderServer {
    base: String,
    failing: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ServerState {
    failing: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

async fn uk_national(State(state): State<ServerState>, Path(from): Path<String>) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let Some(start) = crate::units::parse_timestamp(&from) else {
        return (StatusCode::BAD_REQUEST, "bad from").into_response();
    };
    let data: Vec<Value> = (0..96)
        .map(|i: i64| {
            let from = start + TimeDelta::minutes(30 * i);
            json!({
                "from": from.format("%Y-%m-%dT%H:%MZ").to_string(),
                "to": (from + TimeDelta::minutes(30)).format("%Y-%m-%dT%H:%MZ").to_string(),
                "intensity": {"forecast": 100 + (i * 37) % 200, "actual": null, "index": "moderate"}
            })
        })
        .collect();
    axum::Json(json!({ "data": data })).into_response()
}

async fn em_forecast(State(state): State<ServerState>, headers: HeaderMap) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("auth-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, "no").into_response();
    }
    ([("content-type", "application/json")], EM_FORECAST.to_vec()).into_response()
}

impl ProviderServer {
    async fn start() -> Self {
        let state = ServerState {
            failing: Arc::new(AtomicBool::new(false)),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/intensity/{from}/fw48h", get(uk_national))
            .route("/v3/carbon-intensity/forecast", get(em_forecast))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"))
            .port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            failing: state.failing,
            requests: state.requests,
        }
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn uk(server: &ProviderServer) -> CarbonForecast {
    CarbonForecast::test("uk")
        .provider(ProviderSpec::UkCarbonIntensity(UkCarbonIntensity::default()))
        .spec_with(|s| s.base_url = Some(server.base.clone()))
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

#[tokio::test]
async fn a_first_refresh_writes_the_status_once_and_an_idle_reconcile_writes_nothing() {
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let object = CarbonForecast::test("uk");
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/provider", json!("static"))
            .body("/status/region", json!("static"))
            .body("/status/currentIntensity", json!(300.0))
            .body(
                "/status/points/3",
                json!({"start": "2026-11-28T18:00:00Z", "intensity": 250.0}),
            )
            .body("/status/horizonEnd", json!("2026-11-28T19:00:00Z"))
            .body("/status/lowestIntensity", json!(100.0))
            .body("/status/lowestAt", json!("2026-11-28T17:00:00Z"))
            .body("/status/lastRefreshTime", json!("2026-11-28T15:47:00Z"))
            .body("/status/observedGeneration", json!(1))
            .body("/status/lastError", Value::Null)
            .body("/status/conditions/0/type", json!("Ready"))
            .body("/status/conditions/0/status", json!("True"))
            .body("/status/conditions/0/reason", json!("Refreshed")),
    );
    env.api.expect(
        Expect::event("Refreshed")
            .regarding("uk")
            .kind("Normal")
            .body(
                "/note",
                json!("4 points from static (static) up to 2026-11-28T19:00:00Z"),
            )
            .body("/reportingController", json!("carbonshift"))
            .body("/reportingInstance", json!("carbonshift-test")),
    );
    let (result, object) = reconcile_once(&env, &this, &object).await;
    assert_eq!(
        requeue(&result),
        Action::requeue(Duration::from_secs(30 * 60))
    );
    let status = object.status.clone().unwrap_or_default();
    assert_eq!(status.points.len(), 4);

    // Five minutes later nothing is due: no request at all, and the next look is at the refresh.
    env.advance(TimeDelta::minutes(5));
    let (result, _) = reconcile_once(&env, &this, &object).await;
    assert_eq!(
        requeue(&result),
        Action::requeue(Duration::from_secs(25 * 60))
    );

    let metrics = metric_lines(&env.ctx);
    for line in [
        "carbonshift_forecast_refreshes_total{provider=\"static\",result=\"success\"} 1",
        "carbonshift_forecast_refresh_duration_seconds_count{provider=\"static\"} 1",
        "carbonshift_reconcile_duration_seconds_count{controller=\"forecasts\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
}

#[tokio::test]
async fn failures_keep_the_last_points_turn_stale_once_and_recover() {
    let server = ProviderServer::start().await;
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());

    // 15:47: a good refresh from 15:30, half-hourly, 48 h.
    let object = uk(&server);
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/provider", json!("ukCarbonIntensity"))
            .body("/status/region", json!("national"))
            .body("/status/currentIntensity", json!(100.0))
            .body("/status/points/0/start", json!("2026-11-28T15:30:00Z")),
    );
    env.api.expect(Expect::event("Refreshed").kind("Normal"));
    let (_, object) = reconcile_once(&env, &this, &object).await;
    let good = object.status.clone().unwrap_or_default();
    assert_eq!(good.points.len(), 96);
    assert_eq!(server.requests(), 1);

    // 16:17: the provider fails. The points stay; lastError says why; Ready stays True.
    server.fail(true);
    env.advance(TimeDelta::minutes(30));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/lastError", json!(format!(
                "UK Carbon Intensity API failed with HTTP 500 after 1 attempt(s): the service is having trouble; check its status page or the base URL {}/intensity/2026-11-28T16:00Z/fw48h",
                server.base
            )))
            .body("/status/lastRefreshTime", json!("2026-11-28T15:47:00Z"))
            .body("/status/conditions/0/status", json!("True")),
    );
    env.api.expect(
        Expect::event("RefreshFailed")
            .kind("Warning")
            .regarding("uk"),
    );
    let (result, object) = reconcile_once(&env, &this, &object).await;
    assert_eq!(requeue(&result), Action::requeue(Duration::from_secs(60)));
    let failed = object.status.clone().unwrap_or_default();
    assert_eq!(failed.points, good.points, "the last good points are kept");
    assert_eq!(failed.current_intensity, good.current_intensity);
    assert_eq!(this.backoff("uk").map(|b| b.failures), Some(1));

    // Before the retry time nothing happens.
    env.advance(TimeDelta::seconds(30));
    let (result, _) = reconcile_once(&env, &this, &object).await;
    assert_eq!(requeue(&result), Action::requeue(Duration::from_secs(30)));
    assert_eq!(server.requests(), 2);

    // 18:47, three hours after the last success, still failing: Stale, with its Event once.
    env.clock.set(t("2026-11-28T18:47:00Z"));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/conditions/0/status", json!("False"))
            .body("/status/conditions/0/reason", json!("Stale"))
            .body("/status/points/95/start", json!("2026-11-30T15:00:00Z")),
    );
    env.api
        .expect(Expect::event("RefreshFailed").kind("Warning"));
    env.api
        .expect(Expect::event("Stale").kind("Warning").regarding("uk"));
    let (_, object) = reconcile_once(&env, &this, &object).await;
    assert_eq!(ready(&object), ("False".into(), "Stale".into()));
    assert_eq!(object.status.as_ref().map(|s| s.points.len()), Some(96));

    // Another failed attempt while stale: an Event for the attempt, no status write, no second
    // Stale.
    env.advance(TimeDelta::minutes(5));
    env.api
        .expect(Expect::event("RefreshFailed").kind("Warning"));
    let (_, object) = reconcile_once(&env, &this, &object).await;

    // The provider is back: Ready again, lastError gone (server-side apply drops the field), and
    // a Recovered Event.
    server.fail(false);
    env.advance(TimeDelta::hours(1));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/lastError", Value::Null)
            .body("/status/lastRefreshTime", json!("2026-11-28T19:52:00Z"))
            // The UK API is asked from the half-hour containing now.
            .body("/status/points/0/start", json!("2026-11-28T19:30:00Z"))
            .body("/status/conditions/0/status", json!("True"))
            .body("/status/conditions/0/reason", json!("Refreshed")),
    );
    env.api
        .expect(Expect::event("Recovered").kind("Normal").regarding("uk"));
    let (result, object) = reconcile_once(&env, &this, &object).await;
    assert_eq!(
        requeue(&result),
        Action::requeue(Duration::from_secs(30 * 60))
    );
    assert_eq!(ready(&object), ("True".into(), "Refreshed".into()));
    assert_eq!(this.backoff("uk"), None);

    let metrics = metric_lines(&env.ctx);
    for line in [
        "carbonshift_forecast_refreshes_total{provider=\"ukCarbonIntensity\",result=\"success\"} 2",
        "carbonshift_forecast_refreshes_total{provider=\"ukCarbonIntensity\",result=\"server_error\"} 3",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
}

#[tokio::test]
async fn stale_comes_on_time_without_a_refresh_attempt() {
    // A static forecast refreshed at 15:47 with staleAfter 1h and refreshInterval 2h: the
    // controller requeues itself for 16:47 and turns the forecast Stale then, without fetching.
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let object = CarbonForecast::test("uk").spec_with(|s| {
        s.stale_after = Some("1h".into());
        s.refresh_interval = Some("2h".into());
    });
    env.api.expect(Expect::apply_status(&object));
    env.api.expect(Expect::event("Refreshed"));
    let (result, object) = reconcile_once(&env, &this, &object).await;
    assert_eq!(requeue(&result), Action::requeue(Duration::from_secs(3600)));
    env.advance(TimeDelta::hours(1));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/conditions/0/reason", json!("Stale"))
            .body("/status/lastRefreshTime", json!("2026-11-28T15:47:00Z")),
    );
    env.api.expect(Expect::event("Stale").kind("Warning"));
    let (result, object) = reconcile_once(&env, &this, &object).await;
    assert_eq!(requeue(&result), Action::requeue(Duration::from_secs(3600)));
    // Reconciling again at the same time changes nothing.
    let (_, _) = reconcile_once(&env, &this, &object).await;
}

#[tokio::test]
async fn a_spec_change_refreshes_at_once() {
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let object = CarbonForecast::test("uk");
    env.api.expect(Expect::apply_status(&object));
    env.api.expect(Expect::event("Refreshed"));
    let (_, object) = reconcile_once(&env, &this, &object).await;

    // Two minutes later the user edits the points: generation 2 is refreshed at once.
    env.advance(TimeDelta::minutes(2));
    let edited = object
        .clone()
        .generation(2)
        .provider(ProviderSpec::Static(StaticPoints {
            points: points(t("2026-11-28T15:00Z"), TimeDelta::hours(1), &[90.0, 80.0]),
            actuals: Vec::new(),
        }));
    env.api.expect(
        Expect::apply_status(&edited)
            .body("/status/observedGeneration", json!(2))
            .body("/status/conditions/0/observedGeneration", json!(2))
            .body("/status/currentIntensity", json!(90.0))
            .body("/status/lastRefreshTime", json!("2026-11-28T15:49:00Z")),
    );
    env.api.expect(Expect::event("Refreshed"));
    let (_, edited) = reconcile_once(&env, &this, &edited).await;
    assert_eq!(edited.status.map(|s| s.points.len()), Some(2));
}

#[tokio::test]
async fn the_store_is_filled_from_status_before_any_refresh() {
    let env = TestEnv::new(t(NOW));
    // An object refreshed ten minutes ago by a previous leader.
    let mut status = CarbonForecastStatus {
        provider: Some("static".into()),
        region: Some("static".into()),
        points: points(t("2026-11-28T15:00Z"), TimeDelta::hours(1), &[300.0, 200.0]),
        horizon_end: Some(t("2026-11-28T17:00Z")),
        last_refresh_time: Some(t("2026-11-28T15:37:00Z")),
        observed_generation: Some(1),
        ..CarbonForecastStatus::default()
    };
    crate::api::condition::upsert(
        &mut status.conditions,
        crate::api::Condition::new(
            "Ready",
            true,
            "Refreshed",
            "",
            Some(1),
            t("2026-11-28T15:37:00Z"),
        ),
    );
    let object = CarbonForecast::test("uk").with_status(Some(status));
    env.api.route(Route::list(
        FORECASTS_PATH,
        "CarbonForecastList",
        vec![object.to_json()],
    ));
    let store = ForecastStore::fill_from_api(env.ctx.client.clone(), &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let snapshot = store
        .get("uk")
        .unwrap_or_else(|| panic!("not in the store"));
    assert!(snapshot.is_fresh(t(NOW)));
    assert_eq!(snapshot.intensity_at(t(NOW)), Some(300.0));
    env.api.verify();
    // The controller then finds nothing due: not a single request.
    let this = ForecastController::new(env.ctx.clone());
    let (result, _) = reconcile_once(&env, &this, &object).await;
    assert_eq!(
        requeue(&result),
        Action::requeue(Duration::from_secs(20 * 60))
    );
}

#[tokio::test]
async fn ten_days_of_five_minute_points_are_cut_to_a_week() {
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let values: Vec<f64> = (0..2880).map(|i| f64::from(i % 400)).collect();
    let object = CarbonForecast::test("wt").provider(ProviderSpec::Static(StaticPoints {
        points: points(t("2026-11-28T15:45Z"), TimeDelta::minutes(5), &values),
        actuals: Vec::new(),
    }));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/points/0/start", json!("2026-11-28T15:45:00Z"))
            .body("/status/horizonEnd", json!("2026-12-05T15:45:00Z")),
    );
    env.api.expect(Expect::event("Refreshed"));
    let (_, object) = reconcile_once(&env, &this, &object).await;
    let status = object.status.unwrap_or_default();
    assert_eq!(status.points.len(), 2016);
    assert!(
        status
            .points
            .iter()
            .all(|p| p.start < t(NOW) + TimeDelta::days(7))
    );
    // Far below the API server's object size limit (1.5 MiB).
    let bytes = serde_json::to_vec(&status)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    assert!(bytes < 256 * 1024, "{bytes} bytes");
}

#[tokio::test]
async fn credentials_come_from_the_secret_and_never_show() {
    let server = ProviderServer::start().await;
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let secret_path = "/api/v1/namespaces/carbonshift/secrets/em-token";
    let object = CarbonForecast::test("de")
        .provider(ProviderSpec::ElectricityMaps(ElectricityMaps {
            zone: "DE".into(),
        }))
        .spec_with(|s| {
            s.credentials_secret_ref = Some(SecretRef {
                name: "em-token".into(),
            });
            s.base_url = Some(server.base.clone());
        });

    // No Secret yet.
    env.api
        .expect(Expect::get(secret_path).reply(Reply::Error(404, "NotFound")));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/provider", json!("electricityMaps"))
            .body("/status/conditions/0/status", json!("False"))
            .body("/status/conditions/0/reason", json!("MissingCredentials"))
            .body("/status/lastError", json!("Secret carbonshift/em-token (spec.credentialsSecretRef) does not exist; create it in the operator namespace with key token (Electricity Maps) or keys username and password (WattTime)")),
    );
    env.api
        .expect(Expect::event("MissingCredentials").kind("Warning"));
    let (result, object) = reconcile_once(&env, &this, &object).await;
    assert_eq!(
        requeue(&result),
        Action::requeue(Duration::from_secs(5 * 60))
    );

    // The Secret exists but lacks the key: still MissingCredentials, with the provider's message.
    env.advance(TimeDelta::minutes(5));
    env.api.expect(Expect::get(secret_path).reply(Reply::Json(
        200,
        secret("carbonshift", "em-token", &[("username", "x")]),
    )));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/conditions/0/reason", json!("MissingCredentials"))
            .body_present("/status/lastError"),
    );
    env.api.expect(Expect::event("MissingCredentials"));
    let (_, object) = reconcile_once(&env, &this, &object).await;
    let message = object
        .status
        .as_ref()
        .and_then(|s| s.last_error.clone())
        .unwrap_or_default();
    assert!(
        message.contains("em-token") && message.contains("token"),
        "{message}"
    );

    // Fixed: the token reaches the provider (which checks it) and appears nowhere in writes.
    env.advance(TimeDelta::minutes(5));
    env.api.expect(Expect::get(secret_path).reply(Reply::Json(
        200,
        secret(
            "carbonshift",
            "em-token",
            &[("token", &format!("{TOKEN}\n"))],
        ),
    )));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/region", json!("DE"))
            .body("/status/conditions/0/reason", json!("Refreshed"))
            // The first point starts at 16:00: nothing covers 15:57, so no current value.
            .body("/status/currentIntensity", Value::Null)
            .body("/status/points/0/intensity", json!(412.0))
            .body("/status/lowestIntensity", json!(277.0)),
    );
    env.api.expect(Expect::event("Recovered").kind("Normal"));
    let result = reconcile(Arc::new(object.clone()), this.clone()).await;
    let seen = env.api.seen();
    env.api.verify();
    requeue(&result);
    assert_eq!(server.requests(), 1);
    for write in seen.iter().filter(|s| s.method != http::Method::GET) {
        let text = write
            .body
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
        assert!(
            !text.contains(TOKEN),
            "the token leaked into {}",
            write.path
        );
    }
    assert_eq!(applied(&seen).current_intensity, None, "never invented");
}

#[tokio::test]
async fn traces_come_from_a_config_map() {
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let path = "/api/v1/namespaces/carbonshift/configmaps/traces";
    let object = CarbonForecast::test("replay").provider(ProviderSpec::Trace(Trace {
        config_map_ref: Some(ConfigMapKeyRef {
            name: "traces".into(),
            key: Some("gb.csv".into()),
        }),
        ..Trace::default()
    }));
    env.api.expect(Expect::get(path).reply(Reply::Json(
        200,
        config_map("carbonshift", "traces", &[("other.csv", "x")]),
    )));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/provider", json!("trace"))
            .body("/status/conditions/0/reason", json!("InvalidSpec"))
            .body("/status/lastError", json!("ConfigMap carbonshift/traces has no key gb.csv (spec.provider.trace.configMapRef.key)")),
    );
    env.api.expect(Expect::event("InvalidSpec").kind("Warning"));
    let (_, object) = reconcile_once(&env, &this, &object).await;

    // Two days of hourly values, hour of day as the value.
    let mut csv = String::from("time,intensity\n");
    for h in 0..48 {
        csv.push_str(&format!(
            "{},{}\n",
            (t("2023-01-02T00:00Z") + TimeDelta::hours(h)).format("%Y-%m-%dT%H:%MZ"),
            h % 24
        ));
    }
    env.advance(TimeDelta::minutes(5));
    env.api.expect(Expect::get(path).reply(Reply::Json(
        200,
        config_map("carbonshift", "traces", &[("gb.csv", &csv)]),
    )));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/region", json!("ConfigMap traces/gb.csv"))
            .body("/status/currentIntensity", json!(15.0))
            .body("/status/conditions/0/reason", json!("Refreshed")),
    );
    env.api.expect(Expect::event("Recovered"));
    let (_, _) = reconcile_once(&env, &this, &object).await;
}

#[tokio::test]
async fn an_unknown_builtin_trace_is_an_invalid_spec() {
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let object = CarbonForecast::test("mars").provider(ProviderSpec::Trace(Trace {
        builtin: Some("mars-2020".into()),
        ..Trace::default()
    }));
    env.api.expect(
        Expect::apply_status(&object)
            .body("/status/conditions/0/reason", json!("InvalidSpec"))
            .body("/status/lastError", json!("unknown built-in trace \"mars-2020\"; available: gb-2020, de-2020, fr-2020, caiso-north-2023-06")),
    );
    env.api.expect(Expect::event("InvalidSpec"));
    let (_, object) = reconcile_once(&env, &this, &object).await;
    // Rechecked after five minutes, with no new status or Event when nothing changed.
    assert_eq!(
        this.backoff("mars").map(|b| b.not_before),
        Some(t(NOW) + TimeDelta::minutes(5))
    );
    env.advance(TimeDelta::minutes(5));
    let (_, _) = reconcile_once(&env, &this, &object).await;
    let metrics = metric_lines(&env.ctx);
    assert!(
        metrics.contains(
            "carbonshift_forecast_refreshes_total{provider=\"trace\",result=\"config\"} 2"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn api_errors_fail_the_reconcile_and_back_off() {
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let object = Arc::new(CarbonForecast::test("uk"));
    // The status write fails: the reconcile fails, the error policy backs off exponentially.
    for _ in 0..3 {
        env.api
            .expect(Expect::apply_status(&*object).reply(Reply::Error(500, "InternalError")));
    }
    let mut delays = Vec::new();
    for _ in 0..3 {
        let result = reconcile(object.clone(), this.clone()).await;
        let error = result.err().unwrap_or_else(|| panic!("the write failed"));
        assert_eq!(error.category(), "server");
        assert!(
            error
                .to_string()
                .starts_with("writing the status of CarbonForecast uk: "),
            "{error}"
        );
        delays.push(error_policy(object.clone(), &error, this.clone()));
    }
    env.api.verify();
    assert_eq!(
        delays,
        [5, 10, 20].map(|s| Action::requeue(Duration::from_secs(s)))
    );
    let metrics = metric_lines(&env.ctx);
    assert!(
        metrics.contains(
            "carbonshift_reconcile_errors_total{controller=\"forecasts\",category=\"server\"} 3"
        ),
        "{metrics}"
    );
    // An object without a name waits for a change.
    let mut nameless = CarbonForecast::test("x");
    nameless.metadata.name = None;
    let nameless = Arc::new(nameless);
    let error = reconcile(nameless.clone(), this.clone())
        .await
        .err()
        .unwrap_or_else(|| panic!("must fail"));
    assert_eq!(error.category(), "invalid");
    assert_eq!(
        error_policy(nameless, &error, this.clone()),
        Action::await_change()
    );
}

#[tokio::test]
async fn a_failed_event_does_not_fail_the_reconcile() {
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let object = CarbonForecast::test("uk");
    env.api.expect(Expect::apply_status(&object));
    env.api
        .expect(Expect::event("Refreshed").reply(Reply::Error(403, "Forbidden")));
    let (result, _) = reconcile_once(&env, &this, &object).await;
    requeue(&result);
    assert!(metric_lines(&env.ctx).contains(
        "carbonshift_reconcile_errors_total{controller=\"forecasts\",category=\"event\"} 1"
    ));
}

#[test]
fn api_retry_delays_double_up_to_five_minutes() {
    let delays: Vec<u64> = (1..=8).map(|n| api_retry_delay(n).as_secs()).collect();
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(api_retry_delay(u32::MAX), API_RETRY_MAX);
}

#[test]
fn missing_credentials_are_told_apart_from_bad_specs() {
    let creds = |token: Option<&str>, user: Option<&str>, password: Option<&str>| Credentials {
        token: token.map(String::from),
        username: user.map(String::from),
        password: password.map(String::from),
        source: CredentialSource::Unspecified,
    };
    let em = CarbonForecast::test("x")
        .provider(ProviderSpec::ElectricityMaps(ElectricityMaps {
            zone: "DE".into(),
        }))
        .spec;
    assert!(lacks_credentials(&em, &creds(None, None, None)));
    assert!(lacks_credentials(&em, &creds(Some("  "), None, None)));
    assert!(!lacks_credentials(&em, &creds(Some("t"), None, None)));
    let wt = CarbonForecast::test("x")
        .provider(ProviderSpec::WattTime(crate::api::forecast::WattTime {
            region: "CAISO_NORTH".into(),
            signal_type: None,
        }))
        .spec;
    assert!(lacks_credentials(&wt, &creds(None, Some("u"), None)));
    assert!(!lacks_credentials(&wt, &creds(None, Some("u"), Some("p"))));
    let st = CarbonForecast::test("x").spec;
    assert!(!lacks_credentials(&st, &creds(None, None, None)));
}

#[test]
fn gauges_report_what_exists_and_go_with_the_object() {
    let metrics = Metrics::new();
    let object = CarbonForecast::test("uk").with_status(Some(CarbonForecastStatus {
        points: points(t("2026-11-28T15:00Z"), TimeDelta::hours(1), &[300.0, 200.0]),
        horizon_end: Some(t("2026-11-28T17:00Z")),
        last_refresh_time: Some(t("2026-11-28T15:37:00Z")),
        conditions: vec![crate::api::Condition::new(
            "Ready",
            true,
            "Refreshed",
            "",
            Some(1),
            t(NOW),
        )],
        ..CarbonForecastStatus::default()
    }));
    let snapshot = ForecastSnapshot::from_object(&object).unwrap_or_else(|e| panic!("{e}"));
    set_gauges(&metrics, &snapshot, t(NOW));
    let text = metrics.encode();
    for line in [
        "carbonshift_forecast_ready{forecast=\"uk\"} 1",
        "carbonshift_forecast_age_seconds{forecast=\"uk\"} 600.0",
        "carbonshift_forecast_intensity{forecast=\"uk\"} 300.0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // After the horizon there is no current value: the series goes rather than lie.
    set_gauges(&metrics, &snapshot, t("2026-11-28T17:00Z"));
    let text = metrics.encode();
    assert!(!text.contains("carbonshift_forecast_intensity{"), "{text}");
    assert!(
        text.contains("carbonshift_forecast_age_seconds{forecast=\"uk\"} 4980.0"),
        "{text}"
    );
    remove_gauges(&metrics, "uk");
    let text = metrics.encode();
    assert!(!text.contains("forecast=\"uk\""), "{text}");
}

#[tokio::test]
async fn run_reconciles_feeds_the_store_and_stops_on_shutdown() {
    let env = TestEnv::new(t(NOW));
    // "uk" has never been refreshed; "de" arrives through the watch with a fresh status.
    let uk = CarbonForecast::test("uk");
    let mut de_status = CarbonForecastStatus {
        points: points(t("2026-11-28T15:00Z"), TimeDelta::hours(1), &[120.0, 90.0]),
        horizon_end: Some(t("2026-11-28T17:00Z")),
        last_refresh_time: Some(t("2026-11-28T15:46:00Z")),
        observed_generation: Some(1),
        ..CarbonForecastStatus::default()
    };
    de_status.conditions.push(crate::api::Condition::new(
        "Ready",
        true,
        "Refreshed",
        "",
        Some(1),
        t("2026-11-28T15:46:00Z"),
    ));
    let de = CarbonForecast::test("de").with_status(Some(de_status));
    env.api.route(Route::list(
        FORECASTS_PATH,
        "CarbonForecastList",
        vec![uk.to_json()],
    ));
    env.api.route(
        Route::new(
            http::Method::GET,
            FORECASTS_PATH,
            Reply::Lines(vec![json!({"type": "ADDED", "object": de.to_json()})]),
        )
        .watching()
        .times(2),
    );
    env.api.route(Route::watch(FORECASTS_PATH));
    env.api
        .expect(Expect::apply_status(&uk).body("/status/currentIntensity", json!(300.0)));
    env.api.expect(Expect::event("Refreshed").regarding("uk"));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run(env.ctx.clone(), async move {
        let _ = stopped.await;
    }));
    let store = env.ctx.store.clone();
    let api = env.api.clone();
    let ctx = env.ctx.clone();
    env.api
        .wait_until(move || {
            let text = metric_lines(&ctx);
            store.get("de").is_some_and(|s| s.is_fresh(t(NOW)))
                && api.writes().iter().any(|s| s.path.contains("/events"))
                && text.contains("carbonshift_forecast_intensity{forecast=\"de\"} 120.0")
                && text.contains("carbonshift_forecast_ready{forecast=\"uk\"} 0")
        })
        .await;
    let _ = stop.send(());
    running.await.unwrap_or_else(|e| panic!("{e}"));
    env.api.verify();
    assert_eq!(env.ctx.store.names(), ["de", "uk"]);
    let text = metric_lines(&env.ctx);
    assert!(
        !text.contains("{forecast="),
        "series left after stopping:\n{text}"
    );
}

#[tokio::test]
async fn backoff_state_is_per_object_and_forgotten_on_delete() {
    let env = TestEnv::new(t(NOW));
    let this = ForecastController::new(env.ctx.clone());
    let b = Backoff {
        generation: Some(1),
        failures: 2,
        not_before: t(NOW),
    };
    this.set_backoff("uk", Some(b));
    assert_eq!(this.backoff("uk"), Some(b));
    assert_eq!(this.backoff("de"), None);
    this.forget("uk");
    assert_eq!(this.backoff("uk"), None);
}
