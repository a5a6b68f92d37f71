//! Our own Prometheus metrics, served on the admin port's `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

/// Every metric of the process, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    cert_reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("apisix_canary");
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
        Self { registry, requests, latency, cert_reloads }
    }

    /// Counts one request and its latency.
    pub fn observe_request(&self, path: &str, outcome: &str, elapsed: Duration) {
        let labels = RequestLabels { path: path.to_owned(), outcome: outcome.to_owned() };
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    pub fn observe_cert_reload(&self, result: &str) {
        self.cert_reloads.get_or_create(&ReloadLabels { result: result.to_owned() }).inc();
    }

    /// The Prometheus text exposition of everything registered.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
