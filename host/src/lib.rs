//! wasmgate: an API gateway whose every policy is a sandboxed WebAssembly
//! component.
//!
//! A request flows: [`http::server`] (hyper listener, [`tls`] termination) →
//! [`proxy::handle`] → [`proxy::router`] picks the route →
//! [`proxy::chain`] runs the route's plugins' request hooks in order →
//! [`upstream::call`] sends it on → the response hooks run in reverse order →
//! back to the client ([`http::websocket`] upgrades become a tunnel after the
//! request hooks). Plugins run in [`plugin`] (wasmtime component model,
//! contract in `wit/`) with the capabilities of [`plugin::host`].
//!
//! Around that path: [`http`] bounds what clients send and hold;
//! [`observe`] counts, logs and traces every request; [`config`] is the
//! file, [`gateway::Gateway`] one immutable generation built from it, and
//! [`reload`] builds the next one when the config or a plugin file changes
//! and swaps it in atomically; [`admin`] answers operators; [`launch`]
//! builds and runs all of it. [`devtools`] (feature `devtools`) is for
//! plugin authors: `wasmgate plugin test`, scaffolding, the demo.
//!
//! Run `examples/quickstart/wasmgate.yaml` with `make demo`; embed with [`start`].

pub mod admin;
pub mod config;
#[cfg(feature = "devtools")]
pub mod devtools;
pub mod gateway;
pub mod http;
pub mod launch;
pub mod observe;
pub mod plugin;
pub mod proxy;
pub mod reload;
pub mod tls;
pub mod upstream;

pub use launch::{start, validate, RunningGateway, StartError, DRAIN_DEADLINE};
