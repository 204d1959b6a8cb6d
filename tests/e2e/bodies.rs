//! Bodies: streamed untouched unless a plugin asks; buffered up to the
//! route's limit when one does.

use crate::support::{get_client, TestGateway};

const ROUTES: &str = "
routes:
  - name: stream
    match: { path: /stream }
    upstream: a
    plugins: [{ name: probe, config: { tag: s } }]
  - name: upper
    match: { path: /upper }
    upstream: a
    max_body_bytes: 1024
    plugins: [{ name: probe, config: { tag: u, upper_body: true } }]
";

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_does_not_ask_never_sees_the_body_and_it_passes_through() {
    let gw = TestGateway::start(ROUTES).await;
    let body = "x".repeat(200_000);
    let reply = get_client()
        .send("POST", &gw.url("/stream"), &[], body.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["body"].as_str().unwrap().len(),
        200_000,
        "larger than any limit, streamed"
    );
    assert_eq!(
        reply.header("x-response-bytes"),
        None,
        "response body not buffered for the plugin"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_asks_gets_and_may_replace_both_bodies() {
    let gw = TestGateway::start(ROUTES).await;
    let reply = get_client()
        .send("POST", &gw.url("/upper"), &[], b"hello gateway")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body"], "HELLO GATEWAY");
    assert_eq!(reply.json()["headers"]["content-length"], "13");
    assert_eq!(
        reply.header("x-response-bytes"),
        Some(reply.body.len().to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_route_limit_is_413_json() {
    let gw = TestGateway::start(ROUTES).await;
    let reply = get_client()
        .send("POST", &gw.url("/upper"), &[], &[b'a'; 2048])
        .await
        .unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["code"], "body_too_large");
}

/// An upstream that answers each path with a fault: a huge declared length
/// (`/huge-declared`), a body larger than the route buffers (`/too-big`,
/// chunked), a body cut off mid-way (`/cut`), or a body dribbled one byte
/// every 200 ms (`/dribble`).
async fn faulty_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let _ = match path.as_str() {
                    "/huge-declared" => {
                        stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10000000000\r\n\r\nabc")
                            .await
                    }
                    "/too-big" => {
                        let chunk = vec![b'x'; 4096];
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                            .await;
                        for _ in 0..16 {
                            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                            framed.extend_from_slice(&chunk);
                            framed.extend_from_slice(b"\r\n");
                            if stream.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                        stream.write_all(b"0\r\n\r\n").await
                    }
                    "/cut" => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
                            .await;
                        return;
                    }
                    _ => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                            .await;
                        for _ in 0..100 {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            if stream.write_all(b"x").await.is_err() {
                                return;
                            }
                        }
                        Ok(())
                    }
                };
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// Whatever an upstream does to a response body the chain buffers is the
/// upstream's fault: 502 (too large, declared or sent; broken off) or 504
/// (not all there within the upstream's timeout), never a client error and
/// never a request held open by a dribbling upstream.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_faults_on_a_buffered_response_are_502_or_504() {
    let faulty = faulty_upstream().await;
    let upstreams = format!("  faulty: {{ targets: ['{faulty}'], timeout_ms: 800 }}\n");
    let gw = TestGateway::start_opts(
        "
routes:
  - name: buffered
    upstream: faulty
    max_response_body_bytes: 16384
    plugins: [{ name: probe, config: { tag: u, upper_body: true } }]
",
        crate::support::GatewayOptions {
            upstreams: &upstreams,
            ..Default::default()
        },
    )
    .await;
    let client = get_client();
    for (path, status, code) in [
        ("/huge-declared", 502, "upstream_body"),
        ("/too-big", 502, "upstream_body"),
        ("/cut", 502, "upstream_body"),
        ("/dribble", 504, "upstream_timeout"),
    ] {
        let started = std::time::Instant::now();
        let reply = client.get(&gw.url(path), &[]).await;
        assert_eq!(reply.status, status, "{path}: {:?}", reply.body);
        assert_eq!(reply.json()["code"], code, "{path}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{path} held the request for {:?}",
            started.elapsed()
        );
    }
}
