//! The smoke version of `cargo bench --bench webhook`, so the benchmark never rots: the
//! same load driver, about a second at concurrency 1 and 4, against the bare reference
//! server and the real `apisix-canary serve --webhook-only`. Asserts that every request
//! got a well-formed AdmissionReview echoing its uid, never a timing.

#[path = "../benches/webhook/bare.rs"]
mod bare;
// The bench's reporting (throughput, quantiles) is not needed here.
#[allow(dead_code)]
#[path = "../benches/webhook/load.rs"]
mod load;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apisix_canary::tls::generate;
use bytes::Bytes;

const UID: &str = "a1f0c3e2-0001-4d6b-9f00-000000000001";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap()
}

fn load(addr: SocketAddr, concurrency: usize, duration: Duration) -> load::Load {
    let body = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/set-image.json"));
    load::Load {
        addr,
        path: "/mutate/deployments".to_owned(),
        body: Bytes::from(body.unwrap()),
        uid: UID.to_owned(),
        concurrency,
        warmup: Duration::from_millis(100),
        duration,
        fresh: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_servers_answer_every_request_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let certs = generate::generate(&["localhost".to_owned()]).unwrap();
    certs.write(dir.path()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_addr = listener.local_addr().unwrap();
    let acceptor = bare::acceptor(certs.cert_pem.as_bytes(), certs.key_pem.as_bytes());
    tokio::spawn(bare::serve(listener, acceptor));

    let (serve_addr, admin) = (free_port(), free_port());
    let _serve = Killed(
        Command::new(env!("CARGO_BIN_EXE_apisix-canary"))
            .args(["serve", "--webhook-only", "--addr", &serve_addr.to_string(), "--admin-addr", &admin.to_string()])
            .arg("--tls-cert")
            .arg(dir.path().join(generate::CERT_FILE))
            .arg("--tls-key")
            .arg(dir.path().join(generate::KEY_FILE))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let connector = load::connector(certs.ca_pem.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = load::run(&load(serve_addr, 1, Duration::from_millis(10)), &connector).await;
        if probe.failures == 0 && probe.requests() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "serve never answered: {:?}", probe.first_failure);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (name, addr) in [("bare", bare_addr), ("serve", serve_addr)] {
        for concurrency in [1, 4] {
            let report = load::run(&load(addr, concurrency, Duration::from_millis(500)), &connector).await;
            assert_eq!(report.failures, 0, "{name} at concurrency {concurrency}: {:?}", report.first_failure);
            assert!(
                report.requests() >= concurrency,
                "{name} at concurrency {concurrency}: {} requests",
                report.requests()
            );
        }
    }
}

#[test]
fn the_check_rejects_what_kube_apiserver_would_not_accept() {
    let canned = bare::CANNED.as_bytes();
    assert_eq!(load::check(canned, UID), Ok(()));
    assert!(load::check(canned, "another-uid").is_err(), "a uid that is not echoed");
    assert!(load::check(br#"{"kind":"Status","apiVersion":"v1"}"#, UID).is_err(), "not a review");
    let v1beta1 = String::from_utf8_lossy(canned).replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
    assert!(load::check(v1beta1.as_bytes(), UID).is_err(), "another version");
}
