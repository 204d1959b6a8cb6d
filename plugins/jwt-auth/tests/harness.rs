//! The jwt-auth plugin, loaded from its built `.wasm` in the SDK harness, fed
//! tokens signed here with real keys (the TEST-ONLY keys in `tests/keys/`).

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use plugin_jwt_auth::{Config, JwtAuth};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, Harness, LogLevel, MetricUpdate, OutboundResponse, RequestAction,
    RequestChanges, RequestContext, RequestExt, Response,
};
use wasmgate_plugin_sdk::Plugin;

const HS256_SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
const HS384_SECRET: &str = "test-only-hs384-secret-0123456789abcdef0123456789";
const HS512_SECRET: &str = "test-only-hs512-secret-0123456789abcdef0123456789abcdef0123456789abcd";

fn key_file(name: &str) -> String {
    let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn public(name: &str) -> String {
    key_file(&format!("test-only-{name}-public.pem"))
}

fn private(name: &str) -> EncodingKey {
    let pem = key_file(&format!("test-only-{name}-private.pem"));
    let pem = pem.as_bytes();
    match name {
        "rsa" | "rsa2" => EncodingKey::from_rsa_pem(pem),
        "ec256" | "ec384" => EncodingKey::from_ec_pem(pem),
        "ed25519" => EncodingKey::from_ed_pem(pem),
        other => panic!("no test key {other}"),
    }
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a token valid for ten minutes, with `extra` merged in.
fn claims(extra: Value) -> Value {
    let mut claims = json!({"sub": "alice", "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, None, &private("rsa"), claims)
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A config with the test RSA key plus `extra`.
fn rsa_config(extra: Value) -> Value {
    let mut config = json!({"keys": [{"alg": "RS256", "pem": public("rsa")}]});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

fn load(config: Value) -> Harness {
    Harness::load(artifact("jwt-auth"), config).expect("config accepted")
}

fn bearer(token: &str) -> wasmgate_plugin_sdk::harness::Request {
    request("GET", "/users").with_header("authorization", &format!("Bearer {token}"))
}

fn passes(plugin: &Harness, token: &str) -> RequestChanges {
    match plugin.on_request(bearer(token)).unwrap() {
        RequestAction::Continue(changes) => changes,
        RequestAction::Respond(r) => panic!("refused: {} {}", r.status, body(&r)),
    }
}

fn refused(plugin: &Harness, token: &str) -> Response {
    refused_request(plugin, bearer(token))
}

fn refused_request(plugin: &Harness, req: wasmgate_plugin_sdk::harness::Request) -> Response {
    match plugin.on_request(req).unwrap() {
        RequestAction::Respond(response) => response,
        RequestAction::Continue(_) => panic!("expected a refusal"),
    }
}

fn body(response: &Response) -> Value {
    serde_json::from_slice(response.body.as_deref().unwrap()).unwrap()
}

/// Asserts a 401 invalid_token with `message` in body and challenge.
fn assert_invalid(response: &Response, message: &str) {
    assert_eq!(response.status, 401);
    assert_eq!(
        body(response),
        json!({"error": message, "code": "unauthorized"})
    );
    assert_eq!(
        header(&response.headers, "www-authenticate"),
        Some(
            format!(
                "Bearer realm=\"wasmgate\", error=\"invalid_token\", error_description=\"{message}\""
            )
            .as_str()
        )
    );
}

#[test]
fn valid_token_passes_and_claims_reach_headers_and_context() {
    let plugin = load(rsa_config(json!({
        "claims_to_headers": {"sub": "X-User-Id", "tenant.id": "x-tenant"},
        "claims_to_context": {"sub": "consumer", "roles": "jwt-auth.roles"}
    })));
    let token = rs256(&claims(
        json!({"tenant": {"id": "acme"}, "roles": ["a", "b"]}),
    ));
    let mut ctx = RequestContext::new();
    let req = bearer(&token).with_header("x-user-id", "mallory");
    let RequestAction::Continue(changes) = plugin.on_request_with(req, &mut ctx).unwrap() else {
        panic!("expected continue")
    };
    assert_eq!(
        changes.headers.remove,
        vec!["x-user-id", "x-tenant"],
        "client-sent claim headers are removed first"
    );
    assert_eq!(
        changes.headers.set,
        vec![
            ("x-user-id".to_string(), "alice".to_string()),
            ("x-tenant".to_string(), "acme".to_string())
        ]
    );
    assert_eq!(ctx.get("consumer").map(String::as_str), Some("alice"));
    assert_eq!(
        ctx.get("jwt-auth.roles").map(String::as_str),
        Some(r#"["a","b"]"#)
    );
    assert!(plugin.logs().is_empty(), "a good token logs nothing");
}

#[test]
fn absent_claims_are_not_forwarded_but_forged_headers_still_go() {
    let plugin = load(rsa_config(
        json!({"claims_to_headers": {"email": "x-email", "sub": "x-user-id"}}),
    ));
    let token = rs256(&claims(json!({"sub": "line\r\nx-admin: true"})));
    let req = bearer(&token).with_header("x-email", "forged@example.com");
    let RequestAction::Continue(changes) = plugin.on_request(req).unwrap() else {
        panic!("expected continue")
    };
    assert_eq!(changes.headers.remove, vec!["x-email", "x-user-id"]);
    assert!(
        changes.headers.set.is_empty(),
        "no email claim, and a sub with CR/LF never becomes a header: {:?}",
        changes.headers.set
    );
}

#[test]
fn every_supported_algorithm_verifies_with_its_key() {
    let hs512_base64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(HS512_SECRET)
    };
    let plugin = load(json!({"keys": [
        {"kid": "hs256", "alg": "HS256", "secret": HS256_SECRET},
        {"kid": "hs384", "alg": "HS384", "secret": HS384_SECRET},
        {"kid": "hs512", "alg": "HS512", "secret_base64": hs512_base64},
        {"kid": "rs256", "alg": "RS256", "pem": public("rsa")},
        {"kid": "rs384", "alg": "RS384", "pem": public("rsa")},
        {"kid": "rs512", "alg": "RS512", "pem": public("rsa")},
        {"kid": "ps256", "alg": "PS256", "pem": public("rsa")},
        {"kid": "es256", "alg": "ES256", "pem": public("ec256")},
        {"kid": "es384", "alg": "ES384", "pem": public("ec384")},
        {"kid": "eddsa", "alg": "EdDSA", "pem": public("ed25519")}
    ]}));
    let cases = [
        (
            Algorithm::HS256,
            EncodingKey::from_secret(HS256_SECRET.as_bytes()),
        ),
        (
            Algorithm::HS384,
            EncodingKey::from_secret(HS384_SECRET.as_bytes()),
        ),
        (
            Algorithm::HS512,
            EncodingKey::from_secret(HS512_SECRET.as_bytes()),
        ),
        (Algorithm::RS256, private("rsa")),
        (Algorithm::RS384, private("rsa")),
        (Algorithm::RS512, private("rsa")),
        (Algorithm::PS256, private("rsa")),
        (Algorithm::ES256, private("ec256")),
        (Algorithm::ES384, private("ec384")),
        (Algorithm::EdDSA, private("ed25519")),
    ];
    for (alg, key) in &cases {
        let kid = format!("{alg:?}").to_ascii_lowercase();
        passes(&plugin, &sign(*alg, Some(&kid), key, &claims(json!({}))));
    }
    // The right key, but a kid bound to another algorithm of the same family.
    let token = sign(
        Algorithm::RS384,
        Some("rs256"),
        &private("rsa"),
        &claims(json!({})),
    );
    assert_invalid(
        &refused(&plugin, &token),
        "token algorithm not allowed for its key",
    );
}

#[test]
fn missing_token_gets_a_bare_bearer_challenge() {
    let plugin = load(rsa_config(json!({"realm": "api"})));
    for req in [
        request("GET", "/"),
        request("GET", "/").with_header("authorization", "Basic YWxpY2U6cHc="),
        request("GET", "/").with_header("authorization", "Bearer "),
    ] {
        let response = refused_request(&plugin, req);
        assert_eq!(response.status, 401);
        assert_eq!(
            body(&response),
            json!({"error": "missing bearer token", "code": "unauthorized"})
        );
        assert_eq!(
            header(&response.headers, "www-authenticate"),
            Some("Bearer realm=\"api\"")
        );
        assert_eq!(
            header(&response.headers, "content-type"),
            Some("application/json")
        );
    }
}

#[test]
fn garbage_and_tampered_tokens_are_refused() {
    let plugin = load(rsa_config(json!({})));
    assert_invalid(&refused(&plugin, "not-a-jwt"), "malformed token");
    let token = rs256(&claims(json!({})));
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = b64url(claims(json!({"sub": "admin"})).to_string().as_bytes());
    let response = refused(&plugin, &parts.join("."));
    assert_invalid(&response, "invalid token signature");
    assert_eq!(plugin.logs()[0].level, LogLevel::Info);
    assert_eq!(plugin.logs()[0].message, "rejected token");
}

#[test]
fn token_signed_by_another_key_is_refused() {
    let plugin = load(rsa_config(json!({})));
    let token = sign(Algorithm::RS256, None, &private("rsa2"), &claims(json!({})));
    assert_invalid(&refused(&plugin, &token), "invalid token signature");
}

#[test]
fn alg_none_is_refused() {
    let plugin = load(rsa_config(json!({})));
    for alg in ["none", "None", "NONE"] {
        let header = b64url(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        let payload = b64url(claims(json!({})).to_string().as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert_invalid(&refused(&plugin, &token), "token algorithm not allowed");
        }
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: the public key is public, so an attacker signs
    // an HS256 token using its PEM text as the HMAC secret.
    let plugin = load(json!({"keys": [{"kid": "main", "alg": "RS256", "pem": public("rsa")}]}));
    let secret = EncodingKey::from_secret(public("rsa").as_bytes());
    let forged = claims(json!({"sub": "mallory", "roles": ["admin"]}));
    for kid in [Some("main"), None] {
        let token = sign(Algorithm::HS256, kid, &secret, &forged);
        assert_invalid(
            &refused(&plugin, &token),
            "token algorithm not allowed for its key",
        );
    }
    // Also refused up front by an explicit allowlist.
    let plugin = load(rsa_config(json!({"algorithms": ["RS256"]})));
    let token = sign(Algorithm::HS256, None, &secret, &forged);
    assert_invalid(&refused(&plugin, &token), "token algorithm not allowed");
}

#[test]
fn time_claims_are_checked_with_leeway() {
    let plugin = load(rsa_config(json!({"leeway_secs": 30})));
    let t = now();
    assert_invalid(
        &refused(&plugin, &rs256(&claims(json!({"exp": t - 120})))),
        "token expired",
    );
    assert_invalid(
        &refused(&plugin, &rs256(&claims(json!({"nbf": t + 120})))),
        "token not yet valid",
    );
    passes(&plugin, &rs256(&claims(json!({"exp": t - 10}))));
    passes(&plugin, &rs256(&claims(json!({"nbf": t + 10}))));
    let strict = load(rsa_config(json!({"leeway_secs": 0})));
    assert_invalid(
        &refused(&strict, &rs256(&claims(json!({"exp": t - 10})))),
        "token expired",
    );
}

#[test]
fn issuer_and_audience_are_checked_and_then_required() {
    let plugin = load(rsa_config(json!({
        "issuer": ["https://idp.test", "https://idp2.test"],
        "audience": "api"
    })));
    passes(
        &plugin,
        &rs256(&claims(
            json!({"iss": "https://idp2.test", "aud": ["other", "api"]}),
        )),
    );
    assert_invalid(
        &refused(
            &plugin,
            &rs256(&claims(json!({"iss": "https://evil.test", "aud": "api"}))),
        ),
        "invalid token issuer",
    );
    assert_invalid(
        &refused(
            &plugin,
            &rs256(&claims(
                json!({"iss": "https://idp.test", "aud": "billing"}),
            )),
        ),
        "invalid token audience",
    );
    assert_invalid(
        &refused(&plugin, &rs256(&claims(json!({"aud": "api"})))),
        "token lacks required claim `iss`",
    );
}

#[test]
fn required_claims_are_enforced() {
    let plugin = load(rsa_config(
        json!({"required_claims": ["exp", "sub", "tenant.id"]}),
    ));
    passes(&plugin, &rs256(&claims(json!({"tenant": {"id": "acme"}}))));
    assert_invalid(
        &refused(&plugin, &rs256(&claims(json!({"tenant": {"id": null}})))),
        "token lacks required claim `tenant.id`",
    );
    let no_exp = json!({"sub": "alice", "tenant": {"id": "acme"}});
    assert_invalid(
        &refused(&plugin, &rs256(&no_exp)),
        "token lacks required claim `exp`",
    );
    let lenient = load(rsa_config(json!({"required_claims": []})));
    passes(&lenient, &rs256(&no_exp));
}

#[test]
fn route_scopes_and_roles_decide_403() {
    let plugin = load(rsa_config(json!({
        "require": {"scopes": ["read:users", "write:users"], "roles": ["admin", "owner"]}
    })));
    passes(
        &plugin,
        &rs256(&claims(
            json!({"scope": "write:users read:users", "roles": ["owner"]}),
        )),
    );
    passes(
        &plugin,
        &rs256(&claims(
            json!({"scp": ["read:users", "write:users"], "roles": "admin"}),
        )),
    );
    let response = refused(
        &plugin,
        &rs256(&claims(json!({"scope": "read:users", "roles": ["admin"]}))),
    );
    assert_eq!(response.status, 403);
    assert_eq!(
        body(&response),
        json!({"error": "token lacks scope `write:users`", "code": "forbidden"})
    );
    assert_eq!(
        header(&response.headers, "www-authenticate"),
        Some("Bearer realm=\"wasmgate\", error=\"insufficient_scope\", error_description=\"token lacks scope `write:users`\", scope=\"read:users write:users\"")
    );
    let response = refused(
        &plugin,
        &rs256(&claims(
            json!({"scope": "read:users write:users", "roles": ["reader"]}),
        )),
    );
    assert_eq!(response.status, 403);
    assert_eq!(
        body(&response),
        json!({"error": "token lacks role: one of admin, owner", "code": "forbidden"})
    );
}

#[test]
fn single_role_shorthand_and_nested_roles_claim() {
    let plugin = load(rsa_config(json!({
        "require": {"role": "admin", "roles_claim": "realm_access.roles"}
    })));
    passes(
        &plugin,
        &rs256(&claims(json!({"realm_access": {"roles": ["admin"]}}))),
    );
    let response = refused(&plugin, &rs256(&claims(json!({"roles": ["admin"]}))));
    assert_eq!(response.status, 403);
    assert_eq!(body(&response)["code"], "forbidden");
}

#[test]
fn cookie_token_goes_upstream_as_a_bearer_header() {
    let plugin = load(rsa_config(json!({"cookie": "session"})));
    assert_eq!(
        plugin.header_interest(),
        Some(&["authorization".to_string(), "cookie".to_string()][..]),
        "the host copies only the token's carriers into the plugin"
    );
    let token = rs256(&claims(json!({})));
    let req = request("GET", "/").with_header("cookie", &format!("theme=dark; session={token}"));
    let RequestAction::Continue(changes) = plugin.on_request(req).unwrap() else {
        panic!("expected continue")
    };
    assert_eq!(
        changes.headers.set,
        vec![("authorization".to_string(), format!("Bearer {token}"))]
    );
    // A header token wins, and needs no rewriting.
    let changes = passes(&plugin, &token);
    assert!(changes.headers.set.is_empty());
    // A bad cookie token is as bad as a bad header token.
    let req = request("GET", "/").with_header("cookie", "session=garbage");
    assert_invalid(&refused_request(&plugin, req), "malformed token");
}

fn jwk(public_pem: &str, family: &str, kid: &str, alg: Option<Algorithm>) -> Jwk {
    let pem = public_pem.as_bytes();
    let key = match family {
        "rsa" => DecodingKey::from_rsa_pem(pem),
        "ec" => DecodingKey::from_ec_pem(pem),
        _ => DecodingKey::from_ed_pem(pem),
    }
    .unwrap();
    let mut jwk = Jwk::from_decoding_key(&key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    jwk
}

fn jwks(keys: Vec<Jwk>) -> Value {
    serde_json::to_value(JwkSet { keys }).unwrap()
}

#[test]
fn inline_jwks_picks_the_key_by_kid() {
    let plugin = load(json!({"jwks": jwks(vec![
        jwk(&public("rsa"), "rsa", "k1", None),
        jwk(&public("rsa2"), "rsa", "k2", Some(Algorithm::RS256)),
        jwk(&public("ec256"), "ec", "e1", None),
        jwk(&public("ed25519"), "ed", "d1", None),
    ])}));
    let c = claims(json!({}));
    passes(
        &plugin,
        &sign(Algorithm::PS256, Some("k1"), &private("rsa"), &c),
    );
    passes(
        &plugin,
        &sign(Algorithm::RS256, Some("k2"), &private("rsa2"), &c),
    );
    passes(
        &plugin,
        &sign(Algorithm::ES256, Some("e1"), &private("ec256"), &c),
    );
    passes(
        &plugin,
        &sign(Algorithm::EdDSA, Some("d1"), &private("ed25519"), &c),
    );
    assert_invalid(
        &refused(
            &plugin,
            &sign(Algorithm::RS256, Some("k1"), &private("rsa2"), &c),
        ),
        "invalid token signature",
    );
    assert_invalid(
        &refused(
            &plugin,
            &sign(Algorithm::PS256, Some("k2"), &private("rsa2"), &c),
        ),
        "token algorithm not allowed for its key",
    );
    assert_invalid(
        &refused(
            &plugin,
            &sign(Algorithm::RS256, Some("k9"), &private("rsa"), &c),
        ),
        "unknown signing key",
    );
}

/// A fake identity provider serving whatever `doc` holds, counting fetches.
fn fake_idp(plugin: &Harness, doc: Arc<Mutex<Result<Value, String>>>) {
    plugin.fake_upstream("idp", move |_| {
        let doc = doc.lock().unwrap().clone()?;
        Ok(OutboundResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: doc.to_string().into_bytes(),
        })
    });
}

fn remote_config(extra: Value) -> Value {
    let mut config = json!({"jwks_upstream": "idp", "jwks_path": "/.well-known/jwks.json"});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

#[test]
fn fetched_jwks_is_cached_and_refetched_for_an_unknown_kid() {
    let plugin = load(remote_config(
        json!({"jwks_min_refetch_secs": 0, "jwks_timeout_ms": 40}),
    ));
    let doc = Arc::new(Mutex::new(Ok(jwks(vec![jwk(
        &public("rsa"),
        "rsa",
        "k1",
        None,
    )]))));
    fake_idp(&plugin, doc.clone());
    let c = claims(json!({}));
    let k1 = sign(Algorithm::RS256, Some("k1"), &private("rsa"), &c);
    passes(&plugin, &k1);
    passes(&plugin, &k1);
    let sent = plugin.outbound_requests();
    assert_eq!(sent.len(), 1, "the second request used the cache");
    assert_eq!(sent[0].upstream, "idp");
    assert_eq!(sent[0].method, "GET");
    assert_eq!(sent[0].path_and_query, "/.well-known/jwks.json");
    assert_eq!(sent[0].timeout_ms, Some(40));

    // The provider rotates to k2: a token with k2 triggers one refetch.
    *doc.lock().unwrap() = Ok(jwks(vec![jwk(&public("rsa2"), "rsa", "k2", None)]));
    passes(
        &plugin,
        &sign(Algorithm::RS256, Some("k2"), &private("rsa2"), &c),
    );
    assert_eq!(plugin.outbound_requests().len(), 2);
    assert_invalid(&refused(&plugin, &k1), "unknown signing key");
}

#[test]
fn refetches_for_unknown_kids_are_rate_limited() {
    let plugin = load(remote_config(
        json!({"jwks_min_refetch_secs": 60, "jwks_refresh_secs": 300}),
    ));
    fake_idp(
        &plugin,
        Arc::new(Mutex::new(Ok(jwks(vec![jwk(
            &public("rsa"),
            "rsa",
            "k1",
            None,
        )])))),
    );
    let c = claims(json!({}));
    for i in 0..5 {
        let token = sign(
            Algorithm::RS256,
            Some(&format!("made-up-{i}")),
            &private("rsa"),
            &c,
        );
        assert_invalid(&refused(&plugin, &token), "unknown signing key");
    }
    assert_eq!(
        plugin.outbound_requests().len(),
        1,
        "made-up kids do not turn into fetches"
    );
}

#[test]
fn jwks_refresh_interval_and_failed_fetches() {
    let plugin = load(remote_config(
        json!({"jwks_refresh_secs": 1, "jwks_min_refetch_secs": 1}),
    ));
    let doc = Arc::new(Mutex::new(Err("connection refused".to_string())));
    fake_idp(&plugin, doc.clone());
    let token = sign(
        Algorithm::RS256,
        Some("k1"),
        &private("rsa"),
        &claims(json!({})),
    );

    // Nothing fetched yet: the gateway cannot judge the token.
    let response = refused(&plugin, &token);
    assert_eq!(response.status, 503);
    assert_eq!(body(&response)["code"], "jwks_unavailable");
    assert!(header(&response.headers, "www-authenticate").is_none());
    assert!(plugin
        .logs()
        .iter()
        .any(|l| l.level == LogLevel::Warn && l.message.starts_with("JWKS fetch failed")));

    *doc.lock().unwrap() = Ok(jwks(vec![jwk(&public("rsa"), "rsa", "k1", None)]));
    std::thread::sleep(Duration::from_millis(1100));
    passes(&plugin, &token);
    let fetches = plugin.outbound_requests().len();

    // The provider goes down: after the refresh interval the old keys still serve.
    *doc.lock().unwrap() = Err("connection refused".to_string());
    std::thread::sleep(Duration::from_millis(1100));
    passes(&plugin, &token);
    assert_eq!(
        plugin.outbound_requests().len(),
        fetches + 1,
        "a refresh was tried"
    );
}

#[test]
fn fetched_jwks_skips_symmetric_and_broken_keys() {
    let plugin = load(remote_config(json!({"jwks_min_refetch_secs": 0})));
    let secret = HS256_SECRET.as_bytes();
    let doc = json!({"keys": [
        {"kty": "oct", "kid": "s1", "k": b64url(secret)},
        {"kty": "RSA", "kid": "bad", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256", "x": "AA", "y": "AA"},
        jwk(&public("rsa"), "rsa", "k1", None)
    ]});
    fake_idp(&plugin, Arc::new(Mutex::new(Ok(doc))));
    let c = claims(json!({}));
    passes(
        &plugin,
        &sign(Algorithm::RS256, Some("k1"), &private("rsa"), &c),
    );
    let skipped = plugin
        .logs()
        .iter()
        .filter(|l| l.message == "skipped a JWKS key")
        .count();
    assert_eq!(skipped, 3, "oct, too-short RSA and `use: enc` keys");
    let token = sign(
        Algorithm::HS256,
        Some("s1"),
        &EncodingKey::from_secret(secret),
        &c,
    );
    assert_invalid(&refused(&plugin, &token), "unknown signing key");
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let rsa = public("rsa");
    let cases = [
        (
            json!({}),
            "keys: give at least one of `keys`, `jwks` or `jwks_upstream`",
        ),
        (
            json!({"keys": [{"alg": "HS257", "secret": HS256_SECRET}]}),
            "keys[0].alg: `HS257` is not a supported algorithm",
        ),
        (
            json!({"keys": [{"alg": "none", "secret": HS256_SECRET}]}),
            "keys[0].alg: `none` is not a supported algorithm",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": "short"}]}),
            "keys[0].secret: a HS256 secret must be at least 32 bytes",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": HS256_SECRET, "pem": rsa}]}),
            "keys[0]: give exactly one of `secret`, `secret_base64`, `pem`",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64": "%%%"}]}),
            "keys[0].secret_base64: not valid base64",
        ),
        (
            json!({"keys": [{"alg": "RS256", "secret": HS256_SECRET}]}),
            "keys[0].secret: a secret is for HS256/384/512, not RS256",
        ),
        (
            json!({"keys": [{"alg": "HS256", "pem": rsa}]}),
            "keys[0].pem: HS256 takes `secret`, not a PEM key",
        ),
        (
            json!({"keys": [{"alg": "RS256", "pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}]}),
            "keys[0].pem: not a valid RS256 public key",
        ),
        (
            json!({"keys": [{"alg": "RS256", "pem": public("ec256")}]}),
            "keys[0].pem: not a valid RS256 public key",
        ),
        (
            json!({"keys": [{"alg": "ES256", "pem": public("ec384")}]}),
            "keys[0].pem: not a valid ES256 public key",
        ),
        (
            json!({"keys": [{"alg": "EdDSA", "pem": rsa}]}),
            "keys[0].pem: not a valid EdDSA public key",
        ),
        (
            json!({"keys": [{"kid": "", "alg": "RS256", "pem": rsa}]}),
            "keys[0].kid: must not be empty",
        ),
        (
            json!({"keys": [{"kid": "a", "alg": "RS256", "pem": rsa}, {"kid": "a", "alg": "RS384", "pem": rsa}]}),
            "keys: kid `a` is given twice",
        ),
        (
            json!({"keys": [{"alg": "RS256", "pem": rsa}], "algorithms": ["ES256"]}),
            "keys[0].alg: RS256 is not in `algorithms`",
        ),
        (
            json!({"keys": [{"alg": "RS256", "pem": rsa}], "algorithms": []}),
            "algorithms: must list at least one algorithm",
        ),
        (
            json!({"keys": [{"alg": "RS256", "pem": rsa}], "algorithms": ["RS256", "XX1"]}),
            "algorithms: `XX1` is not a supported algorithm",
        ),
        (
            json!({"jwks": {"nokeys": []}}),
            "jwks: expected a JWKS document",
        ),
        (
            json!({"jwks": {"keys": []}}),
            "jwks: the document lists no key",
        ),
        (
            json!({"jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}}),
            "jwks.keys[0]: RSA modulus has 24 bits, at least 2048 are required",
        ),
        (
            json!({"jwks": {"keys": [{"kty": "oct", "k": "c2hvcnQ"}]}}),
            "jwks.keys[0]: an `oct` key must be at least 32 bytes",
        ),
        (
            json!({"jwks_upstream": "idp"}),
            "jwks_path: required with `jwks_upstream`",
        ),
        (
            json!({"jwks_upstream": "idp", "jwks_path": "jwks.json"}),
            "jwks_path: must start with `/`",
        ),
        (
            json!({"jwks_upstream": "", "jwks_path": "/j"}),
            "jwks_upstream: must name an upstream",
        ),
        (
            json!({"keys": [{"alg": "RS256", "pem": rsa}], "jwks_path": "/j"}),
            "jwks_path: only meaningful with `jwks_upstream`",
        ),
        (
            json!({"jwks_upstream": "idp", "jwks_path": "/j", "jwks_refresh_secs": 0}),
            "jwks_refresh_secs: must be at least 1",
        ),
        (
            json!({"jwks_upstream": "idp", "jwks_path": "/j", "jwks_refresh_secs": 5, "jwks_min_refetch_secs": 6}),
            "jwks_min_refetch_secs: must not exceed `jwks_refresh_secs`",
        ),
        (
            json!({"jwks_upstream": "idp", "jwks_path": "/j", "jwks_timeout_ms": 0}),
            "jwks_timeout_ms: must be at least 1",
        ),
        (
            rsa_config(json!({"issuer": [""]})),
            "issuer[0]: must not be empty",
        ),
        (
            rsa_config(json!({"audience": 5})),
            "expected a string or a list of strings",
        ),
        (
            rsa_config(json!({"required_claims": ["exp", " "]})),
            "required_claims[1]: must not be empty",
        ),
        (
            rsa_config(json!({"require": {"scopes": ["read users"]}})),
            "require.scopes[0]: must be one word without spaces",
        ),
        (
            rsa_config(json!({"require": {"roles": [""]}})),
            "require.roles[0]: must be one word without spaces",
        ),
        (
            rsa_config(json!({"require": {"roles_claim": ""}})),
            "require.roles_claim: must not be empty",
        ),
        (
            rsa_config(json!({"require": {"groups": ["a"]}})),
            "unknown field `groups`",
        ),
        (
            rsa_config(json!({"cookie": "my session"})),
            "cookie: `my session` is not a valid cookie name",
        ),
        (
            rsa_config(json!({"claims_to_headers": {"sub": "x user"}})),
            "claims_to_headers.sub: `x user` is not a valid header name",
        ),
        (
            rsa_config(json!({"claims_to_context": {"sub": ""}})),
            "claims_to_context: claim names and context keys must not be empty",
        ),
        (
            rsa_config(json!({"realm": "a\"b"})),
            "realm: must be non-empty, without quotes",
        ),
        (rsa_config(json!({"leeway": 5})), "unknown field `leeway`"),
        (
            rsa_config(json!({"token_cache_size": 100_001})),
            "token_cache_size: at most 100000",
        ),
    ];
    // The plugin's own code, natively: compiling the .wasm once per case
    // would take minutes. `gateway_refuses_bad_configs_at_load` below shows
    // the same refusals through the runtime.
    for (config, expected) in cases {
        let err = serde_json::from_value::<Config>(config.clone())
            .map_err(|e| e.to_string())
            .and_then(JwtAuth::new)
            .err()
            .unwrap_or_else(|| panic!("accepted: {config}"));
        assert!(
            err.contains(expected),
            "{config}\n  got: {err}\n  want: {expected}"
        );
    }
}

#[test]
fn gateway_refuses_bad_configs_at_load() {
    let cases = [
        (
            json!({}),
            "refused its config: keys: give at least one of `keys`, `jwks` or `jwks_upstream`",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": "short"}]}),
            "refused its config: keys[0].secret: a HS256 secret must be at least 32 bytes",
        ),
        (rsa_config(json!({"leeway": 5})), "unknown field `leeway`"),
        (json!(null), "invalid config"),
    ];
    for (config, expected) in cases {
        let err = Harness::load(artifact("jwt-auth"), config.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted: {config}"));
        assert!(
            err.to_string().contains(expected),
            "{config}\n  got: {err}\n  want: {expected}"
        );
    }
}

fn cache_counts(plugin: &Harness) -> (usize, usize) {
    let count = |kind: &str| {
        plugin
            .metrics()
            .iter()
            .filter(|m| matches!(m, MetricUpdate::Counter { name, labels, .. }
                if name == "jwt_auth_verifications" && labels == &[("cache".to_string(), kind.to_string())]))
            .count()
    };
    (count("miss"), count("hit"))
}

#[test]
fn a_repeated_token_skips_the_signature_but_not_the_expiry() {
    let plugin = load(rsa_config(json!({"leeway_secs": 0})));
    let exp = now() + 2;
    let token = rs256(&claims(json!({"exp": exp})));
    passes(&plugin, &token);
    passes(&plugin, &token);
    assert_eq!(
        cache_counts(&plugin),
        (1, 1),
        "verified once, then remembered"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while now() <= exp {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_invalid(&refused(&plugin, &token), "token expired");
    // Another token is verified in full.
    passes(&plugin, &rs256(&claims(json!({}))));
    assert_eq!(cache_counts(&plugin).0, 3);
}

#[test]
fn token_cache_can_be_turned_off_and_never_hides_bad_tokens() {
    let plugin = load(rsa_config(json!({"token_cache_size": 0})));
    let token = rs256(&claims(json!({})));
    passes(&plugin, &token);
    passes(&plugin, &token);
    assert_eq!(cache_counts(&plugin), (2, 0));
    let cached = load(rsa_config(json!({})));
    let forged = sign(Algorithm::RS256, None, &private("rsa2"), &claims(json!({})));
    for _ in 0..2 {
        assert_invalid(&refused(&cached, &forged), "invalid token signature");
    }
    assert_eq!(
        cache_counts(&cached),
        (2, 0),
        "refused tokens are not remembered"
    );
}

/// The tokens the end-to-end test sends (made by `tests/keys/make-e2e-tokens.sh`)
/// still mean what that test expects, with the same test keys.
#[test]
fn e2e_fixture_tokens_verify_with_the_test_keys() {
    let tokens: Value = serde_json::from_str(&key_file("e2e-tokens.json")).unwrap();
    let token = |name: &str| tokens[name].as_str().unwrap().to_string();
    let plugin = load(json!({
        "keys": [{"kid": "test-rsa", "alg": "RS256", "pem": public("rsa")}],
        "issuer": "https://idp.test", "audience": "api"
    }));
    passes(&plugin, &token("alice_admin"));
    passes(&plugin, &token("bob_reader"));
    assert_invalid(&refused(&plugin, &token("expired")), "token expired");
    assert_invalid(
        &refused(&plugin, &token("hs256_signed_with_rsa_public_key")),
        "token algorithm not allowed for its key",
    );
    assert_invalid(
        &refused(&plugin, &token("alg_none")),
        "token algorithm not allowed",
    );
}

/// Verification cost inside the plugin, through the real runtime: printed, not
/// asserted (timings vary by machine). Run with `--nocapture` to see it.
#[test]
fn verification_cost_per_request() {
    let config = |cache: usize| {
        json!({"keys": [
            {"kid": "rs", "alg": "RS256", "pem": public("rsa")},
            {"kid": "hs", "alg": "HS256", "secret": HS256_SECRET},
            {"kid": "es", "alg": "ES256", "pem": public("ec256")},
            {"kid": "ed", "alg": "EdDSA", "pem": public("ed25519")}
        ], "claims_to_headers": {"sub": "x-user-id"}, "token_cache_size": cache})
    };
    let uncached = load(config(0));
    let cached = load(config(1024));
    let c = claims(json!({}));
    let hs = EncodingKey::from_secret(HS256_SECRET.as_bytes());
    let cases = [
        (
            "RS256",
            sign(Algorithm::RS256, Some("rs"), &private("rsa"), &c),
        ),
        ("HS256", sign(Algorithm::HS256, Some("hs"), &hs, &c)),
        (
            "ES256",
            sign(Algorithm::ES256, Some("es"), &private("ec256"), &c),
        ),
        (
            "EdDSA",
            sign(Algorithm::EdDSA, Some("ed"), &private("ed25519"), &c),
        ),
    ];
    const N: u32 = 1000;
    for (name, token) in &cases {
        let verified = time_on_request(&uncached, token, N);
        let remembered = time_on_request(&cached, token, N);
        let native = native_decode_time(name, token, N);
        println!(
            "jwt-auth {name}: on_request {verified:?} verifying, {remembered:?} with the token cached; jsonwebtoken::decode natively {native:?} (mean of {N})"
        );
    }
}

fn time_on_request(plugin: &Harness, token: &str, n: u32) -> Duration {
    passes(plugin, token); // a warm instance (and, if caching, a cached token)
    let start = Instant::now();
    for _ in 0..n {
        passes(plugin, token);
    }
    start.elapsed() / n
}

/// The same verification outside Wasm, for comparison with the plugin.
fn native_decode_time(name: &str, token: &str, n: u32) -> Duration {
    let (alg, key) = match name {
        "RS256" => (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(public("rsa").as_bytes()),
        ),
        "HS256" => (
            Algorithm::HS256,
            Ok(DecodingKey::from_secret(HS256_SECRET.as_bytes())),
        ),
        "ES256" => (
            Algorithm::ES256,
            DecodingKey::from_ec_pem(public("ec256").as_bytes()),
        ),
        _ => (
            Algorithm::EdDSA,
            DecodingKey::from_ed_pem(public("ed25519").as_bytes()),
        ),
    };
    let key = key.unwrap();
    let validation = jsonwebtoken::Validation::new(alg);
    let start = Instant::now();
    for _ in 0..n {
        jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
    }
    start.elapsed() / n
}
