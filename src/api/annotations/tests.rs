//! Table-driven tests of the annotation contract, plus property tests against a brute-force
//! oracle for the derived times.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

use super::*;
use crate::units::{DurationError, PowerError};

fn t(text: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.to_utc(),
        Err(e) => panic!("bad test time {text}: {e}"),
    }
}

/// Creation time of the test Jobs.
const CREATED: &str = "2026-05-04T10:00:00Z";
/// The `now` passed to `parse`.
const NOW: &str = "2026-05-04T10:00:30Z";

fn h(hours: i64) -> TimeDelta {
    TimeDelta::hours(hours)
}

fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
    (!pairs.is_empty()).then(|| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    })
}

fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Option<ResourceRequirements> {
    Some(ResourceRequirements {
        requests: quantities(requests),
        limits: quantities(limits),
        ..Default::default()
    })
}

fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
    Container {
        name: name.to_string(),
        image: Some("ghcr.io/example/train:1".to_string()),
        resources: resources(requests, limits),
        ..Default::default()
    }
}

/// A Job fixture: `job().deferrable().annotate(DURATION, "2h").gpus(...)`.
struct JobBuilder(Job);

/// A Job named `train` created at [`CREATED`], with no container yet and no annotation.
fn job() -> JobBuilder {
    let mut job = Job::default();
    job.metadata.name = Some("train".to_string());
    job.metadata.namespace = Some("ml".to_string());
    job.metadata.creation_timestamp = Some(Time(
        CREATED
            .parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("{e}")),
    ));
    job.spec = Some(JobSpec {
        template: PodTemplateSpec {
            spec: Some(PodSpec::default()),
            ..Default::default()
        },
        ..Default::default()
    });
    JobBuilder(job)
}

impl JobBuilder {
    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
        self
    }

    fn annotations(self, pairs: &[(&str, &str)]) -> Self {
        pairs.iter().fold(self, |b, (k, v)| b.annotate(k, v))
    }

    fn deferrable(self) -> Self {
        self.annotate(DEFERRABLE, "true")
    }

    fn uncreated(mut self) -> Self {
        self.0.metadata.creation_timestamp = None;
        self
    }

    fn pod(&mut self) -> &mut PodSpec {
        let spec = self.0.spec.get_or_insert_with(JobSpec::default);
        spec.template.spec.get_or_insert_with(PodSpec::default)
    }

    fn container(mut self, c: Container) -> Self {
        self.pod().containers.push(c);
        self
    }

    fn init_container(mut self, c: Container) -> Self {
        self.pod()
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(c);
        self
    }

    fn sidecar(self, mut c: Container) -> Self {
        c.restart_policy = Some("Always".to_string());
        self.init_container(c)
    }

    fn pod_resources(mut self, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Self {
        self.pod().resources = resources(requests, limits);
        self
    }

    fn parallelism(mut self, n: i32) -> Self {
        if let Some(spec) = self.0.spec.as_mut() {
            spec.parallelism = Some(n);
        }
        self
    }

    fn completions(mut self, n: i32) -> Self {
        if let Some(spec) = self.0.spec.as_mut() {
            spec.completions = Some(n);
        }
        self
    }

    fn without_spec(mut self) -> Self {
        self.0.spec = None;
        self
    }

    fn build(self) -> Job {
        self.0
    }
}

/// Annotation key-value pairs of a test case.
type Annotations<'a> = Vec<(&'a str, &'a str)>;

/// The one pod set of a test Job: its template, `parallelism` pods at most `completions` (the
/// Job adapter's rule, tested in `workload::job`).
fn pod_sets(job: &Job) -> Vec<PodSet> {
    let spec = job.spec.as_ref();
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(1);
    let limit = spec.and_then(|s| s.completions).unwrap_or(parallelism);
    vec![PodSet {
        path: "spec.template.spec".to_string(),
        pod: spec.and_then(|s| s.template.spec.clone()),
        count: u32::try_from(parallelism.min(limit)).unwrap_or(0),
    }]
}

/// Parses a Job's annotations as the webhook and the controller do.
fn parse_job(
    job: &Job,
    defaults: &AnnotationDefaults,
    now: DateTime<Utc>,
) -> Result<Option<Deferral>, AnnotationError> {
    let sets = pod_sets(job);
    let subject = Subject {
        annotations: job.metadata.annotations.as_ref(),
        created: job
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| crate::units::from_jiff(t.0)),
        pod_sets: &sets,
    };
    parse(&subject, defaults, now)
}

fn parse_with_defaults(job: &Job) -> Result<Option<Deferral>, AnnotationError> {
    parse_job(job, &AnnotationDefaults::default(), t(NOW))
}

/// What a deferrable Job with no other annotation and no resources parses to.
fn baseline() -> Deferral {
    Deferral {
        submitted_at: t(CREATED),
        duration: h(1),
        duration_source: Source::Default,
        limit: Limit::DefaultMaxDelay(h(24)),
        max_allowed_delay: TimeDelta::days(7),
        forecast: "default".to_string(),
        forecast_source: Source::Default,
        candidates: Vec::new(),
        interruptible: false,
        dry_run: false,
        run_now: false,
        power: Power {
            watts: 0.0,
            source: PowerSource::Estimated {
                gpus_per_pod: 0,
                cores_per_pod: 0.0,
                parallelism: 1,
            },
        },
        pue: 1.2,
        held: false,
        released_at: None,
        unknown_annotations: vec![],
    }
}

#[test]
fn jobs_that_do_not_opt_in_are_ignored_whatever_else_they_say() {
    let garbage: &[(&str, &str)] = &[
        (DURATION, "2x"),
        (MAX_DELAY, "0s"),
        (DEADLINE, "tomorrow"),
        (POWER, "lots"),
        (DRY_RUN, "maybe"),
        (HELD, "yes"),
        (SUBMITTED_AT, "never"),
    ];
    let cases = [
        ("no annotation at all", job().build()),
        ("deferrable absent", job().annotations(garbage).build()),
        (
            "deferrable false",
            job()
                .annotate(DEFERRABLE, "false")
                .annotations(garbage)
                .build(),
        ),
        (
            "a bad CPU quantity",
            job()
                .annotate(DEFERRABLE, "false")
                .container(container("train", &[("cpu", "lots")], &[]))
                .build(),
        ),
        ("no spec", job().without_spec().build()),
    ];
    for (name, job) in cases {
        assert_eq!(parse_with_defaults(&job), Ok(None), "{name}");
        assert!(!is_deferrable(job.metadata.annotations.as_ref()), "{name}");
    }
}

#[test]
fn every_malformed_annotation_gives_its_own_error() {
    use AnnotationError as E;
    let long_name = "a".repeat(254);
    let cases: Vec<(&str, Annotations, AnnotationError)> = vec![
        (
            "deferrable yes",
            vec![(DEFERRABLE, "yes")],
            E::NotABoolean {
                key: DEFERRABLE,
                value: "yes".into(),
            },
        ),
        (
            "deferrable True (booleans are lower-case)",
            vec![(DEFERRABLE, "True")],
            E::NotABoolean {
                key: DEFERRABLE,
                value: "True".into(),
            },
        ),
        (
            "deferrable empty",
            vec![(DEFERRABLE, "")],
            E::NotABoolean {
                key: DEFERRABLE,
                value: "".into(),
            },
        ),
        (
            "interruptible 1",
            vec![(INTERRUPTIBLE, "1")],
            E::NotABoolean {
                key: INTERRUPTIBLE,
                value: "1".into(),
            },
        ),
        (
            "dry-run no",
            vec![(DRY_RUN, "no")],
            E::NotABoolean {
                key: DRY_RUN,
                value: "no".into(),
            },
        ),
        (
            "run-now TRUE",
            vec![(RUN_NOW, "TRUE")],
            E::NotABoolean {
                key: RUN_NOW,
                value: "TRUE".into(),
            },
        ),
        (
            "held marker yes",
            vec![(HELD, "yes")],
            E::NotABoolean {
                key: HELD,
                value: "yes".into(),
            },
        ),
        (
            "duration with an unknown unit",
            vec![(DURATION, "2x")],
            E::BadDuration {
                key: DURATION,
                value: "2x".into(),
                reason: DurationError::UnknownUnit("x".into()),
            },
        ),
        (
            "duration spelt out",
            vec![(DURATION, "3hours")],
            E::BadDuration {
                key: DURATION,
                value: "3hours".into(),
                reason: DurationError::UnknownUnit("hours".into()),
            },
        ),
        (
            "duration without a unit",
            vec![(DURATION, "90")],
            E::BadDuration {
                key: DURATION,
                value: "90".into(),
                reason: DurationError::MissingUnit,
            },
        ),
        (
            "negative duration",
            vec![(DURATION, "-2h")],
            E::BadDuration {
                key: DURATION,
                value: "-2h".into(),
                reason: DurationError::Malformed,
            },
        ),
        (
            "fractional duration",
            vec![(DURATION, "1.5h")],
            E::BadDuration {
                key: DURATION,
                value: "1.5h".into(),
                reason: DurationError::Malformed,
            },
        ),
        (
            "empty duration",
            vec![(DURATION, "")],
            E::BadDuration {
                key: DURATION,
                value: "".into(),
                reason: DurationError::Empty,
            },
        ),
        (
            "zero duration",
            vec![(DURATION, "0s")],
            E::ZeroDuration {
                key: DURATION,
                value: "0s".into(),
            },
        ),
        (
            "zero duration in two units",
            vec![(DURATION, "0h0m")],
            E::ZeroDuration {
                key: DURATION,
                value: "0h0m".into(),
            },
        ),
        (
            "duration over a year",
            vec![(DURATION, "367d")],
            E::DurationTooLong {
                key: DURATION,
                value: "367d".into(),
            },
        ),
        (
            "max-delay with a space",
            vec![(MAX_DELAY, "8 h")],
            E::BadDuration {
                key: MAX_DELAY,
                value: "8 h".into(),
                reason: DurationError::Malformed,
            },
        ),
        (
            "max-delay in weeks",
            vec![(MAX_DELAY, "1w")],
            E::BadDuration {
                key: MAX_DELAY,
                value: "1w".into(),
                reason: DurationError::UnknownUnit("w".into()),
            },
        ),
        (
            "max-delay too large for any clock",
            vec![(MAX_DELAY, "99999999999999999999h")],
            E::BadDuration {
                key: MAX_DELAY,
                value: "99999999999999999999h".into(),
                reason: DurationError::TooLarge,
            },
        ),
        (
            "zero max-delay",
            vec![(MAX_DELAY, "0m")],
            E::ZeroDuration {
                key: MAX_DELAY,
                value: "0m".into(),
            },
        ),
        (
            "deadline in words",
            vec![(DEADLINE, "tomorrow")],
            E::BadDeadline {
                value: "tomorrow".into(),
            },
        ),
        (
            "deadline as a date",
            vec![(DEADLINE, "2026-05-05")],
            E::BadDeadline {
                value: "2026-05-05".into(),
            },
        ),
        (
            "deadline without an offset",
            vec![(DEADLINE, "2026-05-05T18:00:00")],
            E::BadDeadline {
                value: "2026-05-05T18:00:00".into(),
            },
        ),
        (
            "deadline with a space and no offset",
            vec![(DEADLINE, "2026-05-05 18:00")],
            E::BadDeadline {
                value: "2026-05-05 18:00".into(),
            },
        ),
        (
            "deadline in month 13",
            vec![(DEADLINE, "2026-13-05T18:00:00Z")],
            E::BadDeadline {
                value: "2026-13-05T18:00:00Z".into(),
            },
        ),
        (
            "deadline as a Unix time",
            vec![(DEADLINE, "1778004000")],
            E::BadDeadline {
                value: "1778004000".into(),
            },
        ),
        (
            "both deadline and max-delay",
            vec![(DEADLINE, "2026-05-05T18:00:00Z"), (MAX_DELAY, "8h")],
            E::DeadlineAndMaxDelay {
                deadline: "2026-05-05T18:00:00Z".into(),
                max_delay: "8h".into(),
            },
        ),
        (
            "both deadline and max-delay, both malformed",
            vec![(DEADLINE, "soon"), (MAX_DELAY, "later")],
            E::DeadlineAndMaxDelay {
                deadline: "soon".into(),
                max_delay: "later".into(),
            },
        ),
        (
            "power without a unit",
            vec![(POWER, "1400")],
            E::BadPower {
                value: "1400".into(),
                reason: PowerError::MissingUnit,
            },
        ),
        (
            "power in megawatts",
            vec![(POWER, "1.4MW")],
            E::BadPower {
                value: "1.4MW".into(),
                reason: PowerError::UnknownUnit("MW".into()),
            },
        ),
        (
            "power in volt-amperes",
            vec![(POWER, "1400VA")],
            E::BadPower {
                value: "1400VA".into(),
                reason: PowerError::UnknownUnit("VA".into()),
            },
        ),
        (
            "power without a number",
            vec![(POWER, "kW")],
            E::BadPower {
                value: "kW".into(),
                reason: PowerError::NotANumber,
            },
        ),
        (
            "power with two decimal points",
            vec![(POWER, "1.4.2kW")],
            E::BadPower {
                value: "1.4.2kW".into(),
                reason: PowerError::NotANumber,
            },
        ),
        (
            "zero power",
            vec![(POWER, "0W")],
            E::BadPower {
                value: "0W".into(),
                reason: PowerError::NotPositive,
            },
        ),
        (
            "negative power",
            vec![(POWER, "-5kW")],
            E::BadPower {
                value: "-5kW".into(),
                reason: PowerError::NotPositive,
            },
        ),
        (
            "empty power",
            vec![(POWER, "")],
            E::BadPower {
                value: "".into(),
                reason: PowerError::Empty,
            },
        ),
        (
            "forecast with capitals and an underscore",
            vec![(FORECAST, "UK_South")],
            E::BadForecastName {
                value: "UK_South".into(),
            },
        ),
        (
            "empty forecast",
            vec![(FORECAST, "")],
            E::BadForecastName { value: "".into() },
        ),
        (
            "forecast starting with a dash",
            vec![(FORECAST, "-uk")],
            E::BadForecastName {
                value: "-uk".into(),
            },
        ),
        (
            "forecast with an empty label",
            vec![(FORECAST, "uk..south")],
            E::BadForecastName {
                value: "uk..south".into(),
            },
        ),
        (
            "forecast name too long",
            vec![(FORECAST, long_name.as_str())],
            E::BadForecastName {
                value: long_name.clone(),
            },
        ),
        (
            "forecast and forecasts both set",
            vec![(FORECAST, "uk"), (FORECASTS, "uk,fr")],
            E::ForecastAndForecasts {
                forecast: "uk".into(),
                forecasts: "uk,fr".into(),
            },
        ),
        (
            "forecasts with an empty item",
            vec![(FORECASTS, "uk,,fr")],
            E::BadForecasts {
                value: "uk,,fr".into(),
                item: 2,
                problem: CandidateProblem::Empty,
            },
        ),
        (
            "forecasts ending with a comma",
            vec![(FORECASTS, "uk,")],
            E::BadForecasts {
                value: "uk,".into(),
                item: 2,
                problem: CandidateProblem::Empty,
            },
        ),
        (
            "forecasts empty",
            vec![(FORECASTS, " ")],
            E::BadForecasts {
                value: " ".into(),
                item: 1,
                problem: CandidateProblem::Empty,
            },
        ),
        (
            "forecasts naming one twice",
            vec![(FORECASTS, "uk, fr ,uk")],
            E::BadForecasts {
                value: "uk, fr ,uk".into(),
                item: 3,
                problem: CandidateProblem::Duplicate("uk".into()),
            },
        ),
        (
            "forecasts with an invalid name",
            vec![(FORECASTS, "uk,FR_paris")],
            E::BadForecasts {
                value: "uk,FR_paris".into(),
                item: 2,
                problem: CandidateProblem::BadName("FR_paris".into()),
            },
        ),
        (
            "submitted-at marker edited",
            vec![(SUBMITTED_AT, "yesterday")],
            E::BadMarkerTime {
                key: SUBMITTED_AT,
                value: "yesterday".into(),
            },
        ),
        (
            "released-at marker without a time",
            vec![(RELEASED_AT, "2026-05-04")],
            E::BadMarkerTime {
                key: RELEASED_AT,
                value: "2026-05-04".into(),
            },
        ),
    ];
    assert!(cases.len() >= 30);
    for (name, annotations, error) in cases {
        let job = job().deferrable().annotations(&annotations).build();
        assert_eq!(parse_with_defaults(&job), Err(error), "{name}");
    }
}

#[test]
fn unusable_quantities_in_the_pod_template_are_errors_not_panics() {
    use AnnotationError as E;
    let cases = [
        (
            "CPU request not a number",
            job().container(container("train", &[("cpu", "abc")], &[])),
            E::BadCpuQuantity {
                field: "spec.template.spec.containers[train].resources.requests[cpu]".into(),
                value: "abc".into(),
                reason: QuantityError::NotANumber,
            },
        ),
        (
            "CPU limit with an unknown suffix",
            job().container(container("train", &[], &[("cpu", "2x")])),
            E::BadCpuQuantity {
                field: "spec.template.spec.containers[train].resources.limits[cpu]".into(),
                value: "2x".into(),
                reason: QuantityError::UnknownSuffix("x".into()),
            },
        ),
        (
            "negative CPU in the second container",
            job()
                .container(container("train", &[("cpu", "1")], &[]))
                .container(container("logger", &[("cpu", "-1")], &[])),
            E::BadCpuQuantity {
                field: "spec.template.spec.containers[logger].resources.requests[cpu]".into(),
                value: "-1".into(),
                reason: QuantityError::Negative,
            },
        ),
        (
            "CPU in a sidecar",
            job()
                .container(container("train", &[("cpu", "1")], &[]))
                .sidecar(container("proxy", &[("cpu", "")], &[])),
            E::BadCpuQuantity {
                field: "spec.template.spec.initContainers[proxy].resources.requests[cpu]".into(),
                value: "".into(),
                reason: QuantityError::Empty,
            },
        ),
        (
            "pod-level CPU",
            job()
                .container(container("train", &[("cpu", "1")], &[]))
                .pod_resources(&[("cpu", "lots")], &[]),
            E::BadCpuQuantity {
                field: "spec.template.spec.resources.requests[cpu]".into(),
                value: "lots".into(),
                reason: QuantityError::NotANumber,
            },
        ),
        (
            "half a GPU",
            job().container(container("train", &[("nvidia.com/gpu", "1.5")], &[])),
            E::BadGpuCount {
                field: "spec.template.spec.containers[train].resources.requests[nvidia.com/gpu]"
                    .into(),
                value: "1.5".into(),
                reason: QuantityError::NotWhole,
            },
        ),
        (
            "milli-GPUs in a limit",
            job().container(container("train", &[], &[("amd.com/gpu", "500m")])),
            E::BadGpuCount {
                field: "spec.template.spec.containers[train].resources.limits[amd.com/gpu]".into(),
                value: "500m".into(),
                reason: QuantityError::NotWhole,
            },
        ),
        (
            "GPUs in words",
            job().container(container("train", &[], &[("nvidia.com/gpu", "two")])),
            E::BadGpuCount {
                field: "spec.template.spec.containers[train].resources.limits[nvidia.com/gpu]"
                    .into(),
                value: "two".into(),
                reason: QuantityError::NotANumber,
            },
        ),
    ];
    for (name, builder, error) in cases {
        let job = builder.deferrable().build();
        assert_eq!(parse_with_defaults(&job), Err(error), "{name}");
    }
    // With a power annotation there is nothing to estimate, so the template is not read.
    let job = job()
        .deferrable()
        .annotate(POWER, "2kW")
        .container(container(
            "train",
            &[("cpu", "abc")],
            &[("nvidia.com/gpu", "1.5")],
        ))
        .build();
    let power = parse_with_defaults(&job).map(|d| d.map(|d| d.power));
    assert_eq!(
        power,
        Ok(Some(Power {
            watts: 2_000.0,
            source: PowerSource::Annotation
        }))
    );
}

#[test]
fn the_first_problem_in_the_documented_order_is_reported() {
    let marker_first = job()
        .annotations(&[
            (DEFERRABLE, "true"),
            (SUBMITTED_AT, "bad"),
            (DURATION, "bad"),
            (POWER, "bad"),
        ])
        .build();
    assert_eq!(
        parse_with_defaults(&marker_first),
        Err(AnnotationError::BadMarkerTime {
            key: SUBMITTED_AT,
            value: "bad".into()
        })
    );
    let duration_before_forecast = job()
        .annotations(&[(DEFERRABLE, "true"), (DURATION, "bad"), (FORECAST, "Bad")])
        .build();
    assert!(matches!(
        parse_with_defaults(&duration_before_forecast),
        Err(AnnotationError::BadDuration { key: DURATION, .. })
    ));
}

#[test]
fn valid_annotations_give_exact_constraints() {
    let cases: Vec<(&str, Job, Deferral)> = vec![
        (
            "only deferrable: every default",
            job().deferrable().build(),
            baseline(),
        ),
        (
            "max delay and duration",
            job()
                .deferrable()
                .annotations(&[(MAX_DELAY, "8h"), (DURATION, "2h30m")])
                .build(),
            Deferral {
                limit: Limit::MaxDelay(h(8)),
                duration: h(2) + TimeDelta::minutes(30),
                duration_source: Source::Annotation,
                ..baseline()
            },
        ),
        (
            "deadline with an offset is read as UTC",
            job()
                .deferrable()
                .annotations(&[(DEADLINE, "2026-05-05T08:00:00+02:00"), (DURATION, "1d")])
                .build(),
            Deferral {
                limit: Limit::Deadline(t("2026-05-05T06:00:00Z")),
                duration: h(24),
                duration_source: Source::Annotation,
                ..baseline()
            },
        ),
        (
            "deadline with fractional seconds",
            job()
                .deferrable()
                .annotate(DEADLINE, "2026-05-04T22:00:00.500Z")
                .build(),
            Deferral {
                limit: Limit::Deadline(t("2026-05-04T22:00:00.500Z")),
                ..baseline()
            },
        ),
        (
            "submitted-at overrides the creation time",
            job()
                .deferrable()
                .annotate(SUBMITTED_AT, "2026-05-04T09:59:58Z")
                .build(),
            Deferral {
                submitted_at: t("2026-05-04T09:59:58Z"),
                ..baseline()
            },
        ),
        (
            "no creation time yet: now (the webhook's view)",
            job().deferrable().uncreated().build(),
            Deferral {
                submitted_at: t(NOW),
                ..baseline()
            },
        ),
        (
            "forecast, flags and power",
            job()
                .deferrable()
                .annotations(&[
                    (FORECAST, "uk-south.grid"),
                    (INTERRUPTIBLE, "true"),
                    (DRY_RUN, "true"),
                    (RUN_NOW, "true"),
                    (POWER, "1.4kW"),
                ])
                .build(),
            Deferral {
                forecast: "uk-south.grid".into(),
                forecast_source: Source::Annotation,
                candidates: Vec::new(),
                interruptible: true,
                dry_run: true,
                run_now: true,
                power: Power {
                    watts: 1_400.0,
                    source: PowerSource::Annotation,
                },
                ..baseline()
            },
        ),
        (
            "explicit false flags",
            job()
                .deferrable()
                .annotations(&[
                    (INTERRUPTIBLE, "false"),
                    (DRY_RUN, "false"),
                    (RUN_NOW, "false"),
                    (HELD, "false"),
                ])
                .build(),
            baseline(),
        ),
        (
            "markers of a held and released Job",
            job()
                .deferrable()
                .annotations(&[
                    (HELD, "true"),
                    (SUBMITTED_AT, "2026-05-04T10:00:00Z"),
                    (RELEASED_AT, "2026-05-04T13:30:00Z"),
                    (POWER, "1400 W"),
                ])
                .build(),
            Deferral {
                held: true,
                released_at: Some(t("2026-05-04T13:30:00Z")),
                power: Power {
                    watts: 1_400.0,
                    source: PowerSource::Annotation,
                },
                ..baseline()
            },
        ),
        (
            "unknown carbonshift annotations are listed, others ignored",
            job()
                .deferrable()
                .annotations(&[
                    ("carbonshift.dev/maxdelay", "8h"),
                    ("carbonshift.dev/Deadline", "x"),
                    ("example.com/max-delay", "8h"),
                    ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
                ])
                .build(),
            Deferral {
                unknown_annotations: vec![
                    "carbonshift.dev/Deadline".into(),
                    "carbonshift.dev/maxdelay".into(),
                ],
                ..baseline()
            },
        ),
        (
            "estimated power",
            job()
                .deferrable()
                .container(container(
                    "train",
                    &[("cpu", "16")],
                    &[("nvidia.com/gpu", "8")],
                ))
                .parallelism(2)
                .build(),
            Deferral {
                power: Power {
                    watts: (8.0 * 700.0 + 16.0 * 10.0) * 2.0,
                    source: PowerSource::Estimated {
                        gpus_per_pod: 8,
                        cores_per_pod: 16.0,
                        parallelism: 2,
                    },
                },
                ..baseline()
            },
        ),
    ];
    for (name, job, expected) in cases {
        assert_eq!(parse_with_defaults(&job), Ok(Some(expected)), "{name}");
    }
}

#[test]
fn operator_defaults_fill_the_gaps() {
    let defaults = AnnotationDefaults {
        forecast: "de".into(),
        max_delay: h(12),
        duration: TimeDelta::minutes(45),
        max_allowed_delay: TimeDelta::days(2),
        gpu_resources: vec!["google.com/tpu".into()],
        watts_per_gpu: 300.0,
        watts_per_core: 5.0,
        pue: 1.1,
    };
    let job = job()
        .deferrable()
        .container(container(
            "train",
            &[
                ("cpu", "4"),
                ("google.com/tpu", "4"),
                ("nvidia.com/gpu", "1"),
            ],
            &[],
        ))
        .build();
    let expected = Deferral {
        duration: TimeDelta::minutes(45),
        limit: Limit::DefaultMaxDelay(h(12)),
        max_allowed_delay: TimeDelta::days(2),
        forecast: "de".into(),
        power: Power {
            watts: 4.0 * 300.0 + 4.0 * 5.0,
            source: PowerSource::Estimated {
                gpus_per_pod: 4,
                cores_per_pod: 4.0,
                parallelism: 1,
            },
        },
        pue: 1.1,
        ..baseline()
    };
    assert_eq!(parse_job(&job, &defaults, t(NOW)), Ok(Some(expected)));
}

#[test]
fn power_estimate_from_the_pod_template() {
    let d = AnnotationDefaults::default();
    let est = |gpus_per_pod, cores_per_pod, parallelism| PowerSource::Estimated {
        gpus_per_pod,
        cores_per_pod,
        parallelism,
    };
    let cases = [
        (
            "8 GPUs by limit only, 16 cores, 4 pods",
            job()
                .container(container(
                    "train",
                    &[("cpu", "16")],
                    &[("nvidia.com/gpu", "8")],
                ))
                .parallelism(4),
            23_040.0,
            est(8, 16.0, 4),
        ),
        (
            "requests win over limits",
            job().container(container(
                "train",
                &[("cpu", "500m"), ("nvidia.com/gpu", "1")],
                &[("cpu", "2"), ("nvidia.com/gpu", "1")],
            )),
            705.0,
            est(1, 0.5, 1),
        ),
        (
            "limits when there is no request",
            job().container(container("train", &[], &[("cpu", "2000m")])),
            20.0,
            est(0, 2.0, 1),
        ),
        (
            "NVIDIA and AMD GPUs in two containers",
            job()
                .container(container(
                    "a",
                    &[("nvidia.com/gpu", "2"), ("cpu", "1.5")],
                    &[],
                ))
                .container(container("b", &[("amd.com/gpu", "4")], &[])),
            6.0 * 700.0 + 15.0,
            est(6, 1.5, 1),
        ),
        (
            "a sidecar counts, a plain init container does not",
            job()
                .init_container(container("fetch", &[("cpu", "8")], &[]))
                .sidecar(container("proxy", &[("cpu", "1")], &[]))
                .container(container("train", &[("cpu", "2")], &[])),
            30.0,
            est(0, 3.0, 1),
        ),
        (
            "pod-level CPU replaces the container sum",
            job()
                .container(container(
                    "train",
                    &[("cpu", "2"), ("nvidia.com/gpu", "1")],
                    &[],
                ))
                .pod_resources(&[], &[("cpu", "8")]),
            780.0,
            est(1, 8.0, 1),
        ),
        (
            "no more pods than completions",
            job()
                .container(container("train", &[("nvidia.com/gpu", "1")], &[]))
                .parallelism(4)
                .completions(2),
            1_400.0,
            est(1, 0.0, 2),
        ),
        (
            "completions without parallelism: one pod",
            job()
                .container(container("train", &[("nvidia.com/gpu", "1")], &[]))
                .completions(10),
            700.0,
            est(1, 0.0, 1),
        ),
        (
            "parallelism zero: nothing runs",
            job()
                .container(container("train", &[("nvidia.com/gpu", "1")], &[]))
                .parallelism(0),
            0.0,
            est(1, 0.0, 0),
        ),
        (
            "negative parallelism from a hand-made object",
            job()
                .container(container("train", &[("nvidia.com/gpu", "1")], &[]))
                .parallelism(-3),
            0.0,
            est(1, 0.0, 0),
        ),
        (
            "other resources are not GPUs",
            job().container(container(
                "train",
                &[("memory", "64Gi"), ("example.com/fpga", "2"), ("cpu", "1")],
                &[],
            )),
            10.0,
            est(0, 1.0, 1),
        ),
        ("no spec at all", job().without_spec(), 0.0, est(0, 0.0, 1)),
    ];
    for (name, builder, watts, source) in cases {
        let job = builder.build();
        assert_eq!(
            estimate_power(&pod_sets(&job), &d),
            Ok(Power { watts, source }),
            "{name}"
        );
    }
}

#[test]
fn derived_times_and_the_cap() {
    let submitted = t(CREATED);
    let cases = [
        // (name, limit, duration, latest start, deadline, capped)
        (
            "max delay",
            Limit::MaxDelay(h(8)),
            h(2),
            submitted + h(8),
            submitted + h(10),
            false,
        ),
        (
            "max delay over the cap",
            Limit::MaxDelay(TimeDelta::days(10)),
            h(2),
            submitted + TimeDelta::days(7),
            submitted + TimeDelta::days(7) + h(2),
            true,
        ),
        (
            "max delay exactly the cap",
            Limit::MaxDelay(TimeDelta::days(7)),
            h(2),
            submitted + TimeDelta::days(7),
            submitted + TimeDelta::days(7) + h(2),
            false,
        ),
        (
            "deadline",
            Limit::Deadline(submitted + h(12)),
            h(2),
            submitted + h(10),
            submitted + h(12),
            false,
        ),
        (
            "deadline beyond the cap",
            Limit::Deadline(submitted + TimeDelta::days(30)),
            h(2),
            submitted + TimeDelta::days(7),
            submitted + TimeDelta::days(7) + h(2),
            true,
        ),
        (
            "deadline just within the cap",
            Limit::Deadline(submitted + TimeDelta::days(7) + h(2)),
            h(2),
            submitted + TimeDelta::days(7),
            submitted + TimeDelta::days(7) + h(2),
            false,
        ),
        (
            "deadline too close: latest start before submission",
            Limit::Deadline(submitted + h(1)),
            h(2),
            submitted - h(1),
            submitted + h(1),
            false,
        ),
        (
            "deadline already past",
            Limit::Deadline(submitted - h(5)),
            h(2),
            submitted - h(7),
            submitted - h(5),
            false,
        ),
        (
            "default max delay",
            Limit::DefaultMaxDelay(h(24)),
            h(1),
            submitted + h(24),
            submitted + h(25),
            false,
        ),
        (
            "default max delay over the cap is capped but not reported",
            Limit::DefaultMaxDelay(TimeDelta::days(10)),
            h(1),
            submitted + TimeDelta::days(7),
            submitted + TimeDelta::days(7) + h(1),
            false,
        ),
    ];
    for (name, limit, duration, latest_start, deadline, capped) in cases {
        let d = Deferral {
            limit,
            duration,
            ..baseline()
        };
        assert_eq!(d.latest_start(), latest_start, "{name}: latest start");
        assert_eq!(d.deadline(), deadline, "{name}: deadline");
        assert_eq!(d.is_capped(), capped, "{name}: capped");
    }
}

#[test]
fn feasibility_is_whether_the_latest_start_is_still_ahead() {
    let d = Deferral {
        limit: Limit::Deadline(t("2026-05-04T14:00:00Z")),
        duration: h(2),
        ..baseline()
    };
    assert!(d.is_feasible(t("2026-05-04T10:00:00Z")));
    assert!(d.is_feasible(t("2026-05-04T12:00:00Z")), "exactly on time");
    assert!(!d.is_feasible(t("2026-05-04T12:00:01Z")));
    assert!(!d.is_feasible(t("2026-05-04T15:00:00Z")));
}

#[test]
fn energy_includes_pue() {
    let d = Deferral {
        duration: TimeDelta::minutes(90),
        power: Power {
            watts: 1_000.0,
            source: PowerSource::Annotation,
        },
        pue: 1.2,
        ..baseline()
    };
    assert_eq!(d.facility_watts(), 1_200.0);
    assert_eq!(d.energy_kwh(), 1.8);
}

#[test]
fn quantities_in_every_kubernetes_form() {
    let cases = [
        ("500m", Ok(0.5)),
        ("2", Ok(2.0)),
        ("1.5", Ok(1.5)),
        ("2000m", Ok(2.0)),
        (".5", Ok(0.5)),
        ("0", Ok(0.0)),
        ("+3", Ok(3.0)),
        ("1k", Ok(1_000.0)),
        ("1Ki", Ok(1_024.0)),
        ("2Mi", Ok(2_097_152.0)),
        ("1e3", Ok(1_000.0)),
        ("1E3", Ok(1_000.0)),
        ("5e-1", Ok(0.5)),
        ("1M", Ok(1e6)),
        ("250u", Ok(0.000_25)),
        (" 4 ", Ok(4.0)),
        ("", Err(QuantityError::Empty)),
        ("m", Err(QuantityError::NotANumber)),
        (".", Err(QuantityError::NotANumber)),
        ("1.2.3", Err(QuantityError::NotANumber)),
        ("1e999", Err(QuantityError::NotANumber)),
        ("2x", Err(QuantityError::UnknownSuffix("x".into()))),
        ("1 m", Err(QuantityError::UnknownSuffix(" m".into()))),
        ("1KI", Err(QuantityError::UnknownSuffix("KI".into()))),
        ("-1", Err(QuantityError::Negative)),
        ("-500m", Err(QuantityError::Negative)),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_quantity(text), expected, "{text:?}");
    }
}

#[test]
fn forecast_names() {
    for good in [
        "default",
        "uk",
        "uk-south",
        "a.b-c.d",
        "0",
        &"a".repeat(253),
    ] {
        assert!(is_dns1123_subdomain(good), "{good}");
    }
    for bad in [
        "",
        "UK",
        "uk_",
        "uk-",
        ".uk",
        "uk.",
        "a..b",
        "ü",
        "uk south",
        &"a".repeat(254),
    ] {
        assert!(!is_dns1123_subdomain(bad), "{bad}");
    }
}

#[test]
fn candidate_forecasts_are_carried_in_order_with_the_first_as_forecast() {
    let job = job()
        .deferrable()
        .annotate(FORECASTS, " uk-south , fr,de.west ")
        .build();
    let d = parse_with_defaults(&job)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("parses"));
    assert_eq!(d.candidates, ["uk-south", "fr", "de.west"]);
    assert_eq!(d.forecast, "uk-south");
    assert_eq!(d.forecast_source, Source::Annotation);
    assert_eq!(d.forecasts(), ["uk-south", "fr", "de.west"]);

    let one = parse_with_defaults(&job_with(FORECASTS, "fr"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("parses"));
    assert_eq!((one.forecast.as_str(), one.candidates.len()), ("fr", 1));

    let single = parse_with_defaults(&job_with(FORECAST, "uk"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("parses"));
    assert!(single.candidates.is_empty());
    assert_eq!(single.forecasts(), ["uk"]);

    let sixteen: Vec<String> = (0..MAX_CANDIDATES).map(|i| format!("f{i}")).collect();
    assert_eq!(parse_candidates(&sixteen.join(",")), Ok(sixteen.clone()));
    let seventeen = format!("{},f16", sixteen.join(","));
    assert_eq!(
        parse_candidates(&seventeen),
        Err(AnnotationError::BadForecasts {
            value: seventeen.clone(),
            item: 17,
            problem: CandidateProblem::TooMany,
        })
    );
}

#[test]
fn candidate_errors_name_the_annotation_the_item_and_the_form() {
    let message = |value: &str| {
        parse_with_defaults(&job_with(FORECASTS, value))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        message("uk,,fr"),
        format!(
            r#"carbonshift.dev/forecasts: "uk,,fr": item 2 is empty; expected {FORECASTS_FORM}"#
        )
    );
    assert_eq!(
        message("uk,uk"),
        format!(
            r#"carbonshift.dev/forecasts: "uk,uk": item 2 "uk" is named twice; expected {FORECASTS_FORM}"#
        )
    );
    assert_eq!(
        message("UK"),
        format!(
            r#"carbonshift.dev/forecasts: "UK": item 1 "UK" is not a CarbonForecast name; expected {FORECASTS_FORM}"#
        )
    );
    let both = job()
        .deferrable()
        .annotate(FORECAST, "uk")
        .annotate(FORECASTS, "uk,fr")
        .build();
    assert_eq!(
        parse_with_defaults(&both).err().map(|e| e.to_string()),
        Some(r#"carbonshift.dev/forecast ("uk") and carbonshift.dev/forecasts ("uk,fr") are both set; expected at most one of them: carbonshift.dev/forecast for one forecast, carbonshift.dev/forecasts for a list of candidates"#.to_string())
    );
}

fn job_with(key: &str, value: &str) -> Job {
    job().deferrable().annotate(key, value).build()
}

#[test]
fn messages_name_the_annotation_the_value_and_the_form() {
    use AnnotationError as E;
    let cases = [
        (
            E::BadDuration {
                key: DURATION,
                value: "2x".into(),
                reason: DurationError::UnknownUnit("x".into()),
            },
            r#"carbonshift.dev/duration: "2x" is not a duration: unknown unit "x"; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)"#,
        ),
        (
            E::ZeroDuration {
                key: MAX_DELAY,
                value: "0s".into(),
            },
            r#"carbonshift.dev/max-delay: "0s" is zero; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d); to start the Job without waiting, leave out carbonshift.dev/deferrable or set carbonshift.dev/run-now: "true""#,
        ),
        (
            E::ZeroDuration {
                key: DURATION,
                value: "0m".into(),
            },
            r#"carbonshift.dev/duration: "0m" is zero; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d)"#,
        ),
        (
            E::DurationTooLong {
                key: DURATION,
                value: "400d".into(),
            },
            r#"carbonshift.dev/duration: "400d" is longer than 366d; expected a positive duration such as 45m, 2h30m or 1d (whole numbers with units s, m, h, d), at most 366d"#,
        ),
        (
            E::NotABoolean {
                key: DRY_RUN,
                value: "yes".into(),
            },
            r#"carbonshift.dev/dry-run: "yes" is not a boolean; expected "true" or "false""#,
        ),
        (
            E::BadDeadline {
                value: "tomorrow".into(),
            },
            r#"carbonshift.dev/deadline: "tomorrow" is not an RFC 3339 time; expected an RFC 3339 time with an offset, such as 2026-05-04T18:00:00Z or 2026-05-04T20:00:00+02:00"#,
        ),
        (
            E::DeadlineAndMaxDelay {
                deadline: "2026-05-05T18:00:00Z".into(),
                max_delay: "8h".into(),
            },
            r#"carbonshift.dev/deadline ("2026-05-05T18:00:00Z") and carbonshift.dev/max-delay ("8h") are both set; expected at most one of them"#,
        ),
        (
            E::BadPower {
                value: "1400".into(),
                reason: PowerError::MissingUnit,
            },
            r#"carbonshift.dev/power: "1400" is not a power: power without a unit; expected a positive power with a unit, such as 1400W or 1.4kW"#,
        ),
        (
            E::BadForecastName { value: "UK".into() },
            r#"carbonshift.dev/forecast: "UK" is not a CarbonForecast name; expected the name of a CarbonForecast: a DNS-1123 subdomain of at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, such as uk-national"#,
        ),
        (
            E::BadMarkerTime {
                key: SUBMITTED_AT,
                value: "x".into(),
            },
            r#"carbonshift.dev/submitted-at: "x" is not an RFC 3339 time; expected an RFC 3339 time with an offset, such as 2026-05-04T18:00:00Z or 2026-05-04T20:00:00+02:00 (this marker is written by carbonshift; remove it or restore the value carbonshift wrote)"#,
        ),
        (
            E::BadCpuQuantity {
                field: "spec.template.spec.containers[train].resources.requests[cpu]".into(),
                value: "abc".into(),
                reason: QuantityError::NotANumber,
            },
            r#"spec.template.spec.containers[train].resources.requests[cpu]: "abc" is not a CPU quantity: not a number; expected a Kubernetes CPU quantity such as 500m, 2 or 1.5 (or set carbonshift.dev/power to skip the estimate)"#,
        ),
        (
            E::BadGpuCount {
                field: "spec.template.spec.containers[train].resources.limits[nvidia.com/gpu]"
                    .into(),
                value: "1.5".into(),
                reason: QuantityError::NotWhole,
            },
            r#"spec.template.spec.containers[train].resources.limits[nvidia.com/gpu]: "1.5" is not a GPU count: not a whole number; expected a whole number of devices such as 1 or 8 (or set carbonshift.dev/power to skip the estimate)"#,
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn is_deferrable_only_for_exactly_true() {
    assert!(is_deferrable(
        job().deferrable().build().metadata.annotations.as_ref()
    ));
    for value in ["false", "True", "yes", ""] {
        assert!(
            !is_deferrable(
                job()
                    .annotate(DEFERRABLE, value)
                    .build()
                    .metadata
                    .annotations
                    .as_ref()
            ),
            "{value}"
        );
    }
}

#[test]
fn creation_time_with_fractional_seconds_converts_exactly() {
    let mut job = job().deferrable().build();
    job.metadata.creation_timestamp = Some(Time(
        "1969-12-31T23:59:59.25Z"
            .parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("{e}")),
    ));
    let submitted = parse_with_defaults(&job).map(|d| d.map(|d| d.submitted_at));
    assert_eq!(submitted, Ok(Some(t("1969-12-31T23:59:59.25Z"))));
}

/// The derived times straight from their definitions, in whole seconds.
fn oracle(submitted: i64, limit: Limit, duration: i64, cap: i64) -> (i64, i64, bool) {
    let (max_delay, annotated_deadline, from_annotation) = match limit {
        Limit::MaxDelay(d) => (d.num_seconds(), i64::MAX, true),
        Limit::DefaultMaxDelay(d) => (d.num_seconds(), i64::MAX, false),
        Limit::Deadline(t) => (i64::MAX, t.timestamp(), true),
    };
    let capped_delay = max_delay.min(cap);
    // Candidates for the latest start: every whole second up to the binding limit would be
    // brute force over a huge range; instead take the two bounds the definition names and the
    // cap on the deadline, then check them against each other.
    let by_delay = submitted + capped_delay;
    let by_deadline = annotated_deadline.saturating_sub(duration);
    let latest_start = by_delay.min(by_deadline);
    let asked = if annotated_deadline == i64::MAX {
        max_delay
    } else {
        annotated_deadline - duration - submitted
    };
    (
        latest_start,
        latest_start + duration,
        from_annotation && asked > cap,
    )
}

fn limit_strategy(submitted: i64) -> impl Strategy<Value = Limit> {
    prop_oneof![
        (1i64..30 * 86_400).prop_map(|s| Limit::MaxDelay(TimeDelta::seconds(s))),
        (1i64..30 * 86_400).prop_map(|s| Limit::DefaultMaxDelay(TimeDelta::seconds(s))),
        (-86_400i64..30 * 86_400).prop_map(move |s| {
            Limit::Deadline(DateTime::from_timestamp(submitted + s, 0).unwrap_or_default())
        }),
    ]
}

proptest! {
    #[test]
    fn derived_times_match_the_definitions(
        submitted in 1_600_000_000i64..1_900_000_000,
        duration in 1i64..10 * 86_400,
        cap in 1i64..14 * 86_400,
        limit in limit_strategy(1_700_000_000),
        now_offset in -86_400i64..30 * 86_400,
    ) {
        // Deadlines are generated around a fixed base; rebase them onto this submission time.
        let limit = match limit {
            Limit::Deadline(t) => Limit::Deadline(
                DateTime::from_timestamp(t.timestamp() - 1_700_000_000 + submitted, 0)
                    .unwrap_or_default(),
            ),
            other => other,
        };
        let d = Deferral {
            submitted_at: DateTime::from_timestamp(submitted, 0).unwrap_or_default(),
            duration: TimeDelta::seconds(duration),
            limit,
            max_allowed_delay: TimeDelta::seconds(cap),
            ..baseline()
        };
        let (latest_start, deadline, capped) = oracle(submitted, limit, duration, cap);
        prop_assert_eq!(d.latest_start().timestamp(), latest_start);
        prop_assert_eq!(d.deadline().timestamp(), deadline);
        prop_assert_eq!(d.is_capped(), capped);
        prop_assert!(d.latest_start() <= d.submitted_at + TimeDelta::seconds(cap));
        let now = DateTime::from_timestamp(submitted + now_offset, 0).unwrap_or_default();
        prop_assert_eq!(d.is_feasible(now), deadline - duration >= now.timestamp());
    }

    #[test]
    fn parse_never_panics(
        values in proptest::collection::vec(".{0,30}", ALL.len()),
        mask in proptest::collection::vec(any::<bool>(), ALL.len()),
        cpu in ".{0,12}",
        gpu in ".{0,12}",
    ) {
        let mut builder = job()
            .deferrable()
            .container(container("train", &[("cpu", &cpu)], &[("nvidia.com/gpu", &gpu)]));
        for ((key, value), keep) in ALL.iter().zip(&values).zip(&mask) {
            if *keep && *key != DEFERRABLE {
                builder = builder.annotate(key, value);
            }
        }
        let _ = parse_with_defaults(&builder.build());
    }

    #[test]
    fn any_formatted_duration_reads_back(seconds in 1i64..=366 * 86_400) {
        let text = crate::units::format_duration(TimeDelta::seconds(seconds));
        let job = job().deferrable().annotate(DURATION, &text).build();
        let duration = parse_with_defaults(&job).map(|d| d.map(|d| d.duration));
        prop_assert_eq!(duration, Ok(Some(TimeDelta::seconds(seconds))));
    }

    #[test]
    fn huge_values_saturate_instead_of_panicking(
        delay_days in 1i64..100_000_000,
        cap_days in 1i64..100_000_000,
    ) {
        let d = Deferral {
            limit: Limit::MaxDelay(TimeDelta::days(delay_days)),
            max_allowed_delay: TimeDelta::days(cap_days),
            duration: MAX_DURATION,
            ..baseline()
        };
        prop_assert!(d.deadline() >= d.latest_start());
    }
}
