//! The in-memory forecast store: the parsed forecast of every CarbonForecast, for the workload
//! controller to plan with.
//!
//! The store is **derived from CarbonForecast status only**; nothing else writes it:
//!
//! - At start-up (and when a replica becomes leader), [`ForecastStore::fill_from_api`] lists the
//!   CarbonForecasts and parses their status, so planning can start with the last known data at
//!   once, before any refresh. Start the workload controller only after it returns.
//! - While the controllers run, the forecast controller's own watch on CarbonForecasts feeds every
//!   event through a [`StoreFeeder`]: `Apply`/`InitApply` parse the object into a snapshot,
//!   `Delete` removes it, and a re-list (`Init` … `InitDone`) removes the objects that were
//!   deleted while the watch was down. The forecast controller therefore never writes the store
//!   itself: its status writes come back through the watch, exactly as they would to a new leader.
//!
//! A snapshot is immutable and shared (`Arc`); readers keep the one they got for a whole decision.
//! [`ForecastSnapshot::version`] changes only when the points or the horizon change, so a status
//! update that only moves `lastRefreshTime` or a condition does not invalidate plans.
//! [`ForecastStore::subscribe`] announces names whose version changed or that were removed, for a
//! controller that re-plans on forecast changes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::broadcast;
use tracing::warn;

use super::ForecastSelector;
use crate::api::CarbonForecast;
use crate::api::forecast::IntensityPoint;
use crate::forecast::status::{self, reason};
use crate::forecast::validate_allow_empty;
use crate::planner::{Forecast, Point};

/// Capacity of the change channel; a receiver that falls further behind gets
/// [`broadcast::error::RecvError::Lagged`] and should treat every forecast as changed.
pub const CHANGES_CAPACITY: usize = 256;

/// One CarbonForecast's data as of its last status, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastSnapshot {
    /// The CarbonForecast's name.
    pub name: String,
    /// The forecast points as the planner reads them (possibly empty before the first refresh):
    /// each value holds until the next point, the last for one median step; longer steps are gaps.
    pub forecast: Arc<Forecast>,
    /// Measured values for past slots (UK national only), possibly empty, with the same rules.
    pub actuals: Arc<Forecast>,
    /// Provider kind from the status, for example `ukCarbonIntensity`.
    pub provider: Option<String>,
    /// Region as the provider names it.
    pub region: Option<String>,
    /// A stable hash of the points and the horizon (16 hex digits, FNV-1a 64): equal data, equal
    /// version, across processes and releases. Store it with a plan to know whether the plan was
    /// made from the current forecast.
    pub version: String,
    /// When the data was last fetched successfully (`status.lastRefreshTime`).
    pub last_refresh: Option<DateTime<Utc>>,
    /// The object's staleness limit (`spec.staleAfter`, default 3h).
    pub stale_after: TimeDelta,
    /// Whether the `Ready` condition is `True`.
    pub ready: bool,
    /// `false` when the spec cannot build a provider (`Ready=False` with reason `InvalidSpec` or
    /// `MissingCredentials`): the points may come from an earlier spec (another region), so they
    /// are not fresh whatever their age.
    pub usable: bool,
    /// What may run at once on the nodes behind the forecast (`spec.capacity`).
    pub capacity: Option<crate::api::forecast::CapacitySpec>,
    /// The node selector of the nodes drawing from this grid (`spec.placement.nodeSelector`).
    pub placement: Option<std::collections::BTreeMap<String, String>>,
}

/// Why a status cannot become a snapshot.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnapshotError {
    /// The object has no name.
    #[error("the CarbonForecast has no name")]
    NoName,
    /// The points or actuals break the forecast rules.
    #[error("status of CarbonForecast {name}: {detail}")]
    Invalid {
        /// The object.
        name: String,
        /// What is wrong.
        detail: String,
    },
}

fn to_points(points: &[IntensityPoint]) -> Vec<Point> {
    points.iter().copied().map(Point::from).collect()
}

/// FNV-1a 64 over the canonical bytes of the points and the horizon.
fn version(points: &[Point], horizon_end: Option<DateTime<Utc>>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for p in points {
        feed(&p.start.timestamp_millis().to_be_bytes());
        feed(&p.intensity.to_bits().to_be_bytes());
    }
    feed(&[0xff]);
    if let Some(end) = horizon_end {
        feed(&end.timestamp_millis().to_be_bytes());
    }
    format!("{hash:016x}")
}

impl ForecastSnapshot {
    /// Parses the object's status (an absent status gives an empty snapshot). The points and
    /// actuals must obey the forecast rules (time order, unique, 0..=5000) and the horizon must
    /// lie after the last point; a status without `horizonEnd` gets the last interval (one hour
    /// for a single point) as the last point's length.
    pub fn from_object(object: &CarbonForecast) -> Result<Self, SnapshotError> {
        let name = object.metadata.name.clone().ok_or(SnapshotError::NoName)?;
        let invalid = |detail: String| SnapshotError::Invalid {
            name: name.clone(),
            detail,
        };
        let stale_after = status::timing(&object.spec).unwrap_or_default().stale_after;
        let empty = Default::default();
        let st = object.status.as_ref().unwrap_or(&empty);
        let points = to_points(&st.points);
        let actuals = to_points(&st.actuals);
        validate_allow_empty("status.points", &points).map_err(|e| invalid(e.to_string()))?;
        validate_allow_empty("status.actuals", &actuals).map_err(|e| invalid(e.to_string()))?;
        if let (Some(last), Some(end)) = (points.last(), st.horizon_end)
            && end <= last.start
        {
            return Err(invalid(format!(
                "horizonEnd {end} is not after the last point ({})",
                last.start
            )));
        }
        let forecast = Forecast::new(points).map_err(|e| invalid(e.to_string()))?;
        let actuals = Forecast::new(actuals).map_err(|e| invalid(e.to_string()))?;
        let ready = status::ready_condition(st);
        let unusable = ready.is_some_and(|c| {
            !c.is_true()
                && (c.reason == reason::INVALID_SPEC || c.reason == reason::MISSING_CREDENTIALS)
        });
        Ok(Self {
            version: version(forecast.points(), forecast.horizon_end()),
            name,
            forecast: Arc::new(forecast),
            actuals: Arc::new(actuals),
            provider: st.provider.clone(),
            region: st.region.clone(),
            last_refresh: st.last_refresh_time,
            stale_after,
            ready: ready.is_some_and(|c| c.is_true()),
            usable: !unusable,
            capacity: object.spec.capacity,
            placement: object.spec.placement.as_ref().map(|p| p.selector()),
        })
    }

    /// Whether the data may be used for new plans at `now`: there are points, the spec is usable
    /// and the last successful refresh is younger than `staleAfter`. Computed from time, so it is
    /// exact even between the controller's reconciles.
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        self.usable
            && !self.forecast.is_empty()
            && self
                .last_refresh
                .is_some_and(|last| now < last + self.stale_after)
    }

    /// Time since the last successful refresh, if any.
    pub fn age(&self, now: DateTime<Utc>) -> Option<TimeDelta> {
        self.last_refresh.map(|last| now - last)
    }

    /// The forecast points, in time order.
    pub fn points(&self) -> &[Point] {
        self.forecast.points()
    }

    /// End of the last known slot (`None` when there are no points).
    pub fn horizon_end(&self) -> Option<DateTime<Utc>> {
        self.forecast.horizon_end()
    }

    /// The value holding at `t`, if a point covers it (never interpolated or extrapolated).
    pub fn intensity_at(&self, t: DateTime<Utc>) -> Option<f64> {
        self.forecast.intensity_at(t)
    }
}

/// The parsed forecasts by CarbonForecast name. Cheap to clone; clones share the data.
#[derive(Clone)]
pub struct ForecastStore {
    inner: Arc<RwLock<HashMap<String, Arc<ForecastSnapshot>>>>,
    changes: broadcast::Sender<String>,
}

impl std::fmt::Debug for ForecastStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForecastStore")
            .field("forecasts", &self.names())
            .finish()
    }
}

impl Default for ForecastStore {
    fn default() -> Self {
        Self::new()
    }
}

impl ForecastStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            changes: broadcast::channel(CHANGES_CAPACITY).0,
        }
    }

    /// Parses `object` into its snapshot and stores it, replacing the previous one. An invalid
    /// status removes the object's entry (planning must not use data it cannot trust) and is
    /// logged. Returns whether the stored version changed (a new object counts as changed).
    pub fn apply(&self, object: &CarbonForecast) -> bool {
        match ForecastSnapshot::from_object(object) {
            Ok(snapshot) => {
                let name = snapshot.name.clone();
                let version = snapshot.version.clone();
                let snapshot_capacity = snapshot.capacity;
                let snapshot_placement = snapshot.placement.clone();
                let previous = self
                    .inner
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name.clone(), Arc::new(snapshot));
                // A new cap or node selector re-plans the forecast's workloads like new data.
                let changed = previous.is_none_or(|p| {
                    p.version != version
                        || p.capacity != snapshot_capacity
                        || p.placement != snapshot_placement
                });
                if changed {
                    // No receiver is fine: nobody re-plans on changes yet.
                    let _ = self.changes.send(name);
                }
                changed
            }
            Err(error) => {
                warn!(%error, "ignoring the CarbonForecast's status: it is not a usable forecast");
                self.remove(&object.name_any())
            }
        }
    }

    /// Forgets the forecast; returns whether there was one.
    pub fn remove(&self, name: &str) -> bool {
        let removed = self
            .inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
            .is_some();
        if removed {
            let _ = self.changes.send(name.to_string());
        }
        removed
    }

    /// The snapshot of the forecast named `name`, if the object exists.
    pub fn get(&self, name: &str) -> Option<Arc<ForecastSnapshot>> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every snapshot, in name order.
    pub fn snapshots(&self) -> Vec<Arc<ForecastSnapshot>> {
        let mut all: Vec<_> = self
            .inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The stored names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.snapshots().iter().map(|s| s.name.clone()).collect()
    }

    /// Number of stored forecasts.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the contents with `objects` (those whose status does not parse are left out).
    pub fn fill(&self, objects: &[CarbonForecast]) {
        let keep: HashSet<String> = objects.iter().map(ResourceExt::name_any).collect();
        for name in self.names() {
            if !keep.contains(&name) {
                self.remove(&name);
            }
        }
        for object in objects {
            self.apply(object);
        }
    }

    /// Lists every CarbonForecast that `selector` selects and builds a store from their status.
    /// Call it at start-up, before the workload controller starts.
    pub async fn fill_from_api(
        client: Client,
        selector: &ForecastSelector,
    ) -> Result<ForecastStore, kube::Error> {
        let params = match selector.label_selector() {
            Some(s) => ListParams::default().labels(&s),
            None => ListParams::default(),
        };
        let list = Api::<CarbonForecast>::all(client).list(&params).await?;
        let store = ForecastStore::new();
        store.fill(&list.items);
        Ok(store)
    }

    /// Names of forecasts whose version changed or that were removed, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

/// What one watch event did to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedOutcome {
    /// The forecast whose snapshot was (re)computed, if any.
    pub applied: Option<String>,
    /// Forecasts removed from the store.
    pub removed: Vec<String>,
}

/// Applies CarbonForecast watch events to a [`ForecastStore`] (see the module documentation).
#[derive(Debug)]
pub struct StoreFeeder {
    store: ForecastStore,
    relisting: Option<HashSet<String>>,
}

impl StoreFeeder {
    /// A feeder for `store`.
    pub fn new(store: ForecastStore) -> Self {
        Self {
            store,
            relisting: None,
        }
    }

    /// Applies one event and says which forecast it stored and which it removed (deleted
    /// objects, or objects missing from a re-list), so the caller can update or drop per-object
    /// state such as metric series.
    pub fn handle(&mut self, event: watcher::Event<CarbonForecast>) -> FeedOutcome {
        let mut outcome = FeedOutcome::default();
        match event {
            watcher::Event::Apply(object) => {
                self.store.apply(&object);
                outcome.applied = Some(object.name_any());
            }
            watcher::Event::Delete(object) => {
                let name = object.name_any();
                if self.store.remove(&name) {
                    outcome.removed.push(name);
                }
            }
            watcher::Event::Init => self.relisting = Some(HashSet::new()),
            watcher::Event::InitApply(object) => {
                let name = object.name_any();
                if let Some(seen) = &mut self.relisting {
                    seen.insert(name.clone());
                }
                self.store.apply(&object);
                outcome.applied = Some(name);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.relisting.take() {
                    for name in self.store.names() {
                        if !seen.contains(&name) && self.store.remove(&name) {
                            outcome.removed.push(name);
                        }
                    }
                }
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::forecast::IntensityPoint;
    use crate::api::{CarbonForecastStatus, Condition};
    use crate::controller::fixtures::{FORECASTS_PATH, MockApiServer, Route, points, t};

    const NOW: &str = "2026-11-28T15:47:00Z";

    fn status(values: &[f64]) -> CarbonForecastStatus {
        CarbonForecastStatus {
            provider: Some("ukCarbonIntensity".into()),
            region: Some("national".into()),
            points: points(t("2026-11-28T15:00Z"), TimeDelta::hours(1), values),
            horizon_end: Some(
                t("2026-11-28T15:00Z") + TimeDelta::hours(i64::try_from(values.len()).unwrap_or(0)),
            ),
            last_refresh_time: Some(t(NOW)),
            observed_generation: Some(1),
            conditions: vec![Condition::new(
                "Ready",
                true,
                "Refreshed",
                "ok",
                Some(1),
                t(NOW),
            )],
            ..CarbonForecastStatus::default()
        }
    }

    fn object(name: &str, status: Option<CarbonForecastStatus>) -> CarbonForecast {
        CarbonForecast::test(name).with_status(status)
    }

    fn snapshot(object: &CarbonForecast) -> ForecastSnapshot {
        ForecastSnapshot::from_object(object).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_status_becomes_a_snapshot() {
        let s = snapshot(&object("uk", Some(status(&[300.0, 200.0, 100.0]))));
        assert_eq!(s.name, "uk");
        assert_eq!(s.points().len(), 3);
        assert_eq!(s.points()[2].intensity, 100.0);
        assert_eq!(s.horizon_end(), Some(t("2026-11-28T18:00Z")));
        assert_eq!(s.provider.as_deref(), Some("ukCarbonIntensity"));
        assert_eq!(s.region.as_deref(), Some("national"));
        assert_eq!(s.last_refresh, Some(t(NOW)));
        assert_eq!(s.stale_after, TimeDelta::hours(3));
        assert!(s.ready && s.usable);
        assert_eq!(s.intensity_at(t(NOW)), Some(300.0));
        assert_eq!(s.intensity_at(t("2026-11-28T18:00Z")), None);
        assert_eq!(s.intensity_at(t("2026-11-28T14:59Z")), None);
        assert_eq!(
            s.age(t(NOW) + TimeDelta::minutes(5)),
            Some(TimeDelta::minutes(5))
        );
        // Fresh until just before last refresh + staleAfter.
        assert!(s.is_fresh(t(NOW) + TimeDelta::hours(3) - TimeDelta::seconds(1)));
        assert!(!s.is_fresh(t(NOW) + TimeDelta::hours(3)));
    }

    #[test]
    fn an_object_without_status_is_known_but_not_fresh() {
        let s = snapshot(&object("new", None));
        assert!(s.points().is_empty());
        assert_eq!(s.horizon_end(), None);
        assert_eq!(s.last_refresh, None);
        assert!(!s.is_fresh(t(NOW)));
        assert_eq!(s.age(t(NOW)), None);
        assert_eq!(s.intensity_at(t(NOW)), None);
    }

    #[test]
    fn the_stale_limit_comes_from_the_spec() {
        let o =
            object("uk", Some(status(&[1.0]))).spec_with(|s| s.stale_after = Some("30m".into()));
        let s = snapshot(&o);
        assert_eq!(s.stale_after, TimeDelta::minutes(30));
        assert!(!s.is_fresh(t(NOW) + TimeDelta::minutes(30)));
    }

    #[test]
    fn data_under_an_unusable_spec_is_never_fresh() {
        for (reason, usable) in [
            ("InvalidSpec", false),
            ("MissingCredentials", false),
            ("Stale", true),
            ("RefreshFailed", true),
        ] {
            let mut st = status(&[1.0, 2.0]);
            st.conditions = vec![Condition::new("Ready", false, reason, "", Some(1), t(NOW))];
            let s = snapshot(&object("uk", Some(st)));
            assert_eq!(s.usable, usable, "{reason}");
            assert!(!s.ready);
            assert_eq!(s.is_fresh(t(NOW)), usable, "{reason}");
        }
    }

    #[test]
    fn versions_follow_the_points_only_and_are_stable() {
        let base = snapshot(&object("uk", Some(status(&[300.0, 200.0]))));
        // A fixed figure (checked against an independent FNV-1a implementation): the version is
        // persisted with plans, so it must not change between releases for the same data.
        assert_eq!(base.version, "613806502c050e7a");
        let mut other = status(&[300.0, 200.0]);
        other.last_refresh_time = Some(t(NOW) + TimeDelta::minutes(30));
        other.last_error = Some("boom".into());
        other.conditions = vec![Condition::new(
            "Ready",
            false,
            "Stale",
            "old",
            Some(2),
            t(NOW),
        )];
        assert_eq!(snapshot(&object("uk", Some(other))).version, base.version);
        let changed = snapshot(&object("uk", Some(status(&[300.0, 201.0]))));
        assert_ne!(changed.version, base.version);
        // The horizon follows from the points (one median step after the last), so a status
        // horizonEnd that says otherwise does not make a new version.
        let mut longer = status(&[300.0, 200.0]);
        longer.horizon_end = Some(t("2026-11-28T18:00Z"));
        assert_eq!(snapshot(&object("uk", Some(longer))).version, base.version);
    }

    #[test]
    fn invalid_statuses_are_refused() {
        let mut unsorted = status(&[1.0, 2.0]);
        unsorted.points.swap(0, 1);
        let e = ForecastSnapshot::from_object(&object("uk", Some(unsorted)));
        assert!(
            e.as_ref().is_err_and(|e| e.to_string().starts_with("status of CarbonForecast uk: status.points[1] starts at 2026-11-28T15:00:00Z, before")),
            "{e:?}"
        );
        let mut out_of_range = status(&[1.0]);
        out_of_range.actuals = vec![IntensityPoint {
            start: t(NOW),
            intensity: -1.0,
        }];
        assert!(ForecastSnapshot::from_object(&object("uk", Some(out_of_range))).is_err());
        let mut early = status(&[1.0, 2.0]);
        early.horizon_end = Some(t("2026-11-28T16:00Z"));
        assert_eq!(
            ForecastSnapshot::from_object(&object("uk", Some(early))).map_err(|e| e.to_string()),
            Err("status of CarbonForecast uk: horizonEnd 2026-11-28 16:00:00 UTC is not after the last point (2026-11-28 16:00:00 UTC)".into())
        );
        let mut nameless = object("uk", None);
        nameless.metadata.name = None;
        assert_eq!(
            ForecastSnapshot::from_object(&nameless),
            Err(SnapshotError::NoName)
        );
    }

    #[test]
    fn the_horizon_is_one_median_step_after_the_last_point() {
        let mut st = status(&[1.0, 2.0]);
        st.horizon_end = None;
        assert_eq!(
            snapshot(&object("uk", Some(st))).horizon_end(),
            Some(t("2026-11-28T17:00Z"))
        );
        let mut one = status(&[1.0]);
        one.horizon_end = None;
        assert_eq!(
            snapshot(&object("uk", Some(one))).horizon_end(),
            Some(t("2026-11-28T16:00Z"))
        );
    }

    #[test]
    fn the_store_applies_removes_and_announces_version_changes() {
        let store = ForecastStore::new();
        let mut changes = store.subscribe();
        assert!(store.apply(&object("uk", Some(status(&[1.0, 2.0])))));
        assert_eq!(changes.try_recv().ok().as_deref(), Some("uk"));
        // The same points with another refresh time: stored, but not a change.
        let mut later = status(&[1.0, 2.0]);
        later.last_refresh_time = Some(t(NOW) + TimeDelta::minutes(30));
        assert!(!store.apply(&object("uk", Some(later))));
        assert!(changes.try_recv().is_err());
        assert_eq!(
            store.get("uk").and_then(|s| s.last_refresh),
            Some(t(NOW) + TimeDelta::minutes(30))
        );
        assert!(store.apply(&object("de", None)));
        assert_eq!(store.names(), ["de", "uk"]);
        assert_eq!(store.len(), 2);
        // An invalid status removes the entry rather than keep data that no longer matches.
        let mut bad = status(&[1.0, 2.0]);
        bad.points[1].intensity = f64::NAN;
        assert!(store.apply(&object("uk", Some(bad))));
        assert!(store.get("uk").is_none());
        assert!(store.remove("de"));
        assert!(!store.remove("de"));
        assert!(store.is_empty());
        let announced: Vec<String> = std::iter::from_fn(|| changes.try_recv().ok()).collect();
        assert_eq!(announced, ["de", "uk", "de"]);
    }

    #[test]
    fn fill_replaces_the_contents() {
        let store = ForecastStore::new();
        store.apply(&object("old", None));
        store.fill(&[object("uk", Some(status(&[1.0]))), object("de", None)]);
        assert_eq!(store.names(), ["de", "uk"]);
    }

    #[tokio::test]
    async fn fill_from_api_reads_every_status_before_any_refresh() {
        let (client, api) = MockApiServer::client();
        api.route(Route::list(
            FORECASTS_PATH,
            "CarbonForecastList",
            vec![
                object("uk", Some(status(&[300.0, 200.0, 100.0]))).to_json(),
                object("new", None).to_json(),
            ],
        ));
        let store = ForecastStore::fill_from_api(client, &ForecastSelector::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        api.verify();
        assert_eq!(store.names(), ["new", "uk"]);
        let uk = store.get("uk").unwrap_or_else(|| panic!("uk missing"));
        assert!(uk.is_fresh(t(NOW)));
        assert_eq!(uk.intensity_at(t(NOW)), Some(300.0));
        assert!(!store.get("new").is_some_and(|s| s.is_fresh(t(NOW))));
    }

    #[test]
    fn the_feeder_follows_the_watch_and_relists() {
        let store = ForecastStore::new();
        let mut feeder = StoreFeeder::new(store.clone());
        let uk = object("uk", Some(status(&[1.0, 2.0])));
        let outcome = feeder.handle(watcher::Event::Apply(uk.clone()));
        assert_eq!(outcome.applied.as_deref(), Some("uk"));
        assert!(outcome.removed.is_empty());
        feeder.handle(watcher::Event::Apply(object("de", None)));
        feeder.handle(watcher::Event::Apply(object("fr", None)));
        let outcome = feeder.handle(watcher::Event::Delete(object("fr", None)));
        assert_eq!(outcome.removed, ["fr"]);
        assert_eq!(
            feeder.handle(watcher::Event::Delete(object("fr", None))),
            FeedOutcome::default(),
            "deleting an unknown object changes nothing"
        );
        // The watch restarts; "de" was deleted meanwhile.
        feeder.handle(watcher::Event::Init);
        let outcome = feeder.handle(watcher::Event::InitApply(uk));
        assert_eq!(outcome.applied.as_deref(), Some("uk"));
        assert_eq!(
            store.names(),
            ["de", "uk"],
            "nothing is removed before the list is complete"
        );
        let outcome = feeder.handle(watcher::Event::InitDone);
        assert_eq!(outcome.removed, ["de"]);
        assert_eq!(store.names(), ["uk"]);
        // InitDone without Init (cannot happen) removes nothing.
        assert_eq!(
            feeder.handle(watcher::Event::InitDone),
            FeedOutcome::default()
        );
    }
}
