//! File-system routing: a `.wasm` file's path under the routes folder is its URL.
//!
//! | file | serves |
//! |---|---|
//! | `index.wasm` | `/` |
//! | `hello.wasm` or `hello/index.wasm` | `/hello` |
//! | `api/users/[id].wasm` | `/api/users/42` (`id=42`) |
//! | `blog/[...slug].wasm` | `/blog/a`, `/blog/a/b` |
//! | `docs/[[...slug]].wasm` | `/docs`, `/docs/a/b` |

mod pattern;
mod table;

use std::path::PathBuf;

pub use pattern::{RoutePattern, Segment};
pub use table::{Route, RouteTable};

/// Why a file's path is not a valid route pattern.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    /// A segment with unbalanced or misplaced brackets.
    #[error(
        "`{}` is not a valid segment: use `name`, `[param]`, `[...catchall]` or `[[...optional]]`",
        Escaped(segment)
    )]
    Malformed {
        /// The segment as written.
        segment: String,
    },
    /// A param name that is empty or has characters other than letters, digits, `_`, `-`.
    #[error(
        "`{}` has an invalid param name: use letters, digits, `_` or `-`",
        Escaped(segment)
    )]
    BadParamName {
        /// The segment as written.
        segment: String,
    },
    /// `[...x]` or `[[...x]]` followed by more segments.
    #[error("catch-all `{segment}` must be the last segment of a route")]
    CatchAllNotLast {
        /// The catch-all segment.
        segment: String,
    },
    /// The same param name twice in one route.
    #[error("param `{name}` appears twice in one route; give each param its own name")]
    RepeatedParam {
        /// The repeated name.
        name: String,
    },
    /// A path with `..` or a root: the loader only passes paths relative to the routes folder.
    #[error("route paths must be relative to the routes folder")]
    NotRelative,
    /// A file name that is not UTF-8 cannot be a URL segment.
    #[error("file name is not UTF-8")]
    NotUtf8,
}

/// Text from a file name, for a log line or an error: control characters
/// escaped (`\n`, `\u{1b}`), so that a file name cannot forge log lines or
/// drive the terminal that shows them.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// A path as [`Escaped`] shows it.
pub struct EscapedPath<'a>(pub &'a std::path::Path);

impl std::fmt::Display for EscapedPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Escaped(&self.0.to_string_lossy()).fmt(f)
    }
}

/// Two route files that cannot both be served; `file` was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{} conflicts with {} ({pattern}): {reason}", file.display(), existing.display())]
pub struct RouteConflict {
    /// The refused file.
    pub file: PathBuf,
    /// The file already in the table, which keeps serving.
    pub existing: PathBuf,
    /// The refused file's pattern.
    pub pattern: String,
    /// What the rule is and what to do.
    pub reason: String,
}

#[cfg(test)]
mod tests;
