//! [`Replay::prepare`]: the actual trace, the generated jobs and the checks that a replay can be
//! scored on the trace.

use super::*;

fn span_of(series: &Series) -> Option<Span> {
    Some(Span {
        from: series.first()?,
        to: series.last_end()?,
    })
}

impl Replay {
    /// Builds the actual trace from `points` (read from `trace_name`) and generates the jobs.
    pub fn prepare(
        trace_name: &str,
        points: Vec<Point>,
        spec: &ScenarioSpec,
        options: Options,
    ) -> Result<Replay, ReplayError> {
        options.validate()?;
        let too_long = |flag: &str, d: TimeDelta| {
            (d > MAX_SHIFT || d < TimeDelta::zero()).then(|| {
                ReplayError::Option(format!(
                    "{flag} must be between 0 and {}, not {}",
                    format_duration(MAX_SHIFT),
                    format_duration(d)
                ))
            })
        };
        let shift_error = match spec {
            ScenarioSpec::Nightly { window, .. } => too_long("--window", *window),
            ScenarioSpec::Jobs { slack, .. } => too_long("--slack", *slack),
            ScenarioSpec::Ml { .. } => None,
        };
        if let Some(e) = shift_error {
            return Err(e);
        }
        let raw = Forecast::new(points)?;
        let raw_series = Series::from_forecast(&raw);
        let raw_span = span_of(&raw_series).ok_or(ReplayError::EmptyTrace(""))?;
        let no_full_year = || ReplayError::NoFullYear {
            from: at(raw_span.from),
            to: at(raw_span.to),
        };
        let year = match spec {
            ScenarioSpec::Nightly { year, .. } | ScenarioSpec::Ml { year, .. } => Some(
                year.or_else(|| scenario::first_full_year(raw_span))
                    .ok_or_else(no_full_year)?,
            ),
            ScenarioSpec::Jobs { .. } => None,
        };
        let (actual, series) = match (options.paper_compat, year) {
            (false, _) => (raw, raw_series),
            (true, None) => return Err(ReplayError::PaperCompatScenario),
            (true, Some(year)) => {
                let sampled = scenario::paper_sampling(raw.points(), year);
                if sampled.is_empty() {
                    return Err(ReplayError::EmptyTrace(
                        " at :00 or :30 from 1 January of the year (--paper-compat)",
                    ));
                }
                let sampled = Forecast::new(sampled)?;
                let series = Series::from_forecast(&sampled);
                (sampled, series)
            }
        };
        let span = span_of(&series).ok_or(ReplayError::EmptyTrace(""))?;
        let compat = options.paper_compat;
        let base_info = |name: &'static str, description: String| ScenarioInfo {
            name,
            description,
            window: None,
            year,
            deadline: None,
            seed: None,
            slack: None,
            start: None,
            source: None,
            interruptible: false,
            paper_compat: compat,
        };
        let (jobs, info) = match spec {
            ScenarioSpec::Nightly { window, .. } => {
                let year = year.unwrap_or_default();
                let w = format_duration(*window);
                (
                    scenario::nightly(span, year, *window, compat),
                    ScenarioInfo {
                        window: Some(w.clone()),
                        ..base_info(
                            "nightly",
                            format!("nightly: one 30-min job a day at 01:00 UTC ±{w}, {year}"),
                        )
                    },
                )
            }
            ScenarioSpec::Ml {
                rule,
                interruptible,
                count,
                seed,
                ..
            } => {
                let year = year.unwrap_or_default();
                let kind = if *interruptible {
                    "interruptible"
                } else {
                    "one block"
                };
                (
                    scenario::ml(span, year, *count, *seed, *rule, *interruptible, compat),
                    ScenarioInfo {
                        deadline: Some(rule.name()),
                        seed: Some(*seed),
                        interruptible: *interruptible,
                        ..base_info(
                            "ml",
                            format!(
                                "ml: 4-90 h training jobs on {year} workdays, {} deadlines, {kind}",
                                rule.name()
                            ),
                        )
                    },
                )
            }
            ScenarioSpec::Jobs {
                jobs,
                source,
                slack,
                start,
                interruptible,
            } => {
                let start = start.unwrap_or(at(span.from));
                let s = format_duration(*slack);
                (
                    scenario::from_trace(span, jobs, start, *slack, *interruptible),
                    ScenarioInfo {
                        slack: Some(s.clone()),
                        start: Some(start),
                        source: Some(source.clone()),
                        interruptible: *interruptible,
                        ..base_info("jobs", format!("jobs from {source}, slack {s}"))
                    },
                )
            }
        };
        if jobs.jobs.is_empty() {
            return Err(ReplayError::NoJobs {
                from: at(span.from),
                to: at(span.to),
            });
        }
        // Every policy runs inside [submission, deadline] (runNow at its run-now time, inside too).
        let from = jobs
            .jobs
            .iter()
            .map(|j| j.submitted_at)
            .min()
            .unwrap_or_default();
        let to = jobs
            .jobs
            .iter()
            .map(|j| j.deadline)
            .max()
            .unwrap_or_default();
        if let Some((a, b)) = series.gap_within(series::ms(from), series::ms(to)) {
            return Err(ReplayError::Gap {
                from: at(a),
                to: at(b),
            });
        }
        let trace = TraceInfo {
            name: trace_name.to_string(),
            from: at(span.from),
            to: at(span.to),
            mean_intensity: series.mean(),
        };
        Ok(Replay {
            actual,
            series,
            jobs,
            scenario: info,
            trace,
            options,
        })
    }
}
