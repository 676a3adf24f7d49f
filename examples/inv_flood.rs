//! Load generator for `scripts/flood` (issue "hostile peers", memory under a flood): N inbound
//! attackers, each from its own loopback address, complete the handshake with a btcpeer
//! listener and send back-to-back `inv`s of block entries (50,000 each by default: Core's
//! `MAX_INV_SZ`, so each is legal), then half-close and wait until the listener has read it all
//! and closed. Meanwhile a well-behaved peer pings every 100 ms. Prints one JSON line with what
//! was sent, how long that took, and the good peer's ping round trips (p50, max).
//!
//! Usage: `cargo run --release --example inv_flood -- <IP:PORT> [attackers] [invs] [entries]`

use std::net::SocketAddr;
use std::time::Instant;

use bitcoin::hashes::Hash;
use btcpeer::wire::{Inventory, Message};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

#[path = "support/handshake.rs"]
mod support;

/// Handshakes from `source`, then writes `invs` inv messages; returns the bytes written.
async fn attack(
    target: SocketAddr,
    source: SocketAddr,
    nonce: u64,
    invs: usize,
    entries: usize,
) -> Result<u64, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(source).map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket.connect(target).await.map_err(|e| e.to_string())?;
    let (mut frames, mut write, codec) = support::handshake(stream, nonce).await?;
    // Keep reading (pings) so the listener does not stall on us; drop what arrives.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = frames.next().await {} });
    let mut sent = 0u64;
    for i in 0..invs {
        let items: Vec<Inventory> = (0..entries)
            .map(|j| {
                let mut h = [0u8; 32];
                h[..8].copy_from_slice(&(nonce << 40 | (i as u64) << 20 | j as u64).to_le_bytes());
                Inventory::Block(bitcoin::BlockHash::from_byte_array(h))
            })
            .collect();
        let bytes = codec.encode_to_bytes(&Message::Inv(items));
        if write.write_all(&bytes).await.is_err() {
            break; // disconnected by the target
        }
        sent += bytes.len() as u64;
    }
    // Half-close and wait for the listener to close after reading everything: exiting at once
    // could reset the connection (unread pings here) and make the kernel discard what the
    // listener had not read yet, which a listener applying backpressure reads late.
    let _ = write.shutdown().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(300), reader).await;
    Ok(sent)
}

/// A well-behaved peer beside the attackers: pings every 100 ms until `stop`, and returns the
/// round-trip times (how long the listener took to answer a good peer during the flood).
async fn probe(target: SocketAddr, stop: tokio::sync::watch::Receiver<bool>) -> Result<Vec<f64>, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(SocketAddr::from(([127, 0, 1, 9], 0))).map_err(|e| format!("bind: {e}"))?;
    let stream = socket.connect(target).await.map_err(|e| e.to_string())?;
    let (mut frames, mut write, codec) = support::handshake(stream, 999).await?;
    let mut rtts = Vec::new();
    let mut nonce = 1u64;
    while !*stop.borrow() {
        let sent = Instant::now();
        write.write_all(&codec.encode_to_bytes(&Message::Ping(nonce))).await.map_err(|e| e.to_string())?;
        loop {
            let frame = frames.next().await.ok_or("closed")?.map_err(|e| e.to_string())?;
            if let Ok(Message::Pong(n)) = frame.into_message() {
                if n == nonce {
                    break;
                }
            }
        }
        rtts.push(sent.elapsed().as_secs_f64() * 1e3);
        nonce += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await; // the probe's ping period
    }
    Ok(rtts)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let target: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: inv_flood IP:PORT [attackers] [invs] [entries]");
    let attackers: u8 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let invs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(150);
    let entries: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let start = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pinger = tokio::spawn(probe(target, stop_rx));
    let tasks: Vec<_> = (0..attackers)
        .map(|i| {
            let source = SocketAddr::from(([127, 0, 1, 10u8.saturating_add(i)], 0));
            tokio::spawn(attack(target, source, 1 + u64::from(i), invs, entries))
        })
        .collect();
    let (mut bytes, mut failed) = (0u64, Vec::new());
    for t in tasks {
        match t.await {
            Ok(Ok(b)) => bytes += b,
            Ok(Err(e)) => failed.push(e),
            Err(e) => failed.push(e.to_string()),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let mut rtts = match pinger.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            failed.push(format!("probe: {e}"));
            Vec::new()
        }
        Err(e) => {
            failed.push(format!("probe: {e}"));
            Vec::new()
        }
    };
    rtts.sort_by(f64::total_cmp);
    let at = |q: f64| rtts.get(((rtts.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0.0);
    println!(
        "{{\"attackers\":{attackers},\"invs_each\":{invs},\"entries\":{entries},\"bytes_sent\":{bytes},\"seconds\":{seconds:.2},\"probe_pings\":{},\"probe_ping_ms_p50\":{:.1},\"probe_ping_ms_max\":{:.1},\"errors\":{:?}}}",
        rtts.len(),
        at(0.5),
        at(1.0),
        failed
    );
}
