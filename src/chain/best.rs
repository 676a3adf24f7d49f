//! Compact storage of the best chain.
//!
//! Memory per header, steady state (mainnet, ~925k headers):
//! - the header without its `prev_blockhash` (the previous header's hash): 48 bytes, in fixed
//!   chunks of [`CHUNK`] so growth never doubles a buffer;
//! - one full hash every [`HASH_MARK_EVERY`] heights: 4 bytes; the others are recomputed
//!   from the nearest mark below (at most `HASH_MARK_EVERY - 1` sha256d) when looked up;
//! - the hash index: the hash's first 4 bytes and the height (8 bytes) in one sorted array
//!   of exact capacity with a 2^16-entry directory (0.3 bytes at mainnet size), plus a small
//!   hash map of the latest [`MERGE_AT`] entries, merged into the array when full (the
//!   merge's 384 KiB of buffers are kept: 0.4 bytes);
//! - chainwork: one 32-byte `Work` every [`WORK_MARK_EVERY`] heights: 0.5 bytes per header.
//!
//! So about 61 bytes per header (≈ 56 MB for mainnet today, down from ~110). Lookups by hash
//! verify each index hit against the recomputed hash. Short ids repeat (about a hundred pairs
//! at mainnet size): the sorted array keeps repeats, and a hash whose id is already among the
//! recent entries goes to a small exact `overflow` map.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::pow::{CompactTarget, Target, Work};
use bitcoin::{BlockHash, TxMerkleNode};

/// Headers per storage chunk (192 KiB).
const CHUNK: usize = 4096;

/// A full hash is kept for every this many heights (a divisor of [`CHUNK`]); a lookup of
/// another height hashes the headers from the mark below it (3.5 sha256d on average).
const HASH_MARK_EVERY: usize = 8;

/// Cumulative chainwork is stored for every this many heights; the rest is summed on demand
/// (at most this many target-to-work divisions, only when a fork needs its fork point's work).
const WORK_MARK_EVERY: u32 = 64;

/// Index entries kept in the hash map before they are merged into the sorted array (a merge
/// moves the array once: ~55 merges while loading mainnet's chain).
const MERGE_AT: usize = 16_384;

/// Bits of the key that pick a directory entry of the sorted array.
const DIR_BITS: u32 = 16;

/// A sorted-array entry whose header was truncated away (its key can be reused).
const GONE: u32 = u32::MAX;

/// The first 4 bytes of a block hash: uniformly random (a hash's leading zeros are at the other
/// end of its byte array), so a good index key at an eighth of the size. Hits are verified.
type ShortId = u32;

/// Hashes a [`ShortId`] by one multiplication: its bits are already uniformly random (a block
/// hash), so SipHash would only cost time (it was a tenth of a sync's samples); the multiply
/// spreads them to the high bits the hash table's tags use.
#[derive(Default, Clone, Copy)]
pub(crate) struct ShortIdHasher(u64);

impl Hasher for ShortIdHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }
}

type IdMap = HashMap<ShortId, u32, BuildHasherDefault<ShortIdHasher>>;

fn short_id(hash: &BlockHash) -> ShortId {
    let b = hash.as_byte_array();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A header without `prev_blockhash` (48 bytes instead of 80): the previous header's hash.
#[derive(Clone, Copy)]
struct Slim {
    version: Version,
    merkle_root: TxMerkleNode,
    time: u32,
    bits: CompactTarget,
    nonce: u32,
}

impl Slim {
    fn new(h: &Header) -> Slim {
        Slim { version: h.version, merkle_root: h.merkle_root, time: h.time, bits: h.bits, nonce: h.nonce }
    }

    fn header(&self, prev_blockhash: BlockHash) -> Header {
        Header {
            version: self.version,
            prev_blockhash,
            merkle_root: self.merkle_root,
            time: self.time,
            bits: self.bits,
            nonce: self.nonce,
        }
    }
}

/// [`CHUNK`] headers and the hashes of every [`HASH_MARK_EVERY`]th, at exact capacity.
#[derive(Clone)]
struct Chunk {
    headers: Vec<Slim>,
    marks: Vec<BlockHash>,
}

/// Hash index: short id → heights. Ids repeat (about a hundred pairs at mainnet size), so a
/// lookup yields candidates to verify. Adding costs one hash-map insert: `sorted` is only read
/// by lookups, not to check an id is free.
#[derive(Clone, Default)]
struct Index {
    /// `(short id, height)` sorted by short id (repeats allowed); height [`GONE`] once
    /// truncated away.
    sorted: Vec<(ShortId, u32)>,
    /// `dir[p]` = the first position in `sorted` whose key's top [`DIR_BITS`] are ≥ `p`
    /// (empty until the first merge).
    dir: Vec<u32>,
    /// The latest entries, merged into `sorted` at [`MERGE_AT`]; an id already here sends the
    /// second hash to the caller's exact overflow map.
    recent: IdMap,
    scratch: Scratch,
}

impl Index {
    /// Positions in `sorted` holding `id`.
    fn run(&self, id: ShortId) -> std::ops::Range<usize> {
        let p = (id >> (32 - DIR_BITS)) as usize;
        let (Some(&lo), Some(&hi)) = (self.dir.get(p), self.dir.get(p + 1)) else { return 0..0 };
        let (lo, hi) = (lo as usize, hi as usize);
        let Some(bucket) = self.sorted.get(lo..hi) else { return 0..0 };
        let start = bucket.partition_point(|e| e.0 < id);
        let end = start + bucket[start..].iter().take_while(|e| e.0 == id).count();
        lo + start..lo + end
    }

    /// Heights whose hash may have this id, to verify.
    fn candidates(&self, id: ShortId) -> impl Iterator<Item = u32> + '_ {
        let sorted = self.sorted[self.run(id)].iter().map(|e| e.1).filter(|&h| h != GONE);
        self.recent.get(&id).copied().into_iter().chain(sorted)
    }

    /// Adds `id → height`; false (nothing added) when `recent` already holds `id`.
    fn insert(&mut self, id: ShortId, height: u32) -> bool {
        match self.recent.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => return false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(height);
            }
        }
        if self.recent.len() >= MERGE_AT {
            self.merge();
        }
        true
    }

    /// Removes `id → height` if present; false if not.
    fn remove(&mut self, id: ShortId, height: u32) -> bool {
        if self.recent.get(&id) == Some(&height) {
            self.recent.remove(&id);
            return true;
        }
        let run = self.run(id);
        match self.sorted[run].iter_mut().find(|e| e.1 == height) {
            Some(e) => {
                e.1 = GONE;
                true
            }
            None => false,
        }
    }

    /// Moves `recent` into `sorted`: a counting sort of the new entries by their top
    /// [`DIR_BITS`], a merge in place from the back (no second array), and the directory moved
    /// by the new entries' counts (no pass over the old ones but the merge's).
    fn merge(&mut self) {
        let buckets = 1usize << DIR_BITS;
        let top = |id: ShortId| (id >> (32 - DIR_BITS)) as usize;
        let Scratch { below, new } = &mut self.scratch;
        // `below[p]` = new entries whose top bits are < p.
        below.clear();
        below.resize(buckets + 1, 0);
        for &id in self.recent.keys() {
            below[top(id) + 1] += 1;
        }
        for p in 0..buckets {
            below[p + 1] += below[p];
        }
        // Each entry goes to the end of its bucket's free part: `below[p + 1]` counts down to
        // bucket p's start, which is the old `below[p]`; one shift puts the counts back.
        let total = self.recent.len();
        new.clear();
        new.resize(total, (0, 0));
        for (id, height) in self.recent.drain() {
            let end = &mut below[top(id) + 1];
            *end -= 1;
            new[*end as usize] = (id, height);
        }
        below.copy_within(1.., 0);
        below[buckets] = total as u32;
        // Within one directory entry (a few ids at most) the order is the hash map's.
        for p in 0..buckets {
            new[below[p] as usize..below[p + 1] as usize].sort_unstable_by_key(|e| e.0);
        }
        self.recent.shrink_to(MERGE_AT);
        let old = self.sorted.len();
        self.sorted.reserve_exact(new.len());
        self.sorted.resize(old + new.len(), (0, 0));
        let (mut i, mut k) = (old, old + new.len());
        while let Some(&last) = new.last() {
            k -= 1;
            if i > 0 && self.sorted[i - 1].0 > last.0 {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = last;
                new.pop();
            }
        }
        if self.dir.is_empty() {
            self.dir.clone_from(below);
        } else {
            for (d, b) in self.dir.iter_mut().zip(below.iter()) {
                *d += b;
            }
        }
    }
}

/// [`Index::merge`]'s buffers (384 KiB), kept from one merge to the next: allocated anew, they
/// came from freshly mapped pages each time, and those page faults were most of a merge.
#[derive(Default)]
struct Scratch {
    below: Vec<u32>,
    new: Vec<(ShortId, u32)>,
}

/// A copy starts empty: the buffers hold nothing between merges.
impl Clone for Scratch {
    fn clone(&self) -> Self {
        Scratch::default()
    }
}

/// The best chain from its start (genesis or a checkpoint) to its tip.
#[derive(Clone)]
pub(crate) struct BestChain {
    start: u32,
    /// The start header's `prev_blockhash` (its parent is not stored).
    start_prev: BlockHash,
    chunks: Vec<Chunk>,
    len: usize,
    tip_header: Header,
    tip_hash: BlockHash,
    tip_work: Work,
    index: Index,
    overflow: HashMap<BlockHash, u32>,
    /// `marks[i]` = chainwork at height `start + i * WORK_MARK_EVERY`.
    marks: Vec<Work>,
}

impl BestChain {
    /// A chain holding only its start header, whose chainwork is `work`.
    pub fn new(start: u32, header: Header, hash: BlockHash, work: Work) -> BestChain {
        let mut chain = BestChain {
            start,
            start_prev: header.prev_blockhash,
            chunks: Vec::new(),
            len: 0,
            tip_header: header,
            tip_hash: hash,
            tip_work: work,
            index: Index::default(),
            overflow: HashMap::new(),
            marks: Vec::new(),
        };
        chain.push(header, hash, work);
        chain
    }

    pub fn start(&self) -> u32 {
        self.start
    }

    /// Number of headers, the start included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn height(&self) -> u32 {
        // len ≥ 1 and heights fit u32 (they are counted in u32 when pushed).
        self.start + (self.len as u32 - 1)
    }

    pub fn tip_hash(&self) -> BlockHash {
        self.tip_hash
    }

    pub fn tip_work(&self) -> Work {
        self.tip_work
    }

    pub fn tip_header(&self) -> Header {
        self.tip_header
    }

    /// The stored part of the header at relative position `i`.
    fn slim(&self, i: usize) -> Option<&Slim> {
        if i >= self.len {
            return None;
        }
        self.chunks.get(i / CHUNK)?.headers.get(i % CHUNK)
    }

    /// The hash at relative position `i`: from the mark at or below it, hashing the headers
    /// between.
    fn hash_of(&self, i: usize) -> Option<BlockHash> {
        if i >= self.len {
            return None;
        }
        if i + 1 == self.len {
            return Some(self.tip_hash);
        }
        let chunk = self.chunks.get(i / CHUNK)?;
        let at = i % CHUNK;
        let mark = at - at % HASH_MARK_EVERY;
        let mut hash = *chunk.marks.get(mark / HASH_MARK_EVERY)?;
        for slim in chunk.headers.get(mark + 1..=at)? {
            hash = crate::wire::block_hash(&slim.header(hash));
        }
        Some(hash)
    }

    /// The parent hash of the header at relative position `i`.
    fn prev_of(&self, i: usize) -> Option<BlockHash> {
        match i.checked_sub(1) {
            None => Some(self.start_prev),
            Some(p) => self.hash_of(p),
        }
    }

    pub fn header_at(&self, height: u32) -> Option<Header> {
        let i = height.checked_sub(self.start)? as usize;
        if i + 1 == self.len {
            return Some(self.tip_header);
        }
        let slim = self.slim(i)?;
        Some(slim.header(self.prev_of(i)?))
    }

    /// The `(bits, time)` at `height`, without rebuilding the header (no hashing).
    pub fn bits_time(&self, height: u32) -> Option<(u32, u32)> {
        let slim = self.slim(height.checked_sub(self.start)? as usize)?;
        Some((slim.bits.to_consensus(), slim.time))
    }

    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.hash_of(height.checked_sub(self.start)? as usize)
    }

    pub fn height_of(&self, hash: &BlockHash) -> Option<u32> {
        for h in self.index.candidates(short_id(hash)) {
            if self.hash_at(h) == Some(*hash) {
                return Some(h);
            }
        }
        if self.overflow.is_empty() {
            None
        } else {
            self.overflow.get(hash).copied()
        }
    }

    /// Chainwork at `height`: the nearest mark below plus the work of the headers above it.
    pub fn work_at(&self, height: u32) -> Option<Work> {
        if height == self.height() {
            return Some(self.tip_work);
        }
        let rel = height.checked_sub(self.start)?;
        if rel as usize >= self.len {
            return None;
        }
        let mark = rel / WORK_MARK_EVERY;
        let mut work = *self.marks.get(mark as usize)?;
        for i in mark * WORK_MARK_EVERY + 1..=rel {
            // `Header::work` of the bits alone: no parent hash needed.
            work = work + Target::from_compact(self.slim(i as usize)?.bits).to_work();
        }
        Some(work)
    }

    /// Appends a header whose parent is the tip; `work` is its cumulative chainwork.
    pub fn push(&mut self, header: Header, hash: BlockHash, work: Work) {
        let i = self.len;
        if i % CHUNK == 0 {
            // Exact capacity: chunks never reallocate, so no doubling waste and no copy peaks.
            self.chunks.push(Chunk {
                headers: Vec::with_capacity(CHUNK),
                marks: Vec::with_capacity(CHUNK / HASH_MARK_EVERY),
            });
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.headers.push(Slim::new(&header));
            if i % HASH_MARK_EVERY == 0 {
                chunk.marks.push(hash);
            }
        }
        self.len += 1;
        let height = self.height();
        if !self.index.insert(short_id(&hash), height) {
            self.overflow.insert(hash, height);
        }
        if (height - self.start) % WORK_MARK_EVERY == 0 {
            self.marks.push(work);
        }
        self.tip_header = header;
        self.tip_hash = hash;
        self.tip_work = work;
    }

    /// Removes the headers above `height` (never the start), returning them highest first with
    /// their hashes.
    pub fn truncate(&mut self, height: u32) -> Vec<(Header, BlockHash)> {
        let height = height.max(self.start);
        if height >= self.height() {
            return Vec::new();
        }
        let new_work = self.work_at(height);
        let keep = (height - self.start) as usize + 1;
        let (Some(new_tip), Some(new_hash)) = (self.header_at(height), self.hash_at(height)) else {
            return Vec::new();
        };
        // The removed headers rebuilt upwards, each parent hash from the one below.
        let mut removed: Vec<(Header, BlockHash)> = Vec::with_capacity(self.len - keep);
        let mut prev = new_hash;
        for (n, slim) in self.iter_slims(keep).enumerate() {
            let header = slim.header(prev);
            prev = if keep + n + 1 == self.len { self.tip_hash } else { crate::wire::block_hash(&header) };
            removed.push((header, prev));
        }
        for (n, (_, hash)) in removed.iter().enumerate() {
            let top = height + 1 + n as u32;
            // Heights on the best chain are unique, so an index entry pointing at `top` is
            // this hash's.
            if !self.index.remove(short_id(hash), top) {
                self.overflow.remove(hash);
            }
        }
        while self.len > keep {
            let i = self.len - 1;
            let Some(chunk) = self.chunks.last_mut() else { break };
            chunk.headers.pop();
            if i % HASH_MARK_EVERY == 0 {
                chunk.marks.pop();
            }
            if chunk.headers.is_empty() {
                self.chunks.pop();
            }
            self.len -= 1;
        }
        self.tip_header = new_tip;
        self.tip_hash = new_hash;
        self.marks.truncate(((height - self.start) / WORK_MARK_EVERY) as usize + 1);
        if let Some(work) = new_work {
            self.tip_work = work;
        }
        removed.reverse();
        removed
    }

    fn iter_slims(&self, skip: usize) -> impl Iterator<Item = &Slim> + '_ {
        self.chunks.iter().flat_map(|c| c.headers.iter()).skip(skip)
    }

    /// Headers from `from` to the tip, in height order, with their hashes (one sha256d each:
    /// the hash rebuilds the next header's `prev_blockhash`).
    pub fn iter_from(&self, from: u32) -> impl Iterator<Item = (Header, BlockHash)> + '_ {
        let skip = from.saturating_sub(self.start) as usize;
        let mut prev = self.prev_of(skip).unwrap_or(self.start_prev);
        let last = self.len.saturating_sub(1);
        self.iter_slims(skip).enumerate().map(move |(n, slim)| {
            let header = slim.header(prev);
            prev = if skip + n == last { self.tip_hash } else { crate::wire::block_hash(&header) };
            (header, prev)
        })
    }

    /// Heap bytes held, for the memory estimate in tests (hashbrown: a power-of-two number of
    /// buckets, each an entry and a control byte, filled to at most 7/8).
    #[cfg(test)]
    pub fn approx_heap_bytes(&self) -> usize {
        fn table<K, V, S>(map: &HashMap<K, V, S>) -> usize {
            let cap = map.capacity();
            if cap == 0 {
                return 0;
            }
            let buckets = (cap * 8 / 7).next_power_of_two();
            buckets * (std::mem::size_of::<(K, V)>() + 1)
        }
        self.chunks.len()
            * (CHUNK * std::mem::size_of::<Slim>()
                + CHUNK / HASH_MARK_EVERY * std::mem::size_of::<BlockHash>())
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.index.sorted.capacity() * std::mem::size_of::<(ShortId, u32)>()
            + self.index.dir.capacity() * std::mem::size_of::<u32>()
            + self.index.scratch.below.capacity() * std::mem::size_of::<u32>()
            + self.index.scratch.new.capacity() * std::mem::size_of::<(ShortId, u32)>()
            + table(&self.index.recent)
            + table(&self.overflow)
            + self.marks.capacity() * std::mem::size_of::<Work>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After many merges (short ids drawn from real hashes) the index is sorted, its directory
    /// points at each id's run, and every header is found by its hash.
    #[test]
    fn merges_keep_the_index_sorted_and_every_hash_found() {
        let g = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
        let mut best = BestChain::new(0, g, g.block_hash(), g.work());
        let (mut header, mut hashes) = (g, vec![g.block_hash()]);
        let n = 5 * MERGE_AT as u32 + 123;
        for i in 1..n {
            header.prev_blockhash = hashes[i as usize - 1];
            header.nonce = i;
            let hash = crate::wire::block_hash(&header);
            best.push(header, hash, g.work());
            hashes.push(hash);
        }
        let index = &best.index;
        assert!(index.sorted.windows(2).all(|w| w[0].0 <= w[1].0), "sorted by short id");
        assert_eq!(index.sorted.len() + index.recent.len() + best.overflow.len(), n as usize);
        for (p, pair) in index.dir.windows(2).enumerate() {
            let run = &index.sorted[pair[0] as usize..pair[1] as usize];
            assert!(run.iter().all(|e| (e.0 >> (32 - DIR_BITS)) as usize == p), "directory entry {p}");
        }
        for (h, hash) in hashes.iter().enumerate() {
            assert_eq!(best.height_of(hash), Some(h as u32), "height {h}");
        }
    }
}
