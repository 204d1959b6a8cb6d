//! Host bindings generated from `wit/` — nothing else lives here.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    // kv and outbound do real I/O on the host (a shared store, upstream
    // calls); the rest are in-memory and stay synchronous.
    imports: {
        "wasmgate:plugin/kv": async,
        "wasmgate:plugin/outbound": async,
    },
    exports: { default: async },
});

pub use exports::wasmgate::plugin::handler::{
    PluginInfo, Request, RequestAction, Response, ResponseChanges,
};
pub use wasmgate::plugin::outbound::{OutboundRequest, OutboundResponse};
pub use wasmgate::plugin::types::{HeaderChanges, LogLevel, RequestChanges};

/// The contract version this host implements, from the WIT package.
pub const CONTRACT_PACKAGE: &str = "wasmgate:plugin";
