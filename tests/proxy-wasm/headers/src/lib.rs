//! Proxy-Wasm test filter `headers`. Proves that the host runs an unmodified
//! proxy-wasm 0.2 filter: `_initialize`, the root context and one HTTP
//! context per request; the route entry's JSON config reaches
//! `proxy_on_configure` (an invalid one makes it return false, so the plugin
//! must not load); header add/remove on request and response; the properties
//! `request.path`, `request.method` and `plugin_name`; `proxy_log`; and an
//! unsupported call (`proxy_set_property`) that the host logs once per
//! plugin while the filter goes on.
//!
//! Config: `{"request_value": "..."}`.
//! Request headers: adds `x-pw-request: <request_value>`, `x-pw-path`,
//! `x-pw-method` and `x-pw-plugin` (each only when the host knows the
//! property), removes `x-remove-me`, sets property `wasmgate.seen`.
//! Response headers: adds `x-pw-response: yes`, removes `server`.

use proxy_wasm::hostcalls;
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
    request_value: String,
}

#[derive(Default)]
struct Root {
    request_value: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match serde_json::from_slice::<Config>(&config) {
            Ok(config) => {
                log::info!("headers: request_value = {:?}", config.request_value);
                self.request_value = config.request_value;
                true
            }
            Err(e) => {
                log::error!("headers: invalid config: {e}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Headers {
            request_value: self.request_value.clone(),
        }))
    }
}

struct Headers {
    request_value: String,
}

impl Headers {
    fn property(&self, path: Vec<&str>) -> Option<String> {
        self.get_property(path)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

impl Context for Headers {}

impl HttpContext for Headers {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_request_header("x-pw-request", &self.request_value);
        self.remove_http_request_header("x-remove-me");
        let path = self.property(vec!["request", "path"]);
        let method = self.property(vec!["request", "method"]);
        let plugin = self.property(vec!["plugin_name"]);
        for (name, value) in [
            ("x-pw-path", &path),
            ("x-pw-method", &method),
            ("x-pw-plugin", &plugin),
        ] {
            if let Some(value) = value {
                self.add_http_request_header(name, value);
            }
        }
        self.set_property(vec!["wasmgate", "seen"], Some(b"1"));
        // The raw hostcall, as filters without the `log` crate use it.
        hostcalls::log(
            LogLevel::Info,
            &format!(
                "headers: {} {}",
                method.as_deref().unwrap_or("?"),
                path.as_deref().unwrap_or("?")
            ),
        )
        .ok();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-pw-response", "yes");
        self.remove_http_response_header("server");
        Action::Continue
    }
}
