//! Call paths and header values with `${...}` placeholders, parsed once at
//! load time: `${path}`, `${query}` and `${ctx.KEY}`.

use wasmgate_plugin_sdk::{context, Request};

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    /// The client's path, as received (already percent-encoded).
    Path,
    /// The client's raw query without `?` (empty when none).
    Query,
    /// A request-context value; percent-encoded when it goes into a path.
    Ctx(String),
}

/// Where a rendered template goes: context values are encoded for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Path,
    Header,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; an unknown or unterminated placeholder is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated placeholder in `{text}`"))?;
            parts.push(parse_var(&after[..end])?);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// True when the rendered text starts with `/` whatever the request.
    pub fn starts_with_slash(&self) -> bool {
        match self.parts.first() {
            Some(Part::Literal(text)) => text.starts_with('/'),
            Some(Part::Path) => true,
            _ => false,
        }
    }

    /// The text for `request`; an unset context key renders as `""`.
    pub fn render(&self, request: &Request, target: Target) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Path => out.push_str(&request.path),
                Part::Query => out.push_str(request.query.as_deref().unwrap_or_default()),
                Part::Ctx(key) => {
                    let value = context::get(key).unwrap_or_default();
                    match target {
                        Target::Path => out.push_str(&encode(&value)),
                        Target::Header => out.push_str(&value),
                    }
                }
            }
        }
        out
    }
}

fn parse_var(name: &str) -> Result<Part, String> {
    match name {
        "path" => Ok(Part::Path),
        "query" => Ok(Part::Query),
        _ => match name.strip_prefix("ctx.") {
            Some(key) if !key.is_empty() => Ok(Part::Ctx(key.to_string())),
            _ => Err(format!(
                "unknown placeholder `${{{name}}}` (use path, query or ctx.KEY)"
            )),
        },
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a
/// context value cannot add path segments or a query.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
