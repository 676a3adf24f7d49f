//! [`HashedHeaders`]: headers with their block hashes, computed once on the way in.

use std::ops::{Deref, Range};

use bitcoin::block::Header;
use bitcoin::BlockHash;

/// Headers (in message order) and their block hashes, computed once by
/// [`HashedHeaders::new`] and carried through [`HeaderChain::connect_hashed`] and
/// [`HeaderStore::append_hashed`] so no step hashes a header again (a sha256d per header was
/// most of a sync's cost when each step hashed for itself).
///
/// The fields are private so a hash can only come from hashing its header (here, or in the
/// peer's proof-of-work check, which must hash anyway). It derefs to `[Header]` and iterates
/// as headers, for users who do not need the hashes.
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
        let hashes = crate::wire::block_hashes(&headers);
        HashedHeaders { headers, hashes }
    }

    /// Headers with the hashes a check already computed for them (`hashes[i]` is
    /// `headers[i].block_hash()`), so they need not be hashed again.
    pub(crate) fn from_parts(headers: Vec<Header>, hashes: Vec<BlockHash>) -> Self {
        debug_assert_eq!(headers.len(), hashes.len());
        debug_assert!(headers.first().map(Header::block_hash) == hashes.first().copied());
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

    /// Each header with its hash.
    pub fn with_hashes(&self) -> impl ExactSizeIterator<Item = (&Header, BlockHash)> + '_ {
        self.headers.iter().zip(self.hashes.iter().copied())
    }

    /// The headers, without their hashes.
    pub fn into_headers(self) -> Vec<Header> {
        self.headers
    }
}

impl Deref for HashedHeaders {
    type Target = [Header];

    fn deref(&self) -> &[Header] {
        &self.headers
    }
}

impl<'a> IntoIterator for &'a HashedHeaders {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.headers.iter()
    }
}

impl IntoIterator for HashedHeaders {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.headers.into_iter()
    }
}

impl From<Vec<Header>> for HashedHeaders {
    /// Hashes each header ([`HashedHeaders::new`]).
    fn from(headers: Vec<Header>) -> Self {
        HashedHeaders::new(headers)
    }
}

impl From<HashedHeaders> for Vec<Header> {
    fn from(headers: HashedHeaders) -> Self {
        headers.headers
    }
}
