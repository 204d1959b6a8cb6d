//! A plugin fault is that request's problem, never the gateway's.

use crate::support::{get_client, TestGateway};
use std::time::{Duration, Instant};

const FAULTY: &str = "
routes:
  - name: trap
    match: { path: /trap }
    upstream: a
    plugins: [{ name: probe, config: { tag: t, fault: trap, fault_when_header: x-boom } }]
  - name: loop
    match: { path: /loop }
    upstream: a
    plugins: [{ name: probe, config: { tag: l, fault: loop, fault_when_header: x-boom } }]
  - name: oom
    match: { path: /oom }
    upstream: a
    plugins: [{ name: probe, config: { tag: o, fault: oom, fault_when_header: x-boom } }]
  - name: open
    match: { path: /open }
    upstream: a
    plugins:
      - { name: probe, on_error: fail_open, config: { tag: broken, fault: trap } }
      - { name: probe, config: { tag: after } }
  - name: healthy
    match: { path: /healthy }
    upstream: b
";

async fn gateway() -> TestGateway {
    TestGateway::start_with(FAULTY, "  call_timeout_ms: 50\n  memory_limit_mb: 16\n").await
}

#[tokio::test(flavor = "multi_thread")]
async fn trap_fails_only_that_request() {
    let gw = gateway().await;
    let client = get_client();
    for _ in 0..3 {
        let boom = client.get(&gw.url("/trap"), &[("x-boom", "1")]).await;
        assert_eq!(boom.status, 500);
        assert_eq!(boom.json()["code"], "plugin_error");
        assert!(
            boom.json()["error"].as_str().unwrap().contains("(trap)"),
            "{:?}",
            boom.json()
        );
        // The trapped instance was thrown away; a fresh one serves the next request.
        assert_eq!(client.get(&gw.url("/trap"), &[]).await.status, 200);
        assert_eq!(client.get(&gw.url("/healthy"), &[]).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_hits_the_deadline_and_the_gateway_goes_on() {
    let gw = gateway().await;
    let client = get_client();
    let started = Instant::now();
    let stuck = client.get(&gw.url("/loop"), &[("x-boom", "1")]).await;
    assert_eq!(stuck.status, 500);
    assert!(
        stuck.json()["error"]
            .as_str()
            .unwrap()
            .contains("(deadline)"),
        "{:?}",
        stuck.json()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "interrupted at the 50 ms deadline"
    );
    // Meanwhile and afterwards everything else is served.
    let (loop_url, healthy_url) = (gw.url("/loop"), gw.url("/healthy"));
    let (a, b) = tokio::join!(
        client.get(&loop_url, &[("x-boom", "1")]),
        client.get(&healthy_url, &[])
    );
    assert_eq!((a.status, b.status), (500, 200));
    assert_eq!(client.get(&gw.url("/loop"), &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_cap_breach_fails_the_request_not_the_gateway() {
    let gw = gateway().await;
    let client = get_client();
    let hog = client.get(&gw.url("/oom"), &[("x-boom", "1")]).await;
    assert_eq!(hog.status, 500);
    assert!(
        hog.json()["error"].as_str().unwrap().contains("(memory)"),
        "{:?}",
        hog.json()
    );
    assert_eq!(client.get(&gw.url("/oom"), &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_open_skips_the_faulty_plugin() {
    let gw = gateway().await;
    let reply = get_client().get(&gw.url("/open"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.upstream_header("x-chain").as_deref(), Some("after"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_the_plugin_refuses_stops_start_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    crate::support::install_plugin(&plugins, "api-key.wasm", "api-key");
    let config = dir.path().join("gw.yaml");
    std::fs::write(
        &config,
        "listeners: [{ address: '127.0.0.1:0' }]\nplugins: { dir: plugins }\nupstreams: { a: { targets: ['127.0.0.1:1'] } }\nroutes:\n  - name: secure\n    upstream: a\n    plugins: [{ name: api-key, config: { keys: [] } }]\n",
    )
    .unwrap();
    let err = wasmgate::start(&config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("plugin `api-key` on route `secure` refused its config"),
        "{err}"
    );
    assert!(err.contains("`keys` must list at least one key"), "{err}");
}
