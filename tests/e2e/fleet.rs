//! Fleet-aware planning on the real control plane (issue 14): placement over two node pools
//! labelled as two grids, and a capacity cap that spreads ten workloads wanting the same window.
//! The real kube-scheduler binds the pods; the node simulator runs them.

use std::collections::BTreeMap;
use std::time::Duration;

use carbonshift::api::Phase;
use carbonshift::api::annotations::{DURATION, FORECAST, FORECASTS, MAX_DELAY};
use carbonshift::api::forecast::{CapacitySpec, IntensityPoint, LabelValue, PlacementSpec};
use chrono::{DateTime, TimeDelta, Utc};
use kube::api::PostParams;

use crate::fixtures::{CLEAN, DIRTY, JobBuilder, suspended};
use crate::harness::{self, POOL_LABEL, Scenario, rfc3339};
use crate::nodes::PodRecord;
use crate::operator::OperatorOptions;

/// Enough time for a released Job to be completed and recorded.
const FINISH: Duration = Duration::from_secs(120);

/// A time `ahead` from now, on a multiple of `step` (so that the forecast's points, and with them
/// the capacity slots, are aligned).
fn aligned_ahead(ahead: TimeDelta, step: TimeDelta) -> DateTime<Utc> {
    let t = Utc::now() + ahead;
    let step_s = step.num_seconds().max(1);
    let s = t.timestamp().div_euclid(step_s) * step_s + step_s;
    DateTime::from_timestamp(s, 0).unwrap_or(t)
}

/// Points every `step` from `from` for `count` steps with the intensities `value(i)`.
fn points(
    from: DateTime<Utc>,
    step: TimeDelta,
    count: i32,
    value: impl Fn(i32) -> f64,
) -> Vec<IntensityPoint> {
    (0..count)
        .map(|i| IntensityPoint {
            start: from + step * i,
            intensity: value(i),
        })
        .collect()
}

#[test]
fn a_workload_with_two_candidate_forecasts_runs_in_the_cleaner_pool() {
    harness::run("placement", placement);
}

async fn placement(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::margin("10s")).await;
    s.register_webhook(&operator).await;
    let other = s.add_pool("b", 1).await;
    let clean = harness::ahead(harness::LEAD);
    let step = TimeDelta::minutes(1);
    let from = clean - TimeDelta::minutes(3);
    // Pool a (the scenario's own nodes): dirty all the time. Pool b: clean from `clean`.
    let grids = [
        ("a", s.nodes.pool.clone(), points(from, step, 40, |_| DIRTY)),
        (
            "b",
            other.pool.clone(),
            points(from, step, 40, |i| {
                if (3..6).contains(&i) { CLEAN } else { DIRTY }
            }),
        ),
    ];
    for (suffix, pool, points) in &grids {
        let name = format!("{}-{suffix}", s.ns);
        let mut spec = Scenario::static_spec(points.clone());
        spec.placement = Some(PlacementSpec {
            node_selector: [(POOL_LABEL.to_string(), LabelValue(pool.clone()))].into(),
        });
        let forecast = s.forecast_object(&name, spec);
        s.forecasts()
            .create(&PostParams::default(), &forecast)
            .await
            .unwrap_or_else(|e| panic!("creating CarbonForecast {name}: {e}"));
        s.created_forecast(&name);
        s.say(format!(
            "CarbonForecast {name} created: placement {POOL_LABEL}={pool}"
        ));
    }
    // Both have data before the Job comes: this scenario is about the choice between them (a
    // candidate without data yet is left out of the placement, see docs/multicluster.md).
    for suffix in ["a", "b"] {
        s.wait_forecast_ready_named(&format!("{}-{suffix}", s.ns))
            .await;
    }
    let candidates = format!("{0}-a,{0}-b", s.ns);
    // No pool of its own: where its pods go is carbonshift's choice.
    let job = JobBuilder::deferrable(&s.ns, "train", &s.ns, &s.settings.image)
        .without_annotation(FORECAST)
        .annotation(FORECASTS, &candidates)
        .gpus(1)
        .run_for(5)
        .build();
    let created = s.create_job(job).await;
    s.assert_held_at_admission(&created);
    let status = s
        .wait_workload("train", "to be placed", Duration::from_secs(60), |st| {
            (st.phase == Some(Phase::Deferred) && st.placement.is_some()).then(|| st.clone())
        })
        .await;
    let placement = status.placement.clone().expect("placement");
    s.say(format!(
        "placed: {} (expected {:?} gCO2eq/kWh), alternatives {:?}",
        placement.forecast, placement.expected_intensity, placement.alternatives
    ));
    assert_eq!(placement.forecast, format!("{}-b", s.ns));
    assert_eq!(status.planned_start, Some(clean));
    assert_eq!(
        placement.node_selector,
        BTreeMap::from([(POOL_LABEL.to_string(), other.pool.clone())])
    );
    assert_eq!(placement.alternatives.len(), 1, "{placement:?}");
    assert_eq!(placement.alternatives[0].forecast, format!("{}-a", s.ns));
    assert_eq!(placement.alternatives[0].expected_intensity, Some(DIRTY));

    s.expect_release("train", clean).await;
    let released = s.jobs().get("train").await.expect("read Job");
    let selector = released
        .spec
        .as_ref()
        .and_then(|j| j.template.spec.as_ref())
        .and_then(|p| p.node_selector.clone())
        .unwrap_or_default();
    assert_eq!(
        selector.get(POOL_LABEL),
        Some(&other.pool),
        "the release patch adds the chosen forecast's node selector: {selector:?}"
    );
    let pod = s.wait_pod_bound("train").await;
    let node = pod
        .spec
        .as_ref()
        .and_then(|p| p.node_name.clone())
        .unwrap_or_default();
    assert!(
        other.names.contains(&node),
        "the pod runs on {node}, not in the cleaner pool {:?}",
        other.names
    );
    s.wait_job_complete("train", FINISH).await;
    let done = s.wait_phase("train", Phase::Succeeded, FINISH).await;
    assert_eq!(
        done.placement.map(|p| p.forecast),
        Some(format!("{}-b", s.ns)),
        "the placement is kept after the run"
    );
}

#[test]
fn a_capacity_cap_of_three_spreads_ten_workloads_and_all_meet_their_deadlines() {
    harness::run("capacity", capacity);
}

/// How many of `records` run at `t`.
fn running_at(records: &[PodRecord], t: DateTime<Utc>) -> usize {
    records
        .iter()
        .filter(|r| r.running_at.is_some_and(|a| a <= t) && r.finished_at.is_none_or(|f| t < f))
        .count()
}

async fn capacity(s: Scenario) {
    const JOBS: usize = 10;
    const CAP: u32 = 3;
    let operator = s.start_operator(OperatorOptions::margin("10s")).await;
    s.register_webhook(&operator).await;
    // 20 s steps: the cleanest at `clean`, a little dirtier with each step after it, so that
    // every workload prefers the same first step and the cap spreads them over four.
    let step = TimeDelta::seconds(20);
    let clean = aligned_ahead(TimeDelta::seconds(50), step);
    let from = clean - TimeDelta::minutes(2);
    let mut spec = Scenario::static_spec(points(from, step, 40, |i| match i - 6 {
        k @ 0..=3 => CLEAN + 50.0 * f64::from(k),
        _ => DIRTY,
    }));
    spec.capacity = Some(CapacitySpec {
        jobs: Some(CAP),
        gpus: None,
    });
    s.create_forecast(spec).await;
    s.wait_forecast_ready().await;
    let deadline = clean + TimeDelta::minutes(4);
    for i in 0..JOBS {
        let job = s
            .job(&format!("train-{i}"))
            .without_annotation(MAX_DELAY)
            .deadline(deadline)
            .annotation(DURATION, "20s")
            .run_for(12)
            .build();
        s.create_job(job).await;
    }
    let mut starts = Vec::new();
    for i in 0..JOBS {
        starts.push(s.wait_deferred(&format!("train-{i}")).await);
    }
    starts.sort();
    s.say(format!(
        "planned starts: {}",
        starts
            .iter()
            .map(|t| rfc3339(*t))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let expected: Vec<DateTime<Utc>> = (0..JOBS)
        .map(|i| clean + step * i32::try_from(i / CAP as usize).unwrap_or(0))
        .collect();
    assert_eq!(
        starts, expected,
        "three per 20 s step from the cleanest on, cheapest first"
    );
    assert!(
        Utc::now() < clean,
        "the set-up took too long: planned at {}, the clean step starts at {}",
        rfc3339(Utc::now()),
        rfc3339(clean)
    );
    // The capacity in use shows on the forecast while they run.
    let forecasts = s.forecasts();
    let summary = s
        .eventually(
            "CarbonForecast capacityUsed to reach 3/3 jobs",
            (clean - Utc::now() + TimeDelta::seconds(30))
                .to_std()
                .unwrap_or(Duration::from_secs(30)),
            Duration::from_millis(250),
            || async {
                let f = forecasts.get(&s.ns).await.map_err(|e| e.to_string())?;
                let used = f.status.and_then(|st| st.capacity_used);
                match &used {
                    Some(u) if u.jobs == CAP => Ok(u.summary.clone()),
                    _ => Err(format!("capacityUsed {used:?}")),
                }
            },
        )
        .await;
    s.say(format!("kubectl get cfc: Capacity {summary}"));
    assert_eq!(summary, "3/3 jobs");

    // A workload whose deadline leaves it no room within the cap: its latest start (minus the
    // margin) lies in the full first step, so it is released there above the cap.
    let created = Utc::now();
    assert!(
        created < clean + TimeDelta::seconds(10),
        "too late for the urgent Job: {}",
        rfc3339(created)
    );
    let urgent = s
        .job("urgent")
        .without_annotation(MAX_DELAY)
        .deadline(created + TimeDelta::seconds(34))
        .annotation(DURATION, "20s")
        .run_for(12)
        .build();
    s.create_job(urgent).await;
    let note = s.wait_event("urgent", "DeadlineOverCapacity").await;
    assert!(
        note.contains("above the capacity of CarbonForecast"),
        "{note}"
    );
    s.wait_job_complete("urgent", FINISH).await;
    let urgent_status = s.wait_phase("urgent", Phase::Succeeded, FINISH).await;
    assert_eq!(urgent_status.reason.as_deref(), Some("DeadlineRelease"));
    s.assert_metric(
        &operator,
        &format!(
            "carbonshift_capacity_overflow_releases_total{{forecast=\"{}\"}} 1",
            s.ns
        ),
    )
    .await;

    let mut finished = Vec::new();
    for i in 0..JOBS {
        let name = format!("train-{i}");
        s.wait_job_complete(&name, FINISH).await;
        finished.push(s.wait_phase(&name, Phase::Succeeded, FINISH).await);
    }
    for (i, status) in finished.iter().enumerate() {
        let end = status.finished_at.expect("finishedAt");
        assert!(
            end <= deadline,
            "train-{i} finished at {} after its deadline",
            rfc3339(end)
        );
        assert!(!suspended(
            &s.jobs().get(&format!("train-{i}")).await.expect("read Job")
        ));
    }
    // The count over time, from the node simulator's record of every pod.
    let records: Vec<PodRecord> = (0..JOBS)
        .flat_map(|i| s.nodes.records_for(&format!("train-{i}")))
        .collect();
    assert_eq!(records.len(), JOBS, "one pod per Job: {records:?}");
    let mut moments: Vec<DateTime<Utc>> = records
        .iter()
        .flat_map(|r| [r.running_at, r.finished_at])
        .flatten()
        .collect();
    moments.sort();
    let mut peak = 0;
    let mut curve = Vec::new();
    for t in &moments {
        let n = running_at(&records, *t);
        peak = peak.max(n);
        curve.push(format!("{:+}s:{n}", (*t - clean).num_seconds()));
    }
    s.say(format!(
        "running at once (seconds from the clean step): {}; peak {peak}",
        curve.join(" ")
    ));
    // The urgent one is the only release above the cap: with it, one more at most.
    let urgent_records = s.nodes.records_for("urgent");
    assert_eq!(urgent_records.len(), 1, "{urgent_records:?}");
    let with_urgent: Vec<PodRecord> = records.iter().cloned().chain(urgent_records).collect();
    let peak_all = with_urgent
        .iter()
        .filter_map(|r| r.running_at)
        .map(|t| running_at(&with_urgent, t))
        .max()
        .unwrap_or(0);
    s.say(format!(
        "with the deadline release above the cap: peak {peak_all}"
    ));
    assert!(
        peak <= CAP as usize,
        "{peak} ran at once over the cap of {CAP}"
    );
    assert!(
        peak == CAP as usize,
        "the cap was never used fully: peak {peak}"
    );
    assert!(peak_all <= CAP as usize + 1, "{peak_all} ran at once");
}
