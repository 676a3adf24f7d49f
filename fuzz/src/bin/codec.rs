//! The v1 frame decoder and every payload decoder (`btcpeer::wire::Codec`), on Regtest and
//! Mainnet magic.
//!
//! Input: a mode byte, then either raw stream bytes (bit 1 clear) or frames to build with the
//! right magic, length and checksum (bit 1 set: `[command index][u16 length][payload]`...), so
//! the fuzzer gets past the checksum into the payload decoders.
//! Invariants: never panics; frames account for every consumed byte; a fatal error ends the
//! stream; whatever decodes re-encodes and decodes to the same message.

use btcpeer::bitcoin::hashes::{sha256d, Hash as _};
use btcpeer::wire::{Codec, Message, Payload};
use btcpeer::Network;
use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// Commands framed with a valid checksum: every one the crate knows, plus an empty and an
/// unknown one.
const EXTRA_COMMANDS: [&str; 2] = ["", "unknownxyz"];

fn frame(magic: [u8; 4], command: &str, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&magic);
    let mut cmd = [0u8; 12];
    cmd[..command.len()].copy_from_slice(command.as_bytes());
    out.extend_from_slice(&cmd);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&sha256d::Hash::hash(payload).as_byte_array()[..4]);
    out.extend_from_slice(payload);
}

/// Builds well-formed frames from `[command index][u16 length][payload]` records.
fn frames(magic: [u8; 4], mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [cmd, lo, hi, rest @ ..] = data {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        let known = btcpeer::fuzz_api::COMMANDS;
        let i = usize::from(*cmd) % (known.len() + EXTRA_COMMANDS.len());
        let command = known.get(i).copied().unwrap_or_else(|| EXTRA_COMMANDS[i - known.len()]);
        frame(magic, command, &rest[..len], &mut out);
        data = &rest[len..];
    }
    out
}

fn check_round_trip(codec: &mut Codec, msg: &Message) {
    let mut buf = BytesMut::new();
    codec.encode(msg, &mut buf).expect("encoding into memory cannot fail");
    let again = codec.decode(&mut buf).expect("our own frame has our magic").expect("a whole frame");
    assert!(buf.is_empty(), "re-encoded frame left bytes behind");
    let again = again.into_message().expect("our own encoding decodes");
    assert_eq!(&again, msg, "decode(encode(m)) != m");
}

fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let network = if mode & 1 == 0 { Network::Regtest } else { Network::Mainnet };
    let magic = network.magic();
    let stream = if mode & 2 == 0 { rest.to_vec() } else { frames(magic, rest) };
    // Deliver the stream in chunks, as a socket would.
    let chunk = usize::from(mode >> 2).max(1) * 7;
    let mut codec = Codec::new(magic);
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert_eq!(before - buf.len(), frame.wire_len, "wire_len is not what was consumed");
                    consumed += frame.wire_len;
                    match frame.message {
                        Ok(Payload::Message(msg)) => check_round_trip(&mut codec, &msg),
                        Ok(Payload::Block(raw)) => {
                            let _ = raw.hash();
                            if let Ok(block) = raw.decode() {
                                let bytes = btcpeer::bitcoin::consensus::serialize(&block);
                                assert_eq!(bytes, raw.bytes(), "a block does not re-serialize to its bytes");
                            }
                        }
                        Err(e) => assert!(!e.is_fatal(), "fatal error inside a frame: {e}"),
                    }
                }
                Ok(None) => {
                    assert_eq!(before, buf.len(), "Ok(None) consumed bytes");
                    break;
                }
                Err(e) => {
                    assert!(e.is_fatal(), "a non-fatal error ended the stream: {e}");
                    let _ = e.to_string();
                    return;
                }
            }
        }
    }
    assert_eq!(consumed + buf.len(), stream.len(), "bytes lost between frames");
    let _ = codec.decode_eof(&mut buf);
}

fn main() {
    afl::fuzz!(|data: &[u8]| run(data));
}
