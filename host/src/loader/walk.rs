//! Finding the route files under the routes folder.

use std::path::{Path, PathBuf};

use super::LoadError;

/// Every file under `dir`, following symlinks (Kubernetes mounts files as
/// symlinks through `..data`), skipping private folders, sorted by path; and
/// every entry that could not be read (a dangling symlink, a loop), which
/// costs that entry only.
///
/// A symlinked folder is followed only where it resolves inside `dir`
/// (`..data` does): one leading elsewhere is an error naming it, and the
/// rest of the folder still loads. A symlinked file may point anywhere; it
/// is read like any file, so only if it is a regular file under its cap.
/// Besides regular files, a `.wasm` entry of another type (a FIFO, a
/// device) is listed, so that reading it reports what it is.
pub(crate) fn route_files(dir: &Path) -> (Vec<PathBuf>, Vec<LoadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mut walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with(['_', '.'])
        });
    while let Some(entry) = walk.next() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                errors.push(LoadError::Io {
                    path: error.path().unwrap_or(dir).to_owned(),
                    source: error.into(),
                });
                continue;
            }
        };
        let file_type = entry.file_type();
        if file_type.is_dir() {
            if entry.depth() > 0 && entry.path_is_symlink() {
                match std::fs::canonicalize(entry.path()) {
                    Ok(target) if target.starts_with(&root) => {}
                    Ok(target) => {
                        walk.skip_current_dir();
                        errors.push(LoadError::OutsideLink {
                            link: entry.into_path(),
                            target,
                        });
                    }
                    Err(source) => {
                        walk.skip_current_dir();
                        errors.push(LoadError::Io {
                            path: entry.into_path(),
                            source,
                        });
                    }
                }
            }
            continue;
        }
        if file_type.is_file() || entry.path().extension().is_some_and(|ext| ext == "wasm") {
            files.push(entry.into_path());
        }
    }
    // Byte order of the whole path, so `a.wasm` sorts before `a/index.wasm`.
    files.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    (files, errors)
}
