use super::*;
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash as _;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Witness};

fn tx(n: u8, witness: bool) -> Arc<Transaction> {
    let mut w = Witness::new();
    if witness {
        w.push([n; 4]);
    }
    Arc::new(Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: w,
        }],
        output: vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: ScriptBuf::new() }],
    })
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ok_ids(answers: &[Answer<u32>]) -> Vec<u32> {
    answers.iter().filter(|(_, r)| r.is_ok()).map(|(w, _)| *w).collect()
}

#[test]
fn each_waiter_keeps_its_own_deadline() {
    // Two callers broadcast the same transaction, the second with a longer timeout: the first
    // caller's deadline must not fail the second (it used to fail every waiter of the txid).
    let t0 = Instant::now();
    let mut cache = Broadcasts::<u32>::default();
    let t = tx(1, false);
    let txid = t.compute_txid();
    assert_eq!(cache.admit(t.clone(), Origin::Ours, t0), Ok(true));
    assert!(cache.wait(&txid, 1, t0 + secs(1), 1, t0).is_empty());
    assert_eq!(cache.admit(t, Origin::Ours, t0), Ok(false));
    assert!(cache.wait(&txid, 1, t0 + secs(10), 2, t0).is_empty());

    let late = cache.expire_waiters(t0 + secs(1));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0], (1, Err(BroadcastError::Timeout { requested_by: 0, min_peers: 1 })));

    // The second caller is answered by success before its own deadline.
    let served = cache.get_data(PeerId(7), &[Inventory::Transaction(txid)]);
    assert_eq!(ok_ids(&served.answers), vec![2]);
    assert!(cache.expire_waiters(t0 + secs(10)).is_empty());
}

#[test]
fn a_waiter_times_out_at_its_deadline_with_the_count_so_far() {
    let t0 = Instant::now();
    let mut cache = Broadcasts::<u32>::default();
    let t = tx(2, false);
    let txid = t.compute_txid();
    cache.admit(t, Origin::Ours, t0).unwrap();
    assert!(cache.wait(&txid, 2, t0 + secs(5), 1, t0).is_empty());
    assert!(cache.get_data(PeerId(1), &[Inventory::Transaction(txid)]).answers.is_empty());
    assert!(cache.expire_waiters(t0 + secs(4)).is_empty());
    let late = cache.expire_waiters(t0 + secs(5));
    assert_eq!(late, vec![(1, Err(BroadcastError::Timeout { requested_by: 1, min_peers: 2 }))]);
}

#[test]
fn a_count_already_reached_answers_at_once_and_min_is_at_least_one() {
    let t0 = Instant::now();
    let mut cache = Broadcasts::<u32>::default();
    let t = tx(3, false);
    let txid = t.compute_txid();
    cache.admit(t, Origin::Ours, t0).unwrap();
    // min 0 means 1: nobody asked yet, so it waits.
    assert!(cache.wait(&txid, 0, t0 + secs(5), 1, t0).is_empty());
    let served = cache.get_data(PeerId(1), &[Inventory::Transaction(txid)]);
    assert_eq!(ok_ids(&served.answers), vec![1]);
    let now = cache.wait(&txid, 1, t0 + secs(5), 2, t0);
    assert_eq!(ok_ids(&now), vec![2]);
    let outcome = now[0].1.clone().unwrap();
    assert_eq!(outcome.requested_by, 1);
    assert_eq!(outcome.txid, txid);
}

#[test]
fn waiters_per_transaction_are_capped() {
    let t0 = Instant::now();
    let mut cache = Broadcasts::<u32>::default();
    let t = tx(4, false);
    let txid = t.compute_txid();
    cache.admit(t, Origin::Ours, t0).unwrap();
    for i in 0..MAX_WAITERS_PER_TX {
        assert!(cache.wait(&txid, 1, t0 + secs(5), i as u32, t0).is_empty());
    }
    assert_eq!(cache.wait(&txid, 1, t0 + secs(5), 999, t0), vec![(999, Err(BroadcastError::Busy))]);
}

#[test]
fn admission_is_bounded_and_makes_room_from_transactions_nobody_waits_for() {
    let t0 = Instant::now();
    let mut cache = Broadcasts::<u32>::default();
    let mut txids = Vec::new();
    for i in 0..MAX_BROADCASTS {
        let mut t = (*tx(5, false)).clone();
        t.lock_time = LockTime::from_consensus(i as u32);
        let t = Arc::new(t);
        txids.push(t.compute_txid());
        assert_eq!(cache.admit(t, Origin::Relayed, t0), Ok(true));
    }
    // Everyone waits on the first: full of waited-for transactions refuses.
    for txid in &txids {
        cache.wait(txid, 1, t0 + secs(60), 0, t0);
    }
    assert_eq!(cache.admit(tx(6, false), Origin::Ours, t0), Err(BroadcastError::Busy));
    assert_eq!(cache.len(), MAX_BROADCASTS);
    // Once the waiters are gone, a newcomer makes room (within the TTL).
    assert_eq!(cache.expire_waiters(t0 + secs(60)).len(), MAX_BROADCASTS);
    assert_eq!(cache.admit(tx(6, false), Origin::Ours, t0 + secs(61)), Ok(true));
    assert_eq!(cache.len(), 1);
}

#[test]
fn entries_expire_after_the_ttl_unless_someone_waits() {
    let t0 = Instant::now();
    let mut cache = Broadcasts::<u32>::default();
    let a = tx(7, false);
    let b = tx(8, false);
    cache.admit(a.clone(), Origin::Relayed, t0).unwrap();
    cache.admit(b.clone(), Origin::Ours, t0).unwrap();
    let deadline = t0 + BROADCAST_TTL + secs(10);
    cache.wait(&b.compute_txid(), 1, deadline, 1, t0 + secs(1));
    cache.expire(t0 + BROADCAST_TTL);
    assert!(cache.get(&a.compute_txid()).is_none());
    assert!(cache.get(&b.compute_txid()).is_some());
    assert_eq!(cache.expire_waiters(deadline).len(), 1);
    cache.expire(t0 + secs(1) + BROADCAST_TTL);
    assert!(cache.is_empty());
}

#[test]
fn getdata_serves_each_transaction_once_and_reports_the_missing() {
    let t0 = Instant::now();
    let mut cache = Broadcasts::<u32>::default();
    let plain = tx(9, false);
    let segwit = tx(10, true);
    cache.admit(plain.clone(), Origin::Ours, t0).unwrap();
    cache.admit(segwit.clone(), Origin::Ours, t0).unwrap();
    let unknown = Txid::from_byte_array([0xee; 32]);
    let block = Inventory::Block(BlockHash::all_zeros());
    let items = [
        Inventory::Transaction(plain.compute_txid()),
        Inventory::Transaction(plain.compute_txid()),
        Inventory::WTx(segwit.compute_wtxid()),
        Inventory::Transaction(unknown),
        block,
    ];
    let served = cache.get_data(PeerId(1), &items);
    assert_eq!(served.txs.len(), 2);
    assert_eq!(served.txs[1], *segwit);
    assert_eq!(served.not_found, vec![Inventory::Transaction(unknown)]);
    assert!(!served.stripped_segwit);

    // A segwit transaction asked for without witness is served stripped and does not count.
    cache.wait(&segwit.compute_txid(), 2, t0 + secs(5), 1, t0);
    let served = cache.get_data(PeerId(2), &[Inventory::Transaction(segwit.compute_txid())]);
    assert!(served.stripped_segwit);
    assert!(served.txs[0].input[0].witness.is_empty());
    assert!(served.answers.is_empty());
    let served = cache.get_data(PeerId(2), &[Inventory::WitnessTransaction(segwit.compute_txid())]);
    assert_eq!(ok_ids(&served.answers), vec![1]);
}

#[test]
fn a_block_confirms_and_stops_rebroadcasts_to_outbound_newcomers_only() {
    let t0 = Instant::now();
    let mut cache = Broadcasts::<u32>::default();
    let ours = tx(11, false);
    let relayed = tx(12, false);
    cache.admit(ours.clone(), Origin::Ours, t0).unwrap();
    cache.admit(relayed.clone(), Origin::Relayed, t0).unwrap();
    cache.announced(&ours.compute_txid(), 2);
    assert!(cache.for_newcomer(Link::Inbound, t0).is_empty());
    assert_eq!(cache.for_newcomer(Link::Outbound, t0), vec![ours.clone()]);
    cache.wait(&ours.compute_txid(), 5, t0 + secs(5), 1, t0);

    let block = Block {
        header: bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header,
        txdata: vec![(*ours).clone()],
    };
    let (confirmed, answers) = cache.confirm(&block);
    assert_eq!(confirmed, vec![ours.compute_txid()]);
    let outcome = answers[0].1.clone().unwrap();
    assert_eq!(outcome.announced_to, 3);
    assert_eq!(outcome.confirmed_in, Some(block.block_hash()));
    assert!(cache.for_newcomer(Link::Outbound, t0).is_empty());
    // Seen again in another block: nothing new.
    assert!(cache.confirm(&block).0.is_empty());
}
