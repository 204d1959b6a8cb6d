//! Proxy-Wasm test filter `tick`. Proves the timer: the root context sets
//! `proxy_set_tick_period_milliseconds` in `on_configure`, the host calls
//! `proxy_on_tick` on that root context every period (outside any request),
//! and what the tick wrote to shared data is seen by later requests.
//!
//! Config: `{"tick_ms": 100}` (`tick_ms` optional, 100 by default).
//! Each tick increments the root context's own counter and stores it in
//! shared data `ticks` (a plain write: with several instances each writes
//! its own count, so the value only roughly tracks elapsed periods).
//! Request headers: adds `x-ticks: <ticks from shared data, 0 if none>`.

use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { ticks: 0 }));
}}

const KEY: &str = "ticks";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_tick_ms")]
    tick_ms: u64,
}

fn default_tick_ms() -> u64 {
    100
}

struct Root {
    ticks: u64,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match serde_json::from_slice::<Config>(&config) {
            Ok(config) => {
                self.set_tick_period(Duration::from_millis(config.tick_ms));
                true
            }
            Err(e) => {
                log::error!("tick: invalid config: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        if let Err(status) =
            self.set_shared_data(KEY, Some(self.ticks.to_string().as_bytes()), None)
        {
            log::error!("tick: set_shared_data: {status:?}");
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Tick))
    }
}

struct Tick;

impl Context for Tick {}

impl HttpContext for Tick {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let ticks = self
            .get_shared_data(KEY)
            .0
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| "0".to_string());
        self.add_http_request_header("x-ticks", &ticks);
        Action::Continue
    }
}
