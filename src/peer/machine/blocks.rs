//! Blocks and headers against the network's proof-of-work limit, and the checks every `block`
//! passes before anyone sees it (Core's `ProcessMessage` BLOCK, `net_processing.cpp`).

use std::sync::Arc;

use bitcoin::Block;
use tokio::time::Instant;

use super::{PeerMachine, Verdict};
use crate::network::Network;
use crate::peer::reason::Misbehavior;
use crate::peer::requests::{check_block, InvalidData};
use crate::wire::pow::{derive_target, pow_limit};

impl PeerMachine {
    /// Checks proof of work against `network`'s limit (Core's `powLimit`); without this, the
    /// loosest limit of any network (regtest's) applies.
    pub(crate) fn with_network(mut self, network: Network) -> Self {
        self.pow_limit = pow_limit(network);
        // The request tracker's checks (answers to `getheaders`, requested blocks and
        // merkleblocks) use the same limit.
        self.requests.set_pow_limit(self.pow_limit);
        self
    }

    /// A `block` arrived after the handshake and parsed. Every block is checked as a requested
    /// one is: proof of work against its own bits and the network's limit, merkle root,
    /// witness commitment, no duplicate transactions, coinbase first ([`check_block`]). A
    /// failing block costs a ban, as in Core: `ProcessMessage` BLOCK punishes `IsBlockMutated`
    /// ("mutated block"), and `ProcessNewBlock` → `CheckBlock` failures reach
    /// `BlockChecked` → `MaybePunishNodeForBlock` (`net_processing.cpp`).
    ///
    /// `Deliver` when typed subscribers should see it (unsolicited and valid); `Consumed` for
    /// an answer to our own request (it goes to the requester) or when the peer was dropped.
    pub fn on_parsed_block(&mut self, now: Instant, block: &Arc<Block>) -> Verdict {
        if self.closed {
            return Verdict::Consumed;
        }
        let hash = block.block_hash();
        // Core's `CheckBlockHeader`: `CheckProofOfWork` ("high-hash").
        let meets = derive_target(block.header.bits.to_consensus(), self.pow_limit)
            .is_some_and(|target| target.is_met_by(hash));
        if !meets {
            let invalid = InvalidData::HighHash { hash };
            return self.misbehaving(Misbehavior::InvalidBlock { reason: invalid.to_string() });
        }
        if self.wants_block(&hash) {
            self.on_requested_block(now, block.clone());
            return Verdict::Consumed;
        }
        match check_block(block) {
            Ok(()) => Verdict::Deliver,
            Err(invalid) => self.misbehaving(Misbehavior::InvalidBlock { reason: invalid.to_string() }),
        }
    }
}
