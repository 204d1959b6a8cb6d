//! What each plugin instance's store holds, and the memory cap it enforces.

use super::capabilities::HostServices;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The request-scoped context plugins of one chain share.
pub type RequestContext = HashMap<String, String>;

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
    pub(crate) services: HostServices,
}

impl PluginState {
    pub(crate) fn new(
        plugin: Arc<str>,
        route: Arc<str>,
        memory_limit: usize,
        services: HostServices,
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
            services,
        }
    }

    /// The kv key a plugin's `key` is stored under: plugins never see each other's keys.
    pub(crate) fn kv_key(&self, key: &str) -> String {
        format!("{}/{}", self.plugin, key)
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
