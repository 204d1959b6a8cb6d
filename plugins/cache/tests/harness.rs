//! The cache plugin, loaded from its built `.wasm` in the SDK harness, plus
//! its entry encoding run natively.

use plugin_cache::entry::Entry;
use serde_json::json;
use wasmgate_plugin_sdk::harness::{
    artifact, header, request, response, Harness, Request, RequestAction, RequestContext,
    RequestExt, Response,
};

fn load(config: serde_json::Value) -> Harness {
    Harness::load(artifact("cache"), config).expect("config accepted")
}

/// One request through the plugin: the cached answer, or else what the
/// response hook made of `upstream` (its `X-Cache` value).
enum Outcome {
    Hit(Response),
    Passed(Option<String>),
}

fn exchange(plugin: &Harness, req: Request, upstream: Response) -> Outcome {
    exchange_in(plugin, RequestContext::new(), req, upstream)
}

/// As [`exchange`], for a request an earlier plugin authenticated as `consumer`.
fn exchange_as(plugin: &Harness, consumer: &str, req: Request, upstream: Response) -> Outcome {
    let ctx = RequestContext::from([("consumer".to_string(), consumer.to_string())]);
    exchange_in(plugin, ctx, req, upstream)
}

fn exchange_in(
    plugin: &Harness,
    mut ctx: RequestContext,
    req: Request,
    upstream: Response,
) -> Outcome {
    match plugin.on_request_with(req, &mut ctx).unwrap() {
        RequestAction::Respond(resp) => Outcome::Hit(resp),
        RequestAction::Continue(_) => {
            let changes = plugin.on_response_with(upstream, &mut ctx).unwrap();
            Outcome::Passed(header(&changes.headers.set, "x-cache").map(str::to_string))
        }
    }
}

fn ok(body: &str) -> Response {
    response(
        200,
        &[("content-type", "text/plain"), ("x-up", "1")],
        Some(body.as_bytes()),
    )
}

fn is_hit(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Hit(_))
}

fn x_cache(outcome: Outcome) -> String {
    match outcome {
        Outcome::Hit(_) => "HIT".into(),
        Outcome::Passed(value) => value.unwrap_or_default(),
    }
}

#[test]
fn a_miss_is_stored_and_the_next_request_is_answered_from_kv() {
    let plugin = load(json!({"ttl_seconds": 60}));
    assert!(plugin.info().wants_response && plugin.info().wants_response_body);
    assert_eq!(
        plugin.header_interest(),
        None,
        "stores every response header"
    );
    let first = exchange(&plugin, request("GET", "/items?page=2"), ok("fresh"));
    assert_eq!(x_cache(first), "MISS");
    assert_eq!(plugin.kv_entries().len(), 1);
    let Outcome::Hit(resp) = exchange(&plugin, request("GET", "/items?page=2"), ok("other")) else {
        panic!("expected a hit")
    };
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.as_deref(), Some(&b"fresh"[..]));
    assert_eq!(header(&resp.headers, "content-type"), Some("text/plain"));
    assert_eq!(header(&resp.headers, "x-up"), Some("1"));
    assert_eq!(header(&resp.headers, "x-cache"), Some("HIT"));
    assert_eq!(header(&resp.headers, "age"), Some("0"));
}

#[test]
fn the_key_is_method_host_path_query_and_vary_headers() {
    let plugin = load(json!({"ttl_seconds": 60, "vary": ["Accept-Language"]}));
    let get = |path: &str| request("GET", path).with_header("accept-language", "fr");
    assert!(!is_hit(&exchange(&plugin, get("/a?x=1"), ok("a"))));
    assert!(is_hit(&exchange(&plugin, get("/a?x=1"), ok("a"))));
    assert!(!is_hit(&exchange(&plugin, get("/a?x=2"), ok("a"))), "query");
    assert!(!is_hit(&exchange(&plugin, get("/b?x=1"), ok("a"))), "path");
    let mut other_host = get("/a?x=1");
    other_host.headers[0].1 = "other.example.com".into();
    assert!(!is_hit(&exchange(&plugin, other_host, ok("a"))), "host");
    let head = request("HEAD", "/a?x=1").with_header("accept-language", "fr");
    assert!(!is_hit(&exchange(&plugin, head, ok(""))), "method");
    let german = request("GET", "/a?x=1").with_header("accept-language", "de");
    assert!(!is_hit(&exchange(&plugin, german, ok("a"))), "vary header");
    let unrelated = get("/a?x=1").with_header("x-other", "1");
    assert!(
        is_hit(&exchange(&plugin, unrelated, ok("a"))),
        "other headers"
    );
}

#[test]
fn responses_that_forbid_storing_are_never_stored() {
    let plugin = load(json!({"ttl_seconds": 60, "vary": ["accept-language"]}));
    let cases: [(&str, &[(&str, &str)]); 9] = [
        ("no-store", &[("cache-control", "no-store")]),
        (
            "private",
            &[("cache-control", "public, max-age=60, private")],
        ),
        ("no-cache", &[("cache-control", "no-cache")]),
        ("max-age=0", &[("cache-control", "max-age=0")]),
        ("bad max-age", &[("cache-control", "max-age=soon")]),
        (
            "already old",
            &[("cache-control", "max-age=10"), ("age", "10")],
        ),
        ("set-cookie", &[("set-cookie", "session=1")]),
        ("vary *", &[("vary", "*")]),
        (
            "vary outside config",
            &[("vary", "Accept-Language, Accept-Encoding")],
        ),
    ];
    for (i, (why, headers)) in cases.into_iter().enumerate() {
        let path = format!("/case/{i}");
        let upstream = response(200, headers, Some(b"x"));
        assert_eq!(
            x_cache(exchange(&plugin, request("GET", &path), upstream)),
            "MISS"
        );
        assert!(plugin.kv_entries().is_empty(), "{why} was stored");
    }
    let allowed = response(
        200,
        &[
            ("vary", "accept-language"),
            ("cache-control", "public, max-age=5"),
        ],
        Some(b"x"),
    );
    exchange(&plugin, request("GET", "/fine"), allowed);
    assert_eq!(
        plugin.kv_entries().len(),
        1,
        "a covered Vary and public are fine"
    );
}

#[test]
fn only_configured_statuses_and_sizes_are_stored() {
    let default = load(json!({"ttl_seconds": 60, "max_body_bytes": 4}));
    let not_found = response(404, &[], Some(b"nope"));
    exchange(&default, request("GET", "/missing"), not_found.clone());
    exchange(&default, request("GET", "/big"), ok("12345"));
    assert!(default.kv_entries().is_empty());
    let with_404 = load(json!({"ttl_seconds": 60, "statuses": [200, 404]}));
    exchange(&with_404, request("GET", "/missing"), not_found);
    let Outcome::Hit(resp) = exchange(&with_404, request("GET", "/missing"), ok("")) else {
        panic!("404 should be cached")
    };
    assert_eq!(resp.status, 404);
}

#[test]
fn a_shorter_max_age_caps_the_ttl() {
    let plugin = load(json!({"ttl_seconds": 60}));
    let short = response(
        200,
        &[("cache-control", "max-age=3"), ("age", "2")],
        Some(b"x"),
    );
    exchange(&plugin, request("GET", "/short"), short);
    exchange(&plugin, request("GET", "/long"), ok("x"));
    assert_eq!(plugin.kv_entries().len(), 2);
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let left: Vec<String> = plugin.kv_entries().into_keys().collect();
    assert_eq!(left.len(), 1, "max-age 3 at age 2 lives 1 s: {left:?}");
    assert!(left[0].contains("/long"));
}

#[test]
fn age_on_a_hit_counts_time_in_the_cache_and_upstream() {
    let plugin = load(json!({"ttl_seconds": 600}));
    let aged = response(200, &[("age", "7")], Some(b"x"));
    exchange(&plugin, request("GET", "/aged"), aged);
    let (key, bytes) = plugin.kv_entries().into_iter().next().unwrap();
    let mut entry = Entry::decode(&bytes).expect("an entry");
    entry.stored_at_ms -= 5_000;
    plugin.kv_set(&key, &entry.encode());
    let Outcome::Hit(resp) = exchange(&plugin, request("GET", "/aged"), ok("")) else {
        panic!("expected a hit")
    };
    let ages: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(n, _)| n == "age")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(ages, ["12"]);
}

#[test]
fn unsafe_methods_and_credentials_bypass_the_cache() {
    let plugin = load(json!({"ttl_seconds": 60}));
    let post = exchange(&plugin, request("POST", "/x"), ok("x"));
    assert_eq!(x_cache(post), "BYPASS");
    let authed = request("GET", "/x").with_header("authorization", "Bearer t");
    assert_eq!(x_cache(exchange(&plugin, authed, ok("x"))), "BYPASS");
    assert!(plugin.kv_entries().is_empty());
    let authorized = load(json!({"ttl_seconds": 60, "cache_authorized": true}));
    let authed = || request("GET", "/x").with_header("authorization", "Bearer t");
    assert_eq!(x_cache(exchange(&authorized, authed(), ok("x"))), "MISS");
    assert!(is_hit(&exchange(&authorized, authed(), ok("x"))));
}

#[test]
fn one_consumers_entry_is_never_served_to_another_unless_shared() {
    let plugin = load(json!({"ttl_seconds": 60}));
    let get = || request("GET", "/me");
    assert_eq!(
        x_cache(exchange_as(&plugin, "alice", get(), ok("alice's"))),
        "MISS"
    );
    let Outcome::Hit(again) = exchange_as(&plugin, "alice", get(), ok("x")) else {
        panic!("alice's own entry is a hit")
    };
    assert_eq!(again.body.as_deref(), Some(&b"alice's"[..]));
    assert_eq!(
        x_cache(exchange_as(&plugin, "bob", get(), ok("bob's"))),
        "MISS"
    );
    assert_eq!(x_cache(exchange(&plugin, get(), ok("anyone's"))), "MISS");
    assert_eq!(plugin.kv_entries().len(), 3, "alice, bob, anonymous");
    let Outcome::Hit(bobs) = exchange_as(&plugin, "bob", get(), ok("x")) else {
        panic!("bob's own entry is a hit")
    };
    assert_eq!(bobs.body.as_deref(), Some(&b"bob's"[..]));

    let shared = load(json!({"ttl_seconds": 60, "shared": true}));
    assert_eq!(
        x_cache(exchange_as(&shared, "alice", get(), ok("a"))),
        "MISS"
    );
    assert!(is_hit(&exchange_as(&shared, "bob", get(), ok("b"))));
    assert!(is_hit(&exchange(&shared, get(), ok("c"))));
}

#[test]
fn cached_credentials_are_kept_apart_by_digest_unless_shared() {
    let plugin = load(json!({"ttl_seconds": 60, "cache_authorized": true}));
    let with = |token: &str| request("GET", "/x").with_header("authorization", token);
    assert_eq!(
        x_cache(exchange(&plugin, with("Bearer alice-token"), ok("a"))),
        "MISS"
    );
    assert!(is_hit(&exchange(
        &plugin,
        with("Bearer alice-token"),
        ok("a")
    )));
    assert!(!is_hit(&exchange(
        &plugin,
        with("Bearer bob-token"),
        ok("b")
    )));
    assert!(!is_hit(&exchange(&plugin, request("GET", "/x"), ok("c"))));
    let keys = plugin.kv_entries().into_keys().collect::<Vec<_>>();
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter().all(|k| !k.contains("token")),
        "credentials are digested: {keys:?}"
    );
    let shared = load(json!({"ttl_seconds": 60, "cache_authorized": true, "shared": true}));
    exchange(&shared, with("Bearer alice-token"), ok("a"));
    assert!(is_hit(&exchange(
        &shared,
        with("Bearer bob-token"),
        ok("b")
    )));
}

#[test]
fn vary_context_values_are_part_of_the_key_even_when_shared() {
    for shared in [false, true] {
        let plugin = load(json!({"ttl_seconds": 60, "vary_context": ["tenant"], "shared": shared}));
        let in_tenant =
            |tenant: &str| RequestContext::from([("tenant".to_string(), tenant.to_string())]);
        let get = || request("GET", "/t");
        exchange_in(&plugin, in_tenant("acme"), get(), ok("acme"));
        assert!(is_hit(&exchange_in(
            &plugin,
            in_tenant("acme"),
            get(),
            ok("x")
        )));
        assert!(!is_hit(&exchange_in(
            &plugin,
            in_tenant("other"),
            get(),
            ok("x")
        )));
        assert!(!is_hit(&exchange(&plugin, get(), ok("x"))), "no tenant");
    }
}

#[test]
fn an_identity_set_after_the_request_hook_is_not_stored() {
    for shared in [false, true] {
        let plugin = load(json!({"ttl_seconds": 60, "shared": shared}));
        let mut ctx = RequestContext::new();
        let RequestAction::Continue(_) = plugin
            .on_request_with(request("GET", "/me"), &mut ctx)
            .unwrap()
        else {
            panic!("a miss")
        };
        // An auth plugin after the cache in the chain: a hit would skip it.
        ctx.insert("consumer".into(), "alice".into());
        let changes = plugin.on_response_with(ok("alice's"), &mut ctx).unwrap();
        assert_eq!(header(&changes.headers.set, "x-cache"), Some("MISS"));
        assert!(plugin.kv_entries().is_empty(), "shared: {shared}");
        assert!(
            plugin
                .logs()
                .iter()
                .any(|l| l.message.contains("put auth before cache")),
            "{:?}",
            plugin.logs()
        );
        assert!(!is_hit(&exchange(&plugin, request("GET", "/me"), ok("x"))));
    }
}

#[test]
fn an_unreadable_entry_is_a_miss_and_gets_replaced() {
    let plugin = load(json!({"ttl_seconds": 60}));
    exchange(&plugin, request("GET", "/x"), ok("x"));
    let key = plugin.kv_entries().into_keys().next().unwrap();
    plugin.kv_set(&key, b"garbage");
    assert_eq!(
        x_cache(exchange(&plugin, request("GET", "/x"), ok("y"))),
        "MISS"
    );
    assert!(is_hit(&exchange(&plugin, request("GET", "/x"), ok("z"))));
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    let cases = [
        (json!({"ttl_seconds": 0}), "ttl_seconds: must be between 1"),
        (
            json!({"ttl_seconds": 60, "vary": ["a b"]}),
            "vary: `a b` is not a valid header name",
        ),
        (
            json!({"ttl_seconds": 60, "statuses": []}),
            "statuses: must list at least one status",
        ),
        (
            json!({"ttl_seconds": 60, "statuses": [200, 99]}),
            "statuses: 99 is not between 200 and 599",
        ),
        (
            json!({"ttl_seconds": 60, "max_body_bytes": 0}),
            "max_body_bytes: must be between 1",
        ),
        (
            json!({"ttl_seconds": 60, "vary_context": ["tenant", ""]}),
            "vary_context: context keys must not be empty",
        ),
        (
            json!({"ttl_seconds": 60, "shared": "yes"}),
            "invalid type: string \"yes\", expected a boolean",
        ),
        (json!({"ttl_seconds": 60, "ttl": 5}), "unknown field `ttl`"),
        (json!({}), "missing field `ttl_seconds`"),
    ];
    for (config, expected) in cases {
        let err = Harness::load(artifact("cache"), config.clone())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(expected), "{config}: {err}");
    }
}

#[test]
fn entries_round_trip_and_reject_other_bytes() {
    let entry = Entry {
        stored_at_ms: 1_700_000_000_000,
        status: 203,
        headers: vec![("a".into(), "1".into()), ("a".into(), "ü".into())],
        body: vec![0, 159, 255],
    };
    let bytes = entry.encode();
    assert_eq!(Entry::decode(&bytes), Some(entry));
    assert_eq!(Entry::decode(&bytes[..bytes.len() - 1]), None, "truncated");
    assert_eq!(
        Entry::decode(&[bytes.as_slice(), b"x"].concat()),
        None,
        "trailing"
    );
    assert_eq!(Entry::decode(b"WGC0"), None);
}

#[test]
fn entries_over_max_entry_bytes_pass_through_unstored() {
    let plugin = load(json!({"ttl_seconds": 60, "max_entry_bytes": 300}));
    let big = "x".repeat(300);
    exchange(&plugin, request("GET", "/big"), ok(&big));
    assert!(!is_hit(&exchange(
        &plugin,
        request("GET", "/big"),
        ok(&big)
    )));
    assert!(plugin.kv_entries().is_empty(), "not stored");
    exchange(&plugin, request("GET", "/small"), ok("tiny"));
    assert!(is_hit(&exchange(
        &plugin,
        request("GET", "/small"),
        ok("tiny")
    )));
    let refused = Harness::load(
        artifact("cache"),
        json!({"ttl_seconds": 60, "max_entry_bytes": 0}),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        refused.contains("max_entry_bytes: must be between 1"),
        "{refused}"
    );
}
