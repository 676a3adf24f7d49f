//! Churn generator for `scripts/soak` (issue "hostile peers", endurance): for MINUTES, keeps
//! CONCURRENCY inbound connections coming and going to a btcpeer listener, each from its own
//! loopback address (127.2.x.y), each doing one of a mix of valid and hostile things, then
//! leaving. Prints one JSON line per minute with what it did.
//!
//! Usage: `cargo run --release --example churn -- <IP:PORT> [minutes=60] [concurrency=32]`

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use btcpeer::wire::{Inventory, Message};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

#[path = "support/handshake.rs"]
mod support;

/// What one connection does (chosen round-robin).
const BEHAVIOURS: [&str; 8] =
    ["ping", "inv", "addr", "bad_magic", "bad_checksum", "no_handshake", "bad_pow_headers", "slowloris"];

#[derive(Default)]
struct Counters {
    done: [AtomicU64; BEHAVIOURS.len()],
    refused: AtomicU64,
}

fn source(i: u64) -> SocketAddr {
    // 127.2.0.1 .. 127.2.255.254: a new address for each of 65,000 connections, then again.
    let n = (i % 65_000) + 1;
    SocketAddr::from((Ipv4Addr::new(127, 2, (n >> 8) as u8, (n & 0xff) as u8), 0))
}

async fn one(target: SocketAddr, i: u64) -> Result<(), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(source(i)).map_err(|e| e.to_string())?;
    let mut stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(target))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let behaviour = BEHAVIOURS[(i % BEHAVIOURS.len() as u64) as usize];
    match behaviour {
        "no_handshake" => return Ok(()),
        "slowloris" => {
            // Ten bytes of a version header, then silence for a while, then leave.
            stream.write_all(&btcpeer::Network::Regtest.magic()[..]).await.map_err(|e| e.to_string())?;
            stream.write_all(b"versio").await.map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_secs(3)).await; // the behaviour itself: a slow peer
            return Ok(());
        }
        _ => {}
    }
    let (mut frames, mut write, codec) =
        tokio::time::timeout(Duration::from_secs(30), support::handshake(stream, i))
            .await
            .map_err(|_| "handshake timeout".to_string())??;
    let send = |m: Message| codec.encode_to_bytes(&m);
    let bytes = match behaviour {
        "ping" => send(Message::Ping(i)),
        "inv" => send(Message::Inv(
            (0..100u64)
                .map(|j| {
                    let mut h = [0u8; 32];
                    h[..8].copy_from_slice(&(i << 8 | j).to_le_bytes());
                    Inventory::Transaction(bitcoin::Txid::from_byte_array(h))
                })
                .collect(),
        )),
        "addr" => send(Message::Addr(
            (0..10u8)
                .map(|j| {
                    let a: SocketAddr = (Ipv4Addr::new(10, (i % 250) as u8, j, 1), 8333).into();
                    (0, bitcoin::p2p::Address::new(&a, bitcoin::p2p::ServiceFlags::NETWORK))
                })
                .collect(),
        )),
        "bad_magic" => {
            let mut b = send(Message::Ping(i)).to_vec();
            b[0] ^= 0xff;
            b.into()
        }
        "bad_checksum" => {
            let mut b = send(Message::Ping(i)).to_vec();
            b[20] ^= 0xff;
            b.into()
        }
        _ => {
            // A header whose nBits exceed regtest's proof-of-work limit: Core punishes it.
            let mut header = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
            header.bits = bitcoin::CompactTarget::from_consensus(0x407f_ffff);
            send(Message::Headers(vec![header]))
        }
    };
    write.write_all(&bytes).await.map_err(|e| e.to_string())?;
    // Read what comes back for a moment (the pong, a disconnect), then leave.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(Ok(_)) = frames.next().await {}
    })
    .await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let target: SocketAddr =
        args.next().and_then(|a| a.parse().ok()).expect("usage: churn IP:PORT [minutes] [concurrency]");
    let minutes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let concurrency: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let counters = Arc::new(Counters::default());
    let next = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(minutes * 60);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (counters, next) = (counters.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    match one(target, i).await {
                        Ok(()) => counters.done[(i % BEHAVIOURS.len() as u64) as usize]
                            .fetch_add(1, Ordering::Relaxed),
                        Err(_) => counters.refused.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let report = {
        let counters = counters.clone();
        move |minute: u64| {
            let done: Vec<String> = BEHAVIOURS
                .iter()
                .zip(&counters.done)
                .map(|(name, n)| format!("\"{name}\":{}", n.load(Ordering::Relaxed)))
                .collect();
            println!(
                "{{\"minute\":{minute},\"connections\":{{{}}},\"refused_or_failed\":{}}}",
                done.join(","),
                counters.refused.load(Ordering::Relaxed)
            );
        }
    };
    for minute in 1..=minutes {
        tokio::time::sleep_until((end - Duration::from_secs((minutes - minute) * 60)).into()).await;
        report(minute);
    }
    for w in workers {
        let _ = w.await;
    }
}
