//! Metrics from a `MetricTemplate`: the query rendered with the release's variables,
//! sent to the template's Prometheus, the value judged against the metric's
//! `thresholdRange`, in Flagger's words (`Halt podinfo.test advancement 404s
//! percentage 12.00 > 5`).

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

mod provider;

pub use self::provider::{AUTHORIZATION_CONFLICT, ProviderError, options};
use super::check::Verdict;
use super::http;
use super::prometheus::{Prometheus, QueryError};
use super::query::{range, regex_escape};
use crate::api::metric_template::{self, MetricTemplateSpec};
use crate::release::plan::Metric;

/// What a template's `{{ ... }}` can say about the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    pub namespace: String,
    /// The Canary.
    pub name: String,
    /// The Deployment released.
    pub target: String,
    pub service: String,
    /// The generated ApisixRoute, whose series carry the canary's traffic.
    pub route: String,
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
            "service" => self.service.clone(),
            "route" => self.route.clone(),
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

/// Judges what the query gave: empty or NaN is "no values found", a failed check
/// unless the metric passes without data (`onNoData: pass`).
pub fn judge(metric: &Metric, canary: &str, namespace: &str, result: Result<Option<f64>, &QueryError>) -> Verdict {
    let name = &metric.name;
    let value = match result {
        Err(e) => return Verdict::Halt { message: format!("Metric query failed for {name}: {e}"), value: None },
        Ok(None) => {
            let message = format!("Halt advancement no values found for custom metric: {name}");
            return super::check::no_data(metric.on_no_data, message, None);
        }
        Ok(Some(v)) => v,
    };
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
    judge(metric, &vars.name, &vars.namespace, result.as_ref().copied())
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
            route: "podinfo-podinfo-canary".into(),
            canary_nodes: vec!["10.244.0.9".into(), "10.244.0.8".into()],
        }
    }

    #[test]
    fn renders_the_scenarios_404_query() {
        let spec = MetricTemplateSpec {
            query: r#"sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}_.+",node=~"{{ canary_nodes }}",code=~"4.."}[{{ interval }}])) / sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}_.+"}[{{ interval }}])) * {{ variables.scale }}"#.into(),
            ..MetricTemplateSpec::default()
        };
        let variables = BTreeMap::from([("scale".to_owned(), "100".to_owned())]);
        let q = render(&spec, &metric(None, Some(5.0)), &variables, &vars()).unwrap();
        assert_eq!(
            q,
            r#"sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+",node=~"10\\.244\\.0\\.8|10\\.244\\.0\\.9",code=~"4.."}[1m])) / sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+"}[1m])) * 100"#
        );
    }

    #[test]
    fn judges_in_flaggers_words() {
        let m = metric(None, Some(5.0));
        assert_eq!(judge(&m, "podinfo", "test", Ok(Some(3.0))), Verdict::Pass { value: Some(3.0) });
        assert_eq!(
            judge(&m, "podinfo", "test", Ok(Some(12.0))),
            Verdict::Halt {
                message: "Halt podinfo.test advancement 404s percentage 12.00 > 5".into(),
                value: Some(12.0)
            }
        );
        let m = metric(Some(90.0), None);
        assert_eq!(
            judge(&m, "podinfo", "test", Ok(Some(50.5))),
            Verdict::Halt {
                message: "Halt podinfo.test advancement 404s percentage 50.50 < 90".into(),
                value: Some(50.5)
            }
        );
        assert_eq!(
            judge(&m, "podinfo", "test", Ok(None)),
            Verdict::Halt {
                message: "Halt advancement no values found for custom metric: 404s percentage".into(),
                value: None
            }
        );
    }

    #[test]
    fn no_values_pass_only_when_asked() {
        let m = Metric { on_no_data: NoData::Pass, ..metric(Some(90.0), None) };
        assert_eq!(judge(&m, "podinfo", "test", Ok(None)), Verdict::Pass { value: None });
        // A value out of bounds, or a failed query, still halts.
        assert!(!judge(&m, "podinfo", "test", Ok(Some(50.0))).passed());
        let e = QueryError::ManySeries(2);
        assert_eq!(
            judge(&m, "podinfo", "test", Err(&e)),
            Verdict::Halt {
                message: "Metric query failed for 404s percentage: query returned 2 series, not one".into(),
                value: None
            }
        );
    }
}
