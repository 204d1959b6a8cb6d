//! A plugin written to do the worst in every hook and capability
//! (`tests/plugins/hostile`) cannot panic the gateway: what it returns is
//! refused and the request answered per `on_error`, what it asks of a
//! capability is refused one call at a time, other routes and other
//! plugins' metrics go on, and the gateway's log has no panic and one line
//! per plugin and reason. The guarantee is stated in SECURITY.md.

use crate::support::{
    built_plugin, capture_gateway_log, gateway_log, get_client, metric_value, scrape_metrics,
    TestGateway,
};
use std::time::{Duration, Instant};

/// Enough deadline and memory for a 100 MB body to be built, so what is
/// tested is the host's bound on it, not the memory cap.
const SETTINGS: &str = "  call_timeout_ms: 5000\n  memory_limit_mb: 256\n";

/// Every hook result the host must refuse: (hook, attack) as the hostile
/// plugin's config names them.
const OUTPUT_ATTACKS: &[(&str, &str)] = &[
    ("request", "header_name"),
    ("request", "header_value"),
    ("request", "status:0"),
    ("request", "status:99"),
    ("request", "status:1000"),
    ("request", "path"),
    ("request", "query"),
    ("request", "body"),
    ("request", "headers"),
    ("request", "respond_headers"),
    ("request", "respond_body"),
    ("response", "status:0"),
    ("response", "status:99"),
    ("response", "status:1000"),
    ("response", "header_name"),
    ("response", "headers"),
    ("response", "body"),
];

/// One route per attack at `/<prefix>/<i>`: the hostile plugin (installed
/// as `plugin`) with `on_error`, then `probe` tagging the request `after`;
/// plus `/healthy`, a route without plugins.
fn output_routes(prefix: &str, plugin: &str, on_error: &str) -> String {
    let mut routes = String::from(
        "routes:\n  - name: healthy\n    match: { path: /healthy }\n    upstream: b\n",
    );
    for (i, (hook, attack)) in OUTPUT_ATTACKS.iter().enumerate() {
        routes += &format!(
            "  - name: {prefix}-{i}
    match: {{ path: /{prefix}/{i} }}
    upstream: a
    plugins:
      - {{ name: {plugin}, on_error: {on_error}, allow: [kv, 'outbound:*'], config: {{ {hook}: '{attack}' }} }}
      - {{ name: probe, config: {{ tag: after }} }}
"
        );
    }
    routes
}

async fn start(routes: &str, plugins: &[&str]) -> TestGateway {
    let hostile = built_plugin("hostile.wasm");
    let probe = built_plugin("probe.wasm");
    let extra: Vec<_> = plugins
        .iter()
        .map(|&name| {
            let file = if name.ends_with("-probe") {
                &probe
            } else {
                &hostile
            };
            (file.clone(), name)
        })
        .collect();
    TestGateway::start_with_plugins(routes, SETTINGS, &extra).await
}

/// Fails with the report if any gateway of this test binary panicked.
fn assert_no_gateway_panic() {
    capture_gateway_log();
    let log = gateway_log();
    if let Some(at) = log.find("panicked") {
        let from = log[..at].rfind('\n').map_or(0, |i| i + 1);
        let excerpt: String = log[from..].chars().take(2000).collect();
        panic!("the gateway panicked:\n{excerpt}");
    }
}

fn refusals(text: &str, plugin: &str, what: &str, reason: &str) -> f64 {
    metric_value(
        text,
        "wasmgate_plugin_refusals_total",
        &[("plugin", plugin), ("what", what), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_hook_results_fail_closed_with_500_json() {
    let gw = start(
        &output_routes("closed", "hostile-closed", "fail_closed"),
        &["hostile-closed"],
    )
    .await;
    let client = get_client();
    for (i, attack) in OUTPUT_ATTACKS.iter().enumerate() {
        let reply = client.get(&gw.url(&format!("/closed/{i}")), &[]).await;
        assert_eq!(reply.status, 500, "{attack:?}: {:?}", reply.headers);
        assert_eq!(reply.json()["code"], "plugin_error", "{attack:?}");
        assert_eq!(
            reply.json()["error"],
            "plugin `hostile-closed` failed (invalid_output)",
            "{attack:?}"
        );
        assert_eq!(client.get(&gw.url("/healthy"), &[]).await.status, 200);
    }
    let faults = wasmgate::observe::metrics::metrics()
        .plugin_faults
        .with_label_values(&["hostile-closed", "invalid_output"])
        .get();
    assert_eq!(faults, OUTPUT_ATTACKS.len() as u64);
    assert_no_gateway_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_hook_results_fail_open_by_skipping_the_plugin() {
    let gw = start(
        &output_routes("open", "hostile-open", "fail_open"),
        &["hostile-open"],
    )
    .await;
    let client = get_client();
    for (i, attack) in OUTPUT_ATTACKS.iter().enumerate() {
        let path = format!("/open/{i}");
        let reply = client.get(&gw.url(&path), &[]).await;
        assert_eq!(reply.status, 200, "{attack:?}: {:?}", reply.body);
        assert!(reply.header("x-flood-0").is_none(), "{attack:?}");
        assert_eq!(
            reply.header("x-chain-response"),
            Some("after"),
            "{attack:?}"
        );
        let seen = reply.json();
        assert_eq!(seen["path"], path, "{attack:?}");
        assert_eq!(seen["query"], serde_json::Value::Null, "{attack:?}");
        assert_eq!(reply.upstream_header("x-chain").as_deref(), Some("after"));
        assert!(reply.upstream_header("x-hostile").is_none(), "{attack:?}");
        assert!(reply.upstream_header("x-flood-0").is_none(), "{attack:?}");
        assert_eq!(client.get(&gw.url("/healthy"), &[]).await.status, 200);
    }
    assert_no_gateway_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_metrics_leave_other_plugins_metrics_working() {
    let routes = "admin: { address: '127.0.0.1:0' }
routes:
  - name: hostile-metrics-route
    match: { path: /attack }
    upstream: a
    plugins: [{ name: hostile-metrics, allow: [kv, 'outbound:*'], config: { request: metrics } }]
  - name: hostile-probe-route
    match: { path: /probe }
    upstream: b
    plugins: [{ name: hostile-probe, config: { tag: p, metric: hostile_probe_seen } }]
";
    let gw = start(routes, &["hostile-metrics", "hostile-probe"]).await;
    let client = get_client();
    assert_eq!(client.get(&gw.url("/probe"), &[]).await.status, 200);
    for _ in 0..3 {
        assert_eq!(client.get(&gw.url("/attack"), &[]).await.status, 200);
        assert_eq!(client.get(&gw.url("/probe"), &[]).await.status, 200);
    }
    let text = scrape_metrics(&gw).await;
    assert_eq!(
        metric_value(
            &text,
            "wasmgate_plugin_hostile_probe_seen",
            &[
                ("plugin", "hostile-probe"),
                ("route", "hostile-probe-route")
            ]
        ),
        Some(4.0),
        "the other plugin's metric counts every request"
    );
    assert_eq!(
        metric_value(
            &text,
            "wasmgate_plugin_hostile_valid",
            &[
                ("plugin", "hostile-metrics"),
                ("route", "hostile-metrics-route")
            ]
        ),
        Some(3.0),
        "the hostile plugin's valid metric counts too:\n{}",
        text.lines()
            .filter(|l| l.contains("hostile"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for reason in [
        "reserved_label",
        "invalid_label",
        "duplicate_label",
        "too_many_labels",
        "label_value_too_large",
        "invalid_name",
        "name_taken",
        "invalid_value",
        "budget_spent",
    ] {
        assert!(
            refusals(&text, "hostile-metrics", "metrics", reason) >= 3.0,
            "{reason} refused on each request:\n{}",
            text.lines()
                .filter(|l| l.starts_with("wasmgate_plugin_refusals_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        !text.contains(r#"="spoofed""#),
        "no series with a refused label"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "unparsable sample {line:?}");
    }
    assert_no_gateway_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn capability_calls_over_the_bounds_are_refused_one_call_at_a_time() {
    let mut routes = String::from(
        "routes:\n  - name: healthy\n    match: { path: /healthy }\n    upstream: b\n",
    );
    for attack in ["context", "kv", "outbound", "log"] {
        routes += &format!(
            "  - name: caps-{attack}
    match: {{ path: /{attack} }}
    upstream: a
    plugins: [{{ name: hostile-caps, allow: [kv, 'outbound:*'], config: {{ request: {attack}, interest_flood: true }} }}]
"
        );
    }
    let gw = start(&routes, &["hostile-caps"]).await;
    let client = get_client();

    let context = client.get(&gw.url("/context"), &[]).await;
    assert_eq!(context.status, 200, "{:?}", context.body);
    let report = context.upstream_header("x-hostile-context").unwrap();
    let (state, entries) = report.rsplit_once(",entries=").unwrap();
    assert_eq!(state, "big_key=absent,big_value=absent");
    let entries: usize = entries.parse().unwrap();
    assert!(
        (1..=wasmgate::plugin::bounds::MAX_CONTEXT_ENTRIES).contains(&entries),
        "{report}"
    );

    let kv = client.get(&gw.url("/kv"), &[]).await;
    assert_eq!(kv.status, 200, "{:?}", kv.body);
    let report = kv.upstream_header("x-hostile-kv").unwrap();
    let outcomes: Vec<(&str, &str)> = report
        .split(',')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    for (call, reason) in [
        ("key", "key_too_large"),
        ("get", "key_too_large"),
        ("value", "value_too_large"),
        ("ttl", "ttl_too_large"),
    ] {
        let outcome = outcomes.iter().find(|(c, _)| *c == call).unwrap().1;
        assert!(
            outcome.starts_with("refused") && outcome.contains(reason),
            "{call}: {outcome}"
        );
    }
    let budget: usize = outcomes
        .iter()
        .find(|(c, _)| *c == "budget")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!(
        budget > 0,
        "increments past the call's budget are refused: {report}"
    );

    let started = Instant::now();
    let outbound = client.get(&gw.url("/outbound"), &[]).await;
    assert_eq!(outbound.status, 200, "{:?}", outbound.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused calls end fast: {:?}",
        started.elapsed()
    );
    let report = outbound.upstream_header("x-hostile-outbound").unwrap();
    assert!(
        report.starts_with("body=refused") && report.contains("body_too_large"),
        "{report}"
    );
    assert!(report.ends_with(",batch=1000,loop=10000"), "{report}");

    let log = client.get(&gw.url("/log"), &[]).await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    assert_eq!(client.get(&gw.url("/healthy"), &[]).await.status, 200);

    let counter = |what: &str, reason: &str| {
        wasmgate::observe::metrics::metrics()
            .plugin_refusals
            .with_label_values(&["hostile-caps", what, reason])
            .get()
    };
    assert_eq!(counter("context", "key_too_large"), 1);
    assert_eq!(counter("context", "value_too_large"), 1);
    assert!(counter("context", "context_too_large") > 0);
    assert_eq!(counter("kv", "key_too_large"), 2);
    assert!(counter("kv", "budget_spent") > 0);
    assert_eq!(counter("outbound", "body_too_large"), 1);
    assert!(counter("outbound", "budget_spent") >= 10_000);
    assert_eq!(counter("log", "truncated"), 1);
    assert!(counter("log", "budget_spent") > 0);
    assert_no_gateway_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_and_refusals_are_logged_once_per_plugin_and_reason() {
    let routes = "routes:
  - name: quiet-status
    match: { path: /status }
    upstream: a
    plugins: [{ name: hostile-quiet, allow: [kv, 'outbound:*'], config: { request: 'status:0' }, fault_breaker: { faults: 1000 } }]
  - name: quiet-metrics
    match: { path: /metrics }
    upstream: a
    plugins: [{ name: hostile-quiet, allow: [kv, 'outbound:*'], config: { request: metrics } }]
";
    let gw = start(routes, &["hostile-quiet"]).await;
    let client = get_client();
    for _ in 0..10 {
        assert_eq!(client.get(&gw.url("/status"), &[]).await.status, 500);
        assert_eq!(client.get(&gw.url("/metrics"), &[]).await.status, 200);
    }
    let log = gateway_log();
    let lines = |needle: &str| {
        log.lines()
            .filter(|l| l.contains("hostile-quiet") && l.contains(needle))
            .count()
    };
    assert_eq!(lines("invalid_output"), 1, "one fault line for 10 faults");
    assert_eq!(lines("reserved_label"), 1, "one line for 50 refusals");
    assert_no_gateway_panic();
}
