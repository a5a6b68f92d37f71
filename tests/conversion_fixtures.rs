//! ConversionReview files through the router, without a socket: pass/ must convert
//! every object (count, order, apiVersion, uid, metadata kept), fail/ must fail with a
//! message, and both answer HTTP 200 with a ConversionReview.

use std::path::PathBuf;
use std::sync::Arc;

use apisix_canary::api::canary::v1alpha1::SPILL_ANNOTATION;
use apisix_canary::metrics::Metrics;
use apisix_canary::server::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

fn files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conversion").join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

async fn convert(body: Vec<u8>) -> Value {
    let router = Router::new(Arc::new(Metrics::new()));
    let req = http::Request::post("/convert").body(Full::new(Bytes::from(body))).unwrap();
    let res = router.route(req).await;
    assert_eq!(res.status(), http::StatusCode::OK);
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

/// Metadata as the API server would compare it: our spill annotation aside.
fn metadata_without_spill(object: &Value) -> Value {
    let mut m = object["metadata"].clone();
    if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
        a.remove(SPILL_ANNOTATION);
    }
    m
}

fn review_of(uid: &str, desired: &str, objects: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "kind": "ConversionReview",
        "apiVersion": "apiextensions.k8s.io/v1",
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects}
    }))
    .unwrap()
}

#[tokio::test]
async fn pass_fixtures_convert_every_object_in_order() {
    for (name, body) in files("pass") {
        let request: Value = serde_json::from_slice(&body).unwrap();
        let desired = request["request"]["desiredAPIVersion"].as_str().unwrap();
        let answer = convert(body.clone()).await;
        assert_eq!(answer["apiVersion"], "apiextensions.k8s.io/v1", "{name}");
        assert_eq!(answer["kind"], "ConversionReview", "{name}");
        let response = &answer["response"];
        assert_eq!(response["uid"], request["request"]["uid"], "{name}");
        assert_eq!(response["result"]["status"], "Success", "{name}: {response}");
        let inputs = request["request"]["objects"].as_array().unwrap();
        let outputs = response["convertedObjects"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert_eq!(outputs.len(), inputs.len(), "{name}");
        for (input, output) in inputs.iter().zip(outputs) {
            assert_eq!(output["apiVersion"], desired, "{name}");
            assert_eq!(output["kind"], "Canary", "{name}");
            assert_eq!(metadata_without_spill(output), metadata_without_spill(input), "{name}: metadata untouched");
            assert_eq!(output["status"], input["status"], "{name}: status carried");
        }
        // And back again: every object comes home as it was.
        let original_versions: Vec<&str> = inputs.iter().map(|o| o["apiVersion"].as_str().unwrap()).collect();
        for (i, version) in original_versions.iter().enumerate() {
            let back = convert(review_of("back", version, vec![outputs[i].clone()])).await;
            assert_eq!(back["response"]["convertedObjects"][0], inputs[i], "{name}: object {i} round trip");
        }
    }
}

#[tokio::test]
async fn fail_fixtures_fail_with_a_message_naming_the_object() {
    let expected = [
        (
            "bad-spill-annotation.json",
            "objects[0] (search): annotation apisix-canary.dev/v1beta1-spec is not a v1beta1 spec",
        ),
        (
            "malformed-object.json",
            "objects[1] (cart): malformed apisix-canary.dev/v1alpha1 Canary: invalid type: integer `5`",
        ),
        ("reference-other-kind.json", "objects[0] (kek): unsupported kind \"ConfigMapGenerator\""),
        ("unknown-kind.json", "objects[0] (checkout): unsupported kind \"MetricTemplate\""),
        ("unknown-version.json", "objects[0] (checkout): unsupported apiVersion \"apisix-canary.dev/v2\""),
    ];
    let fixtures = files("fail");
    assert_eq!(fixtures.len(), expected.len());
    for ((name, body), (want_name, want)) in fixtures.into_iter().zip(expected) {
        assert_eq!(name, want_name);
        let request: Value = serde_json::from_slice(&body).unwrap();
        let answer = convert(body).await;
        let response = &answer["response"];
        assert_eq!(response["uid"], request["request"]["uid"], "{name}");
        assert_eq!(response["result"]["status"], "Failure", "{name}");
        let message = response["result"]["message"].as_str().unwrap();
        assert!(message.starts_with(want), "{name}: {message}");
        assert!(response["convertedObjects"].as_array().is_none_or(Vec::is_empty), "{name}");
    }
}

#[tokio::test]
async fn malformed_reviews_are_answered() {
    for (body, want) in [
        (b"".to_vec(), "malformed ConversionReview"),
        (b"{]".to_vec(), "malformed ConversionReview"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","desiredAPIVersion":"v","objects":[]}}"#.to_vec(),
            "expected a ConversionReview",
        ),
        (br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview"}"#.to_vec(), "has no request"),
    ] {
        let answer = convert(body).await;
        assert_eq!(answer["kind"], "ConversionReview");
        assert_eq!(answer["response"]["result"]["status"], "Failure");
        let message = answer["response"]["result"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{message}");
    }
}

/// `judge` and `confidence` are flat fields: held flat at v1alpha1 (never spilled) and
/// placed in `spec.analysis` at v1beta1, the number as the API server writes it.
#[tokio::test]
async fn the_judge_is_held_flat_both_ways() {
    let fixture = |name: &str| {
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conversion/pass").join(name))
            .unwrap()
    };
    let answer = convert(fixture("judge-to-v1alpha1.json")).await;
    let alpha = &answer["response"]["convertedObjects"][0];
    assert_eq!(
        (&alpha["spec"]["judge"], &alpha["spec"]["confidence"]),
        (&Value::from("sequential"), &Value::from(99.9))
    );
    let spill = alpha["metadata"]["annotations"][SPILL_ANNOTATION].as_str().unwrap();
    assert!(
        spill.contains("\"interval\":\"1m\"") && !spill.contains("judge") && !spill.contains("confidence"),
        "{spill}"
    );

    let answer = convert(fixture("judge-to-v1beta1.json")).await;
    let beta = &answer["response"]["convertedObjects"][0];
    assert_eq!(beta["spec"]["analysis"]["judge"], "sequential");
    assert_eq!(beta["spec"]["analysis"]["confidence"].to_string(), "95");
    assert!(beta["metadata"]["annotations"].get(SPILL_ANNOTATION).is_none());
}
