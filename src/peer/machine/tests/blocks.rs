//! Headers and blocks against the network's proof-of-work limit, and every `block` checked
//! before it is published (Core's `DeriveTarget`, `ProcessMessage` BLOCK).

use std::sync::Arc;

use bitcoin::Block;

use super::*;
use crate::network::Network;
use crate::peer::reason::ReasonKind;

fn regtest_genesis() -> Block {
    bitcoin::constants::genesis_block(bitcoin::Network::Regtest)
}

/// Grinds the nonce until the header meets its own target (regtest's: about two tries).
fn mine(mut block: Block) -> Block {
    let target = block.header.target();
    while !target.is_met_by(block.block_hash()) {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
    block
}

fn banned_for(m: &mut PeerMachine) -> Misbehavior {
    match disconnect_reason(&drain(m)).cloned() {
        Some(r @ DisconnectReason::Misbehaving(_)) => {
            assert_eq!(r.kind(), ReasonKind::Misbehavior, "{r:?} is a ban");
            let DisconnectReason::Misbehaving(m) = r else { unreachable!() };
            m
        }
        other => panic!("expected a ban, got {other:?}"),
    }
}

#[test]
fn headers_with_overflowing_bits_are_punished() {
    // 0x407fffff overflows 256 bits: `from_compact` would truncate it to a target the hash
    // meets. Core's `DeriveTarget` rejects it; `CheckHeadersPoW` punishes.
    let (mut m, t0) = ready_outbound();
    let mut h = regtest_genesis().header;
    h.bits = bitcoin::CompactTarget::from_consensus(0x407f_ffff);
    assert_eq!(m.on_message(t0, &Message::Headers(vec![h])), Verdict::Consumed);
    assert!(matches!(banned_for(&mut m), Misbehavior::InvalidData { .. }));
}

#[test]
fn headers_above_the_networks_limit_are_punished() {
    // Regtest's bits (0x207fffff) are far above mainnet's `powLimit`.
    let h = regtest_genesis().header;
    let (m, t0) = ready_outbound();
    let mut m = m.with_network(Network::Mainnet);
    assert_eq!(m.on_message(t0, &Message::Headers(vec![h])), Verdict::Consumed);
    assert!(matches!(banned_for(&mut m), Misbehavior::InvalidData { .. }));
    // On regtest the same header is fine and published.
    let (m, t0) = ready_outbound();
    let mut m = m.with_network(Network::Regtest);
    assert_eq!(m.on_message(t0, &Message::Headers(vec![h])), Verdict::Deliver);
    assert!(disconnect_reason(&drain(&mut m)).is_none());
}

#[test]
fn a_valid_unsolicited_block_is_delivered() {
    let (m, t0) = ready_outbound();
    let mut m = m.with_network(Network::Regtest);
    assert_eq!(m.on_parsed_block(t0, &Arc::new(regtest_genesis())), Verdict::Deliver);
    assert!(disconnect_reason(&drain(&mut m)).is_none());
}

#[test]
fn a_mutated_unsolicited_block_is_punished() {
    // A wrong merkle root with valid proof of work: Core's `IsBlockMutated` → "mutated block".
    let mut block = regtest_genesis();
    block.header.merkle_root = bitcoin::TxMerkleNode::from_byte_array([7; 32]);
    let block = mine(block);
    let (m, t0) = ready_outbound();
    let mut m = m.with_network(Network::Regtest);
    assert_eq!(m.on_parsed_block(t0, &Arc::new(block)), Verdict::Consumed);
    let why = banned_for(&mut m);
    assert!(
        matches!(&why, Misbehavior::InvalidBlock { reason } if reason.contains("merkle root")),
        "{why:?}"
    );
    // A duplicated transaction keeps the merkle root (CVE-2012-2459) but is punished too.
    let mut block = regtest_genesis();
    let tx = block.txdata[0].clone();
    block.txdata.push(tx);
    let (m, t0) = ready_outbound();
    let mut m = m.with_network(Network::Regtest);
    assert_eq!(m.on_parsed_block(t0, &Arc::new(mine(block))), Verdict::Consumed);
    assert!(matches!(banned_for(&mut m), Misbehavior::InvalidBlock { .. }));
}

#[test]
fn an_unsolicited_block_with_bad_bits_is_punished() {
    for (network, bits) in [(Network::Regtest, 0x407f_ffff), (Network::Mainnet, 0x207f_ffff)] {
        let mut block = regtest_genesis();
        block.header.bits = bitcoin::CompactTarget::from_consensus(bits);
        let (m, t0) = ready_outbound();
        let mut m = m.with_network(network);
        assert_eq!(m.on_parsed_block(t0, &Arc::new(block)), Verdict::Consumed, "{network:?} {bits:#x}");
        assert!(matches!(banned_for(&mut m), Misbehavior::InvalidBlock { .. }));
    }
    // A hash above its own (valid) target.
    let mut block = regtest_genesis();
    while block.header.target().is_met_by(block.block_hash()) {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
    let (m, t0) = ready_outbound();
    let mut m = m.with_network(Network::Regtest);
    assert_eq!(m.on_parsed_block(t0, &Arc::new(block)), Verdict::Consumed);
    assert!(matches!(banned_for(&mut m), Misbehavior::InvalidBlock { .. }));
}
