//! Why a request produced no result, with the context a caller matches on.

use std::fmt;
use std::time::Duration;

use bitcoin::{BlockHash, Txid};
use serde::Serialize;

use super::InvalidData;
use crate::peer::reason::DisconnectReason;
use crate::wire::ServiceFlags;

/// An item a peer did not have: a block or a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemHash {
    /// A block (whole or filtered).
    Block(BlockHash),
    /// A transaction (of a block asked for with [`Request::Transactions`](super::Request)).
    Transaction(Txid),
}

impl fmt::Display for ItemHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemHash::Block(h) => write!(f, "block {h}"),
            ItemHash::Transaction(t) => write!(f, "transaction {t}"),
        }
    }
}

/// Why a request produced no result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RequestError {
    /// The peer has not completed its handshake, or is gone.
    #[error("peer is not ready")]
    NotReady,
    /// One `getheaders` is already outstanding on this peer (answers cannot be told apart).
    #[error("a getheaders request is already outstanding on this peer")]
    Busy,
    /// Nothing was asked for.
    #[error("empty request")]
    Empty,
    /// The peer cannot serve this kind of request.
    #[error("peer does not offer {service}")]
    Unsupported {
        /// The missing service (serialised as its bits).
        #[serde(serialize_with = "service_bits")]
        service: ServiceFlags,
    },
    /// More than the peer-level bounds allow.
    #[error("{requested} items requested; at most {limit} may wait on one peer")]
    TooMany {
        /// Items in this request.
        requested: usize,
        /// Room left.
        limit: usize,
    },
    /// No answer in time.
    #[error("no answer within {secs:.1}s", secs = after.as_secs_f64())]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The peer said it does not have an item (`notfound`), or a block lacked a transaction.
    #[error("peer does not have {hash}")]
    NotFound {
        /// The first missing item.
        hash: ItemHash,
    },
    /// The answer was wrong (bad linkage, PoW or merkle root); the peer is dropped.
    #[error("invalid answer: {0}")]
    Invalid(InvalidData),
    /// The connection ended first.
    #[error("peer disconnected: {reason}")]
    Disconnected {
        /// Why it ended.
        reason: DisconnectReason,
    },
    /// A group-level failure: no ready peer could take the request
    /// (`GroupError::NoPeers`), or the group is closed.
    #[error(transparent)]
    Group(#[from] crate::group::GroupError),
    /// Every attempt failed (group level); `last` is the final failure.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made, each on a different peer when one was available.
        attempts: u32,
        /// The last attempt's error.
        last: Box<RequestError>,
    },
}

fn service_bits<S: serde::Serializer>(service: &ServiceFlags, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(service.to_u64())
}

impl RequestError {
    /// True when another peer might succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RequestError::NotReady
                | RequestError::Busy
                | RequestError::Timeout { .. }
                | RequestError::NotFound { .. }
                | RequestError::Invalid(_)
                | RequestError::Disconnected { .. }
                | RequestError::TooMany { .. }
        )
    }
}
