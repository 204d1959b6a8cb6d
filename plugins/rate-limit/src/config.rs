//! The route entry's config and its validation: every refusal names the field.

use crate::bucket::Limits;
use serde::Deserialize;

/// Largest `rate` and `burst`: keeps the micro-token arithmetic in range.
const MAX_TOKENS: u64 = 1_000_000_000_000;
/// Longest `period`: one year.
const MAX_PERIOD_MS: u64 = 365 * 24 * 3_600_000;

/// The plugin's config as written in the route entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tokens added to a bucket every `period`.
    pub rate: u64,
    /// How often `rate` tokens are added: `500ms`, `1s`, `1m`, `1h`, `1d`.
    #[serde(default = "default_period")]
    pub period: String,
    /// How many tokens a bucket holds (the largest burst); default `rate`.
    #[serde(default)]
    pub burst: Option<u64>,
    /// What a bucket is per; default the client IP.
    #[serde(default)]
    pub key: KeySource,
    /// What a request gets when the kv store fails (Redis down or slow past
    /// its `timeout_ms`, a bucket contended past every retry): `allow`
    /// (the default) or `deny` (503).
    #[serde(default)]
    pub on_kv_error: Option<OnKvError>,
    /// The old spelling of `on_kv_error` (`true` = `allow`), still read;
    /// setting both is refused.
    #[serde(default)]
    pub fault_tolerant: Option<bool>,
}

/// What a request gets when its bucket cannot be read or written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnKvError {
    /// Let it through, without rate-limit headers (fail open). The default,
    /// as in Envoy's and Kong's rate limiters: a rate limit protects
    /// capacity, and refusing every request while the shared store is down
    /// is the outage it exists to prevent. The gateway logs the outage and
    /// counts the errors.
    #[default]
    Allow,
    /// Answer 503 `rate_limit_unavailable` (fail closed): for limits that
    /// guard against abuse or cost (a paid API, login attempts), where an
    /// unlimited window is worse than refusing.
    Deny,
}

/// What a bucket is per. A missing header or context value falls back to
/// the client IP, so nobody escapes the limit by leaving it out.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub enum KeySource {
    /// The socket peer's IP address.
    #[default]
    Ip,
    /// A request header's value.
    Header { name: String },
    /// A request context value set by an earlier plugin (`consumer`, `sub`).
    Context { name: String },
    /// One bucket for the whole route.
    Route,
}

fn default_period() -> String {
    "1s".into()
}

impl Config {
    /// The validated limits, or the first field that is wrong.
    pub fn limits(&self) -> Result<Limits, String> {
        if !(1..=MAX_TOKENS).contains(&self.rate) {
            return Err(format!("rate: must be between 1 and {MAX_TOKENS}"));
        }
        let burst = self.burst.unwrap_or(self.rate);
        if !(1..=MAX_TOKENS).contains(&burst) {
            return Err(format!("burst: must be between 1 and {MAX_TOKENS}"));
        }
        let period_ms = parse_period(&self.period).map_err(|e| format!("period: {e}"))?;
        self.key.check()?;
        self.kv_error_policy()?;
        Ok(Limits {
            rate: self.rate,
            period_ms,
            burst,
        })
    }
}

impl Config {
    /// `on_kv_error`, or its old spelling `fault_tolerant`; not both.
    pub fn kv_error_policy(&self) -> Result<OnKvError, String> {
        match (self.on_kv_error, self.fault_tolerant) {
            (Some(_), Some(_)) => Err(
                "fault_tolerant: replaced by on_kv_error (allow | deny); set only on_kv_error"
                    .into(),
            ),
            (Some(policy), None) => Ok(policy),
            (None, Some(true)) | (None, None) => Ok(OnKvError::Allow),
            (None, Some(false)) => Ok(OnKvError::Deny),
        }
    }
}

impl KeySource {
    fn check(&self) -> Result<(), String> {
        match self {
            KeySource::Header { name } if !is_token(name) => {
                Err(format!("key.name: `{name}` is not a valid header name"))
            }
            KeySource::Context { name } if name.is_empty() => {
                Err("key.name: must not be empty".into())
            }
            _ => Ok(()),
        }
    }
}

/// An HTTP token (RFC 9110 §5.6.2), what a header name must be.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `500ms`, `1s`, `2m`, `1h`, `1d` as milliseconds.
fn parse_period(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{text}` is not a duration like 500ms, 1s, 1m, 1h or 1d"
            ))
        }
    };
    let count: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    match count.checked_mul(unit_ms) {
        Some(ms) if (1..=MAX_PERIOD_MS).contains(&ms) => Ok(ms),
        _ => Err(format!("`{text}` must be between 1ms and 365d")),
    }
}
