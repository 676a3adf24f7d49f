//! Everything that touches the wire format. This is the only module that names `bitcoin::p2p`
//! types; the rest of the crate uses the re-exports below, so moving to another message crate is
//! this module's work alone.

pub mod codec;
mod hash;
pub mod limits;
pub(crate) mod pow;
pub mod version;

use std::net::{IpAddr, Ipv6Addr};

pub use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
pub use bitcoin::p2p::message::NetworkMessage as Message;
pub use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
pub use bitcoin::p2p::message_bloom::{BloomFlags, FilterAdd, FilterLoad};
pub use bitcoin::p2p::message_compact_blocks::SendCmpct;
pub use bitcoin::p2p::message_filter::{GetCFCheckpt, GetCFHeaders, GetCFilters};
pub use bitcoin::p2p::message_network::{Reject, RejectReason, VersionMessage};
pub use bitcoin::p2p::ServiceFlags;
pub use codec::{Codec, CodecError, Frame, Payload, RawBlock};
pub use hash::{block_hash, block_hashes};
pub(crate) use hash::{extend_block_hashes, header_from_bytes};

/// Command names we count separately in statistics; anything else is `*other*` (as Core's
/// `getpeerinfo` does).
pub(crate) const KNOWN_COMMANDS: [&str; 38] = [
    "version",
    "verack",
    "addr",
    "addrv2",
    "inv",
    "getdata",
    "notfound",
    "getblocks",
    "getheaders",
    "mempool",
    "tx",
    "block",
    "headers",
    "sendheaders",
    "getaddr",
    "ping",
    "pong",
    "merkleblock",
    "filterload",
    "filteradd",
    "filterclear",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "sendcmpct",
    "cmpctblock",
    "getblocktxn",
    "blocktxn",
    "alert",
    "reject",
    "feefilter",
    "wtxidrelay",
    "sendaddrv2",
    "sendtxrcncl",
    "feature",
];

/// Statistics label for anything that is not a known command.
pub(crate) const OTHER_COMMAND: &str = "*other*";

/// Maps a raw 12-byte command field to a static name (`*other*` when unknown or invalid).
pub(crate) fn command_name(raw: &[u8; limits::MESSAGE_TYPE_SIZE]) -> &'static str {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let name = &raw[..end];
    KNOWN_COMMANDS.iter().find(|c| c.as_bytes() == name).copied().unwrap_or(OTHER_COMMAND)
}

/// Statistics label of a decoded message.
pub(crate) fn message_command(msg: &Message) -> &'static str {
    match msg {
        Message::Unknown { command, .. } => {
            let name = command.as_ref();
            KNOWN_COMMANDS.iter().find(|c| **c == name).copied().unwrap_or(OTHER_COMMAND)
        }
        other => other.cmd(),
    }
}

/// Turns an `addr` (v1) entry into the BIP155 form, so subscribers see one address type.
/// OnionCat-mapped (`fd87:d87e:eb43::/48`) entries become `TorV2`; IPv4-mapped become `Ipv4`.
pub(crate) fn addr_v1_to_v2(time: u32, addr: &Address) -> AddrV2Message {
    let words = addr.address;
    let ip = Ipv6Addr::new(words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7]);
    let octets = ip.octets();
    let addr_v2 = if octets[..6] == [0xfd, 0x87, 0xd8, 0x7e, 0xeb, 0x43] {
        let mut tor = [0u8; 10];
        tor.copy_from_slice(&octets[6..]);
        AddrV2::TorV2(tor)
    } else {
        match ip.to_ipv4_mapped() {
            Some(v4) => AddrV2::Ipv4(v4),
            None => AddrV2::Ipv6(ip),
        }
    };
    AddrV2Message { time, services: addr.services, addr: addr_v2, port: addr.port }
}

/// The `addr` (v1) form of a BIP155 entry, when v1 can encode it (IPv4, IPv6).
pub(crate) fn addr_v2_to_v1(a: &AddrV2Message) -> Option<(u32, Address)> {
    let ip = addr_ip(&a.addr)?;
    Some((a.time, Address::new(&std::net::SocketAddr::new(ip, a.port), a.services)))
}

/// A 32-byte key identifying an address entry (network, address bytes, port), for
/// known-address sets.
pub(crate) fn addr_key(a: &AddrV2Message) -> [u8; 32] {
    use bitcoin::hashes::{sha256, Hash};
    let mut bytes = bitcoin::consensus::encode::serialize(&a.addr);
    bytes.extend_from_slice(&a.port.to_be_bytes());
    sha256::Hash::hash(&bytes).to_byte_array()
}

/// The IP of a BIP155 address, when it has one.
pub(crate) fn addr_ip(addr: &AddrV2) -> Option<IpAddr> {
    match addr {
        AddrV2::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        AddrV2::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// Human-readable host part of a BIP155 address (Tor v3 as `.onion`, I2P as `.b32.i2p`).
pub fn addr_host(addr: &AddrV2) -> String {
    match addr {
        AddrV2::Ipv4(ip) => ip.to_string(),
        AddrV2::Ipv6(ip) | AddrV2::Cjdns(ip) => ip.to_string(),
        AddrV2::TorV3(pubkey) => format!("{}.onion", torv3_name(pubkey)),
        AddrV2::I2p(hash) => format!("{}.b32.i2p", base32(hash)),
        AddrV2::TorV2(id) => format!("{}.onion", base32(id)),
        AddrV2::Unknown(net, bytes) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("unknown-{net}:{hex}")
        }
    }
}

/// Short name of the address's network (BIP155 terms).
pub fn addr_network(addr: &AddrV2) -> &'static str {
    match addr {
        AddrV2::Ipv4(_) => "ipv4",
        AddrV2::Ipv6(_) => "ipv6",
        AddrV2::TorV2(_) => "torv2",
        AddrV2::TorV3(_) => "torv3",
        AddrV2::I2p(_) => "i2p",
        AddrV2::Cjdns(_) => "cjdns",
        AddrV2::Unknown(..) => "unknown",
    }
}

/// Tor v3 address: base32(pubkey || checksum || version), per rend-spec-v3.
fn torv3_name(pubkey: &[u8; 32]) -> String {
    use sha3::{Digest, Sha3_256};
    let checksum =
        Sha3_256::new().chain_update(b".onion checksum").chain_update(pubkey).chain_update([3u8]).finalize();
    let mut full = Vec::with_capacity(35);
    full.extend_from_slice(pubkey);
    full.extend_from_slice(&checksum[..2]);
    full.push(3);
    base32(&full)
}

/// RFC 4648 base32, lower case, no padding (as used in onion and I2P names).
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn command_names_map_to_static_labels() {
        let mut raw = [0u8; 12];
        raw[..3].copy_from_slice(b"inv");
        assert_eq!(command_name(&raw), "inv");
        raw[..5].copy_from_slice(b"xyzzy");
        assert_eq!(command_name(&raw), OTHER_COMMAND);
    }

    #[test]
    fn addr_v1_maps_ipv4_and_ipv6() {
        let v4 = Address::new(&"1.2.3.4:8333".parse().unwrap(), ServiceFlags::NETWORK);
        let m = addr_v1_to_v2(5, &v4);
        assert_eq!(m.addr, AddrV2::Ipv4(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!((m.port, m.time, m.services), (8333, 5, ServiceFlags::NETWORK));
        let v6 = Address::new(&"[2001:db8::1]:8333".parse().unwrap(), ServiceFlags::NONE);
        assert_eq!(addr_v1_to_v2(0, &v6).addr, AddrV2::Ipv6("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn torv3_name_matches_known_vector() {
        // Pubkey and name of a well-known v3 service descriptor example from rend-spec-v3 tests
        // (the Tor Project's own test vector: "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid").
        let name = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid";
        // Decode the base32 name back to the pubkey and re-encode through torv3_name.
        let decoded = base32_decode(name);
        let mut pubkey = [0u8; 32];
        pubkey.copy_from_slice(&decoded[..32]);
        assert_eq!(addr_host(&AddrV2::TorV3(pubkey)), format!("{name}.onion"));
    }

    fn base32_decode(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut buffer, mut bits) = (0u32, 0);
        for c in s.bytes() {
            let v = if c.is_ascii_lowercase() { c - b'a' } else { c - b'2' + 26 };
            buffer = (buffer << 5) | u32::from(v);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
            }
        }
        out
    }
}
