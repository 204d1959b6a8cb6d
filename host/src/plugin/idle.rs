//! The warm instances of one route entry that no call is using, for both
//! kinds of plugin. Each worker keeps the instances it last used: an
//! instance that stays on one core finds its memory and stack in that
//! core's caches, and two workers never contend for one list.

use crate::http::workers::PerWorker;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Idle instances per worker, within the entry's idle budget.
pub struct IdleInstances<T> {
    lists: PerWorker<Mutex<Vec<T>>>,
    /// The most one worker keeps: its share of the entry's budget.
    share: usize,
}

impl<T> IdleInstances<T> {
    /// Lists holding at most `budget` instances in all, each worker its
    /// share rounded up (`0`: none is ever kept).
    pub fn new(budget: usize) -> IdleInstances<T> {
        let lists = PerWorker::new(Mutex::default);
        let share = budget.div_ceil(lists.slot_count());
        IdleInstances { lists, share }
    }

    /// An idle instance, this worker's own if it has one, else another's.
    pub fn take(&self) -> Option<T> {
        self.lists.nearest_first().find_map(|list| lock(list).pop())
    }

    /// Keeps `instance` for this worker's next call, unless its share is full.
    pub fn put(&self, instance: T) {
        let mut list = lock(self.lists.local());
        if list.len() < self.share {
            list.push(instance);
        }
    }
}

/// Nothing panics while a list is locked; a poisoned lock is recovered
/// rather than spread.
fn lock<T>(list: &Mutex<Vec<T>>) -> MutexGuard<'_, Vec<T>> {
    list.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_what_is_kept_and_a_zero_budget_keeps_nothing() {
        let idle = IdleInstances::new(1);
        idle.put(1);
        idle.put(2);
        assert_eq!(
            idle.take(),
            Some(1),
            "one worker's share of a budget of 1 is 1"
        );
        assert_eq!(idle.take(), None);
        let none = IdleInstances::new(0);
        none.put(1);
        assert_eq!(none.take(), None);
    }

    #[test]
    fn a_worker_without_idle_instances_takes_another_workers() {
        let idle = std::sync::Arc::new(IdleInstances::new(64));
        idle.put("kept off the workers");
        let (tx, rx) = std::sync::mpsc::channel();
        let (worker, _load) = crate::http::workers::Workers::get().assign();
        let on_worker = idle.clone();
        worker.spawn(async move {
            let first = on_worker.take();
            on_worker.put("kept by the worker");
            tx.send((first, on_worker.take())).unwrap();
        });
        assert_eq!(
            rx.recv().unwrap(),
            (Some("kept off the workers"), Some("kept by the worker"))
        );
    }
}
