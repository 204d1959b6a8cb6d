//! The host side of the capabilities a plugin may import (kv, outbound HTTP,
//! logging, metrics), behind traits so the gateway and the SDK harness plug in
//! their own: the gateway a shared store and real upstream calls, the harness
//! in-memory fakes it can inspect.

use super::bindings::{LogLevel, OutboundRequest, OutboundResponse};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A key/value store shared by all instances of all plugins.
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
}

/// The capabilities one runtime hands to every plugin instance it creates.
#[derive(Clone)]
pub struct HostServices {
    pub kv: std::sync::Arc<dyn KvStore>,
    pub outbound: std::sync::Arc<dyn Outbound>,
    pub telemetry: std::sync::Arc<dyn Telemetry>,
}

/// An in-process [`KvStore`]: one map behind a mutex, with lazy expiry. Exact
/// under concurrency because every operation holds the lock.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<String, KvEntry>>,
}

struct KvEntry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl KvEntry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

impl MemoryKv {
    /// A snapshot of live entries, for tests and the harness.
    pub fn snapshot(&self) -> HashMap<String, Vec<u8>> {
        let now = Instant::now();
        let entries = self.entries.lock().expect("kv lock");
        entries
            .iter()
            .filter(|(_, e)| e.live(now))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect()
    }

    fn get_now(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        let entries = self.entries.lock().expect("kv lock");
        entries
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.clone())
    }

    fn set_now(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) {
        let expires = ttl.map(|t| Instant::now() + t);
        let mut entries = self.entries.lock().expect("kv lock");
        entries.insert(key.to_string(), KvEntry { value, expires });
    }

    fn increment_now(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, String> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("kv lock");
        let current = match entries.get(key).filter(|e| e.live(now)) {
            Some(e) => Some(
                std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| format!("kv value at `{key}` is not an integer"))?,
            ),
            None => None,
        };
        let value = current
            .unwrap_or(0)
            .checked_add(delta)
            .ok_or("kv increment overflows")?;
        let expires = match current {
            Some(_) => entries.get(key).and_then(|e| e.expires),
            None => ttl.map(|t| now + t),
        };
        entries.insert(
            key.to_string(),
            KvEntry {
                value: value.to_string().into_bytes(),
                expires,
            },
        );
        Ok(value)
    }
}

impl MemoryKv {
    fn compare_and_swap_now(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> bool {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("kv lock");
        let current = entries
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.as_slice());
        if current != expected {
            return false;
        }
        entries.insert(
            key.to_string(),
            KvEntry {
                value: new,
                expires: ttl.map(|t| now + t),
            },
        );
        true
    }
}

impl KvStore for MemoryKv {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, String>> {
        let value = self.get_now(key);
        Box::pin(async move { Ok(value) })
    }

    fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<(), String>> {
        self.set_now(key, value, ttl);
        Box::pin(async { Ok(()) })
    }

    fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<i64, String>> {
        let result = self.increment_now(key, delta, ttl);
        Box::pin(async move { result })
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), String>> {
        self.entries.lock().expect("kv lock").remove(key);
        Box::pin(async { Ok(()) })
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<bool, String>> {
        let swapped = self.compare_and_swap_now(key, expected.as_deref(), new, ttl);
        Box::pin(async move { Ok(swapped) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_counts_and_expires() {
        let kv = MemoryKv::default();
        assert_eq!(
            kv.increment_now("a", 2, Some(Duration::from_millis(30))),
            Ok(2)
        );
        assert_eq!(kv.increment_now("a", 3, None), Ok(5));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(kv.get_now("a"), None);
        assert_eq!(kv.increment_now("a", 1, None), Ok(1));
    }

    #[test]
    fn compare_and_swap_only_replaces_the_expected_value() {
        let kv = MemoryKv::default();
        assert!(kv.compare_and_swap_now("k", None, b"1".to_vec(), None));
        assert!(!kv.compare_and_swap_now("k", None, b"2".to_vec(), None));
        assert!(!kv.compare_and_swap_now("k", Some(b"0"), b"2".to_vec(), None));
        assert!(kv.compare_and_swap_now("k", Some(b"1"), b"2".to_vec(), None));
        assert_eq!(kv.get_now("k"), Some(b"2".to_vec()));
    }

    #[test]
    fn increment_refuses_non_integers() {
        let kv = MemoryKv::default();
        kv.set_now("a", b"x".to_vec(), None);
        assert!(kv
            .increment_now("a", 1, None)
            .unwrap_err()
            .contains("not an integer"));
    }
}
