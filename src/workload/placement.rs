//! Where a workload's pods may run, as plain data for the fleet planner
//! ([`crate::planner::fleet::PodPlacement`]): read from a pod template's `nodeSelector` and its
//! required node affinity (`matchExpressions`; `matchFields` pin single nodes by name, which says
//! nothing about a pool, so they are left out).

use k8s_openapi::api::core::v1::PodSpec;

use crate::planner::fleet::{NodeRequirement, NodeTerm, Operator, PodPlacement};

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

#[cfg(test)]
mod tests {
    use super::*;

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
