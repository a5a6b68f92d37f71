//! APISIX's Prometheus exposition, as its `prometheus` plugin prints it through
//! nginx-lua-prometheus: the same names, label order, millisecond buckets, key sorting,
//! `le` values and HELP/TYPE lines, so PromQL written for APISIX works unchanged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// The `metric_prefix` APISIX uses by default.
pub const PREFIX: &str = "apisix_";
/// `DEFAULT_BUCKETS` of APISIX's exporter, in milliseconds.
pub const BUCKETS_MS: [f64; 15] =
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0];
/// The `hostname` label of `apisix_node_info`.
pub const NODE_HOSTNAME: &str = "apisix-sim";

const HELP: &[(&str, &str, &str)] = &[
    ("http_latency", "HTTP request latency in milliseconds per service in APISIX", "histogram"),
    ("http_requests_total", "The total number of client requests since APISIX started", "gauge"),
    ("http_status", "HTTP status codes per service in APISIX", "counter"),
    ("nginx_metric_errors_total", "Number of nginx-lua-prometheus errors", "counter"),
    ("node_info", "Info of APISIX node", "gauge"),
];

/// One proxied request, as the plugin's log phase sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub code: u16,
    pub route: String,
    pub matched_uri: String,
    pub matched_host: String,
    pub service: String,
    pub consumer: String,
    /// The balancer's choice (pod IP, or Service IP); empty when there was none.
    pub node: String,
    pub request_ms: f64,
    /// Time spent in the upstream; `None` when no upstream answered.
    pub upstream_ms: Option<f64>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS_MS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        for (b, le) in self.buckets.iter_mut().zip(BUCKETS_MS) {
            if v <= le {
                *b += 1;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: u64,
    /// Keyed by the label part `{code="200",...}`.
    status: BTreeMap<String, u64>,
    /// Keyed by the label part without `le`: `{type="request",...}`.
    latency: BTreeMap<String, Histogram>,
}

/// Every series the gateway has; rendered on each scrape.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

/// nginx-lua-prometheus's label value: printable ASCII, `\` and `"` escaped.
fn label_value(v: &str) -> String {
    v.chars().filter(|c| (' '..='~').contains(c)).collect::<String>().replace('\\', "\\\\").replace('"', "\\\"")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", label_value(v))).collect();
    format!("{{{}}}", parts.join(","))
}

/// LuaJIT's `tostring` of a number (`%.14g`).
pub fn lua_number(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let sci = format!("{v:.13e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..14).contains(&exp) {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = usize::try_from(13 - exp).unwrap_or(0);
    let fixed = format!("{v:.decimals$}");
    if fixed.contains('.') { fixed.trim_end_matches('0').trim_end_matches('.').to_owned() } else { fixed }
}

impl Registry {
    /// Counts a request that reached the gateway (any path, like nginx's stub status).
    pub fn request(&self) {
        self.lock().requests += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters stay consistent across a panic: each update is a few additions.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The plugin's log phase: `http_status`, and `http_latency` of types request,
    /// upstream (when an upstream answered) and apisix.
    pub fn observe(&self, o: &Observation) {
        let code = o.code.to_string();
        let status = labels(&[
            ("code", &code),
            ("route", &o.route),
            ("matched_uri", &o.matched_uri),
            ("matched_host", &o.matched_host),
            ("service", &o.service),
            ("consumer", &o.consumer),
            ("node", &o.node),
        ]);
        let latency = |type_: &str| {
            labels(&[
                ("type", type_),
                ("route", &o.route),
                ("service", &o.service),
                ("consumer", &o.consumer),
                ("node", &o.node),
            ])
        };
        let mut inner = self.lock();
        *inner.status.entry(status).or_default() += 1;
        inner.latency.entry(latency("request")).or_default().observe(o.request_ms);
        if let Some(upstream) = o.upstream_ms {
            inner.latency.entry(latency("upstream")).or_default().observe(upstream);
        }
        let apisix = (o.request_ms - o.upstream_ms.unwrap_or(0.0)).max(0.0);
        inner.latency.entry(latency("apisix")).or_default().observe(apisix);
    }

    /// The text exposition: keys sorted as strings (buckets zero-padded so they sort
    /// numerically), HELP and TYPE before each family's first sample, `le` unpadded.
    pub fn render(&self) -> String {
        let mut samples: Vec<(String, String)> = Vec::new();
        {
            let inner = self.lock();
            samples.push(("http_requests_total".into(), inner.requests.to_string()));
            for (labels, n) in &inner.status {
                samples.push((format!("http_status{labels}"), n.to_string()));
            }
            for (labels, h) in &inner.latency {
                let open = &labels[..labels.len() - 1];
                for (le, n) in BUCKETS_MS.iter().zip(h.buckets) {
                    samples.push((format!("http_latency_bucket{open},le=\"{le:07.1}\"}}"), n.to_string()));
                }
                samples.push((format!("http_latency_bucket{open},le=\"Inf\"}}"), h.count.to_string()));
                samples.push((format!("http_latency_count{labels}"), h.count.to_string()));
                samples.push((format!("http_latency_sum{labels}"), lua_number(h.sum)));
            }
        }
        samples.push(("nginx_metric_errors_total".into(), "0".into()));
        samples.push((format!("node_info{}", labels(&[("hostname", NODE_HOSTNAME)])), "1".into()));
        samples.sort();
        let mut out = String::new();
        let mut family = "";
        for (key, value) in &samples {
            let short = short_name(key);
            if short != family {
                family = short;
                if let Some((_, help, type_)) = HELP.iter().find(|(n, ..)| *n == short) {
                    let _ = writeln!(out, "# HELP {PREFIX}{short} {help}");
                    let _ = writeln!(out, "# TYPE {PREFIX}{short} {type_}");
                }
            }
            let _ = writeln!(out, "{PREFIX}{} {value}", unpad_le(key));
        }
        out
    }
}

/// The family of a sample key: `http_latency` for its `_bucket`, `_count` and `_sum`.
fn short_name(key: &str) -> &str {
    let name = key.split('{').next().unwrap_or(key);
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix)
            && HELP.iter().any(|(n, _, t)| *n == base && *t == "histogram")
        {
            return base;
        }
    }
    name
}

/// `le="00050.0"` -> `le="50"`, `le="Inf"` -> `le="+Inf"`.
fn unpad_le(key: &str) -> String {
    let Some(start) = key.rfind(",le=\"") else { return key.to_owned() };
    let value_start = start + 5;
    let Some(len) = key[value_start..].find('"') else { return key.to_owned() };
    let raw = &key[value_start..value_start + len];
    let le = if raw == "Inf" {
        "+Inf".to_owned()
    } else {
        raw.parse::<f64>().map(lua_number).unwrap_or_else(|_| raw.into())
    };
    format!("{}{le}{}", &key[..value_start], &key[value_start + len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_luajit() {
        assert_eq!(lua_number(3.0), "3");
        assert_eq!(lua_number(0.5), "0.5");
        assert_eq!(lua_number(1000.0000324249), "1000.0000324249");
        assert_eq!(lua_number(12.345678901234567), "12.345678901235");
        assert_eq!(lua_number(0.00001), "1e-05");
    }

    #[test]
    fn exposition_is_sorted_and_unpadded() {
        let r = Registry::default();
        let o = |code, node: &str, ms| Observation {
            code,
            route: "test_podinfo_method".into(),
            matched_uri: "/*".into(),
            matched_host: "app.example.com".into(),
            service: String::new(),
            consumer: String::new(),
            node: node.into(),
            request_ms: ms,
            upstream_ms: Some(ms),
        };
        r.observe(&o(200, "10.244.0.2", 3.0));
        r.observe(&o(500, "10.244.0.2", 70.0));
        r.request();
        let text = r.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP apisix_http_latency HTTP request latency in milliseconds per service in APISIX");
        assert_eq!(lines[1], "# TYPE apisix_http_latency histogram");
        let l = r#"type="apisix",route="test_podinfo_method",service="",consumer="",node="10.244.0.2""#;
        assert_eq!(lines[2], format!("apisix_http_latency_bucket{{{l},le=\"1\"}} 2"));
        assert_eq!(lines[16], format!("apisix_http_latency_bucket{{{l},le=\"60000\"}} 2"));
        assert_eq!(lines[17], format!("apisix_http_latency_bucket{{{l},le=\"+Inf\"}} 2"));
        let req = r#"type="request",route="test_podinfo_method",service="",consumer="",node="10.244.0.2""#;
        assert!(lines.contains(&format!("apisix_http_latency_bucket{{{req},le=\"2\"}} 0").as_str()));
        assert!(lines.contains(&format!("apisix_http_latency_bucket{{{req},le=\"5\"}} 1").as_str()));
        assert!(lines.contains(&format!("apisix_http_latency_bucket{{{req},le=\"100\"}} 2").as_str()));
        assert!(lines.contains(&format!("apisix_http_latency_sum{{{req}}} 73").as_str()));
        assert!(text.contains(concat!(
            "# HELP apisix_http_requests_total The total number of client requests since APISIX started\n",
            "# TYPE apisix_http_requests_total gauge\napisix_http_requests_total 1\n",
            "# HELP apisix_http_status HTTP status codes per service in APISIX\n# TYPE apisix_http_status counter\n",
            "apisix_http_status{code=\"200\",route=\"test_podinfo_method\",matched_uri=\"/*\",",
            "matched_host=\"app.example.com\",service=\"\",consumer=\"\",node=\"10.244.0.2\"} 1\n",
        )));
        assert!(text.ends_with("# TYPE apisix_node_info gauge\napisix_node_info{hostname=\"apisix-sim\"} 1\n"));
        // Every bucket series comes before every _count, then every _sum.
        let first_count = lines.iter().position(|l| l.starts_with("apisix_http_latency_count")).unwrap();
        let last_bucket = lines.iter().rposition(|l| l.starts_with("apisix_http_latency_bucket")).unwrap();
        assert!(last_bucket < first_count);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\cd");
    }
}
