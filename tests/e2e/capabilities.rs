//! Host capabilities a plugin imports: the shared kv store, outbound HTTP,
//! metrics; through the gateway and through the SDK harness.

use crate::support::{built_plugin, get_client, install_plugin, TestGateway};
use serde_json::json;
use wasmgate_plugin_sdk::harness::{
    request, Harness, MetricUpdate, OutboundResponse, RequestAction,
};

#[tokio::test(flavor = "multi_thread")]
async fn kv_increments_are_exact_across_concurrent_requests() {
    let gw = TestGateway::start(
        "routes:\n  - name: r\n    upstream: a\n    plugins: [{ name: probe-caps, config: { tag: k, kv_count: hits }, allow: [kv, 'outbound:b'] }]\n",
    )
    .await;
    let url = gw.url("/");
    let replies = futures::future::join_all((0..50).map(|_| {
        let url = url.clone();
        async move { get_client().get(&url, &[]).await }
    }))
    .await;
    let mut counts: Vec<u64> = replies
        .iter()
        .map(|r| r.upstream_header("x-count").unwrap().parse().unwrap())
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        (1..=50).collect::<Vec<u64>>(),
        "every increment seen exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_calls_go_to_configured_upstreams_concurrently() {
    let gw = TestGateway::start(
        "routes:\n  - name: r\n    upstream: a\n    plugins: [{ name: probe-caps, config: { tag: o, fetch: ['b:/profile', 'dead:/x', 'nowhere:/'] }, allow: [kv, 'outbound:*'] }]\n",
    )
    .await;
    let reply = get_client().get(&gw.url("/"), &[]).await;
    let fetched = reply.upstream_header("x-fetched").unwrap();
    let parts: Vec<&str> = fetched.split(';').collect();
    assert_eq!(parts[0], "200");
    assert!(parts[1].starts_with("error: upstream `dead`"), "{fetched}");
    assert_eq!(parts[2], "error: unknown upstream `nowhere`");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbound_call_outside_the_grant_is_refused_at_run_time() {
    let gw = TestGateway::start(
        "routes:\n  - name: r\n    upstream: a\n    plugins: [{ name: probe-caps, config: { tag: o, fetch: ['b:/', 'a:/'] }, allow: [kv, 'outbound:b'] }]\n",
    )
    .await;
    let reply = get_client().get(&gw.url("/"), &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.upstream_header("x-fetched").as_deref(),
        Some(
            "200;error: capability `outbound:a` is not granted to plugin `probe-caps` on route `r`"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_importing_an_ungranted_capability_fails_to_load() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    install_plugin(&plugins, "probe-caps.wasm", "probe-caps");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "listeners: [{ address: '127.0.0.1:0' }]\nplugins: { dir: plugins }\nupstreams: { a: { targets: ['127.0.0.1:1'] } }\nroutes:\n  - name: r\n    upstream: a\n    plugins: [{ name: probe-caps, config: {}, allow: ['outbound:a'] }]\n",
    )
    .unwrap();
    let error = wasmgate::start(&config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("plugin `probe-caps` on route `r` imports the `kv` capability, which its route entry does not grant"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_on_an_outbound_call_does_not_count_against_the_plugin_deadline() {
    let gw = TestGateway::start_with(
        "routes:\n  - name: r\n    upstream: a\n    plugins: [{ name: probe-caps, config: { tag: o, fetch: ['b:/'], fetch_headers: { x-echo-delay-ms: '300' } }, allow: [kv, 'outbound:b'] }]\n",
        "  call_timeout_ms: 50\n",
    )
    .await;
    let reply = get_client().get(&gw.url("/"), &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.upstream_header("x-fetched").as_deref(), Some("200"));
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_faults_are_counted_by_plugin_and_kind() {
    let gw = TestGateway::start(
        "routes:\n  - name: r\n    upstream: a\n    plugins: [{ name: probe, config: { tag: t, fault: trap } }]\n",
    )
    .await;
    let counter = wasmgate::observe::metrics::metrics()
        .plugin_faults
        .with_label_values(&["probe", "trap"]);
    let before = counter.get();
    assert_eq!(get_client().get(&gw.url("/"), &[]).await.status, 500);
    assert!(counter.get() > before);
}

#[test]
fn the_harness_fakes_upstreams_and_captures_metrics_and_kv() {
    let plugin = Harness::load(
        built_plugin("probe-caps.wasm"),
        json!({"tag": "h", "fetch": ["users:/u/1", "other:/"], "metric": "seen", "kv_count": "n"}),
    )
    .unwrap();
    plugin.fake_upstream("users", |req| {
        assert_eq!(req.path_and_query, "/u/1");
        Ok(OutboundResponse {
            status: 201,
            headers: vec![],
            body: b"{}".to_vec(),
        })
    });
    plugin.kv_set("n", b"41");
    let RequestAction::Continue(changes) = plugin.on_request(request("GET", "/")).unwrap() else {
        panic!("expected continue")
    };
    let header = |name: &str| {
        changes
            .headers
            .set
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("x-fetched").as_deref(),
        Some("201;error: unknown upstream `other`")
    );
    assert_eq!(header("x-count").as_deref(), Some("42"));
    assert_eq!(plugin.kv_entries()["n"], b"42");
    assert_eq!(plugin.outbound_requests().len(), 2);
    assert_eq!(
        plugin.metrics(),
        vec![MetricUpdate::Counter {
            name: "seen".into(),
            value: 1,
            labels: vec![("route".into(), "test-route".into())]
        }]
    );
}
