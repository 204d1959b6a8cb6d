//! Picking a target: round-robin, smooth weighted round-robin, or least
//! outstanding requests — always among the targets the caller deems
//! eligible (healthy, not yet tried), so balancing and health compose.

use crate::config::BalanceStrategy;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// What the balancer needs to know of a target.
pub trait Weighed {
    /// Its configured weight (≥ 1).
    fn weight(&self) -> u32;
    /// Requests in flight to it from this gateway.
    fn outstanding(&self) -> usize;
}

/// One balancing state; an upstream has one, and a route that overrides the
/// strategy has its own so its rotation is not shared.
#[derive(Debug)]
pub struct Balancer {
    pub strategy: BalanceStrategy,
    next: AtomicUsize,
    /// Smooth WRR's running weights, one per target.
    current: Mutex<Vec<i64>>,
}

impl Balancer {
    /// A balancer over `targets` targets.
    pub fn new(strategy: BalanceStrategy, targets: usize) -> Balancer {
        Balancer {
            strategy,
            next: AtomicUsize::new(0),
            current: Mutex::new(vec![0; targets]),
        }
    }

    /// The index of the next target among those `eligible` says yes to, or
    /// `None` when there is none.
    pub fn pick<T: Weighed>(
        &self,
        targets: &[T],
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = targets.len();
        if n == 0 {
            return None;
        }
        match self.strategy {
            BalanceStrategy::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| eligible(i))
            }
            BalanceStrategy::WeightedRoundRobin => {
                // nginx's smooth weighted round-robin: every eligible target
                // gains its weight, the richest is picked and pays the total.
                let mut current = self.current.lock().expect("balancer lock");
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for i in (0..n).filter(|&i| eligible(i)) {
                    let weight = i64::from(targets[i].weight());
                    current[i] += weight;
                    total += weight;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                if let Some(b) = best {
                    current[b] -= total;
                }
                best
            }
            BalanceStrategy::LeastRequest => {
                // Ties rotate so equal targets share the load.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| eligible(i))
                    .min_by_key(|&i| targets[i].outstanding())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T(u32, usize);
    impl Weighed for T {
        fn weight(&self) -> u32 {
            self.0
        }
        fn outstanding(&self) -> usize {
            self.1
        }
    }

    fn picks(
        b: &Balancer,
        targets: &[T],
        n: usize,
        eligible: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        (0..n)
            .map(|_| b.pick(targets, &eligible).unwrap())
            .collect()
    }

    #[test]
    fn weighted_round_robin_interleaves_by_weight() {
        let targets = [T(3, 0), T(1, 0)];
        let b = Balancer::new(BalanceStrategy::WeightedRoundRobin, 2);
        assert_eq!(picks(&b, &targets, 8, |_| true), [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn ineligible_targets_are_skipped_by_every_strategy() {
        let targets = [T(1, 0), T(5, 0), T(1, 0)];
        for strategy in [
            BalanceStrategy::RoundRobin,
            BalanceStrategy::WeightedRoundRobin,
            BalanceStrategy::LeastRequest,
        ] {
            let b = Balancer::new(strategy, 3);
            assert!(picks(&b, &targets, 9, |i| i != 1).iter().all(|&i| i != 1));
            assert_eq!(b.pick(&targets, |_| false), None);
        }
    }

    #[test]
    fn least_request_prefers_the_idle_target() {
        let targets = [T(1, 4), T(1, 0), T(1, 2)];
        let b = Balancer::new(BalanceStrategy::LeastRequest, 3);
        assert_eq!(picks(&b, &targets, 5, |_| true), [1; 5]);
    }

    #[test]
    fn round_robin_rotates() {
        let targets = [T(1, 0), T(1, 0), T(1, 0)];
        let b = Balancer::new(BalanceStrategy::RoundRobin, 3);
        assert_eq!(picks(&b, &targets, 4, |_| true), [0, 1, 2, 0]);
    }
}
