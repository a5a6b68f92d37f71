//! `judge` and `confidence` (issue 29) in every form they are written: a v1beta1
//! Canary's `spec.analysis`, a v1alpha1 Canary's flat fields and a Deployment's
//! annotations. Each parses into `Plan::judge`, each bad value gets its field, value and
//! what is allowed, a confidence the judge does not read is warned about, and the
//! conversion holds both fields flat, both ways.

use std::collections::BTreeMap;
use std::sync::Arc;

use apisix_canary::admission::canary::{validate_v1alpha1, validate_v1beta1};
use apisix_canary::api::canary::convert::{to_v1alpha1, to_v1beta1};
use apisix_canary::api::canary::{v1alpha1, v1beta1};
use apisix_canary::metrics::Metrics;
use apisix_canary::release::plan::{Judge, OptIn, Plan};
use apisix_canary::server::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const CONFIDENCE_DETAIL: &str = "must be a number strictly between 50 and 100, such as 99 or 99.9";
const SUPPORTED: &str = "supported values: \"interval\", \"sequential\"";
const NO_EFFECT: &str = "has no effect without judge: sequential (the interval judge, the default, runs no test)";

/// A v1beta1 spec with these analysis fields, its threshold and maxWeight written (no
/// warning about Flagger's defaults).
fn beta(fields: Value) -> v1beta1::CanarySpec {
    let mut analysis = json!({"threshold": 5, "maxWeight": 50});
    json_patch::merge(&mut analysis, &fields);
    serde_json::from_value(json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"},
        "analysis": analysis
    }))
    .unwrap()
}

fn alpha(fields: Value) -> v1alpha1::Canary {
    let mut spec = json!({"target": "podinfo", "route": "podinfo"});
    json_patch::merge(&mut spec, &fields);
    v1alpha1::Canary::new("podinfo", serde_json::from_value(spec).unwrap())
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let route = ("apisix-canary.dev/route", "podinfo");
    [route].iter().chain(pairs).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn inline(pairs: &[(&str, &str)]) -> Result<(Plan, Vec<String>), Vec<String>> {
    match Plan::from_annotations("podinfo", &annotations(pairs)) {
        Ok((OptIn::Inline(plan), warnings)) => Ok((plan, warnings.iter().map(|(p, w)| format!("{p}: {w}")).collect())),
        Ok((other, _)) => panic!("not inline: {other:?}"),
        Err(errors) => Err(errors.iter().map(ToString::to_string).collect()),
    }
}

fn seq(confidence: f64) -> Judge {
    Judge::Sequential { confidence }
}

#[test]
fn a_canary_parses_its_judge_with_the_defaults() {
    let cases = [
        (json!({}), Judge::Interval),
        (json!({"judge": "interval"}), Judge::Interval),
        (json!({"judge": "sequential"}), seq(99.0)),
        (json!({"judge": "sequential", "confidence": 99.9}), seq(99.9)),
        (json!({"judge": "sequential", "confidence": 95}), seq(95.0)),
        (json!({"judge": "sequential", "confidence": 50.001}), seq(50.001)),
        (json!({"judge": "sequential", "confidence": 99.9999}), seq(99.9999)),
    ];
    for (analysis, want) in cases {
        let (plan, warnings) = Plan::from_canary(&beta(analysis.clone())).unwrap_or_else(|e| panic!("{analysis}: {e}"));
        assert_eq!(plan.judge, want, "{analysis}");
        assert!(warnings.is_empty(), "{analysis}: {warnings:?}");
    }
}

#[test]
fn a_canarys_bad_judge_or_confidence_names_the_field_and_what_is_allowed() {
    let a = "spec.analysis";
    let cases = [
        (json!({"judge": "bayesian"}), vec![format!("{a}.judge: Unsupported value: \"bayesian\": {SUPPORTED}")]),
        (json!({"judge": "Sequential"}), vec![format!("{a}.judge: Unsupported value: \"Sequential\": {SUPPORTED}")]),
        (json!({"judge": ""}), vec![format!("{a}.judge: Unsupported value: \"\": {SUPPORTED}")]),
        (
            json!({"judge": "sequential", "confidence": 100}),
            vec![format!("{a}.confidence: Invalid value: 100: {CONFIDENCE_DETAIL}")],
        ),
        (
            json!({"judge": "sequential", "confidence": 50}),
            vec![format!("{a}.confidence: Invalid value: 50: {CONFIDENCE_DETAIL}")],
        ),
        (
            json!({"judge": "sequential", "confidence": 0.99}),
            vec![format!("{a}.confidence: Invalid value: 0.99: {CONFIDENCE_DETAIL}")],
        ),
        (
            json!({"judge": "sequential", "confidence": -1}),
            vec![format!("{a}.confidence: Invalid value: -1: {CONFIDENCE_DETAIL}")],
        ),
        (
            json!({"judge": "sequential", "confidence": 199.5}),
            vec![format!("{a}.confidence: Invalid value: 199.5: {CONFIDENCE_DETAIL}")],
        ),
        // A bad confidence is refused whatever the judge: a value is valid or not alone.
        (json!({"confidence": 100}), vec![format!("{a}.confidence: Invalid value: 100: {CONFIDENCE_DETAIL}")]),
        (
            json!({"judge": "fast", "confidence": 100}),
            vec![
                format!("{a}.confidence: Invalid value: 100: {CONFIDENCE_DETAIL}"),
                format!("{a}.judge: Unsupported value: \"fast\": {SUPPORTED}"),
            ],
        ),
    ];
    for (analysis, want) in cases {
        let errors: Vec<String> =
            validate_v1beta1(&beta(analysis.clone())).errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors, want, "{analysis}");
    }
}

#[test]
fn a_confidence_without_the_sequential_judge_is_warned_to_have_no_effect() {
    for analysis in [json!({"confidence": 99.9}), json!({"judge": "interval", "confidence": 99.9})] {
        let f = validate_v1beta1(&beta(analysis.clone()));
        assert!(f.errors.is_empty(), "{analysis}: {}", f.errors);
        assert_eq!(f.warnings(), [format!("spec.analysis.confidence: confidence 99.9 {NO_EFFECT}")], "{analysis}");
        assert_eq!(Plan::from_canary(&beta(analysis)).unwrap().0.judge, Judge::Interval);
    }
    let f = validate_v1beta1(&beta(json!({"judge": "sequential", "confidence": 99.9})));
    assert_eq!(f.warnings(), Vec::<String>::new());
}

#[test]
fn a_v1alpha1_canary_has_the_same_rules_at_its_flat_fields() {
    let (plan, _) = Plan::from_v1alpha1(&alpha(json!({"judge": "sequential", "confidence": 99.5}))).unwrap();
    assert_eq!(plan.judge, seq(99.5));
    let (plan, _) = Plan::from_v1alpha1(&alpha(json!({"judge": "sequential"}))).unwrap();
    assert_eq!(plan.judge, seq(99.0));
    assert_eq!(Plan::from_v1alpha1(&alpha(json!({}))).unwrap().0.judge, Judge::Interval);

    let f = validate_v1alpha1(&alpha(json!({"judge": "wald", "confidence": 100})));
    let errors: Vec<String> = f.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            format!("spec.confidence: Invalid value: 100: {CONFIDENCE_DETAIL}"),
            format!("spec.judge: Unsupported value: \"wald\": {SUPPORTED}"),
        ]
    );
    let f = validate_v1alpha1(&alpha(json!({"confidence": 95})));
    assert!(f.errors.is_empty(), "{}", f.errors);
    assert!(f.warnings().contains(&format!("spec.confidence: confidence 95 {NO_EFFECT}")), "{:?}", f.warnings());
}

#[test]
fn annotations_parse_the_judge_with_the_defaults() {
    let j = "apisix-canary.dev/judge";
    let c = "apisix-canary.dev/confidence";
    let cases = [
        (vec![], Judge::Interval),
        (vec![(j, "interval")], Judge::Interval),
        (vec![(j, "sequential")], seq(99.0)),
        (vec![(j, "sequential"), (c, "99.9")], seq(99.9)),
        (vec![(j, "sequential"), (c, " 95 ")], seq(95.0)),
    ];
    for (pairs, want) in cases {
        let (plan, warnings) = inline(&pairs).unwrap_or_else(|e| panic!("{pairs:?}: {e:?}"));
        assert_eq!(plan.judge, want, "{pairs:?}");
        assert!(warnings.is_empty(), "{pairs:?}: {warnings:?}");
    }
}

#[test]
fn bad_judge_annotations_name_the_key_the_value_and_what_is_allowed() {
    let j = "apisix-canary.dev/judge";
    let c = "apisix-canary.dev/confidence";
    let at = |key: &str| format!("metadata.annotations[{key}]");
    let bad_confidence = |v: &str| format!("{}: Invalid value: \"{v}\": {CONFIDENCE_DETAIL}", at(c));
    let cases = [
        (vec![(j, "Sequential")], vec![format!("{}: Unsupported value: \"Sequential\": {SUPPORTED}", at(j))]),
        (vec![(j, "sequential ")], vec![format!("{}: Unsupported value: \"sequential \": {SUPPORTED}", at(j))]),
        (vec![(j, "sequential"), (c, "100")], vec![bad_confidence("100")]),
        (vec![(j, "sequential"), (c, "50")], vec![bad_confidence("50")]),
        (vec![(j, "sequential"), (c, "99%")], vec![bad_confidence("99%")]),
        (vec![(j, "sequential"), (c, "high")], vec![bad_confidence("high")]),
        (vec![(j, "sequential"), (c, "NaN")], vec![bad_confidence("NaN")]),
        (vec![(j, "sequential"), (c, "inf")], vec![bad_confidence("inf")]),
        (vec![(j, "sequential"), (c, "")], vec![bad_confidence("")]),
        (
            vec![(j, "bayes"), (c, "0.99")],
            vec![bad_confidence("0.99"), format!("{}: Unsupported value: \"bayes\": {SUPPORTED}", at(j))],
        ),
    ];
    for (pairs, want) in cases {
        assert_eq!(inline(&pairs).map(|_| ()), Err(want), "{pairs:?}");
    }
}

#[test]
fn judge_annotations_follow_the_opt_in_rules_of_every_setting() {
    let alone = BTreeMap::from([("apisix-canary.dev/judge".to_owned(), "sequential".to_owned())]);
    assert_eq!(
        Plan::from_annotations("podinfo", &alone).unwrap_err().to_string(),
        "metadata.annotations[apisix-canary.dev/route]: Required value: apisix-canary.dev/judge has no effect \
         without apisix-canary.dev/route"
    );
    let canary_mode = BTreeMap::from([
        ("apisix-canary.dev/canary".to_owned(), "podinfo".to_owned()),
        ("apisix-canary.dev/confidence".to_owned(), "99".to_owned()),
    ]);
    assert_eq!(
        Plan::from_annotations("podinfo", &canary_mode).unwrap_err().to_string(),
        "metadata.annotations[apisix-canary.dev/confidence]: Forbidden: the analysis is defined by the Canary named \
         in apisix-canary.dev/canary; set it there"
    );
}

#[test]
fn a_confidence_annotation_without_the_sequential_judge_is_warned_to_have_no_effect() {
    let c = "apisix-canary.dev/confidence";
    for pairs in [vec![(c, "99.9")], vec![("apisix-canary.dev/judge", "interval"), (c, "99.9")]] {
        let (plan, warnings) = inline(&pairs).unwrap();
        assert_eq!(plan.judge, Judge::Interval);
        assert_eq!(
            warnings,
            [format!(
                "metadata.annotations[{c}]: confidence \"99.9\" has no effect without apisix-canary.dev/judge: \
                 sequential (the interval judge, the default, runs no test)"
            )]
        );
    }
}

#[test]
fn both_fields_convert_flat_and_back() {
    let mut c = v1beta1::Canary::new("podinfo", beta(json!({"judge": "sequential", "confidence": 99.9})));
    c.metadata.namespace = Some("test".to_owned());
    let flat = to_v1alpha1(&c).unwrap();
    assert_eq!((flat.spec.judge.as_deref(), flat.spec.confidence), (Some("sequential"), Some(99.9)));
    assert_eq!(flat.metadata.annotations, None, "held flat, nothing spilled");
    assert_eq!(to_v1beta1(&flat).unwrap(), c);

    // An edit at v1alpha1 reaches v1beta1, and a whole confidence is written as Go does.
    let mut edited = flat.clone();
    edited.spec.confidence = Some(95.0);
    let back = to_v1beta1(&edited).unwrap();
    assert_eq!((back.spec.analysis.judge.as_deref(), back.spec.analysis.confidence), (Some("sequential"), Some(95.0)));
    assert_eq!(serde_json::to_value(&back.spec.analysis).unwrap()["confidence"], json!(95));

    // The other way: v1alpha1 written flat, through v1beta1 and home.
    let written = alpha(json!({"judge": "interval", "confidence": 99}));
    let beta = to_v1beta1(&written).unwrap();
    assert_eq!(serde_json::to_value(&beta.spec.analysis).unwrap(), json!({"judge": "interval", "confidence": 99}));
    assert_eq!(to_v1alpha1(&beta).unwrap(), written);
}

fn review(object: Value) -> Vec<u8> {
    let (group, version) = object["apiVersion"].as_str().unwrap().split_once('/').unwrap();
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5d1e2c3b-0000-4000-8000-000000000029",
            "kind": {"group": group, "version": version, "kind": "Canary"},
            "resource": {"group": group, "version": version, "resource": "canaries"},
            "name": "podinfo",
            "namespace": "test",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"},
            "object": object,
            "oldObject": null,
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
async fn the_canary_webhook_denies_and_warns_in_both_versions() {
    let object = |version: &str, spec: Value| {
        json!({"apiVersion": format!("apisix-canary.dev/{version}"), "kind": "Canary",
               "metadata": {"name": "podinfo", "namespace": "test"}, "spec": spec})
    };
    let spec = serde_json::to_value(beta(json!({"judge": "sequential", "confidence": 100}))).unwrap();
    let answer = post(review(object("v1beta1", spec))).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        format!("spec.analysis.confidence: Invalid value: 100: {CONFIDENCE_DETAIL}")
    );
    let answer =
        post(review(object("v1alpha1", json!({"target": "podinfo", "route": "podinfo", "judge": "Sequential"})))).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        format!("spec.judge: Unsupported value: \"Sequential\": {SUPPORTED}")
    );

    let spec = serde_json::to_value(beta(json!({"confidence": 99.9}))).unwrap();
    let answer = post(review(object("v1beta1", spec))).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        answer["response"]["warnings"],
        json!([format!("spec.analysis.confidence: confidence 99.9 {NO_EFFECT}")])
    );
}

#[test]
fn a_duration_bound_between_latency_buckets_is_said_to_be_judged_at_the_next_one_up() {
    let warned = |pairs: &[(&str, &str)]| inline(pairs).unwrap().1;
    let seq300 =
        warned(&[("apisix-canary.dev/judge", "sequential"), ("apisix-canary.dev/max-request-duration", "300ms")]);
    assert_eq!(
        seq300,
        ["metadata.annotations[apisix-canary.dev/max-request-duration]: request-duration max 300ms is judged by the \
          sequential test at APISIX's 500ms latency bucket, the next one up (the share of requests slower than 500ms \
          against 1 %); its buckets are 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000 ms"]
    );
    assert!(
        warned(&[("apisix-canary.dev/judge", "sequential"), ("apisix-canary.dev/max-request-duration", "500ms")])
            .is_empty()
    );
    assert!(
        warned(&[("apisix-canary.dev/max-request-duration", "300ms")]).is_empty(),
        "the interval judge has no buckets"
    );
    let beyond =
        warned(&[("apisix-canary.dev/judge", "sequential"), ("apisix-canary.dev/max-request-duration", "90s")]);
    assert!(
        beyond[0].contains("beyond APISIX's last latency bucket: the sequential test does not judge it"),
        "{beyond:?}"
    );
    // In a Canary, at the metric's own bound.
    let spec = beta(json!({"judge": "sequential", "metrics": [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
        {"name": "request-duration", "thresholdRange": {"max": 250}, "interval": "1m"}]}));
    let (_, warnings) = Plan::from_canary(&spec).unwrap();
    let paths: Vec<String> = warnings.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(paths, ["spec.analysis.metrics[1].thresholdRange.max"], "{warnings:?}");
}
