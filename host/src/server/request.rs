//! What the host does to a client's request before a guest sees it.

use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Uri};

/// The matched pattern, e.g. `/api/users/[id]`.
pub const WEDGE_ROUTE: HeaderName = HeaderName::from_static("wedge-route");
/// The params, `application/x-www-form-urlencoded`, in pattern order.
pub const WEDGE_PARAMS: HeaderName = HeaderName::from_static("wedge-params");
/// The client's socket address (behind a trusted proxy, its IP address).
pub const WEDGE_CLIENT_ADDR: HeaderName = HeaderName::from_static("wedge-client-addr");

/// Hop-by-hop headers (RFC 9110 §7.6.1) and their relatives: they describe
/// the client's connection to Wedge, not the request, so a guest never sees them.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Headers a client's `Connection` header may not remove: the request needs
/// them end to end (without `Host` it has no authority), whatever a client
/// lists as hop-by-hop.
const END_TO_END: [HeaderName; 2] = [HOST, CONTENT_LENGTH];

/// Where a path with a trailing slash (other than `/`) is redirected: the
/// same path without it, query kept. Leading slashes are collapsed, and
/// backslashes escaped (browsers read `\` as `/`), so that neither
/// `//evil.example/` nor `/\evil.example/` can become a protocol-relative
/// `Location`.
pub fn trailing_slash_redirect(uri: &Uri) -> Option<String> {
    let path = uri.path();
    if path.len() <= 1 || !path.ends_with('/') {
        return None;
    }
    let trimmed = path.trim_matches('/').replace('\\', "%5C");
    let mut location = format!("/{trimmed}");
    if let Some(query) = uri.query() {
        location.push('?');
        location.push_str(query);
    }
    Some(location)
}

/// Replaces the client's `wedge-*` and hop-by-hop headers with the host's.
pub fn set_boundary_headers(
    headers: &mut HeaderMap,
    route: &str,
    params: &[(&str, String)],
    client: &str,
) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .filter(|name| !END_TO_END.contains(name))
        .collect();
    for name in listed
        .iter()
        .chain(&[WEDGE_ROUTE, WEDGE_PARAMS, WEDGE_CLIENT_ADDR])
    {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let route = HeaderValue::from_str(route)
        .expect("bug: route patterns are checked for control characters when loaded");
    headers.insert(WEDGE_ROUTE, route);
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        encoded.append_pair(name, value);
    }
    let encoded = HeaderValue::try_from(encoded.finish())
        .expect("bug: form-urlencoded text is always a valid header value");
    headers.insert(WEDGE_PARAMS, encoded);
    headers.insert(
        WEDGE_CLIENT_ADDR,
        HeaderValue::try_from(client).expect("bug: a socket address is ASCII"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_redirects_keep_the_query_and_stay_on_this_host() {
        let cases = [
            ("/", None),
            ("/hello", None),
            ("/hello/", Some("/hello")),
            ("/hello//", Some("/hello")),
            ("/a/b/?x=1&y", Some("/a/b?x=1&y")),
            ("//evil.example/", Some("/evil.example")),
            ("/\\evil.example/", Some("/%5Cevil.example")),
            ("/\\/evil.example/", Some("/%5C/evil.example")),
            ("/?q", None),
        ];
        for (uri, expected) in cases {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(
                trailing_slash_redirect(&uri).as_deref(),
                expected,
                "uri {uri}"
            );
        }
    }

    #[test]
    fn client_boundary_and_hop_by_hop_headers_are_replaced() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("wedge-params", "id=spoofed"),
            ("wedge-route", "/spoofed"),
            ("wedge-client-addr", "1.2.3.4:5"),
            ("connection", "keep-alive, x-private, host, content-length"),
            ("host", "example.com"),
            ("content-length", "0"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("accept", "text/html"),
        ] {
            headers.append(name, value.parse().unwrap());
        }
        set_boundary_headers(
            &mut headers,
            "/u/[id]",
            &[("id", "a b/c".into())],
            "127.0.0.1:4000",
        );
        assert_eq!(headers["wedge-params"], "id=a+b%2Fc");
        assert_eq!(headers["wedge-route"], "/u/[id]");
        assert_eq!(headers["wedge-client-addr"], "127.0.0.1:4000");
        assert_eq!(headers["accept"], "text/html");
        assert_eq!(headers["host"], "example.com");
        assert_eq!(headers["content-length"], "0");
        for gone in ["connection", "x-private", "keep-alive", "te"] {
            assert!(!headers.contains_key(gone), "{gone} kept");
        }
        assert_eq!(headers.len(), 6);
    }
}
