//! The header chain: validation, forks and persistence (pure; `store` does the file I/O).
//!
//! [`HeaderChain`] validates block headers exactly as Bitcoin Core's `CheckBlockHeader` and
//! `ContextualCheckBlockHeader` do (proof of work, the difficulty each network requires, median
//! time past, the 2-hour future limit, BIP94's timewarp rule, BIP34/65/66 versions), keeps every
//! branch that connects, follows the one with the most work, and answers the questions peers ask
//! (`getheaders` locators and replies). It does no I/O and never reads the clock: `now` is an
//! argument. [`HeaderStore`] keeps the headers in an append-only file and replays it on start.
//!
//! Layout:
//! - `headers`: [`HeaderChain`] itself: connecting, forks and reorgs, locators, fork eviction.
//! - `hashed`: [`HashedHeaders`], headers with the hashes computed once on the way in.
//! - `best`: the compact storage of the best chain (what makes ~900k mainnet headers cheap).
//! - `validate`: Core's consensus rules for headers as free functions (`pow.cpp`,
//!   `validation.cpp`).
//! - `store`: `<data_dir>/headers.dat`, its record format and its recovery rules.
//! - `serve`: answering downstream peers' `getheaders` and announcing new tips, as Core does.

mod best;
mod hashed;
mod headers;
pub(crate) mod serve;
mod store;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fork;
#[cfg(test)]
mod tests_real;
#[cfg(test)]
mod tests_store;

use bitcoin::block::Header;
use bitcoin::pow::Work;
use bitcoin::BlockHash;

pub use hashed::HashedHeaders;
pub use headers::{HeaderChain, MAX_FORK_HEADERS};
pub use store::{HeaderStore, LoadReport, StoreError, FILE_MAGIC, FILE_NAME, RECORD_LEN};
pub use validate::{MAX_FUTURE_BLOCK_TIME, MAX_LOCATOR_SZ, MAX_TIMEWARP, MEDIAN_TIME_SPAN};

/// The best header: the end of the chain with the most work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// Its block hash.
    pub hash: BlockHash,
    /// Its height.
    pub height: u32,
    /// The header itself.
    pub header: Header,
    /// Chainwork up to and including it. Counted from the chain's start: with a [`Checkpoint`]
    /// the work below the checkpoint is unknown and left out.
    pub work: Work,
}

/// A trusted starting point: the chain starts at this header instead of genesis (for users who
/// do not want to download every mainnet header).
///
/// On networks that retarget, `height` must be a multiple of the 2016-block retarget interval,
/// so that the next retarget finds the first header of its period (the checkpoint itself).
/// [`HeaderChain::with_checkpoint`] checks that and the header's proof of work; nothing else
/// about it can be checked, so it must come from a trusted source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Height of `header` on its network's best chain.
    pub height: u32,
    /// The header at that height.
    pub header: Header,
}

/// What [`HeaderChain::connect`] did with a `headers` message.
///
/// `connect` returns `Err` only when nothing was added; when some headers were added before one
/// failed, it returns `Ok` with the failure in [`Connected::error`], because the caller needs both
/// the progress (to store and announce it) and the error (to judge the peer). Bitcoin Core keeps
/// the valid prefix in the same way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connected {
    /// New headers stored (on any branch).
    pub added: usize,
    /// Headers already known, skipped.
    pub known: usize,
    /// Best-chain change: headers now on the best chain that were not before, in height order
    /// (hash, height). Empty if the tip did not change.
    pub connected: Vec<(BlockHash, u32)>,
    /// Headers that left the best chain (a reorg), highest first. Empty when only extending.
    pub disconnected: Vec<(BlockHash, u32)>,
    /// The added headers in the order they were added (parents first): exactly what to hand to
    /// [`HeaderStore::append`].
    pub added_headers: Vec<Header>,
    /// Headers were valid up to some point and then one failed: the valid prefix stays added
    /// and this is why the rest was not.
    pub error: Option<HeaderError>,
}

impl Connected {
    /// Whether the best tip moved.
    pub fn tip_changed(&self) -> bool {
        !self.connected.is_empty()
    }

    /// Whether the best chain lost headers (a reorg rather than an extension).
    pub fn is_reorg(&self) -> bool {
        !self.disconnected.is_empty()
    }
}

/// Why headers were not accepted. [`HeaderError::is_misbehaviour`] says whether the peer that
/// sent them broke the rules (Bitcoin Core would discourage it) or not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The first new header's parent is unknown. Not misbehaviour: Core answers with a
    /// `getheaders` from its best header.
    #[error("header does not connect: parent {prev} is unknown")]
    Unconnected {
        /// The unknown parent.
        prev: BlockHash,
    },
    /// `headers[index]` does not build on `headers[index - 1]` (misbehaviour).
    #[error("headers are not chained: header {index} does not build on the one before it")]
    NotChained {
        /// Position in the message.
        index: usize,
    },
    /// The hash is above the header's own target, or the target is zero, negative, overflowing
    /// or above the network's proof-of-work limit (misbehaviour).
    #[error("header {hash} has invalid proof of work")]
    BadProofOfWork {
        /// The header's hash.
        hash: BlockHash,
    },
    /// `bits` differs from what the network's difficulty rules require (misbehaviour).
    #[error("header {hash} has bits {got:#010x}, the network requires {expected:#010x}")]
    BadDifficulty {
        /// The header's hash.
        hash: BlockHash,
        /// Required `bits`.
        expected: u32,
        /// The header's `bits`.
        got: u32,
    },
    /// The timestamp is not after the median of the previous 11 (misbehaviour).
    #[error("header {hash} is timestamped at or before the median time past")]
    TimeTooOld {
        /// The header's hash.
        hash: BlockHash,
    },
    /// The timestamp is more than 2 hours after `now`. Not misbehaviour (Core does not punish;
    /// the header may be fine a bit later).
    #[error("header {hash} is timestamped more than 2 hours in the future")]
    TimeTooNew {
        /// The header's hash.
        hash: BlockHash,
    },
    /// BIP94 (testnet4): the first header of a difficulty period is more than 10 minutes
    /// before its parent (misbehaviour; Core's `time-timewarp-attack`).
    #[error("header {hash} starts a difficulty period more than 10 minutes before its parent")]
    TimeWarp {
        /// The header's hash.
        hash: BlockHash,
    },
    /// The version is below 2, 3 or 4 after BIP34, BIP66 or BIP65 activated (misbehaviour;
    /// Core's `bad-version`).
    #[error("header {hash} has outdated version {version:#x}")]
    BadVersion {
        /// The header's hash.
        hash: BlockHash,
        /// The header's version.
        version: i32,
    },
    /// The header forks off below the chain's start (a sibling of the checkpoint or of genesis)
    /// (misbehaviour).
    #[error("header {hash} forks off below the chain's start")]
    ForkBeforeCheckpoint {
        /// The header's hash.
        hash: BlockHash,
    },
    /// A header at one of the network's checkpoint heights is not the checkpoint
    /// (misbehaviour).
    #[error("header {hash} at height {height} contradicts the network's checkpoint")]
    CheckpointMismatch {
        /// Its height.
        height: u32,
        /// The header's hash.
        hash: BlockHash,
    },
    /// [`HeaderChain::with_checkpoint`] was given a checkpoint it cannot start from (a local
    /// configuration error, not a peer's).
    #[error("invalid checkpoint at height {height}: {reason}")]
    BadCheckpoint {
        /// The checkpoint's height.
        height: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl HeaderError {
    /// Whether the peer that sent the headers broke the consensus rules (Core's `Misbehaving`).
    /// Unconnected headers, headers from the future and our own bad checkpoint are not.
    pub fn is_misbehaviour(&self) -> bool {
        !matches!(
            self,
            HeaderError::Unconnected { .. }
                | HeaderError::TimeTooNew { .. }
                | HeaderError::BadCheckpoint { .. }
        )
    }
}
