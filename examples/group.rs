//! Runs a `PeerGroup` with a custom configuration: a few outbound peers discovered through DNS
//! seeds (or given on the command line), a status line every ten seconds, Ctrl-C to stop.
//!
//! ```text
//! cargo run --example group -- [network] [HOST:PORT ...]
//! cargo run --example group -- regtest 127.0.0.1:18444
//! ```

use std::time::Duration;

use actix::prelude::*;
use btcpeer::group::{GetStatus, GroupConfig, PeerGroup, Shutdown};
use btcpeer::peer::PeerAddr;
use btcpeer::Network;

#[actix_rt::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let network: Network = args.next().as_deref().unwrap_or("regtest").parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let peers: Vec<PeerAddr> = args
        .map(|a| PeerAddr::parse_with_default_port(&a, network.default_port()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });

    // Named peers only (Core's -connect), or peers found through the network's DNS seeds.
    let mut config = if peers.is_empty() {
        GroupConfig::for_network(network)
    } else {
        GroupConfig::connect_to(network, peers)
    };
    // A client that wants no transactions says so (relay=false); four outbound peers are enough.
    config.peer.machine.relay = false;
    config.policy.max_outbound = 4;
    let group = PeerGroup::new(config, vec![]).start();

    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Ok(s) = group.send(GetStatus).await {
                    println!("outbound {}/{} ready, inbound {}, book {} new + {} tried, bans {}",
                        s.outbound_ready, s.target_outbound, s.inbound, s.addrbook_new, s.addrbook_tried, s.bans);
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    group.send(Shutdown).await.ok();
}
