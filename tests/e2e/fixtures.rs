//! The objects the scenarios are made of: the static forecasts' points, the Jobs (a builder
//! with the annotations, the node pool and the simulated run time), the webhook's certificate and
//! registration, and small readers of Jobs.

use carbonshift::api::annotations::{DEADLINE, DEFERRABLE, DURATION, FORECAST, MAX_DELAY, POWER};
use carbonshift::api::forecast::IntensityPoint;
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::ObjectMeta;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

use crate::harness::{POOL_LABEL, SCENARIO_LABEL, kube_time};

/// Intensities of the static forecasts, gCO2eq/kWh.
pub const DIRTY: f64 = 400.0;
pub const CLEAN: f64 = 50.0;

/// A CA and a serving certificate for `host`: (CA PEM, certificate PEM, key PEM).
pub fn certificates(host: &str) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "carbonshift e2e CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
    // An address becomes an IP SAN, a name a DNS SAN (CertificateParams::new decides).
    let mut params = CertificateParams::new(vec![host.to_string()])
        .unwrap_or_else(|e| panic!("{host:?} cannot be put into a certificate: {e}"));
    params
        .distinguished_name
        .push(DnType::CommonName, "carbonshift e2e webhook");
    let key = KeyPair::generate().expect("serving key");
    let cert = params.signed_by(&key, &ca).expect("serving certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// 400 until `clean`, 50 on `[clean, clean + 3 min)`, 400 until 30 min after `clean`; one point a
/// minute, the first three minutes before `clean`.
pub fn forecast_points(clean: DateTime<Utc>) -> Vec<IntensityPoint> {
    grid(
        clean - TimeDelta::minutes(3),
        TimeDelta::minutes(1),
        clean + TimeDelta::minutes(30),
        &[(clean, clean + TimeDelta::minutes(3))],
    )
}

/// Points every `step` from `from` to `until` (inclusive): [`CLEAN`] inside one of the `clean`
/// intervals `[start, end)`, [`DIRTY`] elsewhere.
pub fn grid(
    from: DateTime<Utc>,
    step: TimeDelta,
    until: DateTime<Utc>,
    clean: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Vec<IntensityPoint> {
    let mut points = Vec::new();
    let mut t = from;
    while t <= until {
        let intensity = if clean.iter().any(|(a, b)| *a <= t && t < *b) {
            CLEAN
        } else {
            DIRTY
        };
        points.push(IntensityPoint {
            start: t,
            intensity,
        });
        t += step;
    }
    points
}

/// Builds the Jobs of the scenarios.
#[derive(Debug, Clone)]
pub struct JobBuilder {
    value: serde_json::Value,
}

/// Pod template annotation: how long the node simulator runs the pod, in seconds.
pub const RUN_SECONDS: &str = "e2e.carbonshift.dev/run-seconds";
/// Pod template annotation: `Succeeded` (default) or `Failed`.
pub const OUTCOME: &str = "e2e.carbonshift.dev/outcome";

impl JobBuilder {
    /// A Job without carbonshift annotations: one pod running `true` for 3 s on the simulator.
    pub fn plain(namespace: &str, name: &str, image: &str) -> Self {
        Self {
            value: json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"annotations": {RUN_SECONDS: "3"}},
                        "spec": {
                            "restartPolicy": "Never",
                            "terminationGracePeriodSeconds": 1,
                            "securityContext": {
                                "runAsNonRoot": true,
                                "runAsUser": 65534,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [{
                                "name": "main",
                                "image": image,
                                "command": ["true"],
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "64Mi"},
                                    "limits": {"cpu": "500m", "memory": "128Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }],
                        },
                    },
                },
            }),
        }
    }

    /// [`plain`](Self::plain) plus `deferrable`, `duration: 1m`, `max-delay: 10m`, `forecast`,
    /// `power: 300W`.
    pub fn deferrable(namespace: &str, name: &str, forecast: &str, image: &str) -> Self {
        Self::plain(namespace, name, image)
            .annotation(DEFERRABLE, "true")
            .annotation(DURATION, "1m")
            .annotation(MAX_DELAY, "10m")
            .annotation(FORECAST, forecast)
            .annotation(POWER, "300W")
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.value["metadata"]["annotations"][key] = json!(value);
        self
    }

    pub fn without_annotation(mut self, key: &str) -> Self {
        if let Some(map) = self.value["metadata"]["annotations"].as_object_mut() {
            map.remove(key);
        }
        self
    }

    /// A deadline instead of the max delay.
    pub fn deadline(self, deadline: DateTime<Utc>) -> Self {
        self.without_annotation(MAX_DELAY)
            .annotation(DEADLINE, &kube_time(deadline))
    }

    pub fn suspend(mut self, suspend: bool) -> Self {
        self.value["spec"]["suspend"] = json!(suspend);
        self
    }

    pub fn backoff_limit(mut self, limit: i32) -> Self {
        self.value["spec"]["backoffLimit"] = json!(limit);
        self
    }

    /// Pods only on the nodes of `pool`.
    pub fn pool(mut self, pool: &str) -> Self {
        self.value["spec"]["template"]["spec"]["nodeSelector"] = json!({ POOL_LABEL: pool });
        self
    }

    /// The node simulator runs each pod this long.
    pub fn run_for(mut self, seconds: u32) -> Self {
        self.value["spec"]["template"]["metadata"]["annotations"][RUN_SECONDS] =
            json!(seconds.to_string());
        self
    }

    /// The node simulator fails each pod (exit code 1) at the end of its run.
    pub fn fail(mut self) -> Self {
        self.value["spec"]["template"]["metadata"]["annotations"][OUTCOME] = json!("Failed");
        self
    }

    /// Each pod requests (and is limited to) `count` GPUs.
    pub fn gpus(mut self, count: u32) -> Self {
        let resources = &mut self.value["spec"]["template"]["spec"]["containers"][0]["resources"];
        resources["requests"]["nvidia.com/gpu"] = json!(count.to_string());
        resources["limits"]["nvidia.com/gpu"] = json!(count.to_string());
        self
    }

    pub fn build(self) -> Job {
        serde_json::from_value(self.value).expect("valid Job")
    }

    /// The Job as a JSON manifest (for kubectl).
    pub fn manifest(&self) -> String {
        serde_json::to_string_pretty(&self.value).expect("JSON")
    }
}

/// A webhook configuration calling `url` for Job creations in `namespace` only.
pub fn webhook_configuration(
    name: &str,
    webhook: &str,
    namespace: &str,
    url: String,
    ca_pem: &str,
) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([(SCENARIO_LABEL.to_string(), "true".to_string())].into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: webhook.to_string(),
            admission_review_versions: vec!["v1".to_string()],
            client_config: WebhookClientConfig {
                url: Some(url),
                ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
                service: None,
            },
            failure_policy: Some("Fail".to_string()),
            match_policy: Some("Equivalent".to_string()),
            // Only the scenario's namespace: this webhook never affects anything else.
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".to_string(),
                    operator: "In".to_string(),
                    values: Some(vec![namespace.to_string()]),
                }]),
                match_labels: None,
            }),
            object_selector: None,
            reinvocation_policy: Some("Never".to_string()),
            // CREATE of every kind carbonshift supports (as the chart with every kind turned on).
            rules: Some(
                carbonshift::workload::adapters()
                    .iter()
                    .map(|adapter| {
                        let r = adapter.resource();
                        RuleWithOperations {
                            api_groups: Some(vec![r.group.clone()]),
                            api_versions: Some(vec![r.version.clone()]),
                            operations: Some(vec!["CREATE".to_string()]),
                            resources: Some(vec![r.plural.clone()]),
                            scope: Some("Namespaced".to_string()),
                        }
                    })
                    .collect(),
            ),
            side_effects: "None".to_string(),
            timeout_seconds: Some(10),
            match_conditions: None,
        }]),
    }
}

pub fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

pub fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

pub fn job_condition_true(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}
