//! Hot reload: the config file and plugin files are watched; a change is
//! compiled and initialised off the request path and swapped in atomically.
//! Anything that fails leaves the running generation serving and is logged
//! with the file and the reason.
//!
//! Lives here: the [`Reloader`], the settle logic every watcher shares
//! ([`file_watch`]) and the [`certificates`] watcher. May use `config`,
//! `gateway`, `plugin` and `tls`.

pub mod certificates;
pub(crate) mod file_watch;

use crate::config::Config;
use crate::gateway::Gateway;
use crate::gateway::Shared;
use crate::plugin::catalog::{plugin_path, PluginCatalog};
use crate::plugin::{PluginError, PluginRuntime, Tier};
use crate::reload::file_watch::{absolute, channel_watcher, next_burst};
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How long reloads must pause before baseline builds are replaced by
/// optimized ones (see [`Reloader::schedule_optimize`]).
const TIER_UP_DELAY: Duration = Duration::from_secs(1);

/// The outcome of one reload attempt, kept for operators (and tests).
#[derive(Debug, Clone)]
pub struct ReloadEvent {
    pub at: SystemTime,
    pub ok: bool,
    pub message: String,
}

/// What changed on disk since the last reload.
#[derive(Debug, Default)]
pub struct Changes {
    pub config: bool,
    pub plugins: BTreeSet<String>,
    /// When the first file event of this change arrived, to report how long
    /// the new version took to serve.
    pub noticed_at: Option<Instant>,
}

/// The last good config and catalog, and how to build the next generation.
pub struct Reloader {
    config_path: PathBuf,
    runtime: Arc<PluginRuntime>,
    shared: Arc<Shared>,
    current: tokio::sync::Mutex<(Arc<Config>, PluginCatalog)>,
    events: Mutex<Vec<ReloadEvent>>,
    /// The last reload error of each plugin whose newest file is not serving.
    plugin_errors: Mutex<std::collections::HashMap<String, String>>,
    /// The pending move of baseline builds to optimized ones, if any.
    tier_up: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Reloader {
    /// A reloader that starts from the generation built from `config` and `catalog`.
    pub fn new(
        config_path: PathBuf,
        runtime: Arc<PluginRuntime>,
        shared: Arc<Shared>,
        config: Arc<Config>,
        catalog: PluginCatalog,
    ) -> Reloader {
        Reloader {
            config_path,
            runtime,
            shared,
            current: tokio::sync::Mutex::new((config, catalog)),
            events: Mutex::new(Vec::new()),
            plugin_errors: Mutex::default(),
            tier_up: Mutex::default(),
        }
    }

    /// The serving catalog (for the admin API).
    pub async fn catalog(&self) -> PluginCatalog {
        self.current.lock().await.1.clone()
    }

    /// Plugins whose newest file failed to load, with the reason.
    pub fn plugin_errors(&self) -> std::collections::HashMap<String, String> {
        self.plugin_errors.lock().expect("errors lock").clone()
    }

    fn plugin_error(&self, name: &str, error: Option<String>) {
        let mut errors = self.plugin_errors.lock().expect("errors lock");
        match error {
            Some(e) => errors.insert(name.to_string(), e),
            None => errors.remove(name),
        };
    }

    /// Every reload attempt so far, oldest first.
    pub fn events(&self) -> Vec<ReloadEvent> {
        self.events.lock().expect("events lock").clone()
    }

    /// Logs, counts and keeps one reload attempt (also certificate reloads).
    pub(crate) fn record(&self, ok: bool, message: String) {
        crate::observe::metrics::metrics()
            .reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        if ok {
            tracing::info!("reload: {message}");
        } else {
            tracing::error!("reload failed, previous version keeps serving: {message}");
        }
        self.events.lock().expect("events lock").push(ReloadEvent {
            at: SystemTime::now(),
            ok,
            message,
        });
    }

    /// Applies on-disk changes: re-reads the config and/or recompiles changed
    /// plugins (baseline tier, so they serve at once), builds a new
    /// generation and swaps it in; or keeps the old one. Returns the plugins
    /// it put on the baseline tier.
    pub async fn apply(&self, changes: Changes) -> Vec<String> {
        let mut current = self.current.lock().await;
        let config = if changes.config {
            match Config::load(&self.config_path) {
                Ok(config) => {
                    if config.listeners.iter().map(|l| l.address).ne(current
                        .0
                        .listeners
                        .iter()
                        .map(|l| l.address))
                    {
                        tracing::warn!("listener changes take effect on restart");
                    }
                    if config.kv != current.0.kv {
                        tracing::warn!("kv changes take effect on restart");
                    }
                    if config.plugins.max_instances != current.0.plugins.max_instances {
                        tracing::warn!("plugins.max_instances changes take effect on restart");
                    }
                    Arc::new(config)
                }
                Err(e) => {
                    self.record(false, e.to_string());
                    return Vec::new();
                }
            }
        } else {
            current.0.clone()
        };
        let dir = config.plugin_dir();
        let mut catalog = current.1.clone();
        let mut changed: Vec<&str> = Vec::new();
        let used: BTreeSet<&str> = config
            .routes
            .iter()
            .flat_map(|r| r.plugins.iter().map(|p| p.name.as_str()))
            .collect();
        let tier = match config.plugins.fast_reload {
            true => Tier::Baseline,
            false => Tier::Optimized,
        };
        for name in changes.plugins.iter().filter(|n| used.contains(n.as_str())) {
            match catalog.load(&self.runtime, &dir, name, tier).await {
                Ok(true) => changed.push(name),
                Ok(false) => {}
                Err(e) => {
                    self.plugin_error(name, Some(e.to_string()));
                    self.record(false, e.to_string());
                }
            }
        }
        if !changes.config && changed.is_empty() {
            return Vec::new();
        }
        let baseline: Vec<String> = changed
            .iter()
            .filter(|n| catalog.get(n).is_some_and(|p| p.tier == Tier::Baseline))
            .map(|n| n.to_string())
            .collect();
        match self.swap_in(&mut current, config, catalog).await {
            Ok(()) => {
                for name in &changed {
                    self.plugin_error(name, None);
                }
                let what = if changes.config {
                    format!("config {}", self.config_path.display())
                } else {
                    changed
                        .iter()
                        .map(|n| plugin_path(&dir, n).display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let tier = if baseline.is_empty() {
                    ""
                } else {
                    "baseline, "
                };
                let after = changes
                    .noticed_at
                    .map(|t| format!(" ({tier}{} ms after the change)", t.elapsed().as_millis()))
                    .unwrap_or_default();
                self.record(true, format!("now serving {what}{after}"));
                baseline
            }
            Err(e) => {
                for name in &changed {
                    self.plugin_error(name, Some(e.to_string()));
                }
                self.record(false, e.to_string());
                Vec::new()
            }
        }
    }

    /// Builds the generation of `config` and `catalog` (keeping the serving
    /// generation's unchanged upstreams), swaps it in and makes them current.
    async fn swap_in(
        &self,
        current: &mut (Arc<Config>, PluginCatalog),
        config: Arc<Config>,
        mut catalog: PluginCatalog,
    ) -> Result<(), PluginError> {
        let previous = self.shared.gateway.load_full();
        let gateway =
            Gateway::build(config.clone(), Some(&previous), &mut catalog, &self.runtime).await?;
        self.shared.upstreams.publish(gateway.upstreams.clone());
        self.shared.gateway.store(Arc::new(gateway));
        *current = (config, catalog);
        Ok(())
    }

    /// Moves every plugin serving at the baseline tier to its optimized
    /// build once no reload has come for [`TIER_UP_DELAY`]: each reload
    /// calls this again, which cancels the pending move, so a burst of
    /// reloads does not pay for optimized builds it would replace at once.
    pub fn schedule_optimize(self: &Arc<Self>) {
        let reloader = self.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(TIER_UP_DELAY).await;
            reloader.optimize().await;
        });
        let previous = self.tier_up.lock().expect("tier-up lock").replace(task);
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    /// Recompiles plugins serving at the baseline tier with the optimizing
    /// compiler, off the request path, and swaps each in unless a newer
    /// file replaced it meanwhile. Not a reload: the content is the same.
    async fn optimize(&self) {
        let names: Vec<String> = (self.current.lock().await.1.iter())
            .filter(|(_, p)| p.tier == Tier::Baseline)
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let serving = self.current.lock().await.1.get(&name).cloned();
            let Some(serving) = serving.filter(|p| p.tier == Tier::Baseline) else {
                continue;
            };
            let file = plugin_path(&self.current.lock().await.0.plugin_dir(), &name);
            let runtime = self.runtime.clone();
            let compiled = tokio::task::spawn_blocking(move || {
                let bytes = std::fs::read(&file).map_err(|source| PluginError::Read {
                    file: file.clone(),
                    source,
                })?;
                runtime.compile(&name, &file, &bytes)
            })
            .await;
            let compiled = match compiled {
                Ok(Ok(c)) if c.content_hash == serving.content_hash => c,
                // A newer file is on its way through its own reload.
                Ok(Ok(_)) | Ok(Err(_)) => continue,
                Err(e) => {
                    tracing::warn!("optimizing {}: {e}", serving.name);
                    continue;
                }
            };
            let mut current = self.current.lock().await;
            if !current
                .1
                .get(&serving.name)
                .is_some_and(|p| Arc::ptr_eq(p, &serving))
            {
                continue;
            }
            let (config, mut catalog) = (current.0.clone(), current.1.clone());
            catalog.insert(Arc::new(compiled));
            match self.swap_in(&mut current, config, catalog).await {
                Ok(()) => tracing::info!(plugin = %serving.name, "now serving the optimized build"),
                Err(e) => {
                    tracing::warn!(plugin = %serving.name, "optimized build not swapped in: {e}")
                }
            }
        }
    }
}

/// Watches the config file and the plugins directory; returns the watcher,
/// which stops watching when dropped. A change applies once its file is
/// complete (see [`crate::reload::file_watch`]); a removed plugin file is logged, and
/// its loaded version keeps serving while the config names it.
pub fn watch(
    reloader: Arc<Reloader>,
    plugin_dir: &Path,
) -> notify::Result<notify::RecommendedWatcher> {
    let (mut watcher, mut rx) = channel_watcher("file watcher")?;
    let config_path = absolute(&reloader.config_path);
    let plugin_dir = absolute(plugin_dir);
    watcher.watch(&plugin_dir, RecursiveMode::NonRecursive)?;
    if let Some(config_dir) = config_path.parent() {
        if config_dir != plugin_dir {
            watcher.watch(config_dir, RecursiveMode::NonRecursive)?;
        }
    }
    tokio::spawn(async move {
        let is_watched =
            |path: &Path| path == config_path || plugin_name(path, &plugin_dir).is_some();
        while let Some(burst) = next_burst(&mut rx, is_watched).await {
            let changes = Changes {
                config: burst.changed.contains(&config_path),
                plugins: (burst.changed.iter())
                    .filter_map(|p| plugin_name(p, &plugin_dir))
                    .collect(),
                noticed_at: burst.noticed_at,
            };
            for removed in &burst.removed {
                if removed == &config_path {
                    tracing::warn!(file = %removed.display(), "config file removed; the running config keeps serving");
                } else {
                    tracing::warn!(file = %removed.display(), "plugin file removed; its loaded version keeps serving while the config names it");
                }
            }
            if !changes.config && changes.plugins.is_empty() {
                continue;
            }
            if !reloader.apply(changes).await.is_empty() {
                reloader.schedule_optimize();
            }
        }
    });
    Ok(watcher)
}

/// The plugin name of `path` if it is a `.wasm` file directly in `plugin_dir`.
fn plugin_name(path: &Path, plugin_dir: &Path) -> Option<String> {
    if path.parent() != Some(plugin_dir) || path.extension().is_none_or(|e| e != "wasm") {
        return None;
    }
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
}
