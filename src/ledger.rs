//! The carbon ledger's arithmetic: adding one finished workload's figures to a
//! [`CarbonLedgerStatus`] exactly once. Pure; the workload controller reads the ledger, calls
//! [`record`], and writes the result with optimistic concurrency.

use chrono::{DateTime, Utc};

use crate::api::ledger::{CarbonLedgerStatus, LedgerTotals, MAX_MONTHS, MAX_RECENT};

/// Whether an entry comes from the forecast (at completion) or from measured values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Estimated at completion.
    Estimated,
    /// Verified from measured values.
    Verified,
}

impl Basis {
    /// `estimated` or `verified`: the entry key's suffix and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Estimated => "estimated",
            Basis::Verified => "verified",
        }
    }
}

/// One finished workload's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry<'a> {
    /// The Job's uid: with the basis, the key that makes recording idempotent.
    pub uid: &'a str,
    /// Estimated or verified.
    pub basis: Basis,
    /// When the workload ended: its month is where the entry goes.
    pub finished_at: DateTime<Utc>,
    /// Facility energy, kWh (estimated entries only add it).
    pub energy_kwh: f64,
    /// Emitted gCO2eq.
    pub emitted_grams: f64,
    /// Avoided gCO2eq, when carbonshift held the workload.
    pub avoided_grams: Option<f64>,
    /// The workload failed: an estimated entry also counts as a failed job and its emissions as
    /// wasted.
    pub failed: bool,
}

impl Entry<'_> {
    /// The idempotency key, `<uid>/<basis>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.uid, self.basis.as_str())
    }
}

fn add(totals: &mut LedgerTotals, entry: &Entry<'_>) {
    let avoided = entry.avoided_grams.unwrap_or(0.0);
    match entry.basis {
        Basis::Estimated => {
            totals.jobs += 1;
            totals.energy_kwh += entry.energy_kwh.max(0.0);
            totals.emitted_grams += entry.emitted_grams.max(0.0);
            totals.avoided_grams += avoided;
            if entry.failed {
                totals.failed_jobs += 1;
                totals.wasted_grams += entry.emitted_grams.max(0.0);
            }
        }
        Basis::Verified => {
            totals.verified_jobs += 1;
            totals.verified_emitted_grams += entry.emitted_grams.max(0.0);
            totals.verified_avoided_grams += avoided;
        }
    }
}

/// The ledger with `entry` added, or `None` when it is recorded already. `now` stamps
/// `updatedAt`.
pub fn record(
    status: &CarbonLedgerStatus,
    entry: &Entry<'_>,
    now: DateTime<Utc>,
) -> Option<CarbonLedgerStatus> {
    let key = entry.key();
    if status.recent.contains(&key) {
        return None;
    }
    let mut next = status.clone();
    let month = entry.finished_at.format("%Y-%m").to_string();
    match next.months.iter_mut().find(|m| m.month == month) {
        Some(m) => add(m, entry),
        None => {
            let mut m = LedgerTotals {
                month,
                ..LedgerTotals::default()
            };
            add(&mut m, entry);
            next.months.push(m);
            next.months.sort_by(|a, b| a.month.cmp(&b.month));
        }
    }
    let excess = next.months.len().saturating_sub(MAX_MONTHS);
    next.months.drain(..excess);
    let total = next.total.get_or_insert_with(|| LedgerTotals {
        month: "all".into(),
        ..LedgerTotals::default()
    });
    add(total, entry);
    next.recent.push(key);
    let excess = next.recent.len().saturating_sub(MAX_RECENT);
    next.recent.drain(..excess);
    next.updated_at = Some(now);
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::parse_timestamp;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap_or_default()
    }

    fn entry<'a>(
        uid: &'a str,
        basis: Basis,
        at: &str,
        emitted: f64,
        avoided: Option<f64>,
    ) -> Entry<'a> {
        Entry {
            uid,
            basis,
            finished_at: t(at),
            energy_kwh: 2.0,
            emitted_grams: emitted,
            avoided_grams: avoided,
            failed: false,
        }
    }

    #[test]
    fn entries_go_to_their_month_once_each() {
        let now = t("2026-12-07T10:00Z");
        let empty = CarbonLedgerStatus::default();
        let a = entry(
            "a",
            Basis::Estimated,
            "2026-11-30T23:00Z",
            100.0,
            Some(40.0),
        );
        let one = record(&empty, &a, now).unwrap_or_else(|| panic!("not recorded"));
        assert_eq!(one.months.len(), 1);
        assert_eq!(one.months[0].month, "2026-11");
        assert_eq!((one.months[0].jobs, one.months[0].avoided_grams), (1, 40.0));
        // The same entry again (a retry, a restart): nothing changes.
        assert_eq!(record(&one, &a, now), None);
        // Its verified figures are a separate entry; a held-elsewhere job avoids nothing.
        let v = entry("a", Basis::Verified, "2026-11-30T23:00Z", 90.0, Some(55.0));
        let two = record(&one, &v, now).unwrap_or_else(|| panic!("not recorded"));
        let m = &two.months[0];
        assert_eq!((m.jobs, m.verified_jobs), (1, 1));
        assert_eq!(
            (m.verified_emitted_grams, m.verified_avoided_grams),
            (90.0, 55.0)
        );
        let b = entry("b", Basis::Estimated, "2026-12-01T00:30Z", 10.0, None);
        let three = record(&two, &b, now).unwrap_or_else(|| panic!("not recorded"));
        let months: Vec<&str> = three.months.iter().map(|m| m.month.as_str()).collect();
        assert_eq!(months, ["2026-11", "2026-12"]);
        let total = three.total.clone().unwrap_or_default();
        assert_eq!(
            (total.month.as_str(), total.jobs, total.verified_jobs),
            ("all", 2, 1)
        );
        assert_eq!(
            (total.emitted_grams, total.avoided_grams, total.energy_kwh),
            (110.0, 40.0, 4.0)
        );
        assert_eq!(three.updated_at, Some(now));
        // A late entry for an older month is put in order.
        let c = entry("c", Basis::Estimated, "2026-10-15T00:00Z", 1.0, None);
        let four = record(&three, &c, now).unwrap_or_else(|| panic!("not recorded"));
        let months: Vec<&str> = four.months.iter().map(|m| m.month.as_str()).collect();
        assert_eq!(months, ["2026-10", "2026-11", "2026-12"]);
    }

    proptest! {
        /// However entries repeat, each key counts once, the months' jobs add up to the total, and
        /// the lists stay bounded.
        #[test]
        fn each_entry_counts_once_and_the_ledger_stays_bounded(
            picks in proptest::collection::vec((0usize..40, 0u32..40, any::<bool>()), 1..300),
        ) {
            let now = t("2026-12-07T10:00Z");
            let uids: Vec<String> = (0..40).map(|i| format!("uid-{i}")).collect();
            let mut status = CarbonLedgerStatus::default();
            let mut seen = std::collections::BTreeSet::new();
            for (u, month, verified) in picks {
                let basis = if verified { Basis::Verified } else { Basis::Estimated };
                let at = t("2024-01-15T00:00Z") + chrono::TimeDelta::days(31 * i64::from(month));
                let e = Entry { uid: &uids[u], basis, finished_at: at, energy_kwh: 1.0, emitted_grams: 1.0, avoided_grams: Some(1.0), failed: u % 2 == 0 };
                let fresh = seen.insert(e.key());
                match record(&status, &e, now) {
                    Some(next) => { prop_assert!(fresh); status = next; }
                    None => prop_assert!(!fresh),
                }
            }
            let total = status.total.clone().unwrap_or_default();
            let estimated = seen.iter().filter(|k| k.ends_with("/estimated")).count() as u64;
            prop_assert_eq!(total.jobs, estimated);
            let failed = seen.iter().filter(|k| k.ends_with("/estimated")).filter(|k| {
                k.trim_start_matches("uid-").split('/').next().and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n % 2 == 0)
            }).count() as u64;
            prop_assert_eq!(total.failed_jobs, failed);
            prop_assert!((total.wasted_grams - failed as f64).abs() < 1e-9);
            prop_assert!(status.months.len() <= MAX_MONTHS);
            prop_assert!(status.recent.len() <= MAX_RECENT);
            let sorted = status.months.windows(2).all(|w| w[0].month < w[1].month);
            prop_assert!(sorted);
        }
    }
}
