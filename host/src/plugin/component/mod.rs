//! WIT plugins: WebAssembly components built against `wit/`, run on
//! wasmtime's component model. [`bindings`] is the generated contract,
//! [`runtime`] compiles and pools instances, [`state`] is one instance's
//! store and [`host_api`] what its imports do, through `plugin::host`.

pub mod bindings;
mod host_api;
pub mod runtime;
pub mod state;
