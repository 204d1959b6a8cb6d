//! The `limits:` of the config applied to connections and request bodies:
//! hyper's own knobs for header size and header read timeout, an idle
//! watch per connection, and the body cap every request streams through.

use crate::config::Limits;
use crate::http::body::{Body, BoxError};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A connection builder enforcing `limits` on HTTP/1.1 and HTTP/2.
pub fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // hyper answers 431 when the head outgrows its read buffer.
        .max_buf_size(limits.max_header_bytes)
        // Closes a connection whose request head is not complete in time.
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Counts the requests in flight on one connection, so an idle connection
/// can be told from a busy one (a slow upstream is not idleness).
///
/// A request only bumps counters and stamps when it ended: nothing is
/// woken per request. The idle watch ([`InFlight::idle`]) sleeps on one timer
/// and, when it fires, re-arms it from what the counters say (as nginx's
/// keep-alive timer does). A watch channel woke the connection's task twice
/// per request and set a fresh timer each time (BENCHMARKS.md).
#[derive(Clone)]
pub struct InFlight(Arc<Activity>);

struct Activity {
    in_flight: AtomicUsize,
    /// Some request has started on the connection.
    used: AtomicBool,
    /// When the connection was accepted: the origin of `last_end_nanos`.
    opened: Instant,
    /// When the last request ended, in nanoseconds since `opened`.
    last_end_nanos: AtomicU64,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight(Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            used: AtomicBool::new(false),
            opened: Instant::now(),
            last_end_nanos: AtomicU64::new(0),
        }))
    }
}

impl InFlight {
    /// Marks a request as started; it ends when the guard is dropped.
    pub fn start(&self) -> RequestGuard {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        self.0.used.store(true, Ordering::Relaxed);
        RequestGuard(self.0.clone())
    }

    /// Resolves once the connection is idle: no first request within
    /// `first` (covers clients that send nothing, on HTTP/1.1 and HTTP/2),
    /// or later no request in flight for `idle`.
    pub async fn idle(&self, first: Duration, idle: Duration) {
        let activity = &*self.0;
        loop {
            let now = Instant::now();
            let (deadline, wake) = if !activity.used.load(Ordering::Relaxed) {
                // Looks again after `idle` too, for a first request that
                // came and went: it is idle `idle` after it, not `first`.
                let deadline = activity.opened + first;
                (deadline, deadline.min(now + idle))
            } else if activity.in_flight.load(Ordering::Relaxed) > 0 {
                (now + idle, now + idle)
            } else {
                let last_end = activity.last_end_nanos.load(Ordering::Relaxed);
                let deadline = activity.opened + Duration::from_nanos(last_end) + idle;
                (deadline, deadline)
            };
            if deadline <= now {
                return;
            }
            tokio::time::sleep_until(wake.into()).await;
        }
    }
}

/// One request in flight; see [`InFlight::start`].
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let since_open = self.0.opened.elapsed().as_nanos();
        let since_open = u64::try_from(since_open).unwrap_or(u64::MAX);
        self.0
            .last_end_nanos
            .fetch_max(since_open, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until it is sent.
pub fn hold_until_sent(
    response: http::Response<Body>,
    guard: RequestGuard,
) -> http::Response<Body> {
    response.map(|inner| {
        GuardedBody {
            inner,
            _guard: guard,
        }
        .boxed()
    })
}

struct GuardedBody {
    inner: Body,
    _guard: RequestGuard,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// True when a request declares (`Content-Length`) a body over `limit`:
/// answer 413 without reading it.
pub fn declared_too_large(headers: &http::HeaderMap, limit: usize) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > limit as u64)
}

/// What went wrong with a client's request body while it streamed
/// upstream: the client's fault, so the proxy answers 413, 408 or 400 (and
/// closes the connection) rather than blaming the upstream with a 502.
#[derive(Debug, Clone, Default)]
pub struct BodyFault(Arc<AtomicU8>);

/// See [`BodyFault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBodyFault {
    /// More bytes than the route allows.
    TooLarge = 1,
    /// Bad chunk framing, a body shorter than its `Content-Length`, or the
    /// client went away mid-body.
    Unreadable = 2,
    /// Not all there within `body_read_timeout_ms` (see [`crate::http::body_timeout`]).
    TimedOut = 3,
}

impl ClientBodyFault {
    /// What a body error means, for a body read through [`capped`] or
    /// [`crate::http::body_timeout::timed`].
    pub fn of(error: &BoxError) -> ClientBodyFault {
        if error.is::<LengthLimitError>() {
            ClientBodyFault::TooLarge
        } else if error.is::<crate::http::body_timeout::BodyTimedOut>() {
            ClientBodyFault::TimedOut
        } else {
            ClientBodyFault::Unreadable
        }
    }
}

impl BodyFault {
    /// The fault the body met, if any.
    pub fn get(&self) -> Option<ClientBodyFault> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(ClientBodyFault::TooLarge),
            2 => Some(ClientBodyFault::Unreadable),
            3 => Some(ClientBodyFault::TimedOut),
            _ => None,
        }
    }

    fn set(&self, fault: ClientBodyFault) {
        self.0.store(fault as u8, Ordering::Relaxed);
    }
}

/// A request body cut off after `limit` bytes. The stream then fails, which
/// aborts the upstream request (so a cut or broken body never reaches it
/// as a complete request); `fault` tells the proxy why.
pub fn capped<B>(body: B, limit: usize, fault: BodyFault) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Limited::new(body, limit)
        .map_err(move |error| {
            fault.set(ClientBodyFault::of(&error));
            error
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_in_flight_requests() {
        let in_flight = InFlight::default();
        let guard = in_flight.start();
        let idle = Duration::from_millis(50);
        let watch = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.idle(idle, idle).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!watch.is_finished(), "a request is in flight");
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), watch)
            .await
            .expect("idle once the request ended")
            .unwrap();
    }

    #[tokio::test]
    async fn requests_keep_a_connection_busy_and_idle_counts_from_the_last_end() {
        let in_flight = InFlight::default();
        let idle = Duration::from_millis(200);
        let watch = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.idle(Duration::from_millis(50), idle).await })
        };
        // One short request every 50 ms for 600 ms: never `idle` apart.
        for _ in 0..12 {
            drop(in_flight.start());
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!watch.is_finished(), "requests keep coming");
        }
        let last_end = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), watch)
            .await
            .expect("idle once requests stop")
            .unwrap();
        assert!(last_end.elapsed() >= idle - Duration::from_millis(60));
    }

    #[tokio::test]
    async fn after_a_first_request_idle_counts_not_first() {
        let in_flight = InFlight::default();
        drop(in_flight.start());
        let idle = in_flight.idle(Duration::from_secs(60), Duration::from_millis(50));
        tokio::time::timeout(Duration::from_secs(5), idle)
            .await
            .expect("idle 50 ms after the request, not 60 s after opening");
    }

    #[tokio::test]
    async fn a_connection_without_requests_is_idle_after_first() {
        let in_flight = InFlight::default();
        let idle = in_flight.idle(Duration::from_millis(50), Duration::from_secs(60));
        tokio::time::timeout(Duration::from_secs(5), idle)
            .await
            .expect("idle without a first request");
    }

    #[test]
    fn declared_length_over_the_limit() {
        let mut headers = http::HeaderMap::new();
        assert!(!declared_too_large(&headers, 10));
        headers.insert(http::header::CONTENT_LENGTH, "11".parse().unwrap());
        assert!(declared_too_large(&headers, 10));
        assert!(!declared_too_large(&headers, 11));
    }
}
