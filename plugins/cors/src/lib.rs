//! `cors`: answers CORS preflights at the gateway and adds the CORS headers
//! to actual cross-origin responses, for allowed origins only.
//!
//! ```yaml
//! - name: cors                 # first in the chain: preflights carry no credentials
//!   config:
//!     origins: [https://app.example.com, "*.example.com"]
//!     methods: [GET, POST, PUT]          # default GET, HEAD, POST; ["*"]: any
//!     headers: [content-type, authorization]   # ["*"]: any requested
//!     expose_headers: [x-request-id]
//!     credentials: true
//!     max_age_seconds: 600
//! ```
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//! gets `204` with the `Access-Control-Allow-*` headers, or `403`
//! `{"error": "...", "code": "cors_forbidden"}`. Other requests go upstream;
//! the response gets `Access-Control-Allow-Origin` only for an allowed
//! origin, and `Vary: Origin` always. See README.md.

pub mod config;
pub mod origin;

use config::{Config, NameList, Policy};
use origin::OriginPattern;
use wasmgate_plugin_sdk::prelude::*;

/// Context key carrying the `Access-Control-Allow-Origin` value to the response hook.
const CTX_ALLOW_ORIGIN: &str = "cors.origin";
/// What a preflight answer depends on.
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
/// The CORS headers this plugin alone decides; an upstream's are dropped.
const OWNED: [&str; 3] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
];

/// The plugin: its validated policy.
pub struct Cors {
    policy: Policy,
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed:
    /// `*` when every origin is (and no credentials), else the origin itself.
    fn allow_origin(&self, origin: &str) -> Option<String> {
        let origins = &self.policy.origins;
        if origins.contains(&OriginPattern::Any) {
            return Some("*".into());
        }
        origins
            .iter()
            .any(|pattern| pattern.matches(origin))
            .then(|| origin.to_string())
    }

    /// The answer to a preflight from `origin` asking for `method`.
    fn preflight(&self, request: &Request, origin: &str, method: &str) -> Response {
        let Some(allow_origin) = self.allow_origin(origin) else {
            return refuse("origin not allowed");
        };
        if !self.policy.methods.allows(method) {
            return refuse(&format!("method `{method}` not allowed"));
        }
        let requested = requested_headers(request);
        if let Some(header) = requested.iter().find(|h| !self.policy.headers.allows(h)) {
            return refuse(&format!("header `{header}` not allowed"));
        }
        let mut response = Response::new(204)
            .with_header("access-control-allow-origin", &allow_origin)
            .with_header(
                "access-control-allow-methods",
                &self.allowed_methods(method),
            )
            .with_header("vary", PREFLIGHT_VARY);
        let headers = self.allowed_headers(&requested);
        if !headers.is_empty() {
            response = response.with_header("access-control-allow-headers", &headers);
        }
        if self.policy.credentials {
            response = response.with_header("access-control-allow-credentials", "true");
        }
        if let Some(max_age) = self.policy.max_age_seconds {
            response = response.with_header("access-control-max-age", &max_age.to_string());
        }
        response
    }

    /// The configured methods, or with `*` the one asked for.
    fn allowed_methods(&self, requested: &str) -> String {
        match &self.policy.methods {
            NameList::Any => requested.to_string(),
            NameList::Only(methods) => methods.join(", "),
        }
    }

    /// The configured headers, or with `*` those asked for.
    fn allowed_headers(&self, requested: &[String]) -> String {
        match &self.policy.headers {
            NameList::Any => requested.join(", "),
            NameList::Only(headers) => headers.join(", "),
        }
    }
}

/// A refused preflight: 403 JSON, no `Access-Control-Allow-Origin`.
fn refuse(message: &str) -> Response {
    Response::error(403, "cors_forbidden", message).with_header("vary", PREFLIGHT_VARY)
}

/// The lower-case names in `Access-Control-Request-Headers`.
fn requested_headers(request: &Request) -> Vec<String> {
    request
        .header("access-control-request-headers")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// Whether the response already varies by `Origin` (or by everything).
fn varies_by_origin(response: &Response) -> bool {
    response
        .headers
        .iter()
        .filter(|(name, _)| name == "vary")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .any(|v| v == "*" || v.eq_ignore_ascii_case("origin"))
}

impl Plugin for Cors {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Cors {
            policy: config.policy()?,
        })
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: false,
            wants_response: true,
            wants_response_body: false,
        }
    }

    /// The request headers of CORS, and `Vary` to merge into on the way back.
    fn header_interest(&self) -> Option<Vec<String>> {
        let names = [
            "origin",
            "access-control-request-method",
            "access-control-request-headers",
            "vary",
        ];
        Some(names.map(String::from).to_vec())
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let Some(origin) = request.header("origin") else {
            return RequestAction::Continue(RequestChanges::new());
        };
        if request.method == "OPTIONS" {
            if let Some(method) = request.header("access-control-request-method") {
                return RequestAction::Respond(self.preflight(request, origin, method));
            }
        }
        if let Some(allow_origin) = self.allow_origin(origin) {
            context::set(CTX_ALLOW_ORIGIN, &allow_origin);
        }
        RequestAction::Continue(RequestChanges::new())
    }

    fn on_response(&self, response: &Response) -> ResponseChanges {
        let mut changes = OWNED
            .into_iter()
            .fold(ResponseChanges::new(), |c, name| c.remove_header(name));
        if let Some(allow_origin) = context::get(CTX_ALLOW_ORIGIN) {
            changes = changes.set_header("access-control-allow-origin", &allow_origin);
            if self.policy.credentials {
                changes = changes.set_header("access-control-allow-credentials", "true");
            }
            if !self.policy.expose_headers.is_empty() {
                let exposed = self.policy.expose_headers.join(", ");
                changes = changes.set_header("access-control-expose-headers", &exposed);
            }
        }
        if !varies_by_origin(response) {
            changes = changes.append_header("vary", "Origin");
        }
        changes
    }
}

export_plugin!(Cors);
