//! `ip-filter`: lets a request through only from allowed networks, and never
//! from denied ones (IPv4 and IPv6 CIDRs).
//!
//! ```yaml
//! - name: ip-filter
//!   config:
//!     allow: [10.0.0.0/8, "2001:db8::/32"]   # if set, only these
//!     deny: [10.6.6.0/24, 192.0.2.7]         # never these (wins over allow)
//!     trusted_hops: 0                        # proxies in front that append X-Forwarded-For
//! ```
//!
//! The client address is the socket peer, or with `trusted_hops: N` the
//! address the outermost of N trusted proxies saw, read from
//! `X-Forwarded-For`. Refused: `403` `{"error": "...", "code": "ip_forbidden"}`.
//! Allowed: the context key `ip-filter.client_ip` holds the address. See README.md.

use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use wasmgate_plugin_sdk::prelude::*;

/// Most proxies a request may come through that we still count.
const MAX_TRUSTED_HOPS: usize = 16;

/// Context key with the client address the plugin decided on.
const CTX_CLIENT_IP: &str = "ip-filter.client_ip";

/// The plugin's config as written in the route entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// If not empty, only clients in one of these networks pass.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Clients in these networks never pass, even when allowed.
    #[serde(default)]
    pub deny: Vec<String>,
    /// How many proxies in front of the gateway append to `X-Forwarded-For`
    /// and are trusted to tell the truth (default 0: use the socket peer).
    #[serde(default)]
    pub trusted_hops: usize,
}

/// The plugin: parsed networks and the trusted hop count.
pub struct IpFilter {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    trusted_hops: usize,
}

/// A network (`10.0.0.0/8`) or a single address (`192.0.2.7`, `::1`).
fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    let net = text
        .parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))?;
    Some(net.trunc())
}

/// Every entry of a list as a network, or the first bad one by field and index.
fn parse_list(field: &str, entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse_net(text).ok_or_else(|| {
                format!("{field}[{i}]: `{text}` is not an IP address or CIDR network")
            })
        })
        .collect()
}

/// An address as the filter compares it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`,
/// what dual-stack sockets report) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// An `X-Forwarded-For` entry: a bare address, or one with a port.
fn parse_hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// Every `X-Forwarded-For` entry, left (farthest) to right (nearest).
fn forwarded_for(request: &Request) -> Vec<&str> {
    request
        .headers
        .iter()
        .filter(|(name, _)| name == "x-forwarded-for")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect()
}

impl IpFilter {
    /// The client's address: the socket peer, or the entry the outermost
    /// trusted proxy added. `None` when the header cannot say (fewer entries
    /// than trusted proxies, or an entry that is not an address): a request
    /// that did not come the expected way is refused, never guessed at.
    fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        let peer = parse_hop(&request.client_addr)?;
        if self.trusted_hops == 0 {
            return Some(peer);
        }
        let mut hops = forwarded_for(request);
        // The gateway appends the socket peer itself; that one is not a hop.
        if hops.last().and_then(|h| parse_hop(h)) == Some(peer) {
            hops.pop();
        }
        let index = hops.len().checked_sub(self.trusted_hops)?;
        parse_hop(hops[index])
    }

    fn allows(&self, ip: IpAddr) -> bool {
        let denied = self.deny.iter().any(|net| net.contains(&ip));
        let allowed = self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip));
        allowed && !denied
    }
}

fn forbidden(request: &Request, message: &str) -> RequestAction {
    metrics::counter_add("ip_forbidden", 1, &[("route", &request.route)]);
    RequestAction::Respond(Response::error(403, "ip_forbidden", message))
}

impl Plugin for IpFilter {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.allow.is_empty() && config.deny.is_empty() {
            return Err("allow, deny: at least one must list a network".into());
        }
        if config.trusted_hops > MAX_TRUSTED_HOPS {
            return Err(format!("trusted_hops: must be at most {MAX_TRUSTED_HOPS}"));
        }
        Ok(IpFilter {
            allow: parse_list("allow", &config.allow)?,
            deny: parse_list("deny", &config.deny)?,
            trusted_hops: config.trusted_hops,
        })
    }

    /// Reads `X-Forwarded-For` only when it trusts proxies; nothing else.
    fn header_interest(&self) -> Option<Vec<String>> {
        let names = if self.trusted_hops > 0 {
            vec!["x-forwarded-for".to_string()]
        } else {
            Vec::new()
        };
        Some(names)
    }

    fn on_request(&self, request: &Request) -> RequestAction {
        let Some(ip) = self.client_ip(request) else {
            return forbidden(request, "client address cannot be determined");
        };
        if !self.allows(ip) {
            return forbidden(request, "client address not allowed");
        }
        context::set(CTX_CLIENT_IP, &ip.to_string());
        RequestAction::Continue(RequestChanges::new())
    }
}

export_plugin!(IpFilter);
