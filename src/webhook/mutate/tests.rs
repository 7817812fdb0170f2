//! Every branch of the admission decision, on `AdmissionReview`s shaped like the API server's, plus
//! a property test of the patch against an oracle built from the annotation parser.

use chrono::{DateTime, TimeDelta, Utc};
use json_patch::Patch;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::api::annotations::{HELD_BY, JOB_CONTROLLER};
use k8s_openapi::api::batch::v1::Job;

const NOW: &str = "2026-05-04T10:00:30Z";

fn t(text: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.to_utc(),
        Err(e) => panic!("bad test time {text}: {e}"),
    }
}

fn now() -> DateTime<Utc> {
    t(NOW)
}

/// A Job as the API server sends it to a mutating webhook: defaulted (`suspend: false`), not yet
/// stamped (`creationTimestamp: null`).
fn job(annotations: &[(&str, &str)]) -> Value {
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train", "namespace": "ml", "creationTimestamp": null},
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 6,
            "suspend": false,
            "completionMode": "NonIndexed",
            "template": {
                "metadata": {"creationTimestamp": null},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "train",
                        "image": "ghcr.io/example/train:1",
                        "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "4"}}
                    }]
                }
            }
        }
    });
    if !annotations.is_empty() {
        job["metadata"]["annotations"] = annotations
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    job
}

fn deferrable(extra: &[(&str, &str)]) -> Value {
    let mut annotations = vec![(annotations::DEFERRABLE, "true")];
    annotations.extend_from_slice(extra);
    job(&annotations)
}

fn request_for(
    operation: &str,
    kind: (&str, &str, &str),
    object: Option<Value>,
) -> AdmissionRequest<DynamicObject> {
    let (group, version, kind) = kind;
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "jobs"},
            "name": "train",
            "namespace": "ml",
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    });
    let review: AdmissionReview<DynamicObject> = match serde_json::from_value(review) {
        Ok(review) => review,
        Err(e) => panic!("test review does not deserialize: {e}"),
    };
    match review.try_into() {
        Ok(request) => request,
        Err(e) => panic!("{e}"),
    }
}

fn create(object: Value) -> AdmissionRequest<DynamicObject> {
    request_for("CREATE", ("batch", "v1", "Job"), Some(object))
}

fn run(request: &AdmissionRequest<DynamicObject>) -> (AdmissionResponse, Outcome) {
    mutate(request, &AnnotationDefaults::default(), now())
}

fn admit(object: Value) -> (AdmissionResponse, Outcome) {
    run(&create(object))
}

/// [`admit`] by an operator that leaves Kueue's jobs alone (`--kueue-admission-gate=false`).
fn admit_leaving_kueue_alone(object: Value) -> (AdmissionResponse, Outcome) {
    let admission = Admission {
        kueue: KueueMode::LeaveAlone,
        ..Admission::default()
    };
    mutate_with(
        &create(object),
        &AnnotationDefaults::default(),
        &admission,
        &UnknownForecasts,
        now(),
    )
}

/// The CREATE request for an object of another kind, from its JSON.
fn create_kind(object: Value) -> AdmissionRequest<DynamicObject> {
    let api_version = object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    request_for("CREATE", (group, version, &kind), Some(object))
}

/// `examples/kinds/<file>` as the API server sends it to the webhook (namespace `ml`).
fn example(file: &str) -> Value {
    let path = format!("{}/examples/kinds/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut value: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    value["metadata"]["namespace"] = json!("ml");
    value
}

fn patch_of(response: &AdmissionResponse) -> Option<Patch> {
    response
        .patch
        .as_ref()
        .map(|bytes| match serde_json::from_slice(bytes) {
            Ok(patch) => patch,
            Err(e) => panic!("the patch is not a JSON patch: {e}"),
        })
}

/// The object after the response's patch (the object unchanged without one).
fn applied(object: &Value, response: &AdmissionResponse) -> Value {
    let mut doc = object.clone();
    if let Some(patch) = patch_of(response)
        && let Err(e) = json_patch::patch(&mut doc, &patch)
    {
        panic!("the patch does not apply: {e}");
    }
    doc
}

fn warnings(response: &AdmissionResponse) -> Vec<String> {
    response.warnings.clone().unwrap_or_default()
}

#[test]
fn an_annotated_job_is_held_with_the_exact_patch() {
    let object = deferrable(&[
        (annotations::MAX_DELAY, "8h"),
        (annotations::DURATION, "2h"),
    ]);
    let (response, outcome) = admit(object.clone());

    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: false
        }
    );
    assert_eq!(outcome.result(), "held");
    assert!(response.allowed);
    assert_eq!(response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response.warnings, None);
    let patch = serde_json::to_value(patch_of(&response)).unwrap_or_default();
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/suspend", "value": true},
            {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1submitted-at", "value": NOW},
            {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1held", "value": "true"}
        ])
    );

    let mut expected = object.clone();
    expected["spec"]["suspend"] = json!(true);
    expected["metadata"]["annotations"]["carbonshift.dev/submitted-at"] = json!(NOW);
    expected["metadata"]["annotations"]["carbonshift.dev/held"] = json!("true");
    assert_eq!(applied(&object, &response), expected);
    // The review carries the patch type the API server requires.
    let review = serde_json::to_value(response.into_review()).unwrap_or_default();
    assert_eq!(review["response"]["patchType"], json!("JSONPatch"));
    assert_eq!(review["apiVersion"], json!("admission.k8s.io/v1"));
    assert_eq!(review["kind"], json!("AdmissionReview"));
}

#[test]
fn a_job_without_suspend_or_spec_fields_gets_them_added() {
    let mut object = deferrable(&[]);
    if let Some(spec) = object["spec"].as_object_mut() {
        spec.remove("suspend");
    }
    let (response, _) = admit(object.clone());
    assert_eq!(applied(&object, &response)["spec"]["suspend"], json!(true));

    let mut object = deferrable(&[]);
    if let Some(job) = object.as_object_mut() {
        job.remove("spec");
    }
    let (response, outcome) = admit(object.clone());
    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: false
        }
    );
    assert_eq!(
        applied(&object, &response)["spec"],
        json!({"suspend": true})
    );
}

#[test]
fn the_submitted_at_marker_has_whole_seconds() {
    let request = create(deferrable(&[]));
    let (response, _) = mutate(
        &request,
        &AnnotationDefaults::default(),
        now() + TimeDelta::milliseconds(999),
    );
    let object = applied(&deferrable(&[]), &response);
    assert_eq!(
        object["metadata"]["annotations"]["carbonshift.dev/submitted-at"],
        json!(NOW)
    );
}

#[test]
fn an_already_suspended_job_is_taken_as_held_without_touching_suspend() {
    let mut object = deferrable(&[]);
    object["spec"]["suspend"] = json!(true);
    let (response, outcome) = admit(object.clone());
    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: true
        }
    );
    assert_eq!(outcome.result(), "held");
    let patch = serde_json::to_value(patch_of(&response)).unwrap_or_default();
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1submitted-at", "value": NOW},
            {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1held", "value": "true"}
        ])
    );
    let after = applied(&object, &response);
    assert_eq!(after["spec"]["suspend"], json!(true));
    assert_eq!(
        after["metadata"]["annotations"]["carbonshift.dev/held"],
        json!("true")
    );
}

#[test]
fn jobs_that_do_not_opt_in_are_allowed_untouched() {
    for object in [
        job(&[]),
        job(&[("team", "ml")]),
        job(&[
            (annotations::DEFERRABLE, "false"),
            (annotations::MAX_DELAY, "nonsense"),
        ]),
    ] {
        let (response, outcome) = admit(object.clone());
        assert_eq!(outcome, Outcome::AllowedUntouched(Untouched::NotDeferrable));
        assert_eq!(outcome.result(), "allowed");
        assert!(response.allowed);
        assert_eq!(response.patch, None);
        assert_eq!(response.warnings, None);
    }
}

#[test]
fn a_job_with_no_annotations_map_is_allowed_untouched() {
    let object = job(&[]);
    assert!(object["metadata"].get("annotations").is_none());
    let (response, outcome) = admit(object);
    assert_eq!(outcome, Outcome::AllowedUntouched(Untouched::NotDeferrable));
    assert_eq!(response.patch, None);
}

#[test]
fn annotation_operations_create_the_map_when_there_is_none() {
    let set = [(SUBMITTED_AT, NOW.to_string()), (HELD, "true".to_string())];
    let operations = annotation_operations(None, &set, &[RELEASED_AT]);
    assert_eq!(
        serde_json::to_value(&operations).unwrap_or_default(),
        json!([{
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"carbonshift.dev/submitted-at": NOW, "carbonshift.dev/held": "true"}
        }])
    );
    let mut doc = json!({"metadata": {"name": "x"}});
    if let Err(e) = json_patch::patch(&mut doc, &operations) {
        panic!("{e}");
    }
    assert_eq!(
        doc,
        json!({"metadata": {"name": "x", "annotations": {
            "carbonshift.dev/submitted-at": NOW, "carbonshift.dev/held": "true"
        }}})
    );
    assert!(annotation_operations(None, &[], &[HELD]).is_empty());
}

#[test]
fn malformed_annotations_are_denied_with_the_parsers_message() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(annotations::DEFERRABLE, "yes")],
            r#"carbonshift.dev/deferrable: "yes" is not a boolean; expected "true" or "false""#,
        ),
        (
            &[
                (annotations::DEFERRABLE, "true"),
                (annotations::DURATION, "2x"),
            ],
            r#"carbonshift.dev/duration: "2x" is not a duration: unknown unit "x"; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)"#,
        ),
        (
            &[
                (annotations::DEFERRABLE, "true"),
                (annotations::MAX_DELAY, "0s"),
            ],
            r#"carbonshift.dev/max-delay: "0s" is zero; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d); to start the Job without waiting, leave out carbonshift.dev/deferrable or set carbonshift.dev/run-now: "true""#,
        ),
        (
            &[
                (annotations::DEFERRABLE, "true"),
                (annotations::DEADLINE, "2026-05-05 18:00"),
            ],
            r#"carbonshift.dev/deadline: "2026-05-05 18:00" is not an RFC 3339 time; expected an RFC 3339 time with an offset, such as 2026-05-04T18:00:00Z or 2026-05-04T20:00:00+02:00"#,
        ),
        (
            &[
                (annotations::DEFERRABLE, "true"),
                (annotations::DEADLINE, "2026-05-05T18:00:00Z"),
                (annotations::MAX_DELAY, "8h"),
            ],
            r#"carbonshift.dev/deadline ("2026-05-05T18:00:00Z") and carbonshift.dev/max-delay ("8h") are both set; expected at most one of them"#,
        ),
        (
            &[
                (annotations::DEFERRABLE, "true"),
                (annotations::POWER, "1400"),
            ],
            r#"carbonshift.dev/power: "1400" is not a power: power without a unit; expected a positive power with a unit, such as 1400W or 1.4kW"#,
        ),
        (
            &[
                (annotations::DEFERRABLE, "true"),
                (annotations::DRY_RUN, "yes"),
            ],
            r#"carbonshift.dev/dry-run: "yes" is not a boolean; expected "true" or "false""#,
        ),
        (
            &[
                (annotations::DEFERRABLE, "true"),
                (annotations::FORECAST, "UK_South"),
            ],
            r#"carbonshift.dev/forecast: "UK_South" is not a CarbonForecast name; expected the name of a CarbonForecast: a DNS-1123 subdomain of at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, such as uk-national"#,
        ),
        (
            &[
                (annotations::DEFERRABLE, "true"),
                (annotations::SUBMITTED_AT, "yesterday"),
            ],
            r#"carbonshift.dev/submitted-at: "yesterday" is not an RFC 3339 time; expected an RFC 3339 time with an offset, such as 2026-05-04T18:00:00Z or 2026-05-04T20:00:00+02:00 (this marker is written by carbonshift; remove it or restore the value carbonshift wrote)"#,
        ),
    ];
    for (annotations, message) in cases {
        let (response, outcome) = admit(job(annotations));
        assert!(!response.allowed, "{annotations:?}");
        assert_eq!(response.result.message, *message);
        assert_eq!(response.result.code, 400);
        assert_eq!(response.result.reason, "BadRequest");
        assert_eq!(response.patch, None);
        assert!(matches!(&outcome, Outcome::Denied(e) if e.to_string() == *message));
        assert_eq!(outcome.result(), "denied");
    }
}

#[test]
fn a_bad_gpu_count_in_the_pod_template_is_denied() {
    let mut object = deferrable(&[]);
    object["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] =
        json!("1.5");
    let (response, outcome) = admit(object);
    assert_eq!(outcome.result(), "denied");
    assert_eq!(
        response.result.message,
        r#"spec.template.spec.containers[train].resources.limits[nvidia.com/gpu]: "1.5" is not a GPU count: not a whole number; expected a whole number of devices such as 1 or 8 (or set carbonshift.dev/power to skip the estimate)"#
    );
}

#[test]
fn an_infeasible_deadline_is_admitted_unheld_with_a_warning() {
    // Must finish by 10:30 but runs 1h: it had to start by 09:30.
    let object = deferrable(&[
        (annotations::DEADLINE, "2026-05-04T10:30:00Z"),
        (annotations::DURATION, "1h"),
    ]);
    let (response, outcome) = admit(object.clone());
    assert_eq!(outcome, Outcome::AdmittedWithWarning);
    assert_eq!(outcome.result(), "warned");
    assert!(response.allowed);
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift does not hold this Job: to finish by its carbonshift.dev/deadline \
             2026-05-04T10:30:00Z it had to start by 2026-05-04T09:30:00Z (1h before), which is \
             before now (2026-05-04T10:00:30Z)"
                .to_string()
        ]
    );
    let after = applied(&object, &response);
    assert_eq!(after["spec"]["suspend"], json!(false));
    let mut expected = object.clone();
    expected["metadata"]["annotations"]["carbonshift.dev/submitted-at"] = json!(NOW);
    assert_eq!(after, expected);
}

#[test]
fn a_deadline_that_leaves_exactly_the_duration_is_still_held() {
    let object = deferrable(&[
        (annotations::DEADLINE, "2026-05-04T11:00:30Z"),
        (annotations::DURATION, "1h"),
    ]);
    let (_, outcome) = admit(object);
    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: false
        }
    );
}

#[test]
fn kueue_managed_jobs_are_left_alone_even_with_bad_annotations() {
    let mut object = deferrable(&[(annotations::MAX_DELAY, "0s")]);
    object["metadata"]["labels"] = json!({"kueue.x-k8s.io/queue-name": "user-queue"});
    let (response, outcome) = admit_leaving_kueue_alone(object);
    assert_eq!(outcome, Outcome::AllowedUntouched(Untouched::Kueue));
    assert_eq!(outcome.result(), "allowed");
    assert!(response.allowed);
    assert_eq!(response.patch, None);
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift.dev/deferrable is ignored: Kueue manages this Job \
             (kueue.x-k8s.io/queue-name) and carbonshift leaves it alone"
                .to_string()
        ]
    );

    // The same label without the opt-in: nothing to say.
    let mut object = job(&[]);
    object["metadata"]["labels"] = json!({"kueue.x-k8s.io/queue-name": "user-queue"});
    let (response, outcome) = admit_leaving_kueue_alone(object);
    assert_eq!(outcome, Outcome::AllowedUntouched(Untouched::Kueue));
    assert_eq!(response.warnings, None);

    // Kueue's older annotation form.
    let object = deferrable(&[("kueue.x-k8s.io/queue-name", "user-queue")]);
    let (response, outcome) = admit_leaving_kueue_alone(object);
    assert_eq!(outcome, Outcome::AllowedUntouched(Untouched::Kueue));
    assert_eq!(response.patch, None);
}

/// A Job Kueue queues, as it reaches the webhook (Kueue's own webhook may have suspended it).
fn queued(extra: &[(&str, &str)], gates: Option<&str>) -> Value {
    let mut object = deferrable(extra);
    object["metadata"]["labels"] = json!({"kueue.x-k8s.io/queue-name": "user-queue"});
    object["spec"]["suspend"] = json!(true);
    if let Some(gates) = gates {
        object["metadata"]["annotations"]["kueue.x-k8s.io/admission-gated-by"] = json!(gates);
    }
    object
}

#[test]
fn a_kueue_job_is_held_with_carbonshifts_entry_in_the_admission_gate() {
    let object = queued(&[(annotations::MAX_DELAY, "8h")], None);
    let (response, outcome) = admit(object.clone());
    assert_eq!(outcome, Outcome::Gated);
    assert_eq!(outcome.result(), "held");
    assert_eq!(
        serde_json::to_value(patch_of(&response)).unwrap_or_default(),
        json!([
            {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1submitted-at", "value": NOW},
            {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1held", "value": "true"},
            {"op": "add", "path": "/metadata/annotations/carbonshift.dev~1held-by", "value": "kueue-admission-gate"},
            {"op": "add", "path": "/metadata/annotations/kueue.x-k8s.io~1admission-gated-by", "value": "carbonshift.dev/low-carbon-window"}
        ])
    );
    let after = applied(&object, &response);
    // Kueue's switch is left as it came.
    assert_eq!(after["spec"]["suspend"], json!(true));
    assert_eq!(response.warnings, None);

    // Another controller's gate is kept, carbonshift's entry goes after it.
    let object = queued(&[], Some("example.com/quota-check"));
    let (response, outcome) = admit(object.clone());
    assert_eq!(outcome, Outcome::Gated);
    let after = applied(&object, &response);
    assert_eq!(
        after["metadata"]["annotations"]["kueue.x-k8s.io/admission-gated-by"],
        json!("example.com/quota-check,carbonshift.dev/low-carbon-window")
    );
    // An entry there already (a copied manifest) is not doubled.
    let object = queued(
        &[],
        Some("carbonshift.dev/low-carbon-window, example.com/x"),
    );
    let after = applied(&object, &admit(object.clone()).0);
    assert_eq!(
        after["metadata"]["annotations"]["kueue.x-k8s.io/admission-gated-by"],
        json!("carbonshift.dev/low-carbon-window,example.com/x")
    );

    // Malformed annotations are denied as for any Job.
    let (response, outcome) = admit(queued(&[(annotations::MAX_DELAY, "0s")], None));
    assert!(matches!(outcome, Outcome::Denied(_)));
    assert!(!response.allowed);

    // A dry run is not gated but marked as carbonshift's way to hold it, so that the controller
    // reports it as a dry run and not as Kueue's.
    let object = queued(&[(annotations::DRY_RUN, "true")], None);
    let (response, outcome) = admit(object.clone());
    assert_eq!(outcome, Outcome::DryRun);
    let after = applied(&object, &response);
    let marks = &after["metadata"]["annotations"];
    assert_eq!(marks[HELD_BY], json!("kueue-admission-gate"));
    assert!(marks.get(annotations::ADMISSION_GATED_BY).is_none());
    assert!(marks.get(HELD).is_none());
}

#[test]
fn interruptible_is_refused_for_a_job_held_by_kueues_gate() {
    let (response, outcome) = admit(queued(&[(annotations::INTERRUPTIBLE, "true")], None));
    let expected = "carbonshift.dev/interruptible: \"true\" is not supported for a Job queued by Kueue (kueue.x-k8s.io/queue-name): carbonshift holds it with its entry carbonshift.dev/low-carbon-window in kueue.x-k8s.io/admission-gated-by, which cannot be put back once removed, and Kueue owns its suspend switch; remove carbonshift.dev/interruptible (the Job is then held until its planned start and runs to the end)";
    assert_eq!(outcome, Outcome::Refused(expected.to_string()));
    assert_eq!(outcome.result(), "denied");
    assert!(!response.allowed);
    assert_eq!(response.result.message, expected);
    assert_eq!(response.result.code, 400);
}

#[test]
fn every_kind_is_held_by_its_own_switch() {
    for (file, outcome, switch) in [
        (
            "jobset.yaml",
            Outcome::Held {
                already_suspended: false,
            },
            "/spec/suspend",
        ),
        (
            "trainjob.yaml",
            Outcome::Held {
                already_suspended: false,
            },
            "/spec/suspend",
        ),
        (
            "pytorchjob.yaml",
            Outcome::Held {
                already_suspended: false,
            },
            "/spec/runPolicy/suspend",
        ),
        (
            "mpijob.yaml",
            Outcome::Held {
                already_suspended: false,
            },
            "/spec/runPolicy/suspend",
        ),
        (
            "rayjob.yaml",
            Outcome::Held {
                already_suspended: false,
            },
            "/spec/suspend",
        ),
        ("kueue-job.yaml", Outcome::Gated, ""),
    ] {
        let object = example(file);
        let (response, got) = run(&create_kind(object.clone()));
        assert_eq!(got, outcome, "{file}: {:?}", response.result);
        let after = applied(&object, &response);
        let marks = &after["metadata"]["annotations"];
        assert_eq!(marks[HELD], json!("true"), "{file}");
        assert_eq!(marks[SUBMITTED_AT], json!(NOW), "{file}");
        if !switch.is_empty() {
            assert_eq!(after.pointer(switch), Some(&json!(true)), "{file}");
        }
        assert_eq!(response.warnings, None, "{file}: {:?}", response.warnings);
        // Without the opt-in the same object is left as it is.
        let mut plain = object.clone();
        if let Some(a) = plain["metadata"]["annotations"].as_object_mut() {
            a.retain(|k, _| !k.starts_with("carbonshift.dev/"));
        }
        let (response, got) = run(&create_kind(plain));
        assert_eq!(
            got,
            Outcome::AllowedUntouched(Untouched::NotDeferrable),
            "{file}"
        );
        assert_eq!(response.patch, None, "{file}");
        // A malformed annotation is denied with the parser's message.
        let mut bad = object.clone();
        bad["metadata"]["annotations"]["carbonshift.dev/duration"] = json!("2x");
        let (response, got) = run(&create_kind(bad));
        assert!(matches!(got, Outcome::Denied(_)), "{file}: {got:?}");
        assert_eq!(
            response.result.message,
            r#"carbonshift.dev/duration: "2x" is not a duration: unknown unit "x"; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)"#,
            "{file}"
        );
    }
}

#[test]
fn kinds_that_are_not_turned_on_are_not_the_webhooks_business() {
    let admission = Admission {
        kinds: crate::workload::Kinds::jobs_only(),
        ..Admission::default()
    };
    let (response, outcome) = mutate_with(
        &create_kind(example("rayjob.yaml")),
        &AnnotationDefaults::default(),
        &admission,
        &UnknownForecasts,
        now(),
    );
    assert_eq!(outcome, Outcome::NotAJob);
    assert_eq!(response.patch, None);
}

#[test]
fn a_rayjob_kuberay_cannot_suspend_is_refused_with_what_to_change() {
    let mut object = example("rayjob.yaml");
    object["spec"]["shutdownAfterJobFinishes"] = json!(false);
    let (response, outcome) = run(&create_kind(object));
    assert!(matches!(outcome, Outcome::Refused(_)), "{outcome:?}");
    assert!(!response.allowed);
    assert!(
        response.result.message.starts_with(
            "spec.shutdownAfterJobFinishes must be true for carbonshift to hold a RayJob"
        ),
        "{}",
        response.result.message
    );
    // A dry run is never held: nothing to refuse.
    let mut dry = example("rayjob.yaml");
    dry["spec"]["shutdownAfterJobFinishes"] = json!(false);
    dry["metadata"]["annotations"]["carbonshift.dev/dry-run"] = json!("true");
    assert_eq!(run(&create_kind(dry)).1, Outcome::DryRun);
    // Interruptible RayJobs are refused; interruptible TrainJobs are held (the example is).
    let mut interruptible = example("rayjob.yaml");
    interruptible["metadata"]["annotations"]["carbonshift.dev/interruptible"] = json!("true");
    assert!(matches!(
        run(&create_kind(interruptible)).1,
        Outcome::Refused(_)
    ));
}

#[test]
fn a_jobset_with_affinity_is_held_with_a_warning() {
    let mut object = example("jobset.yaml");
    object["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}]}}});
    let (response, outcome) = run(&create_kind(object));
    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: false
        }
    );
    assert_eq!(warnings(&response).len(), 1, "{:?}", response.warnings);
    assert!(warnings(&response)[0].contains("not to their affinity"));
}

#[test]
fn jobs_managed_by_another_controller_are_left_alone() {
    let mut object = deferrable(&[]);
    object["spec"]["managedBy"] = json!("example.com/batch-controller");
    let (response, outcome) = admit(object);
    assert_eq!(
        outcome,
        Outcome::AllowedUntouched(Untouched::ManagedBy(
            "example.com/batch-controller".to_string()
        ))
    );
    assert_eq!(response.patch, None);
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift.dev/deferrable is ignored: spec.managedBy is \
             \"example.com/batch-controller\", so carbonshift leaves the Job to that controller"
                .to_string()
        ]
    );
}

#[test]
fn the_built_in_job_controller_as_manager_is_held_as_usual() {
    let mut object = deferrable(&[]);
    object["spec"]["managedBy"] = json!(JOB_CONTROLLER);
    let (_, outcome) = admit(object);
    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: false
        }
    );
}

#[test]
fn other_objects_are_not_jobs() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"carbonshift.dev/deferrable": "true"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    let request = request_for("CREATE", ("", "v1", "Pod"), Some(pod));
    let (response, outcome) = run(&request);
    assert_eq!(outcome, Outcome::NotAJob);
    assert_eq!(outcome.result(), "allowed");
    assert!(response.allowed);
    assert_eq!(response.patch, None);

    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"}});
    let request = request_for("CREATE", ("batch", "v1", "CronJob"), Some(cron));
    assert_eq!(run(&request).1, Outcome::NotAJob);
}

#[test]
fn operations_other_than_create_are_ignored() {
    let object = deferrable(&[(annotations::MAX_DELAY, "0s")]);
    for (operation, expected) in [
        ("UPDATE", Operation::Update),
        ("DELETE", Operation::Delete),
        ("CONNECT", Operation::Connect),
    ] {
        let object = (operation != "DELETE").then(|| object.clone());
        let request = request_for(operation, ("batch", "v1", "Job"), object);
        let (response, outcome) = run(&request);
        assert_eq!(
            outcome,
            Outcome::AllowedUntouched(Untouched::Operation(expected))
        );
        assert!(response.allowed);
        assert_eq!(response.patch, None);
        assert_eq!(response.warnings, None);
    }
}

#[test]
fn dry_run_admits_with_the_submitted_at_marker_only() {
    let object = deferrable(&[
        (annotations::DRY_RUN, "true"),
        (annotations::MAX_DELAY, "8h"),
    ]);
    let (response, outcome) = admit(object.clone());
    assert_eq!(outcome, Outcome::DryRun);
    assert_eq!(outcome.result(), "allowed");
    assert_eq!(response.warnings, None);
    let patch = serde_json::to_value(patch_of(&response)).unwrap_or_default();
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/metadata/annotations/carbonshift.dev~1submitted-at", "value": NOW}])
    );
    assert_eq!(applied(&object, &response)["spec"]["suspend"], json!(false));
}

#[test]
fn run_now_at_creation_is_not_held() {
    let object = deferrable(&[(annotations::RUN_NOW, "true")]);
    let (response, outcome) = admit(object.clone());
    assert_eq!(outcome, Outcome::RunNow);
    let after = applied(&object, &response);
    assert_eq!(after["spec"]["suspend"], json!(false));
    assert_eq!(
        after["metadata"]["annotations"]["carbonshift.dev/submitted-at"],
        json!(NOW)
    );
    assert!(after["metadata"]["annotations"].get(HELD).is_none());
}

#[test]
fn a_capped_max_delay_is_held_with_a_warning() {
    let object = deferrable(&[(annotations::MAX_DELAY, "30d")]);
    let (response, outcome) = admit(object);
    assert_eq!(outcome.result(), "held");
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift.dev/max-delay 30d is longer than the operator's maximum delay of 7d; the \
             Job starts by 2026-05-11T10:00:30Z at the latest"
                .to_string()
        ]
    );
}

#[test]
fn a_capped_deadline_is_held_with_a_warning() {
    let object = deferrable(&[
        (annotations::DEADLINE, "2026-06-01T00:00:00Z"),
        (annotations::DURATION, "2h"),
    ]);
    let (response, outcome) = admit(object);
    assert_eq!(outcome.result(), "held");
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift.dev/deadline 2026-06-01T00:00:00Z is further out than the operator's \
             maximum delay of 7d allows; the Job starts by 2026-05-11T10:00:30Z at the latest"
                .to_string()
        ]
    );
}

#[test]
fn the_default_max_delay_is_never_reported_as_capped() {
    let defaults = AnnotationDefaults {
        max_delay: TimeDelta::days(10),
        ..AnnotationDefaults::default()
    };
    let (response, outcome) = mutate(&create(deferrable(&[])), &defaults, now());
    assert_eq!(outcome.result(), "held");
    assert_eq!(response.warnings, None);
}

#[test]
fn unknown_carbonshift_annotations_are_warned_about_with_a_suggestion() {
    let object = deferrable(&[
        ("carbonshift.dev/maxdelay", "8h"),
        ("carbonshift.dev/priority", "high"),
        ("carbonshift.dev/hold", "true"),
    ]);
    let (response, outcome) = admit(object);
    assert_eq!(outcome.result(), "held");
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift.dev/hold is not a carbonshift annotation and is ignored".to_string(),
            "carbonshift.dev/maxdelay is not a carbonshift annotation and is ignored; did you mean \
             carbonshift.dev/max-delay?"
                .to_string(),
            "carbonshift.dev/priority is not a carbonshift annotation and is ignored".to_string(),
        ]
    );
}

#[test]
fn a_misspelt_opt_in_is_warned_about_not_ignored() {
    // `deferable`: the Job does not opt in, but carbonshift says why it is not held.
    let (response, outcome) = admit(job(&[
        ("carbonshift.dev/deferable", "true"),
        (annotations::MAX_DELAY, "8h"),
    ]));
    assert_eq!(outcome, Outcome::AllowedUntouched(Untouched::NotDeferrable));
    assert_eq!(response.patch, None);
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift.dev/deferable is not a carbonshift annotation and is ignored; did you mean \
             carbonshift.dev/deferrable?; the Job does not opt in (carbonshift.dev/deferrable is \
             absent), so carbonshift leaves it alone"
                .to_string(),
            "carbonshift.dev/max-delay is ignored: the Job does not opt in; add \
             carbonshift.dev/deferrable: \"true\" for carbonshift to hold it"
                .to_string(),
        ]
    );
}

#[test]
fn an_explicit_opt_out_and_copied_markers_give_no_warning() {
    for annotations in [
        vec![(DEFERRABLE, "false"), (annotations::MAX_DELAY, "8h")],
        vec![(HELD, "true"), (SUBMITTED_AT, "2026-04-01T00:00:00Z")],
        vec![("example.com/team", "ml")],
    ] {
        let (response, outcome) = admit(job(&annotations));
        assert_eq!(outcome.result(), "allowed");
        assert_eq!(response.warnings, None, "{annotations:?}");
    }
}

#[test]
fn a_forecast_that_does_not_exist_is_warned_about() {
    let known: std::collections::BTreeSet<String> = ["uk-national".to_string()].into();
    let defaults = AnnotationDefaults::default();
    let request = create(deferrable(&[(annotations::FORECAST, "uk-natoinal")]));
    let (response, outcome) =
        mutate_with(&request, &defaults, &Admission::default(), &known, now());
    // Held all the same: the forecast may be created after the Job.
    assert_eq!(outcome.result(), "held");
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift.dev/forecast \"uk-natoinal\": no CarbonForecast of that name exists (or \
             the operator's --forecast-selector leaves it out); without a forecast the Job gets no \
             plan (reason NoForecast) and follows the operator's --no-forecast policy: create it or \
             fix the name (kubectl get carbonforecasts)"
                .to_string()
        ]
    );
    // The default forecast too, named as such.
    let (response, _) = mutate_with(
        &create(deferrable(&[])),
        &defaults,
        &Admission::default(),
        &known,
        now(),
    );
    assert!(
        warnings(&response)[0]
            .starts_with("the operator's default forecast \"default\": no CarbonForecast"),
        "{:?}",
        warnings(&response)
    );
    // A known forecast, or a catalog that does not know yet: no warning.
    let request = create(deferrable(&[(annotations::FORECAST, "uk-national")]));
    let (response, _) = mutate_with(&request, &defaults, &Admission::default(), &known, now());
    assert_eq!(response.warnings, None);
    let (response, _) = mutate_with(
        &request,
        &defaults,
        &Admission::default(),
        &UnknownForecasts,
        now(),
    );
    assert_eq!(response.warnings, None);
}

#[test]
fn a_zero_power_estimate_is_warned_about() {
    let mut object = deferrable(&[]);
    object["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({});
    let (response, outcome) = admit(object.clone());
    assert_eq!(outcome.result(), "held");
    assert_eq!(
        warnings(&response),
        vec![
            "the power estimate is 0 W (no GPU or CPU requests in the pod template and no \
             carbonshift.dev/power), so carbonshift can report no saving (0 g avoided): set \
             carbonshift.dev/power (for example \"1400W\") or resource requests"
                .to_string()
        ]
    );
    // With a power annotation, no warning.
    object["metadata"]["annotations"][annotations::POWER] = json!("1400W");
    let (response, _) = admit(object);
    assert_eq!(response.warnings, None);
}

#[test]
fn markers_copied_from_an_older_job_are_replaced() {
    let object = deferrable(&[
        (SUBMITTED_AT, "2026-04-01T00:00:00Z"),
        (HELD, "true"),
        (RELEASED_AT, "2026-04-01T03:00:00Z"),
        (annotations::MAX_DELAY, "8h"),
    ]);
    let (response, outcome) = admit(object.clone());
    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: false
        }
    );
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift writes carbonshift.dev/submitted-at, carbonshift.dev/released-at itself; \
             the values given were replaced"
                .to_string()
        ]
    );
    let after = applied(&object, &response);
    assert_eq!(
        after["metadata"]["annotations"],
        json!({
            "carbonshift.dev/deferrable": "true",
            "carbonshift.dev/max-delay": "8h",
            "carbonshift.dev/submitted-at": NOW,
            "carbonshift.dev/held": "true"
        })
    );

    // Not held: a copied held marker goes too.
    let object = deferrable(&[(HELD, "true"), (annotations::DRY_RUN, "true")]);
    let (response, outcome) = admit(object.clone());
    assert_eq!(outcome, Outcome::DryRun);
    let after = applied(&object, &response);
    assert!(after["metadata"]["annotations"].get(HELD).is_none());
    assert_eq!(
        warnings(&response),
        vec![
            "carbonshift writes carbonshift.dev/held itself; the values given were replaced"
                .to_string()
        ]
    );
}

#[test]
fn a_copied_creation_time_does_not_shorten_the_window() {
    let mut object = deferrable(&[(annotations::MAX_DELAY, "1h")]);
    object["metadata"]["creationTimestamp"] = json!("2026-04-01T00:00:00Z");
    let (_, outcome) = admit(object);
    assert_eq!(
        outcome,
        Outcome::Held {
            already_suspended: false
        }
    );
}

#[test]
fn an_object_that_is_not_a_valid_job_is_denied_clearly() {
    let mut object = deferrable(&[]);
    object["spec"]["parallelism"] = json!("two");
    let (response, outcome) = admit(object);
    assert!(!response.allowed);
    assert_eq!(outcome.result(), "error");
    assert!(
        response.result.message.starts_with(
            "the object is not a valid batch/v1 Job: spec.parallelism: invalid type: string \"two\""
        ),
        "{}",
        response.result.message
    );
    assert_eq!(response.result.code, 400);
}

#[test]
fn a_create_without_an_object_is_denied_clearly() {
    let request = request_for("CREATE", ("batch", "v1", "Job"), None);
    let (response, outcome) = run(&request);
    assert_eq!(
        outcome,
        Outcome::Invalid("the AdmissionReview has no object to create".to_string())
    );
    assert!(!response.allowed);
    assert_eq!(
        response.result.message,
        "the AdmissionReview has no object to create"
    );
}

#[test]
fn edit_distance_counts_single_character_edits() {
    assert_eq!(edit_distance("maxdelay", "max-delay"), 1);
    assert_eq!(edit_distance("deferable", "deferrable"), 1);
    assert_eq!(edit_distance("duraton", "duration"), 1);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(
        closest_known("carbonshift.dev/run_now"),
        Some(annotations::RUN_NOW)
    );
    assert_eq!(closest_known("carbonshift.dev/colour"), None);
}

/// Candidate annotation values, valid and not, per key.
fn annotation_strategy() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    let choices: Vec<(&'static str, Vec<&'static str>)> = vec![
        (annotations::DEFERRABLE, vec!["true", "false", "yes"]),
        (annotations::MAX_DELAY, vec!["8h", "30d", "0s", "soon"]),
        (
            annotations::DEADLINE,
            vec![
                "2026-05-04T10:30:00Z",
                "2026-05-05T06:00:00Z",
                "2026-07-01T00:00:00Z",
                "tomorrow",
            ],
        ),
        (annotations::DURATION, vec!["45m", "3h", "400d"]),
        (annotations::DRY_RUN, vec!["true", "false", "1"]),
        (annotations::RUN_NOW, vec!["true", "false"]),
        (annotations::POWER, vec!["1.4kW", "1400"]),
        (HELD, vec!["true", "false"]),
        (SUBMITTED_AT, vec!["2026-04-01T00:00:00Z", "never"]),
        (RELEASED_AT, vec!["2026-04-01T03:00:00Z"]),
        ("carbonshift.dev/maxdelay", vec!["8h"]),
        ("kueue.x-k8s.io/queue-name", vec!["q"]),
    ];
    let per_key: Vec<_> = choices
        .into_iter()
        .map(|(key, values)| {
            proptest::option::weighted(0.5, proptest::sample::select(values))
                .prop_map(move |value| value.map(|v| (key, v)))
        })
        .collect();
    per_key.prop_map(|entries| entries.into_iter().flatten().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the annotations, the answer matches an oracle built from the parser, and the patch
    /// applies to the object and leaves it in the state the outcome describes.
    #[test]
    fn the_patch_matches_an_oracle(
        annotations in annotation_strategy(),
        suspend in proptest::option::of(any::<bool>()),
        kueue_label in any::<bool>(),
        managed_by in proptest::option::of(proptest::sample::select(vec![JOB_CONTROLLER, "example.com/other"])),
        gate in any::<bool>(),
    ) {
        let mut object = job(&annotations);
        match suspend {
            Some(s) => object["spec"]["suspend"] = json!(s),
            None => { if let Some(spec) = object["spec"].as_object_mut() { spec.remove("suspend"); } }
        }
        if kueue_label {
            object["metadata"]["labels"] = json!({"kueue.x-k8s.io/queue-name": "q"});
        }
        if let Some(manager) = managed_by {
            object["spec"]["managedBy"] = json!(manager);
        }
        let (response, outcome) = if gate {
            admit(object.clone())
        } else {
            admit_leaving_kueue_alone(object.clone())
        };

        // The oracle.
        let typed: Job = match serde_json::from_value(object.clone()) {
            Ok(job) => job,
            Err(e) => return Err(TestCaseError::fail(format!("fixture is not a Job: {e}"))),
        };
        let has_queue = kueue_label || annotations.iter().any(|(k, _)| *k == KUEUE_QUEUE_NAME);
        let managed = managed_by.is_some_and(|m| m != JOB_CONTROLLER);
        let gated = gate && has_queue;
        let expected = if (has_queue && !gate) || (managed && !gated) {
            "allowed"
        } else {
            match crate::workload::job::view(&typed, &AnnotationDefaults::default(), now()).deferral {
                Err(_) => "denied",
                Ok(None) => "allowed",
                Ok(Some(mut d)) => {
                    d.submitted_at = now();
                    if d.dry_run || d.run_now { "allowed" }
                    else if !d.is_feasible(now()) { "warned" }
                    else if gated && annotations.iter().any(|(k, v)| *k == annotations::INTERRUPTIBLE && *v == "true") { "denied" }
                    else { "held" }
                }
            }
        };
        prop_assert_eq!(outcome.result(), expected);
        prop_assert_eq!(response.allowed, expected != "denied");

        let after = applied(&object, &response);
        let marks = &after["metadata"]["annotations"];
        let held = expected == "held";
        let admitted_deferrable = matches!(
            outcome,
            Outcome::Held { .. } | Outcome::Gated | Outcome::DryRun | Outcome::RunNow | Outcome::AdmittedWithWarning
        );
        prop_assert_eq!(response.patch.is_some(), admitted_deferrable);
        if admitted_deferrable {
            prop_assert_eq!(&marks["carbonshift.dev/submitted-at"], &json!(NOW));
            prop_assert!(marks.get(RELEASED_AT).is_none());
            prop_assert_eq!(marks.get(HELD).is_some(), held);
            prop_assert_eq!(marks.get(HELD_BY).is_some(), gated);
            let gate_entry = marks
                .get(annotations::ADMISSION_GATED_BY)
                .and_then(Value::as_str)
                .is_some_and(annotations::has_gate);
            prop_assert_eq!(gate_entry, held && gated);
            let suspended_after = after["spec"]["suspend"] == json!(true);
            prop_assert_eq!(suspended_after, (held && !gated) || suspend == Some(true));
        } else {
            prop_assert_eq!(&after, &object);
        }
        // The result still is a valid Job.
        prop_assert!(serde_json::from_value::<Job>(after).is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// Budgets

/// A book with one budget `team-a` in namespace `ml` (limit 1000 g) and a ledger of forecast
/// `default` holding `used` grams this month.
fn book(action: BudgetAction, used: f64) -> FixedBudgets {
    FixedBudgets {
        budgets: vec![(
            "ml".into(),
            "team-a".into(),
            CarbonBudgetSpec {
                grams_per_month: Some(1000.0),
                kwh_per_month: None,
                action,
                forecasts: Vec::new(),
            },
        )],
        ledgers: vec![(
            "ml".into(),
            "default".into(),
            CarbonLedgerStatus {
                months: vec![crate::api::ledger::LedgerTotals {
                    month: "2026-05".into(),
                    jobs: 3,
                    emitted_grams: used,
                    ..Default::default()
                }],
                ..Default::default()
            },
        )],
    }
}

fn admit_with(object: Value, budgets: &dyn BudgetBook) -> Answer {
    mutate_full(
        &create(object),
        &AnnotationDefaults::default(),
        &Admission::default(),
        &UnknownForecasts,
        budgets,
        now(),
    )
}

#[test]
fn an_exhausted_deny_budget_denies_new_deferrable_work_with_the_exact_message() {
    let answer = admit_with(deferrable(&[]), &book(BudgetAction::Deny, 1500.0));
    let message = "CarbonBudget ml/team-a denies new deferrable work: 1500.0 gCO2eq used of 1000.0 gCO2eq in 2026-05 (UTC); it resets at 2026-06-01T00:00:00Z. Wait for the reset, raise the budget's limit, or set its spec.action to Warn or Defer";
    assert_eq!(answer.outcome, Outcome::OverBudget(message.to_string()));
    assert_eq!(answer.outcome.result(), "denied");
    assert!(!answer.response.allowed);
    assert_eq!(answer.response.result.message, message);
    assert_eq!(answer.response.result.code, 403);
    assert_eq!(
        answer.budget,
        Some(("ml".into(), "team-a".into(), BudgetAction::Deny))
    );
    // Below the limit, work that does not opt in, and another namespace: untouched by it.
    let below = admit_with(deferrable(&[]), &book(BudgetAction::Deny, 999.9));
    assert_eq!(below.outcome.result(), "held");
    assert_eq!((below.response.warnings, below.budget), (None, None));
    let plain = admit_with(job(&[]), &book(BudgetAction::Deny, 1500.0));
    assert_eq!(plain.outcome.result(), "allowed");
    let mut elsewhere = book(BudgetAction::Deny, 1500.0);
    elsewhere.budgets[0].0 = "other".into();
    assert_eq!(
        admit_with(deferrable(&[]), &elsewhere).outcome.result(),
        "held"
    );
    // Malformed annotations are still denied with the parser's message, not the budget's.
    let bad = admit_with(
        deferrable(&[(annotations::MAX_DELAY, "soon")]),
        &book(BudgetAction::Deny, 1500.0),
    );
    assert!(
        matches!(bad.outcome, Outcome::Denied(_)),
        "{:?}",
        bad.outcome
    );
}

#[test]
fn an_exhausted_defer_budget_takes_away_the_dry_run_and_run_now_shortcuts() {
    let object = deferrable(&[
        (annotations::DRY_RUN, "true"),
        (annotations::RUN_NOW, "true"),
    ]);
    // Without a budget: a dry run, admitted unheld.
    assert_eq!(
        admit_with(object.clone(), &NoBudgets).outcome,
        Outcome::DryRun
    );
    let answer = admit_with(object.clone(), &book(BudgetAction::Defer, 1000.0));
    assert_eq!(
        answer.outcome,
        Outcome::Held {
            already_suspended: false
        }
    );
    let stored = applied(&object, &answer.response);
    let annotations_of = &stored["metadata"]["annotations"];
    assert_eq!(annotations_of[annotations::DRY_RUN], "false");
    assert_eq!(annotations_of[annotations::RUN_NOW], "false");
    assert_eq!(annotations_of[HELD], "true");
    assert_eq!(stored["spec"]["suspend"], true);
    assert_eq!(
        warnings(&answer.response),
        vec![
            "CarbonBudget ml/team-a is used up: 1000.0 gCO2eq used of 1000.0 gCO2eq in 2026-05 (UTC), resetting at 2026-06-01T00:00:00Z; the workload is held for its cleanest window up to its deadline: carbonshift.dev/dry-run and carbonshift.dev/run-now set to \"false\""
                .to_string()
        ]
    );
    // Ordinary deferrable work is held as always, with the warning.
    let plain = admit_with(deferrable(&[]), &book(BudgetAction::Defer, 1000.0));
    assert_eq!(plain.outcome.result(), "held");
    assert!(
        warnings(&plain.response)[0].ends_with("held for its cleanest window up to its deadline")
    );
}

#[test]
fn a_budget_never_delays_work_past_its_deadline() {
    // Due in 30 minutes with 1h to run: no time to wait.
    let object = deferrable(&[
        (annotations::DEADLINE, "2026-05-04T10:30:00Z"),
        (annotations::DURATION, "1h"),
    ]);
    let answer = admit_with(object.clone(), &book(BudgetAction::Defer, 5000.0));
    assert_eq!(answer.outcome, Outcome::AdmittedWithWarning);
    assert_eq!(applied(&object, &answer.response)["spec"]["suspend"], false);
    assert!(
        warnings(&answer.response)
            .iter()
            .any(|w| w.ends_with("a budget never delays work past its deadline")),
        "{:?}",
        warnings(&answer.response)
    );
}

#[test]
fn an_exhausted_warn_budget_warns_and_admits_as_usual() {
    let mut both = book(BudgetAction::Warn, 1200.0);
    let mut defer = both.budgets[0].clone();
    defer.1 = "team-a-hard".into();
    defer.2.action = BudgetAction::Defer;
    defer.2.grams_per_month = Some(5000.0);
    both.budgets.push(defer);
    let answer = admit_with(deferrable(&[(annotations::DRY_RUN, "true")]), &both);
    // The Defer budget is not used up, so the Warn one decides and the dry run stays one.
    assert_eq!(answer.outcome, Outcome::DryRun);
    assert_eq!(
        warnings(&answer.response),
        vec![
            "CarbonBudget ml/team-a is used up: 1200.0 gCO2eq used of 1000.0 gCO2eq in 2026-05 (UTC), resetting at 2026-06-01T00:00:00Z; the workload is admitted as usual (action Warn)"
                .to_string()
        ]
    );
    assert_eq!(
        answer.budget,
        Some(("ml".into(), "team-a".into(), BudgetAction::Warn))
    );
}
