//! v1 message framing as a `tokio_util::codec` Decoder and Encoder.
//!
//! The decoder reads the 24-byte header first and rejects a wrong magic or an oversized length
//! before a single payload byte is buffered; it never reserves memory by the announced length.
//! The checksum is verified once, on the buffered frame; the payload is then decoded in place with
//! `bitcoin::consensus`, dispatching on the command as bitcoin's `RawNetworkMessage` does (a test
//! checks both give the same result for every message type).

use bitcoin::block::Header;
use bitcoin::consensus::encode::{self, Decodable, Encodable, VarInt};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::message::CommandString;
use bitcoin::SignedAmount;
use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::limits::{HEADER_SIZE, MAX_HEADERS_RESULTS, MAX_PROTOCOL_MESSAGE_LENGTH, MESSAGE_TYPE_SIZE};
use super::{command_name, Message};

/// Why bytes from a peer could not be turned into a message.
///
/// `BadMagic` and `Oversized` are fatal for the stream (the decoder returns them as `Err` and the
/// connection must close, as Core does). The others concern one frame only: the frame has been
/// consumed and the stream can continue (Core drops such messages and keeps the connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame does not start with this network's magic bytes.
    #[error("bad network magic {got:02x?}, expected {expected:02x?}")]
    BadMagic {
        /// What we expected.
        expected: [u8; 4],
        /// What arrived.
        got: [u8; 4],
    },
    /// The header announces a payload larger than the protocol allows.
    #[error("{command} message announces {len} bytes, limit is {max}")]
    Oversized {
        /// Command name (or `*other*`).
        command: &'static str,
        /// Announced payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload's checksum does not match the header.
    #[error("{command} message has a bad checksum")]
    BadChecksum {
        /// Command name.
        command: &'static str,
    },
    /// The command field has characters outside 0x20..0x7e or garbage after the first NUL.
    #[error("invalid command field {0:02x?}")]
    InvalidCommand([u8; MESSAGE_TYPE_SIZE]),
    /// A list message announcing more entries than Core accepts, reported as soon as the count is
    /// read (before the entries, which may not even be there): Core checks a `headers` count
    /// right after `ReadCompactSize` and punishes it (`ProcessMessage`, HEADERS). Concerns this
    /// frame only; the machine decides what it costs.
    #[error("{command} message announces {count} entries, limit is {max}")]
    TooManyEntries {
        /// Command name.
        command: &'static str,
        /// Announced count.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// A known command whose payload could not be decoded.
    #[error("malformed {command} payload: {reason}")]
    Malformed {
        /// Command name.
        command: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// Reading from the socket failed.
    #[error("i/o error: {0}")]
    Io(String),
}

impl From<std::io::Error> for CodecError {
    fn from(e: std::io::Error) -> Self {
        CodecError::Io(e.to_string())
    }
}

impl CodecError {
    /// True when the stream cannot continue after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, CodecError::BadMagic { .. } | CodecError::Oversized { .. } | CodecError::Io(_))
    }
}

/// One frame taken off the wire: its command, its size on the wire and its payload or the
/// reason it was dropped.
#[derive(Debug)]
pub struct Frame {
    /// Command name as counted in statistics (`*other*` for unknown commands).
    pub command: &'static str,
    /// Bytes this frame occupied on the wire (header included).
    pub wire_len: usize,
    /// The payload, or why this one frame was rejected.
    pub message: Result<Payload, CodecError>,
    /// The whole frame as it arrived (header and payload), for trace logs: a view of the read
    /// buffer, not a copy, released with the frame. A v2 packet has no v1 header: there it is
    /// the v1 frame rebuilt while per-message logs are on, else the payload.
    pub raw: Bytes,
}

impl Frame {
    /// The decoded message, parsing a block body if needed.
    pub fn into_message(self) -> Result<Message, CodecError> {
        self.message.and_then(Payload::into_message)
    }
}

/// A decoded payload. Blocks stay raw (checksum verified) until someone needs the `Block`:
/// parsing a 1 MB block costs about three times its checksum, and most consumers of a peer's
/// traffic never look inside blocks.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Any message but `block`.
    Message(Message),
    /// A `block` message, not parsed yet.
    Block(RawBlock),
}

impl Payload {
    /// The message, parsing a raw block.
    pub fn into_message(self) -> Result<Message, CodecError> {
        match self {
            Payload::Message(m) => Ok(m),
            Payload::Block(raw) => raw.decode().map(Message::Block),
        }
    }
}

/// The payload of a `block` message whose checksum was verified, parsed on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBlock {
    bytes: Bytes,
}

impl RawBlock {
    /// The serialized block.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The block hash, from the 80-byte header (`None` if the payload is shorter).
    pub fn hash(&self) -> Option<bitcoin::BlockHash> {
        let header = self.bytes.get(..80)?;
        bitcoin::consensus::deserialize::<bitcoin::block::Header>(header).ok().map(|h| h.block_hash())
    }

    /// Parses the block; a malformed one is `CodecError::Malformed`.
    pub fn decode(&self) -> Result<bitcoin::Block, CodecError> {
        let mut r = &self.bytes[..];
        let block = bitcoin::Block::consensus_decode_from_finite_reader(&mut r)
            .map_err(|e| CodecError::Malformed { command: "block", reason: e.to_string() })?;
        if !r.is_empty() {
            let e = encode::Error::ParseFailed("extra bytes after network message payload");
            return Err(CodecError::Malformed { command: "block", reason: e.to_string() });
        }
        Ok(block)
    }
}

/// v1 transport codec for one network.
///
/// ```
/// use btcpeer::wire::{Codec, Message};
/// use bytes::BytesMut;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = Codec::new(btcpeer::Network::Regtest.magic());
/// let mut buf = BytesMut::new();
/// codec.encode(&Message::Ping(7), &mut buf).unwrap();
/// let frame = codec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(frame.into_message().unwrap(), Message::Ping(7));
/// ```
#[derive(Debug, Clone)]
pub struct Codec {
    magic: [u8; 4],
    max_payload: usize,
}

impl Codec {
    /// A codec for the network with these magic bytes, limited to Core's 4,000,000-byte payloads.
    pub fn new(magic: [u8; 4]) -> Self {
        Codec { magic, max_payload: MAX_PROTOCOL_MESSAGE_LENGTH }
    }

    /// The same with a smaller payload limit (never larger than the protocol's).
    pub fn with_max_payload(mut self, max: usize) -> Self {
        self.max_payload = max.min(MAX_PROTOCOL_MESSAGE_LENGTH);
        self
    }

    /// Encodes one message into a new buffer (header and payload).
    pub fn encode_to_bytes(&self, msg: &Message) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_SIZE + Self::payload_size_hint(msg));
        self.write_frame(msg, &mut buf);
        buf.freeze()
    }

    /// The payload size of the messages that can be large (blocks, transactions, unknown
    /// ones), so their buffer is allocated once; a small guess for the rest.
    pub(crate) fn payload_size_hint(msg: &Message) -> usize {
        match msg {
            Message::Block(b) => b.total_size(),
            Message::Tx(tx) => tx.total_size(),
            Message::Unknown { payload, .. } => payload.len(),
            _ => 64,
        }
    }

    /// Appends the payload of `msg` (no header) to `dst`: v1 frames it, v2 puts it in a packet.
    pub(crate) fn write_payload(msg: &Message, dst: &mut BytesMut) {
        msg.consensus_encode(&mut BytesWriter(dst)).expect("writing to a BytesMut cannot fail");
    }

    /// Decodes a payload that arrived without a v1 header (a v2 packet's, authenticated by its
    /// tag: there is no checksum) with the same limits and rules as a v1 frame's. `raw` is
    /// what the frame shows as its bytes. `Err` only for `Oversized` (fatal, as on v1).
    pub(crate) fn decode_unframed(
        &self,
        raw_cmd: &[u8; MESSAGE_TYPE_SIZE],
        payload: Bytes,
        wire_len: usize,
        raw: Bytes,
    ) -> Result<Frame, CodecError> {
        let command = command_name(raw_cmd);
        if payload.len() > self.max_payload {
            return Err(CodecError::Oversized { command, len: payload.len(), max: self.max_payload });
        }
        let message = if command_is_valid(raw_cmd) {
            decode_checked(command, raw_cmd, payload)
        } else {
            Err(CodecError::InvalidCommand(*raw_cmd))
        };
        Ok(Frame { command, wire_len, message, raw })
    }

    fn write_frame(&self, msg: &Message, dst: &mut BytesMut) {
        let start = dst.len();
        dst.reserve(HEADER_SIZE);
        dst.put_slice(&self.magic);
        let mut cmd = [0u8; MESSAGE_TYPE_SIZE];
        let command = msg.command();
        let name = command.as_ref().as_bytes();
        // CommandString guarantees at most 12 bytes.
        cmd[..name.len()].copy_from_slice(name);
        dst.put_slice(&cmd);
        dst.put_slice(&[0u8; 8]); // length and checksum, patched below
        let mut payload = dst.split_off(dst.len());
        Self::write_payload(msg, &mut payload);
        let len = u32::try_from(payload.len()).expect("our own messages are far below 4 GiB");
        let checksum = sha256d::Hash::hash(&payload);
        dst[start + 16..start + 20].copy_from_slice(&len.to_le_bytes());
        dst[start + 20..start + 24].copy_from_slice(&checksum.as_byte_array()[..4]);
        dst.unsplit(payload);
    }
}

/// Lets `bitcoin::consensus` serialize straight into a `BytesMut`.
struct BytesWriter<'a>(&'a mut BytesMut);

impl bitcoin::io::Write for BytesWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> bitcoin::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> bitcoin::io::Result<()> {
        Ok(())
    }
}

/// Checks the command field as Core's `IsMessageTypeValid` does: printable ASCII up to the first
/// NUL, only NULs after it.
fn command_is_valid(raw: &[u8; MESSAGE_TYPE_SIZE]) -> bool {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(MESSAGE_TYPE_SIZE);
    raw[..end].iter().all(|b| (0x20..=0x7e).contains(b)) && raw[end..].iter().all(|&b| b == 0)
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if src.len() < HEADER_SIZE {
            return Ok(None);
        }
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&src[..4]);
        if magic != self.magic {
            return Err(CodecError::BadMagic { expected: self.magic, got: magic });
        }
        let mut raw_cmd = [0u8; MESSAGE_TYPE_SIZE];
        raw_cmd.copy_from_slice(&src[4..16]);
        let command = command_name(&raw_cmd);
        let len = u32::from_le_bytes([src[16], src[17], src[18], src[19]]) as usize;
        if len > self.max_payload {
            return Err(CodecError::Oversized { command, len, max: self.max_payload });
        }
        let wire_len = HEADER_SIZE + len;
        if src.len() < wire_len {
            // Wait for the rest; FramedRead grows the buffer as bytes really arrive.
            return Ok(None);
        }
        let frame = src.split_to(wire_len).freeze();
        if !command_is_valid(&raw_cmd) {
            let message = Err(CodecError::InvalidCommand(raw_cmd));
            return Ok(Some(Frame { command, wire_len, message, raw: frame }));
        }
        let message = verify_checksum(&frame, command)
            .and_then(|()| decode_checked(command, &raw_cmd, frame.slice(HEADER_SIZE..)));
        Ok(Some(Frame { command, wire_len, message, raw: frame }))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        // A partial frame at EOF is just the end of the connection, not an error worth reporting.
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None => {
                buf.clear();
                Ok(None)
            }
        }
    }
}

/// Compares the header's checksum with the payload's double SHA-256 (hashed exactly once).
fn verify_checksum(frame: &[u8], command: &'static str) -> Result<(), CodecError> {
    if sha256d::Hash::hash(&frame[HEADER_SIZE..]).as_byte_array()[..4] != frame[20..24] {
        return Err(CodecError::BadChecksum { command });
    }
    Ok(())
}

/// Decodes an authenticated payload (v1: checksum verified; v2: tag verified) of a valid
/// command: a block stays raw, anything else is decoded in place.
fn decode_checked(
    command: &'static str,
    raw_cmd: &[u8; MESSAGE_TYPE_SIZE],
    payload: Bytes,
) -> Result<Payload, CodecError> {
    if command == "block" {
        return Ok(Payload::Block(RawBlock { bytes: payload }));
    }
    decode_message(&payload, command, raw_cmd).map(Payload::Message)
}

/// Decodes a payload in place (its checksum or tag already verified).
fn decode_message(
    payload: &[u8],
    command: &'static str,
    raw_cmd: &[u8; MESSAGE_TYPE_SIZE],
) -> Result<Message, CodecError> {
    if command == "headers" {
        if let Some(count) = headers_count_over_limit(payload) {
            return Err(CodecError::TooManyEntries { command, count, max: MAX_HEADERS_RESULTS });
        }
    }
    match decode_payload(command, raw_cmd, payload) {
        Ok(message) => Ok(message),
        Err(e) if command == "version" => super::version::decode_lenient(payload)
            .map(Message::Version)
            .ok_or_else(|| CodecError::Malformed { command, reason: e.to_string() }),
        Err(e) => Err(CodecError::Malformed { command, reason: e.to_string() }),
    }
}

/// Decodes a checksum-verified payload exactly as bitcoin 0.32's `RawNetworkMessage` decoder
/// does, but from the borrowed slice: no payload copy, no command `String` for known commands.
/// `command` is `command_name(raw_cmd)`; commands bitcoin does not decode become `Unknown`.
fn decode_payload(
    command: &'static str,
    raw_cmd: &[u8; MESSAGE_TYPE_SIZE],
    payload: &[u8],
) -> Result<Message, encode::Error> {
    let mut r = payload;
    let r = &mut r;
    let message = match command {
        "version" => Message::Version(Decodable::consensus_decode_from_finite_reader(r)?),
        "verack" => Message::Verack,
        "addr" => Message::Addr(Decodable::consensus_decode_from_finite_reader(r)?),
        "inv" => Message::Inv(Decodable::consensus_decode_from_finite_reader(r)?),
        "getdata" => Message::GetData(Decodable::consensus_decode_from_finite_reader(r)?),
        "notfound" => Message::NotFound(Decodable::consensus_decode_from_finite_reader(r)?),
        "getblocks" => Message::GetBlocks(Decodable::consensus_decode_from_finite_reader(r)?),
        "getheaders" => Message::GetHeaders(Decodable::consensus_decode_from_finite_reader(r)?),
        "mempool" => Message::MemPool,
        "block" => Message::Block(Decodable::consensus_decode_from_finite_reader(r)?),
        "headers" => Message::Headers(decode_headers(r)?),
        "sendheaders" => Message::SendHeaders,
        "getaddr" => Message::GetAddr,
        "ping" => Message::Ping(Decodable::consensus_decode_from_finite_reader(r)?),
        "pong" => Message::Pong(Decodable::consensus_decode_from_finite_reader(r)?),
        "merkleblock" => Message::MerkleBlock(Decodable::consensus_decode_from_finite_reader(r)?),
        "filterload" => Message::FilterLoad(Decodable::consensus_decode_from_finite_reader(r)?),
        "filteradd" => Message::FilterAdd(Decodable::consensus_decode_from_finite_reader(r)?),
        "filterclear" => Message::FilterClear,
        "tx" => Message::Tx(Decodable::consensus_decode_from_finite_reader(r)?),
        "getcfilters" => Message::GetCFilters(Decodable::consensus_decode_from_finite_reader(r)?),
        "cfilter" => Message::CFilter(Decodable::consensus_decode_from_finite_reader(r)?),
        "getcfheaders" => Message::GetCFHeaders(Decodable::consensus_decode_from_finite_reader(r)?),
        "cfheaders" => Message::CFHeaders(Decodable::consensus_decode_from_finite_reader(r)?),
        "getcfcheckpt" => Message::GetCFCheckpt(Decodable::consensus_decode_from_finite_reader(r)?),
        "cfcheckpt" => Message::CFCheckpt(Decodable::consensus_decode_from_finite_reader(r)?),
        "reject" => Message::Reject(Decodable::consensus_decode_from_finite_reader(r)?),
        "alert" => Message::Alert(Decodable::consensus_decode_from_finite_reader(r)?),
        "feefilter" => {
            let fee: i64 = Decodable::consensus_decode_from_finite_reader(r)?;
            // Core's MoneyRange, as bitcoin checks it.
            if !(0..=SignedAmount::MAX_MONEY.to_sat()).contains(&fee) {
                return Err(encode::Error::ParseFailed("feefilter value out of range"));
            }
            Message::FeeFilter(fee)
        }
        "sendcmpct" => Message::SendCmpct(decode_sendcmpct(r)?),
        "cmpctblock" => Message::CmpctBlock(Decodable::consensus_decode_from_finite_reader(r)?),
        "getblocktxn" => Message::GetBlockTxn(Decodable::consensus_decode_from_finite_reader(r)?),
        "blocktxn" => Message::BlockTxn(Decodable::consensus_decode_from_finite_reader(r)?),
        "wtxidrelay" => Message::WtxidRelay,
        "addrv2" => Message::AddrV2(Decodable::consensus_decode_from_finite_reader(r)?),
        "sendaddrv2" => Message::SendAddrV2,
        // Includes names we count but bitcoin does not decode (`sendtxrcncl`, `feature`). No
        // trailing-bytes check: the payload is kept whole.
        _ => return Ok(Message::Unknown { command: unknown_command(raw_cmd)?, payload: payload.to_vec() }),
    };
    if !r.is_empty() {
        return Err(encode::Error::ParseFailed("extra bytes after network message payload"));
    }
    Ok(message)
}

/// Smallest size of one `headers` entry: an 80-byte header and a one-byte transaction count.
const HEADERS_ENTRY_SIZE: usize = 81;

/// Core's `MAX_SIZE` (`serialize.h`): `ReadCompactSize` throws above it (range check).
const MAX_SIZE: u64 = 0x0200_0000;

/// Core's `ReadCompactSize` (`serialize.h`): canonical encoding (as bitcoin's `VarInt` checks)
/// and at most `MAX_SIZE`.
fn read_compact_size(r: &mut &[u8]) -> Result<u64, encode::Error> {
    let n = VarInt::consensus_decode_from_finite_reader(r)?.0;
    if n > MAX_SIZE {
        return Err(encode::Error::ParseFailed("compact size exceeds MAX_SIZE"));
    }
    Ok(n)
}

/// The `headers` count when it is over `MAX_HEADERS_RESULTS` (and still a valid compact size).
/// Core reads the count and punishes before it reads a single header (`ProcessMessage`,
/// HEADERS: `ReadCompactSize`, then `nCount > max_headers_result` → `Misbehaving`), so whether
/// the entries are there does not matter.
fn headers_count_over_limit(payload: &[u8]) -> Option<u64> {
    let count = read_compact_size(&mut &payload[..]).ok()?;
    (count > MAX_HEADERS_RESULTS as u64).then_some(count)
}

/// `headers` payload: a count, then each header followed by a transaction count that Core reads
/// and ignores (`ProcessMessage`, HEADERS: `ReadCompactSize(vRecv); // ignore tx count`).
/// bitcoin's own wrapper for this is private and, unlike Core, refuses a non-zero count.
fn decode_headers(r: &mut &[u8]) -> Result<Vec<Header>, encode::Error> {
    let count = read_compact_size(r)?;
    // Never reserve more than the remaining bytes can hold, whatever the count says.
    let fits = r.len() / HEADERS_ENTRY_SIZE;
    let mut headers = Vec::with_capacity(usize::try_from(count).unwrap_or(usize::MAX).min(fits));
    for _ in 0..count {
        // The common entry (80 bytes, a one-byte tx count) read straight from the slice; any
        // other goes through bitcoin's reader, which also reports a short one.
        if let Some((entry, rest)) = r.split_first_chunk::<HEADERS_ENTRY_SIZE>() {
            if entry[80] < 0xfd {
                headers.push(super::hash::header_from_bytes(entry));
                *r = rest;
                continue;
            }
        }
        headers.push(Header::consensus_decode_from_finite_reader(r)?);
        read_compact_size(r)?;
    }
    Ok(headers)
}

/// `sendcmpct` as Core reads it (`ProcessMessage`, SENDCMPCT: `vRecv >> sendcmpct_hb >>
/// sendcmpct_version`): the announce flag is a `bool`, and Core's `bool` unserializer takes any
/// non-zero byte as true (`serialize.h`, `Unserialize(Stream&, bool&)`). bitcoin refuses
/// bytes other than 0 and 1.
fn decode_sendcmpct(r: &mut &[u8]) -> Result<crate::wire::SendCmpct, encode::Error> {
    let announce = u8::consensus_decode_from_finite_reader(r)?;
    let version = u64::consensus_decode_from_finite_reader(r)?;
    Ok(crate::wire::SendCmpct { send_compact: announce != 0, version })
}

/// The command field of an unknown message, trimmed of NUL padding as bitcoin does.
fn unknown_command(raw: &[u8; MESSAGE_TYPE_SIZE]) -> Result<CommandString, encode::Error> {
    let trimmed = &raw[..raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)];
    if !trimmed.is_ascii() {
        return Err(encode::Error::ParseFailed("Command string must be ASCII"));
    }
    let name = String::from_utf8(trimmed.to_vec()).expect("ASCII is UTF-8");
    Ok(CommandString::try_from(name).expect("at most 12 bytes"))
}

impl Encoder<&Message> for Codec {
    type Error = CodecError;

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.write_frame(msg, dst);
        Ok(())
    }
}

impl Encoder<Message> for Codec {
    type Error = CodecError;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.write_frame(&msg, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_equivalence;
#[cfg(test)]
mod tests_unframed;
