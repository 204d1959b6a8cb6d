//! Implements the generated host traits: what a plugin's imports do.
//!
//! Everything a plugin hands over is checked against [`bounds`] first: a
//! call that breaks a bound, or comes after the call's budget for its
//! capability is spent, is refused — counted, logged at most once a minute
//! per plugin and reason — and never reaches the capability behind it.

use super::bindings::wasmgate::plugin::{context, kv, log, metrics, outbound, types};
use super::bindings::{LogLevel, OutboundRequest, OutboundResponse};
use super::state::PluginState;
use crate::plugin::bounds::{self, CallBudget, Refusal};
use std::time::{Duration, Instant};

impl types::Host for PluginState {}

/// The refusal of a call made after its capability's budget for this call ran out.
fn budget_spent(what: &'static str, budget: u32) -> Refusal {
    Refusal::new(
        what,
        "budget_spent",
        format!("more than {budget} {what} calls in one plugin call"),
    )
}

impl context::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.context.get(&key).cloned()
    }

    fn set(&mut self, key: String, value: String) {
        match bounds::check_context_set(&self.context, &key, &value) {
            Ok(()) => {
                self.context_mut().insert(key, value);
            }
            Err(refusal) => refusal.report(&self.plugin),
        }
    }

    fn remove(&mut self, key: String) {
        if self.context.contains_key(&key) {
            self.context_mut().remove(&key);
        }
    }
}

impl log::Host for PluginState {
    fn log(&mut self, level: LogLevel, mut message: String, mut fields: Vec<(String, String)>) {
        if !CallBudget::take(&mut self.budget.log_lines) {
            return budget_spent("log", CallBudget::PER_CALL.log_lines).report(&self.plugin);
        }
        let mut cut = bounds::truncate(&mut message, bounds::MAX_LOG_MESSAGE_BYTES);
        if fields.len() > bounds::MAX_LOG_FIELDS {
            fields.truncate(bounds::MAX_LOG_FIELDS);
            cut = true;
        }
        for (name, value) in &mut fields {
            cut |= bounds::truncate(name, bounds::MAX_LOG_FIELD_BYTES);
            cut |= bounds::truncate(value, bounds::MAX_LOG_FIELD_BYTES);
        }
        if cut {
            Refusal::new("log", "truncated", "a log line over the bounds was cut")
                .report(&self.plugin);
        }
        self.services
            .telemetry
            .log(&self.plugin, &self.route, level, &message, &fields);
    }
}

impl PluginState {
    /// Whether a metric update may go on to the telemetry; a refused one is reported.
    fn metric_allowed(&mut self, name: &str, labels: &[(String, String)], value: f64) -> bool {
        let checked = if CallBudget::take(&mut self.budget.metric_updates) {
            bounds::check_metric(name, labels, value)
        } else {
            Err(budget_spent("metrics", CallBudget::PER_CALL.metric_updates))
        };
        checked
            .inspect_err(|refusal| refusal.report(&self.plugin))
            .is_ok()
    }

    /// The store key for a plugin's kv call, once the call is within its
    /// bounds and budget; a refused call's error says why.
    fn kv_call(
        &mut self,
        key: &str,
        value_len: Option<usize>,
        ttl_ms: Option<u64>,
    ) -> Result<String, String> {
        let checked = if CallBudget::take(&mut self.budget.kv_ops) {
            bounds::check_kv(key, value_len, ttl_ms)
        } else {
            Err(budget_spent("kv", CallBudget::PER_CALL.kv_ops))
        };
        checked.map_err(|refusal| {
            refusal.report(&self.plugin);
            refusal.to_string()
        })?;
        self.kv_key(key)
    }

    /// Why an outbound request is refused, if it is: not granted, over the
    /// call's budget, or over the bounds.
    fn outbound_check(&mut self, request: &OutboundRequest) -> Option<String> {
        if let Some(message) = self.outbound_refusal(&request.upstream) {
            bounds::count(&self.plugin, "outbound", "not_granted");
            return Some(message);
        }
        let checked = if CallBudget::take(&mut self.budget.outbound_requests) {
            bounds::check_outbound(request)
        } else {
            Err(budget_spent(
                "outbound",
                CallBudget::PER_CALL.outbound_requests,
            ))
        };
        checked
            .inspect_err(|refusal| refusal.report(&self.plugin))
            .err()
            .map(|refusal| refusal.to_string())
    }
}

impl metrics::Host for PluginState {
    fn counter_add(&mut self, name: String, value: u64, labels: Vec<(String, String)>) {
        if self.metric_allowed(&name, &labels, value as f64) {
            self.services
                .telemetry
                .counter_add(&self.plugin, &name, value, &labels);
        }
    }

    fn histogram_observe(&mut self, name: String, value: f64, labels: Vec<(String, String)>) {
        if self.metric_allowed(&name, &labels, value) {
            self.services
                .telemetry
                .histogram_observe(&self.plugin, &name, value, &labels);
        }
    }
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

impl kv::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        let (key, since) = (self.kv_call(&key, None, None)?, Instant::now());
        let result = self.services.kv.get(&key).await;
        self.clock.waited(since);
        result
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), String> {
        let (key, since) = (
            self.kv_call(&key, Some(value.len()), ttl_ms)?,
            Instant::now(),
        );
        let result = self.services.kv.set(&key, value, ttl(ttl_ms)).await;
        self.clock.waited(since);
        result
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, String> {
        let (key, since) = (self.kv_call(&key, None, ttl_ms)?, Instant::now());
        let result = self.services.kv.increment(&key, delta, ttl(ttl_ms)).await;
        self.clock.waited(since);
        result
    }

    async fn delete(&mut self, key: String) -> Result<(), String> {
        let (key, since) = (self.kv_call(&key, None, None)?, Instant::now());
        let result = self.services.kv.delete(&key).await;
        self.clock.waited(since);
        result
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, String> {
        let largest = new.len().max(expected.as_ref().map_or(0, Vec::len));
        let (key, since) = (self.kv_call(&key, Some(largest), ttl_ms)?, Instant::now());
        let result = self
            .services
            .kv
            .compare_and_swap(&key, expected, new, ttl(ttl_ms))
            .await;
        self.clock.waited(since);
        result
    }
}

impl outbound::Host for PluginState {
    async fn send_all(
        &mut self,
        requests: Vec<OutboundRequest>,
    ) -> Vec<Result<OutboundResponse, String>> {
        let refusals: Vec<Option<String>> =
            requests.iter().map(|r| self.outbound_check(r)).collect();
        let allowed: Vec<OutboundRequest> = requests
            .into_iter()
            .zip(&refusals)
            .filter(|(_, refused)| refused.is_none())
            .map(|(request, _)| request)
            .collect();
        // Refused requests cost the plugin its own time: a loop of them runs
        // into the deadline instead of waiting on the host forever.
        let mut responses = if allowed.is_empty() {
            Vec::new().into_iter()
        } else {
            let since = Instant::now();
            let responses = self.services.outbound.send_all(allowed).await;
            self.clock.waited(since);
            responses.into_iter()
        };
        refusals
            .into_iter()
            .map(|refused| match refused {
                Some(reason) => Err(reason),
                None => responses
                    .next()
                    .unwrap_or_else(|| Err("outbound: no response".into())),
            })
            .collect()
    }
}
