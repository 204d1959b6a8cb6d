//! The api-key plugin, loaded from its built `.wasm` in the SDK harness.

use serde_json::json;
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, Harness, RequestAction, RequestContext, RequestExt,
};

fn load(extra: serde_json::Value) -> Harness {
    let mut config = json!({"keys": [
        {"key": "key-of-alice", "consumer": "alice"},
        {"key": "key-of-bob-00", "consumer": "bob"}
    ]});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Harness::load(artifact("api-key"), config).expect("config accepted")
}

fn body_json(body: &Option<Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(body.as_deref().unwrap()).unwrap()
}

#[test]
fn missing_key_gets_401_json_with_challenge() {
    let RequestAction::Respond(resp) = load(json!({})).on_request(request("GET", "/")).unwrap()
    else {
        panic!("expected a 401")
    };
    assert_eq!(resp.status, 401);
    assert_eq!(
        body_json(&resp.body),
        json!({"error": "missing API key", "code": "unauthorized"})
    );
    assert_eq!(
        header(&resp.headers, "www-authenticate"),
        Some("ApiKey header=\"x-api-key\"")
    );
    assert_eq!(
        header(&resp.headers, "content-type"),
        Some("application/json")
    );
}

#[test]
fn unknown_key_gets_401_and_is_logged() {
    let plugin = load(json!({}));
    let RequestAction::Respond(resp) = plugin
        .on_request(request("GET", "/").with_header("x-api-key", "nope-nope"))
        .unwrap()
    else {
        panic!("expected a 401")
    };
    assert_eq!(body_json(&resp.body)["error"], "invalid API key");
    assert_eq!(plugin.logs().len(), 1);
    assert_eq!(plugin.logs()[0].message, "rejected unknown API key");
}

#[test]
fn valid_key_names_the_consumer_in_context_and_header() {
    let plugin = load(json!({}));
    let mut ctx = RequestContext::new();
    let action = plugin
        .on_request_with(
            request("GET", "/").with_header("X-Api-Key", "key-of-bob-00"),
            &mut ctx,
        )
        .unwrap();
    let RequestAction::Continue(changes) = action else {
        panic!("expected continue")
    };
    assert_eq!(ctx.get("consumer").map(String::as_str), Some("bob"));
    assert_eq!(
        changes.headers.set,
        vec![("x-consumer".to_string(), "bob".to_string())]
    );
    assert_eq!(
        changes.headers.remove,
        vec!["x-api-key"],
        "the key is hidden from the upstream"
    );
}

#[test]
fn key_in_query_is_accepted_and_stripped() {
    let plugin = load(json!({"query_param": "api_key", "hide_credentials": true}));
    let action = plugin
        .on_request(request("GET", "/x?a=1&api_key=key-of-alice&b=2"))
        .unwrap();
    let RequestAction::Continue(changes) = action else {
        panic!("expected continue")
    };
    assert_eq!(changes.query.as_deref(), Some("a=1&b=2"));
}

/// The query is read as a form, as servers read it: an encoded name or key
/// is the same key, and hiding credentials removes every spelling of the
/// parameter, also when the header carried the key.
#[test]
fn a_key_in_the_query_is_percent_decoded_and_every_spelling_hidden() {
    let plugin = load(json!({"query_param": "api_key", "hide_credentials": true}));
    let action = plugin
        .on_request(request("GET", "/x?api%5Fkey=key%2Dof%2Dalice&b=2"))
        .unwrap();
    let RequestAction::Continue(changes) = action else {
        panic!("an encoded key is the same key")
    };
    assert_eq!(changes.query.as_deref(), Some("b=2"));

    let with_header = plugin
        .on_request(
            request("GET", "/x?api_key=key-of-bob-00&api%5fkey=x")
                .with_header("x-api-key", "key-of-alice"),
        )
        .unwrap();
    let RequestAction::Continue(changes) = with_header else {
        panic!("the header's key is valid")
    };
    assert_eq!(
        changes.query.as_deref(),
        Some(""),
        "no key reaches the upstream"
    );
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let cases = [
        (json!({"keys": []}), "`keys` must list at least one key"),
        (
            json!({"keys": [{"key": "short", "consumer": "a"}]}),
            "keys[0].key must be at least 8 characters",
        ),
        (
            json!({"keys": [{"key": "key-of-alice", "consumer": "a"}, {"key": "key-of-alice", "consumer": "b"}]}),
            "keys[1].key is listed twice",
        ),
        (
            json!({"keys": [{"key": "key-of-alice"}]}),
            "missing field `consumer`",
        ),
        (json!(null), "invalid config"),
    ];
    for (config, expected) in cases {
        let err = Harness::load(artifact("api-key"), config.clone())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(expected), "{config}: {err}");
    }
}

#[test]
fn cases_yaml_passes() {
    wasmgate_plugin_sdk::harness::assert_cases(
        artifact("api-key"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/cases.yaml"),
    );
}
