//! The gateway's own Prometheus series, in one process-wide registry that
//! plugin-defined metrics join too (exported by the admin listener).

use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::LazyLock;

/// Counters operators alert on.
pub struct GatewayMetrics {
    pub registry: Registry,
    /// Plugin faults by plugin and kind (trap, deadline, memory, config).
    pub plugin_faults: IntCounterVec,
    /// Hot-reload attempts by result (ok, error).
    pub reloads: IntCounterVec,
}

static METRICS: LazyLock<GatewayMetrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let plugin_faults = IntCounterVec::new(
        Opts::new(
            "wasmgate_plugin_faults_total",
            "Plugin calls that trapped, timed out or broke their memory cap",
        ),
        &["plugin", "kind"],
    )
    .expect("valid metric");
    let reloads = IntCounterVec::new(
        Opts::new(
            "wasmgate_reloads_total",
            "Hot-reload attempts of the config or plugin files",
        ),
        &["result"],
    )
    .expect("valid metric");
    registry
        .register(Box::new(plugin_faults.clone()))
        .expect("registered once");
    registry
        .register(Box::new(reloads.clone()))
        .expect("registered once");
    GatewayMetrics {
        registry,
        plugin_faults,
        reloads,
    }
});

/// The process-wide metrics.
pub fn metrics() -> &'static GatewayMetrics {
    &METRICS
}
