//! What can be asked of a peer ([`Request`]) and what comes back ([`Response`]).

use std::sync::Arc;

use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::{Block, BlockHash, Transaction, Txid};

use crate::chain::HashedHeaders;

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

impl Request {
    /// Up to 2,000 headers following `hash` (e.g. the network's genesis hash).
    ///
    /// ```
    /// use btcpeer::{Network, Request};
    /// let req = Request::headers_after(Network::Regtest.genesis_hash());
    /// assert!(matches!(req, Request::Headers { ref locator, .. } if locator.len() == 1));
    /// ```
    pub fn headers_after(hash: BlockHash) -> Request {
        Request::Headers { locator: vec![hash], stop: BlockHash::all_zeros() }
    }

    /// The blocks with these hashes, in this order.
    pub fn blocks(hashes: impl IntoIterator<Item = BlockHash>) -> Request {
        Request::Blocks { hashes: hashes.into_iter().collect() }
    }
}

/// A request's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Headers in chain order (empty: the peer has nothing after the locator), with the block
    /// hashes the peer's checks computed. Derefs to `[Header]`, so `headers.len()`,
    /// `headers.iter()` and `headers[0]` work as on a `Vec<Header>`; `headers.hashes()` saves
    /// hashing them again.
    Headers(HashedHeaders),
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
