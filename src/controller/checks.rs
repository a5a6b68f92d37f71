//! The analysis of one interval, as the executor runs it: the canary's (and, for a
//! baseline, the stable's) upstream nodes from their EndpointSlices, the built-in
//! metrics on APISIX's series, then the MetricTemplates with their providers' settings.

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::Api;

use super::observe::Objects;
use super::{Context, metrics};
use crate::analysis::prometheus::{Prometheus, QUERY_TIMEOUT};
use crate::analysis::query::Series;
use crate::analysis::{
    Scope, Source, Verdict, http, judge, own_prometheus, template, upstream_nodes, wait_for_traffic,
};
use crate::api::metric_template::MetricTemplate;
use crate::release::copies;
use crate::release::lifecycle::{Check, Observed, SEQUENTIAL_EVERY, Tested};
use crate::release::plan::{Judge, MetricScope, MetricSource, Plan};
use crate::route;

/// The analysis of this interval: every metric of the plan on the canary's traffic.
pub(super) async fn checks(plan: &Plan, o: &Observed, objects: &Objects, ctx: &Context) -> Vec<Check> {
    // No window reaches back before this release's first traffic (its analysis start).
    let since_start = o.status.started.map(|t| Timestamp::now().duration_since(t).unsigned_abs());
    let plan = &crate::analysis::inside_release(plan, since_start);
    let failed =
        |metric: &str, halt: String| vec![Check { metric: metric.into(), value: None, halt: Some(halt), wait: None }];
    let (client, ns) = (&ctx.client, &objects.namespace);
    let canary_service = copies::canary_service_name(&objects.service_name);
    // The stable's nodes only when a metric compares with it: one list call fewer. Both
    // lists at once.
    let baseline = plan.metrics.iter().any(|m| m.baseline.is_some());
    let (nodes, stable_nodes) = tokio::join!(
        async {
            match &objects.canary_nodes {
                _ if plan.sticky.is_some() => service_node(client, ns, &canary_service).await,
                Some(listed) => listed.clone(),
                None => upstream_nodes(client, ns, &canary_service).await.map_err(|e| e.to_string()),
            }
        },
        async {
            match (baseline, plan.sticky.is_some()) {
                (false, _) => Ok(Vec::new()),
                (true, true) => service_node(client, ns, &objects.service_name).await,
                (true, false) => upstream_nodes(client, ns, &objects.service_name).await.map_err(|e| e.to_string()),
            }
        }
    );
    let nodes = match nodes {
        Ok(nodes) => nodes,
        Err(e) => {
            return failed("endpoints", format!("Halt {} advancement: cannot read the canary's endpoints: {e}", o.id));
        }
    };
    let stable_nodes = match stable_nodes {
        Ok(nodes) => nodes,
        Err(e) => {
            return failed("endpoints", format!("Halt {} advancement: cannot read the stable's endpoints: {e}", o.id));
        }
    };
    // Each release's own queries only without the batcher, or with its own Prometheus
    // (`spec.metricsServer`), which the batcher does not query.
    let own;
    let url = own_prometheus(plan.metrics_server.as_deref(), &ctx.config.prometheus_url, ctx.batcher.is_some());
    let source = match (&ctx.batcher, url) {
        (Some(batcher), None) => Source::Batched(batcher),
        (_, url) => {
            let client = http::Options { resolver: Some(&ctx.config.resolver), ..http::Options::default() };
            let url = url.unwrap_or(&ctx.config.prometheus_url);
            own = match Prometheus::with(url, QUERY_TIMEOUT, &client) {
                Ok(p) => p.counted(ctx.metrics.prometheus_queries(metrics::BUILTIN)),
                Err(e) => return failed("prometheus", format!("Prometheus query failed: {e}")),
            };
            Source::PerRelease(&own)
        }
    };
    let target = crate::analysis::Target {
        namespace: objects.namespace.clone(),
        canary: o.id.canary.clone(),
        deployment: o.id.target.clone(),
        generated_route: route::generated_name(&plan.route, &plan.target),
        canary_nodes: nodes.clone(),
        stable_nodes,
        scope: Scope::Canary,
    };
    // One run per scope, each over the plan's metrics of that scope, in plan order.
    let mut verdicts = Vec::new();
    for (scope, analysis_scope) in [(MetricScope::Canary, Scope::Canary), (MetricScope::Route, Scope::Route)] {
        let metrics: Vec<_> = plan.metrics.iter().filter(|m| m.scope == scope).cloned().collect();
        if metrics.is_empty() {
            continue;
        }
        let scoped = Plan { metrics, ..plan.clone() };
        let target = crate::analysis::Target { scope: analysis_scope, ..target.clone() };
        verdicts.extend(crate::analysis::run(&scoped, &target, source).await);
    }
    // Then the MetricTemplates, as Flagger runs them: after the built-in metrics.
    // Flagger's meaning of each variable (its `toMetricModel`), ours beside them.
    let vars = template::Vars {
        namespace: objects.namespace.clone(),
        name: o.id.canary.clone(),
        target: o.id.target.clone(),
        service: objects.service_name.clone(),
        ingress: plan.ingress.clone(),
        route: plan.route.clone(),
        generated_route: target.generated_route.clone(),
        canary_nodes: nodes,
    };
    // Inline queries first, as Flagger runs them with the built-in metrics, on the same
    // Prometheus.
    let prometheus = match source {
        Source::PerRelease(p) => p,
        Source::Batched(b) => b.prometheus(),
    };
    for metric in &plan.metrics {
        let MetricSource::Query { query, variables } = &metric.source else { continue };
        let waiting = wait_for_traffic(&metric.name, metric.min_requests, metric.interval, &target, source);
        let verdict = match waiting.await {
            Some(wait) => wait,
            None => template::evaluate_query(query, metric, variables, &vars, prometheus).await,
        };
        verdicts.push((metric.name.clone(), verdict));
    }
    for metric in &plan.metrics {
        let MetricSource::Template { name, namespace, variables } = &metric.source else { continue };
        let waiting = wait_for_traffic(&metric.name, metric.min_requests, metric.interval, &target, source);
        if let Some(wait) = waiting.await {
            verdicts.push((metric.name.clone(), wait));
            continue;
        }
        let ns = namespace.clone().unwrap_or_else(|| objects.namespace.clone());
        let templates: Api<MetricTemplate> = Api::namespaced(ctx.client.clone(), &ns);
        let verdict = match templates.get_opt(name).await {
            Ok(Some(t)) => {
                let run = TemplateRun { name, namespace: &ns, metric, variables, vars: &vars };
                run.evaluate(&t.spec, ctx).await
            }
            Ok(None) => Verdict::Halt { message: format!("Metric template {name}.{ns} error: not found"), value: None },
            Err(e) => Verdict::Halt { message: format!("Metric template {name}.{ns} error: {e}"), value: None },
        };
        verdicts.push((metric.name.clone(), verdict));
    }
    verdicts
        .into_iter()
        .map(|(metric, verdict)| {
            let (value, halt, wait) = match verdict {
                Verdict::Pass { value } => (value, None, None),
                Verdict::Halt { message, value } => (value, Some(message), None),
                Verdict::Wait { message } => (None, None, Some(message)),
            };
            ctx.metrics.observe_metric(&o.id, &metric, value);
            Check { metric, value, halt, wait }
        })
        .collect()
}

/// The `node` of a Service that APISIX resolves by Service (a sticky release's
/// `resolveGranularity: service`): its ClusterIP.
async fn service_node(client: &kube::Client, ns: &str, service: &str) -> Result<Vec<String>, String> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = services.get(service).await.map_err(|e| e.to_string())?;
    let ip = svc.spec.and_then(|s| s.cluster_ip).filter(|ip| !ip.is_empty() && ip != "None");
    Ok(ip.into_iter().collect())
}

/// The sequential test of the plan's built-in metrics on the canary's requests since
/// its analysis started (`judge: sequential`). A test that cannot be read (endpoints,
/// Prometheus) says nothing: the interval's checks report such failures.
pub(super) async fn sequential(plan: &Plan, o: &Observed, objects: &Objects, ctx: &Context) -> Vec<Tested> {
    let (Judge::Sequential { confidence }, Some(started)) = (plan.judge, o.status.started) else { return Vec::new() };
    let canary_service = copies::canary_service_name(&objects.service_name);
    let nodes = match &objects.canary_nodes {
        _ if plan.sticky.is_some() => service_node(&ctx.client, &objects.namespace, &canary_service).await,
        Some(listed) => listed.clone(),
        None => upstream_nodes(&ctx.client, &objects.namespace, &canary_service).await.map_err(|e| e.to_string()),
    };
    let generated = route::generated_name(&plan.route, &plan.target);
    let Some(series) = nodes.ok().and_then(|n| Series::new(&objects.namespace, &generated, Scope::Canary, &n)) else {
        return Vec::new();
    };
    let url = plan.metrics_server.as_deref().unwrap_or(&ctx.config.prometheus_url);
    let client = http::Options { resolver: Some(&ctx.config.resolver), ..http::Options::default() };
    let prometheus = match Prometheus::with(url, QUERY_TIMEOUT, &client) {
        Ok(p) => p.counted(ctx.metrics.prometheus_queries(metrics::BUILTIN)),
        Err(e) => {
            tracing::warn!(canary = %o.id, error = %e, "sequential test: no Prometheus");
            return Vec::new();
        }
    };
    // The stable's series only when a metric compares with it: one list call fewer.
    let stable = match (plan.metrics.iter().any(|m| m.baseline.is_some()), plan.sticky.is_some()) {
        (false, _) => None,
        (true, true) => service_node(&ctx.client, &objects.namespace, &objects.service_name).await.ok(),
        (true, false) => upstream_nodes(&ctx.client, &objects.namespace, &objects.service_name).await.ok(),
    }
    .and_then(|n| Series::of_nodes(&objects.namespace, &generated, &n));
    let tallies = judge::tallies(plan, &series, stable.as_ref(), started.as_second());
    let window =
        judge::Window { since: started.as_second(), now: Timestamp::now().as_second(), step: SEQUENTIAL_EVERY };
    match judge::judge(&tallies, confidence, &prometheus, window).await {
        Ok(tested) => {
            ctx.metrics.observe_sequential(&o.id, &tested);
            for t in &tested {
                tracing::debug!(canary = %o.id, metric = t.metric.as_str(), share = ?t.share, requests = t.requests, log_e = t.log_e, "sequential test");
            }
            tested
        }
        Err(e) => {
            tracing::warn!(canary = %o.id, error = %e, "sequential test: Prometheus query failed");
            Vec::new()
        }
    }
}

/// One template metric of [`checks`], with the template's name for its messages.
struct TemplateRun<'a> {
    name: &'a str,
    namespace: &'a str,
    metric: &'a crate::release::plan::Metric,
    variables: &'a std::collections::BTreeMap<String, String>,
    vars: &'a template::Vars,
}

impl TemplateRun<'_> {
    /// Reads the provider's Secret afresh (a rotated token applies at the next check),
    /// then queries the template's Prometheus.
    async fn evaluate(&self, spec: &crate::api::metric_template::MetricTemplateSpec, ctx: &Context) -> Verdict {
        let (name, ns) = (self.name, self.namespace);
        let halt = |message: String| Verdict::Halt { message, value: None };
        let secret = match &spec.provider.secret_ref {
            None => None,
            Some(secret) => {
                let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
                match secrets.get_opt(&secret.name).await {
                    Ok(found) => found.map(|s| s.data.unwrap_or_default()),
                    Err(e) => return halt(format!("Metric template {name}.{ns} secret {} error: {e}", secret.name)),
                }
            }
        };
        let client = match template::options(&spec.provider, secret.as_ref(), &ctx.config.resolver) {
            Ok(client) => client,
            Err(e) => return halt(e.halt_message(name, ns)),
        };
        let queries = ctx.metrics.prometheus_queries(metrics::TEMPLATE);
        template::evaluate(spec, self.metric, self.variables, self.vars, QUERY_TIMEOUT, &client, Some(queries)).await
    }
}
