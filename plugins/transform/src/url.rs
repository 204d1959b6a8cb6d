//! Path rewrites and query-parameter edits.

use crate::template::{Lookup, Missing, Template};
use regex_lite::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use wasmgate_plugin_sdk::template::{decode_form, encode_component};

/// Path rewrites as configured. Applied as: strip_prefix, replace (in
/// order), add_prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathConfig {
    /// Removed when the path is this prefix or continues with `/` after it.
    pub strip_prefix: Option<String>,
    /// Regex replacements, every match; `with` may use `$1` / `${name}`.
    pub replace: Vec<ReplaceConfig>,
    /// Put in front of the path.
    pub add_prefix: Option<String>,
}

/// One regex replacement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceConfig {
    pub pattern: String,
    pub with: String,
}

/// Path rewrites ready to apply.
#[derive(Debug, Default)]
pub struct PathRules {
    strip_prefix: Option<String>,
    replace: Vec<(Regex, String)>,
    add_prefix: Option<String>,
}

fn check_prefix(field: &str, prefix: Option<String>) -> Result<Option<String>, String> {
    match prefix {
        Some(p) if !p.starts_with('/') || p.len() < 2 => Err(format!(
            "{field}: `{p}` must start with `/` and name at least one character"
        )),
        Some(p) => Ok(Some(p.trim_end_matches('/').to_string())),
        None => Ok(None),
    }
}

impl PathRules {
    /// Validates `config`: prefixes start with `/`, patterns compile.
    pub fn new(config: PathConfig) -> Result<PathRules, String> {
        let replace = config
            .replace
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Regex::new(&r.pattern)
                    .map(|re| (re, r.with))
                    .map_err(|e| format!("request.path.replace[{i}].pattern: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(PathRules {
            strip_prefix: check_prefix("request.path.strip_prefix", config.strip_prefix)?,
            replace,
            add_prefix: check_prefix("request.path.add_prefix", config.add_prefix)?,
        })
    }

    /// The rewritten path, or `None` when it is unchanged.
    pub fn rewrite(&self, path: &str) -> Option<String> {
        let mut out = path.to_string();
        if let Some(prefix) = &self.strip_prefix {
            out = strip_segment_prefix(&out, prefix).unwrap_or(out);
        }
        for (pattern, with) in &self.replace {
            out = pattern.replace_all(&out, with.as_str()).into_owned();
        }
        if let Some(prefix) = &self.add_prefix {
            out = if out == "/" {
                prefix.clone()
            } else {
                format!("{prefix}{out}")
            };
        }
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        (out != path).then_some(out)
    }
}

/// `path` without `prefix` when the prefix ends at a segment boundary
/// (`/api` strips `/api` and `/api/x`, not `/apix`); `/` when nothing is left.
fn strip_segment_prefix(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    match rest {
        "" => Some("/".into()),
        r if r.starts_with('/') => Some(r.to_string()),
        _ => None,
    }
}

/// Query edits as configured. Applied as: remove, set, add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Append `name=value` (a template), keeping existing ones.
    pub add: BTreeMap<String, String>,
    /// Replace every `name` parameter with one `name=value` (a template).
    pub set: BTreeMap<String, String>,
    /// Remove every parameter with this name.
    pub remove: Vec<String>,
}

/// Query edits ready to apply.
#[derive(Debug, Default)]
pub struct QueryRules {
    add: Vec<(String, Template)>,
    set: Vec<(String, Template)>,
    remove: Vec<String>,
}

fn query_templates(
    field: &str,
    map: BTreeMap<String, String>,
) -> Result<Vec<(String, Template)>, String> {
    map.into_iter()
        .map(|(name, value)| {
            if name.is_empty() {
                return Err(format!("{field}: a parameter name must not be empty"));
            }
            let template = Template::parse(&value).map_err(|e| format!("{field}.{name}: {e}"))?;
            Ok((name, template))
        })
        .collect()
}

impl QueryRules {
    /// Validates `config`: names are not empty, values parse.
    pub fn new(config: QueryConfig) -> Result<QueryRules, String> {
        if config.remove.iter().any(String::is_empty) {
            return Err("request.query.remove: a parameter name must not be empty".into());
        }
        Ok(QueryRules {
            add: query_templates("request.query.add", config.add)?,
            set: query_templates("request.query.set", config.set)?,
            remove: config.remove,
        })
    }

    /// The edited raw query (`""` for none left), or `None` when unchanged.
    pub fn rewrite(
        &self,
        query: Option<&str>,
        lookup: &dyn Lookup,
        missing: Missing,
    ) -> Option<String> {
        let original = query.unwrap_or_default();
        let mut pairs: Vec<String> = original
            .split('&')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        pairs.retain(|pair| {
            let name = decode_form(pair.split('=').next().unwrap_or_default());
            !self.remove.contains(&name) && !self.set.iter().any(|(n, _)| *n == name)
        });
        for (name, template) in self.set.iter().chain(&self.add) {
            if let Some(value) = template.render(lookup, missing) {
                pairs.push(format!(
                    "{}={}",
                    encode_component(name),
                    encode_component(&value)
                ));
            }
        }
        let out = pairs.join("&");
        (out != original).then_some(out)
    }
}
