//! The power estimate of a workload from its pod sets, and the Kubernetes quantities it reads.
//!
//! A workload's power is the sum over its pod sets (each pod template × the pods of it that run
//! at once) of `GPUs per pod × watts per GPU + CPU cores per pod × watts per core`. The adapter of
//! each kind says what its pod sets are (`crate::workload`); this module only counts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use thiserror::Error;

use super::{AnnotationDefaults, AnnotationError, Power, PowerSource};

/// One pod template of a workload and how many pods of it run at once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodSet {
    /// Where the pod spec sits in the object, for messages: `spec.template.spec` for a Job.
    pub path: String,
    /// The pod spec (`None` when the object has none, which counts as no resources).
    pub pod: Option<PodSpec>,
    /// Pods of this template that run at once.
    pub count: u32,
}

/// Why a Kubernetes resource quantity in the pod template could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// Nothing was given.
    #[error("empty quantity")]
    Empty,
    /// The number part is missing or malformed.
    #[error("not a number")]
    NotANumber,
    /// A suffix other than the Kubernetes ones (`n u m k M G T P E Ki Mi Gi Ti Pi Ei`, `e<exp>`).
    #[error("unknown suffix {0:?}")]
    UnknownSuffix(String),
    /// A negative amount.
    #[error("negative quantity")]
    Negative,
    /// A fraction or an absurd value where a device count is expected.
    #[error("not a whole number")]
    NotWhole,
}

/// Reads a Kubernetes resource quantity (`500m`, `2`, `1.5`, `2000m`, `1Ki`, `1e3`) as a plain
/// number: `"500m"` is 0.5. Negative amounts are errors (no resource can be negative).
pub fn parse_quantity(text: &str) -> Result<f64, QuantityError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    let number_len = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map_or(text.len(), |(i, _)| i);
    let (number, suffix) = text.split_at(number_len);
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return Err(QuantityError::NotANumber);
    }
    let value: f64 = number.parse().map_err(|_| QuantityError::NotANumber)?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        other => match other
            .strip_prefix(['e', 'E'])
            .and_then(|exp| exp.parse::<i32>().ok())
        {
            Some(exp) => 10f64.powi(exp),
            None => return Err(QuantityError::UnknownSuffix(other.to_string())),
        },
    };
    let amount = value * factor;
    if !amount.is_finite() {
        return Err(QuantityError::NotANumber);
    }
    if amount < 0.0 {
        return Err(QuantityError::Negative);
    }
    Ok(amount)
}

/// The power estimate from the pod sets (module documentation).
///
/// Per pod: the sum over the app containers and the sidecars (init containers with
/// `restartPolicy: Always`, which run beside them); plain init containers finish before the work
/// starts and are not counted. Each container counts its requests, falling back to its limits
/// (for extended resources such as GPUs Kubernetes accepts limits alone). Pod-level
/// `resources.requests.cpu` (or `limits.cpu`), when set, replaces the container sum for CPU.
pub fn estimate_power(
    sets: &[PodSet],
    defaults: &AnnotationDefaults,
) -> Result<Power, AnnotationError> {
    let mut watts = 0.0;
    let mut first = None;
    for set in sets {
        let (gpus_per_pod, cores_per_pod) = per_pod(set, defaults)?;
        watts += (gpus_per_pod as f64 * defaults.watts_per_gpu
            + cores_per_pod * defaults.watts_per_core)
            * f64::from(set.count);
        first.get_or_insert((gpus_per_pod, cores_per_pod, set.count));
    }
    let (gpus_per_pod, cores_per_pod, parallelism) = match (sets.len(), first) {
        (1, Some(only)) => only,
        // Several templates have no single per-pod figure: the total, as one "pod".
        _ => {
            let mut gpus: u64 = 0;
            let mut cores = 0.0;
            for set in sets {
                let (g, c) = per_pod(set, defaults)?;
                gpus = gpus.saturating_add(g.saturating_mul(u64::from(set.count)));
                cores += c * f64::from(set.count);
            }
            (gpus, cores, u32::from(!sets.is_empty()))
        }
    };
    Ok(Power {
        watts,
        source: PowerSource::Estimated {
            gpus_per_pod,
            cores_per_pod,
            parallelism,
        },
    })
}

/// GPUs and CPU cores one pod of `set` requests.
fn per_pod(set: &PodSet, defaults: &AnnotationDefaults) -> Result<(u64, f64), AnnotationError> {
    let pod = set.pod.as_ref();
    let containers = pod
        .map(|p| {
            let sidecars = p
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"))
                .map(|c| ("initContainers", c));
            p.containers
                .iter()
                .map(|c| ("containers", c))
                .chain(sidecars)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();

    let mut gpus_per_pod: u64 = 0;
    let mut container_cores = 0.0;
    for (list, container) in &containers {
        let base = format!("{}.{list}[{}].resources", set.path, container.name);
        for resource in &defaults.gpu_resources {
            if let Some((field, value)) = request_or_limit(container.resources.as_ref(), resource) {
                let count = gpu_count(value).map_err(|reason| AnnotationError::BadGpuCount {
                    field: format!("{base}.{field}[{resource}]"),
                    value: value.0.clone(),
                    reason,
                })?;
                gpus_per_pod = gpus_per_pod.saturating_add(count);
            }
        }
        container_cores += cpu(container.resources.as_ref(), &base)?.unwrap_or(0.0);
    }
    let pod_cores = cpu(
        pod.and_then(|p| p.resources.as_ref()),
        &format!("{}.resources", set.path),
    )?;
    Ok((gpus_per_pod, pod_cores.unwrap_or(container_cores)))
}

/// The CPU request (else limit) in `resources`, in cores; `base` is the path of `resources`,
/// for the error.
fn cpu(
    resources: Option<&ResourceRequirements>,
    base: &str,
) -> Result<Option<f64>, AnnotationError> {
    request_or_limit(resources, "cpu")
        .map(|(field, value)| {
            parse_quantity(&value.0).map_err(|reason| AnnotationError::BadCpuQuantity {
                field: format!("{base}.{field}[cpu]"),
                value: value.0.clone(),
                reason,
            })
        })
        .transpose()
}

fn gpu_count(value: &Quantity) -> Result<u64, QuantityError> {
    let count = parse_quantity(&value.0)?;
    // 2^53: beyond it an f64 no longer holds every integer.
    if count.fract() != 0.0 || count > 9_007_199_254_740_992.0 {
        return Err(QuantityError::NotWhole);
    }
    Ok(count as u64)
}

/// The request for `resource`, else its limit, with the name of the map it came from.
fn request_or_limit<'a>(
    resources: Option<&'a ResourceRequirements>,
    resource: &str,
) -> Option<(&'static str, &'a Quantity)> {
    let resources = resources?;
    let get = |map: &'a Option<BTreeMap<String, Quantity>>| map.as_ref()?.get(resource);
    get(&resources.requests)
        .map(|q| ("requests", q))
        .or_else(|| get(&resources.limits).map(|q| ("limits", q)))
}
