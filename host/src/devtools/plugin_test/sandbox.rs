//! A plugin compiled on the gateway's own runtime, with in-memory host
//! capabilities a test controls and inspects: a kv store, fake upstreams,
//! captured logs and metrics. The one engine behind both the SDK's Rust
//! harness and `wasmgate plugin test`.

use crate::plugin::component::bindings::{LogLevel, OutboundRequest, OutboundResponse};
use crate::plugin::proxy_wasm::shared::{decode_stored, encode_stored};
use crate::plugin::{
    CompiledPlugin, EntryPool, Grants, HostServices, KvStore, MemoryKv, Outbound, PluginError,
    PluginLimits, PluginPool, PluginRuntime, Telemetry,
};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The route name a sandboxed plugin is loaded on.
pub const ROUTE: &str = "test-route";

/// One log line a plugin wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// One metric update a plugin made.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricUpdate {
    Counter {
        name: String,
        value: u64,
        labels: Vec<(String, String)>,
    },
    Histogram {
        name: String,
        value: f64,
        labels: Vec<(String, String)>,
    },
    /// A gauge set (Proxy-Wasm filters' gauges).
    Gauge {
        name: String,
        value: f64,
        labels: Vec<(String, String)>,
    },
}

/// Answers a plugin's outbound call to one upstream.
pub type FakeHandler =
    Arc<dyn Fn(&OutboundRequest) -> Result<OutboundResponse, String> + Send + Sync>;

/// The in-memory capabilities of a sandbox. [`Fakes::reset`] empties them,
/// so one compiled plugin serves many independent test cases.
#[derive(Default)]
pub struct Fakes {
    kv: Mutex<Arc<MemoryKv>>,
    upstreams: Mutex<HashMap<String, FakeHandler>>,
    sent: Mutex<Vec<OutboundRequest>>,
    logs: Mutex<Vec<LogLine>>,
    metrics: Mutex<Vec<MetricUpdate>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Fakes {
    /// Forgets every kv entry, fake upstream, sent request, log line and metric.
    pub fn reset(&self) {
        *locked(&self.kv) = Arc::default();
        locked(&self.upstreams).clear();
        locked(&self.sent).clear();
        locked(&self.logs).clear();
        locked(&self.metrics).clear();
    }

    fn kv(&self) -> Arc<MemoryKv> {
        locked(&self.kv).clone()
    }

    /// Every live kv entry, by its full (plugin-namespaced) key.
    pub fn kv_snapshot(&self) -> HashMap<String, Vec<u8>> {
        self.kv().snapshot()
    }

    /// Stores `value` under the full (plugin-namespaced) `key`.
    pub async fn kv_seed(&self, key: &str, value: Vec<u8>) -> Result<(), String> {
        KvStore::set(&*self.kv(), key, value, None).await
    }

    /// Answers outbound calls to `upstream` with `handler`.
    pub fn fake_upstream(&self, upstream: &str, handler: FakeHandler) {
        locked(&self.upstreams).insert(upstream.to_string(), handler);
    }

    /// The outbound requests sent so far, in order.
    pub fn sent(&self) -> Vec<OutboundRequest> {
        locked(&self.sent).clone()
    }

    /// The log lines written so far, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        locked(&self.logs).clone()
    }

    /// The metric updates made so far, in order.
    pub fn metrics(&self) -> Vec<MetricUpdate> {
        locked(&self.metrics).clone()
    }

    /// Takes the outbound requests, log lines and metrics recorded so far,
    /// so the next request of a test starts with none.
    pub fn take_records(&self) -> (Vec<OutboundRequest>, Vec<LogLine>, Vec<MetricUpdate>) {
        (
            std::mem::take(&mut *locked(&self.sent)),
            std::mem::take(&mut *locked(&self.logs)),
            std::mem::take(&mut *locked(&self.metrics)),
        )
    }
}

impl KvStore for Fakes {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, String>> {
        let (kv, key) = (self.kv(), key.to_string());
        Box::pin(async move { kv.get(&key).await })
    }

    fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<(), String>> {
        let (kv, key) = (self.kv(), key.to_string());
        Box::pin(async move { kv.set(&key, value, ttl).await })
    }

    fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<i64, String>> {
        let (kv, key) = (self.kv(), key.to_string());
        Box::pin(async move { kv.increment(&key, delta, ttl).await })
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), String>> {
        let (kv, key) = (self.kv(), key.to_string());
        Box::pin(async move { kv.delete(&key).await })
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<bool, String>> {
        let (kv, key) = (self.kv(), key.to_string());
        Box::pin(async move { kv.compare_and_swap(&key, expected, new, ttl).await })
    }
}

impl Outbound for Fakes {
    fn send_all(
        &self,
        requests: Vec<OutboundRequest>,
    ) -> BoxFuture<'_, Vec<Result<OutboundResponse, String>>> {
        let results = requests
            .into_iter()
            .map(|request| {
                let handler = locked(&self.upstreams).get(&request.upstream).cloned();
                let result = match handler {
                    Some(handler) => handler(&request),
                    // The gateway's own words for it: the plugin sees what it would see there.
                    None => Err(format!("unknown upstream `{}`", request.upstream)),
                };
                locked(&self.sent).push(request);
                result
            })
            .collect();
        Box::pin(async move { results })
    }
}

impl Telemetry for Fakes {
    fn log(
        &self,
        _plugin: &str,
        _route: &str,
        level: LogLevel,
        message: &str,
        fields: &[(String, String)],
    ) {
        locked(&self.logs).push(LogLine {
            level,
            message: message.to_string(),
            fields: fields.to_vec(),
        });
    }

    fn counter_add(&self, _plugin: &str, name: &str, value: u64, labels: &[(String, String)]) {
        locked(&self.metrics).push(MetricUpdate::Counter {
            name: name.into(),
            value,
            labels: labels.to_vec(),
        });
    }

    fn histogram_observe(
        &self,
        _plugin: &str,
        name: &str,
        value: f64,
        labels: &[(String, String)],
    ) {
        locked(&self.metrics).push(MetricUpdate::Histogram {
            name: name.into(),
            value,
            labels: labels.to_vec(),
        });
    }

    fn gauge_set(&self, _plugin: &str, name: &str, value: f64, labels: &[(String, String)]) {
        locked(&self.metrics).push(MetricUpdate::Gauge {
            name: name.into(),
            value,
            labels: labels.to_vec(),
        });
    }
}

/// A plugin file compiled once, ready to be initialised with any config on
/// in-memory capabilities.
pub struct Sandbox {
    fakes: Arc<Fakes>,
    compiled: Arc<CompiledPlugin>,
    runtime: PluginRuntime,
}

impl Sandbox {
    /// Reads and compiles `file` exactly as the gateway does at load time;
    /// the plugin is named after the file stem (its kv namespace).
    pub fn load(file: &Path) -> Result<Sandbox, PluginError> {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin")
            .to_string();
        let fakes = Arc::new(Fakes::default());
        let runtime = PluginRuntime::new(HostServices {
            kv: fakes.clone(),
            outbound: fakes.clone(),
            telemetry: fakes.clone(),
        })?;
        let bytes = std::fs::read(file).map_err(|source| PluginError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let compiled = Arc::new(runtime.compile(&name, file, &bytes)?);
        Ok(Sandbox {
            fakes,
            compiled,
            runtime,
        })
    }

    /// The plugin's name (the file stem).
    pub fn name(&self) -> &str {
        &self.compiled.name
    }

    /// The capabilities the plugin sees.
    pub fn fakes(&self) -> &Fakes {
        &self.fakes
    }

    /// The kv key the plugin's `key` is stored under.
    pub fn kv_key(&self, key: &str) -> String {
        format!("{}/{key}", self.compiled.name)
    }

    /// Stores `value` under the plugin's `key` as the plugin itself would:
    /// a Proxy-Wasm filter's shared data carries its CAS version with it.
    pub async fn kv_seed(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let stored = if self.compiled.is_proxy_wasm() {
            encode_stored(1, value)
        } else {
            value.to_vec()
        };
        self.fakes.kv_seed(&self.kv_key(key), stored).await
    }

    /// The plugin's own kv entries, by the keys it used, as it reads them
    /// (a Proxy-Wasm filter's without their CAS version).
    pub fn kv_entries(&self) -> HashMap<String, Vec<u8>> {
        let prefix = format!("{}/", self.compiled.name);
        let filter = self.compiled.is_proxy_wasm();
        self.fakes
            .kv_snapshot()
            .into_iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(&prefix)?.to_string();
                let value = if filter {
                    decode_stored(&v).1.to_vec()
                } else {
                    v
                };
                Some((key, value))
            })
            .collect()
    }

    /// Initialises the plugin with `config` on [`ROUTE`] — what the gateway
    /// does per route entry, so a refused config is an `Err` here. A
    /// component only (the SDK's Rust harness); see [`Sandbox::entry`].
    pub async fn init(&self, config: &serde_json::Value) -> Result<PluginPool, PluginError> {
        self.runtime
            .pool(
                self.compiled.clone(),
                ROUTE,
                config.to_string(),
                sandbox_limits(),
                Arc::new(Grants::all()),
            )
            .await
    }

    /// Initialises the plugin, component or Proxy-Wasm filter, as a route
    /// entry with `config` (or, for a filter, `config_text`) through the
    /// gateway's own entry loader, so both kinds run the same cases.
    /// Without either, a component gets `{}` and a filter an empty
    /// configuration, as from an entry without `config`.
    pub async fn entry(
        &self,
        config: Option<&serde_json::Value>,
        config_text: Option<&str>,
    ) -> Result<EntryPool, PluginError> {
        let empty = match self.compiled.is_proxy_wasm() {
            true => serde_json::Value::Null,
            false => serde_json::json!({}),
        };
        self.runtime
            .entry_pool(
                self.compiled.clone(),
                ROUTE,
                config.unwrap_or(&empty),
                config_text,
                sandbox_limits(),
                Arc::new(Grants::all()),
            )
            .await
    }
}

/// The gateway's default limits, but every call is a test's own: no
/// breaker skips one.
fn sandbox_limits() -> PluginLimits {
    PluginLimits {
        fault_breaker: crate::config::FaultBreakerConfig {
            faults: 0,
            ..Default::default()
        },
        ..PluginLimits::default()
    }
}
