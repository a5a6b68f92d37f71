//! Real-shaped AdmissionReview files pushed through the router without a socket: the
//! answer is parsed as kube-apiserver parses it, and the patch applied to the object.

use std::path::PathBuf;
use std::sync::Arc;

use apisix_canary::metrics::Metrics;
use apisix_canary::release::revision::Revision;
use apisix_canary::server::Router;
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn post(router: &Router, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::builder().method(Method::POST).uri(path).body(Full::new(Bytes::from(body))).unwrap();
    let res = router.route(req).await;
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).expect("every answer is JSON"))
}

fn router() -> Router {
    Router::new(Arc::new(Metrics::new()))
}

/// An answer as kube-apiserver reads it.
#[derive(Debug)]
struct Answer {
    allowed: bool,
    /// `patch`, decoded from base64.
    patch: Option<Vec<u8>>,
    warnings: Vec<String>,
}

/// Posts a fixture to the mutating path; returns the answer and the object before and
/// after its patch.
async fn mutate(name: &str) -> (Answer, Value, Value) {
    let body = fixture(name);
    let review: Value = serde_json::from_slice(&body).unwrap();
    let (status, answer) = post(&router(), "/mutate/deployments", body).await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{name}");
    assert_eq!(answer["kind"], "AdmissionReview", "{name}");
    let r = &answer["response"];
    assert_eq!(r["uid"], review["request"]["uid"], "{name}: uid echoed");
    let allowed = r["allowed"].as_bool().unwrap_or_else(|| panic!("{name}: allowed is a boolean: {r}"));
    assert_eq!(r.get("status").is_some(), !allowed, "{name}: a status in denials only: {r}");
    let patch = r.get("patch").map(|p| {
        let text = p.as_str().unwrap_or_else(|| panic!("{name}: the patch is a base64 string: {p}"));
        base64::engine::general_purpose::STANDARD.decode(text).unwrap()
    });
    assert_eq!(r["patchType"].as_str(), patch.as_ref().map(|_| "JSONPatch"), "{name}: patchType with a patch");
    let warnings = match r.get("warnings") {
        Some(w) => serde_json::from_value(w.clone()).unwrap(),
        None => Vec::new(),
    };
    let original = review["request"]["object"].clone();
    let mut object = original.clone();
    if let Some(patch) = &patch {
        let patch: json_patch::Patch = serde_json::from_slice(patch).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    (Answer { allowed, patch, warnings }, original, object)
}

/// What kube-apiserver reads from us does not change with the types that build it: the
/// answer to the set-image review, byte for byte (the bench's bare server sends it too).
#[tokio::test]
async fn the_answer_on_the_wire_is_as_it_was() {
    let req = Request::post("/mutate/deployments").body(Full::new(Bytes::from(fixture("set-image.json")))).unwrap();
    let bytes = router().route(req).await.into_body().collect().await.unwrap().to_bytes();
    let canned = include_str!("../benches/webhook/canned-review.json");
    assert_eq!(String::from_utf8_lossy(&bytes), canned.trim_end());
}

fn revisions() -> Value {
    serde_json::from_slice(&fixture("revisions.json")).unwrap()
}

fn ann<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][format!("apisix-canary.dev/{key}")].as_str()
}

#[tokio::test]
async fn set_image_pauses_and_locks() {
    for name in ["set-image.json", "set-image-dry-run.json"] {
        let (answer, before, after) = mutate(name).await;
        assert!(answer.allowed);
        assert_eq!(after["spec"]["paused"], true, "{name}");
        assert_eq!(ann(&after, "stable-revision"), revisions()["6.0.0"].as_str());
        assert_eq!(ann(&after, "canary-revision"), revisions()["6.0.1"].as_str());
        assert_eq!(after["spec"]["template"], before["spec"]["template"], "template untouched");
        assert_eq!(after["spec"]["replicas"], before["spec"]["replicas"]);
        assert_eq!(answer.warnings.len(), 1);
        assert!(answer.warnings[0].contains("canary release of revision 89a79df4a9 started"));
    }
}

#[tokio::test]
async fn not_a_release_is_not_patched() {
    for name in
        ["annotation-only.json", "replicas-only.json", "scale.json", "status.json", "create.json", "not-opted-in.json"]
    {
        let (answer, before, after) = mutate(name).await;
        assert!(answer.allowed, "{name}");
        assert_eq!(answer.patch, None, "{name}");
        assert!(answer.warnings.is_empty(), "{name}");
        assert_eq!(after, before);
    }
}

#[tokio::test]
async fn env_change_is_a_release() {
    let (_, _, after) = mutate("set-env.json").await;
    assert_eq!(after["spec"]["paused"], true);
    assert_eq!(ann(&after, "stable-revision"), revisions()["6.0.0"].as_str());
}

#[tokio::test]
async fn locked_deployment_rules() {
    let (answer, _, after) = mutate("unpause-while-locked.json").await;
    assert_eq!(after["spec"]["paused"], true);
    assert!(answer.warnings[0].contains("unpause reverted"));

    let (_, _, after) = mutate("revert-to-stable.json").await;
    assert_eq!(after["spec"]["paused"], false);
    assert_eq!(ann(&after, "stable-revision"), None);
    assert_eq!(ann(&after, "canary-revision"), None);

    let (_, _, after) = mutate("second-change.json").await;
    assert_eq!(ann(&after, "stable-revision"), revisions()["6.0.0"].as_str());
    assert_eq!(ann(&after, "canary-revision"), revisions()["6.0.2"].as_str());

    let (answer, _, after) = mutate("failed-revision-again.json").await;
    assert_eq!(after["spec"]["paused"], true);
    assert!(answer.warnings[0].contains("already failed"));

    let (_, _, after) = mutate("retry-failed.json").await;
    assert_eq!(ann(&after, "failed-revision"), None);
    assert_eq!(ann(&after, "retry"), None);
    assert_eq!(ann(&after, "canary-revision"), revisions()["6.0.2"].as_str());
}

#[tokio::test]
async fn invalid_annotations_are_denied_with_field_errors() {
    let (status, answer) = post(&router(), "/validate/deployments", fixture("invalid-annotations.json")).await;
    assert_eq!(status, StatusCode::OK);
    let r = &answer["response"];
    assert_eq!(r["allowed"], false);
    assert_eq!(r["uid"], "a1f0c3e2-0014-4d6b-9f00-000000000014");
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(r["status"]["reason"], "Forbidden");
    assert_eq!(
        r["status"]["message"],
        "[metadata.annotations[apisix-canary.dev/interval]: Invalid value: \"10x\": must be a duration such as \
         500ms, 10s, 1m or 1h30m, metadata.annotations[apisix-canary.dev/max-weight]: Invalid value: \"150\": \
         must be between 1 and 100, metadata.annotations[apisix-canary.dev/step-wieght]: Forbidden: unknown \
         annotation; did you mean apisix-canary.dev/step-weight?]"
    );
}

#[tokio::test]
async fn a_bad_judge_and_confidence_are_denied_naming_both() {
    let (_, answer) = post(&router(), "/validate/deployments", fixture("invalid-judge.json")).await;
    let r = &answer["response"];
    assert_eq!((&r["allowed"], &r["uid"]), (&Value::from(false), &Value::from("a1f0c3e2-0016-4d6b-9f00-000000000016")));
    assert_eq!(
        r["status"]["message"],
        "[metadata.annotations[apisix-canary.dev/confidence]: Invalid value: \"100\": must be a number strictly \
         between 50 and 100, such as 99 or 99.9, metadata.annotations[apisix-canary.dev/judge]: Unsupported value: \
         \"Sequential\": supported values: \"interval\", \"sequential\"]"
    );
}

#[tokio::test]
async fn a_confidence_without_the_sequential_judge_passes_with_a_warning() {
    let (_, answer) = post(&router(), "/validate/deployments", fixture("confidence-without-judge.json")).await;
    let r = &answer["response"];
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        r["warnings"],
        serde_json::json!([
            "metadata.annotations[apisix-canary.dev/confidence]: confidence \"99.9\" has no effect without \
             apisix-canary.dev/judge: sequential (the interval judge, the default, runs no test)"
        ])
    );
}

#[tokio::test]
async fn valid_annotations_pass_validation() {
    // A CREATE: every annotation is checked (nothing to compare with).
    let (_, answer) = post(&router(), "/validate/deployments", fixture("create.json")).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert!(answer["response"].get("warnings").is_none(), "10s is not under 10s");
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_refused_without_reading_it_all() {
    // No content-length: the limit applies while reading.
    let chunks =
        (0..5).map(|_| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b' '; 1 << 20]))));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
    let req = Request::builder().method(Method::POST).uri("/mutate/deployments").body(body).unwrap();
    let res = router().route(req).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn reference_captures() {
    // minikube's UPDATE of an nginx Deployment without our annotations: allowed, untouched.
    let request: Value =
        serde_json::from_slice(&fixture("reference/admissionrequest-deployment-update-with-oldobject.json")).unwrap();
    let review =
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    for path in ["/mutate/deployments", "/validate/deployments"] {
        let (_, answer) = post(&router(), path, serde_json::to_vec(&review).unwrap()).await;
        assert_eq!(answer["response"]["allowed"], true, "{path}");
        assert_eq!(answer["response"]["uid"], request["uid"]);
        assert!(answer["response"].get("patch").is_none());
    }
    let (_, answer) =
        post(&router(), "/mutate/deployments", fixture("reference/admissionreview-v1-deployment-create-minimal.json"))
            .await;
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["uid"], "12345-67890-abcdef");

    // v1beta1 is not served: a clear answer, with the uid echoed.
    let body = fixture("reference/admissionreview-v1beta1-deployment-update-with-oldobject.json");
    let uid = serde_json::from_slice::<Value>(&body).unwrap()["request"]["uid"].clone();
    let (status, answer) = post(&router(), "/mutate/deployments", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["uid"], uid);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("unsupported apiVersion \"admission.k8s.io/v1beta1\""), "{message}");
}

#[test]
fn fixture_revisions_are_pinned() {
    // Revisions live in users' clusters as annotations: the hash must never change.
    let revisions = revisions();
    for (name, version) in [("set-image.json", "6.0.1"), ("second-change.json", "6.0.2")] {
        let review: Value = serde_json::from_slice(&fixture(name)).unwrap();
        let template = &review["request"]["object"]["spec"]["template"];
        assert_eq!(Revision::of_template(template).as_str(), revisions[version].as_str().unwrap());
    }
    assert_eq!(revisions["6.0.0"], "53d0ab54bc");
    assert_eq!(revisions["6.0.1"], "89a79df4a9");
    assert_eq!(revisions["6.0.2"], "1d0064b3a2");
}
