//! Capacity-aware planning: many jobs against one forecast with a cap on the concurrent load per
//! time slot (jobs, GPUs or watts — the unit is the caller's), so that a cluster is not flooded
//! when a clean window opens.
//!
//! A [`CapacityLedger`] holds the load reserved per slot. [`plan_with_capacity`] (the online form,
//! for the operator and the replay) plans one job using only slots with room for its load,
//! reserves what it chose and says whether it overflowed. The cap always yields to deadlines: a job
//! that cannot fit anywhere runs at its latest start (minus the margin) anyway and is reported as
//! overflow. [`plan_batch`] plans a whole set earliest-deadline-first over one ledger — a
//! heuristic: each job takes its cheapest window with room left by the jobs due before it.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::constraints::duration_text;
use super::forecast::{Forecast, delta_ms_ceil, ms_floor};
use super::{ConstraintError, Constraints, NoPlan, Plan, PlanReason, Range, Window};

/// Which time has room for a job. The planner's scans are generic over it, so planning without a
/// cap ([`Unlimited`]) costs nothing extra.
pub(crate) trait Room {
    /// Whether some time may lack room.
    const LIMITED: bool;
    /// State for a sequence of [`Room::fits`] calls with non-decreasing starts.
    type Cursor;
    /// A fresh cursor.
    fn cursor(&self) -> Self::Cursor;
    /// Whether `[s, x)` has room.
    fn fits(&self, cursor: &mut Self::Cursor, s: i64, x: i64) -> bool;
    /// Starts in `[lo, hi]` where a window of length `d` meets the edge of a full slot.
    fn extra_starts(&self, lo: i64, hi: i64, d: i64) -> Vec<i64>;
    /// The parts of `[from, to)` with room, sorted.
    fn free(&self, from: i64, to: i64) -> Vec<(i64, i64)>;
}

/// No cap: all time has room.
pub(crate) struct Unlimited;

impl Room for Unlimited {
    const LIMITED: bool = false;
    type Cursor = ();
    fn cursor(&self) {}
    #[inline]
    fn fits(&self, _: &mut (), _: i64, _: i64) -> bool {
        true
    }
    fn extra_starts(&self, _: i64, _: i64, _: i64) -> Vec<i64> {
        Vec::new()
    }
    fn free(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        vec![(from, to)]
    }
}

/// The time a given load does not fit in: full slots, merged into sorted, disjoint intervals.
struct Blocked {
    intervals: Vec<(i64, i64)>,
    /// The load exceeds the cap on its own: nothing fits.
    all: bool,
}

impl Blocked {
    /// Time blocked in either: the union of two sorted, disjoint interval lists.
    fn union(self, other: Blocked) -> Blocked {
        let mut all: Vec<(i64, i64)> = self.intervals;
        all.extend(other.intervals);
        all.sort_unstable();
        let mut intervals: Vec<(i64, i64)> = Vec::with_capacity(all.len());
        for (a, b) in all {
            match intervals.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => intervals.push((a, b)),
            }
        }
        Blocked {
            intervals,
            all: self.all || other.all,
        }
    }
}

impl Room for Blocked {
    const LIMITED: bool = true;
    type Cursor = usize;
    fn cursor(&self) -> usize {
        0
    }
    #[inline]
    fn fits(&self, cursor: &mut usize, s: i64, x: i64) -> bool {
        if self.all {
            return false;
        }
        while *cursor < self.intervals.len() && self.intervals[*cursor].1 <= s {
            *cursor += 1;
        }
        self.intervals.get(*cursor).is_none_or(|&(a, _)| a >= x)
    }
    fn extra_starts(&self, lo: i64, hi: i64, d: i64) -> Vec<i64> {
        self.intervals
            .iter()
            .flat_map(|&(a, b)| [b, a - d])
            .filter(|s| (lo..=hi).contains(s))
            .collect()
    }
    fn free(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        if self.all {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut at = from;
        for &(a, b) in &self.intervals {
            if a > at {
                out.push((at, a.min(to)));
            }
            at = at.max(b);
            if at >= to {
                break;
            }
        }
        if at < to {
            out.push((at, to));
        }
        out.retain(|w| w.0 < w.1);
        out
    }
}

/// Most slots one plan may reserve (about two years of one-minute slots); a job spanning more
/// is refused rather than filling memory.
pub const MAX_SLOTS: i64 = 1 << 20;

/// Why a capacity cap is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum CapacityError {
    /// The cap is not a positive, finite number.
    #[error("the capacity limit must be a positive, finite number, not {0}")]
    BadLimit(f64),
    /// The slot is not at least one millisecond.
    #[error("the capacity slot must be positive")]
    BadSlot,
    /// A load that is negative or not finite.
    #[error("the load must be a finite, non-negative number, not {0}")]
    BadLoad(f64),
    /// A reservation spanning more than [`MAX_SLOTS`] slots.
    #[error("the windows span more than {MAX_SLOTS} capacity slots")]
    TooManySlots,
}

/// A load cap per time slot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Largest total load in any slot.
    pub limit: f64,
    /// Slot length; slots are aligned to the Unix epoch (30 min slots start at :00 and :30).
    #[serde(with = "duration_text")]
    pub slot: TimeDelta,
}

/// Loads reserved by one plan; pass it to [`CapacityLedger::release`] to re-plan the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// The reserved runs.
    pub windows: Vec<Window>,
    /// Load per slot.
    pub load: f64,
}

/// Load reserved per slot. A window occupies every slot it overlaps, even partly; a job counts
/// once per slot however many of its windows touch it. Storage is sparse (only slots with load).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityLedger {
    limit: f64,
    slot_ms: i64,
    loads: BTreeMap<i64, f64>,
}

impl CapacityLedger {
    /// An empty ledger with a cap of `limit` per slot of length `slot`.
    pub fn new(limit: f64, slot: TimeDelta) -> Result<CapacityLedger, CapacityError> {
        if !limit.is_finite() || limit <= 0.0 {
            return Err(CapacityError::BadLimit(limit));
        }
        let slot_ms = delta_ms_ceil(slot);
        if slot_ms <= 0 {
            return Err(CapacityError::BadSlot);
        }
        Ok(CapacityLedger {
            limit,
            slot_ms,
            loads: BTreeMap::new(),
        })
    }

    /// An empty ledger for `capacity`.
    pub fn with_capacity(capacity: Capacity) -> Result<CapacityLedger, CapacityError> {
        Self::new(capacity.limit, capacity.slot)
    }

    /// The cap.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// The slot length.
    pub fn slot(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.slot_ms)
    }

    /// Load reserved in the slot containing `t`.
    pub fn load_at(&self, t: DateTime<Utc>) -> f64 {
        let slot = ms_floor(t).div_euclid(self.slot_ms);
        self.loads.get(&slot).copied().unwrap_or(0.0)
    }

    /// Highest load in any slot.
    pub fn peak(&self) -> f64 {
        self.loads.values().copied().fold(0.0, f64::max)
    }

    /// Highest load in the slots overlapping `[from, to)`.
    pub fn peak_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        let (a, b) = (ms_floor(from), ms_floor(to));
        if a >= b {
            return 0.0;
        }
        let range = a.div_euclid(self.slot_ms)..=(b - 1).div_euclid(self.slot_ms);
        self.loads.range(range).map(|(_, &l)| l).fold(0.0, f64::max)
    }

    /// Reserves `load` in every slot `windows` overlap. Refuses (and reserves nothing) when the
    /// windows span more than [`MAX_SLOTS`] slots or the load is negative or not finite.
    pub fn reserve(&mut self, windows: &[Window], load: f64) -> Result<Reservation, CapacityError> {
        if !load.is_finite() || load < 0.0 {
            return Err(CapacityError::BadLoad(load));
        }
        let slots = windows
            .iter()
            .map(|w| delta_ms_ceil(w.duration()).max(0) / self.slot_ms + 2)
            .fold(0, i64::saturating_add);
        if slots > MAX_SLOTS {
            return Err(CapacityError::TooManySlots);
        }
        self.apply(windows, load);
        Ok(Reservation {
            windows: windows.to_vec(),
            load,
        })
    }

    /// Gives back a reservation (when a job is re-planned, finishes or is deleted).
    pub fn release(&mut self, reservation: &Reservation) {
        self.apply(&reservation.windows, -reservation.load);
    }

    /// Forgets slots that end at or before `t` (history no longer needed).
    pub fn prune_before(&mut self, t: DateTime<Utc>) {
        let first_kept = ms_floor(t).div_euclid(self.slot_ms);
        self.loads = self.loads.split_off(&first_kept);
    }

    /// Loads within this of each other (or of zero) are equal: reserve/release pairs may leave
    /// rounding dust.
    fn tolerance(&self) -> f64 {
        1e-9 * self.limit.max(1.0)
    }

    fn apply(&mut self, windows: &[Window], delta: f64) {
        let tolerance = self.tolerance();
        let mut last_slot = None;
        for w in windows {
            let (a, b) = (ms_floor(w.start), ms_floor(w.end));
            if a >= b {
                continue;
            }
            let first = a.div_euclid(self.slot_ms);
            let last = (b - 1).div_euclid(self.slot_ms);
            let first = last_slot.map_or(first, |l: i64| first.max(l + 1));
            for slot in first..=last {
                let entry = self.loads.entry(slot).or_insert(0.0);
                *entry += delta;
                // Drop slots that are empty but for rounding dust.
                if entry.abs() <= tolerance {
                    self.loads.remove(&slot);
                }
            }
            last_slot = Some(last_slot.map_or(last, |l: i64| l.max(last)));
        }
    }

    /// The full slots overlapping `[from, to)` for `load`, as merged intervals.
    fn blocked(&self, from: i64, to: i64, load: f64) -> Blocked {
        let tolerance = self.tolerance();
        let all = load > self.limit + tolerance;
        let mut intervals: Vec<(i64, i64)> = Vec::new();
        if !all && from < to {
            let range = from.div_euclid(self.slot_ms)..=(to - 1).div_euclid(self.slot_ms);
            for (&slot, &reserved) in self.loads.range(range) {
                if reserved + load > self.limit + tolerance {
                    let (a, b) = (slot * self.slot_ms, (slot + 1) * self.slot_ms);
                    match intervals.last_mut() {
                        Some(last) if last.1 == a => last.1 = b,
                        _ => intervals.push((a, b)),
                    }
                }
            }
        }
        Blocked { intervals, all }
    }
}

/// A plan made under a capacity cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityPlan {
    /// The plan.
    pub plan: Plan,
    /// No window had room: the job runs at its latest start (minus the margin) above the cap.
    pub overflow: bool,
    /// What was reserved in the ledger.
    pub reservation: Reservation,
}

/// Plans one job using only slots with room for `load`, and reserves the result in `ledger`.
/// Without room anywhere, the job runs at `release_by` anyway (`overflow: true`, reason
/// [`PlanReason::CapacityOverflow`]). Errors are those of [`super::plan`] (nothing is reserved).
pub fn plan_with_capacity(
    forecast: &Forecast,
    constraints: &Constraints,
    now: DateTime<Utc>,
    load: f64,
    ledger: &mut CapacityLedger,
) -> Result<CapacityPlan, NoPlan> {
    let mut planned = plan_with_ledgers(forecast, constraints, now, &mut [(ledger, load)])?;
    Ok(CapacityPlan {
        plan: planned.plan,
        overflow: planned.overflow,
        reservation: planned.reservations.pop().unwrap_or(Reservation {
            windows: Vec::new(),
            load,
        }),
    })
}

/// A plan made under several caps at once (for example jobs and GPUs).
#[derive(Debug, Clone, PartialEq)]
pub struct MultiPlan {
    /// The plan.
    pub plan: Plan,
    /// No window had room under every cap: the job runs at its latest start (minus the margin)
    /// above a cap.
    pub overflow: bool,
    /// What was reserved, one entry per ledger, in the order given.
    pub reservations: Vec<Reservation>,
}

/// Like [`plan_with_capacity`] under several caps: each `(ledger, load)` pair is one capped
/// resource and the job's load of it; a window has room when it has room in every ledger. With
/// no pairs, this is [`super::plan`] with nothing reserved (overflow is never set). Nothing is
/// reserved on error.
pub fn plan_with_ledgers(
    forecast: &Forecast,
    constraints: &Constraints,
    now: DateTime<Utc>,
    caps: &mut [(&mut CapacityLedger, f64)],
) -> Result<MultiPlan, NoPlan> {
    let view: Vec<(&CapacityLedger, f64)> = caps.iter().map(|(l, load)| (&**l, *load)).collect();
    let (plan, overflow) = plan_against(forecast, constraints, now, &view)?;
    let mut reservations: Vec<Reservation> = Vec::with_capacity(caps.len());
    for (ledger, load) in caps.iter_mut() {
        match ledger.reserve(&plan.windows, *load) {
            Ok(r) => reservations.push(r),
            Err(_) => {
                for ((ledger, _), r) in caps.iter_mut().zip(&reservations) {
                    ledger.release(r);
                }
                return Err(ConstraintError::TooManySlots.into());
            }
        }
    }
    Ok(MultiPlan {
        plan,
        overflow,
        reservations,
    })
}

/// The plan [`plan_with_ledgers`] would make, and whether it overflows, without reserving
/// anything (to compare candidate forecasts before choosing one).
pub fn plan_against(
    forecast: &Forecast,
    constraints: &Constraints,
    now: DateTime<Utc>,
    caps: &[(&CapacityLedger, f64)],
) -> Result<(Plan, bool), NoPlan> {
    if caps
        .iter()
        .any(|(_, load)| !load.is_finite() || *load < 0.0)
    {
        return Err(ConstraintError::BadLoad.into());
    }
    if caps.is_empty() {
        return Ok((super::plan(forecast, constraints, now)?, false));
    }
    let range = Range::new(constraints, now)?;
    let blocked = caps
        .iter()
        .map(|(ledger, load)| ledger.blocked(range.lo, range.end(), *load))
        .reduce(Blocked::union)
        .unwrap_or(Blocked {
            intervals: Vec::new(),
            all: false,
        });
    Ok(
        match super::plan_in(forecast, constraints, &range, &blocked)? {
            Some(plan) => (plan, false),
            None => {
                let window = [(range.hi, range.end())];
                let plan =
                    super::build_plan(forecast, &range, &window, PlanReason::CapacityOverflow);
                (plan, true)
            }
        },
    )
}

/// One job of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchJob {
    /// Its constraints.
    pub constraints: Constraints,
    /// Its load (jobs, GPUs, watts: the unit of the cap).
    pub load: f64,
}

/// The plans of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPlan {
    /// One entry per job, in input order.
    pub plans: Vec<Result<Plan, NoPlan>>,
    /// Indices of the jobs that run above the cap to meet their deadline.
    pub overflow: Vec<usize>,
    /// Highest load in any slot afterwards.
    pub peak_load: f64,
}

/// Plans `jobs` against one forecast under `capacity`, earliest deadline (`finish_by`) first.
pub fn plan_batch(
    forecast: &Forecast,
    jobs: &[BatchJob],
    capacity: Capacity,
    now: DateTime<Utc>,
) -> Result<BatchPlan, CapacityError> {
    let mut ledger = CapacityLedger::with_capacity(capacity)?;
    Ok(plan_batch_into(forecast, jobs, &mut ledger, now))
}

/// Like [`plan_batch`], on top of the reservations already in `ledger`.
pub fn plan_batch_into(
    forecast: &Forecast,
    jobs: &[BatchJob],
    ledger: &mut CapacityLedger,
    now: DateTime<Utc>,
) -> BatchPlan {
    let mut order: Vec<(Option<DateTime<Utc>>, usize)> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| (job.constraints.finish_by().ok(), i))
        .collect();
    // Invalid constraints (None) sort first; they fail without touching the ledger.
    order.sort_unstable();
    let mut plans: Vec<(usize, Result<Plan, NoPlan>)> = Vec::with_capacity(jobs.len());
    let mut overflow = Vec::new();
    for (_, i) in order {
        let job = &jobs[i];
        let result = plan_with_capacity(forecast, &job.constraints, now, job.load, ledger);
        plans.push((
            i,
            result.map(|planned| {
                if planned.overflow {
                    overflow.push(i);
                }
                planned.plan
            }),
        ));
    }
    plans.sort_unstable_by_key(|(i, _)| *i);
    overflow.sort_unstable();
    BatchPlan {
        plans: plans.into_iter().map(|(_, p)| p).collect(),
        overflow,
        peak_load: ledger.peak(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::forecast::dt as at;

    const H: i64 = 3_600_000;

    fn window(a: i64, b: i64) -> Window {
        Window {
            start: at(a),
            end: at(b),
        }
    }

    #[test]
    fn ledger_counts_each_slot_once_per_job_and_releases() {
        let mut ledger = CapacityLedger::new(4.0, TimeDelta::hours(1)).expect("valid");
        let r = ledger
            .reserve(&[window(0, H / 2), window(H / 2 + 1, 3 * H / 2)], 2.0)
            .expect("reserved");
        assert_eq!(ledger.load_at(at(0)), 2.0);
        assert_eq!(ledger.load_at(at(H)), 2.0);
        assert_eq!(ledger.load_at(at(2 * H)), 0.0);
        assert_eq!(ledger.peak(), 2.0);
        ledger.reserve(&[window(H, 2 * H)], 1.5).expect("reserved");
        assert_eq!(
            ledger.reserve(&[window(0, H * (MAX_SLOTS + 1))], 1.0),
            Err(CapacityError::TooManySlots)
        );
        assert!(matches!(
            ledger.reserve(&[window(0, H)], -1.0),
            Err(CapacityError::BadLoad(_))
        ));
        assert_eq!(ledger.peak_between(at(H), at(2 * H)), 3.5);
        assert_eq!(ledger.peak_between(at(0), at(H)), 2.0);
        ledger.release(&r);
        assert_eq!(ledger.load_at(at(0)), 0.0);
        assert_eq!(ledger.peak(), 1.5);
        ledger.prune_before(at(2 * H));
        assert_eq!(ledger.peak(), 0.0);
    }

    #[test]
    fn invalid_caps_are_errors() {
        assert_eq!(
            CapacityLedger::new(0.0, TimeDelta::hours(1)),
            Err(CapacityError::BadLimit(0.0))
        );
        assert!(CapacityLedger::new(f64::NAN, TimeDelta::hours(1)).is_err());
        assert_eq!(
            CapacityLedger::new(1.0, TimeDelta::zero()),
            Err(CapacityError::BadSlot)
        );
    }

    #[test]
    fn blocked_union_merges_overlapping_and_touching_intervals() {
        let a = Blocked {
            intervals: vec![(0, 10), (20, 30)],
            all: false,
        };
        let b = Blocked {
            intervals: vec![(5, 12), (30, 35), (40, 50)],
            all: false,
        };
        let u = a.union(b);
        assert_eq!(u.intervals, vec![(0, 12), (20, 35), (40, 50)]);
        assert!(!u.all);
        let full = Blocked {
            intervals: Vec::new(),
            all: true,
        };
        assert!(u.union(full).all);
    }

    #[test]
    fn several_caps_block_where_any_is_full_and_roll_back_on_error() {
        let mut jobs = CapacityLedger::new(2.0, TimeDelta::hours(1)).expect("valid");
        let mut gpus = CapacityLedger::new(8.0, TimeDelta::hours(1)).expect("valid");
        // Hour 0 is full of GPUs, hour 1 full of jobs: the cheapest hours 0 and 1 are both out.
        gpus.reserve(&[window(0, H)], 8.0).expect("reserved");
        jobs.reserve(&[window(H, 2 * H)], 2.0).expect("reserved");
        let points = crate::planner::hourly_points(at(0), &[10.0, 20.0, 30.0, 40.0]);
        let forecast = Forecast::new(points).expect("forecast");
        let job = Constraints::new(at(0), TimeDelta::hours(1)).with_deadline(at(4 * H));
        let planned = plan_with_ledgers(
            &forecast,
            &job,
            at(0),
            &mut [(&mut jobs, 1.0), (&mut gpus, 4.0)],
        )
        .expect("planned");
        assert_eq!(planned.plan.start, at(2 * H));
        assert_eq!(planned.plan.reason, PlanReason::CapacityShifted);
        assert!(!planned.overflow);
        assert_eq!(planned.reservations.len(), 2);
        assert_eq!(
            (jobs.load_at(at(2 * H)), gpus.load_at(at(2 * H))),
            (1.0, 4.0)
        );
        let unlimited = plan_with_ledgers(&forecast, &job, at(0), &mut []).expect("planned");
        assert_eq!(unlimited.plan.start, at(0));
        assert!(unlimited.reservations.is_empty());
        let bad = plan_with_ledgers(&forecast, &job, at(0), &mut [(&mut jobs, f64::NAN)]);
        assert!(bad.is_err());
    }

    #[test]
    fn blocked_slots_shape_fits_free_time_and_extra_starts() {
        let mut ledger = CapacityLedger::new(2.0, TimeDelta::hours(1)).expect("valid");
        ledger
            .reserve(&[window(2 * H, 3 * H)], 2.0)
            .expect("reserved");
        ledger
            .reserve(&[window(3 * H, 4 * H)], 1.5)
            .expect("reserved");
        let blocked = ledger.blocked(0, 6 * H, 1.0);
        assert_eq!(blocked.intervals, vec![(2 * H, 4 * H)]);
        let mut c = blocked.cursor();
        assert!(blocked.fits(&mut c, 0, 2 * H));
        assert!(!blocked.fits(&mut c, H, 2 * H + 1));
        assert!(!blocked.fits(&mut c, 3 * H, 4 * H));
        assert!(blocked.fits(&mut c, 4 * H, 5 * H));
        assert_eq!(blocked.free(0, 6 * H), vec![(0, 2 * H), (4 * H, 6 * H)]);
        assert_eq!(
            blocked.extra_starts(0, 6 * H, H / 2),
            vec![4 * H, 2 * H - H / 2]
        );
        let heavy = ledger.blocked(0, 6 * H, 3.0);
        assert!(heavy.all);
        assert!(heavy.free(0, H).is_empty());
    }
}
