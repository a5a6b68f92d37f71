//! The Helm chart installed into the simulated cluster as a user installs it: rendered
//! with Helm's own library (tests/chart/template.py), its CRDs and templates applied with
//! the real kubectl, and `apisix-canary serve` run as its own process configured from
//! the rendered Deployment (its args and env; only what must differ outside a cluster is
//! overridden), the chart's Service mapped to it. Then the installed webhook
//! configurations and CRD drive admission and conversion against that process.
//!
//! The certificate mode is a parameter ([`CertMode`]): `selfSigned`, the default, where
//! serve makes its Secret and writes every caBundle itself, and `existingSecret`, where
//! the user makes the certificates (`apisix-canary certs`), the Secret and patches the
//! CRD's conversion caBundle by hand.

#[path = "support/binaries.rs"]
mod binaries;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sim::Sim;

const BIN: &str = env!("CARGO_BIN_EXE_apisix-canary");
/// The virtualenv with helm-python-sdk and PyYAML, made by `.ci/run`.
const VENV_PYTHON: &str = ".venv/bin/python";
/// Where the chart is installed: the namespace its CRDs' conversion webhook names.
const RELEASE_NAMESPACE: &str = "apisix-canary";
/// A namespace of the user's, seen by the Deployment webhooks.
const USER_NAMESPACE: &str = "shop";
/// Another, for the Canary resources (whose targets never exist: the controller leaves
/// them Initialized, and the opted-in Deployment of USER_NAMESPACE keeps its own Canary).
const CANARY_NAMESPACE: &str = "canaries";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(path: &str) -> PathBuf {
    repo().join("tests/fixtures").join(path)
}

/// How the serving certificate gets to the pods and its CA to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertMode {
    /// The chart's defaults: serve creates the Secret and writes the caBundles.
    SelfSigned,
    /// The same defaults from `manifests/` with `kubectl apply -k`, the chart unused.
    Kustomize,
    /// The user makes the certificate, puts it in a `kubernetes.io/tls` Secret, passes
    /// the CA as `existingSecret.caBundle` and patches the CRD (crds/ is never templated).
    ExistingSecret,
}

/// The chart rendered for one set of values: what kubectl applies, and the objects.
struct Rendered {
    crds: PathBuf,
    templates: PathBuf,
    objects: Vec<Value>,
}

impl Rendered {
    fn one(&self, kind: &str) -> &Value {
        let found: Vec<&Value> = self.objects.iter().filter(|o| o["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "{} rendered {kind}s", found.len());
        found[0]
    }

    /// The rendered Service: (namespace, name).
    fn service(&self) -> (String, String) {
        let service = self.one("Service");
        (str_at(service, "/metadata/namespace").to_owned(), str_at(service, "/metadata/name").to_owned())
    }

    fn container(&self) -> &Value {
        let containers = self.one("Deployment").pointer("/spec/template/spec/containers").unwrap();
        let containers = containers.as_array().unwrap();
        assert_eq!(containers.len(), 1, "one container in the chart's pod");
        &containers[0]
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

/// Renders the chart with Helm's library into `dir` with `values`.
fn render(dir: &Path, values: &Value) -> Rendered {
    let python = repo().join(VENV_PYTHON);
    assert!(
        python.exists(),
        "{} is missing: run `.ci/run` (it creates the virtualenv with helm-python-sdk)",
        python.display()
    );
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new(&python)
        .arg(repo().join("tests/chart/template.py"))
        .arg(repo().join("charts/apisix-canary"))
        .arg(RELEASE_NAMESPACE)
        .arg(values.to_string())
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests/chart/template.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let templates = dir.join("templates.yaml");
    let objects: Vec<Value> = serde_saphyr::from_multiple(&std::fs::read_to_string(&templates).unwrap()).unwrap();
    Rendered { crds: dir.join("crds.yaml"), templates, objects }
}

/// `kubectl kustomize manifests/`: every object but the Namespace and the CRDs, as
/// `templates`; `crds` unused (apply -k installs it all).
fn kustomized(cluster: &Cluster, dir: &Path) -> Rendered {
    std::fs::create_dir_all(dir).unwrap();
    let manifests = repo().join("manifests");
    let (out, _) = cluster.ok(&["kustomize", manifests.to_str().unwrap()]);
    let all: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
    let objects: Vec<Value> =
        all.into_iter().filter(|o| o["kind"] != "Namespace" && o["kind"] != "CustomResourceDefinition").collect();
    Rendered { crds: dir.join("unused"), templates: dir.join("unused"), objects }
}

/// The simulated cluster in this process, and the real kubectl pointed at it.
struct Cluster {
    sim: Sim,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    // Last: the sim's tasks run on it until the sim is dropped.
    _runtime: tokio::runtime::Runtime,
}

impl Cluster {
    fn start() -> Self {
        let kubectl = binaries::require_binary("kubectl");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let sim = runtime.block_on(Sim::start()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("sim.kubeconfig");
        std::fs::write(&kubeconfig, sim.kubeconfig()).unwrap();
        Self { sim, kubectl, kubeconfig, dir, _runtime: runtime }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl).args(args).env("KUBECONFIG", &self.kubeconfig).output().unwrap()
    }

    /// Runs kubectl, asserts success: (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.kubectl(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        (stdout.into_owned(), stderr.into_owned())
    }

    /// Runs kubectl, asserts failure: stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "kubectl {args:?} succeeded:\n{stdout}\n{stderr}");
        stderr.into_owned()
    }

    fn get_json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args).0).unwrap()
    }

    /// Writes `text` into the cluster's directory; the path, for `kubectl apply -f`.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn apply(&self, name: &str, object: &Value) -> String {
        let path = self.file(name, &serde_json::to_string_pretty(object).unwrap());
        self.ok(&["apply", "-f", &path]).0
    }
}

/// `apisix-canary serve` as its own process: stopped with SIGTERM (SIGKILL if it
/// lingers) when dropped; its log lines are printed if the test is failing.
struct Serve {
    child: Child,
    addr: String,
    admin: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// SIGTERM, as the kubelet stops the pod.
    fn sigterm(&self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
    }

    /// SIGTERM, then waits for the exit (the rendered shutdown delay and drain apply).
    fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.sigterm();
        self.wait_exit(within)
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// `GET http://<admin><path>`: (status code, body).
    fn admin_get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = std::net::TcpStream::connect(&self.admin) else { return (0, String::new()) };
        write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, body.to_owned())
    }

    /// `apisix_canary_webhook_requests_total` of `path`, all outcomes.
    fn requests(&self, path: &str) -> u64 {
        let (code, body) = self.admin_get("/metrics");
        assert_eq!(code, 200, "{body}");
        let label = format!("path=\"{path}\"");
        body.lines()
            .filter(|l| l.starts_with("apisix_canary_webhook_requests_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("serve's logs:\n{}", self.logs());
        }
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = self.terminate(Duration::from_secs(10));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where each Secret volume of the chart's pod is "mounted" on this machine: the
/// container's mountPath and the local directory holding the Secret's keys as files.
fn mount_secrets(cluster: &Cluster, rendered: &Rendered, namespace: &str) -> Vec<(String, PathBuf)> {
    let pod = rendered.one("Deployment").pointer("/spec/template/spec").unwrap();
    let mut mounts = Vec::new();
    for mount in rendered.container()["volumeMounts"].as_array().unwrap() {
        let name = str_at(mount, "/name");
        let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == name).unwrap();
        let Some(secret) = volume.pointer("/secret/secretName").and_then(Value::as_str) else { continue };
        let secret = cluster.get_json(&["-n", namespace, "get", "secret", secret]);
        let dir = cluster.dir.path().join("volumes").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (key, value) in secret["data"].as_object().unwrap() {
            let bytes = base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap()).unwrap();
            std::fs::write(dir.join(key), bytes).unwrap();
        }
        mounts.push((str_at(mount, "/mountPath").to_owned(), dir));
    }
    mounts
}

/// The value of a downward-API `fieldRef` for `pod`.
fn field_ref(pod: &Value, field_path: &str) -> String {
    let pointer = format!("/{}", field_path.replace('.', "/"));
    str_at(pod, &pointer).to_owned()
}

/// Starts `serve` from the rendered container: its args, and its env but for the
/// listen addresses (127.0.0.1, ports chosen at run time), the TLS file paths (the
/// Secret volume's local directory), the downward API (from a pod the sim made for the
/// chart's Deployment), and KUBECONFIG (the sim's; in a pod it is the in-cluster config).
fn start_serve(
    cluster: &Cluster,
    rendered: &Rendered,
    pod: &Value,
    mounts: &[(String, PathBuf)],
    mode: CertMode,
) -> Serve {
    let container = rendered.container();
    assert!(container.get("command").is_none(), "the image's entrypoint is the binary: {container}");
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let ports: BTreeMap<&str, u64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (str_at(p, "/name"), p["containerPort"].as_u64().unwrap()))
        .collect();
    let listen = |value: &str, port_name: &str| {
        let port = value.rsplit(':').next().unwrap();
        assert_eq!(port, ports[port_name].to_string(), "{value} listens on the container port {port_name}");
        "127.0.0.1:0".to_owned()
    };
    let mut env: Vec<(String, String)> = Vec::new();
    let mut overridden = Vec::new();
    for e in container["env"].as_array().unwrap() {
        let name = str_at(e, "/name");
        let value = if let Some(path) = e.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str) {
            field_ref(pod, path)
        } else {
            let value = e["value"].as_str().unwrap_or_else(|| panic!("{name}: neither a value nor a fieldRef: {e}"));
            let local = match name {
                "APISIX_CANARY_ADDR" => Some(listen(value, "webhook")),
                "APISIX_CANARY_ADMIN_ADDR" => Some(listen(value, "admin")),
                // A file of a mounted Secret: the same file in its local directory.
                _ => mounts.iter().find_map(|(at, dir)| {
                    let file = value.strip_prefix(at.as_str())?.strip_prefix('/')?;
                    Some(dir.join(file).to_string_lossy().into_owned())
                }),
            };
            match local {
                Some(local) => {
                    overridden.push(name);
                    local
                }
                None => value.to_owned(),
            }
        };
        env.push((name.to_owned(), value));
    }
    overridden.sort_unstable();
    let local: &[&str] = match mode {
        CertMode::SelfSigned | CertMode::Kustomize => &["APISIX_CANARY_ADDR", "APISIX_CANARY_ADMIN_ADDR"],
        CertMode::ExistingSecret => {
            &["APISIX_CANARY_ADDR", "APISIX_CANARY_ADMIN_ADDR", "APISIX_CANARY_TLS_CERT", "APISIX_CANARY_TLS_KEY"]
        }
    };
    assert_eq!(
        overridden, local,
        "the rendered env sets the listen addresses and the TLS files (in the Secret's mount), nothing else local"
    );
    let mut child = Command::new(BIN)
        .args(&args)
        .env_clear()
        .envs(env)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (addr, admin) = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.wait();
            panic!("serve exited before it listened:\n{}", logs.lock().unwrap().join("\n"));
        };
        logs.lock().unwrap().push(line.clone());
        let log: Value = serde_json::from_str(&line).unwrap_or_default();
        let fields = if log["fields"].is_object() { &log["fields"] } else { &log };
        if fields["message"] == "serving webhooks" {
            break (str_at(fields, "/addr").to_owned(), str_at(fields, "/admin_addr").to_owned());
        }
    };
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Serve { child, addr, admin, logs }
}

/// Polls `what` until it returns `Some`, for at most `within`.
fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "no {what} after {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An opted-in Deployment (SCENARIO.md's podinfo) in `namespace`, with `max_weight`.
fn podinfo(namespace: &str, max_weight: &str) -> String {
    std::fs::read_to_string(fixture("scenario/podinfo.yaml"))
        .unwrap()
        .replace("  namespace: test\n", &format!("  namespace: {namespace}\n"))
        .replace("apisix-canary.dev/max-weight: \"50\"", &format!("apisix-canary.dev/max-weight: \"{max_weight}\""))
}

/// A fixture Canary moved into `namespace`.
fn canary_fixture(file: &str, namespace: &str) -> String {
    let text = std::fs::read_to_string(fixture(&format!("canaries/{file}"))).unwrap();
    let mut object: Value = serde_saphyr::from_str(&text).unwrap();
    object["metadata"]["namespace"] = json!(namespace);
    serde_json::to_string_pretty(&object).unwrap()
}

/// `kubectl -n NS set image deployment/podinfo` to 6.0.1, with the stored object: (JSON, stderr).
fn set_image(cluster: &Cluster, ns: &str) -> (String, String) {
    cluster.ok(&["-n", ns, "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1", "-o", "json"])
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// existingSecret, before `helm install`: a dev CA and serving certificate for the
/// Service's DNS names from `apisix-canary certs`, the pair in a `kubernetes.io/tls`
/// Secret (applied, as `kubectl create secret` is not served by the sim), the CA as
/// `existingSecret.caBundle`; the chart rendered with it.
fn existing_secret_before_install(cluster: &Cluster, service_ns: &str, service_name: &str) -> Rendered {
    let dir = cluster.dir.path();
    let certs = dir.join("certs");
    let dns = apisix_canary::tls::generate::service_dns_names(service_name, service_ns);
    let out = Command::new(BIN)
        .arg("certs")
        .args(dns.iter().flat_map(|n| ["--dns-name", n]))
        .arg("--out-dir")
        .arg(&certs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ca_bundle = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let values = json!({"existingSecret": {"name": "apisix-canary-tls", "caBundle": ca_bundle}});
    let rendered = render(&dir.join("chart"), &values);
    let volumes = rendered.one("Deployment").pointer("/spec/template/spec/volumes").unwrap().as_array().unwrap();
    let secret_name = volumes.iter().find_map(|v| v.pointer("/secret/secretName")?.as_str()).unwrap();
    let b64 = |f: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(certs.join(f)).unwrap());
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": secret_name, "namespace": RELEASE_NAMESPACE},
        "data": {"tls.crt": b64("tls.crt"), "tls.key": b64("tls.key")},
    });
    let out = cluster.apply("secret.yaml", &secret);
    assert!(out.contains(&format!("secret/{secret_name} created")), "{out}");
    rendered
}

/// existingSecret, after the install: crds/ is not templated, so the Canary CRD's
/// conversion webhook has no caBundle and the API server cannot trust serve (a v1alpha1
/// write, `alpha`, fails), until the user patches the CA in with kubectl.
fn existing_secret_after_install(cluster: &Cluster, service_ns: &str, service_name: &str, alpha: &str) {
    let crd = cluster.get_json(&["get", "crd", "canaries.apisix-canary.dev"]);
    let client = crd.pointer("/spec/conversion/webhook/clientConfig").unwrap();
    assert_eq!(client.get("caBundle"), None, "{client}");
    assert_eq!(
        client["service"],
        json!({"name": service_name, "namespace": service_ns, "path": "/convert", "port": 443})
    );
    let err = cluster.fails(&["apply", "-f", alpha]);
    assert!(err.contains("conversion webhook for apisix-canary.dev/v1alpha1, Kind=Canary failed"), "{err}");

    let ca = std::fs::read(cluster.dir.path().join("certs").join("ca.crt")).unwrap();
    let patch = json!({"spec": {"conversion": {"webhook": {"clientConfig": {
        "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)}}}}});
    let (out, _) =
        cluster.ok(&["patch", "crd", "canaries.apisix-canary.dev", "--type=merge", "-p", &patch.to_string()]);
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/canaries.apisix-canary.dev patched"), "{out}");
}

/// selfSigned, after the install: nothing for the user to do. serve made the Secret the
/// Deployment names, and wrote its CA into both webhook configurations and the Canary
/// CRD's conversion, whose Service it points at ours.
fn self_signed_after_install(cluster: &Cluster, rendered: &Rendered, service_ns: &str, service_name: &str) {
    let env = rendered.container()["env"].as_array().unwrap();
    let secret_name =
        env.iter().find(|e| e["name"] == "APISIX_CANARY_SELF_SIGNED_SECRET").and_then(|e| e["value"].as_str()).unwrap();
    let secret = cluster.get_json(&["-n", RELEASE_NAMESPACE, "get", "secret", secret_name]);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let ca = secret["data"]["ca.crt"].as_str().unwrap().to_owned();
    for kind in ["mutatingwebhookconfiguration", "validatingwebhookconfiguration"] {
        let config = cluster.get_json(&["get", kind, service_name]);
        for webhook in config["webhooks"].as_array().unwrap() {
            assert_eq!(webhook["clientConfig"]["caBundle"].as_str(), Some(ca.as_str()), "{kind} {}", webhook["name"]);
        }
    }
    let crd = cluster.get_json(&["get", "crd", "canaries.apisix-canary.dev"]);
    let client = crd.pointer("/spec/conversion/webhook/clientConfig").unwrap();
    assert_eq!(client["caBundle"].as_str(), Some(ca.as_str()));
    assert_eq!(client["service"]["namespace"], service_ns);
    assert_eq!(client["service"]["name"], service_name);
}

/// The chart installed with `mode`, serve running against it, admission and conversion
/// driven through the installed configurations with the real kubectl.
fn chart_in_the_sim(mode: CertMode) {
    let started = Instant::now();
    let cluster = Cluster::start();
    let dir = cluster.dir.path().to_owned();

    // What the chart calls its Service decides the certificate's names.
    let (service_ns, service_name) = render(&dir.join("probe"), &json!({})).service();
    assert_eq!(service_ns, RELEASE_NAMESPACE);

    // The user's steps before `helm install`, per certificate mode; then the install:
    // the namespace, the CRDs (Helm installs crds/ first), the templates in Helm's order.
    cluster.apply("namespace.yaml", &namespace(RELEASE_NAMESPACE));
    let rendered = match mode {
        CertMode::SelfSigned => render(&dir.join("chart"), &json!({})),
        CertMode::Kustomize => kustomized(&cluster, &dir.join("kustomize")),
        CertMode::ExistingSecret => existing_secret_before_install(&cluster, &service_ns, &service_name),
    };
    let out = if mode == CertMode::Kustomize {
        let (out, _) = cluster.ok(&["apply", "-k", repo().join("manifests").to_str().unwrap()]);
        assert!(out.lines().any(|l| l.starts_with("namespace/apisix-canary ")), "{out}");
        assert!(
            out.contains("customresourcedefinition.apiextensions.k8s.io/canaries.apisix-canary.dev created"),
            "{out}"
        );
        // What the templates made: the rest, one line per object.
        out.lines()
            .filter(|l| !l.starts_with("namespace/") && !l.starts_with("customresourcedefinition"))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        let (out, _) = cluster.ok(&["apply", "-f", rendered.crds.to_str().unwrap()]);
        assert!(
            out.contains("customresourcedefinition.apiextensions.k8s.io/canaries.apisix-canary.dev created"),
            "{out}"
        );
        cluster.ok(&["apply", "-f", rendered.templates.to_str().unwrap()]).0
    };
    for kind in ["deployment.apps", "service", "mutatingwebhookconfiguration.admissionregistration.k8s.io"] {
        assert!(out.contains(&format!("{kind}/{service_name} created")), "{out}");
    }
    assert_eq!(out.lines().count(), rendered.objects.len(), "one line per rendered object:\n{out}");

    // A pod of the chart's Deployment, as the sim schedules it: the downward API's source.
    let selector = rendered.one("Deployment").pointer("/spec/selector/matchLabels").unwrap().as_object().unwrap();
    let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
    let pod = wait_for(Duration::from_secs(10), "pod of the chart's Deployment", || {
        let pods = cluster.get_json(&["-n", RELEASE_NAMESPACE, "get", "pods", "-l", &selector.join(",")]);
        pods["items"].as_array().and_then(|p| p.first().cloned())
    });

    // serve, as the pod would run it, and the chart's Service mapped to it.
    let mounts = mount_secrets(&cluster, &rendered, RELEASE_NAMESPACE);
    let mut serve = start_serve(&cluster, &rendered, &pod, &mounts, mode);
    let service = rendered.one("Service");
    let webhook_port = service["spec"]["ports"].as_array().unwrap().iter().find(|p| p["port"] == 443).unwrap();
    assert_eq!(webhook_port["targetPort"], "webhook", "the Service's 443 goes to the webhook port");
    cluster.sim.register_service(&service_ns, &service_name, serve.addr.parse().unwrap());
    wait_for(Duration::from_secs(15), "/ready from serve", || (serve.admin_get("/ready").0 == 200).then_some(()));

    // The user's steps after the install, per mode.
    let alpha = cluster.file("alpha.yaml", &canary_fixture("flat-v1alpha1.yaml", CANARY_NAMESPACE));
    cluster.apply("user-namespace.yaml", &namespace(USER_NAMESPACE));
    cluster.apply("canary-namespace.yaml", &namespace(CANARY_NAMESPACE));
    match mode {
        CertMode::SelfSigned | CertMode::Kustomize => {
            self_signed_after_install(&cluster, &rendered, &service_ns, &service_name)
        }
        CertMode::ExistingSecret => existing_secret_after_install(&cluster, &service_ns, &service_name, &alpha),
    }

    // (a) An invalid Canary is refused by the validating webhook (failurePolicy Fail),
    // with its field error; (b) a valid one is accepted.
    let mut invalid: Value = serde_json::from_str(&canary_fixture("minimal.yaml", CANARY_NAMESPACE)).unwrap();
    invalid["metadata"]["name"] = json!("invalid");
    invalid["spec"]["analysis"] = json!({"maxWeight": 30, "stepWeight": 40});
    let invalid = cluster.file("invalid.yaml", &invalid.to_string());
    let validated = serve.requests("/validate/canaries");
    let err = cluster.fails(&["apply", "-f", &invalid]);
    assert_eq!(
        err.trim(),
        format!(
            "Error from server (Forbidden): error when creating \"{invalid}\": admission webhook \
             \"canaries.validate.apisix-canary.dev\" denied the request: \
             spec.analysis.stepWeight: Invalid value: 40: must be less than or equal to maxWeight (30)"
        )
    );
    let valid = cluster.file("valid.yaml", &canary_fixture("minimal.yaml", CANARY_NAMESPACE));
    let (out, _) = cluster.ok(&["apply", "-f", &valid]);
    assert!(out.contains("canary.apisix-canary.dev/checkout created"), "{out}");
    // The controller adds its finalizer to the new Canary: an UPDATE the same webhook
    // reviews. Once it is there, the count is settled: two creates and that update.
    wait_for(Duration::from_secs(15), "the controller's finalizer on the Canary", || {
        let canary = cluster.get_json(&["-n", CANARY_NAMESPACE, "get", "canaries", "checkout"]);
        let finalizers = canary.pointer("/metadata/finalizers").cloned().unwrap_or_default();
        (finalizers == json!([apisix_canary::controller::FINALIZER])).then_some(())
    });
    assert_eq!(
        serve.requests("/validate/canaries"),
        validated + 3,
        "both creates and the finalizer went through serve"
    );

    // CRD conversion through the CRD's webhook: written v1alpha1, read v1beta1 (and back
    // losslessly); written v1beta1, read v1alpha1.
    let converted = serve.requests("/convert");
    let (out, _) = cluster.ok(&["apply", "-f", &alpha]);
    assert!(out.contains("canary.apisix-canary.dev/podinfo created"), "{out}");
    let beta = cluster.get_json(&["-n", CANARY_NAMESPACE, "get", "canaries.v1beta1.apisix-canary.dev", "podinfo"]);
    assert_eq!(beta["apiVersion"], "apisix-canary.dev/v1beta1");
    assert_eq!(beta["spec"]["targetRef"]["name"], "podinfo", "{beta}");
    assert_eq!(beta["spec"]["analysis"]["maxWeight"], 50, "{beta}");
    assert_eq!(beta["spec"]["analysis"]["stepWeight"], 10, "{beta}");
    let written: Value = serde_saphyr::from_str(&std::fs::read_to_string(&alpha).unwrap()).unwrap();
    let read = cluster.get_json(&["-n", CANARY_NAMESPACE, "get", "canaries.v1alpha1.apisix-canary.dev", "podinfo"]);
    assert_eq!(read["apiVersion"], "apisix-canary.dev/v1alpha1");
    assert_eq!(read["spec"], written["spec"], "v1alpha1 -> v1beta1 -> v1alpha1 is lossless");
    let flat = cluster.get_json(&["-n", CANARY_NAMESPACE, "get", "canaries.v1alpha1.apisix-canary.dev", "checkout"]);
    assert_eq!(flat["apiVersion"], "apisix-canary.dev/v1alpha1");
    assert_eq!((&flat["spec"]["target"], &flat["spec"]["route"]), (&json!("checkout"), &json!("shop")), "{flat}");
    assert!(serve.requests("/convert") > converted, "the conversions went through serve");

    // (d) Deployments in the release namespace and kube-system are never sent to the
    // webhooks (namespaceSelector): an invalid opted-in Deployment is accepted there
    // unvalidated, and its `set image` is not intercepted.
    let (mutated, validated) = (serve.requests("/mutate/deployments"), serve.requests("/validate/deployments"));
    for ns in [RELEASE_NAMESPACE, "kube-system"] {
        let file = cluster.file(&format!("podinfo-{ns}.yaml"), &podinfo(ns, "150"));
        cluster.ok(&["apply", "-f", &file]);
        let (out, err) = set_image(&cluster, ns);
        let stored: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(stored["spec"].get("paused"), None, "{ns}: {stored}");
        let annotations = stored["metadata"]["annotations"].as_object().unwrap();
        assert!(!annotations.contains_key("apisix-canary.dev/stable-revision"), "{ns}: {annotations:?}");
        assert!(!err.contains("apisix-canary"), "{ns}: {err}");
    }
    assert_eq!(serve.requests("/mutate/deployments"), mutated, "no mutating review from excluded namespaces");
    assert_eq!(serve.requests("/validate/deployments"), validated, "no validating review from excluded namespaces");

    // (c) In the user's namespace the same invalid Deployment is refused; a valid one's
    // `kubectl set image` is intercepted: paused and locked by the mutating webhook.
    let bad = cluster.file("podinfo-bad.yaml", &podinfo(USER_NAMESPACE, "150"));
    let err = cluster.fails(&["apply", "-f", &bad]);
    assert!(
        err.contains(
            "admission webhook \"deployments.validate.apisix-canary.dev\" denied the request: \
             metadata.annotations[apisix-canary.dev/max-weight]: Invalid value: \"150\": must be between 1 and 100"
        ),
        "{err}"
    );
    let good = cluster.file("podinfo.yaml", &podinfo(USER_NAMESPACE, "50"));
    cluster.ok(&["apply", "-f", &good]);
    let (out, err) = set_image(&cluster, USER_NAMESPACE);
    assert!(err.contains("Warning: apisix-canary: canary release of revision"), "{err}");
    let stored: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stored["spec"]["paused"], true, "{stored}");
    let annotations = stored["metadata"]["annotations"].as_object().unwrap();
    for key in ["apisix-canary.dev/stable-revision", "apisix-canary.dev/canary-revision"] {
        assert!(annotations.get(key).and_then(Value::as_str).is_some_and(|r| r.len() == 10), "{key}: {annotations:?}");
    }
    assert_eq!(
        str_at(&stored, "/spec/template/spec/containers/0/image"),
        "stefanprodan/podinfo:6.0.1",
        "the new template is kept, paused"
    );
    assert!(serve.requests("/mutate/deployments") > mutated, "the interception went through serve");

    // The controller adopts the user's opted-in Deployment (its Canary appears), and
    // never those where the webhooks do not look: no release there could be intercepted.
    wait_for(Duration::from_secs(10), "the Canary of the user's Deployment", || {
        cluster.kubectl(&["-n", USER_NAMESPACE, "get", "canary", "podinfo"]).status.success().then_some(())
    });
    for ns in [RELEASE_NAMESPACE, "kube-system"] {
        let (out, _) = cluster.ok(&["-n", ns, "get", "canaries", "-o", "name"]);
        assert_eq!(out.trim(), "", "{ns}: a Canary for a Deployment the webhooks never see");
    }

    // A clean stop: SIGTERM turns readiness off at once (while the rendered shutdown
    // delay keeps the ports open), then serve drains and exits 0.
    serve.sigterm();
    wait_for(Duration::from_secs(3), "/ready off after SIGTERM", || {
        let (ready, live) = (serve.admin_get("/ready").0, serve.admin_get("/live").0);
        (ready == 503).then(|| assert_eq!(live, 200, "still live while draining"))
    });
    let status = serve.wait_exit(Duration::from_secs(30)).expect("serve did not exit within 30s of SIGTERM");
    assert!(status.success(), "serve exited with {status}:\n{}", serve.logs());
    eprintln!("chart_sim ({mode:?}): {:?}", started.elapsed());
}

#[test]
fn chart_with_an_existing_secret_serves_admission_and_conversion_in_the_sim() {
    chart_in_the_sim(CertMode::ExistingSecret);
}

#[test]
fn manifests_apply_k_installs_the_chart_defaults_and_serves_in_the_sim() {
    chart_in_the_sim(CertMode::Kustomize);
}

#[test]
fn chart_defaults_make_their_own_certificate_and_serve_admission_and_conversion_in_the_sim() {
    chart_in_the_sim(CertMode::SelfSigned);
}

/// `apisix-canary sim --service NAMESPACE/NAME=IP:PORT` maps a `clientConfig` Service to
/// a local address: a webhook configuration naming it is dialled there (nothing listens,
/// so the failurePolicy Fail webhook refuses the write, naming the address).
#[test]
fn sim_service_flag_maps_a_webhook_service_to_a_local_address() {
    let kubectl = binaries::require_binary("kubectl");
    let prometheus = binaries::require_binary("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("sim.kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(BIN)
        .args(["sim", "--log-format", "text", "--service", &format!("hooks/checker=127.0.0.1:{port}")])
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .arg("--prometheus-bin")
        .arg(&prometheus)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sim = binaries::Proc(child);
    let mut printed = Vec::new();
    for line in BufReader::new(sim.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.starts_with("export KUBECONFIG=");
        printed.push(line);
        if done {
            break;
        }
    }
    assert!(printed.contains(&format!("service:    hooks/checker -> 127.0.0.1:{port}")), "{printed:?}");
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "checker"},
        "webhooks": [{
            "name": "configmaps.checker.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 2,
            "clientConfig": {"service": {"namespace": "hooks", "name": "checker", "path": "/check", "port": 443}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
        }],
    });
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
    let kubectl = |file: &str, object: &Value| {
        let path = dir.path().join(file);
        std::fs::write(&path, object.to_string()).unwrap();
        Command::new(&kubectl).args(["apply", "-f"]).arg(&path).env("KUBECONFIG", &kubeconfig).output().unwrap()
    };
    assert!(kubectl("webhook.json", &config).status.success());
    let out = kubectl("configmap.json", &configmap);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("failed calling webhook \"configmaps.checker.example.com\"")
            && err.contains(&format!("dial tcp 127.0.0.1:{port}")),
        "{err}"
    );
}
