//! The route table being served, shared by the server (which reads it per
//! request), the reloader and `wedge dev` (which publish new ones) and the
//! admin listener (which shows it), with the metrics every load counts in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use crate::loader::{LoadedRoute, same_error};
use crate::metrics::Metrics;
use crate::response_cache::ResponseCache;
use crate::routing::RouteTable;

/// The live route table: read whole, replaced whole.
pub struct LiveRoutes {
    table: ArcSwap<RouteTable<LoadedRoute>>,
    /// Whether a first table has been published.
    loaded: AtomicBool,
    metrics: Arc<Metrics>,
    /// The responses the routes' guests gave; a route's go when it changes.
    cache: Arc<ResponseCache>,
}

impl LiveRoutes {
    /// No routes yet (not [loaded](Self::is_loaded)); loads count in
    /// `metrics`. The response cache is off until
    /// [`with_response_cache`](Self::with_response_cache).
    pub fn new(metrics: Arc<Metrics>) -> LiveRoutes {
        let cache = Arc::new(ResponseCache::new(0, metrics.response_cache().clone()));
        LiveRoutes {
            table: ArcSwap::from_pointee(RouteTable::new([]).0),
            loaded: AtomicBool::new(false),
            metrics,
            cache,
        }
    }

    /// Caches the routes' responses in up to `bytes` (`--cache-memory`).
    pub fn with_response_cache(mut self, bytes: u64) -> LiveRoutes {
        let metrics = self.metrics.response_cache().clone();
        self.cache = Arc::new(ResponseCache::new(bytes, metrics));
        self
    }

    /// The response cache, which the server reads and fills and the admin
    /// listener purges.
    pub fn response_cache(&self) -> &Arc<ResponseCache> {
        &self.cache
    }

    /// The table served now; a request keeps the one it started with.
    pub fn current(&self) -> Arc<RouteTable<LoadedRoute>> {
        self.table.load_full()
    }

    /// What requests and loads are counted in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether a first table has been published.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Serves `next` from the next request on, if it differs from the
    /// current table: logs every route added, updated or removed, and
    /// counts the load. The first table is always published. Whether
    /// anything changed.
    pub fn publish(&self, next: RouteTable<LoadedRoute>) -> bool {
        let previous = self.current();
        let first = !self.is_loaded();
        let changed = log_changes(&previous, &next);
        if changed || first {
            let previous = (!first).then_some(&*previous);
            self.metrics.record_load(previous, &next);
            let replaced = previous.map(|previous| replaced_versions(previous, &next));
            self.table.store(Arc::new(next));
            // After the swap: a request still on the old version may store
            // its answer after this, but no request looks it up (a lookup
            // checks the version).
            for route in replaced.into_iter().flatten() {
                self.cache.purge_route(&route);
            }
            self.loaded.store(true, Ordering::Release);
        }
        changed
    }
}

/// The routes of `previous` whose working version `next` no longer
/// serves: updated (content or settings), failed or removed.
fn replaced_versions(
    previous: &RouteTable<LoadedRoute>,
    next: &RouteTable<LoadedRoute>,
) -> Vec<Arc<str>> {
    previous
        .routes()
        .iter()
        .filter(|route| {
            let Ok(old) = &route.value.state else {
                return false;
            };
            next.by_file(&route.file)
                .is_none_or(|new| match &new.value.state {
                    Ok(new) => !Arc::ptr_eq(&old.settings, &new.settings),
                    Err(_) => true,
                })
        })
        .map(|route| route.value.name.clone())
        .collect()
}

/// Whether two loads of the same content are the same version: the same
/// settings (by identity: unchanged settings are carried over) or the same
/// failure (by its message: a sidecar that fails again fails anew).
fn same_state(old: &LoadedRoute, new: &LoadedRoute) -> bool {
    match (&old.state, &new.state) {
        (Ok(old), Ok(new)) => Arc::ptr_eq(&old.settings, &new.settings),
        (Err(old), Err(new)) => same_error(Some(old), Some(new)),
        _ => false,
    }
}

/// Logs every route added, updated or removed; whether anything changed.
fn log_changes(previous: &RouteTable<LoadedRoute>, next: &RouteTable<LoadedRoute>) -> bool {
    let mut changed = false;
    for route in next.routes() {
        let new = &route.value;
        let file = route.file.display();
        match previous.by_file(&route.file) {
            Some(old) if old.value.hash == new.hash && old.pattern == route.pattern => {
                if same_state(&old.value, new) {
                    // A new failure beside a working version (or its end)
                    // is logged where it happens; `/routes` shows it.
                    let (old, new) = (old.value.last_error.as_ref(), new.last_error.as_ref());
                    changed |= !same_error(old, new);
                    continue;
                }
                tracing::info!(route = %new.name, %file, "route settings updated");
            }
            Some(old) => tracing::info!(
                route = %new.name,
                %file,
                "route updated: {} -> {} ({})",
                old.value.short_hash(),
                new.short_hash(),
                new.origin
            ),
            None => {
                tracing::info!(route = %new.name, %file, "route added: {} ({})", new.short_hash(), new.origin)
            }
        }
        changed = true;
    }
    for route in previous.routes() {
        if next.by_file(&route.file).is_none() {
            tracing::info!(route = %route.value.name, file = %route.file.display(), "route removed");
            changed = true;
        }
    }
    changed
}
