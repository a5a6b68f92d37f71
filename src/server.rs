//! The HTTPS webhook server: one port, every webhook path, graceful shutdown.
//!
//! [`Router`] answers one request without a socket (tests push fixture files through
//! it); [`serve`] runs any [`Handler`] on a listener, with or without TLS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::admission::{self, Hook, ReviewResponse};
use crate::conversion;
use crate::metrics::Metrics;
use crate::release::lock::Transition;

/// kube-apiserver never sends more; anything larger is not a review.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// A request head must arrive within this time.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle h2 connections are pinged so dead peers are noticed.
pub const HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
/// A request whose body has not arrived by then gets 408.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not finished its TLS handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// Answers one HTTP request.
pub trait Handler: Send + Sync + 'static {
    type Body: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static;
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Self::Body>> + Send;
}

/// The webhook paths.
#[derive(Debug, Clone)]
pub struct Router {
    metrics: Arc<Metrics>,
}

impl Router {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }

    /// Answers one request; never panics, never fails: errors are HTTP answers.
    pub async fn route<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let start = Instant::now();
        let _in_flight = self.metrics.in_flight();
        let endpoint = match (Hook::from_path(req.uri().path()), req.uri().path()) {
            (Some(hook), _) => Endpoint::Admission(hook),
            (None, conversion::PATH) => Endpoint::Conversion,
            (None, other) => {
                return status_response(StatusCode::NOT_FOUND, "NotFound", &format!("no webhook at {other}"));
            }
        };
        let path = endpoint.path();
        let refuse = |code: StatusCode, reason: &str, message: &str| {
            self.metrics.observe_request(path, "refused", start.elapsed());
            status_response(code, reason, message)
        };
        if req.method() != Method::POST {
            return refuse(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "webhooks accept POST only");
        }
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", TOO_LARGE);
        }
        let collect = Limited::new(req.into_body(), MAX_BODY_BYTES).collect();
        let body = match tokio::time::timeout(BODY_TIMEOUT, collect).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", TOO_LARGE);
            }
            Ok(Err(e)) => return refuse(StatusCode::BAD_REQUEST, "BadRequest", &format!("cannot read body: {e}")),
            Err(_) => return refuse(StatusCode::REQUEST_TIMEOUT, "Timeout", "request body not received in time"),
        };
        match endpoint {
            Endpoint::Admission(hook) => self.admission(hook, &body, start),
            Endpoint::Conversion => self.conversion(&body, start),
        }
    }

    fn admission(&self, hook: Hook, body: &[u8], start: Instant) -> Response<Full<Bytes>> {
        let path = hook.path();
        let (response, summary) = admission::review(hook, body);
        let outcome = response.outcome();
        let elapsed = start.elapsed();
        self.metrics.observe_request(path, outcome.as_str(), elapsed);
        tracing::info!(
            path,
            uid = %summary.uid,
            kind = %summary.kind,
            namespace = %summary.namespace,
            name = %summary.name,
            operation = %summary.operation,
            dry_run = summary.dry_run,
            allowed = response.allowed,
            outcome = outcome.as_str(),
            transition = summary.transition.as_ref().map(Transition::name).unwrap_or_default(),
            denial = response.status.as_ref().map(|s| s.message.as_str()).unwrap_or_default(),
            elapsed_us = elapsed.as_micros() as u64,
            "admission review"
        );
        json_response(StatusCode::OK, &ReviewResponse::from(response))
    }

    fn conversion(&self, body: &[u8], start: Instant) -> Response<Full<Bytes>> {
        let review = conversion::review(body);
        let (uid, ok, message, count) = match &review.response {
            Some(r) => (r.uid.as_str(), r.result.is_success(), r.result.message.as_str(), r.converted_objects.len()),
            None => ("", false, "", 0),
        };
        let outcome = if ok { "converted" } else { "failed" };
        let elapsed = start.elapsed();
        self.metrics.observe_request(conversion::PATH, outcome, elapsed);
        tracing::info!(
            path = conversion::PATH,
            uid,
            outcome,
            objects = count,
            failure = message,
            elapsed_us = elapsed.as_micros() as u64,
            "conversion review"
        );
        json_response(StatusCode::OK, &review)
    }
}

/// What a path serves.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Admission(Hook),
    Conversion,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Admission(hook) => hook.path(),
            Endpoint::Conversion => conversion::PATH,
        }
    }
}

const TOO_LARGE: &str = "request body is larger than 3 MiB";

impl Handler for Router {
    type Body = Full<Bytes>;
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        self.route(req)
    }
}

/// A JSON body with the given status.
pub fn json_response(code: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            *response.status_mut() = code;
            response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode response: {e}")),
    }
}

/// A plain-text body with the given status.
pub fn text_response(code: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A Kubernetes `Status` object, the error body every Kubernetes client understands.
pub fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    json_response(code, &status)
}

/// Serves `handler` on `listener` (over TLS when `tls` is given) until `shutdown`
/// fires, then lets in-flight requests finish for up to `drain`.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper applies no header timeout: a client that sends half a
    // request head would hold its task until shutdown.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(HTTP2_KEEPALIVE));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(req).await) }
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => {
                    // A handshake still running at shutdown is abandoned, not drained.
                    let handshake = tokio::select! {
                        h = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => h,
                        () = shutdown.cancelled() => return,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                            watcher.watch(conn).await
                        }
                        Ok(Err(e)) => return log_handshake_error(peer, &e.to_string()),
                        Err(_) => return log_handshake_error(peer, "handshake timed out"),
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(?drain, "connections still open after the drain timeout; closing them");
    }
}

fn log_handshake_error(peer: SocketAddr, error: &str) {
    tracing::debug!(%peer, error, "tls handshake failed");
}

pub mod run;
