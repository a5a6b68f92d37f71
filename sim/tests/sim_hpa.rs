//! The real kubectl against the sim's HorizontalPodAutoscaler: Flagger's podinfo
//! (`kubectl apply -k`) scaled to its autoscaler's minimum, `kubectl get hpa` as kube
//! prints it, the v1 form, `describe` and `explain`, and the stand-in utilization scaling
//! it up to its maximum, a paused Deployment included (resized, never rolled).

#[path = "support/binaries.rs"]
mod binaries;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sim::Sim;
use tokio::time::Instant;

/// How long the sim may take to do what a test waits for.
const DEADLINE: Duration = Duration::from_secs(10);

/// Flagger's `kustomize/podinfo`, unchanged.
fn podinfo_kustomization() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/flagger/podinfo")
}

/// kubectl with a kubeconfig for the sim and its own cache.
struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(sim: &Sim) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig()).unwrap();
        Self { bin: binaries::require_binary("kubectl"), dir }
    }

    /// Runs kubectl; its stdout, or a failure with what it said.
    async fn run(&self, args: &[&str]) -> String {
        let output = tokio::process::Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "kubectl {}: {stderr}{stdout}", args.join(" "));
        stdout.into_owned()
    }
}

/// Polls `f` every 50 ms until it holds; fails after [`DEADLINE`].
async fn eventually<Fut: Future<Output = bool>>(what: &str, mut f: impl FnMut() -> Fut) {
    let deadline = Instant::now() + DEADLINE;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn int(sim: &Sim, group: &str, plural: &str, name: &str, pointer: &str) -> Option<i64> {
    sim.cluster.get_raw(group, plural, "test", name)?.pointer(pointer)?.as_i64()
}

/// `kubectl create namespace test` and Flagger's podinfo applied into it; waits until
/// its autoscaler has it at its minimum, 2 ready replicas.
async fn podinfo_at_its_minimum(sim: &Sim, kubectl: &Kubectl) {
    kubectl.run(&["create", "namespace", "test"]).await;
    let applied = kubectl.run(&["apply", "-k", podinfo_kustomization().to_str().unwrap()]).await;
    assert!(applied.contains("deployment.apps/podinfo created"), "{applied}");
    assert!(applied.contains("horizontalpodautoscaler.autoscaling/podinfo created"), "{applied}");
    eventually("the autoscaler's minimum, 2 ready replicas", || async {
        int(sim, "apps", "deployments", "podinfo", "/spec/replicas") == Some(2)
            && int(sim, "apps", "deployments", "podinfo", "/status/readyReplicas") == Some(2)
    })
    .await;
}

/// The ReplicaSets of namespace `test`: (name, replicas, image).
fn replica_sets(sim: &Sim) -> Vec<(String, i64, String)> {
    let (items, _) = sim.cluster.store.list("apps", "replicasets", Some("test"));
    let text = |o: &Value, p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
    items
        .iter()
        .map(|rs| {
            let replicas = rs.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            (text(rs, "/metadata/name"), replicas, text(rs, "/spec/template/spec/containers/0/image"))
        })
        .collect()
}

#[tokio::test]
async fn flagger_podinfo_is_held_at_its_autoscalers_minimum_and_shown_as_kube_shows_it() {
    let sim = Sim::start().await.unwrap();
    let kubectl = Kubectl::new(&sim);
    podinfo_at_its_minimum(&sim, &kubectl).await;

    // kube-apiserver's printer: no metrics API, so the current CPU is unknown.
    let table = kubectl.run(&["get", "hpa", "-n", "test"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(&row[..5], ["podinfo", "Deployment/podinfo", "cpu: <unknown>/99%", "2", "4"], "{table}");
    // REPLICAS is what the last sync found: 1 before its rescale, 2 a period later.
    assert!(matches!(row[5], "1" | "2") && row[6].ends_with('s'), "{table}");

    // The v1 form, converted from the v2 stored. (Named in full: kubectl expands the short
    // name `hpa.v1.autoscaling` to the group's preferred version, v2, as for any cluster.)
    let yaml = kubectl.run(&["get", "horizontalpodautoscalers.v1.autoscaling", "podinfo", "-n", "test", "-o", "yaml"]);
    let v1: Value = serde_saphyr::from_str(&yaml.await).unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    let spec = &v1["spec"];
    assert_eq!(
        (&spec["minReplicas"], &spec["maxReplicas"], &spec["targetCPUUtilizationPercentage"]),
        (&Value::from(2), &Value::from(4), &Value::from(99))
    );
    assert_eq!(spec["scaleTargetRef"]["name"], "podinfo");
    assert!(spec.get("metrics").is_none());
    assert_eq!(v1["status"]["desiredReplicas"], 2);
    let conditions = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/conditions"].as_str().unwrap();
    assert!(conditions.starts_with(r#"[{"type":"AbleToScale","status":"True","lastTransitionTime":"#), "{conditions}");

    let described = kubectl.run(&["describe", "hpa", "podinfo", "-n", "test"]).await;
    for expected in [
        "Reference:",
        "Deployment/podinfo",
        "resource cpu on pods  (as a percentage of request):  <unknown> / 99%",
        "Min replicas:",
        "SuccessfulRescale",
        "New size: 2; reason: Current number of replicas below Spec.MinReplicas",
    ] {
        assert!(described.contains(expected), "{expected:?} in:\n{described}");
    }
    let explained = kubectl.run(&["explain", "hpa.spec.metrics"]).await;
    assert!(explained.contains("VERSION:    v2") && explained.contains("MetricSpec"), "{explained}");
    let explained = kubectl.run(&["explain", "hpa.spec", "--api-version=autoscaling/v1"]).await;
    assert!(explained.contains("targetCPUUtilizationPercentage"), "{explained}");

    // The stand-in: 150% of the request on 2 pods asks for ceil(2 x 150 / 99) = 4.
    kubectl.run(&["annotate", "hpa", "podinfo", "-n", "test", "sim.k8s.io/cpu-utilization=150"]).await;
    eventually("4 replicas", || async { int(&sim, "apps", "deployments", "podinfo", "/spec/replicas") == Some(4) })
        .await;
    let table = kubectl.run(&["get", "hpa", "-n", "test", "--no-headers"]).await;
    assert!(table.contains("cpu: 150%/99%"), "{table}");
}

#[tokio::test]
async fn a_paused_deployment_is_scaled_to_the_maximum_without_rolling() {
    let sim = Sim::start().await.unwrap();
    let kubectl = Kubectl::new(&sim);
    podinfo_at_its_minimum(&sim, &kubectl).await;
    kubectl.run(&["rollout", "pause", "deployment/podinfo", "-n", "test"]).await;
    // A new template while paused: a resumed Deployment would roll it.
    kubectl
        .run(&["set", "image", "deployment/podinfo", "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1", "-n", "test"])
        .await;
    kubectl.run(&["annotate", "hpa", "podinfo", "-n", "test", "sim.k8s.io/cpu-utilization=500"]).await;
    eventually("the paused Deployment at 4 ready replicas", || async {
        int(&sim, "apps", "deployments", "podinfo", "/status/readyReplicas") == Some(4)
    })
    .await;
    let sets = replica_sets(&sim);
    assert_eq!(sets.len(), 1, "resized, not rolled: {sets:?}");
    assert_eq!((sets[0].1, sets[0].2.as_str()), (4, "ghcr.io/stefanprodan/podinfo:6.0.0"));
    let events = kubectl
        .run(&["get", "events", "-n", "test", "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler"])
        .await;
    assert!(
        events.contains("New size: 4; reason: cpu resource utilization (percentage of request) above target"),
        "{events}"
    );
    let paused = kubectl.run(&["get", "deployment", "podinfo", "-n", "test", "-o", "jsonpath={.spec.paused}"]).await;
    assert_eq!(paused, "true");
}
