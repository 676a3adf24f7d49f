//! Load generator for `scripts/bench-handshakes`: opens N connections to a btcpeer listener,
//! completes the version/verack handshake on each (as a minimal scripted peer), keeps them
//! open, and prints one JSON line with the timing.
//!
//! Usage: `cargo run --release --example handshake_load -- <IP:PORT> <N> [concurrency]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use btcpeer::wire::version::{build, LocalVersion};
use btcpeer::wire::{Codec, Message};
use btcpeer::Network;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;

async fn handshake(target: SocketAddr, nonce: u64) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(target).await.map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    let codec = Codec::new(Network::Regtest.magic());
    let version = build(&LocalVersion { nonce, ..Default::default() }, None);
    write.write_all(&codec.encode_to_bytes(&Message::Version(version))).await.map_err(|e| e.to_string())?;
    let mut frames = FramedRead::new(read, codec.clone());
    let (mut got_version, mut got_verack) = (false, false);
    while !(got_version && got_verack) {
        let frame = frames.next().await.ok_or("closed")?.map_err(|e| e.to_string())?;
        match frame.into_message() {
            Ok(Message::Version(_)) => got_version = true,
            Ok(Message::Verack) => got_verack = true,
            _ => {}
        }
    }
    write.write_all(&codec.encode_to_bytes(&Message::Verack)).await.map_err(|e| e.to_string())?;
    let read = frames.into_inner();
    read.reunite(write).map_err(|e| e.to_string())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let target: SocketAddr =
        args.next().and_then(|a| a.parse().ok()).expect("usage: handshake_load IP:PORT N [concurrency]");
    let n: usize = args.next().and_then(|a| a.parse().ok()).expect("N");
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);
    let gate = std::sync::Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore open");
            tokio::time::timeout(Duration::from_secs(60), handshake(target, 1 + i as u64)).await
        }));
    }
    let mut open = Vec::with_capacity(n);
    let mut failed = 0usize;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(Ok(stream))) => open.push(stream),
            Ok(Ok(Err(e))) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            _ => failed += 1,
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{{\"connections\":{n},\"ready\":{},\"failed\":{failed},\"seconds\":{:.3},\"handshakes_per_sec\":{:.0},\"first_error\":{:?}}}",
        open.len(),
        elapsed.as_secs_f64(),
        open.len() as f64 / elapsed.as_secs_f64(),
        first_error.unwrap_or_default()
    );
    // Hold the connections until told to stop (stdin closes), so the server's memory can be read.
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
    drop(open);
}
