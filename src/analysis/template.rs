//! Metrics from a `MetricTemplate`: the query rendered with the release's variables,
//! sent to the template's Prometheus, the value judged against the metric's
//! `thresholdRange`, in Flagger's words (`Halt podinfo.test advancement 404s
//! percentage 12.00 > 5`).

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

mod inline;
mod provider;

pub use self::inline::{evaluate_query, judge_query, render_query};
pub use self::provider::{AUTHORIZATION_CONFLICT, ProviderError, custom_headers, options};
use super::check::Verdict;
use super::http;
use super::prometheus::{Prometheus, QueryError};
use super::query::{range, regex_escape};
use crate::api::metric_template::{self, MetricTemplateSpec};
use crate::release::plan::Metric;

/// What a template's `{{ ... }}` can say about the release: Flagger's variables in
/// Flagger's meaning, and ours under names Flagger does not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    pub namespace: String,
    /// `{{ name }}`: the Canary's name.
    pub name: String,
    /// `{{ target }}`: the targetRef's name, the Deployment released. Also Flagger's
    /// `{{ ingress }}` without an ingressRef.
    pub target: String,
    /// `{{ ingress }}`: the ingressRef's name, when the Canary has one.
    pub ingress: Option<String>,
    /// `{{ service }}`: `spec.service.name`, or the target's name.
    pub service: String,
    /// `{{ route }}`: the routeRef's name, the user's ApisixRoute (so Flagger's
    /// `{{ route }}-{{ target }}-canary` names the generated route).
    pub route: String,
    /// `{{ generated_route }}`: the generated ApisixRoute, `<route>-<target>-canary`,
    /// whose series carry the release's traffic.
    pub generated_route: String,
    /// The canary's upstream nodes, for `node=~"{{ canary_nodes }}"` (an escaped
    /// alternation, ready to stand inside a double-quoted PromQL string).
    pub canary_nodes: Vec<String>,
}

impl Vars {
    /// The value of one variable for `metric`.
    fn value(&self, metric: &Metric, variables: &BTreeMap<String, String>, name: &str) -> Option<String> {
        Some(match name {
            "namespace" => self.namespace.clone(),
            "name" => self.name.clone(),
            "target" => self.target.clone(),
            "ingress" => self.ingress.clone().unwrap_or_else(|| self.target.clone()),
            "service" => self.service.clone(),
            "route" => self.route.clone(),
            "generated_route" => self.generated_route.clone(),
            "interval" => range(metric.interval),
            "canary_nodes" => {
                let mut nodes: Vec<String> = self.canary_nodes.iter().map(|n| regex_escape(n)).collect();
                nodes.sort();
                nodes.dedup();
                // Inside the template's double-quoted PromQL string: `\` doubled.
                nodes.join("|").replace('\\', "\\\\")
            }
            other => variables.get(other.strip_prefix("variables.")?)?.clone(),
        })
    }
}

/// The query of `spec` for `metric`, every variable replaced.
pub fn render(
    spec: &MetricTemplateSpec,
    metric: &Metric,
    variables: &BTreeMap<String, String>,
    vars: &Vars,
) -> Result<String, metric_template::TemplateError> {
    metric_template::render(&spec.query, |name| vars.value(metric, variables, name))
}

/// Judges what `query` (as rendered and sent) gave: empty or NaN is "no values found",
/// a failed check unless the metric passes without data (`onNoData: pass`). Its
/// message is Flagger's (`... custom metric: NAME: no values found`) with the query
/// it was for, so the user sees which series were missing.
pub fn judge(
    metric: &Metric,
    canary: &str,
    namespace: &str,
    query: &str,
    result: Result<Option<f64>, &QueryError>,
) -> Verdict {
    let name = &metric.name;
    let value = match result {
        Err(e) => return Verdict::Halt { message: format!("Metric query failed for {name}: {e}"), value: None },
        Ok(None) => {
            let message = format!(
                "Halt advancement no values found for custom metric: {name}: no values found for query: {}",
                one_line(query)
            );
            return super::check::no_data(metric.on_no_data, message, None);
        }
        Ok(Some(v)) => v,
    };
    within_bounds(metric, canary, namespace, value)
}

/// A query as one line of an Event: each line's indentation and the line breaks of a
/// YAML block (`query: |`) become single spaces.
fn one_line(query: &str) -> String {
    query.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Judges a value against the metric's `thresholdRange`, in Flagger's words.
fn within_bounds(metric: &Metric, canary: &str, namespace: &str, value: f64) -> Verdict {
    let name = &metric.name;
    let out = match (metric.min, metric.max) {
        (Some(min), _) if value < min => Some(format!("< {min}")),
        (_, Some(max)) if value > max => Some(format!("> {max}")),
        _ => None,
    };
    match out {
        Some(bound) => {
            let message = format!("Halt {canary}.{namespace} advancement {name} {value:.2} {bound}");
            Verdict::Halt { message, value: Some(value) }
        }
        None => Verdict::Pass { value: Some(value) },
    }
}

/// Renders, queries and judges one template metric; the client talks as `client` says
/// (see [`options`]), its query counted in `queries`.
pub async fn evaluate(
    spec: &MetricTemplateSpec,
    metric: &Metric,
    variables: &BTreeMap<String, String>,
    vars: &Vars,
    timeout: Duration,
    client: &http::Options<'_>,
    queries: Option<Counter>,
) -> Verdict {
    let halt = |message: String| Verdict::Halt { message, value: None };
    let query = match render(spec, metric, variables, vars) {
        Ok(q) => q,
        Err(e) => return halt(format!("Metric template query render error for {}: {e}", metric.name)),
    };
    let Some(address) = spec.provider.address.as_deref() else {
        return halt(format!("Metric query failed for {}: the template names no Prometheus address", metric.name));
    };
    let prometheus = match Prometheus::with(address, timeout, client) {
        Ok(p) => match queries {
            Some(queries) => p.counted(queries),
            None => p,
        },
        // Its words name --prometheus-url, which is not what is wrong here.
        Err(QueryError::Url { url, reason }) => {
            return halt(format!(
                "Metric query failed for {}: invalid provider address {url:?}: {reason}",
                metric.name
            ));
        }
        Err(e) => return halt(format!("Metric query failed for {}: {e}", metric.name)),
    };
    let result = prometheus.scalar(&query).await;
    judge(metric, &vars.name, &vars.namespace, &query, result.as_ref().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::plan::{MetricScope, MetricSource, NoData};

    fn metric(min: Option<f64>, max: Option<f64>) -> Metric {
        Metric {
            name: "404s percentage".into(),
            source: MetricSource::Template {
                name: "not-found-percentage".into(),
                namespace: None,
                variables: BTreeMap::new(),
            },
            min,
            max,
            interval: Duration::from_secs(60),
            scope: MetricScope::Canary,
            on_no_data: NoData::Fail,
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
            canary_nodes: vec!["10.244.0.9".into(), "10.244.0.8".into()],
        }
    }

    fn spec(query: &str) -> MetricTemplateSpec {
        MetricTemplateSpec { query: query.into(), ..MetricTemplateSpec::default() }
    }

    /// The article's `not-found-percentage`, its `code!~"4.."` fixed.
    const ARTICLE: &str = r#"sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+",code=~"4.."}[{{ interval }}])) / sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+"}[{{ interval }}])) * 100"#;

    #[test]
    fn the_articles_template_names_the_generated_route_as_in_flagger() {
        let q = render(&spec(ARTICLE), &metric(None, Some(5.0)), &BTreeMap::new(), &vars()).unwrap();
        assert_eq!(
            q,
            r#"sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+",code=~"4.."}[1m])) / sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+"}[1m])) * 100"#
        );
    }

    #[test]
    fn each_variable_means_what_it_means_in_flagger() {
        // A Canary `checkout` of the Deployment `web.v2`, behind the route `shop` and the
        // Service `web-svc`: no variable is read back from another.
        let vars = Vars {
            namespace: "prod".into(),
            name: "checkout".into(),
            target: "web.v2".into(),
            service: "web-svc".into(),
            ingress: None,
            route: "shop".into(),
            generated_route: "shop-web.v2-canary".into(),
            canary_nodes: vec!["10.0.0.1".into()],
        };
        let q = "{{ name }} {{ namespace }} {{ target }} {{ service }} {{ route }} {{ ingress }} {{ interval }} \
                 {{ generated_route }} {{ canary_nodes }} {{ variables.team }}";
        let variables = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
        let metric = Metric { interval: Duration::from_secs(30), ..metric(None, Some(5.0)) };
        assert_eq!(
            render(&spec(q), &metric, &variables, &vars).unwrap(),
            r"checkout prod web.v2 web-svc shop web.v2 30s shop-web.v2-canary 10\\.0\\.0\\.1 payments"
        );
        // Flagger's route shape names the generated route here too.
        let q = render(&spec(ARTICLE), &metric, &BTreeMap::new(), &vars).unwrap();
        assert!(q.contains(r#"route=~"prod_shop-web.v2-canary_.+""#), "{q}");
    }

    #[test]
    fn renders_our_own_variables() {
        let spec = spec(
            r#"sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ generated_route }}_.+",node=~"{{ canary_nodes }}",code=~"4.."}[{{ interval }}])) / sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ generated_route }}_.+"}[{{ interval }}])) * {{ variables.scale }}"#,
        );
        let variables = BTreeMap::from([("scale".to_owned(), "100".to_owned())]);
        let q = render(&spec, &metric(None, Some(5.0)), &variables, &vars()).unwrap();
        assert_eq!(
            q,
            r#"sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+",node=~"10\\.244\\.0\\.8|10\\.244\\.0\\.9",code=~"4.."}[1m])) / sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+"}[1m])) * 100"#
        );
    }

    /// What the article's template renders to for [`metric`] and [`vars`].
    const RENDERED: &str = r#"sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+",code=~"4.."}[1m])) / sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+"}[1m])) * 100"#;

    #[test]
    fn judges_in_flaggers_words() {
        let m = metric(None, Some(5.0));
        let judge = |m: &Metric, result| judge(m, "podinfo", "test", RENDERED, result);
        assert_eq!(judge(&m, Ok(Some(3.0))), Verdict::Pass { value: Some(3.0) });
        assert_eq!(
            judge(&m, Ok(Some(12.0))),
            Verdict::Halt {
                message: "Halt podinfo.test advancement 404s percentage 12.00 > 5".into(),
                value: Some(12.0)
            }
        );
        let m = metric(Some(90.0), None);
        assert_eq!(
            judge(&m, Ok(Some(50.5))),
            Verdict::Halt {
                message: "Halt podinfo.test advancement 404s percentage 50.50 < 90".into(),
                value: Some(50.5)
            }
        );
        // Flagger's "...: NAME: no values found", and the query that found none.
        assert_eq!(
            judge(&m, Ok(None)),
            Verdict::Halt {
                message: format!(
                    "Halt advancement no values found for custom metric: 404s percentage: no values found for \
                     query: {RENDERED}"
                ),
                value: None
            }
        );
    }

    #[test]
    fn a_query_written_over_lines_is_shown_on_one() {
        let query = "  sum(rate(a{code=~\"4..\"}[1m]))\n\n      / sum(rate(a[1m])) * 100\n";
        assert_eq!(one_line(query), r#"sum(rate(a{code=~"4.."}[1m])) / sum(rate(a[1m])) * 100"#);
        let Verdict::Halt { message, .. } = judge(&metric(None, Some(5.0)), "podinfo", "test", query, Ok(None)) else {
            panic!("no values must halt");
        };
        assert!(message.ends_with(r#"query: sum(rate(a{code=~"4.."}[1m])) / sum(rate(a[1m])) * 100"#), "{message}");
        assert_eq!(one_line("vector(1)"), "vector(1)");
    }

    #[test]
    fn no_values_pass_only_when_asked() {
        let m = Metric { on_no_data: NoData::Pass, ..metric(Some(90.0), None) };
        let judge = |m: &Metric, result| judge(m, "podinfo", "test", RENDERED, result);
        assert_eq!(judge(&m, Ok(None)), Verdict::Pass { value: None });
        // A value out of bounds, or a failed query, still halts.
        assert!(!judge(&m, Ok(Some(50.0))).passed());
        let e = QueryError::ManySeries(2);
        assert_eq!(
            judge(&m, Err(&e)),
            Verdict::Halt {
                message: "Metric query failed for 404s percentage: query returned 2 series, not one".into(),
                value: None
            }
        );
    }

    #[tokio::test]
    async fn a_template_that_finds_no_values_says_the_query_it_sent() {
        use crate::analysis::http::recorder::{Received, Reply, Server};
        let empty = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}});
        let server = Server::start(move |_: usize, _: &Received| Reply::json(200, &empty)).await;
        let mut spec = spec(ARTICLE);
        spec.provider.address = Some(server.url(""));
        let m = metric(None, Some(5.0));
        let verdict =
            evaluate(&spec, &m, &BTreeMap::new(), &vars(), Duration::from_secs(5), &http::Options::default(), None)
                .await;
        let message = format!(
            "Halt advancement no values found for custom metric: 404s percentage: no values found for query: {RENDERED}"
        );
        assert_eq!(verdict, Verdict::Halt { message, value: None });
        // What the message shows is what was sent: the rendered query, not the template.
        let got = server.received();
        assert_eq!(got.len(), 1);
        let sent = format!("{}&{}", got[0].path, String::from_utf8_lossy(&got[0].body));
        let sent: Vec<(String, String)> = sent
            .split(['?', '&'])
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let query = sent.iter().find(|(k, _)| k == "query").map(|(_, v)| v.replace('+', " "));
        let query = query.map(|q| percent_decode(&q));
        assert_eq!(query.as_deref(), Some(RENDERED), "{sent:?}");
    }

    /// `%XX` escapes decoded (form encoding, `+` already made a space).
    fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
}
