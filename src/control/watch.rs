//! The config files' watcher: a change on disk reloads them through the apply path.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Control;
use super::change::Change;
use crate::config;

/// How long file events are collected before a reload.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches the config paths (their directories, so editors' atomic renames are seen) and
/// reloads after a short quiet period.
pub(crate) fn watch_files(
    paths: &[PathBuf],
    control: Arc<Control>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let files: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let relevant = files.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let hit = event.paths.iter().any(|p| {
            relevant.iter().any(|f| {
                p == f || (f.is_dir() && p.parent() == Some(f.as_path()) && config::is_yaml(p))
            })
        });
        if hit {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch config files; reload with SIGHUP.");
            return None;
        }
    };
    for f in &files {
        let dir = if f.is_dir() {
            f.clone()
        } else {
            f.parent().map(PathBuf::from).unwrap_or_default()
        };
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(path = %dir.display(), error = %e, "Cannot watch directory.");
        }
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(RELOAD_DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let _ = control.apply(Change::Reload).await;
        }
    });
    Some(watcher)
}
