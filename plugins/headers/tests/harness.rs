//! The headers plugin, loaded from its built `.wasm` in the SDK harness.

use serde_json::json;
use wasmgate_plugin_sdk::harness::{
    artifact, request, response, Harness, RequestAction, RequestExt,
};

fn load(config: serde_json::Value) -> Harness {
    Harness::load(artifact("headers"), config).expect("config accepted")
}

#[test]
fn request_edits_rename_remove_set_add() {
    let plugin = load(json!({"request": {
        "add": {"x-gateway": "wasmgate"},
        "set": {"x-env": "prod"},
        "remove": ["x-internal"],
        "rename": {"x-old": "x-new"}
    }}));
    let req = request("GET", "/")
        .with_header("x-old", "v1")
        .with_header("x-old", "v2");
    let RequestAction::Continue(changes) = plugin.on_request(req).unwrap() else {
        panic!("headers never answers a request itself")
    };
    let h = changes.headers;
    assert_eq!(h.remove, vec!["x-old", "x-new", "x-internal"]);
    assert_eq!(h.set, vec![("x-env".to_string(), "prod".to_string())]);
    assert_eq!(
        h.append,
        vec![
            ("x-new".to_string(), "v1".to_string()),
            ("x-new".to_string(), "v2".to_string()),
            ("x-gateway".to_string(), "wasmgate".to_string())
        ]
    );
}

#[test]
fn rename_of_an_absent_header_does_nothing() {
    let plugin = load(json!({"request": {"rename": {"x-old": "x-new"}}}));
    let RequestAction::Continue(changes) = plugin.on_request(request("GET", "/")).unwrap() else {
        panic!()
    };
    assert!(changes.headers.remove.is_empty() && changes.headers.append.is_empty());
}

#[test]
fn response_edits_only_requested_when_configured() {
    assert!(
        !load(json!({"request": {"add": {"a": "b"}}}))
            .info()
            .wants_response
    );
    let plugin =
        load(json!({"response": {"add": {"x-served-by": "wasmgate"}, "remove": ["server"]}}));
    assert!(plugin.info().wants_response);
    let changes = plugin
        .on_response(response(200, &[("server", "nginx")], None))
        .unwrap();
    assert_eq!(changes.headers.remove, vec!["server"]);
    assert_eq!(
        changes.headers.append,
        vec![("x-served-by".to_string(), "wasmgate".to_string())]
    );
    assert_eq!(changes.status, None);
}

#[test]
fn invalid_header_name_is_refused_at_load() {
    let err = Harness::load(
        artifact("headers"),
        json!({"request": {"add": {"bad name": "x"}}}),
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("request: `bad name` is not a valid header name"),
        "{err}"
    );
}

#[test]
fn header_value_with_newline_is_refused_at_load() {
    let err = Harness::load(
        artifact("headers"),
        json!({"response": {"set": {"x-a": "1\r\nx-b: 2"}}}),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("control character"), "{err}");
}

#[test]
fn unknown_config_field_is_refused_at_load() {
    let err = Harness::load(artifact("headers"), json!({"requets": {}}))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("unknown field `requets`"), "{err}");
}

#[test]
fn reads_only_the_headers_it_renames() {
    let plugin = load(json!({"request": {"rename": {"X-Old": "x-new"}, "add": {"a": "b"}}}));
    assert_eq!(plugin.header_interest(), Some(&["x-old".to_string()][..]));
}
