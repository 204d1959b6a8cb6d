//! https towards upstreams: the pooled client's TCP connector wrapped with
//! rustls. Without TLS settings it trusts the built-in web roots; an
//! upstream's `tls` may name its own CA bundle and the server name (SNI and
//! certificate check) to use instead of the target's host.

use super::config::{UpstreamProtocol, UpstreamTlsConfig};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use std::sync::Arc;

/// Wraps `http` so `https://` URIs go through TLS and `http://` ones stay
/// plain; ALPN offers only the HTTP version the upstream is configured for.
pub fn connector(
    mut http: HttpConnector,
    tls: Option<&UpstreamTlsConfig>,
    protocol: UpstreamProtocol,
) -> HttpsConnector<HttpConnector> {
    http.enforce_http(false);
    let roots = tls.and_then(|t| t.roots.clone()).unwrap_or_else(web_roots);
    let config = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    // The name was validated when the config loaded.
    let server_name = tls
        .and_then(|t| t.server_name.as_deref())
        .and_then(|name| ServerName::try_from(name.to_string()).ok());
    let builder = match server_name {
        Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => builder,
    };
    match protocol {
        UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(http),
        UpstreamProtocol::H2 => builder.enable_http2().wrap_connector(http),
    }
}

/// The Mozilla root set shipped with webpki-roots: the same everywhere,
/// independent of the host's certificate store.
fn web_roots() -> Arc<RootCertStore> {
    Arc::new(RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
}
