//! Leader election against a fake API server (tower-test) in paused tokio time.
//!
//! The fake serves one Lease the way the API server would (GET returns it, PATCH merges the
//! patch's `spec`, `null` removes a field) and stamps `renewTime`/`acquireTime` with the test clock,
//! which follows tokio's paused time: kube-lease-manager stamps with the real wall clock, which
//! paused time does not move. Scenarios make another replica hold the Lease, make renewals fail or
//! hang, or let another replica take the Lease over at our first renewal. Job writes by the fake
//! controllers go through the same fake, so every write is recorded with the time it reached the
//! "API server".

use std::sync::Mutex;

use http::{Method, StatusCode};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower_test::mock;

use super::*;
use chrono::TimeDelta;
use http::{Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use kube::client::Body;

const NS: &str = "carbonshift";
const LEASE: &str = "carbonshift-leader";
const ME: &str = "carbonshift-7d9f-abcde";
const OTHER: &str = "carbonshift-7d9f-fghij";
const JOB_PATH: &str = "/apis/batch/v1/namespaces/default/jobs/train";

fn lease_path() -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE}")
}

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid literal")
        .to_utc()
}

fn micro_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// Wall-clock time that moves with tokio's (paused) clock.
#[derive(Debug)]
struct TokioClock {
    base: DateTime<Utc>,
    start: Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + TimeDelta::from_std(self.start.elapsed()).expect("test durations are small")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// The Lease exists and is free.
    Free,
    /// Another replica holds the Lease and renews it continually.
    HeldByOther,
    /// We can acquire, but every renewal gets 500.
    FailRenewals,
    /// We can acquire, but renewals never get an answer.
    HangRenewals,
    /// We can acquire; at our first renewal another replica has taken the Lease over.
    StolenAtRenewal,
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Request {
        at: DateTime<Utc>,
        method: Method,
        path: String,
        body: Value,
    },
    ControllersStarted(DateTime<Utc>),
    ControllersStopped(DateTime<Utc>),
    /// The fenced client refused a write.
    WriteRefused(DateTime<Utc>),
}

/// How the fake controllers behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controllers {
    /// Write every second through the fenced client until told to stop.
    Normal,
    /// Fail at once.
    Fail,
    /// Like `Normal`, but never notice the stop signal (a reconcile stuck somewhere).
    Stubborn,
}

type Events = Arc<Mutex<Vec<Event>>>;

fn push(events: &Events, event: Event) {
    events.lock().expect("not poisoned").push(event);
}

struct FakeApi {
    scenario: Scenario,
    clock: Arc<TokioClock>,
    events: Events,
    spec: Map<String, Value>,
    resource_version: u64,
    acquired: bool,
    stolen: bool,
}

enum Reply {
    Answer(StatusCode, Value),
    Hang,
}

fn status(code: StatusCode, reason: &str) -> Reply {
    Reply::Answer(
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": reason, "reason": reason, "code": code.as_u16(),
        }),
    )
}

impl FakeApi {
    fn new(scenario: Scenario, clock: Arc<TokioClock>, events: Events) -> Self {
        let mut spec = Map::new();
        if scenario == Scenario::HeldByOther {
            spec.insert("holderIdentity".into(), json!(OTHER));
            spec.insert("leaseDurationSeconds".into(), json!(15));
            spec.insert("acquireTime".into(), json!(micro_time(clock.now())));
            spec.insert("renewTime".into(), json!(micro_time(clock.now())));
        }
        Self {
            scenario,
            clock,
            events,
            spec,
            resource_version: 1,
            acquired: false,
            stolen: false,
        }
    }

    fn lease(&self) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": LEASE,
                "namespace": NS,
                "resourceVersion": self.resource_version.to_string(),
            },
            "spec": self.spec,
        })
    }

    /// Another replica renews the Lease it holds.
    fn other_renews(&mut self) {
        if self.spec.get("holderIdentity") == Some(&json!(OTHER)) {
            self.spec
                .insert("renewTime".into(), json!(micro_time(self.clock.now())));
        }
    }

    fn merge(&mut self, patch: &Map<String, Value>) {
        let now = micro_time(self.clock.now());
        for (key, value) in patch {
            if value.is_null() {
                self.spec.remove(key);
            } else if key == "renewTime" || key == "acquireTime" {
                self.spec.insert(key.clone(), json!(now));
            } else {
                self.spec.insert(key.clone(), value.clone());
            }
        }
        self.resource_version += 1;
    }

    fn handle(&mut self, method: &Method, path: &str, body: &Value) -> Reply {
        if path == JOB_PATH && method == Method::PATCH {
            return Reply::Answer(
                StatusCode::OK,
                json!({
                    "apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": "train", "namespace": "default", "resourceVersion": "9"},
                }),
            );
        }
        if path != lease_path() {
            return status(StatusCode::NOT_FOUND, "NotFound");
        }
        if method == Method::GET {
            self.other_renews();
            return Reply::Answer(StatusCode::OK, self.lease());
        }
        if method != Method::PATCH {
            return status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");
        }
        let empty = Map::new();
        let patch = body
            .get("spec")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let acquiring = patch.get("holderIdentity").is_some_and(Value::is_string);
        let renewing = !patch.contains_key("holderIdentity")
            && patch.get("renewTime").is_some_and(|v| !v.is_null());
        if renewing && self.acquired {
            match self.scenario {
                Scenario::FailRenewals => {
                    return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
                }
                Scenario::HangRenewals => return Reply::Hang,
                Scenario::StolenAtRenewal if !self.stolen => {
                    self.stolen = true;
                    let now = micro_time(self.clock.now());
                    self.spec.insert("holderIdentity".into(), json!(OTHER));
                    self.spec.insert("acquireTime".into(), json!(now));
                    self.spec.insert("renewTime".into(), json!(now));
                }
                _ => {}
            }
        }
        self.other_renews();
        self.merge(patch);
        if acquiring {
            self.acquired = true;
        }
        Reply::Answer(StatusCode::OK, self.lease())
    }
}

async fn serve(mut handle: mock::Handle<Request<Body>, Response<Body>>, mut fake: FakeApi) {
    let mut hanging = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        push(
            &fake.events,
            Event::Request {
                at: fake.clock.now(),
                method: parts.method.clone(),
                path: parts.uri.path().to_string(),
                body: body.clone(),
            },
        );
        match fake.handle(&parts.method, parts.uri.path(), &body) {
            Reply::Answer(code, value) => {
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).expect("json")))
                    .expect("response");
                send.send_response(response);
            }
            Reply::Hang => hanging.push(send),
        }
    }
}

struct Harness {
    clock: Arc<TokioClock>,
    events: Events,
    metrics: Metrics,
    gates: Arc<Mutex<Vec<LeaderGate>>>,
    starts: Arc<Mutex<usize>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), LeaderError>>,
}

impl Harness {
    /// Starts `run_while_leader` with fake controllers that patch a Job every second (at 0.5 s,
    /// 1.5 s, ... after they start) through the fenced client.
    fn start(election: Option<Scenario>) -> Self {
        Self::start_with(election, Controllers::Normal)
    }

    fn start_with(election: Option<Scenario>, behaviour: Controllers) -> Self {
        let clock = Arc::new(TokioClock {
            base: Utc::now(),
            start: Instant::now(),
        });
        let events: Events = Arc::default();
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let election = match election {
            Some(scenario) => {
                tokio::spawn(serve(
                    handle,
                    FakeApi::new(scenario, clock.clone(), events.clone()),
                ));
                Election::lease(client.clone(), ElectionParams::new(LEASE, NS, ME))
            }
            None => {
                tokio::spawn(serve(
                    handle,
                    FakeApi::new(Scenario::Free, clock.clone(), events.clone()),
                ));
                Election::Disabled
            }
        };
        let metrics = Metrics::new();
        let gates: Arc<Mutex<Vec<LeaderGate>>> = Arc::default();
        let starts: Arc<Mutex<usize>> = Arc::default();
        let make_controllers = {
            let (clock, events, gates, starts) =
                (clock.clone(), events.clone(), gates.clone(), starts.clone());
            move |scope: Scope| {
                *starts.lock().expect("not poisoned") += 1;
                gates
                    .lock()
                    .expect("not poisoned")
                    .push(scope.gate().clone());
                // The controllers write through the fenced client and never check the gate
                // themselves: the fence alone must keep them from writing.
                let jobs: Api<Job> = Api::namespaced(scope.fence(client.clone()), "default");
                let (clock, events) = (clock.clone(), events.clone());
                async move {
                    push(&events, Event::ControllersStarted(clock.now()));
                    if behaviour == Controllers::Fail {
                        return Err("the Job watch failed".to_string());
                    }
                    let stopped = scope.stopped();
                    tokio::pin!(stopped);
                    // Half a second off the whole seconds, so that no write coincides with a
                    // renewal or a gate deadline.
                    let mut ticks = tokio::time::interval_at(
                        Instant::now() + Duration::from_millis(500),
                        Duration::from_secs(1),
                    );
                    loop {
                        tokio::select! {
                            () = &mut stopped, if behaviour != Controllers::Stubborn => break,
                            _ = ticks.tick() => {
                                let patch = Patch::Merge(json!({"spec": {"suspend": false}}));
                                match jobs.patch("train", &PatchParams::default(), &patch).await {
                                    Ok(_) => {}
                                    Err(kube::Error::Api(status))
                                        if status.code == 503 && status.reason == NOT_LEADER_REASON =>
                                    {
                                        push(&events, Event::WriteRefused(clock.now()));
                                    }
                                    Err(e) => return Err(e.to_string()),
                                }
                            }
                        }
                    }
                    push(&events, Event::ControllersStopped(clock.now()));
                    Ok::<(), String>(())
                }
            }
        };
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(run_while_leader(
            election,
            clock.clone(),
            metrics.clone(),
            make_controllers,
            async move {
                let _ = stop.await;
            },
        ));
        Self {
            clock,
            events,
            metrics,
            gates,
            starts,
            shutdown: Some(shutdown),
            task,
        }
    }

    async fn run_for(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    async fn shutdown(mut self) -> (Result<(), LeaderError>, Vec<Event>) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let result = (&mut self.task).await.expect("no panic");
        (result, self.events())
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().expect("not poisoned").clone()
    }

    fn starts(&self) -> usize {
        *self.starts.lock().expect("not poisoned")
    }

    fn gate(&self) -> LeaderGate {
        self.gates.lock().expect("not poisoned")[0].clone()
    }
}

fn requests(events: &[Event]) -> Vec<(DateTime<Utc>, Method, String, Value)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Request {
                at,
                method,
                path,
                body,
            } => Some((*at, method.clone(), path.clone(), body.clone())),
            _ => None,
        })
        .collect()
}

fn job_writes(events: &[Event]) -> Vec<DateTime<Utc>> {
    requests(events)
        .into_iter()
        .filter(|(_, method, path, _)| *method == Method::PATCH && path == JOB_PATH)
        .map(|(at, ..)| at)
        .collect()
}

/// The time of our acquiring PATCH (holderIdentity = ME).
fn acquired_at(events: &[Event]) -> DateTime<Utc> {
    requests(events)
        .into_iter()
        .find(|(_, method, path, body)| {
            *method == Method::PATCH
                && *path == lease_path()
                && body.pointer("/spec/holderIdentity") == Some(&json!(ME))
        })
        .map(|(at, ..)| at)
        .expect("the Lease was acquired")
}

fn renewal_attempts(events: &[Event]) -> Vec<DateTime<Utc>> {
    requests(events)
        .into_iter()
        .filter(|(_, method, path, body)| {
            *method == Method::PATCH
                && *path == lease_path()
                && body.pointer("/spec/holderIdentity").is_none()
                && body
                    .pointer("/spec/renewTime")
                    .is_some_and(|v| !v.is_null())
        })
        .map(|(at, ..)| at)
        .collect()
}

fn starts_and_stops(events: &[Event]) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let starts = events
        .iter()
        .filter_map(|e| match e {
            Event::ControllersStarted(at) => Some(*at),
            _ => None,
        })
        .collect();
    let stops = events
        .iter()
        .filter_map(|e| match e {
            Event::ControllersStopped(at) => Some(*at),
            _ => None,
        })
        .collect();
    (starts, stops)
}

// ---------------------------------------------------------------------------------------------
// The gate's arithmetic and the settings.

fn lease(holder: Option<&str>, renew: Option<DateTime<Utc>>, duration: Option<i32>) -> Lease {
    serde_json::from_value(json!({
        "metadata": {"name": LEASE, "namespace": NS},
        "spec": {
            "holderIdentity": holder,
            "renewTime": renew.map(micro_time),
            "leaseDurationSeconds": duration,
        },
    }))
    .expect("valid Lease")
}

#[test]
fn the_deadline_is_the_renewal_plus_the_duration_minus_the_margin_for_the_holder_only() {
    let renewed = t("2026-05-04T12:00:00.250Z");
    let d = DEFAULT_LEASE_DURATION;
    let m = DEFAULT_SAFETY_MARGIN;
    assert_eq!(
        write_deadline(&lease(Some(ME), Some(renewed), Some(15)), ME, d, m),
        Some(t("2026-05-04T12:00:13.250Z"))
    );
    // The shorter of the Lease's and our own duration counts.
    assert_eq!(
        write_deadline(&lease(Some(ME), Some(renewed), Some(3600)), ME, d, m),
        Some(t("2026-05-04T12:00:13.250Z"))
    );
    assert_eq!(
        write_deadline(&lease(Some(ME), Some(renewed), Some(10)), ME, d, m),
        Some(t("2026-05-04T12:00:08.250Z"))
    );
    for (lease, why) in [
        (
            lease(Some(OTHER), Some(renewed), Some(15)),
            "held by another",
        ),
        (lease(None, Some(renewed), Some(15)), "no holder"),
        (lease(Some(ME), None, Some(15)), "no renewTime"),
        (lease(Some(ME), Some(renewed), None), "no duration"),
        (lease(Some(ME), Some(renewed), Some(0)), "zero duration"),
        (
            lease(Some(ME), Some(renewed), Some(-5)),
            "negative duration",
        ),
        (Lease::default(), "no spec"),
    ] {
        assert_eq!(write_deadline(&lease, ME, d, m), None, "{why}");
    }
}

#[test]
fn a_grant_allows_writes_strictly_before_its_deadline() {
    let deadline = t("2026-05-04T12:00:13Z");
    let grant = Grant::Until(deadline);
    assert!(grant.allows(deadline - TimeDelta::nanoseconds(1)));
    assert!(!grant.allows(deadline));
    assert!(!grant.allows(deadline + seconds(1)));
    assert!(Grant::Unconditional.allows(deadline + seconds(1_000_000)));
    assert!(!Grant::Closed.allows(deadline - seconds(1_000_000)));
    assert!(!Grant::Revoked.allows(deadline - seconds(1_000_000)));
}

#[test]
fn the_gate_follows_observations_until_revoked() {
    let gate = LeaderGate::closed();
    let now = t("2026-05-04T12:00:00Z");
    assert!(!gate.may_write(now));
    gate.observe(Some(now + seconds(13)));
    assert!(gate.may_write(now + seconds(12)));
    assert!(!gate.may_write(now + seconds(13)));
    assert_eq!(gate.valid_until(), Some(now + seconds(13)));
    // A renewal moves the deadline on.
    gate.observe(Some(now + seconds(23)));
    assert!(gate.may_write(now + seconds(22)));
    // A Lease naming someone else closes it; the next renewal opens it again.
    gate.observe(None);
    assert!(!gate.may_write(now));
    assert_eq!(gate.grant(), Grant::Closed);
    gate.observe(Some(now + seconds(33)));
    assert!(gate.may_write(now + seconds(32)));
    // Once revoked, nothing opens it again.
    gate.revoke();
    gate.observe(Some(now + seconds(43)));
    assert_eq!(gate.grant(), Grant::Revoked);
    assert!(!gate.may_write(now));
    // Clones share the state.
    let clone = gate.clone();
    assert_eq!(clone.grant(), Grant::Revoked);
    // Without election, observations do not matter.
    let open = LeaderGate::unconditional();
    open.observe(None);
    assert!(open.may_write(now));
    assert!(LeaderGate::until(now).may_write(now - seconds(1)));
    assert!(!LeaderGate::until(now).may_write(now));
}

#[test]
fn settings_are_checked() {
    assert!(ElectionParams::new(LEASE, NS, ME).validate().is_ok());
    let bad = |change: fn(&mut ElectionParams)| {
        let mut params = ElectionParams::new(LEASE, NS, ME);
        change(&mut params);
        match params.validate() {
            Err(LeaderError::InvalidParams(message)) => message,
            other => panic!("expected InvalidParams, got {other:?}"),
        }
    };
    assert!(bad(|p| p.lease_name = "Leader_1".into()).contains("\"Leader_1\""));
    assert!(bad(|p| p.namespace = String::new()).contains("namespace"));
    assert!(bad(|p| p.identity = String::new()).contains("identity"));
    assert!(bad(|p| p.lease_duration = Duration::from_millis(15_500)).contains("whole seconds"));
    assert!(bad(|p| p.renew_before = p.lease_duration).contains("less than the lease duration"));
    assert!(bad(|p| p.renew_before = Duration::ZERO).contains("at least 1 s"));
    assert!(bad(|p| p.safety_margin = p.renew_before).contains("before every renewal"));
    assert!(bad(|p| p.safety_margin = Duration::ZERO).contains("more than zero"));
}

// ---------------------------------------------------------------------------------------------
// The observer between the lease manager and the API server.

async fn observe_once(status_code: StatusCode, body: &str, path: &str) -> LeaderGate {
    let gate = LeaderGate::closed();
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let observer = LeaseObserver {
        inner: Client::new(service, "default"),
        path: lease_path().into(),
        identity: ME.into(),
        lease_duration: DEFAULT_LEASE_DURATION,
        margin: DEFAULT_SAFETY_MARGIN,
        gate: gate.clone(),
    };
    let client = Client::new(observer, "default");
    let body = body.to_string();
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.expect("a request");
        send.send_response(
            Response::builder()
                .status(status_code)
                .body(Body::from(body.into_bytes()))
                .expect("response"),
        );
    });
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = client.send(request).await.expect("response");
    // The body reaches the caller unchanged.
    let _ = response.into_body().collect_bytes().await.expect("body");
    server.await.expect("served");
    gate
}

#[tokio::test]
async fn the_observer_opens_the_gate_from_our_lease_and_closes_it_for_another_holder() {
    let renewed = t("2026-05-04T12:00:00Z");
    let ours = serde_json::to_string(&lease(Some(ME), Some(renewed), Some(15))).expect("json");
    let theirs = serde_json::to_string(&lease(Some(OTHER), Some(renewed), Some(15))).expect("json");

    let gate = observe_once(StatusCode::OK, &ours, &lease_path()).await;
    assert_eq!(gate.grant(), Grant::Until(renewed + seconds(13)));

    let gate = observe_once(StatusCode::OK, &theirs, &lease_path()).await;
    assert_eq!(gate.grant(), Grant::Closed);

    // Failed calls, other objects and unreadable bodies never open it.
    let gate = observe_once(StatusCode::INTERNAL_SERVER_ERROR, &ours, &lease_path()).await;
    assert_eq!(gate.grant(), Grant::Closed);
    let gate = observe_once(
        StatusCode::OK,
        &ours,
        "/apis/coordination.k8s.io/v1/namespaces/carbonshift/leases/other-lease",
    )
    .await;
    assert_eq!(gate.grant(), Grant::Closed);
    let gate = observe_once(StatusCode::OK, "{not json", &lease_path()).await;
    assert_eq!(gate.grant(), Grant::Closed);
}

// ---------------------------------------------------------------------------------------------
// The whole election against the fake API server.

#[tokio::test(start_paused = true)]
async fn a_replica_that_does_not_hold_the_lease_never_starts_the_controllers_and_writes_nothing() {
    let harness = Harness::start(Some(Scenario::HeldByOther));
    harness.run_for(Duration::from_secs(60)).await;
    assert_eq!(harness.metrics.leader.get(), 0);
    harness.run_for(Duration::from_secs(60)).await;
    let metrics = harness.metrics.clone();
    let starts = harness.starts();
    let (result, events) = harness.shutdown().await;
    assert!(result.is_ok(), "{result:?}");

    assert_eq!(starts, 0, "the controllers must never start");
    let requests = requests(&events);
    assert!(!requests.is_empty(), "the Lease was read");
    let writes: Vec<_> = requests
        .iter()
        .filter(|(_, method, ..)| *method != Method::GET)
        .collect();
    assert!(writes.is_empty(), "a non-leader wrote: {writes:?}");
    assert!(
        requests.iter().all(|(_, _, path, _)| *path == lease_path()),
        "{requests:?}"
    );
    assert_eq!(metrics.leader.get(), 0);
}

/// Acquires, then renewals fail in the way `scenario` says: the controllers must be stopped, and
/// the last Job write must have reached the API server, before the Lease duration has passed since
/// the last successful renewal (the acquisition).
async fn renewals_stop_working(scenario: Scenario) {
    let harness = Harness::start(Some(scenario));
    harness.run_for(Duration::from_secs(5)).await;
    assert_eq!(harness.metrics.leader.get(), 1, "leading after acquisition");
    let gate = harness.gate();
    assert!(gate.may_write(harness.clock.now()));

    harness.run_for(Duration::from_secs(25)).await;
    assert_eq!(harness.metrics.leader.get(), 0, "not leading any more");
    assert!(!gate.may_write(harness.clock.now()));
    let starts = harness.starts();
    let (result, events) = harness.shutdown().await;
    assert!(result.is_ok(), "{result:?}");

    let acquired = acquired_at(&events);
    let lease_expires = acquired + seconds(15);
    let renewals = renewal_attempts(&events);
    assert!(
        renewals.first().is_some_and(|at| *at < lease_expires),
        "a renewal was attempted before expiry: {renewals:?}"
    );
    assert_eq!(starts, 1, "started once, never restarted");
    let (started, stopped) = starts_and_stops(&events);
    assert_eq!(started.len(), 1);
    assert_eq!(stopped.len(), 1);
    assert!(started[0] >= acquired);
    // Stopped when the gate closed: the renewal + duration − margin, before the Lease expires.
    assert_eq!(stopped[0], acquired + seconds(13));
    assert!(stopped[0] < lease_expires);
    let writes = job_writes(&events);
    // One write a second while leading: at 0.5 s .. 12.5 s after the acquisition.
    assert_eq!(writes.len(), 13, "{writes:?}");
    for write in &writes {
        assert!(*write < stopped[0], "a write at {write} after the stop");
    }
}

#[tokio::test(start_paused = true)]
async fn when_renewals_fail_the_controllers_stop_before_the_lease_can_expire() {
    renewals_stop_working(Scenario::FailRenewals).await;
}

#[tokio::test(start_paused = true)]
async fn when_renewals_hang_the_controllers_stop_before_the_lease_can_expire() {
    renewals_stop_working(Scenario::HangRenewals).await;
}

#[tokio::test(start_paused = true)]
async fn when_another_replica_holds_the_lease_at_renewal_the_controllers_stop_at_once() {
    let harness = Harness::start(Some(Scenario::StolenAtRenewal));
    harness.run_for(Duration::from_secs(60)).await;
    assert_eq!(harness.metrics.leader.get(), 0);
    let gate = harness.gate();
    assert!(!gate.may_write(harness.clock.now()));
    let starts = harness.starts();
    let (result, events) = harness.shutdown().await;
    assert!(result.is_ok(), "{result:?}");

    let renewal = renewal_attempts(&events)[0];
    let (started, stopped) = starts_and_stops(&events);
    assert_eq!(
        starts, 1,
        "never restarted while another replica holds the Lease"
    );
    assert_eq!((started.len(), stopped.len()), (1, 1));
    // The renewal's answer named the other holder: stopped at that instant.
    assert_eq!(stopped[0], renewal);
    let writes = job_writes(&events);
    assert_eq!(
        writes.len(),
        10,
        "one a second until the renewal at 10 s: {writes:?}"
    );
    assert!(writes.iter().all(|at| *at < renewal), "{writes:?}");
    // No attempt to release a Lease that is not ours.
    let releases = requests(&events)
        .into_iter()
        .filter(|(_, method, _, body)| {
            *method == Method::PATCH && body.pointer("/spec/holderIdentity") == Some(&Value::Null)
        })
        .count();
    assert_eq!(releases, 0);
}

#[tokio::test(start_paused = true)]
async fn a_graceful_shutdown_stops_the_controllers_and_then_releases_the_lease() {
    let harness = Harness::start(Some(Scenario::Free));
    harness.run_for(Duration::from_secs(5)).await;
    assert_eq!(harness.metrics.leader.get(), 1);
    let gate = harness.gate();
    let metrics = harness.metrics.clone();
    let (result, events) = harness.shutdown().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(metrics.leader.get(), 0);
    assert_eq!(gate.grant(), Grant::Revoked);

    let stopped = events
        .iter()
        .position(|e| matches!(e, Event::ControllersStopped(_)))
        .expect("controllers stopped");
    let released = events
        .iter()
        .position(|e| {
            matches!(e, Event::Request { method, body, .. }
                if *method == Method::PATCH
                    && body.pointer("/spec/holderIdentity") == Some(&Value::Null))
        })
        .expect("the Lease was released");
    assert!(stopped < released, "controllers stopped before the release");
    // Nothing was written after the release.
    assert!(
        events[released + 1..]
            .iter()
            .all(|e| !matches!(e, Event::Request { method, .. } if *method == Method::PATCH))
    );
}

#[tokio::test(start_paused = true)]
async fn without_election_the_controllers_run_at_once_with_an_open_gate() {
    let harness = Harness::start(None);
    harness.run_for(Duration::from_millis(5200)).await;
    assert_eq!(harness.metrics.leader.get(), 1);
    assert_eq!(harness.gate().grant(), Grant::Unconditional);
    let metrics = harness.metrics.clone();
    let starts = harness.starts();
    let (result, events) = harness.shutdown().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(starts, 1);
    assert_eq!(metrics.leader.get(), 0);
    assert_eq!(job_writes(&events).len(), 5);
    // No Lease traffic at all.
    assert!(
        requests(&events)
            .iter()
            .all(|(_, _, path, _)| path == JOB_PATH)
    );
}

#[tokio::test(start_paused = true)]
async fn controllers_that_stop_on_their_own_are_an_error() {
    let harness = Harness::start_with(None, Controllers::Fail);
    harness.run_for(Duration::from_secs(1)).await;
    let metrics = harness.metrics.clone();
    let (result, _) = harness.shutdown().await;
    match result {
        Err(LeaderError::ControllersExited(reason)) => assert_eq!(reason, "the Job watch failed"),
        other => panic!("expected ControllersExited, got {other:?}"),
    }
    assert_eq!(metrics.leader.get(), 0);

    let harness = Harness::start_with(Some(Scenario::Free), Controllers::Fail);
    harness.run_for(Duration::from_secs(5)).await;
    let (result, events) = harness.shutdown().await;
    match result {
        Err(LeaderError::ControllersExited(reason)) => assert_eq!(reason, "the Job watch failed"),
        other => panic!("expected ControllersExited, got {other:?}"),
    }
    // The Lease is handed back even then.
    assert!(requests(&events).iter().any(|(_, method, _, body)| {
        *method == Method::PATCH && body.pointer("/spec/holderIdentity") == Some(&Value::Null)
    }));
}

#[tokio::test]
async fn invalid_settings_are_refused_before_anything_starts() {
    let (service, _handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut params = ElectionParams::new(LEASE, NS, ME);
    params.safety_margin = Duration::from_secs(10);
    let result = run_while_leader(
        Election::lease(Client::new(service, "default"), params),
        Arc::new(crate::clock::SystemClock),
        Metrics::new(),
        |_scope: Scope| async { Ok::<(), String>(()) },
        std::future::pending(),
    )
    .await;
    assert!(
        matches!(result, Err(LeaderError::InvalidParams(_))),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn controllers_stuck_past_their_cancellation_cannot_write_once_the_gate_closes() {
    let harness = Harness::start_with(Some(Scenario::FailRenewals), Controllers::Stubborn);
    harness.run_for(Duration::from_secs(40)).await;
    assert_eq!(harness.metrics.leader.get(), 0);
    let (result, events) = harness.shutdown().await;
    assert!(result.is_ok(), "{result:?}");

    let closed = acquired_at(&events) + seconds(13);
    let writes = job_writes(&events);
    // 0.5 s .. 12.5 s reached the API server; nothing after the gate closed did.
    assert_eq!(writes.len(), 13, "{writes:?}");
    assert!(writes.iter().all(|at| *at < closed), "{writes:?}");
    // The stuck controllers kept trying, at 13.5 s .. 22.5 s, until they were aborted 10 s after
    // being told to stop; every attempt was refused inside the process.
    let refused: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::WriteRefused(at) => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 10, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|at| *at > closed && *at < closed + seconds(10))
    );
    let (_, stopped) = starts_and_stops(&events);
    assert!(
        stopped.is_empty(),
        "they never noticed the stop: {stopped:?}"
    );
}

#[tokio::test]
async fn a_fenced_client_reads_always_and_writes_only_while_the_gate_allows() {
    use crate::clock::ManualClock;

    let now = t("2026-05-04T12:00:00Z");
    let clock = ManualClock::new(now);
    let gate = LeaderGate::until(now + seconds(10));
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = fenced_client(
        Client::new(service, "default"),
        gate.clone(),
        Arc::new(clock.clone()),
    );
    let seen: Arc<Mutex<Vec<(Method, String)>>> = Arc::default();
    let server = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                seen.lock()
                    .expect("not poisoned")
                    .push((request.method().clone(), request.uri().path().to_string()));
                send.send_response(
                    Response::builder()
                        .status(StatusCode::OK)
                        .body(Body::from(
                            serde_json::to_vec(&json!({
                                "apiVersion": "batch/v1", "kind": "Job",
                                "metadata": {"name": "train", "namespace": "default"},
                            }))
                            .expect("json"),
                        ))
                        .expect("response"),
                );
            }
        })
    };
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let patch = Patch::Merge(json!({"spec": {"suspend": false}}));
    let params = PatchParams::default();
    let write = || jobs.patch("train", &params, &patch);

    // Open: reads and writes go through.
    jobs.get("train").await.expect("read");
    write().await.expect("write while the gate is open");
    // At the deadline: writes are refused in the process, reads still go through.
    clock.set(now + seconds(10));
    match write().await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (503, NOT_LEADER_REASON)
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    jobs.get("train").await.expect("read");
    // Revoked for good.
    gate.revoke();
    clock.set(now);
    assert!(write().await.is_err());
    let delete = jobs.delete("train", &Default::default()).await;
    assert!(delete.is_err());

    drop(jobs);
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(
        seen,
        vec![
            (Method::GET, JOB_PATH.to_string()),
            (Method::PATCH, JOB_PATH.to_string()),
            (Method::GET, JOB_PATH.to_string()),
        ]
    );
    server.abort();
}
