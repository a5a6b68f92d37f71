//! `apisix-canary report`: a picture of a Canary's last (or current) release.
//!
//! ```text
//!  Canary + its Events ──timeline──▶ window, weight steps, markers ─┐
//!  EndpointSlices + Prometheus (nodes seen) ──nodes──▶ canary/stable │
//!  Prometheus range queries (analysis PromQL per side) ──────────────┼─▶ Report ─▶ svg / html
//!  the Canary's analysis (Plan) ──▶ thresholds ───────────────────────┘
//! ```
//!
//! [`gather`] is the only part that talks to the cluster and Prometheus; the rest turns
//! a [`Report`] into a chart ([`svg::render`]) or a page ([`html::render`]).

pub mod html;
pub mod nodes;
pub mod svg;
pub mod timeline;

use std::time::Duration;

use futures_util::future::try_join4;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::{Api, Client};

use self::nodes::Nodes;
use self::timeline::{Kind, Occurrence, Window};
use crate::analysis::prometheus::{Prometheus, QueryError};
use crate::analysis::query::{self, Series};
use crate::api::canary::Phase;
use crate::api::canary::v1beta1::Canary;
use crate::release::copies;
use crate::release::plan::{MetricSource, Plan, defaults};
use crate::route;

/// How far before the release the target's own route is read for stable nodes.
const BEFORE_RELEASE: Duration = Duration::from_secs(300);
/// At most this many points per line: the step grows with the release (1 s at least).
const MAX_POINTS: i64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("Canary {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error(
        "Canary {namespace}/{name} has no release to report: no \"New revision detected!\" Event (Events expire, by \
         default after an hour)"
    )]
    NoRelease { namespace: String, name: String },
    #[error("reading {what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error(transparent)]
    Prometheus(#[from] QueryError),
}

/// The bounds the analysis judged against, when it has them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// request-success-rate's `min`, in percent.
    pub min_success_rate: Option<f64>,
    /// request-duration's `max`, in milliseconds.
    pub max_p99_ms: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_success_rate: Some(defaults::MIN_SUCCESS_RATE),
            max_p99_ms: Some(defaults::MAX_REQUEST_DURATION.as_secs_f64() * 1000.0),
        }
    }
}

/// A line of points: (Unix seconds, value).
pub type Points = Vec<(f64, f64)>;

/// The four measured lines: success rate (%) and P99 (ms), the canary's and the stable's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lines {
    pub canary_success: Points,
    pub stable_success: Points,
    pub canary_p99: Points,
    pub stable_p99: Points,
}

/// Everything the chart and the page show.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub namespace: String,
    pub name: String,
    /// The Canary's phase now (`Succeeded`, `Progressing`, ...).
    pub phase: String,
    pub window: Window,
    /// The Events said within the window, oldest first.
    pub events: Vec<Occurrence>,
    pub weights: Vec<(Timestamp, u32)>,
    pub lines: Lines,
    pub thresholds: Thresholds,
    pub nodes: Nodes,
    /// The range of each point's `rate()`: what the analysis judged at that time.
    pub rate_window: Duration,
}

impl Report {
    /// The chart's time axis: the window, padded.
    pub fn view(&self) -> (Timestamp, Timestamp) {
        self.window.padded()
    }
}

/// Reads the last release of Canary `namespace/name` and measures it in `prometheus`.
/// `rate_window` overrides the analysis' request-success-rate interval.
pub async fn gather(
    client: &Client,
    prometheus: &Prometheus,
    namespace: &str,
    name: &str,
    rate_window: Option<Duration>,
    now: Timestamp,
) -> Result<Report, ReportError> {
    let kube = |what: &str| {
        let what = what.to_owned();
        move |source| ReportError::Kube { what, source }
    };
    let canaries: Api<Canary> = Api::namespaced(client.clone(), namespace);
    let canary = canaries
        .get_opt(name)
        .await
        .map_err(kube(&format!("Canary {namespace}/{name}")))?
        .ok_or_else(|| ReportError::NotFound { namespace: namespace.to_owned(), name: name.to_owned() })?;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let selector = format!("involvedObject.kind=Canary,involvedObject.name={name}");
    let events = events.list(&ListParams::default().fields(&selector)).await.map_err(kube("Events"))?.items;
    let occurrences = timeline::occurrences(&events);
    let phase = canary.status.as_ref().and_then(|s| s.phase);
    let running = matches!(
        phase,
        Some(Phase::Waiting | Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising)
    );
    let window = timeline::window(&occurrences, running, now)
        .ok_or_else(|| ReportError::NoRelease { namespace: namespace.to_owned(), name: name.to_owned() })?;
    let (thresholds, judged) = analysis(&canary);
    let rate_window = rate_window.unwrap_or(judged);

    let target = &canary.spec.target_ref.name;
    let service = canary.spec.service.as_ref().and_then(|s| s.name.clone()).unwrap_or_else(|| target.clone());
    let own_route = canary.spec.route_ref.as_ref().map(|r| r.name.clone()).unwrap_or_default();
    let generated = route::generated_name(&own_route, target);
    let endpoints = |svc: String| async move {
        crate::analysis::upstream_nodes(client, namespace, &svc).await.map_err(kube("EndpointSlices"))
    };
    let canary_now = endpoints(copies::canary_service_name(&service)).await?;
    let stable_now = endpoints(service.clone()).await?;

    let (from, to) = window.padded();
    let span = to.duration_since(from);
    let seen_query = query::answering_nodes(namespace, &generated, whole_secs(span));
    let seen = prometheus.label_values(&seen_query, to.as_second(), "node").await?;
    // At weight 0, until a second before the first step, only the stable was routed.
    let first_step = occurrences.iter().find(|o| window.contains(o.at) && matches!(o.kind, Kind::Advance(_)));
    let weight_zero_end = first_step.map_or(window.end, |o| o.at - SignedDuration::from_secs(1)).max(window.start);
    let at_zero = query::answering_nodes(
        namespace,
        &generated,
        whole_secs(weight_zero_end.duration_since(window.start) + SignedDuration::from_secs(1)),
    );
    let mut evidence = prometheus.label_values(&at_zero, weight_zero_end.as_second(), "node").await?;
    // The target's own route served only the stable version until the release; a series
    // appears with its first request, but Prometheus may scrape it only after the
    // release has begun, so its existence up to the view's end is read.
    let before = query::exported_nodes(namespace, &own_route, BEFORE_RELEASE + whole_secs(span));
    evidence.extend(prometheus.label_values(&before, to.as_second(), "node").await?);
    evidence.extend(stable_now);
    let nodes = nodes::classify(&seen, &canary_now, &evidence);

    let step = Duration::from_secs(u64::try_from((span.as_secs() / MAX_POINTS).max(1)).unwrap_or(1));
    let range = |series: Option<Series>, p99: bool| async move {
        let Some(series) = series else { return Ok(Vec::new()) };
        let q = if p99 { series.request_duration(rate_window) } else { series.success_rate(rate_window) };
        prometheus.range(&q, from.as_second(), to.as_second(), step).await
    };
    let canary_series = Series::of_nodes(namespace, &generated, &nodes.canary);
    let stable_series = Series::of_nodes(namespace, &generated, &nodes.stable);
    let (canary_success, stable_success, canary_p99, stable_p99) = try_join4(
        range(canary_series.clone(), false),
        range(stable_series.clone(), false),
        range(canary_series, true),
        range(stable_series, true),
    )
    .await?;

    let weights = timeline::weight_steps(&occurrences, &window);
    let events = occurrences.into_iter().filter(|o| window.contains(o.at)).collect();
    Ok(Report {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        phase: phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "-".to_owned()),
        window,
        events,
        weights,
        lines: Lines { canary_success, stable_success, canary_p99, stable_p99 },
        thresholds,
        nodes,
        rate_window,
    })
}

/// The analysis' bounds and the request-success-rate's interval (what a check
/// judged), defaults applied; the defaults when the stored analysis does not parse.
fn analysis(canary: &Canary) -> (Thresholds, Duration) {
    let Ok((plan, _)) = Plan::from_canary(&canary.spec) else {
        return (Thresholds::default(), defaults::METRIC_INTERVAL);
    };
    let find = |source: &MetricSource| plan.metrics.iter().find(|m| &m.source == source);
    let success = find(&MetricSource::RequestSuccessRate);
    let duration = find(&MetricSource::RequestDuration);
    let thresholds =
        Thresholds { min_success_rate: success.and_then(|m| m.min), max_p99_ms: duration.and_then(|m| m.max) };
    (thresholds, success.or(duration).map_or(defaults::METRIC_INTERVAL, |m| m.interval))
}

/// A span in whole seconds, at least one (a PromQL range).
fn whole_secs(d: SignedDuration) -> Duration {
    Duration::from_secs(u64::try_from(d.as_secs()).unwrap_or(0).max(1))
}

/// `12:04:05`, UTC: the time axis and the table.
pub fn clock(at: Timestamp) -> String {
    at.strftime("%H:%M:%S").to_string()
}
