//! Values with `${...}` placeholders, parsed once at load time and rendered
//! per request.
//!
//! Placeholders: `${ctx.KEY}` (the request context), `${route}`,
//! `${client_ip}`, `${method}`, `${path}` (the path as the client sent it).
//! `$${` writes a literal `${`.

use wasmgate_plugin_sdk::template::{self, Segment};

/// A value a placeholder reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// A request-context key set by an earlier plugin (`${ctx.sub}`).
    Ctx(String),
    /// A property of the request itself.
    Request(RequestVar),
}

/// The request properties a template may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestVar {
    Route,
    ClientIp,
    Method,
    Path,
}

impl RequestVar {
    /// Every request property, for saving them for the response hook.
    pub const ALL: [RequestVar; 4] = [Self::Route, Self::ClientIp, Self::Method, Self::Path];

    /// The placeholder name, also used in the context key that carries the
    /// value to the response hook.
    pub fn name(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::ClientIp => "client_ip",
            Self::Method => "method",
            Self::Path => "path",
        }
    }
}

/// What a placeholder whose value is missing (an unset context key) renders as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// The placeholder renders as `""`.
    #[default]
    Empty,
    /// The whole edit (header, query parameter, body field) is left out.
    Skip,
}

/// Where a template's placeholders get their values.
pub trait Lookup {
    fn get(&self, var: &Var) -> Option<String>;
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

    /// The request properties this template reads.
    pub fn request_vars(&self) -> impl Iterator<Item = RequestVar> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Segment::Var(Var::Request(v)) => Some(*v),
            _ => None,
        })
    }

    /// The rendered text; `None` when a value is missing and `missing` is `Skip`.
    pub fn render(&self, lookup: &dyn Lookup, missing: Missing) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Segment::Literal(text) => out.push_str(text),
                Segment::Var(var) => match (lookup.get(var), missing) {
                    (Some(value), _) => out.push_str(&value),
                    (None, Missing::Empty) => {}
                    (None, Missing::Skip) => return None,
                },
            }
        }
        Some(out)
    }
}

fn parse_var(name: &str) -> Result<Var, String> {
    if let Some(key) = name.strip_prefix("ctx.") {
        if key.is_empty() {
            return Err("`${ctx.}` needs a context key".into());
        }
        return Ok(Var::Ctx(key.to_string()));
    }
    RequestVar::ALL
        .into_iter()
        .find(|v| v.name() == name)
        .map(Var::Request)
        .ok_or_else(|| {
            format!(
                "unknown placeholder `${{{name}}}` (use ctx.KEY, route, client_ip, method or path)"
            )
        })
}
