//! Where a workload's pods may run, as plain data for the fleet planner
//! ([`crate::planner::fleet::PodPlacement`]): read from a pod template's `nodeSelector` and its
//! required node affinity (`matchExpressions`; `matchFields` pin single nodes by name, which says
//! nothing about a pool, so they are left out). And the patch operations that add a chosen
//! forecast's node selector to the pod templates, to append to the guarded release patch
//! ([`super::patch::release_patch`]): allowed on a suspended Job that never started (KEP-2926).

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, TestOperation};
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::Value;

use crate::planner::fleet::{
    Incompatible, NodeRequirement, NodeTerm, Operator, PodPlacement, selector_additions,
};

/// Why the node selector cannot be added.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectorPatchError {
    /// A pod template sets a key of the selector to another value (never overwritten).
    #[error("{path}: {error}")]
    Conflict {
        /// The pod spec's path, for example `spec.template.spec`.
        path: String,
        /// The conflicting key.
        error: Incompatible,
    },
    /// The object has no pod spec at a given path.
    #[error("{0}: no pod spec there")]
    NoPodSpec(String),
}

/// The operations that add `selector` to the `nodeSelector` of the pod specs at `pod_specs`
/// (each a path of keys, array indices as decimal strings, for example
/// `["spec", "template", "spec"]`) of the workload `data`. Each key is added only where missing;
/// a pod spec that already has `nodeSelector` is guarded by a `test` of its current value, so that
/// the release fails instead of overwriting a selector changed since. A key set to another value
/// is an error naming the pod spec and the key.
pub fn node_selector_operations(
    data: &Value,
    pod_specs: &[Vec<String>],
    selector: &BTreeMap<String, String>,
) -> Result<Vec<PatchOperation>, SelectorPatchError> {
    let mut ops = Vec::new();
    for path in pod_specs {
        let shown = path.join(".");
        let spec = path
            .iter()
            .try_fold(data, |v, key| match v {
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => v.get(key),
            })
            .filter(|v| v.is_object())
            .ok_or_else(|| SelectorPatchError::NoPodSpec(shown.clone()))?;
        let current = spec.get("nodeSelector").filter(|v| !v.is_null());
        let own: BTreeMap<String, String> = current
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let add =
            selector_additions(&own, selector).map_err(|error| SelectorPatchError::Conflict {
                path: shown.clone(),
                error,
            })?;
        if add.is_empty() {
            continue;
        }
        let at = |extra: &[&str]| {
            PointerBuf::from_tokens(path.iter().map(String::as_str).chain(extra.iter().copied()))
        };
        match current {
            None => ops.push(PatchOperation::Add(AddOperation {
                path: at(&["nodeSelector"]),
                value: serde_json::to_value(&add).unwrap_or(Value::Null),
            })),
            Some(value) => {
                ops.push(PatchOperation::Test(TestOperation {
                    path: at(&["nodeSelector"]),
                    value: value.clone(),
                }));
                for (key, v) in &add {
                    ops.push(PatchOperation::Add(AddOperation {
                        path: at(&["nodeSelector", key.as_str()]),
                        value: Value::String(v.clone()),
                    }));
                }
            }
        }
    }
    Ok(ops)
}

/// The placement one pod template asks for.
pub fn pod_placement(spec: &PodSpec) -> PodPlacement {
    let required_terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|selector| {
            selector
                .node_selector_terms
                .iter()
                .map(|term| NodeTerm {
                    requirements: term
                        .match_expressions
                        .iter()
                        .flatten()
                        .filter_map(|e| {
                            let operator = match e.operator.as_str() {
                                "In" => Operator::In,
                                "NotIn" => Operator::NotIn,
                                "Exists" => Operator::Exists,
                                "DoesNotExist" => Operator::DoesNotExist,
                                "Gt" => Operator::Gt,
                                "Lt" => Operator::Lt,
                                // The API server refuses other operators; never drop a pool for one.
                                _ => return None,
                            };
                            Some(NodeRequirement {
                                key: e.key.clone(),
                                operator,
                                values: e.values.clone().unwrap_or_default(),
                            })
                        })
                        .collect(),
                })
                // A term of matchFields only is a node-name pin: it could be on any pool.
                .filter(|t| !t.requirements.is_empty())
                .collect()
        })
        .unwrap_or_default();
    PodPlacement {
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        required_terms,
    }
}

/// The JSON paths (tokens) of the pod specs named by `pod_sets` in the workload `data`: the
/// adapters' paths are for people (`spec.replicatedJobs[workers].template.spec.template.spec`,
/// an array item by its `name` or `groupName`), a patch needs indices. Only real pod templates
/// (paths ending in `template.spec`) count: a TrainJob's `spec.trainer` is not one, its pods come
/// from its runtime, so it gets no node selector and is not placed.
pub fn pod_spec_pointers(
    data: &Value,
    pod_sets: &[crate::api::annotations::PodSet],
) -> Vec<Vec<String>> {
    pod_sets
        .iter()
        .filter(|set| set.path.ends_with("template.spec"))
        .filter_map(|set| pointer_of(data, &set.path))
        .collect()
}

fn pointer_of(data: &Value, path: &str) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    let mut at = data;
    for part in path.split('.') {
        let (key, item) = match part.split_once('[') {
            Some((key, rest)) => (key, Some(rest.strip_suffix(']')?)),
            None => (part, None),
        };
        at = at.get(key)?;
        tokens.push(key.to_string());
        if let Some(item) = item {
            let items = at.as_array()?;
            let named = |v: &Value| {
                ["name", "groupName"]
                    .iter()
                    .any(|k| v.get(*k).and_then(Value::as_str) == Some(item))
            };
            let index = items
                .iter()
                .position(named)
                .or_else(|| item.parse::<usize>().ok().filter(|i| *i < items.len()))?;
            at = &items[index];
            tokens.push(index.to_string());
        }
    }
    at.is_object().then_some(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pod_spec_pointers_resolve_named_items_to_indices_and_skip_non_templates() {
        use crate::api::annotations::PodSet;
        let data = serde_json::json!({"spec": {"replicatedJobs": [
            {"name": "driver", "template": {"spec": {"template": {"spec": {}}}}},
            {"name": "workers", "template": {"spec": {"template": {"spec": {}}}}}
        ], "trainer": {"numNodes": 2}}});
        let set = |path: &str| PodSet {
            path: path.to_string(),
            pod: None,
            count: 1,
        };
        let pointers = pod_spec_pointers(
            &data,
            &[
                set("spec.replicatedJobs[workers].template.spec.template.spec"),
                set("spec.replicatedJobs[0].template.spec.template.spec"),
                set("spec.trainer"),
                set("spec.replicatedJobs[gone].template.spec.template.spec"),
            ],
        );
        assert_eq!(
            pointers,
            vec![
                path(&[
                    "spec",
                    "replicatedJobs",
                    "1",
                    "template",
                    "spec",
                    "template",
                    "spec"
                ]),
                path(&[
                    "spec",
                    "replicatedJobs",
                    "0",
                    "template",
                    "spec",
                    "template",
                    "spec"
                ]),
            ]
        );
    }

    #[test]
    fn node_selector_keys_are_added_guarded_and_conflicts_refused() {
        let data = serde_json::json!({"spec": {
            "template": {"spec": {"containers": []}},
            "replicatedJobs": [{"template": {"spec": {"template": {"spec": {
                "nodeSelector": {"pool": "gpu", "topology.kubernetes.io/region": "eu-west-2"}
            }}}}}]
        }});
        let selector = BTreeMap::from([
            (
                "topology.kubernetes.io/region".to_string(),
                "eu-west-2".to_string(),
            ),
            ("disk".to_string(), "ssd".to_string()),
        ]);
        let job = path(&["spec", "template", "spec"]);
        let jobset = path(&[
            "spec",
            "replicatedJobs",
            "0",
            "template",
            "spec",
            "template",
            "spec",
        ]);
        let ops = node_selector_operations(&data, &[job.clone(), jobset.clone()], &selector)
            .unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_value(&ops).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!([
                {"op": "add", "path": "/spec/template/spec/nodeSelector",
                 "value": {"disk": "ssd", "topology.kubernetes.io/region": "eu-west-2"}},
                {"op": "test", "path": "/spec/replicatedJobs/0/template/spec/template/spec/nodeSelector",
                 "value": {"pool": "gpu", "topology.kubernetes.io/region": "eu-west-2"}},
                {"op": "add", "path": "/spec/replicatedJobs/0/template/spec/template/spec/nodeSelector/disk",
                 "value": "ssd"}
            ])
        );
        // The patch applies, and a key with a '/' is escaped.
        let mut patched = data.clone();
        json_patch::patch(&mut patched, &ops).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            patched["spec"]["template"]["spec"]["nodeSelector"]["topology.kubernetes.io/region"],
            "eu-west-2"
        );
        let other = BTreeMap::from([(
            "topology.kubernetes.io/region".to_string(),
            "eu-west-3".to_string(),
        )]);
        let error = node_selector_operations(&data, std::slice::from_ref(&jobset), &other);
        assert_eq!(
            error.map_err(|e| e.to_string()),
            Err("spec.replicatedJobs.0.template.spec.template.spec: nodeSelector topology.kubernetes.io/region=\"eu-west-2\" conflicts with the forecast's placement topology.kubernetes.io/region=\"eu-west-3\"".to_string())
        );
        assert_eq!(
            node_selector_operations(&data, &[path(&["spec", "nope"])], &selector),
            Err(SelectorPatchError::NoPodSpec("spec.nope".into()))
        );
        assert_eq!(
            node_selector_operations(&data, &[jobset], &BTreeMap::new()),
            Ok(Vec::new())
        );
    }

    #[test]
    fn node_selector_and_required_affinity_are_read() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "train", "image": "x"}],
            "nodeSelector": {"pool": "gpu"},
            "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [
                        {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-2", "eu-west-3"]},
                        {"key": "spot", "operator": "DoesNotExist"}
                    ]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}
                ]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]}}
                ]
            }}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let p = pod_placement(&spec);
        assert_eq!(p.node_selector.get("pool").map(String::as_str), Some("gpu"));
        assert_eq!(
            p.required_terms.len(),
            1,
            "the matchFields-only term is left out"
        );
        let reqs = &p.required_terms[0].requirements;
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].operator, Operator::In);
        assert_eq!(reqs[0].values, ["eu-west-2", "eu-west-3"]);
        assert_eq!(reqs[1].operator, Operator::DoesNotExist);
        assert!(reqs[1].values.is_empty());
        let bare: PodSpec = serde_json::from_value(serde_json::json!({"containers": []}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pod_placement(&bare), PodPlacement::default());
    }
}
