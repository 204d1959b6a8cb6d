//! `transform`: reshapes requests and responses on their way through: headers
//! (with values templated from the request context), the path, the query and
//! JSON bodies. See `README.md` beside this crate for every option.
//!
//! ```yaml
//! - name: transform
//!   config:
//!     request:
//!       headers: { set: { x-user: "${ctx.consumer}" }, remove: [x-debug] }
//!       path: { strip_prefix: /api, replace: [{ pattern: "^/v1/", with: "/v2/" }] }
//!       query: { add: { source: gateway }, remove: [debug] }
//!       body: { require_json: true, rename: { userName: user.name }, wrap: data }
//!     response:
//!       headers: { add: { x-route: "${route}" } }
//!       body: { unwrap: data, remove: [internal] }
//! ```

mod body;
mod headers;
mod template;
mod url;

use body::{BodyConfig, BodyOutcome, BodyRules};
use headers::{HeaderConfig, HeaderRules};
use serde::Deserialize;
use template::{Lookup, Missing, RequestVar, Var};
use url::{PathConfig, PathRules, QueryConfig, QueryRules};
use wasmgate_plugin_sdk::prelude::*;

/// Edits to the request on its way to the upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestConfig {
    pub headers: HeaderConfig,
    pub path: PathConfig,
    pub query: QueryConfig,
    pub body: BodyConfig,
}

/// Edits to the response on its way to the client.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    pub headers: HeaderConfig,
    pub body: BodyConfig,
}

/// The plugin's config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What a placeholder with no value (an unset context key) does:
    /// `empty` (the default) renders `""`; `skip` leaves that edit out.
    pub missing: Missing,
    pub request: RequestConfig,
    pub response: ResponseConfig,
}

/// The configured edits, validated and ready to apply.
pub struct Transform {
    missing: Missing,
    request_headers: HeaderRules,
    path: PathRules,
    query: QueryRules,
    request_body: BodyRules,
    response_headers: HeaderRules,
    response_body: BodyRules,
    /// Request properties the response templates read: saved in the
    /// context by the request hook, since the response hook has no request.
    carried: Vec<RequestVar>,
}

/// The context key carrying a request property to the response hook.
fn carried_key(var: RequestVar) -> String {
    format!("transform.{}", var.name())
}

/// Placeholder values in the request hook.
struct RequestLookup<'a>(&'a Request);

impl RequestLookup<'_> {
    fn request_var(&self, var: RequestVar) -> String {
        let r = self.0;
        match var {
            RequestVar::Route => r.route.clone(),
            RequestVar::ClientIp => client_ip(&r.client_addr).to_string(),
            RequestVar::Method => r.method.clone(),
            RequestVar::Path => r.path.clone(),
        }
    }
}

impl Lookup for RequestLookup<'_> {
    fn get(&self, var: &Var) -> Option<String> {
        match var {
            Var::Ctx(key) => context::get(key),
            Var::Request(v) => Some(self.request_var(*v)),
        }
    }
}

/// Placeholder values in the response hook: all from the context.
struct ResponseLookup;

impl Lookup for ResponseLookup {
    fn get(&self, var: &Var) -> Option<String> {
        match var {
            Var::Ctx(key) => context::get(key),
            Var::Request(v) => context::get(&carried_key(*v)),
        }
    }
}

/// The IP of an `ip:port` or `[ipv6]:port` socket address.
fn client_ip(addr: &str) -> &str {
    let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
    ip.trim_start_matches('[').trim_end_matches(']')
}

/// A body under a `content-encoding` (gzip...) is not readable JSON.
fn is_encoded(encoding: Option<&str>) -> bool {
    encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
}

impl Transform {
    fn request_body(&self, request: &Request, lookup: &dyn Lookup) -> BodyOutcome {
        if self.request_body.is_empty() || is_encoded(request.header("content-encoding")) {
            return BodyOutcome::Untouched;
        }
        let body = request.body.as_deref().unwrap_or_default();
        self.request_body
            .apply(request.header("content-type"), body, lookup, self.missing)
    }

    fn response_body(&self, response: &Response) -> BodyOutcome {
        if self.response_body.is_empty() || is_encoded(response.header("content-encoding")) {
            return BodyOutcome::Untouched;
        }
        let body = response.body.as_deref().unwrap_or_default();
        self.response_body.apply(
            response.header("content-type"),
            body,
            &ResponseLookup,
            self.missing,
        )
    }
}

impl Plugin for Transform {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let request = config.request;
        let response = config.response;
        let response_headers = HeaderRules::new("response.headers", response.headers)?;
        let response_body = BodyRules::new("response.body", response.body)?;
        let mut carried: Vec<RequestVar> = response_headers
            .request_vars()
            .chain(response_body.request_vars())
            .collect();
        carried.sort_by_key(|v| v.name());
        carried.dedup();
        Ok(Transform {
            missing: config.missing,
            request_headers: HeaderRules::new("request.headers", request.headers)?,
            path: PathRules::new(request.path)?,
            query: QueryRules::new(request.query)?,
            request_body: BodyRules::new("request.body", request.body)?,
            response_headers,
            response_body,
            carried,
        })
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: !self.request_body.is_empty(),
            wants_response: !self.response_headers.is_empty() || !self.response_body.is_empty(),
            wants_response_body: !self.response_body.is_empty(),
        }
    }

    fn header_interest(&self) -> Option<Vec<String>> {
        let mut names: Vec<String> = self
            .request_headers
            .reads()
            .chain(self.response_headers.reads())
            .cloned()
            .collect();
        if !self.request_body.is_empty() || !self.response_body.is_empty() {
            names.extend(["content-type".into(), "content-encoding".into()]);
        }
        names.sort();
        names.dedup();
        Some(names)
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let lookup = RequestLookup(request);
        let mut changes = RequestChanges::new();
        match self.request_body(request, &lookup) {
            BodyOutcome::Untouched => {}
            BodyOutcome::Replaced(body) => changes.body = Some(body),
            BodyOutcome::Invalid => {
                return RequestAction::Respond(Response::error(
                    400,
                    "invalid_json",
                    "request body must be valid JSON",
                ))
            }
        }
        for var in &self.carried {
            context::set(&carried_key(*var), &lookup.request_var(*var));
        }
        changes.headers = self
            .request_headers
            .changes(&request.headers, &lookup, self.missing);
        changes.path = self.path.rewrite(&request.path);
        changes.query = self
            .query
            .rewrite(request.query.as_deref(), &lookup, self.missing);
        RequestAction::Continue(changes)
    }

    fn on_response(&self, response: &Response) -> ResponseChanges {
        let mut changes = ResponseChanges::new();
        match self.response_body(response) {
            BodyOutcome::Untouched => {}
            BodyOutcome::Replaced(body) => changes.body = Some(body),
            BodyOutcome::Invalid => {
                let error = Response::error(
                    502,
                    "invalid_json",
                    "upstream response body is not valid JSON",
                );
                return ResponseChanges::new()
                    .status(502)
                    .remove_header("content-encoding")
                    .set_header("content-type", "application/json")
                    .body(error.body.unwrap_or_default());
            }
        }
        changes.headers =
            self.response_headers
                .changes(&response.headers, &ResponseLookup, self.missing);
        changes
    }
}

export_plugin!(Transform);
