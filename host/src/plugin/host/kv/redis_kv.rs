//! The Redis kv backend: what lets several gateway replicas act as one
//! (a rate limit of N admits N across all of them; a response cached through
//! one is a hit through another).
//!
//! One [`ConnectionManager`] per gateway: a single multiplexed connection
//! that reconnects by itself, no pool of our own. Keys are the plugin's
//! namespaced key (`<plugin>/<key>`, as the memory store has them) behind
//! `kv.redis.key_prefix`. `increment` (TTL on create) and
//! `compare-and-swap` (with TTL) are Lua scripts, so each is one atomic step
//! on the server whichever replica sends it; TTLs are milliseconds (`PX`).
//!
//! Redis trouble is bounded: every call ends within `kv.redis.timeout_ms`
//! (connecting included) and the plugin gets the error and decides
//! (rate-limit's `on_kv_error`, cache's miss). The store tracks whether
//! Redis answers, logs once when an outage starts and once when it ends,
//! and a probe ([`probe_forever`]) keeps that state current without traffic
//! (for the logs, `wasmgate_kv_redis_up` and `/readyz`).

use crate::config::RedisKvConfig;
use crate::plugin::host::KvStore;
use futures::future::BoxFuture;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, ServerErrorKind};
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How often [`probe_forever`] pings Redis.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Longest TTL sent to Redis (about 4,000 years): larger ones are clamped,
/// as the memory store clamps them, instead of being refused by the server.
const MAX_TTL_MS: u64 = 1 << 47;

/// `increment` with the TTL set only when the call creates the key (the
/// memory store's rule): `SET NX PX` creates a `0` with the TTL, `INCRBY`
/// keeps whatever TTL the key has. The result is read back as text, so
/// 64-bit values stay exact (Lua numbers are doubles).
static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], '0', 'NX', 'PX', ARGV[2])
end
redis.call('INCRBY', KEYS[1], ARGV[1])
return redis.call('GET', KEYS[1])
",
    )
});

/// `compare-and-swap`: ARGV = expected present (`1`/`0`), expected value,
/// new value, TTL in ms (empty: none). Returns 1 when it swapped.
static COMPARE_AND_SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
",
    )
});

/// Why a Redis store could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisKvError {
    /// The URL is not one the client accepts (the URL itself is not
    /// repeated: it may hold a password).
    #[error("kv.redis.url: {0}")]
    Url(RedisError),
    #[error("kv.redis: cannot set up the connection: {0}")]
    Connection(RedisError),
}

/// The series a Redis store reports to (see `crate::observe::metrics`).
#[derive(Clone)]
pub struct KvCallMetrics {
    /// Time of one call, by operation (`op`).
    pub duration: HistogramVec,
    /// Failed calls, by operation and reason: `timeout`, `unavailable`
    /// (no connection) or `error` (Redis answered with an error).
    pub errors: IntCounterVec,
    /// 1 while Redis answers, 0 during an outage.
    pub up: IntGauge,
}

/// The operations, for metric labels.
#[derive(Clone, Copy)]
enum Op {
    Get,
    Set,
    Increment,
    Delete,
    CompareAndSwap,
    Ping,
}

impl Op {
    const ALL: [Op; 6] = [
        Op::Get,
        Op::Set,
        Op::Increment,
        Op::Delete,
        Op::CompareAndSwap,
        Op::Ping,
    ];

    fn label(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Increment => "increment",
            Op::Delete => "delete",
            Op::CompareAndSwap => "compare_and_swap",
            Op::Ping => "ping",
        }
    }
}

/// One operation's metric handles, looked up once.
struct OpSeries {
    duration: Histogram,
    timeout: IntCounter,
    unavailable: IntCounter,
    error: IntCounter,
}

/// Whether Redis answers, as the last call saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// No call has finished yet.
    Unknown = 0,
    Up = 1,
    Down = 2,
}

/// The outage state behind the once-per-outage logging.
struct Health {
    reach: AtomicU8,
    down_since: Mutex<Option<Instant>>,
    up_gauge: Option<IntGauge>,
    target: String,
}

impl Health {
    fn reach(&self) -> Reach {
        match self.reach.load(Ordering::Acquire) {
            1 => Reach::Up,
            2 => Reach::Down,
            _ => Reach::Unknown,
        }
    }

    /// Redis answered: logs the end of an outage (once).
    fn answered(&self) {
        if self.reach() == Reach::Up {
            return;
        }
        let previous = self.reach.swap(Reach::Up as u8, Ordering::AcqRel);
        if let Some(gauge) = &self.up_gauge {
            gauge.set(1);
        }
        let target = &self.target;
        if previous == Reach::Down as u8 {
            let down_for = lock(&self.down_since).take().map(|t| t.elapsed());
            tracing::info!(
                target: "wasmgate::kv",
                redis = %target,
                down_ms = down_for.map_or(0, |d| d.as_millis() as u64),
                "kv: redis is reachable again; kv calls succeed again"
            );
        } else if previous == Reach::Unknown as u8 {
            tracing::info!(target: "wasmgate::kv", redis = %target, "kv: connected to redis");
        }
    }

    /// Redis did not answer: logs the start of an outage (once).
    fn unreachable(&self, why: &str) {
        if self.reach() == Reach::Down {
            return;
        }
        if self.reach.swap(Reach::Down as u8, Ordering::AcqRel) == Reach::Down as u8 {
            return;
        }
        *lock(&self.down_since) = Some(Instant::now());
        if let Some(gauge) = &self.up_gauge {
            gauge.set(0);
        }
        tracing::warn!(
            target: "wasmgate::kv",
            redis = %self.target,
            error = why,
            "kv: redis is unreachable; kv calls fail (each within kv.redis.timeout_ms) until it is back, reconnecting"
        );
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The [`KvStore`] on Redis.
pub struct RedisKv {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    required_for_ready: bool,
    health: Health,
    series: Option<Vec<OpSeries>>,
}

impl RedisKv {
    /// A store for `config`, connecting lazily: the gateway starts (and
    /// `validate` runs) while Redis is still down; calls fail until it is up.
    /// Needs a Tokio runtime.
    pub fn new(
        config: &RedisKvConfig,
        metrics: Option<KvCallMetrics>,
    ) -> Result<RedisKv, RedisKvError> {
        let client = redis::Client::open(config.url.as_str()).map_err(RedisKvError::Url)?;
        let target = client.get_connection_info().addr().to_string();
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(RedisKvError::Connection)?;
        let series = metrics.as_ref().map(|m| {
            Op::ALL
                .iter()
                .map(|op| OpSeries {
                    duration: m.duration.with_label_values(&[op.label()]),
                    timeout: m.errors.with_label_values(&[op.label(), "timeout"]),
                    unavailable: m.errors.with_label_values(&[op.label(), "unavailable"]),
                    error: m.errors.with_label_values(&[op.label(), "error"]),
                })
                .collect()
        });
        Ok(RedisKv {
            connection,
            prefix: config.key_prefix.clone(),
            timeout,
            required_for_ready: config.required_for_ready,
            health: Health {
                reach: AtomicU8::new(Reach::Unknown as u8),
                down_since: Mutex::new(None),
                up_gauge: metrics.map(|m| m.up),
                target,
            },
            series,
        })
    }

    /// Whether the last call (or probe) got an answer from Redis.
    pub fn is_up(&self) -> bool {
        self.health.reach() == Reach::Up
    }

    /// Whether `/readyz` waits for Redis (`kv.redis.required_for_ready`).
    pub fn required_for_ready(&self) -> bool {
        self.required_for_ready
    }

    /// The Redis key of a namespaced kv key.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one call within the timeout, recording its time and outcome.
    async fn run<T>(
        &self,
        op: Op,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, call).await;
        let series = self.series.as_ref().map(|s| &s[op as usize]);
        if let Some(series) = series {
            series.duration.observe(started.elapsed().as_secs_f64());
        }
        match outcome {
            Ok(Ok(value)) => {
                self.health.answered();
                Ok(value)
            }
            Ok(Err(error)) if answered(&error) => {
                self.health.answered();
                series.inspect(|s| s.error.inc());
                Err(format!("kv: redis: {error}"))
            }
            // The client's own response or connect timeout (the same
            // `timeout_ms`) may fire first: a timeout all the same.
            Ok(Err(error)) if error.is_timeout() => self.timed_out(series),
            Ok(Err(error)) => {
                let message = error.to_string();
                self.health.unreachable(&message);
                series.inspect(|s| s.unavailable.inc());
                Err(format!("kv: redis unavailable: {message}"))
            }
            Err(_) => self.timed_out(series),
        }
    }

    /// A call that got no answer within `timeout_ms`.
    fn timed_out<T>(&self, series: Option<&OpSeries>) -> Result<T, String> {
        self.health.unreachable("timed out");
        series.inspect(|s| s.timeout.inc());
        Err(format!(
            "kv: redis did not answer within {} ms",
            self.timeout.as_millis()
        ))
    }

    /// Pings Redis (what [`probe_forever`] does once a tick).
    pub async fn ping(&self) -> Result<(), String> {
        let mut connection = self.connection.clone();
        self.run(Op::Ping, async move {
            redis::cmd("PING").query_async::<()>(&mut connection).await
        })
        .await
    }
}

/// Whether Redis itself answered with this error (a wrong-type value, a
/// script error): the server is there. A server that answers but cannot
/// serve (loading its data, a read-only replica, a cluster without a
/// primary) counts as unreachable.
fn answered(error: &RedisError) -> bool {
    match error.kind() {
        ErrorKind::Server(kind) => !matches!(
            kind,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::TryAgain
        ),
        ErrorKind::Extension | ErrorKind::UnexpectedReturnType | ErrorKind::Parse => true,
        _ => false,
    }
}

/// A TTL as the `PX` argument: whole milliseconds, at least 1 (`PX 0` is an
/// error in Redis; the memory store expires such an entry at once too).
fn px(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(MAX_TTL_MS)
        .clamp(1, MAX_TTL_MS)
}

/// A TTL as a script argument: empty for none.
fn px_arg(ttl: Option<Duration>) -> String {
    ttl.map(|t| px(t).to_string()).unwrap_or_default()
}

impl KvStore for RedisKv {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, String>> {
        let (key, mut connection) = (self.key(key), self.connection.clone());
        Box::pin(self.run(Op::Get, async move {
            redis::cmd("GET")
                .arg(key)
                .query_async(&mut connection)
                .await
        }))
    }

    fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<(), String>> {
        let mut command = redis::cmd("SET");
        command.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            command.arg("PX").arg(px(ttl));
        }
        let mut connection = self.connection.clone();
        Box::pin(self.run(Op::Set, async move {
            command.query_async::<()>(&mut connection).await
        }))
    }

    fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<i64, String>> {
        let (key, mut connection) = (self.key(key), self.connection.clone());
        Box::pin(self.run(Op::Increment, async move {
            INCREMENT
                .key(key)
                .arg(delta)
                .arg(px_arg(ttl))
                .invoke_async::<i64>(&mut connection)
                .await
        }))
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<(), String>> {
        let (key, mut connection) = (self.key(key), self.connection.clone());
        Box::pin(self.run(Op::Delete, async move {
            redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut connection)
                .await
        }))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'_, Result<bool, String>> {
        let (key, mut connection) = (self.key(key), self.connection.clone());
        Box::pin(self.run(Op::CompareAndSwap, async move {
            COMPARE_AND_SWAP
                .key(key)
                .arg(if expected.is_some() { "1" } else { "0" })
                .arg(expected.unwrap_or_default())
                .arg(new)
                .arg(px_arg(ttl))
                .invoke_async::<bool>(&mut connection)
                .await
        }))
    }
}

/// Pings Redis every [`PROBE_INTERVAL`] until the task is dropped, so an
/// outage and the recovery are seen (logged once, `/readyz`,
/// `wasmgate_kv_redis_up`) even with no kv traffic, and the connection is
/// re-established before the next request needs it.
pub async fn probe_forever(kv: Arc<RedisKv>) {
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let _ = kv.ping().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_milliseconds_at_least_one() {
        assert_eq!(px(Duration::from_micros(1500)), 1);
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_millis(250)), 250);
        assert_eq!(px(Duration::MAX), MAX_TTL_MS);
        assert_eq!(px_arg(None), "");
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_each_call_within_the_timeout() {
        // A port nothing listens on: connection refused, at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RedisKvConfig {
            url: format!("redis://127.0.0.1:{port}"),
            key_prefix: "t:".into(),
            timeout_ms: 200,
            required_for_ready: true,
        };
        let kv = RedisKv::new(&config, None).unwrap();
        assert!(!kv.is_up(), "unknown is not up");
        let started = Instant::now();
        let error = kv.get("ns/k").await.unwrap_err();
        assert!(error.starts_with("kv: redis"), "{error}");
        assert!(started.elapsed() < Duration::from_millis(1000));
        assert_eq!(kv.health.reach(), Reach::Down);
        assert!(kv.required_for_ready());
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        let config = RedisKvConfig {
            url: "http://user:secret@host".into(),
            key_prefix: String::new(),
            timeout_ms: 50,
            required_for_ready: false,
        };
        let error = RedisKv::new(&config, None).err().unwrap().to_string();
        assert!(error.starts_with("kv.redis.url: "), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
