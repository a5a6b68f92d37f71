//! The Canary API: the fixture corpus deserializes and validates, and conversion between
//! v1beta1 and v1alpha1 is lossless both ways (fixtures and generated specs).

use std::collections::BTreeMap;

use apisix_canary::admission::canary::{validate_v1alpha1, validate_v1beta1};
use apisix_canary::admission::templates::validate_metric_template;
use apisix_canary::api::canary::convert::{to_v1alpha1, to_v1beta1};
use apisix_canary::api::canary::v1alpha1::SPILL_ANNOTATION;
use apisix_canary::api::canary::{ObjectRef, Phase, v1alpha1, v1beta1};
use apisix_canary::api::metric_template::MetricTemplate;
use proptest::prelude::*;

#[path = "support/seed.rs"]
mod seed;

fn read<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/canaries").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn corpus() -> Vec<(&'static str, v1beta1::Canary)> {
    ["scenario.yaml", "minimal.yaml", "every-field.yaml"].into_iter().map(|n| (n, read(n))).collect()
}

#[test]
fn scenario_canary_and_template_deserialize_and_validate() {
    let c: v1beta1::Canary = read("scenario.yaml");
    assert_eq!(c.spec.target_ref.name, "podinfo");
    assert_eq!(c.spec.analysis.max_weight, Some(50));
    assert_eq!(c.spec.analysis.metrics[0].threshold_range.as_ref().unwrap().min, Some(99.0));
    assert_eq!(c.spec.analysis.webhooks[0].type_.as_deref(), Some("rollout"));
    assert!(c.spec.analysis.webhooks[0].metadata.as_ref().unwrap()["cmd"].starts_with("hey -z 1m -q 10 -c 2"));
    let findings = validate_v1beta1(&c.spec);
    assert!(findings.errors.is_empty(), "{}", findings.errors);
    assert!(findings.warnings.is_empty(), "{:?}", findings.warnings);

    let t: MetricTemplate = read("metric-template.yaml");
    assert_eq!(t.spec.provider.type_, "prometheus");
    let findings = validate_metric_template(&t.spec);
    assert!(findings.errors.is_empty(), "{}", findings.errors);
}

#[test]
fn corpus_is_valid() {
    for (name, c) in corpus() {
        let findings = validate_v1beta1(&c.spec);
        assert!(findings.errors.is_empty(), "{name}: {}", findings.errors);
    }
    let every: v1beta1::Canary = read("every-field.yaml");
    assert_eq!(every.status.as_ref().unwrap().phase, Some(Phase::Progressing));
    let flat: v1alpha1::Canary = read("flat-v1alpha1.yaml");
    let findings = validate_v1alpha1(&flat);
    assert!(findings.errors.is_empty(), "{}", findings.errors);
}

#[test]
fn corpus_round_trips_through_v1alpha1() {
    for (name, c) in corpus() {
        let alpha = to_v1alpha1(&c).unwrap();
        let back = to_v1beta1(&alpha).unwrap();
        assert_eq!(back, c, "{name}");
        // What reaches the apiserver is JSON: the round trip must survive it too.
        let alpha: v1alpha1::Canary = serde_json::from_value(serde_json::to_value(&alpha).unwrap()).unwrap();
        assert_eq!(to_v1beta1(&alpha).unwrap(), c, "{name} via JSON");
    }
}

#[test]
fn expressible_specs_need_no_spill_annotation() {
    let minimal: v1beta1::Canary = read("minimal.yaml");
    let alpha = to_v1alpha1(&minimal).unwrap();
    assert_eq!(alpha.metadata.annotations, None);
    assert_eq!(alpha.spec.target, "checkout");
    assert_eq!(alpha.spec.route.as_deref(), Some("shop"));

    // Built-in metrics with nothing but their bound map to flat fields alone.
    let mut c = minimal.clone();
    c.spec.analysis.metrics =
        vec![metric("request-success-rate", Some(99.0), None), metric("request-duration", None, Some(500.0))];
    let alpha = to_v1alpha1(&c).unwrap();
    assert_eq!(alpha.metadata.annotations, None, "{:?}", alpha.metadata.annotations);
    assert_eq!(alpha.spec.min_success_rate, Some(99.0));
    assert_eq!(alpha.spec.max_request_duration.as_deref(), Some("500ms"));
    assert_eq!(to_v1beta1(&alpha).unwrap(), c);

    // The scenario's metric intervals and webhook cannot be flat: they ride along.
    let scenario: v1beta1::Canary = read("scenario.yaml");
    let alpha = to_v1alpha1(&scenario).unwrap();
    let spill = &alpha.metadata.annotations.as_ref().unwrap()[SPILL_ANNOTATION];
    assert!(spill.contains("load-test") && spill.contains("\"interval\":\"1m\""), "{spill}");
    assert!(!spill.contains("maxWeight"), "flat fields are not duplicated: {spill}");
}

#[test]
fn an_edit_at_v1alpha1_wins_and_keeps_the_rest() {
    let scenario: v1beta1::Canary = read("scenario.yaml");
    let mut alpha = to_v1alpha1(&scenario).unwrap();
    alpha.spec.max_weight = Some(30);
    alpha.spec.min_success_rate = Some(95.0);
    let back = to_v1beta1(&alpha).unwrap();
    assert_eq!(back.spec.analysis.max_weight, Some(30));
    let rate = &back.spec.analysis.metrics[0];
    assert_eq!((rate.name.as_str(), rate.threshold_range.as_ref().unwrap().min), ("request-success-rate", Some(95.0)));
    assert_eq!(rate.interval.as_deref(), Some("1m"), "the metric interval survived");
    assert_eq!(back.spec.analysis.webhooks, scenario.spec.analysis.webhooks);
}

#[test]
fn flat_fixture_round_trips_through_v1beta1() {
    let flat: v1alpha1::Canary = read("flat-v1alpha1.yaml");
    let beta = to_v1beta1(&flat).unwrap();
    assert_eq!(beta.spec.route_ref.as_ref().unwrap().kind, "ApisixRoute");
    assert_eq!(beta.spec.analysis.metrics[1].threshold_range.as_ref().unwrap().max, Some(500.0));
    assert!(validate_v1beta1(&beta.spec).errors.is_empty());
    assert_eq!(to_v1alpha1(&beta).unwrap(), flat);
}

#[test]
fn the_same_bad_value_gets_the_same_words_in_every_form() {
    let mut beta: v1beta1::Canary = read("minimal.yaml");
    beta.spec.analysis.max_weight = Some(150);
    let mut alpha = to_v1alpha1(&read("minimal.yaml")).unwrap();
    alpha.spec.max_weight = Some(150);
    let ann = BTreeMap::from([
        ("apisix-canary.dev/route".to_owned(), "shop".to_owned()),
        ("apisix-canary.dev/max-weight".to_owned(), "150".to_owned()),
    ]);
    let from_beta = validate_v1beta1(&beta.spec).errors.to_string();
    let from_alpha = validate_v1alpha1(&alpha).errors.to_string();
    let from_ann = apisix_canary::release::plan::Plan::from_annotations("shop", &ann).unwrap_err().to_string();
    assert_eq!(from_beta, "spec.analysis.maxWeight: Invalid value: 150: must be between 1 and 100");
    assert_eq!(from_alpha, "spec.maxWeight: Invalid value: 150: must be between 1 and 100");
    assert_eq!(
        from_ann,
        "metadata.annotations[apisix-canary.dev/max-weight]: Invalid value: \"150\": must be between 1 and 100"
    );
}

fn metric(name: &str, min: Option<f64>, max: Option<f64>) -> v1beta1::Metric {
    v1beta1::Metric {
        name: name.to_owned(),
        threshold_range: Some(v1beta1::ThresholdRange { min, max }),
        ..Default::default()
    }
}

fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    proptest::option::of(s)
}

prop_compose! {
    fn arb_metric()(
        name in prop_oneof![Just("request-success-rate".to_owned()), Just("request-duration".to_owned()), "[a-z0-9 ]{1,12}"],
        min in opt(prop_oneof![0.0..100.0f64, Just(99.0)]),
        max in opt(prop_oneof![1.0..10_000.0f64, Just(500.0), Just(0.5)]),
        interval in opt(prop_oneof![Just("1m".to_owned()), Just("30s".to_owned())]),
        template in opt("[a-z]{1,8}"),
        vars in opt(proptest::collection::btree_map("[a-z]{1,5}", "[a-z0-9]{0,5}", 0..3)),
        scope in opt(prop_oneof![Just("canary".to_owned()), Just("route".to_owned())]),
        on_no_data in opt(prop_oneof![Just("fail".to_owned()), Just("pass".to_owned())]),
        baseline in opt((Just("baseline".to_owned()), opt(prop_oneof![0.0..5.0f64, Just(1.0)]))),
        min_requests in opt(0..100i64),
        flagger in (opt(prop_oneof![0.0..100.0f64, Just(99.0)]), opt(Just("sum(up{ns=\"{{ namespace }}\"})".to_owned()))),
    ) -> v1beta1::Metric {
        v1beta1::Metric {
            name,
            threshold_range: (min.is_some() || max.is_some()).then_some(v1beta1::ThresholdRange { min, max }),
            interval,
            template_ref: template.map(|name| apisix_canary::api::canary::NamespacedRef { name, ..Default::default() }),
            template_variables: vars,
            scope,
            on_no_data,
            max_delta: baseline.as_ref().and_then(|(_, d)| *d),
            compare: baseline.map(|(c, _)| c),
            min_requests,
            threshold: flagger.0,
            query: flagger.1,
        }
    }
}

prop_compose! {
    fn arb_webhook()(
        name in "[a-z]{1,8}",
        type_ in opt(prop_oneof![Just("rollout".to_owned()), Just("pre-rollout".to_owned()), Just("event".to_owned())]),
        timeout in opt(Just("5s".to_owned())),
        cmd in opt("[a-z -]{0,20}"),
        retries in opt(0..5i32),
        flags in (opt(any::<bool>()), opt(any::<bool>())),
    ) -> v1beta1::Webhook {
        v1beta1::Webhook {
            name,
            type_,
            url: "http://flagger-loadtester.test/".to_owned(),
            timeout,
            metadata: cmd.map(|c| BTreeMap::from([("cmd".to_owned(), c)])),
            retries,
            mute_alert: flags.0,
            disable_tls: flags.1,
        }
    }
}

prop_compose! {
    fn arb_spec()(
        target in "[a-z][a-z0-9-]{0,10}",
        route in opt("[a-z]{1,8}"),
        route_version in prop_oneof![Just("apisix.apache.org/v2".to_owned()), Just("apisix.apache.org/v2beta3".to_owned())],
        target_kind in prop_oneof![Just("Deployment".to_owned()), Just("".to_owned()), Just("StatefulSet".to_owned())],
        service in opt((opt("[a-z]{1,8}"), opt(1..65535i32), opt(Just("http".to_owned())))),
        weights in (opt(1..100i32), opt(1..100i32), opt(proptest::collection::vec(1..100i32, 0..4)), opt(1..100i32)),
        interval in opt(prop_oneof![Just("10s".to_owned()), Just("1m".to_owned())]),
        threshold in opt(0..20i32),
        metrics in proptest::collection::vec(arb_metric(), 0..4),
        webhooks in proptest::collection::vec(arb_webhook(), 0..3),
        top in (opt(1..600i32), opt(any::<bool>()), opt(any::<bool>()), opt(Just("apisix".to_owned()))),
        unsupported in (opt(1..10i32), opt(any::<bool>()), arb_flagger()),
        judge in (
            opt(prop_oneof![Just("interval".to_owned()), Just("sequential".to_owned()), "[a-z]{0,6}"]),
            opt(prop_oneof![Just(99.0), Just(99.9), Just(100.0), 0.0..200.0f64]),
        ),
    ) -> v1beta1::CanarySpec {
        let flagger = unsupported.2;
        v1beta1::CanarySpec {
            provider: top.3,
            target_ref: ObjectRef { api_version: "apps/v1".to_owned(), kind: target_kind, name: target },
            route_ref: route.map(|name| ObjectRef { api_version: route_version, kind: "ApisixRoute".to_owned(), name }),
            service: service.map(|(name, port, target_port)| v1beta1::CanaryService {
                name,
                port,
                target_port: target_port.map(serde_json::Value::from),
                mesh: v1beta1::MeshSettings { timeout: flagger.mesh_timeout.clone(), ..Default::default() },
                primary: flagger.primary.clone(),
                ..v1beta1::CanaryService::default()
            }),
            analysis: v1beta1::Analysis {
                interval,
                threshold,
                max_weight: weights.0,
                step_weight: weights.1,
                step_weights: weights.2,
                step_weight_promotion: weights.3,
                metrics,
                judge: judge.0,
                confidence: judge.1,
                webhooks,
                iterations: unsupported.0,
                mirror: unsupported.1,
                canary_ready_threshold: flagger.ready.0,
                primary_ready_threshold: flagger.ready.1,
                ..Default::default()
            },
            progress_deadline_seconds: top.0,
            skip_analysis: top.1,
            suspend: top.2,
            metrics_server: flagger.metrics_server,
            autoscaler_ref: flagger.autoscaler_ref,
            ingress_ref: flagger.ingress,
            upstream_ref: None,
            canary_analysis: flagger.canary_analysis,
            revert_on_deletion: flagger.revert_on_deletion,
        }
    }
}

/// Flagger's fields besides the release's steps, for [`arb_spec`].
#[derive(Debug, Clone)]
struct FlaggerFields {
    metrics_server: Option<String>,
    autoscaler_ref: Option<v1beta1::AutoscalerRef>,
    ingress: Option<ObjectRef>,
    canary_analysis: Option<serde_json::Value>,
    revert_on_deletion: Option<bool>,
    ready: (Option<i32>, Option<i32>),
    mesh_timeout: Option<String>,
    primary: Option<v1beta1::CustomMetadata>,
}

prop_compose! {
    fn arb_flagger()(
        metrics_server in opt(Just("http://prometheus.apisix:9090".to_owned())),
        hpa in opt((Just("podinfo".to_owned()), opt(Just(BTreeMap::from([("q".to_owned(), "up".to_owned())]))))),
        ingress in opt("[a-z]{1,8}"),
        canary_analysis in opt(Just(serde_json::json!({"interval": "1m", "threshold": 5}))),
        revert_on_deletion in opt(any::<bool>()),
        ready in (opt(0..=100i32), opt(0..=100i32)),
        mesh_timeout in opt(Just("30s".to_owned())),
        primary in opt(Just(BTreeMap::from([("team".to_owned(), "a".to_owned())]))),
    ) -> FlaggerFields {
        FlaggerFields {
            metrics_server,
            autoscaler_ref: hpa.map(|(name, queries)| v1beta1::AutoscalerRef {
                api_version: "autoscaling/v2".to_owned(),
                kind: "HorizontalPodAutoscaler".to_owned(),
                name,
                primary_scaler_queries: queries,
                primary_scaler_replicas: None,
            }),
            ingress: ingress.map(|name| ObjectRef {
                api_version: "networking.k8s.io/v1".to_owned(),
                kind: "Ingress".to_owned(),
                name,
            }),
            canary_analysis,
            revert_on_deletion,
            ready,
            mesh_timeout,
            primary: primary.map(|labels| v1beta1::CustomMetadata { labels: Some(labels), annotations: None }),
        }
    }
}

fn canary(spec: v1beta1::CanarySpec) -> v1beta1::Canary {
    let mut c = v1beta1::Canary::new("podinfo", spec);
    c.metadata.namespace = Some("test".to_owned());
    c
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        rng_seed: seed::proptest(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn v1beta1_to_v1alpha1_and_back_is_identity(spec in arb_spec()) {
        let c = canary(spec);
        let alpha = to_v1alpha1(&c).unwrap();
        let json = serde_json::to_value(&alpha).unwrap();
        let alpha: v1alpha1::Canary = serde_json::from_value(json).unwrap();
        prop_assert_eq!(to_v1beta1(&alpha).unwrap(), c);
    }

    #[test]
    fn v1alpha1_to_v1beta1_and_back_is_identity(spec in arb_spec()) {
        // Every v1alpha1 object the API server can hold came from some v1beta1 one, or
        // was written flat: both shapes go through v1beta1 and come back the same.
        let alpha = to_v1alpha1(&canary(spec)).unwrap();
        let beta = to_v1beta1(&alpha).unwrap();
        prop_assert_eq!(to_v1alpha1(&beta).unwrap(), alpha.clone());

        let mut flat = alpha;
        flat.metadata.annotations = None;
        let beta = to_v1beta1(&flat).unwrap();
        prop_assert_eq!(to_v1alpha1(&beta).unwrap(), flat);
    }
}
