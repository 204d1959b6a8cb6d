//! Identity headers: request headers a plugin entry writes to tell the
//! upstream who the caller is (`api-key`'s `x-consumer`, the claims
//! `jwt-auth` copies into headers, ...).
//!
//! An upstream trusts such a header because it believes only the gateway
//! sets it. That holds only if the gateway also removes a copy the client
//! sent, on *every* route: on a route without the auth plugin nothing would
//! overwrite it, and even on a route with it the plugins before the auth
//! plugin would see the forged value. So the gateway strips the names of the
//! top-level `strip_request_headers` from every client request before
//! routing; unset, that list is every identity header any configured plugin
//! entry writes ([`derived`]). [`unstripped`] finds the entries whose header
//! an explicit list leaves out, for `wasmgate validate` to warn about.

use crate::config::{Config, PluginEntry};
use http::header::{HeaderMap, HeaderName};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;

/// The plugin-config field by which any plugin entry (a third-party plugin
/// too) declares the identity headers it writes: `identity_headers: [..]`.
pub const CONFIG_FIELD: &str = "identity_headers";

/// The identity headers one plugin entry writes, lower-cased.
///
/// Built-in plugins are read from their own config fields (with their
/// defaults); any entry may also declare `config.identity_headers: [..]`.
/// Names that are not valid header names are left out: the plugin itself
/// refuses such a config.
pub fn written_by(entry: &PluginEntry) -> BTreeSet<String> {
    let config = &entry.config;
    let mut names: Vec<&str> = Vec::new();
    match entry.name.as_str() {
        // Always sets the consumer header, `x-consumer` unless configured.
        "api-key" => names.push(
            config
                .get("consumer_header")
                .and_then(Value::as_str)
                .unwrap_or("x-consumer"),
        ),
        // `claims_to_headers: { claim: header }`.
        "jwt-auth" => {
            if let Some(Value::Object(map)) = config.get("claims_to_headers") {
                names.extend(map.values().filter_map(Value::as_str));
            }
        }
        // Sets `consumer_header` only when configured.
        "hmac-signature" => names.extend(config.get("consumer_header").and_then(Value::as_str)),
        // Request headers templated from the context (`${ctx.consumer}`) carry
        // what an auth plugin put there.
        "transform" => {
            let headers = config.pointer("/request/headers");
            for edit in ["set", "add"] {
                let Some(Value::Object(map)) = headers.and_then(|h| h.get(edit)) else {
                    continue;
                };
                names.extend(
                    map.iter()
                        .filter(|(_, v)| v.as_str().is_some_and(|v| v.contains("${ctx.")))
                        .map(|(name, _)| name.as_str()),
                );
            }
        }
        _ => {}
    }
    names.extend(declared(entry).unwrap_or_default());
    names
        .into_iter()
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .map(|n| n.as_str().to_string())
        .collect()
}

/// `config.identity_headers` as written; `Err` when present but not a list
/// of strings (a config error: a security declaration is never ignored).
pub fn declared(entry: &PluginEntry) -> Result<Vec<&str>, String> {
    match entry.config.get(CONFIG_FIELD) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v.as_str() {
                Some(name) if HeaderName::from_bytes(name.as_bytes()).is_ok() => Ok(name),
                Some(name) => Err(format!("`{name}` is not a valid header name")),
                None => Err(format!("`{v}` is not a header name")),
            })
            .collect(),
        Some(other) => Err(format!("must be a list of header names, not `{other}`")),
    }
}

/// Every identity header any plugin entry of `config` writes: the default
/// of `strip_request_headers`.
pub fn derived(config: &Config) -> BTreeSet<String> {
    config
        .routes
        .iter()
        .flat_map(|r| &r.plugins)
        .flat_map(written_by)
        .collect()
}

/// The names stripped from every client request: the explicit
/// `strip_request_headers`, else [`derived`].
pub fn effective(config: &Config) -> BTreeSet<String> {
    match &config.strip_request_headers {
        Some(names) => names
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .map(|n| n.as_str().to_string())
            .collect(),
        None => derived(config),
    }
}

/// A plugin entry writing an identity header an explicit
/// `strip_request_headers` does not list: a client can send that header
/// itself and the upstream cannot tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstripped {
    pub route: String,
    pub plugin: String,
    pub header: String,
}

impl fmt::Display for Unstripped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "route `{}`: plugin `{}` writes identity header `{}`, which strip_request_headers does not list: a client-sent `{}` reaches upstreams (and earlier plugins) as if the gateway had set it",
            self.route, self.plugin, self.header, self.header
        )
    }
}

/// What an explicit `strip_request_headers` lets through; empty when the
/// list is the derived default.
pub fn unstripped(config: &Config) -> Vec<Unstripped> {
    if config.strip_request_headers.is_none() {
        return Vec::new();
    }
    let stripped = effective(config);
    let mut found = Vec::new();
    for route in &config.routes {
        for entry in &route.plugins {
            for header in written_by(entry) {
                if !stripped.contains(&header) {
                    found.push(Unstripped {
                        route: route.name.clone(),
                        plugin: entry.name.clone(),
                        header,
                    });
                }
            }
        }
    }
    found
}

/// The headers one gateway generation strips, parsed once.
#[derive(Debug, Default, Clone)]
pub struct StripList(Box<[HeaderName]>);

impl StripList {
    pub fn new(config: &Config) -> StripList {
        StripList(
            effective(config)
                .into_iter()
                .filter_map(|n| HeaderName::try_from(n).ok())
                .collect(),
        )
    }

    /// Removes every listed header (all its values); nothing to do when empty.
    pub fn strip(&self, headers: &mut HeaderMap) {
        for name in self.0.iter() {
            headers.remove(name);
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(HeaderName::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str, plugins: &str) -> Config {
        let text = format!(
            "listeners: [{{ address: '127.0.0.1:0' }}]\nupstreams:\n  a: {{ targets: ['127.0.0.1:1'] }}\n{extra}routes:\n  - name: r\n    upstream: a\n    plugins:\n{plugins}  - name: open\n    upstream: a\n"
        );
        Config::parse(&text, Path::new("gw.yaml"), Path::new(".")).unwrap()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_built_in_identity_writer_and_declared_headers_are_derived() {
        let plugins = "      - name: api-key
        config: { keys: [] }
      - name: jwt-auth
        config: { claims_to_headers: { sub: X-User-Id, tenant.id: x-tenant } }
      - name: hmac-signature
        config: { keys: [], consumer_header: x-partner }
      - name: transform
        config:
          request: { headers: { set: { x-who: '${ctx.consumer}', x-static: v }, add: { x-cn: 'cn=${ctx.tls.client.cn}' } } }
          response: { headers: { set: { x-resp: '${ctx.consumer}' } } }
      - name: third-party
        config: { identity_headers: [X-Tenant-Id] }
      - name: headers
        config: { request: { set: { x-gateway: wasmgate } } }
";
        let config = config("", plugins);
        assert_eq!(
            derived(&config),
            set(&[
                "x-cn",
                "x-consumer",
                "x-partner",
                "x-tenant",
                "x-tenant-id",
                "x-user-id",
                "x-who"
            ])
        );
        let strip = StripList::new(&config);
        let mut headers = HeaderMap::new();
        headers.append("x-consumer", "alice".parse().unwrap());
        headers.append("x-consumer", "bob".parse().unwrap());
        headers.insert("x-user-id", "1".parse().unwrap());
        headers.insert("x-gateway", "kept".parse().unwrap());
        strip.strip(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-gateway"));
        assert!(unstripped(&config).is_empty(), "the default lists them all");
    }

    #[test]
    fn defaults_apply_and_optional_writers_write_nothing() {
        let plugins = "      - name: api-key
        config: { keys: [], consumer_header: X-Key-Owner }
      - name: hmac-signature
        config: { keys: [] }
      - name: jwt-auth
        config: { keys: [] }
";
        assert_eq!(derived(&config("", plugins)), set(&["x-key-owner"]));
        let plain = "      - name: api-key\n        config: { keys: [] }\n";
        assert_eq!(derived(&config("", plain)), set(&["x-consumer"]));
        assert!(derived(&config("", "      - name: headers\n")).is_empty());
        assert!(StripList::new(&config("", "      - name: headers\n"))
            .names()
            .next()
            .is_none());
    }

    #[test]
    fn an_explicit_list_replaces_the_default_and_gaps_are_reported() {
        let plugins = "      - name: api-key\n        config: { keys: [] }\n      - name: jwt-auth\n        config: { claims_to_headers: { sub: x-user-id } }\n";
        let explicit = config("strip_request_headers: [X-User-Id, x-internal]\n", plugins);
        assert_eq!(effective(&explicit), set(&["x-internal", "x-user-id"]));
        let gaps = unstripped(&explicit);
        assert_eq!(
            gaps,
            [Unstripped {
                route: "r".into(),
                plugin: "api-key".into(),
                header: "x-consumer".into()
            }]
        );
        assert!(gaps[0]
            .to_string()
            .contains("route `r`: plugin `api-key` writes identity header `x-consumer`"));
        let none = config("strip_request_headers: []\n", plugins);
        assert_eq!(unstripped(&none).len(), 2);
        assert!(StripList::new(&none).names().next().is_none());
    }
}
