//! Test fixtures for the controllers: a mock Kubernetes API server behind a real `kube::Client`
//! (tower-test, in the style of kube-rs/controller-rs), a [`TestEnv`] that builds a [`Context`]
//! around it with a [`ManualClock`], and object builders.
//!
//! # The mock API server
//!
//! [`MockApiServer`] answers every request the client sends, from a spawned task:
//!
//! 1. **Routes** ([`MockApiServer::route`]) answer any number of matching requests in any order:
//!    use them for what happens concurrently or repeatedly (watch LISTs, held-open WATCH
//!    requests, a Secret read by every reconcile).
//! 2. Otherwise the next **expectation** ([`MockApiServer::expect`]) must match — method, path,
//!    query parameters and body fields — and is answered; expectations are consumed in order.
//! 3. Anything else is a failure: it is answered with HTTP 500 (so the code under test sees an
//!    error) and recorded. [`MockApiServer::verify`] panics with every failure and every
//!    expectation that was not met.
//!
//! Queue expectations, run the code under test to completion, then call `verify`: no timeouts, and
//! "nothing else was requested" is checked exactly. Every request is recorded
//! ([`MockApiServer::seen`]) for finer assertions on bodies.
//!
//! Events: the `Recorder` POSTs a new Event to `/apis/events.k8s.io/v1/namespaces/<ns>/events`,
//! or PATCHes `.../events/<name>` when the same reason repeats within minutes (an Event series).
//! [`Expect::event`] accepts either and checks the reason, the type and the object regarded;
//! cluster-scoped objects get their Events in `default`.
//!
//! ```ignore
//! let env = TestEnv::new(t("2026-11-28T15:47:00Z"));
//! let object = CarbonForecast::test("uk");
//! env.api.expect(Expect::apply_status(&object).body("/status/lastError", Value::Null));
//! env.api.expect(Expect::event("Refreshed").regarding("uk"));
//! let action = reconcile(Arc::new(object), ForecastController::new(env.ctx.clone())).await;
//! env.api.verify();
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use http::{Method, Request, Response, StatusCode};
use kube::Resource;
use kube::client::Body;
use kube::core::ObjectMeta;
use serde_json::{Value, json};
use tower_test::mock::SendResponse;

use super::{Context, ForecastStore, OperatorConfig, reporter};
use crate::api::CarbonForecast;
pub use crate::api::fixtures::{points, t};
use crate::clock::ManualClock;
use crate::forecast::{ClientOptions, RetryPolicy, Shared};
use crate::metrics::Metrics;

/// The handle a tower-test mock service is driven through.
pub type MockHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// How long [`MockApiServer::wait_until`] waits before declaring the test hung.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// Path of the CarbonForecast collection.
pub const FORECASTS_PATH: &str = "/apis/carbonshift.dev/v1alpha1/carbonforecasts";

/// Path of the Events collection in `namespace`.
pub fn events_path(namespace: &str) -> String {
    format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events")
}

/// The URL path of `object` and its name.
fn item_path<K: Resource<DynamicType = ()>>(object: &K) -> (String, String) {
    let name = object.meta().name.clone().unwrap_or_default();
    let collection = K::url_path(&(), object.meta().namespace.as_deref());
    (format!("{collection}/{name}"), name)
}

/// One request as the mock API server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// HTTP method.
    pub method: Method,
    /// URL path, for example `/apis/carbonshift.dev/v1alpha1/carbonforecasts/uk/status`.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl Seen {
    /// The value of query parameter `key`, if present.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The body value at JSON pointer `pointer` (for example `/status/lastError`).
    pub fn at(&self, pointer: &str) -> Option<&Value> {
        self.body.as_ref().and_then(|b| b.pointer(pointer))
    }

    fn describe(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} {}?{}", self.method, self.path, query.join("&"))
    }
}

/// How to answer a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status and JSON body.
    Json(u16, Value),
    /// 200 with the request's own JSON body (Event creation and series patches).
    Echo,
    /// 200 with `base` whose `status` is replaced by the request body's (a status apply returns
    /// the whole object; fields the apply leaves out are gone, as with server-side apply).
    WithStatus(Value),
    /// 200 with `base` merged with the request body (RFC 7386 JSON merge patch).
    Merged(Value),
    /// A Kubernetes `Status` error with this code and reason (`NotFound`, `Conflict`, ...).
    Error(u16, &'static str),
    /// Never answer: a WATCH that stays open until the client goes away.
    Hold,
    /// 200 with these JSON values, one per line (WATCH events `{"type": "ADDED", "object": ...}`);
    /// the stream then ends and the client watches again.
    Lines(Vec<Value>),
}

type BodyCheck = (String, Option<Value>);

/// A request the code under test must make next, and its answer.
#[derive(Debug, Clone)]
pub struct Expect {
    label: String,
    methods: Vec<Method>,
    path: PathMatch,
    query: Vec<(String, String)>,
    body: Vec<BodyCheck>,
    reply: Reply,
}

#[derive(Debug, Clone)]
enum PathMatch {
    Exact(String),
    /// The collection itself (POST) or one item in it (PATCH of a series).
    CollectionOrItem(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => p == path,
            Self::CollectionOrItem(p) => {
                path == p
                    || path
                        .strip_prefix(p.as_str())
                        .and_then(|rest| rest.strip_prefix('/'))
                        .is_some_and(|item| !item.is_empty() && !item.contains('/'))
            }
        }
    }
}

impl Expect {
    fn new(method: Method, path: impl Into<String>) -> Self {
        let path = path.into();
        Self {
            label: format!("{method} {path}"),
            methods: vec![method],
            path: PathMatch::Exact(path),
            query: Vec::new(),
            body: Vec::new(),
            reply: Reply::Json(200, json!({})),
        }
    }

    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// A PATCH of `path`.
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }

    /// A POST to `path`.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    /// A PUT of `path`.
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::PUT, path)
    }

    /// A DELETE of `path`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// The server-side apply of `object`'s status by carbonshift (`fieldManager=carbonshift`,
    /// `force=true`, body with the object's `apiVersion` and `kind`), answered with the object
    /// carrying the applied status. Works for any resource (CarbonForecast, CarbonWorkload...).
    pub fn apply_status<K>(object: &K) -> Self
    where
        K: Resource<DynamicType = ()> + serde::Serialize,
    {
        let (path, name) = item_path(object);
        let base = serde_json::to_value(object).unwrap_or_else(|e| panic!("{e}"));
        Self::patch(format!("{path}/status"))
            .ssa()
            .body("/kind", json!(K::kind(&())))
            .body("/apiVersion", json!(K::api_version(&())))
            .reply(Reply::WithStatus(base))
            .label(format!("apply the status of {} {name}", K::kind(&())))
    }

    /// The server-side apply of `object` itself by carbonshift (creating or updating it),
    /// answered with `object` merged with the request body (a JSON merge patch: close enough to
    /// apply for tests that check what was sent).
    pub fn apply<K>(object: &K) -> Self
    where
        K: Resource<DynamicType = ()> + serde::Serialize,
    {
        let (path, name) = item_path(object);
        let base = serde_json::to_value(object).unwrap_or_else(|e| panic!("{e}"));
        Self::patch(path)
            .ssa()
            .body("/kind", json!(K::kind(&())))
            .reply(Reply::Merged(base))
            .label(format!("apply {} {name}", K::kind(&())))
    }

    /// Requires carbonshift's server-side apply parameters: `fieldManager=carbonshift` and
    /// `force=true`.
    pub fn ssa(self) -> Self {
        self.query("fieldManager", crate::api::FIELD_MANAGER)
            .query("force", "true")
    }

    /// An Event with `reason` in namespace `default` (where cluster-scoped objects' Events go):
    /// a POST, or a PATCH of a series when the same reason repeated recently. Answered with the
    /// Event itself.
    pub fn event(reason: &str) -> Self {
        Self::event_in("default", reason)
    }

    /// Like [`Expect::event`] in `namespace`.
    pub fn event_in(namespace: &str, reason: &str) -> Self {
        Self {
            label: format!("an Event {reason} in {namespace}"),
            methods: vec![Method::POST, Method::PATCH],
            path: PathMatch::CollectionOrItem(events_path(namespace)),
            query: Vec::new(),
            body: vec![("/reason".into(), Some(json!(reason)))],
            reply: Reply::Echo,
        }
    }

    /// Requires the Event (or any body) to regard the object named `name`.
    pub fn regarding(self, name: &str) -> Self {
        self.body("/regarding/name", json!(name))
    }

    /// Requires the Event type `Normal` or `Warning`.
    pub fn kind(self, kind: &str) -> Self {
        self.body("/type", json!(kind))
    }

    /// Requires query parameter `key=value`.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    /// Requires the body value at JSON pointer `pointer` to equal `value`; `Value::Null` also
    /// accepts an absent value.
    pub fn body(mut self, pointer: &str, value: Value) -> Self {
        self.body.push((pointer.into(), Some(value)));
        self
    }

    /// Requires the body to have some value at `pointer`.
    pub fn body_present(mut self, pointer: &str) -> Self {
        self.body.push((pointer.into(), None));
        self
    }

    /// The answer (default: 200 with `{}`).
    pub fn reply(mut self, reply: Reply) -> Self {
        self.reply = reply;
        self
    }

    /// The name used in failure messages.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Why `seen` does not match, or `None` when it does.
    fn mismatch(&self, seen: &Seen) -> Option<String> {
        if !self.methods.contains(&seen.method) || !self.path.matches(&seen.path) {
            return Some("another method or path".into());
        }
        for (key, value) in &self.query {
            if seen.param(key) != Some(value.as_str()) {
                return Some(format!(
                    "query {key}={:?}, expected {value:?}",
                    seen.param(key)
                ));
            }
        }
        for (pointer, expected) in &self.body {
            let got = seen.at(pointer);
            let ok = match expected {
                None => got.is_some(),
                Some(Value::Null) => got.is_none_or(Value::is_null),
                Some(value) => got == Some(value),
            };
            if !ok {
                return Some(format!(
                    "body {pointer} = {}, expected {}",
                    got.map_or("<absent>".into(), Value::to_string),
                    expected
                        .as_ref()
                        .map_or("<present>".into(), Value::to_string)
                ));
            }
        }
        None
    }
}

/// A standing answer for any number of matching requests.
#[derive(Debug, Clone)]
pub struct Route {
    method: Method,
    path: String,
    /// `Some(true)`: only `watch=true` requests; `Some(false)`: only others.
    watch: Option<bool>,
    /// How many more requests it answers (`None`: any number).
    remaining: Option<usize>,
    reply: Reply,
}

impl Route {
    /// `method` on exactly `path`, answered with `reply`.
    pub fn new(method: Method, path: impl Into<String>, reply: Reply) -> Self {
        Self {
            method,
            path: path.into(),
            watch: None,
            remaining: None,
            reply,
        }
    }

    /// Only WATCH requests (`watch=true`).
    pub fn watching(mut self) -> Self {
        self.watch = Some(true);
        self
    }

    /// Answers at most `n` requests; later ones fall through to the next route.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    /// LISTs of `path` (GET without `watch=true`), answered with `items` as a list.
    pub fn list(path: impl Into<String>, kind: &str, items: Vec<Value>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            watch: Some(false),
            remaining: None,
            reply: Reply::Json(200, list(kind, items)),
        }
    }

    /// WATCHes of `path`, held open without events.
    pub fn watch(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            watch: Some(true),
            remaining: None,
            reply: Reply::Hold,
        }
    }

    fn matches(&self, seen: &Seen) -> bool {
        self.remaining != Some(0)
            && self.method == seen.method
            && self.path == seen.path
            && self
                .watch
                .is_none_or(|w| w == (seen.param("watch") == Some("true")))
    }
}

#[derive(Default)]
struct State {
    routes: Vec<Route>,
    script: VecDeque<Expect>,
    seen: Vec<Seen>,
    failures: Vec<String>,
    held: Vec<SendResponse<Response<Body>>>,
}

/// A mock Kubernetes API server (see the module documentation). Cheap to clone.
#[derive(Clone, Default)]
pub struct MockApiServer {
    state: Arc<Mutex<State>>,
}

impl MockApiServer {
    /// A client talking to a new mock server, with default namespace `default`.
    pub fn client() -> (kube::Client, MockApiServer) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        (client, MockApiServer::serve(handle))
    }

    /// Serves `handle` from a spawned task (needs a Tokio runtime).
    pub fn serve(mut handle: MockHandle) -> Self {
        let server = Self::default();
        let state = server.state.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let seen = read(request).await;
                let reply = answer(&mut lock(&state), seen);
                match reply {
                    Some(response) => send.send_response(response),
                    None => lock(&state).held.push(send),
                }
            }
        });
        server
    }

    /// Adds a standing route, checked before the expectations.
    pub fn route(&self, route: Route) {
        lock(&self.state).routes.push(route);
    }

    /// Queues an expectation.
    pub fn expect(&self, expect: Expect) {
        lock(&self.state).script.push_back(expect);
    }

    /// Every request seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }

    /// The requests seen so far that are not GETs (the writes).
    pub fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != Method::GET)
            .collect()
    }

    /// Waits until `done` holds, checking every 10 ms while the code under test runs in other
    /// tasks; panics after [`HANG_GUARD`] so that a broken test fails instead of hanging (not a
    /// timing assertion: the condition normally holds within milliseconds).
    pub async fn wait_until(&self, done: impl Fn() -> bool) {
        let waited = tokio::time::timeout(HANG_GUARD, async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if waited.is_err() {
            let seen: Vec<String> = self.seen().iter().map(Seen::describe).collect();
            panic!(
                "the condition did not hold within {HANG_GUARD:?}; requests seen:\n  {}",
                seen.join("\n  ")
            );
        }
    }

    /// Panics if a request did not match or an expectation was not met; then forgets the
    /// requests seen, so a scenario can verify step by step.
    #[track_caller]
    pub fn verify(&self) {
        let mut state = lock(&self.state);
        let mut problems = std::mem::take(&mut state.failures);
        problems.extend(
            state
                .script
                .drain(..)
                .map(|e| format!("expected {}, but it never came", e.label)),
        );
        let seen: Vec<String> = state.seen.drain(..).map(|s| s.describe()).collect();
        drop(state);
        assert!(
            problems.is_empty(),
            "mock API server:\n  {}\nrequests seen:\n  {}",
            problems.join("\n  "),
            seen.join("\n  ")
        );
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn read(request: Request<Body>) -> Seen {
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap_or_default();
    let query = parts
        .uri
        .query()
        .map(|q| {
            url_decode_pairs(q)
                .into_iter()
                .collect::<Vec<(String, String)>>()
        })
        .unwrap_or_default();
    Seen {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        body: serde_json::from_slice(&bytes).ok(),
    }
}

fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://mock/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// Picks the answer; `None` holds the request open.
fn answer(state: &mut State, seen: Seen) -> Option<Response<Body>> {
    state.seen.push(seen.clone());
    if let Some(route) = state.routes.iter_mut().find(|r| r.matches(&seen)) {
        if let Some(n) = &mut route.remaining {
            *n -= 1;
        }
        let reply = route.reply.clone();
        return respond(&reply, &seen);
    }
    match state.script.front() {
        None => {
            state
                .failures
                .push(format!("unexpected request {}", seen.describe()));
            respond(&Reply::Error(500, "InternalError"), &seen)
        }
        Some(expect) => match expect.mismatch(&seen) {
            None => {
                let reply = expect.reply.clone();
                state.script.pop_front();
                respond(&reply, &seen)
            }
            Some(why) => {
                state.failures.push(format!(
                    "expected {}, got {}: {why}",
                    expect.label,
                    seen.describe()
                ));
                respond(&Reply::Error(500, "InternalError"), &seen)
            }
        },
    }
}

fn respond(reply: &Reply, seen: &Seen) -> Option<Response<Body>> {
    let (code, body) = match reply {
        Reply::Hold => return None,
        Reply::Json(code, body) => (*code, body.clone()),
        Reply::Echo => (200, seen.body.clone().unwrap_or_else(|| json!({}))),
        Reply::WithStatus(base) => {
            let mut object = base.clone();
            if let Some(status) = seen.at("/status") {
                object["status"] = status.clone();
            }
            (200, object)
        }
        Reply::Merged(base) => {
            let mut object = base.clone();
            if let Some(body) = &seen.body {
                json_patch::merge(&mut object, body);
            }
            (200, object)
        }
        Reply::Error(code, reason) => (*code, status_error(*code, reason)),
        Reply::Lines(lines) => {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            return Some(response(200, text.into_bytes()));
        }
    };
    Some(response(code, body.to_string().into_bytes()))
}

fn response(code: u16, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A Kubernetes `Status` failure body.
pub fn status_error(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("mock API server: {reason}"),
        "reason": reason,
        "code": code,
    })
}

/// A list body of `kind` (for example `CarbonForecastList`).
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": if kind.starts_with("CarbonForecast") || kind.starts_with("CarbonWorkload") {
            "carbonshift.dev/v1alpha1"
        } else {
            "v1"
        },
        "kind": kind,
        "metadata": {"resourceVersion": "100"},
        "items": items,
    })
}

/// A Secret in `namespace` with `data` (values base64-encoded here).
pub fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    use k8s_openapi::ByteString;
    let data: std::collections::BTreeMap<String, ByteString> = data
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Default::default()
    };
    serde_json::to_value(secret).unwrap_or_else(|e| panic!("{e}"))
}

/// A ConfigMap in `namespace` with `data`.
pub fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

/// A [`Context`] around a mock API server and a manual clock, with fresh metrics, an empty store,
/// [`OperatorConfig::default`] (operator namespace `carbonshift`) and provider HTTP options for
/// local test servers (one attempt, 2 s timeout).
pub struct TestEnv {
    /// The context under test.
    pub ctx: Arc<Context>,
    /// The mock API server behind `ctx.client`.
    pub api: MockApiServer,
    /// The clock behind `ctx.clock`; move it to drive time.
    pub clock: ManualClock,
}

impl TestEnv {
    /// An environment at `now` with the default configuration.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self::with_config(now, OperatorConfig::default())
    }

    /// An environment at `now` with `config`.
    pub fn with_config(now: DateTime<Utc>, config: OperatorConfig) -> Self {
        let (client, api) = MockApiServer::client();
        let clock = ManualClock::new(now);
        let providers = Shared::new(ClientOptions {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            ..ClientOptions::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let ctx = Context::new(
            client,
            Arc::new(clock.clone()),
            config,
            Metrics::new(),
            ForecastStore::new(),
            providers,
            reporter(Some("carbonshift-test".into())),
        );
        Self {
            ctx: Arc::new(ctx),
            api,
            clock,
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_mock_answers_routes_and_expectations_and_reports_the_rest() {
        let (client, api) = MockApiServer::client();
        api.route(Route::list(
            FORECASTS_PATH,
            "CarbonForecastList",
            vec![CarbonForecast::test("uk").to_json()],
        ));
        let object = CarbonForecast::test("uk");
        api.expect(
            Expect::get(format!("{FORECASTS_PATH}/uk")).reply(Reply::Json(200, object.to_json())),
        );
        let forecasts = kube::Api::<CarbonForecast>::all(client.clone());
        let listed = forecasts.list(&Default::default()).await;
        assert_eq!(listed.map(|l| l.items.len()).ok(), Some(1));
        let got = forecasts.get("uk").await;
        assert_eq!(got.ok().and_then(|o| o.metadata.name), Some("uk".into()));
        api.verify();

        // A request that was not expected is answered with 500 and reported.
        let missing = forecasts.get("de").await;
        assert!(missing.is_err());
        let report = std::panic::catch_unwind(|| api.verify());
        assert!(report.is_err(), "verify must fail on an unexpected request");

        // An expectation never met is reported too.
        api.expect(Expect::get(format!("{FORECASTS_PATH}/fr")));
        let report = std::panic::catch_unwind(|| api.verify());
        assert!(report.is_err(), "verify must fail on an unmet expectation");
    }

    #[tokio::test]
    async fn expectations_check_query_and_body() {
        let (client, api) = MockApiServer::client();
        let object = CarbonForecast::test("uk");
        api.expect(Expect::apply_status(&object).body("/status/region", json!("national")));
        let patch = json!({
            "apiVersion": "carbonshift.dev/v1alpha1",
            "kind": "CarbonForecast",
            "status": {"region": "national", "points": []},
        });
        let applied = kube::Api::<CarbonForecast>::all(client)
            .patch_status(
                "uk",
                &kube::api::PatchParams::apply("carbonshift").force(),
                &kube::api::Patch::Apply(&patch),
            )
            .await;
        let applied = applied.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            applied.status.and_then(|s| s.region),
            Some("national".into())
        );
        let seen = api.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].param("fieldManager"), Some("carbonshift"));
        api.verify();
        let mismatch = Expect::apply_status(&object)
            .body("/status/region", json!("GB"))
            .mismatch(&seen[0]);
        assert_eq!(
            mismatch.as_deref(),
            Some("body /status/region = \"national\", expected \"GB\"")
        );
    }

    #[tokio::test]
    async fn applies_of_namespaced_objects_use_their_own_paths() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let (client, api) = MockApiServer::client();
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some("plan".into()),
                namespace: Some("team-a".into()),
                ..ObjectMeta::default()
            },
            data: Some([("old".to_string(), "1".to_string())].into()),
            ..ConfigMap::default()
        };
        api.expect(Expect::apply(&object).body("/data/new", json!("2")));
        let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"new": "2"}});
        let applied = kube::Api::<ConfigMap>::namespaced(client, "team-a")
            .patch(
                "plan",
                &kube::api::PatchParams::apply("carbonshift").force(),
                &kube::api::Patch::Apply(&patch),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        api.verify();
        let data = applied.data.unwrap_or_default();
        assert_eq!(data.get("old").map(String::as_str), Some("1"));
        assert_eq!(data.get("new").map(String::as_str), Some("2"));
    }

    #[test]
    fn event_paths_match_the_collection_and_its_items() {
        let p = PathMatch::CollectionOrItem(events_path("default"));
        assert!(p.matches("/apis/events.k8s.io/v1/namespaces/default/events"));
        assert!(p.matches("/apis/events.k8s.io/v1/namespaces/default/events/uk.18a"));
        assert!(!p.matches("/apis/events.k8s.io/v1/namespaces/default/events/uk/x"));
        assert!(!p.matches("/apis/events.k8s.io/v1/namespaces/other/events"));
    }
}
