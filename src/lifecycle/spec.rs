//! From a workload's annotations or its CarbonWorkload spec to the planner's constraints: which
//! constraints are in force (the annotations while the workload is held, the recorded spec after).

use chrono::TimeDelta;

use super::*;

/// Why a workload spec cannot be turned into planner constraints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `spec.duration` is not a duration.
    #[error("spec.duration {value:?} is not a duration: {reason}")]
    Duration {
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: DurationError,
    },
    /// The planner refuses the constraints.
    #[error("invalid constraints: {0}")]
    Constraints(#[from] ConstraintError),
}

/// Planner constraints from parsed annotations: the latest start and deadline as
/// [`Deferral`] computes them (the delay cap included), with the operator's margin.
pub fn constraints(deferral: &Deferral, margin: TimeDelta) -> Result<Constraints, ConstraintError> {
    let mut c = Constraints::new(deferral.submitted_at, deferral.duration)
        .with_deadline(deferral.deadline())
        .with_margin(margin);
    c.interruptible = deferral.interruptible;
    c.validate()?;
    Ok(c)
}

/// Planner constraints from a workload spec (the last valid constraints after an invalid edit).
pub fn spec_constraints(
    spec: &CarbonWorkloadSpec,
    margin: TimeDelta,
) -> Result<Constraints, SpecError> {
    let duration = spec_duration(spec)?;
    let mut c = Constraints::new(spec.submitted_at, duration)
        .with_deadline(spec.deadline)
        .with_margin(margin);
    c.interruptible = spec.interruptible;
    c.validate()?;
    Ok(c)
}

pub(super) fn spec_duration(spec: &CarbonWorkloadSpec) -> Result<TimeDelta, SpecError> {
    units::parse_duration(&spec.duration).map_err(|reason| SpecError::Duration {
        value: spec.duration.clone(),
        reason,
    })
}

/// Whether the Job's annotations are the source of its constraints: while carbonshift holds it,
/// and before a workload exists.
pub(super) fn follows_annotations(state: State, workload: Option<&CarbonWorkload>) -> bool {
    state == State::Held || workload.is_none()
}

/// The constraints in force: the Job's valid annotations while they count (held, or no workload
/// yet), else the workload's spec. The shell uses it to pick the forecast to pass in.
pub fn effective_spec(
    job: &WorkloadView,
    workload: Option<&CarbonWorkload>,
) -> Option<CarbonWorkloadSpec> {
    let workload = workload.filter(|w| w.spec.job_ref.uid == job.uid);
    let old = workload.map(|w| w.spec.clone());
    let new = match &job.deferral {
        Ok(Some(d)) => Some(CarbonWorkloadSpec::new(
            JobRef::new(&job.api_version, job.kind, &job.name, &job.uid),
            d,
        )),
        _ => None,
    };
    if follows_annotations(classify(job), workload) {
        new.or(old)
    } else {
        old.or(new)
    }
}
