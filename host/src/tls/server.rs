//! TLS termination on a listener: the certificate is chosen by SNI, ALPN
//! offers h2 and http/1.1, client certificates are verified against a CA
//! bundle when configured. The rustls config is rebuilt from its files on
//! [`TlsListener::reload`] and swapped atomically: handshakes in progress
//! finish with the config they started with.

use super::config::ListenerTlsConfig;
use super::identity::{self, ClientIdentity};
use super::{pem, provider, TlsError};
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the TLS handshake established, attached to every request of the
/// connection (as a request extension) for the proxy and the plugin context.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The verified client certificate's identity, with mTLS.
    pub client: Option<ClientIdentity>,
}

/// A listener's TLS settings and the rustls config currently built from them.
pub struct TlsListener {
    settings: ListenerTlsConfig,
    base_dir: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl TlsListener {
    /// Reads every certificate, key and CA file of `settings` (paths relative to `base_dir`).
    pub fn load(settings: &ListenerTlsConfig, base_dir: &Path) -> Result<TlsListener, TlsError> {
        let config = build(settings, base_dir)?;
        Ok(TlsListener {
            settings: settings.clone(),
            base_dir: base_dir.to_path_buf(),
            current: ArcSwap::from(config),
        })
    }

    /// Every file the config is built from, resolved against the config's directory.
    pub fn files(&self) -> Vec<PathBuf> {
        let settings = &self.settings;
        settings
            .certificates
            .iter()
            .flat_map(|c| [&c.cert, &c.key])
            .chain(settings.client_auth.iter().map(|a| &a.ca))
            .map(|p| self.base_dir.join(p))
            .collect()
    }

    /// Re-reads the files; on success new handshakes use them, on failure
    /// the previous config keeps serving.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.settings, &self.base_dir)?;
        self.current.store(config);
        Ok(())
    }

    /// Runs the server handshake on an accepted connection (bounded by a timeout).
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<(TlsStream<TcpStream>, TlsInfo)> {
        let acceptor = TlsAcceptor::from(self.current.load_full());
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let client = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| ClientIdentity::from_der(leaf));
        Ok((stream, TlsInfo { client }))
    }
}

/// Builds the rustls server config from the files.
fn build(settings: &ListenerTlsConfig, base_dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut certificates = Vec::with_capacity(settings.certificates.len());
    for entry in &settings.certificates {
        let (cert_path, key_path) = (base_dir.join(&entry.cert), base_dir.join(&entry.key));
        let chain = pem::certificates(&cert_path)?;
        let key = pem::private_key(&key_path)?;
        let names = identity::server_names(&chain[0]).map_err(|e| TlsError::file(&cert_path, e))?;
        let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            TlsError::file(
                &key_path,
                format!("not usable with {}: {e}", cert_path.display()),
            )
        })?;
        certificates.push(SniEntry {
            names,
            key: Arc::new(key),
        });
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match &settings.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let ca = base_dir.join(&auth.ca);
            let roots = pem::roots(&ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::file(&ca, format!("not a usable CA bundle: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver { certificates }));
    config.alpn_protocols = settings
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct SniEntry {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// Picks the first certificate valid for the client's SNI, else the first one.
#[derive(Debug)]
struct SniResolver {
    certificates: Vec<SniEntry>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_name = hello.server_name().and_then(|sni| {
            self.certificates.iter().find(|entry| {
                entry
                    .names
                    .iter()
                    .any(|name| identity::name_matches(name, sni))
            })
        });
        by_name
            .or_else(|| self.certificates.first())
            .map(|entry| entry.key.clone())
    }
}
