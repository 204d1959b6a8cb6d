//! Config of what keeps one plugin from costing other routes their time or
//! memory: the per-entry cap on concurrent calls, the per-entry fault
//! breaker, and the budget of the embedded kv store.
//!
//! Every field has a default (shown in README.md, "Isolation"); a plugin
//! entry may override `max_concurrent_calls` and `fault_breaker`.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The per-entry fault breaker: after `faults` faults within `window_ms`
/// (and at least `failure_ratio` of the calls since the oldest of them),
/// the entry is tripped for `cool_down_ms`: its requests are answered per
/// `on_error` without running the plugin. Then one call probes it: a success
/// closes the breaker, a fault trips it again.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultBreakerConfig {
    /// Faults within the window that trip the entry; 0 turns the breaker off.
    pub faults: u32,
    /// Share of the calls (since the oldest counted fault) that must have
    /// faulted too, so rare faults under heavy traffic do not trip it.
    pub failure_ratio: f64,
    /// How far back faults count.
    pub window_ms: u64,
    /// How long a tripped entry is skipped before one call probes it.
    pub cool_down_ms: u64,
}

impl Default for FaultBreakerConfig {
    fn default() -> Self {
        FaultBreakerConfig {
            faults: 5,
            failure_ratio: 0.5,
            window_ms: 10_000,
            cool_down_ms: 30_000,
        }
    }
}

/// The embedded kv store's memory budget. Keys are namespaced per plugin
/// (`<plugin>/<key>`); each namespace has its own budget, so one plugin's
/// entries (a cache) never push out another's (rate-limit buckets) unless
/// the whole store is over `max_bytes`, and then the largest namespace pays.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    /// Bytes the whole store may hold: keys, values and a fixed per-entry
    /// bookkeeping cost. Beyond it, expired entries go first, then the least
    /// recently used.
    pub max_bytes: usize,
    /// Bytes one plugin's namespace may hold (default: half of `max_bytes`).
    pub namespace_max_bytes: Option<usize>,
    /// Per-plugin overrides of `namespace_max_bytes`, by plugin name.
    pub namespaces: BTreeMap<String, usize>,
    /// How often expired entries are swept out in the background.
    pub sweep_interval_ms: u64,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            max_bytes: 64 << 20,
            namespace_max_bytes: None,
            namespaces: BTreeMap::new(),
            sweep_interval_ms: 1_000,
        }
    }
}

impl KvConfig {
    /// The budget of a namespace without an override.
    pub fn default_namespace_bytes(&self) -> usize {
        self.namespace_max_bytes.unwrap_or(self.max_bytes / 2)
    }
}

/// On error, the field's path (below the breaker's parent) and the message.
pub(super) fn check_breaker(
    at: &str,
    breaker: &FaultBreakerConfig,
) -> Result<(), (String, String)> {
    if !(0.0..=1.0).contains(&breaker.failure_ratio) {
        return Err((
            "fault_breaker.failure_ratio".into(),
            format!(
                "{at}fault_breaker.failure_ratio {} must be in [0, 1]",
                breaker.failure_ratio
            ),
        ));
    }
    if breaker.window_ms == 0 || breaker.cool_down_ms == 0 {
        return Err((
            "fault_breaker".into(),
            format!("{at}fault_breaker window_ms and cool_down_ms must be at least 1"),
        ));
    }
    Ok(())
}

/// On error, the field's path below `kv:` and the message.
pub(super) fn check_kv(kv: &KvConfig) -> Result<(), (String, String)> {
    if kv.max_bytes == 0 {
        return Err(("max_bytes".into(), "kv.max_bytes must be at least 1".into()));
    }
    if kv.sweep_interval_ms == 0 {
        return Err((
            "sweep_interval_ms".into(),
            "kv.sweep_interval_ms must be at least 1".into(),
        ));
    }
    let budgets = kv
        .namespace_max_bytes
        .map(|b| ("namespace_max_bytes".to_string(), "namespace_max_bytes", b))
        .into_iter()
        .chain((kv.namespaces.iter()).map(|(n, &b)| (format!("namespaces.{n}"), n.as_str(), b)));
    for (path, field, bytes) in budgets {
        if bytes == 0 || bytes > kv.max_bytes {
            return Err((
                path,
                format!(
                    "kv: the budget of `{field}` ({bytes}) must be between 1 and kv.max_bytes ({})",
                    kv.max_bytes
                ),
            ));
        }
    }
    Ok(())
}
