//! The one HTTP client builder of everything the analysis calls: Prometheus, webhooks
//! and alert providers. TLS is our ring provider with the platform's roots; a
//! [`Resolver`] lets a controller outside the cluster reach cluster Service names.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls_platform_verifier::BuilderVerifierExt;

#[cfg(test)]
pub(crate) mod recorder;

/// Host names answered from a table before the system resolver: `--resolve
/// flagger-loadtester.test=127.0.0.1:8089`, like curl's. A Service name matches in
/// each of its forms (`svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`), and a port
/// in the table is used when the URL names none. URLs are never rewritten: the Host
/// header stays the one written in the Canary.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    names: Arc<BTreeMap<String, SocketAddr>>,
}

/// A Service name without its optional `.svc` or `.svc.cluster.local` suffix.
fn short(host: &str) -> &str {
    let host = host.trim_end_matches('.');
    host.strip_suffix(".svc.cluster.local").or_else(|| host.strip_suffix(".svc")).unwrap_or(host)
}

impl Resolver {
    pub fn new(names: impl IntoIterator<Item = (String, SocketAddr)>) -> Self {
        let names = names.into_iter().map(|(host, addr)| (short(&host.to_ascii_lowercase()).to_owned(), addr));
        Self { names: Arc::new(names.collect()) }
    }

    /// One `HOST=IP:PORT` entry, as `--resolve` takes it.
    pub fn parse_entry(entry: &str) -> Result<(String, SocketAddr), String> {
        let (host, addr) = entry.split_once('=').ok_or_else(|| format!("{entry:?} is not HOST=IP:PORT"))?;
        if host.is_empty() {
            return Err(format!("{entry:?} names no host"));
        }
        let addr = addr.parse().map_err(|e| format!("{entry:?}: {addr:?} is not IP:PORT: {e}"))?;
        Ok((host.to_owned(), addr))
    }

    /// The address of `host` in the table, if it is there.
    pub fn lookup(&self, host: &str) -> Option<SocketAddr> {
        self.names.get(short(&host.to_ascii_lowercase())).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        if let Some(addr) = self.lookup(name.as_str()) {
            let addrs: Addrs = Box::new(std::iter::once(addr));
            return Box::pin(std::future::ready(Ok(addrs)));
        }
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// How one client talks.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// The deadline of one whole request.
    pub timeout: Option<Duration>,
    /// Accept any server certificate (`insecureSkipVerify`).
    pub insecure_skip_verify: bool,
    /// An HTTP(S) proxy for every request.
    pub proxy: Option<&'a str>,
    /// Sent with every request (authorization, custom headers).
    pub headers: HeaderMap,
    pub resolver: Option<&'a Resolver>,
}

/// A client built as `options` say; the error says what was wrong.
pub fn client(options: &Options<'_>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().default_headers(options.headers.clone());
    if let Some(timeout) = options.timeout {
        builder = builder.timeout(timeout);
    }
    if options.insecure_skip_verify {
        // reqwest builds the permissive config itself, from the process provider.
        let _ = crate::tls::provider().as_ref().clone().install_default();
        builder = builder.tls_danger_accept_invalid_certs(true);
    } else {
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_platform_verifier())
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth();
        builder = builder.tls_backend_preconfigured(tls);
    }
    match options.proxy {
        Some(proxy) => {
            let proxy = reqwest::Proxy::all(proxy).map_err(|e| format!("invalid proxy {proxy:?}: {e}"))?;
            builder = builder.proxy(proxy);
        }
        // The environment's HTTP_PROXY is not ours to apply to cluster calls.
        None => builder = builder.no_proxy(),
    }
    if let Some(resolver) = options.resolver.filter(|r| !r.is_empty()) {
        builder = builder.dns_resolver(Arc::new(resolver.clone()));
    }
    builder.build().map_err(|e| error_chain(&e))
}

/// An error and its causes, `: `-separated, without a cause that repeats its parent.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(s) = next {
        let text = match s.downcast_ref::<reqwest::Error>() {
            Some(r) => strip_url(r),
            None => s.to_string(),
        };
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        next = s.source();
    }
    parts.join(": ")
}

/// reqwest's words without the URL it repeats (a query or a webhook address).
fn strip_url(r: &reqwest::Error) -> String {
    let text = r.to_string();
    match r.url() {
        Some(url) => text.replace(&format!(" for url ({url})"), ""),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_match_in_every_form() {
        let addr: SocketAddr = "127.0.0.1:8089".parse().unwrap();
        let r = Resolver::new([("flagger-loadtester.test".to_owned(), addr)]);
        for host in [
            "flagger-loadtester.test",
            "flagger-loadtester.test.svc",
            "flagger-loadtester.test.svc.cluster.local",
            "Flagger-Loadtester.TEST.svc.cluster.local.",
        ] {
            assert_eq!(r.lookup(host), Some(addr), "{host}");
        }
        assert_eq!(r.lookup("flagger-loadtester.prod"), None);
        assert_eq!(r.lookup("flagger-loadtester"), None);
    }

    #[test]
    fn entries_parse_like_curls_resolve() {
        assert_eq!(
            Resolver::parse_entry("hooks.test=127.0.0.1:9000").unwrap(),
            ("hooks.test".to_owned(), "127.0.0.1:9000".parse().unwrap())
        );
        assert!(Resolver::parse_entry("hooks.test").unwrap_err().contains("not HOST=IP:PORT"));
        assert!(Resolver::parse_entry("=127.0.0.1:1").unwrap_err().contains("names no host"));
        assert!(Resolver::parse_entry("h=localhost:1").unwrap_err().contains("is not IP:PORT"));
    }

    #[tokio::test]
    async fn a_resolved_name_reaches_the_table_port_with_its_own_host_header() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let resolver = Resolver::new([("flagger-loadtester.test".to_owned(), addr)]);
        let c = client(&Options { resolver: Some(&resolver), ..Options::default() }).unwrap();
        let body = c.get("http://flagger-loadtester.test/gate/check").send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "ok");
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /gate/check HTTP/1.1\r\n"), "{request}");
        assert!(request.to_ascii_lowercase().contains("host: flagger-loadtester.test\r\n"), "{request}");
    }
}
