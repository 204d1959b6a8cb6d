//! The plugin test harness: load a compiled `.wasm` plugin in-process, on the
//! gateway's own runtime, with in-memory capabilities (kv, fake upstreams,
//! captured logs and metrics), and feed it requests in ordinary `#[test]`s.
//! The engine is the host's `wasmgate::devtools::plugin_test::Sandbox`, shared with
//! `wasmgate plugin test` (YAML cases, any language).
//!
//! ```ignore
//! use wasmgate_plugin_sdk::harness::{artifact, request, Harness, RequestAction};
//!
//! let plugin = Harness::load(artifact("headers"), serde_json::json!({"request": {"set": {"x-a": "1"}}})).unwrap();
//! let RequestAction::Continue(changes) = plugin.on_request(request("GET", "/")).unwrap() else { panic!() };
//! assert_eq!(changes.headers.set, vec![("x-a".into(), "1".into())]);
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmgate::devtools::plugin_test::Sandbox;
use wasmgate::plugin::{PluginError, PluginPool};

pub use wasmgate::devtools::plugin_test::{LogLine, MetricUpdate, ROUTE};
pub use wasmgate::plugin::component::bindings::{
    HeaderChanges, LogLevel, OutboundRequest, OutboundResponse, PluginInfo, Request, RequestAction,
    RequestChanges, Response, ResponseChanges,
};
pub use wasmgate::plugin::{PluginFault, RequestContext};

/// A plugin loaded in-process, initialised with one config: a thin blocking
/// layer over the host's [`Sandbox`], the engine `wasmgate plugin test` uses too.
pub struct Harness {
    pool: PluginPool,
    sandbox: Sandbox,
    tokio: tokio::runtime::Runtime,
}

impl Harness {
    /// Compiles `wasm` and initialises it with `config` — exactly what the
    /// gateway does at load time, so a refused config is an `Err` here.
    pub fn load(wasm: impl AsRef<Path>, config: serde_json::Value) -> Result<Harness, PluginError> {
        let sandbox = Sandbox::load(wasm.as_ref())?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for the harness");
        let pool = tokio.block_on(sandbox.init(&config))?;
        Ok(Harness {
            pool,
            sandbox,
            tokio,
        })
    }

    /// What the plugin declared at init.
    pub fn info(&self) -> &PluginInfo {
        self.pool.info()
    }

    /// Runs the request hook with an empty context.
    pub fn on_request(&self, request: Request) -> Result<RequestAction, PluginFault> {
        self.on_request_with(request, &mut RequestContext::new())
    }

    /// Runs the request hook with `context` (read and updated, as in a chain).
    pub fn on_request_with(
        &self,
        mut request: Request,
        context: &mut RequestContext,
    ) -> Result<RequestAction, PluginFault> {
        self.tokio
            .block_on(self.pool.on_request(&mut request, context))
    }

    /// Runs the response hook with `context`.
    pub fn on_response_with(
        &self,
        mut response: Response,
        context: &mut RequestContext,
    ) -> Result<ResponseChanges, PluginFault> {
        self.tokio
            .block_on(self.pool.on_response(&mut response, context))
    }

    /// Runs the response hook with an empty context.
    pub fn on_response(&self, response: Response) -> Result<ResponseChanges, PluginFault> {
        self.on_response_with(response, &mut RequestContext::new())
    }

    /// The header names the plugin declared it reads (`None`: all).
    pub fn header_interest(&self) -> Option<&[String]> {
        self.pool.header_interest()
    }

    /// Seeds a kv entry, as the plugin would see it under `key`.
    pub fn kv_set(&self, key: &str, value: &[u8]) {
        self.tokio
            .block_on(
                self.sandbox
                    .fakes()
                    .kv_seed(&self.sandbox.kv_key(key), value.to_vec()),
            )
            .expect("memory kv set");
    }

    /// The plugin's kv entries, by the keys it used.
    pub fn kv_entries(&self) -> HashMap<String, Vec<u8>> {
        self.sandbox.kv_entries()
    }

    /// Answers outbound calls to `upstream` with `handler`.
    pub fn fake_upstream(
        &self,
        upstream: &str,
        handler: impl Fn(&OutboundRequest) -> Result<OutboundResponse, String> + Send + Sync + 'static,
    ) {
        self.sandbox
            .fakes()
            .fake_upstream(upstream, Arc::new(handler));
    }

    /// Every outbound request the plugin sent, in order.
    pub fn outbound_requests(&self) -> Vec<OutboundRequest> {
        self.sandbox.fakes().sent()
    }

    /// Every log line the plugin wrote, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.sandbox.fakes().logs()
    }

    /// Every metric update the plugin made, in order.
    pub fn metrics(&self) -> Vec<MetricUpdate> {
        self.sandbox.fakes().metrics()
    }
}

/// Runs a `wasmgate plugin test` cases file against `wasm` on the same
/// engine, and panics with the runner's report (each failure's expected
/// versus actual) unless every case passes.
pub fn assert_cases(wasm: impl AsRef<Path>, cases: impl AsRef<Path>) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime for the harness");
    let report = tokio
        .block_on(wasmgate::devtools::plugin_test::run_file(
            wasm.as_ref(),
            cases.as_ref(),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.success(), "\n{report}");
}

/// A request record with sensible defaults; adjust fields or use the builders.
pub fn request(method: &str, path_and_query: &str) -> Request {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path_and_query.to_string(), None),
    };
    Request {
        method: method.to_string(),
        path,
        query,
        headers: vec![("host".into(), "example.com".into())],
        body: None,
        client_addr: "127.0.0.1:40000".into(),
        route: ROUTE.into(),
    }
}

/// Builder-style additions to a harness [`Request`].
pub trait RequestExt {
    /// Adds a header.
    fn with_header(self, name: &str, value: &str) -> Self;
    /// Sets the body.
    fn with_body(self, body: &[u8]) -> Self;
}

impl RequestExt for Request {
    fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    fn with_body(mut self, body: &[u8]) -> Self {
        self.body = Some(body.to_vec());
        self
    }
}

/// An upstream response record to feed a response hook.
pub fn response(status: u16, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    Response {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.map(<[u8]>::to_vec),
    }
}

/// The built `.wasm` of a plugin: `$WASMGATE_PLUGIN_DIR/<name>.wasm`, else
/// `target/plugins/<name>.wasm` in the nearest ancestor workspace (what
/// `make plugins` produces).
pub fn artifact(name: &str) -> PathBuf {
    let file = format!("{name}.wasm");
    if let Ok(dir) = std::env::var("WASMGATE_PLUGIN_DIR") {
        return PathBuf::from(dir).join(file);
    }
    let start = std::env::var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| ".".into());
    for dir in start.ancestors() {
        let candidate = dir.join("target/plugins").join(&file);
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("{file} not found under target/plugins: build plugins first with `make plugins`");
}

/// The first value of header `name` in a header list.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
