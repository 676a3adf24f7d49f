//! actix messages a [`PeerActor`](super::PeerActor) accepts.

use actix::Message as ActixMessage;

use super::outbound::{SendError, WriteEvent};
use super::{DisconnectReason, PeerStats};
use crate::events::{SubscriberId, Subscription};
use crate::wire::Message;

/// Sends a message to the peer. The reply arrives once the bytes were written to the socket
/// (btcd's done channel); use `do_send` when you do not need it.
#[derive(Debug, ActixMessage)]
#[rtype(result = "Result<(), SendError>")]
pub struct SendMessage(pub Message);

/// Asks the peer for data and answers with the result: headers for a locator, blocks by hash,
/// or transactions of a block (see [`Request`](super::requests::Request)). Times out after the
/// peer's latency × 10 (bounded; [`RequestTimeouts`](super::requests::RequestTimeouts)); a wrong
/// answer drops the peer as misbehaving. To have a failed request retried on other peers, send
/// it to the [`PeerGroup`](crate::group::PeerGroup) instead.
///
/// ```no_run
/// # async fn demo(peer: actix::Addr<btcpeer::peer::PeerActor>, genesis: bitcoin::BlockHash) {
/// use btcpeer::peer::messages::FetchFromPeer;
/// use btcpeer::peer::requests::{Request, Response};
/// let request = Request::headers_after(genesis);
/// if let Ok(Ok(Response::Headers(headers))) = peer.send(FetchFromPeer(request)).await {
///     println!("{} headers", headers.len());
/// }
/// # }
/// ```
#[derive(Debug, ActixMessage)]
#[rtype(result = "Result<super::requests::Response, super::requests::RequestError>")]
pub struct FetchFromPeer(pub super::requests::Request);

/// Announces transactions to the peer through the trickle; a peer that loaded a BIP37 filter
/// (when we offer NODE_BLOOM) is told only of those its filter matches.
#[derive(Debug, ActixMessage)]
#[rtype(result = "()")]
pub struct QueueTransactions(pub Vec<std::sync::Arc<bitcoin::Transaction>>);

/// Announces inventory to the peer: blocks at once, transactions trickled (see
/// Core's relay: Poisson-timed trickles); items the peer already knows are skipped.
#[derive(Debug, ActixMessage)]
#[rtype(result = "()")]
pub struct QueueInventory(pub Vec<super::relay::Announcement>);

/// Replaces what the peer announces of us (see
/// [`MachineConfig::advertise`](crate::peer::MachineConfig::advertise)); a group sends it when
/// it starts listening or its service bits change.
#[derive(Debug, ActixMessage)]
#[rtype(result = "()")]
pub struct SetAdvertise(pub Option<crate::peer::Advertise>);

/// Sends addresses the peer does not know yet (at most 1,000, a random subset when more;
/// `addrv2` when negotiated). Answers how many went out.
#[derive(Debug, ActixMessage)]
#[rtype(result = "usize")]
pub struct PushAddr(pub Vec<crate::wire::AddrV2Message>);

/// Sends `getheaders` unless it repeats the previous one. Answers whether it was sent.
#[derive(Debug, ActixMessage)]
#[rtype(result = "bool")]
pub struct PushGetHeaders {
    /// Block locator, newest first (at most 101 are used).
    pub locator: Vec<bitcoin::BlockHash>,
    /// Last header wanted (all zeros: as many as the peer sends).
    pub stop: bitcoin::BlockHash,
}

/// Sends `getblocks` unless it repeats the previous one. Answers whether it was sent.
#[derive(Debug, ActixMessage)]
#[rtype(result = "bool")]
pub struct PushGetBlocks {
    /// Block locator, newest first (at most 101 are used).
    pub locator: Vec<bitcoin::BlockHash>,
    /// Last block wanted.
    pub stop: bitcoin::BlockHash,
}

/// Sends a BIP61 `reject` to peers old enough to read one. Answers whether it was sent.
#[derive(Debug, ActixMessage)]
#[rtype(result = "bool")]
pub struct PushReject {
    /// The rejected message's command (`tx`, `block`, ...).
    pub command: String,
    /// Reject code.
    pub code: crate::wire::RejectReason,
    /// Human-readable reason.
    pub reason: String,
    /// The rejected block or transaction, for `block`/`tx`.
    pub hash: Option<[u8; 32]>,
}

/// Closes the connection; the peer emits `PeerDisconnected` with this reason and stops.
#[derive(Debug, ActixMessage)]
#[rtype(result = "()")]
pub struct Disconnect(pub DisconnectReason);

/// Asks for a statistics snapshot.
#[derive(Debug, ActixMessage)]
#[rtype(result = "PeerStats")]
pub struct GetStats;

/// Adds a subscriber to this peer's notifications.
#[derive(ActixMessage)]
#[rtype(result = "SubscriberId")]
pub struct SubscribePeer(pub Subscription);

/// Adds a subscriber under a given id (a group gives all its peers the same ids, so one
/// [`Unsubscribe`] reaches them all).
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub(crate) struct SubscribeAs(pub SubscriberId, pub Subscription);

/// Removes a subscriber added with [`SubscribePeer`] (or by a group on its behalf).
#[derive(Debug, ActixMessage)]
#[rtype(result = "()")]
pub struct UnsubscribePeer(pub SubscriberId);

/// Reported by a peer whose transaction requests a group decides: the `notfound` entries for
/// transactions (internal; the group's tracker then asks the next announcer).
#[derive(Debug, ActixMessage)]
#[rtype(result = "()")]
pub(crate) struct TxsNotFound {
    /// The reporting peer.
    pub peer: super::PeerId,
    /// The transaction entries of its `notfound`.
    pub items: Vec<crate::wire::Inventory>,
}

/// Makes a group decide which announced transactions this peer requests (internal): the peer
/// stops answering `inv` with `getdata` and reports `notfound` for transactions to `0`; the
/// group sends the `getdata` itself ([`SendMessage`]).
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub(crate) struct HandTxRequestsToGroup(pub actix::Recipient<TxsNotFound>);

/// A block a peer asked for with `getdata(MSG_FILTERED_BLOCK)`, fetched for it by the chain
/// sync's block proxy (internal). Sent to the [`PeerGroup`](crate::group::PeerGroup), which
/// hands it to the ready peer `peer`; the peer answers with a `merkleblock` built with its
/// BIP37 filter and the matched transactions, or nothing without a filter (Core's
/// `ProcessGetBlockData`).
#[derive(Debug, ActixMessage)]
#[rtype(result = "()")]
pub(crate) struct ServeFilteredBlock {
    /// The peer that asked.
    pub peer: super::PeerId,
    /// The block.
    pub block: std::sync::Arc<bitcoin::Block>,
}

/// Writer task report (internal).
#[derive(Debug, ActixMessage)]
#[rtype(result = "()")]
pub(crate) struct WriterReport(pub WriteEvent);
