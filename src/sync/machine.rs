//! Header sync decisions (pure): which peer to ask, when the chain is synced, whom to punish,
//! when the tip is stale. The [`actor`](super::actor) executes the actions with real requests,
//! the header file and the group.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::BlockHash;
use tokio::time::Instant;

pub(crate) mod blocks;

use crate::chain::{Connected, HashedHeaders, HeaderChain, HeaderError, Tip};
use crate::peer::PeerId;
use crate::wire::limits::MAX_HEADERS_RESULTS;

/// Core's stale-tip check (`STALE_CHECK_INTERVAL` 10 min, tip older than 30 min triggers an
/// extra outbound peer): no new header for this long while a peer claims more → rotate.
pub const DEFAULT_STALE_TIP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// New blocks named per [`SyncAction::FetchBlocks`] at most (a longer jump is a sync, not an
/// announcement; the block feed fetches from its cursor whatever the jump).
pub const MAX_BLOCKS_PER_TIP_CHANGE: usize = 16;
/// Pause after a failed header request before asking again.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Timing of the header sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    /// No tip change for this long while peers claim more work: rotate the sync peer.
    pub stale_tip_timeout: Duration,
    /// Pause after a failed request.
    pub retry_delay: Duration,
    /// Ask for the blocks that extend the chain once it was synced.
    pub fetch_blocks: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            stale_tip_timeout: DEFAULT_STALE_TIP_TIMEOUT,
            retry_delay: DEFAULT_RETRY_DELAY,
            fetch_blocks: false,
        }
    }
}

/// What the sync wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncAction {
    /// Ask for headers after this locator, preferably from this peer.
    GetHeaders {
        /// Locator (from the parent of our tip, so an up-to-date peer always answers).
        locator: Vec<BlockHash>,
        /// The peer that claims the most.
        preferred: Option<PeerId>,
    },
    /// Headers newly stored (any branch), in order, with the hashes computed on the way in:
    /// append them to the header file.
    Store(HashedHeaders),
    /// The best chain changed.
    TipChanged {
        /// Headers that joined the best chain, in height order.
        connected: Vec<(BlockHash, u32)>,
        /// Headers that left it (a reorg), highest first.
        disconnected: Vec<(BlockHash, u32)>,
        /// The new tip.
        tip: Tip,
        /// Who sent the headers.
        peer: PeerId,
    },
    /// New blocks joined the best chain after the first sync (height order): worth fetching,
    /// preferably from the peer that announced them (the actor's block feed does).
    FetchBlocks {
        /// Hash and height of each.
        blocks: Vec<(BlockHash, u32)>,
        /// Who sent the headers.
        peer: PeerId,
    },
    /// We reached the best tip our peers know.
    Synced(Tip),
    /// The peer sent invalid headers: disconnect and ban it.
    Punish {
        /// The peer.
        peer: PeerId,
        /// What was wrong with its headers.
        reason: HeaderError,
    },
    /// The peer sent a `block` nobody asked for whose parent we do not know: disconnect and
    /// ban it (Core: `AcceptBlockHeader` "prev-blk-not-found", `BLOCK_MISSING_PREV` →
    /// `MaybePunishNodeForBlock` → `Misbehaving`).
    PunishBlock {
        /// The peer.
        peer: PeerId,
        /// The block's hash.
        hash: BlockHash,
        /// Its unknown parent.
        prev: BlockHash,
    },
    /// The tip is stale while this peer was our source: drop it so another is dialed.
    Rotate {
        /// The peer.
        peer: PeerId,
    },
}

/// Header sync state around a [`HeaderChain`].
///
/// Peers' `start_height`s are hints: a peer that fails to deliver what it claimed loses its
/// claim. A full answer (2,000 headers) means "more": the next request continues from its
/// last header, on whichever branch it landed, so a competing branch longer than one message
/// is followed until it has more work. The chain is only called synced once its work reaches
/// the network's minimum (Core's `nMinimumChainWork`).
#[derive(Debug)]
pub struct HeaderSync {
    chain: HeaderChain,
    config: SyncConfig,
    /// Ready peers and the height each is believed to have.
    peers: BTreeMap<PeerId, u32>,
    /// The peer the current request prefers.
    in_flight: Option<Option<PeerId>>,
    retry_at: Option<Instant>,
    synced: bool,
    /// Once synced at least once: new blocks are worth fetching from then on.
    ever_synced: bool,
    last_tip_change: Instant,
    /// The last request was answered (not failed): only then can a lack of claims mean we
    /// are at the tip. False at start, so a restart confirms it is still at the tip.
    answered: bool,
    /// Continue from this header (the end of the last full answer) instead of our tip.
    continue_from: Option<BlockHash>,
    /// Where the previous full answer ended: a full answer ending there again is no progress
    /// (a peer repeating itself must not keep us asking).
    last_full_end: Option<BlockHash>,
    warned_low_work: bool,
    actions: VecDeque<SyncAction>,
    /// An answer taken by `receive`, not yet validated (`settle`).
    pending: Option<Batch>,
}

/// An answer between [`HeaderSync::receive`] and [`HeaderSync::settle`].
#[derive(Debug)]
struct Batch {
    now: Instant,
    unix: u64,
    peer: PeerId,
    headers: HashedHeaders,
    /// `receive` already asked for the next batch.
    pipelined: bool,
}

impl HeaderSync {
    /// Sync around `chain` (loaded from disk or fresh).
    pub fn new(chain: HeaderChain, config: SyncConfig, now: Instant) -> Self {
        HeaderSync {
            chain,
            config,
            peers: BTreeMap::new(),
            in_flight: None,
            retry_at: None,
            synced: false,
            ever_synced: false,
            last_tip_change: now,
            answered: false,
            continue_from: None,
            last_full_end: None,
            warned_low_work: false,
            actions: VecDeque::new(),
            pending: None,
        }
    }

    /// The chain.
    pub fn chain(&self) -> &HeaderChain {
        &self.chain
    }

    /// True once at the best tip our peers know (until a peer claims more).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// True once the chain reached the peers' tip in this run: blocks are fetched from then on.
    pub fn ever_synced(&self) -> bool {
        self.ever_synced
    }

    /// Next action.
    pub fn poll_action(&mut self) -> Option<SyncAction> {
        self.actions.pop_front()
    }

    /// A peer finished its handshake claiming `start_height` (a hint, not a promise).
    pub fn peer_ready(&mut self, now: Instant, peer: PeerId, start_height: i32) {
        self.settle();
        let claim = u32::try_from(start_height).unwrap_or(0);
        self.peers.insert(peer, claim);
        if claim > self.chain.height() {
            self.synced = false;
        }
        self.maybe_request(now);
    }

    /// A peer left.
    pub fn peer_gone(&mut self, peer: PeerId) {
        self.settle();
        self.peers.remove(&peer);
    }

    /// Our header request was answered by `peer`. The same headers may already have come in
    /// through [`on_headers`](Self::on_headers); what counts is where the answer's last header
    /// sits now, so the order of the two does not matter. Same as [`receive`](Self::receive)
    /// followed by [`settle`](Self::settle) (which the actor runs apart).
    #[cfg(test)]
    pub fn on_answer(&mut self, now: Instant, unix: u64, peer: PeerId, headers: &[Header]) {
        self.receive(now, unix, peer, HashedHeaders::new(headers.to_vec()));
        self.settle();
    }

    /// The first half of [`on_answer`](Self::on_answer): takes the headers with the hashes the
    /// peer's checks computed (never hashed again on the way in) and, when the answer is full and the peer claims more beyond
    /// it, asks for the next batch right away (its locator starts at the answer's last header,
    /// so nothing is fetched twice). Validating and storing the batch waits for
    /// [`settle`](Self::settle), so the next batch travels while this one is checked; a bad
    /// batch is still punished and discarded there.
    pub fn receive(&mut self, now: Instant, unix: u64, peer: PeerId, headers: HashedHeaders) {
        self.settle();
        if let Some(Some(preferred)) = self.in_flight.take() {
            if preferred != peer {
                // The group had to ask someone else: the preferred peer did not deliver.
                self.doubt(preferred);
            }
        }
        self.answered = true;
        let last = headers.last_hash();
        let mut pipelined = false;
        if headers.len() >= MAX_HEADERS_RESULTS && last != self.last_full_end {
            let parent = headers.headers()[0].prev_blockhash;
            let end = self.chain.header(&parent).map(|(_, h)| h.saturating_add(headers.len() as u32));
            // Only below the peer's claim: at its tip bcoin sends nothing at all to a locator
            // naming its tip, so the last batch is confirmed from its end's parent (`settle`).
            if let (Some(end), Some(&claim), Some(last)) = (end, self.peers.get(&peer), last) {
                if end < claim {
                    let mut locator = vec![last];
                    locator.extend(self.chain.locator_from(&parent).unwrap_or_default());
                    locator.truncate(crate::chain::MAX_LOCATOR_SZ);
                    self.last_full_end = Some(last);
                    self.continue_from = None;
                    self.in_flight = Some(Some(peer));
                    self.actions.push_back(SyncAction::GetHeaders { locator, preferred: Some(peer) });
                    pipelined = true;
                }
            }
        }
        self.pending = Some(Batch { now, unix, peer, headers, pipelined });
    }

    /// The second half of [`on_answer`](Self::on_answer): validates and stores the batch
    /// [`receive`](Self::receive) took, punishes its sender if it is invalid, and decides what
    /// to ask next when `receive` did not already. Nothing to do without a pending batch.
    pub fn settle(&mut self) {
        let Some(Batch { now, unix, peer, headers, pipelined }) = self.pending.take() else {
            return;
        };
        let last = headers.last_hash();
        let count = headers.len();
        let last_prev = headers.headers().last().map(|h| h.prev_blockhash);
        let failed = if headers.is_empty() {
            false
        } else {
            let result = self.chain.connect_hashed_unlisted(&headers, unix);
            let failed = result.as_ref().map_or(true, |c| c.error.is_some());
            self.apply(now, peer, result, headers);
            failed
        };
        let landed = last.and_then(|h| self.chain.header(&h)).map(|(_, height)| height);
        if pipelined {
            if failed {
                // The next batch, already asked for, builds on headers we discarded: it will
                // not connect, and the sync goes on from what we hold.
                self.last_full_end = None;
            } else if let (Some(h), Some(c)) = (landed, self.peers.get_mut(&peer)) {
                *c = (*c).max(h + 1);
            }
            return;
        }
        let progressed = landed.is_some() && last != self.last_full_end;
        if count >= MAX_HEADERS_RESULTS && progressed && self.peers.contains_key(&peer) {
            self.last_full_end = last;
            // A full answer means "more available": continue from its end, on its branch —
            // from the end's parent, so a peer with nothing more still answers (bcoin sends
            // nothing at all to a locator at its tip).
            self.continue_from = last_prev;
            if let (Some(h), Some(c)) = (landed, self.peers.get_mut(&peer)) {
                *c = (*c).max(h + 1);
            }
            self.request(Some(peer));
            return;
        }
        self.continue_from = None;
        self.last_full_end = None;
        // A short answer is the peer's tip: it has what we now hold at best.
        let reached = last.and_then(|h| self.chain.height_of(&h)).unwrap_or(self.chain.height());
        if let Some(c) = self.peers.get_mut(&peer) {
            *c = reached.min(self.chain.height());
        }
        if self.chain.work() < self.chain.network().min_chain_work()
            && last.is_some_and(|h| self.chain.is_on_best_chain(&h))
        {
            // Core drops a sync peer whose chain ends below the network's minimum work.
            self.peers.remove(&peer);
            self.actions.push_back(SyncAction::Rotate { peer });
        }
        self.maybe_request(now);
    }

    /// Our header request failed everywhere it was tried; the peer it preferred did not
    /// deliver what it claimed.
    pub fn on_failure(&mut self, now: Instant) {
        self.settle();
        if let Some(Some(peer)) = self.in_flight.take() {
            self.doubt(peer);
        }
        // Not knowing is not being at the tip: ask again before declaring sync.
        self.answered = false;
        self.continue_from = None;
        self.retry_at = Some(now + self.config.retry_delay);
    }

    /// A `headers` message arrived from `peer` (an announcement, or an answer also seen here).
    pub fn on_headers(&mut self, now: Instant, unix: u64, peer: PeerId, headers: &[Header]) {
        self.settle();
        if headers.is_empty() {
            return;
        }
        let headers = HashedHeaders::new(headers.to_vec());
        match self.chain.connect_hashed_unlisted(&headers, unix) {
            Err(HeaderError::Unconnected { .. }) => {
                // The peer has headers we lack: ask it (Core answers with getheaders too).
                self.claim(peer, self.chain.height() + 1);
                self.maybe_request(now);
            }
            result => {
                let last = headers.last_hash();
                self.apply(now, peer, result, headers);
                if let Some(last) = last {
                    if let Some(h) = self.chain.height_of(&last) {
                        self.claim(peer, h);
                    }
                }
            }
        }
    }

    /// A `block` nobody asked for arrived from `peer`, having passed the checks every block
    /// passes (proof of work, merkle root, ...: the peer's). Handled as Core's `ProcessMessage`
    /// BLOCK → `ProcessNewBlock` → `AcceptBlock` → `AcceptBlockHeader` (`validation.cpp`):
    /// - a block whose header we hold is nothing new ("already known");
    /// - one whose parent we hold has its header accepted, as an announcement would
    ///   ([`on_headers`](Self::on_headers): invalid headers are punished there);
    /// - one whose parent nobody knows fails with "prev-blk-not-found" (`BLOCK_MISSING_PREV`),
    ///   which `BlockChecked` → `MaybePunishNodeForBlock` (`net_processing.cpp`) punishes with
    ///   `Misbehaving`: the block is dropped, and no `getheaders` goes out (Core asks for
    ///   headers on an unconnecting `headers` or `cmpctblock`, not on a `block`).
    pub fn on_block(&mut self, now: Instant, unix: u64, peer: PeerId, hash: BlockHash, header: &Header) {
        self.settle();
        if self.chain.contains(&hash) {
            return;
        }
        if !self.chain.contains(&header.prev_blockhash) {
            self.peers.remove(&peer);
            self.actions.push_back(SyncAction::PunishBlock { peer, hash, prev: header.prev_blockhash });
            return;
        }
        self.on_headers(now, unix, peer, std::slice::from_ref(header));
    }

    /// A block `inv` arrived from `peer`.
    pub fn on_block_inv(&mut self, now: Instant, peer: PeerId, hash: BlockHash) {
        self.settle();
        if !self.chain.contains(&hash) {
            self.claim(peer, self.chain.height() + 1);
            self.maybe_request(now);
        }
    }

    /// Periodic: retries after failures, and the stale-tip watchdog.
    pub fn tick(&mut self, now: Instant) {
        self.settle();
        self.maybe_request(now);
        if now.saturating_duration_since(self.last_tip_change) < self.config.stale_tip_timeout {
            return;
        }
        self.last_tip_change = now;
        // Rotate the peer that claims the most without having delivered it.
        if let Some((peer, claim)) = self.best_claim() {
            if claim > self.chain.height() {
                self.peers.remove(&peer);
                self.actions.push_back(SyncAction::Rotate { peer });
            }
        }
        self.maybe_request(now);
    }

    /// Raises a known peer's claim (peers are known from their `PeerReady` or the startup
    /// snapshot; a departed one is not brought back by a late announcement).
    fn claim(&mut self, peer: PeerId, height: u32) {
        let Some(c) = self.peers.get_mut(&peer) else { return };
        *c = (*c).max(height);
        if height > self.chain.height() {
            self.synced = false;
        }
    }

    /// A peer did not deliver what it claimed: its claim falls to what we hold.
    fn doubt(&mut self, peer: PeerId) {
        let height = self.chain.height();
        if let Some(c) = self.peers.get_mut(&peer) {
            *c = (*c).min(height);
        }
    }

    fn best_claim(&self) -> Option<(PeerId, u32)> {
        self.peers.iter().max_by_key(|(id, h)| (**h, std::cmp::Reverse(**id))).map(|(id, h)| (*id, *h))
    }

    /// Requests headers if none are in flight and a peer claims more than we have (or nobody
    /// answered yet); declares sync otherwise.
    fn maybe_request(&mut self, now: Instant) {
        if self.in_flight.is_some() || self.pending.is_some() || self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.retry_at = None;
        let Some((peer, claim)) = self.best_claim() else { return };
        if claim > self.chain.height() || !self.answered {
            self.request(Some(peer));
        } else if !self.synced {
            if self.chain.work() < self.chain.network().min_chain_work() {
                if !self.warned_low_work {
                    self.warned_low_work = true;
                    tracing::warn!(
                        height = self.chain.height(),
                        "no peer offers a header chain with the network's minimum work yet"
                    );
                }
                return;
            }
            self.synced = true;
            self.ever_synced = true;
            self.actions.push_back(SyncAction::Synced(self.chain.tip()));
        }
    }

    fn request(&mut self, preferred: Option<PeerId>) {
        self.in_flight = Some(preferred);
        let tip = self.chain.tip();
        // From the end of the last full answer, or from our tip's parent so an up-to-date peer
        // still answers with one header (bcoin sends nothing at all when it has nothing new).
        let from = match self.continue_from {
            Some(h) => h,
            None if tip.height > self.chain.start_height() => tip.header.prev_blockhash,
            None => tip.hash,
        };
        let locator = self.chain.locator_from(&from).unwrap_or_else(|| self.chain.locator());
        self.actions.push_back(SyncAction::GetHeaders { locator, preferred });
    }

    /// Reports what `connect` did; punishes invalid headers.
    /// `headers` are the ones given to `connect`.
    fn apply(
        &mut self,
        now: Instant,
        peer: PeerId,
        result: Result<Connected, HeaderError>,
        headers: HashedHeaders,
    ) {
        let (connected, error) = match result {
            Ok(c) => {
                let e = c.error.clone();
                (Some(c), e)
            }
            Err(e) => (None, Some(e)),
        };
        if let Some(c) = connected {
            if c.added > 0 {
                // The added headers are the run after the known prefix (`Connected`): usually
                // the whole batch, which then moves to the store uncopied.
                let added = if c.known == 0 && c.added == headers.len() {
                    headers
                } else {
                    headers.range(c.known..c.known + c.added)
                };
                self.actions.push_back(SyncAction::Store(added));
            }
            if !c.connected.is_empty() {
                self.last_tip_change = now;
                // From the first sync on, blocks that join the best chain are new ones (the
                // initial sync is not a stream of new blocks).
                if self.config.fetch_blocks && self.ever_synced {
                    let start = c.connected.len().saturating_sub(MAX_BLOCKS_PER_TIP_CHANGE);
                    let blocks = c.connected[start..].to_vec();
                    self.actions.push_back(SyncAction::FetchBlocks { blocks, peer });
                }
                self.actions.push_back(SyncAction::TipChanged {
                    connected: c.connected,
                    disconnected: c.disconnected,
                    tip: self.chain.tip(),
                    peer,
                });
            }
        }
        if let Some(e) = error {
            if e.is_misbehaviour() {
                self.peers.remove(&peer);
                self.actions.push_back(SyncAction::Punish { peer, reason: e });
            }
        }
    }
}

#[cfg(test)]
mod tests;
