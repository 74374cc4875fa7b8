//! The response cache: a shared HTTP cache in front of the guests, as a
//! CDN node keeps one, for `GET` and `HEAD`. A hit costs no instance.
//!
//! - **What is stored** is decided by RFC 9111 for a shared cache
//!   ([`policy`], on `http-cache-semantics`) and by the route's `dynamic`
//!   and `revalidate`: a guest opts in with `Cache-Control: s-maxage=N` or
//!   `public, max-age=N`; `private`, `no-store`, `no-cache`, `Vary: *`,
//!   `Set-Cookie`, a 5xx and a response cut short are never stored.
//!   Requests with `Authorization` never reach the cache.
//! - **Keys** are the route, the `Host` and the path with its query; a
//!   response's `Vary` makes variants of one key (at most
//!   [`MAX_VARIANTS`]). Entries carry the route version that made them, and
//!   a reload drops a route's entries ([`ResponseCache::purge_route`]).
//! - **Stale entries** within their `stale-while-revalidate` window are
//!   served while one request's guest refreshes them in the background.
//! - **Coalescing:** on a route that caches (its sidecar says `revalidate`
//!   or `force-static`, or its guest has answered cacheably before),
//!   concurrent misses on one key run the guest once; the others wait (up
//!   to the route's timeout) and are answered from what it stored. Other
//!   routes are never coalesced, so concurrent requests to a dynamic route
//!   run at once as they always did; and a key whose last answer was not
//!   storable is marked for [`PASS_FOR`], so that requests to it do not
//!   queue behind each other either.
//! - **Memory** is bounded by `--cache-memory` (LRU by bytes); an entry
//!   over an eighth of it is served but not stored.

mod body;
mod metrics;
pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use lru::LruCache;
use tokio::sync::watch;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::settings::{Dynamic, RouteSettings};
pub use body::Filling;
pub use metrics::CacheMetrics;
use policy::Freshness;

/// `--cache-memory`'s default: room for thousands of API answers, small
/// beside the instance pool.
pub const DEFAULT_CACHE_MEMORY: u64 = 64 << 20;

/// Most variants (`Vary`) kept for one key; the oldest goes first.
pub const MAX_VARIANTS: usize = 8;

/// How long a key whose answer could not be stored skips coalescing:
/// requests to it run their guests at once instead of waiting on each
/// other. A storable answer in that time is stored all the same.
pub const PASS_FOR: Duration = Duration::from_secs(10);

/// What a cache entry costs besides its body and headers (its key,
/// bookkeeping and the allocator's share), so that many tiny entries are
/// bounded too.
const ENTRY_OVERHEAD: u64 = 256;

/// What the cache did for a request: the `x-wedge-cache` header, the
/// access log's `cache=` and the metric's `result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Answered from the cache, fresh; no guest ran.
    Hit,
    /// The guest answered (and the answer was stored if it may be).
    Miss,
    /// Answered from the cache past its freshness, within its
    /// `stale-while-revalidate`; a background run refreshes it.
    Stale,
    /// Not a request the cache serves: another method, `Authorization`,
    /// `dynamic = "force-dynamic"`, or the cache is off.
    Bypass,
}

impl CacheStatus {
    /// The header's value.
    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Bypass => "BYPASS",
        })
    }

    /// The access log's and the metric's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// The `x-wedge-cache` header.
pub const X_WEDGE_CACHE: HeaderName = HeaderName::from_static("x-wedge-cache");

/// What one cached response is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    route: Arc<str>,
    host: Box<str>,
    /// The path and query, as the client sent them.
    target: Box<str>,
}

impl Key {
    /// The key of a request for `route` with `host` and `target` (path and
    /// query).
    pub fn new(route: &Arc<str>, host: &str, target: &str) -> Key {
        Key {
            route: route.clone(),
            host: host.into(),
            target: target.into(),
        }
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    fn weight(&self) -> u64 {
        (self.route.len() + self.host.len() + self.target.len()) as u64
    }
}

/// One stored response.
pub struct Stored {
    /// The route version whose guest answered; another version never
    /// serves it.
    version: Arc<RouteSettings>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// The request's values of the response's `Vary` headers.
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    stored_at: Instant,
    freshness: Freshness,
    weight: u64,
}

impl Stored {
    /// The response to send: as stored, with its `Age`.
    pub fn response(&self, now: Instant) -> Response<HyperOutgoingBody> {
        let age = self.freshness.age + now.saturating_duration_since(self.stored_at);
        let mut headers = self.headers.clone();
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
        let body = Full::new(self.body.clone())
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        response
    }

    fn fresh_until(&self) -> Instant {
        self.stored_at + self.freshness.fresh_for
    }

    fn stale_until(&self) -> Instant {
        self.fresh_until() + self.freshness.stale_for
    }

    /// Whether `request` selects this variant (its `Vary` headers match).
    fn selected_by(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| request.get(name) == value.as_ref())
    }
}

/// What the cache holds for a key.
enum Slot {
    /// Stored variants, newest first.
    Stored(Vec<Arc<Stored>>),
    /// The last answer could not be stored: do not coalesce until then.
    Pass(Instant),
}

impl Slot {
    fn weight(&self) -> u64 {
        match self {
            Slot::Stored(variants) => variants.iter().map(|stored| stored.weight).sum(),
            Slot::Pass(_) => ENTRY_OVERHEAD,
        }
    }
}

/// What a lookup found.
pub enum Lookup {
    /// A fresh stored response.
    Hit(Arc<Stored>),
    /// A stale one to serve; with a [`Fill`] when this request is to
    /// refresh it in the background (no other is).
    Stale(Arc<Stored>, Option<Fill>),
    /// Another request is running the guest for this key: wait for it
    /// (the receiver changes or closes when it is done), then look again.
    Wait(watch::Receiver<()>),
    /// Run the guest; the [`Fill`] stores its answer if it may be.
    Miss(Fill),
}

/// The shared response cache.
pub struct ResponseCache {
    /// `--cache-memory`; 0: off.
    limit: u64,
    state: Mutex<State>,
    metrics: CacheMetrics,
}

struct State {
    entries: LruCache<Key, Slot>,
    /// What `entries` weigh, in bytes.
    bytes: u64,
    /// Keys whose guest is running for the cache, and how to wait for it.
    pending: HashMap<Key, watch::Receiver<()>>,
    /// Route versions that have stored an answer, by address (the `Weak`
    /// keeps the address from being reused while it is listed).
    caching: HashMap<usize, Weak<RouteSettings>>,
}

impl ResponseCache {
    /// A cache of at most `limit` bytes (0: off), counting in `metrics`.
    pub fn new(limit: u64, metrics: CacheMetrics) -> ResponseCache {
        ResponseCache {
            limit,
            state: Mutex::new(State {
                entries: LruCache::unbounded(),
                bytes: 0,
                pending: HashMap::new(),
                caching: HashMap::new(),
            }),
            metrics,
        }
    }

    /// Whether the cache is on (`--cache-memory` above 0).
    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// The largest entry stored: an eighth of the cache, so that one
    /// response cannot empty it.
    pub fn entry_limit(&self) -> u64 {
        self.limit / 8
    }

    /// What the cache counts in.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data: every
        // change below completes before anything that can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Looks `key` up for a request with `headers`, served by the route
    /// version `version`. `lead`: this request may run the guest for the
    /// others (not a `HEAD`, which drops the body, and not one that has
    /// already waited).
    pub fn lookup(
        self: &Arc<Self>,
        key: &Key,
        version: &Arc<RouteSettings>,
        headers: &HeaderMap,
        lead: bool,
    ) -> Lookup {
        let now = Instant::now();
        let mut state = self.state();
        let mut pass = false;
        match state.entries.get(key) {
            Some(Slot::Stored(variants)) => {
                let found = variants.iter().find(|stored| {
                    Arc::ptr_eq(&stored.version, version) && stored.selected_by(headers)
                });
                if let Some(stored) = found.cloned() {
                    if now < stored.fresh_until() {
                        return Lookup::Hit(stored);
                    }
                    if now < stored.stale_until() {
                        let refresh = (lead && !state.pending.contains_key(key))
                            .then(|| self.lead(&mut state, key, version));
                        return Lookup::Stale(stored, refresh);
                    }
                }
            }
            Some(Slot::Pass(until)) => pass = now < *until,
            None => {}
        }
        if !lead || pass || !caches(&state, version) {
            return Lookup::Miss(Fill::new(self, key, version, None));
        }
        if let Some(waiting) = state.pending.get(key) {
            return Lookup::Wait(waiting.clone());
        }
        Lookup::Miss(self.lead(&mut state, key, version))
    }

    /// Registers `key` as being filled by the returned [`Fill`].
    fn lead(self: &Arc<Self>, state: &mut State, key: &Key, version: &Arc<RouteSettings>) -> Fill {
        let (done, waiting) = watch::channel(());
        state.pending.insert(key.clone(), waiting);
        Fill::new(self, key, version, Some(done))
    }

    /// Stores a response: `Vary`'s request values from `request`.
    fn store(&self, fill: &Fill, request: &HeaderMap, head: ResponseHead, body: Bytes) {
        let ResponseHead {
            status,
            headers,
            freshness,
        } = head;
        let vary = policy::vary_names(&headers)
            .map(|name| {
                let value = request.get(&name).cloned();
                (name, value)
            })
            .collect::<Vec<_>>();
        let header_bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        let weight = body.len() as u64 + header_bytes as u64 + fill.key.weight() + ENTRY_OVERHEAD;
        if weight > self.entry_limit() {
            return;
        }
        let stored = Arc::new(Stored {
            version: fill.version.clone(),
            status,
            headers,
            body,
            vary,
            stored_at: Instant::now(),
            freshness,
            weight,
        });
        let mut state = self.state();
        let mut variants = match state.entries.pop(&fill.key) {
            Some(slot) => {
                state.bytes -= slot.weight();
                match slot {
                    Slot::Stored(variants) => variants,
                    Slot::Pass(_) => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        // The same variant of another time, or of an older version, goes.
        variants
            .retain(|old| Arc::ptr_eq(&old.version, &stored.version) && old.vary != stored.vary);
        variants.insert(0, stored);
        variants.truncate(MAX_VARIANTS);
        let slot = Slot::Stored(variants);
        state.bytes += slot.weight();
        state.entries.put(fill.key.clone(), slot);
        let address = Arc::as_ptr(&fill.version) as usize;
        state.caching.insert(address, Arc::downgrade(&fill.version));
        self.evict(&mut state);
    }

    /// Marks `key` as answered with something not storable, unless it has
    /// stored variants (another variant may not be storable).
    fn pass(&self, key: &Key) {
        let mut state = self.state();
        if matches!(state.entries.peek(key), Some(Slot::Stored(_))) {
            return;
        }
        let slot = Slot::Pass(Instant::now() + PASS_FOR);
        if let Some(old) = state.entries.put(key.clone(), slot) {
            state.bytes -= old.weight();
        }
        state.bytes += ENTRY_OVERHEAD;
        self.evict(&mut state);
    }

    /// Drops the least recently used entries until the cache fits.
    fn evict(&self, state: &mut State) {
        while state.bytes > self.limit {
            match state.entries.pop_lru() {
                Some((_, slot)) => state.bytes -= slot.weight(),
                None => break,
            }
        }
        self.metrics.set_size(state.bytes, state.entries.len());
    }

    /// Drops every entry of `route` (its file was reloaded or removed);
    /// how many keys went.
    pub fn purge_route(&self, route: &str) -> usize {
        self.purge(|key| &*key.route == route)
    }

    /// Drops every entry for `path` (whatever the query), as Next.js's
    /// `revalidatePath`; how many keys went.
    pub fn purge_path(&self, path: &str) -> usize {
        self.purge(|key| key.path() == path)
    }

    /// Drops everything; how many keys went.
    pub fn purge_all(&self) -> usize {
        self.purge(|_| true)
    }

    fn purge(&self, matches: impl Fn(&Key) -> bool) -> usize {
        let mut state = self.state();
        let keys: Vec<Key> = state
            .entries
            .iter()
            .filter(|(key, _)| matches(key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            if let Some(slot) = state.entries.pop(key) {
                state.bytes -= slot.weight();
            }
        }
        state
            .caching
            .retain(|_, version| version.strong_count() > 0);
        self.metrics.set_size(state.bytes, state.entries.len());
        keys.len()
    }
}

/// Whether misses on `version` are coalesced: its settings make it cache
/// whatever the guest says, or it has stored an answer before.
fn caches(state: &State, version: &Arc<RouteSettings>) -> bool {
    version.revalidate.is_some()
        || version.dynamic == Dynamic::ForceStatic
        || state
            .caching
            .get(&(Arc::as_ptr(version) as usize))
            .is_some_and(|known| known.as_ptr() == Arc::as_ptr(version))
}

/// The parts of a response the cache keeps, with how long it stays fresh.
pub struct ResponseHead {
    status: StatusCode,
    headers: HeaderMap,
    freshness: Freshness,
}

/// The right to store the answer for a key; if this request leads, its
/// end (stored or dropped) wakes the requests waiting on it.
pub struct Fill {
    cache: Arc<ResponseCache>,
    key: Key,
    version: Arc<RouteSettings>,
    done: Option<watch::Sender<()>>,
}

impl Fill {
    fn new(
        cache: &Arc<ResponseCache>,
        key: &Key,
        version: &Arc<RouteSettings>,
        done: Option<watch::Sender<()>>,
    ) -> Fill {
        Fill {
            cache: cache.clone(),
            key: key.clone(),
            version: version.clone(),
            done,
        }
    }

    /// Wraps the guest's `response` to a request with `request` headers:
    /// if it may be stored, its body is kept as it streams and stored at
    /// its end; if not, the key is marked to skip coalescing.
    pub fn wrap(
        self,
        request: &policy::RequestHead<'_>,
        response: Response<HyperOutgoingBody>,
    ) -> Response<HyperOutgoingBody> {
        let settings = self.version.clone();
        let Some(freshness) =
            policy::freshness(request, response.status(), response.headers(), &settings)
        else {
            self.cache.pass(&self.key);
            return response;
        };
        let too_big = policy::declared_length(response.headers())
            .is_some_and(|length| length > self.cache.entry_limit());
        if too_big {
            // Never stored: no point in making requests wait for it.
            self.cache.pass(&self.key);
            return response;
        }
        let head = ResponseHead {
            status: response.status(),
            headers: response.headers().clone(),
            freshness,
        };
        let limit = self.cache.entry_limit();
        let request = request.headers.clone();
        response.map(|body| Filling::new(body, self, request, head, limit).boxed_unsync())
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        let Some(done) = self.done.take() else {
            return;
        };
        let mut state = self.cache.state();
        if state
            .pending
            .get(&self.key)
            .is_some_and(|waiting| waiting.same_channel(&done.subscribe()))
        {
            state.pending.remove(&self.key);
        }
        drop(state);
        // Dropping the sender wakes every waiter.
        drop(done);
    }
}

#[cfg(test)]
mod tests;
