//! Whether a target may get traffic: active health checks (a probe loop
//! per upstream) and passive ejection (real requests failing in a row).
//!
//! A target is healthy when its last active verdict is healthy (targets
//! start healthy) and it is not ejected. A passing active check also ends
//! an ejection early; otherwise an ejection ends after `ejection_ms`.

use super::{HttpClient, Upstream};
use crate::config::{HealthCheckConfig, PassiveHealthConfig};
use crate::http::body::empty;
use http::uri::{PathAndQuery, Scheme};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// The health of one target.
#[derive(Debug)]
pub struct TargetHealth {
    /// The active checks' verdict.
    active_ok: AtomicBool,
    /// Consecutive active results agreeing against the verdict.
    streak: AtomicU32,
    /// Consecutive failed real requests.
    failures: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
}

impl Default for TargetHealth {
    fn default() -> Self {
        TargetHealth {
            active_ok: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejected_until: Mutex::new(None),
        }
    }
}

impl TargetHealth {
    /// Whether the target may get traffic now.
    pub fn is_healthy(&self) -> bool {
        self.active_ok.load(Ordering::Relaxed) && !self.is_ejected()
    }

    /// Whether passive health has taken the target out for now.
    pub fn is_ejected(&self) -> bool {
        let mut until = self.ejected_until.lock().expect("health lock");
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Counts a real request's outcome; ejects after too many failures in a row.
    pub fn record_request(&self, ok: bool, passive: Option<&PassiveHealthConfig>) {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            return;
        }
        let Some(passive) = passive else { return };
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= passive.consecutive_failures {
            self.failures.store(0, Ordering::Relaxed);
            *self.ejected_until.lock().expect("health lock") =
                Some(Instant::now() + Duration::from_millis(passive.ejection_ms));
        }
    }

    /// Counts an active probe's outcome; flips the verdict at the thresholds.
    /// Returns the new verdict when it changed.
    pub fn record_check(&self, ok: bool, check: &HealthCheckConfig) -> Option<bool> {
        let verdict = self.active_ok.load(Ordering::Relaxed);
        if ok {
            *self.ejected_until.lock().expect("health lock") = None;
        }
        if ok == verdict {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = if ok {
            check.healthy_threshold
        } else {
            check.unhealthy_threshold
        };
        if streak < threshold {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.active_ok.store(ok, Ordering::Relaxed);
        Some(ok)
    }
}

/// An upstream's running health-check task; dropping it (with its
/// upstream, once no generation uses it) stops the task.
#[derive(Debug)]
pub struct Checks(tokio::task::JoinHandle<()>);

impl Drop for Checks {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Probes every target of `upstream` each interval until the returned
/// [`Checks`] is dropped. The task holds the upstream weakly, so it never
/// keeps a removed or replaced upstream alive.
pub fn spawn_checks(
    upstream: Weak<Upstream>,
    check: HealthCheckConfig,
    client: HttpClient,
) -> Checks {
    Checks(tokio::spawn(async move {
        let interval = Duration::from_millis(check.interval_ms);
        let timeout = Duration::from_millis(check.timeout_ms);
        let path: PathAndQuery = match check.path.parse() {
            Ok(p) => p,
            Err(_) => return,
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(upstream) = upstream.upgrade() else {
                return;
            };
            let (upstream, check, client) = (&upstream, &check, &client);
            let probes = upstream.targets.iter().map(|target| {
                let path = path.clone();
                async move {
                    let client = upstream.client.as_ref().unwrap_or(client);
                    let origin = (upstream.scheme.clone(), target.authority.clone());
                    let ok = probe(client, origin, path, timeout).await;
                    if let Some(healthy) = target.health.record_check(ok, check) {
                        tracing::warn!(
                            upstream = %upstream.name,
                            target = %target.authority,
                            "health check: target is now {}",
                            if healthy { "healthy" } else { "unhealthy" }
                        );
                    }
                }
            });
            futures::future::join_all(probes).await;
        }
    }))
}

/// One `GET path` to a target (its scheme and authority): a 2xx within
/// `timeout` is a success.
async fn probe(
    client: &HttpClient,
    (scheme, authority): (Scheme, http::uri::Authority),
    path: PathAndQuery,
    timeout: Duration,
) -> bool {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path);
    let Ok(uri) = http::Uri::from_parts(parts) else {
        return false;
    };
    let mut request = http::Request::new(empty());
    *request.uri_mut() = uri;
    let call = super::connect::with_connect_timeout(timeout, client.request(request));
    matches!(
        tokio::time::timeout(timeout, call).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheckConfig {
        HealthCheckConfig {
            path: "/h".into(),
            interval_ms: 10,
            timeout_ms: 10,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    #[test]
    fn verdict_flips_only_at_the_thresholds() {
        let h = TargetHealth::default();
        assert_eq!(h.record_check(false, &check()), None);
        assert_eq!(h.record_check(false, &check()), None);
        assert!(h.is_healthy());
        assert_eq!(h.record_check(false, &check()), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.record_check(true, &check()), None);
        assert_eq!(h.record_check(false, &check()), None);
        assert_eq!(h.record_check(true, &check()), None);
        assert_eq!(h.record_check(true, &check()), Some(true));
        assert!(h.is_healthy());
    }

    #[test]
    fn consecutive_request_failures_eject_until_the_deadline() {
        let passive = PassiveHealthConfig {
            consecutive_failures: 2,
            ejection_ms: 30,
        };
        let h = TargetHealth::default();
        h.record_request(false, Some(&passive));
        h.record_request(true, Some(&passive));
        h.record_request(false, Some(&passive));
        assert!(h.is_healthy());
        h.record_request(false, Some(&passive));
        assert!(!h.is_healthy());
        std::thread::sleep(Duration::from_millis(40));
        assert!(h.is_healthy());
    }
}
