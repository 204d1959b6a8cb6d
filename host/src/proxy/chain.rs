//! The plugin chain of a route: the request phase in chain order, the
//! response phase in reverse order, and what a plugin fault does to the
//! request (per the entry's `on_error`).
//!
//! Chains are assembled at load time (`gateway.rs`); per request they only
//! run. Bodies are handed only to plugins that asked for them.

use crate::config::OnError;
use crate::http::convert::{apply_header_changes, apply_header_changes_to_map};
use crate::plugin::bounds;
use crate::plugin::component::bindings::{Request, RequestAction, Response};
use crate::plugin::entry::StepState;
use crate::plugin::{EntryPool, PluginFault, RequestContext};
use http::{HeaderMap, HeaderName};
use prometheus::Histogram;
use std::sync::Arc;
use std::time::Instant;

/// One entry of a chain: a WIT component or a Proxy-Wasm filter.
pub struct Step {
    pub pool: Arc<EntryPool>,
    pub on_error: OnError,
    /// This entry's call-duration series, request and response phase, looked
    /// up once here rather than by label on every call.
    timers: [Histogram; 2],
}

impl Step {
    /// An entry running `pool`, failing per `on_error`.
    pub fn new(pool: Arc<EntryPool>, on_error: OnError) -> Step {
        let timer = |phase: &str| {
            crate::observe::metrics::metrics()
                .plugin_call_duration
                .with_label_values(&[pool.name(), phase])
        };
        Step {
            timers: [timer("request"), timer("response")],
            pool,
            on_error,
        }
    }

    /// Records how long one hook call took, faults included.
    fn observe_call(&self, phase: Phase, started: Instant) {
        self.timers[phase as usize].observe(started.elapsed().as_secs_f64());
    }
}

/// The two hook phases, as indexes of [`Step`]'s timers.
#[derive(Clone, Copy)]
enum Phase {
    Request = 0,
    Response = 1,
}

/// Every header name some step reads, once; `None` if a step reads all.
/// A name that is not a valid header name cannot be on a request, so it
/// is left out.
fn union_of_interests(steps: &[Step]) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for step in steps {
        for name in step.pool.header_interest()? {
            if let Ok(name) = HeaderName::try_from(name.as_str()) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    Some(names)
}

/// A route's ordered plugins plus what the chain as a whole needs.
pub struct Chain {
    steps: Vec<Step>,
    /// Some plugin reads the request body: buffer it.
    pub wants_request_body: bool,
    /// Some plugin has a response hook.
    pub wants_response: bool,
    /// Some plugin reads the response body: buffer it.
    pub wants_response_body: bool,
    /// The headers some plugin reads, the union of the steps' interests;
    /// `None`: some plugin reads them all.
    header_interest: Option<Vec<HeaderName>>,
}

/// What each step keeps of one request between its phases (a Proxy-Wasm
/// filter's HTTP context); made by [`Chain::states`], one per request.
pub struct StepStates(Vec<StepState>);

/// How the request phase ended.
pub enum RequestOutcome {
    /// Every plugin let the request through; `ran` plugins ran.
    Forward { ran: usize },
    /// A plugin answered; its response goes back through the response hooks
    /// of the `ran` plugins before it.
    Respond { response: Response, ran: usize },
    /// A fail-closed plugin faulted.
    Failed(ChainFault),
}

/// A fail-closed plugin's fault, with the plugin's name for logs and the client.
#[derive(Debug)]
pub struct ChainFault {
    pub plugin: String,
    pub fault: PluginFault,
}

impl Chain {
    /// A chain of these steps, in order.
    pub fn new(steps: Vec<Step>) -> Chain {
        let any = |f: fn(&Step) -> bool| steps.iter().any(f);
        Chain {
            header_interest: union_of_interests(&steps),
            wants_request_body: any(|s| s.pool.info().wants_request_body),
            wants_response: any(|s| s.pool.info().wants_response),
            wants_response_body: any(|s| {
                s.pool.info().wants_response && s.pool.info().wants_response_body
            }),
            steps,
        }
    }

    /// True when no plugin is configured: the proxy can skip all conversion.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The headers the chain's plugins read (see [`header_list_in_step`]);
    /// `None`: all of them.
    ///
    /// [`header_list_in_step`]: crate::http::convert::header_list_in_step
    pub fn header_interest(&self) -> Option<&[HeaderName]> {
        self.header_interest.as_deref()
    }

    /// Fresh per-request state for every step.
    pub fn states(&self) -> StepStates {
        StepStates(self.steps.iter().map(|_| StepState::default()).collect())
    }

    /// The steps, in chain order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Runs the request hooks in order, applying each plugin's edits to
    /// `request` before the next plugin sees it, and its header edits to
    /// `headers` too (the same headers as a map, what goes upstream), and
    /// its trailer edits to `trailers` (buffered with the body).
    pub async fn on_request(
        &self,
        request: &mut Request,
        headers: &mut HeaderMap,
        trailers: &mut Option<HeaderMap>,
        context: &mut RequestContext,
        states: &mut StepStates,
    ) -> RequestOutcome {
        for ((i, step), state) in self.steps.iter().enumerate().zip(&mut states.0) {
            let hidden_body = if step.pool.info().wants_request_body {
                None
            } else {
                request.body.take()
            };
            let started = Instant::now();
            let result = step
                .pool
                .on_request(request, trailers, context, state)
                .await;
            step.observe_call(Phase::Request, started);
            if hidden_body.is_some() {
                request.body = hidden_body;
            }
            match result {
                Ok(RequestAction::Continue(changes)) => {
                    apply_header_changes_to_map(headers, &changes.headers);
                    apply_header_changes(&mut request.headers, changes.headers);
                    if let Some(path) = changes.path {
                        request.path = path;
                    }
                    if let Some(query) = changes.query {
                        request.query = (!query.is_empty()).then_some(query);
                    }
                    if let Some(body) = changes.body {
                        request.body = Some(body);
                    }
                }
                Ok(RequestAction::Respond(response)) => {
                    return RequestOutcome::Respond { response, ran: i }
                }
                Err(fault) => {
                    if let Some(failed) = self.fault(step, &request.route, "request", fault) {
                        return RequestOutcome::Failed(failed);
                    }
                }
            }
        }
        RequestOutcome::Forward {
            ran: self.steps.len(),
        }
    }

    /// Runs the response hooks of the first `ran` plugins in reverse order,
    /// applying header edits to `response` and to `headers` (the same
    /// headers as a map, what goes to the client), and trailer edits to
    /// `trailers`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one request's parts, each edited in place by the hooks"
    )]
    pub async fn on_response(
        &self,
        ran: usize,
        route: &str,
        response: &mut Response,
        headers: &mut HeaderMap,
        trailers: &mut Option<HeaderMap>,
        context: &mut RequestContext,
        states: &mut StepStates,
    ) -> Result<(), ChainFault> {
        for (step, state) in self.steps[..ran].iter().zip(&mut states.0).rev() {
            let info = step.pool.info();
            if !info.wants_response {
                continue;
            }
            let hidden_body = if info.wants_response_body {
                None
            } else {
                response.body.take()
            };
            let started = Instant::now();
            let result = step
                .pool
                .on_response(response, trailers, context, state)
                .await;
            step.observe_call(Phase::Response, started);
            if hidden_body.is_some() {
                response.body = hidden_body;
            }
            match result {
                Ok(changes) => {
                    apply_header_changes_to_map(headers, &changes.headers);
                    apply_header_changes(&mut response.headers, changes.headers);
                    if let Some(status) = changes.status {
                        response.status = status;
                    }
                    if let Some(body) = changes.body {
                        response.body = Some(body);
                    }
                }
                Err(fault) => {
                    if let Some(failed) = self.fault(step, route, "response", fault) {
                        return Err(failed);
                    }
                }
            }
        }
        Ok(())
    }

    /// Logs a plugin fault in one line and counts it; a call that did not
    /// run (breaker open, entry busy) is counted by the entry's guard and
    /// logged at debug only, as a hammered entry would flood the log.
    /// Returns the fault if the step fails closed.
    fn fault(
        &self,
        step: &Step,
        route: &str,
        phase: &str,
        fault: PluginFault,
    ) -> Option<ChainFault> {
        let plugin = step.pool.name();
        if fault.is_rejection() {
            tracing::debug!(plugin, route, phase, kind = fault.kind(), on_error = ?step.on_error, "plugin {fault}");
            return (step.on_error == OnError::FailClosed).then(|| ChainFault {
                plugin: plugin.to_string(),
                fault,
            });
        }
        crate::observe::metrics::metrics()
            .plugin_faults
            .with_label_values(&[plugin, fault.kind()])
            .inc();
        crate::admin::dashboard::events::record_fault(
            plugin,
            route,
            phase,
            fault.kind(),
            fault.to_string(),
        );
        let now = std::time::Instant::now();
        if let Some(suppressed) = bounds::log_gate(plugin, "fault", fault.kind(), now) {
            tracing::error!(
                plugin,
                route,
                phase,
                kind = fault.kind(),
                on_error = ?step.on_error,
                suppressed,
                "plugin fault: {fault}"
            );
        }
        (step.on_error == OnError::FailClosed).then(|| ChainFault {
            plugin: plugin.to_string(),
            fault,
        })
    }
}
