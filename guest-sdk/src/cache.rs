//! [`CacheControl`]: say who may cache a response, and for how long.

use std::fmt;

use http::HeaderValue;
use http::header::CACHE_CONTROL;

use crate::response::{Response, ResponsePart};

/// A `Cache-Control` header value, built from its directives, set on a
/// response by putting it before the body: `(CacheControl::…, body)` (it
/// is a [`ResponsePart`]).
///
/// Wedge keeps a shared response cache in front of the routes, which
/// honours `public`, `max-age`, `s-maxage`, `stale-while-revalidate`,
/// `private`, `no-store` and `Vary`, as a CDN does:
///
/// | header | Wedge's cache | browsers |
/// |---|---|---|
/// | `public, s-maxage=60, stale-while-revalidate=30` | serves it for 60 s, then serves the stale copy for up to 30 s more while one request refreshes it | revalidate each time |
/// | `public, max-age=60` | 60 s | 60 s |
/// | `private, max-age=60` | never | 60 s |
/// | `no-store` | never | never |
///
/// Durations are whole seconds, as the header counts them. Directives are
/// written in a fixed order: `public`/`private`, `no-cache`, `no-store`,
/// `max-age`, `s-maxage`, `stale-while-revalidate`, `stale-if-error`,
/// `must-revalidate`, `immutable`.
///
/// ```
/// use wedge_sdk::{CacheControl, IntoResponse, Json};
///
/// async fn quote() -> impl IntoResponse {
///     let cache = CacheControl::public().s_maxage(60).stale_while_revalidate(30);
///     (cache, Json("The best way out is always through."))
/// }
///
/// let cache = CacheControl::public().s_maxage(60).stale_while_revalidate(30);
/// assert_eq!(cache.to_string(), "public, s-maxage=60, stale-while-revalidate=30");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "a CacheControl does nothing until it is returned with the response"]
pub struct CacheControl {
    visibility: Option<Visibility>,
    no_cache: bool,
    no_store: bool,
    max_age: Option<u32>,
    s_maxage: Option<u32>,
    stale_while_revalidate: Option<u32>,
    stale_if_error: Option<u32>,
    must_revalidate: bool,
    immutable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    Public,
    Private,
}

impl CacheControl {
    /// `public`: shared caches (Wedge's, a CDN) may store it. Give it a
    /// lifetime with [`s_maxage`](CacheControl::s_maxage) (shared caches
    /// only) or [`max_age`](CacheControl::max_age) (browsers too).
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// assert_eq!(CacheControl::public().max_age(300).to_string(), "public, max-age=300");
    /// ```
    pub fn public() -> CacheControl {
        CacheControl {
            visibility: Some(Visibility::Public),
            ..CacheControl::default()
        }
    }

    /// `private`: for one user (it depends on a cookie, say): browsers may
    /// keep it, shared caches, Wedge's included, never do.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// assert_eq!(CacheControl::private().max_age(60).to_string(), "private, max-age=60");
    /// ```
    pub fn private() -> CacheControl {
        CacheControl {
            visibility: Some(Visibility::Private),
            ..CacheControl::default()
        }
    }

    /// `no-store`: nobody keeps a copy; each request reaches the handler.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// assert_eq!(CacheControl::no_store().to_string(), "no-store");
    /// ```
    pub fn no_store() -> CacheControl {
        CacheControl {
            no_store: true,
            ..CacheControl::default()
        }
    }

    /// `no-cache`: caches may keep a copy but must revalidate it before
    /// each use.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// assert_eq!(CacheControl::no_cache().to_string(), "no-cache");
    /// ```
    pub fn no_cache() -> CacheControl {
        CacheControl {
            no_cache: true,
            ..CacheControl::default()
        }
    }

    /// `max-age=seconds`: fresh for that long, in browsers and (if
    /// `public`) shared caches.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// assert_eq!(CacheControl::default().max_age(5).to_string(), "max-age=5");
    /// ```
    pub fn max_age(mut self, seconds: u32) -> CacheControl {
        self.max_age = Some(seconds);
        self
    }

    /// `s-maxage=seconds`: fresh for that long in shared caches (Wedge's, a
    /// CDN), overriding `max-age` there; browsers ignore it.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// assert_eq!(CacheControl::public().s_maxage(10).to_string(), "public, s-maxage=10");
    /// ```
    pub fn s_maxage(mut self, seconds: u32) -> CacheControl {
        self.s_maxage = Some(seconds);
        self
    }

    /// `stale-while-revalidate=seconds`: once stale, a cache may still
    /// answer with it for that long while it fetches a fresh copy in the
    /// background.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// let cache = CacheControl::public().s_maxage(10).stale_while_revalidate(30);
    /// assert_eq!(cache.to_string(), "public, s-maxage=10, stale-while-revalidate=30");
    /// ```
    pub fn stale_while_revalidate(mut self, seconds: u32) -> CacheControl {
        self.stale_while_revalidate = Some(seconds);
        self
    }

    /// `stale-if-error=seconds`: once stale, a cache may still answer with
    /// it for that long if fetching a fresh one fails.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// assert_eq!(CacheControl::public().max_age(60).stale_if_error(600).to_string(), "public, max-age=60, stale-if-error=600");
    /// ```
    pub fn stale_if_error(mut self, seconds: u32) -> CacheControl {
        self.stale_if_error = Some(seconds);
        self
    }

    /// `must-revalidate`: once stale, a cache must not use it without
    /// revalidating.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// assert_eq!(CacheControl::private().max_age(0).must_revalidate().to_string(), "private, max-age=0, must-revalidate");
    /// ```
    pub fn must_revalidate(mut self) -> CacheControl {
        self.must_revalidate = true;
        self
    }

    /// `immutable`: it never changes while fresh (a file whose URL holds
    /// its content hash), so browsers do not revalidate it on reload.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// let cache = CacheControl::public().max_age(31_536_000).immutable();
    /// assert_eq!(cache.to_string(), "public, max-age=31536000, immutable");
    /// ```
    pub fn immutable(mut self) -> CacheControl {
        self.immutable = true;
        self
    }

    /// The header value.
    ///
    /// ```
    /// # use wedge_sdk::CacheControl;
    /// assert_eq!(CacheControl::no_store().to_header_value(), "no-store");
    /// ```
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::try_from(self.to_string())
            .expect("bug: Cache-Control directives are ASCII tokens and numbers")
    }
}

impl fmt::Display for CacheControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut directives: Vec<String> = Vec::new();
        match self.visibility {
            Some(Visibility::Public) => directives.push("public".into()),
            Some(Visibility::Private) => directives.push("private".into()),
            None => {}
        }
        let flags = [(self.no_cache, "no-cache"), (self.no_store, "no-store")];
        directives.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| (*name).into()),
        );
        let durations = [
            ("max-age", self.max_age),
            ("s-maxage", self.s_maxage),
            ("stale-while-revalidate", self.stale_while_revalidate),
            ("stale-if-error", self.stale_if_error),
        ];
        for (name, seconds) in durations {
            if let Some(seconds) = seconds {
                directives.push(format!("{name}={seconds}"));
            }
        }
        let flags = [
            (self.must_revalidate, "must-revalidate"),
            (self.immutable, "immutable"),
        ];
        directives.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| (*name).into()),
        );
        f.write_str(&directives.join(", "))
    }
}

impl ResponsePart for CacheControl {
    fn apply(self, response: &mut Response) {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, self.to_header_value());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IntoResponse as _;

    #[test]
    fn directives_render_in_a_fixed_order() {
        let cases = [
            (
                CacheControl::public()
                    .s_maxage(60)
                    .stale_while_revalidate(30),
                "public, s-maxage=60, stale-while-revalidate=30",
            ),
            (CacheControl::private(), "private"),
            (CacheControl::no_store(), "no-store"),
            (CacheControl::no_cache().max_age(0), "no-cache, max-age=0"),
            (
                CacheControl::public().immutable().max_age(31_536_000),
                "public, max-age=31536000, immutable",
            ),
            (
                CacheControl::public()
                    .must_revalidate()
                    .stale_if_error(1)
                    .stale_while_revalidate(2)
                    .s_maxage(3)
                    .max_age(4),
                "public, max-age=4, s-maxage=3, stale-while-revalidate=2, stale-if-error=1, must-revalidate",
            ),
            (CacheControl::default(), ""),
        ];
        for (cache, header) in cases {
            assert_eq!(cache.to_string(), header);
        }
    }

    #[test]
    fn it_sets_the_header_of_the_response_it_is_returned_with() {
        let response = (CacheControl::private().max_age(60), "mine").into_response();
        assert_eq!(response.headers()[CACHE_CONTROL], "private, max-age=60");
        assert_eq!(crate::response::tests::body_text(response), "mine");

        let mut built = http::Response::builder()
            .header(CACHE_CONTROL, "public, max-age=9")
            .body(crate::Body::empty())
            .expect("a response");
        CacheControl::no_store().apply(&mut built);
        let all: Vec<_> = built.headers().get_all(CACHE_CONTROL).iter().collect();
        assert_eq!(all, ["no-store"], "it replaces, never adds");
    }
}
