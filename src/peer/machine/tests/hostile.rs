//! Hostile input: each test pins the machine to what Bitcoin Core does (`net_processing.cpp`).

use super::*;
use crate::peer::reason::{CoreReaction, ReasonKind};
use crate::wire::{GetBlocksMessage, GetHeadersMessage};

fn inbound_handshaking() -> (PeerMachine, Instant) {
    let nonces = NonceSet::default();
    let mut m = machine(Link::Inbound, &nonces);
    let t0 = Instant::now();
    m.connected(t0, 0, 0, None);
    drain(&mut m);
    (m, t0)
}

#[test]
fn version_field_is_read_signed_as_core_does() {
    // 0xffffffff is −1 for Core (`int nVersion`): obsolete, disconnect without a ban.
    let (mut m, t0) = inbound_handshaking();
    m.on_message(t0, &Message::Version(their_version(u32::MAX, 1)));
    let r = disconnect_reason(&drain(&mut m)).cloned().unwrap();
    assert_eq!(r, DisconnectReason::ObsoleteVersion { version: -1, min: 31_800 });
    assert_eq!(r.kind(), ReasonKind::Incompatible);
    // The largest positive value is an ordinary (future) version.
    let (mut m, t0) = inbound_handshaking();
    m.on_message(t0, &Message::Version(their_version(i32::MAX as u32, 1)));
    assert!(disconnect_reason(&drain(&mut m)).is_none());
    assert_eq!(m.peer_info().map(|i| i.version), Some(i32::MAX as u32));
}

#[test]
fn long_user_agent_drops_the_version_and_keeps_the_link() {
    // Core: LIMITED_STRING throws, ProcessMessages catches; nVersion stays 0.
    let (mut m, t0) = inbound_handshaking();
    let mut v = their_version(70016, 1);
    v.user_agent = "x".repeat(257);
    m.on_message(t0, &Message::Version(v));
    let a = drain(&mut m);
    assert!(disconnect_reason(&a).is_none() && sent(&a).is_empty(), "{a:?}");
    assert!(m.peer_info().is_none());
    assert_eq!(m.dropped_frames(), 1);
    // A valid version afterwards is answered.
    m.on_message(t0, &Message::Version(their_version(70016, 1)));
    assert_eq!(sent(&drain(&mut m)), ["version", "wtxidrelay", "sendaddrv2", "verack"]);
    // Exactly 256 bytes is fine.
    let (mut m, t0) = inbound_handshaking();
    let mut v = their_version(70016, 1);
    v.user_agent = "x".repeat(256);
    m.on_message(t0, &Message::Version(v));
    assert!(m.peer_info().is_some());
}

#[test]
fn obsolete_version_wins_over_a_long_user_agent() {
    // Core checks nVersion before it reads the user agent.
    let (mut m, t0) = inbound_handshaking();
    let mut v = their_version(100, 1);
    v.user_agent = "x".repeat(300);
    m.on_message(t0, &Message::Version(v));
    assert!(matches!(disconnect_reason(&drain(&mut m)), Some(DisconnectReason::ObsoleteVersion { .. })));
}

#[test]
fn negotiation_after_verack_disconnects_without_a_ban() {
    for msg in [Message::WtxidRelay, Message::SendAddrV2] {
        let (mut m, t0) = ready_outbound();
        m.on_message(t0, &msg);
        let r = disconnect_reason(&drain(&mut m)).cloned().unwrap();
        assert_eq!(r.kind(), ReasonKind::Incompatible, "{r:?}");
    }
}

#[test]
fn sendcmpct_with_any_nonzero_announce_byte_is_high_bandwidth() {
    // Core's bool unserializer: any non-zero byte is true. The codec turns byte 2 into `true`.
    let frame = {
        let mut payload = vec![2u8];
        payload.extend_from_slice(&2u64.to_le_bytes());
        crate::wire::Codec::new(crate::Network::Regtest.magic())
            .encode_to_bytes(&Message::Unknown {
                command: bitcoin::p2p::message::CommandString::try_from_static("sendcmpct").unwrap(),
                payload,
            })
            .to_vec()
    };
    let mut buf = bytes::BytesMut::from(&frame[..]);
    let msg = tokio_util::codec::Decoder::decode(
        &mut crate::wire::Codec::new(crate::Network::Regtest.magic()),
        &mut buf,
    )
    .unwrap()
    .unwrap()
    .into_message()
    .unwrap();
    let (mut m, t0) = ready_outbound();
    m.on_message(t0, &msg);
    assert!(disconnect_reason(&drain(&mut m)).is_none());
    let f = &m.peer_info().unwrap().features;
    assert_eq!(f.compact_blocks, Some(CompactBlocks { high_bandwidth: true, version: 2 }));
}

#[test]
fn too_many_headers_announced_by_the_count_is_punished() {
    let (mut m, t0) = ready_outbound();
    let error = CodecError::TooManyEntries { command: "headers", count: 2_001, max: 2_000 };
    m.on_invalid_frame(t0, &error);
    let r = disconnect_reason(&drain(&mut m)).cloned().unwrap();
    assert_eq!(
        r,
        DisconnectReason::Misbehaving(Misbehavior::TooManyEntries {
            command: "headers".into(),
            count: 2_001,
            max: 2_000
        })
    );
    assert!(r.is_misbehavior());
    // Before the handshake Core does not even parse it.
    let (mut m, t0) = inbound_handshaking();
    m.on_invalid_frame(t0, &error);
    assert!(disconnect_reason(&drain(&mut m)).is_none());
    // Other per-frame errors only drop the frame.
    let (mut m, t0) = ready_outbound();
    m.on_invalid_frame(t0, &CodecError::BadChecksum { command: "headers" });
    assert!(disconnect_reason(&drain(&mut m)).is_none());
}

#[test]
fn long_locators_disconnect_without_a_ban() {
    let hash = bitcoin::BlockHash::all_zeros();
    for n in [101, 102] {
        let msgs = [
            Message::GetHeaders(GetHeadersMessage::new(vec![hash; n], hash)),
            Message::GetBlocks(GetBlocksMessage::new(vec![hash; n], hash)),
        ];
        for msg in msgs {
            let (mut m, t0) = ready_outbound();
            let verdict = m.on_message(t0, &msg);
            let r = disconnect_reason(&drain(&mut m)).cloned();
            if n == 101 {
                assert_eq!(r, None, "{} with 101 hashes is fine", msg.cmd());
                assert_eq!(verdict, Verdict::Deliver);
            } else {
                let r = r.unwrap();
                assert_eq!(
                    r,
                    DisconnectReason::Misbehaving(Misbehavior::LocatorTooLong {
                        command: msg.cmd().into(),
                        count: 102,
                        max: 101
                    })
                );
                assert_eq!(r.kind(), ReasonKind::Incompatible);
            }
        }
    }
}

#[test]
fn oversized_frames_disconnect_without_a_ban() {
    // net.cpp V1Transport::readHeader: "Size too large" closes the socket, nothing more.
    let (mut m, _) = ready_outbound();
    m.on_stream_error(&CodecError::Oversized { command: "inv", len: 4_000_001, max: 4_000_000 });
    let r = disconnect_reason(&drain(&mut m)).cloned().unwrap();
    assert!(matches!(r, DisconnectReason::Misbehaving(Misbehavior::Oversized { .. })));
    assert_eq!(r.kind(), ReasonKind::Incompatible);
}

#[test]
fn the_table_bans_only_what_core_discourages() {
    let s = String::new;
    let rows = [
        (Misbehavior::Oversized { command: s(), len: 0 }, CoreReaction::Disconnect),
        (Misbehavior::TooManyEntries { command: s(), count: 0, max: 0 }, CoreReaction::Discourage),
        (Misbehavior::NegotiationAfterVerack { command: s() }, CoreReaction::Disconnect),
        (Misbehavior::InvalidData { reason: s() }, CoreReaction::Discourage),
        (Misbehavior::InvalidBlock { reason: s() }, CoreReaction::Discourage),
        (Misbehavior::BloomNotOffered { command: s() }, CoreReaction::Disconnect),
        (Misbehavior::LocatorTooLong { command: s(), count: 0, max: 0 }, CoreReaction::Disconnect),
    ];
    for (m, reaction) in rows {
        let rule = m.core_rule();
        assert_eq!(rule.reaction, reaction, "{m:?}");
        assert!(rule.source.contains(".cpp"), "{m:?} cites Core");
        let banned = DisconnectReason::Misbehaving(m).is_misbehavior();
        assert_eq!(banned, reaction == CoreReaction::Discourage);
    }
}

#[test]
fn answered_headers_are_not_published_as_announcements() {
    let (mut m, t0) = ready_outbound();
    let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
    let id = m
        .request(
            t0,
            crate::peer::requests::Request::Headers {
                locator: vec![genesis.block_hash()],
                stop: bitcoin::BlockHash::all_zeros(),
            },
        )
        .unwrap();
    drain(&mut m);
    // An empty `headers` answers the outstanding `getheaders`: requester only.
    assert_eq!(m.on_message(t0, &Message::Headers(vec![])), Verdict::Consumed);
    let a = drain(&mut m);
    assert!(a.iter().any(|x| matches!(x, Action::Answer(i, Ok(_)) if *i == id)), "{a:?}");
    // With nothing outstanding, headers are an announcement: published.
    assert_eq!(m.on_message(t0, &Message::Headers(vec![])), Verdict::Deliver);
}

/// Core looks at a `notfound` of at most 5,016 entries (`MAX_NOTFOUND_PROCESSED`); a longer one
/// is ignored whole, without penalty: the request it names stays pending.
#[test]
fn an_oversized_notfound_is_ignored_whole() {
    use crate::peer::requests::{Request, RequestError};
    let (mut m, t0) = ready_outbound();
    let wanted = bitcoin::BlockHash::from_byte_array([7; 32]);
    let id = m.request(t0, Request::Blocks { hashes: vec![wanted] }).unwrap();
    drain(&mut m);
    let list = |n: usize| {
        let mut items = vec![Inventory::Block(bitcoin::BlockHash::from_byte_array([1; 32])); n - 1];
        items.push(Inventory::Block(wanted));
        Message::NotFound(items)
    };
    assert_eq!(m.on_message(t0, &list(5_017)), Verdict::Consumed);
    assert!(
        !drain(&mut m).iter().any(|x| matches!(x, Action::Answer(..))),
        "answered by an ignored notfound"
    );
    assert_eq!(m.state(), PeerState::Ready);
    m.on_message(t0, &list(5_016));
    let a = drain(&mut m);
    assert!(
        a.iter().any(|x| matches!(x, Action::Answer(i, Err(RequestError::NotFound { .. })) if *i == id)),
        "{a:?}"
    );
}
