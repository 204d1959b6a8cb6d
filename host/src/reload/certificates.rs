//! Certificate hot reload: the directories holding listeners' certificate,
//! key and CA files are watched like plugin files; a change rebuilds that
//! listener's TLS config, and a file that does not load keeps the previous
//! one serving. Every attempt is recorded with the other reloads.

use crate::reload::file_watch::{absolute, channel_watcher, next_burst};
use crate::reload::Reloader;
use crate::tls::TlsListener;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

/// Watches the files of every TLS listener; `None` when there are none.
/// Watching stops when the returned watcher is dropped.
pub fn watch(
    listeners: Vec<Arc<TlsListener>>,
    reloader: Arc<Reloader>,
) -> notify::Result<Option<notify::RecommendedWatcher>> {
    let files: Vec<(Arc<TlsListener>, Vec<PathBuf>)> = listeners
        .into_iter()
        .map(|l| {
            let files = l.files().iter().map(|f| absolute(f)).collect();
            (l, files)
        })
        .collect();
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .flat_map(|(_, files)| files.iter().filter_map(|f| f.parent().map(PathBuf::from)))
        .collect();
    if dirs.is_empty() {
        return Ok(None);
    }
    let (mut watcher, mut rx) = channel_watcher("certificate watcher")?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let watched: BTreeSet<PathBuf> = files.iter().flat_map(|(_, f)| f.iter().cloned()).collect();
    tokio::spawn(async move {
        // A burst (cert and key renamed into place) settles into one reload.
        while let Some(burst) = next_burst(&mut rx, |p| watched.contains(p)).await {
            for removed in &burst.removed {
                tracing::warn!(file = %removed.display(), "certificate file removed; the loaded certificate keeps serving");
            }
            for (listener, files) in &files {
                let changed: Vec<&PathBuf> = files
                    .iter()
                    .filter(|f| burst.changed.contains(*f))
                    .collect();
                if changed.is_empty() {
                    continue;
                }
                match listener.reload() {
                    Ok(()) => {
                        let names: Vec<String> =
                            changed.iter().map(|f| f.display().to_string()).collect();
                        reloader.record(
                            true,
                            format!("now serving TLS certificates from {}", names.join(", ")),
                        );
                    }
                    Err(e) => reloader.record(false, e.to_string()),
                }
            }
        }
    });
    Ok(Some(watcher))
}
