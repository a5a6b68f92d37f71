//! `apisix-canary report` against the sim with the real controller and Prometheus, on
//! two releases of a Canary with two built-in metrics and a MetricTemplate: one promoted,
//! charted as SVG, then one rolled back while the stable fails as much as the canary,
//! as an HTML page opened in a real headless Chromium (no console error, a screenshot
//! kept under the target directory). Every point charted is a check the analysis
//! judged (`status.checks`, the Halt Events' numbers); the nodes are the release's own.
//! Also its refusals: no release, no Prometheus.

#[path = "support/e2e.rs"]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::*;
use k8s_openapi::jiff::Timestamp;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The analysis: a step every 2 s up to 30, three failed checks roll back; the metrics
/// over 10 s, each judged once the canary has served 10 requests in it. The template's
/// share of 4xx is 0 (not "no values") when none was a 4xx.
const CANARY: &str = r#"apiVersion: apisix-canary.dev/v1beta1
kind: MetricTemplate
metadata:
  name: not-found-percentage
  namespace: test
spec:
  provider:
    type: prometheus
    address: PROMETHEUS
  query: |
    ( sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ generated_route }}_.+",node=~"{{ canary_nodes }}",code=~"4.."}[{{ interval }}])) or on() vector(0) )
    / sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ generated_route }}_.+",node=~"{{ canary_nodes }}"}[{{ interval }}])) * 100
---
apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}
  progressDeadlineSeconds: 60
  analysis:
    interval: 2s
    threshold: 3
    maxWeight: 30
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        interval: 10s
        minRequests: 10
      - name: request-duration
        thresholdRange: {max: 500}
        interval: 10s
        minRequests: 10
      - name: 404s percentage
        templateRef: {name: not-found-percentage}
        thresholdRange: {max: 5}
        interval: 10s
        minRequests: 10
"#;

const TEMPLATE_METRIC: &str = "404s percentage";

fn cli(w: &World, args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("KUBECONFIG", &w.kubeconfig).output().unwrap()
}

/// `report` into `out`, with `flags`; what it said on stderr.
fn report(w: &World, out: &Path, flags: &[&str]) -> String {
    let out = out.to_str().unwrap();
    let run = cli(w, &[&["report", "podinfo", "-n", "test", "--out", out][..], flags].concat());
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "report {out}: {:?}\n{stderr}", run.status);
    stderr
}

fn install(w: &World) {
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    w.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    let files = [
        w.file("podinfo.yaml", &canary_mode_podinfo()),
        w.file("canary.yaml", &CANARY.replace("PROMETHEUS", &w.prometheus_url)),
    ];
    w.ok(&["apply", "-f", &files[0], "-f", &files[1], "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
}

/// The IP of the canary's one pod, once it runs.
fn canary_pod_ip(w: &World) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let path = "jsonpath={.items[*].status.podIP}";
        let ips = w.ok(&["-n", "test", "get", "pods", "-l", "app=podinfo-canary", "-o", path]);
        let ips: Vec<&str> = ips.split_whitespace().collect();
        if let [ip] = ips[..] {
            return ip.to_owned();
        }
        assert!(Instant::now() < deadline, "canary pods {ips:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Now, in whole seconds (what `status.checks` records).
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap()
}

/// `status.checks` of `metric`: (time, value) of those with a value, and how many. Every
/// check recorded is this release's, the one started at `since`.
fn recorded(w: &World, metric: &str, since: Timestamp) -> (Vec<(String, f64)>, usize) {
    let canary: serde_json::Value =
        serde_json::from_str(&w.ok(&["-n", "test", "get", "canary/podinfo", "-o", "json"])).unwrap();
    let checks = canary["status"]["checks"].as_array().cloned().unwrap_or_default();
    for c in &checks {
        let at: Timestamp = c["time"].as_str().unwrap().parse().unwrap();
        assert!(at >= since, "a check of an earlier release, {c}, in the status of the one started at {since}");
    }
    let of: Vec<&serde_json::Value> = checks.iter().filter(|c| c["metric"] == metric).collect();
    let valued = of.iter().filter_map(|c| Some((c["time"].as_str()?.to_owned(), c["value"].as_f64()?))).collect();
    (valued, of.len())
}

/// The checks charted for `metric`: (data-at, data-value, cy) of each marker with a
/// value, and how many markers in all.
fn charted(svg: &roxmltree::Document<'_>, metric: &str) -> (Vec<(String, f64, f64)>, usize) {
    let markers: Vec<roxmltree::Node<'_, '_>> = svg
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.attribute("class").is_some_and(|c| c.starts_with("check ")))
        .filter(|n| n.attribute("data-metric") == Some(metric))
        .collect();
    let valued = markers
        .iter()
        .filter_map(|n| {
            let value = n.attribute("data-value")?.parse().unwrap();
            Some((n.attribute("data-at").unwrap().to_owned(), value, n.attribute("cy").unwrap().parse().unwrap()))
        })
        .collect();
    (valued, markers.len())
}

/// Every check of `metric` is charted, at its time, with the value it judged, drawn at
/// that value (one linear map from value to pixel); the values charted.
fn assert_charted_as_checked(w: &World, svg: &roxmltree::Document<'_>, metric: &str, since: Timestamp) -> Vec<f64> {
    let (want, all) = recorded(w, metric, since);
    let (got, markers) = charted(svg, metric);
    assert!(!want.is_empty(), "no check of {metric} with a value recorded");
    assert_eq!(markers, all, "{metric}: one marker per check");
    let pairs: Vec<(String, f64)> = got.iter().map(|(at, v, _)| (at.clone(), *v)).collect();
    assert_eq!(pairs.len(), want.len(), "{metric}: {pairs:?} charted, {want:?} recorded");
    for ((at, v), (want_at, want_v)) in pairs.iter().zip(&want) {
        assert_eq!(at, want_at, "{metric}: charted at the check's time");
        assert!((v - want_v).abs() < 1e-9, "{metric} at {at}: charted {v}, checked {want_v}");
    }
    let lo = got.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let hi = got.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    for (at, v, cy) in &got {
        let expected = if hi.1 > lo.1 { lo.2 + (v - lo.1) / (hi.1 - lo.1) * (hi.2 - lo.2) } else { lo.2 };
        assert!((cy - expected).abs() <= 1.0, "{metric} at {at}: {v} drawn at y {cy}, not {expected}");
    }
    got.into_iter().map(|(_, v, _)| v).collect()
}

/// The number in each "success rate N% < 99%" Halt Event of the Canary.
fn halted_success_rates(w: &World) -> Vec<f64> {
    w.events()
        .iter()
        .filter_map(|m| m.split_once("advancement success rate ")?.1.split_once('%')?.0.parse().ok())
        .collect()
}

/// The most points of any `<polyline>` of `class`.
fn points(svg: &roxmltree::Document<'_>, class: &str) -> usize {
    svg.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("class") == Some(class))
        .map(|n| n.attribute("points").unwrap_or_default().split_whitespace().count())
        .max()
        .unwrap_or(0)
}

fn texts<'a>(svg: &'a roxmltree::Document<'_>) -> Vec<&'a str> {
    svg.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect()
}

#[test]
fn each_release_is_charted_as_its_checks_judged_it_and_opens_in_a_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run .ci/run (it installs Debian's chromium) to open the report in a browser"
    );
    let started = Instant::now();
    let w = World::start();
    install(&w);
    let dir = w.dir.path().to_path_buf();

    // Before any release there is nothing to chart.
    let none = cli(&w, &["report", "podinfo", "-n", "test", "--prometheus-url", &w.prometheus_url]);
    assert_eq!(none.status.code(), Some(1), "{none:?}");
    assert!(String::from_utf8_lossy(&none.stderr).contains("has no release to report"), "{none:?}");

    // The first release, promoted.
    let traffic = w.traffic();
    std::thread::sleep(Duration::from_secs(3));
    let first = now();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(10, Duration::from_secs(60));
    let first_canary = canary_pod_ip(&w);
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    // Prometheus scrapes every second: let it see the end of the release.
    std::thread::sleep(Duration::from_secs(3));

    let svg_path = dir.join("podinfo.svg");
    let said = report(&w, &svg_path, &["--prometheus-url", &w.prometheus_url]);
    let text = std::fs::read_to_string(&svg_path).unwrap();
    let svg = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}: {said}\n{text}"));
    assert_eq!(svg.root_element().tag_name().name(), "svg");
    let panels: Vec<&str> = svg.descendants().filter_map(|n| n.attribute("data-metric")).collect();
    for metric in ["request-success-rate", "request-duration", TEMPLATE_METRIC] {
        assert!(panels.contains(&metric), "no panel of {metric}: {said}");
        assert_charted_as_checked(&w, &svg, metric, first);
    }
    assert!(points(&svg, "canary-weight") > 1, "{said}");
    let advances = svg.descendants().filter(|n| n.attribute("class") == Some("marker-advance")).count();
    assert!(advances >= 3, "three Advance markers (and a legend swatch): {advances}");
    let legends = texts(&svg);
    for legend in ["canary weight %", "canary, as checked", "min 99", "max 500", "max 5"] {
        assert!(legends.contains(&legend), "no legend {legend:?} in {legends:?}");
    }
    assert!(
        said.contains(&format!("canary nodes [{first_canary:?}]")),
        "the first release's one canary pod, {first_canary}: {said}"
    );

    // The second release answers 500s to half the requests, and so does the stable.
    traffic.store(false, Ordering::Relaxed);
    let errors = w.traffic_to(&["/api/info", "/status/500"]);
    std::thread::sleep(Duration::from_secs(2));
    let second = now();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.2"]);
    w.wait_weight(10, Duration::from_secs(60));
    let second_canary = canary_pod_ip(&w);
    assert_ne!(first_canary, second_canary);
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(60)), "Failed", "{:#?}", w.events());
    std::thread::sleep(Duration::from_secs(3));
    errors.store(false, Ordering::Relaxed);

    // Without --prometheus-url: the Prometheus the checks queried.
    let html_path = dir.join("podinfo.html");
    let said = report(&w, &html_path, &[]);
    assert!(
        said.contains(&format!("prometheus {}", w.prometheus_url)) && said.contains("status.metricsServer"),
        "{said}"
    );
    let page = std::fs::read_to_string(&html_path).unwrap();
    let inline = &page[page.find("<svg").expect("the chart inline")..page.find("</svg>").unwrap() + 6];
    let svg = roxmltree::Document::parse(inline).unwrap_or_else(|e| panic!("{e}\n{inline}"));
    let rates = assert_charted_as_checked(&w, &svg, "request-success-rate", second);
    let halts = halted_success_rates(&w);
    assert!(!halts.is_empty(), "no success-rate Halt: {:#?}", w.events());
    for halt in &halts {
        assert!(
            rates.iter().any(|r| (r - halt).abs() <= 0.005),
            "the Halt's {halt}% is not a point charted: {rates:?}"
        );
    }
    assert!(rates.iter().any(|r| *r < 99.0), "the failed checks are charted: {rates:?}");
    let failed = svg.descendants().filter(|n| n.attribute("class") == Some("check failed")).count();
    assert!(failed >= 3, "the failed checks marked: {failed}");
    assert_charted_as_checked(&w, &svg, TEMPLATE_METRIC, second);
    assert!(texts(&svg).iter().any(|t| t.starts_with(TEMPLATE_METRIC)), "its panel's caption");
    assert!(page.contains(&format!("<td>{TEMPLATE_METRIC}</td>")), "its checks in the table");

    // This release's one canary pod, not the first release's.
    assert!(page.contains(&format!("Canary nodes: {second_canary}. Stable nodes: ")), "{said}");
    // The stable answered 500s alike, and the page says so before the chart.
    let alike = page.find("the stable failed alike").unwrap_or_else(|| panic!("not said:\n{page}"));
    assert!(alike < page.find("<svg").unwrap());
    assert!(page.contains("the stable answered") && page.contains("`compare: baseline`"), "{page}");
    let stable = svg.descendants().filter(|n| n.attribute("class") == Some("stable-check")).count();
    assert!(stable >= 3, "the stable's value at the checks: {stable}");
    // The last time label fits.
    let width: f64 = svg.root_element().attribute("width").unwrap().parse().unwrap();
    for n in svg.descendants().filter(|n| n.attribute("text-anchor") == Some("middle")) {
        let x: f64 = n.attribute("x").unwrap().parse().unwrap();
        let len = n.text().unwrap_or_default().trim().len() as f64;
        assert!(x + len * 3.5 <= width, "{:?} at {x} runs past {width}", n.text());
    }

    // A real browser: no console error, and a screenshot to look at.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let png = shots.join("report-screenshot.png");
    let _ = std::fs::remove_file(&png);
    let browser = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", dir.join("chromium").display()))
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1280,1400", &format!("file://{}", html_path.display())])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&browser.stderr);
    assert!(browser.status.success(), "chromium: {:?}\n{log}", browser.status);
    let errors: Vec<&str> =
        log.lines().filter(|l| (l.contains("CONSOLE") && l.contains("ERROR")) || l.contains("Uncaught")).collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot {} is {size} bytes\n{log}", png.display());
    println!("screenshot: {}", png.display());

    // No Prometheus: a clear refusal.
    let args = ["report", "podinfo", "-n", "test", "--out", html_path.to_str().unwrap()];
    let down = cli(&w, &[&args[..], &["--prometheus-url", "http://127.0.0.1:9"]].concat());
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("prometheus at http://127.0.0.1:9 unreachable"), "{stderr}");
    println!("two releases reported in {:?}", started.elapsed());
}
