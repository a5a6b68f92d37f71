//! Releases under a misbehaving API server (`sim/src/faults.rs`): a share of serve's
//! requests answered 500, 409 or 429 with Retry-After, answered late, or carried out
//! with the answer lost, and every watch cut (with the history compacted, so resuming
//! gets 410 Gone) every few seconds. The release must still end as its canary deserves,
//! every step once, and the invariant observer must see no broken promise.

#[path = "support/e2e.rs"]
mod e2e;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::*;
use serde_json::Value;

/// serve's requests only (its User-Agent): the user's kubectl meets a healthy cluster.
const FAULTS: &str = r#"{"rules": [
  {"verbs": ["create", "update", "patch"], "userAgent": "(serve)", "probability": 0.15, "fault": {"error": {"code": 500}}},
  {"verbs": ["update", "patch"], "userAgent": "(serve)", "probability": 0.15, "fault": {"error": {"code": 409}}},
  {"verbs": ["get", "list"], "userAgent": "(serve)", "probability": 0.1, "fault": {"error": {"code": 429, "retryAfterSeconds": 1}}},
  {"verbs": ["patch", "create"], "userAgent": "(serve)", "probability": 0.1, "fault": "loseResponse"},
  {"verbs": ["get"], "userAgent": "(serve)", "probability": 0.05, "fault": {"delayMs": 1500}}
]}"#;

struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Cuts every watch (and compacts the history) every 3 s until `on` is false.
fn cut_watches(w: &World, on: &AtomicBool) -> u32 {
    let mut cuts = 0;
    while on.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(3));
        let (code, body) = w.sim_api("POST", "/sim/cut-watches?compact=true", "");
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
    // tries in a row (a release's start writes its status first, RELIABILITY.md).
    w.observer.as_ref().unwrap().set_grace(Duration::from_secs(20));
    let (code, body) = w.sim_api("PUT", "/sim/faults", FAULTS);
    assert_eq!(code, 200, "{body}");
    let traffic = w.traffic();
    let cutting = AtomicBool::new(true);

    let cuts = std::thread::scope(|s| {
        let cutter = s.spawn(|| cut_watches(&w, &cutting));
        // A failed assertion below must end the cutter too, or the scope waits forever.
        let _stop = Stop(&cutting);

        // A healthy canary: promoted, each step once.
        w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
        let phase = w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(180));
        if phase != "Succeeded" {
            let logs = w.logs.lock().unwrap().join("\n");
            panic!("{phase}: {:#?}\n{}\n{logs}", w.events(), w.ok(&["get", "canary", "-n", "test", "-o", "yaml"]));
        }
        w.assert_each_step_once(30);
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
    eprintln!("faults hit: {hits:?} (500, 409, 429, lost, late); watches cut {cuts} times");
    assert!(hits.iter().take(4).all(|&h| h > 0), "every kind of fault met serve: {hits:?}");
    assert!(cuts >= 3, "watches cut {cuts} times");
    // The observer (on drop) checks the split, the pauses and what was left behind.
}
