//! What a plugin may hand the host, and what happens when it hands more.
//!
//! Every value a plugin passes to a capability (context, log, metrics, kv,
//! outbound) or returns from a hook (header edits, status, path and query,
//! body) is checked here before the host acts on it. Nothing a plugin
//! returns can panic the host:
//!
//! - a capability call that breaks a bound is **refused** — that one call:
//!   kv and outbound calls get an `Err`, a context write or a metric update
//!   is dropped, a log line is truncated;
//! - a hook result that breaks one is a **plugin fault** of kind
//!   `invalid_output` for that one request, handled per the entry's
//!   `on_error` like a trap.
//!
//! Either way it is counted in `wasmgate_plugin_refusals_total{plugin,what,reason}`
//! and logged at most once a minute per plugin, capability and reason
//! ([`log_gate`]), so a hostile plugin cannot flood the log either.

use super::bindings::{HeaderChanges, OutboundRequest, RequestAction, Response, ResponseChanges};
use crate::plugin::RequestContext;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Entries in one header list or one set of header edits (remove + set + append).
pub const MAX_HEADERS: usize = 1000;
/// Bytes of names and values in one header list or set of header edits.
pub const MAX_HEADER_BYTES: usize = 256 << 10;
/// A body a plugin hands the host (request, response or outbound).
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// A path plus query a plugin sets.
pub const MAX_PATH_BYTES: usize = 16 << 10;
/// Names a plugin may list in `header-interest`; beyond it, it gets every header.
pub const MAX_HEADER_INTEREST: usize = 256;

/// A context key.
pub const MAX_CONTEXT_KEY_BYTES: usize = 1 << 10;
/// A context value.
pub const MAX_CONTEXT_VALUE_BYTES: usize = 64 << 10;
/// Entries in one request's context.
pub const MAX_CONTEXT_ENTRIES: usize = 256;
/// Keys plus values of one request's context.
pub const MAX_CONTEXT_BYTES: usize = 256 << 10;

/// A kv key (before the host prefixes the plugin's name).
pub const MAX_KV_KEY_BYTES: usize = 16 << 10;
/// A kv value.
pub const MAX_KV_VALUE_BYTES: usize = 16 << 20;
/// A kv entry's time to live.
pub const MAX_KV_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A plugin metric's name.
pub const MAX_METRIC_NAME_BYTES: usize = 128;
/// Labels on one plugin metric (besides the host's `plugin`).
pub const MAX_METRIC_LABELS: usize = 16;
/// A label name.
pub const MAX_LABEL_NAME_BYTES: usize = 64;
/// A label value.
pub const MAX_LABEL_VALUE_BYTES: usize = 1 << 10;
/// Label names the host owns or Prometheus reserves (`__*` too).
pub const RESERVED_LABELS: &[&str] = &["plugin", "le", "quantile"];

/// A log message; longer ones are cut.
pub const MAX_LOG_MESSAGE_BYTES: usize = 8 << 10;
/// Fields on one log line; more are dropped.
pub const MAX_LOG_FIELDS: usize = 32;
/// A log field's name or value; longer ones are cut.
pub const MAX_LOG_FIELD_BYTES: usize = 1 << 10;

/// What one hook call (or `init`) may do through the capabilities. Host
/// waits do not count against a plugin's deadline, so without these a
/// plugin could keep a request (and the shared kv lock, the log, the
/// metrics lock) busy far past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallBudget {
    pub log_lines: u32,
    pub metric_updates: u32,
    pub kv_ops: u32,
    pub outbound_requests: u32,
}

impl CallBudget {
    /// What every call starts with.
    pub const PER_CALL: CallBudget = CallBudget {
        log_lines: 100,
        metric_updates: 1000,
        kv_ops: 1000,
        outbound_requests: 64,
    };

    /// Takes one from `counter`; false when it is spent.
    pub fn take(counter: &mut u32) -> bool {
        match counter.checked_sub(1) {
            Some(left) => {
                *counter = left;
                true
            }
            None => false,
        }
    }
}

impl Default for CallBudget {
    fn default() -> Self {
        CallBudget::PER_CALL
    }
}

/// Why the host refused something a plugin handed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail} ({reason})")]
pub struct Refusal {
    /// The capability (`context`, `log`, `metrics`, `kv`, `outbound`) or hook
    /// output (`request`, `response`).
    pub what: &'static str,
    /// A short, fixed label for metrics: `invalid_header`, `too_large`…
    pub reason: &'static str,
    /// What exactly, for the log.
    pub detail: String,
}

impl Refusal {
    pub fn new(what: &'static str, reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            what,
            reason,
            detail: detail.into(),
        }
    }

    /// Counts the refusal; logs it unless the same plugin had the same
    /// refusal logged within the last minute.
    pub fn report(&self, plugin: &str) {
        count(plugin, self.what, self.reason);
        if let Some(suppressed) = log_gate(plugin, self.what, self.reason, Instant::now()) {
            tracing::warn!(
                plugin,
                what = self.what,
                reason = self.reason,
                suppressed,
                "plugin refused: {}",
                self.detail
            );
        }
    }
}

/// Counts one refusal in `wasmgate_plugin_refusals_total`.
pub fn count(plugin: &str, what: &str, reason: &str) {
    crate::observe::metrics::metrics()
        .plugin_refusals
        .with_label_values(&[plugin, what, reason])
        .inc();
}

/// How often one plugin's same complaint is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Keys the log gate remembers; beyond it, it starts afresh.
const LOG_GATE_KEYS: usize = 10_000;

struct Gate {
    last: Instant,
    suppressed: u64,
}

type GateKey = (String, &'static str, &'static str);

static GATES: LazyLock<Mutex<HashMap<GateKey, Gate>>> = LazyLock::new(Mutex::default);

/// Whether to log an occurrence of `(plugin, what, reason)` at `now`: the
/// first one is, then at most one a minute. `Some(n)`: log, `n` occurrences
/// went unlogged since the last line; `None`: stay quiet.
pub fn log_gate(
    plugin: &str,
    what: &'static str,
    reason: &'static str,
    now: Instant,
) -> Option<u64> {
    // Nothing below can panic, so the lock is never poisoned; recover anyway.
    let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (plugin.to_string(), what, reason);
    match gates.get_mut(&key) {
        Some(gate) if now.saturating_duration_since(gate.last) < LOG_EVERY => {
            gate.suppressed += 1;
            None
        }
        Some(gate) => {
            let suppressed = std::mem::take(&mut gate.suppressed);
            gate.last = now;
            Some(suppressed)
        }
        None => {
            if gates.len() >= LOG_GATE_KEYS {
                gates.clear();
            }
            gates.insert(
                key,
                Gate {
                    last: now,
                    suppressed: 0,
                },
            );
            Some(0)
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

// ---- hook results ---------------------------------------------------------

/// Checks what a request hook returned.
pub fn check_request_action(action: &RequestAction) -> Result<(), Refusal> {
    match action {
        RequestAction::Continue(changes) => {
            check_header_changes("request", &changes.headers)?;
            if changes.path.is_some() || changes.query.is_some() {
                check_path_and_query(changes.path.as_deref(), changes.query.as_deref())?;
            }
            if let Some(body) = &changes.body {
                check_body("request", body.len())?;
            }
            Ok(())
        }
        RequestAction::Respond(response) => check_response(response),
    }
}

/// Checks a response a plugin produced (a request hook's `respond`).
pub fn check_response(response: &Response) -> Result<(), Refusal> {
    check_status(response.status)?;
    check_headers("response", &response.headers)?;
    if let Some(body) = &response.body {
        check_body("response", body.len())?;
    }
    Ok(())
}

/// Checks what a response hook returned.
pub fn check_response_changes(changes: &ResponseChanges) -> Result<(), Refusal> {
    if let Some(status) = changes.status {
        check_status(status)?;
    }
    check_header_changes("response", &changes.headers)?;
    if let Some(body) = &changes.body {
        check_body("response", body.len())?;
    }
    Ok(())
}

/// A final response status: 200–599 (a 1xx cannot end an exchange, and
/// 600 and up mean nothing to a client).
fn check_status(status: u16) -> Result<(), Refusal> {
    if (200..=599).contains(&status) {
        Ok(())
    } else {
        Err(Refusal::new(
            "response",
            "invalid_status",
            format!("status {status} is not a final HTTP status (200-599)"),
        ))
    }
}

fn check_body(what: &'static str, len: usize) -> Result<(), Refusal> {
    if len > MAX_BODY_BYTES {
        return Err(Refusal::new(
            what,
            "body_too_large",
            format!("a body of {len} bytes (at most {MAX_BODY_BYTES})"),
        ));
    }
    Ok(())
}

/// A path (must start with `/`) and query a request hook sets: valid in a
/// URI, with nothing lost in parsing (no `?` in the path, no `#`).
fn check_path_and_query(path: Option<&str>, query: Option<&str>) -> Result<(), Refusal> {
    let invalid = |detail: String| Err(Refusal::new("request", "invalid_path", detail));
    let path = path.unwrap_or("/");
    let query = query.filter(|q| !q.is_empty());
    let len = path.len() + query.map_or(0, |q| q.len() + 1);
    if len > MAX_PATH_BYTES {
        return invalid(format!(
            "a path and query of {len} bytes (at most {MAX_PATH_BYTES})"
        ));
    }
    if !path.starts_with('/') {
        return invalid(format!("path {:?} does not start with `/`", clip(path)));
    }
    let text = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    match http::uri::PathAndQuery::try_from(text.as_str()) {
        Ok(parsed) if parsed.path() == path && parsed.query() == query => Ok(()),
        _ => invalid(format!(
            "path {:?} with query {:?} is not a valid request target",
            clip(path),
            query.map(clip)
        )),
    }
}

/// A header list a plugin produced: bounded, every name and value valid HTTP.
fn check_headers(what: &'static str, headers: &[(String, String)]) -> Result<(), Refusal> {
    check_header_count(what, headers.len(), headers_bytes(headers))?;
    for (name, value) in headers {
        check_header(what, name, Some(value))?;
    }
    Ok(())
}

/// Header edits a plugin returned: bounded, every name and value valid HTTP.
fn check_header_changes(what: &'static str, changes: &HeaderChanges) -> Result<(), Refusal> {
    let count = changes.remove.len() + changes.set.len() + changes.append.len();
    let bytes = changes.remove.iter().map(String::len).sum::<usize>()
        + headers_bytes(&changes.set)
        + headers_bytes(&changes.append);
    check_header_count(what, count, bytes)?;
    for name in &changes.remove {
        check_header(what, name, None)?;
    }
    for (name, value) in changes.set.iter().chain(&changes.append) {
        check_header(what, name, Some(value))?;
    }
    Ok(())
}

fn headers_bytes(headers: &[(String, String)]) -> usize {
    headers.iter().map(|(n, v)| n.len() + v.len()).sum()
}

fn check_header_count(what: &'static str, count: usize, bytes: usize) -> Result<(), Refusal> {
    if count > MAX_HEADERS {
        return Err(Refusal::new(
            what,
            "too_many_headers",
            format!("{count} headers (at most {MAX_HEADERS})"),
        ));
    }
    if bytes > MAX_HEADER_BYTES {
        return Err(Refusal::new(
            what,
            "headers_too_large",
            format!("{bytes} bytes of headers (at most {MAX_HEADER_BYTES})"),
        ));
    }
    Ok(())
}

fn check_header(what: &'static str, name: &str, value: Option<&str>) -> Result<(), Refusal> {
    if !is_header_name(name.as_bytes()) {
        return Err(Refusal::new(
            what,
            "invalid_header",
            format!("invalid header name {:?}", clip(name)),
        ));
    }
    if let Some(value) = value {
        if !is_header_value(value.as_bytes()) {
            return Err(Refusal::new(
                what,
                "invalid_header",
                format!("invalid value for header `{}`", clip(name)),
            ));
        }
    }
    Ok(())
}

/// Whether `http` accepts `name` as a header name: 1 to 65 535 bytes of
/// RFC 9110 token characters (any case). Checked here without building a
/// `HeaderName`, which would allocate a copy of every name outside the
/// standard set only to drop it: the edit is parsed once, when applied.
fn is_header_name(name: &[u8]) -> bool {
    (1..=usize::from(u16::MAX)).contains(&name.len())
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

/// Whether `http` accepts `value` as a header value (no control character
/// but tab, no DEL), without building a `HeaderValue` (see [`is_header_name`]).
fn is_header_value(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

/// At most 64 bytes of `text`, for messages about it.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

// ---- capability calls -----------------------------------------------------

/// Whether `context.set(key, value)` fits in `context`.
pub fn check_context_set(context: &RequestContext, key: &str, value: &str) -> Result<(), Refusal> {
    let refuse = |reason, detail: String| Err(Refusal::new("context", reason, detail));
    if key.len() > MAX_CONTEXT_KEY_BYTES {
        return refuse(
            "key_too_large",
            format!(
                "a key of {} bytes (at most {MAX_CONTEXT_KEY_BYTES})",
                key.len()
            ),
        );
    }
    if value.len() > MAX_CONTEXT_VALUE_BYTES {
        return refuse(
            "value_too_large",
            format!(
                "a value of {} bytes at `{}` (at most {MAX_CONTEXT_VALUE_BYTES})",
                value.len(),
                clip(key)
            ),
        );
    }
    let replaced = context.get(key).map(|old| key.len() + old.len());
    if replaced.is_none() && context.len() >= MAX_CONTEXT_ENTRIES {
        return refuse(
            "context_too_large",
            format!("more than {MAX_CONTEXT_ENTRIES} entries"),
        );
    }
    let bytes: usize = context
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        - replaced.unwrap_or(0)
        + key.len()
        + value.len();
    if bytes > MAX_CONTEXT_BYTES {
        return refuse(
            "context_too_large",
            format!("{bytes} bytes of context (at most {MAX_CONTEXT_BYTES})"),
        );
    }
    Ok(())
}

/// A kv key, value and time to live.
pub fn check_kv(key: &str, value_len: Option<usize>, ttl_ms: Option<u64>) -> Result<(), Refusal> {
    let refuse = |reason, detail: String| Err(Refusal::new("kv", reason, detail));
    if key.len() > MAX_KV_KEY_BYTES {
        return refuse(
            "key_too_large",
            format!("a key of {} bytes (at most {MAX_KV_KEY_BYTES})", key.len()),
        );
    }
    if let Some(len) = value_len.filter(|&len| len > MAX_KV_VALUE_BYTES) {
        return refuse(
            "value_too_large",
            format!("a value of {len} bytes (at most {MAX_KV_VALUE_BYTES})"),
        );
    }
    if let Some(ms) = ttl_ms.filter(|&ms| Duration::from_millis(ms) > MAX_KV_TTL) {
        return refuse(
            "ttl_too_large",
            format!("a ttl of {ms} ms (at most {} ms)", MAX_KV_TTL.as_millis()),
        );
    }
    Ok(())
}

/// An outbound request's headers and body.
pub fn check_outbound(request: &OutboundRequest) -> Result<(), Refusal> {
    check_outbound_parts(&request.headers, request.body.as_ref().map(Vec::len))
}

/// [`check_outbound`] on an outbound request's headers and body length, for
/// a runtime (Proxy-Wasm) that holds them before it builds the request.
pub fn check_outbound_parts(
    headers: &[(String, String)],
    body_len: Option<usize>,
) -> Result<(), Refusal> {
    check_headers("outbound", headers)?;
    if let Some(len) = body_len {
        check_body("outbound", len)?;
    }
    Ok(())
}

/// A metric name (as the plugin wrote it) with anything outside
/// `[a-zA-Z0-9_]` replaced by `_`: the part after `wasmgate_plugin_`.
pub fn sanitise_metric_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A plugin metric's name, labels and value as Prometheus accepts them:
/// label names sanitised like metric names must then be non-empty, start
/// with a letter or `_`, be unique and not reserved ([`RESERVED_LABELS`],
/// `__*`); a histogram value must be finite.
pub fn check_metric(name: &str, labels: &[(String, String)], value: f64) -> Result<(), Refusal> {
    let refuse = |reason, detail: String| Err(Refusal::new("metrics", reason, detail));
    if name.is_empty() || name.len() > MAX_METRIC_NAME_BYTES {
        return refuse(
            "invalid_name",
            format!(
                "a metric name of {} bytes (1 to {MAX_METRIC_NAME_BYTES})",
                name.len()
            ),
        );
    }
    if !value.is_finite() {
        return refuse(
            "invalid_value",
            format!("value {value} of `{}`", clip(name)),
        );
    }
    if labels.len() > MAX_METRIC_LABELS {
        return refuse(
            "too_many_labels",
            format!(
                "{} labels on `{}` (at most {MAX_METRIC_LABELS})",
                labels.len(),
                clip(name)
            ),
        );
    }
    let mut seen: Vec<String> = Vec::with_capacity(labels.len());
    for (label, value) in labels {
        let clean = sanitise_metric_name(label);
        let starts_well = clean
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !starts_well || clean.len() > MAX_LABEL_NAME_BYTES {
            return refuse(
                "invalid_label",
                format!("label name {:?} on `{}`", clip(label), clip(name)),
            );
        }
        if RESERVED_LABELS.contains(&clean.as_str()) || clean.starts_with("__") {
            return refuse(
                "reserved_label",
                format!("label name `{clean}` on `{}` is reserved", clip(name)),
            );
        }
        if seen.contains(&clean) {
            return refuse(
                "duplicate_label",
                format!("label `{clean}` twice on `{}`", clip(name)),
            );
        }
        if value.len() > MAX_LABEL_VALUE_BYTES {
            return refuse(
                "label_value_too_large",
                format!(
                    "a value of {} bytes for label `{clean}` (at most {MAX_LABEL_VALUE_BYTES})",
                    value.len()
                ),
            );
        }
        seen.push(clean);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::component::bindings::RequestChanges;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn changes(headers: HeaderChanges) -> RequestAction {
        RequestAction::Continue(RequestChanges {
            headers,
            path: None,
            query: None,
            body: None,
        })
    }

    fn no_headers() -> HeaderChanges {
        HeaderChanges {
            remove: vec![],
            set: vec![],
            append: vec![],
        }
    }

    fn reason(result: Result<(), Refusal>) -> &'static str {
        result.map(|()| "ok").unwrap_or_else(|r| r.reason)
    }

    #[test]
    fn header_names_and_values_are_judged_as_http_parses_them() {
        for byte in 0..=u8::MAX {
            for name in [vec![byte], vec![b'x', byte], vec![byte, b'-', b'A']] {
                assert_eq!(
                    is_header_name(&name),
                    http::HeaderName::from_bytes(&name).is_ok(),
                    "name {name:?}"
                );
            }
            for value in [vec![byte], vec![b'v', byte, b' ']] {
                assert_eq!(
                    is_header_value(&value),
                    http::HeaderValue::from_bytes(&value).is_ok(),
                    "value {value:?}"
                );
            }
        }
        for len in [
            0,
            1,
            64,
            65,
            usize::from(u16::MAX),
            usize::from(u16::MAX) + 1,
        ] {
            let name = vec![b'a'; len];
            assert_eq!(
                is_header_name(&name),
                http::HeaderName::from_bytes(&name).is_ok(),
                "a name of {len} bytes"
            );
        }
        assert!(is_header_value(b""));
        assert!(http::HeaderValue::from_bytes(b"").is_ok());
    }

    #[test]
    fn header_edits_must_be_valid_http_and_bounded() {
        let set = |list: &[(&str, &str)]| {
            changes(HeaderChanges {
                set: pairs(list),
                ..no_headers()
            })
        };
        assert_eq!(reason(check_request_action(&set(&[("x-ok", "1")]))), "ok");
        assert_eq!(
            reason(check_request_action(&set(&[("bad name", "1")]))),
            "invalid_header"
        );
        assert_eq!(
            reason(check_request_action(&set(&[("x-bad", "a\r\nb")]))),
            "invalid_header"
        );
        let many = changes(HeaderChanges {
            append: (0..MAX_HEADERS + 1)
                .map(|i| (format!("x-{i}"), "v".into()))
                .collect(),
            ..no_headers()
        });
        assert_eq!(reason(check_request_action(&many)), "too_many_headers");
        let big = set(&[("x-big", &"v".repeat(MAX_HEADER_BYTES))]);
        assert_eq!(reason(check_request_action(&big)), "headers_too_large");
    }

    #[test]
    fn statuses_must_be_final_http_statuses() {
        let respond = |status| {
            RequestAction::Respond(Response {
                status,
                headers: vec![],
                body: None,
            })
        };
        for status in [0, 99, 100, 101, 600, 1000] {
            assert_eq!(
                reason(check_request_action(&respond(status))),
                "invalid_status",
                "{status}"
            );
        }
        for status in [200, 404, 599] {
            assert_eq!(reason(check_request_action(&respond(status))), "ok");
        }
        let change = |status| ResponseChanges {
            status: Some(status),
            headers: no_headers(),
            body: None,
        };
        assert_eq!(reason(check_response_changes(&change(0))), "invalid_status");
        assert_eq!(reason(check_response_changes(&change(201))), "ok");
    }

    #[test]
    fn paths_must_start_with_a_slash_and_survive_parsing() {
        let path = |path: Option<&str>, query: Option<&str>| {
            RequestAction::Continue(RequestChanges {
                headers: no_headers(),
                path: path.map(str::to_string),
                query: query.map(str::to_string),
                body: None,
            })
        };
        let check = |p, q| reason(check_request_action(&path(p, q)));
        assert_eq!(check(Some("/a/b"), Some("x=1")), "ok");
        assert_eq!(check(None, Some("")), "ok");
        assert_eq!(check(Some("no-slash"), None), "invalid_path");
        assert_eq!(check(Some("http://evil/"), None), "invalid_path");
        assert_eq!(check(Some("/a?b"), None), "invalid_path");
        assert_eq!(check(Some("/a#b"), None), "invalid_path");
        assert_eq!(check(Some("/a b"), None), "invalid_path");
        assert_eq!(check(Some("/"), Some("a\nb")), "invalid_path");
        assert_eq!(check(Some("/"), Some("a#b")), "invalid_path");
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(check(Some(&long), None), "invalid_path");
    }

    #[test]
    fn bodies_are_bounded() {
        let respond = RequestAction::Respond(Response {
            status: 200,
            headers: vec![],
            body: Some(vec![0; MAX_BODY_BYTES + 1]),
        });
        assert_eq!(reason(check_request_action(&respond)), "body_too_large");
    }

    #[test]
    fn metric_labels_follow_prometheus_rules() {
        let check = |labels: &[(&str, &str)]| reason(check_metric("hits", &pairs(labels), 1.0));
        assert_eq!(check(&[("route", "r"), ("status-code", "200")]), "ok");
        for reserved in ["plugin", "le", "quantile", "__name__", "__x"] {
            assert_eq!(check(&[(reserved, "x")]), "reserved_label", "{reserved}");
        }
        for invalid in ["", "1abc", &"a".repeat(MAX_LABEL_NAME_BYTES + 1)] {
            assert_eq!(check(&[(invalid, "x")]), "invalid_label", "{invalid}");
        }
        assert_eq!(check(&[("a-b", "1"), ("a_b", "2")]), "duplicate_label");
        let value = "v".repeat(MAX_LABEL_VALUE_BYTES + 1);
        assert_eq!(check(&[("a", &value)]), "label_value_too_large");
        let many: Vec<(String, String)> = (0..=MAX_METRIC_LABELS)
            .map(|i| (format!("l{i}"), "v".into()))
            .collect();
        assert_eq!(reason(check_metric("hits", &many, 1.0)), "too_many_labels");
        assert_eq!(reason(check_metric("", &[], 1.0)), "invalid_name");
        let long = "n".repeat(MAX_METRIC_NAME_BYTES + 1);
        assert_eq!(reason(check_metric(&long, &[], 1.0)), "invalid_name");
        assert_eq!(reason(check_metric("h", &[], f64::NAN)), "invalid_value");
        assert_eq!(
            reason(check_metric("h", &[], f64::INFINITY)),
            "invalid_value"
        );
    }

    #[test]
    fn context_is_bounded() {
        let mut context = RequestContext::new();
        let big_key = "k".repeat(MAX_CONTEXT_KEY_BYTES + 1);
        assert_eq!(
            reason(check_context_set(&context, &big_key, "v")),
            "key_too_large"
        );
        let big_value = "v".repeat(MAX_CONTEXT_VALUE_BYTES + 1);
        assert_eq!(
            reason(check_context_set(&context, "k", &big_value)),
            "value_too_large"
        );
        for i in 0..MAX_CONTEXT_ENTRIES {
            let key = format!("k{i}");
            assert_eq!(reason(check_context_set(&context, &key, "v")), "ok");
            context.insert(key, "v".into());
        }
        assert_eq!(
            reason(check_context_set(&context, "new", "v")),
            "context_too_large"
        );
        assert_eq!(
            reason(check_context_set(&context, "k1", "w")),
            "ok",
            "replacing is fine"
        );
        let mut context = RequestContext::new();
        let value = "v".repeat(MAX_CONTEXT_VALUE_BYTES);
        for i in 0.. {
            let key = format!("k{i}");
            if let Err(refusal) = check_context_set(&context, &key, &value) {
                assert_eq!(refusal.reason, "context_too_large");
                break;
            }
            context.insert(key, value.clone());
        }
        let bytes: usize = context.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(bytes <= MAX_CONTEXT_BYTES);
    }

    #[test]
    fn kv_keys_values_and_ttls_are_bounded() {
        assert_eq!(reason(check_kv("k", Some(1), Some(1000))), "ok");
        let key = "k".repeat(MAX_KV_KEY_BYTES + 1);
        assert_eq!(reason(check_kv(&key, None, None)), "key_too_large");
        assert_eq!(
            reason(check_kv("k", Some(MAX_KV_VALUE_BYTES + 1), None)),
            "value_too_large"
        );
        assert_eq!(reason(check_kv("k", None, Some(u64::MAX))), "ttl_too_large");
    }

    #[test]
    fn the_log_gate_lets_one_line_a_minute_through_per_plugin_and_reason() {
        let start = Instant::now();
        let gate = |plugin, reason, after| log_gate(plugin, "test", reason, start + after);
        assert_eq!(gate("gate-a", "r1", Duration::ZERO), Some(0));
        assert_eq!(gate("gate-a", "r1", Duration::from_secs(1)), None);
        assert_eq!(gate("gate-a", "r1", Duration::from_secs(2)), None);
        assert_eq!(gate("gate-a", "r2", Duration::from_secs(2)), Some(0));
        assert_eq!(gate("gate-b", "r1", Duration::from_secs(2)), Some(0));
        assert_eq!(gate("gate-a", "r1", LOG_EVERY), Some(2));
        assert_eq!(
            gate("gate-a", "r1", LOG_EVERY + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut text = "ééé".to_string();
        assert!(truncate(&mut text, 3));
        assert_eq!(text, "é");
        let mut short = "ab".to_string();
        assert!(!truncate(&mut short, 3));
    }

    #[test]
    fn budgets_run_out() {
        let mut budget = CallBudget::PER_CALL;
        for _ in 0..CallBudget::PER_CALL.outbound_requests {
            assert!(CallBudget::take(&mut budget.outbound_requests));
        }
        assert!(!CallBudget::take(&mut budget.outbound_requests));
    }
}
