//! Listeners: accept TCP connections and serve HTTP/1.1 and HTTP/2 (h2c,
//! prior knowledge) on each with hyper, handing every request to the proxy.
//! On shutdown a listener stops accepting and lets open connections finish
//! their in-flight requests, up to a deadline. The config's `limits:` are
//! applied here (see [`crate::limits`]). A TLS listener first runs the
//! handshake (ALPN picks h2 or HTTP/1.1) and tags the connection's requests
//! with what it established. HTTP/1.1 upgrades (WebSocket) are allowed.

use crate::config::Limits;
use crate::limits::{self, InFlight};
use crate::metrics::{metrics, ConnectionGauge};
use crate::proxy::{handle, Shared};
use crate::tls::{TlsInfo, TlsListener};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Accepts connections, one task each, until `shutdown` turns true; then
/// drains open connections for at most `drain`. At `limits.max_connections`
/// open connections it stops accepting, so new clients wait in the kernel's
/// backlog instead of starving the ones being served. With `tls` each
/// connection starts with the TLS handshake.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<TlsListener>>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(
        shared.gateway.load().config.limits.max_connections,
    ));
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let active = metrics().active_connections.with_label_values(&[&local]);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let gauge = ConnectionGauge::open(active.clone());
        // Limits other than max_connections follow reloads, for new connections.
        let limits = shared.gateway.load().config.limits.clone();
        let in_flight = InFlight::default();
        let first = Duration::from_millis(limits.header_read_timeout_ms);
        let idle = Duration::from_millis(limits.idle_timeout_ms);
        let (shared, watcher, tls) = (shared.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let _held = (slot, gauge);
            let conn = Connection {
                client,
                shared,
                limits,
                in_flight: in_flight.clone(),
                watcher,
            };
            let served = async move {
                match tls {
                    None => conn.serve(stream, None).await,
                    Some(tls) => match tls.accept(stream).await {
                        Ok((stream, info)) => conn.serve(stream, Some(Arc::new(info))).await,
                        Err(e) => tracing::debug!(%client, "TLS handshake failed: {e}"),
                    },
                }
            };
            tokio::select! {
                () = served => {},
                // No request in flight: closing loses nothing.
                () = in_flight.idle(first, idle) => {
                    tracing::debug!(%client, "closing idle connection");
                }
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline of {drain:?} passed with connections still open");
    } else {
        tracing::info!("listener drained ({open} connections finished)");
    }
}

/// One accepted connection, ready to serve.
struct Connection {
    client: SocketAddr,
    shared: Arc<Shared>,
    limits: Limits,
    in_flight: InFlight,
    watcher: Watcher,
}

impl Connection {
    /// Serves the connection's requests until it closes or is drained.
    async fn serve<I>(self, io: I, tls: Option<Arc<TlsInfo>>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            client,
            shared,
            limits,
            in_flight,
            watcher,
        } = self;
        let service = service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            let shared = shared.clone();
            let guard = in_flight.start();
            if let Some(tls) = &tls {
                request.extensions_mut().insert(tls.clone());
            }
            async move {
                let response = handle(shared, request, client).await;
                Ok::<_, Infallible>(limits::hold_until_sent(response, guard))
            }
        });
        let connection = limits::connection_builder(&limits)
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(%client, "connection ended with error: {e}");
        }
    }
}
