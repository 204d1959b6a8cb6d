//! Implements the generated host traits: what a plugin's imports do.

use super::bindings::wasmgate::plugin::{context, kv, log, metrics, outbound, types};
use super::bindings::{LogLevel, OutboundRequest, OutboundResponse};
use super::state::PluginState;
use std::time::{Duration, Instant};

impl types::Host for PluginState {}

impl context::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.context.get(&key).cloned()
    }

    fn set(&mut self, key: String, value: String) {
        self.context.insert(key, value);
    }

    fn remove(&mut self, key: String) {
        self.context.remove(&key);
    }
}

impl log::Host for PluginState {
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        self.services
            .telemetry
            .log(&self.plugin, &self.route, level, &message, &fields);
    }
}

impl metrics::Host for PluginState {
    fn counter_add(&mut self, name: String, value: u64, labels: Vec<(String, String)>) {
        self.services
            .telemetry
            .counter_add(&self.plugin, &name, value, &labels);
    }

    fn histogram_observe(&mut self, name: String, value: f64, labels: Vec<(String, String)>) {
        self.services
            .telemetry
            .histogram_observe(&self.plugin, &name, value, &labels);
    }
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

impl kv::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        let (key, since) = (self.kv_key(&key)?, Instant::now());
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
        let key = self.kv_key(&key)?;
        self.services.kv.set(&key, value, ttl(ttl_ms)).await
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, String> {
        let key = self.kv_key(&key)?;
        self.services.kv.increment(&key, delta, ttl(ttl_ms)).await
    }

    async fn delete(&mut self, key: String) -> Result<(), String> {
        let (key, since) = (self.kv_key(&key)?, Instant::now());
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
        let (key, since) = (self.kv_key(&key)?, Instant::now());
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
        let refusals: Vec<Option<String>> = requests
            .iter()
            .map(|r| self.outbound_refusal(&r.upstream))
            .collect();
        let allowed = requests
            .into_iter()
            .zip(&refusals)
            .filter(|(_, refused)| refused.is_none())
            .map(|(request, _)| request)
            .collect();
        let since = Instant::now();
        let mut responses = self.services.outbound.send_all(allowed).await.into_iter();
        self.clock.waited(since);
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
