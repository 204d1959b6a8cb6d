//! Test-only plugin written as a careless or hostile author would: each
//! attack is named in the config and does the worst it can in one hook or
//! one capability. The host must refuse every one of them without a panic
//! (see `tests/e2e/hostile.rs` and SECURITY.md).
//!
//! Request-hook attacks (`request:`) that return something the host must
//! refuse: `header_name`, `header_value`, `status:<n>` (a response with that
//! status), `path` (without a leading `/`), `query`, `body` (100 MB),
//! `headers` (100k), `respond_headers`, `respond_body`. Response-hook
//! attacks (`response:`): `status:<n>`, `header_name`, `headers`, `body`.
//! Capability attacks (`request:`), after which the hook goes on and
//! reports what the host answered in `x-hostile-*` request headers:
//! `metrics`, `context`, `kv`, `outbound`, `log`.

use serde::Deserialize;
use wasmgate_plugin_sdk::bindings::wasmgate::plugin::{kv as raw_kv, outbound as raw_outbound};
use wasmgate_plugin_sdk::prelude::*;
use wasmgate_plugin_sdk::{HeaderChanges, LogLevel, OutboundRequest};

const MB: usize = 1 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The attack of the request hook.
    pub request: Option<String>,
    /// The attack of the response hook (which is only called when set).
    pub response: Option<String>,
    /// Ask, in `header-interest`, for 100k header names.
    pub interest_flood: bool,
}

pub struct Hostile(Config);

fn no_headers() -> HeaderChanges {
    HeaderChanges {
        remove: vec![],
        set: vec![],
        append: vec![],
    }
}

fn flood(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("x-flood-{i}"), "v".into()))
        .collect()
}

fn status(attack: &str) -> Option<u16> {
    attack.strip_prefix("status:")?.parse().ok()
}

fn respond(status: u16, headers: Vec<(String, String)>, body: Option<Vec<u8>>) -> RequestAction {
    RequestAction::Respond(Response {
        status,
        headers,
        body,
    })
}

impl Plugin for Hostile {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Hostile(config))
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: false,
            wants_response: self.0.response.is_some(),
            wants_response_body: false,
        }
    }

    fn header_interest(&self) -> Option<Vec<String>> {
        self.0
            .interest_flood
            .then(|| flood(100_000).into_iter().map(|(name, _)| name).collect())
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let mut changes = RequestChanges::new();
        let Some(attack) = self.0.request.as_deref() else {
            return RequestAction::Continue(changes);
        };
        if let Some(status) = status(attack) {
            return respond(status, vec![], None);
        }
        match attack {
            "header_name" => changes.headers.set = vec![("bad header\n".into(), "v".into())],
            "header_value" => {
                changes.headers.set = vec![("x-hostile".into(), "a\r\nx-injected: 1".into())]
            }
            "path" => changes.path = Some("no-slash".into()),
            "query" => changes.query = Some("a=1\n#b".into()),
            "body" => changes.body = Some(vec![b'x'; 100 * MB]),
            "headers" => changes.headers.append = flood(100_000),
            "respond_headers" => return respond(200, flood(100_000), None),
            "respond_body" => return respond(200, vec![], Some(vec![b'x'; 100 * MB])),
            "metrics" => attack_metrics(&request.route),
            "context" => changes = changes.set_header("x-hostile-context", &attack_context()),
            "kv" => changes = changes.set_header("x-hostile-kv", &attack_kv()),
            "outbound" => changes = changes.set_header("x-hostile-outbound", &attack_outbound()),
            "log" => attack_log(),
            other => panic!("unknown attack {other}"),
        }
        RequestAction::Continue(changes)
    }

    fn on_response(&self, _response: &Response) -> ResponseChanges {
        let mut changes = ResponseChanges {
            status: None,
            headers: no_headers(),
            body: None,
        };
        let Some(attack) = self.0.response.as_deref() else {
            return changes;
        };
        if let Some(status) = status(attack) {
            changes.status = Some(status);
            return changes;
        }
        match attack {
            "header_name" => changes.headers.append = vec![("bad header\n".into(), "v".into())],
            "headers" => changes.headers.append = flood(100_000),
            "body" => changes.body = Some(vec![b'x'; 100 * MB]),
            other => panic!("unknown attack {other}"),
        }
        changes
    }
}

/// Label names Prometheus or the host refuse, values and names over the
/// bounds, a name of the gateway's own, one name as two types, a
/// non-finite value, and more series than a family may hold. One valid
/// counter (`hostile_valid`) goes through.
fn attack_metrics(route: &str) {
    let one = |name: &str, labels: &[(&str, &str)]| metrics::counter_add(name, 1, labels);
    for label in ["plugin", "le", "quantile", "__name__", "1abc", ""] {
        one("hostile_hits", &[(label, "spoofed")]);
    }
    one("hostile_hits", &[("a-b", "1"), ("a_b", "2")]);
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("l{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    one("hostile_hits", &many);
    one("hostile_hits", &[("route", &"v".repeat(MB))]);
    one(&"n".repeat(MB), &[]);
    one("faults_total", &[]);
    one("hostile_mixed", &[]);
    metrics::histogram_observe("hostile_mixed", 1.0, &[]);
    metrics::histogram_observe("hostile_latency", f64::NAN, &[]);
    metrics::histogram_observe("hostile_latency", 1.0, &[("le", "0.5")]);
    one("hostile_valid", &[("route", route)]);
    for i in 0..5000 {
        one("hostile_series", &[("n", &i.to_string())]);
    }
}

/// A megabyte key, a 10 MB value and 20,000 entries of 1 KiB; reports what
/// it can read back: `big_key=…,big_value=…,entries=<n of the first 1000>`.
fn attack_context() -> String {
    let big_key = "k".repeat(MB);
    context::set(&big_key, "v");
    context::set("big_value", &"v".repeat(10 * MB));
    let value = "v".repeat(1 << 10);
    for i in 0..20_000 {
        context::set(&format!("k{i}"), &value);
    }
    let state = |present: bool| if present { "present" } else { "absent" };
    let entries = (0..1000)
        .filter(|i| context::get(&format!("k{i}")).is_some())
        .count();
    format!(
        "big_key={},big_value={},entries={entries}",
        state(context::get(&big_key).is_some()),
        state(context::get("big_value").is_some()),
    )
}

/// kv calls over every bound, then a loop past the call's budget; reports
/// each outcome: `key=…,get=…,value=…,ttl=…,budget=<refused of 2000>`.
fn attack_kv() -> String {
    let outcome = |result: Result<(), String>| match result {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("refused: {}", e.replace(',', ";")),
    };
    let big_key = "k".repeat(4 * MB);
    let key = outcome(raw_kv::set(&big_key, b"v", None));
    let get = outcome(raw_kv::get(&big_key).map(drop));
    let value = outcome(raw_kv::set("big", &vec![0u8; 20 * MB], None));
    let ttl = outcome(raw_kv::set("forever", b"v", Some(u64::MAX)));
    let refused = (0..2000)
        .filter(|_| raw_kv::increment("n", 1, None).is_err())
        .count();
    format!("key={key},get={get},value={value},ttl={ttl},budget={refused}")
}

/// A 40 MB body, a batch of 1000 requests to an unknown upstream, then
/// 10,000 calls to it in a loop; reports `body=…,batch=<errors>,loop=<errors>`.
fn attack_outbound() -> String {
    let to = |upstream: &str| OutboundRequest {
        upstream: upstream.into(),
        method: "POST".into(),
        path_and_query: "/".into(),
        headers: vec![],
        body: None,
        timeout_ms: Some(100),
    };
    let mut big = to("a");
    big.body = Some(vec![0u8; 40 * MB]);
    let body = match raw_outbound::send_all(&[big]).pop() {
        Some(Ok(response)) => format!("sent ({})", response.status),
        Some(Err(e)) => format!("refused: {}", e.replace(',', ";")),
        None => "no answer".into(),
    };
    let batch: Vec<OutboundRequest> = (0..1000).map(|_| to("nowhere")).collect();
    let batch = raw_outbound::send_all(&batch)
        .iter()
        .filter(|r| r.is_err())
        .count();
    let looped = (0..10_000)
        .filter(|_| raw_outbound::send_all(&[to("nowhere")])[0].is_err())
        .count();
    format!("body={body},batch={batch},loop={looped}")
}

/// A megabyte message with a hundred fields, then 10,000 lines.
fn attack_log() {
    let fields: Vec<(String, String)> = (0..100)
        .map(|i| (format!("f{i}"), "v".repeat(10_000)))
        .collect();
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    log::log(LogLevel::Warn, &"m".repeat(MB), &fields);
    for i in 0..10_000 {
        log::info(&format!("line {i}"));
    }
}

export_plugin!(Hostile);
