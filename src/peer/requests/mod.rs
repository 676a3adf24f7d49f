//! Requests to one peer that return results: headers for a locator, blocks by hash, transactions
//! of a block. Pure: time comes in as `now`, `getheaders`/`getdata` go out as messages to send.
//!
//! Bitcoin has no request ids, so answers are matched by type and hash: at most one
//! `getheaders` is outstanding per peer (a `headers` that connects to its locator answers it;
//! one that does not is an announcement), and a `block` answers the requests waiting for its
//! hash. At most [`MAX_BLOCKS_IN_FLIGHT`] blocks are asked for at once; the rest wait here.

mod block_queue;
mod checks;
mod error;
mod filtered;
mod prefetch;
mod request;
mod timeouts;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::{Block, BlockHash, Transaction, Txid};
use tokio::time::Instant;

use super::reason::DisconnectReason;
use crate::chain::HashedHeaders;
use crate::wire::Inventory;
use block_queue::{BlockKind, BlockQueue};
pub(crate) use checks::check_block;
pub use checks::InvalidData;
#[cfg(test)]
pub(crate) use checks::{check_headers, check_merkleblock};
use checks::{check_headers_within, check_merkleblock_within, check_pow};
pub use error::{ItemHash, RequestError};
use filtered::FilteredAssembly;
use prefetch::HeadersPrefetch;
pub use request::{FilteredBlock, Request, Response};
pub use timeouts::RequestTimeouts;

/// Blocks asked for from one peer at a time (Core's `MAX_BLOCKS_IN_TRANSIT_PER_PEER`,
/// `net_processing.cpp`).
pub const MAX_BLOCKS_IN_FLIGHT: usize = 16;
/// Block hashes one peer may have waiting (in flight or queued): Core's download window
/// (`BLOCK_DOWNLOAD_WINDOW`, 1,024).
pub const MAX_PENDING_BLOCKS: usize = 1_024;
/// Block hashes in one request: its blocks are held until all arrived, so this bounds memory.
pub const MAX_BLOCKS_PER_REQUEST: usize = 64;
/// Requests waiting on one peer at once.
pub const MAX_PENDING_REQUESTS: usize = 1_024;
/// `MSG_FILTERED_BLOCK` (`protocol.h`): `getdata` for a BIP37 `merkleblock`.
pub(crate) const MSG_FILTERED_BLOCK: u32 = 3;
/// Consecutive timed-out requests after which the peer is considered stalled and dropped.
pub const MAX_CONSECUTIVE_TIMEOUTS: u32 = 2;

/// Identifies one request on one peer.
pub(crate) type RequestId = u64;

/// What the tracker wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestEvent {
    /// Send `getheaders` with this locator and stop hash.
    SendGetHeaders {
        /// Locator to send.
        locator: Vec<BlockHash>,
        /// Stop hash to send.
        stop: BlockHash,
    },
    /// Send `getdata` for these blocks.
    SendGetData(Vec<BlockHash>),
    /// Send `getdata(MSG_FILTERED_BLOCK)` for these blocks.
    SendGetFiltered(Vec<BlockHash>),
    /// A request finished.
    Done(RequestId, Result<Response, RequestError>),
    /// The peer answered wrongly: disconnect it as misbehaving.
    Misbehaved(InvalidData),
    /// Too many requests timed out in a row: the peer stalls.
    Stalled {
        /// The timeout that expired last.
        after: Duration,
    },
}

#[derive(Debug)]
struct HeadersWait {
    id: RequestId,
    /// It started where this peer's previous full answer ended (a sync going on).
    continues: bool,
    locator: HashSet<BlockHash>,
    stop: BlockHash,
    deadline: Instant,
    timeout: Duration,
}

#[derive(Debug)]
struct BlocksWait {
    kind: BlockKind,
    hashes: Vec<BlockHash>,
    got: HashMap<BlockHash, Arc<Block>>,
    filtered: HashMap<BlockHash, FilteredBlock>,
    txids: Option<Vec<Txid>>,
    /// Set when the first of its hashes goes on the wire; progress restarts it.
    deadline: Option<Instant>,
    timeout: Duration,
}

impl BlocksWait {
    fn is_complete(&self) -> bool {
        let got = match self.kind {
            BlockKind::Full => self.got.len(),
            BlockKind::Filtered => self.filtered.len(),
        };
        got == self.hashes.len()
    }
}

/// The outstanding requests of one peer.
#[derive(Debug)]
pub(crate) struct PeerRequests {
    next_id: RequestId,
    headers: Option<HeadersWait>,
    /// The batch after a full `headers` answer, asked for at once (see [`prefetch`]).
    prefetch: HeadersPrefetch,
    blocks: BTreeMap<RequestId, BlocksWait>,
    full: BlockQueue,
    filtered: BlockQueue,
    assembly: FilteredAssembly,
    timeouts_in_a_row: u32,
    /// The network's proof-of-work limit (Core's `powLimit`) every header, block and
    /// merkleblock is checked against; the loosest (regtest's) until
    /// [`set_pow_limit`](Self::set_pow_limit).
    pow_limit: bitcoin::pow::Target,
    /// Floor for block requests (bigger than a ping-based timeout: blocks are megabytes).
    block_timeout: Duration,
    events: VecDeque<RequestEvent>,
}

impl Default for PeerRequests {
    fn default() -> Self {
        PeerRequests {
            next_id: 0,
            headers: None,
            prefetch: HeadersPrefetch::default(),
            blocks: BTreeMap::new(),
            full: BlockQueue::new(BlockKind::Full),
            filtered: BlockQueue::new(BlockKind::Filtered),
            assembly: FilteredAssembly::default(),
            timeouts_in_a_row: 0,
            pow_limit: crate::wire::pow::any_network_pow_limit(),
            block_timeout: Duration::ZERO,
            events: VecDeque::new(),
        }
    }
}

impl PeerRequests {
    #[cfg(test)]
    /// No requests.
    pub fn new() -> Self {
        Self::default()
    }

    /// No requests; block requests get at least `block_timeout` (megabytes take longer than a
    /// ping round trip suggests).
    pub fn with_block_timeout(block_timeout: Duration) -> Self {
        PeerRequests { block_timeout, ..Self::default() }
    }

    /// Checks proof of work against `limit`, the peer's network's (Core's `powLimit`,
    /// `kernel/chainparams.cpp`), instead of the loosest one of any network.
    pub(crate) fn set_pow_limit(&mut self, limit: bitcoin::pow::Target) {
        self.pow_limit = limit;
    }

    /// Next thing to do.
    pub fn poll_event(&mut self) -> Option<RequestEvent> {
        self.events.pop_front()
    }

    /// Requests still waiting.
    pub fn pending(&self) -> usize {
        self.blocks.len() + usize::from(self.headers.is_some())
    }

    /// Block hashes asked for and not yet answered (full and filtered).
    pub fn blocks_in_flight(&self) -> usize {
        self.full.in_flight_len() + self.filtered.in_flight_len()
    }

    /// True if a `block` with this hash answers a request.
    pub fn wants_block(&self, hash: &BlockHash) -> bool {
        self.full.is_in_flight(hash)
    }

    fn queue(&mut self, kind: BlockKind) -> &mut BlockQueue {
        match kind {
            BlockKind::Full => &mut self.full,
            BlockKind::Filtered => &mut self.filtered,
        }
    }

    /// Starts a request; its answer comes later as [`RequestEvent::Done`] with the returned id.
    pub fn start(
        &mut self,
        now: Instant,
        request: Request,
        timeout: Duration,
    ) -> Result<RequestId, RequestError> {
        if self.pending() >= MAX_PENDING_REQUESTS {
            return Err(RequestError::TooMany { requested: 1, limit: 0 });
        }
        let deadline = now + timeout;
        let block_timeout = timeout.max(self.block_timeout);
        match request {
            Request::Headers { locator, stop } => {
                if self.headers.is_some() {
                    return Err(RequestError::Busy);
                }
                if locator.is_empty() && stop == BlockHash::all_zeros() {
                    return Err(RequestError::Empty);
                }
                if locator.len() > crate::wire::limits::MAX_LOCATOR_SZ {
                    return Err(RequestError::TooMany {
                        requested: locator.len(),
                        limit: crate::wire::limits::MAX_LOCATOR_SZ,
                    });
                }
                let id = self.id();
                let continues = self.prefetch.continues(&locator);
                if self.take_prefetched(now, id, &locator, stop, deadline, timeout) {
                    return Ok(id);
                }
                self.headers = Some(HeadersWait {
                    id,
                    continues,
                    locator: locator.iter().copied().collect(),
                    stop,
                    deadline,
                    timeout,
                });
                self.events.push_back(RequestEvent::SendGetHeaders { locator, stop });
                Ok(id)
            }
            Request::Blocks { hashes } => {
                self.start_blocks(now, hashes, None, BlockKind::Full, block_timeout)
            }
            Request::FilteredBlocks { hashes } => {
                self.start_blocks(now, hashes, None, BlockKind::Filtered, block_timeout)
            }
            Request::Transactions { block, txids } => {
                if txids.is_empty() {
                    return Err(RequestError::Empty);
                }
                self.start_blocks(now, vec![block], Some(txids), BlockKind::Full, block_timeout)
            }
        }
    }

    fn id(&mut self) -> RequestId {
        self.next_id += 1;
        self.next_id
    }

    /// Starts a request for blocks of one kind (whole ones optionally keeping only `txids`).
    fn start_blocks(
        &mut self,
        now: Instant,
        mut hashes: Vec<BlockHash>,
        txids: Option<Vec<Txid>>,
        kind: BlockKind,
        timeout: Duration,
    ) -> Result<RequestId, RequestError> {
        let mut seen = HashSet::new();
        hashes.retain(|h| seen.insert(*h));
        if hashes.is_empty() {
            return Err(RequestError::Empty);
        }
        if hashes.len() > MAX_BLOCKS_PER_REQUEST {
            return Err(RequestError::TooMany { requested: hashes.len(), limit: MAX_BLOCKS_PER_REQUEST });
        }
        let room = MAX_PENDING_BLOCKS.saturating_sub(self.full.waiting_len() + self.filtered.waiting_len());
        if self.queue(kind).count_new(&hashes) > room {
            return Err(RequestError::TooMany { requested: hashes.len(), limit: room });
        }
        let id = self.id();
        let queue = self.queue(kind);
        for hash in &hashes {
            queue.add(*hash, id);
        }
        // A hash already on the wire for another request is this one's too: time it now.
        let deadline = queue.any_in_flight(&hashes).then(|| now + timeout);
        let wait = BlocksWait {
            kind,
            hashes,
            got: HashMap::new(),
            filtered: HashMap::new(),
            txids,
            deadline,
            timeout,
        };
        self.blocks.insert(id, wait);
        self.fill_window(now);
        Ok(id)
    }

    /// Moves queued hashes into flight, up to [`MAX_BLOCKS_IN_FLIGHT`] of both kinds (whole
    /// blocks first).
    fn fill_window(&mut self, now: Instant) {
        for kind in [BlockKind::Full, BlockKind::Filtered] {
            let mut batch = Vec::new();
            while self.blocks_in_flight() < MAX_BLOCKS_IN_FLIGHT {
                let Some(hash) = self.queue(kind).send_next() else { break };
                batch.push(hash);
            }
            if batch.is_empty() {
                continue;
            }
            self.arm(now, kind, &batch);
            self.events.push_back(match kind {
                BlockKind::Full => RequestEvent::SendGetData(batch),
                BlockKind::Filtered => RequestEvent::SendGetFiltered(batch),
            });
        }
    }

    /// A block arrived: the peer is serving, so the run of timeouts ends and every request on
    /// the wire gets its full time again. A slow but steady peer is never timed out; one that stops serving is, a timeout
    /// after its last block (Core judges block download per peer in the same spirit).
    fn progress(&mut self, now: Instant) {
        self.timeouts_in_a_row = 0;
        for wait in self.blocks.values_mut() {
            if wait.deadline.is_some() {
                wait.deadline = Some(now + wait.timeout);
            }
        }
    }

    /// Starts the clock of requests whose first hash just went on the wire: time spent queued
    /// behind the window is not the peer's fault.
    fn arm(&mut self, now: Instant, kind: BlockKind, sent: &[BlockHash]) {
        let queue = match kind {
            BlockKind::Full => &self.full,
            BlockKind::Filtered => &self.filtered,
        };
        for id in sent.iter().flat_map(|h| queue.waiters(h)) {
            if let Some(wait) = self.blocks.get_mut(id) {
                wait.deadline.get_or_insert(now + wait.timeout);
            }
        }
    }

    /// A `merkleblock` arrived. One we never asked for is misbehaviour; one whose partial
    /// merkle tree does not prove its header's root, or whose header fails its proof of work,
    /// is invalid. Its matched transactions follow as `tx` messages ([`on_tx`](Self::on_tx)).
    pub fn on_merkleblock(&mut self, now: Instant, mb: &bitcoin::MerkleBlock) {
        let hash = mb.header.block_hash();
        if !self.filtered.is_in_flight(&hash) {
            if !self.filtered.was_sent_recently(&hash) {
                self.events.push_back(RequestEvent::Misbehaved(InvalidData::UnsolicitedMerkleBlock { hash }));
            }
            return;
        }
        if self.assembly.contains(&hash) {
            // A duplicate while its transactions arrive: keep what we have.
            return;
        }
        match check_merkleblock_within(mb, self.pow_limit) {
            Ok(txids) => {
                self.assembly.start(hash, mb.header, txids);
                self.complete_filtered(now, hash);
            }
            Err(invalid) => {
                for id in self.filtered.take(&hash).unwrap_or_default() {
                    self.fail(id, RequestError::Invalid(invalid.clone()));
                }
                self.events.push_back(RequestEvent::Misbehaved(invalid));
            }
        }
    }

    /// A `tx` arrived: it may complete a filtered block. Returns true if it did belong to one.
    pub fn on_tx(&mut self, now: Instant, tx: &Transaction) -> bool {
        if !self.assembly.awaits_txs() {
            return false;
        }
        let Some(hash) = self.assembly.add_tx(tx.compute_txid(), tx) else { return false };
        self.complete_filtered(now, hash);
        true
    }

    fn complete_filtered(&mut self, now: Instant, hash: BlockHash) {
        let Some(block) = self.assembly.take_complete(&hash) else { return };
        let waiters = self.filtered.take(&hash).unwrap_or_default();
        self.progress(now);
        for id in waiters {
            let Some(wait) = self.blocks.get_mut(&id) else { continue };
            wait.filtered.insert(hash, block.clone());
            if wait.is_complete() {
                if let Some(mut wait) = self.blocks.remove(&id) {
                    let blocks = wait.hashes.iter().filter_map(|h| wait.filtered.remove(h)).collect();
                    self.events.push_back(RequestEvent::Done(id, Ok(Response::FilteredBlocks(blocks))));
                }
            }
        }
        self.fill_window(now);
    }

    /// A `headers` message arrived (after the list-size check). Answers the outstanding
    /// `getheaders` when it connects to its locator (or is empty); otherwise it is an
    /// announcement. Headers that are not chained to each other or fail their own proof of work
    /// are misbehaviour either way (Core's `CheckHeadersPoW`).
    ///
    /// Returns whether it answered a request or the prefetch (it is no announcement then).
    pub fn on_headers(&mut self, now: Instant, headers: &[Header]) -> bool {
        let known_last = self.prefetch.take_known_last(headers);
        let hashes = match check_headers_within(headers, self.pow_limit, known_last) {
            Ok(hashes) => hashes,
            Err(invalid) => {
                self.prefetch.clear();
                if let Some(wait) = self.headers.take() {
                    self.events
                        .push_back(RequestEvent::Done(wait.id, Err(RequestError::Invalid(invalid.clone()))));
                }
                self.events.push_back(RequestEvent::Misbehaved(invalid));
                return false;
            }
        };
        if self.prefetch.answers(headers.first().map(|h| h.prev_blockhash)) {
            self.prefetch.fill(now, HashedHeaders::from_parts(headers.to_vec(), hashes));
            return true;
        }
        let answers = match (&self.headers, headers.first()) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(wait), Some(first)) => {
                wait.locator.contains(&first.prev_blockhash)
                    || (wait.locator.is_empty() && hashes.first() == Some(&wait.stop))
            }
        };
        if answers {
            if let Some(wait) = self.headers.take() {
                self.timeouts_in_a_row = 0;
                // The hashes the check computed travel with the headers: hashed once.
                let headers = HashedHeaders::from_parts(headers.to_vec(), hashes);
                if wait.stop == BlockHash::all_zeros() {
                    self.follow_up(now, &headers, wait.timeout, wait.continues);
                }
                self.events.push_back(RequestEvent::Done(wait.id, Ok(Response::Headers(headers))));
                return true;
            }
        }
        false
    }

    /// A `block` with this hash arrived and was parsed (only blocks [`wants_block`] are parsed).
    ///
    /// [`wants_block`]: PeerRequests::wants_block
    pub fn on_block(&mut self, now: Instant, block: Arc<Block>) {
        let hash = block.block_hash();
        let Some(waiters) = self.full.take(&hash) else { return };
        // The hash matches what we asked for; its proof of work is checked here too (the peer
        // machine checks it before, but these checks must hold on their own).
        if let Err(invalid) = check_pow(&block.header, self.pow_limit).and_then(|_| check_block(&block)) {
            for id in waiters {
                self.fail(id, RequestError::Invalid(invalid.clone()));
            }
            self.events.push_back(RequestEvent::Misbehaved(invalid));
            return;
        }
        self.progress(now);
        for id in waiters {
            let Some(wait) = self.blocks.get_mut(&id) else { continue };
            wait.got.insert(hash, block.clone());
            if wait.is_complete() {
                if let Some(wait) = self.blocks.remove(&id) {
                    let result = finish_blocks(wait);
                    self.events.push_back(RequestEvent::Done(id, result));
                }
            }
        }
        self.fill_window(now);
    }

    /// A `notfound` arrived: requests waiting for a listed block fail.
    pub fn on_notfound(&mut self, now: Instant, items: &[Inventory]) {
        for item in items {
            // Each kind answers only its own requests.
            let (hash, kind) = match item {
                Inventory::Block(h) | Inventory::WitnessBlock(h) => (*h, BlockKind::Full),
                Inventory::Unknown { inv_type: MSG_FILTERED_BLOCK, hash } => {
                    (BlockHash::from_byte_array(*hash), BlockKind::Filtered)
                }
                _ => continue,
            };
            let queue = self.queue(kind);
            if !queue.is_in_flight(&hash) {
                continue;
            }
            let waiters = queue.take(&hash).unwrap_or_default();
            if kind == BlockKind::Filtered {
                self.assembly.drop_block(&hash);
            }
            for id in waiters {
                self.fail(id, RequestError::NotFound { hash: ItemHash::Block(hash) });
            }
        }
        self.fill_window(now);
    }

    /// Expires requests past their deadline.
    pub fn tick(&mut self, now: Instant) {
        self.prefetch.tick(now);
        let mut expired = None;
        if self.headers.as_ref().is_some_and(|w| now >= w.deadline) {
            if let Some(wait) = self.headers.take() {
                expired = Some(wait.timeout);
                self.events.push_back(RequestEvent::Done(
                    wait.id,
                    Err(RequestError::Timeout { after: wait.timeout }),
                ));
            }
        }
        let late: Vec<(RequestId, Duration)> = self
            .blocks
            .iter()
            .filter(|(_, w)| w.deadline.is_some_and(|d| now >= d))
            .map(|(id, w)| (*id, w.timeout))
            .collect();
        for (id, timeout) in late {
            expired = Some(timeout);
            self.fail(id, RequestError::Timeout { after: timeout });
        }
        if let Some(after) = expired {
            self.timeouts_in_a_row += 1;
            if self.timeouts_in_a_row >= MAX_CONSECUTIVE_TIMEOUTS {
                self.events.push_back(RequestEvent::Stalled { after });
            }
        }
        self.fill_window(now);
    }

    /// The connection ended: every request fails.
    pub fn close(&mut self, reason: &DisconnectReason) {
        let error = RequestError::Disconnected { reason: reason.clone() };
        self.prefetch.clear();
        if let Some(wait) = self.headers.take() {
            self.events.push_back(RequestEvent::Done(wait.id, Err(error.clone())));
        }
        for id in self.blocks.keys().copied().collect::<Vec<_>>() {
            self.fail(id, error.clone());
        }
        self.full.clear();
        self.filtered.clear();
        self.assembly.clear();
    }

    /// Ends one block request with an error and forgets the hashes only it waited for.
    fn fail(&mut self, id: RequestId, error: RequestError) {
        let Some(wait) = self.blocks.remove(&id) else { return };
        for hash in &wait.hashes {
            if self.queue(wait.kind).forget(id, hash) && wait.kind == BlockKind::Filtered {
                self.assembly.drop_block(hash);
            }
        }
        self.events.push_back(RequestEvent::Done(id, Err(error)));
    }
}

fn finish_blocks(mut wait: BlocksWait) -> Result<Response, RequestError> {
    let blocks: Vec<Arc<Block>> = wait.hashes.iter().filter_map(|h| wait.got.remove(h)).collect();
    let Some(txids) = wait.txids else { return Ok(Response::Blocks(blocks)) };
    let Some(block) = blocks.first() else {
        // Not reached: a request completes once it holds every block it asked for.
        return Err(RequestError::Invalid(InvalidData::UnexpectedResponse));
    };
    let by_txid: HashMap<Txid, &Transaction> =
        block.txdata.iter().map(|tx| (tx.compute_txid(), tx)).collect();
    let mut out = Vec::with_capacity(txids.len());
    for txid in txids {
        match by_txid.get(&txid) {
            Some(tx) => out.push((*tx).clone()),
            None => return Err(RequestError::NotFound { hash: ItemHash::Transaction(txid) }),
        }
    }
    Ok(Response::Transactions(out))
}

#[cfg(test)]
mod prefetch_tests;
#[cfg(test)]
mod tests;
