//! The serving certificate: read from PEM files (or handed over in memory by the
//! self-signed mode, [`selfsigned`]), swapped without a lock when it changes, kept as it
//! is when the new pair does not parse.
//!
//! ```text
//!  tls.crt, tls.key ──(timer)──▶ parse + key match ──ok──▶ ArcSwap<CertifiedKey> ◀── handshakes
//!  (or the Secret's)                     └─error──▶ log, keep the old one
//! ```

pub mod authority;
pub mod generate;
pub mod selfsigned;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

/// How often the files are re-read by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// Re-reading more often than this is pointless work.
pub const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: String },
    #[error("{path}: bad PEM certificate: {source}")]
    BadCertificate { path: String, source: rustls::pki_types::pem::Error },
    #[error("{path}: no usable PEM private key: {source}")]
    BadKey { path: String, source: rustls::pki_types::pem::Error },
    #[error("{cert} and {key} do not form a usable pair: {source}")]
    Pair { cert: String, key: String, source: rustls::Error },
    #[error("tls configuration: {0}")]
    Config(rustls::Error),
}

/// The ring provider, the one crypto backend of this binary.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and key pair, served from memory.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    /// Where the pair comes from, as error messages name it: two file paths, or the
    /// keys of a Secret.
    cert_origin: String,
    key_origin: String,
    /// Set when the pair is re-read from files.
    files: Option<(PathBuf, PathBuf)>,
    provider: Arc<CryptoProvider>,
    /// The PEM last loaded, to tell a change from a re-read.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl CertStore {
    /// Loads the pair from files; fails when it does not parse (the server cannot start
    /// without it). [`CertStore::reload`] re-reads them.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
        let mut store =
            Self::parse(cert_path.display().to_string(), key_path.display().to_string(), cert_pem, key_pem)?;
        store.files = Some((cert_path.to_owned(), key_path.to_owned()));
        Ok(Arc::new(store))
    }

    /// Serves a pair held in memory (`origin` names it in errors, e.g. a Secret); fed
    /// by [`CertStore::replace`] afterwards.
    pub fn from_pem(origin: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<Self>, TlsError> {
        let (cert, key) = (format!("{origin}: tls.crt"), format!("{origin}: tls.key"));
        Ok(Arc::new(Self::parse(cert, key, cert_pem.to_vec(), key_pem.to_vec())?))
    }

    fn parse(cert_origin: String, key_origin: String, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Self, TlsError> {
        let provider = provider();
        let key = certified_key(&cert_pem, &key_pem, &cert_origin, &key_origin, &provider)?;
        Ok(Self {
            current: ArcSwap::from_pointee(key),
            cert_origin,
            key_origin,
            files: None,
            provider,
            loaded: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// Re-reads the files (a store held in memory has none: `Ok(false)`). `Ok(true)` when
    /// a new pair is now served, `Ok(false)` when nothing changed, `Err` when it changed
    /// but does not parse (the old pair stays).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let Some((cert_path, key_path)) = &self.files else { return Ok(false) };
        let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
        self.replace(&cert_pem, &key_pem)
    }

    /// Serves this pair from the next handshake on, as [`CertStore::reload`] does.
    pub fn replace(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, TlsError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(false);
        }
        let key = certified_key(cert_pem, key_pem, &self.cert_origin, &self.key_origin, &self.provider)?;
        self.current.store(Arc::new(key));
        *loaded = (cert_pem.to_vec(), key_pem.to_vec());
        Ok(true)
    }

    /// The leaf certificate now served.
    pub fn current_leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }

    /// A rustls server config over this store: TLS 1.3 and 1.2, ALPN h2 and http/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Re-reads the files every `every`, logging each swap and each rejected pair.
    /// A zero interval is raised to [`MIN_RELOAD_INTERVAL`]; ends with `stop`.
    pub async fn reload_loop(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
        on_result: impl Fn(&Result<bool, TlsError>) + Send + 'static,
    ) {
        let mut ticker = crate::runtime::Ticker::new(every.max(MIN_RELOAD_INTERVAL), stop);
        while ticker.next().await {
            let store = self.clone();
            let result = match tokio::task::spawn_blocking(move || store.reload()).await {
                Ok(result) => result,
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload task failed");
                    continue;
                }
            };
            match &result {
                Ok(true) => tracing::info!(cert = %self.cert_origin, "serving a new certificate"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "certificate reload failed; still serving the previous one"),
            }
            on_result(&result);
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.to_owned(), source });
    Ok((read(cert)?, read(key)?))
}

fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_origin: &str,
    key_origin: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadCertificate { path: cert_origin.to_owned(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_origin.to_owned() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|source| TlsError::BadKey { path: key_origin.to_owned(), source })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Pair {
        cert: cert_origin.to_owned(),
        key: key_origin.to_owned(),
        source,
    })
}
