//! One route entry's plugin pool, whatever the plugin's kind: the chain
//! calls every step through [`EntryPool`], so its phases, fault handling
//! and metrics are the same for WIT components and Proxy-Wasm filters.

use crate::plugin::bindings::{PluginInfo, Request, RequestAction, Response, ResponseChanges};
use crate::plugin::guard::EntryGuard;
use crate::plugin::proxy_wasm::{FilterPool, FilterStream};
use crate::plugin::{CompiledPlugin, PluginFault, PluginPool, RequestContext};
use std::sync::Arc;

/// A route entry's pool of warm instances.
#[expect(
    clippy::large_enum_variant,
    reason = "one per route entry, built at load and kept behind an Arc"
)]
pub enum EntryPool {
    /// A WIT component (`wasmgate:plugin`).
    Component(PluginPool),
    /// A Proxy-Wasm filter (ABI 0.2.x).
    ProxyWasm(FilterPool),
}

/// What one step keeps of a request between its request and response
/// hooks: a Proxy-Wasm filter's open HTTP context (a component keeps
/// nothing; what plugins share goes through the [`RequestContext`]).
#[derive(Default)]
pub struct StepState {
    filter: Option<FilterStream>,
}

impl EntryPool {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        match self {
            EntryPool::Component(pool) => pool.name(),
            EntryPool::ProxyWasm(pool) => pool.name(),
        }
    }

    /// The compiled plugin the pool instantiates.
    pub fn compiled(&self) -> &Arc<CompiledPlugin> {
        match self {
            EntryPool::Component(pool) => pool.compiled(),
            EntryPool::ProxyWasm(pool) => pool.compiled(),
        }
    }

    /// The entry's concurrency cap and fault breaker.
    pub fn guard(&self) -> &EntryGuard {
        match self {
            EntryPool::Component(pool) => pool.guard(),
            EntryPool::ProxyWasm(pool) => pool.guard(),
        }
    }

    /// What the plugin needs of the chain (bodies, a response hook).
    pub fn info(&self) -> &PluginInfo {
        match self {
            EntryPool::Component(pool) => pool.info(),
            EntryPool::ProxyWasm(pool) => pool.info(),
        }
    }

    /// The lower-case names of the headers the plugin reads; `None`: all of
    /// them (a Proxy-Wasm filter may ask for any header at any time).
    pub fn header_interest(&self) -> Option<&[String]> {
        match self {
            EntryPool::Component(pool) => pool.header_interest(),
            EntryPool::ProxyWasm(_) => None,
        }
    }

    /// The request hook: the plugin's changes to `request`, or its answer.
    /// A Proxy-Wasm filter reads and edits the request's `trailers` in
    /// place; WIT components have no trailers.
    pub async fn on_request(
        &self,
        request: &mut Request,
        trailers: &mut Option<http::HeaderMap>,
        context: &mut RequestContext,
        state: &mut StepState,
    ) -> Result<RequestAction, PluginFault> {
        match self {
            EntryPool::Component(pool) => pool.on_request(request, context).await,
            EntryPool::ProxyWasm(pool) => {
                pool.on_request(request, trailers, context, &mut state.filter)
                    .await
            }
        }
    }

    /// The response hook, as [`EntryPool::on_request`].
    pub async fn on_response(
        &self,
        response: &mut Response,
        trailers: &mut Option<http::HeaderMap>,
        context: &mut RequestContext,
        state: &mut StepState,
    ) -> Result<ResponseChanges, PluginFault> {
        match self {
            EntryPool::Component(pool) => pool.on_response(response, context).await,
            EntryPool::ProxyWasm(pool) => {
                pool.on_response(response, trailers, &mut state.filter)
                    .await
            }
        }
    }
}
