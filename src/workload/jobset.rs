//! The JobSet adapter (`jobset.x-k8s.io/v1alpha2`, kubernetes-sigs/jobset): `spec.suspend` is the
//! switch ("suspend suspends all running child Jobs when set to true"), every replicated Job a pod
//! set of `replicas` × its Job's parallelism (at most its completions), and the JobSet
//! controller's `Completed`/`Failed` conditions the end.
//!
//! Suspending a running JobSet suspends its child Jobs, whose pods are deleted and re-created at
//! resume, as for a Job: an interruptible JobSet can be paused between windows. While it is
//! suspended, the JobSet webhook accepts changes to the labels, annotations, nodeSelector,
//! tolerations and schedulingGates of its pod templates, but not to their affinity (what Kueue
//! uses to place a suspended JobSet); carbonshift changes none of them.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;

use super::fields;
use super::fields::{array, condition_true, job_pods, malformed, pod_spec, pods, resource, sum};
use super::{Adapter, AdapterError, HoldCheck, Observed, pointer};
use crate::api::annotations::{Deferral, ManagedElsewhere, PodSet};
use crate::lifecycle::Finished;

/// The JobSet kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobSetKind;

/// The `spec.managedBy` of JobSets the JobSet controller manages (also the default when unset).
pub const JOBSET_CONTROLLER: &str = "jobset.sigs.k8s.io/jobset-controller";

static RESOURCE: LazyLock<ApiResource> =
    LazyLock::new(|| resource("jobset.x-k8s.io", "v1alpha2", "JobSet", "jobsets"));

const KIND: &str = "JobSet";

/// The name of replicated Job `i` for paths: its `name`, else its index.
fn job_name(job: &Value, i: usize) -> String {
    job.get("name")
        .and_then(Value::as_str)
        .map_or_else(|| i.to_string(), str::to_string)
}

impl Adapter for JobSetKind {
    fn resource(&self) -> &ApiResource {
        &RESOURCE
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn suspend_path(&self) -> &'static [&'static str] {
        &["spec", "suspend"]
    }

    /// One pod set per replicated Job: `spec.replicatedJobs[name].template.spec.template.spec`,
    /// `replicas` (default 1) × the Job's `parallelism` (default 1, at most `completions`).
    fn pod_sets(&self, object: &DynamicObject) -> Result<Vec<PodSet>, AdapterError> {
        let spec = object.data.get("spec");
        let jobs = array(KIND, spec, "replicatedJobs", "spec.replicatedJobs")?;
        jobs.iter()
            .enumerate()
            .map(|(i, job)| {
                let base = format!("spec.replicatedJobs[{}]", job_name(job, i));
                if !job.is_object() {
                    return Err(malformed(KIND, &base, format!("{job} is not an object")));
                }
                let replicas =
                    super::fields::int(KIND, Some(job), "replicas", &format!("{base}.replicas"))?
                        .unwrap_or(1);
                let job_spec = pointer(job, &["template", "spec"]);
                let per_job = job_pods(KIND, job_spec, &format!("{base}.template.spec"))?;
                let path = format!("{base}.template.spec.template.spec");
                Ok(PodSet {
                    pod: pod_spec(KIND, job, &["template", "spec", "template", "spec"], &path)?,
                    count: pods(replicas).saturating_mul(per_job),
                    path,
                })
            })
            .collect()
    }

    /// `Completed` or `Failed` condition `True` (`status.terminalState` names the same); running
    /// while a replicated Job has active child Jobs.
    fn observed(&self, object: &DynamicObject, now: DateTime<Utc>) -> Observed {
        let status = object.data.get("status");
        let terminal = status
            .and_then(|s| s.get("terminalState"))
            .and_then(Value::as_str);
        let finished = match (
            condition_true(status, "Completed"),
            condition_true(status, "Failed"),
            terminal,
        ) {
            (Some(at), _, _) => Some(Finished::Succeeded(at.unwrap_or(now))),
            (None, Some(at), _) => Some(Finished::Failed(at.unwrap_or(now))),
            (None, None, Some("Completed")) => Some(Finished::Succeeded(now)),
            (None, None, Some("Failed")) => Some(Finished::Failed(now)),
            _ => None,
        };
        let jobs = status
            .and_then(|s| s.get("replicatedJobsStatus"))
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
        fields::managed_elsewhere(object, &["spec", "managedBy"], JOBSET_CONTROLLER)
    }

    /// A suspended JobSet suspends its child Jobs, whose pods are deleted and re-created at
    /// resume.
    fn can_pause(&self) -> bool {
        true
    }

    /// A warning when a pod template sets `affinity`: the JobSet cannot be steered by changing it
    /// while held.
    fn check_hold(&self, object: &DynamicObject, _deferral: &Deferral) -> HoldCheck {
        let jobs = pointer(&object.data, &["spec", "replicatedJobs"])
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let with_affinity: Vec<String> = jobs
            .iter()
            .enumerate()
            .filter(|(_, job)| {
                pointer(job, &["template", "spec", "template", "spec", "affinity"])
                    .is_some_and(|a| !a.is_null())
            })
            .map(|(i, job)| job_name(job, i))
            .collect();
        let mut check = HoldCheck::default();
        if !with_affinity.is_empty() {
            check.warnings.push(format!(
                "carbonshift holds this JobSet suspended until its planned start; while it is suspended, the JobSet webhook accepts changes to the labels, annotations, nodeSelector, tolerations and schedulingGates of its pod templates but not to their affinity (set in replicated Job {}): to move it before it starts, change nodeSelector or tolerations",
                with_affinity.join(", ")
            ));
        }
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::annotations;
    use crate::workload::tests::{example, object, t};
    use serde_json::json;

    #[test]
    fn the_example_has_one_pod_set_per_replicated_job() {
        let jobset = example("jobset.yaml");
        assert_eq!(JobSetKind.suspend_path(), ["spec", "suspend"]);
        assert!(!JobSetKind.is_suspended(&jobset));
        let sets = JobSetKind
            .pod_sets(&jobset)
            .unwrap_or_else(|e| panic!("{e}"));
        let shape: Vec<(&str, u32)> = sets.iter().map(|s| (s.path.as_str(), s.count)).collect();
        assert_eq!(
            shape,
            [
                ("spec.replicatedJobs[driver].template.spec.template.spec", 1),
                (
                    "spec.replicatedJobs[workers].template.spec.template.spec",
                    8
                ),
            ]
        );
        let power = annotations::estimate_power(&sets, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        // Driver: 4 cores; workers: 2 slices × 4 pods × (4 GPUs × 700 W + 16 cores × 10 W).
        assert_eq!(power.watts, 4.0 * 10.0 + 8.0 * (4.0 * 700.0 + 16.0 * 10.0));
        assert_eq!(JobSetKind.managed_elsewhere(&jobset), None);
    }

    #[test]
    fn replicas_default_to_one_and_completions_cap_parallelism() {
        let jobset = object(json!({
            "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": "js"},
            "spec": {"replicatedJobs": [
                {"name": "a", "template": {"spec": {"template": {"spec": {"containers": []}}}}},
                {"name": "b", "replicas": 3, "template": {"spec": {
                    "parallelism": 4, "completions": 2, "template": {}}}},
            ]}
        }));
        let counts: Vec<u32> = JobSetKind
            .pod_sets(&jobset)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|s| s.count)
            .collect();
        assert_eq!(counts, [1, 6]);
        let bad = object(json!({
            "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": "js"},
            "spec": {"replicatedJobs": [{"name": "w", "replicas": "two"}]}
        }));
        let error = JobSetKind.pod_sets(&bad).map(|_| ()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.replicatedJobs[w].replicas: \"two\" is not an integer"
        );
    }

    #[test]
    fn phases_come_from_the_jobset_controllers_conditions() {
        let now = t("2026-05-04T12:00:00Z");
        let with_status = |status: Value| {
            let mut jobset = example("jobset.yaml");
            jobset.data["status"] = status;
            JobSetKind.observed(&jobset, now)
        };
        let running = with_status(json!({"replicatedJobsStatus": [
            {"name": "driver", "active": 1, "ready": 1, "succeeded": 0, "failed": 0, "suspended": 0},
            {"name": "workers", "active": 2, "ready": 2, "succeeded": 0, "failed": 0, "suspended": 0}]}));
        assert_eq!((running.active, running.finished), (3, None));
        let done = with_status(json!({"terminalState": "Completed", "conditions": [{
            "type": "Completed", "status": "True", "reason": "AllJobsCompleted", "message": "jobset completed successfully",
            "lastTransitionTime": "2026-05-04T11:00:00Z"}]}));
        assert_eq!(
            done.finished,
            Some(Finished::Succeeded(t("2026-05-04T11:00:00Z")))
        );
        let failed = with_status(json!({"terminalState": "Failed"}));
        assert_eq!(failed.finished, Some(Finished::Failed(now)));
        let suspended = with_status(
            json!({"conditions": [{"type": "Suspended", "status": "True",
            "reason": "SuspendedJobs", "message": "jobset is suspended", "lastTransitionTime": "2026-05-04T10:00:00Z"}]}),
        );
        assert_eq!(suspended, Observed::default());
    }

    #[test]
    fn another_manager_or_kueue_owns_the_switch_and_affinity_is_warned_about() {
        let mut jobset = example("jobset.yaml");
        jobset.data["spec"]["managedBy"] = json!(JOBSET_CONTROLLER);
        assert_eq!(JobSetKind.managed_elsewhere(&jobset), None);
        jobset.data["spec"]["managedBy"] = json!("kueue.x-k8s.io/multikueue");
        assert_eq!(
            JobSetKind.managed_elsewhere(&jobset),
            Some(ManagedElsewhere::ManagedBy(
                "kueue.x-k8s.io/multikueue".into()
            ))
        );
        let deferral = crate::workload::tests::deferral(false);
        let plain = example("jobset.yaml");
        assert_eq!(
            JobSetKind.check_hold(&plain, &deferral),
            HoldCheck::default()
        );
        let mut steered = example("jobset.yaml");
        steered.data["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]["spec"]["affinity"] =
            json!({"nodeAffinity": {}});
        let check = JobSetKind.check_hold(&steered, &deferral);
        assert_eq!(check.refusal, None);
        assert_eq!(check.warnings.len(), 1);
        assert!(
            check.warnings[0].contains("but not to their affinity (set in replicated Job workers)"),
            "{}",
            check.warnings[0]
        );
        // Interruptible JobSets are fine.
        let interruptible = crate::workload::tests::deferral(true);
        assert_eq!(JobSetKind.check_hold(&plain, &interruptible).refusal, None);
    }
}
