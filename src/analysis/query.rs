//! The PromQL of the built-in metrics over APISIX's exposition: pure string rendering.
//!
//! APISIX's `prometheus` plugin labels every sample with `route`
//! (`<namespace>_<ApisixRoute>_<rule>` with `prefer_name: true`) and `node` (the upstream
//! node the balancer picked: a pod IP, or the Service IP with `resolveGranularity:
//! service`). The generated route `<route>-<d>-canary` sends traffic to both the stable
//! and the canary Service, so its series blend the two; the canary's own share is the
//! subset whose `node` is one of the canary's upstream nodes.

use std::time::Duration;

/// The metric families APISIX exports (with its default `apisix_` prefix).
const STATUS: &str = "apisix_http_status";
const LATENCY_BUCKET: &str = "apisix_http_latency_bucket";

/// Whose traffic a built-in metric measures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    /// Only requests the canary's upstream nodes answered (the default).
    #[default]
    Canary,
    /// Every request of the generated route, stable and canary blended (Flagger's query,
    /// but for a success rate of 0 where Flagger finds no values: see
    /// [`Series::success_rate`]).
    Route,
}

impl Scope {
    pub const NAMES: &[&str] = &["canary", "route"];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Canary => "canary",
            Scope::Route => "route",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "canary" => Some(Scope::Canary),
            "route" => Some(Scope::Route),
            _ => None,
        }
    }
}

/// The label matchers that select one release's series; rendered once, used by both
/// metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    matchers: String,
    selection: Selection,
}

/// What a [`Series`]' matchers select, for a batched result filtered locally (see
/// `analysis::batch`): the series whose `route` is the prefix and at least one more
/// character (`route=~"<ns>_<route>_.+"`) and, when `nodes` is set, whose `node` is one of
/// them (`node=~"a|b"`, a full match of escaped literals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub route_prefix: String,
    /// Sorted, without duplicates or empty values; `None` is any node, or none.
    pub nodes: Option<Vec<String>>,
}

impl Selection {
    pub fn route(&self, route: &str) -> bool {
        route.strip_prefix(self.route_prefix.as_str()).is_some_and(|rest| !rest.is_empty())
    }

    pub fn node(&self, node: &str) -> bool {
        self.nodes.as_ref().is_none_or(|nodes| nodes.binary_search_by(|n| n.as_str().cmp(node)).is_ok())
    }
}

impl Series {
    /// The series of `generated_route` in `namespace`, narrowed to `canary_nodes` for
    /// [`Scope::Canary`]. `None` when the canary scope has no node to match: an empty
    /// alternation would select the series without a node (requests no upstream
    /// answered), which are not the canary's.
    pub fn new(namespace: &str, generated_route: &str, scope: Scope, canary_nodes: &[String]) -> Option<Series> {
        match scope {
            Scope::Canary => Series::of_nodes(namespace, generated_route, canary_nodes),
            Scope::Route => Some(Series {
                matchers: route_matcher(namespace, generated_route),
                selection: Selection { route_prefix: route_prefix(namespace, generated_route), nodes: None },
            }),
        }
    }

    /// The series of `generated_route` that `nodes` answered: the canary's, or the
    /// stable version's (its upstream nodes) for `compare: baseline`. `None` without a
    /// node, as in [`Series::new`].
    pub fn of_nodes(namespace: &str, generated_route: &str, nodes: &[String]) -> Option<Series> {
        let mut nodes: Vec<&str> = nodes.iter().map(String::as_str).filter(|n| !n.is_empty()).collect();
        // Sorted, so the same endpoints in another order give the same query.
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.is_empty() {
            return None;
        }
        let alternation = nodes.iter().map(|n| regex_escape(n)).collect::<Vec<_>>().join("|");
        let matchers = format!("{}, node=~{}", route_matcher(namespace, generated_route), promql_string(&alternation));
        let nodes = Some(nodes.into_iter().map(str::to_owned).collect());
        Some(Series {
            matchers,
            selection: Selection { route_prefix: route_prefix(namespace, generated_route), nodes },
        })
    }

    /// What the matchers select.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Requests answered over `interval` (for `minRequests`): no series when there was
    /// none.
    pub fn requests(&self, interval: Duration) -> String {
        let (m, r) = (&self.matchers, range(interval));
        format!("sum( increase( {STATUS}{{ {m} }}[{r}] ) )")
    }

    /// Percent of responses that are not 5xx over `interval`: 0 when every request was
    /// answered with a 5xx, no values (no series, or NaN) only when there was no request.
    ///
    /// Flagger's query, the numerator made `or on() vector(0)`: where every answer was a
    /// 5xx there is no non-5xx series to sum, and Flagger's query has no value, which it
    /// reads as "not receiving traffic" of a canary that failed all its traffic. The
    /// denominator still has no series (or sums to 0, giving NaN) without a request.
    pub fn success_rate(&self, interval: Duration) -> String {
        let (m, r) = (&self.matchers, range(interval));
        let ok = format!("sum( rate( {STATUS}{{ {m}, code!~\"5..\" }}[{r}] ) )");
        let all = format!("sum( rate( {STATUS}{{ {m} }}[{r}] ) )");
        format!("( {ok} or on() vector(0) ) / {all} * 100")
    }

    /// P99 of the request latency over `interval`, in milliseconds (APISIX's buckets).
    pub fn request_duration(&self, interval: Duration) -> String {
        let (m, r) = (&self.matchers, range(interval));
        format!("histogram_quantile( 0.99, sum( rate( {LATENCY_BUCKET}{{ type=~\"request\", {m} }}[{r}] ) ) by (le) )")
    }
}

impl Series {
    /// Requests counted since `since` (Unix seconds), for the sequential judge: each
    /// series' value now less its value at `since`. A series born after `since` counts
    /// whole; one that went down (a counter reset, a restarted gateway) counts its value
    /// now. `narrow` adds matchers (`code=~"5.."`). Exact counts of this release's
    /// requests, not a rate over a window: `rate()` misses a new series' first
    /// increments, and a window may reach back before the release.
    pub fn counted_since(&self, family: Family, narrow: &str, since: i64) -> String {
        let m = &self.matchers;
        let (name, type_) = match family {
            Family::Status => (STATUS, ""),
            Family::Latency => (LATENCY_BUCKET, "type=~\"request\", "),
        };
        let narrow = if narrow.is_empty() { String::new() } else { format!(", {narrow}") };
        let x = format!("{name}{{ {type_}{m}{narrow} }}");
        // Arithmetic drops the metric name on both sides, so `or` matches label sets alike.
        format!("sum( ( {x} - {x} @ {since} ) >= 0 or ( {x} - 0 ) )")
    }

    /// (requests, 5xx answers) since `since`: request-success-rate's counts.
    pub fn errors_since(&self, since: i64) -> (String, String) {
        (self.counted_since(Family::Status, "", since), self.counted_since(Family::Status, "code=~\"5..\"", since))
    }

    /// (requests, requests slower than `bucket_ms`) since `since`: request-duration's
    /// counts, from the latency histogram's `+Inf` and `bucket_ms` buckets. APISIX writes
    /// `le` zero-padded (`00500.0`).
    pub fn slow_since(&self, bucket_ms: u64, since: i64) -> (String, String) {
        let all = self.counted_since(Family::Latency, "le=\"+Inf\"", since);
        let fast = self.counted_since(Family::Latency, &format!("le=~\"0*{bucket_ms}(\\\\.0*)?\""), since);
        (all.clone(), format!("{all} - {fast}"))
    }
}

/// A metric family of APISIX's, for [`Series::counted_since`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `apisix_http_status`: requests by answer code.
    Status,
    /// `apisix_http_latency_bucket{type="request"}`: requests by latency bucket.
    Latency,
}

/// APISIX's default latency buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [u64; 15] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000];

/// The bucket a duration bound is counted at: the smallest of APISIX's buckets at least
/// `max_ms` (a request within it is within the bound, or slower by less than a bucket),
/// `None` beyond the last.
pub fn bucket_for(max_ms: f64) -> Option<u64> {
    LATENCY_BUCKETS_MS.iter().copied().find(|b| *b as f64 >= max_ms)
}

/// The `node` values that answered some request of `route`'s rules (any ApisixRoute
/// of `namespace`: the generated one, or the target's own) over `interval`: one series
/// per node. A series whose counter did not move is left out, so the nodes of an
/// earlier release, whose series the gateway still exports, are not counted again.
pub fn answering_nodes(namespace: &str, route: &str, interval: Duration) -> String {
    let (m, r) = (route_matcher(namespace, route), range(interval));
    format!("group by (node) ( increase( {STATUS}{{ {m} }}[{r}] ) > 0 )")
}

/// The `node` values of every series of `route`'s rules exported at some time over
/// `interval`, whether or not it moved: the nodes that ever answered the route (a
/// series appears with its first request).
pub fn exported_nodes(namespace: &str, route: &str, interval: Duration) -> String {
    let (m, r) = (route_matcher(namespace, route), range(interval));
    format!("group by (node) ( last_over_time( {STATUS}{{ {m} }}[{r}] ) )")
}

/// One instant query for every release at once: the per-second rate of
/// `apisix_http_status` over `window` on every generated route, by route, node and code
/// ([`Series::requests`] and [`Series::success_rate`] of any release, filtered locally).
pub fn batched_status(window: Duration) -> String {
    let r = range(window);
    format!("sum by (route, node, code) ( rate( {STATUS}{{ {GENERATED_ROUTES} }}[{r}] ) )")
}

/// One instant query for every release at once: the rate of each latency bucket over
/// `window` on every generated route, by route, node and `le` ([`Series::request_duration`]
/// of any release, its `histogram_quantile` computed locally).
pub fn batched_latency(window: Duration) -> String {
    let r = range(window);
    format!("sum by (route, node, le) ( rate( {LATENCY_BUCKET}{{ type=~\"request\", {GENERATED_ROUTES} }}[{r}] ) )")
}

/// Every rule of every generated route (`<ns>_<route>-<d>-canary_<rule>`), whatever its
/// namespace: a superset of each release's [`route_matcher`], since a generated route's
/// name ends in `-canary`. Other routes are not fetched.
const GENERATED_ROUTES: &str = r#"route=~".+-canary_.+""#;

/// The literal start of the `route` values of [`route_matcher`].
fn route_prefix(namespace: &str, generated_route: &str) -> String {
    format!("{namespace}_{generated_route}_")
}

/// Every rule of the generated route. Names are DNS labels or subdomains: only `.` needs
/// escaping, but escape all.
fn route_matcher(namespace: &str, generated_route: &str) -> String {
    let route = format!("{}_{}_.+", regex_escape(namespace), regex_escape(generated_route));
    format!("route=~{}", promql_string(&route))
}

/// `s` as a literal inside an RE2 regular expression (Go's `regexp.QuoteMeta`).
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `s` as a double-quoted PromQL string (Go's escapes: `\` and `"`).
pub fn promql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A range in Prometheus' duration syntax: `1m`, `30s`, `1m30s`, `1s500ms`. Below a
/// millisecond (never, intervals are validated to at least 1 s) it is `1ms`, since a
/// zero range is a PromQL error.
pub fn range(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    let parts = [(ms / 3_600_000, "h"), (ms / 60_000 % 60, "m"), (ms / 1000 % 60, "s"), (ms % 1000, "ms")];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ips: &[&str]) -> Vec<String> {
        ips.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Flagger's query with the numerator's `or on() vector(0)` taken out again.
    fn flaggers(ours: &str) -> String {
        let rest = ours.strip_prefix("( ").expect(ours);
        rest.replacen(" or on() vector(0) )", "", 1)
    }

    #[test]
    fn route_scope_is_flaggers_query_but_for_the_zero() {
        // From Flagger's pkg/metrics/observers/apisix_test.go (whitespace collapsed).
        let s = Series::new("default", "podinfo-podinfo-canary", Scope::Route, &nodes(&["10.0.0.1"])).unwrap();
        let rate = s.success_rate(Duration::from_secs(60));
        assert_eq!(
            rate,
            r#"( sum( rate( apisix_http_status{ route=~"default_podinfo-podinfo-canary_.+", code!~"5.." }[1m] ) ) or on() vector(0) ) / sum( rate( apisix_http_status{ route=~"default_podinfo-podinfo-canary_.+" }[1m] ) ) * 100"#
        );
        assert_eq!(
            flaggers(&rate),
            r#"sum( rate( apisix_http_status{ route=~"default_podinfo-podinfo-canary_.+", code!~"5.." }[1m] ) ) / sum( rate( apisix_http_status{ route=~"default_podinfo-podinfo-canary_.+" }[1m] ) ) * 100"#
        );
        assert_eq!(
            s.request_duration(Duration::from_secs(60)),
            r#"histogram_quantile( 0.99, sum( rate( apisix_http_latency_bucket{ type=~"request", route=~"default_podinfo-podinfo-canary_.+" }[1m] ) ) by (le) )"#
        );
    }

    #[test]
    fn canary_scope_matches_only_the_canary_nodes() {
        let ips = nodes(&["10.244.0.21", "10.244.0.20", "10.244.0.21"]);
        let s = Series::new("test", "podinfo-podinfo-canary", Scope::Canary, &ips).unwrap();
        assert_eq!(
            s.success_rate(Duration::from_secs(30)),
            r#"( sum( rate( apisix_http_status{ route=~"test_podinfo-podinfo-canary_.+", node=~"10\\.244\\.0\\.20|10\\.244\\.0\\.21", code!~"5.." }[30s] ) ) or on() vector(0) ) / sum( rate( apisix_http_status{ route=~"test_podinfo-podinfo-canary_.+", node=~"10\\.244\\.0\\.20|10\\.244\\.0\\.21" }[30s] ) ) * 100"#
        );
        assert_eq!(
            s.request_duration(Duration::from_secs(90)),
            r#"histogram_quantile( 0.99, sum( rate( apisix_http_latency_bucket{ type=~"request", route=~"test_podinfo-podinfo-canary_.+", node=~"10\\.244\\.0\\.20|10\\.244\\.0\\.21" }[1m30s] ) ) by (le) )"#
        );
    }

    #[test]
    fn stable_series_and_request_counts() {
        let stable = Series::of_nodes("test", "podinfo-podinfo-canary", &nodes(&["10.244.0.11", "10.244.0.10"]));
        let stable = stable.unwrap();
        assert_eq!(
            stable.success_rate(Duration::from_secs(60)),
            r#"( sum( rate( apisix_http_status{ route=~"test_podinfo-podinfo-canary_.+", node=~"10\\.244\\.0\\.10|10\\.244\\.0\\.11", code!~"5.." }[1m] ) ) or on() vector(0) ) / sum( rate( apisix_http_status{ route=~"test_podinfo-podinfo-canary_.+", node=~"10\\.244\\.0\\.10|10\\.244\\.0\\.11" }[1m] ) ) * 100"#
        );
        assert_eq!(
            stable.request_duration(Duration::from_secs(10)),
            r#"histogram_quantile( 0.99, sum( rate( apisix_http_latency_bucket{ type=~"request", route=~"test_podinfo-podinfo-canary_.+", node=~"10\\.244\\.0\\.10|10\\.244\\.0\\.11" }[10s] ) ) by (le) )"#
        );
        let canary = Series::of_nodes("test", "podinfo-podinfo-canary", &nodes(&["10.244.0.20"])).unwrap();
        assert_eq!(
            canary.requests(Duration::from_secs(60)),
            r#"sum( increase( apisix_http_status{ route=~"test_podinfo-podinfo-canary_.+", node=~"10\\.244\\.0\\.20" }[1m] ) )"#
        );
        // The canary scope is exactly the series of the canary's nodes.
        let ips = nodes(&["10.244.0.20"]);
        assert_eq!(Series::new("test", "podinfo-podinfo-canary", Scope::Canary, &ips), Some(canary));
        assert_eq!(Series::of_nodes("test", "r", &[]), None);
    }

    #[test]
    fn answering_nodes_groups_by_node() {
        assert_eq!(
            answering_nodes("test", "podinfo-podinfo-canary", Duration::from_secs(42)),
            r#"group by (node) ( increase( apisix_http_status{ route=~"test_podinfo-podinfo-canary_.+" }[42s] ) > 0 )"#
        );
        assert_eq!(
            exported_nodes("test", "podinfo", Duration::from_secs(360)),
            r#"group by (node) ( last_over_time( apisix_http_status{ route=~"test_podinfo_.+" }[6m] ) )"#
        );
    }

    #[test]
    fn node_order_does_not_change_the_query() {
        let a = Series::new("t", "r", Scope::Canary, &nodes(&["10.0.0.2", "10.0.0.1"]));
        let b = Series::new("t", "r", Scope::Canary, &nodes(&["10.0.0.1", "10.0.0.2"]));
        assert_eq!(a, b);
    }

    #[test]
    fn canary_scope_without_nodes_selects_nothing() {
        assert_eq!(Series::new("test", "r", Scope::Canary, &[]), None);
        assert_eq!(Series::new("test", "r", Scope::Canary, &nodes(&[""])), None);
        assert!(Series::new("test", "r", Scope::Route, &[]).is_some());
    }

    #[test]
    fn ipv6_and_dotted_names_are_escaped() {
        let s = Series::new("a.b", "r", Scope::Canary, &nodes(&["fd00::1", "[fd00::2]"])).unwrap();
        let q = s.success_rate(Duration::from_secs(60));
        assert!(q.contains(r#"route=~"a\\.b_r_.+", node=~"\\[fd00::2\\]|fd00::1""#), "{q}");
    }

    #[test]
    fn strings_escape_quotes_and_backslashes() {
        assert_eq!(promql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(regex_escape("1.2+3(x)|y$"), r"1\.2\+3\(x\)\|y\$");
    }

    #[test]
    fn counts_since_a_time_subtract_the_value_then_and_keep_new_and_reset_series() {
        let s = Series::new("test", "podinfo-podinfo-canary", Scope::Canary, &nodes(&["10.0.0.7"])).unwrap();
        let (all, errors) = s.errors_since(1_700_000_000);
        let x = r#"apisix_http_status{ route=~"test_podinfo-podinfo-canary_.+", node=~"10\\.0\\.0\\.7" }"#;
        assert_eq!(all, format!("sum( ( {x} - {x} @ 1700000000 ) >= 0 or ( {x} - 0 ) )"));
        assert!(errors.contains(r#"node=~"10\\.0\\.0\\.7", code=~"5.." } @ 1700000000"#), "{errors}");
        let (total, slow) = s.slow_since(500, 1_700_000_000);
        assert!(
            total.contains(r#"apisix_http_latency_bucket{ type=~"request", route=~"#) && total.contains(r#"le="+Inf""#)
        );
        assert!(slow.starts_with(&format!("{total} - sum(")) && slow.contains(r#"le=~"0*500(\\.0*)?""#), "{slow}");
        assert_eq!(
            [bucket_for(500.0), bucket_for(300.0), bucket_for(0.5), bucket_for(70_000.0)],
            [Some(500), Some(500), Some(1), None]
        );
    }

    #[test]
    fn ranges_use_prometheus_units() {
        let cases = [
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(3661), "1h1m1s"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_micros(10), "1ms"),
        ];
        for (d, want) in cases {
            assert_eq!(range(d), want, "{d:?}");
        }
    }

    #[test]
    fn scope_names_round_trip() {
        for name in Scope::NAMES {
            assert_eq!(Scope::parse(name).map(Scope::as_str), Some(*name));
        }
        assert_eq!(Scope::default(), Scope::Canary);
        assert_eq!(Scope::parse("Route"), None);
    }
}
