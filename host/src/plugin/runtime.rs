//! The plugin runtime: wasmtime engines (optimizing, and a baseline one for
//! fast hot reload), components compiled once per file,
//! and per-route-entry pools of warm, initialised instances.
//!
//! A fresh instance costs ~20 µs, a call into a warm one ~1 µs (see
//! BENCHMARKS.md), so instances are reused across requests; one that faults is
//! dropped, never returned to its pool. Every call runs under an epoch
//! deadline and a linear-memory cap.

use super::bindings::{
    Plugin, PluginInfo, PluginPre, Request, RequestAction, Response, ResponseChanges,
};
use super::bounds;
use super::capabilities::HostServices;
use super::grants::{Capability, Grants};
use super::state::{PluginState, RequestContext};
use super::{PluginError, PluginFault};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Strategy,
    UpdateDeadline,
};

/// Plugin instances that may exist at once across all pools (warm and in
/// flight); instantiating beyond it fails that request, not the gateway.
const MAX_INSTANCES: u32 = 1000;

/// How often the epoch ticks; call deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits every plugin call runs under.
#[derive(Debug, Clone, Copy)]
pub struct PluginLimits {
    pub call_timeout: Duration,
    pub memory_limit_bytes: usize,
    pub max_idle_instances: usize,
}

/// Whole epoch ticks covering `time` (at least one).
fn ticks(time: Duration) -> u64 {
    (time.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// Called when a plugin reaches its epoch deadline: interrupt it if its own
/// time (host waits excluded) is spent, else extend to what is left.
fn deadline_reached(
    store: wasmtime::StoreContextMut<'_, PluginState>,
) -> wasmtime::Result<UpdateDeadline> {
    Ok(match store.data().clock.remaining() {
        Some(left) => UpdateDeadline::Continue(ticks(left)),
        None => UpdateDeadline::Interrupt,
    })
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            call_timeout: Duration::from_millis(100),
            memory_limit_bytes: 64 << 20,
            max_idle_instances: 64,
        }
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
}

impl Toolchain {
    /// An engine compiling with `strategy`; the optimized one pools
    /// instances, the baseline one (whose plugins serve only until their
    /// optimized build lands) allocates on demand.
    fn new(strategy: Strategy) -> Result<Toolchain, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.strategy(strategy);
        if matches!(strategy, Strategy::Cranelift) {
            // The pooling allocator reuses memories, tables and — what matters
            // most per call — async fiber stacks, instead of mapping fresh ones.
            let mut pooling = PoolingAllocationConfig::default();
            pooling
                .total_component_instances(MAX_INSTANCES)
                .total_core_instances(MAX_INSTANCES * 4)
                .total_memories(MAX_INSTANCES)
                .total_tables(MAX_INSTANCES * 4)
                .total_stacks(MAX_INSTANCES)
                .max_memories_per_component(2)
                .max_tables_per_component(8);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        }
        let engine_error = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        Plugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(engine_error)?;
        Ok(Toolchain { engine, linker })
    }
}

/// A plugin file compiled and linked, ready to instantiate.
pub struct CompiledPlugin {
    pub name: Arc<str>,
    /// Hash of the file's bytes, to skip recompiling an unchanged file.
    pub content_hash: u64,
    pub size_bytes: usize,
    /// The contract version the plugin was built against.
    pub contract_version: String,
    /// Everything the component imports (`wasmgate:plugin/kv@0.1.0`, WASI
    /// interfaces…), as named in the component.
    pub imports: Vec<String>,
    /// The gated capabilities among `imports`: a route must grant each.
    pub capabilities: BTreeSet<Capability>,
    /// When this version was compiled (loaded or hot-reloaded).
    pub loaded_at: std::time::SystemTime,
    pub tier: Tier,
    pre: PluginPre<PluginState>,
}

impl PluginRuntime {
    /// Builds the engines and links the capabilities in `services`.
    pub fn new(services: HostServices) -> Result<Self, PluginError> {
        let optimized = Toolchain::new(Strategy::Cranelift)?;
        let baseline = Toolchain::new(Strategy::Winch)
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
            pre,
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
        if let Some(&capability) = compiled.capabilities.iter().find(|&&c| !grants.allows(c)) {
            return Err(PluginError::NotGranted {
                plugin: compiled.name.to_string(),
                route: route.to_string(),
                capability,
            });
        }
        let mut pool = PluginPool {
            compiled,
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
            idle: Mutex::new(Vec::new()),
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
            .map_err(|e| init_failed(classify(e, first.store.data().memory.exceeded, limits)))?;
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
        lock(&pool.idle).push(first);
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
                super::CONTRACT_VERSION
            )
        })?;
    if !super::compatible_version(&found) {
        return Err(format!(
            "built against contract wasmgate:plugin@{found}, but this gateway implements @{} (compatible: same major, and same minor while major is 0); rebuild the plugin with a matching SDK",
            super::CONTRACT_VERSION
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
    route: Arc<str>,
    config_json: String,
    limits: PluginLimits,
    services: HostServices,
    grants: Arc<Grants>,
    info: PluginInfo,
    /// Lower-case names of the headers the plugin reads; `None`: all.
    header_interest: Option<Vec<String>>,
    idle: Mutex<Vec<Instance>>,
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
        let mut instance = self.checkout().await?;
        let all_headers = self.narrow_headers(&mut request.headers);
        let result = self
            .call(
                &mut instance,
                context,
                async |plugin, store| {
                    plugin
                        .wasmgate_plugin_handler()
                        .call_on_request(store, &*request)
                        .await
                },
                bounds::check_request_action,
            )
            .await;
        if let Some(all) = all_headers {
            request.headers = all;
        }
        self.checkin(instance, result)
    }

    /// Runs the response hook with `context` as the request's shared context;
    /// headers are narrowed as for [`PluginPool::on_request`].
    pub async fn on_response(
        &self,
        response: &mut Response,
        context: &mut RequestContext,
    ) -> Result<ResponseChanges, PluginFault> {
        let mut instance = self.checkout().await?;
        let all_headers = self.narrow_headers(&mut response.headers);
        let result = self
            .call(
                &mut instance,
                context,
                async |plugin, store| {
                    plugin
                        .wasmgate_plugin_handler()
                        .call_on_response(store, &*response)
                        .await
                },
                bounds::check_response_changes,
            )
            .await;
        if let Some(all) = all_headers {
            response.headers = all;
        }
        self.checkin(instance, result)
    }

    /// Replaces `headers` with only those the plugin reads, returning the full
    /// set to put back after the call; `None` when the plugin reads them all.
    fn narrow_headers(&self, headers: &mut Vec<(String, String)>) -> Option<Vec<(String, String)>> {
        let interest = self.header_interest.as_ref()?;
        let narrowed = headers
            .iter()
            .filter(|(name, _)| interest.iter().any(|i| i == name))
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
        let saved = context.clone();
        let Instance { store, plugin } = instance;
        store.data_mut().context = std::mem::take(context);
        store.data_mut().start_call();
        store.set_epoch_deadline(ticks(self.limits.call_timeout));
        let result = f(plugin, store).await;
        let state = store.data_mut();
        match result {
            Ok(value) => match check(&value) {
                Ok(()) => {
                    *context = std::mem::take(&mut state.context);
                    Ok(value)
                }
                Err(refusal) => {
                    *context = saved;
                    bounds::count(self.name(), refusal.what, refusal.reason);
                    Err(PluginFault::InvalidOutput(refusal.to_string()))
                }
            },
            Err(error) => {
                *context = saved;
                Err(classify(error, state.memory.exceeded, self.limits))
            }
        }
    }

    async fn checkout(&self) -> Result<Instance, PluginFault> {
        let idle = lock(&self.idle).pop();
        match idle {
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
            let mut idle = lock(&self.idle);
            if idle.len() < self.limits.max_idle_instances {
                idle.push(instance);
            }
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
        let mut store = Store::new(self.compiled.pre.engine(), state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(deadline_reached);
        store.data_mut().start_call();
        store.set_epoch_deadline(ticks(self.limits.call_timeout));
        let plugin = match self.compiled.pre.instantiate_async(&mut store).await {
            Ok(plugin) => plugin,
            Err(e) => return Err(classify(e, store.data().memory.exceeded, self.limits)),
        };
        let init = plugin
            .wasmgate_plugin_handler()
            .call_init(&mut store, &self.config_json)
            .await
            .map_err(|e| classify(e, store.data().memory.exceeded, self.limits))?;
        let info = init.map_err(PluginFault::Config)?;
        Ok((Instance { store, plugin }, info))
    }
}

/// The idle instances; nothing panics while they are locked, and a poisoned
/// lock is recovered rather than spread.
fn lock(idle: &Mutex<Vec<Instance>>) -> std::sync::MutexGuard<'_, Vec<Instance>> {
    idle.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Turns a wasmtime error into the fault kind operators see in logs and metrics.
fn classify(error: wasmtime::Error, memory_exceeded: bool, limits: PluginLimits) -> PluginFault {
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
    PluginFault::Trap(format!("{error:#}"))
}
