//! The webhook server's Prometheus metrics, served on the admin port's `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
        registry.register("webhook_requests", "Webhook requests by path and outcome", requests.clone());
        registry.register(
            "webhook_request_duration_seconds",
            "Time to answer a webhook request, by path and outcome",
            latency.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Certificate reloads that changed (swapped) or were rejected (error)",
            cert_reloads.clone(),
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
