//! Finds route files under the routes folder and compiles each into a
//! pre-instantiated component, ready for a fresh instance per request.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use tokio::sync::Semaphore;

use crate::cache::{CacheStats, CompileCache};
use crate::engine::{
    CORE_INSTANCES_PER_COMPONENT, MEMORIES_PER_COMPONENT, TABLES_PER_COMPONENT,
    over_component_limits,
};
use crate::routing::{PatternError, Route, RouteConflict, RoutePattern, RouteTable};
use crate::sandbox::GuestState;
use crate::settings::{Policy, RouteSettings, SettingsError, SettingsLayer, parse_env_file};

/// Why a route file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the folder or the file failed.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's path is not a valid route pattern.
    #[error("{}: {source}; rename the file", file.display())]
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
    pub pre: ProxyPre<GuestState>,
    /// Its sidecar settings, layered over the defaults.
    pub settings: Arc<RouteSettings>,
    /// Its share of the instance slots, if `max_concurrency` is set.
    pub slots: Option<Arc<Semaphore>>,
}

/// Where route settings come from besides each route's sidecar.
#[derive(Debug, Clone, Default)]
pub struct SettingsSource {
    /// `--config`: its path and `[defaults]`.
    pub config: Option<(PathBuf, SettingsLayer)>,
    /// `--env-file`, re-read at every load.
    pub env_file: Option<PathBuf>,
    /// The most memory a route may ask for: the pool's per-instance size.
    pub max_memory: u64,
    /// `[limits]` and the `${NAME}` allow-list.
    pub policy: Policy,
}

impl SettingsSource {
    /// The variables `${NAME}` may name: the host's environment, then the env file.
    fn vars(&self) -> Result<BTreeMap<String, String>, SettingsError> {
        let Some(file) = &self.env_file else {
            return Ok(BTreeMap::new());
        };
        let text = std::fs::read_to_string(file).map_err(|e| SettingsError {
            file: file.clone(),
            key: None,
            message: format!("cannot read the env file: {e}"),
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

/// Compiles route files against one engine and linker, through the cache.
pub struct Loader {
    engine: Engine,
    linker: Linker<GuestState>,
    cache: Option<CompileCache>,
    settings: SettingsSource,
    /// Part of every cache key: entries from another engine are never found.
    engine_hash: String,
    cache_stats: CacheStats,
}

/// A route file read from disk, before compiling.
struct Candidate {
    pattern: RoutePattern,
    file: PathBuf,
    content: Result<(Vec<u8>, String), LoadError>,
    /// Its sidecar's text, if it has one; read with the content, so that
    /// what is checked for being mid-write is what is loaded.
    sidecar: Result<Option<String>, SettingsError>,
}

impl Loader {
    /// A loader whose components link against `linker`, cached in `cache`,
    /// with settings from their sidecars over `settings`.
    pub fn new(
        engine: Engine,
        linker: Linker<GuestState>,
        cache: Option<CompileCache>,
        settings: SettingsSource,
    ) -> Loader {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());
        Loader {
            engine,
            linker,
            cache,
            settings,
            engine_hash,
            cache_stats: CacheStats::default(),
        }
    }

    /// How often a component was found in the compile cache, and not.
    pub fn cache_stats(&self) -> &CacheStats {
        &self.cache_stats
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
    /// new) and listed in [`LoadedRoutes::unsettled`].
    pub fn load_dir(&self, dir: &Path, previous: Option<&RouteTable<LoadedRoute>>) -> LoadedRoutes {
        let (files, scan_errors) = route_files(dir);
        let mut errors: Vec<_> = scan_errors.into_iter().map(Arc::new).collect();
        let served_before = |file: &Path| previous.and_then(|table| table.by_file(file));
        let mut candidates = Vec::new();
        let mut unsettled = Vec::new();
        let mut kept = Vec::new();
        for file in files {
            let relative = file.strip_prefix(dir).unwrap_or(&file);
            match RoutePattern::from_file_path(relative) {
                Ok(Some(pattern)) => {
                    let content = read_and_hash(&file);
                    let sidecar_file = file.with_extension("toml");
                    let sidecar = read_sidecar(&sidecar_file);
                    // Read empty just after a change: a write in progress.
                    let wasm_empty = matches!(&content, Ok((bytes, _)) if bytes.is_empty());
                    let sidecar_empty = matches!(&sidecar, Ok(Some(text)) if text.is_empty());
                    let mid_write = previous.is_some()
                        && ((wasm_empty && just_changed(&file))
                            || (sidecar_empty && just_changed(&sidecar_file)));
                    if mid_write {
                        tracing::debug!(file = %file.display(), "emptied just now; waiting for the write");
                        if let Some(old) = served_before(&file) {
                            let value = old.value.clone();
                            kept.push(Route {
                                pattern,
                                file: file.clone(),
                                value,
                            });
                        }
                        unsettled.push(file);
                        continue;
                    }
                    candidates.push(Candidate {
                        content,
                        sidecar,
                        pattern,
                        file,
                    })
                }
                Ok(None) => {}
                Err(source) => errors.push(Arc::new(LoadError::Pattern { file, source })),
            }
        }
        let previous_routes = previous.map_or(&[][..], |table| table.routes());
        // Files already served claim their patterns first.
        candidates.sort_by_key(|c| served_before(&c.file).is_none());

        let compiled = self.compile_all(&candidates, previous_routes);
        let vars = self.settings.vars();
        if let Err(error) = &vars {
            errors.push(Arc::new(LoadError::Settings(error.clone())));
        }
        // Kept versions were served before: they claim their patterns first.
        let routes: Vec<_> = kept
            .into_iter()
            .chain(candidates.into_iter().map(|candidate| {
                let name: Arc<str> = candidate.pattern.to_string().into();
                let old = served_before(&candidate.file).map(|r| &r.value);
                let (hash, loaded) = match candidate.content {
                    Ok((_, hash)) => {
                        let loaded = compiled.get(&hash).cloned().unwrap_or_else(|| {
                            unreachable!("bug: every read candidate is compiled or reused")
                        });
                        (hash, loaded)
                    }
                    Err(error) => (String::new(), Err(Arc::new(error))),
                };
                let settings = match &vars {
                    Ok(vars) => self
                        .settings
                        .for_route(&candidate.file, &candidate.sidecar, vars),
                    Err(error) => Err(error.clone()),
                };
                let value = match (loaded, settings) {
                    (Ok((pre, origin)), Ok(settings)) => {
                        ready(name, hash, pre, origin, settings, old)
                    }
                    (Err(error), _) => failed(name, hash, error, old, &mut errors),
                    (Ok(_), Err(error)) => {
                        let error = Arc::new(LoadError::Settings(error));
                        failed(name, hash, error, old, &mut errors)
                    }
                };
                Route {
                    pattern: candidate.pattern,
                    file: candidate.file,
                    value,
                }
            }))
            .collect();
        let (table, conflicts) = RouteTable::new(routes);
        errors.extend(conflicts.into_iter().map(|c| Arc::new(LoadError::from(c))));
        LoadedRoutes {
            table,
            errors,
            unsettled,
        }
    }

    /// Compiles each distinct content once, on as many threads as there are
    /// cores; content `previous` already loaded is reused, not compiled.
    fn compile_all(&self, candidates: &[Candidate], previous: &[Route<LoadedRoute>]) -> Compiled {
        let mut compiled = Compiled::new();
        for route in previous.iter().filter(|r| !r.value.hash.is_empty()) {
            let reused = match &route.value.state {
                Ok(ready) => Ok((ready.pre.clone(), Origin::Reused)),
                // A bad sidecar says nothing about the component.
                Err(error) if matches!(**error, LoadError::Settings(_)) => continue,
                Err(error) => Err(error.clone()),
            };
            // A working version wins over a failure of the same content.
            let entry = compiled
                .entry(route.value.hash.clone())
                .or_insert(reused.clone());
            if entry.is_err() && reused.is_ok() {
                *entry = reused;
            }
        }
        let mut jobs: Vec<&Candidate> = Vec::new();
        for candidate in candidates {
            if let Ok((_, hash)) = &candidate.content
                && !compiled.contains_key(hash)
                && !jobs
                    .iter()
                    .any(|job| job.content.as_ref().is_ok_and(|(_, h)| h == hash))
            {
                jobs.push(candidate);
            }
        }
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(jobs.len());
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::with_capacity(jobs.len()));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let Ok((bytes, hash)) = &job.content else {
                            continue;
                        };
                        let result = self
                            .load_component(&job.file, bytes, hash)
                            .map_err(Arc::new);
                        results
                            .lock()
                            .expect("no worker panics holding the lock")
                            .push((hash.clone(), result));
                    }
                });
            }
        });
        compiled.extend(
            results
                .into_inner()
                .expect("no worker panicked holding the lock"),
        );
        compiled
    }

    /// Deserializes the component from the cache, or compiles (and caches)
    /// it; then links it. The work done once per version, so that a request
    /// only instantiates.
    pub fn load_component(
        &self,
        file: &Path,
        bytes: &[u8],
        hash: &str,
    ) -> Result<(ProxyPre<GuestState>, Origin), LoadError> {
        let started = Instant::now();
        tracing::debug!(file = %file.display(), "loading component");
        check_is_component(file, bytes)?;
        let key = format!("{hash}-{}", self.engine_hash);
        let cached = self.cache.as_ref().and_then(|cache| cache.get(&key));
        let (component, cached) = match cached.map(|payload| self.deserialize(&payload)) {
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
                let component = Component::from_binary(&self.engine, bytes).map_err(|e| {
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
        let pre = self.link(file, &component)?;
        let ms = started.elapsed().as_millis() as u64;
        let origin = if cached {
            Origin::Cached { ms }
        } else {
            Origin::Compiled { ms }
        };
        Ok((pre, origin))
    }

    #[expect(
        unsafe_code,
        reason = "deserializing runs code the cache holds; the cache folder is private and every entry is checksummed before it gets here"
    )]
    fn deserialize(&self, payload: &[u8]) -> wasmtime::Result<Component> {
        // SAFETY: `payload` is a verified entry written by `Component::serialize`
        // with this engine's compatibility hash in its key; wasmtime checks
        // the header (version, target, settings) again before loading.
        unsafe { Component::deserialize(&self.engine, payload) }
    }

    fn link(&self, file: &Path, component: &Component) -> Result<ProxyPre<GuestState>, LoadError> {
        let instance = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Link {
                file: file.to_owned(),
                reason: format!(
                    "{e:#}; Wedge provides WASI 0.2 and wasi:http (the wasi:http/proxy world)"
                ),
            })?;
        ProxyPre::new(instance).map_err(|e| LoadError::Link {
            file: file.to_owned(),
            reason: format!(
                "does not export wasi:http/incoming-handler ({e:#}); build it for the \
                 wasi:http/proxy world"
            ),
        })
    }
}

/// A working version; the old one itself where nothing changed, so its
/// concurrency slots carry over.
fn ready(
    name: Arc<str>,
    hash: String,
    pre: ProxyPre<GuestState>,
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
    LoadedRoute {
        name,
        hash,
        state: Ok(Ready {
            pre,
            settings: Arc::new(settings),
            slots,
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

/// Compiled or reused versions by content hash.
type Compiled = HashMap<String, Result<(ProxyPre<GuestState>, Origin), Arc<LoadError>>>;

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
fn read_sidecar(file: &Path) -> Result<Option<String>, SettingsError> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(SettingsError {
            file: file.to_owned(),
            key: None,
            message: format!("cannot read: {error}"),
        }),
    }
}

fn read_and_hash(file: &Path) -> Result<(Vec<u8>, String), LoadError> {
    let bytes = std::fs::read(file).map_err(|source| LoadError::Io {
        path: file.to_owned(),
        source,
    })?;
    let hash = format!("{:x}", Sha256::digest(&bytes));
    Ok((bytes, hash))
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

/// Every file under `dir`, following symlinks (Kubernetes mounts files as
/// symlinks through `..data`), skipping private folders, sorted by path; and
/// every entry that could not be read (a dangling symlink, a loop), which
/// costs that entry only.
pub(crate) fn route_files(dir: &Path) -> (Vec<PathBuf>, Vec<LoadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with(['_', '.'])
        });
    for entry in walk {
        match entry {
            Ok(entry) if entry.file_type().is_file() => files.push(entry.into_path()),
            Ok(_) => {}
            Err(error) => errors.push(LoadError::Io {
                path: error.path().unwrap_or(dir).to_owned(),
                source: error.into(),
            }),
        }
    }
    // Byte order of the whole path, so `a.wasm` sorts before `a/index.wasm`.
    files.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    (files, errors)
}
