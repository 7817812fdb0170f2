//! Tests of the forecast status decisions.

use super::*;
use crate::api::fixtures::{points, t};
use crate::api::forecast::MAX_POINTS;
use crate::forecast::ForecastData;
use crate::planner::Point;

const NOW: &str = "2026-11-28T15:47:00Z";

fn spec() -> CarbonForecastSpec {
    crate::api::CarbonForecast::test("uk").spec
}

fn data(start: DateTime<Utc>, step: TimeDelta, values: &[f64]) -> ForecastData {
    ForecastData {
        points: points(start, step, values)
            .into_iter()
            .map(|p| Point {
                start: p.start,
                intensity: p.intensity,
            })
            .collect(),
        actuals: Vec::new(),
        region: "national".into(),
        generated_at: None,
    }
}

fn hourly(values: &[f64]) -> Bounded {
    bound(
        data(t("2026-11-28T15:00Z"), TimeDelta::hours(1), values),
        t(NOW),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn input<'a>(
    spec: &'a CarbonForecastSpec,
    status: Option<&'a CarbonForecastStatus>,
    backoff: Option<&'a Backoff>,
    now: DateTime<Utc>,
) -> Input<'a> {
    Input {
        spec,
        generation: Some(1),
        status,
        backoff,
        now,
    }
}

fn fetched(forecast: Bounded) -> Observation {
    Observation::Fetched {
        kind: "ukCarbonIntensity",
        forecast,
    }
}

fn server_error(retry_after: Option<Duration>) -> Observation {
    Observation::Failed {
        kind: "ukCarbonIntensity",
        error: ProviderError::ServerError {
            provider: "UK Carbon Intensity API",
            status: 502,
            attempts: 4,
            retry_after,
            url: "https://api.carbonintensity.org.uk/".into(),
        },
    }
}

fn ready(status: &CarbonForecastStatus) -> (bool, String, DateTime<Utc>) {
    let c = ready_condition(status).unwrap_or_else(|| panic!("no Ready in {status:?}"));
    (c.is_true(), c.reason.clone(), c.last_transition_time)
}

fn reasons(decision: &Decision) -> Vec<&'static str> {
    decision.notes.iter().map(|n| n.reason).collect()
}

/// The status after a first successful refresh at NOW.
fn refreshed() -> CarbonForecastStatus {
    let spec = spec();
    decide(
        &input(&spec, None, None, t(NOW)),
        fetched(hourly(&[300.0, 200.0, 100.0, 250.0])),
    )
    .status
}

#[test]
fn timing_defaults_and_errors() {
    let mut s = spec();
    assert_eq!(timing(&s), Ok(Timing::default()));
    assert_eq!(Timing::default().refresh_interval, TimeDelta::minutes(30));
    assert_eq!(Timing::default().stale_after, TimeDelta::hours(3));
    s.refresh_interval = Some("15m".into());
    s.stale_after = Some("1d".into());
    assert_eq!(
        timing(&s),
        Ok(Timing {
            refresh_interval: TimeDelta::minutes(15),
            stale_after: TimeDelta::days(1)
        })
    );
    s.refresh_interval = Some("0s".into());
    assert!(timing(&s).is_err_and(|e| {
        e.to_string().starts_with("spec.refreshInterval \"0s\": ")
            && e.to_string()
                .ends_with("expected a duration such as 30m, 2h or 1d (units s, m, h, d)")
    }),);
    s.refresh_interval = None;
    s.stale_after = Some("soon".into());
    assert!(timing(&s).is_err_and(|e| e.to_string().starts_with("spec.staleAfter \"soon\"")));
}

#[test]
fn refresh_is_due_when_never_done_when_the_spec_changed_and_on_the_interval() {
    let s = spec();
    let now = t(NOW);
    let done = refreshed();
    assert!(refresh_due(&input(&s, None, None, now)), "no status");
    assert!(
        !refresh_due(&input(&s, Some(&done), None, now)),
        "just refreshed"
    );
    let at = |minutes: i64| now + TimeDelta::minutes(minutes);
    assert!(!refresh_due(&input(&s, Some(&done), None, at(29))));
    assert!(
        refresh_due(&input(&s, Some(&done), None, at(30))),
        "interval reached"
    );
    assert!(
        refresh_due(&input(&s, Some(&done), None, at(-1))),
        "clock went back"
    );
    let spec_changed = Input {
        generation: Some(2),
        ..input(&s, Some(&done), None, now)
    };
    assert!(refresh_due(&spec_changed), "generation moved");
    let mut never = done.clone();
    never.last_refresh_time = None;
    assert!(refresh_due(&input(&s, Some(&never), None, now)));
    let mut bad = s.clone();
    bad.refresh_interval = Some("often".into());
    assert!(
        refresh_due(&input(&bad, Some(&done), None, now)),
        "report the bad spec"
    );
}

#[test]
fn after_a_failure_the_backoff_decides_and_a_restart_retries_at_once() {
    let s = spec();
    let now = t(NOW);
    let mut failed = refreshed();
    failed.last_error = Some("boom".into());
    let backoff = Backoff {
        generation: Some(1),
        failures: 1,
        not_before: now + TimeDelta::minutes(1),
    };
    assert!(!refresh_due(&input(&s, Some(&failed), Some(&backoff), now)));
    assert!(refresh_due(&input(
        &s,
        Some(&failed),
        Some(&backoff),
        now + TimeDelta::minutes(1)
    )));
    // No retry state in memory (a restart): at once.
    assert!(refresh_due(&input(&s, Some(&failed), None, now)));
    // A spec change overrides the backoff.
    let changed = Input {
        generation: Some(2),
        ..input(&s, Some(&failed), Some(&backoff), now)
    };
    assert!(refresh_due(&changed));
    // Retry state of an older generation is ignored.
    let old = Backoff {
        generation: Some(0),
        ..backoff
    };
    assert!(refresh_due(&input(&s, Some(&failed), Some(&old), now)));
}

#[test]
fn a_week_of_five_minute_points_at_most() {
    // Ten days of 5-minute points from an hour before now.
    let now = t(NOW);
    let start = t("2026-11-28T14:47:00Z");
    let values: Vec<f64> = (0..2880).map(|i| f64::from(i % 500)).collect();
    let b =
        bound(data(start, TimeDelta::minutes(5), &values), now).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.points.len(), MAX_POINTS);
    // now − 5m = 15:42: the slot 15:37–15:42 has ended by then and goes; 15:42–15:47 (the
    // one before the slot covering now) is the first kept.
    assert_eq!(b.points[0].start, t("2026-11-28T15:42:00Z"));
    assert_eq!(b.points[0].intensity, 11.0);
    assert_eq!(
        b.points[MAX_POINTS - 1].start,
        t("2026-11-28T15:42:00Z") + TimeDelta::minutes(5 * 2015)
    );
    assert_eq!(b.horizon_end, t("2026-12-05T15:42:00Z"));
    assert!(b.horizon_end <= now + MAX_AHEAD);
    assert!(b.points.iter().all(|p| p.start < now + MAX_AHEAD));
}

#[test]
fn points_are_kept_from_the_slot_before_now_to_seven_days_ahead() {
    // Hourly from 12:00, now on the hour boundary 16:00: slots 15:00 and 16:00 onwards stay.
    let now = t("2026-11-28T16:00:00Z");
    let b = bound(
        data(
            t("2026-11-28T12:00Z"),
            TimeDelta::hours(1),
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        ),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let starts: Vec<_> = b.points.iter().map(|p| p.start).collect();
    assert_eq!(
        starts,
        [
            t("2026-11-28T15:00Z"),
            t("2026-11-28T16:00Z"),
            t("2026-11-28T17:00Z")
        ]
    );
    assert_eq!(b.horizon_end, t("2026-11-28T18:00Z"));
    // Hourly for 9 days from now: the first point 7 days after now is the horizon.
    let values = vec![100.0; 24 * 9];
    let b = bound(data(now, TimeDelta::hours(1), &values), now).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.points.len(), 24 * 7);
    assert_eq!(b.horizon_end, now + MAX_AHEAD);
}

#[test]
fn a_forecast_entirely_in_the_past_or_far_ahead_is_refused() {
    let now = t(NOW);
    let past = bound(
        data(t("2026-11-28T10:00Z"), TimeDelta::hours(1), &[1.0, 2.0]),
        now,
    );
    assert_eq!(
        past.map_err(|e| e.to_string()),
        Err("the forecast ends at 2026-11-28T12:00:00Z, before now (2026-11-28T15:47:00Z); nothing is left to plan with".to_string())
    );
    let ahead = bound(
        data(t("2026-12-06T00:00Z"), TimeDelta::hours(1), &[1.0]),
        now,
    );
    assert_eq!(
        ahead.map_err(|e| e.to_string()),
        Err("the forecast starts at 2026-12-06T00:00:00Z, more than 7d after now (2026-11-28T15:47:00Z)".to_string())
    );
    let empty = ForecastData {
        points: Vec::new(),
        ..data(now, TimeDelta::hours(1), &[])
    };
    assert_eq!(
        bound(empty, now).map_err(|e| e.to_string()),
        Err("the provider returned no points".to_string())
    );
}

#[test]
fn a_single_point_holds_for_an_hour() {
    let now = t(NOW);
    let b = bound(
        data(t("2026-11-28T15:30Z"), TimeDelta::hours(1), &[42.0]),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.horizon_end, t("2026-11-28T16:30Z"));
    let f = forecast_of(&b.points).unwrap_or_else(|| panic!("valid"));
    assert_eq!(f.intensity_at(now), Some(42.0));
}

#[test]
fn actuals_keep_the_last_seven_days_and_at_most_a_week_of_points() {
    let now = t(NOW);
    let mut d = data(t("2026-11-28T15:00Z"), TimeDelta::hours(1), &[1.0, 2.0]);
    d.actuals = vec![
        Point {
            start: now - TimeDelta::days(8),
            intensity: 9.0,
        },
        Point {
            start: now - TimeDelta::days(7),
            intensity: 8.0,
        },
        Point {
            start: t("2026-11-28T15:00Z"),
            intensity: 7.0,
        },
    ];
    let b = bound(d, now).unwrap_or_else(|e| panic!("{e}"));
    let kept: Vec<f64> = b.actuals.iter().map(|p| p.intensity).collect();
    assert_eq!(kept, [8.0, 7.0]);
    // 3000 one-minute actuals over the last two days and a bit: the newest 2016 stay.
    let mut d = data(t("2026-11-28T15:00Z"), TimeDelta::hours(1), &[1.0, 2.0]);
    d.actuals = (0..3000)
        .map(|i| Point {
            start: now - TimeDelta::minutes(3000 - i),
            intensity: f64::from(i32::try_from(i).unwrap_or_default()),
        })
        .collect();
    let b = bound(d, now).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.actuals.len(), MAX_POINTS);
    assert_eq!(b.actuals[0].intensity, 984.0);
    assert_eq!(b.actuals[MAX_POINTS - 1].start, now - TimeDelta::minutes(1));
}

#[test]
fn current_and_lowest_values_follow_the_planner_and_are_never_invented() {
    let p = points(
        t("2026-11-28T15:00Z"),
        TimeDelta::hours(1),
        &[50.0, 200.0, 100.0, 100.0],
    );
    let f = forecast_of(&p).unwrap_or_else(|| panic!("valid"));
    let end = t("2026-11-28T19:00Z");
    assert_eq!(f.horizon_end(), Some(end));
    assert_eq!(f.intensity_at(t("2026-11-28T14:59Z")), None);
    assert_eq!(f.intensity_at(t("2026-11-28T15:00Z")), Some(50.0));
    assert_eq!(f.intensity_at(t("2026-11-28T18:59Z")), Some(100.0));
    assert_eq!(f.intensity_at(end), None);
    assert!(forecast_of(&[]).is_some_and(|f| f.intensity_at(end).is_none()));
    // The past slot (50 at 15:00) counts only while it covers now; the earliest of equals wins.
    let lowest = |now: &str| {
        f.lowest_between(t(now), end)
            .map(|p| (p.intensity, p.start))
    };
    assert_eq!(
        lowest("2026-11-28T15:30Z"),
        Some((50.0, t("2026-11-28T15:30Z")))
    );
    assert_eq!(
        lowest("2026-11-28T16:00Z"),
        Some((100.0, t("2026-11-28T17:00Z")))
    );
    assert_eq!(lowest("2026-11-28T19:00Z"), None);
}

#[test]
fn a_first_refresh_fills_every_field_and_says_refreshed() {
    let s = spec();
    let now = t(NOW);
    let d = decide(
        &input(&s, None, None, now),
        fetched(hourly(&[300.0, 200.0, 100.0, 250.0])),
    );
    let st = &d.status;
    assert_eq!(st.provider.as_deref(), Some("ukCarbonIntensity"));
    assert_eq!(st.region.as_deref(), Some("national"));
    assert_eq!(st.current_intensity, Some(300.0));
    assert_eq!(st.points.len(), 4);
    assert_eq!(st.horizon_end, Some(t("2026-11-28T19:00Z")));
    assert_eq!(st.lowest_intensity, Some(100.0));
    assert_eq!(st.lowest_at, Some(t("2026-11-28T17:00Z")));
    assert_eq!(st.last_refresh_time, Some(now));
    assert_eq!(st.last_error, None);
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(ready(st), (true, "Refreshed".into(), now));
    let c = ready_condition(st).map(|c| c.message.clone());
    assert_eq!(
        c.as_deref(),
        Some("4 points from ukCarbonIntensity (national) up to 2026-11-28T19:00:00Z")
    );
    assert_eq!(reasons(&d), ["Refreshed"]);
    assert_eq!(d.notes[0].kind, NoteKind::Normal);
    assert_eq!(d.notes[0].action, "Refresh");
    assert_eq!(d.backoff, None);
    assert_eq!(d.requeue_at, now + TimeDelta::minutes(30));
}

#[test]
fn a_refresh_with_the_same_points_emits_nothing() {
    let s = spec();
    let before = refreshed();
    let later = t(NOW) + TimeDelta::minutes(5);
    let d = decide(
        &input(&s, Some(&before), None, later),
        fetched(hourly(&[300.0, 200.0, 100.0, 250.0])),
    );
    assert!(d.notes.is_empty(), "{:?}", d.notes);
    assert_eq!(d.status.last_refresh_time, Some(later));
    assert_eq!(d.status.points, before.points);
    // The condition did not flip: its transition time stays.
    assert_eq!(ready(&d.status).2, t(NOW));
    // Different values are news.
    let d = decide(
        &input(&s, Some(&before), None, later),
        fetched(hourly(&[300.0, 200.0, 90.0, 250.0])),
    );
    assert_eq!(reasons(&d), ["Refreshed"]);
}

#[test]
fn a_failure_keeps_the_last_good_data_and_backs_off() {
    let s = spec();
    let before = refreshed();
    let now = t(NOW) + TimeDelta::minutes(30);
    let d = decide(&input(&s, Some(&before), None, now), server_error(None));
    let st = &d.status;
    assert_eq!(st.points, before.points);
    assert_eq!(st.current_intensity, before.current_intensity);
    assert_eq!(st.last_refresh_time, before.last_refresh_time);
    assert_eq!(
        st.last_error.as_deref(),
        Some(
            "UK Carbon Intensity API failed with HTTP 502 after 4 attempt(s): the service is having trouble; check its status page or the base URL https://api.carbonintensity.org.uk/"
        )
    );
    assert_eq!(ready(st), (true, "Refreshed".into(), t(NOW)));
    assert_eq!(
        ready_condition(st).map(|c| c.message.as_str()),
        Some(
            "serving the forecast refreshed at 2026-11-28T15:47:00Z; the latest refresh failed (see lastError)"
        )
    );
    assert_eq!(reasons(&d), ["RefreshFailed"]);
    assert_eq!(d.notes[0].kind, NoteKind::Warning);
    assert!(
        d.notes[0]
            .message
            .ends_with("(server_error); next attempt in 1m"),
        "{}",
        d.notes[0].message
    );
    let b = d.backoff.unwrap_or_else(|| panic!("no backoff"));
    assert_eq!((b.failures, b.not_before), (1, now + TimeDelta::minutes(1)));
    assert_eq!(d.requeue_at, now + TimeDelta::minutes(1));

    // Doubling, capped at the refresh interval; the status does not change for a repeat.
    let mut status = d.status.clone();
    let mut backoff = b;
    let mut delays = Vec::new();
    for _ in 0..6 {
        let at = backoff.not_before;
        let next = decide(
            &input(&s, Some(&status), Some(&backoff), at),
            server_error(None),
        );
        assert_eq!(next.status.last_error, status.last_error);
        let nb = next.backoff.unwrap_or_else(|| panic!("no backoff"));
        delays.push((nb.not_before - at).num_minutes());
        backoff = nb;
        status = next.status;
    }
    assert_eq!(delays, [2, 4, 8, 16, 30, 30]);
}

#[test]
fn retry_after_is_respected() {
    let s = spec();
    let before = refreshed();
    let now = t(NOW) + TimeDelta::minutes(30);
    let d = decide(
        &input(&s, Some(&before), None, now),
        server_error(Some(Duration::from_secs(600))),
    );
    assert_eq!(
        d.backoff.map(|b| b.not_before),
        Some(now + TimeDelta::minutes(10))
    );
    assert!(d.notes[0].message.ends_with("next attempt in 10m"));
}

#[test]
fn without_any_data_a_failure_is_not_ready() {
    let s = spec();
    let d = decide(&input(&s, None, None, t(NOW)), server_error(None));
    assert_eq!(ready(&d.status), (false, "RefreshFailed".into(), t(NOW)));
    assert_eq!(d.status.provider.as_deref(), Some("ukCarbonIntensity"));
    assert!(d.status.points.is_empty());
    assert_eq!(d.status.current_intensity, None);
    assert_eq!(reasons(&d), ["RefreshFailed"]);
}

#[test]
fn data_turns_stale_once_with_one_event_and_recovers() {
    let s = spec();
    let before = refreshed();
    let refreshed_at = t(NOW);
    // Not due and fresh: nothing changes; requeue at the next refresh.
    let quiet = decide(
        &input(
            &s,
            Some(&before),
            None,
            refreshed_at + TimeDelta::minutes(10),
        ),
        Observation::NotDue,
    );
    assert_eq!(quiet.status, before);
    assert!(quiet.notes.is_empty());
    assert_eq!(quiet.requeue_at, refreshed_at + TimeDelta::minutes(30));

    // Failing retries until the limit: the last one before 3h keeps Ready, and requeues at
    // the stale moment when that is sooner than the retry.
    let mut failing = before.clone();
    failing.last_error = Some("down".into());
    let backoff = Backoff {
        generation: Some(1),
        failures: 5,
        not_before: refreshed_at + TimeDelta::minutes(170) + TimeDelta::minutes(30),
    };
    let waiting = decide(
        &input(
            &s,
            Some(&failing),
            Some(&backoff),
            refreshed_at + TimeDelta::minutes(170),
        ),
        Observation::NotDue,
    );
    assert!(ready(&waiting.status).0);
    assert_eq!(waiting.requeue_at, refreshed_at + TimeDelta::hours(3));

    // At the limit: Stale, with one Event.
    let stale_at = refreshed_at + TimeDelta::hours(3);
    let stale = decide(
        &input(&s, Some(&failing), Some(&backoff), stale_at),
        Observation::NotDue,
    );
    assert_eq!(ready(&stale.status), (false, "Stale".into(), stale_at));
    assert_eq!(
        ready_condition(&stale.status).map(|c| c.message.as_str()),
        Some(
            "no successful refresh since 2026-11-28T15:47:00Z, longer than staleAfter (3h); the data is not used for new plans"
        )
    );
    assert_eq!(reasons(&stale), ["Stale"]);
    assert_eq!(stale.notes[0].kind, NoteKind::Warning);
    assert_eq!(stale.status.points, before.points, "stale data is kept");
    assert_eq!(stale.requeue_at, backoff.not_before);

    // Still stale, another failure: no second Stale Event.
    let again = decide(
        &input(&s, Some(&stale.status), Some(&backoff), backoff.not_before),
        server_error(None),
    );
    assert_eq!(reasons(&again), ["RefreshFailed"]);
    assert_eq!(ready(&again.status), (false, "Stale".into(), stale_at));
    let quiet = decide(
        &input(
            &s,
            Some(&again.status),
            again.backoff.as_ref(),
            backoff.not_before + TimeDelta::seconds(1),
        ),
        Observation::NotDue,
    );
    assert!(quiet.notes.is_empty());
    assert_eq!(quiet.status, again.status);

    // Recovery: Ready again, the error cleared, one Recovered Event (not Refreshed too).
    let back_at = backoff.not_before + TimeDelta::minutes(30);
    let recovered = decide(
        &input(&s, Some(&again.status), again.backoff.as_ref(), back_at),
        Observation::Fetched {
            kind: "ukCarbonIntensity",
            forecast: bound(
                data(t("2026-11-28T19:00Z"), TimeDelta::hours(1), &[120.0, 80.0]),
                back_at,
            )
            .unwrap_or_else(|e| panic!("{e}")),
        },
    );
    assert_eq!(reasons(&recovered), ["Recovered"]);
    assert_eq!(recovered.status.last_error, None);
    assert_eq!(
        ready(&recovered.status),
        (true, "Refreshed".into(), back_at)
    );
    assert_eq!(recovered.status.current_intensity, Some(120.0));
    assert_eq!(recovered.backoff, None);
}

#[test]
fn a_stale_limit_below_the_interval_requeues_at_the_stale_moment() {
    let mut s = spec();
    s.stale_after = Some("10m".into());
    let d = decide(
        &input(&s, None, None, t(NOW)),
        fetched(hourly(&[300.0, 200.0])),
    );
    assert_eq!(d.requeue_at, t(NOW) + TimeDelta::minutes(10));
    let stale = decide(
        &input(&s, Some(&d.status), None, t(NOW) + TimeDelta::minutes(10)),
        Observation::NotDue,
    );
    assert_eq!(reasons(&stale), ["Stale"]);
    assert_eq!(stale.requeue_at, t(NOW) + TimeDelta::minutes(30));
}

#[test]
fn an_unusable_spec_is_reported_once_and_rechecked() {
    let s = spec();
    let before = refreshed();
    let now = t(NOW) + TimeDelta::minutes(30);
    let unusable = |message: &str| Observation::Unusable {
        kind: "electricityMaps",
        problem: SpecProblem::MissingCredentials,
        message: message.into(),
    };
    let d = decide(
        &input(&s, Some(&before), None, now),
        unusable("Secret carbonshift/em does not exist"),
    );
    assert_eq!(ready(&d.status), (false, "MissingCredentials".into(), now));
    assert_eq!(
        d.status.last_error.as_deref(),
        Some("Secret carbonshift/em does not exist")
    );
    assert_eq!(d.status.points, before.points, "the data stays");
    assert_eq!(
        d.status.provider.as_deref(),
        Some("ukCarbonIntensity"),
        "kept from the data"
    );
    assert_eq!(reasons(&d), ["MissingCredentials"]);
    assert_eq!(d.notes[0].action, "Check");
    assert_eq!(
        d.backoff,
        Some(Backoff {
            generation: Some(1),
            failures: 0,
            not_before: now + TimeDelta::minutes(5)
        })
    );
    assert_eq!(d.requeue_at, now + TimeDelta::minutes(5));
    // The same problem again: no Event, same status.
    let again = decide(
        &input(
            &s,
            Some(&d.status),
            d.backoff.as_ref(),
            now + TimeDelta::minutes(5),
        ),
        unusable("Secret carbonshift/em does not exist"),
    );
    assert!(again.notes.is_empty());
    assert_eq!(again.status, d.status);
    // A different message is news.
    let other = decide(
        &input(&s, Some(&d.status), None, now + TimeDelta::minutes(5)),
        unusable("Secret em has no non-empty key `token`"),
    );
    assert_eq!(reasons(&other), ["MissingCredentials"]);
    // Unusable stays unusable when the data ages: no Stale on top.
    let old = decide(
        &input(
            &s,
            Some(&d.status),
            d.backoff.as_ref(),
            now + TimeDelta::hours(4),
        ),
        Observation::NotDue,
    );
    assert!(old.notes.is_empty());
    assert_eq!(ready(&old.status).1, "MissingCredentials");
    // Fixed: Recovered.
    let fixed = decide(
        &input(&s, Some(&d.status), None, now + TimeDelta::minutes(1)),
        fetched(hourly(&[300.0, 200.0, 100.0, 250.0])),
    );
    assert_eq!(reasons(&fixed), ["Recovered"]);
    // Invalid spec on a new object: the provider kind of the spec is shown.
    let fresh = decide(
        &input(&s, None, None, now),
        Observation::Unusable {
            kind: "trace",
            problem: SpecProblem::InvalidSpec,
            message: "unknown built-in trace".into(),
        },
    );
    assert_eq!(ready(&fresh.status).1, "InvalidSpec");
    assert_eq!(fresh.status.provider.as_deref(), Some("trace"));
}

#[test]
fn every_outcome_records_the_generation() {
    let s = spec();
    let before = refreshed();
    let gen2 = |status: Option<&CarbonForecastStatus>, observation: Observation| {
        let i = Input {
            generation: Some(2),
            ..input(&s, status, None, t(NOW) + TimeDelta::minutes(1))
        };
        let d = decide(&i, observation);
        (
            d.status.observed_generation,
            ready_condition(&d.status).and_then(|c| c.observed_generation),
        )
    };
    assert_eq!(
        gen2(Some(&before), fetched(hourly(&[1.0, 2.0]))),
        (Some(2), Some(2))
    );
    assert_eq!(gen2(Some(&before), server_error(None)), (Some(2), Some(2)));
    assert_eq!(
        gen2(
            Some(&before),
            Observation::Unusable {
                kind: "static",
                problem: SpecProblem::InvalidSpec,
                message: "bad".into()
            }
        ),
        (Some(2), Some(2))
    );
}

#[test]
fn requeue_after_is_at_least_a_second() {
    let now = t(NOW);
    assert_eq!(
        requeue_after(now + TimeDelta::minutes(2), now),
        Duration::from_secs(120)
    );
    assert_eq!(requeue_after(now, now), Duration::from_secs(1));
    assert_eq!(
        requeue_after(now - TimeDelta::hours(1), now),
        Duration::from_secs(1)
    );
}
