//! Serving blocks we do not keep: a downstream peer's `getdata` for blocks of our best chain
//! (full, witness or BIP37 filtered) is answered from a small cache of recent blocks, or by
//! fetching the block from an upstream peer. Pure: the chain sync executes the
//! [`ProxyAction`]s. A filtered block is handed to the peer whole ([`Form::Filtered`]): its
//! filter lives with the peer, which builds the `merkleblock`.
//!
//! Bounded so a downstream client cannot turn us into an amplifier: each peer has at most
//! [`MAX_BLOCKS_IN_TRANSIT_PER_PEER`] blocks being fetched for it (Core's limit for what it
//! asks of one peer, applied to what one peer can make us ask), the rest of its requests wait
//! in its queue (at most [`MAX_QUEUED_PER_PEER`], one `getdata`'s worth); all peers together
//! have at most [`MAX_UPSTREAM_FETCHES`] fetches running, and one block is fetched once however
//! many peers want it. As Core does (`ProcessGetBlockData`), requests for blocks off our best
//! chain are ignored; a block no upstream peer delivered is answered with `notfound` so the
//! client asks elsewhere.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bitcoin::hashes::Hash as _;
use bitcoin::{Block, BlockHash};

use crate::peer::requests::MSG_FILTERED_BLOCK;
use crate::peer::PeerId;
use crate::wire::Inventory;

/// Blocks fetched at once for one downstream peer (`net_processing.cpp`
/// `MAX_BLOCKS_IN_TRANSIT_PER_PEER`).
pub(crate) const MAX_BLOCKS_IN_TRANSIT_PER_PEER: usize = 16;
/// Requests waiting per downstream peer (`MAX_INV_SZ`, one `getdata`); beyond: `notfound`.
pub(crate) const MAX_QUEUED_PER_PEER: usize = 50_000;
/// Upstream fetches running for all downstream peers together.
pub(crate) const MAX_UPSTREAM_FETCHES: usize = 64;
/// Bytes of recent blocks kept to answer repeated requests without fetching again.
pub(crate) const CACHE_BYTES: usize = 32 << 20;

/// The form a peer asked a block in (the `getdata` item's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `MSG_BLOCK`: without witness data.
    Block,
    /// `MSG_WITNESS_BLOCK`: with witness data.
    Witness,
    /// `MSG_FILTERED_BLOCK`: a `merkleblock` built with the peer's BIP37 filter, then the
    /// matched transactions.
    Filtered,
}

impl Form {
    /// The form and hash a `getdata` item asks for, if it is a block.
    fn of(item: &Inventory) -> Option<(BlockHash, Form)> {
        match item {
            Inventory::Block(h) => Some((*h, Form::Block)),
            Inventory::WitnessBlock(h) => Some((*h, Form::Witness)),
            Inventory::Unknown { inv_type: MSG_FILTERED_BLOCK, hash } => {
                Some((BlockHash::from_byte_array(*hash), Form::Filtered))
            }
            _ => None,
        }
    }

    /// The `getdata`/`notfound` item for `hash` in this form.
    fn item(self, hash: BlockHash) -> Inventory {
        match self {
            Form::Block => Inventory::Block(hash),
            Form::Witness => Inventory::WitnessBlock(hash),
            Form::Filtered => Inventory::Unknown { inv_type: MSG_FILTERED_BLOCK, hash: hash.to_byte_array() },
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProxyAction {
    /// Send the block to the peer in the form it asked for.
    Send {
        /// To whom.
        peer: PeerId,
        /// The block.
        block: Arc<Block>,
        /// How.
        form: Form,
    },
    /// Fetch the block from an upstream peer (not `exclude`: they asked for it); report with
    /// [`BlockProxy::on_fetched`].
    Fetch {
        /// The block.
        hash: BlockHash,
        /// The peers waiting for it.
        exclude: Vec<PeerId>,
    },
    /// Tell the peer we do not have these.
    NotFound {
        /// To whom.
        peer: PeerId,
        /// The items, as asked.
        items: Vec<Inventory>,
    },
}

#[derive(Debug, Default)]
struct PeerQueue {
    /// Requests not yet started.
    waiting: VecDeque<(BlockHash, Form)>,
    /// Blocks being fetched for this peer.
    in_transit: usize,
}

/// The block proxy's state.
#[derive(Debug, Default)]
pub(crate) struct BlockProxy {
    cache: VecDeque<(BlockHash, Arc<Block>, usize)>,
    cache_bytes: usize,
    /// Fetches running: who waits for each block, and in which form.
    fetching: HashMap<BlockHash, Vec<(PeerId, Form)>>,
    peers: HashMap<PeerId, PeerQueue>,
    /// Peers in the order their queues are served (round robin).
    order: VecDeque<PeerId>,
    actions: VecDeque<ProxyAction>,
}

impl BlockProxy {
    /// A peer's `getdata`: block items on our best chain (`on_best_chain`) are queued; others
    /// are left alone, as Core ignores them (transactions are the group's).
    pub(crate) fn on_getdata(
        &mut self,
        peer: PeerId,
        items: &[Inventory],
        on_best_chain: impl Fn(&BlockHash) -> bool,
    ) {
        let mut refused = Vec::new();
        for i in items {
            let Some((hash, form)) = Form::of(i) else { continue };
            if !on_best_chain(&hash) {
                continue;
            }
            if let Some(block) = self.cached(&hash) {
                self.actions.push_back(ProxyAction::Send { peer, block, form });
                continue;
            }
            let q = self.peers.entry(peer).or_default();
            if q.waiting.len() >= MAX_QUEUED_PER_PEER {
                refused.push(form.item(hash));
                continue;
            }
            if q.waiting.is_empty() && q.in_transit == 0 && !self.order.contains(&peer) {
                self.order.push_back(peer);
            }
            q.waiting.push_back((hash, form));
        }
        if !refused.is_empty() {
            self.actions.push_back(ProxyAction::NotFound { peer, items: refused });
        }
        self.start();
    }

    /// A fetch ended: `Some` block delivered (checked against its hash by the caller), `None`
    /// when no upstream peer delivered it in time.
    pub(crate) fn on_fetched(&mut self, hash: BlockHash, block: Option<Arc<Block>>) {
        let waiters = self.fetching.remove(&hash).unwrap_or_default();
        let mut missing: HashMap<PeerId, Vec<Inventory>> = HashMap::new();
        for (peer, form) in waiters {
            if let Some(q) = self.peers.get_mut(&peer) {
                q.in_transit = q.in_transit.saturating_sub(1);
            } else {
                continue; // gone meanwhile
            }
            match &block {
                Some(b) => self.actions.push_back(ProxyAction::Send { peer, block: b.clone(), form }),
                None => missing.entry(peer).or_default().push(form.item(hash)),
            }
        }
        for (peer, items) in missing {
            self.actions.push_back(ProxyAction::NotFound { peer, items });
        }
        if let Some(b) = block {
            self.remember(hash, b);
        }
        self.start();
    }

    /// The peer disconnected: its queue goes; fetches others wait for go on.
    pub(crate) fn peer_gone(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        self.order.retain(|p| *p != peer);
        for waiters in self.fetching.values_mut() {
            waiters.retain(|(p, _)| *p != peer);
        }
        self.start();
    }

    /// The next thing to do.
    pub(crate) fn poll_action(&mut self) -> Option<ProxyAction> {
        self.actions.pop_front()
    }

    /// Fetches running.
    #[cfg(test)]
    pub(crate) fn fetching(&self) -> usize {
        self.fetching.len()
    }

    fn cached(&self, hash: &BlockHash) -> Option<Arc<Block>> {
        self.cache.iter().find(|(h, _, _)| h == hash).map(|(_, b, _)| b.clone())
    }

    fn remember(&mut self, hash: BlockHash, block: Arc<Block>) {
        if self.cache.iter().any(|(h, _, _)| *h == hash) {
            return;
        }
        let size = block.total_size();
        self.cache.push_back((hash, block, size));
        self.cache_bytes += size;
        while self.cache_bytes > CACHE_BYTES {
            let Some((_, _, s)) = self.cache.pop_front() else { break };
            self.cache_bytes -= s;
        }
    }

    /// Starts waiting requests, round robin over the peers, within the limits.
    fn start(&mut self) {
        let mut idle = 0;
        while idle < self.order.len() {
            let Some(peer) = self.order.pop_front() else { break };
            let Some(q) = self.peers.get_mut(&peer) else { continue };
            let busy = q.in_transit >= MAX_BLOCKS_IN_TRANSIT_PER_PEER;
            let pending = !q.waiting.is_empty() || q.in_transit > 0;
            let Some((hash, form)) = q.waiting.front().copied().filter(|_| !busy) else {
                if pending {
                    self.order.push_back(peer);
                }
                idle += 1;
                continue;
            };
            if let Some(block) = self.cached(&hash) {
                if let Some(q) = self.peers.get_mut(&peer) {
                    q.waiting.pop_front();
                }
                self.actions.push_back(ProxyAction::Send { peer, block, form });
                self.order.push_front(peer);
                idle = 0;
                continue;
            }
            let joining = self.fetching.contains_key(&hash);
            if !joining && self.fetching.len() >= MAX_UPSTREAM_FETCHES {
                self.order.push_front(peer);
                return;
            }
            if let Some(q) = self.peers.get_mut(&peer) {
                q.waiting.pop_front();
                q.in_transit += 1;
            }
            self.order.push_back(peer);
            idle = 0;
            let waiters = self.fetching.entry(hash).or_default();
            waiters.push((peer, form));
            if !joining {
                self.actions.push_back(ProxyAction::Fetch { hash, exclude: vec![peer] });
            }
        }
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
