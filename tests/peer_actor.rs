//! PeerActor over `tokio::io::duplex` with a scripted remote and paused (virtual) time: timers
//! fire by advancing the clock, not by waiting.

mod common;

use std::time::Duration;

use actix::prelude::*;
use btcpeer::events::{InvReceived, Subscribers, Subscription};
use btcpeer::peer::messages::{GetStats, SendMessage};
use btcpeer::peer::{DisconnectReason, Link, Misbehavior, PeerActor, PeerAddr, PeerConfig};
use btcpeer::peer::{SendError, SendRefused};
use btcpeer::wire::version::{build, LocalVersion};
use btcpeer::wire::{Codec, Message, ServiceFlags};
use btcpeer::Network;
use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::codec::FramedRead;

const LONG: Duration = Duration::from_secs(3 * 3600);

/// The other end of the duplex: speaks the protocol by script.
struct Remote {
    read: FramedRead<ReadHalf<DuplexStream>, Codec>,
    write: WriteHalf<DuplexStream>,
    codec: Codec,
}

impl Remote {
    async fn send(&mut self, msg: Message) {
        let bytes = self.codec.encode_to_bytes(&msg);
        self.write.write_all(&bytes).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Message {
        let frame = tokio::time::timeout(LONG, self.read.next()).await.expect("remote waited too long");
        frame.expect("stream ended").expect("decodable frame").into_message().expect("valid message")
    }

    /// Reads until a message of `cmd` arrives.
    async fn recv_cmd(&mut self, cmd: &str) -> Message {
        loop {
            let m = self.recv().await;
            if m.cmd() == cmd {
                return m;
            }
        }
    }

    fn version(nonce: u64) -> Message {
        Message::Version(build(
            &LocalVersion {
                version: 70016,
                services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
                user_agent: "/script:1.0/".into(),
                start_height: 5,
                relay: true,
                nonce,
                timestamp: 0,
            },
            None,
        ))
    }
}

fn setup(cfg: PeerConfig, link: Link, buffer: usize, subs: Subscribers) -> (Addr<PeerActor>, Remote) {
    let (ours, theirs) = tokio::io::duplex(buffer);
    let (r, w) = tokio::io::split(theirs);
    let codec = Codec::new(Network::Regtest.magic());
    let peer =
        PeerActor::with_stream(cfg, PeerAddr::Ip("127.0.0.9:18444".parse().unwrap()), link, ours, subs)
            .start();
    (peer, Remote { read: FramedRead::new(r, codec.clone()), write: w, codec })
}

/// Scripted outbound handshake from the remote's side.
async fn handshake(remote: &mut Remote) {
    assert_eq!(remote.recv().await.cmd(), "version", "our version comes first");
    remote.send(Remote::version(77)).await;
    remote.send(Message::WtxidRelay).await;
    remote.send(Message::SendAddrV2).await;
    remote.send(Message::Verack).await;
    assert_eq!(remote.recv().await, Message::WtxidRelay);
    assert_eq!(remote.recv().await, Message::SendAddrV2);
    assert_eq!(remote.recv().await, Message::Verack);
    assert_eq!(remote.recv().await, Message::SendHeaders);
}

fn disconnected(e: &Ev) -> Option<DisconnectReason> {
    if let Ev::Disconnected(d) = e {
        Some(d.reason.clone())
    } else {
        None
    }
}

#[actix_rt::test]
async fn handshake_then_unanswered_ping_times_out() {
    tokio::time::pause();
    let mut cfg = PeerConfig::new(Network::Regtest);
    cfg.machine.inactivity_timeout = Duration::from_secs(3600);
    let (_probe, subs, mut events) = probe(false);
    let (_peer, mut remote) = setup(cfg, Link::Outbound, 1 << 16, subs);
    handshake(&mut remote).await;
    let info = events
        .expect(LONG, "ready", |e| if let Ev::Ready(r) = e { Some(r.info.clone()) } else { None })
        .await;
    assert!(info.features.wtxid_relay && info.features.addr_v2);
    assert!(matches!(remote.recv_cmd("ping").await, Message::Ping(n) if n != 0));
    // Never answer: after 20 virtual minutes the peer gives up.
    let reason = events.expect(LONG, "ping timeout", disconnected).await;
    assert_eq!(reason, DisconnectReason::PingTimeout { after: Duration::from_secs(1200) });
}

#[actix_rt::test]
async fn silent_remote_hits_the_handshake_timeout() {
    tokio::time::pause();
    let (_probe, subs, mut events) = probe(false);
    let (_peer, mut remote) = setup(PeerConfig::new(Network::Regtest), Link::Outbound, 1 << 16, subs);
    assert_eq!(remote.recv().await.cmd(), "version");
    let reason = events.expect(LONG, "handshake timeout", disconnected).await;
    assert_eq!(reason, DisconnectReason::HandshakeTimeout { after: Duration::from_secs(60) });
}

#[actix_rt::test]
async fn inbound_answers_their_version_and_pings() {
    tokio::time::pause();
    let (_probe, subs, mut events) = probe(false);
    let (peer, mut remote) = setup(PeerConfig::new(Network::Regtest), Link::Inbound, 1 << 16, subs);
    remote.send(Remote::version(78)).await;
    assert_eq!(remote.recv().await.cmd(), "version");
    assert_eq!(remote.recv().await, Message::WtxidRelay);
    assert_eq!(remote.recv().await, Message::SendAddrV2);
    assert_eq!(remote.recv().await, Message::Verack);
    remote.send(Message::Verack).await;
    let info = events
        .expect(LONG, "ready", |e| if let Ev::Ready(r) = e { Some(r.info.clone()) } else { None })
        .await;
    assert_eq!(info.link, Link::Inbound);
    remote.send(Message::Ping(42)).await;
    assert_eq!(remote.recv_cmd("pong").await, Message::Pong(42));
    // The application cannot break the handshake the machine already did.
    let r = peer.send(SendMessage(Message::Verack)).await.unwrap();
    assert!(matches!(r, Err(SendError::Refused(SendRefused::Handshake { .. }))), "{r:?}");
}

#[actix_rt::test]
async fn wrong_magic_is_another_network_not_misbehaviour() {
    tokio::time::pause();
    let (_probe, subs, mut events) = probe(false);
    let (_peer, mut remote) = setup(PeerConfig::new(Network::Regtest), Link::Outbound, 1 << 16, subs);
    let testnet = Codec::new(Network::Testnet3.magic()).encode_to_bytes(&Remote::version(1));
    remote.send_raw(&testnet).await;
    let reason = events.expect(LONG, "disconnect", disconnected).await;
    assert_eq!(reason, DisconnectReason::WrongNetwork);
    assert!(!reason.is_misbehavior(), "a Core node trying BIP324 first must not be banned");
}

#[actix_rt::test]
async fn oversized_header_disconnects_before_any_payload() {
    tokio::time::pause();
    let (_probe, subs, mut events) = probe(false);
    let (_peer, mut remote) = setup(PeerConfig::new(Network::Regtest), Link::Outbound, 1 << 16, subs);
    let mut header = Network::Regtest.magic().to_vec();
    header.extend_from_slice(b"block\0\0\0\0\0\0\0");
    header.extend_from_slice(&4_000_001u32.to_le_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    remote.send_raw(&header).await; // and nothing more
    let reason = events.expect(LONG, "disconnect", disconnected).await;
    assert_eq!(
        reason,
        DisconnectReason::Misbehaving(Misbehavior::Oversized { command: "block".into(), len: 4_000_001 })
    );
    // Core only disconnects (net.cpp V1Transport::readHeader): no ban.
    assert!(!reason.is_misbehavior());
    assert_eq!(reason.kind(), btcpeer::peer::ReasonKind::Incompatible);
}

#[actix_rt::test]
async fn bad_checksum_is_dropped_and_the_link_survives() {
    tokio::time::pause();
    let (_probe, subs, mut events) = probe(false);
    let (peer, mut remote) = setup(PeerConfig::new(Network::Regtest), Link::Outbound, 1 << 16, subs);
    handshake(&mut remote).await;
    events.expect(LONG, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    let mut bad = remote.codec.encode_to_bytes(&Message::Ping(1)).to_vec();
    bad[20] ^= 0xff;
    remote.send_raw(&bad).await;
    remote.send(Message::Ping(7)).await;
    assert_eq!(remote.recv_cmd("pong").await, Message::Pong(7));
    let stats = peer.send(GetStats).await.unwrap();
    assert_eq!(stats.dropped_frames, 1);
    assert_eq!(stats.recv_per_command["ping"].messages, 2, "both frames were counted on the wire");
}

#[actix_rt::test]
async fn send_queue_is_bounded_and_delivery_is_confirmed() {
    tokio::time::pause();
    let mut cfg = PeerConfig::new(Network::Regtest);
    cfg.max_send_queue_bytes = 10_000;
    let (_probe, subs, mut events) = probe(false);
    // A tiny pipe: the remote must read for our writes to progress.
    let (peer, mut remote) = setup(cfg, Link::Outbound, 512, subs);
    handshake(&mut remote).await;
    events.expect(LONG, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    let big = || Message::Unknown { command: "blob".parse().unwrap(), payload: vec![7u8; 8_000] };
    // The remote stops reading. The first blob is accepted (it fills the pipe and waits)...
    let first = peer.send(SendMessage(big()));
    // ...the second would exceed the 10,000-byte budget and is refused at once.
    let second = peer.send(SendMessage(big())).await.unwrap();
    assert!(matches!(second, Err(SendError::QueueFull { cap: 10_000, .. })), "{second:?}");
    let queued = peer.send(GetStats).await.unwrap().send_queue_bytes;
    assert!(queued <= 10_000 + 8_024, "queued {queued}");
    // Once the remote reads again, the first blob is written and confirmed.
    let reader = actix::spawn(async move {
        loop {
            if let Message::Unknown { payload, .. } = remote.recv().await {
                return payload.len();
            }
        }
    });
    assert_eq!(first.await.unwrap(), Ok(()));
    assert_eq!(reader.await.unwrap(), 8_000);
}

#[actix_rt::test]
async fn sending_before_ready_is_refused() {
    tokio::time::pause();
    let (_probe, subs, _events) = probe(false);
    let (peer, _remote) = setup(PeerConfig::new(Network::Regtest), Link::Outbound, 1 << 16, subs);
    let r = peer.send(SendMessage(Message::Ping(1))).await.unwrap();
    assert!(matches!(r, Err(SendError::NotReady { .. })), "{r:?}");
}

/// A subscriber that never gets to read its mailbox.
struct Stuck;
impl Actor for Stuck {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(2);
        ctx.wait(futures_util::future::pending::<()>().into_actor(self));
    }
}
impl Handler<InvReceived> for Stuck {
    type Result = ();
    fn handle(&mut self, _: InvReceived, _: &mut Context<Self>) {}
}

#[actix_rt::test]
async fn a_stuck_subscriber_never_stalls_the_peer_and_drops_are_counted() {
    tokio::time::pause();
    let stuck = Stuck.start();
    let (_probe, mut subs, mut events) = probe(false);
    // A budget of a few hundred bytes: the first notification fits, the rest are dropped.
    subs.add(Subscription::Inv(stuck.recipient()).with_budget(&btcpeer::events::Budget::new(600)));
    let (peer, mut remote) = setup(PeerConfig::new(Network::Regtest), Link::Outbound, 1 << 16, subs);
    handshake(&mut remote).await;
    events.expect(LONG, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    for _ in 0..20 {
        remote.send(Message::Inv(vec![])).await;
    }
    remote.send(Message::Ping(99)).await;
    // The peer kept going: it answered the ping that came after the twenty invs.
    assert_eq!(remote.recv_cmd("pong").await, Message::Pong(99));
    let stats = peer.send(GetStats).await.unwrap();
    let inv_subs: Vec<_> = stats.subscribers.iter().filter(|s| s.kind == "inv").collect();
    let stuck_stats =
        inv_subs.iter().find(|s| s.dropped > 0).expect("the stuck subscriber dropped notifications");
    assert_eq!(stuck_stats.delivered + stuck_stats.dropped, 20);
    assert!(stuck_stats.delivered <= 3, "{stuck_stats:?}");
    // The healthy probe got all twenty.
    assert!(inv_subs.iter().any(|s| s.delivered == 20 && s.dropped == 0));
}

#[actix_rt::test]
async fn blocks_are_parsed_for_subscribers_and_malformed_ones_dropped() {
    tokio::time::pause();
    let (_probe, subs, mut events) = probe(true);
    let (peer, mut remote) = setup(PeerConfig::new(Network::Regtest), Link::Outbound, 1 << 16, subs);
    handshake(&mut remote).await;
    events.expect(LONG, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);
    // A malformed block (valid checksum) first: dropped, counted, the link stays.
    let mut broken = bitcoin::consensus::serialize(&genesis);
    broken.truncate(81);
    let mut frame = Network::Regtest.magic().to_vec();
    frame.extend_from_slice(b"block\0\0\0\0\0\0\0");
    frame.extend_from_slice(&(broken.len() as u32).to_le_bytes());
    use bitcoin::hashes::Hash;
    frame.extend_from_slice(&bitcoin::hashes::sha256d::Hash::hash(&broken).as_byte_array()[..4]);
    frame.extend_from_slice(&broken);
    remote.send_raw(&frame).await;
    remote.send(Message::Block(genesis.clone())).await;
    let block = events
        .expect(LONG, "the block", |e| if let Ev::Block(b) = e { Some(b.block.clone()) } else { None })
        .await;
    assert_eq!(block.block_hash(), genesis.block_hash());
    events
        .expect(LONG, "the block in the catch-all", |e| match e {
            Ev::Message(m) if matches!(&*m.message, Message::Block(b) if b.block_hash() == genesis.block_hash()) => Some(()),
            _ => None,
        })
        .await;
    assert_eq!(events.seen.iter().filter(|e| matches!(e, Ev::Block(_))).count(), 1);
    let stats = peer.send(GetStats).await.unwrap();
    assert_eq!(stats.dropped_frames, 1);
    assert_eq!(stats.recv_per_command["block"].messages, 2);
}

#[actix_rt::test]
async fn a_peer_that_stops_reading_is_released_after_the_close_timeout() {
    use btcpeer::peer::messages::Disconnect;
    tokio::time::pause();
    let (_probe, subs, mut events) = probe(false);
    let (peer, mut remote) = setup(PeerConfig::new(Network::Regtest), Link::Outbound, 512, subs);
    handshake(&mut remote).await;
    events.expect(LONG, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    // Fill the pipe with a blob the remote never reads, then hang up.
    peer.do_send(SendMessage(Message::Unknown {
        command: "blob".parse().unwrap(),
        payload: vec![7u8; 64_000],
    }));
    peer.do_send(Disconnect(DisconnectReason::Requested));
    events.expect(LONG, "disconnect", disconnected).await;
    // Past the close timeout the writer is aborted: the remote sees end-of-stream before the
    // blob was complete, instead of a connection held open forever.
    tokio::time::advance(btcpeer::peer::CLOSE_TIMEOUT + Duration::from_secs(1)).await;
    let mut rest = Vec::new();
    let mut read = remote.read.into_inner();
    tokio::time::timeout(LONG, tokio::io::AsyncReadExt::read_to_end(&mut read, &mut rest))
        .await
        .expect("the stream must end")
        .unwrap();
    assert!(rest.len() < 64_000, "read {} bytes: the writer was not aborted", rest.len());
}
