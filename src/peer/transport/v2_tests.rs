use super::*;
use crate::network::Network;
use crate::wire::{Codec, Message};
use bip324::PacketType;

fn magic() -> [u8; 4] {
    Network::Regtest.magic()
}

/// Runs both ends of a handshake to completion, shuttling bytes; returns both sessions and what
/// each side received after the other's version packet.
fn pair(init_garbage: Vec<u8>, resp_garbage: Vec<u8>) -> (Session, Session) {
    let mut a = V2Handshake::new(magic(), true, [1; 32], init_garbage);
    let mut b = V2Handshake::new(magic(), false, [2; 32], resp_garbage);
    let mut to_b = match a.feed(&[], false).unwrap() {
        Step::Pending { send } => send,
        other => panic!("{other:?}"),
    };
    let mut to_a = Vec::new();
    let (mut sa, mut sb) = (None, None);
    for _ in 0..10 {
        if sb.is_none() {
            match b.feed(&std::mem::take(&mut to_b), false).unwrap() {
                Step::Pending { send } => to_a.extend(send),
                Step::Done { send, session, .. } => {
                    to_a.extend(send);
                    sb = Some(session);
                }
            }
        }
        if sa.is_none() {
            match a.feed(&std::mem::take(&mut to_a), false).unwrap() {
                Step::Pending { send } => to_b.extend(send),
                Step::Done { send, session, .. } => {
                    to_b.extend(send);
                    sa = Some(session);
                }
            }
        }
        if sa.is_some() && sb.is_some() {
            break;
        }
    }
    (*sa.expect("initiator done"), *sb.expect("responder done"))
}

fn roundtrip(enc: &mut V2Encoder, dec: &mut V2Decoder, msg: &Message) -> (Message, usize) {
    let packet = enc.encode_message(msg, usize::MAX).unwrap();
    let mut buf = BytesMut::from(&packet[..]);
    match dec.decode(&mut buf).unwrap() {
        Some(Packet::Frame(f)) => {
            assert!(buf.is_empty());
            (f.into_message().unwrap(), packet.len())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn both_ends_agree_and_messages_round_trip_with_short_ids() {
    let (a, b) = pair(vec![7; 100], vec![9; MAX_GARBAGE_LEN]);
    assert_eq!(a.id, b.id);
    let mut enc = V2Encoder::new(a.outbound);
    let mut dec = V2Decoder::new(b.inbound, magic());
    // ping has short id 18: 3 length + 1 header + 1 id + 8 payload + 16 tag.
    let (m, len) = roundtrip(&mut enc, &mut dec, &Message::Ping(5));
    assert_eq!((m, len), (Message::Ping(5), 3 + 1 + 1 + 8 + 16));
    // verack has no short id: 0 and the 12-byte type.
    let (m, len) = roundtrip(&mut enc, &mut dec, &Message::Verack);
    assert_eq!((m, len), (Message::Verack, 3 + 1 + 13 + 16));
    let (m, _) = roundtrip(&mut enc, &mut dec, &Message::SendAddrV2);
    assert_eq!(m, Message::SendAddrV2);
    // The other direction too.
    let mut enc = V2Encoder::new(b.outbound);
    let mut dec = V2Decoder::new(a.inbound, magic());
    assert_eq!(roundtrip(&mut enc, &mut dec, &Message::Pong(6)).0, Message::Pong(6));
}

#[test]
fn packets_split_at_every_byte_decode_the_same() {
    let (a, b) = pair(Vec::new(), Vec::new());
    let mut enc = V2Encoder::new(a.outbound);
    let mut dec = V2Decoder::new(b.inbound, magic());
    let p1 = enc.encode(b"ping\0\0\0\0\0\0\0\0", &9u64.to_le_bytes());
    let p2 = enc.encode(b"pong\0\0\0\0\0\0\0\0", &10u64.to_le_bytes());
    let all: Vec<u8> = p1.iter().chain(p2.iter()).copied().collect();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for byte in all {
        buf.extend_from_slice(&[byte]);
        while let Some(Packet::Frame(f)) = dec.decode(&mut buf).unwrap() {
            got.push(f.into_message().unwrap());
        }
    }
    assert_eq!(got, [Message::Ping(9), Message::Pong(10)]);
}

#[test]
fn decoys_and_unknown_short_ids_are_dropped() {
    let (a, b) = pair(Vec::new(), Vec::new());
    let mut enc = V2Encoder::new(a.outbound);
    let mut dec = V2Decoder::new(b.inbound, magic());
    let decoy = enc.packet(&[18, 1, 2, 3, 4, 5, 6, 7, 8], PacketType::Decoy);
    let unknown = enc.packet(&[29, 1, 2], PacketType::Genuine);
    let bad_long = enc.packet(b"\0pi\0ng\0\0\0\0\0\0\0", PacketType::Genuine);
    let ping = enc.encode(b"ping\0\0\0\0\0\0\0\0", &1u64.to_le_bytes());
    let mut buf = BytesMut::new();
    for p in [&decoy, &unknown, &bad_long, &ping] {
        buf.extend_from_slice(p);
    }
    for _ in 0..3 {
        assert!(matches!(dec.decode(&mut buf).unwrap(), Some(Packet::Ignored)));
    }
    match dec.decode(&mut buf).unwrap() {
        Some(Packet::Frame(f)) => assert_eq!(f.into_message().unwrap(), Message::Ping(1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tampered_packet_fails_authentication() {
    let (a, b) = pair(Vec::new(), Vec::new());
    let mut enc = V2Encoder::new(a.outbound);
    let mut dec = V2Decoder::new(b.inbound, magic());
    let mut p = enc.encode(b"ping\0\0\0\0\0\0\0\0", &1u64.to_le_bytes()).to_vec();
    let last = p.len() - 1;
    p[last] ^= 1;
    assert_eq!(dec.decode(&mut BytesMut::from(&p[..])).unwrap_err(), V2Error::BadTag);
}

#[test]
fn an_oversized_length_is_refused_before_the_packet_is_buffered() {
    let (a, b) = pair(Vec::new(), Vec::new());
    let mut enc = V2Encoder::new(a.outbound);
    let mut dec = V2Decoder::new(b.inbound, magic());
    let p = enc.packet(&vec![0u8; MAX_CONTENTS_LEN + 1], PacketType::Genuine);
    // Three bytes are enough to know.
    let mut buf = BytesMut::from(&p[..3]);
    assert_eq!(
        dec.decode(&mut buf).unwrap_err(),
        V2Error::Oversized { len: MAX_CONTENTS_LEN + 1, max: MAX_CONTENTS_LEN }
    );
}

#[test]
fn the_largest_packet_is_accepted() {
    let (a, b) = pair(Vec::new(), Vec::new());
    let mut enc = V2Encoder::new(a.outbound);
    let mut dec = V2Decoder::new(b.inbound, magic());
    let mut contents = vec![0u8; 1 + MESSAGE_TYPE_SIZE];
    contents[1..5].copy_from_slice(b"zzzz");
    contents.resize(MAX_CONTENTS_LEN, 0);
    let p = enc.packet(&contents, PacketType::Genuine);
    let mut buf = BytesMut::from(&p[..]);
    match dec.decode(&mut buf).unwrap() {
        Some(Packet::Frame(f)) => assert_eq!(f.wire_len, p.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_beyond_4095_bytes_without_terminator_fails() {
    let mut b = V2Handshake::new(magic(), false, [2; 32], Vec::new());
    let mut a = V2Handshake::new(magic(), true, [1; 32], Vec::new());
    let Step::Pending { send: key } = a.feed(&[], false).unwrap() else { panic!() };
    assert!(matches!(b.feed(&key, false).unwrap(), Step::Pending { .. }));
    // 4,096 garbage bytes and no terminator.
    assert!(matches!(b.feed(&[0xaa; 4000], false).unwrap(), Step::Pending { .. }));
    assert_eq!(
        b.feed(&[0xaa; 111], false).unwrap_err(),
        V2Error::NoGarbageTerminator { max: MAX_GARBAGE_LEN }
    );
}

#[test]
fn a_wrong_terminator_is_never_found() {
    let mut b = V2Handshake::new(magic(), false, [2; 32], Vec::new());
    let mut a = V2Handshake::new(magic(), true, [1; 32], Vec::new());
    let Step::Pending { send: key } = a.feed(&[], false).unwrap() else { panic!() };
    let Step::Pending { send: reply } = b.feed(&key, false).unwrap() else { panic!() };
    let mut rest = sent(a.feed(&reply, false).unwrap());
    // Corrupt the initiator's terminator: the responder keeps looking, up to the limit.
    rest[0] ^= 1;
    assert!(matches!(b.feed(&rest, false).unwrap(), Step::Pending { .. }));
    assert_eq!(
        b.feed(&[0u8; MAX_GARBAGE_LEN + GARBAGE_TERMINATOR_LEN], false).unwrap_err(),
        V2Error::NoGarbageTerminator { max: MAX_GARBAGE_LEN }
    );
}

#[test]
fn a_tampered_version_packet_fails_and_eof_truncates() {
    let mut b = V2Handshake::new(magic(), false, [2; 32], Vec::new());
    let mut a = V2Handshake::new(magic(), true, [1; 32], vec![1, 2, 3]);
    let Step::Pending { send: key } = a.feed(&[], false).unwrap() else { panic!() };
    let Step::Pending { send: reply } = b.feed(&key, false).unwrap() else { panic!() };
    let mut rest = sent(a.feed(&reply, false).unwrap());
    let last = rest.len() - 1;
    rest[last] ^= 1;
    assert_eq!(b.feed(&rest, false).unwrap_err(), V2Error::BadTag);

    let mut c = V2Handshake::new(magic(), false, [2; 32], Vec::new());
    assert!(matches!(c.feed(&key[..30], false).unwrap(), Step::Pending { .. }));
    assert_eq!(c.feed(&[], true).unwrap_err(), V2Error::Truncated);
}

#[test]
fn a_v1_reply_is_recognised() {
    let mut a = V2Handshake::new(magic(), true, [1; 32], Vec::new());
    let _ = a.feed(&[], false).unwrap();
    let v1 = Codec::new(magic()).encode_to_bytes(&Message::Verack);
    let mut reply = v1.to_vec();
    reply.resize(64, 0);
    assert_eq!(a.feed(&reply, false).unwrap_err(), V2Error::V1Peer);
}

fn sent(step: Step) -> Vec<u8> {
    match step {
        Step::Pending { send } | Step::Done { send, .. } => send,
    }
}

#[test]
fn a_message_over_the_limit_is_refused_before_encryption() {
    let (a, b) = pair(Vec::new(), Vec::new());
    let mut enc = V2Encoder::new(a.outbound);
    let mut dec = V2Decoder::new(b.inbound, magic());
    // The limit is the v1 frame's: 24 header bytes and the 8-byte payload.
    assert_eq!(enc.encode_message(&Message::Ping(1), 31).unwrap_err(), 32);
    // Nothing was encrypted: the next packet is the session's first and decodes.
    let (m, _) = roundtrip(&mut enc, &mut dec, &Message::Ping(2));
    assert_eq!(m, Message::Ping(2));
}

#[test]
fn large_payloads_round_trip_and_stay_views_of_the_read_buffer() {
    let (a, b) = pair(Vec::new(), Vec::new());
    let mut enc = V2Encoder::new(a.outbound);
    let mut dec = V2Decoder::new(b.inbound, magic());
    let msg = Message::Unknown { command: "bench".parse().unwrap(), payload: vec![0x42; 1_000_000] };
    let (m, len) = roundtrip(&mut enc, &mut dec, &msg);
    assert_eq!(m, msg);
    // 3 length + 1 header + 0 and the 12-byte type + payload + 16 tag.
    assert_eq!(len, 3 + 1 + 13 + 1_000_000 + 16);
    // More than 224 packets: both ciphers rekey.
    for i in 0..300 {
        assert_eq!(roundtrip(&mut enc, &mut dec, &Message::Ping(i)).0, Message::Ping(i));
    }
}

/// Our ciphers continue where the crate's handshake ciphers stopped, also after 230 decoys
/// that take the peer's packet counter past a rekey (224).
#[test]
fn our_ciphers_take_over_after_the_crates_handshake_and_decoys() {
    use bip324::{GarbageResult, Handshake, Initialized, ReceivedKey, Role, VersionResult};
    let mut ours = V2Handshake::new(magic(), false, [2; 32], vec![3; 20]);
    let peer = Handshake::<Initialized>::new(magic(), Role::Initiator).unwrap();
    let mut key = vec![0u8; 64];
    let peer = peer.send_key(None, &mut key).unwrap();
    let reply = sent(ours.feed(&key, false).unwrap());
    let peer = peer.receive_key(reply[..64].try_into().unwrap()).unwrap();
    let decoys: Vec<&[u8]> = vec![&[7u8; 3][..]; 230];
    let mut out = vec![0u8; Handshake::<ReceivedKey>::send_version_len(Some(&decoys))];
    let peer = peer.send_version(&mut out, Some(&decoys)).unwrap();
    let Step::Done { send, session, .. } = ours.feed(&out, false).unwrap() else { panic!("not done") };
    // The peer reads our garbage, terminator and version packet.
    let rest: Vec<u8> = reply[64..].iter().chain(&send).copied().collect();
    let GarbageResult::FoundGarbage { mut handshake, consumed_bytes } = peer.receive_garbage(&rest).unwrap()
    else {
        panic!("no terminator")
    };
    let rest = &rest[consumed_bytes..];
    let len = handshake.decrypt_packet_len([rest[0], rest[1], rest[2]]).unwrap();
    let mut version = rest[3..3 + len].to_vec();
    let VersionResult::Complete { mut cipher } = handshake.receive_version(&mut version).unwrap() else {
        panic!("a decoy")
    };
    assert_eq!(cipher.id(), &session.id);
    // The peer's crate ciphers and our own agree both ways.
    let mut dec = V2Decoder::new(session.inbound, magic());
    let mut enc = V2Encoder::new(session.outbound);
    for n in 0..3u64 {
        let packet = cipher.outbound().encrypt_to_vec(
            &[&[18u8][..], &n.to_le_bytes()].concat(),
            bip324::PacketType::Genuine,
            None,
        );
        match dec.decode(&mut BytesMut::from(&packet[..])).unwrap() {
            Some(Packet::Frame(f)) => assert_eq!(f.into_message().unwrap(), Message::Ping(n)),
            other => panic!("{other:?}"),
        }
        let mine = enc.encode_message(&Message::Pong(n), usize::MAX).unwrap();
        let len = cipher.inbound().decrypt_packet_len([mine[0], mine[1], mine[2]]);
        let (_, plain) = cipher.inbound().decrypt_to_vec(&mine[3..3 + len], None).unwrap();
        assert_eq!(plain, [&[0u8, 19][..], &n.to_le_bytes()].concat());
    }
}

/// Handshake CPU through our layer, both ends in one thread: the crate's handshake and our own
/// key derivation (one more ECDH and HKDF per end). Printed by `scripts/bench-v2` (release).
#[test]
#[ignore = "benchmark: scripts/bench-v2"]
fn bench_handshake_cpu_through_our_layer() {
    let rounds = 200;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        let (a, b) = pair(vec![1; 100], vec![2; 100]);
        assert_eq!(a.id, b.id);
    }
    let per_end = start.elapsed().as_secs_f64() / f64::from(rounds) / 2.0;
    println!("handshake CPU through our layer: {:.3} ms per connection end", per_end * 1000.0);
}
