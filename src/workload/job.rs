//! The `batch/v1` Job adapter: `spec.suspend` is the switch, `spec.template` × parallelism the one
//! pod set, and the Job controller's `Complete`/`Failed` conditions the end.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodSpec;
use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;

use super::fields;
use super::fields::{condition_true, time};
use super::{Adapter, AdapterError, Observed, pointer};
use crate::api::annotations::{self, JOB_CONTROLLER, ManagedElsewhere, PodSet};
use crate::lifecycle::Finished;

/// The `batch/v1` Job kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchJob;

static RESOURCE: LazyLock<ApiResource> = LazyLock::new(|| ApiResource::erase::<Job>(&()));

impl Adapter for BatchJob {
    fn resource(&self) -> &ApiResource {
        &RESOURCE
    }

    fn kind(&self) -> &'static str {
        "Job"
    }

    fn suspend_path(&self) -> &'static [&'static str] {
        &["spec", "suspend"]
    }

    /// One pod set: `spec.template.spec`, `spec.parallelism` pods (default 1), at most
    /// `spec.completions`, since Kubernetes never runs more pods at once than completions remain.
    fn pod_sets(&self, object: &DynamicObject) -> Result<Vec<PodSet>, AdapterError> {
        let spec = object.data.get("spec");
        let pod =
            match pointer(&object.data, &["spec", "template", "spec"]) {
                None | Some(Value::Null) => None,
                Some(value) => Some(serde_json::from_value::<PodSpec>(value.clone()).map_err(
                    |e| AdapterError::Malformed {
                        kind: "Job",
                        field: "spec.template.spec".to_string(),
                        problem: e.to_string(),
                    },
                )?),
            };
        let int = |key: &str| -> Result<Option<i32>, AdapterError> {
            match spec.and_then(|s| s.get(key)) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => serde_json::from_value(value.clone())
                    .map(Some)
                    .map_err(|e| AdapterError::Malformed {
                        kind: "Job",
                        field: format!("spec.{key}"),
                        problem: e.to_string(),
                    }),
            }
        };
        let parallelism = int("parallelism")?.unwrap_or(1);
        let parallelism = match int("completions")? {
            Some(completions) => parallelism.min(completions),
            None => parallelism,
        };
        // The API server refuses negative values; a hand-made object must not make the estimate
        // negative.
        let count = u32::try_from(parallelism).unwrap_or(0);
        Ok(vec![PodSet {
            path: "spec.template.spec".to_string(),
            pod,
            count,
        }])
    }

    fn observed(&self, object: &DynamicObject, now: DateTime<Utc>) -> Observed {
        let status = object.data.get("status");
        let finished = match (
            condition_true(status, "Complete"),
            condition_true(status, "Failed"),
        ) {
            (Some(at), _) => Some(Finished::Succeeded(
                at.or_else(|| time(status.and_then(|s| s.get("completionTime"))))
                    .unwrap_or(now),
            )),
            (None, Some(at)) => Some(Finished::Failed(at.unwrap_or(now))),
            (None, None) => None,
        };
        Observed {
            active: status
                .and_then(|s| s.get("active"))
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0),
            start_time: time(status.and_then(|s| s.get("startTime"))),
            finished,
        }
    }

    fn managed_elsewhere(&self, object: &DynamicObject) -> Option<ManagedElsewhere> {
        fields::managed_elsewhere(object, &["spec", "managedBy"], JOB_CONTROLLER)
    }

    /// A suspended Job's pods are deleted and re-created at resume (KEP-2232).
    fn can_pause(&self) -> bool {
        true
    }

    /// The Job controller sets `status.startTime` when it starts an unsuspended Job, and again
    /// at every resume.
    fn reports_start(&self) -> bool {
        true
    }
}

/// A typed Job as a dynamic object (for callers and tests that hold a `Job`).
pub fn dynamic(job: &Job) -> Result<DynamicObject, serde_json::Error> {
    serde_json::to_value(job).and_then(serde_json::from_value)
}

/// The state machine's view of a typed Job ([`super::read`] through [`BatchJob`]). A Job always
/// converts to a dynamic object; should it ever not, the view is read from an empty object of
/// the same name, which carbonshift leaves alone.
pub fn view(
    job: &Job,
    defaults: &annotations::AnnotationDefaults,
    now: DateTime<Utc>,
) -> crate::lifecycle::WorkloadView {
    let object = dynamic(job).unwrap_or_else(|_| {
        let mut empty =
            DynamicObject::new(&job.metadata.name.clone().unwrap_or_default(), &RESOURCE);
        empty.metadata = job.metadata.clone();
        empty
    });
    super::read(&BatchJob, &object, defaults, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn one_pod_set_of_parallelism_pods_at_most_completions() {
        for (spec, count) in [
            (json!({"template": {}}), 1),
            (json!({"parallelism": 4, "template": {}}), 4),
            (
                json!({"parallelism": 4, "completions": 2, "template": {}}),
                2,
            ),
            (json!({"parallelism": -3, "template": {}}), 0),
        ] {
            let job = object(json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "j"}, "spec": spec}));
            let sets = BatchJob.pod_sets(&job).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(sets.len(), 1);
            assert_eq!(sets[0].count, count, "{spec}");
            assert_eq!(sets[0].path, "spec.template.spec");
        }
        let bad = object(json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": 7}}}}));
        let error = BatchJob.pod_sets(&bad).map(|_| ()).unwrap_err().to_string();
        assert!(error.starts_with("spec.template.spec: "), "{error}");
    }

    #[test]
    fn phases_come_from_the_job_controllers_conditions() {
        let now = DateTime::parse_from_rfc3339("2026-05-04T12:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_else(|e| panic!("{e}"));
        let with_status = |status: Value| {
            BatchJob.observed(
                &object(json!({"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": "j"}, "spec": {}, "status": status})),
                now,
            )
        };
        let running = with_status(json!({"active": 2, "startTime": "2026-05-04T10:00:00Z"}));
        assert_eq!(running.active, 2);
        assert_eq!(running.finished, None);
        assert_eq!(
            running.start_time.map(|t| t.to_rfc3339()),
            Some("2026-05-04T10:00:00+00:00".to_string())
        );
        let done = with_status(json!({"conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-05-04T11:00:00Z"}]}));
        assert!(matches!(done.finished, Some(Finished::Succeeded(t)) if t < now));
        let failed = with_status(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        assert_eq!(failed.finished, Some(Finished::Failed(now)));
        let pending = with_status(json!({"conditions": [{"type": "Complete", "status": "False"}]}));
        assert_eq!(pending, Observed::default());
    }

    #[test]
    fn kueue_and_other_managers_own_the_switch() {
        let job = |meta: Value, spec: Value| {
            object(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}))
        };
        let plain = job(json!({"name": "j"}), json!({}));
        assert_eq!(BatchJob.managed_elsewhere(&plain), None);
        let own = job(json!({"name": "j"}), json!({"managedBy": JOB_CONTROLLER}));
        assert_eq!(BatchJob.managed_elsewhere(&own), None);
        let queued = job(
            json!({"name": "j", "labels": {"kueue.x-k8s.io/queue-name": "q"}}),
            json!({}),
        );
        assert_eq!(
            BatchJob.managed_elsewhere(&queued),
            Some(ManagedElsewhere::Kueue)
        );
        let other = job(json!({"name": "j"}), json!({"managedBy": "example.com/x"}));
        assert_eq!(
            BatchJob.managed_elsewhere(&other),
            Some(ManagedElsewhere::ManagedBy("example.com/x".into()))
        );
        assert!(BatchJob.is_suspended(&job(json!({"name": "j"}), json!({"suspend": true}))));
        assert!(!BatchJob.is_suspended(&plain));
    }
}
