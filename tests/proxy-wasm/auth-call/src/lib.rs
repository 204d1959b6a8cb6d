//! Proxy-Wasm test filter `auth-call`. Proves `proxy_http_call` to an
//! upstream named in the gateway config (and granted to the plugin), the
//! stream paused by `Action::Pause` until `proxy_on_http_call_response`,
//! the call's response read back (`:status` header and body), and the
//! stream resumed with `proxy_continue_stream` or answered locally.
//!
//! Config: `{"upstream": "idp", "path": "/verify", "timeout_ms": 5000}`
//! (`timeout_ms` optional, 5000 by default).
//! Request headers: `GET <path>` to `<upstream>`, forwarding the request's
//! `authorization` header; the request is paused. Call response 200 -> the
//! request gets `x-user: <call response body, trimmed>` and resumes; any
//! other status, or a failed call (no headers) -> local 403. If the call
//! cannot be dispatched at all (unknown or ungranted upstream) -> local 503.

use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    upstream: String,
    path: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5000
}

#[derive(Default)]
struct Root {
    config: Config,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match serde_json::from_slice::<Config>(&config) {
            Ok(config) => {
                self.config = config;
                true
            }
            Err(e) => {
                log::error!("auth-call: invalid config: {e}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthCall {
            config: self.config.clone(),
        }))
    }
}

struct AuthCall {
    config: Config,
}

impl Context for AuthCall {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let status = self.get_http_call_response_header(":status");
        if status.as_deref() == Some("200") {
            let body = self
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
            let user = String::from_utf8_lossy(&body);
            self.add_http_request_header("x-user", user.trim());
            self.resume_http_request();
        } else {
            log::info!("auth-call: idp answered {status:?}");
            self.send_http_response(
                403,
                vec![("content-type", "text/plain")],
                Some(b"denied by idp\n"),
            );
        }
    }
}

impl HttpContext for AuthCall {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let authorization = self.get_http_request_header("authorization");
        let mut headers = vec![
            (":method", "GET"),
            (":path", self.config.path.as_str()),
            (":authority", self.config.upstream.as_str()),
        ];
        if let Some(authorization) = authorization.as_deref() {
            headers.push(("authorization", authorization));
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match self.dispatch_http_call(&self.config.upstream, headers, None, vec![], timeout) {
            Ok(_token) => Action::Pause,
            Err(status) => {
                log::error!("auth-call: dispatch_http_call failed: {status:?}");
                self.send_http_response(
                    503,
                    vec![("content-type", "text/plain")],
                    Some(b"idp unavailable\n"),
                );
                Action::Pause
            }
        }
    }
}
