//! A route's pattern, derived from its file's path under the routes folder.

use std::fmt;
use std::path::{Component, Path};

use super::PatternError;

/// One `/`-separated piece of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A literal folder or file name: `users`.
    Static(String),
    /// `[id]`: exactly one non-empty segment.
    Param(String),
    /// `[...slug]`: one or more segments; always last.
    CatchAll(String),
    /// `[[...slug]]`: zero or more segments; always last.
    OptionalCatchAll(String),
}

impl Segment {
    /// The param name, if this segment binds one.
    pub fn param_name(&self) -> Option<&str> {
        match self {
            Segment::Static(_) => None,
            Segment::Param(name) | Segment::CatchAll(name) | Segment::OptionalCatchAll(name) => {
                Some(name)
            }
        }
    }

    fn parse(text: &str) -> Result<Segment, PatternError> {
        let dynamic = if let Some(inner) = text.strip_prefix("[[...") {
            inner
                .strip_suffix("]]")
                .map(|name| (name, Segment::OptionalCatchAll as fn(_) -> _))
        } else if let Some(inner) = text.strip_prefix("[...") {
            inner
                .strip_suffix(']')
                .map(|name| (name, Segment::CatchAll as fn(_) -> _))
        } else if let Some(inner) = text.strip_prefix('[') {
            inner
                .strip_suffix(']')
                .map(|name| (name, Segment::Param as fn(_) -> _))
        } else if text.contains(['[', ']']) || text.chars().any(char::is_control) {
            None
        } else {
            return Ok(Segment::Static(text.to_owned()));
        };
        let Some((name, make)) = dynamic else {
            return Err(PatternError::Malformed {
                segment: text.to_owned(),
            });
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(PatternError::BadParamName {
                segment: text.to_owned(),
            });
        }
        Ok(make(name.to_owned()))
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Static(s) => f.write_str(s),
            Segment::Param(name) => write!(f, "[{name}]"),
            Segment::CatchAll(name) => write!(f, "[...{name}]"),
            Segment::OptionalCatchAll(name) => write!(f, "[[...{name}]]"),
        }
    }
}

/// The URL pattern a route file serves, e.g. `/api/users/[id]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutePattern {
    segments: Vec<Segment>,
}

impl RoutePattern {
    /// The pattern for `relative`, a file's path under the routes folder.
    ///
    /// Returns `Ok(None)` for files that are not routes: anything not ending
    /// in `.wasm`, and anything with a path component starting with `_` or `.`
    /// (private files, editors' temp files, Kubernetes' `..data`).
    pub fn from_file_path(relative: &Path) -> Result<Option<RoutePattern>, PatternError> {
        let mut names = Vec::new();
        for component in relative.components() {
            let Component::Normal(name) = component else {
                return Err(PatternError::NotRelative);
            };
            let Some(name) = name.to_str() else {
                return Err(PatternError::NotUtf8);
            };
            if name.starts_with(['_', '.']) {
                return Ok(None);
            }
            names.push(name);
        }
        let Some(file) = names.pop() else {
            return Ok(None);
        };
        let Some(stem) = file.strip_suffix(".wasm") else {
            return Ok(None);
        };
        if stem != "index" {
            names.push(stem);
        }
        let segments = names
            .into_iter()
            .map(Segment::parse)
            .collect::<Result<Vec<_>, _>>()?;
        RoutePattern::new(segments).map(Some)
    }

    /// A pattern from its segments, checking that catch-alls come last and
    /// that no param name repeats (as Next.js requires).
    pub fn new(segments: Vec<Segment>) -> Result<RoutePattern, PatternError> {
        let last = segments.len().saturating_sub(1);
        for (i, segment) in segments.iter().enumerate() {
            if i != last && matches!(segment, Segment::CatchAll(_) | Segment::OptionalCatchAll(_)) {
                return Err(PatternError::CatchAllNotLast {
                    segment: segment.to_string(),
                });
            }
            if let Some(name) = segment.param_name()
                && segments[..i]
                    .iter()
                    .any(|earlier| earlier.param_name() == Some(name))
            {
                return Err(PatternError::RepeatedParam {
                    name: name.to_owned(),
                });
            }
        }
        Ok(RoutePattern { segments })
    }

    /// The pattern's segments, root first; empty for `/`.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            write!(f, "/{segment}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(path: &str) -> Result<Option<String>, PatternError> {
        RoutePattern::from_file_path(Path::new(path)).map(|p| p.map(|p| p.to_string()))
    }

    #[test]
    fn file_paths_map_to_patterns() {
        let cases = [
            ("index.wasm", Some("/")),
            ("hello.wasm", Some("/hello")),
            ("hello/index.wasm", Some("/hello")),
            ("api/users/[id].wasm", Some("/api/users/[id]")),
            ("api/users/[id]/index.wasm", Some("/api/users/[id]")),
            ("blog/[...slug].wasm", Some("/blog/[...slug]")),
            ("docs/[[...slug]].wasm", Some("/docs/[[...slug]]")),
            ("shop/[cat]/[item].wasm", Some("/shop/[cat]/[item]")),
            ("Mixed/Case.wasm", Some("/Mixed/Case")),
            ("index/page.wasm", Some("/index/page")),
        ];
        for (path, expected) in cases {
            assert_eq!(pattern(path).unwrap().as_deref(), expected, "file {path}");
        }
    }

    #[test]
    fn private_and_non_wasm_files_are_not_routes() {
        for path in [
            "_lib.wasm",
            ".hidden.wasm",
            "_private/page.wasm",
            "api/.cache/x.wasm",
            "..data/hello.wasm",
            "hello.toml",
            "hello.wasm.tmp",
            "hello.wasm~",
            ".hello.wasm.swp",
            "README",
        ] {
            assert_eq!(pattern(path).unwrap(), None, "file {path}");
        }
    }

    #[test]
    fn malformed_segments_are_errors() {
        type Expect = fn(&PatternError) -> bool;
        let cases: [(&str, Expect); 7] = [
            ("[id.wasm", |e| matches!(e, PatternError::Malformed { .. })),
            ("a]b.wasm", |e| matches!(e, PatternError::Malformed { .. })),
            ("[].wasm", |e| {
                matches!(e, PatternError::BadParamName { .. })
            }),
            ("[...].wasm", |e| {
                matches!(e, PatternError::BadParamName { .. })
            }),
            ("[a b].wasm", |e| {
                matches!(e, PatternError::BadParamName { .. })
            }),
            ("[...slug]/edit.wasm", |e| {
                matches!(e, PatternError::CatchAllNotLast { .. })
            }),
            ("[id]/x/[id].wasm", |e| {
                matches!(e, PatternError::RepeatedParam { .. })
            }),
        ];
        for (path, expected) in cases {
            let err = pattern(path).expect_err(path);
            assert!(expected(&err), "file {path}: got {err:?}");
        }
    }

    #[test]
    fn control_characters_in_a_file_name_are_errors_shown_escaped() {
        let error = pattern("evil\n2026-01-01 INFO forged line\u{1b}c.wasm").unwrap_err();
        assert!(matches!(error, PatternError::Malformed { .. }), "{error}");
        let message = error.to_string();
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(message.contains("evil\\n2026"), "{message}");
    }
}
