//! Typed wrappers over the host capabilities a plugin may import.

/// The request-scoped context shared by the plugins of one chain.
pub mod context {
    use crate::bindings::wasmgate::plugin::context as raw;

    /// Reads a value an earlier plugin (or this one) set for this request.
    pub fn get(key: &str) -> Option<String> {
        raw::get(key)
    }

    /// Sets a value for the plugins after this one (and the response hooks).
    pub fn set(key: &str, value: &str) {
        raw::set(key, value)
    }

    /// Removes a value.
    pub fn remove(key: &str) {
        raw::remove(key)
    }
}

/// Structured logging into the gateway's log, tagged with plugin and route.
pub mod log {
    use crate::bindings::wasmgate::plugin::log::log as raw;
    use crate::LogLevel;

    /// Logs `message` at `level` with key/value fields.
    pub fn log(level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        raw(level, message, &fields)
    }

    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(LogLevel::Debug, message, &[])
    }

    /// Logs at info level.
    pub fn info(message: &str) {
        log(LogLevel::Info, message, &[])
    }

    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(LogLevel::Warn, message, &[])
    }

    /// Logs at error level.
    pub fn error(message: &str) {
        log(LogLevel::Error, message, &[])
    }
}

/// The shared key/value store (namespaced to this plugin by the host).
pub mod kv {
    use crate::bindings::wasmgate::plugin::kv as raw;
    use std::time::Duration;

    fn ms(ttl: Option<Duration>) -> Option<u64> {
        ttl.map(|d| d.as_millis() as u64)
    }

    /// Reads a value.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
        raw::get(key)
    }

    /// Stores a value, expiring after `ttl` if given.
    pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), String> {
        raw::set(key, value, ms(ttl))
    }

    /// Atomically adds `delta` and returns the new value; `ttl` applies when the key is created.
    pub fn increment(key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, String> {
        raw::increment(key, delta, ms(ttl))
    }

    /// Deletes a value.
    pub fn delete(key: &str) -> Result<(), String> {
        raw::delete(key)
    }

    /// Atomically replaces the value if it equals `expected` (`None`: absent);
    /// returns whether it did. Loop on `false` to build exact shared state.
    pub fn compare_and_swap(
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, String> {
        raw::compare_and_swap(key, expected, new, ms(ttl))
    }
}

/// HTTP calls to upstreams named in the gateway config.
pub mod outbound {
    use crate::bindings::wasmgate::plugin::outbound as raw;
    use crate::{OutboundRequest, OutboundResponse};

    /// Sends every request concurrently; results come back in order.
    pub fn send_all(requests: &[OutboundRequest]) -> Vec<Result<OutboundResponse, String>> {
        raw::send_all(requests)
    }

    /// A GET to `upstream` with no headers.
    pub fn get(upstream: &str, path_and_query: &str) -> OutboundRequest {
        OutboundRequest {
            upstream: upstream.to_string(),
            method: "GET".to_string(),
            path_and_query: path_and_query.to_string(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }
}

/// Plugin-defined metrics, exported with a `plugin` label.
pub mod metrics {
    use crate::bindings::wasmgate::plugin::metrics as raw;

    fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Adds to a counter.
    pub fn counter_add(name: &str, value: u64, labels: &[(&str, &str)]) {
        raw::counter_add(name, value, &owned(labels))
    }

    /// Records one observation in a histogram.
    pub fn histogram_observe(name: &str, value: f64, labels: &[(&str, &str)]) {
        raw::histogram_observe(name, value, &owned(labels))
    }
}
