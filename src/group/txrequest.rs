//! Which peer to ask for each announced transaction, once per group: a pure version of Core's
//! `TxRequestTracker` (`txrequest.h`/`txrequest.cpp`) with the policy of its transaction
//! download manager (`node/txdownloadman.h`, `TxDownloadManagerImpl::AddTxAnnouncement` and
//! `GetRequestsToSend`). No clock and no I/O: every input carries `now`.
//!
//! Each transaction is requested from one announcer at a time. Announcements become
//! requestable after a delay (none for preferred, outbound peers; +2 s for others, for txid
//! announcements while some peer relays by wtxid, and for peers with 100 requests in flight);
//! among the requestable ones preferred peers go first, then the earliest announcement (Core
//! breaks ties with a salted random priority; the delays already keep a fast inbound announcer
//! from winning). A request answered by `notfound` or unanswered for 60 s moves to the next
//! announcer. A received transaction is forgotten and remembered in a bounded recently-seen set,
//! so later announcements of it are ignored.
//!
//! Bounds: at most [`MAX_PEER_TX_ANNOUNCEMENTS`] announcements per peer (the excess is
//! ignored), [`MAX_PEER_TX_REQUEST_IN_FLIGHT`] requests in flight per peer, and
//! [`MAX_RECENTLY_SEEN`] remembered hashes; peers are tracked only while connected, so every map
//! is bounded by the number of peers times the per-peer cap.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use bitcoin::hashes::Hash as _;
use bitcoin::{Txid, Wtxid};

use crate::peer::machine::RecentSet;
use crate::peer::PeerId;
use crate::wire::Inventory;

/// Announcements tracked per peer; more are ignored (`MAX_PEER_TX_ANNOUNCEMENTS`,
/// `node/txdownloadman.h`).
pub const MAX_PEER_TX_ANNOUNCEMENTS: usize = 5_000;
/// Requests in flight per peer: at this count new announcements from it are delayed
/// (`MAX_PEER_TX_REQUEST_IN_FLIGHT`, `node/txdownloadman.h`) and no more are sent to it.
pub const MAX_PEER_TX_REQUEST_IN_FLIGHT: usize = 100;
/// Delay for announcements from non-preferred (inbound) peers (`NONPREF_PEER_TX_DELAY`).
pub const NONPREF_PEER_TX_DELAY: Duration = Duration::from_secs(2);
/// Delay for txid announcements while some peer relays by wtxid (`TXID_RELAY_DELAY`).
pub const TXID_RELAY_DELAY: Duration = Duration::from_secs(2);
/// Delay for announcements from a peer with a full request window (`OVERLOADED_PEER_TX_DELAY`).
pub const OVERLOADED_PEER_TX_DELAY: Duration = Duration::from_secs(2);
/// How long a request may stay unanswered before the next announcer is asked
/// (`GETDATA_TX_INTERVAL`).
pub const GETDATA_TX_INTERVAL: Duration = Duration::from_secs(60);
/// Received transactions remembered so later announcements are not fetched again (the size of
/// Core's `m_recent_confirmed_transactions` filter, `node/txdownloadman_impl.h`).
pub const MAX_RECENTLY_SEEN: usize = 48_000;

/// A transaction to request from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxWant {
    /// The announced hash.
    pub hash: [u8; 32],
    /// Announced as a wtxid (`MSG_WTX`), else as a txid.
    pub is_wtxid: bool,
}

impl TxWant {
    /// The `getdata` entry: by wtxid as announced (BIP339), else by txid with the witness flag
    /// when the peer offers NODE_WITNESS (Core's `GetFetchFlags`).
    pub(crate) fn inventory(&self, peer_has_witness: bool) -> Inventory {
        if self.is_wtxid {
            Inventory::WTx(Wtxid::from_byte_array(self.hash))
        } else if peer_has_witness {
            Inventory::WitnessTransaction(Txid::from_byte_array(self.hash))
        } else {
            Inventory::Transaction(Txid::from_byte_array(self.hash))
        }
    }
}

/// What became of one announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announced {
    /// Tracked: it will be requested from this peer or another announcer.
    Tracked,
    /// Received recently: not fetched again.
    Known,
    /// This peer announced it already.
    Duplicate,
    /// The peer has [`MAX_PEER_TX_ANNOUNCEMENTS`] tracked: ignored.
    TooMany,
    /// The peer is not (or no longer) tracked.
    UnknownPeer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting to be chosen (from `ready_at` on).
    Candidate,
    /// Requested from this peer; moves on at `expiry`.
    Requested { expiry: Instant },
    /// Answered with `notfound` or timed out: never asked again.
    Completed,
}

#[derive(Debug, Clone)]
struct Announcement {
    peer: PeerId,
    is_wtxid: bool,
    preferred: bool,
    ready_at: Instant,
    seq: u64,
    state: State,
}

#[derive(Debug)]
struct PeerEntry {
    preferred: bool,
    wtxid_relay: bool,
    /// Hashes this peer announced that are still tracked (its count against the cap).
    hashes: HashSet<[u8; 32]>,
    in_flight: usize,
    /// Ready announcements that found this peer's window full, oldest first (each once; a
    /// subset of `hashes`): looked at again as slots free up.
    blocked: VecDeque<[u8; 32]>,
    blocked_set: HashSet<[u8; 32]>,
}

/// The group's transaction download decisions (Core's `TxRequestTracker`).
#[derive(Debug)]
pub(crate) struct TxRequestTracker {
    txs: HashMap<[u8; 32], Vec<Announcement>>,
    peers: HashMap<PeerId, PeerEntry>,
    /// Peers that relay by wtxid (txid announcements wait while there is one).
    wtxid_peers: usize,
    /// Re-evaluation times: an announcement becoming ready, a request expiring.
    due: BTreeSet<(Instant, [u8; 32])>,
    /// Transactions to re-evaluate at the next poll.
    dirty: HashSet<[u8; 32]>,
    seen: RecentSet,
    seq: u64,
}

impl Default for TxRequestTracker {
    fn default() -> Self {
        TxRequestTracker::new(MAX_RECENTLY_SEEN)
    }
}

impl TxRequestTracker {
    /// A tracker remembering `recently_seen` received hashes.
    pub(crate) fn new(recently_seen: usize) -> Self {
        TxRequestTracker {
            txs: HashMap::new(),
            peers: HashMap::new(),
            wtxid_peers: 0,
            due: BTreeSet::new(),
            dirty: HashSet::new(),
            seen: RecentSet::new(recently_seen),
            seq: 0,
        }
    }

    /// Starts tracking a ready peer. `preferred`: a link we opened (Core's `fPreferredDownload`);
    /// `wtxid_relay`: it negotiated BIP339.
    pub(crate) fn peer_connected(&mut self, peer: PeerId, preferred: bool, wtxid_relay: bool) {
        if self.peers.contains_key(&peer) {
            return;
        }
        self.wtxid_peers += usize::from(wtxid_relay);
        let entry = PeerEntry {
            preferred,
            wtxid_relay,
            hashes: HashSet::new(),
            in_flight: 0,
            blocked: VecDeque::new(),
            blocked_set: HashSet::new(),
        };
        self.peers.insert(peer, entry);
    }

    /// Forgets a peer's announcements; what it had in flight goes to the next announcer
    /// (`TxRequestTracker::DisconnectedPeer`).
    pub(crate) fn peer_disconnected(&mut self, peer: PeerId) {
        let Some(entry) = self.peers.remove(&peer) else { return };
        self.wtxid_peers -= usize::from(entry.wtxid_relay);
        for hash in entry.hashes {
            let Some(anns) = self.txs.get_mut(&hash) else { continue };
            anns.retain(|a| a.peer != peer);
            self.dirty.insert(hash);
        }
    }

    /// A peer announced `hash` (`TxDownloadManagerImpl::AddTxAnnouncement`).
    pub(crate) fn announced(
        &mut self,
        peer: PeerId,
        hash: [u8; 32],
        is_wtxid: bool,
        now: Instant,
    ) -> Announced {
        if self.seen.contains(&hash) {
            return Announced::Known;
        }
        let wtxid_peers = self.wtxid_peers;
        let Some(entry) = self.peers.get_mut(&peer) else { return Announced::UnknownPeer };
        if entry.hashes.contains(&hash) {
            return Announced::Duplicate;
        }
        if entry.hashes.len() >= MAX_PEER_TX_ANNOUNCEMENTS {
            return Announced::TooMany;
        }
        let mut delay = Duration::ZERO;
        if !entry.preferred {
            delay += NONPREF_PEER_TX_DELAY;
        }
        if !is_wtxid && wtxid_peers > 0 {
            delay += TXID_RELAY_DELAY;
        }
        if entry.in_flight >= MAX_PEER_TX_REQUEST_IN_FLIGHT {
            delay += OVERLOADED_PEER_TX_DELAY;
        }
        entry.hashes.insert(hash);
        self.seq += 1;
        let ready_at = now + delay;
        let ann = Announcement {
            peer,
            is_wtxid,
            preferred: entry.preferred,
            ready_at,
            seq: self.seq,
            state: State::Candidate,
        };
        self.txs.entry(hash).or_default().push(ann);
        if delay.is_zero() {
            self.dirty.insert(hash);
        } else {
            self.due.insert((ready_at, hash));
        }
        Announced::Tracked
    }

    /// The peer answered our request for `hash` with `notfound`: ask the next announcer
    /// (`TxDownloadManagerImpl::ReceivedNotFound` → `ReceivedResponse`).
    pub(crate) fn not_found(&mut self, peer: PeerId, hash: [u8; 32]) {
        let Some(anns) = self.txs.get_mut(&hash) else { return };
        let Some(ann) = anns.iter_mut().find(|a| a.peer == peer) else { return };
        if let State::Requested { .. } = ann.state {
            ann.state = State::Completed;
            Self::release(&mut self.peers, peer);
            self.dirty.insert(hash);
        }
    }

    /// An `inv` from `peer`: tracks its transaction entries of the kind the link negotiated (Core
    /// ignores the others: `ProcessMessage` INV, `if (peer->m_wtxid_relay != inv.IsMsgWtx())
    /// continue`). True when one was newly tracked (a request may be due).
    pub(crate) fn announced_inv(&mut self, peer: PeerId, items: &[Inventory], now: Instant) -> bool {
        let Some(wtxid_relay) = self.peers.get(&peer).map(|e| e.wtxid_relay) else { return false };
        let mut tracked = false;
        for item in items {
            let (hash, is_wtxid) = match item {
                Inventory::Transaction(txid) | Inventory::WitnessTransaction(txid) if !wtxid_relay => {
                    (txid.to_byte_array(), false)
                }
                Inventory::WTx(wtxid) if wtxid_relay => (wtxid.to_byte_array(), true),
                _ => continue,
            };
            tracked |= self.announced(peer, hash, is_wtxid, now) == Announced::Tracked;
        }
        tracked
    }

    /// The transaction entries of a `notfound` from `peer` (Core's
    /// `TxDownloadManagerImpl::ReceivedNotFound`): each moves on to the next announcer.
    pub(crate) fn not_found_inv(&mut self, peer: PeerId, items: &[Inventory]) {
        for item in items {
            let hash = match item {
                Inventory::Transaction(txid) | Inventory::WitnessTransaction(txid) => txid.to_byte_array(),
                Inventory::WTx(wtxid) => wtxid.to_byte_array(),
                _ => continue,
            };
            self.not_found(peer, hash);
        }
    }

    /// A transaction arrived (from anyone, asked or not): it is forgotten under both its hashes
    /// and remembered as seen (`ForgetTxHash` for txid and wtxid). True the first time.
    pub(crate) fn received(&mut self, txid: [u8; 32], wtxid: [u8; 32]) -> bool {
        let first = !self.seen.contains(&txid) && !self.seen.contains(&wtxid);
        for hash in [txid, wtxid] {
            self.forget(hash);
            self.seen.insert(hash);
        }
        first
    }

    /// Expires overdue requests and picks the announcer to ask for each transaction that has
    /// none in flight; the chosen ones count as requested from now on (Core's
    /// `GetRequestable` + `RequestedTx`). Grouped by peer, in announcement order.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<(PeerId, Vec<TxWant>)> {
        while let Some(&(at, hash)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.pop_first();
            self.dirty.insert(hash);
        }
        let mut out: Vec<(PeerId, Vec<TxWant>)> = Vec::new();
        // Each round ends only with announcements blocked by full windows (no free slot to
        // refill), so this stops.
        loop {
            self.refill();
            if self.dirty.is_empty() {
                return out;
            }
            let mut dirty: Vec<[u8; 32]> = self.dirty.drain().collect();
            // Announcement order decides the order of requests within one peer.
            dirty.sort_by_key(|h| self.txs.get(h).and_then(|a| a.iter().map(|a| a.seq).min()).unwrap_or(0));
            for hash in dirty {
                if let Some((peer, want)) = self.evaluate(hash, now) {
                    match out.iter_mut().find(|(p, _)| *p == peer) {
                        Some((_, wants)) => wants.push(want),
                        None => out.push((peer, vec![want])),
                    }
                }
            }
        }
    }

    /// When [`poll`](Self::poll) next has work: now if something changed, else the earliest
    /// announcement becoming ready or request expiring.
    pub(crate) fn next_due(&self, now: Instant) -> Option<Instant> {
        if !self.dirty.is_empty() {
            return Some(now);
        }
        self.due.first().map(|(at, _)| *at)
    }

    /// Requests in flight to `peer`.
    #[cfg(test)]
    pub(crate) fn in_flight(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.in_flight)
    }

    /// Announcements tracked for `peer`.
    #[cfg(test)]
    pub(crate) fn tracked(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.hashes.len())
    }

    /// Transactions tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.txs.len()
    }

    /// Re-decides one transaction: expire its request, or choose an announcer.
    fn evaluate(&mut self, hash: [u8; 32], now: Instant) -> Option<(PeerId, TxWant)> {
        let anns = self.txs.get_mut(&hash)?;
        for ann in anns.iter_mut() {
            if let State::Requested { expiry } = ann.state {
                if expiry > now {
                    return None;
                }
                ann.state = State::Completed;
                Self::release(&mut self.peers, ann.peer);
            }
        }
        if anns.iter().all(|a| a.state == State::Completed) {
            // Nobody left to ask (Core drops a transaction whose announcements all completed).
            self.forget(hash);
            return None;
        }
        let peers = &mut self.peers;
        let mut best: Option<usize> = None;
        for (i, ann) in anns.iter().enumerate() {
            if ann.state != State::Candidate || ann.ready_at > now {
                continue;
            }
            let Some(peer) = peers.get_mut(&ann.peer) else { continue };
            if peer.in_flight >= MAX_PEER_TX_REQUEST_IN_FLIGHT {
                if peer.blocked_set.insert(hash) {
                    peer.blocked.push_back(hash);
                }
                continue;
            }
            let better = best.is_none_or(|b| {
                let b = &anns[b];
                (!ann.preferred, ann.seq) < (!b.preferred, b.seq)
            });
            if better {
                best = Some(i);
            }
        }
        let i = best?;
        let expiry = now + GETDATA_TX_INTERVAL;
        let ann = &mut anns[i];
        ann.state = State::Requested { expiry };
        if let Some(peer) = peers.get_mut(&ann.peer) {
            peer.in_flight += 1;
        }
        self.due.insert((expiry, hash));
        Some((ann.peer, TxWant { hash, is_wtxid: ann.is_wtxid }))
    }

    /// One request of `peer` ended (its blocked announcements get the slot at the next poll).
    fn release(peers: &mut HashMap<PeerId, PeerEntry>, peer: PeerId) {
        if let Some(entry) = peers.get_mut(&peer) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
    }

    /// Moves blocked announcements of peers with free slots back to evaluation, as many as
    /// each has free slots (stale ones, no longer tracked, are dropped on the way).
    fn refill(&mut self) {
        for entry in self.peers.values_mut() {
            let mut free = MAX_PEER_TX_REQUEST_IN_FLIGHT.saturating_sub(entry.in_flight);
            while free > 0 {
                let Some(hash) = entry.blocked.pop_front() else { break };
                entry.blocked_set.remove(&hash);
                if entry.hashes.contains(&hash) {
                    self.dirty.insert(hash);
                    free -= 1;
                }
            }
        }
    }

    /// Drops every announcement of `hash`.
    fn forget(&mut self, hash: [u8; 32]) {
        let Some(anns) = self.txs.remove(&hash) else { return };
        for ann in anns {
            let requested = matches!(ann.state, State::Requested { .. });
            if requested {
                Self::release(&mut self.peers, ann.peer);
            }
            if let Some(peer) = self.peers.get_mut(&ann.peer) {
                peer.hashes.remove(&hash);
            }
            // Its pending wake-ups go too, so the schedule stays bounded by what is tracked.
            match ann.state {
                State::Requested { expiry } => self.due.remove(&(expiry, hash)),
                _ => self.due.remove(&(ann.ready_at, hash)),
            };
        }
        self.dirty.remove(&hash);
    }
}

#[cfg(test)]
mod tests;
