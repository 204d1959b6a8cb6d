//! JSON body edits: fields by dotted path, wrapping and unwrapping.

use crate::template::{Lookup, Missing, RequestVar, Template};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Body edits as configured. Applied as: unwrap, remove, rename, set, add, wrap.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BodyConfig {
    /// A body that is not JSON is refused (400 for a request, 502 for a
    /// response) instead of passing untouched.
    pub require_json: bool,
    /// Replace the body with the value at this path, when present.
    pub unwrap: Option<String>,
    /// Remove these fields.
    pub remove: Vec<String>,
    /// Move a field to another path.
    pub rename: BTreeMap<String, String>,
    /// Set a field, replacing any value; strings are templates.
    pub set: BTreeMap<String, Value>,
    /// Set a field only when it is absent; strings are templates.
    pub add: BTreeMap<String, Value>,
    /// Put the whole body under this path of a new object.
    pub wrap: Option<String>,
}

/// A dotted path (`user.address.city`) into nested objects.
#[derive(Debug, Clone)]
struct FieldPath(Vec<String>);

impl FieldPath {
    fn parse(field: &str, text: &str) -> Result<FieldPath, String> {
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "{field}: `{text}` is not a dotted path of non-empty names"
            ));
        }
        Ok(FieldPath(segments))
    }

    /// The object holding the last segment; created on the way when `create`.
    fn parent_mut<'a>(
        &self,
        root: &'a mut Value,
        create: bool,
    ) -> Option<&'a mut Map<String, Value>> {
        let (_, parents) = self.0.split_last()?;
        let mut node = root.as_object_mut()?;
        for name in parents {
            if create && !node.contains_key(name) {
                node.insert(name.clone(), Value::Object(Map::new()));
            }
            node = node.get_mut(name)?.as_object_mut()?;
        }
        Some(node)
    }

    fn leaf(&self) -> &str {
        self.0.last().expect("a path has a segment")
    }

    fn take(&self, root: &mut Value) -> Option<Value> {
        self.parent_mut(root, false)?.remove(self.leaf())
    }

    fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(root, |node, name| node.get(name))
    }

    /// Puts `value` at the path (creating objects on the way); an existing
    /// value is kept unless `replace`. Nothing happens under a non-object.
    fn put(&self, root: &mut Value, value: Value, replace: bool) {
        if let Some(parent) = self.parent_mut(root, true) {
            if replace || !parent.contains_key(self.leaf()) {
                parent.insert(self.leaf().to_string(), value);
            }
        }
    }
}

/// A configured field value: literal JSON, or a string template.
#[derive(Debug)]
enum FieldValue {
    Literal(Value),
    Template(Template),
}

impl FieldValue {
    fn new(field: &str, value: Value) -> Result<FieldValue, String> {
        match value {
            Value::String(text) if text.contains('$') => Template::parse(&text)
                .map(FieldValue::Template)
                .map_err(|e| format!("{field}: {e}")),
            other => Ok(FieldValue::Literal(other)),
        }
    }

    fn render(&self, lookup: &dyn Lookup, missing: Missing) -> Option<Value> {
        match self {
            FieldValue::Literal(value) => Some(value.clone()),
            FieldValue::Template(t) => t.render(lookup, missing).map(Value::String),
        }
    }
}

/// What became of a body.
#[derive(Debug, PartialEq)]
pub enum BodyOutcome {
    /// Not JSON (or nothing to do): left as it is.
    Untouched,
    /// The edited JSON.
    Replaced(Vec<u8>),
    /// Not JSON although `require_json` is set.
    Invalid,
}

/// Body edits ready to apply.
#[derive(Debug, Default)]
pub struct BodyRules {
    require_json: bool,
    unwrap: Option<FieldPath>,
    remove: Vec<FieldPath>,
    rename: Vec<(FieldPath, FieldPath)>,
    set: Vec<(FieldPath, FieldValue)>,
    add: Vec<(FieldPath, FieldValue)>,
    wrap: Option<FieldPath>,
}

fn values(
    field: &str,
    map: BTreeMap<String, Value>,
) -> Result<Vec<(FieldPath, FieldValue)>, String> {
    map.into_iter()
        .map(|(path, value)| {
            let f = format!("{field}.{path}");
            Ok((FieldPath::parse(field, &path)?, FieldValue::new(&f, value)?))
        })
        .collect()
}

impl BodyRules {
    /// Validates `config`; `field` (e.g. `request.body`) prefixes errors.
    pub fn new(field: &str, config: BodyConfig) -> Result<BodyRules, String> {
        let path = |name: &str, text: &str| FieldPath::parse(&format!("{field}.{name}"), text);
        Ok(BodyRules {
            require_json: config.require_json,
            unwrap: config.unwrap.map(|p| path("unwrap", &p)).transpose()?,
            remove: config
                .remove
                .iter()
                .map(|p| path("remove", p))
                .collect::<Result<_, _>>()?,
            rename: config
                .rename
                .iter()
                .map(|(old, new)| Ok((path("rename", old)?, path("rename", new)?)))
                .collect::<Result<_, String>>()?,
            set: values(&format!("{field}.set"), config.set)?,
            add: values(&format!("{field}.add"), config.add)?,
            wrap: config.wrap.map(|p| path("wrap", &p)).transpose()?,
        })
    }

    /// True when the body is never looked at: the host need not buffer it.
    pub fn is_empty(&self) -> bool {
        !self.require_json
            && self.unwrap.is_none()
            && self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
            && self.wrap.is_none()
    }

    /// The request properties the values read.
    pub fn request_vars(&self) -> impl Iterator<Item = RequestVar> + '_ {
        self.set
            .iter()
            .chain(&self.add)
            .filter_map(|(_, v)| match v {
                FieldValue::Template(t) => Some(t),
                FieldValue::Literal(_) => None,
            })
            .flat_map(Template::request_vars)
    }

    /// Edits `body`, whose media type is `content_type`. Only JSON is
    /// edited: a JSON (or untyped) body that parses; with `require_json`,
    /// any non-empty body must parse.
    pub fn apply(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        lookup: &dyn Lookup,
        missing: Missing,
    ) -> BodyOutcome {
        if body.is_empty() || (!self.require_json && !content_type.is_none_or(is_json_type)) {
            return BodyOutcome::Untouched;
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => {
                BodyOutcome::Replaced(self.edit(value, lookup, missing).to_string().into_bytes())
            }
            Err(_) if self.require_json => BodyOutcome::Invalid,
            Err(_) => BodyOutcome::Untouched,
        }
    }

    fn edit(&self, mut value: Value, lookup: &dyn Lookup, missing: Missing) -> Value {
        if let Some(inner) = self.unwrap.as_ref().and_then(|p| p.get(&value)) {
            value = inner.clone();
        }
        for path in &self.remove {
            path.take(&mut value);
        }
        for (old, new) in &self.rename {
            if let Some(moved) = old.take(&mut value) {
                new.put(&mut value, moved, true);
            }
        }
        for (path, field) in &self.set {
            if let Some(v) = field.render(lookup, missing) {
                path.put(&mut value, v, true);
            }
        }
        for (path, field) in &self.add {
            if let Some(v) = field.render(lookup, missing) {
                path.put(&mut value, v, false);
            }
        }
        match &self.wrap {
            Some(path) => {
                let mut outer = Value::Object(Map::new());
                path.put(&mut outer, value, true);
                outer
            }
            None => value,
        }
    }
}

/// `application/json` or any `+json` media type, parameters ignored.
pub fn is_json_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media.ends_with("+json")
}
