//! The admission webhook over real HTTPS on 127.0.0.1, and the metrics and health server over
//! HTTP: AdmissionReview JSON in, AdmissionReview JSON (or an HTTP error) out.
//!
//! Certificates come from a test CA generated with rcgen; the RSA PKCS#1 and EC SEC1 keys are
//! fixtures in `tests/fixtures/tls/` (test-only keys, see the README there).

// This crate is test code: a failed `expect` in a helper is a failed test. (clippy.toml's
// allow-*-in-tests reaches `#[test]` functions and `#[cfg(test)]` code, not the helpers of an
// integration test.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use carbonshift::api::annotations::AnnotationDefaults;
use carbonshift::clock::ManualClock;
use carbonshift::http::{self, HttpError, HttpState, OPENMETRICS_CONTENT_TYPE, Readiness};
use carbonshift::metrics::Metrics;
use carbonshift::webhook::{
    self, CertReloader, Reload, TlsConfigPaths, WebhookError, WebhookState,
};
use chrono::{DateTime, Utc};
use json_patch::Patch;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PublicKeyData,
    SignatureAlgorithm,
};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NOW: &str = "2026-05-04T10:00:30Z";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .expect("valid literal")
        .to_utc()
}

fn install_provider() {
    // Another test in this binary may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A test CA that signs serving certificates for 127.0.0.1 and localhost.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for `public_key`: (PEM, DER).
    fn leaf(&self, public_key: &impl PublicKeyData) -> (String, Vec<u8>) {
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params");
        let cert = params
            .signed_by(public_key, &self.issuer)
            .expect("leaf certificate");
        (cert.pem(), cert.der().to_vec())
    }

    /// A serving certificate and a fresh PKCS#8 ECDSA key: (cert PEM, key PEM, cert DER).
    fn leaf_with_key(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("leaf key");
        let (pem, der) = self.leaf(&key);
        (pem, key.serialize_pem(), der)
    }
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The public key of a fixture key pair, read from its SubjectPublicKeyInfo PEM, for rcgen to put
/// into a certificate. (rcgen with ring cannot read PKCS#1 or SEC1 private keys itself.)
struct FixturePublicKey {
    algorithm: &'static SignatureAlgorithm,
    key: Vec<u8>,
}

impl FixturePublicKey {
    fn from_pem(pem: &str, algorithm: &'static SignatureAlgorithm) -> Self {
        let der = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .expect("SubjectPublicKeyInfo PEM");
        // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
        let (tag, spki, _) = der_item(der.as_ref());
        assert_eq!(tag, 0x30, "SubjectPublicKeyInfo is a SEQUENCE");
        let (tag, _, rest) = der_item(spki);
        assert_eq!(tag, 0x30, "AlgorithmIdentifier is a SEQUENCE");
        let (tag, bits, _) = der_item(rest);
        assert_eq!(tag, 0x03, "subjectPublicKey is a BIT STRING");
        assert_eq!(bits.first(), Some(&0), "no unused bits");
        Self {
            algorithm,
            key: bits[1..].to_vec(),
        }
    }
}

impl PublicKeyData for FixturePublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

/// One DER item: (tag, contents, what follows).
fn der_item(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (input[0], input[1]);
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let octets = usize::from(first & 0x7f);
        let length = input[2..2 + octets]
            .iter()
            .fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (length, 2 + octets)
    };
    (
        tag,
        &input[header..header + length],
        &input[header + length..],
    )
}

/// Writes `contents` to `path` the way the kubelet updates a mounted Secret: a new file renamed
/// into place, so a reader never sees half a file.
fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

struct TlsFiles {
    dir: TempDir,
}

impl TlsFiles {
    fn new(cert: &str, key: &str) -> Self {
        let files = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        files.write(cert, key);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    fn write(&self, cert: &str, key: &str) {
        write_atomically(&self.cert(), cert);
        write_atomically(&self.key(), key);
    }

    fn paths(&self) -> TlsConfigPaths {
        TlsConfigPaths::new(self.cert(), self.key())
    }
}

// ---------------------------------------------------------------------------------------------
// Servers and clients

fn state(metrics: &Metrics, readiness: &Readiness) -> WebhookState {
    WebhookState {
        defaults: AnnotationDefaults::default(),
        admission: Default::default(),
        clock: Arc::new(ManualClock::new(now())),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        forecasts: Arc::new(carbonshift::webhook::UnknownForecasts),
        budgets: Arc::new(carbonshift::webhook::NoBudgets),
    }
}

struct Running<E> {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug> Running<E> {
    /// Requests shutdown and waits for the server to stop.
    async fn stop(mut self) -> Result<(), E> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("server task panicked")
    }
}

fn local_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

fn start_webhook(tls: TlsConfigPaths, state: WebhookState) -> Running<WebhookError> {
    let listener = local_listener();
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(webhook::serve_listener(listener, tls, state, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

fn start_http(state: HttpState) -> Running<HttpError> {
    let listener = local_listener();
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(http::serve_listener(listener, state, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// An HTTPS client that trusts only `cas`, opens a new connection per request (so a reloaded
/// certificate shows at once) and reports the server's certificate.
fn https_client(cas: &[&str]) -> reqwest::Client {
    install_provider();
    let roots = cas
        .iter()
        .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA certificate"));
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(roots)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTPS client")
}

fn http_client() -> reqwest::Client {
    install_provider();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// The DER of the certificate the server presented for `response`.
fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS info with the peer certificate")
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// AdmissionReviews

fn job(annotations: &[(&str, &str)]) -> Value {
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train", "namespace": "ml", "creationTimestamp": null},
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "suspend": false,
            "template": {
                "metadata": {"creationTimestamp": null},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "train", "image": "ghcr.io/example/train:1",
                                    "resources": {"requests": {"cpu": "4"}}}]
                }
            }
        }
    });
    if !annotations.is_empty() {
        job["metadata"]["annotations"] = annotations
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    job
}

fn review(kind: (&str, &str, &str), object: &Value) -> Value {
    let (group, version, kind) = kind;
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b3e5a9d2-0c41-4f57-9a55-1f7e2c3d4e5f",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "jobs"},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": "jobs"},
            "name": "train",
            "namespace": "ml",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "uid": "1", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

fn job_review(object: &Value) -> Value {
    review(("batch", "v1", "Job"), object)
}

async fn post_review(client: &reqwest::Client, addr: SocketAddr, review: &Value) -> Value {
    let response = client
        .post(format!("https://{addr}/mutate"))
        .json(review)
        .send()
        .await
        .expect("POST /mutate");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON AdmissionReview");
    assert_eq!(body["apiVersion"], json!("admission.k8s.io/v1"));
    assert_eq!(body["kind"], json!("AdmissionReview"));
    assert_eq!(
        body["response"]["uid"],
        json!("b3e5a9d2-0c41-4f57-9a55-1f7e2c3d4e5f")
    );
    body["response"].clone()
}

/// The object after the response's JSON patch (which travels as bytes).
fn applied(object: &Value, response: &Value) -> Value {
    let mut doc = object.clone();
    if let Some(bytes) = response.get("patch") {
        let bytes: Vec<u8> = serde_json::from_value(bytes.clone()).expect("patch bytes");
        let patch: Patch = serde_json::from_slice(&bytes).expect("JSON patch");
        json_patch::patch(&mut doc, &patch).expect("the patch applies");
        assert_eq!(response["patchType"], json!("JSONPatch"));
    }
    doc
}

/// A webhook with a fresh CA and PKCS#8 key, and a client trusting that CA.
struct Fixture {
    metrics: Metrics,
    readiness: Readiness,
    server: Running<WebhookError>,
    client: reqwest::Client,
    _files: TlsFiles,
}

impl Fixture {
    fn start() -> Self {
        install_provider();
        let ca = Ca::new("carbonshift test CA");
        let (cert, key, _) = ca.leaf_with_key();
        let files = TlsFiles::new(&cert, &key);
        let metrics = Metrics::new();
        let readiness = Readiness::new("webhook certificate not loaded");
        let server = start_webhook(files.paths(), state(&metrics, &readiness));
        Self {
            metrics,
            readiness,
            server,
            client: https_client(&[&ca.pem()]),
            _files: files,
        }
    }

    async fn admit(&self, object: &Value) -> Value {
        post_review(&self.client, self.server.addr, &job_review(object)).await
    }
}

// ---------------------------------------------------------------------------------------------
// Admission over HTTPS

#[tokio::test]
async fn an_annotated_job_is_held() {
    let fixture = Fixture::start();
    let object = job(&[
        ("carbonshift.dev/deferrable", "true"),
        ("carbonshift.dev/max-delay", "8h"),
    ]);
    let response = fixture.admit(&object).await;

    assert_eq!(response["allowed"], json!(true));
    assert!(fixture.readiness.is_ready());
    assert!(response.get("warnings").is_none(), "{response}");
    let mut expected = object.clone();
    expected["spec"]["suspend"] = json!(true);
    expected["metadata"]["annotations"]["carbonshift.dev/held"] = json!("true");
    expected["metadata"]["annotations"]["carbonshift.dev/submitted-at"] = json!(NOW);
    assert_eq!(applied(&object, &response), expected);
    assert!(
        fixture
            .metrics
            .encode()
            .contains("carbonshift_webhook_requests_total{result=\"held\"} 1")
    );
    fixture.server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_unannotated_job_is_allowed_untouched() {
    let fixture = Fixture::start();
    let object = job(&[("team", "ml")]);
    let response = fixture.admit(&object).await;
    assert_eq!(response["allowed"], json!(true));
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response.get("patchType").is_none(), "{response}");
    assert!(
        fixture
            .metrics
            .encode()
            .contains("carbonshift_webhook_requests_total{result=\"allowed\"} 1")
    );
}

#[tokio::test]
async fn each_malformed_annotation_is_denied_with_the_exact_message() {
    let fixture = Fixture::start();
    let cases: &[(&str, &str, &str)] = &[
        (
            "carbonshift.dev/deferrable",
            "yes",
            r#"carbonshift.dev/deferrable: "yes" is not a boolean; expected "true" or "false""#,
        ),
        (
            "carbonshift.dev/max-delay",
            "0s",
            r#"carbonshift.dev/max-delay: "0s" is zero; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d); to start the Job without waiting, leave out carbonshift.dev/deferrable or set carbonshift.dev/run-now: "true""#,
        ),
        (
            "carbonshift.dev/max-delay",
            "1.5h",
            r#"carbonshift.dev/max-delay: "1.5h" is not a duration: not a whole number followed by a unit; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)"#,
        ),
        (
            "carbonshift.dev/duration",
            "2x",
            r#"carbonshift.dev/duration: "2x" is not a duration: unknown unit "x"; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)"#,
        ),
        (
            "carbonshift.dev/deadline",
            "2026-05-05 18:00",
            r#"carbonshift.dev/deadline: "2026-05-05 18:00" is not an RFC 3339 time; expected an RFC 3339 time with an offset, such as 2026-05-04T18:00:00Z or 2026-05-04T20:00:00+02:00"#,
        ),
        (
            "carbonshift.dev/forecast",
            "UK_South",
            r#"carbonshift.dev/forecast: "UK_South" is not a CarbonForecast name; expected the name of a CarbonForecast: a DNS-1123 subdomain of at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, such as uk-national"#,
        ),
        (
            "carbonshift.dev/power",
            "1400",
            r#"carbonshift.dev/power: "1400" is not a power: power without a unit; expected a positive power with a unit, such as 1400W or 1.4kW"#,
        ),
        (
            "carbonshift.dev/interruptible",
            "True",
            r#"carbonshift.dev/interruptible: "True" is not a boolean; expected "true" or "false""#,
        ),
        (
            "carbonshift.dev/dry-run",
            "yes",
            r#"carbonshift.dev/dry-run: "yes" is not a boolean; expected "true" or "false""#,
        ),
        (
            "carbonshift.dev/run-now",
            "1",
            r#"carbonshift.dev/run-now: "1" is not a boolean; expected "true" or "false""#,
        ),
    ];
    for (key, value, message) in cases {
        let object = if *key == "carbonshift.dev/deferrable" {
            job(&[(key, value)])
        } else {
            job(&[("carbonshift.dev/deferrable", "true"), (key, value)])
        };
        let response = fixture.admit(&object).await;
        assert_eq!(response["allowed"], json!(false), "{key}: {value}");
        assert_eq!(response["status"]["message"], json!(message));
        assert_eq!(response["status"]["code"], json!(400));
        assert!(response.get("patch").is_none());
    }

    // Deadline and max-delay together.
    let object = job(&[
        ("carbonshift.dev/deferrable", "true"),
        ("carbonshift.dev/deadline", "2026-05-05T18:00:00Z"),
        ("carbonshift.dev/max-delay", "8h"),
    ]);
    let response = fixture.admit(&object).await;
    assert_eq!(response["allowed"], json!(false));
    assert_eq!(
        response["status"]["message"],
        json!(
            r#"carbonshift.dev/deadline ("2026-05-05T18:00:00Z") and carbonshift.dev/max-delay ("8h") are both set; expected at most one of them"#
        )
    );
    let expected = format!(
        "carbonshift_webhook_requests_total{{result=\"denied\"}} {}",
        cases.len() + 1
    );
    assert!(fixture.metrics.encode().contains(&expected));
}

#[tokio::test]
async fn an_infeasible_deadline_is_allowed_with_a_warning() {
    let fixture = Fixture::start();
    let object = job(&[
        ("carbonshift.dev/deferrable", "true"),
        ("carbonshift.dev/deadline", "2026-05-04T10:30:00Z"),
        ("carbonshift.dev/duration", "1h"),
    ]);
    let response = fixture.admit(&object).await;
    assert_eq!(response["allowed"], json!(true));
    assert_eq!(
        response["warnings"],
        json!([
            "carbonshift does not hold this Job: to finish by its carbonshift.dev/deadline \
             2026-05-04T10:30:00Z it had to start by 2026-05-04T09:30:00Z (1h before), which is \
             before now (2026-05-04T10:00:30Z)"
        ])
    );
    let after = applied(&object, &response);
    assert_eq!(after["spec"]["suspend"], json!(false));
    assert!(
        after["metadata"]["annotations"]
            .get("carbonshift.dev/held")
            .is_none()
    );
    assert!(
        fixture
            .metrics
            .encode()
            .contains("carbonshift_webhook_requests_total{result=\"warned\"} 1")
    );
}

#[tokio::test]
async fn a_kueue_queued_job_gets_carbonshifts_entry_in_kueues_admission_gate() {
    let fixture = Fixture::start();
    let mut object = job(&[
        ("carbonshift.dev/deferrable", "true"),
        ("carbonshift.dev/max-delay", "8h"),
        (
            "kueue.x-k8s.io/admission-gated-by",
            "example.com/quota-check",
        ),
    ]);
    object["metadata"]["labels"] = json!({"kueue.x-k8s.io/queue-name": "user-queue"});
    object["spec"]["suspend"] = json!(true);
    let response = fixture.admit(&object).await;
    assert_eq!(response["allowed"], json!(true));
    let held = applied(&object, &response);
    let marks = &held["metadata"]["annotations"];
    assert_eq!(
        marks["kueue.x-k8s.io/admission-gated-by"],
        json!("example.com/quota-check,carbonshift.dev/low-carbon-window")
    );
    assert_eq!(marks["carbonshift.dev/held"], json!("true"));
    assert_eq!(
        marks["carbonshift.dev/held-by"],
        json!("kueue-admission-gate")
    );
    // Kueue's switch is Kueue's: exactly as it came.
    assert_eq!(held["spec"], object["spec"]);
}

#[tokio::test]
async fn a_non_job_object_is_allowed_untouched() {
    let fixture = Fixture::start();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"carbonshift.dev/deferrable": "true"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    let response = post_review(
        &fixture.client,
        fixture.server.addr,
        &review(("", "v1", "Pod"), &pod),
    )
    .await;
    assert_eq!(response["allowed"], json!(true));
    assert!(response.get("patch").is_none(), "{response}");
}

#[tokio::test]
async fn a_malformed_review_body_is_answered_400_and_the_server_carries_on() {
    let fixture = Fixture::start();
    let url = format!("https://{}/mutate", fixture.server.addr);

    // Each answered 400; the message where it is the webhook's own.
    let malformed: [(&str, Option<&str>); 3] = [
        (
            "{not json",
            Some("malformed AdmissionReview: key must be a string at line 1 column 2\n"),
        ),
        (
            r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
            Some("AdmissionReview without a request\n"),
        ),
        (
            r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}"#,
            None,
        ),
    ];
    for (body, message) in malformed {
        let response = fixture
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        if let Some(message) = message {
            assert_eq!(response.text().await.expect("body"), message, "{body}");
        }
    }

    // Larger than any AdmissionReview can be.
    let response = fixture
        .client
        .post(&url)
        .body(vec![b' '; webhook::MAX_BODY_BYTES + 1])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Not the webhook's path or method.
    let response = fixture.client.get(&url).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    // Still serving.
    let response = fixture.admit(&job(&[])).await;
    assert_eq!(response["allowed"], json!(true));
    assert!(
        fixture
            .metrics
            .encode()
            .contains("carbonshift_webhook_requests_total{result=\"error\"} 3")
    );
    fixture.server.stop().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn rsa_pkcs1_ec_sec1_and_pkcs8_keys_all_serve() {
    install_provider();
    let ca = Ca::new("carbonshift test CA");
    let rsa = FixturePublicKey::from_pem(&fixture("rsa-pkcs1.pub.pem"), &rcgen::PKCS_RSA_SHA256);
    let ec =
        FixturePublicKey::from_pem(&fixture("ec-sec1.pub.pem"), &rcgen::PKCS_ECDSA_P256_SHA256);
    let (rsa_cert, rsa_der) = ca.leaf(&rsa);
    let (ec_cert, ec_der) = ca.leaf(&ec);
    let (pkcs8_cert, pkcs8_key, pkcs8_der) = ca.leaf_with_key();
    let cases = [
        ("RSA PKCS#1", rsa_cert, fixture("rsa-pkcs1.key"), rsa_der),
        ("EC SEC1", ec_cert, fixture("ec-sec1.key"), ec_der),
        ("PKCS#8", pkcs8_cert, pkcs8_key, pkcs8_der),
    ];
    assert!(cases[0].2.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(cases[1].2.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    assert!(cases[2].2.starts_with("-----BEGIN PRIVATE KEY-----"));

    let client = https_client(&[&ca.pem()]);
    for (name, cert, key, der) in cases {
        let files = TlsFiles::new(&cert, &key);
        let server = start_webhook(files.paths(), state(&Metrics::new(), &Readiness::default()));
        let response = client
            .post(format!("https://{}/mutate", server.addr))
            .json(&job_review(&job(&[])))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert_eq!(peer_certificate(&response), der, "{name}");
        server
            .stop()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn a_rewritten_certificate_is_served_after_reload() {
    install_provider();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let (old_cert, old_key, old_der) = old_ca.leaf_with_key();
    let (new_cert, new_key, new_der) = new_ca.leaf_with_key();
    let files = TlsFiles::new(&old_cert, &old_key);
    let server = start_webhook(
        files.paths().with_poll_interval(Duration::from_millis(50)),
        state(&Metrics::new(), &Readiness::default()),
    );
    let client = https_client(&[&old_ca.pem(), &new_ca.pem()]);
    let url = format!("https://{}/mutate", server.addr);
    let presented = || async {
        let response = client
            .post(&url)
            .json(&job_review(&job(&[])))
            .send()
            .await
            .expect("POST /mutate");
        assert_eq!(response.status(), StatusCode::OK);
        peer_certificate(&response)
    };
    assert_eq!(presented().await, old_der);

    files.write(&new_cert, &new_key);
    // Poll until the new certificate shows; the bound only keeps a broken build from hanging.
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut seen = presented().await;
    while seen != new_der && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = presented().await;
    }
    assert_eq!(seen, new_der);
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_bad_new_pair_keeps_the_old_certificate_until_a_good_one_arrives() {
    install_provider();
    let ca = Ca::new("carbonshift test CA");
    let (cert_a, key_a, der_a) = ca.leaf_with_key();
    let (cert_b, key_b, der_b) = ca.leaf_with_key();
    let files = TlsFiles::new(&cert_a, &key_a);
    let mut reloader = CertReloader::load(files.paths()).await.expect("load");

    // Serve with the reloader's configuration and drive the reloads by hand.
    let listener = local_listener();
    let addr = listener.local_addr().expect("local address");
    let handle = axum_server::Handle::new();
    let app = webhook::router(state(&Metrics::new(), &Readiness::default()));
    let server = axum_server::tls_rustls::from_tcp_rustls(listener, reloader.config())
        .expect("server")
        .handle(handle.clone());
    let task = tokio::spawn(server.serve(app.into_make_service()));
    let client = https_client(&[&ca.pem()]);
    let presented = || async {
        let response = client
            .post(format!("https://{addr}/mutate"))
            .json(&job_review(&job(&[])))
            .send()
            .await
            .expect("POST /mutate");
        peer_certificate(&response)
    };

    assert!(matches!(reloader.poll().await, Reload::Unchanged));
    assert_eq!(presented().await, der_a);

    // A key from another pair: refused, the old pair stays.
    files.write(&cert_b, &key_a);
    match reloader.poll().await {
        Reload::Failed(e) => assert_eq!(
            e.to_string(),
            format!(
                "the private key in {} does not belong to the certificate in {}",
                files.key().display(),
                files.cert().display()
            )
        ),
        other => panic!("expected a failed reload, got {other:?}"),
    }
    assert_eq!(presented().await, der_a);
    // The same bad pair is not tried again.
    assert!(matches!(reloader.poll().await, Reload::Unchanged));

    // A missing file: refused, the old pair stays.
    std::fs::remove_file(files.key()).expect("remove");
    match reloader.poll().await {
        Reload::Failed(WebhookError::ReadFile { what, path, .. }) => {
            assert_eq!((what, path), ("key", files.key()));
        }
        other => panic!("expected a read error, got {other:?}"),
    }
    assert_eq!(presented().await, der_a);

    files.write(&cert_b, &key_b);
    assert!(matches!(reloader.poll().await, Reload::Reloaded));
    assert_eq!(presented().await, der_b);

    handle.shutdown();
    task.await.expect("server task").expect("server");
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_with_the_path() {
    install_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = TlsConfigPaths::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let error = webhook::serve(
        "127.0.0.1:0".parse().expect("address"),
        missing,
        state(&Metrics::new(), &Readiness::default()),
        std::future::pending(),
    )
    .await
    .expect_err("no certificate file");
    assert!(
        error.to_string().starts_with(&format!(
            "cannot read the TLS certificate file {}: ",
            dir.path().join("tls.crt").display()
        )),
        "{error}"
    );

    // A port in use.
    let ca = Ca::new("carbonshift test CA");
    let (cert, key, _) = ca.leaf_with_key();
    let files = TlsFiles::new(&cert, &key);
    let taken = local_listener();
    let addr = taken.local_addr().expect("local address");
    let readiness = Readiness::new("webhook certificate not loaded");
    let error = webhook::serve(
        addr,
        files.paths(),
        state(&Metrics::new(), &readiness),
        std::future::pending(),
    )
    .await
    .expect_err("address in use");
    assert!(
        matches!(error, WebhookError::Bind { addr: a, .. } if a == addr),
        "{error}"
    );
    assert!(!readiness.is_ready());
}

// ---------------------------------------------------------------------------------------------
// Metrics and health over HTTP

#[tokio::test]
async fn metrics_and_health_are_served_and_readiness_follows_the_webhook() {
    install_provider();
    let metrics = Metrics::new();
    let readiness = Readiness::new("webhook certificate not loaded");
    let health = start_http(HttpState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    });
    let client = http_client();
    let base = format!("http://{}", health.addr);
    let get = |path: &'static str| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let response = client.get(url).send().await.expect("GET");
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (status, content_type, response.text().await.expect("body"))
        }
    };

    let (status, _, body) = get("/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, _, body) = get("/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: webhook certificate not loaded\n"
        )
    );

    // The webhook marks the process ready once it serves with a certificate.
    let ca = Ca::new("carbonshift test CA");
    let (cert, key, _) = ca.leaf_with_key();
    let files = TlsFiles::new(&cert, &key);
    let webhook = start_webhook(files.paths(), state(&metrics, &readiness));
    let object = job(&[("carbonshift.dev/deferrable", "true")]);
    post_review(
        &https_client(&[&ca.pem()]),
        webhook.addr,
        &job_review(&object),
    )
    .await;
    let (status, _, body) = get("/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));

    let (status, content_type, body) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
    assert!(
        body.contains("carbonshift_webhook_requests_total{result=\"held\"} 1"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let (status, _, _) = get("/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Shutting the webhook down makes the process not ready; health stays ok.
    webhook.stop().await.expect("clean webhook shutdown");
    let (status, _, body) = get("/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n"
        )
    );
    let (status, _, _) = get("/healthz").await;
    assert_eq!(status, StatusCode::OK);

    health.stop().await.expect("clean health shutdown");
    assert!(client.get(format!("{base}/healthz")).send().await.is_err());
}

#[tokio::test]
async fn the_metrics_server_reports_a_port_in_use() {
    let taken = local_listener();
    let addr = taken.local_addr().expect("local address");
    let error = http::serve(
        addr,
        HttpState {
            metrics: Metrics::new(),
            readiness: Readiness::default(),
        },
        std::future::pending(),
    )
    .await
    .expect_err("address in use");
    assert!(
        matches!(error, HttpError::Bind { addr: a, .. } if a == addr),
        "{error}"
    );
}

#[test]
fn the_servers_can_be_spawned() {
    // `carbonshift run` spawns both servers on the runtime: their futures must be Send.
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    let state = state(&Metrics::new(), &Readiness::default());
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    spawnable(webhook::serve(
        addr,
        TlsConfigPaths::new("tls.crt", "tls.key"),
        state,
        std::future::pending(),
    ));
    spawnable(http::serve(
        addr,
        HttpState {
            metrics: Metrics::new(),
            readiness: Readiness::default(),
        },
        std::future::pending(),
    ));
}
