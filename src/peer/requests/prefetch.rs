//! The next batch of headers, asked for before anyone asks us for it.
//!
//! A full `headers` answer (2,000) means the peer has more, and a sync asks next from the
//! answer's last header (Core's `ProcessHeadersMessage`: a full message is followed by a
//! `getheaders` from its last header). Sending that `getheaders` from the peer's own thread
//! takes the requester's round trip (the answer travelling to the sync and its next request
//! travelling back) out of every batch: the peer sends the next batch while this one is
//! checked, delivered, validated and stored. The next request that starts
//! where the answer ended takes the prefetched batch (or waits for it) instead of asking again,
//! so nothing is fetched twice. One batch at most per peer, dropped when nobody claims it.
//!
//! The `getheaders` leaves as soon as a full answer has arrived and its last header is hashed,
//! before the rest of the answer is checked ([`PeerRequests::headers_arriving`]): the peer
//! sends the next batch while this one is hashed. An answer that then fails its checks still
//! costs its sender the link, and the prefetch is dropped with it.
//!
//! Only a sync is followed: a full answer to a request that itself continued from the end of
//! this peer's previous full answer (or took a prefetched batch), so a one-off `getheaders`
//! costs no speculative download. A peer whose tip falls exactly on the end of a full answer
//! gets a `getheaders` from its tip: Core answers it with an empty `headers`; bcoin sends
//! nothing, and the prefetch expires with the request timeout, without blame.
//! Pure.

use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::BlockHash;
use tokio::time::Instant;

use super::{HeadersWait, PeerRequests, RequestEvent, RequestId, Response};
use crate::chain::HashedHeaders;

/// How long an answered prefetch is kept for the request that should claim it.
const KEEP_READY: Duration = Duration::from_secs(60);

#[derive(Debug)]
enum State {
    /// `getheaders` from `after` sent; its answer not in yet.
    Waiting { after: BlockHash, deadline: Instant },
    /// Its answer, kept until claimed or `expires`.
    Ready { after: BlockHash, headers: HashedHeaders, expires: Instant },
}

/// What a new headers request gets from the prefetch.
#[derive(Debug)]
enum Claim {
    /// Nothing: send the request's own `getheaders`.
    No,
    /// The answer is here.
    Ready(HashedHeaders),
    /// Its `getheaders` is on the wire already: wait for the answer, which builds on `after`.
    InFlight { after: BlockHash },
}

/// At most one prefetched batch of one peer.
#[derive(Debug, Default)]
pub(super) struct HeadersPrefetch {
    state: Option<State>,
    /// The last header of this peer's last full answer: a request from it continues a sync.
    full_end: Option<BlockHash>,
    /// The last header of the answer being handled and its hash, computed on its arrival:
    /// the answer's check reuses it, so each header is hashed once.
    known_last: Option<(Header, BlockHash)>,
}

impl HeadersPrefetch {
    /// After a full answer that ended at `last` and started on `first_prev`: the locator of the
    /// `getheaders` to send now, unless a prefetch is already outstanding or kept. Its answer
    /// is expected by `now + timeout`.
    /// `continues`: the answered request started at the previous full answer's end.
    pub fn follow(
        &mut self,
        now: Instant,
        last: BlockHash,
        first_prev: BlockHash,
        timeout: Duration,
        continues: bool,
    ) -> Option<Vec<BlockHash>> {
        self.full_end = Some(last);
        if self.state.is_some() || !continues {
            return None;
        }
        self.state = Some(State::Waiting { after: last, deadline: now + timeout });
        // The answer's first parent as well: both are known to the peer that just sent them.
        Some(vec![last, first_prev])
    }

    /// Whether a `headers` message is the prefetch's answer: it is, while one is outstanding,
    /// when empty (a peer with nothing beyond `after`; answers come in the order asked, and
    /// the prefetch left before any request still waiting) or when it builds on `after`.
    pub fn answers(&self, first_prev: Option<BlockHash>) -> bool {
        match &self.state {
            Some(State::Waiting { after, .. }) => first_prev.is_none_or(|prev| prev == *after),
            _ => false,
        }
    }

    /// Keeps the prefetch's answer (see [`answers`](Self::answers)).
    pub fn fill(&mut self, now: Instant, headers: HashedHeaders) {
        if let Some(State::Waiting { after, .. }) = self.state {
            self.state = Some(State::Ready { after, headers, expires: now + KEEP_READY });
        }
    }

    /// Whether a request from `locator` continues from this peer's last full answer.
    pub fn continues(&self, locator: &[BlockHash]) -> bool {
        self.full_end.is_some() && locator.first() == self.full_end.as_ref()
    }

    /// A request for headers from `locator` (no stop hash): what the prefetch holds for it.
    /// A request that starts elsewhere leaves the prefetch as it is.
    fn claim(&mut self, locator: &[BlockHash], stop: BlockHash) -> Claim {
        let after = match &self.state {
            Some(State::Waiting { after, .. } | State::Ready { after, .. }) => *after,
            None => return Claim::No,
        };
        if stop != BlockHash::all_zeros() || locator.first() != Some(&after) {
            return Claim::No;
        }
        match self.state.take() {
            Some(State::Ready { headers, .. }) => Claim::Ready(headers),
            Some(State::Waiting { after, .. }) => Claim::InFlight { after },
            None => Claim::No,
        }
    }

    /// Drops an unanswered prefetch past its deadline (nobody waits on it, so it is no
    /// timeout of the peer's) and an unclaimed answer after [`KEEP_READY`].
    pub fn tick(&mut self, now: Instant) {
        let over = match &self.state {
            Some(State::Waiting { deadline, .. }) => now >= *deadline,
            Some(State::Ready { expires, .. }) => now >= *expires,
            None => false,
        };
        if over {
            self.state = None;
        }
    }

    /// The hash of `headers`' last header, when [`PeerRequests::headers_arriving`] computed
    /// it for this very header.
    pub fn take_known_last(&mut self, headers: &[Header]) -> Option<BlockHash> {
        let (header, hash) = self.known_last.take()?;
        (headers.last() == Some(&header)).then_some(hash)
    }

    /// Forgets everything (the connection ended or the peer misbehaved).
    pub fn clear(&mut self) {
        self.state = None;
        self.full_end = None;
        self.known_last = None;
    }
}

impl PeerRequests {
    /// A `headers` message arrived and is about to be handled ([`on_headers`]). When it is a
    /// full answer to the sync's outstanding request, the `getheaders` for the batch after it
    /// is queued now, from its last header (hashed here; the check reuses that hash). The
    /// caller sends it before calling [`on_headers`], so the peer is already sending the next
    /// batch while this one is checked. Returns whether a `getheaders` was queued.
    ///
    /// [`on_headers`]: PeerRequests::on_headers
    pub fn headers_arriving(&mut self, now: Instant, headers: &[Header]) -> bool {
        if headers.len() != crate::wire::limits::MAX_HEADERS_RESULTS {
            return false;
        }
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else { return false };
        let Some(wait) = &self.headers else { return false };
        if wait.stop != BlockHash::all_zeros()
            || !wait.locator.contains(&first.prev_blockhash)
            || self.prefetch.answers(Some(first.prev_blockhash))
        {
            return false;
        }
        let (timeout, continues) = (wait.timeout, wait.continues);
        let last_hash = crate::wire::block_hash(last);
        self.prefetch.known_last = Some((*last, last_hash));
        self.follow_up_from(now, last_hash, first.prev_blockhash, timeout, continues)
    }

    /// After a full answer: the `getheaders` for the batch after it leaves now, before the
    /// answer is delivered (unless [`headers_arriving`](Self::headers_arriving) sent it).
    pub(super) fn follow_up(
        &mut self,
        now: Instant,
        headers: &HashedHeaders,
        timeout: Duration,
        continues: bool,
    ) {
        if headers.len() < crate::wire::limits::MAX_HEADERS_RESULTS {
            return;
        }
        let (Some(last), Some(first)) = (headers.last_hash(), headers.headers().first()) else { return };
        self.follow_up_from(now, last, first.prev_blockhash, timeout, continues);
    }

    fn follow_up_from(
        &mut self,
        now: Instant,
        last: BlockHash,
        first_prev: BlockHash,
        timeout: Duration,
        continues: bool,
    ) -> bool {
        let Some(locator) = self.prefetch.follow(now, last, first_prev, timeout, continues) else {
            return false;
        };
        self.events.push_back(RequestEvent::SendGetHeaders { locator, stop: BlockHash::all_zeros() });
        true
    }

    /// A headers request from `locator` that the prefetch answers: with its kept batch at
    /// once, or by waiting for its `getheaders`, already on the wire. Returns whether it did
    /// (the request is then started).
    pub(super) fn take_prefetched(
        &mut self,
        now: Instant,
        id: RequestId,
        locator: &[BlockHash],
        stop: BlockHash,
        deadline: Instant,
        timeout: Duration,
    ) -> bool {
        match self.prefetch.claim(locator, stop) {
            Claim::Ready(headers) => {
                self.follow_up(now, &headers, timeout, true);
                self.events.push_back(RequestEvent::Done(id, Ok(Response::Headers(headers))));
                true
            }
            Claim::InFlight { after } => {
                // The answer to the prefetch's `getheaders` answers this request.
                let locator = std::collections::HashSet::from([after]);
                self.headers = Some(HeadersWait { id, continues: true, locator, stop, deadline, timeout });
                true
            }
            Claim::No => false,
        }
    }
}
