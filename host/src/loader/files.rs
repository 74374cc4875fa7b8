//! Reading files that a less-trusted deployer may have placed: the routes
//! folder's `.wasm` files and sidecars, the env file and the config file.
//!
//! Only regular files are read: a FIFO would block the read (and the load
//! or reload waiting for it) forever, and a device such as `/dev/zero`
//! never ends. Every read is bounded by a size cap, and a file over it is an
//! error that names the flag which raises it.

use std::fs::{File, FileType};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Largest `.wasm` route file (`--max-wasm-size`): far above real
/// components (a Rust handler is 0.1–5 MiB, a JS or Python runtime
/// component 20–100 MiB), yet a bound on what one file can make the server
/// read and compile.
pub const DEFAULT_MAX_WASM_SIZE: u64 = 256 << 20;

/// Largest sidecar (`--max-sidecar-size`), and the bound on `--config` and
/// `--env-file`: a settings file is a few hundred bytes; 1 MiB leaves room
/// for long `[env]` tables and stops a runaway file from filling memory.
pub const DEFAULT_MAX_SIDECAR_SIZE: u64 = 1 << 20;

/// Bytes read at a time while hashing a route file.
const HASH_BUFFER: usize = 64 << 10;

/// How large the files the loader reads may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeCaps {
    /// Largest `.wasm` route file.
    pub wasm: u64,
    /// Largest sidecar.
    pub sidecar: u64,
}

impl Default for SizeCaps {
    fn default() -> SizeCaps {
        SizeCaps {
            wasm: DEFAULT_MAX_WASM_SIZE,
            sidecar: DEFAULT_MAX_SIDECAR_SIZE,
        }
    }
}

/// A size cap and the flag that sets it, for the error that names it.
#[derive(Debug, Clone, Copy)]
pub struct Cap {
    /// Most bytes read.
    pub bytes: u64,
    /// The flag that raises it, e.g. `--max-wasm-size`.
    pub flag: &'static str,
}

/// Why a file cannot be read.
#[derive(Debug)]
pub enum FileError {
    /// Opening or reading it failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A FIFO, device, socket or folder where a file was expected.
    NotRegular {
        /// The path (a symlink's target is what was checked).
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// Larger than its cap.
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least the bytes read).
        size: u64,
        /// The cap.
        cap: u64,
        /// The flag that sets the cap.
        flag: &'static str,
    },
}

impl FileError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. }
            | FileError::NotRegular { path, .. }
            | FileError::TooLarge { path, .. } => path,
        }
    }

    /// What is wrong and what to do, without the file's path: for errors
    /// that name the file themselves.
    pub fn reason(&self) -> String {
        match self {
            FileError::Io { source, .. } => format!("cannot read: {source}"),
            FileError::NotRegular { kind, .. } => format!(
                "is {kind}, not a regular file; Wedge reads only regular files there: \
                 replace it with a file or remove it"
            ),
            FileError::TooLarge {
                size, cap, flag, ..
            } => format!(
                "is {size} bytes, over the {} cap of {flag}; raise {flag} or make the file \
                 smaller",
                bytesize::ByteSize(*cap)
            ),
        }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path().display(), self.reason())
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io { source, .. } => Some(source),
            FileError::NotRegular { .. } | FileError::TooLarge { .. } => None,
        }
    }
}

/// What a file type is, in words, for an error.
fn kind(file_type: FileType) -> &'static str {
    if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Opens `path` (following symlinks) for reading if it is a regular file
/// of at most `cap` bytes; its size.
///
/// The type is checked before opening, so that a device is never opened,
/// and again on the open handle: the path may have been swapped for a FIFO
/// in between, and `O_NONBLOCK` makes opening one return at once instead of
/// waiting for a writer.
fn open_regular(path: &Path, cap: Cap) -> Result<(File, u64), FileError> {
    let io_error = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let not_regular = |file_type| FileError::NotRegular {
        path: path.to_owned(),
        kind: kind(file_type),
    };
    let metadata = std::fs::metadata(path).map_err(io_error)?;
    if !metadata.is_file() {
        return Err(not_regular(metadata.file_type()));
    }
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(not_regular(metadata.file_type()));
    }
    check_size(path, metadata.len(), cap)?;
    Ok((file, metadata.len()))
}

fn check_size(path: &Path, size: u64, cap: Cap) -> Result<(), FileError> {
    if size <= cap.bytes {
        return Ok(());
    }
    Err(FileError::TooLarge {
        path: path.to_owned(),
        size,
        cap: cap.bytes,
        flag: cap.flag,
    })
}

/// The whole of `path`, a regular file of at most `cap` bytes (checked
/// while reading too: it may grow after it was checked).
pub fn read_capped(path: &Path, cap: Cap) -> Result<Vec<u8>, FileError> {
    let (file, size) = open_regular(path, cap)?;
    // `size` is at most the cap: the file was checked.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(cap.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Io {
            path: path.to_owned(),
            source,
        })?;
    check_size(path, size.max(bytes.len() as u64), cap)?;
    Ok(bytes)
}

/// Like [`read_capped`], as UTF-8 text.
pub fn read_text_capped(path: &Path, cap: Cap) -> Result<String, FileError> {
    String::from_utf8(read_capped(path, cap)?).map_err(|_| FileError::Io {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

/// The SHA-256 (hex) and size of `path`, a regular file of at most `cap`
/// bytes, read a buffer at a time: a rescan never holds a whole file.
pub fn hash_capped(path: &Path, cap: Cap) -> Result<(String, u64), FileError> {
    let (file, size) = open_regular(path, cap)?;
    let mut reader = BufReader::with_capacity(HASH_BUFFER, file.take(cap.bytes.saturating_add(1)));
    let mut hasher = Sha256::new();
    let read = io::copy(&mut reader, &mut hasher).map_err(|source| FileError::Io {
        path: path.to_owned(),
        source,
    })?;
    check_size(path, size.max(read), cap)?;
    Ok((hex(&hasher.finalize()), read))
}

/// The SHA-256 of `bytes`, hex, as [`hash_capped`] computes it.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Cap = Cap {
        bytes: 16,
        flag: "--max-test-size",
    };

    #[test]
    fn a_regular_file_under_the_cap_is_read_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        std::fs::write(&file, b"sixteen bytes!!!").unwrap();
        assert_eq!(read_capped(&file, CAP).unwrap(), b"sixteen bytes!!!");
        let (hash, size) = hash_capped(&file, CAP).unwrap();
        assert_eq!((hash, size), (hash_bytes(b"sixteen bytes!!!"), 16));
        assert_eq!(
            hash_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_file_over_the_cap_names_its_size_the_cap_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big");
        std::fs::write(&file, [0u8; 17]).unwrap();
        for error in [
            read_capped(&file, CAP).unwrap_err(),
            hash_capped(&file, CAP).unwrap_err(),
        ] {
            let message = error.to_string();
            assert!(
                matches!(error, FileError::TooLarge { size: 17, .. }),
                "{message}"
            );
            assert!(message.contains("big: is 17 bytes"), "{message}");
            assert!(message.contains("16 B"), "{message}");
            assert!(message.contains("raise --max-test-size"), "{message}");
        }
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for (path, kind) in [(&fifo, "a FIFO"), (&zero, "a character device")] {
            let error = read_capped(path, CAP).unwrap_err();
            assert!(matches!(error, FileError::NotRegular { .. }), "{error}");
            assert!(error.to_string().contains(kind), "{error}");
            assert!(hash_capped(path, CAP).is_err());
        }
        let missing = read_capped(&dir.path().join("missing"), CAP).unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
    }
}
