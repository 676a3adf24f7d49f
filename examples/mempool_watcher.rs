//! A minimal "mempool watcher" service: a `PeerGroup` asks its peers to relay transactions,
//! fetches what they announce, and this actor prints each new transaction once (a bounded set
//! remembers what was seen, so memory stays flat however long it runs).
//!
//! ```text
//! cargo run --example mempool_watcher -- [network] [HOST:PORT ...]
//! ```

use std::collections::{HashSet, VecDeque};

use actix::prelude::*;
use btcpeer::events::{Subscription, TxReceived};
use btcpeer::group::{GroupConfig, PeerGroup, Shutdown};
use btcpeer::peer::PeerAddr;
use btcpeer::Network;

/// Transactions remembered to print each only once.
const SEEN: usize = 100_000;

struct Watcher {
    seen: HashSet<bitcoin::Txid>,
    order: VecDeque<bitcoin::Txid>,
}

impl Actor for Watcher {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<TxReceived> for Watcher {
    type Result = ();
    fn handle(&mut self, m: TxReceived, _: &mut Context<Self>) {
        let txid = m.tx.compute_txid();
        if !self.seen.insert(txid) {
            return;
        }
        self.order.push_back(txid);
        if self.order.len() > SEEN {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        let out: u64 = m.tx.output.iter().map(|o| o.value.to_sat()).sum();
        println!(
            "{txid}  {} vB  {} inputs  {} sat out  (from {})",
            m.tx.vsize(),
            m.tx.input.len(),
            out,
            m.addr
        );
    }
}

#[actix_rt::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let network: Network = args.next().as_deref().unwrap_or("regtest").parse().expect("network name");
    let peers: Vec<PeerAddr> = args
        .map(|a| PeerAddr::parse_with_default_port(&a, network.default_port()).expect("HOST:PORT"))
        .collect();
    // Transactions are relayed (relay=true) and fetched when announced: the library's defaults.
    let config = if peers.is_empty() {
        GroupConfig::for_network(network)
    } else {
        GroupConfig::connect_to(network, peers)
    };
    let watcher = Watcher { seen: HashSet::new(), order: VecDeque::new() }.start();
    let group = PeerGroup::new(config, vec![Subscription::Tx(watcher.recipient())]).start();
    tokio::signal::ctrl_c().await.ok();
    group.send(Shutdown).await.ok();
}
