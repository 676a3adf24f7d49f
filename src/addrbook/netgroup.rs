//! Network groups: which addresses are "close together" and so probably under one operator's
//! control. The address book spreads its buckets over groups so that one operator (or one lying
//! peer) cannot fill it. Follows Bitcoin Core's `NetGroupManager::GetGroup` (src/netgroup.cpp)
//! without ASMap: IPv4 /16, IPv6 /32, tunnels and translations by their embedded IPv4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::peer::PeerAddr;

/// Longest host name a [`NetGroup::Name`] may hold (the DNS limit).
const MAX_NAME_LEN: usize = 255;

/// The group an address belongs to. Small, hashable and serializable.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetGroup {
    /// A public IPv4 /16 (also IPv4-mapped, NAT64, 6to4 and Teredo addresses, by their IPv4).
    Ipv4([u8; 2]),
    /// A public IPv6 /32 (/36 in Hurricane Electric's tunnel range 2001:470::/32; the fifth
    /// byte holds the extra four bits and is zero otherwise).
    Ipv6([u8; 5]),
    /// A loopback, private, link-local or carrier-grade-NAT IPv4 /16.
    LocalIpv4([u8; 2]),
    /// A loopback, unique-local or link-local IPv6 /32.
    LocalIpv6([u8; 4]),
    /// Addresses that cannot be dialed (unspecified, multicast, documentation, reserved).
    Unroutable,
    /// Tor: the first four bits of the onion name, as Core does (names cost nothing to
    /// generate, so each one its own group would let one operator own any number of groups).
    Onion(u8),
    /// I2P: the first four bits of the name, for the same reason as [`NetGroup::Onion`].
    I2p(u8),
    /// Another DNS name: its last two labels, lower case (`seed.example.org` → `example.org`).
    Name(Box<str>),
}

impl NetGroup {
    /// Whether a deserialized group is one [`netgroup`] could have produced (bounded name,
    /// four-bit overlay prefix).
    pub fn is_plausible(&self) -> bool {
        match self {
            NetGroup::Onion(b) | NetGroup::I2p(b) => *b < 16,
            NetGroup::Name(n) => !n.is_empty() && n.len() <= MAX_NAME_LEN,
            _ => true,
        }
    }

    /// Appends an unambiguous encoding of the group (tag byte, then the bytes; names are
    /// length-prefixed), for hashing.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            NetGroup::Ipv4(b) => out.extend([1, b[0], b[1]]),
            NetGroup::Ipv6(b) => out.extend([2, b[0], b[1], b[2], b[3], b[4]]),
            NetGroup::LocalIpv4(b) => out.extend([3, b[0], b[1]]),
            NetGroup::LocalIpv6(b) => out.extend([4, b[0], b[1], b[2], b[3]]),
            NetGroup::Unroutable => out.push(5),
            NetGroup::Onion(b) => out.extend([6, *b]),
            NetGroup::I2p(b) => out.extend([7, *b]),
            NetGroup::Name(n) => {
                out.push(8);
                out.extend((n.len() as u64).to_le_bytes());
                out.extend(n.as_bytes());
            }
        }
    }
}

/// Where an address can be reached from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reach {
    /// Nowhere: unspecified, multicast, broadcast, documentation or reserved ranges.
    Unusable,
    /// Only this host or its local network: loopback, RFC 1918, link-local, CGNAT (RFC 6598),
    /// benchmarking (RFC 2544), IPv6 unique-local (which includes CJDNS) and `localhost` names.
    Local,
    /// The internet, or an overlay network (Tor, I2P) through a proxy.
    Public,
}

/// The [`NetGroup`] of a peer address.
pub fn netgroup(addr: &PeerAddr) -> NetGroup {
    match addr {
        PeerAddr::Ip(sa) => ip_group(sa.ip()),
        PeerAddr::Host(host, _) => host_group(host),
    }
}

/// Where `addr` can be reached from (see [`Reach`]).
pub fn reach(addr: &PeerAddr) -> Reach {
    match addr {
        PeerAddr::Ip(sa) => ip_reach(sa.ip()),
        PeerAddr::Host(host, _) => {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            let local = ["localhost", "local", "localdomain"].iter().any(|suffix| {
                host == *suffix || host.strip_suffix(suffix).is_some_and(|rest| rest.ends_with('.'))
            });
            if local {
                Reach::Local
            } else {
                Reach::Public
            }
        }
    }
}

/// Whether `ip` is reachable over the public internet (Core's `IsRoutable`).
pub fn is_routable(ip: IpAddr) -> bool {
    ip_reach(ip) == Reach::Public
}

/// The form of `addr` the address book uses as its key: IPv4-mapped IPv6 becomes IPv4, the IPv6
/// flow label is cleared, and host names are lower case without a trailing dot. Two spellings of
/// one node compare equal after this.
pub fn canonical(addr: &PeerAddr) -> PeerAddr {
    match addr {
        PeerAddr::Ip(SocketAddr::V6(sa)) => match sa.ip().to_ipv4_mapped() {
            Some(v4) => PeerAddr::Ip(SocketAddr::new(IpAddr::V4(v4), sa.port())),
            None => {
                let mut sa = *sa;
                sa.set_flowinfo(0);
                PeerAddr::Ip(SocketAddr::V6(sa))
            }
        },
        PeerAddr::Ip(sa) => PeerAddr::Ip(*sa),
        PeerAddr::Host(host, port) => {
            let trimmed = host.trim_end_matches('.');
            if trimmed.len() == host.len() && !trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
                addr.clone()
            } else {
                PeerAddr::Host(Arc::from(trimmed.to_ascii_lowercase()), *port)
            }
        }
    }
}

/// An IPv4 address carried inside an IPv6 one, and whether the IPv6 address is merely a
/// translation of it (mapped, SIIT, NAT64: reach is the IPv4's) or a tunnel (6to4, Teredo:
/// publicly routable, grouped by the IPv4 as Core does).
fn embedded_v4(ip: Ipv6Addr) -> Option<(Ipv4Addr, bool)> {
    let o = ip.octets();
    let v4 = |a: usize| Ipv4Addr::new(o[a], o[a + 1], o[a + 2], o[a + 3]);
    let s = ip.segments();
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some((v4(12), true)); // ::ffff:0:0/96, IPv4-mapped
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return Some((v4(12), true)); // ::ffff:0:0:0/96, SIIT (RFC 6145)
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some((v4(12), true)); // 64:ff9b::/96, NAT64 (RFC 6052)
    }
    if s[0] == 0x2002 {
        return Some((v4(2), false)); // 2002::/16, 6to4 (RFC 3964)
    }
    if s[0] == 0x2001 && s[1] == 0 {
        let x = |a: usize| !o[a];
        return Some((Ipv4Addr::new(x(12), x(13), x(14), x(15)), false)); // Teredo (RFC 4380)
    }
    None
}

fn ip_reach(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => v4_reach(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some((v4, true)) => v4_reach(v4),
            Some((_, false)) => Reach::Public,
            None => v6_reach(v6),
        },
    }
}

fn v4_reach(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    let documentation = matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113));
    if a == 0 || a >= 224 || documentation {
        Reach::Unusable
    } else if a == 10
        || a == 127
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || (a, b, c) == (192, 0, 0)
    {
        Reach::Local
    } else {
        Reach::Public
    }
}

fn v6_reach(ip: Ipv6Addr) -> Reach {
    let s = ip.segments();
    let ipv4_compatible = s[..6] == [0; 6]; // deprecated ::a.b.c.d
    let multicast = s[0] & 0xff00 == 0xff00;
    let documentation = s[0] == 0x2001 && s[1] == 0x0db8; // RFC 3849
    let orchid = s[0] == 0x2001 && matches!(s[1] & 0xfff0, 0x10 | 0x20); // RFC 4843, RFC 7343
    let discard = s[0] == 0x0100 && s[1..4] == [0; 3]; // RFC 6666
    let unique_local = s[0] & 0xfe00 == 0xfc00; // RFC 4193
    let link_or_site_local = s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0;
    if ip.is_loopback() {
        Reach::Local
    } else if ip.is_unspecified() || ipv4_compatible || multicast || documentation || orchid || discard {
        Reach::Unusable
    } else if unique_local || link_or_site_local {
        Reach::Local
    } else {
        Reach::Public
    }
}

fn ip_group(ip: IpAddr) -> NetGroup {
    let v6 = match ip {
        IpAddr::V4(v4) => return v4_group(v4),
        IpAddr::V6(v6) => v6,
    };
    if let Some((v4, _)) = embedded_v4(v6) {
        return v4_group(v4);
    }
    let o = v6.octets();
    match v6_reach(v6) {
        Reach::Unusable => NetGroup::Unroutable,
        Reach::Local => NetGroup::LocalIpv6([o[0], o[1], o[2], o[3]]),
        Reach::Public if o[..4] == [0x20, 0x01, 0x04, 0x70] => {
            NetGroup::Ipv6([o[0], o[1], o[2], o[3], o[4] & 0xf0])
        }
        Reach::Public => NetGroup::Ipv6([o[0], o[1], o[2], o[3], 0]),
    }
}

fn v4_group(ip: Ipv4Addr) -> NetGroup {
    let [a, b, _, _] = ip.octets();
    match v4_reach(ip) {
        Reach::Unusable => NetGroup::Unroutable,
        Reach::Local => NetGroup::LocalIpv4([a, b]),
        Reach::Public => NetGroup::Ipv4([a, b]),
    }
}

fn host_group(host: &str) -> NetGroup {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    // The first base32 character carries five bits; keep four, as Core does for overlays.
    let prefix = |name: &str| {
        let first = name.bytes().next().unwrap_or(0);
        let value = match first {
            b'a'..=b'z' => first - b'a',
            b'2'..=b'7' => first - b'2' + 26,
            other => other,
        };
        (value >> 1) & 0x0f
    };
    if host.ends_with(".onion") {
        return NetGroup::Onion(prefix(&host));
    }
    if host.ends_with(".i2p") {
        return NetGroup::I2p(prefix(&host));
    }
    let mut labels = host.rsplit('.');
    let last = labels.next().unwrap_or_default();
    let name = match labels.next() {
        Some(second) => format!("{second}.{last}"),
        None => last.to_owned(),
    };
    let name: String = name.chars().take(MAX_NAME_LEN).collect();
    if name.is_empty() {
        NetGroup::Unroutable
    } else {
        NetGroup::Name(name.into_boxed_str())
    }
}

/// Core's `CNetAddr::IsLocal` (`netaddress.cpp`): 127.0.0.0/8, 0.0.0.0/8 and ::1, an
/// IPv4-mapped IPv6 address counted as its IPv4 one.
pub fn is_local(addr: &PeerAddr) -> bool {
    match addr {
        PeerAddr::Ip(a) => match a.ip().to_canonical() {
            IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[0] == 0,
            IpAddr::V6(v6) => v6.is_loopback(),
        },
        PeerAddr::Host(..) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(s: &str) -> NetGroup {
        netgroup(&s.parse().expect("test address parses"))
    }

    fn reach_of(s: &str) -> Reach {
        reach(&s.parse().expect("test address parses"))
    }

    #[test]
    fn ipv4_groups_by_slash_16() {
        assert_eq!(group("1.2.3.4:8333"), NetGroup::Ipv4([1, 2]));
        assert_eq!(group("1.2.250.1:1"), group("1.2.3.4:8333"));
        assert_ne!(group("1.3.3.4:8333"), group("1.2.3.4:8333"));
    }

    #[test]
    fn mapped_and_tunneled_ipv6_group_as_their_ipv4() {
        assert_eq!(group("[::ffff:1.2.3.4]:8333"), NetGroup::Ipv4([1, 2]));
        assert_eq!(group("[64:ff9b::102:304]:8333"), NetGroup::Ipv4([1, 2]));
        assert_eq!(group("[2002:102:304::1]:8333"), NetGroup::Ipv4([1, 2]));
        // Teredo: the client IPv4 is stored inverted in the last 32 bits.
        assert_eq!(group("[2001:0:4136:e378:8000:63bf:fefd:fcfb]:8333"), NetGroup::Ipv4([1, 2]));
        assert_eq!(group("[::ffff:127.0.0.1]:1"), NetGroup::LocalIpv4([127, 0]));
    }

    #[test]
    fn ipv6_groups_by_slash_32_and_he_by_slash_36() {
        assert_eq!(group("[2a01:4f8:1:2::1]:8333"), NetGroup::Ipv6([0x2a, 0x01, 0x04, 0xf8, 0]));
        assert_eq!(group("[2a01:4f8:ffff::1]:8333"), group("[2a01:4f8:1:2::1]:8333"));
        assert_ne!(group("[2a01:4f9::1]:8333"), group("[2a01:4f8::1]:8333"));
        assert_eq!(group("[2001:470:1234::1]:1"), NetGroup::Ipv6([0x20, 0x01, 0x04, 0x70, 0x10]));
        assert_ne!(group("[2001:470:2234::1]:1"), group("[2001:470:1234::1]:1"));
    }

    #[test]
    fn local_ranges_are_their_own_groups() {
        assert_eq!(group("127.0.0.1:1"), NetGroup::LocalIpv4([127, 0]));
        assert_eq!(group("127.0.0.2:1"), group("127.0.0.9:2"));
        assert_eq!(group("10.1.2.3:1"), NetGroup::LocalIpv4([10, 1]));
        assert_eq!(group("192.168.1.1:1"), NetGroup::LocalIpv4([192, 168]));
        assert_eq!(group("[::1]:1"), NetGroup::LocalIpv6([0, 0, 0, 0]));
        assert_eq!(group("[fd00::1]:1"), NetGroup::LocalIpv6([0xfd, 0, 0, 0]));
        assert_eq!(group("0.0.0.0:1"), NetGroup::Unroutable);
        assert_eq!(group("[ff02::1]:1"), NetGroup::Unroutable);
    }

    #[test]
    fn host_names_group_by_network_and_name() {
        let a = group("abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion:8333");
        assert_eq!(a, NetGroup::Onion(0));
        assert_eq!(group("zzz.onion:1"), NetGroup::Onion(12));
        assert_eq!(
            group("ukeu3k5oycgaauneqgtnvselmt4yemvoilkln7jpvamvfx7dnkdq.b32.i2p:1"),
            NetGroup::I2p(10)
        );
        let dotted = PeerAddr::Host(Arc::from("seed.Example.ORG."), 8333);
        assert_eq!(netgroup(&dotted), NetGroup::Name("example.org".into()));
        assert_eq!(group("other.example.org:1"), group("seed.example.org:1"));
        assert_eq!(group("localhost:1"), NetGroup::Name("localhost".into()));
        assert!(group("zzz.onion:1").is_plausible());
        assert!(!NetGroup::Onion(16).is_plausible());
        assert!(!NetGroup::Name("x".repeat(256).into()).is_plausible());
    }

    #[test]
    fn reach_classifies_ranges() {
        for s in ["1.2.3.4:1", "[2a01:4f8::1]:1", "[2002:102:304::1]:1", "x.onion:1", "a.example:1"] {
            assert_eq!(reach_of(s), Reach::Public, "{s}");
        }
        for s in ["127.0.0.1:1", "10.0.0.1:1", "172.20.0.1:1", "100.64.0.1:1", "[::1]:1", "[fe80::1]:1"] {
            assert_eq!(reach_of(s), Reach::Local, "{s}");
        }
        for s in ["localhost:1", "box.local:1", "[::ffff:192.168.0.1]:1"] {
            assert_eq!(reach_of(s), Reach::Local, "{s}");
        }
        for s in ["0.0.0.0:1", "224.0.0.1:1", "255.255.255.255:1", "192.0.2.1:1", "[::]:1", "[2001:db8::1]:1"]
        {
            assert_eq!(reach_of(s), Reach::Unusable, "{s}");
        }
        assert!(is_routable("8.8.8.8".parse().expect("ip")));
        assert!(!is_routable("192.168.0.1".parse().expect("ip")));
    }

    #[test]
    fn canonical_merges_spellings() {
        let c = |s: &str| canonical(&s.parse().expect("test address parses")).to_string();
        assert_eq!(c("[::ffff:1.2.3.4]:8333"), "1.2.3.4:8333");
        assert_eq!(c("Seed.Example.org:8333"), "seed.example.org:8333");
        let dotted = PeerAddr::Host(Arc::from("seed.example.org."), 8333);
        assert_eq!(canonical(&dotted).to_string(), "seed.example.org:8333");
        assert_eq!(c("[2a01::1]:8333"), "[2a01::1]:8333");
        let mut v6: std::net::SocketAddrV6 = "[2a01::1]:8333".parse().expect("v6");
        v6.set_flowinfo(7);
        assert_eq!(canonical(&PeerAddr::Ip(v6.into())), "[2a01::1]:8333".parse().expect("v6"));
    }

    #[test]
    fn local_addresses_are_cores() {
        let ip = |s: &str| PeerAddr::Ip(SocketAddr::new(s.parse().unwrap(), 8333));
        for local in ["127.0.0.1", "127.3.2.1", "0.0.0.0", "0.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_local(&ip(local)), "{local}");
        }
        for not_local in
            ["10.0.0.1", "172.17.0.2", "192.168.1.1", "1.2.3.4", "::", "fe80::1", "::ffff:1.2.3.4"]
        {
            assert!(!is_local(&ip(not_local)), "{not_local}");
        }
        assert!(!is_local(&PeerAddr::Host("example.onion".into(), 8333)));
    }
}

#[cfg(test)]
mod doc_examples {
    #[test]
    fn netgroup_of_ipv4_is_its_slash16() {
        use crate::addrbook::netgroup::{netgroup, NetGroup};
        let a = netgroup(&"1.2.3.4:8333".parse().unwrap());
        assert_eq!(a, netgroup(&"1.2.200.9:18444".parse().unwrap()));
        assert_eq!(a, NetGroup::Ipv4([1, 2]));
    }
}
