//! Test-only plugin. Each behaviour is switched on by config so one `.wasm`
//! can play every role an end-to-end test needs.

use serde::Deserialize;
use std::collections::BTreeMap;
use wasmgate_plugin_sdk::prelude::*;

const VERSION: &str = if cfg!(feature = "v2") { "2" } else { "1" };

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Appended to the `x-chain` request header and `x-chain-response` response header.
    pub tag: String,
    /// Answer with this status instead of forwarding.
    pub respond: Option<u16>,
    /// Context values to set.
    pub ctx_set: BTreeMap<String, String>,
    /// Context keys copied into `x-ctx-<key>` request headers.
    pub ctx_echo: Vec<String>,
    /// `trap`, `loop` or `oom`: misbehave in the request hook.
    pub fault: Option<String>,
    /// Only misbehave when this request header is present.
    pub fault_when_header: Option<String>,
    /// Refuse the config at init with this message.
    pub reject: Option<String>,
    /// Read the context this many times (measures the cost of a host call).
    pub ctx_reads: u32,
    /// Do nothing at all: continue without changes (measures the bare call).
    pub noop: bool,
    /// Ask for bodies: upper-case the request body, report the response body's length.
    pub upper_body: bool,
    /// Count requests in the kv store under this key; the count goes to `x-count`.
    pub kv_count: Option<String>,
    /// Call these upstreams (`name:path`) concurrently; statuses go to `x-fetched`.
    pub fetch: Vec<String>,
    /// Headers sent with every `fetch` request.
    pub fetch_headers: BTreeMap<String, String>,
    /// Add 1 to this plugin counter per request.
    pub metric: Option<String>,
    /// Rewrite the request path to this, as written (dots and all).
    pub set_path: Option<String>,
    /// Identity headers this entry writes (e.g. an `x-ctx-<key>`), declared
    /// by the gateway's convention so it strips client-sent copies; the
    /// probe itself ignores the list.
    pub identity_headers: Vec<String>,
}

pub struct Probe(Config);

fn appended(existing: Option<&str>, tag: &str) -> String {
    match existing {
        Some(v) if !v.is_empty() => format!("{v},{tag}"),
        _ => tag.to_string(),
    }
}

impl Plugin for Probe {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if let Some(message) = &config.reject {
            return Err(message.clone());
        }
        let uses_capabilities = config.kv_count.is_some() || !config.fetch.is_empty();
        if uses_capabilities && !cfg!(feature = "caps") {
            return Err("kv_count and fetch need the probe-caps build".into());
        }
        Ok(Probe(config))
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: self.0.upper_body,
            wants_response: !self.0.noop,
            wants_response_body: self.0.upper_body,
        }
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let c = &self.0;
        for _ in 0..c.ctx_reads {
            std::hint::black_box(context::get("bench"));
        }
        if c.noop {
            return RequestAction::Continue(RequestChanges::new());
        }
        let armed = c
            .fault_when_header
            .as_deref()
            .is_none_or(|h| request.header(h).is_some());
        if armed {
            match c.fault.as_deref() {
                Some("trap") => panic!("probe was told to trap"),
                Some("loop") => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                Some("oom") => {
                    let mut hog: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hog.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hog);
                    }
                }
                _ => {}
            }
        }
        for (k, v) in &c.ctx_set {
            context::set(k, v);
        }
        if let Some(status) = c.respond {
            return RequestAction::Respond(
                Response::error(status, "probe", &format!("answered by probe {}", c.tag))
                    .with_header("x-probe-version", VERSION),
            );
        }
        let mut changes = RequestChanges::new()
            .set_header("x-chain", &appended(request.header("x-chain"), &c.tag))
            .set_header("x-probe-version", VERSION);
        if let Some(path) = &c.set_path {
            changes = changes.path(path);
        }
        for key in &c.ctx_echo {
            changes = changes.set_header(
                &format!("x-ctx-{key}"),
                &context::get(key).unwrap_or_default(),
            );
        }
        if c.upper_body {
            let body = request.body.clone().unwrap_or_default();
            changes = changes.body(body.to_ascii_uppercase());
        }
        #[cfg(feature = "caps")]
        {
            changes = match use_capabilities(c, changes) {
                Ok(changes) => changes,
                Err(response) => return RequestAction::Respond(response),
            };
        }
        if let Some(name) = &c.metric {
            metrics::counter_add(name, 1, &[("route", &request.route)]);
        }
        RequestAction::Continue(changes)
    }

    fn on_response(&self, response: &Response) -> ResponseChanges {
        let mut changes = ResponseChanges::new();
        if let Some(body) = &response.body {
            changes = changes.set_header("x-response-bytes", &body.len().to_string());
        }
        changes
            .set_header(
                "x-chain-response",
                &appended(response.header("x-chain-response"), &self.0.tag),
            )
            .set_header("x-probe-version", VERSION)
    }
}

/// The kv and outbound behaviours, only in the `caps` build: the default
/// build imports neither, so it needs no capability grant.
#[cfg(feature = "caps")]
fn use_capabilities(c: &Config, mut changes: RequestChanges) -> Result<RequestChanges, Response> {
    if let Some(key) = &c.kv_count {
        match kv::increment(key, 1, None) {
            Ok(n) => changes = changes.set_header("x-count", &n.to_string()),
            Err(e) => return Err(Response::error(500, "kv", &e)),
        }
    }
    if !c.fetch.is_empty() {
        let requests: Vec<_> = c
            .fetch
            .iter()
            .map(|target| {
                let (upstream, path) = target.split_once(':').unwrap_or((target, "/"));
                let mut request = outbound::get(upstream, path);
                request.headers = c.fetch_headers.clone().into_iter().collect();
                request
            })
            .collect();
        let statuses: Vec<String> = outbound::send_all(&requests)
            .into_iter()
            .map(|r| match r {
                Ok(resp) => resp.status.to_string(),
                Err(e) => format!("error: {e}"),
            })
            .collect();
        changes = changes.set_header("x-fetched", &statuses.join(";"));
    }
    Ok(changes)
}

export_plugin!(Probe);
