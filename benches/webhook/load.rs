//! The load driver: a closed loop over keep-alive HTTP/1.1 connections over TLS, one
//! per worker, each sending the next review as soon as the last answer arrived (what
//! `hey -c N` does). Every answer is checked: status 200, an AdmissionReview v1 whose
//! `response.uid` is the request's. The same code drives both servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One load run.
#[derive(Debug, Clone)]
pub struct Load {
    pub addr: SocketAddr,
    pub path: String,
    pub body: Bytes,
    /// The uid every answer must echo.
    pub uid: String,
    pub concurrency: usize,
    /// Requests in this first stretch are sent but not counted (connections, caches).
    pub warmup: Duration,
    pub duration: Duration,
    /// A new connection, with its TLS handshake, for every request (a certificate
    /// rotation is then met by every handshake), rather than one kept alive per worker.
    pub fresh: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Latency of every counted request that succeeded.
    pub latencies: Vec<Duration>,
    /// The measured stretch.
    pub elapsed: Duration,
    pub failures: usize,
    pub first_failure: Option<String>,
}

impl Report {
    pub fn requests(&self) -> usize {
        self.latencies.len()
    }

    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile (0..=1) of the latencies; `latencies` must be sorted.
    pub fn quantile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i]
    }

    /// Pools `other` into `self` (several rounds of one point).
    pub fn merge(&mut self, other: Report) {
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
        self.failures += other.failures;
        self.first_failure = self.first_failure.take().or(other.first_failure);
    }

    pub fn sort(&mut self) {
        self.latencies.sort_unstable();
    }
}

/// A client config trusting only `ca_pem`, offering http/1.1.
pub fn connector(ca_pem: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Runs `load` and returns the pooled report (latencies sorted).
pub async fn run(load: &Load, connector: &TlsConnector) -> Report {
    let start = Instant::now();
    let (measure_from, until) = (start + load.warmup, start + load.warmup + load.duration);
    let workers: Vec<_> = (0..load.concurrency)
        .map(|_| tokio::spawn(worker(load.clone(), connector.clone(), measure_from, until)))
        .collect();
    let mut report = Report { elapsed: load.duration, ..Report::default() };
    for worker in workers {
        let mut one = worker.await.unwrap_or_else(|e| Report {
            failures: 1,
            first_failure: Some(format!("worker panicked: {e}")),
            ..Report::default()
        });
        one.elapsed = Duration::ZERO;
        report.merge(one);
    }
    report.sort();
    report
}

async fn worker(load: Load, connector: TlsConnector, measure_from: Instant, until: Instant) -> Report {
    let mut report = Report::default();
    let fail = |report: &mut Report, why: String| {
        report.failures += 1;
        report.first_failure.get_or_insert(why);
    };
    let mut sender = match connect(&connector, load.addr).await {
        Ok(sender) => sender,
        Err(e) => {
            fail(&mut report, format!("connect: {e}"));
            return report;
        }
    };
    let host = "localhost";
    loop {
        let sent = Instant::now();
        if sent >= until {
            break;
        }
        let req = Request::post(load.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(load.body.clone()))
            .expect("request");
        let answer = async {
            sender.ready().await.map_err(|e| format!("connection: {e}"))?;
            let res = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
            let status = res.status();
            let body = res.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
            if status != http::StatusCode::OK {
                return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)));
            }
            check(&body, &load.uid)
        };
        match answer.await {
            Ok(()) => {
                if sent >= measure_from {
                    report.latencies.push(sent.elapsed());
                }
                if !load.fresh {
                    continue;
                }
            }
            Err(why) => fail(&mut report, why),
        }
        // A broken connection is replaced, so one failure does not end the worker; with
        // `fresh`, every request gets a new one.
        match connect(&connector, load.addr).await {
            Ok(s) => sender = s,
            Err(e) => {
                fail(&mut report, format!("reconnect: {e}"));
                return report;
            }
        }
    }
    report
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(connector: &TlsConnector, addr: SocketAddr) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A well-formed AdmissionReview v1 answer echoing `uid`.
pub fn check(body: &[u8], uid: &str) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Review {
        api_version: String,
        kind: String,
        response: Answer,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        uid: String,
        #[serde(rename = "allowed")]
        _allowed: bool,
    }
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| format!("not an AdmissionReview answer ({e}): {}", String::from_utf8_lossy(body)))?;
    if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
        return Err(format!("answer is {} {}", review.api_version, review.kind));
    }
    if review.response.uid != uid {
        return Err(format!("answer uid {:?}, request uid {uid:?}", review.response.uid));
    }
    Ok(())
}
