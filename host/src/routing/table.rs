//! The route table: an immutable segment trie built from route files.
//!
//! Why not a router crate: `matchit` 0.9 refuses `/blog/{id}` beside
//! `/blog/{*slug}`, which the precedence rules need, and has no optional
//! catch-all; `routefinder` 0.6 lets `*` match an empty remainder and accepts
//! different param names at one level, so Wedge would have to re-check every
//! rule around it. The rules are small enough that a trie which encodes them
//! directly is shorter and easier to verify than such a wrapper.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

use super::{RouteConflict, RoutePattern, Segment};

/// Index of a route in [`RouteTable::routes`].
type RouteId = usize;

/// A route file and what it was loaded into.
#[derive(Debug)]
pub struct Route<T> {
    /// The URL pattern, e.g. `/api/users/[id]`.
    pub pattern: RoutePattern,
    /// The file the pattern came from.
    pub file: PathBuf,
    /// What the caller loaded from the file.
    pub value: T,
}

/// A successful lookup: the route and its params in pattern order.
#[derive(Debug)]
pub struct RouteMatch<'a, T> {
    /// The matched route.
    pub route: &'a Route<T>,
    /// `(name, percent-decoded value)`; a catch-all's segments are joined by `/`.
    pub params: Vec<(&'a str, String)>,
}

/// An immutable snapshot of the routes; rebuilt whole, never edited.
#[derive(Debug)]
pub struct RouteTable<T> {
    routes: Vec<Route<T>>,
    /// Each route by its file: reloads look every route up by file.
    files: HashMap<PathBuf, RouteId>,
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    /// The route whose pattern ends exactly here.
    end: Option<RouteId>,
    statics: HashMap<String, Node>,
    param: Option<Named<Box<Node>>>,
    catch_all: Option<Named<RouteId>>,
    optional_catch_all: Option<Named<RouteId>>,
}

/// A dynamic child: its param name, the route that introduced it, and where it leads.
#[derive(Debug)]
struct Named<N> {
    name: String,
    first: RouteId,
    next: N,
}

impl<T> RouteTable<T> {
    /// Builds a table, refusing routes that conflict with one added before them.
    ///
    /// Earlier routes win: give them in the order that should keep serving
    /// (at start-up, sorted by file path). Every refused route is returned as
    /// a conflict naming both files, never dropped silently.
    pub fn new(candidates: impl IntoIterator<Item = Route<T>>) -> (Self, Vec<RouteConflict>) {
        let mut table = RouteTable {
            routes: Vec::new(),
            files: HashMap::new(),
            root: Node::default(),
        };
        let mut conflicts = Vec::new();
        for route in candidates {
            match table.root.check(&route.pattern, &table.routes) {
                Ok(()) => {
                    let id = table.routes.len();
                    table.root.insert(route.pattern.segments(), id);
                    table.files.entry(route.file.clone()).or_insert(id);
                    table.routes.push(route);
                }
                Err((existing, reason)) => conflicts.push(RouteConflict {
                    file: route.file,
                    existing: table.routes[existing].file.clone(),
                    pattern: route.pattern.to_string(),
                    reason,
                }),
            }
        }
        (table, conflicts)
    }

    /// Every route in the table, in the order added.
    pub fn routes(&self) -> &[Route<T>] {
        &self.routes
    }

    /// The route loaded from `file`, if any.
    pub fn by_file(&self, file: &Path) -> Option<&Route<T>> {
        self.files.get(file).map(|&id| &self.routes[id])
    }

    /// The route serving `path` (no query), by precedence: at every segment
    /// static > `[param]` > `[...catch]` > `[[...optional]]`.
    ///
    /// A path with an empty segment (`/a//b`) or one that is not UTF-8 once
    /// percent-decoded matches nothing.
    pub fn lookup(&self, path: &str) -> Option<RouteMatch<'_, T>> {
        let rest = path.strip_prefix('/')?;
        let segments = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/')
                .map(|raw| {
                    let decoded = percent_decode_str(raw).decode_utf8().ok()?;
                    (!decoded.is_empty()).then(|| decoded.into_owned())
                })
                .collect::<Option<Vec<_>>>()?
        };
        let mut params = Vec::new();
        let id = self.root.lookup(&segments, &mut params)?;
        Some(RouteMatch {
            route: &self.routes[id],
            params,
        })
    }
}

impl Node {
    /// Why `pattern` cannot join the trie, with the route it collides with.
    fn check<T>(
        &self,
        pattern: &RoutePattern,
        routes: &[Route<T>],
    ) -> Result<(), (RouteId, String)> {
        let mut node = self;
        for segment in pattern.segments() {
            let next = match segment {
                Segment::Static(name) => node.statics.get(name),
                Segment::Param(name) => {
                    if let Some(param) = &node.param {
                        same_name(param, name, routes)?;
                    }
                    node.param.as_ref().map(|p| &*p.next)
                }
                Segment::CatchAll(name) => {
                    return match &node.catch_all {
                        Some(c) if c.name == *name => {
                            Err((c.next, "both serve the same route".into()))
                        }
                        Some(c) => same_name(c, name, routes),
                        None => Ok(()),
                    };
                }
                Segment::OptionalCatchAll(name) => {
                    if let Some(index) = node.end {
                        return Err((index, index_beside_optional(&routes[index].pattern)));
                    }
                    return match &node.optional_catch_all {
                        Some(o) if o.name == *name => {
                            Err((o.next, "both serve the same route".into()))
                        }
                        Some(o) => same_name(o, name, routes),
                        None => Ok(()),
                    };
                }
            };
            let Some(next) = next else { return Ok(()) };
            node = next;
        }
        if let Some(existing) = node.end {
            return Err((existing, "both serve the same route".into()));
        }
        if let Some(optional) = &node.optional_catch_all {
            return Err((optional.next, index_beside_optional(pattern)));
        }
        Ok(())
    }

    fn insert(&mut self, segments: &[Segment], id: RouteId) {
        let Some((segment, rest)) = segments.split_first() else {
            self.end = Some(id);
            return;
        };
        fn named<N>(name: &str, first: RouteId, next: N) -> Named<N> {
            Named {
                name: name.to_owned(),
                first,
                next,
            }
        }
        match segment {
            Segment::Static(name) => self
                .statics
                .entry(name.clone())
                .or_default()
                .insert(rest, id),
            Segment::Param(name) => self
                .param
                .get_or_insert_with(|| named(name, id, Box::default()))
                .next
                .insert(rest, id),
            Segment::CatchAll(name) => self.catch_all = Some(named(name, id, id)),
            Segment::OptionalCatchAll(name) => self.optional_catch_all = Some(named(name, id, id)),
        }
    }

    /// Depth-first in precedence order, so the first full match is the most
    /// specific route; a branch that fails deeper down falls back to the
    /// next kind of segment at this level.
    fn lookup<'a>(
        &'a self,
        segments: &[String],
        params: &mut Vec<(&'a str, String)>,
    ) -> Option<RouteId> {
        let Some((segment, rest)) = segments.split_first() else {
            return self
                .end
                .or(self.optional_catch_all.as_ref().map(|o| o.next));
        };
        if let Some(id) = self
            .statics
            .get(segment)
            .and_then(|next| next.lookup(rest, params))
        {
            return Some(id);
        }
        if let Some(param) = &self.param {
            params.push((&param.name, segment.clone()));
            if let Some(id) = param.next.lookup(rest, params) {
                return Some(id);
            }
            params.pop();
        }
        let catch_all = self
            .catch_all
            .as_ref()
            .or(self.optional_catch_all.as_ref())?;
        params.push((&catch_all.name, segments.join("/")));
        Some(catch_all.next)
    }
}

/// A dynamic child may be reached by several routes only under one name.
fn same_name<T, N>(
    existing: &Named<N>,
    name: &str,
    routes: &[Route<T>],
) -> Result<(), (RouteId, String)> {
    if existing.name == name {
        return Ok(());
    }
    Err((
        existing.first,
        format!(
            "different param names at one level (`{}` in {} vs `{name}`); use one name",
            existing.name, routes[existing.first].pattern
        ),
    ))
}

fn index_beside_optional(pattern: &RoutePattern) -> String {
    format!("an index route and an optional catch-all both serve {pattern}; remove one")
}
