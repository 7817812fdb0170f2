//! The adapters of Kubeflow training-operator v1's jobs (`kubeflow.org/v1`): PyTorchJob and
//! MPIJob. Both keep their switch at `spec.runPolicy.suspend` ("If a Job is suspended after
//! creation (i.e. the flag goes from false to true), the Job controller will delete all active
//! Pods and PodGroups associated with this Job. Users must design their workload to gracefully
//! handle this." — so an interruptible one, which checkpoints, can be paused and resumed), a pod
//! set per replica type (`Master`, `Worker`; `Launcher`, `Worker`) of its `replicas` (default 1),
//! and the training-operator's `Succeeded`/`Failed` conditions as the end.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;

use super::fields::{
    condition_true, int, malformed, object as object_at, pod_spec, pods, resource, sum, time,
};
use super::{Adapter, AdapterError, Observed};
use crate::api::annotations::{ManagedElsewhere, PodSet};
use crate::lifecycle::Finished;

/// The `spec.runPolicy.managedBy` of jobs the training-operator manages (also the default).
pub const TRAINING_OPERATOR: &str = "kubeflow.org/training-operator";

/// The PyTorchJob kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct PyTorchJobKind;

/// The MPIJob kind (training-operator v1's, not mpi-operator's `kubeflow.org/v2beta1`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MpiJobKind;

static PYTORCH: LazyLock<ApiResource> =
    LazyLock::new(|| resource("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs"));
static MPI: LazyLock<ApiResource> =
    LazyLock::new(|| resource("kubeflow.org", "v1", "MPIJob", "mpijobs"));

/// One pod set per entry of `spec.<specs>`, in the order of the replica type names.
fn replica_pod_sets(
    kind: &'static str,
    object: &DynamicObject,
    specs: &str,
) -> Result<Vec<PodSet>, AdapterError> {
    let spec = object.data.get("spec");
    let Some(replicas) = object_at(kind, spec, specs, &format!("spec.{specs}"))? else {
        return Ok(Vec::new());
    };
    // serde_json's map keeps keys sorted: the same order every time.
    replicas
        .iter()
        .map(|(name, replica)| {
            let base = format!("spec.{specs}[{name}]");
            if !replica.is_object() {
                return Err(malformed(
                    kind,
                    &base,
                    format!("{replica} is not an object"),
                ));
            }
            let count = int(kind, Some(replica), "replicas", &format!("{base}.replicas"))?;
            let path = format!("{base}.template.spec");
            Ok(PodSet {
                pod: pod_spec(kind, replica, &["template", "spec"], &path)?,
                count: pods(count.unwrap_or(1)),
                path,
            })
        })
        .collect()
}

/// `Succeeded` or `Failed` condition `True`; running while a replica has active pods.
fn replica_observed(object: &DynamicObject, now: DateTime<Utc>) -> Observed {
    let status = object.data.get("status");
    let completion = time(status.and_then(|s| s.get("completionTime")));
    let finished = match (
        condition_true(status, "Succeeded"),
        condition_true(status, "Failed"),
    ) {
        (Some(at), _) => Some(Finished::Succeeded(at.or(completion).unwrap_or(now))),
        (None, Some(at)) => Some(Finished::Failed(at.or(completion).unwrap_or(now))),
        (None, None) => None,
    };
    let replicas: Vec<Value> = status
        .and_then(|s| s.get("replicaStatuses"))
        .and_then(Value::as_object)
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    Observed {
        active: sum(replicas, "active"),
        start_time: time(status.and_then(|s| s.get("startTime"))),
        finished,
    }
}

fn replica_managed_elsewhere(object: &DynamicObject) -> Option<ManagedElsewhere> {
    super::fields::managed_elsewhere(
        object,
        &["spec", "runPolicy", "managedBy"],
        TRAINING_OPERATOR,
    )
}

macro_rules! training_operator_kind {
    ($type:ty, $kind:literal, $resource:ident, $specs:literal) => {
        impl Adapter for $type {
            fn resource(&self) -> &ApiResource {
                &$resource
            }

            fn kind(&self) -> &'static str {
                $kind
            }

            fn suspend_path(&self) -> &'static [&'static str] {
                &["spec", "runPolicy", "suspend"]
            }

            fn pod_sets(&self, object: &DynamicObject) -> Result<Vec<PodSet>, AdapterError> {
                replica_pod_sets($kind, object, $specs)
            }

            fn observed(&self, object: &DynamicObject, now: DateTime<Utc>) -> Observed {
                replica_observed(object, now)
            }

            fn managed_elsewhere(&self, object: &DynamicObject) -> Option<ManagedElsewhere> {
                replica_managed_elsewhere(object)
            }

            /// Suspending deletes the pods; they are re-created at resume (module documentation).
            fn can_pause(&self) -> bool {
                true
            }
        }
    };
}

training_operator_kind!(PyTorchJobKind, "PyTorchJob", PYTORCH, "pytorchReplicaSpecs");
training_operator_kind!(MpiJobKind, "MPIJob", MPI, "mpiReplicaSpecs");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::annotations;
    use crate::workload::patch::suspend_operation;
    use crate::workload::tests::{example, t};
    use serde_json::json;

    fn shape(adapter: &dyn Adapter, file: &str) -> (Vec<(String, u32)>, f64) {
        let sets = adapter
            .pod_sets(&example(file))
            .unwrap_or_else(|e| panic!("{e}"));
        let power = annotations::estimate_power(&sets, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        (
            sets.into_iter().map(|s| (s.path, s.count)).collect(),
            power.watts,
        )
    }

    #[test]
    fn every_replica_spec_is_a_pod_set_of_its_replicas() {
        let (sets, watts) = shape(&PyTorchJobKind, "pytorchjob.yaml");
        assert_eq!(
            sets,
            [
                (
                    "spec.pytorchReplicaSpecs[Master].template.spec".to_string(),
                    1
                ),
                (
                    "spec.pytorchReplicaSpecs[Worker].template.spec".to_string(),
                    3
                ),
            ]
        );
        assert_eq!(watts, 4.0 * (2.0 * 700.0 + 8.0 * 10.0));
        let (sets, watts) = shape(&MpiJobKind, "mpijob.yaml");
        assert_eq!(
            sets,
            [
                (
                    "spec.mpiReplicaSpecs[Launcher].template.spec".to_string(),
                    1
                ),
                ("spec.mpiReplicaSpecs[Worker].template.spec".to_string(), 2),
            ]
        );
        assert_eq!(watts, 10.0 + 2.0 * (8.0 * 700.0 + 32.0 * 10.0));
        let mut bad = example("pytorchjob.yaml");
        bad.data["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = json!(1.5);
        let error = PyTorchJobKind.pod_sets(&bad).map(|_| ()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.pytorchReplicaSpecs[Worker].replicas: 1.5 is not an integer"
        );
    }

    #[test]
    fn the_switch_is_in_the_run_policy() {
        let mut job = example("pytorchjob.yaml");
        assert_eq!(
            PyTorchJobKind.suspend_path(),
            ["spec", "runPolicy", "suspend"]
        );
        assert!(!PyTorchJobKind.is_suspended(&job));
        let op = suspend_operation(&job.data, PyTorchJobKind.suspend_path())
            .unwrap_or_else(|| panic!("already on"));
        json_patch::patch(&mut job.data, &json_patch::Patch(vec![op]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            job.data["spec"]["runPolicy"],
            json!({"cleanPodPolicy": "None", "suspend": true})
        );
        assert!(PyTorchJobKind.is_suspended(&job));
        let mut mpi = example("mpijob.yaml");
        mpi.data["spec"]["runPolicy"]["managedBy"] = json!(TRAINING_OPERATOR);
        assert_eq!(MpiJobKind.managed_elsewhere(&mpi), None);
        mpi.data["spec"]["runPolicy"]["managedBy"] = json!("kueue.x-k8s.io/multikueue");
        assert!(matches!(
            MpiJobKind.managed_elsewhere(&mpi),
            Some(ManagedElsewhere::ManagedBy(_))
        ));
    }

    #[test]
    fn phases_come_from_the_training_operators_conditions() {
        let now = t("2026-05-04T12:00:00Z");
        let with_status = |status: Value| {
            let mut job = example("pytorchjob.yaml");
            job.data["status"] = status;
            PyTorchJobKind.observed(&job, now)
        };
        let running = with_status(json!({
            "startTime": "2026-05-04T10:00:00Z",
            "replicaStatuses": {"Master": {"active": 1}, "Worker": {"active": 3}},
            "conditions": [
                {"type": "Created", "status": "True", "reason": "PyTorchJobCreated"},
                {"type": "Running", "status": "True", "reason": "PyTorchJobRunning"}]}));
        assert_eq!(running.active, 4);
        assert_eq!(running.start_time, Some(t("2026-05-04T10:00:00Z")));
        assert_eq!(running.finished, None);
        let done = with_status(json!({
            "completionTime": "2026-05-04T11:00:00Z",
            "replicaStatuses": {"Master": {"succeeded": 1}, "Worker": {"succeeded": 3}},
            "conditions": [
                {"type": "Running", "status": "False", "reason": "PyTorchJobRunning"},
                {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"}]}));
        assert_eq!(
            done.finished,
            Some(Finished::Succeeded(t("2026-05-04T11:00:00Z")))
        );
        let failed = with_status(json!({"conditions": [
            {"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
             "lastTransitionTime": "2026-05-04T11:30:00Z"}]}));
        assert_eq!(
            failed.finished,
            Some(Finished::Failed(t("2026-05-04T11:30:00Z")))
        );
        let suspended = with_status(json!({"conditions": [
            {"type": "Suspended", "status": "True", "reason": "PyTorchJobSuspended"}]}));
        assert_eq!(suspended, Observed::default());
    }
}
