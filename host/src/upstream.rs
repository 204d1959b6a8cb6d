//! Upstreams: named groups of servers, balanced round-robin, reached through
//! one pooled keep-alive client (or their own, when they speak https with
//! their own CA or server name, or HTTP/2).

use crate::body::Body;
use crate::config::{UpstreamConfig, UpstreamProtocol, UpstreamTlsConfig};
use arc_swap::ArcSwap;
use http::uri::{Authority, PathAndQuery, Scheme};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The pooled HTTP client shared by proxying and plugins' outbound calls.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds the shared client: keep-alive pool, no Nagle delay, HTTP/1.1.
pub fn http_client() -> HttpClient {
    client_for(None, UpstreamProtocol::Http1)
}

/// A client for one TLS setting and HTTP version.
fn client_for(tls: Option<&UpstreamTlsConfig>, protocol: UpstreamProtocol) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .http2_only(protocol == UpstreamProtocol::H2);
    builder.build(crate::tls::client::connector(connector, tls, protocol))
}

/// A named group of interchangeable servers.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    targets: Vec<Authority>,
    next: AtomicUsize,
    pub timeout: Duration,
    scheme: Scheme,
    /// Its own client when its TLS settings or HTTP version differ from the shared one's.
    client: Option<HttpClient>,
}

impl Upstream {
    /// An upstream from its (already validated) config.
    pub fn new(name: &str, config: &UpstreamConfig) -> Upstream {
        Upstream {
            name: name.to_string(),
            targets: config
                .targets
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect(),
            next: AtomicUsize::new(0),
            timeout: Duration::from_millis(config.timeout_ms),
            scheme: match config.tls {
                Some(_) => Scheme::HTTPS,
                None => Scheme::HTTP,
            },
            client: (config.tls.is_some() || config.protocol != UpstreamProtocol::Http1)
                .then(|| client_for(config.tls.as_ref(), config.protocol)),
        }
    }

    /// The next target, round-robin.
    pub fn pick(&self) -> &Authority {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.targets[i % self.targets.len()]
    }
}

/// Why an upstream call produced no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error("upstream `{upstream}` ({target}) did not answer within {timeout:?}")]
    Timeout {
        upstream: String,
        target: String,
        timeout: Duration,
    },
    #[error("upstream `{upstream}` ({target}) is unreachable: {message}")]
    Unreachable {
        upstream: String,
        target: String,
        message: String,
    },
}

impl UpstreamError {
    /// The status the client gets: 504 for a timeout, 502 otherwise.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Unreachable { .. } => http::StatusCode::BAD_GATEWAY,
        }
    }
}

/// Sends `request` (whose URI holds only path and query) to the next target
/// of `upstream`, under the upstream's timeout.
pub async fn send(
    client: &HttpClient,
    upstream: &Upstream,
    mut request: http::Request<Body>,
    timeout: Option<Duration>,
) -> Result<http::Response<Incoming>, UpstreamError> {
    let target = upstream.pick().clone();
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(upstream.scheme.clone());
    parts.authority = Some(target.clone());
    parts.path_and_query = Some(path);
    *request.uri_mut() =
        http::Uri::from_parts(parts).expect("scheme, authority and path make a URI");
    let timeout = timeout.unwrap_or(upstream.timeout);
    let client = upstream.client.as_ref().unwrap_or(client);
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(UpstreamError::Unreachable {
            upstream: upstream.name.clone(),
            target: target.to_string(),
            message: error_chain(&e),
        }),
        Err(_) => Err(UpstreamError::Timeout {
            upstream: upstream.name.clone(),
            target: target.to_string(),
            timeout,
        }),
    }
}

/// An error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The current upstreams by name, swapped as a whole on reload; shared by
/// the proxy (through the gateway) and plugins' outbound calls.
#[derive(Default)]
pub struct UpstreamDirectory {
    current: ArcSwap<HashMap<String, Arc<Upstream>>>,
}

impl UpstreamDirectory {
    /// Looks an upstream up by name.
    pub fn get(&self, name: &str) -> Option<Arc<Upstream>> {
        self.current.load().get(name).cloned()
    }

    /// Publishes a new set (on start and reload).
    pub fn publish(&self, upstreams: HashMap<String, Arc<Upstream>>) {
        self.current.store(Arc::new(upstreams));
    }
}
