//! The plain-HTTP admin port: `/live`, `/ready` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::metrics::Metrics;
use crate::server::{Handler, status_response, text_response};

/// Ready means: a certificate is loaded and we are not shutting down.
#[derive(Debug, Default)]
pub struct Readiness {
    cert_loaded: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    pub fn set_cert_loaded(&self) {
        self.cert_loaded.store(true, Ordering::Release);
    }

    /// From SIGTERM on, `/ready` fails so the Service stops sending us reviews.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.cert_loaded.load(Ordering::Acquire) && !self.shutting_down.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

impl Admin {
    pub fn route<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/live" => text_response(StatusCode::OK, "ok\n"),
            "/ready" if self.readiness.is_ready() => text_response(StatusCode::OK, "ok\n"),
            "/ready" => text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            "/metrics" => {
                let mut response = text_response(StatusCode::OK, self.metrics.encode());
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                );
                response
            }
            other => status_response(StatusCode::NOT_FOUND, "NotFound", &format!("nothing at {other}")),
        }
    }
}

impl Handler for Admin {
    type Body = Full<Bytes>;
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        std::future::ready(self.route(&req))
    }
}
