//! [`HashedHeaders`]: headers with their block hashes, computed once on the way in.

use std::ops::Range;

use bitcoin::block::Header;
use bitcoin::BlockHash;

/// Headers (in message order) and their block hashes, computed once by
/// [`HashedHeaders::new`] and carried through [`HeaderChain::connect_hashed`] and
/// [`HeaderStore::append_hashed`] so no step hashes a header again (a sha256d per header was
/// most of a sync's cost when each step hashed for itself).
///
/// The fields are private so a hash can only come from hashing its header.
///
/// [`HeaderChain::connect_hashed`]: super::HeaderChain::connect_hashed
/// [`HeaderStore::append_hashed`]: super::HeaderStore::append_hashed
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashedHeaders {
    headers: Vec<Header>,
    hashes: Vec<BlockHash>,
}

impl HashedHeaders {
    /// Hashes each header (one sha256d each).
    pub fn new(headers: Vec<Header>) -> Self {
        let hashes = headers.iter().map(Header::block_hash).collect();
        HashedHeaders { headers, hashes }
    }

    /// The headers.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Their hashes: `hashes()[i]` is `headers()[i]`'s.
    pub fn hashes(&self) -> &[BlockHash] {
        &self.hashes
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The last header's hash.
    pub fn last_hash(&self) -> Option<BlockHash> {
        self.hashes.last().copied()
    }

    /// A copy of the headers in `range` with their hashes (empty where out of bounds), such
    /// as the ones a [`Connected`](super::Connected) says were added:
    /// `known..known + added`.
    pub fn range(&self, range: Range<usize>) -> HashedHeaders {
        match (self.headers.get(range.clone()), self.hashes.get(range)) {
            (Some(headers), Some(hashes)) => {
                HashedHeaders { headers: headers.to_vec(), hashes: hashes.to_vec() }
            }
            _ => HashedHeaders::default(),
        }
    }

    /// The headers, without their hashes.
    pub fn into_headers(self) -> Vec<Header> {
        self.headers
    }
}
