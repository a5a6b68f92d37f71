//! The HTTP plumbing shared by the sim's servers (API server, gateway, load tester):
//! the boxed response body, JSON and `Status` responses, and the accept loop.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::status::ApiError;

/// A response body: whole (JSON, text) or streamed (watches).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A body of these bytes, at once.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// `body` as `application/json` with `code`.
pub fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(full(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An API error as kube-apiserver answers it: its code and a `Status` body.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut response =
        json_response(StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.status());
    if let ApiError::TooManyRequests { retry_after } = e {
        response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(*retry_after));
    }
    response
}

/// Serves `handle` on `listener` over plain HTTP/1.1 and h2 until `stop`.
pub fn serve<F, Fut, B>(listener: TcpListener, stop: CancellationToken, handle: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(_) => continue,
                },
                () = stop.cancelled() => return,
            };
            let handle = handle.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(handle(req).await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = stop.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    });
}
