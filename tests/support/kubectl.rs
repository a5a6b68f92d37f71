//! The real kubectl against `apisix-canary sim --with-webhook` (which runs a real
//! Prometheus): the harness of the tests that check the sim answers as a cluster does.

#![allow(dead_code)] // Each test file uses part of it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::binaries;

pub const BIN: &str = env!("CARGO_BIN_EXE_apisix-canary");

pub struct Cluster {
    pub child: Child,
    /// `http://127.0.0.1:PORT/` of the sim's load tester.
    pub loadtester: String,
    /// `http://127.0.0.1:PORT` of its Prometheus.
    pub prometheus: String,
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    /// SIGTERM, so the sim stops its Prometheus and webhook server as a user's Ctrl-C
    /// would; SIGKILL only if it does not exit in time.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `apisix-canary sim --with-webhook` (which runs a real Prometheus) for the real kubectl.
pub fn start() -> Cluster {
    let kubectl = binaries::require_binary("kubectl");
    let prometheus = binaries::require_binary("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("sim.kubeconfig");
    let mut child = Command::new(BIN)
        .args(["sim", "--with-webhook", "--log-format", "text", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .arg("--prometheus-bin")
        .arg(&prometheus)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut loadtester, mut prometheus) = (String::new(), String::new());
    loop {
        let line = lines.next().expect("sim exited before it was ready").unwrap();
        if let Some(url) = line.strip_prefix("loadtester:") {
            loadtester = url.trim().to_owned();
        }
        if let Some(url) = line.strip_prefix("prometheus:") {
            prometheus = url.trim().to_owned();
        }
        if line.starts_with("export KUBECONFIG=") {
            break;
        }
    }
    Cluster { child, loadtester, prometheus, kubectl, kubeconfig, _dir: dir }
}

pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

impl Cluster {
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl).args(args).env("KUBECONFIG", &self.kubeconfig).output().unwrap()
    }

    /// A JSONPath of `kind/name` in namespace `test`.
    pub fn jsonpath(&self, object: &str, path: &str) -> String {
        let (kind, name) = object.split_once('/').unwrap();
        self.ok(&["-n", "test", "get", kind, name, "--show-managed-fields", "-o", &format!("jsonpath={path}")]).0
    }

    /// Runs kubectl, asserts success, returns (stdout, stderr).
    pub fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.kubectl(args);
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        (stdout, stderr)
    }
}

/// A file in a temp dir that lives as long as the value.
pub struct TempFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TempFile {
    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

pub fn dir_file(name: &str, text: &str) -> TempFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    TempFile { _dir: dir, path }
}

pub fn header(table: &str) -> Vec<String> {
    table.lines().next().unwrap_or_default().split_whitespace().map(str::to_owned).collect()
}
