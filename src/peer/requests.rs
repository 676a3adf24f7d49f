//! Requests to one peer that return results: headers for a locator, blocks by hash, transactions
//! of a block. Pure: time comes in as `now`, `getheaders`/`getdata` go out as messages to send.
//!
//! Bitcoin has no request ids, so answers are matched by type and hash: at most one
//! `getheaders` is outstanding per peer (a `headers` that connects to its locator answers it;
//! one that does not is an announcement), and a `block` answers the requests waiting for its
//! hash. At most [`MAX_BLOCKS_IN_FLIGHT`] blocks are asked for at once; the rest wait here.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::{Block, BlockHash, Transaction, Txid};
use serde::Serialize;
use tokio::time::Instant;

use crate::wire::Inventory;

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
pub const MSG_FILTERED_BLOCK: u32 = 3;
/// Consecutive timed-out requests after which the peer is considered stalled and dropped.
pub const MAX_CONSECUTIVE_TIMEOUTS: u32 = 2;

/// How long a request may wait: the peer's ping latency times `multiplier` (bitcoin-net's
/// `latency × 10`), kept between `min` and `max`; `max` while no latency is known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeouts {
    /// Factor applied to the measured round trip.
    pub multiplier: u32,
    /// Floor: even a 1 ms loopback peer gets this long.
    pub min: Duration,
    /// Cap, also used before the first ping is answered.
    pub max: Duration,
    /// Floor for block requests (Core allows 10 min per block; we can ask another peer).
    pub block: Duration,
}

impl Default for RequestTimeouts {
    fn default() -> Self {
        RequestTimeouts {
            multiplier: 10,
            min: Duration::from_secs(5),
            max: Duration::from_secs(60),
            block: Duration::from_secs(60),
        }
    }
}

impl RequestTimeouts {
    /// The timeout for a peer whose last measured round trip is `latency`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use btcpeer::peer::requests::RequestTimeouts;
    /// let t = RequestTimeouts::default();
    /// assert_eq!(t.for_latency(Some(Duration::from_secs(2))), Duration::from_secs(20));
    /// assert_eq!(t.for_latency(Some(Duration::from_millis(1))), t.min);
    /// assert_eq!(t.for_latency(None), t.max);
    /// ```
    pub fn for_latency(&self, latency: Option<Duration>) -> Duration {
        match latency {
            Some(l) => l.saturating_mul(self.multiplier).clamp(self.min, self.max.max(self.min)),
            None => self.max.max(self.min),
        }
    }
}

/// Identifies one request on one peer.
pub type RequestId = u64;

/// What to ask a peer for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `getheaders`: headers after the first locator hash the peer has, up to `stop` (all zeros:
    /// up to 2,000).
    Headers {
        /// Block locator, newest first (at most 101).
        locator: Vec<BlockHash>,
        /// Last header wanted.
        stop: BlockHash,
    },
    /// `getdata` for whole blocks, answered in the order asked.
    Blocks {
        /// The blocks wanted.
        hashes: Vec<BlockHash>,
    },
    /// BIP37 filtered blocks (`getdata(MSG_FILTERED_BLOCK)`): each header with the transactions
    /// matching the filter loaded on the peer (send `filterload` first). Only peers offering
    /// NODE_BLOOM serve them (Core drops a peer asking without it).
    FilteredBlocks {
        /// The blocks wanted.
        hashes: Vec<BlockHash>,
    },
    /// Transactions of one block, by txid (taken from the whole block).
    Transactions {
        /// The block holding them.
        block: BlockHash,
        /// The transactions wanted.
        txids: Vec<Txid>,
    },
}

/// A request's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Headers in chain order (empty: the peer has nothing after the locator).
    Headers(Vec<Header>),
    /// Blocks in the order asked.
    Blocks(Vec<Arc<Block>>),
    /// Transactions in the order asked.
    Transactions(Vec<Transaction>),
    /// Filtered blocks in the order asked.
    FilteredBlocks(Vec<FilteredBlock>),
}

/// A block as a BIP37 `merkleblock` shows it: the header, the matching txids (proven against
/// the header's merkle root) and those transactions, in block order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredBlock {
    /// The block header.
    pub header: Header,
    /// Transactions matching the filter, in block order.
    pub transactions: Vec<Transaction>,
}

/// Why a request produced no result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RequestError {
    /// The peer has not completed its handshake, or is gone.
    #[error("peer is not ready")]
    NotReady,
    /// One `getheaders` is already outstanding on this peer (answers cannot be told apart).
    #[error("a getheaders request is already outstanding on this peer")]
    Busy,
    /// Nothing was asked for.
    #[error("empty request")]
    Empty,
    /// The peer cannot serve this kind of request.
    #[error("peer does not offer {service}")]
    Unsupported {
        /// The missing service.
        service: String,
    },
    /// More than the peer-level bounds allow.
    #[error("{requested} items requested; at most {limit} may wait on one peer")]
    TooMany {
        /// Items in this request.
        requested: usize,
        /// Room left.
        limit: usize,
    },
    /// No answer in time.
    #[error("no answer within {secs:.1}s", secs = after.as_secs_f64())]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The peer said it does not have an item (`notfound`), or a block lacked a transaction.
    #[error("peer does not have {hash}")]
    NotFound {
        /// The first missing block hash or txid (hex).
        hash: String,
    },
    /// The answer was wrong (bad linkage, PoW or merkle root); the peer is dropped.
    #[error("invalid answer: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
    /// The connection ended first.
    #[error("peer disconnected: {reason}")]
    Disconnected {
        /// Why it ended.
        reason: String,
    },
    /// No ready peer could take the request (group level).
    #[error("no ready peer can serve the request")]
    NoPeers,
    /// Every attempt failed (group level); `last` is the final failure.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made, each on a different peer when one was available.
        attempts: u32,
        /// The last attempt's error.
        last: Box<RequestError>,
    },
}

impl RequestError {
    /// True when another peer might succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RequestError::NotReady
                | RequestError::Busy
                | RequestError::Timeout { .. }
                | RequestError::NotFound { .. }
                | RequestError::Invalid { .. }
                | RequestError::Disconnected { .. }
                | RequestError::TooMany { .. }
        )
    }
}

/// What the tracker wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestEvent {
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
    Misbehaved(String),
    /// Too many requests timed out in a row: the peer stalls.
    Stalled {
        /// The timeout that expired last.
        after: Duration,
    },
}

#[derive(Debug)]
struct HeadersWait {
    id: RequestId,
    locator: HashSet<BlockHash>,
    stop: BlockHash,
    deadline: Instant,
    timeout: Duration,
}

#[derive(Debug)]
struct BlocksWait {
    hashes: Vec<BlockHash>,
    got: HashMap<BlockHash, Arc<Block>>,
    filtered: HashMap<BlockHash, FilteredBlock>,
    txids: Option<Vec<Txid>>,
    /// Set when the first of its hashes goes on the wire; progress restarts it.
    deadline: Option<Instant>,
    timeout: Duration,
}

/// A `merkleblock` received, waiting for its matched transactions.
#[derive(Debug)]
struct PartialFiltered {
    header: Header,
    txids: Vec<Txid>,
    got: HashMap<Txid, Transaction>,
}

/// Filtered blocks remembered as asked for, so a late answer is not taken as unsolicited.
const RECENT_FILTERED: usize = 4_096;

/// The outstanding requests of one peer.
#[derive(Debug, Default)]
pub struct PeerRequests {
    next_id: RequestId,
    headers: Option<HeadersWait>,
    blocks: BTreeMap<RequestId, BlocksWait>,
    /// Block hash → requests waiting for it.
    waiting: HashMap<BlockHash, Vec<RequestId>>,
    in_flight: HashSet<BlockHash>,
    queued: VecDeque<BlockHash>,
    /// Filtered-block hash → requests waiting for it.
    f_waiting: HashMap<BlockHash, Vec<RequestId>>,
    f_in_flight: HashSet<BlockHash>,
    f_queued: VecDeque<BlockHash>,
    f_partial: HashMap<BlockHash, PartialFiltered>,
    /// Matched txid → the filtered block it completes.
    f_txs: HashMap<Txid, BlockHash>,
    f_recent: VecDeque<BlockHash>,
    timeouts_in_a_row: u32,
    /// Floor for block requests (bigger than a ping-based timeout: blocks are megabytes).
    block_timeout: Duration,
    events: VecDeque<RequestEvent>,
}

impl PeerRequests {
    /// No requests.
    pub fn new() -> Self {
        Self::default()
    }

    /// No requests; block requests get at least `block_timeout` (megabytes take longer than a
    /// ping round trip suggests).
    pub fn with_block_timeout(block_timeout: Duration) -> Self {
        PeerRequests { block_timeout, ..Self::default() }
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
        self.in_flight.len() + self.f_in_flight.len()
    }

    /// True if a `block` with this hash answers a request.
    pub fn wants_block(&self, hash: &BlockHash) -> bool {
        self.in_flight.contains(hash)
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
                self.headers = Some(HeadersWait {
                    id,
                    locator: locator.iter().copied().collect(),
                    stop,
                    deadline,
                    timeout,
                });
                self.events.push_back(RequestEvent::SendGetHeaders { locator, stop });
                Ok(id)
            }
            Request::Blocks { hashes } => self.start_blocks(now, hashes, None, false, block_timeout),
            Request::FilteredBlocks { hashes } => self.start_blocks(now, hashes, None, true, block_timeout),
            Request::Transactions { block, txids } => {
                if txids.is_empty() {
                    return Err(RequestError::Empty);
                }
                self.start_blocks(now, vec![block], Some(txids), false, block_timeout)
            }
        }
    }

    fn id(&mut self) -> RequestId {
        self.next_id += 1;
        self.next_id
    }

    /// Starts a request for whole blocks (`filtered == false`, optionally keeping only some
    /// transactions) or for filtered blocks.
    fn start_blocks(
        &mut self,
        now: Instant,
        mut hashes: Vec<BlockHash>,
        txids: Option<Vec<Txid>>,
        filtered: bool,
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
        let room = MAX_PENDING_BLOCKS.saturating_sub(self.waiting.len() + self.f_waiting.len());
        let (waiting, queued) = if filtered {
            (&mut self.f_waiting, &mut self.f_queued)
        } else {
            (&mut self.waiting, &mut self.queued)
        };
        let new = hashes.iter().filter(|h| !waiting.contains_key(*h)).count();
        if new > room {
            return Err(RequestError::TooMany { requested: hashes.len(), limit: room });
        }
        self.next_id += 1;
        let id = self.next_id;
        for hash in &hashes {
            let waiters = waiting.entry(*hash).or_default();
            if waiters.is_empty() {
                queued.push_back(*hash);
            }
            waiters.push(id);
        }
        // A hash already on the wire for another request is this one's too: time it now.
        let in_flight = if filtered { &self.f_in_flight } else { &self.in_flight };
        let deadline = hashes.iter().any(|h| in_flight.contains(h)).then(|| now + timeout);
        let wait =
            BlocksWait { hashes, got: HashMap::new(), filtered: HashMap::new(), txids, deadline, timeout };
        self.blocks.insert(id, wait);
        self.fill_window(now);
        Ok(id)
    }

    /// Moves queued hashes into flight, up to [`MAX_BLOCKS_IN_FLIGHT`] of both kinds.
    fn fill_window(&mut self, now: Instant) {
        let mut batch = Vec::new();
        while self.blocks_in_flight() < MAX_BLOCKS_IN_FLIGHT {
            let Some(hash) = self.queued.pop_front() else { break };
            if self.waiting.contains_key(&hash) && self.in_flight.insert(hash) {
                batch.push(hash);
            }
        }
        self.arm(now, &batch, false);
        if !batch.is_empty() {
            self.events.push_back(RequestEvent::SendGetData(batch));
        }
        let mut batch = Vec::new();
        while self.blocks_in_flight() < MAX_BLOCKS_IN_FLIGHT {
            let Some(hash) = self.f_queued.pop_front() else { break };
            if self.f_waiting.contains_key(&hash) && self.f_in_flight.insert(hash) {
                self.f_recent.push_back(hash);
                if self.f_recent.len() > RECENT_FILTERED {
                    self.f_recent.pop_front();
                }
                batch.push(hash);
            }
        }
        self.arm(now, &batch, true);
        if !batch.is_empty() {
            self.events.push_back(RequestEvent::SendGetFiltered(batch));
        }
    }

    /// A block arrived: the peer is serving, so every request on the wire gets its full time
    /// again. A slow but steady peer is never timed out; one that stops serving is, a timeout
    /// after its last block (Core judges block download per peer in the same spirit).
    fn progress(&mut self, now: Instant) {
        for wait in self.blocks.values_mut() {
            if wait.deadline.is_some() {
                wait.deadline = Some(now + wait.timeout);
            }
        }
    }

    /// Starts the clock of requests whose first hash just went on the wire: time spent queued
    /// behind the window is not the peer's fault.
    fn arm(&mut self, now: Instant, sent: &[BlockHash], filtered: bool) {
        let waiting = if filtered { &self.f_waiting } else { &self.waiting };
        for id in sent.iter().filter_map(|h| waiting.get(h)).flatten() {
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
        if !self.f_in_flight.contains(&hash) {
            if !self.f_recent.contains(&hash) {
                self.events.push_back(RequestEvent::Misbehaved(format!("unsolicited merkleblock {hash}")));
            }
            return;
        }
        if self.f_partial.contains_key(&hash) {
            // A duplicate while its transactions arrive: keep what we have.
            return;
        }
        let mut txids = Vec::new();
        let mut indexes = Vec::new();
        let problem = if mb.header.validate_pow(mb.header.target()).is_err() {
            Some(format!("merkleblock {hash} fails its proof of work"))
        } else if let Err(e) = mb.extract_matches(&mut txids, &mut indexes) {
            Some(format!("merkleblock {hash} does not prove its merkle root: {e}"))
        } else {
            None
        };
        if let Some(reason) = problem {
            self.f_in_flight.remove(&hash);
            for id in self.f_waiting.remove(&hash).unwrap_or_default() {
                self.fail(id, RequestError::Invalid { reason: reason.clone() });
            }
            self.events.push_back(RequestEvent::Misbehaved(reason));
            return;
        }
        for txid in &txids {
            self.f_txs.insert(*txid, hash);
        }
        self.f_partial.insert(hash, PartialFiltered { header: mb.header, txids, got: HashMap::new() });
        self.complete_filtered(now, hash);
    }

    /// A `tx` arrived: it may complete a filtered block. Returns true if it did belong to one.
    pub fn on_tx(&mut self, now: Instant, tx: &Transaction) -> bool {
        if self.f_txs.is_empty() {
            return false;
        }
        let txid = tx.compute_txid();
        let Some(hash) = self.f_txs.remove(&txid) else { return false };
        if let Some(p) = self.f_partial.get_mut(&hash) {
            p.got.insert(txid, tx.clone());
        }
        self.complete_filtered(now, hash);
        true
    }

    fn complete_filtered(&mut self, now: Instant, hash: BlockHash) {
        let done = self.f_partial.get(&hash).is_some_and(|p| p.got.len() == p.txids.len());
        if !done {
            return;
        }
        let Some(mut p) = self.f_partial.remove(&hash) else { return };
        let transactions = p.txids.iter().filter_map(|t| p.got.remove(t)).collect();
        let block = FilteredBlock { header: p.header, transactions };
        self.f_in_flight.remove(&hash);
        self.timeouts_in_a_row = 0;
        self.progress(now);
        for id in self.f_waiting.remove(&hash).unwrap_or_default() {
            let Some(wait) = self.blocks.get_mut(&id) else { continue };
            wait.filtered.insert(hash, block.clone());
            if wait.filtered.len() == wait.hashes.len() {
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
    pub fn on_headers(&mut self, headers: &[Header]) {
        if let Some(reason) = check_headers(headers) {
            if let Some(wait) = self.headers.take() {
                self.events.push_back(RequestEvent::Done(
                    wait.id,
                    Err(RequestError::Invalid { reason: reason.clone() }),
                ));
            }
            self.events.push_back(RequestEvent::Misbehaved(reason));
            return;
        }
        let answers = match (&self.headers, headers.first()) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(wait), Some(first)) => {
                wait.locator.contains(&first.prev_blockhash)
                    || (wait.locator.is_empty() && first.block_hash() == wait.stop)
            }
        };
        if answers {
            if let Some(wait) = self.headers.take() {
                self.timeouts_in_a_row = 0;
                self.events.push_back(RequestEvent::Done(wait.id, Ok(Response::Headers(headers.to_vec()))));
            }
        }
    }

    /// A `block` with this hash arrived and was parsed (only blocks [`wants_block`] are parsed).
    ///
    /// [`wants_block`]: PeerRequests::wants_block
    pub fn on_block(&mut self, now: Instant, block: Arc<Block>) {
        let hash = block.block_hash();
        if !self.in_flight.remove(&hash) {
            return;
        }
        let Some(waiters) = self.waiting.remove(&hash) else { return };
        if let Some(reason) = check_block(&block) {
            for id in waiters {
                self.fail(id, RequestError::Invalid { reason: reason.clone() });
            }
            self.events.push_back(RequestEvent::Misbehaved(reason));
            return;
        }
        self.timeouts_in_a_row = 0;
        self.progress(now);
        for id in waiters {
            let Some(wait) = self.blocks.get_mut(&id) else { continue };
            wait.got.insert(hash, block.clone());
            if wait.got.len() == wait.hashes.len() {
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
            let (hash, filtered) = match item {
                Inventory::Block(h) | Inventory::WitnessBlock(h) => (*h, false),
                Inventory::Unknown { inv_type: MSG_FILTERED_BLOCK, hash } => {
                    (BlockHash::from_byte_array(*hash), true)
                }
                _ => continue,
            };
            if filtered {
                if !self.f_in_flight.remove(&hash) {
                    continue;
                }
                if let Some(p) = self.f_partial.remove(&hash) {
                    for t in &p.txids {
                        self.f_txs.remove(t);
                    }
                }
                for id in self.f_waiting.remove(&hash).unwrap_or_default() {
                    self.fail(id, RequestError::NotFound { hash: hash.to_string() });
                }
                continue;
            }
            if !self.in_flight.remove(&hash) {
                continue;
            }
            if let Some(waiters) = self.waiting.remove(&hash) {
                for id in waiters {
                    self.fail(id, RequestError::NotFound { hash: hash.to_string() });
                }
            }
        }
        self.fill_window(now);
    }

    /// Expires requests past their deadline.
    pub fn tick(&mut self, now: Instant) {
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
    pub fn close(&mut self, reason: &str) {
        if let Some(wait) = self.headers.take() {
            self.events.push_back(RequestEvent::Done(
                wait.id,
                Err(RequestError::Disconnected { reason: reason.to_owned() }),
            ));
        }
        for id in self.blocks.keys().copied().collect::<Vec<_>>() {
            self.fail(id, RequestError::Disconnected { reason: reason.to_owned() });
        }
        self.queued.clear();
        self.in_flight.clear();
        self.waiting.clear();
        self.f_queued.clear();
        self.f_in_flight.clear();
        self.f_waiting.clear();
        self.f_partial.clear();
        self.f_txs.clear();
    }

    /// Ends one block request with an error and forgets the hashes only it waited for.
    fn fail(&mut self, id: RequestId, error: RequestError) {
        let Some(wait) = self.blocks.remove(&id) else { return };
        for hash in &wait.hashes {
            if let Some(waiters) = self.waiting.get_mut(hash) {
                waiters.retain(|w| *w != id);
                if waiters.is_empty() {
                    self.waiting.remove(hash);
                    // A late answer for it is harmless: `on_block` ignores unknown hashes.
                    self.in_flight.remove(hash);
                }
            }
            if let Some(waiters) = self.f_waiting.get_mut(hash) {
                waiters.retain(|w| *w != id);
                if waiters.is_empty() {
                    self.f_waiting.remove(hash);
                    self.f_in_flight.remove(hash);
                    if let Some(p) = self.f_partial.remove(hash) {
                        for t in &p.txids {
                            self.f_txs.remove(t);
                        }
                    }
                }
            }
        }
        self.events.push_back(RequestEvent::Done(id, Err(error)));
    }
}

fn finish_blocks(mut wait: BlocksWait) -> Result<Response, RequestError> {
    let blocks: Vec<Arc<Block>> = wait.hashes.iter().filter_map(|h| wait.got.remove(h)).collect();
    let Some(txids) = wait.txids else { return Ok(Response::Blocks(blocks)) };
    let Some(block) = blocks.first() else {
        return Err(RequestError::Invalid { reason: "block missing".into() });
    };
    let by_txid: HashMap<Txid, &Transaction> =
        block.txdata.iter().map(|tx| (tx.compute_txid(), tx)).collect();
    let mut out = Vec::with_capacity(txids.len());
    for txid in txids {
        match by_txid.get(&txid) {
            Some(tx) => out.push((*tx).clone()),
            None => return Err(RequestError::NotFound { hash: txid.to_string() }),
        }
    }
    Ok(Response::Transactions(out))
}

/// Why a list of headers is invalid on its own (not chained, or a hash above its own target),
/// or `None`. Contextual rules (difficulty, time) belong to the header chain.
pub fn check_headers(headers: &[Header]) -> Option<String> {
    let mut prev: Option<BlockHash> = None;
    for (i, header) in headers.iter().enumerate() {
        if let Some(p) = prev {
            if header.prev_blockhash != p {
                return Some(format!("header {i} does not follow header {}", i.saturating_sub(1)));
            }
        }
        match header.validate_pow(header.target()) {
            Ok(hash) => prev = Some(hash),
            Err(_) => return Some(format!("header {} fails its proof of work", header.block_hash())),
        }
    }
    None
}

/// Why a block's contents do not match its header (a mutated block), or `None`.
pub fn check_block(block: &Block) -> Option<String> {
    if block.txdata.is_empty() {
        return Some(format!("block {} has no transactions", block.block_hash()));
    }
    // A duplicated transaction keeps the merkle root (CVE-2012-2459, Core's `IsBlockMutated`).
    let mut seen = HashSet::with_capacity(block.txdata.len());
    if !block.txdata.iter().all(|tx| seen.insert(tx.compute_txid())) {
        return Some(format!("block {} has a duplicate transaction", block.block_hash()));
    }
    // Without a coinbase first the block is invalid, and 64-byte transactions could pass for
    // inner merkle nodes (Core's `IsBlockMutated`); with one, 64-byte transactions are valid.
    if !block.txdata[0].is_coinbase() {
        return Some(format!("block {} does not start with a coinbase", block.block_hash()));
    }
    if !block.check_merkle_root() {
        return Some(format!("block {} does not match its merkle root", block.block_hash()));
    }
    if !block.check_witness_commitment() {
        return Some(format!("block {} has a bad witness commitment", block.block_hash()));
    }
    None
}

#[cfg(test)]
mod tests;
