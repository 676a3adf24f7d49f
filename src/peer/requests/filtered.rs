//! Filtered blocks being put together: a BIP37 `merkleblock` names the matching txids, and
//! the peer then sends those transactions as `tx` messages.

use std::collections::HashMap;

use bitcoin::block::Header;
use bitcoin::{BlockHash, Transaction, Txid};

use super::FilteredBlock;

/// A `merkleblock` received, waiting for its matched transactions.
#[derive(Debug)]
struct Partial {
    header: Header,
    txids: Vec<Txid>,
    got: HashMap<Txid, Transaction>,
}

/// Filtered blocks whose transactions are still arriving.
#[derive(Debug, Default)]
pub(super) struct FilteredAssembly {
    partial: HashMap<BlockHash, Partial>,
    /// Matched txid → the filtered block it completes.
    txs: HashMap<Txid, BlockHash>,
}

impl FilteredAssembly {
    /// True if this block's `merkleblock` came and its transactions are awaited.
    pub(super) fn contains(&self, hash: &BlockHash) -> bool {
        self.partial.contains_key(hash)
    }

    /// A checked `merkleblock` for `hash` matched `txids` (block order).
    pub(super) fn start(&mut self, hash: BlockHash, header: Header, txids: Vec<Txid>) {
        for txid in &txids {
            self.txs.insert(*txid, hash);
        }
        self.partial.insert(hash, Partial { header, txids, got: HashMap::new() });
    }

    /// True if some `tx` is awaited (saves hashing every relayed transaction otherwise).
    pub(super) fn awaits_txs(&self) -> bool {
        !self.txs.is_empty()
    }

    /// A `tx` with this txid arrived: the block it belongs to, if any.
    pub(super) fn add_tx(&mut self, txid: Txid, tx: &Transaction) -> Option<BlockHash> {
        let hash = self.txs.remove(&txid)?;
        if let Some(p) = self.partial.get_mut(&hash) {
            p.got.insert(txid, tx.clone());
        }
        Some(hash)
    }

    /// The block, once every matched transaction arrived.
    pub(super) fn take_complete(&mut self, hash: &BlockHash) -> Option<FilteredBlock> {
        let done = self.partial.get(hash).is_some_and(|p| p.got.len() == p.txids.len());
        if !done {
            return None;
        }
        let mut p = self.partial.remove(hash)?;
        let transactions = p.txids.iter().filter_map(|t| p.got.remove(t)).collect();
        Some(FilteredBlock { header: p.header, transactions })
    }

    /// Nobody wants this block any more.
    pub(super) fn drop_block(&mut self, hash: &BlockHash) {
        if let Some(p) = self.partial.remove(hash) {
            for t in &p.txids {
                self.txs.remove(t);
            }
        }
    }

    /// Forgets everything (the connection ended).
    pub(super) fn clear(&mut self) {
        self.partial.clear();
        self.txs.clear();
    }
}
