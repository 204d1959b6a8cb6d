//! Compares what a plugin did with what a case expects, field by field, and
//! records each difference as expected-versus-actual text for the report.

use super::cases::{
    CaseBody, Expect, ExpectHeaderChanges, ExpectLog, ExpectMetric, ExpectOutbound, Headers,
    LogLevelName, Scalar,
};
use super::sandbox::{LogLine, MetricUpdate};
use crate::plugin::component::bindings::{
    HeaderChanges, LogLevel, OutboundRequest, RequestAction, Response, ResponseChanges,
};
use crate::plugin::PluginFault;
use std::collections::{BTreeMap, HashMap};

/// One expected-versus-actual difference.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// What differs, e.g. `respond.status` or `step 2: kv.bucket`.
    pub field: String,
    pub expected: String,
    pub actual: String,
}

/// What the hooks of one request produced.
pub struct Observed {
    pub request: Result<RequestAction, PluginFault>,
    /// The response hook's result, if it ran.
    pub response: Option<Result<ResponseChanges, PluginFault>>,
    /// Why the response hook did not run, when the case gave a response.
    pub response_skipped: Option<&'static str>,
    pub context: HashMap<String, String>,
    pub kv: HashMap<String, Vec<u8>>,
    pub logs: Vec<LogLine>,
    pub outbound: Vec<OutboundRequest>,
    pub metrics: Vec<MetricUpdate>,
}

/// Collects the mismatches of one request, prefixed with its step.
pub struct Checker {
    prefix: String,
    pub mismatches: Vec<Mismatch>,
}

impl Checker {
    /// A checker whose fields are prefixed with `prefix` (e.g. `step 2: `).
    pub fn new(prefix: String) -> Self {
        Checker {
            prefix,
            mismatches: Vec::new(),
        }
    }

    /// Records a difference.
    pub fn differ(&mut self, field: &str, expected: impl Into<String>, actual: impl Into<String>) {
        self.mismatches.push(Mismatch {
            field: format!("{}{field}", self.prefix),
            expected: expected.into(),
            actual: actual.into(),
        });
    }

    fn equal<T: PartialEq>(
        &mut self,
        field: &str,
        expected: &Option<T>,
        actual: &T,
        show: impl Fn(&T) -> String,
    ) {
        if let Some(expected) = expected {
            if expected != actual {
                self.differ(field, show(expected), show(actual));
            }
        }
    }

    /// Checks everything `expect` gives against what was observed.
    pub fn check(&mut self, expect: &Expect, observed: &Observed) {
        self.outcome(expect, observed);
        if let Some(expected) = &expect.context {
            self.entries("context", expected, |key| {
                observed.context.get(key).cloned()
            });
        }
        if let Some(expected) = &expect.kv {
            self.entries("kv", expected, |key| {
                observed
                    .kv
                    .get(key)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
        }
        if let Some(expected) = &expect.logs {
            self.list(
                "logs",
                expected,
                &observed.logs,
                log_matches,
                show_expected_log,
                show_log,
            );
        }
        if let Some(expected) = &expect.outbound {
            self.list(
                "outbound",
                expected,
                &observed.outbound,
                outbound_matches,
                show_expected_outbound,
                show_outbound,
            );
        }
        if let Some(expected) = &expect.metrics {
            self.list(
                "metrics",
                expected,
                &observed.metrics,
                metric_matches,
                show_expected_metric,
                show_metric,
            );
        }
    }

    /// The hooks' outcome: the fault, the request action, the response edits.
    fn outcome(&mut self, expect: &Expect, observed: &Observed) {
        let fault = observed
            .request
            .as_ref()
            .err()
            .or_else(|| observed.response.as_ref().and_then(|r| r.as_ref().err()));
        match (&expect.fault, fault) {
            (Some(wanted), Some(fault)) if fault.to_string().contains(wanted.as_str()) => return,
            (Some(wanted), _) => {
                let actual = match fault {
                    Some(fault) => format!("fault: {fault}"),
                    None => show_action(observed.request.as_ref().ok()),
                };
                return self.differ("fault", format!("a fault containing {wanted:?}"), actual);
            }
            (None, Some(fault)) => {
                return self.differ("outcome", "no fault", format!("fault: {fault}"))
            }
            (None, None) => {}
        }
        let Ok(action) = &observed.request else {
            return;
        };
        match (action, &expect.continue_, &expect.respond) {
            (RequestAction::Continue(changes), Some(expected), _) => {
                if let Some(headers) = &expected.headers {
                    self.header_changes("continue.headers", headers, &changes.headers);
                }
                self.equal(
                    "continue.path",
                    &expected.path.clone().map(Some),
                    &changes.path,
                    show_opt,
                );
                self.equal(
                    "continue.query",
                    &expected.query.clone().map(Some),
                    &changes.query,
                    show_opt,
                );
                self.body("continue.body", expected.body(), changes.body.as_deref());
            }
            (RequestAction::Respond(response), _, Some(expected)) => {
                self.equal(
                    "respond.status",
                    &expected.status,
                    &response.status,
                    u16::to_string,
                );
                if let Some(headers) = &expected.headers {
                    self.present_headers("respond.headers", headers, &response.headers);
                }
                self.body("respond.body", expected.body(), response.body.as_deref());
            }
            (actual, Some(_), _) => self.differ("outcome", "continue", show_action(Some(actual))),
            (actual, _, Some(_)) => self.differ("outcome", "respond", show_action(Some(actual))),
            _ => {}
        }
        if let Some(expected) = &expect.response {
            match (&observed.response, observed.response_skipped) {
                (Some(Ok(changes)), _) => {
                    self.equal(
                        "response.status",
                        &expected.status.map(Some),
                        &changes.status,
                        |s| s.map_or("(unchanged)".into(), |s| s.to_string()),
                    );
                    if let Some(headers) = &expected.headers {
                        self.header_changes("response.headers", headers, &changes.headers);
                    }
                    self.body("response.body", expected.body(), changes.body.as_deref());
                }
                (_, Some(why)) => self.differ(
                    "response",
                    "the response hook to run",
                    format!("not run: {why}"),
                ),
                _ => {}
            }
        }
    }

    fn header_changes(
        &mut self,
        field: &str,
        expected: &ExpectHeaderChanges,
        actual: &HeaderChanges,
    ) {
        let sorted = |headers: &[(String, String)]| {
            let mut h: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            h.sort();
            h
        };
        for (name, expected, actual) in [
            ("set", &expected.set, &actual.set),
            ("append", &expected.append, &actual.append),
        ] {
            if let Some(expected) = expected {
                let (want, got) = (sorted(&expected.0), sorted(actual));
                if want != got {
                    self.differ(
                        &format!("{field}.{name}"),
                        show_headers(&want),
                        show_headers(&got),
                    );
                }
            }
        }
        if let Some(expected) = &expected.remove {
            let lower = |names: &[String]| {
                let mut n: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
                n.sort();
                n
            };
            let (want, got) = (lower(expected), lower(&actual.remove));
            if want != got {
                self.differ(
                    &format!("{field}.remove"),
                    format!("{want:?}"),
                    format!("{got:?}"),
                );
            }
        }
    }

    fn present_headers(&mut self, field: &str, expected: &Headers, actual: &[(String, String)]) {
        for (name, value) in &expected.0 {
            let values: Vec<&str> = actual
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            if !values.contains(&value.as_str()) {
                let got = if values.is_empty() {
                    "(missing)".to_string()
                } else {
                    values
                        .iter()
                        .map(|v| format!("{v:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                self.differ(&format!("{field}.{name}"), format!("{value:?}"), got);
            }
        }
    }

    fn body(&mut self, field: &str, expected: CaseBody<'_>, actual: Option<&[u8]>) {
        let shown = || actual.map_or("(none)".to_string(), show_bytes);
        if let Some(text) = expected.text {
            if actual != Some(text.as_bytes()) {
                self.differ(field, format!("{text:?}"), shown());
            }
        }
        if let Some(json) = expected.json {
            let parsed = actual.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
            if parsed.as_ref() != Some(json) {
                let got = parsed.map_or_else(shown, |v| v.to_string());
                self.differ(&format!("{field}_json"), json.to_string(), got);
            }
        }
    }

    fn entries(
        &mut self,
        field: &str,
        expected: &BTreeMap<String, Option<Scalar>>,
        actual: impl Fn(&str) -> Option<String>,
    ) {
        for (key, want) in expected {
            let got = actual(key);
            if want.as_ref().map(|s| &s.0) != got.as_ref() {
                let show =
                    |v: Option<&String>| v.map_or("(absent)".to_string(), |v| format!("{v:?}"));
                self.differ(
                    &format!("{field}.{key}"),
                    show(want.as_ref().map(|s| &s.0)),
                    show(got.as_ref()),
                );
            }
        }
    }

    fn list<E, A>(
        &mut self,
        field: &str,
        expected: &[E],
        actual: &[A],
        matches: fn(&E, &A) -> bool,
        show_expected: fn(&E) -> String,
        show_actual: fn(&A) -> String,
    ) {
        let same = expected.len() == actual.len()
            && expected.iter().zip(actual).all(|(e, a)| matches(e, a));
        if !same {
            let lines = |items: Vec<String>| {
                if items.is_empty() {
                    "(none)".to_string()
                } else {
                    items.join("\n")
                }
            };
            self.differ(
                field,
                lines(expected.iter().map(show_expected).collect()),
                lines(actual.iter().map(show_actual).collect()),
            );
        }
    }
}

fn level_name(level: LogLevel) -> LogLevelName {
    match level {
        LogLevel::Trace => LogLevelName::Trace,
        LogLevel::Debug => LogLevelName::Debug,
        LogLevel::Info => LogLevelName::Info,
        LogLevel::Warn => LogLevelName::Warn,
        LogLevel::Error => LogLevelName::Error,
    }
}

fn log_matches(expected: &ExpectLog, actual: &LogLine) -> bool {
    expected.message == actual.message
        && expected.level.is_none_or(|l| l == level_name(actual.level))
        && expected
            .fields
            .as_ref()
            .is_none_or(|f| f.0 == actual.fields)
}

fn show_expected_log(log: &ExpectLog) -> String {
    let level = log
        .level
        .map_or("*".to_string(), |l| format!("{l:?}").to_lowercase());
    let fields = log
        .fields
        .as_ref()
        .map_or(String::new(), |f| format!(" {}", show_headers(&f.0)));
    format!("{level}: {:?}{fields}", log.message)
}

fn show_log(log: &LogLine) -> String {
    let level = format!("{:?}", level_name(log.level)).to_lowercase();
    let fields = if log.fields.is_empty() {
        String::new()
    } else {
        format!(" {}", show_headers(&log.fields))
    };
    format!("{level}: {:?}{fields}", log.message)
}

fn outbound_matches(expected: &ExpectOutbound, actual: &OutboundRequest) -> bool {
    let body_ok = match expected.body().bytes() {
        Some(bytes) if expected.body_json.is_some() => {
            let parsed = actual
                .body
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
            parsed.as_ref() == expected.body_json.as_ref() || Some(&bytes) == actual.body.as_ref()
        }
        Some(bytes) => Some(&bytes) == actual.body.as_ref(),
        None => true,
    };
    expected
        .upstream
        .as_ref()
        .is_none_or(|u| *u == actual.upstream)
        && expected
            .method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&actual.method))
        && expected
            .path
            .as_ref()
            .is_none_or(|p| *p == actual.path_and_query)
        && expected.headers.as_ref().is_none_or(|h| {
            h.0.iter().all(|(n, v)| {
                actual
                    .headers
                    .iter()
                    .any(|(an, av)| an.eq_ignore_ascii_case(n) && av == v)
            })
        })
        && body_ok
}

fn show_expected_outbound(o: &ExpectOutbound) -> String {
    let headers = o
        .headers
        .as_ref()
        .map_or(String::new(), |h| format!(" {}", show_headers(&h.0)));
    let body = o
        .body()
        .bytes()
        .map_or(String::new(), |b| format!(" body {}", show_bytes(&b)));
    format!(
        "{} {} {}{headers}{body}",
        o.upstream.as_deref().unwrap_or("*"),
        o.method.as_deref().unwrap_or("*"),
        o.path.as_deref().unwrap_or("*"),
    )
}

fn show_outbound(o: &OutboundRequest) -> String {
    let headers = if o.headers.is_empty() {
        String::new()
    } else {
        format!(" {}", show_headers(&o.headers))
    };
    let body = o
        .body
        .as_deref()
        .map_or(String::new(), |b| format!(" body {}", show_bytes(b)));
    format!(
        "{} {} {}{headers}{body}",
        o.upstream, o.method, o.path_and_query
    )
}

fn metric_matches(expected: &ExpectMetric, actual: &MetricUpdate) -> bool {
    let (kind_ok, value, labels) = match actual {
        MetricUpdate::Counter {
            name,
            value,
            labels,
        } => (
            expected.counter.as_ref() == Some(name),
            *value as f64,
            labels,
        ),
        MetricUpdate::Histogram {
            name,
            value,
            labels,
        } => (expected.histogram.as_ref() == Some(name), *value, labels),
        MetricUpdate::Gauge {
            name,
            value,
            labels,
        } => (expected.gauge.as_ref() == Some(name), *value, labels),
    };
    kind_ok
        && expected.value.is_none_or(|v| v == value)
        && expected.labels.as_ref().is_none_or(|l| l.0 == *labels)
}

fn show_expected_metric(m: &ExpectMetric) -> String {
    let (kind, name) = match (&m.counter, &m.histogram, &m.gauge) {
        (Some(name), _, _) => ("counter", name.as_str()),
        (None, Some(name), _) => ("histogram", name.as_str()),
        (None, None, Some(name)) => ("gauge", name.as_str()),
        (None, None, None) => ("metric", "*"),
    };
    let value = m.value.map_or("*".to_string(), |v| v.to_string());
    let labels = m
        .labels
        .as_ref()
        .map_or(String::new(), |l| format!(" {}", show_headers(&l.0)));
    format!("{kind} {name} {value}{labels}")
}

fn show_metric(m: &MetricUpdate) -> String {
    let (kind, name, value, labels) = match m {
        MetricUpdate::Counter {
            name,
            value,
            labels,
        } => ("counter", name, *value as f64, labels),
        MetricUpdate::Histogram {
            name,
            value,
            labels,
        } => ("histogram", name, *value, labels),
        MetricUpdate::Gauge {
            name,
            value,
            labels,
        } => ("gauge", name, *value, labels),
    };
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!(" {}", show_headers(labels))
    };
    format!("{kind} {name} {value}{labels}")
}

/// `{name: "value", ...}` in the given order.
fn show_headers(headers: &[(String, String)]) -> String {
    let items: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v:?}")).collect();
    format!("{{{}}}", items.join(", "))
}

fn show_bytes(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

fn show_opt(value: &Option<String>) -> String {
    value
        .as_ref()
        .map_or("(unchanged)".to_string(), |v| format!("{v:?}"))
}

/// A request action in one or a few lines, for an outcome mismatch.
fn show_action(action: Option<&RequestAction>) -> String {
    match action {
        None => "(no action)".into(),
        Some(RequestAction::Continue(changes)) => {
            let mut parts = vec!["continue".to_string()];
            let h = &changes.headers;
            if !h.set.is_empty() {
                parts.push(format!("set {}", show_headers(&h.set)));
            }
            if !h.append.is_empty() {
                parts.push(format!("append {}", show_headers(&h.append)));
            }
            if !h.remove.is_empty() {
                parts.push(format!("remove {:?}", h.remove));
            }
            if let Some(path) = &changes.path {
                parts.push(format!("path {path:?}"));
            }
            if let Some(query) = &changes.query {
                parts.push(format!("query {query:?}"));
            }
            if let Some(body) = &changes.body {
                parts.push(format!("body {}", show_bytes(body)));
            }
            parts.join(", ")
        }
        Some(RequestAction::Respond(Response {
            status,
            headers,
            body,
        })) => {
            let body = body
                .as_deref()
                .map_or(String::new(), |b| format!(", body {}", show_bytes(b)));
            format!("respond {status}, headers {}{body}", show_headers(headers))
        }
    }
}
