//! The plain-HTTP admin port: `/live`, `/ready` and `/metrics` of the [`Runtime`].

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::runtime::Runtime;
use crate::web::{Handler, serve, status_response, text_response};

#[derive(Debug, Clone)]
pub struct Admin {
    pub runtime: Runtime,
}

impl Admin {
    pub fn route<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/live" => text_response(StatusCode::OK, "ok\n"),
            "/ready" => match self.runtime.readiness().check() {
                Ok(()) => text_response(StatusCode::OK, "ok\n"),
                Err(why) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
            },
            "/metrics" => {
                let mut response = text_response(StatusCode::OK, self.runtime.encode_metrics());
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

/// Serves `/live`, `/ready` and `/metrics` on `listener` until every component of
/// `runtime` has stopped, so `/ready` answers 503 through the whole drain.
pub fn spawn(runtime: &Runtime, listener: tokio::net::TcpListener, drain: std::time::Duration) {
    let handler = std::sync::Arc::new(Admin { runtime: runtime.clone() });
    runtime.spawn_last(move |stop| serve(listener, None, handler, stop, drain));
}

impl Handler for Admin {
    type Body = Full<Bytes>;
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        std::future::ready(self.route(&req))
    }
}
