//! The fleets of the forecasts that need one — a capacity cap (`spec.capacity`), or candidates
//! of a workload with `carbonshift.dev/forecasts` — shared by every workload controller: the
//! shell around [`crate::planner::fleet`] and [`crate::lifecycle::fleet`].
//!
//! - **Seeded from the caches, not from the order of events.** A capped forecast's fleet is
//!   built, the first time a workload of it is reconciled, from every cached CarbonWorkload that
//!   names it ([`lifecycle::fleet::seed`]): released and running workloads reserved, held ones
//!   planned earliest deadline first — the schedule of `plan_batch` over them, whatever order the
//!   reconciles come in, after a start or a leader hand-over alike. The caller waits for the
//!   caches' first list before that.
//! - **Kept in step by the reconciles.** Each reconcile passes its workload's
//!   [`Member`](lifecycle::fleet::Member) part: a new or changed held workload is admitted by
//!   insertion (no other held workload moves), a released one is committed, a finished one gives
//!   its reservation back and marks the fleet for a re-plan.
//! - **Re-planned on changes.** New forecast data, a new cap or a new node selector re-plans the
//!   whole fleet at once (the store's announcement reconciles every waiting workload). Finishes
//!   are re-planned by [`Fleets::tick`] every [`REPLAN_INTERVAL`]: the workloads whose plan moved
//!   are announced ([`Fleets::subscribe`]) and reconciled, and each capped forecast's
//!   `status.capacityUsed` is written when it changed.
//!
//! One mutex guards every fleet: each operation on it is an insertion or a lookup (tens of
//! microseconds at 10,000 held, benchmark (g)); only the seed and a forecast change re-plan a
//! whole fleet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::broadcast;

use crate::api::forecast::{CapacitySpec, CapacityUsed};
use crate::api::workload::PlacementStatus;
use crate::controller::ForecastSnapshot;
use crate::lifecycle::fleet::{Member, seed};
use crate::planner::fleet::{
    Caps, Decision, Fleet, FleetError, PlacementError, PodPlacement, Pool, Scheduled, place,
};

/// How often the fleets that lost workloads are re-planned and the capacity in use published.
pub const REPLAN_INTERVAL: Duration = Duration::from_secs(5);

/// Capacity ledger slots are at most this long (a workload occupies every slot it overlaps).
pub const MAX_SLOT: TimeDelta = TimeDelta::minutes(5);

/// The key of a workload in its fleet: its CarbonWorkload's `namespace/name`.
pub type Key = String;

/// The ledger slot for `forecast`: its step, at most [`MAX_SLOT`], at least a second.
pub fn slot(forecast: &crate::planner::Forecast) -> TimeDelta {
    forecast
        .median_step()
        .clamp(TimeDelta::seconds(1), MAX_SLOT)
}

/// The caps of a forecast with `capacity` (none without).
pub fn caps(capacity: Option<&CapacitySpec>, forecast: &crate::planner::Forecast) -> Caps {
    capacity.map_or_else(Caps::none, |c| c.caps(slot(forecast)))
}

struct Entry {
    fleet: Fleet<Key>,
    /// The data version and the cap the fleet plans with.
    version: String,
    capacity: Option<CapacitySpec>,
    /// What each workload was last synced as (a held one is re-admitted only when it changed).
    members: HashMap<Key, Member>,
    /// Committed workloads released above the cap.
    over_cap: BTreeSet<Key>,
    /// A workload left: re-plan at the next tick.
    dirty: bool,
    /// The `capacityUsed` last written.
    published: Option<CapacityUsed>,
}

impl Entry {
    fn new(
        snapshot: &ForecastSnapshot,
        members: Vec<(Key, Member)>,
        now: DateTime<Utc>,
    ) -> Result<Entry, FleetError> {
        let forecast = snapshot.forecast.as_ref().clone();
        let caps = caps(snapshot.capacity.as_ref(), &forecast);
        let fleet = seed(forecast, caps, members.clone(), now)?;
        Ok(Entry {
            fleet,
            version: snapshot.version.clone(),
            capacity: snapshot.capacity,
            members: members
                .into_iter()
                .filter(|(_, m)| !matches!(m, Member::Out))
                .collect(),
            over_cap: BTreeSet::new(),
            dirty: false,
            published: None,
        })
    }

    /// Brings the workload `key` in step with `member`; returns its plan when it is held.
    fn sync(&mut self, key: &str, member: &Member, now: DateTime<Utc>) -> Option<Scheduled> {
        let same = self.members.get(key) == Some(member);
        match member {
            Member::Held {
                constraints,
                demand,
            } => {
                if !same || self.fleet.get(&key.to_string()).is_none() {
                    self.fleet
                        .admit(key.to_string(), constraints.clone(), *demand, now);
                    self.members.insert(key.to_string(), member.clone());
                }
                self.fleet.get(&key.to_string()).cloned()
            }
            Member::Committed { windows, demand } => {
                if !same {
                    // Reserving what a workload runs cannot be refused for the cap; only an
                    // absurd span of slots fails, and then it is simply not counted.
                    let _ = self.fleet.commit(key.to_string(), windows, *demand);
                    self.members.insert(key.to_string(), member.clone());
                }
                None
            }
            Member::Out => {
                self.leave(key);
                None
            }
        }
    }

    fn leave(&mut self, key: &str) {
        let key = key.to_string();
        if self.fleet.remove(&key) {
            self.dirty = true;
        }
        self.members.remove(&key);
        self.over_cap.remove(&key);
    }

    /// Whether the entry plans with other data or another cap than `snapshot`'s.
    fn outdated(&self, snapshot: &ForecastSnapshot) -> bool {
        self.version != snapshot.version || self.capacity != snapshot.capacity
    }

    fn usage(&self) -> Option<CapacityUsed> {
        let capacity = self.capacity.as_ref()?;
        let used = self.fleet.committed_usage();
        let over = u32::try_from(self.over_cap.len()).unwrap_or(u32::MAX);
        Some(CapacityUsed::new(capacity, used.jobs, used.gpus, over))
    }
}

/// Where [`Fleets::place`] put a workload, and its plan there.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// The chosen CarbonForecast.
    pub forecast: String,
    /// The plan there.
    pub scheduled: Scheduled,
    /// What `status.placement` records.
    pub status: PlacementStatus,
    /// The data versions of the candidates it was placed with: new data places it again.
    pub versions: Vec<Option<String>>,
}

/// What one [`Fleets::tick`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tick {
    /// The `capacityUsed` of each capped forecast whose usage changed since it was last
    /// published (mark it published with [`Fleets::published`]).
    pub usage: Vec<(String, CapacityUsed)>,
    /// The forecasts whose fleet was re-planned.
    pub replanned: Vec<String>,
}

/// The fleets, keyed by CarbonForecast name (module documentation).
#[derive(Debug)]
pub struct Fleets {
    inner: Mutex<HashMap<String, Entry>>,
    /// The last placement of each workload with candidates, kept while it is held.
    placed: Mutex<HashMap<Key, Placed>>,
    moved: broadcast::Sender<Key>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("version", &self.version)
            .field("held", &self.fleet.held_len())
            .field("committed", &self.fleet.committed_len())
            .finish_non_exhaustive()
    }
}

impl Default for Fleets {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            placed: Mutex::default(),
            moved: broadcast::channel(4096).0,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the seed of a forecast's fleet is made of: every cached workload's key and part, for the
/// forecast named.
pub type SeedFn<'a> = &'a dyn Fn(&str) -> Vec<(Key, Member)>;

impl Fleets {
    /// Announces the workloads whose plan a re-plan moved (lagging receivers reconcile every
    /// waiting workload instead, as for a forecast change).
    pub fn subscribe(&self) -> broadcast::Receiver<Key> {
        self.moved.subscribe()
    }

    /// The entry of `snapshot`'s forecast, made or renewed when needed.
    fn entry<'m>(
        map: &'m mut HashMap<String, Entry>,
        snapshot: &ForecastSnapshot,
        members: SeedFn<'_>,
        now: DateTime<Utc>,
    ) -> Result<&'m mut Entry, FleetError> {
        let fresh = match map.get(&snapshot.name) {
            Some(entry) if entry.capacity != snapshot.capacity => true,
            Some(_) => false,
            None => true,
        };
        if fresh {
            // Only a capped fleet needs the others: without a cap nobody affects anybody.
            let seeded = if snapshot.capacity.is_some() {
                members(&snapshot.name)
            } else {
                Vec::new()
            };
            map.insert(snapshot.name.clone(), Entry::new(snapshot, seeded, now)?);
        }
        let entry = map
            .get_mut(&snapshot.name)
            .ok_or_else(|| FleetError::NotHeld(snapshot.name.clone()))?;
        if entry.outdated(snapshot) {
            entry
                .fleet
                .set_forecast(snapshot.forecast.as_ref().clone(), now);
            entry.version = snapshot.version.clone();
        }
        Ok(entry)
    }

    /// Brings the workload `key` of the capped forecast `snapshot` in step with `member` and
    /// returns its plan when it is held. `members` seeds the fleet the first time.
    pub fn sync(
        &self,
        snapshot: &ForecastSnapshot,
        key: &str,
        member: &Member,
        members: SeedFn<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Scheduled>, FleetError> {
        let mut map = lock(&self.inner);
        let entry = Self::entry(&mut map, snapshot, members, now)?;
        Ok(entry.sync(key, member, now))
    }

    /// Places the held workload `key` over its `candidates` (each with its snapshot, `None`
    /// without data) and admits it into the chosen one's fleet; a workload already placed with
    /// the same constraints and forecast data keeps its place. `own`: its pod templates'
    /// scheduling constraints.
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &self,
        candidates: &[(String, Option<std::sync::Arc<ForecastSnapshot>>)],
        key: &str,
        member: &Member,
        own: &[PodPlacement],
        members: SeedFn<'_>,
        now: DateTime<Utc>,
    ) -> Result<Placed, PlacementError> {
        let Member::Held {
            constraints,
            demand,
        } = member
        else {
            return Err(PlacementError::NoCandidates);
        };
        let mut map = lock(&self.inner);
        let mut with_data = Vec::new();
        for (name, snapshot) in candidates {
            if let Some(snapshot) = snapshot.as_ref().filter(|s| !s.forecast.is_empty())
                && Self::entry(&mut map, snapshot, members, now).is_ok()
            {
                with_data.push(name.clone());
            }
        }
        let versions: Vec<Option<String>> = candidates
            .iter()
            .map(|(_, s)| s.as_ref().map(|s| s.version.clone()))
            .collect();
        let mut placed = lock(&self.placed);
        if let Some(previous) = placed.get(key)
            && previous.versions == versions
            && let Some(entry) = map.get(&previous.forecast)
            && entry.members.get(key) == Some(member)
            && let Some(scheduled) = entry.fleet.get(&key.to_string())
        {
            let mut kept = previous.clone();
            kept.scheduled = scheduled.clone();
            return Ok(kept);
        }
        // Placed anew: nothing of its own may count against it.
        for entry in map.values_mut() {
            entry.leave(key);
        }
        let decision = {
            let pools: Vec<Pool<'_, Key>> = candidates
                .iter()
                .map(|(name, snapshot)| Pool {
                    name,
                    selector: snapshot.as_ref().and_then(|s| s.placement.as_ref()),
                    fleet: with_data
                        .contains(name)
                        .then(|| map.get(name).map(|e| &e.fleet))
                        .flatten(),
                })
                .collect();
            place(&pools, constraints, *demand, own, None, now)?
        };
        let Decision::Placed(p) = decision else {
            return Err(PlacementError::NoCandidates);
        };
        let status = PlacementStatus::from_placement(&p);
        let scheduled = match map.get_mut(&p.forecast) {
            Some(entry) => entry.sync(key, member, now).unwrap_or(p.scheduled),
            None => p.scheduled,
        };
        let result = Placed {
            forecast: p.forecast,
            scheduled,
            status,
            versions,
        };
        placed.insert(key.to_string(), result.clone());
        Ok(result)
    }

    /// The workload `key` of forecast `forecast` was released at `now`: it is committed as
    /// planned. Returns whether it went above the cap.
    pub fn released(&self, forecast: &str, key: &str, now: DateTime<Utc>) -> bool {
        lock(&self.placed).remove(key);
        let mut map = lock(&self.inner);
        let Some(entry) = map.get_mut(forecast) else {
            return false;
        };
        let over = entry.fleet.release(&key.to_string(), now).unwrap_or(false);
        if over {
            entry.over_cap.insert(key.to_string());
        }
        // The next reconcile syncs it as committed from its actual start.
        entry.members.remove(key);
        over
    }

    /// Forgets the workload `key` everywhere (finished, deleted, no longer carbonshift's).
    pub fn forget(&self, key: &str) {
        lock(&self.placed).remove(key);
        for entry in lock(&self.inner).values_mut() {
            entry.leave(key);
        }
    }

    /// Drops the fleets of forecasts that are gone.
    pub fn retain(&self, forecast_exists: impl Fn(&str) -> bool) {
        lock(&self.inner).retain(|name, _| forecast_exists(name));
    }

    /// Re-plans the fleets that lost workloads since the last tick, announces the workloads whose
    /// plan moved, and returns what to publish.
    pub fn tick(&self, now: DateTime<Utc>) -> Tick {
        let mut moved = Vec::new();
        let mut usage = Vec::new();
        let mut replanned = Vec::new();
        {
            let mut map = lock(&self.inner);
            for (name, entry) in map.iter_mut() {
                if entry.dirty {
                    entry.dirty = false;
                    let before: BTreeMap<Key, Scheduled> = entry
                        .fleet
                        .schedule()
                        .map(|(k, s)| (k.clone(), s.clone()))
                        .collect();
                    entry.fleet.replan(now);
                    replanned.push(name.clone());
                    moved.extend(
                        entry
                            .fleet
                            .schedule()
                            .filter(|(k, s)| before.get(*k) != Some(*s))
                            .map(|(k, _)| k.clone()),
                    );
                }
                entry.fleet.prune_before(now - TimeDelta::hours(1));
                if let Some(used) = entry.usage()
                    && entry.published.as_ref() != Some(&used)
                {
                    usage.push((name.clone(), used));
                }
            }
        }
        for key in moved {
            // No receiver (no controller running) is fine.
            let _ = self.moved.send(key);
        }
        Tick { usage, replanned }
    }

    /// Records that `used` was written to forecast `name`'s status.
    pub fn published(&self, name: &str, used: CapacityUsed) {
        if let Some(entry) = lock(&self.inner).get_mut(name) {
            entry.published = Some(used);
        }
    }

    /// Held and committed workloads of forecast `name`, for tests and the debug log.
    pub fn sizes(&self, name: &str) -> Option<(usize, usize)> {
        lock(&self.inner)
            .get(name)
            .map(|e| (e.fleet.held_len(), e.fleet.committed_len()))
    }
}
