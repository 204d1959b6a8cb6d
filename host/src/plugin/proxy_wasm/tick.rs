//! The timer of a filter entry whose root context set a tick period: a
//! task with its own instance calls `proxy_on_tick` every period (never
//! during a request, as the instance serves none), until the entry's pool
//! is dropped (a reload, a shutdown).

use super::instance::FilterInstance;
use super::EntryShared;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::InstancePre;

/// The running timer; dropping it stops it.
pub struct TickTask(tokio::task::JoinHandle<()>);

impl Drop for TickTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TickTask {
    /// Ticks `instance` every `period`. A faulting tick is logged and
    /// counted; the next tick runs on a fresh instance.
    pub fn spawn(
        instance: FilterInstance,
        period: Duration,
        pre: InstancePre<super::instance::FilterState>,
        entry: Arc<EntryShared>,
    ) -> TickTask {
        TickTask(tokio::spawn(async move {
            let mut period = period;
            let mut instance = Some(instance);
            loop {
                tokio::time::sleep(period).await;
                let vm = match instance.take() {
                    Some(vm) => vm,
                    None => match FilterInstance::start(&pre, entry.clone()).await {
                        Ok(vm) => vm,
                        Err(fault) => {
                            entry.report_fault("tick", &fault);
                            continue;
                        }
                    },
                };
                let mut vm = vm;
                match vm.tick().await {
                    Ok(()) => {
                        match vm.tick_period() {
                            Some(next) => period = next,
                            None => return,
                        }
                        instance = Some(vm);
                    }
                    Err(fault) => entry.report_fault("tick", &fault),
                }
            }
        }))
    }
}
