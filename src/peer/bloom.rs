//! BIP37 bloom filters that peers load on us when we offer NODE_BLOOM: which transactions a
//! filtered peer gets announced. Matching follows Core's `CBloomFilter::IsRelevantAndUpdate`
//! (`common/bloom.cpp`), hashing with MurmurHash3 as BIP37 specifies. Pure.

use bitcoin::hashes::Hash as _;
use bitcoin::script::Instruction;
use bitcoin::{OutPoint, Script, Transaction};

use crate::wire::{BloomFlags, FilterLoad};

/// Largest filter (`MAX_BLOOM_FILTER_SIZE`, `common/bloom.h`), bytes.
pub const MAX_BLOOM_FILTER_SIZE: usize = 36_000;
/// Most hash functions (`MAX_HASH_FUNCS`, `common/bloom.h`).
pub const MAX_HASH_FUNCS: u32 = 50;
/// Largest `filteradd` element (`MAX_SCRIPT_ELEMENT_SIZE`, `script/script.h`).
pub const MAX_SCRIPT_ELEMENT_SIZE: usize = 520;

/// Why a filter message is refused (Core treats each as misbehaviour).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BloomError {
    /// `filterload` above Core's size or hash-function limits.
    #[error("filter of {bytes} bytes with {hash_funcs} hash functions exceeds 36000 bytes / 50 functions")]
    TooLarge {
        /// Filter size.
        bytes: usize,
        /// Hash functions.
        hash_funcs: u32,
    },
    /// `filteradd` element above 520 bytes.
    #[error("filteradd element of {0} bytes exceeds 520")]
    ElementTooLarge(usize),
    /// `filteradd` without a loaded filter.
    #[error("filteradd without a loaded filter")]
    NoFilter,
}

/// One peer's BIP37 filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BloomFilter {
    data: Vec<u8>,
    hash_funcs: u32,
    tweak: u32,
    flags: BloomFlags,
}

impl BloomFilter {
    /// Whether a `filterload` is within Core's limits (`CBloomFilter::IsWithinSizeConstraints`):
    /// the same rule for what peers send us and what we send them.
    pub fn within_limits(msg: &FilterLoad) -> bool {
        msg.filter.len() <= MAX_BLOOM_FILTER_SIZE && msg.hash_funcs <= MAX_HASH_FUNCS
    }

    /// A filter from a peer's `filterload`, within Core's limits.
    pub fn load(msg: &FilterLoad) -> Result<Self, BloomError> {
        if !Self::within_limits(msg) {
            return Err(BloomError::TooLarge { bytes: msg.filter.len(), hash_funcs: msg.hash_funcs });
        }
        Ok(BloomFilter {
            data: msg.filter.clone(),
            hash_funcs: msg.hash_funcs,
            tweak: msg.tweak,
            flags: msg.flags,
        })
    }

    /// The filter's bits (to build a `filterload` in tests).
    #[cfg(test)]
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }

    fn bit(&self, n: u32, key: &[u8]) -> usize {
        let seed = n.wrapping_mul(0xFBA4_C795).wrapping_add(self.tweak);
        // Reading from a slice cannot fail.
        let h = murmur3::murmur3_32(&mut std::io::Cursor::new(key), seed).unwrap_or(0);
        // `data` is non-empty here and at most 36,000 bytes: the product fits.
        (h as usize) % (self.data.len() * 8)
    }

    /// True if `key` may be in the filter (an empty filter matches everything, as in Core).
    pub fn contains(&self, key: &[u8]) -> bool {
        if self.data.is_empty() {
            return true;
        }
        (0..self.hash_funcs).all(|n| {
            let i = self.bit(n, key);
            self.data[i >> 3] & (1 << (i & 7)) != 0
        })
    }

    /// Adds `key` (a `filteradd`, or an outpoint the filter's update flag asks for).
    pub fn insert(&mut self, key: &[u8]) {
        if self.data.is_empty() {
            return;
        }
        for n in 0..self.hash_funcs {
            let i = self.bit(n, key);
            self.data[i >> 3] |= 1 << (i & 7);
        }
    }

    /// A `filteradd` element, within Core's size limit.
    pub fn add(&mut self, element: &[u8]) -> Result<(), BloomError> {
        if element.len() > MAX_SCRIPT_ELEMENT_SIZE {
            return Err(BloomError::ElementTooLarge(element.len()));
        }
        self.insert(element);
        Ok(())
    }

    /// Whether `tx` interests the peer: its txid, a data push of an output script (then the
    /// outpoint is added per the update flag, so spends of it match later), a spent outpoint,
    /// or a data push of an input script is in the filter.
    pub fn is_relevant_and_update(&mut self, tx: &Transaction) -> bool {
        if self.data.is_empty() {
            return true;
        }
        let txid = tx.compute_txid();
        let mut found = self.contains(txid.as_byte_array());
        for (vout, out) in tx.output.iter().enumerate() {
            if pushes(&out.script_pubkey).any(|data| self.contains(data)) {
                found = true;
                let update = match self.flags {
                    BloomFlags::All => true,
                    BloomFlags::PubkeyOnly => out.script_pubkey.is_p2pk() || out.script_pubkey.is_multisig(),
                    BloomFlags::None => false,
                };
                if update {
                    let vout = u32::try_from(vout).unwrap_or(u32::MAX);
                    self.insert(&outpoint_key(&OutPoint { txid, vout }));
                }
            }
        }
        if found {
            return true;
        }
        tx.input.iter().any(|input| {
            self.contains(&outpoint_key(&input.previous_output))
                || pushes(&input.script_sig).any(|data| self.contains(data))
        })
    }
}

/// Non-empty data pushes of a script, up to the first unparsable opcode (Core's `GetOp` loop).
fn pushes(script: &Script) -> impl Iterator<Item = &[u8]> + '_ {
    script.instructions().map_while(Result::ok).filter_map(|i| match i {
        Instruction::PushBytes(b) if !b.is_empty() => Some(b.as_bytes()),
        _ => None,
    })
}

/// An outpoint as Core serializes it for the filter: txid (internal order) then index (LE).
fn outpoint_key(o: &OutPoint) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(o.txid.as_byte_array());
    k[32..].copy_from_slice(&o.vout.to_le_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{Amount, ScriptBuf, TxIn, TxOut, Txid};

    fn filter(data: Vec<u8>, hash_funcs: u32, tweak: u32, flags: BloomFlags) -> BloomFilter {
        BloomFilter::load(&FilterLoad { filter: data, hash_funcs, tweak, flags }).unwrap()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Core's `bloom_create_insert_serialize` and `..._with_tweak` vectors: the serialized
    /// filters after inserting three keys, checked here as membership.
    #[test]
    fn core_vectors() {
        for (data, tweak) in [("614e9b", 0u32), ("ce4299", 2_147_483_649)] {
            let f = BloomFilter::load(&FilterLoad {
                filter: unhex(data),
                hash_funcs: 5,
                tweak,
                flags: BloomFlags::All,
            })
            .unwrap();
            for key in [
                "99108ad8ed9bb6274d3980bab5a85c048f0950c8",
                "b5a2c786d9ef4658287ced5914b37a1b4aa32eee",
                "b9300670b4c5366e95b2699e8b18bc75e5f729c5",
            ] {
                assert!(f.contains(&unhex(key)), "{key} tweak {tweak}");
            }
            assert!(!f.contains(&unhex("19108ad8ed9bb6274d3980bab5a85c048f0950c8")), "tweak {tweak}");
        }
        // Built from scratch, the same inserts give the same bits.
        let mut f = filter(vec![0; 3], 5, 0, BloomFlags::All);
        for key in [
            "99108ad8ed9bb6274d3980bab5a85c048f0950c8",
            "b5a2c786d9ef4658287ced5914b37a1b4aa32eee",
            "b9300670b4c5366e95b2699e8b18bc75e5f729c5",
        ] {
            f.insert(&unhex(key));
        }
        assert_eq!(f.data, unhex("614e9b"));
    }

    #[test]
    fn limits() {
        let big = FilterLoad { filter: vec![0; 36_001], hash_funcs: 1, tweak: 0, flags: BloomFlags::None };
        assert!(matches!(BloomFilter::load(&big), Err(BloomError::TooLarge { .. })));
        let many = FilterLoad { filter: vec![0; 10], hash_funcs: 51, tweak: 0, flags: BloomFlags::None };
        assert!(matches!(BloomFilter::load(&many), Err(BloomError::TooLarge { .. })));
        let mut f = filter(vec![0; 10], 3, 7, BloomFlags::None);
        assert_eq!(f.add(&[0; 521]), Err(BloomError::ElementTooLarge(521)));
        f.add(&[1; 520]).unwrap();
        assert!(f.contains(&[1; 520]));
    }

    fn pay_to(script: ScriptBuf, prev: OutPoint) -> Transaction {
        Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn { previous_output: prev, ..Default::default() }],
            output: vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: script }],
        }
    }

    #[test]
    fn output_pushes_match_and_update_all_then_matches_the_spend() {
        let hash = [0xab; 20];
        let script = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(hash));
        let mut f = filter(vec![0; 64], 10, 5, BloomFlags::All);
        f.insert(&hash);
        let funding = pay_to(script, OutPoint::null());
        let unrelated =
            pay_to(ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([1; 20])), OutPoint::null());
        assert!(f.is_relevant_and_update(&funding));
        assert!(!f.is_relevant_and_update(&unrelated));
        // BLOOM_UPDATE_ALL added the funding outpoint: its spend matches.
        let spend = pay_to(ScriptBuf::new(), OutPoint { txid: funding.compute_txid(), vout: 0 });
        assert!(f.is_relevant_and_update(&spend));

        // With BLOOM_UPDATE_NONE the spend does not match.
        let mut g = filter(vec![0; 64], 10, 5, BloomFlags::None);
        g.insert(&hash);
        assert!(g.is_relevant_and_update(&funding));
        assert!(!g.is_relevant_and_update(&spend));
    }

    #[test]
    fn txid_match_and_empty_filter_matches_all() {
        let tx = pay_to(ScriptBuf::new(), OutPoint { txid: Txid::from_byte_array([3; 32]), vout: 1 });
        let mut f = filter(vec![0; 32], 4, 0, BloomFlags::None);
        assert!(!f.is_relevant_and_update(&tx));
        f.insert(tx.compute_txid().as_byte_array());
        assert!(f.is_relevant_and_update(&tx));
        let mut empty = filter(vec![], 0, 0, BloomFlags::None);
        assert!(empty.is_relevant_and_update(&tx));
    }
}

#[cfg(test)]
mod doc_examples {
    #[test]
    fn core_bloom_vector_contains_its_key() {
        use crate::peer::bloom::BloomFilter;
        use crate::wire::{BloomFlags, FilterLoad};
        // Core's bloom_tests vector: 3 elements at 1% false positives, tweak 0.
        let load =
            FilterLoad { filter: vec![0x61, 0x4e, 0x9b], hash_funcs: 5, tweak: 0, flags: BloomFlags::All };
        let f = BloomFilter::load(&load).unwrap();
        let key = [
            0x99, 0x10, 0x8a, 0xd8, 0xed, 0x9b, 0xb6, 0x27, 0x4d, 0x39, 0x80, 0xba, 0xb5, 0xa8, 0x5c, 0x04,
            0x8f, 0x09, 0x50, 0xc8,
        ];
        assert!(f.contains(&key));
    }
}
