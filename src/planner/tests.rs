//! Edge cases of `plan`, in exact figures.

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    crate::units::parse_timestamp(s).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// `2023-01-01` at `hh:mm`.
fn at(hm: &str) -> DateTime<Utc> {
    t(&format!("2023-01-01T{hm}Z"))
}

/// A forecast with a point at each `(hh:mm, value)` on 2023-01-01.
fn forecast(points: &[(&str, f64)]) -> Forecast {
    Forecast::new(
        points
            .iter()
            .map(|&(hm, intensity)| Point {
                start: at(hm),
                intensity,
            })
            .collect(),
    )
    .unwrap_or_else(|e| panic!("test forecast: {e}"))
}

/// Hourly points from 00:00.
fn hourly(values: &[f64]) -> Forecast {
    let hm: Vec<String> = (0..values.len()).map(|h| format!("{h:02}:00")).collect();
    let points: Vec<(&str, f64)> = hm
        .iter()
        .map(String::as_str)
        .zip(values.iter().copied())
        .collect();
    forecast(&points)
}

fn job(now: &str, minutes: i64, max_delay_minutes: i64) -> Constraints {
    Constraints::new(at(now), TimeDelta::minutes(minutes))
        .with_max_delay(TimeDelta::minutes(max_delay_minutes))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn ok(result: Result<Plan, NoPlan>) -> Plan {
    result.unwrap_or_else(|e| panic!("expected a plan: {e}"))
}

#[test]
fn optimum_can_end_on_a_boundary_rather_than_start_on_one() {
    // 00:00 100, 01:00 40, 02:00 10, 03:00 500. A 90 min job is cheapest on [01:30, 03:00):
    // (40·30 + 10·60) / 90 = 20, which starts on no boundary.
    let f = hourly(&[100.0, 40.0, 10.0, 500.0]);
    let p = ok(plan(&f, &job("00:00", 90, 240), at("00:00")));
    assert_eq!(p.start, at("01:30"));
    assert_eq!(p.end, at("03:00"));
    assert_eq!(
        p.windows,
        vec![Window {
            start: at("01:30"),
            end: at("03:00")
        }]
    );
    assert!(
        close(p.expected_intensity, 20.0),
        "{}",
        p.expected_intensity
    );
    // Now: (100·60 + 40·30) / 90 = 80.
    assert!(close(p.run_now_intensity.unwrap_or(f64::NAN), 80.0));
    assert!(close(p.savings_percent().unwrap_or(f64::NAN), 75.0));
    assert_eq!(p.coverage, 1.0);
    assert_eq!(p.reason, PlanReason::LowestIntensity);
    assert_eq!(p.latest_start, at("04:00"));
}

#[test]
fn all_equal_intensities_earliest_start_wins() {
    // 0.1 is not exact in binary; fixed-point integrals still tie exactly.
    let f = hourly(&[0.1; 24]);
    let p = ok(plan(&f, &job("03:17", 120, 600), at("03:17")));
    assert_eq!(p.start, at("03:17"));
    assert!(close(p.expected_intensity, 0.1));
    assert_eq!(p.savings_percent().map(|s| s.abs() < 1e-9), Some(true));
    let p = ok(plan(
        &f,
        &job("03:17", 120, 600).interruptible(),
        at("03:17"),
    ));
    assert_eq!(
        p.windows,
        vec![Window {
            start: at("03:17"),
            end: at("05:17")
        }]
    );
}

#[test]
fn empty_forecast_has_no_coverage() {
    let f = Forecast::new(vec![]).expect("empty is valid");
    for c in [job("00:00", 60, 120), job("00:00", 60, 120).interruptible()] {
        assert_eq!(
            plan(&f, &c, at("00:00")),
            Err(NoPlan::NoCoverage {
                from: at("00:00"),
                to: at("03:00")
            })
        );
    }
}

#[test]
fn single_point_holds_for_one_hour() {
    let f = forecast(&[("00:00", 42.0)]);
    let p = ok(plan(&f, &job("00:00", 30, 600), at("00:00")));
    assert_eq!((p.start, p.coverage), (at("00:00"), 1.0));
    assert!(close(p.expected_intensity, 42.0));
    // 2 h: at most half known; the unknown half is valued at the mean (42).
    let p = ok(plan(&f, &job("00:00", 120, 600), at("00:00")));
    assert_eq!((p.start, p.coverage), (at("00:00"), 0.5));
    assert_eq!(p.reason, PlanReason::PartialForecast);
    assert!(close(p.expected_intensity, 42.0));
}

#[test]
fn windows_never_span_a_gap_while_a_fully_known_window_exists() {
    // Median step 30 min; 01:00 → 04:00 is a gap: 01:00's value holds to 01:30 only.
    let f = forecast(&[
        ("00:00", 100.0),
        ("00:30", 100.0),
        ("01:00", 5.0),
        ("04:00", 90.0),
        ("04:30", 90.0),
        ("05:00", 300.0),
    ]);
    assert_eq!(f.intensity_at(at("02:00")), None);
    let p = ok(plan(&f, &job("00:00", 60, 600), at("00:00")));
    // [00:30, 01:30) = 52.5 is the cheapest fully-known hour; windows reaching into the gap
    // (e.g. [01:00, 02:00)) are not considered while a fully-known one exists.
    assert_eq!(p.start, at("00:30"));
    assert!(close(p.expected_intensity, 52.5));
    assert_eq!(p.coverage, 1.0);
    // Interruptible: the cheapest known hour of pieces: 01:00 (5), then 04:00–05:00 (90).
    let p = ok(plan(
        &f,
        &job("00:00", 60, 600).interruptible(),
        at("00:00"),
    ));
    assert_eq!(
        p.windows,
        vec![
            Window {
                start: at("01:00"),
                end: at("01:30")
            },
            Window {
                start: at("04:00"),
                end: at("04:30")
            }
        ]
    );
    assert!(close(p.expected_intensity, 47.5));
}

#[test]
fn job_longer_than_the_horizon_reports_partial_coverage() {
    // Known 00:00–04:00 (100, 20, 30, 200; mean 87.5). A 6 h job scores
    // (known + unknown·87.5) / 6 h: at 01:00 (20+30+200 + 3·87.5)/6 = 85.41..., the minimum.
    let f = hourly(&[100.0, 20.0, 30.0, 200.0]);
    let p = ok(plan(&f, &job("00:00", 360, 600), at("00:00")));
    assert_eq!(p.start, at("01:00"));
    assert_eq!(p.coverage, 0.5);
    assert_eq!(p.reason, PlanReason::PartialForecast);
    assert!(close(p.expected_intensity, 512.5 / 6.0));
    // Running now covers the whole known forecast, which averages to the prior.
    assert!(close(p.run_now_intensity.unwrap_or(f64::NAN), 87.5));
}

#[test]
fn range_past_the_horizon_scores_with_the_prior() {
    // The job may only start after 03:30; [03:30, 05:30) is a quarter known.
    let f = hourly(&[100.0, 20.0, 30.0, 200.0]);
    let p = ok(plan(&f, &job("03:30", 120, 60), at("03:30")));
    assert_eq!(p.reason, PlanReason::PartialForecast);
    assert!(p.coverage < 1.0);
    // Nothing known at all from 04:00 on: no plan.
    assert_eq!(
        plan(&f, &job("04:00", 60, 60), at("04:00")),
        Err(NoPlan::NoCoverage {
            from: at("04:00"),
            to: at("06:00")
        })
    );
}

#[test]
fn deadline_already_past() {
    let f = hourly(&[100.0; 6]);
    let c = job("00:00", 60, 60).with_margin(TimeDelta::minutes(10));
    assert_eq!(
        plan(&f, &c, at("00:51")),
        Err(NoPlan::DeadlinePassed {
            now: at("00:51"),
            latest_start: at("01:00"),
            release_by: at("00:50"),
        })
    );
    let text = plan(&f, &c, at("00:51"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(text.contains("too late"), "{text}");
    let c = Constraints::new(at("00:00"), TimeDelta::hours(2)).with_deadline(at("01:00"));
    assert!(matches!(
        plan(&f, &c, at("00:00")),
        Err(NoPlan::DeadlinePassed { .. })
    ));
}

#[test]
fn zero_length_range_starts_now() {
    let f = hourly(&[300.0, 10.0, 10.0]);
    let c = job("00:00", 60, 30).with_margin(TimeDelta::minutes(30));
    let p = ok(plan(&f, &c, at("00:00")));
    assert_eq!((p.start, p.end), (at("00:00"), at("01:00")));
    assert_eq!(p.savings_percent().map(|s| s.abs() < 1e-9), Some(true));
}

#[test]
fn margin_keeps_the_start_before_latest_start_minus_margin() {
    // Cheapest at 03:00, but latest start 03:00 minus a 30 min margin → 02:30.
    let f = hourly(&[100.0, 100.0, 100.0, 10.0, 10.0]);
    let c = job("00:00", 60, 180).with_margin(TimeDelta::minutes(30));
    let p = ok(plan(&f, &c, at("00:00")));
    assert_eq!(p.start, at("02:30"));
    assert!(close(p.expected_intensity, 55.0));
    assert_eq!(p.latest_start, at("03:00"));
}

#[test]
fn sub_millisecond_now_is_rounded_up() {
    let f = hourly(&[10.0; 4]);
    let now = at("00:00") + TimeDelta::nanoseconds(1);
    let p = ok(plan(&f, &job("00:00", 60, 120), now));
    assert!(p.start >= now);
}

#[test]
fn invalid_constraints_are_no_plan() {
    let f = hourly(&[10.0; 4]);
    let c = Constraints::new(at("00:00"), TimeDelta::hours(1));
    assert_eq!(
        plan(&f, &c, at("00:00")),
        Err(NoPlan::InvalidConstraints {
            error: ConstraintError::NoLimit
        })
    );
}

#[test]
fn interruptible_takes_the_cheapest_pieces() {
    let f = hourly(&[100.0, 10.0, 200.0, 20.0, 300.0]);
    let c = Constraints::new(at("00:00"), TimeDelta::hours(2))
        .with_deadline(at("05:00"))
        .interruptible();
    let p = ok(plan(&f, &c, at("00:00")));
    assert_eq!(
        p.windows,
        vec![
            Window {
                start: at("01:00"),
                end: at("02:00")
            },
            Window {
                start: at("03:00"),
                end: at("04:00")
            }
        ]
    );
    assert_eq!((p.start, p.end), (at("01:00"), at("04:00")));
    assert!(close(p.expected_intensity, 15.0));
    assert!(close(p.run_now_intensity.unwrap_or(f64::NAN), 55.0));
    assert_eq!(p.reason, PlanReason::LowestIntensity);
    assert_eq!(p.run_time(), TimeDelta::hours(2));
}

#[test]
fn interruptible_job_replanned_with_its_remaining_duration() {
    // 4 h job, max delay 10 h: finish by 14:00. Cheap hours 08–10 and 12–14.
    let mut values = vec![300.0; 16];
    for h in [8, 9, 12, 13] {
        values[h] = 10.0;
    }
    let f = hourly(&values);
    let c = Constraints::new(at("00:00"), TimeDelta::hours(4))
        .with_max_delay(TimeDelta::hours(10))
        .interruptible();
    let p = ok(plan(&f, &c, at("00:00")));
    assert_eq!(p.windows.len(), 2);
    assert_eq!(p.end, at("14:00"));
    // At 11:00, after running 08–10, 2 h remain; the finish time stays 14:00.
    let rest = c.remaining(TimeDelta::hours(2)).expect("valid");
    let p = ok(plan(&f, &rest, at("11:00")));
    assert_eq!(
        p.windows,
        vec![Window {
            start: at("12:00"),
            end: at("14:00")
        }]
    );
}

#[test]
fn interruptible_margin_shortens_the_usable_time() {
    let f = hourly(&[100.0, 100.0, 100.0, 10.0, 10.0]);
    let c = Constraints::new(at("00:00"), TimeDelta::hours(1))
        .with_deadline(at("04:00"))
        .with_margin(TimeDelta::minutes(30))
        .interruptible();
    // Usable: [00:00, 03:30); cheapest: 03:00–03:30 plus 30 min of 100 touching it.
    let p = ok(plan(&f, &c, at("00:00")));
    assert_eq!(
        p.windows,
        vec![Window {
            start: at("02:30"),
            end: at("03:30")
        }]
    );
}

#[test]
fn min_chunk_and_overhead_give_feasible_windows() {
    // Alternating cheap and dear half hours; unconstrained this would be many 30 min pieces.
    let values: Vec<(String, f64)> = (0..16)
        .map(|i| {
            (
                format!("{:02}:{:02}", i / 2, (i % 2) * 30),
                if i % 2 == 0 { 10.0 } else { 100.0 },
            )
        })
        .collect();
    let points: Vec<(&str, f64)> = values.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    let f = forecast(&points);
    let c = Constraints::new(at("00:00"), TimeDelta::hours(2))
        .with_deadline(at("08:00"))
        .interruptible()
        .with_min_chunk(TimeDelta::minutes(45))
        .with_resume_overhead(TimeDelta::minutes(10));
    let p = ok(plan(&f, &c, at("00:00")));
    assert_eq!(p.reason, PlanReason::Heuristic);
    let n = p.windows.len() as i32;
    assert!(p.run_time() >= TimeDelta::hours(2) + TimeDelta::minutes(10) * (n - 1));
    for w in &p.windows {
        assert!(w.duration() >= TimeDelta::minutes(45), "{w:?}");
    }
    for pair in p.windows.windows(2) {
        assert!(pair[0].end < pair[1].start);
    }
    assert!(p.end <= at("08:00"));
}

#[test]
fn plan_and_no_plan_serialise_in_camel_case() {
    let f = hourly(&[100.0, 40.0, 10.0, 500.0]);
    let p = ok(plan(&f, &job("00:00", 90, 240), at("00:00")));
    let json = serde_json::to_value(&p).expect("serialises");
    for key in [
        "start",
        "end",
        "windows",
        "expectedIntensity",
        "runNowIntensity",
        "latestStart",
        "coverage",
        "reason",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    assert_eq!(json["reason"], "lowestIntensity");
    assert_eq!(json["windows"][0]["start"], "2023-01-01T01:30:00Z");
    let back: Plan = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, p);
    let no = NoPlan::DeadlinePassed {
        now: at("01:00"),
        latest_start: at("00:30"),
        release_by: at("00:20"),
    };
    let json = serde_json::to_value(&no).expect("serialises");
    assert_eq!(json["kind"], "deadlinePassed");
    assert_eq!(json["releaseBy"], "2023-01-01T00:20:00Z");
    let invalid = serde_json::to_value(NoPlan::from(ConstraintError::NoLimit)).expect("ok");
    assert_eq!(
        invalid,
        serde_json::json!({"kind": "invalidConstraints", "error": "noLimit"})
    );
}

#[test]
fn clipped_forecast_plans_within_the_view() {
    let f = hourly(&[100.0, 100.0, 10.0, 100.0, 1.0, 1.0]);
    let view = f.clip(at("00:00"), at("04:00"));
    let p = ok(plan(&view, &job("00:00", 60, 300), at("00:00")));
    assert_eq!(p.start, at("02:00"));
    let p = ok(plan(&f, &job("00:00", 60, 300), at("00:00")));
    assert_eq!(p.start, at("04:00"));
}

mod capacity {
    use super::*;

    fn two_cheap_hours() -> Forecast {
        hourly(&[300.0, 10.0, 20.0, 300.0, 300.0, 300.0])
    }

    #[test]
    fn a_full_slot_shifts_the_next_job_and_overflow_runs_at_the_latest_start() {
        let f = two_cheap_hours();
        let mut ledger = CapacityLedger::new(1.0, TimeDelta::hours(1)).expect("valid");
        let c = job("00:00", 60, 240);
        let first = plan_with_capacity(&f, &c, at("00:00"), 1.0, &mut ledger).expect("planned");
        assert_eq!(first.plan.start, at("01:00"));
        assert!(!first.overflow);
        assert_eq!(first.plan.reason, PlanReason::LowestIntensity);
        let second = plan_with_capacity(&f, &c, at("00:00"), 1.0, &mut ledger).expect("planned");
        assert_eq!(second.plan.start, at("02:00"));
        assert_eq!(second.plan.reason, PlanReason::CapacityShifted);
        // A job that must finish by 02:00 finds 00:00 and 01:00 ... 00:00 is free.
        let tight = job("00:00", 60, 60);
        let third = plan_with_capacity(&f, &tight, at("00:00"), 1.0, &mut ledger).expect("planned");
        assert_eq!(third.plan.start, at("00:00"));
        // Now 00:00–03:00 is full: a job due by 02:00 overflows at its latest start.
        let fourth =
            plan_with_capacity(&f, &tight, at("00:00"), 1.0, &mut ledger).expect("planned");
        assert!(fourth.overflow);
        assert_eq!(fourth.plan.reason, PlanReason::CapacityOverflow);
        assert_eq!(fourth.plan.start, at("01:00"));
        assert_eq!(ledger.peak(), 2.0);
        // Releasing the first job frees 01:00.
        ledger.release(&first.reservation);
        assert_eq!(ledger.load_at(at("01:30")), 1.0);
    }

    #[test]
    fn interruptible_jobs_use_only_time_with_room() {
        let f = two_cheap_hours();
        let mut ledger = CapacityLedger::new(1.0, TimeDelta::hours(1)).expect("valid");
        ledger.reserve(
            &[Window {
                start: at("01:00"),
                end: at("02:00"),
            }],
            1.0,
        );
        let c = job("00:00", 90, 240).interruptible();
        let p = plan_with_capacity(&f, &c, at("00:00"), 1.0, &mut ledger).expect("planned");
        assert_eq!(p.plan.reason, PlanReason::CapacityShifted);
        for w in &p.plan.windows {
            assert!(w.end <= at("01:00") || w.start >= at("02:00"), "{w:?}");
        }
        // 02:00–03:00 at 20, then 30 min of 300.
        assert!(close(
            p.plan.expected_intensity,
            (20.0 * 60.0 + 300.0 * 30.0) / 90.0
        ));
    }

    #[test]
    fn a_load_above_the_cap_always_overflows() {
        let f = two_cheap_hours();
        let mut ledger = CapacityLedger::new(1.0, TimeDelta::hours(1)).expect("valid");
        let p = plan_with_capacity(&f, &job("00:00", 60, 120), at("00:00"), 2.0, &mut ledger)
            .expect("planned");
        assert!(p.overflow);
        assert_eq!(p.plan.start, at("02:00"));
        assert_eq!(
            plan_with_capacity(&f, &job("00:00", 60, 120), at("00:00"), -1.0, &mut ledger),
            Err(NoPlan::InvalidConstraints {
                error: ConstraintError::BadLoad
            })
        );
    }

    #[test]
    fn batch_is_earliest_deadline_first_and_reports_overflow() {
        let f = two_cheap_hours();
        let jobs = vec![
            BatchJob {
                constraints: job("00:00", 60, 240),
                load: 1.0,
            },
            BatchJob {
                constraints: job("00:00", 60, 60),
                load: 1.0,
            },
            BatchJob {
                constraints: job("00:00", 60, 60),
                load: 1.0,
            },
            BatchJob {
                constraints: job("00:00", 60, 60),
                load: 1.0,
            },
            BatchJob {
                constraints: Constraints::new(at("00:00"), TimeDelta::hours(1)),
                load: 1.0,
            },
        ];
        let capacity = Capacity {
            limit: 1.0,
            slot: TimeDelta::hours(1),
        };
        let batch = plan_batch(&f, &jobs, capacity, at("00:00")).expect("valid capacity");
        let starts: Vec<Option<DateTime<Utc>>> = batch
            .plans
            .iter()
            .map(|p| p.as_ref().ok().map(|p| p.start))
            .collect();
        // Jobs 1–3 are due first: 01:00 (cheapest), then 00:00, then overflow at 01:00.
        // Job 0 then finds 02:00 (20), the cheapest hour with room.
        assert_eq!(
            starts,
            vec![
                Some(at("02:00")),
                Some(at("01:00")),
                Some(at("00:00")),
                Some(at("01:00")),
                None
            ]
        );
        assert_eq!(batch.overflow, vec![3]);
        assert_eq!(batch.peak_load, 2.0);
        assert!(matches!(
            batch.plans[4],
            Err(NoPlan::InvalidConstraints { .. })
        ));
        assert!(
            plan_batch(
                &f,
                &jobs,
                Capacity {
                    limit: -1.0,
                    slot: TimeDelta::hours(1)
                },
                at("00:00")
            )
            .is_err()
        );
    }
}
