//! The binary as a user runs it: `certs`, `serve --webhook-only` until SIGTERM, `revision`.

#[path = "support/client.rs"]
mod client;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use http::StatusCode;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_apisix-canary");

fn fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn certs_writes_a_ca_a_serving_pair_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["certs", "--out-dir"])
        .arg(dir.path())
        .args(["--dns-name", "apisix-canary.apisix-canary.svc", "--dns-name", "localhost"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let bundle = String::from_utf8(out.stdout).unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(bundle.trim()).unwrap(), ca);
    assert!(std::fs::read_to_string(dir.path().join("tls.crt")).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is private");
    }
    let missing = Command::new(BIN).args(["certs", "--out-dir"]).arg(dir.path()).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--dns-name"));
}

/// A child process killed when the test ends, passed or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_answers_then_drains_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(BIN)
        .args(["certs", "--dns-name", "localhost", "--out-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = Reaped(
        Command::new(BIN)
            .args(["serve", "--webhook-only", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(["--shutdown-delay", "1s", "--tls-cert"])
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let started: Value = loop {
        let line = lines.next().expect("serve exited before it listened").unwrap();
        let log: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if log["message"] == "serving webhooks" {
            break log;
        }
    };
    let addr: SocketAddr = started["addr"].as_str().unwrap().parse().unwrap();
    let admin: SocketAddr = started["admin_addr"].as_str().unwrap().parse().unwrap();
    assert_eq!(client::get(admin, "/ready").await.status(), StatusCode::OK);

    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    let body = std::fs::read(fixtures().join("admission/set-image.json")).unwrap();
    let stream = client::connect(&client::connector(&ca, &[b"h2"]), addr).await.unwrap();
    let res = client::send(stream, client::post("https://localhost/mutate/deployments", body)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(answer["response"]["patchType"], "JSONPatch");

    let killed = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    // During the shutdown delay: not ready, yet still answering reviews.
    let mut ready = StatusCode::OK;
    for _ in 0..50 {
        ready = client::get(admin, "/ready").await.status();
        if ready != StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
    let body = std::fs::read(fixtures().join("admission/set-image.json")).unwrap();
    let stream = client::connect(&client::connector(&ca, &[b"http/1.1"]), addr).await.unwrap();
    let res = client::send(stream, client::post("https://localhost/mutate/deployments", body)).await;
    assert_eq!(res.status(), StatusCode::OK, "still serving while endpoints catch up");
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "serve did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("admission review") && l.contains("a1f0c3e2-0001")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("server stopped")), "{rest:?}");
}

#[test]
fn serve_without_a_cluster_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Command::new(BIN).args(["certs", "--dns-name", "localhost", "--out-dir"]).arg(dir.path()).output();
    assert!(certs.unwrap().status.success());
    let out = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--tls-cert"])
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no --kubeconfig, no KUBECONFIG and not in a cluster"), "{stderr}");
}

#[test]
fn a_bad_resolve_entry_names_the_flag() {
    let serve = || {
        let mut c = Command::new(BIN);
        c.args(["serve", "--webhook-only", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"]);
        c.args(["--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"]);
        c.env_remove("APISIX_CANARY_RESOLVE");
        c
    };
    let out = serve().args(["--resolve", "hooks.test=127.0.0.1:9000", "--resolve", "prometheus.monitoring"]).output();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--resolve <HOST=IP:PORT>"), "{stderr}");
    assert!(stderr.contains("\"prometheus.monitoring\" is not HOST=IP:PORT"), "{stderr}");
    // The variable is a comma-separated list, each entry checked.
    let out = serve().env("APISIX_CANARY_RESOLVE", "hooks.test=127.0.0.1:9000,hooks.prod=localhost:80").output();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--resolve <HOST=IP:PORT>"), "{stderr}");
    assert!(stderr.contains("\"localhost:80\" is not IP:PORT"), "{stderr}");
    // Good entries pass the parser: the next failure is the missing certificate.
    let out = serve().env("APISIX_CANARY_RESOLVE", "hooks.test=127.0.0.1:9000,hooks.prod=[::1]:80").output();
    let stderr = String::from_utf8_lossy(&out.as_ref().unwrap().stderr).into_owned();
    assert!(stderr.contains("cannot read /nonexistent/tls.crt"), "{stderr}");
}

#[test]
fn serve_with_a_missing_certificate_fails_clearly() {
    let out = Command::new(BIN)
        .args(["serve", "--webhook-only", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read /nonexistent/tls.crt"), "{stderr}");
}

#[test]
fn revision_prints_the_lock_value_of_a_manifest() {
    let review: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("admission/set-image.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("podinfo.json");
    std::fs::write(&manifest, review["request"]["object"].to_string()).unwrap();
    let out = Command::new(BIN).arg("revision").arg(&manifest).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "89a79df4a9\tpodinfo\n");
}
