//! WebSocket through the gateway: the handshake runs the route's request
//! hooks (auth), then the upgraded connection is a tunnel to a real
//! WebSocket server that upstream timeouts do not cut.

use crate::support::{GatewayOptions, TestGateway};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error, Message};

/// A WebSocket server that greets with the `x-consumer` header of the
/// handshake it saw, then echoes every text message.
async fn websocket_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
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
    addr
}

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
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
