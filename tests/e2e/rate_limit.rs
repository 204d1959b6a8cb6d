//! The rate-limit plugin through the running gateway: exact counts under
//! concurrent clients (the bucket lives in the shared kv store), headers on
//! every response, and buckets per consumer after api-key.

use crate::support::{get_client, Reply, TestGateway};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_n_lets_exactly_n_concurrent_clients_through() {
    const BURST: usize = 100;
    const CLIENTS: usize = 250;
    let gw = TestGateway::start(&format!(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - {{ name: rate-limit, allow: [kv], config: {{ rate: 1, period: 1h, burst: {BURST}, key: {{ source: header, name: x-bucket }} }} }}\n"
    ))
    .await;
    let url = gw.url("/");
    // Warm up first (each client's connection, and plugin instances), on
    // buckets of their own, so the real requests arrive close together.
    let clients: Vec<_> = (0..CLIENTS).map(|_| get_client()).collect();
    let warm = futures::future::join_all(clients.iter().enumerate().map(|(i, client)| {
        let bucket = format!("warm-{i}");
        let url = url.clone();
        async move { client.get(&url, &[("x-bucket", &bucket)]).await.status }
    }))
    .await;
    assert!(warm.iter().all(|s| *s == 200));
    // Several rounds on fresh buckets: a lost update shows in any of them.
    for round in 0..3 {
        let bucket = format!("shared-{round}");
        let (url, bucket) = (&url, bucket.as_str());
        let replies = futures::future::join_all(
            clients
                .iter()
                .map(|client| async move { client.get(url, &[("x-bucket", bucket)]).await }),
        )
        .await;
        check_exact_burst(&replies, BURST);
    }
}

/// Exactly `burst` replies are 200, each with a different remaining count,
/// the rest are 429 JSON with `Retry-After`; all carry the limit.
fn check_exact_burst(replies: &[Reply], burst: usize) {
    let ok: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok.len(), burst, "exactly the burst gets through");
    assert_eq!(limited.len(), replies.len() - burst);
    let mut remaining: Vec<u64> = ok
        .iter()
        .map(|r| r.header("x-ratelimit-remaining").unwrap().parse().unwrap())
        .collect();
    remaining.sort();
    assert_eq!(
        remaining,
        (0..burst as u64).collect::<Vec<_>>(),
        "each token handed out once"
    );
    let limit = burst.to_string();
    for reply in replies {
        assert_eq!(reply.header("x-ratelimit-limit"), Some(limit.as_str()));
    }
    let denied = limited[0];
    assert_eq!(
        denied.json(),
        json!({"error": "rate limit exceeded", "code": "rate_limited"})
    );
    assert_eq!(denied.header("retry-after"), Some("3600"));
    assert_eq!(denied.header("x-ratelimit-remaining"), Some("0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_named_by_api_key_get_their_own_buckets() {
    let gw = TestGateway::start(
        "routes:
  - name: api
    upstream: a
    plugins:
      - name: api-key
        config: { keys: [{ key: key-of-alice, consumer: alice }, { key: key-of-bob-0, consumer: bob }] }
      - name: rate-limit
        allow: [kv]
        config: { rate: 2, period: 1m, key: { source: context, name: consumer } }
",
    )
    .await;
    let client = get_client();
    let as_key = |key: &'static str| {
        let client = client.clone();
        let url = gw.url("/users");
        async move { client.get(&url, &[("x-api-key", key)]).await }
    };
    let first = as_key("key-of-alice").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(first.header("x-ratelimit-reset"), Some("30"));
    assert_eq!(as_key("key-of-alice").await.status, 200);
    let third = as_key("key-of-alice").await;
    assert_eq!(third.status, 429);
    assert_eq!(third.header("retry-after"), Some("30"));
    let bob = as_key("key-of-bob-0").await;
    assert_eq!(bob.status, 200, "bob has his own bucket");
    assert_eq!(bob.header("x-ratelimit-remaining"), Some("1"));
}
