//! The next batch of headers, asked for before anyone asks us for it.
//!
//! A full `headers` answer (2,000) means the peer has more, and a sync asks next from the
//! answer's last header (Core's `ProcessHeadersMessage`: a full message is followed by a
//! `getheaders` from its last header). Sending that `getheaders` from the peer's own thread as
//! soon as the full answer is checked takes the requester's round trip (the answer travelling
//! to the sync and its next request travelling back) out of every batch: the peer sends the
//! next batch while this one is delivered, validated and stored. The next request that starts
//! where the answer ended takes the prefetched batch (or waits for it) instead of asking again,
//! so nothing is fetched twice. One batch at most per peer, dropped when nobody claims it.
//!
//! Only a sync is followed: a full answer to a request that itself continued from the end of
//! this peer's previous full answer (or took a prefetched batch), so a one-off `getheaders`
//! costs no speculative download. A peer whose tip falls exactly on the end of a full answer
//! gets a `getheaders` from its tip: Core answers it with an empty `headers`; bcoin sends
//! nothing, and the prefetch expires with the request timeout, without blame.
//! Pure.

use std::time::Duration;

use bitcoin::hashes::Hash as _;
use bitcoin::BlockHash;
use tokio::time::Instant;

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
pub(super) enum Claim {
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
    pub fn claim(&mut self, locator: &[BlockHash], stop: BlockHash) -> Claim {
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

    /// Forgets everything (the connection ended or the peer misbehaved).
    pub fn clear(&mut self) {
        self.state = None;
        self.full_end = None;
    }
}
