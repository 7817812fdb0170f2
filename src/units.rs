//! Human units used in annotations, flags and the custom resources: durations such as `2h30m`,
//! electrical power such as `1.4kW` and timestamps such as `2026-05-04T12:30Z`.
//!
//! Pure parsing and formatting with precise errors; the callers add the name of the field that
//! held the value. The `*_arg` functions are the clap value parsers every subcommand shares.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use thiserror::Error;

/// The duration form every parser error message shows.
pub const DURATION_FORM: &str =
    "a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)";

/// The power form every parser error message shows.
pub const POWER_FORM: &str = "a positive power with a unit, such as 1400W or 1.4kW";

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration")]
    Empty,
    /// A number was not followed by a unit (`90`).
    #[error("number without a unit")]
    MissingUnit,
    /// A unit other than s, m, h or d (`2w`, `3hours`).
    #[error("unknown unit {0:?}")]
    UnknownUnit(String),
    /// A unit without a number in front of it, a sign or a fraction (`h`, `-2h`, `1.5h`).
    #[error("not a whole number followed by a unit")]
    Malformed,
    /// The value is zero (`0s`); every duration carbonshift reads must be positive.
    #[error("duration must be greater than zero")]
    Zero,
    /// The value does not fit (more than about 290 million years).
    #[error("duration too large")]
    TooLarge,
}

/// Parses a duration made of whole numbers with units `s`, `m`, `h` and `d`, in any combination
/// (`45s`, `90m`, `2h30m`, `1d12h`). Zero, negative and fractional values are errors.
pub fn parse_duration(text: &str) -> Result<TimeDelta, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with(['-', '+']) || text.contains(['.', ',']) {
        return Err(DurationError::Malformed);
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Malformed);
        }
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLarge)?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return Err(if rest.is_empty() {
                DurationError::MissingUnit
            } else {
                DurationError::Malformed
            });
        }
        let seconds_per_unit = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            other => return Err(DurationError::UnknownUnit(other.to_string())),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(seconds_per_unit)
            .and_then(|s| total.checked_add(s))
            .ok_or(DurationError::TooLarge)?;
    }
    if total == 0 {
        return Err(DurationError::Zero);
    }
    TimeDelta::try_seconds(total).ok_or(DurationError::TooLarge)
}

/// Formats a duration in the form [`parse_duration`] reads, largest units first (`1d2h30m`).
/// Sub-second parts are dropped; zero is `0s` and negative durations get a leading `-`.
pub fn format_duration(duration: TimeDelta) -> String {
    let mut seconds = duration.num_seconds();
    let mut out = String::new();
    if seconds < 0 {
        out.push('-');
        seconds = seconds.saturating_neg();
    }
    if seconds == 0 {
        return "0s".to_string();
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = seconds / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            seconds -= n * size;
        }
    }
    out
}

/// Why a power value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PowerError {
    /// Nothing was given.
    #[error("empty power value")]
    Empty,
    /// A bare number (`1400`).
    #[error("power without a unit")]
    MissingUnit,
    /// A unit other than W or kW (`1.4MW`, `1400VA`).
    #[error("unknown power unit {0:?}")]
    UnknownUnit(String),
    /// The number part is not a number (`fast W`).
    #[error("not a number")]
    NotANumber,
    /// Zero, negative, infinite or NaN.
    #[error("power must be a positive, finite number")]
    NotPositive,
}

/// Parses electrical power with a unit, `W` or `kW` (case-insensitive, optional space): `1400W`,
/// `1.4kW`, `700 w`. Returns watts.
pub fn parse_power(text: &str) -> Result<f64, PowerError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(PowerError::Empty);
    }
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or(PowerError::MissingUnit)?;
    let (number, unit) = text.split_at(split);
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "w" => 1.0,
        "kw" => 1_000.0,
        _ => return Err(PowerError::UnknownUnit(unit.trim().to_string())),
    };
    let number = number.trim();
    if number.is_empty() {
        return Err(PowerError::NotANumber);
    }
    let value: f64 = number.parse().map_err(|_| PowerError::NotANumber)?;
    let watts = value * factor;
    if !watts.is_finite() || watts <= 0.0 {
        return Err(PowerError::NotPositive);
    }
    Ok(watts)
}

/// A clap value parser for duration flags (`--max-delay 12h`).
pub fn duration_arg(text: &str) -> Result<TimeDelta, String> {
    negative(text)?;
    parse_duration(text).map_err(|e| format!("{e}; expected {DURATION_FORM}"))
}

/// Durations are never negative; the flags take values starting with `-` (clap would otherwise
/// read `-1h` as an unknown flag) so that this can say so.
fn negative(text: &str) -> Result<(), String> {
    if text.trim_start().starts_with('-') {
        return Err(format!("{text:?} is negative; expected {DURATION_FORM}"));
    }
    Ok(())
}

/// A clap value parser for duration flags that may be zero (`--margin 0s`).
pub fn duration_or_zero_arg(text: &str) -> Result<TimeDelta, String> {
    negative(text)?;
    match parse_duration(text) {
        Err(DurationError::Zero) => Ok(TimeDelta::zero()),
        other => other.map_err(|e| format!("{e}; expected {DURATION_FORM}")),
    }
}

/// A clap value parser for power flags (`--power 1.4kW`); returns watts.
pub fn power_arg(text: &str) -> Result<f64, String> {
    parse_power(text).map_err(|e| format!("{e}; expected {POWER_FORM}"))
}

/// A clap value parser for time flags (`--at 2026-05-04T12:30Z`), read by [`parse_timestamp`].
pub fn timestamp_arg(text: &str) -> Result<DateTime<Utc>, String> {
    parse_timestamp(text).ok_or_else(|| format!("not a timestamp; expected {TIMESTAMP_FORM}"))
}

/// The timestamp forms [`parse_timestamp`] reads, for error messages.
pub const TIMESTAMP_FORM: &str = "an RFC 3339 time such as 2026-05-04T12:30:00Z (seconds optional), or YYYY-MM-DD HH:MM[:SS] read as UTC";

/// Reads a timestamp leniently: RFC 3339 with or without seconds and fractions
/// (`2023-05-04T12:30Z`, `2026-11-28T16:00:00.000Z`, `2026-11-28T16:00:00+01:00`), or a naive
/// `YYYY-MM-DD HH:MM[:SS]` / `YYYY-MM-DDTHH:MM[:SS]` read as UTC.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    // RFC 3339 without seconds: insert ":00" before the offset.
    for format in ["%Y-%m-%dT%H:%M%#z", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d %H:%M%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.to_utc());
        }
        if format.ends_with('Z')
            && let Ok(t) = NaiveDateTime::parse_from_str(text, format)
        {
            return Some(t.and_utc());
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    None
}

/// A Kubernetes timestamp (k8s-openapi uses jiff) as chrono, at the edge between the two: `None`
/// only outside chrono's range.
pub fn from_jiff(t: k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    let mut seconds = t.as_second();
    let mut nanos = t.subsec_nanosecond();
    // jiff gives a negative fraction for instants before the epoch; chrono wants 0..1e9.
    if nanos < 0 {
        seconds -= 1;
        nanos += 1_000_000_000;
    }
    DateTime::from_timestamp(seconds, u32::try_from(nanos).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_in_every_unit_and_combination() {
        let cases = [
            ("45s", 45),
            ("90m", 5_400),
            ("2h", 7_200),
            ("2h30m", 9_000),
            ("1d", 86_400),
            ("1d12h", 129_600),
            ("1h1m1s", 3_661),
            (" 3h ", 10_800),
            ("0h5m", 300),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(TimeDelta::seconds(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_durations_say_what_is_wrong() {
        let cases = [
            ("", DurationError::Empty),
            ("90", DurationError::MissingUnit),
            ("2w", DurationError::UnknownUnit("w".into())),
            ("3hours", DurationError::UnknownUnit("hours".into())),
            ("h", DurationError::Malformed),
            ("-2h", DurationError::Malformed),
            ("1.5h", DurationError::Malformed),
            ("2h 30m", DurationError::Malformed),
            ("0s", DurationError::Zero),
            ("0h0m", DurationError::Zero),
            ("99999999999999999999h", DurationError::TooLarge),
            ("9999999999999999d", DurationError::TooLarge),
        ];
        for (text, error) in cases {
            assert_eq!(parse_duration(text), Err(error), "{text:?}");
        }
    }

    #[test]
    fn formatting_uses_largest_units_first() {
        assert_eq!(format_duration(TimeDelta::seconds(129_600)), "1d12h");
        assert_eq!(format_duration(TimeDelta::seconds(9_000)), "2h30m");
        assert_eq!(format_duration(TimeDelta::seconds(61)), "1m1s");
        assert_eq!(format_duration(TimeDelta::zero()), "0s");
        assert_eq!(format_duration(TimeDelta::minutes(-90)), "-1h30m");
    }

    #[test]
    fn power_values() {
        assert_eq!(parse_power("1400W"), Ok(1_400.0));
        assert_eq!(parse_power("1.4kW"), Ok(1_400.0));
        assert_eq!(parse_power("700 w"), Ok(700.0));
        assert_eq!(parse_power("2KW"), Ok(2_000.0));
        assert_eq!(parse_power("1400"), Err(PowerError::MissingUnit));
        assert_eq!(
            parse_power("1.4MW"),
            Err(PowerError::UnknownUnit("MW".into()))
        );
        assert_eq!(parse_power("kW"), Err(PowerError::NotANumber));
        assert_eq!(
            parse_power("fast W"),
            Err(PowerError::UnknownUnit("fast W".into()))
        );
        assert_eq!(parse_power("0W"), Err(PowerError::NotPositive));
        assert_eq!(parse_power("-5W"), Err(PowerError::NotPositive));
        assert_eq!(parse_power(""), Err(PowerError::Empty));
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let expected = DateTime::parse_from_rfc3339("2023-05-04T12:30:00Z")
            .map(|t| t.to_utc())
            .ok();
        for text in [
            "2023-05-04T12:30:00Z",
            "2023-05-04T12:30Z",
            "2023-05-04T12:30:00.000Z",
            "2023-05-04T14:30:00+02:00",
            "2023-05-04T14:30+02:00",
            "2023-05-04 12:30:00",
            "2023-05-04 12:30",
            "2023-05-04T12:30:00",
            "2023-05-04T12:30",
            " 2023-05-04T12:30Z ",
        ] {
            assert_eq!(parse_timestamp(text), expected, "{text}");
        }
        for text in [
            "",
            "yesterday",
            "2023-05-04",
            "2023-13-04T12:30Z",
            "12:30",
            "2023-05-04T25:00Z",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
    }

    #[test]
    fn value_parsers_name_the_expected_form() {
        assert_eq!(power_arg("1.4kW"), Ok(1_400.0));
        assert_eq!(
            power_arg("1400"),
            Err(format!("power without a unit; expected {POWER_FORM}"))
        );
        assert_eq!(
            timestamp_arg("2023-05-04 12:30"),
            Ok(parse_timestamp("2023-05-04T12:30:00Z").unwrap_or_default())
        );
        assert_eq!(
            timestamp_arg("noon"),
            Err(format!("not a timestamp; expected {TIMESTAMP_FORM}"))
        );
    }

    #[test]
    fn jiff_timestamps_convert_exactly_on_both_sides_of_the_epoch() {
        for text in [
            "2026-11-29T02:45:58.123456789Z",
            "1969-12-31T23:59:59.5Z",
            "1970-01-01T00:00:00Z",
        ] {
            let jiff: k8s_openapi::jiff::Timestamp = text.parse().unwrap_or_else(|e| panic!("{e}"));
            let chrono = DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()).ok();
            assert_eq!(from_jiff(jiff), chrono, "{text}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(seconds in 1i64..10_000_000_000) {
            let d = TimeDelta::seconds(seconds);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn parsers_never_panic(text in ".{0,24}") {
            let _ = parse_duration(&text);
            let _ = parse_power(&text);
            let _ = parse_timestamp(&text);
        }
    }
}
