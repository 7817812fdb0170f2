//! Budgets and the waste guard on the real control plane: a `Deny` CarbonBudget whose month is
//! used up (by the namespace's CarbonLedger) denies the next annotated Job at admission with the
//! exact message, while unannotated Jobs still run; the budget's status says used / limit /
//! period and carries a `BudgetExhausted` Event. A group of Jobs failing three times in a row gets
//! its fourth held as `WasteGuard` until `run-now`; `carbonshift report --output json` then
//! prints the ledger's totals.

use std::time::Duration;

use carbonshift::api::ledger::LedgerTotals;
use carbonshift::api::{
    BudgetAction, CarbonBudget, CarbonBudgetSpec, CarbonLedger, CarbonLedgerSpec,
    CarbonLedgerStatus,
};
use chrono::Utc;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::harness::{self, LEAD, Scenario};
use crate::operator::OperatorOptions;

const BUDGET: &str = "team";
const USED: f64 = 1500.0;
const LIMIT: f64 = 1000.0;

#[test]
fn a_used_up_deny_budget_denies_the_next_annotated_job_with_the_exact_message() {
    harness::run("budget-deny", deny);
}

async fn deny(s: Scenario) {
    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    s.create_clean_window_forecast(harness::ahead(LEAD)).await;
    s.wait_forecast_ready().await;

    // This month's ledger of the namespace: 1500 g emitted already.
    let period = carbonshift::budget::period(Utc::now());
    let ledgers: Api<CarbonLedger> = s.ledgers();
    let mut ledger = ledgers
        .create(
            &PostParams::default(),
            &CarbonLedger::new(
                &s.ns,
                CarbonLedgerSpec {
                    forecast: s.ns.clone(),
                },
            ),
        )
        .await
        .expect("create the CarbonLedger");
    ledger.status = Some(CarbonLedgerStatus {
        months: vec![LedgerTotals {
            month: period.month.clone(),
            jobs: 3,
            energy_kwh: 4.0,
            emitted_grams: USED,
            ..LedgerTotals::default()
        }],
        ..CarbonLedgerStatus::default()
    });
    ledgers
        .replace_status(&s.ns, &PostParams::default(), &ledger)
        .await
        .expect("write the CarbonLedger's status");
    let budgets: Api<CarbonBudget> = Api::namespaced(s.client.clone(), &s.ns);
    budgets
        .create(
            &PostParams::default(),
            &CarbonBudget::new(
                BUDGET,
                CarbonBudgetSpec {
                    grams_per_month: Some(LIMIT),
                    kwh_per_month: None,
                    action: BudgetAction::Deny,
                    forecasts: Vec::new(),
                },
            ),
        )
        .await
        .expect("create the CarbonBudget");
    s.say(format!(
        "CarbonLedger {}: {USED} g in {}; CarbonBudget {BUDGET}: {LIMIT} g a month, Deny",
        s.ns, period.month
    ));

    // The operator's budget controller writes the status and the Event.
    let status = s
        .eventually(
            "the CarbonBudget's status to say it is exhausted",
            Duration::from_secs(30),
            Duration::from_millis(250),
            || async {
                let b = budgets.get(BUDGET).await.map_err(|e| e.to_string())?;
                match b.status {
                    Some(st)
                        if st
                            .conditions
                            .iter()
                            .any(|c| c.r#type == "Exhausted" && c.is_true()) =>
                    {
                        Ok(st)
                    }
                    other => Err(format!("status {other:?}")),
                }
            },
        )
        .await;
    assert_eq!(status.used.as_deref(), Some("1500.0 gCO2eq (150%)"));
    assert_eq!(status.limit.as_deref(), Some("1000.0 gCO2eq"));
    assert_eq!(status.period.as_deref(), Some(period.month.as_str()));
    assert_eq!(status.resets_at, Some(period.resets_at));
    let events: Api<Event> = Api::namespaced(s.client.clone(), &s.ns);
    let note = s
        .eventually(
            "a BudgetExhausted Event about the CarbonBudget",
            Duration::from_secs(15),
            Duration::from_millis(250),
            || async {
                let list = events
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                list.items
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("BudgetExhausted")
                            && e.regarding.as_ref().and_then(|r| r.kind.as_deref())
                                == Some("CarbonBudget")
                    })
                    .and_then(|e| e.note)
                    .ok_or_else(|| "no Event yet".to_string())
            },
        )
        .await;
    s.say(format!("Event BudgetExhausted: {note}"));
    let table = s.kubectl(&["get", "carbonbudgets", "-n", &s.ns], None);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    for column in [
        "USED",
        "LIMIT",
        "PERIOD",
        "ACTION",
        "1500.0 gCO2eq (150%)",
        "Deny",
    ] {
        assert!(
            table.contains(column),
            "kubectl get carbonbudgets:\n{table}"
        );
    }
    s.say(format!("kubectl get carbonbudgets:\n{table}"));

    // The webhook reads budgets and ledgers from its watch caches: once they have caught up, a
    // server-side dry run of an annotated Job is denied; then the real create, with the exact
    // message.
    let expected = format!(
        "admission webhook \"{}\" denied the request: CarbonBudget {}/{BUDGET} denies new deferrable work: 1500.0 gCO2eq used of 1000.0 gCO2eq in {} (UTC); it resets at {}. Wait for the reset, raise the budget's limit, or set its spec.action to Warn or Defer",
        s.webhook_name(),
        s.ns,
        period.month,
        carbonshift::api::annotations::marker(period.resets_at),
    );
    let jobs = s.jobs();
    let job = s.job("train").gpus(1).run_for(5).build();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    s.eventually(
        "the webhook to deny a dry-run create of an annotated Job",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            match jobs.create(&dry_run, &job).await {
                Ok(_) => Err("admitted".to_string()),
                Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => panic!("the annotated Job was admitted over a used-up Deny budget"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.message, expected);
            assert_eq!(status.code, 403);
            s.say(format!("denied as expected: {}", status.message));
        }
        Err(e) => panic!("creating the Job: {e}"),
    }
    // Work that does not opt in is not the budget's business.
    s.create_job(s.plain_job("plain").run_for(1).build()).await;
    s.assert_metric(
        &operator,
        &format!(
            // One denied dry run, one denied create.
            "carbonshift_budget_actions_total{{namespace=\"{}\",budget=\"{BUDGET}\",action=\"Deny\"}} 2",
            s.ns
        ),
    )
    .await;
    drop(operator);
}

const GROUP: &str = "nightly";

#[test]
fn a_group_failing_three_times_in_a_row_gets_its_fourth_held_by_the_waste_guard() {
    harness::run("waste-guard", waste_guard);
}

async fn waste_guard(s: Scenario) {
    use carbonshift::api::Phase;
    use carbonshift::api::annotations::{GROUP as GROUP_KEY, RUN_NOW};
    use kube::api::{Patch, PatchParams};

    let operator = s.start_operator(OperatorOptions::default()).await;
    s.register_webhook(&operator).await;
    let clean = harness::ahead(LEAD);
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;

    // Three runs of the group, released at once (run-now), each failing.
    let failing = ["nightly-1", "nightly-2", "nightly-3"];
    for name in failing {
        let job = s
            .job(name)
            .annotation(GROUP_KEY, GROUP)
            .annotation(RUN_NOW, "true")
            .gpus(1)
            .run_for(2)
            .fail()
            .build();
        s.create_job(job).await;
    }
    let mut wasted = 0.0;
    for name in failing {
        s.wait_job_finished(name, "Failed", FINISH).await;
        let status = s.wait_phase(name, Phase::Failed, FINISH).await;
        let grams = status
            .wasted_grams
            .unwrap_or_else(|| panic!("{name}: no status.wastedGrams: {status:?}"));
        assert!(grams > 0.0, "{name}: wasted {grams} g");
        wasted += grams;
    }
    let ledger = s
        .eventually(
            "the group's three failures in the CarbonLedger",
            Duration::from_secs(15),
            Duration::from_millis(250),
            || async {
                let l = s.ledgers().get(&s.ns).await.map_err(|e| e.to_string())?;
                let st = l.status.clone().unwrap_or_default();
                match st.groups.iter().find(|g| g.name == GROUP) {
                    Some(g) if g.consecutive_failures == 3 => Ok(l),
                    other => Err(format!("group {other:?}")),
                }
            },
        )
        .await;
    let st = ledger.status.clone().unwrap_or_default();
    let total = st.total.clone().unwrap_or_default();
    assert_eq!((total.jobs, total.failed_jobs), (3, 3), "{total:?}");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    assert!(close(total.wasted_grams, wasted), "{total:?} vs {wasted}");
    s.say(format!(
        "CarbonLedger {}: group {GROUP} failed 3 times in a row, {wasted:.3} g wasted",
        s.ns
    ));
    // The counter adds the same grams in another order: equal to rounding.
    let series = format!("carbonshift_wasted_grams_total{{namespace=\"{}\"}} ", s.ns);
    let counted = s
        .eventually(
            "carbonshift_wasted_grams_total in the operator's /metrics",
            Duration::from_secs(10),
            Duration::from_millis(500),
            || async {
                let text = operator.metrics().await?;
                text.lines()
                    .find_map(|l| l.strip_prefix(&series))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .ok_or_else(|| "not there yet".to_string())
            },
        )
        .await;
    assert!(close(counted, total.wasted_grams), "{counted} vs {total:?}");
    s.say(format!("operator's /metrics: {series}{counted}"));

    // The fourth is held by the webhook as usual, and kept held by the waste guard.
    let fourth = "nightly-4";
    let created = s
        .create_job(
            s.job(fourth)
                .annotation(GROUP_KEY, GROUP)
                .gpus(1)
                .run_for(2)
                .build(),
        )
        .await;
    s.assert_held_at_admission(&created);
    let status = s
        .wait_workload(fourth, "reason WasteGuard", Duration::from_secs(30), |st| {
            (st.reason.as_deref() == Some("WasteGuard")).then(|| st.clone())
        })
        .await;
    assert!(
        status.message.as_deref().unwrap_or_default().starts_with(
            "held by the waste guard: the last 3 workloads of group nightly failed in a row"
        ),
        "{status:?}"
    );
    let note = s.wait_event(fourth, "WasteGuard").await;
    assert!(note.contains("group nightly"), "{note}");
    // Its clean window comes and goes: still held.
    let after = clean + chrono::TimeDelta::seconds(3);
    while Utc::now() < after {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let job = s.jobs().get(fourth).await.expect("read the fourth Job");
    assert!(
        crate::fixtures::suspended(&job),
        "released over the waste guard"
    );
    let w = s
        .workloads()
        .get(fourth)
        .await
        .expect("read its CarbonWorkload");
    let st = w.status.unwrap_or_default();
    assert_eq!(st.reason.as_deref(), Some("WasteGuard"), "{st:?}");
    s.assert_never_reason(fourth, "Released").await;
    s.say("the fourth is still held after its planned start (reason WasteGuard)");

    // run-now lets it go; its success resets the group.
    s.jobs()
        .patch(
            fourth,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {RUN_NOW: "true"}}})),
        )
        .await
        .expect("set run-now");
    s.wait_job_complete(fourth, FINISH).await;
    s.wait_phase(fourth, Phase::Succeeded, FINISH).await;
    s.eventually(
        "the group's count reset by the success",
        Duration::from_secs(15),
        Duration::from_millis(250),
        || async {
            let l = s.ledgers().get(&s.ns).await.map_err(|e| e.to_string())?;
            let st = l.status.unwrap_or_default();
            match st.groups.iter().find(|g| g.name == GROUP) {
                Some(g) if g.consecutive_failures == 0 && g.last_outcome == "Succeeded" => Ok(()),
                other => Err(format!("group {other:?}")),
            }
        },
    )
    .await;
    s.say("run-now released it; it succeeded and the group's count is back to 0");

    // `carbonshift report --output json` prints the ledger's totals. The ledger may still gain
    // the last Job's verified figures meanwhile: compare against a ledger read before and after
    // the report that did not change.
    let plot = std::env::temp_dir().join(format!("carbonshift-{}.svg", s.ns));
    let (report, ledger) = s
        .eventually(
            "a report taken while the ledger stood still",
            Duration::from_secs(30),
            Duration::from_millis(500),
            || async {
                let before = s.ledgers().get(&s.ns).await.map_err(|e| e.to_string())?;
                let output = std::process::Command::new(env!("CARGO_BIN_EXE_carbonshift"))
                    .env("KUBECONFIG", &s.settings.kubeconfig)
                    .args(["report", "--output", "json", "-n", &s.ns, "--plot"])
                    .arg(&plot)
                    .output()
                    .map_err(|e| e.to_string())?;
                if !output.status.success() {
                    return Err(format!(
                        "carbonshift report: {}",
                        String::from_utf8_lossy(&output.stderr)
                    ));
                }
                let after = s.ledgers().get(&s.ns).await.map_err(|e| e.to_string())?;
                if before.metadata.resource_version != after.metadata.resource_version {
                    return Err("the ledger changed during the report".to_string());
                }
                let report: serde_json::Value =
                    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
                Ok((report, after))
            },
        )
        .await;
    let total = ledger.status.unwrap_or_default().total.unwrap_or_default();
    let printed = &report["total"];
    assert_eq!(printed["jobs"], serde_json::json!(total.jobs), "{report}");
    assert_eq!(printed["jobs"], serde_json::json!(4), "{report}");
    assert_eq!(printed["failedJobs"], serde_json::json!(total.failed_jobs));
    assert_eq!(
        printed["verifiedJobs"],
        serde_json::json!(total.verified_jobs)
    );
    for (key, value) in [
        ("energyKwh", total.energy_kwh),
        ("emittedGrams", total.emitted_grams),
        ("avoidedEstimatedGrams", total.avoided_grams),
        ("avoidedVerifiedGrams", total.verified_avoided_grams),
        ("wastedGrams", total.wasted_grams),
    ] {
        let got = printed[key].as_f64().unwrap_or(f64::NAN);
        assert!(close(got, value), "{key}: report {got}, ledger {value}");
    }
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0]["namespace"], serde_json::json!(s.ns));
    let svg = std::fs::read_to_string(&plot).expect("the --plot file");
    assert!(svg.starts_with("<svg") && svg.contains(&s.ns), "{svg}");
    let _ = std::fs::remove_file(&plot);
    s.say(format!(
        "carbonshift report --output json: {} jobs, {:.4} kWh, {:.4} g emitted, {:.4} g wasted — the ledger's totals",
        total.jobs, total.energy_kwh, total.emitted_grams, total.wasted_grams
    ));
    drop(operator);
}

/// Enough time for a released Job to run, finish and be recorded.
const FINISH: Duration = Duration::from_secs(90);
