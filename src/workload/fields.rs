//! Readers of the fields every adapter looks at in an object's JSON: pod specs, replica counts,
//! times and status conditions, each failing with the field's path when its shape is wrong.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::PodSpec;
use kube::core::DynamicObject;
use serde_json::Value;

use super::{AdapterError, pointer};
use crate::api::annotations::{self, ManagedElsewhere};

/// Whether another controller owns `object`'s suspend switch: Kueue's label, or a manager field at
/// `managed_by` (for example `spec.managedBy`) other than `own`, the controller of the kind that
/// carbonshift works with ([`annotations::managed_elsewhere`]).
pub(crate) fn managed_elsewhere(
    object: &DynamicObject,
    managed_by: &[&str],
    own: &str,
) -> Option<ManagedElsewhere> {
    annotations::managed_elsewhere(
        object.metadata.labels.as_ref(),
        object.metadata.annotations.as_ref(),
        pointer(&object.data, managed_by).and_then(Value::as_str),
        own,
    )
}

/// An RFC 3339 time in `value`, if it is one.
pub(crate) fn time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    value
        .and_then(Value::as_str)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|t| t.to_utc())
}

/// The `lastTransitionTime` of the condition `kind` when it is `True` (`Some(None)` when it is
/// `True` without a time).
pub(crate) fn condition_true(status: Option<&Value>, kind: &str) -> Option<Option<DateTime<Utc>>> {
    status?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| {
            c.get("type").and_then(Value::as_str) == Some(kind)
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
        .map(|c| time(c.get("lastTransitionTime")))
}

/// The pod spec at `path` below `root` (`None` when absent or null); `field` names it in errors.
pub(crate) fn pod_spec(
    kind: &'static str,
    root: &Value,
    path: &[&str],
    field: &str,
) -> Result<Option<PodSpec>, AdapterError> {
    match pointer(root, path) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value::<PodSpec>(value.clone())
            .map(Some)
            .map_err(|e| malformed(kind, field, e.to_string())),
    }
}

/// The integer at `key` of `parent` (`None` when absent or null); `field` names it in errors.
pub(crate) fn int(
    kind: &'static str,
    parent: Option<&Value>,
    key: &str,
    field: &str,
) -> Result<Option<i64>, AdapterError> {
    match parent.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| malformed(kind, field, format!("{value} is not an integer"))),
    }
}

/// The array at `key` of `parent` (empty when absent or null).
pub(crate) fn array<'a>(
    kind: &'static str,
    parent: Option<&'a Value>,
    key: &str,
    field: &str,
) -> Result<&'a [Value], AdapterError> {
    match parent.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(malformed(kind, field, format!("{other} is not a list"))),
    }
}

/// The object at `key` of `parent` (`None` when absent or null).
pub(crate) fn object<'a>(
    kind: &'static str,
    parent: Option<&'a Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'a serde_json::Map<String, Value>>, AdapterError> {
    match parent.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(malformed(kind, field, format!("{other} is not an object"))),
    }
}

/// A count as the number of pods: negative values (refused by the API server, possible in a
/// hand-made object) count as none, values beyond `u32` as `u32::MAX`.
pub(crate) fn pods(count: i64) -> u32 {
    u32::try_from(count.max(0)).unwrap_or(u32::MAX)
}

/// The sum of the integer `key` over the entries of `items` (status counters).
pub(crate) fn sum(items: impl IntoIterator<Item = Value>, key: &str) -> i32 {
    let total: i64 = items
        .into_iter()
        .filter_map(|item| item.get(key).and_then(Value::as_i64))
        .filter(|n| *n > 0)
        .sum();
    i32::try_from(total).unwrap_or(i32::MAX)
}

/// The string at `path` below `root`.
pub(crate) fn string<'a>(root: &'a Value, path: &[&str]) -> Option<&'a str> {
    pointer(root, path).and_then(Value::as_str)
}

/// An [`AdapterError::Malformed`].
pub(crate) fn malformed(kind: &'static str, field: &str, problem: String) -> AdapterError {
    AdapterError::Malformed {
        kind,
        field: field.to_string(),
        problem,
    }
}

/// The [`ApiResource`](kube::core::ApiResource) of a custom kind.
pub(crate) fn resource(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: format!("{group}/{version}"),
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

/// The pods a `batch/v1` Job spec runs at once: `parallelism` (default 1), at most `completions`
/// (Kubernetes never runs more pods at once than completions remain). `field` is the path of the
/// Job spec, for errors.
pub(crate) fn job_pods(
    kind: &'static str,
    spec: Option<&Value>,
    field: &str,
) -> Result<u32, AdapterError> {
    let parallelism = int(kind, spec, "parallelism", &format!("{field}.parallelism"))?.unwrap_or(1);
    let count = match int(kind, spec, "completions", &format!("{field}.completions"))? {
        Some(completions) => parallelism.min(completions),
        None => parallelism,
    };
    Ok(pods(count))
}
