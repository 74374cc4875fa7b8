//! Finds route files under the routes folder and compiles each into a
//! pre-instantiated component, ready for a fresh instance per request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::routing::{PatternError, Route, RouteConflict, RoutePattern, RouteTable};
use crate::sandbox::GuestState;

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
    /// SHA-256 of the file's content, hex.
    pub hash: String,
    /// Ready to instantiate, or why not.
    pub state: Result<ProxyPre<GuestState>, Arc<LoadError>>,
}

/// The routes found under a folder, and every file that could not be served.
pub struct LoadedRoutes {
    /// Every valid route pattern; failed compiles answer 500.
    pub table: RouteTable<LoadedRoute>,
    /// Bad patterns, conflicts and compile or link failures, each naming its file.
    pub errors: Vec<Arc<LoadError>>,
}

/// Compiles route files against one engine and linker.
pub struct Loader {
    engine: Engine,
    linker: Linker<GuestState>,
}

impl Loader {
    /// A loader whose components link against `linker`.
    pub fn new(engine: Engine, linker: Linker<GuestState>) -> Loader {
        Loader { engine, linker }
    }

    /// Loads every route under `dir`. Files are taken in path order, so where
    /// two conflict the lexicographically first one serves.
    pub fn load_dir(&self, dir: &Path) -> LoadedRoutes {
        let (files, errors) = route_files(dir);
        let mut errors: Vec<_> = errors.into_iter().map(Arc::new).collect();
        let mut candidates = Vec::new();
        for file in files {
            let relative = file.strip_prefix(dir).unwrap_or(&file);
            match RoutePattern::from_file_path(relative) {
                Ok(Some(pattern)) => candidates.push((pattern, file)),
                Ok(None) => {}
                Err(source) => errors.push(Arc::new(LoadError::Pattern { file, source })),
            }
        }
        let routes = candidates.into_iter().map(|(pattern, file)| {
            let value = self.load_file(&pattern, &file);
            if let Err(error) = &value.state {
                errors.push(error.clone());
            }
            Route {
                pattern,
                file,
                value,
            }
        });
        let (table, conflicts) = RouteTable::new(routes.collect::<Vec<_>>());
        errors.extend(conflicts.into_iter().map(|c| Arc::new(LoadError::from(c))));
        LoadedRoutes { table, errors }
    }

    fn load_file(&self, pattern: &RoutePattern, file: &Path) -> LoadedRoute {
        let name: Arc<str> = pattern.to_string().into();
        let bytes = std::fs::read(file).map_err(|source| LoadError::Io {
            path: file.to_owned(),
            source,
        });
        let hash = bytes
            .as_ref()
            .map(|b| format!("{:x}", Sha256::digest(b)))
            .unwrap_or_default();
        let started = Instant::now();
        let state = bytes.and_then(|b| self.compile(file, &b)).map_err(Arc::new);
        if state.is_ok() {
            tracing::info!(
                route = %name,
                file = %file.display(),
                hash = &hash[..12],
                ms = started.elapsed().as_millis() as u64,
                "route loaded"
            );
        }
        LoadedRoute { name, hash, state }
    }

    /// Compiles and links one component; the work done once per version,
    /// so that a request only instantiates.
    pub fn compile(&self, file: &Path, bytes: &[u8]) -> Result<ProxyPre<GuestState>, LoadError> {
        check_is_component(file, bytes)?;
        let component =
            Component::from_binary(&self.engine, bytes).map_err(|e| LoadError::Compile {
                file: file.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let instance = self
            .linker
            .instantiate_pre(&component)
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
fn route_files(dir: &Path) -> (Vec<PathBuf>, Vec<LoadError>) {
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
