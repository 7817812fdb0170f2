//! Admission through the real API server: the scenario's operator serves the webhook, the API
//! server calls it for Job creations in the scenario's namespace, and the test sees what a user
//! sees — the stored object, the error message and the warning the client gets.

use std::time::Duration;

use carbonshift::api::Phase;
use carbonshift::api::annotations::{DEFERRABLE, HELD, SUBMITTED_AT};
use chrono::{TimeDelta, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;

use crate::fixtures::{annotation, suspended};
use crate::harness::{self, Scenario, kube_time};
use crate::operator::OperatorOptions;

/// The malformed annotations and the webhook's exact messages (the cases of
/// `tests/webhook.rs::each_malformed_annotation_is_denied_with_the_exact_message`).
const MALFORMED: &[(&str, &str, &str)] = &[
    (
        "carbonshift.dev/deferrable",
        "yes",
        r#"carbonshift.dev/deferrable: "yes" is not a boolean; expected "true" or "false""#,
    ),
    (
        "carbonshift.dev/max-delay",
        "0s",
        r#"carbonshift.dev/max-delay: "0s" is zero; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d); to start the Job without waiting, leave out carbonshift.dev/deferrable or set carbonshift.dev/run-now: "true""#,
    ),
    (
        "carbonshift.dev/max-delay",
        "1.5h",
        r#"carbonshift.dev/max-delay: "1.5h" is not a duration: not a whole number followed by a unit; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)"#,
    ),
    (
        "carbonshift.dev/duration",
        "2x",
        r#"carbonshift.dev/duration: "2x" is not a duration: unknown unit "x"; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)"#,
    ),
    (
        "carbonshift.dev/deadline",
        "2026-05-05 18:00",
        r#"carbonshift.dev/deadline: "2026-05-05 18:00" is not an RFC 3339 time; expected an RFC 3339 time with an offset, such as 2026-05-04T18:00:00Z or 2026-05-04T20:00:00+02:00"#,
    ),
    (
        "carbonshift.dev/forecast",
        "UK_South",
        r#"carbonshift.dev/forecast: "UK_South" is not a CarbonForecast name; expected the name of a CarbonForecast: a DNS-1123 subdomain of at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, such as uk-national"#,
    ),
    (
        "carbonshift.dev/power",
        "1400",
        r#"carbonshift.dev/power: "1400" is not a power: power without a unit; expected a positive power with a unit, such as 1400W or 1.4kW"#,
    ),
    (
        "carbonshift.dev/interruptible",
        "True",
        r#"carbonshift.dev/interruptible: "True" is not a boolean; expected "true" or "false""#,
    ),
    (
        "carbonshift.dev/dry-run",
        "yes",
        r#"carbonshift.dev/dry-run: "yes" is not a boolean; expected "true" or "false""#,
    ),
    (
        "carbonshift.dev/run-now",
        "1",
        r#"carbonshift.dev/run-now: "1" is not a boolean; expected "true" or "false""#,
    ),
];

#[test]
fn admission_through_the_api_server_holds_leaves_alone_denies_and_warns() {
    harness::run("admission", admission);
}

async fn admission(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    // A clean window far ahead, so that the held Job stays held while it is looked at.
    s.create_clean_window_forecast(harness::ahead(TimeDelta::minutes(3)))
        .await;
    s.wait_forecast_ready().await;

    // 1. An annotated Job is stored suspended with the markers.
    let before = harness::whole_seconds(Utc::now());
    let created = s.create_job(s.job("held").build()).await;
    let after = Utc::now();
    s.assert_held_at_admission(&created);
    let stored = s.jobs().get("held").await.expect("read Job held");
    assert!(suspended(&stored), "stored spec.suspend: {:?}", stored.spec);
    assert_eq!(annotation(&stored, HELD), Some("true"));
    let submitted = annotation(&stored, SUBMITTED_AT)
        .and_then(carbonshift::units::parse_timestamp)
        .expect("a submitted-at marker in RFC 3339");
    assert!(
        submitted >= before && submitted <= after,
        "submitted-at {submitted} is not the admission time (between {before} and {after})"
    );
    s.wait_deferred("held").await;
    s.say("annotated Job: stored suspended, held, submitted-at the admission time; Deferred");

    // 2. Jobs that do not opt in are stored as sent.
    for (name, job) in [
        ("plain", s.plain_job("plain").build()),
        (
            "opted-out",
            s.plain_job("opted-out")
                .annotation(DEFERRABLE, "false")
                .annotation("carbonshift.dev/max-delay", "8h")
                .build(),
        ),
    ] {
        let sent = job.metadata.annotations.clone();
        let created = s.create_job(job).await;
        assert_eq!(
            created.spec.as_ref().and_then(|s| s.suspend),
            Some(false),
            "{name}: spec.suspend as defaulted by the API server, not changed by the webhook"
        );
        assert_eq!(
            created.metadata.annotations, sent,
            "{name}: the annotations were changed at admission"
        );
    }
    s.say("unannotated and deferrable=\"false\" Jobs: stored untouched");

    // 3. Each malformed annotation is denied with the webhook's message, as the client gets it.
    let jobs = s.jobs();
    let prefix = format!(
        "admission webhook \"{}\" denied the request: ",
        s.webhook_name()
    );
    let mut cases: Vec<(String, Job, String)> = MALFORMED
        .iter()
        .enumerate()
        .map(|(i, (key, value, message))| {
            let name = format!("malformed-{i}");
            let job = s.plain_job(&name).annotation(key, value);
            let job = if *key == DEFERRABLE {
                job
            } else {
                job.annotation(DEFERRABLE, "true")
            };
            (name, job.build(), format!("{prefix}{message}"))
        })
        .collect();
    cases.push((
        "malformed-both".to_string(),
        s.plain_job("malformed-both")
            .annotation(DEFERRABLE, "true")
            .annotation("carbonshift.dev/deadline", "2026-05-05T18:00:00Z")
            .annotation("carbonshift.dev/max-delay", "8h")
            .build(),
        format!(
            "{prefix}{}",
            r#"carbonshift.dev/deadline ("2026-05-05T18:00:00Z") and carbonshift.dev/max-delay ("8h") are both set; expected at most one of them"#
        ),
    ));
    for (name, job, expected) in &cases {
        match jobs.create(&PostParams::default(), job).await {
            Ok(_) => panic!("Job {name} with a malformed annotation was admitted"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(
                    &status.message, expected,
                    "{name}: the API server's message"
                );
                assert_eq!(status.code, 400, "{name}: {status:?}");
                assert_eq!(status.reason, "BadRequest", "{name}: {status:?}");
            }
            Err(e) => panic!("creating Job {name}: {e}"),
        }
        assert!(
            jobs.get_opt(name)
                .await
                .expect("read the denied Job")
                .is_none(),
            "denied Job {name} exists"
        );
    }
    s.say(format!(
        "{} malformed Jobs denied, each with the exact message: {prefix}...",
        cases.len()
    ));

    // 4. An infeasible deadline is admitted unheld, with the warning kubectl prints.
    let deadline = harness::whole_seconds(Utc::now()) - TimeDelta::hours(1);
    let job = s
        .job("infeasible")
        .deadline(deadline)
        .annotation("carbonshift.dev/duration", "1h");
    let output = s.kubectl(
        &["create", "-f", "-", "-o", "json", "-n", &s.ns],
        Some(&job.manifest()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl create failed: {stderr}");
    let created: Job = serde_json::from_slice(&output.stdout).expect("kubectl printed the Job");
    let now = annotation(&created, SUBMITTED_AT)
        .expect("an admitted deferrable Job has submitted-at")
        .to_string();
    let expected = format!(
        "Warning: carbonshift does not hold this Job: to finish by its carbonshift.dev/deadline {} it had to start by {} (1h before), which is before now ({now})",
        kube_time(deadline),
        kube_time(deadline - TimeDelta::hours(1)),
    );
    assert!(
        stderr.lines().any(|l| l == expected),
        "kubectl's stderr has no line {expected:?}:\n{stderr}"
    );
    assert!(!suspended(&created), "the infeasible Job was suspended");
    assert_eq!(annotation(&created, HELD), None);
    s.say(format!(
        "infeasible deadline: admitted unheld; kubectl printed {expected:?}"
    ));
    let status = s
        .wait_workload(
            "infeasible",
            "to be NotDeferred (Infeasible)",
            Duration::from_secs(30),
            |st| (st.phase.is_some()).then(|| st.clone()),
        )
        .await;
    assert!(
        matches!(
            status.phase,
            Some(Phase::NotDeferred | Phase::Running | Phase::Succeeded)
        ) && status.reason.as_deref() == Some("Infeasible"),
        "{}",
        harness::describe(&status)
    );

    // The operator left the unannotated Jobs alone: no CarbonWorkload for them.
    let workloads = s.workloads();
    for name in ["plain", "opted-out"] {
        assert!(
            workloads
                .get_opt(name)
                .await
                .expect("read workload")
                .is_none(),
            "a CarbonWorkload exists for Job {name}, which does not opt in"
        );
    }
}
