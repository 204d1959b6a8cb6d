//! What each plugin instance's store holds, and the memory cap it enforces.

use crate::plugin::bounds::CallBudget;
use crate::plugin::grants::Grants;
use crate::plugin::host::HostServices;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The request-scoped context plugins of one chain share. A B-tree: a
/// context holds a handful of entries (bounded by `bounds`), which it finds
/// by comparing a few keys rather than hashing each with a keyed SipHash,
/// and lists in one stable order.
pub type RequestContext = BTreeMap<String, String>;

/// Store data of one plugin instance.
pub struct PluginState {
    /// A capability-free WASI context: Rust guests import WASI through std
    /// even when they use none of it.
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    /// Plugin name, for logs, metrics and kv namespacing.
    pub(crate) plugin: Arc<str>,
    /// Route name, for logs.
    pub(crate) route: Arc<str>,
    /// The current request's context, moved in before a call and out after.
    pub(crate) context: RequestContext,
    /// The context as the current call found it, kept at the call's first
    /// change (see [`PluginState::context_mut`]): a faulted call's changes
    /// are undone from it. Most calls change nothing and copy nothing.
    context_before: Option<RequestContext>,
    pub(crate) services: HostServices,
    /// What the route entry lets this plugin use.
    pub(crate) grants: Arc<Grants>,
    /// The call deadline covers the plugin's own time only: time spent
    /// waiting in host calls (kv, outbound HTTP) is subtracted, so an
    /// aggregation waiting on a slow upstream is bounded by its per-call
    /// timeouts, not by the plugin deadline.
    pub(crate) clock: CallClock,
    /// What the current call may still do through the capabilities.
    pub(crate) budget: CallBudget,
}

/// Measures one plugin call's own time: wall time minus host waits and
/// minus the time it spent yielded to other tasks at epoch ticks. A busy
/// gateway that runs other requests before resuming a call does not spend
/// that call's deadline: under load a healthy plugin must not fault (and
/// trip its breaker) for time it was not running.
pub struct CallClock {
    pub(crate) timeout: Duration,
    started: Instant,
    host_wait: Duration,
    /// Nanoseconds spent yielded in this call, added by the yield future
    /// (which cannot borrow the store).
    yielded: Arc<AtomicU64>,
}

impl CallClock {
    /// A clock for calls of at most `timeout` each.
    pub(crate) fn new(timeout: Duration) -> CallClock {
        CallClock {
            timeout,
            started: Instant::now(),
            host_wait: Duration::ZERO,
            yielded: Arc::default(),
        }
    }

    /// Starts timing a new call.
    pub(crate) fn start(&mut self) {
        self.started = Instant::now();
        self.host_wait = Duration::ZERO;
        self.yielded.store(0, Ordering::Relaxed);
    }

    /// Adds time spent waiting in a host call.
    pub(crate) fn waited(&mut self, since: Instant) {
        self.host_wait += since.elapsed();
    }

    /// Runs `pause` (the call stepping aside at a tick) and leaves the time
    /// it took out of the call's own time.
    pub(crate) fn pause(
        &self,
        pause: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let yielded = self.yielded.clone();
        async move {
            let since = Instant::now();
            pause.await;
            let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
            yielded.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// The plugin's own time so far in this call.
    pub(crate) fn used(&self) -> Duration {
        let yielded = Duration::from_nanos(self.yielded.load(Ordering::Relaxed));
        self.started
            .elapsed()
            .saturating_sub(self.host_wait)
            .saturating_sub(yielded)
    }

    /// The plugin's own time still allowed in this call, if any.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.timeout
            .checked_sub(self.used())
            .filter(|d| !d.is_zero())
    }
}

impl PluginState {
    pub(crate) fn new(
        plugin: Arc<str>,
        route: Arc<str>,
        memory_limit: usize,
        call_timeout: Duration,
        services: HostServices,
        grants: Arc<Grants>,
    ) -> Self {
        PluginState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: memory_limit,
                exceeded: false,
            },
            plugin,
            route,
            context: RequestContext::new(),
            context_before: None,
            services,
            grants,
            clock: CallClock::new(call_timeout),
            budget: CallBudget::PER_CALL,
        }
    }

    /// A new call (a hook or `init`) begins: its clock and its budget start afresh.
    pub(crate) fn start_call(&mut self) {
        self.clock.start();
        self.budget = CallBudget::PER_CALL;
        self.context_before = None;
    }

    /// The context, to change: the first change of a call keeps a copy of
    /// what it was, for [`PluginState::take_context`] after a fault.
    pub(crate) fn context_mut(&mut self) -> &mut RequestContext {
        if self.context_before.is_none() {
            self.context_before = Some(self.context.clone());
        }
        &mut self.context
    }

    /// Moves the context out after a call: as the call left it when it
    /// succeeded (`keep_changes`), else as the call found it.
    pub(crate) fn take_context(&mut self, keep_changes: bool) -> RequestContext {
        match self.context_before.take() {
            Some(before) if !keep_changes => {
                self.context.clear();
                before
            }
            _ => std::mem::take(&mut self.context),
        }
    }

    /// The kv key a plugin's `key` is stored under: plugins never see each
    /// other's keys. Refused when the route entry does not grant `kv`.
    pub(crate) fn kv_key(&self, key: &str) -> Result<String, String> {
        if !self.grants.kv {
            return Err(format!(
                "capability `kv` is not granted to plugin `{}` on route `{}`",
                self.plugin, self.route
            ));
        }
        Ok(format!("{}/{}", self.plugin, key))
    }

    /// Why an outbound request to `upstream` is refused, if it is.
    pub(crate) fn outbound_refusal(&self, upstream: &str) -> Option<String> {
        (!self.grants.allows_upstream(upstream)).then(|| {
            format!(
                "capability `outbound:{upstream}` is not granted to plugin `{}` on route `{}`",
                self.plugin, self.route
            )
        })
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps an instance's linear memory and remembers a breach, so a trap that
/// follows can be reported as a memory fault rather than a generic one.
pub struct MemoryCap {
    limit: usize,
    pub(crate) exceeded: bool,
}

impl MemoryCap {
    /// A cap of `limit` bytes, not yet breached.
    pub(crate) fn new(limit: usize) -> MemoryCap {
        MemoryCap {
            limit,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded (wanted {desired})",
                self.limit
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call resumed late because the gateway ran other requests first has
    /// not spent its deadline on that wait.
    #[tokio::test]
    async fn time_spent_yielded_is_not_the_calls_time() {
        let mut clock = CallClock::new(Duration::from_millis(100));
        clock.start();
        clock
            .pause(tokio::time::sleep(Duration::from_millis(150)))
            .await;
        assert!(
            clock.used() < Duration::from_millis(50),
            "{:?}",
            clock.used()
        );
        assert!(clock.remaining().is_some());
        clock.start();
        assert!(
            clock.used() < Duration::from_millis(50),
            "a new call starts afresh"
        );
    }

    /// What a faulted call set or removed is undone; a call that succeeds
    /// keeps its changes; a call that changes nothing hands back the context.
    #[tokio::test]
    async fn a_faulted_calls_context_changes_are_undone() {
        use crate::plugin::component::bindings::wasmgate::plugin::context::Host;
        let services = HostServices {
            kv: Arc::new(crate::plugin::host::kv::memory::MemoryKv::default()),
            outbound: Arc::new(crate::plugin::host::outbound::GatewayOutbound {
                client: crate::upstream::http_client(),
                upstreams: Default::default(),
            }),
            telemetry: crate::plugin::host::telemetry::GatewayTelemetry::process_wide(),
        };
        let mut state = PluginState::new(
            "p".into(),
            "r".into(),
            1 << 20,
            Duration::from_secs(1),
            services,
            Default::default(),
        );
        let found = RequestContext::from([("sub".to_string(), "alice".to_string())]);
        let call = |state: &mut PluginState, keep| {
            state.start_call();
            state.context = found.clone();
            state.set("role".into(), "admin".into());
            state.remove("sub".into());
            state.take_context(keep)
        };
        assert_eq!(
            call(&mut state, false),
            found,
            "a fault undoes both changes"
        );
        let kept = call(&mut state, true);
        assert_eq!(kept.get("role").map(String::as_str), Some("admin"));
        assert!(!kept.contains_key("sub"));
        state.start_call();
        state.context = found.clone();
        assert_eq!(state.get("sub".into()).as_deref(), Some("alice"));
        assert_eq!(state.take_context(false), found, "nothing changed");
    }
}
