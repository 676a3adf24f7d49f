use super::*;
use bitcoin::block::Version;
use bitcoin::hashes::Hash as _;
use bitcoin::pow::CompactTarget;
use bitcoin::TxMerkleNode;

use crate::Network;

const UNIX: u64 = 1_700_000_000;

/// `n` regtest headers on top of `prev`, with valid proof of work; `salt` makes branches differ.
fn mine_on(prev: &Header, n: usize, salt: u32) -> Vec<Header> {
    let mut out: Vec<Header> = Vec::new();
    let mut parent = *prev;
    for _ in 0..n {
        let mut h = Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: parent.block_hash(),
            merkle_root: TxMerkleNode::from_byte_array([salt as u8; 32]),
            time: parent.time + 1,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: salt.wrapping_mul(1_000_003),
        };
        while h.validate_pow(h.target()).is_err() {
            h.nonce = h.nonce.wrapping_add(1);
        }
        parent = h;
        out.push(h);
    }
    out
}

fn genesis() -> Header {
    bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header
}

fn sync() -> (HeaderSync, Instant) {
    let now = Instant::now();
    (HeaderSync::new(HeaderChain::new(Network::Regtest), SyncConfig::default(), now), now)
}

fn actions(s: &mut HeaderSync) -> Vec<SyncAction> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn requests(actions: &[SyncAction]) -> Vec<Option<PeerId>> {
    actions
        .iter()
        .filter_map(
            |a| if let SyncAction::GetHeaders { preferred, .. } = a { Some(*preferred) } else { None },
        )
        .collect()
}

#[test]
fn asks_the_peer_claiming_most_and_follows_full_batches_until_synced() {
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 2_100, 1);
    s.peer_ready(now, PeerId(1), 50);
    s.peer_ready(now, PeerId(2), 2_100);
    let a = actions(&mut s);
    // One request at a time: the first peer triggers it, the second must wait for its answer.
    assert_eq!(requests(&a), vec![Some(PeerId(1))]);
    s.on_answer(now, UNIX, PeerId(1), &chain[..50]);
    let a = actions(&mut s);
    assert!(matches!(&a[0], SyncAction::Store(h) if h.len() == 50 && h.hashes().len() == 50));
    assert!(matches!(&a[1], SyncAction::TipChanged { tip, .. } if tip.height == 50));
    assert_eq!(requests(&a), vec![Some(PeerId(2))], "peer 2 claims more");
    assert!(!s.is_synced());
    s.on_answer(now, UNIX, PeerId(2), &chain[49..2_049]);
    let a = actions(&mut s);
    assert_eq!(requests(&a), vec![Some(PeerId(2))], "a full answer means more is available");
    s.on_answer(now, UNIX, PeerId(2), &chain[2_048..]);
    let a = actions(&mut s);
    assert!(requests(&a).is_empty());
    assert!(matches!(a.last(), Some(SyncAction::Synced(tip)) if tip.height == 2_100));
    assert!(s.is_synced());
}

#[test]
fn locator_starts_at_the_tips_parent_so_an_up_to_date_peer_answers() {
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 5, 2);
    s.peer_ready(now, PeerId(1), 5);
    actions(&mut s);
    s.on_answer(now, UNIX, PeerId(1), &chain);
    actions(&mut s);
    s.peer_ready(now, PeerId(2), 9);
    let a = actions(&mut s);
    let Some(SyncAction::GetHeaders { locator, .. }) = a.first() else { panic!("{a:?}") };
    assert_eq!(locator[0], chain[3].block_hash());
}

#[test]
fn invalid_headers_punish_the_sender_and_unconnected_announcements_trigger_a_request() {
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 3, 3);
    s.peer_ready(now, PeerId(1), 3);
    actions(&mut s);
    let mut bad = chain.clone();
    bad[1].bits = CompactTarget::from_consensus(0x1d00_ffff); // not regtest's required bits
    s.on_answer(now, UNIX, PeerId(1), &bad);
    let a = actions(&mut s);
    assert!(a.iter().any(|x| matches!(x, SyncAction::Punish { peer, reason: HeaderError::BadProofOfWork { .. } | HeaderError::BadDifficulty { .. } } if *peer == PeerId(1))), "{a:?}");
    // Like Core's CheckHeadersPoW, a message with a bad header is rejected whole.
    assert_eq!(s.chain().height(), 0);

    // An announcement whose parent we lack is not punished: we ask the announcer.
    s.peer_ready(now, PeerId(2), 0);
    actions(&mut s);
    s.on_headers(now, UNIX, PeerId(2), &chain[2..]);
    let a = actions(&mut s);
    assert!(!a.iter().any(|x| matches!(x, SyncAction::Punish { .. })));
    assert_eq!(requests(&a), vec![Some(PeerId(2))]);
}

#[test]
fn failures_back_off_and_the_stale_tip_watchdog_rotates_a_peer_that_does_not_deliver() {
    let (mut s, now) = sync();
    s.peer_ready(now, PeerId(1), 10);
    assert_eq!(requests(&actions(&mut s)), vec![Some(PeerId(1))]);
    s.on_failure(now);
    s.tick(now + Duration::from_secs(1));
    assert!(requests(&actions(&mut s)).is_empty(), "retry waits");
    s.tick(now + DEFAULT_RETRY_DELAY);
    // Nobody answered yet, so we still ask, though peer 1 lost its claim.
    assert_eq!(requests(&actions(&mut s)), vec![Some(PeerId(1))]);
    // Peer 2 claims more and never answers: the watchdog drops it, not the others.
    s.peer_ready(now, PeerId(2), 10);
    actions(&mut s);
    s.tick(now + DEFAULT_STALE_TIP_TIMEOUT + Duration::from_secs(1));
    let a = actions(&mut s);
    assert!(a.contains(&SyncAction::Rotate { peer: PeerId(2) }), "{a:?}");
    assert!(!a.contains(&SyncAction::Rotate { peer: PeerId(1) }));
}

#[test]
fn an_inflated_start_height_is_dropped_once_its_peer_fails_to_deliver() {
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 5, 7);
    s.peer_ready(now, PeerId(1), i32::MAX);
    assert_eq!(requests(&actions(&mut s)), vec![Some(PeerId(1))]);
    s.peer_ready(now, PeerId(2), 5);
    s.on_failure(now);
    s.tick(now + DEFAULT_RETRY_DELAY);
    assert_eq!(requests(&actions(&mut s)), vec![Some(PeerId(2))], "the liar lost its claim");
    s.on_answer(now, UNIX, PeerId(2), &chain);
    let a = actions(&mut s);
    assert!(matches!(a.last(), Some(SyncAction::Synced(t)) if t.height == 5), "{a:?}");
}

#[test]
fn a_competing_branch_longer_than_one_message_is_followed_to_a_reorg() {
    let (mut s, now) = sync();
    let a = mine_on(&genesis(), 3_000, 8);
    let b = mine_on(&a[99], 5_100, 9); // forks at height 100, reaches 5,200
    s.peer_ready(now, PeerId(1), 3_000);
    actions(&mut s);
    s.on_answer(now, UNIX, PeerId(1), &a[..2_000]);
    actions(&mut s);
    s.on_answer(now, UNIX, PeerId(1), &a[1_999..]);
    actions(&mut s);
    assert_eq!(s.chain().height(), 3_000);
    s.peer_ready(now, PeerId(2), 5_200);
    let acts = actions(&mut s);
    assert_eq!(requests(&acts), vec![Some(PeerId(2))]);
    // Peer 2 answers from the fork point: 2,000 headers that land on a side branch.
    s.on_answer(now, UNIX, PeerId(2), &b[..2_000]);
    let acts = actions(&mut s);
    let Some(SyncAction::GetHeaders { locator, .. }) =
        acts.iter().find(|x| matches!(x, SyncAction::GetHeaders { .. }))
    else {
        panic!("a full answer asks again: {} actions", acts.len())
    };
    assert_eq!(locator[0], b[1_999].block_hash(), "continuing on the branch, from its end: nothing twice");
    s.on_answer(now, UNIX, PeerId(2), &b[2_000..4_000]);
    let acts = actions(&mut s);
    assert!(
        acts.iter()
            .any(|x| matches!(x, SyncAction::TipChanged { disconnected, .. } if !disconnected.is_empty())),
        "reorg"
    );
    s.on_answer(now, UNIX, PeerId(2), &b[4_000..]);
    let acts = actions(&mut s);
    assert!(matches!(acts.last(), Some(SyncAction::Synced(t)) if t.height == 5_200));
}

#[test]
fn a_repeated_full_answer_does_not_loop() {
    let (mut s, now) = sync();
    let a = mine_on(&genesis(), 2_000, 10);
    s.peer_ready(now, PeerId(1), 5_000);
    actions(&mut s);
    s.on_answer(now, UNIX, PeerId(1), &a);
    assert_eq!(requests(&actions(&mut s)).len(), 1);
    s.on_answer(now, UNIX, PeerId(1), &a);
    let acts = actions(&mut s);
    assert!(requests(&acts).is_empty(), "no progress, no new request");
    assert!(matches!(acts.last(), Some(SyncAction::Synced(t)) if t.height == 2_000));
}

#[test]
fn a_fork_with_more_work_is_followed() {
    let (mut s, now) = sync();
    let a = mine_on(&genesis(), 5, 5);
    let b = mine_on(&genesis(), 7, 6);
    s.peer_ready(now, PeerId(1), 5);
    actions(&mut s);
    s.on_answer(now, UNIX, PeerId(1), &a);
    actions(&mut s);
    s.on_headers(now, UNIX, PeerId(2), &b);
    let acts = actions(&mut s);
    let change = acts.iter().find_map(|x| match x {
        SyncAction::TipChanged { connected, disconnected, tip, .. } => {
            Some((connected.len(), disconnected.len(), tip.hash))
        }
        _ => None,
    });
    assert_eq!(change, Some((7, 5, b[6].block_hash())));
}

#[test]
fn an_answer_from_another_peer_means_the_preferred_one_did_not_deliver() {
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 5, 11);
    s.peer_ready(now, PeerId(1), 100);
    s.peer_ready(now, PeerId(2), 5);
    assert_eq!(requests(&actions(&mut s)), vec![Some(PeerId(1))]);
    // The group routed it to peer 2, which has 5.
    s.on_answer(now, UNIX, PeerId(2), &chain);
    let a = actions(&mut s);
    assert!(requests(&a).is_empty(), "no immediate re-request to the silent peer");
    assert!(matches!(a.last(), Some(SyncAction::Synced(t)) if t.height == 5));
}

#[test]
fn a_failed_request_never_declares_sync() {
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 2_000, 12);
    s.peer_ready(now, PeerId(1), 4_000);
    actions(&mut s);
    s.on_answer(now, UNIX, PeerId(1), &chain);
    actions(&mut s);
    s.on_failure(now);
    s.tick(now + DEFAULT_RETRY_DELAY);
    let a = actions(&mut s);
    assert!(!a.iter().any(|x| matches!(x, SyncAction::Synced(_))), "a timeout is not the tip");
    assert_eq!(requests(&a), vec![Some(PeerId(1))], "asked again");
    assert!(!s.is_synced());
}

#[test]
fn new_blocks_are_fetched_only_once_synced() {
    let now = Instant::now();
    let config = SyncConfig { fetch_blocks: true, ..SyncConfig::default() };
    let mut s = HeaderSync::new(HeaderChain::new(Network::Regtest), config, now);
    let chain = mine_on(&genesis(), 40, 13);
    s.peer_ready(now, PeerId(1), 20);
    actions(&mut s);
    s.on_answer(now, UNIX, PeerId(1), &chain[..20]);
    let a = actions(&mut s);
    assert!(
        !a.iter().any(|x| matches!(x, SyncAction::FetchBlocks { .. })),
        "the initial sync fetches nothing"
    );
    assert!(matches!(a.last(), Some(SyncAction::Synced(_))));
    s.on_headers(now, UNIX, PeerId(1), &chain[20..]);
    let fetch = actions(&mut s).into_iter().find_map(|x| match x {
        SyncAction::FetchBlocks { blocks, peer } => Some((blocks, peer)),
        _ => None,
    });
    let (blocks, peer) = fetch.expect("new blocks fetched");
    assert_eq!(peer, PeerId(1));
    // At most 16 per change: the last ones.
    assert_eq!(blocks.len(), MAX_BLOCKS_PER_TIP_CHANGE);
    assert_eq!(blocks.last(), Some(&(chain[39].block_hash(), 40)));
}

#[test]
fn the_next_batch_is_asked_for_before_this_one_is_checked() {
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 4_100, 20);
    s.peer_ready(now, PeerId(1), 4_100);
    actions(&mut s);
    s.receive(now, UNIX, PeerId(1), chain[..2_000].to_vec().into());
    let a = actions(&mut s);
    let [SyncAction::GetHeaders { locator, preferred }] = &a[..] else { panic!("{a:?}") };
    assert_eq!(*preferred, Some(PeerId(1)));
    assert_eq!(locator[0], chain[1_999].block_hash(), "from the batch's last header: nothing twice");
    assert_eq!(locator.last(), Some(&genesis().block_hash()));
    assert_eq!(s.chain().height(), 0, "not checked yet");
    s.settle();
    let a = actions(&mut s);
    assert!(matches!(&a[0], SyncAction::Store(h)
        if h.len() == 2_000 && h.hashes()[1_999] == chain[1_999].block_hash()));
    assert!(matches!(&a[1], SyncAction::TipChanged { tip, .. } if tip.height == 2_000));
    assert!(requests(&a).is_empty(), "already asked");
    // The answer from the last header: the next batch, no header twice.
    s.on_answer(now, UNIX, PeerId(1), &chain[2_000..4_000]);
    let a = actions(&mut s);
    assert!(
        matches!(&a[0], SyncAction::GetHeaders { locator, .. } if locator[0] == chain[3_999].block_hash())
    );
    s.on_answer(now, UNIX, PeerId(1), &chain[4_000..]);
    let a = actions(&mut s);
    assert!(matches!(a.last(), Some(SyncAction::Synced(t)) if t.height == 4_100));
}

#[test]
fn a_bad_pipelined_batch_is_punished_and_discarded() {
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 6_000, 21);
    s.peer_ready(now, PeerId(1), 6_000);
    s.peer_ready(now, PeerId(2), 6_000);
    actions(&mut s);
    let mut bad = chain[..2_000].to_vec();
    bad[1_500].bits = CompactTarget::from_consensus(0x1d00_ffff);
    s.receive(now, UNIX, PeerId(1), bad.into());
    assert_eq!(requests(&actions(&mut s)), vec![Some(PeerId(1))], "asked before checking");
    s.settle();
    let a = actions(&mut s);
    assert!(a.iter().any(|x| matches!(x, SyncAction::Punish { peer, .. } if *peer == PeerId(1))), "{a:?}");
    assert!(!a.iter().any(|x| matches!(x, SyncAction::Store(_))), "the whole message is rejected");
    assert_eq!(s.chain().height(), 0);
    // The answer to the request already sent (built on the discarded batch) arrives before the
    // punished peer is gone: it does not connect, nothing is stored, and the sync asks another
    // peer from what it holds.
    s.on_answer(now, UNIX, PeerId(1), &chain[2_000..4_000]);
    let a = actions(&mut s);
    assert!(!a.iter().any(|x| matches!(x, SyncAction::Store(_) | SyncAction::Punish { .. })), "{a:?}");
    let Some(SyncAction::GetHeaders { locator, preferred }) = a.last() else { panic!("{a:?}") };
    assert_eq!((*preferred, locator[0]), (Some(PeerId(2)), genesis().block_hash()));
}

#[test]
fn a_full_batch_reaching_the_peers_claim_is_confirmed_from_its_end_s_parent() {
    // bcoin sends nothing to a locator naming its tip: at the claimed height the sync asks from
    // the last header's parent, after checking the batch.
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 2_000, 22);
    s.peer_ready(now, PeerId(1), 2_000);
    actions(&mut s);
    s.receive(now, UNIX, PeerId(1), chain.clone().into());
    assert!(requests(&actions(&mut s)).is_empty());
    s.settle();
    let a = actions(&mut s);
    let Some(SyncAction::GetHeaders { locator, .. }) = a.last() else { panic!("{a:?}") };
    assert_eq!(locator[0], chain[1_998].block_hash());
}

#[test]
fn an_unsolicited_block_is_handled_as_cores_accept_block_header() {
    let (mut s, now) = sync();
    let chain = mine_on(&genesis(), 3, 4);
    s.peer_ready(now, PeerId(1), 0);
    s.on_answer(now, UNIX, PeerId(1), &chain[..1]);
    actions(&mut s);
    let held = s.chain().height();

    // Parent unknown: "prev-blk-not-found" (BLOCK_MISSING_PREV) → Misbehaving. The block is
    // dropped and no headers are asked for (Core asks only on `headers`/`cmpctblock`).
    s.peer_ready(now, PeerId(2), 0);
    actions(&mut s);
    let orphan = chain[2];
    s.on_block(now, UNIX, PeerId(2), orphan.block_hash(), &orphan);
    let a = actions(&mut s);
    assert_eq!(
        a,
        vec![SyncAction::PunishBlock {
            peer: PeerId(2),
            hash: orphan.block_hash(),
            prev: chain[1].block_hash()
        }]
    );
    assert_eq!(s.chain().height(), held);
    assert!(!s.chain().contains(&orphan.block_hash()));

    // A block we hold the header of is nothing new ("already known"), whoever sends it.
    s.on_block(now, UNIX, PeerId(1), chain[0].block_hash(), &chain[0]);
    assert_eq!(actions(&mut s), vec![]);

    // Parent known: its header is accepted as an announcement would be.
    s.on_block(now, UNIX, PeerId(1), chain[1].block_hash(), &chain[1]);
    let a = actions(&mut s);
    assert!(
        !a.iter().any(|x| matches!(x, SyncAction::Punish { .. } | SyncAction::PunishBlock { .. })),
        "{a:?}"
    );
    assert!(
        a.iter().any(|x| matches!(x, SyncAction::TipChanged { tip, .. } if tip.height == held + 1)),
        "{a:?}"
    );
    assert!(s.chain().contains(&chain[1].block_hash()));

    // A checkpoint's first header has no known parent, yet it is known itself.
    let start = crate::chain::Checkpoint { height: 100, header: chain[1] };
    let mut s = HeaderSync::new(
        HeaderChain::with_checkpoint(Network::Regtest, start).unwrap(),
        SyncConfig::default(),
        now,
    );
    s.on_block(now, UNIX, PeerId(3), chain[1].block_hash(), &chain[1]);
    assert_eq!(actions(&mut s), vec![]);
}
