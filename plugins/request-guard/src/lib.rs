//! `request-guard`: refuses requests that are too large, of a content type
//! the route does not take, malformed JSON, or that carry path traversal,
//! SQL injection or cross-site scripting in their path or query, before they
//! reach the upstream. See `README.md` beside this crate.
//!
//! ```yaml
//! - name: request-guard
//!   config:
//!     max_body_bytes: 65536
//!     allowed_content_types: [application/json]
//!     check_json: true
//!     disable_rules: [sqli.comment]
//!     rules: [{ name: no-admin, pattern: "(?i)^/admin", in: [path] }]
//! ```
//!
//! Refusals are JSON `{"error", "code"}` (413, 415, 400); pattern refusals
//! add `"rule"`. Every refusal is logged with the rule that fired.

mod normalize;
mod rules;

use rules::{Part, Rule, RuleConfig};
use serde::Deserialize;
use serde_json::json;
use wasmgate_plugin_sdk::prelude::*;
use wasmgate_plugin_sdk::LogLevel;

/// The plugin's config; every check can be turned off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Largest body, by `content-length` or else the buffered length (413).
    pub max_body_bytes: Option<u64>,
    /// Media types a request with a body may have (`type/*` allowed); empty: any (415).
    pub allowed_content_types: Vec<String>,
    /// A JSON-typed body must parse (400 `invalid_json`).
    pub check_json: bool,
    /// Refuse `..` segments in the path and `../` in the query, however encoded.
    pub path_traversal: bool,
    /// The built-in SQL-injection patterns.
    pub sqli: bool,
    /// The built-in cross-site-scripting patterns.
    pub xss: bool,
    /// Built-in rules to turn off one by one, e.g. `sqli.comment`.
    pub disable_rules: Vec<String>,
    /// The operator's own patterns (code `blocked`).
    pub rules: Vec<RuleConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body_bytes: None,
            allowed_content_types: Vec::new(),
            check_json: false,
            path_traversal: true,
            sqli: true,
            xss: true,
            disable_rules: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// A refusal: the status, the `code`, the pattern rule that fired (if one
/// did), where it looked and a message.
struct Refusal {
    status: u16,
    code: &'static str,
    rule: Option<String>,
    part: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, part: &'static str, message: String) -> Refusal {
        Refusal {
            status,
            code,
            rule: None,
            part,
            message,
        }
    }

    /// A pattern or traversal rule: 400 naming the rule.
    fn rule(code: &'static str, rule: &str, part: Part) -> Refusal {
        Refusal {
            status: 400,
            code,
            rule: Some(rule.to_string()),
            part: part.name(),
            message: format!("request blocked by rule `{rule}` in the {}", part.name()),
        }
    }

    /// Logs and counts the rule, and makes the client's answer.
    fn respond(self, route: &str) -> RequestAction {
        let rule = self.rule.as_deref().unwrap_or(self.code);
        log::log(
            LogLevel::Warn,
            "request refused",
            &[("rule", rule), ("in", self.part), ("route", route)],
        );
        metrics::counter_add("request_guard_refused", 1, &[("rule", rule)]);
        let mut body = json!({"error": self.message, "code": self.code});
        if let Some(rule) = &self.rule {
            body["rule"] = json!(rule);
        }
        RequestAction::Respond(Response::json(self.status, &body))
    }
}

/// The validated config.
pub struct RequestGuard {
    max_body_bytes: Option<u64>,
    allowed_content_types: Vec<String>,
    check_json: bool,
    path_traversal: bool,
    rules: Vec<Rule>,
}

/// The media type of a `content-type` value, lower-case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json_type(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

fn check_media_pattern(i: usize, pattern: &str) -> Result<String, String> {
    let media = media_type(pattern);
    match media.split_once('/') {
        Some((t, s)) if !t.is_empty() && !s.is_empty() && t != "*" => Ok(media),
        _ => Err(format!(
            "allowed_content_types[{i}]: `{pattern}` is not a media type such as `application/json` or `text/*`"
        )),
    }
}

impl RequestGuard {
    fn body_size(&self, request: &Request) -> Option<Refusal> {
        let limit = self.max_body_bytes?;
        let size = match request
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
        {
            Some(declared) => declared,
            None => request.body.as_ref().map_or(0, |b| b.len() as u64),
        };
        (size > limit).then(|| {
            let message = format!("body of {size} bytes exceeds the limit of {limit} bytes");
            Refusal::new(413, "body_too_large", "body", message)
        })
    }

    fn has_body(request: &Request) -> bool {
        let declared = request
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        declared.is_some_and(|n| n > 0) || request.body.as_ref().is_some_and(|b| !b.is_empty())
    }

    fn content_type(&self, request: &Request) -> Option<Refusal> {
        if self.allowed_content_types.is_empty() || !Self::has_body(request) {
            return None;
        }
        let media = media_type(request.header("content-type").unwrap_or_default());
        let allowed = self
            .allowed_content_types
            .iter()
            .any(|a| match a.strip_suffix("/*") {
                Some(family) => media.split('/').next() == Some(family),
                None => *a == media,
            });
        (!allowed).then(|| {
            let shown = if media.is_empty() {
                "none"
            } else {
                media.as_str()
            };
            let message = format!("content type `{shown}` is not accepted here");
            Refusal::new(415, "unsupported_media_type", "headers", message)
        })
    }

    fn json(&self, request: &Request) -> Option<Refusal> {
        let media = media_type(request.header("content-type").unwrap_or_default());
        let body = request.body.as_deref().filter(|b| !b.is_empty())?;
        if !self.check_json || !is_json_type(&media) {
            return None;
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(body)
            .err()
            .map(|e| {
                Refusal::new(
                    400,
                    "invalid_json",
                    "body",
                    format!("body is not valid JSON: {e}"),
                )
            })
    }

    /// Traversal and pattern rules over one decoded part.
    fn scan(&self, part: Part, decoded: &str) -> Option<Refusal> {
        if self.path_traversal {
            if decoded.contains('\0') {
                return Some(Refusal::rule(
                    "path_traversal",
                    "path_traversal.null_byte",
                    part,
                ));
            }
            let climbs = match part {
                Part::Path => normalize::has_parent_segment(decoded),
                Part::Query => normalize::has_parent_reference(decoded),
            };
            if climbs {
                return Some(Refusal::rule(
                    "path_traversal",
                    "path_traversal.dot_segment",
                    part,
                ));
            }
        }
        let text = match part {
            Part::Path => normalize::resolve(decoded),
            Part::Query => decoded.to_string(),
        };
        self.rules
            .iter()
            .find(|r| r.matches(part, &text))
            .map(|r| Refusal::rule(r.code, &r.name, part))
    }

    fn patterns(&self, request: &Request) -> Option<Refusal> {
        self.scan(Part::Path, &normalize::decode(&request.path, false))
            .or_else(|| {
                let query = request.query.as_deref().filter(|q| !q.is_empty())?;
                self.scan(Part::Query, &normalize::decode(query, true))
            })
    }

    fn wants_body(&self) -> bool {
        self.max_body_bytes.is_some() || !self.allowed_content_types.is_empty() || self.check_json
    }
}

impl Plugin for RequestGuard {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let known: Vec<String> = rules::builtin_names().collect();
        for (i, name) in config.disable_rules.iter().enumerate() {
            if !known.contains(name) {
                return Err(format!(
                    "disable_rules[{i}]: unknown rule `{name}` (built-in rules: {})",
                    known.join(", ")
                ));
            }
        }
        let allowed_content_types = config
            .allowed_content_types
            .iter()
            .enumerate()
            .map(|(i, p)| check_media_pattern(i, p))
            .collect::<Result<_, _>>()?;
        let mut rules = Vec::new();
        if config.sqli {
            rules.extend(rules::builtin("sqli", &config.disable_rules));
        }
        if config.xss {
            rules.extend(rules::builtin("xss", &config.disable_rules));
        }
        rules.extend(rules::custom(config.rules)?);
        Ok(RequestGuard {
            max_body_bytes: config.max_body_bytes,
            allowed_content_types,
            check_json: config.check_json,
            path_traversal: config.path_traversal,
            rules,
        })
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: self.wants_body(),
            wants_response: false,
            wants_response_body: false,
        }
    }

    fn header_interest(&self) -> Option<Vec<String>> {
        let names = if self.wants_body() {
            vec!["content-length".into(), "content-type".into()]
        } else {
            Vec::new()
        };
        Some(names)
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let refusal = self
            .body_size(request)
            .or_else(|| self.content_type(request))
            .or_else(|| self.patterns(request))
            .or_else(|| self.json(request));
        match refusal {
            Some(refusal) => refusal.respond(&request.route),
            None => RequestAction::Continue(RequestChanges::new()),
        }
    }
}

export_plugin!(RequestGuard);
