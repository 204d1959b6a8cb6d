//! The Rust SDK for wasmgate plugins.
//!
//! A plugin is a type implementing [`Plugin`], exported with
//! [`export_plugin!`] from a `cdylib` crate built for `wasm32-wasip2`:
//!
//! ```ignore
//! use wasmgate_plugin_sdk::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! struct Config { greeting: String }
//!
//! struct Hello(Config);
//!
//! impl Plugin for Hello {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, String> { Ok(Hello(config)) }
//!     fn on_request(&self, _req: &Request) -> RequestAction {
//!         RequestAction::Continue(RequestChanges::new().set_header("x-greeting", &self.0.greeting))
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! The contract itself lives in the repository's `wit/` package; the types
//! here are generated from it by `wit-bindgen`. With the `harness` feature
//! (native targets only) [`harness`] loads a compiled plugin in-process so a
//! plugin's tests are ordinary `#[test]`s; see `plugins/headers/tests/`.

mod capabilities;
pub mod query;
pub mod template;
mod types;

/// Bindings generated from `wit/` (the single definition of the contract).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "wasmgate_plugin_sdk::bindings",
    });
}

#[cfg(all(feature = "harness", not(target_arch = "wasm32")))]
pub mod harness;

pub use bindings::wasmgate::plugin::outbound::{OutboundRequest, OutboundResponse};
pub use bindings::wasmgate::plugin::types::{
    HeaderChanges, Headers, LogLevel, PluginInfo, Request, RequestAction, RequestChanges, Response,
    ResponseChanges,
};
pub use capabilities::{context, kv, log, metrics, outbound};

/// The everyday imports of a plugin crate.
pub mod prelude {
    pub use crate::{
        context, export_plugin, kv, log, metrics, outbound, Plugin, PluginInfo, Request,
        RequestAction, RequestChanges, Response, ResponseChanges,
    };
}

/// A wasmgate plugin: built once per instance from its route-entry config,
/// then asked about each request and (if [`Plugin::info`] says so) each response.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The plugin's config, deserialized from the route entry's `config` JSON.
    /// Use `#[serde(deny_unknown_fields)]` so a typo is refused at load time.
    type Config: serde::de::DeserializeOwned;

    /// Builds the plugin; an `Err` rejects the config at load time with this message.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// Which hooks and bodies this plugin needs; the host skips the rest.
    fn info(&self) -> PluginInfo {
        PluginInfo {
            wants_request_body: false,
            wants_response: false,
            wants_response_body: false,
        }
    }

    /// The request hook: go on (with changes) or answer at once.
    fn on_request(&self, _request: &Request) -> RequestAction {
        RequestAction::Continue(RequestChanges::new())
    }

    /// The response hook, called in reverse chain order when `info().wants_response`.
    fn on_response(&self, _response: &Response) -> ResponseChanges {
        ResponseChanges::new()
    }

    /// The header names this plugin reads (any case); the host then copies
    /// only those into each call, which is much cheaper than all of them.
    /// `None` (the default): every header.
    fn header_interest(&self) -> Option<Vec<String>> {
        None
    }
}

/// Glue between [`Plugin`] and the generated export trait; used by [`export_plugin!`].
#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::sync::OnceLock;

    pub fn init<P: Plugin>(slot: &OnceLock<P>, config: String) -> Result<PluginInfo, String> {
        let config: P::Config = serde_json::from_str(if config.trim().is_empty() {
            "null"
        } else {
            &config
        })
        .map_err(|e| format!("invalid config: {e}"))?;
        let plugin = P::new(config)?;
        let info = plugin.info();
        slot.set(plugin)
            .map_err(|_| "init called twice on one instance".to_string())?;
        Ok(info)
    }

    pub fn get<P: Plugin>(slot: &OnceLock<P>) -> &P {
        slot.get()
            .expect("wasmgate host calls init before any hook")
    }
}

/// Exports a [`Plugin`] implementation as the component's `handler`.
///
/// Only on wasm targets: a native build of a plugin crate (to run its
/// harness tests) must not export component-model symbols.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static PLUGIN: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();
            struct Export;
            impl $crate::bindings::exports::wasmgate::plugin::handler::Guest for Export {
                fn init(config: String) -> Result<$crate::PluginInfo, String> {
                    $crate::__private::init::<$plugin>(&PLUGIN, config)
                }
                fn on_request(request: $crate::Request) -> $crate::RequestAction {
                    $crate::Plugin::on_request($crate::__private::get(&PLUGIN), &request)
                }
                fn on_response(response: $crate::Response) -> $crate::ResponseChanges {
                    $crate::Plugin::on_response($crate::__private::get(&PLUGIN), &response)
                }
                fn header_interest() -> Option<Vec<String>> {
                    $crate::Plugin::header_interest($crate::__private::get(&PLUGIN))
                }
            }
    $crate::bindings::export_raw!(Export with_types_in $crate::bindings);
        };
    };
}
