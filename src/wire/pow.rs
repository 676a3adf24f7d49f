//! The compact `nBits` encoding of a proof-of-work target, decoded as Bitcoin Core does.
//!
//! `Target::from_compact` in the `bitcoin` crate reports neither a negative nor an
//! overflowing encoding (it truncates), so a header with bits `0x407fffff` would get a target
//! its hash meets. Core rejects such a header (`DeriveTarget`, `pow.cpp`); these functions
//! decode mantissa, exponent and sign bit themselves (`arith_uint256::SetCompact`).

use bitcoin::pow::{CompactTarget, Target};

use crate::Network;

/// Core's `powLimit` for `network` (`kernel/chainparams.cpp`), exactly (the `bitcoin` crate's
/// `max_attainable_target` is slightly lower on mainnet, which would reject a few odd
/// encodings Core accepts).
pub(crate) fn pow_limit(network: Network) -> Target {
    let mut limit = [0xffu8; 32];
    match network {
        Network::Mainnet | Network::Testnet3 | Network::Testnet4 => limit[..4].fill(0), // 00000000ffff…ff
        Network::Signet => {
            limit = [0u8; 32];
            limit[2..5].copy_from_slice(&[0x03, 0x77, 0xae]); // 00000377ae00…00
        }
        Network::Regtest => limit[0] = 0x7f, // 7fff…ff
    }
    Target::from_be_bytes(limit)
}

/// The loosest `powLimit` of any network (regtest's): what a check that does not know the
/// network can still enforce.
pub(crate) fn any_network_pow_limit() -> Target {
    pow_limit(Network::Regtest)
}

/// The target `bits` encodes, or `None` where it is negative, zero or overflows 256 bits
/// (`arith_uint256::SetCompact`'s `pfNegative`/`pfOverflow`, or a zero result).
pub(crate) fn target_from_bits(bits: u32) -> Option<Target> {
    let size = bits >> 24;
    let word = bits & 0x007f_ffff;
    if word == 0 || bits & 0x0080_0000 != 0 {
        // Zero, or negative. (Core's sign test uses the mantissa after a small exponent
        // shifted it; where that differs the shifted mantissa is zero, rejected as well.)
        return None;
    }
    if size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32) {
        return None; // overflows 256 bits
    }
    // In range now, so `from_compact` loses no bits; a small exponent can still shift the
    // mantissa out entirely (0x01003456 is zero).
    let target = Target::from_compact(CompactTarget::from_consensus(bits));
    (target != Target::ZERO).then_some(target)
}

/// Core's `DeriveTarget` (`pow.cpp`): the target `bits` encodes, or `None` when it is
/// negative, zero, overflows or is above `pow_limit` (`fNegative || bnTarget == 0 ||
/// fOverflow || bnTarget > UintToArith256(params.powLimit)`).
pub(crate) fn derive_target(bits: u32, pow_limit: Target) -> Option<Target> {
    target_from_bits(bits).filter(|target| *target <= pow_limit)
}

/// [`derive_target`] remembering the last `bits` it decoded: the headers of a batch almost
/// always share one.
#[derive(Debug, Default)]
pub(crate) struct TargetCache(Option<(u32, Option<Target>)>);

impl TargetCache {
    /// `derive_target(bits, pow_limit)`; the limit must be the same on every call.
    pub fn derive(&mut self, bits: u32, pow_limit: Target) -> Option<Target> {
        match self.0 {
            Some((b, target)) if b == bits => target,
            _ => {
                let target = derive_target(bits, pow_limit);
                self.0 = Some((bits, target));
                target
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(t: Target) -> String {
        t.to_be_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
    }

    fn low(value: u64) -> Target {
        let mut b = [0u8; 32];
        b[24..].copy_from_slice(&value.to_be_bytes());
        Target::from_be_bytes(b)
    }

    /// Core's `arith_uint256_tests.cpp` `bignum_SetCompact` vectors.
    #[test]
    fn set_compact_vectors() {
        // Zero results (some with the sign bit): all rejected.
        for bits in [
            0, 0x00123456, 0x01003456, 0x02000056, 0x03000000, 0x04000000, 0x00923456, 0x01803456,
            0x02800056, 0x03800000, 0x04800000,
        ] {
            assert_eq!(target_from_bits(bits), None, "{bits:#010x} is zero");
        }
        assert_eq!(target_from_bits(0x01123456), Some(low(0x12)));
        assert_eq!(target_from_bits(0x02123456), Some(low(0x1234)));
        assert_eq!(target_from_bits(0x03123456), Some(low(0x123456)));
        assert_eq!(target_from_bits(0x04123456), Some(low(0x12345600)));
        assert_eq!(target_from_bits(0x05009234), Some(low(0x92340000)));
        // Negative: sign bit with a non-zero mantissa.
        assert_eq!(target_from_bits(0x01fedcba), None);
        assert_eq!(target_from_bits(0x04923456), None);
        // 0x20123456: 0x123456 followed by 29 zero bytes.
        let big = target_from_bits(0x20123456).expect("in range");
        assert_eq!(hex(big), format!("123456{}", "00".repeat(29)));
        // Overflow.
        assert_eq!(target_from_bits(0xff123456), None);
    }

    /// The edges of `SetCompact`'s overflow test: the largest exponent each mantissa width fits.
    #[test]
    fn overflow_edges() {
        assert!(target_from_bits(0x22000001).is_some()); // 2^248: one byte at size 34
        assert_eq!(target_from_bits(0x23000001), None); // size 35
        assert!(target_from_bits(0x210000ff).is_some());
        assert_eq!(target_from_bits(0x22000100), None); // two bytes at size 34
        assert!(target_from_bits(0x2100ffff).is_some());
        assert_eq!(target_from_bits(0x21010000), None); // three bytes at size 33
        assert_eq!(target_from_bits(0x407fffff), None); // the hostile regtest header's bits
    }

    /// Core's `pow_tests.cpp` `CheckProofOfWork_test_*`: negative, overflow, too easy (twice
    /// the limit) and zero targets fail; the limit itself derives.
    #[test]
    fn derive_target_follows_core() {
        for network in [Network::Mainnet, Network::Testnet4, Network::Signet, Network::Regtest] {
            let limit = pow_limit(network);
            let limit_bits = limit.to_compact_lossy().to_consensus();
            assert!(derive_target(limit_bits, limit).is_some(), "{network:?}: the limit's own bits");
            // `GetCompact(/*fNegative=*/true)`: the limit's bits with the sign bit.
            assert_eq!(derive_target(limit_bits | 0x0080_0000, limit), None, "{network:?}: negative");
            assert_eq!(derive_target(!0x0080_0000u32, limit), None, "{network:?}: overflow");
            // Twice the limit: one more bit of exponent, same mantissa.
            let twice =
                target_from_bits(limit_bits).map(|t| t.to_compact_lossy().to_consensus() + 0x0100_0000);
            assert_eq!(derive_target(twice.expect("limit decodes"), limit), None, "{network:?}: too easy");
            assert_eq!(derive_target(0, limit), None, "{network:?}: zero");
        }
        // Mainnet's genesis bits derive; regtest's (0x207fffff) do on regtest only.
        assert!(derive_target(0x1d00ffff, pow_limit(Network::Mainnet)).is_some());
        assert!(derive_target(0x207fffff, pow_limit(Network::Regtest)).is_some());
        assert_eq!(derive_target(0x207fffff, pow_limit(Network::Mainnet)), None);
        // Just above regtest's limit without overflowing: 2^255.
        assert_eq!(derive_target(0x21008000, any_network_pow_limit()), None);
    }
}
