//! SCENARIO.md as data: the cast's manifests (the scenario fixtures, the Deployment in
//! Canary mode, the article's Canary with its intervals compressed to 2 s), the three
//! acts with their kubectl commands, and how each must end.

use serde_json::{Value, json};

use crate::api::annotations;

pub const NAMESPACE: &str = "test";
pub const NAME: &str = "podinfo";
/// Flagger's name of the release in its messages.
pub const ID: &str = "podinfo.test";
pub const CONTAINER: &str = "podinfod";
pub const IMAGE: &str = "stefanprodan/podinfo";
/// Where the article's webhooks and load tests are sent.
pub const LOADTESTER: &str = "http://flagger-loadtester.test/";

/// The analysis, compressed: SCENARIO.md's 10 s intervals are 2 s here.
pub const INTERVAL: &str = "2s";
pub const THRESHOLD: u32 = 4;
pub const MAX_WEIGHT: u32 = 30;
pub const STEP_WEIGHT: u32 = 10;
/// The metrics' window: the article's 1m and 30s, compressed.
pub const METRIC_INTERVAL: &str = "10s";
pub const METRIC_INTERVAL_SECS: u64 = 10;
/// A check judges the canary once it has served this many requests in the window
/// (before that the weight holds): a young canary's first checks come before
/// Prometheus has its series.
pub const MIN_REQUESTS: u32 = 5;
/// How long the errors of acts 2 and 3 last: the article's `hey -z 1m` compressed like
/// the intervals, so the errors of act 2 end before act 3 starts.
pub const ERRORS_SECS: u64 = 12;

const NAMESPACE_YAML: &str = include_str!("../../tests/fixtures/scenario/namespace.yaml");
const SERVICE_YAML: &str = include_str!("../../tests/fixtures/scenario/service.yaml");
const ROUTE_YAML: &str = include_str!("../../tests/fixtures/scenario/route.yaml");
const PODINFO_YAML: &str = include_str!("../../tests/fixtures/scenario/podinfo.yaml");
const CANARY_YAML: &str = include_str!("../../tests/fixtures/canaries/scenario.yaml");

#[derive(Debug, thiserror::Error)]
#[error("the embedded scenario manifest {what} does not parse: {reason}")]
pub struct ManifestError {
    what: &'static str,
    reason: String,
}

fn parse(what: &'static str, yaml: &str) -> Result<Value, ManifestError> {
    serde_saphyr::from_str(yaml).map_err(|e| ManifestError { what, reason: e.to_string() })
}

/// The cast, in the order a user applies it: namespace, Deployment, Service, route,
/// Canary.
pub fn cast() -> Result<Vec<Value>, ManifestError> {
    let mut podinfo = parse("podinfo.yaml", PODINFO_YAML)?;
    // Canary mode: the Deployment names the Canary that holds the analysis.
    podinfo["metadata"]["annotations"] = json!({ annotations::CANARY: NAME });
    Ok(vec![
        parse("namespace.yaml", NAMESPACE_YAML)?,
        podinfo,
        parse("service.yaml", SERVICE_YAML)?,
        parse("route.yaml", ROUTE_YAML)?,
        canary()?,
    ])
}

fn metric(name: &str, range: Value) -> Value {
    json!({"name": name, "thresholdRange": range, "interval": METRIC_INTERVAL, "minRequests": MIN_REQUESTS})
}

/// The article's Canary (its `load-test` rollout hook included), intervals compressed.
pub fn canary() -> Result<Value, ManifestError> {
    let mut canary = parse("canaries/scenario.yaml", CANARY_YAML)?;
    let analysis = &mut canary["spec"]["analysis"];
    analysis["interval"] = json!(INTERVAL);
    analysis["threshold"] = json!(THRESHOLD);
    analysis["maxWeight"] = json!(MAX_WEIGHT);
    analysis["stepWeight"] = json!(STEP_WEIGHT);
    analysis["metrics"] = json!(builtin_metrics());
    Ok(canary)
}

fn builtin_metrics() -> [Value; 2] {
    [metric("request-success-rate", json!({"min": 99})), metric("request-duration", json!({"max": 500}))]
}

/// Act 3's metric: the scenario's MetricTemplate, with `code=~"4.."` (the article's
/// `code!~"4.."` would fail every release), the canary's own nodes, and `or on()
/// vector(0)` so a canary without a single 4xx reads 0, not "no values found".
pub const TEMPLATE: &str = "not-found-percentage";
pub const TEMPLATE_METRIC: &str = "404s percentage";
const TEMPLATE_QUERY: &str = concat!(
    r#"(sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}_.+",node=~"{{ canary_nodes }}",code=~"4.."}[{{ interval }}])) or on() vector(0))"#,
    "\n",
    r#"/ sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}_.+",node=~"{{ canary_nodes }}"}[{{ interval }}])) * 100"#,
    "\n"
);

pub fn metric_template(prometheus_url: &str) -> Value {
    json!({
        "apiVersion": crate::api::canary::V1BETA1,
        "kind": "MetricTemplate",
        "metadata": {"name": TEMPLATE, "namespace": NAMESPACE},
        "spec": {"provider": {"type": "prometheus", "address": prometheus_url}, "query": TEMPLATE_QUERY},
    })
}

/// The merge patch adding "404s percentage" (max 5) to the Canary's metrics.
pub fn with_template_metric() -> Value {
    let mut metrics = builtin_metrics().to_vec();
    let mut not_found = metric(TEMPLATE_METRIC, json!({"max": 5}));
    not_found["templateRef"] = json!({"name": TEMPLATE});
    metrics.push(not_found);
    json!({"spec": {"analysis": {"metrics": metrics}}})
}

/// The three acts of SCENARIO.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Promotion,
    Rollback,
    CustomMetric,
}

impl Act {
    pub const ALL: [Act; 3] = [Act::Promotion, Act::Rollback, Act::CustomMetric];

    pub fn from_number(n: u8) -> Option<Act> {
        Act::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }

    pub fn number(self) -> u8 {
        match self {
            Act::Promotion => 1,
            Act::Rollback => 2,
            Act::CustomMetric => 3,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Act::Promotion => "a new image is analysed step by step and promoted",
            Act::Rollback => "a release that answers 500s is rolled back at the threshold",
            Act::CustomMetric => "a MetricTemplate (404s percentage) rolls back a release that answers 404s",
        }
    }

    /// The image the act releases: each act a new revision.
    pub fn image(self) -> String {
        let tag = match self {
            Act::Promotion => "6.0.1",
            Act::Rollback => "6.0.2",
            Act::CustomMetric => "6.0.3",
        };
        format!("{IMAGE}:{tag}")
    }

    /// The `hey` command of the operator's errors, as the article generates them.
    pub fn errors(self) -> Option<String> {
        let path = match self {
            Act::Promotion => return None,
            Act::Rollback => "/status/500",
            Act::CustomMetric => "/status/404",
        };
        Some(format!("hey -z {ERRORS_SECS}s -c 5 -q 5 -host app.example.com http://apisix-gateway.apisix{path}"))
    }

    pub fn expected(self) -> &'static str {
        match self {
            Act::Promotion => "Succeeded",
            Act::Rollback => "Failed (threshold)",
            Act::CustomMetric => "Failed (404s)",
        }
    }

    /// Whether the act ended as the scenario says, from the phase it ended in and the
    /// Canary's Events during the act: what it got, or how it differed.
    pub fn judge(self, phase: &str, messages: &[&str]) -> Result<String, String> {
        let has = |prefix: &str| messages.iter().any(|m| m.starts_with(prefix));
        let want_phase = if self == Act::Promotion { "Succeeded" } else { "Failed" };
        if phase != want_phase {
            return Err(format!("ended {phase}, not {want_phase}"));
        }
        let needed: &[&str] = match self {
            Act::Promotion => &["Promotion completed! Scaling down podinfo.test"],
            Act::Rollback => &[
                "Rolling back podinfo.test failed checks threshold reached",
                "Canary failed! Scaling down podinfo.test",
            ],
            Act::CustomMetric => &["Halt podinfo.test advancement 404s percentage", "Canary failed! Scaling down"],
        };
        if let Some(missing) = needed.iter().find(|n| !has(n)) {
            return Err(format!("{phase} without the Event {missing:?}"));
        }
        Ok(self.expected().to_owned())
    }
}

/// `kubectl -n test set image deployment/podinfo podinfod=<image>`.
pub fn set_image_command(image: &str) -> String {
    format!("kubectl -n {NAMESPACE} set image deployment/{NAME} {CONTAINER}={image}")
}

/// The strategic merge patch kubectl sends for [`set_image_command`].
pub fn set_image_patch(image: &str) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [{"name": CONTAINER, "image": image}]}}}})
}

/// The load tester's webhook payload that starts `cmd`, as an operator's curl posts it.
pub fn loadtest_payload(cmd: &str) -> Value {
    json!({"name": NAME, "namespace": NAMESPACE, "metadata": {"cmd": cmd}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cast_is_the_scenario_in_canary_mode_with_compressed_intervals() {
        let cast = cast().unwrap();
        let kinds: Vec<&str> = cast.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Namespace", "Deployment", "Service", "ApisixRoute", "Canary"]);
        assert_eq!(cast[1]["metadata"]["annotations"], json!({"apisix-canary.dev/canary": "podinfo"}));
        assert_eq!(cast[1]["spec"]["template"]["spec"]["containers"][0]["image"], "stefanprodan/podinfo:6.0.0");
        let analysis = &cast[4]["spec"]["analysis"];
        assert_eq!((analysis["interval"].as_str(), analysis["maxWeight"].as_u64()), (Some("2s"), Some(30)));
        let hook = &analysis["webhooks"][0];
        assert_eq!((hook["name"].as_str(), hook["url"].as_str()), (Some("load-test"), Some(LOADTESTER)));
        assert!(hook["metadata"]["cmd"].as_str().unwrap().contains("/api/info"));
    }

    #[test]
    fn the_canary_is_accepted_by_our_own_parser() {
        let canary: crate::api::canary::v1beta1::Canary = serde_json::from_value(canary().unwrap()).unwrap();
        let mut with = serde_json::to_value(&canary).unwrap();
        with["spec"]["analysis"]["metrics"] = with_template_metric()["spec"]["analysis"]["metrics"].clone();
        let with: crate::api::canary::v1beta1::Canary = serde_json::from_value(with).unwrap();
        let names: Vec<&str> = with.spec.analysis.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["request-success-rate", "request-duration", "404s percentage"]);
    }

    #[test]
    fn the_template_counts_4xx_of_the_canary_nodes() {
        let t = metric_template("http://127.0.0.1:9090");
        let query = t["spec"]["query"].as_str().unwrap();
        assert!(query.contains(r#"code=~"4..""#) && !query.contains(r#"code!~"4..""#), "{query}");
        assert_eq!(query.matches(r#"node=~"{{ canary_nodes }}""#).count(), 2);
    }

    #[test]
    fn each_act_releases_a_new_revision_and_errors_only_in_acts_2_and_3() {
        let images: Vec<String> = Act::ALL.iter().map(|a| a.image()).collect();
        assert_eq!(images, ["stefanprodan/podinfo:6.0.1", "stefanprodan/podinfo:6.0.2", "stefanprodan/podinfo:6.0.3"]);
        assert_eq!(Act::Promotion.errors(), None);
        assert!(Act::Rollback.errors().unwrap().ends_with("http://apisix-gateway.apisix/status/500"));
        assert!(Act::CustomMetric.errors().unwrap().ends_with("/status/404"));
        assert_eq!(Act::from_number(2), Some(Act::Rollback));
        assert_eq!((Act::from_number(0), Act::from_number(4)), (None, None));
        assert_eq!(
            set_image_command(&Act::Promotion.image()),
            "kubectl -n test set image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.1"
        );
    }

    #[test]
    fn each_act_is_judged_by_its_phase_and_flaggers_words() {
        let promoted = ["Advance podinfo.test canary weight 10", "Promotion completed! Scaling down podinfo.test"];
        assert_eq!(Act::Promotion.judge("Succeeded", &promoted), Ok("Succeeded".into()));
        assert_eq!(Act::Promotion.judge("Failed", &promoted), Err("ended Failed, not Succeeded".into()));
        let rolled_back =
            ["Rolling back podinfo.test failed checks threshold reached 4", "Canary failed! Scaling down podinfo.test"];
        assert!(Act::Rollback.judge("Failed", &rolled_back).is_ok());
        let err = Act::Rollback.judge("Failed", &rolled_back[1..]).unwrap_err();
        assert!(err.contains("threshold reached"), "{err}");
        // A rollback for another reason is not act 3's ending.
        assert!(Act::CustomMetric.judge("Failed", &rolled_back).is_err());
        let not_found = ["Halt podinfo.test advancement 404s percentage 52.00 > 5", rolled_back[0], rolled_back[1]];
        assert_eq!(Act::CustomMetric.judge("Failed", &not_found), Ok("Failed (404s)".into()));
    }
}
