//! A plain view of a `batch/v1` Job: exactly the facts the state machine decides from, read from
//! the Job object without any client.

use crate::units::from_jiff;
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;

use crate::api::annotations::{
    self, AnnotationDefaults, AnnotationError, Deferral, HELD, RELEASED_AT, RUN_NOW,
};
use crate::webhook::mutate::{JOB_CONTROLLER, KUEUE_QUEUE_NAME};

/// How a Job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Condition `Complete` is `True`, since the given time.
    Succeeded(DateTime<Utc>),
    /// Condition `Failed` is `True`, since the given time.
    Failed(DateTime<Utc>),
}

impl Finished {
    /// When the Job ended.
    pub fn at(self) -> DateTime<Utc> {
        match self {
            Finished::Succeeded(t) | Finished::Failed(t) => t,
        }
    }
}

/// Another controller that owns the Job's `spec.suspend`, so carbonshift must never touch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedElsewhere {
    /// Kueue admits the Job (label or annotation `kueue.x-k8s.io/queue-name`).
    Kueue,
    /// `spec.managedBy` names a controller other than the built-in Job controller.
    ManagedBy(String),
}

/// What the state machine needs to know about a Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.resourceVersion` the view was read from: the release patch tests it.
    pub resource_version: Option<String>,
    /// The parsed `carbonshift.dev/*` annotations ([`annotations::parse`]).
    pub deferral: Result<Option<Deferral>, AnnotationError>,
    /// `spec.suspend`.
    pub suspend: bool,
    /// The `carbonshift.dev/held` marker is `"true"`.
    pub held_marker: bool,
    /// The raw `carbonshift.dev/released-at` marker, if present (the pause patch tests it).
    pub released_marker: Option<String>,
    /// The `carbonshift.dev/released-at` marker as a time, when it is one.
    pub released_at: Option<DateTime<Utc>>,
    /// `carbonshift.dev/run-now` is `"true"`; read on its own so that a manual release works even
    /// when another annotation is invalid.
    pub run_now: bool,
    /// `status.active`: pods running now.
    pub active: i32,
    /// `status.startTime`: when the Job controller last started (or resumed) the Job.
    pub start_time: Option<DateTime<Utc>>,
    /// Whether and when the Job ended.
    pub finished: Option<Finished>,
    /// Set when another controller manages the Job.
    pub managed_elsewhere: Option<ManagedElsewhere>,
}

impl JobView {
    /// Reads the view from a Job. `now` is only passed on to [`annotations::parse`] (as the
    /// submission time of a Job without a creation time) and used as the end time of a finished
    /// Job whose condition has no time.
    pub fn from_job(job: &Job, defaults: &AnnotationDefaults, now: DateTime<Utc>) -> JobView {
        let meta = &job.metadata;
        let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key));
        let released_marker = annotation(RELEASED_AT).cloned();
        let released_at = released_marker
            .as_deref()
            .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
            .map(|t| t.to_utc());
        let spec = job.spec.as_ref();
        let status = job.status.as_ref();
        let condition_time = |kind: &str| {
            status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == "True"))
                .map(|c| c.last_transition_time.as_ref().and_then(|t| from_jiff(t.0)))
        };
        let finished = match (condition_time("Complete"), condition_time("Failed")) {
            (Some(at), _) => Some(Finished::Succeeded(
                at.or_else(|| {
                    status
                        .and_then(|s| s.completion_time.as_ref())
                        .and_then(|t| from_jiff(t.0))
                })
                .unwrap_or(now),
            )),
            (None, Some(at)) => Some(Finished::Failed(at.unwrap_or(now))),
            (None, None) => None,
        };
        let has_queue = |map: &Option<std::collections::BTreeMap<String, String>>| {
            map.as_ref()
                .is_some_and(|m| m.contains_key(KUEUE_QUEUE_NAME))
        };
        let managed_elsewhere = if has_queue(&meta.labels) || has_queue(&meta.annotations) {
            Some(ManagedElsewhere::Kueue)
        } else {
            match spec.and_then(|s| s.managed_by.as_deref()) {
                Some(manager) if manager != JOB_CONTROLLER => {
                    Some(ManagedElsewhere::ManagedBy(manager.to_string()))
                }
                _ => None,
            }
        };
        JobView {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone(),
            deferral: annotations::parse(job, defaults, now),
            suspend: spec.and_then(|s| s.suspend).unwrap_or(false),
            held_marker: annotation(HELD).is_some_and(|v| v == "true"),
            released_marker,
            released_at,
            run_now: annotation(RUN_NOW).is_some_and(|v| v == "true"),
            active: status.and_then(|s| s.active).unwrap_or(0),
            start_time: status
                .and_then(|s| s.start_time.as_ref())
                .and_then(|t| from_jiff(t.0)),
            finished,
            managed_elsewhere,
        }
    }
}
