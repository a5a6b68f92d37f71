//! The webhook server over a real TLS socket: reviews, malformed input, certificate
//! rotation without a restart, readiness and draining on shutdown.

#[path = "support/client.rs"]
mod client;

use std::path::PathBuf;
use std::time::Duration;

use apisix_canary::server::run::{Running, ServeConfig, start};
use apisix_canary::tls::generate::{self, DevCerts};
use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

const URL: &str = "https://localhost";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission").join(name)).unwrap()
}

async fn server(dir: &std::path::Path, reload: Duration) -> (Running, DevCerts) {
    let certs = generate::generate(&["localhost".to_owned()]).unwrap();
    certs.write(dir).unwrap();
    let mut config = ServeConfig::local(dir.join(generate::CERT_FILE), dir.join(generate::KEY_FILE));
    config.reload_interval = reload;
    (start(&config).await.unwrap(), certs)
}

async fn review(running: &Running, ca: &str, alpn: &[&[u8]], path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let stream = client::connect(&client::connector(ca, alpn), running.addr).await.unwrap();
    let res = client::send(stream, client::post(&format!("{URL}{path}"), body)).await;
    (res.status(), serde_json::from_slice(res.body()).expect("every answer is JSON"))
}

#[tokio::test]
async fn serves_reviews_over_tls_with_h2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let (running, certs) = server(dir.path(), Duration::from_secs(60)).await;
    for alpn in [&[b"h2".as_slice()][..], &[b"http/1.1".as_slice()][..], &[][..]] {
        let stream = client::connect(&client::connector(&certs.ca_pem, alpn), running.addr).await.unwrap();
        let version = stream.get_ref().1.protocol_version().unwrap();
        assert!(matches!(version, rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2));
        let res =
            client::send(stream, client::post(&format!("{URL}/mutate/deployments"), fixture("set-image.json"))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let answer: Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(answer["response"]["patchType"], "JSONPatch", "alpn {alpn:?}");
        assert_eq!(answer["response"]["uid"], "a1f0c3e2-0001-4d6b-9f00-000000000001");
    }
    // TLS 1.2 only clients are served too.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(certs.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls12 = rustls::ClientConfig::builder_with_provider(apisix_canary::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = client::connect(&std::sync::Arc::new(tls12).into(), running.addr).await.unwrap();
    assert_eq!(stream.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    running.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_are_answered_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (running, certs) = server(dir.path(), Duration::from_secs(60)).await;
    let ca = certs.ca_pem.as_str();
    let h1: &[&[u8]] = &[b"http/1.1"];
    let no_uid = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"operation":"CREATE","userInfo":{},"object":{"metadata":{"name":"x"}}}}"#;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", Vec::new(), "empty body"),
        ("not JSON", b"{not json".to_vec(), "body is not JSON"),
        ("wrong kind", br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview"}"#.to_vec(), "expected kind AdmissionReview"),
        ("no request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "has no request"),
        ("missing uid", no_uid.to_vec(), "has no uid"),
        ("JSON array", b"[1,2,3]".to_vec(), "expected kind AdmissionReview"),
        ("bad request field", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","operation":"FLY"}}"#.to_vec(), "malformed AdmissionReview"),
    ];
    for (name, body, want) in cases {
        let (status, answer) = review(&running, ca, h1, "/mutate/deployments", body).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(answer["response"]["allowed"], false, "{name}");
        assert_eq!(answer["response"]["status"]["code"], 400, "{name}");
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{name}: {message}");
    }

    let huge = vec![b' '; 4 * 1024 * 1024];
    let (status, answer) = review(&running, ca, h1, "/mutate/deployments", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["reason"], "RequestEntityTooLarge");

    let (status, answer) = review(&running, ca, h1, "/mutate/pods", fixture("set-image.json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["kind"], "Status");

    let stream = client::connect(&client::connector(ca, h1), running.addr).await.unwrap();
    let get = http::Request::get(format!("{URL}/mutate/deployments")).body(http_body_util::Full::new(Bytes::new()));
    assert_eq!(client::send(stream, get.unwrap()).await.status(), StatusCode::METHOD_NOT_ALLOWED);

    // A client that never finishes its handshake does not block anyone.
    let _idle = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let (status, answer) = review(&running, ca, h1, "/mutate/deployments", fixture("set-image.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["allowed"], true);

    let metrics = String::from_utf8(client::get(running.admin_addr, "/metrics").await.body().to_vec()).unwrap();
    assert!(
        metrics.contains(r#"apisix_canary_webhook_requests_total{path="/mutate/deployments",outcome="malformed"} 7"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"apisix_canary_webhook_requests_total{path="/mutate/deployments",outcome="patched"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("apisix_canary_webhook_request_duration_seconds_bucket"), "{metrics}");
    running.shutdown().await;
}

#[tokio::test]
async fn rotated_certificate_is_served_without_restart_and_bad_files_keep_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (running, first) = server(dir.path(), Duration::from_millis(100)).await;
    let old_leaf = running.certs.current_leaf();
    let h1: &[&[u8]] = &[b"http/1.1"];

    // A broken certificate file: the reload is rejected, the old pair keeps serving.
    std::fs::write(dir.path().join(generate::CERT_FILE), "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let errors = wait_for(|| async {
        let metrics = client::get(running.admin_addr, "/metrics").await;
        String::from_utf8_lossy(metrics.body()).contains(r#"apisix_canary_certificate_reloads_total{result="error"}"#)
    })
    .await;
    assert!(errors, "the broken file was never reported");
    assert_eq!(running.certs.current_leaf(), old_leaf);
    let (status, _) = review(&running, &first.ca_pem, h1, "/mutate/deployments", fixture("set-image.json")).await;
    assert_eq!(status, StatusCode::OK);

    // A new pair from another CA: served by the same process once the timer sees it.
    let second = generate::generate(&["localhost".to_owned()]).unwrap();
    second.write(dir.path()).unwrap();
    let rotated = wait_for(|| async {
        match client::connect(&client::connector(&second.ca_pem, h1), running.addr).await {
            Ok(stream) => {
                client::send(stream, client::post(&format!("{URL}/mutate/deployments"), fixture("set-image.json")))
                    .await
                    .status()
                    == StatusCode::OK
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(rotated, "the new certificate was never served");
    assert_ne!(running.certs.current_leaf(), old_leaf);
    // Clients that trust only the old CA are now refused: the old cert is really gone.
    assert!(client::connect(&client::connector(&first.ca_pem, h1), running.addr).await.is_err());
    running.shutdown().await;
}

#[tokio::test]
async fn readiness_goes_false_on_shutdown_and_in_flight_requests_finish() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let (running, certs) = server(dir.path(), Duration::from_secs(60)).await;
    assert_eq!(client::get(running.admin_addr, "/live").await.status(), StatusCode::OK);
    assert_eq!(client::get(running.admin_addr, "/ready").await.status(), StatusCode::OK);

    let body = fixture("set-image.json");
    let request = format!(
        "POST /mutate/deployments HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = client::connect(&client::connector(&certs.ca_pem, &[b"http/1.1"]), running.addr).await.unwrap();
    // A request whose body is held back across the shutdown, once the server has it.
    let (head, tail) = body.split_at(body.len() / 2);
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.flush().await.unwrap();
    let in_flight = wait_for(|| async {
        let metrics = client::get(running.admin_addr, "/metrics").await;
        String::from_utf8_lossy(metrics.body()).contains("apisix_canary_webhook_requests_in_flight 1")
    })
    .await;
    assert!(in_flight, "the request never reached the server");

    running.stop_accepting();
    assert_eq!(client::get(running.admin_addr, "/ready").await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(client::get(running.admin_addr, "/live").await.status(), StatusCode::OK);
    // New connections are refused while the old one drains.
    let refused = wait_for(|| async { tokio::net::TcpStream::connect(running.addr).await.is_err() }).await;
    assert!(refused, "the port still accepts connections after the stop");

    stream.write_all(tail).await.unwrap();
    stream.flush().await.unwrap();
    let mut response = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response))
            .await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("\"patchType\":\"JSONPatch\""), "{response}");
    tokio::time::timeout(Duration::from_secs(5), running.wait()).await.expect("server stops after the drain");
}

async fn wait_for<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let certs = generate::generate(&["localhost".to_owned()]).unwrap();
    certs.write(dir.path()).unwrap();
    let busy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = ServeConfig::local(dir.path().join(generate::CERT_FILE), dir.path().join(generate::KEY_FILE));
    config.addr = busy.local_addr().unwrap();
    let e = start(&config).await.unwrap_err().to_string();
    assert!(e.starts_with(&format!("cannot listen on {}: ", config.addr)), "{e}");
}
