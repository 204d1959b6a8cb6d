//! The route entry's config and its validation: every refusal names the field.

use crate::origin::OriginPattern;
use serde::Deserialize;

/// The plugin's config as written in the route entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Allowed origins: `https://app.example.com`, `*.example.com`,
    /// `https://*.example.com:8443`, or `*`.
    pub origins: Vec<String>,
    /// Methods a cross-origin request may use (default GET, HEAD, POST);
    /// `["*"]`: any.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Request headers it may send; `["*"]`: any it asks for.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers the browser may show to the page's script.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow cookies and HTTP auth (`Access-Control-Allow-Credentials: true`).
    #[serde(default)]
    pub credentials: bool,
    /// How long a browser may reuse a preflight answer.
    #[serde(default)]
    pub max_age_seconds: Option<u32>,
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}

/// A list that is either "anything" (`["*"]`) or these names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameList {
    Any,
    Only(Vec<String>),
}

impl NameList {
    /// Whether `name` is in the list (`Any` holds everything).
    pub fn allows(&self, name: &str) -> bool {
        match self {
            NameList::Any => true,
            NameList::Only(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

/// The validated config.
pub struct Policy {
    pub origins: Vec<OriginPattern>,
    pub methods: NameList,
    pub headers: NameList,
    pub expose_headers: Vec<String>,
    pub credentials: bool,
    pub max_age_seconds: Option<u32>,
}

impl Config {
    /// The validated policy, or the first field that is wrong.
    pub fn policy(self) -> Result<Policy, String> {
        if self.origins.is_empty() {
            return Err("origins: must list at least one origin".into());
        }
        let origins = self
            .origins
            .iter()
            .enumerate()
            .map(|(i, text)| {
                OriginPattern::parse(text).ok_or_else(|| {
                    format!("origins[{i}]: `{text}` is not an origin like https://app.example.com, *.example.com or *")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.credentials && origins.contains(&OriginPattern::Any) {
            return Err(
                "origins: `*` cannot be combined with credentials: true (list the origins)".into(),
            );
        }
        let methods = name_list("methods", &self.methods)?;
        if methods == NameList::Only(Vec::new()) {
            return Err("methods: must list at least one method".into());
        }
        let headers = name_list("headers", &self.headers)?;
        let expose_headers = names("expose_headers", &self.expose_headers)?;
        Ok(Policy {
            origins,
            methods,
            headers,
            expose_headers,
            credentials: self.credentials,
            max_age_seconds: self.max_age_seconds,
        })
    }
}

/// `["*"]` is [`NameList::Any`]; anything else must be valid names.
fn name_list(field: &str, list: &[String]) -> Result<NameList, String> {
    if list.len() == 1 && list[0] == "*" {
        return Ok(NameList::Any);
    }
    names(field, list).map(NameList::Only)
}

/// Validates a list of HTTP tokens: methods upper-cased, headers lower-cased.
fn names(field: &str, list: &[String]) -> Result<Vec<String>, String> {
    list.iter()
        .enumerate()
        .map(|(i, name)| {
            if !is_token(name) {
                return Err(format!("{field}[{i}]: `{name}` is not a valid name"));
            }
            Ok(if field == "methods" {
                name.to_ascii_uppercase()
            } else {
                name.to_ascii_lowercase()
            })
        })
        .collect()
}

/// An HTTP token (RFC 9110 §5.6.2), what methods and header names are.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b))
}
