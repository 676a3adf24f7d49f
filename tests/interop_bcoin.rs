//! Interoperability with a real, independent node: bcoin 1.0.2 on regtest, started per test on
//! its own loopback address. If the node cannot start, the test fails.

mod common;

use std::str::FromStr;
use std::time::Duration;

use actix::prelude::*;
use btcpeer::group::{GetListenAddrs, PeerGroup};
use btcpeer::peer::messages::{GetStats, SendMessage};
use btcpeer::peer::{Link, PeerActor, PeerAddr, ReasonKind};
use btcpeer::wire::{AddrV2, Message};
use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn ready_peer(node: &Bcoin, catch_all: bool) -> (Addr<PeerActor>, Events, Addr<Probe>) {
    let (probe, subs, mut events) = probe(catch_all);
    let peer = PeerActor::outbound(regtest_config(), PeerAddr::Ip(node.p2p), subs).start();
    events.expect(WAIT, "PeerReady", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    (peer, events, probe)
}

#[actix_rt::test]
async fn outbound_handshake_reaches_ready_with_negotiated_details() {
    let node = Bcoin::start();
    let (peer, mut events, _probe) = ready_peer(&node, false).await;
    let info = events
        .expect(WAIT, "ready", |e| if let Ev::Ready(r) = e { Some(r.info.clone()) } else { None })
        .await;
    assert_eq!(info.user_agent, "/bcoin:v1.0.2/");
    assert_eq!(info.version, 70015);
    assert_eq!(info.link, Link::Outbound);
    // bcoin is below 70016: no wtxidrelay/addrv2 negotiated.
    assert!(!info.features.wtxid_relay && !info.features.addr_v2);
    // The state sequence was observed in order.
    let states: Vec<_> =
        events.seen.iter().filter_map(|e| if let Ev::State(s) = e { Some(s.state) } else { None }).collect();
    use btcpeer::peer::PeerState::*;
    assert_eq!(states, [Connecting, Handshaking, Ready]);
    // bcoin sees our version, user agent and relay flag.
    let peers = node.rpc("getpeerinfo", json!([]));
    let me = &peers[0];
    assert_eq!(me["version"], 70016);
    assert!(me["subver"].as_str().unwrap().starts_with("/btcpeer:"));
    assert_eq!(me["relaytxes"], true);
    let stats = peer.send(GetStats).await.unwrap();
    assert_eq!(stats.user_agent, "/bcoin:v1.0.2/");
    assert_eq!(stats.services, 9);
}

#[actix_rt::test]
async fn stats_count_the_same_bytes_as_bcoin() {
    let node = Bcoin::start();
    let (peer, _events, _probe) = ready_peer(&node, false).await;
    // Traffic settles after the handshake (pings, sendcmpct, getaddr...); wait until both sides
    // agree on both directions.
    let mut last;
    wait_for!(WAIT, "byte counters to agree with bcoin's getpeerinfo", {
        let s = peer.send(GetStats).await.unwrap();
        let info = node.rpc("getpeerinfo", json!([]));
        let theirs_recv = info[0]["bytesrecv"].as_u64().unwrap();
        let theirs_sent = info[0]["bytessent"].as_u64().unwrap();
        last = (s.bytes_sent, theirs_recv, s.bytes_recv, theirs_sent);
        s.bytes_sent == theirs_recv && s.bytes_recv == theirs_sent && s.bytes_sent > 0
    });
    let s = peer.send(GetStats).await.unwrap();
    let per_command: u64 = s.sent_per_command.values().map(|c| c.bytes).sum();
    assert_eq!(per_command, s.bytes_sent);
    assert_eq!(s.sent_per_command["version"].messages, 1);
    assert_eq!(s.recv_per_command["version"].messages, 1);
    println!("bytes (ours sent, bcoin recv, ours recv, bcoin sent) = {last:?}");
}

#[actix_rt::test]
async fn mined_block_reaches_a_headers_subscriber() {
    let node = Bcoin::start();
    let (_peer, mut events, _probe) = ready_peer(&node, false).await;
    let hash = node.mine(1).remove(0);
    // We sent sendheaders, so bcoin announces with headers.
    events
        .expect(WAIT, "headers announcing the mined block", |e| match e {
            Ev::Headers(h) => h.headers.iter().any(|h| h.block_hash().to_string() == hash).then_some(()),
            Ev::Inv(i) => i
                .items
                .iter()
                .any(|item| matches!(item, btcpeer::wire::Inventory::Block(b) if b.to_string() == hash))
                .then_some(()),
            _ => None,
        })
        .await;
}

#[actix_rt::test]
async fn transaction_submitted_to_bcoin_reaches_a_tx_subscriber() {
    let node = Bcoin::start();
    let hashes = node.mine(SEGWIT_HEIGHT);
    let (_peer, mut events, _probe) = ready_peer(&node, false).await;
    let block1 = node.rpc("getblock", json!([hashes[0], true]));
    let coinbase = bitcoin::Txid::from_str(block1["tx"][0].as_str().unwrap()).unwrap();
    let tx = spend_op_true(coinbase, 5_000_000_000, 1_000);
    let txid = tx.compute_txid();
    let hex = bitcoin::consensus::encode::serialize_hex(&tx);
    let returned = node.rpc("sendrawtransaction", json!([hex]));
    assert_eq!(returned.as_str().unwrap(), txid.to_string());
    let got = events
        .expect(WAIT, "the transaction", |e| match e {
            Ev::Tx(t) if t.tx.compute_txid() == txid => Some(t.tx.clone()),
            _ => None,
        })
        .await;
    assert_eq!(*got, tx, "the relayed transaction is byte-for-byte ours, witness included");
    // It was announced first.
    assert!(events.seen.iter().any(|e| matches!(e, Ev::Inv(i) if i.items.iter().any(|item| matches!(item, btcpeer::wire::Inventory::Transaction(t) if *t == txid)))));
}

#[actix_rt::test]
async fn getaddr_answer_reaches_an_addr_subscriber() {
    let node = Bcoin::start();
    // Give bcoin one address to tell: it keeps addnode entries in its address book.
    node.rpc("addnode", json!(["127.0.0.5:18444", "add"]));
    let (_peer, mut events, _probe) = ready_peer(&node, false).await;
    let addrs = events
        .expect(WAIT, "an addr message", |e| if let Ev::Addr(a) = e { Some(a.addrs.clone()) } else { None })
        .await;
    assert!(
        addrs.iter().any(|a| a.addr == AddrV2::Ipv4("127.0.0.5".parse().unwrap()) && a.port == 18444),
        "{addrs:?}"
    );
}

#[actix_rt::test]
async fn killing_the_node_is_a_network_failure() {
    let mut node = Bcoin::start();
    let (_peer, mut events, _probe) = ready_peer(&node, false).await;
    node.kill();
    let reason = events
        .expect(WAIT, "PeerDisconnected", |e| {
            if let Ev::Disconnected(d) = e {
                Some(d.reason.clone())
            } else {
                None
            }
        })
        .await;
    assert_eq!(reason.kind(), ReasonKind::Network, "{reason:?}");
    assert!(!reason.is_misbehavior());
}

#[actix_rt::test]
async fn send_message_resolves_after_the_bytes_are_written() {
    let node = Bcoin::start();
    let (peer, mut events, _probe) = ready_peer(&node, true).await;
    peer.send(SendMessage(Message::Ping(0x1234_5678))).await.unwrap().unwrap();
    // bcoin answers our ping: the pong with our nonce comes back through the catch-all.
    events
        .expect(WAIT, "pong with our nonce", |e| match e {
            Ev::Message(m) if *m.message == Message::Pong(0x1234_5678) => Some(()),
            _ => None,
        })
        .await;
}

#[actix_rt::test]
async fn inbound_peer_completes_the_handshake() {
    let (probe, _, mut events) = probe(false);
    let mut cfg = regtest_config();
    // bcoin drops peers it dialed that do not offer NETWORK|WITNESS.
    cfg.machine.services = btcpeer::wire::ServiceFlags::NETWORK | btcpeer::wire::ServiceFlags::WITNESS;
    let group =
        PeerGroup::new(group_config(cfg, true), btcpeer::events::Subscription::common(&probe)).start();
    let mut listen;
    wait_for!(WAIT, "listener bound", {
        listen = group.send(GetListenAddrs).await.unwrap();
        !listen.is_empty()
    });
    let _node = Bcoin::start_with(BcoinOptions { connect: vec![listen[0]], ..Default::default() });
    let info = events
        .expect(WAIT, "inbound PeerReady", |e| if let Ev::Ready(r) = e { Some(r.info.clone()) } else { None })
        .await;
    assert_eq!(info.link, Link::Inbound);
    assert_eq!(info.user_agent, "/bcoin:v1.0.2/");
}
