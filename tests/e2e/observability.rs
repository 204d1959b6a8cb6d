//! Observability over real sockets: the admin listener's `/metrics` after
//! traffic, the `traceparent` the upstream sees, the spans a fake OTLP
//! collector receives, and the Grafana dashboard's queries against a real
//! gateway's metric names.

use crate::support::{
    built_plugin, echo_upstream, get_client, metric_value, scrape_metrics, TestGateway,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

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

/// One span as a fake collector received it, with its resource's service name.
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<Value> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    }

    fn string(&self, key: &str) -> String {
        match self.attribute(key) {
            Some(Value::StringValue(s)) => s,
            other => panic!("attribute {key}: {other:?} in {:?}", self.span),
        }
    }

    fn int(&self, key: &str) -> i64 {
        match self.attribute(key) {
            Some(Value::IntValue(i)) => i,
            other => panic!("attribute {key}: {other:?} in {:?}", self.span),
        }
    }
}

/// A fake OTLP/HTTP collector: a real HTTP server that decodes every
/// `POST /v1/traces` protobuf body and passes its spans on.
async fn otlp_collector() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let path_ok = request.method() == http::Method::POST
                            && request.uri().path() == "/v1/traces";
                        let content_type = request
                            .headers()
                            .get(http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = request.into_body().collect().await?.to_bytes();
                        let decoded = ExportTraceServiceRequest::decode(body);
                        let status = match decoded {
                            Ok(export) if path_ok && content_type == "application/x-protobuf" => {
                                for resource_spans in export.resource_spans {
                                    let service = resource_spans
                                        .resource
                                        .iter()
                                        .flat_map(|r| &r.attributes)
                                        .find(|kv| kv.key == "service.name")
                                        .and_then(|kv| match kv.value.clone()?.value? {
                                            Value::StringValue(s) => Some(s),
                                            _ => None,
                                        })
                                        .unwrap_or_default();
                                    for scope in resource_spans.scope_spans {
                                        for span in scope.spans {
                                            let _ = tx.send(Received {
                                                service: service.clone(),
                                                span,
                                            });
                                        }
                                    }
                                }
                                200
                            }
                            _ => 400,
                        };
                        let mut response = http::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/x-protobuf"),
                        );
                        Ok::<_, hyper::Error>(response)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, rx)
}

/// Spans from `rx` until every trace id in `wanted` has one; panics after 5 s.
async fn spans_for(rx: &mut mpsc::UnboundedReceiver<Received>, wanted: &[&str]) -> Vec<Received> {
    let mut spans = Vec::new();
    let complete = |spans: &Vec<Received>| {
        wanted.iter().all(|id| {
            spans
                .iter()
                .any(|s: &Received| hex(&s.span.trace_id) == *id)
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !complete(&spans) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(span)) => spans.push(span),
            _ => panic!(
                "the collector got no span for some of {wanted:?} within 5 s; got {:?}",
                spans
                    .iter()
                    .map(|s| hex(&s.span.trace_id))
                    .collect::<Vec<_>>()
            ),
        }
    }
    spans
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(trace id, span id)` of the `traceparent` the echo upstream saw.
fn upstream_trace(reply: &crate::support::Reply) -> (String, String) {
    let sent = reply.upstream_header("traceparent").expect("forwarded");
    let fields: Vec<&str> = sent.split('-').collect();
    (fields[1].to_string(), fields[2].to_string())
}

fn otlp_config(collector: SocketAddr, batch_delay_ms: u64) -> String {
    format!(
        "routes:
  - name: otlp-route
    match: {{ path_prefix: /otlp }}
    upstream: a
tracing:
  otlp:
    endpoint: http://{collector}/v1/traces
    service_name: otlp-test
    batch_delay_ms: {batch_delay_ms}
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_request_is_exported_as_an_otlp_span_of_its_trace() {
    let (collector, mut rx) = otlp_collector().await;
    let gw = TestGateway::start(&otlp_config(collector, 20)).await;
    let client = get_client();

    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    let reply = client
        .get(&gw.url("/otlp/unsampled"), &[("traceparent", unsampled)])
        .await;
    assert_eq!(reply.status, 200);

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let continued = client
        .get(&gw.url("/otlp/continued"), &[("traceparent", incoming)])
        .await;
    assert_eq!(continued.status, 200);
    let (continued_trace, continued_span) = upstream_trace(&continued);
    assert_eq!(continued_trace, "4bf92f3577b34da6a3ce929d0e0e4736");

    let started = client.get(&gw.url("/otlp/started"), &[]).await;
    let (started_trace, started_span) = upstream_trace(&started);

    let failed = client
        .get(&gw.url("/otlp/failed"), &[("x-echo-status", "503")])
        .await;
    assert_eq!(failed.status, 503);
    let (failed_trace, _) = upstream_trace(&failed);

    let spans = spans_for(&mut rx, &[&continued_trace, &started_trace, &failed_trace]).await;
    assert!(
        spans
            .iter()
            .all(|s| hex(&s.span.trace_id) != "11111111111111111111111111111111"),
        "a caller's unsampled trace is not exported"
    );
    let of = |trace: &str| {
        let matching: Vec<&Received> = spans
            .iter()
            .filter(|s| hex(&s.span.trace_id) == trace)
            .collect();
        assert_eq!(matching.len(), 1, "one span per request");
        matching[0]
    };

    let span = of(&continued_trace);
    assert_eq!(span.service, "otlp-test");
    assert_eq!(
        hex(&span.span.span_id),
        continued_span,
        "the span id sent upstream"
    );
    assert_eq!(
        hex(&span.span.parent_span_id),
        "00f067aa0ba902b7",
        "the caller's span"
    );
    assert_eq!(span.span.kind, SpanKind::Server as i32);
    assert_eq!(span.span.name, "GET otlp-route");
    assert!(span.span.start_time_unix_nano > 0);
    assert!(span.span.end_time_unix_nano >= span.span.start_time_unix_nano);
    assert_eq!(span.string("http.request.method"), "GET");
    assert_eq!(span.string("url.path"), "/otlp/continued");
    assert_eq!(span.string("http.route"), "otlp-route");
    assert_eq!(span.int("http.response.status_code"), 200);
    assert_eq!(span.string("wasmgate.upstream"), "a");
    assert!(span
        .string("wasmgate.upstream.target")
        .starts_with("127.0.0.1:"));
    assert_eq!(span.string("wasmgate.answered_by"), "upstream");
    assert_eq!(
        span.string("wasmgate.request_id"),
        continued.header("x-request-id").unwrap()
    );
    assert_ne!(
        span.span.status.as_ref().map_or(0, |s| s.code),
        StatusCode::Error as i32
    );

    let span = of(&started_trace);
    assert_eq!(hex(&span.span.span_id), started_span);
    assert!(span.span.parent_span_id.is_empty(), "a root span");
    assert_eq!(span.string("url.path"), "/otlp/started");

    let span = of(&failed_trace);
    assert_eq!(span.int("http.response.status_code"), 503);
    assert_eq!(
        span.span.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32),
        "a 5xx is an error span"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_spans_are_flushed_on_graceful_shutdown() {
    let (collector, mut rx) = otlp_collector().await;
    // A batch delay far beyond the test: only the shutdown can send the span.
    let gw = TestGateway::start(&otlp_config(collector, 600_000)).await;
    let reply = get_client().get(&gw.url("/otlp/last"), &[]).await;
    let (trace, _) = upstream_trace(&reply);
    assert!(
        rx.try_recv().is_err(),
        "nothing is sent before the batch is due"
    );
    gw.gateway.shutdown().await;
    let spans = spans_for(&mut rx, &[&trace]).await;
    assert_eq!(spans[0].string("url.path"), "/otlp/last");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_collector_does_not_break_proxying() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = TestGateway::start(&otlp_config(dead, 10)).await;
    let client = get_client();
    for i in 0..20 {
        let reply = client.get(&gw.url(&format!("/otlp/{i}")), &[]).await;
        assert_eq!(reply.status, 200, "request {i}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A trace the gateway starts carries its sampling verdict upstream; a
/// continued trace keeps its caller's.
#[tokio::test(flavor = "multi_thread")]
async fn the_sampling_decision_of_a_new_trace_travels_upstream() {
    let (collector, _rx) = otlp_collector().await;
    let config = format!("{}    sample_ratio: 0.0\n", otlp_config(collector, 10));
    let gw = TestGateway::start(&config).await;
    let client = get_client();
    let started = client.get(&gw.url("/otlp/new"), &[]).await;
    let sent = started.upstream_header("traceparent").expect("forwarded");
    assert!(sent.ends_with("-00"), "{sent}");
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let continued = client
        .get(&gw.url("/otlp/continued"), &[("traceparent", incoming)])
        .await;
    let sent = continued.upstream_header("traceparent").expect("forwarded");
    assert!(sent.ends_with("-01"), "{sent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_observability_example_config_is_valid() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/observability/wasmgate.yaml");
    let config = wasmgate::config::Config::load(&path).expect("example parses");
    let otlp = config.tracing.otlp.expect("the example exports spans");
    assert_eq!(otlp.endpoint, "http://127.0.0.1:4318/v1/traces");
    wasmgate::validate(&path).await.expect("example validates");
}
