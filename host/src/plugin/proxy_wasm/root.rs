//! The root context of a filter entry outside requests: a task with its
//! own instance calls `proxy_on_tick` every period the root context set,
//! and `proxy_on_queue_ready` when a queue the entry registered gets an
//! item (from any context, see [`super::shared::QueueWatch`]). The
//! instance serves no request, so neither ever runs during one. The task
//! lives as long as the entry's pool (until a reload or a shutdown).

use super::instance::{FilterInstance, FilterState};
use super::EntryShared;
use crate::plugin::PluginFault;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::InstancePre;

/// The least time between two `proxy_on_queue_ready` rounds: items that
/// arrive meanwhile are delivered together. A root context that enqueues
/// from its own `on_queue_ready` would otherwise be woken again at once,
/// for ever, without the task ever yielding its worker.
const QUEUE_READY_GAP: Duration = Duration::from_millis(1);

/// The wait after a faulting root callback, doubled at each fault in a row
/// up to [`MAX_FAULT_BACKOFF`]: a root context that traps at every tick
/// costs a fresh instance and a log line per backoff, not per millisecond.
const FIRST_FAULT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_FAULT_BACKOFF: Duration = Duration::from_secs(5);

/// The running task; dropping it stops it.
pub struct RootTask(tokio::task::JoinHandle<()>);

impl Drop for RootTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What woke the root context up.
enum Event {
    Tick,
    QueuesReady(Vec<u32>),
}

impl RootTask {
    /// Drives the entry's root context: on `first` (already started, and
    /// the one whose tick period counts from now) or, when there is none,
    /// on an instance started when first needed. A faulting callback is
    /// logged and counted; the next one runs on a fresh instance.
    pub fn spawn(
        first: Option<FilterInstance>,
        pre: InstancePre<FilterState>,
        entry: Arc<EntryShared>,
    ) -> RootTask {
        RootTask(tokio::spawn(async move {
            let mut period = first.as_ref().and_then(FilterInstance::tick_period);
            let mut next_tick = period.map(|p| Instant::now() + p);
            let mut instance = first;
            let mut backoff = FIRST_FAULT_BACKOFF;
            loop {
                let event = tokio::select! {
                    () = sleep_until(next_tick) => Event::Tick,
                    ids = entry.queue_watch.next() => Event::QueuesReady(ids),
                };
                let tick = matches!(event, Event::Tick);
                let vm = match instance.take() {
                    Some(vm) => Ok(vm),
                    None => FilterInstance::start(&pre, entry.clone()).await,
                };
                let (phase, outcome) = match (vm, event) {
                    (Err(fault), _) => ("root", Err(fault)),
                    (Ok(mut vm), Event::Tick) => ("tick", vm.tick().await.map(|()| vm)),
                    (Ok(mut vm), Event::QueuesReady(ids)) => {
                        ("queue_ready", deliver(&mut vm, ids).await.map(|()| vm))
                    }
                };
                match outcome {
                    Ok(vm) => {
                        let now = vm.tick_period();
                        if tick || now != period {
                            next_tick = now.map(|p| Instant::now() + p);
                        }
                        period = now;
                        instance = Some(vm);
                        backoff = FIRST_FAULT_BACKOFF;
                    }
                    Err(fault) => {
                        entry.report_fault(phase, &fault);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_FAULT_BACKOFF);
                        if tick {
                            next_tick = period.map(|p| Instant::now() + p);
                        }
                    }
                }
                if !tick {
                    tokio::time::sleep(QUEUE_READY_GAP).await;
                }
            }
        }))
    }
}

/// `proxy_on_queue_ready` for each queue that got items.
async fn deliver(vm: &mut FilterInstance, ids: Vec<u32>) -> Result<(), PluginFault> {
    for id in ids {
        vm.queue_ready(id).await?;
    }
    Ok(())
}

/// Sleeps until `at`; without a tick due, forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
