//! The headers prefetch through [`PeerRequests`]: a full answer sends the next `getheaders` at
//! once, the next request from its end takes that batch, nothing is fetched twice.

use super::tests::{chain, events, T};
use super::*;

const FULL: usize = crate::wire::limits::MAX_HEADERS_RESULTS;

fn get(locator: Vec<BlockHash>) -> Request {
    Request::Headers { locator, stop: BlockHash::all_zeros() }
}

fn send(locator: Vec<BlockHash>) -> RequestEvent {
    RequestEvent::SendGetHeaders { locator, stop: BlockHash::all_zeros() }
}

fn answer(id: RequestId, headers: &[Header]) -> RequestEvent {
    RequestEvent::Done(id, Ok(Response::Headers(headers.to_vec().into())))
}

#[test]
fn a_full_answer_during_a_sync_sends_the_next_getheaders_and_the_next_request_takes_it() {
    let now = Instant::now();
    let hs = chain(FULL * 3 + 5);
    let genesis = crate::Network::Regtest.genesis_hash();
    let batch = |i: usize| &hs[FULL * i..(FULL * (i + 1)).min(hs.len())];
    let end = |i: usize| batch(i)[batch(i).len() - 1].block_hash();
    let mut r = PeerRequests::new();
    // A first request is no sync yet: its full answer is not followed.
    let id = r.start(now, get(vec![genesis]), T).unwrap();
    assert_eq!(events(&mut r), vec![send(vec![genesis])]);
    assert!(r.on_headers(now, batch(0)));
    assert_eq!(events(&mut r), vec![answer(id, batch(0))]);
    // Continuing from its end is: the follow-up leaves before the answer is delivered.
    let id = r.start(now, get(vec![end(0), genesis]), T).unwrap();
    assert_eq!(events(&mut r), vec![send(vec![end(0), genesis])]);
    assert!(r.on_headers(now, batch(1)));
    assert_eq!(events(&mut r), vec![send(vec![end(1), end(0)]), answer(id, batch(1))]);
    // Its answer is kept: no announcement, nothing to deliver yet.
    assert!(r.on_headers(now, batch(2)));
    assert!(events(&mut r).is_empty());
    // The sync's next request starts at that end: answered at once, no `getheaders` of its
    // own, and the batch after it is asked for now.
    let id = r.start(now, get(vec![end(1), end(0), genesis]), T).unwrap();
    assert_eq!(events(&mut r), vec![send(vec![end(2), end(1)]), answer(id, batch(2))]);
    // The next request finds that one on the wire: it waits for it instead of asking again.
    let id = r.start(now, get(vec![end(2), genesis]), T).unwrap();
    assert!(events(&mut r).is_empty());
    assert!(r.on_headers(now, batch(3)));
    // A short answer: the peer's tip, nothing more to prefetch.
    assert_eq!(events(&mut r), vec![answer(id, batch(3))]);
    assert_eq!(r.pending(), 0);
}

#[test]
fn short_answers_and_stop_hashes_are_not_followed() {
    let now = Instant::now();
    let hs = chain(FULL);
    let genesis = crate::Network::Regtest.genesis_hash();
    let mut r = PeerRequests::new();
    let id = r.start(now, get(vec![genesis]), T).unwrap();
    events(&mut r);
    r.on_headers(now, &hs[..FULL - 1]);
    assert_eq!(events(&mut r), vec![answer(id, &hs[..FULL - 1])]);
    // With a stop hash the requester wants that range only.
    let stop = hs[FULL - 1].block_hash();
    let id = r.start(now, Request::Headers { locator: vec![genesis], stop }, T).unwrap();
    events(&mut r);
    r.on_headers(now, &hs);
    assert_eq!(events(&mut r), vec![answer(id, &hs)]);
}

#[test]
fn an_unclaimed_or_unanswered_prefetch_is_dropped_without_blaming_the_peer() {
    let now = Instant::now();
    let hs = chain(FULL * 3);
    let genesis = crate::Network::Regtest.genesis_hash();
    let mut r = syncing(&hs, now);
    // bcoin at its tip never answers: the prefetch expires silently, it is no stall.
    for step in 1..=4 {
        r.tick(now + T * step);
    }
    assert!(events(&mut r).is_empty());
    // Its late answer is then an announcement like any other.
    assert!(!r.on_headers(now + T * 4, &hs[FULL * 2..]));
    // A request from elsewhere does not take a kept answer; it asks for itself.
    let mut r = syncing(&hs, now);
    assert!(r.on_headers(now, &hs[FULL * 2..]));
    let id = r.start(now, get(vec![genesis]), T).unwrap();
    assert_eq!(events(&mut r), vec![send(vec![genesis])]);
    r.on_headers(now, &hs[..10]);
    assert_eq!(events(&mut r), vec![answer(id, &hs[..10])]);
}

/// Requests that answered `hs[..FULL]` and then `hs[FULL..FULL * 2]` as a sync: a prefetch
/// from `hs[FULL * 2 - 1]` is on the wire.
fn syncing(hs: &[Header], now: Instant) -> PeerRequests {
    let genesis = crate::Network::Regtest.genesis_hash();
    let mut r = PeerRequests::new();
    r.start(now, get(vec![genesis]), T).unwrap();
    r.on_headers(now, &hs[..FULL]);
    r.start(now, get(vec![hs[FULL - 1].block_hash()]), T).unwrap();
    r.on_headers(now, &hs[FULL..FULL * 2]);
    let sent = events(&mut r);
    assert!(sent.contains(&send(vec![hs[FULL * 2 - 1].block_hash(), hs[FULL - 1].block_hash()])), "{sent:?}");
    r
}

#[test]
fn the_next_getheaders_leaves_when_a_full_answer_arrives_before_it_is_checked() {
    let now = Instant::now();
    let hs = chain(FULL * 3);
    let genesis = crate::Network::Regtest.genesis_hash();
    let end = |i: usize| hs[FULL * (i + 1) - 1].block_hash();
    let mut r = PeerRequests::new();
    r.start(now, get(vec![genesis]), T).unwrap();
    r.on_headers(now, &hs[..FULL]);
    events(&mut r);
    let id = r.start(now, get(vec![end(0), genesis]), T).unwrap();
    events(&mut r);
    // Arrival: the follow-up is queued before the batch is checked ...
    assert!(r.headers_arriving(now, &hs[FULL..FULL * 2]));
    assert_eq!(events(&mut r), vec![send(vec![end(1), end(0)])]);
    // ... and not sent twice when the check passes.
    assert!(r.on_headers(now, &hs[FULL..FULL * 2]));
    assert_eq!(events(&mut r), vec![answer(id, &hs[FULL..FULL * 2])]);
    // Nothing is queued for what answers no request, a short answer, or the prefetch's own
    // answer (it is kept for the request that claims it).
    assert!(!r.headers_arriving(now, &hs[FULL * 2..]) && events(&mut r).is_empty());
    assert!(!r.headers_arriving(now, &hs[..10]) && events(&mut r).is_empty());
}

#[test]
fn a_bad_batch_whose_follow_up_already_left_is_punished_and_drops_the_prefetch() {
    let now = Instant::now();
    let hs = chain(FULL * 3);
    let genesis = crate::Network::Regtest.genesis_hash();
    let end0 = hs[FULL - 1].block_hash();
    let mut r = PeerRequests::new();
    r.start(now, get(vec![genesis]), T).unwrap();
    r.on_headers(now, &hs[..FULL]);
    let id = r.start(now, get(vec![end0, genesis]), T).unwrap();
    events(&mut r);
    let mut bad = hs[FULL..FULL * 2].to_vec();
    bad[7].nonce ^= 1; // breaks its proof of work (and the chaining after it)
    assert!(r.headers_arriving(now, &bad));
    events(&mut r);
    assert!(!r.on_headers(now, &bad));
    let got = events(&mut r);
    assert!(matches!(got[0], RequestEvent::Done(i, Err(RequestError::Invalid(_))) if i == id), "{got:?}");
    assert!(matches!(got[1], RequestEvent::Misbehaved(_)), "{got:?}");
    // The prefetched batch is no answer to anything now: an announcement.
    assert!(!r.on_headers(now, &hs[FULL * 2..]));
}
