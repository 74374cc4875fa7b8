//! The SSRF guard: which resolved addresses an allowed entry may connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::host::{HostPattern, OutboundHost};

/// The kind of network an address belongs to, as far as the SSRF guard cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Anything not listed below.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `100.64/10` (carrier-grade NAT,
    /// where some clouds put their metadata service), `fc00::/7`.
    Private,
    /// `0.0.0.0/8` (`0.0.0.0` reaches the local host on Linux), `::`.
    Unspecified,
    /// `169.254.0.0/16`, `fe80::/10`: cloud metadata services live here.
    LinkLocal,
}

/// Classifies `addr`; an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is
/// classified as the IPv4 address it reaches.
pub fn classify(addr: IpAddr) -> AddressClass {
    match canonical(addr) {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [first, second, ..] = ip.octets();
    if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if first == 0 {
        AddressClass::Unspecified
    } else if ip.is_private() || (first == 100 && (second & 0b1100_0000) == 64) {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if (first & 0xffc0) == 0xfe80 {
        AddressClass::LinkLocal
    } else if (first & 0xfe00) == 0xfc00 {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it connects to.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// Whether a request allowed by `entry` may connect to `addr`, one of the
/// addresses its host resolved to.
///
/// Link-local is always denied. Loopback, private and unspecified addresses
/// are denied unless `entry` names that very IP literal (or, for loopback,
/// is `localhost`): a public name must not be pointed at the internal network
/// through DNS. Public addresses are allowed.
pub fn address_allowed(entry: &OutboundHost, addr: IpAddr) -> bool {
    let is_listed_ip = || match entry.host() {
        HostPattern::Ip(listed) => canonical(*listed) == canonical(addr),
        _ => false,
    };
    match classify(addr) {
        AddressClass::Public => true,
        AddressClass::LinkLocal => false,
        AddressClass::Loopback => matches!(entry.host(), HostPattern::Localhost) || is_listed_ip(),
        AddressClass::Private | AddressClass::Unspecified => is_listed_ip(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified_by_range_including_ipv4_mapped_forms() {
        use AddressClass::*;
        let cases = [
            ("8.8.8.8", Public),
            ("93.184.216.34", Public),
            ("172.15.255.255", Public),
            ("172.32.0.0", Public),
            ("100.63.255.255", Public),
            ("100.128.0.0", Public),
            ("2606:4700::1111", Public),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("::1", Loopback),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("100.100.100.200", Private),
            ("fc00::1", Private),
            ("fd00:ec2::254", Private),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:192.168.0.1", Private),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:8.8.8.8", Public),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(addr.parse().unwrap()), class, "{addr}");
        }
    }

    #[test]
    fn internal_addresses_need_an_entry_naming_that_ip() {
        let cases = [
            // entry, resolved address, allowed
            ("https://api.example.com", "93.184.216.34", true),
            ("https://api.example.com", "2606:4700::1111", true),
            ("https://api.example.com", "127.0.0.1", false),
            ("https://api.example.com", "::1", false),
            ("https://api.example.com", "10.1.2.3", false),
            ("https://api.example.com", "192.168.0.10", false),
            ("https://api.example.com", "fd12::1", false),
            ("https://api.example.com", "0.0.0.0", false),
            ("https://api.example.com", "::", false),
            ("https://api.example.com", "::ffff:127.0.0.1", false),
            ("https://api.example.com", "::ffff:10.0.0.1", false),
            ("https://*.example.com", "172.16.5.4", false),
            ("http://127.0.0.1:8080", "127.0.0.1", true),
            ("http://127.0.0.1:8080", "::ffff:127.0.0.1", true),
            ("http://127.0.0.1:8080", "127.0.0.2", false),
            ("http://127.0.0.1:8080", "::1", false),
            ("http://[::1]:3000", "::1", true),
            ("http://[::1]:3000", "127.0.0.1", false),
            ("http://10.0.0.5", "10.0.0.5", true),
            ("http://10.0.0.5", "10.0.0.6", false),
            ("http://0.0.0.0", "0.0.0.0", true),
            ("http://localhost:*", "127.0.0.1", true),
            ("http://localhost:*", "::1", true),
            ("http://localhost:*", "::ffff:127.0.0.1", true),
            ("http://localhost:*", "10.0.0.1", false),
            ("http://localhost:*", "0.0.0.0", false),
            ("http://localhost:*", "93.184.216.34", true),
            // A dotted name, not an IP literal: it resolves but gains nothing.
            ("http://127.1:8080", "127.0.0.1", false),
        ];
        for (entry, addr, allowed) in cases {
            let entry: OutboundHost = entry.parse().unwrap();
            let addr: IpAddr = addr.parse().unwrap();
            assert_eq!(address_allowed(&entry, addr), allowed, "{entry} -> {addr}");
        }
    }

    #[test]
    fn link_local_is_denied_even_when_the_entry_names_it() {
        let cases = [
            ("http://169.254.169.254", "169.254.169.254"),
            ("http://[fe80::1]", "fe80::1"),
            ("http://[::ffff:169.254.169.254]", "::ffff:169.254.169.254"),
            ("http://localhost", "169.254.0.1"),
            ("http://metadata.internal", "169.254.169.254"),
        ];
        for (entry, addr) in cases {
            let entry: OutboundHost = entry.parse().unwrap();
            assert!(
                !address_allowed(&entry, addr.parse().unwrap()),
                "{entry} -> {addr}"
            );
        }
    }
}
