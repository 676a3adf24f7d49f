//! BIP324 v2 packets after the handshake, Sans-I/O: [`V2Encoder`] serializes a message straight
//! into a packet and encrypts it in place; [`V2Decoder`] checks the length before buffering,
//! decrypts in place and hands the payload to the v1 codec's decoder as a view of the read
//! buffer. Neither computes the v1 checksum (v2 has none: the AEAD tag authenticates).

use bitcoin::hashes::{sha256d, Hash};
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::cipher::{RecvCipher, SendCipher, LENGTH_LEN, TAG_LEN};
use super::v2::{V2Error, IGNORE_BIT, MAX_CONTENTS_LEN, V2_MESSAGE_IDS};
use crate::wire::limits::{HEADER_SIZE, MESSAGE_TYPE_SIZE};
use crate::wire::{Codec, CodecError, Frame, Message};

/// Decodes v2 packets after the handshake into the same [`Frame`]s as the v1 codec.
///
/// The decrypted length is checked against [`MAX_CONTENTS_LEN`] before a byte of the packet is
/// kept; the buffer grows only as bytes arrive (never reserved by the announced length). The
/// payload is decrypted in place and handed to the codec as a view of the read buffer: no copy
/// and no v1 checksum (v2 has none; the AEAD tag authenticates it).
#[derive(Clone)]
pub(crate) struct V2Decoder {
    cipher: RecvCipher,
    /// The current packet's contents length, once read: the length cipher advances on every
    /// use, so it is read exactly once per packet.
    pending: Option<usize>,
    codec: Codec,
    magic: [u8; 4],
}

impl std::fmt::Debug for V2Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2Decoder").field("pending", &self.pending).finish_non_exhaustive()
    }
}

/// One packet taken off the wire.
#[derive(Debug)]
pub(crate) enum Packet {
    /// A message (or a message dropped for its own reason, as v1 frames are).
    Frame(Frame),
    /// A decoy or an unknown short id: dropped (Core: `V2Transport::GetReceivedMessage`
    /// returns no message type).
    Ignored,
}

impl V2Decoder {
    /// A decoder over the session's inbound cipher for the network with `magic`.
    pub(crate) fn new(cipher: RecvCipher, magic: [u8; 4]) -> Self {
        V2Decoder { cipher, pending: None, codec: Codec::new(magic), magic }
    }

    /// The next packet's plaintext (header byte, then contents) and its length on the wire,
    /// `Ok(None)` when more bytes are needed.
    pub(crate) fn decrypt_next(
        &mut self,
        src: &mut BytesMut,
        aad: &[u8],
    ) -> Result<Option<(BytesMut, usize)>, V2Error> {
        let contents_len = match self.pending {
            Some(len) => len,
            None => {
                if src.len() < LENGTH_LEN {
                    return Ok(None);
                }
                let len = self.cipher.decrypt_len([src[0], src[1], src[2]]);
                if len > MAX_CONTENTS_LEN {
                    return Err(V2Error::Oversized { len, max: MAX_CONTENTS_LEN });
                }
                src.advance(LENGTH_LEN);
                self.pending = Some(len);
                len
            }
        };
        let packet_len = 1 + contents_len + TAG_LEN;
        if src.len() < packet_len {
            return Ok(None);
        }
        self.pending = None;
        let mut packet = src.split_to(packet_len);
        self.cipher.open(&mut packet, aad)?;
        packet.truncate(packet_len - TAG_LEN);
        Ok(Some((packet, LENGTH_LEN + packet_len)))
    }

    /// The next packet in `src`, `Ok(None)` when more bytes are needed.
    pub(crate) fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, V2Error> {
        let Some((mut plain, wire_len)) = self.decrypt_next(src, &[])? else { return Ok(None) };
        if plain.first().is_some_and(|h| h & IGNORE_BIT != 0) {
            return Ok(Some(Packet::Ignored));
        }
        let mut contents = plain.split_off(1);
        let Some(raw_cmd) = message_type(&mut contents) else {
            return Ok(Some(Packet::Ignored));
        };
        let payload = contents.freeze();
        // Per-message log lines show a v1 frame; it is rebuilt only when they are on.
        let raw = if log_frames() { v1_frame(self.magic, &raw_cmd, &payload) } else { payload.clone() };
        // The codec decodes, limits and rejects the payload exactly as it does a v1 frame's.
        match self.codec.decode_unframed(&raw_cmd, payload, wire_len, raw) {
            Ok(frame) => Ok(Some(Packet::Frame(frame))),
            Err(CodecError::Oversized { len, max, .. }) => Err(V2Error::Oversized { len, max }),
            Err(_) => Ok(Some(Packet::Ignored)),
        }
    }
}

/// True when the peer's per-message debug/trace lines are on (they show the v1 frame).
fn log_frames() -> bool {
    tracing::enabled!(target: crate::peer::trace::TARGET, tracing::Level::DEBUG)
}

/// Core's `V2Transport::GetMessageType`: a known short id, or 0 and a 12-byte type that is
/// printable up to its first NUL and NUL after it. Removes it from `contents`.
fn message_type(contents: &mut BytesMut) -> Option<[u8; MESSAGE_TYPE_SIZE]> {
    let id = *contents.first()?;
    let mut raw = [0u8; MESSAGE_TYPE_SIZE];
    if id != 0 {
        let name = V2_MESSAGE_IDS.get(usize::from(id)).filter(|n| !n.is_empty())?;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        contents.advance(1);
        return Some(raw);
    }
    if contents.len() < 1 + MESSAGE_TYPE_SIZE {
        return None;
    }
    raw.copy_from_slice(&contents[1..=MESSAGE_TYPE_SIZE]);
    let end = raw.iter().position(|&b| b == 0).unwrap_or(MESSAGE_TYPE_SIZE);
    if end == 0 || !raw[..end].iter().all(|b| (0x20..=0x7e).contains(b)) || raw[end..].iter().any(|&b| b != 0)
    {
        return None;
    }
    contents.advance(1 + MESSAGE_TYPE_SIZE);
    Some(raw)
}

/// A v1 frame around `payload`, for the per-message log lines.
fn v1_frame(magic: [u8; 4], raw_cmd: &[u8; MESSAGE_TYPE_SIZE], payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_SIZE + payload.len());
    out.put_slice(&magic);
    out.put_slice(raw_cmd);
    // The payload is at most MAX_CONTENTS_LEN (checked above), far below 4 GiB.
    out.put_u32_le(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    out.put_slice(&sha256d::Hash::hash(payload).as_byte_array()[..4]);
    out.put_slice(payload);
    out.freeze()
}

/// Writes BIP324's message type: the short id where one exists, else 0 and the 12-byte type.
fn put_message_type(dst: &mut BytesMut, raw_cmd: &[u8; MESSAGE_TYPE_SIZE]) {
    let end = raw_cmd.iter().position(|&b| b == 0).unwrap_or(MESSAGE_TYPE_SIZE);
    let short = V2_MESSAGE_IDS.iter().position(|n| !n.is_empty() && n.as_bytes() == &raw_cmd[..end]);
    match short.and_then(|i| u8::try_from(i).ok()) {
        Some(id) => dst.put_u8(id),
        None => {
            dst.put_u8(0);
            dst.put_slice(raw_cmd);
        }
    }
}

/// Encrypts our messages as v2 packets.
#[derive(Clone)]
pub(crate) struct V2Encoder {
    cipher: SendCipher,
}

impl std::fmt::Debug for V2Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("V2Encoder")
    }
}

impl V2Encoder {
    /// An encoder over the session's outbound cipher.
    pub(crate) fn new(cipher: SendCipher) -> Self {
        V2Encoder { cipher }
    }

    /// One packet carrying `msg`: the payload is serialized straight into the packet buffer
    /// and encrypted in place (no v1 header, no checksum). `Err` with the v1 frame's length
    /// when that exceeds `max_frame` (the same limit on both transports); nothing was
    /// encrypted then, so the session's packet counter is untouched.
    pub(crate) fn encode_message(&mut self, msg: &Message, max_frame: usize) -> Result<Bytes, usize> {
        let mut raw = [0u8; MESSAGE_TYPE_SIZE];
        let command = msg.command();
        let name = command.as_ref().as_bytes();
        // CommandString guarantees at most 12 bytes.
        raw[..name.len()].copy_from_slice(name);
        let hint = Codec::payload_size_hint(msg);
        let mut buf = BytesMut::with_capacity(LENGTH_LEN + 2 + MESSAGE_TYPE_SIZE + hint + TAG_LEN);
        buf.put_bytes(0, LENGTH_LEN + 1); // the length (sealed below) and the header byte
        put_message_type(&mut buf, &raw);
        let start = buf.len();
        Codec::write_payload(msg, &mut buf);
        let frame_len = HEADER_SIZE + (buf.len() - start);
        if frame_len > max_frame {
            return Err(frame_len);
        }
        buf.put_bytes(0, TAG_LEN);
        self.cipher.seal(&mut buf, &[]);
        Ok(buf.freeze())
    }

    /// One packet for message type `raw_cmd` and `payload`.
    #[cfg(test)]
    pub(crate) fn encode(&mut self, raw_cmd: &[u8; MESSAGE_TYPE_SIZE], payload: &[u8]) -> Bytes {
        let mut contents = BytesMut::with_capacity(1 + MESSAGE_TYPE_SIZE + payload.len());
        put_message_type(&mut contents, raw_cmd);
        contents.put_slice(payload);
        self.packet(&contents, bip324::PacketType::Genuine)
    }

    /// One packet with these raw contents.
    #[cfg(any(test, feature = "fuzz"))]
    pub(crate) fn packet(&mut self, contents: &[u8], kind: bip324::PacketType) -> Bytes {
        self.packet_with_aad(contents, kind == bip324::PacketType::Decoy, &[])
    }

    /// One packet with these raw contents, the ignore bit and associated data (BIP324
    /// `v2_enc_packet`).
    #[cfg(any(test, feature = "fuzz"))]
    pub(crate) fn packet_with_aad(&mut self, contents: &[u8], ignore: bool, aad: &[u8]) -> Bytes {
        let mut buf = BytesMut::with_capacity(LENGTH_LEN + 1 + contents.len() + TAG_LEN);
        buf.put_bytes(0, LENGTH_LEN);
        buf.put_u8(if ignore { IGNORE_BIT } else { 0 });
        buf.put_slice(contents);
        buf.put_bytes(0, TAG_LEN);
        self.cipher.seal(&mut buf, aad);
        buf.freeze()
    }
}
