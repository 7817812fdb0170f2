//! The guarded writes to a held Job: the release (`spec.suspend: false` plus the
//! `carbonshift.dev/released-at` marker) and the pause of an interruptible Job between windows.
//! Shared by the workload controller and `carbonshift release`.
//!
//! Each is one JSON patch whose `test` operations make the API server refuse it when the Job is
//! not what the decision was made from (docs/architecture.md, "Release protocol"):
//!
//! ```json
//! [{"op":"test","path":"/spec/suspend","value":true},
//!  {"op":"test","path":"/metadata/annotations/carbonshift.dev~1held","value":"true"},
//!  {"op":"test","path":"/metadata/resourceVersion","value":"<rv the decision was made from>"},
//!  {"op":"replace","path":"/spec/suspend","value":false},
//!  {"op":"add","path":"/metadata/annotations/carbonshift.dev~1released-at","value":"<now>"}]
//! ```
//!
//! A failed test (HTTP 422, or 409 for a conflicting update) writes nothing and is reported as
//! [`Outcome::Changed`]: "the Job changed, decide again", never an error to retry blindly. A Job
//! that is gone is [`Outcome::Gone`].

use chrono::{DateTime, SecondsFormat, Utc};
use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation,
};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{Patch as KubePatch, PatchParams};
use serde_json::Value;

use crate::api::FIELD_MANAGER;
use crate::api::annotations::{HELD, RELEASED_AT};

/// What a release patch tests besides `spec.suspend == true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The `metadata.resourceVersion` the decision was made from: any change to the Job since
    /// makes the patch fail. `None` leaves it untested (a caller that reads and patches at once).
    pub resource_version: Option<String>,
    /// Test `carbonshift.dev/held: "true"`. `false` only for a Job carbonshift took as held
    /// without the webhook's marker (created suspended and deferrable); the resourceVersion
    /// guards it then.
    pub held_marker: bool,
}

impl Guard {
    /// The guard for releasing `job` as read: its resourceVersion and whether it has the held
    /// marker.
    pub fn for_job(job: &Job) -> Guard {
        Guard {
            resource_version: job.metadata.resource_version.clone(),
            held_marker: job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HELD))
                .is_some_and(|v| v == "true"),
        }
    }
}

/// The marker value for `now`: RFC 3339 in whole seconds, like `carbonshift.dev/submitted-at`.
pub fn marker(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn test(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path: pointer(tokens),
        value,
    })
}

/// The release patch (module documentation).
pub fn release_patch(guard: &Guard, now: DateTime<Utc>) -> Patch {
    let mut ops = vec![test(&["spec", "suspend"], Value::Bool(true))];
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
    ops.push(PatchOperation::Replace(ReplaceOperation {
        path: pointer(&["spec", "suspend"]),
        value: Value::Bool(false),
    }));
    ops.push(PatchOperation::Add(AddOperation {
        path: pointer(&["metadata", "annotations", RELEASED_AT]),
        value: Value::String(marker(now)),
    }));
    Patch(ops)
}

/// The pause patch: tests that the Job runs (`spec.suspend == false`) with the `released-at`
/// value carbonshift wrote and the resourceVersion the decision saw; then suspends it and removes
/// `released-at`, so that the paused Job is held again and resumes through the ordinary release.
pub fn pause_patch(resource_version: Option<&str>, released_marker: &str) -> Patch {
    let mut ops = vec![
        test(&["spec", "suspend"], Value::Bool(false)),
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
        path: pointer(&["spec", "suspend"]),
        value: Value::Bool(true),
    }));
    ops.push(PatchOperation::Remove(RemoveOperation {
        path: pointer(&["metadata", "annotations", RELEASED_AT]),
    }));
    Patch(ops)
}

/// What a guarded patch did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written; the Job as the API server returned it.
    Applied(Box<Job>),
    /// Refused because the Job changed since it was read (a failed `test`, or a conflict):
    /// nothing was written; read it again and decide again.
    Changed(String),
    /// The Job no longer exists.
    Gone,
}

/// Sends `patch` to the Job `name`, sorting the API server's refusals into [`Outcome`]s.
async fn send(api: &Api<Job>, name: &str, patch: Patch) -> Result<Outcome, kube::Error> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    match api
        .patch(name, &params, &KubePatch::Json::<()>(patch))
        .await
    {
        Ok(job) => Ok(Outcome::Applied(Box::new(job))),
        Err(kube::Error::Api(status)) if matches!(status.code, 409 | 422) => {
            Ok(Outcome::Changed(status.message.clone()))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Outcome::Gone),
        Err(e) => Err(e),
    }
}

/// Releases the held Job `name` with the guarded patch; the error is for everything but a
/// changed or missing Job (network, permissions...).
pub async fn release(
    api: &Api<Job>,
    name: &str,
    guard: &Guard,
    now: DateTime<Utc>,
) -> Result<Outcome, kube::Error> {
    send(api, name, release_patch(guard, now)).await
}

/// Pauses the running interruptible Job `name` with the guarded patch.
pub async fn pause(
    api: &Api<Job>,
    name: &str,
    resource_version: Option<&str>,
    released_marker: &str,
) -> Result<Outcome, kube::Error> {
    send(api, name, pause_patch(resource_version, released_marker)).await
}

/// Whether carbonshift holds `job` and a release may be attempted: suspended, the held marker,
/// not yet released. (`carbonshift release` only touches such Jobs; the controller decides with
/// the full state machine.)
pub fn is_held(job: &Job) -> bool {
    let annotations = job.metadata.annotations.as_ref();
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
        && annotations
            .and_then(|a| a.get(HELD))
            .is_some_and(|v| v == "true")
        && annotations.is_none_or(|a| !a.contains_key(RELEASED_AT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(text: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(text).unwrap_or_else(|| panic!("{text}"))
    }

    #[test]
    fn the_release_patch_is_exactly_the_documented_one() {
        let guard = Guard {
            resource_version: Some("4711".into()),
            held_marker: true,
        };
        let patch = release_patch(&guard, t("2026-05-04T13:00:00.250Z"));
        assert_eq!(
            serde_json::to_value(&patch).unwrap_or_default(),
            json!([
                {"op": "test", "path": "/spec/suspend", "value": true},
                {"op": "test", "path": "/metadata/annotations/carbonshift.dev~1held", "value": "true"},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "4711"},
                {"op": "replace", "path": "/spec/suspend", "value": false},
                {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1released-at", "value": "2026-05-04T13:00:00Z"}
            ])
        );
        let bare = release_patch(
            &Guard {
                resource_version: None,
                held_marker: false,
            },
            t("2026-05-04T13:00:00Z"),
        );
        assert_eq!(bare.0.len(), 3);
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
        };
        let patch = release_patch(&guard, t("2026-05-04T13:00:00Z"));
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
    fn the_pause_patch_suspends_and_removes_the_release_marker() {
        let running = json!({
            "metadata": {"resourceVersion": "9", "annotations": {
                "carbonshift.dev/held": "true",
                "carbonshift.dev/released-at": "2026-05-04T12:00:00Z"}},
            "spec": {"suspend": false}
        });
        let patch = pause_patch(Some("9"), "2026-05-04T12:00:00Z");
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
    fn held_means_suspended_marked_and_not_released() {
        let job = |suspend: bool, annotations: Value| -> Job {
            serde_json::from_value(json!({
                "metadata": {"name": "j", "annotations": annotations},
                "spec": {"suspend": suspend, "template": {}}
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(is_held(&job(true, json!({"carbonshift.dev/held": "true"}))));
        assert!(!is_held(&job(
            false,
            json!({"carbonshift.dev/held": "true"})
        )));
        assert!(!is_held(&job(true, json!({}))));
        assert!(!is_held(&job(
            true,
            json!({"carbonshift.dev/held": "true", "carbonshift.dev/released-at": "2026-05-04T12:00:00Z"})
        )));
        let g = Guard::for_job(&job(true, json!({"carbonshift.dev/held": "true"})));
        assert_eq!(
            g,
            Guard {
                resource_version: None,
                held_marker: true
            }
        );
    }
}
