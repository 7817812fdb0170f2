//! Property tests of the fleet planner (`carbonshift::planner::fleet`) against references:
//!
//! - the capacity schedule (from scratch, after any admissions and a re-plan, by exact admission
//!   in any order, and by insertion in deadline order) equals `plan_batch` on the same input;
//! - insertion in any order moves no held workload and stays feasible;
//! - no deadline is missed because of the cap: every job with a plan uncapped has one capped, and
//!   it ends by `finish_by − margin`;
//! - a slot over a cap is always touched by a deadline release (an overflow plan);
//! - the operator's schedule, seeded from CarbonWorkloads (`lifecycle::fleet`), equals
//!   `plan_batch` over them, with released workloads reserved as `plan_batch_into` reserves them;
//! - placement agrees exactly with a brute-force compatibility check (every node labelling over a
//!   finite label universe), never picks an incompatible pool, and picks the cleanest.

use std::collections::BTreeMap;

use carbonshift::api::workload::{JobRef, PowerEstimate};
use carbonshift::api::{CarbonWorkloadSpec, CarbonWorkloadStatus, Phase};
use carbonshift::lifecycle::fleet::{Member, member, seed};
use carbonshift::planner::fleet::{
    Caps, Decision, Demand, Excluded, Fleet, HeldWorkload, NodeRequirement, NodeTerm, Operator,
    PodPlacement, Pool, Scheduled, place, schedule,
};
use carbonshift::planner::{
    BatchJob, Capacity, Constraints, Forecast, NoPlan, Plan, Point, plan, plan_batch,
};
use carbonshift::planner::{CapacityLedger, Window, plan_batch_into};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

/// 2023-01-01T00:00Z.
fn base() -> DateTime<Utc> {
    DateTime::from_timestamp(1_672_531_200, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn at(minute: i64) -> DateTime<Utc> {
    base() + TimeDelta::minutes(minute)
}

/// A forecast of `values`, one every 30 minutes from `base()`.
fn forecast(values: &[u32]) -> Forecast {
    let points = values
        .iter()
        .enumerate()
        .map(|(i, &v)| Point {
            start: at(30 * i as i64),
            intensity: f64::from(v),
        })
        .collect();
    Forecast::new(points).unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Debug, Clone)]
struct Job {
    duration: i64,
    slack: i64,
    interruptible: bool,
    margin: i64,
    gpus: u32,
}

impl Job {
    fn constraints(&self, now: i64) -> Constraints {
        let c = Constraints::new(at(0), TimeDelta::minutes(self.duration))
            .with_deadline(at(now + self.duration + self.slack))
            .with_margin(TimeDelta::minutes(self.margin));
        if self.interruptible {
            c.interruptible()
        } else {
            c
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    values: Vec<u32>,
    now: i64,
    jobs: Vec<Job>,
    cap: u32,
    gpus: bool,
    slot: i64,
}

impl Case {
    fn forecast(&self) -> Forecast {
        forecast(&self.values)
    }

    fn caps(&self) -> Caps {
        Caps {
            jobs: (!self.gpus).then_some(self.cap),
            gpus: self.gpus.then_some(self.cap),
            slot: TimeDelta::minutes(self.slot),
        }
    }

    fn load(&self, job: &Job) -> f64 {
        if self.gpus { f64::from(job.gpus) } else { 1.0 }
    }

    fn held(&self, order: &[usize]) -> Vec<HeldWorkload<usize>> {
        order
            .iter()
            .map(|&i| HeldWorkload {
                key: i,
                constraints: self.jobs[i].constraints(self.now),
                demand: Demand {
                    gpus: self.jobs[i].gpus,
                },
            })
            .collect()
    }

    /// `plan_batch` over the jobs in `order`: the plans and overflow flags, keyed by job.
    fn reference(&self, order: &[usize]) -> BTreeMap<usize, (Result<Plan, NoPlan>, bool)> {
        let batch: Vec<BatchJob> = order
            .iter()
            .map(|&i| BatchJob {
                constraints: self.jobs[i].constraints(self.now),
                load: self.load(&self.jobs[i]),
            })
            .collect();
        let capacity = Capacity {
            limit: f64::from(self.cap),
            slot: TimeDelta::minutes(self.slot),
        };
        let result = plan_batch(&self.forecast(), &batch, capacity, at(self.now))
            .unwrap_or_else(|e| panic!("{e}"));
        order
            .iter()
            .enumerate()
            .map(|(pos, &i)| {
                (
                    i,
                    (result.plans[pos].clone(), result.overflow.contains(&pos)),
                )
            })
            .collect()
    }
}

fn of_fleet(fleet: &Fleet<usize>) -> BTreeMap<usize, (Result<Plan, NoPlan>, bool)> {
    fleet
        .schedule()
        .map(|(k, s)| (*k, (s.plan.clone(), s.overflow)))
        .collect()
}

fn job() -> impl Strategy<Value = Job> {
    (
        prop_oneof![(1i64..=8).prop_map(|k| 30 * k), 1i64..=240],
        prop_oneof![Just(-60i64), 0i64..=60, 0i64..=1_440],
        prop::bool::weighted(0.25),
        prop_oneof![Just(0i64), Just(5)],
        0u32..=4,
    )
        .prop_map(|(duration, slack, interruptible, margin, gpus)| Job {
            duration,
            slack,
            interruptible,
            margin,
            gpus,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            prop_oneof![(0u32..=5).prop_map(|v| v * 50), 0u32..=500],
            8..=48,
        ),
        (0i64..=8).prop_map(|k| 15 * k),
        prop::collection::vec(job(), 1..=14),
        1u32..=4,
        any::<bool>(),
        prop_oneof![Just(15i64), Just(30), Just(60)],
    )
        .prop_map(|(values, now, jobs, cap, gpus, slot)| Case {
            values,
            now,
            jobs,
            cap,
            gpus,
            slot,
        })
}

/// A case and a permutation of its jobs.
fn case_and_order() -> impl Strategy<Value = (Case, Vec<usize>)> {
    case().prop_flat_map(|c| {
        let order: Vec<usize> = (0..c.jobs.len()).collect();
        (Just(c), Just(order).prop_shuffle())
    })
}

fn new_fleet(c: &Case) -> Fleet<usize> {
    Fleet::new(c.forecast(), c.caps()).unwrap_or_else(|e| panic!("{e}"))
}

fn admit(f: &mut Fleet<usize>, c: &Case, i: usize, exact: bool) -> Scheduled {
    let constraints = c.jobs[i].constraints(c.now);
    let demand = Demand {
        gpus: c.jobs[i].gpus,
    };
    if exact {
        f.admit_exact(i, constraints, demand, at(c.now)).clone()
    } else {
        f.admit(i, constraints, demand, at(c.now)).clone()
    }
}

/// Load per slot of the plans, each job counted once per slot it touches.
fn slot_loads(
    c: &Case,
    plans: &BTreeMap<usize, (Result<Plan, NoPlan>, bool)>,
) -> BTreeMap<i64, (f64, bool)> {
    let slot_ms = c.slot * 60_000;
    let mut loads: BTreeMap<i64, (f64, bool)> = BTreeMap::new();
    for (&i, (p, overflow)) in plans {
        let Ok(p) = p else { continue };
        let mut slots: Vec<i64> = p
            .windows
            .iter()
            .flat_map(|w| {
                let (a, b) = (w.start.timestamp_millis(), w.end.timestamp_millis());
                a.div_euclid(slot_ms)..=(b - 1).div_euclid(slot_ms)
            })
            .collect();
        slots.sort_unstable();
        slots.dedup();
        for s in slots {
            let e = loads.entry(s).or_insert((0.0, false));
            e.0 += c.load(&c.jobs[i]);
            e.1 |= *overflow;
        }
    }
    loads
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn the_schedule_from_scratch_equals_plan_batch(c in case()) {
        let order: Vec<usize> = (0..c.jobs.len()).collect();
        let plans = schedule(&c.forecast(), c.caps(), &[], &c.held(&order), at(c.now))
            .unwrap_or_else(|e| panic!("{e}"));
        let got: BTreeMap<usize, (Result<Plan, NoPlan>, bool)> =
            plans.into_iter().map(|(k, s)| (k, (s.plan, s.overflow))).collect();
        prop_assert_eq!(got, c.reference(&order));
    }

    #[test]
    fn admissions_in_any_order_then_a_replan_equal_plan_batch((c, order) in case_and_order()) {
        let mut f = new_fleet(&c);
        for &i in &order {
            admit(&mut f, &c, i, false);
        }
        f.replan(at(c.now));
        prop_assert_eq!(of_fleet(&f), c.reference(&order));
    }

    #[test]
    fn exact_admission_in_any_order_equals_plan_batch((c, order) in case_and_order()) {
        let mut f = new_fleet(&c);
        for (n, &i) in order.iter().enumerate() {
            admit(&mut f, &c, i, true);
            // After every admission, not only at the end.
            prop_assert_eq!(of_fleet(&f), c.reference(&order[..=n]));
        }
    }

    #[test]
    fn insertion_in_deadline_order_equals_plan_batch(c in case()) {
        let mut order: Vec<usize> = (0..c.jobs.len()).collect();
        order.sort_by_key(|&i| c.jobs[i].constraints(c.now).finish_by().ok());
        let mut f = new_fleet(&c);
        for &i in &order {
            admit(&mut f, &c, i, false);
        }
        prop_assert_eq!(of_fleet(&f), c.reference(&order));
    }

    #[test]
    fn insertion_in_any_order_moves_nobody_and_stays_feasible((c, order) in case_and_order()) {
        let mut f = new_fleet(&c);
        for &i in &order {
            let before = of_fleet(&f);
            admit(&mut f, &c, i, false);
            let after = of_fleet(&f);
            for (k, p) in &before {
                prop_assert_eq!(after.get(k), Some(p), "job {} moved", k);
            }
        }
        let plans = of_fleet(&f);
        for (slot, (load, overflow)) in slot_loads(&c, &plans) {
            prop_assert!(load <= f64::from(c.cap) + 1e-9 || overflow, "slot {} load {}", slot, load);
        }
    }

    #[test]
    fn no_deadline_is_missed_because_of_the_cap(c in case()) {
        let order: Vec<usize> = (0..c.jobs.len()).collect();
        let capped = c.reference(&order);
        let f = c.forecast();
        let mut fleet = new_fleet(&c);
        for &i in &order {
            admit(&mut fleet, &c, i, false);
        }
        for (i, job) in c.jobs.iter().enumerate() {
            let constraints = job.constraints(c.now);
            let free = plan(&f, &constraints, at(c.now));
            for got in [&capped[&i].0, &of_fleet(&fleet)[&i].0] {
                match (&free, got) {
                    (Ok(_), Ok(p)) => {
                        let finish_by = constraints.finish_by().unwrap_or_else(|e| panic!("{e}"));
                        prop_assert!(p.start >= at(c.now));
                        prop_assert!(p.end <= finish_by - constraints.margin, "job {} ends {} after {}", i, p.end, finish_by);
                        prop_assert_eq!(p.run_time(), constraints.duration);
                    }
                    (Err(a), Err(b)) => prop_assert_eq!(a, b),
                    (a, b) => prop_assert!(false, "job {}: uncapped {:?}, capped {:?}", i, a, b),
                }
            }
        }
    }

    #[test]
    fn a_slot_over_the_cap_is_always_a_deadline_release(c in case()) {
        let order: Vec<usize> = (0..c.jobs.len()).collect();
        let plans = c.reference(&order);
        for (slot, (load, overflow)) in slot_loads(&c, &plans) {
            prop_assert!(load <= f64::from(c.cap) + 1e-9 || overflow, "slot {} load {}", slot, load);
        }
        // And the fleet's ledger agrees with the brute-force count.
        let mut fleet = new_fleet(&c);
        for &i in &order {
            admit(&mut fleet, &c, i, true);
        }
        for (slot, (load, _)) in slot_loads(&c, &of_fleet(&fleet)) {
            let t = DateTime::from_timestamp_millis(slot * c.slot * 60_000).unwrap_or_default();
            let (jobs, gpus) = fleet.load_at(t);
            let got = if c.gpus { gpus } else { jobs };
            prop_assert!(got.is_some_and(|g| (g - load).abs() < 1e-9), "slot {}: {:?} vs {}", slot, got, load);
        }
    }
}

// ----- the operator's fleet: seeded from CarbonWorkloads -----

/// The CarbonWorkload the operator would cache for job `i` of `c`, held (`Deferred`), with GPUs
/// per pod × pods = the job's GPUs.
fn workload_of(c: &Case, i: usize) -> (CarbonWorkloadSpec, CarbonWorkloadStatus) {
    let job = &c.jobs[i];
    let spec = CarbonWorkloadSpec {
        job_ref: JobRef::new("batch/v1", "Job", &format!("j{i}"), &format!("u{i}")),
        forecast: "f".into(),
        candidates: Vec::new(),
        submitted_at: at(0),
        duration: format!("{}m", job.duration),
        deadline: at(c.now + job.duration + job.slack),
        latest_start: at(c.now + job.slack),
        interruptible: job.interruptible,
        dry_run: false,
        power_watts: 100.0,
        power_source: "estimated".into(),
        power_estimate: Some(PowerEstimate {
            gpus_per_pod: u64::from(job.gpus),
            cpu_cores_per_pod: 0.0,
            parallelism: 1,
        }),
        pue: 1.0,
    };
    let status = CarbonWorkloadStatus {
        phase: Some(Phase::Deferred),
        ..CarbonWorkloadStatus::default()
    };
    (spec, status)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// The operator's capacity schedule (`lifecycle::fleet::seed` over the members it derives
    /// from the cached CarbonWorkloads, listed in any order) equals `plan_batch` on the same
    /// workloads; the members carry the constraints `plan_batch` gets.
    #[test]
    fn the_operators_seeded_schedule_equals_plan_batch((c, order) in case_and_order()) {
        // The operator has one margin for all.
        let mut c = c;
        let margin = c.jobs[0].margin;
        for job in &mut c.jobs {
            job.margin = margin;
        }
        let members: Vec<(usize, Member)> = order
            .iter()
            .map(|&i| {
                let (spec, status) = workload_of(&c, i);
                (i, member(&spec, Some(&status), None, TimeDelta::minutes(margin), at(c.now)))
            })
            .collect();
        for (i, m) in &members {
            match m {
                Member::Held { constraints, demand } => {
                    prop_assert_eq!(constraints, &c.jobs[*i].constraints(c.now));
                    prop_assert_eq!(demand.gpus, c.jobs[*i].gpus);
                }
                other => prop_assert!(false, "job {} is {:?}", i, other),
            }
        }
        let fleet = seed(c.forecast(), c.caps(), members, at(c.now)).unwrap_or_else(|e| panic!("{e}"));
        let by_key: Vec<usize> = (0..c.jobs.len()).collect();
        prop_assert_eq!(of_fleet(&fleet), c.reference(&by_key));
    }

    /// Released workloads are reserved from their start and never moved; the held ones are
    /// planned around them exactly as `plan_batch_into` plans on top of those reservations.
    #[test]
    fn released_workloads_are_reserved_and_the_held_planned_around_them(c in case(), released in prop::collection::vec(any::<bool>(), 14)) {
        let mut c = c;
        let margin = c.jobs[0].margin;
        for job in &mut c.jobs {
            job.margin = margin;
        }
        let now = at(c.now);
        let mut members = Vec::new();
        let mut ledger = CapacityLedger::new(f64::from(c.cap), TimeDelta::minutes(c.slot)).unwrap_or_else(|e| panic!("{e}"));
        let mut held = Vec::new();
        for (i, &is_released) in released.iter().enumerate().take(c.jobs.len()) {
            let (spec, mut status) = workload_of(&c, i);
            if is_released {
                status.phase = Some(Phase::Running);
                status.released_at = Some(now);
                status.started_at = Some(now);
                let end = now + TimeDelta::minutes(c.jobs[i].duration);
                ledger
                    .reserve(&[Window { start: now, end }], c.load(&c.jobs[i]))
                    .unwrap_or_else(|e| panic!("{e}"));
            } else {
                held.push(i);
            }
            members.push((i, member(&spec, Some(&status), None, TimeDelta::minutes(margin), now)));
        }
        let fleet = seed(c.forecast(), c.caps(), members, now).unwrap_or_else(|e| panic!("{e}"));
        let batch: Vec<BatchJob> = held
            .iter()
            .map(|&i| BatchJob { constraints: c.jobs[i].constraints(c.now), load: c.load(&c.jobs[i]) })
            .collect();
        let reference = plan_batch_into(&c.forecast(), &batch, &mut ledger, now);
        let expected: BTreeMap<usize, (Result<Plan, NoPlan>, bool)> = held
            .iter()
            .enumerate()
            .map(|(pos, &i)| (i, (reference.plans[pos].clone(), reference.overflow.contains(&pos))))
            .collect();
        prop_assert_eq!(of_fleet(&fleet), expected);
        prop_assert_eq!(fleet.committed_len(), c.jobs.len() - held.len());
    }
}

// ----- placement -----

const KEYS: [&str; 3] = ["region", "pool", "zone"];
/// Values requirements name.
const NAMED: [&str; 6] = ["a", "b", "c", "1", "2", "3"];
/// Values a node label may have: the named ones, one never named, and integers around the
/// thresholds.
const NODE_VALUES: [&str; 9] = ["a", "b", "c", "z", "0", "1", "2", "3", "4"];

fn operator() -> impl Strategy<Value = Operator> {
    prop_oneof![
        Just(Operator::In),
        Just(Operator::NotIn),
        Just(Operator::Exists),
        Just(Operator::DoesNotExist),
        Just(Operator::Gt),
        Just(Operator::Lt),
    ]
}

fn requirement() -> impl Strategy<Value = NodeRequirement> {
    (
        prop::sample::select(KEYS.to_vec()),
        operator(),
        prop::collection::vec(prop::sample::select(NAMED.to_vec()), 1..=2),
        prop::sample::select(vec!["1", "2", "3"]),
    )
        .prop_map(|(key, operator, values, threshold)| NodeRequirement {
            key: key.to_string(),
            operator,
            values: match operator {
                Operator::In | Operator::NotIn => values.iter().map(|v| v.to_string()).collect(),
                Operator::Exists | Operator::DoesNotExist => Vec::new(),
                Operator::Gt | Operator::Lt => vec![threshold.to_string()],
            },
        })
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(KEYS.to_vec()).prop_map(String::from),
        prop::sample::select(vec!["a", "b", "1", "3"]).prop_map(String::from),
        0..=2,
    )
}

fn template() -> impl Strategy<Value = PodPlacement> {
    (
        labels(),
        prop::collection::vec(
            prop::collection::vec(requirement(), 0..=3)
                .prop_map(|requirements| NodeTerm { requirements }),
            0..=2,
        ),
    )
        .prop_map(|(node_selector, required_terms)| PodPlacement {
            node_selector,
            required_terms,
        })
}

/// Whether `r` holds on `node` (reference semantics of `NodeSelectorRequirement`).
fn matches(node: &BTreeMap<&str, &str>, r: &NodeRequirement) -> bool {
    let value = node.get(r.key.as_str()).copied();
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator {
        Operator::In => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
        Operator::NotIn => value.is_none_or(|v| !r.values.iter().any(|x| x == v)),
        Operator::Exists => value.is_some(),
        Operator::DoesNotExist => value.is_none(),
        Operator::Gt => value
            .and_then(int)
            .zip(int(&r.values[0]))
            .is_some_and(|(a, b)| a > b),
        Operator::Lt => value
            .and_then(int)
            .zip(int(&r.values[0]))
            .is_some_and(|(a, b)| a < b),
    }
}

/// Brute force: some node labelled with `pool` (every other key absent or any node value) runs
/// every template.
fn brute_compatible(pool: &BTreeMap<String, String>, templates: &[PodPlacement]) -> bool {
    let free: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| !pool.contains_key(*k))
        .collect();
    let choices = NODE_VALUES.len() + 1;
    let total = choices.pow(free.len() as u32);
    templates.iter().all(|t| {
        (0..total).any(|mut code| {
            let mut node: BTreeMap<&str, &str> =
                pool.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            for key in &free {
                let pick = code % choices;
                code /= choices;
                if pick > 0 {
                    node.insert(key, NODE_VALUES[pick - 1]);
                }
            }
            let selector_ok = t
                .node_selector
                .iter()
                .all(|(k, v)| node.get(k.as_str()) == Some(&v.as_str()));
            let affinity_ok = t.required_terms.is_empty()
                || t.required_terms.iter().any(|term| {
                    !term.requirements.is_empty()
                        && term.requirements.iter().all(|r| matches(&node, r))
                });
            selector_ok && affinity_ok
        })
    })
}

#[derive(Debug, Clone)]
struct PoolCase {
    selector: BTreeMap<String, String>,
    values: Vec<u32>,
    cap: Option<u32>,
    busy: Vec<Job>,
}

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        labels(),
        prop::collection::vec((0u32..=5).prop_map(|v| v * 50), 8..=24),
        prop::option::of(1u32..=2),
        prop::collection::vec(job(), 0..=4),
    )
        .prop_map(|(selector, values, cap, busy)| PoolCase {
            selector,
            values,
            cap,
            busy,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compatibility_equals_the_brute_force_check(
        pool in labels(),
        templates in prop::collection::vec(template(), 0..=2),
    ) {
        let got = carbonshift::planner::fleet::compatible(&pool, &templates);
        prop_assert_eq!(got.is_ok(), brute_compatible(&pool, &templates), "{:?}", got);
    }

    #[test]
    fn placement_never_picks_an_incompatible_pool_and_picks_the_cleanest(
        pools in prop::collection::vec(pool_case(), 1..=4),
        templates in prop::collection::vec(template(), 0..=2),
        workload in job(),
        now in (0i64..=4).prop_map(|k| 15 * k),
    ) {
        let names: Vec<String> = (0..pools.len()).map(|i| format!("pool-{i}")).collect();
        let fleets: Vec<Fleet<usize>> = pools
            .iter()
            .map(|p| {
                let mut f = Fleet::new(forecast(&p.values), Caps { jobs: p.cap, gpus: None, slot: TimeDelta::minutes(30) })
                    .unwrap_or_else(|e| panic!("{e}"));
                for (i, j) in p.busy.iter().enumerate() {
                    f.admit(i, j.constraints(now), Demand::default(), at(now));
                }
                f
            })
            .collect();
        let candidates: Vec<Pool<'_, usize>> = pools
            .iter()
            .zip(&fleets)
            .zip(&names)
            .map(|((p, f), name)| Pool { name, selector: Some(&p.selector), fleet: Some(f) })
            .collect();
        let constraints = workload.constraints(now);
        let decision = place(&candidates, &constraints, Demand::default(), &templates, None, at(now));
        let compatible: Vec<bool> = pools.iter().map(|p| brute_compatible(&p.selector, &templates)).collect();
        match decision {
            Ok(Decision::Placed(p)) => {
                prop_assert!(compatible[p.index], "picked incompatible {}", p.forecast);
                prop_assert_eq!(&p.forecast, &names[p.index]);
                prop_assert_eq!(&p.node_selector, &pools[p.index].selector);
                prop_assert_eq!(&p.scheduled, &fleets[p.index].probe(&constraints, Demand::default(), at(now)));
                let mut others = (0..pools.len()).filter(|&i| i != p.index);
                for a in &p.alternatives {
                    let i = others.next().unwrap_or(usize::MAX);
                    prop_assert_eq!(&a.forecast, &names[i]);
                    let incompatible = matches!(a.excluded, Some(Excluded::Incompatible(_)));
                    prop_assert_eq!(incompatible, !compatible[i]);
                    // The chosen plan is no dirtier than any compatible alternative of the same
                    // class (within the cap, or over it), and within the cap beats over it.
                    if let (Ok(chosen), false, Some(e)) =
                        (&p.scheduled.plan, incompatible, a.expected_intensity)
                    {
                        prop_assert!(
                            (p.scheduled.overflow, chosen.expected_intensity) <= (a.overflow, e),
                            "chose {} ({}, {}) over {} ({}, {})",
                            p.forecast, p.scheduled.overflow, chosen.expected_intensity, a.forecast, a.overflow, e
                        );
                    }
                }
            }
            Ok(Decision::Kept { .. }) => prop_assert!(false, "not started, cannot be kept"),
            Err(e) => {
                // Only when no pool is compatible, or the constraints are invalid for all.
                let invalid = constraints.validate().is_err();
                prop_assert!(invalid || compatible.iter().all(|c| !c), "{}", e);
            }
        }
    }
}
