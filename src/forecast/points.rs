//! The rules every forecast obeys, whatever its source: at least one point, start times strictly
//! increasing (so sorted and unique), intensities finite and within 0..=[`MAX_INTENSITY`]
//! gCO2eq/kWh. Pure functions shared by every payload parser.

use chrono::{DateTime, SecondsFormat, Utc};
use thiserror::Error;

use crate::planner::Point;
use crate::trace::{MAX_INTENSITY, intensity_in_range};
use crate::units::parse_timestamp;

/// What is wrong with a list of points. Indexes count from 0, like the JSON arrays they come from.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PointError {
    /// No points at all.
    #[error("{list} has no points")]
    Empty {
        /// Where the points are, e.g. `forecast`.
        list: String,
    },
    /// An intensity outside 0..=MAX_INTENSITY, or not finite.
    #[error(
        "{list}[{index}] at {}: intensity {value} is outside 0..={MAX_INTENSITY} gCO2eq/kWh",
        stamp(*start)
    )]
    OutOfRange {
        /// Where the points are.
        list: String,
        /// Index of the point.
        index: usize,
        /// Its start.
        start: DateTime<Utc>,
        /// The offending value, gCO2eq/kWh.
        value: f64,
    },
    /// Two points with the same start.
    #[error(
        "{list}[{index}] starts at {}, like the point before it; timestamps must be unique",
        stamp(*start)
    )]
    Duplicate {
        /// Where the points are.
        list: String,
        /// Index of the second point.
        index: usize,
        /// The shared start.
        start: DateTime<Utc>,
    },
    /// A point earlier than the one before it.
    #[error(
        "{list}[{index}] starts at {}, before the point before it ({}); points must be in time order",
        stamp(*start),
        stamp(*previous)
    )]
    Unsorted {
        /// Where the points are.
        list: String,
        /// Index of the point.
        index: usize,
        /// Its start.
        start: DateTime<Utc>,
        /// The previous point's start.
        previous: DateTime<Utc>,
    },
}

/// A timestamp as carbonshift prints it in messages and tables: RFC 3339 in UTC with seconds
/// (`2026-11-28T16:00:00Z`), fractions only when there are some.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Checks that `points` is a usable forecast (see the module documentation). `list` names the list
/// in error messages.
pub fn validate(list: &str, points: &[Point]) -> Result<(), PointError> {
    if points.is_empty() {
        return Err(PointError::Empty { list: list.into() });
    }
    validate_allow_empty(list, points)
}

/// Like [`validate`] but an empty list is fine (measured actuals are often absent).
pub fn validate_allow_empty(list: &str, points: &[Point]) -> Result<(), PointError> {
    let mut previous: Option<DateTime<Utc>> = None;
    for (index, p) in points.iter().enumerate() {
        if !intensity_in_range(p.intensity) {
            return Err(PointError::OutOfRange {
                list: list.into(),
                index,
                start: p.start,
                value: p.intensity,
            });
        }
        if let Some(previous) = previous {
            if p.start == previous {
                return Err(PointError::Duplicate {
                    list: list.into(),
                    index,
                    start: p.start,
                });
            }
            if p.start < previous {
                return Err(PointError::Unsorted {
                    list: list.into(),
                    index,
                    start: p.start,
                    previous,
                });
            }
        }
        previous = Some(p.start);
    }
    Ok(())
}

/// Reads a provider timestamp leniently (RFC 3339 with or without seconds or fraction, any
/// offset); `Err` carries a message naming the field.
pub fn timestamp(field: &str, text: &str) -> Result<DateTime<Utc>, String> {
    parse_timestamp(text).ok_or_else(|| {
        format!(
            "{field} is {:?}, not a timestamp",
            text.chars().take(64).collect::<String>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::minutes(minutes)
    }

    fn p(minutes: i64, intensity: f64) -> Point {
        Point {
            start: t(minutes),
            intensity,
        }
    }

    #[test]
    fn accepts_sorted_unique_in_range_points_and_bounds() {
        assert_eq!(
            validate("forecast", &[p(0, 0.0), p(30, MAX_INTENSITY), p(90, 12.5)]),
            Ok(())
        );
        assert_eq!(validate_allow_empty("actuals", &[]), Ok(()));
    }

    #[test]
    fn each_rule_has_a_precise_error() {
        assert_eq!(
            validate("forecast", &[]).map_err(|e| e.to_string()),
            Err("forecast has no points".into())
        );
        assert_eq!(
            validate("data", &[p(0, 1.0), p(30, -0.5)]).map_err(|e| e.to_string()),
            Err(
                "data[1] at 1970-01-01T00:30:00Z: intensity -0.5 is outside 0..=5000 gCO2eq/kWh"
                    .into()
            )
        );
        assert_eq!(
            validate("data", &[p(0, 5000.5)]).map_err(|e| e.to_string()),
            Err(
                "data[0] at 1970-01-01T00:00:00Z: intensity 5000.5 is outside 0..=5000 gCO2eq/kWh"
                    .into()
            )
        );
        assert!(matches!(
            validate("data", &[p(0, f64::NAN)]),
            Err(PointError::OutOfRange { index: 0, .. })
        ));
        assert!(matches!(
            validate("data", &[p(0, f64::INFINITY)]),
            Err(PointError::OutOfRange { index: 0, .. })
        ));
        assert_eq!(
            validate("forecast", &[p(0, 1.0), p(60, 1.0), p(60, 2.0)]).map_err(|e| e.to_string()),
            Err(
                "forecast[2] starts at 1970-01-01T01:00:00Z, like the point before it; timestamps must be unique"
                    .into()
            )
        );
        assert_eq!(
            validate("forecast", &[p(60, 1.0), p(0, 1.0)]).map_err(|e| e.to_string()),
            Err(
                "forecast[1] starts at 1970-01-01T00:00:00Z, before the point before it (1970-01-01T01:00:00Z); points must be in time order"
                    .into()
            )
        );
    }

    #[test]
    fn timestamps_are_lenient_and_errors_name_the_field() {
        assert_eq!(timestamp("from", "1970-01-01T00:30Z"), Ok(t(30)));
        assert_eq!(timestamp("from", "1970-01-01T01:30:00+01:00"), Ok(t(30)));
        assert_eq!(timestamp("from", "1970-01-01T00:30:00.000Z"), Ok(t(30)));
        assert_eq!(
            timestamp("data[2].from", "noon"),
            Err("data[2].from is \"noon\", not a timestamp".into())
        );
    }

    proptest! {
        /// `validate` agrees with a brute-force statement of the rules.
        #[test]
        fn validate_matches_brute_force(
            raw in proptest::collection::vec((0i64..20, -10.0f64..5010.0), 0..12)
        ) {
            let points: Vec<Point> = raw.iter().map(|&(m, v)| p(m, v)).collect();
            let in_range = points.iter().all(|p| (0.0..=MAX_INTENSITY).contains(&p.intensity));
            let increasing = points.windows(2).all(|w| w[0].start < w[1].start);
            let expected = !points.is_empty() && in_range && increasing;
            prop_assert_eq!(validate("x", &points).is_ok(), expected);
        }
    }
}
