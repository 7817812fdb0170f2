//! The workload controller's writes besides the guarded patch: the CarbonWorkload spec and status
//! by server-side apply, the clean-up of a stale workload, and the Events.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::DynamicObject;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::{CarbonWorkload, CarbonWorkloadSpec, CarbonWorkloadStatus, FIELD_MANAGER};
use crate::controller::{Context, Error, WORKLOADS};
use crate::lifecycle::{Decision, WorkloadView};
use crate::workload::Adapter;

/// Whether the workload must be (re)applied: missing, another spec, or not owned by the Job.
pub(super) fn needs_apply(
    current: Option<&CarbonWorkload>,
    spec: &CarbonWorkloadSpec,
    job: &WorkloadView,
) -> bool {
    match current {
        None => true,
        Some(w) => {
            w.spec != *spec
                || !w
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == job.uid && o.controller == Some(true))
        }
    }
}

/// The owner reference from a workload to its Job.
pub fn owner_reference(job: &WorkloadView) -> OwnerReference {
    OwnerReference {
        api_version: job.api_version.clone(),
        kind: job.kind.to_string(),
        name: job.name.clone(),
        uid: job.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub(super) async fn apply_spec(
    api: &Api<CarbonWorkload>,
    job: &WorkloadView,
    spec: &CarbonWorkloadSpec,
) -> Result<CarbonWorkload, Error> {
    let object = json!({
        "apiVersion": CarbonWorkload::api_version(&()),
        "kind": CarbonWorkload::kind(&()),
        "metadata": {
            "name": job.name,
            "namespace": job.namespace,
            "ownerReferences": [owner_reference(job)],
        },
        "spec": spec,
    });
    api.patch(
        &job.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(Error::api(format!(
        "applying CarbonWorkload {}/{}",
        job.namespace, job.name
    )))
}

pub(super) async fn apply_status(
    api: &Api<CarbonWorkload>,
    name: &str,
    status: &CarbonWorkloadStatus,
) -> Result<CarbonWorkload, Error> {
    crate::controller::apply_status(api, name, status, &format!("CarbonWorkload {name}")).await
}

/// Deletes the workload of an older Job of the same name (only that one: the UID is a
/// precondition).
pub(super) async fn delete_stale(
    api: &Api<CarbonWorkload>,
    old: &CarbonWorkload,
) -> Result<(), Error> {
    let name = old.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: old.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or replaced meanwhile: the next reconcile sees what is there.
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
        Err(source) => Err(Error::Api {
            action: format!("deleting the stale CarbonWorkload {name}"),
            source,
        }),
    }
}

/// Publishes the Decision's Events on the Job: once each, where `kubectl describe` of the Job
/// shows them (the CarbonWorkload's status says the same at any time, so a second copy on it
/// would only double the Events of every lifecycle).
pub(super) async fn publish(
    ctx: &Context,
    adapter: &dyn Adapter,
    job: &DynamicObject,
    decision: &Decision,
) {
    if decision.events.is_empty() {
        return;
    }
    let job_ref: ObjectReference = job.object_ref(adapter.resource());
    for event in &decision.events {
        ctx.publish(WORKLOADS, &job_ref, event).await;
    }
}
