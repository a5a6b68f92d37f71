//! The canary copies: `<d>-canary` and `<svc>-canary` built from the scenario's objects and
//! from real-shaped GitOps ones, the label values and names they use, and the refusals.

#[path = "support/release.rs"]
mod release;
#[path = "support/seed.rs"]
mod seed;
use release::{fixture, owner};

use std::collections::BTreeMap;

use apisix_canary::release::copies::{self, CopyError};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use proptest::prelude::*;
use serde_json::Value;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pod_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone().unwrap()
}

fn match_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec.as_ref().unwrap().selector.match_labels.clone().unwrap()
}

fn service_selector(s: &Service) -> BTreeMap<String, String> {
    s.spec.as_ref().unwrap().selector.clone().unwrap()
}

/// A Kubernetes label value: at most 63 characters, alphanumeric at both ends, `-_.` inside.
fn is_label_value(v: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    v.is_empty()
        || (v.len() <= 63
            && alnum(v.chars().next())
            && alnum(v.chars().last())
            && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
}

/// A DNS-1035 label, as Kubernetes checks Service names.
fn is_dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[test]
fn the_scenario_canary_deployment() {
    let d: Deployment = fixture("scenario/podinfo.yaml");
    let canary = copies::canary_deployment(&d, 1, owner()).unwrap();
    let meta = &canary.metadata;
    assert_eq!((meta.name.as_deref(), meta.namespace.as_deref()), (Some("podinfo-canary"), Some("test")));
    assert_eq!(
        meta.labels.clone().unwrap(),
        map(&[("app", "podinfo"), ("app.kubernetes.io/managed-by", "apisix-canary")])
    );
    assert_eq!(meta.annotations, None, "every annotation of the scenario is ours: none is carried over");
    assert_eq!(meta.owner_references.clone().unwrap(), [OwnerReference { controller: Some(true), ..owner() }]);

    let spec = canary.spec.as_ref().unwrap();
    let user = d.spec.as_ref().unwrap();
    assert_eq!((spec.replicas, spec.paused), (Some(1), None));
    assert_eq!(match_labels(&canary), map(&[("app", "podinfo-canary")]));
    assert_eq!(pod_labels(&canary), map(&[("app", "podinfo-canary")]));
    assert_eq!(spec.template.spec, user.template.spec, "the new revision's pods, as the user wrote them");
    assert_eq!((&spec.strategy, spec.progress_deadline_seconds), (&user.strategy, user.progress_deadline_seconds));

    // The API server's own checks: the selector matches the template.
    let object = serde_json::to_value(&canary).unwrap();
    assert_eq!(sim::builtin::validate("apps", "Deployment", &object), []);
    // Neither the user's Deployment nor its Service selects the canary pods; the copy does.
    let svc: Service = fixture("scenario/service.yaml");
    assert!(!copies::selects(&match_labels(&d), &pod_labels(&canary)));
    assert!(!copies::service_would_select_canary(&svc, &pod_labels(&canary)));
    assert_eq!(copies::check_service(&svc, &canary), Ok(()));
}

#[test]
fn a_gitops_deployment_sheds_what_belongs_to_the_original() {
    let d: Deployment = fixture("release/deployment-gitops.yaml");
    let canary = copies::canary_deployment(&d, 3, owner()).unwrap();
    let json = serde_json::to_value(&canary).unwrap();
    let meta = &json["metadata"];
    let keys: Vec<&String> = meta.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["annotations", "labels", "name", "namespace", "ownerReferences"], "no uid, version, finalizers");
    assert_eq!(canary.metadata.annotations.clone().unwrap(), map(&[("team.example.com/owner", "payments")]));
    let labels = canary.metadata.labels.clone().unwrap();
    assert_eq!(
        labels.keys().collect::<Vec<_>>(),
        ["app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/name"],
        "flux's labels would make it prune the copy"
    );
    assert!(json.get("status").is_none());
    assert_eq!(canary.spec.as_ref().unwrap().paused, None, "the user's Deployment is paused, its copy must roll");
    assert_eq!(canary.spec.as_ref().unwrap().replicas, Some(3));

    let template_annotations = canary.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.clone();
    assert_eq!(
        template_annotations.unwrap(),
        map(&[("kubectl.kubernetes.io/restartedAt", "2024-05-02T08:00:00Z"), ("prometheus.io/scrape", "true")])
    );

    // Both selector labels rewritten, the long one within 63 characters; other pod labels kept.
    let instance = "podinfo-payments-eu-west-1-production-blue-green-tier-frontend";
    let canary_instance = copies::canary_label_value(instance);
    let expected =
        map(&[("app.kubernetes.io/instance", &canary_instance), ("app.kubernetes.io/name", "podinfo-canary")]);
    assert_eq!(match_labels(&canary), expected);
    let mut pods = expected.clone();
    pods.insert("version".into(), "6.0.1".into());
    assert_eq!(pod_labels(&canary), pods);
    assert!(is_label_value(&canary_instance) && canary_instance.len() == 63, "{canary_instance}");
    assert_eq!(sim::builtin::validate("apps", "Deployment", &json), []);
    assert!(!copies::selects(&match_labels(&d), &pod_labels(&canary)));
}

#[test]
fn selectors_that_cannot_be_rewritten_are_refused() {
    let d: Deployment = fixture("release/deployment-expressions.yaml");
    let err = copies::canary_deployment(&d, 1, owner()).unwrap_err();
    assert_eq!(err, CopyError::MatchExpressions { deployment: "podinfo.test".into() });
    assert!(err.to_string().contains("matchExpressions is not supported, only spec.selector.matchLabels"), "{err}");

    let mut empty: Deployment = fixture("scenario/podinfo.yaml");
    empty.spec.as_mut().unwrap().selector.match_labels = Some(BTreeMap::new());
    assert_eq!(
        copies::canary_deployment(&empty, 1, owner()),
        Err(CopyError::EmptySelector { deployment: "podinfo.test".into() })
    );
}

#[test]
fn the_canary_service_is_a_plain_cluster_ip_copy() {
    let svc: Service = fixture("release/service-loadbalancer.yaml");
    let d: Deployment = fixture("release/deployment-gitops.yaml");
    let canary = copies::canary_service(&svc, &match_labels(&d), owner());
    let expected: Value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "podinfo-canary",
            "namespace": "test",
            "labels": {"app.kubernetes.io/name": "podinfo", "app.kubernetes.io/managed-by": "apisix-canary"},
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"},
            "ownerReferences": [serde_json::to_value(OwnerReference { controller: Some(true), ..owner() }).unwrap()],
        },
        "spec": {
            "type": "ClusterIP",
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "ClientIP",
            "selector": {
                "app.kubernetes.io/name": "podinfo-canary",
                "app.kubernetes.io/instance": copies::canary_label_value("podinfo-payments-eu-west-1-production-blue-green-tier-frontend"),
            },
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": 9999, "targetPort": 9999, "appProtocol": "grpc", "protocol": "TCP"},
            ],
        },
    });
    assert_eq!(serde_json::to_value(&canary).unwrap(), expected);

    let canary_d = copies::canary_deployment(&d, 1, owner()).unwrap();
    assert!(copies::selects(&service_selector(&canary), &pod_labels(&canary_d)));
    assert!(!copies::selects(&service_selector(&canary), &pod_labels(&d)), "the copy never selects stable pods");
    assert_eq!(copies::check_service(&svc, &canary_d), Ok(()));
}

#[test]
fn a_service_selector_key_outside_the_deployment_selector_is_kept() {
    let mut svc: Service = fixture("scenario/service.yaml");
    svc.spec.as_mut().unwrap().selector = Some(map(&[("app", "podinfo"), ("tier", "web")]));
    let canary = copies::canary_service(&svc, &map(&[("app", "podinfo")]), owner());
    assert_eq!(service_selector(&canary), map(&[("app", "podinfo-canary"), ("tier", "web")]));
}

#[test]
fn a_service_that_would_select_the_canary_pods_is_refused() {
    // The service selects by the pods' `version` label, which the rewrite leaves alone.
    let d: Deployment = fixture("release/deployment-gitops.yaml");
    let canary = copies::canary_deployment(&d, 1, owner()).unwrap();
    let mut svc: Service = fixture("release/service-loadbalancer.yaml");
    svc.spec.as_mut().unwrap().selector = Some(map(&[("version", "6.0.1")]));
    assert!(copies::service_would_select_canary(&svc, &pod_labels(&canary)));
    let err = copies::check_service(&svc, &canary).unwrap_err();
    assert!(matches!(err, CopyError::ServiceSelectsCanary { .. }));
    let message = err.to_string();
    assert!(message.starts_with("service podinfo.test: its selector version=6.0.1 would also select the canary pods"));
    assert!(message.contains("(app.kubernetes.io/instance,app.kubernetes.io/name)"), "{message}");

    svc.spec.as_mut().unwrap().selector = None;
    assert!(!copies::service_would_select_canary(&svc, &pod_labels(&canary)));
    assert_eq!(
        copies::check_service(&svc, &canary),
        Err(CopyError::ServiceWithoutSelector { service: "podinfo.test".into() })
    );

    // A service that does not select the Deployment's pods at all: its copy would not either.
    svc.spec.as_mut().unwrap().selector = Some(map(&[("app.kubernetes.io/name", "other")]));
    let err = copies::check_service(&svc, &canary).unwrap_err().to_string();
    assert!(
        err.contains("its copy podinfo-canary (selector app.kubernetes.io/name=other-canary) would not select"),
        "{err}"
    );
}

#[test]
fn selects_is_a_service_selector() {
    let pods = map(&[("app", "podinfo"), ("version", "1")]);
    assert!(copies::selects(&map(&[("app", "podinfo")]), &pods));
    assert!(copies::selects(&pods, &pods));
    assert!(!copies::selects(&map(&[("app", "podinfo-canary")]), &pods));
    assert!(!copies::selects(&map(&[("app", "podinfo"), ("tier", "web")]), &pods));
    assert!(!copies::selects(&BTreeMap::new(), &pods), "a Service without a selector selects no pods");
}

#[test]
fn canary_label_values() {
    assert_eq!(copies::canary_label_value("podinfo"), "podinfo-canary");
    assert_eq!(copies::canary_label_value(""), "canary");
    let fits = "a".repeat(56);
    assert_eq!(copies::canary_label_value(&fits), format!("{fits}-canary"), "63 characters exactly: no hash");

    let long = "a".repeat(57);
    let value = copies::canary_label_value(&long);
    assert_eq!(value.len(), 63);
    assert!(value.starts_with(&"a".repeat(45)) && value[45..].starts_with("-canary-"), "{value}");
    assert!(value[53..].chars().all(|c| c.is_ascii_hexdigit()), "{value}");
    assert_eq!(value, copies::canary_label_value(&long), "stable");

    // Long values that share their first 56 characters still differ.
    let a = copies::canary_label_value(&format!("{}-blue", "x".repeat(58)));
    let b = copies::canary_label_value(&format!("{}-green", "x".repeat(57)));
    assert_ne!(a, b);

    // A cut that lands on `-`, `_` or `.` drops it, so the value stays valid.
    for sep in ["-", "_", "."] {
        let v = format!("{}{sep}{}", "a".repeat(44), "b".repeat(18));
        let c = copies::canary_label_value(&v);
        assert!(is_label_value(&c) && c.starts_with(&format!("{}-canary-", "a".repeat(44))), "{c}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { rng_seed: seed::proptest(), ..ProptestConfig::default() })]
    #[test]
    fn canary_label_values_are_valid_distinct_and_never_the_original(
        a in "[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,61}[a-zA-Z0-9])?",
        b in "[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,61}[a-zA-Z0-9])?",
    ) {
        let (ca, cb) = (copies::canary_label_value(&a), copies::canary_label_value(&b));
        prop_assert!(is_label_value(&ca), "{} -> {}", a, ca);
        prop_assert_ne!(&ca, &a);
        prop_assert_eq!(a == b, ca == cb);
    }
}

#[test]
fn canary_names_are_bounded() {
    assert_eq!(copies::canary_name("podinfo"), "podinfo-canary");
    assert_eq!(copies::canary_service_name("podinfo"), "podinfo-canary");

    let svc = format!("{}-api", "payments".repeat(7));
    let name = copies::canary_service_name(&svc);
    assert!(is_dns_label(&name) && name.ends_with("-canary") && name.len() == 63, "{name}");
    assert_ne!(name, copies::canary_service_name(&format!("{}-apx", "payments".repeat(7))));

    let d = "d".repeat(250);
    let name = copies::canary_name(&d);
    assert!(name.len() == 253 && name.ends_with("-canary"), "{name}");
    assert_eq!(copies::canary_name(&"d".repeat(246)).len(), 253, "fits exactly: no hash");
}

#[test]
fn a_long_deployment_and_service_get_bounded_copies() {
    let mut d: Deployment = fixture("scenario/podinfo.yaml");
    d.metadata.name = Some("p".repeat(250));
    let canary = copies::canary_deployment(&d, 1, owner()).unwrap();
    assert!(canary.metadata.name.unwrap().len() <= 253);

    let mut svc: Service = fixture("scenario/service.yaml");
    svc.metadata.name = Some("s".repeat(60));
    let copy = copies::canary_service(&svc, &match_labels(&d), owner());
    assert!(is_dns_label(copy.metadata.name.as_deref().unwrap()));
    let canary = copies::canary_deployment(&d, 1, owner()).unwrap();
    assert_eq!(copies::check_service(&svc, &canary), Ok(()));
}

#[test]
fn canary_replicas_follow_the_next_weight() {
    let table = [
        // (stable replicas, next weight, canary replicas)
        (2, 10, 1),
        (10, 10, 1),
        (10, 11, 2),
        (10, 20, 2),
        (4, 50, 2),
        (5, 50, 3),
        (3, 100, 3),
        (7, 0, 1),
        (0, 50, 1),
        (-1, 10, 1),
        (10, 150, 10),
        (i32::MAX, 100, i32::MAX),
    ];
    for (stable, weight, want) in table {
        assert_eq!(copies::canary_replicas(stable, weight), want, "stable {stable} weight {weight}");
    }
}
