//! Relay benchmark (issue "Relay and broadcast"): announces 100,000 transactions to 100
//! loopback peers through their trickle queues and reports CPU time and the latency
//! distribution of announcements (queue → `inv` at the peer) against the trickle mean (5 s for
//! inbound links). The 100 peers are minimal clients in this process, on their own runtime.
//!
//! `cargo run --release --example relay_bench -- [peers] [transactions]`
//!
//! Announcements are queued at 10,000 per second; a peer's queue holds at most 50,000 between
//! two trickles, so a long trickle interval drops some (counted by the peer, and visible here
//! as fewer announcements received than sent).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bitcoin::hashes::Hash;
use btcpeer::events::Subscribers;
use btcpeer::peer::messages::QueueInventory;
use btcpeer::peer::Announcement;
use btcpeer::peer::{PeerActor, PeerConfig};
use btcpeer::wire::version::{build, LocalVersion};
use btcpeer::wire::{Codec, Inventory, Message};
use btcpeer::Network;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;

/// A client: handshakes (protocol 70015, so announcements come by txid), then records the
/// latency of every announced item; the queue time is encoded in the txid's first 8 bytes.
async fn client(
    addr: std::net::SocketAddr,
    start: Instant,
    expect: usize,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Vec<u64> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let codec = Codec::new(Network::Regtest.magic());
    let version = build(
        &LocalVersion { version: 70015, relay: true, nonce: rand::random(), ..Default::default() },
        None,
    );
    write.write_all(&codec.encode_to_bytes(&Message::Version(version))).await.unwrap();
    write.write_all(&codec.encode_to_bytes(&Message::Verack)).await.unwrap();
    let mut frames = FramedRead::new(read, codec.clone());
    let mut latencies = Vec::with_capacity(expect);
    let mut signalled = false;
    while latencies.len() < expect {
        // Stop after a long silence: announcements beyond a peer's bounded queue are dropped.
        let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(30), frames.next()).await else {
            break;
        };
        match frame.into_message() {
            Ok(Message::Verack) if !signalled => {
                signalled = true;
                let _ = ready.send(()).await;
            }
            Ok(Message::Ping(n)) => {
                let _ = write.write_all(&codec.encode_to_bytes(&Message::Pong(n))).await;
            }
            Ok(Message::Inv(items)) => {
                let now = start.elapsed().as_micros() as u64;
                for item in items {
                    if let Inventory::Transaction(txid) = item {
                        let bytes = txid.to_byte_array();
                        let queued = u64::from_le_bytes(bytes[..8].try_into().unwrap());
                        latencies.push(now.saturating_sub(queued));
                    }
                }
            }
            _ => {}
        }
    }
    latencies
}

fn cpu_seconds() -> f64 {
    // /proc/self/stat fields 14 and 15: user and system time in clock ticks (100 per second).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let peers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let txs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let start = Instant::now();
    let system = System::new();
    let listener = system.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();

    // Clients on their own runtime thread.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(peers);
    let results = Arc::new(Mutex::new(Vec::new()));
    let client_results = results.clone();
    let clients = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let tasks: Vec<_> =
                (0..peers).map(|_| tokio::spawn(client(addr, start, txs, ready_tx.clone()))).collect();
            for t in tasks {
                let lat = t.await.unwrap();
                client_results.lock().unwrap().push(lat);
            }
        });
    });

    system.block_on(async move {
        let mut actors = Vec::new();
        for _ in 0..peers {
            let (stream, remote) = listener.accept().await.unwrap();
            let actor = PeerActor::inbound(PeerConfig::new(Network::Regtest), remote, stream, Subscribers::new());
            actors.push(actor.start());
        }
        for _ in 0..peers {
            ready_rx.recv().await;
        }
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        // 1,000 announcements every 100 ms (10,000/s), to every peer.
        for batch in 0..txs.div_ceil(1_000) {
            let anns: Vec<Announcement> = (batch * 1_000..((batch + 1) * 1_000).min(txs))
                .map(|i| {
                    let mut b = [0u8; 32];
                    b[..8].copy_from_slice(&(start.elapsed().as_micros() as u64).to_le_bytes());
                    b[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                    Announcement::Tx {
                        txid: bitcoin::Txid::from_byte_array(b),
                        wtxid: bitcoin::Wtxid::from_byte_array(b),
                        fee_rate: None,
                    }
                })
                .collect();
            for a in &actors {
                a.do_send(QueueInventory(anns.clone()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let queued_in = t0.elapsed();
        // Wait for the clients (they stop after `txs` items each).
        let done = tokio::task::spawn_blocking(move || clients.join()).await;
        let _ = done;
        let cpu = cpu_seconds() - cpu0;
        let mut all: Vec<u64> = results.lock().unwrap().iter().flatten().copied().collect();
        all.sort_unstable();
        let n = all.len().max(1);
        let pct = |p: f64| all.get(((n as f64 * p) as usize).min(n - 1)).copied().unwrap_or(0) as f64 / 1e6;
        let mean = all.iter().sum::<u64>() as f64 / n as f64 / 1e6;
        println!(
            "{{\"peers\":{peers},\"transactions\":{txs},\"announcements_sent\":{},\"announcements_received\":{},\"queue_seconds\":{:.2},\"cpu_seconds\":{cpu:.2},\"latency_mean_s\":{mean:.2},\"p50_s\":{:.2},\"p90_s\":{:.2},\"p99_s\":{:.2},\"max_s\":{:.2},\"trickle_mean_s\":5.0}}",
            peers * txs,
            all.len(),
            queued_in.as_secs_f64(),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
        System::current().stop();
    });
}
