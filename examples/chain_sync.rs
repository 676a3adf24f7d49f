//! Follows the best header chain of one node, prints chain events (headers, synced, fetched
//! blocks) as JSON, and asks the group for the genesis block, routed and retried by the group.
//!
//! ```text
//! cargo run --example chain_sync -- 127.0.0.1:18444 [network] [data-dir]
//! ```

use actix::prelude::*;
use btcpeer::group::{Fetch, GroupConfig, PeerGroup};
use btcpeer::peer::requests::{Request, Response};
use btcpeer::peer::PeerConfig;
use btcpeer::sync::{ChainEvent, ChainSync, ChainSyncConfig, SubscribeChain};
use btcpeer::Network;

/// Prints every chain event.
struct Watcher;

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<ChainEvent> for Watcher {
    type Result = ();
    fn handle(&mut self, e: ChainEvent, _: &mut Context<Self>) {
        println!("{}", serde_json::to_string(&e).unwrap_or_default());
    }
}

#[actix_rt::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let peer = args.next().unwrap_or_else(|| "127.0.0.1:18444".into());
    let network: Network = args.next().as_deref().unwrap_or("regtest").parse().expect("network");
    let data_dir = args.next();

    let mut peer_cfg = PeerConfig::new(network);
    let tip = peer_cfg.tip.clone();
    peer_cfg.machine.relay = false;
    let mut cfg = GroupConfig::new(peer_cfg);
    cfg.policy.static_peers = vec![peer.parse().expect("peer address")];
    cfg.policy.connect_only = true;
    let group = PeerGroup::new(cfg, Vec::new()).start();

    let mut sync_cfg = ChainSyncConfig::new(network);
    sync_cfg.data_dir = data_dir.map(Into::into);
    sync_cfg.fetch_blocks = true;
    // Shared with the peers' `version` start height.
    sync_cfg.tip = tip;
    let sync = ChainSync::new(sync_cfg, group.clone()).expect("header chain").start();
    sync.do_send(SubscribeChain(Watcher.start().recipient()));

    let genesis = network.genesis_hash();
    match group.send(Fetch::new(Request::Blocks { hashes: vec![genesis] })).await {
        Ok(Ok(f)) => {
            if let Response::Blocks(b) = f.response {
                println!(
                    "genesis from peer {} ({} attempt(s)): {} tx",
                    f.peer,
                    f.attempts,
                    b[0].txdata.len()
                );
            }
        }
        Ok(Err(e)) => eprintln!("genesis request failed: {e}"),
        Err(_) => eprintln!("group stopped"),
    }
    tokio::signal::ctrl_c().await.ok();
}
