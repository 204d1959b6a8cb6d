//! One Proxy-Wasm VM: a store with the filter's state, the callbacks it
//! exports, and the host's side of its life — start-up (`_initialize`,
//! root context, `proxy_on_vm_start`, `proxy_on_configure`), one HTTP
//! context per request, the HTTP calls it dispatches, ticks and queue
//! notifications.
//!
//! Every callback is one plugin call under the entry's deadline (epoch
//! interruption, time spent in the host excluded) and memory cap; a
//! callback that faults leaves the instance unusable (the SDK's state is
//! mid-borrow), so the pool drops it.

use super::abi::Pairs;
use super::context::{trailer_map, trailer_pairs, CallResponse, Facts, Stream};
use super::EntryShared;
use crate::plugin::bindings::{OutboundRequest, Request, RequestAction, Response, ResponseChanges};
use crate::plugin::bounds::CallBudget;
use crate::plugin::component::runtime::{classify, deadline_update};
use crate::plugin::component::state::{CallClock, MemoryCap};
use crate::plugin::PluginFault;
use http::HeaderMap;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{InstancePre, Memory, Store, TypedFunc, WasmParams, WasmResults};

/// The context id of the root (plugin) context in every instance.
pub const ROOT_ID: u32 = 1;

/// Store data of one Proxy-Wasm instance.
pub struct FilterState {
    pub(crate) cap: MemoryCap,
    pub(crate) clock: CallClock,
    pub(crate) budget: CallBudget,
    /// What every instance of the route entry shares: names, services,
    /// grants, config, metrics.
    pub(crate) entry: Arc<EntryShared>,
    /// The guest's exported memory and allocator, for data handed back.
    pub(crate) memory: Option<Memory>,
    pub(crate) allocate: Option<TypedFunc<i32, i32>>,
    /// The request being served, if any.
    pub(crate) stream: Option<Stream>,
    /// Set by `proxy_set_tick_period_milliseconds`.
    pub(crate) tick_period: Option<Duration>,
    next_token: u32,
}

impl FilterState {
    /// A token for an HTTP call, unique among the instance's calls.
    pub(crate) fn next_token(&mut self) -> u32 {
        self.next_token = self.next_token.wrapping_add(1).max(1);
        self.next_token
    }
}

/// `proxy_on_{request,response}_{headers,body}(context, size, end_of_stream) -> action`.
type StreamCallback = TypedFunc<(i32, i32, i32), i32>;

/// `proxy_on_request_trailers(context, count)` (and the response's).
type TrailersCallback = TypedFunc<(i32, i32), i32>;

/// `proxy_on_http_call_response(context, token, headers, body_size, trailers)`.
type CallResponseCallback = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The callbacks the host calls; absent ones are skipped.
struct Callbacks {
    context_create: TypedFunc<(i32, i32), ()>,
    request_headers: Option<StreamCallback>,
    request_body: Option<StreamCallback>,
    response_headers: Option<StreamCallback>,
    response_body: Option<StreamCallback>,
    request_trailers: Option<TrailersCallback>,
    response_trailers: Option<TrailersCallback>,
    http_call_response: Option<CallResponseCallback>,
    done: Option<TypedFunc<i32, i32>>,
    log: Option<TypedFunc<i32, ()>>,
    delete: Option<TypedFunc<i32, ()>>,
    tick: Option<TypedFunc<i32, ()>>,
    queue_ready: Option<TypedFunc<(i32, i32), ()>>,
}

/// The half of an HTTP context a phase streams to the filter.
#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

impl Side {
    fn headers(self, stream: &Stream) -> &Pairs {
        match self {
            Side::Request => &stream.request_headers,
            Side::Response => &stream.response_headers,
        }
    }

    fn trailers(self, stream: &Stream) -> &Pairs {
        match self {
            Side::Request => &stream.request_trailers,
            Side::Response => &stream.response_trailers,
        }
    }
}

/// A started filter instance.
pub struct FilterInstance {
    store: Store<FilterState>,
    callbacks: Callbacks,
    next_context: u32,
}

/// Stops a running callback when its time is spent, and yields the worker
/// at each tick of a long one, exactly as for components.
fn deadline_reached(
    store: wasmtime::StoreHookState<'_, FilterState>,
) -> wasmtime::Result<wasmtime::UpdateDeadline> {
    Ok(deadline_update(&store.data().clock))
}

impl FilterInstance {
    /// Instantiates `pre` and starts the VM and the root context with the
    /// entry's configuration. A `false` from `proxy_on_vm_start` or
    /// `proxy_on_configure` is a config fault: the entry must not load.
    pub async fn start(
        pre: &InstancePre<FilterState>,
        entry: Arc<EntryShared>,
    ) -> Result<FilterInstance, PluginFault> {
        let limits = entry.limits;
        let state = FilterState {
            cap: MemoryCap::new(limits.memory_limit_bytes),
            clock: CallClock::new(limits.call_timeout),
            budget: CallBudget::PER_CALL,
            entry: entry.clone(),
            memory: None,
            allocate: None,
            stream: None,
            tick_period: None,
            next_token: 0,
        };
        let mut store = Store::new(pre.module().engine(), state);
        store.limiter(|s| &mut s.cap);
        store.epoch_deadline_callback(deadline_reached);
        start_call(&mut store);
        let fault = |store: &Store<FilterState>, e: wasmtime::Error| {
            classify(&e, store.data().cap.exceeded, limits)
        };
        let instance = match pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => return Err(fault(&store, e)),
        };
        let missing =
            |what: &str| PluginFault::Config(format!("the module does not export `{what}`"));
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| missing("memory"))?;
        let allocate = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .map_err(|_| missing("proxy_on_memory_allocate"))?;
        store.data_mut().memory = Some(memory);
        store.data_mut().allocate = Some(allocate);
        let get = |store: &mut Store<FilterState>, name: &str| instance.get_func(&mut *store, name);
        macro_rules! typed {
            ($name:literal) => {
                match get(&mut store, $name) {
                    Some(f) => Some(f.typed(&store).map_err(|e| {
                        PluginFault::Config(format!("`{}` has the wrong signature: {e}", $name))
                    })?),
                    None => None,
                }
            };
        }
        let callbacks = Callbacks {
            context_create: typed!("proxy_on_context_create")
                .ok_or_else(|| missing("proxy_on_context_create"))?,
            request_headers: typed!("proxy_on_request_headers"),
            request_body: typed!("proxy_on_request_body"),
            response_headers: typed!("proxy_on_response_headers"),
            response_body: typed!("proxy_on_response_body"),
            request_trailers: typed!("proxy_on_request_trailers"),
            response_trailers: typed!("proxy_on_response_trailers"),
            http_call_response: typed!("proxy_on_http_call_response"),
            done: typed!("proxy_on_done"),
            log: typed!("proxy_on_log"),
            delete: typed!("proxy_on_delete"),
            tick: typed!("proxy_on_tick"),
            queue_ready: typed!("proxy_on_queue_ready"),
        };
        let initialize: Option<TypedFunc<(), ()>> = typed!("_initialize");
        let main: Option<TypedFunc<(i32, i32), i32>> = typed!("main");
        let start: Option<TypedFunc<(), ()>> = typed!("_start");
        let vm_start: Option<TypedFunc<(i32, i32), i32>> = typed!("proxy_on_vm_start");
        let configure: Option<TypedFunc<(i32, i32), i32>> = typed!("proxy_on_configure");
        let mut vm = FilterInstance {
            store,
            callbacks,
            next_context: ROOT_ID,
        };
        // cpp-host's order: constructors and the SDK's `main!` first.
        match (initialize, start) {
            (Some(initialize), _) => {
                vm.call(initialize, ()).await?;
                if let Some(main) = main {
                    vm.call(main, (0, 0)).await?;
                }
            }
            (None, Some(start)) => vm.call(start, ()).await?,
            (None, None) => {}
        }
        vm.call(vm.callbacks.context_create.clone(), (ROOT_ID as i32, 0))
            .await?;
        if let Some(vm_start) = vm_start {
            if vm.call(vm_start, (ROOT_ID as i32, 0)).await? == 0 {
                return Err(PluginFault::Config(
                    "proxy_on_vm_start returned false".into(),
                ));
            }
        }
        if let Some(configure) = configure {
            let size = entry.config.len() as i32;
            if vm.call(configure, (ROOT_ID as i32, size)).await? == 0 {
                return Err(PluginFault::Config(
                    "the filter refused its configuration (proxy_on_configure returned false; see its log)".into(),
                ));
            }
        }
        Ok(vm)
    }

    /// The tick period the root context asked for, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        self.store.data().tick_period
    }

    /// One callback under the deadline and memory cap.
    async fn call<P: WasmParams + Sync, R: WasmResults + Sync>(
        &mut self,
        f: TypedFunc<P, R>,
        params: P,
    ) -> Result<R, PluginFault> {
        start_call(&mut self.store);
        let result = f.call_async(&mut self.store, params).await;
        result.map_err(|e| {
            let state = self.store.data();
            let fault = classify(&e, state.cap.exceeded, state.entry.limits);
            if matches!(fault, PluginFault::Trap(_)) {
                tracing::debug!(plugin = &*state.entry.plugin, "proxy-wasm trap: {e:?}");
            }
            fault
        })
    }

    /// A stream callback's `Action` recorded on the stream.
    async fn stream_callback(
        &mut self,
        f: Option<StreamCallback>,
        id: u32,
        size: usize,
        end_of_stream: bool,
    ) -> Result<(), PluginFault> {
        let Some(f) = f else { return Ok(()) };
        let action = self
            .call(f, (id as i32, size as i32, end_of_stream as i32))
            .await?;
        let stream = self.stream_mut();
        stream.paused = action == super::abi::ACTION_PAUSE && stream.local_response.is_none();
        self.settle().await
    }

    /// A trailers callback (`proxy_on_request_trailers(context, count)`),
    /// its `Action` recorded on the stream; made only when there are trailers.
    async fn trailers_callback(
        &mut self,
        f: Option<TrailersCallback>,
        id: u32,
        count: usize,
    ) -> Result<(), PluginFault> {
        let Some(f) = f else { return Ok(()) };
        let action = self.call(f, (id as i32, count as i32)).await?;
        let stream = self.stream_mut();
        stream.paused = action == super::abi::ACTION_PAUSE && stream.local_response.is_none();
        self.settle().await
    }

    fn stream_mut(&mut self) -> &mut Stream {
        self.store
            .data_mut()
            .stream
            .as_mut()
            .expect("a stream callback runs with its stream")
    }

    fn answered(&self) -> bool {
        self.store
            .data()
            .stream
            .as_ref()
            .is_some_and(|s| s.local_response.is_some())
    }

    /// Runs the request callbacks for `request` in a new HTTP context.
    /// `Respond`: the filter answered (its context is finished).
    /// `Continue`: the filter's edits, as changes; the context stays open
    /// for the response, its id given by [`FilterInstance::open_id`].
    pub async fn request_phase(
        &mut self,
        request: &Request,
        trailers: &mut Option<HeaderMap>,
        facts: Facts,
    ) -> Result<RequestAction, PluginFault> {
        self.next_context += 1;
        let id = self.next_context;
        let mut stream = Stream::for_request(id, request, facts);
        stream.request_trailers = trailer_pairs(trailers.as_ref());
        let has_trailers = !stream.request_trailers.is_empty();
        self.store.data_mut().stream = Some(stream);
        self.call(
            self.callbacks.context_create.clone(),
            (id as i32, ROOT_ID as i32),
        )
        .await?;
        let body_len = request.body.as_ref().map_or(0, Vec::len);
        self.run_side(Side::Request, id, body_len, has_trailers, trailers)
            .await?;
        let stream = self.stream_mut();
        if let Some(response) = stream.local_response.take() {
            self.finish(id).await?;
            return Ok(RequestAction::Respond(response));
        }
        if stream.paused {
            return Err(PluginFault::InvalidOutput(
                "the filter paused the request and nothing resumed it".into(),
            ));
        }
        Ok(RequestAction::Continue(stream.request_changes(request)))
    }

    /// Streams one side of context `id` to the filter as a proxy would:
    /// its headers, then its body when there is one, then its trailers when
    /// there are some, each marked end-of-stream when nothing follows, and
    /// none after the filter has answered. The filter's trailer edits go
    /// back into `trailers`.
    async fn run_side(
        &mut self,
        side: Side,
        id: u32,
        body_len: usize,
        has_trailers: bool,
        trailers: &mut Option<HeaderMap>,
    ) -> Result<(), PluginFault> {
        let (on_headers, on_body, on_trailers) = match side {
            Side::Request => (
                self.callbacks.request_headers.clone(),
                self.callbacks.request_body.clone(),
                self.callbacks.request_trailers.clone(),
            ),
            Side::Response => (
                self.callbacks.response_headers.clone(),
                self.callbacks.response_body.clone(),
                self.callbacks.response_trailers.clone(),
            ),
        };
        let headers = side.headers(self.stream_mut()).len();
        self.stream_callback(on_headers, id, headers, body_len == 0 && !has_trailers)
            .await?;
        if !self.answered() && body_len > 0 {
            self.stream_callback(on_body, id, body_len, !has_trailers)
                .await?;
        }
        if !self.answered() && has_trailers {
            let count = side.trailers(self.stream_mut()).len();
            self.trailers_callback(on_trailers, id, count).await?;
            *trailers = trailer_map(side.trailers(self.stream_mut()))?;
        }
        Ok(())
    }

    /// The id of the HTTP context left open by the request phase.
    pub fn open_id(&self) -> Option<u32> {
        self.store.data().stream.as_ref().map(|s| s.id)
    }

    /// Runs the response callbacks of context `id` over `response` and
    /// returns the filter's edits as changes (a local response replaces
    /// it), then finishes the context.
    pub async fn response_phase(
        &mut self,
        id: u32,
        response: &Response,
        trailers: &mut Option<HeaderMap>,
    ) -> Result<ResponseChanges, PluginFault> {
        self.stream_mut().load_response(response);
        self.stream_mut().response_trailers = trailer_pairs(trailers.as_ref());
        let has_trailers = trailers.is_some();
        let body_len = response.body.as_ref().map_or(0, Vec::len);
        self.run_side(Side::Response, id, body_len, has_trailers, trailers)
            .await?;
        if self.answered() {
            *trailers = None;
        }
        let stream = self.stream_mut();
        if stream.paused && stream.local_response.is_none() {
            return Err(PluginFault::InvalidOutput(
                "the filter paused the response and nothing resumed it".into(),
            ));
        }
        let changes = stream.response_changes(response);
        self.finish(id).await?;
        Ok(changes)
    }

    /// Ends context `id`: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub async fn finish(&mut self, id: u32) -> Result<(), PluginFault> {
        let id = id as i32;
        if let Some(done) = self.callbacks.done.clone() {
            self.call(done, id).await?;
        }
        if let Some(log) = self.callbacks.log.clone() {
            self.call(log, id).await?;
        }
        if let Some(delete) = self.callbacks.delete.clone() {
            self.call(delete, id).await?;
        }
        self.store.data_mut().stream = None;
        Ok(())
    }

    /// Sends the HTTP calls the last callback dispatched and delivers each
    /// answer (or failure: no headers) to `proxy_on_http_call_response`,
    /// until the filter dispatches no more. The wait is host time, outside
    /// any callback's deadline; each call has its own timeout.
    async fn settle(&mut self) -> Result<(), PluginFault> {
        loop {
            let calls = std::mem::take(&mut self.stream_mut().pending_calls);
            if calls.is_empty() {
                return Ok(());
            }
            let id = self.stream_mut().id;
            let outbound = self.store.data().entry.services.outbound.clone();
            let requests = calls
                .iter()
                .map(|call| OutboundRequest {
                    upstream: call.upstream.clone(),
                    method: call.method.clone(),
                    path_and_query: call.path.clone(),
                    headers: call.headers.clone(),
                    body: call.body.clone(),
                    timeout_ms: Some(call.timeout_ms),
                })
                .collect();
            let answers = outbound.send_all(requests).await;
            for (call, answer) in calls.iter().zip(answers) {
                let answer = match answer {
                    Ok(response) => {
                        let mut headers =
                            vec![(":status".to_string(), response.status.to_string())];
                        headers.extend(response.headers);
                        CallResponse {
                            headers,
                            body: response.body,
                        }
                    }
                    Err(error) => {
                        tracing::info!(
                            plugin = &*self.store.data().entry.plugin,
                            upstream = call.upstream,
                            "proxy-wasm http call failed: {error}"
                        );
                        CallResponse::default()
                    }
                };
                let (headers, body) = (answer.headers.len(), answer.body.len());
                self.stream_mut().call_response = Some(answer);
                if let Some(f) = self.callbacks.http_call_response.clone() {
                    let args = (id as i32, call.token as i32, headers as i32, body as i32, 0);
                    self.call(f, args).await?;
                }
                self.stream_mut().call_response = None;
            }
        }
    }

    /// Calls `proxy_on_tick` on the root context.
    pub async fn tick(&mut self) -> Result<(), PluginFault> {
        match self.callbacks.tick.clone() {
            Some(tick) => self.call(tick, ROOT_ID as i32).await,
            None => Ok(()),
        }
    }

    /// Calls `proxy_on_queue_ready` on the root context for queue `id`.
    pub async fn queue_ready(&mut self, id: u32) -> Result<(), PluginFault> {
        match self.callbacks.queue_ready.clone() {
            Some(ready) => self.call(ready, (ROOT_ID as i32, id as i32)).await,
            None => Ok(()),
        }
    }
}

/// A new callback begins: its clock, budget and epoch deadline start afresh.
fn start_call(store: &mut Store<FilterState>) {
    let state = store.data_mut();
    state.clock.start();
    state.budget = CallBudget::PER_CALL;
    store.set_epoch_deadline(1);
}
