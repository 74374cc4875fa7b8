//! `wedge dev`: routes rebuilt from their source as it changes.
//!
//! A route opts in with a `[build]` table in its sidecar:
//!
//! ```toml
//! [build]
//! workdir = "../../handlers/hello"   # default: the sidecar's folder
//! command = "cargo build --release --target wasm32-wasip2"
//! watch = ["src/**/*.rs", "Cargo.toml"]
//! output = "target/wasm32-wasip2/release/hello.wasm"
//! ```
//!
//! [`Builds::discover`] reads every sidecar's `[build]` when `wedge dev`
//! starts; [`Builds::start`] then builds each route once, and again whenever
//! a file under its `workdir` that one of its `watch` globs matches changes
//! (debounced). The command runs through `sh -c` in `workdir`, in the
//! environment Wedge was started with; a successful build's `output` is
//! copied over the route's `.wasm` through a rename, and the route reloads
//! as for any other change. A failed build leaves the `.wasm` alone: the
//! working version keeps serving, and requests get the build's output as
//! an error page until the next build succeeds.
//!
//! Builds of different routes run in parallel, one per core at most. A
//! change during a route's build queues one more build of it, which starts
//! when the running one ends, so the last change always wins. A running
//! build is not cancelled: killing a compiler part way through throws away
//! work its next run could reuse (cargo's incremental cache), and leaves a
//! process tree to hunt down; queueing never interleaves two builds' copies.
//!
//! A request to a route whose build is running or queued waits for it to
//! end (up to [`BUILD_WAIT`]), so that a refresh after a save shows the
//! new version, as `next dev` compiles a page before it answers.
//!
//! `wedge serve` never reads `[build]`: production runs no command from a
//! routes folder.

mod build;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::{Notify, Semaphore, watch};

use crate::loader::{LoadError, route_files};
use crate::reload::{Reloader, is_a_read};
use crate::routing::{Route, RoutePattern, RouteTable};
use crate::server::{BuildFailed, BuildWait};
use crate::settings::{SettingsError, SettingsLayer};

/// Quiet time after the last source change before a build starts: editors
/// save in several writes, and formatters rewrite a file right after it is
/// saved. Builds take seconds; this is not what a user waits for.
pub const SOURCE_DEBOUNCE: Duration = Duration::from_millis(50);

/// Longest a request waits for its route's build before the version on
/// disk answers it: a first `cargo build` of a handler with its
/// dependencies takes a minute or two on a small machine.
pub const BUILD_WAIT: Duration = Duration::from_secs(300);

/// The routes with a `[build]`, matched like the served routes so that a
/// request finds the build of the route it asks for.
pub struct Builds {
    table: RouteTable<Arc<RouteBuild>>,
}

/// One route's build: what runs, and how it went last.
pub struct RouteBuild {
    /// The route's pattern, e.g. `/api/hello`.
    name: Arc<str>,
    /// The route's `.wasm`, which a successful build replaces.
    target: PathBuf,
    /// The sidecar the `[build]` came from.
    sidecar: PathBuf,
    /// Where the command runs (canonical, so watch events match it).
    workdir: PathBuf,
    command: String,
    /// Which changes under `workdir` rebuild; empty: none.
    watch: GlobSet,
    /// The built component, under `workdir` unless absolute.
    output: PathBuf,
    status: watch::Sender<BuildStatus>,
    /// Wakes the route's build loop.
    trigger: Notify,
}

/// Where a route's build stands.
#[derive(Debug, Clone, Default)]
struct BuildStatus {
    /// A build is wanted that has not started yet.
    queued: bool,
    /// A build is running.
    running: bool,
    /// Why the last build failed (and no build has succeeded since).
    failure: Option<Arc<str>>,
}

impl BuildStatus {
    fn settled(&self) -> bool {
        !self.queued && !self.running
    }
}

impl Builds {
    /// Reads the `[build]` of every sidecar under `dir`. A sidecar that
    /// cannot be read or whose `[build]` is invalid is reported and skipped.
    pub fn discover(dir: &Path) -> (Builds, Vec<LoadError>) {
        let (files, mut errors) = route_files(dir);
        let mut builds = Vec::new();
        for sidecar in files {
            if sidecar.extension().is_none_or(|ext| ext != "toml") {
                continue;
            }
            let target = sidecar.with_extension("wasm");
            let relative = target.strip_prefix(dir).unwrap_or(&target);
            let pattern = match RoutePattern::from_file_path(relative) {
                Ok(Some(pattern)) => pattern,
                Ok(None) => continue,
                Err(source) => {
                    errors.push(LoadError::Pattern {
                        file: target,
                        source,
                    });
                    continue;
                }
            };
            match RouteBuild::read(&sidecar, target.clone(), &pattern) {
                Ok(Some(build)) => builds.push(Route {
                    pattern,
                    file: target,
                    value: Arc::new(build),
                }),
                Ok(None) => {}
                Err(error) => errors.push(error),
            }
        }
        let (table, conflicts) = RouteTable::new(builds);
        errors.extend(conflicts.into_iter().map(LoadError::from));
        (Builds { table }, errors)
    }

    /// How many routes build.
    pub fn len(&self) -> usize {
        self.table.routes().len()
    }

    /// Builds every route now, then on every change its `watch` globs
    /// match (unless `watch_sources` is off), reloading through `reloader`
    /// after each successful build. Runs until the returned value is dropped.
    pub fn start(
        self: &Arc<Self>,
        reloader: Arc<Reloader>,
        watch_sources: bool,
    ) -> notify_debouncer_full::notify::Result<DevWatch> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parallel = Arc::new(Semaphore::new(cores));
        let mut tasks = Vec::new();
        for route in self.table.routes() {
            let build = route.value.clone();
            if build.watch.is_empty() {
                tracing::info!(
                    route = %build.name,
                    "its [build] has no `watch` globs, so it builds once; add watch = \
                     [\"src/**/*.rs\"] to {} to rebuild on changes",
                    build.sidecar.display()
                );
            }
            build.request();
            let (parallel, reloader) = (parallel.clone(), reloader.clone());
            tasks.push(tokio::spawn(build.run(parallel, reloader)));
        }
        let debouncer = if watch_sources {
            Some(self.watch_sources()?)
        } else {
            None
        };
        Ok(DevWatch {
            _debouncer: debouncer,
            tasks,
        })
    }

    /// Watches every build's `workdir`; a change a route's globs match
    /// queues its build.
    fn watch_sources(
        self: &Arc<Self>,
    ) -> notify_debouncer_full::notify::Result<Debouncer<RecommendedWatcher, RecommendedCache>>
    {
        let builds = self.clone();
        let mut debouncer = new_debouncer(SOURCE_DEBOUNCE, None, move |events| {
            builds.on_events(events);
        })?;
        let workdirs: BTreeSet<&Path> = self
            .table
            .routes()
            .iter()
            .filter(|route| !route.value.watch.is_empty())
            .map(|route| route.value.workdir.as_path())
            .collect();
        for workdir in workdirs {
            debouncer.watch(workdir, RecursiveMode::Recursive)?;
        }
        Ok(debouncer)
    }

    fn on_events(&self, events: DebounceEventResult) {
        let events = match events {
            Ok(events) => events,
            Err(errors) => {
                for error in errors {
                    tracing::warn!("watching build sources: {error}");
                }
                return;
            }
        };
        for event in events.iter().filter(|event| !is_a_read(&event.kind)) {
            for path in &event.paths {
                for route in self.table.routes() {
                    let build = &route.value;
                    let matched = path
                        .strip_prefix(&build.workdir)
                        .is_ok_and(|relative| build.watch.is_match(relative));
                    if matched {
                        build.request();
                    }
                }
            }
        }
    }

    /// Waits while the build of the route serving `path` is running or
    /// queued; then its last failure, if its last build failed.
    pub async fn settle(&self, path: &str) -> Option<BuildFailed> {
        let found = self.table.lookup(path)?;
        let build = &found.route.value;
        let mut status = build.status.subscribe();
        let settled = tokio::time::timeout(BUILD_WAIT, status.wait_for(BuildStatus::settled));
        if settled.await.is_err() {
            tracing::warn!(
                route = %build.name,
                "its build is still running after {BUILD_WAIT:?}; answering with the version on disk"
            );
        }
        let output = build.status.borrow().failure.clone()?;
        Some(BuildFailed {
            target: build.target.clone(),
            route: build.name.clone(),
            output,
        })
    }
}

impl BuildWait for Builds {
    fn settle<'a>(
        &'a self,
        path: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<BuildFailed>> + Send + 'a>> {
        Box::pin(Builds::settle(self, path))
    }
}

/// The running builds and source watch of `wedge dev`; dropping it stops
/// them (a running command is killed).
pub struct DevWatch {
    _debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DevWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RouteBuild {
    /// The `[build]` of `sidecar`, if it has one, resolved against the
    /// sidecar's folder.
    fn read(
        sidecar: &Path,
        target: PathBuf,
        pattern: &RoutePattern,
    ) -> Result<Option<RouteBuild>, LoadError> {
        let text = std::fs::read_to_string(sidecar).map_err(|source| LoadError::Io {
            path: sidecar.to_owned(),
            source,
        })?;
        let layer = SettingsLayer::parse_sidecar(sidecar, &text)?;
        let Some(settings) = layer.build() else {
            return Ok(None);
        };
        let error = |key: &str, message: String| SettingsError {
            file: sidecar.to_owned(),
            key: Some(format!("build.{key}")),
            message,
        };
        let folder = sidecar.parent().unwrap_or(Path::new("."));
        let workdir = folder.join(settings.workdir.as_deref().unwrap_or(Path::new("")));
        let workdir = std::fs::canonicalize(&workdir).map_err(|e| {
            let message = format!(
                "{} cannot be used ({e}); write a folder relative to the sidecar's",
                workdir.display()
            );
            error("workdir", message)
        })?;
        let mut globs = GlobSetBuilder::new();
        for pattern in &settings.watch {
            let glob = Glob::new(pattern).map_err(|e| {
                let message =
                    format!("`{pattern}` is not a glob ({e}); write e.g. \"src/**/*.rs\"");
                error("watch", message)
            })?;
            globs.add(glob);
        }
        let watch = globs
            .build()
            .map_err(|e| error("watch", format!("the globs cannot be used: {e}")))?;
        let status = BuildStatus {
            queued: true,
            ..BuildStatus::default()
        };
        Ok(Some(RouteBuild {
            name: pattern.to_string().into(),
            target,
            sidecar: sidecar.to_owned(),
            output: workdir.join(&settings.output),
            workdir,
            command: settings.command.clone(),
            watch,
            status: watch::Sender::new(status),
            trigger: Notify::new(),
        }))
    }

    /// Queues a build: the loop starts it when the running one (if any) ends.
    fn request(&self) {
        self.status.send_modify(|status| status.queued = true);
        self.trigger.notify_one();
    }

    /// Builds whenever one is queued, one at a time.
    async fn run(self: Arc<Self>, parallel: Arc<Semaphore>, reloader: Arc<Reloader>) {
        loop {
            self.trigger.notified().await;
            while self.take_queued() {
                let built = {
                    // A core's worth of building; the reload after it is
                    // the reloader's to pace.
                    let Ok(_permit) = parallel.acquire().await else {
                        return;
                    };
                    build::run(&self).await
                };
                let failure = match built {
                    Ok(()) => {
                        // Reloaded before the waiting requests go on, so
                        // that they get the new version.
                        reloader.reload().await;
                        None
                    }
                    Err(output) => Some(Arc::from(output)),
                };
                self.status.send_modify(|status| {
                    status.running = false;
                    status.failure = failure;
                });
            }
        }
    }

    /// Marks a queued build as running; whether there was one.
    fn take_queued(&self) -> bool {
        self.status.send_if_modified(|status| {
            let queued = status.queued;
            if queued {
                status.queued = false;
                status.running = true;
            }
            queued
        })
    }
}
