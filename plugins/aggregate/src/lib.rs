//! `aggregate`: answers a route by calling several upstreams at once and
//! merging their JSON into one object, so a client makes one request instead
//! of many. See `README.md` beside this crate and `examples/dashboard/`.
//!
//! ```yaml
//! - name: aggregate
//!   config:
//!     calls:
//!       - { name: profile, upstream: users, path: "/users/${ctx.consumer}" }
//!       - { name: orders, upstream: orders, path: "/orders?${query}", timeout_ms: 500 }
//!       - { name: ads, upstream: ads, path: /ads, policy: optional, default: [] }
//! ```
//!
//! Always answers itself: `200` with `{"profile": ..., "orders": ..., "ads": ...}`,
//! or `502` `{"error": ..., "code": "upstream_failed", "call": "orders"}` when a
//! required call fails.

mod call;
mod template;

use call::{value_of, Call, CallConfig, Policy};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use wasmgate_plugin_sdk::prelude::*;
use wasmgate_plugin_sdk::{LogLevel, OutboundRequest, OutboundResponse};

/// The plugin's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The calls, sent concurrently; each result goes under its `name`.
    pub calls: Vec<CallConfig>,
}

/// The validated calls.
pub struct Aggregate {
    calls: Vec<Call>,
}

/// The 502 for a required call that failed.
fn failure(call: &str, reason: &str) -> Response {
    Response::json(
        502,
        &json!({
            "error": format!("call `{call}` failed: {reason}"),
            "code": "upstream_failed",
            "call": call,
        }),
    )
}

impl Aggregate {
    /// Puts each call's value (or its default) under its name; the first
    /// required call that failed decides a 502 instead.
    fn merge(&self, results: Vec<Result<OutboundResponse, String>>) -> Result<Value, Response> {
        let mut merged = Map::new();
        for (call, result) in self.calls.iter().zip(results) {
            match value_of(result) {
                Ok(value) => {
                    merged.insert(call.name.clone(), value);
                }
                Err(reason) => {
                    log::log(
                        LogLevel::Warn,
                        "aggregate call failed",
                        &[("call", &call.name), ("reason", &reason)],
                    );
                    if call.policy == Policy::Required {
                        return Err(failure(&call.name, &reason));
                    }
                    if let Some(default) = &call.default {
                        merged.insert(call.name.clone(), default.clone());
                    }
                }
            }
        }
        Ok(Value::Object(merged))
    }
}

impl Plugin for Aggregate {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.calls.is_empty() {
            return Err("`calls` must list at least one call".into());
        }
        let mut names = HashSet::new();
        let mut calls = Vec::with_capacity(config.calls.len());
        for (i, c) in config.calls.into_iter().enumerate() {
            if !names.insert(c.name.clone()) {
                return Err(format!("calls[{i}].name `{}` is used twice", c.name));
            }
            calls.push(Call::new(&format!("calls[{i}]"), c)?);
        }
        Ok(Aggregate { calls })
    }

    fn header_interest(&self) -> Option<Vec<String>> {
        let mut names: Vec<String> = self
            .calls
            .iter()
            .flat_map(|c| c.forwarded().iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        Some(names)
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let outbound: Vec<OutboundRequest> =
            self.calls.iter().map(|c| c.outbound(request)).collect();
        let results = outbound::send_all(&outbound);
        RequestAction::Respond(match self.merge(results) {
            Ok(merged) => Response::json(200, &merged),
            Err(response) => response,
        })
    }
}

export_plugin!(Aggregate);
