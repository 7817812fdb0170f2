//! Carbon budgets, evaluated: given a namespace's CarbonBudgets, its CarbonLedgers and `now`,
//! what is used this calendar month (UTC), whether a limit is reached, what new deferrable work
//! gets ([`verdict`]) and the budget's status ([`status`]). Pure: no client, no clock; the
//! webhook calls [`verdict`] with its watch caches, the budget controller calls [`status`].
//!
//! What counts: the ledgers' estimated figures of the month (`emittedGrams`, `energyKwh` of the
//! month's entry, that is of workloads that *finished* this month), of every ledger of the
//! namespace, or only of the forecasts in `spec.forecasts`. A limit is reached when what is used
//! is at least the limit (so a limit of 0 is reached at once).

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::api::Condition;
use crate::api::budget::{BudgetAction, CarbonBudgetSpec, CarbonBudgetStatus};
use crate::api::condition::upsert;
use crate::api::ledger::CarbonLedgerStatus;
use crate::note::{Note, NoteKind};

/// The condition type carbonshift sets on a budget.
pub const EXHAUSTED: &str = "Exhausted";
/// Reason of `Exhausted=True`, and of the Warning Event when a budget becomes exhausted.
pub const LIMIT_REACHED: &str = "LimitReached";
/// Reason of `Exhausted=False`.
pub const WITHIN_BUDGET: &str = "WithinBudget";
/// Reason of the Warning Event published when a budget becomes exhausted.
pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";

/// One budget, as the evaluation reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget<'a> {
    /// The CarbonBudget's name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a CarbonBudgetSpec,
}

/// One ledger of the namespace, as the evaluation reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ledger<'a> {
    /// The CarbonForecast whose workloads it adds up.
    pub forecast: &'a str,
    /// Its totals.
    pub status: &'a CarbonLedgerStatus,
}

/// A calendar month (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `YYYY-MM`.
    pub month: String,
    /// Its first instant.
    pub start: DateTime<Utc>,
    /// The first instant of the next month: when budgets reset.
    pub resets_at: DateTime<Utc>,
}

/// The calendar month (UTC) `now` is in.
pub fn period(now: DateTime<Utc>) -> Period {
    let (year, month) = (now.year(), now.month());
    let first = |y: i32, m: u32| {
        Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
            .single()
            .unwrap_or(now)
    };
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    Period {
        month: format!("{year:04}-{month:02}"),
        start: first(year, month),
        resets_at: first(next_year, next_month),
    }
}

/// Which limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// `gramsPerMonth`.
    Grams,
    /// `kwhPerMonth`.
    Kwh,
}

/// One budget evaluated at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The budget's name.
    pub name: String,
    /// Its action.
    pub action: BudgetAction,
    /// The month counted.
    pub period: Period,
    /// Emissions counted this month, gCO2eq.
    pub used_grams: f64,
    /// Energy counted this month, kWh.
    pub used_kwh: f64,
    /// `spec.gramsPerMonth`.
    pub limit_grams: Option<f64>,
    /// `spec.kwhPerMonth`.
    pub limit_kwh: Option<f64>,
    /// The limit reached, if any (emissions first when both are).
    pub reached: Option<Reached>,
}

fn grams(x: f64) -> String {
    format!("{x:.1} gCO2eq")
}

fn kwh(x: f64) -> String {
    format!("{x:.3} kWh")
}

fn percent(used: f64, limit: f64) -> String {
    if limit > 0.0 {
        format!(" ({:.0}%)", used / limit * 100.0)
    } else {
        String::new()
    }
}

impl Evaluation {
    /// Whether a limit is reached.
    pub fn is_exhausted(&self) -> bool {
        self.reached.is_some()
    }

    /// What is used, in words: each limited quantity with its share of the limit
    /// (`1500.0 gCO2eq (150%)`); emissions when nothing is limited.
    pub fn used_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(limit) = self.limit_grams {
            parts.push(format!(
                "{}{}",
                grams(self.used_grams),
                percent(self.used_grams, limit)
            ));
        }
        if let Some(limit) = self.limit_kwh {
            parts.push(format!(
                "{}{}",
                kwh(self.used_kwh),
                percent(self.used_kwh, limit)
            ));
        }
        if parts.is_empty() {
            parts.push(grams(self.used_grams));
        }
        parts.join(", ")
    }

    /// The limits, in words (`1000.0 gCO2eq, 5.000 kWh`); `none` without any.
    pub fn limit_text(&self) -> String {
        let parts: Vec<String> = self
            .limit_grams
            .map(grams)
            .into_iter()
            .chain(self.limit_kwh.map(kwh))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// The reached limit and what is used of it, in words: `1500.0 gCO2eq used of 1000.0
    /// gCO2eq`.
    fn reached_text(&self) -> String {
        match self.reached {
            Some(Reached::Kwh) => format!(
                "{} used of {}",
                kwh(self.used_kwh),
                kwh(self.limit_kwh.unwrap_or_default())
            ),
            _ => format!(
                "{} used of {}",
                grams(self.used_grams),
                grams(self.limit_grams.unwrap_or_default())
            ),
        }
    }

    /// The admission denial of a `Deny` budget: names the budget, what is used of which limit,
    /// and when it resets.
    pub fn deny_message(&self, namespace: &str) -> String {
        format!(
            "CarbonBudget {namespace}/{} denies new deferrable work: {} in {} (UTC); it resets at {}. Wait for the reset, raise the budget's limit, or set its spec.action to Warn or Defer",
            self.name,
            self.reached_text(),
            self.period.month,
            crate::api::annotations::marker(self.period.resets_at),
        )
    }

    /// The admission warning of an exhausted budget; `effect` says what it does to this
    /// workload.
    pub fn warning(&self, namespace: &str, effect: &str) -> String {
        format!(
            "CarbonBudget {namespace}/{} is used up: {} in {} (UTC), resetting at {}; {effect}",
            self.name,
            self.reached_text(),
            self.period.month,
            crate::api::annotations::marker(self.period.resets_at),
        )
    }
}

/// Whether `budget` counts (and affects) work planned against `forecast`.
pub fn covers(spec: &CarbonBudgetSpec, forecast: &str) -> bool {
    spec.forecasts.is_empty() || spec.forecasts.iter().any(|f| f == forecast)
}

/// `budget` evaluated over `ledgers` (the namespace's) at `now`.
pub fn evaluate(budget: &Budget<'_>, ledgers: &[Ledger<'_>], now: DateTime<Utc>) -> Evaluation {
    let period = period(now);
    let (mut used_grams, mut used_kwh) = (0.0, 0.0);
    for ledger in ledgers.iter().filter(|l| covers(budget.spec, l.forecast)) {
        if let Some(m) = ledger
            .status
            .months
            .iter()
            .find(|m| m.month == period.month)
        {
            used_grams += m.emitted_grams.max(0.0);
            used_kwh += m.energy_kwh.max(0.0);
        }
    }
    let spec = budget.spec;
    let over = |used: f64, limit: Option<f64>| limit.is_some_and(|l| used >= l);
    let reached = if over(used_grams, spec.grams_per_month) {
        Some(Reached::Grams)
    } else if over(used_kwh, spec.kwh_per_month) {
        Some(Reached::Kwh)
    } else {
        None
    };
    Evaluation {
        name: budget.name.to_string(),
        action: spec.action,
        period,
        used_grams,
        used_kwh,
        limit_grams: spec.grams_per_month,
        limit_kwh: spec.kwh_per_month,
        reached,
    }
}

/// What the namespace's exhausted budgets mean for one new deferrable workload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// Every exhausted budget that covers the workload's forecast: `Deny` ones first, then
    /// `Defer`, then `Warn`, each by name.
    pub exhausted: Vec<Evaluation>,
}

impl Verdict {
    /// The strongest action of the exhausted budgets (`Deny` over `Defer` over `Warn`), `None`
    /// when none is exhausted.
    pub fn action(&self) -> Option<BudgetAction> {
        self.exhausted.first().map(|e| e.action)
    }

    /// The budget that decides: the first `Deny`, else the first `Defer`, else the first
    /// `Warn`.
    pub fn deciding(&self) -> Option<&Evaluation> {
        self.exhausted.first()
    }
}

fn severity(action: BudgetAction) -> u8 {
    match action {
        BudgetAction::Deny => 0,
        BudgetAction::Defer => 1,
        BudgetAction::Warn => 2,
    }
}

/// The verdict of `budgets` (a namespace's) over `ledgers` (the same namespace's) for new work
/// planned against `forecast`, at `now`.
pub fn verdict(
    budgets: &[Budget<'_>],
    ledgers: &[Ledger<'_>],
    forecast: &str,
    now: DateTime<Utc>,
) -> Verdict {
    let mut exhausted: Vec<Evaluation> = budgets
        .iter()
        .filter(|b| covers(b.spec, forecast))
        .map(|b| evaluate(b, ledgers, now))
        .filter(Evaluation::is_exhausted)
        .collect();
    exhausted.sort_by(|a, b| {
        severity(a.action)
            .cmp(&severity(b.action))
            .then_with(|| a.name.cmp(&b.name))
    });
    Verdict { exhausted }
}

/// The budget's status at `now`, from `previous` (its conditions keep their transition times),
/// and the Warning Event to publish when it has just become exhausted.
pub fn status(
    budget: &Budget<'_>,
    ledgers: &[Ledger<'_>],
    previous: Option<&CarbonBudgetStatus>,
    generation: Option<i64>,
    namespace: &str,
    now: DateTime<Utc>,
) -> (CarbonBudgetStatus, Option<Note>) {
    let e = evaluate(budget, ledgers, now);
    let mut conditions = previous.map(|p| p.conditions.clone()).unwrap_or_default();
    let was_exhausted = conditions
        .iter()
        .any(|c| c.r#type == EXHAUSTED && c.is_true())
        && previous.and_then(|p| p.period.as_deref()) == Some(e.period.month.as_str());
    let condition = if e.is_exhausted() {
        Condition::new(
            EXHAUSTED,
            true,
            LIMIT_REACHED,
            format!(
                "{} in {}; new deferrable work: {}",
                e.reached_text(),
                e.period.month,
                effect(e.action)
            ),
            generation,
            now,
        )
    } else {
        Condition::new(
            EXHAUSTED,
            false,
            WITHIN_BUDGET,
            format!(
                "{} of {} used in {}",
                e.used_text(),
                e.limit_text(),
                e.period.month
            ),
            generation,
            now,
        )
    };
    upsert(&mut conditions, condition);
    let note = (e.is_exhausted() && !was_exhausted).then(|| Note {
        kind: NoteKind::Warning,
        reason: BUDGET_EXHAUSTED,
        action: "Evaluate",
        message: e.warning(
            namespace,
            &format!("new deferrable work: {}", effect(e.action)),
        ),
    });
    let status = CarbonBudgetStatus {
        period: Some(e.period.month.clone()),
        period_start: Some(e.period.start),
        resets_at: Some(e.period.resets_at),
        used_grams: e.used_grams,
        used_kwh: e.used_kwh,
        used: Some(e.used_text()),
        limit: Some(e.limit_text()),
        conditions,
        observed_generation: generation,
    };
    (status, note)
}

/// What an exhausted budget with `action` does to new deferrable work, in words.
pub fn effect(action: BudgetAction) -> &'static str {
    match action {
        BudgetAction::Warn => "admitted as usual, with a warning",
        BudgetAction::Defer => {
            "held for its cleanest window up to its deadline, without the dry-run and run-now shortcuts"
        }
        BudgetAction::Deny => "denied at admission",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ledger::LedgerTotals;
    use crate::units::parse_timestamp;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap_or_default()
    }

    fn spec(grams: Option<f64>, kwh: Option<f64>, action: BudgetAction) -> CarbonBudgetSpec {
        CarbonBudgetSpec {
            grams_per_month: grams,
            kwh_per_month: kwh,
            action,
            forecasts: Vec::new(),
        }
    }

    fn ledger(months: &[(&str, f64, f64)]) -> CarbonLedgerStatus {
        CarbonLedgerStatus {
            months: months
                .iter()
                .map(|(month, g, k)| LedgerTotals {
                    month: month.to_string(),
                    jobs: 1,
                    energy_kwh: *k,
                    emitted_grams: *g,
                    ..LedgerTotals::default()
                })
                .collect(),
            ..CarbonLedgerStatus::default()
        }
    }

    #[test]
    fn the_period_is_the_calendar_month_in_utc() {
        let p = period(t("2026-12-07T11:00:00Z"));
        assert_eq!(p.month, "2026-12");
        assert_eq!(p.start, t("2026-12-01T00:00:00Z"));
        assert_eq!(p.resets_at, t("2027-01-01T00:00:00Z"));
        let p = period(t("2027-02-28T23:59:59Z"));
        assert_eq!(
            (p.month.as_str(), p.resets_at),
            ("2027-02", t("2027-03-01T00:00:00Z"))
        );
        assert_eq!(period(t("2027-03-01T00:00:00Z")).month, "2027-03");
    }

    #[test]
    fn only_this_months_entries_of_the_covered_forecasts_count() {
        let now = t("2026-12-07T11:00:00Z");
        let uk = ledger(&[("2026-11", 5000.0, 9.0), ("2026-12", 600.0, 1.0)]);
        let de = ledger(&[("2026-12", 500.0, 2.0)]);
        let ledgers = [
            Ledger {
                forecast: "uk",
                status: &uk,
            },
            Ledger {
                forecast: "de",
                status: &de,
            },
        ];
        let all = spec(Some(1000.0), None, BudgetAction::Deny);
        let e = evaluate(
            &Budget {
                name: "b",
                spec: &all,
            },
            &ledgers,
            now,
        );
        assert_eq!((e.used_grams, e.used_kwh), (1100.0, 3.0));
        assert_eq!(e.reached, Some(Reached::Grams));
        let mut only_de = all.clone();
        only_de.forecasts = vec!["de".into()];
        let e = evaluate(
            &Budget {
                name: "b",
                spec: &only_de,
            },
            &ledgers,
            now,
        );
        assert_eq!((e.used_grams, e.reached), (500.0, None));
        // A budget limited to de does not affect work planned against uk.
        let v = verdict(
            &[Budget {
                name: "b",
                spec: &only_de,
            }],
            &ledgers,
            "uk",
            now,
        );
        assert_eq!(v.action(), None);
        // The energy limit alone.
        let energy = spec(None, Some(3.0), BudgetAction::Warn);
        let e = evaluate(
            &Budget {
                name: "e",
                spec: &energy,
            },
            &ledgers,
            now,
        );
        assert_eq!(e.reached, Some(Reached::Kwh));
        assert_eq!(e.used_text(), "3.000 kWh (100%)");
    }

    #[test]
    fn the_deny_message_names_the_budget_the_use_the_limit_and_the_reset() {
        let now = t("2026-12-07T11:00:00Z");
        let l = ledger(&[("2026-12", 1500.0, 1.0)]);
        let s = spec(Some(1000.0), None, BudgetAction::Deny);
        let v = verdict(
            &[Budget {
                name: "team-a",
                spec: &s,
            }],
            &[Ledger {
                forecast: "uk",
                status: &l,
            }],
            "uk",
            now,
        );
        let e = v.deciding().unwrap_or_else(|| panic!("not exhausted"));
        assert_eq!(
            e.deny_message("ml"),
            "CarbonBudget ml/team-a denies new deferrable work: 1500.0 gCO2eq used of 1000.0 gCO2eq in 2026-12 (UTC); it resets at 2027-01-01T00:00:00Z. Wait for the reset, raise the budget's limit, or set its spec.action to Warn or Defer"
        );
    }

    #[test]
    fn deny_wins_over_defer_over_warn_and_names_break_ties() {
        let now = t("2026-12-07T11:00:00Z");
        let l = ledger(&[("2026-12", 10.0, 0.0)]);
        let ledgers = [Ledger {
            forecast: "uk",
            status: &l,
        }];
        let (warn, defer, deny) = (
            spec(Some(1.0), None, BudgetAction::Warn),
            spec(Some(1.0), None, BudgetAction::Defer),
            spec(Some(1.0), None, BudgetAction::Deny),
        );
        let roomy = spec(Some(100.0), None, BudgetAction::Deny);
        let budgets = [
            Budget {
                name: "w",
                spec: &warn,
            },
            Budget {
                name: "z-defer",
                spec: &defer,
            },
            Budget {
                name: "a-defer",
                spec: &defer,
            },
            Budget {
                name: "roomy",
                spec: &roomy,
            },
        ];
        let v = verdict(&budgets, &ledgers, "uk", now);
        let names: Vec<&str> = v.exhausted.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a-defer", "z-defer", "w"]);
        assert_eq!(v.action(), Some(BudgetAction::Defer));
        let mut with_deny = budgets.to_vec();
        with_deny.push(Budget {
            name: "d",
            spec: &deny,
        });
        assert_eq!(
            verdict(&with_deny, &ledgers, "uk", now).action(),
            Some(BudgetAction::Deny)
        );
    }

    #[test]
    fn the_status_says_used_limit_period_and_raises_one_event_per_exhaustion() {
        let now = t("2026-12-07T11:00:00Z");
        let s = spec(Some(1000.0), Some(10.0), BudgetAction::Warn);
        let b = Budget {
            name: "team-a",
            spec: &s,
        };
        let low = ledger(&[("2026-12", 250.0, 1.0)]);
        let (st, note) = status(
            &b,
            &[Ledger {
                forecast: "uk",
                status: &low,
            }],
            None,
            Some(1),
            "ml",
            now,
        );
        assert_eq!(note, None);
        assert_eq!(
            st.used.as_deref(),
            Some("250.0 gCO2eq (25%), 1.000 kWh (10%)")
        );
        assert_eq!(st.limit.as_deref(), Some("1000.0 gCO2eq, 10.000 kWh"));
        assert_eq!(st.period.as_deref(), Some("2026-12"));
        assert_eq!(st.resets_at, Some(t("2027-01-01T00:00:00Z")));
        assert_eq!(st.conditions[0].reason, WITHIN_BUDGET);
        let high = ledger(&[("2026-12", 1250.0, 1.0)]);
        let later = now + chrono::TimeDelta::hours(1);
        let ledgers = [Ledger {
            forecast: "uk",
            status: &high,
        }];
        let (st2, note) = status(&b, &ledgers, Some(&st), Some(1), "ml", later);
        let note = note.unwrap_or_else(|| panic!("no Event"));
        assert_eq!(
            (note.reason, note.kind),
            (BUDGET_EXHAUSTED, NoteKind::Warning)
        );
        assert!(
            note.message.starts_with(
                "CarbonBudget ml/team-a is used up: 1250.0 gCO2eq used of 1000.0 gCO2eq in 2026-12"
            ),
            "{}",
            note.message
        );
        assert!(st2.conditions[0].is_true());
        assert_eq!(st2.conditions[0].last_transition_time, later);
        // Still exhausted: no second Event, and the transition time stays.
        let (st3, note) = status(
            &b,
            &ledgers,
            Some(&st2),
            Some(1),
            "ml",
            later + chrono::TimeDelta::hours(1),
        );
        assert_eq!(note, None);
        assert_eq!(st3.conditions[0].last_transition_time, later);
        // The next month resets it.
        let (st4, _) = status(
            &b,
            &ledgers,
            Some(&st3),
            Some(1),
            "ml",
            t("2027-01-01T00:00:00Z"),
        );
        assert_eq!(
            (st4.used_grams, st4.conditions[0].reason.as_str()),
            (0.0, WITHIN_BUDGET)
        );
    }

    proptest! {
        /// Used is the sum of this month's covered entries, a budget is exhausted exactly when
        /// that reaches a limit, and the verdict holds exactly the exhausted covering budgets.
        #[test]
        fn exhausted_exactly_when_a_limit_is_reached(
            entries in proptest::collection::vec((0usize..3, 0u32..3, 0.0f64..500.0, 0.0f64..5.0), 0..20),
            limit_g in proptest::option::of(0.0f64..3000.0),
            limit_k in proptest::option::of(0.0f64..30.0),
            day in 1u32..28,
        ) {
            let now = Utc.with_ymd_and_hms(2026, 12, day, 12, 0, 0).single().unwrap_or_default();
            let months = ["2026-11", "2026-12", "2027-01"];
            let forecasts = ["a", "b", "c"];
            let mut statuses = vec![CarbonLedgerStatus::default(); 3];
            let (mut g, mut k) = (0.0, 0.0);
            for (f, m, grams, kwh) in entries {
                let status = &mut statuses[f];
                let month = months[m as usize].to_string();
                match status.months.iter_mut().find(|x| x.month == month) {
                    Some(x) => { x.emitted_grams += grams; x.energy_kwh += kwh; }
                    None => status.months.push(LedgerTotals { month, emitted_grams: grams, energy_kwh: kwh, ..LedgerTotals::default() }),
                }
                if m == 1 { g += grams; k += kwh; }
            }
            let ledgers: Vec<Ledger<'_>> = forecasts.iter().zip(&statuses).map(|(f, s)| Ledger { forecast: f, status: s }).collect();
            let s = spec(limit_g, limit_k, BudgetAction::Deny);
            let e = evaluate(&Budget { name: "b", spec: &s }, &ledgers, now);
            prop_assert!((e.used_grams - g).abs() < 1e-6);
            prop_assert!((e.used_kwh - k).abs() < 1e-6);
            let expected = limit_g.is_some_and(|l| e.used_grams >= l) || limit_k.is_some_and(|l| e.used_kwh >= l);
            prop_assert_eq!(e.is_exhausted(), expected);
            let v = verdict(&[Budget { name: "b", spec: &s }], &ledgers, "a", now);
            prop_assert_eq!(v.action().is_some(), expected);
        }
    }
}
