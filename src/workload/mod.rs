//! The workload adapter: one trait for everything carbonshift holds, so that the webhook, the
//! controller, the state machine and the replay never name a concrete kind.
//!
//! Modelled on what Kueue's job framework asks of a job (`IsSuspended`, `Suspend`, pod sets,
//! `Finished`, …), an [`Adapter`] knows, for one group/version/kind:
//!
//! - its identity ([`Adapter::resource`]: group, version, kind, plural) — objects are read as
//!   [`DynamicObject`]s, so a kind needs no generated Rust types;
//! - where its suspend switch is ([`Adapter::suspend_path`]), from which the guarded patches that
//!   hold, release and pause it are built here, the same way for every kind;
//! - its pod templates with replica counts ([`Adapter::pod_sets`]), for the power estimate;
//! - its observed phase from its own status ([`Adapter::observed`]);
//! - when another controller owns its switch ([`Adapter::managed_elsewhere`]);
//! - whether suspending it while it runs is supported ([`Adapter::can_pause`]).
//!
//! Everything here is pure: objects in, views and patches out. [`read`] gives the state machine's
//! `WorkloadView` of an object; [`patch`] holds the patches. `batch/v1` Job ([`job::BatchJob`]) is the
//! first adapter; [`adapter_for`] finds the adapter of a kind.

pub mod job;
pub mod patch;
mod view;

// The state machine decided from real-shaped Jobs read through the Job adapter.
#[cfg(test)]
mod lifecycle_tests;

use chrono::{DateTime, Utc};
use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;
use thiserror::Error;

use crate::api::annotations::{ManagedElsewhere, PodSet};
use crate::lifecycle::Finished;

pub use view::read;

/// Why an object cannot be read as a workload of its kind.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdapterError {
    /// A field has the wrong shape, for example a pod template that is not an object.
    #[error("{field}: {problem}")]
    Malformed {
        /// The kind, for example `Job`.
        kind: &'static str,
        /// The field path, for example `spec.template`.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

/// What a workload's own status says about its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    /// Pods running now.
    pub active: i32,
    /// When the workload's controller last started (or resumed) it.
    pub start_time: Option<DateTime<Utc>>,
    /// Whether and when it ended.
    pub finished: Option<Finished>,
}

/// Everything carbonshift needs to know about one kind of workload (module documentation).
pub trait Adapter: Send + Sync + std::fmt::Debug + 'static {
    /// Group, version, kind and plural of the kind.
    fn resource(&self) -> &ApiResource;

    /// The kind's name, for messages and metric labels: `Job`, `JobSet`, ….
    fn kind(&self) -> &'static str;

    /// The JSON path of the suspend switch, for example `["spec", "suspend"]`.
    fn suspend_path(&self) -> &'static [&'static str];

    /// The pod templates of `object` with the number of pods of each that run at once.
    fn pod_sets(&self, object: &DynamicObject) -> Result<Vec<PodSet>, AdapterError>;

    /// The phase its own status reports. `now` is used as the end time of a workload that ended
    /// without saying when.
    fn observed(&self, object: &DynamicObject, now: DateTime<Utc>) -> Observed;

    /// Set when another controller owns the suspend switch.
    fn managed_elsewhere(&self, object: &DynamicObject) -> Option<ManagedElsewhere>;

    /// Whether suspending the workload while it runs stops it cleanly so that it can be resumed
    /// later (pause and resume between windows).
    fn can_pause(&self) -> bool;

    /// Whether the suspend switch is on.
    fn is_suspended(&self, object: &DynamicObject) -> bool {
        pointer(&object.data, self.suspend_path()).and_then(Value::as_bool) == Some(true)
    }

    /// Whether `resource` is this kind (group, version and kind match).
    fn handles(&self, group: &str, version: &str, kind: &str) -> bool {
        let r = self.resource();
        r.group == group && r.version == version && r.kind == kind
    }
}

/// The value at `path` below `root`, if every step exists.
pub fn pointer<'a>(root: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(root, |value, key| value.get(key))
}

/// Every kind carbonshift supports.
pub fn adapters() -> [&'static dyn Adapter; 1] {
    [&job::BatchJob]
}

/// The adapter for `group`/`version`/`kind`, if carbonshift supports it.
pub fn adapter_for(group: &str, version: &str, kind: &str) -> Option<&'static dyn Adapter> {
    adapters()
        .into_iter()
        .find(|a| a.handles(group, version, kind))
}
