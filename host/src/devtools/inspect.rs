//! What a plugin file is, read from its component type: the contract version
//! it targets, the host capabilities and WASI interfaces it imports, its
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
        contract_version,
        host_contract_version: crate::plugin::CONTRACT_VERSION,
        incompatible: crate::plugin::component::runtime::contract_version(&engine, &component)
            .err(),
        exports,
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
        match (&self.contract_version, &self.incompatible) {
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
                if kind == ImportKind::Wasmgate {
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
