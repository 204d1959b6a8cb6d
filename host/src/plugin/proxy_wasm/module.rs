//! Telling a Proxy-Wasm filter from a WIT component, and compiling it: a
//! core module exporting `proxy_abi_version_0_2_1` (or `_0_2_0`) is a
//! filter; a component is a WIT plugin.

use super::abi::VERSION_EXPORTS;
use super::hostcalls;
use super::instance::FilterState;
use crate::plugin::PluginError;
use std::path::Path;
use wasmtime::{Engine, ExternType, InstancePre, Linker, Module};

/// A compiled filter, linked and ready to instantiate.
pub struct FilterCode {
    pub(crate) pre: InstancePre<FilterState>,
    /// The ABI version it declares (`0.2.1` or `0.2.0`).
    pub abi_version: &'static str,
    /// Its imports, as `module::name`.
    pub imports: Vec<String>,
}

/// Whether `bytes` are a core Wasm module (binary version 1, layer 0), as
/// opposed to a component (layer 1): the header decides, before compiling.
pub fn is_core_module(bytes: &[u8]) -> bool {
    bytes.get(..8) == Some(b"\0asm\x01\x00\x00\x00")
}

/// The Proxy-Wasm ABI version a module declares, from its exports.
pub fn abi_version(module: &Module) -> Option<&'static str> {
    VERSION_EXPORTS
        .iter()
        .find(|(export, _)| module.get_export(export).is_some())
        .map(|(_, version)| *version)
}

/// Compiles a core module as a Proxy-Wasm filter against `linker` (the
/// host functions of [`hostcalls`]); any other `env` or WASI import gets a
/// logged stub, so a filter from another SDK loads and learns at run time
/// what is missing.
pub fn compile(
    engine: &Engine,
    linker: &Linker<FilterState>,
    file: &Path,
    bytes: &[u8],
) -> Result<FilterCode, PluginError> {
    let contract = |message: String| PluginError::Contract {
        file: file.to_path_buf(),
        message,
    };
    let module = Module::new(engine, bytes).map_err(|e| PluginError::Compile {
        file: file.to_path_buf(),
        message: format!("{e:#}"),
    })?;
    let abi_version = abi_version(&module).ok_or_else(|| {
        contract(
            "a core Wasm module that exports neither `proxy_abi_version_0_2_1` nor `proxy_abi_version_0_2_0`: not a Proxy-Wasm filter (a wasmgate plugin must be a component)".into(),
        )
    })?;
    for required in [
        "memory",
        "proxy_on_memory_allocate",
        "proxy_on_context_create",
    ] {
        if module.get_export(required).is_none() {
            return Err(contract(format!(
                "a Proxy-Wasm filter must export `{required}`"
            )));
        }
    }
    let mut linker = linker.clone();
    let mut imports = Vec::new();
    for import in module.imports() {
        imports.push(format!("{}::{}", import.module(), import.name()));
        let known = hostcalls::DEFINED.contains(&(import.module(), import.name()));
        let ours = matches!(import.module(), "env" | "wasi_snapshot_preview1");
        if let (false, true, ExternType::Func(ty)) = (known, ours, import.ty()) {
            hostcalls::stub(&mut linker, import.module(), import.name(), ty)
                .map_err(|e| contract(format!("{e:#}")))?;
        }
    }
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| contract(format!("{e:#}")))?;
    Ok(FilterCode {
        pre,
        abi_version,
        imports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_tells_a_core_module_from_a_component() {
        assert!(is_core_module(b"\0asm\x01\x00\x00\x00rest"));
        assert!(!is_core_module(b"\0asm\x0d\x00\x01\x00rest"));
        assert!(!is_core_module(b"\0asm"));
    }
}
