//! Where an address may sit: the keyed hashes that choose its new- or tried-table bucket and
//! its position inside the bucket (Core's `AddrInfo::GetNewBucket`, `GetTriedBucket` and
//! `GetBucketPosition`, src/addrman.cpp).

use std::net::SocketAddr;

use bitcoin::hashes::siphash24;

use super::AddrBook;
use crate::addrbook::netgroup::{netgroup, NetGroup};
use crate::peer::PeerAddr;

/// Over how many tried buckets the addresses of one group spread (Core's
/// `ADDRMAN_TRIED_BUCKETS_PER_GROUP`, src/addrman.cpp).
const TRIED_BUCKETS_PER_GROUP: u64 = 8;
/// Over how many new buckets the addresses from one source group spread (Core's
/// `ADDRMAN_NEW_BUCKETS_PER_SOURCE_GROUP`).
const NEW_BUCKETS_PER_SOURCE_GROUP: u64 = 64;

impl AddrBook {
    /// SipHash-2-4 of `parts` under the book's key (Core uses SHA-256 here; SipHash is the
    /// standard keyed hash for exactly this job and much cheaper).
    pub(super) fn hash(&self, parts: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let mut buf = Vec::with_capacity(64);
        parts(&mut buf);
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&self.key[i..i + 8]);
            u64::from_le_bytes(w)
        };
        siphash24::Hash::hash_to_u64_with_keys(word(0) ^ word(16), word(8) ^ word(24), &buf)
    }

    /// Slot index of `addr` in the new table when heard from `source_group`.
    pub(super) fn new_slot(&self, addr: &PeerAddr, source_group: &NetGroup) -> usize {
        let spread = self.hash(|b| {
            b.push(b'N');
            netgroup(addr).encode(b);
            source_group.encode(b);
        }) % NEW_BUCKETS_PER_SOURCE_GROUP;
        let bucket = self.hash(|b| {
            b.push(b'n');
            source_group.encode(b);
            b.extend(spread.to_le_bytes());
        });
        let bucket = below(bucket, self.config.new_buckets as usize);
        bucket * self.config.bucket_size as usize + self.position(b'P', bucket, addr)
    }

    /// The first free slot of `slot`'s new-table bucket, looking after `slot` (wrapping).
    pub(super) fn free_in_bucket(&self, slot: usize) -> Option<usize> {
        let size = self.config.bucket_size as usize;
        let start = slot - slot % size;
        (1..size).map(|i| start + (slot - start + i) % size).find(|&s| self.new_slots[s].is_none())
    }

    /// Slot index of `addr` in the tried table.
    pub(super) fn tried_slot(&self, addr: &PeerAddr) -> usize {
        let spread = self.hash(|b| {
            b.push(b'T');
            encode_addr(addr, b);
        }) % TRIED_BUCKETS_PER_GROUP;
        let bucket = self.hash(|b| {
            b.push(b't');
            netgroup(addr).encode(b);
            b.extend(spread.to_le_bytes());
        });
        let bucket = below(bucket, self.config.tried_buckets as usize);
        bucket * self.config.bucket_size as usize + self.position(b'K', bucket, addr)
    }

    /// Position of `addr` inside `bucket` (`domain` tells the tables apart, like Core's
    /// 'N'/'K').
    pub(super) fn position(&self, domain: u8, bucket: usize, addr: &PeerAddr) -> usize {
        let hash = self.hash(|b| {
            b.push(domain);
            b.extend((bucket as u64).to_le_bytes());
            encode_addr(addr, b);
        });
        below(hash, self.config.bucket_size as usize)
    }
}

/// `hash` reduced to `0..n` (`n` ≥ 1).
fn below(hash: u64, n: usize) -> usize {
    // The remainder is below `n`, a usize, so the cast cannot truncate.
    (hash % n.max(1) as u64) as usize
}

/// Appends an unambiguous encoding of `addr` (tag, address bytes, port), for hashing.
fn encode_addr(addr: &PeerAddr, out: &mut Vec<u8>) {
    match addr {
        PeerAddr::Ip(SocketAddr::V4(a)) => {
            out.push(4);
            out.extend(a.ip().octets());
            out.extend(a.port().to_be_bytes());
        }
        PeerAddr::Ip(SocketAddr::V6(a)) => {
            out.push(6);
            out.extend(a.ip().octets());
            out.extend(a.port().to_be_bytes());
        }
        PeerAddr::Host(name, port) => {
            out.push(b'h');
            out.extend((name.len() as u64).to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(port.to_be_bytes());
        }
    }
}
