//! The broadcast cache (pure: no actix, no clock reads). Transactions we broadcast, and in
//! relay mode those we pass on, are kept here for a while so peers that ask (`getdata`) are
//! served; callers of `BroadcastTransaction` wait here, each until its own deadline, until
//! enough peers asked or a block confirmed the transaction.
//!
//! Every method returns the answers due to waiters; the shell delivers them. `W` is whatever
//! the shell uses to reply (a oneshot sender), so tests can use plain numbers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::{Block, BlockHash, Transaction, Txid, Wtxid};
use tokio::time::Instant;

use super::messages::{BroadcastError, BroadcastOutcome, GroupError};
use crate::peer::{Link, PeerId};
use crate::wire::Inventory;

/// Transactions being broadcast (or recently broadcast), bounded.
pub const MAX_BROADCASTS: usize = 1_000;
/// Callers waiting on one transaction at once (repeated broadcasts of the same transaction).
pub const MAX_WAITERS_PER_TX: usize = 64;
/// How long a broadcast transaction stays available to peers that ask late.
pub const BROADCAST_TTL: Duration = Duration::from_secs(30 * 60);

/// An answer due to one waiter.
pub(crate) type Answer<W> = (W, Result<BroadcastOutcome, BroadcastError>);

/// Where a transaction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `BroadcastTransaction`: rebroadcast to outbound newcomers until confirmed or expired.
    Ours,
    /// Relay mode: learned from a peer, passed on once.
    Relayed,
}

/// What a `getdata` from one peer gets from the cache.
#[derive(Debug)]
pub(crate) struct Served<W> {
    /// Transactions to send, in the order asked, each at most once.
    pub txs: Vec<Transaction>,
    /// Transaction items we do not have (answered with `notfound`, so the peer asks another
    /// announcer, as Core does).
    pub not_found: Vec<Inventory>,
    /// A segwit transaction was asked for without its witness (the peer needs us to advertise
    /// NODE_WITNESS); it was served stripped and does not count as requested.
    pub stripped_segwit: bool,
    /// Waiters whose peer count was reached.
    pub answers: Vec<Answer<W>>,
}

struct Waiter<W> {
    min_peers: usize,
    deadline: Instant,
    reply: W,
}

struct PendingTx<W> {
    tx: Arc<Transaction>,
    txid: Txid,
    wtxid: Wtxid,
    announced_to: usize,
    requested: HashSet<PeerId>,
    waiters: Vec<Waiter<W>>,
    expires: Instant,
    rebroadcast: bool,
    confirmed_in: Option<BlockHash>,
}

impl<W> PendingTx<W> {
    fn outcome(&self) -> BroadcastOutcome {
        BroadcastOutcome {
            txid: self.txid,
            wtxid: self.wtxid,
            announced_to: self.announced_to,
            requested_by: self.requested.len(),
            confirmed_in: self.confirmed_in,
        }
    }

    /// The transaction as requested: without witness data for a plain MSG_TX request (BIP144).
    /// The flag says whether the request counts: a segwit transaction stripped of its witness is
    /// invalid (peers older than wtxidrelay ask like this unless we advertise NODE_WITNESS).
    fn serve(&self, witness: bool) -> (Transaction, bool) {
        let mut tx = (*self.tx).clone();
        let has_witness = tx.input.iter().any(|i| !i.witness.is_empty());
        if !witness {
            for input in &mut tx.input {
                input.witness.clear();
            }
        }
        (tx, witness || !has_witness)
    }

    /// Answers the waiters whose peer count is reached.
    fn resolve_reached(&mut self, answers: &mut Vec<Answer<W>>) {
        let n = self.requested.len();
        if !self.waiters.iter().any(|w| n >= w.min_peers) {
            return;
        }
        let outcome = self.outcome();
        let (done, waiting): (Vec<_>, Vec<_>) = self.waiters.drain(..).partition(|w| n >= w.min_peers);
        self.waiters = waiting;
        answers.extend(done.into_iter().map(|w| (w.reply, Ok(outcome.clone()))));
    }
}

/// The cache: bounded by [`MAX_BROADCASTS`] transactions of [`MAX_WAITERS_PER_TX`] waiters.
pub(crate) struct Broadcasts<W> {
    by_txid: HashMap<Txid, PendingTx<W>>,
    by_wtxid: HashMap<Wtxid, Txid>,
}

impl<W> Default for Broadcasts<W> {
    fn default() -> Self {
        Broadcasts { by_txid: HashMap::new(), by_wtxid: HashMap::new() }
    }
}

impl<W> Broadcasts<W> {
    /// Transactions held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_txid.len()
    }

    /// True when nothing is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_txid.is_empty()
    }

    /// The cached transaction, to announce.
    pub fn get(&self, txid: &Txid) -> Option<Arc<Transaction>> {
        self.by_txid.get(txid).map(|b| b.tx.clone())
    }

    /// Admission, for our broadcasts and relayed transactions alike: `Ok(true)` if the
    /// transaction was added, `Ok(false)` if it was already held (it keeps its origin), `Busy`
    /// if the cache is full of transactions that still have waiters.
    pub fn admit(
        &mut self,
        tx: Arc<Transaction>,
        origin: Origin,
        now: Instant,
    ) -> Result<bool, BroadcastError> {
        let txid = tx.compute_txid();
        if self.by_txid.contains_key(&txid) {
            return Ok(false);
        }
        if self.by_txid.len() >= MAX_BROADCASTS {
            // Full: everything nobody waits for makes room.
            self.expire(now + BROADCAST_TTL);
        }
        if self.by_txid.len() >= MAX_BROADCASTS {
            return Err(BroadcastError::Busy);
        }
        let wtxid = tx.compute_wtxid();
        self.by_wtxid.insert(wtxid, txid);
        self.by_txid.insert(
            txid,
            PendingTx {
                tx,
                txid,
                wtxid,
                announced_to: 0,
                requested: HashSet::new(),
                waiters: Vec::new(),
                expires: now + BROADCAST_TTL,
                rebroadcast: origin == Origin::Ours,
                confirmed_in: None,
            },
        );
        Ok(true)
    }

    /// The transaction was announced to `peers` ready peers at once.
    pub fn announced(&mut self, txid: &Txid, peers: usize) {
        if let Some(b) = self.by_txid.get_mut(txid) {
            b.announced_to = b.announced_to.max(peers);
        }
    }

    /// A caller waits until `min_peers` peers asked for the transaction, or until its own
    /// `deadline`. Answers at once when the count is already reached, and with `Busy` when too
    /// many callers wait on it. Waiting keeps the transaction available for another TTL.
    pub fn wait(
        &mut self,
        txid: &Txid,
        min_peers: usize,
        deadline: Instant,
        reply: W,
        now: Instant,
    ) -> Vec<Answer<W>> {
        let Some(b) = self.by_txid.get_mut(txid) else {
            return vec![(reply, Err(BroadcastError::Group(GroupError::Closed)))];
        };
        if b.waiters.len() >= MAX_WAITERS_PER_TX {
            return vec![(reply, Err(BroadcastError::Busy))];
        }
        b.expires = now + BROADCAST_TTL;
        b.waiters.push(Waiter { min_peers: min_peers.max(1), deadline, reply });
        let mut answers = Vec::new();
        b.resolve_reached(&mut answers);
        answers
    }

    /// Fails the waiters whose own deadline passed (the others keep waiting).
    pub fn expire_waiters(&mut self, now: Instant) -> Vec<Answer<W>> {
        let mut answers = Vec::new();
        for b in self.by_txid.values_mut() {
            if !b.waiters.iter().any(|w| w.deadline <= now) {
                continue;
            }
            let requested_by = b.requested.len();
            let (late, waiting): (Vec<_>, Vec<_>) = b.waiters.drain(..).partition(|w| w.deadline <= now);
            b.waiters = waiting;
            answers.extend(
                late.into_iter().map(|w| {
                    (w.reply, Err(BroadcastError::Timeout { requested_by, min_peers: w.min_peers }))
                }),
            );
        }
        answers
    }

    /// Drops the transactions past their TTL that nobody waits for.
    pub fn expire(&mut self, now: Instant) {
        let gone: Vec<Txid> = self
            .by_txid
            .iter()
            .filter(|(_, b)| b.expires <= now && b.waiters.is_empty())
            .map(|(t, _)| *t)
            .collect();
        for txid in gone {
            if let Some(b) = self.by_txid.remove(&txid) {
                self.by_wtxid.remove(&b.wtxid);
            }
        }
    }

    /// What to send a peer for its `getdata`; its requests count towards the waiters.
    pub fn get_data(&mut self, peer: PeerId, items: &[Inventory]) -> Served<W> {
        let mut served =
            Served { txs: Vec::new(), not_found: Vec::new(), stripped_segwit: false, answers: Vec::new() };
        let mut seen = HashSet::new();
        for item in items {
            let (txid, witness) = match item {
                Inventory::Transaction(t) => (Some(*t), false),
                Inventory::WitnessTransaction(t) => (Some(*t), true),
                Inventory::WTx(w) => (self.by_wtxid.get(w).copied(), true),
                // Blocks and the rest are not ours to answer.
                _ => continue,
            };
            let Some(b) = txid.and_then(|t| self.by_txid.get_mut(&t)) else {
                served.not_found.push(*item);
                continue;
            };
            // Each transaction once per request, however often the peer lists it.
            if !seen.insert((b.wtxid, witness)) {
                continue;
            }
            let (tx, counts) = b.serve(witness);
            served.txs.push(tx);
            if counts {
                b.requested.insert(peer);
                b.resolve_reached(&mut served.answers);
            } else {
                served.stripped_segwit = true;
            }
        }
        served
    }

    /// A block of the best chain arrived: the transactions in it are confirmed (their waiters
    /// are answered and rebroadcasting stops). Answers the newly confirmed txids too.
    pub fn confirm(&mut self, block: &Block) -> (Vec<Txid>, Vec<Answer<W>>) {
        let mut confirmed = Vec::new();
        let mut answers = Vec::new();
        if self.by_txid.is_empty() {
            return (confirmed, answers);
        }
        let hash = block.block_hash();
        for tx in &block.txdata {
            let Some(b) = self.by_txid.get_mut(&tx.compute_txid()) else { continue };
            if b.confirmed_in.is_none() {
                b.confirmed_in = Some(hash);
                confirmed.push(b.txid);
                let outcome = b.outcome();
                answers.extend(b.waiters.drain(..).map(|w| (w.reply, Ok(outcome.clone()))));
            }
        }
        (confirmed, answers)
    }

    /// Our unconfirmed broadcasts for a peer that just became ready — outbound ones only: an
    /// inbound spy connecting would learn which transactions are ours.
    pub fn for_newcomer(&mut self, link: Link, now: Instant) -> Vec<Arc<Transaction>> {
        if link != Link::Outbound {
            return Vec::new();
        }
        self.by_txid
            .values_mut()
            .filter(|b| b.rebroadcast && b.confirmed_in.is_none() && b.expires > now)
            .map(|b| {
                b.announced_to += 1;
                b.tx.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
