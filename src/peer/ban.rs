//! A ban record: what is banned (an IP, an IPv6 /64, or a host name), when, until when and why.
//! Groups keep and persist them (`group::bans`); notifications carry them (`AddressBanned`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::PeerAddr;

/// What a ban applies to: a whole IP (every port, as Core bans), or a host name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BanTarget {
    /// Every connection from or to this IP.
    Ip(IpAddr),
    /// A host name (e.g. an onion service).
    Host(String),
}

impl BanTarget {
    /// The target that covers `addr`: its IPv4 address, the /64 of an IPv6 address (one host
    /// usually owns a whole /64, so banning single IPv6 addresses is futile), or its host name.
    pub fn of(addr: &PeerAddr) -> BanTarget {
        match addr {
            PeerAddr::Ip(sa) => match sa.ip() {
                IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                    let mut octets = v6.octets();
                    octets[8..].fill(0);
                    BanTarget::Ip(IpAddr::from(octets))
                }
                ip => BanTarget::Ip(ip.to_canonical()),
            },
            PeerAddr::Host(h, _) => BanTarget::Host(h.to_ascii_lowercase()),
        }
    }
}

impl std::fmt::Display for BanTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanTarget::Ip(IpAddr::V6(ip)) => write!(f, "{ip}/64"),
            BanTarget::Ip(ip) => write!(f, "{ip}"),
            BanTarget::Host(h) => f.write_str(h),
        }
    }
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// What is banned.
    pub target: BanTarget,
    /// Unix time the ban was made.
    pub since: u64,
    /// Unix time it expires.
    pub until: u64,
    /// Why.
    pub reason: String,
    /// Made by the user (API), not for misbehaviour; such bans are never pushed out.
    #[serde(default)]
    pub manual: bool,
}
