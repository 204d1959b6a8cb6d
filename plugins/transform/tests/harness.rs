//! The transform plugin, loaded from its built `.wasm` in the SDK harness.

use serde_json::{json, Value};
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, response, Harness, RequestAction, RequestChanges, RequestContext,
    RequestExt,
};

fn load(config: Value) -> Harness {
    Harness::load(artifact("transform"), config).expect("config accepted")
}

fn context(pairs: &[(&str, &str)]) -> RequestContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs the request hook with `ctx` and expects it to go on.
fn changes(
    plugin: &Harness,
    req: wasmgate_plugin_sdk::harness::Request,
    ctx: &[(&str, &str)],
) -> RequestChanges {
    match plugin.on_request_with(req, &mut context(ctx)).unwrap() {
        RequestAction::Continue(changes) => changes,
        RequestAction::Respond(r) => panic!("unexpected answer {}", r.status),
    }
}

fn json_body(body: &Option<Vec<u8>>) -> Value {
    serde_json::from_slice(body.as_deref().expect("a body")).expect("JSON body")
}

#[test]
fn request_headers_are_renamed_removed_and_templated() {
    let plugin = load(json!({"request": {"headers": {
        "set": {"x-user": "${ctx.sub}", "x-route": "${route}"},
        "add": {"x-client": "${client_ip} via ${method} ${path}"},
        "remove": ["x-debug"],
        "rename": {"x-old": "x-new"}
    }}}));
    let req = request("POST", "/orders")
        .with_header("x-old", "v1")
        .with_header("x-debug", "1");
    let h = changes(&plugin, req, &[("sub", "alice")]).headers;
    assert_eq!(h.remove, vec!["x-old", "x-new", "x-debug"]);
    assert_eq!(
        h.set,
        pairs(&[("x-route", "test-route"), ("x-user", "alice")])
    );
    assert_eq!(
        h.append,
        pairs(&[("x-new", "v1"), ("x-client", "127.0.0.1 via POST /orders")])
    );
}

#[test]
fn a_missing_context_key_renders_empty_by_default_or_skips_the_edit() {
    let config = |missing: Option<&str>| {
        let mut c = json!({"request": {
            "headers": {"set": {"x-user": "u:${ctx.sub}", "x-fixed": "1"}},
            "query": {"add": {"user": "${ctx.sub}"}},
            "body": {"set": {"owner": "${ctx.sub}"}}
        }});
        if let Some(m) = missing {
            c["missing"] = json!(m);
        }
        c
    };
    let req = || {
        request("POST", "/")
            .with_header("content-type", "application/json")
            .with_body(b"{}")
    };
    let empty = changes(&load(config(None)), req(), &[]);
    assert_eq!(
        empty.headers.set,
        pairs(&[("x-fixed", "1"), ("x-user", "u:")])
    );
    assert_eq!(empty.query.as_deref(), Some("user="));
    assert_eq!(json_body(&empty.body), json!({"owner": ""}));

    let skipped = changes(&load(config(Some("skip"))), req(), &[]);
    assert_eq!(skipped.headers.set, pairs(&[("x-fixed", "1")]));
    assert_eq!(skipped.query, None, "nothing added: query unchanged");
    assert_eq!(json_body(&skipped.body), json!({}));
}

#[test]
fn a_context_value_with_a_line_break_never_reaches_a_header() {
    let plugin = load(json!({"request": {"headers": {"set": {"x-user": "${ctx.sub}"}}}}));
    let h = changes(&plugin, request("GET", "/"), &[("sub", "a\r\nx-admin: 1")]).headers;
    assert!(h.set.is_empty(), "{:?}", h.set);
    assert_eq!(plugin.logs().len(), 1);
}

#[test]
fn the_path_is_stripped_at_a_segment_boundary_rewritten_and_prefixed() {
    let plugin = load(json!({"request": {"path": {
        "strip_prefix": "/api/",
        "replace": [{"pattern": "^/v1/users/([0-9]+)$", "with": "/v2/people/${1}"}],
        "add_prefix": "/internal"
    }}}));
    let path = |p: &str| changes(&plugin, request("GET", p), &[]).path;
    assert_eq!(
        path("/api/v1/users/42").as_deref(),
        Some("/internal/v2/people/42")
    );
    assert_eq!(path("/api").as_deref(), Some("/internal"));
    assert_eq!(
        path("/apix/y").as_deref(),
        Some("/internal/apix/y"),
        "/apix does not start with the segment /api"
    );
}

#[test]
fn a_path_left_as_it_was_is_not_sent_as_a_change() {
    let plugin = load(json!({"request": {"path": {"strip_prefix": "/api"}}}));
    assert_eq!(changes(&plugin, request("GET", "/other"), &[]).path, None);
}

#[test]
fn query_parameters_are_removed_set_and_added_encoded() {
    let plugin = load(json!({"request": {"query": {
        "remove": ["debug"],
        "set": {"source": "gateway"},
        "add": {"user": "${ctx.sub}"}
    }}}));
    let req = request("GET", "/search?q=rust&debug=1&source=client&de%62ug=2");
    let query = changes(&plugin, req, &[("sub", "a&b c")]).query;
    assert_eq!(
        query.as_deref(),
        Some("q=rust&source=gateway&user=a%26b%20c")
    );

    let only_removed = load(json!({"request": {"query": {"remove": ["debug"]}}}));
    let query = changes(&only_removed, request("GET", "/?debug=1"), &[]).query;
    assert_eq!(query.as_deref(), Some(""), "an empty query removes it");
}

#[test]
fn json_request_fields_are_edited_by_dotted_path_and_wrapped() {
    let plugin = load(json!({"request": {"body": {
        "remove": ["password", "meta.trace"],
        "rename": {"userName": "user.name"},
        "set": {"user.id": "${ctx.sub}", "version": 2},
        "add": {"meta.source": "gateway", "version": 99},
        "wrap": "data"
    }}}));
    let req = request("POST", "/")
        .with_header("content-type", "application/json; charset=utf-8")
        .with_body(br#"{"userName":"Al","password":"x","meta":{"trace":1,"keep":true}}"#);
    let body = changes(&plugin, req, &[("sub", "u-1")]).body;
    assert_eq!(
        json_body(&body),
        json!({"data": {
            "user": {"name": "Al", "id": "u-1"},
            "meta": {"keep": true, "source": "gateway"},
            "version": 2
        }})
    );
}

#[test]
fn non_json_bodies_pass_untouched_unless_json_is_required() {
    let rules = json!({"rename": {"a": "b"}});
    let lenient = load(json!({"request": {"body": rules}}));
    for (content_type, body) in [
        ("text/plain", &b"{\"a\":1}"[..]),
        ("application/json", &b"{not json"[..]),
    ] {
        let req = request("POST", "/")
            .with_header("content-type", content_type)
            .with_body(body);
        assert_eq!(changes(&lenient, req, &[]).body, None, "{content_type}");
    }

    let mut strict_rules = rules.clone();
    strict_rules["require_json"] = json!(true);
    let strict = load(json!({"request": {"body": strict_rules}}));
    let req = request("POST", "/")
        .with_header("content-type", "application/json")
        .with_body(b"{not json");
    let RequestAction::Respond(resp) = strict.on_request(req).unwrap() else {
        panic!("expected 400")
    };
    assert_eq!(resp.status, 400);
    assert_eq!(
        json_body(&resp.body),
        json!({"error": "request body must be valid JSON", "code": "invalid_json"})
    );
    assert_eq!(
        header(&resp.headers, "content-type"),
        Some("application/json")
    );
}

#[test]
fn a_compressed_body_is_not_parsed() {
    let plugin = load(json!({"request": {"body": {"require_json": true, "wrap": "d"}}}));
    let req = request("POST", "/")
        .with_header("content-encoding", "gzip")
        .with_body(&[0x1f, 0x8b, 0, 1]);
    assert_eq!(changes(&plugin, req, &[]).body, None);
}

#[test]
fn response_bodies_are_unwrapped_and_headers_read_carried_request_values() {
    let plugin = load(json!({"response": {
        "headers": {"set": {"x-route": "${route}", "x-user": "${ctx.sub}"}, "remove": ["server"]},
        "body": {"unwrap": "data", "remove": ["internal"]}
    }}));
    let mut ctx = context(&[("sub", "bob")]);
    plugin
        .on_request_with(request("GET", "/"), &mut ctx)
        .unwrap();
    let upstream = response(
        200,
        &[("content-type", "application/json"), ("server", "x")],
        Some(br#"{"data":{"id":7,"internal":"secret"},"status":"ok"}"#),
    );
    let changes = plugin.on_response_with(upstream, &mut ctx).unwrap();
    assert_eq!(json_body(&changes.body), json!({"id": 7}));
    assert_eq!(changes.headers.remove, vec!["server"]);
    assert_eq!(
        changes.headers.set,
        pairs(&[("x-route", "test-route"), ("x-user", "bob")])
    );
}

#[test]
fn an_upstream_answer_that_is_not_json_when_required_becomes_502() {
    let plugin = load(json!({"response": {"body": {"require_json": true}}}));
    let upstream = response(200, &[("content-type", "text/html")], Some(b"<html>"));
    let changes = plugin.on_response(upstream).unwrap();
    assert_eq!(changes.status, Some(502));
    assert_eq!(
        json_body(&changes.body),
        json!({"error": "upstream response body is not valid JSON", "code": "invalid_json"})
    );
    assert_eq!(
        changes.headers.set,
        pairs(&[("content-type", "application/json")])
    );
}

#[test]
fn bodies_and_the_response_hook_are_asked_for_only_when_configured() {
    let info = |config: Value| {
        let i = *load(config).info();
        (
            i.wants_request_body,
            i.wants_response,
            i.wants_response_body,
        )
    };
    assert_eq!(
        info(json!({"request": {"headers": {"add": {"x": "1"}}}})),
        (false, false, false)
    );
    assert_eq!(
        info(json!({"request": {"body": {"wrap": "d"}}})),
        (true, false, false)
    );
    assert_eq!(
        info(json!({"response": {"headers": {"add": {"x": "1"}}}})),
        (false, true, false)
    );
    assert_eq!(
        info(json!({"response": {"body": {"require_json": true}}})),
        (false, true, true)
    );
}

#[test]
fn only_the_headers_it_reads_are_copied_in() {
    let plugin = load(json!({
        "request": {"headers": {"rename": {"x-old": "x-new"}, "set": {"x-a": "1"}}},
        "response": {"headers": {"rename": {"etag": "x-etag"}}}
    }));
    assert_eq!(
        plugin.header_interest(),
        Some(&["etag".to_string(), "x-old".to_string()][..])
    );
    let with_body = load(json!({"response": {"body": {"wrap": "d"}}}));
    assert_eq!(
        with_body.header_interest(),
        Some(&["content-encoding".to_string(), "content-type".to_string()][..])
    );
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let cases = [
        (
            json!({"request": {"headers": {"set": {"bad name": "x"}}}}),
            "request.headers.set: `bad name` is not a valid header name",
        ),
        (
            json!({"response": {"headers": {"add": {"x-a": "${nope}"}}}}),
            "response.headers.add.x-a: unknown placeholder `${nope}`",
        ),
        (
            json!({"request": {"headers": {"add": {"x-a": "${ctx.sub"}}}}),
            "request.headers.add.x-a: unterminated placeholder",
        ),
        (
            json!({"request": {"path": {"replace": [{"pattern": "(", "with": ""}]}}}),
            "request.path.replace[0].pattern",
        ),
        (
            json!({"request": {"path": {"strip_prefix": "api"}}}),
            "request.path.strip_prefix: `api` must start with `/`",
        ),
        (
            json!({"request": {"query": {"remove": [""]}}}),
            "request.query.remove: a parameter name must not be empty",
        ),
        (
            json!({"request": {"body": {"remove": ["a..b"]}}}),
            "request.body.remove: `a..b` is not a dotted path",
        ),
        (
            json!({"response": {"body": {"set": {"a": "${route"}}}}),
            "response.body.set.a: unterminated placeholder",
        ),
        (json!({"missing": "explode"}), "unknown variant `explode`"),
        (json!({"request": {"header": {}}}), "unknown field `header`"),
    ];
    for (config, expected) in cases {
        let err = Harness::load(artifact("transform"), config.clone())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(expected), "{config}: {err}");
    }
}
