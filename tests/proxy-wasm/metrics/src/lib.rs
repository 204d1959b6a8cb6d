//! Proxy-Wasm test filter `metrics`. Proves `proxy_define_metric` with
//! counters and gauges, `proxy_increment_metric`, `proxy_record_metric`
//! and `proxy_get_metric`, and that both kinds reach the gateway's
//! Prometheus `/metrics` (as `wasmgate_plugin_<name>{plugin="..."}`).
//!
//! No config. The root context defines counter `pw_requests` and gauge
//! `pw_level`. Request headers: increments `pw_requests`; `x-gauge-set: n`
//! records `pw_level = n`, `x-gauge-add: d` (may be negative) increments
//! it by `d`; then adds `x-gauge: <pw_level now>`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

#[derive(Default, Clone, Copy)]
struct Ids {
    requests: u32,
    level: u32,
}

#[derive(Default)]
struct Root {
    ids: Ids,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let defined = (
            hostcalls::define_metric(MetricType::Counter, "pw_requests"),
            hostcalls::define_metric(MetricType::Gauge, "pw_level"),
        );
        match defined {
            (Ok(requests), Ok(level)) => {
                self.ids = Ids { requests, level };
                true
            }
            other => {
                log::error!("metrics: define_metric failed: {other:?}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Metrics { ids: self.ids }))
    }
}

struct Metrics {
    ids: Ids,
}

impl Context for Metrics {}

impl HttpContext for Metrics {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        hostcalls::increment_metric(self.ids.requests, 1).ok();
        let number = |name: &str| {
            self.get_http_request_header(name)
                .and_then(|v| v.parse::<i64>().ok())
        };
        if let Some(value) = number("x-gauge-set") {
            hostcalls::record_metric(self.ids.level, value as u64).ok();
        }
        if let Some(delta) = number("x-gauge-add") {
            hostcalls::increment_metric(self.ids.level, delta).ok();
        }
        let now = hostcalls::get_metric(self.ids.level).unwrap_or_default();
        self.add_http_request_header("x-gauge", &now.to_string());
        Action::Continue
    }
}
