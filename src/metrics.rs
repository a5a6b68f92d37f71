//! The webhook server's Prometheus metrics, served on the admin port's `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A metric whose HELP and TYPE are listed even before it has a sample: prometheus-client
/// leaves out an empty family, so dashboards and alerts written against `/metrics` of a
/// fresh process would find nothing of it.
#[derive(Debug, Clone)]
pub struct Listed<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub path: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: String,
}

fn latency_histogram() -> Histogram {
    // 50us .. ~1.6s: the webhook budget is 1ms, the API server's timeout seconds.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// The webhook server's metrics, registered once in the process's registry.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    cert_reloads: Family<ReloadLabels, Counter>,
    in_flight: Gauge,
}

/// Counts a request as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics registered nowhere: for a webhook router in tests and benches.
    pub fn new() -> Self {
        Self::register(&mut Registry::default())
    }

    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let cert_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("webhook_requests", "Webhook requests by path and outcome", Listed(requests.clone()));
        registry.register(
            "webhook_request_duration_seconds",
            "Time to answer a webhook request, by path and outcome",
            Listed(latency.clone()),
        );
        registry.register(
            "certificate_reloads",
            "Certificate reloads that changed (swapped) or were rejected (error)",
            Listed(cert_reloads.clone()),
        );
        let in_flight = Gauge::default();
        registry.register(
            "webhook_requests_in_flight",
            "Webhook requests received and not yet answered",
            in_flight.clone(),
        );
        Self { requests, latency, cert_reloads, in_flight }
    }

    /// Counts one request and its latency.
    pub fn observe_request(&self, path: &str, outcome: &str, elapsed: Duration) {
        let labels = RequestLabels { path: path.to_owned(), outcome: outcome.to_owned() };
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn observe_cert_reload(&self, result: &str) {
        self.cert_reloads.get_or_create(&ReloadLabels { result: result.to_owned() }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family README documents is listed by a fresh process, before any sample:
    /// HELP and TYPE, so a dashboard or an alert finds it from the start.
    #[test]
    fn every_documented_family_is_listed_before_its_first_sample() {
        let mut registry = Registry::with_prefix("apisix_canary");
        let _webhook = Metrics::register(&mut registry);
        let _controller = crate::controller::Metrics::register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for (family, kind) in [
            ("webhook_requests", "counter"),
            ("webhook_request_duration_seconds", "histogram"),
            ("certificate_reloads", "counter"),
            ("webhook_requests_in_flight", "gauge"),
            ("status", "gauge"),
            ("weight", "gauge"),
            ("duration_seconds", "histogram"),
            ("metric_analysis", "gauge"),
            ("sequential_evidence", "gauge"),
            ("sequential_boundary", "gauge"),
            ("successes", "counter"),
            ("failures", "counter"),
            ("tick_lag_seconds", "histogram"),
            ("prometheus_queries", "counter"),
            ("reconciles_skipped", "counter"),
        ] {
            let name = format!("apisix_canary_{family}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}:\n{text}");
        }
    }
}
