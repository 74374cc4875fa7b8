//! One `allowed_outbound_hosts` entry, parsed, and the request target it is
//! matched against.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The scheme of an entry or request: only `http` and `https` exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboundScheme {
    /// `http://`, port 80 unless given.
    Http,
    /// `https://`, port 443 unless given.
    Https,
}

impl OutboundScheme {
    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// Schemes are case-insensitive (RFC 3986 §3.1).
    fn parse(scheme: &str) -> Option<Self> {
        if scheme.eq_ignore_ascii_case("http") {
            Some(Self::Http)
        } else if scheme.eq_ignore_ascii_case("https") {
            Some(Self::Https)
        } else {
            None
        }
    }
}

/// The host part of an entry. Which kind it is decides what the SSRF guard
/// lets it connect to (see [`address_allowed`](super::address_allowed)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// An IP literal (`127.0.0.1`, `[::1]`): matches a request naming that
    /// address as an IP literal, and may connect to it even when it is
    /// loopback or private.
    Ip(IpAddr),
    /// `localhost`: matches the name `localhost` and may connect to loopback.
    Localhost,
    /// A host name, lowercased: matches exactly that name, in any case.
    Name(String),
    /// `*.example.com`, kept as `example.com`: any name ending in
    /// `.example.com`, but not `example.com` itself.
    AnySubdomainOf(String),
}

/// The port part of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortPattern {
    /// This port only; an entry without a port means its scheme's default.
    Exact(u16),
    /// `:*`: any port.
    Any,
}

/// One `allowed_outbound_hosts` entry: `scheme://host[:port]`.
///
/// Parsed with [`FromStr`]: `https://api.example.com`, `http://127.0.0.1:8080`,
/// `https://*.example.com`, `http://localhost:*`, `http://[::1]:3000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutboundHost {
    scheme: OutboundScheme,
    host: HostPattern,
    port: PortPattern,
}

impl OutboundHost {
    /// The scheme a request must use.
    pub fn scheme(&self) -> OutboundScheme {
        self.scheme
    }

    /// The host a request must name.
    pub fn host(&self) -> &HostPattern {
        &self.host
    }

    /// The port a request must use, explicitly or by its scheme's default.
    pub fn port(&self) -> PortPattern {
        self.port
    }

    /// Whether a request for `target` is covered by this entry.
    pub(crate) fn matches(&self, target: &RequestTarget) -> bool {
        let port_matches = match self.port {
            PortPattern::Exact(port) => port == target.port,
            PortPattern::Any => true,
        };
        let host_matches = match (&self.host, &target.host) {
            // Compared as addresses, not text: `[::1]` and `[0::1]` are one
            // address, while `127.0.0.1` and `[::ffff:127.0.0.1]` are two
            // different literals and stay apart.
            (HostPattern::Ip(listed), TargetHost::Ip(asked)) => listed == asked,
            (HostPattern::Localhost, TargetHost::Name(asked)) => {
                asked.eq_ignore_ascii_case("localhost")
            }
            (HostPattern::Name(listed), TargetHost::Name(asked)) => {
                listed.eq_ignore_ascii_case(asked)
            }
            (HostPattern::AnySubdomainOf(domain), TargetHost::Name(asked)) => {
                is_subdomain_of(asked, domain)
            }
            _ => false,
        };
        self.scheme == target.scheme && port_matches && host_matches
    }
}

/// `a.example.com` and `a.b.example.com` are under `example.com`;
/// `example.com` and `evilexample.com` are not.
fn is_subdomain_of(name: &str, domain: &str) -> bool {
    let Some(split) = name.len().checked_sub(domain.len() + 1) else {
        return false;
    };
    let (prefix, suffix) = name.split_at(split);
    let Some(suffix) = suffix.strip_prefix('.') else {
        return false;
    };
    !prefix.is_empty() && !prefix.ends_with('.') && suffix.eq_ignore_ascii_case(domain)
}

impl fmt::Display for OutboundHost {
    /// Always with the port, so a log line says exactly what is allowed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            HostPattern::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostPattern::Localhost => f.write_str("localhost")?,
            HostPattern::Name(name) => f.write_str(name)?,
            HostPattern::AnySubdomainOf(domain) => write!(f, "*.{domain}")?,
        }
        match self.port {
            PortPattern::Exact(port) => write!(f, ":{port}"),
            PortPattern::Any => f.write_str(":*"),
        }
    }
}

/// An `allowed_outbound_hosts` entry that is not `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid allowed_outbound_hosts entry {entry:?}: {reason}; expected \
     scheme://host[:port] with scheme http or https, e.g. \"https://api.example.com\", \
     \"http://127.0.0.1:8080\", \"https://*.example.com\", \"http://localhost:*\" \
     or \"http://[::1]:3000\""
)]
pub struct InvalidOutboundHost {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: InvalidReason,
}

/// Why an entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    /// No `://`.
    #[error("it has no scheme (write http:// or https:// before the host)")]
    MissingScheme,
    /// A scheme other than `http` or `https`.
    #[error("scheme {0:?} is not supported, only http and https are")]
    UnsupportedScheme(String),
    /// Whitespace anywhere in the entry.
    #[error("it contains whitespace")]
    Whitespace,
    /// A `/`, `?` or `#` after the host.
    #[error("it has a path, query or fragment (not even a trailing `/` is allowed)")]
    Path,
    /// `user@` or `user:password@` before the host.
    #[error("it has userinfo (`user@`), which is never allowed")]
    Userinfo,
    /// Nothing between `://` and the port.
    #[error("it has no host")]
    EmptyHost,
    /// A host of `*`.
    #[error("a `*` host would allow every host; list hosts, or use `*.domain` for subdomains")]
    AnyHost,
    /// A `*` anywhere but a leading `*.` label or the whole port.
    #[error("`*` is only allowed as a leading `*.` in the host or as the whole port (`:*`)")]
    MisplacedWildcard,
    /// An IPv6 address without brackets.
    #[error("IPv6 addresses must be in brackets, e.g. http://[::1]:8080")]
    UnbracketedIpv6,
    /// Not a host name, IPv4 address or bracketed IPv6 address.
    #[error("host {0:?} is not a host name, IPv4 address or bracketed IPv6 address")]
    InvalidHost(String),
    /// A port that is not `*` or 1 to 65535.
    #[error("port {0:?} is not `*` or a number from 1 to 65535")]
    InvalidPort(String),
}

impl FromStr for OutboundHost {
    type Err = InvalidOutboundHost;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        parse_entry(entry).map_err(|reason| InvalidOutboundHost {
            entry: entry.to_owned(),
            reason,
        })
    }
}

fn parse_entry(entry: &str) -> Result<OutboundHost, InvalidReason> {
    if entry.chars().any(char::is_whitespace) {
        return Err(InvalidReason::Whitespace);
    }
    let (scheme, authority) = entry
        .split_once("://")
        .ok_or(InvalidReason::MissingScheme)?;
    let scheme = OutboundScheme::parse(scheme)
        .ok_or_else(|| InvalidReason::UnsupportedScheme(scheme.to_owned()))?;
    if authority.contains(['/', '?', '#']) {
        return Err(InvalidReason::Path);
    }
    if authority.contains('@') {
        return Err(InvalidReason::Userinfo);
    }
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        None => PortPattern::Exact(scheme.default_port()),
        Some("*") => PortPattern::Any,
        Some(port) => PortPattern::Exact(parse_port(port)?),
    };
    Ok(OutboundHost { scheme, host, port })
}

/// `host[:port]`, where an IPv6 host is bracketed.
fn split_host_port(authority: &str) -> Result<(HostPattern, Option<&str>), InvalidReason> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let invalid = || InvalidReason::InvalidHost(authority.to_owned());
        let (ip, rest) = bracketed.split_once(']').ok_or_else(invalid)?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| invalid())?;
        let port = match rest {
            "" => None,
            rest => Some(rest.strip_prefix(':').ok_or_else(invalid)?),
        };
        return Ok((HostPattern::Ip(IpAddr::V6(ip)), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((_, port)) if port.contains(':') => return Err(InvalidReason::UnbracketedIpv6),
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    Ok((parse_host(host)?, port))
}

fn parse_host(host: &str) -> Result<HostPattern, InvalidReason> {
    if host.is_empty() {
        return Err(InvalidReason::EmptyHost);
    }
    if host == "*" {
        return Err(InvalidReason::AnyHost);
    }
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            return Err(InvalidReason::MisplacedWildcard);
        }
        if !is_host_name(domain) {
            return Err(InvalidReason::InvalidHost(host.to_owned()));
        }
        return Ok(HostPattern::AnySubdomainOf(domain.to_ascii_lowercase()));
    }
    if host.contains('*') {
        return Err(InvalidReason::MisplacedWildcard);
    }
    // Strict dotted-quad only: `127.1` or `0x7f.0.0.1` stay names, exactly as
    // they stay names when a request's URI is matched.
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(HostPattern::Ip(IpAddr::V4(ip)));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(HostPattern::Localhost);
    }
    if !is_host_name(host) {
        return Err(InvalidReason::InvalidHost(host.to_owned()));
    }
    Ok(HostPattern::Name(host.to_ascii_lowercase()))
}

/// Dot-separated labels of letters, digits, `-` and `_`, within DNS lengths.
/// No trailing dot: `example.com.` would never match a request for
/// `example.com`, so it is refused rather than silently useless.
fn is_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn parse_port(port: &str) -> Result<u16, InvalidReason> {
    let invalid = || InvalidReason::InvalidPort(port.to_owned());
    // `u16::from_str` would also take `+80`.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid()),
        Ok(port) => Ok(port),
    }
}

/// What a request's URI asks to connect to, taken literally from the URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestTarget {
    pub(crate) scheme: OutboundScheme,
    pub(crate) host: TargetHost,
    /// Explicit in the URI, or the scheme's default.
    pub(crate) port: u16,
}

/// A request's host: an IP literal, or anything else as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetHost {
    /// A dotted-quad IPv4 or a bracketed IPv6 literal.
    Ip(IpAddr),
    /// Everything else, including `127.1`, `2130706433` and `0x7f.0.0.1`:
    /// they are names here, and only match a name listed the same way.
    Name(String),
}

/// Why a URI names no target at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// No scheme, or one other than http and https.
    UnsupportedScheme,
    /// No authority (a relative URI).
    NoAuthority,
    /// `user@host`: refused outright, as it only ever hides the real host.
    Userinfo,
}

impl RequestTarget {
    pub(crate) fn from_uri(uri: &http::Uri) -> Result<Self, TargetError> {
        let scheme = uri
            .scheme_str()
            .and_then(OutboundScheme::parse)
            .ok_or(TargetError::UnsupportedScheme)?;
        let authority = uri.authority().ok_or(TargetError::NoAuthority)?;
        if authority.as_str().contains('@') {
            return Err(TargetError::Userinfo);
        }
        let host = authority.host();
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => match v6.parse::<Ipv6Addr>() {
                Ok(ip) => TargetHost::Ip(IpAddr::V6(ip)),
                Err(_) => TargetHost::Name(host.to_owned()),
            },
            None => match host.parse::<Ipv4Addr>() {
                Ok(ip) => TargetHost::Ip(IpAddr::V4(ip)),
                Err(_) => TargetHost::Name(host.to_owned()),
            },
        };
        let port = authority
            .port_u16()
            .unwrap_or_else(|| scheme.default_port());
        Ok(Self { scheme, host, port })
    }

    /// The entry that would allow this target: the port only when it is not
    /// the scheme's default.
    pub(crate) fn suggested_entry(&self) -> String {
        let host = self.host_for_url();
        if self.port == self.scheme.default_port() {
            format!("{}://{host}", self.scheme.as_str())
        } else {
            format!("{}://{host}:{}", self.scheme.as_str(), self.port)
        }
    }

    fn host_for_url(&self) -> String {
        match &self.host {
            TargetHost::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            TargetHost::Ip(IpAddr::V4(ip)) => ip.to_string(),
            TargetHost::Name(name) => name.clone(),
        }
    }
}

impl fmt::Display for RequestTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host_for_url();
        write!(f, "{}://{host}:{}", self.scheme.as_str(), self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> HostPattern {
        HostPattern::Ip(text.parse().unwrap())
    }

    fn name(text: &str) -> HostPattern {
        HostPattern::Name(text.to_owned())
    }

    #[test]
    fn valid_entries_parse_to_scheme_host_and_port() {
        use OutboundScheme::{Http, Https};
        use PortPattern::{Any, Exact};
        let cases = [
            (
                "https://api.example.com",
                Https,
                name("api.example.com"),
                Exact(443),
            ),
            (
                "http://api.example.com",
                Http,
                name("api.example.com"),
                Exact(80),
            ),
            (
                "https://API.Example.COM:8443",
                Https,
                name("api.example.com"),
                Exact(8443),
            ),
            (
                "HTTPS://api.example.com",
                Https,
                name("api.example.com"),
                Exact(443),
            ),
            ("http://127.0.0.1:8080", Http, ip("127.0.0.1"), Exact(8080)),
            ("http://[::1]:3000", Http, ip("::1"), Exact(3000)),
            (
                "https://[2001:db8::1]",
                Https,
                ip("2001:db8::1"),
                Exact(443),
            ),
            (
                "http://[::ffff:127.0.0.1]:80",
                Http,
                ip("::ffff:127.0.0.1"),
                Exact(80),
            ),
            ("http://localhost:*", Http, HostPattern::Localhost, Any),
            ("http://LocalHost", Http, HostPattern::Localhost, Exact(80)),
            (
                "https://*.example.com",
                Https,
                HostPattern::AnySubdomainOf("example.com".to_owned()),
                Exact(443),
            ),
            (
                "http://my_service-1:65535",
                Http,
                name("my_service-1"),
                Exact(65535),
            ),
            // Not dotted quads, so names: they match only themselves.
            ("http://127.1:8080", Http, name("127.1"), Exact(8080)),
            ("http://2130706433", Http, name("2130706433"), Exact(80)),
        ];
        for (entry, scheme, host, port) in cases {
            let parsed: OutboundHost = entry.parse().unwrap_or_else(|e| panic!("{entry}: {e}"));
            assert_eq!(parsed, OutboundHost { scheme, host, port }, "{entry}");
        }
    }

    #[test]
    fn invalid_entries_are_rejected_with_the_reason() {
        use InvalidReason::*;
        let cases = [
            ("api.example.com", MissingScheme),
            ("//api.example.com", MissingScheme),
            ("ftp://api.example.com", UnsupportedScheme("ftp".to_owned())),
            ("ws://api.example.com", UnsupportedScheme("ws".to_owned())),
            ("https:// api.example.com", Whitespace),
            ("https://api.example.com/", Path),
            ("https://api.example.com/v1", Path),
            ("https://api.example.com?x=1", Path),
            ("https://api.example.com#top", Path),
            ("https://user@api.example.com", Userinfo),
            ("https://user:pw@api.example.com", Userinfo),
            ("https://", EmptyHost),
            ("https://:443", EmptyHost),
            ("https://*", AnyHost),
            ("https://*:*", AnyHost),
            ("https://api.*.com", MisplacedWildcard),
            ("https://*api.example.com", MisplacedWildcard),
            ("https://*.*.example.com", MisplacedWildcard),
            ("https://api.example.*", MisplacedWildcard),
            ("http://::1", UnbracketedIpv6),
            ("http://fe80::1:8080", UnbracketedIpv6),
            ("http://[::1", InvalidHost("[::1".to_owned())),
            ("http://[127.0.0.1]", InvalidHost("[127.0.0.1]".to_owned())),
            ("http://[::1]8080", InvalidHost("[::1]8080".to_owned())),
            (
                "http://api..example.com",
                InvalidHost("api..example.com".to_owned()),
            ),
            (
                "http://example.com.",
                InvalidHost("example.com.".to_owned()),
            ),
            ("http://*.", InvalidHost("*.".to_owned())),
            (
                "http://exa%6dple.com",
                InvalidHost("exa%6dple.com".to_owned()),
            ),
            ("http://api.example.com:", InvalidPort(String::new())),
            ("http://api.example.com:0", InvalidPort("0".to_owned())),
            (
                "http://api.example.com:65536",
                InvalidPort("65536".to_owned()),
            ),
            ("http://api.example.com:+80", InvalidPort("+80".to_owned())),
            ("http://api.example.com:8*", InvalidPort("8*".to_owned())),
            (
                "http://api.example.com:http",
                InvalidPort("http".to_owned()),
            ),
        ];
        for (entry, reason) in cases {
            let err = entry.parse::<OutboundHost>().expect_err(entry);
            assert_eq!(err.reason, reason, "{entry}");
            assert_eq!(err.entry, entry);
        }
    }

    #[test]
    fn error_message_names_the_entry_and_what_is_allowed() {
        let message = "ftp://files.example.com"
            .parse::<OutboundHost>()
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"ftp://files.example.com\""), "{message}");
        assert!(message.contains("only http and https"), "{message}");
        assert!(message.contains("scheme://host[:port]"), "{message}");
    }

    #[test]
    fn display_shows_the_port_and_parses_back_to_the_same_entry() {
        let cases = [
            ("https://api.example.com", "https://api.example.com:443"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("https://*.Example.com", "https://*.example.com:443"),
            ("http://localhost:*", "http://localhost:*"),
            ("http://10.0.0.1", "http://10.0.0.1:80"),
        ];
        for (entry, shown) in cases {
            let parsed: OutboundHost = entry.parse().unwrap();
            assert_eq!(parsed.to_string(), shown);
            assert_eq!(shown.parse::<OutboundHost>().unwrap(), parsed);
        }
    }

    #[test]
    fn subdomain_check_needs_a_whole_label_before_the_domain() {
        let cases = [
            ("a.example.com", true),
            ("a.b.example.com", true),
            ("A.EXAMPLE.COM", true),
            ("example.com", false),
            (".example.com", false),
            ("a..example.com", false),
            ("evilexample.com", false),
            ("example.com.evil.com", false),
            ("com", false),
        ];
        for (name, expected) in cases {
            assert_eq!(is_subdomain_of(name, "example.com"), expected, "{name}");
        }
    }

    #[test]
    fn request_targets_take_host_and_port_literally_from_the_uri() {
        let cases = [
            (
                "https://api.example.com/x",
                OutboundScheme::Https,
                "api.example.com",
                443,
            ),
            (
                "http://api.example.com:8080",
                OutboundScheme::Http,
                "api.example.com",
                8080,
            ),
            (
                "http://0x7f.0.0.1:8080",
                OutboundScheme::Http,
                "0x7f.0.0.1",
                8080,
            ),
            ("http://2130706433/", OutboundScheme::Http, "2130706433", 80),
            ("http://127.1:8080", OutboundScheme::Http, "127.1", 8080),
        ];
        for (uri, scheme, host, port) in cases {
            let target = RequestTarget::from_uri(&uri.parse().unwrap()).unwrap();
            let expected = RequestTarget {
                scheme,
                host: TargetHost::Name(host.to_owned()),
                port,
            };
            assert_eq!(target, expected, "{uri}");
        }
        let v6 = RequestTarget::from_uri(&"http://[::ffff:127.0.0.1]:8080".parse().unwrap());
        assert_eq!(
            v6.unwrap().host,
            TargetHost::Ip("::ffff:127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn uris_without_a_usable_target_are_refused() {
        let cases = [
            ("http://user@api.example.com/", TargetError::Userinfo),
            ("http://allowed.com@evil.com/", TargetError::Userinfo),
            ("http://a:b@evil.com:8080/", TargetError::Userinfo),
            ("ftp://api.example.com/", TargetError::UnsupportedScheme),
            ("/relative/path", TargetError::UnsupportedScheme),
        ];
        for (uri, expected) in cases {
            let err = RequestTarget::from_uri(&uri.parse().unwrap()).unwrap_err();
            assert_eq!(err, expected, "{uri}");
        }
    }

    #[test]
    fn suggested_entry_leaves_out_the_default_port() {
        let cases = [
            ("https://api.example.com/x", "https://api.example.com"),
            (
                "http://api.example.com:8080/",
                "http://api.example.com:8080",
            ),
            ("http://[::1]:80/", "http://[::1]"),
        ];
        for (uri, suggestion) in cases {
            let target = RequestTarget::from_uri(&uri.parse().unwrap()).unwrap();
            assert_eq!(target.suggested_entry(), suggestion);
        }
    }
}
