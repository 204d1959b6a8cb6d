//! Plugins written in other languages (`examples/plugins/`, built by `make
//! polyglot`) load into the running gateway against the same contract and
//! do their job over the wire. Compiling one takes seconds, so each language
//! gets one gateway and one test that covers its behaviour.

use crate::support::{get_client, polyglot_plugin, Reply, TestGateway};
use serde_json::json;
use std::collections::HashSet;

const AB_ROUTES: &str = r#"
routes:
  - name: shop
    upstream: a
    plugins:
      - name: js-ab-routing
        allow: [kv, 'outbound:*']   # its component imports the whole contract world
        config:
          id_header: x-client-id
          variants:
            - { name: control, weight: 1 }
            - { name: beta, weight: 1, path_prefix: /beta }
"#;

/// The variant the gateway reported, checked against what the upstream saw.
fn variant_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let variant = reply
        .header("x-ab-variant")
        .expect("variant header")
        .to_string();
    assert_eq!(reply.upstream_header("x-ab-variant"), Some(variant.clone()));
    let expected_path = match variant.as_str() {
        "beta" => "/beta/cart",
        "control" => "/cart",
        other => panic!("unknown variant {other}"),
    };
    assert_eq!(reply.json()["path"], expected_path);
    variant
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_ab_routing_assigns_sticky_variants() {
    let plugin = polyglot_plugin("js-ab-routing.wasm");
    let gw = TestGateway::start_with_plugins(AB_ROUTES, "", &[(plugin, "js-ab-routing")]).await;
    let client = get_client();
    let url = gw.url("/cart");

    // New clients are spread over both variants by their id, and told to stick.
    let mut seen = HashSet::new();
    let mut beta_client = None;
    for i in 0..24 {
        let id = format!("client-{i}");
        let reply = client.get(&url, &[("x-client-id", &id)]).await;
        let variant = variant_of(&reply);
        assert_eq!(
            reply
                .header("set-cookie")
                .map(|c| c.split(';').next().unwrap()),
            Some(format!("ab_variant={variant}").as_str())
        );
        let again = client.get(&url, &[("x-client-id", &id)]).await;
        assert_eq!(variant_of(&again), variant, "same id, same variant");
        if variant == "beta" {
            beta_client = Some(id);
        }
        seen.insert(variant);
    }
    assert_eq!(seen.len(), 2, "both variants assigned: {seen:?}");

    // The cookie wins over the id, and a pinned client gets no new cookie.
    let id = beta_client.unwrap();
    let reply = client
        .get(
            &url,
            &[
                ("x-client-id", &id),
                ("cookie", "theme=dark; ab_variant=control"),
            ],
        )
        .await;
    assert_eq!(variant_of(&reply), "control");
    assert_eq!(reply.header("set-cookie"), None);

    // A bad config is refused with the plugin's own message, on reload.
    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    let broken = original.replace("weight: 1, path_prefix", "weight: -1, path_prefix");
    std::fs::write(gw.config_path(), broken).unwrap();
    let event = gw.next_reload_event(0).await;
    assert!(!event.ok);
    assert!(
        event
            .message
            .contains("variant `beta`: `weight` must be a whole number"),
        "{}",
        event.message
    );
    assert_eq!(
        variant_of(&client.get(&url, &[("x-client-id", &id)]).await),
        "beta"
    );
}

const REDACT_ROUTES: &str = r#"
routes:
  - name: signup
    match: { path_prefix: /signup }
    upstream: a
    plugins:
      - name: py-redact
        allow: [kv, 'outbound:*']   # its component imports the whole contract world
        config: { keys: [password], responses: true }
  - name: notes
    upstream: a
    plugins:
      - { name: py-redact, config: {}, allow: [kv, 'outbound:*'] }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn python_redact_masks_personal_data_in_json_bodies() {
    let plugin = polyglot_plugin("py-redact.wasm");
    let gw = TestGateway::start_with_plugins(REDACT_ROUTES, "", &[(plugin, "py-redact")]).await;
    let client = get_client();
    let url = gw.url("/signup");
    let body = json!({
        "name": "Al",
        "password": "hunter2",
        "card": "4111 1111 1111 1111",
        "notes": ["call al@example.com", "order 1234-5678-9012-3456"],
        "age": 42,
    });
    let reply = client
        .send(
            "POST",
            &url,
            &[
                ("content-type", "application/json"),
                ("x-note", "mail bob@example.org"),
            ],
            body.to_string().as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let seen = reply.json();
    let sent: serde_json::Value = serde_json::from_str(seen["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({
            "name": "Al",
            "password": "[redacted]",
            "card": "**** 1111",
            // Not a card: the Luhn check fails.
            "notes": ["call ***@example.com", "order 1234-5678-9012-3456"],
            "age": 42,
        })
    );
    assert_eq!(reply.upstream_header("x-redacted").as_deref(), Some("3"));
    // The echoed e-mail in the response is masked on the way back.
    assert_eq!(seen["headers"]["x-note"], "mail ***@example.org");
    assert_eq!(reply.header("x-redacted"), Some("1"));

    // A body that is not JSON passes through untouched; by default only
    // requests are cleaned.
    let notes = gw.url("/notes");
    let text = "card 4111111111111111, mail al@example.com";
    let reply = client
        .send(
            "POST",
            &notes,
            &[("content-type", "text/plain")],
            text.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(reply.json()["body"], text);
    assert_eq!(reply.upstream_header("x-redacted"), None);
    let reply = client
        .send(
            "POST",
            &notes,
            &[
                ("content-type", "application/json"),
                ("x-note", "al@example.com"),
            ],
            json!({ "text": text, "secret": "s3" })
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
    let sent: serde_json::Value =
        serde_json::from_str(reply.json()["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({ "text": "card **** 1111, mail ***@example.com", "secret": "[redacted]" })
    );
    assert_eq!(reply.json()["headers"]["x-note"], "al@example.com");
    assert_eq!(reply.header("x-redacted"), None);

    // A bad config is refused with the plugin's own message, on reload.
    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    let broken = original.replace("responses: true", "detect: [phone]");
    std::fs::write(gw.config_path(), broken).unwrap();
    let event = gw.next_reload_event(0).await;
    assert!(!event.ok);
    assert!(
        event
            .message
            .contains("`detect` must be a list of card, email"),
        "{}",
        event.message
    );
}

const GUARD_ROUTES: &str = r#"
routes:
  - name: site
    upstream: a
    plugins:
      - name: c-path-guard
        config: { deny: [/admin, /.git], status: 403 }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn c_path_guard_answers_denied_prefixes_itself() {
    let plugin = polyglot_plugin("c-path-guard.wasm");
    let gw = TestGateway::start_with_plugins(GUARD_ROUTES, "", &[(plugin, "c-path-guard")]).await;
    let client = get_client();
    for path in ["/admin", "/admin/users", "/.git/config"] {
        let reply = client.get(&gw.url(path), &[]).await;
        assert_eq!(reply.status, 403, "{path}");
        assert_eq!(reply.json()["code"], "path_denied", "{path}");
        assert_eq!(
            reply.json().get("upstream"),
            None,
            "{path} never reached the upstream"
        );
    }
    for path in ["/", "/administrator", "/shop/admin"] {
        let reply = client.get(&gw.url(path), &[]).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.json()["path"], path);
    }

    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(
        gw.config_path(),
        original.replace("status: 403", "status: 200"),
    )
    .unwrap();
    let event = gw.next_reload_event(0).await;
    assert!(!event.ok);
    assert!(
        event
            .message
            .contains("c-path-guard: `status` must be a number from 400 to 599"),
        "{}",
        event.message
    );
}
