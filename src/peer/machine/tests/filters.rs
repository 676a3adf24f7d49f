//! BIP37: filter messages, the loaded filter and what it lets through.

use super::*;

#[test]
fn bloom_messages_without_node_bloom_are_misbehaviour() {
    for msg in [Message::FilterClear, Message::MemPool] {
        let (mut m, t0) = ready_outbound();
        m.on_message(t0, &msg);
        let r = disconnect_reason(&drain(&mut m)).cloned().unwrap();
        assert_eq!(
            r,
            DisconnectReason::Misbehaving(Misbehavior::BloomNotOffered { command: msg.cmd().into() })
        );
    }
    // With NODE_BLOOM advertised they are ordinary messages.
    let nonces = NonceSet::default();
    let cfg = MachineConfig { services: ServiceFlags::BLOOM, ..config() };
    let mut m = PeerMachine::new(cfg, Link::Inbound, nonces, StdRng::seed_from_u64(9));
    let t0 = Instant::now();
    m.connected(t0, 0, 0, None);
    m.on_message(t0, &Message::Version(their_version(70016, 3)));
    m.on_message(t0, &Message::Verack);
    assert_eq!(m.on_message(t0, &Message::FilterClear), Verdict::Deliver);
}

/// An inbound peer that completed the handshake with relay=0, while we offer NODE_BLOOM.
fn ready_bloom_peer() -> (PeerMachine, Instant) {
    let cfg = MachineConfig { services: ServiceFlags::BLOOM, ..config() };
    let mut m = PeerMachine::new(cfg, Link::Inbound, NonceSet::default(), StdRng::seed_from_u64(9));
    let t0 = Instant::now();
    m.connected(t0, 0, 0, None);
    let mut v = their_version(70016, 3);
    v.relay = false;
    m.on_message(t0, &Message::Version(v));
    m.on_message(t0, &Message::Verack);
    drain(&mut m);
    assert_eq!(m.state(), PeerState::Ready);
    (m, t0)
}

fn paying(hash: [u8; 20]) -> std::sync::Arc<bitcoin::Transaction> {
    std::sync::Arc::new(bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn::default()],
        output: vec![bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(1_000),
            script_pubkey: bitcoin::ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(hash)),
        }],
    })
}

fn announced_txids(actions: &[Action]) -> Vec<bitcoin::Txid> {
    actions
        .iter()
        .filter_map(|a| if let Action::Send(Message::Inv(items)) = a { Some(items.clone()) } else { None })
        .flatten()
        .filter_map(|i| match i {
            Inventory::Transaction(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn a_loaded_filter_turns_relay_on_and_only_matching_transactions_are_announced() {
    let (mut m, t0) = ready_bloom_peer();
    let (wanted, other) = (paying([7; 20]), paying([8; 20]));
    // relay=0 and no filter: nothing is announced.
    m.queue_transactions(t0, std::slice::from_ref(&wanted));
    m.tick(t0 + Duration::from_secs(120));
    assert!(announced_txids(&drain(&mut m)).is_empty());

    let load = crate::wire::FilterLoad {
        filter: vec![0; 64],
        hash_funcs: 8,
        tweak: 11,
        flags: crate::wire::BloomFlags::None,
    };
    assert_eq!(m.on_message(t0, &Message::FilterLoad(load)), Verdict::Deliver);
    assert!(m.has_bloom_filter());
    let add = crate::wire::FilterAdd { data: vec![7; 20] };
    assert_eq!(m.on_message(t0, &Message::FilterAdd(add)), Verdict::Deliver);
    m.queue_transactions(t0, &[other.clone(), wanted.clone()]);
    // Plain announcements cannot be checked against the filter: not sent to a filtered peer.
    m.queue_inventory(
        t0,
        &[Announcement::Tx { txid: other.compute_txid(), wtxid: other.compute_wtxid(), fee_rate: None }],
    );
    m.tick(t0 + Duration::from_secs(240));
    assert_eq!(announced_txids(&drain(&mut m)), vec![wanted.compute_txid()]);

    // filterclear: everything again.
    m.on_message(t0, &Message::FilterClear);
    m.queue_transactions(t0, std::slice::from_ref(&other));
    m.tick(t0 + Duration::from_secs(360));
    assert_eq!(announced_txids(&drain(&mut m)), vec![other.compute_txid()]);
}

#[test]
fn oversized_filters_and_filteradd_without_a_filter_are_misbehaviour() {
    let big = crate::wire::FilterLoad {
        filter: vec![0; 36_001],
        hash_funcs: 1,
        tweak: 0,
        flags: crate::wire::BloomFlags::None,
    };
    let cases = [Message::FilterLoad(big), Message::FilterAdd(crate::wire::FilterAdd { data: vec![1; 10] })];
    for msg in cases {
        let (mut m, t0) = ready_bloom_peer();
        assert_eq!(m.on_message(t0, &msg), Verdict::Consumed);
        let r = disconnect_reason(&drain(&mut m)).cloned().unwrap();
        assert!(r.is_misbehavior(), "{r:?}");
    }
}
