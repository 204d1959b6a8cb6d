//! What filters share beyond one instance: shared data on the gateway's
//! [`KvStore`](crate::plugin::KvStore) with the ABI's compare-and-swap,
//! shared queues (in-process, each telling the entries that registered it
//! when an item arrives), and the entry's metrics.
//!
//! The ABI's CAS is a `u32` version, the kv store's CAS compares bytes, so
//! each value is stored as `[version: u32 LE][value]` and every write
//! takes the previous version plus one (skipping 0, which means "no CAS"
//! to the SDK) through the store's own compare-and-swap: two writers
//! holding the same version cannot both succeed, on one gateway or on
//! several sharing a store.

use super::abi::{status, MetricKind};
use super::instance::FilterState;
use super::EntryShared;
use crate::plugin::bounds::{self, CallBudget};
use crate::plugin::host::telemetry::MAX_FAMILIES_PER_PLUGIN;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;
use wasmtime::Caller;

/// Attempts at an unconditional write racing other writers before giving up.
const MAX_WRITE_ATTEMPTS: usize = 64;

/// Items a shared queue holds; the oldest is dropped beyond.
const MAX_QUEUE_ITEMS: usize = 10_000;

/// Bytes a shared queue holds; the oldest items are dropped beyond, so a
/// queue whose consumer is slow or gone costs bounded memory whatever
/// clients send.
pub const MAX_QUEUE_BYTES: usize = 4 << 20;

/// The largest item one enqueue takes (a larger one is `BAD_ARGUMENT`).
pub const MAX_QUEUE_ITEM_BYTES: usize = 64 << 10;

/// Queues one plugin may register, and the longest name one may have:
/// queue names are a filter's constants, not data.
pub const MAX_QUEUES_PER_PLUGIN: usize = 64;
pub const MAX_QUEUE_NAME_BYTES: usize = 256;

/// A value as stored in the kv store: its CAS version, then its bytes.
pub fn encode_stored(version: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + value.len());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The version and value of a stored entry; one written by something else
/// than a filter reads as version 1.
pub fn decode_stored(raw: &[u8]) -> (u32, &[u8]) {
    match raw.get(..4) {
        Some(v) if raw.len() >= 4 => {
            let version = u32::from_le_bytes(v.try_into().expect("4 bytes"));
            (version.max(1), &raw[4..])
        }
        _ => (1, raw),
    }
}

fn next_version(version: u32) -> u32 {
    version.wrapping_add(1).max(1)
}

/// The kv key for `key`, after the grant, bounds and budget checks: a
/// filter without `allow: kv` traps with the fix in the message (the SDK
/// has no status for "refused" on shared data).
fn kv_key(
    caller: &mut Caller<'_, FilterState>,
    key: &str,
    value_len: Option<usize>,
) -> wasmtime::Result<String> {
    let state = caller.data();
    if !state.entry.grants.kv {
        return Err(wasmtime::format_err!(
            "shared data needs the `kv` capability: add `kv` to the `allow:` list of plugin `{}` on route `{}`",
            state.entry.plugin,
            state.entry.route
        ));
    }
    if let Err(refusal) = bounds::check_kv(key, value_len, None) {
        return Err(wasmtime::format_err!("shared data refused: {refusal}"));
    }
    let key = format!("{}/{key}", state.entry.plugin);
    if !CallBudget::take(&mut caller.data_mut().budget.kv_ops) {
        return Err(wasmtime::format_err!(
            "too many shared data operations in one callback"
        ));
    }
    Ok(key)
}

/// `proxy_get_shared_data`: the value and its (non-zero) CAS version.
pub async fn get(
    caller: &mut Caller<'_, FilterState>,
    key: &str,
) -> wasmtime::Result<Option<(Vec<u8>, u32)>> {
    let key = kv_key(caller, key, None)?;
    let kv = caller.data().entry.services.kv.clone();
    let since = Instant::now();
    let raw = kv.get(&key).await;
    caller.data_mut().clock.waited(since);
    let raw = raw.map_err(|e| wasmtime::format_err!("shared data: {e}"))?;
    Ok(raw.map(|raw| {
        let (version, value) = decode_stored(&raw);
        (value.to_vec(), version)
    }))
}

/// `proxy_set_shared_data`: `value` `None` removes. With `cas` non-zero the
/// write happens only if the stored version is still `cas` (an absent key
/// is written whatever the CAS, as in Envoy); else `CAS_MISMATCH`.
pub async fn set(
    caller: &mut Caller<'_, FilterState>,
    key: &str,
    value: Option<Vec<u8>>,
    cas: u32,
) -> wasmtime::Result<i32> {
    let key = kv_key(caller, key, value.as_ref().map(Vec::len))?;
    let kv = caller.data().entry.services.kv.clone();
    let since = Instant::now();
    let outcome = async {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let current = kv.get(&key).await?;
            let version = current.as_deref().map(|raw| decode_stored(raw).0);
            if cas != 0 && version.is_some_and(|v| v != cas) {
                return Ok(status::CAS_MISMATCH);
            }
            let Some(value) = &value else {
                kv.delete(&key).await?;
                return Ok(status::OK);
            };
            let new = encode_stored(next_version(version.unwrap_or(0)), value);
            if kv.compare_and_swap(&key, current, new, None).await? {
                return Ok(status::OK);
            }
            if cas != 0 {
                return Ok(status::CAS_MISMATCH);
            }
        }
        Err("too much contention on the key".to_string())
    }
    .await;
    caller.data_mut().clock.waited(since);
    outcome.map_err(|e: String| wasmtime::format_err!("shared data: {e}"))
}

/// The queues that got an item since one route entry's root context last
/// heard of them, and the wake-up of the task that tells it
/// (`proxy_on_queue_ready`, see [`super::root`]).
#[derive(Default)]
pub struct QueueWatch {
    ready: Mutex<BTreeSet<u32>>,
    wake: tokio::sync::Notify,
}

impl QueueWatch {
    fn ready(&self) -> MutexGuard<'_, BTreeSet<u32>> {
        self.ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queue `id` has an item: noted once however many arrive before the
    /// root context is told.
    fn notify(&self, id: u32) {
        self.ready().insert(id);
        self.wake.notify_one();
    }

    /// The queues that got items, in id order, once there are any.
    /// Cancel-safe: nothing is taken until it returns.
    pub async fn next(&self) -> Vec<u32> {
        loop {
            let ids = std::mem::take(&mut *self.ready());
            if !ids.is_empty() {
                return ids.into_iter().collect();
            }
            self.wake.notified().await;
        }
    }
}

/// Shared queues, process-wide: a queue is named by its owner (the plugin
/// name, Envoy's VM id) and its name. Every route entry whose filter
/// registered a queue is told when an item is enqueued to it, from
/// whichever context.
#[derive(Default)]
pub struct Queues {
    ids: HashMap<(String, String), u32>,
    items: HashMap<u32, Queue>,
    watchers: HashMap<u32, Vec<Weak<QueueWatch>>>,
}

/// One queue's items and their total size.
#[derive(Default)]
struct Queue {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Queue {
    fn push(&mut self, value: Vec<u8>) {
        while !self.items.is_empty()
            && (self.items.len() >= MAX_QUEUE_ITEMS || self.bytes + value.len() > MAX_QUEUE_BYTES)
        {
            self.pop();
        }
        self.bytes += value.len();
        self.items.push_back(value);
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let value = self.items.pop_front()?;
        self.bytes -= value.len();
        Some(value)
    }
}

/// The process's queues.
pub fn queues() -> MutexGuard<'static, Queues> {
    static QUEUES: OnceLock<Mutex<Queues>> = OnceLock::new();
    QUEUES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Queues {
    /// The id of `owner`'s queue `name`, created if new; `watch` (the
    /// registering entry's) is told of every item enqueued from now on.
    /// `None` for a name longer than [`MAX_QUEUE_NAME_BYTES`] or a queue
    /// past the owner's [`MAX_QUEUES_PER_PLUGIN`].
    pub fn register(&mut self, owner: &str, name: &str, watch: &Arc<QueueWatch>) -> Option<u32> {
        if name.len() > MAX_QUEUE_NAME_BYTES {
            return None;
        }
        let key = (owner.to_string(), name.to_string());
        let id = match self.ids.get(&key) {
            Some(&id) => id,
            None => {
                if self.ids.keys().filter(|(o, _)| o == owner).count() >= MAX_QUEUES_PER_PLUGIN {
                    return None;
                }
                let id = self.ids.len() as u32 + 1;
                self.ids.insert(key, id);
                id
            }
        };
        self.items.entry(id).or_default();
        let watchers = self.watchers.entry(id).or_default();
        watchers.retain(|w| w.strong_count() > 0);
        if !watchers
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(watch)))
        {
            watchers.push(Arc::downgrade(watch));
        }
        Some(id)
    }

    /// The id of an existing queue.
    pub fn resolve(&self, owner: &str, name: &str) -> Option<u32> {
        self.ids
            .get(&(owner.to_string(), name.to_string()))
            .copied()
    }

    /// Appends to queue `id` and tells its watchers; false if there is no
    /// such queue.
    pub fn enqueue(&mut self, id: u32, value: Vec<u8>) -> bool {
        let Some(queue) = self.items.get_mut(&id) else {
            return false;
        };
        queue.push(value);
        if let Some(watchers) = self.watchers.get_mut(&id) {
            watchers.retain(|w| match w.upgrade() {
                Some(watch) => {
                    watch.notify(id);
                    true
                }
                None => false,
            });
        }
        true
    }

    /// `None`: no such queue; `Some(None)`: empty.
    pub fn dequeue(&mut self, id: u32) -> Option<Option<Vec<u8>>> {
        self.items.get_mut(&id).map(Queue::pop)
    }
}

/// The metrics an entry's filter defined, exported to Prometheus through
/// [`crate::plugin::Telemetry`] (prefixed with the plugin as for
/// components): a counter adds, a histogram observes, a gauge is set to
/// its value after each update; every metric's value is kept for
/// `proxy_get_metric`.
#[derive(Default)]
pub struct Metrics {
    defined: Mutex<Vec<(MetricKind, String, i64)>>,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, Vec<(MetricKind, String, i64)>> {
        self.defined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The id of metric `name` (the same id for the same name and kind);
    /// `None` for a name outside the bounds components have (1 to
    /// [`bounds::MAX_METRIC_NAME_BYTES`]) or a metric past the per-plugin
    /// cap, so a filter that names metrics after request data cannot grow
    /// the list, or the registry, with every request.
    pub fn define(&self, kind: MetricKind, name: &str) -> Option<u32> {
        if name.is_empty() || name.len() > bounds::MAX_METRIC_NAME_BYTES {
            return None;
        }
        let name = bounds::sanitise_metric_name(name);
        let mut defined = self.lock();
        if let Some(at) = defined
            .iter()
            .position(|(k, n, _)| *k == kind && *n == name)
        {
            return Some(at as u32 + 1);
        }
        if defined.len() >= MAX_FAMILIES_PER_PLUGIN {
            return None;
        }
        defined.push((kind, name, 0));
        Some(defined.len() as u32)
    }

    /// Adds `value` (`record`: sets it, or observes it for a histogram);
    /// false for an unknown id.
    pub fn update(&self, entry: &EntryShared, id: u32, value: i64, record: bool) -> bool {
        let (kind, name, now) = {
            let mut defined = self.lock();
            let Some((kind, name, current)) = defined.get_mut((id as usize).wrapping_sub(1)) else {
                return false;
            };
            *current = if record {
                value
            } else {
                current.saturating_add(value)
            };
            (*kind, name.clone(), *current)
        };
        let telemetry = &entry.services.telemetry;
        match kind {
            MetricKind::Counter if value > 0 => {
                telemetry.counter_add(&entry.plugin, &name, value as u64, &[])
            }
            MetricKind::Histogram if record => {
                telemetry.histogram_observe(&entry.plugin, &name, value as f64, &[])
            }
            MetricKind::Gauge => telemetry.gauge_set(&entry.plugin, &name, now as f64, &[]),
            _ => {}
        }
        true
    }

    /// A metric's current value.
    pub fn value(&self, id: u32) -> Option<i64> {
        self.lock()
            .get((id as usize).wrapping_sub(1))
            .map(|(_, _, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_name_out_of_bounds_or_past_the_cap_is_refused() {
        let metrics = Metrics::default();
        assert_eq!(metrics.define(MetricKind::Counter, ""), None);
        let long = "n".repeat(bounds::MAX_METRIC_NAME_BYTES + 1);
        assert_eq!(metrics.define(MetricKind::Gauge, &long), None);
        for i in 0..MAX_FAMILIES_PER_PLUGIN {
            assert_eq!(
                metrics.define(MetricKind::Counter, &format!("m{i}")),
                Some(i as u32 + 1)
            );
        }
        assert_eq!(metrics.define(MetricKind::Counter, "one_more"), None);
        assert_eq!(metrics.define(MetricKind::Counter, "m0"), Some(1));
    }

    #[test]
    fn versions_are_stored_with_the_value_and_never_zero() {
        assert_eq!(decode_stored(&encode_stored(7, b"abc")), (7, &b"abc"[..]));
        assert_eq!(next_version(u32::MAX), 1);
        assert_eq!(decode_stored(b"x").0, 1, "a foreign value still has a CAS");
    }

    #[test]
    fn queues_are_found_by_owner_and_name_and_drain_in_order() {
        let mut queues = Queues::default();
        let watch = Arc::new(QueueWatch::default());
        let id = queues.register("p", "q", &watch).unwrap();
        assert_eq!(queues.register("p", "q", &watch), Some(id));
        assert_eq!(queues.resolve("p", "q"), Some(id));
        assert_eq!(queues.resolve("other", "q"), None);
        assert!(queues.enqueue(id, b"1".to_vec()));
        assert!(queues.enqueue(id, b"2".to_vec()));
        assert_eq!(queues.dequeue(id), Some(Some(b"1".to_vec())));
        assert_eq!(queues.dequeue(id), Some(Some(b"2".to_vec())));
        assert_eq!(queues.dequeue(id), Some(None));
        assert_eq!(queues.dequeue(999), None);
    }

    #[tokio::test]
    async fn an_enqueue_tells_the_entries_that_registered_the_queue_once() {
        let mut queues = Queues::default();
        let (owner, other) = (
            Arc::new(QueueWatch::default()),
            Arc::new(QueueWatch::default()),
        );
        let id = queues.register("p", "q", &owner).unwrap();
        let elsewhere = queues.register("p", "r", &other).unwrap();
        assert!(queues.enqueue(id, b"1".to_vec()));
        assert!(queues.enqueue(id, b"2".to_vec()));
        assert_eq!(owner.next().await, vec![id], "two items, one notice");
        assert!(
            other.ready().is_empty(),
            "not the watcher of queue {elsewhere}"
        );
        drop(other);
        assert!(
            queues.enqueue(elsewhere, b"3".to_vec()),
            "a gone watcher is skipped"
        );
        assert!(queues.watchers[&elsewhere].is_empty());
    }

    #[test]
    fn a_queue_without_a_consumer_keeps_at_most_its_byte_cap_newest_first() {
        let mut queues = Queues::default();
        let watch = Arc::new(QueueWatch::default());
        let id = queues.register("p", "q", &watch).unwrap();
        let item = vec![7u8; MAX_QUEUE_ITEM_BYTES];
        let pushed = 3 * MAX_QUEUE_BYTES / MAX_QUEUE_ITEM_BYTES;
        for i in 0..pushed {
            let mut item = item.clone();
            item[0] = i as u8;
            assert!(queues.enqueue(id, item));
        }
        let queue = &queues.items[&id];
        assert!(queue.bytes <= MAX_QUEUE_BYTES, "{} bytes kept", queue.bytes);
        assert_eq!(queue.bytes, queue.items.iter().map(Vec::len).sum::<usize>());
        assert_eq!(queue.items.back().unwrap()[0], (pushed - 1) as u8);
    }

    #[test]
    fn a_plugin_registers_a_bounded_number_of_queues_with_bounded_names() {
        let mut queues = Queues::default();
        let watch = Arc::new(QueueWatch::default());
        let long = "q".repeat(MAX_QUEUE_NAME_BYTES + 1);
        assert_eq!(queues.register("p", &long, &watch), None);
        for i in 0..MAX_QUEUES_PER_PLUGIN {
            assert!(queues.register("p", &format!("q{i}"), &watch).is_some());
        }
        assert_eq!(queues.register("p", "one more", &watch), None);
        assert!(
            queues.register("p", "q0", &watch).is_some(),
            "an existing one is found"
        );
        assert!(
            queues.register("other", "q", &watch).is_some(),
            "per plugin"
        );
    }
}
