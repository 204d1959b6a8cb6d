//! The route entry's config and its validation: every refusal names the field.

use crate::policy::Policy;
use serde::Deserialize;

/// Longest `ttl_seconds`: one year.
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;
/// Largest `max_body_bytes`: bigger bodies do not belong in a kv store.
const MAX_BODY_LIMIT: usize = 64 << 20;

/// The plugin's config as written in the route entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How long a response is kept at most; a shorter `Cache-Control:
    /// max-age` (or `s-maxage`) on the response wins.
    pub ttl_seconds: u64,
    /// Request headers whose values are part of the key (e.g. `accept-language`).
    #[serde(default)]
    pub vary: Vec<String>,
    /// Upstream statuses that may be stored (default `[200]`).
    #[serde(default = "default_statuses")]
    pub statuses: Vec<u16>,
    /// Larger bodies are passed through, not stored (default 1 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Larger entries (key, status, headers and body as stored) are passed
    /// through, not stored (default 2 MiB): the kv store's budget is shared.
    #[serde(default = "default_max_entry")]
    pub max_entry_bytes: usize,
    /// Also cache requests carrying `Authorization` (default `false`). Each
    /// credential then gets its own entries unless `shared` is set.
    #[serde(default)]
    pub cache_authorized: bool,
    /// Serve one identity's response to another (default `false`). Without
    /// it the key holds the request-context `consumer` (set by `api-key`,
    /// `jwt-auth`, `hmac-signature`) and, for a cached `Authorization`
    /// request, a digest of that header: alice's answer is never bob's.
    #[serde(default)]
    pub shared: bool,
    /// Request-context keys whose values are part of the key (e.g. a
    /// `tenant` an earlier plugin sets); kept even when `shared`.
    #[serde(default)]
    pub vary_context: Vec<String>,
}

fn default_statuses() -> Vec<u16> {
    vec![200]
}

fn default_max_body() -> usize {
    1 << 20
}

fn default_max_entry() -> usize {
    2 << 20
}

impl Config {
    /// The validated storing policy, or the first field that is wrong.
    pub fn policy(&self) -> Result<Policy, String> {
        if !(1..=MAX_TTL_SECS).contains(&self.ttl_seconds) {
            return Err(format!("ttl_seconds: must be between 1 and {MAX_TTL_SECS}"));
        }
        if let Some(name) = self.vary.iter().find(|n| !is_token(n)) {
            return Err(format!("vary: `{name}` is not a valid header name"));
        }
        if self.vary_context.iter().any(String::is_empty) {
            return Err("vary_context: context keys must not be empty".into());
        }
        if self.statuses.is_empty() {
            return Err("statuses: must list at least one status".into());
        }
        if let Some(status) = self.statuses.iter().find(|s| !(200..=599).contains(*s)) {
            return Err(format!("statuses: {status} is not between 200 and 599"));
        }
        if !(1..=MAX_BODY_LIMIT).contains(&self.max_body_bytes) {
            return Err(format!(
                "max_body_bytes: must be between 1 and {MAX_BODY_LIMIT}"
            ));
        }
        if !(1..=MAX_BODY_LIMIT).contains(&self.max_entry_bytes) {
            return Err(format!(
                "max_entry_bytes: must be between 1 and {MAX_BODY_LIMIT}"
            ));
        }
        Ok(Policy {
            ttl_ms: self.ttl_seconds * 1000,
            statuses: self.statuses.clone(),
            max_body_bytes: self.max_body_bytes,
            max_entry_bytes: self.max_entry_bytes,
            vary: self.vary.iter().map(|n| n.to_ascii_lowercase()).collect(),
        })
    }
}

/// An HTTP token (RFC 9110 §5.6.2), what a header name must be.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
