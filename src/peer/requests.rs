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
/// Requests waiting on one peer at once.
pub const MAX_PENDING_REQUESTS: usize = 1_024;
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
}

impl Default for RequestTimeouts {
    fn default() -> Self {
        RequestTimeouts { multiplier: 10, min: Duration::from_secs(5), max: Duration::from_secs(60) }
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
    /// Transactions of one block, by txid (taken from the whole block).
    Transactions {
        /// The block holding them.
        block: BlockHash,
        /// The transactions wanted.
        txids: Vec<Txid>,
    },
}

impl Request {
    /// The wire command this request sends.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Headers { .. } => "getheaders",
            Request::Blocks { .. } | Request::Transactions { .. } => "getdata",
        }
    }
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
    txids: Option<Vec<Txid>>,
    deadline: Instant,
    timeout: Duration,
}

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
    timeouts_in_a_row: u32,
    events: VecDeque<RequestEvent>,
}

impl PeerRequests {
    /// No requests.
    pub fn new() -> Self {
        Self::default()
    }

    /// Next thing to do.
    pub fn poll_event(&mut self) -> Option<RequestEvent> {
        self.events.pop_front()
    }

    /// Requests still waiting.
    pub fn pending(&self) -> usize {
        self.blocks.len() + usize::from(self.headers.is_some())
    }

    /// Block hashes asked for and not yet answered.
    pub fn blocks_in_flight(&self) -> usize {
        self.in_flight.len()
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
            Request::Blocks { hashes } => self.start_blocks(hashes, None, deadline, timeout),
            Request::Transactions { block, txids } => {
                if txids.is_empty() {
                    return Err(RequestError::Empty);
                }
                self.start_blocks(vec![block], Some(txids), deadline, timeout)
            }
        }
    }

    fn id(&mut self) -> RequestId {
        self.next_id += 1;
        self.next_id
    }

    fn start_blocks(
        &mut self,
        mut hashes: Vec<BlockHash>,
        txids: Option<Vec<Txid>>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<RequestId, RequestError> {
        let mut seen = HashSet::new();
        hashes.retain(|h| seen.insert(*h));
        if hashes.is_empty() {
            return Err(RequestError::Empty);
        }
        let new = hashes.iter().filter(|h| !self.waiting.contains_key(*h)).count();
        let room = MAX_PENDING_BLOCKS.saturating_sub(self.waiting.len());
        if new > room {
            return Err(RequestError::TooMany { requested: hashes.len(), limit: room });
        }
        let id = self.id();
        for hash in &hashes {
            let waiters = self.waiting.entry(*hash).or_default();
            if waiters.is_empty() {
                self.queued.push_back(*hash);
            }
            waiters.push(id);
        }
        self.blocks.insert(id, BlocksWait { hashes, got: HashMap::new(), txids, deadline, timeout });
        self.fill_window();
        Ok(id)
    }

    /// Moves queued hashes into flight, up to [`MAX_BLOCKS_IN_FLIGHT`].
    fn fill_window(&mut self) {
        let mut batch = Vec::new();
        while self.in_flight.len() < MAX_BLOCKS_IN_FLIGHT {
            let Some(hash) = self.queued.pop_front() else { break };
            if self.waiting.contains_key(&hash) && self.in_flight.insert(hash) {
                batch.push(hash);
            }
        }
        if !batch.is_empty() {
            self.events.push_back(RequestEvent::SendGetData(batch));
        }
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
        for id in waiters {
            let Some(wait) = self.blocks.get_mut(&id) else { continue };
            wait.got.insert(hash, block.clone());
            // Progress restarts the clock: a long list is judged block by block.
            wait.deadline = now + wait.timeout;
            if wait.got.len() == wait.hashes.len() {
                if let Some(wait) = self.blocks.remove(&id) {
                    let result = finish_blocks(wait);
                    self.events.push_back(RequestEvent::Done(id, result));
                }
            }
        }
        self.fill_window();
    }

    /// A `notfound` arrived: requests waiting for a listed block fail.
    pub fn on_notfound(&mut self, items: &[Inventory]) {
        for item in items {
            let hash = match item {
                Inventory::Block(h) | Inventory::WitnessBlock(h) => *h,
                _ => continue,
            };
            if !self.in_flight.remove(&hash) {
                continue;
            }
            if let Some(waiters) = self.waiting.remove(&hash) {
                for id in waiters {
                    self.fail(id, RequestError::NotFound { hash: hash.to_string() });
                }
            }
        }
        self.fill_window();
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
        let late: Vec<(RequestId, Duration)> =
            self.blocks.iter().filter(|(_, w)| now >= w.deadline).map(|(id, w)| (*id, w.timeout)).collect();
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
        self.fill_window();
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
