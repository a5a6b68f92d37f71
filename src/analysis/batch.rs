//! The built-in metrics of every release from one query per metric family and window,
//! instead of one per release and metric: with a thousand releases in analysis, the
//! queries per interval grow with the number of windows, not of releases.
//!
//! ```text
//!  release A ─┐                 (Status, 1m) ─ sum by (route, node, code) (rate(apisix_http_status{route=~".+-canary_.+"}[1m]))
//!  release B ─┼─▶ Batcher ─────▶ (Latency, 1m) ─ sum by (route, node, le) (rate(apisix_http_latency_bucket{...}[1m]))
//!  release C ─┘   │ one query in flight per key, its answer kept `max_age`
//!                 └─▶ Table ─ each release's rows (its route; its nodes, or the stable's, or all) ─▶ value
//! ```
//!
//! Each release reads from the table exactly what its own PromQL
//! ([`query::Series`](super::query::Series)) gives: the same sums of the same per-series
//! rates, the same `histogram_quantile` ([`super::quantile`]), the same "no values" (no
//! series, or NaN). Releases tick at their own times, so an answer younger than
//! `max_age` (1 s by default: Prometheus scrapes every 5 to 30 s, so it is as fresh as a
//! new one) serves every release that asks meanwhile, and releases asking while the
//! query is in flight wait for it. A failed query fails every release waiting on it
//! with the same error its own query would have had.

mod table;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use self::table::{Row, Table};
use super::prometheus::{Prometheus, QueryError};
use super::query::{self, Selection};

/// The default `--prometheus-max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(1);

/// The quantile of `request-duration`.
pub const P99: f64 = 0.99;

/// Which family of APISIX series one batched query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `apisix_http_status` by route, node and code: requests and success rates.
    Status,
    /// `apisix_http_latency_bucket{type="request"}` by route, node and le: P99s.
    Latency,
}

impl Family {
    /// The batched PromQL over `window`.
    pub fn query(self, window: Duration) -> String {
        match self {
            Family::Status => query::batched_status(window),
            Family::Latency => query::batched_latency(window),
        }
    }

    /// The label kept besides route and node.
    fn tag(self) -> &'static str {
        match self {
            Family::Status => "code",
            Family::Latency => "le",
        }
    }
}

type Key = (Family, Duration);
type Answer = Result<Arc<Table>, QueryError>;

/// One query of a key: in flight until its cell is set, then its answer and when it was
/// sent.
#[derive(Default)]
struct Flight {
    cell: tokio::sync::OnceCell<(Instant, Answer)>,
}

/// Shared by every reconcile: the last answer per (family, window), and the query in
/// flight.
pub struct Batcher {
    prometheus: Prometheus,
    max_age: Duration,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("prometheus", &self.prometheus).field("max_age", &self.max_age).finish()
    }
}

impl Batcher {
    /// Batches over `prometheus` (counted as the batched kind), an answer serving for
    /// `max_age` after its query was sent.
    pub fn new(prometheus: Prometheus, max_age: Duration) -> Self {
        Self { prometheus, max_age, flights: Mutex::new(HashMap::new()) }
    }

    /// The Prometheus queried.
    pub fn prometheus(&self) -> &Prometheus {
        &self.prometheus
    }

    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The table of `family` over `window`: the last answer if younger than the max age,
    /// else the one of the query in flight, else a new query's.
    pub async fn table(&self, family: Family, window: Duration) -> Answer {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let fresh = |f: &Flight| f.cell.get().is_none_or(|(sent, _)| sent.elapsed() < self.max_age);
            // Forget stale answers, so a window no release uses any more holds no table.
            flights.retain(|_, f| fresh(f));
            flights.entry((family, window)).or_default().clone()
        };
        let (_, answer) = flight
            .cell
            .get_or_init(|| async {
                let sent = Instant::now();
                let answer = self.prometheus.instant(&family.query(window), None).await;
                let answer = answer.and_then(|data| Table::from_data(&data, family.tag())).map(Arc::new);
                (sent, answer)
            })
            .await;
        answer.clone()
    }

    /// What [`Series::requests`](query::Series::requests) gives.
    pub async fn requests(&self, selection: &Selection, window: Duration) -> Result<Option<f64>, QueryError> {
        Ok(self.table(Family::Status, window).await?.requests(selection, window))
    }

    /// What [`Series::success_rate`](query::Series::success_rate) gives.
    pub async fn success_rate(&self, selection: &Selection, window: Duration) -> Result<Option<f64>, QueryError> {
        Ok(self.table(Family::Status, window).await?.success_rate(selection))
    }

    /// What [`Series::request_duration`](query::Series::request_duration) gives.
    pub async fn request_duration(&self, selection: &Selection, window: Duration) -> Result<Option<f64>, QueryError> {
        Ok(self.table(Family::Latency, window).await?.quantile(P99, selection))
    }
}

#[cfg(test)]
mod tests;
