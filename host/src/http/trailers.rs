//! Trailer fields passing through the gateway, and what keeps them safe.
//!
//! A recipient may merge trailers into the header section (RFC 9110
//! §6.5.1), so a trailer is as powerful as a header sent after the gateway
//! checked the headers. Every trailer section crossing the gateway (client
//! to upstream and back) goes through [`Guarded`], which drops the fields
//! that would matter if merged ([`FORBIDDEN`]) and, from clients, the
//! identity headers no client may send (`strip_request_headers`, see
//! [`crate::http::identity_headers`]), and refuses a section larger than
//! the header limit.
//!
//! hyper writes HTTP/1 trailers only for fields the `Trailer` header
//! announced, and as a server only to a client that sent `TE: trailers`;
//! so the gateway keeps `Trailer` ([`announce`] writes it when it knows the
//! trailers before the head) and forwards `TE: trailers` ([`accepts`]).

use crate::http::body::{Body, BoxError};
use crate::http::identity_headers::StripList;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Fields never forwarded in a trailer section: framing (`content-length`,
/// `transfer-encoding`, `trailer`, `te`), connection and hop-by-hop fields,
/// routing (`host`), request modifiers and authentication (RFC 9110
/// §6.5.1), content metadata, cookies, and the forwarding headers the
/// gateway itself sets — each would let a trailer override a header the
/// gateway or a plugin judged, once a recipient merges them.
pub const FORBIDDEN: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "trailer",
    "te",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "host",
    "authorization",
    "proxy-authorization",
    "proxy-authenticate",
    "www-authenticate",
    "cookie",
    "set-cookie",
    "content-type",
    "content-encoding",
    "content-range",
    "cache-control",
    "expect",
    "max-forwards",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "location",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// How many fields a trailer section may have (hyper's header count).
const MAX_FIELDS: usize = 100;

/// What the gateway allows in trailer sections, per gateway generation.
#[derive(Debug, Default)]
pub struct Policy {
    /// Identity headers a client may not send, in trailers either.
    strip: StripList,
    /// `limits.max_header_bytes`: a trailer section is a header section.
    max_bytes: usize,
}

impl Policy {
    pub fn new(strip: StripList, max_bytes: usize) -> Policy {
        Policy { strip, max_bytes }
    }

    /// Makes `trailers` safe to forward in `direction`; `Err` when the
    /// section is over the header limits.
    pub fn sanitize(
        &self,
        trailers: &mut HeaderMap,
        direction: Direction,
    ) -> Result<(), TrailersTooLarge> {
        let size: usize = trailers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if trailers.len() > MAX_FIELDS || size > self.max_bytes {
            return Err(TrailersTooLarge);
        }
        for name in FORBIDDEN {
            trailers.remove(*name);
        }
        if direction == Direction::FromClient {
            self.strip.strip(trailers);
        }
        Ok(())
    }
}

/// Which way a trailer section goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A client's request trailers, going upstream.
    FromClient,
    /// An upstream's response trailers, going to the client.
    FromUpstream,
}

/// A trailer section over `limits.max_header_bytes` (or 100 fields): the
/// body fails, as a broken body would.
#[derive(Debug)]
pub struct TrailersTooLarge;

impl std::fmt::Display for TrailersTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the trailer section exceeds the header limits")
    }
}

impl std::error::Error for TrailersTooLarge {}

/// A body whose trailers are sanitized by a [`Policy`] as they pass; an
/// emptied section ends the body instead.
pub struct Guarded<B> {
    inner: B,
    policy: Arc<Policy>,
    direction: Direction,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, policy: Arc<Policy>, direction: Direction) -> Guarded<B> {
        Guarded {
            inner,
            policy,
            direction,
        }
    }
}

impl<B> HttpBody for Guarded<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        let mut trailers = match frame.into_trailers() {
            Ok(trailers) => trailers,
            Err(frame) => return Poll::Ready(Some(Ok(frame))),
        };
        if let Err(e) = self.policy.sanitize(&mut trailers, self.direction) {
            return Poll::Ready(Some(Err(e.into())));
        }
        if trailers.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A buffered body followed by `trailers`, if any. With trailers its size
/// is not announced, so HTTP/1 sends it chunked, the only framing that
/// carries trailers.
pub fn with_trailers(bytes: impl Into<Bytes>, trailers: Option<HeaderMap>) -> Body {
    let bytes = bytes.into();
    match trailers {
        None => crate::http::body::full(bytes),
        Some(trailers) => Buffered {
            data: (!bytes.is_empty()).then_some(bytes),
            trailers: Some(trailers),
        }
        .boxed(),
    }
}

/// See [`with_trailers`].
struct Buffered {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl HttpBody for Buffered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// True when `headers` carry `TE: trailers`: the sender takes trailers.
pub fn accepts(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| {
            let token = token.split(';').next().unwrap_or_default();
            token.trim().eq_ignore_ascii_case("trailers")
        })
}

/// `TE: trailers`, the only TE the gateway forwards (RFC 9110 §10.1.4).
pub fn te_trailers() -> HeaderValue {
    HeaderValue::from_static("trailers")
}

/// Sets the `Trailer` header to the names of `trailers`, which HTTP/1
/// needs before it sends them.
pub fn announce(headers: &mut HeaderMap, trailers: &HeaderMap) {
    headers.remove(header::TRAILER);
    let names: Vec<&str> = trailers.keys().map(HeaderName::as_str).collect();
    if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
        if !names.is_empty() {
            headers.insert(header::TRAILER, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn forbidden_fields_go_and_the_rest_stays() {
        let policy = Policy::new(StripList::default(), 1024);
        let mut trailers = map(&[
            ("content-length", "5"),
            ("host", "evil"),
            ("x-forwarded-for", "1.2.3.4"),
            ("grpc-status", "0"),
        ]);
        policy
            .sanitize(&mut trailers, Direction::FromUpstream)
            .unwrap();
        assert_eq!(trailers, map(&[("grpc-status", "0")]));
        let mut big = map(&[("x-big", &"a".repeat(2000))]);
        assert!(policy.sanitize(&mut big, Direction::FromClient).is_err());
    }

    #[test]
    fn te_trailers_is_found_among_other_codings() {
        assert!(accepts(&map(&[("te", "gzip, Trailers")])));
        assert!(!accepts(&map(&[("te", "gzip")])));
        let mut headers = HeaderMap::new();
        announce(&mut headers, &map(&[("a", "1"), ("b", "2")]));
        assert_eq!(headers[header::TRAILER], "a, b");
    }
}
