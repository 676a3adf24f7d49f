//! Serving the header chain to downstream peers as Bitcoin Core does: the answer to a
//! `getheaders` (`net_processing.cpp` `PeerManagerImpl::ProcessMessage`, GETHEADERS) and the
//! announcement of a new tip (`PeerManagerImpl::SendMessages`, "Try sending block announcements
//! via headers"). Pure: the caller keeps each peer's [`ServePeer`] and sends the messages.
//!
//! Where Core speaks of its active chain (validated blocks) we use the best header chain: a
//! headers-only node has no other.

use bitcoin::block::Header;
use bitcoin::BlockHash;

use super::HeaderChain;
use crate::wire::limits::MAX_HEADERS_RESULTS;

/// Most new blocks announced with `headers` at once; more fall back to an `inv` of the tip
/// (`net_processing.cpp` `MAX_BLOCKS_TO_ANNOUNCE`).
pub const MAX_BLOCKS_TO_ANNOUNCE: usize = 8;

/// What we know of one downstream peer's view of our chain (Core's `CNodeState`
/// `pindexBestKnownBlock`, `pindexBestHeaderSent` and `Peer::m_prefers_headers`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServePeer {
    /// It sent `sendheaders` (BIP130): announce new blocks with `headers`.
    pub prefers_headers: bool,
    /// The best header it announced to us (the last of its `headers`, or an `inv`ed block).
    pub best_known: Option<BlockHash>,
    /// The last header we sent it.
    pub best_sent: Option<BlockHash>,
}

/// How to announce new blocks to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    /// Nothing: the peer has them.
    Nothing,
    /// Send these headers (ascending); they connect to a header the peer has.
    Headers(Vec<Header>),
    /// Send an `inv` of this block (the tip).
    Inv(BlockHash),
}

/// Core's answer to `getheaders`: `None` when Core sends nothing, else the `headers` to send
/// (possibly empty) and the header to remember as the peer's `best_sent`.
///
/// - An empty locator asks for the `stop` header alone; Core answers only if it is known and
///   `BlockRequestAllowed`: on the best chain (a headers-only fork never reaches
///   `BLOCK_VALID_SCRIPTS`, the other way to be allowed).
/// - Otherwise the fork point is the first locator hash on the best chain, or the chain's start
///   when none is (`Chainstate::FindForkInGlobalIndex`); then come the best-chain headers after
///   it, at most [`MAX_HEADERS_RESULTS`], ending early at `stop`.
/// - While the chain has less work than the network's minimum, Core sends an empty `headers`
///   ("active chain has too little work"). The work of a chain started at a checkpoint is not
///   known, so that rule applies only to chains from genesis.
///
/// Over-long locators (more than 101 hashes) never get here: the peer is disconnected first.
pub fn answer_getheaders(
    chain: &HeaderChain,
    locator: &[BlockHash],
    stop: BlockHash,
) -> Option<(Vec<Header>, BlockHash)> {
    let tip = chain.tip().hash;
    if chain.start_height() == 0 && chain.work() < chain.network().min_chain_work() {
        return Some((Vec::new(), tip));
    }
    let headers = if locator.is_empty() {
        let height = chain.height_of(&stop)?;
        vec![chain.header_at(height)?]
    } else {
        // `headers_after` follows Core's loop: the fork point, then `Next` until the limit or
        // the stop hash.
        chain.headers_after(locator, stop, MAX_HEADERS_RESULTS)
    };
    // Core: `pindexBestHeaderSent = pindex ? pindex : ActiveChain().Tip()`: the last header
    // sent (the loop breaks on it), or the tip when the answer reached it or was empty.
    let best_sent = headers.last().map_or(tip, Header::block_hash);
    Some((headers, best_sent))
}

/// Whether `peer` has the best-chain header `hash` at `height`: it is an ancestor of the best
/// header the peer announced or of the last one we sent it (Core's `PeerHasHeader`).
pub fn peer_has_header(chain: &HeaderChain, peer: &ServePeer, hash: BlockHash, height: u32) -> bool {
    [peer.best_known, peer.best_sent].into_iter().flatten().any(|d| is_ancestor(chain, d, hash, height))
}

/// Whether the best-chain header (`hash`, `height`) is `descendant` or one of its ancestors.
fn is_ancestor(chain: &HeaderChain, descendant: BlockHash, hash: BlockHash, height: u32) -> bool {
    let mut cur = descendant;
    // Bounded: each step goes one header down a stored fork (at most the fork cap).
    loop {
        if let Some(h) = chain.height_of(&cur) {
            return h >= height && chain.hash_at(height) == Some(hash);
        }
        let Some((header, h)) = chain.header(&cur) else { return false };
        if h <= height {
            return false; // a fork header at or below `height` is not on the best chain
        }
        cur = header.prev_blockhash;
    }
}

/// How to announce the new best-chain blocks `hashes` (ascending; Core's
/// `m_blocks_for_headers_relay`) to `peer`, as `SendMessages` decides: `headers` when the peer
/// prefers them, there are at most [`MAX_BLOCKS_TO_ANNOUNCE`], all are still on the best chain,
/// they connect to each other and to a header the peer has; otherwise an `inv` of the last one
/// unless the peer has it. Update `peer.best_sent` after sending headers: this does it.
pub fn announce(chain: &HeaderChain, peer: &mut ServePeer, hashes: &[BlockHash]) -> Announce {
    let Some(&last) = hashes.last() else { return Announce::Nothing };
    let mut revert_to_inv = !peer.prefers_headers || hashes.len() > MAX_BLOCKS_TO_ANNOUNCE;
    let mut headers = Vec::new();
    let mut best: Option<BlockHash> = None;
    if !revert_to_inv {
        let mut found_start = false;
        for &hash in hashes {
            let Some(height) = chain.height_of(&hash) else {
                revert_to_inv = true; // left the best chain since
                break;
            };
            let Some(header) = chain.header_at(height) else { break };
            if best.is_some_and(|b| header.prev_blockhash != b) {
                revert_to_inv = true; // they do not connect to each other
                break;
            }
            best = Some(hash);
            if found_start {
                headers.push(header);
            } else if peer_has_header(chain, peer, hash, height) {
                continue;
            } else if height == chain.start_height()
                || peer_has_header(chain, peer, header.prev_blockhash, height - 1)
            {
                found_start = true;
                headers.push(header);
            } else {
                revert_to_inv = true; // nothing would connect
                break;
            }
        }
    }
    if !revert_to_inv && !headers.is_empty() {
        peer.best_sent = best;
        return Announce::Headers(headers);
    }
    if !revert_to_inv {
        return Announce::Nothing; // the peer has them all
    }
    match chain.height_of(&last) {
        Some(height) if peer_has_header(chain, peer, last, height) => Announce::Nothing,
        // Core announces the tip even when it left the main chain (it only logs that).
        _ => Announce::Inv(last),
    }
}

#[cfg(test)]
#[path = "tests_serve.rs"]
mod tests;
