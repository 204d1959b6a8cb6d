//! The behaviour every [`KvStore`] backend keeps, as one runnable suite, so
//! a plugin that works on the embedded store works unchanged on Redis.
//!
//! [`check`] panics (like an assertion) at the first case a store breaks,
//! naming it. It uses keys under `<namespace>/` only, and waits for TTLs
//! with margins wide enough for a busy machine. The memory store's unit
//! tests and the Redis e2e tests both run it.

use crate::plugin::host::KvStore;
use std::sync::Arc;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// Runs every case against `kv` with keys under `namespace/`.
pub async fn check(kv: &dyn KvStore, namespace: &str) {
    let key = |name: &str| format!("{namespace}/{name}");
    values_round_trip(kv, &key).await;
    ttls_are_milliseconds_and_a_plain_set_clears_them(kv, &key).await;
    increment_counts_with_ttl_on_create(kv, &key).await;
    increment_refuses_what_it_cannot_add_to(kv, &key).await;
    compare_and_swap_replaces_only_the_expected_value(kv, &key).await;
}

/// As [`check`], plus races from many tasks at once: exact increments and
/// exactly one winner of a compare-and-swap. Needs a shared (`Arc`) store.
pub async fn check_concurrent(kv: Arc<dyn KvStore>, namespace: &str) {
    check(&*kv, namespace).await;
    let counter = format!("{namespace}/race-counter");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (kv, counter) = (kv.clone(), counter.clone());
            tokio::spawn(async move {
                for _ in 0..50 {
                    kv.increment(&counter, 1, Some(60_000 * MS)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        kv.get(&counter).await.unwrap(),
        Some(b"400".to_vec()),
        "concurrent increments are exact"
    );
    let slot = format!("{namespace}/race-slot");
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let (kv, slot) = (kv.clone(), slot.clone());
            tokio::spawn(async move {
                kv.compare_and_swap(&slot, None, vec![i], None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one compare-and-swap from absent wins");
    kv.delete(&counter).await.unwrap();
    kv.delete(&slot).await.unwrap();
}

async fn values_round_trip(kv: &dyn KvStore, key: &impl Fn(&str) -> String) {
    let k = key("value");
    kv.delete(&k).await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap(), None, "a missing key reads None");
    let binary = vec![0, 255, 10, 13, 0, b'x'];
    kv.set(&k, binary.clone(), None).await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap(), Some(binary), "bytes round-trip");
    kv.set(&k, Vec::new(), None).await.unwrap();
    assert_eq!(
        kv.get(&k).await.unwrap(),
        Some(Vec::new()),
        "an empty value is a value"
    );
    kv.delete(&k).await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap(), None, "deleted");
    kv.delete(&k).await.unwrap();
}

async fn ttls_are_milliseconds_and_a_plain_set_clears_them(
    kv: &dyn KvStore,
    key: &impl Fn(&str) -> String,
) {
    let (short, cleared) = (key("ttl-short"), key("ttl-cleared"));
    kv.set(&short, b"x".to_vec(), Some(150 * MS)).await.unwrap();
    kv.set(&cleared, b"x".to_vec(), Some(150 * MS))
        .await
        .unwrap();
    kv.set(&cleared, b"y".to_vec(), None).await.unwrap();
    assert_eq!(
        kv.get(&short).await.unwrap(),
        Some(b"x".to_vec()),
        "live before its TTL"
    );
    tokio::time::sleep(400 * MS).await;
    assert_eq!(kv.get(&short).await.unwrap(), None, "gone after its TTL");
    assert_eq!(
        kv.get(&cleared).await.unwrap(),
        Some(b"y".to_vec()),
        "a set without TTL replaces the entry and its TTL"
    );
    kv.delete(&cleared).await.unwrap();
}

async fn increment_counts_with_ttl_on_create(kv: &dyn KvStore, key: &impl Fn(&str) -> String) {
    let (k, plain) = (key("counter"), key("counter-plain"));
    kv.delete(&k).await.unwrap();
    assert_eq!(kv.increment(&k, 2, Some(200 * MS)).await, Ok(2), "created");
    assert_eq!(kv.increment(&k, 3, Some(60_000 * MS)).await, Ok(5));
    assert_eq!(kv.increment(&k, -6, None).await, Ok(-1), "negative deltas");
    assert_eq!(
        kv.get(&k).await.unwrap(),
        Some(b"-1".to_vec()),
        "stored as text"
    );
    tokio::time::sleep(450 * MS).await;
    assert_eq!(
        kv.get(&k).await.unwrap(),
        None,
        "the TTL is the creating call's: later increments do not extend it"
    );
    assert_eq!(kv.increment(&k, 1, None).await, Ok(1), "a fresh counter");
    kv.set(&plain, b"41".to_vec(), None).await.unwrap();
    assert_eq!(
        kv.increment(&plain, 1, None).await,
        Ok(42),
        "a set integer counts"
    );
    kv.delete(&k).await.unwrap();
    kv.delete(&plain).await.unwrap();
}

async fn increment_refuses_what_it_cannot_add_to(kv: &dyn KvStore, key: &impl Fn(&str) -> String) {
    let k = key("not-a-number");
    kv.set(&k, b"abc".to_vec(), None).await.unwrap();
    let error = kv.increment(&k, 1, None).await.unwrap_err();
    assert!(error.contains("not an integer"), "{error}");
    assert_eq!(
        kv.get(&k).await.unwrap(),
        Some(b"abc".to_vec()),
        "unchanged"
    );
    kv.set(&k, i64::MAX.to_string().into_bytes(), None)
        .await
        .unwrap();
    let error = kv.increment(&k, 1, None).await.unwrap_err();
    assert!(error.contains("overflow"), "{error}");
    assert_eq!(
        kv.get(&k).await.unwrap(),
        Some(i64::MAX.to_string().into_bytes()),
        "64-bit values are exact and unchanged"
    );
    kv.delete(&k).await.unwrap();
}

async fn compare_and_swap_replaces_only_the_expected_value(
    kv: &dyn KvStore,
    key: &impl Fn(&str) -> String,
) {
    let k = key("cas");
    kv.delete(&k).await.unwrap();
    let cas = |expected: Option<&[u8]>, new: &[u8], ttl: Option<Duration>| {
        kv.compare_and_swap(&k, expected.map(<[u8]>::to_vec), new.to_vec(), ttl)
    };
    assert_eq!(
        cas(Some(b"1"), b"2", None).await,
        Ok(false),
        "absent ≠ Some"
    );
    assert_eq!(cas(None, b"1", None).await, Ok(true), "absent = None");
    assert_eq!(cas(None, b"2", None).await, Ok(false), "present ≠ None");
    assert_eq!(cas(Some(b"0"), b"2", None).await, Ok(false), "wrong value");
    assert_eq!(kv.get(&k).await.unwrap(), Some(b"1".to_vec()), "unchanged");
    assert_eq!(cas(Some(b"1"), b"\0\xff", None).await, Ok(true));
    assert_eq!(
        cas(Some(b"\0\xff"), b"3", Some(150 * MS)).await,
        Ok(true),
        "binary values compare exactly"
    );
    assert_eq!(kv.get(&k).await.unwrap(), Some(b"3".to_vec()));
    tokio::time::sleep(400 * MS).await;
    assert_eq!(kv.get(&k).await.unwrap(), None, "the swap's TTL applies");
    assert_eq!(
        cas(None, b"4", None).await,
        Ok(true),
        "expired counts as absent"
    );
    kv.delete(&k).await.unwrap();
}
