//! One request's life: route → request hooks → upstream → response hooks.
//!
//! Reads top-down: [`handle`] picks the route; [`Proxy::run_chain`] runs the
//! plugin phases when the route has plugins; [`Proxy::forward`] is the plain
//! reverse-proxy path both end in. A route without plugins never converts
//! headers or buffers bodies.
//!
//! Lives here: [`handle`], the [`router`] and the plugin [`chain`]. May use
//! `http`, `plugin`, `upstream`, `observe` and the gateway generation.
#![expect(
    clippy::result_large_err,
    reason = "an `Err` here is the finished error response to send; boxing it buys nothing"
)]

pub mod chain;
pub mod router;

use crate::gateway::{Gateway, Route, Shared};
use crate::http::body::{boxed, json_error, Body, BoxError};
use crate::http::body_timeout::{self, TimedBody};
use crate::http::convert::{header_list_in_step, header_map};
use crate::http::limits::{BodyFault, ClientBodyFault};
use crate::http::path::PathPolicy;
use crate::http::strict::{self, framing::Violation};
use crate::http::trailers::{self, Direction, Guarded};
use crate::http::websocket::{self, Handshake, Upgrade};
use crate::observe::access_log::{self, AnsweredBy, Entry, OutcomeCell};
use crate::observe::span_export::RequestSpan;
use crate::observe::tracecontext::{TraceContext, TRACEPARENT};
use crate::plugin::component::bindings::{Request as PluginRequest, Response as PluginResponse};
use crate::plugin::RequestContext;
use crate::proxy::chain::{ChainFault, RequestOutcome, StepStates};
use crate::tls::TlsInfo;
use crate::upstream::{call, HttpClient, ResponseBody};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The client's address, with the texts every request of its connection
/// sends upstream and shows plugins, formatted once per connection.
pub struct Peer {
    /// `ip:port`, what plugins see as `client-addr`.
    text: Arc<str>,
    /// The IP alone, the `X-Forwarded-For` hop this gateway adds.
    ip: HeaderValue,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Peer {
        Peer {
            text: addr.to_string().into(),
            ip: HeaderValue::try_from(addr.ip().to_string()).expect("an IP is a header value"),
        }
    }

    /// The IP alone, as text.
    fn text_ip(&self) -> &str {
        self.ip.to_str().expect("an IP is ASCII")
    }
}

/// Serves one client request to completion; never fails (errors become JSON
/// responses). Every request gets an access-log line, is counted, and is
/// exported as a span when export is configured. `listener` is the index of
/// the listener it came in on, in the config.
pub async fn handle(
    shared: Arc<Shared>,
    mut request: Request<Incoming>,
    client: &Peer,
    listener: usize,
) -> Response<Body> {
    let started = Instant::now();
    let gateway = shared.gateway.load_full();
    gateway.strip_forgeable_headers(request.headers_mut());
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::try_from(uuid::Uuid::new_v4().to_string()).expect("uuid is ASCII")
        });
    let mut trace = TraceContext::from_headers(request.headers());
    if let (None, Some(spans)) = (trace.parent_id, &shared.spans) {
        trace.set_sampled(spans.samples_new_trace(trace.trace_id));
    }
    let method = request.method().clone();
    let version = request.version();
    let asked_upgrade = request.headers().contains_key(header::UPGRADE);
    let outcome = OutcomeCell::default();
    let (route, path, mut response) = match admit(&gateway, &mut request, listener) {
        Admission::Route { route, path, paths } => {
            let tls = request.extensions().get::<Arc<TlsInfo>>().cloned();
            let proxy = Proxy {
                client: &shared.client,
                route,
                paths,
                client_addr: client,
                request_id: &request_id,
                trace: &trace,
                outcome: &outcome,
                body_fault: BodyFault::default(),
                tls: tls.as_deref(),
                version,
                trailers: &gateway.trailers,
            };
            let response = proxy.serve(request).await;
            (Some(route), path, response)
        }
        Admission::NoRoute { path } => (
            None,
            path,
            json_error(
                StatusCode::NOT_FOUND,
                "no_route",
                "no route matches this request",
            ),
        ),
        Admission::Refused { path, response } => (None, path, response),
    };
    // A refused upgrade leaves the client's next bytes unframed: close.
    let refused_upgrade = asked_upgrade && response.status() != StatusCode::SWITCHING_PROTOCOLS;
    if version < Version::HTTP_2 && refused_upgrade {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let duration = started.elapsed();
    let series = route.map(|r| &r.series);
    let route = route.map(|r| &*r.name);
    let request_id_text = request_id.to_str().unwrap_or_default();
    let outcome = outcome.take();
    if let Some(spans) = &shared.spans {
        spans.record(RequestSpan {
            trace: &trace,
            route,
            method: &method,
            path: &path,
            status: response.status(),
            duration,
            request_id: request_id_text,
            outcome: &outcome,
        });
    }
    access_log::record(Entry {
        route,
        series,
        method: &method,
        path: &path,
        status: response.status(),
        duration,
        client: &client.text,
        request_id: request_id_text,
        trace_id: trace.trace_id,
        outcome,
    });
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

/// What [`admit`] decided for a request.
enum Admission<'g> {
    /// Serve it on `route`; its URI now carries the canonical `path`.
    Route {
        route: &'g Route,
        path: String,
        /// The route's effective path policy.
        paths: PathPolicy,
    },
    NoRoute {
        path: String,
    },
    /// 400: the request is ambiguous; `path` is what the client sent.
    Refused {
        path: String,
        response: Response<Body>,
    },
}

/// Judges the request head (strict HTTP), canonicalises its path under its
/// listener's policy, routes on the canonical form, then applies the
/// route's own policy. A route policy that canonicalises differently must
/// land on the same route, or the request is refused: no spelling of a
/// path can reach a route other than the one whose policies judged it.
fn admit<'g>(
    gateway: &'g Gateway,
    request: &mut Request<Incoming>,
    listener: usize,
) -> Admission<'g> {
    let refused = |request: &Request<Incoming>, code: &str, message: String| Admission::Refused {
        path: request.uri().path().to_string(),
        response: bad_request(request.version(), code, &message),
    };
    if let Some(violation) = request.extensions().get::<Violation>() {
        return refused(request, "bad_request", violation.to_string());
    }
    let authority = match strict::check_head(request) {
        Ok(authority) => authority,
        Err(e) => return refused(request, "bad_request", e.to_string()),
    };
    let host = authority.as_ref().and_then(|h| h.to_str().ok());
    let listener_paths = gateway.listener_paths(listener);
    let raw = request.uri().path();
    let routed = match listener_paths.for_routing().canonicalize(raw) {
        Ok(path) => path,
        Err(e) => return refused(request, "path_rejected", e.to_string()),
    };
    let route = gateway.route(request.method(), host, &routed, request.headers());
    let Some(route) = route else {
        return Admission::NoRoute {
            path: routed.into_owned(),
        };
    };
    let paths = listener_paths.with(&route.paths);
    let path = match paths.canonicalize(raw) {
        Ok(path) => path,
        Err(e) => return refused(request, "path_rejected", e.to_string()),
    };
    if path != routed {
        let again = gateway.route(request.method(), host, &path, request.headers());
        if !again.is_some_and(|r| std::ptr::eq(r, route)) {
            return refused(
                request,
                "path_rejected",
                "the path leaves its route once canonicalised by the route's policy".into(),
            );
        }
    }
    let changed = matches!(path, std::borrow::Cow::Owned(_));
    let path = path.into_owned();
    if changed && set_path(request.uri_mut(), &path).is_err() {
        return refused(
            request,
            "path_rejected",
            "the canonical path is not a URI path".into(),
        );
    }
    Admission::Route { route, path, paths }
}

/// Replaces a URI's path, keeping its query (and, in absolute-form, its
/// scheme and authority).
fn set_path(uri: &mut http::Uri, path: &str) -> Result<(), http::Error> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(path_and_query)?);
    *uri = http::Uri::from_parts(parts)?;
    Ok(())
}

/// 400 JSON for a request another server could read differently; on
/// HTTP/1 the connection closes, since its framing cannot be trusted.
fn bad_request(version: Version, code: &str, message: &str) -> Response<Body> {
    let mut response = json_error(StatusCode::BAD_REQUEST, code, message);
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// One request on one route.
struct Proxy<'a> {
    client: &'a HttpClient,
    route: &'a Route,
    /// The route's effective path policy; a plugin-rewritten path is held to it.
    paths: PathPolicy,
    client_addr: &'a Peer,
    request_id: &'a HeaderValue,
    trace: &'a TraceContext,
    /// Who answered and from where, for the access log.
    outcome: &'a OutcomeCell,
    /// What went wrong with the client's body while it streamed, if anything.
    body_fault: BodyFault,
    /// What the TLS handshake established, on TLS listeners.
    tls: Option<&'a TlsInfo>,
    /// The client's HTTP version (HTTP/1 closes after a body fault).
    version: Version,
    /// What trailer sections may carry, both ways.
    trailers: &'a Arc<trailers::Policy>,
}

/// A client's request body, timed from its head by the route's
/// `body_read_timeout_ms`, its trailers guarded.
type ClientBody = Guarded<TimedBody<Incoming>>;

/// An upstream's response body, its trailers guarded.
type UpstreamBody = Guarded<ResponseBody>;

impl Proxy<'_> {
    async fn serve(&self, request: Request<Incoming>) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let limit = self.route.max_body_bytes;
        if crate::http::limits::declared_too_large(&parts.headers, limit) {
            return body_too_large(limit);
        }
        let body = Guarded::new(
            body_timeout::timed(body, self.route.body_read_timeout),
            self.trailers.clone(),
            Direction::FromClient,
        );
        let upgrade = websocket::take(&mut parts);
        self.prepare_upstream_headers(&mut parts.headers, parts.uri.authority());
        if self.route.chain.is_empty() {
            let upstream_request = Request::from_parts(parts, self.capped(body));
            return match self.forward(upstream_request, upgrade).await {
                Forwarded::Upstream(response) => response.map(boxed),
                Forwarded::Answered(response) => response,
            };
        }
        self.run_chain(parts, body, upgrade).await
    }

    /// The route has plugins: run the request phase, then the upstream or the
    /// plugin's answer, then the response phase.
    async fn run_chain(
        &self,
        mut parts: http::request::Parts,
        body: ClientBody,
        upgrade: Option<Upgrade>,
    ) -> Response<Body> {
        let chain = &self.route.chain;
        let mut stream = Some(body);
        let mut request_trailers = None;
        let buffered = if chain.wants_request_body {
            let limit = self.route.max_body_bytes;
            match read_limited(stream.take().expect("body unread"), limit).await {
                Ok((bytes, trailers)) => {
                    request_trailers = trailers;
                    Some(bytes.to_vec())
                }
                Err(BodyReadError::TooLarge) => return body_too_large(limit),
                Err(BodyReadError::TimedOut) => return self.body_timed_out(),
                Err(BodyReadError::Broken(e)) => {
                    return bad_request(
                        parts.version,
                        "body_unreadable",
                        &format!("cannot read the request body: {e}"),
                    )
                }
            }
        } else {
            None
        };
        let mut request = PluginRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: header_list_in_step(&mut parts.headers, chain.header_interest()),
            body: buffered,
            client_addr: self.client_addr.text.to_string(),
            route: self.route.name.to_string(),
        };
        let mut context = RequestContext::new();
        if let Some(identity) = self.tls.and_then(|tls| tls.client.as_ref()) {
            identity.seed(&mut context);
        }
        let mut headers = parts.headers;
        let mut states = chain.states();
        let (response, ran) = match chain
            .on_request(
                &mut request,
                &mut headers,
                &mut request_trailers,
                &mut context,
                &mut states,
            )
            .await
        {
            RequestOutcome::Failed(fault) => return self.plugin_failure(&fault),
            RequestOutcome::Respond { response, ran } => {
                self.outcome.update(|o| {
                    o.answered_by = AnsweredBy::Plugin;
                    o.plugin = Some(chain.steps()[ran].pool.name().to_string());
                });
                (response, ran)
            }
            RequestOutcome::Forward { ran } => {
                let stream = stream.map(|body| self.capped(body));
                let rebuilt = Rebuilt {
                    headers,
                    stream,
                    trailers: self.plugin_trailers(request_trailers),
                };
                let upstream_request = match rebuild_request(
                    &parts.method,
                    &parts.uri,
                    request,
                    rebuilt,
                    self.paths,
                ) {
                    Ok(r) => r,
                    Err(error) => return error,
                };
                let upstream_response = match self.forward(upstream_request, upgrade).await {
                    Forwarded::Upstream(r) => r,
                    Forwarded::Answered(response) => return response,
                };
                let deadline = Instant::now() + self.route.call.timeout;
                if !chain.wants_response {
                    return upstream_response.map(boxed);
                }
                return self
                    .response_phase(upstream_response, ran, &mut context, &mut states, deadline)
                    .await;
            }
        };
        let mut response = response;
        let mut headers = header_map(&response.headers);
        if let Err(fault) = chain
            .on_response(
                ran,
                &self.route.name,
                &mut response,
                &mut headers,
                &mut None,
                &mut context,
                &mut states,
            )
            .await
        {
            return self.plugin_failure(&fault);
        }
        plugin_response(response, headers, None)
    }

    /// Runs the response hooks over an upstream response, buffering its body
    /// only if a hook asked for it, by `deadline` at the latest.
    async fn response_phase(
        &self,
        upstream: Response<UpstreamBody>,
        ran: usize,
        context: &mut RequestContext,
        states: &mut StepStates,
        deadline: Instant,
    ) -> Response<Body> {
        let (mut parts, body) = upstream.into_parts();
        let mut trailers = None;
        let (buffered, stream) = if self.route.chain.wants_response_body {
            match self.buffer_response(&parts.headers, body, deadline).await {
                Ok((bytes, sent)) => {
                    trailers = sent;
                    (Some(bytes.to_vec()), None)
                }
                Err(error) => {
                    self.outcome.update(|o| o.answered_by = AnsweredBy::Gateway);
                    return error;
                }
            }
        } else {
            (None, Some(body))
        };
        let mut response = PluginResponse {
            status: parts.status.as_u16(),
            headers: header_list_in_step(&mut parts.headers, self.route.chain.header_interest()),
            body: buffered,
        };
        let mut headers = parts.headers;
        if let Err(fault) = self
            .route
            .chain
            .on_response(
                ran,
                &self.route.name,
                &mut response,
                &mut headers,
                &mut trailers,
                context,
                states,
            )
            .await
        {
            return self.plugin_failure(&fault);
        }
        match (response.body.is_some(), stream) {
            (false, Some(stream)) => {
                let mut out = plugin_response(response, headers, None);
                *out.body_mut() = boxed(stream);
                out
            }
            _ => plugin_response(response, headers, self.plugin_trailers(trailers)),
        }
    }

    /// Reads an upstream response body for the chain. It is the upstream's
    /// fault, so 502, when the body is larger than the route buffers
    /// (declared or sent) or breaks off; 504 when it has not all arrived by
    /// `deadline` (the route's upstream timeout after the response head),
    /// so a dribbling upstream cannot hold the request open.
    async fn buffer_response(
        &self,
        headers: &HeaderMap,
        body: UpstreamBody,
        deadline: Instant,
    ) -> Result<(Bytes, Option<HeaderMap>), Response<Body>> {
        let limit = self.route.max_response_body_bytes;
        let too_large = || {
            json_error(
                StatusCode::BAD_GATEWAY,
                "upstream_body",
                &format!("the upstream response body exceeds the route's limit of {limit} bytes"),
            )
        };
        if crate::http::limits::declared_too_large(headers, limit) {
            return Err(too_large());
        }
        match tokio::time::timeout_at(deadline.into(), read_limited(body, limit)).await {
            Ok(Ok(read)) => Ok(read),
            Ok(Err(BodyReadError::TooLarge)) => Err(too_large()),
            Ok(Err(BodyReadError::Broken(e))) => Err(json_error(
                StatusCode::BAD_GATEWAY,
                "upstream_body",
                &format!("cannot read the upstream response body: {e}"),
            )),
            Ok(Err(BodyReadError::TimedOut)) => Err(json_error(
                StatusCode::BAD_GATEWAY,
                "upstream_body",
                "the upstream response body timed out",
            )),
            Err(_) => Err(json_error(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                &format!(
                    "the upstream response body did not arrive within {} ms",
                    self.route.call.timeout.as_millis()
                ),
            )),
        }
    }

    /// Sends the request to the route's upstream under the route's call
    /// policy; errors become JSON (502/503/504, see `UpstreamError::status`).
    /// A WebSocket handshake the upstream accepts becomes a tunnel, and its
    /// `101` comes back as the finished answer.
    async fn forward(&self, mut request: Request<Body>, upgrade: Option<Upgrade>) -> Forwarded {
        *request.version_mut() = Version::HTTP_11;
        if let Some(upgrade) = &upgrade {
            upgrade.request_headers(request.headers_mut());
        }
        let upstream = &self.route.upstream;
        self.outcome
            .update(|o| o.upstream = Some(upstream.name.clone()));
        let started = Instant::now();
        let sent = call(self.client, upstream, &self.route.call, request).await;
        upstream.duration.observe(started.elapsed().as_secs_f64());
        match sent {
            Ok(response) => {
                let mut response = match upgrade {
                    Some(upgrade) => match upgrade.finish(response) {
                        Handshake::Switched(switched) => return Forwarded::Answered(switched),
                        Handshake::Refused(response) => response,
                    },
                    None => response,
                };
                strip_hop_by_hop(response.headers_mut());
                let target = response.body().peer();
                let policy = self.trailers.clone();
                let response =
                    response.map(|body| Guarded::new(body, policy, Direction::FromUpstream));
                self.outcome.update(|o| {
                    o.answered_by = AnsweredBy::Upstream;
                    o.upstream_target = target;
                });
                Forwarded::Upstream(response)
            }
            Err(_) if self.body_fault.get() == Some(ClientBodyFault::TooLarge) => {
                Forwarded::Answered(body_too_large(self.route.max_body_bytes))
            }
            Err(_) if self.body_fault.get() == Some(ClientBodyFault::TimedOut) => {
                Forwarded::Answered(self.body_timed_out())
            }
            Err(_) if self.body_fault.get() == Some(ClientBodyFault::Unreadable) => {
                Forwarded::Answered(bad_request(
                    Version::HTTP_11,
                    "body_unreadable",
                    "the request body ended early or is badly framed",
                ))
            }
            Err(error) => {
                tracing::warn!(route = %self.route.name, request_id = ?self.request_id, "{error}");
                Forwarded::Answered(json_error(error.status(), error.code(), &error.to_string()))
            }
        }
    }

    /// What every proxied request carries upstream: forwarding headers and
    /// the request id; hop-by-hop headers are the client connection's own,
    /// but for `TE: trailers` (RFC 9110 §10.1.4), which tells an upstream
    /// the client takes trailers.
    fn prepare_upstream_headers(
        &self,
        headers: &mut HeaderMap,
        authority: Option<&http::uri::Authority>,
    ) {
        let takes_trailers = trailers::accepts(headers);
        strip_hop_by_hop(headers);
        if takes_trailers {
            headers.insert(header::TE, trailers::te_trailers());
            headers.insert(header::CONNECTION, HeaderValue::from_static("te"));
        }
        if !headers.contains_key(header::HOST) {
            if let Some(value) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                headers.insert(header::HOST, value);
            }
        }
        let forwarded_for = match headers.get(&FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(previous) => {
                let hops = format!("{previous}, {}", self.client_addr.text_ip());
                HeaderValue::try_from(hops).ok()
            }
            None => Some(self.client_addr.ip.clone()),
        };
        if let Some(value) = forwarded_for {
            headers.insert(FORWARDED_FOR, value);
        }
        let proto = if self.tls.is_some() { "https" } else { "http" };
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static(proto));
        headers.insert(REQUEST_ID, self.request_id.clone());
        headers.insert(TRACEPARENT, self.trace.header_value());
    }

    /// Trailers after the plugins edited them: a plugin may set any field a
    /// plugin may set in headers, but not framing or routing ones, and not
    /// more than the header limits (then they are dropped, and logged).
    fn plugin_trailers(&self, trailers: Option<HeaderMap>) -> Option<HeaderMap> {
        let mut trailers = trailers?;
        if let Err(e) = self
            .trailers
            .sanitize(&mut trailers, Direction::FromUpstream)
        {
            tracing::warn!(route = %self.route.name, "plugin-edited trailers dropped: {e}");
            return None;
        }
        (!trailers.is_empty()).then_some(trailers)
    }

    /// The client's body as streamed upstream, cut off past the route's limit.
    fn capped(&self, body: ClientBody) -> Body {
        crate::http::limits::capped(body, self.route.max_body_bytes, self.body_fault.clone())
    }

    /// 408 JSON: the client's body did not arrive in time. Its unread rest
    /// leaves an HTTP/1 connection unframed, so that closes.
    fn body_timed_out(&self) -> Response<Body> {
        let timeout = self.route.body_read_timeout.as_millis();
        let mut response = json_error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            &format!("the request body did not arrive within {timeout} ms"),
        );
        if self.version < Version::HTTP_2 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// The answer to a fail-closed plugin fault, noted for the access log.
    fn plugin_failure(&self, fault: &ChainFault) -> Response<Body> {
        self.outcome.update(|o| {
            o.answered_by = AnsweredBy::PluginFault;
            o.plugin = Some(fault.plugin.clone());
        });
        plugin_failure(fault)
    }
}

/// What sending a request upstream came to.
enum Forwarded {
    /// The upstream's response, to proxy (through the response hooks, if any).
    Upstream(Response<UpstreamBody>),
    /// A finished answer for the client: one the gateway wrote (an error),
    /// or the `101` of a WebSocket tunnel that now runs.
    Answered(Response<Body>),
}

/// The upstream request after the request phase: plugin-edited path, query,
/// headers, and either the plugin-visible body or the untouched stream. A
/// path a plugin rewrote is canonicalised again under the route's policy.
fn rebuild_request(
    method: &Method,
    original: &http::Uri,
    request: PluginRequest,
    rebuilt: Rebuilt,
    paths: PathPolicy,
) -> Result<Request<Body>, Response<Body>> {
    let Rebuilt {
        mut headers,
        stream,
        trailers,
    } = rebuilt;
    let uri = if request.path == original.path() && request.query.as_deref() == original.query() {
        // No plugin moved the request: its URI was canonicalised on arrival.
        original.clone()
    } else {
        rewritten_uri(&request, paths)?
    };
    let body = match (request.body, stream) {
        (Some(bytes), _) => {
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::TRANSFER_ENCODING);
            headers.remove(header::TRAILER);
            if let Some(trailers) = &trailers {
                trailers::announce(&mut headers, trailers);
            }
            trailers::with_trailers(bytes, trailers)
        }
        (None, Some(stream)) => stream,
        (None, None) => crate::http::body::empty(),
    };
    let mut upstream = Request::new(body);
    *upstream.method_mut() = method.clone();
    *upstream.uri_mut() = uri;
    *upstream.headers_mut() = headers;
    Ok(upstream)
}

/// The URI of a request whose path or query a plugin rewrote: the path is
/// canonicalised again under the route's policy.
fn rewritten_uri(request: &PluginRequest, paths: PathPolicy) -> Result<http::Uri, Response<Body>> {
    let path = paths.canonicalize(&request.path).map_err(|e| {
        json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_error",
            &format!("a plugin produced a path the route refuses: {e}"),
        )
    })?;
    let path_and_query = match &request.query {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    path_and_query.parse().map_err(|_| {
        json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_error",
            "a plugin produced an invalid path or query",
        )
    })
}

/// What goes upstream besides the plugin-visible request: the headers as a
/// map, the untouched stream (when no plugin read the body), and the
/// trailers that followed a buffered body.
struct Rebuilt {
    headers: HeaderMap,
    stream: Option<Body>,
    trailers: Option<HeaderMap>,
}

/// Why a body could not be buffered; whose fault it is depends on whose body.
enum BodyReadError {
    TooLarge,
    /// A client body past its `body_read_timeout_ms`.
    TimedOut,
    Broken(BoxError),
}

/// Reads a whole body up to `limit` bytes, and the trailers after it.
async fn read_limited<B>(body: B, limit: usize) -> Result<(Bytes, Option<HeaderMap>), BodyReadError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            Ok((collected.to_bytes(), trailers))
        }
        Err(e) => Err(match ClientBodyFault::of(&e) {
            ClientBodyFault::TooLarge => BodyReadError::TooLarge,
            ClientBodyFault::TimedOut => BodyReadError::TimedOut,
            ClientBodyFault::Unreadable => BodyReadError::Broken(e),
        }),
    }
}

/// 413 JSON: the body is larger than the route allows.
fn body_too_large(limit: usize) -> Response<Body> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("body exceeds the route's limit of {limit} bytes"),
    )
}

/// A plugin-produced (or plugin-edited) response as an HTTP response; a
/// buffered body goes on with the upstream's `trailers`, announced.
fn plugin_response(
    response: PluginResponse,
    mut headers: HeaderMap,
    trailers: Option<HeaderMap>,
) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(response.status) else {
        tracing::error!(
            status = response.status,
            "plugin produced an invalid status"
        );
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_error",
            "a plugin produced an invalid status",
        );
    };
    strip_hop_by_hop(&mut headers);
    let body = match response.body {
        Some(bytes) => {
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::TRAILER);
            if let Some(trailers) = &trailers {
                trailers::announce(&mut headers, trailers);
            }
            trailers::with_trailers(bytes, trailers)
        }
        None => crate::http::body::empty(),
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// 500 JSON for a fail-closed plugin fault (the details stay in the log);
/// 503 when the plugin was not run (its breaker is open: with `Retry-After`,
/// or its entry is at its concurrency cap).
fn plugin_failure(fault: &ChainFault) -> Response<Body> {
    let kind = fault.fault.kind();
    if !fault.fault.is_rejection() {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_error",
            &format!("plugin `{}` failed ({kind})", fault.plugin),
        );
    }
    let mut response = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "plugin_unavailable",
        &format!("plugin `{}` not run ({kind})", fault.plugin),
    );
    if let crate::plugin::PluginFault::Tripped { retry_after } = fault.fault {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.max(1).into());
    }
    response
}

/// Removes headers that belong to one connection, not the message (RFC 9110 §7.6.1).
/// `Trailer` stays: it describes the message, and hyper sends HTTP/1
/// trailers only for the fields it names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over their few names is cheaper
    // than six removals that each hash a name (bench/instructions.sh).
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The names [`strip_hop_by_hop`] always removes.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
];

/// Whether `name` is one of [`HOP_BY_HOP`].
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::try_from(*n).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn each_hop_by_hop_header_is_removed_even_alone() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "te",
            "upgrade",
        ] {
            let mut message = headers(&[("host", "a"), (name, "x"), ("x-end", "kept")]);
            strip_hop_by_hop(&mut message);
            assert_eq!(
                message,
                headers(&[("host", "a"), ("x-end", "kept")]),
                "{name}"
            );
        }
    }

    #[test]
    fn headers_named_in_connection_go_and_a_message_without_any_is_untouched() {
        let mut message = headers(&[
            ("connection", "close, X-Hop"),
            ("x-hop", "1"),
            ("x-end", "2"),
        ]);
        strip_hop_by_hop(&mut message);
        assert_eq!(message, headers(&[("x-end", "2")]));
        let plain = headers(&[("host", "a"), ("accept", "*/*"), ("x-hop", "1")]);
        let mut untouched = plain.clone();
        strip_hop_by_hop(&mut untouched);
        assert_eq!(untouched, plain);
    }
}
