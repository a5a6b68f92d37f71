//! The batcher against a mock Prometheus that counts its queries and answers slowly.

use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Answers every query after `delay` with `body` for the status family and `latency`
/// for the bucket one; counts the queries.
struct Mock {
    url: String,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const STATUS: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
    {"metric":{"route":"test_a-canary_r","node":"10.0.0.1","code":"200"},"value":[1,"0.9"]},
    {"metric":{"route":"test_a-canary_r","node":"10.0.0.1","code":"500"},"value":[1,"0.1"]},
    {"metric":{"route":"test_a-canary_r","node":"10.0.0.2","code":"200"},"value":[1,"1"]},
    {"metric":{"route":"test_b-canary_r","node":"10.0.1.1","code":"200"},"value":[1,"2"]}]}}"#;
const LATENCY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
    {"metric":{"route":"test_a-canary_r","node":"10.0.0.1","le":"100"},"value":[1,"0"]},
    {"metric":{"route":"test_a-canary_r","node":"10.0.0.1","le":"200"},"value":[1,"1"]},
    {"metric":{"route":"test_a-canary_r","node":"10.0.0.1","le":"+Inf"},"value":[1,"1"]}]}}"#;

async fn mock(delay: Duration) -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = queries.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let Ok(n) = socket.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let body = if head.contains("latency") { LATENCY } else { STATUS };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Mock { url, queries, task }
}

fn selection(prefix: &str, nodes: Option<&[&str]>) -> Selection {
    let nodes = nodes.map(|n| n.iter().map(|s| (*s).to_owned()).collect());
    Selection { route_prefix: prefix.to_owned(), nodes }
}

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn concurrent_releases_share_one_query_per_family_and_window() {
    let mock = mock(Duration::from_millis(200)).await;
    let counter = Counter::default();
    let prometheus = Prometheus::new(&mock.url, Duration::from_secs(5)).unwrap().counted(counter.clone());
    let batcher = Arc::new(Batcher::new(prometheus, Duration::from_secs(1)));
    let releases = (0..20).map(|i| {
        let batcher = batcher.clone();
        async move {
            // Not aligned: the later ones find the query in flight.
            tokio::time::sleep(Duration::from_millis(5 * i)).await;
            let a = selection("test_a-canary_", Some(&["10.0.0.1"]));
            let (requests, rate, p99) = tokio::join!(
                batcher.requests(&a, MINUTE),
                batcher.success_rate(&a, MINUTE),
                batcher.request_duration(&a, MINUTE)
            );
            (requests.unwrap(), rate.unwrap(), p99.unwrap())
        }
    });
    let values = futures_util::future::join_all(releases).await;
    for v in &values {
        assert_eq!(*v, (Some(60.0), Some(90.0), Some(199.0)));
    }
    assert_eq!(mock.queries.load(Ordering::SeqCst), 2, "one status query and one latency query for 20 releases");
    assert_eq!(counter.get(), 2);

    // Within the max age: the answer is reused; another window is another key.
    let b = selection("test_b-canary_", None);
    assert_eq!(batcher.success_rate(&b, MINUTE).await.unwrap(), Some(100.0));
    assert_eq!(batcher.success_rate(&b, Duration::from_secs(30)).await.unwrap(), Some(100.0));
    assert_eq!(counter.get(), 3);
    // Older than the max age: asked again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(batcher.requests(&b, MINUTE).await.unwrap(), Some(120.0));
    assert_eq!(counter.get(), 4);
    assert_eq!(batcher.flights.lock().unwrap().len(), 1, "the stale answers are forgotten");
    // No series for a release: no values, as its own query.
    let none = selection("test_c-canary_", None);
    assert_eq!(batcher.request_duration(&none, MINUTE).await.unwrap(), None);
}

#[tokio::test]
async fn a_failed_query_fails_every_waiting_release_alike() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let counter = Counter::default();
    let prometheus = Prometheus::new(&url, Duration::from_secs(2)).unwrap().counted(counter.clone());
    let batcher = Batcher::new(prometheus, Duration::from_secs(1));
    let a = selection("test_a-canary_", None);
    let errors = futures_util::future::join_all((0..5).map(|_| batcher.success_rate(&a, MINUTE))).await;
    let want = format!("prometheus at {url} unreachable: ");
    for e in &errors {
        let e = e.as_ref().unwrap_err().to_string();
        assert!(e.starts_with(&want), "{e}");
        assert_eq!(e, errors[0].as_ref().unwrap_err().to_string());
    }
    assert_eq!(counter.get(), 1);
}

#[test]
fn batched_queries_keep_route_node_and_the_tag() {
    assert_eq!(
        Family::Status.query(MINUTE),
        r#"sum by (route, node, code) ( rate( apisix_http_status{ route=~".+-canary_.+" }[1m] ) )"#
    );
    assert_eq!(
        Family::Latency.query(Duration::from_secs(90)),
        r#"sum by (route, node, le) ( rate( apisix_http_latency_bucket{ type=~"request", route=~".+-canary_.+" }[1m30s] ) )"#
    );
}
