//! Reading a workload of any kind into the state machine's [`WorkloadView`] through its
//! [`Adapter`], without any client.

use chrono::{DateTime, Utc};
use kube::core::DynamicObject;

use super::{Adapter, Hold};
use crate::api::annotations::{
    self, AnnotationDefaults, AnnotationError, HELD, ManagedElsewhere, RELEASE_REASON, RELEASED_AT,
    RUN_NOW, Subject,
};
use crate::lifecycle::{ReleaseReason, WorkloadView};

/// Reads the view of `object` through its `adapter`. `now` is only passed on to
/// [`annotations::parse`] (as the submission time of an object without a creation time) and used
/// as the end time of a finished workload whose status has no time.
///
/// An object held by Kueue's admission gate ([`super::hold_of`]) reads as suspended while it
/// carries carbonshift's gate entry, and not as managed elsewhere. An object that cannot be paused
/// (its kind [cannot](Adapter::can_pause), or it is held by the gate) reads as not interruptible,
/// whatever its annotation says: the webhook refuses the annotation at admission, and an edit
/// after admission must not make the state machine pause what cannot resume.
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
    let hold = super::hold_of(object);
    let pausable = adapter.can_pause() && hold == Hold::Suspend;
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
            annotations::parse(&subject, defaults, now).map(|parsed| {
                parsed.map(|mut d| {
                    d.interruptible &= pausable;
                    d
                })
            })
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
        suspend: super::switch_on(adapter, object),
        held_marker: annotation(HELD).is_some_and(|v| v == "true"),
        released_marker,
        released_at,
        release_reason: annotation(RELEASE_REASON).and_then(|r| ReleaseReason::parse(r)),
        run_now: annotation(RUN_NOW).is_some_and(|v| v == "true"),
        active: observed.active,
        start_time: observed.start_time,
        // A workload released from Kueue's gate is started by Kueue, whenever it admits it.
        reports_start: adapter.reports_start() && hold == Hold::Suspend,
        finished: observed.finished,
        managed_elsewhere: match (hold, adapter.managed_elsewhere(object)) {
            (Hold::KueueGate, Some(ManagedElsewhere::Kueue)) => None,
            (_, other) => other,
        },
    }
}
