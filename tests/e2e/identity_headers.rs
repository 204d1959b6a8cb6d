//! Identity headers cannot be forged: a header a plugin entry writes to tell
//! the upstream who the caller is never reaches an upstream from the client,
//! on any route, and `strip_request_headers` replaces the derived list.

use crate::support::{get_client, HttpClient, TestGateway};

/// `/api` authenticates with `api-key` (writes `x-consumer`); `/sso` with
/// `jwt-auth` (`sub` → `x-user-id`); `/tenant` runs a third-party plugin
/// declaring `x-ctx-tenant`; `/` has no plugin at all.
const ROUTES: &str = "routes:
  - name: api
    match: { path_prefix: /api }
    upstream: a
    plugins:
      - name: api-key
        config: { keys: [{ key: key-of-alice, consumer: alice }, { key: key-of-bob-1, consumer: bob }] }
  - name: sso
    match: { path_prefix: /sso }
    upstream: a
    plugins:
      - name: jwt-auth
        allow: ['outbound:a']
        config:
          keys: [{ alg: HS256, secret: 'at-least-32-bytes-of-shared-secret!!' }]
          claims_to_headers: { sub: x-user-id }
  - name: tenant
    match: { path_prefix: /tenant }
    upstream: a
    plugins:
      - { name: probe, config: { ctx_set: { tenant: acme }, ctx_echo: [tenant], identity_headers: [x-ctx-tenant] } }
  - name: public
    match: { path_prefix: / }
    upstream: a
";

const FORGED: [(&str, &str); 4] = [
    ("x-consumer", "alice"),
    ("X-User-Id", "alice"),
    ("x-ctx-tenant", "evil"),
    ("x-other", "kept"),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_client_sent_identity_header_never_reaches_the_upstream() {
    let gw = TestGateway::start(ROUTES).await;
    for client in [get_client(), HttpClient::h2c()] {
        let public = client.get(&gw.url("/public/me"), &FORGED).await;
        assert_eq!(public.status, 200);
        assert_eq!(
            public.upstream_header("x-consumer"),
            None,
            "no api-key here"
        );
        assert_eq!(public.upstream_header("x-user-id"), None);
        assert_eq!(public.upstream_header("x-ctx-tenant"), None);
        assert_eq!(public.upstream_header("x-other").as_deref(), Some("kept"));
    }
    let bob = get_client()
        .get(
            &gw.url("/api/me"),
            &[("x-api-key", "key-of-bob-1"), FORGED[0]],
        )
        .await;
    assert_eq!(bob.status, 200);
    assert_eq!(bob.upstream_header("x-consumer").as_deref(), Some("bob"));
    let tenant = get_client().get(&gw.url("/tenant"), &FORGED).await;
    assert_eq!(
        tenant.upstream_header("x-ctx-tenant").as_deref(),
        Some("acme")
    );
    assert_eq!(tenant.upstream_header("x-consumer"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_strip_list_replaces_the_derived_one() {
    let routes = format!("strip_request_headers: [X-Internal-User, x-user-id]\n{ROUTES}");
    let gw = TestGateway::start(&routes).await;
    let reply = get_client()
        .get(
            &gw.url("/public"),
            &[
                ("x-internal-user", "root"),
                ("x-user-id", "alice"),
                ("x-consumer", "alice"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.upstream_header("x-internal-user"), None);
    assert_eq!(reply.upstream_header("x-user-id"), None);
    assert_eq!(
        reply.upstream_header("x-consumer").as_deref(),
        Some("alice"),
        "not listed: the operator chose (and `validate` warns)"
    );
}
