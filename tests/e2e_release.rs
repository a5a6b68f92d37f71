//! SCENARIO.md end to end, as a user meets it: `apisix-canary sim` (with its real
//! Prometheus) as the cluster, `apisix-canary serve` as its own process registered with
//! `manifests --url` and `kubectl apply`, the real kubectl for the user's steps, and
//! traffic through the sim's gateway. Intervals are compressed to 2 s.

#[path = "support/binaries.rs"]
mod binaries;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_apisix-canary");
const HOST: &str = "app.example.com";

/// A child process stopped with SIGTERM (SIGKILL if it lingers) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..150 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    // Dropped in order: the controller before the cluster it talks to.
    _serve: Proc,
    _sim: Proc,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    gateway: String,
    logs: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

/// Reads `prefix<value>` lines from a child's stdout until `last` is seen.
fn read_until(lines: &mut impl Iterator<Item = std::io::Result<String>>, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let done = line.starts_with(last);
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!("the process exited before printing {last:?}: {seen:?}");
}

fn value_of<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {prefix} in {lines:?}"))
}

impl World {
    fn start() -> Self {
        let kubectl = binaries::require_binary("kubectl");
        let prometheus = binaries::require_binary("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("sim.kubeconfig");

        let mut sim = Command::new(BIN)
            .args(["sim", "--log-format", "text", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .arg("--prometheus-bin")
            .arg(&prometheus)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(sim.stdout.take().unwrap()).lines();
        let printed = read_until(&mut out, "export KUBECONFIG=");
        let gateway = value_of(&printed, "gateway:").to_owned();
        let prometheus_url = value_of(&printed, "prometheus:").to_owned();
        let sim = Proc(sim);
        // Our namespace, where the leader-election Lease lives, exists before we start.
        let ns = dir.path().join("apisix-canary-ns.yaml");
        std::fs::write(&ns, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apisix-canary\n").unwrap();
        let created = Command::new(&kubectl).arg("apply").arg("-f").arg(&ns).env("KUBECONFIG", &kubeconfig).output();
        assert!(created.unwrap().status.success());

        let certs = Command::new(BIN)
            .args(["certs", "--dns-name", "localhost", "--out-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(certs.success());

        let mut serve = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--shutdown-delay", "0s"])
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--prometheus-url", &prometheus_url, "--identity", "serve-0"])
            .env("RUST_LOG", "info,kube=warn")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("serve exited before it listened").unwrap();
            logs.lock().unwrap().push(line.clone());
            let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if log["fields"]["message"] == "serving webhooks" || log["message"] == "serving webhooks" {
                let fields = if log["fields"].is_object() { &log["fields"] } else { &log };
                break fields["addr"].as_str().unwrap().to_owned();
            }
        };
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let port = addr.rsplit(':').next().unwrap();
        let manifests = dir.path().join("manifests");
        let written = Command::new(BIN)
            .args(["manifests", "--url", &format!("https://localhost:{port}"), "--ca-file"])
            .arg(dir.path().join("ca.crt"))
            .arg("--out-dir")
            .arg(&manifests)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(written.success());
        let w = World { _serve: Proc(serve), _sim: sim, kubectl, kubeconfig, gateway, logs, dir };
        w.ok(&["apply", "-f", manifests.to_str().unwrap()]);
        w
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.kubectl).args(args).env("KUBECONFIG", &self.kubeconfig).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout.into_owned()
    }

    fn jsonpath(&self, object: &str, path: &str) -> String {
        let out = self.kubectl(&["-n", "test", "get", object, "-o", &format!("jsonpath={path}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn exists(&self, object: &str) -> bool {
        self.kubectl(&["-n", "test", "get", object]).status.success()
    }

    fn events(&self) -> Vec<String> {
        let out = self.ok(&[
            "-n",
            "test",
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Canary,involvedObject.name=podinfo",
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ]);
        out.lines().map(str::to_owned).collect()
    }

    /// Polls the Canary's phase until it is one of `phases`.
    fn wait_phase(&self, phases: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let phase = self.jsonpath("canary/podinfo", "{.status.phase}");
            if phases.contains(&phase.as_str()) {
                return phase;
            }
            if Instant::now() > deadline {
                let logs = self.logs.lock().unwrap().join("\n");
                panic!(
                    "phase {phase:?}, not {phases:?}, after {within:?}\nevents: {:#?}\nserve logs:\n{logs}",
                    self.events()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Requests through the gateway, ~40 a second, until the returned flag is cleared.
    fn traffic(&self) -> Arc<AtomicBool> {
        let on = Arc::new(AtomicBool::new(true));
        let (flag, addr) = (on.clone(), self.gateway.trim_start_matches("http://").trim_end_matches('/').to_owned());
        std::thread::spawn(move || {
            while flag.load(Ordering::Relaxed) {
                if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                    let _ = write!(s, "GET /api/info HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
                    let _ = s.read_to_end(&mut Vec::new());
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        on
    }

    fn pods(&self) -> Vec<String> {
        let out =
            self.ok(&["-n", "test", "get", "pods", "-l", "app=podinfo", "-o", "jsonpath={.items[*].metadata.name}"]);
        let mut names: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
        names.sort();
        names
    }
}

/// SCENARIO.md's podinfo with intervals compressed: 2 s steps of 10 up to 30.
fn podinfo() -> String {
    let text = std::fs::read_to_string(fixture("scenario/podinfo.yaml")).unwrap();
    text.replace("apisix-canary.dev/interval: 10s", "apisix-canary.dev/interval: 2s")
        .replace("apisix-canary.dev/threshold: \"10\"", "apisix-canary.dev/threshold: \"4\"")
        .replace("apisix-canary.dev/max-weight: \"50\"", "apisix-canary.dev/max-weight: \"30\"")
}

#[test]
fn act1_promotes_and_act2_rolls_back_at_the_threshold() {
    let w = World::start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    w.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    let podinfo = w.file("podinfo.yaml", &podinfo());
    w.ok(&["apply", "-f", &podinfo, "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    // Annotation mode: the controller makes the Canary and records the stable revision.
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
    let traffic = w.traffic();

    // Act 1: a new image is analysed step by step and promoted.
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "the webhook paused the release");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    let events = w.events();
    for weight in [10, 20, 30] {
        let advance = format!("Advance podinfo.test canary weight {weight}");
        assert_eq!(events.iter().filter(|e| **e == advance).count(), 1, "{advance}: {events:#?}");
    }
    assert!(events.contains(&"New revision detected! Scaling up podinfo.test".to_owned()), "{events:#?}");
    assert!(events.contains(&"Promotion completed! Scaling down podinfo.test".to_owned()), "{events:#?}");
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(
        w.jsonpath("deployment/podinfo", "{.spec.template.spec.containers[0].image}"),
        "stefanprodan/podinfo:6.0.1"
    );
    assert_ne!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.metadata.annotations.apisix-canary\\.dev/stable-revision}"), "");
    assert!(!w.exists("deployment/podinfo-canary") && !w.exists("service/podinfo-canary"), "canary objects gone");
    assert!(!w.exists("apisixroute/podinfo-podinfo-canary"), "generated route gone");
    let condition = w.jsonpath("canary/podinfo", "{.status.conditions[?(@.type==\"Promoted\")].message}");
    assert_eq!(condition, "Canary analysis completed successfully, promotion finished.");
    let table = w.ok(&["get", "canaries", "-A"]);
    assert!(table.lines().nth(1).is_some_and(|l| l.contains("podinfo") && l.contains("Succeeded")), "{table}");

    // Act 2: a canary that fails half its requests is rolled back; the stable pods stay.
    let stable = w.pods();
    w.ok(&["-n", "test", "set", "env", "deployment/podinfo", "SIM_ERROR_RATE=60"]);
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)), "Failed", "{:#?}", w.events());
    let events = w.events();
    assert!(events.iter().any(|e| e.starts_with("Halt podinfo.test advancement success rate ")), "{events:#?}");
    assert!(events.contains(&"Rolling back podinfo.test failed checks threshold reached 4".to_owned()), "{events:#?}");
    assert!(events.contains(&"Canary failed! Scaling down podinfo.test".to_owned()), "{events:#?}");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "paused on the failed template");
    let failed = w.jsonpath("deployment/podinfo", "{.metadata.annotations.apisix-canary\\.dev/failed-revision}");
    assert_eq!(failed.len(), 10, "the failed revision is remembered");
    assert!(!w.exists("deployment/podinfo-canary") && !w.exists("apisixroute/podinfo-podinfo-canary"));
    // The generated objects may still be terminating; the stable pods are the same pods.
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.pods() != stable && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(w.pods(), stable, "the stable pods are untouched by the release and its rollback");

    // Writing the failed template again starts no release.
    let before = w.events().len();
    w.ok(&["-n", "test", "label", "deployment/podinfo", "touched=again"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.phase}"), "Failed");
    assert!(!w.events()[before..].iter().any(|e| e.starts_with("New revision detected")), "{:#?}", w.events());
    traffic.store(false, Ordering::Relaxed);
}
