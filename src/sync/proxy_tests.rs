//! The block proxy's bounds and answers.

use bitcoin::hashes::Hash;

use super::*;

fn hash(n: u32) -> BlockHash {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_le_bytes());
    BlockHash::from_byte_array(b)
}

fn peer(n: u64) -> PeerId {
    PeerId(n)
}

fn block() -> Arc<Block> {
    Arc::new(bitcoin::constants::genesis_block(bitcoin::Network::Regtest))
}

fn drain(p: &mut BlockProxy) -> Vec<ProxyAction> {
    std::iter::from_fn(|| p.poll_action()).collect()
}

fn fetches(actions: &[ProxyAction]) -> Vec<BlockHash> {
    actions
        .iter()
        .filter_map(|a| match a {
            ProxyAction::Fetch { hash, .. } => Some(*hash),
            _ => None,
        })
        .collect()
}

fn all(_: &BlockHash) -> bool {
    true
}

#[test]
fn fifty_thousand_requests_fetch_sixteen_at_a_time() {
    let mut p = BlockProxy::default();
    let items: Vec<Inventory> = (0..50_000).map(|i| Inventory::Block(hash(i))).collect();
    p.on_getdata(peer(1), &items, all);
    let first = drain(&mut p);
    assert_eq!(fetches(&first), (0..16).map(hash).collect::<Vec<_>>());
    assert_eq!(first.len(), 16, "nothing else: no notfound, no sends");
    // Each delivery starts the next one, in order.
    p.on_fetched(hash(0), Some(block()));
    let next = drain(&mut p);
    assert!(matches!(&next[0], ProxyAction::Send { peer: q, form: Form::Block, .. } if *q == peer(1)));
    assert_eq!(fetches(&next), vec![hash(16)]);
    assert_eq!(p.fetching(), 16);
    // More than one getdata's worth waiting (49,983 wait now): the excess is refused.
    let more: Vec<Inventory> = (100_000..100_100).map(|i| Inventory::WitnessBlock(hash(i))).collect();
    p.on_getdata(peer(1), &more, all);
    assert_eq!(drain(&mut p), vec![ProxyAction::NotFound { peer: peer(1), items: more[17..].to_vec() }]);
}

#[test]
fn all_peers_together_stay_under_the_upstream_cap() {
    let mut p = BlockProxy::default();
    for n in 0..10u64 {
        let items: Vec<Inventory> = (0..16).map(|i| Inventory::Block(hash(n as u32 * 100 + i))).collect();
        p.on_getdata(peer(n), &items, all);
    }
    assert_eq!(fetches(&drain(&mut p)).len(), MAX_UPSTREAM_FETCHES);
    p.on_fetched(hash(0), None);
    let after = drain(&mut p);
    assert_eq!(fetches(&after).len(), 1, "one ended, one more starts");
    assert!(after.contains(&ProxyAction::NotFound { peer: peer(0), items: vec![Inventory::Block(hash(0))] }));
}

#[test]
fn one_block_is_fetched_once_for_every_peer_that_wants_it() {
    let mut p = BlockProxy::default();
    p.on_getdata(peer(1), &[Inventory::Block(hash(5))], all);
    p.on_getdata(peer(2), &[Inventory::WitnessBlock(hash(5))], all);
    assert_eq!(fetches(&drain(&mut p)), vec![hash(5)]);
    p.on_fetched(hash(5), Some(block()));
    let sent = drain(&mut p);
    assert!(sent.contains(&ProxyAction::Send { peer: peer(1), block: block(), form: Form::Block }));
    assert!(sent.contains(&ProxyAction::Send { peer: peer(2), block: block(), form: Form::Witness }));
    // Now cached: a third peer is answered at once.
    p.on_getdata(peer(3), &[Inventory::Block(hash(5))], all);
    assert_eq!(drain(&mut p), vec![ProxyAction::Send { peer: peer(3), block: block(), form: Form::Block }]);
}

#[test]
fn blocks_off_the_best_chain_and_other_items_are_ignored() {
    let mut p = BlockProxy::default();
    let txid = bitcoin::Txid::from_byte_array([1; 32]);
    p.on_getdata(peer(1), &[Inventory::Block(hash(1)), Inventory::Transaction(txid)], |_| false);
    assert_eq!(drain(&mut p), vec![]);
}

#[test]
fn a_departed_peer_gets_nothing_and_frees_its_share() {
    let mut p = BlockProxy::default();
    let items: Vec<Inventory> = (0..20).map(|i| Inventory::Block(hash(i))).collect();
    p.on_getdata(peer(1), &items, all);
    assert_eq!(fetches(&drain(&mut p)).len(), 16);
    p.peer_gone(peer(1));
    p.on_fetched(hash(0), Some(block()));
    assert_eq!(drain(&mut p), vec![], "nothing sent, nothing more fetched");
}

fn filtered(n: u32) -> Inventory {
    Inventory::Unknown { inv_type: MSG_FILTERED_BLOCK, hash: hash(n).to_byte_array() }
}

#[test]
fn filtered_blocks_share_the_fetch_and_the_bounds_and_go_out_whole() {
    let mut p = BlockProxy::default();
    p.on_getdata(peer(1), &[filtered(5)], all);
    p.on_getdata(peer(2), &[Inventory::Block(hash(5))], all);
    assert_eq!(fetches(&drain(&mut p)), vec![hash(5)], "one fetch for both forms");
    p.on_fetched(hash(5), Some(block()));
    let sent = drain(&mut p);
    assert!(sent.contains(&ProxyAction::Send { peer: peer(1), block: block(), form: Form::Filtered }));
    assert!(sent.contains(&ProxyAction::Send { peer: peer(2), block: block(), form: Form::Block }));
    // Cached now: answered at once, in the order asked.
    p.on_getdata(peer(3), &[filtered(5), Inventory::Block(hash(5))], all);
    assert_eq!(
        drain(&mut p),
        vec![
            ProxyAction::Send { peer: peer(3), block: block(), form: Form::Filtered },
            ProxyAction::Send { peer: peer(3), block: block(), form: Form::Block },
        ]
    );
    // A block no upstream peer delivered: `notfound` with the item as asked.
    p.on_getdata(peer(1), &[filtered(6)], all);
    assert_eq!(fetches(&drain(&mut p)), vec![hash(6)]);
    p.on_fetched(hash(6), None);
    assert_eq!(drain(&mut p), vec![ProxyAction::NotFound { peer: peer(1), items: vec![filtered(6)] }]);
    // Filtered requests count against the same per-peer limit.
    let many: Vec<Inventory> = (100..150).map(filtered).collect();
    p.on_getdata(peer(4), &many, all);
    assert_eq!(fetches(&drain(&mut p)).len(), MAX_BLOCKS_IN_TRANSIT_PER_PEER);
}
