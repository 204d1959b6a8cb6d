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
        Ok(Probe(config))
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: false,
            wants_response: true,
            wants_response_body: false,
        }
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let c = &self.0;
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
        for key in &c.ctx_echo {
            changes = changes.set_header(
                &format!("x-ctx-{key}"),
                &context::get(key).unwrap_or_default(),
            );
        }
        RequestAction::Continue(changes)
    }

    fn on_response(&self, response: &Response) -> ResponseChanges {
        ResponseChanges::new()
            .set_header(
                "x-chain-response",
                &appended(response.header("x-chain-response"), &self.0.tag),
            )
            .set_header("x-probe-version", VERSION)
    }
}

export_plugin!(Probe);
