//! The selfSigned certificate mode against the simulated cluster, with `serve` as its
//! own processes: the Secret is created and the caBundles written, a second replica
//! serves the same Secret, and certificates that live seconds are renewed (the CA
//! rotated too) while Canary writes, which the sim sends to our webhook trusting the
//! caBundle of the moment (failurePolicy Fail), go on: not one of them fails.

#[path = "support/e2e.rs"]
mod e2e;

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use e2e::{World, fixture};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

const SECRET: &str = "apisix-canary-tls";

/// A serving certificate of 8 s (renewed when 2.7 s are left) under a CA of 24 s: within
/// the 26 s of load, several renewals and one CA rotation (at 16 s) with its two grace
/// periods (3.5 s each).
fn self_signed_flags() -> Vec<String> {
    [
        "--self-signed-secret",
        SECRET,
        "--cert-dns-name",
        "localhost",
        "--tls-reload-interval",
        "500ms",
        "--cert-validity",
        "8s",
        "--ca-validity",
        "24s",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn secret(w: &World) -> Value {
    let out = w.ok(&["-n", "apisix-canary", "get", "secret", SECRET, "-o", "json"]);
    serde_json::from_str(&out).unwrap()
}

fn secret_key(secret: &Value, key: &str) -> String {
    let b64 = secret["data"][key].as_str().unwrap_or_default();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

/// Every caBundle the API server would use for us: both webhook configurations' webhooks
/// and the Canary CRD's conversion, decoded.
fn bundles(w: &World) -> Vec<String> {
    let mut found = Vec::new();
    for kind in ["mutatingwebhookconfiguration", "validatingwebhookconfiguration"] {
        let out = w.ok(&[
            "get",
            kind,
            "apisix-canary",
            "-o",
            "jsonpath={range .webhooks[*]}{.clientConfig.caBundle}{\"\\n\"}{end}",
        ]);
        found.extend(out.lines().map(str::to_owned));
    }
    let path = "jsonpath={.spec.conversion.webhook.clientConfig.caBundle}";
    found.push(w.ok(&["get", "crd", "canaries.apisix-canary.dev", "-o", path]));
    found
        .iter()
        .map(|b64| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap_or_default()).unwrap()
        })
        .collect()
}

/// A TLS handshake with `addr` as `localhost`, trusting `ca_pem` only.
fn handshake(addr: &str, ca_pem: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn self_signed_certificates_are_created_shared_and_renewed_without_a_failed_review() {
    let w = World::cluster();
    let flags = self_signed_flags();
    let first = w.serve_with("serve-0", "127.0.0.1:0", &flags);
    // The webhook configurations and CRDs arrive after the server, without a caBundle,
    // as `helm install` orders them: the leader writes it when they appear.
    w.install_manifests(&first, None);

    let created = secret(&w);
    assert_eq!(created["type"], "kubernetes.io/tls");
    for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(secret_key(&created, key).contains("-----BEGIN"), "Secret key {key}: {created}");
    }
    wait_for("the caBundles hold the Secret's CA", Duration::from_secs(10), || {
        let ca = secret_key(&secret(&w), "ca.crt");
        bundles(&w).iter().all(|b| *b == ca)
    });
    assert!(handshake(&first, &secret_key(&secret(&w), "ca.crt")).is_ok());

    // A second replica serves the Secret the first one made.
    let uid = created["metadata"]["uid"].clone();
    let second = w.serve_with("serve-1", "127.0.0.1:0", &flags);
    assert_eq!(secret(&w)["metadata"]["uid"], uid, "the second replica made a Secret of its own");
    handshake(&second, &bundles(&w)[0]).expect("the second replica serves a certificate the caBundle trusts");
    let written_by_second = w
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("serve-1:") && l.contains("self-signed certificates written"));
    assert!(!written_by_second, "the second replica, not the leader, wrote the Secret");

    // Load: Canary writes through the sim (our validating webhook, failurePolicy Fail),
    // and handshakes with both replicas trusting the caBundle the sim holds.
    w.ok(&["apply", "-f", fixture("scenario/namespace.yaml").to_str().unwrap()]);
    w.ok(&["apply", "-f", fixture("canaries/scenario.yaml").to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let (writes, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let handshakes = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for writer in 0..3 {
            let (w, stop, writes, failures) = (&w, stop.clone(), writes.clone(), failures.clone());
            scope.spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let value = format!("w{writer}-{round}");
                    let out = w.kubectl(&[
                        "-n",
                        "test",
                        "annotate",
                        "canary",
                        "podinfo",
                        &format!("load-{writer}={value}"),
                        "--overwrite",
                    ]);
                    if out.status.success() {
                        writes.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.lock().unwrap().push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                }
            });
        }
        {
            let (w, stop, failures, handshakes) = (&w, stop.clone(), failures.clone(), handshakes.clone());
            let replicas = [first.clone(), second.clone()];
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let bundle = bundles(w).swap_remove(0);
                    for addr in &replicas {
                        match handshake(addr, &bundle) {
                            Ok(()) => handshakes.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                failures.lock().unwrap().push(format!("handshake with {addr}: {e}"));
                                0
                            }
                        };
                    }
                }
            });
        }
        // Watch the Secret change meanwhile.
        let (mut leaves, mut cas) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
        let deadline = Instant::now() + Duration::from_secs(26);
        while Instant::now() < deadline {
            let s = secret(&w);
            leaves.insert(secret_key(&s, "tls.crt"));
            cas.insert(secret_key(&s, "ca.crt"));
            std::thread::sleep(Duration::from_millis(300));
        }
        stop.store(true, Ordering::Relaxed);
        // 8 s certificates over 26 s: renewed at least three times; the CA rotated once:
        // [old], [new, old], [new] are three bundles.
        assert!(leaves.len() >= 4, "{} serving certificates seen", leaves.len());
        assert!(cas.len() >= 3, "{} CA bundles seen: the CA never rotated", cas.len());
    });
    let failures = failures.lock().unwrap();
    let (writes, handshakes) = (writes.load(Ordering::Relaxed), handshakes.load(Ordering::Relaxed));
    assert!(
        failures.is_empty(),
        "{} of {} writes and {handshakes} handshakes failed: {failures:#?}",
        failures.len(),
        writes
    );
    assert!(
        writes >= 30 && handshakes >= 20,
        "too little load to prove anything: {writes} writes, {handshakes} handshakes"
    );
    eprintln!("{writes} Canary writes and {handshakes} handshakes during the rotation, none failed");
    let calls = w.assert_rbac_covers_serve(Some(SECRET));
    eprintln!("{calls} calls of serve, each allowed by the chart's RBAC of the selfSigned mode");
}

use std::sync::Mutex;
