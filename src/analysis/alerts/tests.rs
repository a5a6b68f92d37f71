//! Severity filtering, and posts to local recorders: direct, through a proxy, refused.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

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

/// A one-shot-per-connection HTTP server answering `status` and `body`, handing over
/// each request it read (head and body) as text.
async fn recorder(status: &'static str, body: &'static str) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = tx.send(read_request(&mut stream).await);
            let answer =
                format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (addr, rx)
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8(buf).unwrap()
}

/// The next request recorded; a test fails rather than hangs when none comes.
async fn next(seen: &mut mpsc::UnboundedReceiver<String>) -> String {
    let wait = tokio::time::timeout(std::time::Duration::from_secs(5), seen.recv());
    wait.await.expect("nothing was posted within 5s").expect("the recorder stopped")
}

fn body_of(request: &str) -> Value {
    serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap()
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
    let (proxy, mut seen) = recorder("200 OK", "ok").await;
    // `.test` never resolves: only the proxy can have carried this.
    let dest = Destination {
        proxy: Some(format!("http://{proxy}")),
        ..dest("http://hooks.example.test/services/T/B/X".into())
    };
    send(&dest, Kind::Slack, &notice(), &Resolver::default()).await.unwrap();
    let request = next(&mut seen).await;
    assert!(request.starts_with("POST http://hooks.example.test/services/T/B/X HTTP/1.1\r\n"), "{request}");
    assert_eq!(body_of(&request)["attachments"][0]["text"], "Failed checks threshold reached 5");
}

#[tokio::test]
async fn a_webhook_gets_its_token_and_our_json() {
    let (addr, mut seen) = recorder("202 Accepted", "").await;
    let dest = Destination { token: Some("s3cret".into()), ..dest(format!("http://{addr}/hook")) };
    send(&dest, Kind::Webhook, &notice(), &Resolver::default()).await.unwrap();
    let request = next(&mut seen).await;
    assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
    let lower = request.to_ascii_lowercase();
    assert!(lower.contains("authorization: bearer s3cret\r\n"), "{request}");
    assert!(lower.contains("content-type: application/json\r\n"), "{request}");
    let body = body_of(&request);
    assert_eq!(body["phase"], "Failed");
    assert_eq!(body["severity"], "error");
    assert_eq!(body["fields"], json!({}));
    let sent: Timestamp = body["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(Timestamp::now().duration_since(sent).as_secs() < 60, "{sent}");
}

#[tokio::test]
async fn a_refusal_quotes_the_status_and_body_not_the_address() {
    let (addr, _seen) = recorder("500 Internal Server Error", "invalid_payload").await;
    let dest = dest(format!("http://{addr}/services/T/B/SECRET"));
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
