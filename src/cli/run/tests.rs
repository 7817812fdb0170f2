//! `carbonshift run`'s arguments: defaults, the chart's environment variables, validation.

use std::collections::BTreeSet;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use super::*;
use crate::api::annotations::AnnotationDefaults;
use crate::cli::{Cli, Command};
use crate::controller::NoForecastPolicy;
use crate::leader::ElectionParams;
use crate::telemetry::LogFormat;
use crate::webhook::TlsConfigPaths;
use chrono::TimeDelta;

fn parse(args: &[&str]) -> Result<Args, clap::Error> {
    let mut argv = vec!["carbonshift", "run"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv)?.command {
        Command::Run(args) => Ok(*args),
        other => panic!("parsed as {other:?}"),
    }
}

fn settings(args: &[&str]) -> Result<Settings, String> {
    parse(args)
        .unwrap_or_else(|e| panic!("{e}"))
        .settings(None, Some("carbonshift-7d9f-abcde"))
}

fn rejected(args: &[&str]) -> String {
    match parse(args) {
        Ok(args) => panic!("accepted: {args:?}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{e}");
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        }
    }
}

#[test]
fn the_defaults_are_the_charts() {
    let s = settings(&[]).expect("valid");
    assert_eq!(
        s.webhook,
        Some(WebhookSettings {
            addr: "0.0.0.0:9443".parse().expect("address"),
            tls: TlsConfigPaths::new(
                "/etc/carbonshift/tls/tls.crt",
                "/etc/carbonshift/tls/tls.key"
            ),
        })
    );
    assert_eq!(s.metrics_addr, "0.0.0.0:8080".parse().expect("address"));
    assert_eq!(s.identity, "carbonshift-7d9f-abcde");
    assert_eq!(
        s.operator,
        OperatorConfig {
            operator_namespace: "carbonshift".to_string(),
            namespaces: vec![],
            annotation_defaults: AnnotationDefaults::default(),
            margin: TimeDelta::minutes(5),
            no_forecast: NoForecastPolicy::Release,
            forecast_wait: TimeDelta::minutes(2),
            verify_give_up: TimeDelta::hours(48),
            release_ack_wait: TimeDelta::minutes(5),
            release_concurrency: 64,
            reconcile_concurrency: 16,
            forecast_selector: Default::default(),
            kinds: crate::workload::Kinds::all(),
            waste_guard_failures: 3,
            prometheus_url: None,
        }
    );
    assert_eq!(
        s.election,
        Some(ElectionParams::new(
            "carbonshift-leader",
            "carbonshift",
            "carbonshift-7d9f-abcde"
        ))
    );
}

#[test]
fn every_setting_has_a_flag() {
    let s = settings(&[
        "--webhook-addr=127.0.0.1:10443",
        "--metrics-addr=127.0.0.1:18080",
        "--tls-cert=/tmp/c.pem",
        "--tls-key=/tmp/k.pem",
        "--namespaces=ml, research,,",
        "--default-forecast=uk-national",
        "--default-max-delay=12h",
        "--default-duration=2h30m",
        "--max-allowed-delay=2d",
        "--margin=0s",
        "--watts-per-gpu=400",
        "--watts-per-core=0",
        "--pue=1.5",
        "--gpu-resources=nvidia.com/gpu",
        "--no-forecast=hold",
        "--forecast-wait=30s",
        "--waste-guard-failures=0",
        "--prometheus-url=http://prometheus.monitoring:9090/",
        "--release-ack-wait=0s",
        "--release-concurrency=8",
        "--reconcile-concurrency=4",
        "--forecast-selector=team=ml, carbonshift.dev/shard=a",
        "--operator-namespace=ops",
        "--lease-name=cs-leader",
        "--pod-name=cs-1",
        "--log-format=json",
    ])
    .expect("valid");
    assert_eq!(
        s.webhook,
        Some(WebhookSettings {
            addr: "127.0.0.1:10443".parse().expect("address"),
            tls: TlsConfigPaths::new("/tmp/c.pem", "/tmp/k.pem"),
        })
    );
    assert_eq!(s.metrics_addr, "127.0.0.1:18080".parse().expect("address"));
    assert_eq!(
        s.operator,
        OperatorConfig {
            operator_namespace: "ops".to_string(),
            namespaces: vec!["ml".to_string(), "research".to_string()],
            annotation_defaults: AnnotationDefaults {
                forecast: "uk-national".to_string(),
                max_delay: TimeDelta::hours(12),
                duration: TimeDelta::minutes(150),
                max_allowed_delay: TimeDelta::days(2),
                gpu_resources: vec!["nvidia.com/gpu".to_string()],
                watts_per_gpu: 400.0,
                watts_per_core: 0.0,
                pue: 1.5,
            },
            margin: TimeDelta::zero(),
            no_forecast: NoForecastPolicy::Hold,
            forecast_wait: TimeDelta::seconds(30),
            verify_give_up: TimeDelta::hours(48),
            release_ack_wait: TimeDelta::zero(),
            release_concurrency: 8,
            reconcile_concurrency: 4,
            forecast_selector: "team=ml,carbonshift.dev/shard=a".parse().expect("selector"),
            kinds: crate::workload::Kinds::all(),
            waste_guard_failures: 0,
            prometheus_url: Some("http://prometheus.monitoring:9090".to_string()),
        }
    );
    assert_eq!(s.identity, "cs-1");
    assert_eq!(
        s.election,
        Some(ElectionParams::new("cs-leader", "ops", "cs-1"))
    );
    assert_eq!(
        parse(&["--log-format=json"]).expect("valid").log_format,
        LogFormat::Json
    );
}

#[test]
fn booleans_are_written_as_the_chart_writes_them() {
    assert_eq!(
        settings(&["--leader-election=false"])
            .expect("valid")
            .election,
        None
    );
    assert!(
        settings(&["--leader-election=true"])
            .expect("valid")
            .election
            .is_some()
    );
    assert!(
        settings(&["--leader-election"])
            .expect("valid")
            .election
            .is_some()
    );
    assert_eq!(settings(&["--webhook=false"]).expect("valid").webhook, None);
    assert_eq!(settings(&["--no-webhook"]).expect("valid").webhook, None);
    assert!(settings(&["--webhook"]).expect("valid").webhook.is_some());
    assert!(
        settings(&["--webhook=true"])
            .expect("valid")
            .webhook
            .is_some()
    );
    assert!(rejected(&["--leader-election=maybe"]).contains("maybe"));
}

#[test]
fn the_operator_namespace_comes_from_the_flag_then_the_pod_then_a_default() {
    let args = parse(&[]).expect("valid");
    let s = args
        .settings(Some("carbonshift-system\n"), Some("host"))
        .expect("valid");
    assert_eq!(s.operator.operator_namespace, "carbonshift-system");
    assert_eq!(
        s.election.map(|e| e.namespace),
        Some("carbonshift-system".to_string())
    );
    let args = parse(&["--operator-namespace=ops"]).expect("valid");
    let s = args
        .settings(Some("carbonshift-system"), Some("host"))
        .expect("valid");
    assert_eq!(s.operator.operator_namespace, "ops");
    let s = parse(&[])
        .expect("valid")
        .settings(Some("  "), Some("host"));
    assert_eq!(
        s.expect("valid").operator.operator_namespace,
        DEFAULT_OPERATOR_NAMESPACE
    );
}

#[test]
fn the_identity_is_the_pod_name_else_the_host_name() {
    let args = parse(&["--pod-name=cs-2"]).expect("valid");
    assert_eq!(
        args.settings(None, Some("host")).expect("valid").identity,
        "cs-2"
    );
    let args = parse(&[]).expect("valid");
    assert_eq!(
        args.settings(None, Some("host")).expect("valid").identity,
        "host"
    );
    let message = args.settings(None, None).expect_err("no identity");
    assert!(message.contains("--pod-name"), "{message}");
}

#[test]
fn malformed_values_are_refused_with_the_expected_form() {
    for (args, expected) in [
        (&["--margin=5x"][..], "--margin"),
        (&["--default-duration=0s"][..], "--default-duration"),
        (&["--default-max-delay=soon"][..], "--default-max-delay"),
        (&["--max-allowed-delay=1w"][..], "--max-allowed-delay"),
        (&["--pue=0.9"][..], "from 1 to 3"),
        (&["--pue=abc"][..], "from 1 to 3"),
        (&["--watts-per-gpu=-1"][..], "0 or more"),
        (&["--watts-per-core=NaN"][..], "0 or more"),
        (&["--webhook-addr=localhost"][..], "--webhook-addr"),
        (&["--metrics-addr=:8080"][..], "--metrics-addr"),
        (&["--forecast-wait=2x"][..], "--forecast-wait"),
        (
            &["--forecast-selector=team"][..],
            "\"team\" has no '='; expected key=value pairs separated by commas",
        ),
        (
            &["--forecast-selector=a b=c"][..],
            "\"a b\" is not a label key",
        ),
    ] {
        let message = rejected(args);
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    let message = rejected(&["--margin=5x"]);
    assert!(message.contains(crate::units::DURATION_FORM), "{message}");
    let e = parse(&["--no-forecast=maybe"]).expect_err("invalid");
    assert_eq!(e.kind(), ErrorKind::InvalidValue);
    assert!(e.to_string().contains("release"), "{e}");
}

#[test]
fn inconsistent_settings_are_refused() {
    for (args, expected) in [
        (&["--namespaces=ml,Research"][..], "\"Research\""),
        (&["--namespaces=a.b"][..], "\"a.b\""),
        (&["--default-forecast=UK"][..], "--default-forecast"),
        (&["--operator-namespace=Ops"][..], "--operator-namespace"),
        (
            &["--default-max-delay=8d", "--max-allowed-delay=7d"][..],
            "longer than --max-allowed-delay",
        ),
        (&["--lease-name=Leader"][..], "lease name"),
    ] {
        let message = settings(args).expect_err("invalid");
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    // Without election the Lease name does not matter.
    assert!(settings(&["--leader-election=false", "--lease-name=Leader"]).is_ok());
}

/// Every `CARBONSHIFT_*` variable the chart sets (deployment and shared environment) is one that
/// `carbonshift run` reads.
#[test]
fn every_variable_the_chart_sets_is_a_flag() {
    let chart = [
        include_str!("../../../charts/carbonshift/templates/deployment.yaml"),
        include_str!("../../../charts/carbonshift/templates/_helpers.tpl"),
    ]
    .join("\n");
    let set_by_chart: BTreeSet<String> = chart
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- name: "))
        .filter(|name| name.starts_with("CARBONSHIFT_"))
        .map(str::to_string)
        .collect();
    assert!(set_by_chart.len() >= 20, "{set_by_chart:?}");
    let cli = Cli::command();
    let run = cli
        .get_subcommands()
        .find(|c| c.get_name() == "run")
        .expect("the run subcommand");
    let read: BTreeSet<String> = run
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    let missing: Vec<_> = set_by_chart.difference(&read).collect();
    assert!(
        missing.is_empty(),
        "the chart sets {missing:?}, which run does not read"
    );
    // And the other way round, apart from the switch for local runs.
    let unset: Vec<_> = read
        .difference(&set_by_chart)
        .filter(|env| env.as_str() != "CARBONSHIFT_WEBHOOK")
        .collect();
    assert!(
        unset.is_empty(),
        "run reads {unset:?}, which the chart never sets"
    );
}
