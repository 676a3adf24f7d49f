//! In-process header sync throughput on a pre-generated valid regtest chain of 200,000 headers
//! (`benches/support/regtest_chain.rs`), in `headers` messages of 2,000 as a peer sends them:
//!
//! - `hash`: [`HashedHeaders::new`] alone, the one sha256d per header on the way in;
//! - `connect`: [`HeaderChain::connect_hashed`] on hashed batches (validation and the
//!   in-memory chain, no hashing);
//! - `hash+connect`: both, what the sync does per batch without storage;
//! - `hash+connect+store`: also [`HeaderStore::append_hashed`] to a fresh `headers.dat` in a
//!   temporary directory (page cache; the sync's fsync happens once, at `synced`);
//! - `replay`: [`HeaderStore::open`] of that file into a fresh chain (start-up: read, hash,
//!   validate).
//!
//! Each iteration starts from a fresh chain (made in criterion's untimed setup).
//!
//! The `lookups` group reads a connected 200,000-header chain, 1,000 lookups per iteration:
//! `height_of` (hits), `contains` (misses), `hash_at`, `header_at`, and one `locator` (what
//! the sync asks before each batch).
//! Run with `cargo bench --bench headers`; throughput is in headers per second.

#[path = "support/regtest_chain.rs"]
mod regtest_chain;

use std::hint::black_box;

use bitcoin::block::Header;
use btcpeer::chain::{HashedHeaders, HeaderChain, HeaderStore};
use btcpeer::Network;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const HEADERS: u32 = 200_000;
const BATCH: usize = 2_000;
/// A time after the whole chain (the 2-hour future rule never fires).
const NOW: u64 = 2_000_000_000;

fn bench_headers(c: &mut Criterion) {
    let (headers, _) = regtest_chain::generate(HEADERS);
    let batches: Vec<Vec<Header>> = headers[1..].chunks(BATCH).map(<[Header]>::to_vec).collect();
    let hashed: Vec<HashedHeaders> = batches.iter().cloned().map(HashedHeaders::new).collect();
    let dir = tempfile::tempdir().expect("temporary directory");

    let mut g = c.benchmark_group("headers");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(HEADERS)));

    g.bench_function("hash", |b| {
        b.iter_batched(
            || batches.clone(),
            |batches| {
                for batch in batches {
                    black_box(HashedHeaders::new(batch));
                }
            },
            BatchSize::PerIteration,
        )
    });

    g.bench_function("connect", |b| {
        b.iter_batched(
            || HeaderChain::new(Network::Regtest),
            |mut chain| {
                for batch in &hashed {
                    let c = chain.connect_hashed(batch, NOW).expect("valid chain");
                    black_box(c.added);
                }
                chain
            },
            BatchSize::PerIteration,
        )
    });

    g.bench_function("hash+connect", |b| {
        b.iter_batched(
            || (HeaderChain::new(Network::Regtest), batches.clone()),
            |(mut chain, batches)| {
                for batch in batches {
                    let batch = HashedHeaders::new(batch);
                    let c = chain.connect_hashed(&batch, NOW).expect("valid chain");
                    black_box(c.added);
                }
                chain
            },
            BatchSize::PerIteration,
        )
    });

    let path = dir.path().join("headers.dat");
    g.bench_function("hash+connect+store", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_file(&path);
                let (store, chain, _) =
                    HeaderStore::open(&path, HeaderChain::new(Network::Regtest), NOW).expect("open store");
                (store, chain, batches.clone())
            },
            |(mut store, mut chain, batches)| {
                for batch in batches {
                    let batch = HashedHeaders::new(batch);
                    let c = chain.connect_hashed(&batch, NOW).expect("valid chain");
                    store.append_hashed(&batch.range(c.known..c.known + c.added)).expect("append");
                }
                (store, chain)
            },
            BatchSize::PerIteration,
        )
    });

    // The file the last iteration wrote: 200,000 records.
    g.bench_function("replay", |b| {
        b.iter_batched(
            || HeaderChain::new(Network::Regtest),
            |chain| {
                let (store, chain, report) = HeaderStore::open(&path, chain, NOW).expect("open store");
                assert_eq!(report.loaded, HEADERS as usize);
                (store, chain)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut chain = HeaderChain::new(Network::Regtest);
    for batch in &hashed {
        chain.connect_hashed(batch, NOW).expect("valid chain");
    }
    const LOOKUPS: u32 = 1_000;
    let step = HEADERS / LOOKUPS;
    let known: Vec<_> = (0..LOOKUPS).map(|i| headers[(i * step + i % 7) as usize].block_hash()).collect();
    let unknown: Vec<_> = (0..LOOKUPS)
        .map(|i| {
            let mut h = headers[(i * step) as usize];
            h.nonce ^= 0x5555_5555;
            h.block_hash()
        })
        .collect();
    let mut g = c.benchmark_group("lookups");
    g.sample_size(20);
    g.throughput(Throughput::Elements(u64::from(LOOKUPS)));
    g.bench_function("height_of", |b| b.iter(|| known.iter().filter_map(|h| chain.height_of(h)).count()));
    g.bench_function("contains_miss", |b| b.iter(|| unknown.iter().filter(|h| chain.contains(h)).count()));
    g.bench_function("hash_at", |b| {
        b.iter(|| (0..LOOKUPS).filter_map(|i| chain.hash_at(i * step + i % 7)).count())
    });
    g.bench_function("header_at", |b| {
        b.iter(|| (0..LOOKUPS).filter_map(|i| chain.header_at(i * step + i % 7)).count())
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("locator", |b| b.iter(|| black_box(chain.locator())));
    g.finish();
}

criterion_group!(benches, bench_headers);
criterion_main!(benches);
