//! Route params, as Wedge passes them in the `wedge-params` header.

use http::HeaderMap;

use crate::PARAMS_HEADER;

/// The values of a route's params, in the order the pattern names them.
///
/// For `/blog/[...slug]` serving `/blog/2024/hello%20world`, `slug` is
/// `2024/hello world`: values arrive percent-decoded, and a catch-all's value
/// is its segments joined with `/`. A `[[...optional]]` param at its bare
/// path (`/docs` for `/docs/[[...slug]]`) is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Reads the params from the `wedge-params` header of `headers`; none if
    /// the header is absent.
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
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(param, _)| param == name)
            .map(|(_, value)| value.as_str())
    }

    /// Each param's name and value, in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Whether the route matched without params (a static route, or a bare
    /// `[[...optional]]`).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

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
