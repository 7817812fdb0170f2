//! The CLI as a new user meets it: each check here is a rough edge that was found by trying the
//! docs and the commands, and that must not come back.

// Test code: a failed `expect` is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const UK: &str = "data/traces/uk_carbonintensity_forecast_48h_2023-05-04_cats.csv";

fn carbonshift(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carbonshift"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run carbonshift: {e}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn plan(extra: &[&str]) -> Output {
    let mut args = vec![
        "plan",
        "--trace",
        UK,
        "--column",
        "intensity",
        "--at",
        "2023-05-04T19:00Z",
    ];
    args.extend_from_slice(extra);
    carbonshift(&args)
}

#[test]
fn a_duration_longer_than_any_job_is_refused_like_the_annotation() {
    let out = plan(&["--duration", "1000000000h", "--max-delay", "12h"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("--duration 41666666d16h is longer than 366d"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_plan_partly_beyond_the_trace_is_flagged() {
    // 30 days on a 48-hour forecast: most of the run time has no data.
    let out = plan(&["--duration", "30d", "--max-delay", "1h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: the trace covers only"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("(partial: see the warning)"),
        "{}",
        stdout(&out)
    );
    // A plan on data says nothing.
    let out = plan(&["--duration", "3h", "--max-delay", "12h"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn a_negative_duration_is_named_as_such() {
    for args in [
        ["--duration", "-1h", "--max-delay", "12h"],
        ["--duration", "1h", "--max-delay", "-2h"],
    ] {
        let out = plan(&args);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("is negative; expected a positive duration"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("unexpected argument"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn the_timestamp_column_is_named_as_such() {
    let out = carbonshift(&[
        "plan",
        "--trace",
        UK,
        "--column",
        "time",
        "--at",
        "2023-05-04T19:00Z",
        "--duration",
        "1h",
        "--max-delay",
        "2h",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("is the timestamp column"), "{err}");
    assert!(!err.contains("only one column"), "{err}");
}

#[test]
fn quoted_csv_fields_and_non_utf8_files() {
    let dir = tempfile::tempdir().unwrap();
    let quoted = dir.path().join("quoted.csv");
    std::fs::write(
        &quoted,
        "time,intensity\n2023-05-04T19:00Z,\"100,5\"\n2023-05-04T19:30Z,90\n",
    )
    .unwrap();
    let q = quoted.display().to_string();
    let out = carbonshift(&[
        "plan",
        "--trace",
        &q,
        "--at",
        "2023-05-04T19:00Z",
        "--duration",
        "30m",
        "--max-delay",
        "30m",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 2: intensity \"100,5\" is not a number"),
        "{}",
        stderr(&out)
    );
    let latin1 = dir.path().join("latin1.csv");
    std::fs::write(
        &latin1,
        b"time,intensity\n2023-05-04T19:00Z,100\n2023-05-04T19:30Z,90 \xb5\n",
    )
    .unwrap();
    let l = latin1.display().to_string();
    let out = carbonshift(&[
        "plan",
        "--trace",
        &l,
        "--at",
        "2023-05-04T19:00Z",
        "--duration",
        "30m",
        "--max-delay",
        "30m",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 3 is not UTF-8 text"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn crds_dir_is_created_and_an_unusable_one_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new/crds");
    let out = carbonshift(&["crds", "--dir", &new.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(new.join("carbonforecasts.carbonshift.dev.yaml").is_file());
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let out = carbonshift(&["crds", "--dir", &blocked.join("crds").display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot create the directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_and_replay_help_show_examples() {
    for command in ["plan", "replay"] {
        let out = carbonshift(&[command, "--help"]);
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(
            text.contains("Examples:") && text.contains(&format!("carbonshift {command} --")),
            "{command} --help:\n{text}"
        );
        assert!(text.contains("Exit codes:"), "{command} --help:\n{text}");
    }
}

#[test]
fn replay_checks_its_outputs_and_the_chart_range_before_working() {
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let unwritable = blocked.join("results.md").display().to_string();
    let started = std::time::Instant::now();
    let out = carbonshift(&["replay", "--results", &unwritable, "--quiet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot write {unwritable}")),
        "{}",
        stderr(&out)
    );
    // Refused at once, not after the replays (which take minutes).
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    let chart = dir.path().join("chart.svg");
    let out = carbonshift(&[
        "replay",
        "--builtin",
        "de-2020",
        "--policies",
        "carbonshift",
        "--plot",
        &chart.display().to_string(),
        "--plot-from",
        "2030-01-01T00:00Z",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("--plot-from 2030-01-01 00:00:00 UTC with --plot-days 7 shows nothing of the trace de-2020"),
        "{}",
        stderr(&out)
    );
    assert!(!chart.exists(), "no empty chart is written");
}
