//! Compact storage of the best chain.
//!
//! Memory per header, steady state (mainnet, ~925k headers):
//! - the header: 80 bytes, in fixed chunks of [`CHUNK`] so growth never doubles a buffer;
//! - the hash index: a `HashMap<[u8; 8], u32>` from the hash's first 8 bytes to the height,
//!   12 bytes + 1 control byte per bucket at a load of 44–87 %: 15–30 bytes per header;
//! - chainwork: one 32-byte `Work` every [`WORK_MARK_EVERY`] heights: 0.5 bytes per header.
//!
//! So about 96–111 bytes per header (≈ 100 MB for mainnet today). Hashes are not stored: the
//! hash at height `h` is the `prev_blockhash` of the header at `h + 1` (the tip's is kept), so
//! lookups by hash verify the index hit for free. Two hashes sharing their first 8 bytes (never
//! by chance; a peer could grind it on regtest) go to a small exact `overflow` map.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::pow::Work;
use bitcoin::BlockHash;

/// Headers per storage chunk (320 KiB).
const CHUNK: usize = 4096;

/// Cumulative chainwork is stored for every this many heights; the rest is summed on demand
/// (at most this many `Header::work` divisions, only when a fork needs its fork point's work).
const WORK_MARK_EVERY: u32 = 64;

/// The first 8 bytes of a block hash: uniformly random (a hash's leading zeros are at the other
/// end of its byte array), so a good index key at a quarter of the size.
type ShortId = [u8; 8];

/// Hashes a [`ShortId`] to itself: its bytes are already uniformly random (a block hash), so
/// SipHash would only cost time (it was a tenth of a sync's samples). Grinding hashes to crowd
/// one bucket costs real proof of work per header except on regtest.
#[derive(Default, Clone, Copy)]
pub(crate) struct ShortIdHasher(u64);

impl Hasher for ShortIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 8]` hashes as its length (a usize) and then its bytes: keep the bytes.
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

type IdMap = HashMap<ShortId, u32, BuildHasherDefault<ShortIdHasher>>;

fn short_id(hash: &BlockHash) -> ShortId {
    let bytes = hash.to_byte_array();
    [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]
}

/// The best chain from its start (genesis or a checkpoint) to its tip.
#[derive(Clone)]
pub(crate) struct BestChain {
    start: u32,
    chunks: Vec<Vec<Header>>,
    len: usize,
    tip_hash: BlockHash,
    tip_work: Work,
    index: IdMap,
    overflow: HashMap<BlockHash, u32>,
    /// `marks[i]` = chainwork at height `start + i * WORK_MARK_EVERY`.
    marks: Vec<Work>,
}

impl BestChain {
    /// A chain holding only its start header, whose chainwork is `work`.
    pub fn new(start: u32, header: Header, hash: BlockHash, work: Work) -> BestChain {
        let mut chain = BestChain {
            start,
            chunks: Vec::new(),
            len: 0,
            tip_hash: hash,
            tip_work: work,
            index: IdMap::default(),
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
        // The chain is never empty: `truncate` never pops the start.
        *self.header_at(self.height()).expect("the best chain always holds its start header")
    }

    pub fn header_at(&self, height: u32) -> Option<&Header> {
        let i = height.checked_sub(self.start)? as usize;
        if i >= self.len {
            return None;
        }
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        if height == self.height() {
            Some(self.tip_hash)
        } else {
            self.header_at(height.checked_add(1)?).map(|h| h.prev_blockhash)
        }
    }

    pub fn height_of(&self, hash: &BlockHash) -> Option<u32> {
        if let Some(&h) = self.index.get(&short_id(hash)) {
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
        for h in self.start + mark * WORK_MARK_EVERY + 1..=height {
            work = work + self.header_at(h)?.work();
        }
        Some(work)
    }

    /// Appends a header whose parent is the tip; `work` is its cumulative chainwork.
    pub fn push(&mut self, header: Header, hash: BlockHash, work: Work) {
        let i = self.len;
        if i % CHUNK == 0 {
            // Exact capacity: chunks never reallocate, so no doubling waste and no copy peaks.
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(header);
        }
        self.len += 1;
        let height = self.height();
        match self.index.entry(short_id(&hash)) {
            Entry::Vacant(v) => {
                v.insert(height);
            }
            Entry::Occupied(_) => {
                self.overflow.insert(hash, height);
            }
        }
        if (height - self.start) % WORK_MARK_EVERY == 0 {
            self.marks.push(work);
        }
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
        let mut removed = Vec::with_capacity((self.height() - height) as usize);
        while self.height() > height {
            let top = self.height();
            let hash = self.tip_hash;
            let Some(header) = self.chunks.last_mut().and_then(Vec::pop) else { break };
            if self.chunks.last().is_some_and(Vec::is_empty) {
                self.chunks.pop();
            }
            self.len -= 1;
            let id = short_id(&hash);
            // Heights on the best chain are unique, so an index entry pointing at `top` is
            // this hash's.
            if self.index.get(&id) == Some(&top) {
                self.index.remove(&id);
            } else {
                self.overflow.remove(&hash);
            }
            self.tip_hash = header.prev_blockhash;
            removed.push((header, hash));
        }
        self.marks.truncate(((height - self.start) / WORK_MARK_EVERY) as usize + 1);
        if let Some(work) = new_work {
            self.tip_work = work;
        }
        removed
    }

    /// Headers from `from` to the tip, in height order.
    pub fn iter_from(&self, from: u32) -> impl Iterator<Item = &Header> + '_ {
        let skip = from.saturating_sub(self.start) as usize;
        self.chunks.iter().flatten().skip(skip)
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
        self.chunks.len() * CHUNK * std::mem::size_of::<Header>()
            + table(&self.index)
            + table(&self.overflow)
            + self.marks.capacity() * std::mem::size_of::<Work>()
    }
}
