//! dashboards/apisix-canary.json: every panel has a title and a query, and every
//! metric a query names is one we export (the controller's and the webhook server's
//! registries) or one APISIX exports (as the sim's gateway renders it).

use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../dashboards/apisix-canary.json");
const CONTROLLER: &str = include_str!("../src/controller/metrics.rs");
const WEBHOOK: &str = include_str!("../src/metrics.rs");
const GATEWAY: &str = include_str!("../sim/src/gateway/metrics.rs");

/// The first string literal after each `marker` in `source`.
fn literals_after<'a>(source: &'a str, marker: &str) -> Vec<&'a str> {
    source.match_indices(marker).filter_map(|(i, _)| source[i + marker.len()..].split('"').nth(1)).collect()
}

/// Every name a family exposes, whatever its type.
fn exposed(prefix: &str, names: &[&str]) -> Vec<String> {
    let suffixes = ["", "_total", "_bucket", "_sum", "_count"];
    names.iter().flat_map(|n| suffixes.iter().map(move |s| format!("{prefix}{n}{s}"))).collect()
}

fn known() -> BTreeSet<String> {
    let ours: Vec<&str> = [CONTROLLER, WEBHOOK].iter().flat_map(|s| literals_after(s, "registry.register(")).collect();
    assert!(ours.contains(&"status") && ours.contains(&"webhook_requests"), "{ours:?}");
    // The sim's families: `("http_status", "HTTP status codes ...", "counter")`.
    let apisix: Vec<&str> = GATEWAY
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("(\"") && (l.ends_with("\"),") || l.ends_with("\")")))
        .filter(|l| ["counter", "gauge", "histogram"].iter().any(|t| l.contains(&format!("\"{t}\""))))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(apisix.contains(&"http_status") && apisix.contains(&"http_latency"), "{apisix:?}");
    exposed("apisix_canary_", &ours).into_iter().chain(exposed("apisix_", &apisix)).collect()
}

/// The metric names in a PromQL expression: identifiers followed by `{`, `[` or the
/// end, that are not functions, keywords or label names.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes: Vec<char> = expr.chars().collect();
    let (mut i, mut depth) = (0, 0);
    while i < bytes.len() {
        let c = bytes[i];
        if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                i += if bytes[i] == '\\' { 2 } else { 1 };
            }
        } else if c == '{' {
            depth += 1;
        } else if c == '}' {
            depth -= 1;
        } else if depth == 0
            && (c.is_ascii_alphabetic() || c == '_')
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
        {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':') {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            let next = bytes[i..].iter().find(|c| !c.is_whitespace());
            if word.starts_with("apisix") && !matches!(next, Some('(')) {
                names.push(word);
            }
            continue;
        }
        i += 1;
    }
    names
}

#[test]
fn panels_query_metrics_that_exist() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let vars: Vec<&str> =
        dashboard["templating"]["list"].as_array().unwrap().iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(vars, ["datasource", "namespace", "name", "target", "route"]);
    // The release's Deployment and route come from its Canary's info series.
    for var in &dashboard["templating"]["list"].as_array().unwrap()[3..] {
        let query = var["query"]["query"].as_str().unwrap();
        assert!(
            query.starts_with("label_values(apisix_canary_info{namespace=\"$namespace\",name=\"$name\"}"),
            "{query}"
        );
    }
    assert_eq!(dashboard["templating"]["list"][0]["query"], "prometheus");
    let known = known();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.trim().is_empty(), "a panel without a title: {panel}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!targets.is_empty(), "{title}: no target");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            // Every variable a query names is defined.
            for (i, _) in expr.match_indices('$') {
                let name: String = expr[i + 1..]
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(name.starts_with("__") || vars.contains(&name.as_str()), "{title}: ${name} is not a variable");
            }
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: no metric in {expr:?}");
            for name in names {
                assert!(known.contains(&name), "{title}: {name} is not exported (in {expr:?})");
                used.insert(name);
            }
        }
    }
    for wanted in [
        "apisix_canary_weight",
        "apisix_canary_status",
        "apisix_canary_failures_total",
        "apisix_canary_successes_total",
        "apisix_canary_metric_analysis",
        "apisix_canary_sequential_evidence",
        "apisix_canary_sequential_boundary",
        "apisix_canary_webhook_requests_total",
        "apisix_canary_webhook_request_duration_seconds_bucket",
        "apisix_http_status",
        "apisix_http_latency_bucket",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    let expr = r#"histogram_quantile(0.99, sum by (node, le) (rate(apisix_http_latency_bucket{type="request",route=~"a_apisix_x"}[1m]))) / apisix_canary_weight"#;
    assert_eq!(metric_names(expr), ["apisix_http_latency_bucket", "apisix_canary_weight"]);
    assert!(!known().contains("apisix_canary_nope"));
    assert!(known().contains("apisix_canary_webhook_requests_total") && known().contains("apisix_http_latency_bucket"));
}

/// The sequential test's evidence and its boundary in one panel, for the selected release.
#[test]
fn the_sequential_test_is_drawn_against_its_boundary() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let exprs = |panel: &serde_json::Value| -> Vec<String> {
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        targets.iter().filter_map(|t| t["expr"].as_str()).map(str::to_owned).collect()
    };
    let panels = dashboard["panels"].as_array().unwrap();
    let panel = panels
        .iter()
        .find(|p| exprs(p).iter().any(|e| e.starts_with("apisix_canary_sequential_evidence")))
        .expect("a panel of the sequential test");
    let selected = "{namespace=\"$namespace\",name=\"$name\"}";
    assert_eq!(
        exprs(panel),
        [
            format!("apisix_canary_sequential_evidence{selected}"),
            format!("apisix_canary_sequential_boundary{selected}")
        ]
    );
    // The boundary is told apart from the evidence it is a bound of.
    let overrides = panel["fieldConfig"]["overrides"].to_string();
    assert!(overrides.contains("\"byFrameRefID\"") && overrides.contains("\"dash\""), "{overrides}");
}

/// The chart ships the same dashboard.
#[test]
fn the_charts_dashboard_is_this_one() {
    assert_eq!(include_str!("../charts/apisix-canary/files/dashboard.json"), DASHBOARD);
}
