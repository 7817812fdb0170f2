//! The replayed job sets: Scenario I of "Let's Wait Awhile" (one nightly job a day), Scenario II
//! (3,387 ML training jobs with workday deadline rules) and job traces from a file; plus the
//! paper's deadline rules and its trace sampling for `--paper-compat`.
//!
//! Every generator is a pure, deterministic function of its inputs (the ML job set of its seed).
//! Jobs that cannot be scored on the trace (their run-now time lies outside it) are left out and
//! counted; windows that reach past the trace are clipped to it.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc, Weekday};
use rand::Rng;
use serde::Serialize;
use thiserror::Error;

use crate::planner::{Constraints, Point};

use super::noise::rng;

/// One job to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Index in the job set.
    pub id: usize,
    /// When the scheduler learns of the job (and may first start it).
    pub submitted_at: DateTime<Utc>,
    /// Run time it needs.
    pub duration: TimeDelta,
    /// When it must have finished: the latest start is `deadline − duration`.
    pub deadline: DateTime<Utc>,
    /// Whether it may pause and resume.
    pub interruptible: bool,
    /// When the no-shifting baseline (`runNow`) starts it.
    pub run_now: DateTime<Utc>,
    /// `--paper-compat` only: a second start the paper's baseline may pick instead (the cheaper
    /// of the two on the actual trace).
    pub run_now_alt: Option<DateTime<Utc>>,
    /// `--paper-compat` only: the paper skips this job in shifted runs but keeps it in the
    /// baseline.
    pub baseline_only: bool,
}

impl Job {
    /// `deadline − duration`.
    pub fn latest_start(&self) -> DateTime<Utc> {
        self.deadline - self.duration
    }

    /// The job as the operator plans it with a safety margin: it must finish `margin` before its
    /// deadline, or at once when that leaves no time. What the oracle is given, so that it is the
    /// optimum under the operator's own constraints.
    pub fn with_margin(&self, margin: TimeDelta) -> Job {
        Job {
            deadline: (self.deadline - margin).max(self.submitted_at + self.duration),
            ..self.clone()
        }
    }

    /// The planner's view of the job: `duration` of run time between submission and deadline.
    pub fn constraints(&self) -> Constraints {
        self.constraints_for(self.duration)
    }

    /// The job still needing `remaining` run time (an interruptible job that ran partly), with the
    /// same deadline.
    pub fn constraints_for(&self, remaining: TimeDelta) -> Constraints {
        let c = Constraints::new(self.submitted_at, remaining).with_deadline(self.deadline);
        if self.interruptible {
            c.interruptible()
        } else {
            c
        }
    }
}

/// Scenario II's deadline rules, as the paper's code computes them from the time `F` at which the
/// job would finish if started at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DeadlineRule {
    /// `F` on a workday between 09:00 and 17:00 → `F`; before 09:00 → 09:00 that day; after 17:00
    /// → 09:00 the next day (so Friday evening → Saturday 09:00, as in the paper); Saturday or
    /// Sunday → Monday 09:00.
    NextWorkday,
    /// `F` after Monday 09:00 and up to Thursday 09:00 → Thursday 09:00; otherwise the next Monday
    /// 09:00 at or after `F`.
    SemiWeekly,
}

impl DeadlineRule {
    /// The deadline for a job that would finish at `f` if run at once.
    pub fn deadline(self, f: DateTime<Utc>) -> DateTime<Utc> {
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default();
        let five = NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default();
        let date = f.date_naive();
        let on = |d: NaiveDate| d.and_time(nine).and_utc();
        let time = f.time();
        match self {
            DeadlineRule::NextWorkday => match f.weekday() {
                Weekday::Sat => on(date + TimeDelta::days(2)),
                Weekday::Sun => on(date + TimeDelta::days(1)),
                _ if time > five => on(date + TimeDelta::days(1)),
                _ if time < nine => on(date),
                _ => f,
            },
            DeadlineRule::SemiWeekly => {
                let monday = date - TimeDelta::days(i64::from(f.weekday().num_days_from_monday()));
                let mon9 = on(monday);
                let thu9 = on(monday + TimeDelta::days(3));
                if f <= mon9 {
                    mon9
                } else if f <= thu9 {
                    thu9
                } else {
                    on(monday + TimeDelta::days(7))
                }
            }
        }
    }

    /// The flag value (`next-workday`, `semi-weekly`).
    pub fn name(self) -> &'static str {
        match self {
            DeadlineRule::NextWorkday => "next-workday",
            DeadlineRule::SemiWeekly => "semi-weekly",
        }
    }
}

/// The time span a trace covers: `[from, to)` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First instant covered.
    pub from: i64,
    /// First instant after the trace.
    pub to: i64,
}

impl Span {
    fn contains(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
        a.timestamp_millis() >= self.from && b.timestamp_millis() <= self.to
    }
}

fn date_start(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc()
}

fn year_start(year: i32) -> Option<DateTime<Utc>> {
    NaiveDate::from_ymd_opt(year, 1, 1).map(date_start)
}

/// The first calendar year `span` covers completely.
pub fn first_full_year(span: Span) -> Option<i32> {
    let from = super::series::at(span.from);
    let mut year = from.year();
    if year_start(year).is_none_or(|s| s < from) {
        year += 1;
    }
    let end = year_start(year + 1)?;
    (end.timestamp_millis() <= span.to).then_some(year)
}

/// Jobs generated for a scenario, and how many could not be scored on the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSet {
    /// The jobs, in submission order.
    pub jobs: Vec<Job>,
    /// Generated jobs left out because their run-now time lies outside the trace.
    pub skipped: usize,
}

/// Scenario I: one 30-minute job for each day of `year`, run-now at 01:00, submitted at
/// `01:00 − window` with latest start `01:00 + window`, the window clipped to the trace.
///
/// With `paper_compat`, as the paper's simulator does it: 365 days from 1 January, and jobs whose
/// window would begin before 1 January 00:00 are kept in the baseline only.
pub fn nightly(span: Span, year: i32, window: TimeDelta, paper_compat: bool) -> JobSet {
    let duration = TimeDelta::minutes(30);
    let mut out = JobSet {
        jobs: Vec::new(),
        skipped: 0,
    };
    let Some(first) = NaiveDate::from_ymd_opt(year, 1, 1) else {
        return out;
    };
    let cut = date_start(first);
    let days = if paper_compat {
        365
    } else {
        if first.leap_year() { 366 } else { 365 }
    };
    for day in 0..days {
        let run_now = date_start(first + TimeDelta::days(day)) + TimeDelta::hours(1);
        if !span.contains(run_now, run_now + duration) {
            out.skipped += 1;
            continue;
        }
        let trace_from = super::series::at(span.from);
        let trace_to = super::series::at(span.to);
        let submitted_at = (run_now - window).max(trace_from);
        let latest = (run_now + window).min(trace_to - duration);
        out.jobs.push(Job {
            id: out.jobs.len(),
            submitted_at,
            duration,
            deadline: latest + duration,
            interruptible: false,
            run_now,
            run_now_alt: None,
            baseline_only: paper_compat && run_now - window < cut,
        });
    }
    out
}

/// Number of jobs in Scenario II.
pub const ML_JOBS: usize = 3_387;

/// Scenario II's job set: `count` jobs on the workdays (Monday to Friday) of `year`, counts per
/// day multinomial (each job picks a day uniformly), submission times uniform on 09:00..16:30 in
/// 30-minute steps (sorted within a day), durations uniform on 240..5370 minutes in 30-minute
/// steps. The paper's procedure, drawn from ChaCha8 seeded with `seed` (not numpy's sequence).
/// Returns `(submission, duration)` pairs in submission order.
pub fn ml_job_set(year: i32, count: usize, seed: u64) -> Vec<(DateTime<Utc>, TimeDelta)> {
    let mut rng = rng(seed, 0);
    let Some(first) = NaiveDate::from_ymd_opt(year, 1, 1) else {
        return Vec::new();
    };
    let days: Vec<NaiveDate> = first
        .iter_days()
        .take_while(|d| d.year() == year)
        .filter(|d| d.weekday().num_days_from_monday() < 5)
        .collect();
    if days.is_empty() {
        return Vec::new();
    }
    let mut per_day = vec![0usize; days.len()];
    for _ in 0..count {
        per_day[rng.random_range(0..days.len())] += 1;
    }
    let mut submissions = Vec::with_capacity(count);
    for (day, &n) in days.iter().zip(&per_day) {
        let mut slots: Vec<i64> = (0..n).map(|_| rng.random_range(0..16)).collect();
        slots.sort_unstable();
        for slot in slots {
            submissions.push(date_start(*day) + TimeDelta::minutes(9 * 60 + 30 * slot));
        }
    }
    submissions
        .into_iter()
        .map(|s| (s, TimeDelta::minutes(240 + 30 * rng.random_range(0..172))))
        .collect()
}

/// Scenario II: the ML job set with deadlines by `rule`. No job may finish after its deadline.
///
/// With `paper_compat`, as the paper's code does it: each window holds one extra 30-minute slot
/// (a job may finish 30 minutes after the rule's deadline) and the baseline may start at
/// submission or 30 minutes later, whichever is cheaper.
pub fn ml(
    span: Span,
    year: i32,
    count: usize,
    seed: u64,
    rule: DeadlineRule,
    interruptible: bool,
    paper_compat: bool,
) -> JobSet {
    let mut out = JobSet {
        jobs: Vec::new(),
        skipped: 0,
    };
    let slot = TimeDelta::minutes(30);
    for (submitted_at, duration) in ml_job_set(year, count, seed) {
        let mut deadline = rule.deadline(submitted_at + duration);
        if paper_compat {
            deadline += slot;
        }
        if !span.contains(submitted_at, submitted_at + duration) {
            out.skipped += 1;
            continue;
        }
        let deadline = deadline.min(super::series::at(span.to));
        out.jobs.push(Job {
            id: out.jobs.len(),
            submitted_at,
            duration,
            deadline,
            interruptible,
            run_now: submitted_at,
            run_now_alt: (paper_compat && submitted_at + slot + duration <= deadline)
                .then_some(submitted_at + slot),
            baseline_only: false,
        });
    }
    out
}

/// The built-in job trace: 1,000 jobs of Alibaba's PAI GPU cluster trace (via the GAIA project,
/// MIT), one week of arrivals; used by `--scenario jobs` without `--jobs`.
pub const BUILTIN_JOBS: &str = include_str!("../../data/jobs/gaia_pai_1k_jobs.csv");

/// How [`BUILTIN_JOBS`] is named in reports.
pub const BUILTIN_JOBS_NAME: &str = "data/jobs/gaia_pai_1k_jobs.csv (built in)";

/// One row of a job trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceJob {
    /// Arrival, seconds after the replay's start.
    pub arrival_seconds: f64,
    /// Run time, seconds.
    pub length_seconds: f64,
}

/// Why a job trace could not be read. Line numbers count from 1 and include the header.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum JobsError {
    /// No header line.
    #[error("the job trace is empty: expected a header with arrival_time and length")]
    Empty,
    /// A required column is missing from the header.
    #[error("line 1: no column named {name:?}; the header has {available}")]
    MissingColumn {
        /// The column.
        name: &'static str,
        /// The header's columns.
        available: String,
    },
    /// A header but no rows.
    #[error("the job trace has a header but no jobs")]
    NoRows,
    /// A row without the needed field.
    #[error("line {line}: {found} field(s), but {column} is in column {needed}")]
    ShortRow {
        /// Line number.
        line: usize,
        /// Fields on the line.
        found: usize,
        /// The column.
        column: &'static str,
        /// Its 1-based index.
        needed: usize,
    },
    /// A field that is not a number.
    #[error("line {line}: {column} {value:?} is not a number of seconds")]
    BadNumber {
        /// Line number.
        line: usize,
        /// The column.
        column: &'static str,
        /// The field.
        value: String,
    },
    /// A negative arrival or a length that is not positive (or values that are not finite).
    #[error("line {line}: {column} {value} is out of range ({expected})")]
    OutOfRange {
        /// Line number.
        line: usize,
        /// The column.
        column: &'static str,
        /// The value.
        value: f64,
        /// What is allowed.
        expected: &'static str,
    },
}

/// Parses a job trace: CSV with a header naming `arrival_time` and `length` (seconds; other
/// columns are ignored). Blank lines and `#` comments are skipped.
pub fn parse_jobs(text: &str) -> Result<Vec<TraceJob>, JobsError> {
    let mut lines = crate::trace::csv_lines(text);
    let (_, header) = lines.next().ok_or(JobsError::Empty)?;
    let names: Vec<&str> = header
        .split(',')
        .map(|f| f.trim().trim_matches('"'))
        .collect();
    let column = |name: &'static str| {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| JobsError::MissingColumn {
                name,
                available: names.join(","),
            })
    };
    let arrival = column("arrival_time")?;
    let length = column("length")?;
    let mut jobs = Vec::new();
    for (line, row) in lines {
        let fields: Vec<&str> = row.split(',').map(|f| f.trim().trim_matches('"')).collect();
        let read = |index: usize, column: &'static str| -> Result<f64, JobsError> {
            let value = fields.get(index).ok_or(JobsError::ShortRow {
                line,
                found: fields.len(),
                column,
                needed: index + 1,
            })?;
            value.parse::<f64>().map_err(|_| JobsError::BadNumber {
                line,
                column,
                value: value.to_string(),
            })
        };
        let a = read(arrival, "arrival_time")?;
        let l = read(length, "length")?;
        // A year of seconds bounds both: larger values are not a job trace.
        const LIMIT: f64 = 1e9;
        if !a.is_finite() || !(0.0..LIMIT).contains(&a) {
            return Err(JobsError::OutOfRange {
                line,
                column: "arrival_time",
                value: a,
                expected: "0 or more seconds, below 1e9",
            });
        }
        if !l.is_finite() || !(0.001..LIMIT).contains(&l) {
            return Err(JobsError::OutOfRange {
                line,
                column: "length",
                value: l,
                expected: "at least 1 ms, below 1e9 seconds",
            });
        }
        jobs.push(TraceJob {
            arrival_seconds: a,
            length_seconds: l,
        });
    }
    if jobs.is_empty() {
        return Err(JobsError::NoRows);
    }
    Ok(jobs)
}

fn seconds(s: f64) -> TimeDelta {
    // Parsed values are finite and below 1e9 s, so the cast is exact to the millisecond.
    TimeDelta::milliseconds((s * 1_000.0).round() as i64)
}

/// Jobs from a trace: each arrives `arrival_time` after `start`, may start up to `slack` later,
/// and runs `length` (in one block, or in pieces before `arrival + slack + length` when
/// `interruptible`). Deadlines are clipped to the trace; jobs that cannot run inside it are left
/// out and counted.
pub fn from_trace(
    span: Span,
    jobs: &[TraceJob],
    start: DateTime<Utc>,
    slack: TimeDelta,
    interruptible: bool,
) -> JobSet {
    let mut order: Vec<(DateTime<Utc>, TimeDelta)> = jobs
        .iter()
        .map(|j| {
            (
                start + seconds(j.arrival_seconds),
                seconds(j.length_seconds),
            )
        })
        .collect();
    order.sort_by_key(|&(a, _)| a);
    let mut out = JobSet {
        jobs: Vec::new(),
        skipped: 0,
    };
    for (submitted_at, duration) in order {
        if !span.contains(submitted_at, submitted_at + duration) {
            out.skipped += 1;
            continue;
        }
        let deadline = (submitted_at + slack + duration).min(super::series::at(span.to));
        out.jobs.push(Job {
            id: out.jobs.len(),
            submitted_at,
            duration,
            deadline,
            interruptible,
            run_now: submitted_at,
            run_now_alt: None,
            baseline_only: false,
        });
    }
    out
}

/// The paper's view of a trace: only the values at :00 and :30, from 1 January of `year` at
/// 00:00 on.
pub fn paper_sampling(points: &[Point], year: i32) -> Vec<Point> {
    let Some(cut) = year_start(year) else {
        return Vec::new();
    };
    points
        .iter()
        .filter(|p| {
            p.start >= cut
                && p.start.minute() % 30 == 0
                && p.start.second() == 0
                && p.start.nanosecond() == 0
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests;
