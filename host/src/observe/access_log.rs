//! One access-log line and the request metrics per client request.
//!
//! Lines are `tracing` events of the target [`TARGET`], so `RUST_LOG` filters
//! them and `--log-format json` makes them JSON objects whose `fields` hold
//! route, method, path, status, duration, upstream, who answered and the
//! trace id. The binary writes the same bytes without `tracing`'s formatter
//! ([`access_line`]); an embedder's subscriber gets the event.

use crate::observe::access_line::{self, Line, OptionalAddress};
use crate::observe::metrics::{metrics, status_class, RouteSeries, NO_ROUTE};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The `tracing` target of access-log lines.
pub const TARGET: &str = "wasmgate::access";

/// Who produced the response the client got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AnsweredBy {
    /// The gateway itself: no route, a limit, an upstream that failed.
    #[default]
    Gateway,
    /// The upstream (possibly edited by response hooks).
    Upstream,
    /// A plugin answered in its request hook (short-circuit).
    Plugin,
    /// A fail-closed plugin faulted; the client got 500.
    PluginFault,
}

impl AnsweredBy {
    /// The name logs and spans use.
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Gateway => "gateway",
            AnsweredBy::Upstream => "upstream",
            AnsweredBy::Plugin => "plugin",
            AnsweredBy::PluginFault => "plugin_fault",
        }
    }
}

/// What the proxy learns while serving a request, for the log line.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub answered_by: AnsweredBy,
    /// The plugin that answered or faulted.
    pub plugin: Option<String>,
    /// The upstream group the request was sent to.
    pub upstream: Option<String>,
    /// The server of that group that answered.
    pub upstream_target: Option<SocketAddr>,
}

/// Collects an [`Outcome`] across the steps of one request.
#[derive(Debug, Default)]
pub struct OutcomeCell(Mutex<Outcome>);

impl OutcomeCell {
    /// Applies `change` to the outcome recorded so far.
    pub fn update(&self, change: impl FnOnce(&mut Outcome)) {
        change(&mut self.0.lock().expect("outcome lock"));
    }

    /// The outcome recorded so far.
    pub fn take(&self) -> Outcome {
        std::mem::take(&mut self.0.lock().expect("outcome lock"))
    }
}

/// One finished request.
pub struct Entry<'a> {
    pub route: Option<&'a str>,
    /// The route's own series (`None` when no route matched).
    pub series: Option<&'a RouteSeries>,
    pub method: &'a http::Method,
    pub path: &'a str,
    pub status: http::StatusCode,
    pub duration: Duration,
    /// `ip:port`.
    pub client: &'a str,
    pub request_id: &'a str,
    /// Formatted only when the line is written.
    pub trace_id: u128,
    pub outcome: Outcome,
}

/// Counts the request in the metrics and writes its access-log line.
pub fn record(entry: Entry<'_>) {
    let route = entry.route.unwrap_or(NO_ROUTE);
    match entry.series {
        Some(series) => series.observe(entry.status, entry.duration),
        None => {
            let m = metrics();
            m.requests
                .with_label_values(&[route, status_class(entry.status)])
                .inc();
            m.request_duration
                .with_label_values(&[route])
                .observe(entry.duration.as_secs_f64());
        }
    }
    let outcome = &entry.outcome;
    let line = Line {
        route,
        method: entry.method.as_str(),
        path: entry.path,
        status: entry.status.as_u16(),
        duration_ms: entry.duration.as_secs_f64() * 1000.0,
        upstream: outcome.upstream.as_deref().unwrap_or(""),
        upstream_target: outcome.upstream_target,
        answered_by: outcome.answered_by.as_str(),
        plugin: outcome.plugin.as_deref().unwrap_or(""),
        client: entry.client,
        request_id: entry.request_id,
        trace_id: entry.trace_id,
    };
    if tracing::enabled!(target: TARGET, tracing::Level::INFO) && !access_line::write(&line) {
        emit(&line);
    }
}

/// The line as a `tracing` event, for whatever subscriber is installed.
pub(crate) fn emit(line: &Line<'_>) {
    tracing::info!(
        target: TARGET,
        route = line.route,
        method = %line.method,
        path = line.path,
        status = line.status,
        duration_ms = line.duration_ms,
        upstream = line.upstream,
        upstream_target = %OptionalAddress(line.upstream_target),
        answered_by = line.answered_by,
        plugin = line.plugin,
        client = %line.client,
        request_id = line.request_id,
        trace_id = %format_args!("{:032x}", line.trace_id),
        "{} {} {}",
        line.method,
        line.path,
        line.status,
    );
}
