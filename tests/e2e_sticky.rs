//! A sticky release on the sim (issue 30), as a user runs it: `serve` as its own process,
//! the real kubectl, 200 clients each with its cookie jar through the gateway. Across a
//! whole weight progression no client is answered by both versions before the promotion;
//! after a rollback none is answered by the canary.

#[path = "support/e2e.rs"]
mod e2e;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::*;

const CANARY: &str = r#"apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}
  progressDeadlineSeconds: 60
  analysis:
    interval: 2s
    threshold: 3
    stepWeight: 10
    maxWeight: 50
    sessionAffinity:
      cookieName: canary
      maxAge: 3600
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        interval: 10s
        minRequests: 5
"#;

/// Who answered each client, by client: the versions ("canary" or "stable").
type Seen = Arc<Mutex<BTreeMap<usize, Vec<&'static str>>>>;

/// 200 clients, each keeping the cookie it is given, asking `/api/info` in turn until
/// `on` is cleared; what answered each is appended to `seen` while `record` is set.
fn clients(gateway: &str, on: Arc<AtomicBool>, record: Arc<AtomicBool>, seen: Seen) {
    let addr = gateway.trim_start_matches("http://").trim_end_matches('/').to_owned();
    for thread in 0..10 {
        let (addr, on, record, seen) = (addr.clone(), on.clone(), record.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut jars: Vec<Option<String>> = vec![None; 20];
            while on.load(Ordering::Relaxed) {
                for (i, jar) in jars.iter_mut().enumerate() {
                    let Ok(mut s) = std::net::TcpStream::connect(&addr) else { continue };
                    let cookie = jar.as_ref().map(|c| format!("Cookie: other=1; {c}\r\n")).unwrap_or_default();
                    let _ = write!(
                        s,
                        "GET /api/info HTTP/1.1\r\nHost: app.example.com\r\n{cookie}Connection: close\r\n\r\n"
                    );
                    let mut text = String::new();
                    let _ = s.read_to_string(&mut text);
                    let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                    for line in head.lines() {
                        if let Some(v) = line.strip_prefix("Set-Cookie: ").or_else(|| line.strip_prefix("set-cookie: "))
                        {
                            *jar = v.split(';').next().map(str::to_owned);
                        }
                    }
                    let Some(host) = serde_json::from_str::<serde_json::Value>(body)
                        .ok()
                        .and_then(|v| v["hostname"].as_str().map(str::to_owned))
                    else {
                        continue;
                    };
                    if record.load(Ordering::Relaxed) {
                        let who = if host.starts_with("podinfo-canary") { "canary" } else { "stable" };
                        seen.lock().unwrap().entry(thread * 20 + i).or_default().push(who);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
}

#[test]
fn no_client_is_answered_by_both_versions_and_after_a_rollback_none_by_the_canary() {
    let w = World::start();
    w.install_canary(CANARY, &[]);
    let (on, record, seen): (_, _, Seen) =
        (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)), Arc::default());
    clients(&w.gateway, on.clone(), record.clone(), seen.clone());

    // A whole progression, 10 to 50, until the promotion starts: a client is assigned at
    // its first answer once the canary takes traffic, and keeps its version from then on.
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(10, Duration::from_secs(60));
    record.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !matches!(
        w.jsonpath("canary/podinfo", "{.status.phase}").as_str(),
        "Promoting" | "Finalising" | "Succeeded" | "Failed"
    ) {
        assert!(Instant::now() < deadline, "{:#?}", w.events());
        std::thread::sleep(Duration::from_millis(100));
    }
    record.store(false, Ordering::Relaxed);
    assert!(w.events().contains(&"Advance podinfo.test canary weight 50".to_owned()), "{:#?}", w.events());
    let answered = std::mem::take(&mut *seen.lock().unwrap());
    let both: Vec<_> = answered.iter().filter(|(_, v)| v.contains(&"canary") && v.contains(&"stable")).collect();
    let on_canary = answered.values().filter(|v| v.contains(&"canary")).count();
    eprintln!("{} clients answered, {on_canary} by the canary", answered.len());
    assert!(answered.len() >= 190, "{}", answered.len());
    assert!(
        both.is_empty(),
        "answered by both versions: {:?}",
        both.iter().map(|(c, v)| (c, v.len())).collect::<Vec<_>>()
    );
    assert!(on_canary > 0 && on_canary < answered.len(), "the weight split the clients: {on_canary}");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(60)), "Succeeded", "{:#?}", w.events());

    // A release that fails, with new sessions (the old ones keep the versions of the last
    // release, whose canary Service is gone: the stable): rolled back at the threshold,
    // after which the canary answers nobody.
    on.store(false, Ordering::Relaxed);
    let on = Arc::new(AtomicBool::new(true));
    record.store(false, Ordering::Relaxed);
    clients(&w.gateway, on.clone(), record.clone(), seen.clone());
    w.ok(&["-n", "test", "set", "env", "deployment/podinfo", "SIM_ERROR_RATE=100"]);
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)), "Failed", "{:#?}", w.events());
    let events = w.events();
    assert!(
        events.iter().any(|e| e.starts_with("Rolling back podinfo.test failed checks threshold reached")),
        "{events:#?}"
    );
    record.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    on.store(false, Ordering::Relaxed);
    let after = std::mem::take(&mut *seen.lock().unwrap());
    assert!(after.len() >= 190, "{}", after.len());
    assert!(after.values().all(|v| v.iter().all(|who| *who == "stable")), "the canary answered after the rollback");
    w.assert_rbac_covers_serve(None);
}
