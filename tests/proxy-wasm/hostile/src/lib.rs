//! Proxy-Wasm test filter `hostile`. Proves the host's limits hold for
//! Proxy-Wasm filters as for WIT plugins: a callback that never returns is
//! stopped by the CPU deadline, a trap (a Rust panic, which the SDK's panic
//! hook logs at `Critical` through `proxy_log` before `unreachable`) is
//! caught, and both are handled by the entry's `on_error` (fail open or
//! closed) without harming other requests.
//!
//! Config: `{"mode": "loop"}` or `{"mode": "trap"}`; anything else makes
//! `on_configure` return false.
//! Request headers: `loop` spins forever; `trap` panics.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { mode: Mode::Loop }));
}}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Loop,
    Trap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Mode,
}

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match serde_json::from_slice::<Config>(&config) {
            Ok(config) => {
                self.mode = config.mode;
                true
            }
            Err(e) => {
                log::error!("hostile: invalid config: {e}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hostile { mode: self.mode }))
    }
}

struct Hostile {
    mode: Mode,
}

impl Context for Hostile {}

impl HttpContext for Hostile {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.mode {
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Trap => panic!("hostile: trap requested"),
        }
    }
}
