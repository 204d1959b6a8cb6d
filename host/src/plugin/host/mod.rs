//! The host side of the capabilities a plugin may import (kv, outbound HTTP,
//! logging, metrics), behind traits so the gateway and the SDK harness plug in
//! their own: the gateway a shared store ([`kv`]: memory or Redis), real upstream calls
//! ([`outbound`]) and Prometheus/tracing ([`telemetry`]); the harness
//! in-memory fakes it can inspect. Every plugin runtime uses these.

pub mod kv;
pub mod outbound;
pub mod telemetry;

use crate::plugin::bindings::{LogLevel, OutboundRequest, OutboundResponse};
use futures::future::BoxFuture;
use std::time::Duration;

pub use kv::MemoryKv;

/// A key/value store shared by all instances of all plugins: [`MemoryKv`]
/// (bounded in memory) or [`kv::RedisKv`] (shared by replicas). Errors are
/// strings because they go to the plugin as they are; every backend keeps
/// [`kv::contract`].
pub trait KvStore: Send + Sync {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, String>>;
    fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<(), String>>;
    fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<i64, String>>;
    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), String>>;
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<bool, String>>;
}

/// Sends plugin-initiated HTTP requests to named upstreams.
pub trait Outbound: Send + Sync {
    fn send_all(
        &self,
        requests: Vec<OutboundRequest>,
    ) -> BoxFuture<'_, Vec<Result<OutboundResponse, String>>>;
}

/// Where plugin logs and metrics go.
pub trait Telemetry: Send + Sync {
    fn log(
        &self,
        plugin: &str,
        route: &str,
        level: LogLevel,
        message: &str,
        fields: &[(String, String)],
    );
    fn counter_add(&self, plugin: &str, name: &str, value: u64, labels: &[(String, String)]);
    fn histogram_observe(&self, plugin: &str, name: &str, value: f64, labels: &[(String, String)]);
    /// Sets a gauge (a Proxy-Wasm filter's `proxy_define_metric` gauge;
    /// the WIT contract has none).
    fn gauge_set(&self, plugin: &str, name: &str, value: f64, labels: &[(String, String)]);
}

/// The capabilities one runtime hands to every plugin instance it creates.
#[derive(Clone)]
pub struct HostServices {
    pub kv: std::sync::Arc<dyn KvStore>,
    pub outbound: std::sync::Arc<dyn Outbound>,
    pub telemetry: std::sync::Arc<dyn Telemetry>,
}
