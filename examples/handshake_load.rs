//! Load generator for `scripts/bench-handshakes`: opens N connections to a btcpeer listener,
//! completes the version/verack handshake on each (as a minimal scripted peer), keeps them
//! open, and prints one JSON line with the timing.
//!
//! Usage: `cargo run --release --example handshake_load -- <IP:PORT> <N> [concurrency]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

#[path = "support/handshake.rs"]
mod support;

async fn handshake(target: SocketAddr, nonce: u64) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(target).await.map_err(|e| e.to_string())?;
    let (frames, write, _) = support::handshake(stream, nonce).await?;
    frames.into_inner().reunite(write).map_err(|e| e.to_string())
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
