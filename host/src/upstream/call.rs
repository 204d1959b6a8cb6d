//! One route's call to its upstream: pick a target, ask the breaker, send
//! under the route's timeouts, count the outcome, retry while the budget
//! allows.

use super::balancer::Balancer;
use super::connect;
use super::h1_pool::SendError;
use super::retry::{self, Failure};
use super::{HttpClient, ResponseBody, Target, Upstream};
use crate::config::{RetryConfig, RouteConfig};
use crate::http::body::{full, Body};
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, Method};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper_util::client::legacy::connect::HttpInfo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How one route calls its upstream: timeouts, retries and, when the route
/// overrides it, its own balancer.
#[derive(Debug)]
pub struct CallPolicy {
    /// Whole-request deadline, retries included.
    pub timeout: Duration,
    /// Per-attempt connect timeout.
    pub connect_timeout: Duration,
    pub retries: Option<RetryConfig>,
    /// Largest body kept to replay on a retry; larger bodies stream once.
    pub replay_limit: usize,
    balancer: Option<Balancer>,
}

impl CallPolicy {
    /// The policy of `route` (validated) on `upstream`; bodies up to
    /// `max_body_bytes` are kept for retries.
    pub fn for_route(
        route: &RouteConfig,
        upstream: &Upstream,
        max_body_bytes: usize,
    ) -> CallPolicy {
        CallPolicy {
            timeout: route
                .timeout_ms
                .map_or(upstream.timeout, Duration::from_millis),
            connect_timeout: route
                .connect_timeout_ms
                .map_or(upstream.connect_timeout, Duration::from_millis),
            retries: route.retries.clone().filter(|r| r.attempts > 0),
            replay_limit: max_body_bytes,
            balancer: route
                .balance
                .filter(|b| *b != upstream.balancer.strategy)
                .map(|b| Balancer::new(b, upstream.targets.len())),
        }
    }

    /// The upstream's own defaults, no retries.
    pub fn of(upstream: &Upstream) -> CallPolicy {
        CallPolicy {
            timeout: upstream.timeout,
            connect_timeout: upstream.connect_timeout,
            retries: None,
            replay_limit: 0,
            balancer: None,
        }
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
    #[error("upstream `{upstream}` ({target}) did not accept a connection within {timeout:?}")]
    ConnectTimeout {
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
    #[error("upstream `{upstream}` is failing; its circuit breaker is open")]
    CircuitOpen { upstream: String },
    #[error("upstream `{upstream}` has no healthy target")]
    NoHealthyTarget { upstream: String },
    #[error("cannot read the request body: {message}")]
    RequestBody { message: String },
}

impl UpstreamError {
    /// The status the client gets: 504 for a timeout, 503 while the gateway
    /// refuses to send, 400 for an unreadable body, 502 otherwise.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::Timeout { .. } | UpstreamError::ConnectTimeout { .. } => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            UpstreamError::CircuitOpen { .. } | UpstreamError::NoHealthyTarget { .. } => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamError::RequestBody { .. } => http::StatusCode::BAD_REQUEST,
            UpstreamError::Unreachable { .. } => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// The `code` of the JSON error response.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Timeout { .. } => "upstream_timeout",
            UpstreamError::ConnectTimeout { .. } => "upstream_connect_timeout",
            UpstreamError::Unreachable { .. } => "upstream_unreachable",
            UpstreamError::CircuitOpen { .. } => "circuit_open",
            UpstreamError::NoHealthyTarget { .. } => "no_healthy_upstream",
            UpstreamError::RequestBody { .. } => "body_unreadable",
        }
    }
}

/// Sends `request` (whose URI holds only path and query) to `upstream` with
/// its default policy (no retries); `timeout` may shorten the upstream's
/// timeout, never lengthen it: the operator's setting bounds how long a
/// plugin's call can hold a request. What plugins' outbound calls use.
pub async fn send(
    client: &HttpClient,
    upstream: &Upstream,
    request: http::Request<Body>,
    timeout: Option<Duration>,
) -> Result<http::Response<ResponseBody>, UpstreamError> {
    let mut policy = CallPolicy::of(upstream);
    if let Some(timeout) = timeout {
        policy.timeout = policy.timeout.min(timeout);
    }
    call(client, upstream, &policy, request).await
}

/// Sends `request` (whose URI holds only path and query) to `upstream` under
/// `policy`: balancing over healthy targets, breaker, timeouts, retries. A
/// 5xx that is not retried is returned as a response.
pub async fn call(
    client: &HttpClient,
    upstream: &Upstream,
    policy: &CallPolicy,
    request: http::Request<Body>,
) -> Result<http::Response<ResponseBody>, UpstreamError> {
    upstream.budget.deposit();
    let deadline = Instant::now() + policy.timeout;
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let (mut first_body, replay) = match &policy.retries {
        Some(_) => match replayable(body, policy.replay_limit).await? {
            Ok(bytes) => (None, Some(bytes)),
            Err(stream) => (Some(stream), None),
        },
        None => (Some(body), None),
    };
    let mut template = Some(parts);
    let mut tried = Vec::new();
    loop {
        let index = upstream
            .pick(policy.balancer.as_ref(), &tried)
            .ok_or_else(|| UpstreamError::NoHealthyTarget {
                upstream: upstream.name.clone(),
            })?;
        let admission = match &upstream.breaker {
            Some(breaker) => match breaker.admit() {
                Some(admission) => Some((breaker, admission)),
                None => {
                    return Err(UpstreamError::CircuitOpen {
                        upstream: upstream.name.clone(),
                    })
                }
            },
            None => None,
        };
        let target = &upstream.targets[index];
        let request = match (&replay, first_body.take()) {
            (Some(bytes), _) => copy_request(
                template.as_ref().expect("kept for replays"),
                full(bytes.clone()),
            ),
            (None, Some(body)) => {
                http::Request::from_parts(template.take().expect("one attempt"), body)
            }
            (None, None) => unreachable!("without a replayable body there is one attempt"),
        };
        let outcome = attempt(client, upstream, target, request, policy, deadline).await;
        let failure = match &outcome {
            Ok(response) if response.status().is_server_error() => Some(Failure::ServerError),
            Ok(_) => None,
            Err((_, failure)) => Some(*failure),
        };
        // A client's failing body says nothing about the target.
        if failure == Some(Failure::RequestBody) {
            if let Some((breaker, admission)) = admission {
                breaker.release(admission);
            }
        } else {
            target
                .health
                .record_request(failure.is_none(), upstream.passive.as_ref());
            if let Some((breaker, admission)) = admission {
                breaker.record(admission, failure.is_none());
            }
        }
        let retry = match (failure, &policy.retries) {
            (Some(failure), Some(retries)) => {
                replay.is_some()
                    && (tried.len() as u32) < retries.attempts
                    && retry::retryable(retries, &method, failure)
                    && Instant::now() < deadline
                    && upstream.budget.withdraw()
            }
            _ => false,
        };
        if !retry {
            return outcome.map_err(|(error, _)| error);
        }
        tracing::debug!(upstream = %upstream.name, target = %target.authority, ?failure, "retrying");
        tried.push(index);
    }
}

/// True when sending failed because the request's body stream failed
/// (hyper reports the body's error as a user error).
fn request_body_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .filter_map(|e| e.downcast_ref::<hyper::Error>())
        .any(hyper::Error::is_user)
}

/// The body as bytes when it is small enough to send again, else the stream.
async fn replayable(body: Body, limit: usize) -> Result<Result<Bytes, Body>, UpstreamError> {
    if body.is_end_stream() {
        return Ok(Ok(Bytes::new()));
    }
    // The upper bound is a declared length the body is held to, so it is safe
    // to trust here.
    match body.size_hint().upper() {
        Some(n) if n <= limit as u64 => {
            body.collect()
                .await
                .map(|b| Ok(b.to_bytes()))
                .map_err(|e| UpstreamError::RequestBody {
                    message: e.to_string(),
                })
        }
        _ => Ok(Err(body)),
    }
}

/// A fresh request with `template`'s method, URI, version and headers.
fn copy_request(template: &http::request::Parts, body: Body) -> http::Request<Body> {
    let mut request = http::Request::new(body);
    *request.method_mut() = template.method.clone();
    *request.uri_mut() = template.uri.clone();
    *request.version_mut() = template.version;
    *request.headers_mut() = template.headers.clone();
    request
}

/// Counts a request as outstanding at a target (what least-request
/// balancing weighs) until dropped.
struct Outstanding<'a>(&'a AtomicUsize);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One attempt at one target; a failure says whether it may be retried.
async fn attempt(
    client: &HttpClient,
    upstream: &Upstream,
    target: &Target,
    request: http::Request<Body>,
    policy: &CallPolicy,
    deadline: Instant,
) -> Result<http::Response<ResponseBody>, (UpstreamError, Failure)> {
    target.outstanding.fetch_add(1, Ordering::Relaxed);
    let _outstanding = Outstanding(&target.outstanding);
    let sending = send_to(client, upstream, target, request, policy.connect_timeout);
    let error = match tokio::time::timeout_at(deadline, sending).await {
        Ok(Ok(response)) => return Ok(response),
        Ok(Err(error)) => error,
        Err(_) => {
            let (name, address) = (upstream.name.clone(), target.authority.to_string());
            return Err((
                UpstreamError::Timeout {
                    upstream: name,
                    target: address,
                    timeout: policy.timeout,
                },
                Failure::Other,
            ));
        }
    };
    let (name, address) = (upstream.name.clone(), target.authority.to_string());
    let (message, failure) = match error {
        SendError::ConnectTimeout => {
            return Err((
                UpstreamError::ConnectTimeout {
                    upstream: name,
                    target: address,
                    timeout: policy.connect_timeout,
                },
                Failure::Connect,
            ))
        }
        SendError::Connect(e) => (error_chain(&*e), Failure::Connect),
        SendError::Failed(e) if request_body_failed(&*e) => {
            (error_chain(&*e), Failure::RequestBody)
        }
        SendError::Failed(e) => (error_chain(&*e), Failure::Other),
    };
    Err((
        UpstreamError::Unreachable {
            upstream: name,
            target: address,
            message,
        },
        failure,
    ))
}

/// Sends `request` to `target`: plain HTTP/1.1 over a connection this task
/// drives (`h1_pool`); TLS, HTTP/2, upgrades and `CONNECT` through
/// hyper's pooled client, which owns what those need.
async fn send_to(
    client: &HttpClient,
    upstream: &Upstream,
    target: &Target,
    mut request: http::Request<Body>,
    connect_timeout: Duration,
) -> Result<http::Response<ResponseBody>, SendError> {
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let own_connection = upstream.client.is_none()
        && request.method() != Method::CONNECT
        && !request.headers().contains_key(header::UPGRADE);
    if own_connection {
        *request.uri_mut() = http::Uri::from(path);
        if !request.headers().contains_key(header::HOST) {
            request
                .headers_mut()
                .insert(header::HOST, target.host.clone());
        }
        return target
            .pool
            .send(&target.authority, request, connect_timeout)
            .await;
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(upstream.scheme.clone());
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = Some(path);
    *request.uri_mut() =
        http::Uri::from_parts(parts).expect("scheme, authority and path make a URI");
    let client = upstream.client.as_ref().unwrap_or(client);
    let sending = connect::with_connect_timeout(connect_timeout, client.request(request));
    match sending.await {
        Ok(response) => {
            let peer = response
                .extensions()
                .get::<HttpInfo>()
                .map(HttpInfo::remote_addr);
            Ok(response.map(|body| ResponseBody::shared(body, peer)))
        }
        Err(e) if connect::is_connect_timeout(&e) => Err(SendError::ConnectTimeout),
        Err(e) if e.is_connect() => Err(SendError::Connect(e.into())),
        Err(e) => Err(SendError::Failed(e.into())),
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
