//! Status conditions in the Kubernetes convention (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`), with chrono timestamps.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One aspect of an object's state at a point in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Kind of condition, for example `Ready`.
    pub r#type: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    /// Machine-readable reason for the last transition, in PascalCase.
    pub reason: String,
    /// Human-readable explanation of the last transition.
    #[serde(default)]
    pub message: String,
    /// When the condition last changed from one status to another.
    pub last_transition_time: DateTime<Utc>,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition whose status is `True` when `ok`, else `False`.
    pub fn new(
        r#type: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
        generation: Option<i64>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            r#type: r#type.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: generation,
        }
    }

    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Puts `new` into `conditions`, replacing the condition of the same type. The previous
/// `lastTransitionTime` is kept when the status did not change, so that the time says when the
/// status last flipped, not when it was last checked.
pub fn upsert(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.r#type == new.r#type) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time;
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let t1 = t0 + TimeDelta::hours(1);
        let t2 = t0 + TimeDelta::hours(2);
        let mut conditions = vec![];
        upsert(
            &mut conditions,
            Condition::new("Ready", true, "Refreshed", "", Some(1), t0),
        );
        upsert(
            &mut conditions,
            Condition::new("Ready", true, "Refreshed", "again", Some(2), t1),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, t0);
        assert_eq!(conditions[0].message, "again");
        assert_eq!(conditions[0].observed_generation, Some(2));
        upsert(
            &mut conditions,
            Condition::new("Ready", false, "Stale", "old", Some(2), t2),
        );
        assert_eq!(conditions[0].last_transition_time, t2);
        assert!(!conditions[0].is_true());
    }
}
