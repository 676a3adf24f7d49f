//! Writes a `headers.dat` holding a valid regtest chain of N headers (default 900,000: a
//! mainnet-sized file) into a data directory, for measuring how fast `btcpeerd` starts with
//! a large chain: `btcpeerd --network regtest --data-dir DIR --sync-headers`.
//!
//! The chain is `benches/support/regtest_chain.rs`'s (deterministic, regtest's trivial proof
//! of work). Prints one JSON line: `{"path":..,"headers":N,"tip":..,"ms":..}`.
//!
//! ```text
//! cargo run --release --example headers_dat -- DIR [N]
//! ```

#[path = "../benches/support/regtest_chain.rs"]
mod regtest_chain;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use btcpeer::chain::{HashedHeaders, HeaderChain, HeaderStore, FILE_NAME};
use btcpeer::Network;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| panic!("usage: headers_dat DIR [N]")));
    let n: u32 = args.next().map_or(900_000, |a| a.parse().expect("N must be a number"));
    let start = Instant::now();
    std::fs::create_dir_all(&dir).expect("create the data directory");
    let path = dir.join(FILE_NAME);
    let _ = std::fs::remove_file(&path);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (mut store, mut chain, _) =
        HeaderStore::open(&path, HeaderChain::new(Network::Regtest), now).expect("open the header file");
    let (headers, _) = regtest_chain::generate(n);
    for batch in headers[1..].chunks(2_000) {
        let batch = HashedHeaders::new(batch.to_vec());
        let c = chain.connect_hashed(&batch, now).expect("the generated chain is valid");
        store.append_hashed(&batch.range(c.known..c.known + c.added)).expect("append");
    }
    store.flush().expect("sync the header file");
    let tip = chain.tip();
    println!(
        "{{\"path\":\"{}\",\"headers\":{},\"tip\":\"{}\",\"ms\":{:.0}}}",
        path.display(),
        tip.height,
        tip.hash,
        start.elapsed().as_secs_f64() * 1e3
    );
}
