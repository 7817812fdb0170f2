//! Fleet-aware planning: the capacity schedule of every held workload of one forecast, kept up to
//! date incrementally, and the placement of a workload over candidate forecasts (node pools on
//! different grids). Pure: no kube or tokio types, `now` is always an argument.
//!
//! # The capacity schedule
//!
//! A [`Fleet`] holds one forecast, its caps ([`Caps`]: workloads and/or GPUs at once, per slot),
//! the workloads already released or running (*committed*: their windows are reserved and never
//! moved) and the held ones (*planned*: each has a [`Scheduled`] plan and its reservation). Held
//! workloads are ordered earliest deadline (`finish_by`) first, ties by admission order, exactly as
//! [`super::plan_batch`] orders its input; each takes its cheapest window with room left by the
//! committed workloads and the held ones before it. The cap yields to deadlines: a workload with no
//! room anywhere is planned at its latest start (minus the margin) above the cap
//! ([`Scheduled::overflow`]), and [`Fleet::due`] says so when it is due, for an Event and a metric.
//!
//! # Incremental re-planning, and how it relates to `plan_batch`
//!
//! With `C` the committed reservations and `H` the held workloads in admission order, all
//! operations at the same `now`:
//!
//! - [`Fleet::replan`] re-plans every held workload: the result **equals**
//!   `plan_batch_into(C, H, now)` (and `plan_batch(H)` when `C` is empty). O(n · plan).
//! - [`Fleet::admit_exact`] plans the new workload at its place in the deadline order and re-plans
//!   only the held workloads due after it (the *suffix*; their reservations are taken back first):
//!   the result **equals** `plan_batch` over the whole set. O(log n + suffix · plan).
//! - [`Fleet::admit`] plans the new workload against the ledger as it is, without moving anyone:
//!   O(log n + plan). It **equals** `plan_batch` when the arrival's deadline is not before any held
//!   workload's (arrivals in deadline order, the common case for a queue of similar jobs: then the
//!   suffix is empty and `admit` is `admit_exact`). Otherwise it is still feasible — every plan
//!   within its own allowed range, the cap exceeded only by [`Scheduled::overflow`] plans — and no
//!   held workload is moved or made later; only the new one may get a worse window than EDF would
//!   give it. A later [`Fleet::replan`] (on a forecast change, or periodically) restores equality.
//! - [`Fleet::remove`] (finished, deleted) gives the reservation back; the others keep their plans
//!   (feasible, as the ledger only lost load) until the next re-plan.
//!
//! The property tests (`tests/fleet_props.rs`) check each of these statements against
//! [`super::plan_batch`] on random inputs.
//!
//! # Placement
//!
//! [`placement`] chooses, over candidate forecasts × windows, the cleanest feasible pair, after
//! dropping the candidates whose node selector contradicts the workload's own `nodeSelector` or
//! required node affinity.

pub mod placement;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use thiserror::Error;

use super::capacity::{
    CapacityError, CapacityLedger, Reservation, plan_against, plan_with_ledgers,
};
use super::{ConstraintError, Constraints, Forecast, NoPlan, Plan, Window};

pub use placement::{
    Alternative, Decision, Excluded, Incompatible, NodeRequirement, NodeTerm, Operator, Placement,
    PlacementError, PodPlacement, Pool, compatible, label_key_problem, place, selector_additions,
};

/// Caps on what may run at once on the nodes behind one forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Caps {
    /// Most workloads running at once.
    pub jobs: Option<u32>,
    /// Most GPUs in use at once.
    pub gpus: Option<u32>,
    /// Slot length of the ledgers (a window occupies every slot it overlaps).
    pub slot: TimeDelta,
}

impl Caps {
    /// No cap: every workload is planned alone.
    pub fn none() -> Caps {
        Caps {
            jobs: None,
            gpus: None,
            slot: TimeDelta::minutes(5),
        }
    }

    /// Whether any cap is set.
    pub fn is_limited(&self) -> bool {
        self.jobs.is_some() || self.gpus.is_some()
    }
}

/// What one workload needs of the capped resources while it runs: one workload slot and its GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// GPUs it requests (GPUs per pod × pods at once, as the power estimate counts them).
    pub gpus: u32,
}

/// Why a fleet operation failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FleetError {
    /// The caps are invalid.
    #[error("invalid capacity: {0}")]
    Capacity(#[from] CapacityError),
    /// No held workload of this key.
    #[error("no held workload {0}")]
    NotHeld(String),
    /// A committed workload's windows span too many capacity slots.
    #[error("the windows of {0} span too many capacity slots")]
    TooManySlots(String),
}

/// The plan of one held workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// The plan, or why there is none (the deadline rule applies then).
    pub plan: Result<Plan, NoPlan>,
    /// No window had room under the caps: planned at its latest start above the cap.
    pub overflow: bool,
}

impl Scheduled {
    /// Whether the workload is due for release at `now`: its plan starts by then, or it has no
    /// plan because it is already past its release time.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        match &self.plan {
            Ok(plan) => plan.start <= now,
            Err(NoPlan::DeadlinePassed { .. }) => true,
            Err(_) => false,
        }
    }
}

/// A held workload due for release.
#[derive(Debug, Clone, PartialEq)]
pub struct Due<K> {
    /// The workload.
    pub key: K,
    /// It is released above the cap to meet its deadline (Event `DeadlineOverCapacity`, metric).
    pub over_cap: bool,
}

/// Capacity in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Workloads.
    pub jobs: u32,
    /// GPUs.
    pub gpus: u32,
}

/// Which capped resource a ledger counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Jobs,
    Gpus,
}

impl Resource {
    fn load(self, demand: Demand) -> f64 {
        match self {
            Resource::Jobs => 1.0,
            Resource::Gpus => f64::from(demand.gpus),
        }
    }
}

/// Deadline order: `finish_by` (invalid constraints first, as in `plan_batch`), then admission.
type Order = (Option<DateTime<Utc>>, u64);

#[derive(Debug, Clone)]
struct HeldEntry {
    constraints: Constraints,
    demand: Demand,
    order: Order,
    scheduled: Scheduled,
    reservations: Vec<Reservation>,
}

#[derive(Debug, Clone)]
struct CommittedEntry {
    demand: Demand,
    reservations: Vec<Reservation>,
}

/// The capacity schedule of one forecast: committed (released, running) and held workloads, keyed
/// by `K` (for example namespace/name or a UID). See the module documentation.
#[derive(Debug, Clone)]
pub struct Fleet<K: Ord + Clone> {
    forecast: Forecast,
    caps: Caps,
    resources: Vec<Resource>,
    ledgers: Vec<CapacityLedger>,
    committed: BTreeMap<K, CommittedEntry>,
    held: BTreeMap<K, HeldEntry>,
    order: BTreeSet<(Order, K)>,
    next: u64,
}

impl<K: Ord + Clone + std::fmt::Debug> Fleet<K> {
    /// An empty fleet for `forecast` under `caps`.
    pub fn new(forecast: Forecast, caps: Caps) -> Result<Fleet<K>, FleetError> {
        let mut resources = Vec::new();
        let mut ledgers = Vec::new();
        for (resource, cap) in [(Resource::Jobs, caps.jobs), (Resource::Gpus, caps.gpus)] {
            if let Some(cap) = cap {
                ledgers.push(CapacityLedger::new(f64::from(cap), caps.slot)?);
                resources.push(resource);
            }
        }
        Ok(Fleet {
            forecast,
            caps,
            resources,
            ledgers,
            committed: BTreeMap::new(),
            held: BTreeMap::new(),
            order: BTreeSet::new(),
            next: 0,
        })
    }

    /// The forecast.
    pub fn forecast(&self) -> &Forecast {
        &self.forecast
    }

    /// The caps.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Held workloads.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Committed (released or running) workloads.
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// The plan of a held workload.
    pub fn get(&self, key: &K) -> Option<&Scheduled> {
        self.held.get(key).map(|h| &h.scheduled)
    }

    /// Held workloads in deadline order, with their plans.
    pub fn schedule(&self) -> impl Iterator<Item = (&K, &Scheduled)> + '_ {
        self.order
            .iter()
            .filter_map(|(_, k)| self.held.get(k).map(|h| (k, &h.scheduled)))
    }

    /// What the committed workloads use (the `status.capacityUsed` of the forecast).
    pub fn committed_usage(&self) -> Usage {
        self.committed
            .values()
            .fold(Usage::default(), |u, c| Usage {
                jobs: u.jobs.saturating_add(1),
                gpus: u.gpus.saturating_add(c.demand.gpus),
            })
    }

    /// Load reserved at `t` (committed and held), per capped resource; `None` for a resource
    /// without a cap.
    pub fn load_at(&self, t: DateTime<Utc>) -> (Option<f64>, Option<f64>) {
        let mut out = (None, None);
        for (resource, ledger) in self.resources.iter().zip(&self.ledgers) {
            match resource {
                Resource::Jobs => out.0 = Some(ledger.load_at(t)),
                Resource::Gpus => out.1 = Some(ledger.load_at(t)),
            }
        }
        out
    }

    /// Records a released or running workload: `windows` (what remains of its run) are reserved
    /// as they are and never moved. A held workload of the same key stops being held (its own
    /// reservation is given back first); a committed one is replaced.
    pub fn commit(&mut self, key: K, windows: &[Window], demand: Demand) -> Result<(), FleetError> {
        self.remove(&key);
        let mut reservations = Vec::with_capacity(self.ledgers.len());
        for (resource, ledger) in self.resources.iter().zip(self.ledgers.iter_mut()) {
            match ledger.reserve(windows, resource.load(demand)) {
                Ok(r) => reservations.push(r),
                Err(_) => {
                    for (ledger, r) in self.ledgers.iter_mut().zip(&reservations) {
                        ledger.release(r);
                    }
                    return Err(FleetError::TooManySlots(format!("{key:?}")));
                }
            }
        }
        self.committed.insert(
            key,
            CommittedEntry {
                demand,
                reservations,
            },
        );
        Ok(())
    }

    /// Releases a held workload as planned: its reservation stays and it becomes committed. A
    /// workload without a plan (the deadline rule releases it) is reserved from `now` for its
    /// duration. Returns whether it goes above the cap: its plan overflowed, or (without a plan)
    /// a slot of its run is over a cap.
    pub fn release(&mut self, key: &K, now: DateTime<Utc>) -> Result<bool, FleetError> {
        let Some(entry) = self.held.remove(key) else {
            return Err(FleetError::NotHeld(format!("{key:?}")));
        };
        self.order.remove(&(entry.order, key.clone()));
        match &entry.scheduled.plan {
            Ok(_) => {
                self.committed.insert(
                    key.clone(),
                    CommittedEntry {
                        demand: entry.demand,
                        reservations: entry.reservations,
                    },
                );
                Ok(entry.scheduled.overflow)
            }
            Err(_) => {
                let end = now
                    .checked_add_signed(entry.constraints.duration)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                let windows = vec![Window { start: now, end }];
                self.commit(key.clone(), &windows, entry.demand)?;
                Ok(self.over_cap(&windows))
            }
        }
    }

    /// Whether any capped resource exceeds its cap in a slot `windows` overlap.
    fn over_cap(&self, windows: &[Window]) -> bool {
        self.ledgers.iter().any(|ledger| {
            windows
                .iter()
                .any(|w| ledger.peak_between(w.start, w.end) > ledger.limit() * (1.0 + 1e-9) + 1e-9)
        })
    }

    /// Forgets a workload (finished, deleted, no longer carbonshift's), held or committed, and
    /// gives its reservation back. Returns whether it was known.
    pub fn remove(&mut self, key: &K) -> bool {
        if let Some(entry) = self.held.remove(key) {
            self.order.remove(&(entry.order, key.clone()));
            self.give_back(&entry.reservations);
            return true;
        }
        if let Some(entry) = self.committed.remove(key) {
            self.give_back(&entry.reservations);
            return true;
        }
        false
    }

    fn give_back(&mut self, reservations: &[Reservation]) {
        for (ledger, r) in self.ledgers.iter_mut().zip(reservations) {
            ledger.release(r);
        }
    }

    /// Plans one workload against the ledgers as they are and reserves the plan.
    fn plan_one(
        &mut self,
        constraints: &Constraints,
        demand: Demand,
        now: DateTime<Utc>,
    ) -> (Scheduled, Vec<Reservation>) {
        let resources = &self.resources;
        let mut caps: Vec<(&mut CapacityLedger, f64)> = self
            .ledgers
            .iter_mut()
            .zip(resources)
            .map(|(l, r)| (l, r.load(demand)))
            .collect();
        match plan_with_ledgers(&self.forecast, constraints, now, &mut caps) {
            Ok(planned) => (
                Scheduled {
                    plan: Ok(planned.plan),
                    overflow: planned.overflow,
                },
                planned.reservations,
            ),
            Err(error) => (
                Scheduled {
                    plan: Err(error),
                    overflow: false,
                },
                Vec::new(),
            ),
        }
    }

    /// The plan `constraints` would get if admitted now with [`Fleet::admit`], without admitting
    /// it (to compare candidate forecasts).
    pub fn probe(
        &self,
        constraints: &Constraints,
        demand: Demand,
        now: DateTime<Utc>,
    ) -> Scheduled {
        let caps: Vec<(&CapacityLedger, f64)> = self
            .ledgers
            .iter()
            .zip(&self.resources)
            .map(|(l, r)| (l, r.load(demand)))
            .collect();
        match plan_against(&self.forecast, constraints, now, &caps) {
            Ok((plan, overflow)) => Scheduled {
                plan: Ok(plan),
                overflow,
            },
            Err(error) => Scheduled {
                plan: Err(error),
                overflow: false,
            },
        }
    }

    fn insert(&mut self, key: K, constraints: Constraints, demand: Demand) -> Order {
        self.remove(&key);
        let order = (constraints.finish_by().ok(), self.next);
        self.next += 1;
        self.order.insert((order, key.clone()));
        self.held.insert(
            key,
            HeldEntry {
                constraints,
                demand,
                order,
                scheduled: Scheduled {
                    plan: Err(NoPlan::InvalidConstraints {
                        error: ConstraintError::BadLoad,
                    }),
                    overflow: false,
                },
                reservations: Vec::new(),
            },
        );
        order
    }

    fn plan_held(&mut self, key: &K, now: DateTime<Utc>) {
        let Some((constraints, demand)) = self
            .held
            .get(key)
            .map(|h| (h.constraints.clone(), h.demand))
        else {
            return;
        };
        let (scheduled, reservations) = self.plan_one(&constraints, demand, now);
        if let Some(entry) = self.held.get_mut(key) {
            entry.scheduled = scheduled;
            entry.reservations = reservations;
        }
    }

    /// Admits (or re-admits, after a change) a held workload by insertion: it is planned against
    /// the ledgers as they are; no other workload moves. O(log n + one plan). See the module
    /// documentation for how this relates to [`super::plan_batch`].
    pub fn admit(
        &mut self,
        key: K,
        constraints: Constraints,
        demand: Demand,
        now: DateTime<Utc>,
    ) -> &Scheduled {
        self.insert(key.clone(), constraints, demand);
        self.plan_held(&key, now);
        &self.held[&key].scheduled
    }

    /// Admits a held workload at its place in the deadline order and re-plans the held workloads
    /// due after it, so that the schedule equals [`super::plan_batch`] over all held workloads.
    /// O(log n + (suffix + 1) · plan).
    pub fn admit_exact(
        &mut self,
        key: K,
        constraints: Constraints,
        demand: Demand,
        now: DateTime<Utc>,
    ) -> &Scheduled {
        let order = self.insert(key.clone(), constraints, demand);
        let suffix: Vec<K> = self
            .order
            .range((order, key.clone())..)
            .map(|(_, k)| k.clone())
            .collect();
        for k in &suffix {
            if let Some(entry) = self.held.get_mut(k) {
                let reservations = std::mem::take(&mut entry.reservations);
                for (ledger, r) in self.ledgers.iter_mut().zip(&reservations) {
                    ledger.release(r);
                }
            }
        }
        for k in &suffix {
            self.plan_held(k, now);
        }
        &self.held[&key].scheduled
    }

    /// Re-plans every held workload from scratch, earliest deadline first, on top of the committed
    /// ones: equal to [`super::plan_batch_into`]. Call it when the forecast changes, and now and
    /// then to use the room that finished workloads left.
    pub fn replan(&mut self, now: DateTime<Utc>) {
        for ledger in &mut self.ledgers {
            if let Ok(fresh) = CapacityLedger::new(ledger.limit(), ledger.slot()) {
                *ledger = fresh;
            }
        }
        let committed: Vec<Vec<Reservation>> = self
            .committed
            .values()
            .map(|c| c.reservations.clone())
            .collect();
        for reservations in &committed {
            for (ledger, r) in self.ledgers.iter_mut().zip(reservations) {
                // Re-reserving what was reserved before cannot fail.
                let _ = ledger.reserve(&r.windows, r.load);
            }
        }
        let keys: Vec<K> = self.order.iter().map(|(_, k)| k.clone()).collect();
        for key in &keys {
            if let Some(entry) = self.held.get_mut(key) {
                entry.reservations.clear();
            }
        }
        for key in &keys {
            self.plan_held(key, now);
        }
    }

    /// Replaces the forecast (a refresh) and re-plans every held workload.
    pub fn set_forecast(&mut self, forecast: Forecast, now: DateTime<Utc>) {
        self.forecast = forecast;
        self.replan(now);
    }

    /// Held workloads due for release at `now`, in deadline order, with whether each goes above
    /// the cap.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<Due<K>> {
        self.schedule()
            .filter(|(_, s)| s.is_due(now))
            .map(|(k, s)| Due {
                key: k.clone(),
                over_cap: s.overflow || matches!(s.plan, Err(NoPlan::DeadlinePassed { .. })),
            })
            .collect()
    }

    /// Forgets ledger history before `t`.
    pub fn prune_before(&mut self, t: DateTime<Utc>) {
        for ledger in &mut self.ledgers {
            ledger.prune_before(t);
        }
    }
}

/// A held workload of [`schedule`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeldWorkload<K> {
    /// Its key.
    pub key: K,
    /// Its constraints.
    pub constraints: Constraints,
    /// What it needs of the caps.
    pub demand: Demand,
}

/// A released or running workload of [`schedule`].
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedWorkload<K> {
    /// Its key.
    pub key: K,
    /// What remains of its run.
    pub windows: Vec<Window>,
    /// What it needs of the caps.
    pub demand: Demand,
}

/// The operator's capacity schedule of one forecast from scratch: `committed` reserved as they
/// are, then `held` planned earliest deadline first (ties in input order); keys are distinct.
/// Returns the plans in input order. Equal to [`super::plan_batch_into`] on the same input.
pub fn schedule<K: Ord + Clone + std::fmt::Debug>(
    forecast: &Forecast,
    caps: Caps,
    committed: &[CommittedWorkload<K>],
    held: &[HeldWorkload<K>],
    now: DateTime<Utc>,
) -> Result<Vec<(K, Scheduled)>, FleetError> {
    let mut fleet = Fleet::new(forecast.clone(), caps)?;
    for c in committed {
        fleet.commit(c.key.clone(), &c.windows, c.demand)?;
    }
    for h in held {
        fleet.insert(h.key.clone(), h.constraints.clone(), h.demand);
    }
    fleet.replan(now);
    Ok(held
        .iter()
        .filter_map(|h| fleet.get(&h.key).map(|s| (h.key.clone(), s.clone())))
        .collect())
}

#[cfg(test)]
mod tests;
