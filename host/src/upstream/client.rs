//! The pooled HTTP(S) clients upstream calls go through: one shared
//! keep-alive pool, and one per upstream with its own TLS or HTTP version.

use super::connect::TimedConnector;
use crate::config::{UpstreamProtocol, UpstreamTlsConfig};
use crate::http::body::Body;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The pooled HTTP(S) client shared by proxying, plugins' outbound calls and
/// health checks.
pub type HttpClient = Client<TimedConnector<HttpsConnector<HttpConnector>>, Body>;

/// Connect timeout of a connection opened outside any route's call.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the shared client: keep-alive pool, no Nagle delay, HTTP/1.1,
/// per-request connect timeout (TLS handshake included).
pub fn http_client() -> HttpClient {
    client_for(None, UpstreamProtocol::Http1)
}

/// A client for one TLS setting and HTTP version.
pub(super) fn client_for(
    tls: Option<&UpstreamTlsConfig>,
    protocol: UpstreamProtocol,
) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .http2_only(protocol == UpstreamProtocol::H2);
    builder.build(TimedConnector::new(
        crate::tls::client::connector(connector, tls, protocol),
        DEFAULT_CONNECT_TIMEOUT,
    ))
}
