//! Serving `getheaders` and announcing tips as Core does (`serve`).

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::BlockHash;

use super::*;
use crate::chain::tests::{build, hashes, regtest_chain, NOW};
use crate::Network;

fn unknown(n: u8) -> BlockHash {
    BlockHash::from_byte_array([n; 32])
}

fn zero() -> BlockHash {
    BlockHash::all_zeros()
}

#[test]
fn a_bogus_locator_serves_from_genesis_at_most_2000() {
    let (chain, headers) = regtest_chain(2_100);
    let (got, sent) = answer_getheaders(&chain, &[unknown(1), unknown(2)], zero()).expect("answered");
    assert_eq!(got, headers[..2_000]);
    assert_eq!(sent, headers[1_999].block_hash());
    // The continuation from the last header received gets the rest and reaches the tip.
    let (rest, sent) = answer_getheaders(&chain, &[sent], zero()).expect("answered");
    assert_eq!(rest, headers[2_000..]);
    assert_eq!(sent, chain.tip().hash);
}

#[test]
fn the_first_known_locator_hash_is_the_fork_point() {
    let (chain, headers) = regtest_chain(300);
    let h = hashes(&headers);
    // Unknown hashes are skipped; heights are 1-based (headers[i] is at height i + 1).
    let (got, _) = answer_getheaders(&chain, &[unknown(7), h[99], h[10]], zero()).expect("answered");
    assert_eq!(got, headers[100..]);
    // At the tip: an empty `headers`, and the tip counts as sent.
    let (got, sent) = answer_getheaders(&chain, &[h[299]], zero()).expect("answered");
    assert!(got.is_empty());
    assert_eq!(sent, h[299]);
}

#[test]
fn hash_stop_ends_the_answer_after_it() {
    let (chain, headers) = regtest_chain(50);
    let h = hashes(&headers);
    let (got, sent) = answer_getheaders(&chain, &[h[9]], h[14]).expect("answered");
    assert_eq!(got, headers[10..15]);
    assert_eq!(sent, h[14]);
    // An unknown stop hash does not stop anything.
    let (got, _) = answer_getheaders(&chain, &[h[9]], unknown(3)).expect("answered");
    assert_eq!(got, headers[10..]);
}

#[test]
fn an_empty_locator_asks_for_the_stop_header_alone() {
    let (mut chain, headers) = regtest_chain(20);
    let h = hashes(&headers);
    let (got, sent) = answer_getheaders(&chain, &[], h[4]).expect("answered");
    assert_eq!(got, vec![headers[4]]);
    assert_eq!(sent, h[4]);
    // Unknown: Core sends nothing at all.
    assert_eq!(answer_getheaders(&chain, &[], unknown(9)), None);
    assert_eq!(answer_getheaders(&chain, &[], zero()), None);
    // A fork header is not `BlockRequestAllowed` for a headers-only node: nothing either.
    let fork = build(&headers[9], 2, 77);
    chain.connect(&fork, NOW).expect("fork connects");
    assert!(chain.contains(&fork[1].block_hash()));
    assert_eq!(answer_getheaders(&chain, &[], fork[1].block_hash()), None);
}

#[test]
fn a_locator_from_a_fork_serves_from_where_it_left_the_best_chain() {
    let (mut chain, headers) = regtest_chain(100);
    let fork = build(&headers[49], 5, 5); // heights 51..=55 on a side branch
    chain.connect(&fork, NOW).expect("fork connects");
    assert_eq!(chain.tip().hash, headers[99].block_hash());
    let locator = chain.locator_from(&fork[4].block_hash()).expect("stored");
    let (got, _) = answer_getheaders(&chain, &locator, zero()).expect("answered");
    assert_eq!(got, headers[50..]);
}

#[test]
fn too_little_work_gets_an_empty_answer() {
    let chain = HeaderChain::new(Network::Mainnet);
    let (got, sent) = answer_getheaders(&chain, &[unknown(1)], zero()).expect("answered");
    assert!(got.is_empty());
    assert_eq!(sent, chain.tip().hash);
}

fn new_blocks(headers: &[Header], from: usize) -> Vec<BlockHash> {
    hashes(&headers[from..])
}

#[test]
fn a_sendheaders_peer_gets_the_headers_it_lacks() {
    let (chain, headers) = regtest_chain(30);
    let h = hashes(&headers);
    let mut peer = ServePeer { prefers_headers: true, best_known: None, best_sent: Some(h[26]) };
    // Announced: the last four; the peer has the first of them.
    let got = announce(&chain, &mut peer, &new_blocks(&headers, 26));
    assert_eq!(got, Announce::Headers(headers[27..].to_vec()));
    assert_eq!(peer.best_sent, Some(h[29]));
    // Again: it has them all now.
    assert_eq!(announce(&chain, &mut peer, &new_blocks(&headers, 26)), Announce::Nothing);
}

#[test]
fn other_peers_get_an_inv_of_the_tip_unless_they_have_it() {
    let (chain, headers) = regtest_chain(30);
    let h = hashes(&headers);
    let mut peer = ServePeer { prefers_headers: false, best_known: Some(h[20]), best_sent: None };
    assert_eq!(announce(&chain, &mut peer, &new_blocks(&headers, 27)), Announce::Inv(h[29]));
    peer.best_known = Some(h[29]);
    assert_eq!(announce(&chain, &mut peer, &new_blocks(&headers, 27)), Announce::Nothing);
    assert_eq!(announce(&chain, &mut peer, &[]), Announce::Nothing);
}

#[test]
fn headers_that_would_not_connect_or_are_too_many_fall_back_to_inv() {
    let (chain, headers) = regtest_chain(30);
    let h = hashes(&headers);
    // The peer has nothing near: the first new header's parent is unknown to it.
    let mut far = ServePeer { prefers_headers: true, best_known: Some(h[5]), best_sent: None };
    assert_eq!(announce(&chain, &mut far, &new_blocks(&headers, 27)), Announce::Inv(h[29]));
    assert_eq!(far.best_sent, None);
    // More than eight at once.
    let mut near = ServePeer { prefers_headers: true, best_known: Some(h[21]), best_sent: None };
    assert_eq!(announce(&chain, &mut near, &new_blocks(&headers, 21)), Announce::Inv(h[29]));
    // Eight is fine.
    assert_eq!(
        announce(&chain, &mut near, &new_blocks(&headers, 22)),
        Announce::Headers(headers[22..].to_vec())
    );
}

#[test]
fn announcements_after_a_reorg_follow_cores_rules() {
    let (mut chain, headers) = regtest_chain(30);
    let h = hashes(&headers);
    // A longer branch from height 25 takes over.
    let fork = build(&headers[24], 8, 9);
    let c = chain.connect(&fork, NOW).expect("fork connects");
    assert!(c.is_reorg());
    let new: Vec<BlockHash> = c.connected.iter().map(|(hash, _)| *hash).collect();
    // The peer had the old tip: the fork point (height 25) is its ancestor, so the branch
    // connects and goes out as headers.
    let mut peer = ServePeer { prefers_headers: true, best_known: Some(h[29]), best_sent: None };
    assert_eq!(announce(&chain, &mut peer, &new), Announce::Headers(fork.clone()));
    // Stale hashes that left the best chain: inv of the last one (Core only logs that).
    let mut other = ServePeer { prefers_headers: true, best_known: Some(h[20]), best_sent: None };
    assert_eq!(announce(&chain, &mut other, &new_blocks(&headers, 27)), Announce::Inv(h[29]));
    // The peer's best known header on the old branch: the common part counts as known.
    assert!(peer_has_header(&chain, &other, h[20], 21));
    let on_old = ServePeer { prefers_headers: true, best_known: Some(h[29]), best_sent: None };
    assert!(peer_has_header(&chain, &on_old, h[24], 25));
    assert!(!peer_has_header(&chain, &on_old, fork[0].block_hash(), 26));
}
