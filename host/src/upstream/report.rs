//! What operators see of upstreams: Prometheus gauges in the process-wide
//! registry (set from live state at scrape time), readiness, and the admin
//! JSON.
//!
//! - `wasmgate_upstream_circuit_state{upstream}`: 0 closed, 1 open, 2 half-open.
//! - `wasmgate_upstream_target_healthy{upstream,target}`: 1 healthy, 0 not.

use super::{Upstream, UpstreamDirectory};
use crate::observe::metrics::Series;
use prometheus::IntGaugeVec;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

struct Gauges {
    circuit: IntGaugeVec,
    healthy: IntGaugeVec,
}

static GAUGES: LazyLock<Gauges> = LazyLock::new(|| {
    let series = Series(&crate::observe::metrics::metrics().registry);
    let circuit = series.gauge(
        "wasmgate_upstream_circuit_state",
        "Circuit breaker state per upstream: 0 closed, 1 open, 2 half-open",
        &["upstream"],
    );
    let healthy = series.gauge(
        "wasmgate_upstream_target_healthy",
        "Whether a target gets traffic (active checks passing, not ejected)",
        &["upstream", "target"],
    );
    Gauges { circuit, healthy }
});

/// Sets the gauges from the current upstreams; call before gathering.
pub fn refresh(directory: &UpstreamDirectory) {
    let gauges = &*GAUGES;
    for (name, upstream) in directory.all().iter() {
        gauges
            .circuit
            .with_label_values(&[name.as_str()])
            .set(upstream.circuit_state() as i64);
        for target in &upstream.targets {
            gauges
                .healthy
                .with_label_values(&[name.as_str(), target.authority.as_str()])
                .set(i64::from(target.health.is_healthy()));
        }
    }
}

/// Drops the series of upstreams and targets a reload removed.
pub(super) fn forget_removed(
    previous: &HashMap<String, Arc<Upstream>>,
    current: &HashMap<String, Arc<Upstream>>,
) {
    let gauges = &*GAUGES;
    for (name, upstream) in previous {
        let kept = current.get(name);
        if kept.is_none() {
            let _ = gauges.circuit.remove_label_values(&[name.as_str()]);
        }
        for target in &upstream.targets {
            let still =
                kept.is_some_and(|u| u.targets.iter().any(|t| t.authority == target.authority));
            if !still {
                let _ = gauges
                    .healthy
                    .remove_label_values(&[name.as_str(), target.authority.as_str()]);
            }
        }
    }
}

/// Names of the upstreams with no healthy target, sorted.
pub fn unready(directory: &UpstreamDirectory) -> Vec<String> {
    let mut names: Vec<String> = directory
        .all()
        .iter()
        .filter(|(_, u)| !u.has_healthy_target())
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
}

/// Every upstream's balancing, breaker state and targets, sorted by name.
pub fn json(directory: &UpstreamDirectory) -> serde_json::Value {
    let all = directory.all();
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let upstreams: Vec<_> = names
        .into_iter()
        .map(|name| {
            let u = &all[name];
            json!({
                "name": name,
                "balance": u.balancer.strategy,
                "circuit_state": u.circuit_state().as_str(),
                "targets": u.targets.iter().map(|t| json!({
                    "address": t.authority.as_str(),
                    "weight": t.weight,
                    "healthy": t.health.is_healthy(),
                    "ejected": t.health.is_ejected(),
                    "outstanding": super::Weighed::outstanding(t),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!(upstreams)
}
