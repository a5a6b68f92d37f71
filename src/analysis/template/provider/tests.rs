//! Provider settings as options, then through `evaluate` against a local server standing
//! in for Prometheus (plain and HTTPS with a self-signed certificate).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::analysis::check::Verdict;
use crate::analysis::http::recorder::{self, Received, Reply, Server};
use crate::analysis::template::{Vars, evaluate};
use crate::api::metric_template::{LocalRef, MetricTemplateSpec};
use crate::release::plan::{Metric, MetricScope, MetricSource};

fn provider(secret: Option<&str>, headers: &[(&str, &str)]) -> MetricProvider {
    MetricProvider {
        type_: "prometheus".into(),
        address: Some("http://prometheus.monitoring:9090".into()),
        secret_ref: secret.map(|name| LocalRef { name: name.into() }),
        insecure_skip_verify: None,
        headers: (!headers.is_empty()).then(|| headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).into())).collect()),
        region: None,
    }
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect()
}

fn authorization(options: &Options<'_>) -> Option<String> {
    options.headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap().to_owned())
}

#[test]
fn credentials_come_from_the_secret() {
    let r = Resolver::default();
    let p = provider(Some("prom-auth"), &[]);
    let bearer = options(&p, Some(&data(&[("token", "s3cr3t\n")])), &r).unwrap();
    assert_eq!(authorization(&bearer).as_deref(), Some("Bearer s3cr3t"), "trimmed");
    assert!(bearer.headers.get(AUTHORIZATION).unwrap().is_sensitive(), "kept out of debug output");
    let basic = options(&p, Some(&data(&[("username", "admin"), ("password", "pa:ss")])), &r).unwrap();
    assert_eq!(authorization(&basic).as_deref(), Some("Basic YWRtaW46cGE6c3M="));
    let both = data(&[("token", "t"), ("username", "admin"), ("password", "x")]);
    assert_eq!(authorization(&options(&p, Some(&both), &r).unwrap()).as_deref(), Some("Bearer t"), "token first");
    // Without a secretRef, no Secret is read, whatever is passed.
    let none = options(&provider(None, &[]), Some(&data(&[("token", "t")])), &r).unwrap();
    assert_eq!(authorization(&none), None);
    assert!(none.headers.is_empty() && !none.insecure_skip_verify);
    assert!(none.resolver.is_some());
}

#[test]
fn secret_problems_in_flaggers_words() {
    let r = Resolver::default();
    let p = provider(Some("prom-auth"), &[]);
    let cases: [(Option<BTreeMap<String, ByteString>>, &str); 5] = [
        (None, "not found"),
        (Some(data(&[])), "has neither a token nor a username and password"),
        (Some(data(&[("token", ""), ("user", "admin")])), "has neither a token nor a username and password"),
        (Some(data(&[("username", "admin")])), "has a username but no password"),
        (Some(data(&[("token", "a\nb")])), "token is not a valid HTTP header value"),
    ];
    for (secret, reason) in cases {
        let e = options(&p, secret.as_ref(), &r).unwrap_err();
        assert_eq!(
            e.halt_message("not-found-percentage", "test"),
            format!("Metric template not-found-percentage.test secret prom-auth error: {reason}")
        );
    }
}

#[test]
fn headers_must_be_http() {
    let r = Resolver::default();
    let ok = options(&provider(None, &[("X-Scope-OrgID", "tenant-1")]), None, &r).unwrap();
    assert_eq!(ok.headers.get("x-scope-orgid").unwrap(), "tenant-1");
    let cases = [
        (
            provider(None, &[("X Scope", "t")]),
            "spec.provider.headers[X Scope]: Invalid value: \"X Scope\": must be a valid HTTP header name",
        ),
        (
            provider(None, &[("X-Scope", "a\r\nb")]),
            "spec.provider.headers[X-Scope]: Invalid value: (hidden): must be a valid HTTP header value: visible \
             ASCII, no line breaks",
        ),
        (
            provider(Some("prom-auth"), &[("authorization", "Bearer other")]),
            "spec.provider.headers[authorization]: Forbidden: the Authorization header comes from secretRef: set one \
             or the other",
        ),
    ];
    let secret = data(&[("token", "t")]);
    for (p, want) in cases {
        let e = options(&p, Some(&secret), &r).unwrap_err();
        assert_eq!(e.halt_message("t", "ns"), format!("Metric template t.ns error: {want}"));
    }
    let mut p = provider(None, &[]);
    p.insecure_skip_verify = Some(true);
    assert!(options(&p, None, &r).unwrap().insecure_skip_verify);
}

fn metric() -> Metric {
    Metric {
        name: "error-rate".into(),
        source: MetricSource::Template { name: "errors".into(), namespace: None, variables: BTreeMap::new() },
        min: None,
        max: Some(5.0),
        interval: Duration::from_secs(60),
        scope: MetricScope::Canary,
        on_no_data: Default::default(),
        baseline: None,
        min_requests: 0,
    }
}

fn vars() -> Vars {
    Vars {
        namespace: "test".into(),
        name: "podinfo".into(),
        target: "podinfo".into(),
        service: "podinfo".into(),
        ingress: None,
        route: "podinfo".into(),
        generated_route: "podinfo-podinfo-canary".into(),
        canary_nodes: vec!["10.244.0.8".into()],
    }
}

/// A Prometheus answering every instant query with 3.
async fn prometheus(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let vector = json!({"status": "success", "data": {"resultType": "vector",
        "result": [{"metric": {}, "value": [1_700_000_000.0, "3"]}]}});
    let respond = move |_: usize, r: &Received| {
        if r.path.starts_with("/api/v1/query?") { Reply::json(200, &vector) } else { Reply::new(404, "") }
    };
    match tls {
        Some(config) => Server::start_tls(config, respond).await,
        None => Server::start(respond).await,
    }
}

async fn run(spec: &MetricTemplateSpec, client: &Options<'_>) -> Verdict {
    evaluate(spec, &metric(), &BTreeMap::new(), &vars(), Duration::from_secs(5), client, None).await
}

#[tokio::test]
async fn queries_carry_the_credentials_and_headers() {
    let server = prometheus(None).await;
    // Reached by a cluster name through --resolve (the table's port: the URL names
    // none); the Host header stays the name.
    let resolver = Resolver::new([("prometheus.monitoring".to_owned(), server.addr)]);
    let mut spec = MetricTemplateSpec {
        provider: provider(Some("prom-auth"), &[("X-Scope-OrgID", "tenant-1")]),
        query: r#"sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+"}[{{ interval }}]))"#.into(),
    };
    spec.provider.address = Some("http://prometheus.monitoring.svc".into());
    let bearer = options(&spec.provider, Some(&data(&[("token", "s3cr3t")])), &resolver).unwrap();
    assert_eq!(run(&spec, &bearer).await, Verdict::Pass { value: Some(3.0) });
    let basic = data(&[("username", "admin"), ("password", "hunter2")]);
    let basic = options(&spec.provider, Some(&basic), &resolver).unwrap();
    assert_eq!(run(&spec, &basic).await, Verdict::Pass { value: Some(3.0) });
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("authorization"), Some("Bearer s3cr3t"));
    assert_eq!(got[1].header("authorization"), Some("Basic YWRtaW46aHVudGVyMg=="));
    for r in &got {
        assert_eq!(r.header("x-scope-orgid"), Some("tenant-1"));
        assert_eq!(r.header("host"), Some("prometheus.monitoring.svc"));
        assert!(r.path.contains("test_podinfo-podinfo-canary_"), "{}", r.path);
    }
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_self_signed_certificate() {
    let server = prometheus(Some(recorder::self_signed())).await;
    let resolver = Resolver::default();
    let mut spec = MetricTemplateSpec {
        provider: provider(None, &[]),
        query: "sum(rate(apisix_http_status[{{ interval }}]))".into(),
    };
    spec.provider.address = Some(format!("https://localhost:{}", server.addr.port()));
    let strict = options(&spec.provider, None, &resolver).unwrap();
    let Verdict::Halt { message, value: None } = run(&spec, &strict).await else { panic!("a self-signed certificate") };
    assert!(message.starts_with("Metric query failed for error-rate: prometheus at https://localhost:"), "{message}");
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    spec.provider.insecure_skip_verify = Some(true);
    let insecure = options(&spec.provider, None, &resolver).unwrap();
    assert_eq!(run(&spec, &insecure).await, Verdict::Pass { value: Some(3.0) });
    assert_eq!(server.received().len(), 1, "the strict client never got past the handshake");
}

#[tokio::test]
async fn a_bad_address_names_the_template_setting() {
    let mut spec = MetricTemplateSpec { provider: provider(None, &[]), query: "up".into() };
    spec.provider.address = Some("prometheus.monitoring:9090".into());
    let resolver = Resolver::default();
    let client = options(&spec.provider, None, &resolver).unwrap();
    assert_eq!(
        run(&spec, &client).await,
        Verdict::Halt {
            message: "Metric query failed for error-rate: invalid provider address \"prometheus.monitoring:9090\": \
                      must start with http:// or https://"
                .into(),
            value: None
        }
    );
}
