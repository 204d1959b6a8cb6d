//! Proxy-Wasm test filter `deny`. Proves that a filter's local response
//! (`proxy_send_local_response`, with headers and a body) reaches the client
//! instead of the upstream, and that `proxy_get_header_map_value` answers a
//! missing header with `NotFound`.
//!
//! Config: `{"key": "..."}` (an invalid config makes `on_configure` fail).
//! Request headers: no `x-api-key` -> 401 with `www-authenticate` and a
//! small body; `x-api-key` other than `key` -> 403; the right key -> the
//! request goes on untouched.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    key: String,
}

#[derive(Default)]
struct Root {
    key: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match serde_json::from_slice::<Config>(&config) {
            Ok(config) => {
                self.key = config.key;
                true
            }
            Err(e) => {
                log::error!("deny: invalid config: {e}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Deny {
            key: self.key.clone(),
        }))
    }
}

struct Deny {
    key: String,
}

impl Context for Deny {}

impl HttpContext for Deny {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.get_http_request_header("x-api-key") {
            None => {
                self.send_http_response(
                    401,
                    vec![
                        ("www-authenticate", "ApiKey realm=\"wasmgate\""),
                        ("content-type", "text/plain"),
                    ],
                    Some(b"missing x-api-key\n"),
                );
                Action::Pause
            }
            Some(key) if key != self.key => {
                log::info!("deny: wrong api key");
                self.send_http_response(
                    403,
                    vec![("content-type", "text/plain")],
                    Some(b"wrong x-api-key\n"),
                );
                Action::Pause
            }
            Some(_) => Action::Continue,
        }
    }
}
