//! How long a client may take to send its request body
//! (`body_read_timeout_ms`): the whole body must have arrived within the
//! timeout counted from its request head — Envoy's `request_timeout`
//! semantics, not nginx's `client_body_timeout` (a gap between two reads),
//! so a client sending one byte just under every gap cannot hold a request
//! open for ever. Only a body someone is reading is timed: time spent
//! waiting for an upstream to read a streamed body counts too, as in Envoy.
//! Past the deadline the body fails with [`BodyTimedOut`], which the proxy
//! answers with 408 (see [`crate::http::limits::ClientBodyFault::TimedOut`]).

use crate::http::body::BoxError;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The error a body fails with once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimedOut(pub Duration);

/// A request body that must end within `timeout` from now.
pub fn timed<B>(body: B, timeout: Duration) -> TimedBody<B> {
    TimedBody {
        inner: body,
        deadline: Instant::now() + timeout,
        timeout,
        timer: None,
    }
}

/// See [`timed`]. The timer is only set up when the body is not already
/// there, so a body that arrives with its head costs no timer.
pub struct TimedBody<B> {
    inner: B,
    deadline: Instant,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn dribble(
        chunks: usize,
        gap: Duration,
    ) -> impl HttpBody<Data = Bytes, Error = BoxError> + Unpin {
        let stream = futures::stream::unfold(0, move |sent| async move {
            if sent == chunks {
                return None;
            }
            tokio::time::sleep(gap).await;
            Some((
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x"))),
                sent + 1,
            ))
        });
        StreamBody::new(Box::pin(stream))
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_passes_whole() {
        let body = timed(
            dribble(3, Duration::from_millis(10)),
            Duration::from_secs(5),
        );
        assert_eq!(body.collect().await.unwrap().to_bytes(), "xxx");
    }

    #[tokio::test]
    async fn the_whole_body_counts_not_the_gap_between_chunks() {
        // Every gap (60 ms) is well under the timeout; the whole is not.
        let body = timed(
            dribble(20, Duration::from_millis(60)),
            Duration::from_millis(300),
        );
        let error = body.collect().await.unwrap_err();
        assert!(error.is::<BodyTimedOut>(), "{error}");
        assert_eq!(
            error.to_string(),
            "the request body did not arrive within 300 ms"
        );
    }
}
