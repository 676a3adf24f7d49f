//! Prints what one local node announces and fetches the headers after genesis: `cargo run --example newcomer`
use btcpeer::prelude::*;

struct Printer;
impl Actor for Printer {
    type Context = Context<Self>;
}
impl Handler<InvReceived> for Printer {
    type Result = ();
    fn handle(&mut self, m: InvReceived, _: &mut Context<Self>) {
        println!("inv: {} items from {}", m.items.len(), m.addr);
    }
}
impl Handler<TxReceived> for Printer {
    type Result = ();
    fn handle(&mut self, m: TxReceived, _: &mut Context<Self>) {
        println!("tx: {}", m.tx.compute_txid());
    }
}
impl Handler<HeadersReceived> for Printer {
    type Result = ();
    fn handle(&mut self, m: HeadersReceived, _: &mut Context<Self>) {
        println!("headers: {} announced by {}", m.headers.len(), m.addr);
    }
}
#[actix_rt::main]
async fn main() -> Result<(), btcpeer::Error> {
    let node: PeerAddr = std::env::args().nth(1).unwrap_or("127.0.0.1:18444".into()).parse()?;
    let p = Printer.start();
    let subs = subscriptions!(&p => InvReceived, TxReceived, HeadersReceived);
    let group = PeerGroup::new(GroupConfig::connect_to(Network::Regtest, [node]), subs).start();
    let fetched = group.send(Fetch::new(Request::headers_after(Network::Regtest.genesis_hash()))).await??;
    if let Response::Headers(headers) = fetched.response {
        println!("fetched {} headers after genesis from peer {}", headers.len(), fetched.peer);
    }
    Ok(tokio::signal::ctrl_c().await?)
}
