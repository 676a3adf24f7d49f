//! Requests that return results, against real bcoin regtest nodes: headers, blocks and
//! transactions from one peer; a group request that survives its node being killed; a peer
//! that sends headers with bad proof of work is banned.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use actix::prelude::*;
use bitcoin::hashes::Hash;
use bitcoin::BlockHash;
use btcpeer::group::*;
use btcpeer::peer::messages::{FetchFromPeer, GetStats, SendMessage};
use btcpeer::peer::requests::{ItemHash, Request, RequestError, Response};
use btcpeer::peer::{PeerActor, PeerAddr, SendError, SendRefused};
use btcpeer::wire::{Codec, Message};
use btcpeer::Network;
use common::*;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(45);

fn hash(s: &str) -> BlockHash {
    BlockHash::from_str(s).unwrap()
}

#[actix_rt::test]
async fn headers_blocks_and_transactions_come_back_from_bcoin() {
    let node = Bcoin::start();
    let mined: Vec<BlockHash> = node.mine(12).iter().map(|h| hash(h)).collect();
    let (_probe, subs, mut events) = probe(false);
    let peer = PeerActor::outbound(regtest_config(), PeerAddr::Ip(node.p2p), subs).start();
    events.expect(WAIT, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;

    let genesis = Network::Regtest.genesis_hash();
    let request = Request::Headers { locator: vec![genesis], stop: BlockHash::all_zeros() };
    let Response::Headers(headers) = peer.send(FetchFromPeer(request)).await.unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(headers.hashes(), mined, "all 12 headers, in chain order");
    let hashes: Vec<BlockHash> = headers.iter().map(|h| h.block_hash()).collect();
    assert_eq!(hashes, mined, "the hashes that came with them are theirs");
    assert_eq!(headers[0].prev_blockhash, genesis);

    // Headers up to a stop hash.
    let request = Request::Headers { locator: vec![genesis], stop: mined[4] };
    let Response::Headers(headers) = peer.send(FetchFromPeer(request)).await.unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(headers.len(), 5);

    // Blocks in the order asked, whatever order they arrive in.
    let want = vec![mined[7], mined[2], mined[11]];
    let Response::Blocks(blocks) =
        peer.send(FetchFromPeer(Request::Blocks { hashes: want.clone() })).await.unwrap().unwrap()
    else {
        panic!()
    };
    assert_eq!(blocks.iter().map(|b| b.block_hash()).collect::<Vec<_>>(), want);
    assert!(blocks.iter().all(|b| b.check_merkle_root()));

    // A transaction of a block by txid: the coinbase of block 3.
    let coinbase = blocks[1].txdata[0].clone();
    let request = Request::Transactions { block: mined[2], txids: vec![coinbase.compute_txid()] };
    let Response::Transactions(txs) = peer.send(FetchFromPeer(request)).await.unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(txs, vec![coinbase]);

    // A block bcoin does not have: it answers notfound (or, like Core, nothing: a timeout).
    let unknown = BlockHash::from_byte_array([7; 32]);
    let err = peer.send(FetchFromPeer(Request::Blocks { hashes: vec![unknown] })).await.unwrap().unwrap_err();
    assert!(
        matches!(err, RequestError::NotFound { hash: ItemHash::Block(h) } if h == unknown)
            || matches!(err, RequestError::Timeout { .. }),
        "{err}"
    );
    println!("unknown block: {err}");
    // The peer is still fine.
    assert_eq!(peer.send(GetStats).await.unwrap().state, btcpeer::peer::PeerState::Ready);
}

#[actix_rt::test]
async fn filtered_blocks_come_with_their_matched_transactions_from_a_bloom_peer() {
    let node = Bcoin::start_with(BcoinOptions { bip37: true, ..Default::default() });
    let mined: Vec<BlockHash> = node.mine(3).iter().map(|h| hash(h)).collect();
    let (_probe, subs, mut events) = probe(false);
    let peer = PeerActor::outbound(regtest_config(), PeerAddr::Ip(node.p2p), subs).start();
    let services = events
        .expect(WAIT, "ready", |e| if let Ev::Ready(r) = e { Some(r.info.services) } else { None })
        .await;
    assert_ne!(services & 4, 0, "bcoin offers NODE_BLOOM");

    // No filter loaded yet: bcoin answers notfound.
    let request = Request::FilteredBlocks { hashes: vec![mined[1]] };
    let err = peer.send(FetchFromPeer(request.clone())).await.unwrap().unwrap_err();
    assert_eq!(err, RequestError::NotFound { hash: ItemHash::Block(mined[1]) });

    // Before a filter is loaded, bcoin (as Core) would punish a filteradd: it is refused here.
    let add = Message::FilterAdd(btcpeer::wire::FilterAdd { data: vec![7; 20] });
    let refused = peer.send(SendMessage(add)).await.unwrap().unwrap_err();
    assert!(matches!(refused, SendError::Refused(SendRefused::BadFilter { .. })), "{refused:?}");

    // A filter with every bit set matches every transaction.
    let filter = btcpeer::wire::FilterLoad {
        filter: vec![0xff; 64],
        hash_funcs: 1,
        tweak: 0,
        flags: btcpeer::wire::BloomFlags::None,
    };
    peer.send(SendMessage(Message::FilterLoad(filter))).await.unwrap().unwrap();
    let request = Request::FilteredBlocks { hashes: vec![mined[1], mined[0]] };
    let Response::FilteredBlocks(blocks) = peer.send(FetchFromPeer(request)).await.unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(blocks.iter().map(|b| b.header.block_hash()).collect::<Vec<_>>(), vec![mined[1], mined[0]]);
    let full = peer.send(FetchFromPeer(Request::Blocks { hashes: vec![mined[1]] })).await.unwrap().unwrap();
    let Response::Blocks(full) = full else { panic!() };
    assert_eq!(blocks[0].transactions, full[0].txdata, "the matched transactions are the block's");
}

#[actix_rt::test]
async fn filtered_blocks_are_not_asked_of_peers_without_bloom() {
    let node = Bcoin::start();
    let mined = hash(&node.mine(1)[0]);
    let (_probe, subs, mut events) = probe(false);
    let peer = PeerActor::outbound(regtest_config(), PeerAddr::Ip(node.p2p), subs).start();
    events.expect(WAIT, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    let err =
        peer.send(FetchFromPeer(Request::FilteredBlocks { hashes: vec![mined] })).await.unwrap().unwrap_err();
    assert_eq!(err, RequestError::Unsupported { service: btcpeer::wire::ServiceFlags::BLOOM });
    assert_eq!(peer.send(GetStats).await.unwrap().sent_per_command.get("getdata"), None, "nothing was sent");
    // Nor does a filter go to it: Core disconnects a peer that sends one without NODE_BLOOM.
    let filter = btcpeer::wire::FilterLoad {
        filter: vec![0xff; 8],
        hash_funcs: 1,
        tweak: 0,
        flags: btcpeer::wire::BloomFlags::None,
    };
    let refused = peer.send(SendMessage(Message::FilterLoad(filter))).await.unwrap().unwrap_err();
    assert_eq!(
        refused,
        SendError::Refused(SendRefused::ServiceNotOffered {
            command: "filterload".into(),
            service: "NODE_BLOOM".into()
        })
    );
    let stats = peer.send(GetStats).await.unwrap();
    assert_eq!(stats.sent_per_command.get("filterload"), None, "nothing was sent");
    assert_eq!(stats.state, btcpeer::peer::PeerState::Ready);
}

#[actix_rt::test]
async fn a_group_request_completes_on_another_node_when_its_node_dies() {
    let a = Bcoin::start();
    let mined: Vec<BlockHash> = a.mine(5).iter().map(|h| hash(h)).collect();
    let b = Bcoin::start_with(BcoinOptions { connect: vec![a.p2p], ..Default::default() });
    wait_until_blocking(WAIT, "node B to sync from A", || {
        b.rpc("getblockcount", serde_json::json!([])).as_u64() == Some(5)
    });
    let mut cfg = group_config(regtest_config(), false);
    cfg.policy.static_peers = vec![PeerAddr::Ip(a.p2p), PeerAddr::Ip(b.p2p)];
    cfg.policy.connect_only = true;
    let (_probe, _, mut events) = probe(false);
    let group = PeerGroup::new(cfg, btcpeer::events::Subscription::common(&_probe)).start();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = events
            .expect(WAIT, "two ready peers", |e| match e {
                Ev::Ready(r) if !ids.contains(&(r.peer, r.addr.clone())) => Some((r.peer, r.addr.clone())),
                _ => None,
            })
            .await;
        ids.push(r);
    }
    let (a_id, _) = ids.iter().find(|(_, addr)| *addr == PeerAddr::Ip(a.p2p)).cloned().unwrap();

    // Freeze A so the request waits on it, then kill it: the request must move to B.
    a.freeze();
    let fetch = Fetch::new(Request::Blocks { hashes: vec![mined[3]] }).preferred(a_id);
    let pending = actix::spawn(group.send(fetch));
    let peers = group.send(GetPeers).await.unwrap();
    let a_stats = peers.iter().find(|p| p.id == a_id).unwrap().clone();
    wait_for!(WAIT, "the getdata to reach node A's socket", {
        let peers = group.send(GetPeers).await.unwrap();
        peers.iter().find(|p| p.id == a_id).is_some_and(|p| {
            p.sent_per_command.get("getdata").map_or(0, |c| c.messages)
                > a_stats.sent_per_command.get("getdata").map_or(0, |c| c.messages)
        })
    });
    let mut a = a;
    a.kill();
    let fetched = pending.await.unwrap().unwrap().expect("the request completes on node B");
    assert_ne!(fetched.peer, a_id);
    assert_eq!(fetched.attempts, 2);
    let Response::Blocks(blocks) = fetched.response else { panic!() };
    assert_eq!(blocks[0].block_hash(), mined[3]);

    // With no node left that has it, the budget runs out with a typed error.
    let unknown = BlockHash::from_byte_array([9; 32]);
    let err = group.send(Fetch::new(Request::Blocks { hashes: vec![unknown] })).await.unwrap().unwrap_err();
    assert!(matches!(err, RequestError::RetriesExhausted { .. } | RequestError::NotFound { .. }), "{err}");
    println!("unknown block through the group: {err}");
    group.send(Shutdown).await.unwrap();
}

/// A scripted inbound peer: completes the handshake, then sends a header whose hash misses its
/// own target.
async fn send_bad_pow_headers(to: SocketAddr, from: String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let codec = Codec::new(Network::Regtest.magic());
    let version = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion { nonce: 777, ..Default::default() },
        None,
    );
    let mut header = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
    header.prev_blockhash = Network::Regtest.genesis_hash();
    header.time += 600;
    while header.validate_pow(header.target()).is_ok() {
        header.nonce += 1;
    }
    for m in [Message::Version(version), Message::Verack, Message::Headers(vec![header])] {
        stream.write_all(&codec.encode_to_bytes(&m)).await.unwrap();
    }
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
}

#[actix_rt::test]
async fn a_peer_sending_headers_with_bad_proof_of_work_is_banned() {
    let cfg = group_config(regtest_config(), true);
    let (probe, _, mut events) = probe(false);
    let mut subs = btcpeer::events::Subscription::common(&probe);
    subs.push(btcpeer::events::Subscription::Banned(probe.clone().recipient()));
    let group = PeerGroup::new(cfg, subs).start();
    let mut listen: Vec<SocketAddr>;
    wait_for!(WAIT, "the listener", {
        listen = group.send(GetListenAddrs).await.unwrap();
        !listen.is_empty()
    });
    let listen = listen[0];
    let from = next_host();
    actix::spawn(send_bad_pow_headers(listen, from.clone()));
    let reason = events
        .expect(WAIT, "the misbehaviour disconnect", |e| match e {
            Ev::Disconnected(d) => Some(d.reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.is_misbehavior(), "{reason:?}");
    assert!(reason.to_string().contains("proof of work"), "{reason}");
    let ban = events
        .expect(WAIT, "the ban", |e| if let Ev::Banned(b) = e { Some(b.ban.clone()) } else { None })
        .await;
    assert_eq!(ban.target.to_string(), from);
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn punishing_a_peer_that_already_left_still_bans_its_address() {
    let cfg = group_config(regtest_config(), true);
    let (probe, _, mut events) = probe(false);
    let group = PeerGroup::new(cfg, btcpeer::events::Subscription::common(&probe)).start();
    let mut listen: Vec<SocketAddr>;
    wait_for!(WAIT, "the listener", {
        listen = group.send(GetListenAddrs).await.unwrap();
        !listen.is_empty()
    });
    let from = next_host();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    let mut stream = socket.connect(listen[0]).await.unwrap();
    let codec = Codec::new(Network::Regtest.magic());
    let version = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion { nonce: 778, ..Default::default() },
        None,
    );
    for m in [Message::Version(version), Message::Verack] {
        stream.write_all(&codec.encode_to_bytes(&m)).await.unwrap();
    }
    let peer = events.expect(WAIT, "ready", |e| if let Ev::Ready(r) = e { Some(r.peer) } else { None }).await;
    drop(stream);
    events.expect(WAIT, "gone", |e| matches!(e, Ev::Disconnected(d) if d.peer == peer).then_some(())).await;
    let reason = btcpeer::peer::DisconnectReason::Misbehaving(btcpeer::peer::Misbehavior::InvalidData {
        reason: "headers with bad proof of work".into(),
    });
    group.send(DisconnectPeerWith { peer, reason }).await.unwrap().unwrap();
    let mut bans;
    wait_for!(WAIT, "the ban", {
        bans = group.send(GetBans).await.unwrap();
        !bans.is_empty()
    });
    assert_eq!(bans.iter().map(|b| b.target.to_string()).collect::<Vec<_>>(), vec![from]);
    group.send(Shutdown).await.unwrap();
}
