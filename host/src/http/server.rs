//! Listeners: accept TCP connections and serve HTTP/1.1 and HTTP/2 (h2c,
//! prior knowledge) on each with hyper, handing every request to the proxy.
//! On shutdown a listener stops accepting and lets open connections finish
//! their in-flight requests, up to a deadline. The config's `limits:` are
//! applied here (see [`crate::http::limits`]). A TLS listener first runs the
//! handshake (ALPN picks h2 or HTTP/1.1) and tags the connection's requests
//! with what it established. HTTP/1.1 upgrades (WebSocket) are allowed.

use crate::config::Limits;
use crate::gateway::Shared;
use crate::http::accept;
use crate::http::limits::{self, InFlight};
use crate::http::strict::framing::{FramingWatch, Watched};
use crate::http::tunnel::{ConnectionHold, TunnelTerms};
use crate::http::workers::Workers;
use crate::observe::metrics::{metrics, ConnectionGauge};
use crate::proxy::{handle, Peer};
use crate::tls::{TlsInfo, TlsListener};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// A bound listening socket and what the config says of it.
pub struct Listener {
    pub socket: TcpListener,
    /// Its index in the config's `listeners:` (for its path policy).
    pub index: usize,
    /// With TLS each connection starts with the handshake.
    pub tls: Option<Arc<TlsListener>>,
    /// Connections served at once: `limits.max_connections`, clamped to
    /// what the open-file limit allows (see [`crate::http::descriptors`]).
    pub max_connections: usize,
}

/// Accepts connections, one task each, until `shutdown` turns true; then
/// drains open connections for at most `drain`. At `max_connections` open
/// connections (WebSocket tunnels included) it stops accepting, so new
/// clients wait in the kernel's backlog instead of starving the ones being
/// served.
pub async fn serve(
    listener: Listener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let Listener {
        socket: listener,
        index,
        tls,
        max_connections,
    } = listener;
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
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
        let (stream, client) = tokio::select! {
            accepted = accept::next(&listener, "listener") => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let _ = stream.set_nodelay(true);
        // The socket moves to its worker's reactor, so its readiness events
        // wake that worker directly rather than this runtime first.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%client, "cannot hand the connection to a worker: {e}");
                continue;
            }
        };
        // Released when the connection closes, or the tunnel it became.
        let (worker, load) = Workers::get().assign();
        let hold = ConnectionHold::new(slot, ConnectionGauge::open(active.clone()), load);
        // Limits other than max_connections follow reloads, for new connections.
        let limits = shared.gateway.load().config.limits.clone();
        let tunnel = TunnelTerms {
            hold: hold.clone(),
            idle_timeout: Duration::from_millis(limits.tunnel_idle_timeout_ms),
        };
        let in_flight = InFlight::default();
        let first = Duration::from_millis(limits.header_read_timeout_ms);
        let idle = Duration::from_millis(limits.idle_timeout_ms);
        let (shared, watcher, tls) = (shared.clone(), graceful.watcher(), tls.clone());
        worker.spawn(async move {
            let _hold = hold;
            let conn = Connection {
                client,
                listener: index,
                shared,
                limits,
                in_flight: in_flight.clone(),
                watcher,
                tunnel,
            };
            let served = async move {
                let stream = match TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        return tracing::debug!(%client, "cannot register the connection: {e}")
                    }
                };
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
    listener: usize,
    shared: Arc<Shared>,
    limits: Limits,
    in_flight: InFlight,
    watcher: Watcher,
    /// Handed to a request that asks for an upgrade.
    tunnel: TunnelTerms,
}

impl Connection {
    /// Serves the connection's requests until it closes or is drained.
    async fn serve<I>(self, io: I, tls: Option<Arc<TlsInfo>>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            client,
            listener,
            shared,
            limits,
            in_flight,
            watcher,
            tunnel,
        } = self;
        let (framing, verdicts) = FramingWatch::new(limits.max_header_bytes);
        let io = Watched::new(io, framing);
        let requests = std::sync::atomic::AtomicU64::new(0);
        let peer = Arc::new(Peer::new(client));
        let service = service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            let shared = shared.clone();
            let peer = peer.clone();
            let guard = in_flight.start();
            if let Some(tls) = &tls {
                request.extensions_mut().insert(tls.clone());
            }
            // A tunnel keeps the connection's slot: see `websocket::take`.
            if request.headers().contains_key(http::header::UPGRADE) {
                request.extensions_mut().insert(tunnel.clone());
            }
            // HTTP/1 requests arrive one after another, in the watcher's order.
            if request.version() < http::Version::HTTP_2 {
                let index = requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(violation) = verdicts.for_request(index) {
                    request.extensions_mut().insert(violation);
                }
            }
            async move {
                let response = handle(shared, request, &peer, listener).await;
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
