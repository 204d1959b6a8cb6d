//! Proxy-Wasm test filter `trailers`. Proves that the host hands a filter
//! the trailers of both directions, in their own callbacks, and forwards
//! its edits.
//!
//! Request trailers: copies `x-checksum` to a new `x-pw-checksum`, removes
//! `x-drop-me`. Response trailers: copies `grpc-status` to a new
//! `x-pw-grpc-status` and replaces `grpc-message` with `edited`. Either
//! callback with no trailers (which the host must not make) adds
//! `x-pw-empty-call` to the response headers.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Trailers) });
}}

struct Trailers;

impl Context for Trailers {}

impl HttpContext for Trailers {
    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        if num_trailers == 0 {
            log::error!("trailers: request trailers callback without trailers");
        }
        if let Some(checksum) = self.get_http_request_trailer("x-checksum") {
            self.add_http_request_trailer("x-pw-checksum", &checksum);
        }
        self.remove_http_request_trailer("x-drop-me");
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        if num_trailers == 0 {
            log::error!("trailers: response trailers callback without trailers");
        }
        if let Some(status) = self.get_http_response_trailer("grpc-status") {
            self.add_http_response_trailer("x-pw-grpc-status", &status);
        }
        self.set_http_response_trailer("grpc-message", Some("edited"));
        Action::Continue
    }
}
