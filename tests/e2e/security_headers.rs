//! The security-headers plugin through the running gateway: on proxied
//! responses and on answers of later plugins, and keeping a value set
//! further down the chain when asked to.

use crate::support::{get_client, TestGateway};

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_the_security_headers() {
    let gw = TestGateway::start(
        "routes:
  - name: api
    match: { path_prefix: /api }
    upstream: a
    plugins:
      - name: security-headers
        config: { referrer_policy: no-referrer }
      - name: api-key
        config: { keys: [{ key: secret-key-1, consumer: alice }] }
  - name: site
    match: { path_prefix: / }
    upstream: a
    plugins:
      - name: security-headers
        config: { override_upstream: false, hsts: false }
      - name: headers
        config: { response: { set: { x-frame-options: SAMEORIGIN } } }
",
    )
    .await;
    let client = get_client();
    let expect_all = |reply: &crate::support::Reply| {
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains")
        );
        assert_eq!(
            reply.header("content-security-policy"),
            Some("default-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'")
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    };

    let ok = client
        .get(&gw.url("/api/users"), &[("x-api-key", "secret-key-1")])
        .await;
    assert_eq!(ok.status, 200);
    expect_all(&ok);
    let denied = client.get(&gw.url("/api/users"), &[]).await;
    assert_eq!(denied.status, 401, "api-key answered");
    expect_all(&denied);

    let site = client.get(&gw.url("/index.html"), &[]).await;
    assert_eq!(site.status, 200);
    assert_eq!(
        site.header("x-frame-options"),
        Some("SAMEORIGIN"),
        "a value set further down the chain is kept"
    );
    assert_eq!(site.header("strict-transport-security"), None, "turned off");
    assert_eq!(site.header("x-content-type-options"), Some("nosniff"));
}
