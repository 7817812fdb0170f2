//! The objects the load run creates and the writes it makes in place of the missing parts of a
//! cluster (the admission webhook, the kubelet).

use std::path::{Path, PathBuf};
use std::time::Duration;

use carbonshift::api::annotations::AnnotationDefaults;
use carbonshift::api::forecast::IntensityPoint;
use carbonshift::webhook::{Outcome, mutate};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::{Api, Client};
use serde_json::json;

/// Intensities of the static forecast, gCO2eq/kWh.
pub const DIRTY: f64 = 400.0;
pub const CLEAN: f64 = 50.0;

/// `spec.managedBy` of the baseline's Jobs: the Job controller leaves them alone.
pub const BASELINE_MANAGER: &str = "carbonshift.dev/load-baseline";

/// 400 on a one-minute grid from `from` (cut to the minute) to 40 minutes after `clean`, 50 on
/// `[clean, clean + 3 min)`. A one-minute Job costs least in any window inside the clean one and
/// ties go to the earliest start, so every Job plans at exactly `clean`.
pub fn forecast_points(from: DateTime<Utc>, clean: DateTime<Utc>) -> Vec<IntensityPoint> {
    let before = (clean - from).num_minutes() + 1;
    (-before..=40)
        .map(|minute| IntensityPoint {
            start: clean + TimeDelta::minutes(minute),
            intensity: if (0..3).contains(&minute) {
                CLEAN
            } else {
                DIRTY
            },
        })
        .collect()
}

/// A deferrable one-minute Job as its owner writes it (no carbonshift markers yet), allowed to
/// wait `max_delay` (a duration annotation such as `30m`).
pub fn deferrable_job(namespace: &str, name: &str, forecast: &str, max_delay: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"carbonshift.dev/load": "true"},
            "annotations": {
                "carbonshift.dev/deferrable": "true",
                "carbonshift.dev/duration": "1m",
                "carbonshift.dev/max-delay": max_delay,
                "carbonshift.dev/forecast": forecast,
                "carbonshift.dev/power": "300W",
            },
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "main",
                        "image": "busybox:1.36",
                        "command": ["true"],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    }],
                },
            },
        },
    }))
    .expect("a valid Job")
}

/// `job` as the admission webhook stores it: the library's [`mutate`] decides on a CREATE
/// review of it at `now`, and its JSON patch is applied. Panics unless the decision is to hold.
pub fn held_by_webhook(job: &Job, defaults: &AnnotationDefaults, now: DateTime<Utc>) -> Job {
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-4000-8000-000000000000",
            "kind": {"group": "batch", "version": "v1", "kind": "Job"},
            "resource": {"group": "batch", "version": "v1", "resource": "jobs"},
            "name": job.metadata.name,
            "namespace": job.metadata.namespace,
            "operation": "CREATE",
            "userInfo": {"username": "carbonshift-load"},
            "object": job,
            "dryRun": false,
        }
    }))
    .expect("an AdmissionReview");
    let request: AdmissionRequest<DynamicObject> = review.try_into().expect("a request");
    let (response, outcome) = mutate(&request, defaults, now);
    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: false
        },
        "the webhook would not hold the load Job: {response:?}"
    );
    let patch: json_patch::Patch =
        serde_json::from_slice(response.patch.as_deref().expect("a patch")).expect("JSON patch");
    let mut value = serde_json::to_value(job).expect("Job JSON");
    json_patch::patch(&mut value, &patch).expect("the webhook's patch applies");
    serde_json::from_value(value).expect("a Job")
}

/// What every Job of the run shares: its forecast, its maximum delay and the webhook's defaults.
pub struct Template {
    pub forecast: String,
    pub max_delay: String,
    pub defaults: AnnotationDefaults,
}

impl Template {
    /// Job `name` in `namespace` as the webhook stores it when it is created now.
    pub fn held(&self, namespace: &str, name: &str) -> Job {
        held_by_webhook(
            &deferrable_job(namespace, name, &self.forecast, &self.max_delay),
            &self.defaults,
            Utc::now(),
        )
    }
}

/// Whether a client error is worth another attempt (throttling, server trouble, transport).
pub fn transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Creates `job`, retrying transient failures up to 5 times; panics on anything else.
pub async fn create_job(api: &Api<Job>, job: &Job) {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    for attempt in 1..=5 {
        match api.create(&PostParams::default(), job).await {
            Ok(_) => return,
            Err(e) if transient(&e) && attempt < 5 => {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => panic!("creating Job {name}: {e}"),
        }
    }
}

fn from_jiff(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), 0).expect("a representable time")
}

/// `metav1.Time` as the API server writes it: RFC 3339 in whole seconds.
fn kube_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Writes the Job's status as the Job controller does when its one pod succeeded (no kubelet
/// runs pods here): `SuccessCriteriaMet` then `Complete`, `Suspended` turned `False`, `startTime`
/// (kept if set), `completionTime` not before it, `succeeded: 1`, no active, ready, terminating
/// or uncounted pods. A merge patch on `/status` guarded by the `resourceVersion` read, read
/// again and retried on a conflict (the Job controller writes the same status). Returns the
/// number of conflicts.
pub async fn complete_job_status(jobs: &Api<Job>, name: &str) -> usize {
    let mut conflicts = 0;
    for attempt in 1..=20u64 {
        let job = match jobs.get(name).await {
            Ok(job) => job,
            Err(e) if transient(&e) && attempt < 20 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => panic!("reading Job {name}: {e}"),
        };
        let status = job.status.clone().unwrap_or_default();
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
        let start = status.start_time.as_ref().map(|t| from_jiff(&t.0));
        let completion = start.map_or(now, |s| s.max(now));
        let start = start.unwrap_or(now);
        let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(1);
        let mut conditions: Vec<serde_json::Value> = status
            .conditions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ != "SuccessCriteriaMet" && c.type_ != "Complete")
            .map(|mut c| {
                if c.type_ == "Suspended" && c.status == "True" {
                    c.status = "False".to_string();
                    c.reason = Some("JobResumed".to_string());
                    c.message = Some("Job resumed".to_string());
                }
                serde_json::to_value(c).expect("condition")
            })
            .collect();
        for kind in ["SuccessCriteriaMet", "Complete"] {
            conditions.push(json!({
                "type": kind,
                "status": "True",
                "reason": "CompletionsReached",
                "message": "Reached expected number of succeeded pods",
                "lastProbeTime": kube_time(completion),
                "lastTransitionTime": kube_time(completion),
            }));
        }
        let patch = json!({
            "metadata": {"resourceVersion": job.metadata.resource_version},
            "status": {
                "startTime": kube_time(start),
                "completionTime": kube_time(completion),
                "active": 0,
                "ready": 0,
                "terminating": 0,
                "succeeded": completions,
                "failed": status.failed.unwrap_or(0),
                "uncountedTerminatedPods": {"succeeded": [], "failed": []},
                "conditions": conditions,
            },
        });
        match jobs
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return conflicts,
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 20 => {
                conflicts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) if transient(&e) && attempt < 20 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("writing a Complete status for Job {name} failed: {e}"),
        }
    }
    panic!("writing a Complete status for Job {name}: still conflicting after 20 attempts");
}

/// An identity of its own for a client of the run: ServiceAccount `name` in `namespace` and a
/// kubeconfig in `dir` with a token of it (cluster and CA as in `admin`). A ServiceAccount is what
/// the chart gives the operator, so API Priority and Fairness treats it as in a real cluster
/// (flow schema `service-accounts`, one flow per user), and the audit log tells its requests
/// apart. Returns the kubeconfig's path and the user name the audit log records.
pub async fn identity(
    client: &Client,
    admin: &Kubeconfig,
    namespace: &str,
    name: &str,
    dir: &Path,
) -> (PathBuf, String) {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
    }))
    .expect("a ServiceAccount");
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap_or_else(|e| panic!("creating ServiceAccount {namespace}/{name}: {e}"));
    let request = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": 4 * 3600},
    }))
    .expect("a TokenRequest");
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("requesting a token for {namespace}/{name}: {e}"))
        .status
        .and_then(|s| s.token)
        .unwrap_or_else(|| panic!("the TokenRequest for {namespace}/{name} has no token"));

    let context = admin
        .current_context
        .as_deref()
        .expect("the admin kubeconfig has a current context");
    let cluster_name = admin
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_else(|| panic!("the admin kubeconfig has no context {context:?}"));
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .unwrap_or_else(|| panic!("the admin kubeconfig has no cluster {cluster_name:?}"));
    let token_file = dir.join(format!("{name}.token"));
    write_private(&token_file, token.as_bytes());
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [serde_json::to_value(cluster).expect("cluster JSON")],
        "users": [{"name": name, "user": {"tokenFile": token_file}}],
        "contexts": [{"name": name, "context": {"cluster": cluster_name, "user": name}}],
        "current-context": name,
    });
    let path = dir.join(format!("{name}.kubeconfig"));
    // JSON is YAML: kube reads it as a kubeconfig.
    write_private(
        &path,
        serde_json::to_string_pretty(&kubeconfig)
            .expect("kubeconfig JSON")
            .as_bytes(),
    );
    (path, format!("system:serviceaccount:{namespace}:{name}"))
}

/// Binds the ServiceAccounts `accounts` of `namespace` to `cluster-admin` with
/// ClusterRoleBinding `name`.
pub async fn bind_cluster_admin(client: &Client, name: &str, namespace: &str, accounts: &[&str]) {
    let subjects: Vec<serde_json::Value> = accounts
        .iter()
        .map(|a| json!({"kind": "ServiceAccount", "name": a, "namespace": namespace}))
        .collect();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"carbonshift.dev/load": "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": subjects,
    }))
    .expect("a ClusterRoleBinding");
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("creating ClusterRoleBinding {name}: {e}"));
}

/// A client with the kubeconfig at `path`.
pub async fn client_from(path: &Path) -> Client {
    let config = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Client::try_from(config).unwrap_or_else(|e| panic!("a client for {}: {e}", path.display()))
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    std::io::Write::write_all(&mut file, bytes)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
