//! The invariant observer that watches every e2e test (`tests/support/observer.rs`) is
//! not blind: on the sim, with no controller running, the real kubectl writes each
//! state a broken release could leave, and the observer names every one.

#[path = "support/e2e.rs"]
mod e2e;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use e2e::World;
use e2e::observer::GRACE;

fn wait_for(observer: &e2e::observer::Observer, words: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let found = observer.violations();
        if found.iter().any(|v| v.contains(words)) || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The cluster with our CRDs and the test namespace, no controller; its observer taken
/// out of the World so the violations it is shown do not fail the test.
fn observed() -> (World, e2e::observer::Observer) {
    let mut w = World::cluster();
    let crds = w.dir.path().join("crds.yaml");
    let printed = std::process::Command::new(e2e::BIN).arg("crds").output().unwrap();
    std::fs::write(&crds, printed.stdout).unwrap();
    w.ok(&["apply", "-f", crds.to_str().unwrap()]);
    // `apply`, not `create namespace`: the sim does not read protobuf bodies yet.
    w.ok(&["apply", "-f", e2e::fixture("scenario/namespace.yaml").to_str().unwrap()]);
    let observer = w.observer.take().expect("worlds observe");
    (w, observer)
}

#[test]
fn the_observer_names_each_broken_promise() {
    let (w, observer) = observed();

    // A Deployment paused under our lock, and no Canary to say why.
    w.ok(&["apply", "-f", &w.file("paused.yaml", PAUSED)]);
    // A Canary that Succeeded, and a Service it still owns.
    w.ok(&["apply", "-f", &w.file("canary.yaml", CANARY)]);
    w.ok(&["patch", "canary", "-n", "test", "podinfo", "--subresource", "status", "--type", "merge", "-p", SUCCEEDED]);
    let uid = w.ok(&["get", "canary", "-n", "test", "podinfo", "-o", "jsonpath={.metadata.uid}"]);
    assert!(!uid.is_empty());
    w.ok(&["apply", "-f", &w.file("left.yaml", &LEFT.replace("UID", &uid))]);
    // A generated route whose split does not add up, then one whose canary weight goes back.
    let route = |stable: u32, canary: u32| {
        let yaml =
            ROUTE.replace("UID", &uid).replace("STABLE", &stable.to_string()).replace("CANARY", &canary.to_string());
        w.ok(&["apply", "-f", &w.file("route.yaml", &yaml)]);
    };
    route(60, 30);
    route(50, 50);
    route(80, 20);

    let within = GRACE + Duration::from_secs(10);
    let found = wait_for(&observer, "paused under the lock", within);
    let found = [found, wait_for(&observer, "still exists", within)].concat();
    let said = |words: &str| found.iter().any(|v| v.contains(words));
    assert!(said("Deployment test/podinfo paused under the lock"), "{found:#?}");
    assert!(said("Service test/podinfo-canary still exists over"), "{found:#?}");
    assert!(said("weights 60 + 30 do not sum to 100"), "{found:#?}");
    assert!(said("the canary weight went back from 50 to 20"), "{found:#?}");
    assert!(observer.changes() >= 6, "{} changes seen", observer.changes());
    observer.stop();
}

/// A release that skips a step, steps twice in one interval and goes past maxWeight; a
/// Deployment that rolled out past the webhook with its Canary silent; and two replicas
/// writing at once (the audit log's check).
#[test]
fn the_observer_names_double_steps_slipped_releases_and_two_writers() {
    let (w, observer) = observed();
    // Each change the test makes is seen before the next: on a loaded machine the
    // observer's watch may lag a sleep, and a step judged without its Canary's phase
    // or its previous weight is not judged at all.
    let seen = |kind: &str, key: &str, pointer: &str, want: Value| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = observer.object(kind, key).and_then(|o| o.pointer(pointer).cloned());
            if got.as_ref() == Some(&want) {
                return;
            }
            assert!(Instant::now() < deadline, "the observer saw {kind} {key} {pointer} = {got:?}, not {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    w.ok(&["apply", "-f", &w.file("stepping.yaml", STEPPING)]);
    w.ok(&[
        "patch",
        "canary",
        "-n",
        "test",
        "podinfo",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        PROGRESSING,
    ]);
    let uid = w.ok(&["get", "canary", "-n", "test", "podinfo", "-o", "jsonpath={.metadata.uid}"]);
    // The observer must know the Canary, Progressing, before its route moves.
    seen("Canary", "test/podinfo", "/status/phase", json!("Progressing"));
    for canary in [10, 30, 40, 60] {
        let yaml = ROUTE.replace("UID", &uid).replace("STABLE", &(100 - canary).to_string());
        w.ok(&["apply", "-f", &w.file("route.yaml", &yaml.replace("CANARY", &canary.to_string()))]);
        seen("ApisixRoute", "test/podinfo-podinfo-canary", "/spec/http/0/backends/1/weight", json!(canary));
        std::thread::sleep(Duration::from_millis(300));
    }
    // Idle, last promoted another revision, and not a word of the one running.
    let unlocked = PAUSED.replace("paused: true", "paused: false");
    let unlocked = unlocked.lines().filter(|l| !l.contains("-revision:")).collect::<Vec<_>>().join("\n");
    w.ok(&["apply", "-f", &w.file("slipped.yaml", &unlocked)]);
    // Resumed under the lock, and nobody ends the release.
    let resumed = PAUSED.replace("paused: true", "paused: false").replace("podinfo", "resumed");
    w.ok(&["apply", "-f", &w.file("resumed.yaml", &resumed)]);
    w.ok(&["apply", "-f", &w.file("silent.yaml", SILENT)]);
    w.ok(&["patch", "canary", "-n", "test", "silent", "--subresource", "status", "--type", "merge", "-p", PROMOTED]);

    wait_for(&observer, "test/podinfo rolled out a revision past", GRACE + Duration::from_secs(10));
    let found = wait_for(&observer, "test/resumed rolled out a revision past", Duration::from_secs(10));
    let said = |words: &str| found.iter().any(|v| v.contains(words));
    assert!(said("went from 10 to 30, not to the next step Some(20)"), "{found:#?}");
    assert!(said("advanced to 40"), "{found:#?}");
    assert!(said("canary weight 60 above maxWeight 50"), "{found:#?}");
    assert!(said("Deployment test/podinfo rolled out a revision past the webhook"), "{found:#?}");
    assert!(said("Deployment test/resumed rolled out a revision past the webhook"), "{found:#?}");
    observer.stop();

    let line = |replica: &str, at: &str| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"patch","userAgent":"apisix-canary/0.1.0 (serve) {replica}","requestReceivedTimestamp":"{at}","objectRef":{{"resource":"apisixroutes","namespace":"test","name":"podinfo-podinfo-canary"}}}}"#
        )
    };
    let handover = [line("a", "2026-12-01T10:00:00.000000Z"), line("b", "2026-12-01T10:00:07.000000Z")].join("\n");
    assert_eq!(e2e::observer::one_writer(&handover), Vec::<String>::new());
    let overlap = [line("a", "2026-12-01T10:00:00.000000Z"), line("b", "2026-12-01T10:00:00.050000Z")].join("\n");
    let broken = e2e::observer::one_writer(&overlap);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].contains("two replicas wrote at once"), "{broken:?}");
    let turns = ["10:00:00.0", "10:00:00.5", "10:00:01.0"].map(|t| format!("2026-12-01T{t}00000Z"));
    let turns = [line("a", &turns[0]), line("b", &turns[1]), line("a", &turns[2])].join("\n");
    let broken = e2e::observer::one_writer(&turns);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].contains("two replicas wrote in turn"), "{broken:?}");
}

const STEPPING: &str = r#"
apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: other}
  routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}
  analysis: {interval: 1m, threshold: 3, maxWeight: 50, stepWeight: 10}
"#;

const PROGRESSING: &str = r#"{"status": {"phase": "Progressing"}}"#;

const SILENT: &str = r#"
apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: silent
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}
"#;

const PROMOTED: &str = r#"{"status": {"phase": "Succeeded", "lastPromotedSpec": "53d0ab54bc"}}"#;

const PAUSED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: test
  annotations:
    apisix-canary.dev/route: podinfo
    apisix-canary.dev/stable-revision: 53d0ab54bc
    apisix-canary.dev/canary-revision: 89a79df4a9
spec:
  paused: true
  replicas: 1
  selector:
    matchLabels: {app: podinfo}
  template:
    metadata:
      labels: {app: podinfo}
    spec:
      containers:
        - name: podinfod
          image: stefanprodan/podinfo:6.0.1
"#;

const CANARY: &str = r#"
apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: other}
  routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}
"#;

const SUCCEEDED: &str = r#"{"status": {"phase": "Succeeded"}}"#;

const LEFT: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: podinfo-canary
  namespace: test
  ownerReferences:
    - {apiVersion: apisix-canary.dev/v1beta1, kind: Canary, name: podinfo, uid: UID}
spec:
  selector: {app: podinfo-canary}
  ports: [{port: 80, targetPort: 9898}]
"#;

const ROUTE: &str = r#"
apiVersion: apisix.apache.org/v2
kind: ApisixRoute
metadata:
  name: podinfo-podinfo-canary
  namespace: test
  ownerReferences:
    - {apiVersion: apisix-canary.dev/v1beta1, kind: Canary, name: podinfo, uid: UID}
spec:
  http:
    - name: method
      match: {hosts: [app.example.com], paths: ["/*"]}
      backends:
        - {serviceName: podinfo, servicePort: 80, weight: STABLE}
        - {serviceName: podinfo-canary, servicePort: 80, weight: CANARY}
"#;
