//! Edges of conversion and validation a reviewer found: spellings, raw metadata and
//! status, malformed spill annotations, edits at v1alpha1, bounds in both forms.

use apisix_canary::admission::canary::{validate_v1alpha1, validate_v1beta1};
use apisix_canary::api::canary::convert::{SPELLING_ANNOTATION, to_v1alpha1};
use apisix_canary::api::canary::v1alpha1::SPILL_ANNOTATION;
use apisix_canary::api::canary::{v1alpha1, v1beta1};
use apisix_canary::conversion::convert;
use serde_json::{Value, json};

fn scenario() -> v1beta1::Canary {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/canaries/scenario.yaml");
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn alpha(spec: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "apisix-canary.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "annotations": annotations},
        "spec": spec,
    })
}

const BETA: &str = "apisix-canary.dev/v1beta1";
const ALPHA: &str = "apisix-canary.dev/v1alpha1";

#[test]
fn an_edited_scenario_at_v1alpha1_is_still_valid() {
    let mut a = to_v1alpha1(&scenario()).unwrap();
    a.spec.max_weight = Some(40);
    let f = validate_v1alpha1(&a);
    assert!(f.errors.is_empty(), "{}", f.errors);
}

#[test]
fn hand_written_durations_keep_their_spelling() {
    for written in ["1000ms", "90s", "1h0m", "1.5ms", "0.5s"] {
        let object = alpha(json!({"target": "podinfo", "route": "podinfo", "maxRequestDuration": written}), json!({}));
        let beta = convert(object.clone(), BETA).unwrap();
        assert_eq!(beta["metadata"]["annotations"][SPELLING_ANNOTATION], written, "{written}");
        let back = convert(beta, ALPHA).unwrap();
        assert_eq!(back["spec"]["maxRequestDuration"], written);
        assert!(back["metadata"].get("annotations").is_none(), "{back}");
    }
    // The canonical spelling needs no memory.
    let object = alpha(json!({"target": "podinfo", "maxRequestDuration": "1s"}), json!({}));
    assert!(convert(object, BETA).unwrap()["metadata"].get("annotations").is_none());
}

#[test]
fn metadata_and_status_travel_as_raw_json() {
    let mut beta = serde_json::to_value(scenario()).unwrap();
    beta["status"] = json!({"phase": "Progressing", "lastTransitionTime": "2024-01-02T03:04:05.123456Z",
        "conditions": [{"type": "Promoted", "status": "Unknown", "lastUpdateTime": "2024-01-02T03:04:05+02:00"}]});
    beta["metadata"]["managedFields"] = json!([{"manager": "kubectl", "time": "2024-01-02T03:04:05.5Z"}]);
    let alpha = convert(beta.clone(), ALPHA).unwrap();
    assert_eq!(alpha["status"], beta["status"]);
    assert_eq!(alpha["metadata"]["managedFields"], beta["metadata"]["managedFields"]);
    assert_eq!(convert(alpha, BETA).unwrap(), beta);
}

#[test]
fn malformed_spill_annotations_fail_instead_of_losing_data() {
    for spill in [
        "[1,2]",
        "\"str\"",
        "42",
        "null",
        r#"{"analysis":5}"#,
        r#"{"targetRef":[]}"#,
        r#"{"analysis":{"metrics":7}}"#,
        r#"{"analysis":{"metrics":[{"name":"request-success-rate","thresholdRange":7}]}}"#,
    ] {
        let object = alpha(
            json!({"target": "podinfo", "route": "podinfo", "minSuccessRate": 99}),
            json!({SPILL_ANNOTATION: spill}),
        );
        let e = convert(object.clone(), BETA).unwrap_err().to_string();
        assert!(e.contains(SPILL_ANNOTATION) || e.contains("cannot express"), "{spill}: {e}");
        let c: v1alpha1::Canary = serde_json::from_value(object).unwrap();
        let f = validate_v1alpha1(&c);
        assert!(
            f.errors.to_string().starts_with(&format!("metadata.annotations[{SPILL_ANNOTATION}]")),
            "{spill}: {}",
            f.errors
        );
    }
    // A null templateRef is no templateRef: one metric, not two.
    let object = alpha(
        json!({"target": "podinfo", "minSuccessRate": 99}),
        json!({SPILL_ANNOTATION: r#"{"analysis":{"metrics":[{"name":"request-success-rate","templateRef":null}]}}"#}),
    );
    let beta = convert(object, BETA).unwrap();
    assert_eq!(beta["spec"]["analysis"]["metrics"].as_array().unwrap().len(), 1);
}

#[test]
fn errors_from_the_spill_point_at_the_annotation() {
    let spill = r#"{"analysis":{"webhooks":[{"name":"load","url":"loadtester.test/"}]}}"#;
    let c: v1alpha1::Canary = serde_json::from_value(alpha(
        json!({"target": "podinfo", "route": "podinfo", "maxWeight": 150}),
        json!({SPILL_ANNOTATION: spill}),
    ))
    .unwrap();
    assert_eq!(
        validate_v1alpha1(&c).errors.to_string(),
        format!(
            "[spec.maxWeight: Invalid value: 150: must be between 1 and 100, metadata.annotations[{SPILL_ANNOTATION}]: \
             Invalid value: \"(json)\": spec.analysis.webhooks[0].url: Invalid value: \"loadtester.test/\": must be an \
             absolute http or https URL]"
        )
    );
}

#[test]
fn request_duration_bounds_are_the_same_in_both_versions() {
    let mut beta = scenario();
    beta.spec.analysis.metrics[1].threshold_range.as_mut().unwrap().max = Some(700_000.0);
    assert_eq!(
        validate_v1beta1(&beta.spec).errors.to_string(),
        "spec.analysis.metrics[1].thresholdRange.max: Invalid value: 700000: must be between 1ms and 10m"
    );
    let c: v1alpha1::Canary = serde_json::from_value(alpha(
        json!({"target": "podinfo", "route": "podinfo", "maxRequestDuration": "11m40s"}),
        json!({}),
    ))
    .unwrap();
    assert_eq!(
        validate_v1alpha1(&c).errors.to_string(),
        "spec.maxRequestDuration: Invalid value: \"11m40s\": must be between 1ms and 10m"
    );
}

#[test]
fn every_flat_field_is_blamed_at_its_flat_path() {
    let mut a = to_v1alpha1(&scenario()).unwrap();
    a.spec.progress_deadline_seconds = Some(0);
    a.spec.step_weight = Some(0);
    let f = validate_v1alpha1(&a);
    let errors = f.errors.to_string();
    assert!(errors.contains("spec.progressDeadlineSeconds: Invalid value: 0: "), "{errors}");
    assert!(errors.contains("spec.stepWeight: Invalid value: 0: must be between 1 and 100"), "{errors}");
    assert!(!errors.contains(SPILL_ANNOTATION), "nothing here came from the spill: {errors}");
}
