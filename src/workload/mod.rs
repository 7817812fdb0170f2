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
//! - what stands in the way of holding an object of it at admission ([`Adapter::check_hold`]).
//!
//! Everything here is pure: objects in, views and patches out. [`read`] gives the state machine's
//! `WorkloadView` of an object; [`patch`] holds the patches. The kinds: `batch/v1` Job
//! ([`job::BatchJob`]), JobSet ([`jobset::JobSetKind`]), Kubeflow Trainer's TrainJob
//! ([`trainjob::TrainJobKind`]), training-operator v1's PyTorchJob and MPIJob
//! ([`kubeflow::PyTorchJobKind`], [`kubeflow::MpiJobKind`]) and KubeRay's RayJob
//! ([`rayjob::RayJobKind`]); [`adapter_for`] finds the adapter of a kind, [`Kinds`] is the set an
//! operator is configured with.
//!
//! # Two ways to hold
//!
//! An object is held by its kind's suspend switch, unless Kueue queues it
//! (`kueue.x-k8s.io/queue-name`) and the webhook gave it carbonshift's entry in Kueue's admission
//! gate (`kueue.x-k8s.io/admission-gated-by`, [`crate::api::annotations::ADMISSION_GATE`]): Kueue
//! owns the suspend switch of its jobs, so carbonshift keeps Kueue from admitting the job instead,
//! and releases it by removing only its own entry ([`Hold`], [`hold_of`]). Which way an object
//! is held is read from the object alone, so the controllers need no setting for it.

pub mod fields;
pub mod job;
pub mod jobset;
mod kinds;
pub mod kubeflow;
pub mod patch;
pub mod placement;
pub mod prune;
pub mod rayjob;
pub mod trainjob;
mod view;

// The state machine decided from real-shaped Jobs read through the Job adapter.
#[cfg(test)]
mod lifecycle_tests;

use chrono::{DateTime, Utc};
use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;
use thiserror::Error;

use crate::api::annotations::{
    self, ADMISSION_GATE, ADMISSION_GATED_BY, Deferral, HELD_BY, HELD_BY_KUEUE_GATE, INTERRUPTIBLE,
    KUEUE_QUEUE_NAME, ManagedElsewhere, PodSet,
};
use crate::lifecycle::Finished;

pub use kinds::{KindError, Kinds};
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

    /// Whether the kind's controller answers a release by setting the start time that
    /// [`Adapter::observed`] reports (reset at every resume): then the release is recorded
    /// together with that answer ([`crate::lifecycle::Config::release_ack_wait`]). Default
    /// `false`.
    fn reports_start(&self) -> bool {
        false
    }

    /// Kind-specific checks before the webhook holds `object` by its suspend switch (`deferral`:
    /// its parsed annotations): why it cannot be held, and what its owner should know. The default
    /// refuses `interruptible` for a kind that [cannot pause](Adapter::can_pause).
    fn check_hold(&self, _object: &DynamicObject, deferral: &Deferral) -> HoldCheck {
        let mut check = HoldCheck::default();
        if deferral.interruptible && !self.can_pause() {
            check.refusal = Some(format!(
                "{INTERRUPTIBLE}: \"true\" is not supported for a {kind}: suspending a running {kind} does not stop it so that it can resume later; remove {INTERRUPTIBLE} (the {kind} is then held until its planned start and runs to the end)",
                kind = self.kind()
            ));
        }
        check
    }

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

/// Every kind carbonshift supports, in the order of [`Kinds`]' names.
pub fn adapters() -> [&'static dyn Adapter; 6] {
    [
        &job::BatchJob,
        &jobset::JobSetKind,
        &trainjob::TrainJobKind,
        &kubeflow::PyTorchJobKind,
        &kubeflow::MpiJobKind,
        &rayjob::RayJobKind,
    ]
}

/// What a kind says about holding one object by its suspend switch, at admission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldCheck {
    /// Why it cannot be held: the webhook denies the object with this message.
    pub refusal: Option<String>,
    /// What its owner should know: admission warnings.
    pub warnings: Vec<String>,
}

/// How carbonshift holds (or would hold) an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// By its kind's suspend switch ([`Adapter::suspend_path`]).
    Suspend,
    /// By carbonshift's entry in Kueue's admission gate (module documentation): the object is
    /// queued by Kueue and carries the entry, or carried it and was released by carbonshift.
    KueueGate,
}

/// Whether Kueue queues `object` (label or annotation [`KUEUE_QUEUE_NAME`]).
pub fn is_queued(object: &DynamicObject) -> bool {
    let has = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.as_ref()
            .is_some_and(|m| m.contains_key(KUEUE_QUEUE_NAME))
    };
    has(&object.metadata.labels) || has(&object.metadata.annotations)
}

/// The value of Kueue's admission gate annotation on `object`.
pub fn admission_gates(object: &DynamicObject) -> Option<&str> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ADMISSION_GATED_BY))
        .map(String::as_str)
}

/// How `object` is held: [`Hold::KueueGate`] when Kueue queues it and it carries carbonshift's
/// gate entry or the marker [`HELD_BY`] the webhook sets with it (kept after the release); else
/// [`Hold::Suspend`].
pub fn hold_of(object: &DynamicObject) -> Hold {
    if !is_queued(object) {
        return Hold::Suspend;
    }
    let by_gate = object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HELD_BY))
        .is_some_and(|v| v == HELD_BY_KUEUE_GATE);
    if by_gate || admission_gates(object).is_some_and(annotations::has_gate) {
        Hold::KueueGate
    } else {
        Hold::Suspend
    }
}

/// Whether carbonshift's switch on `object` is on: the suspend switch, or carbonshift's gate
/// entry for an object held by the gate.
pub fn switch_on(adapter: &dyn Adapter, object: &DynamicObject) -> bool {
    match hold_of(object) {
        Hold::Suspend => adapter.is_suspended(object),
        Hold::KueueGate => admission_gates(object).is_some_and(annotations::has_gate),
    }
}

/// The checks before the webhook holds `object` the way `hold` says ([`HoldCheck`]): the kind's
/// own for the suspend switch ([`Adapter::check_hold`]); for Kueue's gate, the refusal of
/// `interruptible`, since the gate cannot be put back once removed and Kueue owns the switch.
pub fn check_hold(
    adapter: &dyn Adapter,
    object: &DynamicObject,
    deferral: &Deferral,
    hold: Hold,
) -> HoldCheck {
    match hold {
        Hold::Suspend => adapter.check_hold(object, deferral),
        Hold::KueueGate => HoldCheck {
            refusal: deferral.interruptible.then(|| {
                format!(
                    "{INTERRUPTIBLE}: \"true\" is not supported for a {kind} queued by Kueue ({KUEUE_QUEUE_NAME}): carbonshift holds it with its entry {ADMISSION_GATE} in {ADMISSION_GATED_BY}, which cannot be put back once removed, and Kueue owns its suspend switch; remove {INTERRUPTIBLE} (the {kind} is then held until its planned start and runs to the end)",
                    kind = adapter.kind()
                )
            }),
            warnings: Vec::new(),
        },
    }
}

/// The adapter for `group`/`version`/`kind`, if carbonshift supports it.
pub fn adapter_for(group: &str, version: &str, kind: &str) -> Option<&'static dyn Adapter> {
    adapters()
        .into_iter()
        .find(|a| a.handles(group, version, kind))
}

/// Helpers of the adapters' tests: the example manifests of `examples/kinds/` as objects.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    /// A timestamp literal.
    pub fn t(text: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(text).unwrap_or_else(|| panic!("bad timestamp {text:?}"))
    }

    /// An object from its JSON.
    pub fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `examples/kinds/<file>` as an object in namespace `ml`, with a uid.
    pub fn example(file: &str) -> DynamicObject {
        let path = format!("{}/examples/kinds/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let value: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut object = object(value);
        object.metadata.namespace = Some("ml".into());
        object.metadata.uid = Some(format!("uid-{file}"));
        object
    }

    /// Parsed annotations asking for a 1-hour run within 8 hours.
    pub fn deferral(interruptible: bool) -> Deferral {
        let map: std::collections::BTreeMap<String, String> = [
            (annotations::DEFERRABLE, "true"),
            (annotations::MAX_DELAY, "8h"),
            (annotations::POWER, "1kW"),
            (INTERRUPTIBLE, if interruptible { "true" } else { "false" }),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let now = t("2026-05-04T10:00:00Z");
        let subject = annotations::Subject {
            annotations: Some(&map),
            created: Some(now),
            pod_sets: &[],
        };
        match annotations::parse(&subject, &Default::default(), now) {
            Ok(Some(d)) => d,
            other => panic!("{other:?}"),
        }
    }

    fn queued_job(annotations: Value) -> DynamicObject {
        object(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "train", "namespace": "ml", "uid": "u", "resourceVersion": "3",
                "creationTimestamp": "2026-05-04T10:00:00Z",
                "labels": {"kueue.x-k8s.io/queue-name": "user-queue"},
                "annotations": annotations},
            "spec": {"suspend": true, "template": {"spec": {"containers": []}}}
        }))
    }

    #[test]
    fn a_job_held_by_kueues_gate_reads_as_held_until_its_entry_is_removed() {
        let defaults = annotations::AnnotationDefaults::default();
        let now = t("2026-05-04T10:00:00Z");
        let marks = |extra: &[(&str, &str)]| {
            let mut map = serde_json::json!({
                "carbonshift.dev/deferrable": "true",
                "carbonshift.dev/interruptible": "true",
                "carbonshift.dev/held": "true",
                "carbonshift.dev/held-by": "kueue-admission-gate",
            });
            for (k, v) in extra {
                map[*k] = serde_json::json!(v);
            }
            map
        };
        let gated = queued_job(marks(&[(
            ADMISSION_GATED_BY,
            "example.com/x,carbonshift.dev/low-carbon-window",
        )]));
        assert_eq!(hold_of(&gated), Hold::KueueGate);
        let view = read(&job::BatchJob, &gated, &defaults, now);
        assert!(view.suspend && view.held_marker);
        assert_eq!(view.managed_elsewhere, None);
        // Held by the gate it cannot be paused, whatever the annotation says.
        assert!(matches!(&view.deferral, Ok(Some(d)) if !d.interruptible));
        assert!(switch_on(&job::BatchJob, &gated));

        // Released: the entry is gone, Kueue's suspend is still on; the job reads as released.
        let released = queued_job(marks(&[
            (ADMISSION_GATED_BY, "example.com/x"),
            ("carbonshift.dev/released-at", "2026-05-04T11:00:00Z"),
        ]));
        assert_eq!(hold_of(&released), Hold::KueueGate);
        let view = read(&job::BatchJob, &released, &defaults, now);
        assert!(!view.suspend);
        assert_eq!(
            crate::lifecycle::classify(&view),
            crate::lifecycle::State::Released
        );

        // Without the marker and the entry (an operator that leaves Kueue's jobs alone): Kueue's.
        let alone = queued_job(serde_json::json!({"carbonshift.dev/deferrable": "true"}));
        assert_eq!(hold_of(&alone), Hold::Suspend);
        let view = read(&job::BatchJob, &alone, &defaults, now);
        assert_eq!(view.managed_elsewhere, Some(ManagedElsewhere::Kueue));
        assert_eq!(
            crate::lifecycle::classify(&view),
            crate::lifecycle::State::NotHeld
        );
    }

    #[test]
    fn a_kind_that_cannot_pause_reads_as_not_interruptible() {
        let mut rayjob = example("rayjob.yaml");
        if let Some(a) = rayjob.metadata.annotations.as_mut() {
            a.insert(INTERRUPTIBLE.to_string(), "true".to_string());
        }
        let view = read(
            &rayjob::RayJobKind,
            &rayjob,
            &Default::default(),
            t("2026-05-04T10:00:00Z"),
        );
        assert!(matches!(&view.deferral, Ok(Some(d)) if !d.interruptible));
        assert_eq!(view.kind, "RayJob");
        assert_eq!(view.api_version, "ray.io/v1");
        let check = check_hold(&rayjob::RayJobKind, &rayjob, &deferral(true), Hold::Suspend);
        assert!(check.refusal.is_some());
        // A kind that can pause keeps the annotation.
        let trainjob = example("trainjob.yaml");
        let view = read(
            &trainjob::TrainJobKind,
            &trainjob,
            &Default::default(),
            t("2026-05-04T10:00:00Z"),
        );
        assert!(matches!(&view.deferral, Ok(Some(d)) if d.interruptible));
    }
}
