//! Plain HTTP/1.1 to one target over keep-alive connections the request's
//! own task drives, as Pingora does, pooled per target and per connection
//! worker.
//!
//! hyper's pooled client runs every connection in a task of its own, so a
//! request hands its head to that task and waits to be woken with the
//! response, and it finds an idle connection by hashing the target's scheme
//! and authority, one byte at a time, three times a request. Here a request
//! takes an idle connection of its target from its own worker's list,
//! writes and reads it itself, and the [`ResponseBody`] puts it back once
//! the body has been read to its end. TLS, HTTP/2 and upgrades stay on
//! hyper's client (`client.rs`).

use super::client::{IDLE_TIMEOUT, MAX_IDLE_PER_WORKER};
use super::response_body::ResponseBody;
use crate::http::body::{Body, BoxError};
use crate::http::workers::PerWorker;
use http::uri::Authority;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Why a request got no response from the target.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// The connection could not be opened.
    Connect(BoxError),
    /// The request failed on an open connection.
    Failed(BoxError),
}

/// hyper's connection future, boxed: it holds both buffers of the
/// connection, and every future a request awaits on its way upstream (down
/// to the one hyper's server moves into place for each request) would
/// otherwise carry it inline and be copied with it.
type Io = Pin<Box<Connection<TokioIo<TcpStream>, Body>>>;

/// One open connection: the handle requests are sent with, and the
/// connection future that does the reading and writing when polled.
pub(super) struct Conn {
    sender: SendRequest<Body>,
    io: Io,
    peer: SocketAddr,
}

impl Conn {
    /// Polls the connection: `true` once it has closed (or failed), when it
    /// can never carry another request.
    pub(super) fn poll_closed(&mut self, cx: &mut Context<'_>) -> bool {
        self.io.as_mut().poll(cx).is_ready()
    }

    /// Whether it may carry the next request now: open, and done with the
    /// last exchange both ways (a request body still being sent, or a
    /// response that said `Connection: close`, rule it out).
    fn poll_reusable(&mut self, cx: &mut Context<'_>) -> bool {
        !self.poll_closed(cx) && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// One worker's idle connections to a target, oldest first.
#[derive(Default)]
struct Slot {
    idle: VecDeque<Idle>,
    /// Whether a sweeper task watches this slot.
    swept: bool,
}

impl Slot {
    fn drop_expired(&mut self, now: Instant) {
        while self
            .idle
            .front()
            .is_some_and(|i| now.duration_since(i.since) >= IDLE_TIMEOUT)
        {
            self.idle.pop_front();
        }
    }
}

/// The idle keep-alive connections to one target, one list per worker (and
/// one for other threads): a worker takes and returns its own without
/// contention, and only ever drives connections its own reactor serves.
pub(super) struct Pool {
    slots: PerWorker<Mutex<Slot>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    pub(super) fn new() -> Arc<Pool> {
        Arc::new(Pool {
            slots: PerWorker::new(Mutex::default),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slots
            .local()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still good, polled
    /// once with the caller's context so a close the target sent while it
    /// sat idle is seen now, not after the request is written to it.
    fn checkout(&self, cx: &mut Context<'_>) -> Option<Conn> {
        let mut slot = self.slot();
        slot.drop_expired(Instant::now());
        while let Some(Idle { mut conn, .. }) = slot.idle.pop_back() {
            if conn.poll_reusable(cx) {
                return Some(conn);
            }
        }
        None
    }

    /// Takes back a connection whose last response was read to its end,
    /// unless this worker already holds as many idle ones as it may.
    pub(super) fn put(self: &Arc<Self>, conn: Conn) {
        let now = Instant::now();
        let mut slot = self.slot();
        slot.drop_expired(now);
        if slot.idle.len() >= *MAX_IDLE_PER_WORKER {
            return;
        }
        slot.idle.push_back(Idle { conn, since: now });
        if !slot.swept && tokio::runtime::Handle::try_current().is_ok() {
            slot.swept = true;
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) to the target at
    /// `authority`, over an idle connection or a new one opened within
    /// `connect_timeout`. A request an idle connection turned down before
    /// writing any of it (it closed meanwhile) is sent again on another.
    pub(super) async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut request: http::Request<Body>,
        connect_timeout: Duration,
    ) -> Result<http::Response<ResponseBody>, SendError> {
        loop {
            let (conn, reused) =
                match std::future::poll_fn(|cx| Poll::Ready(self.checkout(cx))).await {
                    Some(conn) => (conn, true),
                    None => (connect(authority, connect_timeout).await?, false),
                };
            let Conn {
                mut sender,
                io,
                peer,
            } = conn;
            let sending = sender.try_send_request(request);
            let mut sending = std::pin::pin!(sending);
            let mut io = Some(io);
            let sent = std::future::poll_fn(|cx| {
                if let Some(open) = &mut io {
                    if open.as_mut().poll(cx).is_ready() {
                        // Closed or failed: dropping it fails the request
                        // still waiting on it.
                        io = None;
                    }
                }
                sending.as_mut().poll(cx)
            })
            .await;
            match sent {
                Ok(response) => {
                    let conn = io.map(|io| Conn { sender, io, peer });
                    return Ok(
                        response.map(|body| ResponseBody::pooled(body, peer, conn, self.clone()))
                    );
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Failed(error.into_error().into())),
                },
            }
        }
    }
}

/// Opens a connection to `authority` (resolving a name off the worker,
/// trying each address in turn) within `timeout`.
async fn connect(authority: &Authority, timeout: Duration) -> Result<Conn, SendError> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| SendError::ConnectTimeout)?
        .map_err(|e| SendError::Connect(e.into()))?;
    stream
        .set_nodelay(true)
        .map_err(|e| SendError::Connect(e.into()))?;
    let peer = stream
        .peer_addr()
        .map_err(|e| SendError::Connect(e.into()))?;
    let (sender, io) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connect(e.into()))?;
    Ok(Conn {
        sender,
        io: Box::pin(io),
        peer,
    })
}

/// How often a worker's idle connections are looked over.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Closes one worker's idle connections to a target once they are past the
/// idle timeout or the target has closed them, so none lingers half-closed
/// while no request comes to take it; ends when the list is empty or the
/// target is gone.
async fn sweep(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut slot = pool.slot();
        slot.drop_expired(Instant::now());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        slot.idle.retain_mut(|idle| !idle.conn.poll_closed(&mut cx));
        if slot.idle.is_empty() {
            slot.swept = false;
            return;
        }
    }
}
