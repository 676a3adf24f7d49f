//! A tiny block indexer: counts the transactions of the best chain. It applies each
//! `ChainEvent::Block` and undoes each `ChainEvent::BlockDisconnected`, and prints its tip after
//! every change. Blocks arrive in order, each once, from the last one delivered before a
//! restart (the chain sync keeps that cursor in the data dir, next to `headers.dat`); a
//! reorganisation, even one that happened while the program was stopped, first undoes the
//! delivered blocks that left the best chain, newest first.
//!
//! ```text
//! cargo run --example indexer -- 127.0.0.1:18444 [network] [data-dir]
//! ```
//!
//! The index lives in memory here, so after a restart it counts from where delivery resumes;
//! a real indexer keeps its tables on disk and applies each event in one transaction.

use actix::prelude::*;
use bitcoin::BlockHash;
use btcpeer::group::{GroupConfig, PeerGroup};
use btcpeer::peer::PeerConfig;
use btcpeer::sync::{ChainEvent, ChainSync, ChainSyncConfig, SubscribeChain};
use btcpeer::Network;

/// The index: per applied block, its hash, height and transaction count.
#[derive(Default)]
struct Indexer {
    blocks: Vec<(BlockHash, u32, usize)>,
    txs: usize,
}

impl Indexer {
    fn print_tip(&self, what: &str) {
        match self.blocks.last() {
            Some((hash, height, _)) => println!("{what}: tip {height} {hash}, {} transactions", self.txs),
            None => println!("{what}: empty"),
        }
    }
}

impl Actor for Indexer {
    type Context = Context<Self>;
}

impl Handler<ChainEvent> for Indexer {
    type Result = ();
    fn handle(&mut self, e: ChainEvent, _: &mut Context<Self>) {
        match e {
            ChainEvent::Block { hash, height, block, .. } => {
                self.txs += block.txdata.len();
                self.blocks.push((hash, height, block.txdata.len()));
                self.print_tip("applied");
            }
            ChainEvent::BlockDisconnected { hash, height } => {
                // Always the newest applied block: undo exactly what applying it did.
                match self.blocks.pop() {
                    Some((h, _, txs)) if h == hash => self.txs -= txs,
                    Some(other) => {
                        eprintln!("undo of {height} {hash} does not match the tip {other:?}");
                        self.blocks.push(other);
                    }
                    // Applied before this run (the index is in memory): nothing to undo here.
                    None => {}
                }
                self.print_tip("undone");
            }
            ChainEvent::BlockFailed { hash, height, error } => {
                eprintln!("block {height} {hash} not fetched yet ({error}); retrying");
            }
            ChainEvent::Synced { height, .. } => println!("headers synced at {height}"),
            _ => {}
        }
    }
}

#[actix_rt::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let peer = args.next().unwrap_or_else(|| "127.0.0.1:18444".into());
    let network: Network = args.next().as_deref().unwrap_or("regtest").parse().expect("network");
    let data_dir = args.next();

    let peer_cfg = PeerConfig::new(network);
    let tip = peer_cfg.tip.clone();
    let mut cfg = GroupConfig::new(peer_cfg);
    cfg.policy.static_peers = vec![peer.parse().expect("peer address")];
    cfg.policy.connect_only = true;
    let group = PeerGroup::new(cfg, Vec::new()).start();

    let mut sync_cfg = ChainSyncConfig::new(network);
    sync_cfg.data_dir = data_dir.map(Into::into);
    sync_cfg.fetch_blocks = true;
    sync_cfg.tip = tip;
    let sync = ChainSync::new(sync_cfg, group).expect("header chain").start();
    sync.do_send(SubscribeChain(Indexer::default().start().recipient()));
    tokio::signal::ctrl_c().await.ok();
}
