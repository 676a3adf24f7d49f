//! Protocol limits and version numbers, each named after the Bitcoin Core constant it mirrors.

/// Size of the v1 message header: magic, command, length, checksum (`CMessageHeader::HEADER_SIZE`, `protocol.h`).
pub const HEADER_SIZE: usize = 24;
/// Length of the NUL-padded command field (`CMessageHeader::MESSAGE_TYPE_SIZE`, `protocol.h`).
pub const MESSAGE_TYPE_SIZE: usize = 12;
/// Largest payload Core accepts; it closes the socket on larger announced lengths (`net.h`).
pub const MAX_PROTOCOL_MESSAGE_LENGTH: usize = 4_000_000;
/// Longest user agent Core accepts in `version` (`net.h` `MAX_SUBVERSION_LENGTH`).
pub const MAX_SUBVERSION_LENGTH: usize = 256;
/// Most entries in one `inv`/`getdata`; more is misbehaviour (`net_processing.cpp` `MAX_INV_SZ`).
pub const MAX_INV_SZ: usize = 50_000;
/// Most entries of a `notfound` Core looks at: a longer one is ignored whole, without penalty
/// (`net_processing.cpp`, NOTFOUND: `MAX_PEER_TX_ANNOUNCEMENTS + MAX_BLOCKS_IN_TRANSIT_PER_PEER`,
/// 5,000 + 16).
pub const MAX_NOTFOUND_PROCESSED: usize = 5_016;
/// Most entries Core puts in one `getdata` it sends (`net_processing.cpp` `MAX_GETDATA_SZ`).
pub const MAX_GETDATA_SZ: usize = 1_000;
/// Most addresses in one `addr`/`addrv2`; more is misbehaviour (`net_processing.cpp` `MAX_ADDR_TO_SEND`).
pub const MAX_ADDR_TO_SEND: usize = 1_000;
/// Most headers in one `headers` message (`net_processing.h` `MAX_HEADERS_RESULTS`).
pub const MAX_HEADERS_RESULTS: usize = 2_000;
/// Most locator hashes in `getheaders`/`getblocks` (`net_processing.cpp` `MAX_LOCATOR_SZ`).
pub const MAX_LOCATOR_SZ: usize = 101;

/// The protocol version we advertise: 70016 (wtxidrelay), not 70017, because we do not parse
/// BIP434 `feature` messages (peer-etiquette.md §2.7).
pub const PROTOCOL_VERSION: u32 = 70_016;
/// Older peers are disconnected (`node/protocol_version.h` `MIN_PEER_PROTO_VERSION`).
pub const MIN_PEER_PROTO_VERSION: u32 = 31_800;
/// Pings carry a nonce and pongs exist for versions above this (`BIP0031_VERSION`).
pub const BIP0031_VERSION: u32 = 60_000;
/// `sendheaders` is understood from this version (`SENDHEADERS_VERSION`, BIP130).
pub const SENDHEADERS_VERSION: u32 = 70_012;
/// `feefilter` is understood from this version (`FEEFILTER_VERSION`, BIP133).
pub const FEEFILTER_VERSION: u32 = 70_013;
/// Compact blocks from this version (`SHORT_IDS_BLOCKS_VERSION`, BIP152).
pub const SHORT_IDS_BLOCKS_VERSION: u32 = 70_014;
/// `wtxidrelay` and `sendaddrv2` are sent to peers from this version (`WTXID_RELAY_VERSION`, BIP339).
pub const WTXID_RELAY_VERSION: u32 = 70_016;
/// `reject` messages (BIP61) are understood from this version; Core stopped sending them in 0.20.
pub const REJECT_VERSION: u32 = 70_002;
