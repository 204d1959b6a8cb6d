//! The transform plugin through the running gateway: templated headers from
//! the context, path and query rewrites, JSON bodies both ways, and the 400
//! for a body that must be JSON.

use crate::support::{get_client, TestGateway};
use serde_json::json;

const ROUTES: &str = r#"
routes:
  - name: shop
    match: { path_prefix: /api }
    upstream: a
    plugins:
      - { name: probe, config: { tag: auth, ctx_set: { sub: alice } } }
      - name: transform
        config:
          request:
            headers: { set: { x-user: "${ctx.sub}" }, remove: [x-debug], rename: { x-old: x-new } }
            path: { strip_prefix: /api, replace: [{ pattern: "^/v1/", with: "/v2/" }] }
            query: { remove: [debug], add: { user: "${ctx.sub}" } }
            body: { require_json: true, rename: { userName: user.name }, wrap: data }
          response:
            headers: { set: { x-route: "${route}" } }
            body: { remove: [upstream], add: { served_to: "${ctx.sub}" } }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn requests_and_responses_are_reshaped_on_the_way() {
    let gw = TestGateway::start(ROUTES).await;
    let reply = get_client()
        .send(
            "POST",
            &gw.url("/api/v1/orders?debug=1&page=2"),
            &[
                ("content-type", "application/json"),
                ("x-debug", "1"),
                ("x-old", "kept"),
            ],
            br#"{"userName":"Al","qty":2}"#,
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-route"), Some("shop"));
    let seen = reply.json();
    assert_eq!(seen["path"], "/v2/orders");
    assert_eq!(seen["query"], "page=2&user=alice");
    assert_eq!(seen["served_to"], "alice");
    assert_eq!(seen.get("upstream"), None, "removed from the response");
    assert_eq!(reply.upstream_header("x-user").as_deref(), Some("alice"));
    assert_eq!(reply.upstream_header("x-new").as_deref(), Some("kept"));
    assert_eq!(reply.upstream_header("x-old"), None);
    assert_eq!(reply.upstream_header("x-debug"), None);
    let sent: serde_json::Value = serde_json::from_str(seen["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"data": {"user": {"name": "Al"}, "qty": 2}}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_must_be_json_and_is_not_gets_400() {
    let gw = TestGateway::start(&ROUTES.replace("upstream: a", "upstream: dead")).await;
    let reply = get_client()
        .send(
            "POST",
            &gw.url("/api/orders"),
            &[("content-type", "application/json")],
            b"{oops",
        )
        .await
        .unwrap();
    // The upstream is dead: a 400 (not 502) shows it was never called.
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        json!({"error": "request body must be valid JSON", "code": "invalid_json"})
    );
}
