//! A reload keeps what it does not change: an upstream whose config is the
//! same keeps its circuit breaker, health checks and connection pool
//! through plugin reloads, config reloads and the background swap of a
//! plugin to its optimized build; a changed upstream starts afresh.

use crate::support::{
    eventually, get_client, install_plugin, plugin_tier, Backend, GatewayOptions, TestGateway,
};

/// Routes `/` to `upstream` through `probe`, with an admin listener.
fn probe_route(upstream: &str) -> String {
    format!(
        "admin: {{ address: '127.0.0.1:0' }}
routes:
  - name: r
    upstream: {upstream}
    plugins:
      - {{ name: probe, config: {{ tag: p }} }}
"
    )
}

/// Replaces `probe` with its v2 build and waits until it serves (from its
/// baseline build).
async fn reload_probe(gw: &TestGateway) {
    install_plugin(&gw.plugins_dir(), "probe-v2.wasm", "probe");
    let event = gw.next_reload_event(0).await;
    assert!(event.ok, "{}", event.message);
    assert!(event.message.contains("baseline"), "{}", event.message);
}

/// Waits until the optimized build of `probe` has replaced the baseline one.
async fn wait_for_tier_up(gw: &TestGateway) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while plugin_tier(gw, "probe").await != "optimized" {
        assert!(
            std::time::Instant::now() < deadline,
            "still on the baseline build"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tripped_breaker_stays_open_through_a_plugin_reload_and_tier_up() {
    let x = Backend::start("x").await;
    let upstreams = format!(
        "  br: {{ targets: ['{}'], circuit_breaker: {{ consecutive_failures: 2, open_ms: 600000 }} }}\n",
        x.addr
    );
    let options = GatewayOptions {
        upstreams: &upstreams,
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start_opts(&probe_route("br"), options).await;
    let client = get_client();
    let url = gw.url("/");

    x.set_status(500);
    assert_eq!(client.get(&url, &[]).await.status, 500);
    assert_eq!(client.get(&url, &[]).await.status, 500);
    assert_eq!(client.get(&url, &[]).await.json()["code"], "circuit_open");
    // x recovers: from now on only the breaker can refuse a request.
    x.set_status(200);

    reload_probe(&gw).await;
    let reply = client.get(&url, &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.json()["code"],
        "circuit_open",
        "open after the reload"
    );

    wait_for_tier_up(&gw).await;
    let reply = client.get(&url, &[]).await;
    assert_eq!(
        reply.json()["code"],
        "circuit_open",
        "open after the tier-up"
    );
    assert_eq!(x.hits(), 2, "nothing reached x while the breaker was open");
    let upstreams = client
        .get(&gw.admin_url("/admin/upstreams"), &[])
        .await
        .json();
    let br = upstreams
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "br")
        .expect("br is listed");
    assert_eq!(br["circuit_state"], "open");
}

/// An h2 upstream has its own connection pool (plain HTTP/1.1 ones share
/// the gateway's): the reload must not drop it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_upstream_connection_is_reused_across_a_reload_and_tier_up() {
    let x = Backend::start("x").await;
    let upstreams = format!("  h2: {{ targets: ['{}'], protocol: h2 }}\n", x.addr);
    let options = GatewayOptions {
        upstreams: &upstreams,
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start_opts(&probe_route("h2"), options).await;
    let client = get_client();
    let url = gw.url("/");

    assert_eq!(client.get(&url, &[]).await.status, 200);
    assert_eq!(x.connections(), 1);

    reload_probe(&gw).await;
    let reply = client.get(&url, &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("x-probe-version"),
        Some("2"),
        "the new generation served"
    );
    assert_eq!(x.connections(), 1, "the reload kept the pooled connection");

    wait_for_tier_up(&gw).await;
    assert_eq!(client.get(&url, &[]).await.status, 200);
    assert_eq!(x.connections(), 1, "the tier-up kept it too");
    assert_eq!(x.hits(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_reload_starts_a_changed_upstream_afresh_and_keeps_the_others() {
    let (x, y) = (Backend::start("x").await, Backend::start("y").await);
    // Probes every 10 minutes: each health-check task probes once when it
    // starts, so the probe counts tell how many tasks were started.
    let check = "health_check: { path: /health, interval_ms: 600000 }";
    let breaker = "circuit_breaker: { consecutive_failures: 1, open_ms: 600000 }";
    let gw = TestGateway::start_config(&format!(
        "upstreams:
  kept: {{ targets: ['{x}'], {check}, {breaker} }}
  changed: {{ targets: ['{y}'], {check}, {breaker} }}
routes:
  - name: kept
    match: {{ path_prefix: /kept }}
    upstream: kept
  - name: changed
    match: {{ path_prefix: /changed }}
    upstream: changed
",
        x = x.addr,
        y = y.addr
    ))
    .await;
    let client = get_client();
    eventually!(
        "each upstream was probed",
        x.checks() == 1 && y.checks() == 1
    );

    x.set_status(500);
    y.set_status(500);
    for path in ["/kept", "/changed"] {
        assert_eq!(client.get(&gw.url(path), &[]).await.status, 500);
        let reply = client.get(&gw.url(path), &[]).await;
        assert_eq!(reply.json()["code"], "circuit_open", "{path}");
    }
    x.set_status(200);
    y.set_status(200);

    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    let changed = original.replace(
        &format!("changed: {{ targets: ['{}'],", y.addr),
        &format!("changed: {{ targets: ['{}'], timeout_ms: 20000,", y.addr),
    );
    assert_ne!(changed, original);
    std::fs::write(gw.config_path(), &changed).unwrap();
    let event = gw.next_reload_event(0).await;
    assert!(event.ok, "{}", event.message);

    let reply = client.get(&gw.url("/changed"), &[]).await;
    assert_eq!(reply.status, 200, "the changed upstream starts closed");
    assert_eq!(y.hits(), 2);
    eventually!(
        "the changed upstream's new checks probe at once",
        y.checks() == 2
    );

    let reply = client.get(&gw.url("/kept"), &[]).await;
    assert_eq!(
        reply.json()["code"],
        "circuit_open",
        "the unchanged one stays open"
    );
    assert_eq!(x.hits(), 1);
    assert_eq!(
        x.checks(),
        1,
        "its health checks were neither restarted nor doubled"
    );
}
