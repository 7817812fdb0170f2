//! The Helm chart against the real API server: every object `helm template` renders is accepted
//! by a server-side dry run, and the operator runs with exactly the chart's RBAC — a
//! ServiceAccount token minted with the TokenRequest API — does its whole job, and is refused
//! what it does not need.

use std::path::PathBuf;
use std::time::Duration;

use carbonshift::api::Phase;
use kube::config::Kubeconfig;
use kube::core::GroupVersionKind;
use serde_json::Value;

use crate::harness::{self, LEAD, Scenario};
use crate::operator::OperatorOptions;

const JOB: &str = "train";

/// The kinds of the chart's RBAC, created for real.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

#[test]
fn the_chart_is_accepted_by_the_api_server_and_its_rbac_is_enough_and_no_more() {
    harness::run("chart", chart);
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A multi-document stream of `objects` for kubectl.
fn stream(objects: &[&Value]) -> String {
    objects
        .iter()
        .map(|o| serde_json::to_string(o).expect("JSON"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

fn name_of(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

async fn chart(s: Scenario) {
    // 1. Render the chart for a release in the scenario's namespace, watching only it.
    let suffix = s.ns.rsplit('-').next().unwrap_or("0").to_string();
    let release = format!("cs{suffix}");
    let chart_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/carbonshift");
    let rendered = s.helm(&[
        "template",
        &release,
        &chart_dir.display().to_string(),
        "--namespace",
        &s.ns,
        "--set",
        &format!("config.namespaces={{{}}}", s.ns),
    ]);
    assert!(
        rendered.status.success(),
        "helm template failed: {}",
        stderr(&rendered)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&stdout(&rendered)).expect("helm template output is YAML");
    let objects: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    s.say(format!(
        "helm template {release}: {} objects: {}",
        objects.len(),
        objects.iter().map(name_of).collect::<Vec<_>>().join(", ")
    ));

    // Kinds this API server does not serve (a CRD-dependent kind like ServiceMonitor, when
    // enabled) are left out, with the reason.
    let mut served = Vec::new();
    for object in &objects {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk =
            GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap_or_default());
        match kube::discovery::pinned_kind(&s.client, &gvk).await {
            Ok(_) => served.push(object),
            Err(e) => s.say(format!(
                "skipping {} ({api_version}): not served by this API server ({e})",
                name_of(object)
            )),
        }
    }

    // 2. A server-side dry run of everything: every object accepted.
    let output = s.kubectl(
        &[
            "apply",
            "--dry-run=server",
            "--server-side",
            "--field-manager=carbonshift-e2e",
            "-n",
            &s.ns,
            "-f",
            "-",
        ],
        Some(&stream(&served)),
    );
    let applied = stdout(&output);
    assert!(
        output.status.success(),
        "the API server refused the chart's objects:\n{}\n{applied}",
        stderr(&output)
    );
    let accepted = applied
        .lines()
        .filter(|l| l.ends_with("serverside-applied (server dry run)"))
        .count();
    assert_eq!(
        accepted,
        served.len(),
        "every object accepted by the server-side dry run:\n{applied}"
    );
    s.say(format!(
        "server-side dry run: all {accepted} objects accepted"
    ));

    // 3. The RBAC for real.
    let rbac: Vec<&Value> = served
        .iter()
        .copied()
        .filter(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
        .collect();
    for object in &rbac {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        match object["kind"].as_str() {
            Some("ClusterRole") => s.created_cluster_role(name),
            Some("ClusterRoleBinding") => s.created_cluster_role_binding(name),
            _ => {}
        }
    }
    let output = s.kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=carbonshift-e2e",
            "-n",
            &s.ns,
            "-f",
            "-",
        ],
        Some(&stream(&rbac)),
    );
    assert!(
        output.status.success(),
        "creating the chart's RBAC failed: {}",
        stderr(&output)
    );
    s.say(format!(
        "created the chart's RBAC: {}",
        rbac.iter()
            .map(|o| name_of(o))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let deployment = served
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the chart renders a Deployment");
    let pod_spec = &deployment["spec"]["template"]["spec"];
    let account = pod_spec["serviceAccountName"]
        .as_str()
        .expect("the Deployment's serviceAccountName")
        .to_string();
    let env: Vec<(String, String)> = pod_spec["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    let env_value = |key: &str| {
        env.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("the Deployment sets no {key}: {env:?}"))
    };
    let lease = env_value("CARBONSHIFT_LEASE_NAME");
    assert_eq!(env_value("CARBONSHIFT_NAMESPACES"), s.ns);

    // 4. A token of the chart's ServiceAccount (TokenRequest API) in a kubeconfig of its own.
    let token = s.kubectl(
        &["create", "token", &account, "-n", &s.ns, "--duration=1h"],
        None,
    );
    assert!(
        token.status.success(),
        "kubectl create token: {}",
        stderr(&token)
    );
    let token = stdout(&token).trim().to_string();
    assert!(!token.is_empty(), "an empty token");
    let kubeconfig = write_kubeconfig(&s, &token);
    let user = format!("system:serviceaccount:{}:{account}", s.ns);
    let whoami = s.kubectl_as(
        &kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert_eq!(stdout(&whoami).trim(), user, "{}", stderr(&whoami));
    s.say(format!(
        "minted a token for {user}: {}",
        kubeconfig.display()
    ));

    // 5. What the ServiceAccount may not do.
    let ns = s.ns.clone();
    let forbidden: Vec<Vec<&str>> = vec![
        vec!["delete", "pods", "-n", &ns],
        vec!["create", "pods", "-n", &ns],
        vec!["get", "secrets", "--all-namespaces"],
        vec!["list", "secrets", "-n", &ns],
        vec!["get", "secrets", "-n", "default"],
        vec!["create", "jobs", "-n", &ns],
        vec!["delete", "jobs", "-n", &ns],
        vec!["update", "jobs", "-n", &ns],
        vec!["patch", "jobs", "-n", "default"],
        vec!["update", "carbonforecasts.carbonshift.dev"],
        vec!["delete", "carbonforecasts.carbonshift.dev"],
        vec![
            "create",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        ],
        vec!["list", "nodes"],
    ];
    let allowed: Vec<Vec<&str>> = vec![
        vec!["patch", "jobs", "-n", &ns],
        vec!["watch", "jobs", "-n", &ns],
        vec!["patch", "carbonworkloads.carbonshift.dev", "-n", &ns],
        vec![
            "patch",
            "carbonforecasts.carbonshift.dev",
            "--subresource=status",
        ],
        vec!["get", "secrets", "-n", &ns],
        vec!["create", "events.events.k8s.io", "-n", &ns],
    ];
    for (question, expected) in forbidden
        .iter()
        .map(|q| (q, "no"))
        .chain(allowed.iter().map(|q| (q, "yes")))
    {
        let mut args = vec!["auth", "can-i"];
        args.extend(question.iter().copied());
        let answer = s.kubectl_as(&kubeconfig, &args, None);
        assert_eq!(
            stdout(&answer).trim(),
            expected,
            "kubectl auth can-i {} as {user}: {}",
            question.join(" "),
            stderr(&answer)
        );
    }
    let denied = s.kubectl_as(&kubeconfig, &["get", "secrets", "--all-namespaces"], None);
    assert!(
        !denied.status.success(),
        "the ServiceAccount listed every Secret"
    );
    assert!(
        stderr(&denied).contains("Forbidden") || stderr(&denied).contains("forbidden"),
        "{}",
        stderr(&denied)
    );
    s.say(format!(
        "kubectl auth can-i as {user}: {} refused, {} allowed, as the chart means",
        forbidden.len(),
        allowed.len()
    ));

    // 6. The operator with that token, configured as the chart configures it, does its job.
    let operator = s
        .start_operator(OperatorOptions {
            leader: Some((lease.clone(), format!("{release}-0"))),
            kubeconfig: Some(kubeconfig.clone()),
            ..OperatorOptions::default()
        })
        .await;
    s.wait_leading(&operator, Duration::from_secs(30)).await;
    s.say(format!(
        "the operator leads through Lease {lease} as {user}"
    ));
    s.register_webhook(&operator).await;
    let clean = harness::ahead(LEAD);
    s.create_clean_window_forecast(clean).await;
    s.wait_forecast_ready().await;
    let created = s.create_job(s.job(JOB).build()).await;
    s.assert_held_at_admission(&created);
    assert_eq!(s.wait_deferred(JOB).await, clean);
    s.expect_release(JOB, clean).await;
    s.wait_job_complete(JOB, Duration::from_secs(90)).await;
    s.wait_phase(JOB, Phase::Succeeded, Duration::from_secs(90))
        .await;
    let patches = s.assert_released_once(JOB).await;
    assert!(
        patches.iter().all(|p| p.user == user),
        "the release was written by {user}: {patches:?}"
    );
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .collect();
    assert!(
        refused.is_empty(),
        "the operator was refused something it tried with the chart's RBAC:\n{}",
        refused.join("\n")
    );
}

/// A kubeconfig for the API server of the admin kubeconfig (its CA: `$CP_HOME/pki/ca.crt` when
/// known) authenticating with `token`.
fn write_kubeconfig(s: &Scenario, token: &str) -> PathBuf {
    let admin = Kubeconfig::read_from(&s.settings.kubeconfig).expect("the admin kubeconfig");
    let context = admin
        .current_context
        .as_deref()
        .and_then(|name| admin.contexts.iter().find(|c| c.name == name))
        .and_then(|c| c.context.as_ref())
        .expect("the admin kubeconfig's current context");
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .expect("the admin kubeconfig's cluster");
    let server = cluster.server.clone().expect("a server URL");
    let ca_file = s
        .settings
        .cp_home
        .as_ref()
        .map(|home| home.join("pki/ca.crt"))
        .filter(|path| path.is_file());
    let ca = match (
        ca_file,
        &cluster.certificate_authority,
        &cluster.certificate_authority_data,
    ) {
        (Some(path), _, _) => format!("certificate-authority: {}", path.display()),
        (None, Some(path), _) => format!("certificate-authority: {path}"),
        (None, None, Some(data)) => format!("certificate-authority-data: {data}"),
        (None, None, None) => "insecure-skip-tls-verify: true".to_string(),
    };
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: {server}
    {ca}
users:
- name: operator
  user:
    token: {token}
contexts:
- name: operator
  context: {{cluster: cluster, user: operator, namespace: {ns}}}
current-context: operator
",
        ns = s.ns
    );
    let path = s.dir.join("operator.kubeconfig");
    std::fs::write(&path, text).expect("write the ServiceAccount's kubeconfig");
    path
}
