//! The plugin runtime: wasmtime engines (optimizing, and a baseline one for
//! fast hot reload), components compiled once per file,
//! and per-route-entry pools of warm, initialised instances.
//!
//! A fresh instance costs ~20 µs, a call into a warm one ~1 µs (see
//! BENCHMARKS.md), so instances are reused across requests; one that faults is
//! dropped, never returned to its pool. Every call runs under an epoch
//! deadline and a linear-memory cap, and passes its entry's [`EntryGuard`]
//! (concurrency cap, fault breaker) first.
//!
//! Plugin time is fair time: at every epoch tick (1 ms), a call that has
//! run for a tick already yields its tokio worker (`tokio::task::yield_now`,
//! which resumes it only once the worker has run the other ready tasks and
//! polled for I/O), so a looping plugin delays other requests by about a
//! tick, and a busy gateway serves its ready requests before it resumes a
//! long call. Short calls never yield. The call's deadline still counts
//! from its start (host waits excepted): time spent yielded is the call's
//! time.

use super::bindings::{
    Plugin, PluginInfo, PluginPre, Request, RequestAction, Response, ResponseChanges,
};
use super::state::{PluginState, RequestContext};
use crate::config::FaultBreakerConfig;
use crate::plugin::bounds;
use crate::plugin::entry::EntryPool;
use crate::plugin::grants::{Capability, Grants};
use crate::plugin::guard::EntryGuard;
use crate::plugin::host::HostServices;
use crate::plugin::idle::IdleInstances;
use crate::plugin::proxy_wasm::{self, instance::FilterState, module::FilterCode, FilterPool};
use crate::plugin::{PluginError, PluginFault};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Strategy,
    UpdateDeadline,
};

/// Plugin instances that may exist at once across all pools (warm and in
/// flight) unless `plugins.max_instances` says otherwise; instantiating
/// beyond it fails that request, not the gateway.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;

/// How often the epoch ticks: the longest a plugin runs before it yields
/// its worker, and the precision of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// A full trap backtrace is logged at most this often per plugin.
const BACKTRACE_INTERVAL: Duration = Duration::from_secs(60);

/// Limits every plugin call of one route entry runs under.
#[derive(Debug, Clone, Copy)]
pub struct PluginLimits {
    pub call_timeout: Duration,
    pub memory_limit_bytes: usize,
    pub max_idle_instances: usize,
    /// Calls in flight at once; more wait up to `queue_timeout`.
    pub max_concurrent_calls: usize,
    pub queue_timeout: Duration,
    pub fault_breaker: FaultBreakerConfig,
}

/// Called at every epoch tick while a plugin runs: interrupt it if its
/// call's own time (host waits and time yielded excluded) is spent; else, if it has run for a
/// tick already, yield the worker; go on at the next tick. A short call that
/// merely spans a tick boundary goes on without yielding.
fn deadline_reached(
    store: wasmtime::StoreHookState<'_, PluginState>,
) -> wasmtime::Result<UpdateDeadline> {
    Ok(deadline_update(&store.data().clock))
}

/// The deadline policy of [`deadline_reached`], for every runtime's store.
pub(crate) fn deadline_update(clock: &super::state::CallClock) -> UpdateDeadline {
    match clock.remaining() {
        None => UpdateDeadline::Interrupt,
        Some(_) if clock.used() < EPOCH_TICK => UpdateDeadline::Continue(1),
        Some(_) => UpdateDeadline::YieldCustom(1, Box::pin(clock.pause(step_aside()))),
    }
}

/// Where a running plugin call waits at a tick. `tokio::task::yield_now`
/// resumes it only once its worker has run every other ready task and
/// polled for I/O; but tokio then wakes it into the worker's LIFO slot,
/// ahead of the tasks that I/O just woke. Yielding once more puts it at the
/// back of the run queue, behind them.
async fn step_aside() {
    tokio::task::yield_now().await;
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

impl Default for PluginLimits {
    fn default() -> Self {
        let settings = crate::config::PluginSettings::default();
        PluginLimits {
            call_timeout: Duration::from_millis(settings.call_timeout_ms),
            memory_limit_bytes: (settings.memory_limit_mb as usize) << 20,
            max_idle_instances: settings.max_idle_instances,
            max_concurrent_calls: settings.max_concurrent_calls,
            queue_timeout: Duration::from_millis(settings.queue_timeout_ms),
            fault_breaker: settings.fault_breaker,
        }
    }
}

/// Lets a full trap backtrace into the log at most once per
/// [`BACKTRACE_INTERVAL`] per plugin; every fault still gets its one-line
/// log and its count in `wasmgate_plugin_faults_total`.
#[derive(Default)]
struct BacktraceGate {
    /// When the last backtrace was logged, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl BacktraceGate {
    /// `Some(held back since the last one)` if a backtrace may be logged now.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().expect("backtrace gate lock");
        let (last, held_back) = &mut *state;
        if last.is_some_and(|at| now.duration_since(at) < BACKTRACE_INTERVAL) {
            *held_back += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held_back))
    }
}

/// The engines, their linkers with every host capability, and the epoch ticker.
pub struct PluginRuntime {
    optimized: Toolchain,
    /// Absent where Winch cannot build an engine (then every compile is optimized).
    baseline: Option<Toolchain>,
    services: HostServices,
    stop_ticker: Arc<AtomicBool>,
}

/// How a plugin's machine code was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Winch, a single-pass compiler: compiles in a fraction of Cranelift's
    /// time and runs slower. Serves a hot-reloaded file at once, until the
    /// optimized build of the same bytes replaces it.
    Baseline,
    /// Cranelift: what start-up loads and what every plugin ends up on.
    Optimized,
}

impl Tier {
    /// The name operators see (admin API, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

/// One compiler's engine and the linker bound to it: a component, its
/// stores and its instances all belong to one engine.
struct Toolchain {
    engine: Engine,
    linker: Linker<PluginState>,
    /// The Proxy-Wasm host functions, for core-module filters.
    filters: wasmtime::Linker<FilterState>,
}

impl Toolchain {
    /// An engine compiling with `strategy`; the optimized one pools
    /// instances, the baseline one (whose plugins serve only until their
    /// optimized build lands) allocates on demand.
    fn new(strategy: Strategy, max_instances: u32) -> Result<Toolchain, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.strategy(strategy);
        if matches!(strategy, Strategy::Cranelift) {
            // The pooling allocator reuses memories, tables and — what matters
            // most per call — async fiber stacks, instead of mapping fresh ones.
            let mut pooling = PoolingAllocationConfig::default();
            pooling
                .total_component_instances(max_instances)
                .total_core_instances(max_instances.saturating_mul(4))
                .total_memories(max_instances)
                .total_tables(max_instances.saturating_mul(4))
                .total_stacks(max_instances)
                .max_memories_per_component(2)
                .max_tables_per_component(8);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        }
        let engine_error = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let engine = Engine::new(&config).map_err(|e| {
            PluginError::Engine(format!(
                "{e:#} (plugins.max_instances {max_instances} reserves ~{} GiB of address space up front; lower it under an address-space limit such as `ulimit -v`)",
                u64::from(max_instances) * 4
            ))
        })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        Plugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(engine_error)?;
        let mut filters = wasmtime::Linker::new(&engine);
        proxy_wasm::hostcalls::add_to_linker(&mut filters).map_err(engine_error)?;
        Ok(Toolchain {
            engine,
            linker,
            filters,
        })
    }
}

/// A plugin file compiled and linked, ready to instantiate.
pub struct CompiledPlugin {
    pub name: Arc<str>,
    /// Hash of the file's bytes, to skip recompiling an unchanged file.
    pub content_hash: u64,
    pub size_bytes: usize,
    /// The contract version the plugin was built against (for a
    /// Proxy-Wasm filter, the ABI version).
    pub contract_version: String,
    /// Everything the component imports (`wasmgate:plugin/kv@0.1.0`, WASI
    /// interfaces…), as named in the component.
    pub imports: Vec<String>,
    /// The gated capabilities among `imports`: a route must grant each.
    pub capabilities: BTreeSet<Capability>,
    /// When this version was compiled (loaded or hot-reloaded).
    pub loaded_at: std::time::SystemTime,
    pub tier: Tier,
    code: Code,
    backtraces: BacktraceGate,
}

/// What a plugin file compiled to: a WIT component or a Proxy-Wasm filter.
enum Code {
    Component(PluginPre<PluginState>),
    ProxyWasm(FilterCode),
}

impl CompiledPlugin {
    /// The ABI the plugin speaks, as operators see it:
    /// `wasmgate:plugin@0.1.0` or `proxy-wasm 0.2.1`.
    pub fn abi(&self) -> String {
        match &self.code {
            Code::Component(_) => format!(
                "{}@{}",
                super::bindings::CONTRACT_PACKAGE,
                self.contract_version
            ),
            Code::ProxyWasm(filter) => proxy_wasm::abi_label(filter.abi_version),
        }
    }

    /// True for a Proxy-Wasm filter.
    pub fn is_proxy_wasm(&self) -> bool {
        matches!(self.code, Code::ProxyWasm(_))
    }
}

impl PluginRuntime {
    /// Builds the engines and links the capabilities in `services`, with
    /// room for [`DEFAULT_MAX_INSTANCES`] instances.
    pub fn new(services: HostServices) -> Result<Self, PluginError> {
        Self::with_max_instances(services, DEFAULT_MAX_INSTANCES)
    }

    /// As [`PluginRuntime::new`], with room for `max_instances` instances
    /// (`plugins.max_instances`): each reserves its address space at start.
    pub fn with_max_instances(
        services: HostServices,
        max_instances: u32,
    ) -> Result<Self, PluginError> {
        let optimized = Toolchain::new(Strategy::Cranelift, max_instances)?;
        let baseline = Toolchain::new(Strategy::Winch, max_instances)
            .inspect_err(|e| tracing::warn!("no baseline compiler, reloads compile optimized: {e}"))
            .ok();
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let engines: Vec<_> = std::iter::once(&optimized)
            .chain(&baseline)
            .map(|t| t.engine.weak())
            .collect();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("wasmgate-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        }
                    }
                }
            })
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        Ok(PluginRuntime {
            optimized,
            baseline,
            services,
            stop_ticker,
        })
    }

    /// The capabilities this runtime gives plugins.
    pub fn services(&self) -> &HostServices {
        &self.services
    }

    /// Compiles a plugin file's bytes with the optimizing compiler.
    /// CPU-heavy: call it off the request path (e.g. in `spawn_blocking`).
    pub fn compile(
        &self,
        name: &str,
        file: &Path,
        bytes: &[u8],
    ) -> Result<CompiledPlugin, PluginError> {
        self.compile_with(&self.optimized, Tier::Optimized, name, file, bytes)
    }

    /// Compiles with the baseline compiler when there is one, for a reload
    /// that should serve at once; a file the baseline compiler refuses is
    /// compiled optimized (and its errors are the optimized compiler's).
    pub fn compile_quick(
        &self,
        name: &str,
        file: &Path,
        bytes: &[u8],
    ) -> Result<CompiledPlugin, PluginError> {
        match &self.baseline {
            Some(baseline) => self
                .compile_with(baseline, Tier::Baseline, name, file, bytes)
                .or_else(|_| self.compile(name, file, bytes)),
            None => self.compile(name, file, bytes),
        }
    }

    fn compile_with(
        &self,
        toolchain: &Toolchain,
        tier: Tier,
        name: &str,
        file: &Path,
        bytes: &[u8],
    ) -> Result<CompiledPlugin, PluginError> {
        let fail = |message: String| PluginError::Compile {
            file: file.to_path_buf(),
            message,
        };
        let engine = &toolchain.engine;
        if proxy_wasm::module::is_core_module(bytes) {
            let filter = proxy_wasm::module::compile(engine, &toolchain.filters, file, bytes)?;
            return Ok(CompiledPlugin {
                name: name.into(),
                content_hash: content_hash(bytes),
                size_bytes: bytes.len(),
                contract_version: filter.abi_version.to_string(),
                imports: filter.imports.clone(),
                capabilities: BTreeSet::new(),
                loaded_at: std::time::SystemTime::now(),
                tier,
                code: Code::ProxyWasm(filter),
                backtraces: BacktraceGate::default(),
            });
        }
        let component = Component::new(engine, bytes).map_err(|e| fail(format!("{e:#}")))?;
        let contract_version =
            contract_version(engine, &component).map_err(|message| PluginError::Contract {
                file: file.to_path_buf(),
                message,
            })?;
        let imports: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let capabilities = imports
            .iter()
            .filter_map(|name| Capability::of_import(name))
            .collect();
        let instance_pre =
            toolchain
                .linker
                .instantiate_pre(&component)
                .map_err(|e| PluginError::Contract {
                    file: file.to_path_buf(),
                    message: format!("{e:#}"),
                })?;
        let pre = PluginPre::new(instance_pre).map_err(|e| PluginError::Contract {
            file: file.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        Ok(CompiledPlugin {
            name: name.into(),
            content_hash: content_hash(bytes),
            size_bytes: bytes.len(),
            contract_version,
            imports,
            capabilities,
            loaded_at: std::time::SystemTime::now(),
            tier,
            code: Code::Component(pre),
            backtraces: BacktraceGate::default(),
        })
    }

    /// Creates the pool of one route entry for either kind of plugin:
    /// [`PluginRuntime::pool`] for a component; for a Proxy-Wasm filter, a
    /// [`FilterPool`] whose first instance is configured now with
    /// `config_text`, or else `config` as JSON text (none: empty).
    pub async fn entry_pool(
        &self,
        compiled: Arc<CompiledPlugin>,
        route: &str,
        config: &serde_json::Value,
        config_text: Option<&str>,
        limits: PluginLimits,
        grants: Arc<Grants>,
    ) -> Result<EntryPool, PluginError> {
        let Code::ProxyWasm(filter) = &compiled.code else {
            if config_text.is_some() {
                return Err(PluginError::Init {
                    plugin: compiled.name.to_string(),
                    route: route.to_string(),
                    message: "`config_text` is for Proxy-Wasm filters; give a component `config`"
                        .into(),
                });
            }
            let pool = self
                .pool(compiled, route, config.to_string(), limits, grants)
                .await?;
            return Ok(EntryPool::Component(pool));
        };
        let config = match (config_text, config) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, serde_json::Value::Null) => Vec::new(),
            (None, config) => config.to_string().into_bytes(),
        };
        let pre = filter.pre.clone();
        let name = compiled.name.to_string();
        FilterPool::new(
            compiled,
            pre,
            route,
            config,
            limits,
            self.services.clone(),
            grants,
        )
        .await
        .map(EntryPool::ProxyWasm)
        .map_err(|fault| PluginError::Init {
            plugin: name,
            route: route.to_string(),
            message: fault.to_string(),
        })
    }

    /// Creates the instance pool for one route entry: checks the plugin's
    /// imports against `grants`, instantiates one instance and calls `init`
    /// with `config`, so an ungranted capability or a bad config is refused now.
    pub async fn pool(
        &self,
        compiled: Arc<CompiledPlugin>,
        route: &str,
        config_json: String,
        limits: PluginLimits,
        grants: Arc<Grants>,
    ) -> Result<PluginPool, PluginError> {
        let Code::Component(pre) = &compiled.code else {
            return Err(PluginError::Init {
                plugin: compiled.name.to_string(),
                route: route.to_string(),
                message: "a Proxy-Wasm filter runs through `entry_pool`, not as a component".into(),
            });
        };
        let pre = pre.clone();
        if let Some(&capability) = compiled.capabilities.iter().find(|&&c| !grants.allows(c)) {
            return Err(PluginError::NotGranted {
                plugin: compiled.name.to_string(),
                route: route.to_string(),
                capability,
            });
        }
        let guard = EntryGuard::new(
            &compiled.name,
            route,
            limits.max_concurrent_calls,
            limits.queue_timeout,
            limits.fault_breaker,
        );
        let mut pool = PluginPool {
            compiled,
            pre,
            guard,
            route: route.into(),
            config_json,
            limits,
            services: self.services.clone(),
            grants,
            info: PluginInfo {
                wants_request_body: false,
                wants_response: false,
                wants_response_body: false,
            },
            header_interest: None,
            idle: IdleInstances::new(limits.max_idle_instances),
        };
        let init_failed = |fault: PluginFault| PluginError::Init {
            plugin: pool.compiled.name.to_string(),
            route: route.to_string(),
            message: fault.to_string(),
        };
        let (mut first, info) = pool.fresh().await.map_err(init_failed)?;
        let interest = first
            .plugin
            .wasmgate_plugin_handler()
            .call_header_interest(&mut first.store)
            .await
            .map_err(|e| init_failed(classify(&e, first.store.data().memory.exceeded, limits)))?;
        pool.info = info;
        pool.header_interest = match interest {
            Some(names) if names.len() > bounds::MAX_HEADER_INTEREST => {
                // Narrowing to that many names would cost more than it saves.
                tracing::warn!(
                    plugin = %pool.compiled.name,
                    route,
                    names = names.len(),
                    "plugin lists more than {} header names of interest; it gets every header",
                    bounds::MAX_HEADER_INTEREST
                );
                None
            }
            interest => {
                interest.map(|names| names.into_iter().map(|n| n.to_ascii_lowercase()).collect())
            }
        };
        pool.idle.put(first);
        Ok(pool)
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// The `major.minor.patch` of the plugin's `handler` export, checked against
/// ours. Public so `wasmgate plugin inspect` gives the same verdict as a load.
pub fn contract_version(engine: &Engine, component: &Component) -> Result<String, String> {
    let prefix = format!("{}/handler@", super::bindings::CONTRACT_PACKAGE);
    let ty = component.component_type();
    let found = ty
        .exports(engine)
        .find_map(|(name, _)| name.strip_prefix(&prefix).map(str::to_string))
        .ok_or_else(|| {
            format!(
                "not a wasmgate plugin: it does not export `{prefix}{}`",
                crate::plugin::CONTRACT_VERSION
            )
        })?;
    if !crate::plugin::compatible_version(&found) {
        return Err(format!(
            "built against contract wasmgate:plugin@{found}, but this gateway implements @{} (compatible: same major, and same minor while major is 0); rebuild the plugin with a matching SDK",
            crate::plugin::CONTRACT_VERSION
        ));
    }
    Ok(found)
}

/// A stable hash of a plugin file's bytes.
pub fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// One warm instance: its store and its bound exports.
struct Instance {
    store: Store<PluginState>,
    plugin: Plugin,
}

/// Warm, initialised instances of one plugin for one route entry.
pub struct PluginPool {
    compiled: Arc<CompiledPlugin>,
    pre: PluginPre<PluginState>,
    /// The entry's concurrency cap and fault breaker.
    guard: EntryGuard,
    route: Arc<str>,
    config_json: String,
    limits: PluginLimits,
    services: HostServices,
    grants: Arc<Grants>,
    info: PluginInfo,
    /// Lower-case names of the headers the plugin reads; `None`: all.
    header_interest: Option<Vec<String>>,
    idle: IdleInstances<Instance>,
}

impl PluginPool {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.compiled.name
    }

    /// The compiled plugin this pool instantiates.
    pub fn compiled(&self) -> &Arc<CompiledPlugin> {
        &self.compiled
    }

    /// The entry's concurrency cap and fault breaker.
    pub fn guard(&self) -> &EntryGuard {
        &self.guard
    }

    /// What the plugin declared at init.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The headers the plugin reads (lower-case); `None`: all of them.
    pub fn header_interest(&self) -> Option<&[String]> {
        self.header_interest.as_deref()
    }

    /// Runs the request hook with `context` as the request's shared context.
    /// The plugin sees only the headers it declared interest in; `request`
    /// is left as it was.
    pub async fn on_request(
        &self,
        request: &mut Request,
        context: &mut RequestContext,
    ) -> Result<RequestAction, PluginFault> {
        self.run_hook(
            request,
            context,
            async |plugin, store, request| {
                plugin
                    .wasmgate_plugin_handler()
                    .call_on_request(store, request)
                    .await
            },
            bounds::check_request_action,
        )
        .await
    }

    /// Runs the response hook with `context` as the request's shared context;
    /// headers are narrowed as for [`PluginPool::on_request`].
    pub async fn on_response(
        &self,
        response: &mut Response,
        context: &mut RequestContext,
    ) -> Result<ResponseChanges, PluginFault> {
        self.run_hook(
            response,
            context,
            async |plugin, store, response| {
                plugin
                    .wasmgate_plugin_handler()
                    .call_on_response(store, response)
                    .await
            },
            bounds::check_response_changes,
        )
        .await
    }

    /// One hook call, the same for every phase: passes the entry's guard,
    /// checks out a warm instance, narrows `message`'s headers to those the
    /// plugin reads, calls `hook` (see [`PluginPool::call`]), puts the headers
    /// back, returns the instance (or drops it after a fault) and tells the
    /// guard how the call ended.
    async fn run_hook<M: HookInput, T>(
        &self,
        message: &mut M,
        context: &mut RequestContext,
        hook: impl AsyncFnOnce(&Plugin, &mut Store<PluginState>, &M) -> wasmtime::Result<T>,
        check: impl FnOnce(&T) -> Result<(), bounds::Refusal>,
    ) -> Result<T, PluginFault> {
        let ticket = self.guard.admit().await?;
        let mut instance = match self.checkout().await {
            Ok(instance) => instance,
            Err(fault) => return Err(ticket.finished(fault)),
        };
        let all_headers = self.narrow_headers(message.headers_mut());
        let result = self
            .call(
                &mut instance,
                context,
                async |plugin, store| hook(plugin, store, &*message).await,
                check,
            )
            .await;
        if let Some(all) = all_headers {
            *message.headers_mut() = all;
        }
        let result = self.checkin(instance, result);
        ticket.finish(result.as_ref().err());
        result
    }

    /// Replaces `headers` with only those the plugin reads, returning the full
    /// set to put back after the call; `None` when the plugin reads them all
    /// (or the chain already narrowed them to what this plugin reads, the
    /// usual case for a chain of one).
    fn narrow_headers(&self, headers: &mut Vec<(String, String)>) -> Option<Vec<(String, String)>> {
        let interest = self.header_interest.as_ref()?;
        let wanted = |name: &String| interest.iter().any(|i| i == name);
        if headers.iter().all(|(name, _)| wanted(name)) {
            return None;
        }
        let narrowed = headers
            .iter()
            .filter(|(name, _)| wanted(name))
            .cloned()
            .collect();
        Some(std::mem::replace(headers, narrowed))
    }

    /// Moves the context into the store, runs `f` under the call deadline,
    /// checks its result against the host's bounds with `check`, moves the
    /// context back out (even after a fault: what the plugin set before
    /// failing is kept only on success). A result the host will not act on
    /// is counted as a refusal and faults the call (`invalid_output`).
    async fn call<T>(
        &self,
        instance: &mut Instance,
        context: &mut RequestContext,
        f: impl AsyncFnOnce(&Plugin, &mut Store<PluginState>) -> wasmtime::Result<T>,
        check: impl FnOnce(&T) -> Result<(), bounds::Refusal>,
    ) -> Result<T, PluginFault> {
        let Instance { store, plugin } = instance;
        store.data_mut().start_call();
        store.data_mut().context = std::mem::take(context);
        store.set_epoch_deadline(1);
        let result = f(plugin, store).await;
        let state = store.data_mut();
        let result = match result {
            Ok(value) => match check(&value) {
                Ok(()) => Ok(value),
                Err(refusal) => {
                    bounds::count(self.name(), refusal.what, refusal.reason);
                    Err(PluginFault::InvalidOutput(refusal.to_string()))
                }
            },
            Err(error) => Err(self.fault(error, state.memory.exceeded)),
        };
        *context = state.take_context(result.is_ok());
        result
    }

    /// A warm instance, this worker's own if it has one, else another's;
    /// a fresh one when none is idle.
    async fn checkout(&self) -> Result<Instance, PluginFault> {
        match self.idle.take() {
            Some(instance) => Ok(instance),
            None => self.fresh().await.map(|(instance, _)| instance),
        }
    }

    /// Returns a healthy instance to the pool; a faulted one is dropped here.
    fn checkin<T>(
        &self,
        instance: Instance,
        result: Result<T, PluginFault>,
    ) -> Result<T, PluginFault> {
        if result.is_ok() {
            self.idle.put(instance);
        }
        result
    }

    /// A new instance, initialised with this entry's config.
    async fn fresh(&self) -> Result<(Instance, PluginInfo), PluginFault> {
        let state = PluginState::new(
            self.compiled.name.clone(),
            self.route.clone(),
            self.limits.memory_limit_bytes,
            self.limits.call_timeout,
            self.services.clone(),
            self.grants.clone(),
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(deadline_reached);
        store.data_mut().start_call();
        store.set_epoch_deadline(1);
        let plugin = match self.pre.instantiate_async(&mut store).await {
            Ok(plugin) => plugin,
            Err(e) => return Err(self.fault(e, store.data().memory.exceeded)),
        };
        let init = plugin
            .wasmgate_plugin_handler()
            .call_init(&mut store, &self.config_json)
            .await
            .map_err(|e| self.fault(e, store.data().memory.exceeded))?;
        let info = init.map_err(PluginFault::Config)?;
        Ok((Instance { store, plugin }, info))
    }
}

impl PluginPool {
    /// Classifies a failed call; a trap's full backtrace goes to the log
    /// here, at most once a minute per plugin (the fault's own log line,
    /// one per fault, is the chain's).
    fn fault(&self, error: wasmtime::Error, memory_exceeded: bool) -> PluginFault {
        let fault = classify(&error, memory_exceeded, self.limits);
        if matches!(fault, PluginFault::Trap(_)) {
            if let Some(held_back) = self.compiled.backtraces.admit(Instant::now()) {
                tracing::error!(
                    plugin = &*self.compiled.name,
                    route = &*self.route,
                    held_back,
                    "plugin trap backtrace (one a minute per plugin; {held_back} held back since the last): {error:?}"
                );
            }
        }
        fault
    }
}

/// Turns a wasmtime error into the fault kind operators see in logs and
/// metrics; a trap is described in one line (its root cause).
pub(crate) fn classify(
    error: &wasmtime::Error,
    memory_exceeded: bool,
    limits: PluginLimits,
) -> PluginFault {
    if memory_exceeded {
        return PluginFault::Memory {
            limit_bytes: limits.memory_limit_bytes,
        };
    }
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return PluginFault::Deadline {
            timeout: limits.call_timeout,
        };
    }
    let cause = error.root_cause().to_string();
    PluginFault::Trap(cause.lines().next().unwrap_or_default().trim().to_string())
}

/// What a hook is called with: a request or a response, whose headers the
/// host narrows to those the plugin reads.
trait HookInput {
    fn headers_mut(&mut self) -> &mut Vec<(String, String)>;
}

impl HookInput for Request {
    fn headers_mut(&mut self) -> &mut Vec<(String, String)> {
        &mut self.headers
    }
}

impl HookInput for Response {
    fn headers_mut(&mut self) -> &mut Vec<(String, String)> {
        &mut self.headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backtrace_is_logged_at_most_once_a_minute_and_the_rest_counted() {
        let gate = BacktraceGate::default();
        let start = Instant::now();
        assert_eq!(gate.admit(start), Some(0));
        for s in 1..=59 {
            assert_eq!(gate.admit(start + Duration::from_secs(s)), None);
        }
        assert_eq!(
            gate.admit(start + BACKTRACE_INTERVAL),
            Some(59),
            "the next one says how many were held back"
        );
        assert_eq!(gate.admit(start + BACKTRACE_INTERVAL), None);
    }

    #[test]
    fn a_trap_is_described_in_one_line() {
        let error = wasmtime::Error::from(wasmtime::Trap::UnreachableCodeReached).context(
            "error while executing at wasm backtrace:\n    0:  0x1a2b - probe!core::panicking::panic\n    1:  0x3c4d - probe!on_request",
        );
        let fault = classify(&error, false, PluginLimits::default());
        let PluginFault::Trap(message) = &fault else {
            panic!("{fault:?}")
        };
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("unreachable"), "{message}");
        let interrupted = wasmtime::Error::from(wasmtime::Trap::Interrupt).context("backtrace");
        assert_eq!(
            classify(&interrupted, false, PluginLimits::default()).kind(),
            "deadline"
        );
    }
}
