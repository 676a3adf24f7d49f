//! Answers to our own requests go to the requester only: `HeadersReceived`/`BlockReceived`
//! subscribers see what the peer sent unsolicited, so a subscriber that also fetches never
//! counts the same data twice. The catch-all (`MessageReceived`) still sees every message.

mod common;

use std::time::Duration;

use actix::prelude::*;
use bitcoin::hashes::Hash;
use bitcoin::BlockHash;
use btcpeer::peer::messages::FetchFromPeer;
use btcpeer::peer::requests::{Request, Response};
use btcpeer::peer::{Link, PeerActor, PeerAddr, PeerConfig};
use btcpeer::wire::version::{build, LocalVersion};
use btcpeer::wire::{Codec, Message, ServiceFlags};
use btcpeer::Network;
use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::codec::FramedRead;

const WAIT: Duration = Duration::from_secs(10);

struct Remote {
    read: FramedRead<ReadHalf<DuplexStream>, Codec>,
    write: WriteHalf<DuplexStream>,
    codec: Codec,
}

impl Remote {
    async fn send(&mut self, msg: Message) {
        self.write.write_all(&self.codec.encode_to_bytes(&msg)).await.unwrap();
    }

    async fn recv_cmd(&mut self, cmd: &str) -> Message {
        loop {
            let frame = tokio::time::timeout(WAIT, self.read.next()).await.expect("remote waited too long");
            let m = frame.expect("stream ended").expect("frame").into_message().expect("message");
            if m.cmd() == cmd {
                return m;
            }
        }
    }
}

fn remote_version() -> Message {
    Message::Version(build(
        &LocalVersion {
            version: 70016,
            services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
            user_agent: "/script:1.0/".into(),
            start_height: 5,
            relay: true,
            nonce: 99,
            timestamp: 0,
        },
        None,
    ))
}

fn headers_events(events: &Events) -> usize {
    events.seen.iter().filter(|e| matches!(e, Ev::Headers(_))).count()
}

fn block_events(events: &Events) -> usize {
    events.seen.iter().filter(|e| matches!(e, Ev::Block(_))).count()
}

#[actix_rt::test]
async fn fetch_answers_reach_the_requester_only() {
    let (_probe, subs, mut events) = probe(true);
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(theirs);
    let codec = Codec::new(Network::Regtest.magic());
    let mut remote = Remote { read: FramedRead::new(r, codec.clone()), write: w, codec };
    let addr = PeerAddr::Ip("127.0.0.9:18444".parse().unwrap());
    let peer =
        PeerActor::with_stream(PeerConfig::new(Network::Regtest), addr, Link::Outbound, ours, subs).start();
    remote.recv_cmd("version").await;
    remote.send(remote_version()).await;
    remote.send(Message::Verack).await;
    remote.recv_cmd("verack").await;
    events.expect(WAIT, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;

    let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);
    // Headers: an (empty) answer to our getheaders goes to the requester only.
    let request = Request::Headers { locator: vec![genesis.block_hash()], stop: BlockHash::all_zeros() };
    let fetch = actix::spawn(peer.send(FetchFromPeer(request)));
    remote.recv_cmd("getheaders").await;
    remote.send(Message::Headers(vec![])).await;
    let answer = fetch.await.unwrap().unwrap().unwrap();
    assert_eq!(answer, Response::Headers(Default::default()));
    // Then an unsolicited announcement: published.
    remote.send(Message::Headers(vec![genesis.header])).await;
    events
        .expect(WAIT, "announced headers", |e| {
            matches!(e, Ev::Headers(h) if !h.headers.is_empty()).then_some(())
        })
        .await;
    assert_eq!(headers_events(&events), 1, "the answer was published as an announcement");

    // Blocks: the requested block goes to the requester only; the same block sent again
    // unsolicited is published.
    let fetch =
        actix::spawn(peer.send(FetchFromPeer(Request::Blocks { hashes: vec![genesis.block_hash()] })));
    remote.recv_cmd("getdata").await;
    remote.send(Message::Block(genesis.clone())).await;
    match fetch.await.unwrap().unwrap().unwrap() {
        Response::Blocks(blocks) => assert_eq!(blocks[0].block_hash(), genesis.block_hash()),
        other => panic!("unexpected answer {other:?}"),
    }
    remote.send(Message::Block(genesis.clone())).await;
    events.expect(WAIT, "unsolicited block", |e| matches!(e, Ev::Block(_)).then_some(())).await;
    assert_eq!(block_events(&events), 1, "the answer was published as an unsolicited block");
    // The catch-all saw everything: two `headers` and two `block` messages.
    for cmd in ["headers", "block"] {
        let mut n = 0;
        events
            .expect(WAIT, cmd, |e| {
                n += usize::from(matches!(e, Ev::Message(m) if m.message.cmd() == cmd));
                (n == 2).then_some(())
            })
            .await;
    }
}
