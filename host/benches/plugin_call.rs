//! What a plugin call costs: into a warm instance (by header count, to price
//! copying headers as a record), per host call (to price the resource
//! alternative), on a fresh instance, and compiling a plugin; and a
//! Proxy-Wasm header filter against the same edits as a WIT plugin.
//!
//! Run with `make bench` (it builds the plugins first).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::path::PathBuf;
use std::sync::Arc;
use wasmgate::plugin::component::bindings::Request;
use wasmgate::plugin::{
    EntryPool, Grants, HostServices, MemoryKv, PluginLimits, PluginPool, PluginRuntime,
    RequestContext, Tier,
};

fn plugin_file(dir: &str, name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(dir)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} missing: run `make plugins` (and `make polyglot` for other languages)",
        path.display()
    );
    path
}

fn runtime() -> Arc<PluginRuntime> {
    let upstreams = Arc::new(wasmgate::upstream::UpstreamDirectory::default());
    Arc::new(
        PluginRuntime::new(HostServices {
            kv: Arc::new(MemoryKv::default()),
            outbound: Arc::new(wasmgate::plugin::host::outbound::GatewayOutbound {
                client: wasmgate::upstream::http_client(),
                upstreams,
            }),
            telemetry: Arc::new(wasmgate::plugin::host::telemetry::GatewayTelemetry::new(
                Default::default(),
            )),
        })
        .unwrap(),
    )
}

fn pool(
    rt: &tokio::runtime::Runtime,
    runtime: &Arc<PluginRuntime>,
    file: PathBuf,
    config: &str,
    limits: PluginLimits,
) -> PluginPool {
    let bytes = std::fs::read(&file).unwrap();
    let compiled = Arc::new(runtime.compile("bench", &file, &bytes).unwrap());
    rt.block_on(runtime.pool(
        compiled,
        "bench",
        config.to_string(),
        limits,
        Arc::new(Grants::all()),
    ))
    .unwrap()
}

fn request(headers: usize) -> Request {
    Request {
        method: "GET".into(),
        path: "/api/users/42".into(),
        query: Some("page=2".into()),
        headers: (0..headers)
            .map(|i| {
                (
                    format!("x-header-{i}"),
                    "a-typical-header-value-of-some-length".to_string(),
                )
            })
            .collect(),
        body: None,
        client_addr: "127.0.0.1:50000".into(),
        route: "bench".into(),
    }
}

/// Times `iters` request-hook calls on one warm pool. The request is cloned
/// once per sample (the pool narrows and restores its headers in place).
fn time_calls(
    b: &mut criterion::Bencher,
    rt: &tokio::runtime::Runtime,
    pool: &PluginPool,
    req: &Request,
) {
    b.to_async(rt).iter_custom(|iters| {
        let mut req = req.clone();
        async move {
            let started = std::time::Instant::now();
            for _ in 0..iters {
                let mut context = RequestContext::new();
                std::hint::black_box(pool.on_request(&mut req, &mut context).await.unwrap());
            }
            started.elapsed()
        }
    })
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = runtime();
    let warm = PluginLimits::default();

    let mut group = c.benchmark_group("warm_call");
    let noop = pool(
        &rt,
        &runtime,
        plugin_file("test-plugins", "probe"),
        r#"{"noop": true}"#,
        warm,
    );
    for headers in [0, 10, 30] {
        let req = request(headers);
        group.bench_function(BenchmarkId::new("noop_by_headers", headers), |b| {
            time_calls(b, &rt, &noop, &req)
        });
    }
    let headers = pool(
        &rt,
        &runtime,
        plugin_file("plugins", "headers"),
        r#"{"request": {"add": {"x-gateway": "wasmgate"}, "remove": ["x-debug"]}}"#,
        warm,
    );
    let req = request(10);
    group.bench_function("headers_plugin_10_headers", |b| {
        time_calls(b, &rt, &headers, &req)
    });
    group.finish();

    let mut group = c.benchmark_group("host_calls");
    for reads in [0u32, 10, 100] {
        let reader = pool(
            &rt,
            &runtime,
            plugin_file("test-plugins", "probe"),
            &format!(r#"{{"noop": true, "ctx_reads": {reads}}}"#),
            warm,
        );
        let req = request(0);
        group.bench_function(BenchmarkId::new("context_get", reads), |b| {
            time_calls(b, &rt, &reader, &req)
        });
    }
    group.finish();

    let mut group = c.benchmark_group("fresh_instance");
    let never_reuse = PluginLimits {
        max_idle_instances: 0,
        ..warm
    };
    let fresh = pool(
        &rt,
        &runtime,
        plugin_file("test-plugins", "probe"),
        r#"{"noop": true}"#,
        never_reuse,
    );
    let req = request(10);
    group.bench_function("instantiate_init_call", |b| {
        time_calls(b, &rt, &fresh, &req)
    });
    group.finish();

    proxy_wasm_vs_wit(c, &rt, &runtime);
    builtin_plugins(c, &rt, &runtime);
    full_chain(c, &rt, &runtime);
    polyglot(c, &rt, &runtime);

    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for name in ["headers", "transform", "jwt-auth"] {
        let file = plugin_file("plugins", name);
        let bytes = std::fs::read(&file).unwrap();
        let id = format!("{name}/{}KB", bytes.len() / 1024);
        group.bench_function(BenchmarkId::new("optimized", &id), |b| {
            b.iter(|| runtime.compile(name, &file, &bytes).unwrap())
        });
        group.bench_function(BenchmarkId::new("baseline", &id), |b| {
            b.iter(|| {
                let compiled = runtime.compile_quick(name, &file, &bytes).unwrap();
                assert_eq!(compiled.tier, Tier::Baseline);
            })
        });
    }
    group.finish();
}

/// One warm call per built-in plugin, with the typical case its crate keeps
/// in `plugins/<name>/bench.json` (`{"config": .., "request": ..}`).
fn builtin_plugins(c: &mut Criterion, rt: &tokio::runtime::Runtime, runtime: &Arc<PluginRuntime>) {
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let mut cases: Vec<(String, serde_json::Value)> = std::fs::read_dir(&plugins)
        .unwrap()
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let case = std::fs::read_to_string(dir.join("bench.json")).ok()?;
            Some((
                dir.file_name()?.to_str()?.to_string(),
                serde_json::from_str(&case).expect("bench.json is JSON"),
            ))
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    let mut group = c.benchmark_group("builtin_plugin");
    for (name, case) in cases {
        let file = plugin_file("plugins", &name);
        let pool = pool(
            rt,
            runtime,
            file,
            &case["config"].to_string(),
            PluginLimits::default(),
        );
        let r = &case["request"];
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let req = Request {
            method: text(&r["method"]).unwrap_or_else(|| "GET".into()),
            path: text(&r["path"]).unwrap_or_else(|| "/".into()),
            query: text(&r["query"]),
            headers: r["headers"]
                .as_array()
                .map(|hs| {
                    hs.iter()
                        .filter_map(|h| Some((text(&h[0])?, text(&h[1])?)))
                        .collect()
                })
                .unwrap_or_default(),
            body: text(&r["body"]).map(String::into_bytes),
            client_addr: "127.0.0.1:50000".into(),
            route: "bench".into(),
        };
        group.bench_function(name, |b| time_calls(b, rt, &pool, &req));
    }
    group.finish();
}

/// The whole plugin phase of a route on an in-memory request: api-key then
/// headers, request hooks in order and response hooks in reverse.
fn full_chain(c: &mut Criterion, rt: &tokio::runtime::Runtime, runtime: &Arc<PluginRuntime>) {
    use wasmgate::config::OnError;
    use wasmgate::proxy::chain::{Chain, Step};
    let step = |name: &str, config: &str| {
        Step::new(
            Arc::new(EntryPool::Component(pool(
                rt,
                runtime,
                plugin_file("plugins", name),
                config,
                PluginLimits::default(),
            ))),
            OnError::FailClosed,
        )
    };
    let chain = Chain::new(vec![
        step(
            "api-key",
            r#"{"keys": [{"key": "bench-key-0001", "consumer": "bench"}]}"#,
        ),
        step(
            "headers",
            r#"{"request": {"add": {"x-gateway": "wasmgate"}}, "response": {"add": {"x-served-by": "wasmgate"}}}"#,
        ),
    ]);
    let mut req = request(10);
    req.headers
        .push(("x-api-key".into(), "bench-key-0001".into()));
    let response = wasmgate::plugin::component::bindings::Response {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: None,
    };
    c.bench_function("chain/api-key+headers/request+response", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (chain, req, response) = (&chain, req.clone(), response.clone());
            let map = wasmgate::http::convert::header_map(&req.headers);
            let response_map = wasmgate::http::convert::header_map(&response.headers);
            async move {
                let started = std::time::Instant::now();
                for _ in 0..iters {
                    through_chain(chain, &req, &map, &response, &response_map).await;
                }
                started.elapsed()
            }
        })
    });
}

/// Plugins in other languages (`make polyglot`, `examples/plugins/`) next to
/// a Rust one: size and compile time (timed once and printed: seconds per
/// compile is too slow for criterion's samples), then a warm call and a fresh
/// instance + `init` + call, on the typical request each is written for.
fn polyglot(c: &mut Criterion, rt: &tokio::runtime::Runtime, runtime: &Arc<PluginRuntime>) {
    let header = |n: &str, v: &str| (n.to_string(), v.to_string());
    let mut get = request(0);
    get.headers = vec![
        header("host", "api.example.com"),
        header("user-agent", "curl/8"),
        header("accept", "*/*"),
        header("x-client-id", "client-42"),
    ];
    let mut post = get.clone();
    post.method = "POST".into();
    post.headers
        .push(header("content-type", "application/json"));
    post.body = Some(
        br#"{"name":"Al","password":"hunter2","card":"4111 1111 1111 1111","notes":["call al@example.com","order 7"],"qty":2}"#
            .to_vec(),
    );
    let cases = [
        (
            "plugins",
            "headers",
            r#"{"request": {"add": {"x-gateway": "wasmgate"}, "remove": ["x-debug"]}}"#,
            &get,
        ),
        (
            "plugins-polyglot",
            "js-ab-routing",
            r#"{"variants": [{"name": "control", "weight": 1}, {"name": "beta", "weight": 1}]}"#,
            &get,
        ),
        ("plugins-polyglot", "py-redact", "{}", &post),
    ];
    let built = |dir: &str, name: &str| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
        root.join(dir).join(format!("{name}.wasm")).exists()
    };
    if !cases.iter().all(|(dir, name, ..)| built(dir, name)) {
        println!("polyglot: skipped, run `make polyglot` first");
        return;
    }
    let mut group = c.benchmark_group("polyglot");
    for (dir, name, config, req) in cases {
        let file = plugin_file(dir, name);
        let bytes = std::fs::read(&file).unwrap();
        let started = std::time::Instant::now();
        let compiled = Arc::new(runtime.compile(name, &file, &bytes).unwrap());
        println!(
            "polyglot/compile/{name}: {} bytes, compiled in {:.2?}",
            bytes.len(),
            started.elapsed()
        );
        let pool = |limits| {
            rt.block_on(runtime.pool(
                compiled.clone(),
                "bench",
                config.to_string(),
                limits,
                Arc::new(Grants::all()),
            ))
            .unwrap()
        };
        let warm = pool(PluginLimits::default());
        group.bench_function(BenchmarkId::new("warm_call", name), |b| {
            time_calls(b, rt, &warm, req)
        });
        let fresh = pool(PluginLimits {
            max_idle_instances: 0,
            ..PluginLimits::default()
        });
        group.bench_function(BenchmarkId::new("fresh_instance_call", name), |b| {
            time_calls(b, rt, &fresh, req)
        });
    }
    group.finish();
}

/// The same header edits (request: add one, remove one; response: add one,
/// remove one) by the `proxywasm-headers` test filter (which also reads
/// three properties and logs a line, filtered out here) and by the built-in
/// `headers` WIT plugin: one request and its response through a one-step
/// chain, warm instances, 10 request headers.
fn proxy_wasm_vs_wit(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    runtime: &Arc<PluginRuntime>,
) {
    use wasmgate::config::OnError;
    use wasmgate::proxy::chain::{Chain, Step};
    let entry = |dir: &str, name: &str, config: serde_json::Value| {
        let file = plugin_file(dir, name);
        let bytes = std::fs::read(&file).unwrap();
        let compiled = Arc::new(runtime.compile(name, &file, &bytes).unwrap());
        let pool = rt
            .block_on(runtime.entry_pool(
                compiled,
                "bench",
                &config,
                None,
                PluginLimits::default(),
                Arc::new(Grants::all()),
            ))
            .unwrap();
        Chain::new(vec![Step::new(Arc::new(pool), OnError::FailClosed)])
    };
    let wit = entry(
        "plugins",
        "headers",
        serde_json::json!({
            "request": {"add": {"x-pw-request": "v"}, "remove": ["x-remove-me"]},
            "response": {"add": {"x-pw-response": "yes"}, "remove": ["server"]},
        }),
    );
    let filter = entry(
        "test-plugins",
        "proxywasm-headers",
        serde_json::json!({"request_value": "v"}),
    );
    let mut req = request(10);
    req.headers.push(("x-remove-me".into(), "1".into()));
    let response = wasmgate::plugin::component::bindings::Response {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("server".into(), "upstream".into()),
        ],
        body: None,
    };
    let mut group = c.benchmark_group("proxy_wasm_vs_wit");
    for (name, chain) in [("wit_headers", &wit), ("proxy_wasm_headers", &filter)] {
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (req, response) = (req.clone(), response.clone());
                let map = wasmgate::http::convert::header_map(&req.headers);
                let response_map = wasmgate::http::convert::header_map(&response.headers);
                async move {
                    let started = std::time::Instant::now();
                    for _ in 0..iters {
                        let response =
                            through_chain(chain, &req, &map, &response, &response_map).await;
                        assert!(response.headers.iter().any(|(n, _)| n == "x-pw-response"));
                    }
                    started.elapsed()
                }
            })
        });
    }
    group.finish();
}

/// One request through `chain`'s request hooks (which must let it go on)
/// and `response` back through its response hooks, as the proxy runs them;
/// the response as the hooks left it.
async fn through_chain(
    chain: &wasmgate::proxy::chain::Chain,
    request: &wasmgate::plugin::bindings::Request,
    request_map: &http::HeaderMap,
    response: &wasmgate::plugin::bindings::Response,
    response_map: &http::HeaderMap,
) -> wasmgate::plugin::bindings::Response {
    use wasmgate::proxy::chain::RequestOutcome;
    let mut request = request.clone();
    let mut context = RequestContext::new();
    let mut states = chain.states();
    let RequestOutcome::Forward { ran } = chain
        .on_request(
            &mut request,
            &mut request_map.clone(),
            &mut None,
            &mut context,
            &mut states,
        )
        .await
    else {
        panic!("the chain lets the request through")
    };
    let mut response = response.clone();
    chain
        .on_response(
            ran,
            "bench",
            &mut response,
            &mut response_map.clone(),
            &mut None,
            &mut context,
            &mut states,
        )
        .await
        .unwrap();
    response
}

criterion_group!(plugin_call, benches);
criterion_main!(plugin_call);
