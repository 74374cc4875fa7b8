//! Outbound `wasi:http` requests: which hosts a route's guest may call.
//!
//! A route's sidecar lists `allowed_outbound_hosts` (default: none). Each
//! entry is `scheme://host[:port]` ([`OutboundHost`]); together they form an
//! [`AllowList`]. A request is allowed when its URI's scheme, host and port
//! match an entry *literally*: `0x7f.0.0.1`, `2130706433` or `127.1` are names
//! that match nothing unless listed that way, and a URI with userinfo
//! (`http://allowed.com@evil.com/`) matches nothing at all.
//!
//! Matching the URI is not enough: a listed name could resolve to an internal
//! address. [`send_request`] resolves the host itself and connects only to
//! addresses [`address::address_allowed`] accepts (the SSRF guard): never link-local
//! or a cloud metadata address, and loopback or private only when the entry
//! is that IP literal (or `localhost`, for loopback). Redirects are never
//! followed by the host; the guest sees them and may make a new request,
//! which is checked again.
//!
//! A route holds at most `max_outbound_connections` connections open at once
//! ([`ConnectionCap`], default [`DEFAULT_MAX_OUTBOUND_CONNECTIONS`]), and the
//! server runs at most [`limits::MAX_DNS_LOOKUPS`] lookups at once; a request over
//! either waits, until its connect deadline.

mod address;
mod entry;
mod limits;
mod send;

pub use entry::{InvalidOutboundHost, OutboundHost};
pub use limits::{ConnectionCap, DEFAULT_MAX_OUTBOUND_CONNECTIONS};
pub use send::send_request;

use entry::RequestTarget;

/// A route's `allowed_outbound_hosts`. Empty (the default) allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<OutboundHost>);

impl AllowList {
    /// Parses every entry; the first invalid one is the error.
    pub fn parse(entries: &[String]) -> Result<Self, InvalidOutboundHost> {
        entries
            .iter()
            .map(|entry| entry.parse())
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The entry allowing a request for `uri`, if any: scheme, host and port
    /// (explicit, or the scheme's default) as the URI writes them. A URI with
    /// userinfo is never allowed.
    pub fn allows(&self, uri: &http::Uri) -> Option<&OutboundHost> {
        let target = RequestTarget::from_uri(uri).ok()?;
        self.matching(&target)
    }

    pub(crate) fn matching(&self, target: &RequestTarget) -> Option<&OutboundHost> {
        self.0.iter().find(|entry| entry.matches(target))
    }

    /// The entries, in the order they were listed.
    pub fn entries(&self) -> &[OutboundHost] {
        &self.0
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::entry::InvalidReason;
    use super::*;

    #[test]
    fn a_uri_is_allowed_by_the_entry_it_matches_literally() {
        let allow = AllowList::parse(&[
            "https://api.example.com".to_owned(),
            "http://localhost:*".to_owned(),
        ])
        .unwrap();
        let uri: http::Uri = "https://API.example.com/v1/users".parse().unwrap();
        let entry = allow.allows(&uri).map(ToString::to_string);
        assert_eq!(entry.as_deref(), Some("https://api.example.com:443"));
        let plain: http::Uri = "http://api.example.com/".parse().unwrap();
        assert!(allow.allows(&plain).is_none());
    }

    fn allow(entries: &[&str]) -> AllowList {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        AllowList::parse(&entries).unwrap()
    }

    fn matched(allow: &AllowList, uri: &str) -> Option<String> {
        allow.allows(&uri.parse().unwrap()).map(ToString::to_string)
    }

    #[test]
    fn requests_match_by_scheme_host_and_port() {
        let cases: &[(&str, &str, bool)] = &[
            (
                "https://api.example.com",
                "https://api.example.com/v1?x=1",
                true,
            ),
            (
                "https://api.example.com",
                "https://api.example.com:443/",
                true,
            ),
            ("https://api.example.com", "https://API.Example.Com/", true),
            ("https://API.EXAMPLE.COM", "https://api.example.com/", true),
            ("https://api.example.com", "http://api.example.com/", false),
            (
                "https://api.example.com",
                "https://api.example.com:8443/",
                false,
            ),
            ("https://api.example.com", "https://example.com/", false),
            (
                "https://api.example.com",
                "https://www.api.example.com/",
                false,
            ),
            ("http://api.example.com", "http://api.example.com:80/", true),
            (
                "http://api.example.com",
                "http://api.example.com:443/",
                false,
            ),
            (
                "https://api.example.com:8443",
                "https://api.example.com:8443/",
                true,
            ),
            (
                "https://api.example.com:8443",
                "https://api.example.com/",
                false,
            ),
            ("http://localhost:*", "http://localhost:3000/", true),
            ("http://localhost:*", "http://localhost/", true),
            ("http://localhost:*", "http://LOCALHOST:1/", true),
            ("http://localhost:*", "https://localhost:3000/", false),
            ("http://localhost:*", "http://127.0.0.1:3000/", false),
            ("https://*.example.com", "https://a.example.com/", true),
            ("https://*.example.com", "https://a.b.example.com/", true),
            ("https://*.example.com", "https://A.EXAMPLE.COM/", true),
            ("https://*.example.com", "https://example.com/", false),
            ("https://*.example.com", "https://evilexample.com/", false),
            (
                "https://*.example.com",
                "https://a.example.com.evil.com/",
                false,
            ),
            (
                "https://*.example.com:*",
                "https://a.example.com:1234/",
                true,
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/", true),
            ("http://[::1]:3000", "http://[::1]:3000/", true),
            ("http://[::1]:3000", "http://[0:0::1]:3000/", true),
            ("http://[::1]:3000", "http://localhost:3000/", false),
        ];
        for &(entry, uri, expected) in cases {
            let allow = allow(&[entry]);
            assert_eq!(matched(&allow, uri).is_some(), expected, "{entry} vs {uri}");
        }
    }

    #[test]
    fn bypass_attempts_do_not_match_listed_hosts() {
        let allow = allow(&["http://127.0.0.1:8080", "https://api.example.com"]);
        let cases = [
            "http://0x7f.0.0.1:8080/",
            "http://2130706433:8080/",
            "http://127.1:8080/",
            "http://0177.0.0.1:8080/",
            "http://127.000.000.001:8080/",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://[::ffff:7f00:1]:8080/",
            "http://localhost:8080/",
            "http://127.0.0.1:8081/",
            "https://127.0.0.1:8080/",
            "http://api.example.com.evil.com/",
            "https://api.example.com.evil.com/",
            "https://api.example.com.:443/",
            "https://evil.com/api.example.com",
            "http://user@api.example.com/",
            "https://user@api.example.com/",
            "https://api.example.com@evil.com/",
            "https://api.example.com:443@evil.com/",
            "http://127.0.0.1:8080@evil.com/",
            "https://api.example.com:444/",
            "http://api.example.com/",
        ];
        for uri in cases {
            assert_eq!(matched(&allow, uri), None, "{uri} must not be allowed");
        }
        let uppercase = matched(&allow, "https://API.EXAMPLE.COM/");
        assert_eq!(uppercase.as_deref(), Some("https://api.example.com:443"));
    }

    #[test]
    fn the_first_matching_entry_is_returned() {
        let allow = allow(&["https://*.example.com", "https://api.example.com"]);
        assert_eq!(
            matched(&allow, "https://api.example.com/").as_deref(),
            Some("https://*.example.com:443")
        );
    }

    #[test]
    fn empty_allow_list_allows_nothing() {
        let allow = AllowList::default();
        assert!(allow.is_empty());
        for uri in [
            "http://localhost/",
            "https://api.example.com/",
            "http://127.0.0.1/",
        ] {
            assert_eq!(matched(&allow, uri), None, "{uri}");
        }
    }

    #[test]
    fn parse_reports_the_first_bad_entry() {
        let entries = [
            "https://api.example.com".to_owned(),
            "https://api.example.com/v1".to_owned(),
            "gopher://x".to_owned(),
        ];
        let err = AllowList::parse(&entries).unwrap_err();
        assert_eq!(err.entry, "https://api.example.com/v1");
        assert_eq!(err.reason, InvalidReason::Path);
    }
}
