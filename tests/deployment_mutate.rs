//! Every interception rule of the mutating webhook, table-driven over pure calls.

use apisix_canary::admission::deployment::{Mutation, Review, mutate};
use apisix_canary::admission::{self, Hook};
use apisix_canary::api::annotations::{
    CANARY_REVISION, FAILED_REVISION, PROMOTED_REVISION, RETRY, ROUTE, STABLE_REVISION,
};
use apisix_canary::release::lock::{Lock, Transition};
use apisix_canary::release::revision::Revision;
use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde_json::{Value, json};

const V0: &str = "stefanprodan/podinfo:6.0.0";
const V1: &str = "stefanprodan/podinfo:6.0.1";
const V2: &str = "stefanprodan/podinfo:6.0.2";

/// A podinfo Deployment with the given image, annotations, paused flag and env.
fn deploy(image: &str, annotations: &[(&str, &str)], paused: bool) -> Value {
    let ann: serde_json::Map<String, Value> =
        annotations.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test", "annotations": ann},
        "spec": {
            "replicas": 2,
            "paused": paused,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfod", "image": image}]}
            }
        }
    })
}

fn rev(image: &str) -> String {
    Revision::of_template(&deploy(image, &[], false)["spec"]["template"]).to_string()
}

fn obj(v: &Value) -> DynamicObject {
    serde_json::from_value(v.clone()).unwrap()
}

fn run(op: Operation, old: Option<&Value>, new: &Value) -> Mutation {
    let (old, new) = (old.map(obj), obj(new));
    mutate(&Review { operation: &op, old: old.as_ref(), new: Some(&new) })
}

/// The object the API server would store: the request object with the patch applied.
fn apply(new: &Value, m: &Mutation) -> Value {
    let mut doc = new.clone();
    json_patch::patch(&mut doc, &m.patch).expect("patch applies to the request object");
    doc
}

fn lock_of(doc: &Value) -> [Option<String>; 4] {
    [STABLE_REVISION, CANARY_REVISION, FAILED_REVISION, RETRY]
        .map(|k| doc["metadata"]["annotations"][k].as_str().map(str::to_owned))
}

struct Case {
    name: &'static str,
    op: Operation,
    old: Option<Value>,
    new: Value,
    transition: Transition,
    /// After the patch: paused, and the lock [stable, canary, failed, retry].
    paused: bool,
    lock: [Option<String>; 4],
    /// A substring of the one warning, or None for no warning.
    warning: Option<&'static str>,
}

fn r(image: &str) -> Revision {
    Revision::parse(&rev(image)).unwrap()
}

fn s(image: &str) -> Option<String> {
    Some(rev(image))
}

fn cases() -> Vec<Case> {
    let route: &[(&str, &str)] = &[(ROUTE, "podinfo")];
    let (r0, r1, r2) = (rev(V0), rev(V1), rev(V2));
    let locked: Vec<(&str, &str)> = vec![(ROUTE, "podinfo"), (STABLE_REVISION, &r0), (CANARY_REVISION, &r1)];
    let failed: Vec<(&str, &str)> =
        vec![(ROUTE, "podinfo"), (STABLE_REVISION, &r0), (CANARY_REVISION, &r2), (FAILED_REVISION, &r2)];
    let mut retry = failed.clone();
    retry.push((RETRY, &r2));
    let with_env = {
        let mut d = deploy(V0, route, false);
        d["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "LOG_LEVEL", "value": "debug"}]);
        d
    };
    let replicas_only = {
        let mut d = deploy(V0, route, false);
        d["spec"]["replicas"] = json!(7);
        d
    };
    let annotation_only = deploy(V0, &[(ROUTE, "podinfo"), ("team", "checkout")], false);
    vec![
        Case {
            name: "image change starts a release",
            op: Operation::Update,
            old: Some(deploy(V0, route, false)),
            new: deploy(V1, route, false),
            transition: Transition::Started { stable: r(V0), canary: r(V1) },
            paused: true,
            lock: [s(V0), s(V1), None, None],
            warning: Some("canary release of revision"),
        },
        Case {
            name: "env change starts a release",
            op: Operation::Update,
            old: Some(deploy(V0, route, false)),
            new: with_env.clone(),
            transition: Transition::Started {
                stable: r(V0),
                canary: Revision::of_template(&with_env["spec"]["template"]),
            },
            paused: true,
            lock: [s(V0), Some(Revision::of_template(&with_env["spec"]["template"]).to_string()), None, None],
            warning: Some("started"),
        },
        Case {
            name: "annotation-only change is not a release",
            op: Operation::Update,
            old: Some(deploy(V0, route, false)),
            new: annotation_only,
            transition: Transition::Untouched,
            paused: false,
            lock: [None, None, None, None],
            warning: None,
        },
        Case {
            name: "replicas-only change is not a release",
            op: Operation::Update,
            old: Some(deploy(V0, route, false)),
            new: replicas_only,
            transition: Transition::Untouched,
            paused: false,
            lock: [None, None, None, None],
            warning: None,
        },
        Case {
            name: "CREATE with annotations is never a release",
            op: Operation::Create,
            old: None,
            new: deploy(V1, route, false),
            transition: Transition::Untouched,
            paused: false,
            lock: [None, None, None, None],
            warning: None,
        },
        Case {
            name: "without our annotations nothing is touched",
            op: Operation::Update,
            old: Some(deploy(V0, &[], false)),
            new: deploy(V1, &[], false),
            transition: Transition::Untouched,
            paused: false,
            lock: [None, None, None, None],
            warning: None,
        },
        Case {
            name: "user unpause while locked is re-paused",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V1, &locked, false),
            transition: Transition::Held { canary: r(V1) },
            paused: true,
            lock: [s(V0), s(V1), None, None],
            warning: Some("unpause reverted"),
        },
        Case {
            name: "replicas change while locked keeps the lock quietly",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: {
                let mut d = deploy(V1, &locked, true);
                d["spec"]["replicas"] = json!(4);
                d
            },
            transition: Transition::Held { canary: r(V1) },
            paused: true,
            lock: [s(V0), s(V1), None, None],
            warning: None,
        },
        Case {
            name: "revert to the stable template cancels",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V0, &locked, true),
            transition: Transition::Cancelled { stable: r(V0) },
            paused: false,
            lock: [None, None, None, None],
            warning: Some("back at stable revision"),
        },
        Case {
            name: "second change mid-release restarts with the same stable",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V2, &locked, true),
            transition: Transition::Restarted { stable: r(V0), replaced: r(V1), canary: r(V2) },
            paused: true,
            lock: [s(V0), s(V2), None, None],
            warning: Some("analysis restarts"),
        },
        Case {
            name: "a failed revision re-applied is refused",
            op: Operation::Update,
            old: Some(deploy(V0, &failed, true)),
            new: deploy(V2, &failed, true),
            transition: Transition::Refused { failed: r(V2) },
            paused: true,
            lock: [s(V0), s(V2), s(V2), None],
            warning: Some("already failed"),
        },
        Case {
            name: "a failed revision re-applied without a lock is refused and paused",
            op: Operation::Update,
            old: Some(deploy(V0, &[(ROUTE, "podinfo"), (FAILED_REVISION, &r2)], false)),
            new: deploy(V2, &[(ROUTE, "podinfo"), (FAILED_REVISION, &r2)], false),
            transition: Transition::Refused { failed: r(V2) },
            paused: true,
            lock: [s(V0), s(V2), s(V2), None],
            warning: Some("already failed"),
        },
        Case {
            name: "retry annotation restarts a failed revision",
            op: Operation::Update,
            old: Some(deploy(V2, &failed, true)),
            new: deploy(V2, &retry, true),
            transition: Transition::Started { stable: r(V0), canary: r(V2) },
            paused: true,
            lock: [s(V0), s(V2), None, None],
            warning: Some("retrying failed revision"),
        },
        Case {
            name: "a new revision after a failure starts from the stable one",
            op: Operation::Update,
            old: Some(deploy(V2, &failed, true)),
            new: deploy(V1, &failed, true),
            transition: Transition::Started { stable: r(V0), canary: r(V1) },
            paused: true,
            lock: [s(V0), s(V1), s(V2), None],
            warning: Some("started"),
        },
        Case {
            name: "removing the lock releases control",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V1, route, true),
            transition: Transition::Released,
            paused: true,
            lock: [None, None, None, None],
            warning: Some("control released"),
        },
        Case {
            name: "a replace that drops the lock and changes the template keeps the lock",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V2, route, false),
            transition: Transition::Restarted { stable: r(V0), replaced: r(V1), canary: r(V2) },
            paused: true,
            lock: [s(V0), s(V2), None, None],
            warning: Some("analysis restarts"),
        },
        Case {
            name: "the controller's promotion write unpauses and drops the lock",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V1, &[(ROUTE, "podinfo"), (PROMOTED_REVISION, &r1)], false),
            transition: Transition::Released,
            paused: false,
            lock: [None, None, None, None],
            warning: None,
        },
        Case {
            name: "a same-template replace that drops the lock and unpauses keeps the lock",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V1, route, false),
            transition: Transition::Held { canary: r(V1) },
            paused: true,
            lock: [s(V0), s(V1), None, None],
            warning: Some("this write removed the release lock"),
        },
        Case {
            name: "dropping the lock of a deployment resumed past the webhook releases it running",
            op: Operation::Update,
            old: Some(deploy(V2, &failed, false)),
            new: deploy(V2, &[(ROUTE, "podinfo"), (FAILED_REVISION, &r2)], false),
            transition: Transition::Released,
            paused: false,
            lock: [None, None, s(V2), None],
            warning: None,
        },
        Case {
            name: "a new template on a deployment resumed past the webhook is still intercepted",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, false)),
            new: deploy(V2, route, false),
            transition: Transition::Restarted { stable: r(V0), replaced: r(V1), canary: r(V2) },
            paused: true,
            lock: [s(V0), s(V2), None, None],
            warning: Some("analysis restarts"),
        },
        Case {
            name: "a promotion marker for another revision is no promotion",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V1, &[(ROUTE, "podinfo"), (PROMOTED_REVISION, &r2)], false),
            transition: Transition::Held { canary: r(V1) },
            paused: true,
            lock: [s(V0), s(V1), None, None],
            warning: Some("this write removed the release lock"),
        },
        Case {
            name: "a replace after a failure keeps the failed revision",
            op: Operation::Update,
            old: Some(deploy(V0, &[(ROUTE, "podinfo"), (FAILED_REVISION, &r2)], false)),
            new: deploy(V2, route, false),
            transition: Transition::Refused { failed: r(V2) },
            paused: true,
            lock: [s(V0), s(V2), s(V2), None],
            warning: Some("already failed"),
        },
        Case {
            name: "a retry of a revision that never failed is no retry",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V2, &[(ROUTE, "podinfo"), (STABLE_REVISION, &r0), (CANARY_REVISION, &r1), (RETRY, &r2)], true),
            transition: Transition::Restarted { stable: r(V0), replaced: r(V1), canary: r(V2) },
            paused: true,
            lock: [s(V0), s(V2), None, None],
            warning: Some("analysis restarts"),
        },
        Case {
            name: "removing the lock cleans the stale canary revision",
            op: Operation::Update,
            old: Some(deploy(V1, &locked, true)),
            new: deploy(V1, &[(ROUTE, "podinfo"), (CANARY_REVISION, &r1)], true),
            transition: Transition::Released,
            paused: true,
            lock: [None, None, None, None],
            warning: Some("control released"),
        },
        Case {
            name: "unpausing a failed release says it failed",
            op: Operation::Update,
            old: Some(deploy(V2, &failed, true)),
            new: deploy(V2, &failed, false),
            transition: Transition::Refused { failed: r(V2) },
            paused: true,
            lock: [s(V0), s(V2), s(V2), None],
            warning: Some("failed its analysis and stable"),
        },
        Case {
            name: "our own canary copies are never intercepted",
            op: Operation::Update,
            old: Some(owned(deploy(V0, route, false))),
            new: owned(deploy(V1, route, false)),
            transition: Transition::Untouched,
            paused: false,
            lock: [None, None, None, None],
            warning: None,
        },
    ]
}

fn owned(mut d: Value) -> Value {
    d["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apisix-canary.dev/v1beta1", "kind": "Canary", "name": "podinfo",
        "uid": "0b8c1f9e-1111-4a4a-8b8b-123456789abc", "controller": true
    }]);
    d
}

#[test]
fn interception_rules() {
    for case in cases() {
        let m = run(case.op.clone(), case.old.as_ref(), &case.new);
        assert_eq!(m.transition, case.transition, "{}", case.name);
        let after = apply(&case.new, &m);
        assert_eq!(after["spec"]["paused"].as_bool().unwrap_or(false), case.paused, "{}: paused", case.name);
        assert_eq!(lock_of(&after), case.lock, "{}: lock", case.name);
        assert_eq!(after["spec"]["template"], case.new["spec"]["template"], "{}: template untouched", case.name);
        assert_eq!(after["spec"]["replicas"], case.new["spec"]["replicas"], "{}: replicas untouched", case.name);
        match case.warning {
            Some(w) => assert!(
                m.warnings.len() == 1 && m.warnings[0].contains(w),
                "{}: want one warning containing {w:?}, got {:?}",
                case.name,
                m.warnings
            ),
            None => assert!(m.warnings.is_empty(), "{}: unexpected warnings {:?}", case.name, m.warnings),
        }
        if matches!(case.transition, Transition::Untouched) {
            assert!(m.patch.0.is_empty(), "{}: untouched must not patch", case.name);
        }
    }
}

/// The AdmissionReview kube-apiserver sends for this write.
fn review_body(op: &Operation, old: Option<&Value>, new: &Value, dry_run: bool) -> Vec<u8> {
    let operation = format!("{op:?}").to_uppercase();
    let gvk = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": gvk,
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "podinfo",
            "namespace": "test",
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": new,
            "oldObject": old,
            "dryRun": dry_run,
        }
    });
    serde_json::to_vec(&body).unwrap()
}

#[test]
fn dry_run_gets_the_same_answer_and_is_reported_as_one() {
    for case in cases() {
        let body = |dry| review_body(&case.op, case.old.as_ref(), &case.new, dry);
        let (wet, wet_summary) = admission::review(Hook::MutateDeployments, &body(false));
        let (dry, dry_summary) = admission::review(Hook::MutateDeployments, &body(true));
        assert_eq!(wet, dry, "{}", case.name);
        assert_eq!(wet_summary.transition, dry_summary.transition, "{}", case.name);
        assert_eq!(wet_summary.transition.as_ref(), Some(&case.transition), "{}", case.name);
        assert!(dry_summary.dry_run && !wet_summary.dry_run, "{}: the log line says which was a dry run", case.name);
    }
}

#[test]
fn a_second_identical_write_is_a_no_op() {
    // The stored object after a release started, written again (e.g. a GitOps re-sync).
    let old = deploy(V0, &[(ROUTE, "podinfo")], false);
    let new = deploy(V1, &[(ROUTE, "podinfo")], false);
    let stored = apply(&new, &run(Operation::Update, Some(&old), &new));
    let again = run(Operation::Update, Some(&stored), &stored);
    assert_eq!(again.transition, Transition::Held { canary: r(V1) });
    assert!(again.patch.0.is_empty(), "nothing to change: {:?}", again.patch);
    assert!(again.warnings.is_empty());
}

/// `kubectl replace` of the original manifest mid-release: the lock annotations go and
/// the template is back at stable, so the release is cancelled and the lock goes with
/// it. The warning says so, and not that the lock is kept.
#[test]
fn a_replace_back_to_the_stable_manifest_cancels_and_says_only_that() {
    let r0 = rev(V0);
    let r1 = rev(V1);
    let locked: Vec<(&str, &str)> = vec![(ROUTE, "podinfo"), (STABLE_REVISION, &r0), (CANARY_REVISION, &r1)];
    let m = run(Operation::Update, Some(&deploy(V1, &locked, true)), &deploy(V0, &[(ROUTE, "podinfo")], false));
    assert_eq!(m.transition, Transition::Cancelled { stable: r(V0) });
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(m.warnings[0].contains("release of") && m.warnings[0].contains("cancelled"), "{:?}", m.warnings);
    assert!(!m.warnings[0].contains("kept"), "the lock is dropped, not kept: {:?}", m.warnings);
}

#[test]
fn pod_template_hash_label_is_not_a_release() {
    let old = deploy(V0, &[(ROUTE, "podinfo")], false);
    let mut new = old.clone();
    new["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = json!("7d9b6c8f5");
    let m = run(Operation::Update, Some(&old), &new);
    assert_eq!(m.transition, Transition::Untouched);
}

#[test]
fn patch_escapes_annotation_keys() {
    let old = deploy(V0, &[(ROUTE, "podinfo")], false);
    let new = deploy(V1, &[(ROUTE, "podinfo")], false);
    let m = run(Operation::Update, Some(&old), &new);
    let text = serde_json::to_string(&m.patch).unwrap();
    assert!(text.contains("/metadata/annotations/apisix-canary.dev~1stable-revision"), "{text}");
    assert!(text.contains(r#"{"op":"add","path":"/spec/paused","value":true}"#), "{text}");
}

/// The annotations of a stored Deployment.
fn annotations_of(doc: &Value) -> std::collections::BTreeMap<String, String> {
    serde_json::from_value(doc["metadata"]["annotations"].clone()).unwrap_or_default()
}

#[test]
fn the_controllers_promotion_is_one_write_the_webhook_lets_through() {
    let old = deploy(V0, &[(ROUTE, "podinfo")], false);
    let new = deploy(V1, &[(ROUTE, "podinfo")], false);
    let locked = apply(&new, &run(Operation::Update, Some(&old), &new));
    let lock = Lock::from_annotations(&annotations_of(&locked));
    let promotion = lock.promote().expect("a held lock with a canary can be promoted");
    assert_eq!(promotion.transition, Transition::Promoted { revision: r(V1) });

    let mut written = locked.clone();
    json_patch::merge(&mut written, &Lock::merge_patch(&annotations_of(&locked), &promotion));
    assert_eq!(written["spec"]["paused"], false);
    let m = run(Operation::Update, Some(&locked), &written);
    assert_eq!(m.transition, Transition::Released, "{:?}", m.warnings);
    let stored = apply(&written, &m);
    assert_eq!(stored["spec"]["paused"], false, "the promotion's unpause is not reverted");
    assert_eq!(lock_of(&stored), [None, None, None, None]);
    assert_eq!(stored["metadata"]["annotations"][PROMOTED_REVISION], r(V1).as_str());
}

#[test]
fn the_controllers_rollback_keeps_the_deployment_paused_and_refuses_the_same_template() {
    let old = deploy(V0, &[(ROUTE, "podinfo")], false);
    let new = deploy(V1, &[(ROUTE, "podinfo")], false);
    let locked = apply(&new, &run(Operation::Update, Some(&old), &new));
    let failure = Lock::from_annotations(&annotations_of(&locked)).fail().expect("a held lock can fail");
    assert_eq!(failure.transition, Transition::Failed { revision: r(V1) });

    let mut written = locked.clone();
    json_patch::merge(&mut written, &Lock::merge_patch(&annotations_of(&locked), &failure));
    let m = run(Operation::Update, Some(&locked), &written);
    let stored = apply(&written, &m);
    assert_eq!(stored["spec"]["paused"], true);
    assert_eq!(lock_of(&stored), [Some(r(V0).to_string()), Some(r(V1).to_string()), Some(r(V1).to_string()), None]);
    // A re-apply of the failed template starts nothing.
    let again = run(Operation::Update, Some(&stored), &stored);
    assert!(matches!(again.transition, Transition::Refused { .. } | Transition::Held { .. }), "{:?}", again.transition);
    assert_eq!(apply(&stored, &again)["spec"]["paused"], true);
    // A failed lock cannot be promoted.
    assert_eq!(Lock::from_annotations(&annotations_of(&stored)).promote(), None);
}

/// A Canary's opt-in (`apisix-canary.dev/canary`, which the controller writes on the
/// Deployment it targets) outlives a write that drops it while changing the template:
/// a `kubectl replace` of a manifest that never had it is still a release. Removing it
/// alone is honoured; so is a write that opts in by annotations instead.
#[test]
fn a_write_that_drops_a_canarys_opt_in_while_changing_the_template_keeps_it() {
    use apisix_canary::api::annotations::CANARY;
    let opted: &[(&str, &str)] = &[(CANARY, "web")];
    let mut bare = deploy(V1, &[], false);
    bare["metadata"].as_object_mut().unwrap().remove("annotations");
    for (name, new) in [("no annotations at all", bare), ("other annotations", deploy(V1, &[("team", "a")], false))] {
        let old = deploy(V0, opted, false);
        let m = run(Operation::Update, Some(&old), &new);
        assert_eq!(m.transition, Transition::Started { stable: r(V0), canary: r(V1) }, "{name}");
        let after = apply(&new, &m);
        assert_eq!(after["metadata"]["annotations"][CANARY], "web", "{name}");
        assert_eq!(lock_of(&after), [s(V0), s(V1), None, None], "{name}");
        assert_eq!(after["spec"]["paused"], true, "{name}");
        assert!(
            m.warnings.iter().any(|w| w.contains("the annotation is kept") && w.contains("Canary web")),
            "{name}: {:?}",
            m.warnings
        );
        // The same answer through the AdmissionReview path.
        let body = review_body(&Operation::Update, Some(&old), &new, false);
        let (_, summary) = admission::review(Hook::MutateDeployments, &body);
        assert_eq!(summary.transition, Some(Transition::Started { stable: r(V0), canary: r(V1) }), "{name}");
    }
    // Removed alone (`kubectl annotate deployment/podinfo apisix-canary.dev/canary-`).
    let m = run(Operation::Update, Some(&deploy(V0, opted, false)), &deploy(V0, &[], false));
    assert_eq!(m.transition, Transition::Untouched);
    assert!(m.patch.0.is_empty() && m.warnings.is_empty(), "{m:?}");
    // Moved to annotation mode in the same write: that opt-in stands.
    let m = run(Operation::Update, Some(&deploy(V0, opted, false)), &deploy(V1, &[(ROUTE, "podinfo")], false));
    let after = apply(&deploy(V1, &[(ROUTE, "podinfo")], false), &m);
    assert_eq!(after["metadata"]["annotations"].get(CANARY), None);
    assert_eq!(m.transition, Transition::Started { stable: r(V0), canary: r(V1) });
}
