use super::*;

use crate::Network;
use bitcoin::hashes::{sha256d, Hash};

/// The mainnet genesis block as it travels in a `block` message (payload only).
pub(super) const GENESIS_BLOCK_HEX: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c0101000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000";

pub(super) fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

pub(super) fn mainnet() -> Codec {
    Codec::new(Network::Mainnet.magic())
}

/// A frame built by hand (independently of the encoder) with the given command and payload.
pub(super) fn raw_frame(magic: [u8; 4], command: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    let mut cmd = [0u8; 12];
    cmd[..command.len()].copy_from_slice(command);
    out.extend_from_slice(&cmd);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&sha256d::Hash::hash(payload).as_byte_array()[..4]);
    out.extend_from_slice(payload);
    out
}

#[test]
fn genesis_block_message_decodes_from_real_bytes() {
    let payload = hex(GENESIS_BLOCK_HEX);
    assert_eq!(payload.len(), 285);
    let frame = raw_frame(Network::Mainnet.magic(), b"block", &payload);
    // Header bytes as they appear on mainnet: magic, "block", length 285, checksum.
    assert_eq!(&frame[..24], &hex("f9beb4d9626c6f636b000000000000001d010000f71a2403")[..]);
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = mainnet().decode(&mut buf).unwrap().unwrap();
    assert_eq!(decoded.command, "block");
    assert_eq!(decoded.wire_len, 24 + 285);
    // Blocks stay raw until parsed; the hash comes from the header alone.
    match &decoded.message {
        Ok(Payload::Block(raw)) => assert_eq!(raw.hash(), Some(Network::Mainnet.genesis_hash())),
        other => panic!("expected a raw block, got {other:?}"),
    }
    match decoded.into_message().unwrap() {
        Message::Block(block) => assert_eq!(block.block_hash(), Network::Mainnet.genesis_hash()),
        other => panic!("expected block, got {other:?}"),
    }
    assert!(buf.is_empty());
    // Our encoder produces the identical bytes.
    let block = bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin);
    assert_eq!(&mainnet().encode_to_bytes(&Message::Block(block))[..], &frame[..]);
}

fn sample_stream() -> (Vec<u8>, Vec<Message>) {
    let codec = mainnet();
    let version = crate::wire::version::build(
        &crate::wire::version::LocalVersion { nonce: 9, ..Default::default() },
        None,
    );
    let msgs = vec![
        Message::Version(version),
        Message::Verack,
        Message::Ping(0x0102030405060708),
        Message::Block(bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin)),
        Message::SendAddrV2,
    ];
    let mut bytes = Vec::new();
    for m in &msgs {
        bytes.extend_from_slice(&codec.encode_to_bytes(m));
    }
    (bytes, msgs)
}

#[test]
fn stream_split_at_every_byte_decodes_the_same() {
    let (bytes, msgs) = sample_stream();
    for split in 0..=bytes.len() {
        let mut codec = mainnet();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in [&bytes[..split], &bytes[split..]] {
            buf.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                out.push(frame.into_message().unwrap());
            }
        }
        assert_eq!(out, msgs, "split at {split}");
    }
}

#[test]
fn byte_by_byte_feed_decodes_everything() {
    let (bytes, msgs) = sample_stream();
    let mut codec = mainnet();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for b in bytes {
        buf.extend_from_slice(&[b]);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame.into_message().unwrap());
        }
    }
    assert_eq!(out, msgs);
}

#[test]
fn oversized_length_rejected_from_the_header_alone() {
    let mut header = raw_frame(Network::Mainnet.magic(), b"block", &[]);
    header[16..20].copy_from_slice(&4_000_001u32.to_le_bytes());
    let mut buf = BytesMut::from(&header[..]);
    let err = mainnet().decode(&mut buf).unwrap_err();
    assert_eq!(err, CodecError::Oversized { command: "block", len: 4_000_001, max: 4_000_000 });
    assert!(err.is_fatal());
}

#[test]
fn announced_length_is_never_reserved() {
    let mut header = raw_frame(Network::Mainnet.magic(), b"block", &[]);
    header[16..20].copy_from_slice(&3_999_999u32.to_le_bytes());
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&header);
    buf.extend_from_slice(&[0u8; 10]);
    let before = buf.capacity();
    assert!(mainnet().decode(&mut buf).unwrap().is_none());
    assert_eq!(buf.capacity(), before, "decoder must not grow the buffer by the announced length");
}

#[test]
fn wrong_magic_is_fatal() {
    let frame = raw_frame(Network::Testnet3.magic(), b"verack", &[]);
    let err = mainnet().decode(&mut BytesMut::from(&frame[..])).unwrap_err();
    assert!(matches!(err, CodecError::BadMagic { .. }));
    assert!(err.is_fatal());
}

#[test]
fn bad_checksum_drops_one_frame_and_the_stream_continues() {
    let mut bad = raw_frame(Network::Mainnet.magic(), b"ping", &7u64.to_le_bytes());
    bad[20] ^= 0xff;
    let good = raw_frame(Network::Mainnet.magic(), b"pong", &7u64.to_le_bytes());
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&bad);
    buf.extend_from_slice(&good);
    let mut codec = mainnet();
    let first = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(first.message.unwrap_err(), CodecError::BadChecksum { command: "ping" });
    let second = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(second.into_message().unwrap(), Message::Pong(7));
}

#[test]
fn unknown_command_passes_through() {
    let frame = raw_frame(Network::Mainnet.magic(), b"frobnicate", b"abc");
    let decoded = mainnet().decode(&mut BytesMut::from(&frame[..])).unwrap().unwrap();
    assert_eq!(decoded.command, crate::wire::OTHER_COMMAND);
    match decoded.into_message().unwrap() {
        Message::Unknown { command, payload } => {
            assert_eq!(command.as_ref(), "frobnicate");
            assert_eq!(payload, b"abc");
        }
        other => panic!("expected unknown, got {other:?}"),
    }
}

#[test]
fn invalid_command_characters_are_rejected_per_frame() {
    let mut frame = raw_frame(Network::Mainnet.magic(), b"ping", &7u64.to_le_bytes());
    frame[4 + 6] = b'x'; // garbage after the first NUL
    let decoded = mainnet().decode(&mut BytesMut::from(&frame[..])).unwrap().unwrap();
    assert!(matches!(decoded.message, Err(CodecError::InvalidCommand(_))));
}

#[test]
fn malformed_payload_names_the_command() {
    let frame = raw_frame(Network::Mainnet.magic(), b"ping", &[1, 2, 3]);
    let decoded = mainnet().decode(&mut BytesMut::from(&frame[..])).unwrap().unwrap();
    match decoded.message {
        Err(CodecError::Malformed { command, .. }) => assert_eq!(command, "ping"),
        other => panic!("expected malformed, got {other:?}"),
    }
}

#[test]
fn partial_frame_at_eof_is_not_an_error() {
    let frame = raw_frame(Network::Mainnet.magic(), b"ping", &7u64.to_le_bytes());
    let mut buf = BytesMut::from(&frame[..30]);
    assert!(mainnet().decode_eof(&mut buf).unwrap().is_none());
}

#[test]
fn random_garbage_never_panics() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..2_000 {
        let len = rng.gen_range(0..200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if rng.gen_bool(0.7) && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(&Network::Mainnet.magic());
        }
        let mut codec = mainnet();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }
}
