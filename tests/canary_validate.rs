//! Every rejection rule of `/validate/canaries`, each asserting the exact field path and
//! words; and the webhook itself over real AdmissionReview bodies.

use std::sync::Arc;

use apisix_canary::admission::canary::validate_v1beta1;
use apisix_canary::admission::templates::{validate_alert_provider, validate_metric_template};
use apisix_canary::api::alert_provider::AlertProviderSpec;
use apisix_canary::api::canary::{NamespacedRef, v1beta1};
use apisix_canary::api::metric_template::MetricTemplateSpec;
use apisix_canary::metrics::Metrics;
use apisix_canary::server::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

fn minimal() -> v1beta1::CanarySpec {
    serde_json::from_value(json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"}
    }))
    .unwrap()
}

fn with(patch: Value) -> v1beta1::CanarySpec {
    let mut spec = serde_json::to_value(minimal()).unwrap();
    json_patch::merge(&mut spec, &patch);
    serde_json::from_value(spec).unwrap()
}

fn errors(spec: &v1beta1::CanarySpec) -> Vec<String> {
    validate_v1beta1(spec).errors.iter().map(ToString::to_string).collect()
}

#[test]
fn each_rejection_names_the_field() {
    let rate = |extra: Value| {
        let mut m = json!({"name": "request-success-rate", "thresholdRange": {"min": 99}});
        json_patch::merge(&mut m, &extra);
        m
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"analysis": {"maxWeight": 0}}), "spec.analysis.maxWeight: Invalid value: 0: must be between 1 and 100"),
        (
            json!({"analysis": {"maxWeight": 101}}),
            "spec.analysis.maxWeight: Invalid value: 101: must be between 1 and 100",
        ),
        (
            json!({"analysis": {"maxWeight": 30, "stepWeight": 40}}),
            "spec.analysis.stepWeight: Invalid value: 40: must be less than or equal to maxWeight (30)",
        ),
        (
            json!({"analysis": {"stepWeights": [10, 30, 20]}}),
            "spec.analysis.stepWeights: Invalid value: [10, 30, 20]: weights must be strictly increasing",
        ),
        (
            json!({"analysis": {"stepWeights": [10, 120]}}),
            "spec.analysis.stepWeights: Invalid value: [10, 120]: each weight must be an integer between 1 and 100",
        ),
        (json!({"analysis": {"threshold": 0}}), "spec.analysis.threshold: Invalid value: 0: must be at least 1"),
        (
            json!({"analysis": {"interval": "500ms"}}),
            "spec.analysis.interval: Invalid value: \"500ms\": must be between 1s and 24h",
        ),
        (
            json!({"analysis": {"metrics": [{"name": "request-success-rate"}]}}),
            "spec.analysis.metrics[0].thresholdRange: Required value: set min, max or both, or threshold",
        ),
        (
            json!({"analysis": {"metrics": [{"name": "error-rate", "thresholdRange": {"max": 1}}]}}),
            "spec.analysis.metrics[0].name: Invalid value: \"error-rate\": must be a built-in metric \
             (request-success-rate, request-duration) or set templateRef or query",
        ),
        (
            json!({"analysis": {"metrics": [rate(json!({})), rate(json!({"interval": "1m"}))]}}),
            "spec.analysis.metrics[1].name: Duplicate value: \"request-success-rate\"",
        ),
        (
            json!({"analysis": {"metrics": [rate(json!({"thresholdRange": {"min": 101}}))]}}),
            "spec.analysis.metrics[0].thresholdRange.min: Invalid value: 101: must be a number between 0 and 100",
        ),
        (
            json!({"analysis": {"webhooks": [
                {"name": "load", "url": "http://loadtester/"}, {"name": "load", "url": "http://loadtester/"}]}}),
            "spec.analysis.webhooks[1].name: Duplicate value: \"load\"",
        ),
        (
            json!({"analysis": {"webhooks": [{"name": "load", "url": "loadtester.test/"}]}}),
            "spec.analysis.webhooks[0].url: Invalid value: \"loadtester.test/\": must be an absolute http or https URL",
        ),
        (
            json!({"analysis": {"webhooks": [{"name": "load", "type": "pre-promotion", "url": "http://x/"}]}}),
            "spec.analysis.webhooks[0].type: Unsupported value: \"pre-promotion\": supported values: \
             \"confirm-rollout\", \"pre-rollout\", \"rollout\", \"confirm-traffic-increase\", \"confirm-promotion\", \
             \"post-rollout\", \"rollback\", \"event\"",
        ),
        (
            json!({"analysis": {"webhooks": [{"name": "load", "url": "http://x/", "retries": 11}]}}),
            "spec.analysis.webhooks[0].retries: Invalid value: 11: must be between 0 and 10",
        ),
        (
            json!({"analysis": {"webhooks": [{"name": "load", "url": "http://x/", "retries": -1}]}}),
            "spec.analysis.webhooks[0].retries: Invalid value: -1: must be between 0 and 10",
        ),
        (
            json!({"analysis": {"match": [{"headers": {"x-canary": {"exact": "insider"}}}]}}),
            "spec.analysis.iterations: Required value: an A/B release needs iterations: the number of intervals the \
             canary is analysed on the matching requests before promotion",
        ),
        (
            json!({"analysis": {"match": [{"sourceLabels": {"app": "web"}}], "iterations": 5}}),
            "spec.analysis.match[0].sourceLabels: Forbidden: APISIX does not know the calling pod's labels",
        ),
        (
            json!({"analysis": {"mirror": true}}),
            "spec.analysis.mirror: Forbidden: traffic mirroring is not supported: APISIX's proxy-mirror requests are \
             not counted in its metrics, so the built-in analysis could not judge the canary on them",
        ),
        (
            json!({"analysis": {"sessionAffinity": {"cookieName": "flagger cookie"}}}),
            "spec.analysis.sessionAffinity.cookieName: Invalid value: \"flagger cookie\": must be a cookie name: \
             letters, digits and !#$%&'*+-.^_`|~",
        ),
        (
            json!({"analysis": {"sessionAffinity": {"cookieName": "c", "maxAge": 0}}}),
            "spec.analysis.sessionAffinity.maxAge: Invalid value: 0: must be a positive number of seconds",
        ),
        (
            json!({"analysis": {"sessionAffinity": {"cookieName": "c"}, "iterations": 2,
                   "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}}),
            "spec.analysis.sessionAffinity: Forbidden: an A/B release sends the matching requests to the canary \
             alone: there is nothing to keep sticky",
        ),
        (
            json!({"analysis": {"iterations": 10}}),
            "spec.analysis.iterations: Forbidden: blue/green (iterations without match) is not supported: through \
             APISIX the canary would get no traffic to be analysed on; add match for an A/B release, or use stepWeight",
        ),
        (
            json!({"targetRef": {"kind": "StatefulSet"}}),
            "spec.targetRef.kind: Unsupported value: \"StatefulSet\": supported values: \"Deployment\"",
        ),
        (json!({"provider": "istio"}), "spec.provider: Unsupported value: \"istio\": supported values: \"apisix\""),
        (json!({"routeRef": null}), "spec.routeRef: Required value: the ApisixRoute that serves the target"),
        (
            json!({"routeRef": {"kind": "HTTPRoute"}}),
            "spec.routeRef.kind: Unsupported value: \"HTTPRoute\": supported values: \"ApisixRoute\"",
        ),
        (
            json!({"analysis": {"alerts": [{"name": "a", "severity": "critical", "providerRef": {"name": "slack"}}]}}),
            "spec.analysis.alerts[0].severity: Unsupported value: \"critical\": supported values: \"info\", \"warn\", \"error\"",
        ),
        (
            json!({"service": {"port": 0}}),
            "spec.service.port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
    ];
    for (patch, want) in cases {
        assert_eq!(errors(&with(patch.clone())), vec![want.to_owned()], "{patch}");
    }
}

#[test]
fn warnings_for_legal_but_risky_values() {
    let f = validate_v1beta1(&with(json!({"analysis": {"interval": "5s", "threshold": 1, "maxWeight": 50}})));
    assert!(f.errors.is_empty());
    assert_eq!(
        f.warnings(),
        vec![
            "spec.analysis.interval: interval 5s is under 10s: metrics may have too few samples per step".to_owned(),
            "spec.analysis.threshold: threshold 1 rolls back on the first failed check, even a transient one"
                .to_owned(),
        ]
    );
}

#[test]
fn templates_and_providers() {
    let template = |query: &str, address: Option<&str>| MetricTemplateSpec {
        provider: apisix_canary::api::metric_template::MetricProvider {
            type_: "prometheus".into(),
            address: address.map(Into::into),
            ..Default::default()
        },
        query: query.into(),
    };
    let e = validate_metric_template(&template("sum(x{ns=\"{{ nmespace }}\"})", Some("http://prom:9090")));
    assert_eq!(
        e.errors.to_string(),
        "spec.query: Invalid value: \"sum(x{ns=\\\"{{ nmespace }}\\\"})\": unknown template variable \"nmespace\"; \
         known: namespace, name, target, service, route, ingress, interval, generated_route, canary_nodes, variables.<key>"
    );
    let e = validate_metric_template(&template("up", None));
    assert_eq!(e.errors.to_string(), "spec.provider.address: Required value: the URL of the Prometheus API");
    let mut headers = template("up", Some("http://prom:9090"));
    headers.provider.headers = Some(
        [("X-Scope-OrgID", "tenant-1"), ("X Tenant", "a"), ("X-Token", "a\nb"), ("Authorization", "Bearer x")]
            .map(|(k, v)| (k.to_owned(), v.into()))
            .into(),
    );
    headers.provider.secret_ref = Some(apisix_canary::api::metric_template::LocalRef { name: "prom-auth".into() });
    assert_eq!(
        validate_metric_template(&headers).errors.to_string(),
        "[spec.provider.headers[Authorization]: Forbidden: the Authorization header comes from secretRef: set one or \
         the other, spec.provider.headers[X Tenant]: Invalid value: \"X Tenant\": must be a valid HTTP header name, \
         spec.provider.headers[X-Token]: Invalid value: (hidden): must be a valid HTTP header value: visible ASCII, \
         no line breaks]"
    );

    let provider = AlertProviderSpec { type_: "pagerduty".into(), ..Default::default() };
    assert_eq!(
        validate_alert_provider(&provider).errors.to_string(),
        "[spec.type: Unsupported value: \"pagerduty\": supported values: \"slack\", \"msteams\", \"discord\", \"webhook\", \
         spec.address: Required value: set address, or secretRef to a Secret with the key address]"
    );
    let slack = AlertProviderSpec {
        type_: "slack".into(),
        address: Some("https://hooks.slack.com/services/T/B/X".into()),
        ..Default::default()
    };
    assert!(validate_alert_provider(&slack).errors.is_empty());
}

#[test]
fn alert_provider_rules() {
    let provider = |patch: Value| -> AlertProviderSpec {
        let mut spec = json!({"type": "slack"});
        json_patch::merge(&mut spec, &patch);
        serde_json::from_value(spec).unwrap()
    };
    let ok = [
        json!({"type": "webhook", "address": "http://alerts.ops.svc:8080/hook"}),
        json!({"type": "discord", "secretRef": {"name": "discord-url"}}),
        json!({"address": "https://hooks.slack.com/services/T/B/X", "secretRef": {"name": "slack-url"}}),
        json!({"type": "msteams", "address": "https://example.webhook.office.com/x", "proxy": "http://squid.ops:3128"}),
        json!({"secretRef": {"name": "slack-url"}, "proxy": "https://proxy.example.com"}),
    ];
    for patch in ok {
        let f = validate_alert_provider(&provider(patch.clone()));
        assert!(f.errors.is_empty(), "{patch}: {}", f.errors);
    }
    let bad = [
        (json!({}), "spec.address: Required value: set address, or secretRef to a Secret with the key address"),
        (
            json!({"address": "hooks.slack.com/services/T/B/X"}),
            "spec.address: Invalid value: \"hooks.slack.com/services/T/B/X\": must be an absolute http or https URL",
        ),
        (
            json!({"address": "https://hooks.slack.com/x", "proxy": "squid.ops:3128"}),
            "spec.proxy: Invalid value: \"squid.ops:3128\": must be an absolute http or https URL",
        ),
        (
            json!({"secretRef": {"name": "slack-url"}, "proxy": "socks5://squid.ops:1080"}),
            "spec.proxy: Invalid value: \"socks5://squid.ops:1080\": must be an absolute http or https URL",
        ),
        (
            json!({"address": "ftp://x/", "secretRef": {"name": "Slack_URL"}}),
            "[spec.address: Invalid value: \"ftp://x/\": must be an absolute http or https URL, \
             spec.secretRef.name: Invalid value: \"Slack_URL\": a lowercase RFC 1123 subdomain must consist of lower \
             case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character]",
        ),
    ];
    for (patch, want) in bad {
        assert_eq!(validate_alert_provider(&provider(patch.clone())).errors.to_string(), want, "{patch}");
    }
    let _ = NamespacedRef::default();
}

fn review(object: Value, old: Option<Value>, operation: &str) -> Vec<u8> {
    let api_version = object["apiVersion"].as_str().unwrap().to_owned();
    let (group, version) = api_version.split_once('/').unwrap();
    let kind = object["kind"].clone();
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5d1e2c3b-0000-4000-8000-000000000001",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "canaries"},
            "name": "podinfo",
            "namespace": "test",
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    }))
    .unwrap()
}

async fn post(body: Vec<u8>) -> Value {
    let router = Router::new(Arc::new(Metrics::new()));
    let req = http::Request::post("/validate/canaries").body(Full::new(Bytes::from(body))).unwrap();
    let res = router.route(req).await;
    assert_eq!(res.status(), http::StatusCode::OK);
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn the_webhook_denies_bad_canaries_in_both_versions() {
    let bad_beta = json!({
        "apiVersion": "apisix-canary.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": serde_json::to_value(with(json!({"analysis": {"maxWeight": 150, "stepWeight": 200}}))).unwrap()
    });
    let answer = post(review(bad_beta.clone(), None, "CREATE")).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["uid"], "5d1e2c3b-0000-4000-8000-000000000001");
    assert_eq!(
        answer["response"]["status"]["message"],
        "[spec.analysis.maxWeight: Invalid value: 150: must be between 1 and 100, \
         spec.analysis.stepWeight: Invalid value: 200: must be between 1 and 100]"
    );

    let bad_alpha = json!({
        "apiVersion": "apisix-canary.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"target": "podinfo", "route": "podinfo", "maxWeight": 150, "maxRequestDuration": "soon"}
    });
    let answer = post(review(bad_alpha, None, "CREATE")).await;
    assert_eq!(
        answer["response"]["status"]["message"],
        "[spec.maxRequestDuration: Invalid value: \"soon\": must be a duration such as 500ms, 10s, 1m or 1h30m, \
         spec.maxWeight: Invalid value: 150: must be between 1 and 100]"
    );

    // An update that leaves the spec alone (a finalizer, a label) is not re-checked.
    let mut labelled = bad_beta.clone();
    labelled["metadata"]["labels"] = json!({"team": "a"});
    let answer = post(review(labelled, Some(bad_beta), "UPDATE")).await;
    assert_eq!(answer["response"]["allowed"], true);

    // The v1alpha1 spill annotation is never stored on a v1beta1 object.
    let mut spilled = bad_beta_valid();
    spilled["metadata"]["annotations"] = json!({"apisix-canary.dev/v1beta1-spec": "{}"});
    let answer = post(review(spilled, None, "CREATE")).await;
    assert_eq!(
        answer["response"]["status"]["message"],
        "metadata.annotations[apisix-canary.dev/v1beta1-spec]: Forbidden: reserved for the v1alpha1 form of a Canary"
    );

    let scenario: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/canaries/scenario.yaml"))
            .unwrap(),
    )
    .unwrap();
    let answer = post(review(scenario, None, "CREATE")).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

fn bad_beta_valid() -> Value {
    json!({
        "apiVersion": "apisix-canary.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": serde_json::to_value(minimal()).unwrap()
    })
}

#[test]
fn a_metric_scope_is_canary_or_route_and_only_for_built_ins() {
    use apisix_canary::release::plan::{MetricScope, Plan};
    let mut c: v1beta1::Canary = serde_saphyr::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/canaries/scenario.yaml"))
            .unwrap(),
    )
    .unwrap();
    let rate = c.spec.analysis.metrics.iter().position(|m| m.name == "request-success-rate").unwrap();
    c.spec.analysis.metrics[rate].scope = Some("route".into());
    let (plan, _) = Plan::from_canary(&c.spec).unwrap();
    assert_eq!(plan.metrics[rate].scope, MetricScope::Route);
    c.spec.analysis.metrics[rate].scope = Some("blended".into());
    let errors = validate_v1beta1(&c.spec).errors.to_string();
    assert_eq!(
        errors,
        format!(
            "spec.analysis.metrics[{rate}].scope: Unsupported value: \"blended\": supported values: \"canary\", \"route\""
        )
    );
}

/// One metric in a minimal spec.
fn one_metric(metric: Value) -> v1beta1::CanarySpec {
    with(json!({"analysis": {"metrics": [metric]}}))
}

#[test]
fn no_data_baseline_and_min_requests_rules() {
    let m = "spec.analysis.metrics[0]";
    let template = json!({"name": "not-found", "templateRef": {"name": "not-found"}, "thresholdRange": {"max": 5}});
    let mut baseline_template = template.clone();
    json_patch::merge(&mut baseline_template, &json!({"compare": "baseline", "maxDelta": 1}));
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"name": "request-success-rate", "thresholdRange": {"min": 99}, "onNoData": "skip"}),
            vec![format!("{m}.onNoData: Unsupported value: \"skip\": supported values: \"fail\", \"pass\"")],
        ),
        (
            json!({"name": "request-success-rate", "compare": "primary", "maxDelta": 1}),
            vec![format!("{m}.compare: Unsupported value: \"primary\": supported values: \"baseline\"")],
        ),
        (
            baseline_template,
            vec![format!(
                "{m}.compare: Forbidden: only the built-in metrics (request-success-rate, request-duration) compare \
                 with the baseline: a MetricTemplate's query says whose traffic it counts"
            )],
        ),
        (
            json!({"name": "request-duration", "scope": "route", "compare": "baseline", "maxDelta": 100}),
            vec![format!(
                "{m}.compare: Forbidden: not with scope: route: a query that blends the stable's and the canary's \
                 traffic cannot be split"
            )],
        ),
        (
            json!({"name": "request-success-rate", "compare": "baseline"}),
            vec![format!(
                "{m}.maxDelta: Required value: how much worse than the stable version the canary may be, with \
                 compare: baseline"
            )],
        ),
        (
            json!({"name": "request-success-rate", "compare": "baseline", "maxDelta": -0.5}),
            vec![format!("{m}.maxDelta: Invalid value: -0.5: must be a number between 0 and 100")],
        ),
        (
            json!({"name": "request-success-rate", "compare": "baseline", "maxDelta": 101}),
            vec![format!("{m}.maxDelta: Invalid value: 101: must be a number between 0 and 100")],
        ),
        (
            json!({"name": "request-duration", "compare": "baseline", "maxDelta": -1}),
            vec![format!("{m}.maxDelta: Invalid value: -1: must be at least 0")],
        ),
        (
            json!({"name": "request-success-rate", "thresholdRange": {"min": 99}, "maxDelta": 1}),
            vec![format!("{m}.maxDelta: Forbidden: only with compare: baseline, whose margin it is")],
        ),
        (
            json!({"name": "request-success-rate", "thresholdRange": {"min": 99}, "minRequests": -1}),
            vec![format!("{m}.minRequests: Invalid value: -1: must be at least 0 (0 turns it off)")],
        ),
        (
            // Without compare, a bound is still required.
            json!({"name": "request-duration", "onNoData": "pass", "minRequests": 10}),
            vec![format!("{m}.thresholdRange: Required value: set min, max or both, or threshold")],
        ),
    ];
    for (metric, want) in cases {
        assert_eq!(errors(&one_metric(metric.clone())), want, "{metric}");
    }
}

#[test]
fn no_data_baseline_and_min_requests_parse_into_the_plan() {
    use apisix_canary::release::plan::{NoData, Plan};
    let spec = with(json!({"analysis": {"threshold": 5, "maxWeight": 50, "metrics": [
        {"name": "request-success-rate", "compare": "baseline", "maxDelta": 1.5, "minRequests": 20},
        {"name": "request-duration", "thresholdRange": {"max": 2000}, "compare": "baseline", "maxDelta": 100,
         "onNoData": "pass"},
        {"name": "not-found", "templateRef": {"name": "not-found"}, "thresholdRange": {"max": 5},
         "onNoData": "pass", "minRequests": 0},
    ]}}));
    let (plan, warnings) = Plan::from_canary(&spec).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let [rate, duration, template] = plan.metrics.as_slice() else { panic!("{:?}", plan.metrics) };
    // No thresholdRange with compare: no fixed bound, not even the 99% default.
    assert_eq!((rate.min, rate.max, rate.baseline, rate.min_requests), (None, None, Some(1.5), 20));
    assert_eq!(rate.on_no_data, NoData::Fail, "the default is Flagger's");
    // A written range stays an absolute ceiling next to the comparison.
    assert_eq!((duration.max, duration.baseline, duration.on_no_data), (Some(2000.0), Some(100.0), NoData::Pass));
    assert_eq!((template.baseline, template.on_no_data, template.min_requests), (None, NoData::Pass, 0));
}
