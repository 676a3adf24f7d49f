//! The floor for `scripts/bench-headers`: the least a client can do to sync block headers from
//! one peer. Blocking `std::net::TcpStream`, a hand-written version/verack exchange, then
//! `getheaders`/`headers` from the regtest genesis until a batch has fewer than 2,000 headers or
//! the peer's `start_height` (from its `version`) is reached: bcoin 1.0.2 sends no `headers` at
//! all when asked from its tip, so a chain of exactly 2,000·k blocks would hang otherwise.
//! Framing is the `bitcoin` crate's `RawNetworkMessage`; nothing is validated, the last header
//! of each batch is only hashed to build the next locator. Pings are answered.
//!
//! Prints one JSON line: `{"height":H,"headers":H+1,"elapsed_ms":..,"tip":".."}` where the
//! time runs from before the TCP connect to the last `headers` message.
//!
//! ```text
//! cargo run --release --example raw_headers -- 127.0.0.1:48444
//! ```

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::blockdata::constants::genesis_block;
use bitcoin::consensus::{encode, Decodable};
use bitcoin::hashes::Hash;
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_blockdata::GetHeadersMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::{BlockHash, Network};

const PROTOCOL_VERSION: u32 = 70016;
const MAX_HEADERS: usize = 2000;

type Reader = bitcoin::io::FromStd<BufReader<TcpStream>>;

fn send(stream: &mut TcpStream, msg: NetworkMessage) -> std::io::Result<()> {
    stream.write_all(&encode::serialize(&RawNetworkMessage::new(Magic::REGTEST, msg)))
}

fn recv(reader: &mut Reader) -> Result<NetworkMessage, String> {
    let raw = RawNetworkMessage::consensus_decode(reader).map_err(|e| format!("decode: {e}"))?;
    if *raw.magic() != Magic::REGTEST {
        return Err(format!("wrong magic {}", raw.magic()));
    }
    Ok(raw.into_payload())
}

/// Reads until `want` accepts a message, answering pings on the way.
fn wait_for<T>(
    stream: &mut TcpStream,
    reader: &mut Reader,
    mut want: impl FnMut(NetworkMessage) -> Option<T>,
) -> Result<T, String> {
    loop {
        match recv(reader)? {
            NetworkMessage::Ping(nonce) => {
                send(stream, NetworkMessage::Pong(nonce)).map_err(|e| e.to_string())?
            }
            msg => {
                if let Some(t) = want(msg) {
                    return Ok(t);
                }
            }
        }
    }
}

fn run(peer: SocketAddr) -> Result<(u64, BlockHash, Duration), String> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&peer, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let mut reader =
        bitcoin::io::FromStd::new(BufReader::new(stream.try_clone().map_err(|e| e.to_string())?));
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let version = VersionMessage {
        version: PROTOCOL_VERSION,
        services: ServiceFlags::NONE,
        timestamp,
        receiver: Address::new(&peer, ServiceFlags::NONE),
        sender: Address::new(&local, ServiceFlags::NONE),
        nonce: rand::random(),
        user_agent: "/raw_headers:0.1/".to_owned(),
        start_height: 0,
        relay: false,
    };
    send(&mut stream, NetworkMessage::Version(version)).map_err(|e| e.to_string())?;
    let (mut their_height, mut got_verack) = (None, false);
    let peer_height = wait_for(&mut stream, &mut reader, |msg| {
        match msg {
            NetworkMessage::Version(v) => their_height = Some(v.start_height.max(0) as u64),
            NetworkMessage::Verack => got_verack = true,
            _ => {}
        }
        their_height.filter(|_| got_verack)
    })?;
    send(&mut stream, NetworkMessage::Verack).map_err(|e| e.to_string())?;

    let mut tip = genesis_block(Network::Regtest).block_hash();
    let mut height = 0u64;
    loop {
        let request = GetHeadersMessage::new(vec![tip], BlockHash::all_zeros());
        send(&mut stream, NetworkMessage::GetHeaders(request)).map_err(|e| e.to_string())?;
        let headers = wait_for(&mut stream, &mut reader, |msg| match msg {
            NetworkMessage::Headers(h) => Some(h),
            _ => None,
        })?;
        if let Some(last) = headers.last() {
            tip = last.block_hash();
            height += headers.len() as u64;
        }
        if headers.len() < MAX_HEADERS || height >= peer_height {
            return Ok((height, tip, start.elapsed()));
        }
    }
}

fn main() {
    let peer: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("usage: raw_headers IP:PORT"));
    match run(peer) {
        Ok((height, tip, elapsed)) => println!(
            "{{\"height\":{height},\"headers\":{},\"elapsed_ms\":{:.3},\"tip\":\"{tip}\"}}",
            height + 1,
            elapsed.as_secs_f64() * 1e3
        ),
        Err(e) => {
            eprintln!("raw_headers: {e}");
            std::process::exit(1);
        }
    }
}
