//! Hot reload: watch the routes folder, rebuild the table off the request
//! path, swap it in whole.
//!
//! Any change under the folder (create, write, delete, rename, a symlink
//! swapped) triggers a rescan of the whole folder, after a short debounce.
//! Rescanning rather than applying events one by one makes every way files
//! arrive look the same: `cp` over a file, `mv` into place, editors' temp
//! files, folders added or removed, and Kubernetes' `..data` symlink swap.
//! Content is hashed, so only changed files compile; a version that fails to
//! load never replaces a working one; the table is swapped atomically, and a
//! request keeps the table (and instance) it started with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::Notify;

use crate::loader::{LoadedRoute, Loader};
use crate::routing::RouteTable;
use crate::server::ServerState;

/// Quiet time after the last event before a rescan. Short, because a
/// half-written file never replaces a working version and the write that
/// completes it triggers another rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// Reloads the routes of one server from one folder.
pub struct Reloader {
    loader: Arc<Loader>,
    dir: PathBuf,
    state: Arc<ServerState>,
}

impl Reloader {
    /// Reloads `state`'s routes from `dir` through `loader`.
    pub fn new(loader: Arc<Loader>, dir: PathBuf, state: Arc<ServerState>) -> Reloader {
        Reloader { loader, dir, state }
    }

    /// Rescans the folder and swaps in the new table, logging what changed.
    pub async fn reload(&self) {
        let previous = self.state.routes();
        let loader = self.loader.clone();
        let dir = self.dir.clone();
        let old = previous.clone();
        let loaded =
            match tokio::task::spawn_blocking(move || loader.load_dir(&dir, Some(&old))).await {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::error!("reload failed, keeping the current routes: {error}");
                    return;
                }
            };
        for error in &loaded.errors {
            tracing::error!("{error}");
        }
        let changed = log_changes(&previous, &loaded.table);
        if changed {
            self.state.swap_routes(loaded.table);
        }
    }

    /// Starts watching the folder; reloads until the returned watch is dropped.
    pub fn watch(self) -> notify_debouncer_mini::notify::Result<RouteWatch> {
        let pending = Arc::new(Notify::new());
        let mut debouncer = new_debouncer(DEBOUNCE, {
            let pending = pending.clone();
            move |events: DebounceEventResult| match events {
                Ok(_) => pending.notify_one(),
                Err(error) => {
                    tracing::warn!("watching the routes folder: {error}; rescanning");
                    pending.notify_one();
                }
            }
        })?;
        debouncer
            .watcher()
            .watch(&self.dir, RecursiveMode::Recursive)?;
        // Changes made while the first table was loading were not watched yet.
        pending.notify_one();
        // One permit at most: changes during a reload cause exactly one more.
        let task = tokio::spawn(async move {
            loop {
                pending.notified().await;
                self.reload().await;
            }
        });
        Ok(RouteWatch {
            _debouncer: debouncer,
            task,
        })
    }
}

/// A running watch of the routes folder; dropping it stops reloads.
pub struct RouteWatch {
    _debouncer: Debouncer<RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RouteWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Logs every route added, updated or removed; whether anything changed.
pub(crate) fn log_changes(
    previous: &RouteTable<LoadedRoute>,
    next: &RouteTable<LoadedRoute>,
) -> bool {
    let mut changed = false;
    for route in next.routes() {
        let new = &route.value;
        let file = route.file.display();
        match previous.by_file(&route.file) {
            Some(old) if old.value.hash == new.hash && old.pattern == route.pattern => continue,
            Some(old) => tracing::info!(
                route = %new.name,
                %file,
                "route updated: {} -> {} ({})",
                old.value.short_hash(),
                new.short_hash(),
                new.origin
            ),
            None => {
                tracing::info!(route = %new.name, %file, "route added: {} ({})", new.short_hash(), new.origin)
            }
        }
        changed = true;
    }
    for route in previous.routes() {
        if next.by_file(&route.file).is_none() {
            tracing::info!(route = %route.value.name, file = %route.file.display(), "route removed");
            changed = true;
        }
    }
    changed
}
