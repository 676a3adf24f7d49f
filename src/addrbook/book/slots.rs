//! [`Slots`]: one table's fixed grid of buckets, each allocated when first written.
//!
//! The full grid (Core's sizes: 1,024 new and 256 tried buckets of 64) is 82k slots, ~2.6 MB
//! to fill before the first dial; most books use a few buckets, so a bucket's slots exist only
//! once something is put in it. Reads of an unallocated bucket see empty slots.

use std::ops::{Index, IndexMut};

use crate::peer::PeerAddr;

/// What every slot of an unallocated bucket reads as.
static EMPTY: Option<PeerAddr> = None;

/// `buckets × bucket_size` slots, indexed `bucket * bucket_size + position`.
#[derive(Clone, Debug)]
pub(crate) struct Slots {
    bucket_size: usize,
    buckets: Vec<Option<Box<[Option<PeerAddr>]>>>,
}

impl Slots {
    /// An empty table; nothing but the bucket list is allocated.
    pub fn new(buckets: usize, bucket_size: usize) -> Slots {
        Slots { bucket_size: bucket_size.max(1), buckets: vec![None; buckets] }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.buckets.len() * self.bucket_size
    }

    /// Every slot in index order (an unallocated bucket's as empty ones).
    pub fn iter(&self) -> impl Iterator<Item = &Option<PeerAddr>> + '_ {
        (0..self.len()).map(move |i| &self[i])
    }

    /// The occupied slots' addresses, skipping unallocated buckets.
    pub fn occupied(&self) -> impl Iterator<Item = &PeerAddr> + '_ {
        self.buckets.iter().flatten().flat_map(|b| b.iter().flatten())
    }
}

impl Index<usize> for Slots {
    type Output = Option<PeerAddr>;

    fn index(&self, i: usize) -> &Option<PeerAddr> {
        match &self.buckets[i / self.bucket_size] {
            Some(bucket) => &bucket[i % self.bucket_size],
            None => &EMPTY,
        }
    }
}

impl IndexMut<usize> for Slots {
    /// Allocates the slot's bucket if needed.
    fn index_mut(&mut self, i: usize) -> &mut Option<PeerAddr> {
        let size = self.bucket_size;
        let bucket = self.buckets[i / size].get_or_insert_with(|| vec![None; size].into_boxed_slice());
        &mut bucket[i % size]
    }
}

impl<'a> IntoIterator for &'a Slots {
    type Item = &'a Option<PeerAddr>;
    type IntoIter = Box<dyn Iterator<Item = &'a Option<PeerAddr>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}
