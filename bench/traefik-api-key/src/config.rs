//! The middleware's config: the JSON Traefik hands the guest, in the shape
//! and with the defaults and refusals of wasmgate's `api-key` config.

use serde::Deserialize;
use std::collections::HashMap;

/// One accepted key and the consumer it names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// The secret the client sends.
    pub key: String,
    /// Who the key belongs to: sent upstream in `consumer_header`.
    pub consumer: String,
}

/// The config as written under the middleware in Traefik's dynamic config;
/// `query_param` is left out (the benchmark sends the key in a header only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The accepted keys: at least one.
    pub keys: Vec<Key>,
    /// The request header carrying the key.
    #[serde(default = "default_header")]
    pub header: String,
    /// The header the upstream reads the consumer's name from.
    #[serde(default = "default_consumer_header")]
    pub consumer_header: String,
    /// Whether the key is removed before the request goes upstream.
    #[serde(default = "default_true")]
    pub hide_credentials: bool,
}

fn default_header() -> String {
    "x-api-key".into()
}

fn default_consumer_header() -> String {
    "x-consumer".into()
}

fn default_true() -> bool {
    true
}

/// What a request is checked against: keys indexed for one lookup, header
/// names lowercased once.
pub struct Checked {
    /// Key to consumer.
    pub consumers: HashMap<String, String>,
    /// Where the key is read.
    pub header: String,
    /// Where the consumer's name goes.
    pub consumer_header: String,
    /// Strip the key before the upstream.
    pub hide_credentials: bool,
}

/// Parses and checks the config with the same refusals as wasmgate's
/// plugin, so both sides accept the same configs.
pub fn parse(json: &[u8]) -> Result<Checked, String> {
    let config: Config = serde_json::from_slice(json).map_err(|e| format!("config: {e}"))?;
    if config.keys.is_empty() {
        return Err("`keys` must list at least one key".into());
    }
    let mut consumers = HashMap::new();
    for (i, k) in config.keys.into_iter().enumerate() {
        if k.key.len() < 8 {
            return Err(format!("keys[{i}].key must be at least 8 characters"));
        }
        if k.consumer.is_empty() {
            return Err(format!("keys[{i}].consumer must not be empty"));
        }
        if consumers.insert(k.key, k.consumer).is_some() {
            return Err(format!("keys[{i}].key is listed twice"));
        }
    }
    Ok(Checked {
        consumers,
        header: config.header.to_ascii_lowercase(),
        consumer_header: config.consumer_header.to_ascii_lowercase(),
        hide_credentials: config.hide_credentials,
    })
}
