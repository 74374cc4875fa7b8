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

use crate::live::LiveRoutes;
use crate::loader::{LoadError, Loader, SETTLE};

/// Quiet time after the last event before a rescan. Short, because a
/// half-written file never replaces a working version (an emptied one is
/// waited for, see [`SETTLE`]) and the write that completes it triggers
/// another rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(10);

/// Reloads the routes of one server from one folder.
pub struct Reloader {
    loader: Arc<Loader>,
    dir: PathBuf,
    /// Files outside the folder that settings are read from (`--config`,
    /// `--env-file`): their changes reload too.
    settings_files: Vec<PathBuf>,
    live: Arc<LiveRoutes>,
    /// One reload at a time (two at once could swap in the older scan
    /// last), and the errors the last one reported, which are not logged
    /// again while they stay the same.
    reloading: tokio::sync::Mutex<BTreeSet<String>>,
}

impl Reloader {
    /// Publishes to `live` the routes `loader` loads from `dir`, also when
    /// one of `settings_files` changes.
    pub fn new(
        loader: Arc<Loader>,
        dir: PathBuf,
        settings_files: Vec<PathBuf>,
        live: Arc<LiveRoutes>,
    ) -> Reloader {
        Reloader {
            loader,
            dir,
            settings_files,
            live,
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
            let previous = self.live.current();
            let loader = self.loader.clone();
            let dir = self.dir.clone();
            let load = move || loader.load_dir(&dir, Some(&previous));
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
            self.live.publish(loaded.table);
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
        for file in &self.settings_files {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::LoadedRoute;
    use crate::metrics::Metrics;
    use crate::routing::RouteTable;
    use crate::testing::{component, loader};

    /// A reloader of a fresh folder into fresh live routes.
    fn reloader() -> (tempfile::TempDir, Arc<LiveRoutes>, Reloader) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let live = Arc::new(LiveRoutes::new(Arc::new(Metrics::new(
            &Default::default(),
            &Default::default(),
        ))));
        let reloader = Reloader::new(
            Arc::new(loader()),
            dir.path().to_owned(),
            Vec::new(),
            live.clone(),
        );
        (dir, live, reloader)
    }

    /// Each route of `table`: its pattern, whether it serves, and whether
    /// its last load failed.
    fn summary(table: &RouteTable<LoadedRoute>) -> Vec<(String, bool, bool)> {
        table
            .routes()
            .iter()
            .map(|route| {
                let value = &route.value;
                let serving = value.state.is_ok();
                (value.name.to_string(), serving, value.last_error.is_some())
            })
            .collect()
    }

    #[tokio::test]
    async fn a_reload_publishes_additions_updates_and_removals() {
        let (dir, live, reloader) = reloader();
        std::fs::write(dir.path().join("a.wasm"), component(1)).unwrap();
        reloader.reload().await;
        assert!(live.is_loaded());
        let first = live.current();
        assert_eq!(summary(&first), [("/a".into(), true, false)]);

        std::fs::write(dir.path().join("b.wasm"), component(1)).unwrap();
        std::fs::write(dir.path().join("a.wasm"), component(2)).unwrap();
        reloader.reload().await;
        let second = live.current();
        assert_eq!(
            summary(&second),
            [("/a".into(), true, false), ("/b".into(), true, false)]
        );
        let hash = |table: &RouteTable<LoadedRoute>| table.routes()[0].value.hash.clone();
        assert_ne!(hash(&first), hash(&second), "a.wasm's new version serves");

        std::fs::remove_file(dir.path().join("b.wasm")).unwrap();
        reloader.reload().await;
        assert_eq!(summary(&live.current()), [("/a".into(), true, false)]);
    }

    #[tokio::test]
    async fn a_route_runs_on_the_engine_its_reuse_needs() {
        let (dir, live, reloader) = reloader();
        // Whether each route reuses instances, and whether its engine has
        // wasmtime's concurrency support (`Pre::can_reuse`).
        let engines = || -> Vec<(bool, bool)> {
            live.current()
                .routes()
                .iter()
                .map(|route| {
                    let ready = route.value.state.as_ref().expect("serves");
                    (ready.reuse.is_some(), ready.pre.can_reuse())
                })
                .collect()
        };
        // The same content at two routes: one fresh, one reused.
        std::fs::write(dir.path().join("a.wasm"), component(1)).unwrap();
        std::fs::write(dir.path().join("b.wasm"), component(1)).unwrap();
        reloader.reload().await;
        assert_eq!(engines(), [(false, false), (false, false)]);

        std::fs::write(dir.path().join("b.toml"), "[reuse]\nmax_requests = 4\n").unwrap();
        reloader.reload().await;
        assert_eq!(engines(), [(false, false), (true, true)]);

        std::fs::remove_file(dir.path().join("b.toml")).unwrap();
        reloader.reload().await;
        assert_eq!(engines(), [(false, false), (false, false)]);
    }

    #[tokio::test]
    async fn a_broken_version_never_replaces_a_working_one() {
        let (dir, live, reloader) = reloader();
        std::fs::write(dir.path().join("a.wasm"), component(1)).unwrap();
        reloader.reload().await;
        let working = live.current().routes()[0].value.hash.clone();

        std::fs::write(dir.path().join("a.wasm"), b"not a component").unwrap();
        reloader.reload().await;
        let table = live.current();
        assert_eq!(summary(&table), [("/a".into(), true, true)]);
        assert_eq!(table.routes()[0].value.hash, working);
    }

    #[tokio::test]
    async fn an_unchanged_folder_publishes_nothing_new() {
        let (dir, live, reloader) = reloader();
        std::fs::write(dir.path().join("a.wasm"), component(1)).unwrap();
        reloader.reload().await;
        let before = live.current();
        reloader.reload().await;
        assert!(
            Arc::ptr_eq(&before, &live.current()),
            "the same table still serves"
        );
    }
}
