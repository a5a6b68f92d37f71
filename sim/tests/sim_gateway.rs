//! The sim's APISIX-like gateway, load tester and real Prometheus, end to end over
//! loopback: ApisixRoutes from the reference CRD, Pods and EndpointSlices written by
//! hand, requests answered like podinfo, APISIX's exposition, Flagger's hey webhook and
//! Flagger's success-rate query. How fast it starts and how much load `hey` makes in a
//! fixed time are measured by `cargo bench -p apisix-canary-sim --bench start`.

#[path = "support/binaries.rs"]
mod binaries;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use sim::{Options, Sim};
use tokio::net::TcpStream;

const HOST: &str = "app.example.com";

/// One HTTP/1.1 connection, reused like a browser or hey does.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(url: &str) -> Self {
        let addr: SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        Self { sender }
    }

    async fn send(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let (status, _, body) = self.exchange(method, host, path, headers, body).await;
        (status, body)
    }

    /// Status, response headers and body.
    async fn exchange(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, http::HeaderMap, String) {
        let mut req = http::Request::builder().method(method).uri(path).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.sender.ready().await.unwrap();
        let res = self.sender.send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&mut self, host: &str, path: &str) -> (u16, String) {
        self.send("GET", host, path, &[], "").await
    }
}

/// A cluster (the APISIX CRD comes installed) with namespace `test`.
async fn cluster(options: Options) -> Sim {
    let sim = Sim::start_with(options).await.unwrap();
    sim.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}})).await.unwrap();
    sim
}

struct Pod<'a> {
    name: &'a str,
    ip: &'a str,
    version: &'a str,
    ready: bool,
    env: &'a [(&'a str, &'a str)],
}

fn pod<'a>(name: &'a str, ip: &'a str, version: &'a str) -> Pod<'a> {
    Pod { name, ip, version, ready: true, env: &[] }
}

/// A Service without selector, its Pods and their EndpointSlice, as the workload
/// controllers would leave them.
async fn backend(sim: &Sim, service: &str, pods: &[Pod<'_>]) {
    sim.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": "test"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9898}]}}))
        .await
        .unwrap();
    let mut endpoints = Vec::new();
    for p in pods {
        let env: Vec<Value> = p.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
        let ready = if p.ready { "True" } else { "False" };
        sim.create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": "test", "labels": {"app": service}},
            "spec": {"containers": [{"name": "podinfod", "image": format!("stefanprodan/podinfo:{}", p.version),
                "ports": [{"containerPort": 9898}], "env": env}]},
            "status": {"phase": "Running", "podIP": p.ip, "podIPs": [{"ip": p.ip}],
                "conditions": [{"type": "Ready", "status": ready}]}}))
            .await
            .unwrap();
        endpoints.push(json!({"addresses": [p.ip], "conditions": {"ready": p.ready},
            "targetRef": {"kind": "Pod", "name": p.name, "namespace": "test"}}));
    }
    sim.create(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-x7k2p"), "namespace": "test",
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": 9898, "protocol": "TCP"}]}))
        .await
        .unwrap();
}

/// ApisixRoutes through kube-rs, untyped: the sim's clients bring no route types.
fn routes(sim: &Sim) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("apisix.apache.org", "v2", "ApisixRoute");
    Api::namespaced_with(sim.client().unwrap(), "test", &ApiResource::from_gvk_with_plural(&gvk, "apisixroutes"))
}

fn route(name: &str, http: Value) -> Value {
    json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
        "metadata": {"name": name, "namespace": "test"}, "spec": {"http": http}})
}

/// The scenario's route: rule `method`, `app.example.com`, `/*`, GET, prometheus with prefer_name.
fn podinfo_rule(backends: Value) -> Value {
    json!({"name": "method", "match": {"hosts": [HOST], "paths": ["/*"], "methods": ["GET"]}, "backends": backends,
        "plugins": [{"name": "prometheus", "enable": true, "config": {"prefer_name": true}}]})
}

fn info(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn weights_split_traffic_and_weight_zero_gets_none() {
    let sim = cluster(Options::default()).await;
    backend(&sim, "podinfo", &[pod("podinfo-a", "10.244.0.10", "6.0.0"), pod("podinfo-b", "10.244.0.11", "6.0.0")])
        .await;
    backend(&sim, "podinfo-canary", &[pod("podinfo-canary-a", "10.244.0.20", "6.0.1")]).await;
    let backends = |stable: i64, canary: i64| {
        json!([{"serviceName": "podinfo", "servicePort": 80, "weight": stable},
               {"serviceName": "podinfo-canary", "servicePort": 80, "weight": canary}])
    };
    sim.create(route("podinfo", json!([podinfo_rule(backends(80, 20))]))).await.unwrap();

    let mut conn = Conn::open(&sim.gateway_url()).await;
    let (mut versions, mut hosts) = (BTreeMap::<String, u32>::new(), BTreeMap::<String, u32>::new());
    for _ in 0..2000 {
        let (status, body) = conn.get(HOST, "/api/info").await;
        assert_eq!(status, 200, "{body}");
        let info = info(&body);
        assert_eq!(info["message"], format!("greetings from podinfo v{}", info["version"].as_str().unwrap()));
        *versions.entry(info["version"].as_str().unwrap().to_owned()).or_default() += 1;
        *hosts.entry(info["hostname"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let canary = f64::from(versions.get("6.0.1").copied().unwrap_or(0)) / 20.0;
    assert!((canary - 20.0).abs() <= 3.0, "canary share {canary}% of 2000: {versions:?}");
    assert_eq!(versions.values().sum::<u32>(), 2000);
    assert!(hosts["podinfo-a"] > 400 && hosts["podinfo-b"] > 400, "both stable pods serve: {hosts:?}");

    // The controller's first and last steps: the canary at weight 0 gets nothing.
    let patch = json!({"spec": {"http": [podinfo_rule(backends(100, 0))]}});
    routes(&sim).patch("podinfo", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    for _ in 0..300 {
        let (status, body) = conn.get(HOST, "/api/info").await;
        assert_eq!((status, info(&body)["version"].as_str()), (200, Some("6.0.0")));
    }
}

#[tokio::test]
async fn host_path_method_exprs_and_priority_pick_the_rule() {
    let sim = cluster(Options::default()).await;
    for (svc, ip) in [
        ("exact", "10.244.1.1"),
        ("wild", "10.244.1.2"),
        ("chrome", "10.244.1.3"),
        ("stable", "10.244.1.4"),
        ("canary", "10.244.1.5"),
    ] {
        backend(&sim, svc, &[pod(&format!("{svc}-pod"), ip, "6.0.0")]).await;
    }
    let one = |svc: &str| json!([{"serviceName": svc, "servicePort": 80}]);
    sim.create(route(
        "site",
        json!([
            {"name": "exact", "match": {"hosts": [HOST], "paths": ["/api/info"], "methods": ["GET"]},
             "backends": one("exact")},
            {"name": "wild", "match": {"hosts": ["*.example.com"], "paths": ["/*"]}, "backends": one("wild")},
            {"name": "chrome", "priority": 10, "match": {"hosts": ["*.example.com"], "paths": ["/*"], "exprs": [
                {"subject": {"scope": "Header", "name": "User-Agent"}, "op": "RegexMatch", "value": ".*Chrome.*"},
                {"subject": {"scope": "Header", "name": "X-Region"}, "op": "NotIn", "set": ["eu", "us"]}]},
             "backends": one("chrome")},
        ]),
    ))
    .await
    .unwrap();
    // The generated canary route: a copy of the user's rule with a higher priority.
    sim.create(route(
        "shop",
        json!([{"name": "method", "match": {"hosts": ["shop.test"], "paths": ["/*"]}, "backends": one("stable")}]),
    ))
    .await
    .unwrap();
    let canary_rule = json!({"name": "method", "priority": 1, "match": {"hosts": ["shop.test"], "paths": ["/*"]},
        "backends": one("canary")});
    sim.create(route("shop-shop-canary", json!([canary_rule]))).await.unwrap();

    let mut conn = Conn::open(&sim.gateway_url()).await;
    // (method, host, path, headers, the pod that answers; None: no route)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: &[Case] = &[
        ("GET", HOST, "/api/info", &[], Some("exact-pod")),
        ("GET", "APP.example.com:8080", "/api/info", &[], Some("exact-pod")),
        ("POST", HOST, "/api/info", &[], Some("wild-pod")),
        ("GET", HOST, "/api/info/", &[], Some("wild-pod")),
        ("GET", "a.b.example.com", "/", &[("user-agent", "Mozilla/5.0 Chrome/120")], Some("chrome-pod")),
        ("GET", "a.example.com", "/", &[("user-agent", "Chrome"), ("x-region", "eu")], Some("wild-pod")),
        ("GET", "a.example.com", "/", &[("user-agent", "curl/8")], Some("wild-pod")),
        ("GET", "example.com", "/", &[], None),
        ("GET", "shop.test", "/", &[], Some("canary-pod")),
    ];
    for (method, host, path, headers, want) in cases {
        let (status, body) = conn.send(method, host, path, headers, "").await;
        match want {
            Some(pod) => {
                assert_eq!(status, 200, "{method} {host}{path}: {body}");
                assert_eq!(info(&body)["hostname"], *pod, "{method} {host}{path} {headers:?}");
            }
            None => assert_eq!((status, body.as_str()), (404, "{\"error_msg\":\"404 Route Not Found\"}\n")),
        }
    }
    // Without the canary route the user's rule serves again.
    routes(&sim).delete("shop-shop-canary", &Default::default()).await.unwrap();
    assert_eq!(info(&conn.get("shop.test", "/").await.1)["hostname"], "stable-pod");
}

/// Every value of a response header.
fn values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

async fn cluster_ip(sim: &Sim, service: &str) -> String {
    let services: Api<Service> = Api::namespaced(sim.client().unwrap(), "test");
    services.get(service).await.unwrap().spec.unwrap().cluster_ip.unwrap()
}

/// APISIX's documented pieces of a sticky canary: the weighted rule's `response-rewrite`
/// sets a cookie to `$upstream_addr`, the node the balancer chose; higher-priority rules
/// match that cookie (`scope: Cookie`) and send the client back to the same Service.
#[tokio::test]
async fn response_rewrite_cookie_of_the_chosen_node_keeps_clients_on_their_version() {
    let sim = cluster(Options::default()).await;
    backend(
        &sim,
        "podinfo-primary",
        &[pod("primary-a", "10.244.7.1", "6.0.0"), pod("primary-b", "10.244.7.2", "6.0.0")],
    )
    .await;
    backend(&sim, "podinfo-canary", &[pod("canary-a", "10.244.7.3", "6.0.1")]).await;
    let mut unready = pod("down-a", "10.244.7.4", "6.0.0");
    unready.ready = false;
    backend(&sim, "down", &[unready]).await;
    let (primary_ip, canary_ip) = (cluster_ip(&sim, "podinfo-primary").await, cluster_ip(&sim, "podinfo-canary").await);
    let (primary, canary) = (format!("{primary_ip}:80"), format!("{canary_ip}:80"));

    let by_service = |svc: &str, weight: i64| json!({"serviceName": svc, "servicePort": 80, "resolveGranularity": "service", "weight": weight});
    let affinity = json!([{"name": "response-rewrite", "enable": true, "config": {"headers": {"set": {
        "Set-Cookie": "canary-affinity=$upstream_addr; Max-Age=86400; Path=/"}}}}]);
    let cookie = |op: &str, value: &str| json!({"subject": {"scope": "Cookie", "name": "canary-affinity"}, "op": op, "value": value});
    sim.create(route(
        "podinfo",
        json!([
            {"name": "weighted", "match": {"hosts": [HOST], "paths": ["/*"]},
             "backends": [by_service("podinfo-primary", 50), by_service("podinfo-canary", 50)], "plugins": affinity},
            {"name": "sticky-canary", "priority": 2,
             "match": {"hosts": [HOST], "paths": ["/*"], "exprs": [cookie("Equal", &canary)]},
             "backends": [by_service("podinfo-canary", 100)]},
            {"name": "sticky-primary", "priority": 1,
             "match": {"hosts": [HOST], "paths": ["/*"], "exprs": [cookie("RegexMatch", "."), cookie("NotEqual", &canary)]},
             "backends": [by_service("podinfo-primary", 100)]},
            // resolveGranularity endpoints (the default): the pod's IP and its slice port.
            {"name": "by-pod", "match": {"hosts": ["pods.test"], "paths": ["/*"]},
             "backends": [{"serviceName": "podinfo-canary", "servicePort": 80}], "plugins": affinity},
            {"name": "down", "match": {"hosts": ["down.test"], "paths": ["/*"]},
             "backends": [by_service("down", 100)], "plugins": affinity},
        ]),
    ))
    .await
    .unwrap();

    let mut conn = Conn::open(&sim.gateway_url()).await;
    let mut first = BTreeMap::<String, u32>::new();
    for client in 0..40 {
        let (status, headers, body) = conn.exchange("GET", HOST, "/api/info", &[], "").await;
        assert_eq!(status, 200, "{body}");
        let version = info(&body)["version"].as_str().unwrap().to_owned();
        let set_cookie = values(&headers, "set-cookie");
        let node = if version == "6.0.1" { &canary } else { &primary };
        assert_eq!(set_cookie, [format!("canary-affinity={node}; Max-Age=86400; Path=/")], "client {client}");
        *first.entry(version.clone()).or_default() += 1;
        // The client sends its cookie back (with another) and stays on its version.
        let jar = format!("theme=dark; canary-affinity={node}");
        for _ in 0..10 {
            let (status, headers, body) = conn.exchange("GET", HOST, "/api/info", &[("cookie", &jar)], "").await;
            assert_eq!((status, info(&body)["version"].as_str()), (200, Some(version.as_str())), "client {client}");
            assert!(values(&headers, "set-cookie").is_empty(), "the sticky rules set no cookie");
        }
    }
    assert_eq!(first, BTreeMap::from([("6.0.0".to_owned(), 20), ("6.0.1".to_owned(), 20)]), "50/50 at first");
    // A cookie of no backend's address: the stable.
    let (_, _, body) = conn.exchange("GET", HOST, "/", &[("cookie", "canary-affinity=10.0.0.1:80")], "").await;
    assert_eq!(info(&body)["version"], "6.0.0");

    let (_, headers, _) = conn.exchange("GET", "pods.test", "/", &[], "").await;
    assert_eq!(values(&headers, "set-cookie"), ["canary-affinity=10.244.7.3:9898; Max-Age=86400; Path=/"]);
    // No node chosen (no ready endpoint): the plugin still runs, `$upstream_addr` is empty.
    let (status, headers, _) = conn.exchange("GET", "down.test", "/", &[], "").await;
    assert_eq!(status, 503);
    assert_eq!(values(&headers, "set-cookie"), ["canary-affinity=; Max-Age=86400; Path=/"]);
}

#[tokio::test]
async fn response_rewrite_add_set_remove_legacy_vars_and_disabled() {
    let sim = cluster(Options::default()).await;
    backend(&sim, "podinfo", &[pod("podinfo-a", "10.244.8.1", "6.0.0")]).await;
    let rule = |host: &str, plugin: Value| {
        json!({"name": host.replace('.', "-"), "match": {"hosts": [host], "paths": ["/*"]},
            "backends": [{"serviceName": "podinfo", "servicePort": 80}], "plugins": [plugin]})
    };
    let rewrite = |config: Value| json!({"name": "response-rewrite", "enable": true, "config": config});
    sim.create(route(
        "rw",
        json!([
            rule(
                "new.test",
                rewrite(json!({"headers": {
                "add": ["Set-Cookie: first=1; Max-Age=60", "Set-Cookie: second=$arg_s"],
                "set": {"X-Upstream": "$upstream_addr", "X-Unknown": "[$no_such_variable][${nor_this}]",
                        "X-Request": "$request_method ${uri} $host $http_x_client $cookie_c $remote_addr"},
                "remove": ["X-Content-Type-Options"]}}))
            ),
            rule("legacy.test", rewrite(json!({"headers": {"X-Legacy": "$uri", "X-Content-Type-Options": ""}}))),
            rule(
                "off.test",
                json!({"name": "response-rewrite", "enable": false, "config": {"headers": {
                "X-Legacy": "$uri", "X-Content-Type-Options": ""}}})
            ),
            rule(
                "status.test",
                rewrite(json!({"vars": [["status", "==", 500]], "status_code": 503, "body": "busy
"}))
            ),
        ]),
    ))
    .await
    .unwrap();
    // A header the schema refuses ("/" at the end of an `add` item): the route is left out.
    sim.create(route(
        "bad",
        json!([rule("bad.test", rewrite(json!({"headers": {"add": ["Set-Cookie: a=b; Path=/"]}})))]),
    ))
    .await
    .unwrap();

    let mut conn = Conn::open(&sim.gateway_url()).await;
    let headers = [("x-client", "t1"), ("cookie", "c=v")];
    let (status, h, _) = conn.exchange("GET", "new.test", "/api/info?s=two", &headers, "").await;
    assert_eq!(status, 200);
    assert_eq!(values(&h, "set-cookie"), ["first=1; Max-Age=60", "second=two"]);
    assert_eq!(values(&h, "x-upstream"), ["10.244.8.1:9898"]);
    assert_eq!(values(&h, "x-unknown"), ["[][]"], "unknown variables are empty");
    assert_eq!(values(&h, "x-request"), ["GET /api/info new.test t1 v 127.0.0.1"]);
    assert!(values(&h, "x-content-type-options").is_empty(), "removed");

    let (_, h, _) = conn.exchange("GET", "legacy.test", "/api/info", &[], "").await;
    assert_eq!(values(&h, "x-legacy"), ["/api/info"]);
    assert!(values(&h, "x-content-type-options").is_empty(), "an empty legacy value removes");

    let (_, h, _) = conn.exchange("GET", "off.test", "/api/info", &[], "").await;
    assert!(values(&h, "x-legacy").is_empty(), "enable: false");
    assert_eq!(values(&h, "x-content-type-options"), ["nosniff"]);

    assert_eq!(conn.get("status.test", "/status/500").await, (503, "busy\n".to_owned()));
    assert_eq!(conn.get("status.test", "/status/200").await.0, 200, "vars: only a 500 is rewritten");
    assert_eq!(conn.get("bad.test", "/").await.0, 404);
}

#[tokio::test]
async fn missing_routes_endpoints_and_podinfo_paths() {
    let sim = cluster(Options::default()).await;
    let mut unready = pod("down-a", "10.244.2.1", "6.0.0");
    unready.ready = false;
    backend(&sim, "down", &[unready]).await;
    backend(&sim, "podinfo", &[pod("podinfo-a", "10.244.2.2", "6.0.2")]).await;
    let rule = |name: &str, path: &str, svc: &str| {
        json!({"name": name, "match": {"hosts": [HOST], "paths": [path]},
            "backends": [{"serviceName": svc, "servicePort": 80}]})
    };
    sim.create(route(
        "r",
        json!([
            rule("down", "/down/*", "down"),
            rule("ghost", "/ghost/*", "no-such-service"),
            rule("app", "/*", "podinfo"),
            {"name": "badport", "match": {"paths": ["/badport"]},
             "backends": [{"serviceName": "podinfo", "servicePort": 8080}]},
        ]),
    ))
    .await
    .unwrap();
    let mut conn = Conn::open(&sim.gateway_url()).await;
    assert_eq!(conn.get("other.test", "/").await, (404, "{\"error_msg\":\"404 Route Not Found\"}\n".to_owned()));
    for path in ["/down/x", "/ghost/x"] {
        let (status, body) = conn.get(HOST, path).await;
        assert_eq!(status, 503, "{path}");
        assert!(body.contains("503 Service Temporarily Unavailable"), "{body}");
    }
    assert_eq!(conn.get(HOST, "/badport").await.0, 503, "servicePort must be a port of the Service");
    assert_eq!(conn.get(HOST, "/status/418").await.0, 418);
    assert_eq!(conn.get(HOST, "/status/200").await.0, 200);
    assert_eq!(conn.get(HOST, "/healthz").await.0, 200);
    assert_eq!(conn.get(HOST, "/readyz").await.0, 200);
    assert_eq!(conn.get(HOST, "/nope").await.0, 404);
    let (status, body) = conn.get(HOST, "/").await;
    assert_eq!((status, info(&body)["version"].as_str()), (200, Some("6.0.2")));
    let started = Instant::now();
    assert_eq!(conn.get(HOST, "/delay/0.3").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn faults_come_from_the_pod_env() {
    let sim = cluster(Options::default()).await;
    let faulty =
        Pod { env: &[("SIM_ERROR_RATE", "25"), ("SIM_LATENCY_MS", "30")], ..pod("podinfo-a", "10.244.3.1", "6.0.2") };
    backend(&sim, "podinfo", &[faulty]).await;
    sim.create(route("podinfo", json!([podinfo_rule(json!([{"serviceName": "podinfo", "servicePort": 80}]))])))
        .await
        .unwrap();
    let mut conn = Conn::open(&sim.gateway_url()).await;
    let mut errors = 0;
    for _ in 0..20 {
        let started = Instant::now();
        let (status, _) = conn.get(HOST, "/api/info").await;
        assert!(started.elapsed() >= Duration::from_millis(30), "SIM_LATENCY_MS adds 30 ms");
        errors += u32::from(status == 500);
        assert!(status == 200 || status == 500);
    }
    assert_eq!(errors, 5, "SIM_ERROR_RATE=25 fails one request in four");
}

fn series(metrics: &str, prefix: &str) -> Vec<String> {
    metrics.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect()
}

#[tokio::test]
async fn metrics_use_apisix_names_labels_and_buckets() {
    let sim = cluster(Options::default()).await;
    let slow = Pod { env: &[("SIM_LATENCY_MS", "60")], ..pod("podinfo-a", "10.244.4.7", "6.0.0") };
    backend(&sim, "podinfo", &[slow]).await;
    let svc = json!([{"serviceName": "podinfo", "servicePort": 80}]);
    let plugin = |prefer: bool| json!([{"name": "prometheus", "enable": true, "config": {"prefer_name": prefer}}]);
    sim.create(route(
        "podinfo",
        json!([
            podinfo_rule(svc.clone()),
            {"name": "noname", "match": {"paths": ["/noname"]}, "backends": svc, "plugins": plugin(false)},
            {"name": "off", "match": {"paths": ["/off"]}, "backends": svc},
            {"name": "bysvc", "match": {"paths": ["/healthz"]}, "plugins": plugin(true),
             "backends": [{"serviceName": "podinfo", "servicePort": 80, "resolveGranularity": "service"}]},
        ]),
    ))
    .await
    .unwrap();
    let mut conn = Conn::open(&sim.gateway_url()).await;
    for path in ["/api/info", "/api/info", "/", "/status/500", "/noname", "/off", "/healthz"] {
        conn.get(HOST, path).await;
    }
    let scrape = reqwest_like_get(&sim.gateway_url(), "/apisix/prometheus/metrics").await;
    let (status, content_type, text) = scrape;
    assert_eq!((status, content_type.as_str()), (200, "text/plain; charset=utf-8"));

    let status_lines = series(&text, "apisix_http_status");
    let services: Api<Service> = Api::namespaced(sim.client().unwrap(), "test");
    let cluster_ip = services.get("podinfo").await.unwrap().spec.unwrap().cluster_ip.unwrap();
    let l = |code: u16, route: &str, uri: &str, host: &str, node: &str| {
        format!(
            "apisix_http_status{{code=\"{code}\",route=\"{route}\",matched_uri=\"{uri}\",matched_host=\"{host}\",\
             service=\"\",consumer=\"\",node=\"{node}\"}}"
        )
    };
    let pod_ip = "10.244.4.7";
    assert_eq!(
        status_lines,
        [
            // resolveGranularity: service: the node is the Service's ClusterIP.
            format!("{} 1", l(200, "test_podinfo_bysvc", "/healthz", "", &cluster_ip)),
            format!("{} 3", l(200, "test_podinfo_method", "/*", HOST, pod_ip)),
            // prefer_name false: the ingress controller's id, crc32 of the route name.
            format!("{} 1", l(404, "72c0a26", "/noname", "", pod_ip)),
            format!("{} 1", l(500, "test_podinfo_method", "/*", HOST, pod_ip)),
        ]
    );
    let help = text.lines().filter(|l| l.starts_with('#')).collect::<Vec<_>>();
    assert!(
        help.starts_with(&[
            "# HELP apisix_http_latency HTTP request latency in milliseconds per service in APISIX",
            "# TYPE apisix_http_latency histogram",
            "# HELP apisix_http_requests_total The total number of client requests since APISIX started",
            "# TYPE apisix_http_requests_total gauge",
            "# HELP apisix_http_status HTTP status codes per service in APISIX",
            "# TYPE apisix_http_status counter",
        ]),
        "{help:?}"
    );

    let labels = r#"type="request",route="test_podinfo_method",service="",consumer="",node="10.244.4.7""#;
    let buckets = series(&text, &format!("apisix_http_latency_bucket{{{labels}"));
    let les = [
        "1", "2", "5", "10", "20", "50", "100", "200", "500", "1000", "2000", "5000", "10000", "30000", "60000", "+Inf",
    ];
    assert_eq!(buckets.len(), les.len(), "{buckets:#?}");
    for (line, le) in buckets.iter().zip(les) {
        let prefix = format!("apisix_http_latency_bucket{{{labels},le=\"{le}\"}} ");
        assert!(line.starts_with(&prefix), "{line} vs {prefix}");
        let n: u64 = line[prefix.len()..].parse().unwrap();
        // SIM_LATENCY_MS=60: nothing at or under 50 ms, all four within 1 s.
        let want = match le.parse::<f64>() {
            Ok(ms) if ms <= 50.0 => Some(0),
            Ok(ms) if ms < 1000.0 => None,
            _ => Some(4),
        };
        if let Some(want) = want {
            assert_eq!(n, want, "{line}");
        }
    }
    assert_eq!(
        series(&text, &format!("apisix_http_latency_count{{{labels}}}")),
        [format!("apisix_http_latency_count{{{labels}}} 4")]
    );
    let sum = series(&text, &format!("apisix_http_latency_sum{{{labels}}} "));
    let sum: f64 = sum[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(sum >= 240.0, "four requests of 60 ms or more: {sum}");
    for type_ in ["upstream", "apisix"] {
        assert!(
            text.contains(&format!("apisix_http_latency_count{{type=\"{type_}\",route=\"test_podinfo_method\"")),
            "{type_}"
        );
    }
    assert!(!text.contains("test_podinfo_off"), "no plugin, no metrics");
    assert!(text.contains("\napisix_node_info{hostname=\"apisix-sim\"} 1\n"));
}

/// GET on a fresh connection: status, content type, body.
async fn reqwest_like_get(base: &str, path_and_query: &str) -> (u16, String, String) {
    let addr: SocketAddr = base.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req =
        http::Request::get(path_and_query).header("host", addr.to_string()).body(Full::new(Bytes::new())).unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, String::from_utf8_lossy(&body).into_owned())
}

async fn webhook(sim: &Sim, path: &str, payload: &Value) -> (u16, String) {
    let mut conn = Conn::open(&sim.loadtester_url()).await;
    conn.send("POST", "flagger-loadtester.test", path, &[("content-type", "application/json")], &payload.to_string())
        .await
}

fn hey(cmd: &str) -> Value {
    json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "metadata": {"type": "cmd", "cmd": cmd}})
}

/// Requests the gateway counted for the scenario's route, from its exposition.
fn route_requests(sim: &Sim) -> u64 {
    series(&sim.gateway().metrics_text(), "apisix_http_status{")
        .iter()
        .filter(|l| l.contains("route=\"test_podinfo_method\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

async fn until<T>(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {deadline:?}");
}

#[tokio::test]
async fn load_tester_runs_the_scenario_hey_command() {
    let sim = cluster(Options::default()).await;
    backend(&sim, "podinfo", &[pod("podinfo-a", "10.244.5.1", "6.0.0")]).await;
    sim.create(route("podinfo", json!([podinfo_rule(json!([{"serviceName": "podinfo", "servicePort": 80}]))])))
        .await
        .unwrap();

    let cmd = "hey -z 2s -q 10 -c 2 -h2 -host app.example.com http://apisix-gateway.apisix/api/info";
    assert_eq!(webhook(&sim, "/", &hey(cmd)).await, (200, "command started\n".to_owned()));
    assert_eq!(webhook(&sim, "/", &hey(cmd)).await, (200, "command already running\n".to_owned()));
    let (status, body) = webhook(&sim, "/", &hey("hey -z 2s -c 500 http://apisix-gateway.apisix/")).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "metadata.cmd: -c 500 exceeds the sim load tester's limit of 64 workers\n")
    );
    let (status, body) = webhook(&sim, "/", &hey("hey -z 2 http://apisix-gateway.apisix/")).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "metadata.cmd: invalid value \"2\" for flag -z: missing unit in duration \"2\"\n")
    );
    assert_eq!(webhook(&sim, "/", &json!({"name": "podinfo", "metadata": {}})).await.0, 400);
    assert_eq!(webhook(&sim, "/gate/approve", &hey("")).await.0, 200);
    assert_eq!(webhook(&sim, "/gate/halt", &hey("")).await.0, 403);
    assert_eq!(webhook(&sim, "/gate/check", &hey("")).await.0, 200);
    assert_eq!(webhook(&sim, "/gate/close", &hey("")).await.0, 202);
    assert_eq!(webhook(&sim, "/gate/check", &hey("")).await.0, 403);

    let loadtester = sim.loadtester();
    until("the hey run ends", Duration::from_secs(30), async || (loadtester.running() == 0).then_some(())).await;
    // How many a 2 s run makes is the bench's to measure; here every one must arrive.
    let served = route_requests(&sim);
    assert!(served > 0, "the hey run sent requests");
    assert_eq!(served, loadtester.sent(), "every request reached the route");
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn prometheus_answers_flaggers_success_rate_query() {
    let prometheus_bin = binaries::require_binary("prometheus");
    let options = Options { prometheus: true, prometheus_bin: Some(prometheus_bin), ..Options::default() };
    let sim = Sim::start_with(options).await.unwrap();
    sim.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}})).await.unwrap();
    let faulty = Pod { env: &[("SIM_ERROR_RATE", "25")], ..pod("podinfo-a", "10.244.6.1", "6.0.2") };
    backend(&sim, "podinfo", &[faulty]).await;
    sim.create(route("podinfo", json!([podinfo_rule(json!([{"serviceName": "podinfo", "servicePort": 80}]))])))
        .await
        .unwrap();
    // Bounded by the test: the sim stops the load when dropped.
    let cmd = "hey -z 15s -q 50 -c 2 -host app.example.com http://apisix-gateway.apisix/api/info";
    assert_eq!(webhook(&sim, "/", &hey(cmd)).await.0, 200);

    sim.prometheus().unwrap().wait_scraping(Duration::from_secs(30)).await.unwrap();
    let prometheus = sim.prometheus_url().unwrap();
    let query = |q: String| {
        let prometheus = prometheus.clone();
        async move {
            let (status, _, body) =
                reqwest_like_get(&prometheus, &format!("/api/v1/query?query={}", percent_encode(&q))).await;
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            v.pointer("/data/result/0/value/1")?.as_str()?.parse::<f64>().ok().filter(|v| v.is_finite())
        }
    };
    let selector = "route=~\"test_podinfo_.+\"";
    // Four samples of every series in the window, so rate() extrapolates from three intervals.
    let samples = format!("min(count_over_time(apisix_http_status{{{selector}}}[1m]))");
    until("four scrapes with traffic", Duration::from_secs(30), async || {
        query(samples.clone()).await.filter(|n| *n >= 4.0)
    })
    .await;
    let rate = query(format!(
        "sum(rate(apisix_http_status{{{selector},code!~\"5..\"}}[1m])) / \
         sum(rate(apisix_http_status{{{selector}}}[1m])) * 100"
    ))
    .await
    .expect("a success rate from Prometheus");
    eprintln!("success rate from Prometheus: {rate:.2}% (SIM_ERROR_RATE=25)");
    assert!((rate - 75.0).abs() <= 3.0, "success rate {rate} for SIM_ERROR_RATE=25");
}
