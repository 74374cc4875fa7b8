//! `--trust-proxy`: behind a load balancer or ingress, the client is the
//! address the trusted proxies put in `X-Forwarded-For`, not the peer.
//!
//! Deviation from DESIGN.md, which gives `wedge-client-addr` as the
//! client's socket address: `X-Forwarded-For` carries no client port, so
//! behind a trusted proxy the header holds the IP address alone, rather
//! than an invented port (docs/handlers.md, "What a handler receives").

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The header proxies append the address they received a request from to.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The peers whose `X-Forwarded-For` (and `x-request-id`) is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts peers in any of `ranges`; none: no peer, every header is the client's.
    pub fn new(ranges: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(ranges)
    }

    /// Whether any range was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|range| range.contains(&ip))
    }

    /// The client's address, as the guest (`wedge-client-addr`) and the logs
    /// see it: the peer's socket address; or, when the peer is trusted, the
    /// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy
    /// (proxies append, so entries left of the first untrusted one may be
    /// forged by the client). That address has no port. An entry that is
    /// not an address ends the walk at the last trusted hop.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> String {
        if !self.trusts(peer.ip()) {
            return peer.to_string();
        }
        let mut client = None;
        // Split the raw bytes: one byte that is not visible ASCII spoils
        // its own entry (which ends the walk), not the whole line.
        let entries = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|&byte| byte == b','));
        for entry in entries {
            let entry = std::str::from_utf8(entry).unwrap_or("");
            let Some(ip) = parse_entry(entry.trim()) else {
                break;
            };
            client = Some(ip);
            if !self.trusts(ip) {
                break;
            }
        }
        match client {
            Some(ip) => ip.to_canonical().to_string(),
            None => peer.to_string(),
        }
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

/// Parses a `--trust-proxy` value: a CIDR range, or one address.
pub fn parse_range(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("`{text}` is not a CIDR range or an IP address; write e.g. 10.0.0.0/8")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn proxies(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| parse_range(r).unwrap()).collect())
    }

    fn client(trusted: &TrustedProxies, peer: &str, forwarded: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            let value = value.chars().map(|c| c as u32 as u8).collect::<Vec<_>>();
            headers.append(X_FORWARDED_FOR, HeaderValue::from_bytes(&value).unwrap());
        }
        trusted.client(peer.parse().unwrap(), &headers)
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let trusted = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        let cases: &[(&str, &[&str], &str)] = &[
            // An untrusted peer's header is ignored.
            ("203.0.113.9:5000", &["1.2.3.4"], "203.0.113.9:5000"),
            ("10.1.2.3:5000", &["1.2.3.4"], "1.2.3.4"),
            // A forged entry left of the real client is skipped.
            ("10.1.2.3:5000", &["6.6.6.6, 1.2.3.4"], "1.2.3.4"),
            // Chains of trusted proxies, across header lines too.
            ("10.1.2.3:5000", &["1.2.3.4, 10.9.9.9"], "1.2.3.4"),
            ("10.1.2.3:5000", &["1.2.3.4", "192.168.1.1"], "1.2.3.4"),
            // Every hop trusted: the leftmost.
            ("10.1.2.3:5000", &["10.0.0.1, 10.0.0.2"], "10.0.0.1"),
            // Ports and IPv6.
            ("10.1.2.3:5000", &["1.2.3.4:8080"], "1.2.3.4"),
            ("10.1.2.3:5000", &["[2001:db8::1]:443"], "2001:db8::1"),
            // Garbage ends the walk at the last trusted hop.
            ("10.1.2.3:5000", &["1.2.3.4, unknown, 10.0.0.7"], "10.0.0.7"),
            ("10.1.2.3:5000", &["unknown"], "10.1.2.3:5000"),
            // A non-ASCII byte spoils its entry only.
            ("10.1.2.3:5000", &["\u{ff}, 203.0.113.7"], "203.0.113.7"),
            ("10.1.2.3:5000", &[], "10.1.2.3:5000"),
            // An IPv4 peer seen through a dual-stack socket.
            ("[::ffff:10.1.2.3]:5000", &["1.2.3.4"], "1.2.3.4"),
        ];
        for (peer, forwarded, expected) in cases {
            assert_eq!(
                client(&trusted, peer, forwarded),
                *expected,
                "{peer} {forwarded:?}"
            );
        }
        assert_eq!(
            client(&TrustedProxies::default(), "10.1.2.3:5000", &["1.2.3.4"]),
            "10.1.2.3:5000"
        );
    }

    #[test]
    fn ranges_are_cidrs_or_addresses() {
        assert!(parse_range("10.0.0.0/8").is_ok());
        assert!(parse_range("::1").is_ok());
        assert!(parse_range("fd00::/8").is_ok());
        let error = parse_range("10.0.0/8").unwrap_err();
        assert!(error.contains("10.0.0.0/8"), "{error}");
    }
}
