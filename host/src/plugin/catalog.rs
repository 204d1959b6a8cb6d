//! The compiled plugins the gateway knows, by name: the last version of each
//! file that compiled and matched the contract. A reload builds a candidate
//! catalog and commits it only if the whole gateway builds with it.

use crate::plugin::{CompiledPlugin, PluginError, PluginRuntime, Tier};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Plugins by name, each compiled from `<dir>/<name>.wasm`.
#[derive(Clone, Default)]
pub struct PluginCatalog {
    plugins: HashMap<String, Arc<CompiledPlugin>>,
}

/// The file a plugin name refers to.
pub fn plugin_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}

impl PluginCatalog {
    /// The compiled plugin of this name, if loaded.
    pub fn get(&self, name: &str) -> Option<&Arc<CompiledPlugin>> {
        self.plugins.get(name)
    }

    /// All loaded plugins.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<CompiledPlugin>)> {
        self.plugins.iter()
    }

    /// Puts `compiled` in place of the plugin of the same name.
    pub fn insert(&mut self, compiled: Arc<CompiledPlugin>) {
        self.plugins.insert(compiled.name.to_string(), compiled);
    }

    /// Reads and compiles `<dir>/<name>.wasm` (at `tier`, see
    /// [`PluginRuntime::compile_quick`]) unless the loaded version has the
    /// same content. Compilation runs on a blocking thread. Returns whether
    /// the catalog changed.
    pub async fn load(
        &mut self,
        runtime: &Arc<PluginRuntime>,
        dir: &Path,
        name: &str,
        tier: Tier,
    ) -> Result<bool, PluginError> {
        let file = plugin_path(dir, name);
        let bytes = tokio::fs::read(&file)
            .await
            .map_err(|source| PluginError::Read {
                file: file.clone(),
                source,
            })?;
        let hash = crate::plugin::component::runtime::content_hash(&bytes);
        if self
            .plugins
            .get(name)
            .is_some_and(|p| p.content_hash == hash)
        {
            return Ok(false);
        }
        let runtime = runtime.clone();
        let name_owned = name.to_string();
        let compiled = tokio::task::spawn_blocking(move || match tier {
            Tier::Baseline => runtime.compile_quick(&name_owned, &file, &bytes),
            Tier::Optimized => runtime.compile(&name_owned, &file, &bytes),
        })
        .await
        .map_err(|e| PluginError::Engine(format!("compile task failed: {e}")))??;
        tracing::info!(
            plugin = name,
            size_bytes = compiled.size_bytes,
            contract = %compiled.contract_version,
            tier = compiled.tier.as_str(),
            "plugin compiled"
        );
        self.insert(Arc::new(compiled));
        Ok(true)
    }
}
