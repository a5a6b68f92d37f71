//! SCENARIO.md as data: the article's cast as a Flagger user applies it (Flagger's
//! podinfo Deployment and HorizontalPodAutoscaler, no annotation of ours, no Service:
//! the Canary takes the Deployment over and generates the Service from `spec.service`),
//! the article's route and Canary as written with only their timings compressed, the
//! three acts with their kubectl commands, and how each must end.

use serde_json::{Value, json};

pub const NAMESPACE: &str = "test";
pub const NAME: &str = "podinfo";
/// Flagger's name of the release in its messages.
pub const ID: &str = "podinfo.test";
pub const CONTAINER: &str = "podinfod";
pub const IMAGE: &str = "stefanprodan/podinfo";
/// Where the article's webhooks and load tests are sent.
pub const LOADTESTER: &str = "http://flagger-loadtester.test/";

/// The article's analysis, as written: only the intervals are compressed, its 10 s
/// steps to 2 s and the metrics' windows alike (1m and 30s to 12 s and 6 s).
pub const INTERVAL: &str = "2s";
pub const THRESHOLD: u32 = 10;
pub const MAX_WEIGHT: u32 = 50;
pub const STEP_WEIGHT: u32 = 10;
/// The success rate's window (the article's 1m) and the P99's (its 30s), compressed.
pub const METRIC_INTERVAL: &str = "12s";
pub const METRIC_INTERVAL_SECS: u64 = 12;
const DURATION_INTERVAL: &str = "6s";
/// Flagger's podinfo waits 5 s before a ready pod counts as available; compressed too.
const MIN_READY_SECONDS: u32 = 1;
/// How long the errors of acts 2 and 3 last (the article's `hey -z 1m`, compressed):
/// past the ten failed checks of the threshold, and over before the next act.
pub const ERRORS_SECS: u64 = 30;

/// Where the cast's manifests live, as the demo tells the user to apply them. The
/// fixtures of the same documents under tests/fixtures/ are copies of these, kept
/// byte-identical by a test (tests/demo_cast.rs), so the tests play the demo's cast.
pub const CAST_DIR: &str = "src/demo/cast";
const NAMESPACE_YAML: &str = include_str!("cast/namespace.yaml");
const ROUTE_YAML: &str = include_str!("cast/route.yaml");
const DEPLOYMENT_YAML: &str = include_str!("cast/podinfo/deployment.yaml");
const HPA_YAML: &str = include_str!("cast/podinfo/hpa.yaml");
const CANARY_YAML: &str = include_str!("cast/canary.yaml");

#[derive(Debug, thiserror::Error)]
#[error("the embedded scenario manifest {what} does not parse: {reason}")]
pub struct ManifestError {
    what: &'static str,
    reason: String,
}

fn parse(what: &'static str, yaml: &str) -> Result<Value, ManifestError> {
    serde_saphyr::from_str(yaml).map_err(|e| ManifestError { what, reason: e.to_string() })
}

/// The cast, in the order a user applies it: namespace, Flagger's podinfo (`kubectl
/// apply -k`: its HPA and Deployment), the route, the Canary.
pub fn cast() -> Result<Vec<Value>, ManifestError> {
    let mut deployment = parse("podinfo/deployment.yaml", DEPLOYMENT_YAML)?;
    deployment["metadata"]["namespace"] = json!(NAMESPACE);
    deployment["spec"]["minReadySeconds"] = json!(MIN_READY_SECONDS);
    let mut hpa = parse("podinfo/hpa.yaml", HPA_YAML)?;
    hpa["metadata"]["namespace"] = json!(NAMESPACE);
    Ok(vec![parse("namespace.yaml", NAMESPACE_YAML)?, hpa, deployment, parse("route.yaml", ROUTE_YAML)?, canary()?])
}

/// The article's Canary (its `load-test` rollout hook included), timings compressed.
pub fn canary() -> Result<Value, ManifestError> {
    let mut canary = parse("canary.yaml", CANARY_YAML)?;
    let analysis = &mut canary["spec"]["analysis"];
    analysis["interval"] = json!(INTERVAL);
    for metric in analysis["metrics"].as_array_mut().into_iter().flatten() {
        let window = if metric["name"] == "request-duration" { DURATION_INTERVAL } else { METRIC_INTERVAL };
        metric["interval"] = json!(window);
    }
    Ok(canary)
}

/// Act 3's metric: the article's MetricTemplate, with `code=~"4.."` (its `code!~"4.."`
/// is the share of requests that are NOT 4xx, which fails every release) and the
/// demo's Prometheus as its address.
pub const TEMPLATE: &str = "not-found-percentage";
pub const TEMPLATE_METRIC: &str = "404s percentage";
const TEMPLATE_QUERY: &str = r#"sum(
  rate(
    apisix_http_status{
      route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+",
      code=~"4.."
    }[{{ interval }}]
  )
)
/
sum(
  rate(
    apisix_http_status{
      route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+"
    }[{{ interval }}]
  )
) * 100
"#;

pub fn metric_template(prometheus_url: &str) -> Value {
    json!({
        "apiVersion": crate::api::canary::V1BETA1,
        "kind": "MetricTemplate",
        "metadata": {"name": TEMPLATE, "namespace": NAMESPACE},
        "spec": {"provider": {"type": "prometheus", "address": prometheus_url}, "query": TEMPLATE_QUERY},
    })
}

/// The merge patch adding the article's "404s percentage" (max 5, over its 1m,
/// compressed) to the Canary's metrics.
pub fn with_template_metric() -> Result<Value, ManifestError> {
    let mut metrics = canary()?["spec"]["analysis"]["metrics"].as_array().cloned().unwrap_or_default();
    metrics.push(json!({
        "name": TEMPLATE_METRIC,
        "templateRef": {"name": TEMPLATE},
        "thresholdRange": {"max": 5},
        "interval": METRIC_INTERVAL,
    }));
    Ok(json!({"spec": {"analysis": {"metrics": metrics}}}))
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
    fn the_cast_is_the_articles_as_written_with_its_timings_compressed() {
        let cast = cast().unwrap();
        let kinds: Vec<&str> = cast.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Namespace", "HorizontalPodAutoscaler", "Deployment", "ApisixRoute", "Canary"]);
        // Flagger's podinfo as Flagger users have it: nothing of ours on it, no Service.
        assert_eq!(cast[2]["metadata"].get("annotations"), None);
        assert_eq!(cast[2]["spec"]["template"]["spec"]["containers"][0]["image"], "ghcr.io/stefanprodan/podinfo:6.0.0");
        assert_eq!(
            (cast[1]["spec"]["minReplicas"].as_u64(), cast[1]["spec"]["maxReplicas"].as_u64()),
            (Some(2), Some(4))
        );
        let analysis = &cast[4]["spec"]["analysis"];
        let steps = (analysis["threshold"].as_u64(), analysis["maxWeight"].as_u64(), analysis["stepWeight"].as_u64());
        assert_eq!(steps, (Some(10), Some(50), Some(10)), "the article's steps and threshold");
        assert_eq!(analysis["interval"], "2s");
        let windows: Vec<&str> =
            analysis["metrics"].as_array().unwrap().iter().map(|m| m["interval"].as_str().unwrap()).collect();
        assert_eq!(windows, ["12s", "6s"]);
        assert!(
            analysis["metrics"].as_array().unwrap().iter().all(|m| m.get("minRequests").is_none()),
            "nothing added"
        );
        assert_eq!(cast[4]["spec"]["service"], json!({"port": 80, "targetPort": 9898}));
        let hook = &analysis["webhooks"][0];
        assert_eq!((hook["name"].as_str(), hook["url"].as_str()), (Some("load-test"), Some(LOADTESTER)));
        assert!(hook["metadata"]["cmd"].as_str().unwrap().contains("/api/info"));
    }

    #[test]
    fn the_canary_is_accepted_by_our_own_parser() {
        let canary: crate::api::canary::v1beta1::Canary = serde_json::from_value(canary().unwrap()).unwrap();
        let mut with = serde_json::to_value(&canary).unwrap();
        with["spec"]["analysis"]["metrics"] = with_template_metric().unwrap()["spec"]["analysis"]["metrics"].clone();
        let with: crate::api::canary::v1beta1::Canary = serde_json::from_value(with).unwrap();
        let names: Vec<&str> = with.spec.analysis.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["request-success-rate", "request-duration", "404s percentage"]);
        crate::release::plan::Plan::from_canary(&with.spec).unwrap();
    }

    #[test]
    fn the_template_is_the_articles_with_the_4xx_fix() {
        let t = metric_template("http://127.0.0.1:9090");
        let query = t["spec"]["query"].as_str().unwrap();
        assert!(query.contains(r#"code=~"4..""#) && !query.contains(r#"code!~"4..""#), "{query}");
        assert_eq!(query.matches(r#"route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+""#).count(), 2);
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
        let rolled_back = [
            "Rolling back podinfo.test failed checks threshold reached 10",
            "Canary failed! Scaling down podinfo.test",
        ];
        assert!(Act::Rollback.judge("Failed", &rolled_back).is_ok());
        let err = Act::Rollback.judge("Failed", &rolled_back[1..]).unwrap_err();
        assert!(err.contains("threshold reached"), "{err}");
        // A rollback for another reason is not act 3's ending.
        assert!(Act::CustomMetric.judge("Failed", &rolled_back).is_err());
        let not_found = ["Halt podinfo.test advancement 404s percentage 52.00 > 5", rolled_back[0], rolled_back[1]];
        assert_eq!(Act::CustomMetric.judge("Failed", &not_found), Ok("Failed (404s)".into()));
    }
}
