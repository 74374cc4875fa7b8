//! The on-disk cache of compiled components, so that a restart deserializes
//! instead of compiling.
//!
//! Loading compiled code is `unsafe`: whatever the cache holds runs as this
//! process. So the cache is treated as code. Its folder is created private
//! (0700) and refused if another user could write to it or replace it (it,
//! or a folder above it up to the user's home, is owned by another non-root
//! user or writable by group or others); every entry carries the
//! SHA-256 of its payload, checked before use (a torn write or a stray file
//! is detected and recompiled, never loaded); entries are keyed by the
//! component's content hash and its engine's compatibility hash, so another
//! Wedge or wasmtime version never finds them; and the folder is bounded in
//! size, least recently used entries evicted first.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Largest total size of cached entries: room for a few hundred typical
/// compiled routes (0.5–5 MiB each) or a dozen large JS/Python ones
/// (50–100 MiB each), small next to a machine's disk.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

/// Starts every entry file, so a foreign file is never taken for one.
const MAGIC: &[u8; 8] = b"WEDGEC1\n";
const ENTRY_EXTENSION: &str = "cwasm";

/// Why the cache folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Creating or inspecting the folder failed.
    #[error("cache folder {}: {source}; pass --cache-dir with a folder you own", dir.display())]
    Io {
        /// The folder.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The path exists and is not a folder.
    #[error("cache folder {} is not a folder; pass another --cache-dir", dir.display())]
    NotAFolder {
        /// The path.
        dir: PathBuf,
    },
    /// Group or others may write the folder, so they could plant code.
    #[error(
        "cache folder {} is writable by other users (mode {mode:o}); compiled code from it runs \
         inside Wedge, so it must be private: run `chmod 700 {}` or pass another --cache-dir",
        dir.display(), dir.display()
    )]
    Insecure {
        /// The folder.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A folder above the cache folder that group or others may write, so
    /// they could replace the cache folder with their own.
    #[error(
        "cache folder {}: the folder {} above it is writable by other users (mode {mode:o}), \
         who could replace the cache with compiled code that runs inside Wedge: run \
         `chmod go-w {}` or pass another --cache-dir",
        dir.display(), folder.display(), folder.display()
    )]
    InsecureParent {
        /// The cache folder.
        dir: PathBuf,
        /// The folder above it that others may write.
        folder: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The folder, or one above it, belongs to another user, who could
    /// plant code in it.
    #[error(
        "cache folder {}: {} is owned by another user (uid {owner}), who could plant compiled \
         code that runs inside Wedge; pass --cache-dir with a folder that you own",
        dir.display(), folder.display()
    )]
    ForeignOwner {
        /// The cache folder.
        dir: PathBuf,
        /// The folder owned by another user: the cache folder or one above it.
        folder: PathBuf,
        /// Its owner.
        owner: u32,
    },
}

/// Compile-cache lookups, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    /// Components deserialized from the cache.
    pub hits: prometheus_client::metrics::counter::Counter,
    /// Components compiled because the cache did not hold them (or held
    /// an unusable entry).
    pub misses: prometheus_client::metrics::counter::Counter,
}

/// A folder of compiled components.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl CompileCache {
    /// The default folder: `wedge/` in the user's cache folder
    /// (`$XDG_CACHE_HOME` or `~/.cache` on Linux).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::cache_dir().map(|dir| dir.join("wedge"))
    }

    /// Opens `dir`, creating it private if missing; refuses it if another
    /// user could write to it or replace it (see [`check_private`]).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<CompileCache, CacheError> {
        let io_error = |source| CacheError::Io {
            dir: dir.to_owned(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error)?;
        let metadata = fs::metadata(dir).map_err(io_error)?;
        if !metadata.is_dir() {
            return Err(CacheError::NotAFolder {
                dir: dir.to_owned(),
            });
        }
        check_private(dir)?;
        Ok(CompileCache {
            dir: dir.to_owned(),
            max_bytes,
        })
    }

    /// The folder.
    #[cfg(test)]
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ENTRY_EXTENSION}"))
    }

    /// The verified payload stored under `key`, if any. A corrupt entry is
    /// removed, logged and reported as missing.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.path(key);
        let entry = match fs::read(&path) {
            Ok(entry) => entry,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!("compile cache: cannot read {}: {error}", path.display());
                return None;
            }
        };
        let Some(payload) = verified_payload(&entry) else {
            tracing::warn!(
                "compile cache: {} is corrupt (checksum mismatch); removing it and recompiling",
                path.display()
            );
            let _ = fs::remove_file(&path);
            return None;
        };
        // Mark it recently used, for eviction.
        if let Err(error) = File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(SystemTime::now()))
        {
            tracing::debug!("compile cache: cannot touch {}: {error}", path.display());
        }
        Some(payload.to_vec())
    }

    /// Stores `payload` under `key` (through a temporary file and a rename,
    /// so a reader never sees half an entry), then evicts down to the bound.
    pub fn put(&self, key: &str, payload: &[u8]) {
        let path = self.path(key);
        let temporary = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let mut entry = Vec::with_capacity(MAGIC.len() + 32 + payload.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&Sha256::digest(payload));
        entry.extend_from_slice(payload);
        let written = fs::write(&temporary, &entry).and_then(|()| fs::rename(&temporary, &path));
        if let Err(error) = written {
            tracing::warn!("compile cache: cannot write {}: {error}", path.display());
            let _ = fs::remove_file(&temporary);
            return;
        }
        self.evict();
    }

    /// Removes least recently used entries until the total fits the bound.
    fn evict(&self) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = listing
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == ENTRY_EXTENSION))
            .filter_map(|e| {
                let metadata = e.metadata().ok()?;
                Some((metadata.modified().ok()?, metadata.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, size, _)| size).sum();
        entries.sort();
        for (_, size, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    total -= size;
                    tracing::debug!("compile cache: evicted {}", path.display());
                }
                Err(error) => {
                    tracing::warn!("compile cache: cannot evict {}: {error}", path.display())
                }
            }
        }
    }
}

/// Refuses `dir` if anyone but this user (and root) could plant code in
/// it: if it, or a folder above it up to the user's home or `/`, is owned
/// by another non-root user or writable by group or others. A root-owned
/// folder with the sticky bit above it (`/tmp`) is fine: others can create
/// entries there but not rename or remove this user's, as OpenSSH's
/// `StrictModes` reasons. Both the path as given and the one its symlinks
/// resolve to are checked: either could be swapped.
fn check_private(dir: &Path) -> Result<(), CacheError> {
    let io_error = |source| CacheError::Io {
        dir: dir.to_owned(),
        source,
    };
    let me = effective_uid();
    let home = dirs::home_dir().and_then(|home| fs::canonicalize(home).ok());
    let given = std::path::absolute(dir).map_err(io_error)?;
    let resolved = fs::canonicalize(dir).map_err(io_error)?;
    for path in [&given, &resolved] {
        for (i, folder) in path.ancestors().enumerate() {
            let metadata = fs::metadata(folder).map_err(io_error)?;
            let owner = metadata.uid();
            if owner != me && owner != 0 {
                return Err(CacheError::ForeignOwner {
                    dir: dir.to_owned(),
                    folder: folder.to_owned(),
                    owner,
                });
            }
            let mode = metadata.mode() & 0o7777;
            let sticky_root = mode & 0o1000 != 0 && owner == 0;
            if mode & 0o022 != 0 && i == 0 {
                return Err(CacheError::Insecure {
                    dir: dir.to_owned(),
                    mode: mode & 0o777,
                });
            }
            if mode & 0o022 != 0 && !sticky_root {
                return Err(CacheError::InsecureParent {
                    dir: dir.to_owned(),
                    folder: folder.to_owned(),
                    mode,
                });
            }
            if home.as_deref() == Some(folder) {
                break;
            }
        }
    }
    Ok(())
}

/// The user this process acts as.
#[expect(
    unsafe_code,
    reason = "geteuid has no preconditions and cannot fail; std has no safe wrapper"
)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing, touches no memory and always succeeds.
    unsafe { libc::geteuid() }
}

/// The payload of `entry` if its magic and checksum hold.
fn verified_payload(entry: &[u8]) -> Option<&[u8]> {
    let rest = entry.strip_prefix(MAGIC)?;
    let (checksum, payload) = rest.split_at_checked(32)?;
    (Sha256::digest(payload).as_slice() == checksum).then_some(payload)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn cache(max_bytes: u64) -> (tempfile::TempDir, CompileCache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(&dir.path().join("cache"), max_bytes).unwrap();
        (dir, cache)
    }

    #[test]
    fn a_stored_entry_comes_back_verified() {
        let (_dir, cache) = cache(1 << 20);
        assert_eq!(cache.get("k"), None);
        cache.put("k", b"compiled code");
        assert_eq!(cache.get("k").as_deref(), Some(&b"compiled code"[..]));
    }

    #[test]
    fn the_folder_is_created_private() {
        let (_dir, cache) = cache(1 << 20);
        let mode = fs::metadata(cache.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_folder_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o777, 0o720, 0o702] {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
            let error = CompileCache::open(dir.path(), 1).unwrap_err();
            assert!(
                matches!(error, CacheError::Insecure { .. }),
                "{mode:o}: {error}"
            );
            assert!(error.to_string().contains("chmod 700"), "{error}");
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(CompileCache::open(dir.path(), 1).is_ok());
    }

    #[test]
    fn a_folder_above_that_others_can_write_is_refused_unless_sticky_and_root_owned() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("cache");
        fs::set_permissions(parent.path(), fs::Permissions::from_mode(0o775)).unwrap();
        let error = CompileCache::open(&dir, 1).unwrap_err();
        assert!(
            matches!(&error, CacheError::InsecureParent { folder, .. } if folder == parent.path()),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains("chmod go-w"), "{message}");
        assert!(message.contains("--cache-dir"), "{message}");
        // As /tmp is: others may create entries, not replace this one.
        fs::set_permissions(parent.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        let sticky = CompileCache::open(&dir, 1);
        if effective_uid() == 0 {
            assert!(sticky.is_ok(), "{:?}", sticky.err());
        } else {
            // Sticky, but owned by this user rather than root: refused.
            assert!(sticky.is_err());
        }
    }

    #[test]
    fn a_folder_another_user_owns_is_refused() {
        if effective_uid() != 0 {
            eprintln!("skipped: only root can give a folder to another user");
            return;
        }
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("cache");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let error = CompileCache::open(&dir, 1).unwrap_err();
        assert!(
            matches!(&error, CacheError::ForeignOwner { owner: 65534, .. }),
            "{error}"
        );
        // So is a folder above it.
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
        std::os::unix::fs::chown(parent.path(), Some(65534), None).unwrap();
        let error = CompileCache::open(&dir, 1).unwrap_err();
        assert!(
            matches!(&error, CacheError::ForeignOwner { folder, .. } if folder == parent.path()),
            "{error}"
        );
    }

    #[test]
    fn a_corrupt_or_foreign_entry_is_removed_not_returned() {
        let (_dir, cache) = cache(1 << 20);
        cache.put("flipped", b"compiled code");
        let path = cache.path("flipped");
        let mut entry = fs::read(&path).unwrap();
        *entry.last_mut().unwrap() ^= 1;
        fs::write(&path, entry).unwrap();
        assert_eq!(cache.get("flipped"), None);
        assert!(!path.exists());

        for foreign in [&b""[..], b"WEDGEC1\n", b"\0asm\x0d\0\x01\0 raw component"] {
            fs::write(cache.path("foreign"), foreign).unwrap();
            assert_eq!(cache.get("foreign"), None);
        }
    }

    #[test]
    fn least_recently_used_entries_are_evicted_over_the_bound() {
        let payload = vec![7u8; 1000];
        let entry_size = (MAGIC.len() + 32 + payload.len()) as u64;
        let (_dir, cache) = cache(3 * entry_size);
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            cache.put(key, &payload);
            let file = File::options().write(true).open(cache.path(key)).unwrap();
            file.set_modified(old + std::time::Duration::from_secs(i as u64))
                .unwrap();
        }
        // Using `a` makes `b` the least recently used.
        assert!(cache.get("a").is_some());
        cache.put("d", &payload);
        assert!(cache.get("b").is_none(), "b should have been evicted");
        for key in ["a", "c", "d"] {
            assert!(cache.get(key).is_some(), "{key} evicted");
        }
    }
}
