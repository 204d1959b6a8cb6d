//! Config of upstream resilience: targets with weights, balancing, health
//! checks, passive ejection, circuit breaking, timeouts and retries.
//!
//! Upstreams carry the defaults (`balance`, `connect_timeout_ms`, health,
//! breaker, retry budget); a route may override how *it* calls its upstream
//! (`balance`, `timeout_ms`, `connect_timeout_ms`, `retries`). Everything is
//! off or unchanged unless configured: round-robin, no health checks, no
//! ejection, no breaker, no retries.

use super::locate::FieldPath;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// One upstream server: `host:port`, or `{ address: host:port, weight: N }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// `host:port`.
    pub address: String,
    /// Share of traffic under `weighted_round_robin` (default 1).
    pub weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedTarget {
    address: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

impl<'de> Deserialize<'de> for TargetConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;
        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = TargetConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`host:port` or `{ address: host:port, weight: N }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TargetConfig, E> {
                Ok(TargetConfig {
                    address: v.to_string(),
                    weight: 1,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetConfig, A::Error> {
                let t = WeightedTarget::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TargetConfig {
                    address: t.address,
                    weight: t.weight,
                })
            }
        }
        deserializer.deserialize_any(TargetVisitor)
    }
}

/// How a request picks a target among the healthy ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceStrategy {
    /// Each target in turn.
    #[default]
    RoundRobin,
    /// Each target in proportion to its `weight`, interleaved (smooth WRR).
    WeightedRoundRobin,
    /// The target with the fewest requests in flight from this gateway.
    LeastRequest,
}

/// Active health checks: a `GET path` to every target each interval.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path probed; a 2xx answer is a success.
    pub path: String,
    /// Time between probes of one target.
    #[serde(default = "default_check_interval_ms")]
    pub interval_ms: u64,
    /// A probe slower than this is a failure.
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that bring an unhealthy target back.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy target out.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

fn default_check_interval_ms() -> u64 {
    5_000
}
fn default_check_timeout_ms() -> u64 {
    1_000
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

/// Passive health: a target whose real requests fail this many times in a
/// row (connect error, timeout or 5xx) gets no traffic for `ejection_ms`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthConfig {
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    #[serde(default = "default_ejection_ms")]
    pub ejection_ms: u64,
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_ejection_ms() -> u64 {
    30_000
}

/// The upstream's circuit breaker: opens on `consecutive_failures` in a row
/// or, when `failure_ratio` is set, on that share of failures among the last
/// `window` calls (once `min_requests` were seen); stays open `open_ms`,
/// then lets `half_open_requests` probes through to decide.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub failure_ratio: Option<f64>,
    #[serde(default = "default_window")]
    pub window: u32,
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    #[serde(default = "default_open_ms")]
    pub open_ms: u64,
    #[serde(default = "one")]
    pub half_open_requests: u32,
}

fn default_window() -> u32 {
    20
}
fn default_min_requests() -> u32 {
    10
}
fn default_open_ms() -> u64 {
    10_000
}

/// Caps retries across all routes of an upstream so they cannot multiply
/// load during an outage: each request adds `ratio` of a retry to the
/// budget, which holds at most `reserve` (and starts full).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    pub ratio: f64,
    pub reserve: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            reserve: 10,
        }
    }
}

/// A route's retries: up to `attempts` more tries, on another target when
/// there is one. A connect failure is retried for any method (nothing was
/// sent); a 5xx only for idempotent methods and when `on_5xx`. Only bodies
/// that fit `max_body_bytes` are replayable; others are never retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub attempts: u32,
    #[serde(default = "yes")]
    pub on_5xx: bool,
}

fn yes() -> bool {
    true
}

/// Checks the resilience settings of upstream `name`; `Err((field, message))`
/// with the field's path below the upstream.
pub(super) fn check_upstream(
    name: &str,
    upstream: &super::UpstreamConfig,
) -> Result<(), (FieldPath, String)> {
    let bad = |field: FieldPath, what: String| Err((field, format!("upstream `{name}`: {what}")));
    for (i, target) in upstream.targets.iter().enumerate() {
        if target.weight == 0 {
            return bad(
                FieldPath::root("targets").index(i).key("weight"),
                format!("target `{}`: weight must be at least 1", target.address),
            );
        }
    }
    if upstream.connect_timeout_ms == 0 || upstream.timeout_ms == 0 {
        let field = match upstream.timeout_ms {
            0 => "timeout_ms",
            _ => "connect_timeout_ms",
        };
        return bad(field.into(), "timeouts must be at least 1 ms".into());
    }
    if let Some(check) = &upstream.health_check {
        if !check.path.starts_with('/') {
            return bad(
                "health_check.path".into(),
                format!("health_check path `{}` must start with `/`", check.path),
            );
        }
        if check.interval_ms == 0 || check.timeout_ms == 0 {
            return bad(
                "health_check".into(),
                "health_check interval_ms and timeout_ms must be at least 1".into(),
            );
        }
        if check.healthy_threshold == 0 || check.unhealthy_threshold == 0 {
            return bad(
                "health_check".into(),
                "health_check thresholds must be at least 1".into(),
            );
        }
    }
    if let Some(passive) = &upstream.passive_health {
        if passive.consecutive_failures == 0 || passive.ejection_ms == 0 {
            return bad(
                "passive_health".into(),
                "passive_health consecutive_failures and ejection_ms must be at least 1".into(),
            );
        }
    }
    if let Some(breaker) = &upstream.circuit_breaker {
        if let Some(ratio) = breaker.failure_ratio {
            if !(ratio > 0.0 && ratio <= 1.0) {
                return bad(
                    "circuit_breaker.failure_ratio".into(),
                    format!("circuit_breaker failure_ratio {ratio} must be in (0, 1]"),
                );
            }
        }
        if breaker.consecutive_failures == 0 && breaker.failure_ratio.is_none() {
            return bad(
                "circuit_breaker".into(),
                "circuit_breaker needs consecutive_failures ≥ 1 or a failure_ratio".into(),
            );
        }
        if breaker.min_requests == 0 || breaker.window < breaker.min_requests {
            return bad(
                "circuit_breaker".into(),
                "circuit_breaker needs 1 ≤ min_requests ≤ window".into(),
            );
        }
        if breaker.open_ms == 0 || breaker.half_open_requests == 0 {
            return bad(
                "circuit_breaker".into(),
                "circuit_breaker open_ms and half_open_requests must be at least 1".into(),
            );
        }
    }
    let budget = &upstream.retry_budget;
    if !(budget.ratio >= 0.0 && budget.ratio.is_finite()) {
        return bad(
            "retry_budget.ratio".into(),
            format!("retry_budget ratio {} must be ≥ 0", budget.ratio),
        );
    }
    Ok(())
}

/// Checks a route's overrides; `Err((field, message))` with the field's
/// path below the route.
pub(super) fn check_route(route: &super::RouteConfig) -> Result<(), (FieldPath, String)> {
    if route.timeout_ms == Some(0) || route.connect_timeout_ms == Some(0) {
        let field = match route.timeout_ms {
            Some(0) => "timeout_ms",
            _ => "connect_timeout_ms",
        };
        return Err((field.into(), "timeouts must be at least 1 ms".into()));
    }
    Ok(())
}
