//! Releases under a misbehaving API server (`sim/src/faults.rs`): a share of serve's
//! requests answered 500, 409 or 429 with Retry-After, answered late, or carried out
//! with the answer lost, and its watches cut (with the history compacted, so resuming
//! gets 410 Gone) every few seconds. The release must still end as its canary deserves,
//! every step once, and the invariant observer must see no broken promise.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/flaky.rs"]
mod flaky;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::*;
use serde_json::Value;

/// serve's requests only (its User-Agent): the user's kubectl meets a healthy cluster.
/// The last rule holds two reads of the Canary for 10 minutes: serve gives up on each
/// after its request timeout (15 s) and reads again, or the release would stall.
const FAULTS: &str = r#"{"rules": [
  {"verbs": ["create", "update", "patch"], "userAgent": "(serve)", "probability": 0.15, "fault": {"error": {"code": 500}}},
  {"verbs": ["update", "patch"], "userAgent": "(serve)", "probability": 0.15, "fault": {"error": {"code": 409}}},
  {"verbs": ["get", "list"], "userAgent": "(serve)", "probability": 0.1, "fault": {"error": {"code": 429, "retryAfterSeconds": 1}}},
  {"verbs": ["patch", "create"], "userAgent": "(serve)", "probability": 0.1, "fault": "loseResponse"},
  {"verbs": ["get"], "userAgent": "(serve)", "probability": 0.05, "fault": {"delayMs": 1500}},
  {"verbs": ["get"], "resources": ["canaries"], "userAgent": "(serve)", "count": 2, "fault": {"delayMs": 600000}}
]}"#;

/// Cuts serve's watches (and compacts the history) every 3 s until `on` is false; the
/// observer's stay, so it sees each change when it is made.
fn cut_watches(w: &World, on: &AtomicBool) -> u32 {
    let mut cuts = 0;
    while on.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(3));
        let (code, body) = w.sim_api("POST", "/sim/cut-watches?compact=true&userAgent=(serve)", "");
        assert_eq!(code, 200, "{body}");
        cuts += 1;
    }
    cuts
}

fn hits(w: &World) -> Vec<u64> {
    let (code, body) = w.sim_api("GET", "/sim/faults", "");
    assert_eq!(code, 200, "{body}");
    let faults: Value = serde_json::from_str(&body).unwrap();
    faults["rules"].as_array().unwrap().iter().map(|r| r["hits"].as_u64().unwrap()).collect()
}

#[test]
fn a_release_promotes_and_the_next_rolls_back_while_the_api_server_fails_serve() {
    let w = World::start();
    w.install(30);
    // A write that fails is retried 2 s later, and a reconcile here meets a failed read
    // or write about half the time: explaining a pause, or cleaning up, may take several
    // tries in a row (a release's start writes its status first, RELIABILITY.md). And
    // the two Canary reads held past serve's 15 s timeout are serve's first reads of
    // the Canary, those of the release's start when the annotation controller does not
    // take one first: 30 s in which nothing can be written (one run in three met both).
    w.observer.as_ref().unwrap().set_grace(Duration::from_secs(45));
    let (code, body) = w.sim_api("PUT", "/sim/faults", FAULTS);
    assert_eq!(code, 200, "{body}");
    let traffic = w.traffic();
    let cutting = AtomicBool::new(true);

    let cuts = std::thread::scope(|s| {
        let cutter = s.spawn(|| cut_watches(&w, &cutting));
        // A failed assertion below must end the cutter too, or the scope waits forever.
        let _stop = Stop(&cutting);

        // A healthy canary: promoted, each step once (its Events may be lost: the
        // API server fails some of serve's creates, and Events are not retried).
        w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
        let phase = w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(180));
        if phase != "Succeeded" {
            let logs = w.logs.lock().unwrap().join("\n");
            panic!("{phase}: {:#?}\n{}\n{logs}", w.events(), w.ok(&["get", "canary", "-n", "test", "-o", "yaml"]));
        }
        w.assert_steps_taken_once(30);
        assert_ne!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true");
        assert!(!w.exists("deployment/podinfo-canary"), "canary objects gone");

        // A canary that fails 60% of its requests: rolled back, paused on its template.
        w.ok(&["-n", "test", "set", "env", "deployment/podinfo", "SIM_ERROR_RATE=60"]);
        assert_eq!(w.wait_phase(&["Progressing"], Duration::from_secs(60)), "Progressing", "{:#?}", w.events());
        let phase = w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(180));
        assert_eq!(phase, "Failed", "{:#?}", w.events());
        assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "paused on the failed template");
        assert!(!w.exists("deployment/podinfo-canary") && !w.exists("apisixroute/podinfo-podinfo-canary"));
        traffic.store(false, Ordering::Relaxed);
        cutting.store(false, Ordering::Relaxed);
        cutter.join().unwrap()
    });

    let hits = hits(&w);
    eprintln!("faults hit: {hits:?} (500, 409, 429, lost, late, past the timeout); watches cut {cuts} times");
    assert!(hits.iter().take(4).all(|&h| h > 0), "every kind of fault met serve: {hits:?}");
    assert_eq!(hits[5], 2, "both reads held past serve's timeout happened: {hits:?}");
    assert!(cuts >= 3, "watches cut {cuts} times");
    // The observer (on drop) checks the split, the pauses and what was left behind.
}

/// Prometheus behind a forwarder that goes down or slow: a short outage costs a failed
/// check and the release goes on to promotion; a Prometheus too slow to answer within
/// the query timeout fails every check, and the canary, healthy as it is, is rolled
/// back with the reason said (metrics that cannot be read are no proof of safety).
#[test]
fn prometheus_down_costs_a_check_and_prometheus_too_slow_rolls_back() {
    let mut w = World::cluster();
    let prometheus = flaky::Flaky::start(&w.prometheus_url);
    w.prometheus_url = prometheus.url();
    let w = w.started();
    w.install(30);
    let traffic = w.traffic();
    let failed_at = |w: &World| -> Vec<String> {
        w.events().into_iter().filter(|e| e.contains("Prometheus query failed")).collect()
    };

    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(10, Duration::from_secs(60));
    prometheus.down();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while failed_at(&w).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no failed check while Prometheus is down: {:#?}", w.events());
        std::thread::sleep(Duration::from_millis(100));
    }
    prometheus.pass();
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(120)), "Succeeded", "{:#?}", w.events());
    let down = failed_at(&w);
    assert!(down.iter().all(|e| e.contains("prometheus at http://")), "{down:#?}");
    w.assert_each_step_once(30);

    prometheus.slow(Duration::from_secs(7));
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.2"]);
    assert_eq!(w.wait_phase(&["Failed"], Duration::from_secs(180)), "Failed", "{:#?}", w.events());
    let events = w.events();
    assert!(
        events
            .iter()
            .any(|e| e.contains("Prometheus query failed: prometheus at http://")
                && e.contains("did not answer within 5s")),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| e.contains("failed checks threshold reached 4")), "{events:#?}");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "paused on the stable revision");
    traffic.store(false, Ordering::Relaxed);
}

/// Both webhook configurations of the install, pointed at a dead port (as when every
/// replica is gone) and back at serve.
struct Webhooks<'a> {
    w: &'a World,
    live: [(&'static str, String); 2],
    dead: std::net::SocketAddr,
}

impl<'a> Webhooks<'a> {
    fn of(w: &'a World) -> Self {
        let url = |kind: &str| w.ok(&["get", kind, "apisix-canary", "-o", "jsonpath={.webhooks[0].clientConfig.url}"]);
        let live = ["mutatingwebhookconfiguration", "validatingwebhookconfiguration"].map(|k| (k, url(k)));
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        Self { w, live, dead }
    }

    fn point(&self, down: bool) {
        for (kind, live) in &self.live {
            let to = if down {
                format!("https://{}{}", self.dead, &live[live.find("/validate").or(live.find("/mutate")).unwrap()..])
            } else {
                live.clone()
            };
            let patch = format!(r#"[{{"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": "{to}"}}]"#);
            self.w.ok(&["patch", kind, "apisix-canary", "--type", "json", "-p", &patch]);
        }
    }

    fn down(&self) {
        self.point(true);
    }

    fn up(&self) {
        self.point(false);
    }
}

/// The webhook server down: failurePolicy Ignore lets `kubectl set image` through and
/// the new revision rolls out unanalysed. The controller says so (the Canary Failed, its
/// message and a warning Event), adopts it as stable, and the next release, with the
/// webhook back, is intercepted as always.
#[test]
fn a_release_made_while_the_webhook_is_down_is_reported_and_the_next_is_intercepted() {
    let w = World::start();
    w.install(20);
    let webhooks = Webhooks::of(&w);
    webhooks.down();

    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(w.wait_phase(&["Failed"], Duration::from_secs(30)), "Failed", "{:#?}", w.events());
    let message = w.jsonpath("canary/podinfo", "{.status.conditions[0].message}");
    assert!(message.contains("not intercepted") && message.contains("was the webhook down?"), "{message}");
    assert!(w.events().iter().any(|e| e.contains("rolled out without analysis")), "{:#?}", w.events());
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "", "never paused: the rollout went through");

    webhooks.up();
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.2"]);
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "intercepted again");
    assert_eq!(w.wait_phase(&["Succeeded"], Duration::from_secs(120)), "Succeeded", "{:#?}", w.events());
    w.assert_each_step_once(20);
    traffic.store(false, Ordering::Relaxed);
}

/// `kubectl rollout resume` in the middle of an analysis, while the webhook is down:
/// the Deployment rolls its canary revision out to every pod, unanalysed. The controller
/// says so (the Canary Failed, its message, a warning Event), sends all traffic to the
/// Deployment's pods, removes the canary copy and drops the lock without pausing the
/// Deployment again (that would strand a half rollout). With the webhook back, the
/// next release is intercepted as always.
#[test]
fn a_deployment_resumed_while_the_webhook_is_down_is_reported_and_released() {
    let w = World::start();
    w.install(30);
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(10, Duration::from_secs(60));
    let canary = w.jsonpath("deployment/podinfo", "{.metadata.annotations.apisix-canary\\.dev/canary-revision}");
    assert!(!canary.is_empty(), "locked on the canary revision");

    let webhooks = Webhooks::of(&w);
    webhooks.down();
    w.ok(&["-n", "test", "rollout", "resume", "deployment/podinfo"]);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(w.wait_phase(&["Failed"], Duration::from_secs(30)), "Failed", "{:#?}", w.events());
    let message = w.jsonpath("canary/podinfo", "{.status.conditions[0].message}");
    for part in ["not intercepted", "resumed under the release lock", &format!("the release of {canary} ended")] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    assert!(w.events().iter().any(|e| e.contains("rolled out without analysis")), "{:#?}", w.events());
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.lastPromotedSpec}"), canary, "what runs now is stable");
    // The lock is gone and the Deployment runs unpaused; the canary's objects are gone.
    let annotations = w.jsonpath("deployment/podinfo", "{.metadata.annotations}");
    assert!(!annotations.contains("stable-revision") && !annotations.contains("canary-revision"), "{annotations}");
    assert_ne!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true");
    for generated in ["deployment/podinfo-canary", "service/podinfo-canary", "apisixroute/podinfo-podinfo-canary"] {
        assert!(!w.exists(generated), "{generated} removed");
    }

    webhooks.up();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.2"]);
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "intercepted again");
    assert_eq!(w.wait_phase(&["Succeeded"], Duration::from_secs(120)), "Succeeded", "{:#?}", w.events());
    traffic.store(false, Ordering::Relaxed);
}

/// The leader's Lease renewals fail (its writes to the Lease answered 500, as when its
/// API server rejects them) while its other requests succeed: it stops writing before
/// the Lease can expire, the other replica takes over, and the release ends as it
/// should, with no step twice and never two writers at once (the World checks the
/// audit log).
#[test]
fn a_leader_that_cannot_renew_its_lease_hands_the_release_over() {
    let w = World::start();
    w.serve("serve-1", "127.0.0.1:0");
    w.install(50);
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(20, Duration::from_secs(60));
    let holder = || w.ok(&["-n", "apisix-canary", "get", "lease", "-o", "jsonpath={.items[0].spec.holderIdentity}"]);
    assert_eq!(holder(), "serve-0");
    let rule = r#"{"rules": [{"verbs": ["update", "patch"], "resources": ["leases"], "userAgent": "(serve) serve-0", "fault": {"error": {"code": 500}}}]}"#;
    let (code, body) = w.sim_api("PUT", "/sim/faults", rule);
    assert_eq!(code, 200, "{body}");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(120)), "Succeeded", "{:#?}", w.events());
    assert_eq!(holder(), "serve-1");
    assert!(hits(&w)[0] > 0, "serve-0 tried to renew");
    w.assert_each_step_once(50);
    let logs = w.logs.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.starts_with("serve-1: ") && l.contains("Promotion completed!")),
        "serve-1 finished it"
    );
    traffic.store(false, Ordering::Relaxed);
}
