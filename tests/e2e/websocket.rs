//! WebSocket through the gateway: the handshake runs the route's request
//! hooks (auth), then the upgraded connection is a tunnel to a real
//! WebSocket server that upstream timeouts do not cut. A tunnel counts as a
//! connection until it closes, and is closed when idle too long.

use crate::support::{
    eventually, metric_value, read_raw_response, scrape_metrics, GatewayOptions, TestGateway,
};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error, Message};

/// A WebSocket server that greets with the `x-consumer` header of the
/// handshake it saw, then echoes every text message.
async fn websocket_upstream() -> SocketAddr {
    websocket_upstream_counting_closes().await.0
}

/// [`websocket_upstream`], also counting the sockets that ended (closed or
/// broken by the other side).
async fn websocket_upstream_counting_closes() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ended = Arc::new(AtomicUsize::new(0));
    let counter = ended.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let ended = counter.clone();
            tokio::spawn(async move {
                let _ended = EndCount(ended);
                let mut consumer = String::new();
                #[expect(clippy::result_large_err, reason = "tungstenite's callback signature")]
                let callback = |request: &Request, response: Response| {
                    consumer = request
                        .headers()
                        .get("x-consumer")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("nobody")
                        .to_string();
                    Ok(response)
                };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(tcp, callback).await
                else {
                    return;
                };
                let greeting = format!("hello {consumer}");
                if socket.send(Message::text(greeting)).await.is_err() {
                    return;
                }
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() && socket.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, ended)
}

/// Counts one ended upstream socket when dropped.
struct EndCount(Arc<AtomicUsize>);

impl Drop for EndCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a tunnel through `gw` and reads the upstream's greeting.
async fn open_tunnel(gw: &TestGateway) -> Socket {
    let url = format!("ws://{}/chat", gw.addr);
    let (mut socket, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .expect("handshake within 5 s")
    .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(next_text(&mut socket).await, "hello nobody");
    socket
}

async fn active_connections(gw: &TestGateway) -> Option<f64> {
    let listener = gw.addr.to_string();
    metric_value(
        &scrape_metrics(gw).await,
        "wasmgate_active_connections",
        &[("listener", &listener)],
    )
}

async fn next_text(socket: &mut Socket) -> String {
    let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a message within 5 s")
        .expect("socket open")
        .expect("valid frame");
    message.into_text().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_messages_flow_after_the_chain_and_outlive_the_upstream_timeout() {
    let ws = websocket_upstream().await;
    let gw = TestGateway::start_opts(
        "routes:\n  - name: chat\n    upstream: ws\n    plugins:\n      - name: api-key\n        config: { keys: [{ key: key-for-alice, consumer: alice }] }\n",
        GatewayOptions {
            upstreams: &format!("  ws: {{ targets: ['{ws}'], timeout_ms: 300 }}\n"),
            ..GatewayOptions::default()
        },
    )
    .await;
    let url = format!("ws://{}/chat", gw.addr);

    // Without a key the plugin answers the handshake: no tunnel.
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401 handshake answer, got {other:?}"),
    }

    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", "key-for-alice".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    assert!(
        response.headers().contains_key("x-request-id"),
        "the 101 comes from the gateway"
    );
    assert_eq!(
        next_text(&mut socket).await,
        "hello alice",
        "auth ran first"
    );
    socket.send(Message::text("ping 1")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "ping 1");
    // Idle past the upstream's 300 ms timeout: the tunnel stays open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    socket.send(Message::text("ping 2")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "ping 2");
    socket.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_refuses_the_upgrade_is_proxied_as_a_plain_response() {
    // The echo upstream is no WebSocket server: it answers 200, which the
    // client gets as a failed handshake, not a hang.
    let gw = TestGateway::start("routes:\n  - name: r\n    upstream: a\n").await;
    match tokio_tungstenite::connect_async(format!("ws://{}/x", gw.addr)).await {
        Err(Error::Http(response)) => assert_eq!(response.status(), 200),
        other => panic!("expected the upstream's 200, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnels_hold_their_connection_slots_and_show_in_the_gauge_until_they_close() {
    const N: usize = 3;
    let ws = websocket_upstream().await;
    let gw = TestGateway::start_opts(
        &format!("admin: {{ address: '127.0.0.1:0' }}\nlimits: {{ max_connections: {N} }}\nroutes:\n  - name: plain\n    match: {{ path: /plain }}\n    upstream: a\n  - name: chat\n    upstream: ws\n"),
        GatewayOptions {
            upstreams: &format!("  ws: {{ targets: ['{ws}'] }}\n"),
            ..GatewayOptions::default()
        },
    )
    .await;
    let mut tunnels = Vec::new();
    for _ in 0..N {
        tunnels.push(open_tunnel(&gw).await);
    }
    assert_eq!(active_connections(&gw).await, Some(N as f64));

    // One more client waits in the backlog while every tunnel is open.
    let mut extra = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    extra
        .write_all(b"GET /plain HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), read_raw_response(&mut extra));
    assert!(waited.await.is_err(), "connection N+1 is not served");
    for tunnel in &mut tunnels {
        tunnel.send(Message::text("still here")).await.unwrap();
        assert_eq!(next_text(tunnel).await, "still here");
    }
    assert_eq!(active_connections(&gw).await, Some(N as f64));

    // A tunnel that closes gives its slot to the waiting client.
    let mut closing = tunnels.pop().unwrap();
    closing.close(None).await.unwrap();
    drop(closing);
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), read_raw_response(&mut extra))
        .await
        .expect("served once a tunnel closed")
        .expect("a response");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tunnel_idle_past_its_timeout_is_closed_on_both_sides() {
    let (ws, ended) = websocket_upstream_counting_closes().await;
    let gw = TestGateway::start_opts(
        "admin: { address: '127.0.0.1:0' }\nlimits: { tunnel_idle_timeout_ms: 400 }\nroutes:\n  - name: chat\n    upstream: ws\n",
        GatewayOptions {
            upstreams: &format!("  ws: {{ targets: ['{ws}'] }}\n"),
            ..GatewayOptions::default()
        },
    )
    .await;
    let mut socket = open_tunnel(&gw).await;
    // Traffic every 150 ms keeps it open well past the timeout.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        socket
            .send(Message::text(format!("ping {i}")))
            .await
            .unwrap();
        assert_eq!(next_text(&mut socket).await, format!("ping {i}"));
    }
    assert_eq!(ended.load(Ordering::SeqCst), 0, "a busy tunnel stays open");

    let idle_since = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("the gateway closes the idle tunnel within the timeout and slack");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_)))),
        "no message, the tunnel ended: {end:?}"
    );
    assert!(
        idle_since.elapsed() >= Duration::from_millis(350),
        "not before the timeout"
    );
    eventually!(
        "the upstream side closed too",
        ended.load(Ordering::SeqCst) == 1
    );
    eventually!(
        "the tunnel's connection left the gauge",
        active_connections(&gw).await == Some(0.0)
    );
}
