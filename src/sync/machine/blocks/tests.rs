use super::*;
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash as _;
use bitcoin::pow::CompactTarget;
use bitcoin::TxMerkleNode;

use crate::Network;

const UNIX: u64 = 1_700_000_000;
const DELAY: Duration = Duration::from_secs(5);

/// `n` regtest headers on top of `prev`; `salt` makes branches differ.
fn mine_on(prev: &Header, n: usize, salt: u8) -> Vec<Header> {
    let mut out: Vec<Header> = Vec::new();
    let mut parent = *prev;
    for _ in 0..n {
        let mut h = Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: parent.block_hash(),
            merkle_root: TxMerkleNode::from_byte_array([salt; 32]),
            time: parent.time + 1,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        };
        while h.validate_pow(h.target()).is_err() {
            h.nonce += 1;
        }
        parent = h;
        out.push(h);
    }
    out
}

fn genesis() -> Header {
    bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header
}

/// A chain of `n` headers on genesis, and those headers.
fn chain(n: usize) -> (HeaderChain, Vec<Header>) {
    let mut c = HeaderChain::new(Network::Regtest);
    let headers = mine_on(&genesis(), n, 1);
    c.connect(&headers, UNIX).unwrap();
    (c, headers)
}

fn block(h: &Header) -> Arc<Block> {
    Arc::new(Block { header: *h, txdata: Vec::new() })
}

fn cursor_at(h: &Header, height: u32) -> Cursor {
    Cursor { hash: h.block_hash(), height }
}

fn actions(f: &mut BlockFeed) -> Vec<FeedAction> {
    std::iter::from_fn(|| f.poll_action()).collect()
}

fn fetched(a: &[FeedAction]) -> Vec<u32> {
    a.iter()
        .filter_map(|x| match x {
            FeedAction::Fetch { height, .. } => Some(*height),
            _ => None,
        })
        .collect()
}

fn delivered(a: &[FeedAction]) -> Vec<(BlockHash, u32)> {
    a.iter()
        .filter_map(|x| match x {
            FeedAction::Deliver { hash, height, .. } => Some((*hash, *height)),
            _ => None,
        })
        .collect()
}

fn undone(a: &[FeedAction]) -> Vec<(BlockHash, u32)> {
    a.iter()
        .filter_map(|x| match x {
            FeedAction::Disconnected { hash, height, .. } => Some((*hash, *height)),
            _ => None,
        })
        .collect()
}

/// Answers every fetch in `a` (in reverse, to check the ordering) from `headers` (index =
/// height - 1).
fn answer_all(f: &mut BlockFeed, now: Instant, c: &HeaderChain, headers: &[Header], a: &[FeedAction]) {
    for x in a.iter().rev() {
        if let FeedAction::Fetch { hash, height, .. } = x {
            let h = &headers[*height as usize - 1];
            assert_eq!(h.block_hash(), *hash);
            f.on_block(now, c, *hash, block(h), PeerId(1));
        }
    }
}

#[test]
fn without_a_cursor_delivery_starts_at_the_tip_once_synced() {
    let (c, h) = chain(5);
    let now = Instant::now();
    let mut f = BlockFeed::new(None, DELAY);
    f.update(now, &c, false, None);
    assert!(actions(&mut f).is_empty(), "nothing before the headers are synced");
    f.update(now, &c, true, None);
    assert_eq!(actions(&mut f), vec![FeedAction::Save(cursor_at(&h[4], 5))]);
    assert_eq!(f.cursor(), Some(cursor_at(&h[4], 5)));
}

#[test]
fn from_a_cursor_every_block_is_delivered_in_order_within_a_window() {
    let (c, h) = chain(40);
    let now = Instant::now();
    let mut f = BlockFeed::new(Some(cursor_at(&h[2], 3)), DELAY);
    f.update(now, &c, false, None);
    assert!(actions(&mut f).is_empty(), "no fetching before the headers are synced");
    f.update(now, &c, true, Some(PeerId(7)));
    let a = actions(&mut f);
    assert_eq!(fetched(&a), (4..4 + BLOCK_WINDOW).collect::<Vec<_>>());
    assert!(matches!(a[0], FeedAction::Fetch { preferred: Some(PeerId(7)), .. }));
    let mut all = Vec::new();
    let mut pending = a;
    while !pending.is_empty() {
        let mut next = Vec::new();
        for x in pending.iter().rev() {
            if let FeedAction::Fetch { hash, height, .. } = x {
                f.on_block(now, &c, *hash, block(&h[*height as usize - 1]), PeerId(1));
                next.extend(actions(&mut f));
            }
        }
        let got = delivered(&next);
        // The consumer handles each block; its position is saved.
        for &(hash, height) in &got {
            f.on_consumed(now, &c, Cursor { hash, height });
            let a = actions(&mut f);
            assert_eq!(a[0], FeedAction::Save(Cursor { hash, height }));
            next.extend(a);
        }
        all.extend(got);
        assert!(f.in_flight.len() + f.ready.len() <= BLOCK_WINDOW as usize);
        pending = next;
    }
    let expected: Vec<_> = (4..=40).map(|i| (h[i as usize - 1].block_hash(), i)).collect();
    assert_eq!(all, expected);
    assert_eq!(f.cursor(), Some(cursor_at(&h[39], 40)));
}

#[test]
fn a_reorg_undoes_delivered_blocks_newest_first_then_delivers_the_new_branch() {
    let (mut c, h) = chain(5);
    let now = Instant::now();
    let mut f = BlockFeed::new(Some(cursor_at(&h[1], 2)), DELAY);
    f.update(now, &c, true, None);
    let a = actions(&mut f);
    answer_all(&mut f, now, &c, &h, &a);
    assert_eq!(delivered(&actions(&mut f)).len(), 3);
    // A longer branch from height 2 wins.
    let b = mine_on(&h[1], 4, 2);
    c.connect(&b, UNIX).unwrap();
    f.update(now, &c, true, None);
    let a = actions(&mut f);
    let expected: Vec<_> = (3..=5).rev().map(|i| (h[i - 1].block_hash(), i as u32)).collect();
    assert_eq!(undone(&a), expected, "newest first");
    let parents: Vec<_> = a
        .iter()
        .filter_map(|x| match x {
            FeedAction::Disconnected { parent, .. } => Some(*parent),
            _ => None,
        })
        .collect();
    assert_eq!(parents, vec![cursor_at(&h[3], 4), cursor_at(&h[2], 3), cursor_at(&h[1], 2)]);
    assert!(!a.iter().any(|x| matches!(x, FeedAction::Save(_))), "saved once consumers handled it");
    assert_eq!(fetched(&a), vec![3, 4, 5, 6]);
    let best: Vec<Header> = h[..2].iter().chain(&b).copied().collect();
    answer_all(&mut f, now, &c, &best, &a);
    let got = delivered(&actions(&mut f));
    assert_eq!(got, (3..=6).map(|i| (best[i - 1].block_hash(), i as u32)).collect::<Vec<_>>());
}

#[test]
fn a_reorg_while_stopped_is_undone_from_the_saved_cursor_before_syncing() {
    // The stored chain already switched to branch B (the header sync ran) and the saved cursor
    // is on branch A's tip.
    let (mut c, a) = chain(6);
    let b = mine_on(&a[2], 7, 3);
    c.connect(&b, UNIX).unwrap();
    let now = Instant::now();
    let mut f = BlockFeed::new(Some(cursor_at(&a[5], 6)), DELAY);
    f.update(now, &c, false, None);
    let x = actions(&mut f);
    let expected: Vec<_> = (4..=6).rev().map(|i| (a[i - 1].block_hash(), i as u32)).collect();
    assert_eq!(undone(&x), expected);
    assert!(fetched(&x).is_empty(), "forward only once synced");
    f.update(now, &c, true, None);
    assert_eq!(fetched(&actions(&mut f)), (4..=10).collect::<Vec<_>>());
}

#[test]
fn blocks_undelivered_before_a_reorg_are_not_undone_and_stale_replies_are_ignored() {
    let (mut c, h) = chain(4);
    let now = Instant::now();
    let mut f = BlockFeed::new(Some(cursor_at(&h[1], 2)), DELAY);
    f.update(now, &c, true, None);
    let first = actions(&mut f);
    assert_eq!(fetched(&first), vec![3, 4]);
    let b = mine_on(&h[1], 3, 2);
    c.connect(&b, UNIX).unwrap();
    f.update(now, &c, true, None);
    let a = actions(&mut f);
    assert!(undone(&a).is_empty(), "3 and 4 were never delivered");
    assert_eq!(fetched(&a), vec![3, 4, 5]);
    // The old branch's blocks arrive late: ignored.
    answer_all(&mut f, now, &c, &h, &first);
    assert!(delivered(&actions(&mut f)).is_empty());
    assert_eq!(f.cursor(), Some(cursor_at(&h[1], 2)));
}

#[test]
fn a_failed_block_is_reported_once_and_retried_after_the_delay() {
    let (c, h) = chain(3);
    let now = Instant::now();
    let mut f = BlockFeed::new(Some(cursor_at(&h[1], 2)), DELAY);
    f.update(now, &c, true, None);
    assert_eq!(fetched(&actions(&mut f)), vec![3]);
    let hash = h[2].block_hash();
    f.on_failure(now, hash, "not found".into());
    let a = actions(&mut f);
    assert_eq!(a, vec![FeedAction::Failed { hash, height: 3, error: "not found".into() }]);
    f.update(now + DELAY / 2, &c, true, None);
    assert!(actions(&mut f).is_empty(), "not before the delay");
    f.update(now + DELAY, &c, true, None);
    assert_eq!(fetched(&actions(&mut f)), vec![3]);
    f.on_failure(now + DELAY, hash, "not found".into());
    assert!(actions(&mut f).is_empty(), "reported once");
    f.update(now + DELAY * 2, &c, true, None);
    actions(&mut f);
    f.on_block(now + DELAY * 2, &c, hash, block(&h[2]), PeerId(2));
    assert_eq!(delivered(&actions(&mut f)), vec![(hash, 3)]);
}

#[test]
fn a_cursor_missing_from_the_synced_chain_restarts_at_the_tip() {
    let (c, h) = chain(3);
    let now = Instant::now();
    let lost = Cursor { hash: BlockHash::all_zeros(), height: 9 };
    let mut f = BlockFeed::new(Some(lost), DELAY);
    f.update(now, &c, false, None);
    assert!(actions(&mut f).is_empty(), "the header sync may still bring it");
    f.update(now, &c, true, None);
    let tip = cursor_at(&h[2], 3);
    assert_eq!(actions(&mut f), vec![FeedAction::Lost(lost), FeedAction::Save(tip)]);
}

#[test]
fn a_slow_consumer_holds_fetching_to_the_window() {
    let (c, h) = chain(60);
    let now = Instant::now();
    let mut f = BlockFeed::new(Some(cursor_at(&h[0], 1)), DELAY);
    f.update(now, &c, true, None);
    let a = actions(&mut f);
    answer_all(&mut f, now, &c, &h, &a);
    let a = actions(&mut f);
    assert_eq!(delivered(&a).len(), BLOCK_WINDOW as usize);
    assert!(fetched(&a).is_empty(), "nothing handled yet: nothing more fetched");
    f.update(now, &c, true, None);
    assert!(actions(&mut f).is_empty());
    // The consumer handled two blocks: two more heights open.
    f.on_consumed(now, &c, cursor_at(&h[2], 3));
    let a = actions(&mut f);
    assert_eq!(a[0], FeedAction::Save(cursor_at(&h[2], 3)));
    assert_eq!(fetched(&a), vec![BLOCK_WINDOW + 2, BLOCK_WINDOW + 3]);
}
