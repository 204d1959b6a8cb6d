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
