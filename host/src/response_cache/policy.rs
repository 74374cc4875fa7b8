//! What may be stored, and for how long: RFC 9111 for a shared cache,
//! computed by `http-cache-semantics`, under the route's `dynamic` and
//! `revalidate`.
//!
//! | route | guest's answer | stored |
//! |---|---|---|
//! | `force-dynamic` | anything | never |
//! | `auto` (default) | `Cache-Control`/`Expires` | as RFC 9111 says for a shared cache: `s-maxage` over `max-age`; `private`, `no-store`, `no-cache` not |
//! | `auto` + `revalidate` | no `Cache-Control`/`Expires` | `revalidate`, then stale while revalidating (Next.js's ISR) |
//! | `auto` | no `Cache-Control`/`Expires` | never (no heuristic freshness) |
//! | `force-static` | anything | `revalidate` (a year if unset), then stale while revalidating |
//!
//! Whatever the route says, `Set-Cookie`, `Vary: *` and 5xx answers are
//! never stored: a cookie set for one client must not reach another, and a
//! failing guest is asked again.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use http_cache_semantics::{CacheOptions, CachePolicy, RequestLike, ResponseLike};

use crate::settings::{Dynamic, MAX_REVALIDATE, RouteSettings};

/// How long a stored response serves, from when it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Served as fresh (a hit) this long.
    pub fresh_for: Duration,
    /// Then served stale while one run refreshes it, this long.
    pub stale_for: Duration,
    /// Its `Age` when stored (an `Age` the guest sent).
    pub age: Duration,
}

/// The request a response answers, as the policy needs it.
pub struct RequestHead<'a> {
    /// The method the guest saw (`GET`).
    pub method: &'a Method,
    /// The request's URI.
    pub uri: &'a Uri,
    /// The client's headers.
    pub headers: &'a HeaderMap,
}

impl RequestLike for RequestHead<'_> {
    fn uri(&self) -> Uri {
        self.uri.clone()
    }

    fn is_same_uri(&self, other: &Uri) -> bool {
        self.uri == other
    }

    fn method(&self) -> &Method {
        self.method
    }

    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

struct ResponseHead<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
}

impl ResponseLike for ResponseHead<'_> {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

/// A shared cache that never guesses a lifetime: only what the guest or
/// the route states is stored.
const OPTIONS: CacheOptions = CacheOptions {
    shared: true,
    cache_heuristic: 0.0,
    immutable_min_time_to_live: Duration::from_secs(24 * 60 * 60),
    ignore_cargo_cult: false,
};

/// How long the answer (`status`, `headers`) to `request` may be served
/// from the cache of a route with `settings`; `None`: not stored.
pub fn freshness(
    request: &RequestHead<'_>,
    status: StatusCode,
    headers: &HeaderMap,
    settings: &RouteSettings,
) -> Option<Freshness> {
    if status.is_server_error()
        || headers.contains_key(header::SET_COOKIE)
        || vary_names_raw(headers).any(|name| name == "*")
    {
        return None;
    }
    let states =
        headers.contains_key(header::CACHE_CONTROL) || headers.contains_key(header::EXPIRES);
    let revalidate = match settings.dynamic {
        Dynamic::ForceDynamic => return None,
        Dynamic::ForceStatic => Some(settings.revalidate.unwrap_or(MAX_REVALIDATE)),
        Dynamic::Auto if states => None,
        Dynamic::Auto => Some(settings.revalidate?),
    };
    let stated;
    let (headers, stale_for) = match revalidate {
        // Next.js's ISR: fresh for `revalidate`, then served stale while
        // one run regenerates it.
        Some(revalidate) => {
            stated = stated_for(headers, revalidate);
            (&stated, MAX_REVALIDATE)
        }
        None => (headers, stale_while_revalidate(headers)),
    };
    let now = SystemTime::now();
    let policy = CachePolicy::new_options(request, &ResponseHead { status, headers }, now, OPTIONS);
    if !policy.is_storable() {
        return None;
    }
    let fresh_for = policy.time_to_live(now);
    if fresh_for.is_zero() && stale_for.is_zero() {
        return None;
    }
    Some(Freshness {
        fresh_for,
        stale_for,
        age: policy.age(now),
    })
}

/// `headers` as if the guest had said `public, s-maxage=` `revalidate`.
fn stated_for(headers: &HeaderMap, revalidate: Duration) -> HeaderMap {
    let mut stated = headers.clone();
    stated.remove(header::EXPIRES);
    stated.remove(header::PRAGMA);
    stated.insert(
        header::CACHE_CONTROL,
        HeaderValue::try_from(format!("public, s-maxage={}", revalidate.as_secs()))
            .expect("bug: digits are a valid header value"),
    );
    stated
}

/// `Cache-Control: stale-while-revalidate=N` (RFC 5861), at most a year;
/// zero without it. (The one directive `http-cache-semantics` leaves to
/// the cache.)
fn stale_while_revalidate(headers: &HeaderMap) -> Duration {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|directive| {
            let (name, seconds) = directive.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("stale-while-revalidate")
                .then(|| seconds.trim().trim_matches('"').parse::<u64>().ok())?
        })
        .map(|seconds| Duration::from_secs(seconds).min(MAX_REVALIDATE))
        .max()
        .unwrap_or_default()
}

/// The header names a response's `Vary` lists, `*` included.
fn vary_names_raw(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// The request headers a response's `Vary` selects on.
pub fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    vary_names_raw(headers).filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
}

/// The `content-length` `headers` declare, if valid.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
