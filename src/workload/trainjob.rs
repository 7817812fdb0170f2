//! The TrainJob adapter (`trainer.kubeflow.org/v1alpha1`, Kubeflow Trainer v2): `spec.suspend` is
//! the switch ("suspend defines whether to suspend the running TrainJob"; the Trainer suspends
//! the JobSet it runs as), the training nodes one pod set of `spec.trainer.numNodes` pods with
//! `spec.trainer.resourcesPerNode` each, and the Trainer's `Complete`/`Failed` conditions the end.
//!
//! What a TrainJob's pods are beyond that comes from its runtime (`spec.runtimeRef`, a
//! ClusterTrainingRuntime or TrainingRuntime), which carbonshift does not read: without
//! `resourcesPerNode` (or `numNodes`) the estimate cannot see the runtime's resources, and the
//! webhook says so. The Trainer accepts changes to a TrainJob's scheduling fields only while it is
//! suspended, through `spec.runtimePatches` (Trainer v2.2 and later; `podTemplateOverrides`
//! before) — so they can be changed while carbonshift holds it; carbonshift itself writes only
//! `spec.suspend`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;

use super::fields;
use super::fields::{condition_true, int, malformed, pods, resource, sum};
use super::{Adapter, AdapterError, HoldCheck, Observed, pointer};
use crate::api::annotations::{
    Deferral, ManagedElsewhere, POWER, PodSet, PowerSource, parse_quantity,
};
use crate::lifecycle::Finished;

/// The TrainJob kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainJobKind;

/// The `spec.managedBy` of TrainJobs the Trainer manages (the CRD's default).
pub const TRAINJOB_CONTROLLER: &str = "trainer.kubeflow.org/trainjob-controller";

static RESOURCE: LazyLock<ApiResource> =
    LazyLock::new(|| resource("trainer.kubeflow.org", "v1alpha1", "TrainJob", "trainjobs"));

const KIND: &str = "TrainJob";
const RESOURCES: &str = "spec.trainer.resourcesPerNode";

impl Adapter for TrainJobKind {
    fn resource(&self) -> &ApiResource {
        &RESOURCE
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn suspend_path(&self) -> &'static [&'static str] {
        &["spec", "suspend"]
    }

    /// One pod set: `spec.trainer.numNodes` (default 1) nodes, each a pod whose one container
    /// requests `spec.trainer.resourcesPerNode` (none when unset: the runtime decides).
    fn pod_sets(&self, object: &DynamicObject) -> Result<Vec<PodSet>, AdapterError> {
        let trainer = pointer(&object.data, &["spec", "trainer"]);
        let nodes = int(KIND, trainer, "numNodes", "spec.trainer.numNodes")?.unwrap_or(1);
        let resources = match trainer.and_then(|t| t.get("resourcesPerNode")) {
            None | Some(Value::Null) => None,
            Some(value) => {
                let resources: ResourceRequirements = serde_json::from_value(value.clone())
                    .map_err(|e| malformed(KIND, RESOURCES, e.to_string()))?;
                check_quantities(&resources)?;
                Some(resources)
            }
        };
        let pod = resources.map(|resources| PodSpec {
            containers: vec![Container {
                name: "node".to_string(),
                resources: Some(resources),
                ..Container::default()
            }],
            ..PodSpec::default()
        });
        Ok(vec![PodSet {
            path: "spec.trainer".to_string(),
            pod,
            count: pods(nodes),
        }])
    }

    /// `Complete` or `Failed` condition `True`; running while a child Job is active.
    fn observed(&self, object: &DynamicObject, now: DateTime<Utc>) -> Observed {
        let status = object.data.get("status");
        let finished = match (
            condition_true(status, "Complete"),
            condition_true(status, "Failed"),
        ) {
            (Some(at), _) => Some(Finished::Succeeded(at.unwrap_or(now))),
            (None, Some(at)) => Some(Finished::Failed(at.unwrap_or(now))),
            (None, None) => None,
        };
        let jobs = status
            .and_then(|s| s.get("jobsStatus"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Observed {
            active: sum(jobs, "active"),
            start_time: None,
            finished,
        }
    }

    fn managed_elsewhere(&self, object: &DynamicObject) -> Option<ManagedElsewhere> {
        fields::managed_elsewhere(object, &["spec", "managedBy"], TRAINJOB_CONTROLLER)
    }

    /// The Trainer suspends a running TrainJob's JobSet, whose Jobs delete their pods and
    /// re-create them at resume.
    fn can_pause(&self) -> bool {
        true
    }

    /// A warning when the power estimate cannot see the runtime's resources.
    fn check_hold(&self, object: &DynamicObject, deferral: &Deferral) -> HoldCheck {
        let mut check = HoldCheck::default();
        if !matches!(deferral.power.source, PowerSource::Estimated { .. }) {
            return check;
        }
        let trainer = pointer(&object.data, &["spec", "trainer"]);
        let missing: Vec<&str> = ["numNodes", "resourcesPerNode"]
            .into_iter()
            .filter(|key| trainer.and_then(|t| t.get(*key)).is_none_or(Value::is_null))
            .collect();
        if !missing.is_empty() {
            let fields: Vec<String> = missing
                .iter()
                .map(|k| format!("spec.trainer.{k}"))
                .collect();
            check.warnings.push(format!(
                "{} not set, so the TrainJob's runtime (spec.runtimeRef) decides, which carbonshift does not read: its power estimate counts {}; set {POWER} to the power of the whole TrainJob",
                match fields.as_slice() {
                    [one] => format!("{one} is"),
                    _ => format!("{} are", fields.join(" and ")),
                },
                if missing.contains(&"resourcesPerNode") {
                    "no resources for its nodes"
                } else {
                    "one node"
                }
            ));
        }
        check
    }
}

/// Every quantity in `resources` must be one (the API server checks them only after admission).
fn check_quantities(resources: &ResourceRequirements) -> Result<(), AdapterError> {
    for (map, quantities) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        for (name, quantity) in quantities.iter().flatten() {
            parse_quantity(&quantity.0).map_err(|reason| {
                malformed(
                    KIND,
                    &format!("{RESOURCES}.{map}[{name}]"),
                    format!("{:?} is not a quantity: {reason}", quantity.0),
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::annotations;
    use crate::workload::tests::{deferral, example, t};
    use serde_json::json;

    #[test]
    fn the_example_is_num_nodes_pods_of_resources_per_node() {
        let job = example("trainjob.yaml");
        assert_eq!(TrainJobKind.suspend_path(), ["spec", "suspend"]);
        let sets = TrainJobKind
            .pod_sets(&job)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sets.len(), 1);
        assert_eq!((sets[0].path.as_str(), sets[0].count), ("spec.trainer", 2));
        let power = annotations::estimate_power(&sets, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(power.watts, 2.0 * (4.0 * 700.0 + 16.0 * 10.0));
        assert!(matches!(
            power.source,
            PowerSource::Estimated {
                gpus_per_pod: 4,
                parallelism: 2,
                ..
            }
        ));
        // The CRD defaults managedBy to the Trainer's own.
        let mut managed = example("trainjob.yaml");
        managed.data["spec"]["managedBy"] = json!(TRAINJOB_CONTROLLER);
        assert_eq!(TrainJobKind.managed_elsewhere(&managed), None);
        managed.data["spec"]["managedBy"] = json!("kueue.x-k8s.io/multikueue");
        assert!(matches!(
            TrainJobKind.managed_elsewhere(&managed),
            Some(ManagedElsewhere::ManagedBy(_))
        ));
    }

    #[test]
    fn a_trainjob_without_resources_per_node_is_estimated_from_nothing_and_warned_about() {
        let mut job = example("trainjob.yaml");
        job.data["spec"]["trainer"] = json!({"image": "x"});
        let sets = TrainJobKind
            .pod_sets(&job)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((sets[0].pod.as_ref(), sets[0].count), (None, 1));
        let mut estimated = deferral(false);
        estimated.power.source = PowerSource::Estimated {
            gpus_per_pod: 0,
            cores_per_pod: 0.0,
            parallelism: 1,
        };
        let check = TrainJobKind.check_hold(&job, &estimated);
        assert_eq!(
            check.warnings,
            [
                "spec.trainer.numNodes and spec.trainer.resourcesPerNode are not set, so the TrainJob's runtime (spec.runtimeRef) decides, which carbonshift does not read: its power estimate counts no resources for its nodes; set carbonshift.dev/power to the power of the whole TrainJob"
            ]
        );
        // With carbonshift.dev/power there is nothing to say; the example sets both fields.
        assert_eq!(
            TrainJobKind.check_hold(&job, &deferral(false)),
            HoldCheck::default()
        );
        assert_eq!(
            TrainJobKind
                .check_hold(&example("trainjob.yaml"), &estimated)
                .warnings
                .len(),
            0
        );
        job.data["spec"]["trainer"] = json!({"resourcesPerNode": {"requests": {"cpu": "lots"}}});
        let error = TrainJobKind.pod_sets(&job).map(|_| ()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.trainer.resourcesPerNode.requests[cpu]: \"lots\" is not a quantity: not a number"
        );
    }

    #[test]
    fn phases_come_from_the_trainers_conditions() {
        let now = t("2026-05-04T12:00:00Z");
        let with_status = |status: Value| {
            let mut job = example("trainjob.yaml");
            job.data["status"] = status;
            TrainJobKind.observed(&job, now)
        };
        let running = with_status(json!({"jobsStatus": [
            {"name": "node", "active": 2, "ready": 2, "succeeded": 0, "failed": 0, "suspended": 0}]}));
        assert_eq!((running.active, running.finished), (2, None));
        let done = with_status(json!({"conditions": [
            {"type": "Created", "status": "True", "reason": "JobsCreationSucceeded", "message": "Succeeded to create Jobs", "lastTransitionTime": "2026-05-04T10:00:00Z"},
            {"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "TrainJob is completed", "lastTransitionTime": "2026-05-04T11:30:00Z"}]}));
        assert_eq!(
            done.finished,
            Some(Finished::Succeeded(t("2026-05-04T11:30:00Z")))
        );
        let failed = with_status(json!({"conditions": [
            {"type": "Failed", "status": "True", "reason": "JobsFailed", "message": "x", "lastTransitionTime": "2026-05-04T11:00:00Z"}]}));
        assert!(matches!(failed.finished, Some(Finished::Failed(_))));
        let suspended = with_status(json!({"conditions": [
            {"type": "Suspended", "status": "True", "reason": "Suspended", "message": "TrainJob is suspended", "lastTransitionTime": "2026-05-04T10:00:00Z"}]}));
        assert_eq!(suspended, Observed::default());
    }
}
