//! The plain HTTP/1.1 upstream pool over real sockets: keep-alive
//! connections go back to the pool when their response ends (bodiless ones
//! too), a connection the upstream closed while idle is never written to,
//! and a response the client abandons does not leave its connection for
//! the next request.

use crate::support::{get_client, Backend, TestGateway};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn route_to(addr: std::net::SocketAddr) -> String {
    format!(
        "upstreams:
  u: {{ targets: ['{addr}'] }}
routes:
  - name: r
    match: {{ path_prefix: / }}
    upstream: u
"
    )
}

/// Sends `method /pooled` on `sender`'s one client connection and reads the
/// answer to its end.
async fn exchange(sender: &mut SendRequest<Empty<Bytes>>, method: &str) -> u16 {
    sender.ready().await.unwrap();
    let request = http::Request::builder()
        .method(method)
        .uri("/pooled")
        .header("host", "test")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_requests_share_one_upstream_connection_bodiless_answers_included() {
    let x = Backend::start("x").await;
    let gw = TestGateway::start_config(&route_to(x.addr)).await;
    // One client connection: it is served by one worker, whose idle
    // upstream connections are its own.
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    for _ in 0..5 {
        assert_eq!(exchange(&mut sender, "GET").await, 200);
    }
    for _ in 0..3 {
        assert_eq!(exchange(&mut sender, "HEAD").await, 200);
    }
    x.set_status(204);
    for _ in 0..3 {
        assert_eq!(exchange(&mut sender, "GET").await, 204);
    }
    assert_eq!(x.hits(), 11);
    assert_eq!(x.connections(), 1, "every response freed the connection");
}

/// An upstream that answers the first request on each connection with
/// `answer`, then holds the connection `hold` long and closes it without
/// saying so.
async fn scripted_upstream(
    answer: &'static [u8],
    hold: Duration,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(answer).await;
                tokio::time::sleep(hold).await;
            });
        }
    });
    (addr, accepted)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_upstream_closed_while_idle_is_not_reused() {
    let (addr, accepted) = scripted_upstream(OK, Duration::from_millis(20)).await;
    let gw = TestGateway::start_config(&route_to(addr)).await;
    let client = get_client();
    let url = gw.url("/closing");
    for i in 0..5 {
        let reply = client.get(&url, &[]).await;
        assert_eq!((i, reply.status, &reply.body[..]), (i, 200, &b"ok"[..]));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}

/// An upstream that appends a second, unasked-for response to its answer
/// (a desync attempt) must not have it delivered as the answer to the next
/// request: the connection is not used again.
#[tokio::test(flavor = "multi_thread")]
async fn a_response_an_upstream_sends_unasked_never_answers_the_next_request() {
    const SMUGGLING: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
        HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled";
    let (addr, accepted) = scripted_upstream(SMUGGLING, Duration::from_secs(10)).await;
    let gw = TestGateway::start_config(&route_to(addr)).await;
    let client = get_client();
    let url = gw.url("/desync");
    for i in 0..4 {
        let reply = client.get(&url, &[]).await;
        assert_eq!((i, reply.status, &reply.body[..]), (i, 200, &b"ok"[..]));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        4,
        "no connection was reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_the_client_abandons_closes_its_upstream_connection() {
    // An upstream that sends the head and part of a long body, then waits.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let seen = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\npartial")
                    .await;
                // The gateway closing its end is the only way this read ends.
                let _ = stream.read(&mut buf).await;
                seen.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let gw = TestGateway::start_config(&route_to(addr)).await;
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(b"GET /abandoned HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = client.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    drop(client);
    crate::support::eventually!("the gateway closed the upstream connection", {
        closed.load(Ordering::SeqCst) == 1
    });
}
