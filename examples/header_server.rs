//! A memory-speed header server for `scripts/bench-headers --fast`: a regtest peer on loopback
//! that speaks the real protocol (v1 framing, version/verack, ping/pong, getheaders/headers
//! as Core answers it) and serves a pre-generated valid chain (`benches/support/regtest_chain.rs`,
//! 200,000 headers by default). Every `headers` message starting at a multiple of 2,000 is
//! encoded before the server listens, so answering costs one write: the floor a client is
//! measured against is the client's own cost, not the server's.
//!
//! Prints one JSON line once listening: `{"p2p":"IP:PORT","height":H,"tip":"..","gen_ms":..}`,
//! then serves until killed. One thread per connection.
//!
//! ```text
//! cargo run --release --example header_server -- [IP:PORT (default 127.0.0.1:0)] [HEIGHT]
//! ```

#[path = "../benches/support/regtest_chain.rs"]
mod regtest_chain;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bitcoin::block::Header;
use bitcoin::consensus::{encode, Decodable};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_blockdata::GetHeadersMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::BlockHash;

/// Core's `MAX_HEADERS_RESULTS`.
const MAX_HEADERS: usize = 2000;
const PROTOCOL_VERSION: u32 = 70016;

/// The chain and its encoded `headers` messages.
struct Chain {
    headers: Vec<Header>,
    heights: HashMap<BlockHash, u32>,
    /// Encoded `headers` messages by first height; the aligned ones are filled at start.
    encoded: Mutex<HashMap<u32, Arc<Vec<u8>>>>,
}

impl Chain {
    fn new(headers: Vec<Header>, hashes: &[BlockHash]) -> Chain {
        let heights = hashes.iter().enumerate().map(|(h, hash)| (*hash, h as u32)).collect();
        let chain = Chain { headers, heights, encoded: Mutex::new(HashMap::new()) };
        let tip = chain.tip_height();
        let mut first = 1;
        while first <= tip {
            let msg = Arc::new(chain.encode(first, None));
            chain.lock().insert(first, msg);
            first += MAX_HEADERS as u32;
        }
        chain
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Vec<u8>>>> {
        self.encoded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tip_height(&self) -> u32 {
        self.headers.len() as u32 - 1
    }

    /// The `headers` message from `first` on: at most 2,000, ending at `stop`'s height if given.
    fn encode(&self, first: u32, stop: Option<u32>) -> Vec<u8> {
        let last = (first as usize + MAX_HEADERS - 1)
            .min(self.headers.len() - 1)
            .min(stop.map_or(usize::MAX, |s| s as usize));
        let slice = self.headers.get(first as usize..=last).unwrap_or(&[]);
        let mut payload = Vec::with_capacity(3 + slice.len() * 81);
        encode::VarInt(slice.len() as u64).consensus_encode(&mut payload).expect("vec write");
        for h in slice {
            h.consensus_encode(&mut payload).expect("vec write");
            payload.push(0); // transaction count
        }
        let mut msg = Vec::with_capacity(24 + payload.len());
        msg.extend_from_slice(&Magic::REGTEST.to_bytes());
        msg.extend_from_slice(b"headers\0\0\0\0\0");
        msg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        msg.extend_from_slice(&sha256d::Hash::hash(&payload).as_byte_array()[..4]);
        msg.extend_from_slice(&payload);
        msg
    }

    /// Core's answer to `getheaders` (`net_processing.cpp`, GETHEADERS): the headers after the
    /// first locator hash on our chain (genesis if none), up to `stop`.
    fn answer(&self, req: &GetHeadersMessage) -> Arc<Vec<u8>> {
        let fork = req.locator_hashes.iter().find_map(|h| self.heights.get(h)).copied().unwrap_or(0);
        let stop = self.heights.get(&req.stop_hash).copied();
        let first = fork + 1;
        if stop.is_none() {
            if let Some(msg) = self.lock().get(&first) {
                return msg.clone();
            }
        }
        let msg = Arc::new(self.encode(first, stop));
        if stop.is_none() {
            self.lock().insert(first, msg.clone());
        }
        msg
    }
}

use bitcoin::consensus::Encodable;

fn send(stream: &mut TcpStream, msg: NetworkMessage) -> std::io::Result<()> {
    stream.write_all(&encode::serialize(&RawNetworkMessage::new(Magic::REGTEST, msg)))
}

fn serve(chain: &Chain, mut stream: TcpStream) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let peer = stream.peer_addr().map_err(|e| e.to_string())?;
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let mut reader =
        bitcoin::io::FromStd::new(BufReader::new(stream.try_clone().map_err(|e| e.to_string())?));
    let mut sent_version = false;
    loop {
        let raw = match RawNetworkMessage::consensus_decode(&mut reader) {
            Ok(raw) => raw,
            Err(_) => return Ok(()), // closed (or garbage: drop it)
        };
        if *raw.magic() != Magic::REGTEST {
            return Err(format!("wrong magic from {peer}"));
        }
        match raw.into_payload() {
            NetworkMessage::Version(_) if !sent_version => {
                sent_version = true;
                let timestamp =
                    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
                let services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
                let version = VersionMessage {
                    version: PROTOCOL_VERSION,
                    services,
                    timestamp,
                    receiver: Address::new(&peer, ServiceFlags::NONE),
                    sender: Address::new(&local, services),
                    nonce: rand::random(),
                    user_agent: "/header_server:0.1/".to_owned(),
                    start_height: chain.tip_height() as i32,
                    relay: false,
                };
                send(&mut stream, NetworkMessage::Version(version)).map_err(|e| e.to_string())?;
                send(&mut stream, NetworkMessage::Verack).map_err(|e| e.to_string())?;
            }
            NetworkMessage::Ping(nonce) => {
                send(&mut stream, NetworkMessage::Pong(nonce)).map_err(|e| e.to_string())?
            }
            NetworkMessage::GetHeaders(req) => {
                stream.write_all(&chain.answer(&req)).map_err(|e| e.to_string())?;
            }
            _ => {}
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .map(|a| a.parse().unwrap_or_else(|_| panic!("usage: header_server [IP:PORT] [HEIGHT]")))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let height: u32 = args.next().map_or(200_000, |a| a.parse().expect("HEIGHT must be a number"));
    assert!(listen.ip().is_loopback(), "header_server listens on loopback only");

    let start = Instant::now();
    let (headers, hashes) = regtest_chain::generate(height);
    let tip = hashes[hashes.len() - 1];
    let chain = Arc::new(Chain::new(headers, &hashes));
    drop(hashes);
    let gen_ms = start.elapsed().as_secs_f64() * 1e3;

    let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("cannot listen on {listen}: {e}"));
    let addr = listener.local_addr().expect("bound listener has an address");
    println!("{{\"p2p\":\"{addr}\",\"height\":{height},\"tip\":\"{tip}\",\"gen_ms\":{gen_ms:.1}}}");
    std::io::stdout().flush().ok();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let chain = chain.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(&chain, stream) {
                eprintln!("header_server: {e}");
            }
        });
    }
}
