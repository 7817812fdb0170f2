//! Unit tests of the fleet planner on hand-built cases (the property tests against `plan_batch`
//! are in tests/fleet_props.rs).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::planner::forecast::dt;
use crate::planner::{PlanReason, hourly_points};

const H: i64 = 3_600_000;

fn at(hours: i64) -> DateTime<Utc> {
    dt(hours * H)
}

/// Hourly values from hour 0: hour 3 is the cleanest, then 4, 5, 2.
fn forecast() -> Forecast {
    let values = [300.0, 250.0, 120.0, 50.0, 60.0, 70.0, 200.0, 300.0];
    Forecast::new(hourly_points(at(0), &values)).unwrap_or_else(|e| panic!("{e}"))
}

fn job(hours: i64, deadline: i64) -> Constraints {
    Constraints::new(at(0), TimeDelta::hours(hours)).with_deadline(at(deadline))
}

fn caps(jobs: Option<u32>, gpus: Option<u32>) -> Caps {
    Caps {
        jobs,
        gpus,
        slot: TimeDelta::hours(1),
    }
}

fn fleet(jobs: Option<u32>, gpus: Option<u32>) -> Fleet<&'static str> {
    Fleet::new(forecast(), caps(jobs, gpus)).unwrap_or_else(|e| panic!("{e}"))
}

fn start(s: Option<&Scheduled>) -> Option<DateTime<Utc>> {
    s.and_then(|s| s.plan.as_ref().ok()).map(|p| p.start)
}

fn held(key: &'static str, c: Constraints) -> HeldWorkload<&'static str> {
    HeldWorkload {
        key,
        constraints: c,
        demand: Demand::default(),
    }
}

#[test]
fn a_cap_of_one_spreads_the_clean_hours_earliest_deadline_first() {
    // Listed latest deadline first: EDF gives c (due at 6) the cleanest hour, then b, then a.
    let input = [
        held("a", job(1, 8)),
        held("b", job(1, 7)),
        held("c", job(1, 6)),
    ];
    let plans = schedule(&forecast(), caps(Some(1), None), &[], &input, at(0))
        .unwrap_or_else(|e| panic!("{e}"));
    let starts: Vec<_> = plans.iter().map(|(k, s)| (*k, start(Some(s)))).collect();
    assert_eq!(
        starts,
        [("a", Some(at(5))), ("b", Some(at(4))), ("c", Some(at(3)))]
    );
    assert!(plans.iter().all(|(_, s)| !s.overflow));
    let reasons: Vec<_> = plans
        .iter()
        .filter_map(|(_, s)| s.plan.as_ref().ok().map(|p| p.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            PlanReason::CapacityShifted,
            PlanReason::CapacityShifted,
            PlanReason::LowestIntensity
        ]
    );
    // Without a cap all three take hour 3.
    let free =
        schedule(&forecast(), Caps::none(), &[], &input, at(0)).unwrap_or_else(|e| panic!("{e}"));
    assert!(free.iter().all(|(_, s)| start(Some(s)) == Some(at(3))));
}

#[test]
fn committed_workloads_count_against_the_cap_and_are_never_moved() {
    let running = CommittedWorkload {
        key: "running",
        windows: vec![Window {
            start: at(2),
            end: at(4),
        }],
        demand: Demand::default(),
    };
    let plans = schedule(
        &forecast(),
        caps(Some(1), None),
        &[running],
        &[held("a", job(1, 8))],
        at(0),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(start(Some(&plans[0].1)), Some(at(4)));

    let mut f = fleet(Some(1), None);
    f.admit("a", job(1, 8), Demand::default(), at(0));
    assert_eq!(start(f.get(&"a")), Some(at(3)));
    assert_eq!(f.release(&"a", at(3)), Ok(false));
    assert_eq!((f.held_len(), f.committed_len()), (0, 1));
    // A re-plan keeps the released workload where it is; the newcomer goes around it.
    f.admit("b", job(1, 8), Demand::default(), at(3));
    f.replan(at(3));
    assert_eq!(start(f.get(&"b")), Some(at(4)));
    assert_eq!(f.load_at(at(3)), (Some(1.0), None));
    assert_eq!(f.committed_usage(), Usage { jobs: 1, gpus: 0 });
}

#[test]
fn the_cap_yields_to_deadlines_and_says_so() {
    // At hour 1 both must run in hours 1–2 (deadline 3, 1 h long): a takes the cleaner hour 2,
    // b hour 1; c has no room left and overflows at its latest start, hour 2.
    let mut f = fleet(Some(1), None);
    f.admit("a", job(1, 3), Demand::default(), at(1));
    f.admit("c0", job(1, 3), Demand::default(), at(1));
    assert_eq!(start(f.get(&"c0")), Some(at(1)));
    assert_eq!(f.release(&"c0", at(1)), Ok(false));
    f.admit("b", job(1, 3), Demand::default(), at(1));
    assert_eq!(start(f.get(&"a")), Some(at(2)));
    let b = f.get(&"b").cloned();
    assert_eq!(start(b.as_ref()), Some(at(2)));
    assert_eq!(b.as_ref().map(|s| s.overflow), Some(true));
    assert_eq!(
        b.and_then(|s| s.plan.ok()).map(|p| p.reason),
        Some(PlanReason::CapacityOverflow)
    );
    assert!(f.due(at(1)).is_empty());
    assert_eq!(
        f.due(at(2)),
        [
            Due {
                key: "a",
                over_cap: false
            },
            Due {
                key: "b",
                over_cap: true
            }
        ]
    );
    assert_eq!(f.release(&"a", at(2)), Ok(false));
    assert_eq!(f.release(&"b", at(2)), Ok(true));
    assert_eq!(f.load_at(at(2)), (Some(2.0), None));
    assert_eq!(f.committed_usage(), Usage { jobs: 3, gpus: 0 });
    assert_eq!(
        f.release(&"b", at(2)),
        Err(FleetError::NotHeld("\"b\"".into()))
    );
}

#[test]
fn a_workload_past_its_release_time_is_due_now_and_reserved_from_now() {
    let mut f = fleet(Some(1), None);
    f.commit(
        "other",
        &[Window {
            start: at(0),
            end: at(2),
        }],
        Demand::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let late = Constraints::new(at(0), TimeDelta::hours(1)).with_deadline(at(1));
    let s = f.admit("late", late, Demand::default(), at(1)).clone();
    assert!(matches!(s.plan, Err(NoPlan::DeadlinePassed { .. })));
    assert_eq!(
        f.due(at(1)),
        [Due {
            key: "late",
            over_cap: true
        }]
    );
    // Released over the running one: hour 1 now holds two.
    assert_eq!(f.release(&"late", at(1)), Ok(true));
    assert_eq!(f.load_at(at(1)), (Some(2.0), None));
    assert!(f.remove(&"late"));
    assert!(!f.remove(&"late"));
    assert_eq!(f.load_at(at(1)), (Some(1.0), None));
}

#[test]
fn gpus_are_capped_by_the_sum_of_requests() {
    let mut f = fleet(None, Some(8));
    let four = Demand { gpus: 4 };
    for key in ["a", "b", "c"] {
        f.admit(key, job(1, 8), four, at(0));
    }
    assert_eq!(start(f.get(&"a")), Some(at(3)));
    assert_eq!(start(f.get(&"b")), Some(at(3)));
    assert_eq!(start(f.get(&"c")), Some(at(4)));
    assert_eq!(f.load_at(at(3)), (None, Some(8.0)));
    // With both caps, the job cap of 1 binds first.
    let mut both = fleet(Some(1), Some(8));
    both.admit("a", job(1, 8), four, at(0));
    both.admit("b", job(1, 8), four, at(0));
    assert_eq!(start(both.get(&"b")), Some(at(4)));
    // A workload that needs more GPUs than the cap never fits: it overflows at its latest start.
    let s = f
        .admit("huge", job(1, 8), Demand { gpus: 9 }, at(0))
        .clone();
    assert!(s.overflow);
    assert_eq!(start(Some(&s)), Some(at(7)));
}

#[test]
fn insertion_moves_nobody_and_exact_admission_restores_deadline_order() {
    let mut insert = fleet(Some(1), None);
    insert.admit("late", job(1, 8), Demand::default(), at(0));
    insert.admit("early", job(1, 6), Demand::default(), at(0));
    // Insertion: the first-come keeps hour 3; the newcomer takes hour 4.
    assert_eq!(start(insert.get(&"late")), Some(at(3)));
    assert_eq!(start(insert.get(&"early")), Some(at(4)));
    let mut exact = fleet(Some(1), None);
    exact.admit_exact("late", job(1, 8), Demand::default(), at(0));
    exact.admit_exact("early", job(1, 6), Demand::default(), at(0));
    assert_eq!(start(exact.get(&"early")), Some(at(3)));
    assert_eq!(start(exact.get(&"late")), Some(at(4)));
    // A re-plan gives the insertion fleet the same schedule.
    insert.replan(at(0));
    let a: Vec<_> = insert.schedule().map(|(k, s)| (*k, s.clone())).collect();
    let b: Vec<_> = exact.schedule().map(|(k, s)| (*k, s.clone())).collect();
    assert_eq!(a, b);
    // Removing a held workload gives its hour back; re-admitting a key replaces it.
    assert!(exact.remove(&"early"));
    exact.replan(at(0));
    assert_eq!(start(exact.get(&"late")), Some(at(3)));
    exact.admit("late", job(2, 8), Demand::default(), at(0));
    assert_eq!(exact.held_len(), 1);
    assert_eq!(start(exact.get(&"late")), Some(at(3)));
    assert_eq!(exact.load_at(at(4)), (Some(1.0), None));
}

#[test]
fn a_new_forecast_replans_the_held_but_not_the_committed() {
    let mut f = fleet(Some(1), None);
    f.admit("a", job(1, 8), Demand::default(), at(0));
    f.admit("b", job(1, 8), Demand::default(), at(0));
    assert_eq!(f.release(&"a", at(3)), Ok(false));
    let flipped = Forecast::new(hourly_points(
        at(0),
        &[300.0, 250.0, 120.0, 50.0, 600.0, 600.0, 10.0, 300.0],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    f.set_forecast(flipped, at(3));
    assert_eq!(start(f.get(&"b")), Some(at(6)));
    assert_eq!(f.load_at(at(3)), (Some(1.0), None));
    f.prune_before(at(5));
    assert_eq!(f.load_at(at(3)), (Some(0.0), None));
}

#[test]
fn invalid_caps_are_errors() {
    let zero = Caps {
        jobs: Some(0),
        gpus: None,
        slot: TimeDelta::hours(1),
    };
    assert!(matches!(
        Fleet::<u32>::new(forecast(), zero),
        Err(FleetError::Capacity(_))
    ));
    let no_slot = Caps {
        jobs: Some(1),
        gpus: None,
        slot: TimeDelta::zero(),
    };
    assert!(Fleet::<u32>::new(forecast(), no_slot).is_err());
    assert!(!Caps::none().is_limited());
    assert!(caps(None, Some(1)).is_limited());
}

// ----- placement -----

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn requirement(key: &str, operator: Operator, values: &[&str]) -> NodeRequirement {
    NodeRequirement {
        key: key.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

const REGION: &str = "topology.kubernetes.io/region";

#[test]
fn label_keys() {
    for good in [
        "pool",
        "topology.kubernetes.io/region",
        "example.com/node-pool_2.a",
        "A9",
    ] {
        assert_eq!(label_key_problem(good), None, "{good}");
    }
    let long = "a".repeat(64);
    for bad in [
        "",
        "/pool",
        "Example.com/pool",
        "example.com/",
        "-pool",
        "pool-",
        "po ol",
        long.as_str(),
        "a/b/c",
    ] {
        assert!(label_key_problem(bad).is_some(), "{bad:?}");
    }
}

#[test]
fn selector_additions_add_missing_keys_and_refuse_conflicting_ones() {
    let pool = labels(&[(REGION, "eu-west-2"), ("pool", "gpu")]);
    assert_eq!(
        selector_additions(&labels(&[("pool", "gpu"), ("disk", "ssd")]), &pool),
        Ok(labels(&[(REGION, "eu-west-2")]))
    );
    let conflict = selector_additions(&labels(&[(REGION, "eu-west-3")]), &pool);
    assert_eq!(
        conflict,
        Err(Incompatible::ConflictingKey {
            key: REGION.into(),
            workload: "eu-west-3".into(),
            pool: "eu-west-2".into()
        })
    );
    assert_eq!(
        conflict.err().map(|e| e.to_string()),
        Some(format!(
            "nodeSelector {REGION}=\"eu-west-3\" conflicts with the forecast's placement {REGION}=\"eu-west-2\""
        ))
    );
}

#[test]
fn required_affinity_drops_only_pools_it_contradicts() {
    let pool = labels(&[(REGION, "eu-west-2"), ("gen", "5")]);
    let with = |terms: Vec<NodeTerm>| {
        compatible(
            &pool,
            &[PodPlacement {
                node_selector: BTreeMap::new(),
                required_terms: terms,
            }],
        )
    };
    let term = |rs: Vec<NodeRequirement>| NodeTerm { requirements: rs };
    let ok = [
        requirement(REGION, Operator::In, &["eu-west-1", "eu-west-2"]),
        requirement(REGION, Operator::NotIn, &["eu-west-3"]),
        requirement(REGION, Operator::Exists, &[]),
        requirement("zone", Operator::DoesNotExist, &[]),
        requirement("zone", Operator::In, &["a"]),
        requirement("gen", Operator::Gt, &["4"]),
        requirement("gen", Operator::Lt, &["6"]),
    ];
    for r in ok {
        assert_eq!(with(vec![term(vec![r.clone()])]), Ok(()), "{r:?}");
    }
    let bad = [
        requirement(REGION, Operator::In, &["eu-west-3"]),
        requirement(REGION, Operator::NotIn, &["eu-west-2"]),
        requirement(REGION, Operator::DoesNotExist, &[]),
        requirement("gen", Operator::Gt, &["5"]),
        requirement("gen", Operator::Lt, &["five"]),
    ];
    for r in &bad {
        assert!(
            matches!(
                with(vec![term(vec![r.clone()])]),
                Err(Incompatible::Affinity { .. })
            ),
            "{r:?}"
        );
    }
    // Terms are ORed: one satisfiable term is enough; requirements in a term are ANDed.
    assert_eq!(
        with(vec![
            term(vec![bad[0].clone()]),
            term(vec![requirement(REGION, Operator::Exists, &[])])
        ]),
        Ok(())
    );
    assert!(
        with(vec![term(vec![
            requirement(REGION, Operator::Exists, &[]),
            bad[1].clone()
        ])])
        .is_err()
    );
    assert!(
        with(vec![NodeTerm::default()]).is_err(),
        "an empty term matches nothing"
    );
    // Requirements on a key the pool leaves open must still agree with each other and with the
    // template's own nodeSelector.
    assert!(
        with(vec![term(vec![
            requirement("zone", Operator::In, &["a"]),
            requirement("zone", Operator::NotIn, &["a"]),
        ])])
        .is_err()
    );
    assert_eq!(
        with(vec![term(vec![
            requirement("rank", Operator::Gt, &["2"]),
            requirement("rank", Operator::Lt, &["4"]),
        ])]),
        Ok(())
    );
    let own = PodPlacement {
        node_selector: labels(&[("zone", "a")]),
        required_terms: vec![term(vec![requirement("zone", Operator::NotIn, &["a"])])],
    };
    let error = compatible(&pool, &[own]);
    assert_eq!(
        error.map_err(|e| e.to_string()),
        Err("required node affinity cannot match the forecast's placement: term 1 cannot be met on key zone".to_string())
    );
    assert!(matches!(
        compatible(&labels(&[("Bad Key", "x")]), &[]),
        Err(Incompatible::BadKey { .. })
    ));
}

fn pool<'a>(
    name: &'a str,
    selector: &'a BTreeMap<String, String>,
    fleet: &'a Fleet<&'static str>,
) -> Pool<'a, &'static str> {
    Pool {
        name,
        selector: Some(selector),
        fleet: Some(fleet),
    }
}

#[test]
fn placement_picks_the_cleanest_compatible_candidate_and_reports_the_others() {
    let uk = fleet(None, None);
    let clean = Forecast::new(hourly_points(at(0), &[40.0; 8])).unwrap_or_else(|e| panic!("{e}"));
    let fr = Fleet::new(clean, Caps::none()).unwrap_or_else(|e| panic!("{e}"));
    let uk_nodes = labels(&[(REGION, "eu-west-2")]);
    let fr_nodes = labels(&[(REGION, "eu-west-3")]);
    let pools = [pool("uk", &uk_nodes, &uk), pool("fr", &fr_nodes, &fr)];
    let decision = place(&pools, &job(1, 8), Demand::default(), &[], None, at(0));
    let Ok(Decision::Placed(p)) = decision else {
        panic!("{decision:?}");
    };
    assert_eq!((p.index, p.forecast.as_str()), (1, "fr"));
    assert_eq!(p.node_selector, fr_nodes);
    assert_eq!(start(Some(&p.scheduled)), Some(at(0)));
    assert_eq!(p.alternatives.len(), 1);
    assert_eq!(p.alternatives[0].forecast, "uk");
    assert_eq!(p.alternatives[0].expected_intensity, Some(50.0));
    assert_eq!(p.alternatives[0].start, Some(at(3)));
    assert_eq!(p.alternatives[0].excluded, None);

    // The workload pins the UK region: France is dropped, with the reason.
    let pinned = [PodPlacement {
        node_selector: labels(&[(REGION, "eu-west-2")]),
        required_terms: Vec::new(),
    }];
    let decision = place(&pools, &job(1, 8), Demand::default(), &pinned, None, at(0));
    let Ok(Decision::Placed(p)) = decision else {
        panic!("{decision:?}");
    };
    assert_eq!(p.forecast, "uk");
    assert!(matches!(
        p.alternatives[0].excluded,
        Some(Excluded::Incompatible(Incompatible::ConflictingKey { .. }))
    ));

    // Started: never moved, whatever is cleaner.
    assert_eq!(
        place(
            &pools,
            &job(1, 8),
            Demand::default(),
            &pinned,
            Some("uk"),
            at(0)
        ),
        Ok(Decision::Kept {
            forecast: "uk".into()
        })
    );
}

#[test]
fn placement_prefers_room_over_a_cleaner_full_pool_and_explains_failure() {
    let mut fr = Fleet::new(
        Forecast::new(hourly_points(at(0), &[40.0; 8])).unwrap_or_else(|e| panic!("{e}")),
        caps(Some(1), None),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // France is full during the whole allowed range [0, 3).
    fr.commit(
        "busy",
        &[Window {
            start: at(0),
            end: at(8),
        }],
        Demand::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let uk = fleet(Some(1), None);
    let uk_nodes = labels(&[(REGION, "eu-west-2")]);
    let fr_nodes = labels(&[(REGION, "eu-west-3")]);
    let pools = [pool("fr", &fr_nodes, &fr), pool("uk", &uk_nodes, &uk)];
    let decision = place(&pools, &job(1, 4), Demand::default(), &[], None, at(0));
    let Ok(Decision::Placed(p)) = decision else {
        panic!("{decision:?}");
    };
    assert_eq!(p.forecast, "uk");
    assert!(p.alternatives[0].overflow, "France would go over its cap");

    let nowhere = [PodPlacement {
        node_selector: labels(&[(REGION, "us-east-1")]),
        required_terms: Vec::new(),
    }];
    let error = place(&pools, &job(1, 4), Demand::default(), &nowhere, None, at(0));
    let text = error
        .clone()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(matches!(error, Err(PlacementError::NoneEligible(ref r)) if r.len() == 2));
    assert!(
        text.starts_with("no candidate forecast can take the workload: fr: nodeSelector"),
        "{text}"
    );
    let unknown = [Pool::<&str> {
        name: "gone",
        selector: None,
        fleet: None,
    }];
    assert_eq!(
        place(&unknown, &job(1, 4), Demand::default(), &[], None, at(0)),
        Err(PlacementError::NoneEligible(vec![(
            "gone".into(),
            Excluded::NoForecast
        )]))
    );
    assert_eq!(
        place::<&str>(&[], &job(1, 4), Demand::default(), &[], None, at(0)),
        Err(PlacementError::NoCandidates)
    );
}

#[test]
fn a_late_workload_goes_where_it_is_cleanest_now() {
    let uk = fleet(None, None); // 300 now
    let fr = Fleet::new(
        Forecast::new(hourly_points(at(0), &[40.0; 8])).unwrap_or_else(|e| panic!("{e}")),
        Caps::none(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = labels(&[("pool", "a")]);
    let b = labels(&[("pool", "b")]);
    let pools = [pool("uk", &a, &uk), pool("fr", &b, &fr)];
    let late = Constraints::new(at(0), TimeDelta::hours(1)).with_deadline(at(1));
    let decision = place(&pools, &late, Demand::default(), &[], None, at(1));
    let Ok(Decision::Placed(p)) = decision else {
        panic!("{decision:?}");
    };
    assert_eq!(p.forecast, "fr");
    assert!(p.scheduled.is_due(at(1)));
}
