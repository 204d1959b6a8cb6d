//! Certificate hot reload: the directories holding listeners' certificate,
//! key and CA files are watched like plugin files; a change rebuilds that
//! listener's TLS config, and a file that does not load keeps the previous
//! one serving. Every attempt is recorded with the other reloads.

use super::TlsListener;
use crate::reload::{absolute, channel_watcher, settle, Reloader};
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
        while let Some(first) = rx.recv().await {
            let mut touched = BTreeSet::new();
            let take = |event: &notify::Event| {
                let before = touched.len();
                touched.extend(
                    changed_paths(event)
                        .into_iter()
                        .filter(|p| watched.contains(p)),
                );
                touched.len() > before
            };
            // Let a burst (cert and key renamed into place) settle into one reload.
            if !settle(&mut rx, &first, take).await {
                continue;
            }
            for (listener, files) in &files {
                let changed: Vec<&PathBuf> =
                    files.iter().filter(|f| touched.contains(*f)).collect();
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

/// The paths a create/modify/close-after-write event touched.
fn changed_paths(event: &notify::Event) -> Vec<PathBuf> {
    use notify::event::{AccessKind, AccessMode};
    use notify::EventKind;
    let relevant = matches!(
        event.kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    );
    if relevant {
        event.paths.clone()
    } else {
        Vec::new()
    }
}
