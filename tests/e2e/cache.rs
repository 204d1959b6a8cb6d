//! The cache plugin through the running gateway: a repeated GET is answered
//! from the kv store without reaching the upstream (the echoed request id
//! proves it), per-request headers of earlier plugins stay fresh on a hit,
//! errors are not stored, and one consumer's entry is never served to
//! another unless the route says `shared: true`.

use crate::support::{get_client, TestGateway};

const ROUTES: &str = "routes:
  - name: r
    upstream: a
    plugins:
      - name: rate-limit
        allow: [kv]
        config: { rate: 1, period: 1h, burst: 100, key: { source: route } }
      - name: cache
        allow: [kv]
        config: { ttl_seconds: 60, vary: [accept-language] }
";

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_get_is_a_hit_and_never_reaches_the_upstream() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    let url = gw.url("/items?page=2");
    let first = client.get(&url, &[("accept-language", "fr")]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let first_id = first.header("x-request-id").unwrap().to_string();
    assert_eq!(
        first.upstream_header("x-request-id"),
        Some(first_id.clone())
    );

    let second = client.get(&url, &[("accept-language", "fr")]).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert!(second.header("age").is_some());
    assert_eq!(second.body, first.body, "the stored body");
    assert_ne!(second.header("x-request-id"), Some(first_id.as_str()));
    assert_eq!(
        second.upstream_header("x-request-id"),
        Some(first_id),
        "the upstream saw only the first request"
    );
    assert_eq!(
        (
            first.header("x-ratelimit-remaining"),
            second.header("x-ratelimit-remaining")
        ),
        (Some("99"), Some("98")),
        "rate-limit runs before the cache: its headers are per request"
    );

    let other_language = client.get(&url, &[("accept-language", "de")]).await;
    assert_eq!(other_language.header("x-cache"), Some("MISS"));
    let other_query = client
        .get(&gw.url("/items?page=3"), &[("accept-language", "fr")])
        .await;
    assert_eq!(other_query.header("x-cache"), Some("MISS"));
    let post = client
        .send("POST", &url, &[("accept-language", "fr")], b"{}")
        .await
        .unwrap();
    assert_eq!(post.header("x-cache"), Some("BYPASS"));
    assert_eq!(post.json()["method"], "POST");
}

#[tokio::test(flavor = "multi_thread")]
async fn error_responses_are_not_stored() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    let url = gw.url("/flaky");
    let mut upstream_ids = Vec::new();
    for _ in 0..2 {
        let reply = client.get(&url, &[("x-echo-status", "503")]).await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.header("x-cache"), Some("MISS"));
        upstream_ids.push(reply.upstream_header("x-request-id").unwrap());
    }
    assert_ne!(
        upstream_ids[0], upstream_ids[1],
        "both reached the upstream"
    );
    let ok = client.get(&url, &[]).await;
    assert_eq!((ok.status, ok.header("x-cache")), (200, Some("MISS")));
    let again = client.get(&url, &[]).await;
    assert_eq!((again.status, again.header("x-cache")), (200, Some("HIT")));
}

/// `api-key` before `cache`, as the cache README prescribes, with `cache`
/// configured by `cache_config`.
fn behind_api_key(cache_config: &str) -> String {
    format!(
        "routes:
  - name: r
    upstream: a
    plugins:
      - name: api-key
        config: {{ keys: [{{ key: key-of-alice, consumer: alice }}, {{ key: key-of-bob-1, consumer: bob }}] }}
      - name: cache
        allow: [kv]
        config: {cache_config}
"
    )
}

const AS_ALICE: [(&str, &str); 1] = [("x-api-key", "key-of-alice")];
const AS_BOB: [(&str, &str); 1] = [("x-api-key", "key-of-bob-1")];

#[tokio::test(flavor = "multi_thread")]
async fn one_consumers_cached_response_is_never_served_to_another() {
    let gw = TestGateway::start(&behind_api_key("{ ttl_seconds: 60 }")).await;
    let client = get_client();
    let url = gw.url("/me/orders");
    let alice = client.get(&url, &AS_ALICE).await;
    assert_eq!((alice.status, alice.header("x-cache")), (200, Some("MISS")));
    let alice_again = client.get(&url, &AS_ALICE).await;
    assert_eq!(alice_again.header("x-cache"), Some("HIT"));
    assert_eq!(alice_again.body, alice.body);

    let bob = client.get(&url, &AS_BOB).await;
    assert_eq!(
        bob.header("x-cache"),
        Some("MISS"),
        "bob must not get alice's entry"
    );
    assert_eq!(bob.upstream_header("x-consumer").as_deref(), Some("bob"));
    let bob_again = client.get(&url, &AS_BOB).await;
    assert_eq!(bob_again.header("x-cache"), Some("HIT"));
    assert_eq!(
        bob_again.upstream_header("x-consumer").as_deref(),
        Some("bob")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_shared_one_entry_serves_every_consumer() {
    let gw = TestGateway::start(&behind_api_key("{ ttl_seconds: 60, shared: true }")).await;
    let client = get_client();
    let url = gw.url("/catalog");
    let alice = client.get(&url, &AS_ALICE).await;
    assert_eq!((alice.status, alice.header("x-cache")), (200, Some("MISS")));
    let bob = client.get(&url, &AS_BOB).await;
    assert_eq!(bob.header("x-cache"), Some("HIT"), "shared: true shares");
    assert_eq!(bob.body, alice.body);
    let nobody = client.get(&url, &[]).await;
    assert_eq!(nobody.status, 401, "a hit still needs the key");
}
