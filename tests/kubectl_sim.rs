//! The real kubectl against `apisix-canary sim --with-webhook`: SCENARIO.md's commands
//! give the output a real cluster gives (columns, warnings, denials, 3-way merges).

#[path = "support/binaries.rs"]
mod binaries;
#[path = "support/kubectl.rs"]
mod kubectl;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use apisix_canary::api::annotations::{CANARY_REVISION, FAILED_REVISION, RETRY, STABLE_REVISION};
use kubectl::{BIN, Cluster, dir_file, fixture, header, start};

#[test]
fn scenario_commands_behave_like_on_a_real_cluster() {
    let c = start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    c.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    let (out, _) = c.ok(&[
        "apply",
        "-f",
        &scenario("podinfo.yaml"),
        "-f",
        &scenario("service.yaml"),
        "-f",
        &scenario("route.yaml"),
    ]);
    assert!(
        out.contains("deployment.apps/podinfo created")
            && out.contains("apisixroute.apisix.apache.org/podinfo created"),
        "{out}"
    );

    let (out, _) = c.ok(&["get", "deploy", "-n", "test"]);
    assert_eq!(header(&out), ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(out.lines().nth(1).unwrap().starts_with("podinfo "), "{out}");

    // The release: intercepted, paused, locked, and kubectl shows why.
    let (out, err) = c.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert!(out.contains("deployment.apps/podinfo image updated"), "{out}");
    assert!(err.contains("Warning: apisix-canary: canary release of revision"), "{err}");
    let paused = c.jsonpath("deploy/podinfo", "{.spec.paused}");
    assert_eq!(paused, "true");
    let stable = c.jsonpath("deploy/podinfo", "{.metadata.annotations.apisix-canary\\.dev/stable-revision}");
    let revision = Command::new(BIN).args(["revision", &scenario("podinfo.yaml")]).output().unwrap();
    let revision = String::from_utf8(revision.stdout).unwrap();
    assert_eq!(revision.split_whitespace().next(), Some(stable.as_str()), "the lock names the file's revision");
    let ports = c.jsonpath("deploy/podinfo", "{.spec.template.spec.containers[0].ports[0].containerPort}");
    assert_eq!(ports, "9898", "set image's strategic merge patch kept the rest of the container");

    // A bad setting is denied, in kubectl's words.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(scenario("podinfo.yaml")).unwrap();
    std::fs::write(
        &bad,
        text.replace("name: podinfo\n  namespace", "name: podinfo-bad\n  namespace").replace("\"50\"", "\"150\""),
    )
    .unwrap();
    let out = c.kubectl(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Error from server (Forbidden): error when creating \"{}\": admission webhook \
             \"deployments.validate.apisix-canary.dev\" denied the request: \
             metadata.annotations[apisix-canary.dev/max-weight]: Invalid value: \"150\": must be between 1 and 100",
            bad.display()
        )),
        "{err}"
    );

    // Re-applying an unchanged file is a no-op.
    let (out, _) = c.ok(&["apply", "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
    assert!(
        out.contains("service/podinfo unchanged") && out.contains("apisixroute.apisix.apache.org/podinfo unchanged"),
        "{out}"
    );

    // kubectl apply's three-way merge removes an env var dropped from the file.
    let trimmed = dir.path().join("podinfo.yaml");
    let start = text.find("            - name: PODINFO_UI_MESSAGE").unwrap();
    let end = text.find("          resources:").unwrap();
    std::fs::write(&trimmed, format!("{}{}", &text[..start], &text[end..])).unwrap();
    for _ in 0..2 {
        c.ok(&["apply", "-f", trimmed.to_str().unwrap()]);
    }
    let env = c.jsonpath("deploy/podinfo", "{.spec.template.spec.containers[0].env[*].name}");
    assert_eq!(env, "PODINFO_UI_COLOR");

    // Canaries print their columns.
    c.ok(&["apply", "-f", fixture("canaries/scenario.yaml").to_str().unwrap()]);
    let (out, _) = c.ok(&["get", "canaries", "-A"]);
    assert_eq!(header(&out), ["NAMESPACE", "NAME", "STATUS", "WEIGHT", "FAILEDCHECKS", "LASTTRANSITIONTIME"]);
    let (out, _) = c.ok(&["get", "canaries", "-A", "-o", "wide"]);
    assert_eq!(
        header(&out),
        [
            "NAMESPACE",
            "NAME",
            "STATUS",
            "WEIGHT",
            "FAILEDCHECKS",
            "STEPWEIGHT",
            "MAXWEIGHT",
            "INTERVAL",
            "LASTTRANSITIONTIME"
        ]
    );
    assert!(out.contains("podinfo") && out.contains("10s"), "{out}");
    let (out, _) = c.ok(&["-n", "test", "describe", "canary/podinfo"]);
    assert!(out.contains("Kind:         Canary") && out.contains("Events:"), "{out}");
    // Served at v1alpha1 through our conversion webhook.
    let alpha = c.jsonpath("canaries.v1alpha1.apisix-canary.dev/podinfo", "{.spec.maxWeight} {.spec.minSuccessRate}");
    assert_eq!(alpha, "50 99");
}

#[test]
fn server_side_apply_scale_and_delete() {
    let c = start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    c.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    let (out, _) = c.ok(&["apply", "--server-side", "-f", &scenario("podinfo.yaml")]);
    assert!(out.contains("serverside-applied"), "{out}");
    let managers = c.jsonpath("deploy/podinfo", "{.metadata.managedFields[*].manager}");
    assert!(managers.contains("kubectl"), "{managers}");
    // Workloads move like under kube-controller-manager: rollout status finishes.
    let (out, _) = c.ok(&["-n", "test", "rollout", "status", "deploy/podinfo", "--timeout=30s"]);
    assert!(out.contains("deployment \"podinfo\" successfully rolled out"), "{out}");
    let (out, _) = c.ok(&["-n", "test", "get", "deploy", "podinfo"]);
    assert!(out.lines().nth(1).unwrap().split_whitespace().nth(1) == Some("2/2"), "{out}");
    let (out, _) = c.ok(&["-n", "test", "get", "pods"]);
    assert_eq!(header(&out), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(out.lines().filter(|l| l.contains("Running")).count(), 2, "{out}");

    // Events about an object show in `kubectl describe` (field selectors on involvedObject).
    let uid = c.jsonpath("deploy/podinfo", "{.metadata.uid}");
    let event = dir_file(
        "event.yaml",
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata:\n  name: podinfo.1\n  namespace: test\n\
         involvedObject:\n  apiVersion: apps/v1\n  kind: Deployment\n  name: podinfo\n  namespace: test\n  uid: {uid}\n\
         reason: Synced\nmessage: Advance podinfo.test canary weight 10\ntype: Normal\n\
         firstTimestamp: \"{now}\"\nlastTimestamp: \"{now}\"\ncount: 1\nsource:\n  component: apisix-canary\n",
            now = "2026-01-01T00:00:00Z"
        ),
    );
    c.ok(&["create", "-f", event.path()]);
    let (out, _) = c.ok(&["-n", "test", "describe", "deploy/podinfo"]);
    assert!(out.contains("Advance podinfo.test canary weight 10"), "{out}");

    // Custom resources are checked against their CRD's schema, in kubectl's words.
    let route = std::fs::read_to_string(scenario("route.yaml")).unwrap();
    let bad_route =
        dir_file("route.yaml", &route.replace("servicePort: 80", "servicePort: 80\n          weight: \"heavy\""));
    let out = c.kubectl(&["apply", "-f", bad_route.path()]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "The ApisixRoute \"podinfo\" is invalid: spec.http[0].backends[0].weight: Invalid value: \"string\": \
         spec.http[0].backends[0].weight in body must be of type integer: \"heavy\""
    );

    c.ok(&["-n", "test", "scale", "deploy/podinfo", "--replicas=4"]);
    let replicas = c.jsonpath("deploy/podinfo", "{.spec.replicas}");
    assert_eq!(replicas, "4");
    c.ok(&["-n", "test", "delete", "deploy", "podinfo"]);
    let out = c.kubectl(&["-n", "test", "get", "deploy", "podinfo"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Error from server (NotFound): deployments.apps \"podinfo\" not found")
    );
}

/// The shell command of charts/apisix-canary/README.md that releases the Deployments
/// left paused by an uninstall, between its markers.
fn readme_release_command() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/apisix-canary/README.md")).unwrap();
    let start = readme.find("<!-- BEGIN release-paused").expect("the README's release-paused marker");
    let end = readme.find("<!-- END release-paused -->").expect("the README's end marker");
    let block = &readme[start..end];
    let body = block.split_once("```sh\n").expect("a sh block").1.split_once("```").unwrap().0;
    body.lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

/// After an uninstall (the webhook configurations gone), the README's command unpauses
/// and unlocks exactly the Deployments our webhook paused, in every namespace.
#[test]
fn the_readme_command_releases_deployments_paused_by_us() {
    let c = start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    c.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    c.ok(&["apply", "-f", &scenario("podinfo.yaml"), "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
    c.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(c.jsonpath("deploy/podinfo", "{.spec.paused}"), "true", "paused by the webhook");
    assert!(!c.jsonpath("deploy/podinfo", "{.metadata.annotations.apisix-canary\\.dev/stable-revision}").is_empty());
    // Paused by someone else, with and without annotations: left alone.
    let others = dir_file(
        "others.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: paused-by-hand, namespace: test}
spec:
  paused: true
  selector: {matchLabels: {app: a}}
  template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: nginx}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: annotated, namespace: test, annotations: {team: payments}}
spec:
  paused: true
  selector: {matchLabels: {app: b}}
  template: {metadata: {labels: {app: b}}, spec: {containers: [{name: c, image: nginx}]}}
",
    );
    c.ok(&["apply", "-f", others.path()]);
    // The uninstall.
    c.ok(&["delete", "mutatingwebhookconfiguration", "apisix-canary"]);
    c.ok(&["delete", "validatingwebhookconfiguration", "apisix-canary"]);

    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &readme_release_command()])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("PATH", format!("{}:{}", c.kubectl.parent().unwrap().display(), std::env::var("PATH").unwrap()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "deployment.apps/podinfo patched");
    assert_eq!(c.jsonpath("deploy/podinfo", "{.spec.paused}"), "false");
    let (annotations, _) = c.ok(&["-n", "test", "get", "deploy", "podinfo", "-o", "jsonpath={.metadata.annotations}"]);
    for lock in [STABLE_REVISION, CANARY_REVISION, FAILED_REVISION, RETRY] {
        assert!(!annotations.contains(lock), "{lock} left: {annotations}");
    }
    assert!(annotations.contains("apisix-canary.dev/route"), "the opt-in stays: {annotations}");
    for name in ["deploy/paused-by-hand", "deploy/annotated"] {
        assert_eq!(c.jsonpath(name, "{.spec.paused}"), "true", "{name} is not ours");
    }
}

/// kubectl sends the built-in kinds it creates itself as protobuf (`k8s\0` and a
/// `runtime.Unknown`); the sim reads them by the Kubernetes schemas and stores what a
/// cluster stores: the seed's `kubectl create ns test`, and the other `create`s users
/// type most, read back as a cluster shows them (bytes as base64, int-or-strings,
/// Go's empty fields left out, a zero that means something kept).
#[test]
fn kubectl_create_sends_protobuf_and_reads_back_as_on_a_cluster() {
    let c = start();
    let out = c.kubectl(&["create", "namespace", "test", "-v=8"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Content-Type: application/vnd.kubernetes.protobuf"), "sent as protobuf:\n{log}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "namespace/test created");

    let created = [
        (vec!["create", "configmap", "settings", "--from-literal=mode=canary"], "configmap/settings created"),
        (vec!["create", "secret", "generic", "token", "--from-literal=password=s3cr3t"], "secret/token created"),
        (
            vec!["create", "deployment", "web", "--image=nginx:1.25", "--port=80", "--replicas=0"],
            "deployment.apps/web created",
        ),
        (vec!["create", "service", "clusterip", "web", "--tcp=80:8080"], "service/web created"),
        (
            vec!["run", "shell", "--image=busybox:1.36", "--labels=app=shell", "--", "sleep", "3600"],
            "pod/shell created",
        ),
    ];
    for (args, said) in created {
        let args: Vec<&str> = ["-n", "test"].into_iter().chain(args).collect();
        assert_eq!(c.ok(&args).0.trim(), said);
    }
    assert_eq!(c.jsonpath("configmap/settings", "{.data}"), r#"{"mode":"canary"}"#);
    assert_eq!(c.jsonpath("secret/token", "{.data}"), r#"{"password":"czNjcjN0"}"#);
    assert_eq!(c.jsonpath("secret/token", "{.type}"), "Opaque");
    assert_eq!(c.jsonpath("deploy/web", "{.spec.replicas}"), "0", "--replicas=0 is kept, not defaulted to 1");
    assert_eq!(c.jsonpath("deploy/web", "{.spec.strategy.type}"), "RollingUpdate");
    assert_eq!(c.jsonpath("deploy/web", "{.spec.paused}"), "", "Go's false is left out");
    let container = c.jsonpath("deploy/web", "{.spec.template.spec.containers[0]}");
    let container: serde_json::Value = serde_json::from_str(&container).unwrap();
    assert_eq!(container["image"], "nginx:1.25");
    assert_eq!(container["ports"], serde_json::json!([{"containerPort": 80, "protocol": "TCP"}]), "{container}");
    assert!(container.get("stdin").is_none() && container.get("tty").is_none(), "{container}");
    let ports = c.jsonpath("service/web", "{.spec.ports}");
    let ports: serde_json::Value = serde_json::from_str(&ports).unwrap();
    assert_eq!(ports, serde_json::json!([{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]));
    assert_eq!(c.jsonpath("pod/shell", "{.spec.containers[0].args}"), r#"["sleep","3600"]"#);
    assert_eq!(c.jsonpath("pod/shell", "{.metadata.labels}"), r#"{"app":"shell"}"#);
    let (out, _) = c.ok(&["-n", "test", "get", "pod", "shell"]);
    assert!(out.contains("Running"), "{out}");
}

/// `method url` with `body` over plain HTTP/1.1: the status line and the body.
fn http(method: &str, url: &str, body: &str) -> (String, String) {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// Posts a Flagger webhook payload running `cmd` to the sim's load tester.
fn load_test(c: &Cluster, cmd: &str) {
    let body = serde_json::json!({"name": "podinfo", "namespace": "test", "metadata": {"cmd": cmd}}).to_string();
    let (status, answer) = http("POST", &c.loadtester, &body);
    assert!(status.starts_with("HTTP/1.1 200") && answer.contains("command started"), "{status} {answer}");
}

/// The article's way of watching: `kubectl logs deploy/NAME -f`. The load tester's pods
/// (Flagger's image) show each command it runs, followed as the lines are written, cut
/// by `--tail` and `--since`; the server `sim --with-webhook` runs in-process logs as the
/// pod of `deploy/apisix-canary`, one JSON object a line, from its first line on.
#[test]
fn kubectl_logs_tails_and_follows_the_output_of_pods() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let c = start();
    // Right after the start, before any review: the server's first lines, written
    // before its pod ran, are the start of the pod's log, as a container's would be.
    let (out, _) = c.ok(&["-n", "apisix-canary", "logs", "deploy/apisix-canary"]);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap_or_default()).unwrap();
    assert_eq!(first["message"], "serving webhooks", "{out}");
    assert!(!out.contains("admission review"), "no review made yet: {out}");
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    c.ok(&["apply", "-f", &scenario("namespace.yaml"), "-f", &scenario("loadtester.yaml")]);
    c.ok(&["-n", "test", "rollout", "status", "deploy/flagger-loadtester", "--timeout=30s"]);
    let (out, _) = c.ok(&["-n", "test", "logs", "deploy/flagger-loadtester"]);
    assert_eq!(out, "", "nothing run yet");

    // -f: each line as it is written.
    let mut follow = Command::new(&c.kubectl)
        .args(["-n", "test", "logs", "deploy/flagger-loadtester", "-f"])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send((Instant::now(), line.unwrap()));
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    load_test(&c, "hey -n 1 -c 1 http://apisix-gateway.apisix/");
    let (at, line) = rx.recv_timeout(Duration::from_secs(10)).expect("the followed line");
    assert!(at - sent < Duration::from_secs(2), "followed within {:?}", at - sent);
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (line["msg"].as_str(), line["cmd"].as_str()),
        (Some("command starting"), Some("hey -n 1 -c 1 http://apisix-gateway.apisix/"))
    );
    let (_, line) = rx.recv_timeout(Duration::from_secs(10)).expect("the command's end");
    assert!(line.contains(r#""msg":"command finished""#), "{line}");
    let _ = follow.kill();
    let _ = follow.wait();

    // --since keeps what came in the last seconds; --tail the last lines.
    std::thread::sleep(Duration::from_millis(2500));
    load_test(&c, "hey -n 2 -c 1 http://apisix-gateway.apisix/");
    std::thread::sleep(Duration::from_millis(500));
    let (all, _) = c.ok(&["-n", "test", "logs", "deploy/flagger-loadtester"]);
    assert_eq!(all.lines().count(), 4, "{all}");
    let (recent, _) = c.ok(&["-n", "test", "logs", "deploy/flagger-loadtester", "--since=2s"]);
    assert_eq!(recent.lines().count(), 2, "{recent}");
    assert!(recent.lines().all(|l| l.contains("hey -n 2")), "{recent}");
    let (last, _) = c.ok(&["-n", "test", "logs", "deploy/flagger-loadtester", "--tail=1", "--timestamps"]);
    let (stamp, line) = last.trim().split_once(' ').unwrap();
    assert!(stamp.ends_with('Z') && stamp.len() == 30, "RFC 3339 with nanoseconds: {stamp}");
    assert!(line.contains(r#""msg":"command finished""#) && line.contains("hey -n 2"), "{line}");
    let err = c.kubectl(&["-n", "test", "logs", "deploy/flagger-loadtester", "-c", "sidecar"]);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("container sidecar is not valid for pod flagger-loadtester-")
    );

    // The in-process server's log, as its pod's.
    c.ok(&["apply", "-f", &scenario("podinfo.yaml"), "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
    c.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    let (out, _) = c.ok(&["-n", "apisix-canary", "logs", "deploy/apisix-canary"]);
    let reviews: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        reviews.iter().any(|r| r["message"] == "admission review"
            && r["path"] == "/mutate/deployments"
            && r["transition"] == "started"),
        "{out}"
    );
}

/// `kubectl exec` into the load tester, as Act 2 of the article does it: `hey` through
/// the gateway (the gateway's counters move in Prometheus), `curl`, a shell fed from a
/// pipe and one on a terminal with its prompt; a missing program fails as in a
/// container, and exit codes come back as kubectl's own.
#[test]
fn kubectl_exec_runs_hey_curl_and_a_shell_in_the_load_tester() {
    use std::io::Write;
    use std::time::{Duration, Instant};

    let c = start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    let files = ["namespace.yaml", "podinfo.yaml", "service.yaml", "route.yaml", "loadtester.yaml"].map(scenario);
    let mut apply = vec!["apply"];
    for f in &files {
        apply.extend(["-f", f.as_str()]);
    }
    c.ok(&apply);
    c.ok(&["-n", "test", "rollout", "status", "deploy/flagger-loadtester", "--timeout=30s"]);
    c.ok(&["-n", "test", "rollout", "status", "deploy/podinfo", "--timeout=30s"]);
    let exec = ["-n", "test", "exec", "deploy/flagger-loadtester", "--"];

    // hey, as the article types it (shorter), and Prometheus sees the 500s.
    let hey = "hey -z 2s -c 2 -q 5 -host app.example.com http://apisix-gateway.apisix/status/500";
    let args: Vec<&str> = exec.iter().copied().chain(hey.split(' ')).collect();
    let (out, _) = c.ok(&args);
    assert!(out.contains("Summary:") && out.contains("Requests/sec:"), "{out}");
    let responses: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("[500]"))
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("500s in hey's report:\n{out}"));
    assert!((10..=22).contains(&responses), "about 2 s x 2 workers x 5/s: {responses}\n{out}");
    let query = "sum(apisix_http_status{code=\"500\"})";
    let encoded: String = query
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let url = format!("{}/api/v1/query?query={encoded}", c.prometheus);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = http("GET", &url, "");
        let seen: f64 = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/data/result/0/value/1")?.as_str()?.parse().ok())
            .unwrap_or(0.0);
        if seen >= responses as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus saw {seen} of {responses} 500s: {body}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // curl, and its exit code through kubectl.
    let curl = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "host: app.example.com",
        "http://apisix-gateway.apisix/status/503",
    ];
    let args: Vec<&str> = exec.iter().copied().chain(curl).collect();
    assert_eq!(c.ok(&args).0, "503");
    let args: Vec<&str> = exec
        .iter()
        .copied()
        .chain(["sh", "-c", "curl -sf -H 'host: app.example.com' http://apisix-gateway.apisix/status/404 || exit 9"])
        .collect();
    let out = c.kubectl(&args);
    assert_eq!(out.status.code(), Some(9), "{}", String::from_utf8_lossy(&out.stderr));

    // A missing program, run directly and from the shell.
    let args: Vec<&str> = exec.iter().copied().chain(["bash2", "-l"]).collect();
    let out = c.kubectl(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"exec: "bash2": executable file not found in $PATH"#),
        "{out:?}"
    );
    let args: Vec<&str> = exec.iter().copied().chain(["sh", "-c", "date"]).collect();
    let out = c.kubectl(&args);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().next(), Some("sh: date: not found"));

    // A shell reading a pipe: no prompt, no echo; `exit 4` is kubectl's exit code.
    let mut shell = Command::new(&c.kubectl)
        .args(["-n", "test", "exec", "-i", "deploy/flagger-loadtester", "--", "sh"])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    shell.stdin.take().unwrap().write_all(b"echo one\nfalse && echo never\necho two\nexit 4\necho after\n").unwrap();
    let out = shell.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    assert_eq!(out.status.code(), Some(4));

    // `-it`, under a terminal (script(1) gives kubectl one): the prompt, the echo, Ctrl-C.
    let script = binaries::require_binary("script");
    let kubectl = format!("{} -n test exec -it deploy/flagger-loadtester -- sh", c.kubectl.display());
    let mut terminal = Command::new(script)
        .args(["-qec", &kubectl, "/dev/null"])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut keys = terminal.stdin.take().unwrap();
    let watch = r#"watch -n 1 curl -s -H \"host: app.example.com\" http://apisix-gateway.apisix/status/202"#;
    let typed = [
        "echo hi\r",
        "hey -z 30s -q 1 -c 1 http://apisix-gateway.apisix/\r",
        "\x03",
        &format!("{watch}\r"),
        "",
        "\x03",
        "exit 6\r",
    ];
    for typed in typed {
        std::thread::sleep(Duration::from_millis(700));
        keys.write_all(typed.as_bytes()).unwrap();
        keys.flush().unwrap();
    }
    let started = Instant::now();
    let out = terminal.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(started.elapsed() < Duration::from_secs(20), "Ctrl-C stopped the 30 s hey");
    assert!(screen.contains("~ $ echo hi\r\nhi\r\n~ $ "), "{screen:?}");
    assert!(screen.contains("Summary:"), "hey's report after Ctrl-C: {screen:?}");
    // The article's quotes, escaped: watch joins its words and sh reads them again.
    let every = r#"Every 1.0s: curl -s -H "host: app.example.com" http://apisix-gateway.apisix/status/202"#;
    assert!(screen.contains(every), "{screen:?}");
    assert!(screen.contains("{\"status\":202}"), "{screen:?}");
    assert!(screen.contains("/\r\n^C\r\n\r\nSummary:"), "Ctrl-C echoed once, then hey's report: {screen:?}");
    assert!(!screen.contains("~ $ ^C"), "the interrupt is not input to the next prompt: {screen:?}");
    assert!(screen.matches("\x1b[H\x1b[J").count() >= 2, "watch ran the command again: {screen:?}");
    assert_eq!(out.status.code(), Some(6), "{screen:?}");
}

/// Server-side apply between two managers, as kube-apiserver has it: a field the other
/// manager owns is a conflict (kubectl's message and exit status) until
/// `--force-conflicts` takes it over; a field a manager stops applying is removed,
/// unless another manager owns it.
#[test]
fn server_side_apply_conflicts_force_and_removes_what_is_no_longer_applied() {
    let c = start();
    let config = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n{data}")
    };
    let team_a = dir_file("a.yaml", &config("  mode: canary\n  interval: 1m\n  owner: team-a\n"));
    let (out, _) = c.ok(&["apply", "--server-side", "--field-manager=team-a", "-f", team_a.path()]);
    assert_eq!(out.trim(), "configmap/settings serverside-applied");

    let team_b = dir_file("b.yaml", &config("  mode: blue-green\n"));
    let out = c.kubectl(&["apply", "--server-side", "--field-manager=team-b", "-f", team_b.path()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: Apply failed with 1 conflict: conflict with \"team-a\": .data.mode"), "{err}");
    assert!(err.contains("--force-conflicts"), "kubectl's advice: {err}");
    let data = |c: &Cluster| c.ok(&["get", "configmap", "settings", "-o", "jsonpath={.data}"]).0;
    assert_eq!(data(&c), r#"{"interval":"1m","mode":"canary","owner":"team-a"}"#, "nothing written");

    c.ok(&["apply", "--server-side", "--field-manager=team-b", "--force-conflicts", "-f", team_b.path()]);
    assert_eq!(data(&c), r#"{"interval":"1m","mode":"blue-green","owner":"team-a"}"#);
    let owners = c.ok(&["get", "configmap", "settings", "--show-managed-fields", "-o", "json"]).0;
    let owners: serde_json::Value = serde_json::from_str(&owners).unwrap();
    let fields_of = |manager: &str| {
        owners["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .map(|e| e["fieldsV1"]["f:data"].as_object().unwrap().keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(fields_of("team-b"), [".", "f:mode"]);
    assert_eq!(fields_of("team-a"), [".", "f:interval", "f:owner"], "mode taken over");

    // team-a stops applying `interval` and `mode`: interval goes; mode is team-b's now.
    let team_a = dir_file("a.yaml", &config("  owner: team-a\n"));
    c.ok(&["apply", "--server-side", "--field-manager=team-a", "-f", team_a.path()]);
    assert_eq!(data(&c), r#"{"mode":"blue-green","owner":"team-a"}"#);

    // Lists merged by a key are owned item by item: `kubectl set image` takes one
    // container's image, and the conflict names that field of that item.
    let deployment = |image: &str, env: &[&str]| {
        let env: String = env.iter().map(|e| format!("\n            - {{name: {e}, value: \"1\"}}")).collect();
        dir_file(
            "web.yaml",
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  \
                 selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    \
                 spec:\n      containers:\n        - name: app\n          image: {image}\n          env:{env}\n        \
                 - name: proxy\n          image: envoy:1.30\n"
            ),
        )
    };
    let web = deployment("nginx:1.25", &["A", "B"]);
    c.ok(&["apply", "--server-side", "--field-manager=team-a", "-f", web.path()]);
    c.ok(&["set", "image", "deployment/web", "app=nginx:1.26"]);
    let web = deployment("nginx:1.25", &["A", "B"]);
    let out = c.kubectl(&["apply", "--server-side", "--field-manager=team-a", "-f", web.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: Apply failed with 1 conflict: conflict with \"kubectl-set\" using apps/v1: .spec.template.spec.containers[name=\"app\"].image"),
        "{err}"
    );
    // Applying what runs now, without env B: B goes, the rest stays.
    let web = deployment("nginx:1.26", &["A"]);
    c.ok(&["apply", "--server-side", "--field-manager=team-a", "-f", web.path()]);
    let containers = c.ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers}"]).0;
    let containers: serde_json::Value = serde_json::from_str(&containers).unwrap();
    assert_eq!(containers[0]["image"], "nginx:1.26");
    assert_eq!(containers[0]["env"], serde_json::json!([{"name": "A", "value": "1"}]));
    assert_eq!(containers[1]["name"], "proxy");
}

/// `kubectl delete --cascade=orphan` leaves the ReplicaSets and pods running without an
/// owner; the Deployment applied again adopts them, as kube-controller-manager does,
/// instead of starting new ones.
#[test]
fn a_deployment_applied_again_adopts_the_replica_sets_it_orphaned() {
    let c = start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    c.ok(&["apply", "-f", &scenario("namespace.yaml"), "-f", &scenario("podinfo.yaml")]);
    c.ok(&["-n", "test", "rollout", "status", "deploy/podinfo", "--timeout=30s"]);
    let replica_sets = |c: &Cluster| {
        let out = c.ok(&["-n", "test", "get", "rs", "-l", "app=podinfo", "-o", "json"]).0;
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rs| {
                let owner = rs.pointer("/metadata/ownerReferences/0/uid").and_then(|u| u.as_str()).unwrap_or("");
                (rs["metadata"]["name"].as_str().unwrap().to_owned(), owner.to_owned())
            })
            .collect::<Vec<_>>()
    };
    let pods = |c: &Cluster| c.ok(&["-n", "test", "get", "pods", "-l", "app=podinfo", "-o", "name"]).0;
    let (before, pods_before) = (replica_sets(&c), pods(&c));
    assert_eq!(before.len(), 1, "{before:?}");

    c.ok(&["-n", "test", "delete", "deploy", "podinfo", "--cascade=orphan"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(replica_sets(&c), [(before[0].0.clone(), String::new())], "orphaned, still there");

    c.ok(&["apply", "-f", &scenario("podinfo.yaml")]);
    c.ok(&["-n", "test", "rollout", "status", "deploy/podinfo", "--timeout=30s"]);
    let uid = c.jsonpath("deploy/podinfo", "{.metadata.uid}");
    assert_eq!(replica_sets(&c), [(before[0].0.clone(), uid)], "adopted, none new");
    assert_eq!(pods(&c), pods_before, "the same pods serve");
}

/// A watch from a resourceVersion the cluster has not reached: kube-apiserver waits a
/// moment for it, then answers 504 "Too large resource version" (clients relist); one
/// reached meanwhile streams as any other.
#[test]
fn a_watch_from_a_future_resource_version_waits_then_times_out() {
    use std::time::{Duration, Instant};
    let c = start();
    let version = |c: &Cluster| -> u64 {
        let list: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/configmaps"]).0).unwrap();
        list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
    };
    let current = version(&c);
    let future = (current + 1000).to_string();
    let started = Instant::now();
    let watch_from = |rv: &str| format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}");
    let out = c.kubectl(&["get", "--raw", &watch_from(&future), "--request-timeout=20s"]);
    let waited = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("Timeout: Too large resource version: {future}, current: ")), "{err}");
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(15), "{waited:?}");

    // Two versions ahead: two writes reach it within the wait, the third is the first event.
    let next = (version(&c) + 2).to_string();
    let mut watch = Command::new(&c.kubectl)
        .args(["get", "--raw", &watch_from(&next)])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&["create", "configmap", "first", "-n", "default"]);
    c.ok(&["create", "configmap", "second", "-n", "default"]);
    c.ok(&["create", "configmap", "third", "-n", "default"]);
    let mut line = String::new();
    BufReader::new(watch.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = watch.kill();
    let _ = watch.wait();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["object"]["metadata"]["name"], "third", "events after the version asked for: {line}");
}

/// The node the pods name (`spec.nodeName: sim-node`) is there, Ready, and an admin
/// kubeconfig may do anything: `kubectl get nodes` and `kubectl auth can-i` answer as on
/// a one-node cluster.
#[test]
fn get_nodes_and_auth_can_i_answer_as_a_one_node_cluster() {
    let c = start();
    let (out, _) = c.ok(&["get", "nodes"]);
    assert_eq!(header(&out), ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[0], row[1], row[2], row[4]), ("sim-node", "Ready", "control-plane", "v1.33.0"), "{out}");
    let (out, _) = c.ok(&["describe", "node", "sim-node"]);
    assert!(!out.contains("Failed to get lease"), "{out}");
    for args in [
        &["auth", "can-i", "get", "pods"][..],
        &["auth", "can-i", "*", "*", "--all-namespaces"],
        &["auth", "can-i", "patch", "deployments", "-n", "test"],
    ] {
        assert_eq!(c.ok(args).0.trim(), "yes", "{args:?}");
    }
}

/// The README's sim block, pasted as one script (in a fresh directory, with this build
/// for `target/release/apisix-canary`): it waits for the kubeconfig the sim writes once
/// it serves, and its last line says the release was intercepted.
#[test]
fn the_readme_sim_block_runs_as_one_script() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start =
        readme.find("rm -f sim.kubeconfig; target/release/apisix-canary sim --with-webhook").expect("the block");
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let root = env!("CARGO_MANIFEST_DIR");
    let script = block
        .replace("target/release/apisix-canary", BIN)
        .replace("tests/fixtures/", &format!("{root}/tests/fixtures/"));
    let dir = tempfile::tempdir().unwrap();
    let prometheus = binaries::require_binary("prometheus");
    let out = Command::new("bash")
        .args(["-c", &format!("set -e\n{script}\nkill $!; wait $! || true\n")])
        .current_dir(dir.path())
        .env("APISIX_CANARY_SIM_PROMETHEUS_BIN", &prometheus)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.trim_end().ends_with("true"), "the last command's answer: {stdout}");
}
