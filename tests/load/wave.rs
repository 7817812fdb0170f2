//! The second wave (`CARBONSHIFT_LOAD_WAVES=2`): after every Job of the first wave succeeded, the
//! harness deletes them (their CarbonWorkloads go with them, by garbage collection), moves the
//! forecast's clean window ahead, and sends N fresh Jobs through the same lifecycle with the same
//! operator process. A controller whose memory is flat per object and released when the objects
//! are gone ends the second wave with the peak RSS of the first; a leak shows as a higher peak.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carbonshift::api::forecast::StaticPoints;
use carbonshift::api::{CarbonForecast, CarbonWorkload, ProviderSpec};
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Api, Client};

use super::{Progress, Settings, Timeline, Tracker, cluster, eventually, lock, rfc3339, track};
use crate::process::Operator;
use crate::report::SecondWave;

/// What the second wave needs from the first.
pub struct Context<'a> {
    pub client: &'a Client,
    pub progress: &'a Progress,
    pub settings: &'a Settings,
    pub namespaces: &'a [String],
    pub template: &'a cluster::Template,
    pub forecast: &'a str,
    pub operator: &'a Operator,
    /// The operator's peak RSS (VmHWM) at the end of the first wave.
    pub first_peak_mib: f64,
}

/// Runs the second wave (module documentation) and returns its figures.
pub async fn run(c: Context<'_>) -> SecondWave {
    let n = c.settings.jobs;
    let started = Instant::now();
    let mut timeline = Timeline {
        pid: c.operator.pid,
        started: Utc::now(),
        marks: Vec::new(),
    };

    // 1. The first wave's Jobs go, and with them their workloads.
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for ns in c.namespaces {
        let jobs: Api<Job> = Api::namespaced(c.client.clone(), ns);
        jobs.delete_collection(&params, &ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting the first wave's Jobs in {ns}: {e}"));
    }
    eventually(
        c.progress,
        "the first wave's Jobs and CarbonWorkloads to be gone",
        c.settings.bound(120, 50),
        Duration::from_secs(1),
        Some(c.operator),
        || async {
            let mut left = 0;
            for ns in c.namespaces {
                let jobs: Api<Job> = Api::namespaced(c.client.clone(), ns);
                let workloads: Api<CarbonWorkload> = Api::namespaced(c.client.clone(), ns);
                let one = ListParams::default().limit(1);
                left += jobs
                    .list_metadata(&one)
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .len();
                left += workloads
                    .list_metadata(&one)
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .len();
            }
            if left == 0 {
                Ok(())
            } else {
                Err("some are left".to_string())
            }
        },
    )
    .await;
    let rss_emptied = timeline.mark(c.progress, "wave 2: the first wave's objects deleted");

    // 2. A new clean window, once the forecast shows it.
    let forecasts: Api<CarbonForecast> = Api::all(c.client.clone());
    let now = Utc::now();
    let lead = TimeDelta::from_std(c.settings.lead).expect("a representable lead");
    let window = DateTime::from_timestamp((now + lead).timestamp(), 0).expect("a time");
    let mut forecast = forecasts
        .get(c.forecast)
        .await
        .unwrap_or_else(|e| panic!("reading CarbonForecast {}: {e}", c.forecast));
    forecast.spec.provider = ProviderSpec::Static(StaticPoints {
        points: cluster::forecast_points(now - TimeDelta::minutes(2), window),
        actuals: Vec::new(),
    });
    forecasts
        .replace(c.forecast, &PostParams::default(), &forecast)
        .await
        .unwrap_or_else(|e| panic!("moving the clean window of {}: {e}", c.forecast));
    eventually(
        c.progress,
        &format!(
            "CarbonForecast {} to show the clean window at {}",
            c.forecast,
            rfc3339(window)
        ),
        Duration::from_secs(60),
        Duration::from_millis(250),
        Some(c.operator),
        || async {
            let f = forecasts.get(c.forecast).await.map_err(|e| e.to_string())?;
            let clean = f.status.is_some_and(|s| {
                s.points
                    .iter()
                    .any(|p| p.start == window && p.intensity == cluster::CLEAN)
            });
            if clean {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await;

    // 3. N fresh Jobs through the whole lifecycle.
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let watch = track(c.client, c.namespaces, tracker.clone());
    let keys: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                c.namespaces[i % c.namespaces.len()].clone(),
                format!("wave2-{i:05}"),
            )
        })
        .collect();
    futures::stream::iter(keys.iter().cloned())
        .map(|(ns, name)| {
            let client = c.client.clone();
            async move {
                let job = c.template.held(&ns, &name);
                cluster::create_job(&Api::namespaced(client, &ns), &job).await;
            }
        })
        .buffer_unordered(c.settings.in_flight)
        .collect::<Vec<()>>()
        .await;
    let until_window = (window - Utc::now() - TimeDelta::seconds(1))
        .to_std()
        .unwrap_or_default();
    wait_count(&c, &tracker, "planned", until_window, |t| t.planned).await;
    let rss_planned = timeline.mark(c.progress, format!("wave 2: all {n} planned"));
    tokio::time::sleep((window - Utc::now()).to_std().unwrap_or_default()).await;
    wait_count(&c, &tracker, "released", c.settings.bound(120, 400), |t| {
        t.released
    })
    .await;
    wait_count(&c, &tracker, "Running", c.settings.bound(120, 400), |t| {
        t.running
    })
    .await;
    futures::stream::iter(keys.iter().cloned())
        .map(|(ns, name)| {
            let api: Api<Job> = Api::namespaced(c.client.clone(), &ns);
            async move { cluster::complete_job_status(&api, &name).await }
        })
        .buffer_unordered(c.settings.in_flight)
        .collect::<Vec<usize>>()
        .await;
    wait_count(&c, &tracker, "Succeeded", c.settings.bound(120, 100), |t| {
        t.succeeded
    })
    .await;
    tokio::time::sleep(super::FINISHED_SETTLE).await;
    c.operator.assert_running();
    let rss_finished = timeline.mark(c.progress, format!("wave 2: all {n} finished"));
    watch.abort();
    let peak = timeline.peak();
    let lateness = {
        let t = lock(&tracker);
        t.workloads
            .values()
            .filter_map(|s| Some((s.released_at? - s.planned_start?).as_seconds_f64()))
            .collect::<Vec<f64>>()
    };
    SecondWave {
        rss_emptied_mib: rss_emptied,
        rss_planned_mib: rss_planned,
        rss_finished_mib: rss_finished,
        first_peak_mib: c.first_peak_mib,
        second_peak_mib: peak,
        lateness_decision: crate::report::percentiles(&lateness),
        duration_s: started.elapsed().as_secs_f64(),
        marks: timeline
            .marks
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    (m.at - timeline.started).as_seconds_f64(),
                    m.rss,
                    m.cpu,
                )
            })
            .collect(),
    }
}

async fn wait_count(
    c: &Context<'_>,
    tracker: &Arc<Mutex<Tracker>>,
    what: &str,
    within: Duration,
    count: impl Fn(&Tracker) -> usize,
) {
    let n = c.settings.jobs;
    eventually(
        c.progress,
        &format!("wave 2: all {n} CarbonWorkloads {what}"),
        within,
        Duration::from_millis(250),
        Some(c.operator),
        || async {
            let t = lock(tracker);
            if count(&t) >= n {
                Ok(())
            } else {
                Err(t.summary())
            }
        },
    )
    .await;
}
