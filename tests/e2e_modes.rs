//! Switching a Deployment from annotation mode to Canary mode, as README's "Switching
//! to Canary mode" says, with the real kubectl against the sim and `serve` as its own
//! process: the user's Canary applied over the one the controller made from the
//! annotations is refused with how to switch; a Canary of another name is told the
//! same in its condition and a Warning Event; the annotations removed with the command
//! it was given, the controller's Canary goes, and the user's Canaries, of another name
//! and then of the Deployment's own, take the Deployment over and are never deleted or
//! rewritten (same uid, generation and spec).

#[path = "support/e2e.rs"]
mod e2e;

use std::time::{Duration, Instant};

use e2e::*;
use serde_json::Value;

/// The user's own Canary for the scenario's podinfo, named `name`.
fn user_canary(name: &str) -> String {
    format!(
        "apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: {name}
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  routeRef:
    apiVersion: apisix.apache.org/v2
    kind: ApisixRoute
    name: podinfo
  progressDeadlineSeconds: 60
  analysis:
    interval: 2s
    threshold: 4
    maxWeight: 30
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
"
    )
}

fn object(w: &World, name: &str) -> Value {
    serde_json::from_str(&w.ok(&["-n", "test", "get", &format!("canary/{name}"), "-o", "json"])).unwrap()
}

/// What the controller must never change of a user's Canary: who it is, its generation
/// (bumped by any write of its spec) and its spec.
fn identity(c: &Value) -> (Value, Value, Value) {
    (c["metadata"]["uid"].clone(), c["metadata"]["generation"].clone(), c["spec"].clone())
}

fn phase(w: &World, name: &str) -> String {
    w.jsonpath(&format!("canary/{name}"), "{.status.phase}")
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The messages of Warning Events on Canary `name`.
fn warnings(w: &World, name: &str) -> Vec<String> {
    let selector = format!("involvedObject.kind=Canary,involvedObject.name={name},type=Warning");
    let events: Value =
        serde_json::from_str(&w.ok(&["-n", "test", "get", "events", "--field-selector", &selector, "-o", "json"]))
            .unwrap();
    let items = events["items"].as_array().cloned().unwrap_or_default();
    items.iter().map(|e| e["message"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn switching_from_annotation_mode_to_canary_mode_keeps_the_users_canary() {
    let w = World::start();
    w.install(30);
    let mirror = object(&w, "podinfo");
    assert_eq!(mirror["metadata"]["labels"]["app.kubernetes.io/managed-by"], "apisix-canary");
    assert!(mirror["metadata"]["annotations"]["apisix-canary.dev/mirror-digest"].is_string(), "{mirror}");

    // The controller's own writes of its Canary still pass: a setting changed.
    w.ok(&["-n", "test", "annotate", "deployment/podinfo", "apisix-canary.dev/max-weight=20", "--overwrite"]);
    wait_until("the mirror follows max-weight 20", Duration::from_secs(20), || {
        w.jsonpath("canary/podinfo", "{.spec.analysis.maxWeight}") == "20"
    });
    let mirror = object(&w, "podinfo");

    // 1. The user's Canary applied over the controller's: refused, saying how to switch.
    let theirs = w.file("podinfo-canary.yaml", &user_canary("podinfo"));
    let out = w.kubectl(&["apply", "-f", &theirs]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "applied over the mirror: {}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains(
            "admission webhook \"canaries.validate.apisix-canary.dev\" denied the request: spec: Forbidden: Canary \
             test/podinfo is made by the controller from the annotations of Deployment test/podinfo (annotation \
             mode) and written by it alone; to switch to Canary mode, remove the Deployment's \
             apisix-canary.dev/route annotation"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("kubectl -n test wait --for=delete canary/podinfo"), "{stderr}");
    let after = object(&w, "podinfo");
    assert_eq!(identity(&after), identity(&mirror), "the mirror is as the controller wrote it");
    assert!(after["metadata"]["annotations"].get("kubectl.kubernetes.io/last-applied-configuration").is_none());

    // 2. A Canary of another name while the annotations are there: allowed, and told what
    //    to do in its condition and a Warning Event; the annotation-mode one is untouched.
    let web = w.file("web-canary.yaml", &user_canary("web"));
    w.ok(&["apply", "-f", &web]);
    let condition = "{.status.conditions[?(@.type==\"Promoted\")].message}";
    let mut said = String::new();
    wait_until("web says why it is not initialized", Duration::from_secs(30), || {
        said = w.jsonpath("canary/web", condition);
        said.contains("annotation mode")
    });
    assert_eq!(phase(&w, "web"), "Initializing");
    let want = "Not initialized: Deployment test/podinfo is in annotation mode (opted in by its \
                apisix-canary.dev/route annotation) and Canary test/podinfo, made from them, runs its releases; for \
                Canary test/web to take it over, remove those annotations: kubectl -n test annotate deployment \
                podinfo ";
    assert!(said.starts_with(want), "{said}");
    let command = said.split_once("kubectl ").unwrap().1.to_owned();
    for key in ["apisix-canary.dev/route-", "apisix-canary.dev/max-weight-", "apisix-canary.dev/interval-"] {
        assert!(command.split(' ').any(|k| k == key), "{key} in {command}");
    }
    assert!(!command.contains("revision"), "the lock is not the user's to remove: {command}");
    wait_until("web's Warning Event", Duration::from_secs(10), || {
        warnings(&w, "web").iter().any(|m| m.starts_with("Halt web.test initialization: Deployment test/podinfo is in"))
    });
    let web_before = object(&w, "web");
    assert_eq!(phase(&w, "podinfo"), "Initialized");

    // 3. The switch as the condition says it: the annotations go, then the controller's
    //    Canary; web takes the Deployment over, as it was written.
    let args: Vec<&str> = command.split(' ').collect();
    w.ok(&args);
    w.ok(&["-n", "test", "wait", "--for=delete", "canary/podinfo", "--timeout=60s"]);
    wait_until("web initialized", Duration::from_secs(30), || phase(&w, "web") == "Initialized");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.metadata.annotations.apisix-canary\\.dev/canary}"), "web");
    assert_eq!(identity(&object(&w, "web")), identity(&web_before), "web was not rewritten");

    // 4. The Deployment's own name: web deleted (its claim given up), the user's podinfo
    //    applied where the controller's was, and never touched by the controller again.
    w.ok(&["-n", "test", "delete", "canary/web", "--wait=true"]);
    wait_until("web's claim given up", Duration::from_secs(30), || {
        w.jsonpath("deployment/podinfo", "{.metadata.annotations.apisix-canary\\.dev/canary}").is_empty()
    });
    let out = w.ok(&["apply", "-f", &theirs]);
    assert!(out.contains("canary.apisix-canary.dev/podinfo created"), "{out}");
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
    let mine = object(&w, "podinfo");
    assert!(mine["metadata"].get("labels").is_none_or(|l| l.get("app.kubernetes.io/managed-by").is_none()));
    assert!(mine["metadata"].get("ownerReferences").is_none(), "{mine}");
    // Changes of the Deployment wake the controller's annotation-mode loop: it leaves it.
    w.ok(&["-n", "test", "annotate", "deployment/podinfo", "team=a"]);
    w.ok(&["-n", "test", "annotate", "deployment/podinfo", "team-"]);
    std::thread::sleep(Duration::from_secs(4));
    let now = object(&w, "podinfo");
    assert_eq!(identity(&now), identity(&mine), "the user's Canary was not rewritten");
    assert!(now["metadata"]["annotations"].get("apisix-canary.dev/mirror-digest").is_none(), "{now}");
    assert_eq!(phase(&w, "podinfo"), "Initialized");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.metadata.annotations.apisix-canary\\.dev/canary}"), "podinfo");
}
