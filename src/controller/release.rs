//! The guarded writes to a held workload, sent to the API server: the release and the pause of an
//! interruptible workload between windows ([`crate::workload::patch`] builds them from the kind's
//! suspend switch). Shared by the workload controller and `carbonshift release`.
//!
//! A failed `test` (HTTP 422, or 409 for a conflicting update) writes nothing and is reported as
//! [`Outcome::Changed`]: "the object changed, decide again", never an error to retry blindly. An
//! object that is gone is [`Outcome::Gone`].

use chrono::{DateTime, Utc};
use json_patch::Patch;
use kube::Api;
use kube::api::{Patch as KubePatch, PatchParams};
use kube::core::DynamicObject;

use crate::api::FIELD_MANAGER;
use crate::api::annotations::{HELD, RELEASED_AT};
use crate::workload::Adapter;
use crate::workload::patch::{pause_patch, release_patch};

pub use crate::workload::patch::Guard;

/// What a guarded patch did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written; the object as the API server returned it.
    Applied(Box<DynamicObject>),
    /// Refused because the Job changed since it was read (a failed `test`, or a conflict):
    /// nothing was written; read it again and decide again.
    Changed(String),
    /// The Job no longer exists.
    Gone,
}

/// Sends `patch` to the object `name`, sorting the API server's refusals into [`Outcome`]s.
async fn send(api: &Api<DynamicObject>, name: &str, patch: Patch) -> Result<Outcome, kube::Error> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    match api
        .patch(name, &params, &KubePatch::Json::<()>(patch))
        .await
    {
        Ok(object) => Ok(Outcome::Applied(Box::new(object))),
        Err(kube::Error::Api(status)) if matches!(status.code, 409 | 422) => {
            Ok(Outcome::Changed(status.message.clone()))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Outcome::Gone),
        Err(e) => Err(e),
    }
}

/// Releases the held workload `name` of `adapter`'s kind with the guarded patch, recording
/// `reason` (a [`crate::lifecycle::ReleaseReason`]'s name) and applying `extra` in the same patch
/// (the node selector of a placed workload, [`crate::workload::placement`]); the error is for
/// everything but a changed or missing object (network, permissions...).
pub async fn release(
    api: &Api<DynamicObject>,
    adapter: &dyn Adapter,
    name: &str,
    guard: &Guard,
    now: DateTime<Utc>,
    reason: &str,
    extra: &[json_patch::PatchOperation],
) -> Result<Outcome, kube::Error> {
    let mut patch = release_patch(adapter.suspend_path(), guard, now, reason);
    patch.0.extend(extra.iter().cloned());
    send(api, name, patch).await
}

/// Pauses the running interruptible workload `name` with the guarded patch.
pub async fn pause(
    api: &Api<DynamicObject>,
    adapter: &dyn Adapter,
    name: &str,
    resource_version: Option<&str>,
    released_marker: &str,
) -> Result<Outcome, kube::Error> {
    let patch = pause_patch(adapter.suspend_path(), resource_version, released_marker);
    send(api, name, patch).await
}

/// Whether carbonshift holds `object` and a release may be attempted: its switch on (suspended,
/// or carbonshift's entry in Kueue's admission gate), the held marker, not yet released.
/// (`carbonshift release` only touches such workloads; the controller decides with the full state
/// machine.)
pub fn is_held(adapter: &dyn Adapter, object: &DynamicObject) -> bool {
    let annotations = object.metadata.annotations.as_ref();
    crate::workload::switch_on(adapter, object)
        && annotations
            .and_then(|a| a.get(HELD))
            .is_some_and(|v| v == "true")
        && annotations.is_none_or(|a| !a.contains_key(RELEASED_AT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::job::BatchJob;
    use serde_json::{Value, json};

    #[test]
    fn held_means_suspended_marked_and_not_released() {
        let job = |suspend: bool, annotations: Value| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "j", "annotations": annotations},
                "spec": {"suspend": suspend, "template": {}}
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let held = |j: &DynamicObject| is_held(&BatchJob, j);
        assert!(held(&job(true, json!({"carbonshift.dev/held": "true"}))));
        assert!(!held(&job(false, json!({"carbonshift.dev/held": "true"}))));
        assert!(!held(&job(true, json!({}))));
        assert!(!held(&job(
            true,
            json!({"carbonshift.dev/held": "true", "carbonshift.dev/released-at": "2026-05-04T12:00:00Z"})
        )));
        let g = Guard::of(&job(true, json!({"carbonshift.dev/held": "true"})));
        assert_eq!(
            g,
            Guard {
                resource_version: None,
                held_marker: true,
                gate: None,
            }
        );
    }
}
