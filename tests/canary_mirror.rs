//! The Canary webhook over the Canary the controller made from a Deployment's
//! annotations (`tests/fixtures/canaries/mirror.json`, read back from the sim): the
//! controller's own writes and an operator's annotations pass; the user's Canary
//! merged over it as `kubectl apply` merges it, a `kubectl replace` without its label, a
//! hand-made digest or an apply of the same spec are refused with how to switch modes,
//! in both served versions; and no Canary is created with the mirror's label but not its
//! digest.

use std::sync::Arc;

use apisix_canary::admission::canary::{mirror_create, mirror_update};
use apisix_canary::api::canary::{convert, v1beta1};
use apisix_canary::metrics::Metrics;
use apisix_canary::release::mirror;
use apisix_canary::server::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const DIGEST: &str = "apisix-canary.dev/mirror-digest";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const LABEL: &str = "app.kubernetes.io/managed-by";

/// What the webhook says, in full, after the path of the field.
const HOW: &str = "Forbidden: Canary test/podinfo is made by the controller from the annotations of Deployment \
                   test/podinfo (annotation mode) and written by it alone; to switch to Canary mode, remove the \
                   Deployment's apisix-canary.dev/route annotation and its analysis settings (kubectl -n test \
                   annotate deployment podinfo apisix-canary.dev/route- apisix-canary.dev/<setting>- ...), wait \
                   until the controller deletes this Canary once no release runs (kubectl -n test wait \
                   --for=delete canary/podinfo), then create yours; or create yours under another name now: it \
                   takes the Deployment over once those annotations are gone";

fn stored() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/canaries/mirror.json"));
    serde_json::from_str(&text.unwrap()).unwrap()
}

fn typed(v: &Value) -> v1beta1::Canary {
    serde_json::from_value(v.clone()).unwrap()
}

/// The user's Canary of the issue: the scenario's analysis with `stepWeight`.
fn users() -> Value {
    json!({
        "apiVersion": "apisix-canary.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"},
            "analysis": {"interval": "2s", "threshold": 4, "maxWeight": 30, "stepWeight": 10,
                         "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}]}
        }
    })
}

/// What client-side `kubectl apply` of `config` makes of `live` when `live` has no
/// last-applied copy: the config's fields merged in, nothing removed, the copy added.
fn kubectl_apply(live: &Value, config: &Value) -> Value {
    let mut merged = live.clone();
    json_patch::merge(&mut merged, config);
    merged["metadata"]["annotations"][LAST_APPLIED] = json!(config.to_string());
    merged
}

/// The controller's rewrite of the mirror: the whole spec and its digest.
fn rewritten(live: &Value, change: impl Fn(&mut v1beta1::CanarySpec)) -> Value {
    let mut c = typed(live);
    change(&mut c.spec);
    mirror::stamp(&mut c.metadata, &c.spec.clone());
    serde_json::to_value(c).unwrap()
}

fn edit(live: &Value, change: impl Fn(&mut Value)) -> Value {
    let mut v = live.clone();
    change(&mut v);
    v
}

#[test]
fn the_fixture_is_a_mirror_as_the_controller_wrote_it() {
    assert_eq!(mirror::origin(&typed(&stored())), mirror::Origin::Mirror);
}

#[test]
fn only_the_controller_writes_a_mirror() {
    let live = stored();
    let merged = kubectl_apply(&live, &users());
    // The merge: the user's stepWeight beside the mirror's stepWeights, the label kept.
    assert_eq!(merged["spec"]["analysis"]["stepWeights"], json!([10, 20]));
    assert_eq!(merged["metadata"]["labels"][LABEL], "apisix-canary");
    let cases: Vec<(&str, Value, Option<String>)> = vec![
        ("the controller's rewrite", rewritten(&live, |s| s.analysis.max_weight = Some(30)), None),
        (
            "an operator's abort",
            edit(&live, |v| v["metadata"]["annotations"]["apisix-canary.dev/abort"] = json!("5f7d9c8b6a")),
            None,
        ),
        ("the finalizer removed", edit(&live, |v| v["metadata"]["finalizers"] = json!([])), None),
        ("a label of the user's beside ours", edit(&live, |v| v["metadata"]["labels"]["team"] = json!("a")), None),
        ("kubectl apply of the user's Canary", merged, Some(format!("spec: {HOW}"))),
        (
            "kubectl apply of the mirror's own spec",
            kubectl_apply(&live, &json!({"metadata": {"name": "podinfo"}, "spec": live["spec"]})),
            Some(format!("metadata.annotations[{LAST_APPLIED}]: {HOW}")),
        ),
        (
            "kubectl replace without the label",
            edit(&live, |v| {
                v["metadata"].as_object_mut().unwrap().remove("labels");
            }),
            Some(format!("metadata.labels[{LABEL}]: {HOW}")),
        ),
        (
            "the label given another value",
            edit(&live, |v| v["metadata"]["labels"][LABEL] = json!("Helm")),
            Some(format!("metadata.labels[{LABEL}]: {HOW}")),
        ),
        (
            "a spec edited by hand",
            edit(&live, |v| v["spec"]["analysis"]["maxWeight"] = json!(40)),
            Some(format!("spec: {HOW}")),
        ),
        (
            "a digest written by hand",
            edit(&live, |v| v["metadata"]["annotations"][DIGEST] = json!("0123456789abcdef")),
            Some(format!("spec: {HOW}")),
        ),
        ("the digest removed", edit(&live, |v| v["metadata"]["annotations"] = json!({})), Some(format!("spec: {HOW}"))),
    ];
    for (what, new, want) in cases {
        let got = mirror_update(&typed(&live), &typed(&new)).map(|e| e.to_string());
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn a_canary_that_is_no_mirror_is_not_guarded() {
    // The user's own Canary: any write of theirs.
    let mut theirs = typed(&users());
    let mut next = theirs.clone();
    next.spec.analysis.max_weight = Some(40);
    assert_eq!(mirror_update(&theirs, &next), None);
    // A mirror whose spec someone changed past the webhook is theirs now (the controller
    // leaves it alone): not guarded either.
    theirs.metadata = typed(&stored()).metadata;
    assert_eq!(mirror::origin(&theirs), mirror::Origin::Changed);
    assert_eq!(mirror_update(&theirs, &next), None);
    // A mirror made before mirrors carried a digest is guarded, and stamped by the controller.
    let mut unstamped = stored();
    unstamped["metadata"]["annotations"] = json!({});
    let stamp = rewritten(&unstamped, |_| {});
    assert_eq!(mirror_update(&typed(&unstamped), &typed(&stamp)), None);
    let merged = kubectl_apply(&unstamped, &users());
    assert_eq!(mirror_update(&typed(&unstamped), &typed(&merged)).map(|e| e.to_string()), Some(format!("spec: {HOW}")));
}

/// Only the controller makes mirrors: a Canary of the user's with the mirror's label
/// alone (or an exported mirror whose spec was edited) would be read as annotation mode.
#[test]
fn a_canary_is_created_as_a_mirror_only_with_its_digest() {
    let label = format!(
        "metadata.labels[{LABEL}]: Forbidden: \"apisix-canary\" marks the Canary the controller makes from a \
         Deployment's annotations (annotation mode), with the digest of its spec in {DIGEST}; remove the label \
         from a Canary of yours"
    );
    let labelled = edit(&users(), |v| v["metadata"]["labels"] = json!({LABEL: "apisix-canary"}));
    let exported = edit(&stored(), |v| v["spec"]["analysis"]["maxWeight"] = json!(40));
    let cases = [
        ("the controller's mirror", stored(), None),
        ("the user's Canary", users(), None),
        (
            "the user's Canary with a label of its own",
            edit(&users(), |v| v["metadata"]["labels"] = json!({LABEL: "Helm"})),
            None,
        ),
        ("the user's Canary with the mirror's label", labelled, Some(label.clone())),
        ("an exported mirror, edited", exported, Some(label)),
    ];
    for (what, new, want) in cases {
        assert_eq!(mirror_create(&typed(&new)).map(|e| e.to_string()), want, "{what}");
    }
}

fn review(object: &Value, old: &Value, dry_run: bool) -> Vec<u8> {
    let operation = if old.is_null() { "CREATE" } else { "UPDATE" };
    let version = object["apiVersion"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let kind = json!({"group": "apisix-canary.dev", "version": version, "kind": "Canary"});
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b6f1c9e-0000-4000-8000-000000000028",
            "kind": kind,
            "resource": {"group": "apisix-canary.dev", "version": version, "resource": "canaries"},
            "name": "podinfo",
            "namespace": "test",
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": object,
            "oldObject": old,
            "dryRun": dry_run
        }
    }))
    .unwrap()
}

async fn post(body: Vec<u8>) -> Value {
    let router = Router::new(Arc::new(Metrics::new()));
    let req = http::Request::post("/validate/canaries").body(Full::new(Bytes::from(body))).unwrap();
    let res = router.route(req).await;
    assert_eq!(res.status(), http::StatusCode::OK);
    let answer: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    answer["response"].clone()
}

fn v1alpha1(v: &Value) -> Value {
    convert::object_to(v.clone(), "apisix-canary.dev/v1alpha1").unwrap()
}

#[tokio::test]
async fn the_webhook_refuses_a_switch_over_the_mirror_in_both_versions() {
    let live = stored();
    let merged = kubectl_apply(&live, &users());
    for dry_run in [false, true] {
        let answer = post(review(&merged, &live, dry_run)).await;
        assert_eq!(answer["allowed"], false, "{answer}");
        assert_eq!(answer["status"]["code"], 403);
        assert_eq!(answer["status"]["message"], format!("spec: {HOW}"));
    }
    let ours = rewritten(&live, |s| s.analysis.max_weight = Some(30));
    assert_eq!(post(review(&ours, &live, false)).await["allowed"], true);

    // The same at v1alpha1 (the review in the version the user wrote: matchPolicy Exact).
    let (old, mut edited) = (v1alpha1(&live), v1alpha1(&live));
    edited["spec"]["maxWeight"] = json!(30);
    let answer = post(review(&edited, &old, false)).await;
    assert_eq!(answer["status"]["message"], format!("spec: {HOW}"), "{answer}");
    let answer = post(review(&v1alpha1(&ours), &old, false)).await;
    assert_eq!(answer["allowed"], true, "{answer}");
    // A CREATE with the label alone, through the webhook.
    let labelled = edit(&users(), |v| v["metadata"]["labels"] = json!({LABEL: "apisix-canary"}));
    let answer = post(review(&labelled, &Value::Null, false)).await;
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("metadata.labels[app.kubernetes.io/managed-by]: Forbidden"),
        "{answer}"
    );
    assert_eq!(post(review(&stored(), &Value::Null, false)).await["allowed"], true);

    let mut annotated = old.clone();
    annotated["metadata"]["annotations"]["apisix-canary.dev/promote"] = json!("5f7d9c8b6a");
    assert_eq!(post(review(&annotated, &old, false)).await["allowed"], true);
}
