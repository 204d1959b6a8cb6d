//! The ip-filter plugin through the running gateway: the socket peer
//! (127.0.0.1 here) against allow and deny lists, and the client address
//! behind a trusted proxy from `X-Forwarded-For`, also as a rate-limit key.

use crate::support::{get_client, TestGateway};
use serde_json::json;

const ROUTES: &str = "routes:
  - name: allowed
    match: { path_prefix: /allowed }
    upstream: a
    plugins: [{ name: ip-filter, config: { allow: [127.0.0.0/8, '::1'] } }]
  - name: denied
    match: { path_prefix: /denied }
    upstream: dead
    plugins: [{ name: ip-filter, config: { allow: [127.0.0.0/8], deny: [127.0.0.1/32] } }]
  - name: proxied
    match: { path_prefix: /proxied }
    upstream: a
    plugins:
      - { name: ip-filter, config: { allow: [203.0.113.0/24], trusted_hops: 1 } }
      - { name: rate-limit, allow: [kv], config: { rate: 1, period: 1h, key: { source: context, name: ip-filter.client_ip } } }
";

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_peer_is_checked_against_allow_and_deny() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    assert_eq!(client.get(&gw.url("/allowed"), &[]).await.status, 200);
    let denied = client.get(&gw.url("/denied"), &[]).await;
    // The upstream is dead: a 403 (not 502) proves it was never called.
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.json(),
        json!({"error": "client address not allowed", "code": "ip_forbidden"})
    );
    let spoofed = client
        .get(&gw.url("/denied"), &[("x-forwarded-for", "10.1.1.1")])
        .await;
    assert_eq!(
        spoofed.status, 403,
        "X-Forwarded-For is ignored without trusted hops"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    let via = |xff: &'static str| {
        let client = client.clone();
        let url = gw.url("/proxied");
        async move { client.get(&url, &[("x-forwarded-for", xff)]).await }
    };
    let first = via("203.0.113.9").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.upstream_header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        via("203.0.113.9").await.status,
        429,
        "rate-limit keyed by the forwarded client"
    );
    assert_eq!(
        via("198.51.100.7, 203.0.113.10").await.status,
        200,
        "another client"
    );
    let outsider = via("203.0.113.9, 198.51.100.7").await;
    assert_eq!(
        outsider.status, 403,
        "only the entry the proxy added counts"
    );
    let direct = client.get(&gw.url("/proxied"), &[]).await;
    assert_eq!(direct.status, 403);
    assert_eq!(
        direct.json(),
        json!({"error": "client address cannot be determined", "code": "ip_forbidden"})
    );
}
