//! Turning the route entry's [`Config`] into [`Settings`]: every key parsed
//! and checked, every name validated, once at load, so a bad config is
//! refused with the field at fault instead of failing requests later.

use crate::cache::TokenCache;
use crate::config::{Config, Require};
use crate::jwks::RemoteJwks;
use crate::keys::{self, VerifyKey, ALGORITHMS};
use jsonwebtoken::{Algorithm, Validation};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Most verified tokens one instance remembers.
const MAX_TOKEN_CACHE: usize = 100_000;

/// Claims `jsonwebtoken` checks itself when required.
const SPEC_CLAIMS: [&str; 5] = ["exp", "nbf", "iss", "aud", "sub"];

/// Everything a request needs, checked.
pub struct Settings {
    /// Keys from `keys` and the inline `jwks`.
    pub keys: Vec<VerifyKey>,
    pub remote: Option<RemoteJwks>,
    /// `algorithms`, if set: an allowlist on top of each key's own binding.
    pub allowed: Option<Vec<Algorithm>>,
    /// One validation (time, issuer, audience) per algorithm.
    pub validations: HashMap<Algorithm, Validation>,
    /// Claims that must be present and not null.
    pub required_claims: Vec<String>,
    pub require: Require,
    pub cookie: Option<String>,
    /// (claim, context key).
    pub to_context: Vec<(String, String)>,
    /// (claim, lower-case header name).
    pub to_headers: Vec<(String, String)>,
    pub realm: String,
    /// Clock skew allowed on `exp` and `nbf`, also on cached tokens.
    pub leeway: u64,
    pub cache: TokenCache,
}

impl Settings {
    /// Checks `config`; the error names the field at fault.
    pub fn new(config: Config) -> Result<Settings, String> {
        let allowed = allowed_algorithms(&config)?;
        let keys = static_keys(&config)?;
        let remote = remote_jwks(&config)?;
        if keys.is_empty() && remote.is_none() {
            return Err("keys: give at least one of `keys`, `jwks` or `jwks_upstream`".into());
        }
        check_strings("issuer", &config.issuer)?;
        check_strings("audience", &config.audience)?;
        check_strings("required_claims", &config.required_claims)?;
        let required_claims = required_claims(&config);
        check_require(&config.require)?;
        check_cookie(config.cookie.as_deref())?;
        check_realm(&config.realm)?;
        if config.token_cache_size > MAX_TOKEN_CACHE {
            return Err(format!("token_cache_size: at most {MAX_TOKEN_CACHE}"));
        }
        Ok(Settings {
            leeway: config.leeway_secs,
            cache: TokenCache::new(config.token_cache_size),
            validations: validations(&config, &required_claims),
            keys,
            remote,
            allowed,
            required_claims,
            cookie: config.cookie,
            to_context: context_keys(config.claims_to_context)?,
            to_headers: header_names(config.claims_to_headers)?,
            realm: config.realm,
            require: config.require,
        })
    }
}

/// Keys from `keys` and the inline `jwks`, with no `kid` given twice.
fn static_keys(config: &Config) -> Result<Vec<VerifyKey>, String> {
    let mut keys = Vec::new();
    for (i, entry) in config.keys.iter().enumerate() {
        let key = keys::from_config(i, entry)?;
        if let Some(allowed) = &config.algorithms {
            if !allowed.contains(&entry.alg) {
                return Err(format!(
                    "keys[{i}].alg: {} is not in `algorithms`",
                    entry.alg
                ));
            }
        }
        keys.push(key);
    }
    if let Some(document) = &config.jwks {
        let (inline, refused) =
            keys::parse_jwks(document, true).map_err(|e| format!("jwks: {e}"))?;
        if let Some(reason) = refused.first() {
            return Err(format!("jwks.{reason}"));
        }
        if inline.is_empty() {
            return Err("jwks: the document lists no key".into());
        }
        keys.extend(inline);
    }
    let mut seen = HashSet::new();
    for kid in keys.iter().filter_map(|k| k.kid.as_deref()) {
        if !seen.insert(kid) {
            return Err(format!("keys: kid `{kid}` is given twice"));
        }
    }
    Ok(keys)
}

/// The fetched JWKS, if `jwks_upstream` is set.
fn remote_jwks(config: &Config) -> Result<Option<RemoteJwks>, String> {
    let Some(upstream) = &config.jwks_upstream else {
        if config.jwks_path.is_some() {
            return Err("jwks_path: only meaningful with `jwks_upstream`".into());
        }
        return Ok(None);
    };
    if upstream.is_empty() {
        return Err("jwks_upstream: must name an upstream".into());
    }
    let path = config
        .jwks_path
        .as_deref()
        .ok_or("jwks_path: required with `jwks_upstream`")?;
    if !path.starts_with('/') {
        return Err("jwks_path: must start with `/`".into());
    }
    if config.jwks_refresh_secs == 0 {
        return Err("jwks_refresh_secs: must be at least 1".into());
    }
    if config.jwks_min_refetch_secs > config.jwks_refresh_secs {
        return Err("jwks_min_refetch_secs: must not exceed `jwks_refresh_secs`".into());
    }
    if config.jwks_timeout_ms == 0 {
        return Err("jwks_timeout_ms: must be at least 1".into());
    }
    Ok(Some(RemoteJwks::new(
        upstream.clone(),
        path.to_string(),
        Duration::from_secs(config.jwks_refresh_secs),
        Duration::from_secs(config.jwks_min_refetch_secs),
        config.jwks_timeout_ms,
    )))
}

fn allowed_algorithms(config: &Config) -> Result<Option<Vec<Algorithm>>, String> {
    let Some(names) = &config.algorithms else {
        return Ok(None);
    };
    if names.is_empty() {
        return Err("algorithms: must list at least one algorithm (or be left out)".into());
    }
    names
        .iter()
        .map(|name| keys::algorithm(name).map_err(|e| format!("algorithms: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `required_claims`, plus `iss`/`aud` when they are checked: a token
/// without the claim must not slip past the check.
fn required_claims(config: &Config) -> Vec<String> {
    let mut claims = config.required_claims.clone();
    let implied = [
        ("iss", !config.issuer.is_empty()),
        ("aud", !config.audience.is_empty()),
    ];
    for (claim, implied) in implied {
        if implied && !claims.iter().any(|c| c == claim) {
            claims.push(claim.to_string());
        }
    }
    claims
}

fn validations(config: &Config, required: &[String]) -> HashMap<Algorithm, Validation> {
    let spec: Vec<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|c| SPEC_CLAIMS.contains(c))
        .collect();
    ALGORITHMS
        .iter()
        .map(|&alg| {
            let mut v = Validation::new(alg);
            v.leeway = config.leeway_secs;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.set_required_spec_claims(&spec);
            if !config.issuer.is_empty() {
                v.set_issuer(&config.issuer);
            }
            if config.audience.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(&config.audience);
            }
            (alg, v)
        })
        .collect()
}

fn check_strings(field: &str, values: &[String]) -> Result<(), String> {
    match values.iter().position(|v| v.trim().is_empty()) {
        Some(i) => Err(format!("{field}[{i}]: must not be empty")),
        None => Ok(()),
    }
}

/// Scopes and roles are single words: a list claim is split on whitespace.
fn check_require(require: &Require) -> Result<(), String> {
    for (field, values) in [("scopes", &require.scopes), ("roles", &require.roles)] {
        for (i, value) in values.iter().enumerate() {
            if value.is_empty() || value.contains(char::is_whitespace) {
                return Err(format!(
                    "require.{field}[{i}]: must be one word without spaces"
                ));
            }
        }
    }
    if require.roles_claim.is_empty() {
        return Err("require.roles_claim: must not be empty".into());
    }
    if require.scopes_claim.as_deref() == Some("") {
        return Err("require.scopes_claim: must not be empty".into());
    }
    Ok(())
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_cookie(cookie: Option<&str>) -> Result<(), String> {
    match cookie {
        Some(name) if !is_token(name) => {
            Err(format!("cookie: `{name}` is not a valid cookie name"))
        }
        _ => Ok(()),
    }
}

/// The realm goes inside a quoted string of the challenge.
fn check_realm(realm: &str) -> Result<(), String> {
    if realm.is_empty()
        || realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(
            "realm: must be non-empty, without quotes, backslashes or control characters".into(),
        );
    }
    Ok(())
}

fn context_keys(
    map: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    for (claim, key) in &map {
        if claim.is_empty() || key.is_empty() {
            return Err("claims_to_context: claim names and context keys must not be empty".into());
        }
    }
    Ok(map.into_iter().collect())
}

fn header_names(
    map: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (claim, header) in map {
        if claim.is_empty() {
            return Err("claims_to_headers: claim names must not be empty".into());
        }
        if !is_token(&header) {
            return Err(format!(
                "claims_to_headers.{claim}: `{header}` is not a valid header name"
            ));
        }
        pairs.push((claim, header.to_ascii_lowercase()));
    }
    Ok(pairs)
}
