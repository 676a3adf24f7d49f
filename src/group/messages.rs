//! actix messages a [`PeerGroup`](super::PeerGroup) accepts, and the notifications it emits
//! itself (bans).

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

use super::bans::Ban;
use crate::events::{SubscriberId, Subscription};
use crate::peer::{Link, PeerActor, PeerAddr, PeerId, PeerStats};
use crate::wire::Message as WireMessage;

/// Adds a subscriber to every present and future peer of the group (and to the group's own
/// ban notifications).
#[derive(Message)]
#[rtype(result = "SubscriberId")]
pub struct Subscribe(pub Subscription);

/// Removes a subscriber everywhere.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub SubscriberId);

/// Why a group operation failed. The one "no peers" error: requests
/// ([`RequestError::Group`](crate::peer::requests::RequestError)) and broadcasts
/// ([`BroadcastError::Group`]) carry it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GroupError {
    /// No ready peer (that can serve the request, for a [`Fetch`]).
    #[error("no ready peers")]
    NoPeers,
    /// No such peer.
    #[error("unknown peer {peer}")]
    UnknownPeer {
        /// The id asked for.
        peer: PeerId,
    },
    /// The group is shutting down.
    #[error("peer group is closed")]
    Closed,
    /// Fewer peers than wanted became ready in time.
    #[error("only {ready} of {min} peers ready in time")]
    Timeout {
        /// Ready peers at the deadline.
        ready: usize,
        /// Ready peers wanted.
        min: usize,
    },
    /// Too many callers are waiting already.
    #[error("too many callers waiting for peers")]
    Busy,
}

/// Waits until at least `min` peers are ready (handshake done) and answers how many are, or
/// fails with [`GroupError::Timeout`] after `timeout` ([`GroupError::Closed`] if the group shuts
/// down first). Answers at once if enough peers are ready already.
///
/// ```no_run
/// # async fn demo(group: actix::Addr<btcpeer::group::PeerGroup>) {
/// use std::time::Duration;
/// use btcpeer::group::WaitForPeers;
/// match group.send(WaitForPeers { min: 1, timeout: Duration::from_secs(30) }).await {
///     Ok(Ok(n)) => println!("{n} peers ready"),
///     Ok(Err(e)) => eprintln!("{e}"),
///     Err(_) => eprintln!("group stopped"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<usize, GroupError>")]
pub struct WaitForPeers {
    /// Ready peers wanted.
    pub min: usize,
    /// How long to wait for them.
    pub timeout: Duration,
}

/// Sends a message to every ready peer; answers how many peers it went to.
#[derive(Message)]
#[rtype(result = "Result<usize, GroupError>")]
pub struct Broadcast {
    /// The message.
    pub message: WireMessage,
    /// Succeed with 0 instead of failing when no peer is ready.
    pub allow_none: bool,
}

/// Statistics of every peer.
#[derive(Message)]
#[rtype(result = "Vec<PeerStats>")]
pub struct GetPeers;

/// A handle to one ready peer.
#[derive(Debug, Clone)]
pub struct PeerHandle {
    /// Its id.
    pub id: PeerId,
    /// Its address.
    pub addr: PeerAddr,
    /// Direction.
    pub link: Link,
    /// The actor, for requests of your own.
    pub actor: Addr<PeerActor>,
}

/// A random ready peer.
#[derive(Message)]
#[rtype(result = "Option<PeerHandle>")]
pub struct GetRandomPeer;

/// Adopts a peer actor started elsewhere (bitcoin-net's `addPeer`): the group subscribes it
/// to its subscribers and counts it from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddPeer {
    /// Its id (`PeerActor::id`).
    pub id: PeerId,
    /// Its address.
    pub addr: PeerAddr,
    /// Direction.
    pub link: Link,
    /// The actor.
    pub actor: Addr<PeerActor>,
}

/// Disconnects one peer (reason `Requested`).
#[derive(Message)]
#[rtype(result = "Result<(), GroupError>")]
pub struct DisconnectPeer(pub PeerId);

/// Disconnects one peer for a reason of your own: a misbehaviour reason bans its address like
/// any misbehaviour the peer machine detects (never for static peers), a network reason lets
/// the group replace it.
#[derive(Message)]
#[rtype(result = "Result<(), GroupError>")]
pub struct DisconnectPeerWith {
    /// The peer.
    pub peer: PeerId,
    /// Why.
    pub reason: crate::peer::DisconnectReason,
}

/// Bans an address (its IP, or its host name) and disconnects matching peers.
#[derive(Message)]
#[rtype(result = "Ban")]
pub struct BanAddr {
    /// The address.
    pub addr: PeerAddr,
    /// How long; the configured ban time when `None`.
    pub duration: Option<Duration>,
    /// Why.
    pub reason: String,
}

/// Lifts a ban; answers whether there was one.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct UnbanAddr(pub PeerAddr);

/// Current bans.
#[derive(Message)]
#[rtype(result = "Vec<Ban>")]
pub struct GetBans;

/// Stops accepting inbound connections (bitcoin-net's `unaccept`); listeners stay bound.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

/// Accepts inbound connections again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartAccepting;

/// Closes every peer, saves the address book and bans, and answers once every peer said
/// goodbye (bounded by a grace period). The group dials and accepts nothing afterwards.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Local addresses the listeners are bound to (useful with port 0).
#[derive(Message)]
#[rtype(result = "Vec<SocketAddr>")]
pub struct GetListenAddrs;

/// The group's state at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    /// Accepting inbound connections.
    pub accepting: bool,
    /// Shutting down (peers are being closed) or shut down.
    pub closing: bool,
    /// Shut down.
    pub closed: bool,
    /// Outbound target.
    pub target_outbound: usize,
    /// Outbound connections (dialing or connected).
    pub outbound: usize,
    /// Outbound connections past the handshake.
    pub outbound_ready: usize,
    /// Inbound connections.
    pub inbound: usize,
    /// Inbound limit.
    pub max_inbound: usize,
    /// Addresses in the book (new, tried).
    pub addrbook_new: usize,
    /// Addresses in the tried table.
    pub addrbook_tried: usize,
    /// Active bans.
    pub bans: usize,
    /// Bound listeners.
    pub listening: Vec<SocketAddr>,
}

/// Asks for a [`GroupStatus`].
#[derive(Message)]
#[rtype(result = "GroupStatus")]
pub struct GetStatus;

/// Adds addresses to the book (e.g. from your own source).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct AddAddresses(pub Vec<PeerAddr>);

/// Broadcasts a transaction: announces it to every ready peer through their trickle, serves it
/// to the peers that ask (`getdata`), and answers once `min_peers` asked for it, or fails after
/// `timeout`. The transaction stays available to late askers for a while after that.
#[derive(Message)]
#[rtype(result = "Result<BroadcastOutcome, BroadcastError>")]
pub struct BroadcastTransaction {
    /// The transaction.
    pub tx: bitcoin::Transaction,
    /// Peers that must request it before it counts as broadcast.
    pub min_peers: usize,
    /// How long to wait for them.
    pub timeout: Duration,
}

/// A successful broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BroadcastOutcome {
    /// Its txid.
    pub txid: bitcoin::Txid,
    /// Its wtxid.
    pub wtxid: bitcoin::Wtxid,
    /// Ready peers it was announced to.
    pub announced_to: usize,
    /// Peers that requested it so far.
    pub requested_by: usize,
    /// The block it was seen in, if one arrived (with a chain sync fetching blocks) before
    /// enough peers asked.
    pub confirmed_in: Option<bitcoin::BlockHash>,
}

/// Why a broadcast failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// A group-level failure (no ready peer to announce to, the group closed).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// Too few peers asked for it in time.
    #[error("only {requested_by} of {min_peers} peers requested the transaction in time")]
    Timeout {
        /// Peers that asked.
        requested_by: usize,
        /// Peers required.
        min_peers: usize,
    },
    /// Too many broadcasts in flight.
    #[error("too many transactions are being broadcast")]
    Busy,
}

/// Asks a suitable ready peer for data and answers with the result. On a timeout, a
/// disconnect, `notfound` or a wrong answer the request is retried on a different peer, at most
/// [`GroupConfig::max_request_attempts`](super::GroupConfig) attempts in all; then it fails
/// with [`RequestError::RetriesExhausted`](crate::peer::requests::RequestError) carrying the
/// last error.
///
/// **Waiting for a peer.** When no ready peer can serve the request yet (right after the group
/// started, or while every peer is being replaced), the request waits for one up to
/// [`GroupConfig::fetch_wait`](super::GroupConfig) (default
/// [`DEFAULT_FETCH_WAIT`](super::DEFAULT_FETCH_WAIT), 30 s), as bitcoin-net does, and only then
/// fails with [`RequestError::NoPeers`](crate::peer::requests::RequestError). Choose the wait
/// per request with [`Fetch::wait`] (`Duration::ZERO`: fail at once). Once a request failed on
/// a peer, retries do not wait for new peers.
///
/// ```no_run
/// # async fn demo(group: actix::Addr<btcpeer::group::PeerGroup>, hash: bitcoin::BlockHash) {
/// use std::time::Duration;
/// use btcpeer::group::Fetch;
/// use btcpeer::peer::requests::{Request, Response};
/// let fetch = Fetch::new(Request::Blocks { hashes: vec![hash] }).wait(Duration::from_secs(60));
/// match group.send(fetch).await {
///     Ok(Ok(f)) => {
///         if let Response::Blocks(b) = f.response {
///             println!("{} from peer {}", b[0].block_hash(), f.peer)
///         }
///     }
///     Ok(Err(e)) => eprintln!("failed: {e}"),
///     Err(_) => eprintln!("group stopped"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Fetched, crate::peer::requests::RequestError>")]
pub struct Fetch {
    /// What to ask for.
    pub request: crate::peer::requests::Request,
    /// Try this peer first (e.g. the one that announced the block).
    pub preferred: Option<PeerId>,
    /// Never ask these peers.
    pub exclude: Vec<PeerId>,
    /// Longest wait for a capable ready peer; `None`: the group's
    /// [`fetch_wait`](super::GroupConfig).
    pub wait: Option<Duration>,
}

impl Fetch {
    /// A request for any suitable peer.
    pub fn new(request: crate::peer::requests::Request) -> Self {
        Fetch { request, preferred: None, exclude: Vec::new(), wait: None }
    }

    /// Tries `peer` first.
    pub fn preferred(mut self, peer: PeerId) -> Self {
        self.preferred = Some(peer);
        self
    }

    /// Never asks these peers.
    pub fn exclude(mut self, peers: Vec<PeerId>) -> Self {
        self.exclude = peers;
        self
    }

    /// Waits up to `wait` for a capable peer instead of the group's
    /// [`fetch_wait`](super::GroupConfig) (`Duration::ZERO`: fail at once when there is none).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }
}

/// A [`Fetch`] result and the peer that served it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Who answered.
    pub peer: PeerId,
    /// The answer.
    pub response: crate::peer::requests::Response,
    /// Attempts it took (1: the first peer answered).
    pub attempts: u32,
}

/// A block on the best header chain, requested and checked against its header (sent by
/// [`ChainSync`](crate::sync::ChainSync) when it fetches blocks): broadcasts it contains are
/// confirmed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct BlockConnected(pub std::sync::Arc<bitcoin::Block>);

/// Sends one message to one ready peer, if it is still there (the chain sync's answers to a
/// downstream peer's `getheaders`, and its announcements).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct SendToPeer {
    /// The peer.
    pub peer: PeerId,
    /// The message.
    pub message: WireMessage,
}

/// Changes the service bits our `version` advertises to peers connected from now on (the
/// chain sync advertises `NODE_NETWORK` only while it can fetch blocks from upstream).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct SetServiceBits {
    /// Bits to set.
    pub add: crate::wire::ServiceFlags,
    /// Bits to clear.
    pub remove: crate::wire::ServiceFlags,
}
