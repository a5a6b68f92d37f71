//! `apisix-canary report` against the sim with the real controller and Prometheus: a
//! promoted release charted as SVG (parsed: one line per series, each with points) and
//! as an HTML page opened in a real headless Chromium (no console error, a screenshot
//! kept under the target directory). Also its refusals: no release, no Prometheus.

#[path = "support/e2e.rs"]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::*;

const CHROMIUM: &str = "/usr/bin/chromium";

fn cli(w: &World, args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("KUBECONFIG", &w.kubeconfig).output().unwrap()
}

fn report(w: &World, out: &Path) -> String {
    let out = out.to_str().unwrap();
    let args = ["report", "podinfo", "-n", "test", "--out", out, "--prometheus-url", &w.prometheus_url];
    let run = cli(w, &args);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "report {out}: {:?}\n{stderr}", run.status);
    stderr
}

/// The most points of any `<polyline>` of `class`.
fn points(svg: &roxmltree::Document<'_>, class: &str) -> usize {
    svg.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("class") == Some(class))
        .map(|n| n.attribute("points").unwrap_or_default().split_whitespace().count())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_promoted_release_is_charted_and_opens_in_a_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run .ci/run (it installs Debian's chromium) to open the report in a browser"
    );
    let w = World::start();
    w.install(30);
    let dir = w.dir.path().to_path_buf();

    // Before any release there is nothing to chart.
    let none = cli(&w, &["report", "podinfo", "-n", "test", "--prometheus-url", &w.prometheus_url]);
    assert_eq!(none.status.code(), Some(1), "{none:?}");
    assert!(String::from_utf8_lossy(&none.stderr).contains("has no release to report"), "{none:?}");

    let traffic = w.traffic();
    std::thread::sleep(Duration::from_secs(3));
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    // Prometheus scrapes every second: let it see the end of the release.
    std::thread::sleep(Duration::from_secs(3));
    traffic.store(false, Ordering::Relaxed);

    let svg_path = dir.join("podinfo.svg");
    let said = report(&w, &svg_path);
    let text = std::fs::read_to_string(&svg_path).unwrap();
    let svg = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}: {said}\n{text}"));
    assert_eq!(svg.root_element().tag_name().name(), "svg");
    for class in [
        "canary-weight",
        "canary-success-rate",
        "stable-success-rate",
        "canary-p99",
        "stable-p99",
        "threshold-success-rate",
        "threshold-p99",
    ] {
        assert!(points(&svg, class) > 1, "{class}: {} points\n{said}", points(&svg, class));
    }
    let texts: Vec<&str> =
        svg.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
    for legend in ["canary weight %", "canary success rate", "stable success rate", "canary P99", "stable P99"] {
        assert!(texts.contains(&legend), "no legend {legend:?} in {texts:?}");
    }
    assert!(texts.contains(&"min success rate 99") && texts.contains(&"max P99 500"), "{texts:?}");
    let advances = svg.descendants().filter(|n| n.attribute("class") == Some("marker-advance")).count();
    assert!(advances >= 3, "three Advance markers (and a legend swatch): {advances}");

    let html_path = dir.join("podinfo.html");
    report(&w, &html_path);
    let page = std::fs::read_to_string(&html_path).unwrap();
    for message in ["New revision detected! Scaling up podinfo.test", "Advance podinfo.test canary weight 30"] {
        assert!(page.contains(&format!("<td>{message}")), "{message} not in the table");
    }
    assert!(page.contains("<svg") && !page.contains("<script"), "the chart inline, no script");

    // A real browser: no console error, and a screenshot to look at.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let png = shots.join("report-screenshot.png");
    let _ = std::fs::remove_file(&png);
    let browser = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", dir.join("chromium").display()))
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1280,900", &format!("file://{}", html_path.display())])
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
    let args = ["report", "podinfo", "-n", "test", "--out", svg_path.to_str().unwrap()];
    let down = cli(&w, &[&args[..], &["--prometheus-url", "http://127.0.0.1:9"]].concat());
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("prometheus at http://127.0.0.1:9 unreachable"), "{stderr}");
}
