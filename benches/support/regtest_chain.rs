//! A deterministic, valid regtest header chain for the header benchmarks (`benches/headers.rs`,
//! `examples/header_server.rs`). Regtest's proof of work is trivial (a hash below 2^255: one
//! try in two), so 200,000 headers take well under a second to mine.
//!
//! Header `h` (from 1): version 4 (BIP34/65/66 are active from height 1 on regtest), parent the
//! previous header, merkle root sha256d of `h`, time genesis + `h` seconds (strictly rising, so
//! always after the median time past and far from the 2-hour future limit), regtest's bits, and
//! the first nonce from 0 whose hash meets the target. The same `n` always gives the same chain.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{BlockHash, TxMerkleNode};

/// The chain's headers from genesis (index = height) and their hashes, `n` headers after genesis.
#[allow(dead_code)]
pub fn generate(n: u32) -> (Vec<Header>, Vec<BlockHash>) {
    let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
    let mut headers = Vec::with_capacity(n as usize + 1);
    let mut hashes = Vec::with_capacity(n as usize + 1);
    headers.push(genesis);
    hashes.push(genesis.block_hash());
    let target = genesis.target();
    for h in 1..=n {
        let mut header = Header {
            version: Version::from_consensus(4),
            prev_blockhash: hashes[h as usize - 1],
            merkle_root: TxMerkleNode::from_raw_hash(sha256d::Hash::hash(&h.to_le_bytes())),
            time: genesis.time + h,
            bits: genesis.bits,
            nonce: 0,
        };
        let hash = loop {
            let hash = header.block_hash();
            if target.is_met_by(hash) {
                break hash;
            }
            header.nonce += 1;
        };
        headers.push(header);
        hashes.push(hash);
    }
    (headers, hashes)
}
