//! The typed ApisixRoute reads what we need and round-trips everything else unchanged.

use apisix_canary::api::apisix_route::ApisixRoute;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apisix").join(name))
        .unwrap()
}

#[test]
fn routes_round_trip_without_losing_fields() {
    for name in
        ["podinfo-route.yaml", "apisixroute-sample-weighted-v2.x.yaml", "apisixroute-sample-weighted-exprs-1.x.yaml"]
    {
        let text = fixture(name);
        let original: Value = serde_saphyr::from_str(&text).unwrap();
        let route: ApisixRoute = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(serde_json::to_value(&route).unwrap(), original, "{name}");
    }
}

#[test]
fn modelled_fields_read_as_written() {
    let route: ApisixRoute = serde_saphyr::from_str(&fixture("podinfo-route.yaml")).unwrap();
    let rule = &route.spec.http.as_ref().unwrap()[0];
    assert_eq!(rule.name, "method");
    let m = rule.match_.as_ref().unwrap();
    assert_eq!(m.hosts.as_deref(), Some(&["app.example.com".to_owned()][..]));
    assert_eq!(m.paths.as_deref(), Some(&["/*".to_owned()][..]));
    let backend = &rule.backends.as_ref().unwrap()[0];
    assert_eq!(backend.service_name, "podinfo");
    assert_eq!(backend.service_port, Some(IntOrString::Int(80)));
    assert_eq!(backend.weight, None);
    let plugin = &rule.plugins.as_ref().unwrap()[0];
    assert_eq!((plugin.name.as_str(), plugin.enable), ("prometheus", Some(true)));
    assert_eq!(plugin.config.as_ref().unwrap()["prefer_name"], true);
    assert!(rule.other.contains_key("websocket") && rule.other.contains_key("timeout"));

    let weighted: ApisixRoute = serde_saphyr::from_str(&fixture("apisixroute-sample-weighted-exprs-1.x.yaml")).unwrap();
    let weights: Vec<_> = weighted.spec.http.as_ref().unwrap()[0].backends.iter().flatten().map(|b| b.weight).collect();
    assert_eq!(weights, [Some(100), Some(50)]);
}

#[test]
fn writing_weight_zero_keeps_it_explicit() {
    let mut route: ApisixRoute = serde_saphyr::from_str(&fixture("apisixroute-sample-weighted-v2.x.yaml")).unwrap();
    let backends = route.spec.http.as_mut().unwrap()[0].backends.as_mut().unwrap();
    backends[1].weight = Some(0);
    let json = serde_json::to_value(&route).unwrap();
    assert_eq!(json["spec"]["http"][0]["backends"][1]["weight"], 0);
    assert_eq!(json["spec"]["ingressClassName"], "apisix");
}
