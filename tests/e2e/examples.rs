//! Every manifest under `examples/` (recursively; `examples/helm/` holds Helm values, checked by
//! tests/chart.rs and tests/scans.rs) applied with `kubectl apply` to the real control plane, and
//! checked to do what its comment says:
//!
//! - a deferrable Job is stored suspended with the held marker and its CarbonWorkload is
//!   `Deferred`; a dry-run Job is not suspended and its CarbonWorkload carries the plan with
//!   reason `DryRun`; a CronJob's Jobs (`kubectl create job --from=cronjob/...`) are held;
//! - any other object opting in with `carbonshift.dev/deferrable: "true"` (the training kinds of
//!   `examples/kinds/`) gets a `Deferred` CarbonWorkload of its name;
//! - a CarbonForecast replaying a trace becomes `Ready`; the UK one becomes `Ready` against a
//!   local stand-in of the API; the ones of providers that need an account (and the Secret of the
//!   example) record a refresh failure that is about the provider (unreachable here: no egress),
//!   never about a missing Secret or key.
//!
//! `kubectl apply` must print no warning (an unknown `carbonshift.dev/*` key, a zero power
//! estimate and an unknown forecast all warn).
//!
//! To keep scenarios apart the manifests are adjusted as little as running beside other scenarios
//! needs: namespaced objects go to the scenario's namespace, CarbonForecasts get the scenario's
//! label and a name prefixed with it (Jobs naming one follow), pods select the scenario's nodes,
//! and providers' addresses point at 127.0.0.1 (a stand-in, or a closed port), never outside.
//!
//! Objects of the training kinds need their CRDs: they are installed from
//! `../shared/crds-upstream/` when it is there; without it those examples are skipped with a line
//! saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use carbonshift::api::Phase;
use carbonshift::api::annotations::HELD;
use carbonshift::api::forecast::IntensityPoint;
use serde_json::{Value, json};

use crate::fixtures::{CLEAN, DIRTY, annotation, suspended};
use crate::harness::{self, POOL_LABEL, SCENARIO_LABEL, Scenario};
use crate::operator::OperatorOptions;
use crate::provider::{UkStandIn, national_body, slots_with_one_clean};

const DEFERRABLE: &str = "carbonshift.dev/deferrable";
const DRY_RUN: &str = "carbonshift.dev/dry-run";
const FORECAST: &str = "carbonshift.dev/forecast";

/// API groups served by the control plane itself (or by carbonshift's CRDs).
const BUILT_IN_GROUPS: &[&str] = &["", "batch", "apps", "carbonshift.dev"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/crds-upstream/`, beside the repository.
fn upstream_crds() -> PathBuf {
    repo().join("../shared/crds-upstream")
}

/// One file of `examples/` and its objects.
#[derive(Debug, Clone)]
pub struct Example {
    /// Path relative to the repository, e.g. `examples/jobs/dry-run-trial.yaml`.
    pub path: String,
    pub objects: Vec<Value>,
}

/// Every manifest under `examples/` except the Helm values of `examples/helm/`, sorted.
pub fn examples() -> Vec<Example> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "helm") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("examples"), &mut files);
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            let path = file
                .strip_prefix(repo())
                .expect("under the repository")
                .display()
                .to_string();
            let objects: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
            let objects = objects.into_iter().filter(|o| !o.is_null()).collect();
            Example { path, objects }
        })
        .collect()
}

/// `group` of an object's `apiVersion` (`""` for the core group).
fn group(object: &Value) -> &str {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    api_version
        .rsplit_once('/')
        .map(|(group, _)| group)
        .unwrap_or("")
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn annotations(object: &Value) -> Option<&serde_json::Map<String, Value>> {
    object["metadata"]["annotations"].as_object()
}

fn opts_in(object: &Value) -> bool {
    annotations(object).and_then(|a| a.get(DEFERRABLE)) == Some(&json!("true"))
}

fn is_dry_run(object: &Value) -> bool {
    annotations(object).and_then(|a| a.get(DRY_RUN)) == Some(&json!("true"))
}

// ---------------------------------------------------------------------------------------------
// Offline: the examples parse, say what they do, and are listed in examples/README.md.

#[test]
fn every_example_is_a_commented_manifest_listed_in_the_readme() {
    let readme = std::fs::read_to_string(repo().join("examples/README.md"))
        .expect("examples/README.md lists the examples");
    let all = examples();
    assert!(all.len() >= 8, "too few examples: {all:?}");
    for example in &all {
        let text = std::fs::read_to_string(repo().join(&example.path)).unwrap();
        assert!(
            text.starts_with("# "),
            "{} must start with a comment saying what it does and how to apply it",
            example.path
        );
        assert!(
            text.contains("kubectl apply -f ") || text.contains("kubectl apply --server-side -f "),
            "{} must show the command that applies it",
            example.path
        );
        let relative = example.path.trim_start_matches("examples/");
        assert!(
            readme.contains(relative),
            "examples/README.md does not list {relative}"
        );
        assert!(
            !example.objects.is_empty(),
            "{} holds no object",
            example.path
        );
        for object in &example.objects {
            assert!(
                !kind(object).is_empty() && !name(object).is_empty(),
                "{}: every object has a kind and a name: {object}",
                example.path
            );
            // Values are strings: an unquoted `true` would be refused by the API server.
            for (key, value) in annotations(object).into_iter().flatten() {
                assert!(
                    value.is_string(),
                    "{}: annotation {key} is not a string",
                    example.path
                );
            }
        }
    }
    // The use cases of the issue: deadline, interruptible, dry run, each provider, a trace.
    let objects: Vec<&Value> = all.iter().flat_map(|e| &e.objects).collect();
    let providers: BTreeSet<String> = objects
        .iter()
        .filter(|o| kind(o) == "CarbonForecast")
        .filter_map(|o| o["spec"]["provider"].as_object())
        .flat_map(|p| p.keys().cloned())
        .collect();
    for provider in [
        "ukCarbonIntensity",
        "electricityMaps",
        "wattTime",
        "carbonAwareSdk",
        "trace",
    ] {
        assert!(
            providers.contains(provider),
            "no CarbonForecast example for {provider}"
        );
    }
    for (key, value) in [("carbonshift.dev/interruptible", "true"), (DRY_RUN, "true")] {
        assert!(
            objects
                .iter()
                .any(|o| annotations(o).and_then(|a| a.get(key)) == Some(&json!(value))),
            "no example with {key}: {value}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// On the cluster.

#[test]
fn every_example_is_applied_and_does_what_its_comment_says() {
    harness::run("examples", applied);
}

/// How a CarbonForecast example is expected to end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForecastOutcome {
    /// `Ready=True`.
    Ready,
    /// A refresh failure about the provider (unreachable), not about credentials.
    ProviderUnreachable,
}

async fn applied(s: Scenario) {
    let operator = s
        .start_operator(OperatorOptions {
            extra: vec!["--workload-kinds=Job,JobSet,TrainJob,PyTorchJob,MPIJob,RayJob".into()],
            ..OperatorOptions::default()
        })
        .await;
    s.register_webhook(&operator).await;
    // The default forecast: dirty for the next hour, then clean for three days, so that every
    // held example waits about an hour (longer than this test) whatever its window.
    let now = harness::whole_seconds(chrono::Utc::now());
    let points = (-1..72)
        .map(|hour| IntensityPoint {
            start: now + chrono::TimeDelta::hours(hour),
            intensity: if hour < 1 { DIRTY } else { CLEAN },
        })
        .collect();
    s.create_forecast(Scenario::static_spec(points)).await;
    s.wait_forecast_ready().await;

    // The UK API's stand-in, answering the regional shape (`data` is the region object).
    let (slots, _) = slots_with_one_clean(chrono::Utc::now());
    let national: Value = serde_json::from_str(&national_body(&slots)).expect("national body");
    let regional =
        json!({"data": {"regionid": 13, "shortname": "London", "data": national["data"]}});
    let uk = UkStandIn::start(regional.to_string());
    // A port nobody listens on: providers that need an account are unreachable, as without egress.
    let closed = harness::free_ports([std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)])[0];
    let closed_url = format!("http://127.0.0.1:{closed}");

    let upstream = upstream_crds();
    let upstream_groups = upstream_groups(&upstream);
    let mut installed_upstream = false;

    let mut forecast_names: BTreeMap<String, String> = BTreeMap::new();
    let all = examples();
    // Forecast names first, so that Jobs naming one follow whichever file comes first.
    for example in &all {
        for object in &example.objects {
            if kind(object) == "CarbonForecast" {
                forecast_names.insert(
                    name(object).to_string(),
                    format!("{}-{}", s.ns, name(object)),
                );
            }
        }
    }

    let mut forecasts: Vec<(String, ForecastOutcome)> = Vec::new();
    let mut held: Vec<(String, String)> = Vec::new(); // (kind, name) of objects to be Deferred
    let mut dry_runs: Vec<String> = Vec::new();
    let mut applied_files = 0;
    for example in &all {
        let needs_upstream = example
            .objects
            .iter()
            .any(|o| !BUILT_IN_GROUPS.contains(&group(o)));
        if needs_upstream {
            if !upstream.is_dir() {
                s.say(format!(
                    "SKIPPED {}: its kinds need the upstream CRDs of ../shared/crds-upstream/, which is not here",
                    example.path
                ));
                continue;
            }
            let unknown: Vec<&str> = example
                .objects
                .iter()
                .map(group)
                .filter(|g| !BUILT_IN_GROUPS.contains(g) && !upstream_groups.contains(*g))
                .collect();
            assert!(
                unknown.is_empty(),
                "{}: no CRD for the groups {unknown:?} in ../shared/crds-upstream/",
                example.path
            );
            if !installed_upstream {
                crate::kinds::install_crds(&s, &upstream);
                installed_upstream = true;
            }
        }

        let mut items = Vec::new();
        for object in &example.objects {
            let mut object = object.clone();
            localize(
                &mut object,
                &s,
                &forecast_names,
                &uk.base_url(),
                &closed_url,
            );
            match kind(&object) {
                "CarbonForecast" => {
                    s.created_forecast(name(&object));
                    let provider = object["spec"]["provider"]
                        .as_object()
                        .and_then(|p| p.keys().next().cloned())
                        .unwrap_or_default();
                    let outcome = match provider.as_str() {
                        "trace" | "static" | "ukCarbonIntensity" => ForecastOutcome::Ready,
                        _ => ForecastOutcome::ProviderUnreachable,
                    };
                    forecasts.push((name(&object).to_string(), outcome));
                }
                "Job" if opts_in(&object) && is_dry_run(&object) => {
                    dry_runs.push(name(&object).to_string());
                }
                "CronJob" => {
                    let template = &object["spec"]["jobTemplate"];
                    if opts_in(template) && !is_dry_run(template) {
                        held.push(("CronJob".into(), name(&object).to_string()));
                    }
                }
                other if opts_in(&object) && !is_dry_run(&object) => {
                    held.push((other.to_string(), name(&object).to_string()));
                }
                _ => {}
            }
            items.push(object);
        }
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        let out = s.kubectl(&["apply", "-n", &s.ns, "-f", "-"], Some(&list.to_string()));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl apply -f {} failed:\n{stderr}",
            example.path
        );
        assert!(
            !stderr.contains("Warning"),
            "kubectl apply -f {} warned:\n{stderr}",
            example.path
        );
        s.say(format!(
            "applied {}: {}",
            example.path,
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .replace('\n', ", ")
        ));
        applied_files += 1;
    }
    assert!(applied_files > 0, "no example applied");

    // CronJobs: a Job created from each, as its comment shows, is held.
    for (kind, name) in held.iter_mut() {
        if kind == "CronJob" {
            let job = format!("{name}-now");
            let out = s.kubectl(
                &[
                    "create",
                    "job",
                    "-n",
                    &s.ns,
                    &format!("--from=cronjob/{name}"),
                    &job,
                ],
                None,
            );
            assert!(
                out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("Warning"),
                "kubectl create job --from=cronjob/{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            *kind = "Job".to_string();
            *name = job;
        }
    }

    // Held: Jobs stored suspended with the marker; every opted-in object Deferred.
    for (kind, name) in &held {
        if kind == "Job" {
            let job = s.jobs().get(name).await.expect("read Job");
            assert!(suspended(&job), "Job {name} is not suspended");
            assert_eq!(annotation(&job, HELD), Some("true"), "Job {name} not held");
        }
        let status = s
            .wait_phase(name, Phase::Deferred, Duration::from_secs(60))
            .await;
        assert!(
            status.estimated_energy_kwh.is_some_and(|kwh| kwh > 0.0),
            "{kind} {name}: no energy estimate: {}",
            harness::describe(&status)
        );
        s.say(format!("{kind} {name}: {}", harness::describe(&status)));
    }
    // Dry runs: planned and reported, never held.
    for name in &dry_runs {
        let job = s.jobs().get(name).await.expect("read Job");
        assert!(!suspended(&job), "the dry run {name} was suspended");
        let status = s
            .wait_workload(
                name,
                "to carry the dry run's plan",
                Duration::from_secs(60),
                |st| {
                    (st.planned_start.is_some() && st.reason.as_deref() == Some("DryRun"))
                        .then(|| st.clone())
                },
            )
            .await;
        s.say(format!("dry run {name}: {}", harness::describe(&status)));
    }
    // Forecasts.
    let api = s.forecasts();
    for (name, outcome) in &forecasts {
        let status = s
            .eventually(
                &format!("CarbonForecast {name} to be {outcome:?}"),
                Duration::from_secs(90),
                Duration::from_millis(500),
                || async {
                    let status = api
                        .get(name)
                        .await
                        .map_err(|e| e.to_string())?
                        .status
                        .unwrap_or_default();
                    let ready = status
                        .conditions
                        .iter()
                        .any(|c| c.r#type == "Ready" && c.is_true());
                    let done = match outcome {
                        ForecastOutcome::Ready => ready,
                        ForecastOutcome::ProviderUnreachable => status.last_error.is_some(),
                    };
                    if done {
                        Ok(status)
                    } else {
                        Err(format!("{status:?}"))
                    }
                },
            )
            .await;
        if *outcome == ForecastOutcome::ProviderUnreachable {
            let error = status.last_error.unwrap_or_default();
            assert!(
                !error.contains("Secret") && !error.contains("credentials"),
                "CarbonForecast {name}: the example's credentials were not found: {error}"
            );
            s.say(format!(
                "CarbonForecast {name}: unreachable as expected here: {error}"
            ));
        } else {
            s.say(format!(
                "CarbonForecast {name}: Ready, {} point(s), now {:?} g/kWh",
                status.points.len(),
                status.current_intensity
            ));
        }
    }
    assert!(
        !uk.served().is_empty(),
        "the UK example never asked the stand-in"
    );

    // What a new user gets wrong is said at admission, through kubectl: a forecast that does not
    // exist (the webhook's watch cache), a misspelt opt-in, no power to save.
    for (name, annotations, resources, expected) in [
        (
            "no-such-forecast",
            json!({DEFERRABLE: "true", FORECAST: "no-such-forecast"}),
            json!({"requests": {"cpu": "2"}}),
            "no CarbonForecast of that name exists",
        ),
        (
            "misspelt",
            json!({"carbonshift.dev/deferable": "true"}),
            json!({"requests": {"cpu": "2"}}),
            "did you mean carbonshift.dev/deferrable?",
        ),
        (
            "no-power",
            json!({DEFERRABLE: "true"}),
            json!({}),
            "the power estimate is 0 W",
        ),
    ] {
        let mut job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox:1.36", "command": ["true"], "resources": resources}]}}}});
        select_pool(&mut job, &s.nodes.pool);
        let out = s.kubectl(&["create", "-n", &s.ns, "-f", "-"], Some(&job.to_string()));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "kubectl create {name}: {stderr}");
        assert!(
            stderr.contains("Warning:") && stderr.contains(expected),
            "kubectl create {name}: no warning with {expected:?}:\n{stderr}"
        );
        s.say(format!("{name}: {}", stderr.trim()));
    }
    s.check_operators();
}

/// The API groups the CRDs in `dir` define.
fn upstream_groups(dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("  group: ").map(|g| g.trim().to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Adjusts one example object to run beside other scenarios (see the module doc).
fn localize(
    object: &mut Value,
    s: &Scenario,
    forecast_names: &BTreeMap<String, String>,
    uk_url: &str,
    closed_url: &str,
) {
    if object["metadata"].get("namespace").is_some() {
        object["metadata"]["namespace"] = json!(s.ns);
    }
    if kind(object) == "CarbonForecast" {
        let renamed = forecast_names[name(object)].clone();
        object["metadata"]["name"] = json!(renamed);
        object["metadata"]["labels"][SCENARIO_LABEL] = json!(s.ns);
        let provider = &mut object["spec"]["provider"];
        if let Some(sdk) = provider.get_mut("carbonAwareSdk") {
            sdk["url"] = json!(closed_url);
        } else if provider.get("ukCarbonIntensity").is_some() {
            object["spec"]["baseUrl"] = json!(uk_url);
        } else if provider.get("trace").is_none() && provider.get("static").is_none() {
            object["spec"]["baseUrl"] = json!(closed_url);
        }
        return;
    }
    rename_forecasts(object, forecast_names);
    select_pool(object, &s.nodes.pool);
}

/// `carbonshift.dev/forecast` annotations anywhere in the object follow the renamed forecasts.
fn rename_forecasts(value: &mut Value, names: &BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(annotations)) = map.get_mut("annotations")
                && let Some(Value::String(forecast)) = annotations.get_mut(FORECAST)
                && let Some(renamed) = names.get(forecast.as_str())
            {
                *forecast = renamed.clone();
            }
            for child in map.values_mut() {
                rename_forecasts(child, names);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rename_forecasts(i, names)),
        _ => {}
    }
}

/// Every pod spec in the object (anything with `containers`) selects the scenario's nodes.
fn select_pool(value: &mut Value, pool: &str) {
    match value {
        Value::Object(map) => {
            if map.get("containers").is_some_and(Value::is_array) {
                map.entry("nodeSelector")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("nodeSelector is a map")
                    .insert(POOL_LABEL.to_string(), json!(pool));
            }
            for child in map.values_mut() {
                select_pool(child, pool);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| select_pool(i, pool)),
        _ => {}
    }
}
