//! [`Replay::run`]: every selected policy over the jobs, scored on the actual trace; the planner
//! policies over all noise seeds, in parallel.

use super::*;

/// One noise seed of a planner policy.
#[derive(Debug)]
struct SeedResult {
    k: u32,
    free: Score,
    capped: Option<Score>,
    overflow: usize,
    fallbacks: usize,
    plans: usize,
    tally: OperatorTally,
    runs: Option<Runs>,
}

impl Replay {
    /// Runs every selected policy and scores it. `progress` receives units of [`Replay::work`].
    pub fn run(&self, progress: &mut dyn FnMut(u64)) -> Result<Outcome, ReplayError> {
        let jobs = self.jobs();
        let power = &self.options.power;
        let run_now = policy::run_now(&self.series, jobs);
        let base = score(&self.series, jobs, &run_now, power);
        let baseline = base.emissions_grams;
        let simple = |s: Score, rule: String| PolicyReport {
            savings_percent: savings_percent(baseline, s.emissions_grams),
            emissions_grams: s.emissions_grams,
            deadline_misses: s.deadline_misses,
            peak_concurrency: s.peak_concurrency,
            seeds: None,
            overflow_jobs: None,
            uncapped: None,
            planning_calls: None,
            fallbacks: 0,
            operator: None,
            rule,
        };
        let mut policies = Policies {
            run_now: simple(base, self.run_now_rule()),
            threshold: None,
            carbonshift: None,
            carbonshift_replan: None,
            oracle: None,
        };
        let p = self.options.policies;
        if p.threshold {
            let runs = policy::threshold(&self.series, jobs, self.options.threshold);
            progress(self.shifted_jobs());
            let rule = match self.options.threshold {
                Some(t) => format!(
                    "start at the first moment the measured intensity is at or below {t} g/kWh, else at the latest start"
                ),
                None => "start at the first moment the measured intensity is at or below the 25th percentile of the previous 7 days, else at the latest start".to_string(),
            };
            policies.threshold = Some(simple(score(&self.series, jobs, &runs, power), rule));
        }
        let mut planned = None;
        let mut oracle_grams = None;
        if p.oracle {
            let runs: Runs = jobs
                .iter()
                .map(|j| {
                    (!j.baseline_only)
                        .then(|| oracle::best(&self.series, &j.with_margin(self.options.margin)))
                })
                .collect();
            progress(self.shifted_jobs());
            let s = score(&self.series, jobs, &runs, power);
            oracle_grams = Some(s.emissions_grams);
            policies.oracle = Some(simple(
                s,
                format!(
                    "brute-force optimum on the actual trace (perfect foresight, no cap), finishing {} before the deadline like the operator",
                    format_duration(self.options.margin)
                ),
            ));
        }
        if p.carbonshift {
            let (report, runs) = self.planner_policy(None, baseline, progress)?;
            policies.carbonshift = Some(report);
            planned = Some(runs);
        }
        if p.replan {
            let (report, runs) =
                self.planner_policy(Some(self.options.replan), baseline, progress)?;
            policies.carbonshift_replan = Some(report);
            planned.get_or_insert(runs);
        }
        let ours = policies
            .carbonshift
            .as_ref()
            .or(policies.carbonshift_replan.as_ref());
        // Comparable only where both see the actual trace without limits.
        let exact = !self.options.noisy()
            && self.options.horizon.is_none()
            && self.options.capacity.is_none();
        let carbonshift_vs_oracle = match (ours, oracle_grams) {
            (Some(c), Some(o)) if exact && o > 0.0 => Some((c.emissions_grams - o) / o),
            _ => None,
        };
        let f = &self.options;
        let report = Report {
            scenario: self.scenario.clone(),
            jobs: jobs.len(),
            skipped_jobs: self.jobs.skipped,
            trace: self.trace.clone(),
            forecast: ForecastInfo {
                error: f.error,
                error_model: if f.noisy() {
                    f.error_model.name()
                } else {
                    "perfect"
                },
                sigma: self.sigma(),
                seeds: self.seeds(),
                horizon: f.horizon.map(format_duration),
                replan: format_duration(f.replan),
            },
            power: PowerInfo {
                watts: power.watts(),
                pue: power.pue(),
                model: format!(
                    "constant {} W IT power per running job × PUE {}; emissions gCO2eq = kWh × g/kWh of the actual trace",
                    power.watts(),
                    power.pue()
                ),
            },
            capacity: f.capacity,
            policies,
            carbonshift_vs_oracle,
        };
        Ok(Outcome {
            report,
            run_now,
            planned,
        })
    }

    fn run_now_rule(&self) -> String {
        let mut rule = match self.scenario.name {
            "nightly" => "start at 01:00 as scheduled (no shifting)".to_string(),
            _ => "start at submission (no shifting)".to_string(),
        };
        if self.options.paper_compat && self.scenario.name == "ml" {
            rule.push_str("; as in the paper, at submission or 30 min later, whichever is cheaper");
        }
        rule
    }

    /// One noise seed of a planner policy: uncapped, and capped when a cap is set.
    fn one_seed(
        &self,
        k: u32,
        replan: Option<TimeDelta>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<SeedResult, ReplayError> {
        let o = &self.options;
        let jobs = self.jobs();
        let sigma = self.sigma();
        let noisy_forecast;
        let source = if !o.noisy() {
            Source::Fixed(&self.actual)
        } else {
            match o.error_model {
                ErrorModel::Constant => {
                    noisy_forecast = noise::constant(
                        self.actual.points(),
                        sigma,
                        &mut noise::rng(o.seed, 1 + u64::from(k)),
                    )?;
                    Source::Fixed(&noisy_forecast)
                }
                ErrorModel::LeadTime => Source::LeadTime {
                    actual: &self.series,
                    step: self.actual.median_step(),
                    sigma,
                    seed: o.seed,
                    k,
                },
            }
        };
        let operator = operator::carbonshift(
            jobs,
            source,
            &OperatorConfig {
                refresh: replan,
                horizon: o.horizon,
                margin: o.margin,
                power: o.power,
            },
            progress,
        )?;
        let free = operator.run;
        let mut result = SeedResult {
            k,
            free: score(&self.series, jobs, &free.runs, &o.power),
            capped: None,
            overflow: 0,
            fallbacks: free.fallbacks,
            plans: 0,
            tally: operator.tally,
            runs: None,
        };
        let mut keep = free.runs;
        if o.capacity.is_some() {
            let config = PlanConfig {
                replan,
                horizon: o.horizon,
                capacity: o.capacity,
                margin: o.margin,
            };
            let capped = policy::capped(jobs, source, &config, progress)?;
            result.capped = Some(score(&self.series, jobs, &capped.runs, &o.power));
            result.overflow = capped.overflow;
            result.fallbacks = capped.fallbacks;
            result.plans = capped.plans;
            keep = capped.runs;
        }
        // Only seed 0's runs are kept (for the chart).
        if k == 0 {
            result.runs = Some(keep);
        }
        Ok(result)
    }

    /// [`Replay::one_seed`] for every seed, on up to `options.threads` threads. The result does
    /// not depend on the number of threads: seeds are independent and aggregated in order.
    fn seeds_in_parallel(
        &self,
        replan: Option<TimeDelta>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<SeedResult>, ReplayError> {
        let seeds = self.seeds();
        let threads = self.options.threads.clamp(1, seeds as usize);
        if threads == 1 {
            return (0..seeds)
                .map(|k| self.one_seed(k, replan, progress))
                .collect();
        }
        let next = AtomicU32::new(0);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<u64>();
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let tx = tx.clone();
                    let next = &next;
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            if k >= seeds {
                                break;
                            }
                            let result = self.one_seed(k, replan, &mut |n| {
                                // The receiver lives until every worker is done.
                                let _ = tx.send(n);
                            });
                            let failed = result.is_err();
                            out.push(result);
                            if failed {
                                break;
                            }
                        }
                        out
                    })
                })
                .collect();
            drop(tx);
            for n in rx {
                progress(n);
            }
            let mut all = Vec::new();
            for handle in handles {
                match handle.join() {
                    Ok(results) => all.extend(results),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            all.into_iter().collect()
        })
    }

    /// Runs `carbonshift` (`replan: None`) or `carbonshiftReplan` over all seeds, capped and
    /// uncapped.
    fn planner_policy(
        &self,
        replan: Option<TimeDelta>,
        baseline: f64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(PolicyReport, Runs), ReplayError> {
        let o = &self.options;
        let seeds = self.seeds();
        let mut results = self.seeds_in_parallel(replan, progress)?;
        results.sort_by_key(|r| r.k);
        let free_scores: Vec<Score> = results.iter().map(|r| r.free).collect();
        let capped_scores: Vec<Score> = results.iter().filter_map(|r| r.capped).collect();
        let overflow: usize = results.iter().map(|r| r.overflow).sum();
        let fallbacks: usize = results.iter().map(|r| r.fallbacks).sum();
        let plans: usize = results.iter().map(|r| r.plans).sum();
        let mut tally = OperatorTally::default();
        for r in &results {
            tally.add(&r.tally);
        }
        let operator = Some(OperatorReport {
            decisions: tally.decisions,
            releases: tally
                .releases
                .iter()
                .map(|(reason, n)| ((*reason).to_string(), *n))
                .collect(),
            pauses: tally.pauses,
        });
        let first_runs = results.into_iter().find_map(|r| r.runs);
        let aggregate = |scores: &[Score]| {
            let n = scores.len().max(1) as f64;
            let mean = scores.iter().map(|s| s.emissions_grams).sum::<f64>() / n;
            let misses = scores.iter().map(|s| s.deadline_misses).sum::<usize>();
            let peak = scores.iter().map(|s| s.peak_concurrency).max().unwrap_or(0);
            let each: Vec<f64> = scores
                .iter()
                .map(|s| savings_percent(baseline, s.emissions_grams))
                .collect();
            (mean, misses, peak, each)
        };
        let (free_mean, free_misses, free_peak, free_each) = aggregate(&free_scores);
        let spread = |each: &[f64]| {
            (seeds > 1).then(|| SeedSpread {
                count: seeds,
                savings_percent_min: each.iter().copied().fold(f64::INFINITY, f64::min),
                savings_percent_max: each.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            })
        };
        let mut rule = match replan {
            None => "the operator's state machine (lifecycle::decide), the forecast made once at submission".to_string(),
            Some(r) => format!(
                "the operator's state machine (lifecycle::decide), re-planning each waiting job at every forecast refresh (every {})",
                format_duration(r)
            ),
        };
        rule.push_str(&format!(
            "; margin {}, deadline rule, interruptible jobs paused and resumed between windows",
            format_duration(o.margin)
        ));
        let report = if o.capacity.is_some() {
            let (mean, misses, peak, each) = aggregate(&capped_scores);
            rule.push_str(
                "; capped figures from the planner level (plan_with_capacity over one ledger, overflow only to keep a deadline): the operator has no cap yet",
            );
            PolicyReport {
                savings_percent: savings_percent(baseline, mean),
                emissions_grams: mean,
                deadline_misses: misses + free_misses,
                peak_concurrency: peak,
                seeds: spread(&each),
                overflow_jobs: Some(overflow as f64 / f64::from(seeds)),
                uncapped: Some(Uncapped {
                    savings_percent: savings_percent(baseline, free_mean),
                    emissions_grams: free_mean,
                    peak_concurrency: free_peak,
                }),
                planning_calls: Some(plans),
                fallbacks,
                operator,
                rule,
            }
        } else {
            PolicyReport {
                savings_percent: savings_percent(baseline, free_mean),
                emissions_grams: free_mean,
                deadline_misses: free_misses,
                peak_concurrency: free_peak,
                seeds: spread(&free_each),
                overflow_jobs: None,
                uncapped: None,
                planning_calls: None,
                fallbacks,
                operator,
                rule,
            }
        };
        Ok((report, first_runs.unwrap_or_default()))
    }
}
