//! `headers`: add, set, remove and rename request and response headers from config.
//!
//! ```yaml
//! - name: headers
//!   config:
//!     request:  { add: {x-gateway: wasmgate}, set: {}, remove: [x-internal], rename: {x-old: x-new} }
//!     response: { add: {x-served-by: wasmgate}, remove: [server] }
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use wasmgate_plugin_sdk::prelude::*;

/// Edits for one direction. Applied as: rename, remove, set, add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Edits {
    /// Append a value, keeping existing ones.
    pub add: BTreeMap<String, String>,
    /// Replace every value.
    pub set: BTreeMap<String, String>,
    /// Remove entirely.
    pub remove: Vec<String>,
    /// Move values from the old name to the new one.
    pub rename: BTreeMap<String, String>,
}

impl Edits {
    fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.set.is_empty()
            && self.remove.is_empty()
            && self.rename.is_empty()
    }

    fn check(&self, direction: &str) -> Result<(), String> {
        let names = self
            .add
            .keys()
            .chain(self.set.keys())
            .chain(&self.remove)
            .chain(self.rename.keys())
            .chain(self.rename.values());
        for name in names {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                return Err(format!("{direction}: `{name}` is not a valid header name"));
            }
        }
        for (name, value) in self.add.iter().chain(&self.set) {
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!(
                    "{direction}: value of `{name}` contains a control character"
                ));
            }
        }
        Ok(())
    }

    /// The header edits for a message carrying `headers`.
    fn changes(&self, headers: &[(String, String)]) -> wasmgate_plugin_sdk::HeaderChanges {
        let mut changes = wasmgate_plugin_sdk::HeaderChanges::new();
        for (old, new) in &self.rename {
            let values: Vec<&String> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(old))
                .map(|(_, v)| v)
                .collect();
            if !values.is_empty() {
                changes.remove.push(old.to_ascii_lowercase());
                changes.remove.push(new.to_ascii_lowercase());
                changes.append.extend(
                    values
                        .into_iter()
                        .map(|v| (new.to_ascii_lowercase(), v.clone())),
                );
            }
        }
        changes
            .remove
            .extend(self.remove.iter().map(|n| n.to_ascii_lowercase()));
        changes.set.extend(
            self.set
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone())),
        );
        changes.append.extend(
            self.add
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone())),
        );
        changes
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub request: Edits,
    pub response: Edits,
}

pub struct Headers(Config);

impl Plugin for Headers {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        config.request.check("request")?;
        config.response.check("response")?;
        Ok(Headers(config))
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: false,
            wants_response: !self.0.response.is_empty(),
            wants_response_body: false,
        }
    }

    /// Only renames read values; everything else is a blind edit.
    fn header_interest(&self) -> Option<Vec<String>> {
        let renamed = self
            .0
            .request
            .rename
            .keys()
            .chain(self.0.response.rename.keys());
        Some(renamed.cloned().collect())
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let mut changes = RequestChanges::new();
        changes.headers = self.0.request.changes(&request.headers);
        RequestAction::Continue(changes)
    }

    fn on_response(&self, response: &Response) -> ResponseChanges {
        let mut changes = ResponseChanges::new();
        changes.headers = self.0.response.changes(&response.headers);
        changes
    }
}

export_plugin!(Headers);
