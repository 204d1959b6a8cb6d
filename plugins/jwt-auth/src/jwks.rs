//! Keys fetched from a JWKS document on a configured upstream, cached in this
//! plugin instance and fetched again after the refresh interval, or sooner
//! when a token names a `kid` the cache does not know (key rotation).
//!
//! Fetches go through the host's outbound capability, so they count against
//! the plugin call's deadline: keep `jwks_timeout_ms` under it. A failed
//! fetch keeps the previous keys; no fetch happens more often than
//! `jwks_min_refetch_secs`, so an unreachable identity provider or a flood of
//! tokens with made-up `kid`s does not turn into a flood of fetches.

use crate::keys::{self, VerifyKey};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmgate_plugin_sdk::prelude::*;
use wasmgate_plugin_sdk::{LogLevel, OutboundRequest};

/// Where the document is and how often to fetch it.
pub struct RemoteJwks {
    pub upstream: String,
    pub path: String,
    pub refresh: Duration,
    pub min_refetch: Duration,
    pub timeout_ms: u32,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    keys: Arc<Vec<VerifyKey>>,
    /// Counts successful fetches, so what was verified with older keys can tell.
    generation: u64,
    /// When the cached keys were fetched; `None`: never.
    fetched: Option<Instant>,
    /// When a fetch was last tried, successful or not.
    attempted: Option<Instant>,
}

impl RemoteJwks {
    /// A cache that fetches on first use.
    pub fn new(
        upstream: String,
        path: String,
        refresh: Duration,
        min_refetch: Duration,
        timeout_ms: u32,
    ) -> Self {
        RemoteJwks {
            upstream,
            path,
            refresh,
            min_refetch,
            timeout_ms,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The cached keys, fetched first when they are older than the refresh interval.
    pub fn keys(&self) -> Arc<Vec<VerifyKey>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let stale = cache.fetched.is_none_or(|at| at.elapsed() >= self.refresh);
        if stale && self.may_fetch(&cache) {
            self.fetch_into(&mut cache);
        }
        cache.keys.clone()
    }

    /// Fetches again now (a token named an unknown `kid`), unless a fetch was
    /// tried within `min_refetch`. Returns the new keys if it fetched.
    pub fn refetch(&self) -> Option<Arc<Vec<VerifyKey>>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if !self.may_fetch(&cache) {
            return None;
        }
        self.fetch_into(&mut cache).then(|| cache.keys.clone())
    }

    /// How many times keys were fetched: changes whenever the key set does.
    pub fn generation(&self) -> u64 {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    fn may_fetch(&self, cache: &Cache) -> bool {
        cache
            .attempted
            .is_none_or(|at| at.elapsed() >= self.min_refetch)
    }

    /// Fetches and, on success, replaces the cached keys. Returns whether it did.
    fn fetch_into(&self, cache: &mut Cache) -> bool {
        cache.attempted = Some(Instant::now());
        match self.fetch() {
            Ok(fetched) => {
                log::log(
                    LogLevel::Info,
                    "fetched JWKS",
                    &[
                        ("upstream", &self.upstream),
                        ("keys", &fetched.len().to_string()),
                    ],
                );
                cache.keys = Arc::new(fetched);
                cache.generation += 1;
                cache.fetched = Some(Instant::now());
                true
            }
            Err(error) => {
                log::log(
                    LogLevel::Warn,
                    "JWKS fetch failed, keeping the previous keys",
                    &[("upstream", &self.upstream), ("error", &error)],
                );
                false
            }
        }
    }

    /// One GET of the document, parsed; keys it cannot use are logged and skipped.
    fn fetch(&self) -> Result<Vec<VerifyKey>, String> {
        let request = OutboundRequest {
            timeout_ms: Some(self.timeout_ms),
            headers: vec![("accept".into(), "application/json".into())],
            ..outbound::get(&self.upstream, &self.path)
        };
        let response = outbound::send_all(&[request])
            .pop()
            .ok_or("the host returned no response")??;
        if response.status != 200 {
            return Err(format!("status {}", response.status));
        }
        let document: serde_json::Value =
            serde_json::from_slice(&response.body).map_err(|e| format!("not JSON: {e}"))?;
        let (keys, refused) = keys::parse_jwks(&document, false)?;
        for reason in refused {
            log::log(
                LogLevel::Warn,
                "skipped a JWKS key",
                &[("upstream", &self.upstream), ("reason", &reason)],
            );
        }
        if keys.is_empty() {
            return Err("the document has no usable key".into());
        }
        Ok(keys)
    }
}
