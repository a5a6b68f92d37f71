//! Bad input at the edges of the webhook server and of the analysis: each gets a clear
//! refusal or a bounded cost, and the server keeps serving others meanwhile.
//! - a client that offers only TLS 1.1 gets a `protocol_version` alert;
//! - slow-loris clients (a request head, or a body, a byte at a time) are cut off at the
//!   header and body timeouts while a review on another connection is answered;
//! - an HTTP/2 rapid-reset flood ends its own connection (GOAWAY), not the server;
//! - names that are not UTF-8, and a review of a Deployment with 10,000 annotations;
//! - a Prometheus that answers NaN, ±Inf, or 10,000 series.
//!
//! Bodies over the size limit are in `server_tls.rs`; the costs are in `cargo bench
//! --bench admission` (10,000 annotations) and RELIABILITY.md.

#[path = "support/client.rs"]
mod client;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use apisix_canary::server::run::{Running, ServeConfig, start};
use apisix_canary::tls::generate::{self, DevCerts};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const URL: &str = "https://localhost";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission").join(name)).unwrap()
}

async fn server(dir: &std::path::Path) -> (Running, DevCerts) {
    let certs = generate::generate(&["localhost".to_owned()]).unwrap();
    certs.write(dir).unwrap();
    let config = ServeConfig::local(dir.join(generate::CERT_FILE), dir.join(generate::KEY_FILE));
    (start(&config).await.unwrap(), certs)
}

async fn review(running: &Running, ca: &str, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let stream = client::connect(&client::connector(ca, &[b"http/1.1"]), running.addr).await.unwrap();
    let res = client::send(stream, client::post(&format!("{URL}{path}"), body)).await;
    (res.status(), serde_json::from_slice(res.body()).expect("every answer is JSON"))
}

/// A review of the scenario's `kubectl set image` is answered, and allowed.
async fn still_serving(running: &Running, ca: &str) {
    let started = Instant::now();
    let (status, answer) = review(running, ca, "/mutate/deployments", fixture("set-image.json")).await;
    assert_eq!((status, &answer["response"]["allowed"]), (StatusCode::OK, &json!(true)), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered in {:?}", started.elapsed());
    assert_eq!(client::get(running.admin_addr, "/ready").await.status(), StatusCode::OK, "and ready");
}

/// A TLS 1.1 ClientHello, as an old client sends it: no supported_versions extension,
/// otherwise what the server needs (suites, SNI, signature schemes, groups), so only the
/// version is wrong.
fn tls11_client_hello() -> Vec<u8> {
    let with_len = |bytes: &[u8]| -> Vec<u8> {
        let mut v = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(bytes);
        v
    };
    let extension = |kind: u16, body: &[u8]| -> Vec<u8> {
        let mut v = kind.to_be_bytes().to_vec();
        v.extend(with_len(body));
        v
    };
    let mut sni = vec![0u8];
    sni.extend(with_len(b"localhost"));
    let mut extensions = extension(0x0000, &with_len(&sni));
    extensions.extend(extension(0x000d, &with_len(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01]))); // signature_algorithms
    extensions.extend(extension(0x000a, &with_len(&[0x00, 0x1d, 0x00, 0x17]))); // x25519, secp256r1
    extensions.extend(extension(0x000b, &[0x01, 0x00])); // uncompressed points

    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend([7u8; 32]); // random
    hello.push(0); // no session id
    hello.extend(with_len(&[0xc0, 0x2b, 0xc0, 0x2f])); // ECDHE-ECDSA/RSA-AES128-GCM-SHA256
    hello.extend([0x01, 0x00]); // null compression
    hello.extend(with_len(&extensions));
    let mut handshake = vec![0x01, 0x00];
    handshake.extend(with_len(&hello));
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len(&handshake));
    record
}

#[tokio::test]
async fn a_client_offering_only_tls_1_1_gets_a_protocol_version_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (running, certs) = server(dir.path()).await;
    let mut tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closes the connection");
    // An alert record: fatal (2), protocol_version (70).
    assert_eq!(answer.first(), Some(&0x15), "{answer:02x?}");
    assert_eq!(answer.get(5..7), Some(&[2u8, 70][..]), "{answer:02x?}");
    still_serving(&running, &certs.ca_pem).await;
    running.shutdown().await;
}

/// Sends `head` over TLS, then `trickle` a byte every 500 ms; returns how long the server
/// took to close the connection.
async fn trickle(running: &Running, ca: &str, head: String, trickle: &'static [u8]) -> Duration {
    let mut stream = client::connect(&client::connector(ca, &[b"http/1.1"]), running.addr).await.unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    for byte in trickle.iter().cycle() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if stream.write_all(&[*byte]).await.is_err() || stream.flush().await.is_err() {
            break;
        }
        // Closed (or answered 408) by the server?
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408") => break,
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(30), "a slow client held its connection for 30 s");
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_cut_off_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (running, certs) = server(dir.path()).await;
    let ca = certs.ca_pem.clone();
    let head = "POST /mutate/deployments HTTP/1.1\r\nHost: localhost\r\n".to_owned();
    let body = format!("{head}Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{");
    let (running, ca) = (std::sync::Arc::new(running), std::sync::Arc::new(ca));
    let slow: Vec<_> = (0..20)
        .map(|i| {
            let (running, ca) = (running.clone(), ca.clone());
            let start = if i % 2 == 0 { head.clone() } else { body.clone() };
            let bytes: &'static [u8] = if i % 2 == 0 { b"X-Slow: yes\r\n" } else { b"\"a\": 1, " };
            tokio::spawn(async move { trickle(&running, &ca, start, bytes).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    still_serving(&running, &ca).await;
    for slow in slow {
        let held = slow.await.unwrap();
        // The header and body timeouts are 10 s each.
        assert!(held < Duration::from_secs(15), "held {held:?}");
    }
    still_serving(&running, &ca).await;
    std::sync::Arc::into_inner(running).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_flood_ends_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (running, certs) = server(dir.path()).await;
    let stream = client::connect(&client::connector(&certs.ca_pem, &[b"h2"]), running.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    let ended = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut sent = 0;
    for _ in 0..10_000 {
        let request = http::Request::post(format!("{URL}/mutate/deployments")).body(()).unwrap();
        let Ok((_, mut stream)) = client.send_request(request, false) else { break };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
        client = match client.ready().await {
            Ok(client) => client,
            Err(_) => break,
        };
    }
    let end = tokio::time::timeout(Duration::from_secs(5), ended).await.expect("the connection ends").unwrap();
    let error = end.expect_err("ended by the server");
    // GOAWAY(ENHANCE_YOUR_CALM), or the socket closed right after it while we wrote.
    assert!(error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || error.is_io(), "{error}");
    // The server allows 20 resets pending; the client's writes run ahead of its GOAWAY.
    assert!(sent < 10_000, "the flood was never stopped");
    still_serving(&running, &certs.ca_pem).await;
    running.shutdown().await;
}

#[tokio::test]
async fn names_that_are_not_utf8_and_ten_thousand_annotations_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (running, certs) = server(dir.path()).await;
    let ca = certs.ca_pem.as_str();
    let review_of = |name: &str| -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(&fixture("set-image.json")).unwrap();
        v["request"]["name"] = json!("NAME");
        v["request"]["object"]["metadata"]["name"] = json!("NAME");
        serde_json::to_string(&v).unwrap().replace("\"NAME\"", name).into_bytes()
    };
    // Raw bytes that are not UTF-8, and an escape of half a UTF-16 pair: not JSON text.
    let mut raw = review_of("\"podinfo-@\"");
    let at = raw.iter().position(|b| *b == b'@').unwrap();
    raw[at] = 0xff;
    for (what, body) in [("invalid UTF-8", raw), ("lone surrogate", review_of(r#""podinfo-\ud800""#))] {
        for path in ["/mutate/deployments", "/validate/deployments"] {
            let (status, answer) = review(&running, ca, path, body.clone()).await;
            assert_eq!(status, StatusCode::OK, "{what} {path}");
            assert_eq!(answer["response"]["status"]["code"], 400, "{what} {path}: {answer}");
            let message = answer["response"]["status"]["message"].as_str().unwrap();
            assert!(message.contains("not JSON"), "{what} {path}: {message}");
        }
    }

    // 10,000 annotations, a thousand of them ours and unknown: each named, the message bounded.
    let mut v: Value = serde_json::from_slice(&fixture("set-image.json")).unwrap();
    let annotations = v["request"]["object"]["metadata"]["annotations"].as_object_mut().unwrap();
    for i in 0..10_000 {
        let key = if i % 10 == 0 { format!("apisix-canary.dev/x-{i}") } else { format!("example.com/k-{i}") };
        annotations.insert(key, json!("v"));
    }
    let started = Instant::now();
    let (status, answer) = review(&running, ca, "/validate/deployments", serde_json::to_vec(&v).unwrap()).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("apisix-canary.dev/x-0"), "{}", &message[..message.len().min(500)]);
    assert!(message.len() < 64 * 1024, "a {} byte message", message.len());
    assert!(took < Duration::from_secs(2), "{took:?}");
    still_serving(&running, ca).await;
    running.shutdown().await;
}

/// A one-answer Prometheus on a port of its own: every query gets `body`.
fn fake_prometheus(body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 16 * 1024];
            let _ = conn.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(body.as_bytes()));
        }
    });
    url
}

fn vector(values: &[&str]) -> String {
    let result: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"metric": {"node": format!("10.0.{}.{}", i / 256, i % 256)}, "value": [1_700_000_000.5, v]}))
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}}).to_string()
}

#[tokio::test]
async fn metric_answers_of_nan_inf_and_ten_thousand_series_get_clear_verdicts() {
    use apisix_canary::analysis::prometheus::{Prometheus, QueryError};
    let ask = |body: String| async move {
        let prometheus = Prometheus::new(&fake_prometheus(body), Duration::from_secs(5)).unwrap();
        prometheus.scalar("sum(rate(apisix_http_status[1m]))").await
    };
    assert_eq!(ask(vector(&["NaN"])).await.unwrap(), None, "NaN (0/0) is no values");
    assert_eq!(ask(vector(&["+Inf"])).await.unwrap(), Some(f64::INFINITY));
    assert_eq!(ask(vector(&["-Inf"])).await.unwrap(), Some(f64::NEG_INFINITY));
    let many = vec!["1"; 10_000];
    let started = Instant::now();
    let error = ask(vector(&many)).await.unwrap_err();
    assert!(matches!(error, QueryError::ManySeries(10_000)), "{error}");
    assert_eq!(error.to_string(), "query returned 10000 series, not one");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}
