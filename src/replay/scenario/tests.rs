//! Tests of the job sets, the deadline rules and the paper's sampling.

use super::*;
use crate::units::parse_timestamp;

fn t(s: &str) -> DateTime<Utc> {
    parse_timestamp(s).unwrap_or_else(|| panic!("bad test time {s}"))
}

#[test]
fn next_workday_rule_table() {
    // 2020-01-06 is a Monday; 2020-01-10 a Friday.
    let cases = [
        (
            "2020-01-07T12:00Z",
            "2020-01-07T12:00Z",
            "workday 09-17: no slack",
        ),
        (
            "2020-01-07T09:00Z",
            "2020-01-07T09:00Z",
            "09:00 itself: no slack",
        ),
        (
            "2020-01-07T17:00Z",
            "2020-01-07T17:00Z",
            "17:00 itself: no slack",
        ),
        (
            "2020-01-07T17:30Z",
            "2020-01-08T09:00Z",
            "after 17:00: next day 09:00",
        ),
        (
            "2020-01-07T08:30Z",
            "2020-01-07T09:00Z",
            "before 09:00: 09:00 that day",
        ),
        (
            "2020-01-07T00:00Z",
            "2020-01-07T09:00Z",
            "midnight: 09:00 that day",
        ),
        (
            "2020-01-10T17:30Z",
            "2020-01-11T09:00Z",
            "Friday evening: Saturday 09:00",
        ),
        (
            "2020-01-10T23:30Z",
            "2020-01-11T09:00Z",
            "Friday late: Saturday 09:00",
        ),
        (
            "2020-01-11T03:00Z",
            "2020-01-13T09:00Z",
            "Saturday early: Monday",
        ),
        (
            "2020-01-11T12:00Z",
            "2020-01-13T09:00Z",
            "Saturday: Monday 09:00",
        ),
        (
            "2020-01-11T20:00Z",
            "2020-01-13T09:00Z",
            "Saturday evening: Monday",
        ),
        (
            "2020-01-12T08:00Z",
            "2020-01-13T09:00Z",
            "Sunday: Monday 09:00",
        ),
        (
            "2020-01-12T23:30Z",
            "2020-01-13T09:00Z",
            "Sunday late: Monday 09:00",
        ),
        (
            "2020-01-13T06:00Z",
            "2020-01-13T09:00Z",
            "Monday early: 09:00",
        ),
    ];
    for (f, deadline, why) in cases {
        assert_eq!(
            DeadlineRule::NextWorkday.deadline(t(f)),
            t(deadline),
            "{why}"
        );
    }
}

#[test]
fn semi_weekly_rule_table() {
    // 2020-01-06 Monday .. 2020-01-12 Sunday.
    let cases = [
        (
            "2020-01-06T08:00Z",
            "2020-01-06T09:00Z",
            "Monday before 09:00: Monday 09:00",
        ),
        (
            "2020-01-06T09:00Z",
            "2020-01-06T09:00Z",
            "Monday 09:00: itself",
        ),
        (
            "2020-01-06T09:30Z",
            "2020-01-09T09:00Z",
            "Monday after 09:00: Thursday",
        ),
        (
            "2020-01-07T20:00Z",
            "2020-01-09T09:00Z",
            "Tuesday: Thursday",
        ),
        (
            "2020-01-08T12:00Z",
            "2020-01-09T09:00Z",
            "Wednesday: Thursday",
        ),
        (
            "2020-01-09T09:00Z",
            "2020-01-09T09:00Z",
            "Thursday 09:00: itself",
        ),
        (
            "2020-01-09T08:30Z",
            "2020-01-09T09:00Z",
            "Thursday before 09:00: Thursday",
        ),
        (
            "2020-01-09T09:30Z",
            "2020-01-13T09:00Z",
            "Thursday after 09:00: Monday",
        ),
        (
            "2020-01-10T12:00Z",
            "2020-01-13T09:00Z",
            "Friday: next Monday",
        ),
        (
            "2020-01-11T12:00Z",
            "2020-01-13T09:00Z",
            "Saturday: next Monday",
        ),
        (
            "2020-01-12T23:30Z",
            "2020-01-13T09:00Z",
            "Sunday: next Monday",
        ),
    ];
    for (f, deadline, why) in cases {
        assert_eq!(
            DeadlineRule::SemiWeekly.deadline(t(f)),
            t(deadline),
            "{why}"
        );
    }
}

fn span(from: &str, to: &str) -> Span {
    Span {
        from: t(from).timestamp_millis(),
        to: t(to).timestamp_millis(),
    }
}

#[test]
fn first_full_year_needs_both_ends() {
    assert_eq!(
        first_full_year(span("2019-12-20T00:00Z", "2021-01-10T00:00Z")),
        Some(2020)
    );
    assert_eq!(
        first_full_year(span("2020-01-01T00:00Z", "2021-01-01T00:00Z")),
        Some(2020)
    );
    assert_eq!(
        first_full_year(span("2020-01-01T00:15Z", "2021-06-01T00:00Z")),
        None
    );
    assert_eq!(
        first_full_year(span("2023-06-08T00:00Z", "2023-07-08T00:00Z")),
        None
    );
}

#[test]
fn nightly_jobs_exact_times_and_clipping() {
    let full = nightly(
        span("2019-12-20T00:00Z", "2021-01-10T00:00Z"),
        2020,
        TimeDelta::hours(8),
        false,
    );
    assert_eq!(full.jobs.len(), 366);
    assert_eq!(full.skipped, 0);
    let first = &full.jobs[0];
    assert_eq!(first.submitted_at, t("2019-12-31T17:00Z"));
    assert_eq!(first.run_now, t("2020-01-01T01:00Z"));
    assert_eq!(first.latest_start(), t("2020-01-01T09:00Z"));
    assert_eq!(first.deadline, t("2020-01-01T09:30Z"));
    assert_eq!(first.duration, TimeDelta::minutes(30));
    let last = &full.jobs[365];
    assert_eq!(last.run_now, t("2020-12-31T01:00Z"));
    assert!(full.jobs.iter().all(|j| !j.baseline_only));

    // A trace covering 2020-01-01 00:00 .. 2020-01-03 05:00: day 1 clipped at the start, day 3
    // at the end, days 4.. skipped.
    let short = nightly(
        span("2020-01-01T00:00Z", "2020-01-03T05:00Z"),
        2020,
        TimeDelta::hours(8),
        false,
    );
    assert_eq!(short.jobs.len(), 3);
    assert_eq!(short.skipped, 363);
    assert_eq!(short.jobs[0].submitted_at, t("2020-01-01T00:00Z"));
    assert_eq!(short.jobs[0].latest_start(), t("2020-01-01T09:00Z"));
    assert_eq!(short.jobs[2].submitted_at, t("2020-01-02T17:00Z"));
    assert_eq!(short.jobs[2].latest_start(), t("2020-01-03T04:30Z"));
    assert_eq!(short.jobs[2].deadline, t("2020-01-03T05:00Z"));

    let paper = nightly(
        span("2020-01-01T00:00Z", "2021-01-10T00:00Z"),
        2020,
        TimeDelta::hours(2),
        true,
    );
    assert_eq!(paper.jobs.len(), 365);
    assert_eq!(paper.jobs[364].run_now, t("2020-12-30T01:00Z"));
    assert!(paper.jobs[0].baseline_only);
    assert!(paper.jobs[1..].iter().all(|j| !j.baseline_only));
}

#[test]
fn ml_job_set_follows_the_papers_procedure() {
    let set = ml_job_set(2020, ML_JOBS, 0);
    assert_eq!(set.len(), ML_JOBS);
    assert_eq!(set, ml_job_set(2020, ML_JOBS, 0), "deterministic");
    assert_ne!(set, ml_job_set(2020, ML_JOBS, 1), "seeded");
    for w in set.windows(2) {
        assert!(w[0].0 <= w[1].0, "submission order");
    }
    let mut durations = std::collections::BTreeSet::new();
    let mut times = std::collections::BTreeSet::new();
    for (s, d) in &set {
        assert_eq!(s.year(), 2020);
        assert!(s.weekday().num_days_from_monday() < 5, "{s} is a workday");
        let minutes = s.hour() * 60 + s.minute();
        assert!((540..=990).contains(&minutes) && minutes % 30 == 0, "{s}");
        let m = d.num_minutes();
        assert!((240..=5370).contains(&m) && m % 30 == 0, "{m}");
        assert_eq!(d.num_seconds() % 60, 0);
        durations.insert(m);
        times.insert(minutes);
    }
    assert_eq!(times.len(), 16, "every submission slot 09:00..16:30 occurs");
    assert!(
        durations.len() > 150,
        "durations spread over the 172 values"
    );
}

#[test]
fn ml_deadlines_never_before_the_finish_and_paper_slot() {
    let trace = span("2019-12-20T00:00Z", "2021-01-10T00:00Z");
    let set = ml(trace, 2020, 500, 7, DeadlineRule::NextWorkday, false, false);
    assert_eq!(set.jobs.len(), 500);
    for j in &set.jobs {
        assert!(j.latest_start() >= j.submitted_at);
        assert_eq!(
            j.deadline,
            DeadlineRule::NextWorkday.deadline(j.submitted_at + j.duration)
        );
        assert_eq!(j.run_now_alt, None);
    }
    let paper = ml(trace, 2020, 500, 7, DeadlineRule::NextWorkday, false, true);
    for (a, b) in set.jobs.iter().zip(&paper.jobs) {
        assert_eq!(b.deadline, a.deadline + TimeDelta::minutes(30));
        assert_eq!(b.run_now_alt, Some(a.submitted_at + TimeDelta::minutes(30)));
    }
}

#[test]
fn job_trace_parsing_errors_name_the_line() {
    let ok = parse_jobs("arrival_time,length,cpus\n0.0,60,1\n# c\n\n30,1.5,2\n");
    assert_eq!(
        ok,
        Ok(vec![
            TraceJob {
                arrival_seconds: 0.0,
                length_seconds: 60.0
            },
            TraceJob {
                arrival_seconds: 30.0,
                length_seconds: 1.5
            }
        ])
    );
    let cases: Vec<(&str, JobsError)> = vec![
        ("", JobsError::Empty),
        (
            "arrival,length\n1,2\n",
            JobsError::MissingColumn {
                name: "arrival_time",
                available: "arrival,length".into(),
            },
        ),
        ("arrival_time,length\n", JobsError::NoRows),
        (
            "arrival_time,length\n1,2\n3\n",
            JobsError::ShortRow {
                line: 3,
                found: 1,
                column: "length",
                needed: 2,
            },
        ),
        (
            "arrival_time,length\n1,2\nsoon,2\n",
            JobsError::BadNumber {
                line: 3,
                column: "arrival_time",
                value: "soon".into(),
            },
        ),
        (
            "arrival_time,length\n-5,2\n",
            JobsError::OutOfRange {
                line: 2,
                column: "arrival_time",
                value: -5.0,
                expected: "0 or more seconds, below 1e9",
            },
        ),
        (
            "arrival_time,length\n5,0\n",
            JobsError::OutOfRange {
                line: 2,
                column: "length",
                value: 0.0,
                expected: "at least 1 ms, below 1e9 seconds",
            },
        ),
    ];
    for (text, error) in cases {
        assert_eq!(parse_jobs(text), Err(error), "{text:?}");
    }
    assert!(matches!(
        parse_jobs("arrival_time,length\n5,NaN\n"),
        Err(JobsError::OutOfRange { line: 2, .. })
    ));
}

#[test]
fn trace_jobs_count_from_start_and_clip_to_the_trace() {
    let jobs = [
        TraceJob {
            arrival_seconds: 3_600.0,
            length_seconds: 1_800.0,
        },
        TraceJob {
            arrival_seconds: 0.0,
            length_seconds: 7_200.0,
        },
        TraceJob {
            arrival_seconds: 86_000.0,
            length_seconds: 1_000.0,
        },
    ];
    let set = from_trace(
        span("2020-01-01T00:00Z", "2020-01-01T12:00Z"),
        &jobs,
        t("2020-01-01T00:00Z"),
        TimeDelta::hours(24),
        false,
    );
    assert_eq!(set.skipped, 1);
    assert_eq!(set.jobs.len(), 2);
    assert_eq!(set.jobs[0].submitted_at, t("2020-01-01T00:00Z"));
    assert_eq!(set.jobs[0].deadline, t("2020-01-01T12:00Z"), "clipped");
    assert_eq!(set.jobs[1].submitted_at, t("2020-01-01T01:00Z"));
    assert_eq!(set.jobs[1].duration, TimeDelta::minutes(30));
}

#[test]
fn paper_sampling_keeps_half_hours_from_the_cut() {
    let p = |s: &str| Point {
        start: t(s),
        intensity: 1.0,
    };
    let points = vec![
        p("2019-12-31T23:30Z"),
        p("2020-01-01T00:00Z"),
        p("2020-01-01T00:15Z"),
        p("2020-01-01T00:30Z"),
        p("2020-01-01T00:45Z"),
    ];
    let kept: Vec<_> = paper_sampling(&points, 2020)
        .iter()
        .map(|p| p.start)
        .collect();
    assert_eq!(kept, vec![t("2020-01-01T00:00Z"), t("2020-01-01T00:30Z")]);
}
