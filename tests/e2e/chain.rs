//! The plugin chain through the running gateway: order, short-circuit,
//! reverse response hooks, context, and the two built-in plugins.

use crate::support::{get_client, TestGateway};

#[tokio::test(flavor = "multi_thread")]
async fn request_hooks_in_order_response_hooks_in_reverse() {
    let gw = TestGateway::start(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: probe, config: { tag: p1 } }\n      - { name: probe, config: { tag: p2 } }\n      - { name: probe, config: { tag: p3 } }\n",
    )
    .await;
    let reply = get_client().get(&gw.url("/"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.upstream_header("x-chain").as_deref(),
        Some("p1,p2,p3")
    );
    assert_eq!(reply.header("x-chain-response"), Some("p3,p2,p1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_answer_short_circuits_the_chain() {
    let gw = TestGateway::start(
        "routes:\n  - name: r\n    upstream: dead\n    plugins:\n      - { name: probe, config: { tag: p1 } }\n      - { name: probe, config: { tag: p2, respond: 403 } }\n      - { name: probe, config: { tag: p3 } }\n",
    )
    .await;
    let reply = get_client().get(&gw.url("/"), &[]).await;
    // The upstream is dead: a 403 (not 502) proves it was never called.
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "answered by probe p2", "code": "probe"})
    );
    assert_eq!(
        reply.header("x-chain-response"),
        Some("p1"),
        "only plugins before the answer see the response"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn context_passes_from_one_plugin_to_the_next() {
    let gw = TestGateway::start(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: probe, config: { tag: auth, ctx_set: { user: alice } } }\n      - { name: probe, config: { tag: reader, ctx_echo: [user, missing] } }\n",
    )
    .await;
    let reply = get_client().get(&gw.url("/"), &[]).await;
    assert_eq!(
        reply.upstream_header("x-ctx-user").as_deref(),
        Some("alice")
    );
    assert_eq!(reply.upstream_header("x-ctx-missing").as_deref(), Some(""));
}

#[tokio::test(flavor = "multi_thread")]
async fn api_key_then_headers_through_the_gateway() {
    let gw = TestGateway::start(
        "routes:
  - name: api
    upstream: a
    plugins:
      - name: api-key
        config: { keys: [{ key: secret-key-1, consumer: alice }] }
      - name: headers
        config:
          request: { add: { x-gateway: wasmgate }, remove: [x-debug] }
          response: { set: { x-served-by: wasmgate } }
",
    )
    .await;
    let client = get_client();
    let denied = client.get(&gw.url("/users"), &[]).await;
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.json(),
        serde_json::json!({"error": "missing API key", "code": "unauthorized"})
    );
    assert_eq!(
        denied.header("www-authenticate"),
        Some("ApiKey header=\"x-api-key\"")
    );
    assert_eq!(
        denied.header("x-served-by"),
        None,
        "headers never ran: api-key answered first"
    );

    let forged = client
        .get(&gw.url("/users"), &[("x-api-key", "wrong-key-00")])
        .await;
    assert_eq!(forged.status, 401);
    assert_eq!(forged.json()["error"], "invalid API key");

    let ok = client
        .get(
            &gw.url("/users"),
            &[
                ("x-api-key", "secret-key-1"),
                ("x-debug", "1"),
                ("x-consumer", "mallory"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.upstream_header("x-consumer").as_deref(),
        Some("alice"),
        "a client-sent consumer is overwritten"
    );
    assert_eq!(ok.upstream_header("x-gateway").as_deref(), Some("wasmgate"));
    assert_eq!(ok.upstream_header("x-debug"), None);
    assert_eq!(
        ok.upstream_header("x-api-key"),
        None,
        "the key is hidden from the upstream"
    );
    assert_eq!(ok.header("x-served-by"), Some("wasmgate"));
}
