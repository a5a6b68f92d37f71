//! The hook caller against local servers that record what they received.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::analysis::http::recorder::{Reply, Server};

fn hook(url: &str) -> Webhook {
    Webhook {
        name: "load-test".into(),
        kind: HookKind::Rollout,
        url: url.parse().unwrap(),
        timeout: Duration::from_secs(10),
        metadata: BTreeMap::new(),
        retries: 0,
        mute_alert: false,
        disable_tls: false,
    }
}

fn payload() -> Payload<'static> {
    Payload { name: "podinfo", namespace: "test", phase: Phase::Progressing, checksum: "7d4b9c6f5" }
}

fn caller() -> Caller {
    Caller::new(&Resolver::default()).unwrap()
}

/// A server answering `status` with `body` to every request.
async fn answering(status: u16, body: &'static str) -> Server {
    Server::start(move |_, _| Reply::new(status, body)).await
}

#[tokio::test]
async fn a_rollout_hook_gets_flaggers_body() {
    let server = answering(200, "").await;
    let mut h = hook(&server.url("/gate/check"));
    h.metadata = BTreeMap::from([("cmd".to_owned(), "hey -z 1m http://podinfo-canary.test:9898/".to_owned())]);
    caller().call(&h, &payload()).await.unwrap();
    caller().call(&hook(&server.url("/bare")), &payload()).await.unwrap();
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("POST", "/gate/check"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(
        got[0].json(),
        json!({
            "name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "7d4b9c6f5",
            "metadata": {"cmd": "hey -z 1m http://podinfo-canary.test:9898/"}
        })
    );
    // Without metadata, the key is left out, as Flagger's omitempty does.
    assert_eq!(
        got[1].json(),
        json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "7d4b9c6f5"})
    );
}

#[tokio::test]
async fn an_event_hook_gets_the_event_and_its_own_metadata_without_overrides() {
    let server = answering(202, "").await;
    let mut h = hook(&server.url("/events"));
    h.kind = HookKind::Event;
    h.metadata = BTreeMap::from([
        ("eventType".to_owned(), "Custom".to_owned()),
        ("timestamp".to_owned(), "yesterday".to_owned()),
        ("team".to_owned(), "payments".to_owned()),
    ]);
    let timestamp: Timestamp = "2024-05-01T12:00:00.250Z".parse().unwrap();
    let event = Event { message: "Advance podinfo.test canary weight 20", warning: true, timestamp };
    let p = Payload { phase: Phase::Failed, ..payload() };
    caller().event(&h, &p, &event).await.unwrap();
    assert_eq!(
        server.received()[0].json(),
        json!({
            "name": "podinfo", "namespace": "test", "phase": "Failed", "checksum": "7d4b9c6f5",
            "metadata": {
                "eventMessage": "Advance podinfo.test canary weight 20",
                "eventType": "Warning",
                "timestamp": "1714564800250",
                "team": "payments",
            }
        })
    );
    let normal = Event { warning: false, ..event };
    assert_eq!(body(&hook("http://x/"), &p, Some(&normal))["metadata"]["eventType"], "Normal");
}

#[tokio::test]
async fn statuses_up_to_202_pass_and_the_rest_fail_with_the_body() {
    let cases: [(u16, &'static str, Result<(), &str>); 7] = [
        (200, "", Ok(())),
        (201, "created", Ok(())),
        (202, "", Ok(())),
        (203, "not yet", Err("not yet")),
        (403, "", Err("403 Forbidden")),
        (500, "  load test failed: 12% errors\n", Err("load test failed: 12% errors")),
        (404, "\n", Err("404 Not Found")),
    ];
    for (status, reply, want) in cases {
        let server = answering(status, reply).await;
        let got = caller().call(&hook(&server.url("/")), &payload()).await.map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(str::to_owned), "{status} {reply:?}");
    }
}

#[tokio::test]
async fn a_long_body_is_cut() {
    let long: &'static str = "é".repeat(400).leak();
    let server = answering(400, long).await;
    let e = caller().call(&hook(&server.url("/")), &payload()).await.unwrap_err().to_string();
    assert!(e.ends_with('…') && e.len() <= MAX_MESSAGE + '…'.len_utf8(), "{} bytes", e.len());
}

#[tokio::test]
async fn a_slow_hook_times_out_at_its_timeout() {
    let server = Server::start(|_, _| Reply { delay: Duration::from_secs(3), ..Reply::new(200, "") }).await;
    let mut h = hook(&server.url("/slow"));
    h.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let e = caller().call(&h, &payload()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(e.to_string(), format!("POST {}: timed out after 200ms", server.url("/slow")));
}

#[tokio::test]
async fn busy_and_broken_hooks_are_retried_with_backoff() {
    let server = Server::start(|n, _| if n <= 2 { Reply::new(503, "") } else { Reply::new(200, "") }).await;
    let mut h = hook(&server.url("/"));
    h.retries = 2;
    let started = Instant::now();
    caller().call(&h, &payload()).await.unwrap();
    assert_eq!(server.received().len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(600), "200 ms then 400 ms: {:?}", started.elapsed());

    let server = Server::start(|n, _| if n <= 2 { Reply::new(503, "") } else { Reply::new(200, "") }).await;
    let mut h = hook(&server.url("/"));
    h.retries = 1;
    let e = caller().call(&h, &payload()).await.unwrap_err();
    assert_eq!(e.to_string(), "giving up after 2 attempts: 503 Service Unavailable");
    assert_eq!(server.received().len(), 2);

    let server = Server::start(|n, _| if n == 1 { Reply::new(429, "slow down") } else { Reply::new(200, "") }).await;
    let mut h = hook(&server.url("/"));
    h.retries = 1;
    caller().call(&h, &payload()).await.unwrap();
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn answers_are_never_retried() {
    for (status, body) in [(400, "bad request"), (501, "not implemented"), (403, "")] {
        let server = answering(status, body).await;
        let mut h = hook(&server.url("/"));
        h.retries = 3;
        let e = caller().call(&h, &payload()).await.unwrap_err();
        assert_eq!(server.received().len(), 1, "{status}");
        assert!(matches!(e, HookError::Status { status: s, .. } if s == status), "{e}");
    }
}

#[tokio::test]
async fn an_unreachable_hook_says_where_and_why_and_is_retried() {
    // A port that was just free: nothing listens there.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let url = format!("http://{addr}/");
    let e = caller().call(&hook(&url), &payload()).await.unwrap_err().to_string();
    assert!(e.starts_with(&format!("POST {url}: error sending request")), "{e}");
    assert!(e.to_lowercase().contains("connection refused"), "{e}");
    let mut h = hook(&url);
    h.retries = 1;
    let e = caller().call(&h, &payload()).await.unwrap_err().to_string();
    assert!(e.starts_with(&format!("giving up after 2 attempts: POST {url}: ")), "{e}");
}

#[tokio::test]
async fn a_cluster_name_is_reached_through_the_resolver() {
    let server = answering(200, "").await;
    let resolver = Resolver::new([("flagger-loadtester.test".to_owned(), server.addr)]);
    let caller = Caller::new(&resolver).unwrap();
    caller.call(&hook("http://flagger-loadtester.test/gate/check"), &payload()).await.unwrap();
    let got = server.received();
    assert_eq!(got[0].path, "/gate/check");
    assert_eq!(got[0].header("host"), Some("flagger-loadtester.test"));
}

#[tokio::test]
async fn call_all_runs_the_hooks_of_one_kind_in_order() {
    let server =
        Server::start(|_, r| if r.path == "/b" { Reply::new(500, "b is down") } else { Reply::new(200, "") }).await;
    let spec = json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"},
        "analysis": {"webhooks": [
            {"name": "a", "url": server.url("/a")},
            {"name": "gate", "type": "pre-rollout", "url": server.url("/gate")},
            {"name": "b", "url": server.url("/b")},
            {"name": "c", "url": server.url("/c"), "metadata": {"k": "v"}},
        ]}
    });
    let (plan, _) = Plan::from_canary(&serde_json::from_value(spec).unwrap()).unwrap();
    let results = caller().call_all(&plan, HookKind::Rollout, &payload()).await;
    let results: Vec<_> = results.into_iter().map(|(name, r)| (name, r.map_err(|e| e.to_string()))).collect();
    assert_eq!(
        results,
        vec![("a".into(), Ok(())), ("b".into(), Err("b is down".into())), ("c".into(), Ok(()))],
        "a failure does not stop the hooks after it"
    );
    let paths: Vec<_> = server.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
}

#[test]
fn backoff_doubles_up_to_two_seconds() {
    let waits: Vec<u128> = (1..=6).map(|n| backoff(n).as_millis()).collect();
    assert_eq!(waits, [200, 400, 800, 1600, 2000, 2000]);
    assert_eq!(backoff(40), MAX_BACKOFF);
}

#[test]
fn what_is_retried() {
    let status = |status| HookError::Status { status, message: String::new() };
    for s in [429, 500, 502, 503, 504, 599] {
        assert!(status(s).retryable(), "{s}");
    }
    for s in [203, 400, 401, 403, 404, 409, 501] {
        assert!(!status(s).retryable(), "{s}");
    }
    assert!(HookError::Timeout { url: "u".into(), timeout: Duration::from_secs(1) }.retryable());
    assert!(HookError::Transport { url: "u".into(), cause: "refused".into() }.retryable());
}

#[tokio::test]
async fn disable_tls_calls_a_hook_with_a_self_signed_certificate() {
    use crate::analysis::http::recorder;
    let server = Server::start_tls(recorder::self_signed(), |_, _| Reply::new(200, "")).await;
    let mut h = hook(&format!("https://localhost:{}/gate/check", server.addr.port()));
    let strict = caller().call(&h, &payload()).await.unwrap_err();
    assert!(matches!(strict, HookError::Transport { .. }), "{strict:?}");
    assert!(strict.to_string().to_lowercase().contains("certificate"), "{strict}");
    assert!(server.received().is_empty(), "never past the handshake");

    h.disable_tls = true;
    caller().call(&h, &payload()).await.unwrap();
    assert_eq!(server.received().len(), 1);
    // The same caller keeps verifying the hooks that do not ask otherwise.
    let c = caller();
    h.disable_tls = false;
    assert!(c.call(&h, &payload()).await.is_err());
    h.disable_tls = true;
    assert!(c.call(&h, &payload()).await.is_ok());
}
