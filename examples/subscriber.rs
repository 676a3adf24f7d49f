//! Connects to one peer and prints what it announces: `inv`, `tx` and `addr`/`addrv2`
//! notifications, plus the end of the handshake and the disconnection.
//!
//! ```text
//! cargo run --example subscriber -- 127.0.0.1:18444 [regtest|mainnet|testnet3|testnet4|signet]
//! ```
//!
//! The network defaults to regtest; a bare host gets the network's default port. The program
//! exits when the peer disconnects (or on Ctrl-C).

use std::fmt::Display;

use actix::prelude::*;
use btcpeer::events::{
    AddrReceived, InvReceived, PeerDisconnected, PeerReady, Subscribers, Subscription, TxReceived,
};
use btcpeer::peer::{PeerActor, PeerAddr, PeerConfig};
use btcpeer::wire::addr_host;
use btcpeer::Network;

/// How many entries of a long `inv` or `addr` to show.
const SHOWN: usize = 3;

/// The subscriber: an ordinary actor with one handler per notification kind.
struct Printer;

// Peers never wait for a subscriber: what waits for it is bounded in bytes (16 MiB for all of
// one actor's subscriptions by default; see `Subscription::with_budget`), and beyond that a
// notification is dropped and counted in the peer's `SubscriberStats`.
impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<PeerReady> for Printer {
    type Result = ();

    fn handle(&mut self, m: PeerReady, _: &mut Context<Self>) {
        let info = &m.info;
        println!(
            "[{} {}] ready: {} version {} height {} services {:#x}",
            m.peer, m.addr, info.user_agent, info.version, info.start_height, info.services
        );
    }
}

impl Handler<InvReceived> for Printer {
    type Result = ();

    fn handle(&mut self, m: InvReceived, _: &mut Context<Self>) {
        let shown: Vec<String> = m.items.iter().take(SHOWN).map(|i| format!("{i:?}")).collect();
        let more = if m.items.len() > SHOWN { ", ..." } else { "" };
        println!("[{} {}] inv ({} items): {}{more}", m.peer, m.addr, m.items.len(), shown.join(", "));
    }
}

impl Handler<TxReceived> for Printer {
    type Result = ();

    fn handle(&mut self, m: TxReceived, _: &mut Context<Self>) {
        let tx = &m.tx;
        println!(
            "[{} {}] tx {}: {} in, {} out, {} vB",
            m.peer,
            m.addr,
            tx.compute_txid(),
            tx.input.len(),
            tx.output.len(),
            tx.vsize()
        );
    }
}

impl Handler<AddrReceived> for Printer {
    type Result = ();

    fn handle(&mut self, m: AddrReceived, _: &mut Context<Self>) {
        let kind = if m.v2 { "addrv2" } else { "addr" };
        let shown: Vec<String> =
            m.addrs.iter().take(SHOWN).map(|a| format!("{}:{}", addr_host(&a.addr), a.port)).collect();
        let more = if m.addrs.len() > SHOWN { ", ..." } else { "" };
        println!("[{} {}] {kind} ({} entries): {}{more}", m.peer, m.addr, m.addrs.len(), shown.join(", "));
    }
}

impl Handler<PeerDisconnected> for Printer {
    type Result = ();

    fn handle(&mut self, m: PeerDisconnected, _: &mut Context<Self>) {
        println!("[{} {}] disconnected: {}", m.peer, m.addr, m.reason);
        // The last notification of this peer: nothing more will come, so end the program.
        System::current().stop();
    }
}

fn usage(problem: impl Display) -> ! {
    eprintln!("{problem}\nusage: subscriber HOST:PORT [regtest|mainnet|testnet3|testnet4|signet]");
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| usage("missing peer address"));
    let network: Network = args.next().as_deref().unwrap_or("regtest").parse().unwrap_or_else(|e| usage(e));
    let addr =
        PeerAddr::parse_with_default_port(&target, network.default_port()).unwrap_or_else(|e| usage(e));

    let system = System::new();
    system.block_on(async move {
        let printer = Printer.start();

        // One subscription per notification kind; each is a `Recipient` of the same actor.
        let mut subscribers = Subscribers::new();
        subscribers.add(Subscription::Ready(printer.clone().recipient()));
        subscribers.add(Subscription::Inv(printer.clone().recipient()));
        subscribers.add(Subscription::Tx(printer.clone().recipient()));
        subscribers.add(Subscription::Addr(printer.clone().recipient()));
        subscribers.add(Subscription::Disconnected(printer.recipient()));

        println!("connecting to {addr} ({network})");
        PeerActor::outbound(PeerConfig::new(network), addr, subscribers).start();
    });
    // Runs until the disconnect handler stops the system.
    system.run()
}
