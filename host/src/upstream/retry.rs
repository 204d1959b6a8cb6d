//! When a failed attempt may be tried again, and the per-upstream budget
//! that keeps retries from multiplying load during an outage.

use crate::config::{RetryBudgetConfig, RetryConfig};
use http::Method;
use std::sync::Mutex;

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection: nothing was sent, any method may be retried.
    Connect,
    /// The target answered 5xx.
    ServerError,
    /// Anything else after the request may have been sent.
    Other,
    /// The request's own body failed (too large, too slow, broken off by
    /// the client): the target is not to blame, so neither its health nor
    /// the breaker counts it, and it is not retried.
    RequestBody,
}

/// Whether `failure` of a `method` request may be retried under `policy`.
pub fn retryable(policy: &RetryConfig, method: &Method, failure: Failure) -> bool {
    match failure {
        Failure::Connect => true,
        Failure::ServerError => policy.on_5xx && is_idempotent(method),
        Failure::Other | Failure::RequestBody => false,
    }
}

/// RFC 9110 §9.2.2: repeating these has the same effect as sending once.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A token bucket of retries: each request deposits `ratio`, each retry
/// withdraws one; holds at most `reserve` and starts full.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    cap: f64,
    tokens: Mutex<f64>,
}

impl RetryBudget {
    /// A full budget.
    pub fn new(config: &RetryBudgetConfig) -> RetryBudget {
        let cap = f64::from(config.reserve);
        RetryBudget {
            ratio: config.ratio,
            cap,
            tokens: Mutex::new(cap),
        }
    }

    /// A request was sent: it earns `ratio` of a retry.
    pub fn deposit(&self) {
        let mut tokens = self.tokens.lock().expect("budget lock");
        *tokens = (*tokens + self.ratio).min(self.cap.max(1.0));
    }

    /// Takes one retry from the budget, if there is one.
    pub fn withdraw(&self) -> bool {
        let mut tokens = self.tokens.lock().expect("budget lock");
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_starts_full_and_refills_by_ratio() {
        let budget = RetryBudget::new(&RetryBudgetConfig {
            ratio: 0.5,
            reserve: 2,
        });
        assert!(budget.withdraw() && budget.withdraw());
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(budget.withdraw());
    }

    #[test]
    fn only_connect_failures_retry_non_idempotent_requests() {
        let policy = RetryConfig {
            attempts: 1,
            on_5xx: true,
        };
        assert!(retryable(&policy, &Method::POST, Failure::Connect));
        assert!(!retryable(&policy, &Method::POST, Failure::ServerError));
        assert!(retryable(&policy, &Method::GET, Failure::ServerError));
        assert!(!retryable(&policy, &Method::GET, Failure::Other));
    }
}
