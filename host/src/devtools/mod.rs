//! Tools for plugin authors and operators, apart from the gateway itself
//! (feature `devtools`, on by default for the `wasmgate` binary): the
//! [`plugin_test`] engine, [`scaffold`]ing of new plugins, the embedded
//! [`demo`] and [`inspect`]ion of a plugin file. May use the whole library;
//! nothing in the gateway uses it.

pub mod demo;
pub mod inspect;
pub mod plugin_test;
pub mod scaffold;
