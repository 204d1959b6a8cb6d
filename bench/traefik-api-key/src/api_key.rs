//! The request hook: the same decisions and edits as wasmgate's `api-key`
//! plugin, through http-wasm's header calls.

use crate::config::Checked;
use http_wasm_guest::host::{log, Request, Response};
use http_wasm_guest::Guest;

/// http-wasm's info log level.
const INFO: i32 = 0;

/// The middleware: the checked config, plus the challenge header value
/// built once.
pub struct ApiKey {
    config: Checked,
    challenge: String,
}

impl ApiKey {
    /// Wraps a checked config.
    pub fn new(config: Checked) -> Self {
        let challenge = format!("ApiKey header=\"{}\"", config.header);
        ApiKey { config, challenge }
    }

    /// Answers `401` with the JSON error body wasmgate's plugin sends. The
    /// headers go first: Traefik's host writes the status line when the
    /// status is set, and drops headers set after it.
    fn deny(&self, response: &Response, message: &str) -> (bool, i32) {
        let body = serde_json::json!({ "error": message, "code": "unauthorized" }).to_string();
        response.header.set(b"content-type", b"application/json");
        response
            .header
            .set(b"www-authenticate", self.challenge.as_bytes());
        response.set_status(401);
        response.body.write(body.as_bytes());
        (false, 0)
    }
}

impl Guest for ApiKey {
    fn handle_request(&self, request: &Request, response: &Response) -> (bool, i32) {
        let header = self.config.header.as_bytes();
        let Some(key) = request.header.get(header) else {
            return self.deny(response, "missing API key");
        };
        let consumer = std::str::from_utf8(&key)
            .ok()
            .and_then(|k| self.config.consumers.get(k));
        let Some(consumer) = consumer else {
            log::write(INFO, b"rejected unknown API key");
            return self.deny(response, "invalid API key");
        };
        request
            .header
            .set(self.config.consumer_header.as_bytes(), consumer.as_bytes());
        if self.config.hide_credentials {
            request.header.remove(header);
        }
        (true, 0)
    }
}
