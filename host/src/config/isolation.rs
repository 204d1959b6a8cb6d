//! Config of what keeps one plugin from costing other routes their time or
//! memory: the per-entry cap on concurrent calls, the per-entry fault
//! breaker, and the kv store: the budget of the embedded one, or Redis.
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

/// The kv store plugins share: the embedded one (`backend: memory`, the
/// default) within a memory budget, or Redis (`backend: redis`), which
/// replicas share. Keys are namespaced per plugin (`<plugin>/<key>`) either
/// way. In memory each namespace has its own budget, so one plugin's entries
/// (a cache) never push out another's (rate-limit buckets) unless the whole
/// store is over `max_bytes`, and then the largest namespace pays; Redis
/// evicts per its own `maxmemory-policy`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    /// Where entries live: `memory` (one process) or `redis` (shared by
    /// every replica; needs `redis:`).
    pub backend: KvBackend,
    /// The Redis backend's connection; only with `backend: redis`.
    pub redis: Option<RedisKvConfig>,
    /// Memory backend: bytes the whole store may hold: keys, values and a fixed per-entry
    /// bookkeeping cost. Beyond it, expired entries go first, then the least
    /// recently used.
    pub max_bytes: usize,
    /// Memory backend: bytes one plugin's namespace may hold (default: half
    /// of `max_bytes`).
    pub namespace_max_bytes: Option<usize>,
    /// Memory backend: per-plugin overrides of `namespace_max_bytes`, by
    /// plugin name.
    pub namespaces: BTreeMap<String, usize>,
    /// Memory backend: how often expired entries are swept out in the
    /// background.
    pub sweep_interval_ms: u64,
}

/// Where kv entries live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvBackend {
    /// In this process, bounded by `max_bytes`: nothing to run beside the
    /// gateway, but each replica counts and caches on its own.
    #[default]
    Memory,
    /// In Redis: every replica sees the same buckets and cache entries.
    Redis,
}

/// The Redis backend (`kv.redis:`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisKvConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS
    /// (rustls, verified against the system's roots).
    pub url: String,
    /// Put in front of every key (`<prefix><plugin>/<key>`), so gateways
    /// sharing a Redis with other applications (or other gateway
    /// deployments, given different prefixes) keep apart.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Longest one kv call may take, connecting included; beyond it the
    /// plugin gets an error (rate-limit then allows or denies per its
    /// `on_kv_error`, cache misses). Redis answers in well under a
    /// millisecond on a LAN, so 50 ms means it is in trouble.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// Whether `/readyz` answers 503 while Redis is unreachable. Off by
    /// default: every replica shares the one Redis, so an outage would take
    /// every replica out of its Service at once, turning degraded service
    /// (plugins decide per call: rate-limit allows by default, cache
    /// misses) into none. Turn it on when no request should be served
    /// without shared state and another pool of gateways can take them.
    #[serde(default)]
    pub required_for_ready: bool,
}

fn default_key_prefix() -> String {
    "wasmgate:".into()
}

fn default_redis_timeout_ms() -> u64 {
    50
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            backend: KvBackend::Memory,
            redis: None,
            max_bytes: 64 << 20,
            namespace_max_bytes: None,
            namespaces: BTreeMap::new(),
            sweep_interval_ms: 1_000,
        }
    }
}

impl KvConfig {
    /// The budget of a namespace without an override (memory backend).
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
    check_backend(kv)?;
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

/// The backend and its `redis:` section agree, and the section is usable.
fn check_backend(kv: &KvConfig) -> Result<(), (String, String)> {
    let redis = match (kv.backend, &kv.redis) {
        (KvBackend::Memory, None) => return Ok(()),
        (KvBackend::Memory, Some(_)) => return Err((
            "redis".into(),
            "kv.redis is set but kv.backend is `memory`: add `backend: redis` or remove kv.redis"
                .into(),
        )),
        (KvBackend::Redis, None) => {
            return Err((
                "backend".into(),
                "kv.backend `redis` needs kv.redis with at least `url`".into(),
            ))
        }
        (KvBackend::Redis, Some(redis)) => redis,
    };
    // The URL is checked by the client that will use it, and not repeated
    // in the message: it may hold a password.
    if let Err(e) = redis::IntoConnectionInfo::into_connection_info(redis.url.as_str()) {
        return Err((
            "redis.url".into(),
            format!("kv.redis.url is not a redis:// or rediss:// URL the client accepts: {e}"),
        ));
    }
    if redis.timeout_ms == 0 {
        return Err((
            "redis.timeout_ms".into(),
            "kv.redis.timeout_ms must be at least 1".into(),
        ));
    }
    Ok(())
}
