//! WebSocket proxying: an HTTP/1.1 `Upgrade: websocket` request goes
//! through the route's request hooks like any other (so auth applies to the
//! handshake), then to the upstream with its upgrade headers; when the
//! upstream answers `101 Switching Protocols`, the two upgraded connections
//! are joined by a tunnel task ([`crate::http::tunnel`]) that copies bytes both
//! ways until either side closes or it is idle too long. The tunnel outlives
//! the request (upstream timeouts cover the handshake only) but keeps its
//! connection's slot and gauge. Response hooks do not run on the `101`.

use crate::http::body::{empty, Body};
use crate::http::tunnel::{self, TunnelTerms};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// A client's pending switch to WebSocket.
pub struct Upgrade {
    client: OnUpgrade,
    /// From the client's connection; absent only if the server did not
    /// attach them.
    terms: Option<TunnelTerms>,
}

/// Takes the pending upgrade out of an HTTP/1.1 request that asks for
/// WebSocket; `None` for every other request.
pub fn take(parts: &mut http::request::Parts) -> Option<Upgrade> {
    if parts.version != Version::HTTP_11 || !asks_for_websocket(&parts.headers) {
        return None;
    }
    let client = parts.extensions.remove::<OnUpgrade>()?;
    let terms = parts.extensions.remove::<TunnelTerms>();
    Some(Upgrade { client, terms })
}

fn asks_for_websocket(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    connection_upgrade && websocket
}

impl Upgrade {
    /// Puts back the upgrade headers that were stripped as hop-by-hop.
    pub fn request_headers(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }

    /// If the upstream switched protocols, starts the tunnel and hands back
    /// the `101` for the client; any other answer comes back to be proxied.
    pub fn finish<B>(self, mut upstream: Response<B>) -> Handshake<B> {
        if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Handshake::Refused(upstream);
        }
        let upstream_io = hyper::upgrade::on(&mut upstream);
        let client_io = self.client;
        let (idle_timeout, hold) = match self.terms {
            Some(terms) => (terms.idle_timeout, Some(terms.hold)),
            None => (default_idle_timeout(), None),
        };
        tokio::spawn(async move {
            match tokio::try_join!(client_io, upstream_io) {
                Ok((client, upstream)) => {
                    let (client, upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                    tunnel::run(client, upstream, idle_timeout, hold).await;
                }
                Err(e) => tracing::warn!("websocket upgrade failed: {e}"),
            }
        });
        let (parts, _) = upstream.into_parts();
        Handshake::Switched(Response::from_parts(parts, empty()))
    }
}

/// How the upstream answered a WebSocket handshake.
pub enum Handshake<B> {
    /// It switched protocols: the tunnel runs, and this `101` is the
    /// finished response for the client.
    Switched(Response<Body>),
    /// Any other answer, to be proxied as usual.
    Refused(Response<B>),
}

fn default_idle_timeout() -> std::time::Duration {
    std::time::Duration::from_millis(crate::config::Limits::default().tunnel_idle_timeout_ms)
}
