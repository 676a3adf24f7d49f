//! A header's block hash (double SHA-256 of its 80 bytes) through `sha2`'s compression
//! function, and many headers' two at a time with the CPU's SHA instructions.
//!
//! The padding of an 80-byte and of a 32-byte message is fixed, so the hash is three
//! compressions with nothing of a streaming hasher's buffering around them: 147 ns a header
//! here, against about 190 ns for `Header::block_hash`. [`block_hashes`] interleaves two
//! headers' compressions: 84 ns a header. A header sync hashes every header once on its peer's
//! thread, where hashing is most of the work, and loading `headers.dat` hashes every record.

use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::BlockHash;
use sha2::digest::generic_array::GenericArray;

/// SHA-256's initial state (FIPS 180-4, 5.3.3). A `static`: the SHA-NI path loads it through
/// a pointer.
static H0: [u32; 8] =
    [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19];

/// `header.block_hash()`, faster.
///
/// ```
/// let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin).header;
/// assert_eq!(btcpeer::wire::block_hash(&genesis), genesis.block_hash());
/// ```
pub fn block_hash(header: &Header) -> BlockHash {
    BlockHash::from_byte_array(hash_bytes(&header_bytes(header)))
}

/// The block hashes of `headers`, in order: [`block_hash`] of each, two at a time where the
/// CPU has SHA instructions. The rounds of one SHA-256 stream wait on each other; two
/// independent streams interleaved keep the SHA unit busy (Core hashes merkle tree levels
/// the same way: `sha256_x86_shani.cpp`, `TransformD64_2way`).
///
/// ```
/// let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin).header;
/// let hashes = btcpeer::wire::block_hashes(&[genesis; 3]);
/// assert_eq!(hashes, vec![genesis.block_hash(); 3]);
/// ```
pub fn block_hashes(headers: &[Header]) -> Vec<BlockHash> {
    let mut out = Vec::with_capacity(headers.len());
    extend_block_hashes(&mut out, headers);
    out
}

/// [`block_hashes`] appended to `out`.
pub(crate) fn extend_block_hashes(out: &mut Vec<BlockHash>, headers: &[Header]) {
    out.reserve(headers.len());
    #[cfg(target_arch = "x86_64")]
    if shani::available() {
        let mut pairs = headers.chunks_exact(2);
        for pair in &mut pairs {
            // SAFETY: `available` checked that the CPU has the instructions `pair` uses.
            let (a, b) = unsafe { shani::pair(&header_bytes(&pair[0]), &header_bytes(&pair[1])) };
            out.push(BlockHash::from_byte_array(a));
            out.push(BlockHash::from_byte_array(b));
        }
        out.extend(pairs.remainder().iter().map(block_hash));
        return;
    }
    out.extend(headers.iter().map(block_hash));
}

/// A header's 80 serialized bytes.
fn header_bytes(header: &Header) -> [u8; 80] {
    let mut b = [0u8; 80];
    b[..4].copy_from_slice(&header.version.to_consensus().to_le_bytes());
    b[4..36].copy_from_slice(header.prev_blockhash.as_byte_array());
    b[36..68].copy_from_slice(header.merkle_root.as_byte_array());
    b[68..72].copy_from_slice(&header.time.to_le_bytes());
    b[72..76].copy_from_slice(&header.bits.to_consensus().to_le_bytes());
    b[76..].copy_from_slice(&header.nonce.to_le_bytes());
    b
}

/// A header from the first 80 bytes of an entry (a `headers` message's, with its tx count, or
/// a `headers.dat` record, with its checksum); every byte pattern is a header. About 10× faster
/// than `Header::consensus_decode`, which reads field by field through `io::Read`.
pub(crate) fn header_from_bytes<const N: usize>(b: &[u8; N]) -> Header {
    const { assert!(N >= 80) };
    let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let hash = |at: usize| std::array::from_fn(|i| b[at + i]);
    Header {
        version: bitcoin::block::Version::from_consensus(word(0) as i32),
        prev_blockhash: BlockHash::from_byte_array(hash(4)),
        merkle_root: bitcoin::TxMerkleNode::from_byte_array(hash(36)),
        time: word(68),
        bits: bitcoin::CompactTarget::from_consensus(word(72)),
        nonce: word(76),
    }
}

/// sha256d of 80 bytes through `sha2`'s compression function.
fn hash_bytes(bytes: &[u8; 80]) -> [u8; 32] {
    // The 80 bytes, then the padding: 0x80, zeros, the length in bits (640) big-endian.
    let mut blocks = [[0u8; 64]; 2];
    blocks[0].copy_from_slice(&bytes[..64]);
    blocks[1][..16].copy_from_slice(&bytes[64..]);
    blocks[1][16] = 0x80;
    blocks[1][56..].copy_from_slice(&640u64.to_be_bytes());
    let mut first = H0;
    sha2::compress256(&mut first, &[GenericArray::from(blocks[0]), GenericArray::from(blocks[1])]);
    // The second hash: the first's 32 bytes, padded (length 256 bits).
    let mut block = [0u8; 64];
    for (out, word) in block.chunks_exact_mut(4).zip(first) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    block[32] = 0x80;
    block[56..].copy_from_slice(&256u64.to_be_bytes());
    let mut second = H0;
    sha2::compress256(&mut second, &[GenericArray::from(block)]);
    let mut hash = [0u8; 32];
    for (out, word) in hash.chunks_exact_mut(4).zip(second) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    hash
}

/// Two headers' sha256d at once with the SHA-NI instructions. The rounds and message schedule
/// are those of `sha2`'s x86 backend (Intel's SHA extensions paper), each step done for both
/// streams before the next.
#[cfg(target_arch = "x86_64")]
mod shani {
    use core::arch::x86_64::*;

    /// SHA-256's round constants (FIPS 180-4, 4.2.2).
    static K: [u32; 64] = [
        0x428a_2f98,
        0x7137_4491,
        0xb5c0_fbcf,
        0xe9b5_dba5,
        0x3956_c25b,
        0x59f1_11f1,
        0x923f_82a4,
        0xab1c_5ed5,
        0xd807_aa98,
        0x1283_5b01,
        0x2431_85be,
        0x550c_7dc3,
        0x72be_5d74,
        0x80de_b1fe,
        0x9bdc_06a7,
        0xc19b_f174,
        0xe49b_69c1,
        0xefbe_4786,
        0x0fc1_9dc6,
        0x240c_a1cc,
        0x2de9_2c6f,
        0x4a74_84aa,
        0x5cb0_a9dc,
        0x76f9_88da,
        0x983e_5152,
        0xa831_c66d,
        0xb003_27c8,
        0xbf59_7fc7,
        0xc6e0_0bf3,
        0xd5a7_9147,
        0x06ca_6351,
        0x1429_2967,
        0x27b7_0a85,
        0x2e1b_2138,
        0x4d2c_6dfc,
        0x5338_0d13,
        0x650a_7354,
        0x766a_0abb,
        0x81c2_c92e,
        0x9272_2c85,
        0xa2bf_e8a1,
        0xa81a_664b,
        0xc24b_8b70,
        0xc76c_51a3,
        0xd192_e819,
        0xd699_0624,
        0xf40e_3585,
        0x106a_a070,
        0x19a4_c116,
        0x1e37_6c08,
        0x2748_774c,
        0x34b0_bcb5,
        0x391c_0cb3,
        0x4ed8_aa4a,
        0x5b9c_ca4f,
        0x682e_6ff3,
        0x748f_82ee,
        0x78a5_636f,
        0x84c8_7814,
        0x8cc7_0208,
        0x90be_fffa,
        0xa450_6ceb,
        0xbef9_a3f7,
        0xc671_78f2,
    ];

    /// Whether this CPU has the instructions [`pair`] uses (checked once, then cached by std).
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    /// A state as the SHA instructions hold it: (ABEF, CDGH).
    type State = (__m128i, __m128i);

    /// Byte order within each 32-bit word reversed (message words are big-endian).
    #[inline(always)]
    unsafe fn bswap_words(v: __m128i) -> __m128i {
        _mm_shuffle_epi8(v, _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203))
    }

    /// Words H0..H3 and H4..H7 into the instructions' (ABEF, CDGH).
    #[inline(always)]
    unsafe fn to_state(dcba: __m128i, hgfe: __m128i) -> State {
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
        (_mm_alignr_epi8(cdab, efgh, 8), _mm_blend_epi16(efgh, cdab, 0xF0))
    }

    /// (ABEF, CDGH) back to words H0..H3 and H4..H7.
    #[inline(always)]
    unsafe fn from_state((abef, cdgh): State) -> (__m128i, __m128i) {
        let feba = _mm_shuffle_epi32(abef, 0x1B);
        let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        (_mm_blend_epi16(feba, dchg, 0xF0), _mm_alignr_epi8(dchg, feba, 8))
    }

    /// The next four message words from the last sixteen.
    #[inline(always)]
    unsafe fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
        let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
        _mm_sha256msg2_epu32(t, w3)
    }

    /// One compression of each stream (`a` and `b` start from `sa` and `sb`; `wa`, `wb` are
    /// the blocks as words).
    #[inline(always)]
    unsafe fn compress2(sa: State, sb: State, mut wa: [__m128i; 4], mut wb: [__m128i; 4]) -> (State, State) {
        let ((mut a_abef, mut a_cdgh), (mut b_abef, mut b_cdgh)) = (sa, sb);
        // Four rounds of both streams; from the fifth group on, the words are scheduled first.
        // Written out (not a loop) so the words stay in registers.
        macro_rules! rounds {
            ($i:literal) => {{
                if $i >= 4 {
                    wa[$i % 4] = schedule(wa[$i % 4], wa[($i + 1) % 4], wa[($i + 2) % 4], wa[($i + 3) % 4]);
                    wb[$i % 4] = schedule(wb[$i % 4], wb[($i + 1) % 4], wb[($i + 2) % 4], wb[($i + 3) % 4]);
                }
                let k = _mm_loadu_si128(K.as_ptr().add(4 * $i).cast());
                let ta = _mm_add_epi32(wa[$i % 4], k);
                let tb = _mm_add_epi32(wb[$i % 4], k);
                a_cdgh = _mm_sha256rnds2_epu32(a_cdgh, a_abef, ta);
                b_cdgh = _mm_sha256rnds2_epu32(b_cdgh, b_abef, tb);
                a_abef = _mm_sha256rnds2_epu32(a_abef, a_cdgh, _mm_shuffle_epi32(ta, 0x0E));
                b_abef = _mm_sha256rnds2_epu32(b_abef, b_cdgh, _mm_shuffle_epi32(tb, 0x0E));
            }};
        }
        rounds!(0);
        rounds!(1);
        rounds!(2);
        rounds!(3);
        rounds!(4);
        rounds!(5);
        rounds!(6);
        rounds!(7);
        rounds!(8);
        rounds!(9);
        rounds!(10);
        rounds!(11);
        rounds!(12);
        rounds!(13);
        rounds!(14);
        rounds!(15);
        (
            (_mm_add_epi32(a_abef, sa.0), _mm_add_epi32(a_cdgh, sa.1)),
            (_mm_add_epi32(b_abef, sb.0), _mm_add_epi32(b_cdgh, sb.1)),
        )
    }

    /// The block's sixteen message words from 64 bytes.
    #[inline(always)]
    unsafe fn words(bytes: &[u8]) -> [__m128i; 4] {
        debug_assert!(bytes.len() >= 64);
        let p = bytes.as_ptr().cast::<__m128i>();
        [
            bswap_words(_mm_loadu_si128(p)),
            bswap_words(_mm_loadu_si128(p.add(1))),
            bswap_words(_mm_loadu_si128(p.add(2))),
            bswap_words(_mm_loadu_si128(p.add(3))),
        ]
    }

    /// sha256d of two 80-byte headers.
    ///
    /// # Safety
    /// The CPU must have SHA, SSE2, SSSE3 and SSE4.1 ([`available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn pair(a: &[u8; 80], b: &[u8; 80]) -> ([u8; 32], [u8; 32]) {
        let h0 = super::H0.as_ptr().cast::<__m128i>();
        let init = to_state(_mm_loadu_si128(h0), _mm_loadu_si128(h0.add(1)));
        // First hash, block 1: bytes 0..64.
        let (sa, sb) = compress2(init, init, words(&a[..]), words(&b[..]));
        // Block 2: bytes 64..80, 0x80, zeros, the length 640 bits in the last word.
        let pad = _mm_set_epi32(0, 0, 0, 0x8000_0000u32 as i32);
        let len = _mm_set_epi32(640, 0, 0, 0);
        let (ta, tb) = (_mm_loadu_si128(a[64..].as_ptr().cast()), _mm_loadu_si128(b[64..].as_ptr().cast()));
        let zero = _mm_setzero_si128();
        let (sa, sb) =
            compress2(sa, sb, [bswap_words(ta), pad, zero, len], [bswap_words(tb), pad, zero, len]);
        // Second hash: the first's eight words, 0x80, zeros, the length 256 bits.
        let ((a0, a1), (b0, b1)) = (from_state(sa), from_state(sb));
        let len = _mm_set_epi32(256, 0, 0, 0);
        let (sa, sb) = compress2(init, init, [a0, a1, pad, len], [b0, b1, pad, len]);
        (digest(sa), digest(sb))
    }

    /// A final state's 32 bytes.
    #[inline(always)]
    unsafe fn digest(s: State) -> [u8; 32] {
        let (lo, hi) = from_state(s);
        let mut hash = [0u8; 32];
        _mm_storeu_si128(hash.as_mut_ptr().cast(), bswap_words(lo));
        _mm_storeu_si128(hash[16..].as_mut_ptr().cast(), bswap_words(hi));
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::block::Version;
    use bitcoin::{CompactTarget, TxMerkleNode};

    #[test]
    fn equals_the_bitcoin_crates_block_hash() {
        for net in [bitcoin::Network::Bitcoin, bitcoin::Network::Testnet, bitcoin::Network::Regtest] {
            let h = bitcoin::constants::genesis_block(net).header;
            assert_eq!(block_hash(&h), h.block_hash());
        }
        // Every byte position matters: vary each field through values with high bits set.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut headers = Vec::new();
        for _ in 0..2_000 {
            let mut bytes = [0u8; 64];
            for chunk in bytes.chunks_exact_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            let h = Header {
                version: Version::from_consensus(next() as i32),
                prev_blockhash: BlockHash::from_slice(&bytes[..32]).unwrap(),
                merkle_root: TxMerkleNode::from_slice(&bytes[32..]).unwrap(),
                time: next() as u32,
                bits: CompactTarget::from_consensus(next() as u32),
                nonce: next() as u32,
            };
            assert_eq!(block_hash(&h), h.block_hash(), "{h:?}");
            headers.push(h);
        }
        // Two at a time (with an odd one left over) and one at a time agree.
        let one_by_one: Vec<BlockHash> = headers.iter().map(Header::block_hash).collect();
        assert_eq!(block_hashes(&headers), one_by_one);
        assert_eq!(block_hashes(&headers[1..]), one_by_one[1..]);
        assert!(block_hashes(&[]).is_empty());
        // The SHA-NI path itself, where this CPU has it (else only the fallback ran above).
        #[cfg(target_arch = "x86_64")]
        if shani::available() {
            for pair in headers.chunks_exact(2) {
                // SAFETY: `available` checked the instructions.
                let (a, b) = unsafe { shani::pair(&header_bytes(&pair[0]), &header_bytes(&pair[1])) };
                assert_eq!(
                    [a, b],
                    [pair[0].block_hash().to_byte_array(), pair[1].block_hash().to_byte_array()]
                );
            }
        } else {
            eprintln!("no SHA instructions here: only the fallback was tested");
        }
    }
}
