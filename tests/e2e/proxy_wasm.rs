//! Unmodified Proxy-Wasm filters (`tests/proxy-wasm/`, `make proxywasm`)
//! run as chain steps through the real gateway: headers, local responses,
//! deadlines and traps, shared data with CAS, HTTP calls with pause and
//! resume, bodies, ticks, shared queues, metrics, unsupported calls, the
//! admin view and hot reload.

use crate::support::{
    built_plugin, gateway_log, get_client, install_plugin, metric_value, scrape_metrics,
    GatewayOptions, TestGateway,
};
use bytes::Bytes;
use http_body_util::Full;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every test filter, installed as `pw-<name>`.
fn filters() -> Vec<(PathBuf, &'static str)> {
    [
        ("headers", "pw-headers"),
        ("deny", "pw-deny"),
        ("hostile", "pw-hostile"),
        ("counter", "pw-counter"),
        ("auth-call", "pw-auth-call"),
        ("body-rewrite", "pw-body-rewrite"),
        ("tick", "pw-tick"),
        ("queue", "pw-queue"),
        ("metrics", "pw-metrics"),
    ]
    .into_iter()
    .map(|(file, name)| (built_plugin(&format!("proxywasm-{file}.wasm")), name))
    .collect()
}

async fn start(routes: &str, plugin_settings: &str, upstreams: &str) -> TestGateway {
    let extra = filters();
    TestGateway::start_opts(
        routes,
        GatewayOptions {
            plugin_settings,
            upstreams,
            extra_plugins: &extra,
            ..GatewayOptions::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_filter_edits_both_directions_and_reads_properties() {
    let gw = start(
        "admin: { address: '127.0.0.1:0' }\nroutes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: pw-headers, config: { request_value: v1 } }\n",
        "",
        "",
    )
    .await;
    let reply = get_client()
        .get(
            &gw.url("/pw/h?q=1"),
            &[("x-remove-me", "1"), ("x-keep", "2")],
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.upstream_header("x-pw-request").as_deref(), Some("v1"));
    assert_eq!(
        reply.upstream_header("x-pw-path").as_deref(),
        Some("/pw/h?q=1")
    );
    assert_eq!(reply.upstream_header("x-pw-method").as_deref(), Some("GET"));
    assert_eq!(
        reply.upstream_header("x-pw-plugin").as_deref(),
        Some("pw-headers")
    );
    assert_eq!(reply.upstream_header("x-keep").as_deref(), Some("2"));
    assert_eq!(reply.upstream_header("x-remove-me"), None);
    assert_eq!(reply.json()["path"], "/pw/h");
    assert_eq!(reply.json()["query"], "q=1");
    assert_eq!(reply.header("x-pw-response"), Some("yes"));
    let admin = crate::support::admin_plugin(&gw, "pw-headers").await;
    assert_eq!(admin["abi"], "proxy-wasm 0.2.1");
    assert_eq!(admin["entries"][0]["route"], "r");
}

/// Starts a gateway whose only route runs `entries` (YAML list lines) and
/// returns why it refused to start.
async fn start_fails(entries: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for (file, name) in filters() {
        std::fs::copy(file, plugins.join(format!("{name}.wasm"))).unwrap();
    }
    let config = format!("listeners:\n  - address: 127.0.0.1:0\nplugins:\n  dir: plugins\nupstreams:\n  a: {{ targets: ['127.0.0.1:9'] }}\nroutes:\n  - name: r\n    upstream: a\n    plugins:\n{entries}");
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config).unwrap();
    crate::support::capture_gateway_log();
    let error = wasmgate::start(&path).await.err().expect("refused");
    format!("{error:#}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_the_filter_refuses_fails_the_load() {
    let message = start_fails("      - { name: pw-headers, config: { wrong: 1 } }\n").await;
    assert!(message.contains("refused its configuration"), "{message}");
    assert!(
        gateway_log().contains("headers: invalid config"),
        "the filter's proxy_log reaches the gateway log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_filter_answers_401_and_403_locally_and_lets_the_right_key_through() {
    let gw = start(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: pw-deny, config: { key: s3cret } }\n",
        "",
        "",
    )
    .await;
    let client = get_client();
    let missing = client.get(&gw.url("/"), &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("ApiKey realm=\"wasmgate\"")
    );
    assert_eq!(&missing.body[..], b"missing x-api-key\n");
    let wrong = client.get(&gw.url("/"), &[("x-api-key", "nope")]).await;
    assert_eq!(wrong.status, 403);
    assert_eq!(&wrong.body[..], b"wrong x-api-key\n");
    let right = client.get(&gw.url("/"), &[("x-api-key", "s3cret")]).await;
    assert_eq!(right.status, 200);
    assert_eq!(right.json()["upstream"], "a");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looping_or_trapping_filter_is_stopped_and_handled_per_on_error() {
    let gw = start(
        "routes:\n  - name: loop-closed\n    match: { path_prefix: /loop-closed }\n    upstream: a\n    plugins:\n      - { name: pw-hostile, config: { mode: loop }, on_error: fail_closed }\n  - name: loop-open\n    match: { path_prefix: /loop-open }\n    upstream: a\n    plugins:\n      - { name: pw-hostile, config: { mode: loop }, on_error: fail_open }\n  - name: trap-closed\n    match: { path_prefix: /trap-closed }\n    upstream: a\n    plugins:\n      - { name: pw-hostile, config: { mode: trap }, on_error: fail_closed }\n  - name: trap-open\n    match: { path_prefix: /trap-open }\n    upstream: a\n    plugins:\n      - { name: pw-hostile, config: { mode: trap }, on_error: fail_open }\n",
        "  call_timeout_ms: 50\n  fault_breaker: { faults: 1000 }\n",
        "",
    )
    .await;
    let client = get_client();
    for round in 0..2 {
        let started = Instant::now();
        let closed = client.get(&gw.url("/loop-closed"), &[]).await;
        assert_eq!(closed.status, 500, "round {round}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let open = client.get(&gw.url("/loop-open"), &[]).await;
        assert_eq!(open.status, 200, "fail_open skips the filter");
        assert_eq!(client.get(&gw.url("/trap-closed"), &[]).await.status, 500);
        let open = client.get(&gw.url("/trap-open"), &[]).await;
        assert_eq!(
            open.status, 200,
            "a fresh instance after a trap, round {round}"
        );
    }
    let log = gateway_log();
    assert!(
        log.contains("exceeded its call deadline"),
        "deadline logged"
    );
    assert!(
        log.contains("hostile: trap requested"),
        "the panic message is logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn counter_filter_counts_exactly_under_concurrency_with_cas() {
    let gw = start(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: pw-counter, allow: [kv] }\n",
        "  max_concurrent_calls: 64\n",
        "",
    )
    .await;
    let url = gw.url("/");
    let requests: Vec<_> = (0..48)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get_client().get(&url, &[]).await })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, 200);
        let hits: u64 = reply.header("x-hits").expect("x-hits").parse().unwrap();
        assert!(seen.insert(hits), "{hits} seen twice");
    }
    assert_eq!(seen, (1..=48).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_data_without_the_kv_grant_is_refused_at_load() {
    let message = start_fails("      - { name: pw-counter }\n").await;
    assert!(
        message.contains("add `kv` to the `allow:` list"),
        "{message}"
    );
}

/// A fake identity provider: `Bearer good` is alice, anything else 401.
async fn idp() -> std::net::SocketAddr {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service =
                    service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                        let good = request.uri().path() == "/verify"
                            && request
                                .headers()
                                .get("authorization")
                                .is_some_and(|v| v == "Bearer good");
                        let (status, body) = if good {
                            (200, "alice\n")
                        } else {
                            (401, "no\n")
                        };
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_call_filter_pauses_for_the_idp_and_resumes_or_denies() {
    let idp = idp().await;
    let gw = start(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: pw-auth-call, config: { upstream: idp, path: /verify }, allow: ['outbound:idp'] }\n  - name: ungranted\n    match: { path_prefix: /ungranted }\n    upstream: a\n    plugins:\n      - { name: pw-auth-call, config: { upstream: idp, path: /verify } }\n",
        "",
        &format!("  idp: {{ targets: ['{idp}'] }}\n"),
    )
    .await;
    let client = get_client();
    let good = client
        .get(&gw.url("/"), &[("authorization", "Bearer good")])
        .await;
    assert_eq!(good.status, 200, "{:?}", good.body);
    assert_eq!(good.upstream_header("x-user").as_deref(), Some("alice"));
    let bad = client
        .get(&gw.url("/"), &[("authorization", "Bearer bad")])
        .await;
    assert_eq!(bad.status, 403);
    assert_eq!(&bad.body[..], b"denied by idp\n");
    let ungranted = client
        .get(&gw.url("/ungranted"), &[("authorization", "Bearer good")])
        .await;
    assert_eq!(
        ungranted.status, 503,
        "no outbound grant: the dispatch fails"
    );
    assert_eq!(&ungranted.body[..], b"idp unavailable\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_rewrite_filter_rewrites_request_and_response_bodies() {
    let gw = start(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: pw-body-rewrite }\n",
        "",
        "",
    )
    .await;
    let reply = get_client()
        .send(
            "POST",
            &gw.url("/"),
            &[("x-word", "foo")],
            b"foo and foofoo",
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(!text.contains("foo"), "{text}");
    let echoed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(echoed["body"], "bar and barbar", "request body rewritten");
    assert_eq!(
        echoed["headers"]["x-word"], "bar",
        "response body rewritten"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tick_filter_is_ticked_on_its_root_context() {
    let gw = start(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: pw-tick, config: { tick_ms: 20 }, allow: [kv] }\n",
        "",
        "",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let first: u64 = get_client()
        .get(&gw.url("/"), &[])
        .await
        .upstream_header("x-ticks")
        .expect("x-ticks")
        .parse()
        .unwrap();
    assert!(first >= 3, "ticked {first} times in 400 ms");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later: u64 = get_client()
        .get(&gw.url("/"), &[])
        .await
        .upstream_header("x-ticks")
        .unwrap()
        .parse()
        .unwrap();
    assert!(later > first, "{later} > {first}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_file_swap_under_load_loses_no_request_and_a_refused_one_is_kept_out() {
    let extra = [(built_plugin("proxywasm-headers.wasm"), "pw")];
    let gw = TestGateway::start_with_plugins(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: pw, config: { request_value: v } }\n",
        "",
        &extra,
    )
    .await;
    let url = gw.url("/");
    assert_eq!(
        get_client().get(&url, &[]).await.header("x-pw-response"),
        Some("yes")
    );

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (stop, failures, total, url) =
                (stop.clone(), failures.clone(), total.clone(), url.clone());
            tokio::spawn(async move {
                let client = get_client();
                while !stop.load(Ordering::Relaxed) {
                    match client.send("GET", &url, &[], b"").await {
                        Ok(reply) if reply.status == 200 => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    total.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // body-rewrite ignores its config; headers' `x-pw-response` goes away.
    install_plugin(&gw.plugins_dir(), "proxywasm-body-rewrite.wasm", "pw");
    let event = gw.next_reload_event(0).await;
    assert!(event.ok, "{}", event.message);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "of {}",
        total.load(Ordering::Relaxed)
    );
    assert_eq!(
        get_client().get(&url, &[]).await.header("x-pw-response"),
        None
    );

    // deny refuses `{request_value: v}`: the reload fails, body-rewrite stays.
    install_plugin(&gw.plugins_dir(), "proxywasm-deny.wasm", "pw");
    let event = gw.next_reload_event(1).await;
    assert!(!event.ok, "a refused config must not go live");
    assert_eq!(get_client().get(&url, &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gauge_and_a_counter_of_a_filter_are_scraped_from_metrics() {
    let gw = start(
        "admin: { address: '127.0.0.1:0' }\nroutes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: pw-metrics }\n",
        "",
        "",
    )
    .await;
    let client = get_client();
    let set = client.get(&gw.url("/"), &[("x-gauge-set", "40")]).await;
    assert_eq!(set.upstream_header("x-gauge").as_deref(), Some("40"));
    let added = client.get(&gw.url("/"), &[("x-gauge-add", "-15")]).await;
    assert_eq!(
        added.upstream_header("x-gauge").as_deref(),
        Some("25"),
        "proxy_get_metric reads the gauge back"
    );
    let text = scrape_metrics(&gw).await;
    let plugin = [("plugin", "pw-metrics")];
    assert_eq!(
        metric_value(&text, "wasmgate_plugin_pw_level", &plugin),
        Some(25.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE wasmgate_plugin_pw_level gauge"),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "wasmgate_plugin_pw_requests", &plugin),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enqueue_from_a_request_wakes_the_root_context_that_registered_the_queue() {
    let gw = start(
        "routes:\n  - name: r\n    upstream: a\n    plugins:\n      - { name: pw-queue, allow: [kv] }\n",
        "",
        "",
    )
    .await;
    let client = get_client();
    for i in 1..=5 {
        let reply = client.get(&gw.url(&format!("/item/{i}")), &[]).await;
        assert_eq!(reply.status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = client.get(&gw.url("/poll"), &[]).await;
        let seen: u64 = reply
            .upstream_header("x-queue-seen")
            .expect("x-queue-seen")
            .parse()
            .unwrap();
        if seen >= 5 {
            let last = reply.upstream_header("x-queue-last").expect("x-queue-last");
            assert!(
                last.starts_with("/item/") || last == "/poll",
                "the root context drained the paths: {last}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxy_on_queue_ready never drained the queue: seen {seen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_call_is_logged_once_per_plugin_and_the_filter_goes_on() {
    let extra = [(built_plugin("proxywasm-headers.wasm"), "pw-once")];
    let gw = TestGateway::start_with_plugins(
        "routes:\n  - name: one\n    match: { path_prefix: /one }\n    upstream: a\n    plugins:\n      - { name: pw-once, config: { request_value: v } }\n  - name: two\n    match: { path_prefix: /two }\n    upstream: a\n    plugins:\n      - { name: pw-once, config: { request_value: v } }\n",
        "",
        &extra,
    )
    .await;
    let client = get_client();
    for path in ["/one", "/two", "/one", "/two"] {
        let reply = client.get(&gw.url(path), &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.upstream_header("x-pw-request").as_deref(), Some("v"));
    }
    let logged = gateway_log()
        .lines()
        .filter(|l| l.contains("plugin=\"pw-once\"") && l.contains("call=\"proxy_set_property\""))
        .count();
    assert_eq!(logged, 1, "{}", gateway_log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_context_that_requeues_from_on_queue_ready_leaves_the_workers_to_requests() {
    // Two entries, two root tasks: unpaced, each would spin one of the two
    // workers for ever, and no request would be answered again.
    let extra = [(built_plugin("proxywasm-queue.wasm"), "pw-requeue")];
    let entry = "{ name: pw-requeue, allow: [kv], config_text: requeue }";
    let gw = TestGateway::start_with_plugins(
        &format!("routes:\n  - name: one\n    match: {{ path_prefix: /one }}\n    upstream: a\n    plugins: [{entry}]\n  - name: two\n    match: {{ path_prefix: /two }}\n    upstream: a\n    plugins: [{entry}]\n  - name: plain\n    match: {{ path_prefix: /plain }}\n    upstream: a\n"),
        "",
        &extra,
    )
    .await;
    let client = get_client();
    for path in ["/one", "/two"] {
        assert_eq!(client.get(&gw.url(path), &[]).await.status, 200);
    }
    for _ in 0..20 {
        let reply =
            tokio::time::timeout(Duration::from_secs(2), client.get(&gw.url("/plain"), &[]))
                .await
                .expect("a plain request is answered while the root contexts requeue");
        assert_eq!(reply.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = client.get(&gw.url("/one"), &[]).await;
    let seen: u64 = reply
        .upstream_header("x-queue-seen")
        .unwrap()
        .parse()
        .unwrap();
    assert!(seen > 10, "the requeue loop goes on, paced: seen {seen}");
}
