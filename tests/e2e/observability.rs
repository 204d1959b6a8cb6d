//! Observability over real sockets: the admin listener's `/metrics` after
//! traffic, the `traceparent` the upstream sees, and the Grafana dashboard's
//! queries against a real gateway's metric names.

use crate::support::{
    built_plugin, echo_upstream, get_client, metric_value, scrape_metrics, TestGateway,
};
use std::collections::BTreeSet;
use std::path::Path;

/// Routes, an upstream and a plugin name no other test uses, so the
/// process-wide counters can be asserted exactly.
async fn gateway(prefix: &str) -> (TestGateway, tokio::task::JoinHandle<()>) {
    let (upstream, task) = echo_upstream(prefix).await;
    let config = format!(
        "  {prefix}-up: {{ targets: ['{upstream}'] }}
admin: {{ address: '127.0.0.1:0' }}
routes:
  - name: {prefix}-pass
    match: {{ path: /pass }}
    upstream: {prefix}-up
    plugins: [{{ name: {prefix}-probe, config: {{ tag: t, fault: trap, fault_when_header: x-boom }} }}]
  - name: {prefix}-deny
    match: {{ path: /deny }}
    upstream: {prefix}-up
    plugins: [{{ name: {prefix}-probe, config: {{ respond: 403 }} }}]
  - name: {prefix}-plain
    match: {{ path_prefix: /plain }}
    upstream: {prefix}-up
"
    );
    let probe = built_plugin("probe.wasm");
    let name = format!("{prefix}-probe");
    let gw = TestGateway::start_with_plugins(&config, "", &[(probe, name.as_str())]).await;
    (gw, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_and_time_upstreams_and_plugins() {
    let (gw, _upstream) = gateway("obs").await;
    let client = get_client();
    for _ in 0..3 {
        assert_eq!(client.get(&gw.url("/pass"), &[]).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(client.get(&gw.url("/deny"), &[]).await.status, 403);
    }
    let failing = client
        .get(&gw.url("/plain/x"), &[("x-echo-status", "503")])
        .await;
    assert_eq!(failing.status, 503);
    assert_eq!(
        client
            .get(&gw.url("/pass"), &[("x-boom", "1")])
            .await
            .status,
        500
    );

    let text = scrape_metrics(&gw).await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        metric_value(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}:\n{text}"))
    };
    let requests = "wasmgate_requests_total";
    assert_eq!(
        value(requests, &[("route", "obs-pass"), ("status_class", "2xx")]),
        3.0
    );
    assert_eq!(
        value(requests, &[("route", "obs-pass"), ("status_class", "5xx")]),
        1.0
    );
    assert_eq!(
        value(requests, &[("route", "obs-deny"), ("status_class", "4xx")]),
        2.0
    );
    assert_eq!(
        value(requests, &[("route", "obs-plain"), ("status_class", "5xx")]),
        1.0
    );
    assert_eq!(
        value(
            "wasmgate_request_duration_seconds_count",
            &[("route", "obs-pass")]
        ),
        4.0
    );
    assert_eq!(
        value(
            "wasmgate_upstream_duration_seconds_count",
            &[("upstream", "obs-up")]
        ),
        4.0,
        "3 passed + 1 plain; denied and faulted requests never reach it"
    );
    let calls = "wasmgate_plugin_call_duration_seconds_count";
    assert_eq!(
        value(calls, &[("plugin", "obs-probe"), ("phase", "request")]),
        6.0
    );
    assert_eq!(
        value(calls, &[("plugin", "obs-probe"), ("phase", "response")]),
        3.0,
        "a plugin's own answer skips its response hook"
    );
    assert_eq!(
        value(
            "wasmgate_plugin_faults_total",
            &[("plugin", "obs-probe"), ("kind", "trap")]
        ),
        1.0
    );
    assert!(
        value(
            "wasmgate_active_connections",
            &[("listener", &gw.addr.to_string())]
        ) >= 1.0,
        "the client's pooled connection is open"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn traceparent_is_continued_or_started_and_sent_upstream() {
    let gw = TestGateway::start("routes:\n  - name: r\n    upstream: a\n").await;
    let client = get_client();
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = client
        .get(&gw.url("/traced"), &[("traceparent", incoming)])
        .await;
    let sent = reply.upstream_header("traceparent").expect("forwarded");
    let fields: Vec<&str> = sent.split('-').collect();
    assert_eq!(fields.len(), 4, "{sent}");
    assert_eq!(fields[0], "00");
    assert_eq!(fields[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_eq!(fields[2].len(), 16);
    assert_ne!(fields[2], "00f067aa0ba902b7", "the gateway's own span");
    assert_eq!(fields[3], "01", "flags kept");

    let mut trace_ids = BTreeSet::new();
    for bad in ["", "00-zz-00f067aa0ba902b7-01"] {
        let headers: &[(&str, &str)] = if bad.is_empty() {
            &[]
        } else {
            &[("traceparent", bad)]
        };
        let started = client
            .get(&gw.url("/untraced"), headers)
            .await
            .upstream_header("traceparent")
            .expect("a trace is started");
        let fields: Vec<&str> = started.split('-').collect();
        assert_eq!(fields.len(), 4, "{started}");
        assert_eq!(fields[1].len(), 32);
        assert!(fields[1].bytes().all(|b| b.is_ascii_hexdigit()));
        trace_ids.insert(fields[1].to_string());
    }
    assert_eq!(trace_ids.len(), 2, "each request starts its own trace");
}

/// Every `wasmgate_*` name an `expr` of the dashboard queries.
fn dashboard_metric_names(dashboard: &serde_json::Value, names: &mut BTreeSet<String>) {
    match dashboard {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("expr", Some(expr)) => {
                        for (at, _) in expr.match_indices("wasmgate_") {
                            let name: String = expr[at..]
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            names.insert(name);
                        }
                    }
                    _ => dashboard_metric_names(value, names),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_metric_names(item, names);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grafana_dashboard_queries_only_real_metrics() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grafana/wasmgate.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("valid JSON");
    assert!(dashboard["title"].is_string());
    assert!(dashboard["panels"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    let mut names = BTreeSet::new();
    dashboard_metric_names(&dashboard, &mut names);
    assert!(names.len() >= 8, "{names:?}");

    // Traffic that makes every series the gateway has appear.
    let (gw, _upstream) = gateway("dash").await;
    let client = get_client();
    client.get(&gw.url("/pass"), &[]).await;
    client.get(&gw.url("/pass"), &[("x-boom", "1")]).await;
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(gw.config_path(), format!("{config}# touched\n")).unwrap();
    assert!(gw.next_reload_event(0).await.ok);

    let text = scrape_metrics(&gw).await;
    for name in &names {
        let present = text
            .lines()
            .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")));
        assert!(
            present,
            "the dashboard queries `{name}`, which /metrics lacks"
        );
    }
}
