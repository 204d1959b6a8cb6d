//! The jwt-auth plugin through the running gateway, with real RS256 tokens:
//! fixed ones signed with the plugin's TEST-ONLY key by
//! `plugins/jwt-auth/tests/keys/make-e2e-tokens.sh` (this crate has no JWT
//! library; valid ones expire in 2100).

use crate::support::{get_client, TestGateway};
use serde_json::json;

const PUBLIC_KEY: &str = include_str!("../../plugins/jwt-auth/tests/keys/test-only-rsa-public.pem");
const TOKENS: &str = include_str!("../../plugins/jwt-auth/tests/keys/e2e-tokens.json");

fn token(name: &str) -> String {
    let tokens: serde_json::Value = serde_json::from_str(TOKENS).unwrap();
    tokens[name].as_str().unwrap().to_string()
}

/// `/admin` needs the admin role; everything else any valid token. On `/`
/// the probe shows what a later plugin reads from the context.
fn routes() -> String {
    let pem = serde_json::to_string(PUBLIC_KEY).unwrap();
    let keys = format!(
        "keys: [{{ kid: test-rsa, alg: RS256, pem: {pem} }}], issuer: https://idp.test, audience: api"
    );
    format!(
        "routes:
  - name: admin
    match: {{ path_prefix: /admin }}
    upstream: a
    plugins:
      - name: jwt-auth
        allow: ['outbound:a']
        config: {{ {keys}, require: {{ roles: [admin] }} }}
  - name: api
    match: {{ path_prefix: / }}
    upstream: a
    plugins:
      - name: jwt-auth
        allow: ['outbound:a']
        config: {{ {keys}, cookie: session, claims_to_headers: {{ sub: x-user-id }}, claims_to_context: {{ sub: consumer }} }}
      - {{ name: probe, config: {{ tag: after, ctx_echo: [consumer] }} }}
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_tokens_go_through_with_their_claims_forwarded() {
    let gw = TestGateway::start(&routes()).await;
    let client = get_client();

    let missing = client.get(&gw.url("/users"), &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.json(),
        json!({"error": "missing bearer token", "code": "unauthorized"})
    );
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"wasmgate\"")
    );

    let alice = token("alice_admin");
    let bearer = format!("Bearer {alice}");
    let ok = client
        .get(
            &gw.url("/users"),
            &[("authorization", &bearer), ("x-user-id", "mallory")],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.upstream_header("x-user-id").as_deref(),
        Some("alice"),
        "a client-sent x-user-id is replaced by the token's sub"
    );
    assert_eq!(
        ok.upstream_header("x-ctx-consumer").as_deref(),
        Some("alice")
    );
    assert_eq!(ok.upstream_header("authorization"), Some(bearer));

    let bob = token("bob_reader");
    let cookie = format!("theme=dark; session={bob}");
    let from_cookie = client.get(&gw.url("/users"), &[("cookie", &cookie)]).await;
    assert_eq!(from_cookie.status, 200);
    assert_eq!(
        from_cookie.upstream_header("authorization"),
        Some(format!("Bearer {bob}")),
        "a cookie token reaches the upstream as a bearer header"
    );
    assert_eq!(
        from_cookie.upstream_header("x-user-id").as_deref(),
        Some("bob")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_get_401_and_missing_roles_403() {
    let gw = TestGateway::start(&routes()).await;
    let client = get_client();
    let send = |name: &str, path: &str| {
        let bearer = format!("Bearer {}", token(name));
        let url = gw.url(path);
        let client = client.clone();
        async move { client.get(&url, &[("authorization", &bearer)]).await }
    };

    let expired = send("expired", "/users").await;
    assert_eq!(expired.status, 401);
    assert_eq!(
        expired.json(),
        json!({"error": "token expired", "code": "unauthorized"})
    );
    assert_eq!(
        expired.header("www-authenticate"),
        Some(
            "Bearer realm=\"wasmgate\", error=\"invalid_token\", error_description=\"token expired\""
        )
    );
    let confused = send("hs256_signed_with_rsa_public_key", "/admin/x").await;
    assert_eq!(confused.status, 401, "HS256 signed with the RSA public key");
    assert_eq!(
        confused.json()["error"],
        "token algorithm not allowed for its key"
    );
    let none = send("alg_none", "/admin/x").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"], "token algorithm not allowed");

    let reader = send("bob_reader", "/admin/x").await;
    assert_eq!(reader.status, 403);
    assert_eq!(
        reader.json(),
        json!({"error": "token lacks role: one of admin", "code": "forbidden"})
    );
    assert!(reader
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    assert_eq!(send("alice_admin", "/admin/x").await.status, 200);
}
