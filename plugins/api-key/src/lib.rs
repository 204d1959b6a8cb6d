//! `api-key`: lets a request through only with a known API key, and tells
//! the rest of the chain (and the upstream) who the consumer is.
//!
//! ```yaml
//! - name: api-key
//!   config:
//!     keys: [{ key: demo-key-alice, consumer: alice }]
//!     header: x-api-key            # where the key is read (default)
//!     query_param: api_key         # optional second place
//!     consumer_header: x-consumer  # set upstream; a client-sent one is removed
//!     hide_credentials: true       # strip the key before the upstream
//! ```
//!
//! Without a valid key: `401` with `{"error": "...", "code": "unauthorized"}`
//! and `WWW-Authenticate: ApiKey header="x-api-key"`. With one: the context
//! key `consumer` holds the consumer's name.

use serde::Deserialize;
use std::collections::HashMap;
use wasmgate_plugin_sdk::prelude::*;
use wasmgate_plugin_sdk::query;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub key: String,
    pub consumer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub keys: Vec<Key>,
    #[serde(default = "default_header")]
    pub header: String,
    #[serde(default)]
    pub query_param: Option<String>,
    #[serde(default = "default_consumer_header")]
    pub consumer_header: String,
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

pub struct ApiKey {
    consumers: HashMap<String, String>,
    header: String,
    query_param: Option<String>,
    consumer_header: String,
    hide_credentials: bool,
}

impl ApiKey {
    fn deny(&self, message: &str) -> RequestAction {
        RequestAction::Respond(Response::error(401, "unauthorized", message).with_header(
            "www-authenticate",
            &format!("ApiKey header=\"{}\"", self.header),
        ))
    }

    /// The key in the query parameter, percent-decoded as a form.
    fn key_from_query(&self, query: Option<&str>) -> Option<String> {
        query::param(query?, self.query_param.as_deref()?)
    }

    /// The query without the key parameter, however its name is spelled.
    fn query_without_key(&self, query: &str) -> String {
        query::without(query, self.query_param.as_deref().unwrap_or_default())
    }
}

impl Plugin for ApiKey {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
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
        Ok(ApiKey {
            consumers,
            header: config.header.to_ascii_lowercase(),
            query_param: config.query_param,
            consumer_header: config.consumer_header.to_ascii_lowercase(),
            hide_credentials: config.hide_credentials,
        })
    }

    fn header_interest(&self) -> Option<Vec<String>> {
        Some(vec![self.header.clone()])
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let from_header = request.header(&self.header);
        let from_query = self.key_from_query(request.query.as_deref());
        let Some(key) = from_header.or(from_query.as_deref()) else {
            return self.deny("missing API key");
        };
        let Some(consumer) = self.consumers.get(key) else {
            log::log(
                LogLevel::Info,
                "rejected unknown API key",
                &[("route", &request.route)],
            );
            return self.deny("invalid API key");
        };
        context::set("consumer", consumer);
        let mut changes = RequestChanges::new().set_header(&self.consumer_header, consumer);
        if self.hide_credentials {
            changes = changes.remove_header(&self.header);
            if from_query.is_some() {
                changes = changes
                    .query(&self.query_without_key(request.query.as_deref().unwrap_or_default()));
            }
        }
        RequestAction::Continue(changes)
    }
}

use wasmgate_plugin_sdk::LogLevel;

export_plugin!(ApiKey);
