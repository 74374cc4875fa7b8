//! Hot reload: watch the routes folder, rebuild the table off the request
//! path, swap it in whole.
//!
//! Any change under the folder (create, write, delete, rename, a symlink
//! swapped) triggers a rescan of the whole folder, after a short debounce.
//! Rescanning rather than applying events one by one makes every way files
//! arrive look the same: `cp` over a file, `mv` into place, editors' temp
//! files, folders added or removed, and Kubernetes' `..data` symlink swap.
//! Content is hashed, so only changed files compile; a version that fails to
//! load never replaces a working one, nor does a file emptied just now (a
//! write in progress); the table is swapped atomically, and a
//! request keeps the table (and instance) it started with.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::Notify;

use crate::loader::{LoadError, LoadedRoute, Loader, SETTLE, same_error};
use crate::routing::RouteTable;
use crate::server::ServerState;

/// Quiet time after the last event before a rescan. Short, because a
/// half-written file never replaces a working version (an emptied one is
/// waited for, see [`SETTLE`]) and the write that completes it triggers
/// another rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// Reloads the routes of one server from one folder.
pub struct Reloader {
    loader: Arc<Loader>,
    dir: PathBuf,
    /// Files outside the folder whose changes reload too (config, env file).
    also: Vec<PathBuf>,
    state: Arc<ServerState>,
    /// One reload at a time (two at once could swap in the older scan
    /// last), and the errors the last one reported, which are not logged
    /// again while they stay the same.
    reloading: tokio::sync::Mutex<BTreeSet<String>>,
}

impl Reloader {
    /// Reloads `state`'s routes from `dir` through `loader`, also when one
    /// of the files in `also` changes.
    pub fn new(
        loader: Arc<Loader>,
        dir: PathBuf,
        also: Vec<PathBuf>,
        state: Arc<ServerState>,
    ) -> Reloader {
        Reloader {
            loader,
            dir,
            also,
            state,
            reloading: tokio::sync::Mutex::new(BTreeSet::new()),
        }
    }

    /// Counts `errors` (those of the load that made the table being served)
    /// as reported: a reload logs an error only when it is new.
    pub fn reported<'a>(self, errors: impl IntoIterator<Item = &'a Arc<LoadError>>) -> Reloader {
        let errors = errors.into_iter().map(ToString::to_string).collect();
        Reloader {
            reloading: tokio::sync::Mutex::new(errors),
            ..self
        }
    }

    /// Rescans the folder and swaps in the new table, logging what changed;
    /// again after [`SETTLE`] while a file looks mid-write (just emptied).
    pub async fn reload(&self) {
        let mut reported = self.reloading.lock().await;
        loop {
            tracing::debug!(dir = %self.dir.display(), "rescanning");
            let started = std::time::Instant::now();
            let previous = self.state.routes();
            let loader = self.loader.clone();
            let dir = self.dir.clone();
            let old = previous.clone();
            let load = move || loader.load_dir(&dir, Some(&old));
            let loaded = match tokio::task::spawn_blocking(load).await {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::error!("reload failed, keeping the current routes: {error}");
                    return;
                }
            };
            tracing::debug!(
                files = loaded.table.routes().len(),
                "rescanned in {} ms",
                started.elapsed().as_millis()
            );
            let errors: BTreeSet<String> = loaded.errors.iter().map(ToString::to_string).collect();
            for error in errors.difference(&reported) {
                tracing::error!("{error}");
            }
            *reported = errors;
            if log_changes(&previous, &loaded.table) {
                self.state
                    .metrics()
                    .record_load(Some(&previous), &loaded.table);
                self.state.swap_routes(loaded.table);
            }
            if loaded.unsettled.is_empty() {
                return;
            }
            tokio::time::sleep(SETTLE).await;
        }
    }

    /// Starts watching the folder; reloads until the returned watch is dropped.
    pub fn watch(self: Arc<Self>) -> notify_debouncer_full::notify::Result<RouteWatch> {
        let pending = Arc::new(Notify::new());
        let mut debouncer = new_debouncer(DEBOUNCE, None, {
            let pending = pending.clone();
            move |events: DebounceEventResult| match events {
                // Reads are events too (inotify reports opens): a rescan
                // reads every file, and must not trigger the next one.
                Ok(events) => {
                    if events.iter().any(|e| !is_a_read(&e.kind)) {
                        pending.notify_one();
                    }
                }
                Err(errors) => {
                    for error in errors {
                        tracing::warn!("watching the routes folder: {error}; rescanning");
                    }
                    pending.notify_one();
                }
            }
        })?;
        debouncer.watch(&self.dir, RecursiveMode::Recursive)?;
        for file in &self.also {
            // Its folder, not the file: editors and secret managers replace
            // files by renaming a new one over them.
            let folder = match file.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => std::path::Path::new("."),
            };
            debouncer.watch(folder, RecursiveMode::NonRecursive)?;
        }
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

/// Whether an event only says a file was read: opened, or closed after
/// reading. Rescans read every file; those events must not trigger another.
pub(crate) fn is_a_read(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
        )
    )
}

/// A running watch of the routes folder; dropping it stops reloads.
pub struct RouteWatch {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RouteWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether two loads of the same content are the same version: the same
/// settings (by identity: unchanged settings are carried over) or the same
/// failure (by its message: a sidecar that fails again fails anew).
fn same_state(old: &LoadedRoute, new: &LoadedRoute) -> bool {
    match (&old.state, &new.state) {
        (Ok(old), Ok(new)) => Arc::ptr_eq(&old.settings, &new.settings),
        (Err(old), Err(new)) => same_error(Some(old), Some(new)),
        _ => false,
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
            Some(old) if old.value.hash == new.hash && old.pattern == route.pattern => {
                if same_state(&old.value, new) {
                    // A new failure beside a working version (or its end)
                    // is logged where it happens; `/routes` shows it.
                    let (old, new) = (old.value.last_error.as_ref(), new.last_error.as_ref());
                    changed |= !same_error(old, new);
                    continue;
                }
                tracing::info!(route = %new.name, %file, "route settings updated");
            }
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
