//! Header sync and block fetching against real bcoin regtest nodes: a full sync of thousands
//! of headers, a restart that resumes from `headers.dat`, live announcements, new blocks
//! fetched, and a reorganisation to a chain with more work found on another node.

mod common;

use std::str::FromStr;
use std::time::Duration;

use actix::prelude::*;
use bitcoin::BlockHash;
use btcpeer::group::*;
use btcpeer::peer::PeerAddr;
use btcpeer::sync::*;
use common::*;
use serde_json::json;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(60);

/// Collects chain events into a channel.
struct ChainProbe(mpsc::UnboundedSender<ChainEvent>);
impl Actor for ChainProbe {
    type Context = Context<Self>;
}
impl Handler<ChainEvent> for ChainProbe {
    type Result = ();
    fn handle(&mut self, m: ChainEvent, _: &mut Context<Self>) {
        let _ = self.0.send(m);
    }
}

struct ChainEvents(mpsc::UnboundedReceiver<ChainEvent>);
impl ChainEvents {
    async fn expect<T>(&mut self, what: &str, mut f: impl FnMut(&ChainEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.0.recv()).await {
                Ok(Some(e)) => {
                    if let Some(t) = f(&e) {
                        return t;
                    }
                }
                Ok(None) => panic!("chain events closed while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }
}

fn best(node: &Bcoin) -> (u64, BlockHash) {
    let height = node.rpc("getblockcount", json!([])).as_u64().unwrap();
    let hash = BlockHash::from_str(node.rpc("getbestblockhash", json!([])).as_str().unwrap()).unwrap();
    (height, hash)
}

fn group_for(nodes: &[&Bcoin]) -> Addr<PeerGroup> {
    group_with_tip(nodes, btcpeer::peer::TipHeight::default())
}

fn group_with_tip(nodes: &[&Bcoin], tip: btcpeer::peer::TipHeight) -> Addr<PeerGroup> {
    let mut peer = regtest_config();
    peer.tip = tip;
    let mut cfg = group_config(peer, false);
    cfg.policy.static_peers = nodes.iter().map(|n| PeerAddr::Ip(n.p2p)).collect();
    cfg.policy.connect_only = true;
    PeerGroup::new(cfg, Vec::new()).start()
}

fn start_sync(
    group: &Addr<PeerGroup>,
    dir: Option<&std::path::Path>,
    fetch_blocks: bool,
) -> (Addr<ChainSync>, ChainEvents) {
    start_sync_with_tip(group, dir, fetch_blocks, Default::default())
}

fn start_sync_with_tip(
    group: &Addr<PeerGroup>,
    dir: Option<&std::path::Path>,
    fetch_blocks: bool,
    tip: btcpeer::peer::TipHeight,
) -> (Addr<ChainSync>, ChainEvents) {
    let mut cfg = ChainSyncConfig::new(btcpeer::Network::Regtest);
    cfg.tip = tip;
    cfg.data_dir = dir.map(|d| d.to_path_buf());
    cfg.fetch_blocks = fetch_blocks;
    let sync = ChainSync::new(cfg, group.clone()).unwrap().start();
    let (tx, rx) = mpsc::unbounded_channel();
    sync.do_send(SubscribeChain(ChainProbe(tx).start().recipient()));
    (sync, ChainEvents(rx))
}

#[actix_rt::test]
async fn headers_sync_to_the_tip_resume_from_disk_and_follow_announcements() {
    let node = Bcoin::start();
    node.mine(2_500);
    let (height, tip) = best(&node);
    let dir = tempfile::tempdir().unwrap();

    let group = group_for(&[&node]);
    let (sync, mut events) = start_sync(&group, Some(dir.path()), false);
    let synced = events
        .expect("synced", |e| match e {
            ChainEvent::Synced { height, tip } => Some((*height, *tip)),
            _ => None,
        })
        .await;
    assert_eq!(synced, (height as u32, tip), "synced to bcoin's tip");
    let status = sync.send(GetChainStatus).await.unwrap();
    assert!(status.synced);
    assert_eq!(status.headers, 2_501, "genesis and 2,500 headers");
    sync.send(StopChainSync).await.unwrap();
    group.send(Shutdown).await.unwrap();
    assert!(dir.path().join("headers.dat").metadata().unwrap().len() >= 2_500 * 80);

    // A restart resumes from disk before any peer is asked, and the height loaded is what our
    // `version` tells peers from then on (the sync loads the chain before the group dials).
    let shared = btcpeer::peer::TipHeight::default();
    let group = group_with_tip(&[&node], shared.clone());
    let (sync, mut events) = start_sync_with_tip(&group, Some(dir.path()), false, shared.clone());
    let status = sync.send(GetChainStatus).await.unwrap();
    assert_eq!((status.height, status.tip), (height as u32, tip));
    assert_eq!(shared.get(), 2_500);
    wait_until_blocking(WAIT, "bcoin to see our start height", || {
        node.rpc("getpeerinfo", json!([]))
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["startingheight"] == 2_500))
    });

    // New blocks arrive as announcements and extend the chain.
    events.expect("synced again", |e| matches!(e, ChainEvent::Synced { .. }).then_some(())).await;
    node.mine(3);
    let (height, tip) = best(&node);
    events
        .expect("the three new headers", |e| match e {
            ChainEvent::Headers { height: h, tip: t, .. } if *h == height as u32 => {
                assert_eq!(*t, tip);
                Some(())
            }
            _ => None,
        })
        .await;
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn new_blocks_are_fetched_once_synced() {
    let node = Bcoin::start();
    node.mine(20);
    let group = group_for(&[&node]);
    let (_sync, mut events) = start_sync(&group, None, true);
    events.expect("synced", |e| matches!(e, ChainEvent::Synced { .. }).then_some(())).await;
    let mined = BlockHash::from_str(&node.mine(1)[0]).unwrap();
    let (hash, height, txs, size) = events
        .expect("the new block", |e| match e {
            ChainEvent::Block { hash, height, txs, size, block, .. } => {
                assert_eq!(block.block_hash(), *hash);
                Some((*hash, *height, *txs, *size))
            }
            _ => None,
        })
        .await;
    assert_eq!((hash, height, txs), (mined, 21, 1));
    assert!(size > 80);
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn a_chain_with_more_work_on_another_node_wins_and_a_reorg_follows() {
    // Two nodes that never talk to each other mine different chains from genesis.
    let a = Bcoin::start();
    let b = Bcoin::start();
    a.mine(10);
    b.mine(12);
    let group = group_for(&[&a, &b]);
    let (sync, mut events) = start_sync(&group, None, false);
    let b_tip = best(&b).1;
    events
        .expect("the 12-block chain as the best", |e| {
            matches!(e, ChainEvent::Headers { tip, .. } if *tip == b_tip).then_some(())
        })
        .await;
    assert_eq!(sync.send(GetChainStatus).await.unwrap().tip, b_tip);
    // A overtakes B: the sync switches, reporting the blocks that left the best chain.
    a.mine(5);
    let (a_height, a_tip) = best(&a);
    // bcoin announces each new block on its own, so the switch may come at any of them.
    let mut reorged = 0;
    events
        .expect("the reorg to A's chain", |e| match e {
            ChainEvent::Headers { tip, reorged: r, height, .. } => {
                reorged += r;
                (*tip == a_tip).then(|| assert_eq!(*height, a_height as u32))
            }
            _ => None,
        })
        .await;
    assert_eq!(reorged, 12, "all of B's blocks left the best chain");
    group.send(Shutdown).await.unwrap();
}

/// A scripted inbound peer: completes the handshake on `target` and returns the frames it
/// receives afterwards.
async fn newcomer(
    target: std::net::SocketAddr,
) -> tokio_util::codec::FramedRead<tokio::net::TcpStream, btcpeer::wire::Codec> {
    use btcpeer::wire::{Codec, Message};
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
    let codec = Codec::new(btcpeer::Network::Regtest.magic());
    let version = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion { nonce: 99, ..Default::default() },
        None,
    );
    stream.write_all(&codec.encode_to_bytes(&Message::Version(version))).await.unwrap();
    stream.write_all(&codec.encode_to_bytes(&Message::Verack)).await.unwrap();
    let mut frames = tokio_util::codec::FramedRead::new(stream, codec);
    let mut verack = false;
    while !verack {
        verack = matches!(frames.next().await.unwrap().unwrap().into_message(), Ok(Message::Verack));
    }
    frames
}

/// The remote side of a connection we dialed: answers our version and verack, then returns
/// the frames that follow.
async fn answer_handshake(
    stream: tokio::net::TcpStream,
) -> (
    tokio_util::codec::FramedRead<tokio::io::ReadHalf<tokio::net::TcpStream>, btcpeer::wire::Codec>,
    tokio::io::WriteHalf<tokio::net::TcpStream>,
) {
    use btcpeer::wire::{Codec, Message};
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let (read, mut write) = tokio::io::split(stream);
    let codec = Codec::new(btcpeer::Network::Regtest.magic());
    let mut frames = tokio_util::codec::FramedRead::new(read, codec.clone());
    let version = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion { nonce: 98, ..Default::default() },
        None,
    );
    loop {
        match frames.next().await.unwrap().unwrap().into_message() {
            Ok(Message::Version(_)) => {
                write.write_all(&codec.encode_to_bytes(&Message::Version(version.clone()))).await.unwrap();
                write.write_all(&codec.encode_to_bytes(&Message::Verack)).await.unwrap();
            }
            Ok(Message::Verack) => break,
            _ => {}
        }
    }
    (frames, write)
}

#[actix_rt::test]
async fn a_broadcast_reaches_peers_that_come_later_until_a_fetched_block_confirms_it() {
    use btcpeer::wire::{Inventory, Message};
    use futures_util::StreamExt;
    let node = Bcoin::start();
    let hashes = node.mine(SEGWIT_HEIGHT);
    let mut peer = regtest_config();
    // bcoin asks for witness data only from peers offering NODE_WITNESS.
    peer.machine.services = btcpeer::wire::ServiceFlags::WITNESS;
    let mut cfg = group_config(peer, false);
    cfg.policy.static_peers = vec![PeerAddr::Ip(node.p2p)];
    cfg.policy.max_outbound = 2;
    let group = PeerGroup::new(cfg, Vec::new()).start();
    let (_sync, mut events) = start_sync(&group, None, true);
    events.expect("synced", |e| matches!(e, ChainEvent::Synced { .. }).then_some(())).await;

    // Two peers must ask before the broadcast counts; only bcoin is there.
    let block1 = node.rpc("getblock", json!([hashes[0], true]));
    let coinbase: bitcoin::Txid = block1["tx"][0].as_str().unwrap().parse().unwrap();
    let tx = spend_op_true(coinbase, 5_000_000_000, 2_000);
    let txid = tx.compute_txid();
    let broadcast = actix::spawn(group.send(BroadcastTransaction {
        tx,
        min_peers: 2,
        timeout: Duration::from_secs(120),
    }));
    wait_for!(WAIT, "the transaction in bcoin's mempool", {
        node.rpc("getrawmempool", json!([])).as_array().unwrap().iter().any(|t| t == &txid.to_string())
    });

    // A peer we connect to afterwards is told about it too (outbound only: an inbound spy
    // would learn which transactions are ours).
    let listener = tokio::net::TcpListener::bind((next_host().as_str(), 0)).await.unwrap();
    let target = listener.local_addr().unwrap();
    group.send(AddAddresses(vec![PeerAddr::Ip(target)])).await.unwrap();
    let (stream, _) = tokio::time::timeout(WAIT, listener.accept()).await.expect("dialed").unwrap();
    // The write half stays open (bound) for the rest of the test.
    let (mut frames, _write) = answer_handshake(stream).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, frames.next()).await.expect("an inv for the broadcast");
        if let Ok(Message::Inv(items)) = frame.unwrap().unwrap().into_message() {
            if items.iter().any(|i| matches!(i, Inventory::Transaction(t) if *t == txid)) {
                break;
            }
        }
    }

    // bcoin mines it; the chain sync fetches the block and the broadcast resolves as confirmed.
    let mined = node.mine(1).remove(0);
    let outcome = broadcast.await.unwrap().unwrap().expect("confirmed");
    assert_eq!(outcome.confirmed_in.map(|h| h.to_string()), Some(mined));
    assert_eq!(outcome.requested_by, 1);
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn block_stream_downloads_from_several_peers_in_order_and_header_stream_follows_the_chain() {
    use futures_util::StreamExt;
    let a = Bcoin::start();
    a.mine(300);
    let b = Bcoin::start_with(BcoinOptions { connect: vec![a.p2p], ..Default::default() });
    wait_for!(WAIT, "node B to sync from A", { b.rpc("getblockcount", json!([])).as_u64() == Some(300) });
    let group = group_for(&[&a, &b]);
    let (sync, mut events) = start_sync(&group, None, false);
    events.expect("synced", |e| matches!(e, ChainEvent::Synced { .. }).then_some(())).await;
    wait_for!(WAIT, "both peers ready", {
        group
            .send(GetPeers)
            .await
            .unwrap()
            .iter()
            .filter(|p| p.state == btcpeer::peer::PeerState::Ready)
            .count()
            == 2
    });

    // Every header from genesis, in order, through the header stream.
    let mut headers = Box::pin(header_stream(sync.clone(), Vec::new()));
    let mut prev = btcpeer::Network::Regtest.genesis_hash();
    let mut hashes = Vec::new();
    for _ in 0..300 {
        let h = tokio::time::timeout(WAIT, headers.next()).await.unwrap().unwrap();
        assert_eq!(h.prev_blockhash, prev);
        prev = h.block_hash();
        hashes.push(prev);
    }
    assert_eq!(prev, best(&a).1);

    // All 300 blocks, 32 requests at a time spread over both nodes, delivered in order.
    let blocks: Vec<_> = block_stream(group.clone(), hashes.clone(), 32).collect().await;
    let got: Vec<BlockHash> = blocks.iter().map(|b| b.as_ref().unwrap().block_hash()).collect();
    assert_eq!(got, hashes);
    let peers = group.send(GetPeers).await.unwrap();
    let served: Vec<u64> =
        peers.iter().map(|p| p.recv_per_command.get("block").map_or(0, |c| c.messages)).collect();
    assert!(served.iter().all(|n| *n > 0), "both nodes served blocks: {served:?}");

    // The header stream then follows new blocks live.
    let new = BlockHash::from_str(&a.mine(1)[0]).unwrap();
    let h = tokio::time::timeout(WAIT, headers.next()).await.unwrap().unwrap();
    assert_eq!((h.prev_blockhash, h.block_hash()), (prev, new));
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn a_chain_ending_on_a_full_message_is_synced_without_an_unanswered_request() {
    // bcoin answers nothing to a locator at its tip; 2,000 headers end exactly on a full
    // message, so the sync must still ask in a way that gets an answer.
    let node = Bcoin::start();
    node.mine(2_000);
    let group = group_for(&[&node]);
    let (_sync, mut events) = start_sync(&group, None, false);
    let height = events
        .expect("synced", |e| if let ChainEvent::Synced { height, .. } = e { Some(*height) } else { None })
        .await;
    assert_eq!(height, 2_000);
    let peers = group.send(GetPeers).await.unwrap();
    let count = |m: &std::collections::BTreeMap<String, btcpeer::peer::Counter>, c: &str| {
        m.get(c).map_or(0, |s| s.messages)
    };
    let p = &peers[0];
    assert_eq!(
        count(&p.sent_per_command, "getheaders"),
        count(&p.recv_per_command, "headers"),
        "every getheaders was answered"
    );
    group.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn a_new_block_nobody_serves_is_reported_as_a_gap() {
    use btcpeer::wire::{Codec, Message};
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let node = Bcoin::start();
    node.mine(10);
    let mut cfg = group_config(regtest_config(), true);
    cfg.policy.static_peers = vec![PeerAddr::Ip(node.p2p)];
    cfg.policy.connect_only = true;
    let group = PeerGroup::new(cfg, Vec::new()).start();
    let (sync, mut events) = start_sync(&group, None, true);
    events.expect("synced", |e| matches!(e, ChainEvent::Synced { .. }).then_some(())).await;
    let tip = sync.send(GetChainStatus).await.unwrap().tip;
    let tip_header = sync.send(GetHeadersAfter { locator: vec![], max: 2_000 }).await.unwrap().pop().unwrap();
    assert_eq!(tip_header.block_hash(), tip);

    // A peer announces a valid header on top of the tip, then answers notfound for its block
    // (as does bcoin, which never saw it).
    let mut listen: Vec<std::net::SocketAddr>;
    wait_for!(WAIT, "the listener", {
        listen = group.send(GetListenAddrs).await.unwrap();
        !listen.is_empty()
    });
    let frames = newcomer(listen[0]).await;
    let mut header = tip_header;
    header.prev_blockhash = tip;
    header.time += 1;
    while header.validate_pow(header.target()).is_err() {
        header.nonce += 1;
    }
    let codec = Codec::new(btcpeer::Network::Regtest.magic());
    let mut stream = frames.into_inner();
    stream.write_all(&codec.encode_to_bytes(&Message::Headers(vec![header]))).await.unwrap();
    let (read, mut write) = stream.into_split();
    actix::spawn(async move {
        let mut frames = tokio_util::codec::FramedRead::new(read, codec.clone());
        while let Some(Ok(frame)) = frames.next().await {
            if let Ok(Message::GetData(items)) = frame.into_message() {
                let _ = write.write_all(&codec.encode_to_bytes(&Message::NotFound(items))).await;
            }
        }
    });
    let (hash, height) = events
        .expect("the gap", |e| match e {
            ChainEvent::BlockFailed { hash, height, .. } => Some((*hash, *height)),
            ChainEvent::Block { .. } => panic!("nobody has that block"),
            _ => None,
        })
        .await;
    assert_eq!((hash, height), (header.block_hash(), 11));
    group.send(Shutdown).await.unwrap();
}
