//! Trimming the workload objects the controllers cache down to what their decisions read, so
//! that memory stays flat per object (issue 17): the watch cannot filter by annotation, so every
//! object of a watched kind is cached, most of them not carbonshift's.
//!
//! - Every object loses `metadata.managedFields` and kubectl's last-applied annotation.
//! - An object that concerns carbonshift neither by `carbonshift.dev/deferrable` nor by
//!   `carbonshift.dev/held` keeps its metadata only: the reconciler looks at nothing else before
//!   it returns (a later edit that adds the annotation arrives as a whole new object).
//! - In the others, every pod spec (any object with a `containers` list, wherever the kind nests
//!   its templates) keeps only what the power estimate and placement read: the containers' names
//!   and resources, and the pod's scheduling fields.
//!
//! Writes never use the cached copy: the guarded patches test the live object, and a Job that
//! changed under a patch is read again from the API whole.

use kube::core::DynamicObject;
use serde_json::{Map, Value};

use crate::api::annotations::{DEFERRABLE, HELD};

/// kubectl's copy of the last applied manifest: as large as the object itself.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Pod-spec fields kept: what the power estimate ([`crate::api::annotations`]) and placement
/// read.
const POD_FIELDS: [&str; 6] = [
    "containers",
    "initContainers",
    "nodeSelector",
    "affinity",
    "tolerations",
    "overhead",
];

/// Container fields kept.
const CONTAINER_FIELDS: [&str; 2] = ["name", "resources"];

/// Trims `object` in place (module documentation).
pub fn prune(object: &mut DynamicObject) {
    object.metadata.managed_fields = None;
    let concerns = match object.metadata.annotations.as_mut() {
        Some(annotations) => {
            annotations.remove(LAST_APPLIED);
            annotations.contains_key(DEFERRABLE) || annotations.contains_key(HELD)
        }
        None => false,
    };
    if concerns {
        if let Some(spec) = object.data.get_mut("spec") {
            prune_pod_specs(spec);
        }
    } else {
        object.data = Value::Object(Map::new());
    }
}

/// Trims every pod spec below `value`.
fn prune_pod_specs(value: &mut Value) {
    match value {
        Value::Object(map) if map.get("containers").is_some_and(Value::is_array) => {
            map.retain(|key, _| POD_FIELDS.contains(&key.as_str()));
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(containers)) = map.get_mut(list) {
                    for container in containers {
                        if let Value::Object(c) = container {
                            c.retain(|key, _| CONTAINER_FIELDS.contains(&key.as_str()));
                        }
                    }
                }
            }
        }
        Value::Object(map) => map.values_mut().for_each(prune_pod_specs),
        Value::Array(items) => items.iter_mut().for_each(prune_pod_specs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::annotations::AnnotationDefaults;
    use crate::workload::kinds::Kinds;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
    }

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn big_job(annotations: Value) -> DynamicObject {
        object(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {
                "name": "train", "namespace": "ml", "uid": "u1", "resourceVersion": "7",
                "annotations": annotations,
                "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {
                "suspend": true,
                "template": {
                    "metadata": {"labels": {"app": "train"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "volumes": [{"name": "data", "emptyDir": {}}],
                        "nodeSelector": {"pool": "gpu"},
                        "containers": [{
                            "name": "main", "image": "trainer:1",
                            "command": ["python", "train.py"],
                            "env": [{"name": "BIG", "value": "x".repeat(4096)}],
                            "resources": {"requests": {"cpu": "4", "nvidia.com/gpu": "2"}},
                        }],
                    },
                },
            },
            "status": {"active": 0},
        }))
    }

    #[test]
    fn a_deferrable_job_keeps_what_its_decision_reads_and_nothing_more() {
        let annotations = json!({
            "carbonshift.dev/deferrable": "true",
            "carbonshift.dev/duration": "2h",
            "carbonshift.dev/held": "true",
            LAST_APPLIED: "{\"huge\": true}",
        });
        let full = big_job(annotations);
        let mut pruned = full.clone();
        prune(&mut pruned);
        assert!(pruned.metadata.managed_fields.is_none());
        let kept = pruned.metadata.annotations.clone().unwrap_or_default();
        assert!(!kept.contains_key(LAST_APPLIED));
        assert_eq!(kept.len(), 3);
        let pod = &pruned.data["spec"]["template"]["spec"];
        assert_eq!(
            pod,
            &json!({
                "nodeSelector": {"pool": "gpu"},
                "containers": [{"name": "main", "resources": {"requests": {"cpu": "4", "nvidia.com/gpu": "2"}}}],
            })
        );
        assert_eq!(pruned.data["spec"]["suspend"], json!(true));
        assert_eq!(pruned.data["status"], json!({"active": 0}));
        let size = |o: &DynamicObject| serde_json::to_vec(o).map(|v| v.len()).unwrap_or(0);
        assert!(
            size(&pruned) * 5 < size(&full),
            "{} vs {}",
            size(&pruned),
            size(&full)
        );
        // The decision's view of it is the same.
        let adapter = &crate::workload::job::BatchJob;
        let defaults = AnnotationDefaults::default();
        assert_eq!(
            crate::workload::read(adapter, &pruned, &defaults, now()),
            crate::workload::read(adapter, &full, &defaults, now())
        );
    }

    #[test]
    fn a_job_that_is_not_carbonshifts_keeps_its_metadata_only() {
        let mut other = big_job(json!({"team": "ml"}));
        prune(&mut other);
        assert_eq!(other.data, json!({}));
        assert_eq!(other.metadata.name.as_deref(), Some("train"));
        assert_eq!(other.metadata.resource_version.as_deref(), Some("7"));
        // Not carbonshift's (what the workload controller's `concerns_carbonshift` checks, spelt
        // out here: the workload module may not import the controller, tests/walls.rs).
        let annotations = other.metadata.annotations.clone().unwrap_or_default();
        assert!(!annotations.contains_key(DEFERRABLE) && !annotations.contains_key(HELD));
        let mut bare = big_job(Value::Null);
        prune(&mut bare);
        assert_eq!(bare.data, json!({}));
    }

    #[test]
    fn every_kind_reads_the_same_after_pruning() {
        let defaults = AnnotationDefaults::default();
        let files = [
            ("jobset.yaml", "JobSet"),
            ("kueue-job.yaml", "Job"),
            ("mpijob.yaml", "MPIJob"),
            ("pytorchjob.yaml", "PyTorchJob"),
            ("rayjob.yaml", "RayJob"),
            ("trainjob.yaml", "TrainJob"),
        ];
        for (file, kind) in files {
            let adapter = Kinds::all()
                .adapters()
                .into_iter()
                .find(|a| a.kind() == kind)
                .unwrap_or_else(|| panic!("no adapter for {kind}"));
            let mut full = crate::workload::tests::example(file);
            full.metadata
                .annotations
                .get_or_insert_default()
                .insert(HELD.to_string(), "true".to_string());
            let mut pruned = full.clone();
            prune(&mut pruned);
            assert_eq!(
                crate::workload::read(adapter, &pruned, &defaults, now()),
                crate::workload::read(adapter, &full, &defaults, now()),
                "{file}"
            );
            // The pod sets keep their paths, counts and every container's resources.
            let resources = |object: &DynamicObject| {
                adapter.pod_sets(object).map(|sets| {
                    sets.into_iter()
                        .map(|set| {
                            let containers: Vec<_> = set
                                .pod
                                .map(|p| {
                                    p.containers
                                        .into_iter()
                                        .map(|c| (c.name, c.resources))
                                        .collect()
                                })
                                .unwrap_or_default();
                            (set.path, set.count, containers)
                        })
                        .collect::<Vec<_>>()
                })
            };
            assert_eq!(resources(&pruned), resources(&full), "{file}");
        }
    }
}
