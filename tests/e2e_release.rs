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
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
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
    // Dropped in order: the controllers before the cluster they talk to.
    serves: Mutex<Vec<Proc>>,
    _sim: Proc,
    prometheus_url: String,
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

/// `apisix-canary serve` with the controller, as replica `identity`, its JSON log lines
/// collected into `logs`; returns once it serves, with its webhook address.
fn spawn_serve(
    dir: &Path,
    kubeconfig: &Path,
    prometheus_url: &str,
    identity: &str,
    addr: &str,
    logs: &Arc<Mutex<Vec<String>>>,
) -> (Proc, String) {
    let mut serve = Command::new(BIN)
        .args(["serve", "--addr", addr, "--admin-addr", "127.0.0.1:0", "--shutdown-delay", "0s"])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--prometheus-url", prometheus_url, "--identity", identity])
        .env("RUST_LOG", "info,kube=warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited before it listened").unwrap();
        logs.lock().unwrap().push(format!("{identity}: {line}"));
        let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        let fields = if log["fields"].is_object() { &log["fields"] } else { &log };
        if fields["message"] == "serving webhooks" {
            let admin = fields["admin_addr"].as_str().unwrap();
            std::fs::write(dir.join(format!("{identity}.admin")), admin).unwrap();
            break fields["addr"].as_str().unwrap().to_owned();
        }
    };
    let (logs, identity) = (logs.clone(), identity.to_owned());
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            logs.lock().unwrap().push(format!("{identity}: {line}"));
        }
    });
    (Proc(serve), addr)
}

impl World {
    /// Another `serve` replica (or a restart of one), added to the ones the world stops.
    fn serve(&self, identity: &str, addr: &str) -> String {
        let (proc, addr) =
            spawn_serve(self.dir.path(), &self.kubeconfig, &self.prometheus_url, identity, addr, &self.logs);
        self.serves.lock().unwrap().push(proc);
        addr
    }

    /// SIGTERM to the serve process started `index`-th; whether it exited within `within`.
    fn terminate(&self, index: usize, within: Duration) -> bool {
        let mut serves = self.serves.lock().unwrap();
        let child = &mut serves[index].0;
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `kill -9` of the serve process started `index`-th: no shutdown, no Lease release.
    fn kill(&self, index: usize) {
        let mut serves = self.serves.lock().unwrap();
        let child = &mut serves[index].0;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `GET http://<admin of identity><path>`: (status line, body).
    fn admin(&self, identity: &str, path: &str) -> (String, String) {
        let addr = std::fs::read_to_string(self.dir.path().join(format!("{identity}.admin"))).unwrap();
        let mut s = std::net::TcpStream::connect(addr.trim()).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
    }

    /// Where the webhook configurations send reviews: the first replica's address.
    fn webhook_addr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("webhook-addr")).unwrap()
    }

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

        let logs = Arc::new(Mutex::new(Vec::new()));
        let (serve, addr) = spawn_serve(dir.path(), &kubeconfig, &prometheus_url, "serve-0", "127.0.0.1:0", &logs);
        let port = addr.rsplit(':').next().unwrap().to_owned();
        std::fs::write(dir.path().join("webhook-addr"), &addr).unwrap();
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
        let w = World {
            serves: Mutex::new(vec![serve]),
            _sim: sim,
            kubectl,
            kubeconfig,
            gateway,
            prometheus_url,
            logs,
            dir,
        };
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

    /// The Events of `kind/podinfo` in namespace test: (message, count).
    fn events_of(&self, kind: &str) -> Vec<(String, String)> {
        let selector = format!("involvedObject.kind={kind},involvedObject.name=podinfo");
        let path = "jsonpath={range .items[*]}{.message}|{.count}{\"\\n\"}{end}";
        let out = self.ok(&["-n", "test", "get", "events", "--field-selector", &selector, "-o", path]);
        out.lines()
            .filter_map(|l| l.rsplit_once('|'))
            .map(|(message, count)| (message.to_owned(), count.to_owned()))
            .collect()
    }

    /// The messages of the Canary's Events.
    fn events(&self) -> Vec<String> {
        self.events_of("Canary").into_iter().map(|(m, _)| m).collect()
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
        self.traffic_to(&["/api/info"])
    }

    /// Requests to each of `paths` in turn through the gateway, until the flag is cleared.
    fn traffic_to(&self, paths: &[&str]) -> Arc<AtomicBool> {
        let on = Arc::new(AtomicBool::new(true));
        let (flag, addr) = (on.clone(), self.gateway.trim_start_matches("http://").trim_end_matches('/').to_owned());
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        std::thread::spawn(move || {
            for path in paths.iter().cycle() {
                if !flag.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
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

/// SCENARIO.md's podinfo with intervals compressed: 2 s steps of 10 up to `max`.
fn podinfo(max: u32) -> String {
    let text = std::fs::read_to_string(fixture("scenario/podinfo.yaml")).unwrap();
    text.replace("apisix-canary.dev/interval: 10s", "apisix-canary.dev/interval: 2s")
        .replace("apisix-canary.dev/threshold: \"10\"", "apisix-canary.dev/threshold: \"4\"")
        .replace("apisix-canary.dev/max-weight: \"50\"", &format!("apisix-canary.dev/max-weight: \"{max}\""))
}

impl World {
    /// The scenario's namespace, Deployment (steps of 10 up to `max`), Service and route,
    /// rolled out, with its Canary initialized.
    fn install(&self, max: u32) {
        let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
        self.ok(&["apply", "-f", &scenario("namespace.yaml")]);
        let podinfo = self.file("podinfo.yaml", &podinfo(max));
        self.ok(&["apply", "-f", &podinfo, "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
        self.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
        assert_eq!(self.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
    }

    /// Polls until the Canary's weight reaches `weight`.
    fn wait_weight(&self, weight: u32, within: Duration) -> u32 {
        let deadline = Instant::now() + within;
        loop {
            let now: u32 = self.jsonpath("canary/podinfo", "{.status.canaryWeight}").parse().unwrap_or(0);
            if now >= weight {
                return now;
            }
            assert!(Instant::now() < deadline, "weight {now} < {weight}: {:#?}", self.events());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Each step's Advance Event: (message, how often it was counted).
    fn advances(&self) -> Vec<(String, String)> {
        self.events_of("Canary").into_iter().filter(|(m, _)| m.starts_with("Advance")).collect()
    }

    /// Every step up to `max` was advanced exactly once: one Event, counted once.
    fn assert_each_step_once(&self, max: u32) {
        let mut advances = self.advances();
        advances.sort();
        let mut want: Vec<(String, String)> = (1..=max / 10)
            .map(|i| (format!("Advance podinfo.test canary weight {}", i * 10), "1".to_owned()))
            .collect();
        want.sort();
        assert_eq!(advances, want, "{:#?}", self.events());
    }
}

#[test]
fn act1_promotes_and_act2_rolls_back_at_the_threshold() {
    let w = World::start();
    // Annotation mode: the controller makes the Canary and records the stable revision.
    w.install(30);
    let traffic = w.traffic();

    // Act 1: a new image is analysed step by step and promoted.
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "the webhook paused the release");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    w.assert_each_step_once(30);
    let events = w.events();
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
    // Ready once the caches synced; the release in the controller's metrics, Flagger's way.
    let ready = w.admin("serve-0", "/ready");
    assert!(ready.0.contains("200"), "{ready:?}\n{}", w.logs.lock().unwrap().join("\n"));
    let metrics = w.admin("serve-0", "/metrics").1;
    for series in [
        r#"apisix_canary_status{name="podinfo",namespace="test"} 1"#,
        r#"apisix_canary_successes_total{name="podinfo",namespace="test",deployment_strategy="canary",analysis_status="completed"} 1"#,
        r#"apisix_canary_weight{workload="podinfo",namespace="test"} 100"#,
    ] {
        assert!(metrics.contains(series), "{series} not in:\n{metrics}");
    }
    assert!(
        metrics.contains(
            r#"apisix_canary_metric_analysis{name="podinfo",namespace="test",metric="request-success-rate"}"#
        )
    );
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

    // SIGTERM: the controller stops, the Lease is freed for the next replica, it exits.
    assert!(w.terminate(0, Duration::from_secs(15)), "serve did not exit after SIGTERM");
    let logs = w.logs.lock().unwrap().join("\n");
    assert!(logs.contains("lease released"), "{logs}");
}

#[test]
fn a_controller_killed_mid_release_resumes_at_the_weight_it_reached() {
    let w = World::start();
    w.install(50);
    let traffic = w.traffic();
    let webhook = w.serves.lock().unwrap().len() - 1;
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    let reached = w.wait_weight(20, Duration::from_secs(60));
    w.kill(webhook);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.canaryWeight}"), reached.to_string(), "nothing moves meanwhile");
    // The container restarts: same pod name, same webhook port.
    w.serve("serve-0", &w.webhook_addr());
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    w.assert_each_step_once(50);
    traffic.store(false, Ordering::Relaxed);
}

#[test]
fn the_other_replica_finishes_the_release_when_the_leader_dies() {
    let w = World::start();
    w.serve("serve-1", "127.0.0.1:0");
    w.install(50);
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(20, Duration::from_secs(60));
    w.kill(0);
    // serve-1 takes the Lease once the dead leader's expires, and goes on from there.
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(120)), "Succeeded", "{:#?}", w.events());
    w.assert_each_step_once(50);
    let logs = w.logs.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.starts_with("serve-1: ") && l.contains("Promotion completed!")),
        "serve-1 finished it"
    );
    traffic.store(false, Ordering::Relaxed);
}

#[test]
fn a_refused_release_says_why_and_starts_when_fixed_and_a_deleted_canary_stops_safely() {
    let w = World::start();
    w.install(30);
    let traffic = w.traffic();
    // The route now serves another Service: there is no rule to copy.
    let route = std::fs::read_to_string(fixture("scenario/route.yaml")).unwrap();
    let elsewhere = w.file("route-elsewhere.yaml", &route.replace("serviceName: podinfo", "serviceName: frontend"));
    w.ok(&["apply", "-f", &elsewhere]);
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.wait_phase(&["Failed"], Duration::from_secs(30)), "Failed");
    let condition = w.jsonpath("canary/podinfo", "{.status.conditions[0].message}");
    assert!(condition.starts_with("Release refused: ") && condition.contains("podinfo"), "{condition}");
    assert!(w.events().iter().any(|e| e.starts_with("Halt podinfo.test release refused: ")), "{:#?}", w.events());
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "the stable pods keep serving");
    assert!(!w.exists("deployment/podinfo-canary") && !w.exists("apisixroute/podinfo-podinfo-canary"));

    // Fixed: the release starts by itself.
    w.ok(&["apply", "-f", fixture("scenario/route.yaml").to_str().unwrap()]);
    w.wait_weight(10, Duration::from_secs(60));
    assert!(w.exists("apisixroute/podinfo-podinfo-canary"));

    // Deleting the Canary mid-release: traffic back to stable before anything is deleted,
    // a word on the Deployment, and (annotation mode) the release starts over and ends.
    w.ok(&["-n", "test", "delete", "canary", "podinfo", "--wait=false"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        let out: String = w.events_of("Deployment").into_iter().map(|(m, _)| m).collect::<Vec<_>>().join("\n");
        if out.contains("Release of podinfo.test stopped: its Canary was deleted") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(stopped.contains("its Canary was deleted"), "{stopped}");
    assert_eq!(w.wait_phase(&["Succeeded"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    assert_eq!(
        w.jsonpath("deployment/podinfo", "{.spec.template.spec.containers[0].image}"),
        "stefanprodan/podinfo:6.0.1"
    );
    traffic.store(false, Ordering::Relaxed);
}

#[test]
fn act3_a_canary_with_a_metric_template_rolls_back_on_404s() {
    let w = World::start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    w.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    // Canary mode: the Deployment names a Canary that holds the analysis.
    let deployment = podinfo(30)
        .lines()
        .filter(|l| !l.trim_start().starts_with("apisix-canary.dev/"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("  annotations:\n", "  annotations:\n    apisix-canary.dev/canary: podinfo\n");
    let canary = format!(
        r#"apiVersion: apisix-canary.dev/v1beta1
kind: MetricTemplate
metadata:
  name: not-found-percentage
  namespace: test
spec:
  provider:
    type: prometheus
    address: {prometheus}
  query: |
    sum(rate(apisix_http_status{{route=~"{{{{ namespace }}}}_{{{{ route }}}}_.+",node=~"{{{{ canary_nodes }}}}",code=~"4.."}}[{{{{ interval }}}}]))
    / sum(rate(apisix_http_status{{route=~"{{{{ namespace }}}}_{{{{ route }}}}_.+",node=~"{{{{ canary_nodes }}}}"}}[{{{{ interval }}}}])) * 100
---
apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  routeRef: {{apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}}
  progressDeadlineSeconds: 60
  analysis:
    interval: 2s
    threshold: 10
    maxWeight: 30
    stepWeight: 10
    metrics:
      - name: 404s percentage
        templateRef: {{name: not-found-percentage}}
        thresholdRange: {{max: 5}}
        interval: 1m
"#,
        prometheus = w.prometheus_url
    );
    let files = [w.file("podinfo.yaml", &deployment), w.file("canary.yaml", &canary)];
    w.ok(&["apply", "-f", &files[0], "-f", &files[1], "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
    // Half the requests are not found: the canary's 404 share is far above 5%. The
    // threshold leaves room for the first checks, before Prometheus has the canary's
    // series ("no values found"), on a loaded machine.
    let traffic = w.traffic_to(&["/api/info", "/status/404"]);
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)), "Failed", "{:#?}", w.events());
    let events = w.events();
    assert!(events.iter().any(|e| e.starts_with("Halt podinfo.test advancement 404s percentage ")), "{events:#?}");
    assert!(events.contains(&"Rolling back podinfo.test failed checks threshold reached 10".to_owned()), "{events:#?}");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true");
    traffic.store(false, Ordering::Relaxed);
}
