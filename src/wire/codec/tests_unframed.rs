//! v2's frameless payloads (`decode_unframed`): the same messages, limits and command rules
//! as v1 frames.

use super::tests::{hex, mainnet, raw_frame, GENESIS_BLOCK_HEX};
use super::tests_equivalence::{every_variant, frame_of, ours, same_outcome};
use super::*;
use crate::Network;

/// The v1 decode of `frame` and the unframed (v2) decode of its payload, as comparable results.
fn both_ways(frame: &[u8]) -> (Result<Message, CodecError>, Result<Message, CodecError>) {
    let mut raw_cmd = [0u8; MESSAGE_TYPE_SIZE];
    raw_cmd.copy_from_slice(&frame[4..16]);
    let payload = Bytes::copy_from_slice(&frame[HEADER_SIZE..]);
    let unframed = mainnet().decode_unframed(&raw_cmd, payload.clone(), 7, payload).unwrap();
    assert_eq!(unframed.wire_len, 7);
    (ours(frame).into_message(), unframed.into_message())
}

#[test]
fn unframed_payloads_decode_exactly_as_v1_frames() {
    for msg in every_variant() {
        let frame = frame_of(&msg);
        // The v2 encoder writes the same payload bytes the v1 frame carries.
        let mut payload = BytesMut::new();
        Codec::write_payload(&msg, &mut payload);
        assert_eq!(&payload[..], &frame[HEADER_SIZE..], "{}", msg.command());
        let (v1, v2) = both_ways(&frame);
        assert!(same_outcome(&v1, &v2), "{}: {v1:?} vs {v2:?}", msg.command());
        // Truncated payloads fail (or pass) the same way too.
        let command = &frame[4..4 + msg.command().as_ref().len()];
        for len in 0..frame.len() - HEADER_SIZE {
            let cut = raw_frame(Network::Mainnet.magic(), command, &frame[HEADER_SIZE..HEADER_SIZE + len]);
            let (v1, v2) = both_ways(&cut);
            assert!(same_outcome(&v1, &v2), "{} cut at {len}: {v1:?} vs {v2:?}", msg.command());
        }
    }
}

#[test]
fn unframed_payloads_keep_the_limits_and_command_rules() {
    let codec = mainnet().with_max_payload(10);
    let raw = |c: &[u8]| {
        let mut r = [0u8; MESSAGE_TYPE_SIZE];
        r[..c.len()].copy_from_slice(c);
        r
    };
    let big = Bytes::from(vec![0u8; 11]);
    assert_eq!(
        codec.decode_unframed(&raw(b"ping"), big.clone(), 0, big).unwrap_err(),
        CodecError::Oversized { command: "ping", len: 11, max: 10 }
    );
    let bad = raw(b"pi\x01ng");
    let frame = codec.decode_unframed(&bad, Bytes::new(), 0, Bytes::new()).unwrap();
    assert_eq!(frame.message.unwrap_err(), CodecError::InvalidCommand(bad));
    // A block stays raw, a view of the payload given.
    let body = Bytes::from(hex(GENESIS_BLOCK_HEX));
    let frame = mainnet().decode_unframed(&raw(b"block"), body.clone(), 0, body.clone()).unwrap();
    let Ok(Payload::Block(block)) = frame.message else { panic!("a raw block") };
    assert_eq!(block.bytes().as_ptr(), body.as_ptr());
    assert_eq!(block.hash(), Some(Network::Mainnet.genesis_hash()));
}
