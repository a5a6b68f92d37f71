//! The output of a product run in-process ([`Sim::deployment_output`]) as its Deployment's
//! pod log: what it wrote before the pod ran is the start of the log, then each line as
//! written, in order, each once.

use std::io::Write as _;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde_json::json;
use sim::Sim;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(5);

/// The name of the Running pod of `app`, once there is one.
async fn running_pod(pods: &Api<Pod>, app: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
        let running = list.items.iter().find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if let Some(pod) = running {
            return pod.metadata.name.clone().unwrap();
        }
        assert!(Instant::now() < deadline, "no Running pod of {app}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn lines_written_before_the_pod_runs_start_its_log() {
    let sim = Sim::start().await.unwrap();
    let client = sim.client().unwrap();
    // Written before the Deployment exists, as a server started ahead of its install.
    let mut output = sim.deployment_output("default", "server");
    output.write_all(b"first\nsecond\nhalf").unwrap();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "server"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "server"}},
            "template": {"metadata": {"labels": {"app": "server"}},
                "spec": {"containers": [{"name": "server", "image": "example/server:1"}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "default").create(&PostParams::default(), &deployment).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod = running_pod(&pods, "server").await;
    // Nothing written since the pod started: the kubelet gave it the held lines.
    assert_eq!(pods.logs(&pod, &LogParams::default()).await.unwrap(), "first\nsecond\n");
    output.write_all(b" line\nthird\n").unwrap();
    assert_eq!(pods.logs(&pod, &LogParams::default()).await.unwrap(), "first\nsecond\nhalf line\nthird\n");
}
