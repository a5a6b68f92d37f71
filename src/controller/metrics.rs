//! The controller's Prometheus metrics, named so Flagger's dashboards map one to one:
//! `flagger_canary_status` becomes `apisix_canary_status`, and so on, with the same
//! labels and values.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::canary::Phase;
use crate::metrics::Listed;
use crate::release::lifecycle::{self, Status, Tested};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Release {
    pub name: String,
    pub namespace: String,
}

/// What a Canary releases and through which route, for dashboards that select a
/// release by its Canary: Flagger's route shape is `<namespace>_<route>-<target>-canary_`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Info {
    pub name: String,
    pub namespace: String,
    pub target: String,
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Workload {
    pub workload: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    pub name: String,
    pub namespace: String,
    pub metric: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub name: String,
    pub namespace: String,
    pub deployment_strategy: String,
    pub analysis_status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryKind {
    pub kind: String,
}

/// The kinds of `apisix_canary_prometheus_queries_total`: the built-in metrics' batched
/// queries (one per family and window, shared by every release), their per-release
/// queries (`--prometheus-max-age 0`), and the MetricTemplates' queries.
pub const QUERY_KINDS: [&str; 3] = [BUILTIN_BATCH, BUILTIN, TEMPLATE];
pub const BUILTIN_BATCH: &str = "builtin_batch";
pub const BUILTIN: &str = "builtin";
pub const TEMPLATE: &str = "template";

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// The bounds of the tick lag: fine below a second, where its goal lies (p99 < 1 s).
const LAG_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0];

#[derive(Debug)]
pub struct Metrics {
    status: Family<Release, Gauge>,
    info: Family<Info, Gauge>,
    /// The labels each Canary's `info` series has now, to drop the old one on a change.
    infos: std::sync::Mutex<std::collections::HashMap<(String, String), Info>>,
    weight: Family<Workload, Gauge>,
    duration: Family<Release, Histogram, fn() -> Histogram>,
    analysis: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `judge: sequential`: the test's ln E and its boundary ln(1/alpha), as last tested.
    evidence: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    boundary: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    successes: Family<Outcome, Counter>,
    failures: Family<Outcome, Counter>,
    /// One histogram for every release: its series do not grow with the canaries.
    tick_lag: Histogram,
    queries: Family<QueryKind, Counter>,
    skipped: Counter,
}

/// Flagger's encoding: 0 while progressing, 2 failed, 1 otherwise.
pub fn status_value(phase: Option<Phase>) -> i64 {
    match phase {
        Some(Phase::Progressing) => 0,
        Some(Phase::Failed) => 2,
        _ => 1,
    }
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            status: Family::default(),
            info: Family::default(),
            infos: Default::default(),
            weight: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            analysis: Family::default(),
            evidence: Family::default(),
            boundary: Family::default(),
            successes: Family::default(),
            failures: Family::default(),
            tick_lag: Histogram::new(LAG_BUCKETS),
            queries: Family::default(),
            skipped: Counter::default(),
        };
        for kind in QUERY_KINDS {
            let _ = m.queries.get_or_create(&QueryKind { kind: kind.to_owned() });
        }
        registry.register(
            "status",
            "Release status: 0 progressing, 1 other phases, 2 failed",
            Listed(m.status.clone()),
        );
        registry.register(
            "info",
            "1 for each Canary, labelled with its target Deployment and its route",
            Listed(m.info.clone()),
        );
        registry.register("weight", "Traffic weight of the stable and canary workloads", Listed(m.weight.clone()));
        registry.register("duration_seconds", "Time of one reconcile of a release", Listed(m.duration.clone()));
        registry.register("metric_analysis", "Last value of each analysis metric", Listed(m.analysis.clone()));
        registry.register(
            "sequential_evidence",
            "judge: sequential: ln E, the log of the test's evidence against a healthy canary, as last tested",
            Listed(m.evidence.clone()),
        );
        registry.register(
            "sequential_boundary",
            "judge: sequential: ln(1/alpha), the evidence at which the test rejects and the release is rolled back",
            Listed(m.boundary.clone()),
        );
        registry.register("successes", "Releases promoted", Listed(m.successes.clone()));
        registry.register("failures", "Releases rolled back", Listed(m.failures.clone()));
        registry.register(
            "tick_lag_seconds",
            "Time from the moment a release's next step fell due to the end of the writes it led to",
            m.tick_lag.clone(),
        );
        registry.register("prometheus_queries", "HTTP queries sent to Prometheus, by kind", Listed(m.queries.clone()));
        registry.register(
            "reconciles_skipped",
            "Reconciles of a release skipped as the watch echo of the controller's own writes",
            m.skipped.clone(),
        );
        m
    }

    /// The counter of the Prometheus queries of `kind` (one of [`QUERY_KINDS`]), for
    /// [`Prometheus::counted`](crate::analysis::Prometheus::counted).
    pub fn prometheus_queries(&self, kind: &str) -> Counter {
        self.queries.get_or_create(&QueryKind { kind: kind.to_owned() }).clone()
    }

    /// One reconcile of the Canary `name` in `namespace`.
    pub fn observe_duration(&self, name: &str, namespace: &str, elapsed: Duration) {
        let release = Release { name: name.to_owned(), namespace: namespace.to_owned() };
        self.duration.get_or_create(&release).observe(elapsed.as_secs_f64());
    }

    /// The Canary `id` releases its target through `route`.
    pub fn observe_info(&self, id: &lifecycle::Release, route: &str) {
        let info = Info {
            name: id.canary.clone(),
            namespace: id.namespace.clone(),
            target: id.target.clone(),
            route: route.to_owned(),
        };
        let mut infos = self.infos.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (id.namespace.clone(), id.canary.clone());
        if infos.get(&key) == Some(&info) {
            return;
        }
        if let Some(old) = infos.insert(key, info.clone()) {
            self.info.remove(&old);
        }
        self.info.get_or_create(&info).set(1);
    }

    pub fn skipped_reconcile(&self) {
        self.skipped.inc();
    }

    pub fn observe_tick_lag(&self, lag: Duration) {
        self.tick_lag.observe(lag.as_secs_f64());
    }

    pub fn observe_metric(&self, id: &lifecycle::Release, metric: &str, value: Option<f64>) {
        let (name, namespace) = (id.canary.clone(), id.namespace.clone());
        if let Some(v) = value {
            self.analysis.get_or_create(&MetricLabels { name, namespace, metric: metric.to_owned() }).set(v);
        }
    }

    /// The sequential test of each metric of the release `id`, as just run.
    pub fn observe_sequential(&self, id: &lifecycle::Release, tested: &[Tested]) {
        for t in tested.iter().filter(|t| t.log_e.is_finite() && t.boundary.is_finite()) {
            let labels =
                MetricLabels { name: id.canary.clone(), namespace: id.namespace.clone(), metric: t.metric.clone() };
            self.evidence.get_or_create(&labels).set(t.log_e);
            self.boundary.get_or_create(&labels).set(t.boundary);
        }
    }

    /// The gauges from a status just written, and the totals when it ended a release.
    pub fn observe_status(&self, id: &lifecycle::Release, old: &Status, new: &Status, skipped: bool) {
        let (name, namespace, target) = (id.canary.clone(), id.namespace.clone(), &id.target);
        self.status
            .get_or_create(&Release { name: name.clone(), namespace: namespace.clone() })
            .set(status_value(new.phase));
        let w = i64::from(new.weight);
        self.weight
            .get_or_create(&Workload { workload: format!("{target}-canary"), namespace: namespace.clone() })
            .set(w);
        self.weight.get_or_create(&Workload { workload: target.clone(), namespace: namespace.clone() }).set(100 - w);
        if old.phase == new.phase {
            return;
        }
        let outcome = |status: &str| Outcome {
            name: name.clone(),
            namespace: namespace.clone(),
            deployment_strategy: "canary".to_owned(),
            analysis_status: status.to_owned(),
        };
        match new.phase {
            Some(Phase::Succeeded) => {
                self.successes.get_or_create(&outcome(if skipped { "skipped" } else { "completed" })).inc();
            }
            Some(Phase::Failed) if new.failed.is_some() && new.failed != old.failed => {
                self.failures.get_or_create(&outcome("completed")).inc();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tested(metric: &str, log_e: f64) -> Tested {
        let metric = metric.to_owned();
        Tested { metric, share: Some(15.0), requests: 40, log_e, boundary: 200f64.ln(), rejected: None }
    }

    #[test]
    fn the_sequential_test_is_a_gauge_per_release_and_metric_the_last_one_kept() {
        let mut registry = Registry::with_prefix("apisix_canary");
        let metrics = Metrics::register(&mut registry);
        let id = lifecycle::Release { canary: "podinfo".into(), namespace: "test".into(), target: "podinfo".into() };
        metrics.observe_sequential(&id, &[tested("request-success-rate", 3.04), tested("request-duration", -2.2)]);
        metrics.observe_sequential(&id, &[tested("request-success-rate", 8.78), tested("request-duration", f64::NAN)]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let series = |family: &str, metric: &str| {
            let head = format!("apisix_canary_{family}{{name=\"podinfo\",namespace=\"test\",metric=\"{metric}\"}} ");
            let line = text.lines().find_map(|l| l.strip_prefix(head.as_str()));
            line.map(|v| v.parse::<f64>().unwrap()).unwrap_or_else(|| panic!("no {head}in\n{text}"))
        };
        assert_eq!(series("sequential_evidence", "request-success-rate"), 8.78);
        assert_eq!(series("sequential_evidence", "request-duration"), -2.2, "a test without a number keeps the last");
        assert!((series("sequential_boundary", "request-success-rate") - 5.298317366548035).abs() < 1e-12);
    }
}
