//! Asks one peer for block headers with `getheaders` (from the genesis block) and prints what
//! comes back: a request of your own through `SendMessage`, the answer through a subscriber.
//!
//! ```text
//! cargo run --example headers -- 127.0.0.1:18444 [network]
//! ```

use actix::prelude::*;
use btcpeer::events::{HeadersReceived, PeerDisconnected, PeerReady, Subscribers, Subscription};
use btcpeer::peer::messages::SendMessage;
use btcpeer::peer::{PeerActor, PeerAddr, PeerConfig};
use btcpeer::wire::{limits::PROTOCOL_VERSION, GetHeadersMessage, Message};
use btcpeer::Network;

/// Sends `getheaders` once the peer is ready and prints the answer.
struct HeaderClient {
    network: Network,
    peer: Option<Addr<PeerActor>>,
}

impl Actor for HeaderClient {
    type Context = Context<Self>;
}

impl Handler<PeerReady> for HeaderClient {
    type Result = ();
    fn handle(&mut self, m: PeerReady, _: &mut Context<Self>) {
        println!("ready: {} ({})", m.addr, m.info.user_agent);
        let request = Message::GetHeaders(GetHeadersMessage {
            version: PROTOCOL_VERSION,
            locator_hashes: vec![self.network.genesis_hash()],
            stop_hash: bitcoin::hashes::Hash::all_zeros(),
        });
        if let Some(peer) = &self.peer {
            peer.do_send(SendMessage(request));
        }
    }
}

impl Handler<HeadersReceived> for HeaderClient {
    type Result = ();
    fn handle(&mut self, m: HeadersReceived, _: &mut Context<Self>) {
        println!("{} headers from {}", m.headers.len(), m.addr);
        if let (Some(first), Some(last)) = (m.headers.first(), m.headers.last()) {
            println!("  first {}  last {}", first.block_hash(), last.block_hash());
        }
        System::current().stop();
    }
}

impl Handler<PeerDisconnected> for HeaderClient {
    type Result = ();
    fn handle(&mut self, m: PeerDisconnected, _: &mut Context<Self>) {
        println!("disconnected: {}", m.reason);
        System::current().stop();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "127.0.0.1:18444".into());
    let network: Network = args.next().as_deref().unwrap_or("regtest").parse().expect("network name");
    let addr = PeerAddr::parse_with_default_port(&target, network.default_port()).expect("HOST:PORT");
    let system = System::new();
    system.block_on(async move {
        let client = HeaderClient { network, peer: None }.start();
        let mut subs = Subscribers::new();
        subs.add(Subscription::Ready(client.clone().recipient()));
        subs.add(Subscription::Headers(client.clone().recipient()));
        subs.add(Subscription::Disconnected(client.clone().recipient()));
        let peer = PeerActor::outbound(PeerConfig::new(network), addr, subs).start();
        client.do_send(SetPeer(peer));
    });
    system.run().ok();
}

/// Hands the client its peer (the peer needs the client's address first).
#[derive(Message)]
#[rtype(result = "()")]
struct SetPeer(Addr<PeerActor>);

impl Handler<SetPeer> for HeaderClient {
    type Result = ();
    fn handle(&mut self, m: SetPeer, _: &mut Context<Self>) {
        self.peer = Some(m.0);
    }
}
