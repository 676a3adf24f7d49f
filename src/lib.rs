//! # btcpeer
//!
//! A group on one local node that prints what it announces and fetches the headers after
//! genesis (`examples/newcomer.rs`; `use btcpeer::prelude::*` is all it imports):
//!
//! ```no_run
#![doc = include_str!("../examples/newcomer.rs")]
//! ```
//!
//! Bitcoin peer-to-peer connections as [actix](https://docs.rs/actix) actors. One
//! [`PeerActor`] per connection performs the version/verack handshake with
//! modern feature negotiation, keeps the link alive with pings, enforces Bitcoin Core's limits on
//! what it receives, and delivers typed notifications ([`events`]) to subscriber actors through
//! bounded mailboxes. The `btcpeerd` daemon wraps it with configuration, logging and a JSON event
//! log.
//!
//! ## Layout
//!
//! - [`wire`]: v1 framing codec, protocol limits, `version` building. The only module that names
//!   `bitcoin::p2p` types.
//! - [`peer`]: the per-connection state machine (`machine`, pure), its actor shell (`actor`),
//!   dialing over TCP or SOCKS5 (`dial`), the outbound byte budget (`outbound`), statistics,
//!   disconnect reasons.
//! - [`events`]: typed notifications and their bounded fan-out to subscribers.
//! - [`group`]: the `PeerGroup` supervisor; its decisions are pure (`policy`, `bans`,
//!   `inbound`, `backoff`) and its actor executes them.
//! - [`addrbook`]: the address book (new/tried tables) and network groups.
//! - [`discovery`]: DNS seeds behind a resolver trait.
//! - `persist`: atomic JSON files with a backup.
//! - [`chain`]: the header chain (validation, forks, locators) and its append-only file.
//! - [`sync`]: following the best header chain through a group, block and header streams.
//! - `metrics` (feature `metrics`): Prometheus counters shared by all peers.
//! - [`config`]: the settings tree the daemon loads (the library itself never reads
//!   configuration files or the environment).
//! - `daemon` (feature `daemon`): `btcpeerd`'s runtime: settings layering, logging, the event
//!   log, the HTTP API, signals.
//!
#![deny(missing_docs)]

pub mod addrbook;
pub mod chain;
pub mod config;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod discovery;
pub mod error;
pub mod events;
/// Entry points for the fuzz targets in `fuzz/` (feature `fuzz` only; not a stable API).
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz_api;
pub mod group;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod network;
pub mod peer;
pub(crate) mod persist;
pub mod sync;

pub mod wire;

/// The `bitcoin` crate this crate is built on (hashes, blocks, transactions, consensus
/// encoding): use `btcpeer::bitcoin` so the versions always match.
pub use bitcoin;

pub use error::Error;
pub use events::{Budget, Subscription, SUBSCRIBER_MAILBOX};
pub use group::{Fetch, GroupConfig, PeerGroup, WaitForPeers};
pub use network::Network;
pub use peer::requests::{Request, Response};
pub use peer::{DisconnectReason, PeerActor, PeerAddr, PeerConfig, PeerId};

/// What most programs need, in one import: `use btcpeer::prelude::*;`. It includes the actix
/// items a subscriber actor needs (`Actor`, `Context`, `Handler`, ...), so `actix::prelude::*`
/// (whose `Request`/`Response` would clash with ours) is not needed beside it.
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::bitcoin::{Block, BlockHash, Transaction, Txid};
    #[doc(no_inline)]
    pub use crate::events::{
        AddrReceived, AddressBanned, AddressUnbanned, BlockReceived, Budget, GetDataReceived,
        HeadersReceived, InvReceived, MessageReceived, MessageSent, PeerDisconnected, PeerReady,
        PeerStateChanged, Subscription, TxReceived, SUBSCRIBER_MAILBOX,
    };
    #[doc(no_inline)]
    pub use crate::group::{
        Broadcast, BroadcastOutcome, BroadcastTransaction, Fetch, Fetched, GetPeers, GetStatus, GroupConfig,
        GroupError, PeerGroup, Shutdown, WaitForPeers,
    };
    #[doc(no_inline)]
    pub use crate::peer::requests::{Request, RequestError, Response};
    #[doc(no_inline)]
    pub use crate::peer::{DisconnectReason, PeerActor, PeerAddr, PeerConfig, PeerId, PeerInfo, PeerState};
    #[doc(no_inline)]
    pub use crate::sync::{ChainEvent, ChainSync, ChainSyncConfig, SubscribeChain};
    #[doc(no_inline)]
    pub use crate::wire::Inventory;
    #[doc(no_inline)]
    pub use crate::{subscriptions, Error, Network};
    #[doc(no_inline)]
    pub use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, Recipient, System};
}
