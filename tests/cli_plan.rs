//! `carbonshift plan` through the real binary: exit codes 0/1/2, JSON fields and figures, table
//! output and clear errors on malformed traces, on traces committed in the repository.

use std::process::{Command, Output};

use carbonshift::planner::{self, Constraints, Forecast};
use carbonshift::units::parse_timestamp;
use chrono::TimeDelta;
use serde_json::Value;

const UK: &str = "data/traces/uk_carbonintensity_forecast_48h_2023-05-04_cats.csv";
const GAP: &str = "tests/fixtures/traces/irregular-gap.csv";

fn carbonshift(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carbonshift"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("plan")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run carbonshift: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)))
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64()
        .is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

#[test]
fn json_plan_on_the_irregular_trace_with_a_gap() {
    let o = carbonshift(&[
        "--trace",
        GAP,
        "--at",
        "2024-03-01T00:00Z",
        "--duration",
        "1h",
        "--max-delay",
        "6h",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    // Fully known hours: up to 02:30 (the gap starts there) and from 05:00; 05:00–06:00 at
    // (40 + 45) / 2 = 42.5 is the cheapest. Running now: (200 + 180) / 2 = 190.
    assert_eq!(v["start"], "2024-03-01T05:00:00Z");
    assert_eq!(v["end"], "2024-03-01T06:00:00Z");
    assert_eq!(v["latestStart"], "2024-03-01T06:00:00Z");
    assert_eq!(v["releaseBy"], "2024-03-01T06:00:00Z");
    assert_eq!(
        v["windows"],
        serde_json::json!([{"start": "2024-03-01T05:00:00Z", "end": "2024-03-01T06:00:00Z"}])
    );
    assert!(close(&v["expectedIntensity"], 42.5), "{v}");
    assert!(close(&v["runNowIntensity"], 190.0), "{v}");
    assert!(
        close(&v["savingsPercent"], (190.0 - 42.5) / 190.0 * 100.0),
        "{v}"
    );
    assert!(close(&v["coverage"], 1.0));
    assert_eq!(v["reason"], "lowestIntensity");
    assert_eq!(v["duration"], "1h");
}

#[test]
fn interruptible_margin_and_energy_in_json() {
    let o = carbonshift(&[
        "--trace",
        GAP,
        "--at",
        "2024-03-01T00:00Z",
        "--duration",
        "90m",
        "--max-delay",
        "6h",
        "--interruptible",
        "--power",
        "2kW",
        "--pue",
        "1.5",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    // 40 and 45 (05:00–06:00) and 60 (01:30–02:00).
    assert_eq!(
        v["windows"],
        serde_json::json!([
            {"start": "2024-03-01T01:30:00Z", "end": "2024-03-01T02:00:00Z"},
            {"start": "2024-03-01T05:00:00Z", "end": "2024-03-01T06:00:00Z"}
        ])
    );
    assert!(close(&v["expectedIntensity"], 4_350.0 / 90.0), "{v}");
    // 2 kW × 1.5 × 1.5 h = 4.5 kWh.
    assert!(close(&v["energy"]["energyKwh"], 4.5), "{v}");
    assert!(close(&v["energy"]["emissionsGrams"], 4.5 * 4_350.0 / 90.0));
    // Now: 00:00–01:30 = (200·30 + 180·30 + 120·15 + 90·15) / 90 = 161.66...
    let now = (200.0 * 30.0 + 180.0 * 30.0 + 120.0 * 15.0 + 90.0 * 15.0) / 90.0;
    assert!(close(
        &v["energy"]["avoidedGrams"],
        4.5 * (now - 4_350.0 / 90.0)
    ));

    let o = carbonshift(&[
        "--trace",
        GAP,
        "--at",
        "2024-03-01T00:00Z",
        "--duration",
        "1h",
        "--max-delay",
        "6h",
        "--margin",
        "90m",
        "--output",
        "json",
    ]);
    let v = json(&o);
    // Release by 04:30: the hours after the gap are out of reach; [01:30, 02:30) = 70 is best.
    assert_eq!(v["start"], "2024-03-01T01:30:00Z");
    assert_eq!(v["releaseBy"], "2024-03-01T04:30:00Z");
    assert!(close(&v["expectedIntensity"], 70.0));
}

#[test]
fn cli_json_equals_the_library_plan_on_the_uk_forecast() {
    let o = carbonshift(&[
        "--trace",
        UK,
        "--column",
        "intensity",
        "--at",
        "2023-05-04T12:30Z",
        "--duration",
        "3h",
        "--max-delay",
        "12h",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let text =
        std::fs::read_to_string(format!("{}/{UK}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default();
    let points = carbonshift::trace::parse(&text, Some("intensity")).unwrap_or_default();
    let forecast = Forecast::new(points).unwrap_or_else(|e| panic!("{e}"));
    let at = parse_timestamp("2023-05-04T12:30Z").unwrap_or_default();
    let c = Constraints::new(at, TimeDelta::hours(3)).with_max_delay(TimeDelta::hours(12));
    let p = planner::plan(&forecast, &c, at).unwrap_or_else(|e| panic!("{e}"));
    let lib = serde_json::to_value(&p).unwrap_or_default();
    for key in [
        "start",
        "end",
        "windows",
        "expectedIntensity",
        "runNowIntensity",
        "latestStart",
        "coverage",
        "reason",
    ] {
        assert_eq!(v[key], lib[key], "{key}");
    }
    assert!(close(
        &v["savingsPercent"],
        p.savings_percent().unwrap_or(f64::NAN)
    ));
}

#[test]
fn table_output_for_people() {
    let o = carbonshift(&[
        "--trace",
        GAP,
        "--at",
        "2024-03-01T00:00Z",
        "--duration",
        "1h",
        "--deadline",
        "2024-03-01T07:00Z",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "Start:              2024-03-01 05:00 UTC\n\
         End:                2024-03-01 06:00 UTC\n\
         Duration:           1h\n\
         Latest start:       2024-03-01 06:00 UTC\n\
         Windows:            2024-03-01 05:00 UTC - 2024-03-01 06:00 UTC (1h)\n\
         Expected intensity: 42.5 gCO2eq/kWh\n\
         Run-now intensity:  190.0 gCO2eq/kWh\n\
         Saving:             77.6 %\n\
         Coverage:           100 %\n\
         Reason:             lowest-intensity window\n"
    );
}

#[test]
fn a_column_of_equal_values_starts_now() {
    let o = carbonshift(&[
        "--trace",
        GAP,
        "--column",
        "flat",
        "--at",
        "2024-03-01T00:10Z",
        "--duration",
        "1h",
        "--max-delay",
        "4h",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["start"], "2024-03-01T00:10:00Z");
}

#[test]
fn builtin_trace() {
    let o = carbonshift(&[
        "--builtin",
        "caiso-north-2023-06",
        "--at",
        "2023-06-10T00:00Z",
        "--duration",
        "4h",
        "--max-delay",
        "1d",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert!(close(&v["coverage"], 1.0));
    assert!(v["savingsPercent"].as_f64().is_some_and(|s| s > 0.0), "{v}");
}

#[test]
fn no_plan_exits_1() {
    // The trace ends at 07:00 on 1 March.
    let o = carbonshift(&[
        "--trace",
        GAP,
        "--at",
        "2024-03-02T00:00Z",
        "--duration",
        "1h",
        "--max-delay",
        "6h",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["noPlan"]["kind"], "noCoverage");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("no data")),
        "{v}"
    );
    // The deadline leaves no time.
    let o = carbonshift(&[
        "--trace",
        GAP,
        "--at",
        "2024-03-01T03:00Z",
        "--duration",
        "2h",
        "--deadline",
        "2024-03-01T04:00Z",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("too late"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
}

#[test]
fn malformed_traces_exit_2_with_the_line() {
    let cases = [
        (
            "bad-timestamp.csv",
            None,
            "line 4: \"2024-03-01 half past one\" is not a timestamp",
        ),
        (
            "non-numeric.csv",
            None,
            "line 3: intensity \"low\" is not a number",
        ),
        (
            "unsorted.csv",
            None,
            "line 4: timestamp 2024-03-01T00:30Z is earlier",
        ),
        (
            "duplicate.csv",
            None,
            "line 4: duplicate timestamp 2024-03-01T00:30Z",
        ),
        ("empty.csv", None, "the trace is empty"),
        ("header-only.csv", None, "no data rows"),
        (
            "irregular-gap.csv",
            Some("watts"),
            "line 1: no column named \"watts\"",
        ),
    ];
    for (file, column, message) in cases {
        let path = format!("tests/fixtures/traces/{file}");
        let mut args = vec![
            "--trace",
            path.as_str(),
            "--at",
            "2024-03-01T00:00Z",
            "--duration",
            "1h",
            "--max-delay",
            "6h",
        ];
        if let Some(c) = column {
            args.extend(["--column", c]);
        }
        let o = carbonshift(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(message), "{file}: {err}");
        assert!(
            err.contains(file),
            "{file}: the message names the file: {err}"
        );
        assert!(!err.contains("panicked"), "{file}: {err}");
    }
}

#[test]
fn bad_arguments_exit_2() {
    let cases: [&[&str]; 8] = [
        // Missing file.
        &[
            "--trace",
            "tests/fixtures/traces/missing.csv",
            "--at",
            "2024-03-01T00:00Z",
            "--duration",
            "1h",
            "--max-delay",
            "1h",
        ],
        // Bad duration, timestamp, power.
        &[
            "--trace",
            GAP,
            "--at",
            "2024-03-01T00:00Z",
            "--duration",
            "3x",
            "--max-delay",
            "1h",
        ],
        &[
            "--trace",
            GAP,
            "--at",
            "tomorrow",
            "--duration",
            "1h",
            "--max-delay",
            "1h",
        ],
        &[
            "--trace",
            GAP,
            "--at",
            "2024-03-01T00:00Z",
            "--duration",
            "1h",
            "--max-delay",
            "1h",
            "--power",
            "lots",
        ],
        // Neither limit; no trace; chunking without --interruptible; unknown built-in.
        &[
            "--trace",
            GAP,
            "--at",
            "2024-03-01T00:00Z",
            "--duration",
            "1h",
        ],
        &[
            "--at",
            "2024-03-01T00:00Z",
            "--duration",
            "1h",
            "--max-delay",
            "1h",
        ],
        &[
            "--trace",
            GAP,
            "--at",
            "2024-03-01T00:00Z",
            "--duration",
            "1h",
            "--max-delay",
            "1h",
            "--min-chunk",
            "10m",
        ],
        &[
            "--builtin",
            "mars",
            "--at",
            "2024-03-01T00:00Z",
            "--duration",
            "1h",
            "--max-delay",
            "1h",
        ],
    ];
    for args in cases {
        let o = carbonshift(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            !err.is_empty() && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}
