//! PeerGroup against several real bcoin regtest nodes on 127.0.10.x (same port, as real
//! networks have), with DNS seeds served by a real local DNS server (dnsmasq).

mod common;
#[path = "support/dns/mod.rs"]
mod dns_support;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use btcpeer::discovery::DnsResolver;
use btcpeer::group::*;
use btcpeer::peer::{DisconnectReason, PeerAddr, ReasonKind};
use btcpeer::wire::{Codec, Message};
use btcpeer::Network;
use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(45);
const PORT: u16 = 18444;

fn node_at(host: &str) -> Bcoin {
    Bcoin::start_with(BcoinOptions { host: Some(host.into()), port: Some(PORT), ..Default::default() })
}

fn addr_of(host: &str) -> PeerAddr {
    PeerAddr::Ip(SocketAddr::new(host.parse().unwrap(), PORT))
}

/// A group that keeps exactly the bcoin node on `host` connected.
fn connect_only(host: &str) -> GroupConfig {
    let mut cfg = group_config(regtest_config(), false);
    cfg.policy.static_peers = vec![addr_of(host)];
    cfg.policy.connect_only = true;
    cfg
}

fn ready_addrs(events: &Events) -> Vec<PeerAddr> {
    events
        .seen
        .iter()
        .filter_map(|e| if let Ev::Ready(r) = e { Some(r.addr.clone()) } else { None })
        .collect()
}

#[actix_rt::test]
async fn dns_seeds_fill_the_outbound_target_and_a_lost_peer_is_replaced() {
    // Four nodes for two slots: the address book may turn an address away on a bucket-slot
    // collision (as Core's addrman does), so the spare is any of the other two.
    let hosts = ["127.0.10.2", "127.0.10.3", "127.0.10.4", "127.0.10.5"];
    let records: Vec<(&str, IpAddr)> =
        hosts.iter().map(|h| ("seed.btcpeer.test", h.parse().unwrap())).collect();
    let dns = dns_support::Dnsmasq::start("btcpeer.test", &records);
    let mut nodes: Vec<Bcoin> = hosts.iter().map(|h| node_at(h)).collect();

    let mut cfg = group_config(regtest_config(), false);
    cfg.policy.max_outbound = 2;
    cfg.dns_seeds = vec!["seed.btcpeer.test".into()];
    cfg.resolver = Some(Arc::new(DnsResolver::with_server(dns.addr)));
    let (probe, _, mut events) = probe(false);
    let group = PeerGroup::new(cfg, btcpeer::events::Subscription::common(&probe)).start();

    // The target of two is reached, from addresses the seed returned.
    let mut ready;
    wait_for!(WAIT, "two ready outbound peers", {
        ready = group.send(GetStatus).await.unwrap();
        ready.outbound_ready == 2
    });
    let connected = wait_ready(&mut events, 2).await;
    let seeded: HashSet<PeerAddr> = hosts.iter().map(|h| addr_of(h)).collect();
    assert!(connected.iter().all(|a| seeded.contains(a)), "{connected:?}");
    assert!(dns.log().contains("seed.btcpeer.test"), "the seed name was asked of our DNS server");

    // Kill one connected node: the group replaces it with the third one.
    let victim = connected[0].clone();
    let idx = hosts.iter().position(|h| addr_of(h) == victim).unwrap();
    nodes[idx].kill();
    let reason = events
        .expect(WAIT, "the victim's disconnect", |e| match e {
            Ev::Disconnected(d) if d.addr == victim => Some(d.reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason.kind(), ReasonKind::Network);
    let spares: Vec<PeerAddr> = hosts.iter().map(|h| addr_of(h)).filter(|a| !connected.contains(a)).collect();
    events
        .expect(WAIT, "the replacement", |e| {
            matches!(e, Ev::Ready(r) if spares.contains(&r.addr)).then_some(())
        })
        .await;
    // The group counts it too (its own notice may trail the probe's).
    wait_for!(WAIT, "two ready outbound peers again", {
        group.send(GetStatus).await.unwrap().outbound_ready == 2
    });
    group.send(Shutdown).await.unwrap();
}

/// Waits until `n` peers reached Ready; returns their addresses in order.
async fn wait_ready(events: &mut Events, n: usize) -> Vec<PeerAddr> {
    let mut count = 0;
    events
        .expect(WAIT, "PeerReady", |e| {
            if matches!(e, Ev::Ready(_)) {
                count += 1;
            }
            (count >= n).then_some(())
        })
        .await;
    ready_addrs(events)
}

#[actix_rt::test]
async fn a_static_peer_is_reconnected_after_it_restarts() {
    let host = "127.0.10.6";
    let mut node = node_at(host);
    let cfg = connect_only(host);
    let (probe, _, mut events) = probe(false);
    let group = PeerGroup::new(cfg, btcpeer::events::Subscription::common(&probe)).start();
    events.expect(WAIT, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    node.kill();
    events.expect(WAIT, "disconnect", |e| matches!(e, Ev::Disconnected(_)).then_some(())).await;
    // While it is down the group keeps trying (connect failures), then it comes back.
    events
        .expect(WAIT, "a failed redial", |e| {
            matches!(e, Ev::Disconnected(d) if matches!(d.reason, DisconnectReason::ConnectFailed { .. }))
                .then_some(())
        })
        .await;
    let _node = node_at(host);
    let readies = |events: &Events| events.seen.iter().filter(|e| matches!(e, Ev::Ready(_))).count();
    assert_eq!(readies(&events), 1);
    events
        .expect(WAIT, "ready again", |e| matches!(e, Ev::Ready(r) if r.addr == addr_of(host)).then_some(()))
        .await;
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn learned_addresses_enter_the_book_and_survive_a_restart() {
    let host = "127.0.10.7";
    let node = node_at(host);
    node.rpc("addnode", json!(["127.0.10.9:18444", "add"]));
    let dir = tempfile::tempdir().unwrap();
    let make = || {
        let mut cfg = connect_only(host);
        cfg.data_dir = Some(dir.path().to_path_buf());
        cfg
    };
    let group = PeerGroup::new(make(), vec![]).start();
    let mut status;
    wait_for!(WAIT, "the address learned from bcoin's addr answer in the book", {
        status = group.send(GetStatus).await.unwrap();
        status.addrbook_new + status.addrbook_tried >= 1
    });
    group.send(Shutdown).await.unwrap();
    assert!(dir.path().join("addrbook.json").exists());
    assert!(dir.path().join("bans.json").exists());

    let again = PeerGroup::new(make(), vec![]).start();
    let restored = again.send(GetStatus).await.unwrap();
    assert_eq!(
        restored.addrbook_new + restored.addrbook_tried,
        status.addrbook_new + status.addrbook_tried,
        "the book was restored from disk"
    );
    again.send(Shutdown).await.unwrap();
}

/// A scripted peer that completes the handshake and then floods an oversized `inv`.
async fn misbehaving_peer(host: &str) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    actix::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let _ = tx.send(());
            let codec = Codec::new(Network::Regtest.magic());
            let version = btcpeer::wire::version::build(
                &btcpeer::wire::version::LocalVersion { nonce: 4242, ..Default::default() },
                None,
            );
            let too_many =
                vec![btcpeer::wire::Inventory::Block(bitcoin::BlockHash::from_byte_array([1; 32])); 50_001];
            for m in [Message::Version(version), Message::Verack, Message::Inv(too_many)] {
                let _ = stream.write_all(&codec.encode_to_bytes(&m)).await;
            }
            // Keep the socket open until the group hangs up.
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
        }
    });
    (addr, rx)
}

use bitcoin::hashes::Hash;

/// A group (with `cfg`, bans reported) that dialed a misbehaving peer on `host` and saw it
/// disconnected for its misbehaviour. Returns the group, its events, the peer's accepts and
/// its address.
async fn after_misbehaviour(
    host: &str,
    cfg: GroupConfig,
) -> (Addr<PeerGroup>, Events, tokio::sync::mpsc::UnboundedReceiver<()>, SocketAddr) {
    let (bad, mut accepted) = misbehaving_peer(host).await;
    let (probe, _, mut events) = probe(false);
    let mut subs = btcpeer::events::Subscription::common(&probe);
    subs.push(btcpeer::events::Subscription::Banned(probe.clone().recipient()));
    let group = PeerGroup::new(cfg, subs).start();
    group.send(AddAddresses(vec![PeerAddr::Ip(bad)])).await.unwrap();
    accepted.recv().await.unwrap();
    let reason = events
        .expect(WAIT, "misbehaviour disconnect", |e| match e {
            Ev::Disconnected(d) if d.addr == PeerAddr::Ip(bad) => Some(d.reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.is_misbehavior(), "{reason:?}");
    (group, events, accepted, bad)
}

#[actix_rt::test]
async fn a_misbehaving_peer_is_banned_and_not_redialed() {
    let good_host = "127.0.10.12";
    let _good = node_at(good_host);
    let mut cfg = group_config(regtest_config(), false);
    cfg.policy.max_outbound = 2;
    let (group, mut events, mut accepted, bad) = after_misbehaviour("127.0.10.11", cfg).await;
    let mut bans;
    wait_for!(WAIT, "the ban", {
        bans = group.send(GetBans).await.unwrap();
        !bans.is_empty()
    });
    assert_eq!(bans[0].target.to_string(), "127.0.10.11");
    // Offer both addresses again: the good one is dialed, the banned one is not.
    group.send(AddAddresses(vec![PeerAddr::Ip(bad), addr_of(good_host)])).await.unwrap();
    events
        .expect(WAIT, "the good peer", |e| {
            matches!(e, Ev::Ready(r) if r.addr == addr_of(good_host)).then_some(())
        })
        .await;
    assert!(accepted.try_recv().is_err(), "the banned address was dialed again");
    // Unbanning lifts it.
    assert!(group.send(UnbanAddr(PeerAddr::Ip(bad))).await.unwrap());
    assert!(group.send(GetBans).await.unwrap().is_empty());
    group.send(Shutdown).await.unwrap();
}

/// Core's rule by default: a misbehaving local peer is disconnected but not banned (a ban on
/// 127.0.0.1 would shut out every inbound Tor peer). The address stays dialable.
#[actix_rt::test]
async fn a_misbehaving_local_peer_is_disconnected_but_not_banned_by_default() {
    let mut cfg = group_config(regtest_config(), false);
    cfg.ban_local = false;
    let (group, mut events, mut accepted, bad) = after_misbehaviour("127.0.10.13", cfg).await;
    // Dialed again after its backoff: not banned.
    group.send(AddAddresses(vec![PeerAddr::Ip(bad)])).await.unwrap();
    tokio::time::timeout(WAIT, accepted.recv()).await.expect("the local address is dialed again").unwrap();
    assert!(group.send(GetBans).await.unwrap().is_empty());
    assert!(!events.all().iter().any(|e| matches!(e, Ev::Banned(_))), "a ban was announced");
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn subscribe_and_unsubscribe_reach_live_peers() {
    let host = "127.0.10.14";
    let _node = node_at(host);
    let cfg = connect_only(host);
    let (probe, _, mut events) = probe(false);
    let group = PeerGroup::new(cfg, btcpeer::events::Subscription::common(&probe)).start();
    events.expect(WAIT, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    let (late, _, _late_events) = common::probe(false);
    let id = group.send(Subscribe(btcpeer::events::Subscription::Inv(late.recipient()))).await.unwrap();
    let has = |stats: &[btcpeer::peer::PeerStats]| stats[0].subscribers.iter().any(|s| s.id == id);
    wait_for!(WAIT, "the live peer to carry the new subscription", {
        has(&group.send(GetPeers).await.unwrap())
    });
    group.send(Unsubscribe(id)).await.unwrap();
    wait_for!(WAIT, "the live peer to drop the subscription", { !has(&group.send(GetPeers).await.unwrap()) });
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn relay_mode_carries_a_transaction_from_one_node_to_another() {
    use std::str::FromStr;
    // Two nodes that never talk to each other; they share a chain only because the test copies
    // the blocks over RPC. A transaction can get from A to B only through the group.
    let a = node_at("127.0.10.21");
    let b = node_at("127.0.10.22");
    let hashes = a.mine(SEGWIT_HEIGHT);
    for hash in &hashes {
        let raw = a.rpc("getblock", json!([hash, false]));
        b.rpc("submitblock", json!([raw]));
    }
    assert_eq!(b.rpc("getblockcount", json!([])), json!(SEGWIT_HEIGHT));

    let mut peer = regtest_config();
    // bcoin (70015, no wtxidrelay) asks for witness data only from NODE_WITNESS peers.
    peer.machine.services = btcpeer::wire::ServiceFlags::WITNESS;
    let mut cfg = group_config(peer, false);
    cfg.policy.static_peers = vec![addr_of("127.0.10.21"), addr_of("127.0.10.22")];
    cfg.policy.connect_only = true;
    cfg.relay_transactions = true;
    let (probe, _, mut events) = probe(false);
    let group = PeerGroup::new(cfg, btcpeer::events::Subscription::common(&probe)).start();
    wait_ready(&mut events, 2).await;

    let block1 = a.rpc("getblock", json!([hashes[0], true]));
    let coinbase = bitcoin::Txid::from_str(block1["tx"][0].as_str().unwrap()).unwrap();
    let tx = spend_op_true(coinbase, 5_000_000_000, 1_000);
    let txid = tx.compute_txid().to_string();
    a.rpc("sendrawtransaction", json!([bitcoin::consensus::encode::serialize_hex(&tx)]));
    wait_for!(WAIT, "the transaction in node B's mempool", {
        b.rpc("getrawmempool", json!([])).as_array().unwrap().iter().any(|t| *t == txid)
    });
    group.send(Shutdown).await.unwrap();
}

fn genesis_request() -> btcpeer::peer::requests::Request {
    btcpeer::peer::requests::Request::Blocks { hashes: vec![Network::Regtest.genesis_hash()] }
}

fn fetched_block_hash(f: &Fetched) -> bitcoin::BlockHash {
    match &f.response {
        btcpeer::peer::requests::Response::Blocks(b) => b[0].block_hash(),
        other => panic!("not blocks: {other:?}"),
    }
}

#[actix_rt::test]
async fn a_fetch_right_after_start_waits_for_a_ready_peer() {
    let host = "127.0.10.31";
    let _node = node_at(host);
    let group = PeerGroup::new(connect_only(host), vec![]).start();
    // Sent at once, before any peer can be ready: it waits for one instead of failing.
    let fetched = group.send(Fetch::new(genesis_request()).wait(WAIT)).await.unwrap().unwrap();
    assert_eq!(fetched_block_hash(&fetched), Network::Regtest.genesis_hash());
    assert_eq!(group.send(WaitForPeers { min: 1, timeout: WAIT }).await.unwrap(), Ok(1));
    // Only one node exists: a second peer never comes, and the caller is told so in time.
    let short = Duration::from_millis(200);
    assert_eq!(
        group.send(WaitForPeers { min: 2, timeout: short }).await.unwrap(),
        Err(GroupError::Timeout { ready: 1, min: 2 })
    );
    group.send(Shutdown).await.unwrap();
    assert_eq!(group.send(WaitForPeers { min: 1, timeout: WAIT }).await.unwrap(), Err(GroupError::Closed));
    let err = group.send(Fetch::new(genesis_request())).await.unwrap().unwrap_err();
    assert_eq!(err, btcpeer::peer::requests::RequestError::Group(btcpeer::group::GroupError::NoPeers));
}

#[actix_rt::test]
async fn the_default_fetch_waits_and_a_waiting_caller_is_answered_when_the_peer_is_ready() {
    let host = "127.0.10.32";
    let _node = node_at(host);
    let group = PeerGroup::new(connect_only(host), vec![]).start();
    let waiting = group.send(WaitForPeers { min: 1, timeout: WAIT });
    let fetched = group.send(Fetch::new(genesis_request())).await.unwrap().unwrap();
    assert_eq!(fetched_block_hash(&fetched), Network::Regtest.genesis_hash());
    assert_eq!(waiting.await.unwrap(), Ok(1));
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn an_adopted_ready_peer_serves_fetches() {
    let host = "127.0.10.33";
    let _node = node_at(host);
    let (_probe, subs, mut events) = probe(false);
    let actor = btcpeer::peer::PeerActor::outbound(regtest_config(), addr_of(host), subs);
    let id = actor.id();
    let peer = actor.start();
    events.expect(WAIT, "the peer ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;

    // A group with no peers of its own adopts the ready peer; requests use it at once.
    let group = PeerGroup::new(group_config(regtest_config(), false), vec![]).start();
    group
        .send(AddPeer { id, addr: addr_of(host), link: btcpeer::peer::Link::Outbound, actor: peer })
        .await
        .unwrap();
    let fetched = group.send(Fetch::new(genesis_request()).wait(Duration::ZERO)).await.unwrap().unwrap();
    assert_eq!(fetched.peer, id);
    assert_eq!(fetched_block_hash(&fetched), Network::Regtest.genesis_hash());
    assert_eq!(group.send(WaitForPeers { min: 1, timeout: Duration::ZERO }).await.unwrap(), Ok(1));
    group.send(Shutdown).await.unwrap();
}

/// A listening group that offers blocks announces its public address to the peers it dials,
/// with its listening port, right after the handshake (Core's self-announcement); one that
/// offers none does not.
#[actix_rt::test]
async fn a_listening_serving_group_announces_its_address_to_outbound_peers() {
    use btcpeer::wire::ServiceFlags;
    assert!(announces_itself("127.0.10.15", ServiceFlags::NETWORK | ServiceFlags::WITNESS).await);
    assert!(!announces_itself("127.0.10.16", ServiceFlags::NONE).await);
}

/// Whether a listening group with `services` and a public address tells a scripted peer on
/// `host` about itself before answering its first ping.
async fn announces_itself(host: &str, services: btcpeer::wire::ServiceFlags) -> bool {
    use common::raw_peer::{accept_and_handshake, announces_node, frame};
    use futures_util::StreamExt;
    let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
    let peer_addr = listener.local_addr().unwrap();
    let mut peer = regtest_config();
    peer.machine.services = services;
    let mut cfg = group_config(peer, true);
    // A public address that is only ever written into an `addr` message, never dialed.
    cfg.external = vec!["1.2.3.4".parse().unwrap()];
    let group = PeerGroup::new(cfg, Vec::new()).start();
    let mut port;
    wait_for!(WAIT, "the group's listener", {
        port = group.send(GetListenAddrs).await.unwrap().first().map(|a| a.port());
        port.is_some()
    });
    group.send(AddAddresses(vec![PeerAddr::Ip(peer_addr)])).await.unwrap();
    let (mut write, mut frames) = accept_and_handshake(&listener, WAIT).await;
    // The ping follows the handshake: its pong comes after whatever the group sends on ready.
    write.write_all(&frame(&Message::Ping(5))).await.unwrap();
    let mut announced = false;
    loop {
        let next = tokio::time::timeout(WAIT, frames.next()).await.expect("the pong");
        match next.expect("open").expect("a frame").into_message().expect("a message") {
            Message::Pong(5) => break,
            m => announced |= announces_node(&m, "1.2.3.4".parse().unwrap(), port.unwrap()),
        }
    }
    group.send(Shutdown).await.unwrap();
    announced
}
