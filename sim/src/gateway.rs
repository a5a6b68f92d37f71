//! An APISIX-like gateway on a real loopback port. Each request is routed by the
//! ApisixRoutes in the store, sent to a backend by weight, balanced to a ready endpoint
//! of its Service and answered in process as that podinfo pod would (pod IPs are labels,
//! never dialled); `/apisix/prometheus/metrics` exports APISIX's exposition.
//!
//! ```text
//!  request ─▶ routes::Table::find ─▶ Rule::pick (weights) ─▶ upstream::resolve ─▶ podinfo::reply
//!                 (cached by route rv)                      (EndpointSlice, Pod)      │
//!                         metrics::Registry::observe ◀── response_rewrite::apply ◀────┘
//! ```

pub mod apisix_route;
pub mod exprs;
pub mod metrics;
pub mod patterns;
pub mod podinfo;
pub mod response_rewrite;
pub mod routes;
pub mod upstream;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::apisix_route::ApisixRoute;
use self::metrics::{Observation, Registry};
use self::routes::Table;
use super::cluster::Cluster;

/// Where APISIX's prometheus plugin exports its metrics.
pub const METRICS_PATH: &str = "/apisix/prometheus/metrics";
/// The `Server` header APISIX sends.
pub const SERVER: &str = "APISIX";
/// Request bodies read at most (the rest closes the connection).
const MAX_BODY: usize = 1 << 20;
/// Error accumulators kept before the table is reset (one per pod seen).
const MAX_FAULT_STATES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on 127.0.0.1 for the gateway: {0}")]
    Bind(std::io::Error),
}

/// The running gateway; it stops with the sim's stop token.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Gateway {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The current exposition, as a scrape of [`METRICS_PATH`] returns it.
    pub fn metrics_text(&self) -> String {
        self.state.metrics.render()
    }
}

#[derive(Debug, Default)]
struct Cached {
    /// The ApisixRoutes' last change the table was compiled at.
    rv: Option<u64>,
    /// namespace/name -> (resourceVersion, the route as parsed) of every route compiled.
    parsed: HashMap<String, (String, Arc<ApisixRoute>)>,
    table: Arc<Table>,
}

#[derive(Debug)]
struct State {
    cluster: Arc<Cluster>,
    routes: Mutex<Cached>,
    /// The EndpointSlices' last change, and the ready endpoints of each Service then.
    endpoints: Mutex<(Option<u64>, upstream::Index)>,
    metrics: Registry,
    /// Per pod uid: the error accumulator of `SIM_ERROR_RATE` (error diffusion).
    faults: Mutex<HashMap<String, f64>>,
    stop: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a panic elsewhere is no reason to stop serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn respond(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    response
}

/// nginx's error page, as APISIX sends for upstream failures.
fn error_page(status: u16, reason: &str) -> Response<Full<Bytes>> {
    // nginx's reason phrases, not the RFC's.
    let reason_phrase = match status {
        503 => "Service Temporarily Unavailable",
        _ => StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
    };
    let title = format!("{status} {reason_phrase}");
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n\
         <hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = respond(status, "text/html; charset=utf-8", body);
    if let Ok(v) = HeaderValue::from_str(reason) {
        response.headers_mut().insert("x-sim-error", v);
    }
    response
}

/// The request's host for matching: Host header (or authority), no port, lower case.
fn host_of(parts: &Parts) -> String {
    let raw = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| parts.uri.host()).unwrap_or("");
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => raw.split(':').next().unwrap_or(raw),
    };
    host.to_ascii_lowercase()
}

/// lua-resty-cookie's reading of a `Cookie` header, as APISIX's `cookie_<name>` does:
/// `name=value` pairs split at `;`, a value ending at `;`, space or tab, the last of a
/// name winning.
fn cookie(header: &str, wanted: &str) -> Option<String> {
    let mut found = None;
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        // A key runs to the next `=`, even across a `;`, as lua-resty-cookie reads it.
        let Some((key, after)) = rest.split_once('=') else { return found };
        let end = after.find([';', ' ', '\t']).unwrap_or(after.len());
        if key == wanted {
            found = Some(after[..end].to_owned());
        }
        rest = after.get(end + 1..).unwrap_or("");
    }
}

/// The nginx variables `exprs` read: `http_*`, `arg_*`, `cookie_*`, `uri` and a few more.
fn nginx_var(parts: &Parts, name: &str) -> Option<String> {
    if let Some(h) = name.strip_prefix("http_") {
        let wanted = h.replace('_', "-");
        return parts.headers.get(wanted.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned);
    }
    if let Some(arg) = name.strip_prefix("arg_") {
        return parts.uri.query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            k.eq_ignore_ascii_case(arg).then(|| v.to_owned())
        });
    }
    if let Some(name) = name.strip_prefix("cookie_") {
        // `$http_cookie`: several Cookie headers (HTTP/2 sends one per pair) joined by "; ".
        let lines: Vec<&str> = parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
        return cookie(&lines.join("; "), name);
    }
    match name {
        "uri" => Some(parts.uri.path().to_owned()),
        "request_uri" => Some(parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned()),
        "host" => Some(host_of(parts)),
        "request_method" => Some(parts.method.to_string()),
        "args" | "query_string" => parts.uri.query().map(str::to_owned),
        "remote_addr" => Some(Ipv4Addr::LOCALHOST.to_string()),
        "scheme" => Some("http".to_owned()),
        _ => None,
    }
}

impl State {
    /// The routing table, recompiled only when an ApisixRoute changed.
    fn table(&self) -> Arc<Table> {
        let store = &self.cluster.store;
        let mut cached = lock(&self.routes);
        let rv = store.resource_rv(apisix_route::GROUP, apisix_route::PLURAL);
        if cached.rv == Some(rv) {
            return cached.table.clone();
        }
        let (items, _) = store.list(apisix_route::GROUP, apisix_route::PLURAL, None);
        let at = |o: &Value, p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
        // Each route is parsed again only when it changed.
        let mut parsed = HashMap::with_capacity(items.len());
        let mut routes = Vec::with_capacity(items.len());
        for item in &items {
            let key = format!("{}/{}", at(item, "/metadata/namespace"), at(item, "/metadata/name"));
            let version = at(item, "/metadata/resourceVersion");
            let route = match cached.parsed.remove(&key).filter(|(v, _)| *v == version) {
                Some((_, route)) => route,
                None => match serde_json::from_value::<ApisixRoute>((**item).clone()) {
                    Ok(r) => Arc::new(r),
                    Err(e) => {
                        tracing::warn!(route = %key, error = %e, "gateway: apisixroute left out");
                        continue;
                    }
                },
            };
            routes.push(route.clone());
            parsed.insert(key, (version, route));
        }
        let (table, rejected) = Table::compile(routes.iter().map(|r| &**r));
        for r in rejected {
            tracing::warn!(error = %r, "gateway: apisixroute left out");
        }
        *cached = Cached { rv: Some(rv), parsed, table: Arc::new(table) };
        cached.table.clone()
    }

    /// The ready endpoints of `namespace/service`, from an index rebuilt only when an
    /// EndpointSlice changed.
    fn endpoints(&self, namespace: &str, service: &str) -> Arc<Vec<upstream::Endpoint>> {
        let store = &self.cluster.store;
        let mut cached = lock(&self.endpoints);
        let rv = store.resource_rv(upstream::SLICES.0, upstream::SLICES.1);
        if cached.0 != Some(rv) {
            *cached = (Some(rv), upstream::index(store));
        }
        cached.1.get(&(namespace.to_owned(), service.to_owned())).cloned().unwrap_or_default()
    }

    /// Whether this request of `pod` fails: error diffusion makes any run of n requests
    /// fail n x rate / 100 times, give or take one.
    fn fails(&self, pod: &Value) -> bool {
        let rate = podinfo::faults(pod).error_rate;
        if rate <= 0.0 {
            return false;
        }
        let uid = pod.pointer("/metadata/uid").and_then(Value::as_str);
        let key = uid.or_else(|| pod.pointer("/metadata/name").and_then(Value::as_str)).unwrap_or_default();
        let mut faults = lock(&self.faults);
        if faults.len() >= MAX_FAULT_STATES && !faults.contains_key(key) {
            faults.clear();
        }
        let acc = faults.entry(key.to_owned()).or_insert(0.0);
        *acc += rate;
        if *acc >= 100.0 - 1e-9 {
            *acc -= 100.0;
            true
        } else {
            false
        }
    }

    async fn sleep(&self, d: Duration) {
        if !d.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = self.stop.cancelled() => {}
            }
        }
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    state.metrics.request();
    let (parts, body) = req.into_parts();
    // Read the body so the connection stays reusable; its content is not used.
    let _ = Limited::new(body, MAX_BODY).collect().await;
    if parts.uri.path() == METRICS_PATH {
        if parts.method != Method::GET {
            return respond(405, "text/plain; charset=utf-8", "405 Method Not Allowed\n");
        }
        return respond(200, "text/plain; charset=utf-8", state.metrics.render());
    }
    let host = host_of(&parts);
    let table = state.table();
    let var = |name: &str| nginx_var(&parts, name);
    let request = routes::Request { method: parts.method.as_str(), host: &host, path: parts.uri.path() };
    let Some(matched) = table.find(&request, &var) else {
        return respond(404, "text/plain; charset=utf-8", "{\"error_msg\":\"404 Route Not Found\"}\n");
    };
    let metric_route = matched.rule.metric_route();
    let namespace = matched.rule.namespace.clone();
    let labels = (matched.uri.clone(), matched.host.clone());
    let backend = matched.rule.pick().cloned();
    let rewrite = matched.rule.response_rewrite.clone();
    let route_ids = (matched.rule.id(), matched.rule.name());
    drop(matched);

    let node = match backend {
        None => Err((503, String::new(), None, "no backend to send to: none listed, or every weight is 0".to_owned())),
        Some(b) => {
            upstream::resolve(&state.cluster.store, &state.endpoints(&namespace, &b.service_name), &namespace, &b)
                .map_err(|e| {
                    let (status, node) = e.status();
                    (status, node.to_owned(), e.addr().map(str::to_owned), e.to_string())
                })
        }
    };
    // `$upstream_addr` and `$upstream_status` once the balancer chose a node.
    let (mut response, node_label, upstream, upstream_ms) = match node {
        Err((status, node, addr, reason)) => {
            let upstream = addr.map(|a| (a, status));
            (error_page(status, &reason), node, upstream, None)
        }
        Ok(node) => {
            let upstream_started = Instant::now();
            let fail = state.fails(&node.pod);
            let reply = podinfo::reply(&node.pod, parts.uri.path(), fail);
            state.sleep(reply.delay).await;
            let body = serde_json::to_vec(&reply.body).unwrap_or_default();
            let mut response = respond(reply.status, "application/json; charset=utf-8", body);
            response.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            let upstream = Some((node.addr, reply.status));
            (response, node.ip, upstream, Some(upstream_started.elapsed().as_secs_f64() * 1000.0))
        }
    };
    // The header and body filters run on APISIX's own error pages too.
    if let Some(rewrite) = rewrite {
        let var = |name: &str| match name {
            "upstream_addr" => upstream.as_ref().map(|(addr, _)| addr.clone()),
            "upstream_status" => upstream.as_ref().map(|(_, status)| status.to_string()),
            "balancer_ip" => upstream.as_ref().and_then(|(a, _)| a.rsplit_once(':')).map(|(ip, _)| ip.to_owned()),
            "balancer_port" => upstream.as_ref().and_then(|(a, _)| a.rsplit_once(':')).map(|(_, p)| p.to_owned()),
            "route_id" => Some(route_ids.0.clone()),
            "route_name" => Some(route_ids.1.clone()),
            _ => nginx_var(&parts, name),
        };
        rewrite.apply(&mut response, &var);
    }
    if let Some(route) = metric_route {
        state.metrics.observe(&Observation {
            code: response.status().as_u16(),
            route,
            matched_uri: labels.0,
            matched_host: labels.1,
            service: String::new(),
            consumer: String::new(),
            node: node_label,
            request_ms: started.elapsed().as_secs_f64() * 1000.0,
            upstream_ms,
        });
    }
    response
}

/// Starts the gateway on a free loopback port.
pub async fn spawn(cluster: Arc<Cluster>, stop: CancellationToken) -> Result<Gateway, GatewayError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(GatewayError::Bind)?;
    let addr = listener.local_addr().map_err(GatewayError::Bind)?;
    let state = Arc::new(State {
        cluster,
        routes: Mutex::default(),
        endpoints: Mutex::default(),
        metrics: Registry::default(),
        faults: Mutex::default(),
        stop: stop.clone(),
    });
    {
        let state = state.clone();
        super::httpd::serve(listener, stop, move |req| handle(state.clone(), req));
    }
    Ok(Gateway { addr, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder().uri("/a/b?x=1&y=%20");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn cookies_read_as_lua_resty_cookie() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("canary-affinity=10.96.0.12:80", "canary-affinity", Some("10.96.0.12:80")),
            ("a=1; canary-affinity=10.96.0.12:80; b=2", "canary-affinity", Some("10.96.0.12:80")),
            ("a=1;b=2", "b", Some("2")),
            ("a=1 b=2", "b", Some("2")),
            ("a=1; a=2", "a", Some("2")),
            ("a=", "a", Some("")),
            ("a=x=y", "a", Some("x=y")),
            ("A=1", "a", None),
            ("a", "a", None),
            ("", "a", None),
        ];
        for (header, name, want) in cases {
            assert_eq!(cookie(header, name).as_deref(), *want, "{header:?} {name}");
        }
        // Several Cookie headers (HTTP/2) are one `$http_cookie`.
        let p = parts(&[("cookie", "a=1"), ("cookie", "b=2")]);
        assert_eq!((nginx_var(&p, "cookie_a"), nginx_var(&p, "cookie_b")), (Some("1".into()), Some("2".into())));
        assert_eq!(nginx_var(&parts(&[]), "cookie_a"), None);
    }

    #[test]
    fn request_variables() {
        let p = parts(&[("host", "App.Example.com:8080"), ("x-canary-id", "7")]);
        let var = |n: &str| nginx_var(&p, n);
        assert_eq!(var("host").as_deref(), Some("app.example.com"));
        assert_eq!(var("http_x_canary_id").as_deref(), Some("7"));
        assert_eq!(var("uri").as_deref(), Some("/a/b"));
        assert_eq!(var("request_uri").as_deref(), Some("/a/b?x=1&y=%20"));
        assert_eq!(var("args").as_deref(), Some("x=1&y=%20"));
        assert_eq!(var("arg_x").as_deref(), Some("1"));
        assert_eq!(var("request_method").as_deref(), Some("GET"));
        assert_eq!(var("remote_addr").as_deref(), Some("127.0.0.1"));
        assert_eq!(var("no_such_variable"), None);
    }
}
