//! A WebSocket tunnel after the `101`: bytes copied both ways between the
//! client and the upstream. It outlives the HTTP exchange that opened it,
//! so it holds its connection's slot under `limits.max_connections` and its
//! place in the connection gauge until it closes, and it is closed when no
//! byte has crossed it either way for `limits.tunnel_idle_timeout_ms`.

use crate::http::workers::WorkerLoad;
use crate::observe::metrics::ConnectionGauge;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// What an open connection holds: its slot under `max_connections`, its
/// place in the connection gauge and in its worker's load, released when
/// the last clone is dropped.
/// Shared so that a tunnel keeps holding them after the HTTP connection
/// that opened it has handed its socket over.
#[derive(Clone)]
pub struct ConnectionHold {
    _held: Arc<Held>,
}

struct Held {
    _slot: OwnedSemaphorePermit,
    _gauge: ConnectionGauge,
    _worker: WorkerLoad,
}

impl ConnectionHold {
    /// Holds `slot`, `gauge` and `worker` until the last clone is dropped.
    pub fn new(
        slot: OwnedSemaphorePermit,
        gauge: ConnectionGauge,
        worker: WorkerLoad,
    ) -> ConnectionHold {
        ConnectionHold {
            _held: Arc::new(Held {
                _slot: slot,
                _gauge: gauge,
                _worker: worker,
            }),
        }
    }
}

/// What a request that may become a tunnel brings from its connection (a
/// request extension; see [`crate::http::websocket::take`]).
#[derive(Clone)]
pub struct TunnelTerms {
    /// The connection's slot and gauge, kept by the tunnel until it closes.
    pub hold: ConnectionHold,
    /// `limits.tunnel_idle_timeout_ms` when the connection was accepted.
    pub idle_timeout: Duration,
}

/// Copies bytes both ways until either side closes, or until no byte has
/// crossed for `idle_timeout`; then both sides are closed (dropped).
/// `hold` is released when the tunnel ends.
pub async fn run<C, U>(
    client: C,
    mut upstream: U,
    idle_timeout: Duration,
    hold: Option<ConnectionHold>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let _hold = hold;
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    // Both directions pass through the client side: reads are what the
    // client sent, writes what the upstream sent.
    let mut client = Stamped {
        inner: client,
        started,
        last: activity.clone(),
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = copied {
                tracing::debug!("websocket tunnel ended: {e}");
            }
        }
        () = idle(started, &activity, idle_timeout) => {
            tracing::debug!("closing websocket tunnel idle for {idle_timeout:?}");
        }
    }
}

/// Resolves once no byte has been stamped for `timeout`.
async fn idle(started: Instant, last: &AtomicU64, timeout: Duration) {
    loop {
        let last_byte = started + Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = last_byte + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// An I/O stream that notes when a byte last went through it, in
/// milliseconds since `started`.
struct Stamped<T> {
    inner: T,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Stamped<T> {
    fn stamp(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stamped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.stamp();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stamped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.stamp();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_tunnel_without_traffic_closes_both_sides_after_the_idle_timeout() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let tunnel = tokio::spawn(run(client, upstream, Duration::from_millis(200), None));
        // Traffic keeps it open past the timeout.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client_peer.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            upstream_peer.read_exact(&mut byte).await.unwrap();
        }
        assert!(!tunnel.is_finished(), "traffic is not idleness");
        tokio::time::timeout(Duration::from_secs(5), tunnel)
            .await
            .expect("closed once idle")
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(client_peer.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(upstream_peer.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
