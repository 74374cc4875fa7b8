//! The cache's own rules, without a server: what RFC 9111 and the route's
//! settings let it store, the memory bound, coalescing and purges. The
//! end-to-end tests (tests/tests/e2e/caching.rs) run the same through a
//! real server and guest.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};

use super::policy::{Freshness, RequestHead, freshness};
use super::*;
use crate::settings::{Dynamic, MAX_REVALIDATE, RouteSettings};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| {
            (
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            )
        })
        .collect()
}

fn settings(dynamic: Dynamic, revalidate: Option<u64>) -> RouteSettings {
    RouteSettings {
        dynamic,
        revalidate: revalidate.map(Duration::from_secs),
        ..RouteSettings::default()
    }
}

/// What a `GET /x` with `request` headers answered `status` with
/// `response` headers may be stored for, on a route with `settings`.
fn stored_for(
    request: &[(&str, &str)],
    status: u16,
    response: &[(&str, &str)],
    settings: &RouteSettings,
) -> Option<Freshness> {
    let uri = Uri::from_static("/x");
    let request = headers(request);
    let head = RequestHead {
        method: &Method::GET,
        uri: &uri,
        headers: &request,
    };
    freshness(
        &head,
        StatusCode::from_u16(status).unwrap(),
        &headers(response),
        settings,
    )
}

fn auto() -> RouteSettings {
    settings(Dynamic::Auto, None)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_shared_cache_takes_s_maxage_over_max_age() {
    let both = stored_for(
        &[],
        200,
        &[("cache-control", "max-age=5, s-maxage=60")],
        &auto(),
    );
    assert_eq!(both.unwrap().fresh_for, secs(60));
    let public = stored_for(
        &[],
        200,
        &[("cache-control", "public, max-age=30")],
        &auto(),
    );
    assert_eq!(public.unwrap().fresh_for, secs(30));
}

#[test]
fn what_a_shared_cache_must_not_store_is_not_stored() {
    for (status, response) in [
        (200, vec![("cache-control", "private, max-age=60")]),
        (200, vec![("cache-control", "no-store, s-maxage=60")]),
        (200, vec![("cache-control", "no-cache, s-maxage=60")]),
        (200, vec![("cache-control", "s-maxage=0")]),
        (
            200,
            vec![
                ("cache-control", "public, s-maxage=60"),
                ("set-cookie", "a=1"),
            ],
        ),
        (200, vec![("cache-control", "s-maxage=60"), ("vary", "*")]),
        (500, vec![("cache-control", "s-maxage=60")]),
        (503, vec![("cache-control", "s-maxage=60")]),
        // No freshness stated: no heuristic lifetime either.
        (
            200,
            vec![("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")],
        ),
        (200, vec![]),
    ] {
        let found = stored_for(&[], status, &response, &auto());
        assert_eq!(found, None, "{status} {response:?}");
    }
}

#[test]
fn age_counts_against_the_lifetime() {
    let found = stored_for(
        &[],
        200,
        &[("cache-control", "s-maxage=60"), ("age", "20")],
        &auto(),
    );
    let found = found.unwrap();
    assert_eq!(found.fresh_for, secs(40));
    assert_eq!(found.age, secs(20));
}

#[test]
fn stale_while_revalidate_is_the_stale_window() {
    let found = stored_for(
        &[],
        200,
        &[(
            "cache-control",
            "public, s-maxage=10, stale-while-revalidate=30",
        )],
        &auto(),
    );
    assert_eq!(
        found.unwrap(),
        Freshness {
            fresh_for: secs(10),
            stale_for: secs(30),
            age: Duration::ZERO
        }
    );
}

#[test]
fn revalidate_applies_when_the_guest_says_nothing() {
    let route = settings(Dynamic::Auto, Some(60));
    let silent = stored_for(&[], 200, &[("content-type", "text/plain")], &route).unwrap();
    assert_eq!(silent.fresh_for, secs(60));
    assert_eq!(
        silent.stale_for, MAX_REVALIDATE,
        "served stale while it regenerates"
    );
    // The guest's own word wins under "auto".
    let private = stored_for(&[], 200, &[("cache-control", "private")], &route);
    assert_eq!(private, None);
    let short = stored_for(&[], 200, &[("cache-control", "s-maxage=5")], &route);
    assert_eq!(short.unwrap().fresh_for, secs(5));
}

#[test]
fn force_static_and_force_dynamic_override_the_guest() {
    let static_ = settings(Dynamic::ForceStatic, Some(30));
    let found = stored_for(
        &[],
        200,
        &[("cache-control", "private, no-store")],
        &static_,
    );
    assert_eq!(found.unwrap().fresh_for, secs(30));
    let forever = stored_for(&[], 200, &[], &settings(Dynamic::ForceStatic, None));
    assert_eq!(forever.unwrap().fresh_for, MAX_REVALIDATE);
    // Still never a cookie for someone else.
    let cookie = stored_for(&[], 200, &[("set-cookie", "s=1")], &static_);
    assert_eq!(cookie, None);
    let dynamic = settings(Dynamic::ForceDynamic, Some(30));
    let found = stored_for(
        &[],
        200,
        &[("cache-control", "public, s-maxage=60")],
        &dynamic,
    );
    assert_eq!(found, None);
}

#[test]
fn authorized_requests_are_stored_only_when_the_answer_says_public() {
    let auth = [("authorization", "Bearer t")];
    assert_eq!(
        stored_for(&auth, 200, &[("cache-control", "max-age=60")], &auto()),
        None
    );
}

/// A cache holding `limit` bytes, and a version of a route.
fn cache(limit: u64) -> (Arc<ResponseCache>, Arc<RouteSettings>) {
    let cache = Arc::new(ResponseCache::new(limit, CacheMetrics::default()));
    (cache, Arc::new(RouteSettings::default()))
}

fn key(target: &str) -> Key {
    Key::new(&Arc::from("/r"), "localhost", target)
}

/// Stores `body` for `key` as a fresh minute-long answer.
fn put(cache: &Arc<ResponseCache>, version: &Arc<RouteSettings>, key: &Key, body: &str) {
    let fill = match cache.lookup(key, version, &HeaderMap::new(), true) {
        Lookup::Miss(fill) => fill,
        _ => panic!("a miss expected for {key:?}"),
    };
    store(cache, &fill, &HeaderMap::new(), &[], body);
}

#[test]
fn routes_whose_settings_cache_are_coalesced_from_their_first_miss() {
    let cache = Arc::new(ResponseCache::new(1 << 20, CacheMetrics::default()));
    let isr = Arc::new(settings(Dynamic::Auto, Some(60)));
    let key = key("/isr");
    let Lookup::Miss(_first) = cache.lookup(&key, &isr, &HeaderMap::new(), true) else {
        panic!("a miss");
    };
    assert!(matches!(
        cache.lookup(&key, &isr, &HeaderMap::new(), true),
        Lookup::Wait(_)
    ));
}

fn store(
    cache: &Arc<ResponseCache>,
    fill: &Fill,
    request: &HeaderMap,
    response: &[(&str, &str)],
    body: &str,
) {
    let head = ResponseHead {
        status: StatusCode::OK,
        headers: headers(response),
        freshness: Freshness {
            fresh_for: secs(60),
            stale_for: Duration::ZERO,
            age: Duration::ZERO,
        },
    };
    cache.store(fill, request, head, Bytes::from(body.to_owned()));
}

fn hit_body(cache: &Arc<ResponseCache>, version: &Arc<RouteSettings>, key: &Key) -> Option<Bytes> {
    match cache.lookup(key, version, &HeaderMap::new(), false) {
        Lookup::Hit(stored) => Some(stored.body.clone()),
        _ => None,
    }
}

#[test]
fn memory_is_bounded_and_the_least_recently_used_goes_first() {
    let body = "x".repeat(1000);
    let (cache, version) = cache(16 * 1024);
    for n in 0..20 {
        put(&cache, &version, &key(&format!("/{n}")), &body);
        // /0 is used after every store: it stays.
        assert!(
            hit_body(&cache, &version, &key("/0")).is_some(),
            "after {n}"
        );
    }
    let state = cache.state();
    assert!(state.bytes <= 16 * 1024, "{} bytes", state.bytes);
    assert!(state.entries.len() < 20, "something was evicted");
    drop(state);
    assert!(
        hit_body(&cache, &version, &key("/1")).is_none(),
        "the oldest unused went"
    );
    assert!(
        hit_body(&cache, &version, &key("/19")).is_some(),
        "the newest stayed"
    );
}

#[test]
fn an_entry_over_an_eighth_of_the_cache_is_not_stored() {
    let (cache, version) = cache(8 * 1024);
    put(&cache, &version, &key("/big"), &"x".repeat(2000));
    assert!(hit_body(&cache, &version, &key("/big")).is_none());
    put(&cache, &version, &key("/small"), "ok");
    assert_eq!(hit_body(&cache, &version, &key("/small")).unwrap(), "ok");
}

#[test]
fn concurrent_misses_wait_for_the_first_and_wake_when_it_ends() {
    let (cache, version) = cache(1 << 20);
    // A route that has cached before is coalesced; one that never has is not.
    let key = key("/slow");
    for _ in 0..2 {
        assert!(matches!(
            cache.lookup(&key, &version, &HeaderMap::new(), true),
            Lookup::Miss(Fill { done: None, .. })
        ));
    }
    put(&cache, &version, &self::key("/other"), "cached");
    let first = match cache.lookup(&key, &version, &HeaderMap::new(), true) {
        Lookup::Miss(fill) => fill,
        _ => panic!("the first request leads"),
    };
    let Lookup::Wait(waiting) = cache.lookup(&key, &version, &HeaderMap::new(), true) else {
        panic!("the second request waits");
    };
    assert!(!waiting.has_changed().unwrap_or(true), "nothing yet");
    store(&cache, &first, &HeaderMap::new(), &[], "answer");
    drop(first);
    assert!(waiting.has_changed().is_err(), "woken: the fill is done");
    assert_eq!(hit_body(&cache, &version, &key).unwrap(), "answer");
}

#[test]
fn an_unstorable_answer_lets_the_next_requests_run_at_once() {
    let (cache, version) = cache(1 << 20);
    let key = key("/private");
    let Lookup::Miss(first) = cache.lookup(&key, &version, &HeaderMap::new(), true) else {
        panic!("a miss");
    };
    cache.pass(&first.key);
    drop(first);
    for _ in 0..3 {
        let Lookup::Miss(fill) = cache.lookup(&key, &version, &HeaderMap::new(), true) else {
            panic!("passed keys are not coalesced");
        };
        assert!(fill.done.is_none(), "and nobody waits on them");
    }
}

#[test]
fn vary_keeps_one_variant_per_request_value() {
    let (cache, version) = cache(1 << 20);
    let key = key("/greeting");
    for language in ["en", "fr"] {
        let request = headers(&[("accept-language", language)]);
        let Lookup::Miss(fill) = cache.lookup(&key, &version, &request, true) else {
            panic!("a miss for {language}");
        };
        store(
            &cache,
            &fill,
            &request,
            &[("vary", "Accept-Language")],
            language,
        );
    }
    for language in ["en", "fr"] {
        let request = headers(&[("accept-language", language)]);
        let Lookup::Hit(stored) = cache.lookup(&key, &version, &request, false) else {
            panic!("a hit for {language}");
        };
        assert_eq!(stored.body, language);
    }
    let other = headers(&[("accept-language", "de")]);
    assert!(matches!(
        cache.lookup(&key, &version, &other, false),
        Lookup::Miss(_)
    ));
}

#[test]
fn another_version_never_serves_and_purges_drop_what_they_name() {
    let (cache, version) = cache(1 << 20);
    put(&cache, &version, &key("/a?x=1"), "a1");
    put(&cache, &version, &key("/a?x=2"), "a2");
    put(&cache, &version, &key("/b"), "b");
    let newer = Arc::new(RouteSettings::default());
    assert!(hit_body(&cache, &newer, &key("/b")).is_none());
    assert_eq!(cache.purge_path("/a"), 2);
    assert!(hit_body(&cache, &version, &key("/a?x=1")).is_none());
    assert_eq!(cache.purge_route("/r"), 1);
    assert_eq!(cache.state().bytes, 0);
    put(&cache, &version, &key("/c"), "c");
    assert_eq!(cache.purge_all(), 1);
}

#[test]
fn a_stale_entry_is_served_while_one_request_refreshes_it() {
    let (cache, version) = cache(1 << 20);
    let key = key("/news");
    let Lookup::Miss(fill) = cache.lookup(&key, &version, &HeaderMap::new(), true) else {
        panic!("a miss");
    };
    let head = ResponseHead {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        freshness: Freshness {
            fresh_for: Duration::ZERO,
            stale_for: secs(60),
            age: Duration::ZERO,
        },
    };
    cache.store(&fill, &HeaderMap::new(), head, Bytes::from_static(b"old"));
    drop(fill);
    let Lookup::Stale(stored, Some(refresh)) =
        cache.lookup(&key, &version, &HeaderMap::new(), true)
    else {
        panic!("stale, and this request refreshes it");
    };
    assert_eq!(stored.body, "old");
    for _ in 0..3 {
        let Lookup::Stale(_, None) = cache.lookup(&key, &version, &HeaderMap::new(), true) else {
            panic!("stale, refreshed by the first only");
        };
    }
    store(&cache, &refresh, &HeaderMap::new(), &[], "new");
    drop(refresh);
    assert_eq!(hit_body(&cache, &version, &key).unwrap(), "new");
    let response = match cache.lookup(&key, &version, &HeaderMap::new(), false) {
        Lookup::Hit(stored) => stored.response(Instant::now() + secs(5)),
        _ => panic!("a hit"),
    };
    assert_eq!(response.headers()[header::AGE], "5");
}
