//! Finds route files under the routes folder and compiles each into a
//! pre-instantiated component, ready for a fresh instance per request.

mod files;
mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::cache::{CacheStats, CompileCache};
use crate::engine::{
    CORE_INSTANCES_PER_COMPONENT, Engines, MEMORIES_PER_COMPONENT, TABLES_PER_COMPONENT,
    over_component_limits,
};
use crate::routing::{EscapedPath, PatternError, Route, RouteConflict, RoutePattern, RouteTable};
use crate::sandbox::{GuestState, Pool, Pre, World, new_linker};
use crate::settings::{
    ConfigFile, Policy, RouteSettings, SettingsError, SettingsLayer, StoreConfig, env_allow_list,
    parse_env_file,
};
use crate::settings::{Reuse, ReuseLimits};

pub use files::{
    Cap, DEFAULT_MAX_SIDECAR_SIZE, DEFAULT_MAX_WASM_SIZE, FileError, SizeCaps, read_text_capped,
};
use files::{hash_bytes, hash_capped, read_capped};
pub(crate) use walk::route_files;

/// Why a route file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the folder or the file failed.
    #[error("{}: cannot read: {source}", EscapedPath(path))]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a regular file, or is over its size cap.
    #[error(transparent)]
    File(#[from] FileError),
    /// A symlinked folder that leads out of the routes folder.
    #[error(
        "{}: a symlink to the folder {}, outside the routes folder; Wedge does not follow it: \
         move that folder into the routes folder, or link to a folder inside it",
        EscapedPath(link),
        EscapedPath(target)
    )]
    OutsideLink {
        /// The symlink.
        link: PathBuf,
        /// Where it leads.
        target: PathBuf,
    },
    /// The file's path is not a valid route pattern.
    #[error("{}: {source}; rename the file", EscapedPath(file))]
    Pattern {
        /// The file.
        file: PathBuf,
        /// What is wrong with its path.
        source: PatternError,
    },
    /// The file names the same route as another, or breaks a routing rule beside it.
    #[error(transparent)]
    Conflict(#[from] RouteConflict),
    /// The route's sidecar (or the config's defaults, or the env file) is invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The file is a core wasm module or not wasm at all.
    #[error("{}: {reason}", file.display())]
    NotAComponent {
        /// The file.
        file: PathBuf,
        /// What it is instead, and what to do.
        reason: &'static str,
    },
    /// Wasmtime could not compile the component.
    #[error("{}: invalid component: {reason}", file.display())]
    Compile {
        /// The file.
        file: PathBuf,
        /// Wasmtime's reason.
        reason: String,
    },
    /// The component needs more memories, tables or core instances than one
    /// instance may have (`engine::MEMORIES_PER_COMPONENT` and friends).
    #[error(
        "{}: {reason}; Wedge allows one component at most {CORE_INSTANCES_PER_COMPONENT} core \
         instances, {MEMORIES_PER_COMPONENT} linear memories and {TABLES_PER_COMPONENT} tables: \
         build it with fewer",
        file.display()
    )]
    OverInstanceLimits {
        /// The file.
        file: PathBuf,
        /// What it needs, in wasmtime's words.
        reason: String,
    },
    /// The component imports something Wedge does not provide, or does not
    /// export `wasi:http/incoming-handler`.
    #[error("{}: {reason}", file.display())]
    Link {
        /// The file.
        file: PathBuf,
        /// What is missing, and what to do.
        reason: String,
    },
}

/// A route file compiled (or not) into something that can serve requests.
#[derive(Clone)]
pub struct LoadedRoute {
    /// The pattern as shown in logs and the `wedge-route` header, e.g. `/api/users/[id]`.
    pub name: Arc<str>,
    /// SHA-256 of the content this version was loaded from, hex.
    pub hash: String,
    /// Ready to instantiate, or why not.
    pub state: Result<Ready, Arc<LoadError>>,
    /// How this version was obtained.
    pub origin: Origin,
    /// When this version was loaded (or failed to load).
    pub loaded_at: SystemTime,
    /// Why the last load of the file failed, if it did: the route's own
    /// error when it has no working version, or the newer version's while
    /// an older one keeps serving. Cleared by the next load that works.
    pub last_error: Option<Arc<LoadError>>,
}

impl LoadedRoute {
    /// The first 12 hex digits of the content hash, for logs.
    pub fn short_hash(&self) -> &str {
        self.hash.get(..12).unwrap_or(&self.hash)
    }
}

/// A route that can serve: its component, settings and concurrency share.
#[derive(Clone)]
pub struct Ready {
    /// The pre-instantiated component.
    pub pre: Pre,
    /// Its sidecar settings, layered over the defaults.
    pub settings: Arc<RouteSettings>,
    /// Its share of the instance slots, if `max_concurrency` is set.
    pub slots: Option<Arc<Semaphore>>,
    /// How its instances are reused; `None`: a fresh one per request.
    pub reuse: Option<ReuseLimits>,
    /// The instances that serve several requests, made by the first
    /// request that needs them; one pool per version.
    pub pool: Arc<OnceLock<Pool>>,
}

impl Ready {
    /// The component's world.
    pub fn world(&self) -> World {
        self.pre.world()
    }
}

/// Where route settings come from besides each route's sidecar.
#[derive(Debug, Clone, Default)]
pub struct SettingsSource {
    /// `--config`: its path and `[defaults]`, as read at start-up.
    pub config: Option<(PathBuf, SettingsLayer)>,
    /// `--config` to read again at every load, so that a change to it
    /// reloads like a change to a sidecar.
    pub reread: Option<ConfigReread>,
    /// `--env-file`, re-read at every load.
    pub env_file: Option<PathBuf>,
    /// The most memory a route may ask for: the pool's per-instance size.
    pub max_memory: u64,
    /// `[limits]` and the `${NAME}` allow-list.
    pub policy: Policy,
}

/// The `--config` file a load reads again, and what it is combined with.
#[derive(Debug, Clone)]
pub struct ConfigReread {
    /// The file.
    pub path: PathBuf,
    /// `--env-allow`, added to the file's `env_allow`.
    pub env_allow_flags: Vec<String>,
    /// `[key_value.NAME]` as read at start-up: the stores are opened once,
    /// so a change to them is said, not applied.
    pub key_value: BTreeMap<String, StoreConfig>,
}

impl SettingsSource {
    /// This source with `--config` as it is now: its `[defaults]`,
    /// `[limits]` and `env_allow` read again (the file is read like a
    /// sidecar: a regular file under `cap`). Without `--config`, itself.
    fn current(&self, cap: Cap) -> Result<SettingsSource, SettingsError> {
        let Some(reread) = &self.reread else {
            return Ok(self.clone());
        };
        let error = |key: Option<&str>, message: String| SettingsError {
            file: reread.path.clone(),
            key: key.map(str::to_owned),
            message,
        };
        let text = read_text_capped(&reread.path, cap).map_err(|e| error(None, e.reason()))?;
        let config = ConfigFile::parse(&reread.path, &text)?;
        if config.key_value != reread.key_value {
            tracing::warn!(
                "{}: [key_value] changed; the stores keep the backends and limits read at \
                 start-up until the server restarts",
                reread.path.display()
            );
        }
        let env_allow = env_allow_list(&reread.env_allow_flags, config.env_allow.as_deref())
            .map_err(|e| error(Some("env_allow"), e.to_string()))?;
        Ok(SettingsSource {
            config: Some((reread.path.clone(), config.defaults)),
            reread: None,
            env_file: self.env_file.clone(),
            max_memory: self.max_memory,
            policy: Policy {
                limits: Some((reread.path.clone(), config.limits)),
                env_allow,
            },
        })
    }

    /// The variables `${NAME}` may name: the host's environment, then the env file.
    /// The env file is read like a sidecar: a regular file under `cap`.
    fn vars(&self, cap: Cap) -> Result<BTreeMap<String, String>, SettingsError> {
        let Some(file) = &self.env_file else {
            return Ok(BTreeMap::new());
        };
        let text = read_text_capped(file, cap).map_err(|e| SettingsError {
            file: file.clone(),
            key: None,
            message: e.reason(),
        })?;
        parse_env_file(file, &text)
    }

    /// The settings for the route served by `wasm`: its sidecar (same name,
    /// `.toml`, read as `sidecar`) over the config's defaults over the
    /// built-in defaults.
    fn for_route(
        &self,
        wasm: &Path,
        sidecar: &Result<Option<String>, SettingsError>,
        vars: &BTreeMap<String, String>,
    ) -> Result<RouteSettings, SettingsError> {
        let sidecar_file = wasm.with_extension("toml");
        let sidecar_file = sidecar_file.as_path();
        let layer = match sidecar {
            Ok(Some(text)) => Some(SettingsLayer::parse_sidecar(sidecar_file, text)?),
            Ok(None) => None,
            Err(error) => return Err(error.clone()),
        };
        let lookup = |name: &str| std::env::var(name).ok().or_else(|| vars.get(name).cloned());
        RouteSettings::resolve(
            layer.as_ref().map(|layer| (sidecar_file, layer)),
            self.config
                .as_ref()
                .map(|(file, layer)| (file.as_path(), layer)),
            self.max_memory,
            &self.policy,
            &lookup,
        )
    }
}

/// How a route's version was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now, in `ms` milliseconds.
    Compiled {
        /// Compile and link time.
        ms: u64,
    },
    /// Deserialized from the compile cache in `ms` milliseconds.
    Cached {
        /// Read, verify, deserialize and link time.
        ms: u64,
    },
    /// Already loaded from the same content: nothing compiled.
    Reused,
    /// The file could not be loaded.
    Failed,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Compiled { ms } => write!(f, "compiled in {ms} ms"),
            Origin::Cached { ms } => write!(f, "from cache in {ms} ms"),
            Origin::Reused => f.write_str("unchanged"),
            Origin::Failed => f.write_str("failed"),
        }
    }
}

/// The routes found under a folder, and every file that could not be served.
pub struct LoadedRoutes {
    /// Every valid route pattern; failed compiles answer 500.
    pub table: RouteTable<LoadedRoute>,
    /// Bad patterns, conflicts and compile or link failures, each naming its file.
    pub errors: Vec<Arc<LoadError>>,
    /// Route files (or their sidecars) emptied within [`SETTLE`]: taken as
    /// mid-write, so their previous version stays. Load again after
    /// [`SETTLE`] to take them as they are.
    pub unsettled: Vec<PathBuf>,
}

/// How long a file emptied by a reload-time change is taken as mid-write.
///
/// Writing a file in place (`>`, `cp`, `std::fs::write`, editors that do
/// not rename) truncates it first and fills it after; a rescan in between
/// reads an empty file. An empty `.wasm` would only fail, but an empty
/// sidecar is valid and means the defaults, which would be served (for
/// instance every method, not just the sidecar's) until the write lands.
/// A file that stays empty this long is what its author meant.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Compiles route files, through the cache, for the engine each route runs
/// on (see [`Engines`]): WASI 0.3 components and routes that reuse
/// instances on the engine with concurrency support, the rest on the plain
/// one.
pub struct Loader {
    plain: Target,
    concurrent: Option<Target>,
    cache: Option<CompileCache>,
    settings: SettingsSource,
    cache_stats: CacheStats,
    caps: SizeCaps,
    /// Route files and sidecars the last reload read empty, and when each
    /// was first read empty: one that stays empty for [`SETTLE`] is taken
    /// as it is, whatever its modification time says.
    empty_since: Mutex<HashMap<PathBuf, Instant>>,
}

/// A route file found on disk, before compiling.
struct Candidate {
    pattern: RoutePattern,
    file: PathBuf,
    /// The SHA-256 of its content, hex. The bytes are not kept: compiling
    /// reads them again (and checks them against this hash).
    content: Result<String, LoadError>,
    /// Its sidecar's text, if it has one; read with the content, so that
    /// what is checked for being mid-write is what is loaded.
    sidecar: Result<Option<String>, SettingsError>,
}

/// What a scan of the routes folder found, before compiling.
#[derive(Default)]
struct Scan {
    candidates: Vec<Candidate>,
    /// Mid-write routes, as the previous table had them.
    kept: Vec<Route<LoadedRoute>>,
    unsettled: Vec<PathBuf>,
    errors: Vec<Arc<LoadError>>,
}

/// One engine, the linker of its WASI, and its part of every cache key.
struct Target {
    engine: Engine,
    linker: Linker<GuestState>,
    /// Entries from another engine are never found.
    hash: String,
}

impl Target {
    fn new(engine: Engine) -> wasmtime::Result<Target> {
        let linker = new_linker(&engine)?;
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Target {
            engine,
            linker,
            hash: format!("{:016x}", hasher.finish()),
        })
    }
}

/// A content compiled (or reused, or found in the cache) and linked, or why not.
type Version = Result<(Pre, Origin), Arc<LoadError>>;

/// What a version is compiled for: its content hash, and whether its route
/// reuses instances, which needs the engine with concurrency support.
type VersionKey = (String, bool);

/// Whether a route with `settings` asks to reuse instances: WASI 0.3
/// routes reuse unless told not to, and run on the concurrent engine
/// whatever this says.
fn asks_reuse(settings: &RouteSettings) -> bool {
    matches!(settings.reuse, Some(Reuse::On(_)))
}

/// Compiled or reused versions by content hash and engine.
#[derive(Default)]
struct Compiled {
    versions: HashMap<VersionKey, Version>,
    /// Contents whose file changed (or went) between hashing and compiling.
    changed: HashSet<String>,
}

impl Loader {
    /// A loader whose components link against WASI on `engines`, cached
    /// in `cache`, with settings from their sidecars over `settings`.
    pub fn new(
        engines: &Engines,
        cache: Option<CompileCache>,
        settings: SettingsSource,
    ) -> wasmtime::Result<Loader> {
        Ok(Loader {
            plain: Target::new(engines.plain.clone())?,
            concurrent: engines.concurrent.clone().map(Target::new).transpose()?,
            cache,
            settings,
            cache_stats: CacheStats::default(),
            caps: SizeCaps::default(),
            empty_since: Mutex::new(HashMap::new()),
        })
    }

    /// The same loader with other caps on the size of the files it reads.
    pub fn with_size_caps(self, caps: SizeCaps) -> Loader {
        Loader { caps, ..self }
    }

    /// How often a component was found in the compile cache, and not.
    pub fn cache_stats(&self) -> &CacheStats {
        &self.cache_stats
    }

    fn wasm_cap(&self) -> Cap {
        Cap {
            bytes: self.caps.wasm,
            flag: "--max-wasm-size",
        }
    }

    /// Bounds sidecars, and the env file read with them.
    fn sidecar_cap(&self) -> Cap {
        Cap {
            bytes: self.caps.sidecar,
            flag: "--max-sidecar-size",
        }
    }

    /// Loads every route under `dir`, reusing whatever `previous` already
    /// loaded from the same content: unchanged files are never recompiled.
    ///
    /// A file that fails to load where `previous` served a working version
    /// of it keeps that version (and the failure is reported). Where two
    /// files conflict, one already in `previous` wins, then path order.
    ///
    /// On a reload (`previous` given), a route whose `.wasm` or sidecar was
    /// emptied within [`SETTLE`] is left as `previous` had it (or out, if
    /// new) and listed in [`LoadedRoutes::unsettled`]; so is a file that
    /// changed while it was being compiled.
    pub fn load_dir(&self, dir: &Path, previous: Option<&RouteTable<LoadedRoute>>) -> LoadedRoutes {
        let scan = self.scan(dir, previous);
        self.load(scan, previous)
    }

    /// Compiles what `scan` found (what `previous` loaded from the same
    /// content is reused) and builds the table from it.
    fn load(&self, mut scan: Scan, previous: Option<&RouteTable<LoadedRoute>>) -> LoadedRoutes {
        // Files already served claim their patterns first.
        scan.candidates
            .sort_by_key(|c| served_before(previous, &c.file).is_none());
        let previous_routes = previous.map_or(&[][..], |table| table.routes());
        // `--config` and `--env-file` as they are now; if either cannot be
        // used, every route keeps the version it had.
        let inputs = self
            .settings
            .current(self.sidecar_cap())
            .and_then(|source| {
                let vars = source.vars(self.sidecar_cap())?;
                Ok((source, vars))
            });
        if let Err(error) = &inputs {
            scan.errors
                .push(Arc::new(LoadError::Settings(error.clone())));
        }
        // Settings first: whether a route reuses instances decides the
        // engine its component is compiled for.
        let settings: Vec<_> = scan
            .candidates
            .iter()
            .map(|candidate| match &inputs {
                Ok((source, vars)) => source.for_route(&candidate.file, &candidate.sidecar, vars),
                Err(error) => Err(error.clone()),
            })
            .collect();
        // A route whose settings fail keeps its previous version, if it
        // had one: its content is looked up for that version's engine, so
        // that a broken sidecar costs no compile.
        let reuses: Vec<bool> = scan
            .candidates
            .iter()
            .zip(&settings)
            .map(|(candidate, settings)| match settings {
                Ok(settings) => asks_reuse(settings),
                Err(_) => served_before(previous, &candidate.file)
                    .and_then(|route| route.value.state.as_ref().ok())
                    .is_some_and(|ready| asks_reuse(&ready.settings)),
            })
            .collect();
        let compiled = self.compile_all(&scan.candidates, &reuses, previous_routes);
        // Kept versions were served before: they claim their patterns first.
        let mut routes = std::mem::take(&mut scan.kept);
        for ((candidate, settings), reuse) in scan.candidates.into_iter().zip(settings).zip(reuses)
        {
            if let Ok(hash) = &candidate.content
                && compiled.changed.contains(hash)
            {
                if previous.is_none() {
                    tracing::warn!(
                        file = %candidate.file.display(),
                        "changed while loading; not served until the next rescan"
                    );
                }
                let (pattern, file) = (candidate.pattern, candidate.file);
                routes.extend(keep_previous(previous, pattern, &file));
                scan.unsettled.push(file);
                continue;
            }
            routes.push(Self::assemble(
                candidate,
                settings,
                reuse,
                &compiled,
                previous,
                &mut scan.errors,
            ));
        }
        let (table, conflicts) = RouteTable::new(routes);
        let conflicts = conflicts.into_iter().map(|c| Arc::new(LoadError::from(c)));
        scan.errors.extend(conflicts);
        LoadedRoutes {
            table,
            errors: scan.errors,
            unsettled: scan.unsettled,
        }
    }

    /// Finds the route files under `dir` and hashes each (with its sidecar
    /// read), setting aside those that look mid-write on a reload.
    fn scan(&self, dir: &Path, previous: Option<&RouteTable<LoadedRoute>>) -> Scan {
        let (files, scan_errors) = route_files(dir);
        let mut scan = Scan {
            errors: scan_errors.into_iter().map(Arc::new).collect(),
            ..Scan::default()
        };
        let mut empty_since = self
            .empty_since
            .lock()
            .expect("no scan panics holding the lock");
        let seen_before = std::mem::take(&mut *empty_since);
        let now = Instant::now();
        for file in files {
            let relative = file.strip_prefix(dir).unwrap_or(&file);
            let pattern = match RoutePattern::from_file_path(relative) {
                Ok(Some(pattern)) => pattern,
                Ok(None) => continue,
                Err(source) => {
                    scan.errors
                        .push(Arc::new(LoadError::Pattern { file, source }));
                    continue;
                }
            };
            let content = hash_capped(&file, self.wasm_cap()).map_err(LoadError::from);
            let sidecar_file = file.with_extension("toml");
            let sidecar = read_sidecar(&sidecar_file, self.sidecar_cap());
            if previous.is_some() {
                // Read empty just after a change: a write in progress, for
                // [`SETTLE`] at most from when a reload first saw it empty.
                let wasm_empty = matches!(&content, Ok((_, 0)));
                let sidecar_empty = matches!(&sidecar, Ok(Some(text)) if text.is_empty());
                let emptied = [(wasm_empty, &file), (sidecar_empty, &sidecar_file)];
                let mut mid_write = false;
                for (_, path) in emptied.into_iter().filter(|(empty, _)| *empty) {
                    let since = seen_before.get(path).copied().unwrap_or(now);
                    mid_write |= now.duration_since(since) < SETTLE && just_changed(path);
                    empty_since.insert(path.clone(), since);
                }
                if mid_write {
                    tracing::debug!(file = %file.display(), "emptied just now; waiting for the write");
                    scan.kept.extend(keep_previous(previous, pattern, &file));
                    scan.unsettled.push(file);
                    continue;
                }
            }
            scan.candidates.push(Candidate {
                content: content.map(|(hash, _)| hash),
                sidecar,
                pattern,
                file,
            })
        }
        scan
    }

    /// The route `candidate` becomes: its compiled version (for the engine
    /// `reuse` says) with its settings, or its failure (beside the previous
    /// version, if that worked).
    fn assemble(
        candidate: Candidate,
        settings: Result<RouteSettings, SettingsError>,
        reuse: bool,
        compiled: &Compiled,
        previous: Option<&RouteTable<LoadedRoute>>,
        errors: &mut Vec<Arc<LoadError>>,
    ) -> Route<LoadedRoute> {
        let name: Arc<str> = candidate.pattern.to_string().into();
        let old = served_before(previous, &candidate.file).map(|r| &r.value);
        let (hash, loaded) = match candidate.content {
            Ok(hash) => {
                let key = (hash, reuse);
                let loaded = compiled.versions.get(&key).cloned().unwrap_or_else(|| {
                    unreachable!("bug: every hashed candidate is compiled, reused or changed")
                });
                (key.0, loaded)
            }
            Err(error) => (String::new(), Err(Arc::new(error))),
        };
        let value = match (loaded, settings) {
            (Ok((pre, origin)), Ok(settings)) => ready(name, hash, pre, origin, settings, old),
            (Err(error), _) => failed(name, hash, error, old, errors),
            (Ok(_), Err(error)) => {
                let error = Arc::new(LoadError::Settings(error));
                failed(name, hash, error, old, errors)
            }
        };
        Route {
            pattern: candidate.pattern,
            file: candidate.file,
            value,
        }
    }

    /// Compiles each distinct content once per engine (`reuses`, by
    /// candidate: whether its route reuses instances), on as many threads
    /// as there are cores; content `previous` already loaded for that
    /// engine is reused, not compiled.
    /// At most one file's bytes per thread are held at a time.
    ///
    /// The threads are plain scoped threads taking jobs from a counter, not
    /// a rayon pool: wasmtime compiles each file on rayon's pool, and a
    /// rayon worker waiting for that inner work steals other jobs, which
    /// here would be the next files, held all at once (the bound that
    /// `a_load_does_not_hold_every_file_at_once` checks).
    fn compile_all(
        &self,
        candidates: &[Candidate],
        reuses: &[bool],
        previous: &[Route<LoadedRoute>],
    ) -> Compiled {
        let mut compiled = Compiled::default();
        for route in previous.iter().filter(|r| !r.value.hash.is_empty()) {
            let hash = &route.value.hash;
            let (reused, keys) = match &route.value.state {
                Ok(ready) => (
                    Ok((ready.pre.clone(), Origin::Reused)),
                    vec![(hash.clone(), asks_reuse(&ready.settings))],
                ),
                // A bad sidecar says nothing about the component.
                Err(error) if matches!(**error, LoadError::Settings(_)) => continue,
                // A content that failed fails on either engine.
                Err(error) => (
                    Err(error.clone()),
                    vec![(hash.clone(), false), (hash.clone(), true)],
                ),
            };
            for key in keys {
                // A working version wins over a failure of the same content.
                let entry = compiled.versions.entry(key).or_insert(reused.clone());
                if entry.is_err() && reused.is_ok() {
                    *entry = reused.clone();
                }
            }
        }
        let mut queued = HashSet::new();
        let jobs: Vec<(&Path, VersionKey)> = candidates
            .iter()
            .zip(reuses)
            .filter_map(|(candidate, &reuse)| {
                let hash = candidate.content.as_deref().ok()?;
                let key = (hash.to_owned(), reuse);
                let new = !compiled.versions.contains_key(&key) && queued.insert(key.clone());
                new.then_some((candidate.file.as_path(), key))
            })
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(jobs.len());
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::with_capacity(jobs.len()));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while let Some((file, key)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let result = self.compile_file(file, &key.0, key.1);
                        results
                            .lock()
                            .expect("no worker panics holding the lock")
                            .push((key.clone(), result));
                    }
                });
            }
        });
        let results = results
            .into_inner()
            .expect("no worker panicked holding the lock");
        for (key, result) in results {
            match result {
                Some(result) => {
                    compiled.versions.insert(key, result);
                }
                None => {
                    compiled.changed.insert(key.0);
                }
            }
        }
        compiled
    }

    /// Reads `file` again and loads it, if it still holds the content that
    /// was hashed as `hash`; `None` if it changed (or went) since. `reuse`:
    /// its route reuses instances.
    fn compile_file(&self, file: &Path, hash: &str, reuse: bool) -> Option<Version> {
        let bytes = match read_capped(file, self.wasm_cap()) {
            Ok(bytes) if hash_bytes(&bytes) == hash => bytes,
            // Rewritten, removed or swapped since it was hashed: not the
            // content to load, and not a failure of that content either.
            Ok(_) | Err(_) => {
                tracing::debug!(file = %file.display(), "changed while loading; rescanning");
                return None;
            }
        };
        Some(
            self.load_component(file, &bytes, hash, reuse)
                .map_err(Arc::new),
        )
    }

    /// Deserializes the component from the cache, or compiles (and caches)
    /// it; then links it. The work done once per version, so that a request
    /// only instantiates. A WASI 0.3 component, or one whose route reuses
    /// instances (`reuse`), is loaded on the engine with concurrency
    /// support; any other on the plain engine.
    pub fn load_component(
        &self,
        file: &Path,
        bytes: &[u8],
        hash: &str,
        reuse: bool,
    ) -> Result<(Pre, Origin), LoadError> {
        let started = Instant::now();
        tracing::debug!(file = %file.display(), "loading component");
        check_is_component(file, bytes)?;
        let wasi_0_3 = exports_wasi_0_3_handler(bytes);
        let target = match &self.concurrent {
            Some(concurrent) if wasi_0_3 || reuse => concurrent,
            None if wasi_0_3 => {
                return Err(LoadError::Link {
                    file: file.to_owned(),
                    reason: "is a WASI 0.3 component (it exports wasi:http/handler@0.3.0), and \
                             this server runs with --no-wasi-0-3: drop the flag, or build the \
                             handler for WASI 0.2 (wasi:http/proxy)"
                        .to_owned(),
                });
            }
            // Under `--no-wasi-0-3`, a route asking for reuse gets fresh
            // instances (and a warning, when it is made ready).
            _ => &self.plain,
        };
        let key = format!("{hash}-{}", target.hash);
        let cached = self.cache.as_ref().and_then(|cache| cache.get(&key));
        let (component, cached) = match cached.map(|payload| deserialize(target, &payload)) {
            Some(Ok(component)) => {
                self.cache_stats.hits.inc();
                (component, true)
            }
            cached => {
                if self.cache.is_some() {
                    self.cache_stats.misses.inc();
                }
                if let Some(Err(error)) = cached {
                    tracing::warn!(file = %file.display(), "compile cache entry unusable ({error:#}); recompiling");
                }
                let component = Component::from_binary(&target.engine, bytes).map_err(|e| {
                    let (file, reason) = (file.to_owned(), format!("{e:#}"));
                    if over_component_limits(&e) {
                        LoadError::OverInstanceLimits { file, reason }
                    } else {
                        LoadError::Compile { file, reason }
                    }
                })?;
                if let Some(cache) = &self.cache {
                    match component.serialize() {
                        Ok(payload) => cache.put(&key, &payload),
                        Err(error) => {
                            tracing::warn!("cannot serialize {}: {error:#}", file.display())
                        }
                    }
                }
                (component, false)
            }
        };
        let pre = link(target, file, &component)?;
        let ms = started.elapsed().as_millis() as u64;
        let origin = if cached {
            Origin::Cached { ms }
        } else {
            Origin::Compiled { ms }
        };
        Ok((pre, origin))
    }
}

#[expect(
    unsafe_code,
    reason = "deserializing runs code the cache holds; the cache folder is private and every entry is checksummed before it gets here"
)]
fn deserialize(target: &Target, payload: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `payload` is a verified entry written by `Component::serialize`
    // with this engine's compatibility hash in its key; wasmtime checks
    // the header (version, target, settings) again before loading.
    unsafe { Component::deserialize(&target.engine, payload) }
}

fn link(target: &Target, file: &Path, component: &Component) -> Result<Pre, LoadError> {
    let instance = target
        .linker
        .instantiate_pre(component)
        .map_err(|e| LoadError::Link {
            file: file.to_owned(),
            reason: format!(
                "{e:#}; Wedge provides WASI 0.2 and 0.3 and wasi:http (the \
                 wasi:http/proxy and wasi:http/service worlds)"
            ),
        })?;
    Pre::new(instance).map_err(|e| LoadError::Link {
        file: file.to_owned(),
        reason: format!(
            "exports neither wasi:http/handler@0.3.0 nor wasi:http/incoming-handler@0.2 \
             ({e:#}); build it for the wasi:http/service (WASI 0.3) or wasi:http/proxy \
             (WASI 0.2) world"
        ),
    })
}

/// A working version; the old one itself where nothing changed, so its
/// concurrency slots carry over.
fn ready(
    name: Arc<str>,
    hash: String,
    pre: Pre,
    origin: Origin,
    settings: RouteSettings,
    old: Option<&LoadedRoute>,
) -> LoadedRoute {
    if let Some(old) = old
        && old.hash == hash
        && let Ok(ready) = &old.state
        && *ready.settings == settings
    {
        return LoadedRoute {
            last_error: None,
            ..old.clone()
        };
    }
    let slots = settings
        .max_concurrency
        .map(|n| Arc::new(Semaphore::new(n as usize)));
    let mut reuse = pre.world().reuse(&settings);
    if reuse.is_some() && !pre.can_reuse() {
        tracing::warn!(
            route = %name,
            "`reuse` is ignored: this server runs with --no-wasi-0-3, so every request gets a \
             fresh instance; drop the flag to reuse instances"
        );
        reuse = None;
    }
    LoadedRoute {
        name,
        hash,
        state: Ok(Ready {
            pre,
            settings: Arc::new(settings),
            slots,
            reuse,
            pool: Arc::default(),
        }),
        origin,
        loaded_at: SystemTime::now(),
        last_error: None,
    }
}

/// A version that failed: the old one keeps serving if it worked.
fn failed(
    name: Arc<str>,
    hash: String,
    error: Arc<LoadError>,
    old: Option<&LoadedRoute>,
    errors: &mut Vec<Arc<LoadError>>,
) -> LoadedRoute {
    match old {
        Some(old) if old.state.is_ok() => {
            errors.push(error.clone());
            tracing::warn!(
                route = %name,
                "new version failed to load; still serving version {}",
                old.short_hash()
            );
            LoadedRoute {
                last_error: Some(error),
                ..old.clone()
            }
        }
        // The same compile failure, reported when it happened.
        Some(old) if matches!(&old.state, Err(e) if Arc::ptr_eq(e, &error)) => old.clone(),
        _ => {
            errors.push(error.clone());
            LoadedRoute {
                name,
                hash,
                state: Err(error.clone()),
                origin: Origin::Failed,
                loaded_at: SystemTime::now(),
                last_error: Some(error),
            }
        }
    }
}

/// Whether two loads failed the same way (by identity, or by message: a
/// file that fails again is read anew).
pub(crate) fn same_error(a: Option<&Arc<LoadError>>, b: Option<&Arc<LoadError>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.to_string() == b.to_string(),
        _ => false,
    }
}

/// The route loaded from `file` in `previous`, if any.
fn served_before<'a>(
    previous: Option<&'a RouteTable<LoadedRoute>>,
    file: &Path,
) -> Option<&'a Route<LoadedRoute>> {
    previous.and_then(|table| table.by_file(file))
}

/// `file` as `previous` served it, if it did: kept while it settles.
fn keep_previous(
    previous: Option<&RouteTable<LoadedRoute>>,
    pattern: RoutePattern,
    file: &Path,
) -> Option<Route<LoadedRoute>> {
    served_before(previous, file).map(|old| Route {
        pattern,
        file: file.to_owned(),
        value: old.value.clone(),
    })
}

/// Whether `file` changed within [`SETTLE`] (a modification time in the
/// future counts as just now). Asked after reading it empty.
fn just_changed(file: &Path) -> bool {
    std::fs::metadata(file)
        .and_then(|meta| meta.modified())
        .is_ok_and(|modified| {
            SystemTime::now()
                .duration_since(modified)
                .map_or(true, |age| age < SETTLE)
        })
}

/// A route's sidecar text; `None` when it has none.
fn read_sidecar(file: &Path, cap: Cap) -> Result<Option<String>, SettingsError> {
    match read_text_capped(file, cap) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(SettingsError {
            file: file.to_owned(),
            key: None,
            message: error.reason(),
        }),
    }
}

/// Whether the component `bytes` exports `wasi:http/handler@0.3.x`, read
/// from its outermost export section without compiling it.
fn exports_wasi_0_3_handler(bytes: &[u8]) -> bool {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentExportSection(exports)) if depth == 0 => {
                let found = exports.into_iter().any(|export| {
                    export.is_ok_and(|export| export.name.name.starts_with("wasi:http/handler@0.3"))
                });
                if found {
                    return true;
                }
            }
            Ok(_) => {}
            // Compiling it says what is wrong.
            Err(_) => return false,
        }
    }
    false
}

/// Tells a core module or a non-wasm file from a component before wasmtime
/// does, so the error can say what to do.
fn check_is_component(file: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    // Every wasm binary starts with `\0asm`, then a version: 1 for a core
    // module, 0x0d with layer 1 for a component.
    let reason = match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => return Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
            "is a core wasm module, not a component: build for `wasm32-wasip2` \
             (or run `wasm-tools component new`)"
        }
        _ => "is not a WebAssembly component: build for `wasm32-wasip2`",
    };
    Err(LoadError::NotAComponent {
        file: file.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::exports_wasi_0_3_handler;
    use crate::cache::CompileCache;
    use crate::testing::{component, loader_with_cache};

    #[test]
    fn a_broken_sidecar_keeps_the_version_on_its_engine_and_compiles_nothing() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let routes = dir.path().join("routes");
        std::fs::create_dir_all(&routes).unwrap();
        let cache = CompileCache::open(&dir.path().join("cache"), 1 << 30).expect("a cache");
        let loader = loader_with_cache(Some(cache));
        std::fs::write(routes.join("r.wasm"), component(1)).unwrap();
        std::fs::write(routes.join("r.toml"), "[reuse]\nmax_requests = 4\n").unwrap();
        let first = loader.load_dir(&routes, None);
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert_eq!(loader.cache_stats().misses.get(), 1, "compiled once");

        std::fs::write(routes.join("r.toml"), "[reuse]\nmax_requests = \"many\"\n").unwrap();
        let second = loader.load_dir(&routes, Some(&first.table));
        assert_eq!(second.errors.len(), 1, "the sidecar's error");
        let route = &second.table.routes()[0].value;
        assert!(route.last_error.is_some());
        let ready = route
            .state
            .as_ref()
            .expect("the working version still serves");
        assert!(ready.reuse.is_some() && ready.pre.can_reuse());
        // Neither compiled for the plain engine nor looked up in the cache.
        assert_eq!(loader.cache_stats().misses.get(), 1);
        assert_eq!(loader.cache_stats().hits.get(), 0);
    }

    #[test]
    fn a_wasi_0_3_handler_is_found_among_the_outermost_exports_only() {
        let exported = wat::parse_str(
            r#"(component (instance $i) (export "wasi:http/handler@0.3.0" (instance $i)))"#,
        )
        .expect("valid component text");
        assert!(exports_wasi_0_3_handler(&exported));
        let nested = wat::parse_str(
            r#"(component (component (instance $i) (export "wasi:http/handler@0.3.0" (instance $i))))"#,
        )
        .expect("valid component text");
        assert!(!exports_wasi_0_3_handler(&nested));
        let wasi_0_2 = wat::parse_str(
            r#"(component (instance $i) (export "wasi:http/incoming-handler@0.2.6" (instance $i)))"#,
        )
        .expect("valid component text");
        assert!(!exports_wasi_0_3_handler(&wasi_0_2));
    }
}
