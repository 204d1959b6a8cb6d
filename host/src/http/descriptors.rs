//! The open-file limit. Every proxied connection needs descriptors — the
//! client's socket and the upstream connection's — so a `max_connections`
//! the process cannot open files for would not cap anything: past the
//! limit, accepts and upstream connects fail with `EMFILE` and the clients
//! already accepted get 502s. At start the soft `RLIMIT_NOFILE` is raised to
//! the hard limit, then each listener's `max_connections` is clamped to its
//! share of what that limit allows after a reserve, with a warning.

/// Descriptors one proxied connection may need: the client's socket and
/// the upstream connection's.
pub const PER_CONNECTION: u64 = 2;

/// Descriptors kept aside for everything else: the listeners, the admin
/// listener and its clients, the config and plugin watchers, log files,
/// health checks, plugins' outbound calls, the runtime's own.
pub const RESERVE: u64 = 128;

/// The open-file limit the gateway runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The limit in force (after raising it).
    pub soft: u64,
    /// The ceiling an unprivileged process may raise it to.
    pub hard: u64,
    /// The soft limit before it was raised, if it was.
    pub raised_from: Option<u64>,
}

/// Raises the soft open-file limit to the hard one; the limits in force.
pub fn raise_to_hard() -> std::io::Result<NofileLimit> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft >= hard {
        return Ok(NofileLimit {
            soft,
            hard,
            raised_from: None,
        });
    }
    rlimit::Resource::NOFILE.set(hard, hard)?;
    Ok(NofileLimit {
        soft: hard,
        hard,
        raised_from: Some(soft),
    })
}

/// Connections each of `listeners` listeners can serve under an open-file
/// limit of `limit` (at least one).
pub fn connections_allowed(limit: u64, listeners: usize) -> usize {
    let listeners = listeners.max(1) as u64;
    let each = limit.saturating_sub(RESERVE) / PER_CONNECTION / listeners;
    usize::try_from(each).unwrap_or(usize::MAX).max(1)
}

/// A `max_connections` lowered to what the open-file limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clamp {
    /// `limits.max_connections` as configured.
    pub configured: usize,
    /// What each listener serves instead.
    pub allowed: usize,
    /// The soft open-file limit it was computed from.
    pub limit: u64,
    /// Listeners sharing the limit.
    pub listeners: usize,
}

impl std::fmt::Display for Clamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "limits.max_connections {} is more than the open-file limit allows: each listener \
             serves at most {} connections (open-file limit {}: {PER_CONNECTION} descriptors per \
             proxied connection, {RESERVE} in reserve, {} listener(s)); raise the hard limit \
             (ulimit -Hn, systemd LimitNOFILE=) or lower max_connections",
            self.configured, self.allowed, self.limit, self.listeners
        )
    }
}

/// `configured` connections per listener, or the clamp to what `limit`
/// allows when that is fewer.
pub fn clamp(configured: usize, limit: u64, listeners: usize) -> Result<usize, Clamp> {
    let allowed = connections_allowed(limit, listeners);
    if configured <= allowed {
        return Ok(configured);
    }
    Err(Clamp {
        configured,
        allowed,
        limit,
        listeners,
    })
}

/// At start: raises the soft limit, then returns the `max_connections` each
/// of `listeners` listeners serves, logging a warning when it is clamped.
/// If the limit cannot be read, `configured` stands (with a warning).
pub fn max_connections_per_listener(configured: usize, listeners: usize) -> usize {
    let limit = match raise_to_hard() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!("cannot read or raise the open-file limit, max_connections is not checked against it: {e}");
            return configured;
        }
    };
    if let Some(from) = limit.raised_from {
        tracing::info!(
            "raised the open-file soft limit from {from} to the hard limit {}",
            limit.soft
        );
    }
    clamp(configured, limit.soft, listeners).unwrap_or_else(|clamp| {
        tracing::warn!("{clamp}");
        clamp.allowed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_descriptors_per_connection_after_the_reserve_shared_by_listeners() {
        assert_eq!(connections_allowed(256, 1), 64);
        assert_eq!(connections_allowed(1024, 1), 448);
        assert_eq!(connections_allowed(1024, 2), 224);
        assert_eq!(connections_allowed(64, 1), 1, "never zero");
        assert_eq!(
            connections_allowed(u64::MAX, 1) as u64,
            (u64::MAX - RESERVE) / 2
        );
    }

    #[test]
    fn only_a_configured_value_over_the_allowance_is_clamped() {
        assert_eq!(clamp(64, 256, 1), Ok(64));
        let clamped = clamp(10_000, 256, 1).unwrap_err();
        assert_eq!(clamped.allowed, 64);
        let warning = clamped.to_string();
        for part in ["max_connections 10000", "at most 64", "open-file limit 256"] {
            assert!(warning.contains(part), "{warning}");
        }
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let limit = raise_to_hard().unwrap();
        assert_eq!(limit.soft, limit.hard);
        assert_eq!(
            rlimit::Resource::NOFILE.get().unwrap(),
            (limit.hard, limit.hard)
        );
    }
}
