//! Whether an upstream response may be stored, and for how long: the
//! response's own `Cache-Control`, `Age`, `Vary` and `Set-Cookie` decide,
//! within the limits of the config.

use std::collections::BTreeSet;

/// The `Cache-Control` directives that matter to a shared cache.
#[derive(Debug, Default, PartialEq, Eq)]
struct Directives {
    /// `no-store`, `private` or `no-cache` (with or without field names).
    forbidden: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
}

/// What the config allows; the response may only narrow it.
pub struct Policy {
    pub ttl_ms: u64,
    pub statuses: Vec<u16>,
    pub max_body_bytes: usize,
    /// Largest entry stored: key plus encoded response.
    pub max_entry_bytes: usize,
    /// Lower-case request headers that are part of the key.
    pub vary: BTreeSet<String>,
}

impl Policy {
    /// How long to keep this response, or `None` when it must not be stored.
    pub fn ttl_ms(
        &self,
        status: u16,
        headers: &[(String, String)],
        body_len: usize,
    ) -> Option<u64> {
        if !self.statuses.contains(&status) || body_len > self.max_body_bytes {
            return None;
        }
        if has(headers, "set-cookie") || !self.covers_vary(headers) {
            return None;
        }
        let directives = directives(headers);
        if directives.forbidden {
            return None;
        }
        let lifetime_ms = match directives.s_maxage.or(directives.max_age) {
            Some(secs) => secs
                .saturating_sub(age_secs(headers))
                .saturating_mul(1000)
                .min(self.ttl_ms),
            None => self.ttl_ms,
        };
        (lifetime_ms > 0).then_some(lifetime_ms)
    }

    /// The response varies only by headers the key already holds; `Vary: *`
    /// varies by anything, so it never does.
    fn covers_vary(&self, headers: &[(String, String)]) -> bool {
        values(headers, "vary")
            .flat_map(|v| v.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .all(|name| self.vary.contains(&name))
    }
}

/// The upstream's `Age` in seconds (0 when absent or unreadable).
pub fn age_secs(headers: &[(String, String)]) -> u64 {
    values(headers, "age")
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn directives(headers: &[(String, String)]) -> Directives {
    let mut found = Directives::default();
    for directive in values(headers, "cache-control").flat_map(|v| v.split(',')) {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        let seconds = || value.and_then(|v| v.parse::<u64>().ok());
        match name.to_ascii_lowercase().as_str() {
            "no-store" | "private" | "no-cache" => found.forbidden = true,
            // An unreadable max-age counts as stale (RFC 9111 §4.2.1).
            "max-age" => found.max_age = Some(seconds().unwrap_or(0)),
            "s-maxage" => found.s_maxage = Some(seconds().unwrap_or(0)),
            _ => {}
        }
    }
    found
}

fn values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has(headers: &[(String, String)], name: &str) -> bool {
    values(headers, name).next().is_some()
}
