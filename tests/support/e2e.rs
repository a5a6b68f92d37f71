//! The end-to-end world: `apisix-canary sim` (with its real Prometheus) as the
//! cluster, `apisix-canary serve` as its own process registered with `manifests --url`
//! and `kubectl apply`, the real kubectl for the user's steps, and traffic through the
//! sim's gateway. Shared by the e2e test files.

#![allow(dead_code)]

#[path = "binaries.rs"]
pub mod binaries;
#[path = "observer.rs"]
pub mod observer;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_apisix-canary");
pub const HOST: &str = "app.example.com";

pub use binaries::Proc;

/// Whether worlds start the invariant observer: every test does; benchmarks turn it
/// off, since its watches would load the cluster they measure.
pub static OBSERVE: AtomicBool = AtomicBool::new(true);

pub struct World {
    // Dropped in order: the controllers before the cluster they talk to.
    pub serves: Mutex<Vec<Proc>>,
    pub _sim: Proc,
    pub prometheus_url: String,
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
    pub gateway: String,
    /// The sim's load tester, `http://127.0.0.1:PORT/`: `flagger-loadtester.test` in the
    /// cluster.
    pub loadtester: String,
    pub logs: Arc<Mutex<Vec<String>>>,
    /// Watches the whole test for broken invariants; a test that broke one fails.
    pub observer: Option<observer::Observer>,
    pub dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        let Some(observer) = &self.observer else { return };
        observer.stop();
        if std::thread::panicking() {
            return;
        }
        let mut broken = observer.violations();
        let audit = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        broken.extend(observer::one_writer(&audit));
        if !broken.is_empty() {
            let logs = self.logs.lock().map(|l| l.join("\n")).unwrap_or_default();
            panic!("invariants broken during the test:\n{}\n\nserve's log:\n{logs}", broken.join("\n"));
        }
    }
}

/// Clears its flag when dropped: a helper thread told to stop even when the test's
/// assertion panics first (or a thread scope would wait for it forever).
#[allow(dead_code)]
pub struct Stop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

/// Reads `prefix<value>` lines from a child's stdout until `last` is seen.
pub fn read_until(lines: &mut impl Iterator<Item = std::io::Result<String>>, last: &str) -> Vec<String> {
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

pub fn value_of<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {prefix} in {lines:?}"))
}

/// `apisix-canary serve` with the controller, as replica `identity`, its JSON log lines
/// collected into `logs`; returns once it serves, with its webhook address. It serves
/// the certificate files of `dir`.
pub fn spawn_serve(
    dir: &Path,
    kubeconfig: &Path,
    prometheus_url: &str,
    identity: &str,
    addr: &str,
    logs: &Arc<Mutex<Vec<String>>>,
) -> (Proc, String) {
    let files = [
        "--tls-cert".to_owned(),
        dir.join("tls.crt").display().to_string(),
        "--tls-key".to_owned(),
        dir.join("tls.key").display().to_string(),
    ];
    spawn_serve_with(dir, kubeconfig, prometheus_url, identity, addr, logs, &files)
}

/// [`spawn_serve`] with its certificate (and any other) flags given.
pub fn spawn_serve_with(
    dir: &Path,
    kubeconfig: &Path,
    prometheus_url: &str,
    identity: &str,
    addr: &str,
    logs: &Arc<Mutex<Vec<String>>>,
    flags: &[String],
) -> (Proc, String) {
    // Where the sim's cluster Service names are reached from outside the cluster.
    let resolve = std::fs::read_to_string(dir.join("resolve")).unwrap_or_default();
    let mut serve = Command::new(BIN)
        .args(["serve", "--addr", addr, "--admin-addr", "127.0.0.1:0", "--shutdown-delay", "0s"])
        .env("APISIX_CANARY_RESOLVE", resolve.trim())
        .args(flags)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--prometheus-url", prometheus_url, "--identity", identity])
        // `APISIX_CANARY_E2E_LOG` (a RUST_LOG filter) looks closer, e.g. at the controller's timings.
        .env("RUST_LOG", std::env::var("APISIX_CANARY_E2E_LOG").unwrap_or_else(|_| "info,kube=warn".to_owned()))
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
    pub fn serve(&self, identity: &str, addr: &str) -> String {
        let (proc, addr) =
            spawn_serve(self.dir.path(), &self.kubeconfig, &self.prometheus_url, identity, addr, &self.logs);
        self.serves.lock().unwrap().push(proc);
        addr
    }

    /// SIGTERM to the serve process started `index`-th; whether it exited within `within`.
    pub fn terminate(&self, index: usize, within: Duration) -> bool {
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
    pub fn kill(&self, index: usize) {
        let mut serves = self.serves.lock().unwrap();
        let child = &mut serves[index].0;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `GET http://<admin of identity><path>`: (status line, body).
    pub fn admin(&self, identity: &str, path: &str) -> (String, String) {
        let addr = std::fs::read_to_string(self.dir.path().join(format!("{identity}.admin"))).unwrap();
        let mut s = std::net::TcpStream::connect(addr.trim()).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
    }

    /// Where the webhook configurations send reviews: the first replica's address.
    pub fn webhook_addr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("webhook-addr")).unwrap()
    }

    /// Every call `serve` made to the sim (its audit log, by User-Agent) is allowed by the
    /// RBAC the chart installs (`apisix_canary::rbac`), the self-signed rows included when
    /// `self_signed` names its Secret. Returns how many calls were checked.
    pub fn assert_rbac_covers_serve(&self, self_signed: Option<&str>) -> usize {
        use apisix_canary::rbac::{self, Call};
        let log = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap();
        let named = |placeholder: &str| match placeholder {
            rbac::WEBHOOK_CONFIGURATION => "apisix-canary".to_owned(),
            rbac::SELF_SIGNED_SECRET => self_signed.unwrap_or_default().to_owned(),
            other => other.to_owned(),
        };
        let mut denied = std::collections::BTreeSet::new();
        let mut checked = 0;
        for line in log.lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            if !event["userAgent"].as_str().unwrap_or_default().contains("(serve)") {
                continue;
            }
            let o = &event["objectRef"];
            let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
            let resource = match text(&o["subresource"]) {
                Some(sub) => format!("{}/{sub}", o["resource"].as_str().unwrap()),
                None => text(&o["resource"]).unwrap(),
            };
            let call = Call {
                verb: text(&event["verb"]).unwrap(),
                group: text(&o["apiGroup"]).unwrap_or_default(),
                resource,
                namespace: text(&o["namespace"]),
                name: text(&o["name"]),
            };
            checked += 1;
            if !rbac::allows(&call, "apisix-canary", self_signed.is_some(), named) {
                denied.insert(format!("{call:?}"));
            }
        }
        assert!(denied.is_empty(), "calls of serve the chart's RBAC would deny: {denied:#?}");
        assert!(checked > 0, "no call of serve in the audit log");
        checked
    }

    /// [`spawn_serve_with`] for this world: a replica with its own certificate flags.
    pub fn serve_with(&self, identity: &str, addr: &str, flags: &[String]) -> String {
        let (proc, addr) = spawn_serve_with(
            self.dir.path(),
            &self.kubeconfig,
            &self.prometheus_url,
            identity,
            addr,
            &self.logs,
            flags,
        );
        self.serves.lock().unwrap().push(proc);
        addr
    }

    /// The cluster alone: the sim, its Prometheus, our namespace; no `serve` yet and
    /// nothing of ours installed.
    pub fn cluster() -> Self {
        let kubectl = binaries::require_binary("kubectl");
        let prometheus = binaries::require_binary("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("sim.kubeconfig");

        let mut sim = Command::new(BIN)
            .args(["sim", "--log-format", "text", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .arg("--audit-log")
            .arg(dir.path().join("audit.log"))
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
        let loadtester = value_of(&printed, "loadtester:").to_owned();
        let port = loadtester.trim_end_matches('/').rsplit(':').next().unwrap();
        std::fs::write(dir.path().join("resolve"), format!("flagger-loadtester.test=127.0.0.1:{port}")).unwrap();
        let sim = Proc(sim);
        // Our namespace, where the leader-election Lease lives, exists before we start.
        let ns = dir.path().join("apisix-canary-ns.yaml");
        std::fs::write(&ns, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apisix-canary\n").unwrap();
        let created = Command::new(&kubectl).arg("apply").arg("-f").arg(&ns).env("KUBECONFIG", &kubeconfig).output();
        assert!(created.unwrap().status.success());
        let logs = Arc::new(Mutex::new(Vec::new()));
        let observer = OBSERVE.load(Ordering::Relaxed).then(|| observer::Observer::start(&kubeconfig));
        World {
            serves: Mutex::new(Vec::new()),
            _sim: sim,
            kubectl,
            kubeconfig,
            gateway,
            loadtester,
            prometheus_url,
            logs,
            observer,
            dir,
        }
    }

    /// The cluster with `serve` running on certificate files and our CRDs and webhook
    /// configurations applied, pointing at it.
    pub fn start() -> Self {
        Self::cluster().started()
    }

    /// [`World::start`] on this cluster (whose `prometheus_url` a test may have changed).
    pub fn started(self) -> Self {
        let w = self;
        let dir = w.dir.path();
        let certs = Command::new(BIN)
            .args(["certs", "--dns-name", "localhost", "--out-dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(certs.success());
        let addr = w.serve("serve-0", "127.0.0.1:0");
        std::fs::write(dir.join("webhook-addr"), &addr).unwrap();
        w.install_manifests(&addr, Some(&dir.join("ca.crt")));
        w
    }

    /// `apisix-canary manifests --url https://localhost:PORT` (with `ca` as caBundle, or
    /// none), applied with kubectl.
    pub fn install_manifests(&self, addr: &str, ca: Option<&Path>) {
        let port = addr.rsplit(':').next().unwrap().to_owned();
        let manifests = self.dir.path().join("manifests");
        let mut command = Command::new(BIN);
        command.args(["manifests", "--url", &format!("https://localhost:{port}")]);
        if let Some(ca) = ca {
            command.arg("--ca-file").arg(ca);
        }
        let written = command.arg("--out-dir").arg(&manifests).stderr(Stdio::null()).status().unwrap();
        assert!(written.success());
        self.ok(&["apply", "-f", manifests.to_str().unwrap()]);
    }

    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.kubectl).args(args).env("KUBECONFIG", &self.kubeconfig).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout.into_owned()
    }

    pub fn jsonpath(&self, object: &str, path: &str) -> String {
        let out = self.kubectl(&["-n", "test", "get", object, "-o", &format!("jsonpath={path}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn exists(&self, object: &str) -> bool {
        self.kubectl(&["-n", "test", "get", object]).status.success()
    }

    /// The Events of `kind/podinfo` in namespace test: (message, count).
    pub fn events_of(&self, kind: &str) -> Vec<(String, String)> {
        let selector = format!("involvedObject.kind={kind},involvedObject.name=podinfo");
        let path = "jsonpath={range .items[*]}{.message}|{.count}{\"\\n\"}{end}";
        let out = self.ok(&["-n", "test", "get", "events", "--field-selector", &selector, "-o", path]);
        out.lines()
            .filter_map(|l| l.rsplit_once('|'))
            .map(|(message, count)| (message.to_owned(), count.to_owned()))
            .collect()
    }

    /// The messages of the Canary's Events.
    pub fn events(&self) -> Vec<String> {
        self.events_of("Canary").into_iter().map(|(m, _)| m).collect()
    }

    /// Polls the Canary's phase until it is one of `phases`.
    pub fn wait_phase(&self, phases: &[&str], within: Duration) -> String {
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
    pub fn traffic(&self) -> Arc<AtomicBool> {
        self.traffic_to(&["/api/info"])
    }

    /// Requests to each of `paths` in turn through the gateway, until the flag is cleared.
    pub fn traffic_to(&self, paths: &[&str]) -> Arc<AtomicBool> {
        let on = Arc::new(AtomicBool::new(true));
        let requests = paths.iter().map(|p| (HOST.to_owned(), (*p).to_owned())).collect();
        send_traffic(&self.gateway, requests, Duration::from_millis(25), on.clone());
        on
    }

    /// POSTs `{"name": canary, "namespace": "test"}` to the load tester's `path`
    /// (`/gate/open`, `/rollback/open`, ...), as an operator's curl does; the status code.
    pub fn loadtester_post(&self, path: &str, canary: &str) -> u16 {
        let addr = self.loadtester.trim_start_matches("http://").trim_end_matches('/');
        let body = format!(r#"{{"name":"{canary}","namespace":"test"}}"#);
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: flagger-loadtester.test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// One plain-HTTP request to the sim's API server (its own paths: `/sim/faults`,
    /// `/sim/cut-watches`); the status code and body.
    pub fn sim_api(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let config = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let server = config.lines().find_map(|l| l.trim().strip_prefix("server: http://")).unwrap().to_owned();
        let mut s = std::net::TcpStream::connect(&server).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
    }

    pub fn pods(&self) -> Vec<String> {
        let out =
            self.ok(&["-n", "test", "get", "pods", "-l", "app=podinfo", "-o", "jsonpath={.items[*].metadata.name}"]);
        let mut names: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
        names.sort();
        names
    }
}

/// SCENARIO.md's podinfo with intervals compressed: 2 s steps of 10 up to `max`.
pub fn podinfo(max: u32) -> String {
    let text = std::fs::read_to_string(fixture("scenario/podinfo.yaml")).unwrap();
    text.replace("apisix-canary.dev/interval: 10s", "apisix-canary.dev/interval: 2s")
        .replace("apisix-canary.dev/threshold: \"10\"", "apisix-canary.dev/threshold: \"4\"")
        .replace("apisix-canary.dev/max-weight: \"50\"", &format!("apisix-canary.dev/max-weight: \"{max}\""))
}

/// The scenario's Deployment in Canary mode: its analysis is in the Canary `podinfo`.
pub fn canary_mode_podinfo() -> String {
    podinfo(30)
        .lines()
        .filter(|l| !l.trim_start().starts_with("apisix-canary.dev/"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("  annotations:\n", "  annotations:\n    apisix-canary.dev/canary: podinfo\n")
}

impl World {
    /// The scenario's namespace, Deployment (steps of 10 up to `max`), Service and route,
    /// rolled out, with its Canary initialized.
    pub fn install(&self, max: u32) {
        let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
        self.ok(&["apply", "-f", &scenario("namespace.yaml")]);
        let podinfo = self.file("podinfo.yaml", &podinfo(max));
        self.ok(&["apply", "-f", &podinfo, "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
        self.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
        assert_eq!(self.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
    }

    /// The scenario's namespace, Service and route, its Deployment in Canary mode and the
    /// Canary (and anything else) in `canary`, with the files `more`: rolled out and
    /// initialized.
    pub fn install_canary(&self, canary: &str, more: &[&str]) {
        let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
        self.ok(&["apply", "-f", &scenario("namespace.yaml")]);
        let (d, c) = (self.file("podinfo.yaml", &canary_mode_podinfo()), self.file("canary.yaml", canary));
        let mut args = vec!["apply", "-f", &d, "-f", &c];
        for f in more {
            args.extend(["-f", f]);
        }
        let (svc, route) = (scenario("service.yaml"), scenario("route.yaml"));
        args.extend(["-f", &svc, "-f", &route]);
        self.ok(&args);
        self.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
        assert_eq!(self.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
    }

    /// Polls until the Canary's weight reaches `weight`.
    pub fn wait_weight(&self, weight: u32, within: Duration) -> u32 {
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
    pub fn advances(&self) -> Vec<(String, String)> {
        self.events_of("Canary").into_iter().filter(|(m, _)| m.starts_with("Advance")).collect()
    }

    /// Every step up to `max` was taken, each once, as the routes show (the observer
    /// sees each weight once and checks, on drop, that none was taken twice); each
    /// step's Event, a report that an API server failing writes may drop, said at most
    /// once.
    pub fn assert_steps_taken_once(&self, max: u32) {
        let want: Vec<String> =
            (1..=max / 10).map(|i| format!("Advance podinfo.test canary weight {}", i * 10)).collect();
        for (message, count) in self.advances() {
            assert!(want.contains(&message) && count == "1", "{message} (x{count}): {:#?}", self.events());
        }
        let top = self.observer.as_ref().map(observer::Observer::top_weight);
        assert_eq!(top, Some(u64::from(max)), "the routes reached the top step");
    }

    /// Every step up to `max` was advanced exactly once: one Event, counted once.
    pub fn assert_each_step_once(&self, max: u32) {
        let mut advances = self.advances();
        advances.sort();
        let mut want: Vec<(String, String)> = (1..=max / 10)
            .map(|i| (format!("Advance podinfo.test canary weight {}", i * 10), "1".to_owned()))
            .collect();
        want.sort();
        assert_eq!(advances, want, "{:#?}", self.events());
    }
}

/// Sends `GET path` with `Host: host` through the gateway at `gateway`, cycling over
/// `requests`, one request every `pause` (a fixed rate; a stalled one is not made up
/// in a burst), from a thread of its own until `on` is cleared.
pub fn send_traffic(gateway: &str, requests: Vec<(String, String)>, pause: Duration, on: Arc<AtomicBool>) {
    let addr = gateway.trim_start_matches("http://").trim_end_matches('/').to_owned();
    std::thread::spawn(move || {
        let mut next = std::time::Instant::now();
        for (host, path) in requests.iter().cycle() {
            if !on.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                let _ = s.read_to_end(&mut Vec::new());
            }
            next = (next + pause).max(std::time::Instant::now() - pause);
            std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
        }
    });
}
