//! A job's timing constraints: how long it runs, how long it may wait, and whether it may pause.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why constraints cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConstraintError {
    /// Neither a maximum delay nor a deadline.
    #[error("a job needs a maximum delay or a deadline")]
    NoLimit,
    /// The duration is zero or negative.
    #[error("the duration must be positive")]
    NonPositiveDuration,
    /// A negative maximum delay.
    #[error("the maximum delay must not be negative")]
    NegativeMaxDelay,
    /// A negative safety margin.
    #[error("the safety margin must not be negative")]
    NegativeMargin,
    /// A negative resume overhead.
    #[error("the resume overhead must not be negative")]
    NegativeResumeOverhead,
    /// A minimum chunk that is zero or negative.
    #[error("the minimum chunk must be positive")]
    NonPositiveMinChunk,
    /// A load (for capacity planning) that is negative or not finite.
    #[error("the load must be a finite, non-negative number")]
    BadLoad,
    /// Times outside the representable range (roughly ±262,000 years).
    #[error("the constraints reach outside the representable time range")]
    OutOfRange,
}

/// When a job may run.
///
/// The latest start is `min(submitted_at + max_delay, deadline − duration)`; the planner releases
/// the job no later than `latest_start − margin` ([`Constraints::release_by`]). An interruptible job
/// needs `duration` of run time (plus `resume_overhead` per resume) inside
/// `[now, finish_by − margin)`, which also ends no later than the deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Constraints {
    /// When the job was submitted; `max_delay` counts from here.
    pub submitted_at: DateTime<Utc>,
    /// Run time the job needs. To re-plan an interruptible job that already ran partly, use
    /// [`Constraints::remaining`], which keeps the original finish time.
    #[serde(with = "duration_text")]
    pub duration: TimeDelta,
    /// Longest the start may be delayed after submission.
    #[serde(
        default,
        with = "option_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_delay: Option<TimeDelta>,
    /// When the job must have finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// Whether the job may be paused and resumed (checkpointing training).
    #[serde(default)]
    pub interruptible: bool,
    /// Shortest run between pauses of an interruptible job.
    #[serde(
        default,
        with = "option_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_chunk: Option<TimeDelta>,
    /// Extra run time each resume of an interruptible job costs (reloading a checkpoint).
    #[serde(default = "TimeDelta::zero", with = "duration_text")]
    pub resume_overhead: TimeDelta,
    /// Safety margin: the job is released at least this long before its latest start.
    #[serde(default = "TimeDelta::zero", with = "duration_text")]
    pub margin: TimeDelta,
}

impl Constraints {
    /// A job of `duration` submitted at `submitted_at`, with no limit yet (add one with
    /// [`Constraints::with_max_delay`] or [`Constraints::with_deadline`]), not interruptible, no
    /// margin.
    pub fn new(submitted_at: DateTime<Utc>, duration: TimeDelta) -> Constraints {
        Constraints {
            submitted_at,
            duration,
            max_delay: None,
            deadline: None,
            interruptible: false,
            min_chunk: None,
            resume_overhead: TimeDelta::zero(),
            margin: TimeDelta::zero(),
        }
    }

    /// Sets the maximum delay.
    pub fn with_max_delay(mut self, max_delay: TimeDelta) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// Sets the deadline.
    pub fn with_deadline(mut self, deadline: DateTime<Utc>) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Makes the job interruptible.
    pub fn interruptible(mut self) -> Self {
        self.interruptible = true;
        self
    }

    /// Sets the minimum chunk of an interruptible job.
    pub fn with_min_chunk(mut self, min_chunk: TimeDelta) -> Self {
        self.min_chunk = Some(min_chunk);
        self
    }

    /// Sets the resume overhead of an interruptible job.
    pub fn with_resume_overhead(mut self, overhead: TimeDelta) -> Self {
        self.resume_overhead = overhead;
        self
    }

    /// Sets the safety margin.
    pub fn with_margin(mut self, margin: TimeDelta) -> Self {
        self.margin = margin;
        self
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConstraintError> {
        self.latest_start().map(|_| ())
    }

    /// `min(submitted_at + max_delay, deadline − duration)`.
    pub fn latest_start(&self) -> Result<DateTime<Utc>, ConstraintError> {
        if self.duration <= TimeDelta::zero() {
            return Err(ConstraintError::NonPositiveDuration);
        }
        if self.max_delay.is_some_and(|d| d < TimeDelta::zero()) {
            return Err(ConstraintError::NegativeMaxDelay);
        }
        if self.margin < TimeDelta::zero() {
            return Err(ConstraintError::NegativeMargin);
        }
        if self.resume_overhead < TimeDelta::zero() {
            return Err(ConstraintError::NegativeResumeOverhead);
        }
        if self.min_chunk.is_some_and(|c| c <= TimeDelta::zero()) {
            return Err(ConstraintError::NonPositiveMinChunk);
        }
        let by_delay = match self.max_delay {
            Some(d) => Some(
                self.submitted_at
                    .checked_add_signed(d)
                    .ok_or(ConstraintError::OutOfRange)?,
            ),
            None => None,
        };
        let by_deadline = match self.deadline {
            Some(t) => Some(
                t.checked_sub_signed(self.duration)
                    .ok_or(ConstraintError::OutOfRange)?,
            ),
            None => None,
        };
        let latest = match (by_delay, by_deadline) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return Err(ConstraintError::NoLimit),
        };
        // Everything derived from the latest start must be representable too.
        latest
            .checked_add_signed(self.duration)
            .and_then(|_| latest.checked_sub_signed(self.margin))
            .ok_or(ConstraintError::OutOfRange)?;
        Ok(latest)
    }

    /// `latest_start + duration`: when a job that starts as late as allowed finishes.
    pub fn finish_by(&self) -> Result<DateTime<Utc>, ConstraintError> {
        let latest = self.latest_start()?;
        latest
            .checked_add_signed(self.duration)
            .ok_or(ConstraintError::OutOfRange)
    }

    /// `latest_start − margin`: the last moment the planner lets the job start.
    pub fn release_by(&self) -> Result<DateTime<Utc>, ConstraintError> {
        let latest = self.latest_start()?;
        latest
            .checked_sub_signed(self.margin)
            .ok_or(ConstraintError::OutOfRange)
    }

    /// Constraints for re-planning a job that still needs `remaining` run time (an interruptible
    /// job that already ran partly): same finish time, margin and chunking, the limit expressed
    /// as a deadline at the original [`Constraints::finish_by`].
    pub fn remaining(&self, remaining: TimeDelta) -> Result<Constraints, ConstraintError> {
        let finish_by = self.finish_by()?;
        let next = Constraints {
            duration: remaining,
            max_delay: None,
            deadline: Some(finish_by),
            ..self.clone()
        };
        next.validate()?;
        Ok(next)
    }
}

/// Durations as text in the form of [`crate::units::parse_duration`] (`"2h30m"`; `"0s"` for zero).
pub(crate) mod duration_text {
    use chrono::TimeDelta;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::units::{DurationError, format_duration, parse_duration};

    pub(crate) fn serialize<S: Serializer>(d: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TimeDelta, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub(crate) fn parse(text: &str) -> Result<TimeDelta, String> {
        match parse_duration(text) {
            Ok(d) => Ok(d),
            Err(DurationError::Zero) => Ok(TimeDelta::zero()),
            Err(e) => Err(format!("{e}: {text:?}")),
        }
    }
}

/// Optional durations as text.
pub(crate) mod option_duration_text {
    use chrono::TimeDelta;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::units::format_duration;

    pub(crate) fn serialize<S: Serializer>(d: &Option<TimeDelta>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<TimeDelta>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => super::duration_text::parse(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(s).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    #[test]
    fn latest_start_is_the_earlier_of_delay_and_deadline() {
        let c = Constraints::new(t("2023-01-01T00:00Z"), TimeDelta::hours(3))
            .with_max_delay(TimeDelta::hours(12))
            .with_margin(TimeDelta::minutes(10));
        assert_eq!(c.latest_start(), Ok(t("2023-01-01T12:00Z")));
        assert_eq!(c.finish_by(), Ok(t("2023-01-01T15:00Z")));
        assert_eq!(c.release_by(), Ok(t("2023-01-01T11:50Z")));
        let c = c.with_deadline(t("2023-01-01T10:00Z"));
        assert_eq!(c.latest_start(), Ok(t("2023-01-01T07:00Z")));
        let c = Constraints::new(t("2023-01-01T00:00Z"), TimeDelta::hours(3))
            .with_deadline(t("2023-01-02T00:00Z"));
        assert_eq!(c.latest_start(), Ok(t("2023-01-01T21:00Z")));
    }

    #[test]
    fn invalid_constraints_are_error_values() {
        let base = Constraints::new(t("2023-01-01T00:00Z"), TimeDelta::hours(1));
        assert_eq!(base.latest_start(), Err(ConstraintError::NoLimit));
        let ok = base.clone().with_max_delay(TimeDelta::hours(1));
        let cases = [
            (
                Constraints {
                    duration: TimeDelta::zero(),
                    ..ok.clone()
                },
                ConstraintError::NonPositiveDuration,
            ),
            (
                ok.clone().with_max_delay(TimeDelta::hours(-1)),
                ConstraintError::NegativeMaxDelay,
            ),
            (
                ok.clone().with_margin(TimeDelta::minutes(-1)),
                ConstraintError::NegativeMargin,
            ),
            (
                ok.clone().with_resume_overhead(TimeDelta::minutes(-1)),
                ConstraintError::NegativeResumeOverhead,
            ),
            (
                ok.clone().with_min_chunk(TimeDelta::zero()),
                ConstraintError::NonPositiveMinChunk,
            ),
            (
                ok.clone().with_max_delay(TimeDelta::MAX),
                ConstraintError::OutOfRange,
            ),
        ];
        for (c, error) in cases {
            assert_eq!(c.validate(), Err(error), "{c:?}");
            assert_eq!(c.release_by(), Err(error));
        }
    }

    #[test]
    fn remaining_keeps_the_finish_time() {
        let c = Constraints::new(t("2023-01-01T00:00Z"), TimeDelta::hours(4))
            .with_max_delay(TimeDelta::hours(10))
            .with_margin(TimeDelta::minutes(30))
            .interruptible();
        assert_eq!(c.finish_by(), Ok(t("2023-01-01T14:00Z")));
        let r = c.remaining(TimeDelta::hours(1)).expect("valid");
        assert_eq!(r.finish_by(), Ok(t("2023-01-01T14:00Z")));
        assert_eq!(r.latest_start(), Ok(t("2023-01-01T13:00Z")));
        assert_eq!(r.release_by(), Ok(t("2023-01-01T12:30Z")));
        assert!(r.interruptible);
        assert_eq!(
            c.remaining(TimeDelta::zero()),
            Err(ConstraintError::NonPositiveDuration)
        );
    }

    #[test]
    fn serde_uses_camel_case_and_duration_text() {
        let c = Constraints::new(t("2023-01-01T00:00Z"), TimeDelta::minutes(150))
            .with_max_delay(TimeDelta::hours(12))
            .with_margin(TimeDelta::minutes(10));
        let json = serde_json::to_value(&c).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "submittedAt": "2023-01-01T00:00:00Z",
                "duration": "2h30m",
                "maxDelay": "12h",
                "interruptible": false,
                "resumeOverhead": "0s",
                "margin": "10m"
            })
        );
        let back: Constraints = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, c);
        let bad = serde_json::json!({"submittedAt": "2023-01-01T00:00:00Z", "duration": "soon"});
        assert!(serde_json::from_value::<Constraints>(bad).is_err());
    }
}
