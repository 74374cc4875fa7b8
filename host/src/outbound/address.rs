//! The SSRF guard: which resolved addresses an allowed entry may connect to.
//!
//! Every address a request would connect to is classified first
//! ([`classify`]); [`address_allowed`] then decides with the entry that
//! allowed the request. An IPv6 address that embeds an IPv4 address and
//! reaches it through a standard mechanism (IPv4-mapped `::ffff:a.b.c.d`,
//! IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4
//! `2002:AABB:CCDD::`) is classified as the IPv4 address it reaches: on an
//! IPv6-only network with DNS64, every IPv4-only upstream resolves to
//! `64:ff9b::/96`, so refusing the whole prefix would break them, while
//! `64:ff9b::a9fe:a9fe` is the metadata service through the translator.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::entry::{HostPattern, OutboundHost};

/// The kind of network an address belongs to, as far as the SSRF guard cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Anything not listed below.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// Networks that are not the public internet: `10/8`, `172.16/12`,
    /// `192.168/16`, `100.64/10` (carrier-grade NAT), `198.18/15`
    /// (benchmarking; fake-IP proxies hand these out), `192.0.0/24` (IETF
    /// protocol assignments), `240/4` (reserved, and broadcast), `fc00::/7`
    /// (unique local), `fec0::/10` (site-local, deprecated but still routed
    /// by some sites), `64:ff9b:1::/48` (local-use NAT64, whose embedding is
    /// the operator's choice, so no IPv4 address can be read from it).
    Private,
    /// `0.0.0.0/8` (`0.0.0.0` reaches the local host on Linux), `::`.
    Unspecified,
    /// `169.254.0.0/16`, `fe80::/10`: cloud metadata services live here.
    LinkLocal,
    /// Cloud metadata and platform services outside link-local:
    /// `168.63.129.16` (Azure's wire server), `100.100.100.200` (Alibaba
    /// Cloud's metadata), `fd00:ec2::254` (AWS's metadata over IPv6).
    Metadata,
}

/// Metadata services at addresses that are not link-local.
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(168, 63, 129, 16),
    Ipv4Addr::new(100, 100, 100, 200),
];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

/// Classifies `addr`; an IPv6 address embedding an IPv4 address (see the
/// module docs) is classified as the IPv4 address it reaches.
pub fn classify(addr: IpAddr) -> AddressClass {
    match addr {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => embedded_ipv4(ip).map_or_else(|| classify_v6(ip), classify_v4),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [first, second, third, _] = ip.octets();
    let carrier_nat = first == 100 && (second & 0b1100_0000) == 64;
    let benchmarking = first == 198 && (second & 0b1111_1110) == 18;
    let protocol_assignments = first == 192 && second == 0 && third == 0;
    let reserved = first >= 240;
    if METADATA_V4.contains(&ip) {
        AddressClass::Metadata
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if first == 0 {
        AddressClass::Unspecified
    } else if ip.is_private() || carrier_nat || benchmarking || protocol_assignments || reserved {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let [first, second, third, ..] = ip.segments();
    let unique_local = (first & 0xfe00) == 0xfc00;
    let site_local = (first & 0xffc0) == 0xfec0;
    let local_nat64 = first == 0x64 && second == 0xff9b && third == 1;
    if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if METADATA_V6.contains(&ip) {
        AddressClass::Metadata
    } else if (first & 0xffc0) == 0xfe80 {
        AddressClass::LinkLocal
    } else if unique_local || site_local || local_nat64 {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address `ip` reaches, if it embeds one: IPv4-mapped
/// (`::ffff:0:0/96`), IPv4-compatible (`::/96`, but not `::` and `::1`,
/// which are IPv6's own), NAT64's well-known prefix (`64:ff9b::/96`, RFC
/// 6052) and 6to4 (`2002::/16`, the IPv4 address in bits 16 to 47).
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let [a, b, c, d, e, f, g, h] = ip.segments();
    let last_32_bits = || Ipv4Addr::from((u32::from(g) << 16) | u32::from(h));
    match (a, b, c, d, e, f) {
        (0, 0, 0, 0, 0, 0xffff) => Some(last_32_bits()),
        (0, 0, 0, 0, 0, 0) if !ip.is_unspecified() && !ip.is_loopback() => Some(last_32_bits()),
        (0x64, 0xff9b, 0, 0, 0, 0) => Some(last_32_bits()),
        (0x2002, ..) => Some(Ipv4Addr::from((u32::from(b) << 16) | u32::from(c))),
        _ => None,
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it connects to: the
/// socket is the same. (The other embeddings go through a translator or a
/// tunnel, so an entry naming `10.0.0.1` does not allow `64:ff9b::a00:1`.)
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// Whether a request allowed by `entry` may connect to `addr`, one of the
/// addresses its host resolved to.
///
/// Link-local and metadata addresses are always denied. Loopback, private
/// and unspecified addresses are denied unless `entry` names that very IP
/// literal (or, for loopback, is `localhost`): a public name must not be
/// pointed at the internal network through DNS. Public addresses are
/// allowed.
pub fn address_allowed(entry: &OutboundHost, addr: IpAddr) -> bool {
    let is_listed_ip = || match entry.host() {
        HostPattern::Ip(listed) => canonical(*listed) == canonical(addr),
        _ => false,
    };
    match classify(addr) {
        AddressClass::Public => true,
        AddressClass::LinkLocal | AddressClass::Metadata => false,
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
            ("fc00::1", Private),
            ("fd00:ec2::253", Private),
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
    fn special_purpose_ranges_are_not_public() {
        use AddressClass::*;
        let cases = [
            // Benchmarking (RFC 2544), where fake-IP proxies put every name.
            ("198.18.0.1", Private),
            ("198.19.255.255", Private),
            ("198.17.255.255", Public),
            ("198.20.0.0", Public),
            // IETF protocol assignments; reserved and broadcast.
            ("192.0.0.8", Private),
            ("192.0.1.1", Public),
            ("240.0.0.1", Private),
            ("255.255.255.255", Private),
            ("239.255.255.255", Public),
            // Metadata and platform services outside link-local.
            ("168.63.129.16", Metadata),
            ("168.63.129.17", Public),
            ("100.100.100.200", Metadata),
            ("fd00:ec2::254", Metadata),
            // Site-local (deprecated, still routed by some sites).
            ("fec0::1", Private),
            ("feff:ffff::1", Private),
            ("fe80::1", LinkLocal),
            // Local-use NAT64: the operator's translator, embedding unknown.
            ("64:ff9b:1::a00:1", Private),
            ("64:ff9b:1:ffff::808:808", Private),
            ("64:ff9b:2::1", Public),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(addr.parse().unwrap()), class, "{addr}");
        }
    }

    #[test]
    fn ipv6_forms_embedding_ipv4_are_classified_as_the_ipv4_address() {
        use AddressClass::*;
        let cases = [
            // NAT64, well-known prefix (RFC 6052): DNS64 answers for public
            // IPv4-only names land here, so public stays public.
            ("64:ff9b::808:808", Public),
            ("64:ff9b::8.8.8.8", Public),
            ("64:ff9b::7f00:1", Loopback),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::168.63.129.16", Metadata),
            ("64:ff9b::0.0.0.0", Unspecified),
            ("64:ff9b::198.18.0.1", Private),
            // IPv4-compatible (deprecated): `::` and `::1` stay IPv6's own.
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("::169.254.169.254", LinkLocal),
            ("::8.8.8.8", Public),
            ("::0.0.0.2", Unspecified),
            ("::", Unspecified),
            ("::1", Loopback),
            // 6to4: the IPv4 address is in bits 16 to 47.
            ("2002:7f00:1::", Loopback),
            ("2002:a00:1::1", Private),
            ("2002:c0a8:101:1::1", Private),
            ("2002:a9fe:a9fe::", LinkLocal),
            ("2002:a83f:8110::1", Metadata),
            ("2002:808:808::1", Public),
            // IPv4-mapped, for completeness.
            ("::ffff:198.18.0.1", Private),
            ("::ffff:168.63.129.16", Metadata),
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
            // Special ranges behind a name are internal too.
            ("https://api.example.com", "198.18.0.7", false),
            ("https://api.example.com", "fec0::1", false),
            ("https://api.example.com", "64:ff9b::7f00:1", false),
            ("https://api.example.com", "64:ff9b:1::a00:1", false),
            ("https://api.example.com", "::127.0.0.1", false),
            ("https://api.example.com", "2002:a00:1::1", false),
            ("https://api.example.com", "64:ff9b::808:808", true),
            ("https://api.example.com", "2002:808:808::1", true),
            // Listed literally, a special range is reachable like a private one;
            // a translated form is another address than the IPv4 one.
            ("http://198.18.0.7", "198.18.0.7", true),
            ("http://[64:ff9b::a00:1]", "64:ff9b::a00:1", true),
            ("http://10.0.0.1", "64:ff9b::a00:1", false),
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
    fn link_local_and_metadata_are_denied_even_when_the_entry_names_them() {
        let cases = [
            ("http://169.254.169.254", "169.254.169.254"),
            ("http://[fe80::1]", "fe80::1"),
            ("http://[::ffff:169.254.169.254]", "::ffff:169.254.169.254"),
            ("http://localhost", "169.254.0.1"),
            ("http://metadata.internal", "169.254.169.254"),
            ("http://168.63.129.16", "168.63.129.16"),
            ("http://100.100.100.200", "100.100.100.200"),
            ("http://[fd00:ec2::254]", "fd00:ec2::254"),
            ("http://[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"),
            ("http://[2002:a9fe:a9fe::]", "2002:a9fe:a9fe::"),
            ("https://api.example.com", "::169.254.169.254"),
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
