//! The config's `limits:` over real sockets: each limit holds against a
//! misbehaving client while the gateway keeps serving a well-behaved one.

use crate::support::{
    closed_by_peer, get_client, metric_value, read_raw_response, scrape_metrics, TestGateway,
};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(3);

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: gw\r\n\r\n")
}

async fn connect(gw: &TestGateway) -> TcpStream {
    TcpStream::connect(gw.addr).await.unwrap()
}

/// Sends a request on `stream` and reads its response.
async fn exchange(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::timeout(WITHIN, read_raw_response(stream))
        .await
        .expect("answered in time")
        .expect("a response")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_request_head_gets_431() {
    let gw = TestGateway::start(
        "limits: { max_header_bytes: 16384 }\nroutes:\n  - name: r\n    upstream: a\n",
    )
    .await;
    let fits = "x".repeat(12_000);
    let mut client = connect(&gw).await;
    let (status, body) = exchange(
        &mut client,
        &format!("GET /fits HTTP/1.1\r\nhost: gw\r\nx-big: {fits}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A head that has not ended after 16384 bytes.
    let mut attacker = connect(&gw).await;
    let head = format!(
        "GET /big HTTP/1.1\r\nhost: gw\r\nx-big: {}",
        "x".repeat(20_000)
    );
    let (status, _) = exchange(&mut attacker, &head[..16_384]).await;
    assert_eq!(status, 431);

    let (status, _) = exchange(&mut client, &get("/still-served")).await;
    assert_eq!(status, 200, "other clients are served");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slowloris_head_is_cut_off_while_others_are_served() {
    let gw = TestGateway::start(
        "limits: { header_read_timeout_ms: 300 }\nroutes:\n  - name: r\n    upstream: a\n",
    )
    .await;
    let started = Instant::now();
    let mut slow = connect(&gw).await;
    slow.write_all(b"GET / HTTP/1.1\r\nhost: gw\r\nx-one: 1\r\n")
        .await
        .unwrap();
    // Sends nothing at all: closed just the same.
    let mut silent = connect(&gw).await;

    let mut client = connect(&gw).await;
    for _ in 0..3 {
        let (status, _) = exchange(&mut client, &get("/meanwhile")).await;
        assert_eq!(status, 200);
    }
    tokio::time::timeout(WITHIN, closed_by_peer(&mut slow))
        .await
        .expect("the slow head's connection is closed");
    tokio::time::timeout(WITHIN, closed_by_peer(&mut silent))
        .await
        .expect("the silent connection is closed");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    let (status, _) = exchange(&mut connect(&gw).await, &get("/after")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_but_a_slow_request_is_not() {
    let gw = TestGateway::start(
        "limits: { idle_timeout_ms: 200, header_read_timeout_ms: 5000 }\nroutes:\n  - name: r\n    upstream: a\n",
    )
    .await;
    let mut idle = connect(&gw).await;
    let (status, _) = exchange(&mut idle, &get("/once")).await;
    assert_eq!(status, 200);

    // In flight for longer than the idle timeout: not idle.
    let mut busy = connect(&gw).await;
    let (status, body) = exchange(
        &mut busy,
        "GET /slow HTTP/1.1\r\nhost: gw\r\nx-echo-delay-ms: 600\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    tokio::time::timeout(WITHIN, closed_by_peer(&mut idle))
        .await
        .expect("the idle keep-alive connection is closed");
    tokio::time::timeout(WITHIN, closed_by_peer(&mut busy))
        .await
        .expect("and the busy one once it is idle too");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_keeps_extra_clients_waiting_until_one_leaves() {
    let gw = TestGateway::start(
        "admin: { address: '127.0.0.1:0' }\nlimits: { max_connections: 2 }\nroutes:\n  - name: r\n    upstream: a\n",
    )
    .await;
    let mut first = connect(&gw).await;
    let mut second = connect(&gw).await;
    assert_eq!(exchange(&mut first, &get("/1")).await.0, 200);
    assert_eq!(exchange(&mut second, &get("/2")).await.0, 200);

    let mut third = connect(&gw).await;
    third.write_all(get("/3").as_bytes()).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), read_raw_response(&mut third));
    assert!(waited.await.is_err(), "a third connection is not served");

    assert_eq!(
        exchange(&mut first, &get("/again")).await.0,
        200,
        "the connections within the limit are"
    );
    let listener = gw.addr.to_string();
    let metrics = scrape_metrics(&gw).await;
    assert_eq!(
        metric_value(
            &metrics,
            "wasmgate_active_connections",
            &[("listener", &listener)]
        ),
        Some(2.0),
        "{metrics}"
    );

    drop(second);
    let (status, body) = tokio::time::timeout(WITHIN, read_raw_response(&mut third))
        .await
        .expect("served once a connection left")
        .expect("a response");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_limit_gets_413_declared_or_streamed() {
    let gw = TestGateway::start(
        "limits: { max_body_bytes: 1000 }\nroutes:\n  - name: big\n    match: { path_prefix: /big }\n    upstream: a\n    max_body_bytes: 5000\n  - name: r\n    upstream: a\n",
    )
    .await;
    let client = get_client();
    let post = |path: &str, size: usize| {
        let client = client.clone();
        let url = gw.url(path);
        async move {
            client
                .send("POST", &url, &[], &vec![b'x'; size])
                .await
                .unwrap()
        }
    };
    assert_eq!(post("/small", 1000).await.status, 200);
    let refused = post("/large", 1001).await;
    assert_eq!(refused.status, 413);
    assert_eq!(refused.json()["code"], "body_too_large");
    assert_eq!(
        post("/big/upload", 4000).await.status,
        200,
        "a route's own limit wins"
    );

    // Chunked: no length up front, so the cap cuts the stream.
    let mut stream = connect(&gw).await;
    let chunk = "x".repeat(600);
    let request = format!(
        "POST /chunked HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (status, body) = exchange(&mut stream, &request).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(post("/after", 10).await.status, 200);
}
