//! Turns raw file events into complete changes: a watched file counts as
//! changed only once it is whole (closed after writing, or renamed or
//! symlinked into place), so a config rewritten in place in two writes is
//! never applied half-written. Shared by the config/plugin watcher and the
//! certificate watcher.
//!
//! Kubernetes ConfigMap and Secret volumes never touch the watched file
//! itself: `config.yaml` is a symlink to `..data/config.yaml`, and an update
//! renames a new `..data` symlink into place. Such a swap in a watched
//! directory counts as a complete change of every watched file in it.

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::EventKind;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long to wait for more events once every touched file is complete:
/// only long enough to take in the events that come with the last one (a
/// rename's pair, the other files of a certificate).
const COMPLETE_SETTLE: Duration = Duration::from_millis(5);

/// How long a file may stay open for writing with no event before it is
/// taken as it is: on platforms without close events, or for a writer that
/// never closes. The writer of the issue that motivated this paused 400 ms
/// between two halves of a config.
const WRITING_GRACE: Duration = Duration::from_millis(1500);

/// After this long, a burst ends as soon as every touched file is complete,
/// even if more events keep coming: a file rewritten without pause still
/// reloads.
const MAX_SETTLE: Duration = Duration::from_millis(250);

/// A file watcher whose events arrive on the returned channel, for a task
/// to consume; errors are logged under `what`.
pub(crate) fn channel_watcher(
    what: &'static str,
) -> notify::Result<(
    notify::RecommendedWatcher,
    mpsc::UnboundedReceiver<notify::Event>,
)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                let _ = tx.send(event);
            }
            Err(e) => tracing::warn!("{what}: {e}"),
        })?;
    Ok((watcher, rx))
}

/// `path` made absolute, as file events report it.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What one burst of events did to the watched files.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Burst {
    /// Watched files that changed and are complete.
    pub changed: BTreeSet<PathBuf>,
    /// Watched files that are gone at the end of the burst.
    pub removed: BTreeSet<PathBuf>,
    /// When the first event of the burst arrived.
    pub noticed_at: Option<Instant>,
}

/// How far an event has brought a file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Progress {
    /// Opened, created or written, and not yet closed.
    Writing { last_event: Instant },
    /// Closed after writing, renamed or swapped into place.
    Complete,
    /// Removed or renamed away (it may come back within the burst).
    Gone,
}

/// Waits for the next burst of events that touches a file `is_watched`
/// accepts and for every touched file to be complete; `None` once the
/// watcher is gone. Events on other files in the same directories (a log
/// next to the config) neither start, extend nor end a burst.
pub(crate) async fn next_burst(
    rx: &mut mpsc::UnboundedReceiver<notify::Event>,
    is_watched: impl Fn(&Path) -> bool,
) -> Option<Burst> {
    let mut files: BTreeMap<PathBuf, Progress> = BTreeMap::new();
    let first = loop {
        let event = rx.recv().await?;
        if take(&event, &is_watched, &mut files) {
            break Instant::now();
        }
    };
    let settle_by = first + MAX_SETTLE;
    let mut last_touch = first;
    loop {
        let wake = match latest_write(&files) {
            Some(last_write) => last_write + WRITING_GRACE,
            None => last_touch + COMPLETE_SETTLE,
        };
        match tokio::time::timeout_at(wake, rx.recv()).await {
            Ok(Some(event)) => {
                if take(&event, &is_watched, &mut files) {
                    last_touch = Instant::now();
                    if latest_write(&files).is_none() && last_touch >= settle_by {
                        break;
                    }
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let mut burst = Burst {
        noticed_at: Some(first),
        ..Burst::default()
    };
    for (path, progress) in files {
        // A file renamed away and back, or removed and written anew, is
        // judged by what is on disk now.
        if progress == Progress::Gone && !path.exists() {
            burst.removed.insert(path);
        } else {
            burst.changed.insert(path);
        }
    }
    Some(burst)
}

/// The last event of a file still being written, if any is.
fn latest_write(files: &BTreeMap<PathBuf, Progress>) -> Option<Instant> {
    files
        .values()
        .filter_map(|p| match p {
            Progress::Writing { last_event } => Some(*last_event),
            _ => None,
        })
        .max()
}

/// Records what `event` did to watched files; says whether it touched one.
fn take(
    event: &notify::Event,
    is_watched: &impl Fn(&Path) -> bool,
    files: &mut BTreeMap<PathBuf, Progress>,
) -> bool {
    let Some(progress) = progress_of(&event.kind) else {
        return false;
    };
    let mut touched = false;
    for path in &event.paths {
        if is_watched(path) {
            files.insert(path.clone(), progress);
            touched = true;
        } else if progress == Progress::Complete && is_atomic_writer_swap(path) {
            for file in watched_files_in(path.parent(), is_watched) {
                files.insert(file, Progress::Complete);
                touched = true;
            }
        }
    }
    touched
}

/// What an event kind says about its files; `None` for events that change
/// no content (reads, opens, metadata).
fn progress_of(kind: &EventKind) -> Option<Progress> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
            Some(Progress::Complete)
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
            Some(Progress::Gone)
        }
        EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Access(_) => None,
        EventKind::Create(_) | EventKind::Modify(_) => Some(Progress::Writing {
            last_event: Instant::now(),
        }),
        EventKind::Any | EventKind::Other => None,
    }
}

/// Whether `path` is the symlink Kubernetes' atomic writer renames into
/// place to publish a new version of a ConfigMap or Secret volume.
fn is_atomic_writer_swap(path: &Path) -> bool {
    path.file_name().is_some_and(|name| name == "..data")
}

/// The files in `dir` that `is_watched` accepts, by their absolute path.
fn watched_files_in(dir: Option<&Path>, is_watched: &impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let Some(Ok(entries)) = dir.map(std::fs::read_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| is_watched(path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind};

    fn event(kind: EventKind, path: &Path) -> notify::Event {
        notify::Event::new(kind).add_path(path.to_path_buf())
    }

    fn write() -> EventKind {
        EventKind::Modify(ModifyKind::Data(DataChange::Any))
    }

    fn close() -> EventKind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
    }

    #[tokio::test]
    async fn a_file_written_in_two_halves_is_one_change_after_its_close() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let file = PathBuf::from("/etc/gw/config.yaml");
        let watched = file.clone();
        let burst = tokio::spawn(async move { next_burst(&mut rx, |p| p == watched).await });
        tx.send(event(write(), &file)).unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!burst.is_finished(), "a file still open is not complete");
        tx.send(event(write(), &file)).unwrap();
        tx.send(event(close(), &file)).unwrap();
        let burst = burst.await.unwrap().unwrap();
        assert_eq!(burst.changed, BTreeSet::from([file]));
    }

    #[tokio::test]
    async fn a_file_never_closed_is_taken_after_the_grace() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let file = PathBuf::from("/etc/gw/config.yaml");
        let watched = file.clone();
        let started = Instant::now();
        let burst = tokio::spawn(async move { next_burst(&mut rx, |p| p == watched).await });
        tx.send(event(write(), &file)).unwrap();
        let burst = burst.await.unwrap().unwrap();
        assert_eq!(burst.changed, BTreeSet::from([file]));
        assert!(started.elapsed() >= WRITING_GRACE);
    }

    #[tokio::test]
    async fn other_files_in_the_directory_are_ignored() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let file = PathBuf::from("/etc/gw/config.yaml");
        let watched = file.clone();
        let burst = tokio::spawn(async move { next_burst(&mut rx, |p| p == watched).await });
        tx.send(event(write(), Path::new("/etc/gw/access.log")))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!burst.is_finished());
        tx.send(event(EventKind::Create(CreateKind::File), &file))
            .unwrap();
        tx.send(event(close(), &file)).unwrap();
        assert_eq!(
            burst.await.unwrap().unwrap().changed,
            BTreeSet::from([file])
        );
    }

    #[tokio::test]
    async fn a_removed_file_is_reported_as_removed() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let file = PathBuf::from("/nonexistent/plugins/auth.wasm");
        let watched = file.clone();
        let burst = tokio::spawn(async move { next_burst(&mut rx, |p| p == watched).await });
        tx.send(event(EventKind::Remove(RemoveKind::File), &file))
            .unwrap();
        let burst = burst.await.unwrap().unwrap();
        assert_eq!(burst.removed, BTreeSet::from([file]));
        assert!(burst.changed.is_empty());
    }

    #[tokio::test]
    async fn a_kubernetes_data_swap_changes_every_watched_file_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, "x").unwrap();
        std::fs::write(dir.path().join("other.txt"), "y").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watched = config.clone();
        let burst = tokio::spawn(async move { next_burst(&mut rx, |p| p == watched).await });
        tx.send(event(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            &dir.path().join("..data"),
        ))
        .unwrap();
        assert_eq!(
            burst.await.unwrap().unwrap().changed,
            BTreeSet::from([config])
        );
    }
}
