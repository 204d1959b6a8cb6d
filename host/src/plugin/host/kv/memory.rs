//! The embedded kv backend: one map behind a mutex, bounded in memory.
//!
//! Every operation holds the lock, so increment and compare-and-swap are
//! exact under concurrency. Keys are `<namespace>/<key>` (the host prefixes
//! each plugin's keys with its name); each namespace has a byte budget and
//! the whole store has one. A write that does not fit first drops expired
//! entries (earliest expiry first), then evicts the writer's own least
//! recently used entries until its namespace fits, then — only if the whole
//! store is still over budget — the least recently used entries of the
//! largest namespace. So a cache filling up evicts its own entries, never a
//! rate limiter's buckets. A background sweep ([`sweep_forever`]) removes
//! expired entries nobody reads again, so their memory is reused.
//!
//! Sizes count the key, the value and [`ENTRY_OVERHEAD`] bytes of
//! bookkeeping per entry (the map slot, the recency and expiry indexes and
//! allocator overhead, measured: see RELIABILITY.md).

use crate::plugin::host::KvStore;
use futures::future::BoxFuture;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes of bookkeeping counted per entry on top of its key and value.
pub const ENTRY_OVERHEAD: usize = 256;

/// Expired entries dropped per lock hold by the sweeper, so a sweep of a
/// large store never stalls kv calls for long.
const SWEEP_BATCH: usize = 1024;

/// Expired entries a write may drop before it evicts live ones.
const PURGE_ON_WRITE: usize = 4096;

/// The expiry of an entry without a TTL.
const NEVER: u64 = u64::MAX;

/// The byte budgets of a [`MemoryKv`].
#[derive(Debug, Clone)]
pub struct KvLimits {
    /// The whole store.
    pub max_bytes: usize,
    /// A namespace without an entry in `namespaces`.
    pub namespace_max_bytes: usize,
    /// Per-namespace budgets.
    pub namespaces: HashMap<String, usize>,
}

impl Default for KvLimits {
    fn default() -> Self {
        let config = crate::config::KvConfig::default();
        KvLimits::from(&config)
    }
}

impl From<&crate::config::KvConfig> for KvLimits {
    fn from(config: &crate::config::KvConfig) -> Self {
        KvLimits {
            max_bytes: config.max_bytes,
            namespace_max_bytes: config.default_namespace_bytes(),
            namespaces: config.namespaces.clone().into_iter().collect(),
        }
    }
}

/// The series a store reports to, by namespace (see `crate::observe::metrics`).
#[derive(Clone)]
pub struct KvMetrics {
    pub bytes: IntGaugeVec,
    pub entries: IntGaugeVec,
    /// By namespace and reason (`expired`, `lru`).
    pub evictions: IntCounterVec,
}

/// Size and evictions of the store or of one namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvUsage {
    pub bytes: usize,
    pub entries: usize,
    /// Expired entries removed (by the sweeper, a write or a read).
    pub expired: u64,
    /// Live entries evicted to make room.
    pub evicted: u64,
}

/// The in-process [`KvStore`] the gateway uses (and the SDK harness).
pub struct MemoryKv {
    inner: Mutex<Inner>,
    metrics: Option<KvMetrics>,
}

struct Inner {
    limits: KvLimits,
    entries: HashMap<Arc<str>, Entry>,
    namespaces: Vec<Namespace>,
    namespace_ids: HashMap<Box<str>, usize>,
    /// Entries with a TTL, earliest expiry first.
    expiry: BTreeSet<(u64, Arc<str>)>,
    /// Times are milliseconds since this instant (8 bytes an entry, not 16).
    origin: Instant,
    /// Recency clock: bumped by every read or write of an entry.
    tick: u64,
    bytes: usize,
}

/// Kept small: one is stored per key.
struct Entry {
    value: Box<[u8]>,
    /// Milliseconds since `origin`; [`NEVER`] without a TTL.
    expires: u64,
    last_used: u64,
    namespace: u32,
}

impl Entry {
    fn live(&self, now: u64) -> bool {
        self.expires > now
    }
}

/// The expiry of an entry written at `now` with `ttl`.
fn expiry(now: u64, ttl: Option<Duration>) -> u64 {
    ttl.map_or(NEVER, |t| {
        now.saturating_add(u64::try_from(t.as_millis()).unwrap_or(NEVER))
            .min(NEVER - 1)
    })
}

struct Namespace {
    name: Box<str>,
    budget: usize,
    usage: KvUsage,
    /// Entries by last use, least recent first.
    recency: BTreeMap<u64, Arc<str>>,
    series: Option<Series>,
}

/// One namespace's metric handles, looked up once.
struct Series {
    bytes: IntGauge,
    entries: IntGauge,
    expired: IntCounter,
    evicted: IntCounter,
}

#[derive(Clone, Copy)]
enum Removal {
    /// Deleted or replaced: not an eviction.
    Dropped,
    Expired,
    Evicted,
}

fn size_of(key: &str, value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

/// The namespace of a key: what comes before its first `/` (empty if none).
fn namespace_of(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

impl Inner {
    /// Milliseconds since `origin`.
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    /// Gives back the map's memory once most of its entries are gone (after
    /// a burst of keys expired), so the store does not keep its peak size.
    fn shrink(&mut self) {
        if self.entries.capacity() > 4 * self.entries.len().max(1024) {
            self.entries.shrink_to(self.entries.len() * 2);
        }
    }

    fn namespace_id(&mut self, name: &str, metrics: Option<&KvMetrics>) -> usize {
        if let Some(&id) = self.namespace_ids.get(name) {
            return id;
        }
        let budget = self
            .limits
            .namespaces
            .get(name)
            .copied()
            .unwrap_or(self.limits.namespace_max_bytes)
            .min(self.limits.max_bytes);
        let series = metrics.map(|m| Series {
            bytes: m.bytes.with_label_values(&[name]),
            entries: m.entries.with_label_values(&[name]),
            expired: m.evictions.with_label_values(&[name, "expired"]),
            evicted: m.evictions.with_label_values(&[name, "lru"]),
        });
        let id = self.namespaces.len();
        self.namespaces.push(Namespace {
            name: name.into(),
            budget,
            usage: KvUsage::default(),
            recency: BTreeMap::new(),
            series,
        });
        self.namespace_ids.insert(name.into(), id);
        id
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The live entry at `key`, marked as just used; an expired one is removed.
    fn touch(&mut self, key: &str, now: u64) -> Option<&Entry> {
        let entry = self.entries.get(key)?;
        if !entry.live(now) {
            self.remove(key, Removal::Expired);
            return None;
        }
        let (old, namespace) = (entry.last_used, entry.namespace as usize);
        let tick = self.next_tick();
        let recency = &mut self.namespaces[namespace].recency;
        let name = recency.remove(&old).expect("indexed entry");
        recency.insert(tick, name);
        let entry = self.entries.get_mut(key).expect("present above");
        entry.last_used = tick;
        Some(&*entry)
    }

    /// The value of the live entry at `key`, without marking it used.
    fn peek(&self, key: &str, now: u64) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.live(now))
    }

    fn remove(&mut self, key: &str, why: Removal) -> Option<Entry> {
        let (name, entry) = self.entries.remove_entry(key)?;
        let size = size_of(&name, &entry.value);
        self.bytes -= size;
        if entry.expires != NEVER {
            self.expiry.remove(&(entry.expires, name.clone()));
        }
        let namespace = &mut self.namespaces[entry.namespace as usize];
        namespace.recency.remove(&entry.last_used);
        namespace.usage.bytes -= size;
        namespace.usage.entries -= 1;
        match why {
            Removal::Dropped => {}
            Removal::Expired => namespace.usage.expired += 1,
            Removal::Evicted => namespace.usage.evicted += 1,
        }
        if let Some(series) = &namespace.series {
            series.bytes.set(namespace.usage.bytes as i64);
            series.entries.set(namespace.usage.entries as i64);
            match why {
                Removal::Dropped => {}
                Removal::Expired => series.expired.inc(),
                Removal::Evicted => series.evicted.inc(),
            }
        }
        Some(entry)
    }

    /// Removes up to `limit` expired entries, earliest expiry first.
    fn purge_expired(&mut self, now: u64, limit: usize) -> usize {
        let mut purged = 0;
        while purged < limit {
            let Some((at, key)) = self.expiry.first().cloned() else {
                break;
            };
            if at > now {
                break;
            }
            self.remove(&key, Removal::Expired);
            purged += 1;
        }
        purged
    }

    /// Evicts the least recently used entry of `namespace`; false if empty.
    fn evict_lru(&mut self, namespace: usize) -> bool {
        let Some(key) = self.namespaces[namespace]
            .recency
            .first_key_value()
            .map(|(_, k)| k.clone())
        else {
            return false;
        };
        self.remove(&key, Removal::Evicted);
        true
    }

    /// Frees room for `size` more bytes in `namespace` (see the module docs).
    fn make_room(&mut self, namespace: usize, size: usize, now: u64) {
        let fits = |inner: &Inner| {
            inner.namespaces[namespace].usage.bytes + size <= inner.namespaces[namespace].budget
                && inner.bytes + size <= inner.limits.max_bytes
        };
        if fits(self) {
            return;
        }
        self.purge_expired(now, PURGE_ON_WRITE);
        while self.namespaces[namespace].usage.bytes + size > self.namespaces[namespace].budget {
            if !self.evict_lru(namespace) {
                break;
            }
        }
        while self.bytes + size > self.limits.max_bytes {
            let largest = (0..self.namespaces.len())
                .max_by_key(|&i| (self.namespaces[i].usage.bytes, i == namespace))
                .expect("the writer's namespace exists");
            if !self.evict_lru(largest) {
                break;
            }
        }
    }

    /// Stores `value` at `key` (replacing any entry), making room first.
    fn put(
        &mut self,
        key: &str,
        value: Vec<u8>,
        expires: u64,
        now: u64,
        metrics: Option<&KvMetrics>,
    ) -> Result<(), String> {
        let namespace = self.namespace_id(namespace_of(key), metrics);
        let size = size_of(key, &value);
        let budget = self.namespaces[namespace].budget;
        if size > budget {
            return Err(format!(
                "kv entry of {size} bytes (key, value and {ENTRY_OVERHEAD} bytes of bookkeeping) exceeds the budget of namespace `{}` ({budget} bytes)",
                self.namespaces[namespace].name
            ));
        }
        self.remove(key, Removal::Dropped);
        self.make_room(namespace, size, now);
        let name: Arc<str> = key.into();
        let tick = self.next_tick();
        if expires != NEVER {
            self.expiry.insert((expires, name.clone()));
        }
        let ns = &mut self.namespaces[namespace];
        ns.recency.insert(tick, name.clone());
        ns.usage.bytes += size;
        ns.usage.entries += 1;
        if let Some(series) = &ns.series {
            series.bytes.set(ns.usage.bytes as i64);
            series.entries.set(ns.usage.entries as i64);
        }
        self.bytes += size;
        self.entries.insert(
            name,
            Entry {
                value: value.into_boxed_slice(),
                expires,
                last_used: tick,
                namespace: namespace as u32,
            },
        );
        Ok(())
    }
}

impl Default for MemoryKv {
    fn default() -> Self {
        MemoryKv::new(KvLimits::default())
    }
}

impl MemoryKv {
    /// An empty store within `limits`.
    pub fn new(limits: KvLimits) -> MemoryKv {
        MemoryKv {
            inner: Mutex::new(Inner {
                limits,
                entries: HashMap::new(),
                namespaces: Vec::new(),
                namespace_ids: HashMap::new(),
                expiry: BTreeSet::new(),
                origin: Instant::now(),
                tick: 0,
                bytes: 0,
            }),
            metrics: None,
        }
    }

    /// Reports size and evictions per namespace to `metrics`.
    pub fn with_metrics(mut self, metrics: KvMetrics) -> MemoryKv {
        self.metrics = Some(metrics);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("kv lock")
    }

    /// A snapshot of live entries, for tests and the harness.
    pub fn snapshot(&self) -> HashMap<String, Vec<u8>> {
        let inner = self.lock();
        let now = inner.now();
        inner
            .entries
            .iter()
            .filter(|(_, e)| e.live(now))
            .map(|(k, e)| (k.to_string(), e.value.to_vec()))
            .collect()
    }

    /// Bytes and entries held, expired entries removed and live ones evicted,
    /// for the whole store.
    pub fn usage(&self) -> KvUsage {
        let inner = self.lock();
        inner
            .namespaces
            .iter()
            .fold(KvUsage::default(), |total, ns| KvUsage {
                bytes: total.bytes + ns.usage.bytes,
                entries: total.entries + ns.usage.entries,
                expired: total.expired + ns.usage.expired,
                evicted: total.evicted + ns.usage.evicted,
            })
    }

    /// The same for one namespace.
    pub fn namespace_usage(&self, namespace: &str) -> KvUsage {
        let inner = self.lock();
        inner
            .namespace_ids
            .get(namespace)
            .map(|&id| inner.namespaces[id].usage)
            .unwrap_or_default()
    }

    /// Removes every expired entry, a batch per lock hold, then gives back
    /// memory the map no longer needs; returns how many it removed.
    pub fn sweep_expired(&self) -> usize {
        let mut total = 0;
        loop {
            let mut inner = self.lock();
            let now = inner.now();
            let swept = inner.purge_expired(now, SWEEP_BATCH);
            total += swept;
            if swept < SWEEP_BATCH {
                inner.shrink();
                return total;
            }
        }
    }

    fn get_now(&self, key: &str) -> Option<Vec<u8>> {
        let mut inner = self.lock();
        let now = inner.now();
        inner.touch(key, now).map(|e| e.value.to_vec())
    }

    fn set_now(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), String> {
        let mut inner = self.lock();
        let now = inner.now();
        inner.put(key, value, expiry(now, ttl), now, self.metrics.as_ref())
    }

    fn increment_now(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, String> {
        let mut inner = self.lock();
        let now = inner.now();
        let current = match inner.peek(key, now) {
            Some(e) => Some((
                std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| format!("kv value at `{key}` is not an integer"))?,
                e.expires,
            )),
            None => None,
        };
        let value = current
            .map_or(0, |(n, _)| n)
            .checked_add(delta)
            .ok_or("kv increment overflows")?;
        let expires = match current {
            Some((_, expires)) => expires,
            None => expiry(now, ttl),
        };
        inner.put(
            key,
            value.to_string().into_bytes(),
            expires,
            now,
            self.metrics.as_ref(),
        )?;
        Ok(value)
    }

    fn compare_and_swap_now(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, String> {
        let mut inner = self.lock();
        let now = inner.now();
        let current = inner.peek(key, now).map(|e| &*e.value);
        if current != expected {
            return Ok(false);
        }
        inner.put(key, new, expiry(now, ttl), now, self.metrics.as_ref())?;
        Ok(true)
    }

    fn delete_now(&self, key: &str) {
        self.lock().remove(key, Removal::Dropped);
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
        let result = self.set_now(key, value, ttl);
        Box::pin(async move { result })
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
        self.delete_now(key);
        Box::pin(async { Ok(()) })
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<bool, String>> {
        let result = self.compare_and_swap_now(key, expected.as_deref(), new, ttl);
        Box::pin(async move { result })
    }
}

/// Sweeps expired entries out of `kv` every `interval`, until the task is
/// dropped or aborted.
pub async fn sweep_forever(kv: Arc<MemoryKv>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        kv.sweep_expired();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A store of `max_bytes` whose namespaces get `namespace_bytes` each.
    fn store(max_bytes: usize, namespace_bytes: usize) -> MemoryKv {
        MemoryKv::new(KvLimits {
            max_bytes,
            namespace_max_bytes: namespace_bytes,
            namespaces: HashMap::new(),
        })
    }

    /// The accounted size of an entry `ns/kNNNN` with a value of `len` bytes.
    fn entry_size(ns: &str, len: usize) -> usize {
        size_of(&format!("{ns}/k0000"), &vec![0; len])
    }

    fn set(kv: &MemoryKv, key: &str, len: usize) {
        kv.set_now(key, vec![b'x'; len], None).unwrap();
    }

    /// The contract every backend keeps (the Redis one runs it in the e2e suite).
    #[tokio::test]
    async fn keeps_the_kv_contract() {
        crate::plugin::host::kv::contract::check_concurrent(
            Arc::new(MemoryKv::default()),
            "contract",
        )
        .await;
    }

    #[test]
    fn increment_counts_and_expires() {
        let kv = MemoryKv::default();
        assert_eq!(kv.increment_now("a", 2, Some(30 * MS)), Ok(2));
        assert_eq!(kv.increment_now("a", 3, None), Ok(5));
        std::thread::sleep(40 * MS);
        assert_eq!(kv.get_now("a"), None);
        assert_eq!(kv.increment_now("a", 1, None), Ok(1));
    }

    #[test]
    fn compare_and_swap_only_replaces_the_expected_value() {
        let kv = MemoryKv::default();
        assert_eq!(
            kv.compare_and_swap_now("k", None, b"1".to_vec(), None),
            Ok(true)
        );
        assert_eq!(
            kv.compare_and_swap_now("k", None, b"2".to_vec(), None),
            Ok(false)
        );
        assert_eq!(
            kv.compare_and_swap_now("k", Some(b"0"), b"2".to_vec(), None),
            Ok(false)
        );
        assert_eq!(
            kv.compare_and_swap_now("k", Some(b"1"), b"2".to_vec(), None),
            Ok(true)
        );
        assert_eq!(kv.get_now("k"), Some(b"2".to_vec()));
    }

    #[test]
    fn increment_refuses_non_integers() {
        let kv = MemoryKv::default();
        kv.set_now("a", b"x".to_vec(), None).unwrap();
        assert!(kv
            .increment_now("a", 1, None)
            .unwrap_err()
            .contains("not an integer"));
    }

    #[test]
    fn increment_is_exact_under_concurrency() {
        let kv = Arc::new(store(1 << 20, 1 << 20));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        kv.increment_now("rl/n", 1, Some(Duration::from_secs(60)))
                            .unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(kv.get_now("rl/n"), Some(b"4000".to_vec()));
    }

    #[test]
    fn the_store_never_holds_more_than_its_budget() {
        let size = entry_size("cache", 1000);
        let kv = store(10 * size, 10 * size);
        for i in 0..1000 {
            set(&kv, &format!("cache/k{i:04}"), 1000);
            assert!(kv.usage().bytes <= 10 * size);
        }
        let usage = kv.usage();
        assert_eq!(usage.entries, 10);
        assert_eq!(usage.bytes, 10 * size);
        assert_eq!(usage.evicted, 990);
        // The ten most recent writes are what is left.
        let left = kv.snapshot();
        assert!((990..1000).all(|i| left.contains_key(&format!("cache/k{i:04}"))));
    }

    #[test]
    fn eviction_takes_the_least_recently_used_entry() {
        let size = entry_size("c", 10);
        let kv = store(3 * size, 3 * size);
        set(&kv, "c/k0000", 10);
        set(&kv, "c/k0001", 10);
        set(&kv, "c/k0002", 10);
        // Reading k0000 makes k0001 the least recently used.
        assert!(kv.get_now("c/k0000").is_some());
        set(&kv, "c/k0003", 10);
        assert!(kv.get_now("c/k0001").is_none(), "LRU entry evicted");
        assert!(kv.get_now("c/k0000").is_some(), "recently read entry kept");
        assert!(kv.get_now("c/k0002").is_some() && kv.get_now("c/k0003").is_some());
        // The reads above used k0000, k0002, k0003 in that order; writes
        // count as use too: after rewriting k0002, k0000 is the oldest.
        set(&kv, "c/k0002", 10);
        set(&kv, "c/k0004", 10);
        assert!(kv.get_now("c/k0000").is_none());
        assert!(kv.get_now("c/k0003").is_some());
    }

    #[test]
    fn expired_entries_go_before_live_ones() {
        let size = entry_size("c", 10);
        let kv = store(3 * size, 3 * size);
        set(&kv, "c/k0000", 10);
        kv.set_now("c/k0001", vec![0; 10], Some(5 * MS)).unwrap();
        set(&kv, "c/k0002", 10);
        std::thread::sleep(10 * MS);
        set(&kv, "c/k0003", 10);
        // k0000 is older, but k0001 had expired: it went first.
        assert!(kv.get_now("c/k0000").is_some(), "live LRU entry kept");
        let usage = kv.usage();
        assert_eq!((usage.entries, usage.expired, usage.evicted), (3, 1, 0));
    }

    #[test]
    fn a_full_namespace_evicts_only_its_own_entries() {
        let cache = entry_size("cache", 100);
        let bucket = entry_size("rate-limit", 10);
        let kv = store(100 * cache, 20 * cache);
        for i in 0..20 {
            kv.increment_now(&format!("rate-limit/k{i:04}"), 1, None)
                .unwrap();
        }
        for i in 0..5000 {
            set(&kv, &format!("cache/k{i:04}"), 100);
        }
        assert!(kv.namespace_usage("cache").bytes <= 20 * cache);
        assert!(kv.namespace_usage("cache").evicted > 4000);
        let limiter = kv.namespace_usage("rate-limit");
        assert_eq!(limiter.entries, 20, "no bucket evicted");
        assert_eq!(limiter.evicted, 0);
        assert!(limiter.bytes <= 20 * bucket);
        for i in 0..20 {
            assert_eq!(
                kv.increment_now(&format!("rate-limit/k{i:04}"), 1, None),
                Ok(2)
            );
        }
    }

    #[test]
    fn a_namespace_budget_override_applies() {
        let size = entry_size("big", 10);
        let kv = MemoryKv::new(KvLimits {
            max_bytes: 100 * size,
            namespace_max_bytes: 2 * size,
            namespaces: [("big".to_string(), 10 * size)].into(),
        });
        for i in 0..100 {
            set(&kv, &format!("big/k{i:04}"), 10);
            set(&kv, &format!("sml/k{i:04}"), 10);
        }
        assert_eq!(kv.namespace_usage("big").entries, 10);
        assert_eq!(kv.namespace_usage("sml").entries, 2);
    }

    #[test]
    fn over_the_store_budget_the_largest_namespace_pays() {
        let size = entry_size("aa", 10);
        // Namespaces may each take 6 entries, the store only 8.
        let kv = store(8 * size, 6 * size);
        for i in 0..6 {
            set(&kv, &format!("aa/k{i:04}"), 10);
        }
        set(&kv, "bb/k0000", 10);
        set(&kv, "bb/k0001", 10);
        // Full: a third `bb` entry evicts from `aa`, the largest.
        set(&kv, "bb/k0002", 10);
        assert_eq!(kv.namespace_usage("aa").entries, 5);
        assert_eq!(kv.namespace_usage("bb").entries, 3);
        assert!(kv.get_now("aa/k0000").is_none());
        assert_eq!(kv.usage().bytes, 8 * size);
    }

    #[test]
    fn an_entry_larger_than_its_namespace_is_refused() {
        let kv = store(1 << 20, 1000);
        let error = kv.set_now("c/big", vec![0; 2000], None).unwrap_err();
        assert!(
            error.contains("exceeds the budget of namespace `c`"),
            "{error}"
        );
        assert_eq!(kv.usage(), KvUsage::default());
    }

    #[test]
    fn replacing_and_deleting_keep_the_accounting_exact() {
        let kv = store(1 << 20, 1 << 20);
        set(&kv, "c/k0000", 10);
        set(&kv, "c/k0000", 500);
        kv.increment_now("c/n", 5, Some(Duration::from_secs(60)))
            .unwrap();
        kv.increment_now("c/n", 5000, None).unwrap();
        assert_eq!(
            kv.usage().bytes,
            entry_size("c", 500) + size_of("c/n", b"5005")
        );
        kv.delete_now("c/k0000");
        kv.delete_now("c/n");
        assert_eq!(kv.usage().bytes, 0);
        assert_eq!(kv.usage().entries, 0);
        let inner = kv.lock();
        assert!(inner.expiry.is_empty() && inner.namespaces[0].recency.is_empty());
    }

    #[test]
    fn the_sweeper_frees_expired_entries_nobody_reads() {
        let kv = store(16 << 20, 16 << 20);
        for i in 0..10_000 {
            kv.set_now(&format!("c/k{i:05}"), vec![0; 10], Some(5 * MS))
                .unwrap();
        }
        set(&kv, "c/keep", 10);
        std::thread::sleep(10 * MS);
        assert_eq!(kv.usage().entries, 10_001, "expiry alone frees nothing");
        assert_eq!(kv.sweep_expired(), 10_000);
        let usage = kv.usage();
        assert_eq!((usage.entries, usage.expired), (1, 10_000));
        assert_eq!(usage.bytes, size_of("c/keep", &[0; 10]));
        assert!(kv.lock().entries.capacity() < 1024, "the map shrank");
        assert_eq!(kv.get_now("c/keep"), Some(vec![b'x'; 10]));
    }

    #[tokio::test]
    async fn the_background_sweep_runs_by_itself() {
        let kv = Arc::new(store(1 << 20, 1 << 20));
        kv.set_now("c/k", vec![0; 10], Some(5 * MS)).unwrap();
        let sweeper = tokio::spawn(sweep_forever(kv.clone(), 10 * MS));
        let deadline = Instant::now() + Duration::from_secs(5);
        while kv.usage().entries > 0 {
            assert!(Instant::now() < deadline, "not swept within 5 s");
            tokio::time::sleep(5 * MS).await;
        }
        sweeper.abort();
        assert_eq!(kv.usage().bytes, 0);
    }

    #[test]
    fn metrics_follow_size_and_evictions() {
        let metrics = KvMetrics {
            bytes: IntGaugeVec::new(prometheus::Opts::new("b", "b"), &["namespace"]).unwrap(),
            entries: IntGaugeVec::new(prometheus::Opts::new("e", "e"), &["namespace"]).unwrap(),
            evictions: IntCounterVec::new(
                prometheus::Opts::new("v", "v"),
                &["namespace", "reason"],
            )
            .unwrap(),
        };
        let size = entry_size("c", 10);
        let kv = store(2 * size, 2 * size).with_metrics(metrics.clone());
        for i in 0..5 {
            set(&kv, &format!("c/k{i:04}"), 10);
        }
        assert_eq!(
            metrics.bytes.with_label_values(&["c"]).get(),
            2 * size as i64
        );
        assert_eq!(metrics.entries.with_label_values(&["c"]).get(), 2);
        assert_eq!(metrics.evictions.with_label_values(&["c", "lru"]).get(), 3);
    }
}
