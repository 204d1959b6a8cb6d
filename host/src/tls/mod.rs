//! TLS with rustls (ring provider): termination on listeners (SNI, ALPN,
//! optional client certificates, certificate hot reload) and https to
//! upstreams (web roots or a configured CA, SNI).
//!
//! Listeners: [`server::TlsListener`] runs the handshake and hands the
//! client identity to the proxy as a [`server::TlsInfo`] request extension;
//! `reload::certificates` reloads certificate files like plugin files. Upstreams:
//! [`client::connector`] wraps the pooled client's TCP connector.
//! May use `config` only; the listener and the upstream client use it.

pub mod client;
pub mod config;
pub mod identity;
pub mod pem;
pub mod server;

pub use server::{TlsInfo, TlsListener};

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate, key or CA file that cannot be used, or a TLS setup failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{file}: {reason}")]
    File { file: PathBuf, reason: String },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

impl TlsError {
    fn file(path: &Path, reason: String) -> TlsError {
        TlsError::File {
            file: path.to_path_buf(),
            reason,
        }
    }
}

/// The one crypto provider the gateway uses (ring: no C toolchain beyond `cc`).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
