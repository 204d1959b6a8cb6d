//! HTTP/2 from clients (h2c, prior knowledge) through the plugin chain.

use crate::support::{HttpClient, TestGateway};

#[tokio::test(flavor = "multi_thread")]
async fn h2c_clients_are_served_through_the_chain() {
    let gw = TestGateway::start(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: probe, config: { tag: h2 } }\n",
    )
    .await;
    let client = HttpClient::h2c();
    let replies = futures::future::join_all((0..20).map(|i| {
        let client = client.clone();
        let url = gw.url(&format!("/stream/{i}"));
        async move { client.get(&url, &[]).await }
    }))
    .await;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["path"], format!("/stream/{i}"));
        assert_eq!(reply.upstream_header("x-chain").as_deref(), Some("h2"));
        assert_eq!(
            reply.upstream_header("host").as_deref(),
            Some(gw.addr.to_string().as_str()),
            "authority becomes Host upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let gw = TestGateway::start("routes:\n  - name: r\n    upstream: a\n").await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move {
            HttpClient::http1()
                .get(&url, &[("x-echo-delay-ms", "500")])
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let crate::support::TestGateway {
        gateway, dir: _dir, ..
    } = gw;
    let started = std::time::Instant::now();
    gateway.shutdown().await;
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight request finished");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "shutdown waited for it"
    );
    let refused = HttpClient::http1().send("GET", &url, &[], b"").await;
    assert!(
        refused.is_err(),
        "no new connections after shutdown: {refused:?}"
    );
}
