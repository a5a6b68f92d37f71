//! `apisix-canary demo` as a newcomer runs it: the built binary, no cluster, no flags,
//! output not on a terminal. It must play SCENARIO.md's three acts, as the scenario
//! says they end, in Flagger's words, well within two minutes.

#[path = "support/binaries.rs"]
mod binaries;

use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_apisix-canary");
/// The demo's budget is two minutes; the test machine is shared, so a little more.
const BUDGET: Duration = Duration::from_secs(150);
/// The article's Canary as written.
const MAX_WEIGHT: u32 = 50;

/// The `N` of every `weight N%` of the live lines.
fn live_weights(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| l.split_once(" weight ").map(|(_, rest)| rest.trim_start()))
        .filter_map(|rest| rest.split_once('%').and_then(|(n, _)| n.trim().parse().ok()))
        .collect()
}

#[test]
fn the_demo_plays_the_three_acts_as_the_scenario_says() {
    let prometheus = binaries::require_binary("prometheus");
    let started = Instant::now();
    let output = Command::new(BIN)
        .arg("demo")
        .env("APISIX_CANARY_SIM_PROMETHEUS_BIN", &prometheus)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let took = started.elapsed();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("the demo took {took:?}");
    assert!(output.status.success(), "exit {:?}\nstdout:\n{out}\nstderr:\n{err}", output.status);
    assert!(took < BUDGET, "the demo took {took:?}\n{out}");
    assert!(err.trim().is_empty(), "logs stay off by default: {err}");
    assert!(!out.contains('\r') && !out.contains('█'), "no redrawn lines off a terminal:\n{out}");

    for said in [
        "$ kubectl apply -k src/demo/cast/podinfo/",
        "took deployment/podinfo over and generated service/podinfo",
        "== Act 1: ",
        "$ kubectl -n test set image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.1",
        "Advance podinfo.test canary weight 10",
        "Promotion completed! Scaling down podinfo.test",
        "== Act 2: ",
        "$ kubectl -n test set image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.2",
        "http://apisix-gateway.apisix/status/500",
        "Rolling back podinfo.test failed checks threshold reached 10",
        "Canary failed! Scaling down podinfo.test",
        "== Act 3: ",
        "podinfod=stefanprodan/podinfo:6.0.3",
        "Halt podinfo.test advancement 404s percentage",
    ] {
        assert!(out.contains(said), "{said:?} not in:\n{out}");
    }
    // In order: each act's ending before the next act.
    let at = |s: &str| out.find(s).unwrap();
    assert!(at("Promotion completed!") < at("== Act 2: ") && at("== Act 2: ") < at("threshold reached"));
    assert!(at("threshold reached") < at("== Act 3: ") && at("== Act 3: ") < at("advancement 404s percentage"));

    let weights = live_weights(&out);
    assert!(weights.contains(&MAX_WEIGHT), "act 1 reached maxWeight in the live lines: {weights:?}\n{out}");
    assert!(weights.iter().all(|w| *w <= MAX_WEIGHT), "a weight above maxWeight: {weights:?}\n{out}");
    let live = out.lines().filter(|l| l.contains(" weight ") && l.contains("success rate")).count();
    assert!(live >= 6, "live lines per step: {live}\n{out}");

    let table = &out[at("act  expected")..];
    let rows: Vec<&str> = table.lines().skip(1).take(3).collect();
    assert!(
        rows[0].starts_with("1    Succeeded           Succeeded ") && rows[0].ends_with("10 20 30 40 50"),
        "{table}"
    );
    assert!(rows[1].starts_with("2    Failed (threshold)  Failed (threshold) "), "{table}");
    assert!(rows[2].starts_with("3    Failed (404s)       Failed (404s) "), "{table}");
}

#[test]
fn one_act_runs_alone_and_a_bad_act_number_is_refused() {
    let refused = Command::new(BIN).args(["demo", "--act", "4"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--act"));

    let prometheus = binaries::require_binary("prometheus");
    let reports = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["demo", "--act", "2", "--report"])
        .arg(reports.path())
        .env("APISIX_CANARY_SIM_PROMETHEUS_BIN", &prometheus)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(!out.contains("== Act 1: ") && !out.contains("== Act 3: "), "{out}");
    // From a freshly initialized Canary: 6.0.0 to 6.0.2, rolled back.
    assert!(out.contains("podinfod=stefanprodan/podinfo:6.0.2") && out.contains("threshold reached 10"), "{out}");
    let table = &out[out.find("act  expected").unwrap()..];
    assert_eq!(table.lines().filter(|l| !l.trim().is_empty()).count(), 3, "header, act 2, the verdict: {table}");
    // --report: the act's release as `report` draws it, its rollback marked.
    let svg = std::fs::read_to_string(reports.path().join("act-2.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG parses as XML");
    assert!(doc.descendants().any(|n| n.attribute("class") == Some("marker-rollback")), "no rollback marker");
    let html = std::fs::read_to_string(reports.path().join("act-2.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Rolling back podinfo.test failed checks threshold reached 10"));
}

/// `demo --keep` leaves the cluster running for kubectl: the pod the sim runs for our
/// in-process server and controller logs what they wrote, from the server's first line
/// (written before its pod ran) to the release the act played, in order.
#[test]
fn under_keep_the_servers_pod_logs_the_server_and_the_controller() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let prometheus = binaries::require_binary("prometheus");
    let kubectl = binaries::require_binary("kubectl");
    let child = Command::new(BIN)
        .args(["demo", "--act", "1", "--keep"])
        .env("APISIX_CANARY_SIM_PROMETHEUS_BIN", &prometheus)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut demo = binaries::Proc(child);
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = demo.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The keep lines end with how to read the log; then the demo waits for Ctrl-C.
    let mut said = String::new();
    let deadline = Instant::now() + BUDGET;
    while !said.contains("logs deploy/apisix-canary") {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => said.push_str(&(line + "\n")),
            Err(e) => panic!("no keep lines from demo --keep ({e}):\n{said}"),
        }
    }
    let kubeconfig = said
        .lines()
        .find_map(|l| l.strip_prefix("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("no kubeconfig from demo --keep:\n{said}"))
        .to_owned();
    assert!(said.contains("\nkubectl -n apisix-canary logs deploy/apisix-canary "), "{said}");
    let out = Command::new(&kubectl)
        .args(["-n", "apisix-canary", "logs", "deploy/apisix-canary", "--timestamps"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&kubeconfig);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}\n{}", String::from_utf8_lossy(&out.stderr));
    // `TIME {json}` a line.
    let lines: Vec<(&str, serde_json::Value)> = log
        .lines()
        .map(|l| {
            let (at, json) = l.split_once(' ').unwrap_or_else(|| panic!("no timestamp: {l}"));
            (at, serde_json::from_str(json).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        })
        .collect();
    assert_eq!(lines.first().map(|(_, l)| &l["message"]), Some(&"serving webhooks".into()), "{log}");
    assert!(lines.windows(2).all(|w| w[0].0 <= w[1].0), "in the order written:\n{log}");
    let at = |message: &str| {
        lines
            .iter()
            .position(|(_, l)| l["message"].as_str().is_some_and(|m| m.starts_with(message)))
            .unwrap_or_else(|| panic!("no {message:?} in the log:\n{log}"))
    };
    let (synced, promoted) = (at("controller caches synced"), at("Promotion completed! Scaling down podinfo.test"));
    assert!(synced < promoted, "{log}");
    assert!(lines[promoted].1["target"].as_str().is_some_and(|t| t.starts_with("apisix_canary::controller")), "{log}");
    assert!(lines.iter().any(|(_, l)| l["message"] == "admission review"), "the webhook's reviews too:\n{log}");
    drop(demo);
}

/// README's first command on a machine without Prometheus: the demo says what is
/// missing and the command that installs it, on a line of its own, and starts nothing.
#[test]
fn a_missing_prometheus_is_told_with_the_command_that_installs_it() {
    let started = Instant::now();
    let output = Command::new(BIN)
        .args(["demo", "--prometheus-bin", "/nonexistent/prometheus"])
        .env_remove("APISIX_CANARY_SIM_PROMETHEUS_BIN")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed at once: {:?}", started.elapsed());
    assert!(
        err.starts_with(
            "error: the demo needs Prometheus, and --prometheus-bin names /nonexistent/prometheus, which does not exist."
        ),
        "{err}"
    );
    if std::path::Path::new("/usr/bin/apt-get").is_file() {
        let command = err.lines().nth(1).unwrap_or_default();
        let command =
            command.strip_prefix("    ").unwrap_or_else(|| panic!("the command on a line of its own:\n{err}"));
        let command = command.replace("sudo ", "");
        assert_eq!(command, "apt-get update && apt-get install -y prometheus", "{err}");
        assert!(err.contains("or name a Prometheus binary with --prometheus-bin PATH"), "{err}");
    } else {
        assert!(err.contains("Download it from https://prometheus.io/download/"), "{err}");
    }
}
