//! `{{name}}`: a wasmgate plugin. It greets every request with a header
//! (and tells later plugins through the context), and answers paths under
//! `blocked_prefix` with 403 JSON.
//!
//! ```yaml
//! - name: {{name}}
//!   config: { greeting: hello, blocked_prefix: /admin }
//! ```

use serde::Deserialize;
use wasmgate_plugin_sdk::{prelude::*, LogLevel};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    greeting: String,
    #[serde(default)]
    blocked_prefix: Option<String>,
}

struct Greeter(Config);

impl Plugin for Greeter {
    type Config = Config;

    /// Runs once per instance; an `Err` refuses the config at load time.
    fn new(config: Config) -> Result<Self, String> {
        if config.greeting.is_empty() {
            return Err("`greeting` must not be empty".into());
        }
        Ok(Greeter(config))
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        if let Some(prefix) = &self.0.blocked_prefix {
            if request.path.starts_with(prefix.as_str()) {
                log::log(LogLevel::Info, "blocked", &[("path", &request.path)]);
                return RequestAction::Respond(Response::error(403, "forbidden", "blocked"));
            }
        }
        context::set("greeting", &self.0.greeting);
        RequestAction::Continue(RequestChanges::new().set_header("x-greeting", &self.0.greeting))
    }

    /// It reads no request header, so the host copies none into the call.
    fn header_interest(&self) -> Option<Vec<String>> {
        Some(Vec::new())
    }
}

export_plugin!(Greeter);
