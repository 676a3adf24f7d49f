//! Block delivery decisions (pure): which blocks to fetch and in which order to hand them out,
//! so that a consumer sees every block of the best chain exactly once, in order, and an undo
//! for each delivered block a reorganisation removes — also across restarts, through a
//! persisted [`Cursor`]. The [`actor`](crate::sync::actor) fetches, publishes and saves.
//!
//! Two positions: the *cursor* (the last block handed out) and the *consumed* one (the
//! consumer's tip: the last handed-out event every subscriber has handled). Fetching runs at
//! most [`BLOCK_WINDOW`] heights ahead of the lower of the two, so a slow consumer slows the
//! downloads instead of queueing blocks in memory; the consumed position is what is saved, so
//! a restart delivers again what was handed out but not handled.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::{Block, BlockHash};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::chain::HeaderChain;
use crate::peer::PeerId;

/// Blocks requested, waiting for their predecessors or not yet handled by consumers at most:
/// the heights after the consumed position that may be in flight (as many as one peer serves at once, Core's
/// `MAX_BLOCKS_IN_TRANSIT_PER_PEER`, net_processing.cpp).
pub(crate) const BLOCK_WINDOW: u32 = 16;

/// A block of a consumer's chain (persisted as `blocks.json` in the data dir: the last block
/// consumers handled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// Its hash.
    pub hash: BlockHash,
    /// Its height.
    pub height: u32,
}

/// What the block feed wants done.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FeedAction {
    /// Request this block, preferably from this peer.
    Fetch { hash: BlockHash, height: u32, preferred: Option<PeerId> },
    /// A delivered block left the best chain: tell consumers to undo it (newest first);
    /// `parent` is the consumer's tip once it did.
    Disconnected { hash: BlockHash, height: u32, parent: Cursor },
    /// The next block in order: publish it.
    Deliver { hash: BlockHash, height: u32, block: Arc<Block>, peer: PeerId },
    /// The next block could not be fetched (first failure only); it is retried.
    Failed { hash: BlockHash, height: u32, error: String },
    /// The consumed position moved: save it.
    Save(Cursor),
    /// The saved cursor is not in the synced header chain (the header file was lost or is of
    /// another chain): delivery restarts at the tip.
    Lost(Cursor),
}

/// A block fetched ahead of its turn.
#[derive(Debug)]
struct Ready {
    hash: BlockHash,
    block: Arc<Block>,
    peer: PeerId,
}

/// In-order block delivery from a cursor to the best tip.
#[derive(Debug)]
pub(crate) struct BlockFeed {
    cursor: Option<Cursor>,
    /// The last handed-out event's resulting tip that consumers handled.
    consumed: Option<Cursor>,
    retry_delay: Duration,
    /// Requests outstanding, by hash (a reply for a hash not here is stale and ignored).
    in_flight: HashMap<BlockHash, u32>,
    /// Fetched blocks waiting for the ones before them, by height.
    ready: BTreeMap<u32, Ready>,
    /// Blocks that failed: retry not before this instant.
    failed: HashMap<BlockHash, Instant>,
    actions: VecDeque<FeedAction>,
}

impl BlockFeed {
    /// A feed resuming after `cursor` (`None`: start at the tip once the headers are synced,
    /// since the initial sync is not a stream of new blocks).
    pub fn new(cursor: Option<Cursor>, retry_delay: Duration) -> Self {
        BlockFeed {
            cursor,
            consumed: cursor,
            retry_delay,
            in_flight: HashMap::new(),
            ready: BTreeMap::new(),
            failed: HashMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// The last block delivered.
    #[cfg(test)]
    pub fn cursor(&self) -> Option<Cursor> {
        self.cursor
    }

    /// Next action.
    pub fn poll_action(&mut self) -> Option<FeedAction> {
        self.actions.pop_front()
    }

    /// The chain changed, time passed or the headers got synced: undo delivered blocks that
    /// left the best chain, then (once `synced`, i.e. the header sync reached the tip at least
    /// once in this run) fetch what follows the cursor, `BLOCK_WINDOW` heights at a time.
    pub fn update(&mut self, now: Instant, chain: &HeaderChain, synced: bool, preferred: Option<PeerId>) {
        let Some(cursor) = self.cursor else {
            if synced {
                let tip = chain.tip();
                let c = Cursor { hash: tip.hash, height: tip.height };
                self.cursor = Some(c);
                self.consumed = Some(c);
                self.actions.push_back(FeedAction::Save(c));
            }
            return;
        };
        if !chain.is_on_best_chain(&cursor.hash) {
            if !chain.contains(&cursor.hash) {
                // Unknown now; the header sync may still bring it back (a torn header file).
                if synced {
                    let tip = chain.tip();
                    let c = Cursor { hash: tip.hash, height: tip.height };
                    self.cursor = Some(c);
                    self.consumed = Some(c);
                    self.forget_all();
                    self.actions.push_back(FeedAction::Lost(cursor));
                    self.actions.push_back(FeedAction::Save(c));
                }
                return;
            }
            self.rewind(chain, cursor);
        }
        // Drop what a reorg made stale.
        self.in_flight.retain(|h, _| chain.is_on_best_chain(h));
        self.ready.retain(|_, r| chain.is_on_best_chain(&r.hash));
        self.failed.retain(|h, _| chain.is_on_best_chain(h));
        if synced {
            self.request(now, chain, preferred);
        }
    }

    /// Fetched `hash`: deliver it and whatever was waiting for it, in order.
    pub fn on_block(
        &mut self,
        now: Instant,
        chain: &HeaderChain,
        hash: BlockHash,
        block: Arc<Block>,
        peer: PeerId,
    ) {
        let Some(height) = self.in_flight.remove(&hash) else { return };
        self.failed.remove(&hash);
        if chain.hash_at(height) == Some(hash) {
            self.ready.insert(height, Ready { hash, block, peer });
        }
        self.deliver(chain);
        self.request(now, chain, Some(peer));
    }

    /// Fetching `hash` failed on every peer tried: report it (once) and retry it later.
    pub fn on_failure(&mut self, now: Instant, hash: BlockHash, error: String) {
        let Some(height) = self.in_flight.remove(&hash) else { return };
        if self.failed.insert(hash, now + self.retry_delay).is_none() {
            self.actions.push_back(FeedAction::Failed { hash, height, error });
        }
    }

    /// Every subscriber handled the handed-out event that left consumers at `tip`: save it,
    /// and fetch further.
    pub fn on_consumed(&mut self, now: Instant, chain: &HeaderChain, tip: Cursor) {
        self.consumed = Some(tip);
        self.actions.push_back(FeedAction::Save(tip));
        self.request(now, chain, None);
    }

    /// Undoes delivered blocks from `cursor` back to where its branch meets the best chain.
    fn rewind(&mut self, chain: &HeaderChain, cursor: Cursor) {
        let (mut hash, mut height) = (cursor.hash, cursor.height);
        while !chain.is_on_best_chain(&hash) {
            let parent = match chain.header(&hash) {
                Some((header, h)) if h > chain.start_height() => {
                    Some(Cursor { hash: header.prev_blockhash, height: h - 1 })
                }
                _ => None,
            };
            // Without the header (evicted by the fork limit) the branch cannot be followed
            // further down: continue from the best chain just below.
            let below = height.saturating_sub(1).clamp(chain.start_height(), chain.height());
            let next = parent.unwrap_or(Cursor { hash: chain.hash_at(below).unwrap_or(hash), height: below });
            self.actions.push_back(FeedAction::Disconnected { hash, height, parent: next });
            if parent.is_none() {
                self.cursor = Some(next);
                return;
            }
            (hash, height) = (next.hash, next.height);
        }
        self.cursor = Some(Cursor { hash, height });
    }

    fn forget_all(&mut self) {
        self.in_flight.clear();
        self.ready.clear();
        self.failed.clear();
    }

    /// Hands out the blocks that follow the cursor, as long as they are there.
    fn deliver(&mut self, chain: &HeaderChain) {
        let Some(mut cursor) = self.cursor else { return };
        let start = cursor;
        while let Some(r) = self.ready.remove(&(cursor.height + 1)) {
            if chain.hash_at(cursor.height + 1) != Some(r.hash) {
                continue;
            }
            cursor = Cursor { hash: r.hash, height: cursor.height + 1 };
            self.actions.push_back(FeedAction::Deliver {
                hash: r.hash,
                height: cursor.height,
                block: r.block,
                peer: r.peer,
            });
        }
        if cursor != start {
            self.cursor = Some(cursor);
        }
    }

    /// Requests the best-chain blocks in the window after the cursor not yet asked for.
    fn request(&mut self, now: Instant, chain: &HeaderChain, preferred: Option<PeerId>) {
        let Some(cursor) = self.cursor else { return };
        let base = self.consumed.map_or(cursor.height, |c| c.height.min(cursor.height));
        let end = chain.height().min(base.saturating_add(BLOCK_WINDOW));
        for height in cursor.height + 1..=end {
            let Some(hash) = chain.hash_at(height) else { break };
            let waiting = self.failed.get(&hash).is_some_and(|t| now < *t);
            if waiting || self.in_flight.contains_key(&hash) || self.ready.contains_key(&height) {
                continue;
            }
            self.in_flight.insert(hash, height);
            self.actions.push_back(FeedAction::Fetch { hash, height, preferred });
        }
    }
}

#[cfg(test)]
mod tests;
