//! A local HTTP(S) server for the tests of what the analysis calls: it answers as the
//! test says, by attempt, and records every request it received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The request target as sent: the path, or the whole URL when sent to a proxy.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Waited before answering.
    pub delay: Duration,
    pub content_type: Option<&'static str>,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Self {
        Self { status, body: body.to_owned(), delay: Duration::ZERO, content_type: None }
    }

    /// A JSON body, as Prometheus answers.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self { content_type: Some("application/json"), ..Self::new(status, &body.to_string()) }
    }
}

type Respond = dyn Fn(usize, &Received) -> Reply + Send + Sync;

/// A server on 127.0.0.1; stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Plain HTTP; `respond` gets the 1-based number of the request and the request.
    pub async fn start(respond: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Self {
        Self::run(None, Arc::new(respond)).await
    }

    /// HTTPS with `config`.
    pub async fn start_tls(
        config: Arc<rustls::ServerConfig>,
        respond: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::run(Some(tokio_rustls::TlsAcceptor::from(config)), Arc::new(respond)).await
    }

    async fn run(tls: Option<tokio_rustls::TlsAcceptor>, respond: Arc<Respond>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
        let addr = listener.local_addr().expect("the bound address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, respond, tls) = (log.clone(), respond.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, log.clone(), respond.clone()));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        // A client that refuses our certificate ends the handshake: not an error here.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { addr, received, task }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("the log").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    log: Arc<Mutex<Vec<Received>>>,
    respond: Arc<Respond>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string());
    let target = parts.uri.to_string();
    let received = Received { method: parts.method.to_string(), path, target, headers: parts.headers, body };
    let n = {
        let mut log = log.lock().expect("the log");
        log.push(received.clone());
        log.len()
    };
    let reply = respond(n, &received);
    tokio::time::sleep(reply.delay).await;
    let mut response = hyper::Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("a valid status");
    if let Some(content_type) = reply.content_type {
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    }
    Ok(response)
}

/// A server configuration with a fresh self-signed certificate for `localhost` and
/// 127.0.0.1, which no platform root trusts.
pub fn self_signed() -> Arc<rustls::ServerConfig> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names).expect("a certificate");
    let key = rustls::pki_types::PrivateKeyDer::try_from(signing_key.serialize_der()).expect("a private key");
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("a server config");
    Arc::new(config)
}
