//! The cors plugin through the running gateway, first in a chain with
//! api-key: preflights answered at the gateway (no key needed, upstream
//! never called), CORS headers on actual responses for allowed origins only,
//! `Vary: Origin` always.

use crate::support::{get_client, Reply, TestGateway};
use serde_json::json;

const ROUTES: &str = "routes:
  - name: api
    upstream: dead
    plugins:
      - name: cors
        config:
          origins: [https://app.example.com, '*.example.net']
          methods: [GET, POST, DELETE]
          headers: [content-type, x-api-key]
          expose_headers: [x-request-id]
          credentials: true
          max_age_seconds: 300
      - name: api-key
        config: { keys: [{ key: key-of-alice, consumer: alice }] }
  - name: echo
    match: { path_prefix: /echo }
    upstream: a
    plugins:
      - name: cors
        config: { origins: ['*.example.net'], expose_headers: [x-request-id] }
      - name: api-key
        config: { keys: [{ key: key-of-alice, consumer: alice }] }
";

fn vary(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_are_answered_by_the_gateway() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    let preflight = |origin: &'static str, method: &'static str| {
        let client = client.clone();
        let url = gw.url("/items/7");
        async move {
            let headers = [
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", "x-api-key, content-type"),
            ];
            client.send("OPTIONS", &url, &headers, b"").await.unwrap()
        }
    };
    // The upstream is dead and api-key wants a key: a 204 is the plugin's own answer.
    let ok = preflight("https://shop.example.net", "DELETE").await;
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://shop.example.net")
    );
    assert_eq!(
        ok.header("access-control-allow-methods"),
        Some("GET, POST, DELETE")
    );
    assert_eq!(
        ok.header("access-control-allow-headers"),
        Some("content-type, x-api-key")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(ok.header("access-control-max-age"), Some("300"));
    assert!(vary(&ok)[0].starts_with("Origin"));

    let refused = preflight("https://evil.test", "DELETE").await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json(),
        json!({"error": "origin not allowed", "code": "cors_forbidden"})
    );
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let wrong_method = preflight("https://app.example.com", "PATCH").await;
    assert_eq!(wrong_method.status, 403);
    assert_eq!(wrong_method.json()["error"], "method `PATCH` not allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn actual_responses_get_cors_headers_for_allowed_origins_only() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    let url = gw.url("/echo/items");
    let key = ("x-api-key", "key-of-alice");

    let allowed = client
        .get(&url, &[key, ("origin", "https://shop.example.net")])
        .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://shop.example.net")
    );
    assert_eq!(
        allowed.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(allowed.header("access-control-allow-credentials"), None);
    assert_eq!(vary(&allowed), ["Origin"]);
    assert_eq!(
        allowed.upstream_header("origin").as_deref(),
        Some("https://shop.example.net"),
        "the request itself goes upstream unchanged"
    );

    let other = client
        .get(&url, &[key, ("origin", "https://example.net.evil.test")])
        .await;
    assert_eq!(other.status, 200, "CORS is for the browser to enforce");
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(vary(&other), ["Origin"]);

    let same_site = client.get(&url, &[key]).await;
    assert_eq!(same_site.header("access-control-allow-origin"), None);
    assert_eq!(vary(&same_site), ["Origin"]);

    let unauthorized = client
        .get(&url, &[("origin", "https://shop.example.net")])
        .await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(
        unauthorized.header("access-control-allow-origin"),
        Some("https://shop.example.net"),
        "the page can read why it was refused"
    );
}
