//! Reading a verified token's claims: lookups, list-like claims (scopes,
//! roles), a route's requirements, and claim values as header text.

use serde_json::{Map, Value};

/// A verified token's claims.
pub type Claims = Map<String, Value>;

/// A claim by name: a top-level claim first (names such as
/// `https://example.com/roles` contain dots), else a dotted path into nested
/// objects (`realm_access.roles`). A `null` claim counts as absent.
pub fn lookup<'a>(claims: &'a Claims, name: &str) -> Option<&'a Value> {
    let found = match claims.get(name) {
        Some(value) => Some(value),
        None => {
            let mut parts = name.split('.');
            let first = claims.get(parts.next()?)?;
            parts.try_fold(first, |value, part| value.get(part))
        }
    };
    found.filter(|value| !value.is_null())
}

/// The members of a list-like claim: a space-separated string (OAuth `scope`)
/// or an array of strings (`scp`, `roles`). Anything else has none.
pub fn words(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => s.split_whitespace().collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A claim as header or context text: a string as it is, anything else as
/// compact JSON. `None` for a value that may not go into a header (control
/// characters), so a claim can never inject a header line.
pub fn as_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let safe = !text.chars().any(|c| c.is_control() && c != '\t');
    safe.then_some(text)
}

/// The first of `names` present in the claims, as a list.
pub fn members<'a>(claims: &'a Claims, names: &[&str]) -> Vec<&'a str> {
    names
        .iter()
        .find_map(|name| lookup(claims, name))
        .map(words)
        .unwrap_or_default()
}
