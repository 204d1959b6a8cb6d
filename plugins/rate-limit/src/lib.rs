//! `rate-limit`: a token bucket per client (IP, header, context value such as
//! `consumer`, or the whole route), shared by every instance and worker
//! through the host kv store, so counts stay exact under concurrency.
//!
//! ```yaml
//! - name: rate-limit
//!   config:
//!     rate: 10                  # tokens added every period
//!     period: 1s                # 500ms, 1s, 1m, 1h, 1d
//!     burst: 20                 # bucket size (default: rate)
//!     key: { source: context, name: consumer }   # or ip (default), header, route
//!     on_kv_error: allow        # kv store failure: let through (default) or deny (503)
//! ```
//!
//! Over the limit: `429` `{"error": "rate limit exceeded", "code":
//! "rate_limited"}` with `Retry-After`. Every response carries
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.
//! See README.md.

pub mod bucket;
pub mod config;

use bucket::{Bucket, Decision, Limits};
use config::{Config, KeySource, OnKvError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmgate_plugin_sdk::prelude::*;
use wasmgate_plugin_sdk::LogLevel;

/// Compare-and-swap attempts before a request gives up on a contended bucket.
const MAX_ATTEMPTS: usize = 100;

/// The context key carrying the numbers from `on_request` to
/// `on_response`: `limit remaining reset`, one key rather than three, as
/// each context access is a host call.
const CTX_NUMBERS: &str = "rate-limit";

/// The response headers, in the order of the numbers under [`CTX_NUMBERS`].
const HEADERS: [&str; 3] = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// The plugin: validated limits and what a bucket is per.
pub struct RateLimit {
    limits: Limits,
    key: KeySource,
    on_kv_error: OnKvError,
}

impl RateLimit {
    /// The kv key of the request's bucket. The route and the limits are part
    /// of it, so two entries with different limits never share a bucket.
    fn bucket_key(&self, request: &Request) -> String {
        let Limits {
            rate,
            period_ms,
            burst,
        } = self.limits;
        let key = |who: std::fmt::Arguments| {
            format!("{}|{rate}/{period_ms}ms/{burst}|{who}", request.route)
        };
        let ip = || key(format_args!("ip:{}", client_ip(&request.client_addr)));
        match &self.key {
            KeySource::Ip => ip(),
            KeySource::Route => key(format_args!("route")),
            KeySource::Header { name } => request
                .header(name)
                .map_or_else(ip, |v| key(format_args!("header:{v}"))),
            KeySource::Context { name } => {
                context::get(name).map_or_else(ip, |v| key(format_args!("context:{v}")))
            }
        }
    }

    /// Takes a token from the shared bucket: read, compute, compare-and-swap,
    /// retrying when another request changed the bucket in between.
    fn take(&self, key: &str) -> Result<Decision, String> {
        let ttl = Some(Duration::from_millis(self.limits.ttl_ms()));
        for _ in 0..MAX_ATTEMPTS {
            let stored = kv::get(key)?;
            let bucket = stored.as_deref().and_then(Bucket::decode);
            let decision = self.limits.take(bucket, now_ms());
            if !decision.allowed {
                return Ok(decision);
            }
            if kv::compare_and_swap(key, stored.as_deref(), &decision.next.encode(), ttl)? {
                return Ok(decision);
            }
        }
        Err(format!(
            "bucket still contended after {MAX_ATTEMPTS} attempts"
        ))
    }

    /// The kv store failed: let the request through or refuse it, per
    /// `on_kv_error`. Counted (`kv_errors{route, action}`) and logged at
    /// debug only: during a Redis outage every request lands here, and the
    /// gateway already logs the outage once.
    fn on_store_error(&self, request: &Request, error: &str) -> RequestAction {
        let action = match self.on_kv_error {
            OnKvError::Allow => "allow",
            OnKvError::Deny => "deny",
        };
        metrics::counter_add(
            "kv_errors",
            1,
            &[("route", &request.route), ("action", action)],
        );
        log::log(
            LogLevel::Debug,
            "rate limit store failed",
            &[("route", &request.route), ("error", error)],
        );
        if self.on_kv_error == OnKvError::Allow {
            return RequestAction::Continue(RequestChanges::new());
        }
        RequestAction::Respond(Response::error(
            503,
            "rate_limit_unavailable",
            "rate limit state is unavailable",
        ))
    }

    /// The 429 answer, with the numbers and when to come back.
    fn reject(&self, request: &Request, decision: &Decision) -> RequestAction {
        metrics::counter_add("rate_limited", 1, &[("route", &request.route)]);
        let response = Response::error(429, "rate_limited", "rate limit exceeded")
            .with_header("retry-after", &decision.retry_after_secs.to_string());
        RequestAction::Respond(
            HEADERS
                .into_iter()
                .zip(self.numbers(decision))
                .fold(response, |response, (name, value)| {
                    response.with_header(name, &value.to_string())
                }),
        )
    }

    /// The limit, the tokens left and the seconds until the bucket is full.
    fn numbers(&self, decision: &Decision) -> [u64; 3] {
        [self.limits.burst, decision.remaining, decision.reset_secs]
    }

    /// Leaves the numbers for the response hook. With several rate-limit
    /// entries on a route, the one with the fewest tokens left wins.
    fn record(&self, decision: &Decision) {
        let previous = context::get(CTX_NUMBERS).and_then(|v| remaining_in(&v));
        if previous.is_some_and(|p| p <= decision.remaining) {
            return;
        }
        let [limit, remaining, reset] = self.numbers(decision);
        context::set(CTX_NUMBERS, &format!("{limit} {remaining} {reset}"));
    }
}

/// The tokens left in a [`CTX_NUMBERS`] value.
fn remaining_in(numbers: &str) -> Option<u64> {
    numbers.split(' ').nth(1)?.parse().ok()
}

impl Plugin for RateLimit {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(RateLimit {
            limits: config.limits()?,
            on_kv_error: config.kv_error_policy()?,
            key: config.key,
        })
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: false,
            wants_response: true,
            wants_response_body: false,
        }
    }

    /// Only a header key is read: the host then copies no other header in.
    fn header_interest(&self) -> Option<Vec<String>> {
        match &self.key {
            KeySource::Header { name } => Some(vec![name.clone()]),
            _ => Some(Vec::new()),
        }
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let key = self.bucket_key(request);
        match self.take(&key) {
            Ok(decision) => {
                self.record(&decision);
                if decision.allowed {
                    RequestAction::Continue(RequestChanges::new())
                } else {
                    self.reject(request, &decision)
                }
            }
            Err(error) => self.on_store_error(request, &error),
        }
    }

    fn on_response(&self, _response: &Response) -> ResponseChanges {
        let numbers = context::get(CTX_NUMBERS).unwrap_or_default();
        HEADERS
            .into_iter()
            .zip(numbers.split(' ').filter(|n| !n.is_empty()))
            .fold(ResponseChanges::new(), |changes, (header, value)| {
                changes.set_header(header, value)
            })
    }
}

/// The IP of an `ip:port` socket address (`[v6]:port` too).
fn client_ip(addr: &str) -> String {
    addr.parse::<std::net::SocketAddr>()
        .map_or_else(|_| addr.to_string(), |a| a.ip().to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

export_plugin!(RateLimit);
