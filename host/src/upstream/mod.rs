//! Upstreams: named groups of servers reached over keep-alive connections
//! pooled per target and per worker (or through hyper's pooled client,
//! when they speak https or HTTP/2), and how a request gets to one of them.
//!
//! [`call`] is that way: pick a healthy target ([`balancer`], [`health`]),
//! ask the upstream's circuit breaker ([`breaker`]), send under the route's
//! connect and whole-request timeouts ([`connect`]), count the outcome for
//! passive health and the breaker, and retry a connect failure or an
//! idempotent 5xx on another target while the upstream's [`retry`] budget
//! allows. [`report`] shows all that to operators.
//!
//! Lives here: [`Upstream`] and its targets; each target's pool of plain
//! HTTP/1.1 connections the request drives itself ([`h1_pool`], with the
//! [`ResponseBody`] that hands a connection back); hyper's pooled clients
//! for TLS, HTTP/2 and upgrades ([`client`]); the call with its retries
//! ([`call`]); the current set by name ([`directory`]). May use `config`, `http::body`, `tls` and `observe`.

mod balancer;
mod breaker;
mod connect;
mod health;
pub mod report;
mod retry;

mod call;
mod client;
mod directory;
mod h1_pool;
mod response_body;

pub use balancer::Balancer;
pub use breaker::CircuitState;
pub use call::{call, send, CallPolicy, UpstreamError};
pub use client::{http_client, HttpClient};
pub use directory::UpstreamDirectory;
pub use response_body::ResponseBody;

use crate::config::{
    BalanceStrategy, HealthCheckConfig, PassiveHealthConfig, UpstreamConfig, UpstreamProtocol,
};
use balancer::Weighed;
use breaker::Breaker;
use client::client_for;
use health::TargetHealth;
use http::uri::{Authority, Scheme};
use retry::RetryBudget;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One server of an upstream and what the gateway knows about it.
#[derive(Debug)]
pub struct Target {
    pub authority: Authority,
    pub weight: u32,
    /// Requests sent and not yet answered (response headers), for `least_request`.
    outstanding: AtomicUsize,
    pub health: TargetHealth,
    /// Its `Host` for a request that has none (HTTP/1.0, or HTTP/2 without `:authority`).
    host: http::HeaderValue,
    /// Its idle plain HTTP/1.1 connections.
    pool: Arc<h1_pool::Pool>,
}

impl Weighed for Target {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// A named group of interchangeable servers, with its health, breaker,
/// retry budget and connection pool. Lives as long as a generation uses it:
/// a reload that leaves its config unchanged hands it on as it is
/// ([`Upstream::reuse_or_new`]).
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Target>,
    balancer: Balancer,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Its `wasmgate_upstream_duration_seconds` series, looked up once here
    /// rather than by label on every request.
    pub duration: prometheus::Histogram,
    health_check: Option<HealthCheckConfig>,
    passive: Option<PassiveHealthConfig>,
    breaker: Option<Breaker>,
    budget: RetryBudget,
    scheme: Scheme,
    /// Its own client when its TLS settings or HTTP version differ from the shared one's.
    client: Option<HttpClient>,
    /// The config it was built from, to tell on reload whether it changed.
    config: UpstreamConfig,
    /// Its health-check task, started once when first published and
    /// stopped when the upstream is dropped.
    checks: OnceLock<health::Checks>,
}

impl Upstream {
    /// An upstream from its (already validated) config.
    pub fn new(name: &str, config: &UpstreamConfig) -> Upstream {
        let targets: Vec<Target> = config
            .targets
            .iter()
            .filter_map(|t| {
                let authority: Authority = t.address.parse().ok()?;
                Some(Target {
                    host: http::HeaderValue::from_str(authority.as_str()).ok()?,
                    authority,
                    weight: t.weight.max(1),
                    outstanding: AtomicUsize::new(0),
                    health: TargetHealth::default(),
                    pool: h1_pool::Pool::new(),
                })
            })
            .collect();
        Upstream {
            name: name.to_string(),
            balancer: Balancer::new(config.balance, targets.len()),
            targets,
            timeout: Duration::from_millis(config.timeout_ms),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            duration: crate::observe::metrics::metrics()
                .upstream_duration
                .with_label_values(&[name]),
            health_check: config.health_check.clone(),
            passive: config.passive_health.clone(),
            breaker: config.circuit_breaker.clone().map(Breaker::new),
            budget: RetryBudget::new(&config.retry_budget),
            scheme: match config.tls {
                Some(_) => Scheme::HTTPS,
                None => Scheme::HTTP,
            },
            client: (config.tls.is_some() || config.protocol != UpstreamProtocol::Http1)
                .then(|| client_for(config.tls.as_ref(), config.protocol)),
            config: config.clone(),
            checks: OnceLock::new(),
        }
    }

    /// The upstream `name` of a new generation: `previous`'s own when its
    /// config is unchanged, so a reload keeps its breaker, health verdicts,
    /// ejections, retry budget, connection pool and health checks; a new
    /// one (starting afresh) otherwise.
    pub fn reuse_or_new(
        name: &str,
        config: &UpstreamConfig,
        previous: Option<&Arc<Upstream>>,
    ) -> Arc<Upstream> {
        match previous {
            Some(upstream) if upstream.config == *config => upstream.clone(),
            _ => Arc::new(Upstream::new(name, config)),
        }
    }

    /// Starts its health checks unless they run already (or none are
    /// configured); `client` gives the client they use.
    fn start_checks(self: &Arc<Self>, client: impl FnOnce() -> HttpClient) {
        if let Some(check) = &self.health_check {
            self.checks.get_or_init(|| {
                health::spawn_checks(Arc::downgrade(self), check.clone(), client())
            });
        }
    }

    /// A healthy target not in `tried` (or, failing that, any healthy one),
    /// by `balancer` or the upstream's own.
    fn pick(&self, balancer: Option<&Balancer>, tried: &[usize]) -> Option<usize> {
        let balancer = balancer.unwrap_or(&self.balancer);
        let healthy = |i: usize| self.targets[i].health.is_healthy();
        if let (BalanceStrategy::RoundRobin, Some(&last)) = (balancer.strategy, tried.last()) {
            // A retry takes the next target without consuming a turn, so a
            // failing target does not shift the rotation onto itself.
            let n = self.targets.len();
            let next = |untried: bool| {
                (1..=n)
                    .map(|k| (last + k) % n)
                    .find(|&i| healthy(i) && !(untried && tried.contains(&i)))
            };
            return next(true).or_else(|| next(false));
        }
        balancer
            .pick(&self.targets, |i| healthy(i) && !tried.contains(&i))
            .or_else(|| balancer.pick(&self.targets, healthy))
    }

    /// Whether at least one target may get traffic.
    pub fn has_healthy_target(&self) -> bool {
        self.targets.iter().any(|t| t.health.is_healthy())
    }

    /// The breaker's state (closed when there is no breaker).
    pub fn circuit_state(&self) -> CircuitState {
        self.breaker
            .as_ref()
            .map_or(CircuitState::Closed, Breaker::state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> UpstreamConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn a_reload_hands_on_an_upstream_only_while_its_config_is_unchanged() {
        let same = config("targets: ['127.0.0.1:1']");
        let first = Upstream::reuse_or_new("u", &same, None);
        let kept = Upstream::reuse_or_new("u", &same.clone(), Some(&first));
        assert!(Arc::ptr_eq(&first, &kept));
        let changed = config("targets: ['127.0.0.1:1']\ntimeout_ms: 5");
        let fresh = Upstream::reuse_or_new("u", &changed, Some(&first));
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(fresh.timeout, Duration::from_millis(5));
    }
}
