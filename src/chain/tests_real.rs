//! Real chain data (mainnet, testnet3) and Core's `pow_tests.cpp` cases; synthetic headers for
//! the testnet rules that real fixtures here do not reach.

use std::collections::BTreeMap;

use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::hashes::Hash;
use bitcoin::pow::{CompactTarget, Work};
use bitcoin::{BlockHash, TxMerkleNode};

use super::tests::{genesis, hashes, NOW};
use super::validate::{
    calculate_next_work_required, check_contextual, check_pow, last_non_min_difficulty_bits,
    next_last_non_min_bits, next_work_required, Rules,
};
use super::*;
use crate::Network;

fn parse(hex: &str) -> Header {
    deserialize_hex(hex.trim()).expect("fixture header hex")
}

fn mainnet_0_10() -> Vec<Header> {
    include_str!("../../tests/fixtures/headers/mainnet_0_10.hex").lines().map(parse).collect()
}

fn mainnet_retargets() -> BTreeMap<u32, Header> {
    include_str!("../../tests/fixtures/headers/mainnet_retargets.hex")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (height, hex) = l.split_once(' ').expect("height hex");
            (height.parse().expect("height"), parse(hex))
        })
        .collect()
}

/// Testnet3 blocks 1..=58 and a two-header fork off genesis.
fn testnet3() -> (Vec<Header>, Vec<Header>) {
    let (mut main, mut fork) = (vec![], vec![]);
    for line in include_str!("../../tests/fixtures/headers/testnet3_1_58.hex").lines() {
        match line.strip_prefix("fork:") {
            Some(hex) => fork.push(parse(hex)),
            None => main.push(parse(line)),
        }
    }
    (main, fork)
}

fn hash(s: &str) -> BlockHash {
    s.parse().expect("block hash")
}

#[test]
fn mainnet_blocks_1_to_10_connect_after_genesis() {
    let headers = mainnet_0_10();
    assert_eq!(headers[0], genesis(Network::Mainnet));
    let mut chain = HeaderChain::new(Network::Mainnet);
    // `now` just after block 10 was mined: nothing is in the future.
    let c = chain.connect(&headers[1..], 1_231_478_000).expect("real headers are valid");
    assert_eq!((c.added, c.connected.len()), (10, 10));
    assert_eq!(
        chain.hash_at(1),
        Some(hash("00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048"))
    );
    assert_eq!(chain.tip().hash, hash("000000002c05cc2e78923c34df87fd108b22221ac6076c18f3ade378a4d915e9"));
    // Chainwork 0x0b000b000b: eleven blocks of 0x100010001 each (Core's `chainwork`).
    let mut eleven = [0u8; 32];
    eleven[27..].copy_from_slice(&[0x0b, 0x00, 0x0b, 0x00, 0x0b]);
    assert_eq!(chain.work(), Work::from_be_bytes(eleven));
    assert_eq!(chain.locator().len(), 11);
}

#[test]
fn a_modified_mainnet_header_fails_its_proof_of_work() {
    let headers = mainnet_0_10();
    let mut chain = HeaderChain::new(Network::Mainnet);
    for tamper in [
        |h: &mut Header| h.time += 1,
        |h: &mut Header| h.nonce ^= 1,
        |h: &mut Header| h.merkle_root = TxMerkleNode::all_zeros(),
        |h: &mut Header| h.version = Version::TWO,
    ] {
        let mut batch = headers[1..].to_vec();
        tamper(&mut batch[4]);
        let e = chain.connect(&batch, NOW).unwrap_err();
        assert_eq!(e, HeaderError::BadProofOfWork { hash: batch[4].block_hash() });
        assert_eq!(chain.height(), 0, "the whole message is refused");
    }
    // Easier bits than the limit are refused on their own.
    let mut easy = headers[1];
    easy.bits = CompactTarget::from_consensus(0x1d01_ffff);
    assert_eq!(chain.connect(&[easy], NOW), Err(HeaderError::BadProofOfWork { hash: easy.block_hash() }));
}

#[test]
fn cores_pow_tests_calculate_next_work_required() {
    let rules = Rules::new(Network::Mainnet, 0);
    let last = |time: u32, bits: u32| Header {
        version: Version::ONE,
        prev_blockhash: BlockHash::all_zeros(),
        merkle_root: TxMerkleNode::all_zeros(),
        time,
        bits: CompactTarget::from_consensus(bits),
        nonce: 0,
    };
    // (first block time, last block time, last bits, expected): `src/test/pow_tests.cpp`.
    let cases = [
        (1_261_130_161, 1_262_152_739, 0x1d00_ffff, 0x1d00_d86a), // get_next_work (block 32255)
        (1_231_006_505, 1_233_061_996, 0x1d00_ffff, 0x1d00_ffff), // capped at the pow limit
        (1_279_008_237, 1_279_297_671, 0x1c05_a3f4, 0x1c01_68fd), // 4x harder at most
        (1_263_163_443, 1_269_211_443, 0x1c38_7f6f, 0x1d00_e1fd), // 4x easier at most
    ];
    for (first, time, bits, expected) in cases {
        let got = calculate_next_work_required(&rules, &last(time, bits), first, bits);
        assert_eq!(got, expected, "first {first} last {time} bits {bits:#x}");
    }
    // Timestamps running backwards clamp to the 4x limit instead of misbehaving.
    let got = calculate_next_work_required(&rules, &last(1_000, 0x1c05_a3f4), 2_000_000, 0x1c05_a3f4);
    assert_eq!(got, 0x1c01_68fd);
    // Regtest never retargets.
    let regtest = Rules::new(Network::Regtest, 0);
    assert_eq!(
        calculate_next_work_required(&regtest, &last(10_000_000, 0x207f_ffff), 0, 0x207f_ffff),
        0x207f_ffff
    );
    // The pow limits' compact forms.
    let bits = |n| Rules::new(n, 0).pow_limit_bits;
    assert_eq!(
        [Network::Mainnet, Network::Testnet3, Network::Testnet4, Network::Signet, Network::Regtest].map(bits),
        [0x1d00_ffff, 0x1d00_ffff, 0x1d00_ffff, 0x1e03_77ae, 0x207f_ffff]
    );
}

#[test]
fn real_mainnet_retargets_match_the_rules() {
    let held = mainnet_retargets();
    let rules = Rules::new(Network::Mainnet, 0);
    for header in held.values() {
        assert_eq!(check_pow(&rules, header, header.block_hash()), Ok(()));
    }
    assert_eq!(
        held[&32256].block_hash(),
        hash("000000004f2886a170adb7204cb0c7a824217dd24d11a74423d564c4e0904967")
    );
    for (first, last, next) in [(30_240u32, 32_255u32, 32_256u32), (864_864, 866_879, 866_880)] {
        let (l, n) = (held[&last], held[&next]);
        assert_eq!(n.prev_blockhash, l.block_hash(), "{next} builds on {last}");
        assert_eq!(first + 2015, last);
        let expected = next_work_required(&rules, &held, last, &l, n.time, || unreachable!("mainnet"));
        assert_eq!(expected, Some(n.bits.to_consensus()), "retarget at {next}");
        assert_ne!(n.bits, l.bits, "the difficulty really changed at {next}");
        // Between retargets the parent's bits carry on, however late the block.
        let mid = next_work_required(&rules, &held, next, &n, n.time + 7200, || unreachable!("mainnet"));
        assert_eq!(mid, Some(n.bits.to_consensus()));
    }
    assert_eq!(held[&32256].bits.to_consensus(), 0x1d00_d86a);
}

#[test]
fn testnet3_blocks_and_an_old_fork_connect() {
    let (main, fork) = testnet3();
    assert_eq!((main.len(), fork.len()), (58, 2));
    let mut chain = HeaderChain::new(Network::Testnet3);
    let c = chain.connect(&main, NOW).expect("real testnet3 headers are valid");
    assert_eq!(c.added, 58);
    assert_eq!(chain.height(), 58);
    assert_eq!(main[0].prev_blockhash, Network::Testnet3.genesis_hash());
    // The 2019 fork off genesis: valid, stored, far less work.
    let c = chain.connect(&fork, NOW).expect("valid fork");
    assert_eq!((c.added, c.connected.len()), (2, 0));
    assert_eq!(chain.fork_len(), 2);
    assert_eq!(chain.tip().hash, main[57].block_hash());
    // Replaying the same headers under mainnet rules fails: wrong genesis.
    let mut mainnet = HeaderChain::new(Network::Mainnet);
    assert!(matches!(mainnet.connect(&main, NOW), Err(HeaderError::Unconnected { .. })));
    assert_eq!(hashes(&fork[..1])[0], fork[1].prev_blockhash);
}

const LIMIT: u32 = 0x1d00_ffff;
const REAL: u32 = 0x1c0f_ffff;

fn synthetic(time: u32, bits: u32) -> Header {
    Header {
        version: Version::from_consensus(0x2000_0000),
        prev_blockhash: BlockHash::all_zeros(),
        merkle_root: TxMerkleNode::all_zeros(),
        time,
        bits: CompactTarget::from_consensus(bits),
        nonce: 0,
    }
}

#[test]
fn testnet_minimum_difficulty_rule() {
    for network in [Network::Testnet3, Network::Testnet4] {
        let rules = Rules::new(network, 0);
        // Period from 4032: two real blocks, then a minimum-difficulty exception.
        let held: BTreeMap<u32, Header> = [
            (4031, synthetic(999_000, LIMIT)),
            (4032, synthetic(1_000_000, REAL)),
            (4033, synthetic(1_000_600, REAL)),
            (4034, synthetic(1_002_000, LIMIT)),
            (4035, synthetic(1_003_300, LIMIT)),
        ]
        .into_iter()
        .collect();
        let prev = held[&4035];
        let walk = || last_non_min_difficulty_bits(&rules, &held, 4035, prev);
        // More than 20 minutes after the parent: the limit.
        assert_eq!(next_work_required(&rules, &held, 4035, &prev, prev.time + 1201, walk), Some(LIMIT));
        // Exactly 20 minutes is not more: the last real difficulty, walking back over 4034/4035.
        assert_eq!(next_work_required(&rules, &held, 4035, &prev, prev.time + 1200, walk), Some(REAL));
        // The walk stops at a period's first block even if it is at the limit.
        assert_eq!(last_non_min_difficulty_bits(&rules, &held, 4031, held[&4031]), LIMIT);
        // The incremental form agrees with the walk header by header.
        let mut acc = last_non_min_difficulty_bits(&rules, &held, 4032, held[&4032]);
        for h in 4033..=4035 {
            acc = next_last_non_min_bits(&rules, h, &held[&h], acc);
            assert_eq!(acc, last_non_min_difficulty_bits(&rules, &held, h, held[&h]), "{network} {h}");
        }
    }
    // Mainnet has no such rule: a late block keeps its parent's bits.
    let rules = Rules::new(Network::Mainnet, 0);
    let held: BTreeMap<u32, Header> = [(100, synthetic(1_000_000, REAL))].into_iter().collect();
    assert_eq!(next_work_required(&rules, &held, 100, &held[&100], 9_000_000, || LIMIT), Some(REAL));
}

/// A difficulty period 2016..=4031 whose last block is a minimum-difficulty exception, plus the
/// eleven before 4032 for the median time past, two weeks apart end to end.
fn period_ending_in_an_exception() -> BTreeMap<u32, Header> {
    let start = 1_000_000u32;
    let mut held: BTreeMap<u32, Header> = BTreeMap::new();
    held.insert(2016, synthetic(start, REAL));
    for h in 4021..=4030 {
        held.insert(h, synthetic(start + 1_209_600 - (4031 - h) * 600, REAL));
    }
    held.insert(4031, synthetic(start + 1_209_600, LIMIT));
    held
}

#[test]
fn bip94_retargets_from_the_first_block_of_the_period() {
    let held = period_ending_in_an_exception();
    let last = held[&4031];
    let t3 = Rules::new(Network::Testnet3, 0);
    let t4 = Rules::new(Network::Testnet4, 0);
    // Exactly two weeks: testnet4 keeps the period's real difficulty; testnet3 retargets from
    // the exception's bits and falls to the limit (the bug BIP94 fixed).
    assert_eq!(next_work_required(&t4, &held, 4031, &last, last.time, || 0), Some(REAL));
    assert_eq!(next_work_required(&t3, &held, 4031, &last, last.time, || 0), Some(LIMIT));
}

#[test]
fn bip94_forbids_timewarps_at_period_starts() {
    let held = period_ending_in_an_exception();
    let last = held[&4031];
    let t4 = Rules::new(Network::Testnet4, 0);
    let t3 = Rules::new(Network::Testnet3, 0);
    let check = |rules: &Rules, time: u32| {
        let mut h = synthetic(time, REAL);
        h.prev_blockhash = BlockHash::from_byte_array([1; 32]);
        let bits = if rules.enforce_bip94 { REAL } else { LIMIT };
        h.bits = CompactTarget::from_consensus(bits);
        (check_contextual(rules, &held, (4031, &last), &h, h.block_hash(), None, || 0), h.block_hash())
    };
    let warped = last.time - MAX_TIMEWARP - 1;
    let (result, hash) = check(&t4, warped);
    assert_eq!(result, Err(HeaderError::TimeWarp { hash }));
    assert!(HeaderError::TimeWarp { hash }.is_misbehaviour());
    assert_eq!(check(&t4, last.time - MAX_TIMEWARP).0, Ok(()));
    assert_eq!(check(&t3, warped).0, Ok(()), "testnet3 has no timewarp rule");
}
