//! Keeping N healthy connections: [`PeerGroup`] dials static peers and addresses from the
//! address book (filled by DNS seeds and by peers' `addr` gossip), replaces lost peers with
//! backoff, bans misbehaving addresses, and accepts inbound peers up to its limits. Start one
//! from [`GroupConfig::for_network`] or [`GroupConfig::connect_to`]; talk to it with the
//! messages below ([`Fetch`], [`WaitForPeers`], [`BroadcastTransaction`], [`GetPeers`], ...).
//! Its decisions (connection policy, bans, inbound admission, backoff, request routing, the
//! broadcast cache, transaction requests) are pure, crate-private code that the actor executes.
//!
//! Transactions are fetched once per group, as Core's `TxRequestTracker` does it: peers report
//! the `inv`s they receive, and the group asks one announcer per transaction (outbound peers
//! first, others after 2 s; the next announcer after a `notfound`, a 60 s silence or a
//! disconnect; at most 100 requests in flight and 5,000 tracked announcements per peer). The
//! group's `TxReceived` subscribers get each transaction once: the group delivers the first copy
//! itself (its peers do not carry those subscriptions) and skips copies of transactions it
//! received recently (the last 48,000). `InvReceived` still arrives from every peer, for
//! measuring propagation.

pub(crate) mod actor;
pub(crate) mod backoff;
pub(crate) mod bans;
pub(crate) mod broadcast;
mod config;
pub(crate) mod inbound;
mod listener;
pub(crate) mod messages;
pub(crate) mod policy;
pub(crate) mod requests;
mod state;
pub(crate) mod txrequest;
pub(crate) mod waiters;
mod ws_listener;

pub use actor::{GroupConfig, PeerGroup};
pub use bans::{Ban, BanTarget};
pub use broadcast::{BROADCAST_TTL, MAX_BROADCASTS, MAX_WAITERS_PER_TX};
pub use config::{
    DEFAULT_BAN_TIME, DEFAULT_FETCH_WAIT, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_INBOUND,
    DEFAULT_MAX_INBOUND_PER_IP, DEFAULT_MAX_OUTBOUND, DEFAULT_MIN_BOOK_SIZE, DEFAULT_SAVE_INTERVAL,
};
pub use messages::*;
pub use policy::PolicyConfig;
pub use state::{ADDRBOOK_FILE, BANS_FILE};
pub use waiters::MAX_READY_WAITERS;
pub use ws_listener::{
    ListenWebSocket, WsConfig, WsListenError, DEFAULT_MAX_WS_MESSAGE_BYTES, DEFAULT_MAX_WS_PEERS,
    WS_HANDSHAKE_TIMEOUT,
};
