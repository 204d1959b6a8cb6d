//! Proxy-Wasm test filter `body-rewrite`. Proves body buffering: the host
//! keeps calling `proxy_on_request_body` / `proxy_on_response_body` with the
//! growing buffered size while the filter returns `Action::Pause`, then with
//! `end_of_stream`; the filter reads the whole body with
//! `proxy_get_buffer_bytes` and replaces it with `proxy_set_buffer_bytes`.
//!
//! No config. Every `foo` in the request body and in the response body
//! becomes `bar` (same length, so `content-length` stays right).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(BodyRewrite))
    }
}

struct BodyRewrite;

/// `body` with every `foo` replaced by `bar`.
fn rewrite(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        if rest.starts_with(b"foo") {
            out.extend_from_slice(b"bar");
            rest = &rest[3..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

impl Context for BodyRewrite {}

impl HttpContext for BodyRewrite {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_request_body(0, body_size) {
            self.set_http_request_body(0, body_size, &rewrite(&body));
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_response_body(0, body_size) {
            self.set_http_response_body(0, body_size, &rewrite(&body));
        }
        Action::Continue
    }
}
