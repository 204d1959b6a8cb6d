//! The per-upstream circuit breaker: closed → (too many failures) → open,
//! where calls fail fast → (after `open_ms`) → half-open, where a few probe
//! calls decide between closed and open again. Only the outcomes of probes
//! sent in the current half-open period decide it: a slow call sent before
//! the breaker tripped cannot close it by succeeding late.

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
    /// How many times the breaker went half-open: names the current probe period.
    half_opened: u64,
    consecutive: u32,
    /// The last `window` outcomes while closed (true = failure).
    recent: VecDeque<bool>,
}

/// A call the breaker let through; its outcome goes back to
/// [`Breaker::record`] with it, so the breaker knows whether it was a probe.
#[derive(Debug, Clone, Copy)]
#[must_use = "its outcome must be recorded"]
pub struct Admission {
    /// The half-open period this call probes, if it is a probe.
    probe_of: Option<u64>,
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
                half_opened: 0,
                consecutive: 0,
                recent: VecDeque::with_capacity(config.window as usize),
            }),
            config,
        }
    }

    fn open_for(&self) -> Duration {
        Duration::from_millis(self.config.open_ms)
    }

    /// Whether a call may go ahead now (`None`: fail fast). In half-open
    /// this takes one of the probe slots, which [`Breaker::record`] gives back.
    pub fn admit(&self) -> Option<Admission> {
        let mut guard = self.inner.lock().expect("breaker lock");
        let inner = &mut *guard;
        let now = Instant::now();
        match &mut inner.phase {
            Phase::Closed => Some(Admission { probe_of: None }),
            Phase::Open { until } if now < *until => None,
            Phase::Open { .. } => {
                inner.half_opened += 1;
                inner.phase = Phase::HalfOpen {
                    since: now,
                    in_flight: 1,
                    passed: 0,
                };
                Some(Admission {
                    probe_of: Some(inner.half_opened),
                })
            }
            Phase::HalfOpen {
                since, in_flight, ..
            } => {
                // Probes that never reported (cancelled) must not wedge the breaker.
                if *in_flight < self.config.half_open_requests || now > *since + self.open_for() {
                    *in_flight += 1;
                    *since = now;
                    Some(Admission {
                        probe_of: Some(inner.half_opened),
                    })
                } else {
                    None
                }
            }
        }
    }

    /// Gives back an admitted call's probe slot without counting an outcome:
    /// the call failed for a reason that says nothing about the upstream
    /// (the client's body broke off or came too slowly).
    pub fn release(&self, admission: Admission) {
        let mut inner = self.inner.lock().expect("breaker lock");
        let current_probe = admission.probe_of == Some(inner.half_opened);
        if let Phase::HalfOpen { in_flight, .. } = &mut inner.phase {
            if current_probe {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }

    /// Counts an admitted call's outcome. While half-open only the probes of
    /// the current period count; calls admitted before are ignored.
    pub fn record(&self, admission: Admission, ok: bool) {
        let mut guard = self.inner.lock().expect("breaker lock");
        let inner = &mut *guard;
        let now = Instant::now();
        let current_probe = admission.probe_of == Some(inner.half_opened);
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
            Phase::HalfOpen { .. } if !current_probe => {}
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

    /// Admits one call and records its outcome.
    fn call(b: &Breaker, ok: bool) {
        let admission = b.admit().expect("admitted");
        b.record(admission, ok);
    }

    #[test]
    fn opens_on_consecutive_failures_then_probes_and_closes() {
        let b = breaker(2, None);
        call(&b, false);
        call(&b, true);
        call(&b, false);
        assert_eq!(b.state(), CircuitState::Closed);
        call(&b, false);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(b.admit().is_none());
        std::thread::sleep(Duration::from_millis(25));
        let probe = b.admit().expect("one probe goes through");
        assert!(b.admit().is_none(), "only one");
        b.record(probe, true);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = breaker(1, None);
        call(&b, false);
        std::thread::sleep(Duration::from_millis(25));
        call(&b, false);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(b.admit().is_none());
    }

    #[test]
    fn opens_on_failure_ratio_once_enough_calls_were_seen() {
        let b = breaker(0, Some(0.5));
        call(&b, false);
        call(&b, false);
        call(&b, true);
        assert_eq!(b.state(), CircuitState::Closed, "below min_requests");
        call(&b, true);
        assert_eq!(b.state(), CircuitState::Open, "2 of 4 failed");
    }

    #[test]
    fn only_probes_sent_while_half_open_decide_it() {
        let b = breaker(1, None);
        let slow = b.admit().expect("closed: admitted");
        call(&b, false);
        assert_eq!(b.state(), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(25));
        let probe = b.admit().expect("half-open: one probe");
        b.record(slow, true);
        assert_eq!(
            b.state(),
            CircuitState::HalfOpen,
            "a late success of a call sent before the trip is no probe"
        );
        assert!(b.admit().is_none(), "the probe's slot is still taken");
        b.record(probe, true);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn a_probe_of_an_earlier_half_open_period_does_not_count() {
        let b = breaker(1, None);
        call(&b, false);
        std::thread::sleep(Duration::from_millis(25));
        let stale = b.admit().expect("first probe");
        // The probe never reports in time; after `open_ms` another is let through.
        std::thread::sleep(Duration::from_millis(25));
        let probe = b.admit().expect("a new probe once the first is overdue");
        b.record(probe, false);
        assert_eq!(b.state(), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(25));
        let fresh = b.admit().expect("next half-open period");
        b.record(stale, true);
        assert_eq!(
            b.state(),
            CircuitState::HalfOpen,
            "a stale probe is ignored"
        );
        b.record(fresh, true);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn a_released_probe_frees_its_slot_without_deciding() {
        let b = breaker(1, None);
        call(&b, false);
        std::thread::sleep(Duration::from_millis(25));
        let probe = b.admit().expect("first probe");
        assert!(b.admit().is_none(), "one probe at a time");
        b.release(probe);
        assert_eq!(
            b.state(),
            CircuitState::HalfOpen,
            "a release decides nothing"
        );
        let next = b.admit().expect("the released slot is free at once");
        b.record(next, true);
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
