//! The RayJob adapter (`ray.io/v1`, KubeRay): `spec.suspend` is the switch (while it is on,
//! KubeRay creates no Ray cluster; turned on while the job runs, KubeRay deletes the cluster), the
//! head and every worker group of `spec.rayClusterSpec` the pod sets, and
//! `status.jobDeploymentStatus` with `status.jobStatus` the end.
//!
//! KubeRay refuses to suspend a RayJob that keeps its Ray cluster when the job finishes ("a RayJob
//! with shutdownAfterJobFinishes set to false is not allowed to be suspended") or that runs on an
//! existing cluster ("the ClusterSelector mode doesn't support the suspend operation"), and
//! suspending a running RayJob deletes its Ray cluster without a graceful stop, so it cannot be
//! paused and resumed: the webhook refuses to hold such RayJobs, and refuses `interruptible` for
//! every RayJob, with messages that say what to change.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;

use super::fields;
use super::fields::{
    array, int, malformed, object as object_at, pod_spec, pods, resource, string, time,
};
use super::{Adapter, AdapterError, HoldCheck, Observed, pointer};
use crate::api::annotations::{DEFERRABLE, Deferral, INTERRUPTIBLE, ManagedElsewhere, PodSet};
use crate::lifecycle::Finished;

/// The RayJob kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct RayJobKind;

/// The `spec.managedBy` of RayJobs the KubeRay operator manages (also the default).
pub const KUBERAY_OPERATOR: &str = "ray.io/kuberay-operator";

static RESOURCE: LazyLock<ApiResource> =
    LazyLock::new(|| resource("ray.io", "v1", "RayJob", "rayjobs"));

const KIND: &str = "RayJob";
const CLUSTER: &str = "spec.rayClusterSpec";

impl Adapter for RayJobKind {
    fn resource(&self) -> &ApiResource {
        &RESOURCE
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn suspend_path(&self) -> &'static [&'static str] {
        &["spec", "suspend"]
    }

    /// The head (one pod) and each worker group: `replicas` kept within `minReplicas` and
    /// `maxReplicas` (as KubeRay does without autoscaling) × `numOfHosts` (default 1); a
    /// suspended group runs none. A RayJob on an existing cluster (`clusterSelector`) has none of
    /// its own. The submitter pod is not counted.
    fn pod_sets(&self, object: &DynamicObject) -> Result<Vec<PodSet>, AdapterError> {
        let Some(cluster) = object_at(KIND, object.data.get("spec"), "rayClusterSpec", CLUSTER)?
        else {
            return Ok(Vec::new());
        };
        let cluster = Value::Object(cluster.clone());
        let head_path = format!("{CLUSTER}.headGroupSpec.template.spec");
        let mut sets = vec![PodSet {
            pod: pod_spec(
                KIND,
                &cluster,
                &["headGroupSpec", "template", "spec"],
                &head_path,
            )?,
            path: head_path,
            count: 1,
        }];
        let groups = array(
            KIND,
            Some(&cluster),
            "workerGroupSpecs",
            "spec.rayClusterSpec.workerGroupSpecs",
        )?;
        for (i, group) in groups.iter().enumerate() {
            let name = group
                .get("groupName")
                .and_then(Value::as_str)
                .map_or_else(|| i.to_string(), str::to_string);
            let base = format!("{CLUSTER}.workerGroupSpecs[{name}]");
            if !group.is_object() {
                return Err(malformed(KIND, &base, format!("{group} is not an object")));
            }
            let field = |key: &str| int(KIND, Some(group), key, &format!("{base}.{key}"));
            let min = field("minReplicas")?.unwrap_or(0).max(0);
            let max = field("maxReplicas")?
                .unwrap_or(i64::from(i32::MAX))
                .max(min);
            let replicas = field("replicas")?.unwrap_or(min).clamp(min, max);
            let hosts = field("numOfHosts")?.unwrap_or(1);
            let suspended = group.get("suspend").and_then(Value::as_bool) == Some(true);
            let path = format!("{base}.template.spec");
            sets.push(PodSet {
                pod: pod_spec(KIND, group, &["template", "spec"], &path)?,
                count: if suspended {
                    0
                } else {
                    pods(replicas).saturating_mul(pods(hosts))
                },
                path,
            });
        }
        Ok(sets)
    }

    /// `jobDeploymentStatus` `Complete` with `jobStatus` `SUCCEEDED` is a success, `Complete`
    /// otherwise or `Failed` a failure (as Kueue reads a RayJob), at `status.endTime`; running
    /// while `jobDeploymentStatus` is `Running`.
    fn observed(&self, object: &DynamicObject, now: DateTime<Utc>) -> Observed {
        let data = &object.data;
        let deployment = string(data, &["status", "jobDeploymentStatus"]);
        let end = time(pointer(data, &["status", "endTime"])).unwrap_or(now);
        let finished = match deployment {
            Some("Complete") if string(data, &["status", "jobStatus"]) == Some("SUCCEEDED") => {
                Some(Finished::Succeeded(end))
            }
            Some("Complete" | "Failed") => Some(Finished::Failed(end)),
            _ => None,
        };
        Observed {
            active: i32::from(deployment == Some("Running")),
            start_time: time(pointer(data, &["status", "startTime"])),
            finished,
        }
    }

    fn managed_elsewhere(&self, object: &DynamicObject) -> Option<ManagedElsewhere> {
        fields::managed_elsewhere(object, &["spec", "managedBy"], KUBERAY_OPERATOR)
    }

    /// Suspending a running RayJob deletes its Ray cluster without a graceful stop.
    fn can_pause(&self) -> bool {
        false
    }

    /// KubeRay's conditions for suspending, and no pause (module documentation).
    fn check_hold(&self, object: &DynamicObject, deferral: &Deferral) -> HoldCheck {
        let spec = object.data.get("spec");
        let selector = spec
            .and_then(|s| s.get("clusterSelector"))
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty());
        let shutdown = spec
            .and_then(|s| s.get("shutdownAfterJobFinishes"))
            .and_then(Value::as_bool)
            == Some(true);
        let refusal = if selector {
            Some(format!(
                "spec.clusterSelector is set: a RayJob that runs on an existing Ray cluster cannot be suspended (KubeRay: \"the ClusterSelector mode doesn't support the suspend operation\"), so carbonshift cannot hold it; give the RayJob its own spec.rayClusterSpec, or remove {DEFERRABLE}"
            ))
        } else if !shutdown {
            Some(format!(
                "spec.shutdownAfterJobFinishes must be true for carbonshift to hold a RayJob: KubeRay suspends only a RayJob that deletes its Ray cluster when the job finishes (\"a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended\"); set spec.shutdownAfterJobFinishes: true, or remove {DEFERRABLE}"
            ))
        } else if deferral.interruptible {
            Some(format!(
                "{INTERRUPTIBLE}: \"true\" is not supported for a RayJob: suspending a running RayJob deletes its Ray cluster without a graceful stop, so it cannot be paused between windows and resumed; remove {INTERRUPTIBLE} (the RayJob is then held until its planned start and runs to the end)"
            ))
        } else {
            None
        };
        HoldCheck {
            refusal,
            warnings: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::annotations;
    use crate::workload::tests::{deferral, example, t};
    use serde_json::json;

    #[test]
    fn the_head_and_every_worker_group_are_pod_sets() {
        let job = example("rayjob.yaml");
        assert_eq!(RayJobKind.suspend_path(), ["spec", "suspend"]);
        let sets = RayJobKind.pod_sets(&job).unwrap_or_else(|e| panic!("{e}"));
        let shape: Vec<(&str, u32)> = sets.iter().map(|s| (s.path.as_str(), s.count)).collect();
        assert_eq!(
            shape,
            [
                ("spec.rayClusterSpec.headGroupSpec.template.spec", 1),
                ("spec.rayClusterSpec.workerGroupSpecs[gpu].template.spec", 4),
            ]
        );
        let power = annotations::estimate_power(&sets, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(power.watts, 8.0 * 10.0 + 4.0 * (700.0 + 8.0 * 10.0));
        assert_eq!(RayJobKind.managed_elsewhere(&job), None);
    }

    #[test]
    fn worker_counts_are_kept_within_their_bounds_times_hosts() {
        let counts = |group: Value| {
            let mut job = example("rayjob.yaml");
            job.data["spec"]["rayClusterSpec"]["workerGroupSpecs"] = json!([group]);
            RayJobKind
                .pod_sets(&job)
                .unwrap_or_else(|e| panic!("{e}"))
                .last()
                .map(|s| s.count)
        };
        let group = |extra: Value| {
            let mut g =
                json!({"groupName": "w", "minReplicas": 2, "maxReplicas": 6, "template": {}});
            if let (Some(g), Some(extra)) = (g.as_object_mut(), extra.as_object()) {
                g.extend(extra.clone());
            }
            g
        };
        assert_eq!(counts(group(json!({"replicas": 4}))), Some(4));
        assert_eq!(counts(group(json!({"replicas": 0}))), Some(2));
        assert_eq!(counts(group(json!({"replicas": 9}))), Some(6));
        assert_eq!(
            counts(group(json!({"replicas": 3, "numOfHosts": 4}))),
            Some(12)
        );
        assert_eq!(
            counts(group(json!({"replicas": 3, "suspend": true}))),
            Some(0)
        );
        let mut on_existing = example("rayjob.yaml");
        on_existing.data["spec"] =
            json!({"entrypoint": "x", "clusterSelector": {"ray.io/cluster": "c"}});
        assert_eq!(RayJobKind.pod_sets(&on_existing).map(|s| s.len()), Ok(0));
    }

    #[test]
    fn phases_come_from_the_deployment_and_job_status() {
        let now = t("2026-05-04T12:00:00Z");
        let with_status = |status: Value| {
            let mut job = example("rayjob.yaml");
            job.data["status"] = status;
            RayJobKind.observed(&job, now)
        };
        let running = with_status(
            json!({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING",
            "startTime": "2026-05-04T10:00:00Z", "rayClusterName": "train-rayjob-abcde"}),
        );
        assert_eq!(running.active, 1);
        assert_eq!(running.start_time, Some(t("2026-05-04T10:00:00Z")));
        assert_eq!(running.finished, None);
        let done = with_status(
            json!({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED",
            "startTime": "2026-05-04T10:00:00Z", "endTime": "2026-05-04T11:00:00Z"}),
        );
        assert_eq!(
            done.finished,
            Some(Finished::Succeeded(t("2026-05-04T11:00:00Z")))
        );
        let stopped =
            with_status(json!({"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}));
        assert_eq!(stopped.finished, Some(Finished::Failed(now)));
        let failed = with_status(
            json!({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED",
            "endTime": "2026-05-04T11:30:00Z", "reason": "DeadlineExceeded"}),
        );
        assert_eq!(
            failed.finished,
            Some(Finished::Failed(t("2026-05-04T11:30:00Z")))
        );
        for pending in ["", "Initializing", "Suspended", "Suspending", "Waiting"] {
            let o = with_status(json!({"jobDeploymentStatus": pending}));
            assert_eq!(o, Observed::default(), "{pending}");
        }
    }

    #[test]
    fn kuberays_suspend_rules_and_no_pause_are_refused_with_what_to_change() {
        let held = deferral(false);
        let job = example("rayjob.yaml");
        assert_eq!(RayJobKind.check_hold(&job, &held), HoldCheck::default());
        assert!(!RayJobKind.can_pause());

        let mut keeps_cluster = example("rayjob.yaml");
        keeps_cluster.data["spec"]["shutdownAfterJobFinishes"] = json!(false);
        assert_eq!(
            RayJobKind
                .check_hold(&keeps_cluster, &held)
                .refusal
                .as_deref(),
            Some(
                "spec.shutdownAfterJobFinishes must be true for carbonshift to hold a RayJob: KubeRay suspends only a RayJob that deletes its Ray cluster when the job finishes (\"a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended\"); set spec.shutdownAfterJobFinishes: true, or remove carbonshift.dev/deferrable"
            )
        );
        let mut unset = example("rayjob.yaml");
        if let Some(spec) = unset.data["spec"].as_object_mut() {
            spec.remove("shutdownAfterJobFinishes");
        }
        assert!(RayJobKind.check_hold(&unset, &held).refusal.is_some());

        let mut on_existing = example("rayjob.yaml");
        on_existing.data["spec"]["clusterSelector"] = json!({"ray.io/cluster": "shared"});
        assert_eq!(
            RayJobKind
                .check_hold(&on_existing, &held)
                .refusal
                .as_deref(),
            Some(
                "spec.clusterSelector is set: a RayJob that runs on an existing Ray cluster cannot be suspended (KubeRay: \"the ClusterSelector mode doesn't support the suspend operation\"), so carbonshift cannot hold it; give the RayJob its own spec.rayClusterSpec, or remove carbonshift.dev/deferrable"
            )
        );
        assert_eq!(
            RayJobKind
                .check_hold(&job, &deferral(true))
                .refusal
                .as_deref(),
            Some(
                "carbonshift.dev/interruptible: \"true\" is not supported for a RayJob: suspending a running RayJob deletes its Ray cluster without a graceful stop, so it cannot be paused between windows and resumed; remove carbonshift.dev/interruptible (the RayJob is then held until its planned start and runs to the end)"
            )
        );
    }
}
