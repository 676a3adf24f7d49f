//! Transactions are fetched once per group, as Core's `TxRequestTracker` does it: several
//! bcoin nodes announce the same transactions to one `PeerGroup`, which sends one `getdata` per
//! transaction across all its peers and gives its `TxReceived` subscribers each transaction
//! once; a scripted peer that announces but withholds the transaction (answers `notfound`, or
//! hangs up) makes the group ask the next announcer.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use actix::prelude::*;
use bitcoin::{Transaction, Txid};
use btcpeer::events::{InvReceived, Subscription, TxReceived};
use btcpeer::group::{GetPeers, GetStatus, GroupConfig, PeerGroup, Shutdown};
use btcpeer::peer::{PeerAddr, PeerStats};
use btcpeer::wire::{Codec, Inventory, Message};
use btcpeer::Network;
use common::*;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

const WAIT: Duration = Duration::from_secs(60);

/// Counts the group's `TxReceived` per txid and collects `inv` announcers.
#[derive(Default)]
struct Counter {
    txs: Vec<Txid>,
    announced: Vec<(PeerAddr, Txid)>,
}

impl Actor for Counter {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(btcpeer::events::SUBSCRIBER_MAILBOX);
    }
}

impl Handler<TxReceived> for Counter {
    type Result = ();
    fn handle(&mut self, m: TxReceived, _: &mut Context<Self>) {
        self.txs.push(m.tx.compute_txid());
    }
}

impl Handler<InvReceived> for Counter {
    type Result = ();
    fn handle(&mut self, m: InvReceived, _: &mut Context<Self>) {
        for item in m.items.iter() {
            if let Inventory::Transaction(txid) | Inventory::WitnessTransaction(txid) = item {
                self.announced.push((m.addr.clone(), *txid));
            }
        }
    }
}

/// What the counter saw so far: (`TxReceived` txids, (announcer, txid) pairs). Its mailbox is
/// FIFO, so this answers after every notification queued before it.
#[derive(Message)]
#[rtype(result = "(Vec<Txid>, Vec<(PeerAddr, Txid)>)")]
struct Seen;

impl Handler<Seen> for Counter {
    type Result = MessageResult<Seen>;
    fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.txs.clone(), self.announced.clone()))
    }
}

fn counter() -> (Addr<Counter>, Vec<Subscription>) {
    let addr = Counter::default().start();
    let subs = btcpeer::subscriptions!(&addr => TxReceived, InvReceived);
    (addr, subs)
}

fn node(host: &str, connect: Vec<SocketAddr>) -> Bcoin {
    Bcoin::start_with(BcoinOptions { host: Some(host.into()), connect, ..Default::default() })
}

fn height(node: &Bcoin) -> u64 {
    node.rpc("getblockcount", serde_json::json!([])).as_u64().unwrap_or(0)
}

/// A transaction spending the coinbase of block `n` of `node`'s chain.
fn spend_block(node: &Bcoin, n: u64) -> Transaction {
    let hash = node.rpc("getblockhash", serde_json::json!([n]));
    let block = node.rpc("getblock", serde_json::json!([hash, true]));
    let coinbase = Txid::from_str(block["tx"][0].as_str().expect("coinbase txid")).expect("txid");
    spend_op_true(coinbase, 5_000_000_000, 1_000)
}

fn submit(node: &Bcoin, tx: &Transaction) {
    let hex = bitcoin::consensus::encode::serialize_hex(tx);
    node.rpc("sendrawtransaction", serde_json::json!([hex]));
}

/// A group dialing exactly these peers (outbound: preferred announcers).
fn group_of(peers: &[SocketAddr]) -> GroupConfig {
    let mut cfg = group_config(regtest_config(), false);
    cfg.policy.static_peers = peers.iter().map(|a| PeerAddr::Ip(*a)).collect();
    cfg.policy.connect_only = true;
    cfg.policy.max_outbound = peers.len();
    cfg
}

fn count(stats: &[PeerStats], sent: bool, command: &str) -> u64 {
    stats
        .iter()
        .map(|s| {
            let map = if sent { &s.sent_per_command } else { &s.recv_per_command };
            map.get(command).map_or(0, |c| c.messages)
        })
        .sum()
}

fn of(stats: &[PeerStats], addr: SocketAddr) -> Vec<PeerStats> {
    stats.iter().filter(|s| s.addr == PeerAddr::Ip(addr)).cloned().collect()
}

async fn wait_ready(group: &Addr<PeerGroup>, n: usize) {
    wait_for!(WAIT, "ready peers", { group.send(GetStatus).await.unwrap().outbound_ready == n });
}

#[actix_rt::test]
async fn three_announcers_one_getdata_per_transaction() {
    let a = node("127.0.12.2", vec![]);
    a.mine(SEGWIT_HEIGHT);
    let b = node("127.0.12.3", vec![a.p2p]);
    let c = node("127.0.12.4", vec![a.p2p]);
    wait_until_blocking(WAIT, "b and c synced", || {
        height(&b) == SEGWIT_HEIGHT && height(&c) == SEGWIT_HEIGHT
    });
    let (counter, subs) = counter();
    let group = PeerGroup::new(group_of(&[a.p2p, b.p2p, c.p2p]), subs).start();
    wait_ready(&group, 3).await;

    const N: u64 = 3;
    for n in 1..=N {
        let tx = spend_block(&a, n);
        let txid = tx.compute_txid();
        submit(&a, &tx);
        // Each of the three nodes announces it to us (bcoin relays a → b, c).
        wait_for!(WAIT, "three announcements", {
            let (_, announced) = counter.send(Seen).await.unwrap();
            announced.iter().filter(|(_, t)| *t == txid).count() == 3
        });
        wait_for!(WAIT, "the transaction", { counter.send(Seen).await.unwrap().0.contains(&txid) });
        let stats = group.send(GetPeers).await.unwrap();
        assert_eq!(count(&stats, true, "getdata"), n, "one getdata per transaction across the group");
        assert_eq!(count(&stats, false, "tx"), n, "each transaction downloaded once");
    }
    group.send(GetStatus).await.unwrap();
    let (txs, _) = counter.send(Seen).await.unwrap();
    assert_eq!(txs.len() as u64, N, "the group's TxReceived arrives once per transaction: {txs:?}");
    group.send(Shutdown).await.unwrap();
}

/// What the scripted peer is told to send.
enum Say {
    Inv(Txid),
    NotFound(Txid),
    Tx(Transaction),
    HangUp,
}

/// A scripted peer that completes the handshake, then sends what it is told and reports the
/// transaction ids we ask it for.
async fn withholding_peer(
    host: &str,
) -> (SocketAddr, mpsc::UnboundedSender<Say>, mpsc::UnboundedReceiver<Txid>) {
    let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (say, mut told) = mpsc::unbounded_channel::<Say>();
    let (asked_tx, asked) = mpsc::unbounded_channel();
    actix::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (read, mut write) = tokio::io::split(stream);
        let codec = Codec::new(Network::Regtest.magic());
        let version = btcpeer::wire::version::build(
            &btcpeer::wire::version::LocalVersion { nonce: 777, ..Default::default() },
            None,
        );
        for m in [Message::Version(version), Message::Verack] {
            let _ = write.write_all(&codec.encode_to_bytes(&m)).await;
        }
        let mut frames = FramedRead::new(read, codec.clone());
        loop {
            tokio::select! {
                frame = frames.next() => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(Message::GetData(items)) = frame.into_message() {
                            for item in items {
                                if let Inventory::Transaction(t) | Inventory::WitnessTransaction(t) = item {
                                    let _ = asked_tx.send(t);
                                }
                            }
                        }
                    }
                    _ => return,
                },
                said = told.recv() => {
                    let msg = match said {
                        Some(Say::Inv(t)) => Message::Inv(vec![Inventory::Transaction(t)]),
                        Some(Say::NotFound(t)) => Message::NotFound(vec![Inventory::Transaction(t)]),
                        Some(Say::Tx(tx)) => Message::Tx(tx),
                        Some(Say::HangUp) | None => return,
                    };
                    let _ = write.write_all(&codec.encode_to_bytes(&msg)).await;
                }
            }
        }
    });
    (addr, say, asked)
}

async fn asked_for(asked: &mut mpsc::UnboundedReceiver<Txid>, txid: Txid) {
    let got = tokio::time::timeout(WAIT, asked.recv()).await.expect("a getdata to the scripted peer");
    assert_eq!(got, Some(txid));
}

#[actix_rt::test]
async fn a_withheld_transaction_is_fetched_from_the_next_announcer() {
    let d = node("127.0.12.5", vec![]);
    d.mine(SEGWIT_HEIGHT);
    let (fake, say, mut asked) = withholding_peer("127.0.12.6").await;
    let (counter, subs) = counter();
    let group = PeerGroup::new(group_of(&[fake, d.p2p]), subs).start();
    wait_ready(&group, 2).await;
    let getdata_to_d = || async { count(&of(&group.send(GetPeers).await.unwrap(), d.p2p), true, "getdata") };

    // The scripted peer announces first and is asked; bcoin announces too and waits its turn.
    let tx1 = spend_block(&d, 1);
    let txid1 = tx1.compute_txid();
    say.send(Say::Inv(txid1)).unwrap();
    asked_for(&mut asked, txid1).await;
    submit(&d, &tx1);
    wait_for!(WAIT, "bcoin's announcement", {
        let (_, announced) = counter.send(Seen).await.unwrap();
        announced.contains(&(PeerAddr::Ip(d.p2p), txid1))
    });
    assert_eq!(getdata_to_d().await, 0, "one request at a time");
    // `notfound`: the group moves on to bcoin at once.
    say.send(Say::NotFound(txid1)).unwrap();
    wait_for!(WAIT, "the transaction from bcoin", { counter.send(Seen).await.unwrap().0.contains(&txid1) });
    assert_eq!(getdata_to_d().await, 1);
    // A late unsolicited copy is not delivered again.
    say.send(Say::Tx(tx1.clone())).unwrap();
    wait_for!(WAIT, "the late copy to arrive", {
        count(&of(&group.send(GetPeers).await.unwrap(), fake), false, "tx") == 1
    });
    group.send(GetStatus).await.unwrap();
    assert_eq!(counter.send(Seen).await.unwrap().0, vec![txid1], "TxReceived once");

    // Asked and silent, then gone: its request is handed to bcoin.
    let tx2 = spend_block(&d, 2);
    let txid2 = tx2.compute_txid();
    say.send(Say::Inv(txid2)).unwrap();
    asked_for(&mut asked, txid2).await;
    submit(&d, &tx2);
    wait_for!(WAIT, "bcoin's second announcement", {
        let (_, announced) = counter.send(Seen).await.unwrap();
        announced.contains(&(PeerAddr::Ip(d.p2p), txid2))
    });
    assert_eq!(getdata_to_d().await, 1, "still in flight to the scripted peer");
    say.send(Say::HangUp).unwrap();
    wait_for!(WAIT, "the second transaction from bcoin", {
        counter.send(Seen).await.unwrap().0.contains(&txid2)
    });
    assert_eq!(getdata_to_d().await, 2);
    assert_eq!(counter.send(Seen).await.unwrap().0, vec![txid1, txid2]);
    group.send(Shutdown).await.unwrap();
}

/// Bytes received for N transactions announced by 8 peers: 8 standalone peers (each requests
/// what it hears, as a group's peers did before) against one group of 8 (one request per
/// transaction). Run with `cargo test --test txrequest -- --ignored --nocapture`.
#[actix_rt::test]
#[ignore = "benchmark: starts 8 bcoin nodes"]
async fn bench_bytes_received_8_announcers() {
    const PEERS: usize = 8;
    const N: u64 = 40;
    let hub = node("127.0.13.2", vec![]);
    hub.mine(SEGWIT_HEIGHT);
    let mut nodes = vec![];
    for i in 1..PEERS {
        nodes.push(node(&format!("127.0.13.{}", i + 2), vec![hub.p2p]));
    }
    wait_until_blocking(WAIT * 2, "all nodes synced", || nodes.iter().all(|n| height(n) == SEGWIT_HEIGHT));
    let addrs: Vec<SocketAddr> = std::iter::once(hub.p2p).chain(nodes.iter().map(|n| n.p2p)).collect();
    let measure = |stats: &[PeerStats]| {
        let recv: u64 = stats.iter().map(|s| s.bytes_recv).sum();
        let tx_bytes: u64 = stats.iter().map(|s| s.recv_per_command.get("tx").map_or(0, |c| c.bytes)).sum();
        (recv, tx_bytes, count(stats, false, "tx"), count(stats, true, "getdata"))
    };

    // Before: standalone peers, each deciding alone.
    let (counter, subs) = counter();
    let peers: Vec<_> = addrs
        .iter()
        .map(|a| {
            let mut s = btcpeer::events::Subscribers::new();
            for sub in &subs {
                s.add(sub.clone());
            }
            btcpeer::peer::PeerActor::outbound(regtest_config(), PeerAddr::Ip(*a), s).start()
        })
        .collect();
    let stats_of = |peers: &[Addr<btcpeer::peer::PeerActor>]| {
        let asks: Vec<_> = peers.iter().map(|p| p.send(btcpeer::peer::messages::GetStats)).collect();
        async move {
            futures_util::future::join_all(asks).await.into_iter().map(Result::unwrap).collect::<Vec<_>>()
        }
    };
    wait_for!(WAIT, "standalone peers ready", {
        stats_of(&peers).await.iter().all(|s| s.state == btcpeer::peer::PeerState::Ready)
    });
    let start = measure(&stats_of(&peers).await);
    for n in 1..=N {
        submit(&hub, &spend_block(&hub, n));
    }
    wait_for!(WAIT * 2, "every announcement and download", {
        let (_, announced) = counter.send(Seen).await.unwrap();
        announced.len() as u64 >= PEERS as u64 * N && measure(&stats_of(&peers).await).2 >= PEERS as u64 * N
    });
    let end = measure(&stats_of(&peers).await);
    let before = (end.0 - start.0, end.1 - start.1, end.2 - start.2, end.3 - start.3);
    for p in &peers {
        p.do_send(btcpeer::peer::messages::Disconnect(btcpeer::peer::DisconnectReason::Requested));
    }

    // After: one group.
    let (counter, subs) = self::counter();
    let group = PeerGroup::new(group_of(&addrs), subs).start();
    wait_ready(&group, PEERS).await;
    let start = measure(&group.send(GetPeers).await.unwrap());
    for n in N + 1..=2 * N {
        submit(&hub, &spend_block(&hub, n));
    }
    wait_for!(WAIT * 2, "every announcement and one download each", {
        let (txs, announced) = counter.send(Seen).await.unwrap();
        announced.len() as u64 >= PEERS as u64 * N && txs.len() as u64 >= N
    });
    let end = measure(&group.send(GetPeers).await.unwrap());
    let after = (end.0 - start.0, end.1 - start.1, end.2 - start.2, end.3 - start.3);
    println!("{N} transactions announced by {PEERS} peers:");
    println!(
        "  before (per-peer requests): {} bytes received, {} of them tx ({} tx messages, {} getdata)",
        before.0, before.1, before.2, before.3
    );
    println!(
        "  after  (group tracker):     {} bytes received, {} of them tx ({} tx messages, {} getdata)",
        after.0, after.1, after.2, after.3
    );
    assert_eq!(after.2, N);
    group.send(Shutdown).await.unwrap();
}
