//! Keeping N healthy connections: [`PeerGroup`] dials static peers and addresses from the
//! address book (filled by DNS seeds and by peers' `addr` gossip), replaces lost peers with
//! backoff, bans misbehaving addresses, and accepts inbound peers up to its limits. The
//! decisions are pure ([`policy`], [`bans`], [`inbound`], [`backoff`], [`requests`], and the
//! crate-private broadcast cache and readiness waiters); [`actor`] executes them, with the
//! listener and the saved state beside it.

pub mod actor;
pub mod backoff;
pub mod bans;
pub(crate) mod broadcast;
mod config;
pub mod inbound;
mod listener;
pub mod messages;
pub mod policy;
pub mod requests;
mod state;
pub(crate) mod waiters;

pub use actor::{GroupConfig, PeerGroup};
pub use config::{
    DEFAULT_BAN_TIME, DEFAULT_FETCH_WAIT, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_INBOUND,
    DEFAULT_MAX_INBOUND_PER_IP, DEFAULT_MAX_OUTBOUND, DEFAULT_MIN_BOOK_SIZE, DEFAULT_SAVE_INTERVAL,
};
pub use messages::*;
pub use waiters::MAX_READY_WAITERS;
