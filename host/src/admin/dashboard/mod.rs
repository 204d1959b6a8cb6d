//! The operator's dashboard, served by the admin listener at `GET /`: one
//! page embedded in the binary (no CDN, works offline) that polls the admin
//! JSON endpoints: routes, plugins, upstreams, live traffic per route
//! (`/admin/stats`, sampled by [`traffic`]) and recent events
//! (`/admin/events`: reloads and plugin faults, newest first).

pub mod events;
pub mod traffic;

use crate::gateway::Shared;
use crate::http::body::{full, Body};
use crate::reload::Reloader;
use http::Response;
use prometheus::core::Collector;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::UNIX_EPOCH;

/// Reloads listed in the events.
const RECENT_RELOADS: usize = 50;

/// The page itself (HTML, CSS and JS in one file).
const PAGE: &str = include_str!("page.html");

/// `GET /`: the dashboard page.
pub fn page() -> Response<Body> {
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(
            "content-security-policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
        )
        .body(full(PAGE))
        .expect("static response parts are valid")
}

/// `GET /admin/stats`: the samples (oldest first) of each route the serving
/// config has (and of unmatched requests), and plugin fault counts by kind.
pub fn stats(shared: &Shared) -> Value {
    let gateway = shared.gateway.load();
    let serving: BTreeSet<&str> = (gateway.routes.iter().map(|r| &*r.name))
        .chain([crate::observe::metrics::NO_ROUTE])
        .collect();
    let mut routes = traffic::samples();
    routes.retain(|name, _| serving.contains(name.as_str()));
    let mut faults: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for family in crate::observe::metrics::metrics().plugin_faults.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            faults
                .entry(label("plugin"))
                .or_default()
                .insert(label("kind"), metric.get_counter().get_value() as u64);
        }
    }
    json!({
        "interval_ms": traffic::INTERVAL.as_millis() as u64,
        "routes": routes,
        "plugin_faults": faults,
    })
}

/// `GET /admin/events`: recent reload attempts and plugin faults, newest first.
pub fn events(reloader: &Reloader) -> Value {
    let reloads: Vec<Value> = reloader
        .events()
        .iter()
        .rev()
        .take(RECENT_RELOADS)
        .map(|e| {
            json!({
                "at_ms": e.at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default(),
                "ok": e.ok,
                "message": e.message,
            })
        })
        .collect();
    json!({ "reloads": reloads, "faults": events::recent_faults() })
}
