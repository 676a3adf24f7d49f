//! The download queue of one kind of block (whole or BIP37-filtered) on one peer: which
//! requests wait for which hash, which hashes are on the wire and which wait for room in the
//! window. The window itself ([`MAX_BLOCKS_IN_FLIGHT`](super::MAX_BLOCKS_IN_FLIGHT)) is shared
//! by both kinds and enforced by the tracker.

use std::collections::{HashMap, HashSet, VecDeque};

use bitcoin::BlockHash;

use super::RequestId;

/// Filtered blocks remembered as asked for, so a late answer is not taken as unsolicited.
const RECENT_FILTERED: usize = 4_096;

/// Which answer a queue's hashes expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockKind {
    /// `getdata(MSG_BLOCK / MSG_WITNESS_BLOCK)`, answered by `block`.
    Full,
    /// `getdata(MSG_FILTERED_BLOCK)`, answered by `merkleblock` and its `tx`s.
    Filtered,
}

/// Hashes of one kind waiting for, or on, the wire.
#[derive(Debug)]
pub(super) struct BlockQueue {
    /// Block hash → requests waiting for it.
    waiting: HashMap<BlockHash, Vec<RequestId>>,
    in_flight: HashSet<BlockHash>,
    /// In send order; may hold hashes no longer waited for (skipped when their turn comes).
    queued: VecDeque<BlockHash>,
    /// Hashes sent lately, newest last (filtered blocks only): an unsolicited `block` is just
    /// ignored, but an unsolicited `merkleblock` is misbehaviour, so a late one must be known.
    recent: VecDeque<BlockHash>,
    recent_cap: usize,
}

impl BlockQueue {
    /// An empty queue for `kind`.
    pub(super) fn new(kind: BlockKind) -> Self {
        let recent_cap = match kind {
            BlockKind::Full => 0,
            BlockKind::Filtered => RECENT_FILTERED,
        };
        BlockQueue {
            waiting: HashMap::new(),
            in_flight: HashSet::new(),
            queued: VecDeque::new(),
            recent: VecDeque::new(),
            recent_cap,
        }
    }

    /// Hashes some request waits for (queued or in flight).
    pub(super) fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Hashes on the wire.
    pub(super) fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// True if this hash was asked for and not answered yet.
    pub(super) fn is_in_flight(&self, hash: &BlockHash) -> bool {
        self.in_flight.contains(hash)
    }

    /// True if this hash was sent lately (always false for full blocks).
    pub(super) fn was_sent_recently(&self, hash: &BlockHash) -> bool {
        self.recent.contains(hash)
    }

    /// How many of `hashes` no request waits for yet (each would take room in the window).
    pub(super) fn count_new(&self, hashes: &[BlockHash]) -> usize {
        hashes.iter().filter(|h| !self.waiting.contains_key(*h)).count()
    }

    /// True if one of `hashes` is already on the wire.
    pub(super) fn any_in_flight(&self, hashes: &[BlockHash]) -> bool {
        hashes.iter().any(|h| self.in_flight.contains(h))
    }

    /// Request `id` waits for `hash`; a hash nobody waited for joins the queue.
    pub(super) fn add(&mut self, hash: BlockHash, id: RequestId) {
        let waiters = self.waiting.entry(hash).or_default();
        if waiters.is_empty() {
            self.queued.push_back(hash);
        }
        waiters.push(id);
    }

    /// Puts the next queued hash still waited for on the wire; `None` when the queue is empty.
    pub(super) fn send_next(&mut self) -> Option<BlockHash> {
        while let Some(hash) = self.queued.pop_front() {
            if self.waiting.contains_key(&hash) && self.in_flight.insert(hash) {
                if self.recent_cap > 0 {
                    self.recent.push_back(hash);
                    if self.recent.len() > self.recent_cap {
                        self.recent.pop_front();
                    }
                }
                return Some(hash);
            }
        }
        None
    }

    /// Requests waiting for `hash`.
    pub(super) fn waiters(&self, hash: &BlockHash) -> &[RequestId] {
        self.waiting.get(hash).map_or(&[], Vec::as_slice)
    }

    /// The answer (or `notfound`) for `hash` came: takes it off the wire and returns the
    /// requests that waited for it; `None` if it was not on the wire.
    pub(super) fn take(&mut self, hash: &BlockHash) -> Option<Vec<RequestId>> {
        if !self.in_flight.remove(hash) {
            return None;
        }
        self.waiting.remove(hash)
    }

    /// Request `id` no longer waits for `hash`. True if nobody does any more: the hash is
    /// dropped (a late answer for it is harmless: unknown hashes are ignored).
    pub(super) fn forget(&mut self, id: RequestId, hash: &BlockHash) -> bool {
        let Some(waiters) = self.waiting.get_mut(hash) else { return false };
        waiters.retain(|w| *w != id);
        if !waiters.is_empty() {
            return false;
        }
        self.waiting.remove(hash);
        self.in_flight.remove(hash);
        true
    }

    /// Forgets every hash (the connection ended); recently sent ones stay known.
    pub(super) fn clear(&mut self) {
        self.queued.clear();
        self.in_flight.clear();
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash as _;

    fn h(i: u8) -> BlockHash {
        BlockHash::from_byte_array([i; 32])
    }

    #[test]
    fn hashes_go_out_once_in_order_and_forgotten_ones_are_skipped() {
        let mut q = BlockQueue::new(BlockKind::Full);
        q.add(h(1), 1);
        q.add(h(2), 1);
        q.add(h(1), 2);
        q.add(h(3), 3);
        assert_eq!(q.count_new(&[h(1), h(4)]), 1);
        assert!(q.forget(3, &h(3)));
        assert_eq!((q.send_next(), q.send_next(), q.send_next()), (Some(h(1)), Some(h(2)), None));
        assert_eq!(q.waiters(&h(1)), &[1, 2]);
        assert!(!q.forget(1, &h(1)), "request 2 still waits");
        assert_eq!(q.take(&h(1)), Some(vec![2]));
        assert_eq!(q.take(&h(1)), None);
        assert!(!q.was_sent_recently(&h(2)), "full blocks keep no history");
    }

    #[test]
    fn filtered_queue_remembers_what_it_sent() {
        let mut q = BlockQueue::new(BlockKind::Filtered);
        q.add(h(1), 1);
        assert_eq!(q.send_next(), Some(h(1)));
        q.clear();
        assert_eq!((q.in_flight_len(), q.waiting_len()), (0, 0));
        assert!(q.was_sent_recently(&h(1)));
    }
}
