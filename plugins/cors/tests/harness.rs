//! The cors plugin, loaded from its built `.wasm` in the SDK harness.

use serde_json::json;
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, response, Harness, RequestAction, RequestContext, RequestExt,
    Response, ResponseChanges,
};

fn load(config: serde_json::Value) -> Harness {
    Harness::load(artifact("cors"), config).expect("config accepted")
}

fn full() -> Harness {
    load(json!({
        "origins": ["https://app.example.com", "*.example.com", "https://*.example.org:8443"],
        "methods": ["get", "POST", "PUT"],
        "headers": ["Content-Type", "authorization"],
        "expose_headers": ["X-Request-Id"],
        "credentials": true,
        "max_age_seconds": 600
    }))
}

/// Sends a preflight; the plugin must answer it.
fn preflight(plugin: &Harness, origin: &str, method: &str, headers: Option<&str>) -> Response {
    let mut req = request("OPTIONS", "/api/items")
        .with_header("origin", origin)
        .with_header("access-control-request-method", method);
    if let Some(headers) = headers {
        req = req.with_header("access-control-request-headers", headers);
    }
    match plugin.on_request(req).unwrap() {
        RequestAction::Respond(resp) => resp,
        RequestAction::Continue(_) => panic!("a preflight must be answered"),
    }
}

/// An actual request from `origin` (if any) and what the response hook does
/// to an upstream response carrying `upstream_headers`.
fn actual(
    plugin: &Harness,
    origin: Option<&str>,
    upstream_headers: &[(&str, &str)],
) -> ResponseChanges {
    let mut req = request("GET", "/api/items");
    if let Some(origin) = origin {
        req = req.with_header("origin", origin);
    }
    let mut ctx = RequestContext::new();
    let RequestAction::Continue(_) = plugin.on_request_with(req, &mut ctx).unwrap() else {
        panic!("actual requests go upstream")
    };
    plugin
        .on_response_with(response(200, upstream_headers, None), &mut ctx)
        .unwrap()
}

fn allowed_origin(plugin: &Harness, origin: &str) -> Option<String> {
    header(
        &actual(plugin, Some(origin), &[]).headers.set,
        "access-control-allow-origin",
    )
    .map(str::to_string)
}

fn error(resp: &Response) -> serde_json::Value {
    serde_json::from_slice(resp.body.as_deref().unwrap()).unwrap()
}

#[test]
fn an_allowed_preflight_gets_204_with_the_policy() {
    let resp = preflight(
        &full(),
        "https://app.example.com",
        "PUT",
        Some("Content-Type, Authorization"),
    );
    assert_eq!(resp.status, 204);
    assert_eq!(resp.body, None);
    let h = |name| header(&resp.headers, name);
    assert_eq!(
        h("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(h("access-control-allow-methods"), Some("GET, POST, PUT"));
    assert_eq!(
        h("access-control-allow-headers"),
        Some("content-type, authorization")
    );
    assert_eq!(h("access-control-allow-credentials"), Some("true"));
    assert_eq!(h("access-control-max-age"), Some("600"));
    assert_eq!(
        h("vary"),
        Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    );
}

#[test]
fn refused_preflights_get_403_json_without_allow_origin() {
    let plugin = full();
    let cases = [
        ("https://evil.test", "GET", None, "origin not allowed"),
        (
            "https://app.example.com",
            "DELETE",
            None,
            "method `DELETE` not allowed",
        ),
        (
            "https://app.example.com",
            "GET",
            Some("content-type, x-secret"),
            "header `x-secret` not allowed",
        ),
    ];
    for (origin, method, headers, message) in cases {
        let resp = preflight(&plugin, origin, method, headers);
        assert_eq!(resp.status, 403, "{message}");
        assert_eq!(
            error(&resp),
            json!({"error": message, "code": "cors_forbidden"})
        );
        assert_eq!(header(&resp.headers, "access-control-allow-origin"), None);
        assert!(header(&resp.headers, "vary").unwrap().starts_with("Origin"));
    }
}

#[test]
fn wildcard_patterns_match_subdomains_only() {
    let plugin = full();
    for origin in [
        "https://a.example.com",
        "http://deep.a.example.com",
        "HTTPS://App.Example.com",
        "https://api.example.org:8443",
    ] {
        assert_eq!(
            allowed_origin(&plugin, origin).as_deref(),
            Some(origin),
            "{origin}"
        );
    }
    for origin in [
        "https://example.com",
        "https://evilexample.com",
        "https://a.example.com.evil.test",
        "https://a.example.com:8080",
        "ftp://a.example.com",
        "http://api.example.org:8443",
        "https://api.example.org",
        "null",
    ] {
        assert_eq!(allowed_origin(&plugin, origin), None, "{origin}");
    }
}

#[test]
fn actual_responses_carry_the_cors_headers_for_allowed_origins_only() {
    let plugin = full();
    let upstream = [
        ("access-control-allow-origin", "*"),
        ("vary", "Accept-Encoding"),
    ];
    let allowed = actual(&plugin, Some("https://app.example.com"), &upstream);
    let mut set = allowed.headers.set.clone();
    set.sort();
    assert_eq!(
        set,
        [
            (
                "access-control-allow-credentials".to_string(),
                "true".to_string()
            ),
            (
                "access-control-allow-origin".into(),
                "https://app.example.com".into()
            ),
            (
                "access-control-expose-headers".into(),
                "x-request-id".into()
            ),
        ]
    );
    assert_eq!(
        allowed.headers.append,
        [("vary".to_string(), "Origin".to_string())]
    );

    let refused = actual(&plugin, Some("https://evil.test"), &upstream);
    assert!(refused.headers.set.is_empty());
    assert!(
        refused
            .headers
            .remove
            .contains(&"access-control-allow-origin".to_string()),
        "the upstream's answer is dropped"
    );
    assert_eq!(
        refused.headers.append,
        [("vary".to_string(), "Origin".to_string())]
    );

    let no_origin = actual(&plugin, None, &[("vary", "accept-encoding, origin")]);
    assert!(no_origin.headers.set.is_empty());
    assert!(
        no_origin.headers.append.is_empty(),
        "already varies by Origin"
    );
}

#[test]
fn any_origin_without_credentials_is_a_star_and_stars_reflect_requests() {
    let plugin = load(json!({"origins": ["*"], "methods": ["*"], "headers": ["*"]}));
    assert_eq!(
        allowed_origin(&plugin, "https://anyone.test").as_deref(),
        Some("*")
    );
    let resp = preflight(&plugin, "https://anyone.test", "PATCH", Some("X-A, x-b"));
    assert_eq!(resp.status, 204);
    assert_eq!(
        header(&resp.headers, "access-control-allow-origin"),
        Some("*")
    );
    assert_eq!(
        header(&resp.headers, "access-control-allow-methods"),
        Some("PATCH")
    );
    assert_eq!(
        header(&resp.headers, "access-control-allow-headers"),
        Some("x-a, x-b")
    );
    assert_eq!(
        header(&resp.headers, "access-control-allow-credentials"),
        None
    );
    assert_eq!(header(&resp.headers, "access-control-max-age"), None);
}

#[test]
fn options_without_a_requested_method_is_not_a_preflight() {
    let plugin = full();
    let req = request("OPTIONS", "/").with_header("origin", "https://app.example.com");
    assert!(matches!(
        plugin.on_request(req).unwrap(),
        RequestAction::Continue(_)
    ));
    assert_eq!(
        plugin.header_interest(),
        Some(
            &[
                "origin".to_string(),
                "access-control-request-method".into(),
                "access-control-request-headers".into(),
                "vary".into()
            ][..]
        )
    );
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let origin_error = |i: usize, text: &str| {
        format!("origins[{i}]: `{text}` is not an origin like https://app.example.com, *.example.com or *")
    };
    let cases = [
        (
            json!({"origins": []}),
            "origins: must list at least one origin".to_string(),
        ),
        (
            json!({"origins": ["https://a.test", "https://a.test/path"]}),
            origin_error(1, "https://a.test/path"),
        ),
        (json!({"origins": ["null"]}), origin_error(0, "null")),
        (
            json!({"origins": ["app.example.com"]}),
            origin_error(0, "app.example.com"),
        ),
        (
            json!({"origins": ["https://*"]}),
            origin_error(0, "https://*"),
        ),
        (
            json!({"origins": ["https://a.test:99999"]}),
            origin_error(0, "https://a.test:99999"),
        ),
        (
            json!({"origins": ["*"], "credentials": true}),
            "origins: `*` cannot be combined with credentials: true".into(),
        ),
        (
            json!({"origins": ["*"], "methods": []}),
            "methods: must list at least one method".into(),
        ),
        (
            json!({"origins": ["*"], "methods": ["GET", "GE T"]}),
            "methods[1]: `GE T` is not a valid name".into(),
        ),
        (
            json!({"origins": ["*"], "headers": ["*", "x-a"]}),
            "headers[0]: `*` is not a valid name".into(),
        ),
        (
            json!({"origins": ["*"], "expose_headers": ["*"]}),
            "expose_headers[0]: `*` is not a valid name".into(),
        ),
        (
            json!({"origins": ["*"], "max_age": 5}),
            "unknown field `max_age`".into(),
        ),
    ];
    for (config, expected) in cases {
        let err = Harness::load(artifact("cors"), config.clone())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(&expected), "{config}: {err}");
    }
}
