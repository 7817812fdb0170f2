//! The node simulator: plays the kubelet for a scenario, so that the real kube-scheduler binds
//! its pods and the real Job controller completes (or fails) its Jobs.
//!
//! - **Nodes**: each scenario gets its own, uniquely named `Node` objects with a node-pool label
//!   of its own ([`POOL_LABEL`]) that its Jobs select, `topology.kubernetes.io/region` and zone,
//!   `status.capacity`/`allocatable` (cpu, memory, pods, `nvidia.com/gpu`, ephemeral storage),
//!   addresses, node info and a `Ready=True` condition. Scenarios running in parallel never share
//!   a node.
//! - **Heartbeats**: every [`HEARTBEAT`] the node's Lease in `kube-node-lease` is renewed and its
//!   conditions' `lastHeartbeatTime` rewritten, so the node lifecycle controller keeps it Ready
//!   (without them it marks the node unreachable after about 40 s and evicts its pods).
//! - **Pods**: a watch on the scenario's namespace. A pod the scheduler bound to one of these
//!   nodes (`spec.nodeName`) is moved to `Running` through the status subresource (container
//!   statuses running, pod and host IPs, `startTime`, `Ready`), and after its run time (pod
//!   annotation [`RUN_SECONDS`], default 5 s) to `Succeeded` (exit code 0) or, with annotation
//!   [`OUTCOME`] `Failed`, to `Failed` (exit code 1), with terminated container statuses. A pod
//!   being deleted (a suspended Job's, say) is killed as the kubelet would: its containers
//!   terminated with exit code 143, phase `Failed`, then the pod deleted with grace period 0; its
//!   finalizer is the Job controller's to remove.
//!
//! Every pod's life is kept as a [`PodRecord`] for the scenarios to check.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;

use crate::fixtures::{OUTCOME, RUN_SECONDS};
use crate::harness::{FIELD_MANAGER, POOL_LABEL, Progress, SCENARIO_LABEL};

/// How often node Leases and Ready heartbeats are renewed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// A pod's run time without the [`RUN_SECONDS`] annotation.
pub const DEFAULT_RUN: Duration = Duration::from_secs(5);

/// The region label value of the simulated nodes.
pub const REGION: &str = "e2e-region-1";

/// What each simulated node offers.
#[derive(Debug, Clone)]
pub struct NodeShape {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub gpus: u32,
}

impl Default for NodeShape {
    /// A GPU training node: 8 cores, 32 GiB, 110 pods, 4 `nvidia.com/gpu`.
    fn default() -> Self {
        Self {
            cpu: "8".to_string(),
            memory: "32Gi".to_string(),
            pods: 110,
            gpus: 4,
        }
    }
}

/// What happened to one pod on a simulated node.
#[derive(Debug, Clone)]
pub struct PodRecord {
    pub name: String,
    pub uid: String,
    /// The Job it belongs to (label `batch.kubernetes.io/job-name`).
    pub job: Option<String>,
    pub node: String,
    pub running_at: Option<DateTime<Utc>>,
    /// `Succeeded`, `Failed` or `Killed` (deleted while running).
    pub outcome: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, PodRecord>,
    /// Pods whose deletion was handled (uid).
    killed: HashSet<String>,
    next_ip: u32,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The simulated nodes of one scenario and the tasks that play their kubelet.
pub struct NodeSim {
    /// The Node names.
    pub names: Vec<String>,
    /// The value of [`POOL_LABEL`] on them.
    pub pool: String,
    state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn micro_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn conditions(now: DateTime<Utc>) -> serde_json::Value {
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": time(now),
        })
    };
    json!([
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status (carbonshift e2e node simulator)"
        ),
    ])
}

fn node_object(name: &str, pool: &str, index: usize, shape: &NodeShape) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "e2e-gpu-4",
                "topology.kubernetes.io/region": REGION,
                "topology.kubernetes.io/zone": format!("{REGION}a"),
                POOL_LABEL: pool,
                SCENARIO_LABEL: "true",
            },
        },
        "spec": {},
        "status": node_status(index, shape, Utc::now()),
    })
}

fn node_status(index: usize, shape: &NodeShape, now: DateTime<Utc>) -> serde_json::Value {
    let resources = json!({
        "cpu": shape.cpu,
        "memory": shape.memory,
        "pods": shape.pods.to_string(),
        "nvidia.com/gpu": shape.gpus.to_string(),
        "ephemeral-storage": "100Gi",
    });
    let mut conditions = conditions(now);
    for c in conditions.as_array_mut().into_iter().flatten() {
        c["lastTransitionTime"] = json!(time(now));
    }
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": format!("10.244.{}.{}", index / 250, index % 250 + 1)},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "6.1.0", "osImage": "carbonshift e2e node simulator",
            "containerRuntimeVersion": "containerd://2.0.0", "kubeletVersion": "v1.36.2",
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
    })
}

/// The names of the `count` nodes of `pool`: `<pool>-<i>`.
pub fn node_names(pool: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{pool}-{i}")).collect()
}

impl NodeSim {
    /// Creates `count` nodes of `shape` in node pool `pool` (named by [`node_names`]) and starts
    /// their heartbeats and the pod loop for namespace `ns`.
    pub async fn start(
        client: Client,
        ns: &str,
        pool: &str,
        count: usize,
        shape: NodeShape,
        progress: Progress,
    ) -> Self {
        let nodes: Api<Node> = Api::all(client.clone());
        let names = node_names(pool, count);
        for name in &names {
            // Spread the addresses of parallel scenarios a little; nothing routes to them.
            let index = (rand::random::<u32>() % 60_000) as usize;
            let object: Node =
                serde_json::from_value(node_object(name, pool, index, &shape)).expect("a Node");
            nodes
                .create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| panic!("creating Node {name}: {e}"));
            // Whether the API server kept the status given at create or not, write it.
            nodes
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": node_status(index, &shape, Utc::now())})),
                )
                .await
                .unwrap_or_else(|e| panic!("writing the status of Node {name}: {e}"));
        }
        progress.say(format!(
            "node simulator: Node(s) {} created ({POOL_LABEL}={pool}, region {REGION}, {} cpu, {} memory, {} nvidia.com/gpu each)",
            names.join(", "),
            shape.cpu,
            shape.memory,
            shape.gpus
        ));
        let state = Arc::new(Mutex::new(State::default()));
        let heartbeat = tokio::spawn(heartbeats(client.clone(), names.clone(), progress.clone()))
            .abort_handle();
        let pods = tokio::spawn(pod_loop(
            client,
            ns.to_string(),
            names.iter().cloned().collect(),
            state.clone(),
            progress,
        ))
        .abort_handle();
        Self {
            names,
            pool: pool.to_string(),
            state,
            tasks: vec![heartbeat, pods],
        }
    }

    /// The tasks to abort at clean-up.
    pub fn abort_handles(&self) -> Vec<tokio::task::AbortHandle> {
        self.tasks.clone()
    }

    /// What happened to the pods of Job `job`, in the order they started.
    pub fn records_for(&self, job: &str) -> Vec<PodRecord> {
        let mut records: Vec<PodRecord> = lock(&self.state)
            .pods
            .values()
            .filter(|r| r.job.as_deref() == Some(job))
            .cloned()
            .collect();
        records.sort_by_key(|r| r.running_at);
        records
    }
}

/// Renews every node's Lease and Ready heartbeat every [`HEARTBEAT`].
async fn heartbeats(client: Client, names: Vec<String>, progress: Progress) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut failures = 0u32;
    loop {
        for name in &names {
            let now = Utc::now();
            let status = json!({"status": {"conditions": conditions(now)}});
            let node = nodes
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(status))
                .await;
            let lease = match &node {
                Ok(node) => renew_lease(&leases, name, node, now).await,
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = node.map_err(|e| e.to_string()).and(lease) {
                failures += 1;
                if failures <= 3 {
                    progress.say(format!("node simulator: heartbeat of {name} failed: {e}"));
                }
            }
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

async fn renew_lease(
    leases: &Api<Lease>,
    name: &str,
    node: &Node,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": "kube-node-lease",
            // As the kubelet does: the Lease goes with its Node.
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Node",
                "name": name,
                "uid": node.metadata.uid.clone().unwrap_or_default(),
            }],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": micro_time(now),
        },
    });
    leases
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Watches the namespace's pods and plays the kubelet for those bound to `nodes`.
async fn pod_loop(
    client: Client,
    ns: String,
    nodes: HashSet<String>,
    state: Arc<Mutex<State>>,
    progress: Progress,
) {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let stream = watcher(api.clone(), watcher::Config::default());
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                handle(&api, &nodes, &state, &progress, pod).await;
            }
            Ok(watcher::Event::Delete(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if lock(&state).pods.contains_key(&uid) {
                    progress.say(format!("node simulator: pod {name} is gone"));
                }
            }
            Ok(_) => {}
            Err(e) => {
                progress.say(format!("node simulator: pod watch: {e}; retrying"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn container_names(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn container_id(uid: &str, name: &str) -> String {
    format!("containerd://{}-{name}", uid.replace('-', ""))
}

async fn handle(
    api: &Api<Pod>,
    nodes: &HashSet<String>,
    state: &Arc<Mutex<State>>,
    progress: &Progress,
    pod: Pod,
) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return;
    };
    if !nodes.contains(&node) {
        return;
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();

    if pod.metadata.deletion_timestamp.is_some() {
        if !lock(state).killed.insert(uid.clone()) {
            return;
        }
        kill(api, state, progress, &pod).await;
        return;
    }
    if phase(&pod) != "Pending" || lock(state).pods.contains_key(&uid) {
        return;
    }
    // Start it: Running, as the kubelet reports a started container.
    let now = Utc::now();
    let ip = {
        let mut s = lock(state);
        s.next_ip += 1;
        s.next_ip
    };
    let pod_ip = format!("10.245.{}.{}", (ip / 250) % 250, ip % 250 + 1);
    let host_ip = format!("10.244.0.{}", (ip % 200) + 1);
    let statuses: Vec<serde_json::Value> = container_names(&pod)
        .into_iter()
        .map(|(container, image)| {
            json!({
                "name": container,
                "image": image,
                "imageID": "",
                "containerID": container_id(&uid, &container),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": time(now)}},
            })
        })
        .collect();
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": time(now),
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": time(now)},
            {"type": "Initialized", "status": "True", "lastTransitionTime": time(now)},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": time(now)},
            {"type": "Ready", "status": "True", "lastTransitionTime": time(now)},
        ],
        "containerStatuses": statuses,
    }});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
        .await
    {
        progress.say(format!(
            "node simulator: cannot move pod {name} to Running: {e}"
        ));
        return;
    }
    let run = annotations
        .get(RUN_SECONDS)
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(DEFAULT_RUN, Duration::from_secs);
    let outcome = match annotations.get(OUTCOME).map(String::as_str) {
        Some("Failed") => "Failed",
        _ => "Succeeded",
    };
    let job = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("batch.kubernetes.io/job-name"))
        .cloned();
    lock(state).pods.insert(
        uid.clone(),
        PodRecord {
            name: name.clone(),
            uid: uid.clone(),
            job,
            node: node.clone(),
            running_at: Some(now),
            outcome: None,
            finished_at: None,
        },
    );
    progress.say(format!(
        "node simulator: pod {name} Running on {node} (pod IP {pod_ip}); {outcome} in {} s",
        run.as_secs()
    ));
    let api = api.clone();
    let state = state.clone();
    let progress = progress.clone();
    tokio::spawn(async move {
        tokio::time::sleep(run).await;
        finish(&api, &state, &progress, &name, &uid, outcome, now).await;
    });
}

/// The end of a pod's run: terminated containers and a terminal phase, if the pod is still
/// there, the same one, and running.
async fn finish(
    api: &Api<Pod>,
    state: &Arc<Mutex<State>>,
    progress: &Progress,
    name: &str,
    uid: &str,
    outcome: &'static str,
    started: DateTime<Utc>,
) {
    let pod = match api.get_opt(name).await {
        Ok(Some(pod)) => pod,
        Ok(None) => return,
        Err(e) => {
            progress.say(format!("node simulator: cannot read pod {name}: {e}"));
            return;
        }
    };
    if pod.metadata.uid.as_deref() != Some(uid)
        || pod.metadata.deletion_timestamp.is_some()
        || phase(&pod) != "Running"
    {
        return;
    }
    let (code, reason) = if outcome == "Succeeded" {
        (0, "Completed")
    } else {
        (1, "Error")
    };
    if let Err(e) = terminate(api, &pod, outcome, code, reason, started).await {
        progress.say(format!(
            "node simulator: cannot move pod {name} to {outcome}: {e}"
        ));
        return;
    }
    if let Some(record) = lock(state).pods.get_mut(uid) {
        record.outcome = Some(outcome.to_string());
        record.finished_at = Some(Utc::now());
    }
    progress.say(format!(
        "node simulator: pod {name} {outcome} (exit code {code})"
    ));
}

/// Writes terminated container statuses and the terminal `phase`.
async fn terminate(
    api: &Api<Pod>,
    pod: &Pod,
    phase: &str,
    code: i32,
    reason: &str,
    started: DateTime<Utc>,
) -> Result<(), kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let now = Utc::now();
    let statuses: Vec<serde_json::Value> = container_names(pod)
        .into_iter()
        .map(|(container, image)| {
            json!({
                "name": container,
                "image": image,
                "imageID": "",
                "containerID": container_id(&uid, &container),
                "ready": false,
                "started": false,
                "restartCount": 0,
                "state": {"terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": time(started),
                    "finishedAt": time(now),
                    "containerID": container_id(&uid, &container),
                }},
            })
        })
        .collect();
    let status = json!({"status": {
        "phase": phase,
        "conditions": [
            {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": time(now)},
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": time(now)},
        ],
        "containerStatuses": statuses,
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
        .await
        .map(|_| ())
}

/// A pod being deleted: its containers are stopped (exit code 143 after SIGTERM), the pod is
/// marked `Failed` and then deleted for good (grace period 0), as the kubelet does.
async fn kill(api: &Api<Pod>, state: &Arc<Mutex<State>>, progress: &Progress, pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let was = phase(pod).to_string();
    if was == "Running" || was == "Pending" {
        let started = lock(state)
            .pods
            .get(&uid)
            .and_then(|r| r.running_at)
            .unwrap_or_else(Utc::now);
        if let Err(e) = terminate(api, pod, "Failed", 143, "Error", started).await {
            progress.say(format!(
                "node simulator: cannot write the stopped containers of pod {name}: {e}"
            ));
        }
        if let Some(record) = lock(state).pods.get_mut(&uid) {
            record.outcome = Some("Killed".to_string());
            record.finished_at = Some(Utc::now());
        }
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => progress.say(format!(
            "node simulator: pod {name} ({was}) deleted: containers stopped, pod removed from the node"
        )),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => progress.say(format!("node simulator: cannot delete pod {name}: {e}")),
    }
}
