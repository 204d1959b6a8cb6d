//! Connection workers: one single-threaded tokio runtime per core, each on
//! its own thread, as nginx runs one worker process per core and Pingora
//! offers "no steal" runtimes. A client connection is served start to
//! finish on one worker, with every task it spawns (the upstream
//! connection it borrows from that worker's pool too), so proxying a
//! request wakes no other thread and moves no task between caches
//! (measured against tokio's work-stealing scheduler in BENCHMARKS.md).
//!
//! The accept loops, the admin listener, reloads and health checks stay on
//! the main runtime; only client connections come here.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::runtime::{Builder, Handle};

/// How many workers to start; set once, before the first connection.
static COUNT: OnceLock<usize> = OnceLock::new();

thread_local! {
    /// The index of the worker this thread is, if it is one.
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Sets the number of workers (`0`: one per available core). Has no
/// effect once a worker has started or the count has been read.
pub fn configure(count: usize) {
    let _ = COUNT.set(if count == 0 { cores() } else { count });
}

/// The number of workers (configured, or one per available core).
pub fn count() -> usize {
    *COUNT.get_or_init(cores)
}

/// The worker running on this thread: `Some(i)` with `i < count()` on a
/// worker, `None` elsewhere. Lets per-worker state (the upstream pools)
/// pick its own slot without a lock.
pub fn current() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// One `T` per worker plus one for every other thread, each thread using
/// its own: state a worker touches on every request (upstream connection
/// pools, warm plugin instances) stays in its own core's caches and is
/// driven by its own thread.
pub struct PerWorker<T> {
    /// Index 0: threads that are no worker; `i + 1`: worker `i`.
    slots: Box<[T]>,
}

impl<T> PerWorker<T> {
    /// One slot per worker and one for other threads, each made by `make`.
    pub fn new(make: impl FnMut() -> T) -> PerWorker<T> {
        PerWorker {
            slots: std::iter::repeat_with(make).take(count() + 1).collect(),
        }
    }

    /// This thread's slot.
    pub fn local(&self) -> &T {
        let slot = current().map_or(0, |i| i + 1);
        self.slots.get(slot).unwrap_or(&self.slots[0])
    }

    /// Every slot, this thread's first, then the others in turn: where to
    /// look when the local one has nothing to give.
    pub fn nearest_first(&self) -> impl Iterator<Item = &T> {
        let n = self.slots.len();
        let own = current().map_or(0, |i| (i + 1) % n);
        (own..own + n).map(move |i| &self.slots[i % n])
    }

    /// How many slots there are (workers + 1).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The started workers and how many connections each serves.
pub struct Workers {
    handles: Vec<Handle>,
    /// Open connections per worker (WebSocket tunnels included): new ones
    /// go to the least loaded.
    load: Vec<Arc<AtomicUsize>>,
    /// Where the search for the least loaded starts, turning, so that ties
    /// do not all fall on the first worker.
    next: AtomicUsize,
}

impl Workers {
    /// The process's workers, started on first use.
    pub fn get() -> &'static Workers {
        static WORKERS: OnceLock<Workers> = OnceLock::new();
        WORKERS.get_or_init(|| Workers::start(count()))
    }

    fn start(count: usize) -> Workers {
        let handles = (0..count).map(start_worker).collect();
        let load = (0..count).map(|_| Arc::default()).collect();
        Workers {
            handles,
            load,
            next: AtomicUsize::new(0),
        }
    }

    /// The worker with the fewest open connections, and the guard that
    /// counts one more against it until dropped: the connection keeps it
    /// as long as it or the tunnel it becomes is open.
    pub fn assign(&self) -> (&Handle, WorkerLoad) {
        let n = self.handles.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let i = (start..start + n)
            .map(|i| i % n)
            .min_by_key(|&i| self.load[i].load(Ordering::Relaxed))
            .expect("at least one worker");
        (&self.handles[i], WorkerLoad::new(self.load[i].clone()))
    }
}

/// Starts worker `index`: a current-thread runtime driven by its own thread
/// for the life of the process.
fn start_worker(index: usize) -> Handle {
    let runtime = Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds with the OS's epoll and timers");
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(format!("wasmgate-worker-{index}"))
        .spawn(move || {
            INDEX.with(|i| i.set(Some(index)));
            runtime.block_on(std::future::pending::<()>());
        })
        .expect("the OS starts a worker thread");
    handle
}

/// One connection counted against its worker's load until dropped.
pub struct WorkerLoad(Arc<AtomicUsize>);

impl WorkerLoad {
    fn new(load: Arc<AtomicUsize>) -> WorkerLoad {
        load.fetch_add(1, Ordering::Relaxed);
        WorkerLoad(load)
    }
}

impl Drop for WorkerLoad {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_connection_steers_new_ones_away_and_ties_take_turns() {
        let workers = Workers::start(2);
        let loaded = |w: &Workers| -> Vec<usize> {
            w.load.iter().map(|l| l.load(Ordering::Relaxed)).collect()
        };
        let (_, tunnel) = workers.assign();
        let (_, other) = workers.assign();
        assert_eq!(
            loaded(&workers),
            [1, 1],
            "the second goes to the idle worker"
        );
        drop((tunnel, other));
        assert_eq!(loaded(&workers), [0, 0]);
        let (_, first) = workers.assign();
        let first_at = loaded(&workers);
        drop(first);
        let (_, second) = workers.assign();
        assert_ne!(
            loaded(&workers),
            first_at,
            "a tie does not always pick the same worker"
        );
        drop(second);
    }

    #[test]
    fn each_thread_uses_its_own_slot_and_looks_at_its_own_first() {
        let slots = PerWorker::new({
            let mut next = 0;
            move || {
                next += 1;
                next - 1
            }
        });
        assert_eq!(slots.slot_count(), count() + 1);
        assert_eq!(*slots.local(), 0, "a thread that is no worker has slot 0");
        let order: Vec<usize> = slots.nearest_first().copied().collect();
        assert_eq!(order, (0..=count()).collect::<Vec<_>>());
        let (tx, rx) = std::sync::mpsc::channel();
        let slots = Arc::new(slots);
        let (worker, _load) = Workers::get().assign();
        let on_worker = slots.clone();
        worker.spawn(async move {
            let order: Vec<usize> = on_worker.nearest_first().copied().collect();
            tx.send((current(), *on_worker.local(), order)).unwrap();
        });
        let (index, local, order) = rx.recv().unwrap();
        let index = index.expect("runs on a worker");
        assert_eq!(local, index + 1);
        assert_eq!(order[0], index + 1);
        assert_eq!(order.len(), count() + 1);
    }

    #[tokio::test]
    async fn connections_spread_over_the_workers_and_run_there() {
        let workers = Workers::get();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (release, hold) = tokio::sync::watch::channel(false);
        for _ in 0..2 * count() {
            let (tx, mut hold) = (tx.clone(), hold.clone());
            let (worker, load) = workers.assign();
            worker.spawn(async move {
                let _load = load;
                tx.send(current()).unwrap();
                let _ = hold.wait_for(|go| *go).await;
            });
        }
        let mut seen = vec![0; count()];
        for _ in 0..2 * count() {
            let index = rx.recv().await.unwrap().expect("runs on a worker thread");
            seen[index] += 1;
        }
        assert!(
            seen.iter().all(|&n| n == 2),
            "least-loaded spread: {seen:?}"
        );
        assert_eq!(current(), None, "the test's own thread is no worker");
        release.send(true).unwrap();
    }
}
