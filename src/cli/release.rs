//! `carbonshift release`: release held Jobs at once, for uninstalling carbonshift and for
//! emergencies.
//!
//! A held Job is suspended with the `carbonshift.dev/held` marker and has no
//! `carbonshift.dev/released-at` yet. Each is released with the controller's guarded patch
//! (`controller::release`), reason `ManualRelease`: if the Job changed between the list and the
//! patch, it is read again and released only if it is still held. Then, best effort, an Event on
//! the Job and the status of its CarbonWorkload (skipped silently when the CRDs are already gone,
//! as during an uninstall: releasing Jobs needs nothing but Jobs).
//!
//! Exit status: 0 when every held Job was released (or there was none), 1 when a release failed
//! or the cluster cannot be reached, 2 on bad arguments.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::api::annotations;
use crate::api::{CarbonWorkload, FIELD_MANAGER};
use crate::controller::release::{self as guarded, Guard, Outcome};
use crate::lifecycle::ReleaseReason;
use crate::workload::{Adapter, Kinds};

use super::{failure, usage_error};

const EXAMPLES: &str = "\
Examples:
  carbonshift release finetune-llama -n ml     # one Job
  carbonshift release --namespace ml           # every held Job in ml
  carbonshift release -n ml -n research        # every held Job in both (a namespace allow-list)
  carbonshift release --all                    # every held Job in the cluster (before uninstalling)
  carbonshift release --all --dry-run          # list what would be released";

/// The `reportingController` of the Events `carbonshift release` writes.
pub const REPORTER: &str = "carbonshift-release";

/// Arguments of `carbonshift release`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["job", "all", "namespace"])))]
pub struct Args {
    /// The Job to release (in --namespace, or the kubeconfig's namespace).
    pub job: Option<String>,
    /// Every held Job in every namespace.
    #[arg(long, conflicts_with_all = ["job", "namespace"])]
    pub all: bool,
    /// Every held Job in this namespace (repeat for several); with JOB, the Job's namespace.
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Vec<String>,
    /// Only print what would be released.
    #[arg(long)]
    pub dry_run: bool,
    /// The kinds to look at, comma-separated (as the operator's `--workload-kinds`); a kind whose
    /// CRD is not installed is skipped.
    #[arg(
        long,
        env = "CARBONSHIFT_WORKLOAD_KINDS",
        value_name = "KIND,...",
        default_value = "Job,JobSet,TrainJob,PyTorchJob,MPIJob,RayJob"
    )]
    pub workload_kinds: Kinds,
}

/// Which Jobs to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One Job.
    Job {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Every held Job in these namespaces.
    Namespaces(Vec<String>),
    /// Every held Job.
    All,
}

/// What happened to the Jobs looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Released (or, in a dry run, would be).
    pub released: usize,
    /// Not held (any more): nothing to do.
    pub skipped: usize,
    /// Releases that failed.
    pub failed: usize,
}

/// Why the run could not even start.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Listing or reading Jobs failed.
    #[error("cannot read Jobs{where_}: {source}")]
    List {
        /// ` in <ns>` or empty.
        where_: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The named Job does not exist.
    #[error("Job {namespace}/{name} not found")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// Runs the subcommand.
pub fn run(args: Args) -> ExitCode {
    if let Err(message) = target(&args, "default") {
        return usage_error(message);
    }
    // The one read of the wall clock: the marker time of every release.
    let now = Utc::now();
    let runtime = match super::runtime(false) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let (client, server) = match super::cluster_client("release").await {
            Ok(client) => client,
            Err(message) => return failure(message),
        };
        let target = match target(&args, client.default_namespace()) {
            Ok(target) => target,
            Err(message) => return usage_error(message),
        };
        let mut out = std::io::stdout();
        match release_jobs(
            client,
            &target,
            &args.workload_kinds,
            args.dry_run,
            now,
            &mut out,
        )
        .await
        {
            Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => failure(format!("{e} (API server {server})")),
        }
    })
}

/// The Jobs the arguments name; a JOB without `--namespace` is in `default_namespace` (the
/// kubeconfig's).
pub fn target(args: &Args, default_namespace: &str) -> Result<Target, String> {
    match (args.all, &args.job, args.namespace.as_slice()) {
        (true, None, []) => Ok(Target::All),
        (true, _, _) => Err("--all takes neither a JOB nor --namespace".to_string()),
        (false, Some(name), []) => Ok(Target::Job {
            namespace: default_namespace.to_string(),
            name: name.clone(),
        }),
        (false, Some(name), [namespace]) => Ok(Target::Job {
            namespace: namespace.clone(),
            name: name.clone(),
        }),
        (false, Some(_), _) => {
            Err("a JOB is in one namespace: give at most one --namespace".to_string())
        }
        (false, None, []) => Err("give a JOB, --namespace NS or --all".to_string()),
        (false, None, namespaces) => Ok(Target::Namespaces(namespaces.to_vec())),
    }
}

/// Releases the held Jobs of `target`, writing one line per Job to `out` (and one line when
/// there is none).
pub async fn release_jobs(
    client: Client,
    target: &Target,
    kinds: &Kinds,
    dry_run: bool,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<Summary, ReleaseError> {
    let jobs = candidates(&client, target, kinds).await?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: REPORTER.to_string(),
            instance: None,
        },
    );
    let mut summary = Summary::default();
    let mut held = 0;
    for (adapter, job) in jobs {
        let key = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
        if !guarded::is_held(adapter, &job) {
            if matches!(target, Target::Job { .. }) {
                line(
                    out,
                    &format!("{key}: not held by carbonshift; nothing to release"),
                );
                summary.skipped += 1;
            }
            continue;
        }
        held += 1;
        if dry_run {
            line(out, &format!("{key}: would be released (dry run)"));
            summary.released += 1;
            continue;
        }
        match release_one(&client, adapter, &job, now).await {
            Ok(Some(released)) => {
                line(
                    out,
                    &format!(
                        "{key}: released ({})",
                        ReleaseReason::ManualRelease.as_str()
                    ),
                );
                summary.released += 1;
                record(&client, &recorder, adapter, &released, now, out).await;
            }
            Ok(None) => {
                line(
                    out,
                    &format!("{key}: changed meanwhile and no longer held; not released"),
                );
                summary.skipped += 1;
            }
            Err(e) => {
                line(out, &format!("{key}: release failed: {e}"));
                summary.failed += 1;
            }
        }
    }
    if held == 0 && !matches!(target, Target::Job { .. }) {
        let where_ = match target {
            Target::Namespaces(ns) if ns.len() == 1 => format!(" in namespace {}", ns.join("")),
            Target::Namespaces(ns) => format!(" in namespaces {}", ns.join(", ")),
            _ => String::new(),
        };
        line(out, &format!("no held Jobs{where_}; nothing to release"));
    }
    Ok(summary)
}

fn line(out: &mut impl Write, text: &str) {
    // Nothing sensible is left to do when stdout is gone.
    let _ = writeln!(out, "{text}");
}

/// The workloads of every kind of `kinds` that `target` names, with their adapters. A kind the
/// API server does not serve (its CRD is not installed) has none.
async fn candidates(
    client: &Client,
    target: &Target,
    kinds: &Kinds,
) -> Result<Vec<(&'static dyn Adapter, DynamicObject)>, ReleaseError> {
    let list = |api: Api<DynamicObject>, where_: String| async move {
        match api.list(&ListParams::default()).await {
            Ok(list) => Ok(list.items),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
            Err(source) => Err(ReleaseError::List { where_, source }),
        }
    };
    let mut found = Vec::new();
    for adapter in kinds.adapters() {
        let resource = adapter.resource();
        let with = |objects: Vec<DynamicObject>| objects.into_iter().map(move |o| (adapter, o));
        match target {
            Target::All => {
                found.extend(with(
                    list(Api::all_with(client.clone(), resource), String::new()).await?,
                ));
            }
            Target::Namespaces(namespaces) => {
                for ns in namespaces {
                    let api = Api::namespaced_with(client.clone(), ns, resource);
                    found.extend(with(list(api, format!(" in {ns}")).await?));
                }
            }
            Target::Job { namespace, name } => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), namespace, resource);
                match api.get_opt(name).await {
                    Ok(Some(object)) => found.push((adapter, object)),
                    Ok(None) => {}
                    // Not served: the kind's CRD is not installed.
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(source) => {
                        return Err(ReleaseError::List {
                            where_: format!(" in {namespace}"),
                            source,
                        });
                    }
                }
            }
        }
    }
    if let (Target::Job { namespace, name }, true) = (target, found.is_empty()) {
        return Err(ReleaseError::NotFound {
            namespace: namespace.clone(),
            name: name.clone(),
        });
    }
    Ok(found)
}

/// Releases one held workload with the guarded patch; when it changed meanwhile, reads it again
/// and tries once more if it is still held. `Ok(None)`: not held any more.
async fn release_one(
    client: &Client,
    adapter: &dyn Adapter,
    job: &DynamicObject,
    now: DateTime<Utc>,
) -> Result<Option<DynamicObject>, kube::Error> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, adapter.resource());
    let mut current = job.clone();
    for _ in 0..2 {
        match guarded::release(
            &api,
            adapter,
            &name,
            &Guard::of(&current),
            now,
            ReleaseReason::ManualRelease.as_str(),
            &[],
        )
        .await?
        {
            Outcome::Applied(job) => return Ok(Some(*job)),
            Outcome::Gone => return Ok(None),
            Outcome::Changed(_) => match api.get_opt(&name).await? {
                Some(job) if guarded::is_held(adapter, &job) => current = job,
                _ => return Ok(None),
            },
        }
    }
    Ok(None)
}

/// The Event on the Job and the CarbonWorkload's status, best effort.
async fn record(
    client: &Client,
    recorder: &Recorder,
    adapter: &dyn Adapter,
    job: &DynamicObject,
    now: DateTime<Utc>,
    out: &mut impl Write,
) {
    let key = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
    let event = Event {
        type_: EventType::Normal,
        reason: ReleaseReason::ManualRelease.as_str().to_string(),
        note: Some("released at once by carbonshift release".to_string()),
        action: "Release".to_string(),
        secondary: None,
    };
    if let Err(e) = recorder
        .publish(&event, &job.object_ref(adapter.resource()))
        .await
    {
        line(
            out,
            &format!("{key}: warning: cannot record the Event: {e}"),
        );
    }
    let api: Api<CarbonWorkload> =
        Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let patch = json!({
        "status": {
            "phase": "Released",
            "reason": ReleaseReason::ManualRelease.as_str(),
            "message": "released at once by carbonshift release",
            "releasedAt": annotations::marker(now),
        }
    });
    let params = PatchParams {
        field_manager: Some(format!("{FIELD_MANAGER}-release")),
        ..PatchParams::default()
    };
    match api
        .patch_status(&job.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        // No workload, or no CRD any more (uninstall): the Job is what matters.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => line(
            out,
            &format!("{key}: warning: cannot update its CarbonWorkload status: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::controller::fixtures::{Expect, MockApiServer, Reply, Route, t};

    fn job(namespace: &str, name: &str, held: bool, released: bool) -> Value {
        let mut annotations = json!({"carbonshift.dev/deferrable": "true"});
        if held {
            annotations["carbonshift.dev/held"] = json!("true");
        }
        if released {
            annotations["carbonshift.dev/released-at"] = json!("2026-05-04T09:00:00Z");
        }
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                         "resourceVersion": "5", "annotations": annotations},
            "spec": {"suspend": held && !released, "template": {}}
        })
    }

    fn jobs_path(namespace: &str) -> String {
        format!("/apis/batch/v1/namespaces/{namespace}/jobs")
    }

    async fn run_release(
        client: kube::Client,
        target: Target,
        dry_run: bool,
    ) -> (Result<Summary, ReleaseError>, String) {
        let mut out = Vec::new();
        let result = release_jobs(
            client,
            &target,
            &Kinds::jobs_only(),
            dry_run,
            t("2026-05-04T10:00:00Z"),
            &mut out,
        )
        .await;
        (result, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn arguments_name_the_target() {
        use clap::Parser;
        let parse = |line: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(
                ["carbonshift", "release"].iter().chain(line.iter()),
            );
            match cli.map(|c| c.command) {
                Ok(crate::cli::Command::Release(args)) => target(&args, "team"),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e.kind().to_string()),
            }
        };
        assert_eq!(parse(&["--all"]), Ok(Target::All));
        assert_eq!(
            parse(&["train"]),
            Ok(Target::Job {
                namespace: "team".into(),
                name: "train".into()
            })
        );
        assert_eq!(
            parse(&["train", "-n", "ml"]),
            Ok(Target::Job {
                namespace: "ml".into(),
                name: "train".into()
            })
        );
        assert_eq!(
            parse(&["-n", "ml", "--namespace", "research"]),
            Ok(Target::Namespaces(vec!["ml".into(), "research".into()]))
        );
        assert!(parse(&["train", "-n", "a", "-n", "b"]).is_err());
        assert!(parse(&["--all", "-n", "a"]).is_err());
        assert!(parse(&["--all", "train"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[tokio::test]
    async fn releases_every_held_job_and_works_without_the_crds() {
        let (client, api) = MockApiServer::client();
        api.route(Route::list(
            "/apis/batch/v1/jobs",
            "JobList",
            vec![
                job("ml", "a", true, false),
                job("ml", "b", true, true),
                job("research", "c", true, false),
                job("ml", "d", false, false),
            ],
        ));
        let mut released_a = job("ml", "a", true, true);
        released_a["spec"]["suspend"] = json!(false);
        api.expect(
            Expect::patch(format!("{}/a", jobs_path("ml")))
                .body(
                    "/0",
                    json!({"op": "test", "path": "/spec/suspend", "value": true}),
                )
                .body(
                    "/2",
                    json!({"op": "test", "path": "/metadata/resourceVersion", "value": "5"}),
                )
                .body("/4/value", json!("2026-05-04T10:00:00Z"))
                .reply(Reply::Json(200, released_a)),
        );
        api.expect(Expect::event_in("ml", "ManualRelease").regarding("a"));
        // The CRDs are gone already (uninstall): the workload status is skipped.
        api.expect(
            Expect::patch("/apis/carbonshift.dev/v1alpha1/namespaces/ml/carbonworkloads/a/status")
                .body("/status/reason", json!("ManualRelease"))
                .reply(Reply::Error(404, "NotFound")),
        );
        // c changed between the list and the patch, and is no longer held.
        api.expect(
            Expect::patch(format!("{}/c", jobs_path("research")))
                .reply(Reply::Error(422, "Invalid")),
        );
        api.expect(
            Expect::get(format!("{}/c", jobs_path("research")))
                .reply(Reply::Json(200, job("research", "c", true, true))),
        );
        let (result, out) = run_release(client, Target::All, false).await;
        api.verify();
        assert_eq!(
            result.ok(),
            Some(Summary {
                released: 1,
                skipped: 1,
                failed: 0
            })
        );
        assert_eq!(
            out,
            "ml/a: released (ManualRelease)\n\
             research/c: changed meanwhile and no longer held; not released\n"
        );
    }

    #[tokio::test]
    async fn a_changed_job_still_held_is_released_with_its_new_version() {
        let (client, api) = MockApiServer::client();
        api.route(Route::list(
            jobs_path("ml"),
            "JobList",
            vec![job("ml", "a", true, false)],
        ));
        api.expect(
            Expect::patch(format!("{}/a", jobs_path("ml"))).reply(Reply::Error(409, "Conflict")),
        );
        let mut newer = job("ml", "a", true, false);
        newer["metadata"]["resourceVersion"] = json!("6");
        api.expect(Expect::get(format!("{}/a", jobs_path("ml"))).reply(Reply::Json(200, newer)));
        let mut released = job("ml", "a", true, true);
        released["spec"]["suspend"] = json!(false);
        api.expect(
            Expect::patch(format!("{}/a", jobs_path("ml")))
                .body("/2/value", json!("6"))
                .reply(Reply::Json(200, released)),
        );
        api.expect(Expect::event_in("ml", "ManualRelease").regarding("a"));
        api.expect(
            Expect::patch("/apis/carbonshift.dev/v1alpha1/namespaces/ml/carbonworkloads/a/status")
                .body("/status/phase", json!("Released"))
                .reply(Reply::Json(200, json!({
                    "apiVersion": "carbonshift.dev/v1alpha1", "kind": "CarbonWorkload",
                    "metadata": {"name": "a", "namespace": "ml"},
                    "spec": {"jobRef": {"name": "a", "uid": "uid-a"}, "forecast": "default",
                             "submittedAt": "2026-05-04T09:00:00Z", "duration": "1h",
                             "deadline": "2026-05-05T10:00:00Z", "latestStart": "2026-05-05T09:00:00Z",
                             "powerWatts": 0.0, "powerSource": "estimated", "pue": 1.2}
                }))),
        );
        let (result, out) = run_release(client, Target::Namespaces(vec!["ml".into()]), false).await;
        api.verify();
        assert_eq!(result.map(|s| s.released).ok(), Some(1));
        assert_eq!(out, "ml/a: released (ManualRelease)\n");
    }

    #[tokio::test]
    async fn a_dry_run_writes_nothing_and_an_empty_namespace_says_so() {
        let (client, api) = MockApiServer::client();
        api.route(Route::list(
            jobs_path("ml"),
            "JobList",
            vec![job("ml", "a", true, false)],
        ));
        api.route(Route::list(jobs_path("empty"), "JobList", vec![]));
        let (result, out) =
            run_release(client.clone(), Target::Namespaces(vec!["ml".into()]), true).await;
        assert_eq!(result.map(|s| s.released).ok(), Some(1));
        assert_eq!(out, "ml/a: would be released (dry run)\n");
        let (result, out) =
            run_release(client, Target::Namespaces(vec!["empty".into()]), false).await;
        assert_eq!(result.ok(), Some(Summary::default()));
        assert_eq!(out, "no held Jobs in namespace empty; nothing to release\n");
        api.verify();
        assert!(api.writes().is_empty());
    }

    #[tokio::test]
    async fn one_job_by_name() {
        let (client, api) = MockApiServer::client();
        api.expect(
            Expect::get(format!("{}/b", jobs_path("ml")))
                .reply(Reply::Json(200, job("ml", "b", true, true))),
        );
        api.expect(
            Expect::get(format!("{}/zz", jobs_path("ml"))).reply(Reply::Error(404, "NotFound")),
        );
        let target = |name: &str| Target::Job {
            namespace: "ml".into(),
            name: name.into(),
        };
        let (result, out) = run_release(client.clone(), target("b"), false).await;
        assert_eq!(
            result.ok(),
            Some(Summary {
                released: 0,
                skipped: 1,
                failed: 0
            })
        );
        assert_eq!(out, "ml/b: not held by carbonshift; nothing to release\n");
        let (result, _) = run_release(client, target("zz"), false).await;
        assert_eq!(
            result.err().map(|e| e.to_string()),
            Some("Job ml/zz not found".to_string())
        );
        api.verify();
    }

    #[tokio::test]
    async fn failures_are_reported_per_job_and_in_the_summary() {
        let (client, api) = MockApiServer::client();
        api.route(Route::list(
            jobs_path("ml"),
            "JobList",
            vec![job("ml", "a", true, false)],
        ));
        api.expect(
            Expect::patch(format!("{}/a", jobs_path("ml"))).reply(Reply::Error(403, "Forbidden")),
        );
        let (result, out) = run_release(client, Target::Namespaces(vec!["ml".into()]), false).await;
        api.verify();
        assert_eq!(result.map(|s| s.failed).ok(), Some(1));
        assert!(out.starts_with("ml/a: release failed: "), "{out}");
    }
}
