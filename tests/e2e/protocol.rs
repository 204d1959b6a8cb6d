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
