//! Header edits with templated values, for either direction.

use crate::template::{Lookup, Missing, RequestVar, Template};
use serde::Deserialize;
use std::collections::BTreeMap;
use wasmgate_plugin_sdk::{log, HeaderChanges, LogLevel};

/// Header edits as configured. Applied as: rename, remove, set, add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderConfig {
    /// Append a value (a template), keeping existing ones.
    pub add: BTreeMap<String, String>,
    /// Replace every value with this one (a template).
    pub set: BTreeMap<String, String>,
    /// Remove entirely.
    pub remove: Vec<String>,
    /// Move the values of the old name to the new one.
    pub rename: BTreeMap<String, String>,
}

/// Header edits ready to apply: names lower-cased, values parsed.
#[derive(Debug, Default)]
pub struct HeaderRules {
    add: Vec<(String, Template)>,
    set: Vec<(String, Template)>,
    remove: Vec<String>,
    rename: Vec<(String, String)>,
}

fn check_name(field: &str, name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!("{field}: `{name}` is not a valid header name"))
    }
}

fn templates(
    field: &str,
    map: BTreeMap<String, String>,
) -> Result<Vec<(String, Template)>, String> {
    map.into_iter()
        .map(|(name, value)| {
            let name = check_name(field, &name)?;
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!(
                    "{field}.{name}: value contains a control character"
                ));
            }
            let template = Template::parse(&value).map_err(|e| format!("{field}.{name}: {e}"))?;
            Ok((name, template))
        })
        .collect()
}

impl HeaderRules {
    /// Validates `config`; `field` (e.g. `request.headers`) prefixes errors.
    pub fn new(field: &str, config: HeaderConfig) -> Result<HeaderRules, String> {
        let remove = config
            .remove
            .iter()
            .map(|n| check_name(&format!("{field}.remove"), n))
            .collect::<Result<_, _>>()?;
        let rename = config
            .rename
            .iter()
            .map(|(old, new)| {
                let f = format!("{field}.rename");
                Ok((check_name(&f, old)?, check_name(&f, new)?))
            })
            .collect::<Result<_, String>>()?;
        Ok(HeaderRules {
            add: templates(&format!("{field}.add"), config.add)?,
            set: templates(&format!("{field}.set"), config.set)?,
            remove,
            rename,
        })
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.set.is_empty()
            && self.remove.is_empty()
            && self.rename.is_empty()
    }

    /// The header names these edits read: the sources of renames.
    pub fn reads(&self) -> impl Iterator<Item = &String> + '_ {
        self.rename.iter().map(|(old, _)| old)
    }

    /// The request properties the values read.
    pub fn request_vars(&self) -> impl Iterator<Item = RequestVar> + '_ {
        self.add
            .iter()
            .chain(&self.set)
            .flat_map(|(_, t)| t.request_vars())
    }

    /// The edits for a message carrying `headers`.
    pub fn changes(
        &self,
        headers: &[(String, String)],
        lookup: &dyn Lookup,
        missing: Missing,
    ) -> HeaderChanges {
        let mut changes = HeaderChanges::new();
        for (old, new) in &self.rename {
            let values: Vec<&String> = headers
                .iter()
                .filter(|(n, _)| n == old)
                .map(|(_, v)| v)
                .collect();
            if !values.is_empty() {
                changes.remove.extend([old.clone(), new.clone()]);
                changes
                    .append
                    .extend(values.into_iter().map(|v| (new.clone(), v.clone())));
            }
        }
        changes.remove.extend(self.remove.iter().cloned());
        changes.set.extend(render_all(&self.set, lookup, missing));
        changes
            .append
            .extend(render_all(&self.add, lookup, missing));
        changes
    }
}

/// Renders each value; one that is skipped, or that a context value made
/// invalid (a line break), is left out.
fn render_all(
    rules: &[(String, Template)],
    lookup: &dyn Lookup,
    missing: Missing,
) -> Vec<(String, String)> {
    rules
        .iter()
        .filter_map(|(name, template)| {
            let value = template.render(lookup, missing)?;
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                log::log(
                    LogLevel::Warn,
                    "templated header value contains a control character; left out",
                    &[("header", name)],
                );
                return None;
            }
            Some((name.clone(), value))
        })
        .collect()
}
