//! [`ChainEvent`]: what the chain sync tells its subscribers.

use std::sync::Arc;

use actix::prelude::*;
use bitcoin::{Block, BlockHash};
use serde::Serialize;

use crate::peer::PeerId;

/// What the chain sync tells its subscribers.
#[derive(Debug, Clone, Message, Serialize)]
#[rtype(result = "()")]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChainEvent {
    /// The best header chain changed.
    Headers {
        /// New tip height.
        height: u32,
        /// New tip hash.
        tip: BlockHash,
        /// Headers that joined the best chain.
        count: usize,
        /// Headers that left it (a reorg).
        reorged: usize,
        /// The peer that sent them.
        peer: PeerId,
    },
    /// At the best tip the peers know.
    Synced {
        /// Tip height.
        height: u32,
        /// Tip hash.
        tip: BlockHash,
    },
    /// The next block could not be fetched from any peer (`fetch_blocks`). It is retried
    /// every `retry_delay` and blocks after it wait for it, so consumers see no gap; reported
    /// once per block.
    BlockFailed {
        /// Its hash.
        hash: BlockHash,
        /// Its height.
        height: u32,
        /// Why the last attempt failed.
        error: String,
    },
    /// The next block of the best chain (`fetch_blocks`). Blocks come in height order, from the
    /// block after the last one every subscriber handled (saved in `data_dir/blocks.json`, so
    /// a restart resumes there; on a first start, delivery begins after the tip once synced).
    /// Unlike the other events, block events are never dropped: each is sent to every
    /// subscriber and the next waits until all have handled it, so a slow subscriber slows
    /// the downloads (at most 16 blocks ahead) instead of filling memory.
    Block {
        /// Its hash.
        hash: BlockHash,
        /// Its height.
        height: u32,
        /// Transactions in it.
        txs: usize,
        /// Serialized size in bytes.
        size: usize,
        /// The block.
        #[serde(skip)]
        block: Arc<Block>,
        /// Who served it.
        peer: PeerId,
    },
    /// A delivered block left the best chain (a reorganisation, while running or while
    /// stopped): undo it. Sent for each such block, newest first, before the new branch's
    /// [`Block`](Self::Block)s. Ordered and never dropped, like `Block`.
    BlockDisconnected {
        /// Its hash.
        hash: BlockHash,
        /// Its height.
        height: u32,
    },
}
