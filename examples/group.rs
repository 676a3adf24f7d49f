//! Runs a `PeerGroup` with a custom configuration: a few outbound peers discovered through DNS
//! seeds (or given on the command line), a status line every ten seconds, Ctrl-C to stop.
//!
//! ```text
//! cargo run --example group -- [network] [HOST:PORT ...]
//! cargo run --example group -- regtest 127.0.0.1:18444
//! ```

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use btcpeer::discovery::DnsResolver;
use btcpeer::group::{GetStatus, GroupConfig, PeerGroup, Shutdown};
use btcpeer::peer::{PeerAddr, PeerConfig};
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

    // Per-connection settings: a client that wants no transactions says so (relay=false).
    let mut peer = PeerConfig::new(network);
    peer.machine.relay = false;
    peer.machine.send_getaddr = true;

    let mut config = GroupConfig::new(peer);
    config.policy.max_outbound = 4;
    if peers.is_empty() {
        config.dns_seeds = network.dns_seeds().iter().map(|s| s.to_string()).collect();
        config.resolver = DnsResolver::system().ok().map(|r| Arc::new(r) as _);
    } else {
        config.policy.static_peers = peers;
        config.policy.connect_only = true;
    }
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
