//! One batched result, indexed by route, and each release's value read from it: the
//! numbers the release's own PromQL ([`Series`](super::super::query::Series)) gives,
//! with the same "no values" (`None`) cases.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use prometheus_http_query::response::Data;

use super::super::prometheus::QueryError;
use super::super::quantile::{Bucket, bucket_quantile};
use super::super::query::Selection;

/// The series of one batched instant query (`sum by (route, node, <tag>)`), by route.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Table {
    routes: BTreeMap<String, Vec<Row>>,
}

/// One series of a route: its node, its `code` or `le`, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub node: String,
    pub tag: String,
    pub value: f64,
}

impl Table {
    /// The series of an instant vector, `tag` being the label kept besides route and node.
    pub fn from_data(data: &Data, tag: &str) -> Result<Table, QueryError> {
        let series = match data {
            Data::Vector(series) => series,
            Data::Matrix(_) => return Err(QueryError::NotVector("range vector")),
            Data::Scalar(_) => return Err(QueryError::NotVector("scalar")),
        };
        let mut table = Table::default();
        for s in series {
            let label = |name: &str| s.metric().get(name).cloned().unwrap_or_default();
            let row = Row { node: label("node"), tag: label(tag), value: s.sample().value() };
            table.routes.entry(label("route")).or_default().push(row);
        }
        Ok(table)
    }

    /// A table of `(route, node, tag, value)` rows (for tests).
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str, f64)>) -> Table {
        let mut table = Table::default();
        for (route, node, tag, value) in rows {
            let row = Row { node: node.to_owned(), tag: tag.to_owned(), value };
            table.routes.entry(route.to_owned()).or_default().push(row);
        }
        table
    }

    /// How many series the query returned.
    pub fn len(&self) -> usize {
        self.routes.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The rows `selection` matches: its routes (a range of the sorted keys), its nodes.
    pub fn rows<'a>(&'a self, selection: &'a Selection) -> impl Iterator<Item = &'a Row> + 'a {
        let start = Bound::Included(selection.route_prefix.as_str());
        self.routes
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(route, _)| route.starts_with(selection.route_prefix.as_str()))
            .filter(|(route, _)| selection.route(route))
            .flat_map(|(_, rows)| rows.iter())
            .filter(|row| selection.node(&row.node))
    }

    /// `sum(increase(apisix_http_status{...}[window]))` from the rates by code: `None`
    /// without a series (or NaN). A count within 1e-9 of a whole number is that number:
    /// `rate × window` may miss by an ulp what `increase` gives exactly, and
    /// `minRequests` counts whole requests.
    pub fn requests(&self, selection: &Selection, window: Duration) -> Option<f64> {
        let mut rows = self.rows(selection).peekable();
        rows.peek()?;
        let count = rows.map(|r| r.value).sum::<f64>() * window.as_secs_f64();
        let whole = count.round();
        let count = if (count - whole).abs() <= 1e-9 * whole.abs().max(1.0) { whole } else { count };
        (!count.is_nan()).then_some(count)
    }

    /// `(sum(rate(...{code!~"5.."})) or on() vector(0)) / sum(rate(...)) * 100`: 0 when
    /// every series is a 5xx; `None` when the release has no series (no request) or the
    /// ratio is NaN (0/0: series, but no request in the window).
    pub fn success_rate(&self, selection: &Selection) -> Option<f64> {
        let (mut ok, mut all) = (0.0, None::<f64>);
        for row in self.rows(selection) {
            *all.get_or_insert(0.0) += row.value;
            if !is_5xx(&row.tag) {
                ok += row.value;
            }
        }
        let v = ok / all? * 100.0;
        (!v.is_nan()).then_some(v)
    }

    /// `histogram_quantile(q, sum(rate(..._bucket{...})) by (le))`: the rates summed by
    /// `le`, then the quantile over the buckets whose `le` is a number. `None` without a
    /// bucket, or when the quantile is NaN.
    pub fn quantile(&self, q: f64, selection: &Selection) -> Option<f64> {
        let mut by_le: BTreeMap<&str, f64> = BTreeMap::new();
        for row in self.rows(selection) {
            *by_le.entry(row.tag.as_str()).or_default() += row.value;
        }
        let buckets: Vec<Bucket> =
            by_le.into_iter().filter_map(|(le, count)| Some(Bucket { upper_bound: parse_le(le)?, count })).collect();
        if buckets.is_empty() {
            return None;
        }
        let v = bucket_quantile(q, buckets);
        (!v.is_nan()).then_some(v)
    }
}

/// Whether `code` matches `5..`: anchored, three characters, the first a 5.
fn is_5xx(code: &str) -> bool {
    let chars: Vec<char> = code.chars().collect();
    matches!(chars.as_slice(), ['5', a, b] if *a != '\n' && *b != '\n')
}

/// An `le` as Go's `strconv.ParseFloat` reads it, for the values exporters write:
/// numbers and `+Inf`.
fn parse_le(le: &str) -> Option<f64> {
    match le.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => le.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(prefix: &str, nodes: Option<&[&str]>) -> Selection {
        let nodes = nodes.map(|n| n.iter().map(|s| (*s).to_owned()).collect());
        Selection { route_prefix: prefix.to_owned(), nodes }
    }

    #[test]
    fn rows_of_a_route_and_nodes() {
        let t = Table::from_rows([
            ("test_a-canary_rule", "10.0.0.1", "200", 1.0),
            ("test_a-canary_rule", "10.0.0.2", "200", 2.0),
            ("test_a-canary_other", "", "200", 4.0),
            ("test_a-canary_", "10.0.0.1", "200", 8.0),
            ("test_a-canary-x-canary_rule", "10.0.0.1", "200", 16.0),
            ("test_b-canary_rule", "10.0.0.1", "200", 32.0),
        ]);
        let sum = |s: &Selection| t.rows(s).map(|r| r.value).sum::<f64>();
        assert_eq!(sum(&selection("test_a-canary_", None)), 7.0, "every rule, every node, no empty rule");
        assert_eq!(sum(&selection("test_a-canary_", Some(&["10.0.0.1"]))), 1.0);
        assert_eq!(sum(&selection("test_a-canary_", Some(&["10.0.0.1", "10.0.0.2"]))), 3.0);
        assert_eq!(sum(&selection("test_c-canary_", None)), 0.0);
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn requests_and_success_rate() {
        let t = Table::from_rows([
            ("t_r-canary_x", "n1", "200", 0.9),
            ("t_r-canary_x", "n1", "503", 0.1),
            ("t_r-canary_x", "n2", "500", 0.5),
            ("t_r-canary_x", "n3", "200", 0.0),
            ("t_r-canary_x", "n5", "503", 0.0),
            ("t_other-canary_x", "n2", "200", 0.5),
        ]);
        let w = Duration::from_secs(60);
        assert_eq!(t.requests(&selection("t_r-canary_", Some(&["n1"])), w), Some(60.0));
        assert_eq!(t.success_rate(&selection("t_r-canary_", Some(&["n1"]))), Some(90.0));
        // Only 5xx series: requests and no success, 0% (not "no values").
        assert_eq!(t.success_rate(&selection("t_r-canary_", Some(&["n2"]))), Some(0.0));
        assert_eq!(t.requests(&selection("t_r-canary_", Some(&["n2"])), w), Some(30.0));
        // Series without traffic in the window: 0/0, no values.
        assert_eq!(t.success_rate(&selection("t_r-canary_", Some(&["n3"]))), None);
        assert_eq!(t.requests(&selection("t_r-canary_", Some(&["n3"])), w), Some(0.0));
        // 5xx series without traffic in the window: 0/0 too, not 0%.
        assert_eq!(t.success_rate(&selection("t_r-canary_", Some(&["n3", "n5"]))), None);
        // No series at all: no values.
        assert_eq!(t.requests(&selection("t_r-canary_", Some(&["n4"])), w), None);
        assert_eq!(t.success_rate(&selection("t_r-canary_", Some(&["n4"]))), None);
        // Each release its own value: one failing all, the other none.
        let other = selection("t_other-canary_", None);
        assert_eq!(t.success_rate(&other), Some(100.0));
        assert_eq!(t.success_rate(&selection("t_r-canary_", Some(&["n2", "n4"]))), Some(0.0));
        let all = t.success_rate(&selection("t_r-canary_", None)).unwrap();
        assert!((all - 0.9 / 1.5 * 100.0).abs() < 1e-12, "{all}");
    }

    #[test]
    fn codes_are_5xx_by_prometheus_regex() {
        for (code, five) in [("500", true), ("599", true), ("5xx", true), ("200", false), ("50", false)] {
            assert_eq!(is_5xx(code), five, "{code}");
        }
        assert!(!is_5xx("5000") && !is_5xx("") && !is_5xx("404"));
    }

    #[test]
    fn quantile_by_le_over_nodes() {
        let t = Table::from_rows([
            ("t_r-canary_x", "n1", "100", 0.5),
            ("t_r-canary_x", "n1", "200", 1.0),
            ("t_r-canary_x", "n1", "+Inf", 1.0),
            ("t_r-canary_x", "n2", "100", 0.0),
            ("t_r-canary_x", "n2", "200", 1.0),
            ("t_r-canary_x", "n2", "+Inf", 1.0),
            ("t_r-canary_x", "n2", "junk", 9.0),
        ]);
        let p50 = t.quantile(0.5, &selection("t_r-canary_", None)).unwrap();
        assert!((p50 - (100.0 + 100.0 * (0.5 / 1.5))).abs() < 1e-9, "{p50}");
        assert_eq!(t.quantile(0.5, &selection("t_r-canary_", Some(&["n1"]))), Some(100.0));
        assert_eq!(t.quantile(0.5, &selection("t_r-canary_", Some(&["n9"]))), None);
        let idle = Table::from_rows([("t_r-canary_x", "n1", "100", 0.0), ("t_r-canary_x", "n1", "+Inf", 0.0)]);
        assert_eq!(idle.quantile(0.99, &selection("t_r-canary_", None)), None, "no observations: NaN");
    }
}
