//! `headers.dat` loaded from arbitrary bytes (`btcpeer::chain::HeaderStore::open`, regtest).
//!
//! Input: a mode byte, then the file. Mode bits help the fuzzer past what random bytes never
//! get right: 1 = put the right file header in front, 2 = recompute every record's checksum,
//! 4 = chain every record's `prev_blockhash` to the record before it (genesis for the first).
//! Invariants: never panics; only I/O fails; the file is repaired so that a second open reports
//! no problem and rebuilds the same chain.

use std::path::PathBuf;

use btcpeer::bitcoin::block::Header;
use btcpeer::bitcoin::consensus::{deserialize, serialize};
use btcpeer::bitcoin::hashes::Hash as _;
use btcpeer::chain::{HeaderChain, HeaderStore, FILE_MAGIC, RECORD_LEN};
use btcpeer::Network;

const NOW: u64 = 1_700_000_000;

fn scratch_dir() -> PathBuf {
    // scripts/fuzz gives each run its own directory and removes it (AFL kills the target, so
    // the target cannot clean up after itself).
    let base = if let Some(dir) = std::env::var_os("BTCPEER_FUZZ_SCRATCH") {
        PathBuf::from(dir)
    } else if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("btcpeer-fuzz-headers-{}", std::process::id()))
}

fn shape(mode: u8, body: &[u8]) -> Vec<u8> {
    let network = Network::Regtest;
    let mut file = Vec::with_capacity(12 + body.len());
    if mode & 1 != 0 {
        file.extend_from_slice(&FILE_MAGIC);
        file.extend_from_slice(&network.magic());
    }
    let start = file.len();
    file.extend_from_slice(body);
    if mode & 6 == 0 {
        return file;
    }
    let mut prev = HeaderChain::new(network).tip().hash;
    let mut at = start;
    while at + RECORD_LEN <= file.len() {
        let rec = &mut file[at..at + RECORD_LEN];
        if let Ok(mut header) = deserialize::<Header>(&rec[..80]) {
            if mode & 4 != 0 {
                header.prev_blockhash = prev;
                rec[..80].copy_from_slice(&serialize(&header));
            }
            let hash = header.block_hash();
            if mode & 2 != 0 {
                rec[80..].copy_from_slice(&hash.to_byte_array()[..4]);
            }
            prev = hash;
        }
        at += RECORD_LEN;
    }
    file
}

fn run(dir: &PathBuf, data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
    let path = HeaderStore::path_in(dir);
    std::fs::write(&path, shape(mode, body)).expect("write scratch file");

    let (store, chain, report) =
        HeaderStore::open(&path, HeaderChain::new(Network::Regtest), NOW).expect("only I/O can fail");
    assert!(report.loaded < chain.len(), "loaded {} but the chain has {}", report.loaded, chain.len());
    let _ = store.records();
    let tip = chain.tip();
    drop(store);
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("{report:?}; chain of {} headers", chain.len());
    }

    let (_, chain2, report2) =
        HeaderStore::open(&path, HeaderChain::new(Network::Regtest), NOW).expect("only I/O can fail");
    assert_eq!(report2.problem, None, "a repaired file still has a problem (first: {:?})", report.problem);
    assert_eq!(chain2.tip().hash, tip.hash, "a reopened file gives another tip");
    assert_eq!(chain2.len(), chain.len(), "a reopened file gives another chain");
}

fn main() {
    let dir = scratch_dir();
    afl::fuzz!(|data: &[u8]| run(&dir, data));
    let _ = std::fs::remove_dir_all(&dir);
}
