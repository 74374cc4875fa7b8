//! Route params, as Wedge passes them in the `wedge-params` header, and a
//! catch-all's segments.

use http::HeaderMap;
use percent_encoding::percent_decode_str;

use crate::PARAMS_HEADER;

/// The values of a route's params, in the order the pattern names them.
///
/// For `/blog/[...slug]` serving `/blog/2024/hello%20world`, `slug` is
/// `2024/hello world`: values arrive percent-decoded, and a catch-all's value
/// is its segments joined with `/`. A `[[...optional]]` param at its bare
/// path (`/docs` for `/docs/[[...slug]]`) is absent.
///
/// ```
/// use wedge_sdk::{Request, RequestExt as _};
///
/// fn describe(request: &Request) -> String {
///     let params = request.params();
///     params.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(" ")
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Reads the params from the `wedge-params` header of `headers`; none if
    /// the header is absent.
    ///
    /// ```
    /// use wedge_sdk::{Params, http::HeaderMap};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("wedge-params", "id=42".parse().unwrap());
    /// assert_eq!(Params::from_headers(&headers).get("id"), Some("42"));
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let Some(value) = headers.get(PARAMS_HEADER) else {
            return Self::default();
        };
        let pairs = form_urlencoded::parse(value.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Self { pairs }
    }

    /// The value of the param called `name`, if the route has it.
    ///
    /// ```
    /// use wedge_sdk::{Params, http::HeaderMap};
    ///
    /// assert_eq!(Params::from_headers(&HeaderMap::new()).get("id"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(param, _)| param == name)
            .map(|(_, value)| value.as_str())
    }

    /// Each param's name and value, in pattern order.
    ///
    /// ```
    /// use wedge_sdk::{Params, http::HeaderMap};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("wedge-params", "cat=toys&item=car".parse().unwrap());
    /// let params = Params::from_headers(&headers);
    /// let names: Vec<_> = params.iter().map(|(name, _)| name).collect();
    /// assert_eq!(names, ["cat", "item"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Whether the route matched without params (a static route, or a bare
    /// `[[...optional]]`).
    ///
    /// ```
    /// use wedge_sdk::{Params, http::HeaderMap};
    ///
    /// assert!(Params::from_headers(&HeaderMap::new()).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// The segments of catch-all `name` in `path`, each percent-decoded on its
/// own, so that an encoded `/` (`%2F`) stays inside its segment. `None` when
/// `route` has no catch-all called `name`.
///
/// The host's `wedge-params` joins the decoded segments with `/`, which
/// loses that distinction; the path and the pattern keep it.
pub(crate) fn catch_all_segments(route: &str, path: &str, name: &str) -> Option<Vec<String>> {
    let position = route
        .split('/')
        .filter(|s| !s.is_empty())
        .position(|segment| {
            let inner = segment
                .strip_prefix("[[...")
                .and_then(|s| s.strip_suffix("]]"))
                .or_else(|| {
                    segment
                        .strip_prefix("[...")
                        .and_then(|s| s.strip_suffix(']'))
                });
            inner == Some(name)
        })?;
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(position)
        .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
        .collect();
    Some(segments)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn catch_all_segments_come_from_the_path_after_the_pattern_prefix() {
        let cases: &[(&str, &str, &str, Option<&[&str]>)] = &[
            (
                "/blog/[...slug]",
                "/blog/2024/hello",
                "slug",
                Some(&["2024", "hello"]),
            ),
            (
                "/blog/[...slug]",
                "/blog/a%2Fb/c%20d",
                "slug",
                Some(&["a/b", "c d"]),
            ),
            ("/docs/[[...slug]]", "/docs", "slug", Some(&[])),
            ("/[[...all]]", "/", "all", Some(&[])),
            ("/[[...all]]", "/x/y", "all", Some(&["x", "y"])),
            (
                "/shop/[cat]/[...rest]",
                "/shop/toys/a/b",
                "rest",
                Some(&["a", "b"]),
            ),
            ("/shop/[cat]/[...rest]", "/shop/toys/a/b", "cat", None),
            ("/blog/[...slug]", "/blog/x", "other", None),
        ];
        for &(route, path, name, expected) in cases {
            let expected = expected.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(
                catch_all_segments(route, path, name),
                expected,
                "{route} {path} {name}"
            );
        }
    }

    fn params(header: &'static str) -> Params {
        let mut headers = HeaderMap::new();
        headers.insert(PARAMS_HEADER, HeaderValue::from_static(header));
        Params::from_headers(&headers)
    }

    #[test]
    fn absent_header_means_no_params() {
        let params = Params::from_headers(&HeaderMap::new());
        assert!(params.is_empty());
        assert_eq!(params.get("id"), None);
    }

    #[test]
    fn values_are_decoded_as_form_urlencoding() {
        let params = params("slug=2024%2Fhello+world%21&page=%C3%A9t%C3%A9");
        assert_eq!(params.get("slug"), Some("2024/hello world!"));
        assert_eq!(params.get("page"), Some("été"));
    }

    #[test]
    fn params_keep_pattern_order() {
        let params = params("cat=shoes&item=42");
        let pairs: Vec<_> = params.iter().collect();
        assert_eq!(pairs, [("cat", "shoes"), ("item", "42")]);
    }

    #[test]
    fn empty_value_is_present_but_empty() {
        assert_eq!(params("id=").get("id"), Some(""));
    }

    #[test]
    fn names_are_case_sensitive() {
        assert_eq!(params("id=1").get("ID"), None);
    }
}
