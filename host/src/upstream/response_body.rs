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

/// The address an upstream response came from, in its extensions: what the
/// access log names as the target that answered.
#[derive(Clone, Copy, Debug)]
pub struct ConnectedTo(pub SocketAddr);

/// An upstream response's body as hyper reads it, plus the connection it
/// arrives on when no task of hyper's drives that connection.
pub struct ResponseBody {
    incoming: Incoming,
    driven: Option<(Conn, Arc<Pool>)>,
}

impl ResponseBody {
    /// A body whose connection hyper's own client drives.
    pub(super) fn shared(incoming: Incoming) -> ResponseBody {
        ResponseBody {
            incoming,
            driven: None,
        }
    }

    /// A body on `conn` (`None`: it closed already), which goes back to
    /// `pool` when the body has been read to its end.
    pub(super) fn pooled(incoming: Incoming, conn: Option<Conn>, pool: Arc<Pool>) -> ResponseBody {
        ResponseBody {
            incoming,
            driven: conn.map(|conn| (conn, pool)),
        }
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
