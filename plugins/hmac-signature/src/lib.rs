//! `hmac-signature`: lets a request through only when it carries a valid
//! HMAC-SHA256 signature over its method, path, query, timestamp and body,
//! made with a secret shared with the caller, within a time window that
//! limits replays (and, on request, refuses any signature seen before).
//!
//! ```yaml
//! - name: hmac-signature
//!   config:
//!     keys: [{ id: partner-a, secret: "at-least-32-bytes-of-shared-secret!!", consumer: acme }]
//!     header: x-signature        # keyId=partner-a,ts=1767225600,sig=<hex> (default name)
//!     max_skew_secs: 300         # |now - ts| allowed
//!     reject_replays: false      # true: each signature is accepted once (shared kv)
//!     consumer_header: x-consumer  # optional; a client-sent one is removed
//! ```
//!
//! Refusals are `401` with `{"error": "...", "code": "..."}`, a distinct code
//! per reason; see the README. The bytes signed are in [`signature`].

pub mod signature;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmgate_plugin_sdk::prelude::*;
use wasmgate_plugin_sdk::LogLevel;

/// Shortest secret accepted: as long as the SHA-256 output (RFC 2104 §3).
const MIN_SECRET_BYTES: usize = 32;
/// Widest timestamp window accepted.
const MAX_SKEW_SECS: u64 = 86_400;

/// One caller's key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// What the caller puts in `keyId`.
    pub id: String,
    /// The shared secret (text, at least 32 bytes).
    pub secret: String,
    /// Who the caller is for later plugins; default: the key id.
    #[serde(default)]
    pub consumer: Option<String>,
}

/// The route entry's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub keys: Vec<KeyConfig>,
    /// The header carrying the signature.
    #[serde(default = "default_header")]
    pub header: String,
    /// How far `ts` may be from the gateway's clock, either way.
    #[serde(default = "default_max_skew_secs")]
    pub max_skew_secs: u64,
    /// Refuse a signature already accepted (kept in the shared kv store for
    /// the length of the window, so exact across instances).
    #[serde(default)]
    pub reject_replays: bool,
    /// Sends the consumer upstream in this header (a client-sent one is removed).
    #[serde(default)]
    pub consumer_header: Option<String>,
}

fn default_header() -> String {
    "x-signature".into()
}

fn default_max_skew_secs() -> u64 {
    300
}

/// A caller's key, with the HMAC key schedule done once.
struct Key {
    mac: Hmac<Sha256>,
    consumer: String,
}

/// The plugin.
pub struct HmacSignature {
    keys: HashMap<String, Key>,
    header: String,
    max_skew: u64,
    reject_replays: bool,
    consumer_header: Option<String>,
}

/// Why a request is refused; each has its own code.
#[derive(Debug)]
enum Failure {
    Missing,
    Malformed(&'static str),
    UnknownKey,
    Stale,
    BadSignature,
    Replayed,
    /// The kv store failed while checking for a replay: fail closed.
    ReplayCheck(String),
}

impl Plugin for HmacSignature {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let keys = keys(config.keys)?;
        check_header_name("header", &config.header)?;
        if let Some(name) = &config.consumer_header {
            check_header_name("consumer_header", name)?;
        }
        if !(1..=MAX_SKEW_SECS).contains(&config.max_skew_secs) {
            return Err(format!(
                "max_skew_secs: must be between 1 and {MAX_SKEW_SECS}"
            ));
        }
        Ok(HmacSignature {
            keys,
            header: config.header.to_ascii_lowercase(),
            max_skew: config.max_skew_secs,
            reject_replays: config.reject_replays,
            consumer_header: config.consumer_header.map(|h| h.to_ascii_lowercase()),
        })
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: true,
            wants_response: false,
            wants_response_body: false,
        }
    }

    fn header_interest(&self) -> Option<Vec<String>> {
        Some(vec![self.header.clone()])
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        match self.check(request) {
            Ok(key) => RequestAction::Continue(self.admit(key)),
            Err(failure) => {
                self.log(&failure, request);
                RequestAction::Respond(self.refuse(&failure))
            }
        }
    }
}

impl HmacSignature {
    /// The caller's key if the request is signed, fresh, correct (and new).
    fn check(&self, request: &Request) -> Result<&Key, Failure> {
        let value = request.header(&self.header).ok_or(Failure::Missing)?;
        let header = signature::parse(value).map_err(Failure::Malformed)?;
        let key = self.keys.get(header.key_id).ok_or(Failure::UnknownKey)?;
        if now().abs_diff(header.timestamp) > self.max_skew {
            return Err(Failure::Stale);
        }
        let mut mac = key.mac.clone();
        let body = request.body.as_deref().unwrap_or_default();
        let parts = signature::signed_parts(
            &request.method,
            &request.path,
            request.query.as_deref(),
            header.ts_text,
            body,
        );
        parts.for_each(|part| mac.update(part));
        mac.verify_slice(&header.mac)
            .map_err(|_| Failure::BadSignature)?;
        if self.reject_replays {
            self.first_use(&header.mac)?;
        }
        Ok(key)
    }

    /// Records the signature in the shared kv store for the window's length;
    /// an `Err` if it was there already.
    fn first_use(&self, mac: &[u8]) -> Result<(), Failure> {
        let key: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        let ttl = Duration::from_secs(2 * self.max_skew + 1);
        match kv::compare_and_swap(&format!("seen/{key}"), None, b"1", Some(ttl)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::Replayed),
            Err(e) => Err(Failure::ReplayCheck(e)),
        }
    }

    /// Tells later plugins (and, if configured, the upstream) who signed.
    fn admit(&self, key: &Key) -> RequestChanges {
        context::set("consumer", &key.consumer);
        match &self.consumer_header {
            Some(name) => RequestChanges::new()
                .remove_header(name)
                .set_header(name, &key.consumer),
            None => RequestChanges::new(),
        }
    }

    fn refuse(&self, failure: &Failure) -> Response {
        let (status, code, message) = match failure {
            Failure::Missing => (
                401,
                "signature_missing",
                format!("missing {} header", self.header),
            ),
            Failure::Malformed(why) => (
                401,
                "signature_malformed",
                format!("malformed {} header: {why}", self.header),
            ),
            Failure::UnknownKey => (401, "unknown_key", "unknown signing key id".into()),
            Failure::Stale => (
                401,
                "stale_timestamp",
                format!(
                    "timestamp is more than {} seconds from the gateway's clock",
                    self.max_skew
                ),
            ),
            Failure::BadSignature => (
                401,
                "bad_signature",
                "signature does not match the request".into(),
            ),
            Failure::Replayed => (401, "replayed", "signature was already used".into()),
            Failure::ReplayCheck(_) => (
                503,
                "replay_check_unavailable",
                "cannot check the signature for replay; try again".into(),
            ),
        };
        let response = Response::error(status, code, &message);
        if status == 401 {
            let challenge = format!("HMAC-SHA256 header=\"{}\"", self.header);
            return response.with_header("www-authenticate", &challenge);
        }
        response
    }

    fn log(&self, failure: &Failure, request: &Request) {
        let (level, reason) = match failure {
            Failure::Missing => return,
            Failure::ReplayCheck(e) => (LogLevel::Warn, e.as_str()),
            Failure::Malformed(why) => (LogLevel::Info, *why),
            Failure::UnknownKey => (LogLevel::Info, "unknown key id"),
            Failure::Stale => (LogLevel::Info, "stale timestamp"),
            Failure::BadSignature => (LogLevel::Info, "bad signature"),
            Failure::Replayed => (LogLevel::Info, "replayed signature"),
        };
        log::log(
            level,
            "refused a signed request",
            &[("route", &request.route), ("reason", reason)],
        );
    }
}

/// The gateway's wall clock in Unix seconds (WASI's clock).
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks every key and builds its HMAC state.
fn keys(configs: Vec<KeyConfig>) -> Result<HashMap<String, Key>, String> {
    if configs.is_empty() {
        return Err("keys: must list at least one key".into());
    }
    let mut keys = HashMap::new();
    for (i, k) in configs.into_iter().enumerate() {
        let bad_id = k.id.is_empty()
            || k.id
                .contains(|c: char| c == ',' || c == '=' || c.is_whitespace() || c.is_control());
        if bad_id {
            return Err(format!(
                "keys[{i}].id: must be non-empty, without `,`, `=` or spaces"
            ));
        }
        if k.secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "keys[{i}].secret: must be at least {MIN_SECRET_BYTES} bytes"
            ));
        }
        if k.consumer.as_deref() == Some("") {
            return Err(format!("keys[{i}].consumer: must not be empty"));
        }
        let mac = Hmac::<Sha256>::new_from_slice(k.secret.as_bytes())
            .map_err(|e| format!("keys[{i}].secret: {e}"))?;
        let consumer = k.consumer.unwrap_or_else(|| k.id.clone());
        if keys.insert(k.id, Key { mac, consumer }).is_some() {
            return Err(format!("keys[{i}].id: is listed twice"));
        }
    }
    Ok(keys)
}

fn check_header_name(field: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!("{field}: `{name}` is not a valid header name"))
    }
}

export_plugin!(HmacSignature);
