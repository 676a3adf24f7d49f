//! Routing requests to peers and retrying them elsewhere (pure). The group's `Fetch` handler
//! asks [`choose_peer`] for a peer, sends the request, and on failure asks [`after_failure`]
//! whether to try again: a different peer each time, within a bounded budget (bitcoin-net
//! retried forever).

use rand::seq::SliceRandom;
use rand::Rng;

use crate::peer::requests::{Request, RequestError};
use crate::peer::PeerId;
use crate::wire::ServiceFlags;

/// Attempts per group request by default (the first plus two retries).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// A ready peer that could take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The peer.
    pub id: PeerId,
    /// Its service bits.
    pub services: u64,
    /// The height it reported in `version`.
    pub start_height: i32,
}

impl Candidate {
    fn serves_blocks(&self) -> bool {
        let s = ServiceFlags::from(self.services);
        s.has(ServiceFlags::NETWORK) || s.has(ServiceFlags::NETWORK_LIMITED)
    }

    fn full_history(&self) -> bool {
        ServiceFlags::from(self.services).has(ServiceFlags::NETWORK)
    }
}

/// Picks a peer for `request`: one not tried yet, serving blocks when blocks are wanted,
/// preferring full-history (NODE_NETWORK) peers, then the preferred peer if given, at random
/// among equals (so load spreads and a bad peer is not picked every time). Falls back to a peer
/// already tried, other than the last one, when every candidate has been tried.
pub fn choose_peer(
    request: &Request,
    candidates: &[Candidate],
    tried: &[PeerId],
    preferred: Option<PeerId>,
    rng: &mut impl Rng,
) -> Option<PeerId> {
    let wants_blocks = !matches!(request, Request::Headers { .. });
    let able: Vec<&Candidate> = candidates.iter().filter(|c| !wants_blocks || c.serves_blocks()).collect();
    let fresh: Vec<&Candidate> = able.iter().copied().filter(|c| !tried.contains(&c.id)).collect();
    let pool = if fresh.is_empty() {
        let last = tried.last();
        able.into_iter().filter(|c| Some(&c.id) != last).collect()
    } else {
        fresh
    };
    if let Some(p) = preferred {
        if pool.iter().any(|c| c.id == p) {
            return Some(p);
        }
    }
    let full: Vec<&&Candidate> = pool.iter().filter(|c| c.full_history()).collect();
    if let Some(c) = full.choose(rng) {
        return Some(c.id);
    }
    pool.choose(rng).map(|c| c.id)
}

/// What to do after an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Try another peer.
    Retry,
    /// Give up with this error.
    Fail(RequestError),
}

/// Decides whether to retry after `attempts` attempts (counting the one that failed with
/// `error`).
pub fn after_failure(max_attempts: u32, attempts: u32, error: RequestError) -> Next {
    if !error.is_retryable() {
        return Next::Fail(error);
    }
    if attempts >= max_attempts.max(1) {
        return Next::Fail(RequestError::RetriesExhausted { attempts, last: Box::new(error) });
    }
    Next::Retry
}

/// True if the failure means nothing was sent, so it does not count as an attempt (a peer
/// that stopped being ready between choice and request). The loop around it is still bounded
/// by [`max_picks`].
pub fn is_free_failure(error: &RequestError) -> bool {
    matches!(error, RequestError::NotReady)
}

/// Most peers picked for one request, free failures included.
pub fn max_picks(max_attempts: u32) -> usize {
    usize::try_from(max_attempts).unwrap_or(usize::MAX).saturating_mul(2).saturating_add(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash as _;
    use bitcoin::BlockHash;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Duration;

    fn c(id: u64, services: ServiceFlags) -> Candidate {
        Candidate { id: PeerId(id), services: services.to_u64(), start_height: 0 }
    }

    fn blocks() -> Request {
        Request::Blocks { hashes: vec![BlockHash::all_zeros()] }
    }

    fn headers() -> Request {
        Request::Headers { locator: vec![BlockHash::all_zeros()], stop: BlockHash::all_zeros() }
    }

    #[test]
    fn blocks_go_to_peers_that_serve_them_preferring_full_history() {
        let mut rng = StdRng::seed_from_u64(1);
        let cands =
            [c(1, ServiceFlags::NONE), c(2, ServiceFlags::NETWORK_LIMITED), c(3, ServiceFlags::NETWORK)];
        for _ in 0..20 {
            assert_eq!(choose_peer(&blocks(), &cands, &[], None, &mut rng), Some(PeerId(3)));
        }
        assert_eq!(choose_peer(&blocks(), &cands, &[PeerId(3)], None, &mut rng), Some(PeerId(2)));
        // Headers can come from anyone, still preferring full nodes.
        assert_eq!(choose_peer(&headers(), &cands, &[PeerId(3), PeerId(2)], None, &mut rng), Some(PeerId(1)));
    }

    #[test]
    fn retries_prefer_untried_peers_and_never_repeat_the_last() {
        let mut rng = StdRng::seed_from_u64(2);
        let cands = [c(1, ServiceFlags::NETWORK), c(2, ServiceFlags::NETWORK)];
        assert_eq!(choose_peer(&blocks(), &cands, &[PeerId(1)], None, &mut rng), Some(PeerId(2)));
        assert_eq!(choose_peer(&blocks(), &cands, &[PeerId(1), PeerId(2)], None, &mut rng), Some(PeerId(1)));
        let one = [c(1, ServiceFlags::NETWORK)];
        assert_eq!(choose_peer(&blocks(), &one, &[PeerId(1)], None, &mut rng), None);
        assert_eq!(choose_peer(&blocks(), &[], &[], None, &mut rng), None);
    }

    #[test]
    fn preferred_peer_wins_when_eligible() {
        let mut rng = StdRng::seed_from_u64(3);
        let cands = [c(1, ServiceFlags::NETWORK), c(2, ServiceFlags::NETWORK_LIMITED)];
        assert_eq!(choose_peer(&blocks(), &cands, &[], Some(PeerId(2)), &mut rng), Some(PeerId(2)));
        assert_eq!(choose_peer(&blocks(), &cands, &[PeerId(2)], Some(PeerId(2)), &mut rng), Some(PeerId(1)));
    }

    #[test]
    fn retry_budget_is_bounded_and_typed() {
        let timeout = RequestError::Timeout { after: Duration::from_secs(5) };
        assert_eq!(after_failure(3, 1, timeout.clone()), Next::Retry);
        assert_eq!(after_failure(3, 2, timeout.clone()), Next::Retry);
        assert_eq!(
            after_failure(3, 3, timeout.clone()),
            Next::Fail(RequestError::RetriesExhausted { attempts: 3, last: Box::new(timeout) })
        );
        assert_eq!(after_failure(3, 1, RequestError::Empty), Next::Fail(RequestError::Empty));
        assert!(is_free_failure(&RequestError::NotReady));
        assert!(!is_free_failure(&RequestError::Busy));
        assert_eq!(max_picks(3), 14);
        assert!(!is_free_failure(&RequestError::NotFound {
            hash: crate::peer::requests::ItemHash::Block(BlockHash::all_zeros())
        }));
    }
}
