//! The `CarbonWorkload` custom resource: one per deferred Job (same name, owned by the Job), saying
//! what carbonshift decided for it and why.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// carbonshift's record of one deferrable Job: its constraints, its plan and what happened.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "carbonshift.dev",
    version = "v1alpha1",
    kind = "CarbonWorkload",
    plural = "carbonworkloads",
    shortname = "cwl",
    category = "carbonshift",
    namespaced,
    status = "CarbonWorkloadStatus",
    derive = "PartialEq",
    doc = "carbonshift's record of one deferrable Job: its constraints, its plan and what happened.",
    printcolumn = r#"{"name": "Job", "type": "string", "jsonPath": ".spec.jobRef.name"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Planned Start", "type": "string", "jsonPath": ".status.plannedStart"}"#,
    printcolumn = r#"{"name": "Deadline", "type": "string", "jsonPath": ".status.deadline"}"#,
    printcolumn = r#"{"name": "Expected g/kWh", "type": "number", "jsonPath": ".status.expectedIntensity"}"#,
    printcolumn = r#"{"name": "Run-Now g/kWh", "type": "number", "jsonPath": ".status.runNowIntensity"}"#,
    printcolumn = r#"{"name": "Saving %", "type": "number", "jsonPath": ".status.savingsPercent"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CarbonWorkloadSpec {
    /// The Job this workload tracks (same namespace and name).
    pub job_ref: JobRef,
    /// Name of the CarbonForecast the Job is planned against.
    #[schemars(length(min = 1, max = 253))]
    pub forecast: String,
    /// When the Job was submitted (admission time, else its creation time).
    pub submitted_at: DateTime<Utc>,
    /// Expected run time, for example `2h30m`.
    #[schemars(regex(pattern = r"^([0-9]+[smhd])+$"))]
    pub duration: String,
    /// The Job must finish by this time (from `carbonshift.dev/deadline`, or submission plus the
    /// allowed delay plus the duration).
    pub deadline: DateTime<Utc>,
    /// The latest start that still meets the deadline; the Job is released by then, minus the
    /// operator's safety margin, whatever the forecast says.
    pub latest_start: DateTime<Utc>,
    /// Whether the Job may be paused between low-carbon windows (it checkpoints and resumes).
    #[serde(default)]
    pub interruptible: bool,
    /// Plan and report only; the Job is never held.
    #[serde(default)]
    pub dry_run: bool,
    /// Estimated electrical power of the whole Job (all pods), in watts, before PUE.
    #[schemars(range(min = 0.0))]
    pub power_watts: f64,
    /// Where `powerWatts` came from: `annotation` or `estimated` (from GPU and CPU requests).
    #[schemars(extend("enum" = ["annotation", "estimated"]))]
    pub power_source: String,
    /// Data-centre power usage effectiveness applied to `powerWatts`.
    #[schemars(range(min = 1.0, max = 3.0))]
    pub pue: f64,
}

/// Reference to the Job a CarbonWorkload belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRef {
    /// Job name.
    pub name: String,
    /// Job UID, so that a new Job with the same name is not mistaken for the old one.
    pub uid: String,
}

/// Where a deferrable Job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Seen, not yet planned.
    Pending,
    /// Held (suspended) until its planned start.
    Deferred,
    /// Released (unsuspended); no pod is active yet.
    Released,
    /// At least one pod is active.
    Running,
    /// An interruptible Job suspended between two low-carbon windows.
    Paused,
    /// The Job completed.
    Succeeded,
    /// The Job failed.
    Failed,
    /// carbonshift did not hold the Job: dry run, infeasible deadline, webhook bypassed, or
    /// managed elsewhere. `reason` says which.
    NotDeferred,
}

impl Phase {
    /// All phases, for metrics that report a zero for absent ones.
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Deferred,
        Phase::Released,
        Phase::Running,
        Phase::Paused,
        Phase::Succeeded,
        Phase::Failed,
        Phase::NotDeferred,
    ];

    /// The phase's name as it appears in status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Deferred => "Deferred",
            Phase::Released => "Released",
            Phase::Running => "Running",
            Phase::Paused => "Paused",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::NotDeferred => "NotDeferred",
        }
    }

    /// Whether nothing more will happen to the Job.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// A time window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeWindow {
    /// Window start.
    pub start: DateTime<Utc>,
    /// Window end (exclusive).
    pub end: DateTime<Utc>,
}

/// The plan and what happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CarbonWorkloadStatus {
    /// Current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// When the Job is planned to start (the first window's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_start: Option<DateTime<Utc>>,
    /// The planned run windows; one for a Job that is not interruptible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<TimeWindow>,
    /// Latest start that meets the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_start: Option<DateTime<Utc>>,
    /// When the Job must finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// Forecast mean intensity over the planned windows, gCO2eq/kWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_intensity: Option<f64>,
    /// Forecast mean intensity had the Job run at once, gCO2eq/kWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_now_intensity: Option<f64>,
    /// Saving of the plan against running at once, percent of run-now emissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savings_percent: Option<f64>,
    /// Fraction of the planned run time the forecast covers (1 = fully known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// Estimated energy of the whole run including PUE, kWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_energy_kwh: Option<f64>,
    /// Estimated emissions of the plan, gCO2eq (after completion: over the actual run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_emissions_grams: Option<f64>,
    /// Estimated emissions avoided against running at once, gCO2eq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_avoided_grams: Option<f64>,
    /// `resourceVersion` of the CarbonForecast the plan was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_version: Option<String>,
    /// When carbonshift released the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<DateTime<Utc>>,
    /// When the first pod became active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the Job completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Machine-readable reason for the phase, in PascalCase (for example `DeadlineRelease`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Planned`: a plan exists; `Held`: the Job is suspended by carbonshift.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
