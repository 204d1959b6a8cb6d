//! Capabilities are granted, not assumed: a route entry's `allow:` list says
//! which gated host capabilities its plugin may use. A plugin that imports an
//! ungranted capability is refused at load; a call outside its grant (an
//! outbound request to an upstream it was not given) is refused at run time.
//!
//! Logging, metrics and the request context are always available: they
//! reach nothing outside the gateway.

use super::bindings::CONTRACT_PACKAGE;
use std::collections::BTreeSet;
use std::fmt;

/// A host capability that needs a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// The shared key/value store.
    Kv,
    /// HTTP requests to configured upstreams.
    Outbound,
}

impl Capability {
    /// Every gated capability, for scanning a plugin's imports.
    pub const ALL: [Capability; 2] = [Capability::Kv, Capability::Outbound];

    /// The WIT interface name (`kv`, `outbound`), also the `allow:` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Kv => "kv",
            Capability::Outbound => "outbound",
        }
    }

    /// The capability a component import name (`wasmgate:plugin/kv@0.1.0`)
    /// refers to, if it is a gated one.
    pub fn of_import(import: &str) -> Option<Capability> {
        let interface = import.strip_prefix(CONTRACT_PACKAGE)?.strip_prefix('/')?;
        let interface = interface.split('@').next()?;
        Capability::ALL.into_iter().find(|c| c.name() == interface)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which upstreams a plugin may send outbound requests to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OutboundGrant {
    /// None: the default.
    #[default]
    Denied,
    /// `outbound:*`: every upstream in the config.
    AnyUpstream,
    /// `outbound:<name>` entries.
    Upstreams(BTreeSet<String>),
}

/// What one route entry's plugin may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub kv: bool,
    pub outbound: OutboundGrant,
}

/// An `allow:` entry that does not name a capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{entry}` is not a capability: expected `kv`, `outbound:<upstream>` or `outbound:*`")]
pub struct BadGrant {
    pub entry: String,
}

impl Grants {
    /// Everything, for tests and the harness where the author owns the host.
    pub fn all() -> Grants {
        Grants {
            kv: true,
            outbound: OutboundGrant::AnyUpstream,
        }
    }

    /// Parses an `allow:` list such as `[kv, outbound:users]`.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Grants, BadGrant> {
        let mut grants = Grants::default();
        for entry in entries {
            match entry.split_once(':') {
                None if entry == "kv" => grants.kv = true,
                Some(("outbound", "*")) => grants.outbound = OutboundGrant::AnyUpstream,
                Some(("outbound", upstream)) if !upstream.is_empty() => {
                    if let OutboundGrant::Denied = grants.outbound {
                        grants.outbound = OutboundGrant::Upstreams(BTreeSet::new());
                    }
                    if let OutboundGrant::Upstreams(set) = &mut grants.outbound {
                        set.insert(upstream.to_string());
                    }
                }
                _ => {
                    return Err(BadGrant {
                        entry: entry.to_string(),
                    })
                }
            }
        }
        Ok(grants)
    }

    /// Whether the capability is granted at all.
    pub fn allows(&self, capability: Capability) -> bool {
        match capability {
            Capability::Kv => self.kv,
            Capability::Outbound => self.outbound != OutboundGrant::Denied,
        }
    }

    /// Whether an outbound request to `upstream` is within the grant.
    pub fn allows_upstream(&self, upstream: &str) -> bool {
        match &self.outbound {
            OutboundGrant::Denied => false,
            OutboundGrant::AnyUpstream => true,
            OutboundGrant::Upstreams(set) => set.contains(upstream),
        }
    }

    /// Upstreams named in `outbound:<name>` entries, to check they exist.
    pub fn named_upstreams(&self) -> impl Iterator<Item = &str> {
        let set = match &self.outbound {
            OutboundGrant::Upstreams(set) => Some(set),
            _ => None,
        };
        set.into_iter().flatten().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_allow_lists() {
        let grants = Grants::parse(["kv", "outbound:users", "outbound:orders"]).unwrap();
        assert!(grants.allows(Capability::Kv));
        assert!(grants.allows_upstream("users"));
        assert!(grants.allows_upstream("orders"));
        assert!(!grants.allows_upstream("payments"));
        assert_eq!(
            grants.named_upstreams().collect::<Vec<_>>(),
            ["orders", "users"]
        );
        let any = Grants::parse(["outbound:*"]).unwrap();
        assert!(!any.allows(Capability::Kv));
        assert!(any.allows_upstream("anything"));
    }

    #[test]
    fn nothing_is_granted_by_default() {
        let none = Grants::parse([]).unwrap();
        assert!(!none.allows(Capability::Kv));
        assert!(!none.allows(Capability::Outbound));
        assert!(!none.allows_upstream("users"));
    }

    #[test]
    fn refuses_what_is_not_a_capability() {
        for bad in ["outbound", "outbound:", "filesystem", "kv:x"] {
            let err = Grants::parse([bad]).unwrap_err();
            assert_eq!(err.entry, bad);
        }
    }

    #[test]
    fn maps_import_names_to_capabilities() {
        assert_eq!(
            Capability::of_import("wasmgate:plugin/kv@0.1.0"),
            Some(Capability::Kv)
        );
        assert_eq!(
            Capability::of_import("wasmgate:plugin/outbound@0.1.0"),
            Some(Capability::Outbound)
        );
        assert_eq!(Capability::of_import("wasmgate:plugin/log@0.1.0"), None);
        assert_eq!(Capability::of_import("wasi:io/streams@0.2.0"), None);
    }
}
