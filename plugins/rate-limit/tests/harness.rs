//! The rate-limit plugin, loaded from its built `.wasm` in the SDK harness,
//! plus its bucket arithmetic run natively.

use plugin_rate_limit::bucket::{Bucket, Limits};
use plugin_rate_limit::config::{Config, OnKvError};
use serde_json::json;
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, response, Harness, Request, RequestAction, RequestContext,
    RequestExt, Response,
};

fn load(config: serde_json::Value) -> Harness {
    Harness::load(artifact("rate-limit"), config).expect("config accepted")
}

/// Runs the request hook; `Ok(())` when let through, `Err(answer)` otherwise.
fn send(plugin: &Harness, req: Request, ctx: &mut RequestContext) -> Result<(), Response> {
    match plugin.on_request_with(req, ctx).unwrap() {
        RequestAction::Continue(_) => Ok(()),
        RequestAction::Respond(resp) => Err(resp),
    }
}

fn from(addr: &str) -> Request {
    let mut req = request("GET", "/x");
    req.client_addr = addr.into();
    req
}

/// How many of `n` requests built by `make` get through.
fn passed(plugin: &Harness, n: usize, make: impl Fn(usize) -> Request) -> usize {
    (0..n)
        .filter(|i| send(plugin, make(*i), &mut RequestContext::new()).is_ok())
        .count()
}

#[test]
fn burst_passes_then_429_json_with_retry_after() {
    let plugin = load(json!({"rate": 1, "period": "1h", "burst": 3}));
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let mut ctx = RequestContext::new();
        send(&plugin, from("10.0.0.1:5000"), &mut ctx).expect("within the burst");
        remaining.push(ctx["rate-limit"].clone());
    }
    assert_eq!(remaining, ["3 2 3600", "3 1 7200", "3 0 10800"]);
    let resp = send(&plugin, from("10.0.0.1:5001"), &mut RequestContext::new()).unwrap_err();
    assert_eq!(resp.status, 429);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(resp.body.as_deref().unwrap()).unwrap(),
        json!({"error": "rate limit exceeded", "code": "rate_limited"})
    );
    assert_eq!(header(&resp.headers, "retry-after"), Some("3600"));
    assert_eq!(header(&resp.headers, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&resp.headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&resp.headers, "x-ratelimit-reset"), Some("10800"));
    assert_eq!(
        header(&resp.headers, "content-type"),
        Some("application/json")
    );
}

#[test]
fn response_hook_adds_the_numbers_from_the_context() {
    let plugin = load(json!({"rate": 5, "period": "1m"}));
    assert!(plugin.info().wants_response && !plugin.info().wants_response_body);
    let mut ctx = RequestContext::new();
    send(&plugin, from("10.0.0.1:5000"), &mut ctx).unwrap();
    let changes = plugin
        .on_response_with(response(200, &[], None), &mut ctx)
        .unwrap();
    let mut set = changes.headers.set;
    set.sort();
    assert_eq!(
        set,
        [
            ("x-ratelimit-limit".to_string(), "5".to_string()),
            ("x-ratelimit-remaining".into(), "4".into()),
            ("x-ratelimit-reset".into(), "12".into()),
        ]
    );
}

#[test]
fn tokens_come_back_as_time_passes() {
    let plugin = load(json!({"rate": 2, "period": "10s", "burst": 2}));
    assert_eq!(passed(&plugin, 3, |_| from("10.0.0.1:1")), 2);
    // Rewind the stored bucket by 5 s: one token (2 per 10 s) drips back in.
    let entries = plugin.kv_entries();
    let (key, bytes) = entries.iter().next().expect("one bucket stored");
    let mut bucket = Bucket::decode(bytes).expect("a bucket");
    assert!(
        bucket.micro_tokens < 1_000_000,
        "less than a token left (a millisecond may have dripped some in)"
    );
    bucket.at_ms -= 5_000;
    plugin.kv_set(key, &bucket.encode());
    assert_eq!(passed(&plugin, 3, |_| from("10.0.0.1:1")), 1);
}

#[test]
fn a_corrupt_stored_bucket_is_replaced_by_a_full_one() {
    let plugin = load(json!({"rate": 1, "period": "1h", "burst": 2}));
    assert_eq!(passed(&plugin, 1, |_| from("10.0.0.1:1")), 1);
    let key = plugin.kv_entries().into_keys().next().unwrap();
    plugin.kv_set(&key, b"not a bucket");
    assert_eq!(passed(&plugin, 3, |_| from("10.0.0.1:1")), 2);
}

#[test]
fn buckets_are_per_ip_by_default_v4_and_v6() {
    let plugin = load(json!({"rate": 1, "period": "1h"}));
    let addrs = ["10.0.0.1:1", "10.0.0.1:2", "10.0.0.2:1", "[2001:db8::1]:1"];
    assert_eq!(passed(&plugin, 4, |i| from(addrs[i])), 3, "ports share");
}

#[test]
fn header_keys_fall_back_to_the_ip_when_missing() {
    let plugin =
        load(json!({"rate": 1, "period": "1h", "key": {"source": "header", "name": "X-Tenant"}}));
    let tenant = |t: &str| from("10.0.0.1:1").with_header("x-tenant", t);
    assert_eq!(passed(&plugin, 3, |_| tenant("acme")), 1);
    assert_eq!(passed(&plugin, 1, |_| tenant("globex")), 1);
    assert_eq!(passed(&plugin, 2, |_| from("10.0.0.1:1")), 1);
    assert_eq!(passed(&plugin, 1, |_| from("10.0.0.9:1")), 1);
}

#[test]
fn reads_only_the_key_header() {
    let by_header = load(json!({"rate": 1, "key": {"source": "header", "name": "X-Tenant"}}));
    assert_eq!(
        by_header.header_interest(),
        Some(&["x-tenant".to_string()][..])
    );
    let by_ip = load(json!({"rate": 1}));
    assert_eq!(by_ip.header_interest(), Some(&[][..]));
}

#[test]
fn context_keys_use_what_an_earlier_plugin_set() {
    let plugin =
        load(json!({"rate": 2, "period": "1h", "key": {"source": "context", "name": "consumer"}}));
    let as_consumer = |who: &str| {
        let mut ctx = RequestContext::new();
        ctx.insert("consumer".into(), who.into());
        (0..3)
            .filter(|_| send(&plugin, from("10.0.0.1:1"), &mut ctx.clone()).is_ok())
            .count()
    };
    assert_eq!(as_consumer("alice"), 2);
    assert_eq!(as_consumer("bob"), 2);
    assert_eq!(as_consumer("alice"), 0);
}

#[test]
fn route_keys_share_one_bucket_across_clients() {
    let plugin = load(json!({"rate": 2, "period": "1h", "key": {"source": "route"}}));
    assert_eq!(passed(&plugin, 4, |i| from(&format!("10.0.0.{i}:1"))), 2);
}

#[test]
fn the_entry_with_fewest_tokens_left_sets_the_headers() {
    // (this entry's config, what an earlier entry left, what the response hook gets)
    let cases = [
        (json!({"rate": 100, "period": "1h"}), "5 3 60", "5 3 60"),
        (json!({"rate": 2, "period": "1h"}), "100 50 60", "2 1 1800"),
    ];
    for (config, earlier, expected) in cases {
        let plugin = load(config);
        let mut ctx = RequestContext::new();
        ctx.insert("rate-limit".into(), earlier.into());
        send(&plugin, from("10.0.0.1:1"), &mut ctx).unwrap();
        assert_eq!(ctx["rate-limit"], expected, "after {earlier}");
    }
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let cases = [
        (json!({"rate": 0}), "rate: must be between 1"),
        (json!({"rate": 1, "burst": 0}), "burst: must be between 1"),
        (
            json!({"rate": 1, "period": "soon"}),
            "period: `soon` is not a duration",
        ),
        (
            json!({"rate": 1, "period": "s"}),
            "period: `s` does not start with a whole number",
        ),
        (
            json!({"rate": 1, "period": "0s"}),
            "period: `0s` must be between 1ms and 365d",
        ),
        (
            json!({"rate": 1, "period": "400d"}),
            "period: `400d` must be between",
        ),
        (
            json!({"rate": 1, "key": {"source": "header", "name": "bad name"}}),
            "key.name: `bad name` is not a valid header name",
        ),
        (
            json!({"rate": 1, "key": {"source": "context", "name": ""}}),
            "key.name: must not be empty",
        ),
        (
            json!({"rate": 1, "key": {"source": "cookie"}}),
            "unknown variant `cookie`",
        ),
        (json!({"rate": 1, "per": "1s"}), "unknown field `per`"),
        (
            json!({"rate": 1, "on_kv_error": "retry"}),
            "unknown variant `retry`",
        ),
        (
            json!({"rate": 1, "on_kv_error": "deny", "fault_tolerant": false}),
            "fault_tolerant: replaced by on_kv_error",
        ),
        (json!({"period": "1s"}), "missing field `rate`"),
    ];
    for (config, expected) in cases {
        let err = Harness::load(artifact("rate-limit"), config.clone())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(expected), "{config}: {err}");
    }
}

#[test]
fn refill_arithmetic_is_exact_and_capped() {
    let limits = Limits {
        rate: 10,
        period_ms: 1_000,
        burst: 2,
    };
    let empty = Bucket {
        micro_tokens: 0,
        at_ms: 1_000,
    };
    let early = limits.take(Some(empty), 1_099);
    assert!(!early.allowed);
    assert_eq!(early.retry_after_secs, 1);
    let on_time = limits.take(Some(empty), 1_100);
    assert!(on_time.allowed);
    assert_eq!(on_time.next.micro_tokens, 0);
    let much_later = limits.take(Some(empty), 1_000_000);
    assert_eq!((much_later.remaining, much_later.reset_secs), (1, 1));
    let backwards = limits.take(Some(empty), 500);
    assert!(
        !backwards.allowed,
        "a clock read behind the bucket adds nothing"
    );
    assert_eq!(limits.ttl_ms(), 1_200);
    assert_eq!(Bucket::decode(&empty.encode()), Some(empty));
    assert_eq!(Bucket::decode(b"short"), None);
}

#[test]
fn cases_yaml_passes() {
    wasmgate_plugin_sdk::harness::assert_cases(
        artifact("rate-limit"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/cases.yaml"),
    );
}

#[test]
fn on_kv_error_defaults_to_allow_and_reads_the_old_spelling() {
    let policy = |config: serde_json::Value| {
        serde_json::from_value::<Config>(config)
            .unwrap()
            .kv_error_policy()
    };
    assert_eq!(policy(json!({"rate": 1})), Ok(OnKvError::Allow));
    assert_eq!(
        policy(json!({"rate": 1, "on_kv_error": "deny"})),
        Ok(OnKvError::Deny)
    );
    assert_eq!(
        policy(json!({"rate": 1, "fault_tolerant": false})),
        Ok(OnKvError::Deny)
    );
    assert_eq!(
        policy(json!({"rate": 1, "fault_tolerant": true})),
        Ok(OnKvError::Allow)
    );
    for config in [
        json!({"rate": 1, "on_kv_error": "allow"}),
        json!({"rate": 1, "on_kv_error": "deny"}),
    ] {
        load(config);
    }
}
