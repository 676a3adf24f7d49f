//! Unit tests of the transaction request tracker, on the behaviours Core's
//! `txrequest_tests.cpp` scenarios check: delays, preference, one request at a time, moving on
//! after `notfound`/expiry, caps, disconnects, recently-seen.

use super::*;

const OUT: bool = true;
const IN: bool = false;

fn h(n: u32) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash[..4].copy_from_slice(&n.to_le_bytes());
    hash
}

fn p(n: u64) -> PeerId {
    PeerId(n)
}

fn tracker(peers: &[(u64, bool)]) -> TxRequestTracker {
    let mut t = TxRequestTracker::default();
    for &(id, preferred) in peers {
        t.peer_connected(p(id), preferred, false);
    }
    t
}

fn wants(t: &mut TxRequestTracker, now: Instant) -> Vec<(PeerId, Vec<[u8; 32]>)> {
    t.poll(now).into_iter().map(|(peer, w)| (peer, w.into_iter().map(|w| w.hash).collect())).collect()
}

#[test]
fn preferred_announcer_is_asked_at_once() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT)]);
    assert_eq!(t.announced(p(1), h(1), true, now), Announced::Tracked);
    assert_eq!(wants(&mut t, now), vec![(p(1), vec![h(1)])]);
    assert_eq!(t.in_flight(p(1)), 1);
    // One request at a time: a second poll asks nobody.
    assert!(wants(&mut t, now).is_empty());
}

#[test]
fn non_preferred_announcer_waits_two_seconds() {
    let now = Instant::now();
    let mut t = tracker(&[(1, IN)]);
    t.announced(p(1), h(1), true, now);
    assert!(wants(&mut t, now).is_empty());
    assert_eq!(t.next_due(now), Some(now + NONPREF_PEER_TX_DELAY));
    assert!(wants(&mut t, now + Duration::from_millis(1_999)).is_empty());
    assert_eq!(wants(&mut t, now + NONPREF_PEER_TX_DELAY), vec![(p(1), vec![h(1)])]);
}

#[test]
fn preferred_announcer_beats_an_earlier_inbound_one() {
    let now = Instant::now();
    let mut t = tracker(&[(1, IN), (2, OUT)]);
    t.announced(p(1), h(1), true, now);
    let later = now + Duration::from_secs(1);
    t.announced(p(2), h(1), true, later);
    assert_eq!(wants(&mut t, later), vec![(p(2), vec![h(1)])]);
    // The inbound announcement becomes ready, but the request is in flight: nobody else.
    assert!(wants(&mut t, now + Duration::from_secs(3)).is_empty());
}

#[test]
fn among_ready_announcers_preferred_then_first() {
    let now = Instant::now();
    let mut t = tracker(&[(1, IN), (2, IN), (3, OUT)]);
    t.announced(p(1), h(1), true, now);
    t.announced(p(2), h(1), true, now);
    t.announced(p(3), h(2), true, now);
    let ready = now + NONPREF_PEER_TX_DELAY;
    // Both inbound announcements are ready at once: the first announcer wins.
    let got = wants(&mut t, ready);
    assert!(got.contains(&(p(1), vec![h(1)])), "{got:?}");
    assert!(!got.iter().any(|(peer, _)| *peer == p(2)), "{got:?}");
}

#[test]
fn txid_announcements_wait_while_a_peer_relays_wtxids() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT)]);
    t.announced(p(1), h(1), false, now);
    assert_eq!(wants(&mut t, now), vec![(p(1), vec![h(1)])], "no wtxid peer: no delay");
    t.peer_connected(p(2), OUT, true);
    t.announced(p(1), h(2), false, now);
    t.announced(p(2), h(3), true, now);
    assert_eq!(wants(&mut t, now), vec![(p(2), vec![h(3)])]);
    assert_eq!(wants(&mut t, now + TXID_RELAY_DELAY), vec![(p(1), vec![h(2)])]);
    // Delays add up: an inbound txid announcement waits 4 s.
    t.peer_connected(p(3), IN, false);
    t.announced(p(3), h(4), false, now);
    assert!(wants(&mut t, now + Duration::from_millis(3_999)).is_empty());
    assert_eq!(wants(&mut t, now + Duration::from_secs(4)), vec![(p(3), vec![h(4)])]);
}

#[test]
fn notfound_moves_to_the_next_announcer_then_forgets() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT), (2, OUT)]);
    t.announced(p(1), h(1), true, now);
    t.announced(p(2), h(1), true, now);
    assert_eq!(wants(&mut t, now), vec![(p(1), vec![h(1)])]);
    // A notfound from a peer we did not ask changes nothing.
    t.not_found(p(2), h(1));
    assert!(wants(&mut t, now).is_empty());
    t.not_found(p(1), h(1));
    assert_eq!(t.in_flight(p(1)), 0);
    assert_eq!(wants(&mut t, now), vec![(p(2), vec![h(1)])]);
    t.not_found(p(2), h(1));
    assert!(wants(&mut t, now).is_empty());
    assert_eq!(t.len(), 0, "nobody left to ask: forgotten");
    assert_eq!(t.tracked(p(1)), 0);
}

#[test]
fn unanswered_request_moves_on_after_the_interval() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT), (2, OUT)]);
    t.announced(p(1), h(1), true, now);
    t.announced(p(2), h(1), true, now);
    assert_eq!(wants(&mut t, now), vec![(p(1), vec![h(1)])]);
    assert_eq!(t.next_due(now), Some(now + GETDATA_TX_INTERVAL));
    assert!(wants(&mut t, now + Duration::from_secs(59)).is_empty());
    let expiry = now + GETDATA_TX_INTERVAL;
    assert_eq!(wants(&mut t, expiry), vec![(p(2), vec![h(1)])]);
    assert_eq!(t.in_flight(p(1)), 0);
    // The slow peer is never asked again, even once the second one times out too.
    assert!(wants(&mut t, expiry + GETDATA_TX_INTERVAL).is_empty());
    assert_eq!(t.len(), 0);
}

#[test]
fn received_transaction_is_forgotten_and_not_fetched_again() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT), (2, OUT)]);
    t.announced(p(1), h(1), false, now);
    t.announced(p(2), h(1), false, now);
    wants(&mut t, now);
    assert!(t.received(h(1), h(100)));
    assert!(!t.received(h(1), h(100)), "the second copy is not new");
    assert_eq!((t.len(), t.in_flight(p(1)), t.tracked(p(2))), (0, 0, 0));
    assert_eq!(t.announced(p(2), h(1), false, now), Announced::Known);
    assert_eq!(t.announced(p(2), h(100), true, now), Announced::Known, "by wtxid too");
    assert!(wants(&mut t, now + GETDATA_TX_INTERVAL).is_empty());
}

#[test]
fn recently_seen_set_is_bounded() {
    let mut t = TxRequestTracker::new(4);
    t.peer_connected(p(1), OUT, false);
    for n in 0..3 {
        t.received(h(n), h(n));
    }
    let now = Instant::now();
    // 3 distinct hashes (txid = wtxid) fit; adding two more pushes out the oldest.
    assert_eq!(t.announced(p(1), h(0), false, now), Announced::Known);
    t.received(h(3), h(3));
    t.received(h(4), h(4));
    assert_eq!(t.announced(p(1), h(0), false, now), Announced::Tracked);
}

#[test]
fn duplicates_and_unknown_peers_are_ignored() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT)]);
    assert_eq!(t.announced(p(1), h(1), true, now), Announced::Tracked);
    assert_eq!(t.announced(p(1), h(1), true, now), Announced::Duplicate);
    assert_eq!(t.announced(p(9), h(1), true, now), Announced::UnknownPeer);
}

#[test]
fn announcements_per_peer_are_capped() {
    let now = Instant::now();
    let mut t = tracker(&[(1, IN)]);
    for n in 0..MAX_PEER_TX_ANNOUNCEMENTS as u32 {
        assert_eq!(t.announced(p(1), h(n), true, now), Announced::Tracked);
    }
    assert_eq!(t.announced(p(1), h(u32::MAX), true, now), Announced::TooMany);
    assert_eq!(t.tracked(p(1)), MAX_PEER_TX_ANNOUNCEMENTS);
    t.received(h(0), h(0));
    assert_eq!(t.announced(p(1), h(u32::MAX), true, now), Announced::Tracked, "room again");
}

#[test]
fn in_flight_is_capped_and_overloaded_peers_are_delayed() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT)]);
    for n in 0..150 {
        t.announced(p(1), h(n), true, now);
    }
    let first: usize = t.poll(now).iter().map(|(_, w)| w.len()).sum();
    assert_eq!(first, MAX_PEER_TX_REQUEST_IN_FLIGHT);
    assert_eq!(t.in_flight(p(1)), MAX_PEER_TX_REQUEST_IN_FLIGHT);
    // Overloaded: a new announcement waits 2 s even from a preferred peer.
    t.announced(p(1), h(1_000), true, now);
    for n in 0..10 {
        t.received(h(n), h(n));
    }
    let next = wants(&mut t, now);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1.len(), 10, "freed slots go to the waiting announcements");
    assert!(!next[0].1.contains(&h(1_000)), "the overloaded announcement is not ready yet");
    assert_eq!(t.in_flight(p(1)), MAX_PEER_TX_REQUEST_IN_FLIGHT);
}

#[test]
fn a_flooding_peer_gets_one_request_per_freed_slot() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT)]);
    for n in 0..MAX_PEER_TX_ANNOUNCEMENTS as u32 {
        t.announced(p(1), h(n), true, now);
    }
    let sent = |got: Vec<(PeerId, Vec<TxWant>)>| got.iter().map(|(_, w)| w.len()).sum::<usize>();
    assert_eq!(sent(t.poll(now)), MAX_PEER_TX_REQUEST_IN_FLIGHT);
    t.received(h(0), h(0));
    assert_eq!(sent(t.poll(now)), 1);
    // All of them time out; with no other announcer they are dropped, and the next
    // hundred go out.
    assert_eq!(sent(t.poll(now + GETDATA_TX_INTERVAL)), MAX_PEER_TX_REQUEST_IN_FLIGHT);
    assert_eq!(t.len(), MAX_PEER_TX_ANNOUNCEMENTS - 1 - MAX_PEER_TX_REQUEST_IN_FLIGHT);
}

#[test]
fn full_window_lets_another_announcer_serve() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT), (2, OUT)]);
    for n in 0..101 {
        t.announced(p(1), h(n), true, now);
    }
    t.announced(p(2), h(100), true, now);
    let got = t.poll(now);
    let to = |peer| got.iter().find(|(q, _)| *q == peer).map_or(0, |(_, w)| w.len());
    assert_eq!((to(p(1)), to(p(2))), (100, 1));
}

#[test]
fn disconnect_hands_in_flight_requests_to_the_next_announcer() {
    let now = Instant::now();
    let mut t = tracker(&[(1, OUT), (2, IN)]);
    t.announced(p(1), h(1), true, now);
    t.announced(p(2), h(1), true, now);
    t.announced(p(1), h(2), true, now);
    assert_eq!(wants(&mut t, now), vec![(p(1), vec![h(1), h(2)])]);
    t.peer_disconnected(p(1));
    assert_eq!((t.in_flight(p(1)), t.tracked(p(1))), (0, 0));
    // h(2) had no other announcer: gone. h(1) goes to peer 2 once its delay passed.
    let later = now + NONPREF_PEER_TX_DELAY;
    assert_eq!(wants(&mut t, later), vec![(p(2), vec![h(1)])]);
    assert_eq!(t.len(), 1);
    assert_eq!(t.announced(p(1), h(3), true, now), Announced::UnknownPeer);
}

#[test]
fn inv_entries_count_only_in_the_negotiated_kind() {
    let now = Instant::now();
    let mut t = TxRequestTracker::default();
    t.peer_connected(p(1), OUT, true); // wtxidrelay negotiated
    t.peer_connected(p(2), OUT, false);
    let txid = Txid::from_byte_array(h(1));
    let wtxid = Wtxid::from_byte_array(h(2));
    let mixed = [
        Inventory::Transaction(txid),
        Inventory::WTx(wtxid),
        Inventory::Block(bitcoin::BlockHash::all_zeros()),
    ];
    assert!(t.announced_inv(p(1), &mixed, now), "the wtxid entry is tracked");
    assert!(t.announced_inv(p(2), &mixed, now), "the txid entry is tracked");
    assert_eq!(wants(&mut t, now), vec![(p(1), vec![h(2)])]);
    // The txid announcement waits while a peer relays by wtxid (TXID_RELAY_DELAY).
    assert_eq!(wants(&mut t, now + Duration::from_secs(2)), vec![(p(2), vec![h(1)])]);
    assert!(!t.announced_inv(p(9), &mixed, now), "unknown peers are ignored");
    let want = TxWant { hash: h(1), is_wtxid: false };
    assert_eq!(want.inventory(true), Inventory::WitnessTransaction(txid));
    assert_eq!(want.inventory(false), Inventory::Transaction(txid));
    assert_eq!(TxWant { hash: h(2), is_wtxid: true }.inventory(false), Inventory::WTx(wtxid));
}
