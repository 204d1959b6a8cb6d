//! hyper's pooled HTTP(S) clients: what health checks, upgrades, and
//! upstreams with TLS or HTTP/2 go through (plain HTTP/1.1 requests use
//! `h1_pool`): one shared keep-alive pool, and one per upstream with its
//! own TLS or HTTP version.
//! Each is split per connection worker (`http::workers`), so a request
//! borrows a connection its own thread drives.

use super::connect::TimedConnector;
use crate::config::{UpstreamProtocol, UpstreamTlsConfig};
use crate::http::body::Body;
use crate::http::workers::{self, PerWorker};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// One keep-alive pool and the connector that fills it.
type Pool = Client<TimedConnector<HttpsConnector<HttpConnector>>, Body>;

/// The pooled HTTP(S) client shared by proxying, plugins' outbound calls and
/// health checks: one pool per connection worker, and one for every other
/// thread (health checks, calls made outside a client connection). A
/// pooled connection's task runs on the worker that opened it, so a request
/// never waits on another worker's thread to write or read for it.
#[derive(Clone)]
pub struct HttpClient {
    pools: Arc<PerWorker<Pool>>,
}

impl HttpClient {
    fn new(pool: impl Fn() -> Pool) -> HttpClient {
        HttpClient {
            pools: Arc::new(PerWorker::new(pool)),
        }
    }

    /// Sends `request` over this thread's pool.
    pub fn request(&self, request: http::Request<Body>) -> ResponseFuture {
        self.pools.local().request(request)
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("pools", &self.pools.slot_count())
            .finish()
    }
}

/// Connect timeout of a connection opened outside any route's call.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a keep-alive connection to an upstream may sit idle before it is closed.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections one worker keeps per target: a budget of 256 shared by the workers.
pub(super) static MAX_IDLE_PER_WORKER: LazyLock<usize> =
    LazyLock::new(|| 256usize.div_ceil(workers::count()));

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
    HttpClient::new(|| pool_for(tls, protocol))
}

/// One pool for one TLS setting and HTTP version.
fn pool_for(tls: Option<&UpstreamTlsConfig>, protocol: UpstreamProtocol) -> Pool {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(*MAX_IDLE_PER_WORKER)
        .http2_only(protocol == UpstreamProtocol::H2);
    builder.build(TimedConnector::new(
        crate::tls::client::connector(connector, tls, protocol),
        DEFAULT_CONNECT_TIMEOUT,
    ))
}
