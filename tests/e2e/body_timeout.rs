//! `body_read_timeout_ms`: a request body must arrive whole within the
//! timeout from its head, on a route whose plugin buffers it and on one
//! that streams it; past it the client gets 408 JSON and its connection
//! closes. A body that arrives in time passes.

use crate::support::{
    closed_by_peer, echo_upstream, get_client, read_raw_response, GatewayOptions, TestGateway,
};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

const TIMEOUT_MS: u64 = 600;

const ROUTES: &str = "
limits: { body_read_timeout_ms: 60000 }
routes:
  - name: buffered
    match: { path: /buffered }
    upstream: a
    body_read_timeout_ms: 600
    plugins: [{ name: probe, config: { tag: u, upper_body: true } }]
  - name: streamed
    match: { path: /streamed }
    upstream: a
    body_read_timeout_ms: 600
  - name: streamed-through-a-plugin
    match: { path: /streamed-plugin }
    upstream: a
    body_read_timeout_ms: 600
    plugins: [{ name: probe, config: { tag: s } }]
";

/// Sends a head declaring 100 body bytes, then one byte every 100 ms (each
/// gap far under the timeout) until the gateway stops reading; returns the
/// response, how long after the head it came, and the read side.
async fn dribble(gw: &TestGateway, path: &str) -> (u16, String, Duration, OwnedReadHalf) {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-length: 100\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let sent = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if write.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), read_raw_response(&mut read))
        .await
        .expect("answered within the timeout and slack")
        .expect("a response, not a bare close");
    let elapsed = sent.elapsed();
    writer.abort();
    (status, body, elapsed, read)
}

async fn assert_timed_out(gw: &TestGateway, path: &str) {
    let (status, body, elapsed, mut stream) = dribble(gw, path).await;
    assert_eq!(status, 408, "{path}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(json["code"], "body_timeout", "{path}: {body}");
    assert!(
        elapsed >= Duration::from_millis(TIMEOUT_MS - 50),
        "{path}: not before the timeout ({elapsed:?})"
    );
    tokio::time::timeout(Duration::from_secs(3), closed_by_peer(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("{path}: the connection is closed after the 408"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_on_a_buffering_route_gets_408_and_the_connection_closes() {
    let gw = TestGateway::start(ROUTES).await;
    assert_timed_out(&gw, "/buffered").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_streamed_body_is_cut_off_with_408_before_the_upstream_answers() {
    let gw = TestGateway::start(ROUTES).await;
    assert_timed_out(&gw, "/streamed").await;
    assert_timed_out(&gw, "/streamed-plugin").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_arrives_in_time_passes_on_every_route() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    for path in ["/buffered", "/streamed", "/streamed-plugin"] {
        let reply = client
            .send("POST", &gw.url(path), &[], b"hello gateway")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{path}");
        let body = reply.json()["body"].as_str().unwrap().to_lowercase();
        assert_eq!(body, "hello gateway", "{path}");
    }
    // In pieces with pauses, all within the timeout.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /streamed HTTP/1.1\r\nhost: gw\r\ncontent-length: 6\r\n\r\n")
        .await
        .unwrap();
    for piece in [b"ab", b"cd", b"ef"] {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(piece).await.unwrap();
    }
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(5), read_raw_response(&mut stream))
            .await
            .expect("answered")
            .expect("a response");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("abcdef"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_client_bodies_do_not_count_against_the_upstream_breaker() {
    let (guarded, _server) = echo_upstream("guarded").await;
    let gw = TestGateway::start_opts(
        "routes:\n  - name: streamed\n    match: { path: /streamed }\n    upstream: guarded\n    body_read_timeout_ms: 600\n",
        GatewayOptions {
            upstreams: &format!(
                "  guarded: {{ targets: ['{guarded}'], circuit_breaker: {{ consecutive_failures: 2, open_ms: 60000 }} }}\n"
            ),
            ..GatewayOptions::default()
        },
    )
    .await;
    // More slow bodies than the breaker's failure count, all at once.
    let slow = (0..3).map(|_| assert_timed_out(&gw, "/streamed"));
    futures::future::join_all(slow).await;
    let reply = get_client()
        .send("POST", &gw.url("/streamed"), &[], b"on time")
        .await
        .unwrap();
    assert_eq!(
        reply.status, 200,
        "the breaker stays closed: {:?}",
        reply.body
    );
}
