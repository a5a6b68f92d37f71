//! Table tests of the pure observation: each refusal in its words and their order, the
//! canary's readiness, the Deployment's rollout, opting out, the claim, the apex
//! Service, an operator's requests, and what a deletion does mid-release.

use serde_json::{Value, json};

use super::*;
use crate::api::annotations::{CANARY, CANARY_REVISION, STABLE_REVISION};
use crate::release::lifecycle::{Action, Protection, deleted};

fn canary(spec: Value, labels: Value) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "apisix-canary.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "canary-uid", "labels": labels},
        "spec": spec,
    }))
    .unwrap()
}

fn user_canary() -> Canary {
    canary(
        json!({"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
               "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"}}),
        json!({}),
    )
}

fn deployment(annotations: Value, selector: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "d-uid", "generation": 3,
                     "annotations": annotations},
        "spec": {"replicas": 2, "selector": selector,
                 "template": {"metadata": {"labels": {"app": "podinfo"}},
                              "spec": {"containers": [{"name": "podinfod", "image": "stefanprodan/podinfo:6.0.0"}]}}},
        "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
                   "readyReplicas": 2}
    }))
    .unwrap()
}

fn opted_in() -> Deployment {
    deployment(json!({CANARY: "podinfo"}), json!({"matchLabels": {"app": "podinfo"}}))
}

fn service(selector: Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 9898}]}}))
    .unwrap()
}

fn route(backend: &str) -> ApisixRoute {
    serde_json::from_value(json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"http": [{"name": "method", "match": {"paths": ["/*"]},
                           "backends": [{"serviceName": backend, "servicePort": 80}]}]}}))
    .unwrap()
}

/// Everything in place for a Canary of its own.
fn snapshot() -> Snapshot {
    Snapshot {
        canary: user_canary(),
        target: Some(opted_in()),
        copy: None,
        service: Some(service(json!({"app": "podinfo"}))),
        route: Some(route("podinfo")),
        generated: None,
        canary_nodes: None,
        active_replica_sets: 0,
        other_canary: None,
        excluded: false,
    }
}

/// A change to the [`snapshot`] of a case.
type Change = Box<dyn Fn(&mut Snapshot)>;

#[test]
fn refusals_in_their_words_and_their_order() {
    let refusal = |s: &Snapshot| observe(s).observed.refusal;
    assert_eq!(refusal(&snapshot()), None);
    let cases: Vec<(&str, Change, &str)> = vec![
        ("no route", Box::new(|s| s.route = None), "ApisixRoute test/podinfo not found"),
        (
            "no rule for the Service",
            Box::new(|s| s.route = Some(route("other"))),
            "has no http rule whose only backend is service podinfo; found: rule method -> [other:80]",
        ),
        (
            "no Service",
            Box::new(|s| s.service = None),
            "Service test/podinfo not found (set spec.service.port to have it generated)",
        ),
        ("no Deployment", Box::new(|s| s.target = None), "Deployment test/podinfo not found"),
        (
            "a Service that would select the canary pods",
            Box::new(|s| s.service = Some(service(json!({"team": "a"})))),
            "would not select the canary pods",
        ),
        (
            "a selector that cannot set the canary apart",
            Box::new(|s| {
                s.target = Some(deployment(
                    json!({CANARY: "podinfo"}),
                    json!({"matchExpressions": [
                    {"key": "app", "operator": "In", "values": ["podinfo"]}]}),
                ))
            }),
            "matchExpressions is not supported",
        ),
    ];
    for (what, change, said) in &cases {
        let mut s = snapshot();
        change(&mut s);
        let got = refusal(&s).unwrap_or_default();
        assert!(got.contains(said), "{what}: {got:?}");
    }
    // The first problem is the one said: the route before the Service and the Deployment.
    let mut s = snapshot();
    (s.route, s.service, s.target) = (None, None, None);
    assert_eq!(refusal(&s).as_deref(), Some("ApisixRoute test/podinfo not found"));
    let mut s = snapshot();
    (s.service, s.target) = (None, None);
    assert!(refusal(&s).unwrap().starts_with("Service test/podinfo not found"));
    // Annotation mode has no spec.service to generate from: no hint.
    let mut s = snapshot();
    s.canary.metadata.labels = Some([(copies::MANAGED_BY_LABEL.to_owned(), copies::MANAGED_BY.to_owned())].into());
    s.target = Some(deployment(json!({ROUTE: "podinfo"}), json!({"matchLabels": {"app": "podinfo"}})));
    s.service = None;
    assert_eq!(refusal(&s).as_deref(), Some("Service test/podinfo not found"));
}

#[test]
fn a_missing_service_the_canary_generates_is_no_refusal() {
    let mut s = snapshot();
    s.canary.spec.service = Some(serde_json::from_value(json!({"port": 80, "targetPort": 9898})).unwrap());
    s.service = None;
    let seen = observe(&s);
    assert_eq!(seen.observed.refusal, None);
    assert_eq!(seen.observed.apex, Apex::Stale, "generated first");
    let apex = seen.apex.unwrap();
    assert_eq!(apex.metadata.owner_references.unwrap()[0].uid, "canary-uid");
    // The user's own Service stays theirs.
    s.service = Some(service(json!({"app": "podinfo"})));
    assert_eq!(observe(&s).observed.apex, Apex::Kept);
}

#[test]
fn the_canary_is_ready_once_its_controller_has_seen_it_and_every_replica_is_updated() {
    let target = opted_in();
    let revision =
        |d: &Deployment| Revision::of_template(&serde_json::to_value(&d.spec.as_ref().unwrap().template).unwrap());
    let copy = |generation: i64, observed: i64, updated: i32, ready: i32, copy_of: &str| -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "podinfo-canary", "generation": generation, "annotations": {COPY_OF: copy_of}},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "readyReplicas": ready}
        }))
        .unwrap()
    };
    let current = revision(&target).to_string();
    for (what, d, want) in [
        ("ready", copy(2, 2, 2, 2, &current), CanaryPods { replicas: 2, ready: 2, current: true }),
        ("not observed yet", copy(3, 2, 2, 2, &current), CanaryPods { replicas: 2, ready: 0, current: true }),
        ("not every replica updated", copy(2, 2, 1, 2, &current), CanaryPods { replicas: 2, ready: 0, current: true }),
        ("an older template", copy(2, 2, 2, 2, "0123456789"), CanaryPods { replicas: 2, ready: 2, current: false }),
    ] {
        assert_eq!(canary_pods(&d, Some(&target)), want, "{what}");
    }
}

#[test]
fn the_deployment_rolled_out_when_observed_updated_available_and_nothing_left_over() {
    let with = |status: Value| -> Target {
        let mut d = serde_json::to_value(opted_in()).unwrap();
        d["status"] = status;
        target_of(&serde_json::from_value(d).unwrap(), 0)
    };
    let full = json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
    assert!(with(full.clone()).rolled_out);
    for (what, key, value) in [
        ("not observed yet", "observedGeneration", 2),
        ("a replica not updated", "updatedReplicas", 1),
        ("a replica not available", "availableReplicas", 1),
        ("an old replica left over", "replicas", 3),
    ] {
        let mut status = full.clone();
        status[key] = json!(value);
        assert!(!with(status).rolled_out, "{what}");
    }
    let t = with(full);
    assert_eq!((t.replicas, t.paused, t.lock.held()), (2, false, false));
}

#[test]
fn an_annotation_mode_deployment_that_opts_out_ends_its_release() {
    let mut s = snapshot();
    s.canary.metadata.labels = Some([(copies::MANAGED_BY_LABEL.to_owned(), copies::MANAGED_BY.to_owned())].into());
    s.target = Some(deployment(json!({ROUTE: "podinfo"}), json!({"matchLabels": {"app": "podinfo"}})));
    let seen = observe(&s);
    assert!(seen.observed.plan.is_ok());
    assert!(seen.observed.from_annotations && seen.observed.protection == Protection::Protected);
    s.target = Some(deployment(json!({"team": "a"}), json!({"matchLabels": {"app": "podinfo"}})));
    let why = observe(&s).observed.plan.unwrap_err();
    assert!(why.starts_with("Deployment test/podinfo is no longer opted in with apisix-canary.dev/route"), "{why}");
}

#[test]
fn the_claim_on_the_target_is_judged_from_the_snapshot() {
    let protection = |change: &dyn Fn(&mut Snapshot)| {
        let mut s = snapshot();
        change(&mut s);
        observe(&s).observed.protection
    };
    assert_eq!(protection(&|_| {}), Protection::Protected);
    assert_eq!(
        protection(&|s| s.target = Some(deployment(json!({}), json!({"matchLabels": {"app": "podinfo"}})))),
        Protection::Claim
    );
    let taken = |s: &mut Snapshot| {
        s.target = Some(deployment(json!({CANARY: "other"}), json!({"matchLabels": {"app": "podinfo"}})));
        s.other_canary = Some(true);
    };
    assert!(matches!(protection(&taken), Protection::Unprotected(why) if why.contains("Canary test/other")));
    assert!(matches!(protection(&|s| s.excluded = true), Protection::Unprotected(why) if why.contains("excluded")));
}

#[test]
fn an_operators_requests_name_a_revision_or_ask_nothing() {
    let r = |v: &str| Revision::parse(v).unwrap();
    let requests = requests(
        &[(ABORT, "5f7d9c8b6a"), (PROMOTE, " 0123456789 "), (PROMOTE_NOW, "yes please")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    assert_eq!(requests.abort, Some(r("5f7d9c8b6a")));
    assert_eq!(requests.promote, Some(r("0123456789")));
    assert_eq!(requests.promote_now, None, "not a revision");
}

#[test]
fn a_deletion_mid_release_routes_to_stable_first_and_says_so_on_the_deployment() {
    let locked = json!({CANARY: "podinfo", STABLE_REVISION: "0123456789", CANARY_REVISION: "5f7d9c8b6a"});
    let busy = |from_annotations: bool| {
        let mut s = snapshot();
        s.target = Some(deployment(locked.clone(), json!({"matchLabels": {"app": "podinfo"}})));
        if from_annotations {
            s.canary.metadata.labels =
                Some([(copies::MANAGED_BY_LABEL.to_owned(), copies::MANAGED_BY.to_owned())].into());
        }
        s.generated = Some(route("podinfo"));
        let mut o = observe(&s).observed;
        o.route_weight = Some(20);
        o
    };
    let actions = deleted(&busy(false));
    assert_eq!(&actions[..4], [Action::RouteToStable, Action::DeleteGenerated, Action::Unclaim, Action::KeepApex]);
    assert!(matches!(&actions[4], Action::TargetEvent { message } if message.contains("Deployment stays paused")));
    // Made from the annotations: made again, nothing to give up.
    let actions = deleted(&busy(true));
    assert_eq!(&actions[..2], [Action::RouteToStable, Action::DeleteGenerated]);
    assert!(matches!(&actions[2], Action::TargetEvent { message } if message.contains("starts over")));
    assert_eq!(actions.len(), 3);
    // Between releases: nothing to say; a Canary that never claimed gives nothing up.
    let mut s = snapshot();
    s.target = Some(deployment(json!({}), json!({"matchLabels": {"app": "podinfo"}})));
    assert_eq!(deleted(&observe(&s).observed), [Action::RouteToStable, Action::DeleteGenerated, Action::KeepApex]);
}
