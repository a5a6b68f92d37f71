//! Severity filtering, and posts to local recorders: direct, through a proxy, refused.

use serde_json::json;
use tokio::net::TcpListener;

use super::*;
use crate::analysis::http::recorder::{Reply, Server};

#[test]
fn severity_table() {
    use Severity::{Error, Info, Warn};
    // (subscribed, notice, delivered)
    let table = [
        (Info, Info, true),
        (Info, Warn, true),
        (Info, Error, true),
        (Warn, Info, false),
        (Warn, Warn, true),
        (Warn, Error, true),
        (Error, Info, false),
        (Error, Warn, false),
        (Error, Error, true),
    ];
    for (subscribed, notice, want) in table {
        assert_eq!(wants(subscribed, notice), want, "subscribed {subscribed}, notice {notice}");
    }
}

fn notice() -> Notice {
    Notice {
        canary: "podinfo".into(),
        namespace: "test".into(),
        target: "podinfo".into(),
        phase: Phase::Failed,
        severity: Severity::Error,
        message: "Failed checks threshold reached 5".into(),
        fields: vec![],
    }
}

fn dest(address: String) -> Destination {
    Destination {
        provider: "slack.test".into(),
        address: address.parse().unwrap(),
        proxy: None,
        token: None,
        channel: None,
        username: None,
    }
}

#[tokio::test]
async fn posts_go_through_the_proxy() {
    let proxy = Server::start(|_, _| Reply::new(200, "ok")).await;
    // `.test` never resolves: only the proxy can have carried this.
    let dest = Destination {
        proxy: Some(format!("http://{}", proxy.addr)),
        ..dest("http://hooks.example.test/services/T/B/X".into())
    };
    send(&dest, Kind::Slack, &notice(), &Resolver::default()).await.unwrap();
    let [request] = proxy.received().try_into().unwrap();
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "http://hooks.example.test/services/T/B/X")
    );
    assert_eq!(request.json()["attachments"][0]["text"], "Failed checks threshold reached 5");
}

#[tokio::test]
async fn a_webhook_gets_its_token_and_our_json() {
    let server = Server::start(|_, _| Reply::new(202, "")).await;
    let dest = Destination { token: Some("s3cret".into()), ..dest(server.url("/hook")) };
    send(&dest, Kind::Webhook, &notice(), &Resolver::default()).await.unwrap();
    let [request] = server.received().try_into().unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/hook"));
    assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = request.json();
    assert_eq!(body["phase"], "Failed");
    assert_eq!(body["severity"], "error");
    assert_eq!(body["fields"], json!({}));
    let sent: Timestamp = body["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(Timestamp::now().duration_since(sent).as_secs() < 60, "{sent}");
}

#[tokio::test]
async fn a_refusal_quotes_the_status_and_body_not_the_address() {
    let server = Server::start(|_, _| Reply::new(500, "invalid_payload")).await;
    let dest = dest(server.url("/services/T/B/SECRET"));
    let err = send(&dest, Kind::Slack, &notice(), &Resolver::default()).await.unwrap_err();
    assert_eq!(err, "AlertProvider slack.test: post to 127.0.0.1: 500 Internal Server Error: invalid_payload");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_an_error_naming_the_provider() {
    // Bound then dropped: nothing listens there any more.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let dest = dest(format!("http://{addr}/services/T/B/SECRET"));
    let err = send(&dest, Kind::Slack, &notice(), &Resolver::default()).await.unwrap_err();
    assert!(err.starts_with("AlertProvider slack.test: post to 127.0.0.1: "), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
}
