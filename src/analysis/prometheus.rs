//! A small Prometheus client over `prometheus-http-query`: one instant query, one
//! number, within a deadline (and, for `report`, one series over a range, or the values
//! of a label).
//!
//! "No values found" is not an error here: an empty vector or a NaN (0/0 when nothing
//! was requested) is `Ok(None)`, which the analysis halts on, in Flagger's words. Every
//! other problem (nothing listening, an HTTP or PromQL error, a result that is not one
//! number) is a [`QueryError`], which the analysis reports as a failed query.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_http_query::response::Data;
use prometheus_http_query::{Client, Error as ApiError};

use super::http::{self, error_chain as chain};

/// How long one query may take when the caller names no timeout.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Cloned for every release waiting on one batched query (see `analysis::batch`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error("invalid --prometheus-url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("building the prometheus client: {0}")]
    Client(String),
    #[error("prometheus at {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("prometheus at {url} did not answer within {}", crate::api::duration::Display(*.timeout))]
    Timeout { url: String, timeout: Duration },
    /// Prometheus answered with an error (bad PromQL, a timeout of its own, ...).
    #[error("prometheus at {url} refused the query: {message}")]
    Refused { url: String, message: String },
    /// An HTTP error or a body that is not Prometheus' JSON (a proxy, the wrong port).
    #[error("prometheus at {url} sent a bad response: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("query returned a {0}, not a vector")]
    NotVector(&'static str),
    #[error("range query returned a {0}, not a range vector")]
    NotMatrix(&'static str),
    #[error("query returned {0} series, not one")]
    ManySeries(usize),
}

/// A Prometheus server, from its base URL (`--prometheus-url`).
#[derive(Clone)]
pub struct Prometheus {
    client: Client,
    url: String,
    timeout: Duration,
    /// Incremented by every HTTP query sent, when set (see [`Prometheus::counted`]).
    queries: Option<Counter>,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus").field("url", &self.url).field("timeout", &self.timeout).finish()
    }
}

impl Prometheus {
    /// A client for `url` (`http://` or `https://`, optionally with a path prefix such
    /// as `/prometheus`). HTTPS uses our ring provider and the platform's roots.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, QueryError> {
        Self::with(url, timeout, &http::Options::default())
    }

    /// As [`Prometheus::new`], with authorization or custom headers, a permissive TLS
    /// check, or a resolver (a `MetricTemplate`'s provider settings).
    pub fn with(url: &str, timeout: Duration, options: &http::Options<'_>) -> Result<Self, QueryError> {
        let bad = |reason: &str| QueryError::Url { url: url.to_owned(), reason: reason.to_owned() };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("must start with http:// or https://"))?;
        if !matches!(scheme, "http" | "https") {
            return Err(bad("must start with http:// or https://"));
        }
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("has no host"));
        }
        // A trailing `/` would double the one before `api/v1/query`.
        let trimmed = url.trim_end_matches('/');
        let options = http::Options { timeout: Some(timeout), ..options.clone() };
        let client = http::client(&options).map_err(QueryError::Client)?;
        let client = Client::from(client, trimmed).map_err(|e| bad(&chain(&e)))?;
        Ok(Self { client, url: trimmed.to_owned(), timeout, queries: None })
    }

    /// This client, counting every query it sends in `queries` (the controller's
    /// `apisix_canary_prometheus_queries_total{kind}`).
    pub fn counted(self, queries: Counter) -> Self {
        Self { queries: Some(queries), ..self }
    }

    /// The base URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The value of an instant query that yields one number: `Ok(None)` when there is
    /// none (an empty vector, or NaN).
    pub async fn scalar(&self, query: &str) -> Result<Option<f64>, QueryError> {
        value(&self.instant(query, None).await?)
    }

    /// As [`Prometheus::scalar`], evaluated at `at` (Unix seconds).
    pub async fn scalar_at(&self, query: &str, at: i64) -> Result<Option<f64>, QueryError> {
        value(&self.instant(query, Some(at)).await?)
    }

    /// The whole result of an instant query, evaluated now or at `at` (Unix seconds).
    pub async fn instant(&self, query: &str, at: Option<i64>) -> Result<Data, QueryError> {
        let request = self.client.query(query).timeout(self.timeout_ms());
        let request = match at {
            Some(at) => request.at(at),
            None => request,
        };
        self.within(request.get()).await
    }

    /// The values of `label` on the series of an instant query evaluated at `at` (Unix
    /// seconds), sorted, without duplicates or empty values.
    pub async fn label_values(&self, query: &str, at: i64, label: &str) -> Result<Vec<String>, QueryError> {
        label_values(&self.instant(query, Some(at)).await?, label)
    }

    /// The points (Unix seconds, value) of a range query that yields at most one
    /// series, from `start` to `end` every `step`; NaN points (nothing requested) are
    /// left out, so a gap in the traffic is a gap in the line.
    pub async fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: Duration,
    ) -> Result<Vec<(f64, f64)>, QueryError> {
        let request = self.client.query_range(query, start, end, step.as_secs_f64()).timeout(self.timeout_ms()).get();
        points(&self.within(request).await?)
    }

    fn timeout_ms(&self) -> i64 {
        i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX)
    }

    /// Prometheus stops evaluating at its `timeout`; ours bounds the whole exchange.
    async fn within(
        &self,
        request: impl Future<Output = Result<prometheus_http_query::response::PromqlResult, ApiError>>,
    ) -> Result<Data, QueryError> {
        if let Some(queries) = &self.queries {
            queries.inc();
        }
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(QueryError::Timeout { url: self.url.clone(), timeout: self.timeout }),
            Ok(Ok(response)) => Ok(response.data().clone()),
            Ok(Err(e)) => Err(self.classify(&e)),
        }
    }

    fn classify(&self, e: &ApiError) -> QueryError {
        let url = self.url.clone();
        match e {
            ApiError::Prometheus(p) => QueryError::Refused { url, message: p.to_string() },
            ApiError::Client(c) => match c.inner() {
                Some(r) if r.is_timeout() => QueryError::Timeout { url, timeout: self.timeout },
                // The reqwest error says what failed; the wrapper's words add nothing.
                Some(r) if r.is_connect() || r.is_request() => QueryError::Unreachable { url, reason: chain(r) },
                _ => QueryError::BadResponse { url, reason: chain(e) },
            },
            other => QueryError::BadResponse { url, reason: chain(other) },
        }
    }
}

/// One number from a query's result; see [`Prometheus::scalar`].
pub fn value(data: &Data) -> Result<Option<f64>, QueryError> {
    let v = match data {
        Data::Vector(series) => match series.as_slice() {
            [] => return Ok(None),
            [one] => one.sample().value(),
            many => return Err(QueryError::ManySeries(many.len())),
        },
        Data::Matrix(_) => return Err(QueryError::NotVector("range vector")),
        Data::Scalar(_) => return Err(QueryError::NotVector("scalar")),
    };
    Ok((!v.is_nan()).then_some(v))
}

/// The values of `label` on an instant vector; see [`Prometheus::label_values`].
pub fn label_values(data: &Data, label: &str) -> Result<Vec<String>, QueryError> {
    let Data::Vector(series) = data else { return Err(QueryError::NotVector(shape(data))) };
    let mut values: Vec<String> =
        series.iter().filter_map(|s| s.metric().get(label)).filter(|v| !v.is_empty()).cloned().collect();
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

/// The points of a range query's one series; see [`Prometheus::range`].
pub fn points(data: &Data) -> Result<Vec<(f64, f64)>, QueryError> {
    let Data::Matrix(series) = data else { return Err(QueryError::NotMatrix(shape(data))) };
    match series.as_slice() {
        [] => Ok(Vec::new()),
        [one] => Ok(one.samples().iter().map(|s| (s.timestamp(), s.value())).filter(|(_, v)| !v.is_nan()).collect()),
        many => Err(QueryError::ManySeries(many.len())),
    }
}

fn shape(data: &Data) -> &'static str {
    match data {
        Data::Vector(_) => "vector",
        Data::Matrix(_) => "range vector",
        Data::Scalar(_) => "scalar",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> Data {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn one_number_or_none() {
        let one = r#"{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"26.76"]}]}"#;
        assert_eq!(value(&data(one)).unwrap(), Some(26.76));
        let empty = r#"{"resultType":"vector","result":[]}"#;
        assert_eq!(value(&data(empty)).unwrap(), None);
        let nan = r#"{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"NaN"]}]}"#;
        assert_eq!(value(&data(nan)).unwrap(), None, "0/0 without traffic is no values");
        let inf = r#"{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"+Inf"]}]}"#;
        assert_eq!(value(&data(inf)).unwrap(), Some(f64::INFINITY), "+Inf is a value: above every bucket");
    }

    #[test]
    fn other_shapes_are_errors() {
        let two = r#"{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}"#;
        assert_eq!(value(&data(two)).unwrap_err().to_string(), "query returned 2 series, not one");
        let matrix = r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}"#;
        assert_eq!(value(&data(matrix)).unwrap_err().to_string(), "query returned a range vector, not a vector");
        let scalar = r#"{"resultType":"scalar","result":[1,"1"]}"#;
        assert_eq!(value(&data(scalar)).unwrap_err().to_string(), "query returned a scalar, not a vector");
    }

    #[test]
    fn range_points_and_label_values() {
        let matrix = r#"{"resultType":"matrix","result":[{"metric":{},"values":[[10,"99.5"],[11,"NaN"],[12,"100"]]}]}"#;
        assert_eq!(points(&data(matrix)).unwrap(), vec![(10.0, 99.5), (12.0, 100.0)], "NaN is a gap");
        assert_eq!(points(&data(r#"{"resultType":"matrix","result":[]}"#)).unwrap(), vec![]);
        let two =
            r#"{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[]},{"metric":{"a":"2"},"values":[]}]}"#;
        assert_eq!(points(&data(two)).unwrap_err().to_string(), "query returned 2 series, not one");
        let vector = r#"{"resultType":"vector","result":[]}"#;
        assert_eq!(points(&data(vector)).unwrap_err().to_string(), "range query returned a vector, not a range vector");
        let nodes = r#"{"resultType":"vector","result":[
            {"metric":{"node":"10.0.0.2"},"value":[1,"1"]},{"metric":{"node":""},"value":[1,"1"]},
            {"metric":{"node":"10.0.0.1"},"value":[1,"1"]},{"metric":{},"value":[1,"1"]},
            {"metric":{"node":"10.0.0.2"},"value":[1,"1"]}]}"#;
        assert_eq!(label_values(&data(nodes), "node").unwrap(), ["10.0.0.1", "10.0.0.2"]);
        assert!(label_values(&data(matrix), "node").is_err());
    }

    #[test]
    fn urls_are_checked() {
        for (url, reason) in [
            ("localhost:9090", "must start with http:// or https://"),
            ("ftp://prometheus", "must start with http:// or https://"),
            ("http://", "has no host"),
        ] {
            let e = Prometheus::new(url, QUERY_TIMEOUT).unwrap_err().to_string();
            assert_eq!(e, format!("invalid --prometheus-url {url:?}: {reason}"));
        }
        let p = Prometheus::new("https://prometheus.monitoring:9090/prom/", QUERY_TIMEOUT).unwrap();
        assert_eq!(p.url(), "https://prometheus.monitoring:9090/prom");
    }
}
