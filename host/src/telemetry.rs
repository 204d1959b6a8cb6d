//! Where plugin logs and metrics land in the gateway: `tracing` events tagged
//! with plugin and route, and Prometheus series labelled with the plugin.

use crate::plugin::bindings::LogLevel;
use crate::plugin::Telemetry;
use prometheus::{CounterVec, HistogramOpts, HistogramVec, Opts, Registry};
use std::collections::HashMap;
use std::sync::Mutex;

/// The gateway's [`Telemetry`]: logs through `tracing`, metrics into a registry.
pub struct GatewayTelemetry {
    registry: Registry,
    counters: Mutex<HashMap<String, CounterVec>>,
    histograms: Mutex<HashMap<String, HistogramVec>>,
}

impl GatewayTelemetry {
    /// Telemetry recording plugin metrics into `registry`.
    pub fn new(registry: Registry) -> Self {
        GatewayTelemetry {
            registry,
            counters: Mutex::default(),
            histograms: Mutex::default(),
        }
    }

    /// The registry plugin metrics are recorded in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// `wasmgate_plugin_<name>` with anything outside `[a-zA-Z0-9_]` replaced.
fn metric_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("wasmgate_plugin_{clean}")
}

/// Label names (`plugin` first, then the plugin's, sorted) and their values.
fn label_pairs(plugin: &str, labels: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let mut sorted: Vec<&(String, String)> = labels.iter().collect();
    sorted.sort();
    let names = std::iter::once("plugin".to_string())
        .chain(
            sorted
                .iter()
                .map(|(k, _)| metric_name(k).replace("wasmgate_plugin_", "")),
        )
        .collect();
    let values = std::iter::once(plugin.to_string())
        .chain(sorted.iter().map(|(_, v)| v.clone()))
        .collect();
    (names, values)
}

impl Telemetry for GatewayTelemetry {
    fn log(
        &self,
        plugin: &str,
        route: &str,
        level: LogLevel,
        message: &str,
        fields: &[(String, String)],
    ) {
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match level {
            LogLevel::Trace => tracing::trace!(plugin, route, fields, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, route, fields, "{message}"),
            LogLevel::Info => tracing::info!(plugin, route, fields, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, route, fields, "{message}"),
            LogLevel::Error => tracing::error!(plugin, route, fields, "{message}"),
        }
    }

    fn counter_add(&self, plugin: &str, name: &str, value: u64, labels: &[(String, String)]) {
        let (names, values) = label_pairs(plugin, labels);
        let full = metric_name(name);
        let mut counters = self.counters.lock().expect("metrics lock");
        let counter = counters.entry(full.clone()).or_insert_with(|| {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let vec = CounterVec::new(
                Opts::new(full.clone(), format!("plugin counter {name}")),
                &names,
            )
            .expect("valid metric name");
            if let Err(e) = self.registry.register(Box::new(vec.clone())) {
                tracing::warn!(plugin, metric = %full, "cannot register plugin counter: {e}");
            }
            vec
        });
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        match counter.get_metric_with_label_values(&values) {
            Ok(c) => c.inc_by(value as f64),
            Err(e) => tracing::debug!(plugin, metric = %full, "plugin counter dropped: {e}"),
        }
    }

    fn histogram_observe(&self, plugin: &str, name: &str, value: f64, labels: &[(String, String)]) {
        let (names, values) = label_pairs(plugin, labels);
        let full = metric_name(name);
        let mut histograms = self.histograms.lock().expect("metrics lock");
        let histogram = histograms.entry(full.clone()).or_insert_with(|| {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let vec = HistogramVec::new(
                HistogramOpts::new(full.clone(), format!("plugin histogram {name}")),
                &names,
            )
            .expect("valid metric name");
            if let Err(e) = self.registry.register(Box::new(vec.clone())) {
                tracing::warn!(plugin, metric = %full, "cannot register plugin histogram: {e}");
            }
            vec
        });
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        match histogram.get_metric_with_label_values(&values) {
            Ok(h) => h.observe(value),
            Err(e) => tracing::debug!(plugin, metric = %full, "plugin histogram dropped: {e}"),
        }
    }
}
