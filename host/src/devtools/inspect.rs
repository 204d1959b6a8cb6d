//! What a plugin file is, read from its component type (or, for a
//! Proxy-Wasm filter, its core module's exports): the ABI and contract
//! version it targets, the host capabilities and WASI interfaces it imports, its
//! size. What `wasmgate plugin inspect` prints, so an author can see why the
//! gateway would refuse a file before deploying it.
//!
//! The compatibility verdict is the gateway's own load-time check
//! ([`crate::plugin::component::runtime::contract_version`]), not a second copy of the rule.

use crate::plugin::bindings::CONTRACT_PACKAGE;
use crate::plugin::PluginError;
use serde::Serialize;
use std::path::{Path, PathBuf};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Everything `inspect` learns about one plugin file.
#[derive(Debug, Clone, Serialize)]
pub struct PluginReport {
    pub file: PathBuf,
    pub size_bytes: u64,
    /// The ABI it speaks: `wasmgate:plugin@0.1.0` or `proxy-wasm 0.2.1`.
    pub abi: String,
    /// The version of the `wasmgate:plugin/handler` export, if there is one.
    pub contract_version: Option<String>,
    /// The contract version this host implements.
    pub host_contract_version: &'static str,
    /// `None` when this host would load the plugin; else the reason it refuses.
    pub incompatible: Option<String>,
    /// What the component exports, by full name.
    pub exports: Vec<String>,
    pub imports: Vec<Import>,
}

/// One interface the plugin imports and the functions it uses from it.
#[derive(Debug, Clone, Serialize)]
pub struct Import {
    /// Full name, e.g. `wasmgate:plugin/kv@0.1.0`.
    pub name: String,
    pub kind: ImportKind,
    /// The functions of the interface (empty for type-only interfaces).
    pub functions: Vec<String>,
}

/// Where an import comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportKind {
    /// A wasmgate host capability (`context`, `log`, `kv`, `outbound`, `metrics`)
    /// or the contract's shared `types`.
    Wasmgate,
    /// A WASI interface; the host links a capability-free WASI context.
    Wasi,
    /// The Proxy-Wasm ABI (`env`), provided by the Proxy-Wasm host.
    ProxyWasm,
    /// Neither: the gateway cannot satisfy it and will refuse the plugin.
    Other,
}

impl PluginReport {
    /// Whether the gateway would accept this plugin's contract version.
    pub fn is_compatible(&self) -> bool {
        self.incompatible.is_none()
    }

    /// The wasmgate capabilities imported, short names (`kv`, `log`, ...).
    pub fn capabilities(&self) -> impl Iterator<Item = &str> {
        self.imports.iter().filter_map(|import| {
            let interface = import
                .name
                .strip_prefix(CONTRACT_PACKAGE)?
                .strip_prefix('/')?;
            let short = interface.split('@').next()?;
            (short != "types").then_some(short)
        })
    }
}

/// Reads and compiles `file`, and reports its contract and imports. A file
/// that is not a component is an error; a component the host would refuse is
/// a report with [`PluginReport::incompatible`] set.
pub fn inspect(file: &Path) -> Result<PluginReport, PluginError> {
    let bytes = std::fs::read(file).map_err(|source| PluginError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let engine = Engine::default();
    if crate::plugin::proxy_wasm::module::is_core_module(&bytes) {
        return inspect_filter(&engine, file, &bytes);
    }
    let component = Component::new(&engine, &bytes).map_err(|e| PluginError::Compile {
        file: file.to_path_buf(),
        message: format!("{e:#}"),
    })?;
    let ty = component.component_type();
    let handler = format!("{CONTRACT_PACKAGE}/handler@");
    let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
    let contract_version = exports
        .iter()
        .find_map(|name| name.strip_prefix(&handler).map(str::to_string));
    let imports = ty
        .imports(&engine)
        .map(|(name, item)| Import {
            name: name.to_string(),
            kind: import_kind(name),
            functions: functions(&engine, &item.ty),
        })
        .collect();
    Ok(PluginReport {
        file: file.to_path_buf(),
        size_bytes: bytes.len() as u64,
        abi: format!(
            "{CONTRACT_PACKAGE}@{}",
            contract_version.as_deref().unwrap_or("?")
        ),
        contract_version,
        host_contract_version: crate::plugin::CONTRACT_VERSION,
        incompatible: crate::plugin::component::runtime::contract_version(&engine, &component)
            .err(),
        exports,
        imports,
    })
}

/// The report of a core module: a Proxy-Wasm filter if it exports an ABI
/// version marker, else incompatible. Imports are grouped by module.
fn inspect_filter(engine: &Engine, file: &Path, bytes: &[u8]) -> Result<PluginReport, PluginError> {
    use crate::plugin::proxy_wasm::{abi_label, module::abi_version};
    let module = wasmtime::Module::new(engine, bytes).map_err(|e| PluginError::Compile {
        file: file.to_path_buf(),
        message: format!("{e:#}"),
    })?;
    let version = abi_version(&module);
    let mut imports: Vec<Import> = Vec::new();
    for import in module.imports() {
        let kind = match import.module() {
            "env" => ImportKind::ProxyWasm,
            "wasi_snapshot_preview1" => ImportKind::Wasi,
            _ => ImportKind::Other,
        };
        match imports.iter_mut().find(|i| i.name == import.module()) {
            Some(group) => group.functions.push(import.name().to_string()),
            None => imports.push(Import {
                name: import.module().to_string(),
                kind,
                functions: vec![import.name().to_string()],
            }),
        }
    }
    Ok(PluginReport {
        file: file.to_path_buf(),
        size_bytes: bytes.len() as u64,
        abi: version.map_or_else(|| "core module".to_string(), abi_label),
        contract_version: version.map(str::to_string),
        host_contract_version: crate::plugin::CONTRACT_VERSION,
        incompatible: version.is_none().then(|| {
            "a core module without `proxy_abi_version_0_2_1`/`_0_2_0`: neither a Proxy-Wasm filter nor a component".to_string()
        }),
        exports: module.exports().map(|e| e.name().to_string()).collect(),
        imports,
    })
}

fn import_kind(name: &str) -> ImportKind {
    if name.starts_with(&format!("{CONTRACT_PACKAGE}/")) {
        ImportKind::Wasmgate
    } else if name.starts_with("wasi:") {
        ImportKind::Wasi
    } else {
        ImportKind::Other
    }
}

/// The function names an imported instance provides.
fn functions(engine: &Engine, item: &ComponentItem) -> Vec<String> {
    match item {
        ComponentItem::ComponentInstance(instance) => instance
            .exports(engine)
            .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
            .map(|(name, _)| name.to_string())
            .collect(),
        ComponentItem::ComponentFunc(_) => vec![String::new()],
        _ => Vec::new(),
    }
}

impl std::fmt::Display for PluginReport {
    /// The human-readable report `wasmgate plugin inspect` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.file.display())?;
        writeln!(
            f,
            "  size:      {} bytes ({:.1} KiB)",
            self.size_bytes,
            self.size_bytes as f64 / 1024.0
        )?;
        writeln!(f, "  abi:       {}", self.abi)?;
        match (&self.contract_version, &self.incompatible) {
            (Some(_), None) if self.abi.starts_with("proxy-wasm") => writeln!(
                f,
                "  contract:  Proxy-Wasm filter (runs on this host's Proxy-Wasm runtime)"
            )?,
            (Some(version), None) => writeln!(
                f,
                "  contract:  {CONTRACT_PACKAGE}/handler@{version} (compatible with this host, @{})",
                self.host_contract_version
            )?,
            (Some(version), Some(reason)) => writeln!(
                f,
                "  contract:  {CONTRACT_PACKAGE}/handler@{version} (INCOMPATIBLE: {reason})"
            )?,
            (None, reason) => writeln!(
                f,
                "  contract:  none (INCOMPATIBLE: {})",
                reason.as_deref().unwrap_or("no handler export")
            )?,
        }
        let groups = [
            (ImportKind::Wasmgate, "host capabilities"),
            (ImportKind::ProxyWasm, "Proxy-Wasm ABI"),
            (
                ImportKind::Wasi,
                "WASI (linked with no files, network or environment)",
            ),
            (
                ImportKind::Other,
                "other imports (not provided by this host)",
            ),
        ];
        for (kind, title) in groups {
            let imports: Vec<&Import> = self.imports.iter().filter(|i| i.kind == kind).collect();
            if imports.is_empty() {
                if kind == ImportKind::Wasmgate && !self.abi.starts_with("proxy-wasm") {
                    writeln!(f, "  {title}: none")?;
                }
                continue;
            }
            writeln!(f, "  {title}:")?;
            let width = imports.iter().map(|i| i.name.len()).max().unwrap_or(0);
            for import in imports {
                let line = format!(
                    "    {:width$}  {}",
                    import.name,
                    import.functions.join(", ")
                );
                writeln!(f, "{}", line.trim_end())?;
            }
        }
        writeln!(f, "  exports:   {}", self.exports.join(", "))
    }
}
