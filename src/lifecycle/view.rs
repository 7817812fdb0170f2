//! The state machine's view of a workload of any kind: exactly the facts it decides from, as plain
//! data. The workload adapter (`crate::workload::read`) fills it from an object; the replay fills
//! it from a simulated job.

use chrono::{DateTime, Utc};

use crate::api::annotations::{AnnotationError, Deferral, ManagedElsewhere};

/// How a workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// It succeeded (a Job's `Complete` condition), at the given time.
    Succeeded(DateTime<Utc>),
    /// It failed, at the given time.
    Failed(DateTime<Utc>),
}

impl Finished {
    /// When the workload ended.
    pub fn at(self) -> DateTime<Utc> {
        match self {
            Finished::Succeeded(t) | Finished::Failed(t) => t,
        }
    }
}

/// What the state machine needs to know about a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    /// The kind, for example `Job`.
    pub kind: &'static str,
    /// `apiVersion`, for example `batch/v1`.
    pub api_version: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.resourceVersion` the view was read from: the release patch tests it.
    pub resource_version: Option<String>,
    /// The parsed `carbonshift.dev/*` annotations (`annotations::parse`).
    pub deferral: Result<Option<Deferral>, AnnotationError>,
    /// The suspend switch is on.
    pub suspend: bool,
    /// The `carbonshift.dev/held` marker is `"true"`.
    pub held_marker: bool,
    /// The raw `carbonshift.dev/released-at` marker, if present (the pause patch tests it).
    pub released_marker: Option<String>,
    /// The `carbonshift.dev/released-at` marker as a time, when it is one.
    pub released_at: Option<DateTime<Utc>>,
    /// The `carbonshift.dev/release-reason` marker written with the release, when it names a
    /// reason.
    pub release_reason: Option<super::ReleaseReason>,
    /// `carbonshift.dev/run-now` is `"true"`; read on its own so that a manual release works even
    /// when another annotation is invalid.
    pub run_now: bool,
    /// Pods running now.
    pub active: i32,
    /// When the workload's controller last started (or resumed) it.
    pub start_time: Option<DateTime<Utc>>,
    /// Whether the kind's controller answers a release by setting [`WorkloadView::start_time`]
    /// (a batch Job's `status.startTime`, reset at every resume), so that the state machine can
    /// record the release together with that answer.
    pub reports_start: bool,
    /// Whether and when it ended.
    pub finished: Option<Finished>,
    /// Set when another controller manages the suspend switch.
    pub managed_elsewhere: Option<ManagedElsewhere>,
}
