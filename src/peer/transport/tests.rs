use super::*;
use crate::network::Network;

fn magic() -> [u8; 4] {
    Network::Regtest.magic()
}

fn version() -> Message {
    use crate::wire::version::{build, LocalVersion};
    let local = LocalVersion {
        version: 70016,
        services: crate::wire::ServiceFlags::NONE,
        user_agent: "/t/".into(),
        start_height: 0,
        relay: true,
        nonce: 1,
        timestamp: 0,
    };
    Message::Version(build(&local, None))
}

#[test]
fn detection_reads_at_most_sixteen_bytes_like_core() {
    let v1 = Codec::new(magic()).encode_to_bytes(&version());
    assert_eq!(detect(magic(), &v1[..3]), None);
    assert_eq!(detect(magic(), &v1[..15]), None);
    assert_eq!(detect(magic(), &v1[..16]), Some(TransportVersion::V1));
    // Wrong magic at the first byte, or another command: v2.
    assert_eq!(detect(magic(), &[0x00]), Some(TransportVersion::V2));
    let verack = Codec::new(magic()).encode_to_bytes(&Message::Verack);
    assert_eq!(detect(magic(), &verack[..16]), Some(TransportVersion::V2));
}

/// Drives two decoders against each other (an initiator and a detecting responder) and
/// returns what each reported.
fn converse(
    a: &mut TransportDecoder,
    b: &mut TransportDecoder,
    mut to_b: BytesMut,
) -> (Vec<Inbound>, Vec<Inbound>) {
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut to_a = BytesMut::new();
    for _ in 0..10 {
        while let Some(ev) = b.decode(&mut to_b).unwrap() {
            if let Inbound::Send(bytes) = &ev {
                to_a.extend_from_slice(bytes);
            }
            got_b.push(ev);
        }
        while let Some(ev) = a.decode(&mut to_a).unwrap() {
            if let Inbound::Send(bytes) = &ev {
                to_b.extend_from_slice(bytes);
            }
            got_a.push(ev);
        }
    }
    (got_a, got_b)
}

fn session_of(events: &[Inbound]) -> Option<[u8; 32]> {
    events.iter().find_map(|e| match e {
        Inbound::Ready(Ready::V2 { session_id, .. }) => Some(*session_id),
        _ => None,
    })
}

#[test]
fn an_initiator_and_a_detecting_responder_agree_then_frames_flow() {
    let (mut a, first) = TransportDecoder::new(magic(), Start::V2Initiator, [3; 32], vec![1; 50]);
    let (mut b, none) = TransportDecoder::new(magic(), Start::Detect, [4; 32], vec![2; 4095]);
    assert!(none.is_none());
    assert!(a.settling() && b.settling());
    let (got_a, got_b) = converse(&mut a, &mut b, BytesMut::from(&first.unwrap()[..]));
    let (sa, sb) = (session_of(&got_a).unwrap(), session_of(&got_b).unwrap());
    assert_eq!(sa, sb);
    assert!(!a.settling() && !b.settling());
    let mut enc = got_a
        .into_iter()
        .find_map(|e| match e {
            Inbound::Ready(Ready::V2 { encoder, .. }) => Some(encoder),
            _ => None,
        })
        .unwrap();
    let mut wire = BytesMut::from(&enc.encode(b"ping\0\0\0\0\0\0\0\0", &4u64.to_le_bytes())[..]);
    match b.decode(&mut wire).unwrap() {
        Some(Inbound::Frame(f)) => assert_eq!(f.into_message().unwrap(), Message::Ping(4)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_v1_start_on_a_detecting_listener_stays_v1() {
    let (mut b, _) = TransportDecoder::new(magic(), Start::Detect, [4; 32], Vec::new());
    let codec = Codec::new(magic());
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&codec.encode_to_bytes(&version()));
    wire.extend_from_slice(&codec.encode_to_bytes(&Message::Verack));
    assert!(matches!(b.decode(&mut wire).unwrap(), Some(Inbound::Ready(Ready::V1))));
    assert!(matches!(b.decode(&mut wire).unwrap(), Some(Inbound::Frame(f)) if f.command == "version"));
    assert!(matches!(b.decode(&mut wire).unwrap(), Some(Inbound::Frame(f)) if f.command == "verack"));
}

#[test]
fn eof_during_the_handshake_is_truncated() {
    let (mut b, _) = TransportDecoder::new(magic(), Start::Detect, [4; 32], Vec::new());
    let mut wire = BytesMut::from(&[0u8; 40][..]);
    assert!(matches!(b.decode(&mut wire).unwrap(), Some(Inbound::Send(_))));
    assert!(b.decode(&mut wire).unwrap().is_none());
    assert_eq!(b.decode_eof(&mut wire).unwrap_err(), TransportError::V2(V2Error::Truncated));
}

#[test]
fn encoder_waits_for_the_transport() {
    let mut enc = TransportEncoder::Settling(Vec::new());
    assert!(matches!(enc.encode(&Message::Verack, 100), Encoded::Queued));
    assert!(matches!(&enc, TransportEncoder::Settling(q) if q.len() == 1));
    // An oversized message is refused before a v2 session encrypts anything.
    let mut v1 = TransportEncoder::V1(Codec::new(magic()));
    assert!(matches!(v1.encode(&Message::Ping(1), 32), Encoded::Bytes(b) if b.len() == 32));
    assert!(matches!(v1.encode(&Message::Ping(1), 31), Encoded::TooLarge(32)));
}

#[test]
fn v1_only_memory_is_bounded_and_forgets() {
    let m = V1OnlyPeers::default();
    let a = PeerAddr::Ip("127.0.0.1:1".parse().unwrap());
    assert!(m.insert(&a) && m.contains(&a) && !m.insert(&a));
    let saved = m.take_changes().expect("changed");
    assert_eq!(saved.v1_only, ["127.0.0.1:1"]);
    assert!(m.take_changes().is_none());
    assert!(m.remove(&a) && !m.contains(&a));
    assert_eq!(m.take_changes().expect("changed").v1_only, Vec::<String>::new());
    let restored = V1OnlyPeers::default();
    assert_eq!(restored.restore(&saved), 1);
    assert!(restored.contains(&a) && restored.take_changes().is_none());
}

#[test]
fn a_v1_start_on_a_v2_only_listener_is_refused() {
    let (mut b, _) = TransportDecoder::new(magic(), Start::DetectV2Only, [4; 32], Vec::new());
    let mut wire = BytesMut::from(&Codec::new(magic()).encode_to_bytes(&version())[..]);
    assert_eq!(b.decode(&mut wire).unwrap_err(), TransportError::V2(V2Error::V1Peer));
}
