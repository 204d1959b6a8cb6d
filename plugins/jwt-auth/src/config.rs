//! The route entry's config as written in YAML, before validation.
//!
//! Every field is documented in the plugin's README; `Settings::new` in
//! `lib.rs` turns this into what a request needs, refusing bad values.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// What a route entry may say.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Keys given directly, each bound to one algorithm.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// A JWKS document (`{"keys": [...]}`) written inline.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// An upstream (from the gateway config) serving a JWKS document.
    #[serde(default)]
    pub jwks_upstream: Option<String>,
    /// The JWKS document's path on `jwks_upstream`.
    #[serde(default)]
    pub jwks_path: Option<String>,
    /// How long fetched keys are used before they are fetched again.
    #[serde(default = "default_jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// The least time between two fetches (unknown `kid`, failed fetch).
    #[serde(default = "default_jwks_min_refetch_secs")]
    pub jwks_min_refetch_secs: u64,
    /// Timeout of one JWKS fetch; keep it under the plugin call timeout.
    #[serde(default = "default_jwks_timeout_ms")]
    pub jwks_timeout_ms: u32,
    /// Algorithms a token may use; default: whatever its key allows.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Accepted `iss` values; set, a token must carry one of them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub issuer: Vec<String>,
    /// Accepted `aud` values; set, a token must name one of them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Claims a token must carry.
    #[serde(default = "default_required_claims")]
    pub required_claims: Vec<String>,
    /// Scopes and roles this route needs (403 without them).
    #[serde(default)]
    pub require: Require,
    /// A cookie to read the token from when there is no bearer header.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Claim name → request-context key.
    #[serde(default)]
    pub claims_to_context: BTreeMap<String, String>,
    /// Claim name → upstream header (a client-sent one is removed first).
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// Verified tokens remembered per instance (0: verify every request).
    #[serde(default = "default_token_cache_size")]
    pub token_cache_size: usize,
    /// The `realm` of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
}

/// One key given directly: exactly one of `secret`, `secret_base64`, `pem`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Matched against the token's `kid`; a key without one matches any token.
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm this key verifies (a token claiming another is refused).
    pub alg: String,
    /// HMAC secret as text.
    #[serde(default)]
    pub secret: Option<String>,
    /// HMAC secret, standard base64.
    #[serde(default)]
    pub secret_base64: Option<String>,
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY`).
    #[serde(default)]
    pub pem: Option<String>,
}

/// A route's authorisation rules on a valid token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Require {
    /// Every one of these scopes must be granted.
    #[serde(alias = "scope", deserialize_with = "one_or_many")]
    pub scopes: Vec<String>,
    /// At least one of these roles must be held.
    #[serde(alias = "role", deserialize_with = "one_or_many")]
    pub roles: Vec<String>,
    /// Where scopes are; default `scope`, then `scp`.
    pub scopes_claim: Option<String>,
    /// Where roles are (a dotted path reaches into objects).
    pub roles_claim: String,
}

impl Default for Require {
    fn default() -> Self {
        Require {
            scopes: Vec::new(),
            roles: Vec::new(),
            scopes_claim: None,
            roles_claim: "roles".into(),
        }
    }
}

fn default_jwks_refresh_secs() -> u64 {
    300
}

fn default_jwks_min_refetch_secs() -> u64 {
    10
}

fn default_jwks_timeout_ms() -> u32 {
    50
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_required_claims() -> Vec<String> {
    vec!["exp".into()]
}

fn default_token_cache_size() -> usize {
    1024
}

fn default_realm() -> String {
    "wasmgate".into()
}

/// Accepts `x` as well as `[x, y]`, so a single value needs no brackets.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Vec<String>, E> {
            Ok(vec![value.to_string()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut values = Vec::new();
            while let Some(value) = seq.next_element()? {
                values.push(value);
            }
            Ok(values)
        }
    }

    deserializer.deserialize_any(OneOrMany)
}
