//! Listeners: accept TCP connections and serve HTTP/1.1 and HTTP/2 (h2c,
//! prior knowledge) on each with hyper, handing every request to the proxy.
//! On shutdown a listener stops accepting and lets open connections finish
//! their in-flight requests, up to a deadline. The config's `limits:` are
//! applied here (see [`crate::limits`]).

use crate::limits::{self, InFlight};
use crate::metrics::{metrics, ConnectionGauge};
use crate::proxy::{handle, Shared};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Accepts connections, one task each, until `shutdown` turns true; then
/// drains open connections for at most `drain`. At `limits.max_connections`
/// open connections it stops accepting, so new clients wait in the kernel's
/// backlog instead of starving the ones being served.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
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
        let service = {
            let (shared, in_flight) = (shared.clone(), in_flight.clone());
            service_fn(move |request| {
                let shared = shared.clone();
                let guard = in_flight.start();
                async move {
                    let response = handle(shared, request, client).await;
                    Ok::<_, Infallible>(limits::hold_until_sent(response, guard))
                }
            })
        };
        let connection = limits::connection_builder(&limits)
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let first = Duration::from_millis(limits.header_read_timeout_ms);
        let idle = Duration::from_millis(limits.idle_timeout_ms);
        tokio::spawn(async move {
            let _held = (slot, gauge);
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(%client, "connection ended with error: {e}");
                },
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
