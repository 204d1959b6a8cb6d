//! The Proxy-Wasm runtime: unmodified Envoy-style filters (ABI v0.2.1,
//! `docs/proxy-wasm-abi.md`; what is supported: `docs/proxy-wasm.md`) run
//! as chain steps beside WIT components, with the same limits (deadline,
//! memory cap, fault breaker), grants and capabilities ([`crate::plugin::host`]).
//!
//! [`module`] tells a filter from a component and compiles it;
//! [`instance`] starts a VM and runs its callbacks; [`hostcalls`] is the
//! ABI's host side; [`context`] one request's HTTP context; [`shared`]
//! shared data, queues and metrics; [`root`] the root context's ticks and
//! queue notifications.
//!
//! A request holds one warm instance from its request headers to its
//! response (its HTTP context lives in that instance, as in Envoy's
//! per-worker VMs); other requests take other instances from the pool.

pub mod abi;
pub mod context;
pub mod hostcalls;
pub mod instance;
pub mod module;
pub mod root;
pub mod shared;

use crate::plugin::bindings::{
    HeaderChanges, PluginInfo, Request, RequestAction, Response, ResponseChanges,
};
use crate::plugin::bounds;
use crate::plugin::grants::Grants;
use crate::plugin::guard::EntryGuard;
use crate::plugin::host::HostServices;
use crate::plugin::idle::IdleInstances;
use crate::plugin::{CompiledPlugin, PluginFault, PluginLimits, RequestContext};
use context::Facts;
use instance::{FilterInstance, FilterState};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use wasmtime::InstancePre;

/// How operators see the ABI a filter speaks.
pub fn abi_label(version: &str) -> String {
    format!("proxy-wasm {version}")
}

/// What every instance of one route entry shares.
pub struct EntryShared {
    pub(crate) plugin: Arc<str>,
    pub(crate) route: Arc<str>,
    pub(crate) services: HostServices,
    pub(crate) grants: Arc<Grants>,
    /// The `PLUGIN_CONFIGURATION` buffer: the entry's `config` as JSON
    /// text, or its `config_text`; empty without either.
    pub(crate) config: Vec<u8>,
    pub(crate) limits: PluginLimits,
    pub(crate) metrics: shared::Metrics,
    /// The queues this entry's filter registered, as they get items.
    pub(crate) queue_watch: Arc<shared::QueueWatch>,
    /// The filter file's content hash: which version of it this is.
    content_hash: u64,
}

/// An unsupported call of one plugin file: plugin, content hash, call.
type UnsupportedCall = (Arc<str>, u64, String);

/// The unsupported calls logged so far.
static LOGGED_UNSUPPORTED: LazyLock<Mutex<HashSet<UnsupportedCall>>> =
    LazyLock::new(Mutex::default);

impl EntryShared {
    /// True the first time `call` is reported unsupported for this
    /// plugin: once per plugin file, whatever its route entries, instances
    /// or compiler tier; a changed file is a new plugin version and logs again.
    pub(crate) fn first_unsupported(&self, call: &str) -> bool {
        LOGGED_UNSUPPORTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((self.plugin.clone(), self.content_hash, call.to_string()))
    }

    /// Logs and counts a fault outside a request (a tick).
    pub(crate) fn report_fault(&self, phase: &str, fault: &PluginFault) {
        crate::observe::metrics::metrics()
            .plugin_faults
            .with_label_values(&[&*self.plugin, fault.kind()])
            .inc();
        tracing::error!(
            plugin = &*self.plugin,
            route = &*self.route,
            phase,
            kind = fault.kind(),
            "plugin fault: {fault}"
        );
    }
}

/// A request's hold on the instance serving its HTTP context, from the
/// request phase to the response phase. Dropped unfinished (the upstream
/// failed, a later step faulted), the instance goes with it.
pub struct FilterStream {
    instance: FilterInstance,
    id: u32,
}

/// Warm, started instances of one filter for one route entry.
pub struct FilterPool {
    compiled: Arc<CompiledPlugin>,
    pre: InstancePre<FilterState>,
    guard: EntryGuard,
    entry: Arc<EntryShared>,
    idle: IdleInstances<FilterInstance>,
    _root: root::RootTask,
}

/// A filter may act on every phase and body (the SDK exports every
/// callback, so the host cannot tell which it uses): bodies are buffered.
const FILTER_INFO: PluginInfo = PluginInfo {
    wants_request_body: true,
    wants_response: true,
    wants_response_body: true,
};

impl FilterPool {
    /// Starts the entry's first instance (a refused config fails here, at
    /// load) and the task driving its root context outside requests
    /// ([`root`]), which keeps that instance if it set a tick period.
    pub(crate) async fn new(
        compiled: Arc<CompiledPlugin>,
        pre: InstancePre<FilterState>,
        route: &str,
        config: Vec<u8>,
        limits: PluginLimits,
        services: HostServices,
        grants: Arc<Grants>,
    ) -> Result<FilterPool, PluginFault> {
        let guard = EntryGuard::new(
            &compiled.name,
            route,
            limits.max_concurrent_calls,
            limits.queue_timeout,
            limits.fault_breaker,
        );
        let entry = Arc::new(EntryShared {
            plugin: compiled.name.clone(),
            route: route.into(),
            services,
            grants,
            config,
            limits,
            metrics: shared::Metrics::default(),
            queue_watch: Arc::default(),
            content_hash: compiled.content_hash,
        });
        let first = FilterInstance::start(&pre, entry.clone()).await?;
        let idle = IdleInstances::new(limits.max_idle_instances);
        let root_instance = match first.tick_period() {
            Some(_) => Some(first),
            None => {
                idle.put(first);
                None
            }
        };
        let root = root::RootTask::spawn(root_instance, pre.clone(), entry.clone());
        Ok(FilterPool {
            compiled,
            pre,
            guard,
            entry,
            idle,
            _root: root,
        })
    }

    /// The filter's name.
    pub fn name(&self) -> &str {
        &self.compiled.name
    }

    /// The compiled filter.
    pub fn compiled(&self) -> &Arc<CompiledPlugin> {
        &self.compiled
    }

    /// The entry's concurrency cap and fault breaker.
    pub fn guard(&self) -> &EntryGuard {
        &self.guard
    }

    /// What the chain must give a filter: everything.
    pub fn info(&self) -> &PluginInfo {
        &FILTER_INFO
    }

    async fn checkout(&self) -> Result<FilterInstance, PluginFault> {
        match self.idle.take() {
            Some(instance) => Ok(instance),
            None => FilterInstance::start(&self.pre, self.entry.clone()).await,
        }
    }

    fn checkin(&self, instance: FilterInstance) {
        self.idle.put(instance);
    }

    /// A filter's result, refused as a WIT plugin's would be when it is
    /// not valid HTTP or over the bounds.
    fn checked<T>(&self, check: Result<(), bounds::Refusal>, value: T) -> Result<T, PluginFault> {
        check.map(|()| value).map_err(|refusal| {
            bounds::count(self.name(), refusal.what, refusal.reason);
            PluginFault::InvalidOutput(refusal.to_string())
        })
    }

    /// The request callbacks in a new HTTP context: the filter's edits come
    /// back as changes (as a WIT plugin's), or it answers. The context
    /// stays open in `held` for [`FilterPool::on_response`].
    pub async fn on_request(
        &self,
        request: &Request,
        trailers: &mut Option<http::HeaderMap>,
        context: &RequestContext,
        held: &mut Option<FilterStream>,
    ) -> Result<RequestAction, PluginFault> {
        let ticket = self.guard.admit().await?;
        let mut instance = match self.checkout().await {
            Ok(instance) => instance,
            Err(fault) => return Err(ticket.finished(fault)),
        };
        let facts = Facts {
            request_id: context::header(&request.headers, "x-request-id")
                .map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            client_addr: request.client_addr.clone(),
            route: request.route.clone(),
            mtls: context.keys().any(|k| k.starts_with("tls.client.")),
        };
        let result = instance
            .request_phase(request, trailers, facts)
            .await
            .and_then(|action| self.checked(bounds::check_request_action(&action), action));
        match (&result, instance.open_id()) {
            (Ok(RequestAction::Continue(_)), Some(id)) => {
                *held = Some(FilterStream { instance, id })
            }
            (Ok(_), _) => self.checkin(instance),
            (Err(_), _) => {}
        }
        ticket.finish(result.as_ref().err());
        result
    }

    /// The response callbacks of the request's HTTP context, whose edits
    /// (or local response) come back as changes; then the context is
    /// finished and the instance returns to the pool. Without a context
    /// (the request phase faulted and the entry fails open) nothing runs.
    pub async fn on_response(
        &self,
        response: &Response,
        trailers: &mut Option<http::HeaderMap>,
        held: &mut Option<FilterStream>,
    ) -> Result<ResponseChanges, PluginFault> {
        let Some(FilterStream { mut instance, id }) = held.take() else {
            return Ok(no_response_changes());
        };
        let ticket = self.guard.admit().await?;
        let result = instance
            .response_phase(id, response, trailers)
            .await
            .and_then(|changes| self.checked(bounds::check_response_changes(&changes), changes));
        if result.is_ok() {
            self.checkin(instance);
        }
        ticket.finish(result.as_ref().err());
        result
    }
}

fn no_header_changes() -> HeaderChanges {
    HeaderChanges {
        remove: Vec::new(),
        set: Vec::new(),
        append: Vec::new(),
    }
}

/// No context (the request phase faulted, the entry fails open): no edits.
fn no_response_changes() -> ResponseChanges {
    ResponseChanges {
        status: None,
        headers: no_header_changes(),
        body: None,
    }
}
