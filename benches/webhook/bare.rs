//! The reference server: bare hyper 1 + rustls (ring), nothing else. It reads the
//! request body and answers a canned AdmissionReview, so its throughput is the limit
//! for any webhook on this machine. The TLS setup is ours (`tls::CertStore`'s): TLS 1.3
//! and 1.2, ALPN h2 and http/1.1, the same hyper-util auto builder.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the webhook answers to `tests/fixtures/admission/set-image.json`, byte for
/// byte, so both servers send the same response.
pub const CANNED: &str = include_str!("canned-review.json");

/// The TLS config our server builds: ring, TLS 1.3 + 1.2, ALPN h2 + http/1.1.
pub fn acceptor(cert_pem: &[u8], key_pem: &[u8]) -> TlsAcceptor {
    let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>().expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem).expect("key PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// Serves the canned review on every connection of `listener`, forever.
pub async fn serve(listener: TcpListener, tls: TlsAcceptor) {
    let canned = Bytes::from_static(CANNED.as_bytes());
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (tls, builder, canned) = (tls.clone(), builder.clone(), canned.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(stream).await else { return };
            let service = service_fn(move |req: http::Request<Incoming>| {
                let canned = canned.clone();
                async move {
                    // Read the whole body, as any webhook must before it can answer.
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    std::hint::black_box(body);
                    let mut res = Response::new(Full::new(canned));
                    res.headers_mut()
                        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(res)
                }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
