//! The aggregate plugin, loaded from its built `.wasm` in the SDK harness
//! with fake upstreams.

use serde_json::{json, Value};
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, Harness, OutboundResponse, RequestAction, RequestContext,
    RequestExt, Response,
};

fn load(config: Value) -> Harness {
    Harness::load(artifact("aggregate"), config).expect("config accepted")
}

fn ok(body: &str) -> Result<OutboundResponse, String> {
    Ok(OutboundResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    })
}

fn status(status: u16) -> Result<OutboundResponse, String> {
    Ok(OutboundResponse {
        status,
        headers: vec![],
        body: b"{\"error\":\"boom\"}".to_vec(),
    })
}

/// Runs the request hook with `ctx`; aggregate always answers.
fn answer(
    plugin: &Harness,
    req: wasmgate_plugin_sdk::harness::Request,
    ctx: &[(&str, &str)],
) -> Response {
    let mut context: RequestContext = ctx
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match plugin.on_request_with(req, &mut context).unwrap() {
        RequestAction::Respond(response) => response,
        RequestAction::Continue(_) => panic!("aggregate must answer itself"),
    }
}

fn json_body(response: &Response) -> Value {
    serde_json::from_slice(response.body.as_deref().expect("a body")).expect("JSON")
}

#[test]
fn calls_are_templated_sent_in_one_batch_and_merged() {
    let plugin = load(json!({"calls": [
        {"name": "profile", "upstream": "users", "path": "/users/${ctx.sub}",
         "forward_headers": ["Authorization"], "headers": {"x-tenant": "${ctx.tenant}"}, "timeout_ms": 250},
        {"name": "orders", "upstream": "orders", "path": "/orders?${query}&limit=5"},
        {"name": "motd", "upstream": "static", "path": "/motd", "method": "post"}
    ]}));
    assert_eq!(
        plugin.header_interest(),
        Some(&["authorization".to_string()][..]),
        "the forwarded headers are all it reads"
    );
    plugin.fake_upstream("users", |_| ok(r#"{"id":"a b","plan":"pro"}"#));
    plugin.fake_upstream("orders", |_| ok(r#"[1,2]"#));
    plugin.fake_upstream("static", |_| ok("hello, not JSON"));
    let req = request("GET", "/dashboard?page=2")
        .with_header("authorization", "Bearer t")
        .with_header("cookie", "secret");
    let resp = answer(&plugin, req, &[("sub", "a b/c"), ("tenant", "acme")]);
    assert_eq!(resp.status, 200);
    assert_eq!(
        header(&resp.headers, "content-type"),
        Some("application/json")
    );
    assert_eq!(
        json_body(&resp),
        json!({"profile": {"id": "a b", "plan": "pro"}, "orders": [1, 2], "motd": "hello, not JSON"})
    );
    let sent = plugin.outbound_requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent[0].path_and_query, "/users/a%20b%2Fc",
        "a context value stays one segment"
    );
    assert_eq!(
        sent[0].headers,
        vec![
            ("authorization".to_string(), "Bearer t".to_string()),
            ("x-tenant".to_string(), "acme".to_string())
        ],
        "only the listed headers are forwarded"
    );
    assert_eq!(sent[0].timeout_ms, Some(250));
    assert_eq!(sent[1].path_and_query, "/orders?page=2&limit=5");
    assert_eq!(sent[1].timeout_ms, None);
    assert_eq!(
        (sent[2].method.as_str(), sent[2].path_and_query.as_str()),
        ("POST", "/motd")
    );
}

#[test]
fn by_default_a_call_gets_the_clients_path_and_query() {
    let plugin = load(json!({"calls": [{"name": "x", "upstream": "u"}]}));
    plugin.fake_upstream("u", |_| ok("{}"));
    answer(&plugin, request("GET", "/a/b?c=1"), &[]);
    answer(&plugin, request("GET", "/a/b"), &[]);
    let paths: Vec<String> = plugin
        .outbound_requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert_eq!(
        paths,
        vec!["/a/b?c=1", "/a/b"],
        "no dangling `?` without a query"
    );
}

#[test]
fn a_failed_required_call_makes_the_whole_answer_a_502_naming_it() {
    let plugin = load(json!({"calls": [
        {"name": "profile", "upstream": "users", "path": "/u"},
        {"name": "orders", "upstream": "orders", "path": "/o", "policy": "required"}
    ]}));
    plugin.fake_upstream("users", |_| ok("{}"));
    plugin.fake_upstream("orders", |_| status(503));
    let resp = answer(&plugin, request("GET", "/"), &[]);
    assert_eq!(resp.status, 502);
    assert_eq!(
        json_body(&resp),
        json!({"error": "call `orders` failed: answered 503", "code": "upstream_failed", "call": "orders"})
    );
    let log = &plugin.logs()[0];
    assert_eq!(log.message, "aggregate call failed");
    assert!(log.fields.contains(&("call".into(), "orders".into())));

    // An upstream with no fake answers with a transport error: a failure too.
    let unreachable = load(json!({"calls": [{"name": "p", "upstream": "nowhere", "path": "/"}]}));
    let resp = answer(&unreachable, request("GET", "/"), &[]);
    assert_eq!(resp.status, 502);
    assert_eq!(
        json_body(&resp)["error"],
        "call `p` failed: unknown upstream `nowhere`"
    );
}

#[test]
fn a_failed_optional_call_is_left_out_or_takes_its_default() {
    let plugin = load(json!({"calls": [
        {"name": "profile", "upstream": "users", "path": "/u"},
        {"name": "ads", "upstream": "ads", "path": "/a", "policy": "optional"},
        {"name": "news", "upstream": "news", "path": "/n", "policy": "optional", "default": {"items": []}}
    ]}));
    plugin.fake_upstream("users", |_| ok(r#"{"id":1}"#));
    plugin.fake_upstream("ads", |_| {
        Err("upstream `ads` did not answer within 100ms".into())
    });
    plugin.fake_upstream("news", |_| status(404));
    let resp = answer(&plugin, request("GET", "/"), &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(
        json_body(&resp),
        json!({"profile": {"id": 1}, "news": {"items": []}})
    );
    assert_eq!(plugin.logs().len(), 2, "each failure is logged");
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let call = |extra: Value| {
        let mut c = json!({"name": "a", "upstream": "u", "path": "/"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"calls": [c]})
    };
    let cases = [
        (
            json!({"calls": []}),
            "`calls` must list at least one call".to_string(),
        ),
        (
            json!({"calls": [{"name": "a", "upstream": "u"}, {"name": "a", "upstream": "v"}]}),
            "calls[1].name `a` is used twice".into(),
        ),
        (
            call(json!({"name": ""})),
            "calls[0].name must not be empty".into(),
        ),
        (
            call(json!({"upstream": ""})),
            "calls[0].upstream must not be empty".into(),
        ),
        (
            call(json!({"path": "users"})),
            "calls[0].path must start with `/`".into(),
        ),
        (
            call(json!({"path": "/${nope}"})),
            "calls[0].path: unknown placeholder `${nope}`".into(),
        ),
        (
            call(json!({"method": "GE T"})),
            "calls[0].method: `GE T` is not an HTTP method".into(),
        ),
        (
            call(json!({"timeout_ms": 0})),
            "calls[0].timeout_ms must be more than 0".into(),
        ),
        (
            call(json!({"default": 1})),
            "calls[0].default needs `policy: optional`".into(),
        ),
        (
            call(json!({"policy": "maybe"})),
            "unknown variant `maybe`".into(),
        ),
        (
            call(json!({"forward_headers": ["bad name"]})),
            "calls[0].forward_headers: `bad name` is not a valid header name".into(),
        ),
        (
            call(json!({"headers": {"x-a": "${ctx.t"}})),
            "calls[0].headers.x-a: unterminated placeholder".into(),
        ),
        (
            call(json!({"upsteam": "x"})),
            "unknown field `upsteam`".into(),
        ),
        (json!({}), "missing field `calls`".into()),
    ];
    for (config, expected) in cases {
        let err = Harness::load(artifact("aggregate"), config.clone())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(&expected), "{config}: {err}");
    }
}

#[test]
fn cases_yaml_passes() {
    wasmgate_plugin_sdk::harness::assert_cases(
        artifact("aggregate"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/cases.yaml"),
    );
}
