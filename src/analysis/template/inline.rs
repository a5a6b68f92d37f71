//! Flagger's inline metric `query`: PromQL written in the Canary itself, rendered with a
//! MetricTemplate's variables and sent to the release's Prometheus (its
//! `metricsServer`, else serve's `--prometheus-url`), judged in Flagger's words for it
//! ("Halt advancement no values found for metric: NAME", with the query it was for;
//! "Prometheus query failed for NAME: ...").

use std::collections::BTreeMap;

use super::{Vars, one_line, within_bounds};
use crate::analysis::check::{Verdict, no_data};
use crate::analysis::prometheus::{Prometheus, QueryError};
use crate::api::metric_template::{self, TemplateError};
use crate::release::plan::Metric;

/// `query` for `metric`, every variable replaced.
pub fn render_query(
    query: &str,
    metric: &Metric,
    variables: &BTreeMap<String, String>,
    vars: &Vars,
) -> Result<String, TemplateError> {
    metric_template::render(query, |name| vars.value(metric, variables, name))
}

/// Judges what an inline `query` (as rendered and sent) gave, as Flagger's scheduler
/// does for one: its own words for an empty result (with the query it was for, as for
/// a template) and a failed query, a template's for the bounds.
pub fn judge_query(
    metric: &Metric,
    canary: &str,
    namespace: &str,
    query: &str,
    result: Result<Option<f64>, &QueryError>,
) -> Verdict {
    let name = &metric.name;
    match result {
        Err(e) => Verdict::Halt { message: format!("Prometheus query failed for {name}: {e}"), value: None },
        Ok(None) => {
            let message = format!(
                "Halt advancement no values found for metric: {name}: no values found for query: {}",
                one_line(query)
            );
            no_data(metric.on_no_data, message, None)
        }
        Ok(Some(v)) => within_bounds(metric, canary, namespace, v),
    }
}

/// Renders, queries and judges one inline-query metric on `prometheus`.
pub async fn evaluate_query(
    query: &str,
    metric: &Metric,
    variables: &BTreeMap<String, String>,
    vars: &Vars,
    prometheus: &Prometheus,
) -> Verdict {
    let query = match render_query(query, metric, variables, vars) {
        Ok(q) => q,
        Err(e) => {
            let message = format!("Metric query render error for {}: {e}", metric.name);
            return Verdict::Halt { message, value: None };
        }
    };
    let result = prometheus.scalar(&query).await;
    judge_query(metric, &vars.name, &vars.namespace, &query, result.as_ref().copied())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::release::plan::{MetricScope, MetricSource, NoData};

    /// The tutorial's 404 share, written inline with a custom variable.
    const QUERY: &str = r#"sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+",code=~"{{ variables.codes }}"}[{{ interval }}])) / sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+"}[{{ interval }}])) * 100"#;

    fn metric(max: Option<f64>) -> Metric {
        Metric {
            name: "404s percentage".into(),
            source: MetricSource::Query { query: QUERY.into(), variables: BTreeMap::new() },
            min: None,
            max,
            interval: Duration::from_secs(30),
            scope: MetricScope::Canary,
            on_no_data: NoData::Fail,
            baseline: None,
            min_requests: 0,
        }
    }

    fn vars(ingress: Option<&str>) -> Vars {
        Vars {
            namespace: "test".into(),
            name: "podinfo".into(),
            target: "podinfo".into(),
            service: "podinfo".into(),
            ingress: ingress.map(str::to_owned),
            route: "podinfo".into(),
            generated_route: "podinfo-podinfo-canary".into(),
            canary_nodes: vec!["10.244.0.8".into()],
        }
    }

    #[test]
    fn an_inline_query_takes_the_templates_variables() {
        let variables = BTreeMap::from([("codes".to_owned(), "4..".to_owned())]);
        let q = render_query(QUERY, &metric(Some(5.0)), &variables, &vars(None)).unwrap();
        assert_eq!(
            q,
            r#"sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+",code=~"4.."}[30s])) / sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+"}[30s])) * 100"#
        );
        let missing = render_query(QUERY, &metric(Some(5.0)), &BTreeMap::new(), &vars(None));
        assert_eq!(missing, Err(TemplateError::Unknown("variables.codes".into())));
    }

    #[test]
    fn ingress_is_the_ingress_ref_else_the_target() {
        let m = metric(None);
        let render = |v: &Vars| render_query("{{ ingress }}/{{ target }}", &m, &BTreeMap::new(), v).unwrap();
        assert_eq!(render(&vars(None)), "podinfo/podinfo", "Flagger's default: the target's name");
        assert_eq!(render(&vars(Some("podinfo-public"))), "podinfo-public/podinfo");
    }

    /// What [`QUERY`] renders to with `codes: 4..`.
    const RENDERED: &str = r#"sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+",code=~"4.."}[30s])) / sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+"}[30s])) * 100"#;

    #[test]
    fn an_inline_query_is_judged_in_flaggers_words() {
        let m = metric(Some(5.0));
        let judge = |m: &Metric, result| judge_query(m, "podinfo", "test", RENDERED, result);
        assert_eq!(judge(&m, Ok(Some(2.0))), Verdict::Pass { value: Some(2.0) });
        assert_eq!(
            judge(&m, Ok(Some(7.5))),
            Verdict::Halt {
                message: "Halt podinfo.test advancement 404s percentage 7.50 > 5".into(),
                value: Some(7.5)
            }
        );
        assert_eq!(
            judge(&m, Ok(None)),
            Verdict::Halt {
                message: format!(
                    "Halt advancement no values found for metric: 404s percentage: no values found for query: \
                     {RENDERED}"
                ),
                value: None
            }
        );
        assert_eq!(
            judge(&m, Err(&QueryError::ManySeries(3))),
            Verdict::Halt {
                message: "Prometheus query failed for 404s percentage: query returned 3 series, not one".into(),
                value: None
            }
        );
        let pass = Metric { on_no_data: NoData::Pass, ..m };
        assert_eq!(judge(&pass, Ok(None)), Verdict::Pass { value: None });
    }

    #[test]
    fn a_metrics_server_takes_the_release_off_the_shared_batch() {
        use crate::analysis::own_prometheus;
        let serve = "http://prometheus-server.apisix:9090";
        let own = Some("http://prometheus.monitoring:9090");
        assert_eq!(own_prometheus(own, serve, true), own, "its own Prometheus, which the batch never asks");
        assert_eq!(own_prometheus(own, serve, false), own);
        assert_eq!(own_prometheus(None, serve, true), None, "the batch answers");
        assert_eq!(own_prometheus(None, serve, false), Some(serve));
    }

    #[tokio::test]
    async fn an_inline_query_is_sent_rendered_to_the_releases_prometheus() {
        use crate::analysis::http::recorder::{Received, Reply, Server};
        let answer = |value: Option<&str>| {
            let result =
                value.map_or(serde_json::json!([]), |v| serde_json::json!([{"metric": {}, "value": [1.7e9, v]}]));
            serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}})
        };
        let (high, empty) = (answer(Some("7.5")), answer(None));
        let server =
            Server::start(move |n: usize, _: &Received| Reply::json(200, if n == 1 { &high } else { &empty })).await;
        let prometheus = Prometheus::new(&server.url(""), Duration::from_secs(5)).unwrap();
        let variables = BTreeMap::from([("codes".to_owned(), "4..".to_owned())]);
        let m = metric(Some(5.0));
        let verdict = evaluate_query(QUERY, &m, &variables, &vars(None), &prometheus).await;
        assert_eq!(
            verdict,
            Verdict::Halt {
                message: "Halt podinfo.test advancement 404s percentage 7.50 > 5".into(),
                value: Some(7.5)
            }
        );
        let verdict = evaluate_query(QUERY, &m, &variables, &vars(None), &prometheus).await;
        let message = format!(
            "Halt advancement no values found for metric: 404s percentage: no values found for query: {RENDERED}"
        );
        assert_eq!(verdict, Verdict::Halt { message, value: None });
        let got = server.received();
        assert!(got[0].path.starts_with("/api/v1/query"), "{}", got[0].path);
        let sent = format!("{}{}", got[0].path, String::from_utf8_lossy(&got[0].body));
        assert!(sent.contains("test_podinfo-podinfo-canary_") && sent.contains("30s"), "rendered: {sent}");
    }
}
