//! v1 message framing as a `tokio_util::codec` Decoder and Encoder.
//!
//! The decoder reads the 24-byte header first and rejects a wrong magic or an oversized length
//! before a single payload byte is buffered; it never reserves memory by the announced length.
//! Payloads are decoded with `bitcoin::consensus` (which also verifies the checksum, once).

use bitcoin::consensus::encode::{self, Decodable, Encodable};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::message::RawNetworkMessage;
use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::limits::{HEADER_SIZE, MAX_PROTOCOL_MESSAGE_LENGTH, MESSAGE_TYPE_SIZE};
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

/// One frame taken off the wire: its command, its size on the wire and the decoded message or
/// the reason it was dropped.
#[derive(Debug)]
pub struct Frame {
    /// Command name as counted in statistics (`*other*` for unknown commands).
    pub command: &'static str,
    /// Bytes this frame occupied on the wire (header included).
    pub wire_len: usize,
    /// The message, or why this one frame was rejected.
    pub message: Result<Message, CodecError>,
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
/// assert_eq!(frame.message.unwrap(), Message::Ping(7));
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
        let mut buf = BytesMut::new();
        self.write_frame(msg, &mut buf);
        buf.freeze()
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
        msg.consensus_encode(&mut BytesWriter(&mut payload)).expect("writing to a BytesMut cannot fail");
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
        let frame = src.split_to(wire_len);
        if !command_is_valid(&raw_cmd) {
            return Ok(Some(Frame { command, wire_len, message: Err(CodecError::InvalidCommand(raw_cmd)) }));
        }
        let message = decode_frame(&frame, command);
        Ok(Some(Frame { command, wire_len, message }))
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

fn decode_frame(frame: &[u8], command: &'static str) -> Result<Message, CodecError> {
    let mut reader = frame;
    match RawNetworkMessage::consensus_decode_from_finite_reader(&mut reader) {
        Ok(raw) => Ok(raw.into_payload()),
        Err(encode::Error::InvalidChecksum { .. }) => Err(CodecError::BadChecksum { command }),
        Err(e) if command == "version" => super::version::decode_lenient(&frame[HEADER_SIZE..])
            .map(Message::Version)
            .ok_or_else(|| CodecError::Malformed { command, reason: e.to_string() }),
        Err(e) => Err(CodecError::Malformed { command, reason: e.to_string() }),
    }
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
