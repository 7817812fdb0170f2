//! Carbon-intensity traces in CSV: the parser shared by `carbonshift plan`, `replay` and the
//! `trace` forecast provider, and the traces compiled into the binary.
//!
//! The format: a header line; the first column a timestamp (see [`crate::units::parse_timestamp`]);
//! the intensity (gCO2eq/kWh) in the second column or in the column named by the caller. Blank
//! lines and lines starting with `#` are skipped. Timestamps must be strictly increasing.

use thiserror::Error;

use crate::planner::Point;
pub use crate::planner::{MAX_INTENSITY, intensity_in_range};
use crate::units::{TIMESTAMP_FORM, parse_timestamp};

/// Why a trace could not be read. Line numbers count from 1 and include the header.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TraceError {
    /// The input holds no header line.
    #[error("the trace is empty: expected a header line such as `time,intensity`")]
    Empty,
    /// A header but no data rows.
    #[error("the trace has a header but no data rows")]
    NoRows,
    /// The header has a single column, so there is no intensity.
    #[error(
        "line 1: the header has only one column; expected a timestamp column and an intensity column"
    )]
    NoIntensityColumn,
    /// `column` names the first column, which holds the timestamps.
    #[error(
        "line 1: column {name:?} is the timestamp column; name the intensity column instead (the header has {available})"
    )]
    TimestampColumn {
        /// The requested column.
        name: String,
        /// The header's columns, comma-separated.
        available: String,
    },
    /// The CSV itself is malformed (for example a quote that never closes).
    #[error("line {line}: {detail}")]
    Csv {
        /// Line number.
        line: usize,
        /// What the CSV reader found.
        detail: String,
    },
    /// `column` names a column the header does not have.
    #[error("line 1: no column named {name:?}; the header has {available}")]
    MissingColumn {
        /// The requested column.
        name: String,
        /// The header's columns, comma-separated.
        available: String,
    },
    /// A row has fewer fields than the intensity column needs.
    #[error("line {line}: {found} field(s), but the intensity is in column {needed}")]
    ShortRow {
        /// Line number.
        line: usize,
        /// Fields on the line.
        found: usize,
        /// 1-based index of the intensity column.
        needed: usize,
    },
    /// The first field is not a timestamp.
    #[error("line {line}: {value:?} is not a timestamp; expected {TIMESTAMP_FORM}")]
    BadTimestamp {
        /// Line number.
        line: usize,
        /// The field.
        value: String,
    },
    /// The intensity field is not a number.
    #[error("line {line}: intensity {value:?} is not a number")]
    BadNumber {
        /// Line number.
        line: usize,
        /// The field.
        value: String,
    },
    /// The intensity is negative, above [`MAX_INTENSITY`] or not finite.
    #[error("line {line}: intensity {value} is outside 0..={MAX_INTENSITY} gCO2eq/kWh")]
    OutOfRange {
        /// Line number.
        line: usize,
        /// The value.
        value: f64,
    },
    /// A timestamp equal to the previous row's.
    #[error("line {line}: duplicate timestamp {value}")]
    Duplicate {
        /// Line number.
        line: usize,
        /// The timestamp as written.
        value: String,
    },
    /// A timestamp earlier than the previous row's.
    #[error(
        "line {line}: timestamp {value} is earlier than the line before; rows must be in time order"
    )]
    Unsorted {
        /// Line number.
        line: usize,
        /// The timestamp as written.
        value: String,
    },
}

/// Parses a CSV trace. `column` names the intensity column; by default the second.
///
/// Fields are read by the `csv` crate (RFC 4180: a quoted field may hold commas, quotes doubled
/// inside it), so `"100,5"` is one field, not two.
pub fn parse(text: &str, column: Option<&str>) -> Result<Vec<Point>, TraceError> {
    let mut rows = records(text)?.into_iter();
    let (_, header) = rows.next().ok_or(TraceError::Empty)?;
    let names: Vec<&str> = header.iter().collect();
    let index = match column {
        Some(name) => names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| TraceError::MissingColumn {
                name: name.to_string(),
                available: names.join(","),
            })?,
        None if names.len() < 2 => return Err(TraceError::NoIntensityColumn),
        None => 1,
    };
    if index == 0 {
        return Err(match column {
            Some(name) if names.len() >= 2 => TraceError::TimestampColumn {
                name: name.to_string(),
                available: names.join(","),
            },
            _ => TraceError::NoIntensityColumn,
        });
    }
    let mut points: Vec<Point> = Vec::new();
    for (line, row) in rows {
        if row.len() <= index {
            return Err(TraceError::ShortRow {
                line,
                found: row.len(),
                needed: index + 1,
            });
        }
        let stamp = &row[0];
        let start = parse_timestamp(stamp).ok_or_else(|| TraceError::BadTimestamp {
            line,
            value: stamp.to_string(),
        })?;
        let value = &row[index];
        let intensity: f64 = value.parse().map_err(|_| TraceError::BadNumber {
            line,
            value: value.to_string(),
        })?;
        if !intensity_in_range(intensity) {
            return Err(TraceError::OutOfRange {
                line,
                value: intensity,
            });
        }
        if let Some(previous) = points.last() {
            if start == previous.start {
                return Err(TraceError::Duplicate {
                    line,
                    value: stamp.to_string(),
                });
            }
            if start < previous.start {
                return Err(TraceError::Unsorted {
                    line,
                    value: stamp.to_string(),
                });
            }
        }
        points.push(Point { start, intensity });
    }
    if points.is_empty() {
        return Err(TraceError::NoRows);
    }
    Ok(points)
}

/// The header and data records of a CSV text with their 1-based line numbers, fields trimmed:
/// a byte-order mark removed, blank lines and lines starting with `#` (after whitespace) skipped.
fn records(text: &str) -> Result<Vec<(usize, csv::StringRecord)>, TraceError> {
    // Comment and blank lines become empty lines, which the reader skips, so that its line
    // numbers stay those of the file.
    let cleaned: String = text
        .trim_start_matches('\u{feff}')
        .split_inclusive('\n')
        .map(|line| {
            let content = line.trim();
            if content.is_empty() || content.starts_with('#') {
                "\n"
            } else {
                line
            }
        })
        .collect();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(cleaned.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| TraceError::Csv {
            line: e
                .position()
                .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX)),
            detail: match e.kind() {
                csv::ErrorKind::Utf8 { err, .. } => {
                    format!("field {} is not UTF-8 text", err.field() + 1)
                }
                _ => e.to_string(),
            },
        })?;
        let line = record
            .position()
            .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
        rows.push((line, record));
    }
    Ok(rows)
}

/// The 1-based line of the first byte of `bytes` that is not UTF-8, or `None` when all of it is.
pub fn first_non_utf8_line(bytes: &[u8]) -> Option<usize> {
    let valid = match std::str::from_utf8(bytes) {
        Ok(_) => return None,
        Err(e) => e.valid_up_to(),
    };
    Some(bytes[..valid].iter().filter(|b| **b == b'\n').count() + 1)
}

/// The lines of a CSV text that carry a header or data, with their 1-based line numbers: a
/// byte-order mark and surrounding whitespace removed, blank lines and `#` comments skipped.
/// Shared with the job traces of [`crate::replay::scenario::parse_jobs`].
pub(crate) fn csv_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start_matches('\u{feff}').trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// A trace compiled into the binary, so that a fresh install and the demo work without any account,
/// network or file.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Name used in `trace.builtin` and `--builtin`.
    pub name: &'static str,
    /// What the trace is and where it comes from.
    pub description: &'static str,
    /// The CSV text.
    pub csv: &'static str,
}

/// Every trace compiled into the binary (public data; sources in `data/README.md`).
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "gb-2020",
        description: "Great Britain, average intensity, 30-min (15-min from 2020-10-31), 2019-12-20..2021-01-09 (Wiesner et al. 2021)",
        csv: include_str!("../data/traces/lwa_gb_ci.csv"),
    },
    Builtin {
        name: "de-2020",
        description: "Germany, average intensity, 15-min, 2019-12-20..2021-01-09 (Wiesner et al. 2021)",
        csv: include_str!("../data/traces/lwa_ger_ci.csv"),
    },
    Builtin {
        name: "fr-2020",
        description: "France, average intensity, 30-min, 2019-12-20..2021-01-09 (Wiesner et al. 2021)",
        csv: include_str!("../data/traces/lwa_fr_ci.csv"),
    },
    Builtin {
        name: "caiso-north-2023-06",
        description: "CAISO North, WattTime marginal intensity (MOER), 5-min, 2023-06-08..07-08 (vessim)",
        csv: include_str!("../data/traces/watttime_caiso_north_moer_2023-06.csv"),
    },
];

/// The built-in trace called `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Names of the built-in traces, comma-separated, for error messages and help.
pub fn builtin_names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::units::parse_timestamp(s).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    #[test]
    fn reads_second_column_or_named_column() {
        let csv = "time,a,b\n2023-05-04T12:30Z,11,20\n2023-05-04 13:00,15.5,21\n";
        let points = parse(csv, None).expect("valid");
        assert_eq!(points.len(), 2);
        assert_eq!(
            points[0],
            Point {
                start: t("2023-05-04T12:30:00Z"),
                intensity: 11.0
            }
        );
        assert_eq!(points[1].intensity, 15.5);
        let b = parse(csv, Some("B")).expect("valid");
        assert_eq!(b[1].intensity, 21.0);
    }

    #[test]
    fn quoted_fields_keep_their_commas() {
        // A quoted field is one field: "100,5" is not 100 (the hand-written splitter read it so).
        let csv = "time,ci\n2023-01-01 00:00,\"100,5\"\n";
        assert_eq!(
            parse(csv, None),
            Err(TraceError::BadNumber {
                line: 2,
                value: "100,5".into()
            })
        );
        let csv = "\"time\",\"intensity, g/kWh\",\"note\"\n\"2023-01-01 00:00\",\"120\",\"a, b\"\n2023-01-01 00:30,130,\"say \"\"hi\"\"\"\n";
        let points = parse(csv, Some("intensity, g/kWh")).expect("valid");
        assert_eq!(
            points.iter().map(|p| p.intensity).collect::<Vec<_>>(),
            vec![120.0, 130.0]
        );
        assert_eq!(parse(csv, None).map(|p| p.len()), Ok(2));
    }

    #[test]
    fn the_timestamp_column_is_not_an_intensity_column() {
        let csv = "time,intensity\n2023-01-01 00:00,1\n";
        let error = parse(csv, Some("time")).expect_err("the timestamp column");
        assert_eq!(
            error.to_string(),
            "line 1: column \"time\" is the timestamp column; name the intensity column instead (the header has time,intensity)"
        );
    }

    #[test]
    fn the_first_non_utf8_byte_is_found_by_line() {
        assert_eq!(first_non_utf8_line(b"time,ci\n2023,1\n"), None);
        assert_eq!(
            first_non_utf8_line(b"time,ci\n2023,1\n2023,\xff\n"),
            Some(3)
        );
    }

    #[test]
    fn skips_blank_and_comment_lines_and_handles_bom_and_crlf() {
        let csv =
            "\u{feff}time,ci\r\n# comment\r\n\r\n2023-01-01 00:00,1\r\n2023-01-01 00:30,2\r\n";
        assert_eq!(parse(csv, None).map(|p| p.len()), Ok(2));
    }

    #[test]
    fn every_malformed_input_names_its_line() {
        let cases: Vec<(&str, Option<&str>, TraceError)> = vec![
            ("", None, TraceError::Empty),
            ("time,ci\n", None, TraceError::NoRows),
            (
                "time\n2023-01-01 00:00\n",
                None,
                TraceError::NoIntensityColumn,
            ),
            (
                "time,ci\n2023-01-01 00:00,1\n",
                Some("watts"),
                TraceError::MissingColumn {
                    name: "watts".into(),
                    available: "time,ci".into(),
                },
            ),
            (
                "time,ci\n2023-01-01 00:00,1\n2023-01-01 00:30\n",
                None,
                TraceError::ShortRow {
                    line: 3,
                    found: 1,
                    needed: 2,
                },
            ),
            (
                "time,ci\nnoon,1\n",
                None,
                TraceError::BadTimestamp {
                    line: 2,
                    value: "noon".into(),
                },
            ),
            (
                "time,ci\n2023-01-01 00:00,abc\n",
                None,
                TraceError::BadNumber {
                    line: 2,
                    value: "abc".into(),
                },
            ),
            (
                "time,ci\n2023-01-01 00:00,\n",
                None,
                TraceError::BadNumber {
                    line: 2,
                    value: "".into(),
                },
            ),
            (
                "time,ci\n2023-01-01 00:00,-1\n",
                None,
                TraceError::OutOfRange {
                    line: 2,
                    value: -1.0,
                },
            ),
            (
                "time,ci\n2023-01-01 00:00,9000\n",
                None,
                TraceError::OutOfRange {
                    line: 2,
                    value: 9000.0,
                },
            ),
            (
                "time,ci\n2023-01-01 00:30,1\n2023-01-01 00:30,2\n",
                None,
                TraceError::Duplicate {
                    line: 3,
                    value: "2023-01-01 00:30".into(),
                },
            ),
            (
                "time,ci\n2023-01-01 00:30,1\n2023-01-01 00:00,2\n",
                None,
                TraceError::Unsorted {
                    line: 3,
                    value: "2023-01-01 00:00".into(),
                },
            ),
        ];
        for (csv, column, error) in cases {
            assert_eq!(parse(csv, column), Err(error), "{csv:?}");
        }
    }

    #[test]
    fn the_intensity_range_is_closed_and_excludes_nan_and_infinity() {
        for ok in [0.0, -0.0, 0.5, MAX_INTENSITY] {
            assert!(intensity_in_range(ok), "{ok}");
        }
        for bad in [
            -0.001,
            5_000.001,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert!(!intensity_in_range(bad), "{bad}");
        }
    }

    #[test]
    fn nan_is_out_of_range_not_a_number() {
        let result = parse("time,ci\n2023-01-01 00:00,NaN\n", None);
        assert!(
            matches!(result, Err(TraceError::OutOfRange { line: 2, .. })),
            "{result:?}"
        );
    }

    #[test]
    fn every_builtin_trace_parses() {
        for b in BUILTINS {
            let points = parse(b.csv, None).unwrap_or_else(|e| panic!("{}: {e}", b.name));
            assert!(
                points.len() > 8_000,
                "{} has {} points",
                b.name,
                points.len()
            );
        }
        assert!(builtin("gb-2020").is_some());
        assert!(builtin("mars").is_none());
        assert_eq!(
            builtin_names(),
            "gb-2020, de-2020, fr-2020, caiso-north-2023-06"
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "(?s).{0,200}") {
            let _ = parse(&text, None);
            let _ = parse(&text, Some("ci"));
        }
    }
}
