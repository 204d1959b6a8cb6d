//! Plugins: the runtimes that run them ([`component`]: WIT components on
//! wasmtime; [`proxy_wasm`]: Proxy-Wasm filters, core modules; [`entry`]:
//! one route entry's pool, of either kind), what every runtime shares — the capabilities a plugin imports
//! ([`host`]), the bounds on what it hands over ([`bounds`]), its grants
//! ([`grants`]), its fault breaker ([`guard`]) — and the [`catalog`] of
//! loaded plugin files. May use `config`, `observe` and `upstream`.

pub mod bounds;
pub mod catalog;
pub mod component;
pub mod entry;
pub mod grants;
pub mod guard;
pub mod host;
pub mod idle;
pub mod proxy_wasm;

pub use component::bindings;
pub use component::runtime::{CompiledPlugin, PluginLimits, PluginPool, PluginRuntime, Tier};
pub use component::state::RequestContext;
pub use entry::EntryPool;
pub use grants::{Capability, Grants};
pub use host::{HostServices, KvStore, MemoryKv, Outbound, Telemetry};

use std::path::PathBuf;
use std::time::Duration;

/// The contract version this host implements (the `wit/` package version).
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Whether a plugin built against contract `version` can run on this host:
/// same major, and same minor while the major is 0 (semver's rule).
pub fn compatible_version(version: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (parse(version), parse(CONTRACT_VERSION)) {
        (Some((0, minor)), Some((0, ours))) => minor == ours,
        (Some((major, _)), Some((ours, _))) => major == ours,
        _ => false,
    }
}

/// A plugin that could not be loaded; the previous version (if any) keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    #[error("plugin engine: {0}")]
    Engine(String),
    #[error("{file}: cannot read plugin: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not a valid Wasm component: {message}")]
    Compile { file: PathBuf, message: String },
    #[error("{file}: incompatible with the plugin contract: {message}")]
    Contract { file: PathBuf, message: String },
    #[error("plugin `{plugin}` on route `{route}` imports the `{capability}` capability, which its route entry does not grant: add it to the entry's `allow:` list (`kv`, `outbound:<upstream>`)")]
    NotGranted {
        plugin: String,
        route: String,
        capability: Capability,
    },
    #[error("plugin `{plugin}` on route `{route}` refused its config: {message}")]
    Init {
        plugin: String,
        route: String,
        message: String,
    },
}

/// Why one plugin call failed. The request fails (per `on_error`); the
/// gateway goes on.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PluginFault {
    #[error("trapped: {0}")]
    Trap(String),
    #[error("exceeded its call deadline of {timeout:?}")]
    Deadline { timeout: Duration },
    #[error("exceeded its memory cap of {limit_bytes} bytes")]
    Memory { limit_bytes: usize },
    #[error("{0}")]
    Config(String),
    /// A hook returned something the host refuses to act on (an invalid
    /// header, status or path, a body or header set over the bounds); see
    /// [`bounds`].
    #[error("returned an invalid result: {0}")]
    InvalidOutput(String),
    /// Not run: the entry's fault breaker is open.
    #[error("not run: tripped by repeated faults (retry in {retry_after:?})")]
    Tripped { retry_after: Duration },
    /// Not run: the entry had `limit` calls in flight for all of `waited`.
    #[error("not run: {limit} calls in flight, none finished within {waited:?}")]
    Busy { limit: usize, waited: Duration },
}

impl PluginFault {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginFault::Trap(_) => "trap",
            PluginFault::Deadline { .. } => "deadline",
            PluginFault::Memory { .. } => "memory",
            PluginFault::Config(_) => "config",
            PluginFault::InvalidOutput(_) => "invalid_output",
            PluginFault::Tripped { .. } => "breaker_open",
            PluginFault::Busy { .. } => "busy",
        }
    }

    /// The plugin did not run (breaker open, or no free slot): not a fault
    /// of the plugin's, and not counted as one.
    pub fn is_rejection(&self) -> bool {
        matches!(self, PluginFault::Tripped { .. } | PluginFault::Busy { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compatibility_follows_semver() {
        assert!(compatible_version("0.1.0"));
        assert!(compatible_version("0.1.7"));
        assert!(!compatible_version("0.2.0"));
        assert!(!compatible_version("1.0.0"));
        assert!(!compatible_version("garbage"));
    }
}
