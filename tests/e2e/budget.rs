//! Budgets and the waste guard on the real control plane: a `Deny` CarbonBudget whose month is
//! used up (by the namespace's CarbonLedger) denies the next annotated Job at admission with the
//! exact message, while unannotated Jobs still run; the budget's status says used / limit /
//! period and carries a `BudgetExhausted` Event.

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
