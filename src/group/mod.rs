//! Keeping N healthy connections: [`PeerGroup`] dials static peers and addresses from the
//! address book (filled by DNS seeds and by peers' `addr` gossip), replaces lost peers with
//! backoff, bans misbehaving addresses, and accepts inbound peers up to its limits. The
//! decisions are pure ([`policy`], [`bans`], [`inbound`], [`backoff`]); [`actor`] executes them.

pub mod actor;
pub mod backoff;
pub mod bans;
pub mod inbound;
pub mod messages;
pub mod policy;
pub mod requests;

pub use actor::{GroupConfig, PeerGroup};
pub use messages::*;
