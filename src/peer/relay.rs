//! Announcing inventory to one peer, as Core does (`SendMessages`): transactions are batched and
//! trickled on a Poisson timer (mean 5 s to inbound peers, 2 s to outbound ones), blocks go at
//! once; nothing the peer already knows is announced twice; transactions go only to peers that
//! asked for them, by wtxid when `wtxidrelay` was negotiated, and never below the peer's
//! `feefilter`. Pure: time and randomness come in as arguments.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Txid, Wtxid};
use rand::Rng;
use tokio::time::Instant;

use super::machine::RecentSet;
use super::Link;
use crate::wire::{Inventory, Message};

/// Mean trickle delay to inbound peers (`INBOUND_INVENTORY_BROADCAST_INTERVAL`, Core).
pub const INBOUND_INVENTORY_BROADCAST_INTERVAL: Duration = Duration::from_secs(5);
/// Mean trickle delay to outbound peers (`OUTBOUND_INVENTORY_BROADCAST_INTERVAL`, Core).
pub const OUTBOUND_INVENTORY_BROADCAST_INTERVAL: Duration = Duration::from_secs(2);
/// Entries per `inv` we send (btcd's batch size; Core allows up to 50,000).
pub const MAX_INV_PER_MESSAGE: usize = 1_000;
/// Announcements waiting for the next trickle; beyond it new ones are dropped (counted).
pub const MAX_QUEUED_INVENTORY: usize = 50_000;
/// Inventory remembered as known to the peer (Core's per-peer filter holds 50,000).
pub const MAX_KNOWN_INVENTORY: usize = 50_000;

/// Something to announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// A transaction, with its fee rate in sat/kvB when known (for the peer's `feefilter`).
    Tx {
        /// Its txid.
        txid: Txid,
        /// Its wtxid.
        wtxid: Wtxid,
        /// Fee rate, sat per 1,000 vbytes.
        fee_rate: Option<u64>,
    },
    /// A block, by hash (announced with `inv`).
    Block(BlockHash),
    /// A block with its header: announced with `headers` to peers that sent `sendheaders`
    /// (BIP130), with `inv` to the others.
    Header(bitcoin::block::Header),
}

/// What the peer negotiated, as far as announcing goes.
#[derive(Debug, Clone, Copy)]
pub struct PeerView {
    /// The peer's `version` relay flag.
    pub relay: bool,
    /// `wtxidrelay` negotiated.
    pub wtxid_relay: bool,
    /// The peer's `feefilter`, sat/kvB.
    pub fee_filter: Option<i64>,
    /// The peer sent `sendheaders`.
    pub send_headers: bool,
}

/// The trickle instant all inbound peers share (Core's `m_next_inv_to_inbounds`,
/// `NextInvToInbounds` in `net_processing.cpp`): an observer that opens many inbound
/// connections sees every announcement at the same moments on all of them, which hides when
/// we learned each transaction. Peers made from one `PeerConfig` share it.
#[derive(Debug, Clone, Default)]
pub struct InboundTrickle(Arc<Mutex<Option<Instant>>>);

impl InboundTrickle {
    /// The shared instant, drawn anew (exponential, mean `mean`) once it has passed.
    fn next(&self, now: Instant, mean: Duration, rng: &mut impl Rng) -> Instant {
        let mut next = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match *next {
            Some(at) if at >= now => at,
            _ => *next.insert(now + poisson_delay(mean, rng)),
        }
    }
}

/// One peer's announcement queue.
#[derive(Debug)]
pub struct Relay {
    mean: Duration,
    /// Inbound peers: the instant they all trickle at.
    shared: Option<InboundTrickle>,
    queue: VecDeque<Announcement>,
    blocks: Vec<(BlockHash, Option<bitcoin::block::Header>)>,
    known: RecentSet,
    next_trickle: Option<Instant>,
    dropped: u64,
}

impl Relay {
    /// A queue for a link of this direction.
    pub fn new(link: Link) -> Relay {
        let mean = match link {
            Link::Inbound => INBOUND_INVENTORY_BROADCAST_INTERVAL,
            Link::Outbound => OUTBOUND_INVENTORY_BROADCAST_INTERVAL,
        };
        Relay {
            mean,
            shared: None,
            queue: VecDeque::new(),
            blocks: Vec::new(),
            known: RecentSet::new(MAX_KNOWN_INVENTORY),
            next_trickle: None,
            dropped: 0,
        }
    }

    /// The queue trickles at `shared`'s instants (for inbound peers; outbound ones keep their
    /// own timers, as in Core).
    pub fn share_inbound_trickle(&mut self, shared: InboundTrickle) {
        self.shared = Some(shared);
    }

    /// The peer has this item (it announced it, or we sent it).
    pub fn mark_known(&mut self, item: &Inventory) {
        if let Some(hash) = inventory_hash(item) {
            self.known.insert(hash);
        }
    }

    /// Queues an announcement; returns false when it is known to the peer already or the queue
    /// is full.
    pub fn queue(&mut self, a: Announcement) -> bool {
        let key = match a {
            Announcement::Tx { wtxid, .. } => wtxid.to_byte_array(),
            Announcement::Block(hash) => hash.to_byte_array(),
            Announcement::Header(h) => h.block_hash().to_byte_array(),
        };
        if self.known.contains(&key) {
            return false;
        }
        // One cap for everything waiting: blocks also wait while the handshake is incomplete.
        if self.queue.len() + self.blocks.len() >= MAX_QUEUED_INVENTORY {
            self.dropped += 1;
            return false;
        }
        match a {
            Announcement::Block(hash) => self.blocks.push((hash, None)),
            Announcement::Header(h) => self.blocks.push((h.block_hash(), Some(h))),
            tx => self.queue.push_back(tx),
        }
        true
    }

    #[cfg(test)]
    /// Announcements dropped for a full queue.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// When the next trickle is due (none when nothing waits): `now` when blocks wait, since
    /// they go out at once.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        if !self.blocks.is_empty() {
            return Some(now);
        }
        (!self.queue.is_empty()).then_some(self.next_trickle).flatten()
    }

    /// The messages to send now: blocks at once (`headers` to `sendheaders` peers when the header
    /// is known, else `inv`), transactions as `inv` when the trickle timer fires (the next delay
    /// is drawn from an exponential distribution with the link's mean).
    pub fn poll(&mut self, now: Instant, rng: &mut impl Rng, peer: PeerView) -> Vec<Message> {
        let mut out = Vec::new();
        let mut headers = Vec::new();
        let mut invs = Vec::new();
        for (hash, header) in std::mem::take(&mut self.blocks) {
            if !self.known.insert(hash.to_byte_array()) {
                continue;
            }
            match header {
                Some(h) if peer.send_headers => headers.push(h),
                _ => invs.push(Inventory::Block(hash)),
            }
        }
        if !headers.is_empty() {
            out.push(Message::Headers(headers));
        }
        out.extend(invs.chunks(MAX_INV_PER_MESSAGE).map(|c| Message::Inv(c.to_vec())));
        if self.queue.is_empty() {
            return out;
        }
        let (mean, shared) = (self.mean, &self.shared);
        let next = *self.next_trickle.get_or_insert_with(|| match shared {
            Some(shared) => shared.next(now, mean, rng),
            None => now + poisson_delay(mean, rng),
        });
        if now < next {
            return out;
        }
        self.next_trickle = None;
        let mut batch = Vec::new();
        for a in self.queue.drain(..) {
            let Announcement::Tx { txid, wtxid, fee_rate } = a else { continue };
            if !peer.relay {
                continue;
            }
            if let (Some(filter), Some(rate)) = (peer.fee_filter, fee_rate) {
                if i64::try_from(rate).unwrap_or(i64::MAX) < filter {
                    continue;
                }
            }
            if !self.known.insert(wtxid.to_byte_array()) {
                continue;
            }
            batch.push(if peer.wtxid_relay { Inventory::WTx(wtxid) } else { Inventory::Transaction(txid) });
            if batch.len() == MAX_INV_PER_MESSAGE {
                out.push(Message::Inv(std::mem::take(&mut batch)));
            }
        }
        if !batch.is_empty() {
            out.push(Message::Inv(batch));
        }
        out
    }
}

/// Exponentially distributed delay with the given mean (Core's `rand_exp_duration`).
fn poisson_delay(mean: Duration, rng: &mut impl Rng) -> Duration {
    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    mean.mul_f64(-u.ln()).min(mean * 20)
}

/// The 32 bytes that identify an item (wtxid for witness txs when known, else the txid).
fn inventory_hash(item: &Inventory) -> Option<[u8; 32]> {
    Some(match item {
        Inventory::Transaction(t) | Inventory::WitnessTransaction(t) => t.to_byte_array(),
        Inventory::WTx(w) => w.to_byte_array(),
        Inventory::Block(b) | Inventory::WitnessBlock(b) | Inventory::CompactBlock(b) => b.to_byte_array(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn tx(n: u8, fee_rate: Option<u64>) -> Announcement {
        Announcement::Tx {
            txid: Txid::from_byte_array([n; 32]),
            wtxid: Wtxid::from_byte_array([n ^ 0xff; 32]),
            fee_rate,
        }
    }

    const ALL: PeerView = PeerView { relay: true, wtxid_relay: true, fee_filter: None, send_headers: false };

    fn invs(out: Vec<Message>) -> Vec<Vec<Inventory>> {
        out.into_iter()
            .map(|m| match m {
                Message::Inv(v) => v,
                other => panic!("expected inv, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn blocks_with_headers_go_as_headers_to_sendheaders_peers() {
        let mut rng = StdRng::seed_from_u64(4);
        let header = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
        let mut r = Relay::new(Link::Outbound);
        r.queue(Announcement::Header(header));
        let out = r.poll(Instant::now(), &mut rng, PeerView { send_headers: true, ..ALL });
        assert_eq!(out, vec![Message::Headers(vec![header])]);
        let mut r = Relay::new(Link::Outbound);
        r.queue(Announcement::Header(header));
        let out = r.poll(Instant::now(), &mut rng, ALL);
        assert_eq!(out, vec![Message::Inv(vec![Inventory::Block(header.block_hash())])]);
    }

    #[test]
    fn blocks_go_at_once_transactions_wait_for_the_trickle() {
        let mut r = Relay::new(Link::Outbound);
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        assert!(r.queue(tx(1, None)));
        assert!(r.queue(Announcement::Block(BlockHash::from_byte_array([9; 32]))));
        assert_eq!(r.next_due(t0), Some(t0), "a waiting block is due at once");
        let first = invs(r.poll(t0, &mut rng, ALL));
        assert_eq!(first, vec![vec![Inventory::Block(BlockHash::from_byte_array([9; 32]))]]);
        let due = r.next_due(t0).expect("a trickle is scheduled");
        assert!(due > t0);
        assert!(r.poll(due - Duration::from_millis(1), &mut rng, ALL).is_empty());
        let later = invs(r.poll(due, &mut rng, ALL));
        assert_eq!(later, vec![vec![Inventory::WTx(Wtxid::from_byte_array([1 ^ 0xff; 32]))]]);
        // Known now: not announced twice.
        assert!(!r.queue(tx(1, None)));
    }

    /// Inbound peers sharing an [`InboundTrickle`] announce at the same instants, whatever
    /// their own draws (Core's `NextInvToInbounds`); outbound ones draw their own.
    #[test]
    fn inbound_peers_trickle_together() {
        let shared = InboundTrickle::default();
        let t0 = Instant::now();
        let (mut a, mut b) = (Relay::new(Link::Inbound), Relay::new(Link::Inbound));
        a.share_inbound_trickle(shared.clone());
        b.share_inbound_trickle(shared.clone());
        let (mut rng_a, mut rng_b) = (StdRng::seed_from_u64(10), StdRng::seed_from_u64(11));
        let mut t = t0;
        for round in 0..20u8 {
            assert!(a.queue(tx(round, None)) && b.queue(tx(round, None)));
            assert!(a.poll(t, &mut rng_a, ALL).is_empty() && b.poll(t, &mut rng_b, ALL).is_empty());
            let due = a.next_due(t).unwrap();
            assert_eq!(b.next_due(t), Some(due), "round {round}");
            assert_eq!(invs(a.poll(due, &mut rng_a, ALL)).len(), 1);
            assert_eq!(invs(b.poll(due, &mut rng_b, ALL)).len(), 1);
            t = due + Duration::from_millis(1);
        }
        // Two outbound peers with different draws part at once.
        let (mut c, mut d) = (Relay::new(Link::Outbound), Relay::new(Link::Outbound));
        assert!(c.queue(tx(1, None)) && d.queue(tx(1, None)));
        c.poll(t0, &mut StdRng::seed_from_u64(10), ALL);
        d.poll(t0, &mut StdRng::seed_from_u64(11), ALL);
        assert_ne!(c.next_due(t0), d.next_due(t0));
    }

    #[test]
    fn relay_false_txid_peers_and_feefilter_are_honoured() {
        let mut rng = StdRng::seed_from_u64(2);
        let t = Instant::now() + Duration::from_secs(3600);
        let mut r = Relay::new(Link::Inbound);
        r.queue(tx(1, None));
        r.poll(Instant::now(), &mut rng, ALL);
        assert!(r.poll(t, &mut rng, PeerView { relay: false, ..ALL }).is_empty(), "relay=false gets no txs");
        let mut r = Relay::new(Link::Inbound);
        r.queue(tx(2, Some(500)));
        r.queue(tx(3, Some(2_000)));
        r.queue(tx(4, None));
        r.poll(Instant::now(), &mut rng, ALL);
        let out = invs(r.poll(t, &mut rng, PeerView { wtxid_relay: false, fee_filter: Some(1_000), ..ALL }));
        assert_eq!(
            out,
            vec![vec![
                Inventory::Transaction(Txid::from_byte_array([3; 32])),
                Inventory::Transaction(Txid::from_byte_array([4; 32]))
            ]]
        );
    }

    #[test]
    fn batches_are_capped_and_the_queue_is_bounded() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut r = Relay::new(Link::Outbound);
        for i in 0..2_500u32 {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            r.queue(Announcement::Tx {
                txid: Txid::from_byte_array(b),
                wtxid: Wtxid::from_byte_array(b),
                fee_rate: None,
            });
        }
        r.poll(Instant::now(), &mut rng, ALL);
        let out = invs(r.poll(Instant::now() + Duration::from_secs(3600), &mut rng, ALL));
        assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), [1_000, 1_000, 500]);
        let mut r = Relay::new(Link::Outbound);
        for i in 0..(MAX_QUEUED_INVENTORY as u32 + 10) {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            r.queue(Announcement::Tx {
                txid: Txid::from_byte_array(b),
                wtxid: Wtxid::from_byte_array(b),
                fee_rate: None,
            });
        }
        assert_eq!(r.dropped(), 10);
        // Blocks count towards the same cap (they wait too while the peer is not ready).
        assert!(!r.queue(Announcement::Block(BlockHash::from_byte_array([1; 32]))));
        assert_eq!(r.dropped(), 11);
    }

    #[test]
    fn trickle_delays_average_the_configured_mean() {
        let seed: u64 = rand::random();
        println!("seed {seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let n = 20_000;
        let total: f64 = (0..n).map(|_| poisson_delay(Duration::from_secs(5), &mut rng).as_secs_f64()).sum();
        let mean = total / n as f64;
        assert!((4.7..5.3).contains(&mean), "seed {seed}: mean {mean}");
    }
}
