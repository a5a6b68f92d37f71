//! What `report` reads: the Canary (its analysis and `status.checks`) and its Events
//! ([`Release::read`]), then from the cluster and Prometheus the nodes of the release and
//! the stable's value at each check of a built-in metric ([`Release::measure`]).

use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::{Api, Client};

use super::checks::{self, Kind, MetricChecks};
use super::nodes::{self, Evidence, Nodes};
use super::timeline::{self, Kind as Said};
use super::{Report, clock};
use crate::analysis::prometheus::{Prometheus, QueryError};
use crate::analysis::query::{self, Series};
use crate::api::canary::v1beta1::Canary;
use crate::api::canary::{MAX_CHECKS, Phase};
use crate::release::copies;
use crate::release::plan::{Judge, Plan};
use crate::route;

/// How far before the release the target's own route is read for stable nodes.
const BEFORE_RELEASE: Duration = Duration::from_secs(300);
/// How far before the release the generated route's series are read for the nodes of
/// earlier releases (the gateway exports a series until it restarts).
const EARLIER_RELEASES: Duration = Duration::from_secs(3600);
/// The stable's values are read this many at a time.
const CONCURRENT_QUERIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("Canary {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error(
        "Canary {namespace}/{name} has no release to report: no \"New revision detected!\" Event (Events expire, by \
         default after an hour) and no check recorded in its status"
    )]
    NoRelease { namespace: String, name: String },
    #[error("reading {what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error(transparent)]
    Prometheus(#[from] QueryError),
}

fn kube(what: &str) -> impl FnOnce(kube::Error) -> ReportError + use<> {
    let what = what.to_owned();
    move |source| ReportError::Kube { what, source }
}

/// A Canary and its Events, as read.
#[derive(Debug, Clone)]
pub struct Release {
    pub canary: Canary,
    pub events: Vec<Event>,
}

/// Reads the last release of Canary `namespace/name` and measures it in `prometheus`.
pub async fn gather(
    client: &Client,
    prometheus: &Prometheus,
    namespace: &str,
    name: &str,
    now: Timestamp,
) -> Result<Report, ReportError> {
    Release::read(client, namespace, name).await?.measure(client, prometheus, now).await
}

impl Release {
    /// Canary `namespace/name` and its Events.
    pub async fn read(client: &Client, namespace: &str, name: &str) -> Result<Release, ReportError> {
        let canaries: Api<Canary> = Api::namespaced(client.clone(), namespace);
        let canary = canaries
            .get_opt(name)
            .await
            .map_err(kube(&format!("Canary {namespace}/{name}")))?
            .ok_or_else(|| ReportError::NotFound { namespace: namespace.to_owned(), name: name.to_owned() })?;
        let events: Api<Event> = Api::namespaced(client.clone(), namespace);
        let selector = format!("involvedObject.kind=Canary,involvedObject.name={name}");
        let events = events.list(&ListParams::default().fields(&selector)).await.map_err(kube("Events"))?.items;
        Ok(Release { canary, events })
    }

    /// The Prometheus the release's checks queried (`status.metricsServer`).
    pub fn metrics_server(&self) -> Option<&str> {
        self.canary.status.as_ref().and_then(|s| s.metrics_server.as_deref()).filter(|u| !u.is_empty())
    }

    /// What the Canary and its Events say of the release, pure: its window, weights,
    /// Events and checks; no node known yet and no stable value ([`Release::measure`]).
    pub fn checked(&self, now: Timestamp) -> Result<Report, ReportError> {
        let canary = &self.canary;
        let namespace = canary.metadata.namespace.clone().unwrap_or_default();
        let name = canary.metadata.name.clone().unwrap_or_default();
        let occurrences = timeline::occurrences(&self.events);
        let status = canary.status.as_ref();
        let phase = status.and_then(|s| s.phase);
        let running = matches!(
            phase,
            Some(Phase::Waiting | Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising)
        );
        let records = status.and_then(|s| s.checks.as_deref()).unwrap_or_default();
        let plan = Plan::from_canary(&canary.spec).ok().map(|(plan, _)| plan);
        let mut metrics = checks::metrics(plan.as_ref(), records);
        let window = match timeline::window(&occurrences, running, now) {
            Some(window) => {
                // Checks from before the release began are an earlier release's (a
                // status written before they were reset at each start).
                for m in &mut metrics {
                    m.checks.retain(|c| c.at.as_second() >= window.start.as_second());
                }
                window
            }
            None => timeline::window_of_checks(records.iter().map(|r| r.time.0), running, now)
                .ok_or_else(|| ReportError::NoRelease { namespace: namespace.clone(), name: name.clone() })?,
        };
        let weights = timeline::weight_steps(&occurrences, &window);
        let events = occurrences.into_iter().filter(|o| window.contains(o.at)).collect();
        Ok(Report {
            namespace,
            name,
            phase: phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "-".to_owned()),
            window,
            events,
            weights,
            metrics,
            nodes: Nodes::default(),
            prometheus: String::new(),
            truncated: records.len() >= MAX_CHECKS,
            mode: plan.as_ref().map_or_else(|| "weighted".to_owned(), Plan::mode),
            confidence: plan.and_then(|p| match p.judge {
                Judge::Sequential { confidence } => Some(confidence),
                Judge::Interval => None,
            }),
        })
    }

    /// The report of the release: its checks, and from `prometheus` its nodes and the
    /// stable's value at each check.
    pub async fn measure(
        self,
        client: &Client,
        prometheus: &Prometheus,
        now: Timestamp,
    ) -> Result<Report, ReportError> {
        let mut report = self.checked(now)?;
        let canary = &self.canary;
        let namespace = &report.namespace;
        let window = &report.window;
        let target = &canary.spec.target_ref.name;
        let service = canary.spec.service.as_ref().and_then(|s| s.name.clone()).unwrap_or_else(|| target.clone());
        let own_route = canary.spec.route_ref.as_ref().map(|r| r.name.clone()).unwrap_or_default();
        let generated = route::generated_name(&own_route, target);
        let endpoints = |svc: String| {
            let what = format!("the EndpointSlices of Service {namespace}/{svc}");
            let ns = namespace.clone();
            async move { crate::analysis::upstream_nodes(client, &ns, &svc).await.map_err(kube(&what)) }
        };
        let (_, to) = window.padded();
        // Up to a little after the end (a scrape may come late), never past now.
        let until = to.min(now).max(window.start);
        let span = until.duration_since(window.start);
        // At weight 0, until a second before the first step, only the stable was routed.
        let first_step = report.events.iter().find(|o| matches!(o.kind, Said::Advance(_)));
        let weight_zero_end = first_step.map_or(window.end, |o| o.at - SignedDuration::from_secs(1)).max(window.start);
        let zero_span = weight_zero_end.duration_since(window.start) + SignedDuration::from_secs(1);
        let label = |q: String, at: Timestamp| async move { prometheus.label_values(&q, at.as_second(), "node").await };
        let (canary_now, stable_now) =
            tokio::try_join!(endpoints(copies::canary_service_name(&service)), endpoints(service.clone()))?;
        let (seen, at_zero, own, earlier) = tokio::try_join!(
            // What answered the generated route from the release's start on: the
            // route of an earlier release had the same name.
            label(query::answering_nodes(namespace, &generated, whole_secs(span)), until),
            label(query::answering_nodes(namespace, &generated, whole_secs(zero_span)), weight_zero_end),
            // The target's own route served only the stable version until the release;
            // a series appears with its first request, but Prometheus may scrape it only
            // after the release has begun, so its existence up to the end is read.
            label(query::exported_nodes(namespace, &own_route, BEFORE_RELEASE + whole_secs(span)), until),
            label(
                query::exported_nodes(namespace, &generated, EARLIER_RELEASES),
                window.start - SignedDuration::from_secs(1)
            ),
        )?;
        let before = [at_zero, own, earlier].concat();
        let promoted = canary.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded);
        let nodes = nodes::classify(&Evidence { seen, canary_now, stable_now, before, promoted });

        if nodes.told_apart
            && let Some(stable) = Series::of_nodes(namespace, &generated, &nodes.stable)
        {
            stable_values(prometheus, &stable, &mut report.metrics).await?;
        }
        report.nodes = nodes;
        report.prometheus = prometheus.url().to_owned();
        Ok(report)
    }
}

/// The stable's value at each check of a built-in metric: the check's PromQL over
/// `stable`'s nodes with the metric's interval as window, evaluated at the check's time.
async fn stable_values(
    prometheus: &Prometheus,
    stable: &Series,
    metrics: &mut [MetricChecks],
) -> Result<(), QueryError> {
    let mut asked = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        let Some(interval) = m.interval else { continue };
        let q = match m.kind {
            Kind::SuccessRate => stable.success_rate(interval),
            Kind::Duration => stable.request_duration(interval),
            Kind::Query | Kind::Other => continue,
        };
        for (j, c) in m.checks.iter().enumerate() {
            asked.push((i, j, q.clone(), c.at.as_second()));
        }
    }
    let answers: Vec<(usize, usize, Option<f64>)> = futures_util::stream::iter(asked)
        .map(|(i, j, q, at)| async move { prometheus.scalar_at(&q, at).await.map(|v| (i, j, v)) })
        .buffered(CONCURRENT_QUERIES)
        .try_collect()
        .await?;
    for (i, j, v) in answers {
        metrics[i].checks[j].stable = v;
    }
    Ok(())
}

/// A span in whole seconds, at least one (a PromQL range).
fn whole_secs(d: SignedDuration) -> Duration {
    Duration::from_secs(u64::try_from(d.as_secs()).unwrap_or(0).max(1))
}

impl Report {
    /// One line for the terminal: what was written from what.
    pub fn summary(&self) -> String {
        let checks: usize = self.metrics.iter().map(|m| m.checks.len()).sum();
        let apart = if self.nodes.told_apart { "" } else { ", not told apart from the stable's" };
        format!(
            "{}.{} from {} to {}, {} Events, {checks} checks of {} metrics, canary nodes {:?}{apart}, stable nodes \
             {:?}, prometheus {}",
            self.name,
            self.namespace,
            clock(self.window.start),
            clock(self.window.end),
            self.events.len(),
            self.metrics.len(),
            self.nodes.canary,
            self.nodes.stable,
            self.prometheus
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::report::sample;

    #[test]
    fn a_sequentially_judged_release_is_read_from_its_canary_and_events() {
        let report = sample::sequential();
        assert_eq!((report.phase.as_str(), report.confidence), ("Failed", Some(99.0)));
        assert_eq!(
            report.window.start.to_string(),
            "2026-12-07T16:45:18.250887Z",
            "the last release, not the promoted one"
        );
        let names: Vec<(&str, usize, bool)> =
            report.metrics.iter().map(|m| (m.name.as_str(), m.checks.len(), m.tested())).collect();
        assert_eq!(names, [("request-success-rate", 4, true), ("request-duration", 3, true)]);
        let rejection = report.metrics[0].checks.last().unwrap();
        assert_eq!((rejection.value, rejection.rejected_share), (None, Some(15.0)));
        assert!(rejection.evidence.is_some_and(|e| e.rejects()));
        assert!(report.events.iter().any(|o| o.message.starts_with("Rolling back podinfo.test: canary 5xx share")));
    }
}
