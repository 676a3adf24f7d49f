//! Forks, reorgs, ties, the fork memory cap, and checkpoints.

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::BlockHash;

use super::tests::{build, genesis, hashes, mine, regtest, regtest_chain, work_of, NOW};
use super::*;
use crate::Network;

#[test]
fn a_shorter_fork_is_kept_without_moving_the_tip() {
    let (mut chain, main) = regtest_chain(10);
    let fork = build(&main[4], 3, 1); // heights 6..=8
    let c = chain.connect(&fork, NOW).expect("valid fork");
    assert_eq!((c.added, c.known), (3, 0));
    assert!(c.connected.is_empty() && c.disconnected.is_empty(), "{c:?}");
    assert_eq!(c.added_headers, fork);
    assert_eq!(chain.tip().hash, main[9].block_hash());
    assert_eq!((chain.len(), chain.fork_len()), (14, 3));
    for (h, hash) in (6..).zip(hashes(&fork)) {
        assert!(chain.contains(&hash));
        assert!(!chain.is_on_best_chain(&hash));
        assert_eq!(chain.height_of(&hash), None, "best chain only");
        assert_eq!(chain.header(&hash).map(|(_, height)| height), Some(h));
    }
    // Known fork headers are skipped like any other.
    assert_eq!(chain.connect(&fork, NOW).map(|c| c.known), Ok(3));
}

#[test]
fn a_fork_with_more_work_reorgs_and_can_reorg_back() {
    let (mut chain, main) = regtest_chain(10);
    let fork = build(&main[4], 3, 1); // heights 6..=8
    chain.connect(&fork, NOW).expect("valid");
    // Three more make the fork 11 high: more work than the main chain's 10.
    let more = build(&fork[2], 3, 1);
    let c = chain.connect(&more, NOW).expect("valid");
    let all_fork: Vec<Header> = fork.iter().chain(&more).copied().collect();
    let expected_connected: Vec<(BlockHash, u32)> = hashes(&all_fork).into_iter().zip(6..).collect();
    let expected_disconnected: Vec<(BlockHash, u32)> =
        hashes(&main[5..]).into_iter().zip(6..11).rev().collect();
    assert_eq!(c.connected, expected_connected);
    assert_eq!(c.disconnected, expected_disconnected, "highest first");
    assert!(c.is_reorg());
    assert_eq!(c.added, 3);
    let tip = chain.tip();
    assert_eq!((tip.height, tip.hash), (11, more[2].block_hash()));
    assert_eq!(tip.work, genesis(Network::Regtest).work() + work_of(&main[..5]) + work_of(&all_fork));
    for (h, hash) in (6..).zip(hashes(&all_fork)) {
        assert_eq!(chain.height_of(&hash), Some(h));
        assert_eq!(chain.hash_at(h), Some(hash));
    }
    // The old branch is now a fork, still stored.
    for hash in hashes(&main[5..]) {
        assert!(chain.contains(&hash) && !chain.is_on_best_chain(&hash));
    }
    assert_eq!((chain.len(), chain.fork_len()), (17, 5));
    assert_eq!(chain.locator().last(), Some(&Network::Regtest.genesis_hash()));

    // The old branch grows to 12: back again.
    let back = build(&main[9], 2, 0);
    let c = chain.connect(&back, NOW).expect("valid");
    assert_eq!(c.disconnected.first(), Some(&(more[2].block_hash(), 11)));
    assert_eq!(c.disconnected.len(), 6);
    assert_eq!(c.connected.first(), Some(&(main[5].block_hash(), 6)));
    assert_eq!(c.connected.last(), Some(&(back[1].block_hash(), 12)));
    assert_eq!(chain.tip().hash, back[1].block_hash());
    assert_eq!(chain.work(), genesis(Network::Regtest).work() + work_of(&main) + work_of(&back));
}

#[test]
fn a_fork_that_overtakes_within_one_message_reorgs() {
    let (mut chain, main) = regtest_chain(10);
    let fork = build(&main[2], 9, 1); // heights 4..=12
    let c = chain.connect(&fork, NOW).expect("valid");
    assert_eq!(c.added, 9);
    assert_eq!(c.connected, hashes(&fork).into_iter().zip(4..).collect::<Vec<_>>());
    assert_eq!(c.disconnected, hashes(&main[3..]).into_iter().zip(4..11).rev().collect::<Vec<_>>());
    assert_eq!(chain.tip().height, 12);
    assert_eq!(chain.fork_len(), 7);
}

#[test]
fn equal_work_keeps_the_first_seen_tip() {
    let (mut chain, main) = regtest_chain(10);
    let rival = build(&main[6], 3, 1); // also ends at 10
    let c = chain.connect(&rival, NOW).expect("valid");
    assert!(!c.tip_changed());
    assert_eq!(chain.tip().hash, main[9].block_hash());
    assert_eq!(chain.work(), genesis(Network::Regtest).work() + work_of(&main));
}

#[test]
fn fork_headers_validate_against_their_own_branch() {
    let (mut chain, main) = regtest_chain(20);
    let fork = build(&main[4], 12, 1); // heights 6..=17
    chain.connect(&fork, NOW).expect("valid");
    // The fork's median time past comes from the fork: its headers 7..=17 (times of the fork).
    let fork_mtp = fork[6].time; // height 12
    let old = mine(fork[11].block_hash(), fork_mtp, 1);
    assert_eq!(chain.connect(&[old], NOW), Err(HeaderError::TimeTooOld { hash: old.block_hash() }));
    let ok = mine(fork[11].block_hash(), fork_mtp + 1, 1);
    assert_eq!(chain.connect(&[ok], NOW).map(|c| c.added), Ok(1));
    // And the locator from a fork header walks the fork, then the shared chain.
    let loc = chain.locator_from(&ok.block_hash()).expect("known");
    assert_eq!(loc[0], ok.block_hash());
    assert_eq!(loc[1], fork[11].block_hash());
    assert!(loc.contains(&fork[0].block_hash()) || loc.contains(&main[4].block_hash()));
    assert_eq!(loc.last(), Some(&Network::Regtest.genesis_hash()));
}

#[test]
fn fork_memory_is_capped_lowest_work_first_and_never_orphans() {
    let (mut chain, main) = regtest_chain(40);
    chain.set_max_fork_headers(30);
    let mut all_forks: Vec<Header> = Vec::new();
    // Ten forks of five headers, forking ever higher (so ever more work).
    for (k, base) in (0..10).zip((2..).step_by(3)) {
        let fork = build(&main[base], 5, 100 + k);
        let c = chain.connect(&fork, NOW).expect("valid");
        assert_eq!(c.added, 5);
        assert!(chain.fork_len() <= 30, "cap exceeded: {}", chain.fork_len());
        all_forks.extend(fork);
    }
    assert_eq!(chain.fork_len(), 30);
    assert_eq!(chain.height(), 40, "the best chain is never evicted");
    assert!(main.iter().all(|h| chain.is_on_best_chain(&h.block_hash())));
    // The highest forks survive whole; every stored fork header still has its parent.
    for h in &all_forks[all_forks.len() - 25..] {
        assert!(chain.contains(&h.block_hash()));
    }
    assert!(!chain.contains(&all_forks[4].block_hash()), "the lowest fork tip went first");
    for h in all_forks.iter().filter(|h| chain.contains(&h.block_hash())) {
        assert!(chain.contains(&h.prev_blockhash), "orphaned fork header");
    }
    // A child of an evicted header is simply unconnected.
    let orphan = mine(all_forks[4].block_hash(), all_forks[4].time + 600, 1);
    assert_eq!(
        chain.connect(&[orphan], NOW),
        Err(HeaderError::Unconnected { prev: all_forks[4].block_hash() })
    );
}

#[test]
fn cheap_forks_cannot_grow_memory() {
    let (mut chain, main) = regtest_chain(30);
    chain.set_max_fork_headers(50);
    // A peer feeds many short forks off genesis-adjacent headers, all less work than the tip.
    for k in 0..40u32 {
        let fork = build(&main[0], 3 + (k % 5) as usize, 1000 + k);
        chain.connect(&fork, NOW).expect("valid");
        assert!(chain.fork_len() <= 50);
    }
    assert_eq!(chain.len(), 31 + chain.fork_len());
}

fn regtest_checkpoint_chain(cp_height: u32) -> (HeaderChain, Vec<Header>) {
    let (_, main) = regtest_chain(cp_height as usize + 5);
    let cp = Checkpoint { height: cp_height, header: main[cp_height as usize - 1] };
    let chain = HeaderChain::with_checkpoint(Network::Regtest, cp).expect("regtest allows any height");
    (chain, main)
}

#[test]
fn a_checkpoint_chain_starts_there() {
    let (mut chain, main) = regtest_checkpoint_chain(37);
    let cp_hash = main[36].block_hash();
    assert_eq!((chain.start_height(), chain.height(), chain.len()), (37, 37, 1));
    assert_eq!(chain.tip().hash, cp_hash);
    assert_eq!(chain.tip().work, main[36].work(), "work counts from the checkpoint");
    assert_eq!(chain.header_at(36), None);
    assert_eq!(chain.locator(), vec![cp_hash]);

    let c = chain.connect(&main[37..40], NOW).expect("connects to the checkpoint");
    assert_eq!(c.connected, hashes(&main[37..40]).into_iter().zip(38..).collect::<Vec<_>>());
    assert_eq!(chain.locator().last(), Some(&cp_hash));
    assert_eq!(
        chain.headers_after(&[BlockHash::from_byte_array([3; 32])], BlockHash::all_zeros(), 2),
        main[37..39]
    );

    // Below the checkpoint: a sibling is a fork before it; other old headers do not connect.
    let sibling = mine(main[35].block_hash(), main[36].time + 1, 9);
    let e = chain.connect(&[sibling], NOW).unwrap_err();
    assert_eq!(e, HeaderError::ForkBeforeCheckpoint { hash: sibling.block_hash() });
    assert!(e.is_misbehaviour());
    assert_eq!(
        chain.connect(&main[10..12], NOW),
        Err(HeaderError::Unconnected { prev: main[9].block_hash() })
    );
}

#[test]
fn after_a_checkpoint_the_median_time_rule_waits_for_a_full_window() {
    let (_, main) = regtest_checkpoint_chain(37);
    let cp = main[36];
    // Earlier than the checkpoint but later than the real median of heights 27..=37: valid on
    // the full chain, so it must be valid after the checkpoint too.
    let child = mine(cp.block_hash(), cp.time - 1, 5);
    let mut full = regtest();
    full.connect(&main[..37], NOW).expect("valid");
    assert_eq!(full.connect(&[child], NOW).map(|c| c.added), Ok(1));
    let mut from_cp = HeaderChain::with_checkpoint(Network::Regtest, Checkpoint { height: 37, header: cp })
        .expect("valid checkpoint");
    assert_eq!(from_cp.connect(&[child], NOW).map(|c| c.added), Ok(1));
}

#[test]
fn bad_checkpoints_are_refused() {
    let real = |line: &str| -> Header {
        let hex = line.split_whitespace().nth(1).expect("height hex");
        bitcoin::consensus::encode::deserialize_hex(hex).expect("header hex")
    };
    let fixture = include_str!("../../tests/fixtures/headers/mainnet_retargets.hex");
    let lines: Vec<&str> = fixture.lines().filter(|l| !l.starts_with('#')).collect();
    let h864864 = real(lines[3]);
    let h866879 = real(lines[4]);

    let ok = HeaderChain::with_checkpoint(Network::Mainnet, Checkpoint { height: 864_864, header: h864864 })
        .expect("a retarget boundary with valid PoW");
    assert_eq!((ok.height(), ok.tip().hash), (864_864, h864864.block_hash()));
    assert_eq!(ok.locator(), vec![h864864.block_hash()]);

    let not_boundary =
        HeaderChain::with_checkpoint(Network::Mainnet, Checkpoint { height: 866_879, header: h866879 });
    assert!(matches!(not_boundary, Err(HeaderError::BadCheckpoint { height: 866_879, .. })));
    let mut tampered = h864864;
    tampered.time += 1;
    let e = HeaderChain::with_checkpoint(Network::Mainnet, Checkpoint { height: 864_864, header: tampered })
        .unwrap_err();
    assert!(matches!(e, HeaderError::BadCheckpoint { .. }));
    assert!(!e.is_misbehaviour(), "our configuration, not a peer");
    let e = HeaderChain::with_checkpoint(Network::Mainnet, Checkpoint { height: 0, header: h864864 });
    assert!(matches!(e, Err(HeaderError::BadCheckpoint { height: 0, .. })));
    let g = HeaderChain::with_checkpoint(
        Network::Mainnet,
        Checkpoint { height: 0, header: genesis(Network::Mainnet) },
    )
    .expect("genesis at 0");
    assert_eq!(g.tip().hash, Network::Mainnet.genesis_hash());
}

#[test]
fn absurd_checkpoint_heights_are_refused_and_debug_is_a_summary() {
    let g = genesis(Network::Regtest);
    let e = HeaderChain::with_checkpoint(Network::Regtest, Checkpoint { height: u32::MAX, header: g });
    assert!(matches!(e, Err(HeaderError::BadCheckpoint { .. })));
    let (chain, _) = regtest_chain(3);
    let debug = format!("{chain:?}");
    assert!(debug.contains("height: 3") && debug.len() < 300, "{debug}");
}

#[test]
fn core_checkpoints_bind_heights_and_forbid_forks_below_the_last_one_passed() {
    let (_, main) = regtest_chain(6);
    let mut chain = regtest();
    chain.checkpoints = vec![(3, main[2].block_hash())];
    // A different header at the checkpoint height is misbehaviour.
    let liar = build(&main[1], 2, 9); // heights 3..=4
    let e = chain.connect(&main[..2], NOW).and_then(|_| chain.connect(&liar, NOW)).unwrap_err();
    assert!(matches!(e, HeaderError::CheckpointMismatch { height: 3, .. }), "{e:?}");
    assert!(e.is_misbehaviour());
    // The real chain passes it; afterwards a fork below it is refused.
    chain.connect(&main[2..], NOW).expect("the checkpointed chain");
    let low_fork = build(&main[0], 1, 7); // height 2
    let e = chain.connect(&low_fork, NOW).unwrap_err();
    assert!(matches!(e, HeaderError::ForkBeforeCheckpoint { .. }), "{e:?}");
    // Forks above it are fine.
    assert!(chain.connect(&build(&main[3], 1, 7), NOW).is_ok());
}

#[test]
fn mainnet_checkpoints_and_minimum_work_parse() {
    assert_eq!(HeaderChain::new(Network::Mainnet).checkpoints.len(), 13);
    assert!(Network::Mainnet.min_chain_work() > Network::Signet.min_chain_work());
    assert_eq!(Network::Regtest.min_chain_work(), bitcoin::pow::Work::from_be_bytes([0; 32]));
}
