//! Call paths and header values with `${...}` placeholders, parsed once at
//! load time: `${path}`, `${query}` and `${ctx.KEY}` (`$${` is a literal `${`).

use wasmgate_plugin_sdk::template::{self, encode_component, Segment};
use wasmgate_plugin_sdk::{context, Request};

#[derive(Debug, Clone)]
enum Var {
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
    parts: Vec<Segment<Var>>,
}

impl Template {
    /// Parses `text`; an unknown or unterminated placeholder is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        Ok(Template {
            parts: template::parse(text, parse_var)?,
        })
    }

    /// True when the rendered text starts with `/` whatever the request.
    pub fn starts_with_slash(&self) -> bool {
        match self.parts.first() {
            Some(Segment::Literal(text)) => text.starts_with('/'),
            Some(Segment::Var(Var::Path)) => true,
            _ => false,
        }
    }

    /// The text for `request`; an unset context key renders as `""`.
    pub fn render(&self, request: &Request, target: Target) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Segment::Literal(text) => out.push_str(text),
                Segment::Var(Var::Path) => out.push_str(&request.path),
                Segment::Var(Var::Query) => {
                    out.push_str(request.query.as_deref().unwrap_or_default())
                }
                Segment::Var(Var::Ctx(key)) => {
                    let value = context::get(key).unwrap_or_default();
                    match target {
                        Target::Path => out.push_str(&encode_component(&value)),
                        Target::Header => out.push_str(&value),
                    }
                }
            }
        }
        out
    }
}

fn parse_var(name: &str) -> Result<Var, String> {
    match name {
        "path" => Ok(Var::Path),
        "query" => Ok(Var::Query),
        _ => match name.strip_prefix("ctx.") {
            Some(key) if !key.is_empty() => Ok(Var::Ctx(key.to_string())),
            _ => Err(format!(
                "unknown placeholder `${{{name}}}` (use path, query or ctx.KEY)"
            )),
        },
    }
}
