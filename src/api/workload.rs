//! The `CarbonWorkload` custom resource: one per deferred workload — a Job, JobSet, TrainJob,
//! PyTorchJob, MPIJob or RayJob (same name, owned by it) — saying what carbonshift decided for it
//! and why.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;
use super::annotations::{Deferral, MAX_CANDIDATES, PowerSource};
use super::crd::{DNS1123_SUBDOMAIN, DURATION_PATTERN, known_formats_only};
use super::forecast::MAX_POINTS;
use crate::units::format_duration;

/// The Job this workload belongs to and its scheduling constraints, parsed from the Job's
/// `carbonshift.dev/*` annotations (see docs/annotations.md). Written by carbonshift.
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
    doc = "carbonshift's record of one deferrable workload (a Job, JobSet, TrainJob, PyTorchJob, MPIJob or RayJob): its constraints, its plan and what happened.",
    printcolumn = r#"{"name": "Kind", "type": "string", "jsonPath": ".spec.jobRef.kind"}"#,
    printcolumn = r#"{"name": "Job", "type": "string", "jsonPath": ".spec.jobRef.name"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.reason"}"#,
    printcolumn = r#"{"name": "Planned Start", "type": "string", "jsonPath": ".status.plannedStart"}"#,
    printcolumn = r#"{"name": "Deadline", "type": "string", "jsonPath": ".status.deadline"}"#,
    printcolumn = r#"{"name": "Expected g/kWh", "type": "number", "jsonPath": ".status.expectedIntensity"}"#,
    printcolumn = r#"{"name": "Run-Now g/kWh", "type": "number", "jsonPath": ".status.runNowIntensity"}"#,
    printcolumn = r#"{"name": "Saving %", "type": "number", "jsonPath": ".status.savingsPercent"}"#,
    printcolumn = r#"{"name": "Verified", "type": "string", "priority": 1, "jsonPath": ".status.verification.state"}"#,
    printcolumn = r#"{"name": "Avoided g", "type": "number", "priority": 1, "jsonPath": ".status.verified.avoidedGrams"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
pub struct CarbonWorkloadSpec {
    /// The workload this CarbonWorkload tracks (same namespace and name): apiVersion, kind, name
    /// and uid. Immutable: a new workload of the same name gets a new CarbonWorkload. (A
    /// CarbonWorkload written before carbonshift held other kinds than Job names only its Job's
    /// name and uid; it gains apiVersion and kind once.)
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": JOB_REF_IMMUTABLE,
        "message": "jobRef is immutable (one without kind and apiVersion may gain them once); delete the CarbonWorkload to track a new workload of the same name"
    }, {
        "rule": "has(self.kind) == has(self.apiVersion)",
        "message": "jobRef.kind and jobRef.apiVersion are set together"
    }]))]
    pub job_ref: JobRef,
    /// Name of the CarbonForecast the Job is planned against; with `candidates`, the first of
    /// them (the chosen one is in `status.placement`).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub forecast: String,
    /// The candidate CarbonForecasts of `carbonshift.dev/forecasts` (node pools on different
    /// grids), in the annotation's order: the Job is planned over every candidate × window and
    /// placed on the cleanest feasible one. Empty when the Job names one forecast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CANDIDATES), extend("items" = {
        "type": "string",
        "description": "A CarbonForecast name.",
        "minLength": 1,
        "maxLength": 253,
        "pattern": DNS1123_SUBDOMAIN
    }))]
    pub candidates: Vec<String>,
    /// When the Job was submitted (admission time, else its creation time).
    pub submitted_at: DateTime<Utc>,
    /// Expected run time, for example `2h30m` (from `carbonshift.dev/duration`, else the
    /// operator's default).
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub duration: String,
    /// The Job must finish by this time: `carbonshift.dev/deadline`, or submission plus the
    /// allowed delay plus the duration; never more than the operator's maximum delay plus the
    /// duration after submission.
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
    /// Electrical power of the whole Job (all pods), in watts, before PUE.
    #[schemars(range(min = 0.0))]
    pub power_watts: f64,
    /// Where `powerWatts` came from: `annotation` (`carbonshift.dev/power`) or `estimated` (from
    /// the pod template's GPU and CPU requests, see `powerEstimate`).
    #[schemars(extend("enum" = [POWER_SOURCE_ANNOTATION, POWER_SOURCE_ESTIMATED]))]
    pub power_source: String,
    /// The figures an estimated `powerWatts` was computed from; unset when the power came from
    /// the annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_estimate: Option<PowerEstimate>,
    /// Data-centre power usage effectiveness applied to `powerWatts`.
    #[schemars(range(min = 1.0, max = 3.0))]
    pub pue: f64,
}

/// `powerSource` when the power came from the `carbonshift.dev/power` annotation.
pub const POWER_SOURCE_ANNOTATION: &str = "annotation";
/// `powerSource` when the power was estimated from the pod template.
pub const POWER_SOURCE_ESTIMATED: &str = "estimated";

/// How an estimated power figure was computed: `(gpusPerPod × watts per GPU + cpuCoresPerPod ×
/// watts per core) × parallelism`, with the per-device watts from the operator's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PowerEstimate {
    /// GPUs one pod requests (the resources the operator counts as GPUs, such as
    /// `nvidia.com/gpu`).
    #[schemars(range(min = 0))]
    pub gpus_per_pod: u64,
    /// CPU cores one pod requests.
    #[schemars(range(min = 0.0))]
    pub cpu_cores_per_pod: f64,
    /// Pods running at once: `spec.parallelism`, at most `spec.completions`.
    #[schemars(range(min = 0))]
    pub parallelism: u32,
}

/// `jobRef` keeps its name and uid for ever, and its kind and apiVersion once it has them (a
/// CarbonWorkload from before they existed may gain them).
pub const JOB_REF_IMMUTABLE: &str = "self.name == oldSelf.name && self.uid == oldSelf.uid && (!has(oldSelf.kind) || (has(self.kind) && self.kind == oldSelf.kind)) && (!has(oldSelf.apiVersion) || (has(self.apiVersion) && self.apiVersion == oldSelf.apiVersion))";

/// Reference to the workload a CarbonWorkload belongs to: a `batch/v1` Job, a JobSet, a
/// TrainJob, a PyTorchJob, an MPIJob or a RayJob (the field keeps its name from when only Jobs
/// were held).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRef {
    /// The workload's apiVersion, for example `batch/v1` or `jobset.x-k8s.io/v1alpha2`. Unset in
    /// CarbonWorkloads written before carbonshift held other kinds: `batch/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 316))]
    pub api_version: Option<String>,
    /// The workload's kind, for example `Job`, `JobSet`, `TrainJob`, `PyTorchJob`, `MPIJob` or
    /// `RayJob`. Unset in CarbonWorkloads written before carbonshift held other kinds: `Job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub kind: Option<String>,
    /// The workload's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub name: String,
    /// The workload's UID, so that a new one with the same name is not mistaken for the old one.
    #[schemars(length(min = 1, max = 128))]
    pub uid: String,
}

impl JobRef {
    /// A reference to the workload `api_version`/`kind` `name` with `uid`.
    pub fn new(api_version: &str, kind: &str, name: &str, uid: &str) -> Self {
        Self {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
            name: name.to_string(),
            uid: uid.to_string(),
        }
    }

    /// The kind, `Job` when unset.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("Job")
    }

    /// The apiVersion, `batch/v1` when unset.
    pub fn api_version(&self) -> &str {
        self.api_version.as_deref().unwrap_or("batch/v1")
    }
}

impl CarbonWorkloadSpec {
    /// The spec recording `deferral`, the parsed annotations of the Job `job_ref` names.
    pub fn new(job_ref: JobRef, deferral: &Deferral) -> Self {
        let (power_source, power_estimate) = match deferral.power.source {
            PowerSource::Annotation => (POWER_SOURCE_ANNOTATION, None),
            PowerSource::Estimated {
                gpus_per_pod,
                cores_per_pod,
                parallelism,
            } => (
                POWER_SOURCE_ESTIMATED,
                Some(PowerEstimate {
                    gpus_per_pod,
                    cpu_cores_per_pod: cores_per_pod,
                    parallelism,
                }),
            ),
        };
        Self {
            job_ref,
            forecast: deferral.forecast.clone(),
            candidates: deferral.candidates.clone(),
            submitted_at: deferral.submitted_at,
            duration: format_duration(deferral.duration),
            deadline: deferral.deadline(),
            latest_start: deferral.latest_start(),
            interruptible: deferral.interruptible,
            dry_run: deferral.dry_run,
            power_watts: deferral.power.watts,
            power_source: power_source.to_string(),
            power_estimate,
            pue: deferral.pue,
        }
    }
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

/// The plan and what happened. Written by carbonshift only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = known_formats_only)]
pub struct CarbonWorkloadStatus {
    /// Current phase: `Pending` (seen, not yet planned), `Deferred` (held until its planned
    /// start), `Released` (unsuspended, no pod active yet), `Running` (a pod is active), `Paused`
    /// (an interruptible Job suspended between windows), `Succeeded`, `Failed`, or `NotDeferred`
    /// (carbonshift did not hold the Job; `reason` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// When the Job is planned to start (the first window's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_start: Option<DateTime<Utc>>,
    /// The planned run windows; one for a Job that is not interruptible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_POINTS))]
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
    /// The finished runs of an interruptible Job that was paused between windows, in time order
    /// (from its release to its pause). Their total is the run time already done; the rest is
    /// planned as `windows`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_POINTS))]
    pub runs: Vec<TimeWindow>,
    /// After completion: mean intensity over the actual run, gCO2eq/kWh (the provider's measured
    /// values where published, else its forecast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_intensity: Option<f64>,
    /// After completion: where `estimatedEnergyKwh` comes from — `kepler` (the pods' measured
    /// energy from Kepler through `--prometheus-url`), `declared` (`carbonshift.dev/power` × run
    /// time × PUE) or `estimated` (the power estimate of the pod templates × run time × PUE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["kepler", "declared", "estimated"]))]
    pub energy_source: Option<String>,
    /// After a failure: the estimated emissions of the failed run(s), gCO2eq — energy spent on
    /// nothing (counted by the waste guard and `carbonshift_wasted_grams_total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasted_grams: Option<f64>,
    /// Machine-readable reason for the phase, in PascalCase (for example `DeadlineRelease`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Planned`: a plan exists; `Held`: the Job is suspended by carbonshift;
    /// `AnnotationsValid`: the Job's `carbonshift.dev/*` annotations can be read (when `False`,
    /// the last valid constraints in `spec` stay in force).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// After completion: the figures recomputed from the provider's **measured** intensity over
    /// the actual runs and over the run-now counterfactual. Absent until verified; the `estimated*`
    /// fields are estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifiedFigures>,
    /// Where the verification of a finished workload stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationState>,
    /// For a workload with candidate forecasts: the forecast chosen, the node selector added to
    /// its pod templates, and what the other candidates were expected to cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementStatus>,
}

/// Where a workload with candidate forecasts was placed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    /// The CarbonForecast chosen: the cleanest feasible candidate × window.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub forecast: String,
    /// The node selector keys carbonshift adds to the pod templates at release (the chosen
    /// forecast's `spec.placement.nodeSelector`, less the keys the workload already sets to the
    /// same value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The expected intensity of the chosen plan, gCO2eq/kWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_intensity: Option<f64>,
    /// Every other candidate, in the annotation's order: its best plan's expected intensity, or
    /// why it was not eligible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CANDIDATES))]
    pub alternatives: Vec<PlacementAlternative>,
}

impl PlacementStatus {
    /// The status recording a fleet planner decision.
    pub fn from_placement(p: &crate::planner::fleet::Placement) -> PlacementStatus {
        PlacementStatus {
            forecast: p.forecast.clone(),
            node_selector: p.node_selector.clone(),
            expected_intensity: p
                .scheduled
                .plan
                .as_ref()
                .ok()
                .map(|plan| plan.expected_intensity),
            alternatives: p
                .alternatives
                .iter()
                .map(|a| PlacementAlternative {
                    forecast: a.forecast.clone(),
                    expected_intensity: a.expected_intensity,
                    planned_start: a.start,
                    excluded: a.excluded.as_ref().map(|e| e.to_string()),
                })
                .collect(),
        }
    }
}

/// One candidate forecast that was not chosen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementAlternative {
    /// The CarbonForecast.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub forecast: String,
    /// Its best plan's expected intensity, gCO2eq/kWh; unset when it had no plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_intensity: Option<f64>,
    /// When its best plan would have started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_start: Option<DateTime<Utc>>,
    /// Why it was not eligible (incompatible node selector or affinity, no forecast, no plan);
    /// unset when it was eligible but not the cleanest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub excluded: Option<String>,
}

/// Figures of a finished workload from measured grid data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedFigures {
    /// Measured mean intensity over the actual runs, gCO2eq/kWh.
    pub intensity: f64,
    /// Measured mean intensity had the workload started at submission and run as long,
    /// gCO2eq/kWh.
    pub counterfactual_intensity: f64,
    /// Facility energy of the run (PUE included), kWh.
    pub energy_kwh: f64,
    /// Emissions of the actual run, gCO2eq.
    pub emissions_grams: f64,
    /// Emissions of the counterfactual run, gCO2eq.
    pub counterfactual_grams: f64,
    /// `counterfactualGrams − emissionsGrams`, gCO2eq (negative when waiting cost carbon).
    pub avoided_grams: f64,
    /// The plan's forecast error over the run: (expected − measured) / measured, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_error_percent: Option<f64>,
    /// Where the measured values come from, for example `UK Carbon Intensity API national
    /// actual`.
    pub source: String,
    /// When the figures were verified.
    pub verified_at: DateTime<Utc>,
}

/// The state of a finished workload's verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationState {
    /// `Pending` (waiting for the provider to publish measured values), `Verified`, `GaveUp`
    /// (still missing when the wait ran out), `Unsupported` (the provider publishes no measured
    /// history) or `NotApplicable` (nothing ran).
    pub state: String,
    /// Human-readable explanation.
    pub message: String,
    /// When it was last tried.
    pub last_attempt: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::annotations::{self, AnnotationDefaults, Power};
    use chrono::TimeDelta;
    use k8s_openapi::api::batch::v1::Job;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.to_utc())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn job_ref() -> JobRef {
        JobRef::new(
            "batch/v1",
            "Job",
            "train",
            "0b0f3d6e-5f7c-4a57-9d63-3c5f2c1f8e2a",
        )
    }

    #[test]
    fn placement_status_records_the_choice_and_the_alternatives() {
        use crate::planner::fleet::{Caps, Decision, Demand, Fleet, PodPlacement, Pool, place};
        use crate::planner::{Constraints, Forecast, Point};
        let t0 = t("2026-05-04T00:00:00Z");
        let forecast = |v: f64| {
            let points = (0..4)
                .map(|h| Point {
                    start: t0 + TimeDelta::hours(h),
                    intensity: v + h as f64,
                })
                .collect();
            Forecast::new(points).unwrap_or_else(|e| panic!("{e}"))
        };
        let uk: Fleet<u8> =
            Fleet::new(forecast(200.0), Caps::none()).unwrap_or_else(|e| panic!("{e}"));
        let fr: Fleet<u8> =
            Fleet::new(forecast(50.0), Caps::none()).unwrap_or_else(|e| panic!("{e}"));
        let de: Fleet<u8> =
            Fleet::new(forecast(10.0), Caps::none()).unwrap_or_else(|e| panic!("{e}"));
        let sel = |v: &str| BTreeMap::from([("region".to_string(), v.to_string())]);
        let (uk_sel, fr_sel, de_sel) = (sel("uk"), sel("fr"), sel("de"));
        let pools = [
            Pool {
                name: "uk",
                selector: Some(&uk_sel),
                fleet: Some(&uk),
            },
            Pool {
                name: "fr",
                selector: Some(&fr_sel),
                fleet: Some(&fr),
            },
            Pool {
                name: "de",
                selector: Some(&de_sel),
                fleet: Some(&de),
            },
        ];
        let own = [PodPlacement {
            node_selector: BTreeMap::from([("region".to_string(), "fr".to_string())]),
            required_terms: Vec::new(),
        }];
        let job = Constraints::new(t0, TimeDelta::hours(1)).with_deadline(t0 + TimeDelta::hours(4));
        let own_any: [PodPlacement; 0] = [];
        let Ok(Decision::Placed(any)) = place(&pools, &job, Demand::default(), &own_any, None, t0)
        else {
            panic!("no placement");
        };
        assert_eq!(any.forecast, "de");
        let Ok(Decision::Placed(p)) = place(&pools, &job, Demand::default(), &own, None, t0) else {
            panic!("no placement");
        };
        let status = PlacementStatus::from_placement(&p);
        assert_eq!(status.forecast, "fr");
        assert_eq!(status.node_selector, fr_sel);
        assert_eq!(status.expected_intensity, Some(50.0));
        assert_eq!(status.alternatives.len(), 2);
        assert_eq!(status.alternatives[0].forecast, "uk");
        assert_eq!(
            status.alternatives[0].excluded.as_deref(),
            Some(
                "nodeSelector region=\"fr\" conflicts with the forecast's placement region=\"uk\""
            )
        );
        assert_eq!(status.alternatives[0].expected_intensity, None);
        let json = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(json["alternatives"][1]["forecast"], "de");
        assert!(json["alternatives"][1].get("plannedStart").is_none());
    }

    #[test]
    fn spec_from_parsed_annotations() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "train",
                "namespace": "ml",
                "creationTimestamp": "2026-05-04T10:00:00Z",
                "annotations": {
                    "carbonshift.dev/deferrable": "true",
                    "carbonshift.dev/deadline": "2026-05-05T06:00:00Z",
                    "carbonshift.dev/duration": "2h30m",
                    "carbonshift.dev/forecast": "uk",
                    "carbonshift.dev/interruptible": "true"
                }
            },
            "spec": {
                "parallelism": 2,
                "template": {"spec": {"restartPolicy": "Never", "containers": [{
                    "name": "train",
                    "image": "ghcr.io/example/train:1",
                    "resources": {"limits": {"nvidia.com/gpu": "4", "cpu": "8"}}
                }]}}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let spec = job.spec.as_ref();
        let pod_sets = [annotations::PodSet {
            path: "spec.template.spec".to_string(),
            pod: spec.and_then(|s| s.template.spec.clone()),
            count: 2,
        }];
        let subject = annotations::Subject {
            annotations: job.metadata.annotations.as_ref(),
            created: Some(t("2026-05-04T10:00:00Z")),
            pod_sets: &pod_sets,
        };
        let deferral = annotations::parse(
            &subject,
            &AnnotationDefaults::default(),
            t("2026-05-04T10:00:00Z"),
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("not deferrable"));
        assert_eq!(
            CarbonWorkloadSpec::new(job_ref(), &deferral),
            CarbonWorkloadSpec {
                job_ref: job_ref(),
                forecast: "uk".into(),
                candidates: Vec::new(),
                submitted_at: t("2026-05-04T10:00:00Z"),
                duration: "2h30m".into(),
                deadline: t("2026-05-05T06:00:00Z"),
                latest_start: t("2026-05-05T03:30:00Z"),
                interruptible: true,
                dry_run: false,
                power_watts: (4.0 * 700.0 + 8.0 * 10.0) * 2.0,
                power_source: POWER_SOURCE_ESTIMATED.into(),
                power_estimate: Some(PowerEstimate {
                    gpus_per_pod: 4,
                    cpu_cores_per_pod: 8.0,
                    parallelism: 2,
                }),
                pue: 1.2,
            }
        );

        let annotated = annotations::Deferral {
            power: Power {
                watts: 1_400.0,
                source: PowerSource::Annotation,
            },
            duration: TimeDelta::minutes(45),
            ..deferral
        };
        let spec = CarbonWorkloadSpec::new(job_ref(), &annotated);
        assert_eq!(spec.power_source, POWER_SOURCE_ANNOTATION);
        assert_eq!(spec.power_estimate, None);
        assert_eq!(spec.power_watts, 1_400.0);
        assert_eq!(spec.duration, "45m");
    }

    #[test]
    fn workload_as_stored_reads_back() {
        let text = "apiVersion: carbonshift.dev/v1alpha1
kind: CarbonWorkload
metadata:
  name: train
  namespace: ml
spec:
  jobRef: {name: train, uid: 0b0f3d6e-5f7c-4a57-9d63-3c5f2c1f8e2a}
  forecast: uk
  submittedAt: \"2026-05-04T10:00:00Z\"
  duration: 2h30m
  deadline: \"2026-05-05T06:00:00Z\"
  latestStart: \"2026-05-05T03:30:00Z\"
  powerWatts: 1400
  powerSource: annotation
  pue: 1.2
status:
  phase: Deferred
  plannedStart: \"2026-05-05T01:00:00Z\"
  expectedIntensity: 95.5
  runNowIntensity: 210
  savingsPercent: 54.5
";
        let workload: CarbonWorkload =
            serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        // Stored before jobRef had kind and apiVersion: a Job.
        assert_eq!(workload.spec.job_ref.name, "train");
        assert_eq!(workload.spec.job_ref.kind, None);
        assert_eq!(workload.spec.job_ref.kind(), "Job");
        assert_eq!(workload.spec.job_ref.api_version(), "batch/v1");
        let again = serde_json::to_value(&workload.spec.job_ref).unwrap_or_default();
        assert_eq!(
            again,
            serde_json::json!({"name": "train", "uid": "0b0f3d6e-5f7c-4a57-9d63-3c5f2c1f8e2a"})
        );
        assert_eq!(
            serde_json::to_value(job_ref()).unwrap_or_default(),
            serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "name": "train",
                "uid": "0b0f3d6e-5f7c-4a57-9d63-3c5f2c1f8e2a"})
        );
        assert!(!workload.spec.interruptible && !workload.spec.dry_run);
        assert_eq!(workload.spec.power_estimate, None);
        let status = workload.status.unwrap_or_default();
        assert_eq!(status.phase, Some(Phase::Deferred));
        assert_eq!(status.planned_start, Some(t("2026-05-05T01:00:00Z")));
        assert_eq!(status.savings_percent, Some(54.5));
        assert!(status.conditions.is_empty());
    }

    #[test]
    fn phases_serialise_as_their_names() {
        for phase in Phase::ALL {
            assert_eq!(
                serde_json::to_value(phase).ok(),
                Some(serde_json::Value::String(phase.as_str().into()))
            );
        }
        assert!(serde_json::from_str::<Phase>("\"Sleeping\"").is_err());
        assert!(Phase::Succeeded.is_terminal() && Phase::Failed.is_terminal());
        assert!(!Phase::Deferred.is_terminal());
    }
}
