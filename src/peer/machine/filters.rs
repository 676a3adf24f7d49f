//! BIP37 state of the peer: `filterload`/`filteradd`/`filterclear` (and `mempool`) checks and
//! the loaded filter, which decides which transactions the peer is told about.

use std::sync::Arc;

use tokio::time::Instant;

use super::{PeerMachine, Verdict};
use crate::peer::bloom::{BloomError, BloomFilter};
use crate::peer::reason::Misbehavior;
use crate::peer::relay::Announcement;
use crate::wire::{Message, ServiceFlags};

impl PeerMachine {
    /// A BIP37 message (or `mempool`) after the handshake. Without NODE_BLOOM offered, Core
    /// disconnects the sender (`ProcessMessage`, FILTERLOAD/FILTERADD/FILTERCLEAR/MEMPOOL).
    pub(super) fn on_filter_message(&mut self, msg: &Message) -> Verdict {
        if !self.config.services.has(ServiceFlags::BLOOM) {
            return self.misbehaving(Misbehavior::BloomNotOffered { command: msg.cmd().to_owned() });
        }
        match msg {
            Message::FilterLoad(load) => match BloomFilter::load(load) {
                Ok(filter) => {
                    self.bloom = Some(filter);
                    // Core: a loaded filter turns transaction relay on (`m_relay_txs`).
                    if let Some(r) = self.remote.as_mut() {
                        r.relay = true;
                    }
                    Verdict::Deliver
                }
                Err(e) => self.misbehaving(Misbehavior::InvalidData { reason: e.to_string() }),
            },
            Message::FilterAdd(add) => {
                let result = match self.bloom.as_mut() {
                    Some(filter) => filter.add(&add.data),
                    None => Err(BloomError::NoFilter),
                };
                match result {
                    Ok(()) => Verdict::Deliver,
                    Err(e) => self.misbehaving(Misbehavior::InvalidData { reason: e.to_string() }),
                }
            }
            Message::FilterClear => {
                self.bloom = None;
                if let Some(r) = self.remote.as_mut() {
                    r.relay = true;
                }
                Verdict::Deliver
            }
            _ => Verdict::Deliver,
        }
    }

    #[cfg(test)]
    /// True while the peer has a BIP37 filter loaded.
    pub fn has_bloom_filter(&self) -> bool {
        self.bloom.is_some()
    }

    /// Queues transactions for announcement; to a peer that loaded a BIP37 filter only those
    /// the filter matches (updating it as Core does).
    pub fn queue_transactions(&mut self, now: Instant, txs: &[Arc<bitcoin::Transaction>]) {
        for tx in txs {
            if let Some(filter) = self.bloom.as_mut() {
                if !filter.is_relevant_and_update(tx) {
                    continue;
                }
            }
            self.relay.queue(Announcement::Tx {
                txid: tx.compute_txid(),
                wtxid: tx.compute_wtxid(),
                fee_rate: None,
            });
        }
        self.flush_inventory(now);
    }
}
