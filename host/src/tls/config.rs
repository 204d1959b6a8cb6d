//! The TLS parts of the YAML config: termination on a listener, and https
//! (and HTTP/2) towards an upstream. Paths are relative to the config file.

use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

/// TLS termination on a listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// Certificates offered, chosen by the client's SNI against each
    /// certificate's DNS names; the first one when none matches or the
    /// client sent no SNI.
    pub certificates: Vec<CertificateConfig>,
    /// Client-certificate authentication (mTLS); off when absent.
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
    /// ALPN protocols offered, most preferred first: `h2`, `http/1.1`.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
}

/// ALPN protocols a listener may offer.
pub const ALPN_PROTOCOLS: [&str; 2] = ["h2", "http/1.1"];

fn default_alpn() -> Vec<String> {
    ALPN_PROTOCOLS.iter().map(|p| p.to_string()).collect()
}

/// One certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The leaf certificate first, then intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Which client certificates a listener accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM bundle of the CAs client certificates must chain to.
    pub ca: PathBuf,
    /// Refuse clients without a certificate (default); when false they are
    /// served, just without a client identity in the context.
    #[serde(default = "default_true")]
    pub required: bool,
}

fn default_true() -> bool {
    true
}

/// https towards an upstream; `tls: {}` uses the built-in web roots and the
/// target's host as the server name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM bundle of the CAs to trust instead of the built-in web roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Name sent as SNI and checked against the upstream's certificate;
    /// default: the target's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// The CAs of `ca`, read when the config loads.
    #[serde(skip)]
    pub roots: Option<Arc<rustls::RootCertStore>>,
}

/// Equal when the settings and the CAs read from `ca` are: a reload that
/// finds a new bundle under the same path is a change.
impl PartialEq for UpstreamTlsConfig {
    fn eq(&self, other: &Self) -> bool {
        let same_roots = match (&self.roots, &other.roots) {
            (Some(a), Some(b)) => a.roots == b.roots,
            (a, b) => a.is_none() && b.is_none(),
        };
        self.ca == other.ca && self.server_name == other.server_name && same_roots
    }
}

/// The HTTP version spoken to an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default; needed for WebSocket upgrades).
    #[default]
    Http1,
    /// HTTP/2 only: negotiated with ALPN over TLS, prior knowledge (h2c) without.
    H2,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ca(name: &str) -> UpstreamTlsConfig {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        UpstreamTlsConfig {
            ca: Some("ca.pem".into()),
            server_name: None,
            roots: Some(Arc::new(roots)),
        }
    }

    #[test]
    fn a_new_bundle_under_the_same_path_is_a_change() {
        let old = with_ca("old.example");
        assert_eq!(old, old.clone());
        assert_ne!(old, with_ca("new.example"));
        assert_ne!(old, UpstreamTlsConfig::default());
    }
}
