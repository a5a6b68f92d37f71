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

pub mod alerts;
pub mod check;
pub mod hooks;
pub mod http;
pub mod prometheus;
pub mod query;
pub mod template;

pub use self::check::{BuiltinMetric, Subject, Verdict};
pub use self::prometheus::{Prometheus, QueryError};
pub use self::query::Scope;

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
    pub scope: Scope,
}

impl Target {
    fn subject(&self) -> Subject<'_> {
        Subject { canary: &self.canary, target: &self.deployment, namespace: &self.namespace }
    }
}

/// Evaluates every built-in metric of `plan`, in order, their queries concurrently.
/// Template metrics are left out: they are not evaluated here.
pub async fn run(plan: &Plan, target: &Target, prometheus: &Prometheus) -> Vec<(String, Verdict)> {
    let metrics: Vec<BuiltinMetric<'_>> = plan.metrics.iter().filter_map(BuiltinMetric::new).collect();
    let series = query::Series::new(&target.namespace, &target.generated_route, target.scope, &target.canary_nodes);
    let who = target.subject();
    let checks = metrics.iter().map(|metric| {
        let series = series.as_ref();
        async move {
            let result = match series {
                // No canary node to match: nothing the canary served can be counted.
                None => Ok(None),
                Some(series) => prometheus.scalar(&render(series, metric)).await,
            };
            (metric.name.to_owned(), check::judge(metric, &who, result.as_ref().copied()))
        }
    });
    futures_util::future::join_all(checks).await
}

/// The PromQL of one built-in metric over `series`.
pub fn render(series: &query::Series, metric: &BuiltinMetric<'_>) -> String {
    match metric.kind {
        check::Builtin::SuccessRate => series.success_rate(metric.interval),
        check::Builtin::Duration => series.request_duration(metric.interval),
    }
}
