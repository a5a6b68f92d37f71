//! The built-in analysis: the plan's `request-success-rate` and `request-duration`
//! read from APISIX's metrics in Prometheus, and judged in Flagger's words.
//!
//! ```text
//!  Plan.metrics ─▶ query::Series ─PromQL─▶ prometheus::Prometheus::scalar ─▶ check::judge
//!  Target (route, canary nodes, scope)      Ok(Some(v)) | Ok(None) | Err        ─▶ Verdict
//! ```
//!
//! By default a metric counts the canary's traffic only (the `node` label restricted to
//! the canary's upstream nodes), unlike Flagger, whose query blends stable and canary
//! traffic on the generated route: a canary at 10% weight failing 5% of its requests
//! passes a 99% check there. [`Scope::Route`] keeps Flagger's query.
//!
//! Beyond Flagger: `compare: baseline` judges the canary against the stable version's
//! series on the same route ([`baseline`]), and `minRequests` holds a metric unjudged
//! ([`Verdict::Wait`]) until the canary has served enough requests to say anything.
//!
//! The values come from each release's own PromQL ([`Source::PerRelease`]), or, in the
//! controller, from one batched query per metric family and window shared by every
//! release ([`Source::Batched`], [`batch`]): the same numbers, far fewer queries.

pub mod alerts;
pub mod baseline;
pub mod batch;
pub mod check;
pub mod hooks;
pub mod http;
pub mod judge;
pub mod prometheus;
pub mod quantile;
pub mod query;
pub mod sequential;
pub mod template;

pub use self::batch::Batcher;
pub use self::check::{BuiltinMetric, Subject, Verdict};
pub use self::prometheus::{Prometheus, QueryError};
pub use self::query::Scope;

use std::time::Duration;

use crate::release::plan::Plan;

/// The release whose traffic is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    /// The Canary's name, which Flagger's "Halt" messages name.
    pub canary: String,
    /// The Deployment released, which the "no values found" messages name.
    pub deployment: String,
    /// The generated ApisixRoute (`<route>-<d>-canary`), whose series hold the traffic.
    pub generated_route: String,
    /// The canary's upstream nodes: its ready pod IPs from its EndpointSlices, or its
    /// Service IP when the route resolves by service.
    pub canary_nodes: Vec<String>,
    /// The stable version's upstream nodes (the ready addresses of the stable Service's
    /// EndpointSlices), for `compare: baseline`; may be empty when no metric compares.
    pub stable_nodes: Vec<String>,
    pub scope: Scope,
}

impl Target {
    fn subject(&self) -> Subject<'_> {
        Subject { canary: &self.canary, target: &self.deployment, namespace: &self.namespace }
    }
}

/// Where the built-in metrics' values come from: each release's own PromQL, or the
/// batched queries of every release ([`batch`]). The same values either way.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    PerRelease(&'a Prometheus),
    Batched(&'a Batcher),
}

impl<'a> From<&'a Prometheus> for Source<'a> {
    fn from(p: &'a Prometheus) -> Self {
        Source::PerRelease(p)
    }
}

impl<'a> From<&'a Batcher> for Source<'a> {
    fn from(b: &'a Batcher) -> Self {
        Source::Batched(b)
    }
}

impl<'a> Source<'a> {
    /// What [`query::Series::requests`] gives over `window`.
    pub async fn requests(self, series: &query::Series, window: Duration) -> Result<Option<f64>, QueryError> {
        match self.per_release(series) {
            Ok(p) => p.scalar(&series.requests(window)).await,
            Err(b) => b.requests(series.selection(), window).await,
        }
    }

    /// What the PromQL of `metric` over `series` ([`render`]) gives.
    pub async fn value(self, series: &query::Series, metric: &BuiltinMetric<'_>) -> Result<Option<f64>, QueryError> {
        let (selection, window) = (series.selection(), metric.interval);
        match (self.per_release(series), metric.kind) {
            (Ok(p), _) => p.scalar(&render(series, metric)).await,
            (Err(b), check::Builtin::SuccessRate) => b.success_rate(selection, window).await,
            (Err(b), check::Builtin::Duration) => b.request_duration(selection, window).await,
        }
    }

    /// The Prometheus to send `series`' own PromQL to, or the batcher. A route that is
    /// not a generated one (`...-canary`) is not in the batched queries: its own query.
    fn per_release(self, series: &query::Series) -> Result<&'a Prometheus, &'a Batcher> {
        match self {
            Source::PerRelease(p) => Ok(p),
            Source::Batched(b) if !series.selection().route_prefix.ends_with("-canary_") => Ok(b.prometheus()),
            Source::Batched(b) => Err(b),
        }
    }
}

/// The Prometheus a release sends its own built-in and inline-query metrics to: its
/// Canary's `metricsServer`, else serve's `--prometheus-url`; `None` when the shared
/// batch (`batched`, which queries serve's Prometheus only) answers them instead.
pub fn own_prometheus<'a>(metrics_server: Option<&'a str>, serve: &'a str, batched: bool) -> Option<&'a str> {
    match metrics_server {
        Some(url) => Some(url),
        None if batched => None,
        None => Some(serve),
    }
}

/// Evaluates every built-in metric of `plan`, in order, their queries concurrently.
/// Template metrics are left out: they are not evaluated here.
pub async fn run<'a>(plan: &Plan, target: &Target, source: impl Into<Source<'a>>) -> Vec<(String, Verdict)> {
    let source = source.into();
    let metrics: Vec<BuiltinMetric<'_>> = plan.metrics.iter().filter_map(BuiltinMetric::new).collect();
    let series = query::Series::new(&target.namespace, &target.generated_route, target.scope, &target.canary_nodes);
    let stable = query::Series::of_nodes(&target.namespace, &target.generated_route, &target.stable_nodes);
    let who = target.subject();
    let checks = metrics.iter().map(|metric| {
        let (series, stable, who) = (series.as_ref(), stable.as_ref(), &who);
        async move {
            let name = metric.name.to_owned();
            let waiting = wait_for_traffic(metric.name, metric.min_requests, metric.interval, target, source);
            if let Some(wait) = waiting.await {
                return (name, wait);
            }
            let measure = |series| measure(source, series, metric);
            let verdict = if metric.baseline.is_some() {
                let (canary, stable) = futures_util::future::join(measure(series), measure(stable)).await;
                baseline::judge(metric, who, canary.as_ref().copied(), stable.as_ref().copied())
            } else {
                check::judge(metric, who, measure(series).await.as_ref().copied())
            };
            (name, verdict)
        }
    });
    futures_util::future::join_all(checks).await
}

/// The value of `metric` over `series`.
async fn measure(
    source: Source<'_>,
    series: Option<&query::Series>,
    metric: &BuiltinMetric<'_>,
) -> Result<Option<f64>, QueryError> {
    match series {
        // No node to match: nothing that version served can be counted.
        None => Ok(None),
        Some(series) => source.value(series, metric).await,
    }
}

/// Whether the canary served `min_requests` on the generated route in `interval` (its
/// nodes, whatever the metric's scope): `None` when it did or no minimum is set; a
/// [`Verdict::Wait`] when not yet, or a halt when the count cannot be read. Template
/// metrics take it too: their series are the same gateway's.
pub async fn wait_for_traffic(
    metric: &str,
    min_requests: u64,
    interval: Duration,
    target: &Target,
    source: Source<'_>,
) -> Option<Verdict> {
    if min_requests == 0 {
        return None;
    }
    let series = query::Series::of_nodes(&target.namespace, &target.generated_route, &target.canary_nodes);
    let count = match series {
        None => None,
        Some(series) => match source.requests(&series, interval).await {
            Ok(count) => count,
            Err(e) => return Some(Verdict::Halt { message: format!("Prometheus query failed: {e}"), value: None }),
        },
    };
    check::wait_for_traffic(metric, min_requests, interval, &target.subject(), count)
}

/// `plan` with no metric window reaching back before the release: each metric's
/// `interval` (a built-in metric's range, a MetricTemplate's `{{ interval }}`, the
/// window of `minRequests`) is cut to the time since its analysis started, whole
/// seconds, at least one. Before that the generated route may carry the previous
/// release's canary traffic, which must not vouch for this one.
pub fn inside_release(plan: &Plan, since_start: Option<Duration>) -> Plan {
    let Some(since) = since_start else { return plan.clone() };
    let since = Duration::from_secs(since.as_secs_f64().ceil().max(1.0) as u64);
    let mut plan = plan.clone();
    for m in &mut plan.metrics {
        m.interval = m.interval.min(since);
    }
    plan
}

pub fn render(series: &query::Series, metric: &BuiltinMetric<'_>) -> String {
    match metric.kind {
        check::Builtin::SuccessRate => series.success_rate(metric.interval),
        check::Builtin::Duration => series.request_duration(metric.interval),
    }
}

/// The ready addresses of `service`'s EndpointSlices: its upstream nodes in APISIX, the
/// `node` label of its series.
pub async fn upstream_nodes(client: &kube::Client, namespace: &str, service: &str) -> Result<Vec<String>, kube::Error> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let list = slices.list(&params).await?;
    Ok(list
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::plan::{Metric, MetricScope, MetricSource, NoData, OptIn};

    #[test]
    fn no_window_reaches_back_before_the_release() {
        let metric = |interval: u64| Metric {
            name: "m".into(),
            source: MetricSource::RequestSuccessRate,
            min: Some(99.0),
            max: None,
            interval: Duration::from_secs(interval),
            scope: MetricScope::Canary,
            on_no_data: NoData::Fail,
            baseline: None,
            min_requests: 0,
        };
        let annotations = [("apisix-canary.dev/route".to_owned(), "podinfo".to_owned())].into();
        let Ok((OptIn::Inline(plan), _)) = Plan::from_annotations("podinfo", &annotations) else { unreachable!() };
        let plan = Plan { metrics: vec![metric(60), metric(10)], ..plan };
        let windows = |since: Option<Duration>| -> Vec<u64> {
            inside_release(&plan, since).metrics.iter().map(|m| m.interval.as_secs()).collect()
        };
        assert_eq!(windows(Some(Duration::from_millis(12_300))), [13, 10], "cut to the release, whole seconds");
        assert_eq!(windows(Some(Duration::from_secs(600))), [60, 10], "a whole window inside: as written");
        assert_eq!(windows(Some(Duration::ZERO)), [1, 1]);
        assert_eq!(windows(None), [60, 10], "no analysis yet: nothing to cut");
    }
}
