//! Whether the API server serves a kind (its CRD is installed), asked through API discovery
//! (`GET /apis/<group>/<version>`, which every authenticated client may read), and the wait for a
//! kind that is not served yet: checked again with backoff (1 s doubling to
//! [`DISCOVERY_RETRY`]'s 30 s), so that a CRD installed after the operator started is picked up
//! within half a minute, without a restart.

use std::future::Future;
use std::time::Duration;

use kube::core::ApiResource;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::retry::Doubling;

/// How often a kind that is not served is looked for again: 1 s doubling to 30 s.
pub const DISCOVERY_RETRY: Doubling =
    Doubling::new(Duration::from_secs(1), Duration::from_secs(30));

/// Whether the API server serves `resource` (its group/version lists its plural).
pub async fn served(client: &kube::Client, resource: &ApiResource) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(&resource.api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == resource.plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Waits until `resource` is served, saying once in the log and in
/// `carbonshift_workload_kind_watched{kind}` (0) that it is not, and setting the gauge to 1 when
/// it is. Returns `false` when `shutdown` completes first.
pub async fn wait_served(
    client: &kube::Client,
    resource: &ApiResource,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let kind = &resource.kind;
    let crd = format!("{}.{}", resource.plural, resource.group);
    let mut delays = DISCOVERY_RETRY.delays();
    let mut said = false;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        match served(client, resource).await {
            Ok(true) => {
                metrics.set_kind_watched(kind, true);
                if said {
                    info!(kind = %kind, crd = %crd, "the {kind} CRD is installed now; holding {kind}s");
                }
                return true;
            }
            Ok(false) if !said => {
                said = true;
                metrics.set_kind_watched(kind, false);
                info!(
                    kind = %kind,
                    crd = %crd,
                    api_version = %resource.api_version,
                    "the {kind} CRD is not installed: {kind}s are not held until it is; looking for it again with backoff up to {:?}",
                    DISCOVERY_RETRY.max()
                );
            }
            Ok(false) => {}
            Err(error) => {
                metrics.set_kind_watched(kind, false);
                warn!(kind = %kind, %error, "cannot ask the API server whether it serves {kind}s; asking again");
            }
        }
        let delay = delays.next().unwrap_or(DISCOVERY_RETRY.max());
        tokio::select! {
            () = &mut shutdown => return false,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{Expect, MockApiServer, Reply, status_error};
    use crate::workload::Adapter;
    use crate::workload::rayjob::RayJobKind;
    use serde_json::json;

    fn group(resources: &[&str]) -> serde_json::Value {
        json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "ray.io/v1",
            "resources": resources.iter().map(|name| json!({
                "name": name, "singularName": "", "namespaced": true, "kind": "RayJob",
                "verbs": ["get", "list", "watch", "patch"]
            })).collect::<Vec<_>>()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_kind_is_waited_for_until_its_crd_appears() {
        let (client, api) = MockApiServer::client();
        let metrics = Metrics::new();
        let path = "/apis/ray.io/v1";
        api.expect(Expect::get(path).reply(Reply::Json(404, status_error(404, "NotFound"))));
        api.expect(Expect::get(path).reply(Reply::Json(500, status_error(500, "InternalError"))));
        api.expect(Expect::get(path).reply(Reply::Json(200, group(&["rayclusters"]))));
        api.expect(
            Expect::get(path).reply(Reply::Json(200, group(&["rayjobs", "rayjobs/status"]))),
        );
        let started = tokio::time::Instant::now();
        let watched = wait_served(
            &client,
            RayJobKind.resource(),
            &metrics,
            std::future::pending(),
        )
        .await;
        assert!(watched);
        // 1 s + 2 s + 4 s of backoff between the four looks.
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        assert!(
            metrics
                .encode()
                .contains("carbonshift_workload_kind_watched{kind=\"RayJob\"} 1"),
            "{}",
            metrics.encode()
        );
        api.verify();
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_at_shutdown() {
        let (client, api) = MockApiServer::client();
        let metrics = Metrics::new();
        api.route(crate::controller::fixtures::Route::new(
            http::Method::GET,
            "/apis/ray.io/v1",
            Reply::Json(404, status_error(404, "NotFound")),
        ));
        let watched = wait_served(
            &client,
            RayJobKind.resource(),
            &metrics,
            tokio::time::sleep(Duration::from_secs(100)),
        )
        .await;
        assert!(!watched);
        assert!(
            metrics
                .encode()
                .contains("carbonshift_workload_kind_watched{kind=\"RayJob\"} 0")
        );
        api.verify();
    }
}
