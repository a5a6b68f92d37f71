//! The HTTPS webhook server: one port, every webhook path, graceful shutdown.
//!
//! [`Router`] answers one request without a socket (tests push fixture files through
//! it); [`serve`] runs any [`Handler`] on a listener, with or without TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};

use crate::admission::{self, Answer, Hook, Outcome};
use crate::conversion;
use crate::metrics::Metrics;
use crate::release::lock::Transition;
pub use crate::web::{Handler, json_response, serve, status_response, text_response};

/// kube-apiserver never sends more; anything larger is not a review.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// A request whose body has not arrived by then gets 408.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

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
        let outcome = Outcome::of(&response);
        let elapsed = start.elapsed();
        self.metrics.observe_request(path, outcome.as_str(), elapsed);
        // Releases, denials, warnings and errors are worth a line at info; the many
        // reviews that change nothing are at debug, counted by `webhook_requests`.
        let notable = !response.allowed
            || response.warnings.as_ref().is_some_and(|w| !w.is_empty())
            || summary.transition.as_ref().is_some_and(|t| *t != Transition::Untouched);
        macro_rules! log_review {
            ($level:expr) => {
                tracing::event!(
                    $level,
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
                    denial = if response.allowed { "" } else { response.result.message.as_str() },
                    elapsed_us = elapsed.as_micros() as u64,
                    "admission review"
                )
            };
        }
        if notable {
            log_review!(tracing::Level::INFO);
        } else {
            log_review!(tracing::Level::DEBUG);
        }
        json_response(StatusCode::OK, &Answer(&response))
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

pub mod run;
