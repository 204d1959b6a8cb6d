//! `cache`: answers repeated `GET`/`HEAD` requests from the gateway's shared
//! kv store instead of the upstream.
//!
//! ```yaml
//! - name: cache
//!   config:
//!     ttl_seconds: 60           # at most; a shorter Cache-Control max-age wins
//!     vary: [accept-language]   # request headers that are part of the key
//!     statuses: [200]           # what may be stored (default)
//!     max_body_bytes: 1048576   # larger bodies pass through (default 1 MiB)
//!     max_entry_bytes: 2097152  # larger entries (key + response) pass through (default 2 MiB)
//!     cache_authorized: false   # requests with Authorization bypass (default)
//!     shared: false             # entries are per consumer (default)
//!     vary_context: [tenant]    # request-context keys that are part of the key
//! ```
//!
//! The key is route, method, host, path, query, the `vary` headers and the
//! `vary_context` values, and — unless `shared: true` — the identity of the
//! caller: the request-context `consumer` an auth plugin before `cache` set,
//! and a digest of `Authorization` when `cache_authorized`. So one consumer's
//! response is never another's. An identity set only *after* the request
//! hook (auth placed after `cache`) means nothing is stored. A hit
//! is answered by the request hook with the stored status, headers and body
//! plus `X-Cache: HIT` and `Age`; a miss goes upstream and the response hook
//! stores what may be stored (`X-Cache: MISS`). Responses with `no-store`,
//! `private`, `no-cache`, `Set-Cookie` or a `Vary` outside `vary` are never
//! stored. See README.md.

pub mod config;
pub mod entry;
pub mod policy;

use config::Config;
use entry::Entry;
use policy::Policy;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmgate_plugin_sdk::prelude::*;
use wasmgate_plugin_sdk::LogLevel;

/// Context key carrying a miss's cache key to the response hook.
const CTX_KEY: &str = "cache.key";
/// Context key carrying the identity the request hook saw to the response hook.
const CTX_SCOPE: &str = "cache.scope";
/// The request-context key auth plugins put the caller's name in.
const CONSUMER: &str = "consumer";

/// The plugin: its storing policy, whether authorized requests count, and
/// whose entries are kept apart.
pub struct Cache {
    policy: Policy,
    cache_authorized: bool,
    shared: bool,
    vary_context: Vec<String>,
}

impl Cache {
    /// Only safe methods are cached, and requests with credentials only when
    /// the config says so.
    fn cacheable(&self, request: &Request) -> bool {
        matches!(request.method.as_str(), "GET" | "HEAD")
            && (self.cache_authorized || request.header("authorization").is_none())
    }

    /// The request-context values an entry depends on: `consumer` and the
    /// `vary_context` keys. Read by both hooks: when a plugin between them
    /// changed one (an auth plugin placed after `cache`), a hit would skip
    /// that plugin, so the response is not stored.
    fn context_scope(&self) -> Vec<Option<String>> {
        std::iter::once(CONSUMER)
            .chain(self.vary_context.iter().map(String::as_str))
            .map(context::get)
            .collect()
    }

    /// The entry's key: a JSON array, so no component can run into the next.
    /// `scope` is [`Cache::context_scope`]; the consumer in it and the
    /// credentials count only when entries are not `shared`.
    fn key(&self, request: &Request, scope: &[Option<String>]) -> String {
        let (consumer, vary_context) = scope.split_first().expect("consumer comes first");
        let (consumer, credential) = if self.shared {
            (None, None)
        } else {
            (consumer.as_deref(), self.credential(request))
        };
        let vary: Vec<String> = self
            .policy
            .vary
            .iter()
            .map(|name| all_values(&request.headers, name))
            .collect();
        serde_json::json!([
            request.route,
            request.method,
            request
                .header("host")
                .unwrap_or_default()
                .to_ascii_lowercase(),
            request.path,
            request.query,
            vary,
            vary_context,
            consumer,
            credential,
        ])
        .to_string()
    }

    /// A digest of the `Authorization` values of a request the config lets
    /// through with them (the raw credential never becomes a kv key).
    fn credential(&self, request: &Request) -> Option<String> {
        if !self.cache_authorized || request.header("authorization").is_none() {
            return None;
        }
        let digest = Sha256::digest(all_values(&request.headers, "authorization"));
        Some(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The stored entry for `key`; a kv failure (Redis down or slow) or an
    /// unreadable entry is a miss.
    fn lookup(&self, key: &str) -> Option<Entry> {
        match kv::get(key) {
            Ok(stored) => stored.as_deref().and_then(Entry::decode),
            Err(error) => {
                kv_failed("get", "cache lookup failed", &error);
                None
            }
        }
    }

    /// Stores `response` under `key` if its headers allow it.
    fn store(&self, key: &str, response: &Response) {
        let body = response.body.as_deref().unwrap_or_default();
        let Some(ttl_ms) = self
            .policy
            .ttl_ms(response.status, &response.headers, body.len())
        else {
            return;
        };
        let entry = Entry {
            stored_at_ms: now_ms(),
            status: response.status,
            headers: response.headers.clone(),
            body: body.to_vec(),
        };
        let ttl = Some(Duration::from_millis(ttl_ms));
        let encoded = entry.encode();
        if key.len() + encoded.len() > self.policy.max_entry_bytes {
            return;
        }
        if let Err(error) = kv::set(key, &encoded, ttl) {
            kv_failed("set", "cache store failed", &error);
        }
    }
}

/// A stored entry as the answer to a hit, with its age.
fn hit(entry: Entry) -> Response {
    let age = policy::age_secs(&entry.headers) + now_ms().saturating_sub(entry.stored_at_ms) / 1000;
    let mut headers: Vec<(String, String)> = entry
        .headers
        .into_iter()
        .filter(|(n, _)| n != "age" && n != "x-cache")
        .collect();
    headers.push(("age".into(), age.to_string()));
    headers.push(("x-cache".into(), "HIT".into()));
    Response {
        status: entry.status,
        headers,
        body: Some(entry.body),
    }
}

impl Plugin for Cache {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Cache {
            policy: config.policy()?,
            cache_authorized: config.cache_authorized,
            shared: config.shared,
            vary_context: config.vary_context,
        })
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: false,
            wants_response: true,
            wants_response_body: true,
        }
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        if !self.cacheable(request) {
            return RequestAction::Continue(RequestChanges::new());
        }
        let scope = self.context_scope();
        let key = self.key(request, &scope);
        if let Some(entry) = self.lookup(&key) {
            return RequestAction::Respond(hit(entry));
        }
        context::set(CTX_KEY, &key);
        context::set(CTX_SCOPE, &serde_json::json!(scope).to_string());
        RequestAction::Continue(RequestChanges::new())
    }

    fn on_response(&self, response: &Response) -> ResponseChanges {
        let Some(key) = context::get(CTX_KEY) else {
            return ResponseChanges::new().set_header("x-cache", "BYPASS");
        };
        let scope = serde_json::json!(self.context_scope()).to_string();
        if context::get(CTX_SCOPE).as_deref() == Some(scope.as_str()) {
            self.store(&key, response);
        } else {
            log::log(
                LogLevel::Warn,
                "not stored: a plugin after `cache` set the consumer or a vary_context key; put auth before cache",
                &[],
            );
        }
        ResponseChanges::new().set_header("x-cache", "MISS")
    }
}

/// Every value of header `name`, in order, one per line.
fn all_values(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A kv failure: the request goes on as a miss (or unstored). Counted
/// (`kv_errors{op}`) and logged at debug only: during a Redis outage every
/// request lands here, and the gateway logs the outage once.
fn kv_failed(op: &str, message: &str, error: &str) {
    metrics::counter_add("kv_errors", 1, &[("op", op)]);
    log::log(LogLevel::Debug, message, &[("error", error)]);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

export_plugin!(Cache);
