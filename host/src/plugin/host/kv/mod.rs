//! The `kv` capability's backends, one [`KvStore`] contract:
//!
//! - [`memory`]: the embedded default, bounded in memory, one per process.
//! - [`redis_kv`]: Redis, so several gateway replicas share rate-limit
//!   buckets and cache entries; every call bounded by a timeout.
//!
//! Keys arrive namespaced per plugin (`<plugin>/<key>`, see
//! `PluginState::kv_key`); the Redis backend puts its `key_prefix` in front
//! and changes nothing else. [`contract`] is the behaviour both keep, run
//! against each (the Redis one by the e2e suite, against a real server).

pub mod contract;
pub mod memory;
pub mod redis_kv;

pub use memory::{sweep_forever, KvLimits, KvMetrics, KvUsage, MemoryKv, ENTRY_OVERHEAD};
pub use redis_kv::{KvCallMetrics, RedisKv, RedisKvError};

use crate::plugin::host::KvStore;
use std::sync::Arc;
use std::time::Duration;

/// The store the gateway hands its plugins, with the backend kept so the
/// gateway can run its upkeep (the memory sweep, the Redis health probe)
/// and ask whether it is ready.
#[derive(Clone)]
pub enum GatewayKv {
    Memory(Arc<MemoryKv>),
    Redis(Arc<RedisKv>),
}

impl GatewayKv {
    /// The store behind the plugins' `kv` imports.
    pub fn store(&self) -> Arc<dyn KvStore> {
        match self {
            GatewayKv::Memory(kv) => kv.clone(),
            GatewayKv::Redis(kv) => kv.clone(),
        }
    }

    /// The backend's upkeep, run for as long as the gateway: the memory
    /// store sweeps out expired entries every `sweep_interval`; the Redis
    /// store probes the server, so an outage and the recovery are noticed
    /// (and logged, and `/readyz` follows) without waiting for traffic.
    pub async fn maintain(self, sweep_interval: Duration) {
        match self {
            GatewayKv::Memory(kv) => sweep_forever(kv, sweep_interval).await,
            GatewayKv::Redis(kv) => redis_kv::probe_forever(kv).await,
        }
    }

    /// The Redis store if `/readyz` must wait for it
    /// (`kv.redis.required_for_ready`).
    pub fn readiness(&self) -> Option<Arc<RedisKv>> {
        match self {
            GatewayKv::Redis(kv) if kv.required_for_ready() => Some(kv.clone()),
            _ => None,
        }
    }
}
