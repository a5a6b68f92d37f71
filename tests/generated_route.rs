//! The generated ApisixRoute: the rule it copies, its shape against the scenario and
//! APISIX's own CRD schema, and the weights written and read back.

#[path = "support/release.rs"]
mod release;
use release::{fixture, owner};

use apisix_canary::api::apisix_route::ApisixRoute;
use apisix_canary::route::{self, RouteError};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

fn scenario() -> ApisixRoute {
    fixture("scenario/route.yaml")
}

fn shop() -> ApisixRoute {
    fixture("release/route-several-rules.yaml")
}

fn json(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap()
}

#[test]
fn find_rule_picks_the_one_rule_whose_only_backend_is_the_service() {
    assert_eq!(route::find_rules(&scenario(), "podinfo"), Ok(vec![0]));
    assert_eq!(route::find_rules(&fixture("apisix/podinfo-route.yaml"), "podinfo"), Ok(vec![0]));
    assert_eq!(route::find_rules(&shop(), "podinfo"), Ok(vec![1]));
    assert_eq!(route::find_rules(&shop(), "frontend"), Ok(vec![0]));
}

#[test]
fn find_rule_without_a_match_names_what_it_found() {
    let err = route::find_rules(&shop(), "checkout").unwrap_err();
    assert!(matches!(err, RouteError::NoRule { .. }));
    assert_eq!(
        err.to_string(),
        "apisix route shop.test has no http rule whose only backend is service checkout; \
         found: rule web -> [frontend:80]; rule api -> [podinfo:http]"
    );

    let mut empty = scenario();
    empty.spec.http = None;
    let err = route::find_rules(&empty, "podinfo").unwrap_err().to_string();
    assert!(err.ends_with("found: no http rules"), "{err}");
}

#[test]
fn every_rule_of_the_service_is_copied_and_moved_by_the_same_weight() {
    let mut route = shop();
    let mut second = route.spec.http.as_ref().unwrap()[1].clone();
    second.name = "api-v2".into();
    second.priority = Some(7);
    route.spec.http.as_mut().unwrap().push(second);
    let rules = route::find_rules(&route, "podinfo").unwrap();
    assert_eq!(rules, [1, 2], "api and api-v2, not the frontend's");
    let generated = route::generated(&route, &rules, "podinfo", "podinfo-canary", "podinfo", 20, owner());
    let http = generated.spec.http.as_deref().unwrap();
    let names: Vec<&str> = http.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api", "api-v2"]);
    let user = route.spec.http.as_deref().unwrap();
    for (copy, original) in http.iter().zip([&user[1], &user[2]]) {
        assert_eq!(copy.priority, Some(original.priority.unwrap_or(0) + 1), "each above its own original");
        assert_eq!(copy.other, original.other, "match and plugins as written");
        let weights: Vec<(String, Option<i64>)> =
            copy.backends.iter().flatten().map(|b| (b.service_name.clone(), b.weight)).collect();
        assert_eq!(weights, [("podinfo".into(), Some(80)), ("podinfo-canary".into(), Some(20))]);
    }
    assert_eq!(route::weights(&generated, "podinfo-canary"), Some((80, 20)));
    let moved = route::with_weight(&generated, "podinfo-canary", 40);
    assert_eq!(route::weights(&moved, "podinfo-canary"), Some((60, 40)), "all rules moved");
    // Rules that disagree are not a weight we wrote.
    let mut torn = moved.clone();
    torn.spec.http.as_mut().unwrap()[1].backends.as_mut().unwrap()[1].weight = Some(10);
    assert_eq!(route::weights(&torn, "podinfo-canary"), None);
}

#[test]
fn find_rule_refuses_a_service_already_weighted() {
    let weighted: ApisixRoute = fixture("apisix/apisixroute-sample-weighted-v2.x.yaml");
    let err = route::find_rules(&weighted, "httpbin-1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "apisix route httpbin.ingress-apisix: http rule httpbin already splits traffic between httpbin-1:80, \
         httpbin-2:80; a release needs the service httpbin-1 as the only backend of its rule"
    );

    // Weighted in one rule and alone in another: the release would cover part of its traffic.
    let mut both = shop();
    let mut split = both.spec.http.as_ref().unwrap()[1].clone();
    split.name = "split".into();
    let mut other = split.backends.as_ref().unwrap()[0].clone();
    other.service_name = "podinfo-v2".into();
    split.backends.as_mut().unwrap().push(other);
    both.spec.http.as_mut().unwrap().push(split);
    assert!(matches!(route::find_rules(&both, "podinfo"), Err(RouteError::Weighted { rule, .. }) if rule == "split"));

    // An ApisixUpstream reference next to the backend takes a share of the traffic too.
    let mut upstream = scenario();
    upstream.spec.http.as_mut().unwrap()[0].other.insert("upstreams".into(), json!([{"name": "legacy", "weight": 10}]));
    let err = route::find_rules(&upstream, "podinfo").unwrap_err().to_string();
    assert!(err.contains("between podinfo:80, upstream legacy"), "{err}");
}

#[test]
fn generated_route_of_the_scenario_is_exactly_the_expected_object() {
    let user = scenario();
    let generated = route::generated(&user, &[0], "podinfo", "podinfo-canary", "podinfo", 0, owner());
    let expected: Value = fixture("release/route-generated.yaml");
    assert_eq!(json(&generated), expected);
    // `weight: 0` is written, not left out (APISIX would read an absent weight as 100).
    assert_eq!(json(&generated)["spec"]["http"][0]["backends"][1]["weight"], json!(0));
    assert_eq!(user, scenario(), "the user's route is never modified");
}

#[test]
fn generated_route_copies_only_the_matched_rule_with_all_its_settings() {
    let user = shop();
    let generated = route::generated(&user, &[1], "podinfo", "podinfo-canary", "podinfo", 20, owner());
    let meta = &generated.metadata;
    assert_eq!(meta.name.as_deref(), Some("shop-podinfo-canary"));
    assert_eq!(meta.namespace.as_deref(), Some("test"));
    assert!(meta.resource_version.is_none() && meta.uid.is_none(), "a new object, not the user's");
    let labels = meta.labels.clone().unwrap();
    assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("apisix-canary"));
    assert_eq!(labels.get("team").map(String::as_str), Some("payments"));
    assert!(!labels.keys().any(|k| k.contains("fluxcd")), "flux would prune the copy: {labels:?}");
    let annotations = meta.annotations.clone().unwrap();
    assert_eq!(annotations.keys().collect::<Vec<_>>(), ["kubernetes.io/ingress.class"]);
    let owners = meta.owner_references.clone().unwrap();
    assert_eq!(owners, [OwnerReference { controller: Some(true), ..owner() }]);

    assert_eq!(generated.spec.ingress_class_name.as_deref(), Some("apisix"));
    assert!(generated.spec.other.is_empty(), "the stream rules stay the user's alone");
    let rules = generated.spec.http.as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    let (copy, original) = (&rules[0], &user.spec.http.as_ref().unwrap()[1]);
    assert_eq!(copy.name, "api");
    assert_eq!(copy.priority, Some(11));
    assert_eq!((&copy.match_, &copy.plugins, &copy.other), (&original.match_, &original.plugins, &original.other));

    let backends = copy.backends.as_ref().unwrap();
    let shape: Vec<_> = backends
        .iter()
        .map(|b| {
            (
                b.service_name.as_str(),
                b.service_port.clone(),
                b.resolve_granularity.as_deref(),
                b.subset.as_deref(),
                b.weight,
            )
        })
        .collect();
    let http = Some(IntOrString::String("http".into()));
    assert_eq!(
        shape,
        [
            ("podinfo", http.clone(), Some("service"), Some("v1"), Some(80)),
            ("podinfo-canary", http, Some("service"), None, Some(20)),
        ]
    );
    assert_eq!(user, shop(), "the user's route is never modified");
}

#[test]
fn generated_routes_pass_the_apisix_crd_schema_unpruned() {
    let crd: Value = fixture("apisix/apisixroute-crd-v2.x.yaml");
    let schema = sim::schema::of_version(&crd, "v2").unwrap();
    for (user, rule) in [(scenario(), 0), (shop(), 1), (fixture("apisix/podinfo-route.yaml"), 0)] {
        for weight in [0, 10, 50, 100] {
            let generated = route::generated(&user, &[rule], "podinfo", "podinfo-canary", "podinfo", weight, owner());
            let mut object = json(&generated);
            let errors = sim::schema::check(schema, &mut object);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(object, json(&generated), "the API server would prune fields we wrote");
        }
    }
    // The check is not vacuous: a backend without its port is refused.
    let mut broken = json(&route::generated(&scenario(), &[0], "podinfo", "podinfo-canary", "podinfo", 0, owner()));
    broken["spec"]["http"][0]["backends"][1].as_object_mut().unwrap().remove("servicePort");
    assert!(!sim::schema::check(schema, &mut broken).is_empty());
}

#[test]
fn weights_read_back_what_was_written() {
    let user = scenario();
    for w in [0, 1, 10, 33, 50, 99, 100] {
        let generated = route::generated(&user, &[0], "podinfo", "podinfo-canary", "podinfo", w, owner());
        assert_eq!(route::weights(&generated, "podinfo-canary"), Some((100 - w, w)));
        let moved = route::with_weight(&generated, "podinfo-canary", 100 - w);
        assert_eq!(route::weights(&moved, "podinfo-canary"), Some((w, 100 - w)));
    }
    let over = route::generated(&user, &[0], "podinfo", "podinfo-canary", "podinfo", 150, owner());
    assert_eq!(route::weights(&over, "podinfo-canary"), Some((0, 100)), "capped at 100");
}

#[test]
fn weights_refuse_shapes_that_are_not_ours() {
    let generated = route::generated(&scenario(), &[0], "podinfo", "podinfo-canary", "podinfo", 30, owner());
    assert_eq!(route::weights(&scenario(), "podinfo-canary"), None, "the user's route has no canary");

    let mut swapped = generated.clone();
    swapped.spec.http.as_mut().unwrap()[0].backends.as_mut().unwrap().reverse();
    assert_eq!(route::weights(&swapped, "podinfo-canary"), Some((70, 30)), "order does not matter");

    let mut unset = generated.clone();
    unset.spec.http.as_mut().unwrap()[0].backends.as_mut().unwrap()[1].weight = None;
    assert_eq!(route::weights(&unset, "podinfo-canary"), None);

    let mut negative = generated.clone();
    negative.spec.http.as_mut().unwrap()[0].backends.as_mut().unwrap()[0].weight = Some(-1);
    assert_eq!(route::weights(&negative, "podinfo-canary"), None);

    let mut three = generated;
    let extra = three.spec.http.as_ref().unwrap()[0].backends.as_ref().unwrap()[0].clone();
    three.spec.http.as_mut().unwrap()[0].backends.as_mut().unwrap().push(extra);
    assert_eq!(route::weights(&three, "podinfo-canary"), None);
}

#[test]
fn with_weight_changes_the_weights_and_nothing_else() {
    let user = shop();
    let at0 = route::generated(&user, &[1], "podinfo", "podinfo-canary", "podinfo", 0, owner());
    let at40 = route::generated(&user, &[1], "podinfo", "podinfo-canary", "podinfo", 40, owner());
    assert_eq!(route::with_weight(&at0, "podinfo-canary", 40), at40);
    assert_eq!(route::with_weight(&user, "podinfo-canary", 40), user, "a route without the canary is left alone");
}

#[test]
fn weight_patch_carries_the_whole_rule_list_and_the_resource_version() {
    let mut stored = route::generated(&shop(), &[1], "podinfo", "podinfo-canary", "podinfo", 10, owner());
    stored.metadata.resource_version = Some("5150".into());
    let patch = route::weight_patch(&stored, "podinfo-canary", 20);
    assert_eq!(patch["metadata"], json!({"resourceVersion": "5150"}));
    assert_eq!(patch.as_object().unwrap().len(), 2, "metadata and spec only: {patch}");

    // Applied as the API server applies a JSON merge patch to a custom resource, it
    // yields the route at the new weight, match and plugins intact.
    let mut doc = json(&stored);
    json_patch::merge(&mut doc, &patch);
    assert_eq!(doc, json(&route::with_weight(&stored, "podinfo-canary", 20)));
    let applied: ApisixRoute = serde_json::from_value(doc).unwrap();
    assert_eq!(route::weights(&applied, "podinfo-canary"), Some((80, 20)));

    stored.metadata.resource_version = None;
    assert!(route::weight_patch(&stored, "podinfo-canary", 20).get("metadata").is_none());
}

/// A DNS-1123 subdomain, as Kubernetes checks object names.
fn is_dns_subdomain(s: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    s.len() <= 253 && s.split('.').all(label_ok)
}

#[test]
fn generated_name_is_flaggers_and_bounded() {
    assert_eq!(route::generated_name("podinfo", "podinfo"), "podinfo-podinfo-canary");
    assert_eq!(route::generated_name("shop.v2", "podinfo"), "shop.v2-podinfo-canary");

    let long_route = format!("{}.example", "r".repeat(190));
    let a = route::generated_name(&long_route, &"d".repeat(120));
    let b = route::generated_name(&long_route, &format!("{}e", "d".repeat(119)));
    for name in [&a, &b] {
        assert!(name.len() <= 253 && name.ends_with("-canary") && is_dns_subdomain(name), "{name}");
    }
    assert_eq!(a.len(), 253);
    assert_ne!(a, b, "two long names that differ only at the end stay apart");
    assert_eq!(a, route::generated_name(&long_route, &"d".repeat(120)), "stable");

    // A cut that lands right after a dot or a dash must not leave it before the hash.
    let dotted = format!("{}.{}", "a".repeat(234), "b".repeat(30));
    let name = route::generated_name(&dotted, "d");
    assert!(is_dns_subdomain(&name), "{name}");
}

fn sticky() -> apisix_canary::release::plan::Sticky {
    apisix_canary::release::plan::Sticky { cookie: "canary".into(), attributes: "Max-Age=86400; Path=/".into() }
}

fn address() -> route::sticky::CanaryAddress {
    route::sticky::CanaryAddress { cluster_ip: "10.96.0.42".into(), ports: vec![(Some("http".into()), 80)] }
}

#[test]
fn a_sticky_release_keeps_each_client_on_the_version_that_answered_it() {
    let (sticky, address) = (sticky(), address());
    let shape = route::Shape::Sticky(&sticky, &address);
    let generated =
        route::generated_for(&scenario(), &[0], shape, ("podinfo", "podinfo-canary"), "podinfo", 20, owner());
    let http = json(&generated)["spec"]["http"].clone();
    let names: Vec<&str> = http.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["method-sticky-canary", "method-sticky-stable", "method"]);
    let priority = |i: usize| http[i]["priority"].as_i64().unwrap();
    assert_eq!([priority(0), priority(1), priority(2)], [2, 2, 1], "the cookie rules above the weighted one");
    let cookie =
        |op: &str, value: &str| json!({"subject": {"scope": "Cookie", "name": "canary"}, "op": op, "value": value});
    assert_eq!(http[0]["match"]["exprs"], json!([cookie("Equal", "10.96.0.42:80")]));
    assert_eq!(http[1]["match"]["exprs"], json!([cookie("RegexMatch", "."), cookie("NotEqual", "10.96.0.42:80")]));
    let weights = |rule: &Value| -> Vec<i64> {
        rule["backends"].as_array().unwrap().iter().map(|b| b["weight"].as_i64().unwrap()).collect()
    };
    assert_eq!([weights(&http[0]), weights(&http[1]), weights(&http[2])], [vec![0, 100], vec![100, 0], vec![80, 20]]);
    for rule in http.as_array().unwrap() {
        for b in rule["backends"].as_array().unwrap() {
            assert_eq!(b["resolveGranularity"], "service", "the cookie names a Service, not a pod: {rule}");
        }
    }
    let rewrite = http[2]["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "response-rewrite").unwrap();
    assert_eq!(
        rewrite["config"],
        json!({"headers": {"set": {"Set-Cookie": "canary=$balancer_ip:$balancer_port; Max-Age=86400; Path=/"}},
               "vars": [["balancer_ip", "~~", "."]]})
    );
    assert!(
        http[2]["plugins"].as_array().unwrap().iter().any(|p| p["name"] == "prometheus"),
        "the user's plugins kept"
    );
    // The weight is the weighted rule's; the cookie rules follow the release.
    assert_eq!(route::weights(&generated, "podinfo-canary"), Some((80, 20)));
    let moved = json(&route::with_weight(&generated, "podinfo-canary", 40))["spec"]["http"].clone();
    assert_eq!(
        [weights(&moved[0]), weights(&moved[1]), weights(&moved[2])],
        [vec![0, 100], vec![100, 0], vec![60, 40]]
    );
    // A rollback sends everyone to the stable, the canary's cookie holders too, and tells
    // nobody a version any more; nor does a route at weight 0 before the first step.
    let back = json(&route::with_weight(&generated, "podinfo-canary", 0))["spec"]["http"].clone();
    assert_eq!([weights(&back[0]), weights(&back[1]), weights(&back[2])], [vec![100, 0], vec![100, 0], vec![100, 0]]);
    let telling = |http: &Value| {
        http[2]["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "response-rewrite").unwrap()["enable"]
            .clone()
    };
    assert_eq!((telling(&http), telling(&moved), telling(&back)), (json!(true), json!(true), json!(false)));
}

#[test]
fn a_rule_with_its_own_response_rewrite_cannot_be_made_sticky() {
    assert_eq!(route::sticky::conflict(&scenario(), &[0]), None);
    let mut own = scenario();
    let rule = &mut own.spec.http.as_mut().unwrap()[0];
    rule.plugins.get_or_insert_with(Vec::new).push(
        serde_json::from_value(json!({"name": "response-rewrite", "config": {"headers": {"set": {"X-A": "b"}}}}))
            .unwrap(),
    );
    let why = route::sticky::conflict(&own, &[0]).unwrap();
    assert!(why.starts_with("apisix route podinfo: rule method has its own response-rewrite plugin"), "{why}");
    own.spec.http.as_mut().unwrap()[0].plugins.as_mut().unwrap().last_mut().unwrap().enable = Some(false);
    assert_eq!(route::sticky::conflict(&own, &[0]), None, "a disabled one is no conflict");
}

#[test]
fn ab_and_sticky_routes_pass_the_apisix_crd_schema_unpruned() {
    let crd: Value = fixture("apisix/apisixroute-crd-v2.x.yaml");
    let schema = sim::schema::of_version(&crd, "v2").unwrap();
    let insider = apisix_canary::release::plan::MatchExpr {
        scope: "Header",
        name: Some("x-canary".into()),
        op: "Equal",
        value: "insider".into(),
    };
    let ab = apisix_canary::release::plan::AbTest { rules: vec![vec![insider.clone()], vec![insider]], iterations: 5 };
    let (sticky, address) = (sticky(), address());
    for shape in [route::Shape::Ab(&ab), route::Shape::Sticky(&sticky, &address)] {
        let generated =
            route::generated_for(&shop(), &[1], shape, ("podinfo", "podinfo-canary"), "podinfo", 20, owner());
        let mut object = json(&generated);
        let errors = sim::schema::check(schema, &mut object);
        assert!(errors.is_empty(), "{shape:?}: {errors:?}");
        assert_eq!(object, json(&generated), "{shape:?}: the API server would prune fields we wrote");
    }
    let generated = route::generated_for(
        &shop(),
        &[1],
        route::Shape::Ab(&ab),
        ("podinfo", "podinfo-canary"),
        "podinfo",
        100,
        owner(),
    );
    let names: Vec<String> = generated.spec.http.unwrap().iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, ["api-ab-0", "api-ab-1"], "one rule per match entry, named apart");
}
