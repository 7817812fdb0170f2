//! The JSON patches carbonshift writes to a workload of any kind, built from its adapter's suspend
//! switch (docs/architecture.md, "Release protocol"): the webhook's hold at admission, and the
//! guarded release and pause.
//!
//! The release and the pause are guarded by `test` operations, so the API server refuses them
//! when the object is not what the decision was made from:
//!
//! ```json
//! [{"op":"test","path":"/spec/suspend","value":true},
//!  {"op":"test","path":"/metadata/annotations/carbonshift.dev~1held","value":"true"},
//!  {"op":"test","path":"/metadata/resourceVersion","value":"<rv the decision was made from>"},
//!  {"op":"replace","path":"/spec/suspend","value":false},
//!  {"op":"add","path":"/metadata/annotations/carbonshift.dev~1released-at","value":"<now>"},
//!  {"op":"add","path":"/metadata/annotations/carbonshift.dev~1release-reason","value":"Released"}]
//! ```
//!
//! (with the kind's own switch in place of `/spec/suspend`, `/spec/runPolicy/suspend` for a
//! PyTorchJob, say).
//!
//! A workload held with Kueue's admission gate ([`super::Hold::KueueGate`]) is released by
//! removing carbonshift's entry from the gate, every other entry kept, guarded the same way by
//! the gate's current value:
//!
//! ```json
//! [{"op":"test","path":"/metadata/annotations/kueue.x-k8s.io~1admission-gated-by","value":"example.com/quota-check,carbonshift.dev/low-carbon-window"},
//!  {"op":"test","path":"/metadata/annotations/carbonshift.dev~1held","value":"true"},
//!  {"op":"test","path":"/metadata/resourceVersion","value":"<rv>"},
//!  {"op":"replace","path":"/metadata/annotations/kueue.x-k8s.io~1admission-gated-by","value":"example.com/quota-check"},
//!  {"op":"add","path":"/metadata/annotations/carbonshift.dev~1released-at","value":"<now>"},
//!  {"op":"add","path":"/metadata/annotations/carbonshift.dev~1release-reason","value":"Released"}]
//! ```
//!
//! (`remove` instead of `replace` when carbonshift's was the only entry).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation,
};
use kube::core::DynamicObject;
use serde_json::Value;

use super::{Hold, admission_gates, hold_of, pointer};
use crate::api::annotations::{
    ADMISSION_GATED_BY, HELD, RELEASE_REASON, RELEASED_AT, marker, without_gate,
};

/// What a release patch tests besides the switch being on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The `metadata.resourceVersion` the decision was made from: any change to the object since
    /// makes the patch fail. `None` leaves it untested (a caller that reads and patches at once).
    pub resource_version: Option<String>,
    /// Test `carbonshift.dev/held: "true"`. `false` only for a workload carbonshift took as held
    /// without the webhook's marker (created suspended and deferrable); the resourceVersion
    /// guards it then.
    pub held_marker: bool,
    /// `Some(value of kueue.x-k8s.io/admission-gated-by)` when the workload is held with Kueue's
    /// admission gate: the release tests that value and removes carbonshift's entry from it
    /// instead of turning the suspend switch off.
    pub gate: Option<String>,
}

impl Guard {
    /// The guard for releasing `object` as read: its resourceVersion and whether it has the held
    /// marker.
    pub fn of(object: &DynamicObject) -> Guard {
        Guard {
            resource_version: object.metadata.resource_version.clone(),
            held_marker: object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HELD))
                .is_some_and(|v| v == "true"),
            gate: match hold_of(object) {
                Hold::KueueGate => Some(admission_gates(object).unwrap_or_default().to_string()),
                Hold::Suspend => None,
            },
        }
    }
}

fn test(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

/// The release patch for the switch at `switch`, or for Kueue's gate when `guard` says the
/// workload is held by it (module documentation); `reason` goes into
/// `carbonshift.dev/release-reason`.
pub fn release_patch(switch: &[&str], guard: &Guard, now: DateTime<Utc>, reason: &str) -> Patch {
    let gate_path = ["metadata", "annotations", ADMISSION_GATED_BY];
    let mut ops = match &guard.gate {
        None => vec![test(switch, Value::Bool(true))],
        Some(gates) => vec![test(&gate_path, Value::String(gates.clone()))],
    };
    if guard.held_marker {
        ops.push(test(
            &["metadata", "annotations", HELD],
            Value::String("true".into()),
        ));
    }
    if let Some(rv) = &guard.resource_version {
        ops.push(test(
            &["metadata", "resourceVersion"],
            Value::String(rv.clone()),
        ));
    }
    ops.push(match &guard.gate {
        None => PatchOperation::Replace(ReplaceOperation {
            path: PointerBuf::from_tokens(switch.iter().copied()),
            value: Value::Bool(false),
        }),
        Some(gates) => match without_gate(gates) {
            Some(rest) => PatchOperation::Replace(ReplaceOperation {
                path: PointerBuf::from_tokens(gate_path),
                value: Value::String(rest),
            }),
            None => PatchOperation::Remove(RemoveOperation {
                path: PointerBuf::from_tokens(gate_path),
            }),
        },
    });
    ops.push(add(
        &["metadata", "annotations", RELEASED_AT],
        Value::String(marker(now)),
    ));
    ops.push(add(
        &["metadata", "annotations", RELEASE_REASON],
        Value::String(reason.to_string()),
    ));
    Patch(ops)
}

/// The pause patch: tests that the workload runs (switch off) with the `released-at` value
/// carbonshift wrote and the resourceVersion the decision saw; then suspends it and removes
/// `released-at`, so that the paused workload is held again and resumes through the ordinary
/// release.
pub fn pause_patch(
    switch: &[&str],
    resource_version: Option<&str>,
    released_marker: &str,
) -> Patch {
    let mut ops = vec![
        test(switch, Value::Bool(false)),
        test(
            &["metadata", "annotations", RELEASED_AT],
            Value::String(released_marker.to_string()),
        ),
    ];
    if let Some(rv) = resource_version {
        ops.push(test(
            &["metadata", "resourceVersion"],
            Value::String(rv.to_string()),
        ));
    }
    ops.push(PatchOperation::Replace(ReplaceOperation {
        path: PointerBuf::from_tokens(switch.iter().copied()),
        value: Value::Bool(true),
    }));
    ops.push(PatchOperation::Remove(RemoveOperation {
        path: PointerBuf::from_tokens(["metadata", "annotations", RELEASED_AT]),
    }));
    Patch(ops)
}

/// The operation that turns the switch at `switch` on in `data` (the object's JSON), creating the
/// objects on its way that do not exist yet; `None` when it is on already.
pub fn suspend_operation(data: &Value, switch: &[&str]) -> Option<PatchOperation> {
    if pointer(data, switch).and_then(Value::as_bool) == Some(true) {
        return None;
    }
    // The deepest existing parent gets the rest of the path as one nested value.
    let existing = (0..switch.len())
        .rev()
        .find(|&depth| pointer(data, &switch[..depth]).is_some_and(Value::is_object))
        .unwrap_or(0);
    let value = switch[existing + 1..].iter().rev().fold(
        Value::Bool(true),
        |inner, key| serde_json::json!({ *key: inner }),
    );
    Some(add(&switch[..=existing], value))
}

/// JSON patch operations that set `set` and remove `remove` in `metadata.annotations`, creating
/// the map when the object has none. `add` replaces a member that exists, as RFC 6902 defines.
pub fn annotation_operations(
    existing: Option<&BTreeMap<String, String>>,
    set: &[(&str, String)],
    remove: &[&str],
) -> Vec<PatchOperation> {
    let Some(existing) = existing else {
        if set.is_empty() {
            return Vec::new();
        }
        let map = set
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>();
        return vec![add(&["metadata", "annotations"], Value::Object(map))];
    };
    let sets = set.iter().map(|(key, value)| {
        add(
            &["metadata", "annotations", key],
            Value::String(value.clone()),
        )
    });
    let removes = remove
        .iter()
        .filter(|key| existing.contains_key(**key))
        .map(|key| {
            PatchOperation::Remove(RemoveOperation {
                path: PointerBuf::from_tokens(["metadata", "annotations", key]),
            })
        });
    sets.chain(removes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(text: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(text).unwrap_or_else(|| panic!("{text}"))
    }

    const JOB_SWITCH: &[&str] = &["spec", "suspend"];

    #[test]
    fn the_release_patch_is_exactly_the_documented_one() {
        let guard = Guard {
            resource_version: Some("4711".into()),
            held_marker: true,
            gate: None,
        };
        let patch = release_patch(
            JOB_SWITCH,
            &guard,
            t("2026-05-04T13:00:00.250Z"),
            "Released",
        );
        assert_eq!(
            serde_json::to_value(&patch).unwrap_or_default(),
            json!([
                {"op": "test", "path": "/spec/suspend", "value": true},
                {"op": "test", "path": "/metadata/annotations/carbonshift.dev~1held", "value": "true"},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "4711"},
                {"op": "replace", "path": "/spec/suspend", "value": false},
                {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1released-at", "value": "2026-05-04T13:00:00Z"},
                {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1release-reason", "value": "Released"}
            ])
        );
        let bare = release_patch(
            JOB_SWITCH,
            &Guard {
                resource_version: None,
                held_marker: false,
                gate: None,
            },
            t("2026-05-04T13:00:00Z"),
            "ManualRelease",
        );
        assert_eq!(bare.0.len(), 4);
    }

    #[test]
    fn the_release_patch_applies_to_a_held_job_and_fails_on_a_changed_one() {
        let held = json!({
            "metadata": {"name": "train", "resourceVersion": "7",
                         "annotations": {"carbonshift.dev/held": "true"}},
            "spec": {"suspend": true}
        });
        let guard = Guard {
            resource_version: Some("7".into()),
            held_marker: true,
            gate: None,
        };
        let patch = release_patch(JOB_SWITCH, &guard, t("2026-05-04T13:00:00Z"), "Released");
        let mut doc = held.clone();
        assert!(json_patch::patch(&mut doc, &patch).is_ok());
        assert_eq!(doc["spec"]["suspend"], json!(false));
        assert_eq!(
            doc["metadata"]["annotations"]["carbonshift.dev/released-at"],
            json!("2026-05-04T13:00:00Z")
        );
        // Released already (suspend false), a newer resourceVersion, no marker: refused, untouched.
        for changed in [
            json!({"metadata": {"resourceVersion": "7", "annotations": {"carbonshift.dev/held": "true"}}, "spec": {"suspend": false}}),
            json!({"metadata": {"resourceVersion": "8", "annotations": {"carbonshift.dev/held": "true"}}, "spec": {"suspend": true}}),
            json!({"metadata": {"resourceVersion": "7", "annotations": {}}, "spec": {"suspend": true}}),
        ] {
            let mut doc = changed.clone();
            assert!(json_patch::patch(&mut doc, &patch).is_err(), "{changed}");
            assert_eq!(doc, changed);
        }
    }

    #[test]
    fn a_gated_workload_is_released_by_removing_only_carbonshifts_entry() {
        let gated = |gates: &str| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "train", "resourceVersion": "12",
                    "labels": {"kueue.x-k8s.io/queue-name": "user-queue"},
                    "annotations": {
                        "carbonshift.dev/held": "true",
                        "carbonshift.dev/held-by": "kueue-admission-gate",
                        "kueue.x-k8s.io/admission-gated-by": gates}},
                "spec": {"suspend": true}
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let two = gated("example.com/quota-check,carbonshift.dev/low-carbon-window");
        let guard = Guard::of(&two);
        assert_eq!(
            guard.gate.as_deref(),
            Some("example.com/quota-check,carbonshift.dev/low-carbon-window")
        );
        let patch = release_patch(JOB_SWITCH, &guard, t("2026-05-04T13:00:00Z"), "Released");
        assert_eq!(
            serde_json::to_value(&patch).unwrap_or_default(),
            json!([
                {"op": "test", "path": "/metadata/annotations/kueue.x-k8s.io~1admission-gated-by",
                 "value": "example.com/quota-check,carbonshift.dev/low-carbon-window"},
                {"op": "test", "path": "/metadata/annotations/carbonshift.dev~1held", "value": "true"},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "12"},
                {"op": "replace", "path": "/metadata/annotations/kueue.x-k8s.io~1admission-gated-by",
                 "value": "example.com/quota-check"},
                {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1released-at", "value": "2026-05-04T13:00:00Z"},
                {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1release-reason", "value": "Released"}
            ])
        );
        let mut doc = two.data.clone();
        doc["metadata"] = serde_json::to_value(&two.metadata).unwrap_or_default();
        assert!(json_patch::patch(&mut doc, &patch).is_ok());
        // Kueue's switch is untouched.
        assert_eq!(doc["spec"]["suspend"], json!(true));
        // Alone: the annotation goes.
        let alone = gated("carbonshift.dev/low-carbon-window");
        let patch = release_patch(
            JOB_SWITCH,
            &Guard::of(&alone),
            t("2026-05-04T13:00:00Z"),
            "Released",
        );
        assert_eq!(
            serde_json::to_value(&patch.0[3]).unwrap_or_default(),
            json!({"op": "remove", "path": "/metadata/annotations/kueue.x-k8s.io~1admission-gated-by"})
        );
        // Someone else shortened the gate meanwhile: the test fails.
        let mut changed = doc.clone();
        changed["metadata"]["annotations"]["kueue.x-k8s.io/admission-gated-by"] =
            json!("carbonshift.dev/low-carbon-window");
        let first = release_patch(JOB_SWITCH, &guard, t("2026-05-04T13:00:00Z"), "Released");
        assert!(json_patch::patch(&mut changed, &first).is_err());
    }

    #[test]
    fn the_pause_patch_suspends_and_removes_the_release_marker() {
        let running = json!({
            "metadata": {"resourceVersion": "9", "annotations": {
                "carbonshift.dev/held": "true",
                "carbonshift.dev/released-at": "2026-05-04T12:00:00Z"}},
            "spec": {"suspend": false}
        });
        let patch = pause_patch(JOB_SWITCH, Some("9"), "2026-05-04T12:00:00Z");
        let mut doc = running.clone();
        assert!(json_patch::patch(&mut doc, &patch).is_ok());
        assert_eq!(doc["spec"]["suspend"], json!(true));
        assert_eq!(
            doc["metadata"]["annotations"],
            json!({"carbonshift.dev/held": "true"})
        );
        // Released again by someone else meanwhile (another marker): refused.
        let mut other = running.clone();
        other["metadata"]["annotations"]["carbonshift.dev/released-at"] =
            json!("2026-05-04T12:30:00Z");
        assert!(json_patch::patch(&mut other.clone(), &patch).is_err());
    }

    #[test]
    fn the_switch_is_turned_on_wherever_it_is_creating_what_is_missing() {
        let nested: &[&str] = &["spec", "runPolicy", "suspend"];
        for (doc, switch, expected) in [
            (
                json!({"spec": {}}),
                JOB_SWITCH,
                json!({"spec": {"suspend": true}}),
            ),
            (json!({}), JOB_SWITCH, json!({"spec": {"suspend": true}})),
            (
                json!({"spec": {"suspend": false, "x": 1}}),
                JOB_SWITCH,
                json!({"spec": {"suspend": true, "x": 1}}),
            ),
            (
                json!({"spec": {"a": 1}}),
                nested,
                json!({"spec": {"a": 1, "runPolicy": {"suspend": true}}}),
            ),
            (
                json!({}),
                nested,
                json!({"spec": {"runPolicy": {"suspend": true}}}),
            ),
            (
                json!({"spec": {"runPolicy": {"cleanPodPolicy": "None"}}}),
                nested,
                json!({"spec": {"runPolicy": {"cleanPodPolicy": "None", "suspend": true}}}),
            ),
        ] {
            let op = suspend_operation(&doc, switch).unwrap_or_else(|| panic!("{doc}"));
            let mut patched = doc.clone();
            json_patch::patch(&mut patched, &Patch(vec![op])).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(patched, expected, "{doc} {switch:?}");
        }
        assert!(suspend_operation(&json!({"spec": {"suspend": true}}), JOB_SWITCH).is_none());
    }
}
