//! Reading a workload of any kind into the state machine's [`WorkloadView`] through its
//! [`Adapter`], without any client.

use chrono::{DateTime, Utc};
use kube::core::DynamicObject;

use super::Adapter;
use crate::api::annotations::{
    self, AnnotationDefaults, AnnotationError, HELD, RELEASED_AT, RUN_NOW, Subject,
};
use crate::lifecycle::WorkloadView;

/// Reads the view of `object` through its `adapter`. `now` is only passed on to
/// [`annotations::parse`] (as the submission time of an object without a creation time) and used
/// as the end time of a finished workload whose status has no time.
pub fn read(
    adapter: &dyn Adapter,
    object: &DynamicObject,
    defaults: &AnnotationDefaults,
    now: DateTime<Utc>,
) -> WorkloadView {
    let meta = &object.metadata;
    let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key));
    let released_marker = annotation(RELEASED_AT).cloned();
    let released_at = released_marker
        .as_deref()
        .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
        .map(|t| t.to_utc());
    let observed = adapter.observed(object, now);
    let deferral = match adapter.pod_sets(object) {
        Ok(pod_sets) => {
            let subject = Subject {
                annotations: meta.annotations.as_ref(),
                created: meta
                    .creation_timestamp
                    .as_ref()
                    .and_then(|t| crate::units::from_jiff(t.0)),
                pod_sets: &pod_sets,
            };
            annotations::parse(&subject, defaults, now)
        }
        Err(error) => Err(AnnotationError::BadObject {
            detail: format!("{} {error}", adapter.kind()),
        }),
    };
    let resource = adapter.resource();
    WorkloadView {
        kind: adapter.kind(),
        api_version: resource.api_version.clone(),
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone(),
        deferral,
        suspend: adapter.is_suspended(object),
        held_marker: annotation(HELD).is_some_and(|v| v == "true"),
        released_marker,
        released_at,
        run_now: annotation(RUN_NOW).is_some_and(|v| v == "true"),
        active: observed.active,
        start_time: observed.start_time,
        finished: observed.finished,
        managed_elsewhere: adapter.managed_elsewhere(object),
    }
}
