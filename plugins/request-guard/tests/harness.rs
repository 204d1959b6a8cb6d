//! The request-guard plugin, loaded from its built `.wasm` in the SDK harness.

use serde_json::{json, Value};
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, Harness, MetricUpdate, Request, RequestAction, RequestExt, Response,
};

fn load(config: Value) -> Harness {
    Harness::load(artifact("request-guard"), config).expect("config accepted")
}

/// The refusal for `req`, or `None` when it passes untouched.
fn refusal(plugin: &Harness, req: Request) -> Option<Response> {
    match plugin.on_request(req).unwrap() {
        RequestAction::Respond(r) => Some(r),
        RequestAction::Continue(changes) => {
            let h = &changes.headers;
            assert!(h.set.is_empty() && h.append.is_empty() && h.remove.is_empty());
            assert!(changes.path.is_none() && changes.query.is_none() && changes.body.is_none());
            None
        }
    }
}

fn json_body(response: &Response) -> Value {
    serde_json::from_slice(response.body.as_deref().expect("a body")).expect("JSON body")
}

/// Asserts that each path-and-query is refused with 400 `code` by `rule`.
fn assert_blocked(plugin: &Harness, cases: &[&str], code: &str, rule: &str) {
    for case in cases {
        let r = refusal(plugin, request("GET", case)).unwrap_or_else(|| panic!("{case} passed"));
        assert_eq!(r.status, 400, "{case}");
        let body = json_body(&r);
        assert_eq!(
            (body["code"].as_str(), body["rule"].as_str()),
            (Some(code), Some(rule)),
            "{case}: {body}"
        );
    }
}

#[test]
fn ordinary_requests_pass_including_lookalikes() {
    let plugin = load(json!({}));
    for case in [
        "/api/users/42",
        "/a/./b//c/",
        "/files/report..pdf",
        "/search?q=rock+and+roll&page=2",
        "/people?name=O%27Brien&sort=-created",
        "/notes?title=a--b&tag=%23rust",
        "/opts?one=1&online=true&select=name&union=eu",
        "/mail?to=a%40b.example",
    ] {
        assert!(
            refusal(&plugin, request("GET", case)).is_none(),
            "{case} was refused"
        );
    }
    assert!(plugin.logs().is_empty());
}

#[test]
fn path_traversal_is_caught_however_it_is_encoded() {
    let plugin = load(json!({}));
    assert_blocked(
        &plugin,
        &[
            "/files/../etc/passwd",
            "/files/%2e%2e%2fetc/passwd",
            "/files/%2E%2E/etc",
            "/files/..%2fetc",
            "/files/..%252fetc/passwd",
            "/files/%252e%252e%252fetc",
            "/files/..%5cwindows\\win.ini",
            "/files/%c0%ae%c0%ae/etc",
            "/files/%u002e%u002e/etc",
            "/files/..;/etc",
            "/download?file=../../etc/passwd",
            "/download?file=%2e%2e%2f%2e%2e%2fetc",
            "/download?file=..%255c..%255cboot.ini",
        ],
        "path_traversal",
        "path_traversal.dot_segment",
    );
    assert_blocked(
        &plugin,
        &["/img/a.php%00.jpg", "/x?f=a%2500b"],
        "path_traversal",
        "path_traversal.null_byte",
    );
}

#[test]
fn sql_injection_is_caught_in_path_and_query() {
    let plugin = load(json!({}));
    let cases: &[(&str, &str)] = &[
        (
            "/items?id=1 union select password from users",
            "sqli.union_select",
        ),
        ("/items?id=1+UNION/**/ALL/**/SELECT+1", "sqli.union_select"),
        (
            "/items?id=%2527%2520OR%2520%25271%2527%253D%25271",
            "sqli.tautology",
        ),
        ("/users/1%27%20or%20%27a%27=%27a", "sqli.tautology"),
        ("/items?id=1 or 1=1", "sqli.tautology"),
        ("/login?user=admin%27--", "sqli.comment"),
        ("/items?id=1;%20DROP%20TABLE%20users", "sqli.stacked_query"),
        ("/items?id=1 AND SLEEP(5)", "sqli.time_delay"),
        ("/items?id=1;waitfor delay '0:0:5'", "sqli.time_delay"),
        ("/items?t=information_schema.tables", "sqli.schema_probe"),
    ];
    for (case, rule) in cases {
        assert_blocked(&plugin, &[case], "sqli", rule);
    }
}

#[test]
fn cross_site_scripting_is_caught() {
    let plugin = load(json!({}));
    let cases: &[(&str, &str)] = &[
        ("/s?q=<script>alert(1)</script>", "xss.script_tag"),
        ("/s?q=%253Cscript%253E", "xss.script_tag"),
        (
            "/s?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
            "xss.event_handler",
        ),
        ("/go?next=JavaScript:alert(1)", "xss.javascript_uri"),
        ("/s?q=<iframe src=//evil>", "xss.embed_tag"),
    ];
    for (case, rule) in cases {
        assert_blocked(&plugin, &[case], "xss", rule);
    }
}

#[test]
fn a_refusal_is_logged_and_counted_with_its_rule() {
    let plugin = load(json!({}));
    let r = refusal(&plugin, request("GET", "/s?q=<script>")).unwrap();
    assert_eq!(
        json_body(&r),
        json!({"error": "request blocked by rule `xss.script_tag` in the query", "code": "xss", "rule": "xss.script_tag"})
    );
    assert_eq!(header(&r.headers, "content-type"), Some("application/json"));
    let log = &plugin.logs()[0];
    assert_eq!(log.message, "request refused");
    assert_eq!(
        log.fields,
        vec![
            ("rule".to_string(), "xss.script_tag".to_string()),
            ("in".to_string(), "query".to_string()),
            ("route".to_string(), "test-route".to_string())
        ]
    );
    assert_eq!(
        plugin.metrics(),
        vec![MetricUpdate::Counter {
            name: "request_guard_refused".into(),
            value: 1,
            labels: vec![("rule".into(), "xss.script_tag".into())]
        }]
    );
}

#[test]
fn built_in_rules_can_be_turned_off_by_family_or_one_by_one() {
    let union = "/i?id=1 union select 1";
    assert!(refusal(&load(json!({"sqli": false})), request("GET", union)).is_none());
    let one_off = load(json!({"disable_rules": ["sqli.union_select"]}));
    assert!(refusal(&one_off, request("GET", union)).is_none());
    assert_blocked(&one_off, &["/i?id=1 or 1=1"], "sqli", "sqli.tautology");
    assert!(refusal(
        &load(json!({"xss": false})),
        request("GET", "/s?q=<script>")
    )
    .is_none());
    let no_traversal = load(json!({"path_traversal": false}));
    assert!(refusal(&no_traversal, request("GET", "/a/../b")).is_none());
    assert!(refusal(&no_traversal, request("GET", "/a%00b")).is_none());
}

#[test]
fn custom_rules_see_the_resolved_path() {
    let plugin = load(json!({
        "path_traversal": false,
        "rules": [
            {"name": "no-admin", "pattern": "(?i)^/admin(/|$)", "in": ["path"]},
            {"name": "no-debug", "pattern": "(^|&)debug=", "in": ["query"]}
        ]
    }));
    assert_blocked(
        &plugin,
        &["/admin", "/x/../ADMIN/users", "//admin/", "/./%61dmin"],
        "blocked",
        "no-admin",
    );
    assert_blocked(&plugin, &["/x?a=1&debug=1"], "blocked", "no-debug");
    assert!(
        refusal(&plugin, request("GET", "/x?next=/admin")).is_none(),
        "path rule only"
    );
    assert!(refusal(&plugin, request("GET", "/administrator")).is_none());
}

#[test]
fn a_body_over_the_limit_is_413_by_declared_or_buffered_length() {
    let plugin = load(json!({"max_body_bytes": 64}));
    let declared = request("POST", "/").with_header("content-length", "65");
    let r = refusal(&plugin, declared).expect("413");
    assert_eq!(r.status, 413);
    assert_eq!(
        json_body(&r),
        json!({"error": "body of 65 bytes exceeds the limit of 64 bytes", "code": "body_too_large"})
    );
    let chunked = request("POST", "/").with_body(&[b'x'; 100]);
    assert_eq!(refusal(&plugin, chunked).map(|r| r.status), Some(413));
    let fits = request("POST", "/")
        .with_header("content-length", "64")
        .with_body(&[b'x'; 64]);
    assert!(refusal(&plugin, fits).is_none());
    assert_eq!(
        plugin.logs()[0].fields[0],
        ("rule".to_string(), "body_too_large".to_string())
    );
}

#[test]
fn a_body_of_a_type_not_allowed_is_415() {
    let plugin = load(json!({"allowed_content_types": ["application/json", "text/*"]}));
    let post = |content_type: Option<&str>| {
        let req = request("POST", "/")
            .with_header("content-length", "2")
            .with_body(b"{}");
        match content_type {
            Some(t) => req.with_header("content-type", t),
            None => req,
        }
    };
    assert!(refusal(&plugin, post(Some("application/json; charset=utf-8"))).is_none());
    assert!(refusal(&plugin, post(Some("Text/CSV"))).is_none());
    let r = refusal(&plugin, post(Some("application/xml"))).expect("415");
    assert_eq!(r.status, 415);
    assert_eq!(
        json_body(&r),
        json!({"error": "content type `application/xml` is not accepted here", "code": "unsupported_media_type"})
    );
    let r = refusal(&plugin, post(None)).expect("415");
    assert_eq!(
        json_body(&r)["error"],
        "content type `none` is not accepted here"
    );
    assert!(
        refusal(&plugin, request("GET", "/")).is_none(),
        "no body: no content type needed"
    );
}

#[test]
fn malformed_json_is_400_when_checked() {
    let plugin = load(json!({"check_json": true}));
    let post = |t: &str, body: &[u8]| {
        request("POST", "/")
            .with_header("content-type", t)
            .with_body(body)
    };
    let r = refusal(&plugin, post("application/json", b"{\"a\": 1,}")).expect("400");
    assert_eq!(r.status, 400);
    let body = json_body(&r);
    assert_eq!(body["code"], "invalid_json");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("body is not valid JSON: "),
        "{body}"
    );
    assert_eq!(body.get("rule"), None);
    assert!(refusal(&plugin, post("application/vnd.api+json", b"{\"a\": [1]}")).is_none());
    assert!(
        refusal(&plugin, post("text/plain", b"{oops")).is_none(),
        "not JSON-typed"
    );
}

#[test]
fn the_body_and_its_headers_are_asked_for_only_by_body_checks() {
    let patterns_only = load(json!({}));
    assert!(!patterns_only.info().wants_request_body);
    assert_eq!(patterns_only.header_interest(), Some(&[][..]));
    let with_limit = load(json!({"max_body_bytes": 10}));
    assert!(with_limit.info().wants_request_body);
    assert!(!with_limit.info().wants_response);
    assert_eq!(
        with_limit.header_interest(),
        Some(&["content-length".to_string(), "content-type".to_string()][..])
    );
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let cases = [
        (
            json!({"disable_rules": ["sqli.nope"]}),
            "disable_rules[0]: unknown rule `sqli.nope`",
        ),
        (
            json!({"allowed_content_types": ["application/json", "json"]}),
            "allowed_content_types[1]: `json` is not a media type",
        ),
        (
            json!({"allowed_content_types": ["*/*"]}),
            "allowed_content_types[0]",
        ),
        (
            json!({"rules": [{"name": "x", "pattern": "("}]}),
            "rules[0].pattern",
        ),
        (
            json!({"rules": [{"name": "", "pattern": "a"}]}),
            "rules[0].name must not be empty",
        ),
        (
            json!({"rules": [{"name": "x", "pattern": "a"}, {"name": "x", "pattern": "b"}]}),
            "rules[1].name `x` is used twice",
        ),
        (
            json!({"rules": [{"name": "x", "pattern": "a", "in": []}]}),
            "rules[0].in must name",
        ),
        (
            json!({"rules": [{"name": "x", "pattern": "a", "in": ["body"]}]}),
            "unknown variant `body`",
        ),
        (json!({"max_body_bytes": -1}), "invalid config"),
        (json!({"sqlI": false}), "unknown field `sqlI`"),
    ];
    for (config, expected) in cases {
        let err = Harness::load(artifact("request-guard"), config.clone())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(expected), "{config}: {err}");
    }
}
