//! What a route entry's calls pass before they run: a cap on concurrent
//! calls and a fault breaker.
//!
//! - **Cap**: at most `max_concurrent_calls` calls of one entry are in
//!   flight; one beyond waits up to `queue_timeout` for a slot, then fails
//!   with [`PluginFault::Busy`] (answered per the entry's `on_error`). This
//!   bounds the instances and the CPU one hammered entry can take.
//! - **Fault breaker**: after `faults` faults within `window_ms` (that are at
//!   least `failure_ratio` of the calls since the oldest of them), the entry
//!   is tripped for `cool_down_ms`: its calls fail with
//!   [`PluginFault::Tripped`] without running. Then one call probes it:
//!   success closes the breaker, a fault trips it again.
//!
//! The healthy path costs a few atomic operations: no lock is taken unless
//! the call faults or the entry is tripped.

use super::PluginFault;
use crate::config::FaultBreakerConfig;
use prometheus::{IntCounter, IntGauge};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The cap and breaker of one route entry.
pub struct EntryGuard {
    plugin: String,
    route: String,
    slots: Semaphore,
    max_calls: usize,
    queue_timeout: Duration,
    breaker: Breaker,
    series: Series,
}

/// The entry's metric handles, looked up once.
struct Series {
    open: IntGauge,
    trips: IntCounter,
    busy: IntCounter,
    tripped: IntCounter,
}

struct Breaker {
    config: FaultBreakerConfig,
    /// Fast path: false while closed.
    tripped: AtomicBool,
    /// Calls finished (with or without a fault), for the failure ratio.
    calls: AtomicU64,
    state: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    /// Recent faults: when, and `calls` at that moment (at most `faults` kept).
    faults: VecDeque<(Instant, u64)>,
    /// While tripped: until when calls are refused.
    open_until: Option<Instant>,
    /// A probe call is in flight (after the cool-down).
    probing: bool,
    trips: u64,
}

/// An admitted call: holds its slot until dropped. Report how it ended
/// with [`Ticket::finish`]; a ticket dropped unfinished (the request was
/// cancelled) counts as neither success nor fault.
pub struct Ticket<'a> {
    guard: &'a EntryGuard,
    _slot: SemaphorePermit<'a>,
    probe: bool,
}

/// A breaker's state as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Tripped: calls are refused for `retry_after` more.
    Open {
        retry_after: Duration,
    },
    /// The cool-down is over; the next call (or the one in flight) probes.
    HalfOpen,
}

/// What `/admin/plugins` shows of an entry.
#[derive(Debug, Clone, Copy)]
pub struct GuardStatus {
    pub breaker: BreakerState,
    pub recent_faults: usize,
    pub trips: u64,
    pub in_flight: usize,
    pub max_concurrent_calls: usize,
}

impl EntryGuard {
    /// The guard of the entry running `plugin` on `route`.
    pub fn new(
        plugin: &str,
        route: &str,
        max_calls: usize,
        queue_timeout: Duration,
        config: FaultBreakerConfig,
    ) -> EntryGuard {
        let metrics = crate::observe::metrics::metrics();
        let labels = [route, plugin];
        let series = Series {
            open: metrics.plugin_breaker_open.with_label_values(&labels),
            trips: metrics.plugin_breaker_trips.with_label_values(&labels),
            busy: metrics
                .plugin_calls_rejected
                .with_label_values(&[route, plugin, "busy"]),
            tripped: metrics.plugin_calls_rejected.with_label_values(&[
                route,
                plugin,
                "breaker_open",
            ]),
        };
        series.open.set(0);
        let max_calls = max_calls.clamp(1, Semaphore::MAX_PERMITS);
        EntryGuard {
            plugin: plugin.to_string(),
            route: route.to_string(),
            slots: Semaphore::new(max_calls),
            max_calls,
            queue_timeout,
            breaker: Breaker {
                config,
                tripped: AtomicBool::new(false),
                calls: AtomicU64::new(0),
                state: Mutex::new(Record::default()),
            },
            series,
        }
    }

    /// Admits one call, or says why not: the breaker is open, or no slot
    /// freed up within the queue timeout.
    pub async fn admit(&self) -> Result<Ticket<'_>, PluginFault> {
        let probe = match self.breaker.admit(Instant::now()) {
            Ok(probe) => probe,
            Err(retry_after) => {
                self.series.tripped.inc();
                return Err(PluginFault::Tripped { retry_after });
            }
        };
        let slot = match self.slots.try_acquire() {
            Ok(slot) => Ok(slot),
            Err(_) => match tokio::time::timeout(self.queue_timeout, self.slots.acquire()).await {
                Ok(Ok(slot)) => Ok(slot),
                _ => Err(PluginFault::Busy {
                    limit: self.max_calls,
                    waited: self.queue_timeout,
                }),
            },
        };
        match slot {
            Ok(slot) => Ok(Ticket {
                guard: self,
                _slot: slot,
                probe,
            }),
            Err(busy) => {
                if probe {
                    self.breaker.state().probing = false;
                }
                self.series.busy.inc();
                Err(busy)
            }
        }
    }

    /// The entry's state for the admin API.
    pub fn status(&self) -> GuardStatus {
        let now = Instant::now();
        let state = self.breaker.state();
        let breaker = match state.open_until {
            None => BreakerState::Closed,
            Some(until) if until > now => BreakerState::Open {
                retry_after: until - now,
            },
            Some(_) => BreakerState::HalfOpen,
        };
        let window = Duration::from_millis(self.breaker.config.window_ms);
        GuardStatus {
            breaker,
            recent_faults: state
                .faults
                .iter()
                .filter(|(at, _)| now.duration_since(*at) <= window)
                .count(),
            trips: state.trips,
            in_flight: self.max_calls - self.slots.available_permits(),
            max_concurrent_calls: self.max_calls,
        }
    }
}

impl Ticket<'_> {
    /// Records how the call ended: `None` for success, else its fault.
    pub fn finish(mut self, fault: Option<&PluginFault>) {
        let guard = self.guard;
        let probe = std::mem::take(&mut self.probe);
        let calls = guard.breaker.calls.fetch_add(1, Ordering::Relaxed) + 1;
        match fault {
            None if probe => {
                guard.breaker.close();
                guard.series.open.set(0);
                tracing::info!(
                    plugin = guard.plugin,
                    route = guard.route,
                    "plugin entry recovered: the probe call succeeded, breaker closed"
                );
            }
            None => {}
            Some(fault) => {
                let now = Instant::now();
                if let Some(trip) = guard.breaker.fault(now, calls, probe) {
                    guard.series.open.set(1);
                    guard.series.trips.inc();
                    let cool_down = guard.breaker.config.cool_down_ms;
                    match trip {
                        Trip::Again => tracing::warn!(
                            plugin = guard.plugin,
                            route = guard.route,
                            kind = fault.kind(),
                            cool_down_ms = cool_down,
                            "plugin entry tripped again: the probe call faulted"
                        ),
                        Trip::First { faults } => tracing::warn!(
                            plugin = guard.plugin,
                            route = guard.route,
                            kind = fault.kind(),
                            faults,
                            window_ms = guard.breaker.config.window_ms,
                            cool_down_ms = cool_down,
                            "plugin entry tripped: its requests are answered per on_error without running it"
                        ),
                    }
                }
            }
        }
    }
}

impl Ticket<'_> {
    /// Records `fault` as how the call ended and hands it back.
    pub fn finished(self, fault: PluginFault) -> PluginFault {
        self.finish(Some(&fault));
        fault
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe {
            // Cancelled mid-probe: let the next call probe.
            self.guard.breaker.state().probing = false;
        }
    }
}

/// Why a fault tripped the breaker.
enum Trip {
    First { faults: usize },
    Again,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, Record> {
        self.state.lock().expect("breaker lock")
    }

    /// `Ok(true)`: admitted as the probe; `Ok(false)`: admitted;
    /// `Err(retry_after)`: refused.
    fn admit(&self, now: Instant) -> Result<bool, Duration> {
        if !self.tripped.load(Ordering::Acquire) {
            return Ok(false);
        }
        let mut state = self.state();
        match state.open_until {
            None => Ok(false),
            Some(until) if until > now => Err(until - now),
            Some(_) if state.probing => Err(Duration::ZERO),
            Some(_) => {
                state.probing = true;
                Ok(true)
            }
        }
    }

    fn close(&self) {
        let mut state = self.state();
        state.faults.clear();
        state.open_until = None;
        state.probing = false;
        self.tripped.store(false, Ordering::Release);
    }

    /// Records a fault; `Some` when it trips the breaker.
    fn fault(&self, now: Instant, calls: u64, probe: bool) -> Option<Trip> {
        let config = &self.config;
        if config.faults == 0 {
            return None;
        }
        let cool_down = Duration::from_millis(config.cool_down_ms);
        let mut state = self.state();
        if probe {
            state.probing = false;
            state.open_until = Some(now + cool_down);
            state.trips += 1;
            return Some(Trip::Again);
        }
        if state.open_until.is_some() {
            // Already tripped (a call admitted before it tripped).
            return None;
        }
        let window = Duration::from_millis(config.window_ms);
        state.faults.push_back((now, calls));
        while state.faults.len() > config.faults as usize
            || state
                .faults
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > window)
        {
            state.faults.pop_front();
        }
        let faults = state.faults.len();
        let (_, first) = *state.faults.front()?;
        let calls_since = (calls - first + 1) as f64;
        if faults < config.faults as usize || (faults as f64) < config.failure_ratio * calls_since {
            return None;
        }
        state.open_until = Some(now + cool_down);
        state.trips += 1;
        self.tripped.store(true, Ordering::Release);
        Some(Trip::First { faults })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(config: FaultBreakerConfig, max_calls: usize) -> EntryGuard {
        EntryGuard::new(
            "p",
            "guard-unit",
            max_calls,
            Duration::from_millis(20),
            config,
        )
    }

    fn config(faults: u32, failure_ratio: f64, cool_down_ms: u64) -> FaultBreakerConfig {
        FaultBreakerConfig {
            faults,
            failure_ratio,
            window_ms: 10_000,
            cool_down_ms,
        }
    }

    const TRAP: PluginFault = PluginFault::Config(String::new());

    async fn call(guard: &EntryGuard, fault: bool) -> Result<(), PluginFault> {
        let ticket = guard.admit().await?;
        ticket.finish(fault.then_some(&TRAP));
        Ok(())
    }

    #[tokio::test]
    async fn trips_after_n_faults_then_probes_and_closes() {
        let guard = guard(config(3, 0.0, 50), 4);
        for _ in 0..2 {
            call(&guard, true).await.unwrap();
        }
        assert_eq!(guard.status().breaker, BreakerState::Closed);
        call(&guard, true).await.unwrap();
        assert!(matches!(
            call(&guard, false).await,
            Err(PluginFault::Tripped { .. })
        ));
        assert!(matches!(guard.status().breaker, BreakerState::Open { .. }));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(guard.status().breaker, BreakerState::HalfOpen);
        // One probe at a time.
        let probe = guard.admit().await.unwrap();
        assert!(matches!(
            guard.admit().await,
            Err(PluginFault::Tripped { .. })
        ));
        probe.finish(None);
        assert_eq!(guard.status().breaker, BreakerState::Closed);
        assert_eq!(guard.status().trips, 1);
        call(&guard, false).await.unwrap();
    }

    #[tokio::test]
    async fn a_faulting_probe_trips_again() {
        let guard = guard(config(1, 0.0, 30), 4);
        call(&guard, true).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        call(&guard, true).await.unwrap();
        assert!(matches!(guard.status().breaker, BreakerState::Open { .. }));
        assert_eq!(guard.status().trips, 2);
    }

    #[tokio::test]
    async fn a_cancelled_probe_lets_the_next_call_probe() {
        let guard = guard(config(1, 0.0, 10), 4);
        call(&guard, true).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard.admit().await.unwrap());
        call(&guard, false).await.unwrap();
        assert_eq!(guard.status().breaker, BreakerState::Closed);
    }

    #[tokio::test]
    async fn rare_faults_among_many_calls_do_not_trip() {
        let guard = guard(config(3, 0.5, 1000), 4);
        for _ in 0..10 {
            call(&guard, true).await.unwrap();
            for _ in 0..5 {
                call(&guard, false).await.unwrap();
            }
        }
        assert_eq!(guard.status().breaker, BreakerState::Closed);
        for _ in 0..3 {
            call(&guard, true).await.unwrap();
        }
        assert!(matches!(guard.status().breaker, BreakerState::Open { .. }));
    }

    #[tokio::test]
    async fn zero_faults_turns_the_breaker_off() {
        let guard = guard(config(0, 0.0, 1000), 4);
        for _ in 0..100 {
            call(&guard, true).await.unwrap();
        }
        assert_eq!(guard.status().breaker, BreakerState::Closed);
    }

    #[tokio::test]
    async fn calls_beyond_the_cap_wait_then_are_refused() {
        let guard = guard(config(0, 0.0, 1000), 2);
        let (a, b) = (guard.admit().await.unwrap(), guard.admit().await.unwrap());
        assert_eq!(guard.status().in_flight, 2);
        let started = Instant::now();
        assert!(matches!(
            guard.admit().await,
            Err(PluginFault::Busy { limit: 2, .. })
        ));
        assert!(
            started.elapsed() >= Duration::from_millis(20),
            "queued first"
        );
        // A slot freed while queued is taken.
        let waiting = guard.admit();
        let (c, ()) = tokio::join!(waiting, async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            a.finish(None);
        });
        assert!(c.is_ok());
        drop(b);
    }
}
