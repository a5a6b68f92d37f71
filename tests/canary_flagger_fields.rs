//! Flagger's fields beyond the steps, as `/validate/canaries` and the Plan read them:
//! `threshold`, inline `query`, `muteAlert`, `disableTLS`, `metricsServer`,
//! `ingressRef`, `canaryReadyThreshold`, reference apiVersions and kinds, and the fields
//! accepted with a warning (autoscalerRef, primaryReadyThreshold, other meshes'
//! settings) or refused with the reason (canaryAnalysis, upstreamRef, service.primary).

use apisix_canary::admission::canary::validate_v1beta1;
use apisix_canary::admission::templates::validate_metric_template;
use apisix_canary::api::canary::v1beta1;
use apisix_canary::api::metric_template::{HeaderValues, MetricTemplateSpec};
use apisix_canary::release::plan::{MetricSource, Plan};
use serde_json::{Value, json};

fn with(patch: Value) -> v1beta1::CanarySpec {
    let mut spec = json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"}
    });
    json_patch::merge(&mut spec, &patch);
    serde_json::from_value(spec).unwrap()
}

fn metric(m: Value) -> v1beta1::CanarySpec {
    with(json!({"analysis": {"metrics": [m]}}))
}

fn errors(spec: &v1beta1::CanarySpec) -> Vec<String> {
    validate_v1beta1(spec).errors.iter().map(ToString::to_string).collect()
}

/// The warnings about what `spec` says; those about the defaults it leaves out (see
/// `leaving_out_a_flagger_default_is_said`) are left aside.
fn warnings(spec: &v1beta1::CanarySpec) -> Vec<String> {
    let f = validate_v1beta1(spec);
    assert!(f.errors.is_empty(), "{}", f.errors);
    f.warnings().into_iter().filter(|w| !w.contains(": not set: ")).collect()
}

/// maxWeight and threshold have other defaults than Flagger's (50 and 5, where Flagger
/// takes 100 and 1): a Canary that leaves them out is told at admission.
#[test]
fn leaving_out_a_flagger_default_is_said() {
    assert_eq!(
        validate_v1beta1(&with(json!({}))).warnings(),
        [
            "spec.analysis.maxWeight: not set: the canary goes up to 50% before its promotion here, where Flagger's \
             default is 100%; set it to say which",
            "spec.analysis.threshold: not set: 5 failed checks roll the release back here, where Flagger's default is \
             1; set it to say which",
        ]
    );
    // With stepWeights, the maximum is their last entry, as in Flagger.
    let written = with(json!({"analysis": {"stepWeights": [10, 30], "threshold": 5}}));
    assert!(validate_v1beta1(&written).warnings().is_empty(), "{:?}", validate_v1beta1(&written).warnings());
    // The article's Canary sets both.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/canaries/scenario.yaml"));
    let article: v1beta1::Canary = serde_saphyr::from_str(&text.unwrap()).unwrap();
    assert!(validate_v1beta1(&article.spec).warnings().is_empty());
}

fn plan(spec: &v1beta1::CanarySpec) -> Plan {
    Plan::from_canary(spec).unwrap().0
}

#[test]
fn threshold_is_flaggers_minimum_for_the_success_rate_and_maximum_for_the_rest() {
    let p = plan(&with(json!({"analysis": {"metrics": [
        {"name": "request-success-rate", "threshold": 99},
        {"name": "request-duration", "threshold": 500},
        {"name": "404s", "templateRef": {"name": "not-found"}, "threshold": 5},
        {"name": "errors", "query": "sum(up)", "threshold": 2.5},
    ]}})));
    let bounds: Vec<_> = p.metrics.iter().map(|m| (m.name.as_str(), m.min, m.max)).collect();
    assert_eq!(
        bounds,
        [
            ("request-success-rate", Some(99.0), None),
            ("request-duration", None, Some(500.0)),
            ("404s", None, Some(5.0)),
            ("errors", None, Some(2.5)),
        ]
    );
    // thresholdRange wins, as in Flagger, and the ignored threshold is said.
    let spec = metric(json!({"name": "request-success-rate", "threshold": 90, "thresholdRange": {"min": 99}}));
    assert_eq!((plan(&spec).metrics[0].min, plan(&spec).metrics[0].max), (Some(99.0), None));
    assert_eq!(
        warnings(&spec),
        ["spec.analysis.metrics[0].threshold: ignored: thresholdRange is set and takes precedence (as in Flagger)"]
    );
    // Bounds are checked as thresholdRange's are.
    assert_eq!(
        errors(&metric(json!({"name": "request-success-rate", "threshold": 101}))),
        ["spec.analysis.metrics[0].threshold: Invalid value: 101: must be a number between 0 and 100"]
    );
    assert_eq!(
        errors(&metric(json!({"name": "request-duration", "threshold": 0}))),
        ["spec.analysis.metrics[0].threshold: Invalid value: 0: must be between 1ms and 10m"]
    );
}

#[test]
fn an_inline_query_is_a_metric_of_its_own() {
    let p = plan(&metric(json!({
        "name": "404s percentage", "query": "sum(rate(x{ns=\"{{ namespace }}\",c=\"{{ variables.code }}\"}[{{ interval }}]))",
        "templateVariables": {"code": "404"}, "thresholdRange": {"max": 5}
    })));
    let MetricSource::Query { query, variables } = &p.metrics[0].source else { panic!("{:?}", p.metrics[0]) };
    assert!(query.starts_with("sum(rate(x{ns=\"{{ namespace }}\""));
    assert_eq!(variables.get("code").map(String::as_str), Some("404"));
    let m = "spec.analysis.metrics[0]";
    let cases: Vec<(Value, String)> = vec![
        (
            json!({"name": "q", "query": "sum(x{ns=\"{{ nmespace }}\"})", "threshold": 1}),
            format!(
                "{m}.query: Invalid value: \"sum(x{{ns=\\\"{{{{ nmespace }}}}\\\"}})\": unknown template variable \
                 \"nmespace\"; known: namespace, name, target, service, route, ingress, interval, generated_route, \
                 canary_nodes, variables.<key>"
            ),
        ),
        (json!({"name": "q", "query": " ", "threshold": 1}), format!("{m}.query: Required value: a PromQL query")),
        (
            json!({"name": "q", "query": "up", "templateRef": {"name": "t"}, "threshold": 1}),
            format!(
                "{m}.query: Forbidden: a metric is a MetricTemplate (templateRef) or an inline query, not both: \
                 Flagger would run both"
            ),
        ),
        (
            json!({"name": "request-success-rate", "query": "up", "threshold": 1}),
            format!(
                "{m}.name: Invalid value: \"request-success-rate\": request-success-rate is a built-in metric, which \
                 Flagger would run besides the query: give this one another name"
            ),
        ),
        (
            json!({"name": "q", "query": "up", "threshold": 1, "scope": "route"}),
            format!(
                "{m}.scope: Forbidden: only built-in metrics have a scope: an inline query says whose traffic it counts"
            ),
        ),
    ];
    for (m, want) in cases {
        assert_eq!(errors(&metric(m.clone())), vec![want], "{m}");
    }
}

#[test]
fn references_name_ours_or_flaggers_kinds() {
    let spec = with(json!({"analysis": {
        "metrics": [{"name": "404s", "thresholdRange": {"max": 5},
                     "templateRef": {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "name": "nf"}}],
        "alerts": [{"name": "slack", "providerRef":
                     {"apiVersion": "apisix-canary.dev/v1beta1", "kind": "AlertProvider", "name": "on-call"}}]
    }}));
    assert!(warnings(&spec).is_empty());
    let spec = with(json!({"analysis": {
        "metrics": [{"name": "404s", "thresholdRange": {"max": 5},
                     "templateRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "name": "nf"}}],
        "alerts": [{"name": "slack", "providerRef": {"kind": "MetricTemplate", "name": "on-call"}}]
    }}));
    assert_eq!(
        errors(&spec),
        [
            "spec.analysis.metrics[0].templateRef.apiVersion: Unsupported value: \"argoproj.io/v1alpha1\": supported \
             values: \"apisix-canary.dev/v1beta1\", \"flagger.app/v1beta1\"",
            "spec.analysis.metrics[0].templateRef.kind: Unsupported value: \"AnalysisTemplate\": supported values: \
             \"MetricTemplate\"",
            "spec.analysis.alerts[0].providerRef.kind: Unsupported value: \"MetricTemplate\": supported values: \
             \"AlertProvider\"",
        ]
    );
}

#[test]
fn webhooks_mute_alert_and_disable_tls() {
    let spec = with(json!({"analysis": {"webhooks": [
        {"name": "gate", "type": "confirm-rollout", "url": "https://gate.test/", "muteAlert": true, "disableTLS": true},
        {"name": "load", "url": "http://loadtester.test/", "muteAlert": true},
    ]}}));
    let p = plan(&spec);
    let flags: Vec<_> = p.webhooks.iter().map(|w| (w.name.as_str(), w.mute_alert, w.disable_tls)).collect();
    assert_eq!(flags, [("gate", true, true), ("load", true, false)]);
    assert_eq!(
        warnings(&spec),
        ["spec.analysis.webhooks[1].muteAlert: ignored: only the gates (confirm-rollout, confirm-traffic-increase, \
             confirm-promotion) send a waiting alert, and this hook is rollout"]
    );
}

#[test]
fn metrics_server_ingress_ref_and_the_readiness_thresholds() {
    let spec = with(json!({
        "metricsServer": "http://prometheus.monitoring:9090",
        "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo-public"},
        "analysis": {"canaryReadyThreshold": 50}
    }));
    let p = plan(&spec);
    assert_eq!(p.metrics_server.as_deref(), Some("http://prometheus.monitoring:9090"));
    assert_eq!(p.ingress.as_deref(), Some("podinfo-public"));
    assert_eq!(p.canary_ready_threshold, 50);
    assert!(warnings(&spec).is_empty());
    let defaults = plan(&with(json!({})));
    assert_eq!((defaults.metrics_server, defaults.ingress, defaults.canary_ready_threshold), (None, None, 100));

    assert_eq!(
        errors(&with(json!({
            "metricsServer": "prometheus:9090",
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "HTTPRoute", "name": "podinfo"},
            "analysis": {"canaryReadyThreshold": 101, "primaryReadyThreshold": -1}
        }))),
        [
            "spec.metricsServer: Invalid value: \"prometheus:9090\": must be an absolute http or https URL",
            "spec.ingressRef.kind: Unsupported value: \"HTTPRoute\": supported values: \"Ingress\"",
            "spec.analysis.canaryReadyThreshold: Invalid value: 101: must be between 0 and 100, inclusive",
            "spec.analysis.primaryReadyThreshold: Invalid value: -1: must be between 0 and 100, inclusive",
        ]
    );
}

#[test]
fn accepted_and_ignored_fields_are_said_to_be_ignored() {
    let spec = with(json!({
        "autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo",
                          "primaryScalerReplicas": {"minReplicas": 2, "maxReplicas": 4}},
        "revertOnDeletion": true,
        "service": {"port": 80, "gateways": ["public-gateway.istio-system.svc.cluster.local"], "hosts": ["app.example.com"],
                    "unmanagedMetadata": {"labels": ["team"]}},
        "analysis": {"primaryReadyThreshold": 50}
    }));
    assert_eq!(
        warnings(&spec),
        [
            "spec.autoscalerRef: not needed: the Deployment's own autoscaler keeps scaling it during a release (no \
             primary copy is made), and the canary copy is sized from the Deployment's current replicas",
            "spec.autoscalerRef.primaryScalerReplicas: ignored: there is no primary copy to scale",
            "spec.service.gateways: ignored: a setting of Istio, which Flagger's APISIX provider ignores too: the \
             routeRef's ApisixRoute routes the traffic",
            "spec.service.hosts: ignored: a setting of Istio and Gateway API, which Flagger's APISIX provider ignores \
             too: the routeRef's ApisixRoute routes the traffic",
            "spec.analysis.primaryReadyThreshold: ignored: there is no primary Deployment; the promotion waits until \
             the Deployment's rolling update has every replica updated and available",
        ]
    );
    assert_eq!(
        errors(&with(json!({"autoscalerRef": {"apiVersion": "v1", "kind": "ReplicaSet", "name": "podinfo"}}))),
        ["spec.autoscalerRef.kind: Unsupported value: \"ReplicaSet\": supported values: \"HorizontalPodAutoscaler\", \
          \"ScaledObject\""]
    );
}

#[test]
fn refused_fields_say_why() {
    let spec = with(json!({
        "canaryAnalysis": {"interval": "1m", "threshold": 5},
        "upstreamRef": {"apiVersion": "gloo.solo.io/v1", "kind": "Upstream", "name": "podinfo"},
        "service": {"primary": {"labels": {"a": "b"}}, "canary": {"annotations": {"c": "d"}}},
        "analysis": {"sessionAffinity": {"cookieName": "canary", "sameSite": "Sometimes"}}
    }));
    assert_eq!(
        errors(&spec),
        [
            "spec.canaryAnalysis: Forbidden: Flagger's deprecated name of analysis: rename it to analysis",
            "spec.upstreamRef: Forbidden: a Gloo Upstream: APISIX routes to the Service of the routeRef's rule, there \
             is no upstream to name",
            "spec.service.primary: Forbidden: there is no <service>-primary Service: the Deployment's own pods serve \
             as the stable version through the Service; label the Service itself (or set apex when the Canary \
             generates it)",
            "spec.service.canary: Forbidden: the <service>-canary Service is a copy of the Service, with its labels \
             and annotations; label the Service itself",
            "spec.analysis.sessionAffinity.sameSite: Unsupported value: \"Sometimes\": supported values: \"Strict\", \
             \"Lax\", \"None\"",
        ]
    );
}

#[test]
fn metric_templates_take_flaggers_header_lists_and_refuse_other_providers() {
    let template = |provider: Value| -> MetricTemplateSpec {
        serde_json::from_value(json!({"provider": provider, "query": "sum(up{ns=\"{{ namespace }}\"})"})).unwrap()
    };
    let lists = template(json!({
        "type": "prometheus", "address": "http://prometheus:9090",
        "headers": {"X-Scope-OrgID": ["team-a", "team-b"], "X-Env": "prod"}
    }));
    assert!(validate_metric_template(&lists).errors.is_empty());
    let headers = lists.provider.headers.as_ref().unwrap();
    assert_eq!(headers["X-Scope-OrgID"], HeaderValues::Many(vec!["team-a".into(), "team-b".into()]));
    assert_eq!(headers["X-Env"], HeaderValues::One("prod".into()));
    let (sent, problems) = apisix_canary::analysis::template::custom_headers(&lists.provider);
    assert!(problems.is_empty());
    let values: Vec<_> = sent.get_all("x-scope-orgid").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(values, ["team-a", "team-b"], "each value sent, as Go's http.Header does");

    let numbers = template(json!({"type": "prometheus", "address": "http://p:9090", "headers": {"X-Id": 7}}));
    assert_eq!(
        validate_metric_template(&numbers).errors.to_string(),
        "spec.provider.headers[X-Id]: Invalid value: 7: must be a string or a list of strings"
    );
    let cloudwatch = template(json!({"type": "cloudwatch", "region": "ap-northeast-1"}));
    assert_eq!(
        validate_metric_template(&cloudwatch).errors.to_string(),
        "[spec.provider.region: Forbidden: \"ap-northeast-1\" is a region of CloudWatch, which is not supported: \
         the only type is prometheus, spec.provider.type: Unsupported value: \"cloudwatch\": supported values: \
         \"prometheus\"]"
    );
    let datadog = template(json!({"type": "datadog", "address": "https://api.datadoghq.com"}));
    assert_eq!(
        validate_metric_template(&datadog).errors.to_string(),
        "spec.provider.type: Unsupported value: \"datadog\": supported values: \"prometheus\""
    );
}

#[test]
fn step_weight_and_step_weights_together_are_refused() {
    let both = with(json!({"analysis": {"stepWeight": 10, "stepWeights": [5, 50]}}));
    assert_eq!(
        errors(&both),
        ["spec.analysis.stepWeight: Forbidden: set stepWeight or stepWeights, not both: Flagger would advance by \
          stepWeight up to the last stepWeights entry"]
    );
    // The same in v1alpha1, which is stored as v1beta1 and read as it by the controller.
    let alpha: apisix_canary::api::canary::v1alpha1::Canary = serde_json::from_value(json!({
        "apiVersion": "apisix-canary.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"target": "podinfo", "route": "podinfo", "stepWeight": 10, "stepWeights": [5, 50]}
    }))
    .unwrap();
    let refused = Plan::from_v1alpha1(&alpha).unwrap_err().to_string();
    assert!(refused.starts_with("spec.stepWeight: Forbidden: set stepWeight or stepWeights, not both"), "{refused}");
}
