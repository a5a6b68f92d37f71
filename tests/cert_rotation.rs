//! Certificate rotation under load: `serve --webhook-only`, its own process, answers
//! reviews sent over a new TLS connection each (every handshake meets the pair of the
//! moment, verified against the CAs of all pairs) while its certificate files are
//! replaced 10 times. Each replacement writes the certificate first and its key after,
//! as a careless `cp` would, so the server reloads mismatched and half-written pairs
//! in between, and once a file that is no PEM at all: those must keep the old pair.
//! Not one request may fail, and every new pair must be served.

#[allow(dead_code)]
#[path = "support/binaries.rs"]
mod binaries;
#[allow(dead_code)]
#[path = "support/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "../benches/webhook/load.rs"]
mod load;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apisix_canary::tls::generate::{self, CERT_FILE, DevCerts, KEY_FILE};
use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const UID: &str = "a1f0c3e2-0001-4d6b-9f00-000000000001";
const ROTATIONS: usize = 10;

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap()
}

/// The leaf a handshake with `addr` is served now.
async fn served_leaf(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Option<CertificateDer<'static>> {
    let tls = client::connect(connector, addr).await.ok()?;
    tls.get_ref().1.peer_certificates()?.first().map(|c| c.clone().into_owned())
}

fn leaf_of(pair: &DevCerts) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes()).next().unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_review_fails_while_the_certificate_files_are_replaced_ten_times() {
    let dir = tempfile::tempdir().unwrap();
    let pairs: Vec<DevCerts> =
        (0..=ROTATIONS).map(|_| generate::generate(&["localhost".to_owned()]).unwrap()).collect();
    pairs[0].write(dir.path()).unwrap();
    let cas: String = pairs.iter().map(|p| p.ca_pem.as_str()).collect();
    let (cert_file, key_file) = (dir.path().join(CERT_FILE), dir.path().join(KEY_FILE));

    let (addr, admin) = (free_port(), free_port());
    let _serve = binaries::Proc(
        Command::new(env!("CARGO_BIN_EXE_apisix-canary"))
            .args(["serve", "--webhook-only", "--addr", &addr.to_string(), "--admin-addr", &admin.to_string()])
            .args(["--tls-reload-interval", "50ms"])
            .arg("--tls-cert")
            .arg(&cert_file)
            .arg("--tls-key")
            .arg(&key_file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let connector = client::connector(&cas, &[b"http/1.1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_leaf(&connector, addr).await.is_none() {
        assert!(Instant::now() < deadline, "serve never answered a handshake");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let body = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/set-image.json"));
    let load = load::Load {
        addr,
        path: "/mutate/deployments".to_owned(),
        body: Bytes::from(body.unwrap()),
        uid: UID.to_owned(),
        concurrency: 4,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(3 * ROTATIONS as u64 / 2),
        fresh: true,
    };
    let load_connector = load::connector(cas.as_bytes());
    let running = tokio::spawn(async move { load::run(&load, &load_connector).await });

    for (i, pair) in pairs.iter().enumerate().skip(1) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The certificate alone: with the old key it is a pair that does not match.
        std::fs::write(&cert_file, &pair.cert_pem).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        if i == ROTATIONS / 2 {
            std::fs::write(&key_file, "not a key").unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        std::fs::write(&key_file, &pair.key_pem).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while served_leaf(&connector, addr).await != Some(leaf_of(pair)) {
            assert!(Instant::now() < deadline, "pair {i} was never served");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let report = running.await.unwrap();
    assert_eq!(report.failures, 0, "first failure: {:?}", report.first_failure);
    assert!(report.requests() > 100, "only {} reviews were answered", report.requests());
    let metrics = client::get(admin, "/metrics").await;
    let metrics = String::from_utf8_lossy(metrics.body());
    let count = |result: &str| -> f64 {
        let series = format!("apisix_canary_certificate_reloads_total{{result=\"{result}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok()).unwrap_or(0.0)
    };
    assert_eq!(count("swapped"), ROTATIONS as f64, "each new pair swapped in once:\n{metrics}");
    assert!(count("error") >= ROTATIONS as f64, "each mismatched pair refused:\n{metrics}");
    eprintln!("{} reviews over fresh TLS connections, {} pairs, 0 failed", report.requests(), ROTATIONS);
}
