//! What a real cluster can do to a controller, and what it must never break: a leader
//! stopped in the middle of a reconcile (SIGSTOP) while a webhook call of its release
//! hangs, resumed after the other replica took over; and every Event lost. Two `serve`
//! processes, the sim, the real kubectl; the observer checks the audit log for two
//! writers at once and the routes for a step taken twice.

#[path = "support/e2e.rs"]
mod e2e;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use e2e::*;

/// A Canary of the scenario's Deployment: 2 s steps of 10 up to 50, no metric, the
/// `rollout` hook `url` (given a minute to answer).
fn canary(url: &str) -> String {
    format!(
        "apiVersion: apisix-canary.dev/v1beta1\nkind: Canary\nmetadata: {{name: podinfo, namespace: test}}\nspec:\n  \
         targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}\n  routeRef: {{apiVersion: \
         apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}}\n  analysis:\n    interval: 2s\n    threshold: 5\n    \
         maxWeight: 50\n    stepWeight: 10\n    webhooks:\n      - name: slow-check\n        url: {url}\n        \
         timeout: 60s\n"
    )
}

/// A webhook whose first call hangs until [`Hold::release`], then fails; every other call
/// passes at once. Counts the calls.
struct Hold {
    url: String,
    held: Arc<(Mutex<HoldState>, Condvar)>,
}

#[derive(Default)]
struct HoldState {
    calls: u32,
    released: bool,
}

impl Hold {
    fn start() -> Hold {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let held = Arc::new((Mutex::new(HoldState::default()), Condvar::new()));
        let state = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let state = state.clone();
                std::thread::spawn(move || answer(stream, &state));
            }
        });
        Hold { url, held }
    }

    fn calls(&self) -> u32 {
        self.held.0.lock().unwrap().calls
    }

    fn release(&self) {
        self.held.0.lock().unwrap().released = true;
        self.held.1.notify_all();
    }
}

fn answer(mut stream: TcpStream, held: &(Mutex<HoldState>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let _ = reader.read_exact(&mut vec![0; length]);
    let first = {
        let mut state = held.0.lock().unwrap();
        state.calls += 1;
        state.calls == 1
    };
    let (status, body) = if first {
        let state = held.0.lock().unwrap();
        let _released = held.1.wait_while(state, |s| !s.released).unwrap();
        ("500 Internal Server Error", "slow-check failed late")
    } else {
        ("200 OK", "ok")
    };
    let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

fn signal(w: &World, index: usize, signal: &str) {
    let pid = w.serves.lock().unwrap()[index].0.id().to_string();
    assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
}

fn holder(w: &World) -> String {
    w.ok(&["-n", "apisix-canary", "get", "lease", "-o", "jsonpath={.items[0].spec.holderIdentity}"])
}

fn install(w: &World, canary: &str) {
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    w.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    let (d, c) = (w.file("podinfo.yaml", &canary_mode_podinfo()), w.file("canary.yaml", canary));
    w.ok(&["apply", "-f", &d, "-f", &c, "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
}

/// The leader is stopped while its release waits on a hung `rollout` hook; the other
/// replica takes the Lease and moves the release on; the hook then answers (a failure)
/// and the old leader resumes: it must write nothing, since its term has ended.
#[test]
fn a_leader_stopped_mid_reconcile_writes_nothing_once_resumed() {
    let w = World::start();
    // The webhooks stay with serve-0: stopped, it answers none, and the API server
    // goes by their failure policies, as it would on a cluster.
    w.serve("serve-1", "127.0.0.1:0");
    let hold = Hold::start();
    install(&w, &canary(&hold.url));
    assert_eq!(holder(&w), "serve-0");
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    // The leader's first interval check calls the hook, which hangs: stop the leader there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while hold.calls() == 0 {
        assert!(Instant::now() < deadline, "the hook was never called: {:#?}", w.events());
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&w, 0, "-STOP");
    let frozen: u32 = w.jsonpath("canary/podinfo", "{.status.canaryWeight}").parse().unwrap();
    // The other replica takes over and moves the release on, to its end.
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(120)), "Succeeded", "{:#?}", w.events());
    assert_eq!(holder(&w), "serve-1");
    // The hook answers the old leader (a failure), which resumes in the middle of its
    // reconcile: the answer is void, and so is anything decided on it.
    hold.release();
    signal(&w, 0, "-CONT");
    std::thread::sleep(Duration::from_secs(5));
    let events = w.events();
    assert!(
        !events.iter().any(|e| e.contains("slow-check failed")),
        "a check of the old term was reported: {events:#?}"
    );
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.phase}"), "Succeeded");
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.failedChecks}"), "0");
    w.assert_each_step_once(50);
    let resumed: Vec<String> = w.logs.lock().unwrap().iter().filter(|l| l.starts_with("serve-0: ")).cloned().collect();
    // Its hook's answer is logged as it came; nothing is decided on it.
    let decided = |l: &&String| l.contains("external check slow-check failed") || l.contains("Rolling back");
    assert!(!resumed.iter().any(|l| decided(&l)), "frozen at weight {frozen}: {resumed:#?}");
    assert!(resumed.iter().any(|l| l.contains("slow-check failed late")), "the hook did answer the old leader");
    traffic.store(false, Ordering::Relaxed);
    // On drop: the observer's one-writer check over the audit log.
}

/// Every Event serve records is refused (the API server may drop or rate-limit them):
/// the release runs to its end anyway, each step once, as its status and routes say.
#[test]
fn a_release_completes_when_no_event_can_be_recorded() {
    let w = World::start();
    let hold = Hold::start();
    hold.release();
    install(&w, &canary(&hold.url));
    let rule = r#"{"rules": [{"verbs": ["create", "patch", "update"], "resources": ["events"], "userAgent": "(serve)", "fault": {"error": {"code": 429, "retryAfterSeconds": 1}}}]}"#;
    let (code, body) = w.sim_api("PUT", "/sim/faults", rule);
    assert_eq!(code, 200, "{body}");
    let traffic = w.traffic();
    let started = Instant::now();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    let mut weights = Vec::new();
    while !matches!(w.jsonpath("canary/podinfo", "{.status.phase}").as_str(), "Succeeded" | "Failed") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "stuck at {weights:?}: {}\n{}",
            w.ok(&["-n", "test", "get", "canary", "podinfo", "-o", "yaml"]),
            w.logs
                .lock()
                .unwrap()
                .iter()
                .filter(|l| !l.contains("admission review"))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        let weight: u32 = w.jsonpath("canary/podinfo", "{.status.canaryWeight}").parse().unwrap_or(0);
        if weights.last() != Some(&weight) {
            weights.push(weight);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.phase}"), "Succeeded");
    let steps: Vec<u32> = weights.into_iter().filter(|w| *w > 0).collect();
    assert_eq!(steps, [10, 20, 30, 40, 50], "each step once, in order");
    // 5 steps of 2 s: not held back by the Events it could not record.
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    // Only the one recorded before the API server refused them.
    assert_eq!(w.events(), ["Initialization done! podinfo.test"], "no Event could be recorded");
    let (_, faults) = w.sim_api("GET", "/sim/faults", "");
    let refused: serde_json::Value = serde_json::from_str(&faults).unwrap();
    assert!(refused["rules"][0]["hits"].as_u64().unwrap() >= 5, "{refused}");
    traffic.store(false, Ordering::Relaxed);
}
