//! The per-upstream circuit breaker: closed → (too many failures) → open,
//! where calls fail fast → (after `open_ms`) → half-open, where a few probe
//! calls decide between closed and open again.

use crate::config::CircuitBreakerConfig;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The breaker's state, as exported (`wasmgate_upstream_circuit_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl CircuitState {
    /// Its name in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        since: Instant,
        in_flight: u32,
        passed: u32,
    },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    consecutive: u32,
    /// The last `window` outcomes while closed (true = failure).
    recent: VecDeque<bool>,
}

/// One upstream's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: CircuitBreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: CircuitBreakerConfig) -> Breaker {
        Breaker {
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                consecutive: 0,
                recent: VecDeque::with_capacity(config.window as usize),
            }),
            config,
        }
    }

    fn open_for(&self) -> Duration {
        Duration::from_millis(self.config.open_ms)
    }

    /// Whether a call may go ahead now. In half-open this takes one of the
    /// probe slots, which [`Breaker::record`] gives back.
    pub fn admit(&self) -> bool {
        let mut guard = self.inner.lock().expect("breaker lock");
        let inner = &mut *guard;
        let now = Instant::now();
        match &mut inner.phase {
            Phase::Closed => true,
            Phase::Open { until } if now < *until => false,
            Phase::Open { .. } => {
                inner.phase = Phase::HalfOpen {
                    since: now,
                    in_flight: 1,
                    passed: 0,
                };
                true
            }
            Phase::HalfOpen {
                since, in_flight, ..
            } => {
                // Probes that never reported (cancelled) must not wedge the breaker.
                if *in_flight < self.config.half_open_requests || now > *since + self.open_for() {
                    *in_flight += 1;
                    *since = now;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Counts an admitted call's outcome.
    pub fn record(&self, ok: bool) {
        let mut guard = self.inner.lock().expect("breaker lock");
        let inner = &mut *guard;
        let now = Instant::now();
        match &mut inner.phase {
            Phase::Closed => {
                inner.consecutive = if ok { 0 } else { inner.consecutive + 1 };
                if inner.recent.len() == self.config.window as usize {
                    inner.recent.pop_front();
                }
                inner.recent.push_back(!ok);
                if self.should_trip(inner) {
                    tracing::warn!("circuit breaker opens after repeated failures");
                    self.open(inner, now);
                }
            }
            Phase::Open { .. } => {}
            Phase::HalfOpen {
                in_flight, passed, ..
            } => {
                if !ok {
                    self.open(inner, now);
                    return;
                }
                *in_flight = in_flight.saturating_sub(1);
                *passed += 1;
                if *passed >= self.config.half_open_requests {
                    inner.phase = Phase::Closed;
                }
            }
        }
    }

    fn should_trip(&self, inner: &Inner) -> bool {
        let c = &self.config;
        if c.consecutive_failures > 0 && inner.consecutive >= c.consecutive_failures {
            return true;
        }
        match c.failure_ratio {
            Some(ratio) if inner.recent.len() >= c.min_requests as usize => {
                let failed = inner.recent.iter().filter(|f| **f).count();
                failed as f64 >= ratio * inner.recent.len() as f64
            }
            _ => false,
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        inner.phase = Phase::Open {
            until: now + self.open_for(),
        };
        inner.consecutive = 0;
        inner.recent.clear();
    }

    /// The state now (an expired open state reads as half-open).
    pub fn state(&self) -> CircuitState {
        match self.inner.lock().expect("breaker lock").phase {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { until } if Instant::now() < until => CircuitState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(consecutive: u32, ratio: Option<f64>) -> Breaker {
        Breaker::new(CircuitBreakerConfig {
            consecutive_failures: consecutive,
            failure_ratio: ratio,
            window: 4,
            min_requests: 4,
            open_ms: 20,
            half_open_requests: 1,
        })
    }

    #[test]
    fn opens_on_consecutive_failures_then_probes_and_closes() {
        let b = breaker(2, None);
        b.record(false);
        b.record(true);
        b.record(false);
        assert_eq!(b.state(), CircuitState::Closed);
        b.record(false);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(!b.admit());
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.admit(), "one probe goes through");
        assert!(!b.admit(), "only one");
        b.record(true);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = breaker(1, None);
        b.record(false);
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.admit());
        b.record(false);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(!b.admit());
    }

    #[test]
    fn opens_on_failure_ratio_once_enough_calls_were_seen() {
        let b = breaker(0, Some(0.5));
        b.record(false);
        b.record(false);
        b.record(true);
        assert_eq!(b.state(), CircuitState::Closed, "below min_requests");
        b.record(true);
        assert_eq!(b.state(), CircuitState::Open, "2 of 4 failed");
    }
}
