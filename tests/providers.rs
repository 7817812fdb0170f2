//! Forecast provider clients against a local HTTP server on 127.0.0.1 serving the documented
//! payloads and scripted failures, and `carbonshift forecast` through the real binary.
//!
//! Every test starts its own server; the server records each request (path, query, headers) so
//! that retries, logins and credentials can be counted and checked. Retry delays are configured in
//! milliseconds so the suite stays fast; nothing asserts on elapsed time.

use std::process::{Command, Output};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};

use carbonshift::api::forecast::{
    CarbonAwareSdk, ConfigMapKeyRef, ElectricityMaps, IntensityPoint, SecretRef, StaticPoints,
    Trace, UkCarbonIntensity, WattTime,
};
use carbonshift::api::{CarbonForecastSpec, ProviderSpec};
use carbonshift::forecast::{
    self, ClientOptions, CredentialSource, Credentials, ForecastData, Provider, ProviderError,
    RetryPolicy, Shared,
};

const UK_NATIONAL: &[u8] = include_bytes!("fixtures/providers/uk-national-fw48h.json");
const UK_REGIONAL: &[u8] = include_bytes!("fixtures/providers/uk-regional-fw48h.json");
const EM_FORECAST: &[u8] = include_bytes!("fixtures/providers/em-forecast.json");
const WT_FORECAST: &[u8] = include_bytes!("fixtures/providers/wt-forecast.json");
const CASDK_FORECAST: &[u8] = include_bytes!("fixtures/providers/casdk-forecast.json");

const TOKEN: &str = "em-token-Zq8s1";
const USERNAME: &str = "wt-alice";
const PASSWORD: &str = "wt-pass-Hx93k";

// ---------------------------------------------------------------------------------------------
// The local server.

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: String,
    headers: HeaderMap,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Reply {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

impl Reply {
    fn ok(body: &[u8]) -> Self {
        Self::status(200, body)
    }

    fn status(status: u16, body: &[u8]) -> Self {
        Self {
            status,
            body: body.to_vec(),
            headers: vec![("content-type", "application/json".into())],
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn slow(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Decides the answer from the request and how many earlier requests had the same path.
type Script = Box<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

struct Mock {
    seen: Mutex<Vec<Seen>>,
    script: Script,
}

struct Server {
    base: String,
    mock: Arc<Mock>,
}

impl Server {
    async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let mock = Arc::new(Mock {
            seen: Mutex::new(Vec::new()),
            script: Box::new(script),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"))
            .port();
        let app = Router::new().fallback(handle).with_state(mock.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            mock,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.mock
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

async fn handle(State(mock): State<Arc<Mock>>, request: Request) -> Response {
    let seen = Seen {
        path: request.uri().path().to_string(),
        query: request.uri().query().unwrap_or_default().to_string(),
        headers: request.headers().clone(),
    };
    let nth = {
        let mut all = mock.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let nth = all.iter().filter(|s| s.path == seen.path).count();
        all.push(seen.clone());
        nth
    };
    let reply = (mock.script)(&seen, nth);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from(reply.body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A port on 127.0.0.1 with nothing listening.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(9);
    drop(listener);
    port
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn t(s: &str) -> DateTime<Utc> {
    carbonshift::units::parse_timestamp(s).unwrap_or_else(|| panic!("bad literal {s}"))
}

fn now() -> DateTime<Utc> {
    t("2026-11-28T15:47:13Z")
}

fn options(max_attempts: u32) -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_millis(1500),
        connect_timeout: Duration::from_millis(1000),
        retry: RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(10),
            max_retry_after: Duration::from_secs(2),
        },
        ..ClientOptions::default()
    }
}

fn shared(max_attempts: u32) -> Shared {
    Shared::new(options(max_attempts)).unwrap_or_else(|e| panic!("{e}"))
}

fn spec(provider: ProviderSpec, base_url: Option<&str>) -> CarbonForecastSpec {
    CarbonForecastSpec {
        provider,
        credentials_secret_ref: Some(SecretRef {
            name: "provider-creds".into(),
        }),
        refresh_interval: None,
        stale_after: None,
        base_url: base_url.map(String::from),
        capacity: None,
        placement: None,
    }
}

fn credentials() -> Credentials {
    Credentials {
        token: Some(format!("{TOKEN}\n")),
        username: Some(USERNAME.into()),
        password: Some(PASSWORD.into()),
        source: CredentialSource::Unspecified,
    }
}

fn build(spec: &CarbonForecastSpec, shared: &Shared) -> Box<dyn Provider> {
    forecast::build(spec, credentials(), None, shared).unwrap_or_else(|e| panic!("{e}"))
}

fn uk(base: &str, region_id: Option<u8>, postcode: Option<&str>) -> CarbonForecastSpec {
    spec(
        ProviderSpec::UkCarbonIntensity(UkCarbonIntensity {
            region_id,
            postcode: postcode.map(String::from),
        }),
        Some(base),
    )
}

fn em(base: &str) -> CarbonForecastSpec {
    spec(
        ProviderSpec::ElectricityMaps(ElectricityMaps { zone: "DE".into() }),
        Some(base),
    )
}

fn wt(base: &str) -> CarbonForecastSpec {
    spec(
        ProviderSpec::WattTime(WattTime {
            region: "CAISO_NORTH".into(),
            signal_type: None,
        }),
        Some(base),
    )
}

fn casdk(url: &str) -> CarbonForecastSpec {
    spec(
        ProviderSpec::CarbonAwareSdk(CarbonAwareSdk {
            url: url.into(),
            location: "eastus".into(),
        }),
        None,
    )
}

fn values(data: &ForecastData) -> Vec<f64> {
    data.points.iter().map(|p| p.intensity).collect()
}

/// The error, after checking that neither it nor its Debug form holds a credential.
fn failure(result: Result<ForecastData, ProviderError>) -> ProviderError {
    match result {
        Ok(data) => panic!("expected an error, got {data:?}"),
        Err(e) => {
            for shown in [e.to_string(), format!("{e:?}")] {
                for secret in [TOKEN, PASSWORD, "tok-1", "tok-2"] {
                    assert!(!shown.contains(secret), "{shown} leaks {secret}");
                }
            }
            e
        }
    }
}

fn base64(input: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = input.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// UK Carbon Intensity API.

#[tokio::test]
async fn uk_national_happy_path_keeps_actuals() {
    let server = Server::start(|_, _| Reply::ok(UK_NATIONAL)).await;
    let provider = build(&uk(&server.base, None, None), &shared(3));
    assert_eq!(provider.kind(), "ukCarbonIntensity");
    let data = provider
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.region, "national");
    assert_eq!(
        values(&data),
        [212.0, 225.0, 231.0, 198.0, 160.0, 121.0, 88.0, 64.0]
    );
    assert_eq!(data.actuals.len(), 1);
    assert_eq!(data.actuals[0].intensity, 208.0);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/intensity/2026-11-28T15:30Z/fw48h");
    assert_eq!(seen[0].header("accept"), Some("application/json"));
    assert!(
        seen[0]
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("carbonshift/")),
        "{:?}",
        seen[0].header("user-agent")
    );
}

#[tokio::test]
async fn uk_region_and_postcode_use_the_regional_endpoints() {
    let server = Server::start(|_, _| Reply::ok(UK_REGIONAL)).await;
    let s = shared(3);
    let data = build(&uk(&server.base, Some(13), None), &s)
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.region, "London");
    assert_eq!(values(&data), [240.0, 251.0, 137.0]);
    assert!(data.actuals.is_empty());
    build(&uk(&server.base, None, Some("sw1a")), &s)
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/regional/intensity/2026-11-28T15:30Z/fw48h/regionid/13",
            "/regional/intensity/2026-11-28T15:30Z/fw48h/postcode/SW1A"
        ]
    );
}

#[tokio::test]
async fn uk_500_then_success_is_retried() {
    let server = Server::start(|_, nth| match nth {
        0 => Reply::status(500, b"oops"),
        _ => Reply::ok(UK_NATIONAL),
    })
    .await;
    let data = build(&uk(&server.base, None, None), &shared(3))
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.points.len(), 8);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn uk_unknown_region_is_not_found_and_not_retried() {
    let server = Server::start(|_, _| Reply::status(404, b"{}")).await;
    let e = failure(
        build(&uk(&server.base, Some(13), None), &shared(3))
            .fetch(now())
            .await,
    );
    assert_eq!(e.category(), "not_found");
    assert_eq!(
        e.to_string(),
        "UK Carbon Intensity API does not know this resource (HTTP 404): check the region id 13 (1-17) and the base URL"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn uk_regional_pitfall_body_on_national_endpoint_is_malformed() {
    let server = Server::start(|_, _| Reply::ok(UK_REGIONAL)).await;
    let e = failure(
        build(&uk(&server.base, None, None), &shared(3))
            .fetch(now())
            .await,
    );
    assert_eq!(e.category(), "malformed");
    assert!(
        e.to_string()
            .contains("invalid type: map, expected a sequence"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Electricity Maps.

#[tokio::test]
async fn electricity_maps_happy_path_sends_the_token_header() {
    let server = Server::start(|_, _| Reply::ok(EM_FORECAST)).await;
    let s = shared(3);
    for base in [server.base.clone(), format!("{}/v3/", server.base)] {
        let provider = build(&em(&base), &s);
        assert_eq!(provider.kind(), "electricityMaps");
        let data = provider
            .fetch(now())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.region, "DE");
        assert_eq!(values(&data), [412.0, 398.0, 356.0, 301.0, 277.0, 289.0]);
        assert_eq!(data.generated_at, Some(t("2026-11-28T15:42:10.317Z")));
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.path, "/v3/carbon-intensity/forecast");
        assert_eq!(request.query, "zone=DE");
        // Trimmed: the Secret value had a trailing newline.
        assert_eq!(request.header("auth-token"), Some(TOKEN));
    }
}

#[tokio::test]
async fn electricity_maps_401_says_check_the_token_in_the_secret() {
    let server =
        Server::start(|_, _| Reply::status(401, format!("bad token {TOKEN}").as_bytes())).await;
    let e = failure(build(&em(&server.base), &shared(3)).fetch(now()).await);
    assert_eq!(e.category(), "unauthorized");
    assert_eq!(
        e.to_string(),
        "Electricity Maps refused the credentials (HTTP 401): check the `token` key of Secret provider-creds"
    );
    assert_eq!(server.seen().len(), 1, "401 is not retried");
}

#[tokio::test]
async fn electricity_maps_403_on_forecast_falls_back_to_latest() {
    let server = Server::start(|seen, _| match seen.path.as_str() {
        "/v3/carbon-intensity/latest" => Reply::ok(
            br#"{"zone":"DE","carbonIntensity":402,"datetime":"2026-11-28T15:00:00.000Z","updatedAt":"2026-11-28T15:31:02.000Z","emissionFactorType":"lifecycle","isEstimated":false}"#,
        ),
        _ => Reply::status(403, br#"{"error":"not in plan"}"#),
    })
    .await;
    let data = build(&em(&server.base), &shared(3))
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        data.region,
        "DE (latest value only: the plan has no forecasts)"
    );
    assert_eq!(data.points.len(), 1);
    assert_eq!(data.points[0].start, t("2026-11-28T15:00Z"));
    assert_eq!(data.points[0].intensity, 402.0);
    assert_eq!(server.count("/v3/carbon-intensity/forecast"), 1);
    assert_eq!(server.count("/v3/carbon-intensity/latest"), 1);
}

#[tokio::test]
async fn electricity_maps_403_everywhere_is_forbidden() {
    let server = Server::start(|_, _| Reply::status(403, b"{}")).await;
    let e = failure(build(&em(&server.base), &shared(3)).fetch(now()).await);
    assert_eq!(e.category(), "forbidden");
    assert_eq!(
        e.to_string(),
        "Electricity Maps refused the request (HTTP 403): the token is valid but its plan does not include `latest` for zone DE; check the zone and the plan"
    );
}

#[tokio::test]
async fn electricity_maps_429_with_retry_after_then_success() {
    let server = Server::start(|_, nth| match nth {
        0 => Reply::status(429, b"slow down").header("retry-after", "1"),
        _ => Reply::ok(EM_FORECAST),
    })
    .await;
    let data = build(&em(&server.base), &shared(3))
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.points.len(), 6);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn electricity_maps_retry_after_beyond_the_cap_gives_up_at_once() {
    let server = Server::start(|_, _| Reply::status(429, b"").header("retry-after", "600")).await;
    let e = failure(build(&em(&server.base), &shared(4)).fetch(now()).await);
    assert_eq!(
        e,
        ProviderError::RateLimited {
            provider: "Electricity Maps",
            attempts: 1,
            retry_after: Some(Duration::from_secs(600)),
        }
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(600)));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn electricity_maps_429_on_every_attempt_is_rate_limited() {
    let server = Server::start(|_, _| Reply::status(429, b"")).await;
    let e = failure(build(&em(&server.base), &shared(3)).fetch(now()).await);
    assert_eq!(
        e,
        ProviderError::RateLimited {
            provider: "Electricity Maps",
            attempts: 3,
            retry_after: None,
        }
    );
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn electricity_maps_5xx_on_every_attempt_is_a_server_error() {
    let server = Server::start(|_, nth| Reply::status(if nth == 0 { 502 } else { 503 }, b"")).await;
    let e = failure(build(&em(&server.base), &shared(3)).fetch(now()).await);
    assert_eq!(e.category(), "server_error");
    assert_eq!(
        e.to_string(),
        format!(
            "Electricity Maps failed with HTTP 503 after 3 attempt(s): the service is having trouble; check its status page or the base URL {}/v3/carbon-intensity/forecast",
            server.base
        )
    );
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server = Server::start(|_, _| Reply::ok(EM_FORECAST).slow(Duration::from_secs(30))).await;
    let s = Shared::new(ClientOptions {
        timeout: Duration::from_millis(150),
        ..options(2)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let e = failure(build(&em(&server.base), &s).fetch(now()).await);
    assert_eq!(e.category(), "timeout");
    assert_eq!(
        e,
        ProviderError::Timeout {
            provider: "Electricity Maps",
            timeout: Duration::from_millis(150),
            attempts: 2,
            url: format!("{}/v3/carbon-intensity/forecast", server.base),
        }
    );
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let port = closed_port().await;
    let e = failure(
        build(&em(&format!("http://127.0.0.1:{port}")), &shared(2))
            .fetch(now())
            .await,
    );
    assert_eq!(e.category(), "connect");
    let message = e.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot reach Electricity Maps at http://127.0.0.1:{port}/v3/carbon-intensity/forecast (2 attempt(s)): "
        )),
        "{message}"
    );
    assert!(
        message.ends_with("check the base URL, DNS and network egress (NetworkPolicy, proxy)"),
        "{message}"
    );
}

#[tokio::test]
async fn bad_payloads_are_precise_errors_never_panics() {
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            EM_FORECAST[..EM_FORECAST.len() / 2].to_vec(),
            "malformed",
            "EOF while parsing",
        ),
        (b"<html>gateway</html>".to_vec(), "malformed", "expected value"),
        (
            br#"{"zone":"DE","forecast":[{"carbonIntensity":"high","datetime":"2026-11-28T16:00Z"}]}"#.to_vec(),
            "malformed",
            "invalid type: string \"high\", expected f64",
        ),
        (
            br#"{"zone":"DE","forecast":{"carbonIntensity":1}}"#.to_vec(),
            "malformed",
            "invalid type: map, expected a sequence",
        ),
        (
            br#"{"zone":"DE","forecast":[]}"#.to_vec(),
            "invalid_data",
            "points has no points",
        ),
        (
            br#"{"zone":"DE","forecast":[{"carbonIntensity":1,"datetime":"2026-11-28T17:00Z"},{"carbonIntensity":2,"datetime":"2026-11-28T16:00Z"}]}"#.to_vec(),
            "invalid_data",
            "points[1] starts at 2026-11-28T16:00:00Z, before the point before it (2026-11-28T17:00:00Z); points must be in time order",
        ),
        (
            br#"{"zone":"DE","forecast":[{"carbonIntensity":1,"datetime":"2026-11-28T16:00Z"},{"carbonIntensity":2,"datetime":"2026-11-28T16:00:00+00:00"}]}"#.to_vec(),
            "invalid_data",
            "points[1] starts at 2026-11-28T16:00:00Z, like the point before it; timestamps must be unique",
        ),
        (
            br#"{"zone":"DE","forecast":[{"carbonIntensity":-12,"datetime":"2026-11-28T16:00Z"}]}"#.to_vec(),
            "invalid_data",
            "points[0] at 2026-11-28T16:00:00Z: intensity -12 is outside 0..=5000 gCO2eq/kWh",
        ),
        (
            br#"{"zone":"DE","forecast":[{"carbonIntensity":99999,"datetime":"2026-11-28T16:00Z"}]}"#.to_vec(),
            "invalid_data",
            "points[0] at 2026-11-28T16:00:00Z: intensity 99999 is outside 0..=5000 gCO2eq/kWh",
        ),
    ];
    for (body, category, fragment) in cases {
        let body = Arc::new(body);
        let served = body.clone();
        let server = Server::start(move |_, _| Reply::ok(&served)).await;
        let e = failure(build(&em(&server.base), &shared(3)).fetch(now()).await);
        assert_eq!(e.category(), category, "{e}");
        assert!(e.to_string().contains(fragment), "{e} lacks {fragment:?}");
        assert_eq!(server.seen().len(), 1, "bad data is not retried");
    }
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let server = Server::start(|_, _| Reply::ok(&vec![b' '; 4096])).await;
    let s = Shared::new(ClientOptions {
        max_body_bytes: 1024,
        ..options(3)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let e = failure(build(&em(&server.base), &s).fetch(now()).await);
    assert_eq!(
        e,
        ProviderError::Malformed {
            provider: "Electricity Maps",
            detail: "the answer is larger than 1024 bytes".into(),
        }
    );
}

#[tokio::test]
async fn the_token_never_follows_a_redirect_to_another_host() {
    let elsewhere = Server::start(|_, _| Reply::ok(EM_FORECAST)).await;
    let target = format!("{}/steal", elsewhere.base.replace("127.0.0.1", "localhost"));
    let server =
        Server::start(move |_, _| Reply::status(307, b"").header("location", &target)).await;
    let e = failure(build(&em(&server.base), &shared(3)).fetch(now()).await);
    assert_eq!(e.category(), "rejected");
    assert!(e.to_string().contains("HTTP 307"), "{e}");
    assert!(elsewhere.seen().is_empty());
}

// ---------------------------------------------------------------------------------------------
// WattTime.

/// A WattTime stand-in: `/login` checks Basic auth and hands out `tok-1`, `tok-2`, ...; the
/// forecast accepts only the latest token, and only while `valid` is set.
struct WattTimeServer {
    server: Server,
    valid: Arc<Mutex<bool>>,
}

impl WattTimeServer {
    async fn start() -> Self {
        let valid = Arc::new(Mutex::new(true));
        let logins = Arc::new(Mutex::new(0usize));
        let v = valid.clone();
        let expected = format!("Basic {}", base64(&format!("{USERNAME}:{PASSWORD}")));
        let server = Server::start(move |seen, _| match seen.path.as_str() {
            "/login" => {
                if seen.header("authorization") != Some(expected.as_str()) {
                    return Reply::status(401, b"{}");
                }
                let mut n = logins.lock().unwrap_or_else(PoisonError::into_inner);
                *n += 1;
                *v.lock().unwrap_or_else(PoisonError::into_inner) = true;
                Reply::ok(format!(r#"{{"token":"tok-{n}"}}"#).as_bytes())
            }
            "/v3/forecast" | "/v3/historical" => {
                let n = *logins.lock().unwrap_or_else(PoisonError::into_inner);
                let still_valid = *v.lock().unwrap_or_else(PoisonError::into_inner);
                let current = format!("Bearer tok-{n}");
                if still_valid && seen.header("authorization") == Some(current.as_str()) {
                    // `historical` answers in the forecast's shape.
                    Reply::ok(if seen.path == "/v3/historical" {
                        WT_HISTORICAL
                    } else {
                        WT_FORECAST
                    })
                } else {
                    Reply::status(401, b"{\"error\":\"token expired\"}")
                }
            }
            _ => Reply::status(404, b""),
        })
        .await;
        Self { server, valid }
    }

    fn expire(&self) {
        *self.valid.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }
}

#[tokio::test]
async fn watttime_happy_path_logs_in_and_converts_units() {
    let wt_server = WattTimeServer::start().await;
    let provider = build(&wt(&wt_server.server.base), &shared(3));
    assert_eq!(provider.kind(), "wattTime");
    let data = provider
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.region, "CAISO_NORTH");
    assert_eq!(data.generated_at, Some(t("2026-11-28T15:55:00Z")));
    let rounded: Vec<f64> = data
        .points
        .iter()
        .map(|p| (p.intensity * 100.0).round() / 100.0)
        .collect();
    // lbs/MWh × 0.45359237 = g/kWh.
    assert_eq!(rounded, [413.86, 410.55, 395.49, 290.3, 282.5, 297.24]);
    let seen = wt_server.server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/login");
    assert_eq!(seen[1].path, "/v3/forecast");
    assert_eq!(
        seen[1].query,
        "region=CAISO_NORTH&signal_type=co2_moer&horizon_hours=72"
    );
    assert_eq!(seen[1].header("authorization"), Some("Bearer tok-1"));
}

#[tokio::test]
async fn watttime_token_is_shared_per_credential() {
    let wt_server = WattTimeServer::start().await;
    let s = shared(3);
    let a = build(&wt(&wt_server.server.base), &s);
    let b = build(
        &spec(
            ProviderSpec::WattTime(WattTime {
                region: "CAISO_NORTH".into(),
                signal_type: Some("co2_moer".into()),
            }),
            Some(&format!("{}/v3", wt_server.server.base)),
        ),
        &s,
    );
    // Concurrent first fetches still log in once.
    let (ra, rb) = tokio::join!(a.fetch(now()), b.fetch(now()));
    ra.unwrap_or_else(|e| panic!("{e}"));
    rb.unwrap_or_else(|e| panic!("{e}"));
    a.fetch(now()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wt_server.server.count("/login"), 1);
    assert_eq!(wt_server.server.count("/v3/forecast"), 3);
    // Another Shared (another operator process) has its own cache.
    build(&wt(&wt_server.server.base), &shared(3))
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wt_server.server.count("/login"), 2);
}

#[tokio::test]
async fn watttime_token_expiry_mid_run_logs_in_again_once() {
    let wt_server = WattTimeServer::start().await;
    let s = shared(3);
    let a = build(&wt(&wt_server.server.base), &s);
    let b = build(&wt(&wt_server.server.base), &s);
    a.fetch(now()).await.unwrap_or_else(|e| panic!("{e}"));
    wt_server.expire();
    a.fetch(now()).await.unwrap_or_else(|e| panic!("{e}"));
    // b shares the renewed token: no further login.
    b.fetch(now()).await.unwrap_or_else(|e| panic!("{e}"));
    let auth: Vec<(String, Option<String>)> = wt_server
        .server
        .seen()
        .into_iter()
        .map(|s| {
            let auth = s.header("authorization").map(|a| {
                if a.starts_with("Basic ") {
                    "Basic".to_string()
                } else {
                    a.to_string()
                }
            });
            (s.path, auth)
        })
        .collect();
    let expected: Vec<(String, Option<String>)> = [
        ("/login", "Basic"),
        ("/v3/forecast", "Bearer tok-1"),
        ("/v3/forecast", "Bearer tok-1"),
        ("/login", "Basic"),
        ("/v3/forecast", "Bearer tok-2"),
        ("/v3/forecast", "Bearer tok-2"),
    ]
    .into_iter()
    .map(|(p, a)| (p.to_string(), Some(a.to_string())))
    .collect();
    assert_eq!(auth, expected);
}

#[tokio::test]
async fn watttime_wrong_password_says_check_the_secret_keys() {
    let wt_server = WattTimeServer::start().await;
    let mut creds = credentials();
    creds.password = Some("wrong".into());
    let provider = forecast::build(&wt(&wt_server.server.base), creds, None, &shared(3))
        .unwrap_or_else(|e| panic!("{e}"));
    let e = failure(provider.fetch(now()).await);
    assert_eq!(
        e.to_string(),
        "WattTime refused the credentials (HTTP 401): check the `username` and `password` keys of Secret provider-creds"
    );
    assert_eq!(wt_server.server.count("/login"), 1);
    assert_eq!(wt_server.server.count("/v3/forecast"), 0);
}

#[tokio::test]
async fn watttime_refused_after_a_fresh_login_is_unauthorized_and_forgets_the_token() {
    // The login works but the forecast always says 401 (say, the account lost access).
    let server = Server::start(|seen, nth| match seen.path.as_str() {
        "/login" => Reply::ok(format!(r#"{{"token":"tok-{}"}}"#, nth + 1).as_bytes()),
        _ => Reply::status(401, b""),
    })
    .await;
    let provider = build(&wt(&server.base), &shared(3));
    let e = failure(provider.fetch(now()).await);
    assert_eq!(e.category(), "unauthorized");
    assert_eq!(server.count("/login"), 2);
    assert_eq!(server.count("/v3/forecast"), 2);
    // The next refresh starts with a new login rather than the known-bad token.
    let _ = provider.fetch(now()).await;
    assert_eq!(server.seen()[4].path, "/login");
}

#[tokio::test]
async fn watttime_login_rate_limit_is_retried() {
    let server = Server::start(|seen, nth| match (seen.path.as_str(), nth) {
        ("/login", 0) => Reply::status(429, b"").header("retry-after", "0"),
        ("/login", _) => Reply::ok(br#"{"token":"tok-1"}"#),
        _ => Reply::ok(WT_FORECAST),
    })
    .await;
    build(&wt(&server.base), &shared(3))
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.count("/login"), 2);
}

#[tokio::test]
async fn watttime_region_not_in_plan_is_forbidden() {
    let server = Server::start(|seen, _| match seen.path.as_str() {
        "/login" => Reply::ok(br#"{"token":"tok-1"}"#),
        _ => Reply::status(403, b"{}"),
    })
    .await;
    let e = failure(build(&wt(&server.base), &shared(3)).fetch(now()).await);
    assert_eq!(
        e.to_string(),
        "WattTime refused the request (HTTP 403): the account cannot read region CAISO_NORTH with signal_type co2_moer (free accounts see CAISO_NORTH only); check the region and the plan"
    );
}

// ---------------------------------------------------------------------------------------------
// Carbon Aware SDK.

#[tokio::test]
async fn carbon_aware_sdk_happy_path() {
    let server = Server::start(|_, _| Reply::ok(CASDK_FORECAST)).await;
    let provider = build(&casdk(&server.base), &shared(3));
    assert_eq!(provider.kind(), "carbonAwareSdk");
    let data = provider
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.region, "eastus");
    assert_eq!(values(&data), [355.2, 349.8, 341.0, 301.7, 301.7]);
    let seen = server.seen();
    assert_eq!(seen[0].path, "/emissions/forecasts/current");
    assert_eq!(seen[0].query, "location=eastus");
}

#[tokio::test]
async fn carbon_aware_sdk_501_and_400_are_not_retried() {
    let server = Server::start(|_, nth| match nth {
        0 => Reply::status(501, b""),
        _ => Reply::status(
            400,
            br#"{"title":"One or more validation errors occurred.","status":400,"errors":{"location":["unknown location mars"]}}"#,
        ),
    })
    .await;
    let provider = build(&casdk(&server.base), &shared(3));
    let e = failure(provider.fetch(now()).await);
    assert_eq!(
        e.to_string(),
        "Carbon Aware SDK rejected the request (HTTP 501): check the location \"eastus\" and the SDK's data source configuration (HTTP 501: it cannot forecast)"
    );
    let e = failure(provider.fetch(now()).await);
    assert_eq!(e.category(), "rejected");
    assert!(
        e.to_string().contains(
            "(HTTP 400: {\"title\":\"One or more validation errors occurred.\",\"status\":400,\"errors\":{\"location\":[\"unknown location mars\"]}})"
        ),
        "{e}"
    );
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn carbon_aware_sdk_empty_list_is_invalid_data() {
    let server = Server::start(|_, _| Reply::ok(b"[]")).await;
    let e = failure(build(&casdk(&server.base), &shared(3)).fetch(now()).await);
    assert_eq!(
        e.to_string(),
        "Carbon Aware SDK returned unusable data: the answer is an empty list: the SDK has no forecast for this location"
    );
}

// ---------------------------------------------------------------------------------------------
// build(): static, trace, configuration errors.

#[tokio::test]
async fn static_and_trace_providers_need_no_network() {
    let s = shared(1);
    let points = vec![
        IntensityPoint {
            start: t("2026-11-28T16:00Z"),
            intensity: 120.0,
        },
        IntensityPoint {
            start: t("2026-11-28T18:00Z"),
            intensity: 80.0,
        },
    ];
    let provider = forecast::build(
        &spec(
            ProviderSpec::Static(StaticPoints {
                points,
                actuals: Vec::new(),
            }),
            None,
        ),
        Credentials::default(),
        None,
        &s,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(provider.kind(), "static");
    let data = provider
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(values(&data), [120.0, 80.0]);
    assert_eq!(data.region, "static");

    // One day of hourly values 0..23 from a ConfigMap, replayed at 15:47 → from 15:00, 49 points.
    let mut csv = String::from("time,ci\n");
    for h in 0..24 {
        csv.push_str(&format!("2023-01-02T{h:02}:00Z,{h}\n"));
    }
    let trace = Trace {
        config_map_ref: Some(ConfigMapKeyRef {
            name: "traces".into(),
            key: Some("gb.csv".into()),
        }),
        builtin: None,
        column: None,
    };
    let provider = forecast::build(
        &spec(ProviderSpec::Trace(trace), None),
        Credentials::default(),
        Some(csv),
        &s,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(provider.kind(), "trace");
    let data = provider
        .fetch(now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.region, "ConfigMap traces/gb.csv");
    assert_eq!(data.points.len(), 49);
    assert_eq!(data.points[0].start, t("2026-11-28T15:00Z"));
    assert_eq!(data.points[0].intensity, 15.0);
    assert_eq!(data.points[9].intensity, 0.0);
    assert_eq!(data.points[48].start, t("2026-11-30T15:00Z"));
}

#[test]
fn configuration_errors_say_what_to_set() {
    let s = shared(1);
    let err = |spec: &CarbonForecastSpec, creds: Credentials| {
        forecast::build(spec, creds, None, &s)
            .map(|p| format!("{p:?}"))
            .map_err(|e| (e.category(), e.to_string()))
    };
    let no_secret = |mut spec: CarbonForecastSpec| {
        spec.credentials_secret_ref = None;
        spec
    };
    let base = "http://127.0.0.1:9";
    assert_eq!(
        err(&em(base), Credentials::default()),
        Err((
            "config",
            "Electricity Maps needs an API token: Secret provider-creds has no non-empty key `token`".into()
        ))
    );
    assert_eq!(
        err(&no_secret(em(base)), Credentials::default()),
        Err((
            "config",
            "Electricity Maps needs an API token: set spec.credentialsSecretRef to a Secret with key `token`".into()
        ))
    );
    assert_eq!(
        err(
            &wt(base),
            Credentials {
                username: Some(USERNAME.into()),
                ..Credentials::default()
            }
        ),
        Err((
            "config",
            "WattTime needs a user name and password: Secret provider-creds has no non-empty keys `username` and `password`".into()
        ))
    );
    assert_eq!(
        err(&uk(base, Some(2), Some("SW1A")), Credentials::default()),
        Err((
            "config",
            "ukCarbonIntensity: set at most one of regionId and postcode".into()
        ))
    );
    assert!(
        err(&em("ftp://example.org"), credentials())
            .is_err_and(|(c, m)| c == "config" && m.contains("must use http or https"))
    );
    let static_bad = spec(
        ProviderSpec::Static(StaticPoints {
            points: vec![IntensityPoint {
                start: t("2026-11-28T16:00Z"),
                intensity: -1.0,
            }],
            actuals: Vec::new(),
        }),
        None,
    );
    assert_eq!(
        err(&static_bad, Credentials::default()),
        Err((
            "config",
            "spec.provider.static.points[0] at 2026-11-28T16:00:00Z: intensity -1 is outside 0..=5000 gCO2eq/kWh".into()
        ))
    );
    // Debug of a built provider never shows a credential.
    for spec in [em(base), wt(base)] {
        let shown = err(&spec, credentials()).unwrap_or_else(|e| panic!("{e:?}"));
        for secret in [TOKEN, PASSWORD, USERNAME] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
    assert_eq!(forecast::kind(&em(base).provider), "electricityMaps");
}

// ---------------------------------------------------------------------------------------------
// The `carbonshift forecast` command.

fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_carbonshift"));
    command.arg("forecast").args(args);
    for var in [
        "CARBONSHIFT_EM_TOKEN",
        "CARBONSHIFT_WATTTIME_USERNAME",
        "CARBONSHIFT_WATTTIME_PASSWORD",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run carbonshift: {e}"))
}

/// Runs the binary off the async runtime so that the test's server keeps serving.
async fn cli_async(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli(&args, &env)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn cli_static_points_as_json_and_table() {
    let out = cli(
        &[
            "--provider",
            "static",
            "--point",
            "2026-01-01T00:00Z=120",
            "--point",
            "2026-01-01T06:00Z=80",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json,
        serde_json::json!([
            {"start": "2026-01-01T00:00:00Z", "intensity": 120.0},
            {"start": "2026-01-01T06:00:00Z", "intensity": 80.0}
        ])
    );
    let out = cli(
        &["--provider", "static", "--point", "2026-01-01T00:00Z=120"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "provider static, region static, generated -\n\
         START (UTC)            INTENSITY (g/kWh)\n\
         2026-01-01T00:00:00Z               120.0\n\
         1 point(s) from 2026-01-01T00:00:00Z to 2026-01-01T00:00:00Z; lowest 120.0 g/kWh at 2026-01-01T00:00:00Z\n"
    );
}

#[test]
fn cli_static_and_trace_from_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("points.csv");
    std::fs::write(
        &path,
        "time,other,ci\n2026-01-01 00:00,1,50\n2026-01-01 12:00,2,40\n2026-01-02 00:00,3,30\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = path.to_string_lossy().into_owned();
    let out = cli(
        &[
            "--provider",
            "static",
            "--file",
            &file,
            "--column",
            "ci",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json[2],
        serde_json::json!({"start": "2026-01-02T00:00:00Z", "intensity": 30.0})
    );
    // The same file as a trace: 36 h span → a 1-day period; 12-hourly points from the 00:00 slot.
    let out = cli(
        &[
            "--provider",
            "trace",
            "--file",
            &file,
            "--column",
            "ci",
            "--now",
            "2026-03-04T05:06Z",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json,
        serde_json::json!([
            {"start": "2026-03-04T00:00:00Z", "intensity": 50.0},
            {"start": "2026-03-04T12:00:00Z", "intensity": 40.0},
            {"start": "2026-03-05T00:00:00Z", "intensity": 50.0},
            {"start": "2026-03-05T12:00:00Z", "intensity": 40.0},
            {"start": "2026-03-06T00:00:00Z", "intensity": 50.0}
        ])
    );
}

#[test]
fn cli_builtin_trace_lines_up_weekday_and_time_of_day() {
    // 2026-01-07 is a Wednesday; gb-2020 (55-week period) maps it to Wednesday 2020-09-30.
    let out = cli(
        &[
            "--provider",
            "trace",
            "--builtin",
            "gb-2020",
            "--now",
            "2026-01-07T10:15Z",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "provider trace, region gb-2020 (built-in trace), generated -"
    );
    assert_eq!(lines[2], "2026-01-07T10:00:00Z               243.0");
    assert_eq!(lines[98], "2026-01-09T10:00:00Z               215.4");
    assert_eq!(
        lines[99],
        "97 point(s) from 2026-01-07T10:00:00Z to 2026-01-09T10:00:00Z; lowest 174.0 g/kWh at 2026-01-09T02:30:00Z"
    );
}

#[test]
fn cli_bad_arguments_exit_2_with_one_line() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--provider", "electricitymaps"],
            "error: --provider electricitymaps needs --zone, such as --zone DE\n",
        ),
        (
            vec!["--provider", "uk", "--zone", "DE"],
            "error: --zone applies to --provider electricitymaps only\n",
        ),
        (
            vec!["--provider", "uk", "--region", "london"],
            "error: UK region \"london\": expected national, a region id 1-17 or postcode:<outward code> such as postcode:SW1A\n",
        ),
        (
            vec!["--provider", "electricitymaps", "--zone", "DE"],
            "error: Electricity Maps needs an API token: pass --token or set CARBONSHIFT_EM_TOKEN\n",
        ),
        (
            vec![
                "--provider",
                "trace",
                "--builtin",
                "gb-2020",
                "--base-url",
                "http://x",
            ],
            "error: --base-url applies to --provider uk or electricitymaps or watttime or carbon-aware-sdk only\n",
        ),
        (
            vec!["--provider", "static"],
            "error: --provider static needs --point TIME=VALUE (repeatable) or --file CSV\n",
        ),
        (
            vec!["--provider", "static", "--point", "2026-01-01T00:00Z=9000"],
            "error: points[0] at 2026-01-01T00:00:00Z: intensity 9000 is outside 0..=5000 gCO2eq/kWh\n",
        ),
        (
            vec![
                "--provider",
                "static",
                "--point",
                "2026-01-01T01:00Z=1",
                "--point",
                "2026-01-01T00:00Z=2",
            ],
            "error: points[1] starts at 2026-01-01T00:00:00Z, before the point before it (2026-01-01T01:00:00Z); points must be in time order\n",
        ),
        (
            vec!["--provider", "trace"],
            "error: --provider trace needs --builtin NAME (gb-2020, de-2020, fr-2020, caiso-north-2023-06) or --file CSV\n",
        ),
        (
            vec!["--provider", "trace", "--file", "/nonexistent/trace.csv"],
            "error: cannot read /nonexistent/trace.csv: No such file or directory (os error 2)\n",
        ),
    ];
    for (args, expected) in cases {
        let out = cli(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), expected, "{args:?}");
        assert!(out.stdout.is_empty());
    }
    // clap's own errors are exit 2 too.
    for args in [
        vec!["--provider", "mars"],
        vec!["--provider", "trace", "--builtin", "mars"],
        vec!["--provider", "static", "--point", "noon=5"],
        vec!["--provider", "uk", "--timeout", "0s"],
    ] {
        assert_eq!(cli(&args, &[]).status.code(), Some(2), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_uk_against_a_local_server() {
    let server = Server::start(|_, _| Reply::ok(UK_NATIONAL)).await;
    let out = cli_async(
        strings(&[
            "--provider",
            "uk",
            "--base-url",
            &server.base,
            "--now",
            "2026-11-28T15:47Z",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "provider ukCarbonIntensity, region national, generated -\n\
         START (UTC)            INTENSITY (g/kWh) ACTUAL (g/kWh)\n\
         2026-11-28T15:30:00Z               212.0          208.0\n\
         2026-11-28T16:00:00Z               225.0              -\n\
         2026-11-28T16:30:00Z               231.0              -\n\
         2026-11-28T17:00:00Z               198.0              -\n\
         2026-11-28T17:30:00Z               160.0              -\n\
         2026-11-28T18:00:00Z               121.0              -\n\
         2026-11-28T18:30:00Z                88.0              -\n\
         2026-11-28T19:00:00Z                64.0              -\n\
         8 point(s) from 2026-11-28T15:30:00Z to 2026-11-28T19:00:00Z; lowest 64.0 g/kWh at 2026-11-28T19:00:00Z\n"
    );
    assert_eq!(server.seen()[0].path, "/intensity/2026-11-28T15:30Z/fw48h");
    let out = cli_async(
        strings(&[
            "--provider",
            "uk",
            "--region",
            "13",
            "--base-url",
            &server.base,
            "--output",
            "json",
        ]),
        vec![],
    )
    .await;
    // The national body on the regional endpoint: the pitfall, reported in one line.
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        err,
        "error: UK Carbon Intensity API answered with something other than the documented JSON (`data` is a list of 8 entries; expected the region object): check that the base URL is the UK Carbon Intensity API endpoint\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_electricity_maps_token_from_the_environment() {
    let server = Server::start(|seen, _| {
        if seen.header("auth-token") == Some(TOKEN) {
            Reply::ok(EM_FORECAST)
        } else {
            Reply::status(401, b"")
        }
    })
    .await;
    let args = strings(&[
        "--provider",
        "electricitymaps",
        "--zone",
        "DE",
        "--base-url",
        &server.base,
        "--output",
        "json",
    ]);
    let out = cli_async(
        args.clone(),
        vec![("CARBONSHIFT_EM_TOKEN".into(), TOKEN.into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json.as_array().map(Vec::len), Some(6));
    assert_eq!(
        json[0],
        serde_json::json!({"start": "2026-11-28T16:00:00Z", "intensity": 412.0})
    );

    let out = cli_async(
        args,
        vec![("CARBONSHIFT_EM_TOKEN".into(), "wrong-token-value".into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: Electricity Maps refused the credentials (HTTP 401): check --token (or CARBONSHIFT_EM_TOKEN)\n"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watttime_and_carbon_aware_sdk() {
    let wt_server = WattTimeServer::start().await;
    let out = cli_async(
        strings(&[
            "--provider",
            "watttime",
            "--region",
            "CAISO_NORTH",
            "--base-url",
            &wt_server.server.base,
            "--output",
            "json",
        ]),
        vec![
            ("CARBONSHIFT_WATTTIME_USERNAME".into(), USERNAME.into()),
            ("CARBONSHIFT_WATTTIME_PASSWORD".into(), PASSWORD.into()),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json[3]["start"], "2026-11-28T16:15:00Z");
    assert_eq!(
        json[3]["intensity"]
            .as_f64()
            .map(|v| (v * 1e6).round() / 1e6),
        Some(290.299117)
    );

    let out = cli_async(
        strings(&[
            "--provider",
            "watttime",
            "--region",
            "CAISO_NORTH",
            "--base-url",
            &wt_server.server.base,
            "--username",
            USERNAME,
            "--password",
            "nope",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: WattTime refused the credentials (HTTP 401): check --username and --password (or CARBONSHIFT_WATTTIME_USERNAME and CARBONSHIFT_WATTTIME_PASSWORD)\n"
    );

    let sdk = Server::start(|_, _| Reply::ok(CASDK_FORECAST)).await;
    let out = cli_async(
        strings(&[
            "--provider",
            "carbon-aware-sdk",
            "--url",
            &sdk.base,
            "--location",
            "eastus",
            "--output",
            "json",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json[4],
        serde_json::json!({"start": "2026-11-28T16:20:00Z", "intensity": 301.7})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_provider_failures_exit_1_with_one_line() {
    let port = closed_port().await;
    let out = cli_async(
        strings(&[
            "--provider",
            "uk",
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
            "--retries",
            "0",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: cannot reach UK Carbon Intensity API at http://127.0.0.1:{port}/intensity/"
        )),
        "{err}"
    );
    let server = Server::start(|_, _| Reply::status(503, b"")).await;
    let out = cli_async(
        strings(&[
            "--provider",
            "uk",
            "--base-url",
            &server.base,
            "--retries",
            "1",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("error: UK Carbon Intensity API failed with HTTP 503 after 2 attempt(s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.seen().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Measured history (verified savings).

const UK_HISTORY: &[u8] = include_bytes!("fixtures/providers/uk-national-history.json");

#[tokio::test]
async fn uk_history_reads_the_national_actuals_and_leaves_out_unpublished_slots() {
    let server = Server::start(|_, _| Reply::ok(UK_HISTORY)).await;
    let provider = build(&uk(&server.base, None, None), &shared(3));
    let history = provider
        .history(t("2026-11-28T12:10Z"), t("2026-11-28T14:00Z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let values: Vec<f64> = history.points.iter().map(|p| p.intensity).collect();
    assert_eq!(values, [198.0, 201.0, 187.0]);
    assert_eq!(history.slot, Some(TimeDelta::minutes(30)));
    assert_eq!(history.source, "UK Carbon Intensity API national actual");
    // The slot 13:30-14:00 has no actual yet: the measured pieces end at 13:30.
    let segments = history.segments();
    assert_eq!(segments.last().map(|s| s.end), Some(t("2026-11-28T13:30Z")));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    // From the half hour containing the start.
    assert_eq!(
        seen[0].path,
        "/intensity/2026-11-28T12:00Z/2026-11-28T14:00Z"
    );
}

#[tokio::test]
async fn uk_history_asks_at_most_fourteen_days_at_a_time() {
    let server = Server::start(|_, _| Reply::ok(UK_HISTORY)).await;
    let provider = build(&uk(&server.base, None, None), &shared(3));
    let history = provider
        .history(t("2026-11-01T00:00Z"), t("2026-11-21T00:00Z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/intensity/2026-11-01T00:00Z/2026-11-15T00:00Z",
            "/intensity/2026-11-15T00:00Z/2026-11-21T00:00Z"
        ]
    );
    // Both answers carry the same slots: each is kept once.
    assert_eq!(history.points.len(), 3);
}

#[tokio::test]
async fn uk_history_errors_are_precise() {
    let server = Server::start(|seen, _| match seen.path.as_str() {
        p if p.contains("2026-10") => Reply::ok(b"{\"data\": 7}"),
        _ => Reply::status(400, b"{\"error\":{\"code\":\"400 Bad Request\"}}"),
    })
    .await;
    let provider = build(&uk(&server.base, None, None), &shared(1));
    let garbage = provider
        .history(t("2026-10-01T00:00Z"), t("2026-10-01T02:00Z"))
        .await
        .err()
        .unwrap_or_else(|| panic!("garbage accepted"));
    assert_eq!(garbage.category(), "malformed", "{garbage}");
    let refused = provider
        .history(t("2026-11-01T00:00Z"), t("2026-11-01T02:00Z"))
        .await
        .err()
        .unwrap_or_else(|| panic!("400 accepted"));
    assert_eq!(refused.category(), "rejected", "{refused}");
    // An empty answer is no error: nothing is published yet.
    let empty = carbonshift::forecast::uk::parse_national_history(b"{\"data\": []}")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(empty.is_empty());
}

#[tokio::test]
async fn uk_regional_history_is_unsupported_with_a_way_out() {
    let server = Server::start(|_, _| Reply::ok(UK_HISTORY)).await;
    let provider = build(&uk(&server.base, Some(13), None), &shared(1));
    let error = provider
        .history(t("2026-11-28T12:00Z"), t("2026-11-28T14:00Z"))
        .await
        .err()
        .unwrap_or_else(|| panic!("regional history accepted"));
    assert_eq!(error.category(), "unsupported");
    assert!(error.to_string().contains("national"), "{error}");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn static_history_is_its_declared_actuals() {
    let s = shared(1);
    let mut points_spec = vec![IntensityPoint {
        start: t("2026-11-28T12:00Z"),
        intensity: 100.0,
    }];
    let without = build(
        &spec(
            ProviderSpec::Static(StaticPoints {
                points: points_spec.clone(),
                actuals: Vec::new(),
            }),
            None,
        ),
        &s,
    );
    let error = without
        .history(t("2026-11-28T12:00Z"), t("2026-11-28T13:00Z"))
        .await
        .err()
        .unwrap_or_else(|| panic!("no actuals accepted"));
    assert_eq!(error.category(), "unsupported");
    assert!(
        error.to_string().contains("spec.provider.static.actuals"),
        "{error}"
    );
    points_spec.push(IntensityPoint {
        start: t("2026-11-28T13:00Z"),
        intensity: 50.0,
    });
    let actuals: Vec<IntensityPoint> = [(12, 90.0), (13, 60.0), (14, 70.0), (15, 80.0)]
        .iter()
        .map(|(h, v)| IntensityPoint {
            start: t(&format!("2026-11-28T{h}:00Z")),
            intensity: *v,
        })
        .collect();
    let with = build(
        &spec(
            ProviderSpec::Static(StaticPoints {
                points: points_spec,
                actuals,
            }),
            None,
        ),
        &s,
    );
    let history = with
        .history(t("2026-11-28T13:30Z"), t("2026-11-28T15:00Z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let values: Vec<f64> = history.points.iter().map(|p| p.intensity).collect();
    assert_eq!(values, [60.0, 70.0]);
    // The forecast carries them as actuals too, for the completion estimate.
    let data = with.fetch(now()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.actuals.len(), 4);
}

#[tokio::test]
async fn trace_history_is_the_replayed_trace() {
    let s = shared(1);
    let trace = build(
        &spec(
            ProviderSpec::Trace(Trace {
                builtin: Some("de-2020".into()),
                ..Trace::default()
            }),
            None,
        ),
        &s,
    );
    let from = now();
    let forecast = trace.fetch(from).await.unwrap_or_else(|e| panic!("{e}"));
    let history = trace
        .history(from, from + TimeDelta::hours(6))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!history.points.is_empty());
    for p in &history.points {
        assert!(forecast.points.contains(p), "{p:?} is not the replay");
    }
    let covered = history.segments();
    assert!(covered.first().is_some_and(|s| s.start <= from));
    assert!(
        covered
            .last()
            .is_some_and(|s| s.end >= from + TimeDelta::hours(6))
    );
}

const EM_PAST_RANGE: &[u8] = include_bytes!("fixtures/providers/em-past-range.json");

#[tokio::test]
async fn electricity_maps_history_reads_past_range_with_the_token_in_ten_day_chunks() {
    let server = Server::start(|_, _| Reply::ok(EM_PAST_RANGE)).await;
    let provider = build(&em(&server.base), &shared(3));
    let history = provider
        .history(t("2026-11-28T12:20Z"), t("2026-11-28T16:00Z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The null value (not published yet) is left out; estimated values count as measured.
    let values: Vec<f64> = history.points.iter().map(|p| p.intensity).collect();
    assert_eq!(values, [402.0, 388.0, 371.0]);
    assert_eq!(history.slot, Some(TimeDelta::hours(1)));
    assert_eq!(history.source, "Electricity Maps past-range DE");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v3/carbon-intensity/past-range");
    assert!(seen[0].query.contains("zone=DE"), "{}", seen[0].query);
    assert!(
        seen[0].query.contains("start=2026-11-28T12%3A00%3A00Z"),
        "{}",
        seen[0].query
    );
    assert!(
        seen[0].query.contains("end=2026-11-28T16%3A00%3A00Z"),
        "{}",
        seen[0].query
    );
    assert!(seen[0].header("auth-token").is_some());
    // Three weeks: three requests of at most ten days.
    let server = Server::start(|_, _| Reply::ok(EM_PAST_RANGE)).await;
    build(&em(&server.base), &shared(3))
        .history(t("2026-11-01T00:00Z"), t("2026-11-22T00:00Z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.count("/v3/carbon-intensity/past-range"), 3);
}

#[test]
fn electricity_maps_past_range_payloads_good_empty_partial_garbage() {
    use carbonshift::forecast::electricity_maps::parse_past_range;
    let good = parse_past_range(EM_PAST_RANGE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(good.len(), 3);
    let empty = parse_past_range(br#"{"zone":"DE","data":[]}"#).unwrap_or_else(|e| panic!("{e}"));
    assert!(empty.is_empty());
    let history_named =
        parse_past_range(br#"{"zone":"DE","history":[{"carbonIntensity":10,"datetime":"2026-11-28T12:00:00.000Z"}]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(history_named.len(), 1);
    for (body, category) in [
        (&b"<html>502</html>"[..], "malformed"),
        (br#"{"zone":"DE"}"#, "malformed"),
        (br#"{"data":[{"carbonIntensity":10,"datetime":"yesterday"}]}"#, "malformed"),
        (
            br#"{"data":[{"carbonIntensity":10,"datetime":"2026-11-28T13:00:00Z"},{"carbonIntensity":10,"datetime":"2026-11-28T12:00:00Z"}]}"#,
            "invalid_data",
        ),
        (br#"{"data":[{"carbonIntensity":-5,"datetime":"2026-11-28T12:00:00Z"}]}"#, "invalid_data"),
    ] {
        let error = parse_past_range(body)
            .err()
            .unwrap_or_else(|| panic!("accepted {}", String::from_utf8_lossy(body)));
        assert_eq!(error.category(), category, "{error}");
    }
}

const WT_HISTORICAL: &[u8] = include_bytes!("fixtures/providers/wt-historical.json");

#[tokio::test]
async fn watttime_history_reads_historical_with_a_token_and_converts_units() {
    let wt_server = WattTimeServer::start().await;
    let provider = build(&wt(&wt_server.server.base), &shared(3));
    let history = provider
        .history(t("2026-11-28T12:00Z"), t("2026-11-28T12:20Z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rounded: Vec<f64> = history
        .points
        .iter()
        .map(|p| (p.intensity * 100.0).round() / 100.0)
        .collect();
    assert_eq!(rounded, [399.16, 390.09, 385.55, 381.02]);
    assert_eq!(history.slot, Some(TimeDelta::minutes(5)));
    assert_eq!(history.source, "WattTime historical CAISO_NORTH co2_moer");
    let seen = wt_server.server.seen();
    assert_eq!(seen.last().map(|s| s.path.as_str()), Some("/v3/historical"));
    assert_eq!(
        seen.last().map(|s| s.query.as_str()),
        Some(
            "region=CAISO_NORTH&signal_type=co2_moer&start=2026-11-28T12%3A00%3A00Z&end=2026-11-28T12%3A20%3A00Z"
        )
    );
    // A token that expired in between is renewed once, as for forecasts.
    wt_server.expire();
    provider
        .history(t("2026-11-28T12:00Z"), t("2026-11-28T12:20Z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn watttime_historical_payloads_good_empty_garbage() {
    use carbonshift::forecast::watttime::parse_historical;
    assert_eq!(
        parse_historical(WT_HISTORICAL).map(|p| p.len()).ok(),
        Some(4)
    );
    let empty = parse_historical(br#"{"data":[],"meta":{"units":"lbs_co2_per_mwh"}}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(empty.is_empty());
    for (body, category) in [
        (&b"not json"[..], "malformed"),
        (br#"{"data":[]}"#, "malformed"),
        (br#"{"data":[],"meta":{"units":"percent"}}"#, "invalid_data"),
        (
            br#"{"data":[{"point_time":"2026-11-28T12:00:00+00:00","value":null}],"meta":{"units":"lbs_co2_per_mwh"}}"#,
            "invalid_data",
        ),
    ] {
        let error = parse_historical(body)
            .err()
            .unwrap_or_else(|| panic!("accepted {}", String::from_utf8_lossy(body)));
        assert_eq!(error.category(), category, "{error}");
    }
}

const CASDK_EMISSIONS: &[u8] = include_bytes!("fixtures/providers/casdk-emissions.json");

#[tokio::test]
async fn carbon_aware_sdk_history_reads_emissions_by_location() {
    let server = Server::start(|_, _| Reply::ok(CASDK_EMISSIONS)).await;
    let provider = build(&casdk(&server.base), &shared(3));
    let history = provider
        .history(t("2026-11-28T12:00Z"), t("2026-11-28T12:15Z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Sorted by time; each holds for the duration the SDK gives.
    let values: Vec<f64> = history.points.iter().map(|p| p.intensity).collect();
    assert_eq!(values, [410.7, 405.2, 398.0]);
    assert_eq!(history.slot, Some(TimeDelta::minutes(5)));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].path.ends_with("/emissions/bylocation"),
        "{}",
        seen[0].path
    );
    assert!(
        seen[0].query.contains("time=2026-11-28T12%3A00%3A00Z"),
        "{}",
        seen[0].query
    );
    assert!(
        seen[0].query.contains("toTime=2026-11-28T12%3A15%3A00Z"),
        "{}",
        seen[0].query
    );
}

#[test]
fn carbon_aware_sdk_emissions_payloads_good_empty_partial_garbage() {
    use carbonshift::forecast::carbon_aware_sdk::parse_emissions;
    let (good, slot) = parse_emissions(CASDK_EMISSIONS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((good.len(), slot), (3, Some(TimeDelta::minutes(5))));
    let (empty, _) = parse_emissions(b"[]").unwrap_or_else(|e| panic!("{e}"));
    assert!(empty.is_empty());
    let (partial, slot) = parse_emissions(
        br#"[{"location":"x","time":"2026-11-28T12:00:00Z","rating":null},{"location":"x","time":"2026-11-28T13:00:00Z","rating":5}]"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((partial.len(), slot), (1, None));
    for (body, category) in [
        (&b"{}"[..], "malformed"),
        (br#"[{"time":"soon","rating":1}]"#, "malformed"),
        (br#"[{"time":"2026-11-28T12:00:00Z","rating":99999}]"#, "invalid_data"),
        (
            br#"[{"time":"2026-11-28T12:00:00Z","rating":1},{"time":"2026-11-28T12:00:00Z","rating":2}]"#,
            "invalid_data",
        ),
    ] {
        let error = parse_emissions(body)
            .err()
            .unwrap_or_else(|| panic!("accepted {}", String::from_utf8_lossy(body)));
        assert_eq!(error.category(), category, "{error}");
    }
}
