//! One upstream call of an aggregate: its config, the request it sends and
//! how its answer becomes a value of the merged object.

use crate::template::{Target, Template};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use wasmgate_plugin_sdk::{OutboundRequest, OutboundResponse, Request};

/// What a failed call does to the whole answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The whole answer is a 502.
    #[default]
    Required,
    /// The key is left out, or holds `default` when one is configured.
    Optional,
}

/// One call as configured.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    /// The key of this call's result in the merged object.
    pub name: String,
    /// An upstream named in the gateway config.
    pub upstream: String,
    /// Path and query to call; `${path}`, `${query}`, `${ctx.KEY}` templates.
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// Client request headers copied onto this call (when present).
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Headers set on this call; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Give up on this call after this long (default: the upstream's timeout).
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    #[serde(default)]
    pub policy: Policy,
    /// With `policy: optional`, the value used when the call fails.
    #[serde(default)]
    pub default: Option<Value>,
}

fn default_path() -> String {
    "${path}?${query}".into()
}

fn default_method() -> String {
    "GET".into()
}

/// A validated call.
#[derive(Debug)]
pub struct Call {
    pub name: String,
    upstream: String,
    method: String,
    path: Template,
    forward_headers: Vec<String>,
    headers: Vec<(String, Template)>,
    timeout_ms: Option<u32>,
    pub policy: Policy,
    pub default: Option<Value>,
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn header_name(field: &str, name: &str) -> Result<String, String> {
    if is_token(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!("{field}: `{name}` is not a valid header name"))
    }
}

impl Call {
    /// Validates one call; `field` (e.g. `calls[1]`) prefixes errors.
    pub fn new(field: &str, config: CallConfig) -> Result<Call, String> {
        if config.name.is_empty() {
            return Err(format!("{field}.name must not be empty"));
        }
        if config.upstream.is_empty() {
            return Err(format!("{field}.upstream must not be empty"));
        }
        if !is_token(&config.method) {
            return Err(format!(
                "{field}.method: `{}` is not an HTTP method",
                config.method
            ));
        }
        let path = Template::parse(&config.path).map_err(|e| format!("{field}.path: {e}"))?;
        if !path.starts_with_slash() {
            return Err(format!("{field}.path must start with `/` or `${{path}}`"));
        }
        if config.timeout_ms == Some(0) {
            return Err(format!("{field}.timeout_ms must be more than 0"));
        }
        if config.default.is_some() && config.policy == Policy::Required {
            return Err(format!("{field}.default needs `policy: optional`"));
        }
        let forward_headers = config
            .forward_headers
            .iter()
            .map(|n| header_name(&format!("{field}.forward_headers"), n))
            .collect::<Result<_, _>>()?;
        let headers = config
            .headers
            .iter()
            .map(|(n, v)| {
                let f = format!("{field}.headers");
                let template = Template::parse(v).map_err(|e| format!("{f}.{n}: {e}"))?;
                Ok((header_name(&f, n)?, template))
            })
            .collect::<Result<_, String>>()?;
        Ok(Call {
            name: config.name,
            upstream: config.upstream,
            method: config.method.to_ascii_uppercase(),
            path,
            forward_headers,
            headers,
            timeout_ms: config.timeout_ms,
            policy: config.policy,
            default: config.default,
        })
    }

    /// The client request headers this call copies: all it reads.
    pub fn forwarded(&self) -> &[String] {
        &self.forward_headers
    }

    /// The outbound request this call sends for `request`.
    pub fn outbound(&self, request: &Request) -> OutboundRequest {
        let path = self.path.render(request, Target::Path);
        let path = path.trim_end_matches(['?', '&']);
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|(n, _)| self.forward_headers.contains(n))
            .cloned()
            .collect();
        for (name, template) in &self.headers {
            let value = template.render(request, Target::Header);
            if !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                headers.retain(|(n, _)| n != name);
                headers.push((name.clone(), value));
            }
        }
        OutboundRequest {
            upstream: self.upstream.clone(),
            method: self.method.clone(),
            path_and_query: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            headers,
            body: None,
            timeout_ms: self.timeout_ms,
        }
    }
}

/// A call's answer as a value: its JSON, or its text when it is not JSON.
/// A transport error or a status outside 2xx is a failure, with the reason.
pub fn value_of(result: Result<OutboundResponse, String>) -> Result<Value, String> {
    let response = result?;
    if !(200..300).contains(&response.status) {
        return Err(format!("answered {}", response.status));
    }
    Ok(serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&response.body).into_owned())))
}
