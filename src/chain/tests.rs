//! Linear-chain behaviour: validation errors, duplicates, locators, `headers_after`. Shared
//! helpers for the other test modules live here too.

use std::collections::BTreeMap;
use std::time::Instant;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::pow::{CompactTarget, Work};
use bitcoin::{BlockHash, TxMerkleNode};

use super::validate::Ancestors;
use super::*;
use crate::network::ALL_NETWORKS;
use crate::Network;

/// A `now` far after every fixture (2033).
pub(super) const NOW: u64 = 2_000_000_000;
pub(super) const REGTEST_BITS: u32 = 0x207f_ffff;

impl Ancestors for BTreeMap<u32, Header> {
    fn get(&self, height: u32) -> Option<Header> {
        BTreeMap::get(self, &height).copied()
    }
}

pub(super) fn regtest() -> HeaderChain {
    HeaderChain::new(Network::Regtest)
}

/// A regtest header on `prev`, `salt` making siblings differ; nonce ground until PoW holds
/// (about half of all nonces do at the regtest limit).
pub(super) fn mine_with(prev: BlockHash, time: u32, bits: u32, version: i32, salt: u32) -> Header {
    let mut root = [0u8; 32];
    root[..4].copy_from_slice(&salt.to_le_bytes());
    let mut h = Header {
        version: Version::from_consensus(version),
        prev_blockhash: prev,
        merkle_root: TxMerkleNode::from_byte_array(root),
        time,
        bits: CompactTarget::from_consensus(bits),
        nonce: 0,
    };
    while !h.target().is_met_by(h.block_hash()) {
        h.nonce += 1;
    }
    h
}

pub(super) fn mine(prev: BlockHash, time: u32, salt: u32) -> Header {
    mine_with(prev, time, REGTEST_BITS, 0x2000_0000, salt)
}

/// `n` consecutive regtest headers on `parent`, ten minutes apart.
pub(super) fn build(parent: &Header, n: usize, salt: u32) -> Vec<Header> {
    let mut out: Vec<Header> = Vec::with_capacity(n);
    let (mut prev, mut time) = (parent.block_hash(), parent.time);
    for _ in 0..n {
        time += 600;
        let h = mine(prev, time, salt);
        prev = h.block_hash();
        out.push(h);
    }
    out
}

pub(super) fn genesis(network: Network) -> Header {
    bitcoin::constants::genesis_block(network.to_bitcoin()).header
}

/// A regtest chain with `n` headers after genesis, and those headers.
pub(super) fn regtest_chain(n: usize) -> (HeaderChain, Vec<Header>) {
    let mut chain = regtest();
    let headers = build(&genesis(Network::Regtest), n, 0);
    for batch in headers.chunks(2000) {
        let c = chain.connect(batch, NOW).expect("valid regtest headers");
        assert_eq!(c.error, None);
    }
    (chain, headers)
}

pub(super) fn hashes(headers: &[Header]) -> Vec<BlockHash> {
    headers.iter().map(Header::block_hash).collect()
}

pub(super) fn work_of(headers: &[Header]) -> Work {
    headers.iter().fold(Work::from_be_bytes([0; 32]), |w, h| w + h.work())
}

#[test]
fn a_new_chain_holds_genesis_only() {
    for network in ALL_NETWORKS {
        let chain = HeaderChain::new(network);
        let tip = chain.tip();
        assert_eq!(tip.hash, network.genesis_hash(), "{network}");
        assert_eq!((tip.height, chain.height(), chain.len(), chain.start_height()), (0, 0, 1, 0));
        assert_eq!(tip.work, genesis(network).work());
        assert_eq!(chain.locator(), vec![network.genesis_hash()]);
        assert!(chain.contains(&tip.hash) && chain.is_on_best_chain(&tip.hash) && !chain.is_empty());
        assert_eq!(chain.header_at(0), Some(genesis(network)));
        assert_eq!(chain.header_at(1), None);
        assert_eq!(chain.network(), network);
    }
}

#[test]
fn a_regtest_chain_connects_and_reports_every_header() {
    let mut chain = regtest();
    let headers = build(&genesis(Network::Regtest), 20, 0);
    let c = chain.connect(&headers, NOW).expect("valid");
    let expected: Vec<(BlockHash, u32)> = hashes(&headers).into_iter().zip(1..).collect();
    assert_eq!(
        c,
        Connected {
            added: 20,
            known: 0,
            connected: expected,
            disconnected: vec![],
            added_headers: headers.clone(),
            error: None
        }
    );
    assert!(c.tip_changed() && !c.is_reorg());
    let tip = chain.tip();
    assert_eq!((tip.height, tip.hash, tip.header), (20, headers[19].block_hash(), headers[19]));
    assert_eq!(chain.work(), genesis(Network::Regtest).work() + work_of(&headers));
    for (h, header) in (1..).zip(&headers) {
        let hash = header.block_hash();
        assert_eq!(chain.header_at(h), Some(*header));
        assert_eq!(chain.hash_at(h), Some(hash));
        assert_eq!(chain.height_of(&hash), Some(h));
        assert_eq!(chain.header(&hash), Some((*header, h)));
        assert!(chain.is_on_best_chain(&hash));
    }
    assert_eq!(chain.len(), 21);
}

#[test]
fn known_headers_are_skipped() {
    let (mut chain, headers) = regtest_chain(20);
    let again = chain.connect(&headers, NOW).expect("duplicates are fine");
    assert_eq!(again, Connected { known: 20, ..Connected::default() });
    assert!(!again.tip_changed());

    let more = build(&headers[19], 2, 0);
    let mut batch = headers[17..].to_vec();
    batch.extend_from_slice(&more);
    let c = chain.connect(&batch, NOW).expect("valid");
    assert_eq!((c.known, c.added), (3, 2));
    assert_eq!(c.connected, vec![(more[0].block_hash(), 21), (more[1].block_hash(), 22)]);
    assert_eq!(c.added_headers, more);
    assert_eq!(chain.connect(&[], NOW), Ok(Connected::default()));
}

#[test]
fn an_unknown_parent_is_unconnected_not_misbehaviour() {
    let (mut chain, headers) = regtest_chain(3);
    let stranger = mine(BlockHash::from_byte_array([7; 32]), headers[2].time + 600, 0);
    let e = chain.connect(&[stranger], NOW).unwrap_err();
    assert_eq!(e, HeaderError::Unconnected { prev: BlockHash::from_byte_array([7; 32]) });
    assert!(!e.is_misbehaviour());
    assert_eq!(chain.height(), 3);
}

#[test]
fn unchained_headers_reject_the_whole_message() {
    let mut chain = regtest();
    let headers = build(&genesis(Network::Regtest), 3, 0);
    let e = chain.connect(&[headers[0], headers[2]], NOW).unwrap_err();
    assert_eq!(e, HeaderError::NotChained { index: 1 });
    assert!(e.is_misbehaviour());
    assert_eq!(chain.height(), 0, "Core rejects the message before adding any of it");
}

#[test]
fn bad_proof_of_work_rejects_the_whole_message() {
    let mut chain = regtest();
    let headers = build(&genesis(Network::Regtest), 2, 0);
    let mut bad = headers[1];
    while bad.target().is_met_by(bad.block_hash()) {
        bad.nonce = bad.nonce.wrapping_add(1);
    }
    let e = chain.connect(&[headers[0], bad], NOW).unwrap_err();
    assert_eq!(e, HeaderError::BadProofOfWork { hash: bad.block_hash() });
    assert!(e.is_misbehaviour());
    assert_eq!(chain.height(), 0);

    // Targets the encoding alone rules out: above the limit, negative, overflowing, zero.
    let parent = genesis(Network::Regtest).block_hash();
    for bits in [0x2100_ffffu32, 0x2080_0001, 0xff7f_ffff, 0x2000_0000, 0x0300_0000] {
        let mut h = mine(parent, NOW as u32 - 100, 1);
        h.bits = CompactTarget::from_consensus(bits);
        let e = chain.connect(&[h], NOW).unwrap_err();
        assert_eq!(e, HeaderError::BadProofOfWork { hash: h.block_hash() }, "bits {bits:#x}");
    }
}

#[test]
fn bits_other_than_required_are_bad_difficulty() {
    let mut chain = regtest();
    let g = genesis(Network::Regtest);
    // A harder target than the rules ask for still has valid PoW, but wrong bits.
    let h = mine_with(g.block_hash(), g.time + 600, 0x1f7f_ffff, 0x2000_0000, 0);
    let e = chain.connect(&[h], NOW).unwrap_err();
    assert_eq!(
        e,
        HeaderError::BadDifficulty { hash: h.block_hash(), expected: REGTEST_BITS, got: 0x1f7f_ffff }
    );
    assert!(e.is_misbehaviour());
}

#[test]
fn timestamps_must_pass_the_median_of_the_last_eleven() {
    let (mut chain, headers) = regtest_chain(12);
    // Times rise by 600: the median of heights 2..=12 is height 7's.
    let mtp = headers[6].time;
    let tip = headers[11].block_hash();
    let at_mtp = mine(tip, mtp, 0);
    let e = chain.connect(&[at_mtp], NOW).unwrap_err();
    assert_eq!(e, HeaderError::TimeTooOld { hash: at_mtp.block_hash() });
    assert!(e.is_misbehaviour());
    // One second later is fine, even though it is before its parent.
    let after = mine(tip, mtp + 1, 0);
    assert_eq!(chain.connect(&[after], NOW).map(|c| c.added), Ok(1));

    // A bad header after good ones keeps the good ones and reports the error.
    let good = build(&after, 2, 0);
    let old = mine(good[1].block_hash(), headers[0].time, 0);
    let c = chain.connect(&[good[0], good[1], old], NOW).expect("a valid prefix was added");
    assert_eq!((c.added, c.connected.len()), (2, 2));
    assert_eq!(c.error, Some(HeaderError::TimeTooOld { hash: old.block_hash() }));
    assert_eq!(chain.height(), 15);
}

#[test]
fn future_timestamps_wait_without_blame() {
    let mut chain = regtest();
    let g = genesis(Network::Regtest).block_hash();
    let limit = (NOW + MAX_FUTURE_BLOCK_TIME) as u32;
    let too_new = mine(g, limit + 1, 0);
    let e = chain.connect(&[too_new], NOW).unwrap_err();
    assert_eq!(e, HeaderError::TimeTooNew { hash: too_new.block_hash() });
    assert!(!e.is_misbehaviour());
    assert_eq!(chain.connect(&[too_new], NOW + 1).map(|c| c.added), Ok(1), "fine a second later");
    let at_limit = mine(too_new.block_hash(), limit + 2, 0);
    assert_eq!(chain.connect(&[at_limit], NOW + 2).map(|c| c.added), Ok(1), "exactly 2 hours ahead is fine");
}

#[test]
fn outdated_versions_are_rejected_after_their_softforks() {
    // Core's regtest activates BIP34, BIP66 and BIP65 at height 1.
    let mut chain = regtest();
    let g = genesis(Network::Regtest);
    for version in [1, 2, 3, -1] {
        let h = mine_with(g.block_hash(), g.time + 600, REGTEST_BITS, version, 0);
        let e = chain.connect(&[h], NOW).unwrap_err();
        assert_eq!(e, HeaderError::BadVersion { hash: h.block_hash(), version });
        assert!(e.is_misbehaviour());
    }
    let v4 = mine_with(g.block_hash(), g.time + 600, REGTEST_BITS, 4, 0);
    assert_eq!(chain.connect(&[v4], NOW).map(|c| c.added), Ok(1));
}

#[test]
fn regtest_crosses_retarget_boundaries_without_retargeting_and_quickly() {
    let headers = build(&genesis(Network::Regtest), 4100, 0);
    let mut chain = regtest();
    let started = Instant::now();
    for batch in headers.chunks(2000) {
        assert_eq!(chain.connect(batch, NOW).map(|c| c.added), Ok(batch.len()));
    }
    let elapsed = started.elapsed();
    eprintln!("connect: 4,100 headers in {elapsed:?} ({:?} per 2,000)", elapsed * 2000 / 4100);
    assert_eq!(chain.height(), 4100);
    assert!(headers.iter().all(|h| h.bits.to_consensus() == REGTEST_BITS));
}

/// Core's `LocatorEntries` on plain heights, as the reference.
fn core_locator_heights(tip: u32) -> Vec<u32> {
    let (mut out, mut step, mut h) = (vec![], 1i64, i64::from(tip));
    loop {
        out.push(h as u32);
        if h == 0 {
            break;
        }
        h = (h - step).max(0);
        if out.len() > 10 {
            step *= 2;
        }
    }
    out
}

#[test]
fn locators_are_dense_then_exponential_and_end_with_genesis() {
    let (chain, headers) = regtest_chain(200);
    let locator = chain.locator();
    let heights: Vec<u32> = locator.iter().map(|h| chain.height_of(h).expect("best chain")).collect();
    let mut expected: Vec<u32> = (189..=200).rev().collect();
    expected.extend([187, 183, 175, 159, 127, 63, 0]);
    assert_eq!(heights, expected);
    assert_eq!(heights, core_locator_heights(200));
    assert_eq!(locator[0], headers[199].block_hash());
    assert_eq!(locator.last(), Some(&Network::Regtest.genesis_hash()));

    for tip in [1u32, 5, 10, 11, 12, 13, 50, 150] {
        let hash = chain.hash_at(tip).expect("on chain");
        let from = chain.locator_from(&hash).expect("known");
        let got: Vec<u32> = from.iter().map(|h| chain.height_of(h).expect("best chain")).collect();
        assert_eq!(got, core_locator_heights(tip), "tip {tip}");
    }
    // Even u32::MAX heights stay far below MAX_LOCATOR_SZ.
    assert!(core_locator_heights(u32::MAX).len() <= MAX_LOCATOR_SZ);
    assert_eq!(chain.locator_from(&BlockHash::from_byte_array([1; 32])), None);
}

#[test]
fn headers_after_serves_like_core() {
    let (chain, headers) = regtest_chain(100);
    let none = BlockHash::all_zeros();
    // The peer has our first 50: we send 51.. up to the limit.
    let their_locator = chain.locator_from(&headers[49].block_hash()).expect("known");
    assert_eq!(chain.headers_after(&their_locator, none, 2000), headers[50..].to_vec());
    assert_eq!(chain.headers_after(&their_locator, none, 10), headers[50..60].to_vec());
    // Stop hash: up to and including it.
    let stop = headers[54].block_hash();
    assert_eq!(chain.headers_after(&their_locator, stop, 2000), headers[50..55].to_vec());
    // Unknown hashes are skipped; none known means from genesis.
    let unknown = BlockHash::from_byte_array([9; 32]);
    assert_eq!(chain.headers_after(&[unknown, headers[9].block_hash()], none, 3), headers[10..13].to_vec());
    assert_eq!(chain.headers_after(&[unknown], none, 2), headers[..2].to_vec());
    // Up to date: nothing.
    assert!(chain.headers_after(&chain.locator(), none, 2000).is_empty());
    // Empty locator: just the stop header.
    assert_eq!(chain.headers_after(&[], stop, 2000), vec![headers[54]]);
    assert!(chain.headers_after(&[], unknown, 2000).is_empty());
    assert!(chain.headers_after(&their_locator, none, 0).is_empty());
}

#[test]
fn header_types_stay_small() {
    // The memory estimate in `best` relies on these.
    assert_eq!(std::mem::size_of::<Header>(), 80);
    assert_eq!(std::mem::size_of::<(u32, u32)>(), 8);
    assert_eq!(std::mem::size_of::<Work>(), 32);
}

#[test]
fn best_chain_memory_at_mainnet_size() {
    use super::best::BestChain;
    // Real links (hashes are recomputed on lookup, so they must be the headers' own), without
    // proof of work: the storage does not validate. 470k halves the test's time and is the
    // worst case of the old hash-map index's load (the sorted index has none).
    const N: u32 = 470_000;
    let g = genesis(Network::Mainnet);
    let mut best = BestChain::new(0, g, g.block_hash(), g.work());
    let mut header = g;
    let mut hashes = vec![g.block_hash()];
    for i in 1..N {
        header.prev_blockhash = hashes[i as usize - 1];
        header.nonce = i;
        let hash = header.block_hash();
        best.push(header, hash, g.work());
        hashes.push(hash);
    }
    let per_header = best.approx_heap_bytes() as f64 / f64::from(N);
    eprintln!("best chain: {per_header:.1} bytes per header at {N} headers");
    // Issue 14: at most 64 bytes per best-chain header (110 with full headers).
    assert!(per_header <= 64.0, "{per_header} bytes per header");
    // Lookups verify against the recomputed hashes.
    for h in [0, 1, 7, 8, 9, 123_456, 300_001, N - 2, N - 1] {
        assert_eq!(best.height_of(&hashes[h as usize]), Some(h));
        assert_eq!(best.hash_at(h), Some(hashes[h as usize]));
    }
    assert_eq!(best.header_at(5).map(|h| h.block_hash()), Some(hashes[5]));
    assert_eq!(best.height_of(&g.merkle_root.to_raw_hash().into()), None);
    assert_eq!(best.hash_at(N), None);
    // Truncating into the merged part and growing again.
    let removed = best.truncate(100_000);
    assert_eq!(removed.len() as u32, N - 1 - 100_000);
    assert_eq!(
        removed.last().map(|(h, hash)| (h.block_hash(), *hash)),
        Some((hashes[100_001], hashes[100_001]))
    );
    assert_eq!(best.height_of(&hashes[100_001]), None);
    assert_eq!((best.height_of(&hashes[100_000]), best.tip_hash()), (Some(100_000), hashes[100_000]));
    let (h, hash) = removed[removed.len() - 1];
    best.push(h, hash, g.work());
    assert_eq!(best.height_of(&hashes[100_001]), Some(100_001));
    assert_eq!(best.iter_from(99_999).map(|(_, h)| h).collect::<Vec<_>>(), hashes[99_999..=100_001]);
}

#[test]
fn colliding_short_ids_still_resolve() {
    use super::best::BestChain;
    // Two hashes sharing their first 4 bytes, as a grinding peer could make on regtest. Fake
    // hashes are only kept where the chain stores a full hash (every 8th height, and the tip);
    // the others are recomputed from the headers.
    let g = genesis(Network::Regtest);
    let (a, b) = ([5u8; 32], {
        let mut b = [5u8; 32];
        b[31] = 6;
        b
    });
    let (ha, hb) = (BlockHash::from_byte_array(a), BlockHash::from_byte_array(b));
    let mut best = BestChain::new(0, g, g.block_hash(), g.work());
    let mut prev = g;
    for _ in 1..8 {
        let mut h = prev;
        h.prev_blockhash = prev.block_hash();
        best.push(h, h.block_hash(), g.work());
        prev = h;
    }
    let mut h8 = g;
    h8.prev_blockhash = prev.block_hash();
    best.push(h8, ha, g.work());
    let mut h9 = g;
    h9.prev_blockhash = ha;
    best.push(h9, hb, g.work());
    assert_eq!((best.height_of(&ha), best.height_of(&hb)), (Some(8), Some(9)));
    best.truncate(8);
    assert_eq!((best.height_of(&ha), best.height_of(&hb)), (Some(8), None));
    best.truncate(7);
    assert_eq!(best.height_of(&ha), None);
    best.push(h8, hb, g.work());
    assert_eq!((best.height_of(&ha), best.height_of(&hb)), (None, Some(8)));
}
