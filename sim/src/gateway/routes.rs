//! The gateway's routing table: ApisixRoute rules compiled as the APISIX ingress
//! controller translates them (route name `<ns>_<route>_<rule>`, id = its crc32, the
//! traffic-split only with two backends or more) and matched as lua-resty-radixtree
//! matches APISIX routes: exact paths first, then the longest `*` prefix, and among
//! the rules of one path the highest `priority`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::apisix_route::{ApisixRoute, Backend, HttpRule};
use super::exprs::Expr;
use super::patterns::{Host, PathRule};
use super::response_rewrite::{self, ResponseRewrite};

/// The weight of a backend that names none (the ingress controller's default).
pub const DEFAULT_WEIGHT: i64 = 100;

/// One `spec.http[]` rule, ready to match and to pick a backend.
#[derive(Debug)]
pub struct Rule {
    pub namespace: String,
    /// The ApisixRoute's name.
    pub route: String,
    /// The rule's name.
    pub rule: String,
    pub priority: i64,
    hosts: Vec<Host>,
    paths: Vec<PathRule>,
    methods: Vec<String>,
    exprs: Vec<Expr>,
    pub backends: Vec<Backend>,
    /// `Some(prefer_name)` when the `prometheus` plugin is enabled on the rule.
    pub prometheus: Option<bool>,
    /// The `response-rewrite` plugin, when enabled on the rule.
    pub response_rewrite: Option<Arc<ResponseRewrite>>,
    /// Smooth weighted round robin state, one per backend.
    current: Mutex<Vec<i64>>,
}

/// What a request exposes to matching.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Lower case, without port.
    pub host: &'a str,
    pub path: &'a str,
}

/// The rule a request matched, with the `matched_uri` and `matched_host` labels.
#[derive(Debug)]
pub struct Matched<'a> {
    pub rule: &'a Rule,
    pub uri: String,
    pub host: String,
}

/// CRC-32 (IEEE), as Go's `crc32.ChecksumIEEE` computes it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn weight(b: &Backend) -> i64 {
    b.weight.unwrap_or(DEFAULT_WEIGHT).max(0)
}

impl Rule {
    /// `<namespace>_<apisixroute>_<rule>`: the APISIX route name.
    pub fn name(&self) -> String {
        format!("{}_{}_{}", self.namespace, self.route, self.rule)
    }

    /// The APISIX route id the ingress controller derives from the name.
    pub fn id(&self) -> String {
        format!("{:x}", crc32(self.name().as_bytes()))
    }

    /// The `route` label of its metrics; `None` when the plugin is off.
    pub fn metric_route(&self) -> Option<String> {
        self.prometheus.map(|prefer_name| if prefer_name { self.name() } else { self.id() })
    }

    /// The backend for the next request. With one backend it always serves (no
    /// traffic-split, its weight unused); with more, smooth weighted round robin where
    /// `weight: 0` gets nothing. `None` when every weight is zero.
    pub fn pick(&self) -> Option<&Backend> {
        if self.backends.len() < 2 {
            return self.backends.first();
        }
        let weights: Vec<i64> = self.backends.iter().map(weight).collect();
        let total: i64 = weights.iter().sum();
        if total == 0 {
            return None;
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.resize(weights.len(), 0);
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let best = (0..current.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i)))?;
        current[best] -= total;
        self.backends.get(best)
    }

    /// Method, host and `exprs`, as radixtree's `match_route_opts`; the matched host.
    fn accepts(&self, req: &Request<'_>, var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method) {
            return None;
        }
        let host =
            if self.hosts.is_empty() { String::new() } else { self.hosts.iter().find_map(|h| h.matches(req.host))? };
        self.exprs.iter().all(|e| e.eval(var(&e.var).as_deref())).then_some(host)
    }
}

/// Every rule of every ApisixRoute, indexed by path.
#[derive(Debug, Default)]
pub struct Table {
    rules: Vec<Rule>,
    /// Exact path -> (rule, path) by priority.
    exact: BTreeMap<String, Vec<(usize, usize)>>,
    /// Prefix -> (rule, path) by priority; walked longest prefix first.
    prefixes: Vec<(String, Vec<(usize, usize)>)>,
}

/// Why a rule or a route was left out, as the ingress controller would refuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("apisixroute {namespace}/{name}: {message}")]
pub struct Rejected {
    pub namespace: String,
    pub name: String,
    pub message: String,
}

fn compile_rule(ns: &str, route: &str, http: &HttpRule) -> Result<Rule, String> {
    let m = &http.match_;
    let paths = &m.paths;
    if paths.is_empty() {
        return Err(format!("rule {:?}: match.paths is required", http.name));
    }
    let paths = paths.iter().map(|p| PathRule::parse(p)).collect::<Result<Vec<_>, _>>()?;
    let hosts = m.hosts.iter().map(|h| Host::parse(h)).collect();
    let exprs = m.exprs.iter().map(Expr::compile).collect::<Result<Vec<_>, _>>()?;
    let prometheus = http
        .plugins
        .iter()
        .find(|p| p.name == "prometheus" && p.enable)
        .map(|p| p.config.as_ref().and_then(|c| c.get("prefer_name")).and_then(Value::as_bool) == Some(true));
    // The ingress controller keys plugins by name: the last enabled entry wins.
    let response_rewrite = match http.plugins.iter().rev().find(|p| p.name == response_rewrite::NAME && p.enable) {
        Some(p) => Some(Arc::new(
            ResponseRewrite::compile(p.config.as_ref()).map_err(|e| format!("rule {:?}: {e}", http.name))?,
        )),
        None => None,
    };
    let backends = http.backends.clone();
    Ok(Rule {
        namespace: ns.to_owned(),
        route: route.to_owned(),
        rule: http.name.clone(),
        priority: http.priority,
        hosts,
        paths,
        methods: m.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
        exprs,
        current: Mutex::new(vec![0; backends.len()]),
        backends,
        prometheus,
        response_rewrite,
    })
}

impl Table {
    /// Compiles routes in order; a route with a bad rule is left out whole, as the
    /// ingress controller fails its translation.
    pub fn compile<'a>(routes: impl IntoIterator<Item = &'a ApisixRoute>) -> (Self, Vec<Rejected>) {
        let mut table = Table::default();
        let mut rejected = Vec::new();
        for ar in routes {
            let ns = ar.metadata.namespace.clone();
            let name = ar.metadata.name.clone();
            let reject = |message: String| Rejected { namespace: ns.clone(), name: name.clone(), message };
            let http = &ar.spec.http;
            let mut seen = BTreeSet::new();
            if let Some(dup) = http.iter().find(|r| !seen.insert(r.name.as_str())) {
                rejected.push(reject(format!("duplicated route rule name {:?}", dup.name)));
                continue;
            }
            match http.iter().map(|r| compile_rule(&ns, &name, r)).collect::<Result<Vec<_>, _>>() {
                Ok(rules) => table.rules.extend(rules),
                Err(message) => rejected.push(reject(message)),
            }
        }
        let mut prefixes: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for (r, rule) in table.rules.iter().enumerate() {
            for (p, path) in rule.paths.iter().enumerate() {
                let slot =
                    if path.exact { table.exact.entry(path.path.clone()) } else { prefixes.entry(path.path.clone()) };
                slot.or_default().push((r, p));
            }
        }
        let rules = &table.rules;
        let by_priority = |v: &mut Vec<(usize, usize)>| v.sort_by_key(|&(r, _)| std::cmp::Reverse(rules[r].priority));
        table.exact.values_mut().for_each(by_priority);
        let mut prefixes: Vec<_> = prefixes.into_iter().collect();
        prefixes.iter_mut().for_each(|(_, v)| by_priority(v));
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        table.prefixes = prefixes;
        (table, rejected)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule serving `req`; `var` reads nginx variables (`http_x`, `arg_x`, `uri`).
    pub fn find(&self, req: &Request<'_>, var: &dyn Fn(&str) -> Option<String>) -> Option<Matched<'_>> {
        let hit = |&(r, p): &(usize, usize)| {
            let rule = &self.rules[r];
            let path = &rule.paths[p];
            if path.param.as_ref().is_some_and(|re| !re.is_match(req.path)) {
                return None;
            }
            let host = rule.accepts(req, var)?;
            Some(Matched { rule, uri: path.org.clone(), host })
        };
        if let Some(found) = self.exact.get(req.path).and_then(|c| c.iter().find_map(hit)) {
            return Some(found);
        }
        self.prefixes
            .iter()
            .filter(|(prefix, _)| req.path.starts_with(prefix.as_str()))
            .find_map(|(_, c)| c.iter().find_map(hit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(ns: &str, name: &str, http: Value) -> ApisixRoute {
        serde_json::from_value(json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
            "metadata": {"name": name, "namespace": ns}, "spec": {"http": http}}))
        .unwrap()
    }

    fn find(t: &Table, method: &str, host: &str, path: &str, ua: Option<&str>) -> Option<(String, String, String)> {
        let var = |name: &str| (name == "http_user_agent").then(|| ua.map(str::to_owned)).flatten();
        t.find(&Request { method, host, path }, &var).map(|m| (m.rule.rule.clone(), m.uri, m.host))
    }

    #[test]
    fn radixtree_order_host_method_and_exprs() {
        let (t, rejected) = Table::compile(&[route(
            "t",
            "a",
            json!([
                {"name": "all", "match": {"paths": ["/*"]}, "backends": []},
                {"name": "api", "match": {"paths": ["/api/*"], "hosts": ["*.example.com"]}},
                {"name": "info", "match": {"paths": ["/api/info"], "methods": ["GET"], "hosts": ["app.example.com"]}},
                {"name": "chrome", "priority": 5, "match": {"paths": ["/api/*"], "exprs": [
                    {"subject": {"scope": "Header", "name": "User-Agent"}, "op": "RegexMatch", "value": "Chrome"}]}},
                {"name": "user", "match": {"paths": ["/users/:id/profile"]}},
            ]),
        )]);
        assert!(rejected.is_empty(), "{rejected:?}");
        let s = |a: &str, b: &str, c: &str| Some((a.to_owned(), b.to_owned(), c.to_owned()));
        assert_eq!(find(&t, "GET", "app.example.com", "/api/info", None), s("info", "/api/info", "app.example.com"));
        // Exact misses on method: the longest prefix wins over `/*`.
        assert_eq!(find(&t, "POST", "app.example.com", "/api/info", None), s("api", "/api/*", "*.example.com"));
        // Same prefix: the higher priority first.
        assert_eq!(find(&t, "GET", "x.example.com", "/api/x", Some("Chrome/1")), s("chrome", "/api/*", ""));
        assert_eq!(find(&t, "GET", "example.com", "/api/x", None), s("all", "/*", ""));
        assert_eq!(find(&t, "GET", "h", "/users/7/profile", None), s("user", "/users/:id/profile", ""));
        assert_eq!(find(&t, "GET", "h", "/users/7/other", None), s("all", "/*", ""));
    }

    #[test]
    fn nothing_matches_without_a_fallback() {
        let (t, _) = Table::compile(&[route("t", "a", json!([{"name": "r", "match": {"paths": ["/ip"]}}]))]);
        assert!(find(&t, "GET", "h", "/ip/x", None).is_none());
        assert!(find(&t, "GET", "h", "/ip", None).is_some());
    }

    #[test]
    fn bad_routes_are_left_out_whole() {
        let (t, rejected) = Table::compile(&[
            route(
                "t",
                "dup",
                json!([{"name": "r", "match": {"paths": ["/a"]}}, {"name": "r", "match": {"paths": ["/b"]}}]),
            ),
            route("t", "nopath", json!([{"name": "r", "match": {}}])),
            route("t", "ok", json!([{"name": "r", "match": {"paths": ["/c"]}}])),
        ]);
        assert_eq!(t.rules().len(), 1);
        assert_eq!(rejected.len(), 2);
        assert!(rejected[0].to_string().contains("duplicated route rule name \"r\""), "{}", rejected[0]);
        assert!(rejected[1].to_string().contains("match.paths is required"), "{}", rejected[1]);
    }

    #[test]
    fn weights_split_exactly_and_zero_gets_nothing() {
        let (t, _) = Table::compile(&[route(
            "t",
            "w",
            json!([{"name": "r", "match": {"paths": ["/*"]}, "backends": [
            {"serviceName": "stable", "servicePort": 80, "weight": 80},
            {"serviceName": "canary", "servicePort": 80, "weight": 20},
            {"serviceName": "off", "servicePort": 80, "weight": 0}]}]),
        )]);
        let rule = &t.rules()[0];
        let mut counts = BTreeMap::new();
        for _ in 0..1000 {
            *counts.entry(rule.pick().unwrap().service_name.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts, BTreeMap::from([("canary".to_owned(), 200), ("stable".to_owned(), 800)]));
        let (t, _) = Table::compile(&[route(
            "t",
            "z",
            json!([{"name": "r", "match": {"paths": ["/*"]}, "backends": [
            {"serviceName": "a", "weight": 0}, {"serviceName": "b", "weight": 0}]}]),
        )]);
        assert!(t.rules()[0].pick().is_none());
        let (t, _) = Table::compile(&[route(
            "t",
            "one",
            json!([{"name": "r", "match": {"paths": ["/*"]}, "backends": [
            {"serviceName": "a", "weight": 0}]}]),
        )]);
        assert_eq!(t.rules()[0].pick().unwrap().service_name, "a", "one backend: no traffic-split");
    }

    #[test]
    fn names_ids_and_the_prometheus_plugin() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let plugin = |enable: bool, prefer: bool| {
            let config = json!({"prefer_name": prefer});
            json!([{"name": "prometheus", "enable": enable, "config": config}])
        };
        let (t, _) = Table::compile(&[route(
            "test",
            "podinfo",
            json!([
                {"name": "named", "match": {"paths": ["/a"]}, "plugins": plugin(true, true)},
                {"name": "id", "match": {"paths": ["/b"]}, "plugins": plugin(true, false)},
                {"name": "off", "match": {"paths": ["/c"]}, "plugins": plugin(false, true)},
            ]),
        )]);
        let r = t.rules();
        assert_eq!(r[0].metric_route().as_deref(), Some("test_podinfo_named"));
        assert_eq!(r[1].metric_route(), Some(format!("{:x}", crc32(b"test_podinfo_id"))));
        assert_eq!(r[2].metric_route(), None);
    }

    #[test]
    fn response_rewrite_is_the_last_enabled_and_a_bad_one_fails_the_route() {
        let rr = |enable: Option<bool>, config: Value| {
            let mut p = json!({"name": "response-rewrite", "config": config});
            if let Some(e) = enable {
                p["enable"] = json!(e);
            }
            p
        };
        let set = |v: &str| json!({"headers": {"set": {"X-V": v}}});
        let (t, rejected) = Table::compile(&[
            route(
                "t",
                "ok",
                json!([
                    {"name": "on", "match": {"paths": ["/a"]}, "plugins": [rr(Some(true), set("1"))]},
                    {"name": "off", "match": {"paths": ["/b"]}, "plugins": [rr(Some(false), set("1"))]},
                    // The CRD's default: an absent `enable` is true.
                    {"name": "default", "match": {"paths": ["/c"]}, "plugins": [rr(None, set("1"))]},
                    {"name": "last", "match": {"paths": ["/d"]},
                     "plugins": [rr(Some(true), set("1")), rr(Some(true), set("2")), rr(Some(false), json!(1))]},
                ]),
            ),
            route(
                "t",
                "bad",
                json!([{"name": "r", "match": {"paths": ["/e"]},
                "plugins": [rr(Some(true), json!({"headers": {"add": ["Set-Cookie: a=b; Path=/"]}}))]}]),
            ),
        ]);
        let on: Vec<bool> = t.rules().iter().map(|r| r.response_rewrite.is_some()).collect();
        assert_eq!(on, [true, false, true, true]);
        let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        t.rules()[3].response_rewrite.as_ref().unwrap().apply(&mut response, &|_| None);
        assert_eq!(response.headers()["x-v"], "2", "the last enabled entry of a name");
        assert_eq!(rejected.len(), 1);
        assert!(
            rejected[0].message.starts_with("rule \"r\": failed to check the configuration of plugin response-rewrite")
        );
    }
}
