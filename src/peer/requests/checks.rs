//! Checks of what a peer sends that need no chain context: headers chained and each meeting
//! its own target, a block matching its header, a merkleblock proving its header's root.
//! Contextual rules (difficulty, time, checkpoints) belong to the header chain
//! ([`crate::chain`]).
//!
//! Proof of work follows Core's `CheckProofOfWork` (`pow.cpp`): the target the bits encode
//! must derive (not negative, zero or overflowing) and be within the network's proof-of-work
//! limit. The `*_within` forms take that limit (the request tracker passes its peer's
//! network's); the plain forms, which do not know the network, use the loosest one
//! (regtest's) ([`crate::wire::pow`]).

use std::collections::HashSet;

use bitcoin::block::Header;
use bitcoin::merkle_tree::MerkleBlockError;
use bitcoin::pow::Target;
use bitcoin::{Block, BlockHash, MerkleBlock, Txid};
use serde::{Serialize, Serializer};

#[cfg(test)]
use crate::wire::pow::any_network_pow_limit;
use crate::wire::pow::{derive_target, TargetCache};

/// Why data a peer sent cannot be right. The peer that sent it is misbehaving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvalidData {
    /// `headers[index]` does not build on `headers[index - 1]`.
    #[error("headers are not chained: header {index} does not follow the one before it")]
    UnchainedHeaders {
        /// Position in the message.
        index: usize,
    },
    /// The hash is above the header's own target, or the bits encode no valid target (negative,
    /// zero, overflowing or above the proof-of-work limit: Core's `high-hash`,
    /// `CheckProofOfWork` and `DeriveTarget`).
    #[error("header {hash} fails its proof of work")]
    HighHash {
        /// The header's hash.
        hash: BlockHash,
    },
    /// A block without transactions (Core's `bad-blk-length`).
    #[error("block {hash} has no transactions")]
    NoTransactions {
        /// The block's hash.
        hash: BlockHash,
    },
    /// A transaction appears twice: the merkle root cannot tell (CVE-2012-2459, Core's
    /// `bad-txns-duplicate`).
    #[error("block {hash} has a duplicate transaction")]
    DuplicateTransactions {
        /// The block's hash.
        hash: BlockHash,
    },
    /// The first transaction is not a coinbase (Core's `bad-cb-missing`).
    #[error("block {hash} does not start with a coinbase")]
    NoCoinbase {
        /// The block's hash.
        hash: BlockHash,
    },
    /// The transactions do not hash to the header's merkle root (Core's `bad-txnmrklroot`).
    #[error("block {hash} does not match its merkle root")]
    MerkleRootMismatch {
        /// The block's hash.
        hash: BlockHash,
    },
    /// The witness commitment in the coinbase does not match the witnesses (Core's
    /// `bad-witness-merkle-match`).
    #[error("block {hash} has a bad witness commitment")]
    WitnessCommitmentMismatch {
        /// The block's hash.
        hash: BlockHash,
    },
    /// A `merkleblock` whose partial merkle tree does not prove its header's root.
    #[error("merkleblock {hash} does not prove its merkle root: {error}")]
    BadMerkleProof {
        /// The block's hash.
        hash: BlockHash,
        /// What the proof got wrong.
        #[serde(serialize_with = "display")]
        error: MerkleBlockError,
    },
    /// A `merkleblock` we never asked for (its answer could not be matched to a request).
    #[error("unsolicited merkleblock {hash}")]
    UnsolicitedMerkleBlock {
        /// The block's hash.
        hash: BlockHash,
    },
    /// An answer of another kind than the request asked for.
    #[error("answer of the wrong kind for the request")]
    UnexpectedResponse,
}

fn display<T: std::fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Checks a list of headers on its own: each follows the one before it and meets its own
/// target (Core's `CheckHeadersPoW` in `net_processing.cpp`). Returns their hashes, which the
/// proof-of-work check computes anyway: they travel with the headers
/// ([`HashedHeaders`](crate::chain::HashedHeaders)) so nothing downstream hashes them again.
#[cfg(test)]
pub fn check_headers(headers: &[Header]) -> Result<Vec<BlockHash>, InvalidData> {
    check_headers_within(headers, any_network_pow_limit(), None)
}

/// [`check_headers`] with `pow_limit` as the network's proof-of-work limit. `known_last`: the
/// last header's hash when it was computed already (the prefetch hashes it on arrival).
pub(crate) fn check_headers_within(
    headers: &[Header],
    pow_limit: Target,
    known_last: Option<BlockHash>,
) -> Result<Vec<BlockHash>, InvalidData> {
    // All hashed first (two at a time is faster than one by one); a message of at most 2,000
    // headers, so a bad one costs the same bounded work as a good one.
    let hashes = match (known_last, headers.split_last()) {
        (Some(last_hash), Some((_, rest))) => {
            let mut hashes = Vec::with_capacity(headers.len());
            crate::wire::extend_block_hashes(&mut hashes, rest);
            hashes.push(last_hash);
            hashes
        }
        _ => crate::wire::block_hashes(headers),
    };
    let mut targets = TargetCache::default();
    for (index, (header, &hash)) in headers.iter().zip(&hashes).enumerate() {
        if index > 0 && header.prev_blockhash != hashes[index - 1] {
            return Err(InvalidData::UnchainedHeaders { index });
        }
        if !targets.derive(header.bits.to_consensus(), pow_limit).is_some_and(|t| t.is_met_by(hash)) {
            return Err(InvalidData::HighHash { hash });
        }
    }
    Ok(hashes)
}

/// Core's `CheckProofOfWork` (`pow.cpp`): the bits derive a target within `pow_limit`
/// (`DeriveTarget`) and the hash meets it. Returns the hash.
pub(super) fn check_pow(header: &Header, pow_limit: Target) -> Result<BlockHash, InvalidData> {
    let hash = crate::wire::block_hash(header);
    match derive_target(header.bits.to_consensus(), pow_limit) {
        Some(target) if target.is_met_by(hash) => Ok(hash),
        _ => Err(InvalidData::HighHash { hash }),
    }
}

/// Checks that a block's contents match its header (not a mutated block). Follows Core's
/// `CheckBlock` and `IsBlockMutated` (`validation.cpp`) in what needs no chain context. The
/// header's proof of work is checked where the block arrives (the peer machine, against the
/// network's limit), or by the hash a request asked for.
pub fn check_block(block: &Block) -> Result<(), InvalidData> {
    let hash = block.block_hash();
    let Some(first) = block.txdata.first() else {
        return Err(InvalidData::NoTransactions { hash });
    };
    // A duplicated transaction keeps the merkle root (CVE-2012-2459, Core's `IsBlockMutated`).
    let mut seen = HashSet::with_capacity(block.txdata.len());
    if !block.txdata.iter().all(|tx| seen.insert(tx.compute_txid())) {
        return Err(InvalidData::DuplicateTransactions { hash });
    }
    // Without a coinbase first the block is invalid, and 64-byte transactions could pass for
    // inner merkle nodes (Core's `IsBlockMutated`); with one, 64-byte transactions are valid.
    if !first.is_coinbase() {
        return Err(InvalidData::NoCoinbase { hash });
    }
    if !block.check_merkle_root() {
        return Err(InvalidData::MerkleRootMismatch { hash });
    }
    if !block.check_witness_commitment() {
        return Err(InvalidData::WitnessCommitmentMismatch { hash });
    }
    Ok(())
}

/// Checks a BIP37 `merkleblock`: its header meets its own target and its partial merkle tree
/// proves the header's root. Returns the matched txids, in block order.
#[cfg(test)]
pub fn check_merkleblock(mb: &MerkleBlock) -> Result<Vec<Txid>, InvalidData> {
    check_merkleblock_within(mb, any_network_pow_limit())
}

/// [`check_merkleblock`] with `pow_limit` as the network's proof-of-work limit.
pub(crate) fn check_merkleblock_within(
    mb: &MerkleBlock,
    pow_limit: Target,
) -> Result<Vec<Txid>, InvalidData> {
    let hash = check_pow(&mb.header, pow_limit)?;
    let mut txids = Vec::new();
    let mut indexes = Vec::new();
    mb.extract_matches(&mut txids, &mut indexes)
        .map_err(|error| InvalidData::BadMerkleProof { hash, error })?;
    Ok(txids)
}
