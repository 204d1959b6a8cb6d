//! An upstream response's body, and for a connection the request drives
//! itself (`h1_pool`), that connection: reading the body polls it, and the
//! end of the body returns it to its pool.

use super::h1_pool::{Conn, Pool};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// An upstream response's body as hyper reads it, plus the connection it
/// arrives on when no task of hyper's drives that connection.
pub struct ResponseBody {
    incoming: Incoming,
    driven: Option<(Conn, Arc<Pool>)>,
    peer: Option<SocketAddr>,
}

impl ResponseBody {
    /// A body whose connection hyper's own client drives, from `peer`.
    pub(super) fn shared(incoming: Incoming, peer: Option<SocketAddr>) -> ResponseBody {
        ResponseBody {
            incoming,
            driven: None,
            peer,
        }
    }

    /// A body from `peer` on `conn` (`None`: it closed already), which goes
    /// back to `pool` when the body has been read to its end.
    pub(super) fn pooled(
        incoming: Incoming,
        peer: SocketAddr,
        conn: Option<Conn>,
        pool: Arc<Pool>,
    ) -> ResponseBody {
        ResponseBody {
            incoming,
            driven: conn.map(|conn| (conn, pool)),
            peer: Some(peer),
        }
    }

    /// The address the response came from: what the access log and the
    /// span name as the target that answered. (Kept here rather than in the
    /// response's extensions, whose first entry costs a map allocation.)
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Hands the connection back to its pool: the exchange on it is over.
    fn release(&mut self) {
        if let Some((conn, pool)) = self.driven.take() {
            pool.put(conn);
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                let Some((conn, _)) = &mut this.driven else {
                    return Poll::Pending;
                };
                if conn.poll_closed(cx) {
                    this.driven = None;
                }
                // Polling the connection may have read the next frame.
                ready!(Pin::new(&mut this.incoming).poll_frame(cx))
            }
        };
        match &frame {
            Some(Err(_)) => this.driven = None,
            None => this.release(),
            Some(Ok(_)) if this.incoming.is_end_stream() => this.release(),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for ResponseBody {
    /// A body nobody reads because it is empty (`HEAD`, `204`, `304`, a zero
    /// length) still frees its connection; one dropped part-read closes it.
    fn drop(&mut self) {
        if self.incoming.is_end_stream() {
            self.release();
        }
    }
}
