//! The aggregate plugin through the running gateway: real echo upstreams
//! called concurrently and merged, optional and required failures, and the
//! per-call timeout.

use crate::support::{get_client, TestGateway};
use serde_json::json;
use std::time::{Duration, Instant};

/// The plugin call deadline covers the outbound calls it waits for, so
/// routes with slow calls raise it above the slowest call's timeout.
const CALL_DEADLINE: &str = "  call_timeout_ms: 3000";

/// A route named `r` on the dead upstream (so any answer is the plugin's)
/// with these aggregate calls.
fn route(calls: &str) -> String {
    format!(
        "routes:\n  - name: r\n    upstream: dead\n    plugins:\n      - {{ name: probe, config: {{ tag: auth, ctx_set: {{ sub: alice }} }} }}\n      - name: aggregate\n        allow: ['outbound:*']\n        config:\n          calls:\n{calls}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_upstreams_are_composed_into_one_json_answer() {
    let gw = TestGateway::start(&route(
        "            - { name: user, upstream: a, path: \"/users/${ctx.sub}?${query}\", forward_headers: [x-trace] }
            - { name: orders, upstream: b, path: /orders }
",
    ))
    .await;
    let reply = get_client()
        .get(
            &gw.url("/dashboard?page=2"),
            &[("x-trace", "t-1"), ("x-secret", "s")],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["user"]["upstream"], "a");
    assert_eq!(body["user"]["path"], "/users/alice");
    assert_eq!(body["user"]["query"], "page=2");
    assert_eq!(body["user"]["headers"]["x-trace"], "t-1");
    assert_eq!(
        body["user"]["headers"].get("x-secret"),
        None,
        "not forwarded"
    );
    assert_eq!(body["orders"]["upstream"], "b");
    assert_eq!(body["orders"]["path"], "/orders");
    assert_eq!(body.as_object().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_optional_call_is_omitted_or_defaulted_and_a_dead_required_one_is_502() {
    let gw = TestGateway::start(&route(
        "            - { name: user, upstream: a, path: /u }
            - { name: ads, upstream: dead, path: /ads, policy: optional }
            - { name: news, upstream: dead, path: /news, policy: optional, default: { items: [] } }
",
    ))
    .await;
    let reply = get_client().get(&gw.url("/"), &[]).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["user"]["path"], "/u");
    assert_eq!(body.get("ads"), None);
    assert_eq!(body["news"], json!({"items": []}));

    let gw = TestGateway::start(&route(
        "            - { name: user, upstream: a, path: /u }
            - { name: billing, upstream: dead, path: /b }
",
    ))
    .await;
    let reply = get_client().get(&gw.url("/"), &[]).await;
    assert_eq!(reply.status, 502);
    let body = reply.json();
    assert_eq!(body["code"], "upstream_failed");
    assert_eq!(body["call"], "billing");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("call `billing` failed: upstream `dead`"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_call_hits_its_own_timeout_while_the_others_answer() {
    let gw = TestGateway::start_with(
        &route(
            "            - { name: fast, upstream: b, path: /f }
            - { name: lagging, upstream: a, path: /l, headers: { x-echo-delay-ms: \"2000\" }, timeout_ms: 200, policy: optional, default: late }
",
        ),
        CALL_DEADLINE,
    )
    .await;
    let started = Instant::now();
    let reply = get_client().get(&gw.url("/"), &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["fast"]["upstream"], "b");
    assert_eq!(reply.json()["lagging"], "late");
    assert!(
        elapsed < Duration::from_millis(1500),
        "answered after the 200 ms call timeout, not the 2 s delay: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_call_past_the_slow_upstreams_timeout_is_502() {
    let gw = TestGateway::start_with(
        &route(
            "            - { name: fast, upstream: b, path: /f }
            - { name: report, upstream: slow, path: /r, headers: { x-echo-delay-ms: \"1000\" } }
",
        ),
        CALL_DEADLINE,
    )
    .await;
    let reply = get_client().get(&gw.url("/"), &[]).await;
    assert_eq!(reply.status, 502);
    let body = reply.json();
    assert_eq!(body["call"], "report");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("did not answer within 300ms"), "{error}");
}
