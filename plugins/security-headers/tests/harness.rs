//! The security-headers plugin, loaded from its built `.wasm` in the SDK harness.

use plugin_security_headers::{Config, SecurityHeaders};
use serde_json::{json, Value};
use wasmgate_plugin_sdk::harness::{
    artifact, request, response, Harness, RequestAction, ResponseChanges,
};
use wasmgate_plugin_sdk::Plugin;

fn load(config: Value) -> Harness {
    Harness::load(artifact("security-headers"), config).expect("config accepted")
}

fn set(changes: &ResponseChanges) -> Vec<(&str, &str)> {
    changes
        .headers
        .set
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

#[test]
fn defaults_put_all_five_headers_on_every_response() {
    let plugin = load(json!({}));
    assert!(plugin.info().wants_response);
    assert!(!plugin.info().wants_request_body && !plugin.info().wants_response_body);
    assert_eq!(
        plugin.header_interest(),
        Some(&[][..]),
        "it overrides, so it reads no header at all"
    );
    let RequestAction::Continue(changes) = plugin.on_request(request("GET", "/")).unwrap() else {
        panic!("never answers a request")
    };
    let h = &changes.headers;
    assert!(h.set.is_empty() && h.append.is_empty() && h.remove.is_empty());
    for status in [200, 404, 500] {
        let changes = plugin
            .on_response(response(status, &[("content-type", "text/html")], None))
            .unwrap();
        assert_eq!(
            set(&changes),
            vec![
                ("strict-transport-security", "max-age=31536000; includeSubDomains"),
                (
                    "content-security-policy",
                    "default-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
                ),
                ("x-frame-options", "DENY"),
                ("x-content-type-options", "nosniff"),
                ("referrer-policy", "strict-origin-when-cross-origin"),
            ]
        );
        assert!(changes.headers.remove.is_empty() && changes.headers.append.is_empty());
        assert_eq!(changes.status, None);
        assert_eq!(changes.body, None);
    }
}

#[test]
fn each_header_is_configurable() {
    let plugin = load(json!({
        "hsts": {"max_age_secs": 63072000, "include_subdomains": true, "preload": true},
        "content_security_policy": "default-src 'self' ;img-src 'self' data:;  ",
        "frame_options": "sameorigin",
        "content_type_options": "NoSniff",
        "referrer_policy": "No-Referrer"
    }));
    let changes = plugin.on_response(response(200, &[], None)).unwrap();
    assert_eq!(
        set(&changes),
        vec![
            (
                "strict-transport-security",
                "max-age=63072000; includeSubDomains; preload"
            ),
            (
                "content-security-policy",
                "default-src 'self'; img-src 'self' data:"
            ),
            ("x-frame-options", "SAMEORIGIN"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
        ]
    );
}

#[test]
fn each_header_can_be_turned_off() {
    let plugin = load(json!({
        "hsts": false,
        "frame_options": false,
        "referrer_policy": false,
        "content_security_policy_report_only": true
    }));
    let changes = plugin.on_response(response(200, &[], None)).unwrap();
    assert_eq!(
        set(&changes),
        vec![
            (
                "content-security-policy-report-only",
                "default-src 'self'; object-src 'none'; base-uri 'self'"
            ),
            ("x-content-type-options", "nosniff"),
        ],
        "without X-Frame-Options the default policy leaves framing alone"
    );
    let none = load(json!({
        "hsts": false, "content_security_policy": false, "frame_options": false,
        "content_type_options": false, "referrer_policy": false
    }));
    assert!(
        !none.info().wants_response,
        "nothing to add: not called at all"
    );
}

#[test]
fn sameorigin_framing_is_reflected_in_the_default_policy() {
    let plugin = load(json!({"frame_options": "SAMEORIGIN", "hsts": true}));
    let changes = plugin.on_response(response(200, &[], None)).unwrap();
    assert!(set(&changes).contains(&(
        "content-security-policy",
        "default-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'self'"
    )));
}

#[test]
fn upstream_values_are_replaced_or_kept_as_configured() {
    let upstream = [
        ("x-frame-options", "SAMEORIGIN"),
        ("content-security-policy", "default-src *"),
    ];
    let overriding = load(json!({}));
    let changes = overriding
        .on_response(response(200, &upstream, None))
        .unwrap();
    assert!(set(&changes).contains(&("x-frame-options", "DENY")));

    let keeping = load(json!({"override_upstream": false}));
    assert_eq!(
        keeping.header_interest().map(<[String]>::len),
        Some(5),
        "reads its own five names"
    );
    let changes = keeping.on_response(response(200, &upstream, None)).unwrap();
    let names: Vec<&str> = set(&changes).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![
            "strict-transport-security",
            "x-content-type-options",
            "referrer-policy"
        ],
        "the upstream's own framing and policy are left alone"
    );
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let cases = [
        (
            json!({"frame_options": "ALLOW-FROM https://a.example"}),
            "frame_options: ALLOW-FROM is obsolete",
        ),
        (
            json!({"frame_options": "ALLOWALL"}),
            "frame_options: expected DENY, SAMEORIGIN or false",
        ),
        (
            json!({"frame_options": 1}),
            "frame_options: expected DENY, SAMEORIGIN or false",
        ),
        (
            json!({"content_type_options": "sniff"}),
            "content_type_options: expected nosniff, true or false",
        ),
        (
            json!({"referrer_policy": "never"}),
            "referrer_policy: expected one of no-referrer,",
        ),
        (
            json!({"hsts": "max-age=5"}),
            "hsts: expected false, true or {max_age_secs, include_subdomains, preload}",
        ),
        (
            json!({"hsts": {"max_age": 5}}),
            "hsts: unknown field `max_age`",
        ),
        (
            json!({"hsts": {"max_age_secs": -1}}),
            "hsts.max_age_secs: expected a whole number of seconds",
        ),
        (
            json!({"hsts": {"include_subdomains": "yes"}}),
            "hsts.include_subdomains: expected true or false",
        ),
        (
            json!({"hsts": {"max_age_secs": 86400, "preload": true}}),
            "hsts.preload: needs max_age_secs of at least 31536000 and include_subdomains: true",
        ),
        (
            json!({"hsts": {"include_subdomains": false, "preload": true}}),
            "hsts.preload: needs",
        ),
        (
            json!({"content_security_policy": "defualt-src 'self'"}),
            "content_security_policy: unknown directive `defualt-src`",
        ),
        (
            json!({"content_security_policy": "img-src *; IMG-SRC 'self'"}),
            "content_security_policy: directive `img-src` is given twice",
        ),
        (
            json!({"content_security_policy": " ; "}),
            "content_security_policy: must contain at least one directive",
        ),
        (
            json!({"content_security_policy": "default-src 'self'\r\nx: y"}),
            "content_security_policy: contains a control character",
        ),
        (
            json!({"content_security_policy": ["default-src 'self'"]}),
            "content_security_policy: expected a policy string or false",
        ),
        (
            json!({"content_security_policy": false, "content_security_policy_report_only": true}),
            "content_security_policy_report_only: needs a content_security_policy",
        ),
        (
            json!({"x_frame_options": "DENY"}),
            "unknown field `x_frame_options`",
        ),
    ];
    for (config, expected) in cases {
        let err = serde_json::from_value::<Config>(config.clone())
            .map_err(|e| e.to_string())
            .and_then(SecurityHeaders::new)
            .err()
            .unwrap_or_else(|| panic!("accepted: {config}"));
        assert!(
            err.contains(expected),
            "{config}\n  got: {err}\n  want: {expected}"
        );
    }
    // And through the runtime, as the gateway loads it.
    let err = Harness::load(
        artifact("security-headers"),
        json!({"frame_options": "ALLOWALL"}),
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("refused its config: frame_options: expected DENY, SAMEORIGIN or false"),
        "{err}"
    );
}
