//! The hmac-signature plugin, loaded from its built `.wasm` in the SDK
//! harness, fed requests signed here with `hmac` + `sha2`.

use hmac::{Hmac, Mac};
use plugin_hmac_signature::{Config, HmacSignature};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, Harness, Request, RequestAction, RequestContext, RequestExt,
    Response,
};
use wasmgate_plugin_sdk::Plugin;

const SECRET_A: &str = "test-only-secret-of-partner-a-0123456789";
const SECRET_B: &str = "test-only-secret-of-partner-b-0123456789";

fn load(extra: Value) -> Harness {
    let mut config = json!({"keys": [
        {"id": "partner-a", "secret": SECRET_A, "consumer": "acme"},
        {"id": "partner-b", "secret": SECRET_B}
    ]});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    Harness::load(artifact("hmac-signature"), config).expect("config accepted")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The documented scheme, written out independently of the plugin.
fn sign(secret: &str, method: &str, path_and_query: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{method}\n{path_and_query}\n{ts}\n").as_bytes());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A request signed by `key_id` with `secret`, at `ts`.
fn signed(
    key_id: &str,
    secret: &str,
    method: &str,
    path_and_query: &str,
    ts: i64,
    body: &[u8],
) -> Request {
    let ts = ts.to_string();
    let sig = sign(secret, method, path_and_query, &ts, body);
    let req = request(method, path_and_query)
        .with_header("x-signature", &format!("keyId={key_id},ts={ts},sig={sig}"));
    if body.is_empty() {
        req
    } else {
        req.with_body(body)
    }
}

fn refused(plugin: &Harness, req: Request) -> Response {
    match plugin.on_request(req).unwrap() {
        RequestAction::Respond(response) => response,
        RequestAction::Continue(_) => panic!("expected a refusal"),
    }
}

/// Asserts a 401 with `code` and `message` and the challenge.
fn assert_refused(response: &Response, code: &str, message: &str) {
    assert_eq!(response.status, 401);
    let body: Value = serde_json::from_slice(response.body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"error": message, "code": code}));
    assert_eq!(
        header(&response.headers, "www-authenticate"),
        Some("HMAC-SHA256 header=\"x-signature\"")
    );
    assert_eq!(
        header(&response.headers, "content-type"),
        Some("application/json")
    );
}

#[test]
fn signed_requests_pass_and_name_the_consumer() {
    let plugin = load(json!({"consumer_header": "X-Consumer"}));
    assert!(plugin.info().wants_request_body, "the body is signed");
    assert_eq!(
        plugin.header_interest(),
        Some(&["x-signature".to_string()][..])
    );
    let body = br#"{"amount": 42}"#;
    let mut ctx = RequestContext::new();
    let req = signed("partner-a", SECRET_A, "POST", "/orders?dry=1", now(), body)
        .with_header("x-consumer", "mallory");
    let RequestAction::Continue(changes) = plugin.on_request_with(req, &mut ctx).unwrap() else {
        panic!("expected continue")
    };
    assert_eq!(ctx.get("consumer").map(String::as_str), Some("acme"));
    assert_eq!(changes.headers.remove, vec!["x-consumer"]);
    assert_eq!(
        changes.headers.set,
        vec![("x-consumer".to_string(), "acme".to_string())]
    );

    // No body, the key id as the consumer, hex in upper case, spaces after commas.
    let ts = now().to_string();
    let sig = sign(SECRET_B, "GET", "/orders", &ts, b"").to_uppercase();
    let req = request("GET", "/orders").with_header(
        "x-signature",
        &format!("sig={sig}, keyId=partner-b, ts={ts}"),
    );
    let mut ctx = RequestContext::new();
    assert!(matches!(
        plugin.on_request_with(req, &mut ctx).unwrap(),
        RequestAction::Continue(_)
    ));
    assert_eq!(ctx.get("consumer").map(String::as_str), Some("partner-b"));
}

#[test]
fn missing_signature_is_refused() {
    let plugin = load(json!({}));
    assert_refused(
        &refused(&plugin, request("GET", "/")),
        "signature_missing",
        "missing x-signature header",
    );
    assert!(plugin.logs().is_empty(), "a missing signature is routine");
}

#[test]
fn malformed_headers_are_refused_with_what_is_wrong() {
    let plugin = load(json!({}));
    let sig = "ab".repeat(32);
    let ts = now();
    let cases = [
        ("garbage".to_string(), "expected name=value pairs"),
        (format!("keyId=partner-a,ts={ts}"), "missing sig"),
        (format!("keyId=partner-a,sig={sig}"), "missing ts"),
        (format!("ts={ts},sig={sig}"), "missing keyId"),
        (format!("keyId=,ts={ts},sig={sig}"), "missing keyId"),
        (
            format!("keyId=partner-a,ts=yesterday,sig={sig}"),
            "ts is not a Unix time in seconds",
        ),
        (
            format!("keyId=partner-a,ts={ts},sig=abc"),
            "sig is not 64 hex digits",
        ),
        (
            format!("keyId=partner-a,ts={ts},sig={}", "zz".repeat(32)),
            "sig is not 64 hex digits",
        ),
        (
            format!("keyId=partner-a,ts={ts},ts={ts},sig={sig}"),
            "a parameter is given twice",
        ),
        (
            format!("keyId=partner-a,ts={ts},sig={sig},alg=sha1"),
            "unknown parameter (expected keyId, ts, sig)",
        ),
    ];
    for (value, why) in cases {
        let response = refused(
            &plugin,
            request("GET", "/").with_header("x-signature", &value),
        );
        assert_refused(
            &response,
            "signature_malformed",
            &format!("malformed x-signature header: {why}"),
        );
    }
}

#[test]
fn unknown_key_id_is_refused() {
    let plugin = load(json!({}));
    let response = refused(
        &plugin,
        signed("partner-z", SECRET_A, "GET", "/", now(), b""),
    );
    assert_refused(&response, "unknown_key", "unknown signing key id");
    assert_eq!(plugin.logs()[0].message, "refused a signed request");
}

#[test]
fn timestamps_outside_the_window_are_refused_both_ways() {
    let plugin = load(json!({"max_skew_secs": 60}));
    let stale = "timestamp is more than 60 seconds from the gateway's clock";
    for ts in [now() - 120, now() + 120] {
        let response = refused(&plugin, signed("partner-a", SECRET_A, "GET", "/", ts, b""));
        assert_refused(&response, "stale_timestamp", stale);
    }
    for ts in [now() - 30, now() + 30] {
        let action = plugin
            .on_request(signed("partner-a", SECRET_A, "GET", "/", ts, b""))
            .unwrap();
        assert!(matches!(action, RequestAction::Continue(_)));
    }
}

#[test]
fn any_change_to_the_signed_request_breaks_the_signature() {
    let plugin = load(json!({}));
    let ts = now();
    let sig = sign(
        SECRET_A,
        "POST",
        "/orders?dry=1",
        &ts.to_string(),
        b"amount=1",
    );
    let header = format!("keyId=partner-a,ts={ts},sig={sig}");
    let with = |method: &str, target: &str, body: &[u8]| {
        request(method, target)
            .with_header("x-signature", &header)
            .with_body(body)
    };
    assert!(matches!(
        plugin
            .on_request(with("POST", "/orders?dry=1", b"amount=1"))
            .unwrap(),
        RequestAction::Continue(_)
    ));
    let tampered = [
        with("PUT", "/orders?dry=1", b"amount=1"),
        with("POST", "/orders/2?dry=1", b"amount=1"),
        with("POST", "/orders?dry=0", b"amount=1"),
        with("POST", "/orders", b"amount=1"),
        with("POST", "/orders?dry=1", b"amount=1000"),
        request("POST", "/orders?dry=1").with_header(
            "x-signature",
            &format!("keyId=partner-a,ts={},sig={sig}", ts + 1),
        ),
        signed(
            "partner-a",
            SECRET_B,
            "POST",
            "/orders?dry=1",
            ts,
            b"amount=1",
        ),
        signed(
            "partner-b",
            SECRET_A,
            "POST",
            "/orders?dry=1",
            ts,
            b"amount=1",
        ),
    ];
    for req in tampered {
        let response = refused(&plugin, req);
        assert_refused(
            &response,
            "bad_signature",
            "signature does not match the request",
        );
    }
}

#[test]
fn replays_are_refused_when_asked() {
    let plugin = load(json!({"reject_replays": true}));
    let req = signed("partner-a", SECRET_A, "POST", "/pay", now(), b"amount=5");
    assert!(matches!(
        plugin.on_request(req.clone()).unwrap(),
        RequestAction::Continue(_)
    ));
    assert_eq!(plugin.kv_entries().len(), 1, "the signature is remembered");
    assert!(plugin.kv_entries().keys().all(|k| k.starts_with("seen/")));
    assert_refused(
        &refused(&plugin, req),
        "replayed",
        "signature was already used",
    );

    // Without the option, the window alone limits replays.
    let lenient = load(json!({}));
    let req = signed("partner-a", SECRET_A, "POST", "/pay", now(), b"amount=5");
    for _ in 0..2 {
        assert!(matches!(
            lenient.on_request(req.clone()).unwrap(),
            RequestAction::Continue(_)
        ));
    }
    assert!(lenient.kv_entries().is_empty());
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let key = json!({"id": "a", "secret": SECRET_A});
    let cases = [
        (json!({"keys": []}), "keys: must list at least one key"),
        (
            json!({"keys": [{"id": "", "secret": SECRET_A}]}),
            "keys[0].id: must be non-empty, without `,`, `=` or spaces",
        ),
        (
            json!({"keys": [{"id": "a,b", "secret": SECRET_A}]}),
            "keys[0].id: must be non-empty",
        ),
        (
            json!({"keys": [{"id": "a", "secret": "short"}]}),
            "keys[0].secret: must be at least 32 bytes",
        ),
        (
            json!({"keys": [key, {"id": "a", "secret": SECRET_B}]}),
            "keys[1].id: is listed twice",
        ),
        (
            json!({"keys": [{"id": "a", "secret": SECRET_A, "consumer": ""}]}),
            "keys[0].consumer: must not be empty",
        ),
        (
            json!({"keys": [key], "header": "x sig"}),
            "header: `x sig` is not a valid header name",
        ),
        (
            json!({"keys": [key], "consumer_header": ""}),
            "consumer_header: `` is not a valid header name",
        ),
        (
            json!({"keys": [key], "max_skew_secs": 0}),
            "max_skew_secs: must be between 1 and 86400",
        ),
        (
            json!({"keys": [key], "max_skew_secs": 86401}),
            "max_skew_secs: must be between 1 and 86400",
        ),
        (
            json!({"keys": [key], "window": 5}),
            "unknown field `window`",
        ),
        (json!({"keys": [{"id": "a"}]}), "missing field `secret`"),
    ];
    for (config, expected) in cases {
        let err = serde_json::from_value::<Config>(config.clone())
            .map_err(|e| e.to_string())
            .and_then(HmacSignature::new)
            .err()
            .unwrap_or_else(|| panic!("accepted: {config}"));
        assert!(
            err.contains(expected),
            "{config}\n  got: {err}\n  want: {expected}"
        );
    }
    // And through the runtime, as the gateway loads it.
    let err = Harness::load(
        artifact("hmac-signature"),
        json!({"keys": [{"id": "a", "secret": "short"}]}),
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("refused its config: keys[0].secret: must be at least 32 bytes"),
        "{err}"
    );
}

/// Cost of a passing request with a 1 KiB body, through the real runtime:
/// printed, not asserted. Run with `--nocapture` to see it.
#[test]
fn cost_per_signed_request() {
    let plugin = load(json!({}));
    let body = vec![b'x'; 1024];
    let req = signed("partner-a", SECRET_A, "POST", "/orders", now(), &body);
    const N: u32 = 1000;
    let start = std::time::Instant::now();
    for _ in 0..N {
        let action = plugin.on_request(req.clone()).unwrap();
        assert!(matches!(action, RequestAction::Continue(_)));
    }
    println!(
        "hmac-signature: {:?} per on_request with a 1 KiB body (mean of {N})",
        start.elapsed() / N
    );
}
