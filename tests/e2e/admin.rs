//! The admin listener: health, metrics, routes and plugin status.

use crate::support::{get_client, TestGateway};

const CONFIG: &str = "admin: { address: '127.0.0.1:0' }
routes:
  - name: r
    match: { path_prefix: / }
    upstream: a
    plugins: [{ name: probe, config: { tag: p, fault: trap, fault_when_header: x-boom } }]
";

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_routes_and_plugin_status() {
    let gw = TestGateway::start(CONFIG).await;
    let admin = format!(
        "http://{}",
        gw.gateway.admin_address.expect("admin listener bound")
    );
    let client = get_client();

    assert_eq!(
        client.get(&format!("{admin}/healthz"), &[]).await.json()["status"],
        "ok"
    );
    assert_eq!(
        client.get(&format!("{admin}/readyz"), &[]).await.json()["status"],
        "ready"
    );

    assert_eq!(
        client.get(&gw.url("/"), &[("x-boom", "1")]).await.status,
        500
    );
    let metrics = client.get(&format!("{admin}/metrics"), &[]).await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("wasmgate_plugin_faults_total{kind=\"trap\",plugin=\"probe\"}"),
        "{text}"
    );

    let routes = client
        .get(&format!("{admin}/admin/routes"), &[])
        .await
        .json();
    assert_eq!(routes[0]["name"], "r");
    assert_eq!(routes[0]["plugins"][0]["name"], "probe");

    let plugins = client
        .get(&format!("{admin}/admin/plugins"), &[])
        .await
        .json();
    assert_eq!(plugins[0]["name"], "probe");
    assert_eq!(plugins[0]["contract_version"], "0.1.0");
    assert!(plugins[0]["last_reload_error"].is_null());
    assert_eq!(plugins[0]["content_hash"].as_str().unwrap().len(), 16);

    let file = gw.plugins_dir().join("probe.wasm");
    std::fs::write(gw.plugins_dir().join(".tmp"), b"garbage").unwrap();
    std::fs::rename(gw.plugins_dir().join(".tmp"), &file).unwrap();
    assert!(!gw.next_reload_event(0).await.ok);
    let plugins = client
        .get(&format!("{admin}/admin/plugins"), &[])
        .await
        .json();
    let error = plugins[0]["last_reload_error"]
        .as_str()
        .expect("the failed reload is reported");
    assert!(error.contains("not a valid Wasm component"), "{error}");

    assert_eq!(
        client
            .send("POST", &format!("{admin}/healthz"), &[], b"")
            .await
            .unwrap()
            .status,
        405
    );
}
