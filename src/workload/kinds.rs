//! The set of kinds an operator holds (`--workload-kinds`, the chart's `workloadKinds`).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::{Adapter, adapters};

/// The kinds turned on: a subset of [`adapters`], by kind name (`Job`, `JobSet`, `TrainJob`,
/// `PyTorchJob`, `MPIJob`, `RayJob`). Default: all of them.
#[derive(Clone, PartialEq, Eq)]
pub struct Kinds(Vec<&'static str>);

/// Why a `--workload-kinds` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("workload kinds {text:?}: {problem}; expected a comma-separated list of {}", names().join(", "))]
pub struct KindError {
    /// The value given.
    pub text: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The names of every supported kind.
pub fn names() -> Vec<&'static str> {
    adapters().iter().map(|a| a.kind()).collect()
}

impl Kinds {
    /// Every supported kind.
    pub fn all() -> Self {
        Self(names())
    }

    /// Only `batch/v1` Job.
    pub fn jobs_only() -> Self {
        Self(vec!["Job"])
    }

    /// The adapters of the kinds turned on, in [`adapters`]' order.
    pub fn adapters(&self) -> Vec<&'static dyn Adapter> {
        adapters()
            .into_iter()
            .filter(|a| self.0.contains(&a.kind()))
            .collect()
    }

    /// Whether `adapter`'s kind is turned on.
    pub fn contains(&self, adapter: &dyn Adapter) -> bool {
        self.0.contains(&adapter.kind())
    }

    /// The adapter of `group`/`version`/`kind` when carbonshift supports it and it is turned on.
    pub fn adapter_for(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Option<&'static dyn Adapter> {
        super::adapter_for(group, version, kind).filter(|a| self.contains(*a))
    }
}

impl Default for Kinds {
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

impl FromStr for Kinds {
    type Err = KindError;

    /// Kind names separated by commas, in any case (`job,jobset`); at least one.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |problem: String| KindError {
            text: text.to_string(),
            problem,
        };
        let known = names();
        let mut chosen = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let name = known
                .iter()
                .find(|k| k.eq_ignore_ascii_case(part))
                .ok_or_else(|| error(format!("{part:?} is not a supported kind")))?;
            if !chosen.contains(name) {
                chosen.push(*name);
            }
        }
        if chosen.is_empty() {
            return Err(error("no kind given".to_string()));
        }
        // Keep the adapters' order, whatever the order given.
        Ok(Self(
            known.into_iter().filter(|k| chosen.contains(k)).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_name_in_any_case_and_keep_one_order() {
        let kinds: Kinds = "rayjob, Job,JOBSET,job"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kinds.to_string(), "Job,JobSet,RayJob");
        let kinds: Vec<&str> = kinds.adapters().iter().map(|a| a.kind()).collect();
        assert_eq!(kinds, ["Job", "JobSet", "RayJob"]);
        assert_eq!(
            Kinds::default().to_string(),
            "Job,JobSet,TrainJob,PyTorchJob,MPIJob,RayJob"
        );
        let error = "Job,CronJob".parse::<Kinds>().map(|_| ()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "workload kinds \"Job,CronJob\": \"CronJob\" is not a supported kind; expected a comma-separated list of Job, JobSet, TrainJob, PyTorchJob, MPIJob, RayJob"
        );
        assert!(" , ".parse::<Kinds>().is_err());
        let jobs = Kinds::jobs_only();
        assert!(jobs.adapter_for("batch", "v1", "Job").is_some());
        assert!(jobs.adapter_for("ray.io", "v1", "RayJob").is_none());
        assert!(Kinds::all().adapter_for("ray.io", "v1", "RayJob").is_some());
        assert!(
            Kinds::all()
                .adapter_for("ray.io", "v1alpha1", "RayJob")
                .is_none()
        );
    }
}
